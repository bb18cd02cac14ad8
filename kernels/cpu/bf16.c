/* kernels/cpu/bf16.c — array forms of the bf16 <-> f32 conversions
 * declared in bf16.h (the scalar rounding rule is defined there). */
#include "bf16.h"

void lf_cpu_f32_to_bf16(uint16_t *out, const float *in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = lf_f32_to_bf16(in[i]);
}

void lf_cpu_bf16_to_f32(float *out, const uint16_t *in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = lf_bf16_to_f32(in[i]);
}

void lf_cpu_round_bf16_f32(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = lf_bf16_to_f32(lf_f32_to_bf16(x[i]));
}

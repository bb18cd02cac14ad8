/* kernels/cpu/bf16.h — bf16 <-> f32 conversion on the host.
 *
 * bf16 values are carried as uint16_t bit patterns (the upper half of an
 * IEEE-754 binary32).  f32 -> bf16 rounds to nearest, ties to even; a NaN
 * stays a NaN (quieted, sign and top payload bits kept) instead of being
 * rounded into an infinity; overflow rounds to +-inf as IEEE does.
 * bf16 -> f32 is exact.  The scalar forms are inline for hot loops; the
 * array forms live in bf16.c.  Usable from C and from nvcc-compiled C++. */
#ifndef LF_KERNELS_CPU_BF16_H
#define LF_KERNELS_CPU_BF16_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

static inline uint16_t lf_f32_to_bf16(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u)          /* NaN: keep it a NaN */
        return (uint16_t)((u >> 16) | 0x0040u);
    /* add just under half an ulp, plus one more if the kept lsb is odd:
       ties go to even, everything else to nearest; carries into the
       exponent are exactly right (up to and including +-inf). */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float lf_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* out[i] = bf16(in[i]) for i < n */
void lf_cpu_f32_to_bf16(uint16_t *out, const float *in, size_t n);
/* out[i] = f32(in[i]) for i < n */
void lf_cpu_bf16_to_f32(float *out, const uint16_t *in, size_t n);
/* x[i] = f32(bf16(x[i])): rounds an f32 array through bf16 in place */
void lf_cpu_round_bf16_f32(float *x, size_t n);

#ifdef __cplusplus
}
#endif

#endif

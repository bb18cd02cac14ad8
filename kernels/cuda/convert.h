/* kernels/cuda/convert.h — elementwise f32 <-> bf16 conversion on the GPU.
 * bf16 is carried as uint16_t bit patterns, as on the CPU side
 * (kernels/cpu/bf16.h).  f32 -> bf16 uses the hardware round-to-nearest-even
 * conversion (cvt.rn.bf16.f32): it agrees bit for bit with lf_f32_to_bf16
 * except that every NaN comes out as the canonical NaN 0x7fff.  bf16 -> f32
 * is an exact shift.  Pointers are device memory; the work is queued on
 * `stream` and nothing is synchronised. */
#ifndef LF_KERNELS_CUDA_CONVERT_H
#define LF_KERNELS_CUDA_CONVERT_H

#include <stddef.h>
#include <stdint.h>
#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

void lf_cuda_f32_to_bf16(uint16_t *out, const float *in, size_t n, cudaStream_t stream);
void lf_cuda_bf16_to_f32(float *out, const uint16_t *in, size_t n, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif

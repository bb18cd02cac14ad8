/* kernels/cuda/elementwise.h — the small element and row ops the model's
 * forward and backward pass need between its big ones, where the CPU path
 * (libcommon/backprop.c, model.c) runs a plain loop: the residual sum, a
 * bias and its gradient, gathering and scattering rows, LoRA dropout's
 * mask and NEFTune's noise.
 *
 * As in ops.h: every pointer is device memory, a trailing stream gets the
 * work and nothing is synchronised; launch errors exit through
 * cuda_check.h.  The arithmetic is the CPU loop's, so results are its bits
 * (the bias gradient's sum runs down the rows in order, as the CPU's). */
#ifndef LF_KERNELS_CUDA_ELEMENTWISE_H
#define LF_KERNELS_CUDA_ELEMENTWISE_H

#include <stddef.h>
#include <stdint.h>
#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

/* out[i] = x[i] + y[i]; out may alias x or y */
void lf_cuda_add_f32(float *out, const float *x, const float *y, size_t n, cudaStream_t stream);
/* out[t, j] += b[j] for T rows of n */
void lf_cuda_bias_add_f32(float *out, const float *b, int T, int n, cudaStream_t stream);
/* db[j] += sum over the T rows of dy[t, j], rows in order (lf_cpu_bias_grad_f32) */
void lf_cuda_bias_grad_f32(float *db, const float *dy, int T, int n, cudaStream_t stream);
/* out[i, :] = x[rows[i], :] for i < n, rows of H */
void lf_cuda_gather_rows_f32(float *out, const float *x, const int32_t *rows, int n, int H, cudaStream_t stream);
/* out[rows[i], :] = x[i, :] for i < n (distinct rows), rows of H */
void lf_cuda_scatter_rows_f32(float *out, const float *x, const int32_t *rows, int n, int H, cudaStream_t stream);

/* A mixture of experts' (token, choice) pairs: pair_of[t * K + k] is the
 * row, in the experts' outputs eo [N K, H], of token t's k-th choice, and
 * weights[t * K + k] its weight.
 *   combine:      mo[t, :] = sum over k, in order, of weight x eo[pair]
 *                 (backprop.c's loop: the same bits);
 *   combine_bwd:  deo[pair, :] = weight x dmo[t, :], dweights[t, k] =
 *                 dmo[t, :] . eo[pair, :] (one block per pair);
 *   gather_sum:   dx[t, :] = sum over k of dxe[pair, :] (overwritten). */
void lf_cuda_moe_combine_f32(float *mo, const float *eo, const float *weights, const int32_t *pair_of, int N, int K,
                             int H, cudaStream_t stream);
void lf_cuda_moe_combine_bwd_f32(float *deo, float *dweights, const float *dmo, const float *eo,
                                 const float *weights, const int32_t *pair_of, int N, int K, int H,
                                 cudaStream_t stream);
void lf_cuda_moe_gather_sum_f32(float *dx, const float *dxe, const int32_t *pair_of, int N, int K, int H,
                                cudaStream_t stream);

/* SplitMix64's finaliser, the hash of the CPU path's training noise */
#ifdef __CUDACC__
static __host__ __device__ inline uint64_t lf_cuda_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
#endif

/* LoRA dropout with the CPU path's mask: element i is kept when
   u = (mix64(key + i) >> 11) * 2^-53 is at least p, and then scaled by
   1 / (1 - p).  accumulate 0: out[i] = x[i] * k; 1: out[i] += x[i] * k
   (the backward through the mask). */
void lf_cuda_dropout_f32(float *out, const float *x, size_t n, float p, uint64_t key, int accumulate,
                         cudaStream_t stream);
/* NEFTune: x[i] += mag * (2 u - 1), u from mix64(key + i) as above */
void lf_cuda_neftune_f32(float *x, size_t n, float mag, uint64_t key, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif

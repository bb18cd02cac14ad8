/* kernels/cuda/ops.h — CUDA twins of the CPU reference's elementwise and
 * row-wise ops (kernels/cpu/ops.h, kernels/cpu/grad.h): RMSNorm, rotary
 * embedding, gated activations and soft-capping, forward and backward.
 *
 * Each lf_cuda_X_f32 takes the arguments of lf_cpu_X_f32 in the same order
 * and with the same meaning (layouts, aliasing, "+=" outputs), except that
 * every pointer is device memory, plus a trailing stream: the work is
 * queued on it and nothing is synchronised.  Launch errors exit through
 * cuda_check.h; faults inside a kernel surface at the caller's next
 * checked call.
 *
 * The _bf16 forms of the forward ops read and write bf16 activations
 * (uint16_t bit patterns, as in convert.h and gemm.h) and compute in f32;
 * weights, positions and frequency tables are f32/int32 as in the CPU op.
 * Their results are the f32 op's rounded to bf16 (round to nearest even). */
#ifndef LF_KERNELS_CUDA_OPS_H
#define LF_KERNELS_CUDA_OPS_H

#include <stdint.h>
#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

/* out[t, :] = x[t, :] / sqrt(mean(x[t, :]^2) + eps) * (w + offset), rows
   of n; out may alias x.  One block per row. */
void lf_cuda_rmsnorm_f32(float *out, const float *x, const float *w, int T, int n, float eps, float offset,
                         cudaStream_t stream);
void lf_cuda_rmsnorm_bf16(uint16_t *out, const uint16_t *x, const float *w, int T, int n, float eps, float offset,
                          cudaStream_t stream);

/* dx += the gradient through x; dw += sum over rows of dy x r (dw may be
   NULL).  Both accumulate, as the CPU op's do.  With dw, the launcher
   takes T + P * n floats of stream-ordered scratch (cudaMallocAsync,
   P <= 1024 row chunks) and frees it on the stream. */
void lf_cuda_rmsnorm_bwd_f32(float *dx, float *dw, const float *dy, const float *x, const float *w, int T, int n,
                             float eps, float offset, cudaStream_t stream);

/* Rotary embedding in place on x[t, h, :] (rows of row_stride floats,
   heads of d floats): dims [0, half) and [half, 2 half), half =
   rotary_dim / 2, rotated by pos[t] * inv_freq[i] (inv_freq: half floats),
   cos and sin scaled by attention_factor; the rest left alone.  pos and
   inv_freq are device memory too. */
void lf_cuda_rope_f32(float *x, const int32_t *pos, int T, int heads, int d, int row_stride, int rotary_dim,
                      const float *inv_freq, float attention_factor, cudaStream_t stream);
void lf_cuda_rope_bf16(uint16_t *x, const int32_t *pos, int T, int heads, int d, int row_stride, int rotary_dim,
                       const float *inv_freq, float attention_factor, cudaStream_t stream);
/* the rotation by minus the angle, in place on the gradient */
void lf_cuda_rope_bwd_f32(float *dx, const int32_t *pos, int T, int heads, int d, int row_stride, int rotary_dim,
                          const float *inv_freq, float attention_factor, cudaStream_t stream);

/* out = act(gate) * up over n; act 0: silu, 1: gelu tanh approximation,
   2: gelu (erf).  out may alias gate or up. */
void lf_cuda_gated_act_f32(float *out, const float *gate, const float *up, long n, int act, cudaStream_t stream);
void lf_cuda_gated_act_bf16(uint16_t *out, const uint16_t *gate, const uint16_t *up, long n, int act,
                            cudaStream_t stream);
/* dgate = dout up act'(gate), dup = dout act(gate); no aliasing of inputs */
void lf_cuda_gated_act_bwd_f32(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                               long n, int act, cudaStream_t stream);

/* x = cap * tanh(x / cap), in place */
void lf_cuda_softcap_f32(float *x, long n, float cap, cudaStream_t stream);
void lf_cuda_softcap_bf16(uint16_t *x, long n, float cap, cudaStream_t stream);
/* dy *= 1 - (y / cap)^2 given the forward's output y, in place on dy */
void lf_cuda_softcap_bwd_f32(float *dy, const float *y, long n, float cap, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif

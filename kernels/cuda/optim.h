/* kernels/cuda/optim.h — CUDA twins of the optimizer step's ops
 * (kernels/cpu/adamw.h): AdamW over one f32 tensor, the squared gradient
 * norm, the clipping coefficient and the gradient scaling.
 *
 * Each lf_cuda_X takes the arguments of lf_cpu_X in the same order and with
 * the same meaning, every array in device memory, plus a trailing stream:
 * the work is queued on it and nothing is synchronised.  Where the CPU op
 * returns a number, the CUDA one writes it to device memory through an
 * extra first argument instead.  Launch errors exit through cuda_check.h.
 *
 * AdamW, the clipping coefficient and the scaling give the CPU op's bits
 * exactly (the same f32 operations in the same order, each correctly
 * rounded: no contraction into FMAs except where the CPU calls fmaf).  The
 * squared norm is a double sum in a fixed order of its own: the same bits
 * on every run and every GPU, within a few double roundings of the CPU's. */
#ifndef LF_KERNELS_CUDA_OPTIM_H
#define LF_KERNELS_CUDA_OPTIM_H

#include <stddef.h>
#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One AdamW step over n elements of p with gradient g and moments m, v
   (lf_cpu_adamw_f32's arithmetic; step 1-based, lr this step's scheduled
   lr, decay 0 for the no-decay group, the gradient used g * grad_coef).
   The scalars are computed on the host by lf_cpu_adamw_step_scalars
   (kernels/cpu/adamw.h) and passed by value. */
void lf_cuda_adamw_f32(float *p, const float *g, float *m, float *v, size_t n, long step, double lr, double beta1,
                       double beta2, double eps, double weight_decay, int decay, float grad_coef,
                       cudaStream_t stream);

/* *out = sum of g[i]^2 in double (written, not accumulated; out is device
   memory, e.g. one slot per tensor of an array for lf_cuda_clip_coef).
   Up to 1024 fixed chunks (bounds from n only) summed by blocks, then the
   partial sums added in a fixed tree: deterministic, no atomics.  Takes
   up to 1024 doubles of stream-ordered scratch (cudaMallocAsync). */
void lf_cuda_grad_norm_sq_f32(double *out, const float *g, size_t n, cudaStream_t stream);

/* *coef = lf_cpu_clip_coef(norm_sq, ntensors, max_norm, total_norm) with
   norm_sq, coef and total_norm (may be NULL) in device memory: one thread,
   the CPU's operations in its order, so the same bits. */
void lf_cuda_clip_coef(float *coef, const double *norm_sq, size_t ntensors, double max_norm, double *total_norm,
                       cudaStream_t stream);

/* g[i] *= coef, with coef from the host ... */
void lf_cuda_grad_scale_f32(float *g, size_t n, float coef, cudaStream_t stream);
/* ... or read from device memory (lf_cuda_clip_coef's output: no
   round trip to the host between the norm and the scaling) */
void lf_cuda_grad_scale_dev_f32(float *g, size_t n, const float *coef, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif

/* kernels/cpu/adamw.h — the optimizer step's arithmetic as a kernel op:
 * AdamW over one f32 tensor, the squared gradient norm, the clipping
 * coefficient and the gradient scaling.  These are functional copies of
 * libcommon/optim.c's lf_adamw_step, lf_grad_norm_sq, lf_clip_coef and
 * lf_grad_scale (torch.optim.AdamW's single-tensor arithmetic bit for bit,
 * torch.nn.utils.clip_grad_norm_'s), moved here so that the CUDA twins
 * (kernels/cuda/optim.h) have a CPU reference that links without libcommon;
 * libcommon/optim.c is meant to call these.
 *
 * The per-step scalars are computed by lf_cpu_adamw_step_scalars(), an
 * inline function of this header, so the CPU op and the CUDA launcher
 * round them from the same source text. */
#ifndef LF_KERNELS_CPU_ADAMW_H
#define LF_KERNELS_CPU_ADAMW_H

#include <math.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The scalars of one AdamW step, each rounded to f32 once as torch's
   tensor ops take them (see lf_cpu_adamw_f32 for their use). */
struct lf_cpu_adamw_scalars {
    int decay;        /* apply p *= keep */
    float keep;       /* 1 - lr*wd */
    float lerp_w;     /* 1 - beta1, less 1 when that is 0.5 or more */
    int lerp_from_m;  /* base of the lerp: m (small weight) or g */
    float b2, c2;     /* beta2, 1 - beta2 */
    float bc2_sqrt;   /* sqrt(1 - beta2^step) */
    float eps;
    float neg_step;   /* -lr / (1 - beta1^step) */
    float grad_coef;  /* the gradient used is g * grad_coef (clipping's
                         multiplier; 1 from lf_cpu_adamw_step_scalars) */
};

/* Bit-exactness needs 1 - lr*wd rounded twice: where GCC could contract
   it into an FMA (a target with FMA, -ffp-contract=fast is GCC's default)
   it is told not to.  nvcc's host pass targets plain x86-64 (no FMA). */
#if defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif
/* The scalars as torch's adam.py computes them: Python floats (double)
   from the step count, each rounded to f32 when a tensor op takes it. */
static inline struct lf_cpu_adamw_scalars lf_cpu_adamw_step_scalars(long step, double lr, double beta1,
                                                                    double beta2, double eps, double weight_decay,
                                                                    int decay)
{
    double bc1 = 1.0 - pow(beta1, (double)step);
    double bc2 = 1.0 - pow(beta2, (double)step);
    double step_size = lr / bc1;
    double bc2_sqrt = pow(bc2, 0.5);
    float w1 = (float)(1.0 - beta1);
    struct lf_cpu_adamw_scalars s;
    s.decay = decay && weight_decay != 0.0;
    s.keep = (float)(1.0 - lr * weight_decay);
    s.lerp_w = fabsf(w1) < 0.5f ? w1 : w1 - 1.0f;
    s.lerp_from_m = fabsf(w1) < 0.5f;
    s.b2 = (float)beta2;
    s.c2 = (float)(1.0 - beta2);
    s.bc2_sqrt = (float)bc2_sqrt;
    s.eps = (float)eps;
    s.neg_step = (float)-step_size;
    s.grad_coef = 1.0f;
    return s;
}
#if defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#pragma GCC pop_options
#endif

/* One AdamW step over n elements, torch.optim.AdamW's single-tensor path
   (foreach=False) bit for bit where torch's sqrt is the IEEE one, per
   element in this order (f32, each operation rounded once):
       g = g * grad_coef   (clip_grad_norm_'s g.mul_(coef), in a register:
                            the array g is not written)
       p = decay ? p * keep : p
       m = fmaf(lerp_w, g - m, lerp_from_m ? m : g)     (torch's lerp)
       v = fmaf(c2 * g, g, v * b2)                       (torch's addcmul)
       p = p + neg_step * m / (sqrt(v) / bc2_sqrt + eps) (torch's addcdiv)
   step is 1-based (this step included), lr the scheduled lr of this step,
   decay 0 for a tensor in the no-decay group.  m and v start as zeros;
   p, g, m and v do not overlap.  OpenMP-parallel, the same bits whatever
   the thread count.  libcommon's lf_adamw_step(p, g, m, v, n, step, lr,
   h, decay, grad_coef) is lf_cpu_adamw_f32(p, g, m, v, n, step, lr,
   h->beta1, h->beta2, h->eps, h->weight_decay, decay, grad_coef). */
void lf_cpu_adamw_f32(float *p, const float *g, float *m, float *v, size_t n, long step, double lr, double beta1,
                      double beta2, double eps, double weight_decay, int decay, float grad_coef);

/* The sum of g[i]^2 in double over at most 256 fixed blocks (bounds from
   n only) added in order: the same double whatever the thread count. */
double lf_cpu_grad_norm_sq_f32(const float *g, size_t n);

/* clip_grad_norm_'s multiplier from the per-tensor squared norms (summed
   in order in double): *total_norm = sqrt of the sum (may be NULL), and
   min(1, max_norm / (total + 1e-6)) computed in f32 as torch does
   (reciprocal, then times max_norm); max_norm <= 0: 1, no clipping. */
float lf_cpu_clip_coef(const double *norm_sq, size_t ntensors, double max_norm, double *total_norm);

/* g[i] *= coef */
void lf_cpu_grad_scale_f32(float *g, size_t n, float coef);

#ifdef __cplusplus
}
#endif

#endif

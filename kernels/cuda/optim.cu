/* kernels/cuda/optim.cu — the CUDA twins of the optimizer step's ops
 * (kernels/cpu/adamw.h): AdamW, the squared gradient norm, the clipping
 * coefficient and the gradient scaling (see optim.h).
 *
 * AdamW is elementwise and gives the CPU op's bits: the per-step scalars
 * come from the same host function (lf_cpu_adamw_step_scalars), and each
 * element goes through the same f32 operations in the same order, written
 * with the correctly rounded intrinsics (__fmul_rn, __fadd_rn, __fdiv_rn,
 * __fsqrt_rn, __fmaf_rn) so that nvcc cannot contract a multiply and an
 * add into an FMA where the CPU rounds twice, and fuses exactly where the
 * CPU calls fmaf.  (nvcc's defaults keep denormals and IEEE division and
 * sqrt; this file must not be built with --use_fast_math.)
 *
 * The squared norm sums (double)g^2 -- each product exact in double -- in
 * double: blocks over fixed chunks, then the chunks' sums in a fixed tree.
 * No atomics, so a run repeats its bits; the grouping differs from the
 * CPU's, so the two agree to a few double roundings. */
#include "optim.h"
#include "cuda_check.h"
#include "launch.h"

#include "cpu/adamw.h"

#include <stdint.h>

static int lf_aligned16(const void *p)
{
    return ((uintptr_t)p & 15u) == 0;
}

/* ---- AdamW --------------------------------------------------------------- */

/* lf_cpu_adamw_f32's adamw_range, operation for operation */
static __device__ __forceinline__ void lf_adamw_elem(float &p, float g, float &m, float &v,
                                                     const struct lf_cpu_adamw_scalars &s)
{
    g = __fmul_rn(g, s.grad_coef);
    float pi = s.decay ? __fmul_rn(p, s.keep) : p;
    float mi = __fmaf_rn(s.lerp_w, __fsub_rn(g, m), s.lerp_from_m ? m : g);
    float vi = __fmaf_rn(__fmul_rn(s.c2, g), g, __fmul_rn(v, s.b2));
    float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), s.bc2_sqrt), s.eps);
    p = __fadd_rn(pi, __fdiv_rn(__fmul_rn(s.neg_step, mi), denom));
    m = mi;
    v = vi;
}

/* grid-stride over float4s when every array is 16-byte aligned (VEC4),
   then over the elements left */
template <bool VEC4>
static __global__ void lf_adamw_kernel(float *p, const float *g, float *m, float *v, size_t n,
                                       struct lf_cpu_adamw_scalars s)
{
    size_t stride = (size_t)gridDim.x * blockDim.x, tid = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t done = 0;
    if (VEC4) {
        size_t n4 = n / 4;
        for (size_t i = tid; i < n4; i += stride) {
            float4 pp = ((float4 *)p)[i], gg = ((const float4 *)g)[i];
            float4 mm = ((float4 *)m)[i], vv = ((float4 *)v)[i];
            lf_adamw_elem(pp.x, gg.x, mm.x, vv.x, s);
            lf_adamw_elem(pp.y, gg.y, mm.y, vv.y, s);
            lf_adamw_elem(pp.z, gg.z, mm.z, vv.z, s);
            lf_adamw_elem(pp.w, gg.w, mm.w, vv.w, s);
            ((float4 *)p)[i] = pp;
            ((float4 *)m)[i] = mm;
            ((float4 *)v)[i] = vv;
        }
        done = n4 * 4;
    }
    for (size_t i = done + tid; i < n; i += stride) {
        float pi = p[i], mi = m[i], vi = v[i];
        lf_adamw_elem(pi, g[i], mi, vi, s);
        p[i] = pi;
        m[i] = mi;
        v[i] = vi;
    }
}

extern "C" void lf_cuda_adamw_f32(float *p, const float *g, float *m, float *v, size_t n, long step, double lr,
                                  double beta1, double beta2, double eps, double weight_decay, int decay,
                                  float grad_coef, cudaStream_t stream)
{
    if (n == 0)
        return;
    struct lf_cpu_adamw_scalars s = lf_cpu_adamw_step_scalars(step, lr, beta1, beta2, eps, weight_decay, decay);
    s.grad_coef = grad_coef;
    if (lf_aligned16(p) && lf_aligned16(g) && lf_aligned16(m) && lf_aligned16(v))
        lf_adamw_kernel<true><<<lf_cuda_grid(n / 4 ? n / 4 : 1), lf_cuda_block, 0, stream>>>(p, g, m, v, n, s);
    else
        lf_adamw_kernel<false><<<lf_cuda_grid(n), lf_cuda_block, 0, stream>>>(p, g, m, v, n, s);
    LF_CUDA_CHECK_LAST();
}

/* ---- squared gradient norm -------------------------------------------------- */

/* the sum over the block, returned to every thread (all get the same
   bits: each butterfly step adds the same two numbers on both lanes);
   blockDim.x a multiple of 32, red 32 doubles of shared memory */
static __device__ double lf_block_sum_d(double v, double *red)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    if (lane == 0)
        red[warp] = v;
    __syncthreads();
    v = lane < warps ? red[lane] : 0.0;
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Chunks: at most LF_NORM_PARTS, each a multiple of LF_NORM_ALIGN elements
   long (so a chunk of a 16-byte aligned g starts 16-byte aligned) and at
   least LF_NORM_MIN (a small tensor is one chunk, one block, no scratch).
   Their bounds depend on n only. */
enum { LF_NORM_PARTS = 1024, LF_NORM_ALIGN = 1024, LF_NORM_MIN = 8192 };

/* part[b] = the sum of g[i]^2 over chunk b, [b per, min(n, (b+1) per)) */
template <bool VEC4>
static __global__ void lf_sumsq_part_kernel(double *part, const float *g, size_t n, size_t per)
{
    __shared__ double red[32];
    size_t lo = (size_t)blockIdx.x * per, hi = lo + per < n ? lo + per : n;
    double s = 0.0;
    size_t i = lo;
    if (VEC4) {
        const float4 *g4 = (const float4 *)g;
        for (size_t k = lo / 4 + threadIdx.x; k < hi / 4; k += blockDim.x) {
            float4 x = g4[k];
            s += (double)x.x * x.x;
            s += (double)x.y * x.y;
            s += (double)x.z * x.z;
            s += (double)x.w * x.w;
        }
        i = hi / 4 * 4;
    }
    for (i += threadIdx.x; i < hi; i += blockDim.x)
        s += (double)g[i] * g[i];
    s = lf_block_sum_d(s, red);
    if (threadIdx.x == 0)
        part[blockIdx.x] = s;
}

/* *out = the sum of the P <= 1024 partial sums, in a fixed tree */
static __global__ void lf_sumsq_final_kernel(double *out, const double *part, int P)
{
    __shared__ double red[32];
    double s = (int)threadIdx.x < P ? part[threadIdx.x] : 0.0;
    s = lf_block_sum_d(s, red);
    if (threadIdx.x == 0)
        *out = s;
}

extern "C" void lf_cuda_grad_norm_sq_f32(double *out, const float *g, size_t n, cudaStream_t stream)
{
    if (n == 0) {
        LF_CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(double), stream));
        return;
    }
    size_t per = (n + LF_NORM_PARTS - 1) / LF_NORM_PARTS;
    per = (per + LF_NORM_ALIGN - 1) / LF_NORM_ALIGN * LF_NORM_ALIGN;
    if (per < LF_NORM_MIN)
        per = LF_NORM_MIN;
    int P = (int)((n + per - 1) / per);
    bool vec4 = lf_aligned16(g);
    double *part = out;
    if (P > 1)
        LF_CUDA_CHECK(cudaMallocAsync((void **)&part, (size_t)P * sizeof(double), stream));
    if (vec4)
        lf_sumsq_part_kernel<true><<<P, lf_cuda_block, 0, stream>>>(part, g, n, per);
    else
        lf_sumsq_part_kernel<false><<<P, lf_cuda_block, 0, stream>>>(part, g, n, per);
    LF_CUDA_CHECK_LAST();
    if (P > 1) {
        lf_sumsq_final_kernel<<<1, LF_NORM_PARTS, 0, stream>>>(out, part, P);
        LF_CUDA_CHECK_LAST();
        LF_CUDA_CHECK(cudaFreeAsync(part, stream));
    }
}

/* ---- clipping coefficient and scaling ------------------------------------------ */

/* lf_cpu_clip_coef, statement for statement, on one thread */
static __global__ void lf_clip_coef_kernel(float *coef, const double *norm_sq, size_t ntensors, double max_norm,
                                           double *total_norm)
{
    double sum = 0;
    for (size_t t = 0; t < ntensors; t++)
        sum = __dadd_rn(sum, norm_sq[t]);
    double total = __dsqrt_rn(sum);
    if (total_norm)
        *total_norm = total;
    if (!(max_norm > 0)) {
        *coef = 1.0f;
        return;
    }
    float denom = __fadd_rn((float)total, (float)1e-6);
    float c = __fmul_rn(__fdiv_rn(1.0f, denom), (float)max_norm);
    *coef = c > 1.0f ? 1.0f : c;
}

extern "C" void lf_cuda_clip_coef(float *coef, const double *norm_sq, size_t ntensors, double max_norm,
                                  double *total_norm, cudaStream_t stream)
{
    lf_clip_coef_kernel<<<1, 1, 0, stream>>>(coef, norm_sq, ntensors, max_norm, total_norm);
    LF_CUDA_CHECK_LAST();
}

/* g[i] = g[i] * c, c = *dev_coef when dev_coef is not NULL */
static __global__ void lf_grad_scale_kernel(float *g, size_t n, float c, const float *dev_coef)
{
    if (dev_coef)
        c = *dev_coef;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        g[i] = __fmul_rn(g[i], c);
}

extern "C" void lf_cuda_grad_scale_f32(float *g, size_t n, float coef, cudaStream_t stream)
{
    if (n == 0)
        return;
    lf_grad_scale_kernel<<<lf_cuda_grid(n), lf_cuda_block, 0, stream>>>(g, n, coef, NULL);
    LF_CUDA_CHECK_LAST();
}

extern "C" void lf_cuda_grad_scale_dev_f32(float *g, size_t n, const float *coef, cudaStream_t stream)
{
    if (n == 0)
        return;
    lf_grad_scale_kernel<<<lf_cuda_grid(n), lf_cuda_block, 0, stream>>>(g, n, 0.0f, coef);
    LF_CUDA_CHECK_LAST();
}

/* kernels/cpu/adamw.c — AdamW, the squared gradient norm, the clipping
 * coefficient and the gradient scaling (see adamw.h): libcommon/optim.c's
 * arithmetic, statement for statement, so that the two give the same bits.
 *
 * Bit-exactness needs every a*b+c below rounded twice, as torch does,
 * except where torch itself fuses (fmaf).  GCC contracts a*b+c into an FMA
 * when the target has one (-march=native, the x86-64-v3 clone) unless told
 * not to. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "adamw.h"
#include "vec.h"

#include <immintrin.h>
#include <math.h>
#include <stddef.h>

/* below this many elements a loop runs on one thread */
#define PARALLEL_MIN 32768

/* The elementwise update of elements [0, n).  torch's lerp(m, g, w) on the
 * CPU is one FMA: m + w*(g - m) when |w| < 0.5, else g + (w - 1)*(g - m);
 * addcmul(v*beta2, g, g, 1 - beta2) is one FMA too, fma((1 - beta2)*g, g,
 * v*beta2); addcdiv is p + (-step*m)/denom, two roundings.  On x86-64 a
 * clone for CPUs with FMA (x86-64-v3) does the fmaf inline rather than in
 * libm; the results are the same bits either way. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
__attribute__((target_clones("arch=x86-64-v3", "default")))
#endif
static void adamw_range(float *restrict p, const float *restrict g, float *restrict m, float *restrict v, size_t n,
                        const struct lf_cpu_adamw_scalars *sc)
{
    const struct lf_cpu_adamw_scalars s = *sc;
    for (size_t i = 0; i < n; i++) {
        float pi = s.decay ? p[i] * s.keep : p[i];
        float gi = g[i] * s.grad_coef, mi = m[i];
        mi = fmaf(s.lerp_w, gi - mi, s.lerp_from_m ? mi : gi);
        float vi = fmaf(s.c2 * gi, gi, v[i] * s.b2);
        float denom = sqrtf(vi) / s.bc2_sqrt + s.eps;
        p[i] = pi + s.neg_step * mi / denom;
        m[i] = mi;
        v[i] = vi;
    }
}

/* adamw_range 16 elements at a time: the same operations in the same
 * order, each intrinsic one rounding (GCC does not vectorize the C loop:
 * sqrtf may set errno).  vsqrtps and vdivps round as sqrtf and / do, so
 * the bits are the scalar loop's (test_optim checks both against each
 * other, and against torch).  Measured here on 21.7M parameters, 2
 * threads: 10 ms a step instead of 36. */
__attribute__((target("avx512f"))) static void adamw_range_avx512(float *p, const float *g, float *m, float *v,
                                                                  size_t n, const struct lf_cpu_adamw_scalars *sc)
{
    const struct lf_cpu_adamw_scalars s = *sc;
    __m512 keep = _mm512_set1_ps(s.keep), lerp_w = _mm512_set1_ps(s.lerp_w), b2 = _mm512_set1_ps(s.b2);
    __m512 c2 = _mm512_set1_ps(s.c2), bc2_sqrt = _mm512_set1_ps(s.bc2_sqrt), eps = _mm512_set1_ps(s.eps);
    __m512 neg_step = _mm512_set1_ps(s.neg_step), grad_coef = _mm512_set1_ps(s.grad_coef);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
        __m512 pi = _mm512_maskz_loadu_ps(k, p + i), gi = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, g + i), grad_coef);
        __m512 mi = _mm512_maskz_loadu_ps(k, m + i), vi = _mm512_maskz_loadu_ps(k, v + i);
        if (s.decay)
            pi = _mm512_mul_ps(pi, keep);
        mi = _mm512_fmadd_ps(lerp_w, _mm512_sub_ps(gi, mi), s.lerp_from_m ? mi : gi);
        vi = _mm512_fmadd_ps(_mm512_mul_ps(c2, gi), gi, _mm512_mul_ps(vi, b2));
        __m512 denom = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vi), bc2_sqrt), eps);
        pi = _mm512_add_ps(pi, _mm512_div_ps(_mm512_mul_ps(neg_step, mi), denom));
        _mm512_mask_storeu_ps(p + i, k, pi);
        _mm512_mask_storeu_ps(m + i, k, mi);
        _mm512_mask_storeu_ps(v + i, k, vi);
    }
}

/* adamw_range_avx512 8 elements at a time, for AVX2 CPUs: the same
 * operations in the same order (vsqrtps and vdivps round as sqrtf and /
 * do); the tail through adamw_range itself.  The bits are the scalar
 * loop's (test_optim). */
__attribute__((target("avx2,fma"))) static void adamw_range_avx2(float *p, const float *g, float *m, float *v,
                                                                 size_t n, const struct lf_cpu_adamw_scalars *sc)
{
    const struct lf_cpu_adamw_scalars s = *sc;
    __m256 keep = _mm256_set1_ps(s.keep), lerp_w = _mm256_set1_ps(s.lerp_w), b2 = _mm256_set1_ps(s.b2);
    __m256 c2 = _mm256_set1_ps(s.c2), bc2_sqrt = _mm256_set1_ps(s.bc2_sqrt), eps = _mm256_set1_ps(s.eps);
    __m256 neg_step = _mm256_set1_ps(s.neg_step), grad_coef = _mm256_set1_ps(s.grad_coef);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 pi = _mm256_loadu_ps(p + i), gi = _mm256_mul_ps(_mm256_loadu_ps(g + i), grad_coef);
        __m256 mi = _mm256_loadu_ps(m + i), vi = _mm256_loadu_ps(v + i);
        if (s.decay)
            pi = _mm256_mul_ps(pi, keep);
        mi = _mm256_fmadd_ps(lerp_w, _mm256_sub_ps(gi, mi), s.lerp_from_m ? mi : gi);
        vi = _mm256_fmadd_ps(_mm256_mul_ps(c2, gi), gi, _mm256_mul_ps(vi, b2));
        __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), bc2_sqrt), eps);
        pi = _mm256_add_ps(pi, _mm256_div_ps(_mm256_mul_ps(neg_step, mi), denom));
        _mm256_storeu_ps(p + i, pi);
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
    }
    if (i < n)
        adamw_range(p + i, g + i, m + i, v + i, n - i, sc);
}

/* chunks of the parallel loop: their bounds do not change any result */
#define ADAMW_CHUNK 16384

void lf_cpu_adamw_f32(float *p, const float *g, float *m, float *v, size_t n, long step, double lr, double beta1,
                      double beta2, double eps, double weight_decay, int decay, float grad_coef)
{
    struct lf_cpu_adamw_scalars s = lf_cpu_adamw_step_scalars(step, lr, beta1, beta2, eps, weight_decay, decay);
    s.grad_coef = grad_coef;
    size_t nchunks = (n + ADAMW_CHUNK - 1) / ADAMW_CHUNK;
    int isa = lf_cpu_isa();
    #pragma omp parallel for if (n >= PARALLEL_MIN) schedule(static)
    for (size_t c = 0; c < nchunks; c++) {
        size_t lo = c * ADAMW_CHUNK, len = n - lo < ADAMW_CHUNK ? n - lo : ADAMW_CHUNK;
        if (isa == LF_CPU_ISA_AVX512)
            adamw_range_avx512(p + lo, g + lo, m + lo, v + lo, len, &s);
        else if (isa == LF_CPU_ISA_AVX2)
            adamw_range_avx2(p + lo, g + lo, m + lo, v + lo, len, &s);
        else
            adamw_range(p + lo, g + lo, m + lo, v + lo, len, &s);
    }
}

/* The sum runs in at most NORM_BLOCKS fixed blocks (their bounds depend on
 * n only), added in order: the same double whatever the thread count. */
#define NORM_BLOCKS 256
#define NORM_BLOCK_MIN 8192

double lf_cpu_grad_norm_sq_f32(const float *g, size_t n)
{
    size_t block = (n + NORM_BLOCKS - 1) / NORM_BLOCKS;
    if (block < NORM_BLOCK_MIN)
        block = NORM_BLOCK_MIN;
    size_t nblocks = (n + block - 1) / block;
    double part[NORM_BLOCKS];

    #pragma omp parallel for if (n >= PARALLEL_MIN) schedule(static)
    for (size_t b = 0; b < nblocks; b++) {
        size_t lo = b * block, hi = lo + block < n ? lo + block : n;
        double s[4] = { 0, 0, 0, 0 };
        size_t i = lo;
        for (; i + 4 <= hi; i += 4)
            for (int k = 0; k < 4; k++)
                s[k] += (double)g[i + k] * g[i + k];
        for (; i < hi; i++)
            s[0] += (double)g[i] * g[i];
        part[b] = (s[0] + s[1]) + (s[2] + s[3]);
    }
    double sum = 0;
    for (size_t b = 0; b < nblocks; b++)
        sum += part[b];
    return sum;
}

float lf_cpu_clip_coef(const double *norm_sq, size_t ntensors, double max_norm, double *total_norm)
{
    double sum = 0;
    for (size_t t = 0; t < ntensors; t++)
        sum += norm_sq[t];
    double total = sqrt(sum);
    if (total_norm)
        *total_norm = total;
    if (!(max_norm > 0))
        return 1.0f;
    /* clip_grad.py: max_norm / (total + 1e-6) on an f32 tensor, which
     * Python evaluates as reciprocal(total + 1e-6) * max_norm; clamp(max=1) */
    float denom = (float)total + (float)1e-6;
    float coef = 1.0f / denom * (float)max_norm;
    return coef > 1.0f ? 1.0f : coef;
}

void lf_cpu_grad_scale_f32(float *g, size_t n, float coef)
{
    #pragma omp parallel for if (n >= PARALLEL_MIN) schedule(static)
    for (size_t i = 0; i < n; i++)
        g[i] = g[i] * coef;
}

/* kernels/cpu/vec_impl.h — what vec.c and vec_avx2.c share, inside the
 * kernels only: exp's constants (one method in every instruction set, so
 * one set of numbers), how far ahead the attention's row loops prefetch,
 * and the AVX2 kernels that vec.c's dispatch calls.  Each AVX2 function
 * takes the parameters of the vec.h function it stands for and keeps its
 * contract (aliasing, a row's bits independent of the rows beside it). */
#ifndef LF_KERNELS_CPU_VEC_IMPL_H
#define LF_KERNELS_CPU_VEC_IMPL_H

#include <immintrin.h>

/* ---- exp constants ---- */

#define EXP_HI 88.8f             /* above: +inf (exp(88.73) > FLT_MAX) */
#define EXP_LO -104.0f           /* below: 0 (exp(-104) < half the least subnormal) */
#define EXP_LOG2E 1.44269504088896341f
#define EXP_C1 0.693359375f      /* ln2's leading bits: n * C1 is exact */
#define EXP_C2 -2.12194440e-4f   /* ln2 - C1 */
#define EXP_P0 1.9875691500e-4f
#define EXP_P1 1.3981999507e-3f
#define EXP_P2 8.3334519073e-3f
#define EXP_P3 4.1665795894e-2f
#define EXP_P4 1.6666665459e-1f
#define EXP_P5 5.0000001201e-1f
#define ROUND_MAGIC 12582912.0f  /* 1.5 * 2^23: adding and subtracting it rounds to an integer */

/* Rows ahead that the attention's row loops ask the cache for: the rows
   lie in a stretch of memory that the hardware prefetcher would otherwise
   pick up anew at every page (measured here: a decoded token's attention
   15% faster at 16 rows ahead, the same at 32). */
enum { PREFETCH_ROWS = 16 };

/* ---- AVX2 with FMA (vec_avx2.c): call only where lf_cpu_isa() says so ---- */

/* the integer mask of lanes i < left (maskload's): all 8 from left >= 8
   on, none for left <= 0; vec_avx2.c's tails and gemm.c's edge tiles */
__attribute__((target("avx2"))) static inline __m256i lf_avx2_lanes(long left)
{
    int l = left > 8 ? 8 : left < 0 ? 0 : (int)left;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(l), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

void lf_avx2_dot_rows(float *out, long ldo, const float *w, long ldw, const float *x, long ldx, int M, int rows,
                      int K);
void lf_avx2_dot_short_rows(float *out, const float *w, long ldw, const float *x, int rows, int K);
void lf_avx2_weighted_rows(float *out, const float *p, const float *v, long ldv, int rows, int n, int acc);
float lf_avx2_sumsq(const float *x, int n);
void lf_avx2_norm_apply(float *out, const float *x, float r, const float *w, float offset, int n);
void lf_avx2_rmsnorm_bwd_row(float *dx, const float *g, const float *x, const float *w, float offset, float r,
                             int n);
void lf_avx2_mul_axpy(float *y, const float *a, const float *b, float s, int n);
void lf_avx2_axpy(float *y, float a, const float *x, int n);
void lf_avx2_scale(float *x, float a, int n);
float lf_avx2_exp_sum(float *x, int n, float sub);
void lf_avx2_silu_mul(float *out, const float *gate, const float *up, long n);
void lf_avx2_silu_mul_bwd(float *dgate, float *dup, const float *dout, const float *gate, const float *up, long n);
void lf_avx2_qk_tile(float *sc, long lds, const float *q, long ldq, int nr, const float *kt, long ldt, int n, int d,
                     float scale);
void lf_avx2_pv_tile(float *out, long ldo, const float *p, long ldp, int nr, const float *v, long ldv, int n, int d);

#endif

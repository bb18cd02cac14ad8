/* kernels/cpu/gemm.h — the f32 matrix product under every CPU product of
 * several rows (matmul.h's forward, grad.h's two backward products).
 *
 *     C[M,N] = alpha * op(A) @ op(B) + beta * C      (row-major)
 *     op(A)[i,k] = ta ? A[k*lda + i] : A[i*lda + k]
 *     op(B)[k,j] = tb ? B[j*ldb + k] : B[k*ldb + j]
 *
 * On AVX-512 and AVX2 CPUs, for the shapes where it pays (see gemm.c:
 * training's products, and LoRA's narrow ones, N <= 16), lf's own product
 * runs (gemm.c), on the calling thread alone inside an OpenMP parallel
 * region (the attention's per-head products); elsewhere OpenBLAS's
 * cblas_sgemm.  Which of the two runs depends on the shape and the CPU
 * only, never on the number of threads; lf's own sums each element of C in
 * the same order at any thread count (OpenBLAS's sums may change with it).
 * scripts/bench/gemm.sh times both on training's shapes. */
#ifndef LF_KERNELS_CPU_GEMM_H
#define LF_KERNELS_CPU_GEMM_H

#ifdef __cplusplus
extern "C" {
#endif

/* beta == 0: C is written without being read (NaN there does not spread).
   C must not alias A or B. */
void lf_cpu_sgemm_f32(int ta, int tb, int M, int N, int K, float alpha, const float *A, long lda,
                      const float *B, long ldb, float beta, float *C, long ldc);

/* B packed once into the tile's panels, for many products with it as B
   (a frozen weight in training: the packing is otherwise redone by every
   product).  panels is NULL where lf's own product would not take B
   through its wide tile (an older CPU, N < 64, K < 16); the products then
   read B itself.  B must stay unchanged while p is in use (or p be
   packed again from it: lf_cpu_packed_b_repack). */
struct lf_cpu_packed_b {
    int tb, N, K;   /* op(B) is K x N (tb: B is stored N x K) */
    const float *B;
    long ldb;
    float *panels;  /* N rounded up to whole panels, times K floats */
};

/* 0, or -1 when out of memory */
int lf_cpu_packed_b_init(struct lf_cpu_packed_b *p, int tb, int N, int K, const float *B, long ldb);
/* p packed again from B, of p's shape and leading dimension (a weight
   that changed, or another of the same shape) */
void lf_cpu_packed_b_repack(struct lf_cpu_packed_b *p, const float *B);
void lf_cpu_packed_b_free(struct lf_cpu_packed_b *p);

/* lf_cpu_sgemm_f32(ta, B->tb, M, B->N, B->K, alpha, A, lda, B->B, B->ldb,
   beta, C, ldc) with B's packing done beforehand: the same bits. */
void lf_cpu_sgemm_packed_f32(int ta, int M, float alpha, const float *A, long lda, const struct lf_cpu_packed_b *B,
                             float beta, float *C, long ldc);

/* The same product always through OpenBLAS (tests and benchmarks compare). */
void lf_cpu_sgemm_blas_f32(int ta, int tb, int M, int N, int K, float alpha, const float *A, long lda,
                           const float *B, long ldb, float beta, float *C, long ldc);

#ifdef __cplusplus
}
#endif

#endif

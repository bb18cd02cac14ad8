/* kernels/cpu/matmul.h — CPU matrix multiply: gemm.h's product for
 * several rows, lf's own matrix-vector product for one (decoding).
 *
 * Layout ("nt", the nn.Linear layout), all row-major and contiguous:
 *     out[M,N] = a[M,K] @ b[N,K]^T
 *     out[m*N + n] = sum_k a[m*K + k] * b[n*K + k]
 * i.e. a is activations [tokens, in_features], b is a weight
 * [out_features, in_features].  The CUDA GEMM (kernels/cuda/gemm.h) uses
 * the same layout so its results compare element for element. */
#ifndef LF_KERNELS_CPU_MATMUL_H
#define LF_KERNELS_CPU_MATMUL_H

#ifdef __cplusplus
extern "C" {
#endif

/* out[M,N] = a[M,K] @ b[N,K]^T in f32; out must not alias a or b.
   M, N, K >= 0 (K == 0 gives zeros). */
void lf_cpu_matmul_nt_f32(float *out, const float *a, const float *b,
                          int M, int N, int K);

/* out[M,N] += scale * a[M,K] @ b[N,K]^T (LoRA's low-rank update). */
void lf_cpu_matmul_nt_acc_f32(float *out, const float *a, const float *b,
                              int M, int N, int K, float scale);

/* Rows of activations up to which lf_cpu_matmul_nt_f32 reads the weight
   once for all of them (lf_cpu_gemv_multi_f32) instead of calling sgemm:
   decoding, where the weights' memory traffic is the cost. */
#define LF_CPU_GEMV_MAX_M 8

/* out[n] = sum_k w[n*K + k] * x[k] for n < N: the product of a weight
   [N, K] with one vector (one token), rows split over the OpenMP threads,
   the weight read once in place.  Each out[n] depends only on row n and x,
   never on the number of threads.  out must not alias w or x. */
void lf_cpu_gemv_f32(float *out, const float *w, const float *x, int N, int K);

/* count products of the same M vectors x [M, K] (M small: a few tokens)
   with count weights, in one parallel region (q, k and v; gate and up):
   out[i][m*N[i] + n] = sum_k w[i][n*K + k] * x[m*K + k] for n < N[i],
   m < M, i < count.  The rows of all the weights are split over the
   threads together, each row read once for the M vectors.  Every result
   has the bits lf_cpu_gemv_f32 gives it alone. */
void lf_cpu_gemv_multi_f32(float *const *out, const float *const *w, const int *N, int count, const float *x,
                           int M, int K);

#ifdef __cplusplus
}
#endif

#endif

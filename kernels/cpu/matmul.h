/* kernels/cpu/matmul.h — CPU reference matrix multiply (OpenBLAS sgemm).
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

#ifdef __cplusplus
}
#endif

#endif

/* kernels/cuda/gemm.h — bf16 GEMM on cuBLASLt: bf16 inputs, f32 accumulate
 * (CUBLAS_COMPUTE_32F), f32 or bf16 output, caller-provided workspace.
 *
 * Layout is the CPU reference's (kernels/cpu/matmul.h), row-major:
 *     out[M,N] = a[M,K] @ b[N,K]^T
 * a, b are bf16 (uint16_t bit patterns); out is float (CUDA_R_32F) or bf16
 * (CUDA_R_16BF).  All pointers are device memory aligned to 256 bytes
 * (cudaMalloc's alignment; checked at run time).
 *
 * A plan holds the descriptors and the algorithm cuBLASLt's heuristic picked
 * for one shape, so a training step pays for the heuristic once:
 *     lf_cuda_matmul_nt_plan p;
 *     lf_cuda_matmul_nt_plan_init(&p, lt, M, N, K, CUDA_R_16BF, ws_size);
 *     lf_cuda_matmul_nt_run(&p, lt, out, a, b, ws, ws_size, stream);  // many times
 *     lf_cuda_matmul_nt_plan_free(&p);
 * lf_cuda_matmul_nt_bf16 does all three for a single call. */
#ifndef LF_KERNELS_CUDA_GEMM_H
#define LF_KERNELS_CUDA_GEMM_H

#include <stddef.h>
#include <stdint.h>
#include <cuda_runtime.h>
#include <cublasLt.h>

#ifdef __cplusplus
extern "C" {
#endif

/* workspace size to give cuBLASLt: 32 MiB is what Hopper kernels ask for */
#define LF_CUBLASLT_WORKSPACE_BYTES ((size_t)32 << 20)

typedef struct {
    int M, N, K;
    cudaDataType_t out_type;            /* CUDA_R_32F or CUDA_R_16BF */
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t lay_b;       /* cuBLAS "A": b viewed column-major */
    cublasLtMatrixLayout_t lay_a;       /* cuBLAS "B": a viewed column-major */
    cublasLtMatrixLayout_t lay_out;     /* cuBLAS "C" and "D" */
    cublasLtMatmulAlgo_t algo;
    size_t workspace_needed;            /* bytes the chosen algorithm uses */
} lf_cuda_matmul_nt_plan;

/* Pick an algorithm for out[M,N] = a[M,K] @ b[N,K]^T that needs at most
   workspace_limit bytes of workspace.  Exits with a message when cuBLASLt
   has none.  M, N, K >= 1. */
void lf_cuda_matmul_nt_plan_init(lf_cuda_matmul_nt_plan *p, cublasLtHandle_t lt,
                                 int M, int N, int K, cudaDataType_t out_type,
                                 size_t workspace_limit);
/* Queue the GEMM on stream; workspace_size >= p->workspace_needed. */
void lf_cuda_matmul_nt_run(const lf_cuda_matmul_nt_plan *p, cublasLtHandle_t lt,
                           void *out, const uint16_t *a, const uint16_t *b,
                           void *workspace, size_t workspace_size,
                           cudaStream_t stream);
void lf_cuda_matmul_nt_plan_free(lf_cuda_matmul_nt_plan *p);

/* One-shot: plan, run, free. */
void lf_cuda_matmul_nt_bf16(cublasLtHandle_t lt, void *out, cudaDataType_t out_type,
                            const uint16_t *a, const uint16_t *b, int M, int N, int K,
                            void *workspace, size_t workspace_size, cudaStream_t stream);

/* ---- general GEMM with a plan cache (the model's products) --------------
 * Row-major, as the CPU reference's matmul ops:
 *     out[M,N] = alpha * A @ B + beta * out
 * A is a [M,K], or with a_t a [K,M] read transposed; B is b [K,N], or with
 * b_t b [N,K] read transposed (so a_t 0, b_t 1 is lf_cpu_matmul_nt_f32,
 * 0 0 lf_cpu_matmul_nn_f32, 1 0 lf_cpu_matmul_tn_acc_f32).  f32 in and
 * out, f32 accumulation without TF32 (CUBLAS_COMPUTE_32F): the f32 mode
 * of the CUDA path, for tight checks against the CPU.  With beta 0, out is
 * not read.  Pointers need only f32 alignment: the alignment they have is
 * part of the plan's key, so cuBLASLt picks an algorithm that may use it.
 * A context caches the plans of the last LF_CUDA_GEMM_PLANS shapes, so a
 * training step pays for cuBLASLt's heuristic once per shape.  M, N or K
 * of 0 is an empty product (out scaled by beta when K is 0). */
#define LF_CUDA_GEMM_PLANS 64
typedef struct lf_cuda_gemm lf_cuda_gemm;
/* workspace: device memory of workspace_size bytes (the caller's) */
lf_cuda_gemm *lf_cuda_gemm_new(cublasLtHandle_t lt, void *workspace, size_t workspace_size);
void lf_cuda_gemm_free(lf_cuda_gemm *g);
void lf_cuda_gemm_f32(lf_cuda_gemm *g, float *out, const float *a, const float *b, int M, int N, int K, int a_t,
                      int b_t, float alpha, float beta, cudaStream_t stream);
/* The same over rows of the given strides (elements): a's rows lda apart,
   b's ldb, out's ldo; lf_cuda_gemm_f32 is lda = a_t ? M : K, ldb = b_t ?
   K : N, ldo = N.  For products over column slices of wider matrices (the
   LoRA pairs of modules that share an input, train_cuda.cu). */
void lf_cuda_gemm_f32_ld(lf_cuda_gemm *g, float *out, int ldo, const float *a, int lda, const float *b, int ldb,
                         int M, int N, int K, int a_t, int b_t, float alpha, float beta, cudaStream_t stream);
/* The same with bf16 inputs (uint16_t bit patterns) on the tensor cores:
   f32 accumulation, f32 out (the bf16 mode's products). */
void lf_cuda_gemm_bf16(lf_cuda_gemm *g, float *out, const uint16_t *a, const uint16_t *b, int M, int N, int K,
                       int a_t, int b_t, float alpha, float beta, cudaStream_t stream);

/* out = alpha A B + beta c, c another f32 [M,N] (cuBLASLt's C apart from
   its D): a residual added in the product's epilogue (c = the residual,
   beta 1) instead of by a pass of its own.  c may be out. */
void lf_cuda_gemm_f32_c(lf_cuda_gemm *g, float *out, const float *c, const float *a, const float *b, int M, int N,
                        int K, int a_t, int b_t, float alpha, float beta, cudaStream_t stream);
void lf_cuda_gemm_bf16_c(lf_cuda_gemm *g, float *out, const float *c, const uint16_t *a, const uint16_t *b, int M,
                         int N, int K, int a_t, int b_t, float alpha, float beta, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif

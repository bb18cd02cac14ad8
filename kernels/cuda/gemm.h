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

#ifdef __cplusplus
}
#endif

#endif

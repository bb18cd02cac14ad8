/* kernels/cuda/gemm.cu — the cuBLASLt bf16 GEMM declared in gemm.h.
 *
 * cuBLASLt is column-major.  A row-major [R,C] matrix is the same memory as a
 * column-major [C,R] one, so row-major out[M,N] = a[M,K] @ b[N,K]^T is
 * column-major out'[N,M] = op_T(b'[K,N]) @ a'[K,M]: cuBLAS "A" is b
 * (transposed, ld K), cuBLAS "B" is a (as is, ld K), C = D = out (ld N),
 * with cuBLAS m = N, n = M, k = K.  That is the "TN" case, the best
 * supported one on tensor cores. */
#include "gemm.h"
#include "cuda_check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void lf_gemm_die(const char *file, int line, const char *msg,
                        const lf_cuda_matmul_nt_plan *p)
{
    fprintf(stderr, "%s:%d: lf_cuda_matmul_nt: %s (M=%d N=%d K=%d out=%s)\n",
            file, line, msg, p->M, p->N, p->K,
            p->out_type == CUDA_R_32F ? "f32" : "bf16");
    exit(1);
}

extern "C" void lf_cuda_matmul_nt_plan_init(lf_cuda_matmul_nt_plan *p,
                                            cublasLtHandle_t lt, int M, int N,
                                            int K, cudaDataType_t out_type,
                                            size_t workspace_limit)
{
    memset(p, 0, sizeof *p);
    p->M = M;
    p->N = N;
    p->K = K;
    p->out_type = out_type;
    if (M < 1 || N < 1 || K < 1)
        lf_gemm_die(__FILE__, __LINE__, "shape must be positive", p);
    if (out_type != CUDA_R_32F && out_type != CUDA_R_16BF)
        lf_gemm_die(__FILE__, __LINE__, "output type must be CUDA_R_32F or CUDA_R_16BF", p);

    LF_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    LF_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA,
                                                   &ta, sizeof ta));
    LF_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB,
                                                   &tb, sizeof tb));
    /* layouts describe the stored matrices, before op() */
    LF_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->lay_b, CUDA_R_16BF, K, N, K));
    LF_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->lay_a, CUDA_R_16BF, K, M, K));
    LF_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->lay_out, out_type, N, M, N));

    cublasLtMatmulPreference_t pref;
    LF_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    LF_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_limit,
        sizeof workspace_limit));
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    memset(&res, 0, sizeof res);
    LF_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(lt, p->op, p->lay_b, p->lay_a,
                                                   p->lay_out, p->lay_out, pref,
                                                   1, &res, &found));
    LF_CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    if (found < 1 || res.state != CUBLAS_STATUS_SUCCESS)
        lf_gemm_die(__FILE__, __LINE__, "cuBLASLt heuristic found no algorithm", p);
    p->algo = res.algo;
    p->workspace_needed = res.workspaceSize;
}

extern "C" void lf_cuda_matmul_nt_run(const lf_cuda_matmul_nt_plan *p,
                                      cublasLtHandle_t lt, void *out,
                                      const uint16_t *a, const uint16_t *b,
                                      void *workspace, size_t workspace_size,
                                      cudaStream_t stream)
{
    /* the heuristic assumed cuBLASLt's default 256-byte alignment */
    if (((uintptr_t)out | (uintptr_t)a | (uintptr_t)b) % 256 != 0)
        lf_gemm_die(__FILE__, __LINE__, "a, b and out must be 256-byte aligned", p);
    if (workspace_size < p->workspace_needed || (p->workspace_needed && !workspace))
        lf_gemm_die(__FILE__, __LINE__, "workspace smaller than the plan needs", p);
    const float alpha = 1.0f, beta = 0.0f;
    LF_CUBLAS_CHECK(cublasLtMatmul(lt, p->op, &alpha, b, p->lay_b, a, p->lay_a,
                                   &beta, out, p->lay_out, out, p->lay_out,
                                   &p->algo, workspace, workspace_size, stream));
}

extern "C" void lf_cuda_matmul_nt_plan_free(lf_cuda_matmul_nt_plan *p)
{
    if (p->lay_out)
        LF_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->lay_out));
    if (p->lay_a)
        LF_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->lay_a));
    if (p->lay_b)
        LF_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->lay_b));
    if (p->op)
        LF_CUBLAS_CHECK(cublasLtMatmulDescDestroy(p->op));
    memset(p, 0, sizeof *p);
}

extern "C" void lf_cuda_matmul_nt_bf16(cublasLtHandle_t lt, void *out,
                                       cudaDataType_t out_type, const uint16_t *a,
                                       const uint16_t *b, int M, int N, int K,
                                       void *workspace, size_t workspace_size,
                                       cudaStream_t stream)
{
    lf_cuda_matmul_nt_plan p;
    lf_cuda_matmul_nt_plan_init(&p, lt, M, N, K, out_type, workspace_size);
    lf_cuda_matmul_nt_run(&p, lt, out, a, b, workspace, workspace_size, stream);
    lf_cuda_matmul_nt_plan_free(&p);
}

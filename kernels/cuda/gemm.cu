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
#include "launch.h"

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

/* ---- general GEMM with a plan cache ----
 *
 * Row-major out[M,N] = A @ B is column-major out'[N,M] = B' @ A' with the
 * matrices' memory unchanged: cuBLAS "A" is b, cuBLAS "B" is a.  b stored
 * [K,N] (no b_t) is column-major [N,K] with ld N, taken as is; stored [N,K]
 * (b_t) it is column-major [K,N] with ld K, taken transposed.  Likewise a:
 * [M,K] is column-major [K,M] (ld K, as is), [K,M] is [M,K] (ld M,
 * transposed).  out' is [N,M] with ld N, f32. */

struct lf_gemm_plan {
    int M, N, K, a_t, b_t, lda, ldb, ldo, align; /* the key (M 0: an empty slot) ... */
    cudaDataType_t in;            /* ... and the inputs' type */
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t lay_b, lay_a, lay_out;
    cublasLtMatmulAlgo_t algo;
};

struct lf_cuda_gemm {
    cublasLtHandle_t lt;
    void *workspace;
    size_t workspace_size;
    struct lf_gemm_plan plans[LF_CUDA_GEMM_PLANS];
    int next; /* the slot the next new plan replaces (round robin) */
};

static void lf_gemm_plan_free(struct lf_gemm_plan *p)
{
    if (!p->M)
        return;
    LF_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->lay_out));
    LF_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->lay_a));
    LF_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->lay_b));
    LF_CUBLAS_CHECK(cublasLtMatmulDescDestroy(p->op));
    memset(p, 0, sizeof *p);
}

extern "C" lf_cuda_gemm *lf_cuda_gemm_new(cublasLtHandle_t lt, void *workspace, size_t workspace_size)
{
    lf_cuda_gemm *g = (lf_cuda_gemm *)calloc(1, sizeof *g);
    if (!g) {
        fprintf(stderr, "lf_cuda_gemm_new: out of memory\n");
        exit(1);
    }
    g->lt = lt;
    g->workspace = workspace;
    g->workspace_size = workspace_size;
    return g;
}

extern "C" void lf_cuda_gemm_free(lf_cuda_gemm *g)
{
    if (!g)
        return;
    for (int i = 0; i < LF_CUDA_GEMM_PLANS; i++)
        lf_gemm_plan_free(&g->plans[i]);
    free(g);
}

static void lf_gemm_plan_make(lf_cuda_gemm *g, struct lf_gemm_plan *p, int M, int N, int K, int a_t, int b_t,
                              int lda, int ldb, int ldo, int align, cudaDataType_t in)
{
    p->M = M;
    p->N = N;
    p->K = K;
    p->a_t = a_t;
    p->b_t = b_t;
    p->lda = lda;
    p->ldb = ldb;
    p->ldo = ldo;
    p->align = align;
    p->in = in;
    LF_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t ta = b_t ? CUBLAS_OP_T : CUBLAS_OP_N, tb = a_t ? CUBLAS_OP_T : CUBLAS_OP_N;
    LF_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    LF_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    if (b_t)
        LF_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->lay_b, in, K, N, ldb));
    else
        LF_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->lay_b, in, N, K, ldb));
    if (a_t)
        LF_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->lay_a, in, M, K, lda));
    else
        LF_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->lay_a, in, K, M, lda));
    LF_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->lay_out, CUDA_R_32F, N, M, ldo));

    cublasLtMatmulPreference_t pref;
    LF_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    LF_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                         &g->workspace_size, sizeof g->workspace_size));
    uint32_t al = (uint32_t)align, al_out = (uint32_t)(align < 4 ? 4 : align);
    LF_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al,
                                                         sizeof al));
    LF_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al,
                                                         sizeof al));
    LF_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_out,
                                                         sizeof al_out));
    LF_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_out,
                                                         sizeof al_out));
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    memset(&res, 0, sizeof res);
    LF_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(g->lt, p->op, p->lay_b, p->lay_a, p->lay_out, p->lay_out, pref,
                                                   1, &res, &found));
    LF_CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    if (found < 1 || res.state != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "lf_cuda_gemm: cuBLASLt has no algorithm for M=%d N=%d K=%d a_t=%d b_t=%d align=%d %s\n",
                M, N, K, a_t, b_t, align, in == CUDA_R_16BF ? "bf16" : "f32");
        exit(1);
    }
    p->algo = res.algo;
}

/* out = beta c (an empty product: K = 0), 0 when beta is 0 */
static __global__ void lf_gemm_scale_kernel(float *out, const float *c, size_t n, float beta)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = beta == 0.0f ? 0.0f : c[i] * beta;
}

/* out = alpha A B + beta c (c: out when NULL; the same layout) */
static void lf_gemm_run(lf_cuda_gemm *g, float *out, const float *c, int ldo, const void *a, int lda, const void *b,
                        int ldb, int M, int N, int K, int a_t, int b_t, float alpha, float beta, cudaDataType_t in,
                        cudaStream_t stream)
{
    if (!c)
        c = out;
    if (M < 0 || N < 0 || K < 0) {
        fprintf(stderr, "lf_cuda_gemm: negative shape M=%d N=%d K=%d\n", M, N, K);
        exit(1);
    }
    if (lda < (a_t ? M : K) || ldb < (b_t ? K : N) || ldo < N) {
        fprintf(stderr, "lf_cuda_gemm: a row stride is shorter than its row (M=%d N=%d K=%d, lda %d ldb %d ldo %d)\n",
                M, N, K, lda, ldb, ldo);
        exit(1);
    }
    if (!M || !N)
        return;
    if (!K) {
        if (beta != 1.0f || c != out) {
            if (ldo != N) {
                fprintf(stderr, "lf_cuda_gemm: an empty product into strided rows\n");
                exit(1);
            }
            size_t n = (size_t)M * N;
            lf_gemm_scale_kernel<<<lf_cuda_grid(n), lf_cuda_block, 0, stream>>>(out, c, n, beta);
            LF_CUDA_CHECK_LAST();
        }
        return;
    }
    /* the alignment every pointer and row has (at least the element's), up to 256 */
    int elem = in == CUDA_R_16BF ? 2 : 4;
    uintptr_t bits = (uintptr_t)a | (uintptr_t)b;
    if ((bits & (uintptr_t)(elem - 1)) || ((uintptr_t)out & 3)) {
        fprintf(stderr, "lf_cuda_gemm: a pointer is not aligned to its element\n");
        exit(1);
    }
    bits |= (uintptr_t)out | (uintptr_t)c | (uintptr_t)lda * elem | (uintptr_t)ldb * elem | (uintptr_t)ldo * 4;
    int align = elem;
    while (align < 256 && !(bits & (uintptr_t)(align * 2 - 1)))
        align *= 2;
    struct lf_gemm_plan *p = NULL;
    for (int i = 0; i < LF_CUDA_GEMM_PLANS && !p; i++) {
        struct lf_gemm_plan *q = &g->plans[i];
        if (q->M == M && q->N == N && q->K == K && q->a_t == a_t && q->b_t == b_t && q->lda == lda &&
            q->ldb == ldb && q->ldo == ldo && q->align == align && q->in == in)
            p = q;
    }
    if (!p) {
        p = &g->plans[g->next];
        g->next = (g->next + 1) % LF_CUDA_GEMM_PLANS;
        lf_gemm_plan_free(p);
        lf_gemm_plan_make(g, p, M, N, K, a_t, b_t, lda, ldb, ldo, align, in);
    }
    LF_CUBLAS_CHECK(cublasLtMatmul(g->lt, p->op, &alpha, b, p->lay_b, a, p->lay_a, &beta, c, p->lay_out, out,
                                   p->lay_out, &p->algo, g->workspace, g->workspace_size, stream));
}

extern "C" void lf_cuda_gemm_f32(lf_cuda_gemm *g, float *out, const float *a, const float *b, int M, int N, int K,
                                 int a_t, int b_t, float alpha, float beta, cudaStream_t stream)
{
    lf_gemm_run(g, out, NULL, N, a, a_t ? M : K, b, b_t ? K : N, M, N, K, a_t, b_t, alpha, beta, CUDA_R_32F, stream);
}

extern "C" void lf_cuda_gemm_f32_ld(lf_cuda_gemm *g, float *out, int ldo, const float *a, int lda, const float *b,
                                    int ldb, int M, int N, int K, int a_t, int b_t, float alpha, float beta,
                                    cudaStream_t stream)
{
    lf_gemm_run(g, out, NULL, ldo, a, lda, b, ldb, M, N, K, a_t, b_t, alpha, beta, CUDA_R_32F, stream);
}

extern "C" void lf_cuda_gemm_bf16(lf_cuda_gemm *g, float *out, const uint16_t *a, const uint16_t *b, int M, int N,
                                  int K, int a_t, int b_t, float alpha, float beta, cudaStream_t stream)
{
    lf_gemm_run(g, out, NULL, N, a, a_t ? M : K, b, b_t ? K : N, M, N, K, a_t, b_t, alpha, beta, CUDA_R_16BF, stream);
}

extern "C" void lf_cuda_gemm_f32_c(lf_cuda_gemm *g, float *out, const float *c, const float *a, const float *b, int M,
                                   int N, int K, int a_t, int b_t, float alpha, float beta, cudaStream_t stream)
{
    lf_gemm_run(g, out, c, N, a, a_t ? M : K, b, b_t ? K : N, M, N, K, a_t, b_t, alpha, beta, CUDA_R_32F, stream);
}

extern "C" void lf_cuda_gemm_bf16_c(lf_cuda_gemm *g, float *out, const float *c, const uint16_t *a, const uint16_t *b,
                                    int M, int N, int K, int a_t, int b_t, float alpha, float beta, cudaStream_t stream)
{
    lf_gemm_run(g, out, c, N, a, a_t ? M : K, b, b_t ? K : N, M, N, K, a_t, b_t, alpha, beta, CUDA_R_16BF, stream);
}

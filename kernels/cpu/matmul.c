/* kernels/cpu/matmul.c — lf_cpu_matmul_nt_f32 (see matmul.h for the layout)
 * on top of OpenBLAS cblas_sgemm.  Threading is OpenBLAS's own
 * (OPENBLAS_NUM_THREADS / OMP_NUM_THREADS). */
#include "matmul.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>

void lf_cpu_matmul_nt_f32(float *out, const float *a, const float *b,
                          int M, int N, int K)
{
    if (M < 0 || N < 0 || K < 0) {
        fprintf(stderr, "%s:%d: lf_cpu_matmul_nt_f32: bad shape M=%d N=%d K=%d\n",
                __FILE__, __LINE__, M, N, K);
        exit(1);
    }
    if (M == 0 || N == 0)
        return;
    if (K == 0) {
        memset(out, 0, (size_t)M * (size_t)N * sizeof *out);
        return;
    }
    /* one row (decoding a token): a matrix-vector product, which reads the
       weight once instead of packing it first as sgemm does */
    if (M == 1) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, N, K, 1.0f, b, K, a, 1, 0.0f, out, 1);
        return;
    }
    /* row-major: out = 1 * a * b^T + 0 * out; leading dims are row lengths */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K,
                1.0f, a, K, b, K, 0.0f, out, N);
}

void lf_cpu_matmul_nt_acc_f32(float *out, const float *a, const float *b,
                              int M, int N, int K, float scale)
{
    if (M <= 0 || N <= 0 || K <= 0)
        return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K,
                scale, a, K, b, K, 1.0f, out, N);
}

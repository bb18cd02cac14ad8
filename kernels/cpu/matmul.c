/* kernels/cpu/matmul.c — lf_cpu_matmul_nt_f32 (see matmul.h for the layout)
 * on top of gemm.c's product (lf's own on AVX-512 and AVX2, else
 * OpenBLAS); and the matrix-vector products of one token
 * (lf_cpu_gemv_f32, lf_cpu_gemv_multi_f32): rows split over OpenMP
 * threads, each row a dot product of vec.c, the weight streamed from
 * memory once. */
#include "matmul.h"
#include "gemm.h"
#include "vec.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Rows [r0, r1) of the matrices taken one after another. */
static void gemv_rows(float *const *out, const float *const *w, const int *N, int count, const float *x, int M,
                      int K, long r0, long r1)
{
    long base = 0;
    for (int i = 0; i < count && base < r1; base += N[i], i++) {
        long lo = r0 - base, hi = r1 - base;
        if (lo < 0)
            lo = 0;
        if (hi > N[i])
            hi = N[i];
        if (lo < hi)
            lf_vec_dot_rows_m_f32(out[i] + lo, N[i], w[i] + lo * (long)K, K, x, K, M, (int)(hi - lo), K);
    }
}

void lf_cpu_gemv_multi_f32(float *const *out, const float *const *w, const int *N, int count, const float *x,
                           int M, int K)
{
    long R = 0;
    for (int i = 0; i < count; i++) {
        if (N[i] < 0 || K < 0 || M < 0) {
            fprintf(stderr, "%s:%d: lf_cpu_gemv_multi_f32: bad shape N=%d K=%d\n", __FILE__, __LINE__, N[i], K);
            exit(1);
        }
        R += N[i];
    }
    if (R == 0 || M == 0)
        return;
    if (K == 0) {
        for (int i = 0; i < count; i++)
            memset(out[i], 0, (size_t)M * (size_t)N[i] * sizeof(float));
        return;
    }
    /* one contiguous share of the rows per thread: one stream each is what
       the hardware prefetcher follows best (chunks handed out dynamically
       measured slower); a row's result does not depend on the split */
    #pragma omp parallel if (R * K >= 32768)
    {
        long nt = omp_get_num_threads(), t = omp_get_thread_num();
        gemv_rows(out, w, N, count, x, M, K, R * t / nt, R * (t + 1) / nt);
    }
}

void lf_cpu_gemv_f32(float *out, const float *w, const float *x, int N, int K)
{
    lf_cpu_gemv_multi_f32(&out, &w, &N, 1, x, 1, K);
}

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
    /* a few rows (decoding): the weight read once for all of them instead
       of packed first as sgemm does */
    if (M <= LF_CPU_GEMV_MAX_M) {
        lf_cpu_gemv_multi_f32(&out, &b, &N, 1, a, M, K);
        return;
    }
    /* row-major: out = 1 * a * b^T + 0 * out; leading dims are row lengths */
    lf_cpu_sgemm_f32(0, 1, M, N, K, 1.0f, a, K, b, K, 0.0f, out, N);
}

void lf_cpu_matmul_nt_acc_f32(float *out, const float *a, const float *b,
                              int M, int N, int K, float scale)
{
    if (M <= 0 || N <= 0 || K <= 0)
        return;
    lf_cpu_sgemm_f32(0, 1, M, N, K, scale, a, K, b, K, 1.0f, out, N);
}

/* scripts/bench/roofline.c — what this machine can do right now, for the
 * CPU benchmarks to set their results against: the memory bandwidth of a
 * plain read of a buffer far larger than the caches (decoding one token
 * reads every weight once, so this bounds its speed), and OpenBLAS's sgemm
 * rate on a prefill-sized product (which bounds a prefill's).  Both with
 * OMP_NUM_THREADS / OPENBLAS_NUM_THREADS threads, best of 5.  Prints one
 * JSON line: {"stream_gbs": ..., "sgemm_gflops": ...}.
 *
 * Built by forward.sh with cc -O3 -march=native -fopenmp ... -lopenblas. */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
    size_t n = (size_t)512 << 20 >> 2; /* 512 MiB of floats */
    float *buf = malloc(n * sizeof *buf);
    if (!buf) {
        fprintf(stderr, "roofline: out of memory\n");
        return 1;
    }
    #pragma omp parallel for
    for (size_t i = 0; i < n; i++)
        buf[i] = (float)(i & 7);
    double best = 1e30, sum = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t = omp_get_wtime();
        float s = 0;
        #pragma omp parallel for simd reduction(+ : s)
        for (size_t i = 0; i < n; i++)
            s += buf[i];
        t = omp_get_wtime() - t;
        best = t < best ? t : best;
        sum += s;
    }
    double stream = (double)n * sizeof *buf / best / 1e9;
    free(buf);

    int M = 1024, N = 2048, K = 768; /* 4 prompts of 256 tokens through an MLP-sized weight */
    float *a = malloc((size_t)M * K * sizeof *a), *b = malloc((size_t)N * K * sizeof *b);
    float *c = malloc((size_t)M * N * sizeof *c);
    if (!a || !b || !c) {
        fprintf(stderr, "roofline: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < (size_t)M * K; i++)
        a[i] = (float)(i % 13) * 0.1f;
    for (size_t i = 0; i < (size_t)N * K; i++)
        b[i] = (float)(i % 7) * 0.1f;
    best = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        double t = omp_get_wtime();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
        t = omp_get_wtime() - t;
        best = t < best ? t : best;
    }
    double gflops = 2.0 * M * N * K / best / 1e9;
    printf("{\"stream_gbs\": %.2f, \"sgemm_gflops\": %.1f, \"checksum\": %g}\n", stream, gflops, sum + c[7]);
    free(a);
    free(b);
    free(c);
    return 0;
}

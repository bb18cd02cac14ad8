/* scripts/bench/gemm.c — lf's own f32 product (kernels/cpu/gemm.c,
 * lf_cpu_sgemm_f32) against OpenBLAS's cblas_sgemm (lf_cpu_sgemm_blas_f32,
 * what lf called before) on the products of a training step of
 * scripts/bench/train.sh's model (1024 token rows, hidden 384, MLP 1024, 2 KV
 * heads of 64, vocab 32000) and of its LoRA adapters (rank 8 and 16).
 * Each shape: the two called in turn, 7 rounds, each round enough calls for
 * ~0.1 s of work; the best round of each; GFLOP/s = 2 M N K / time.  The
 * first block's total weights each shape by how often a full fine-tuning
 * step does it; the second's counts the adapter products of 42 modules
 * (7 a layer, as LoRA on every linear layer) as if each were 384 -> 384,
 * rank 16 (the rank 8 rows are shown, not counted).
 * Prints a table and one JSON line per block.
 *
 * Built by gemm.sh against build/dyn/libkernels_cpu.a; threads:
 * OMP_NUM_THREADS (both). */
#include "cpu/gemm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

struct shape {
    const char *what;
    int ta, tb, M, N, K, per_step;
};

/* form nt: x W^T; nn: dy W; tn: dy^T x (a weight's gradient) */
static const struct shape full[] = {
    { "q, o: x W^T", 0, 1, 1024, 384, 384, 12 },       { "k, v: x W^T", 0, 1, 1024, 128, 384, 12 },
    { "gate, up: x W^T", 0, 1, 1024, 1024, 384, 12 },  { "down: x W^T", 0, 1, 1024, 384, 1024, 6 },
    { "head: x E^T", 0, 1, 1020, 32000, 384, 1 },      { "q, o: dy W", 0, 0, 1024, 384, 384, 12 },
    { "k, v: dy W", 0, 0, 1024, 384, 128, 12 },        { "gate, up: dy W", 0, 0, 1024, 384, 1024, 12 },
    { "down: dy W", 0, 0, 1024, 1024, 384, 6 },        { "head: dlogits E", 0, 0, 1020, 384, 32000, 1 },
    { "q, o: dy^T x", 1, 0, 384, 384, 1024, 12 },      { "k, v: dy^T x", 1, 0, 128, 384, 1024, 12 },
    { "gate, up: dy^T x", 1, 0, 1024, 384, 1024, 12 }, { "down: dy^T x", 1, 0, 384, 1024, 1024, 6 },
    { "head: dlogits^T x", 1, 0, 32000, 384, 1020, 1 },
};
/* an adapted 384 -> 384 module, rank 16 and 8: u = x A^T, t = dy B,
   dB = dy^T u, dA = t^T x, and W + s B A (formed for the forward and again
   for the backward) */
static const struct shape lora[] = {
    { "r16 u = x A^T", 0, 1, 1024, 16, 384, 42 },   { "r16 t = dy B", 0, 0, 1024, 16, 384, 42 },
    { "r16 dB = dy^T u", 1, 0, 384, 16, 1024, 42 }, { "r16 dA = t^T x", 1, 0, 16, 384, 1024, 42 },
    { "r16 B A", 0, 0, 384, 384, 16, 84 },          { "r8 u = x A^T", 0, 1, 1024, 8, 384, 0 },
    { "r8 t = dy B", 0, 0, 1024, 8, 384, 0 },       { "r8 dB = dy^T u", 1, 0, 384, 8, 1024, 0 },
    { "r8 dA = t^T x", 1, 0, 8, 384, 1024, 0 },
};

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static float *random_floats(long n)
{
    float *x = malloc(n * sizeof *x);
    if (!x) {
        fprintf(stderr, "gemm: out of memory\n");
        exit(1);
    }
    for (long i = 0; i < n; i++)
        x[i] = (float)rand() / RAND_MAX - 0.5f;
    return x;
}

/* the best seconds per call of each side, into t[0] (lf) and t[1] (OpenBLAS) */
static void time_shape(const struct shape *s, double t[2])
{
    long lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
    float *A = random_floats((long)s->M * s->K), *B = random_floats((long)s->N * s->K);
    float *C = random_floats((long)s->M * s->N);
    double flop = 2.0 * s->M * s->N * s->K;
    int calls = (int)(20e9 / flop) + 1;
    t[0] = t[1] = INFINITY;
    for (int round = 0; round < 7; round++)
        for (int side = 0; side < 2; side++) {
            double t0 = now();
            for (int c = 0; c < calls; c++)
                (side ? lf_cpu_sgemm_blas_f32 : lf_cpu_sgemm_f32)(s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, lda, B,
                                                                 ldb, 0.0f, C, s->N);
            double dt = (now() - t0) / calls;
            t[side] = dt < t[side] ? dt : t[side];
        }
    free(A);
    free(B);
    free(C);
}

static void run(const char *name, const struct shape *shapes, int n)
{
    double sum[2] = { 0, 0 }, flop = 0;
    printf("%-20s %5s %6s %6s %6s  %9s %9s  %5s\n", name, "form", "M", "N", "K", "lf GF/s", "BLAS GF/s", "ratio");
    for (int i = 0; i < n; i++) {
        const struct shape *s = &shapes[i];
        double t[2], f = 2.0 * s->M * s->N * s->K;
        time_shape(s, t);
        printf("%-20s %4c%c %6d %6d %6d  %9.1f %9.1f  %5.2f\n", s->what, s->ta ? 't' : 'n', s->tb ? 't' : 'n', s->M,
               s->N, s->K, f / t[0] / 1e9, f / t[1] / 1e9, t[1] / t[0]);
        sum[0] += s->per_step * t[0];
        sum[1] += s->per_step * t[1];
        flop += s->per_step * f;
    }
    printf("%-20s  a step's products: lf %.1f ms (%.1f GFLOP/s), OpenBLAS %.1f ms (%.1f GFLOP/s), ratio %.3f\n\n",
           "", sum[0] * 1e3, flop / sum[0] / 1e9, sum[1] * 1e3, flop / sum[1] / 1e9, sum[1] / sum[0]);
    printf("{\"block\":\"%s\",\"lf_ms\":%.3f,\"openblas_ms\":%.3f,\"ratio\":%.4f}\n\n", name, sum[0] * 1e3,
           sum[1] * 1e3, sum[1] / sum[0]);
}

int main(void)
{
    srand(1);
    run("full fine-tuning", full, sizeof full / sizeof full[0]);
    run("LoRA", lora, sizeof lora / sizeof lora[0]);
    return 0;
}

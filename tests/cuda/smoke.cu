/* tests/cuda/smoke.cu — GPU smoke test for kernels/cuda: device report,
 * f32 <-> bf16 conversion kernels against the CPU conversion (bit for bit),
 * the cuBLASLt bf16 GEMM against the CPU f32 GEMM of the same bf16 inputs,
 * the general f32 GEMM (lf_cuda_gemm_f32_ld: every transpose pair, rows
 * wider than the matrices, alpha and beta) and the residual added in the
 * epilogue (lf_cuda_gemm_f32_c, lf_cuda_gemm_bf16_c) against a
 * double-precision loop, and the 4096^3 bf16 GEMM's speed.  Prints "PASS name ..." or
 * "FAIL name ..." per check; exits 0 if all pass, 1 if any fails, 2 if
 * there is no usable CUDA device.  --quick skips the timing.
 * Built as $(OUT)/tests/cuda_smoke (not kernels_*: it needs a GPU). */
#include "cpu/bf16.h"
#include "cpu/matmul.h"
#include "cuda/convert.h"
#include "cuda/cuda_check.h"
#include "cuda/gemm.h"

#include "report.h"
#include "test_rng.h"
#include "device.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int is_nan_bf16(uint16_t h) { return (h & 0x7fffu) > 0x7f80u; }

static void print_device(void)
{
    int dev, driver = 0, runtime = 0;
    cudaDeviceProp prop;
    size_t free_b, total_b;
    LF_CUDA_CHECK(cudaGetDevice(&dev));
    LF_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
    LF_CUDA_CHECK(cudaDriverGetVersion(&driver));
    LF_CUDA_CHECK(cudaRuntimeGetVersion(&runtime));
    LF_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    printf("device %d: %s\n", dev, prop.name);
    printf("  compute capability %d.%d, %d SMs, %.1f GiB memory (%.1f GiB free)\n",
           prop.major, prop.minor, prop.multiProcessorCount,
           (double)total_b / (1 << 30), (double)free_b / (1 << 30));
    printf("  driver CUDA %d.%d, runtime CUDA %d.%d, cuBLASLt %zu\n",
           driver / 1000, driver % 1000 / 10, runtime / 1000, runtime % 1000 / 10,
           cublasLtGetVersion());
    fflush(stdout);
}

/* f32 -> bf16 on random bit patterns (with rounding ties and specials
   forced in) and bf16 -> f32 on all 65536 values, both against the CPU */
static void check_convert(void)
{
    const size_t n = (size_t)1 << 24;
    float *h_in = (float *)xmalloc(n * sizeof(float));
    uint16_t *h_gpu = (uint16_t *)xmalloc(n * sizeof(uint16_t));
    uint16_t *h_cpu = (uint16_t *)xmalloc(n * sizeof(uint16_t));
    static const uint32_t low[] = { 0x0000u, 0x7fffu, 0x8000u, 0x8001u, 0xffffu };
    static const uint32_t special[] = {
        0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7f7fffffu,
        0xff7fffffu, 0x7fc00000u, 0x7f800001u, 0x00008000u, 0x00018000u,
        0x3f808000u, 0x3f818000u, 0x00000001u, 0x807fffffu,
    };
    for (size_t i = 0; i < n; i++) {
        uint32_t u = rng_u32();
        if (i % 4 == 1)
            u = (u & 0xffff0000u) | low[(u >> 3) % 5];
        else if (i % 4 == 2) { /* ordinary values, the common case */
            float x = rng_uniform() * 64.0f;
            memcpy(&u, &x, sizeof u);
        }
        if (i < sizeof special / sizeof special[0])
            u = special[i];
        memcpy(&h_in[i], &u, sizeof u);
    }
    float *d_in, *d_f32;
    uint16_t *d_bf16;
    LF_CUDA_CHECK(cudaMalloc((void **)&d_in, n * sizeof(float)));
    LF_CUDA_CHECK(cudaMalloc((void **)&d_f32, n * sizeof(float)));
    LF_CUDA_CHECK(cudaMalloc((void **)&d_bf16, n * sizeof(uint16_t)));
    LF_CUDA_CHECK(cudaMemcpy(d_in, h_in, n * sizeof(float), cudaMemcpyHostToDevice));
    lf_cuda_f32_to_bf16(d_bf16, d_in, n, 0);
    LF_CUDA_CHECK(cudaMemcpy(h_gpu, d_bf16, n * sizeof(uint16_t), cudaMemcpyDeviceToHost));
    lf_cpu_f32_to_bf16(h_cpu, h_in, n);
    size_t bad = 0, nans = 0, first = 0;
    for (size_t i = 0; i < n; i++) {
        if (h_gpu[i] == h_cpu[i])
            continue;
        /* the hardware gives every NaN as 0x7fff; the CPU keeps sign/payload */
        if (is_nan_bf16(h_gpu[i]) && is_nan_bf16(h_cpu[i])) {
            nans++;
            continue;
        }
        if (!bad++)
            first = i;
    }
    char detail[256];
    if (bad) {
        uint32_t u;
        memcpy(&u, &h_in[first], sizeof u);
        snprintf(detail, sizeof detail,
                 "%zu of %zu differ; first in=0x%08x gpu=0x%04x cpu=0x%04x",
                 bad, n, (unsigned)u, (unsigned)h_gpu[first], (unsigned)h_cpu[first]);
    } else
        snprintf(detail, sizeof detail,
                 "%zu values bit-identical (%zu NaNs differ only in payload)", n, nans);
    result(bad == 0, "convert_f32_to_bf16", detail);

    /* bf16 -> f32: every bf16 value */
    const size_t m = 65536;
    for (size_t i = 0; i < m; i++)
        h_cpu[i] = (uint16_t)i;
    LF_CUDA_CHECK(cudaMemcpy(d_bf16, h_cpu, m * sizeof(uint16_t), cudaMemcpyHostToDevice));
    lf_cuda_bf16_to_f32(d_f32, d_bf16, m, 0);
    LF_CUDA_CHECK(cudaMemcpy(h_in, d_f32, m * sizeof(float), cudaMemcpyDeviceToHost));
    bad = 0;
    for (size_t i = 0; i < m; i++) {
        float want = lf_bf16_to_f32((uint16_t)i);
        if (memcmp(&want, &h_in[i], sizeof want) != 0 && !bad++)
            first = i;
    }
    if (bad)
        snprintf(detail, sizeof detail, "%zu of %zu differ; first bf16=0x%04zx", bad, m, first);
    else
        snprintf(detail, sizeof detail, "all %zu bf16 values bit-identical", m);
    result(bad == 0, "convert_bf16_to_f32", detail);

    LF_CUDA_CHECK(cudaFree(d_in));
    LF_CUDA_CHECK(cudaFree(d_f32));
    LF_CUDA_CHECK(cudaFree(d_bf16));
    free(h_in);
    free(h_gpu);
    free(h_cpu);
}

/* random bf16 matrix: h_bf16 gets the bits, h_f32 the same values in f32 */
static void random_bf16(uint16_t *h_bf16, float *h_f32, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h_bf16[i] = lf_f32_to_bf16(rng_uniform());
        h_f32[i] = lf_bf16_to_f32(h_bf16[i]);
    }
}

/* out[M,N] = a @ b^T on the GPU (f32 and bf16 output) against the CPU f32
   GEMM of the same bf16 values.  The error of element (m,n) is scaled by
   s = sum_k |a_mk b_nk|, the size f32 rounding errors are measured in:
   f32 accumulation stays far below 1e-4 * s even on tensor cores, a wrong
   layout or a bf16 accumulation does not.  bf16 output adds its own
   rounding, up to 2^-8 relative to the value (half a unit of its 8
   significant bits). */
static void check_gemm(cublasLtHandle_t lt, void *d_ws, int M, int N, int K)
{
    size_t na = (size_t)M * K, nb = (size_t)N * K, no = (size_t)M * N;
    uint16_t *h_a = (uint16_t *)xmalloc(na * 2), *h_b = (uint16_t *)xmalloc(nb * 2);
    float *f_a = (float *)xmalloc(na * 4), *f_b = (float *)xmalloc(nb * 4);
    float *ref = (float *)xmalloc(no * 4), *scale = (float *)xmalloc(no * 4);
    float *h_out = (float *)xmalloc(no * 4);
    uint16_t *h_out16 = (uint16_t *)xmalloc(no * 2);
    random_bf16(h_a, f_a, na);
    random_bf16(h_b, f_b, nb);
    lf_cpu_matmul_nt_f32(ref, f_a, f_b, M, N, K);
    for (size_t i = 0; i < na; i++) f_a[i] = fabsf(f_a[i]);
    for (size_t i = 0; i < nb; i++) f_b[i] = fabsf(f_b[i]);
    lf_cpu_matmul_nt_f32(scale, f_a, f_b, M, N, K);

    uint16_t *d_a, *d_b;
    void *d_out;
    LF_CUDA_CHECK(cudaMalloc((void **)&d_a, na * 2));
    LF_CUDA_CHECK(cudaMalloc((void **)&d_b, nb * 2));
    LF_CUDA_CHECK(cudaMalloc(&d_out, no * 4));
    LF_CUDA_CHECK(cudaMemcpy(d_a, h_a, na * 2, cudaMemcpyHostToDevice));
    LF_CUDA_CHECK(cudaMemcpy(d_b, h_b, nb * 2, cudaMemcpyHostToDevice));

    for (int pass = 0; pass < 2; pass++) {
        int bf16_out = pass == 1;
        LF_CUDA_CHECK(cudaMemset(d_out, 0xff, no * 4)); /* NaNs: catch unwritten */
        lf_cuda_matmul_nt_bf16(lt, d_out, bf16_out ? CUDA_R_16BF : CUDA_R_32F, d_a, d_b,
                               M, N, K, d_ws, LF_CUBLASLT_WORKSPACE_BYTES, 0);
        LF_CUDA_CHECK(cudaDeviceSynchronize());
        if (bf16_out) {
            LF_CUDA_CHECK(cudaMemcpy(h_out16, d_out, no * 2, cudaMemcpyDeviceToHost));
            lf_cpu_bf16_to_f32(h_out, h_out16, no);
        } else
            LF_CUDA_CHECK(cudaMemcpy(h_out, d_out, no * 4, cudaMemcpyDeviceToHost));
        const double rtol_acc = 1e-4, rtol_out = bf16_out ? 1.0 / 256 : 0.0;
        double max_abs = 0, max_rel = 0, worst = 0;
        size_t bad = 0, worst_i = 0;
        for (size_t i = 0; i < no; i++) {
            double d = fabs((double)h_out[i] - ref[i]);
            double tol = rtol_acc * scale[i] + rtol_out * fabs(ref[i]) + 1e-30;
            if (!(d <= tol)) /* NaN counts as bad */
                bad++;
            if (!(d <= max_abs))
                max_abs = isnan(d) ? INFINITY : d;
            if (fabs(ref[i]) >= 1.0 && d / fabs(ref[i]) > max_rel)
                max_rel = d / fabs(ref[i]);
            if (!(d / tol <= worst)) {
                worst = isnan(d) ? INFINITY : d / tol;
                worst_i = i;
            }
        }
        char name[96], detail[256];
        snprintf(name, sizeof name, "gemm_%dx%dx%d_%s", M, N, K, bf16_out ? "bf16out" : "f32out");
        snprintf(detail, sizeof detail,
                 "max_abs=%.3g max_rel(|ref|>=1)=%.3g worst err/tol=%.3g at (%zu,%zu)%s",
                 max_abs, max_rel, worst, worst_i / N, worst_i % N,
                 bad ? " - elements over tolerance" : "");
        if (bad) {
            size_t len = strlen(detail);
            snprintf(detail + len, sizeof detail - len, ": %zu of %zu", bad, no);
        }
        result(bad == 0, name, detail);
    }
    LF_CUDA_CHECK(cudaFree(d_a));
    LF_CUDA_CHECK(cudaFree(d_b));
    LF_CUDA_CHECK(cudaFree(d_out));
    free(h_a); free(h_b); free(f_a); free(f_b);
    free(ref); free(scale); free(h_out); free(h_out16);
}

/* one element's error over its tolerance (err/tol) into the worst so far
   and the count of those over 1 (NaN counts as over) */
static void tally(double err, double *worst, size_t *bad)
{
    if (!(err <= 1))
        (*bad)++;
    if (!(err <= *worst))
        *worst = isnan(err) ? INFINITY : err;
}

/* out[M,N] = alpha A B + beta out by lf_cuda_gemm_f32_ld, with A = a
   [M,K] or (a_t) a [K,M] transposed, B = b [K,N] or (b_t) b [N,K]
   transposed, each matrix a column slice of a wider one (row strides lda,
   ldb, ldo larger than its rows), against a double loop; the columns of
   out past N must come back untouched.  f32 without TF32: within 1e-5 of
   sum |alpha a b| + |beta out|. */
static void check_gemm_ld(cublasLtHandle_t lt, void *d_ws, int M, int N, int K, int a_t, int b_t, int pad)
{
    int ar = a_t ? K : M, ac = a_t ? M : K, br = b_t ? N : K, bc = b_t ? K : N;
    int lda = ac + pad, ldb = bc + pad + 1, ldo = N + pad + 2;
    size_t na = (size_t)ar * lda, nb = (size_t)br * ldb, no = (size_t)M * ldo;
    float *a = random_f32(na, 1.0f), *b = random_f32(nb, 1.0f), *out0 = random_f32(no, 1.0f);
    float *got = (float *)xmalloc(no * 4);
    const float alpha = 0.75f, beta = 0.5f;
    float *d_a = (float *)to_device(a, na * 4), *d_b = (float *)to_device(b, nb * 4);
    float *d_out = (float *)to_device(out0, no * 4);
    lf_cuda_gemm *g = lf_cuda_gemm_new(lt, d_ws, LF_CUBLASLT_WORKSPACE_BYTES);
    lf_cuda_gemm_f32_ld(g, d_out, ldo, d_a, lda, d_b, ldb, M, N, K, a_t, b_t, alpha, beta, 0);
    LF_CUDA_CHECK(cudaDeviceSynchronize());
    LF_CUDA_CHECK(cudaMemcpy(got, d_out, no * 4, cudaMemcpyDeviceToHost));
    lf_cuda_gemm_free(g);
    double worst = 0;
    size_t bad = 0;
    for (int m = 0; m < M; m++)
        for (int j = 0; j < ldo; j++) {
            size_t i = (size_t)m * ldo + j;
            double want = out0[i], size = 0;
            if (j < N) {
                double sum = 0;
                for (int k = 0; k < K; k++) {
                    double x = a_t ? a[(size_t)k * lda + m] : a[(size_t)m * lda + k];
                    double y = b_t ? b[(size_t)j * ldb + k] : b[(size_t)k * ldb + j];
                    sum += x * y;
                    size += fabs(alpha * x * y);
                }
                want = alpha * sum + beta * out0[i];
                size += fabs(beta * out0[i]);
            }
            double err = fabs(got[i] - want) / (1e-5 * size + 1e-30);
            if (j >= N)
                err = got[i] == out0[i] ? 0 : INFINITY;
            tally(err, &worst, &bad);
        }
    char name[96], detail[128];
    snprintf(name, sizeof name, "gemm_f32_ld_%dx%dx%d_%c%c", M, N, K, a_t ? 't' : 'n', b_t ? 't' : 'n');
    snprintf(detail, sizeof detail, "lda %d ldb %d ldo %d: worst err/tol %.3g, %zu bad of %zu", lda, ldb, ldo, worst,
             bad, no);
    result(bad == 0, name, detail);
    LF_CUDA_CHECK(cudaFree(d_a));
    LF_CUDA_CHECK(cudaFree(d_b));
    LF_CUDA_CHECK(cudaFree(d_out));
    free(a); free(b); free(out0); free(got);
}

/* out = a b^T + c by lf_cuda_gemm_f32_c and lf_cuda_gemm_bf16_c (the
   residual in the epilogue): c apart from out, which starts as NaN (so
   reading out instead of c fails), against a double loop over the same
   (bf16-rounded) inputs; within 1e-5 of sum |a b| + |c|. */
static void check_gemm_c(cublasLtHandle_t lt, void *d_ws, int M, int N, int K, int bf16)
{
    size_t na = (size_t)M * K, nb = (size_t)N * K, no = (size_t)M * N;
    float *a = random_f32(na, 1.0f), *b = random_f32(nb, 1.0f), *c = random_f32(no, 4.0f);
    float *got = (float *)xmalloc(no * 4);
    uint16_t *a16 = bf16 ? to_bf16(a, na) : NULL, *b16 = bf16 ? to_bf16(b, nb) : NULL;
    void *d_a = bf16 ? to_device(a16, na * 2) : to_device(a, na * 4);
    void *d_b = bf16 ? to_device(b16, nb * 2) : to_device(b, nb * 4);
    float *d_c = (float *)to_device(c, no * 4), *d_out = (float *)nan_device(no * 4);
    lf_cuda_gemm *g = lf_cuda_gemm_new(lt, d_ws, LF_CUBLASLT_WORKSPACE_BYTES);
    if (bf16)
        lf_cuda_gemm_bf16_c(g, d_out, d_c, (const uint16_t *)d_a, (const uint16_t *)d_b, M, N, K, 0, 1, 1.0f, 1.0f,
                            0);
    else
        lf_cuda_gemm_f32_c(g, d_out, d_c, (const float *)d_a, (const float *)d_b, M, N, K, 0, 1, 1.0f, 1.0f, 0);
    LF_CUDA_CHECK(cudaDeviceSynchronize());
    LF_CUDA_CHECK(cudaMemcpy(got, d_out, no * 4, cudaMemcpyDeviceToHost));
    lf_cuda_gemm_free(g);
    double worst = 0;
    size_t bad = 0;
    for (int m = 0; m < M; m++)
        for (int j = 0; j < N; j++) {
            double sum = c[(size_t)m * N + j], size = fabs(sum);
            for (int k = 0; k < K; k++) {
                double p = (double)a[(size_t)m * K + k] * b[(size_t)j * K + k];
                sum += p;
                size += fabs(p);
            }
            tally(fabs(got[(size_t)m * N + j] - sum) / (1e-5 * size + 1e-30), &worst, &bad);
        }
    char name[96], detail[128];
    snprintf(name, sizeof name, "gemm_%s_c_%dx%dx%d", bf16 ? "bf16" : "f32", M, N, K);
    snprintf(detail, sizeof detail, "out = a b^T + c: worst err/tol %.3g, %zu bad of %zu", worst, bad, no);
    result(bad == 0, name, detail);
    LF_CUDA_CHECK(cudaFree(d_a));
    LF_CUDA_CHECK(cudaFree(d_b));
    LF_CUDA_CHECK(cudaFree(d_c));
    LF_CUDA_CHECK(cudaFree(d_out));
    free(a); free(b); free(c); free(got); free(a16); free(b16);
}

/* speed of out = a @ b^T at n^3 with bf16 output (the training case), plus
   a spot check of 64 output elements against double-precision dot products */
static void time_gemm(cublasLtHandle_t lt, void *d_ws, int n)
{
    size_t nn = (size_t)n * n;
    uint16_t *h_a = (uint16_t *)xmalloc(nn * 2), *h_b = (uint16_t *)xmalloc(nn * 2);
    float *f_a = (float *)xmalloc(nn * 4), *f_b = (float *)xmalloc(nn * 4);
    uint16_t *h_out = (uint16_t *)xmalloc(nn * 2);
    random_bf16(h_a, f_a, nn);
    random_bf16(h_b, f_b, nn);
    uint16_t *d_a, *d_b, *d_out;
    LF_CUDA_CHECK(cudaMalloc((void **)&d_a, nn * 2));
    LF_CUDA_CHECK(cudaMalloc((void **)&d_b, nn * 2));
    LF_CUDA_CHECK(cudaMalloc((void **)&d_out, nn * 2));
    LF_CUDA_CHECK(cudaMemcpy(d_a, h_a, nn * 2, cudaMemcpyHostToDevice));
    LF_CUDA_CHECK(cudaMemcpy(d_b, h_b, nn * 2, cudaMemcpyHostToDevice));

    lf_cuda_matmul_nt_plan plan;
    lf_cuda_matmul_nt_plan_init(&plan, lt, n, n, n, CUDA_R_16BF, LF_CUBLASLT_WORKSPACE_BYTES);
    cudaStream_t stream;
    cudaEvent_t t0, t1;
    LF_CUDA_CHECK(cudaStreamCreate(&stream));
    LF_CUDA_CHECK(cudaEventCreate(&t0));
    LF_CUDA_CHECK(cudaEventCreate(&t1));
    const int warmup = 3, iters = 10;
    for (int i = 0; i < warmup; i++)
        lf_cuda_matmul_nt_run(&plan, lt, d_out, d_a, d_b, d_ws, LF_CUBLASLT_WORKSPACE_BYTES, stream);
    LF_CUDA_CHECK(cudaEventRecord(t0, stream));
    for (int i = 0; i < iters; i++)
        lf_cuda_matmul_nt_run(&plan, lt, d_out, d_a, d_b, d_ws, LF_CUBLASLT_WORKSPACE_BYTES, stream);
    LF_CUDA_CHECK(cudaEventRecord(t1, stream));
    LF_CUDA_CHECK(cudaEventSynchronize(t1));
    float ms = 0;
    LF_CUDA_CHECK(cudaEventElapsedTime(&ms, t0, t1));
    double avg_ms = ms / iters;
    double tflops = 2.0 * n * (double)n * n / (avg_ms * 1e-3) / 1e12;

    LF_CUDA_CHECK(cudaMemcpy(h_out, d_out, nn * 2, cudaMemcpyDeviceToHost));
    int bad = 0;
    for (int s = 0; s < 64; s++) {
        size_t r = rng_u32() % n, c = rng_u32() % n;
        double dot = 0, mag = 0;
        for (int k = 0; k < n; k++) {
            double p = (double)f_a[r * n + k] * f_b[c * n + k];
            dot += p;
            mag += fabs(p);
        }
        double got = lf_bf16_to_f32(h_out[r * n + c]);
        if (!(fabs(got - dot) <= 1e-4 * mag + fabs(dot) / 512))
            bad++;
    }
    char name[64], detail[192];
    snprintf(name, sizeof name, "gemm_%dx%dx%d_timing", n, n, n);
    snprintf(detail, sizeof detail,
             "bf16 in/out f32 acc: %.3f ms avg of %d (after %d warmup), %.1f TFLOP/s, "
             "workspace %zu B, spot check %d/64 off",
             avg_ms, iters, warmup, tflops, plan.workspace_needed, bad);
    result(bad == 0, name, detail);

    lf_cuda_matmul_nt_plan_free(&plan);
    LF_CUDA_CHECK(cudaEventDestroy(t0));
    LF_CUDA_CHECK(cudaEventDestroy(t1));
    LF_CUDA_CHECK(cudaStreamDestroy(stream));
    LF_CUDA_CHECK(cudaFree(d_a));
    LF_CUDA_CHECK(cudaFree(d_b));
    LF_CUDA_CHECK(cudaFree(d_out));
    free(h_a); free(h_b); free(f_a); free(f_b); free(h_out);
}

int main(int argc, char **argv)
{
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else {
            fprintf(stderr, "usage: cuda_smoke [--quick]\n");
            return 2;
        }
    }
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) {
        fprintf(stderr, "cuda_smoke: no CUDA device available (%s)\n",
                err != cudaSuccess ? cudaGetErrorString(err) : "device count is 0");
        return 2;
    }
    LF_CUDA_CHECK(cudaSetDevice(0));
    print_device();

    cublasLtHandle_t lt;
    void *d_ws;
    LF_CUBLAS_CHECK(cublasLtCreate(&lt));
    LF_CUDA_CHECK(cudaMalloc(&d_ws, LF_CUBLASLT_WORKSPACE_BYTES));

    check_convert();
    check_gemm(lt, d_ws, 1024, 1024, 1024);
    check_gemm(lt, d_ws, 257, 129, 513);
    check_gemm(lt, d_ws, 1, 4096, 1024);   /* one token: the decode shape */
    for (int tr = 0; tr < 4; tr++)
        check_gemm_ld(lt, d_ws, 37, 24, 19, tr >> 1, tr & 1, tr ? 5 : 0);
    check_gemm_c(lt, d_ws, 33, 20, 17, 0);
    check_gemm_c(lt, d_ws, 64, 48, 32, 1);
    if (!quick)
        time_gemm(lt, d_ws, 4096);

    LF_CUDA_CHECK(cudaFree(d_ws));
    LF_CUBLAS_CHECK(cublasLtDestroy(lt));
    printf("cuda_smoke: %d passed, %d failed\n", passes, failures);
    return failures ? 1 : 0;
}

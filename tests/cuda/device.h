/*
 * device.h — what the GPU checks share besides reporting (report.h): the
 * stream and timing events they use, random and copied host data, bf16
 * rounding, and moving data to and from the device (outputs start as NaN
 * so an element a kernel forgets to write fails).  Header-only; each check
 * includes it once, after report.h and test_rng.h.
 */
#ifndef LF_TEST_DEVICE_H
#define LF_TEST_DEVICE_H

#include "cpu/bf16.h"
#include "cuda/cuda_check.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static cudaStream_t stream;
static cudaEvent_t ev0, ev1;

static inline void appendf(char *buf, size_t len, const char *fmt, ...)
{
    size_t used = strlen(buf);
    if (used >= len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + used, len - used, fmt, ap);
    va_end(ap);
}

/* n floats uniform in [-scale, scale) */
static inline float *random_f32(size_t n, float scale)
{
    float *x = (float *)xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        x[i] = rng_uniform() * scale;
    return x;
}

static inline float *copy_f32(const float *x, size_t n)
{
    float *y = (float *)xmalloc(n * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    return y;
}

/* the bf16 bits of x, and x rounded through bf16 in place (the CPU op's
   input for the bf16 checks) */
static inline uint16_t *to_bf16(float *x, size_t n)
{
    uint16_t *h = (uint16_t *)xmalloc(n * sizeof(uint16_t));
    lf_cpu_f32_to_bf16(h, x, n);
    lf_cpu_bf16_to_f32(x, h, n);
    return h;
}

static inline void *to_device(const void *h, size_t bytes)
{
    void *d;
    LF_CUDA_CHECK(cudaMalloc(&d, bytes ? bytes : 1));
    LF_CUDA_CHECK(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice));
    return d;
}

/* device memory filled with 0xff bytes: NaN in f32 and in bf16 */
static inline void *nan_device(size_t bytes)
{
    void *d;
    LF_CUDA_CHECK(cudaMalloc(&d, bytes ? bytes : 1));
    LF_CUDA_CHECK(cudaMemset(d, 0xff, bytes));
    return d;
}

/* waits for the stream, then copies back */
static inline void from_device(void *h, const void *d, size_t bytes)
{
    LF_CUDA_CHECK(cudaStreamSynchronize(stream));
    LF_CUDA_CHECK(cudaMemcpy(h, d, bytes, cudaMemcpyDeviceToHost));
}

/* n device elements back as f32: es 4 (f32) or 2 (bf16) */
static inline float *fetch(const void *d, size_t n, int es)
{
    float *h = (float *)xmalloc(n * sizeof(float));
    if (es == 4)
        from_device(h, d, n * sizeof(float));
    else {
        uint16_t *h16 = (uint16_t *)xmalloc(n * sizeof(uint16_t));
        from_device(h16, d, n * sizeof(uint16_t));
        lf_cpu_bf16_to_f32(h, h16, n);
        free(h16);
    }
    return h;
}

/* max |got - ref| against tol * max(floor, max |ref|), NaN failing;
   appends the numbers to detail; returns 1 when within */
static inline int compare_max(const char *what, const float *got, const float *ref, size_t n, double tol, double floor,
                              char *detail, size_t len)
{
    double max_abs = 0, max_ref = 0;
    size_t worst = 0;
    for (size_t i = 0; i < n; i++) {
        double r = fabs((double)ref[i]), d = fabs((double)got[i] - (double)ref[i]);
        if (!(r <= max_ref))
            max_ref = isnan(r) ? INFINITY : r;
        if (!(d <= max_abs)) {
            max_abs = isnan(d) ? INFINITY : d;
            worst = i;
        }
    }
    double limit = tol * (max_ref > floor ? max_ref : floor);
    int ok = max_abs <= limit && isfinite(max_ref); /* a non-finite reference proves nothing */
    appendf(detail, len, "%s%smax_abs=%.3g (at %zu: gpu %.9g cpu %.9g) max|ref|=%.3g tol=%.0e%s", *detail ? "; " : "",
            what, max_abs, worst, n ? got[worst] : 0.0f, n ? ref[worst] : 0.0f, max_ref, tol,
            ok ? "" : " - over tolerance");
    return ok;
}

/* Timing: WARMUP launches, time_begin(), ITERS launches, time_end(), which
   appends the achieved bandwidth for the given bytes per launch to detail.
   (A check whose timing differs keeps its own.) */
enum { WARMUP = 3, ITERS = 20 };

static inline void time_begin(void)
{
    LF_CUDA_CHECK(cudaEventRecord(ev0, stream));
}

static inline void time_end(double bytes, char *detail, size_t len)
{
    float ms = 0;
    LF_CUDA_CHECK(cudaEventRecord(ev1, stream));
    LF_CUDA_CHECK(cudaEventSynchronize(ev1));
    LF_CUDA_CHECK(cudaEventElapsedTime(&ms, ev0, ev1));
    double sec = ms * 1e-3 / ITERS;
    appendf(detail, len, "; %.1f GB/s (%.1f us per call, avg of %d after %d warm-up)", bytes / sec / 1e9, sec * 1e6,
            ITERS, WARMUP);
}

/* A check's start: no arguments, a CUDA device (exit status 2 when there
   is none), its name printed, the stream and events made.  Returns the
   exit status to stop with, or -1 to go on. */
static inline int device_start(int argc)
{
    const char *prog = program_invocation_short_name;
    if (argc > 1) {
        fprintf(stderr, "usage: %s\n", prog);
        return 2;
    }
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) {
        fprintf(stderr, "%s: no CUDA device available (%s)\n", prog,
                err != cudaSuccess ? cudaGetErrorString(err) : "device count is 0");
        return 2;
    }
    LF_CUDA_CHECK(cudaSetDevice(0));
    cudaDeviceProp prop;
    LF_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    printf("%s on %s (compute capability %d.%d)\n", prog, prop.name, prop.major, prop.minor);
    fflush(stdout);
    LF_CUDA_CHECK(cudaStreamCreate(&stream));
    LF_CUDA_CHECK(cudaEventCreate(&ev0));
    LF_CUDA_CHECK(cudaEventCreate(&ev1));
    return -1;
}

/* A check's end: the counts, and the exit status (1 when any failed). */
static inline int device_finish(void)
{
    LF_CUDA_CHECK(cudaEventDestroy(ev0));
    LF_CUDA_CHECK(cudaEventDestroy(ev1));
    LF_CUDA_CHECK(cudaStreamDestroy(stream));
    printf("%s: %d passed, %d failed\n", program_invocation_short_name, passes, failures);
    return failures ? 1 : 0;
}

#endif

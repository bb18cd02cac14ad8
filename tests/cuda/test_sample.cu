/* tests/cuda/test_sample.cu — checks kernels/cuda/sample.cu against the
 * CPU op lf_cpu_sample_f32 (kernels/cpu/sample.h, libcommon's
 * lf_sample_next arithmetic) on random inputs from test_rng.h:
 *
 *   V = 1, 7, 1000, 32000 and 151936; B = 1 and 8 rows, each with its own
 *   uniform draw (0 and the largest double below 1 among them); greedy
 *   (do_sample off, and temperature 0), temperature only, top-k only
 *   (k = 1, 50, 1024, V - 1 and V, which is off), top-p with top-k, top-p
 *   alone (the full-row sort), the repetition penalty (above and below 1)
 *   with a history holding repeats and ids out of [0, V); logits drawn
 *   from a coarse grid (many ties, -0 and +0 among them), rows of +0, -0
 *   and -1 only (signed zeros tied at the top), rows with -inf
 *   logits, a row all -inf, a k-th value that is -inf, and NaN logits in
 *   the greedy path (where the CPU op defines the pick).
 *
 *   Each row's pick must equal the CPU op's, and the modified logits must
 *   have the CPU op's bits (the penalty, the temperature and the top-k
 *   cut are exact on both).  (The picks could differ only where CUDA's exp
 *   and glibc's round a term differently and u * total falls within a few
 *   ulps of a boundary: see kernels/cuda/sample.h; not expected here.)
 *
 * Timing: B = 8, V = 151936, top-k 50, top-p 0.7 (LLaMA-Factory's
 * defaults), the greedy choice, and the top-p-only fallback, averaged over
 * ITERS calls after WARMUP (each call on a fresh copy of the logits).
 *
 * Prints "PASS name detail" or "FAIL name detail" per check; exits 0 if
 * all pass, 1 if any fails, 2 if there is no usable CUDA device.  Built as
 * $(OUT)/tests/cuda_test_sample. */
#include "cpu/sample.h"
#include "cuda/cuda_check.h"
#include "cuda/sample.h"

#include "report.h"
#include "test_rng.h"
#include "device.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* a double in [0, 1) as numpy draws one */
static double rng_double(void)
{
    uint32_t a = rng_u32() >> 5, b = rng_u32() >> 6;
    return (a * 67108864.0 + b) / 9007199254740992.0;
}

enum { LOGITS_PLAIN, LOGITS_TIES, LOGITS_ZEROS, LOGITS_SOME_INF, LOGITS_ALL_INF, LOGITS_NAN0, LOGITS_NAN };

struct sample_case {
    const char *name;
    int B, V;
    int do_sample;
    double temperature, top_p, penalty;
    int top_k; /* -1: V - 1, -2: V */
    int logits;
    int H;     /* history length per row (0: none) */
};

static float *make_logits(int B, int V, int mode)
{
    float *x = random_f32((size_t)B * V, 8.0f);
    for (size_t i = 0; i < (size_t)B * V; i++) {
        switch (mode) {
        case LOGITS_TIES: /* a grid of 1/4: many exact ties, -0 and +0 */
            x[i] = floorf(x[i] * 4.0f) / 4.0f;
            if (x[i] == 0.0f && (rng_u32() & 1))
                x[i] = -0.0f;
            break;
        case LOGITS_ZEROS: { /* +0, -0 and -1: the zeros tie at the top */
            uint32_t r = rng_u32() % 3;
            x[i] = r == 0 ? 0.0f : r == 1 ? -0.0f : -1.0f;
            break;
        }
        case LOGITS_SOME_INF:
            if (rng_u32() % 3 == 0)
                x[i] = -INFINITY;
            break;
        case LOGITS_ALL_INF:
            x[i] = -INFINITY;
            break;
        case LOGITS_NAN:
            if (rng_u32() % 5 == 0)
                x[i] = NAN;
            break;
        }
    }
    if (mode == LOGITS_NAN0)
        for (int b = 0; b < B; b++)
            x[(size_t)b * V] = NAN;
    if (mode == LOGITS_NAN)
        x[0] = 1.0f; /* the CPU's scan is then defined: NaNs never win */
    return x;
}

/* runs one case on the CPU op and the CUDA op; returns 1 if all agree */
static int run_case(const struct sample_case *c)
{
    const int B = c->B, V = c->V, H = c->H;
    struct lf_cpu_sample_params p = { c->do_sample, c->temperature, c->top_p, c->penalty,
                                      c->top_k == -1 ? V - 1 : c->top_k == -2 ? V : c->top_k };
    float *x = make_logits(B, V, c->logits);
    int32_t *hist = (int32_t *)xmalloc((size_t)(B * H + 1) * sizeof(int32_t));
    int *nh = (int *)xmalloc((size_t)B * sizeof(int));
    double *u = (double *)xmalloc((size_t)B * sizeof(double));
    for (int b = 0; b < B; b++) {
        nh[b] = H ? (int)(rng_u32() % (unsigned)(H + 1)) : 0;
        if (b == 0)
            nh[b] = H;
        for (int i = 0; i < H; i++) {
            uint32_t r = rng_u32();
            int32_t id = (int32_t)(r % (uint32_t)V);
            if (r % 8 == 0)
                id = -1 - (int32_t)(r % 3);             /* below 0 */
            else if (r % 8 == 1)
                id = V + (int32_t)(r % 5);              /* past V */
            else if (r % 8 == 2 && i > 0)
                id = hist[(size_t)b * H + rng_u32() % i]; /* a repeat */
            else if (r % 8 == 3)
                id = (int32_t)(r % (V < 8 ? V : 8));   /* among the first ids */
            hist[(size_t)b * H + i] = id;
        }
        u[b] = b == 0 ? 0.0 : b == 1 ? 1.0 - 1.0 / 9007199254740992.0 : rng_double();
    }

    float *ref = copy_f32(x, (size_t)B * V);
    int32_t *want = (int32_t *)xmalloc((size_t)B * sizeof(int32_t));
    for (int b = 0; b < B; b++)
        want[b] = lf_cpu_sample_f32(ref + (size_t)b * V, V, &p, H ? hist + (size_t)b * H : NULL,
                                    H ? (size_t)nh[b] : 0, u[b]);

    float *dx = (float *)to_device(x, (size_t)B * V * sizeof(float));
    int32_t *dh = H ? (int32_t *)to_device(hist, (size_t)B * H * sizeof(int32_t)) : NULL;
    int *dnh = (int *)to_device(nh, (size_t)B * sizeof(int));
    double *du = (double *)to_device(u, (size_t)B * sizeof(double));
    int32_t *dout = (int32_t *)nan_device((size_t)B * sizeof(int32_t));
    cudaError_t err = lf_cuda_sample_f32(dx, B, V, &p, dh, dnh, H, du, dout, stream);
    int32_t *got = (int32_t *)xmalloc((size_t)B * sizeof(int32_t));
    from_device(got, dout, (size_t)B * sizeof(int32_t));
    float *gx = fetch(dx, (size_t)B * V, 4);

    int bad_pick = 0, first = -1;
    for (int b = 0; b < B; b++)
        if (got[b] != want[b] && bad_pick++ == 0)
            first = b;
    size_t bad_logit = 0, first_l = 0;
    for (size_t i = 0; i < (size_t)B * V; i++) {
        uint32_t a, g;
        memcpy(&a, &ref[i], 4);
        memcpy(&g, &gx[i], 4);
        int both_nan = ref[i] != ref[i] && gx[i] != gx[i];
        if (a != g && !both_nan && bad_logit++ == 0)
            first_l = i;
    }
    char detail[512] = "";
    appendf(detail, sizeof detail, "B=%d V=%d sample=%d T=%g k=%d p=%g pen=%g H=%d: ", B, V, p.do_sample,
            p.temperature, p.top_k, p.top_p, p.repetition_penalty, H);
    appendf(detail, sizeof detail, "%d/%d picks differ, %zu logits differ", bad_pick, B, bad_logit);
    if (first >= 0)
        appendf(detail, sizeof detail, " (row %d: cpu %d gpu %d)", first, want[first], got[first]);
    if (bad_logit)
        appendf(detail, sizeof detail, " (element %zu: cpu %a gpu %a)", first_l, ref[first_l], gx[first_l]);
    appendf(detail, sizeof detail, "; picks");
    for (int b = 0; b < B && b < 8; b++)
        appendf(detail, sizeof detail, " %d", got[b]);
    int ok = err == cudaSuccess && !bad_pick && !bad_logit;
    result(ok, c->name, detail);

    LF_CUDA_CHECK(cudaFree(dx));
    if (dh)
        LF_CUDA_CHECK(cudaFree(dh));
    LF_CUDA_CHECK(cudaFree(dnh));
    LF_CUDA_CHECK(cudaFree(du));
    LF_CUDA_CHECK(cudaFree(dout));
    free(x);
    free(ref);
    free(hist);
    free(nh);
    free(u);
    free(want);
    free(got);
    free(gx);
    return ok;
}

/* average time of one call on B rows of V (each call on its own copy) */
static void time_case(const char *name, int B, int V, const struct lf_cpu_sample_params *p)
{
    float *x = make_logits(B, V, LOGITS_PLAIN);
    double *u = (double *)xmalloc((size_t)B * sizeof(double));
    for (int b = 0; b < B; b++)
        u[b] = rng_double();
    enum { N = WARMUP + ITERS };
    float *dx[N];
    for (int i = 0; i < N; i++)
        dx[i] = (float *)to_device(x, (size_t)B * V * sizeof(float));
    double *du = (double *)to_device(u, (size_t)B * sizeof(double));
    int32_t *dout = (int32_t *)nan_device((size_t)B * sizeof(int32_t));
    for (int i = 0; i < WARMUP; i++)
        LF_CUDA_CHECK(lf_cuda_sample_f32(dx[i], B, V, p, NULL, NULL, 0, du, dout, stream));
    LF_CUDA_CHECK(cudaEventRecord(ev0, stream));
    for (int i = WARMUP; i < N; i++)
        LF_CUDA_CHECK(lf_cuda_sample_f32(dx[i], B, V, p, NULL, NULL, 0, du, dout, stream));
    LF_CUDA_CHECK(cudaEventRecord(ev1, stream));
    LF_CUDA_CHECK(cudaEventSynchronize(ev1));
    float ms = 0;
    LF_CUDA_CHECK(cudaEventElapsedTime(&ms, ev0, ev1));
    printf("TIME %s B=%d V=%d: %.1f us per call\n", name, B, V, 1e3 * ms / ITERS);
    fflush(stdout);
    for (int i = 0; i < N; i++)
        LF_CUDA_CHECK(cudaFree(dx[i]));
    LF_CUDA_CHECK(cudaFree(du));
    LF_CUDA_CHECK(cudaFree(dout));
    free(x);
    free(u);
}

int main(int argc, char **argv)
{
    (void)argv;
    int rc = device_start(argc);
    if (rc >= 0)
        return rc;

    static const struct sample_case cases[] = {
        /* greedy */
        { "greedy_v1", 1, 1, 0, 1.0, 1.0, 1.0, 0, LOGITS_PLAIN, 0 },
        { "greedy_v7_ties", 8, 7, 0, 1.0, 1.0, 1.0, 0, LOGITS_TIES, 0 },
        { "greedy_v1000_ties", 8, 1000, 0, 0.9, 0.7, 1.0, 50, LOGITS_TIES, 0 },
        { "greedy_v32000", 1, 32000, 0, 1.0, 1.0, 1.0, 0, LOGITS_PLAIN, 0 },
        { "greedy_v151936_ties", 8, 151936, 0, 1.0, 1.0, 1.0, 0, LOGITS_TIES, 0 },
        { "greedy_temperature0", 8, 1000, 1, 0.0, 0.7, 1.0, 50, LOGITS_TIES, 0 },
        { "greedy_penalty", 8, 1000, 0, 1.0, 1.0, 1.3, 0, LOGITS_TIES, 64 },
        { "greedy_penalty_below1", 8, 32000, 0, 1.0, 1.0, 0.7, 0, LOGITS_PLAIN, 300 },
        { "greedy_nan_first", 8, 7, 0, 1.0, 1.0, 1.0, 0, LOGITS_NAN0, 0 },
        { "greedy_nan", 8, 1000, 0, 1.0, 1.0, 1.0, 0, LOGITS_NAN, 0 },
        { "greedy_some_inf", 8, 1000, 0, 1.0, 1.0, 1.0, 0, LOGITS_SOME_INF, 0 },
        /* temperature only */
        { "temp_v1", 8, 1, 1, 0.7, 1.0, 1.0, 0, LOGITS_PLAIN, 0 },
        { "temp_v7", 8, 7, 1, 0.7, 1.0, 1.0, 0, LOGITS_PLAIN, 0 },
        { "temp_v1000_ties", 8, 1000, 1, 1.3, 1.0, 1.0, 0, LOGITS_TIES, 0 },
        { "temp_v32000", 8, 32000, 1, 0.95, 1.0, 1.0, 0, LOGITS_PLAIN, 0 },
        { "temp_v151936", 2, 151936, 1, 0.95, 1.0, 1.0, 0, LOGITS_PLAIN, 0 },
        /* top-k only */
        { "topk1_v1000", 8, 1000, 1, 0.95, 1.0, 1.0, 1, LOGITS_PLAIN, 0 },
        { "topk50_v7_off", 8, 7, 1, 0.95, 1.0, 1.0, 50, LOGITS_TIES, 0 },
        { "topk_vminus1_v7", 8, 7, 1, 0.95, 1.0, 1.0, -1, LOGITS_TIES, 0 },
        { "topk_v_off_v1000", 8, 1000, 1, 0.95, 1.0, 1.0, -2, LOGITS_PLAIN, 0 },
        { "topk50_v1000_ties", 8, 1000, 1, 0.95, 1.0, 1.0, 50, LOGITS_TIES, 0 },
        { "topk50_v32000", 8, 32000, 1, 0.95, 1.0, 1.0, 50, LOGITS_PLAIN, 0 },
        { "topk1024_v151936_ties", 8, 151936, 1, 0.95, 1.0, 1.0, 1024, LOGITS_TIES, 0 },
        { "topk_vminus1_v1000", 8, 1000, 1, 2.0, 1.0, 1.0, -1, LOGITS_PLAIN, 0 },
        /* top-p with top-k */
        { "topk50_topp07_v1", 1, 1, 1, 0.95, 0.7, 1.0, 50, LOGITS_PLAIN, 0 },
        { "topk50_topp07_v7", 8, 7, 1, 0.95, 0.7, 1.0, 50, LOGITS_TIES, 0 },
        { "topk50_topp07_v1000_ties", 8, 1000, 1, 0.95, 0.7, 1.0, 50, LOGITS_TIES, 0 },
        { "topk5_topp09_v1000_ties", 8, 1000, 1, 0.5, 0.9, 1.0, 5, LOGITS_TIES, 0 },
        { "topk50_topp07_v32000", 8, 32000, 1, 0.95, 0.7, 1.0, 50, LOGITS_PLAIN, 0 },
        { "topk50_topp07_v151936", 1, 151936, 1, 0.95, 0.7, 1.0, 50, LOGITS_PLAIN, 0 },
        { "topk50_topp07_v151936_b8", 8, 151936, 1, 0.95, 0.7, 1.0, 50, LOGITS_PLAIN, 0 },
        { "topk1024_topp095_v151936_ties", 8, 151936, 1, 0.6, 0.95, 1.0, 1024, LOGITS_TIES, 0 },
        /* top-p alone (the whole row sorted) */
        { "topp07_v7", 8, 7, 1, 0.95, 0.7, 1.0, 0, LOGITS_TIES, 0 },
        { "topp07_v1000_ties", 8, 1000, 1, 0.95, 0.7, 1.0, 0, LOGITS_TIES, 0 },
        { "topp03_v32000", 8, 32000, 1, 0.2, 0.3, 1.0, 0, LOGITS_PLAIN, 0 },
        { "topp07_v151936", 2, 151936, 1, 0.95, 0.7, 1.0, 0, LOGITS_PLAIN, 0 },
        /* repetition penalty */
        { "penalty13_topk50_topp07_v1000", 8, 1000, 1, 0.95, 0.7, 1.3, 50, LOGITS_PLAIN, 100 },
        { "penalty07_topk50_v7", 8, 7, 1, 0.95, 1.0, 0.7, 50, LOGITS_TIES, 12 },
        { "penalty12_topp09_v32000", 8, 32000, 1, 0.95, 0.9, 1.2, 0, LOGITS_PLAIN, 500 },
        { "penalty11_topk50_topp07_v151936", 8, 151936, 1, 0.95, 0.7, 1.1, 50, LOGITS_PLAIN, 1000 },
        { "penalty_one_history_ignored", 8, 1000, 1, 0.95, 0.7, 1.0, 50, LOGITS_PLAIN, 100 },
        /* +0 and -0 equal: sorted by id */
        { "signed_zeros_greedy", 8, 1000, 0, 1.0, 1.0, 1.0, 0, LOGITS_ZEROS, 0 },
        { "signed_zeros_topk50", 8, 1000, 1, 0.95, 1.0, 1.0, 50, LOGITS_ZEROS, 0 },
        { "signed_zeros_topk500_topp05", 8, 1000, 1, 0.95, 0.5, 1.0, 500, LOGITS_ZEROS, 0 },
        { "signed_zeros_topp05", 8, 1000, 1, 0.95, 0.5, 1.0, 0, LOGITS_ZEROS, 0 },
        /* -inf logits */
        { "some_inf_topk50_topp07", 8, 1000, 1, 0.95, 0.7, 1.0, 50, LOGITS_SOME_INF, 0 },
        { "some_inf_kth_is_inf", 8, 1000, 1, 0.95, 1.0, 1.0, 900, LOGITS_SOME_INF, 0 },
        { "some_inf_topp_only", 8, 1000, 1, 0.95, 0.99, 1.0, 0, LOGITS_SOME_INF, 0 },
        { "all_inf", 8, 1000, 1, 0.95, 0.7, 1.0, 50, LOGITS_ALL_INF, 0 },
        { "all_inf_greedy", 2, 7, 0, 0.95, 0.7, 1.0, 50, LOGITS_ALL_INF, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i]);

    /* nothing queued for no rows, and bad arguments refused */
    {
        struct lf_cpu_sample_params p = { 1, 0.95, 0.7, 1.0, 50 };
        int ok = lf_cuda_sample_f32(NULL, 0, 10, &p, NULL, NULL, 0, NULL, NULL, stream) == cudaSuccess &&
                 lf_cuda_sample_f32(NULL, 1, 0, &p, NULL, NULL, 0, NULL, NULL, stream) == cudaErrorInvalidValue;
        result(ok, "arguments", "B=0 does nothing, V=0 is refused");
    }

    struct lf_cpu_sample_params dflt = { 1, 0.95, 0.7, 1.0, 50 }, greedy = { 0, 1.0, 1.0, 1.0, 0 },
                                toponly = { 1, 0.95, 0.7, 1.0, 0 };
    time_case("topk50_topp07", 8, 151936, &dflt);
    time_case("greedy", 8, 151936, &greedy);
    time_case("topp07_no_topk (full sort)", 8, 151936, &toponly);

    return device_finish();
}

/* tests/cuda/test_attention.cu — checks kernels/cuda/attention.cu against
 * the CPU reference (lf_cpu_attention_f32, lf_cpu_attention_bwd_f32) on
 * random q, k, v, dout from test_rng.h: decoding over a KV cache (T = 1,
 * q0 = S - 1, with and without a window), grouped-query prefill at head
 * dims 24, 64, 80, 96, 128, 256, several query and key tiles, sliding
 * windows shorter than T (down to 1), a chunk of queries over a cache
 * (q0 > 0) with a window, keys past the last query (S > q0 + T: their dk
 * and dv must stay as they were), gemma2's soft-capping (with and without
 * a window), neat packing (one call per span on offset pointers, as
 * libcommon/backprop.c does: spans 10, 17, 5 of a row of 32), the
 * backward without the forward's lse (recomputed), and the realistic
 * causal T = S = 2048, 32 heads, 8 kv heads, d 128, which is timed
 * (TFLOP/s counts 2 * 2 * T * S * d * heads / 2 for the forward, 2.5 times
 * that for the backward) and compared with the CPU on the first kv head's
 * group (4 query heads) only, the CPU being slow there.  Its backward also
 * runs twice: the results must be the same bits (no atomics).
 *
 * A check passes when max |gpu - cpu| <= 1e-4 * max(1, max |cpu|) over the
 * whole output (out, dq, dk, dv; the lse against a double-precision
 * reference), NaN failing.  out, dq and lse start as NaN on the GPU, so an
 * element left unwritten fails; dk and dv start from random values (they
 * accumulate) and are compared over the whole buffer, so a key that should
 * not have been touched fails too.
 *
 * Prints "PASS name detail" or "FAIL name detail" per check; exits 0 if
 * all pass, 1 if any fails, 2 if there is no usable CUDA device.  Built as
 * $(OUT)/tests/cuda_test_attention; a few seconds on an H100, mostly the
 * CPU references. */
#include "cpu/grad.h"
#include "cpu/ops.h"
#include "cuda/attention.h"
#include "cuda/cuda_check.h"

#include "report.h"
#include "test_rng.h"
#include "device.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { BIG_WARMUP = 2, BIG_ITERS = 10 };
/* the timed shape */
enum { BIG_T = 2048, BIG_HEADS = 32, BIG_KV = 8, BIG_D = 128 };

static const double TOL = 1e-4;

/* the first ncols of each of rows rows of stride floats */
static float *columns(const float *x, int rows, long stride, long ncols)
{
    float *y = (float *)xmalloc((size_t)rows * ncols * sizeof(float));
    for (int r = 0; r < rows; r++)
        memcpy(y + (size_t)r * ncols, x + (size_t)r * stride, (size_t)ncols * sizeof(float));
    return y;
}

/* max |got - ref| over n elements (the first ncols of rows of stride
   got_stride in got, of ref_stride in ref) against tol * max(1, max |ref|),
   NaN failing; appends the numbers to detail; returns 1 when within */
static int compare_cols(const char *what, const float *got, long got_stride, const float *ref, long ref_stride,
                        int rows, long ncols, char *detail, size_t len)
{
    double max_abs = 0, max_ref = 0;
    float gw = 0, rw = 0;
    long wr = 0, wc = 0;
    for (int r = 0; r < rows; r++)
        for (long c = 0; c < ncols; c++) {
            float g = got[(size_t)r * got_stride + c], e = ref[(size_t)r * ref_stride + c];
            double a = fabs((double)e), d = fabs((double)g - (double)e);
            if (!(a <= max_ref))
                max_ref = isnan(a) ? INFINITY : a;
            if (!(d <= max_abs)) {
                max_abs = isnan(d) ? INFINITY : d;
                gw = g;
                rw = e;
                wr = r;
                wc = c;
            }
        }
    double limit = TOL * (max_ref > 1.0 ? max_ref : 1.0);
    int ok = max_abs <= limit && isfinite(max_ref); /* a non-finite reference proves nothing */
    char at[48];
    if (rows > 1)
        snprintf(at, sizeof at, "[%ld,%ld]", wr, wc);
    else
        snprintf(at, sizeof at, "%ld", wc);
    appendf(detail, len, "%s%smax_abs=%.3g (at %s: gpu %.9g cpu %.9g) max|ref|=%.3g%s", *detail ? "; " : "", what,
            max_abs, at, gw, rw, max_ref, ok ? "" : " - over tolerance");
    return ok;
}

static int compare(const char *what, const float *got, const float *ref, size_t n, char *detail, size_t len)
{
    return compare_cols(what, got, (long)n, ref, (long)n, 1, (long)n, detail, len);
}

/* each row's log-sum-exp in double, lse[t * heads + h], for the query
   rows t of one call (q0, S) on q, k offset to that call */
static void lse_reference(float *lse, const float *q, const float *k, int T, int S, int q0, const struct lf_attn *a)
{
    int d = a->d, group = a->heads / a->kv_heads;
    long qs = (long)a->heads * d, ks = (long)a->kv_heads * d;
    double *sc = (double *)xmalloc((size_t)(S > 0 ? S : 1) * sizeof(double));
    for (int t = 0; t < T; t++)
        for (int h = 0; h < a->heads; h++) {
            int p = q0 + t, lo = a->window > 0 && p - a->window + 1 > 0 ? p - a->window + 1 : 0;
            int hi = p < S - 1 ? p : S - 1;
            double mx = -INFINITY, sum = 0;
            for (int s = lo; s <= hi; s++) {
                double dot = 0;
                for (int c = 0; c < d; c++)
                    dot += (double)q[t * qs + (long)h * d + c] * k[s * ks + (long)(h / group) * d + c];
                dot *= a->scale;
                if (a->softcap > 0)
                    dot = a->softcap * tanh(dot / a->softcap);
                sc[s] = dot;
                mx = dot > mx ? dot : mx;
            }
            for (int s = lo; s <= hi; s++)
                sum += exp(sc[s] - mx);
            lse[(size_t)t * a->heads + h] = (float)(mx + log(sum));
        }
    free(sc);
}

struct attn_case {
    const char *name;
    int T, S, q0, heads, kv_heads, d, window;
    float softcap, scale; /* scale 0: 1/sqrt(d) */
    float q_amp;          /* q in [-q_amp, q_amp), k in [-2, 2) */
    int spans[4];         /* neat packing: span lengths adding up to T = S (q0 0), 0-terminated */
    int no_lse;           /* also run the backward without the forward's lse */
};

static void describe(char *name, size_t len, const struct attn_case *c, const char *what)
{
    snprintf(name, len, "attention_%s_%s_T%d_S%d_q0%d_h%d_kv%d_d%d", what, c->name, c->T, c->S, c->q0, c->heads,
             c->kv_heads, c->d);
    if (c->window)
        appendf(name, len, "_win%d", c->window);
    if (c->softcap > 0)
        appendf(name, len, "_cap%g", c->softcap);
}

/* forward and backward of one case; spans: one call per span on offset
   pointers, else one call */
static void check_case(const struct attn_case *c)
{
    struct lf_attn a = { c->heads, c->kv_heads, c->d, c->scale > 0 ? c->scale : 1.0f / sqrtf((float)c->d),
                         c->softcap, c->window };
    int T = c->T, S = c->S;
    long qd = (long)c->heads * c->d, kd = (long)c->kv_heads * c->d;
    size_t nq = (size_t)T * qd, nk = (size_t)S * kd, nl = (size_t)T * c->heads;
    float *q = random_f32(nq, c->q_amp), *k = random_f32(nk, 2.0f), *v = random_f32(nk, 1.0f);
    float *dout = random_f32(nq, 1.0f), *dk0 = random_f32(nk, 0.5f), *dv0 = random_f32(nk, 0.5f);

    /* the calls: [start, len) per span, or the whole */
    int starts[4], lens[4], ncalls = 0;
    if (c->spans[0])
        for (int s = 0, at = 0; s < 4 && c->spans[s]; at += c->spans[s], s++) {
            starts[ncalls] = at;
            lens[ncalls++] = c->spans[s];
        }
    else {
        starts[0] = 0;
        lens[0] = T;
        ncalls = 1;
    }

    /* CPU */
    float *ref_out = (float *)xmalloc(nq * sizeof(float)), *ref_dq = (float *)xmalloc(nq * sizeof(float));
    float *ref_dk = copy_f32(dk0, nk), *ref_dv = copy_f32(dv0, nk), *ref_lse = (float *)xmalloc(nl * sizeof(float));
    for (int i = 0; i < ncalls; i++) {
        long s0 = starts[i];
        int cT = ncalls > 1 ? lens[i] : T, cS = ncalls > 1 ? lens[i] : S, cq0 = ncalls > 1 ? 0 : c->q0;
        float *scratch = (float *)xmalloc(3 * (size_t)cT * cS * sizeof(float));
        lf_cpu_attention_f32(ref_out + s0 * qd, q + s0 * qd, k + s0 * kd, v + s0 * kd, cT, cS, cq0, &a, scratch);
        lf_cpu_attention_bwd_f32(ref_dq + s0 * qd, ref_dk + s0 * kd, ref_dv + s0 * kd, dout + s0 * qd, q + s0 * qd,
                                 k + s0 * kd, v + s0 * kd, ref_out + s0 * qd, cT, cS, cq0, &a, scratch);
        lse_reference(ref_lse + s0 * c->heads, q + s0 * qd, k + s0 * kd, cT, cS, cq0, &a);
        free(scratch);
    }

    /* GPU */
    float *d_q = (float *)to_device(q, nq * sizeof(float)), *d_k = (float *)to_device(k, nk * sizeof(float)), *d_v = (float *)to_device(v, nk * sizeof(float)), *d_dout = (float *)to_device(dout, nq * sizeof(float));
    float *d_out = (float *)nan_device(nq * sizeof(float)), *d_lse = (float *)nan_device(nl * sizeof(float));
    for (int i = 0; i < ncalls; i++) {
        long s0 = starts[i];
        int cT = ncalls > 1 ? lens[i] : T, cS = ncalls > 1 ? lens[i] : S, cq0 = ncalls > 1 ? 0 : c->q0;
        lf_cuda_attention_f32(d_out + s0 * qd, d_q + s0 * qd, d_k + s0 * kd, d_v + s0 * kd, cT, cS, cq0, &a, NULL,
                              d_lse + s0 * c->heads, stream);
    }
    float *got_out = fetch(d_out, nq, 4), *got_lse = fetch(d_lse, nl, 4);
    char name[192], detail[1024] = "";
    describe(name, sizeof name, c, "fwd");
    int ok = compare("out: ", got_out, ref_out, nq, detail, sizeof detail);
    ok &= compare("lse: ", got_lse, ref_lse, nl, detail, sizeof detail);
    result(ok, name, detail);

    for (int pass = 0; pass < (c->no_lse ? 2 : 1); pass++) {
        float *d_dq = (float *)nan_device(nq * sizeof(float)), *d_dk = (float *)to_device(dk0, nk * sizeof(float)), *d_dv = (float *)to_device(dv0, nk * sizeof(float));
        for (int i = 0; i < ncalls; i++) {
            long s0 = starts[i];
            int cT = ncalls > 1 ? lens[i] : T, cS = ncalls > 1 ? lens[i] : S, cq0 = ncalls > 1 ? 0 : c->q0;
            lf_cuda_attention_bwd_f32(d_dq + s0 * qd, d_dk + s0 * kd, d_dv + s0 * kd, d_dout + s0 * qd,
                                      d_q + s0 * qd, d_k + s0 * kd, d_v + s0 * kd, d_out + s0 * qd, cT, cS, cq0, &a,
                                      NULL, pass ? NULL : d_lse + s0 * c->heads, stream);
        }
        float *got_dq = fetch(d_dq, nq, 4), *got_dk = fetch(d_dk, nk, 4), *got_dv = fetch(d_dv, nk, 4);
        detail[0] = 0;
        describe(name, sizeof name, c, pass ? "bwd_no_lse" : "bwd");
        ok = compare("dq: ", got_dq, ref_dq, nq, detail, sizeof detail);
        ok &= compare("dk: ", got_dk, ref_dk, nk, detail, sizeof detail);
        ok &= compare("dv: ", got_dv, ref_dv, nk, detail, sizeof detail);
        result(ok, name, detail);
        LF_CUDA_CHECK(cudaFree(d_dq));
        LF_CUDA_CHECK(cudaFree(d_dk));
        LF_CUDA_CHECK(cudaFree(d_dv));
        free(got_dq); free(got_dk); free(got_dv);
    }

    LF_CUDA_CHECK(cudaFree(d_q));
    LF_CUDA_CHECK(cudaFree(d_k));
    LF_CUDA_CHECK(cudaFree(d_v));
    LF_CUDA_CHECK(cudaFree(d_dout));
    LF_CUDA_CHECK(cudaFree(d_out));
    LF_CUDA_CHECK(cudaFree(d_lse));
    free(q); free(k); free(v); free(dout); free(dk0); free(dv0);
    free(ref_out); free(ref_dq); free(ref_dk); free(ref_dv); free(ref_lse);
    free(got_out); free(got_lse);
}

/* timing: BIG_WARMUP calls, then BIG_ITERS between the events; milliseconds per call */
static double time_ms(int bwd, float *d_out, float *d_lse, float *d_dq, float *d_dk, float *d_dv, const float *d_dout,
                      const float *d_q, const float *d_k, const float *d_v, int T, const struct lf_attn *a)
{
    float ms = 0;
    for (int it = 0; it < BIG_WARMUP + BIG_ITERS; it++) {
        if (it == BIG_WARMUP)
            LF_CUDA_CHECK(cudaEventRecord(ev0, stream));
        if (bwd)
            lf_cuda_attention_bwd_f32(d_dq, d_dk, d_dv, d_dout, d_q, d_k, d_v, d_out, T, T, 0, a, NULL, d_lse, stream);
        else
            lf_cuda_attention_f32(d_out, d_q, d_k, d_v, T, T, 0, a, NULL, d_lse, stream);
    }
    LF_CUDA_CHECK(cudaEventRecord(ev1, stream));
    LF_CUDA_CHECK(cudaEventSynchronize(ev1));
    LF_CUDA_CHECK(cudaEventElapsedTime(&ms, ev0, ev1));
    return ms / BIG_ITERS;
}

/* the realistic causal prefill: GPU over every head, the CPU over the
   first kv head's group; timed; the backward run twice must give the
   same bits */
static void check_big(void)
{
    const int T = BIG_T, H = BIG_HEADS, KV = BIG_KV, d = BIG_D, G = BIG_HEADS / BIG_KV;
    struct lf_attn a = { H, KV, d, 1.0f / sqrtf((float)d), 0.0f, 0 };
    struct lf_attn a1 = { G, 1, d, a.scale, 0.0f, 0 }; /* the first group alone */
    long qd = (long)H * d, kd = (long)KV * d;
    size_t nq = (size_t)T * qd, nk = (size_t)T * kd, nl = (size_t)T * H;
    float *q = random_f32(nq, 2.0f), *k = random_f32(nk, 2.0f), *v = random_f32(nk, 1.0f);
    float *dout = random_f32(nq, 1.0f), *dk0 = random_f32(nk, 0.5f), *dv0 = random_f32(nk, 0.5f);

    /* CPU on the group: q's first G heads, k and v's first kv head */
    float *q1 = columns(q, T, qd, (long)G * d), *k1 = columns(k, T, kd, d), *v1 = columns(v, T, kd, d);
    float *do1 = columns(dout, T, qd, (long)G * d), *dk1 = columns(dk0, T, kd, d), *dv1 = columns(dv0, T, kd, d);
    float *o1 = (float *)xmalloc((size_t)T * G * d * sizeof(float)), *dq1 = (float *)xmalloc((size_t)T * G * d * 4);
    float *scratch = (float *)xmalloc(3 * (size_t)T * T * sizeof(float));
    lf_cpu_attention_f32(o1, q1, k1, v1, T, T, 0, &a1, scratch);
    lf_cpu_attention_bwd_f32(dq1, dk1, dv1, do1, q1, k1, v1, o1, T, T, 0, &a1, scratch);
    free(scratch);

    float *d_q = (float *)to_device(q, nq * sizeof(float)), *d_k = (float *)to_device(k, nk * sizeof(float)), *d_v = (float *)to_device(v, nk * sizeof(float)), *d_dout = (float *)to_device(dout, nq * sizeof(float));
    float *d_out = (float *)nan_device(nq * sizeof(float)), *d_lse = (float *)nan_device(nl * sizeof(float)), *d_dq = (float *)nan_device(nq * sizeof(float));
    float *d_dk = (float *)to_device(dk0, nk * sizeof(float)), *d_dv = (float *)to_device(dv0, nk * sizeof(float));
    lf_cuda_attention_f32(d_out, d_q, d_k, d_v, T, T, 0, &a, NULL, d_lse, stream);
    lf_cuda_attention_bwd_f32(d_dq, d_dk, d_dv, d_dout, d_q, d_k, d_v, d_out, T, T, 0, &a, NULL, d_lse, stream);
    float *got_out = fetch(d_out, nq, 4), *got_dq = fetch(d_dq, nq, 4), *got_dk = fetch(d_dk, nk, 4), *got_dv = fetch(d_dv, nk, 4);
    float *got_lse = fetch(d_lse, nl, 4);

    /* the same backward again: the same bits */
    float *d_dq2 = (float *)nan_device(nq * sizeof(float)), *d_dk2 = (float *)to_device(dk0, nk * sizeof(float)), *d_dv2 = (float *)to_device(dv0, nk * sizeof(float));
    lf_cuda_attention_bwd_f32(d_dq2, d_dk2, d_dv2, d_dout, d_q, d_k, d_v, d_out, T, T, 0, &a, NULL, d_lse, stream);
    float *again_dq = fetch(d_dq2, nq, 4), *again_dk = fetch(d_dk2, nk, 4), *again_dv = fetch(d_dv2, nk, 4);
    int same = !memcmp(again_dq, got_dq, nq * 4) && !memcmp(again_dk, got_dk, nk * 4) &&
               !memcmp(again_dv, got_dv, nk * 4);

    double flops = 2.0 * 2.0 * T * (double)T * d * H / 2;
    double fwd_ms = time_ms(0, d_out, d_lse, d_dq, d_dk, d_dv, d_dout, d_q, d_k, d_v, T, &a);
    double bwd_ms = time_ms(1, d_out, d_lse, d_dq, d_dk, d_dv, d_dout, d_q, d_k, d_v, T, &a);

    char name[128], detail[1024] = "";
    snprintf(name, sizeof name, "attention_fwd_causal_T%d_h%d_kv%d_d%d", T, H, KV, d);
    int ok = compare_cols("out (heads 0..3): ", got_out, qd, o1, (long)G * d, T, (long)G * d, detail, sizeof detail);
    int finite = 1;
    for (size_t i = 0; i < nq && finite; i++)
        finite = isfinite(got_out[i]);
    for (size_t i = 0; i < nl && finite; i++)
        finite = isfinite(got_lse[i]);
    appendf(detail, sizeof detail, "; every out and lse finite: %s", finite ? "yes" : "NO");
    appendf(detail, sizeof detail, "; %.3f ms, %.2f TFLOP/s (avg of %d after %d warm-up)", fwd_ms,
            flops / (fwd_ms * 1e-3) / 1e12, BIG_ITERS, BIG_WARMUP);
    result(ok && finite, name, detail);

    detail[0] = 0;
    snprintf(name, sizeof name, "attention_bwd_causal_T%d_h%d_kv%d_d%d", T, H, KV, d);
    ok = compare_cols("dq (heads 0..3): ", got_dq, qd, dq1, (long)G * d, T, (long)G * d, detail, sizeof detail);
    ok &= compare_cols("dk (kv head 0): ", got_dk, kd, dk1, d, T, d, detail, sizeof detail);
    ok &= compare_cols("dv (kv head 0): ", got_dv, kd, dv1, d, T, d, detail, sizeof detail);
    finite = 1;
    for (size_t i = 0; i < nq && finite; i++)
        finite = isfinite(got_dq[i]);
    for (size_t i = 0; i < nk && finite; i++)
        finite = isfinite(got_dk[i]) && isfinite(got_dv[i]);
    appendf(detail, sizeof detail, "; every dq, dk, dv finite: %s; second run the same bits: %s",
            finite ? "yes" : "NO", same ? "yes" : "NO");
    appendf(detail, sizeof detail, "; %.3f ms, %.2f TFLOP/s at 2.5x the forward's FLOPs (avg of %d after %d warm-up)",
            bwd_ms, 2.5 * flops / (bwd_ms * 1e-3) / 1e12, BIG_ITERS, BIG_WARMUP);
    result(ok && finite && same, name, detail);

    float *dev[] = { d_q, d_k, d_v, d_dout, d_out, d_lse, d_dq, d_dk, d_dv, d_dq2, d_dk2, d_dv2 };
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
        LF_CUDA_CHECK(cudaFree(dev[i]));
    float *host[] = { q, k, v, dout, dk0, dv0, q1, k1, v1, do1, dk1, dv1, o1, dq1, got_out, got_dq, got_dk,
                      got_dv, got_lse, again_dq, again_dk, again_dv };
    for (size_t i = 0; i < sizeof host / sizeof host[0]; i++)
        free(host[i]);
}

int main(int argc, char **argv)
{
    (void)argv;
    int rc = device_start(argc);
    if (rc >= 0)
        return rc;

    /* name, T, S, q0, heads, kv_heads, d, window, softcap, scale, q_amp, spans, no_lse.
       Sizes and windows are chosen for the tile edges: T = 97 and 129 leave
       one key in the last 32-key tile (and one row in the last 64-row tile
       at 129); window 34 makes the queries that see a key tile end one row
       into a query tile (34 = 2 - 32 mod 64 and mod 32). */
    static const struct attn_case cases[] = {
        { "decode", 1, 100, 99, 8, 2, 128, 0, 0, 0, 2, { 0 }, 1 },
        { "decode", 1, 100, 99, 4, 4, 64, 30, 0, 0, 2, { 0 }, 0 },
        { "gqa", 37, 37, 0, 3, 1, 64, 0, 0, 0, 2, { 0 }, 0 },
        { "gqa", 37, 37, 0, 3, 1, 80, 0, 0, 0, 2, { 0 }, 0 },
        { "gqa", 37, 37, 0, 3, 1, 96, 0, 0, 0, 2, { 0 }, 1 },
        { "gqa", 37, 37, 0, 3, 1, 128, 0, 0, 0, 2, { 0 }, 0 },
        { "gqa", 37, 37, 0, 3, 1, 256, 0, 0, 0, 2, { 0 }, 1 },
        { "gqa", 37, 37, 0, 3, 1, 24, 0, 0, 0, 2, { 0 }, 0 },
        { "tiles", 97, 97, 0, 2, 2, 64, 0, 0, 0, 2, { 0 }, 0 },
        { "tiles", 129, 129, 0, 2, 1, 256, 0, 0, 0, 2, { 0 }, 0 },
        { "window", 150, 150, 0, 4, 2, 64, 40, 0, 0, 2, { 0 }, 1 },
        { "window", 70, 70, 0, 2, 1, 32, 1, 0, 0, 2, { 0 }, 0 },
        { "window", 130, 130, 0, 2, 1, 128, 34, 0, 0, 2, { 0 }, 0 },
        { "window", 100, 100, 0, 2, 2, 256, 34, 0, 0, 2, { 0 }, 0 },
        { "cache_chunk", 45, 105, 60, 4, 2, 128, 50, 0, 0, 2, { 0 }, 1 },
        { "keys_past", 30, 80, 20, 2, 1, 64, 0, 0, 0, 2, { 0 }, 0 },
        { "softcap", 67, 67, 0, 4, 2, 256, 0, 50, 0.0625f, 12, { 0 }, 1 },
        { "softcap_window", 100, 100, 0, 2, 1, 256, 34, 50, 0.0625f, 12, { 0 }, 0 },
        { "softcap", 40, 40, 0, 2, 1, 128, 0, 30, 0, 20, { 0 }, 0 },
        { "neat_spans", 32, 32, 0, 4, 2, 64, 0, 0, 0, 2, { 10, 17, 5, 0 }, 1 },
        { "neat_spans", 32, 32, 0, 2, 1, 128, 6, 0, 0, 2, { 10, 17, 5, 0 }, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_case(&cases[i]);
    check_big();

    return device_finish();
}

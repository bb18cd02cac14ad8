/* tests/cuda/test_attention_tc.cu — checks kernels/cuda/attention_tc.cu
 * (the tensor-core attention, bf16 products with f32 accumulation) against
 * the CPU reference (lf_cpu_attention_f32, lf_cpu_attention_bwd_f32, all
 * f32) on random q, k, v, dout from test_rng.h: causal prefill T = S with
 * grouped-query 4:1 and plain 1:1 heads, head dims 24, 32, 64, 80, 96, 128
 * (padded to 32, 64, 96, 128 inside) and 256 (the documented fallback to
 * the f32 kernels), T = 1 and 17 and T not a multiple of the 64-row tile,
 * decoding and a chunk of queries over a cache (q0 > 0, S >= q0 + T), keys
 * past the last query (S > q0 + T), sliding windows (1, 2, 30, 34, 40, 50),
 * soft-capping with and without a window, neat packing (one call per span on
 * offset pointers), the backward without the forward's lse (recomputed),
 * and a realistic causal T = 2048, 32 heads, 8 kv heads, d 128, timed
 * against the f32 kernels (lf_cuda_attention_f32 / _bwd_f32) and compared
 * with the CPU on the first kv head's group only.
 *
 * Tolerances.  The kernels round q, k, v, dout and the probabilities and
 * score gradients to bf16 (8 significant bits: relative error up to 2^-9 =
 * 2e-3 per input) before each product, the CPU does not; the errors of a
 * 64- to 128-term dot product partly cancel, those of the scores go through
 * exp.  Measured on these inputs (the emulator's faithful bf16 rounding and
 * f32 accumulation; the GPU's differ only in the last bits of the
 * accumulation): with scores of magnitude up to ~5 (q and k in [-2, 2)),
 * out within 5e-3 of max |out|, lse within 2e-3 of max(1, max |lse|), dq,
 * dk, dv within 4e-3 of their max |ref|.  Large logits cost more: a score
 * of 20 .. 30 computed from bf16 q and k is off by a few 1e-2 before the
 * exp, which moves its probability by a few percent; the soft-capped cases
 * (q in [-12, 12) and [-20, 20), scores up to the caps 30 and 50) measure
 * out 1.8e-2 and 2.6e-2, dk 1.3e-2.  The limits: TOL_OUT 2e-2 (out and lse;
 * 6e-2 for the two large-logit cases), TOL_GRAD 5e-2 (dq, dk, dv), a 2..5x
 * margin; a wrong mask, scale, softcap or lse moves them by 1e-1 .. 1
 * (mutation-checked).  The d 256 fallback runs the f32 kernels and is held
 * to their 1e-4.
 *
 * Exact checks: out, dq and lse start as NaN (an unwritten element fails);
 * dk and dv start from random values and must come out as those values
 * plus, bit for bit, what a run from zeros gives (dk += in f32, keys no
 * query sees untouched); a second forward and backward give the same bits
 * (no atomics).
 *
 * Prints "PASS name detail" or "FAIL name detail" per check; exits 0 if
 * all pass, 1 if any fails, 2 if there is no usable CUDA device.  Built as
 * $(OUT)/tests/cuda_test_attention_tc; seconds on an H100 (mostly the CPU
 * references).  Under the CPU emulator (/tmp/cudaemu, which shrinks the
 * timed shape to T 256, 8 heads, 2 kv heads) about half a minute. */
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

static const double TOL_OUT = 2e-2, TOL_GRAD = 5e-2, TOL_F32 = 1e-4;
#define TOL_OUT_BIG_LOGITS 6e-2 /* the soft-capped cases: scores up to ~30 */

/* the first ncols of each of rows rows of stride floats */
static float *columns(const float *x, int rows, long stride, long ncols)
{
    float *y = (float *)xmalloc((size_t)rows * ncols * sizeof(float));
    for (int r = 0; r < rows; r++)
        memcpy(y + (size_t)r * ncols, x + (size_t)r * stride, (size_t)ncols * sizeof(float));
    return y;
}

/* max |got - ref| over the first ncols of rows rows (strides got_stride,
   ref_stride) against tol * max(1, max |ref|), NaN failing; appends the
   numbers (and the error relative to max |ref|) to detail; 1 when within */
static int compare_cols(const char *what, double tol, const float *got, long got_stride, const float *ref,
                        long ref_stride, int rows, long ncols, char *detail, size_t len)
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
    double norm = max_ref > 1.0 ? max_ref : 1.0;
    int ok = max_abs <= tol * norm && isfinite(max_ref); /* a non-finite reference proves nothing */
    char at[48];
    if (rows > 1)
        snprintf(at, sizeof at, "[%ld,%ld]", wr, wc);
    else
        snprintf(at, sizeof at, "%ld", wc);
    appendf(detail, len, "%s%smax_abs=%.3g (%.2g of max(1,max|ref|), tol %.0e; at %s: gpu %.7g cpu %.7g) max|ref|=%.3g%s",
            *detail ? "; " : "", what, max_abs, max_abs / norm, tol, at, gw, rw, max_ref,
            ok ? "" : " - over tolerance");
    return ok;
}

static int compare(const char *what, double tol, const float *got, const float *ref, size_t n, char *detail,
                   size_t len)
{
    return compare_cols(what, tol, got, (long)n, ref, (long)n, 1, (long)n, detail, len);
}

/* each row's log-sum-exp in double, lse[t * heads + h] */
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
    int exact;            /* also the same-bits and dk/dv += checks */
    double tol_out;       /* 0: TOL_OUT; larger for large logits (see the top) */
};

static void describe(char *name, size_t len, const struct attn_case *c, const char *what)
{
    snprintf(name, len, "attention_tc_%s_%s_T%d_S%d_q0%d_h%d_kv%d_d%d", what, c->name, c->T, c->S, c->q0, c->heads,
             c->kv_heads, c->d);
    if (c->window)
        appendf(name, len, "_win%d", c->window);
    if (c->softcap > 0)
        appendf(name, len, "_cap%g", c->softcap);
}

struct calls {
    int n, start[4], len[4];
};

/* the GPU forward of a case, one call per span */
static void run_fwd(const struct attn_case *c, const struct calls *cl, const struct lf_attn *a, float *d_out,
                    float *d_lse, const float *d_q, const float *d_k, const float *d_v)
{
    long qd = (long)c->heads * c->d, kd = (long)c->kv_heads * c->d;
    for (int i = 0; i < cl->n; i++) {
        long s0 = cl->start[i];
        int cT = cl->n > 1 ? cl->len[i] : c->T, cS = cl->n > 1 ? cl->len[i] : c->S, cq0 = cl->n > 1 ? 0 : c->q0;
        lf_cuda_attention_tc_f32(d_out + s0 * qd, d_q + s0 * qd, d_k + s0 * kd, d_v + s0 * kd, cT, cS, cq0, a, NULL,
                                 d_lse + s0 * c->heads, stream);
    }
}

/* the GPU backward of a case into fresh dq (NaN) and dk, dv from dk0, dv0
   (NULL: zeros); results fetched to the host */
static void run_bwd(const struct attn_case *c, const struct calls *cl, const struct lf_attn *a, int with_lse,
                    const float *d_out, const float *d_lse, const float *d_q, const float *d_k, const float *d_v,
                    const float *d_dout, const float *dk0, const float *dv0, float **dq, float **dk, float **dv)
{
    long qd = (long)c->heads * c->d, kd = (long)c->kv_heads * c->d;
    size_t nq = (size_t)c->T * qd, nk = (size_t)c->S * kd;
    float *d_dq = (float *)nan_device(nq * sizeof(float)), *d_dk, *d_dv;
    if (dk0) {
        d_dk = (float *)to_device(dk0, nk * sizeof(float));
        d_dv = (float *)to_device(dv0, nk * sizeof(float));
    } else {
        LF_CUDA_CHECK(cudaMalloc((void **)&d_dk, nk * sizeof(float)));
        LF_CUDA_CHECK(cudaMalloc((void **)&d_dv, nk * sizeof(float)));
        LF_CUDA_CHECK(cudaMemset(d_dk, 0, nk * sizeof(float)));
        LF_CUDA_CHECK(cudaMemset(d_dv, 0, nk * sizeof(float)));
    }
    for (int i = 0; i < cl->n; i++) {
        long s0 = cl->start[i];
        int cT = cl->n > 1 ? cl->len[i] : c->T, cS = cl->n > 1 ? cl->len[i] : c->S, cq0 = cl->n > 1 ? 0 : c->q0;
        lf_cuda_attention_tc_bwd_f32(d_dq + s0 * qd, d_dk + s0 * kd, d_dv + s0 * kd, d_dout + s0 * qd, d_q + s0 * qd,
                                     d_k + s0 * kd, d_v + s0 * kd, d_out + s0 * qd, cT, cS, cq0, a, NULL,
                                     with_lse ? d_lse + s0 * c->heads : NULL, stream);
    }
    *dq = fetch(d_dq, nq, 4);
    *dk = fetch(d_dk, nk, 4);
    *dv = fetch(d_dv, nk, 4);
    LF_CUDA_CHECK(cudaFree(d_dq));
    LF_CUDA_CHECK(cudaFree(d_dk));
    LF_CUDA_CHECK(cudaFree(d_dv));
}

/* got == base + inc, bit for bit, in f32 (what dk += inc gives) */
static int sum_exact(const float *got, const float *base, const float *inc, size_t n, size_t *bad)
{
    for (size_t i = 0; i < n; i++) {
        volatile float s = base[i] + inc[i];
        if (memcmp((const void *)&s, got + i, sizeof(float))) {
            *bad = i;
            return 0;
        }
    }
    return 1;
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
    int fallback = c->d > LF_CUDA_ATTENTION_TC_MAX_D;
    double tol_out = fallback ? TOL_F32 : c->tol_out > 0 ? c->tol_out : TOL_OUT;
    double tol_grad = fallback ? TOL_F32 : TOL_GRAD;

    struct calls cl = { 0, { 0 }, { 0 } };
    if (c->spans[0])
        for (int s = 0, at = 0; s < 4 && c->spans[s]; at += c->spans[s], s++) {
            cl.start[cl.n] = at;
            cl.len[cl.n++] = c->spans[s];
        }
    else {
        cl.len[0] = T;
        cl.n = 1;
    }

    /* CPU */
    float *ref_out = (float *)xmalloc(nq * sizeof(float)), *ref_dq = (float *)xmalloc(nq * sizeof(float));
    float *ref_dk = copy_f32(dk0, nk), *ref_dv = copy_f32(dv0, nk), *ref_lse = (float *)xmalloc(nl * sizeof(float));
    for (int i = 0; i < cl.n; i++) {
        long s0 = cl.start[i];
        int cT = cl.n > 1 ? cl.len[i] : T, cS = cl.n > 1 ? cl.len[i] : S, cq0 = cl.n > 1 ? 0 : c->q0;
        float *scratch = (float *)xmalloc(3 * (size_t)cT * cS * sizeof(float));
        lf_cpu_attention_f32(ref_out + s0 * qd, q + s0 * qd, k + s0 * kd, v + s0 * kd, cT, cS, cq0, &a, scratch);
        lf_cpu_attention_bwd_f32(ref_dq + s0 * qd, ref_dk + s0 * kd, ref_dv + s0 * kd, dout + s0 * qd, q + s0 * qd,
                                 k + s0 * kd, v + s0 * kd, ref_out + s0 * qd, cT, cS, cq0, &a, scratch);
        lse_reference(ref_lse + s0 * c->heads, q + s0 * qd, k + s0 * kd, cT, cS, cq0, &a);
        free(scratch);
    }

    /* GPU forward */
    float *d_q = (float *)to_device(q, nq * sizeof(float)), *d_k = (float *)to_device(k, nk * sizeof(float));
    float *d_v = (float *)to_device(v, nk * sizeof(float)), *d_dout = (float *)to_device(dout, nq * sizeof(float));
    float *d_out = (float *)nan_device(nq * sizeof(float)), *d_lse = (float *)nan_device(nl * sizeof(float));
    run_fwd(c, &cl, &a, d_out, d_lse, d_q, d_k, d_v);
    float *got_out = fetch(d_out, nq, 4), *got_lse = fetch(d_lse, nl, 4);
    char name[192], detail[1536] = "";
    describe(name, sizeof name, c, "fwd");
    int ok = compare("out: ", tol_out, got_out, ref_out, nq, detail, sizeof detail);
    ok &= compare("lse: ", tol_out, got_lse, ref_lse, nl, detail, sizeof detail);
    if (fallback)
        appendf(detail, sizeof detail, "; head dim over %d: the f32 kernels", LF_CUDA_ATTENTION_TC_MAX_D);
    result(ok, name, detail);

    float *dq, *dk, *dv;
    run_bwd(c, &cl, &a, 1, d_out, d_lse, d_q, d_k, d_v, d_dout, dk0, dv0, &dq, &dk, &dv);
    for (int pass = 0; pass < (c->no_lse ? 2 : 1); pass++) {
        float *dq2 = dq, *dk2 = dk, *dv2 = dv;
        if (pass)
            run_bwd(c, &cl, &a, 0, d_out, d_lse, d_q, d_k, d_v, d_dout, dk0, dv0, &dq2, &dk2, &dv2);
        detail[0] = 0;
        describe(name, sizeof name, c, pass ? "bwd_no_lse" : "bwd");
        ok = compare("dq: ", tol_grad, dq2, ref_dq, nq, detail, sizeof detail);
        ok &= compare("dk: ", tol_grad, dk2, ref_dk, nk, detail, sizeof detail);
        ok &= compare("dv: ", tol_grad, dv2, ref_dv, nk, detail, sizeof detail);
        result(ok, name, detail);
        if (pass) {
            free(dq2); free(dk2); free(dv2);
        }
    }

    if (c->exact) {
        /* the same calls again: the same bits */
        float *d_out2 = (float *)nan_device(nq * sizeof(float)), *d_lse2 = (float *)nan_device(nl * sizeof(float));
        run_fwd(c, &cl, &a, d_out2, d_lse2, d_q, d_k, d_v);
        float *out2 = fetch(d_out2, nq, 4), *lse2 = fetch(d_lse2, nl, 4);
        float *dq2, *dk2, *dv2, *dqz, *dkz, *dvz;
        run_bwd(c, &cl, &a, 1, d_out, d_lse, d_q, d_k, d_v, d_dout, dk0, dv0, &dq2, &dk2, &dv2);
        int same_f = !memcmp(out2, got_out, nq * 4) && !memcmp(lse2, got_lse, nl * 4);
        int same_b = !memcmp(dq2, dq, nq * 4) && !memcmp(dk2, dk, nk * 4) && !memcmp(dv2, dv, nk * 4);
        detail[0] = 0;
        describe(name, sizeof name, c, "deterministic");
        appendf(detail, sizeof detail, "second forward the same bits: %s; second backward the same bits: %s",
                same_f ? "yes" : "NO", same_b ? "yes" : "NO");
        result(same_f && same_b, name, detail);

        /* from zeros: dk (from dk0) == dk0 + dk (from 0) in f32, bit for bit */
        run_bwd(c, &cl, &a, 1, d_out, d_lse, d_q, d_k, d_v, d_dout, NULL, NULL, &dqz, &dkz, &dvz);
        size_t bk = 0, bv = 0;
        int acc_k = sum_exact(dk, dk0, dkz, nk, &bk), acc_v = sum_exact(dv, dv0, dvz, nk, &bv);
        int same_q = !memcmp(dqz, dq, nq * 4);
        detail[0] = 0;
        describe(name, sizeof name, c, "accumulate");
        appendf(detail, sizeof detail, "dk == dk0 + dk(from 0) bit for bit: %s", acc_k ? "yes" : "NO");
        if (!acc_k)
            appendf(detail, sizeof detail, " (at %zu: %.9g vs %.9g + %.9g)", bk, dk[bk], dk0[bk], dkz[bk]);
        appendf(detail, sizeof detail, "; dv likewise: %s", acc_v ? "yes" : "NO");
        if (!acc_v)
            appendf(detail, sizeof detail, " (at %zu: %.9g vs %.9g + %.9g)", bv, dv[bv], dv0[bv], dvz[bv]);
        appendf(detail, sizeof detail, "; dq overwritten, independent of dk/dv: %s", same_q ? "yes" : "NO");
        result(acc_k && acc_v && same_q, name, detail);

        LF_CUDA_CHECK(cudaFree(d_out2));
        LF_CUDA_CHECK(cudaFree(d_lse2));
        free(out2); free(lse2); free(dq2); free(dk2); free(dv2); free(dqz); free(dkz); free(dvz);
    }

    LF_CUDA_CHECK(cudaFree(d_q));
    LF_CUDA_CHECK(cudaFree(d_k));
    LF_CUDA_CHECK(cudaFree(d_v));
    LF_CUDA_CHECK(cudaFree(d_dout));
    LF_CUDA_CHECK(cudaFree(d_out));
    LF_CUDA_CHECK(cudaFree(d_lse));
    free(q); free(k); free(v); free(dout); free(dk0); free(dv0);
    free(ref_out); free(ref_dq); free(ref_dk); free(ref_dv); free(ref_lse);
    free(got_out); free(got_lse); free(dq); free(dk); free(dv);
}

/* milliseconds per call: BIG_WARMUP calls, then BIG_ITERS between the
   events; tc: the tensor-core kernels, else the f32 ones */
static double time_ms(int tc, int bwd, float *d_out, float *d_lse, float *d_dq, float *d_dk, float *d_dv,
                      const float *d_dout, const float *d_q, const float *d_k, const float *d_v, int T,
                      const struct lf_attn *a)
{
    float ms = 0;
    for (int it = 0; it < BIG_WARMUP + BIG_ITERS; it++) {
        if (it == BIG_WARMUP)
            LF_CUDA_CHECK(cudaEventRecord(ev0, stream));
        if (bwd && tc)
            lf_cuda_attention_tc_bwd_f32(d_dq, d_dk, d_dv, d_dout, d_q, d_k, d_v, d_out, T, T, 0, a, NULL, d_lse,
                                         stream);
        else if (bwd)
            lf_cuda_attention_bwd_f32(d_dq, d_dk, d_dv, d_dout, d_q, d_k, d_v, d_out, T, T, 0, a, NULL, d_lse, stream);
        else if (tc)
            lf_cuda_attention_tc_f32(d_out, d_q, d_k, d_v, T, T, 0, a, NULL, d_lse, stream);
        else
            lf_cuda_attention_f32(d_out, d_q, d_k, d_v, T, T, 0, a, NULL, d_lse, stream);
    }
    LF_CUDA_CHECK(cudaEventRecord(ev1, stream));
    LF_CUDA_CHECK(cudaEventSynchronize(ev1));
    LF_CUDA_CHECK(cudaEventElapsedTime(&ms, ev0, ev1));
    return ms / BIG_ITERS;
}

/* the realistic causal prefill: tensor cores over every head, the CPU over
   the first kv head's group; timed against the f32 kernels */
static void check_big(void)
{
    const int T = BIG_T, H = BIG_HEADS, KV = BIG_KV, d = BIG_D, G = BIG_HEADS / BIG_KV;
    struct lf_attn a = { H, KV, d, 1.0f / sqrtf((float)d), 0.0f, 0 };
    struct lf_attn a1 = { G, 1, d, a.scale, 0.0f, 0 }; /* the first group alone */
    long qd = (long)H * d, kd = (long)KV * d;
    size_t nq = (size_t)T * qd, nk = (size_t)T * kd, nl = (size_t)T * H;
    float *q = random_f32(nq, 2.0f), *k = random_f32(nk, 2.0f), *v = random_f32(nk, 1.0f);
    float *dout = random_f32(nq, 1.0f), *dk0 = random_f32(nk, 0.5f), *dv0 = random_f32(nk, 0.5f);

    float *q1 = columns(q, T, qd, (long)G * d), *k1 = columns(k, T, kd, d), *v1 = columns(v, T, kd, d);
    float *do1 = columns(dout, T, qd, (long)G * d), *dk1 = columns(dk0, T, kd, d), *dv1 = columns(dv0, T, kd, d);
    float *o1 = (float *)xmalloc((size_t)T * G * d * sizeof(float)), *dq1 = (float *)xmalloc((size_t)T * G * d * 4);
    float *scratch = (float *)xmalloc(3 * (size_t)T * T * sizeof(float));
    lf_cpu_attention_f32(o1, q1, k1, v1, T, T, 0, &a1, scratch);
    lf_cpu_attention_bwd_f32(dq1, dk1, dv1, do1, q1, k1, v1, o1, T, T, 0, &a1, scratch);
    free(scratch);

    float *d_q = (float *)to_device(q, nq * sizeof(float)), *d_k = (float *)to_device(k, nk * sizeof(float));
    float *d_v = (float *)to_device(v, nk * sizeof(float)), *d_dout = (float *)to_device(dout, nq * sizeof(float));
    float *d_out = (float *)nan_device(nq * sizeof(float)), *d_lse = (float *)nan_device(nl * sizeof(float));
    float *d_dq = (float *)nan_device(nq * sizeof(float));
    float *d_dk = (float *)to_device(dk0, nk * sizeof(float)), *d_dv = (float *)to_device(dv0, nk * sizeof(float));
    lf_cuda_attention_tc_f32(d_out, d_q, d_k, d_v, T, T, 0, &a, NULL, d_lse, stream);
    lf_cuda_attention_tc_bwd_f32(d_dq, d_dk, d_dv, d_dout, d_q, d_k, d_v, d_out, T, T, 0, &a, NULL, d_lse, stream);
    float *got_out = fetch(d_out, nq, 4), *got_dq = fetch(d_dq, nq, 4), *got_dk = fetch(d_dk, nk, 4);
    float *got_dv = fetch(d_dv, nk, 4), *got_lse = fetch(d_lse, nl, 4);

    double flops = 2.0 * 2.0 * T * (double)T * d * H / 2;
    double tc_fwd = time_ms(1, 0, d_out, d_lse, d_dq, d_dk, d_dv, d_dout, d_q, d_k, d_v, T, &a);
    double f32_fwd = time_ms(0, 0, d_out, d_lse, d_dq, d_dk, d_dv, d_dout, d_q, d_k, d_v, T, &a);
    double tc_bwd = time_ms(1, 1, d_out, d_lse, d_dq, d_dk, d_dv, d_dout, d_q, d_k, d_v, T, &a);
    double f32_bwd = time_ms(0, 1, d_out, d_lse, d_dq, d_dk, d_dv, d_dout, d_q, d_k, d_v, T, &a);

    char name[128], detail[1536] = "";
    snprintf(name, sizeof name, "attention_tc_fwd_causal_T%d_h%d_kv%d_d%d", T, H, KV, d);
    int ok = compare_cols("out (heads 0..3): ", TOL_OUT, got_out, qd, o1, (long)G * d, T, (long)G * d, detail,
                          sizeof detail);
    int finite = 1;
    for (size_t i = 0; i < nq && finite; i++)
        finite = isfinite(got_out[i]);
    for (size_t i = 0; i < nl && finite; i++)
        finite = isfinite(got_lse[i]);
    appendf(detail, sizeof detail, "; every out and lse finite: %s", finite ? "yes" : "NO");
    appendf(detail, sizeof detail, "; tc %.3f ms %.2f TFLOP/s, f32 kernels %.3f ms %.2f TFLOP/s (avg of %d after %d)",
            tc_fwd, flops / (tc_fwd * 1e-3) / 1e12, f32_fwd, flops / (f32_fwd * 1e-3) / 1e12, BIG_ITERS,
            BIG_WARMUP);
    result(ok && finite, name, detail);

    detail[0] = 0;
    snprintf(name, sizeof name, "attention_tc_bwd_causal_T%d_h%d_kv%d_d%d", T, H, KV, d);
    ok = compare_cols("dq (heads 0..3): ", TOL_GRAD, got_dq, qd, dq1, (long)G * d, T, (long)G * d, detail,
                      sizeof detail);
    ok &= compare_cols("dk (kv head 0): ", TOL_GRAD, got_dk, kd, dk1, d, T, d, detail, sizeof detail);
    ok &= compare_cols("dv (kv head 0): ", TOL_GRAD, got_dv, kd, dv1, d, T, d, detail, sizeof detail);
    finite = 1;
    for (size_t i = 0; i < nq && finite; i++)
        finite = isfinite(got_dq[i]);
    for (size_t i = 0; i < nk && finite; i++)
        finite = isfinite(got_dk[i]) && isfinite(got_dv[i]);
    appendf(detail, sizeof detail, "; every dq, dk, dv finite: %s", finite ? "yes" : "NO");
    appendf(detail, sizeof detail,
            "; tc %.3f ms %.2f TFLOP/s, f32 kernels %.3f ms %.2f TFLOP/s at 2.5x the forward's FLOPs", tc_bwd,
            2.5 * flops / (tc_bwd * 1e-3) / 1e12, f32_bwd, 2.5 * flops / (f32_bwd * 1e-3) / 1e12);
    result(ok && finite, name, detail);

    float *dev[] = { d_q, d_k, d_v, d_dout, d_out, d_lse, d_dq, d_dk, d_dv };
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
        LF_CUDA_CHECK(cudaFree(dev[i]));
    float *host[] = { q, k, v, dout, dk0, dv0, q1, k1, v1, do1, dk1, dv1, o1, dq1, got_out, got_dq, got_dk,
                      got_dv, got_lse };
    for (size_t i = 0; i < sizeof host / sizeof host[0]; i++)
        free(host[i]);
}

int main(int argc, char **argv)
{
    (void)argv;
    int rc = device_start(argc);
    if (rc >= 0)
        return rc;

    /* name, T, S, q0, heads, kv_heads, d, window, softcap, scale, q_amp, spans, no_lse, exact, tol_out.
       The tiles are 64 x 64: T = 97, 130 and 150 leave a partial last
       query and key tile; window 2 ends the queries that see a key tile
       one row into a query tile (63 + 2 = 1 mod 64). */
    static const struct attn_case cases[] = {
        { "gqa", 130, 130, 0, 4, 1, 128, 0, 0, 0, 2, { 0 }, 0, 1 },
        { "mha", 97, 97, 0, 2, 2, 64, 0, 0, 0, 2, { 0 }, 1, 0 },
        { "gqa", 70, 70, 0, 4, 1, 80, 0, 0, 0, 2, { 0 }, 0, 0 },
        { "gqa", 37, 37, 0, 3, 1, 96, 0, 0, 0, 2, { 0 }, 0, 0 },
        { "short", 17, 17, 0, 2, 2, 32, 0, 0, 0, 2, { 0 }, 1, 0 },
        { "gqa", 37, 37, 0, 4, 1, 24, 0, 0, 0, 2, { 0 }, 0, 0 },
        { "decode", 1, 100, 99, 8, 2, 128, 0, 0, 0, 2, { 0 }, 1, 0 },
        { "decode", 1, 100, 99, 4, 4, 64, 30, 0, 0, 2, { 0 }, 0, 0 },
        { "cache_chunk", 45, 105, 60, 4, 1, 128, 50, 0, 0, 2, { 0 }, 1, 0 },
        { "keys_past", 30, 80, 20, 2, 1, 64, 0, 0, 0, 2, { 0 }, 0, 1 },
        { "window", 150, 150, 0, 4, 2, 64, 40, 0, 0, 2, { 0 }, 0, 0 },
        { "window", 130, 130, 0, 2, 1, 128, 34, 0, 0, 2, { 0 }, 0, 0 },
        { "window", 70, 70, 0, 2, 1, 32, 1, 0, 0, 2, { 0 }, 0, 0 },
        { "window", 150, 150, 0, 2, 1, 64, 2, 0, 0, 2, { 0 }, 0, 0 },
        { "softcap", 67, 67, 0, 4, 2, 128, 0, 30, 0, 20, { 0 }, 1, 0, TOL_OUT_BIG_LOGITS },
        { "softcap_window", 100, 100, 0, 2, 1, 96, 34, 50, 0.0625f, 12, { 0 }, 0, 0, TOL_OUT_BIG_LOGITS },
        { "neat_spans", 32, 32, 0, 4, 2, 64, 0, 0, 0, 2, { 10, 17, 5, 0 }, 1, 0 },
        { "fallback", 37, 37, 0, 3, 1, 256, 0, 0, 0, 2, { 0 }, 0, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_case(&cases[i]);
    check_big();

    return device_finish();
}

/* tests/cuda/test_loss_optim.cu — checks kernels/cuda/loss.cu and optim.cu
 * against the CPU reference on random inputs from test_rng.h:
 *
 *   cross-entropy (f32 and bf16 logits) against lf_cpu_cross_entropy_f32:
 *     one row, V = 1, V not a multiple of 4 or 32, V = 262144, ignored
 *     targets (-100, -1 and V itself, which the CPU op ignores too), rows
 *     all ignored, masked (-inf) logits, and 512 rows of V = 32000 and
 *     128256 (timed).  The loss sum's increment within 1e-6 relative (exact
 *     where the CPU's is 0), the count exact, the gradient within
 *     1e-6 * max(|scale|, max |ref|) (f32; the brief's floor of 1 would let
 *     a gradient scaled by 1/512 be anything) or, per element, within 2^-7
 *     relative (bf16: the f32 result rounded once; against the CPU op on
 *     the bf16-rounded logits).  A second run must give the same bits.
 *   embedding forward (f32, bf16) exact against a plain copy; backward
 *     against the loop of libcommon/backprop.c (dW[id] += dy * scale in
 *     token order), within 1e-6 * max(1, max |ref|) and expected to be bit
 *     for bit (the number of differing elements is printed); ids distinct,
 *     random, or repeated across the 256-token chunks of the kernel.
 *   AdamW against lf_cpu_adamw_f32 (kernels/cpu/adamw.h, libcommon's
 *     arithmetic): bit for bit on p, m and v after every step (steps 1, 2,
 *     3, 10 and 1000, step 2 with a clipping grad_coef of 0.625; both lerp
 *     forms; decay and no-decay; zero, subnormal
 *     and large gradients; unaligned arrays), reporting how many differ and
 *     the largest distance in ulp.
 *   squared gradient norm against lf_cpu_grad_norm_sq_f32 within 1e-12
 *     relative (both double sums, grouped differently), same bits on a
 *     second run; the clipping coefficient (and total norm) and the
 *     scaling (host or device coefficient) bit for bit.
 *
 * Timing lines give GB/s of the bytes each op must move (every array read
 * or written once; the cross-entropy reads its logits twice but counts them
 * once), averaged over ITERS calls after WARMUP.
 *
 * Prints "PASS name detail" or "FAIL name detail" per check; exits 0 if
 * all pass, 1 if any fails, 2 if there is no usable CUDA device.  Built as
 * $(OUT)/tests/cuda_test_loss_optim; a few seconds on a GPU machine, mostly
 * the CPU references and the random inputs. */
#include "cpu/adamw.h"
#include "cpu/bf16.h"
#include "cpu/grad.h"
#include "cuda/cuda_check.h"
#include "cuda/loss.h"
#include "cuda/optim.h"

#include "report.h"
#include "test_rng.h"
#include "device.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double TOL_CE_LOSS = 1e-6, TOL_CE_GRAD = 1e-6, RTOL_BF16 = 1.0 / 128, TOL_EMB_BWD = 1e-6,
                    TOL_NORM = 1e-12;

/* gradient-like values: uniform mantissas times 2^-40 .. 2^3, either sign,
   with some exact zeros, subnormals and values near 1e3 mixed in */
static float *random_grad(size_t n)
{
    float *x = (float *)xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        uint32_t r = rng_u32();
        float mant = rng_uniform();
        switch (r % 64) {
        case 0:
            x[i] = 0.0f;
            break;
        case 1:
            x[i] = ldexpf(mant, -130); /* subnormal */
            break;
        case 2:
            x[i] = 1e3f * mant;
            break;
        default:
            x[i] = ldexpf(mant, (int)((r >> 8) % 44) - 40);
        }
    }
    return x;
}

/* per element |got - ref| <= rtol |ref| + atol, NaN failing */
static int compare_rel(const char *what, const float *got, const float *ref, size_t n, double rtol, double atol,
                       char *detail, size_t len)
{
    double worst_ratio = 0;
    size_t worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)ref[i]), lim = rtol * fabs((double)ref[i]) + atol;
        double ratio = d / lim;
        if (!(ratio <= worst_ratio)) {
            worst_ratio = isnan(ratio) ? INFINITY : ratio;
            worst = i;
        }
    }
    int ok = worst_ratio <= 1.0;
    appendf(detail, len, "%s%sworst |diff|/(%.3g |ref| + %.1e) = %.3g (at %zu: gpu %.9g cpu %.9g)%s",
            *detail ? "; " : "", what, rtol, atol, worst_ratio, worst, n ? got[worst] : 0.0f, n ? ref[worst] : 0.0f,
            ok ? "" : " - over tolerance");
    return ok;
}

/* distance in units in the last place (0 for identical bits) */
static int64_t ulps(float a, float b)
{
    int32_t ia, ib;
    memcpy(&ia, &a, 4);
    memcpy(&ib, &b, 4);
    if (ia < 0)
        ia = INT32_MIN - ia;
    if (ib < 0)
        ib = INT32_MIN - ib;
    return llabs((int64_t)ia - ib);
}

/* the elements whose bits differ; *max_ulp the largest distance */
static size_t count_diff_bits(const float *got, const float *ref, size_t n, int64_t *max_ulp)
{
    size_t differ = 0;
    *max_ulp = 0;
    for (size_t i = 0; i < n; i++)
        if (memcmp(&got[i], &ref[i], 4)) {
            differ++;
            int64_t u = ulps(got[i], ref[i]);
            *max_ulp = u > *max_ulp ? u : *max_ulp;
        }
    return differ;
}

/* bits compared; appends "what: k differ (max u ulp)"; 1 when none differ */
static int compare_bits(const char *what, const float *got, const float *ref, size_t n, char *detail, size_t len)
{
    int64_t max_ulp;
    size_t differ = count_diff_bits(got, ref, n, &max_ulp);
    appendf(detail, len, "%s%s%zu of %zu differ (max %lld ulp)", *detail ? "; " : "", what, differ, n,
            (long long)max_ulp);
    return differ == 0;
}

/* ---- cross-entropy ------------------------------------------------------------------ */

enum { TGT_ALL, TGT_SOME_IGNORED, TGT_NONE };

/* targets in [0, V); with TGT_SOME_IGNORED a share of -100, -1 and V (all
   ignored by the op); TGT_NONE all -100 */
static int32_t *ce_targets(long n, int V, int mode)
{
    int32_t *t = (int32_t *)xmalloc((size_t)(n > 0 ? n : 1) * sizeof(int32_t));
    for (long i = 0; i < n; i++) {
        t[i] = (int32_t)(rng_u32() % (uint32_t)V);
        if (mode == TGT_NONE || (mode == TGT_SOME_IGNORED && i % 4 == 1))
            t[i] = -100;
        else if (mode == TGT_SOME_IGNORED && i % 9 == 2)
            t[i] = V;
        else if (mode == TGT_SOME_IGNORED && i % 11 == 3)
            t[i] = -1;
    }
    return t;
}

static void ce_launch(int bf16, void *d_logits, const int32_t *d_tgt, long n, int V, float scale, double *d_loss,
                      long *d_count)
{
    if (bf16)
        lf_cuda_cross_entropy_bf16((uint16_t *)d_logits, d_tgt, n, V, scale, d_loss, d_count, stream);
    else
        lf_cuda_cross_entropy_f32((float *)d_logits, d_tgt, n, V, scale, d_loss, d_count, stream);
}

/* n rows of V logits uniform in [-spread, spread) (masked: about 1 in 16
   set to -inf, never the target's); loss_sum starts at 1.25 and the count
   at 3 on the GPU, to see that both accumulate */
static void check_ce(long n, int V, float spread, float scale, int tmode, int masked, int bf16, int timed)
{
    size_t nv = (size_t)n * V;
    int es = bf16 ? 2 : 4;
    float *x = random_f32(nv, spread);
    int32_t *tgt = ce_targets(n, V, tmode);
    if (masked)
        for (long t = 0; t < n; t++)
            for (int v = 0; v < V; v++)
                if (v != tgt[t] && rng_u32() % 16 == 0)
                    x[(size_t)t * V + v] = -INFINITY;
    uint16_t *x16 = bf16 ? to_bf16(x, nv) : NULL;
    float *ref = copy_f32(x, nv);
    const double loss0 = 1.25;
    const long count0 = 3;
    double ref_loss = loss0;
    long ref_count = lf_cpu_cross_entropy_f32(ref, tgt, n, V, scale, &ref_loss);

    void *d_x = bf16 ? to_device(x16, nv * 2) : to_device(x, nv * 4);
    int32_t *d_tgt = (int32_t *)to_device(tgt, (size_t)(n > 0 ? n : 1) * 4);
    double *d_loss = (double *)to_device(&loss0, sizeof loss0);
    long *d_count = (long *)to_device(&count0, sizeof count0);
    ce_launch(bf16, d_x, d_tgt, n, V, scale, d_loss, d_count);
    float *got = fetch(d_x, nv, es);
    double got_loss;
    long got_count;
    from_device(&got_loss, d_loss, sizeof got_loss);
    from_device(&got_count, d_count, sizeof got_count);

    char name[128], detail[1024] = "";
    snprintf(name, sizeof name, "cross_entropy_%s_%ldx%d%s%s%s", bf16 ? "bf16" : "f32", n, V,
             tmode == TGT_SOME_IGNORED ? "_some_ignored" : tmode == TGT_NONE ? "_all_ignored" : "",
             masked ? "_masked" : "", scale != 1.0f ? "_scaled" : "");
    /* the loss: the increments compared, relative */
    double dg = got_loss - loss0, dr = ref_loss - loss0;
    double rel = dr != 0 ? fabs(dg - dr) / fabs(dr) : (dg == 0 ? 0 : INFINITY);
    int ok = rel <= TOL_CE_LOSS;
    appendf(detail, sizeof detail, "loss += %.10g (cpu %.10g, rel diff %.2g, tol %.0e)%s", dg, dr, rel, TOL_CE_LOSS,
            ok ? "" : " - over tolerance");
    int count_ok = got_count - count0 == ref_count;
    appendf(detail, sizeof detail, "; counted %ld (cpu %ld)%s", got_count - count0, ref_count,
            count_ok ? "" : " - differs");
    ok &= count_ok;
    if (bf16)
        ok &= compare_rel("grad: ", got, ref, nv, RTOL_BF16, TOL_CE_GRAD * fabs(scale), detail, sizeof detail);
    else
        ok &= compare_max("grad: ", got, ref, nv, TOL_CE_GRAD, fabs(scale), detail, sizeof detail);

    /* determinism: the same inputs again give the same bits */
    if (bf16)
        LF_CUDA_CHECK(cudaMemcpy(d_x, x16, nv * 2, cudaMemcpyHostToDevice));
    else
        LF_CUDA_CHECK(cudaMemcpy(d_x, x, nv * 4, cudaMemcpyHostToDevice));
    LF_CUDA_CHECK(cudaMemcpy(d_loss, &loss0, sizeof loss0, cudaMemcpyHostToDevice));
    ce_launch(bf16, d_x, d_tgt, n, V, scale, d_loss, NULL);
    float *again = fetch(d_x, nv, es);
    double again_loss;
    from_device(&again_loss, d_loss, sizeof again_loss);
    int same = !memcmp(&again_loss, &got_loss, sizeof got_loss) && !memcmp(again, got, nv * sizeof(float));
    appendf(detail, sizeof detail, "; rerun %s", same ? "same bits" : "DIFFERENT bits");
    ok &= same;

    if (timed) { /* in place: the gradient becomes the next call's logits */
        for (int it = 0; it < WARMUP + ITERS; it++) {
            if (it == WARMUP)
                time_begin();
            ce_launch(bf16, d_x, d_tgt, n, V, scale, d_loss, d_count);
        }
        time_end(2.0 * nv * es, detail, sizeof detail);
    }
    result(ok, name, detail);

    LF_CUDA_CHECK(cudaFree(d_x));
    LF_CUDA_CHECK(cudaFree(d_tgt));
    LF_CUDA_CHECK(cudaFree(d_loss));
    LF_CUDA_CHECK(cudaFree(d_count));
    free(x); free(x16); free(tgt); free(ref); free(got); free(again);
}

/* ---- embedding ------------------------------------------------------------------------ */

enum { IDS_RANDOM, IDS_MOD5, IDS_SAME };
static const char *const ids_name[] = { "random", "mod5", "same" };

static int32_t *embedding_ids(int N, int V, int mode)
{
    int32_t *ids = (int32_t *)xmalloc((size_t)N * sizeof(int32_t));
    for (int t = 0; t < N; t++)
        ids[t] = mode == IDS_SAME ? V - 1 : mode == IDS_MOD5 ? (int32_t)(rng_u32() % 5u % (uint32_t)V)
                                                             : (int32_t)(rng_u32() % (uint32_t)V);
    return ids;
}

/* forward (f32 and bf16, exact) and backward (f32) on a table of V rows of
   H; the backward accumulates into a random dtable */
static void check_embedding(int N, int V, int H, int id_mode, float scale, int timed)
{
    size_t vh = (size_t)V * H, nh = (size_t)N * H;
    float *table = random_f32(vh, 1.0f);
    int32_t *ids = embedding_ids(N, V, id_mode);
    int32_t *d_ids = (int32_t *)to_device(ids, (size_t)N * 4);
    char name[128], detail[1024];

    /* forward: f32, then bf16 */
    for (int bf16 = 0; bf16 < 2; bf16++) {
        int es = bf16 ? 2 : 4;
        uint16_t *t16 = NULL;
        if (bf16) {
            t16 = (uint16_t *)xmalloc(vh * 2);
            lf_cpu_f32_to_bf16(t16, table, vh);
        }
        void *d_table = bf16 ? to_device(t16, vh * 2) : to_device(table, vh * 4);
        void *d_out = nan_device(nh * es);
        if (bf16)
            lf_cuda_embedding_bf16((uint16_t *)d_out, (const uint16_t *)d_table, d_ids, N, H, stream);
        else
            lf_cuda_embedding_f32((float *)d_out, (const float *)d_table, d_ids, N, H, stream);
        unsigned char *got = (unsigned char *)xmalloc(nh * es), *ref = (unsigned char *)xmalloc(nh * es);
        from_device(got, d_out, nh * es);
        for (int t = 0; t < N; t++)
            memcpy(ref + (size_t)t * H * es, (bf16 ? (const unsigned char *)t16 : (const unsigned char *)table) +
                                                 (size_t)ids[t] * H * es,
                   (size_t)H * es);
        size_t differ = 0;
        for (size_t i = 0; i < nh; i++)
            differ += memcmp(got + i * es, ref + i * es, es) != 0;
        snprintf(name, sizeof name, "embedding_%s_%dx%d_of_%d_ids_%s", bf16 ? "bf16" : "f32", N, H, V,
                 ids_name[id_mode]);
        detail[0] = 0;
        appendf(detail, sizeof detail, "exact: %zu of %zu elements differ", differ, nh);
        if (timed) {
            for (int it = 0; it < WARMUP + ITERS; it++) {
                if (it == WARMUP)
                    time_begin();
                if (bf16)
                    lf_cuda_embedding_bf16((uint16_t *)d_out, (const uint16_t *)d_table, d_ids, N, H, stream);
                else
                    lf_cuda_embedding_f32((float *)d_out, (const float *)d_table, d_ids, N, H, stream);
            }
            time_end(2.0 * nh * es, detail, sizeof detail);
        }
        result(differ == 0, name, detail);
        LF_CUDA_CHECK(cudaFree(d_table));
        LF_CUDA_CHECK(cudaFree(d_out));
        free(t16); free(got); free(ref);
    }

    /* backward: the table is dtable's starting value */
    float *dy = random_f32(nh, 1.0f);
    float *ref = copy_f32(table, vh);
    for (int t = 0; t < N; t++) { /* libcommon/backprop.c's loop */
        float *ge = ref + (size_t)ids[t] * H;
        const float *d = dy + (size_t)t * H;
        for (int j = 0; j < H; j++)
            ge[j] += d[j] * scale;
    }
    float *d_dt = (float *)to_device(table, vh * 4), *d_dy = (float *)to_device(dy, nh * 4);
    lf_cuda_embedding_bwd_f32(d_dt, d_dy, d_ids, N, H, scale, stream);
    float *got = fetch(d_dt, vh, 4);
    snprintf(name, sizeof name, "embedding_bwd_f32_%dx%d_of_%d_ids_%s_scale%g", N, H, V, ids_name[id_mode], scale);
    detail[0] = 0;
    int ok = compare_max("", got, ref, vh, TOL_EMB_BWD, 1.0, detail, sizeof detail);
    int64_t max_ulp;
    size_t differ = count_diff_bits(got, ref, vh, &max_ulp);
    appendf(detail, sizeof detail, "; bits: %zu of %zu differ (max %lld ulp)", differ, vh, (long long)max_ulp);
    if (timed) { /* accumulates further, after the check */
        for (int it = 0; it < WARMUP + ITERS; it++) {
            if (it == WARMUP)
                time_begin();
            lf_cuda_embedding_bwd_f32(d_dt, d_dy, d_ids, N, H, scale, stream);
        }
        time_end(3.0 * nh * 4, detail, sizeof detail); /* dy read, the rows of dtable read and written */
    }
    result(ok, name, detail);

    LF_CUDA_CHECK(cudaFree(d_dt));
    LF_CUDA_CHECK(cudaFree(d_dy));
    LF_CUDA_CHECK(cudaFree(d_ids));
    free(table); free(ids); free(dy); free(ref); free(got);
}

/* ---- AdamW -------------------------------------------------------------------------------- */

/* steps of a run: the bias corrections at the start and far on */
static const long adamw_steps[] = { 1, 2, 3, 10, 1000 };

/* n parameters in [-0.1, 0.1), moments from zero, a new random gradient
   per step; off 1 shifts every array by one float (no 16-byte loads) */
static void check_adamw(size_t n, double lr, double beta1, double beta2, double wd, int decay, int nsteps, int off,
                        int timed)
{
    float *p = random_f32(n, 0.1f);
    float *m = (float *)calloc(n, sizeof(float)), *v = (float *)calloc(n, sizeof(float));
    if (!m || !v) {
        fprintf(stderr, "cuda_test_loss_optim: out of host memory\n");
        exit(1);
    }
    size_t bytes = (n + (size_t)off) * 4;
    float *d_p = (float *)nan_device(bytes), *d_g = (float *)nan_device(bytes);
    float *d_m = (float *)nan_device(bytes), *d_v = (float *)nan_device(bytes);
    LF_CUDA_CHECK(cudaMemcpy(d_p + off, p, n * 4, cudaMemcpyHostToDevice));
    LF_CUDA_CHECK(cudaMemcpy(d_m + off, m, n * 4, cudaMemcpyHostToDevice));
    LF_CUDA_CHECK(cudaMemcpy(d_v + off, v, n * 4, cudaMemcpyHostToDevice));

    char name[160], detail[1024] = "";
    snprintf(name, sizeof name, "adamw_f32_%zu_lr%g_betas%g,%g_wd%g%s%s", n, lr, beta1, beta2, wd,
             decay ? "" : "_nodecay", off ? "_unaligned" : "");
    int ok = 1;
    size_t worst_differ = 0;
    int64_t worst_ulp = 0;
    for (int k = 0; k < nsteps; k++) {
        long step = adamw_steps[k];
        float *g = random_grad(n);
        LF_CUDA_CHECK(cudaMemcpy(d_g + off, g, n * 4, cudaMemcpyHostToDevice));
        lf_cpu_adamw_f32(p, g, m, v, n, step, lr, beta1, beta2, 1e-8, wd, decay, step == 2 ? 0.625f : 1.0f);
        lf_cuda_adamw_f32(d_p + off, d_g + off, d_m + off, d_v + off, n, step, lr, beta1, beta2, 1e-8, wd, decay,
                          step == 2 ? 0.625f : 1.0f, stream);
        float *gp = fetch(d_p + off, n, 4), *gm = fetch(d_m + off, n, 4), *gv = fetch(d_v + off, n, 4);
        const float *got[3] = { gp, gm, gv }, *want[3] = { p, m, v };
        for (int a = 0; a < 3; a++) {
            int64_t u;
            size_t d = count_diff_bits(got[a], want[a], n, &u);
            worst_differ = d > worst_differ ? d : worst_differ;
            worst_ulp = u > worst_ulp ? u : worst_ulp;
        }
        free(g); free(gp); free(gm); free(gv);
    }
    ok = worst_differ == 0;
    appendf(detail, sizeof detail, "steps");
    for (int k = 0; k < nsteps; k++)
        appendf(detail, sizeof detail, "%s%ld", k ? "," : " ", adamw_steps[k]);
    appendf(detail, sizeof detail, ": p, m, v bit for bit: worst step %zu of %zu differ (max %lld ulp)%s", worst_differ,
            n, (long long)worst_ulp, ok ? "" : " - not bit-exact");
    /* the padding before an unaligned array untouched */
    if (off) {
        float pad[4];
        from_device(&pad[0], d_p, 4);
        from_device(&pad[1], d_g, 4);
        from_device(&pad[2], d_m, 4);
        from_device(&pad[3], d_v, 4);
        int untouched = 1;
        for (int a = 0; a < 4; a++)
            untouched &= isnan(pad[a]);
        appendf(detail, sizeof detail, "; padding %s", untouched ? "untouched" : "WRITTEN");
        ok &= untouched;
    }
    if (timed) {
        for (int it = 0; it < WARMUP + ITERS; it++) {
            if (it == WARMUP)
                time_begin();
            lf_cuda_adamw_f32(d_p + off, d_g + off, d_m + off, d_v + off, n, 11 + it, lr, beta1, beta2, 1e-8, wd,
                              decay, 1.0f, stream);
        }
        time_end(7.0 * n * 4, detail, sizeof detail); /* p, g, m, v read; p, m, v written */
    }
    result(ok, name, detail);

    LF_CUDA_CHECK(cudaFree(d_p));
    LF_CUDA_CHECK(cudaFree(d_g));
    LF_CUDA_CHECK(cudaFree(d_m));
    LF_CUDA_CHECK(cudaFree(d_v));
    free(p); free(m); free(v);
}

/* ---- gradient norm, clipping, scaling ------------------------------------------------------ */

/* the squared norm of n gradient-like values (off: one float past a
   16-byte boundary) */
static void check_norm(size_t n, int off, int timed)
{
    float *g = random_grad(n);
    double ref = lf_cpu_grad_norm_sq_f32(g, n);
    float *d_g = (float *)nan_device((n + (size_t)off) * 4);
    LF_CUDA_CHECK(cudaMemcpy(d_g + off, g, n * 4, cudaMemcpyHostToDevice));
    double *d_out = (double *)nan_device(2 * sizeof(double));
    lf_cuda_grad_norm_sq_f32(d_out, d_g + off, n, stream);
    lf_cuda_grad_norm_sq_f32(d_out + 1, d_g + off, n, stream);
    double got[2];
    from_device(got, d_out, sizeof got);

    char name[96], detail[512] = "";
    snprintf(name, sizeof name, "grad_norm_sq_f32_%zu%s", n, off ? "_unaligned" : "");
    double rel = ref != 0 ? fabs(got[0] - ref) / ref : (got[0] == 0 ? 0 : INFINITY);
    int ok = rel <= TOL_NORM;
    int same = !memcmp(&got[0], &got[1], sizeof got[0]);
    appendf(detail, sizeof detail, "gpu %.17g cpu %.17g rel diff %.2g (tol %.0e)%s; rerun %s", got[0], ref, rel,
            TOL_NORM, ok ? "" : " - over tolerance", same ? "same bits" : "DIFFERENT bits");
    ok &= same;
    if (timed) {
        for (int it = 0; it < WARMUP + ITERS; it++) {
            if (it == WARMUP)
                time_begin();
            lf_cuda_grad_norm_sq_f32(d_out, d_g + off, n, stream);
        }
        time_end(4.0 * n, detail, sizeof detail);
    }
    result(ok, name, detail);
    LF_CUDA_CHECK(cudaFree(d_g));
    LF_CUDA_CHECK(cudaFree(d_out));
    free(g);
}

/* three tensors' squared norms on the GPU, the clipping coefficient for
   several max_norm from them on both sides (same bits expected, from the
   same norms), then every tensor scaled with a host and a device
   coefficient */
static void check_clip(int timed)
{
    static const size_t sizes[3] = { 4097, 1, 1000003 };
    static const double max_norms[] = { 1.0, 0.0, -1.0, 1e-3, 1e9 };
    float *g[3], *d_g[3];
    double *d_sq = (double *)nan_device(3 * sizeof(double)), *d_total = (double *)nan_device(sizeof(double));
    float *d_coef = (float *)nan_device(sizeof(float));
    for (int t = 0; t < 3; t++) {
        g[t] = random_grad(sizes[t]);
        d_g[t] = (float *)to_device(g[t], sizes[t] * 4);
        lf_cuda_grad_norm_sq_f32(d_sq + t, d_g[t], sizes[t], stream);
    }
    double sq[3];
    from_device(sq, d_sq, sizeof sq);
    char detail[1024] = "";
    int ok = 1;
    float used_coef = 1.0f;
    for (size_t k = 0; k < sizeof max_norms / sizeof max_norms[0]; k++) {
        double ref_total = 0, got_total = 0;
        float ref = lf_cpu_clip_coef(sq, 3, max_norms[k], &ref_total), got;
        lf_cuda_clip_coef(d_coef, d_sq, 3, max_norms[k], d_total, stream);
        from_device(&got, d_coef, sizeof got);
        from_device(&got_total, d_total, sizeof got_total);
        int same = !memcmp(&got, &ref, sizeof got) && !memcmp(&got_total, &ref_total, sizeof got_total);
        appendf(detail, sizeof detail, "%smax_norm %g: coef %.9g (cpu %.9g)%s", k ? "; " : "", max_norms[k], got, ref,
                same ? "" : " - bits differ");
        ok &= same;
        if (max_norms[k] == 1e-3)
            used_coef = ref;
    }
    /* and many max_norm, log-uniform over [1e-3, 1e6): the f32 reciprocal
       then product rounds differently from a division now and then */
    int differ = 0, tries = 200;
    for (int k = 0; k < tries; k++) {
        double mn = pow(10.0, 4.5 * rng_uniform() + 1.5);
        float ref = lf_cpu_clip_coef(sq, 3, mn, NULL), got;
        lf_cuda_clip_coef(d_coef, d_sq, 3, mn, NULL, stream);
        from_device(&got, d_coef, sizeof got);
        differ += memcmp(&got, &ref, sizeof got) != 0;
    }
    appendf(detail, sizeof detail, "; %d of %d more max_norm give other bits", differ, tries);
    ok &= differ == 0;
    result(ok, "clip_coef_3_tensors", detail);

    /* scaling by max_norm 1e-3's coefficient: tensors 0 and 2 given it
       from the host, tensor 1 and then 2 once more reading it from device
       memory */
    lf_cuda_clip_coef(d_coef, d_sq, 3, 1e-3, NULL, stream);
    detail[0] = 0;
    ok = 1;
    for (int t = 0; t < 3; t++) {
        float *ref = copy_f32(g[t], sizes[t]);
        lf_cpu_grad_scale_f32(ref, sizes[t], used_coef);
        if (t == 1)
            lf_cuda_grad_scale_dev_f32(d_g[t], sizes[t], d_coef, stream);
        else
            lf_cuda_grad_scale_f32(d_g[t], sizes[t], used_coef, stream);
        float *got = fetch(d_g[t], sizes[t], 4);
        char what[32];
        snprintf(what, sizeof what, "tensor %d (%s coef): ", t, t == 1 ? "device" : "host");
        ok &= compare_bits(what, got, ref, sizes[t], detail, sizeof detail);
        if (t == 2) { /* the device coefficient too */
            lf_cpu_grad_scale_f32(ref, sizes[t], used_coef);
            lf_cuda_grad_scale_dev_f32(d_g[t], sizes[t], d_coef, stream);
            free(got);
            got = fetch(d_g[t], sizes[t], 4);
            ok &= compare_bits("tensor 2 again (device coef): ", got, ref, sizes[t], detail, sizeof detail);
        }
        free(ref); free(got);
    }
    appendf(detail, sizeof detail, "; coef %.9g", used_coef);
    if (timed) {
        for (int it = 0; it < WARMUP + ITERS; it++) {
            if (it == WARMUP)
                time_begin();
            lf_cuda_grad_scale_dev_f32(d_g[2], sizes[2], d_coef, stream);
        }
        time_end(2.0 * sizes[2] * 4, detail, sizeof detail);
    }
    result(ok, "grad_scale_f32", detail);

    for (int t = 0; t < 3; t++) {
        LF_CUDA_CHECK(cudaFree(d_g[t]));
        free(g[t]);
    }
    LF_CUDA_CHECK(cudaFree(d_sq));
    LF_CUDA_CHECK(cudaFree(d_total));
    LF_CUDA_CHECK(cudaFree(d_coef));
}

/* ---- main ------------------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    (void)argv;
    int rc = device_start(argc);
    if (rc >= 0)
        return rc;

    /* cross-entropy: no rows, V = 1, one row of a real vocabulary, V not a
       multiple of 4 (one-element loads) or of 32, logits spread to +-30 and
       +-50, masked logits, rows all ignored, V = 2^18, and 512 rows of
       32000 and 128256 scaled by 1/512 (timed) */
    static const struct { long n; int V; float spread, scale; int tmode, masked, bf16, timed; } ces[] = {
        { 0, 10, 10, 1, TGT_ALL, 0, 0, 0 },
        { 1, 1, 3, 1, TGT_ALL, 0, 0, 0 },
        { 5, 1, 3, 0.5f, TGT_SOME_IGNORED, 0, 0, 0 },
        { 1, 32000, 10, 1, TGT_ALL, 0, 0, 0 },
        { 7, 33, 10, 1, TGT_SOME_IGNORED, 0, 0, 0 },
        { 5, 1000, 10, 0.2f, TGT_SOME_IGNORED, 0, 0, 0 },
        { 5, 1001, 10, 1, TGT_ALL, 0, 0, 0 },
        { 64, 2049, 30, 1, TGT_SOME_IGNORED, 0, 0, 0 },
        { 2, 12289, 10, 1, TGT_ALL, 0, 0, 0 },
        { 300, 50, 50, 1, TGT_SOME_IGNORED, 0, 0, 0 },
        { 33, 4000, 10, 1, TGT_SOME_IGNORED, 1, 0, 0 },
        { 8, 100, 10, 1, TGT_NONE, 0, 0, 0 },
        { 3, 262144, 10, 1, TGT_SOME_IGNORED, 0, 0, 0 },
        { 512, 32000, 10, 1.0f / 512, TGT_SOME_IGNORED, 0, 0, 1 },
        { 512, 128256, 10, 1.0f / 512, TGT_SOME_IGNORED, 0, 0, 1 },
        { 1, 1, 3, 1, TGT_ALL, 0, 1, 0 },
        { 7, 33, 10, 1, TGT_SOME_IGNORED, 0, 1, 0 },
        { 5, 1000, 10, 0.2f, TGT_SOME_IGNORED, 0, 1, 0 },
        { 64, 2049, 30, 1, TGT_SOME_IGNORED, 0, 1, 0 },
        { 33, 4000, 10, 1, TGT_SOME_IGNORED, 1, 1, 0 },
        { 8, 100, 10, 1, TGT_NONE, 0, 1, 0 },
        { 3, 262144, 10, 1, TGT_ALL, 0, 1, 0 },
        { 512, 32000, 10, 1.0f / 512, TGT_SOME_IGNORED, 0, 1, 1 },
        { 512, 128256, 10, 1.0f / 512, TGT_SOME_IGNORED, 0, 1, 1 },
    };
    for (size_t i = 0; i < sizeof ces / sizeof ces[0]; i++)
        check_ce(ces[i].n, ces[i].V, ces[i].spread, ces[i].scale, ces[i].tmode, ces[i].masked, ces[i].bf16,
                 ces[i].timed);

    /* embedding: one token, a one-row table, odd widths (4-byte copies,
       one-float adds), ids repeated within and across the kernel's
       256-token chunks, one id 600 times, gemma's scale, and 512 tokens of
       4096 from 32000 (timed) */
    static const struct { int N, V, H, ids; float scale; int timed; } embs[] = {
        { 1, 10, 4096, IDS_RANDOM, 1, 0 },
        { 3, 1, 1, IDS_RANDOM, 1, 0 },
        { 7, 50, 33, IDS_MOD5, 0.5f, 0 },
        { 300, 1000, 100, IDS_RANDOM, 64, 0 },
        { 1000, 7, 64, IDS_MOD5, 1, 0 },
        { 600, 20000, 2, IDS_SAME, 1, 0 },
        { 513, 64, 4096, IDS_MOD5, 1, 0 },
        { 512, 32000, 4096, IDS_RANDOM, 1, 1 },
    };
    for (size_t i = 0; i < sizeof embs / sizeof embs[0]; i++)
        check_embedding(embs[i].N, embs[i].V, embs[i].H, embs[i].ids, embs[i].scale, embs[i].timed);

    /* AdamW: HF's defaults, weight decay in and out of the group, small
       beta1 (lerp from g: 1 - beta1 >= 0.5, and exactly 0.5), unaligned
       arrays, and 2^25 + 5 parameters (timed) */
    check_adamw(1, 1e-3, 0.9, 0.999, 0.0, 1, 5, 0, 0);
    check_adamw(7, 5e-5, 0.9, 0.999, 0.01, 1, 5, 0, 0);
    check_adamw(1000, 1e-4, 0.9, 0.95, 0.1, 1, 5, 0, 0);
    check_adamw(1000, 1e-4, 0.9, 0.999, 0.1, 0, 5, 0, 0);
    check_adamw(4099, 1e-3, 0.3, 0.999, 0.01, 1, 5, 0, 0);
    check_adamw(4099, 1e-2, 0.5, 0.99, 0.0, 1, 5, 0, 0);
    check_adamw(100003, 2e-4, 0.9, 0.999, 0.01, 1, 5, 1, 0);
    check_adamw(((size_t)1 << 25) + 5, 1e-4, 0.9, 0.999, 0.01, 1, 2, 0, 1);

    /* gradient norm: empty, tiny, around one chunk (8192) and the chunk
       count's cap, unaligned, and 2^25 + 5 (timed) */
    static const struct { size_t n; int off, timed; } norms[] = {
        { 0, 0, 0 }, { 1, 0, 0 }, { 7, 0, 0 }, { 8191, 0, 0 }, { 8192, 0, 0 }, { 8193, 0, 0 },
        { 1000003, 0, 0 }, { 1000003, 1, 0 }, { (size_t)1024 * 8192 + 1, 0, 0 }, { ((size_t)1 << 25) + 5, 0, 1 },
    };
    for (size_t i = 0; i < sizeof norms / sizeof norms[0]; i++)
        check_norm(norms[i].n, norms[i].off, norms[i].timed);
    check_clip(1);

    return device_finish();
}

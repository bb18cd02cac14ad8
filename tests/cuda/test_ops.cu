/* tests/cuda/test_ops.cu — checks kernels/cuda/ops.cu against the CPU
 * reference (kernels/cpu/ops.h, grad.h) on random inputs from test_rng.h:
 * RMSNorm (forward, bf16 forward, backward dx and dw), rotary embedding
 * (forward, backward, bf16 forward), gated activations (silu, gelu tanh,
 * gelu erf: forward, bf16 forward, backward) and soft-capping (forward,
 * bf16 forward, backward), at odd sizes, one row, and a realistic shape
 * that is also timed (GB/s counts the bytes the CUDA kernels read and
 * write, each array once per kernel).
 *
 * A check passes when max |gpu - cpu| <= tol * max(1, max |cpu|) over the
 * whole output, NaN failing: tol 1e-5 for f32 elementwise ops, 1e-4 where
 * a row or column is summed (RMSNorm, its dx and dw), 1e-2 for the bf16
 * forms (against the CPU op on the same bf16-rounded inputs).  Outputs
 * that are not accumulated start as NaN on the GPU, so an element left
 * unwritten fails; in-place ops are compared over the whole buffer, so an
 * element written that should not have been (RoPE's padding and the dims
 * past rotary_dim) fails too.
 *
 * Prints "PASS name detail" or "FAIL name detail" per check; exits 0 if
 * all pass, 1 if any fails, 2 if there is no usable CUDA device.  Built as
 * $(OUT)/tests/cuda_test_ops; a few seconds in all, mostly the CPU
 * references. */
#include "cpu/bf16.h"
#include "cpu/grad.h"
#include "cpu/ops.h"
#include "cuda/cuda_check.h"
#include "cuda/ops.h"

#include "report.h"
#include "test_rng.h"
#include "device.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double TOL_ELEM = 1e-5, TOL_SUM = 1e-4, TOL_BF16 = 1e-2;
static const float EPS = 1e-6f;

/* norm weights: around 1 for llama's w, around 0 for gemma's (1 + w) */
static float *norm_weights(int n, float offset)
{
    float *w = (float *)xmalloc((size_t)n * sizeof(float));
    for (int i = 0; i < n; i++)
        w[i] = (offset != 0.0f ? 0.0f : 1.0f) + 0.25f * rng_uniform();
    return w;
}

/* ---- RMSNorm ----------------------------------------------------------------- */

/* forward, f32 (bf16 0) or bf16 (1); alias: out = x */
static void check_rmsnorm(int T, int n, float offset, int bf16, int alias, int timed)
{
    size_t tn = (size_t)T * n;
    int es = bf16 ? 2 : 4;
    float *x = random_f32(tn, 3.0f), *w = norm_weights(n, offset);
    uint16_t *x16 = bf16 ? to_bf16(x, tn) : NULL;
    float *ref = (float *)xmalloc(tn * sizeof(float));
    lf_cpu_rmsnorm_f32(ref, x, w, T, n, EPS, offset);

    void *d_x = bf16 ? to_device(x16, tn * 2) : to_device(x, tn * 4);
    float *d_w = (float *)to_device(w, (size_t)n * 4);
    void *d_out = alias ? d_x : nan_device(tn * es);
    if (bf16)
        lf_cuda_rmsnorm_bf16((uint16_t *)d_out, (const uint16_t *)d_x, d_w, T, n, EPS, offset, stream);
    else
        lf_cuda_rmsnorm_f32((float *)d_out, (const float *)d_x, d_w, T, n, EPS, offset, stream);
    float *got = fetch(d_out, tn, es);

    char name[96], detail[512] = "";
    snprintf(name, sizeof name, "rmsnorm_%s_%dx%d%s%s", bf16 ? "bf16" : "f32", T, n, offset != 0.0f ? "_offset1" : "",
             alias ? "_inplace" : "");
    int ok = compare_max("", got, ref, tn, bf16 ? TOL_BF16 : TOL_SUM, 1.0, detail, sizeof detail);
    if (timed && !alias) {
        for (int it = 0; it < WARMUP + ITERS; it++) {
            if (it == WARMUP)
                time_begin();
            if (bf16)
                lf_cuda_rmsnorm_bf16((uint16_t *)d_out, (const uint16_t *)d_x, d_w, T, n, EPS, offset, stream);
            else
                lf_cuda_rmsnorm_f32((float *)d_out, (const float *)d_x, d_w, T, n, EPS, offset, stream);
        }
        time_end(2.0 * tn * es + (double)n * 4, detail, sizeof detail);
    }
    result(ok, name, detail);

    if (!alias)
        LF_CUDA_CHECK(cudaFree(d_out));
    LF_CUDA_CHECK(cudaFree(d_x));
    LF_CUDA_CHECK(cudaFree(d_w));
    free(x); free(w); free(x16); free(ref); free(got);
}

/* backward: dx and dw start from random values (both accumulate) */
static void check_rmsnorm_bwd(int T, int n, float offset, int with_dw, int timed)
{
    size_t tn = (size_t)T * n;
    float *dy = random_f32(tn, 1.0f), *x = random_f32(tn, 3.0f), *w = norm_weights(n, offset);
    float *dx0 = random_f32(tn, 1.0f), *dw0 = random_f32((size_t)n, 1.0f);
    float *ref_dx = copy_f32(dx0, tn), *ref_dw = copy_f32(dw0, (size_t)n);
    lf_cpu_rmsnorm_bwd_f32(ref_dx, with_dw ? ref_dw : NULL, dy, x, w, T, n, EPS, offset);

    float *d_dy = (float *)to_device(dy, tn * 4), *d_x = (float *)to_device(x, tn * 4);
    float *d_w = (float *)to_device(w, (size_t)n * 4);
    float *d_dx = (float *)to_device(dx0, tn * 4), *d_dw = (float *)to_device(dw0, (size_t)n * 4);
    lf_cuda_rmsnorm_bwd_f32(d_dx, with_dw ? d_dw : NULL, d_dy, d_x, d_w, T, n, EPS, offset, stream);
    float *got_dx = fetch(d_dx, tn, 4), *got_dw = fetch(d_dw, (size_t)n, 4);

    char name[96], detail[768] = "";
    snprintf(name, sizeof name, "rmsnorm_bwd_f32_%dx%d%s%s", T, n, offset != 0.0f ? "_offset1" : "",
             with_dw ? "" : "_no_dw");
    int ok = compare_max("dx: ", got_dx, ref_dx, tn, TOL_SUM, 1.0, detail, sizeof detail);
    /* without dw, d_dw must still hold dw0 (compared exactly) */
    ok &= compare_max("dw: ", got_dw, with_dw ? ref_dw : dw0, (size_t)n, with_dw ? TOL_SUM : 0.0, 1.0, detail,
                      sizeof detail);
    if (timed) {
        for (int it = 0; it < WARMUP + ITERS; it++) {
            if (it == WARMUP)
                time_begin();
            lf_cuda_rmsnorm_bwd_f32(d_dx, with_dw ? d_dw : NULL, d_dy, d_x, d_w, T, n, EPS, offset, stream);
        }
        /* dx pass: dy, x, dx read, dx written; dw pass: dy, x read again */
        time_end((with_dw ? 6.0 : 4.0) * tn * 4, detail, sizeof detail);
    }
    result(ok, name, detail);

    LF_CUDA_CHECK(cudaFree(d_dy));
    LF_CUDA_CHECK(cudaFree(d_x));
    LF_CUDA_CHECK(cudaFree(d_w));
    LF_CUDA_CHECK(cudaFree(d_dx));
    LF_CUDA_CHECK(cudaFree(d_dw));
    free(dy); free(x); free(w); free(dx0); free(dw0);
    free(ref_dx); free(ref_dw); free(got_dx); free(got_dw);
}

/* ---- rotary embedding ------------------------------------------------------- */

enum { MODE_F32, MODE_BWD, MODE_BF16 };
static const char *const mode_name[] = { "f32", "bwd_f32", "bf16" };

static void rope_launch(int mode, void *d_x, const int32_t *d_pos, int T, int heads, int d, int row_stride,
                        int rotary_dim, const float *d_inv, float factor)
{
    if (mode == MODE_BF16)
        lf_cuda_rope_bf16((uint16_t *)d_x, d_pos, T, heads, d, row_stride, rotary_dim, d_inv, factor, stream);
    else if (mode == MODE_BWD)
        lf_cuda_rope_bwd_f32((float *)d_x, d_pos, T, heads, d, row_stride, rotary_dim, d_inv, factor, stream);
    else
        lf_cuda_rope_f32((float *)d_x, d_pos, T, heads, d, row_stride, rotary_dim, d_inv, factor, stream);
}

/* T rows of row_stride floats holding heads of d, the first rotary_dim
   dims of each rotated; positions random in [0, pos_max); inv_freq
   base^(-2i/rotary_dim) */
static void check_rope(int T, int heads, int d, int row_stride, int rotary_dim, double base, float factor,
                       int pos_max, int mode, int timed)
{
    size_t tn = (size_t)T * row_stride;
    int half = rotary_dim / 2, es = mode == MODE_BF16 ? 2 : 4;
    float *x = random_f32(tn, 1.0f);
    uint16_t *x16 = mode == MODE_BF16 ? to_bf16(x, tn) : NULL;
    int32_t *pos = (int32_t *)xmalloc((size_t)T * sizeof(int32_t));
    for (int t = 0; t < T; t++)
        pos[t] = (int32_t)(rng_u32() % (uint32_t)pos_max);
    float *inv = (float *)xmalloc((size_t)(half > 0 ? half : 1) * sizeof(float));
    for (int i = 0; i < half; i++)
        inv[i] = (float)(1.0 / pow(base, 2.0 * i / rotary_dim));
    float *ref = copy_f32(x, tn);
    if (mode == MODE_BWD)
        lf_cpu_rope_bwd_f32(ref, pos, T, heads, d, row_stride, rotary_dim, inv, factor);
    else
        lf_cpu_rope_f32(ref, pos, T, heads, d, row_stride, rotary_dim, inv, factor);

    void *d_x = mode == MODE_BF16 ? to_device(x16, tn * 2) : to_device(x, tn * 4);
    int32_t *d_pos = (int32_t *)to_device(pos, (size_t)T * 4);
    float *d_inv = (float *)to_device(inv, (size_t)(half > 0 ? half : 1) * 4);
    rope_launch(mode, d_x, d_pos, T, heads, d, row_stride, rotary_dim, d_inv, factor);
    float *got = fetch(d_x, tn, es);

    char name[128], detail[768] = "";
    snprintf(name, sizeof name, "rope_%s_T%d_h%d_d%d_stride%d_rot%d", mode_name[mode], T, heads, d, row_stride,
             rotary_dim);
    int ok = compare_max("", got, ref, tn, mode == MODE_BF16 ? TOL_BF16 : TOL_ELEM, 1.0, detail, sizeof detail);
    appendf(detail, sizeof detail, "; base %g factor %g pos < %d", base, factor, pos_max);
    if (timed) { /* in place: rotates x further, after the check */
        for (int it = 0; it < WARMUP + ITERS; it++) {
            if (it == WARMUP)
                time_begin();
            rope_launch(mode, d_x, d_pos, T, heads, d, row_stride, rotary_dim, d_inv, factor);
        }
        time_end(2.0 * T * heads * 2 * half * es, detail, sizeof detail);
    }
    result(ok, name, detail);

    LF_CUDA_CHECK(cudaFree(d_x));
    LF_CUDA_CHECK(cudaFree(d_pos));
    LF_CUDA_CHECK(cudaFree(d_inv));
    free(x); free(x16); free(pos); free(inv); free(ref); free(got);
}

/* ---- gated activations ------------------------------------------------------- */

static const char *const act_name[] = { "silu", "gelu_tanh", "gelu_erf" };

static void gated_launch(int mode, void *d_out, const void *d_gate, const void *d_up, long n, int act)
{
    if (mode == MODE_BF16)
        lf_cuda_gated_act_bf16((uint16_t *)d_out, (const uint16_t *)d_gate, (const uint16_t *)d_up, n, act, stream);
    else
        lf_cuda_gated_act_f32((float *)d_out, (const float *)d_gate, (const float *)d_up, n, act, stream);
}

/* gate in [-6, 6) (the tails of every activation), up in [-2, 2); alias:
   out = gate (the model's use) */
static void check_gated(long n, int act, int mode, int alias, int timed)
{
    size_t nn = (size_t)n;
    int es = mode == MODE_BF16 ? 2 : 4;
    float *gate = random_f32(nn, 6.0f), *up = random_f32(nn, 2.0f);
    uint16_t *gate16 = NULL, *up16 = NULL;
    if (mode == MODE_BF16) {
        gate16 = to_bf16(gate, nn);
        up16 = to_bf16(up, nn);
    }
    void *d_gate = mode == MODE_BF16 ? to_device(gate16, nn * 2) : to_device(gate, nn * 4);
    void *d_up = mode == MODE_BF16 ? to_device(up16, nn * 2) : to_device(up, nn * 4);
    char name[96], detail[1024] = "";
    int ok;
    double bytes;
    snprintf(name, sizeof name, "gated_act_%s_%s_%ld%s", act_name[act], mode_name[mode], n, alias ? "_inplace" : "");

    float *dout = NULL, *d_dout = NULL, *d_dgate = NULL, *d_dup = NULL;
    void *d_out = NULL;
    if (mode == MODE_BWD) {
        dout = random_f32(nn, 1.0f);
        float *ref_dg = (float *)xmalloc(nn * 4), *ref_du = (float *)xmalloc(nn * 4);
        lf_cpu_gated_act_bwd_f32(ref_dg, ref_du, dout, gate, up, n, act);
        d_dout = (float *)to_device(dout, nn * 4);
        d_dgate = (float *)nan_device(nn * 4);
        d_dup = (float *)nan_device(nn * 4);
        lf_cuda_gated_act_bwd_f32(d_dgate, d_dup, d_dout, (const float *)d_gate, (const float *)d_up, n, act, stream);
        float *got_dg = fetch(d_dgate, nn, 4), *got_du = fetch(d_dup, nn, 4);
        ok = compare_max("dgate: ", got_dg, ref_dg, nn, TOL_ELEM, 1.0, detail, sizeof detail);
        ok &= compare_max("dup: ", got_du, ref_du, nn, TOL_ELEM, 1.0, detail, sizeof detail);
        free(ref_dg); free(ref_du); free(got_dg); free(got_du);
        bytes = 5.0 * nn * 4;
    } else {
        float *ref = (float *)xmalloc(nn * 4);
        lf_cpu_gated_act_f32(ref, gate, up, n, act);
        d_out = alias ? d_gate : nan_device(nn * es);
        gated_launch(mode, d_out, d_gate, d_up, n, act);
        float *got = fetch(d_out, nn, es);
        ok = compare_max("", got, ref, nn, mode == MODE_BF16 ? TOL_BF16 : TOL_ELEM, 1.0, detail, sizeof detail);
        free(ref); free(got);
        bytes = 3.0 * nn * es;
    }
    if (timed && !alias) {
        for (int it = 0; it < WARMUP + ITERS; it++) {
            if (it == WARMUP)
                time_begin();
            if (mode == MODE_BWD)
                lf_cuda_gated_act_bwd_f32(d_dgate, d_dup, d_dout, (const float *)d_gate, (const float *)d_up, n, act,
                                          stream);
            else
                gated_launch(mode, d_out, d_gate, d_up, n, act);
        }
        time_end(bytes, detail, sizeof detail);
    }
    result(ok, name, detail);

    if (d_out && !alias)
        LF_CUDA_CHECK(cudaFree(d_out));
    if (mode == MODE_BWD) {
        LF_CUDA_CHECK(cudaFree(d_dout));
        LF_CUDA_CHECK(cudaFree(d_dgate));
        LF_CUDA_CHECK(cudaFree(d_dup));
    }
    LF_CUDA_CHECK(cudaFree(d_gate));
    LF_CUDA_CHECK(cudaFree(d_up));
    free(gate); free(up); free(gate16); free(up16); free(dout);
}

/* ---- soft-capping --------------------------------------------------------------- */

static void softcap_launch(int mode, void *d_x, const float *d_y, long n, float cap)
{
    if (mode == MODE_BF16)
        lf_cuda_softcap_bf16((uint16_t *)d_x, n, cap, stream);
    else if (mode == MODE_BWD)
        lf_cuda_softcap_bwd_f32((float *)d_x, d_y, n, cap, stream);
    else
        lf_cuda_softcap_f32((float *)d_x, n, cap, stream);
}

/* forward on x in [-3 cap, 3 cap) (saturating); backward on dy in [-1, 1)
   given y, the forward's output of such an x */
static void check_softcap(long n, float cap, int mode, int timed)
{
    size_t nn = (size_t)n;
    int es = mode == MODE_BF16 ? 2 : 4;
    float *x = random_f32(nn, 3.0f * cap), *y = NULL, *ref;
    uint16_t *x16 = NULL;
    float *d_y = NULL;
    void *d_x;
    if (mode == MODE_BWD) {
        y = x;                          /* y = softcap(x); x becomes dy */
        lf_cpu_softcap_f32(y, n, cap);
        x = random_f32(nn, 1.0f);
        ref = copy_f32(x, nn);
        lf_cpu_softcap_bwd_f32(ref, y, n, cap);
        d_y = (float *)to_device(y, nn * 4);
    } else {
        if (mode == MODE_BF16)
            x16 = to_bf16(x, nn);
        ref = copy_f32(x, nn);
        lf_cpu_softcap_f32(ref, n, cap);
    }
    d_x = mode == MODE_BF16 ? to_device(x16, nn * 2) : to_device(x, nn * 4);
    softcap_launch(mode, d_x, d_y, n, cap);
    float *got = fetch(d_x, nn, es);

    char name[96], detail[512] = "";
    snprintf(name, sizeof name, "softcap_%s_%ld_cap%g", mode_name[mode], n, cap);
    int ok = compare_max("", got, ref, nn, mode == MODE_BF16 ? TOL_BF16 : TOL_ELEM, 1.0, detail, sizeof detail);
    if (timed) { /* in place, after the check */
        for (int it = 0; it < WARMUP + ITERS; it++) {
            if (it == WARMUP)
                time_begin();
            softcap_launch(mode, d_x, d_y, n, cap);
        }
        time_end((mode == MODE_BWD ? 3.0 : 2.0) * nn * es, detail, sizeof detail);
    }
    result(ok, name, detail);

    LF_CUDA_CHECK(cudaFree(d_x));
    if (d_y)
        LF_CUDA_CHECK(cudaFree(d_y));
    free(x); free(y); free(x16); free(ref); free(got);
}

/* ---- main ------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    (void)argv;
    int rc = device_start(argc);
    if (rc >= 0)
        return rc;

    /* RMSNorm: rows of one element, odd widths, per-head norms (many short
       rows), a width past one block's threads many times over, and the
       realistic 512 tokens x 4096 (timed) */
    static const struct { int T, n; float offset; } norms[] = {
        { 1, 4096, 0 }, { 3, 1, 0 }, { 7, 33, 1 }, { 5, 1000, 0 }, { 64, 2049, 1 },
        { 300, 128, 0 }, { 2, 12289, 0 }, { 512, 4096, 1 },
    };
    for (size_t i = 0; i < sizeof norms / sizeof norms[0]; i++)
        check_rmsnorm(norms[i].T, norms[i].n, norms[i].offset, 0, 0, 0);
    check_rmsnorm(512, 4096, 0, 0, 0, 1);
    check_rmsnorm(37, 3000, 1, 0, 1, 0);
    check_rmsnorm(7, 33, 1, 1, 0, 0);
    check_rmsnorm(300, 128, 0, 1, 0, 0);
    check_rmsnorm(5, 1000, 0, 1, 1, 0);
    check_rmsnorm(512, 4096, 0, 1, 0, 1);

    /* backward; 40000 rows of 64 hits the cap of 1024 dw chunks */
    for (size_t i = 0; i < sizeof norms / sizeof norms[0]; i++)
        check_rmsnorm_bwd(norms[i].T, norms[i].n, norms[i].offset, 1, 0);
    check_rmsnorm_bwd(5, 1000, 0, 0, 0);
    check_rmsnorm_bwd(2048, 128, 0, 1, 0);
    check_rmsnorm_bwd(40000, 64, 1, 1, 0);
    check_rmsnorm_bwd(512, 4096, 0, 1, 1);

    /* RoPE: one token at a long position, partial rotary with padded rows,
       odd head counts, the tiniest head, k inside a fused qkv row, and the
       realistic 512 tokens x 32 heads x 128 (timed) */
    static const struct { int T, heads, d, stride, rot; double base; float factor; int pos_max, timed; } ropes[] = {
        { 1, 32, 128, 4096, 128, 500000, 1.0f, 131072, 0 },
        { 7, 3, 80, 3 * 80 + 16, 32, 10000, 1.0f, 2048, 0 },
        { 33, 5, 64, 320, 64, 10000, 1.0f, 4096, 0 },
        { 17, 2, 96, 2 * 96 + 96, 48, 10000, 1.3f, 8192, 0 },
        { 3, 1, 2, 2, 2, 10000, 1.0f, 100, 0 },
        { 512, 8, 128, 48 * 128, 128, 1000000, 1.0f, 32768, 0 },
        { 512, 32, 128, 4096, 128, 500000, 1.0f, 32768, 1 },
    };
    for (int mode = MODE_F32; mode <= MODE_BF16; mode++)
        for (size_t i = 0; i < sizeof ropes / sizeof ropes[0]; i++)
            check_rope(ropes[i].T, ropes[i].heads, ropes[i].d, ropes[i].stride, ropes[i].rot, ropes[i].base,
                       ropes[i].factor, ropes[i].pos_max, mode, ropes[i].timed);

    /* gated activations: one element, under a warp, odd, and 512 tokens x
       11008 (timed) */
    static const long gated_n[] = { 1, 31, 100003, 512L * 11008 };
    for (int mode = MODE_F32; mode <= MODE_BF16; mode++)
        for (int act = 0; act < 3; act++)
            for (size_t i = 0; i < sizeof gated_n / sizeof gated_n[0]; i++)
                check_gated(gated_n[i], act, mode, 0, i == sizeof gated_n / sizeof gated_n[0] - 1);
    check_gated(4099, 1, MODE_F32, 1, 0);
    check_gated(4099, 0, MODE_BF16, 1, 0);

    /* soft-capping: attention's cap 50 and the logits' 30, up to 512
       tokens x 32000 (timed) */
    static const long cap_n[] = { 1, 257, 100003, 512L * 32000 };
    for (int mode = MODE_F32; mode <= MODE_BF16; mode++)
        for (size_t i = 0; i < sizeof cap_n / sizeof cap_n[0]; i++)
            check_softcap(cap_n[i], i % 2 ? 50.0f : 30.0f, mode, i == sizeof cap_n / sizeof cap_n[0] - 1);

    return device_finish();
}

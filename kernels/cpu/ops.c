/* kernels/cpu/ops.c — CPU reference ops (see ops.h).  Loops over rows run
 * in parallel with OpenMP where the work is large; the attention runs one
 * item per head (per query and head when decoding) in parallel, with
 * vec.c's register-tiled products over only the keys each query sees;
 * exp is vec.c's. */
#include "ops.h"
#include "grad.h"
#include "vec.h"

#include <math.h>
#include <stdbool.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lf_cpu_rmsnorm_f32(float *out, const float *x, const float *w, int T, int n, float eps, float offset)
{
    #pragma omp parallel for if ((long)T * n > 65536)
    for (int t = 0; t < T; t++) {
        const float *xr = x + (long)t * n;
        float ss = lf_vec_sumsq_f32(xr, n);
        float r = 1.0f / sqrtf(ss / (float)n + eps);
        lf_vec_norm_apply_f32(out + (long)t * n, xr, r, w, offset, n);
    }
}

/* One token's angles p * inv_freq[i] (i < n): their cos and sin, times
   attention_factor; the angle in f32 as transformers computes it */
static void rope_angles(float *c, float *s, int32_t p, int n, const float *inv_freq, float attention_factor)
{
    for (int i = 0; i < n; i++) {
        float angle = (float)p * inv_freq[i];
        c[i] = cosf(angle) * attention_factor;
        s[i] = sinf(angle) * attention_factor;
    }
}

void lf_cpu_rope_table_f32(float *cs, const int32_t *pos, int T, int half, const float *inv_freq,
                           float attention_factor)
{
    #pragma omp parallel for if ((long)T * half > 2048)
    for (int t = 0; t < T; t++)
        rope_angles(cs + (size_t)t * 2 * half, cs + (size_t)t * 2 * half + half, pos[t], half, inv_freq,
                    attention_factor);
}

/* The rotation of one token's heads by sign x its angles (the backward
 * pass is the transpose: the rotation by minus the angle), frequencies
 * [0, n) of x1 = x[0, half), x2 = x[half, 2 half) of each head; the loop
 * in vectors, with the same operations as one at a time. */
static void rope_rotate_token(float *x, const float *c, const float *s, int heads, int d, int half, int n,
                              float sign)
{
    for (int h = 0; h < heads; h++) {
        float *v = x + (long)h * d;
        #pragma omp simd
        for (int i = 0; i < n; i++) {
            float x1 = v[i], x2 = v[i + half], si = sign * s[i];
            v[i] = x1 * c[i] - x2 * si;
            v[i + half] = x2 * c[i] + x1 * si;
        }
    }
}

/* The rotation by sign x the angle, each token's angles computed as it
   goes */
static void rope_by_pos(float *x, const int32_t *pos, int T, int heads, int d, int row_stride, int rotary_dim,
                        const float *inv_freq, float attention_factor, float sign)
{
    int half = rotary_dim / 2;
    #pragma omp parallel for if ((long)T * heads * d > 16384)
    for (int t = 0; t < T; t++) {
        /* 512 frequencies at a time */
        for (int i0 = 0; i0 < half; i0 += 512) {
            int n = half - i0 < 512 ? half - i0 : 512;
            float c[512], s[512];
            rope_angles(c, s, pos[t], n, inv_freq + i0, attention_factor);
            rope_rotate_token(x + (long)t * row_stride + i0, c, s, heads, d, half, n, sign);
        }
    }
}

void lf_cpu_rope_f32(float *x, const int32_t *pos, int T, int heads, int d, int row_stride, int rotary_dim,
                     const float *inv_freq, float attention_factor)
{
    rope_by_pos(x, pos, T, heads, d, row_stride, rotary_dim, inv_freq, attention_factor, 1.0f);
}

void lf_cpu_rope_bwd_f32(float *dx, const int32_t *pos, int T, int heads, int d, int row_stride, int rotary_dim,
                         const float *inv_freq, float attention_factor)
{
    rope_by_pos(dx, pos, T, heads, d, row_stride, rotary_dim, inv_freq, attention_factor, -1.0f);
}

void lf_cpu_rope_apply_f32(float *x, const float *cs, int T, int heads, int d, int row_stride, int rotary_dim,
                           float sign)
{
    int half = rotary_dim / 2;
    #pragma omp parallel for if ((long)T * heads * d > 16384)
    for (int t = 0; t < T; t++) {
        const float *c = cs + (size_t)t * 2 * half;
        rope_rotate_token(x + (long)t * row_stride, c, c + half, heads, d, half, half, sign);
    }
}

/* The first key a query at position p sees. */
static int attn_lo(const struct lf_attn *a, int p)
{
    return a->window > 0 && p - a->window + 1 > 0 ? p - a->window + 1 : 0;
}

/* Softmax of row[lo, hi) in place (soft-capped first where the layer
 * has it); row[0, lo) and row[hi, n) set to 0. */
static void attn_softmax_row(float *row, int lo, int hi, int n, const struct lf_attn *a)
{
    if (a->softcap > 0)
        for (int s = lo; s < hi; s++)
            row[s] = a->softcap * tanhf(row[s] / a->softcap);
    float mx = -INFINITY;
    #pragma omp simd reduction(max : mx)
    for (int s = lo; s < hi; s++)
        mx = row[s] > mx ? row[s] : mx;
    float sum = lf_vec_exp_sum_f32(row + lo, hi - lo, mx);
    lf_vec_scale_f32(row + lo, 1.0f / sum, hi - lo);
    memset(row, 0, (size_t)lo * sizeof(float));
    memset(row + hi, 0, (size_t)(n - hi) * sizeof(float));
}

/* Where the keys and values lie: position s of kv head g at
 * k + g * head + s * row (and v likewise). */
struct kv_layout {
    const float *k, *v;
    long row, head;
};

/* One query row t, heads h0 .. h1-1 (decoding), one head after another:
 * its keys' dot products, softmax, the weighted sum of its values; sc
 * holds q0 + t + 1 floats.  A head's result does not depend on h0 and
 * h1.  In the cache's layout each head's keys, then its values, are one
 * stretch of memory read front to back. */
static void attention_heads(float *out, const float *q, const struct kv_layout *kv, int t, int h0, int h1, int q0,
                            const struct lf_attn *a, float *sc)
{
    int d = a->d, group = a->heads / a->kv_heads, qs = a->heads * d;
    int p = q0 + t, lo = attn_lo(a, p), n = p + 1 - lo;
    for (int h = h0; h < h1; h++) {
        long first = (long)(h / group) * kv->head + (long)lo * kv->row;
        lf_vec_dot_short_rows_f32(sc, kv->k + first, kv->row, q + (long)t * qs + (long)h * d, n, d);
        lf_vec_scale_f32(sc, a->scale, n);
        attn_softmax_row(sc, 0, n, n, a);
        lf_vec_weighted_rows_f32(out + (long)t * qs + (long)h * d, sc, kv->v + first, kv->row, n, d, 0);
    }
}

/* Every query row of head h (prefill): the keys it needs transposed once
 * into kt ([d, keys]), then tiles of LF_VEC_TILE rows, each over the keys
 * its rows see: scores, softmax per row, weighted sum of the values.
 * kt holds d * (q0 + T) floats, sc LF_VEC_TILE * (q0 + T). */
static void attention_head(float *out, const float *q, const struct kv_layout *kv, int T, int h, int q0,
                           const struct lf_attn *a, float *kt, float *sc)
{
    int d = a->d, qs = a->heads * d;
    int base = attn_lo(a, q0), nk = q0 + T - base;
    const float *k = kv->k + (long)(h / (a->heads / a->kv_heads)) * kv->head + (long)base * kv->row;
    const float *v = kv->v + (k - kv->k);
    lf_vec_transpose_f32(kt, nk, k, kv->row, nk, d);
    for (int t = 0; t < T; t += LF_VEC_TILE) {
        int nr = T - t < LF_VEC_TILE ? T - t : LF_VEC_TILE, first = q0 + t;
        int klo = attn_lo(a, first) - base, n = first + nr - base - klo;
        lf_vec_qk_tile_f32(sc, n, q + (long)t * qs + (long)h * d, qs, nr, kt + klo, nk, n, d, a->scale);
        for (int r = 0; r < nr; r++)
            attn_softmax_row(sc + (long)r * n, attn_lo(a, first + r) - base - klo, first + r + 1 - base - klo, n,
                             a);
        lf_vec_pv_tile_f32(out + (long)t * qs + (long)h * d, qs, sc, n, nr, v + (long)klo * kv->row, kv->row, n, d);
    }
}

static void attention(float *out, const float *q, const struct kv_layout *kv, int T, int q0, const struct lf_attn *a)
{
    if (T < 1)
        return;
    int keys = q0 + T, nt = omp_get_max_threads();
    long work = (long)T * keys * a->heads * a->d;
    if (T < LF_VEC_TILE) {
        /* a few queries (decoding): each query's heads in as many groups as
           there are threads */
        int groups = nt < a->heads ? nt : a->heads, items = T * groups;
        #pragma omp parallel if (items > 1 && work >= 65536)
        {
            float *buf = malloc((size_t)keys * sizeof(float) + 64);
            if (!buf) {
                fprintf(stderr, "%s:%d: attention: out of memory\n", __FILE__, __LINE__);
                abort();
            }
            #pragma omp for schedule(static, 1)
            for (int it = 0; it < items; it++) {
                int t = it / groups, g = it % groups;
                attention_heads(out, q, kv, t, a->heads * g / groups, a->heads * (g + 1) / groups, q0, a, buf);
            }
            free(buf);
        }
        return;
    }
    /* prefill: one item per head */
    #pragma omp parallel if (a->heads > 1 && work >= 65536)
    {
        float *buf = malloc((size_t)(a->d + LF_VEC_TILE) * keys * sizeof(float) + 64);
        if (!buf) {
            fprintf(stderr, "%s:%d: attention: out of memory\n", __FILE__, __LINE__);
            abort();
        }
        #pragma omp for schedule(dynamic, 1)
        for (int h = 0; h < a->heads; h++)
            attention_head(out, q, kv, T, h, q0, a, buf + (size_t)LF_VEC_TILE * keys, buf);
        free(buf);
    }
}

void lf_cpu_attention_f32(float *out, const float *q, const float *k, const float *v, int T, int S, int q0,
                          const struct lf_attn *a, float *scratch)
{
    (void)scratch; /* each thread has its own */
    (void)S;       /* keys past q0 + T - 1 are never seen */
    struct kv_layout kv = { k, v, (long)a->kv_heads * a->d, a->d };
    attention(out, q, &kv, T, q0, a);
}

void lf_cpu_attention_cache_f32(float *out, const float *q, const float *kc, const float *vc, int capacity, int T,
                                int q0, const struct lf_attn *a)
{
    struct kv_layout kv = { kc, vc, a->d, (long)capacity * a->d };
    attention(out, q, &kv, T, q0, a);
}

void lf_cpu_gated_act_f32(float *out, const float *gate, const float *up, long n, int act)
{
    if (act == 0) { /* silu: vector exp; each element independent of the split */
        #pragma omp parallel if (n > 65536)
        {
            long lo, hi;
            lf_vec_share(n, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
            lf_vec_silu_mul_f32(out + lo, gate + lo, up + lo, hi - lo);
        }
        return;
    }
    #pragma omp parallel for if (n > 65536)
    for (long i = 0; i < n; i++) {
        float g = gate[i], y;
        if (act == 1)
            y = 0.5f * g * (1.0f + tanhf(0.7978845608028654f * (g + 0.044715f * g * g * g)));
        else
            y = 0.5f * g * (1.0f + erff(g * 0.7071067811865476f));
        out[i] = y * up[i];
    }
}

void lf_cpu_softcap_f32(float *x, long n, float cap)
{
    #pragma omp parallel for if (n > 65536)
    for (long i = 0; i < n; i++)
        x[i] = cap * tanhf(x[i] / cap);
}

void lf_cpu_router_topk_f32(float *probs, int T, int E, int K, int *choice, float *weights)
{
    for (int t = 0; t < T; t++) {
        float *p = probs + (size_t)t * E, mx = -INFINITY, sum = 0;
        for (int e = 0; e < E; e++)
            mx = p[e] > mx ? p[e] : mx;
        for (int e = 0; e < E; e++)
            sum += p[e] = expf(p[e] - mx);
        for (int e = 0; e < E; e++)
            p[e] /= sum;
        int *ch = choice + (size_t)t * K;
        float chosen = 0;
        for (int k = 0; k < K; k++) {
            int best = -1;
            for (int e = 0; e < E; e++) {
                bool taken = false;
                for (int j = 0; j < k; j++)
                    taken |= ch[j] == e;
                if (!taken && (best < 0 || p[e] > p[best]))
                    best = e;
            }
            ch[k] = best;
            chosen += p[best];
        }
        for (int k = 0; k < K; k++)
            weights[(size_t)t * K + k] = p[ch[k]] / chosen;
    }
}

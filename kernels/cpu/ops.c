/* kernels/cpu/ops.c — CPU reference ops (see ops.h).  Loops over rows run
 * in parallel with OpenMP where the work is large; the attention runs its
 * (query block, head) items in parallel, each with single-threaded
 * products (OpenBLAS for a block, vec.c's for one query) over the keys the
 * block sees; exp is vec.c's. */
#include "ops.h"
#include "vec.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>

void lf_cpu_rmsnorm_f32(float *out, const float *x, const float *w, int T, int n, float eps, float offset)
{
    #pragma omp parallel for if ((long)T * n > 65536)
    for (int t = 0; t < T; t++) {
        const float *xr = x + (long)t * n;
        float *o = out + (long)t * n;
        float ss = 0;
        for (int i = 0; i < n; i++)
            ss += xr[i] * xr[i];
        float r = 1.0f / sqrtf(ss / (float)n + eps);
        for (int i = 0; i < n; i++)
            o[i] = xr[i] * r * (w[i] + offset);
    }
}

void lf_cpu_rope_f32(float *x, const int32_t *pos, int T, int heads, int d, int row_stride, int rotary_dim,
                     const float *inv_freq, float attention_factor)
{
    int half = rotary_dim / 2;
    #pragma omp parallel for if ((long)T * heads * d > 65536)
    for (int t = 0; t < T; t++) {
        float c[512], s[512];
        for (int i = 0; i < half && i < 512; i++) {
            float angle = (float)pos[t] * inv_freq[i];
            c[i] = cosf(angle) * attention_factor;
            s[i] = sinf(angle) * attention_factor;
        }
        for (int h = 0; h < heads; h++) {
            float *v = x + (long)t * row_stride + (long)h * d;
            for (int i = 0; i < half; i++) {
                float x1 = v[i], x2 = v[i + half];
                v[i] = x1 * c[i] - x2 * s[i];
                v[i + half] = x2 * c[i] + x1 * s[i];
            }
        }
    }
}

/* Query rows per work item of the attention: with the keys they see
 * (up to the block's last position) one small product per item. */
#define ATTN_BLOCK 32

/* Attention of query rows t0 .. t1-1 and head h (one work item): scores
 * over the keys the block sees, softmax per row, then the weighted sum of
 * the values.  sc holds (t1 - t0) * S floats. */
static void attention_item(float *out, const float *q, const float *k, const float *v, int t0, int t1, int h,
                           int q0, const struct lf_attn *a, float *sc)
{
    int d = a->d, kvh = h / (a->heads / a->kv_heads), qs = a->heads * d, ks = a->kv_heads * d;
    int B = t1 - t0, first = q0 + t0, last = q0 + t1 - 1;
    int klo = a->window > 0 && first - a->window + 1 > 0 ? first - a->window + 1 : 0, n = last + 1 - klo;
    const float *qh = q + (long)t0 * qs + (long)h * d;
    const float *kh = k + (long)klo * ks + (long)kvh * d, *vh = v + (long)klo * ks + (long)kvh * d;
    float *oh = out + (long)t0 * qs + (long)h * d;
    /* sc[B, n] = q_h . k_h^T * scale (single-threaded inside the parallel
       region: OpenBLAS runs one thread there) */
    if (B == 1) {
        lf_vec_dot_rows_f32(sc, kh, ks, qh, n, d);
        lf_vec_scale_f32(sc, a->scale, n);
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, n, d, a->scale, qh, qs, kh, ks, 0.0f, sc, n);
    }
    for (int i = 0; i < B; i++) {
        float *row = sc + (long)i * n;
        int p = first + i;
        int lo = (a->window > 0 && p - a->window + 1 > 0 ? p - a->window + 1 : 0) - klo, hi = p + 1 - klo;
        if (a->softcap > 0)
            for (int s = lo; s < hi; s++)
                row[s] = a->softcap * tanhf(row[s] / a->softcap);
        float mx = -INFINITY;
        for (int s = lo; s < hi; s++)
            mx = row[s] > mx ? row[s] : mx;
        float sum = lf_vec_exp_sum_f32(row + lo, hi - lo, mx);
        lf_vec_scale_f32(row + lo, 1.0f / sum, hi - lo);
        if (B > 1) {
            memset(row, 0, (size_t)lo * sizeof(float));
            memset(row + hi, 0, (size_t)(n - hi) * sizeof(float));
        }
    }
    /* out_h [B, d] = probs [B, n] . v_h [n, d] */
    if (B == 1) {
        lf_vec_weighted_rows_f32(oh, sc, vh, ks, n, d);
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, d, n, 1.0f, sc, n, vh, ks, 0.0f, oh, qs);
    }
}

void lf_cpu_attention_f32(float *out, const float *q, const float *k, const float *v, int T, int S, int q0,
                          const struct lf_attn *a, float *scratch)
{
    (void)scratch; /* each thread has its own (rows of one block) */
    if (T < 1)
        return;
    int blocks = (T + ATTN_BLOCK - 1) / ATTN_BLOCK, items = blocks * a->heads;
    int B = T < ATTN_BLOCK ? T : ATTN_BLOCK;
    #pragma omp parallel if (items > 1 && (long)T * S * a->heads * a->d >= 65536)
    {
        float *sc = malloc((size_t)B * (size_t)S * sizeof(float) + 64);
        if (!sc) {
            fprintf(stderr, "%s:%d: lf_cpu_attention_f32: out of memory\n", __FILE__, __LINE__);
            abort();
        }
        /* the blocks of the last rows see the most keys: they go first */
        #pragma omp for schedule(dynamic, 1)
        for (int it = 0; it < items; it++) {
            int blk = blocks - 1 - it / a->heads, h = it % a->heads;
            int t0 = blk * ATTN_BLOCK, t1 = t0 + ATTN_BLOCK < T ? t0 + ATTN_BLOCK : T;
            attention_item(out, q, k, v, t0, t1, h, q0, a, sc);
        }
        free(sc);
    }
}

void lf_cpu_gated_act_f32(float *out, const float *gate, const float *up, long n, int act)
{
    if (act == 0) { /* silu: vector exp; each element independent of the split */
        #pragma omp parallel if (n > 65536)
        {
            long nt = omp_get_num_threads(), t = omp_get_thread_num();
            long lo = n * t / nt / 16 * 16, hi = t == nt - 1 ? n : n * (t + 1) / nt / 16 * 16;
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
    for (long i = 0; i < n; i++)
        x[i] = cap * tanhf(x[i] / cap);
}

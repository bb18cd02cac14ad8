/* kernels/cpu/grad.c — backward ops of the CPU reference (see grad.h).
 * Products go through gemm.c (the attention's small per-block ones on
 * their head's thread); reductions over rows are split by column
 * so that results do not depend on the number of threads.  The attention's
 * backward runs its heads in parallel (blocks of query rows over the keys
 * they see, single-threaded products), the cross-entropy's exp is vec.c's. */
#include "gemm.h"
#include "grad.h"
#include "vec.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lf_cpu_matmul_nn_f32(float *out, const float *a, const float *b, int M, int N, int K, float beta)
{
    if (M <= 0 || K <= 0)
        return;
    if (N <= 0) {
        if (beta == 0.0f)
            memset(out, 0, (size_t)M * K * sizeof *out);
        return;
    }
    lf_cpu_sgemm_f32(0, 0, M, K, N, 1.0f, a, N, b, K, beta, out, K);
}

void lf_cpu_matmul_tn_acc_f32(float *out, const float *a, const float *b, int M, int N, int K, float scale)
{
    if (M <= 0 || N <= 0 || K <= 0)
        return;
    lf_cpu_sgemm_f32(1, 0, N, K, M, scale, a, N, b, K, 1.0f, out, K);
}

void lf_cpu_bias_grad_f32(float *db, const float *dy, int M, int N)
{
    #pragma omp parallel for if ((long)M * N > 65536)
    for (int j0 = 0; j0 < N; j0 += 64) {
        int j1 = j0 + 64 < N ? j0 + 64 : N;
        for (int m = 0; m < M; m++)
            for (int j = j0; j < j1; j++)
                db[j] += dy[(size_t)m * N + j];
    }
}

void lf_cpu_router_bwd_f32(float *dlogits, const float *probs, const int *choice, const float *weights,
                           const float *dweights, const double *aux_grad, int T, int E, int K)
{
    for (int t = 0; t < T; t++) {
        const float *p = probs + (size_t)t * E, *w = weights + (size_t)t * K, *dw = dweights + (size_t)t * K;
        const int *ch = choice + (size_t)t * K;
        float *dp = dlogits + (size_t)t * E, P = 0, dot = 0;
        for (int e = 0; e < E; e++)
            dp[e] = aux_grad ? (float)aux_grad[e] : 0.0f;
        for (int k = 0; k < K; k++) {
            P += p[ch[k]];
            dot += dw[k] * w[k];
        }
        for (int k = 0; k < K; k++)
            dp[ch[k]] += (dw[k] - dot) / P;
        float s = 0;
        for (int e = 0; e < E; e++)
            s += dp[e] * p[e];
        for (int e = 0; e < E; e++)
            dp[e] = p[e] * (dp[e] - s);
    }
}

void lf_cpu_rmsnorm_bwd_f32(float *dx, float *dw, const float *dy, const float *x, const float *w, int T, int n,
                            float eps, float offset)
{
    float *r = malloc((size_t)(T > 0 ? T : 1) * sizeof *r);
    #pragma omp parallel for if ((long)T * n > 65536)
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * n;
        r[t] = 1.0f / sqrtf(lf_vec_sumsq_f32(xr, n) / (float)n + eps); /* the forward's r */
        lf_vec_rmsnorm_bwd_row_f32(dx + (size_t)t * n, dy + (size_t)t * n, xr, w, offset, r[t], n);
    }
    if (dw) {
        /* each thread its share of the columns, every row in order */
        #pragma omp parallel if ((long)T * n > 65536)
        {
            long lo, hi;
            lf_vec_share(n, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
            for (int t = 0; t < T && lo < hi; t++)
                lf_vec_mul_axpy_f32(dw + lo, dy + (size_t)t * n + lo, x + (size_t)t * n + lo, r[t], (int)(hi - lo));
        }
    }
    free(r);
}

/* Query rows per block of the attention's backward: each block works on
 * the keys it sees (up to its last position), so the causal half is
 * skipped, and its products are small single-threaded ones. */
#define ATTN_BWD_BLOCK 32

/* The backward of query head h over rows t0 .. t1-1 (one block), keys
 * klo .. khi-1: recomputes the block's probabilities P [B, n] as the
 * forward does (scores, cap, softmax within each row's window), then
 * dV_h += P^T dO, dP = dO V^T, dS = P (dP - rowsum(dO o O)) (through the
 * cap), dQ = scale dS K, dK_h += scale dS^T Q.  dkh, dvh: the head's own
 * [S, d] gradients of k and v; buf: 3 B n floats. */
static void attention_bwd_block(float *dq, float *dkh, float *dvh, const float *dout, const float *q,
                                const float *k, const float *v, const float *out, int t0, int t1, int S, int q0,
                                int h, const struct lf_attn *a, float *buf)
{
    int d = a->d, kvh = h / (a->heads / a->kv_heads), qs = a->heads * d, ks = a->kv_heads * d;
    int B = t1 - t0, first = q0 + t0, last = q0 + t1 - 1;
    int klo = a->window > 0 && first - a->window + 1 > 0 ? first - a->window + 1 : 0;
    int khi = (last < S - 1 ? last : S - 1) + 1, n = khi - klo;
    if (n <= 0) {
        for (int i = 0; i < B; i++)
            memset(dq + (size_t)(t0 + i) * qs + (size_t)h * d, 0, (size_t)d * sizeof(float));
        return;
    }
    const float *qh = q + (size_t)t0 * qs + (size_t)h * d, *doh = dout + (size_t)t0 * qs + (size_t)h * d;
    const float *oh = out + (size_t)t0 * qs + (size_t)h * d;
    const float *kh = k + (size_t)klo * ks + (size_t)kvh * d, *vh = v + (size_t)klo * ks + (size_t)kvh * d;
    float *P = buf, *dP = buf + (size_t)B * n, *F = buf + 2 * (size_t)B * n;
    lf_cpu_sgemm_f32(0, 1, B, n, d, a->scale, qh, qs, kh, ks, 0.0f, P, n);
    for (int i = 0; i < B; i++) {
        float *row = P + (size_t)i * n;
        int p = first + i;
        int lo = (a->window > 0 && p - a->window + 1 > 0 ? p - a->window + 1 : 0) - klo;
        int hi = (p < S - 1 ? p : S - 1) + 1 - klo;
        float mx = -INFINITY;
        if (a->softcap > 0)
            for (int s = lo; s < hi; s++) {
                row[s] = a->softcap * tanhf(row[s] / a->softcap);
                float u = row[s] / a->softcap;
                F[(size_t)i * n + s] = 1.0f - u * u;
                mx = row[s] > mx ? row[s] : mx;
            }
        else
            #pragma omp simd reduction(max : mx)
            for (int s = lo; s < hi; s++)
                mx = row[s] > mx ? row[s] : mx;
        /* the softmax as the forward's: vec.c's exp, times 1 / sum */
        float sum = lf_vec_exp_sum_f32(row + lo, hi - lo, mx);
        lf_vec_scale_f32(row + lo, 1.0f / sum, hi - lo);
        memset(row, 0, (size_t)lo * sizeof *row);
        memset(row + hi, 0, (size_t)(n - hi) * sizeof *row);
    }
    /* dV_h += P^T dO;  dP = dO V^T */
    lf_cpu_sgemm_f32(1, 0, n, d, B, 1.0f, P, n, doh, qs, 1.0f, dvh + (size_t)klo * d, d);
    lf_cpu_sgemm_f32(0, 1, B, n, d, 1.0f, doh, qs, vh, ks, 0.0f, dP, n);
    /* dS = P (dP - rowsum(dO o O)), through the cap */
    for (int i = 0; i < B; i++) {
        const float *dor = doh + (size_t)i * qs, *orow = oh + (size_t)i * qs;
        float D = 0;
        #pragma omp simd reduction(+ : D)
        for (int j = 0; j < d; j++)
            D += dor[j] * orow[j];
        float *pr = P + (size_t)i * n, *gr = dP + (size_t)i * n;
        if (a->softcap > 0)
            for (int s = 0; s < n; s++) {
                float g = pr[s] * (gr[s] - D);
                gr[s] = pr[s] != 0 ? g * F[(size_t)i * n + s] : g;
            }
        else
            #pragma omp simd
            for (int s = 0; s < n; s++)
                gr[s] = pr[s] * (gr[s] - D);
    }
    /* dQ = scale dS K;  dK_h += scale dS^T Q */
    lf_cpu_sgemm_f32(0, 0, B, d, n, a->scale, dP, n, kh, ks, 0.0f, dq + (size_t)t0 * qs + (size_t)h * d, qs);
    lf_cpu_sgemm_f32(1, 0, n, d, B, a->scale, dP, n, qh, qs, 1.0f, dkh + (size_t)klo * d, d);
}

/* The heads run in parallel, one work item each (its blocks in order, its
 * products on its own thread), each into its own dK_h and dV_h; then dk
 * and dv add the heads of each group in head order, so no result depends
 * on the thread count.
 * Groups go a few at a time so that the heads' own gradients stay under
 * ~64 MB. */
void lf_cpu_attention_bwd_f32(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                              const float *v, const float *out, int T, int S, int q0, const struct lf_attn *a,
                              float *scratch)
{
    (void)scratch; /* each thread has its own blocks */
    if (T < 1 || S < 1)
        return;
    int group = a->heads / a->kv_heads, d = a->d, ks = a->kv_heads * d;
    size_t head_floats = 2 * (size_t)S * d; /* dK_h and dV_h */
    int chunk = (int)(((size_t)16 << 20) / (head_floats * group));
    chunk = chunk < 1 ? 1 : chunk > a->kv_heads ? a->kv_heads : chunk;
    float *own = malloc((size_t)chunk * group * head_floats * sizeof(float) + 64);
    int blocks = (T + ATTN_BWD_BLOCK - 1) / ATTN_BWD_BLOCK, Bmax = T < ATTN_BWD_BLOCK ? T : ATTN_BWD_BLOCK;
    if (!own) {
        fprintf(stderr, "%s:%d: lf_cpu_attention_bwd_f32: out of memory\n", __FILE__, __LINE__);
        abort();
    }
    for (int g0 = 0; g0 < a->kv_heads; g0 += chunk) {
        int g1 = g0 + chunk < a->kv_heads ? g0 + chunk : a->kv_heads, h0 = g0 * group, items = (g1 - g0) * group;
        memset(own, 0, (size_t)items * head_floats * sizeof(float));
        #pragma omp parallel if (items > 1 && (long)T * S * d * items >= 65536)
        {
            float *buf = malloc(3 * (size_t)Bmax * S * sizeof(float) + 64);
            if (!buf) {
                fprintf(stderr, "%s:%d: lf_cpu_attention_bwd_f32: out of memory\n", __FILE__, __LINE__);
                abort();
            }
            #pragma omp for schedule(dynamic, 1)
            for (int it = 0; it < items; it++) {
                float *dkh = own + (size_t)it * head_floats, *dvh = dkh + (size_t)S * d;
                for (int b = 0; b < blocks; b++) {
                    int t0 = b * ATTN_BWD_BLOCK, t1 = t0 + ATTN_BWD_BLOCK < T ? t0 + ATTN_BWD_BLOCK : T;
                    attention_bwd_block(dq, dkh, dvh, dout, q, k, v, out, t0, t1, S, q0, h0 + it, a, buf);
                }
            }
            free(buf);
        }
        /* dk, dv += the heads of each group, in order */
        #pragma omp parallel for if ((long)S * d * items > 65536)
        for (int s = 0; s < S; s++)
            for (int kh = g0; kh < g1; kh++) {
                float *dkr = dk + (size_t)s * ks + (size_t)kh * d, *dvr = dv + (size_t)s * ks + (size_t)kh * d;
                for (int h = (kh - g0) * group; h < (kh - g0 + 1) * group; h++) {
                    const float *ok = own + (size_t)h * head_floats + (size_t)s * d, *ov = ok + (size_t)S * d;
                    for (int j = 0; j < d; j++) {
                        dkr[j] += ok[j];
                        dvr[j] += ov[j];
                    }
                }
            }
    }
    free(own);
}

void lf_cpu_gated_act_bwd_f32(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                              long n, int act)
{
    if (act == 0) { /* silu: vector exp; each element independent of the split */
        #pragma omp parallel if (n > 65536)
        {
            long lo, hi;
            lf_vec_share(n, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
            lf_vec_silu_mul_bwd_f32(dgate + lo, dup + lo, dout + lo, gate + lo, up + lo, hi - lo);
        }
        return;
    }
    #pragma omp parallel for if (n > 65536)
    for (long i = 0; i < n; i++) {
        float g = gate[i], y, dy;
        if (act == 0) {
            float sg = 1.0f / (1.0f + expf(-g));
            y = g * sg;
            dy = sg * (1.0f + g * (1.0f - sg));
        } else if (act == 1) {
            const float k0 = 0.7978845608028654f, k1 = 0.044715f;
            float th = tanhf(k0 * (g + k1 * g * g * g));
            y = 0.5f * g * (1.0f + th);
            dy = 0.5f * (1.0f + th) + 0.5f * g * (1.0f - th * th) * k0 * (1.0f + 3.0f * k1 * g * g);
        } else {
            y = 0.5f * g * (1.0f + erff(g * 0.7071067811865476f));
            dy = 0.5f * (1.0f + erff(g * 0.7071067811865476f)) + g * 0.3989422804014327f * expf(-0.5f * g * g);
        }
        dgate[i] = dout[i] * up[i] * dy;
        dup[i] = dout[i] * y;
    }
}

void lf_cpu_softcap_bwd_f32(float *dy, const float *y, long n, float cap)
{
    #pragma omp parallel for if (n > 65536)
    for (long i = 0; i < n; i++) {
        float u = y[i] / cap;
        dy[i] *= 1.0f - u * u;
    }
}

/* The exp of a row goes through vec.c (in place, lf_expf's accuracy) in
 * pieces of CE_PIECE, whose f32 sums add up in double: one exp per logit
 * for both the loss and the gradient. */
#define CE_PIECE 256

long lf_cpu_cross_entropy_f32(float *logits, const int32_t *targets, long n, int V, float scale, double *loss_sum)
{
    double *row_loss = malloc((size_t)(n > 0 ? n : 1) * sizeof *row_loss);
    #pragma omp parallel for if (n * V > 65536)
    for (long t = 0; t < n; t++) {
        float *row = logits + (size_t)t * V;
        int32_t y = targets[t];
        row_loss[t] = 0;
        if (y < 0 || y >= V) {
            memset(row, 0, (size_t)V * sizeof *row);
            continue;
        }
        float m8[8] = { -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY };
        int v = 0;
        for (; v + 8 <= V; v += 8)
            for (int j = 0; j < 8; j++)
                m8[j] = row[v + j] > m8[j] ? row[v + j] : m8[j];
        float mx = -INFINITY;
        for (int j = 0; j < 8; j++)
            mx = m8[j] > mx ? m8[j] : mx;
        for (; v < V; v++)
            mx = row[v] > mx ? row[v] : mx;
        float ly = row[y];
        double z = 0;
        for (int v0 = 0; v0 < V; v0 += CE_PIECE)
            z += lf_vec_exp_sum_f32(row + v0, V - v0 < CE_PIECE ? V - v0 : CE_PIECE, mx);
        row_loss[t] = log(z) + mx - ly;
        lf_vec_scale_f32(row, (float)(1.0 / z) * scale, V);
        row[y] -= scale;
    }
    long counted = 0;
    for (long t = 0; t < n; t++) {
        if (targets[t] >= 0 && targets[t] < V) {
            *loss_sum += row_loss[t];
            counted++;
        }
    }
    free(row_loss);
    return counted;
}

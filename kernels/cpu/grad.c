/* kernels/cpu/grad.c — backward ops of the CPU reference (see grad.h).
 * Products go through OpenBLAS; reductions over rows are split by column
 * so that results do not depend on the number of threads. */
#include "grad.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>

void lf_cpu_matmul_nn_f32(float *out, const float *a, const float *b, int M, int N, int K, float beta)
{
    if (M <= 0 || K <= 0)
        return;
    if (N <= 0) {
        if (beta == 0.0f)
            memset(out, 0, (size_t)M * K * sizeof *out);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, K, N, 1.0f, a, N, b, K, beta, out, K);
}

void lf_cpu_matmul_tn_acc_f32(float *out, const float *a, const float *b, int M, int N, int K, float scale)
{
    if (M <= 0 || N <= 0 || K <= 0)
        return;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, M, scale, a, N, b, K, 1.0f, out, K);
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

void lf_cpu_rmsnorm_bwd_f32(float *dx, float *dw, const float *dy, const float *x, const float *w, int T, int n,
                            float eps, float offset)
{
    float *r = malloc((size_t)(T > 0 ? T : 1) * sizeof *r);
    #pragma omp parallel for if ((long)T * n > 65536)
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * n, *g = dy + (size_t)t * n;
        float ss = 0;
        for (int i = 0; i < n; i++)
            ss += xr[i] * xr[i];
        float rr = 1.0f / sqrtf(ss / (float)n + eps);
        r[t] = rr;
        /* y = x r w': dx = r g w' - x r^3 / n * sum(g w' x) */
        double dot = 0;
        for (int i = 0; i < n; i++)
            dot += (double)g[i] * (w[i] + offset) * xr[i];
        float c = (float)(dot * rr * rr * rr / n);
        float *o = dx + (size_t)t * n;
        for (int i = 0; i < n; i++)
            o[i] += rr * g[i] * (w[i] + offset) - xr[i] * c;
    }
    if (dw) {
        #pragma omp parallel for if ((long)T * n > 65536)
        for (int i0 = 0; i0 < n; i0 += 64) {
            int i1 = i0 + 64 < n ? i0 + 64 : n;
            for (int t = 0; t < T; t++)
                for (int i = i0; i < i1; i++)
                    dw[i] += dy[(size_t)t * n + i] * x[(size_t)t * n + i] * r[t];
        }
    }
    free(r);
}

void lf_cpu_rope_bwd_f32(float *dx, const int32_t *pos, int T, int heads, int d, int row_stride, int rotary_dim,
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
        /* the forward is y1 = x1 c - x2 s, y2 = x2 c + x1 s: its transpose */
        for (int h = 0; h < heads; h++) {
            float *v = dx + (size_t)t * row_stride + (size_t)h * d;
            for (int i = 0; i < half; i++) {
                float g1 = v[i], g2 = v[i + half];
                v[i] = g1 * c[i] + g2 * s[i];
                v[i + half] = g2 * c[i] - g1 * s[i];
            }
        }
    }
}

/* One head's probabilities P [T, S] (zero outside the causal window) and,
 * with soft-capping, the cap's derivative F = 1 - (s/cap)^2. */
static void attention_probs(float *P, float *F, const float *q, const float *k, int qs, int ks, int T, int S, int q0,
                            const struct lf_attn *a)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, S, a->d, a->scale, q, qs, k, ks, 0.0f, P, S);
    #pragma omp parallel for if ((long)T * S > 65536)
    for (int t = 0; t < T; t++) {
        float *row = P + (size_t)t * S;
        int p = q0 + t;
        int lo = a->window > 0 && p - a->window + 1 > 0 ? p - a->window + 1 : 0;
        float mx = -INFINITY;
        for (int s = lo; s <= p; s++) {
            if (a->softcap > 0) {
                row[s] = a->softcap * tanhf(row[s] / a->softcap);
                float u = row[s] / a->softcap;
                F[(size_t)t * S + s] = 1.0f - u * u;
            }
            mx = row[s] > mx ? row[s] : mx;
        }
        float sum = 0;
        for (int s = 0; s < S; s++) {
            if (s < lo || s > p) {
                row[s] = 0;
                continue;
            }
            row[s] = expf(row[s] - mx);
            sum += row[s];
        }
        for (int s = lo; s <= p; s++)
            row[s] /= sum;
    }
}

void lf_cpu_attention_bwd_f32(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                              const float *v, const float *out, int T, int S, int q0, const struct lf_attn *a,
                              float *scratch)
{
    int group = a->heads / a->kv_heads, d = a->d;
    int qs = a->heads * d, ks = a->kv_heads * d;
    float *P = scratch, *F = scratch + (size_t)T * S, *dP = scratch + 2 * (size_t)T * S;
    for (int h = 0; h < a->heads; h++) {
        int kh = h / group;
        const float *qh = q + (size_t)h * d, *kk = k + (size_t)kh * d, *vv = v + (size_t)kh * d;
        const float *doh = dout + (size_t)h * d, *oh = out + (size_t)h * d;
        attention_probs(P, F, qh, kk, qs, ks, T, S, q0, a);
        /* dV += P^T dO;  dP = dO V^T */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, S, d, T, 1.0f, P, S, doh, qs, 1.0f,
                    dv + (size_t)kh * d, ks);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, S, d, 1.0f, doh, qs, vv, ks, 0.0f, dP, S);
        /* dS = P (dP - rowsum(dO o O)), through the cap */
        #pragma omp parallel for if ((long)T * S > 65536)
        for (int t = 0; t < T; t++) {
            float D = 0;
            for (int j = 0; j < d; j++)
                D += doh[(size_t)t * qs + j] * oh[(size_t)t * qs + j];
            float *pr = P + (size_t)t * S, *gr = dP + (size_t)t * S;
            for (int s = 0; s < S; s++) {
                float g = pr[s] * (gr[s] - D);
                if (a->softcap > 0 && pr[s] != 0)
                    g *= F[(size_t)t * S + s];
                gr[s] = g;
            }
        }
        /* dQ = scale dS K;  dK += scale dS^T Q */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, d, S, a->scale, dP, S, kk, ks, 0.0f,
                    dq + (size_t)h * d, qs);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, S, d, T, a->scale, dP, S, qh, qs, 1.0f,
                    dk + (size_t)kh * d, ks);
    }
}

void lf_cpu_gated_act_bwd_f32(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                              long n, int act)
{
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
        float mx = -INFINITY;
        for (int v = 0; v < V; v++)
            mx = row[v] > mx ? row[v] : mx;
        double z = 0;
        for (int v = 0; v < V; v++)
            z += exp((double)row[v] - mx);
        row_loss[t] = log(z) + mx - row[y];
        float inv = (float)(1.0 / z);
        for (int v = 0; v < V; v++)
            row[v] = expf(row[v] - mx) * inv * scale;
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

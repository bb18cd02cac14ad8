/* kernels/cpu/ops.c — CPU reference ops (see ops.h).  Loops over rows run
 * in parallel with OpenMP where the work is large; the attention's two
 * products per head go through OpenBLAS. */
#include "ops.h"

#include <math.h>
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

void lf_cpu_attention_f32(float *out, const float *q, const float *k, const float *v, int T, int S, int q0,
                          const struct lf_attn *a, float *scratch)
{
    int group = a->heads / a->kv_heads;
    int qs = a->heads * a->d, ks = a->kv_heads * a->d;
    for (int h = 0; h < a->heads; h++) {
        int kh = h / group;
        /* scores[T, S] = q_h [T, d] . k_h [S, d]^T * scale */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, S, a->d, a->scale, q + (long)h * a->d, qs,
                    k + (long)kh * a->d, ks, 0.0f, scratch, S);
        #pragma omp parallel for if ((long)T * S > 65536)
        for (int t = 0; t < T; t++) {
            float *row = scratch + (long)t * S;
            int p = q0 + t;
            int lo = a->window > 0 && p - a->window + 1 > 0 ? p - a->window + 1 : 0;
            float mx = -INFINITY;
            for (int s = lo; s <= p; s++) {
                if (a->softcap > 0)
                    row[s] = a->softcap * tanhf(row[s] / a->softcap);
                if (row[s] > mx)
                    mx = row[s];
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
        /* out_h [T, d] = probs [T, S] . v_h [S, d] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, a->d, S, 1.0f, scratch, S, v + (long)kh * a->d,
                    ks, 0.0f, out + (long)h * a->d, qs);
    }
}

void lf_cpu_gated_act_f32(float *out, const float *gate, const float *up, long n, int act)
{
    #pragma omp parallel for if (n > 65536)
    for (long i = 0; i < n; i++) {
        float g = gate[i], y;
        if (act == 0)
            y = g / (1.0f + expf(-g));
        else if (act == 1)
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

/* kernels/cpu/ops.h — the CPU reference of the model's ops besides the
 * matmul: RMSNorm, rotary embeddings, attention (causal, grouped-query,
 * sliding window, soft-capping, over a KV cache), gated activations,
 * soft-capping of logits.  f32, row-major, contiguous unless a stride is
 * given.  Each op gets a CUDA twin with the same arguments (issue 7). */
#ifndef LF_KERNELS_CPU_OPS_H
#define LF_KERNELS_CPU_OPS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* out[t, :] = x[t, :] / sqrt(mean(x[t, :]^2) + eps) * (w + offset)
   for t < T, rows of n; offset 0 (llama) or 1 (gemma's zero-centred w).
   out may alias x. */
void lf_cpu_rmsnorm_f32(float *out, const float *x, const float *w, int T, int n, float eps, float offset);

/* Rotary embedding in place on x[t, h, :] (rows of stride row_stride
   floats, heads of d floats): the first rotary_dim dims are rotated by
   angle pos[t] * inv_freq[i] in halves (x1 = dims [0, D/2), x2 = [D/2, D):
   x1' = x1 cos - x2 sin, x2' = x2 cos + x1 sin), cos and sin scaled by
   attention_factor; dims past rotary_dim are left alone.  The angle is
   computed in f32 as transformers does. */
void lf_cpu_rope_f32(float *x, const int32_t *pos, int T, int heads, int d, int row_stride, int rotary_dim,
                     const float *inv_freq, float attention_factor);

/* A rope table for T tokens: row t holds cos, then sin, of the angles
   pos[t] * inv_freq[i] (i < half), each times attention_factor, computed
   as lf_cpu_rope_f32 computes them (2 * half floats a row). */
void lf_cpu_rope_table_f32(float *cs, const int32_t *pos, int T, int half, const float *inv_freq,
                           float attention_factor);
/* lf_cpu_rope_f32 (sign 1) or its backward (sign -1) from a rope table of
   the T tokens (rotary_dim / 2 frequencies): the same bits. */
void lf_cpu_rope_apply_f32(float *x, const float *cs, int T, int heads, int d, int row_stride, int rotary_dim,
                           float sign);

struct lf_attn {
    int heads, kv_heads, d;
    float scale;
    float softcap; /* 0: none; else scores -> softcap * tanh(scores / softcap) */
    int window;    /* 0: none; else a query at p sees keys p - window < s <= p */
};

/* Causal attention of T queries at positions q0 .. q0+T-1 over S keys at
   positions 0 .. S-1 (S >= q0 + T): q [T, heads*d], k and v [S, kv_heads*d]
   (a layer's activations), out [T, heads*d].  Query head h reads kv head
   h / (heads / kv_heads).  scratch holds T * S floats (the CPU kernel
   keeps its scores in rows of its own per thread and leaves it alone).
   Heads run in parallel (for under 4 queries, each query's heads in one
   group per thread); a query's products cover only the keys it sees, and
   its result does not depend on the number of threads. */
void lf_cpu_attention_f32(float *out, const float *q, const float *k, const float *v, int T, int S, int q0,
                          const struct lf_attn *a, float *scratch);

/* The same over a KV cache laid out by head: kc and vc [kv_heads,
   capacity, d], positions 0 .. q0+T-1 filled (q0 + T <= capacity).  Each
   head's keys and values are then one stretch of memory each, which is
   what decoding, bound by reading the cache, wants. */
void lf_cpu_attention_cache_f32(float *out, const float *q, const float *kc, const float *vc, int capacity, int T,
                                int q0, const struct lf_attn *a);

/* Gated activations, elementwise over n: out = act(gate) * up.
   act 0: silu, 1: gelu tanh approximation, 2: gelu (erf).  out may alias
   gate or up. */
void lf_cpu_gated_act_f32(float *out, const float *gate, const float *up, long n, int act);

/* A mixture of experts' router over T tokens: each row of E logits
   becomes its softmax (in place), choice [T, K] the K most probable experts
   (ties to the lower index), weights [T, K] their probabilities divided by
   the chosen ones' sum (mixtral's top-k renormalisation). */
void lf_cpu_router_topk_f32(float *probs, int T, int E, int K, int *choice, float *weights);

/* x = cap * tanh(x / cap), in place. */
void lf_cpu_softcap_f32(float *x, long n, float cap);

#ifdef __cplusplus
}
#endif

#endif

/* kernels/cpu/grad.h — the backward twins of the CPU ops (ops.h,
 * matmul.h) that training needs: the two products of a linear layer's
 * backward, RMSNorm, rotary embedding, attention (causal, grouped-query,
 * sliding window, soft-capping), gated activations, soft-capping, and the
 * fused softmax cross-entropy of the head.  f32, row-major, contiguous
 * unless a stride is given.  "+=" in a comment means the op accumulates
 * into that output (the caller zeroes it first).  Each gets a CUDA twin with
 * the same arguments (issue 7). */
#ifndef LF_KERNELS_CPU_GRAD_H
#define LF_KERNELS_CPU_GRAD_H

#include <stdint.h>

#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out[M,K] = beta * out + a[M,N] @ b[N,K]: a linear layer's input gradient
   (a = dy [tokens, out_features], b = the weight [out_features, in]).
   beta 0 or 1. */
void lf_cpu_matmul_nn_f32(float *out, const float *a, const float *b, int M, int N, int K, float beta);

/* out[N,K] += scale * a[M,N]^T @ b[M,K]: a weight's gradient (a = dy
   [tokens, out], b = x [tokens, in]). */
void lf_cpu_matmul_tn_acc_f32(float *out, const float *a, const float *b, int M, int N, int K, float scale);

/* db[j] += sum over the M rows of dy[m, j] (a bias's gradient). */
void lf_cpu_bias_grad_f32(float *db, const float *dy, int M, int N);

/* Backward of lf_cpu_router_topk_f32 over T tokens: from probs [T, E] (the
   softmax), choice and weights [T, K] and dweights [T, K] (the gradient of
   the choices' weights), dlogits [T, E] = the gradient of the router's
   logits through the renormalisation w_k = p_k / sum of the chosen p and
   the softmax; aux_grad [E] (or NULL) is added to every token's gradient
   of its probabilities first (mixtral's load-balancing loss). */
void lf_cpu_router_bwd_f32(float *dlogits, const float *probs, const int *choice, const float *weights,
                           const float *dweights, const double *aux_grad, int T, int E, int K);

/* Backward of lf_cpu_rmsnorm_f32 (y = x r (w + offset), r = 1/sqrt(mean
   x^2 + eps)): dx += the gradient through x; dw += sum over rows of
   dy x r (dw may be NULL: a norm that is not trained). */
void lf_cpu_rmsnorm_bwd_f32(float *dx, float *dw, const float *dy, const float *x, const float *w, int T, int n,
                            float eps, float offset);

/* Backward of lf_cpu_rope_f32, in place on the gradient (the rotation
   by minus the angle; defined in ops.c beside the forward); same
   arguments. */
void lf_cpu_rope_bwd_f32(float *dx, const int32_t *pos, int T, int heads, int d, int row_stride, int rotary_dim,
                         const float *inv_freq, float attention_factor);

/* Backward of lf_cpu_attention_f32 for T queries at positions
   q0 .. q0+T-1 over S keys (training: q0 0, S T): given q, k, v, the
   output out and its gradient dout, dq = the gradient of q, dk += and
   dv += those of k and v (query heads of a group add up).  scratch holds
   3 * T * S floats. */
void lf_cpu_attention_bwd_f32(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                              const float *v, const float *out, int T, int S, int q0, const struct lf_attn *a,
                              float *scratch);

/* Backward of lf_cpu_gated_act_f32 (out = act(gate) * up) over n:
   dgate and dup from dout; they may alias neither input. */
void lf_cpu_gated_act_bwd_f32(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                              long n, int act);

/* Backward of lf_cpu_softcap_f32 given its output y: dx = dy (1 - (y/cap)^2),
   in place on dy. */
void lf_cpu_softcap_bwd_f32(float *dy, const float *y, long n, float cap);

/* Softmax cross-entropy of n rows of V logits against targets (a target
   < 0 is ignored, as -100 in transformers): *loss_sum += the sum over the
   rows of logsumexp(row) - row[target] (accumulated in double), and the
   logits are replaced by their gradient times scale: (softmax - onehot) *
   scale, zero for ignored rows.  Returns the number of rows counted. */
long lf_cpu_cross_entropy_f32(float *logits, const int32_t *targets, long n, int V, float scale, double *loss_sum);

#ifdef __cplusplus
}
#endif

#endif

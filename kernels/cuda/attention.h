/* kernels/cuda/attention.h — the CUDA twins of the CPU reference's
 * attention, forward (kernels/cpu/ops.h lf_cpu_attention_f32) and backward
 * (kernels/cpu/grad.h lf_cpu_attention_bwd_f32), in the FlashAttention-2
 * manner: tiled over queries and keys, online softmax in f32, no T x S
 * matrix in memory; the backward recomputes the probabilities from the
 * per-row log-sum-exp the forward saves.
 *
 * The arguments are the CPU ops', in the same order and with the same
 * meaning, every pointer device memory (struct lf_attn stays on the host),
 * plus lse and a trailing stream: the work is queued on the stream and
 * nothing is synchronised.  Launch errors and bad arguments exit(1) with a
 * message (cuda_check.h); faults inside a kernel surface at the caller's
 * next checked call.
 *
 * Semantics (the CPU ops'):
 *   q, out, dq, dout  [T, heads * d], query t at position q0 + t
 *   k, v, dk, dv      [S, kv_heads * d], key s at position s (the cache)
 *   query head h reads kv head h / (heads / kv_heads) (grouped-query)
 *   score = scale * (q . k); with softcap > 0 then softcap * tanh(score /
 *   softcap) (gemma2); softmax over the keys the query at p sees:
 *   max(0, p - window + 1) <= s <= p (window 0: no lower bound), s < S.
 *   Callers give S >= q0 + T, as the CPU forward requires (it reads keys
 *   up to q0 + T - 1 whatever S is; these kernels stop at S - 1, as the CPU
 *   backward does, and a row left with no key gets out 0, lse -inf, dq 0);
 *   keys past q0 + T - 1 are never read.  Neat packing is the caller's, as in the CPU path
 *   (libcommon/backprop.c): one call per span, every array (q, k, v, out,
 *   lse and the gradients) offset to the span's first token, T = S = the
 *   span's length, q0 = 0; attention then stays inside each span.
 *
 * f32 only in this slice, CUDA cores (no tensor cores, no bf16 form yet);
 * head dims 1 .. 256 (kernels for 64, 96, 128, 256, smaller dims padded
 * with zeros up to the next one).  Every kernel is deterministic (no
 * atomics): the same inputs give the same bits on every run. */
#ifndef LF_KERNELS_CUDA_ATTENTION_H
#define LF_KERNELS_CUDA_ATTENTION_H

#include <cuda_runtime.h>

#include "cpu/ops.h" /* struct lf_attn */

#ifdef __cplusplus
extern "C" {
#endif

/* The largest head dim the kernels take. */
#define LF_CUDA_ATTENTION_MAX_D 256

/* Exits with a message naming who when the kernels (this file's and
   attention_tc's) cannot take a's shape: head dim 1..LF_CUDA_ATTENTION_MAX_D,
   heads a multiple of kv_heads. */
void lf_cuda_attention_check(const struct lf_attn *a, const char *who);

/* out = the attention of q over k, v (overwritten; rows as above).
   scratch: unused (the CPU op's T * S floats are not needed; may be NULL).
   lse: NULL, or [T, heads] floats (token-major, as q: lse[t * heads + h])
   that receive each row's log-sum-exp of its (scaled, capped) scores, the
   backward's input; a span's lse is then lse + first_token * heads.
   Grid: one block of 256 threads per (64-query tile, head). */
void lf_cuda_attention_f32(float *out, const float *q, const float *k, const float *v, int T, int S, int q0,
                           const struct lf_attn *a, float *scratch, float *lse, cudaStream_t stream);

/* Backward: dq = the gradient of q (overwritten), dk += and dv += those
   of k and v (the query heads of a group add up; keys that no query sees
   are left as they are).  out is the forward's output; lse its lse
   ([T, heads]) from the same q, k, or NULL: then the backward recomputes
   it first (one more pass over the keys).  scratch: unused (may be NULL);
   the launcher takes T * heads floats of stream-ordered scratch
   (cudaMallocAsync; twice that when lse is NULL) for rowsum(dout o out)
   and frees it on the stream.  Two kernels: dq one block per (query tile,
   head); dk/dv one block per (key tile, kv head) looping over the group's
   heads and the query tiles that see its keys. */
void lf_cuda_attention_bwd_f32(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                               const float *v, const float *out, int T, int S, int q0, const struct lf_attn *a,
                               float *scratch, const float *lse, cudaStream_t stream);

/* ---- tensor cores (attention_tc.cu) ---------------------------------------------

   The same two operations on tensor cores, for the bf16 mode of the GPU
   training path: the arguments, semantics, lse layout, launch shape (one
   256-thread block per (64-query tile, head) forward and for dq, per
   (64-key tile, kv head) for dk/dv), stream-ordered scratch and
   determinism (no atomics: the same bits on every run) of
   lf_cuda_attention_f32 / lf_cuda_attention_bwd_f32 above, but every tile
   product (Q K^T, P V; dO V^T, dS K, P^T dO, dS^T Q) takes its inputs
   rounded to bf16 (nearest even) and accumulates in f32 (WMMA 16x16x16
   bf16 fragments; sm_80 and later).  Masks, scaling, soft-capping, the
   softmax statistics, lse, rowsum(dO o O) and all accumulators stay f32,
   so results differ from the f32 kernels by the bf16 rounding of the
   products' inputs: ~5e-3 of the largest output or gradient, a few 1e-2
   with large logits (scores of 20 .. 30).  Head dims 1 ..
   LF_CUDA_ATTENTION_TC_MAX_D run on tensor cores (padded with zeros to 32,
   64, 96 or 128); larger ones (up to LF_CUDA_ATTENTION_MAX_D) fall back to
   the f32 kernels above, with their accuracy. */

/* The largest head dim the tensor-core kernels take themselves. */
#define LF_CUDA_ATTENTION_TC_MAX_D 128

void lf_cuda_attention_tc_f32(float *out, const float *q, const float *k, const float *v, int T, int S, int q0,
                              const struct lf_attn *a, float *scratch, float *lse, cudaStream_t stream);

void lf_cuda_attention_tc_bwd_f32(float *dq, float *dk, float *dv, const float *dout, const float *q,
                                  const float *k, const float *v, const float *out, int T, int S, int q0,
                                  const struct lf_attn *a, float *scratch, const float *lse, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif

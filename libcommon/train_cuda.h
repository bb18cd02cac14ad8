/*
 * train_cuda.h — the model on an NVIDIA GPU: backprop.h's training pass
 * (the forward over a micro-batch keeping what the backward needs, every
 * layer's input, the layer's inner activations recomputed per layer under
 * gradient checkpointing; the causal LM loss over the label tokens; the
 * backward adding every trained tensor's gradient), the optimizer step
 * (clipping by the global norm, AdamW), model.h's inference with KV caches,
 * and data-parallel sums over NCCL.  The model's tensors, their gradients
 * and AdamW's moments live in one device arena made at the start, the
 * activations in a second sized for the calls' tokens.
 *
 * The same ops in the same order as backprop.c, each a kernels/cuda twin
 * of the kernels/cpu op the CPU path calls, in one of two modes:
 *   f32:  every tensor, activation and product f32 (no TF32,
 *         kernels/cuda/gemm.h), so results match the CPU path to rounding;
 *   bf16: the linear layers' and the head's products (not mixtral's
 *         router) on the tensor cores with bf16 weights and inputs (f32
 *         accumulation and outputs), attention's tile products too
 *         (kernels/cuda/attention_tc.cu); trained tensors keep f32 master
 *         copies (AdamW updates them, then their bf16 copies), frozen ones
 *         are held in bf16 only; activations, norms, softmax, the loss,
 *         adapters' products and the optimizer stay f32.
 * Mixtral's experts: the router's softmax and top-k and the grouping of
 * the (token, choice) pairs by expert run on the host between the device's
 * products (a copy of [tokens, experts] floats each way per layer).
 * Not built yet on the GPU (an error names it): DoRA.
 *
 * Built only where nvcc is found (LF_HAVE_CUDA); CUDA runtime failures
 * exit with the failing call named (kernels/cuda/cuda_check.h).
 */
#ifndef LF_TRAIN_CUDA_H
#define LF_TRAIN_CUDA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backprop.h"
#include "model.h"
#include "optim.h"

#ifdef __cplusplus
extern "C" {
#endif

struct lf_cuda_train;

/* Whether GPU number device (modulo their number) can be used: 0, or -1
 * with lf_fail (no driver, no GPU).  A cheap check before any work. */
int lf_cuda_train_probe(int device);

/* Copy every tensor of m to GPU number device (modulo the number of GPUs:
 * a process's local rank picks its own) and size the arenas for
 * micro-batches of up to max_tokens tokens, spans of up to max_span.
 * Gradients: the trained tensors', tensor i's at grad_at[i] of the
 * caller's host block (SIZE_MAX: frozen; the device places them its own
 * way); AdamW's two moments (zero) for the trained tensors
 * this process updates: owned[i] non-zero (ZeRO stage 1), every one when
 * owned is NULL.  bf16: the bf16 mode.  NULL with lf_fail (no GPU, a
 * method the GPU path lacks, not enough device memory). */
struct lf_cuda_train *lf_cuda_train_open(const struct lf_model *m, int device, const size_t *grad_at,
					 const unsigned char *owned, int max_tokens, int max_span,
					 bool checkpointing, bool bf16);
void lf_cuda_train_close(struct lf_cuda_train *t);
/* Room for calls of up to max_tokens tokens, spans of max_span: the
 * activations' arena made again, larger, when it is smaller (the weights
 * stay).  -1 with lf_fail when the GPU lacks the room. */
int lf_cuda_train_reserve(struct lf_cuda_train *t, int max_tokens, int max_span);
/* bytes of device memory the two arenas hold; the device's name */
size_t lf_cuda_train_arena_bytes(const struct lf_cuda_train *t);
const char *lf_cuda_train_device(const struct lf_cuda_train *t);

/* The training noise of the next micro-batch, as struct lf_backprop's
 * fields of the same names. */
void lf_cuda_train_set_noise(struct lf_cuda_train *t, float lora_dropout, float neftune_mag, uint64_t noise_seed);

/* How many times the adapters of several modules (q, k and v; gate and
 * up; an expert's w1 and w3) have gone forward or backward with one
 * product x A^T (one each of x A^T, t^T x and t A in the backward) instead
 * of one per module, since lf_cuda_train_open. */
long lf_cuda_train_lora_shared(const struct lf_cuda_train *t);

/* Mixtral's router load-balancing loss (moe_aux_loss_coef): its
 * coefficient (0: none), and the sum of coef x the loss over the
 * micro-batches since it was set (backprop.h's moe_aux_coef and
 * moe_aux_total). */
void lf_cuda_train_set_moe_aux(struct lf_cuda_train *t, float coef);
double lf_cuda_train_moe_aux(const struct lf_cuda_train *t);

/* lf_backprop_step and lf_backprop_loss on the GPU (same arguments and
 * results; the rows are host memory). */
int lf_cuda_train_step(struct lf_cuda_train *t, const struct lf_train_row *rows, int nrows, float scale,
		       double *loss_sum);
int lf_cuda_train_loss(struct lf_cuda_train *t, const struct lf_train_row *rows, int nrows, double *loss_sum,
		       long *targets);
/* The logits of every position of one row ([row->T, vocab] floats, host),
 * the forward of lf_cuda_train_loss: for checks against other
 * implementations. */
int lf_cuda_train_logits(struct lf_cuda_train *t, const struct lf_train_row *row, float *logits);

/* ---- inference with caches: lf_model_forward_batch on the GPU ---- */

/* lf_cuda_train_open for inference: nothing trained, room for calls of
 * max_tokens tokens (lf_cuda_train_reserve makes more). */
struct lf_cuda_train *lf_cuda_model_open(const struct lf_model *m, int device, int max_tokens, bool bf16);

/* A sequence's keys and values on the GPU, for every layer: capacity
 * positions, len used (struct lf_kv_cache's twin; device memory of its
 * own, outside the arena; laid out by position, as the GPU attention
 * kernels read keys, where the CPU's is laid out by head). */
struct lf_cuda_kv {
	int capacity, len;
	float *k, *v; /* [layers][capacity][kv_heads * head_dim] */
};
int lf_cuda_kv_init(struct lf_cuda_train *t, struct lf_cuda_kv *kv, int capacity);
/* Room for capacity positions, keeping what the cache holds. */
int lf_cuda_kv_reserve(struct lf_cuda_train *t, struct lf_cuda_kv *kv, int capacity);
void lf_cuda_kv_free(struct lf_cuda_kv *kv);

/* Several sequences at once, as lf_model_forward_batch: each runs ids[0..T)
 * (host) as its cache's entries len .. len+T-1 (positions: RoPE's, or NULL
 * for the cache's), appending their keys and values; logits (host)
 * [sum T, V], or [nseq, V] (each sequence's last token) when last_only.
 * The call's tokens must fit the arena's max_tokens.  -1 with lf_fail. */
struct lf_cuda_seq_in {
	struct lf_cuda_kv *kv;
	const int32_t *ids, *positions;
	int T;
};
int lf_cuda_forward_batch(struct lf_cuda_train *t, const struct lf_cuda_seq_in *seqs, int nseq, bool last_only,
			  float *logits);

/* The gradient block: zero it, or copy it to or from host memory (the
 * caller's layout: grad_at of lf_cuda_train_open; the gaps untouched),
 * e.g. to sum it over processes. */
void lf_cuda_train_zero_grads(struct lf_cuda_train *t);
void lf_cuda_train_get_grads(struct lf_cuda_train *t, float *host);
void lf_cuda_train_set_grads(struct lf_cuda_train *t, const float *host);

/* ---- data parallel: NCCL ----
 * Processes that train together (one GPU each) join one group: rank 0
 * makes its id, every process gets it (through MPI, say) and joins.  Then
 * the last micro-batch of each step (lf_cuda_train_set_sync) sums the
 * group's gradients while its backward runs: each layer's once the
 * backward has made them, on a stream of their own, the rest after.  A
 * process with no rows for that micro-batch, where the others have some,
 * cannot take part in the per-layer sums: then every process skips them
 * (set_sync false) and calls lf_cuda_train_sum_grads after its
 * micro-batches.  NCCL (libnccl.so.2) is loaded when first needed.  -1
 * with lf_fail (no NCCL, a failed join). */
#define LF_CUDA_GROUP_ID_BYTES 128
int lf_cuda_group_id(unsigned char id[LF_CUDA_GROUP_ID_BYTES]);
int lf_cuda_train_join(struct lf_cuda_train *t, const unsigned char *id, int rank, int world);
void lf_cuda_train_set_sync(struct lf_cuda_train *t, bool last);
void lf_cuda_train_sum_grads(struct lf_cuda_train *t);

/* One optimizer step over the trained tensors listed: the global norm of
 * their gradients (*grad_norm), clipping to max_norm (<= 0: none) and
 * AdamW with each tensor's lr and decay (lf_clip_coef, lf_grad_scale and
 * lf_adamw_step's arithmetic).  step is 1-based. */
struct lf_cuda_update {
	size_t tensor; /* index in the model's tensor table */
	double lr;
	int decay;
};
void lf_cuda_train_update(struct lf_cuda_train *t, const struct lf_cuda_update *u, size_t n, long step,
			  const struct lf_adamw *h, double max_norm, double *grad_norm);
/* The same in two halves, for ZeRO stage 1, where each process updates
 * its own tensors but the norm is everyone's: the listed tensors'
 * squared gradient norms (sq[k], host), then, with the coefficient the
 * caller computes from the group's norms (lf_clip_coef), the scaling and
 * AdamW of the listed tensors (this process's own). */
void lf_cuda_train_norm_sq(struct lf_cuda_train *t, const struct lf_cuda_update *u, size_t n, double *sq);
void lf_cuda_train_adamw(struct lf_cuda_train *t, const struct lf_cuda_update *u, size_t n, long step,
			 const struct lf_adamw *h, float coef);

/* A trained tensor of the model (index i), or its moments (this
 * process's tensors), to or from host memory (m->tensors[i].n floats
 * each). */
void lf_cuda_train_get_tensor(struct lf_cuda_train *t, size_t i, float *host);
void lf_cuda_train_set_tensor(struct lf_cuda_train *t, size_t i, const float *host);
void lf_cuda_train_get_moments(struct lf_cuda_train *t, size_t i, float *m, float *v);
void lf_cuda_train_set_moments(struct lf_cuda_train *t, size_t i, const float *m, const float *v);

#ifdef __cplusplus
}
#endif

#endif

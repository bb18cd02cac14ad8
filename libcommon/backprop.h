/*
 * backprop.h — the training pass of a model: forward over a micro-batch of
 * token rows keeping what the backward needs (every layer's input, and the
 * layer's inner activations, recomputed per layer under gradient
 * checkpointing), the causal LM loss over the label tokens, and the
 * backward pass adding every trained tensor's gradient.  Plain structs over
 * preallocated buffers, as the inference forward in model.c; every op is a
 * kernels/cpu op (ops.h, grad.h) that gets a CUDA twin.
 */
#ifndef LF_BACKPROP_H
#define LF_BACKPROP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Where the gradient of each weight of the model goes (NULL: not trained),
 * mirroring struct lf_layer. */
struct lf_lora_grad {
	float *A, *B, *mag;
};

struct lf_layer_grad {
	float *q, *k, *v, *o, *q_b, *k_b, *v_b, *o_b;
	float *gate, *up, *down, *gate_b, *up_b, *down_b;
	float *in_norm, *post_attn_norm, *pre_ff_norm, *post_ff_norm, *q_norm, *k_norm;
	struct lf_lora_grad lq, lk, lv, lo, lgate, lup, ldown;
	float *router, **w1, **w2, **w3; /* mixtral: the router, per expert */
	struct lf_lora_grad lrouter, *lw1, *lw2, *lw3;
};

struct lf_model_grad {
	float *embed, *norm, *lm_head;
	struct lf_layer_grad *layers;
	int lowest; /* the lowest layer with a trained tensor (layers when none):
		     * without a trained embedding, the backward stops there */
};

/* Point g at the gradient buffers: grads[i] holds the gradient of
 * m->tensors[i] (same size), or is NULL for a frozen tensor.  A weight that
 * is part of a tensor (phi3's fused projections, a tied head) gets the
 * matching part of that tensor's gradient. */
void lf_model_grad_init(struct lf_model_grad *g, const struct lf_model *m, float *const *grads);
void lf_model_grad_free(struct lf_model_grad *g, const struct lf_model *m);

/* One row of a micro-batch: T token ids, their labels (-100 ignored;
 * unshifted: position t predicts labels[t + 1], as transformers), RoPE
 * positions (NULL: 0 .. T-1) and the spans attention stays within (NULL: the
 * whole row; neat packing gives one span per packed example). */
struct lf_train_row {
	const int32_t *ids, *labels, *positions;
	const uint32_t *spans;
	int T, nspans;
};

/* The inner activations of one layer.  A mixture of experts keeps its
 * (token, choice) pairs grouped by expert: pair_row[i] is the token of pair
 * i, expert e's pairs are pairs [expert_start[e], expert_start[e + 1]);
 * gate, up, h and (per pair) the expert's output eo are in that order. */
struct lf_layer_acts {
	float *xn1, *q, *k, *v, *q_raw, *k_raw, *att, *ao, *xmid, *xn2, *gate, *up, *h, *mo;
	float *probs, *weights, *xe, *eo; /* [N, E], [N, K] (by token and choice), [N K, H], [N K, H] */
	int *choice, *pair_row, *pair_of, *expert_start; /* [N, K], [N K], [N, K] -> pair, [E + 1] */
};

struct lf_backprop {
	int max_tokens, max_span;
	bool checkpointing;
	float *xs;                  /* [layers + 1][max_tokens][hidden]: every layer's input, the last output */
	struct lf_layer_acts *acts; /* one set (checkpointing) or one per layer */
	float *dx, *dh1, *dh2, *dq, *dk, *dv, *dqk_raw, *datt, *dmid, *dgate, *dup, *lora_u, *lora_t, *scores;
	float *xg, *xf, *dxf, *logits, *capped;
	int32_t *pos, *targets, *rows, *head_targets;
	int *span_start, *span_len, nspans;
	float *inv_freq; /* a row's RoPE frequencies */
	float *rope;     /* the micro-batch's rope table (lf_cpu_rope_table_f32) */
	int head_rows; /* rows of logits computed at once */
	/* mixtral's router load-balancing loss (moe_aux_loss_coef): its
	 * coefficient, and the sum of coef * aux over the micro-batches run
	 * since the caller last zeroed it */
	float moe_aux_coef;
	double moe_aux_total;
	double *expert_load; /* [K * E]: share of the tokens whose choice k is expert e, over all layers */
	float *dprobs, *dweights, *dxe, *deo; /* MoE backward scratch */
	float *dora_ba, *dora_wn, *dora_z, *dora_dz; /* DoRA scratch */
	/* training-time noise, set by the caller before each micro-batch:
	 * LoRA dropout (the probability; each module's mask a hash of seed,
	 * module and element, lf_lora_dropout_key, so a recomputed layer
	 * gets the same one) and
	 * NEFTune (uniform noise of +- neftune_mag on the embeddings) */
	float lora_dropout, neftune_mag;
	uint64_t noise_seed;
	bool training;       /* set by lf_backprop_step, cleared by lf_backprop_loss */
	bool pack_merged_bwd; /* lf_backprop_step's: the layer's backward pass follows its forward */
	const struct lf_model *model;
	float *xdrop, *tdrop; /* dropout scratch */
	float *wmerge, *bscaled; /* a LoRA layer's W + s B A, and s B */
	struct lf_packed_weight *frozen, *merged; /* lf_backprop_pack_frozen's */
	int nfrozen, nmerged;
};

/* Buffers for micro-batches of up to max_tokens tokens in all, spans of
 * up to max_span tokens.  checkpointing: keep only each layer's input and
 * recompute the layer in the backward pass (LLaMA-Factory's default). */
int lf_backprop_init(struct lf_backprop *bp, const struct lf_model *m, int max_tokens, int max_span,
		     bool checkpointing);
void lf_backprop_free(struct lf_backprop *bp, const struct lf_model *m);

/* Pack the frozen weights that the products read as they are (no adapter,
 * no gradient in g: a LoRA run's unadapted layers, the head) into the
 * product's panels once, in both forms (x W^T and dy W), instead of in
 * every product of every step; largest first, while the packed forms take
 * at most budget bytes in all.  The weights must not change while bp
 * lives.  Then, within what is left, room for the LoRA layers whose
 * forward merges W + s B A (no DoRA, no dropout): their forward packs the
 * merge in both forms, and their backward's dy (W + s B A) reads it
 * instead of merging again.  Results have the same bits either way.
 * Returns the bytes taken (0 where lf's own product does not run: an
 * older CPU). */
size_t lf_backprop_pack_frozen(struct lf_backprop *bp, const struct lf_model *m, const struct lf_model_grad *g,
			       size_t budget);

/* Forward, loss and backward of one micro-batch: adds scale * the gradient
 * of the summed cross-entropy over its label tokens to g's buffers and that
 * sum to *loss_sum (the caller counts the step's label tokens with
 * lf_train_row_label_tokens for scale).  -1 with lf_fail (too many tokens,
 * an id or label outside the vocabulary). */
int lf_backprop_step(struct lf_backprop *bp, const struct lf_model *m, const struct lf_model_grad *g,
		     const struct lf_train_row *rows, int nrows, float scale, double *loss_sum);

/* Forward and loss only (evaluation): adds the summed cross-entropy over
 * the predicted label tokens (labels[t + 1] >= 0) to *loss_sum and their
 * number to *targets.  -1 with lf_fail. */
int lf_backprop_loss(struct lf_backprop *bp, const struct lf_model *m, const struct lf_train_row *rows, int nrows,
		     double *loss_sum, long *targets);

/* Whether a micro-batch's rows fit buffers of max_tokens tokens, spans of
 * max_span, with ids in the vocabulary and labels ids or -100: 0 with *N
 * its tokens, or -1 with lf_fail naming the row. */
int lf_train_rows_check(const struct lf_model *m, const struct lf_train_row *rows, int nrows, int max_tokens,
			int max_span, int *N);

/* The label tokens of a row as transformers counts num_items_in_batch:
 * labels != -100 at every position, the first included (unshifted). */
long lf_train_row_label_tokens(const struct lf_train_row *r);

/* LoRA dropout's key for one module and micro-batch: mix(noise_seed ^
 * mix(FNV-1a-64(a_name) + 0x9e3779b97f4a7c15)), mix being splitmix64's
 * finaliser and a_name the name of the module's A in the adapter file.
 * Element i of the module's input [N, in] (the micro-batch's tokens in row
 * order) is kept, and scaled by 1 / (1 - p), when
 * (mix(key + i) >> 11) * 2^-53 >= p.  lf-train's noise_seed for
 * micro-batch k of optimizer step s (from 0) on process rank is
 * seed << 40 ^ rank << 28 ^ s << 8 ^ k. */
uint64_t lf_lora_dropout_key(uint64_t noise_seed, const char *a_name);

#ifdef __cplusplus
}
#endif

#endif

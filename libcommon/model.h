/*
 * model.h — a decoder-only transformer as plain structs and an explicit
 * forward pass over preallocated buffers (llm.c's shape): the weights of a
 * Hugging Face model folder (f32 tensors mapped in place, bf16 and f16
 * converted once at load), a KV cache per sequence, and logits for every
 * position or the last one only.  Every op goes through kernels/cpu, whose
 * CUDA twins come with the CUDA backend.
 */
#ifndef LF_MODEL_H
#define LF_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model_config.h"
#include "safetensors.h"

/* A LoRA adapter on one linear layer: y += scale * B (A x), A [r, in],
 * B [out, r] (for a fused projection, the rows of B that are this part's). */
struct lf_lora {
	const float *A, *B;
	int r;
	float scale;
	/* DoRA (NULL: plain LoRA): the magnitude of each output row; the
	 * layer computes m / ||W + scale B A||_row * (W x + scale B A x) + b,
	 * the norm taken as a constant in the backward pass (PEFT's detach) */
	const float *mag;
	const float *dora_scale; /* m / ||W + scale B A|| per row, as loaded (inference) */
};

struct lf_layer {
	const float *q, *k, *v, *o;         /* [nh*d, H], [nkv*d, H], [nkv*d, H], [H, nh*d] */
	const float *q_b, *k_b, *v_b, *o_b; /* or NULL */
	const float *gate, *up, *down;      /* [I, H], [I, H], [H, I] (dense MLP) */
	const float *gate_b, *up_b, *down_b;
	const float *in_norm, *post_attn_norm, *pre_ff_norm, *post_ff_norm; /* [H] */
	const float *q_norm, *k_norm;       /* [d] */
	const float *router;                /* [E, H] */
	const float **w1, **w2, **w3;       /* per expert: [I, H], [H, I], [I, H] */
	/* adapters (r 0: none) */
	struct lf_lora lq, lk, lv, lo, lgate, lup, ldown;
	struct lf_lora lrouter;          /* mixtral's router (block_sparse_moe.gate) */
	struct lf_lora *lw1, *lw2, *lw3; /* per expert */
};

/* A tensor of the model file as the model uses it (f32). */
struct lf_model_tensor {
	char *name;
	const float *data;
	size_t n;
	int ndim;
	int64_t shape[2];
};

struct lf_model {
	struct lf_model_config cfg;
	struct lf_model_tensor *tensors; /* every tensor loaded, in load order */
	size_t ntensors;
	bool writable; /* every tensor is an owned copy (lf_model_load_writable) */
	struct lf_safetensors *st;
	const float *embed;  /* [V, H] */
	const float *norm;   /* [H] */
	const float *lm_head; /* [V, H] (the embedding when tied) */
	struct lf_layer *layers;
	float **owned; /* converted tensors, freed with the model */
	size_t nowned;
	struct lf_safetensors *adapter; /* the LoRA adapter's tensors, or NULL */
	uint64_t random_seed; /* lf_model_new_random's weights (st NULL) */
	float random_std;
	int max_rank;
};

/* Load config.json and the weights of a model folder.  NULL with lf_fail
 * naming the file and tensor. */
struct lf_model *lf_model_load(const char *dir);
/* The same with every tensor copied into memory lf owns (f32), so that
 * training may change it: tensors[i].data may then be cast to float *. */
struct lf_model *lf_model_load_writable(const char *dir);
/* A model of the architecture and size of dir/config.json (no weight
 * files read) with random weights made in memory: matrices uniform with
 * standard deviation std from a hash of seed, norms 1 (0 where they scale
 * by 1 + w), biases 0.  For benchmarks of big models, where writing and
 * reading a folder would cost more than the run. */
struct lf_model *lf_model_new_random(const char *dir, uint64_t seed, float std);
void lf_model_free(struct lf_model *m);
/* Apply a PEFT LoRA adapter folder (adapter_config.json,
 * adapter_model.safetensors) without merging it: every lora_A/lora_B pair
 * is attached to its linear layer with scale lora_alpha / r (rsLoRA:
 * / sqrt(r); rank_pattern and alpha_pattern honoured), with its DoRA
 * magnitude vector where use_dora is set, and modules_to_save copies of
 * the embeddings, final norm or head.  What lf does not run (other
 * modules_to_save, LoRA biases, embedding LoRA, fan_in_fan_out) is an error
 * naming it.  -1 with lf_fail. */
int lf_model_load_adapter(struct lf_model *m, const char *dir);
/* A new LoRA pair on layer's linear module part (a Hugging Face module
 * path below the layer, such as "self_attn.q_proj" or "mlp.gate_up_proj"),
 * A [r, in] and B [out, r] owned by the model, zero, named as PEFT saves
 * them (base_model.model.model.layers.N.PART.lora_A.weight) in the tensor
 * table; y gains scale * B (A x).  dora: also the magnitude vector
 * (....PART.lora_magnitude_vector [out]), set to the base weight's row norms
 * as PEFT initialises it.  -1 with lf_fail for a module lf has no
 * LoRA for. */
int lf_model_new_lora(struct lf_model *m, int layer, const char *part, int r, float scale, bool dora);
/* DoRA's norms: norms[j] = ||W_j + scale (B A)_j|| for the out rows of w
 * [out, in], A [r, in], B [out, r]. */
void lf_lora_row_norms(float *norms, const float *w, const float *A, const float *B, int r, float scale, int out,
		       int in);

/* RoPE's inverse frequencies (rotary_dim / 2 of them) for a sequence
 * whose largest position is seq_len - 1 (dynamic and longrope depend on
 * it); returns the attention factor that scales cos and sin. */
float lf_model_rope_frequencies(const struct lf_model *m, int seq_len, float *inv_freq);

/* PEFT's modules_to_save (LLaMA-Factory's additional_target): a trained copy
 * of module (embed_tokens, norm or an untied lm_head) owned by the model and
 * used instead of the base's, named as PEFT saves it
 * (base_model.model.model.embed_tokens.weight).  lf_model_load_adapter
 * takes such tensors from an adapter file too.  -1 with lf_fail. */
int lf_model_new_module_copy(struct lf_model *m, const char *module);

/* Keys and values of one sequence, for every layer: capacity positions. */
struct lf_kv_cache {
	int capacity, len;
	float *k, *v; /* [layers][kv_heads][capacity][head_dim] */
};

int lf_kv_cache_init(struct lf_kv_cache *kv, const struct lf_model *m, int capacity);
/* Room for capacity positions, keeping what the cache holds. */
int lf_kv_cache_reserve(struct lf_kv_cache *kv, const struct lf_model *m, int capacity);
void lf_kv_cache_free(struct lf_kv_cache *kv);

/* Activations for up to max_tokens tokens per forward call. */
struct lf_forward_buf {
	int max_tokens, max_seq;
	float *x, *xn, *q, *k, *v, *att, *o, *gate, *up, *router, *moe_acc, *lora_tmp;
	int32_t *pos;
	float *inv_freq, *attn_factor; /* per sequence of a call */
	size_t inv_cap;
};

int lf_forward_buf_init(struct lf_forward_buf *b, const struct lf_model *m, int max_tokens, int max_seq);
void lf_forward_buf_free(struct lf_forward_buf *b);

/* Run ids[0..T) as cache entries kv->len .. kv->len+T-1 (each attends to
 * the entries up to its own, within a sliding window where the layer has
 * one), appending their keys and values to the cache.  positions: the RoPE
 * positions (packed sequences restart them), or NULL for the cache
 * indexes.  logits: [T, V], or [1, V] for the last token when last_only.
 * -1 with lf_fail (cache or buffers too small, ids out of the
 * vocabulary). */
int lf_model_forward(const struct lf_model *m, struct lf_kv_cache *kv, struct lf_forward_buf *b, const int32_t *ids,
		     const int32_t *positions, int T, bool last_only, float *logits);

/* Several sequences at once, each with its own cache: their tokens go
 * through every linear layer as one matrix (the batch), attention stays
 * within each sequence.  The buffers must hold the sum of their T.
 * logits: [sum T, V], or [nseq, V] (each sequence's last token) when
 * last_only. */
struct lf_seq_in {
	struct lf_kv_cache *kv;
	const int32_t *ids, *positions; /* positions may be NULL */
	int T;
};
int lf_model_forward_batch(const struct lf_model *m, const struct lf_seq_in *seqs, int nseq, struct lf_forward_buf *b,
			   bool last_only, float *logits);

#endif

/*
 * model_config.h — a Hugging Face model's config.json as the runtime needs
 * it: the architecture's shape and its variants (biases, norms, GQA, head
 * size, tied head, activation, sliding windows per layer, soft-capping,
 * mixture of experts) and RoPE with every scaling type, read from the
 * transformers 4.x keys (rope_theta, rope_scaling) or the 5.x ones
 * (rope_parameters, layer_types), with each model_type's class defaults.
 */
#ifndef LF_MODEL_CONFIG_H
#define LF_MODEL_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

enum lf_arch {
	LF_ARCH_LLAMA,
	LF_ARCH_MISTRAL,
	LF_ARCH_QWEN2,
	LF_ARCH_QWEN3,
	LF_ARCH_GEMMA,
	LF_ARCH_GEMMA2,
	LF_ARCH_PHI3,
	LF_ARCH_MIXTRAL,
};

enum lf_act { LF_ACT_SILU, LF_ACT_GELU_TANH, LF_ACT_GELU };

enum lf_rope_type {
	LF_ROPE_DEFAULT,
	LF_ROPE_LINEAR,
	LF_ROPE_DYNAMIC,
	LF_ROPE_YARN,
	LF_ROPE_LLAMA3,
	LF_ROPE_LONGROPE,
};

struct lf_rope_config {
	enum lf_rope_type type;
	double theta;
	double factor;
	double partial_rotary_factor;
	int rotary_dim; /* head_dim * partial_rotary_factor */
	int max_pos;    /* max_position_embeddings */
	int orig_max_pos; /* original_max_position_embeddings (0: absent) */
	double low_freq_factor, high_freq_factor;          /* llama3 */
	double beta_fast, beta_slow, mscale, mscale_all_dim; /* yarn */
	double attention_factor; /* given (> 0) or 0 for the type's default */
	bool truncate;           /* yarn */
	int yarn_orig;           /* yarn: rope_scaling's original_max_position_embeddings (0: absent) */
	float *short_factor, *long_factor; /* longrope, rotary_dim / 2 each */
};

struct lf_model_config {
	enum lf_arch arch;
	char model_type[32];
	int vocab, hidden, intermediate, layers, heads, kv_heads, head_dim;
	double eps;
	enum lf_act act;
	bool tie_embeddings;
	bool qkv_bias, o_bias, mlp_bias; /* llama attention_bias: q,k,v and o; qwen2: q,k,v */
	bool qk_norm;         /* qwen3 */
	bool norm_plus_one;   /* gemma: x * (1 + w) */
	bool embed_scale;     /* gemma: embeddings times sqrt(hidden) */
	bool sandwich_norms;  /* gemma2: post-attention and pre/post-feedforward norms */
	double attn_scale;
	double attn_softcap, final_softcap; /* 0: none */
	int *window; /* per layer: sliding window (keys within the last window positions) or 0 */
	int experts, experts_per_tok;
	struct lf_rope_config rope;
	int32_t bos_id; /* -1: none */
	int32_t eos_ids[8];
	int neos;
	int32_t pad_id;
	char dtype[16]; /* torch_dtype / dtype as written */
};

/* Read DIR/config.json (or a config.json path).  A model_type lf does not
 * run is an error naming it; so is a missing or inconsistent size.
 * -1 with lf_fail. */
int lf_model_config_load(struct lf_model_config *c, const char *path);
void lf_model_config_free(struct lf_model_config *c);

#endif

/*
 * lf-init — a new model folder with random weights, in Hugging Face's
 * layout (config.json, model.safetensors, generation_config.json and a
 * tokenizer), for any architecture lf runs and any size: the tiny models
 * the demo and the tests train and run.  The tokenizer is copied from
 * --tokenizer, or a byte-level one is generated (256 byte tokens, no merges,
 * the special tokens chat templates use).
 */
#include "error.h"
#include "model_config.h"
#include "nprandom.h"
#include "options.h"
#include "output.h"
#include "safetensors.h"
#include "tokenizer.h"

#include "cpu/bf16.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *opt_model_type, *opt_output, *opt_tokenizer, *opt_dtype;
static long long opt_vocab = -1, opt_hidden = 64, opt_intermediate = 128, opt_layers = 2, opt_heads = 4,
		 opt_kv_heads = -1, opt_head_dim = -1, opt_max_pos = 2048, opt_experts = 4, opt_experts_per_tok = 2,
		 opt_window = 0, opt_seed = 42;
static double opt_init_std = 0.02, opt_rope_theta = 10000, opt_eps = 1e-6;
static bool opt_tie;

static struct lf_option options[] = {
	{ "model-type", 't', LF_OPT_STRING, &opt_model_type, "TYPE",
	  "llama, mistral, qwen2, qwen3, gemma, gemma2, phi3 or mixtral", LF_OPT_CLI_ONLY },
	{ "vocab-size", 0, LF_OPT_INT, &opt_vocab, "N", "vocabulary (default: the tokenizer's)", LF_OPT_CLI_ONLY },
	{ "hidden-size", 0, LF_OPT_INT, &opt_hidden, "N", "hidden size (default 64)", LF_OPT_CLI_ONLY },
	{ "intermediate-size", 0, LF_OPT_INT, &opt_intermediate, "N", "MLP size (default 128)", LF_OPT_CLI_ONLY },
	{ "num-hidden-layers", 0, LF_OPT_INT, &opt_layers, "N", "layers (default 2)", LF_OPT_CLI_ONLY },
	{ "num-attention-heads", 0, LF_OPT_INT, &opt_heads, "N", "query heads (default 4)", LF_OPT_CLI_ONLY },
	{ "num-key-value-heads", 0, LF_OPT_INT, &opt_kv_heads, "N", "key/value heads (default: half the query heads)",
	  LF_OPT_CLI_ONLY },
	{ "head-dim", 0, LF_OPT_INT, &opt_head_dim, "N", "per-head size (default hidden / heads)", LF_OPT_CLI_ONLY },
	{ "max-position-embeddings", 0, LF_OPT_INT, &opt_max_pos, "N", "context length (default 2048)",
	  LF_OPT_CLI_ONLY },
	{ "rope-theta", 0, LF_OPT_FLOAT, &opt_rope_theta, "X", "RoPE base (default 10000)", LF_OPT_CLI_ONLY },
	{ "rms-norm-eps", 0, LF_OPT_FLOAT, &opt_eps, "X", "RMSNorm epsilon (default 1e-6)", LF_OPT_CLI_ONLY },
	{ "sliding-window", 0, LF_OPT_INT, &opt_window, "N",
	  "sliding window (mistral, qwen2/3 on every layer, gemma2 on even layers; default none)", LF_OPT_CLI_ONLY },
	{ "num-local-experts", 0, LF_OPT_INT, &opt_experts, "N", "mixtral: experts (default 4)", LF_OPT_CLI_ONLY },
	{ "num-experts-per-tok", 0, LF_OPT_INT, &opt_experts_per_tok, "N", "mixtral: experts per token (default 2)",
	  LF_OPT_CLI_ONLY },
	{ "tie-word-embeddings", 0, LF_OPT_BOOL, &opt_tie, NULL, "share the embedding with the output head",
	  LF_OPT_CLI_ONLY },
	{ "initializer-range", 0, LF_OPT_FLOAT, &opt_init_std, "X", "std of the random weights (default 0.02)",
	  LF_OPT_CLI_ONLY },
	{ "seed", 0, LF_OPT_INT, &opt_seed, "N", "random seed (default 42): the same seed gives the same files" },
	{ "dtype", 0, LF_OPT_STRING, &opt_dtype, "TYPE", "float32 (default), bfloat16 or float16", LF_OPT_CLI_ONLY },
	{ "tokenizer", 0, LF_OPT_STRING, &opt_tokenizer, "PATH",
	  "copy this tokenizer (a folder with tokenizer.json) instead of generating a byte-level one", LF_OPT_CLI_ONLY },
	{ "output", 'o', LF_OPT_STRING, &opt_output, "DIR", "the new model folder (must not exist or be empty)",
	  LF_OPT_CLI_ONLY },
	{ 0 }
};

static const struct lf_tool_info tool = {
	"lf-init", "-t TYPE -o DIR [OPTION]...",
	"Create a Hugging Face model folder with random weights and a tokenizer.",
	"Example: lf-init -t qwen3 --hidden-size 64 --num-hidden-layers 2 -o models/tiny",
};

/* ---- the generated tokenizer ---- */

/* GPT-2's byte-to-character table: printable bytes map to themselves, the
 * rest to U+0100 and up, so every byte has a visible character. */
static void byte_char(int b, char out[4])
{
	static int table[256];
	static bool ready;
	if (!ready) {
		int n = 0;
		for (int i = 0; i < 256; i++) {
			bool printable = (i >= '!' && i <= '~') || (i >= 0xA1 && i <= 0xAC) || (i >= 0xAE && i <= 0xFF);
			table[i] = printable ? i : 256 + n++;
		}
		ready = true;
	}
	int cp = table[b];
	if (cp < 0x80) {
		out[0] = (char)cp;
		out[1] = 0;
	} else {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		out[2] = 0;
	}
}

static const char *const specials[] = { "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>",
					"<tool_call>", "</tool_call>" };
#define NSPECIALS (sizeof specials / sizeof specials[0])

static json_t *byte_level(void)
{
	return json_pack("{s:s,s:b,s:b,s:b}", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1,
			 "use_regex", 1);
}

static int write_json(const char *path, json_t *j)
{
	int rc = json_dump_file(j, path, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_ENSURE_ASCII) == 0
			 ? 0
			 : lf_fail("%s: cannot write", path);
	json_decref(j);
	return rc;
}

static int generate_tokenizer(struct lf_outdir *d, int max_pos)
{
	json_t *vocab = json_object();
	for (int b = 0; b < 256; b++) {
		char c[4];
		byte_char(b, c);
		json_object_set_new(vocab, c, json_integer(b));
	}
	json_t *added = json_array(), *decoder = json_object();
	for (size_t i = 0; i < NSPECIALS; i++) {
		int id = 256 + (int)i;
		bool special = i < 3;
		json_array_append_new(added, json_pack("{s:i,s:s,s:b,s:b,s:b,s:b,s:b}", "id", id, "content", specials[i],
						       "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0,
						       "special", special));
		char key[16];
		snprintf(key, sizeof key, "%d", id);
		json_object_set_new(decoder, key, json_pack("{s:s,s:b,s:b,s:b,s:b,s:b}", "content", specials[i],
							    "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0,
							    "special", special));
	}
	json_t *tok = json_pack("{s:s,s:n,s:n,s:o,s:n,s:o,s:o,s:o,s:{s:s,s:n,s:n,s:n,s:n,s:b,s:b,s:b,s:o,s:[]}}",
				"version", "1.0", "truncation", "padding", "added_tokens", added, "normalizer",
				"pre_tokenizer", byte_level(), "post_processor", byte_level(), "decoder",
				byte_level(), "model", "type", "BPE", "dropout", "unk_token",
				"continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", 0, "byte_fallback", 0,
				"ignore_merges", 0, "vocab", vocab, "merges");
	if (write_json(lf_outdir_file(d, "tokenizer.json"), tok) < 0)
		return -1;
	json_t *cfg = json_pack("{s:b,s:o,s:n,s:b,s:s,s:i,s:s,s:s,s:s}", "add_bos_token", 0, "added_tokens_decoder",
				decoder, "bos_token", "clean_up_tokenization_spaces", 0, "eos_token", "<|im_end|>",
				"model_max_length", max_pos, "pad_token", "<|endoftext|>", "tokenizer_class",
				"PreTrainedTokenizerFast", "split_special_tokens", "false");
	json_object_set_new(cfg, "split_special_tokens", json_false());
	return write_json(lf_outdir_file(d, "tokenizer_config.json"), cfg);
}

static int copy_file(struct lf_outdir *d, const char *dir, const char *name, bool required)
{
	char src[4096];
	snprintf(src, sizeof src, "%s/%s", dir, name);
	FILE *in = fopen(src, "rb");
	if (!in)
		return required ? lf_fail("%s: cannot open: %s", src, strerror(errno)) : 0;
	const char *dst = lf_outdir_file(d, name);
	FILE *out = fopen(dst, "wb");
	int rc = out ? 0 : lf_fail("%s: cannot create", dst);
	char buf[1 << 16];
	size_t k;
	while (rc == 0 && (k = fread(buf, 1, sizeof buf, in)) > 0)
		if (fwrite(buf, 1, k, out) != k)
			rc = lf_fail("%s: write failed", dst);
	if (ferror(in))
		rc = lf_fail("%s: read failed", src);
	fclose(in);
	if (out && fclose(out) != 0 && rc == 0)
		rc = lf_fail("%s: write failed", dst);
	return rc;
}

/* ---- weights ---- */

struct tensor_list {
	char **names;
	void **data;
	int64_t (*shape)[2];
	int *ndim;
	size_t n;
};

static struct lf_np_rng rng;
static enum lf_dtype dtype = LF_DTYPE_F32;

/* n values: normal(0, std) (Box-Muller over numpy's generator) or a constant. */
static void *values(size_t n, double std, float constant)
{
	float *f = lf_malloc(n * sizeof *f + 4);
	for (size_t i = 0; i < n; i += 2) {
		double u1 = lf_np_random(&rng), u2 = lf_np_random(&rng);
		double r = sqrt(-2 * log(1 - u1)), a = 2 * M_PI * u2;
		f[i] = std > 0 ? (float)(std * r * cos(a)) : constant;
		if (i + 1 < n)
			f[i + 1] = std > 0 ? (float)(std * r * sin(a)) : constant;
	}
	if (dtype == LF_DTYPE_F32)
		return f;
	uint16_t *h = lf_malloc(n * sizeof *h + 2);
	if (dtype == LF_DTYPE_BF16) {
		lf_cpu_f32_to_bf16(h, f, n);
	} else {
		for (size_t i = 0; i < n; i++) {
			_Float16 x = (_Float16)f[i];
			memcpy(&h[i], &x, 2);
		}
	}
	free(f);
	return h;
}

static void add(struct tensor_list *l, const char *name, int ndim, int64_t d0, int64_t d1, double std, float c)
{
	l->names = lf_realloc(l->names, (l->n + 1) * sizeof *l->names);
	l->data = lf_realloc(l->data, (l->n + 1) * sizeof *l->data);
	l->shape = lf_realloc(l->shape, (l->n + 1) * sizeof *l->shape);
	l->ndim = lf_realloc(l->ndim, (l->n + 1) * sizeof *l->ndim);
	l->names[l->n] = lf_strdup(name);
	l->shape[l->n][0] = d0;
	l->shape[l->n][1] = d1;
	l->ndim[l->n] = ndim;
	l->data[l->n] = values((size_t)d0 * (size_t)(ndim == 2 ? d1 : 1), std, c);
	l->n++;
}

static void add_layer(struct tensor_list *l, int i, const char *part, int ndim, int64_t d0, int64_t d1, double std,
		      float c)
{
	char name[256];
	snprintf(name, sizeof name, "model.layers.%d.%s", i, part);
	add(l, name, ndim, d0, d1, std, c);
}

static void make_weights(struct tensor_list *l, const struct lf_model_config *c)
{
	double s = opt_init_std;
	int64_t H = c->hidden, I = c->intermediate, qd = (int64_t)c->heads * c->head_dim,
		kd = (int64_t)c->kv_heads * c->head_dim;
	float one = c->norm_plus_one ? 0.0f : 1.0f; /* gemma stores w - 1 */
	add(l, "model.embed_tokens.weight", 2, c->vocab, H, s, 0);
	for (int i = 0; i < c->layers; i++) {
		add_layer(l, i, "input_layernorm.weight", 1, H, 0, 0, one);
		if (c->arch == LF_ARCH_PHI3) {
			add_layer(l, i, "self_attn.qkv_proj.weight", 2, qd + 2 * kd, H, s, 0);
		} else {
			add_layer(l, i, "self_attn.q_proj.weight", 2, qd, H, s, 0);
			add_layer(l, i, "self_attn.k_proj.weight", 2, kd, H, s, 0);
			add_layer(l, i, "self_attn.v_proj.weight", 2, kd, H, s, 0);
		}
		if (c->qkv_bias) {
			add_layer(l, i, "self_attn.q_proj.bias", 1, qd, 0, 0, 0);
			add_layer(l, i, "self_attn.k_proj.bias", 1, kd, 0, 0, 0);
			add_layer(l, i, "self_attn.v_proj.bias", 1, kd, 0, 0, 0);
		}
		if (c->qk_norm) {
			add_layer(l, i, "self_attn.q_norm.weight", 1, c->head_dim, 0, 0, 1);
			add_layer(l, i, "self_attn.k_norm.weight", 1, c->head_dim, 0, 0, 1);
		}
		add_layer(l, i, "self_attn.o_proj.weight", 2, H, qd, s, 0);
		add_layer(l, i, "post_attention_layernorm.weight", 1, H, 0, 0, one);
		if (c->sandwich_norms) {
			add_layer(l, i, "pre_feedforward_layernorm.weight", 1, H, 0, 0, one);
			add_layer(l, i, "post_feedforward_layernorm.weight", 1, H, 0, 0, one);
		}
		if (c->arch == LF_ARCH_MIXTRAL) {
			add_layer(l, i, "block_sparse_moe.gate.weight", 2, c->experts, H, s, 0);
			for (int e = 0; e < c->experts; e++) {
				char part[128];
				snprintf(part, sizeof part, "block_sparse_moe.experts.%d.w1.weight", e);
				add_layer(l, i, part, 2, I, H, s, 0);
				snprintf(part, sizeof part, "block_sparse_moe.experts.%d.w2.weight", e);
				add_layer(l, i, part, 2, H, I, s, 0);
				snprintf(part, sizeof part, "block_sparse_moe.experts.%d.w3.weight", e);
				add_layer(l, i, part, 2, I, H, s, 0);
			}
		} else if (c->arch == LF_ARCH_PHI3) {
			add_layer(l, i, "mlp.gate_up_proj.weight", 2, 2 * I, H, s, 0);
			add_layer(l, i, "mlp.down_proj.weight", 2, H, I, s, 0);
		} else {
			add_layer(l, i, "mlp.gate_proj.weight", 2, I, H, s, 0);
			add_layer(l, i, "mlp.up_proj.weight", 2, I, H, s, 0);
			add_layer(l, i, "mlp.down_proj.weight", 2, H, I, s, 0);
		}
	}
	add(l, "model.norm.weight", 1, H, 0, 0, one);
	if (!c->tie_embeddings)
		add(l, "lm_head.weight", 2, c->vocab, H, s, 0);
}

/* ---- config.json ---- */

static const char *class_name(enum lf_arch a)
{
	static const char *const names[] = { "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM",
					     "Qwen3ForCausalLM", "GemmaForCausalLM",   "Gemma2ForCausalLM",
					     "Phi3ForCausalLM",  "MixtralForCausalLM" };
	return names[a];
}

static json_t *config_json(const struct lf_model_config *c, int32_t bos, int32_t eos, int32_t pad)
{
	json_t *j = json_object();
	json_object_set_new(j, "architectures", json_pack("[s]", class_name(c->arch)));
	json_object_set_new(j, "model_type", json_string(c->model_type));
	json_object_set_new(j, "vocab_size", json_integer(c->vocab));
	json_object_set_new(j, "hidden_size", json_integer(c->hidden));
	json_object_set_new(j, "intermediate_size", json_integer(c->intermediate));
	json_object_set_new(j, "num_hidden_layers", json_integer(c->layers));
	json_object_set_new(j, "num_attention_heads", json_integer(c->heads));
	json_object_set_new(j, "num_key_value_heads", json_integer(c->kv_heads));
	json_object_set_new(j, "head_dim", json_integer(c->head_dim));
	json_object_set_new(j, "max_position_embeddings", json_integer(c->rope.max_pos));
	json_object_set_new(j, "rms_norm_eps", json_real(c->eps));
	json_object_set_new(j, "rope_theta", json_real(c->rope.theta));
	json_object_set_new(j, "rope_scaling", json_null());
	json_object_set_new(j, "tie_word_embeddings", json_boolean(c->tie_embeddings));
	json_object_set_new(j, "initializer_range", json_real(opt_init_std));
	json_object_set_new(j, "attention_dropout", json_real(0));
	json_object_set_new(j, "use_cache", json_true());
	json_object_set_new(j, "torch_dtype", json_string(c->dtype));
	json_object_set_new(j, "bos_token_id", bos >= 0 ? json_integer(bos) : json_null());
	json_object_set_new(j, "eos_token_id", json_integer(eos));
	json_object_set_new(j, "pad_token_id", pad >= 0 ? json_integer(pad) : json_null());
	bool gemma = c->arch == LF_ARCH_GEMMA || c->arch == LF_ARCH_GEMMA2;
	json_object_set_new(j, gemma ? "hidden_activation" : "hidden_act",
			    json_string(gemma ? "gelu_pytorch_tanh" : "silu"));
	if (gemma)
		json_object_set_new(j, "hidden_act", json_string("gelu_pytorch_tanh"));
	switch (c->arch) {
	case LF_ARCH_LLAMA:
		json_object_set_new(j, "attention_bias", json_false());
		json_object_set_new(j, "mlp_bias", json_false());
		json_object_set_new(j, "pretraining_tp", json_integer(1));
		break;
	case LF_ARCH_MISTRAL:
	case LF_ARCH_PHI3:
	case LF_ARCH_MIXTRAL:
		json_object_set_new(j, "sliding_window", opt_window ? json_integer(opt_window) : json_null());
		if (c->arch == LF_ARCH_MIXTRAL) {
			json_object_set_new(j, "num_local_experts", json_integer(c->experts));
			json_object_set_new(j, "num_experts_per_tok", json_integer(c->experts_per_tok));
			json_object_set_new(j, "router_aux_loss_coef", json_real(0.001));
		}
		if (c->arch == LF_ARCH_PHI3) {
			json_object_set_new(j, "original_max_position_embeddings", json_integer(c->rope.max_pos));
			json_object_set_new(j, "partial_rotary_factor", json_real(1.0));
		}
		break;
	case LF_ARCH_QWEN2:
	case LF_ARCH_QWEN3:
		json_object_set_new(j, "use_sliding_window", json_boolean(opt_window > 0));
		json_object_set_new(j, "sliding_window", opt_window ? json_integer(opt_window) : json_null());
		json_object_set_new(j, "max_window_layers", json_integer(0));
		if (c->arch == LF_ARCH_QWEN3)
			json_object_set_new(j, "attention_bias", json_false());
		break;
	case LF_ARCH_GEMMA:
		json_object_set_new(j, "attention_bias", json_false());
		break;
	case LF_ARCH_GEMMA2:
		json_object_set_new(j, "attention_bias", json_false());
		json_object_set_new(j, "query_pre_attn_scalar", json_integer(c->head_dim));
		json_object_set_new(j, "attn_logit_softcapping", json_real(50.0));
		json_object_set_new(j, "final_logit_softcapping", json_real(30.0));
		json_object_set_new(j, "sliding_window", json_integer(opt_window ? opt_window : 4096));
		break;
	}
	return j;
}

static bool dir_is_empty_or_absent(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return errno == ENOENT;
	struct dirent *e;
	bool empty = true;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			empty = false;
	closedir(d);
	return empty;
}

int main(int argc, char **argv)
{
	lf_set_progname(argv[0]);
	lf_output_init_signals();
	int first = lf_options_parse(&tool, options, argc, argv);
	if (first < argc)
		lf_die_usage("unexpected operand '%s'", argv[first]);
	if (!opt_model_type || !opt_output)
		lf_die_usage("-t TYPE and -o DIR are required");
	if (!dir_is_empty_or_absent(opt_output))
		lf_die("%s: exists and is not empty: lf-init does not overwrite a folder (remove it or pick another)",
		       opt_output);
	if (opt_dtype) {
		if (!strcmp(opt_dtype, "bfloat16"))
			dtype = LF_DTYPE_BF16;
		else if (!strcmp(opt_dtype, "float16"))
			dtype = LF_DTYPE_F16;
		else if (strcmp(opt_dtype, "float32"))
			lf_die_usage("option '--dtype': '%s' is not float32, bfloat16 or float16", opt_dtype);
	}
	long long sizes[] = { opt_hidden, opt_intermediate, opt_layers, opt_heads, opt_max_pos };
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
		if (sizes[i] < 1 || sizes[i] > (1 << 24))
			lf_die_usage("sizes must be positive (and below 2^24)");
	if (opt_kv_heads < 0)
		opt_kv_heads = opt_heads % 2 == 0 ? opt_heads / 2 : opt_heads;
	if (opt_head_dim < 0)
		opt_head_dim = opt_hidden / opt_heads;
	if (opt_kv_heads < 1 || opt_heads % opt_kv_heads || opt_head_dim < 2 || opt_head_dim % 2)
		lf_die_usage("heads must be a multiple of key/value heads and head_dim even and at least 2");

	struct lf_outdir d;
	if (lf_outdir_open(&d, opt_output, "config.json") < 0)
		lf_die("%s", lf_errmsg());
	/* the tokenizer decides the vocabulary and the special ids */
	int32_t bos = -1, eos, pad;
	long long vocab;
	if (opt_tokenizer) {
		struct lf_tokenizer *t = lf_tokenizer_load(opt_tokenizer);
		if (!t)
			lf_die("%s", lf_errmsg());
		const struct lf_tok_config *tc = lf_tokenizer_config(t);
		bos = tc->bos_token ? lf_tokenizer_token_to_id(t, tc->bos_token, strlen(tc->bos_token)) : -1;
		eos = tc->eos_token ? lf_tokenizer_token_to_id(t, tc->eos_token, strlen(tc->eos_token)) : -1;
		pad = tc->pad_token ? lf_tokenizer_token_to_id(t, tc->pad_token, strlen(tc->pad_token)) : -1;
		if (eos < 0)
			lf_die("%s: the tokenizer has no eos token", opt_tokenizer);
		vocab = (long long)lf_tokenizer_vocab_size(t);
		lf_tokenizer_free(t);
		struct stat st;
		bool dir = stat(opt_tokenizer, &st) == 0 && S_ISDIR(st.st_mode);
		const char *src = dir ? opt_tokenizer : ".";
		char parent[4096];
		if (!dir) {
			const char *slash = strrchr(opt_tokenizer, '/');
			snprintf(parent, sizeof parent, "%.*s", slash ? (int)(slash - opt_tokenizer) : 1,
				 slash ? opt_tokenizer : ".");
			src = parent;
		}
		if (copy_file(&d, src, "tokenizer.json", true) < 0 || copy_file(&d, src, "tokenizer_config.json", false) < 0 ||
		    copy_file(&d, src, "special_tokens_map.json", false) < 0 ||
		    copy_file(&d, src, "chat_template.jinja", false) < 0)
			lf_die("%s", lf_errmsg());
	} else {
		eos = 256 + 2; /* <|im_end|> */
		pad = 256;     /* <|endoftext|> */
		vocab = 256 + (long long)NSPECIALS;
		if (generate_tokenizer(&d, (int)opt_max_pos) < 0)
			lf_die("%s", lf_errmsg());
	}
	if (lf_option_find(options, "vocab-size")->given) {
		if (opt_vocab < vocab)
			lf_die_usage("--vocab-size %lld is smaller than the tokenizer's %lld ids", opt_vocab, vocab);
		vocab = opt_vocab;
	}

	/* the config, through the same reader the runtime uses */
	struct lf_model_config c = { 0 };
	json_t *probe = json_pack("{s:s}", "model_type", opt_model_type);
	char cfg_path[4096];
	snprintf(cfg_path, sizeof cfg_path, "%s", lf_outdir_file(&d, "config.json"));
	if (write_json(cfg_path, probe) < 0 || lf_model_config_load(&c, cfg_path) < 0)
		lf_die("%s", lf_errmsg());
	c.vocab = (int)vocab;
	c.hidden = (int)opt_hidden;
	c.intermediate = (int)opt_intermediate;
	c.layers = (int)opt_layers;
	c.heads = (int)opt_heads;
	c.kv_heads = (int)opt_kv_heads;
	c.head_dim = (int)opt_head_dim;
	c.eps = opt_eps;
	c.rope.theta = opt_rope_theta;
	c.rope.max_pos = (int)opt_max_pos;
	c.tie_embeddings = lf_option_find(options, "tie-word-embeddings")->given ? opt_tie : c.tie_embeddings;
	c.experts = c.arch == LF_ARCH_MIXTRAL ? (int)opt_experts : 0;
	c.experts_per_tok = (int)opt_experts_per_tok;
	if (c.arch == LF_ARCH_MIXTRAL && (c.experts < 1 || c.experts_per_tok < 1 || c.experts_per_tok > c.experts))
		lf_die_usage("--num-experts-per-tok must be between 1 and --num-local-experts");
	snprintf(c.dtype, sizeof c.dtype, "%s", opt_dtype ? opt_dtype : "float32");
	if (write_json(cfg_path, config_json(&c, bos, eos, pad)) < 0)
		lf_die("%s", lf_errmsg());
	json_t *gen = json_pack("{s:o,s:i,s:o}", "bos_token_id", bos >= 0 ? json_integer(bos) : json_null(),
				"eos_token_id", eos, "pad_token_id", pad >= 0 ? json_integer(pad) : json_null());
	if (write_json(lf_outdir_file(&d, "generation_config.json"), gen) < 0)
		lf_die("%s", lf_errmsg());
	/* re-read what was written: the runtime must accept it */
	lf_model_config_free(&c);
	if (lf_model_config_load(&c, cfg_path) < 0)
		lf_die("%s", lf_errmsg());

	lf_np_rng_seed(&rng, (uint64_t)opt_seed);
	struct tensor_list l = { 0 };
	make_weights(&l, &c);
	static const char *const meta[] = { "format", "pt", NULL };
	struct lf_st_writer *w = lf_st_writer_open(d.tmp, "model", 0, meta);
	if (!w)
		lf_die("%s", lf_errmsg());
	for (size_t i = 0; i < l.n; i++)
		if (lf_st_writer_add(w, l.names[i], dtype, l.ndim[i], l.shape[i], l.data[i]) < 0)
			lf_die("%s", lf_errmsg());
	if (lf_st_writer_finish(w) < 0)
		lf_die("%s", lf_errmsg());
	lf_outdir_file(&d, "model.safetensors"); /* registered for cleanup until the folder is in place */
	if (lf_outdir_commit(&d) < 0)
		lf_die("%s", lf_errmsg());
	size_t params = 0;
	for (size_t i = 0; i < l.n; i++) {
		params += (size_t)l.shape[i][0] * (size_t)(l.ndim[i] == 2 ? l.shape[i][1] : 1);
		free(l.names[i]);
		free(l.data[i]);
	}
	lf_note("%s: %s, %zu parameters (%s), vocabulary %d", opt_output, c.model_type, params, c.dtype, c.vocab);
	free(l.names);
	free(l.data);
	free(l.shape);
	free(l.ndim);
	lf_model_config_free(&c);
	return 0;
}

/*
 * model_config.c — config.json to struct lf_model_config (see
 * model_config.h).  Defaults are the transformers classes' own, per
 * model_type, for keys a config leaves out.
 */
#include "model_config.h"
#include "error.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct arch_defaults {
	const char *model_type;
	enum lf_arch arch;
	int vocab, hidden, intermediate, layers, heads, kv_heads, head_dim; /* kv 0: = heads; head_dim 0: H/nh */
	double eps, theta;
	int max_pos;
	bool tie;
};

static const struct arch_defaults defaults[] = {
	{ "llama", LF_ARCH_LLAMA, 32000, 4096, 11008, 32, 32, 0, 0, 1e-6, 10000, 2048, false },
	{ "mistral", LF_ARCH_MISTRAL, 32000, 4096, 14336, 32, 32, 8, 0, 1e-6, 10000, 131072, false },
	{ "qwen2", LF_ARCH_QWEN2, 151936, 4096, 22016, 32, 32, 32, 0, 1e-6, 10000, 32768, false },
	{ "qwen3", LF_ARCH_QWEN3, 151936, 4096, 22016, 32, 32, 32, 128, 1e-6, 10000, 32768, false },
	{ "gemma", LF_ARCH_GEMMA, 256000, 3072, 24576, 28, 16, 16, 256, 1e-6, 10000, 8192, true },
	{ "gemma2", LF_ARCH_GEMMA2, 256000, 2304, 9216, 26, 8, 4, 256, 1e-6, 10000, 8192, true },
	{ "phi3", LF_ARCH_PHI3, 32064, 3072, 8192, 32, 32, 0, 0, 1e-5, 10000, 4096, false },
	{ "mixtral", LF_ARCH_MIXTRAL, 32000, 4096, 14336, 32, 32, 8, 0, 1e-5, 1e6, 131072, false },
};

/* An integer key (absent or null: def); -1 with lf_fail when it is not one. */
static int get_int(const json_t *o, const char *key, int def, int *out, const char *path)
{
	const json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v)) {
		*out = def;
		return 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
		return lf_fail("%s: '%s' is not a non-negative integer", path, key);
	*out = (int)json_integer_value(v);
	return 0;
}

static int get_num(const json_t *o, const char *key, double def, double *out, const char *path)
{
	const json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v)) {
		*out = def;
		return 0;
	}
	if (!json_is_number(v))
		return lf_fail("%s: '%s' is not a number", path, key);
	*out = json_number_value(v);
	return 0;
}

static bool get_bool(const json_t *o, const char *key, bool def)
{
	const json_t *v = json_object_get(o, key);
	return json_is_boolean(v) ? json_is_true(v) : def;
}

static int parse_act(const char *s, enum lf_act *act, const char *path)
{
	if (!strcmp(s, "silu") || !strcmp(s, "swish"))
		*act = LF_ACT_SILU;
	else if (!strcmp(s, "gelu_pytorch_tanh") || !strcmp(s, "gelu_new") || !strcmp(s, "gelu_fast"))
		*act = LF_ACT_GELU_TANH;
	else if (!strcmp(s, "gelu"))
		*act = LF_ACT_GELU;
	else
		return lf_fail("%s: activation '%s' is not supported (silu, gelu, gelu_pytorch_tanh)", path, s);
	return 0;
}

static int read_factors(const json_t *o, const char *key, int n, float **out, const char *path)
{
	const json_t *a = json_object_get(o, key);
	if (!json_is_array(a) || (int)json_array_size(a) != n)
		return lf_fail("%s: rope '%s' must be a list of %d numbers (rotary_dim / 2)", path, key, n);
	*out = lf_malloc((size_t)n * sizeof **out);
	for (int i = 0; i < n; i++) {
		const json_t *x = json_array_get(a, (size_t)i);
		if (!json_is_number(x))
			return lf_fail("%s: rope '%s'[%d] is not a number", path, key, i);
		(*out)[i] = (float)json_number_value(x);
	}
	return 0;
}

/* RoPE: 4.x keys (rope_theta, rope_scaling, partial_rotary_factor) or 5.x
 * rope_parameters; a non-null rope_scaling wins, as transformers 5 loads. */
static int parse_rope(struct lf_model_config *c, const json_t *root, const char *path, double theta_default)
{
	struct lf_rope_config *r = &c->rope;
	const json_t *params = json_object_get(root, "rope_parameters");
	const json_t *scaling = json_object_get(root, "rope_scaling");
	const json_t *rs = json_is_object(scaling) ? scaling : json_is_object(params) ? params : NULL;
	double theta_top = theta_default;
	if (get_num(root, "rope_theta", theta_default, &theta_top, path) < 0)
		return -1;
	if (json_is_object(params) && get_num(params, "rope_theta", theta_top, &theta_top, path) < 0)
		return -1;
	r->theta = theta_top;
	if (get_num(root, "partial_rotary_factor", 1.0, &r->partial_rotary_factor, path) < 0 ||
	    (json_is_object(params) &&
	     get_num(params, "partial_rotary_factor", r->partial_rotary_factor, &r->partial_rotary_factor, path) < 0) ||
	    get_int(root, "max_position_embeddings", r->max_pos, &r->max_pos, path) < 0 ||
	    get_int(root, "original_max_position_embeddings", 0, &r->orig_max_pos, path) < 0)
		return -1;
	r->rotary_dim = (int)(c->head_dim * r->partial_rotary_factor);
	if (r->rotary_dim < 2 || r->rotary_dim % 2 || r->rotary_dim > c->head_dim)
		return lf_fail("%s: rotary dimension %d (head_dim %d x partial_rotary_factor) is not even and positive",
			       path, r->rotary_dim, c->head_dim);
	r->type = LF_ROPE_DEFAULT;
	r->factor = 1;
	r->truncate = true;
	r->beta_fast = 32;
	r->beta_slow = 1;
	if (!rs)
		return 0;
	const char *type = json_string_value(json_object_get(rs, "rope_type"));
	if (!type)
		type = json_string_value(json_object_get(rs, "type"));
	if (!type)
		type = "default";
	static const struct {
		const char *name;
		enum lf_rope_type type;
	} types[] = { { "default", LF_ROPE_DEFAULT }, { "linear", LF_ROPE_LINEAR },  { "dynamic", LF_ROPE_DYNAMIC },
		      { "yarn", LF_ROPE_YARN },       { "llama3", LF_ROPE_LLAMA3 },  { "longrope", LF_ROPE_LONGROPE },
		      { "su", LF_ROPE_LONGROPE } };
	bool known = false;
	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
		if (!strcmp(type, types[i].name)) {
			r->type = types[i].type;
			known = true;
		}
	}
	/* Phi3Config maps its legacy "yarn" to longrope */
	if (c->arch == LF_ARCH_PHI3 && !strcmp(type, "yarn"))
		r->type = LF_ROPE_LONGROPE;
	else if (!known)
		return lf_fail("%s: rope type '%s' is not supported (default, linear, dynamic, yarn, llama3, longrope)",
			       path, type);
	int orig = r->orig_max_pos;
	if (get_num(rs, "factor", 1.0, &r->factor, path) < 0 ||
	    get_num(rs, "low_freq_factor", 1.0, &r->low_freq_factor, path) < 0 ||
	    get_num(rs, "high_freq_factor", 4.0, &r->high_freq_factor, path) < 0 ||
	    get_num(rs, "beta_fast", 32, &r->beta_fast, path) < 0 || get_num(rs, "beta_slow", 1, &r->beta_slow, path) < 0 ||
	    get_num(rs, "mscale", 0, &r->mscale, path) < 0 || get_num(rs, "mscale_all_dim", 0, &r->mscale_all_dim, path) < 0 ||
	    get_num(rs, "attention_factor", 0, &r->attention_factor, path) < 0 ||
	    get_int(rs, "original_max_position_embeddings", orig, &r->orig_max_pos, path) < 0)
		return -1;
	r->truncate = get_bool(rs, "truncate", true);
	/* yarn reads its own key only (transformers 4.57 and 5.x alike keep the
	 * configured factor; the reference's "4.x replaces it" is not so) */
	if (get_int(rs, "original_max_position_embeddings", 0, &r->yarn_orig, path) < 0)
		return -1;
	if (r->type == LF_ROPE_LONGROPE) {
		if (!r->orig_max_pos)
			r->orig_max_pos = r->max_pos;
		if (read_factors(rs, "short_factor", r->rotary_dim / 2, &r->short_factor, path) < 0 ||
		    read_factors(rs, "long_factor", r->rotary_dim / 2, &r->long_factor, path) < 0)
			return -1;
	}
	if (r->type == LF_ROPE_LLAMA3 && !r->orig_max_pos)
		return lf_fail("%s: llama3 rope needs original_max_position_embeddings", path);
	if ((r->type == LF_ROPE_LINEAR || r->type == LF_ROPE_DYNAMIC) && !(r->factor >= 1))
		return lf_fail("%s: rope factor %g must be at least 1", path, r->factor);
	return 0;
}

/* Sliding windows per layer: 5.x (and 4.5x for some types) write
 * layer_types; else each type's rule. */
static int parse_windows(struct lf_model_config *c, const json_t *root, const char *path)
{
	c->window = lf_calloc((size_t)c->layers + 1, sizeof *c->window);
	int window = 0;
	if (get_int(root, "sliding_window", 0, &window, path) < 0)
		return -1;
	const json_t *types = json_object_get(root, "layer_types");
	if (json_is_array(types)) {
		if ((int)json_array_size(types) != c->layers)
			return lf_fail("%s: layer_types has %zu entries for %d layers", path, json_array_size(types),
				       c->layers);
		for (int i = 0; i < c->layers; i++) {
			const char *t = json_string_value(json_array_get(types, (size_t)i));
			if (!t || (strcmp(t, "sliding_attention") && strcmp(t, "full_attention")))
				return lf_fail("%s: layer_types[%d] is not sliding_attention or full_attention", path, i);
			c->window[i] = !strcmp(t, "sliding_attention") ? window : 0;
		}
		return 0;
	}
	switch (c->arch) {
	case LF_ARCH_MISTRAL:
	case LF_ARCH_PHI3:
	case LF_ARCH_MIXTRAL:
		for (int i = 0; i < c->layers; i++)
			c->window[i] = window;
		break;
	case LF_ARCH_QWEN2:
	case LF_ARCH_QWEN3: {
		int max_window_layers;
		if (get_int(root, "max_window_layers", 28, &max_window_layers, path) < 0)
			return -1;
		bool use = get_bool(root, "use_sliding_window", false);
		for (int i = 0; i < c->layers; i++)
			c->window[i] = use && i >= max_window_layers ? window : 0;
		break;
	}
	case LF_ARCH_GEMMA2:
		if (!json_object_get(root, "sliding_window"))
			window = 4096;
		for (int i = 0; i < c->layers; i++)
			c->window[i] = i % 2 == 0 ? window : 0;
		break;
	default:
		break;
	}
	return 0;
}

static int parse_ids(struct lf_model_config *c, const json_t *root, const char *path)
{
	const json_t *bos = json_object_get(root, "bos_token_id"), *eos = json_object_get(root, "eos_token_id");
	const json_t *pad = json_object_get(root, "pad_token_id");
	c->bos_id = json_is_integer(bos) ? (int32_t)json_integer_value(bos) : -1;
	c->pad_id = json_is_integer(pad) ? (int32_t)json_integer_value(pad) : -1;
	c->neos = 0;
	if (json_is_integer(eos)) {
		c->eos_ids[c->neos++] = (int32_t)json_integer_value(eos);
	} else if (json_is_array(eos)) {
		for (size_t i = 0; i < json_array_size(eos); i++) {
			const json_t *x = json_array_get(eos, i);
			if (!json_is_integer(x) || c->neos == 8)
				return lf_fail("%s: eos_token_id: a list of at most 8 integers", path);
			c->eos_ids[c->neos++] = (int32_t)json_integer_value(x);
		}
	}
	return 0;
}

static int parse(struct lf_model_config *c, const json_t *root, const char *path)
{
	const char *mt = json_string_value(json_object_get(root, "model_type"));
	if (!mt)
		return lf_fail("%s: no model_type", path);
	const struct arch_defaults *d = NULL;
	for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
		if (!strcmp(mt, defaults[i].model_type))
			d = &defaults[i];
	if (!d)
		return lf_fail("%s: model_type '%s' is not supported (llama, mistral, qwen2, qwen3, gemma, gemma2, phi3, "
			       "mixtral)", path, mt);
	snprintf(c->model_type, sizeof c->model_type, "%s", mt);
	c->arch = d->arch;
	if (get_int(root, "vocab_size", d->vocab, &c->vocab, path) < 0 ||
	    get_int(root, "hidden_size", d->hidden, &c->hidden, path) < 0 ||
	    get_int(root, "intermediate_size", d->intermediate, &c->intermediate, path) < 0 ||
	    get_int(root, "num_hidden_layers", d->layers, &c->layers, path) < 0 ||
	    get_int(root, "num_attention_heads", d->heads, &c->heads, path) < 0)
		return -1;
	if (get_int(root, "num_key_value_heads", d->kv_heads ? d->kv_heads : c->heads, &c->kv_heads, path) < 0)
		return -1;
	if (c->vocab < 1 || c->hidden < 1 || c->intermediate < 1 || c->layers < 1 || c->heads < 1 || c->kv_heads < 1)
		return lf_fail("%s: vocab_size, hidden_size, intermediate_size, num_hidden_layers and the head counts "
			       "must be positive", path);
	if (c->heads % c->kv_heads)
		return lf_fail("%s: %d attention heads are not a multiple of %d key/value heads", path, c->heads,
			       c->kv_heads);
	int hd_default = d->head_dim ? d->head_dim : c->hidden / c->heads;
	if (get_int(root, "head_dim", hd_default, &c->head_dim, path) < 0)
		return -1;
	if (c->head_dim < 2)
		return lf_fail("%s: head_dim %d is too small", path, c->head_dim);
	if (get_num(root, "rms_norm_eps", d->eps, &c->eps, path) < 0)
		return -1;
	c->rope.max_pos = d->max_pos;
	/* activation: hidden_act, except gemma2's hidden_activation (gemma reads
	 * hidden_act in transformers 4.57 and 5.x alike: checked against them;
	 * the reference's "4.x reads hidden_activation" is not so) */
	const char *act = json_string_value(json_object_get(root, "hidden_act"));
	if (c->arch == LF_ARCH_GEMMA2)
		act = json_string_value(json_object_get(root, "hidden_activation"));
	if (!act && (c->arch == LF_ARCH_GEMMA || c->arch == LF_ARCH_GEMMA2))
		act = "gelu_pytorch_tanh";
	if (parse_act(act ? act : "silu", &c->act, path) < 0)
		return -1;
	c->tie_embeddings = get_bool(root, "tie_word_embeddings", d->tie);
	bool attention_bias = get_bool(root, "attention_bias", false);
	switch (c->arch) {
	case LF_ARCH_LLAMA:
		c->qkv_bias = c->o_bias = attention_bias;
		c->mlp_bias = get_bool(root, "mlp_bias", false);
		break;
	case LF_ARCH_QWEN2:
		c->qkv_bias = true;
		break;
	case LF_ARCH_QWEN3:
		c->qkv_bias = c->o_bias = attention_bias;
		c->qk_norm = true;
		break;
	case LF_ARCH_GEMMA:
	case LF_ARCH_GEMMA2:
		c->qkv_bias = c->o_bias = attention_bias;
		c->norm_plus_one = true;
		c->embed_scale = true;
		c->sandwich_norms = c->arch == LF_ARCH_GEMMA2;
		break;
	case LF_ARCH_MIXTRAL:
		if (get_int(root, "num_local_experts", 8, &c->experts, path) < 0 ||
		    get_int(root, "num_experts_per_tok", 2, &c->experts_per_tok, path) < 0)
			return -1;
		if (c->experts < 1 || c->experts_per_tok < 1 || c->experts_per_tok > c->experts || c->experts_per_tok > 64)
			return lf_fail("%s: num_experts_per_tok must be between 1 and num_local_experts", path);
		break;
	default:
		break;
	}
	c->attn_scale = 1.0 / sqrt((double)c->head_dim);
	if (c->arch == LF_ARCH_GEMMA2) {
		double q = 256;
		if (get_num(root, "query_pre_attn_scalar", 256, &q, path) < 0 ||
		    get_num(root, "attn_logit_softcapping", 50.0, &c->attn_softcap, path) < 0 ||
		    get_num(root, "final_logit_softcapping", 30.0, &c->final_softcap, path) < 0)
			return -1;
		c->attn_scale = 1.0 / sqrt(q);
	}
	const char *dtype = json_string_value(json_object_get(root, "torch_dtype"));
	if (!dtype)
		dtype = json_string_value(json_object_get(root, "dtype"));
	snprintf(c->dtype, sizeof c->dtype, "%s", dtype ? dtype : "float32");
	if (parse_rope(c, root, path, d->theta) < 0 || parse_windows(c, root, path) < 0 || parse_ids(c, root, path) < 0)
		return -1;
	return 0;
}

int lf_model_config_load(struct lf_model_config *c, const char *path)
{
	memset(c, 0, sizeof *c);
	char file[4096];
	struct stat st;
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		snprintf(file, sizeof file, "%s/config.json", path);
	else
		snprintf(file, sizeof file, "%s", path);
	json_error_t err;
	json_t *root = json_load_file(file, 0, &err);
	if (!root)
		return lf_fail("%s: %s", file, err.text);
	int rc = json_is_object(root) ? parse(c, root, file) : lf_fail("%s: not a JSON object", file);
	json_decref(root);
	if (rc < 0)
		lf_model_config_free(c);
	return rc;
}

void lf_model_config_free(struct lf_model_config *c)
{
	free(c->window);
	free(c->rope.short_factor);
	free(c->rope.long_factor);
	c->window = NULL;
	c->rope.short_factor = c->rope.long_factor = NULL;
}

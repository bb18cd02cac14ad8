/*
 * model.c — loading a model folder into struct lf_model and the forward
 * pass (see model.h).  The layer order is transformers': for each layer
 * h = x + o(attn(norm(x))), out = h + mlp(norm(h)) (gemma2 also normalises
 * the attention and MLP outputs); then the final norm and the head.  RoPE's
 * frequencies are computed here from the config for every scaling type, as
 * transformers' modeling_rope_utils does (dynamic and longrope from the
 * current sequence length).
 */
#include "model.h"
#include "error.h"

#include "cpu/matmul.h"
#include "cpu/ops.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- loading ---- */

/* A tensor as f32: mapped when it is f32 and aligned, else converted. */
static const float *tensor_f32(struct lf_model *m, const struct lf_tensor *t, const char *name)
{
	if (!m->writable && t->dtype == LF_DTYPE_F32 && (uintptr_t)t->data % sizeof(float) == 0)
		return t->data;
	if (t->dtype != LF_DTYPE_F32 && t->dtype != LF_DTYPE_BF16 && t->dtype != LF_DTYPE_F16) {
		lf_fail("%s: tensor '%s' is %s; model weights must be F32, BF16 or F16", t->file, name,
			lf_dtype_name(t->dtype));
		return NULL;
	}
	float *f = lf_malloc(lf_tensor_numel(t) * sizeof *f + 1);
	lf_tensor_to_f32(t, f);
	m->owned = lf_realloc(m->owned, (m->nowned + 1) * sizeof *m->owned);
	m->owned[m->nowned++] = f;
	return f;
}

static void record_tensor(struct lf_model *m, const char *name, const float *data, int ndim, int64_t d0, int64_t d1)
{
	m->tensors = lf_realloc(m->tensors, (m->ntensors + 1) * sizeof *m->tensors);
	struct lf_model_tensor *mt = &m->tensors[m->ntensors++];
	mt->name = lf_strdup(name);
	mt->data = data;
	mt->n = (size_t)d0 * (size_t)d1;
	mt->ndim = ndim;
	mt->shape[0] = d0;
	mt->shape[1] = d1;
}

/* lf_model_new_random's weights: 1-D tensors (norms, biases) 1 or, where
 * the norm scales by 1 + w, 0; matrices uniform with standard deviation
 * std, from a hash of (seed, tensor, element), filled in parallel. */
static const float *random_weight(struct lf_model *m, const char *name, int ndim, const int64_t *shape)
{
	size_t n = (size_t)shape[0] * (size_t)(ndim > 1 ? shape[1] : 1);
	float *f = lf_malloc(n * sizeof *f + 1);
	uint64_t key = m->random_seed ^ ((uint64_t)m->ntensors * 0x9e3779b97f4a7c15ULL);
	float half_width = m->random_std * 1.7320508f, one = m->cfg.norm_plus_one ? 0.0f : 1.0f;
	bool bias = strstr(name, ".bias") != NULL;
	#pragma omp parallel for if (n > 65536)
	for (size_t i = 0; i < n; i++) {
		uint64_t z = key + i * 0xbf58476d1ce4e5b9ULL;
		z = (z ^ (z >> 31)) * 0x94d049bb133111ebULL;
		z ^= z >> 29;
		f[i] = ndim == 1 ? (bias ? 0.0f : one) : half_width * (float)((double)(z >> 11) * 0x1.0p-52 - 1.0);
	}
	m->owned = lf_realloc(m->owned, (m->nowned + 1) * sizeof *m->owned);
	m->owned[m->nowned++] = f;
	record_tensor(m, name, f, ndim, shape[0], ndim > 1 ? shape[1] : 1);
	return f;
}

static const float *weight(struct lf_model *m, const char *name, int ndim, const int64_t *shape, bool optional)
{
	if (!m->st)
		return random_weight(m, name, ndim, shape);
	if (optional && !lf_safetensors_find(m->st, name))
		return NULL;
	const struct lf_tensor *t = lf_safetensors_expect(m->st, name, ndim, shape);
	const float *f = t ? tensor_f32(m, t, name) : NULL;
	if (f)
		record_tensor(m, name, f, ndim, shape[0], ndim > 1 ? shape[1] : 1);
	return f;
}

static const float *layer_weight(struct lf_model *m, int i, const char *part, int ndim, int64_t d0, int64_t d1,
				 bool optional, bool *failed)
{
	char name[256];
	snprintf(name, sizeof name, "model.layers.%d.%s", i, part);
	int64_t shape[2] = { d0, d1 };
	const float *w = weight(m, name, ndim, shape, optional);
	if (!w && !optional)
		*failed = true;
	return w;
}

static int load_layer(struct lf_model *m, int i)
{
	const struct lf_model_config *c = &m->cfg;
	struct lf_layer *L = &m->layers[i];
	int64_t H = c->hidden, I = c->intermediate, qd = (int64_t)c->heads * c->head_dim,
		kd = (int64_t)c->kv_heads * c->head_dim;
	bool bad = false;
	if (c->arch == LF_ARCH_PHI3) {
		const float *qkv = layer_weight(m, i, "self_attn.qkv_proj.weight", 2, qd + 2 * kd, H, false, &bad);
		const float *gu = layer_weight(m, i, "mlp.gate_up_proj.weight", 2, 2 * I, H, false, &bad);
		if (bad)
			return -1;
		L->q = qkv;
		L->k = qkv + qd * H;
		L->v = qkv + (qd + kd) * H;
		L->gate = gu;
		L->up = gu + I * H;
	} else {
		L->q = layer_weight(m, i, "self_attn.q_proj.weight", 2, qd, H, false, &bad);
		L->k = layer_weight(m, i, "self_attn.k_proj.weight", 2, kd, H, false, &bad);
		L->v = layer_weight(m, i, "self_attn.v_proj.weight", 2, kd, H, false, &bad);
	}
	L->o = layer_weight(m, i, "self_attn.o_proj.weight", 2, H, qd, false, &bad);
	if (c->qkv_bias) {
		L->q_b = layer_weight(m, i, "self_attn.q_proj.bias", 1, qd, 0, false, &bad);
		L->k_b = layer_weight(m, i, "self_attn.k_proj.bias", 1, kd, 0, false, &bad);
		L->v_b = layer_weight(m, i, "self_attn.v_proj.bias", 1, kd, 0, false, &bad);
	}
	if (c->o_bias)
		L->o_b = layer_weight(m, i, "self_attn.o_proj.bias", 1, H, 0, false, &bad);
	if (c->qk_norm) {
		L->q_norm = layer_weight(m, i, "self_attn.q_norm.weight", 1, c->head_dim, 0, false, &bad);
		L->k_norm = layer_weight(m, i, "self_attn.k_norm.weight", 1, c->head_dim, 0, false, &bad);
	}
	L->in_norm = layer_weight(m, i, "input_layernorm.weight", 1, H, 0, false, &bad);
	L->post_attn_norm = layer_weight(m, i, "post_attention_layernorm.weight", 1, H, 0, false, &bad);
	if (c->sandwich_norms) {
		L->pre_ff_norm = layer_weight(m, i, "pre_feedforward_layernorm.weight", 1, H, 0, false, &bad);
		L->post_ff_norm = layer_weight(m, i, "post_feedforward_layernorm.weight", 1, H, 0, false, &bad);
	}
	if (c->arch == LF_ARCH_MIXTRAL) {
		L->router = layer_weight(m, i, "block_sparse_moe.gate.weight", 2, c->experts, H, false, &bad);
		L->w1 = lf_calloc((size_t)c->experts, sizeof *L->w1);
		L->w2 = lf_calloc((size_t)c->experts, sizeof *L->w2);
		L->w3 = lf_calloc((size_t)c->experts, sizeof *L->w3);
		for (int e = 0; e < c->experts && !bad; e++) {
			char part[128];
			snprintf(part, sizeof part, "block_sparse_moe.experts.%d.w1.weight", e);
			L->w1[e] = layer_weight(m, i, part, 2, I, H, false, &bad);
			snprintf(part, sizeof part, "block_sparse_moe.experts.%d.w2.weight", e);
			L->w2[e] = layer_weight(m, i, part, 2, H, I, false, &bad);
			snprintf(part, sizeof part, "block_sparse_moe.experts.%d.w3.weight", e);
			L->w3[e] = layer_weight(m, i, part, 2, I, H, false, &bad);
		}
	} else if (c->arch != LF_ARCH_PHI3) {
		L->gate = layer_weight(m, i, "mlp.gate_proj.weight", 2, I, H, false, &bad);
		L->up = layer_weight(m, i, "mlp.up_proj.weight", 2, I, H, false, &bad);
	}
	if (c->arch != LF_ARCH_MIXTRAL)
		L->down = layer_weight(m, i, "mlp.down_proj.weight", 2, H, I, false, &bad);
	if (c->mlp_bias) {
		L->gate_b = layer_weight(m, i, "mlp.gate_proj.bias", 1, I, 0, false, &bad);
		L->up_b = layer_weight(m, i, "mlp.up_proj.bias", 1, I, 0, false, &bad);
		L->down_b = layer_weight(m, i, "mlp.down_proj.bias", 1, H, 0, false, &bad);
	}
	return bad ? -1 : 0;
}

/* A model folder's, or with random, lf_model_new_random's (config.json only). */
static struct lf_model *load(const char *dir, bool writable, bool random, uint64_t seed, float std)
{
	struct lf_model *m = lf_calloc(1, sizeof *m);
	m->writable = writable || random;
	m->random_seed = seed;
	m->random_std = std;
	if (lf_model_config_load(&m->cfg, dir) < 0) {
		free(m);
		return NULL;
	}
	const struct lf_model_config *c = &m->cfg;
	if (c->head_dim > 1024) {
		lf_fail("%s: head_dim %d is larger than lf supports (1024)", dir, c->head_dim);
		lf_model_free(m);
		return NULL;
	}
	m->st = random ? NULL : lf_safetensors_open(dir);
	if (!random && !m->st) {
		lf_model_free(m);
		return NULL;
	}
	int64_t emb[2] = { c->vocab, c->hidden }, hid[1] = { c->hidden };
	m->embed = weight(m, "model.embed_tokens.weight", 2, emb, false);
	m->norm = weight(m, "model.norm.weight", 1, hid, false);
	m->lm_head = c->tie_embeddings ? m->embed : weight(m, "lm_head.weight", 2, emb, false);
	if (!m->embed || !m->norm || !m->lm_head) {
		lf_model_free(m);
		return NULL;
	}
	m->layers = lf_calloc((size_t)c->layers, sizeof *m->layers);
	for (int i = 0; i < c->layers; i++) {
		if (load_layer(m, i) < 0) {
			lf_model_free(m);
			return NULL;
		}
	}
	return m;
}

struct lf_model *lf_model_load(const char *dir)
{
	return load(dir, false, false, 0, 0);
}

struct lf_model *lf_model_new_random(const char *dir, uint64_t seed, float std)
{
	return load(dir, true, true, seed, std);
}

struct lf_model *lf_model_load_writable(const char *dir)
{
	return load(dir, true, false, 0, 0);
}

void lf_model_free(struct lf_model *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->ntensors; i++)
		free(m->tensors[i].name);
	free(m->tensors);
	for (int i = 0; m->layers && i < m->cfg.layers; i++) {
		free(m->layers[i].w1);
		free(m->layers[i].w2);
		free(m->layers[i].w3);
		free(m->layers[i].lw1);
		free(m->layers[i].lw2);
		free(m->layers[i].lw3);
	}
	lf_safetensors_close(m->adapter);
	free(m->layers);
	for (size_t i = 0; i < m->nowned; i++)
		free(m->owned[i]);
	free(m->owned);
	lf_safetensors_close(m->st);
	lf_model_config_free(&m->cfg);
	free(m);
}

/* ---- LoRA adapters ---- */

struct adapter_config {
	double alpha;
	bool rslora, dora;
	json_t *alpha_pattern;
};

/* PEFT's pattern match of a module name: the key equals the name or ends
 * it after a dot. */
static bool module_matches(const char *module, const char *key)
{
	size_t n = strlen(module), k = strlen(key);
	return n >= k && !strcmp(module + n - k, key) && (n == k || module[n - k - 1] == '.');
}

static double module_alpha(const struct adapter_config *ac, const char *module)
{
	const char *key;
	json_t *v;
	json_object_foreach(ac->alpha_pattern, key, v)
	{
		if (module_matches(module, key) && json_is_number(v))
			return json_number_value(v);
	}
	return ac->alpha;
}

/* The projection(s) a module's adapter attaches to: a plain one, or the
 * row blocks of a fused one (phi3's qkv_proj and gate_up_proj). */
static int attach(struct lf_model *m, int layer, const char *part, const float *A, const float *B, int r,
		  float scale, const float *mag, const char *name)
{
	const struct lf_model_config *c = &m->cfg;
	struct lf_layer *L = &m->layers[layer];
	size_t qd = (size_t)c->heads * c->head_dim, kd = (size_t)c->kv_heads * c->head_dim, I = c->intermediate;
	struct lf_lora base = { A, B, r, scale, mag };
	struct {
		const char *part;
		struct lf_lora *lora;
		size_t row;
	} plain[] = { { "self_attn.q_proj", &L->lq, 0 },     { "self_attn.k_proj", &L->lk, 0 },
		      { "self_attn.v_proj", &L->lv, 0 },     { "self_attn.o_proj", &L->lo, 0 },
		      { "mlp.gate_proj", &L->lgate, 0 },     { "mlp.up_proj", &L->lup, 0 },
		      { "mlp.down_proj", &L->ldown, 0 },     { "self_attn.qkv_proj", &L->lq, 0 },
		      { "self_attn.qkv_proj", &L->lk, qd },  { "self_attn.qkv_proj", &L->lv, qd + kd },
		      { "mlp.gate_up_proj", &L->lgate, 0 }, { "mlp.gate_up_proj", &L->lup, I },
		      { "block_sparse_moe.gate", &L->lrouter, 0 } };
	bool found = false;
	for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
		if (strcmp(part, plain[i].part))
			continue;
		*plain[i].lora = base;
		plain[i].lora->B = B + plain[i].row * (size_t)r;
		plain[i].lora->mag = mag ? mag + plain[i].row : NULL;
		found = true;
	}
	int e;
	char w[4];
	if (!found && c->arch == LF_ARCH_MIXTRAL && sscanf(part, "block_sparse_moe.experts.%d.%3s", &e, w) == 2 &&
	    e >= 0 && e < c->experts) {
		struct lf_lora **arr = !strcmp(w, "w1") ? &L->lw1 : !strcmp(w, "w2") ? &L->lw2 : !strcmp(w, "w3") ? &L->lw3 : NULL;
		if (arr) {
			if (!*arr)
				*arr = lf_calloc((size_t)c->experts, sizeof **arr);
			(*arr)[e] = base;
			found = true;
		}
	}
	return found ? 0 : lf_fail("%s: LoRA on '%s' is not supported by lf yet", name, part);
}

/* In and out features of a layer's linear module, for checking shapes. */
static int module_shape(const struct lf_model_config *c, const char *part, int64_t *in, int64_t *out)
{
	int64_t H = c->hidden, I = c->intermediate, qd = (int64_t)c->heads * c->head_dim,
		kd = (int64_t)c->kv_heads * c->head_dim;
	const char *w = strrchr(part, '.');
	w = w ? w + 1 : part;
	struct {
		const char *name;
		int64_t in, out;
	} shapes[] = { { "q_proj", H, qd },  { "k_proj", H, kd },      { "v_proj", H, kd },
		       { "o_proj", qd, H },  { "gate_proj", H, I },    { "up_proj", H, I },
		       { "down_proj", I, H }, { "qkv_proj", H, qd + 2 * kd }, { "gate_up_proj", H, 2 * I },
		       { "w1", H, I },       { "w3", H, I },           { "w2", I, H },
		       { "gate", H, c->experts } };
	for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
		if (!strcmp(w, shapes[i].name)) {
			*in = shapes[i].in;
			*out = shapes[i].out;
			return 0;
		}
	}
	return -1;
}

/* The model's pointer that a PEFT modules_to_save tensor replaces
 * (base_model.model. + the base tensor's name: the embeddings, the final
 * norm, the head), or NULL. */
static const float **module_copy_slot(struct lf_model *m, const char *name)
{
	if (!strcmp(name, "base_model.model.model.embed_tokens.weight"))
		return &m->embed;
	if (!strcmp(name, "base_model.model.model.norm.weight"))
		return &m->norm;
	if (!strcmp(name, "base_model.model.lm_head.weight"))
		return &m->lm_head;
	return NULL;
}

int lf_model_new_module_copy(struct lf_model *m, const char *module)
{
	char name[256];
	snprintf(name, sizeof name, "base_model.model.%s%s.weight",
		 strcmp(module, "lm_head") ? "model." : "", module);
	const float **slot = module_copy_slot(m, name);
	if (!slot || (slot == &m->lm_head && m->cfg.tie_embeddings))
		return lf_fail("additional target '%s': lf trains copies of embed_tokens, norm and (untied) lm_head",
			       module);
	size_t n = slot == &m->norm ? (size_t)m->cfg.hidden : (size_t)m->cfg.vocab * m->cfg.hidden;
	float *f = lf_malloc(n * sizeof *f + 4);
	memcpy(f, *slot, n * sizeof *f);
	m->owned = lf_realloc(m->owned, (m->nowned + 1) * sizeof *m->owned);
	m->owned[m->nowned++] = f;
	*slot = f; /* a tied head keeps the base's embeddings, as PEFT's copy unties them */
	if (slot == &m->norm)
		record_tensor(m, name, f, 1, m->cfg.hidden, 1);
	else
		record_tensor(m, name, f, 2, m->cfg.vocab, m->cfg.hidden);
	return 0;
}

void lf_lora_row_norms(float *norms, const float *w, const float *A, const float *B, int r, float scale, int out,
		       int in)
{
	float *row = lf_malloc((size_t)in * sizeof *row + 4);
	for (int j = 0; j < out; j++) {
		double ss = 0;
		for (int i = 0; i < in; i++) {
			float ba = 0;
			for (int k = 0; k < r; k++)
				ba += B[(size_t)j * r + k] * A[(size_t)k * in + i];
			row[i] = w[(size_t)j * in + i] + scale * ba;
			ss += (double)row[i] * row[i];
		}
		norms[j] = (float)sqrt(ss);
	}
	free(row);
}

/* DoRA at inference: each adapted layer's output rows scaled by
 * m / ||W + scale B A||, computed once from the loaded weights. */
static void dora_scale_of(struct lf_model *m, struct lf_lora *l, const float *w, int out, int in)
{
	if (!l->r || !l->mag)
		return;
	float *g = lf_malloc((size_t)out * sizeof *g + 4);
	lf_lora_row_norms(g, w, l->A, l->B, l->r, l->scale, out, in);
	for (int j = 0; j < out; j++)
		g[j] = l->mag[j] / g[j];
	m->owned = lf_realloc(m->owned, (m->nowned + 1) * sizeof *m->owned);
	m->owned[m->nowned++] = g;
	l->dora_scale = g;
}

static void dora_scales(struct lf_model *m)
{
	const struct lf_model_config *c = &m->cfg;
	int H = c->hidden, I = c->intermediate, qd = c->heads * c->head_dim, kd = c->kv_heads * c->head_dim;
	for (int i = 0; i < c->layers; i++) {
		struct lf_layer *L = &m->layers[i];
		dora_scale_of(m, &L->lq, L->q, qd, H);
		dora_scale_of(m, &L->lk, L->k, kd, H);
		dora_scale_of(m, &L->lv, L->v, kd, H);
		dora_scale_of(m, &L->lo, L->o, H, qd);
		if (c->arch == LF_ARCH_MIXTRAL) {
			dora_scale_of(m, &L->lrouter, L->router, c->experts, H);
			for (int e = 0; e < c->experts; e++) {
				if (L->lw1)
					dora_scale_of(m, &L->lw1[e], L->w1[e], I, H);
				if (L->lw3)
					dora_scale_of(m, &L->lw3[e], L->w3[e], I, H);
				if (L->lw2)
					dora_scale_of(m, &L->lw2[e], L->w2[e], H, I);
			}
		} else {
			dora_scale_of(m, &L->lgate, L->gate, I, H);
			dora_scale_of(m, &L->lup, L->up, I, H);
			dora_scale_of(m, &L->ldown, L->down, H, I);
		}
	}
}

static int load_adapter_config(struct adapter_config *ac, const char *dir)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/adapter_config.json", dir);
	ac->alpha = 8;
	ac->rslora = false;
	ac->dora = false;
	ac->alpha_pattern = json_object();
	json_error_t err;
	json_t *j = json_load_file(path, 0, &err);
	if (!j)
		return lf_fail("%s: %s", path, err.text);
	const char *type = json_string_value(json_object_get(j, "peft_type"));
	int rc = 0;
	if (!type || strcmp(type, "LORA"))
		rc = lf_fail("%s: peft_type '%s': lf runs LoRA adapters", path, type ? type : "(none)");
	else if (json_is_string(json_object_get(j, "init_lora_weights")) &&
		 !strncmp(json_string_value(json_object_get(j, "init_lora_weights")), "pissa", 5))
		rc = lf_fail("%s: a PiSSA adapter (init_lora_weights %s) applies to the residual of its base, which PEFT "
			     "recomputes when it loads it: use the converted adapter (lf-train --pissa-convert writes "
			     "pissa_converted/)", path, json_string_value(json_object_get(j, "init_lora_weights")));
	else if (json_is_true(json_object_get(j, "fan_in_fan_out")))
		rc = lf_fail("%s: fan_in_fan_out (GPT-2 Conv1D layouts) is not supported", path);
	else if (json_is_string(json_object_get(j, "bias")) && strcmp(json_string_value(json_object_get(j, "bias")), "none"))
		rc = lf_fail("%s: bias '%s': adapters with trained biases are not built yet", path,
			     json_string_value(json_object_get(j, "bias")));
	ac->alpha = json_is_number(json_object_get(j, "lora_alpha")) ? json_number_value(json_object_get(j, "lora_alpha")) : 8;
	ac->rslora = json_is_true(json_object_get(j, "use_rslora"));
	ac->dora = json_is_true(json_object_get(j, "use_dora"));
	json_t *ap = json_object_get(j, "alpha_pattern");
	if (json_is_object(ap)) {
		json_decref(ac->alpha_pattern);
		ac->alpha_pattern = json_incref(ap);
	}
	json_decref(j);
	return rc;
}

int lf_model_load_adapter(struct lf_model *m, const char *dir)
{
	struct adapter_config ac;
	if (load_adapter_config(&ac, dir) < 0) {
		json_decref(ac.alpha_pattern);
		return -1;
	}
	char path[4096];
	snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
	m->adapter = lf_safetensors_open(path);
	if (!m->adapter) {
		json_decref(ac.alpha_pattern);
		return -1;
	}
	const char *prefix = "base_model.model.model.layers.";
	int rc = 0, pairs = 0;
	for (size_t i = 0; i < lf_safetensors_count(m->adapter) && rc == 0; i++) {
		const struct lf_tensor *a = lf_safetensors_at(m->adapter, i);
		const char *name = a->name, *dot;
		size_t n = strlen(name);
		const float **slot = module_copy_slot(m, name);
		if (slot) { /* modules_to_save: a trained copy replaces the base's */
			int64_t want[2] = { m->cfg.vocab, m->cfg.hidden };
			if (slot == &m->norm)
				want[0] = m->cfg.hidden;
			const struct lf_tensor *t = lf_safetensors_expect(m->adapter, name, slot == &m->norm ? 1 : 2, want);
			const float *f = t ? tensor_f32(m, t, name) : NULL;
			if (!f) {
				rc = -1;
				break;
			}
			*slot = f;
			record_tensor(m, name, f, t->ndim, t->shape[0], t->ndim > 1 ? t->shape[1] : 1);
			pairs++;
			continue;
		}
		if (n > 14 && !strcmp(name + n - 14, ".lora_B.weight"))
			continue; /* found from its A */
		if (n > 22 && !strcmp(name + n - 22, ".lora_magnitude_vector")) {
			if (!ac.dora) {
				rc = lf_fail("%s: '%s': a DoRA magnitude, but use_dora is not set", path, name);
				break;
			}
			continue; /* found from its A */
		}
		int layer;
		if (strncmp(name, prefix, strlen(prefix)) || n < 15 || strcmp(name + n - 14, ".lora_A.weight") ||
		    sscanf(name + strlen(prefix), "%d", &layer) != 1 || layer < 0 || layer >= m->cfg.layers ||
		    !(dot = strchr(name + strlen(prefix), '.'))) {
			rc = lf_fail("%s: tensor '%s' is not a LoRA matrix of a decoder layer's linear module (lf runs "
				     "those only)", path, name);
			break;
		}
		char part[256], bname[512];
		snprintf(part, sizeof part, "%.*s", (int)(name + n - 14 - dot - 1), dot + 1);
		snprintf(bname, sizeof bname, "%.*s.lora_B.weight", (int)(n - 14), name);
		int64_t in, out;
		if (module_shape(&m->cfg, part, &in, &out) < 0) {
			rc = lf_fail("%s: LoRA on '%s' is not supported by lf yet", path, part);
			break;
		}
		if (a->ndim != 2 || a->shape[1] != in || a->shape[0] < 1) {
			rc = lf_fail("%s: tensor '%s': not [r, %lld]", path, name, (long long)in);
			break;
		}
		int64_t r = a->shape[0], bshape[2] = { out, r };
		const struct lf_tensor *b = lf_safetensors_expect(m->adapter, bname, 2, bshape);
		if (!b) {
			rc = -1;
			break;
		}
		char module[512];
		snprintf(module, sizeof module, "model.layers.%d.%s", layer, part);
		double alpha = module_alpha(&ac, module);
		float scale = (float)(ac.rslora ? alpha / sqrt((double)r) : alpha / (double)r);
		const float *A = tensor_f32(m, a, name), *B = tensor_f32(m, b, bname), *mag = NULL;
		char mname[512];
		snprintf(mname, sizeof mname, "%.*s.lora_magnitude_vector", (int)(n - 14), name);
		if (ac.dora) {
			const struct lf_tensor *mt = lf_safetensors_expect(m->adapter, mname, 1, &out);
			mag = mt ? tensor_f32(m, mt, mname) : NULL;
			if (!mag) {
				rc = -1;
				break;
			}
		}
		if (!A || !B || attach(m, layer, part, A, B, (int)r, scale, mag, path) < 0) {
			rc = -1;
			break;
		}
		record_tensor(m, name, A, 2, r, in);
		record_tensor(m, bname, B, 2, out, r);
		if (mag)
			record_tensor(m, mname, mag, 1, out, 1);
		if (r > m->max_rank)
			m->max_rank = (int)r;
		pairs++;
	}
	json_decref(ac.alpha_pattern);
	if (rc == 0 && pairs == 0)
		rc = lf_fail("%s: no LoRA matrices", path);
	if (rc == 0 && ac.dora)
		dora_scales(m);
	return rc;
}

int lf_model_new_lora(struct lf_model *m, int layer, const char *part, int r, float scale, bool dora)
{
	int64_t in, out;
	if (layer < 0 || layer >= m->cfg.layers || r < 1 || module_shape(&m->cfg, part, &in, &out) < 0)
		return lf_fail("LoRA on layer %d's '%s' is not supported by lf yet", layer, part);
	float *A = lf_calloc((size_t)r * (size_t)in + 1, sizeof *A), *B = lf_calloc((size_t)out * (size_t)r + 1, sizeof *B);
	float *mag = NULL;
	char name[512];
	if (dora) {
		/* the magnitude starts as the base weight's row norms (B A is 0) */
		snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, part);
		const float *w = NULL;
		for (size_t i = 0; i < m->ntensors && !w; i++)
			if (!strcmp(m->tensors[i].name, name))
				w = m->tensors[i].data;
		if (!w)
			return lf_fail("DoRA on layer %d's '%s': no base weight %s", layer, part, name);
		mag = lf_calloc((size_t)out + 1, sizeof *mag);
		for (int64_t j = 0; j < out; j++) {
			double ss = 0;
			for (int64_t k = 0; k < in; k++)
				ss += (double)w[j * in + k] * w[j * in + k];
			mag[j] = (float)sqrt(ss);
		}
	}
	m->owned = lf_realloc(m->owned, (m->nowned + 3) * sizeof *m->owned);
	m->owned[m->nowned++] = A;
	m->owned[m->nowned++] = B;
	if (mag)
		m->owned[m->nowned++] = mag;
	if (attach(m, layer, part, A, B, r, scale, mag, "lf_model_new_lora") < 0)
		return -1;
	snprintf(name, sizeof name, "base_model.model.model.layers.%d.%s.lora_A.weight", layer, part);
	record_tensor(m, name, A, 2, r, in);
	snprintf(name, sizeof name, "base_model.model.model.layers.%d.%s.lora_B.weight", layer, part);
	record_tensor(m, name, B, 2, out, r);
	if (mag) {
		snprintf(name, sizeof name, "base_model.model.model.layers.%d.%s.lora_magnitude_vector", layer, part);
		record_tensor(m, name, mag, 1, out, 1);
	}
	if (r > m->max_rank)
		m->max_rank = r;
	return 0;
}

/* ---- buffers ---- */

int lf_kv_cache_init(struct lf_kv_cache *kv, const struct lf_model *m, int capacity)
{
	size_t n = (size_t)m->cfg.layers * (size_t)capacity * (size_t)m->cfg.kv_heads * (size_t)m->cfg.head_dim;
	kv->capacity = capacity;
	kv->len = 0;
	kv->k = lf_malloc(n * sizeof(float) + 1);
	kv->v = lf_malloc(n * sizeof(float) + 1);
	return 0;
}

int lf_kv_cache_reserve(struct lf_kv_cache *kv, const struct lf_model *m, int capacity)
{
	if (capacity <= kv->capacity)
		return 0;
	struct lf_kv_cache bigger;
	lf_kv_cache_init(&bigger, m, capacity);
	size_t d = (size_t)m->cfg.head_dim, n = (size_t)kv->len * d * sizeof(float);
	for (size_t lg = 0; lg < (size_t)m->cfg.layers * (size_t)m->cfg.kv_heads; lg++) {
		memcpy(bigger.k + lg * capacity * d, kv->k + lg * kv->capacity * d, n);
		memcpy(bigger.v + lg * capacity * d, kv->v + lg * kv->capacity * d, n);
	}
	bigger.len = kv->len;
	lf_kv_cache_free(kv);
	*kv = bigger;
	return 0;
}

void lf_kv_cache_free(struct lf_kv_cache *kv)
{
	free(kv->k);
	free(kv->v);
	kv->k = kv->v = NULL;
}

int lf_forward_buf_init(struct lf_forward_buf *b, const struct lf_model *m, int max_tokens, int max_seq)
{
	const struct lf_model_config *c = &m->cfg;
	size_t T = (size_t)max_tokens;
	size_t qd = (size_t)c->heads * (size_t)c->head_dim, kd = (size_t)c->kv_heads * (size_t)c->head_dim;
	b->max_tokens = max_tokens;
	b->max_seq = max_seq;
	b->x = lf_malloc(T * (size_t)c->hidden * sizeof(float));
	b->xn = lf_malloc(T * (size_t)c->hidden * sizeof(float));
	b->o = lf_malloc(T * (size_t)c->hidden * sizeof(float));
	b->moe_acc = lf_malloc(T * (size_t)c->hidden * sizeof(float));
	b->q = lf_malloc(T * qd * sizeof(float));
	b->att = lf_malloc(T * qd * sizeof(float));
	b->k = lf_malloc(T * kd * sizeof(float));
	b->v = lf_malloc(T * kd * sizeof(float));
	b->gate = lf_malloc(T * (size_t)c->intermediate * sizeof(float));
	b->up = lf_malloc(T * (size_t)c->intermediate * sizeof(float));
	b->router = lf_malloc(T * (size_t)(c->experts + 1) * sizeof(float));
	b->pos = lf_malloc(T * sizeof(int32_t));
	b->lora_tmp = lf_malloc(T * (size_t)(m->max_rank + 1) * sizeof(float));
	b->inv_cap = (size_t)c->rope.rotary_dim / 2;
	b->inv_freq = lf_malloc(b->inv_cap * sizeof(float));
	b->attn_factor = lf_malloc(sizeof(float));
	return 0;
}

void lf_forward_buf_free(struct lf_forward_buf *b)
{
	float *f[] = { b->x, b->xn, b->o, b->moe_acc, b->q, b->att, b->k, b->v, b->gate, b->up, b->router,
		       b->inv_freq, b->lora_tmp, b->attn_factor };
	for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
		free(f[i]);
	free(b->pos);
	memset(b, 0, sizeof *b);
}

/* ---- RoPE frequencies (transformers' modeling_rope_utils) ---- */

static double yarn_mscale(double scale, double mscale)
{
	return scale <= 1 ? 1.0 : 0.1 * mscale * log(scale) + 1.0;
}

static double yarn_correction_dim(double rotations, int dim, double base, int max_pos)
{
	return (dim * log(max_pos / (rotations * 2 * M_PI))) / (2 * log(base));
}

/* inv_freq[0 .. D/2) and the attention factor for a sequence of seq_len. */
static float rope_frequencies(const struct lf_rope_config *r, int seq_len, float *inv)
{
	int D = r->rotary_dim, half = D / 2;
	double base = r->theta, attention = 1.0;
	if (r->type == LF_ROPE_DYNAMIC && seq_len > r->max_pos)
		base = r->theta * pow(r->factor * seq_len / r->max_pos - (r->factor - 1), (double)D / (D - 2));
	for (int i = 0; i < half; i++)
		inv[i] = (float)(1.0 / pow(base, (double)(float)(2 * i) / D));
	switch (r->type) {
	case LF_ROPE_LINEAR:
		for (int i = 0; i < half; i++)
			inv[i] = (float)(inv[i] / r->factor);
		break;
	case LF_ROPE_LLAMA3: {
		double old = r->orig_max_pos, low = old / r->low_freq_factor, high = old / r->high_freq_factor;
		for (int i = 0; i < half; i++) {
			double f = inv[i], wl = 2 * M_PI / f;
			if (wl > low) {
				f = f / r->factor;
			} else if (wl >= high) {
				double s = (old / wl - r->low_freq_factor) / (r->high_freq_factor - r->low_freq_factor);
				f = (1 - s) * f / r->factor + s * f;
			}
			inv[i] = (float)f;
		}
		break;
	}
	case LF_ROPE_YARN: {
		double factor = r->factor;
		int orig = r->yarn_orig ? r->yarn_orig : r->max_pos;
		if (r->attention_factor > 0)
			attention = r->attention_factor;
		else if (r->mscale > 0 && r->mscale_all_dim > 0)
			attention = yarn_mscale(factor, r->mscale) / yarn_mscale(factor, r->mscale_all_dim);
		else
			attention = yarn_mscale(factor, 1);
		double lo = yarn_correction_dim(r->beta_fast, D, r->theta, orig);
		double hi = yarn_correction_dim(r->beta_slow, D, r->theta, orig);
		if (r->truncate) {
			lo = floor(lo);
			hi = ceil(hi);
		}
		if (lo < 0)
			lo = 0;
		if (hi > D - 1)
			hi = D - 1;
		if (lo == hi)
			hi += 0.001;
		for (int i = 0; i < half; i++) {
			double ramp = ((float)i - lo) / (hi - lo);
			ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
			double extrap = 1 - ramp, f = inv[i];
			inv[i] = (float)(f / factor * (1 - extrap) + f * extrap);
		}
		break;
	}
	case LF_ROPE_LONGROPE: {
		double factor = r->orig_max_pos ? (double)r->max_pos / r->orig_max_pos : r->factor;
		if (r->attention_factor > 0)
			attention = r->attention_factor;
		else
			attention = factor <= 1 ? 1.0 : sqrt(1 + log(factor) / log((double)r->orig_max_pos));
		const float *ext = seq_len > r->orig_max_pos ? r->long_factor : r->short_factor;
		for (int i = 0; i < half; i++)
			inv[i] = (float)(1.0 / (ext[i] * pow(r->theta, (double)(float)(2 * i) / D)));
		break;
	}
	default:
		break;
	}
	return (float)attention;
}

float lf_model_rope_frequencies(const struct lf_model *m, int seq_len, float *inv_freq)
{
	return rope_frequencies(&m->cfg.rope, seq_len, inv_freq);
}

/* ---- forward ---- */

/* out += scale * (x A^T) B^T, out *= DoRA's per-row scale, out += bias:
 * what a linear layer adds to x W^T; tmp holds T x r. */
static void linear_extras(float *out, const float *x, const float *bias, const struct lf_lora *lora, float *tmp,
			  int T, int out_f, int in_f)
{
	if (lora && lora->r) {
		lf_cpu_matmul_nt_f32(tmp, x, lora->A, T, lora->r, in_f);
		lf_cpu_matmul_nt_acc_f32(out, tmp, lora->B, T, out_f, lora->r, lora->scale);
		if (lora->dora_scale)
			for (int t = 0; t < T; t++)
				for (int j = 0; j < out_f; j++)
					out[(size_t)t * out_f + j] *= lora->dora_scale[j];
	}
	if (bias)
		for (int t = 0; t < T; t++)
			for (int j = 0; j < out_f; j++)
				out[(size_t)t * out_f + j] += bias[j];
}

/* out = x W^T (+ bias) (+ scale * (x A^T) B^T); tmp holds T x r. */
static void linear(float *out, const float *x, const float *w, const float *bias, const struct lf_lora *lora,
		   float *tmp, int T, int out_f, int in_f)
{
	lf_cpu_matmul_nt_f32(out, x, w, T, out_f, in_f);
	linear_extras(out, x, bias, lora, tmp, T, out_f, in_f);
}

/* x += linear(in): a linear layer whose output goes straight into the
 * residual stream.  For many tokens sgemm adds the product to x itself
 * (beta 1: no zeroing of an output, no separate add; LoRA and the bias
 * add up the same way, DoRA's scaling of the whole output does not); for
 * a few (decoding) the output goes to out first. */
static void linear_residual(float *x, float *out, const float *in, const float *w, const float *bias,
			    const struct lf_lora *lora, float *tmp, int T, int out_f, int in_f)
{
	if (T > LF_CPU_GEMV_MAX_M && !(lora && lora->r && lora->dora_scale)) {
		lf_cpu_matmul_nt_acc_f32(x, in, w, T, out_f, in_f, 1.0f);
		linear_extras(x, in, bias, lora, tmp, T, out_f, in_f);
		return;
	}
	linear(out, in, w, bias, lora, tmp, T, out_f, in_f);
	for (size_t i = 0; i < (size_t)T * out_f; i++)
		x[i] += out[i];
}

/* count linear layers of the same input (q, k, v; gate, up), each as
 * linear(): for a few tokens (decoding) their weights' rows are split over
 * the threads together, in one parallel region, each weight streamed once. */
static void linear_multi(int count, float *const *out, const float *x, const float *const *w,
			 const float *const *bias, const struct lf_lora *const *lora, float *tmp, int T,
			 const int *out_f, int in_f)
{
	bool few = T <= LF_CPU_GEMV_MAX_M;
	if (few)
		lf_cpu_gemv_multi_f32(out, w, out_f, count, x, T, in_f);
	for (int i = 0; i < count; i++) {
		if (!few)
			lf_cpu_matmul_nt_f32(out[i], x, w[i], T, out_f[i], in_f);
		linear_extras(out[i], x, bias[i], lora[i], tmp, T, out_f[i], in_f);
	}
}

/* Mixtral's sparse MLP: softmax over the router's logits, the top k
 * renormalised, each token the weighted sum of its experts. */
static void moe(const struct lf_model *m, const struct lf_layer *L, struct lf_forward_buf *b, int T)
{
	const struct lf_model_config *c = &m->cfg;
	int H = c->hidden, I = c->intermediate, E = c->experts, K = c->experts_per_tok;
	linear(b->router, b->xn, L->router, NULL, &L->lrouter, b->lora_tmp, T, E, H);
	memset(b->moe_acc, 0, (size_t)T * H * sizeof(float));
	for (int t = 0; t < T; t++) {
		int chosen[64];
		float weight[64];
		lf_cpu_router_topk_f32(b->router + (size_t)t * E, 1, E, K, chosen, weight);
		const float *xt = b->xn + (size_t)t * H;
		for (int k = 0; k < K; k++) {
			int e = chosen[k];
			linear(b->gate, xt, L->w1[e], NULL, L->lw1 ? &L->lw1[e] : NULL, b->lora_tmp, 1, I, H);
			linear(b->up, xt, L->w3[e], NULL, L->lw3 ? &L->lw3[e] : NULL, b->lora_tmp, 1, I, H);
			lf_cpu_gated_act_f32(b->gate, b->gate, b->up, I, c->act);
			linear(b->o, b->gate, L->w2[e], NULL, L->lw2 ? &L->lw2[e] : NULL, b->lora_tmp, 1, H, I);
			for (int j = 0; j < H; j++)
				b->moe_acc[(size_t)t * H + j] += weight[k] * b->o[j];
		}
	}
	memcpy(b->o, b->moe_acc, (size_t)T * H * sizeof(float));
}

/* Layer l's part of a cache's keys or values. */
static float *cache_layer(float *base, const struct lf_kv_cache *kv, int l, int kd)
{
	return base + (size_t)l * kv->capacity * kd;
}

int lf_model_forward(const struct lf_model *m, struct lf_kv_cache *kv, struct lf_forward_buf *b, const int32_t *ids,
		     const int32_t *positions, int T, bool last_only, float *logits)
{
	struct lf_seq_in s = { kv, ids, positions, T };
	return lf_model_forward_batch(m, &s, 1, b, last_only, logits);
}

int lf_model_forward_batch(const struct lf_model *m, const struct lf_seq_in *seqs, int nseq, struct lf_forward_buf *b,
			   bool last_only, float *logits)
{
	const struct lf_model_config *c = &m->cfg;
	int H = c->hidden, I = c->intermediate, d = c->head_dim, nh = c->heads, nkv = c->kv_heads;
	int qd = nh * d, kd = nkv * d, half = c->rope.rotary_dim / 2, N = 0;
	for (int s = 0; s < nseq; s++) {
		const struct lf_seq_in *q = &seqs[s];
		int S = q->kv->len + q->T;
		if (q->T < 1 || S > q->kv->capacity || S > b->max_seq)
			return lf_fail("forward: %d tokens after %d do not fit (%d in all)", q->T, q->kv->len,
				       q->kv->capacity < b->max_seq ? q->kv->capacity : b->max_seq);
		N += q->T;
	}
	if (N > b->max_tokens)
		return lf_fail("forward: %d tokens at once, the buffers hold %d", N, b->max_tokens);
	if ((size_t)nseq * half > b->inv_cap) {
		b->inv_cap = (size_t)nseq * half;
		b->inv_freq = lf_realloc(b->inv_freq, b->inv_cap * sizeof *b->inv_freq);
		b->attn_factor = lf_realloc(b->attn_factor, (size_t)nseq * sizeof *b->attn_factor);
	}
	float embed_scale = c->embed_scale ? (float)sqrt((double)H) : 1.0f;
	for (int s = 0, row = 0; s < nseq; s++) {
		const struct lf_seq_in *q = &seqs[s];
		/* dynamic and longrope scale by the sequence length: the largest
		 * position + 1, as transformers */
		int32_t seq_len = q->kv->len + q->T;
		if (q->positions)
			for (int t = 0, mx = 0; t < q->T; t++)
				seq_len = mx = q->positions[t] + 1 > mx ? q->positions[t] + 1 : mx;
		b->attn_factor[s] = rope_frequencies(&c->rope, seq_len, b->inv_freq + (size_t)s * half);
		for (int t = 0; t < q->T; t++, row++) {
			if (q->ids[t] < 0 || q->ids[t] >= c->vocab)
				return lf_fail("forward: token id %d is outside the vocabulary (%d)", q->ids[t], c->vocab);
			const float *e = m->embed + (size_t)q->ids[t] * H;
			for (int j = 0; j < H; j++)
				b->x[(size_t)row * H + j] = e[j] * embed_scale;
			b->pos[row] = q->positions ? q->positions[t] : q->kv->len + t;
		}
	}
	float norm_offset = c->norm_plus_one ? 1.0f : 0.0f, eps = (float)c->eps;
	/* rows: the tokens still going through the layers.  When only each
	 * sequence's last logits are wanted, the last layer takes every token's
	 * keys and values for the cache, and then goes on with those last
	 * tokens alone (their queries, attention, MLP). */
	int rows = N;
	for (int l = 0; l < c->layers; l++) {
		const struct lf_layer *L = &m->layers[l];
		bool narrow = last_only && l == c->layers - 1 && nseq < N;
		lf_cpu_rmsnorm_f32(b->xn, b->x, L->in_norm, N, H, eps, norm_offset);
		{
			float *out[3] = { b->q, b->k, b->v };
			const float *w[3] = { L->q, L->k, L->v }, *bias[3] = { L->q_b, L->k_b, L->v_b };
			const struct lf_lora *lora[3] = { &L->lq, &L->lk, &L->lv };
			int out_f[3] = { qd, kd, kd }, skip = narrow; /* the queries come below */
			linear_multi(3 - skip, out + skip, b->xn, w + skip, bias + skip, lora + skip, b->lora_tmp, N,
				     out_f + skip, H);
		}
		if (c->qk_norm)
			lf_cpu_rmsnorm_f32(b->k, b->k, L->k_norm, N * nkv, d, eps, 0.0f);
		/* per sequence: the keys' rotary embedding; keys and values into
		 * the cache, laid out by head */
		for (int s = 0, row = 0; s < nseq; row += seqs[s++].T) {
			struct lf_kv_cache *kv = seqs[s].kv;
			int T = seqs[s].T;
			float *kc = cache_layer(kv->k, kv, l, kd), *vc = cache_layer(kv->v, kv, l, kd);
			float *kr = b->k + (size_t)row * kd, *vr = b->v + (size_t)row * kd;
			lf_cpu_rope_f32(kr, b->pos + row, T, nkv, d, kd, c->rope.rotary_dim, b->inv_freq + (size_t)s * half,
					b->attn_factor[s]);
			for (int g = 0; g < nkv; g++) {
				size_t at = ((size_t)g * kv->capacity + kv->len) * d;
				for (int t = 0; t < T; t++) {
					memcpy(kc + at + (size_t)t * d, kr + (size_t)t * kd + (size_t)g * d, d * sizeof(float));
					memcpy(vc + at + (size_t)t * d, vr + (size_t)t * kd + (size_t)g * d, d * sizeof(float));
				}
			}
		}
		if (narrow) {
			/* each sequence's last token moves up to row s */
			for (int s = 0, row = 0; s < nseq; s++) {
				row += seqs[s].T;
				memmove(b->x + (size_t)s * H, b->x + (size_t)(row - 1) * H, (size_t)H * sizeof(float));
				memmove(b->xn + (size_t)s * H, b->xn + (size_t)(row - 1) * H, (size_t)H * sizeof(float));
				b->pos[s] = b->pos[row - 1];
			}
			rows = nseq;
			linear(b->q, b->xn, L->q, L->q_b, &L->lq, b->lora_tmp, rows, qd, H);
		}
		if (c->qk_norm)
			lf_cpu_rmsnorm_f32(b->q, b->q, L->q_norm, rows * nh, d, eps, 0.0f);
		/* per sequence: the queries' rotary embedding, attention over the
		 * cache */
		struct lf_attn a = { nh, nkv, d, (float)c->attn_scale, (float)c->attn_softcap, c->window[l] };
		for (int s = 0, row = 0; s < nseq; s++) {
			struct lf_kv_cache *kv = seqs[s].kv;
			int T = rows == N ? seqs[s].T : 1, q0 = kv->len + seqs[s].T - T;
			float *qr = b->q + (size_t)row * qd;
			lf_cpu_rope_f32(qr, b->pos + row, T, nh, d, qd, c->rope.rotary_dim, b->inv_freq + (size_t)s * half,
					b->attn_factor[s]);
			lf_cpu_attention_cache_f32(b->att + (size_t)row * qd, qr, cache_layer(kv->k, kv, l, kd),
						   cache_layer(kv->v, kv, l, kd), kv->capacity, T, q0, &a);
			row += T;
		}
		if (c->sandwich_norms) {
			linear(b->o, b->att, L->o, L->o_b, &L->lo, b->lora_tmp, rows, H, qd);
			lf_cpu_rmsnorm_f32(b->o, b->o, L->post_attn_norm, rows, H, eps, norm_offset);
			for (size_t i = 0; i < (size_t)rows * H; i++)
				b->x[i] += b->o[i];
		} else {
			linear_residual(b->x, b->o, b->att, L->o, L->o_b, &L->lo, b->lora_tmp, rows, H, qd);
		}
		lf_cpu_rmsnorm_f32(b->xn, b->x, c->sandwich_norms ? L->pre_ff_norm : L->post_attn_norm, rows, H, eps,
				   norm_offset);
		if (c->arch == LF_ARCH_MIXTRAL) {
			moe(m, L, b, rows);
		} else {
			float *out[2] = { b->gate, b->up };
			const float *w[2] = { L->gate, L->up }, *bias[2] = { L->gate_b, L->up_b };
			const struct lf_lora *lora[2] = { &L->lgate, &L->lup };
			int out_f[2] = { I, I };
			linear_multi(2, out, b->xn, w, bias, lora, b->lora_tmp, rows, out_f, H);
			lf_cpu_gated_act_f32(b->gate, b->gate, b->up, (long)rows * I, c->act);
			if (!c->sandwich_norms) {
				linear_residual(b->x, b->o, b->gate, L->down, L->down_b, &L->ldown, b->lora_tmp, rows, H, I);
				continue;
			}
			linear(b->o, b->gate, L->down, L->down_b, &L->ldown, b->lora_tmp, rows, H, I);
		}
		if (c->sandwich_norms)
			lf_cpu_rmsnorm_f32(b->o, b->o, L->post_ff_norm, rows, H, eps, norm_offset);
		for (size_t i = 0; i < (size_t)rows * H; i++)
			b->x[i] += b->o[i];
	}
	for (int s = 0; s < nseq; s++)
		seqs[s].kv->len += seqs[s].T;
	/* the rows whose logits are wanted: every row, or each sequence's last
	 * (already moved up when the last layer narrowed to them) */
	int n = last_only ? nseq : N;
	if (last_only && rows == N)
		for (int s = 0, row = 0; s < nseq; s++) {
			row += seqs[s].T;
			memmove(b->x + (size_t)s * H, b->x + (size_t)(row - 1) * H, (size_t)H * sizeof(float));
		}
	lf_cpu_rmsnorm_f32(b->xn, b->x, m->norm, n, H, eps, norm_offset);
	lf_cpu_matmul_nt_f32(logits, b->xn, m->lm_head, n, c->vocab, H);
	if (c->final_softcap > 0)
		lf_cpu_softcap_f32(logits, (long)n * c->vocab, (float)c->final_softcap);
	return 0;
}

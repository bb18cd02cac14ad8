/*
 * backprop.c — the training pass (see backprop.h): gradient pointers that
 * mirror the model's weights, the per-layer forward that keeps its inner
 * activations, the loss over the label tokens (only the rows that have a
 * label go through the head), and the backward pass layer by layer, last
 * first.  The layer is transformers': x + o(attn(norm(x))), then
 * h + mlp(norm(h)), with gemma2's extra norms on both outputs.  Frozen
 * weights without an adapter can be packed for the products once, and a
 * LoRA layer's merged W + s B A once per forward for both of its products
 * (lf_backprop_pack_frozen).
 */
#include "backprop.h"
#include "error.h"

#include "cpu/gemm.h"
#include "cpu/grad.h"
#include "cpu/matmul.h"
#include "cpu/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A weight [out_f, in_f] in the product's panels: as B^T of x W^T and as
 * B of dy W.  Frozen: w itself, packed once.  Merged (a LoRA layer's W +
 * s B A, w being W): packed by each forward pass that merges it, both
 * forms where the layer's backward pass follows (bp->pack_merged_bwd),
 * and fresh until that uses its dy W.  Not every backward finds its form
 * fresh: a recomputed layer skips its down product when nothing reads
 * it, so down's backward merges again. */
struct lf_packed_weight {
	const float *w;
	int out_f, in_f;
	struct lf_cpu_packed_b fwd, bwd;
	bool fresh;
};

/* ---- gradient pointers ---- */

/* The gradient of the weight at w: the matching place in the gradient of
 * the tensor that holds it, or NULL when that tensor is frozen. */
static float *grad_of(const struct lf_model *m, float *const *grads, const float *w)
{
	if (!w)
		return NULL;
	for (size_t i = 0; i < m->ntensors; i++) {
		const struct lf_model_tensor *t = &m->tensors[i];
		if (w >= t->data && w < t->data + t->n)
			return grads[i] ? grads[i] + (w - t->data) : NULL;
	}
	return NULL;
}

static struct lf_lora_grad lora_grad_of(const struct lf_model *m, float *const *grads, const struct lf_lora *l)
{
	struct lf_lora_grad g = { NULL, NULL, NULL };
	if (l->r) {
		g.A = grad_of(m, grads, l->A);
		g.B = grad_of(m, grads, l->B);
		g.mag = grad_of(m, grads, l->mag);
	}
	return g;
}

static bool lora_trains(struct lf_lora_grad g)
{
	return g.A || g.B || g.mag;
}

static bool projection_trains(const float *gw, const float *gb, struct lf_lora_grad gl)
{
	return gw || gb || lora_trains(gl);
}

/* Whether a tensor of the layer's attention block (its input norm up to
 * the output projection, and sandwich norms' post-attention norm) is
 * trained. */
static bool attention_trains(const struct lf_layer_grad *G, bool sandwich_norms)
{
	return G->in_norm || G->q_norm || G->k_norm || (sandwich_norms && G->post_attn_norm) ||
	       projection_trains(G->q, G->q_b, G->lq) || projection_trains(G->k, G->k_b, G->lk) ||
	       projection_trains(G->v, G->v_b, G->lv) || projection_trains(G->o, G->o_b, G->lo);
}

/* Whether any tensor of the layer is trained. */
static bool layer_trains(const struct lf_layer_grad *G, int experts)
{
	const float *const w[] = { G->q, G->k, G->v, G->o, G->q_b, G->k_b, G->v_b, G->o_b, G->gate, G->up, G->down,
				   G->gate_b, G->up_b, G->down_b, G->in_norm, G->post_attn_norm, G->pre_ff_norm,
				   G->post_ff_norm, G->q_norm, G->k_norm, G->router };
	const struct lf_lora_grad l[] = { G->lq, G->lk, G->lv, G->lo, G->lgate, G->lup, G->ldown, G->lrouter };
	for (size_t i = 0; i < sizeof w / sizeof w[0]; i++)
		if (w[i])
			return true;
	for (size_t i = 0; i < sizeof l / sizeof l[0]; i++)
		if (lora_trains(l[i]))
			return true;
	for (int e = 0; G->w1 && e < experts; e++)
		if (G->w1[e] || G->w2[e] || G->w3[e] || lora_trains(G->lw1[e]) || lora_trains(G->lw2[e]) ||
		    lora_trains(G->lw3[e]))
			return true;
	return false;
}

void lf_model_grad_init(struct lf_model_grad *g, const struct lf_model *m, float *const *grads)
{
	g->embed = grad_of(m, grads, m->embed);
	g->norm = grad_of(m, grads, m->norm);
	g->lm_head = grad_of(m, grads, m->lm_head);
	g->layers = lf_calloc((size_t)m->cfg.layers, sizeof *g->layers);
	for (int l = 0; l < m->cfg.layers; l++) {
		const struct lf_layer *L = &m->layers[l];
		struct lf_layer_grad *G = &g->layers[l];
		const float *w[] = { L->q, L->k, L->v, L->o, L->q_b, L->k_b, L->v_b, L->o_b, L->gate, L->up, L->down,
				     L->gate_b, L->up_b, L->down_b, L->in_norm, L->post_attn_norm, L->pre_ff_norm,
				     L->post_ff_norm, L->q_norm, L->k_norm };
		float **d[] = { &G->q, &G->k, &G->v, &G->o, &G->q_b, &G->k_b, &G->v_b, &G->o_b, &G->gate, &G->up,
				&G->down, &G->gate_b, &G->up_b, &G->down_b, &G->in_norm, &G->post_attn_norm,
				&G->pre_ff_norm, &G->post_ff_norm, &G->q_norm, &G->k_norm };
		for (size_t i = 0; i < sizeof w / sizeof w[0]; i++)
			*d[i] = grad_of(m, grads, w[i]);
		G->lq = lora_grad_of(m, grads, &L->lq);
		G->lk = lora_grad_of(m, grads, &L->lk);
		G->lv = lora_grad_of(m, grads, &L->lv);
		G->lo = lora_grad_of(m, grads, &L->lo);
		G->lgate = lora_grad_of(m, grads, &L->lgate);
		G->lup = lora_grad_of(m, grads, &L->lup);
		G->ldown = lora_grad_of(m, grads, &L->ldown);
		int E = m->cfg.experts;
		if (m->cfg.arch != LF_ARCH_MIXTRAL)
			continue;
		G->router = grad_of(m, grads, L->router);
		G->lrouter = lora_grad_of(m, grads, &L->lrouter);
		G->w1 = lf_calloc((size_t)E, sizeof *G->w1);
		G->w2 = lf_calloc((size_t)E, sizeof *G->w2);
		G->w3 = lf_calloc((size_t)E, sizeof *G->w3);
		G->lw1 = lf_calloc((size_t)E, sizeof *G->lw1);
		G->lw2 = lf_calloc((size_t)E, sizeof *G->lw2);
		G->lw3 = lf_calloc((size_t)E, sizeof *G->lw3);
		for (int e = 0; e < E; e++) {
			G->w1[e] = grad_of(m, grads, L->w1[e]);
			G->w2[e] = grad_of(m, grads, L->w2[e]);
			G->w3[e] = grad_of(m, grads, L->w3[e]);
			if (L->lw1)
				G->lw1[e] = lora_grad_of(m, grads, &L->lw1[e]);
			if (L->lw2)
				G->lw2[e] = lora_grad_of(m, grads, &L->lw2[e]);
			if (L->lw3)
				G->lw3[e] = lora_grad_of(m, grads, &L->lw3[e]);
		}
	}
	g->lowest = 0;
	while (g->lowest < m->cfg.layers && !layer_trains(&g->layers[g->lowest], m->cfg.experts))
		g->lowest++;
}

void lf_model_grad_free(struct lf_model_grad *g, const struct lf_model *m)
{
	for (int l = 0; g->layers && l < m->cfg.layers; l++) {
		struct lf_layer_grad *G = &g->layers[l];
		void *p[] = { G->w1, G->w2, G->w3, G->lw1, G->lw2, G->lw3 };
		for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
			free(p[i]);
	}
	free(g->layers);
	g->layers = NULL;
}

/* ---- buffers ---- */

static float *floats(size_t n)
{
	return lf_calloc(n + 1, sizeof(float));
}

static void acts_alloc(struct lf_layer_acts *A, const struct lf_model_config *c, size_t N)
{
	size_t H = c->hidden, qd = (size_t)c->heads * c->head_dim, kd = (size_t)c->kv_heads * c->head_dim;
	bool moe = c->arch == LF_ARCH_MIXTRAL;
	size_t E = moe ? (size_t)c->experts : 0, K = moe ? (size_t)c->experts_per_tok : 0;
	/* the MLP's rows: a token each, or a (token, choice) pair each */
	size_t I = c->intermediate, P = moe ? N * K : N;
	A->xn1 = floats(N * H);
	A->q = floats(N * qd);
	A->k = floats(N * kd);
	A->v = floats(N * kd);
	A->q_raw = c->qk_norm ? floats(N * qd) : NULL;
	A->k_raw = c->qk_norm ? floats(N * kd) : NULL;
	A->att = floats(N * qd);
	A->ao = floats(N * H);
	A->xmid = floats(N * H);
	A->xn2 = floats(N * H);
	A->gate = floats(P * I);
	A->up = floats(P * I);
	A->h = floats(P * I);
	A->mo = floats(N * H);
	if (moe) {
		A->probs = floats(N * E);
		A->weights = floats(N * K);
		A->xe = floats(P * H);
		A->eo = floats(P * H);
		A->choice = lf_calloc(P + 1, sizeof *A->choice);
		A->pair_row = lf_calloc(P + 1, sizeof *A->pair_row);
		A->pair_of = lf_calloc(P + 1, sizeof *A->pair_of);
		A->expert_start = lf_calloc(E + 1, sizeof *A->expert_start);
	}
}

static void acts_free(struct lf_layer_acts *A)
{
	void *p[] = { A->xn1, A->q, A->k, A->v, A->q_raw, A->k_raw, A->att, A->ao, A->xmid, A->xn2, A->gate,
		      A->up, A->h, A->mo, A->probs, A->weights, A->xe, A->eo, A->choice, A->pair_row, A->pair_of,
		      A->expert_start };
	for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
		free(p[i]);
}

int lf_backprop_init(struct lf_backprop *bp, const struct lf_model *m, int max_tokens, int max_span,
		     bool checkpointing)
{
	const struct lf_model_config *c = &m->cfg;
	memset(bp, 0, sizeof *bp);
	if (max_tokens < 1 || max_span < 1 || max_span > max_tokens)
		return lf_fail("training buffers: bad sizes (%d tokens, spans of %d)", max_tokens, max_span);
	size_t N = (size_t)max_tokens, H = c->hidden, I = c->intermediate, qd = (size_t)c->heads * c->head_dim,
	       kd = (size_t)c->kv_heads * c->head_dim, S = (size_t)max_span;
	bool moe = c->arch == LF_ARCH_MIXTRAL;
	size_t E = moe ? (size_t)c->experts : 0, K = moe ? (size_t)c->experts_per_tok : 1, P = N * K;
	size_t wide = qd > I ? qd : I, r = m->max_rank > 0 ? (size_t)m->max_rank : 1;
	bp->max_tokens = max_tokens;
	bp->max_span = max_span;
	bp->checkpointing = checkpointing;
	bp->xs = floats((size_t)(c->layers + 1) * N * H);
	int nacts = checkpointing ? 1 : c->layers;
	bp->acts = lf_calloc((size_t)nacts, sizeof *bp->acts);
	for (int i = 0; i < nacts; i++)
		acts_alloc(&bp->acts[i], c, N);
	bp->dx = floats(N * H);
	bp->dh1 = floats(N * H);
	bp->dh2 = floats(N * H);
	bp->dmid = floats(P * (wide > H ? wide : H));
	bp->dq = floats(N * qd);
	bp->dk = floats(N * kd);
	bp->dv = floats(N * kd);
	bp->dqk_raw = floats(N * qd);
	bp->datt = floats(N * qd);
	bp->dgate = floats(P * I);
	bp->dup = floats(P * I);
	bp->lora_u = floats(P * r);
	bp->lora_t = floats(P * r);
	bp->model = m;
	if (m->max_rank > 0) { /* the merged weight of a LoRA layer */
		size_t wide_out = qd > I ? qd : I, wide_in = qd > I ? qd : I;
		wide_out = wide_out > H ? wide_out : H;
		wide_in = wide_in > H ? wide_in : H;
		if (moe)
			wide_out = wide_out > E ? wide_out : E;
		bp->wmerge = floats(wide_out * wide_in);
		bp->bscaled = floats(wide_out * (size_t)m->max_rank);
	}
	if (m->max_rank > 0) {
		size_t in = qd > I ? qd : I;
		in = in > H ? in : H;
		bp->xdrop = floats(P * in);
		bp->tdrop = floats(P * in);
	}
	if (m->max_rank > 0) { /* DoRA's scratch: rows of B A, norms, the undivided output and its gradient */
		size_t out = qd > I ? qd : I, in = qd > I ? qd : I;
		out = out > H ? out : H;
		in = in > H ? in : H;
		if (moe)
			out = out > E ? out : E;
		bp->dora_ba = floats(64 * in);
		bp->dora_wn = floats(out);
		bp->dora_z = floats(P * out);
		bp->dora_dz = floats(P * out);
	}
	if (moe) {
		bp->expert_load = lf_calloc(K * E + 2 * E + 1, sizeof *bp->expert_load);
		bp->dprobs = floats(N * E);
		bp->dweights = floats(N * K);
		bp->dxe = floats(P * H);
		bp->deo = floats(P * H);
	}
	bp->scores = floats(3 * S * S);
	/* the head: at most ~32M logits at once (128 MB) */
	size_t rows = ((size_t)1 << 25) / (size_t)c->vocab;
	bp->head_rows = (int)(rows < 1 ? 1 : rows > N ? N : rows);
	bp->xg = floats(N * H);
	bp->xf = floats(N * H);
	bp->dxf = floats(N * H);
	bp->logits = floats((size_t)bp->head_rows * c->vocab);
	bp->capped = c->final_softcap > 0 ? floats((size_t)bp->head_rows * c->vocab) : NULL;
	bp->pos = lf_calloc(N, sizeof *bp->pos);
	bp->targets = lf_calloc(N, sizeof *bp->targets);
	bp->rows = lf_calloc(N, sizeof *bp->rows);
	bp->head_targets = lf_calloc(N, sizeof *bp->head_targets);
	bp->span_start = lf_calloc(N, sizeof *bp->span_start);
	bp->span_len = lf_calloc(N, sizeof *bp->span_len);
	bp->inv_freq = floats((size_t)(c->rope.rotary_dim / 2 + 1));
	bp->rope = floats(N * (size_t)(c->rope.rotary_dim + 1));
	return 0;
}

void lf_backprop_free(struct lf_backprop *bp, const struct lf_model *m)
{
	int nacts = bp->checkpointing ? 1 : m->cfg.layers;
	for (int i = 0; bp->acts && i < nacts; i++)
		acts_free(&bp->acts[i]);
	float *p[] = { bp->xs, bp->dx, bp->dh1, bp->dh2, bp->dmid, bp->dq, bp->dk, bp->dv, bp->dqk_raw, bp->datt,
		       bp->dgate, bp->dup, bp->lora_u, bp->lora_t, bp->scores, bp->xg, bp->xf, bp->dxf, bp->logits,
		       bp->capped, bp->inv_freq, bp->rope, bp->dprobs, bp->dweights, bp->dxe, bp->deo,
		       bp->dora_ba, bp->dora_wn, bp->dora_z, bp->dora_dz, bp->xdrop, bp->tdrop, bp->wmerge, bp->bscaled };
	for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
		free(p[i]);
	free(bp->expert_load);
	free(bp->acts);
	free(bp->pos);
	free(bp->targets);
	free(bp->rows);
	free(bp->head_targets);
	free(bp->span_start);
	free(bp->span_len);
	for (int i = 0; i < bp->nfrozen; i++) {
		lf_cpu_packed_b_free(&bp->frozen[i].fwd);
		lf_cpu_packed_b_free(&bp->frozen[i].bwd);
	}
	for (int i = 0; i < bp->nmerged; i++) {
		lf_cpu_packed_b_free(&bp->merged[i].fwd);
		lf_cpu_packed_b_free(&bp->merged[i].bwd);
	}
	free(bp->frozen);
	free(bp->merged);
	memset(bp, 0, sizeof *bp);
}

/* ---- frozen weights, packed once ---- */

static const struct lf_lora *expert_lora(const struct lf_lora *arr, int e);

static int packed_by_size(const void *a, const void *b)
{
	const struct lf_packed_weight *x = a, *y = b;
	size_t nx = (size_t)x->out_f * x->in_f, ny = (size_t)y->out_f * y->in_f;
	return nx < ny ? 1 : nx > ny ? -1 : 0;
}

/* w into bp->frozen's candidates if it is frozen with no adapter, into
 * bp->merged's if linear_fwd merges its adapter (plain LoRA, no dropout) */
static void pack_candidate(struct lf_backprop *bp, const float *w, const struct lf_lora *lora, const float *gw,
			     int out_f, int in_f)
{
	struct lf_packed_weight f = { .w = w, .out_f = out_f, .in_f = in_f };
	if (!w)
		return;
	if (lora && lora->r) {
		if (!lora->mag && bp->wmerge && bp->lora_dropout <= 0)
			bp->merged[bp->nmerged++] = f;
	} else if (!gw)
		bp->frozen[bp->nfrozen++] = f;
}

/* Packs the largest of the n weights at f first, dropping those over the
 * budget (*used bytes of it spent) or without panels; with both: whether
 * each needs both forms packed.  Returns how many are kept, at f. */
static int pack_largest(struct lf_packed_weight *f, int n, size_t budget, size_t *used, bool both)
{
	qsort(f, (size_t)n, sizeof *f, packed_by_size);
	int kept = 0;
	for (int i = 0; i < n; i++) {
		struct lf_packed_weight x = f[i];
		size_t bytes = 2 * (size_t)x.out_f * x.in_f * sizeof(float);
		if (*used + bytes > budget)
			continue;
		if (lf_cpu_packed_b_init(&x.fwd, 1, x.out_f, x.in_f, x.w, x.in_f) < 0 ||
		    lf_cpu_packed_b_init(&x.bwd, 0, x.in_f, x.out_f, x.w, x.in_f) < 0) {
			lf_cpu_packed_b_free(&x.fwd);
			break; /* out of memory: the products pack as they go */
		}
		if (both ? !x.fwd.panels || !x.bwd.panels : !x.fwd.panels && !x.bwd.panels) {
			lf_cpu_packed_b_free(&x.fwd);
			lf_cpu_packed_b_free(&x.bwd);
			continue;
		}
		*used += bytes;
		f[kept++] = x;
	}
	return kept;
}

size_t lf_backprop_pack_frozen(struct lf_backprop *bp, const struct lf_model *m, const struct lf_model_grad *g,
			       size_t budget)
{
	const struct lf_model_config *c = &m->cfg;
	int H = c->hidden, I = c->intermediate, qd = c->heads * c->head_dim, kd = c->kv_heads * c->head_dim;
	int E = c->arch == LF_ARCH_MIXTRAL ? c->experts : 0;
	bp->frozen = lf_calloc((size_t)c->layers * (7 + 3 * (size_t)E) + 1, sizeof *bp->frozen);
	bp->merged = lf_calloc((size_t)c->layers * (7 + 3 * (size_t)E) + 1, sizeof *bp->merged);
	bp->nfrozen = bp->nmerged = 0;
	pack_candidate(bp, m->lm_head, NULL, g->lm_head, c->vocab, H);
	for (int l = 0; l < c->layers; l++) {
		const struct lf_layer *L = &m->layers[l];
		const struct lf_layer_grad *G = &g->layers[l];
		pack_candidate(bp, L->q, &L->lq, G->q, qd, H);
		pack_candidate(bp, L->k, &L->lk, G->k, kd, H);
		pack_candidate(bp, L->v, &L->lv, G->v, kd, H);
		pack_candidate(bp, L->o, &L->lo, G->o, H, qd);
		if (E) {
			for (int e = 0; e < E; e++) {
				pack_candidate(bp, L->w1[e], expert_lora(L->lw1, e), G->w1[e], I, H);
				pack_candidate(bp, L->w3[e], expert_lora(L->lw3, e), G->w3[e], I, H);
				pack_candidate(bp, L->w2[e], expert_lora(L->lw2, e), G->w2[e], H, I);
			}
			continue;
		}
		pack_candidate(bp, L->gate, &L->lgate, G->gate, I, H);
		pack_candidate(bp, L->up, &L->lup, G->up, I, H);
		pack_candidate(bp, L->down, &L->ldown, G->down, H, I);
	}
	size_t used = 0;
	bp->nfrozen = pack_largest(bp->frozen, bp->nfrozen, budget, &used, false);
	/* merged ones hold the merge of the forward that packed them: both
	   forms or none (the merge's buffer is reused by the next layer) */
	bp->nmerged = pack_largest(bp->merged, bp->nmerged, budget, &used, true);
	return used;
}

/* w's packed forms among the n at f, or NULL */
static struct lf_packed_weight *packed_weight(struct lf_packed_weight *f, int n, const float *w, int out_f, int in_f)
{
	for (int i = 0; i < n; i++)
		if (f[i].w == w && f[i].out_f == out_f && f[i].in_f == in_f)
			return &f[i];
	return NULL;
}

static const struct lf_packed_weight *frozen_weight(const struct lf_backprop *bp, const float *w, int out_f, int in_f)
{
	return packed_weight(bp->frozen, bp->nfrozen, w, out_f, in_f);
}

/* out = x W^T over N rows, through W's packed form where it has one */
static void product_x_wt(const struct lf_backprop *bp, float *out, const float *x, const float *w, int N, int out_f,
			 int in_f)
{
	const struct lf_packed_weight *f = N > LF_CPU_GEMV_MAX_M ? frozen_weight(bp, w, out_f, in_f) : NULL;
	if (f)
		lf_cpu_sgemm_packed_f32(0, N, 1.0f, x, in_f, &f->fwd, 0.0f, out, out_f);
	else
		lf_cpu_matmul_nt_f32(out, x, w, N, out_f, in_f);
}

/* dx = beta dx + dy W over N rows, likewise */
static void product_dy_w(const struct lf_backprop *bp, float *dx, const float *dy, const float *w, int N, int out_f,
			 int in_f, float beta)
{
	const struct lf_packed_weight *f = frozen_weight(bp, w, out_f, in_f);
	if (f)
		lf_cpu_sgemm_packed_f32(0, N, 1.0f, dy, out_f, &f->bwd, beta, dx, in_f);
	else
		lf_cpu_matmul_nn_f32(dx, dy, w, N, out_f, in_f, beta);
}

/* ---- LoRA dropout ---- */

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

uint64_t lf_lora_dropout_key(uint64_t noise_seed, const char *a_name)
{
	uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
	for (const unsigned char *c = (const unsigned char *)a_name; *c; c++)
		h = (h ^ *c) * 0x100000001b3ULL;
	return mix64(noise_seed ^ mix64(h + 0x9e3779b97f4a7c15ULL));
}

/* The dropout key of a LoRA pair's module, from the name of its A in the
 * model's tensor table (fused projections share one A, and one mask, as
 * PEFT's single module does). */
static uint64_t lora_key(const struct lf_backprop *bp, const struct lf_lora *l)
{
	const struct lf_model *m = bp->model;
	for (size_t i = 0; i < m->ntensors; i++)
		if (m->tensors[i].data == l->A)
			return lf_lora_dropout_key(bp->noise_seed, m->tensors[i].name);
	return lf_lora_dropout_key(bp->noise_seed, "");
}

/* out = x * keep / (1 - p), or keep / (1 - p) alone (x NULL), as
 * lf_lora_dropout_key describes keep. */
static void dropout_mask(const struct lf_backprop *bp, uint64_t key, const float *x, float *out, size_t n)
{
	float scale = 1.0f / (1.0f - bp->lora_dropout);
	#pragma omp parallel for if (n > 65536)
	for (size_t i = 0; i < n; i++) {
		double u = (double)(mix64(key + i) >> 11) * 0x1.0p-53;
		float k = u >= bp->lora_dropout ? scale : 0.0f;
		out[i] = x ? x[i] * k : k;
	}
}

/* ---- linear layers ---- */

/* DoRA's row norms ||W_j + scale (B A)_j|| (PEFT computes them in the
 * forward pass and detaches them), 64 rows of B A at a time. */
static void dora_norms(struct lf_backprop *bp, const float *w, const struct lf_lora *l, int out_f, int in_f)
{
	for (int j0 = 0; j0 < out_f; j0 += 64) {
		int k = out_f - j0 < 64 ? out_f - j0 : 64;
		lf_cpu_matmul_nn_f32(bp->dora_ba, l->B + (size_t)j0 * l->r, l->A, k, l->r, in_f, 0.0f);
		for (int j = 0; j < k; j++) {
			const float *wr = w + (size_t)(j0 + j) * in_f, *br = bp->dora_ba + (size_t)j * in_f;
			float ss = 0;
			for (int i = 0; i < in_f; i++) {
				float v = wr[i] + l->scale * br[i];
				ss += v * v;
			}
			bp->dora_wn[j0 + j] = sqrtf(ss);
		}
	}
}

/* A plain LoRA layer (no DoRA, no dropout) over enough rows runs as one
 * product with W + s B A, formed in bp->wmerge: cheaper than the thin
 * products through A and B once N (in + out) exceeds in x out. */
static const float *merged_weight(struct lf_backprop *bp, const float *w, const struct lf_lora *lora, int N,
				  int out_f, int in_f)
{
	if (!lora->r || lora->mag || !bp->wmerge || (bp->training && bp->lora_dropout > 0) ||
	    (double)N * (in_f + out_f) < (double)in_f * out_f)
		return NULL;
	size_t r = (size_t)lora->r;
	for (size_t i = 0; i < (size_t)out_f * r; i++)
		bp->bscaled[i] = lora->B[i] * lora->scale;
	memcpy(bp->wmerge, w, (size_t)out_f * in_f * sizeof(float));
	lf_cpu_matmul_nn_f32(bp->wmerge, bp->bscaled, lora->A, out_f, lora->r, in_f, 1.0f);
	return bp->wmerge;
}

/* out = x W^T (+ s B (A x)), scaled per output by DoRA's g = m / ||W + s B
 * A|| where the adapter has a magnitude, (+ b); u holds x A^T.  Under LoRA
 * dropout the adapter reads xd = dropout(x), and DoRA is PEFT's
 * W x + (g - 1) W xd + g s B A xd (+ b). */
static void linear_fwd(struct lf_backprop *bp, float *out, const float *x, const float *w, const float *b,
		       const struct lf_lora *lora, float *u, int N, int out_f, int in_f)
{
	const float *wm = merged_weight(bp, w, lora, N, out_f, in_f);
	struct lf_packed_weight *mp = wm ? packed_weight(bp->merged, bp->nmerged, w, out_f, in_f) : NULL;
	if (mp) { /* packed for this product, and for linear_bwd's dy (W + s B A) */
		lf_cpu_packed_b_repack(&mp->fwd, wm);
		if (bp->pack_merged_bwd)
			lf_cpu_packed_b_repack(&mp->bwd, wm);
		mp->fresh = bp->pack_merged_bwd;
		lf_cpu_sgemm_packed_f32(0, N, 1.0f, x, in_f, &mp->fwd, 0.0f, out, out_f);
	} else
		product_x_wt(bp, out, x, wm ? wm : w, N, out_f, in_f);
	bool drop = lora->r && bp->training && bp->lora_dropout > 0;
	const float *xa = x;
	if (drop) {
		dropout_mask(bp, lora_key(bp, lora), x, bp->xdrop, (size_t)N * in_f);
		xa = bp->xdrop;
	}
	if (lora->r && !wm) {
		lf_cpu_matmul_nt_f32(u, xa, lora->A, N, lora->r, in_f);
		if (!(lora->mag && drop))
			lf_cpu_matmul_nt_acc_f32(out, u, lora->B, N, out_f, lora->r, lora->scale);
	}
	if (lora->r && lora->mag) {
		float *g = bp->dora_wn, *z = bp->dora_z;
		dora_norms(bp, w, lora, out_f, in_f);
		for (int j = 0; j < out_f; j++)
			g[j] = lora->mag[j] / g[j];
		if (!drop) {
			for (int t = 0; t < N; t++)
				for (int j = 0; j < out_f; j++)
					out[(size_t)t * out_f + j] *= g[j];
		} else {
			lf_cpu_matmul_nt_f32(z, xa, w, N, out_f, in_f);
			for (int t = 0; t < N; t++)
				for (int j = 0; j < out_f; j++)
					out[(size_t)t * out_f + j] += (g[j] - 1.0f) * z[(size_t)t * out_f + j];
			lf_cpu_matmul_nt_f32(z, u, lora->B, N, out_f, lora->r);
			for (int t = 0; t < N; t++)
				for (int j = 0; j < out_f; j++)
					out[(size_t)t * out_f + j] += g[j] * lora->scale * z[(size_t)t * out_f + j];
		}
	}
	if (b)
		for (int t = 0; t < N; t++)
			for (int j = 0; j < out_f; j++)
				out[(size_t)t * out_f + j] += b[j];
}

/* Backward of linear_fwd given dy: dx = beta dx + dy W (+ the adapter's
 * part), or nothing with dx NULL; gradients of W, b, A, B and DoRA's
 * magnitude added where they are trained. */
static void linear_bwd(struct lf_backprop *bp, float *dx, float beta, const float *dy, const float *x, const float *w,
		       const struct lf_lora *lora, float *gw, float *gb, const struct lf_lora_grad *gl, float *u,
		       float *t, int N, int out_f, int in_f)
{
	if (gb)
		lf_cpu_bias_grad_f32(gb, dy, N, out_f);
	int r = lora->r;
	const float *xa = x; /* the adapter's input: x, or x with dropout */
	bool drop = r && bp->training && bp->lora_dropout > 0;
	uint64_t key = drop ? lora_key(bp, lora) : 0;
	if (drop) {
		dropout_mask(bp, key, x, bp->xdrop, (size_t)N * in_f);
		xa = bp->xdrop;
	}
	if (r)
		lf_cpu_matmul_nt_f32(u, xa, lora->A, N, r, in_f);
	const float *dyl = dy; /* the gradient of the adapter's output */
	if (r && lora->mag) {
		/* g = m / ||W + s B A|| held constant; z = xd W^T + s u B^T:
		 * dm = sum over rows of dy z / ||.||, and g dy goes into the
		 * adapter (and, without dropout, into x through W too) */
		float *z = bp->dora_z, *dz = bp->dora_dz;
		lf_cpu_matmul_nt_f32(z, xa, w, N, out_f, in_f);
		lf_cpu_matmul_nt_acc_f32(z, u, lora->B, N, out_f, r, lora->scale);
		dora_norms(bp, w, lora, out_f, in_f);
		for (int j = 0; j < out_f; j++) {
			float g = lora->mag[j] / bp->dora_wn[j];
			double dm = 0;
			for (int i = 0; i < N; i++) {
				dm += (double)dy[(size_t)i * out_f + j] * z[(size_t)i * out_f + j];
				dz[(size_t)i * out_f + j] = dy[(size_t)i * out_f + j] * g;
			}
			if (gl->mag)
				gl->mag[j] += (float)(dm / bp->dora_wn[j]);
		}
		dyl = dz;
		if (!drop)
			dy = dz;
	}
	/* dx = dy (W + s B A) in one product where linear_fwd merged it: packed
	   by linear_fwd, or merged again */
	struct lf_packed_weight *mp = dx ? packed_weight(bp->merged, bp->nmerged, w, out_f, in_f) : NULL;
	bool merged = mp && mp->fresh;
	if (merged) {
		lf_cpu_sgemm_packed_f32(0, N, 1.0f, dy, out_f, &mp->bwd, beta, dx, in_f);
		mp->fresh = false;
	} else if (dx) {
		const float *wm = merged_weight(bp, w, lora, N, out_f, in_f);
		merged = wm != NULL;
		product_dy_w(bp, dx, dy, wm ? wm : w, N, out_f, in_f, beta);
	}
	if (gw)
		lf_cpu_matmul_tn_acc_f32(gw, dy, x, N, out_f, in_f, 1.0f);
	if (!r)
		return;
	/* u = xd A^T, t = s dyl B: dx += t A, dB += s dyl^T u, dA += t^T xd */
	lf_cpu_matmul_nn_f32(t, dyl, lora->B, N, out_f, r, 0.0f);
	for (size_t i = 0; i < (size_t)N * r; i++)
		t[i] *= lora->scale;
	if (gl->B)
		lf_cpu_matmul_tn_acc_f32(gl->B, dyl, u, N, out_f, r, lora->scale);
	if (gl->A)
		lf_cpu_matmul_tn_acc_f32(gl->A, t, xa, N, r, in_f, 1.0f);
	if (merged || !dx)
		return;
	if (!drop) {
		lf_cpu_matmul_nn_f32(dx, t, lora->A, N, r, in_f, 1.0f);
		return;
	}
	/* through the dropout: dx += (t A (+ DoRA's (g - 1) dy W)) o keep / (1 - p) */
	lf_cpu_matmul_nn_f32(bp->tdrop, t, lora->A, N, r, in_f, 0.0f);
	if (lora->mag) {
		float *dz = bp->dora_dz;
		for (int j = 0; j < out_f; j++) {
			float g1 = lora->mag[j] / bp->dora_wn[j] - 1.0f;
			for (int i = 0; i < N; i++)
				dz[(size_t)i * out_f + j] = dy[(size_t)i * out_f + j] * g1;
		}
		lf_cpu_matmul_nn_f32(bp->tdrop, dz, w, N, out_f, in_f, 1.0f);
	}
	dropout_mask(bp, key, NULL, bp->xdrop, (size_t)N * in_f);
	for (size_t i = 0; i < (size_t)N * in_f; i++)
		dx[i] += bp->tdrop[i] * bp->xdrop[i];
}

/* ---- mixture of experts (mixtral) ---- */

/* The router (lf_cpu_router_topk_f32); the (token, choice) pairs grouped
 * by expert; with count, each choice's expert and the router probabilities
 * added to the load-balancing statistics. */
static void moe_route(const struct lf_model *m, const struct lf_layer *L, struct lf_backprop *bp,
		      struct lf_layer_acts *A, int N, bool count)
{
	const struct lf_model_config *c = &m->cfg;
	int H = c->hidden, E = c->experts, K = c->experts_per_tok;
	linear_fwd(bp, A->probs, A->xn2, L->router, NULL, &L->lrouter, bp->lora_u, N, E, H);
	lf_cpu_router_topk_f32(A->probs, N, E, K, A->choice, A->weights);
	for (int t = 0; t < N && count; t++) {
		const float *p = A->probs + (size_t)t * E;
		const int *ch = A->choice + (size_t)t * K;
		for (int k = 0; k < K; k++)
			bp->expert_load[(size_t)k * E + ch[k]] += 1;
		for (int e = 0; e < E; e++)
			bp->expert_load[(size_t)K * E + e] += p[e];
	}
	/* pairs grouped by expert, in token order within each */
	memset(A->expert_start, 0, (size_t)(E + 1) * sizeof *A->expert_start);
	for (int i = 0; i < N * K; i++)
		A->expert_start[A->choice[i] + 1]++;
	for (int e = 0; e < E; e++)
		A->expert_start[e + 1] += A->expert_start[e];
	int *fill = lf_calloc((size_t)E + 1, sizeof *fill);
	for (int t = 0; t < N; t++)
		for (int k = 0; k < K; k++) {
			int e = A->choice[(size_t)t * K + k], i = A->expert_start[e] + fill[e]++;
			A->pair_row[i] = t;
			A->pair_of[(size_t)t * K + k] = i;
			memcpy(A->xe + (size_t)i * H, A->xn2 + (size_t)t * H, (size_t)H * sizeof(float));
		}
	free(fill);
}

static const struct lf_lora *expert_lora(const struct lf_lora *arr, int e)
{
	static const struct lf_lora none = { 0 };
	return arr ? &arr[e] : &none;
}

/* mo = sum over each token's choices of weight x expert(xn2). */
static void moe_fwd(const struct lf_model *m, const struct lf_layer *L, struct lf_backprop *bp,
		    struct lf_layer_acts *A, int N, bool count)
{
	const struct lf_model_config *c = &m->cfg;
	int H = c->hidden, I = c->intermediate, E = c->experts, K = c->experts_per_tok;
	moe_route(m, L, bp, A, N, count);
	for (int e = 0; e < E; e++) {
		int i0 = A->expert_start[e], n = A->expert_start[e + 1] - i0;
		if (!n)
			continue;
		size_t oi = (size_t)i0 * I, oh = (size_t)i0 * H;
		linear_fwd(bp, A->gate + oi, A->xe + oh, L->w1[e], NULL, expert_lora(L->lw1, e), bp->lora_u, n, I, H);
		linear_fwd(bp, A->up + oi, A->xe + oh, L->w3[e], NULL, expert_lora(L->lw3, e), bp->lora_u, n, I, H);
		lf_cpu_gated_act_f32(A->h + oi, A->gate + oi, A->up + oi, (long)n * I, c->act);
		linear_fwd(bp, A->eo + oh, A->h + oi, L->w2[e], NULL, expert_lora(L->lw2, e), bp->lora_u, n, H, I);
	}
	memset(A->mo, 0, (size_t)N * H * sizeof(float));
	for (int t = 0; t < N; t++)
		for (int k = 0; k < K; k++) {
			const float *eo = A->eo + (size_t)A->pair_of[(size_t)t * K + k] * H;
			float w = A->weights[(size_t)t * K + k];
			for (int j = 0; j < H; j++)
				A->mo[(size_t)t * H + j] += w * eo[j];
		}
}

/* Backward of moe_fwd: dxn2 = the gradient of xn2 from dmo, through the
 * experts and the router (and the load-balancing loss, aux_grad[e] being
 * its gradient w.r.t. each router probability, NULL without one). */
static void moe_bwd(const struct lf_model *m, const struct lf_layer *L, const struct lf_layer_grad *G,
		    struct lf_backprop *bp, const struct lf_layer_acts *A, const float *dmo, float *dxn2, int N,
		    const double *aux_grad)
{
	const struct lf_model_config *c = &m->cfg;
	int H = c->hidden, I = c->intermediate, E = c->experts, K = c->experts_per_tok;
	/* the weighted sum: each pair's output gradient and its weight's */
	for (int t = 0; t < N; t++)
		for (int k = 0; k < K; k++) {
			size_t i = (size_t)A->pair_of[(size_t)t * K + k];
			float w = A->weights[(size_t)t * K + k], dot = 0;
			const float *d = dmo + (size_t)t * H, *eo = A->eo + i * H;
			for (int j = 0; j < H; j++) {
				bp->deo[i * H + j] = w * d[j];
				dot += d[j] * eo[j];
			}
			bp->dweights[(size_t)t * K + k] = dot;
		}
	for (int e = 0; e < E; e++) {
		int i0 = A->expert_start[e], n = A->expert_start[e + 1] - i0;
		if (!n)
			continue;
		size_t oi = (size_t)i0 * I, oh = (size_t)i0 * H;
		struct lf_lora_grad none = { NULL, NULL, NULL };
		linear_bwd(bp, bp->dmid + oi, 0.0f, bp->deo + oh, A->h + oi, L->w2[e], expert_lora(L->lw2, e), G->w2[e],
			   NULL, G->lw2 ? &G->lw2[e] : &none, bp->lora_u, bp->lora_t, n, H, I);
		lf_cpu_gated_act_bwd_f32(bp->dgate + oi, bp->dup + oi, bp->dmid + oi, A->gate + oi, A->up + oi,
					 (long)n * I, c->act);
		linear_bwd(bp, bp->dxe + oh, 0.0f, bp->dgate + oi, A->xe + oh, L->w1[e], expert_lora(L->lw1, e), G->w1[e],
			   NULL, G->lw1 ? &G->lw1[e] : &none, bp->lora_u, bp->lora_t, n, I, H);
		linear_bwd(bp, bp->dxe + oh, 1.0f, bp->dup + oi, A->xe + oh, L->w3[e], expert_lora(L->lw3, e), G->w3[e],
			   NULL, G->lw3 ? &G->lw3[e] : &none, bp->lora_u, bp->lora_t, n, I, H);
	}
	memset(dxn2, 0, (size_t)N * H * sizeof(float));
	for (int i = 0; i < N * K; i++) {
		float *d = dxn2 + (size_t)A->pair_row[i] * H;
		const float *g = bp->dxe + (size_t)i * H;
		for (int j = 0; j < H; j++)
			d[j] += g[j];
	}
	/* the router: w_k = p_k / P over the chosen, then the softmax */
	lf_cpu_router_bwd_f32(bp->dprobs, A->probs, A->choice, A->weights, bp->dweights, aux_grad, N, E, K);
	/* dxn2 += dlogits Wr (+ the router's adapter) */
	linear_bwd(bp, bp->dxe, 0.0f, bp->dprobs, A->xn2, L->router, &L->lrouter, G->router, NULL, &G->lrouter, bp->lora_u,
		   bp->lora_t, N, E, H);
	for (size_t i = 0; i < (size_t)N * H; i++)
		dxn2[i] += bp->dxe[i];
}

/* ---- one layer ---- */

static struct lf_attn attn_of(const struct lf_model_config *c, int l)
{
	struct lf_attn a = { c->heads, c->kv_heads, c->head_dim, (float)c->attn_scale, (float)c->attn_softcap,
			     c->window[l] };
	return a;
}

static void residual_add(float *out, const float *x, const float *y, size_t n)
{
	#pragma omp parallel for simd if (n > 65536)
	for (size_t i = 0; i < n; i++)
		out[i] = x[i] + y[i];
}

/* Layer l on x [N, H]: its inner activations into A, its output into xout
 * (NULL: not needed, a recomputation). */
static void layer_fwd(const struct lf_model *m, int l, struct lf_backprop *bp, struct lf_layer_acts *A,
		      const float *x, float *xout, int N)
{
	const struct lf_model_config *c = &m->cfg;
	const struct lf_layer *L = &m->layers[l];
	int H = c->hidden, I = c->intermediate, d = c->head_dim, nh = c->heads, nkv = c->kv_heads;
	int qd = nh * d, kd = nkv * d;
	float off = c->norm_plus_one ? 1.0f : 0.0f, eps = (float)c->eps;
	lf_cpu_rmsnorm_f32(A->xn1, x, L->in_norm, N, H, eps, off);
	linear_fwd(bp, A->q, A->xn1, L->q, L->q_b, &L->lq, bp->lora_u, N, qd, H);
	linear_fwd(bp, A->k, A->xn1, L->k, L->k_b, &L->lk, bp->lora_u, N, kd, H);
	linear_fwd(bp, A->v, A->xn1, L->v, L->v_b, &L->lv, bp->lora_u, N, kd, H);
	if (c->qk_norm) {
		memcpy(A->q_raw, A->q, (size_t)N * qd * sizeof(float));
		memcpy(A->k_raw, A->k, (size_t)N * kd * sizeof(float));
		lf_cpu_rmsnorm_f32(A->q, A->q_raw, L->q_norm, N * nh, d, eps, 0.0f);
		lf_cpu_rmsnorm_f32(A->k, A->k_raw, L->k_norm, N * nkv, d, eps, 0.0f);
	}
	lf_cpu_rope_apply_f32(A->q, bp->rope, N, nh, d, qd, c->rope.rotary_dim, 1.0f);
	lf_cpu_rope_apply_f32(A->k, bp->rope, N, nkv, d, kd, c->rope.rotary_dim, 1.0f);
	struct lf_attn a = attn_of(c, l);
	for (int s = 0; s < bp->nspans; s++) {
		size_t s0 = (size_t)bp->span_start[s];
		int len = bp->span_len[s];
		lf_cpu_attention_f32(A->att + s0 * qd, A->q + s0 * qd, A->k + s0 * kd, A->v + s0 * kd, len, len, 0, &a,
				     bp->scores);
	}
	linear_fwd(bp, A->ao, A->att, L->o, L->o_b, &L->lo, bp->lora_u, N, H, qd);
	const float *branch = A->ao;
	if (c->sandwich_norms) {
		lf_cpu_rmsnorm_f32(bp->dh1, A->ao, L->post_attn_norm, N, H, eps, off);
		branch = bp->dh1;
	}
	residual_add(A->xmid, x, branch, (size_t)N * H);
	lf_cpu_rmsnorm_f32(A->xn2, A->xmid, c->sandwich_norms ? L->pre_ff_norm : L->post_attn_norm, N, H, eps, off);
	if (c->arch == LF_ARCH_MIXTRAL) {
		moe_fwd(m, L, bp, A, N, xout != NULL);
	} else {
		linear_fwd(bp, A->gate, A->xn2, L->gate, L->gate_b, &L->lgate, bp->lora_u, N, I, H);
		linear_fwd(bp, A->up, A->xn2, L->up, L->up_b, &L->lup, bp->lora_u, N, I, H);
		lf_cpu_gated_act_f32(A->h, A->gate, A->up, (long)N * I, c->act);
		/* the down product feeds the residual, and the post-MLP norm whose
		 * backward reads it: a recomputation skips it unless that norm is
		 * there (a quarter of a llama layer's products) */
		if (xout || c->sandwich_norms)
			linear_fwd(bp, A->mo, A->h, L->down, L->down_b, &L->ldown, bp->lora_u, N, H, I);
	}
	if (!xout)
		return;
	branch = A->mo;
	if (c->sandwich_norms) {
		lf_cpu_rmsnorm_f32(bp->dh1, A->mo, L->post_ff_norm, N, H, eps, off);
		branch = bp->dh1;
	}
	residual_add(xout, A->xmid, branch, (size_t)N * H);
}

/* Backward of layer l: dx holds the gradient of its output and becomes
 * that of its input x, unless input_grad is false (the lowest layer
 * trained, with the embedding frozen): then only the layer's own gradients
 * are made and dx is left as scratch. */
static void layer_bwd(const struct lf_model *m, int l, struct lf_backprop *bp, const struct lf_layer_acts *A,
		      const float *x, float *dx, const struct lf_layer_grad *G, int N, const double *aux_grad,
		      bool input_grad)
{
	const struct lf_model_config *c = &m->cfg;
	const struct lf_layer *L = &m->layers[l];
	int H = c->hidden, I = c->intermediate, d = c->head_dim, nh = c->heads, nkv = c->kv_heads;
	int qd = nh * d, kd = nkv * d;
	float off = c->norm_plus_one ? 1.0f : 0.0f, eps = (float)c->eps;
	size_t NH = (size_t)N * H;
	/* the MLP: out = xmid + [norm](down(act(gate) * up)) */
	const float *dmo = dx;
	if (c->sandwich_norms) {
		memset(bp->dh1, 0, NH * sizeof(float));
		lf_cpu_rmsnorm_bwd_f32(bp->dh1, G->post_ff_norm, dx, A->mo, L->post_ff_norm, N, H, eps, off);
		dmo = bp->dh1;
	}
	if (c->arch == LF_ARCH_MIXTRAL) {
		moe_bwd(m, L, G, bp, A, dmo, bp->dh2, N, aux_grad);
	} else {
		linear_bwd(bp, bp->dmid, 0.0f, dmo, A->h, L->down, &L->ldown, G->down, G->down_b, &G->ldown,
			   bp->lora_u, bp->lora_t, N, H, I);
		lf_cpu_gated_act_bwd_f32(bp->dgate, bp->dup, bp->dmid, A->gate, A->up, (long)N * I, c->act);
		linear_bwd(bp, bp->dh2, 0.0f, bp->dgate, A->xn2, L->gate, &L->lgate, G->gate, G->gate_b, &G->lgate,
			   bp->lora_u, bp->lora_t, N, I, H);
		linear_bwd(bp, bp->dh2, 1.0f, bp->dup, A->xn2, L->up, &L->lup, G->up, G->up_b, &G->lup, bp->lora_u,
			   bp->lora_t, N, I, H);
	}
	lf_cpu_rmsnorm_bwd_f32(dx, c->sandwich_norms ? G->pre_ff_norm : G->post_attn_norm, bp->dh2, A->xmid,
			       c->sandwich_norms ? L->pre_ff_norm : L->post_attn_norm, N, H, eps, off);
	/* attention: xmid = x + [norm](o(attn(rope(q), rope(k), v))), with
	 * nothing to do when none of it trains and x needs no gradient */
	if (!input_grad && !attention_trains(G, c->sandwich_norms))
		return;
	const float *dao = dx;
	if (c->sandwich_norms) {
		memset(bp->dh1, 0, NH * sizeof(float));
		lf_cpu_rmsnorm_bwd_f32(bp->dh1, G->post_attn_norm, dx, A->ao, L->post_attn_norm, N, H, eps, off);
		dao = bp->dh1;
	}
	linear_bwd(bp, bp->datt, 0.0f, dao, A->att, L->o, &L->lo, G->o, G->o_b, &G->lo, bp->lora_u, bp->lora_t, N, H, qd);
	memset(bp->dk, 0, (size_t)N * kd * sizeof(float));
	memset(bp->dv, 0, (size_t)N * kd * sizeof(float));
	struct lf_attn a = attn_of(c, l);
	for (int s = 0; s < bp->nspans; s++) {
		size_t s0 = (size_t)bp->span_start[s];
		int len = bp->span_len[s];
		lf_cpu_attention_bwd_f32(bp->dq + s0 * qd, bp->dk + s0 * kd, bp->dv + s0 * kd, bp->datt + s0 * qd,
					 A->q + s0 * qd, A->k + s0 * kd, A->v + s0 * kd, A->att + s0 * qd, len, len, 0,
					 &a, bp->scores);
	}
	lf_cpu_rope_apply_f32(bp->dq, bp->rope, N, nh, d, qd, c->rope.rotary_dim, -1.0f);
	lf_cpu_rope_apply_f32(bp->dk, bp->rope, N, nkv, d, kd, c->rope.rotary_dim, -1.0f);
	if (c->qk_norm) {
		memset(bp->dqk_raw, 0, (size_t)N * qd * sizeof(float));
		lf_cpu_rmsnorm_bwd_f32(bp->dqk_raw, G->q_norm, bp->dq, A->q_raw, L->q_norm, N * nh, d, eps, 0.0f);
		memcpy(bp->dq, bp->dqk_raw, (size_t)N * qd * sizeof(float));
		memset(bp->dqk_raw, 0, (size_t)N * kd * sizeof(float));
		lf_cpu_rmsnorm_bwd_f32(bp->dqk_raw, G->k_norm, bp->dk, A->k_raw, L->k_norm, N * nkv, d, eps, 0.0f);
		memcpy(bp->dk, bp->dqk_raw, (size_t)N * kd * sizeof(float));
	}
	/* without the input's gradient (or the input norm's), a projection
	 * with nothing trained has nothing to do */
	bool dxn1 = input_grad || G->in_norm;
	float *dh2 = dxn1 ? bp->dh2 : NULL;
	if (dxn1 || projection_trains(G->q, G->q_b, G->lq))
		linear_bwd(bp, dh2, 0.0f, bp->dq, A->xn1, L->q, &L->lq, G->q, G->q_b, &G->lq, bp->lora_u, bp->lora_t, N,
			   qd, H);
	if (dxn1 || projection_trains(G->k, G->k_b, G->lk))
		linear_bwd(bp, dh2, 1.0f, bp->dk, A->xn1, L->k, &L->lk, G->k, G->k_b, &G->lk, bp->lora_u, bp->lora_t, N,
			   kd, H);
	if (dxn1 || projection_trains(G->v, G->v_b, G->lv))
		linear_bwd(bp, dh2, 1.0f, bp->dv, A->xn1, L->v, &L->lv, G->v, G->v_b, &G->lv, bp->lora_u, bp->lora_t, N,
			   kd, H);
	if (dxn1)
		lf_cpu_rmsnorm_bwd_f32(dx, G->in_norm, bp->dh2, x, L->in_norm, N, H, eps, off);
}

/* ---- the head and the loss ---- */

/* Loss over the rows that have a target; dx = its gradient w.r.t. the last
 * layer's output x (zero on rows without a target); g NULL: the loss only.
 * Returns the number of targets. */
static long head_fwd_bwd(const struct lf_model *m, struct lf_backprop *bp, const struct lf_model_grad *g,
			 const float *x, float *dx, int N, float scale, double *loss_sum)
{
	const struct lf_model_config *c = &m->cfg;
	int H = c->hidden, V = c->vocab;
	float off = c->norm_plus_one ? 1.0f : 0.0f, eps = (float)c->eps;
	int n = 0;
	for (int t = 0; t < N; t++)
		if (bp->targets[t] >= 0)
			bp->rows[n++] = t;
	if (g)
		memset(dx, 0, (size_t)N * H * sizeof(float));
	if (!n)
		return 0;
	for (int i = 0; i < n; i++)
		memcpy(bp->xg + (size_t)i * H, x + (size_t)bp->rows[i] * H, (size_t)H * sizeof(float));
	lf_cpu_rmsnorm_f32(bp->xf, bp->xg, m->norm, n, H, eps, off);
	int32_t *tg = bp->head_targets;
	for (int i = 0; i < n; i++)
		tg[i] = bp->targets[bp->rows[i]];
	for (int i0 = 0; i0 < n; i0 += bp->head_rows) {
		int k = n - i0 < bp->head_rows ? n - i0 : bp->head_rows;
		const float *xf = bp->xf + (size_t)i0 * H;
		product_x_wt(bp, bp->logits, xf, m->lm_head, k, V, H);
		if (c->final_softcap > 0) {
			lf_cpu_softcap_f32(bp->logits, (long)k * V, (float)c->final_softcap);
			memcpy(bp->capped, bp->logits, (size_t)k * V * sizeof(float));
		}
		lf_cpu_cross_entropy_f32(bp->logits, tg + i0, k, V, scale, loss_sum);
		if (!g)
			continue;
		if (c->final_softcap > 0)
			lf_cpu_softcap_bwd_f32(bp->logits, bp->capped, (long)k * V, (float)c->final_softcap);
		product_dy_w(bp, bp->dxf + (size_t)i0 * H, bp->logits, m->lm_head, k, V, H, 0.0f);
		if (g->lm_head)
			lf_cpu_matmul_tn_acc_f32(g->lm_head, bp->logits, xf, k, V, H, 1.0f);
	}
	if (!g)
		return n;
	memset(bp->dh1, 0, (size_t)n * H * sizeof(float));
	lf_cpu_rmsnorm_bwd_f32(bp->dh1, g->norm, bp->dxf, bp->xg, m->norm, n, H, eps, off);
	for (int i = 0; i < n; i++)
		memcpy(dx + (size_t)bp->rows[i] * H, bp->dh1 + (size_t)i * H, (size_t)H * sizeof(float));
	return n;
}

/* ---- the step ---- */

long lf_train_row_label_tokens(const struct lf_train_row *r)
{
	long n = 0;
	for (int t = 0; t < r->T; t++)
		n += r->labels[t] != -100;
	return n;
}

int lf_train_rows_check(const struct lf_model *m, const struct lf_train_row *rows, int nrows, int max_tokens,
			int max_span, int *N)
{
	*N = 0;
	for (int r = 0; r < nrows; r++) {
		const struct lf_train_row *q = &rows[r];
		if (q->T < 1)
			return lf_fail("row %d: no tokens", r);
		long sum = 0;
		for (int s = 0; q->spans && s < q->nspans; s++) {
			if (q->spans[s] < 1 || q->spans[s] > (uint32_t)max_span)
				return lf_fail("row %d: span %d of %u tokens (1 to %d)", r, s, q->spans[s], max_span);
			sum += q->spans[s];
		}
		if (q->spans ? sum != q->T : q->T > max_span)
			return lf_fail("row %d: spans of %ld tokens for %d tokens (longest %d)", r, sum, q->T,
				       max_span);
		for (int t = 0; t < q->T; t++) {
			if (q->ids[t] < 0 || q->ids[t] >= m->cfg.vocab)
				return lf_fail("row %d: token id %d is outside the vocabulary (%d)", r, q->ids[t],
					       m->cfg.vocab);
			if (q->labels[t] >= m->cfg.vocab || (q->labels[t] < 0 && q->labels[t] != -100))
				return lf_fail("row %d: label %d is neither a token id nor -100", r, q->labels[t]);
		}
		*N += q->T;
	}
	if (*N > max_tokens)
		return lf_fail("a micro-batch of %d tokens; the buffers hold %d", *N, max_tokens);
	return 0;
}

/* Embeddings, positions, RoPE frequencies, targets (labels shifted within
 * each row) and attention spans of a micro-batch; the number of tokens. */
static int prepare(struct lf_backprop *bp, const struct lf_model *m, const struct lf_train_row *rows, int nrows,
		   bool training)
{
	const struct lf_model_config *c = &m->cfg;
	int N, H = c->hidden, half = c->rope.rotary_dim / 2;
	if (lf_train_rows_check(m, rows, nrows, bp->max_tokens, bp->max_span, &N) < 0)
		return -1;
	float embed_scale = c->embed_scale ? (float)sqrt((double)H) : 1.0f;
	for (int r = 0, row0 = 0; r < nrows; row0 += rows[r].T, r++) {
		const struct lf_train_row *q = &rows[r];
		int seq_len = 0;
		for (int t = 0; t < q->T; t++) {
			int32_t p = q->positions ? q->positions[t] : t;
			bp->pos[row0 + t] = p;
			seq_len = p + 1 > seq_len ? p + 1 : seq_len;
			bp->targets[row0 + t] = t + 1 < q->T ? q->labels[t + 1] : -100;
			const float *e = m->embed + (size_t)q->ids[t] * H;
			float *xr = bp->xs + (size_t)(row0 + t) * H;
			for (int j = 0; j < H; j++)
				xr[j] = e[j];
		}
		/* each row's frequencies (dynamic scaling goes by its length),
		 * turned into its tokens' rows of the rope table */
		float factor = lf_model_rope_frequencies(m, seq_len, bp->inv_freq);
		lf_cpu_rope_table_f32(bp->rope + (size_t)row0 * 2 * half, bp->pos + row0, q->T, half, bp->inv_freq, factor);
	}
	/* NEFTune: uniform noise on the embeddings (before gemma's scaling),
	 * training only */
	bp->training = training;
	if (training && bp->neftune_mag > 0) {
		uint64_t key = mix64(bp->noise_seed ^ 0x6e656674756e65ULL);
		for (size_t i = 0; i < (size_t)N * H; i++)
			bp->xs[i] += bp->neftune_mag * (float)(2.0 * ((double)(mix64(key + i) >> 11) * 0x1.0p-53) - 1.0);
	}
	if (embed_scale != 1.0f)
		for (size_t i = 0; i < (size_t)N * H; i++)
			bp->xs[i] *= embed_scale;
	/* the spans attention stays within, in token order */
	bp->nspans = 0;
	for (int r = 0, row0 = 0; r < nrows; row0 += rows[r].T, r++) {
		int k = rows[r].spans ? rows[r].nspans : 1;
		for (int s = 0, start = row0; s < k; s++) {
			int len = rows[r].spans ? (int)rows[r].spans[s] : rows[r].T;
			bp->span_start[bp->nspans] = start;
			bp->span_len[bp->nspans++] = len;
			start += len;
		}
	}
	return N;
}

int lf_backprop_step(struct lf_backprop *bp, const struct lf_model *m, const struct lf_model_grad *g,
		     const struct lf_train_row *rows, int nrows, float scale, double *loss_sum)
{
	const struct lf_model_config *c = &m->cfg;
	int N = prepare(bp, m, rows, nrows, true), H = c->hidden;
	if (N < 0)
		return -1;
	size_t NH = (size_t)N * H;
	float embed_scale = c->embed_scale ? (float)sqrt((double)H) : 1.0f;
	/* forward */
	bool moe = c->arch == LF_ARCH_MIXTRAL;
	int E = c->experts, K = c->experts_per_tok;
	if (moe)
		memset(bp->expert_load, 0, (size_t)(K * E + E) * sizeof *bp->expert_load);
	for (int l = 0; l < c->layers; l++) {
		bp->pack_merged_bwd = !bp->checkpointing && (g->embed || l >= g->lowest);
		layer_fwd(m, l, bp, &bp->acts[bp->checkpointing ? 0 : l], bp->xs + (size_t)l * NH,
			  bp->xs + (size_t)(l + 1) * NH, N);
	}
	bp->pack_merged_bwd = false;
	head_fwd_bwd(m, bp, g, bp->xs + (size_t)c->layers * NH, bp->dx, N, scale, loss_sum);
	/* mixtral's load-balancing loss over every layer's routing (transformers'
	 * load_balancing_loss_func): E * sum over choices k and experts e of
	 * (share of the tokens whose choice k is e) * (mean probability of e);
	 * its gradient w.r.t. each router probability is the same everywhere */
	double *aux = NULL;
	if (moe && bp->moe_aux_coef != 0) {
		double n = (double)c->layers * N, loss = 0, *aux_grad = bp->expert_load + (size_t)(K + 1) * E;
		for (int e = 0; e < E; e++) {
			double share = 0;
			for (int k = 0; k < K; k++)
				share += bp->expert_load[(size_t)k * E + e] / n;
			loss += share * bp->expert_load[(size_t)K * E + e] / n;
			aux_grad[e] = bp->moe_aux_coef * E * share / n;
		}
		bp->moe_aux_total += bp->moe_aux_coef * E * loss;
		aux = aux_grad;
	}
	/* backward, last layer first, down to the lowest one trained (below it
	 * nothing needs a gradient unless the embedding trains) */
	for (int l = c->layers - 1; l >= (g->embed ? 0 : g->lowest); l--) {
		struct lf_layer_acts *A = &bp->acts[bp->checkpointing ? 0 : l];
		const float *x = bp->xs + (size_t)l * NH;
		if (bp->checkpointing) {
			bp->pack_merged_bwd = true;
			layer_fwd(m, l, bp, A, x, NULL, N);
			bp->pack_merged_bwd = false;
		}
		layer_bwd(m, l, bp, A, x, bp->dx, &g->layers[l], N, aux, g->embed || l > g->lowest);
	}
	/* the embedding's gradient; none for the padding token's row, as
	 * transformers' nn.Embedding(padding_idx=pad_token_id) */
	if (g->embed) {
		for (int r = 0, row0 = 0; r < nrows; row0 += rows[r].T, r++)
			for (int t = 0; t < rows[r].T; t++) {
				if (rows[r].ids[t] == c->pad_id)
					continue;
				float *ge = g->embed + (size_t)rows[r].ids[t] * H;
				const float *d = bp->dx + (size_t)(row0 + t) * H;
				for (int j = 0; j < H; j++)
					ge[j] += d[j] * embed_scale;
			}
	}
	return 0;
}

int lf_backprop_loss(struct lf_backprop *bp, const struct lf_model *m, const struct lf_train_row *rows, int nrows,
		     double *loss_sum, long *targets)
{
	const struct lf_model_config *c = &m->cfg;
	int N = prepare(bp, m, rows, nrows, false);
	if (N < 0)
		return -1;
	size_t NH = (size_t)N * c->hidden;
	for (int l = 0; l < c->layers; l++)
		layer_fwd(m, l, bp, &bp->acts[bp->checkpointing ? 0 : l], bp->xs + (size_t)l * NH,
			  bp->xs + (size_t)(l + 1) * NH, N);
	*targets += head_fwd_bwd(m, bp, NULL, bp->xs + (size_t)c->layers * NH, NULL, N, 1.0f, loss_sum);
	return 0;
}

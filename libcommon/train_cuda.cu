/*
 * train_cuda.cu — the training pass on the GPU (train_cuda.h): backprop.c's
 * forward, loss and backward, op for op, over device memory, and the
 * optimizer step.  Owns the device arena (weights, gradients, moments,
 * activations) and the device view of the model: a struct lf_model whose
 * pointers are the device copies of the host model's tensors.
 */
extern "C" {
#include "error.h"
#include "train_cuda.h"
}

#include "cpu/bf16.h"
#include "cpu/grad.h"
#include "cuda/attention.h"
#include "cuda/convert.h"
#include "cuda/cuda_check.h"
#include "cuda/elementwise.h"
#include "cuda/gemm.h"
#include "cuda/loss.h"
#include "cuda/ops.h"
#include "cuda/optim.h"

#include <dlfcn.h>
#include <math.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The inner activations of one layer (backprop.h's struct lf_layer_acts)
 * and the attention's log-sum-exp per (token, head).  A mixture of experts
 * keeps its (token, choice) pairs grouped by expert, as backprop.c: gate,
 * up, h, xe and eo by pair; the routing is made on the host (the _h
 * arrays) from the router's logits and copied to the device. */
struct acts {
	float *xn1, *q, *k, *v, *q_raw, *k_raw, *att, *ao, *xmid, *xn2, *gate, *up, *h, *mo, *lse;
	float *probs, *weights, *xe, *eo;  /* [N, E], [N, K], [N K, H], [N K, H] */
	int32_t *pair_row_d, *pair_of_d;   /* [N K] */
	float *probs_h, *weights_h;        /* host: the router's softmax, the choices' weights */
	int *choice, *expert_start;        /* host: [N, K], [E + 1] */
	int32_t *pair_row, *pair_of;       /* host: [N K] */
};

/* A block of device memory carved into pieces (an arena). */
struct dmem {
	char *base;
	size_t used;
};

/* A linear layer's weight as the GPU holds it: f32 (the f32 mode, or a
 * trained tensor's master copy; NULL for a frozen weight in the bf16 mode)
 * and bf16 (the bf16 mode's copy the products read). */
struct wt {
	const float *f;
	const uint16_t *b;
};

struct gpu_layer {
	struct wt q, k, v, o, gate, up, down;
	struct wt router, *w1, *w2, *w3; /* mixtral: per expert */
};

/* what a tensor is used for: the weight of a product, the embedding lookup */
enum { USE_GEMM = 1, USE_LOOKUP = 2 };

struct lf_cuda_train {
	const struct lf_model *host;
	struct lf_model dm;      /* the device view: norms, biases, adapters, the embedding */
	struct gpu_layer *gl;    /* the device view: the layers' linear weights */
	struct wt head;          /* ... and the head's */
	struct lf_model_grad g;  /* the gradients' device pointers */
	bool bf16;               /* the bf16 mode: products read bf16 copies */
	float **dt;              /* per tensor of the table: its f32 device copy, or NULL */
	uint16_t **bt;           /* ... its bf16 copy (the bf16 mode's products), or NULL */
	int *use;                /* ... USE_GEMM | USE_LOOKUP */
	size_t *grad_at, gn;     /* the gradients: where each tensor's are in t->grads (SIZE_MAX: frozen) */
	size_t *host_at;         /* ... and in the caller's host block (lf_cuda_train_get_grads) */
	size_t *mom_at, mn;      /* AdamW's moments: where each tensor's are (SIZE_MAX: not this process's) */
	size_t *follow;          /* placement: the tensor placed right after each one, or SIZE_MAX */
	bool *follower;          /* ... whether a tensor is placed after another (not where the table puts it) */
	float *grads, *mom1, *mom2;
	struct dmem wmem, amem; /* the arenas: weights and optimizer; activations (max_tokens) */
	cudaStream_t s;
	cublasLtHandle_t lt;
	lf_cuda_gemm *gemm;
	void *ws;
	int max_tokens, max_span, head_rows;
	bool checkpointing, training;
	float *xs;
	struct acts *acts;
	float *dx, *dh1, *dh2, *dmid, *dq, *dk, *dv, *dqk_raw, *datt, *dgate, *dup, *lora_u, *lora_t, *xdrop, *tdrop;
	float *xg, *xf, *dxf, *logits, *capped, *inv_freq_d;
	uint16_t *xb, *yb, *lb; /* the bf16 mode: a product's input, output gradient, the head's logits' gradient */
	/* mixtral: the experts' backward scratch (device; host), the router
	 * load-balancing loss's coefficient, statistics and sum since set */
	float *deo, *dxe, *dweights, *dprobs, *dweights_h, *dprobs_h;
	double *expert_load, moe_aux_total;
	float moe_aux_coef;
	struct lf_lora *expert_loras; /* the device view's per-expert adapters, one block */
	int32_t *ids_d, *pos_d, *rows_d, *head_targets_d;
	double *loss_d, *norm_sq_d, *total_d;
	long *count_d;
	float *coef_d;
	/* host side of a micro-batch */
	int32_t *ids, *pos, *targets, *rows, *head_targets;
	int *span_start, *span_len, nspans;
	int *row_len, nrows; /* the call's rows (sequences): their tokens, in order */
	const struct lf_cuda_seq_in *cached; /* lf_cuda_forward_batch's sequences, during the call */
	float *inv_freq, *attn_factor;
	float lora_dropout, neftune_mag;
	uint64_t noise_seed;
	long lora_shared; /* forwards and backwards of adapters that shared x A^T (lora_share) */
	char device[300];
	/* data parallel (lf_cuda_train_join): the group's NCCL communicator, a
	 * stream for its sums, and each layer's range of the gradient block
	 * (empty: none; all empty: the whole block is summed at the end) */
	ncclComm_t comm;
	cudaStream_t cs;
	cudaEvent_t *ev; /* layers + 2 */
	size_t *layer_lo, *layer_hi;
	bool by_layer, sync;
};

/* data parallel (defined with the NCCL group, below) */
static void sum_range(struct lf_cuda_train *t, size_t lo, size_t hi, cudaEvent_t e);
static void sum_rest(struct lf_cuda_train *t);

/* ---- the arenas ----
 * Two cudaMallocs, each sized by a first pass of the same carving (base
 * NULL: only count); every piece 256-byte aligned, as cuBLASLt likes.  The
 * weights' arena is made once; the activations' again when a call needs
 * more tokens (lf_cuda_train_reserve). */

static void *carve(struct dmem *a, size_t bytes)
{
	size_t at = a->used;
	a->used += (bytes + 255) / 256 * 256;
	return a->base ? a->base + at : NULL;
}

static float *carve_f(struct dmem *a, size_t n)
{
	return (float *)carve(a, (n ? n : 1) * sizeof(float));
}

static void acts_carve(struct lf_cuda_train *t, struct dmem *a, struct acts *A, size_t N)
{
	const struct lf_model_config *c = &t->host->cfg;
	bool moe = c->arch == LF_ARCH_MIXTRAL;
	size_t H = c->hidden, I = c->intermediate, qd = (size_t)c->heads * c->head_dim,
	       kd = (size_t)c->kv_heads * c->head_dim, E = moe ? (size_t)c->experts : 0,
	       K = moe ? (size_t)c->experts_per_tok : 1, P = N * K;
	A->xn1 = carve_f(a, N * H);
	A->q = carve_f(a, N * qd);
	A->k = carve_f(a, N * kd);
	A->v = carve_f(a, N * kd);
	A->q_raw = c->qk_norm ? carve_f(a, N * qd) : NULL;
	A->k_raw = c->qk_norm ? carve_f(a, N * kd) : NULL;
	A->att = carve_f(a, N * qd);
	A->ao = c->sandwich_norms ? carve_f(a, N * H) : NULL; /* else added to x in o's product */
	A->xmid = carve_f(a, N * H);
	A->xn2 = carve_f(a, N * H);
	A->gate = carve_f(a, P * I);
	A->up = carve_f(a, P * I);
	A->h = carve_f(a, P * I);
	A->mo = c->sandwich_norms || moe ? carve_f(a, N * H) : NULL; /* else added to xmid in down's */
	A->lse = carve_f(a, N * (size_t)c->heads);
	A->probs = moe ? carve_f(a, N * E) : NULL;
	A->weights = moe ? carve_f(a, N * K) : NULL;
	A->xe = moe ? carve_f(a, P * H) : NULL;
	A->eo = moe ? carve_f(a, P * H) : NULL;
	A->pair_row_d = moe ? (int32_t *)carve(a, P * sizeof(int32_t)) : NULL;
	A->pair_of_d = moe ? (int32_t *)carve(a, P * sizeof(int32_t)) : NULL;
}

/* The index of the model's tensor that holds host address p, or SIZE_MAX. */
static size_t tensor_of(const struct lf_model *m, const float *p)
{
	for (size_t i = 0; p && i < m->ntensors; i++) {
		const float *d = m->tensors[i].data;
		if (p >= d && p < d + m->tensors[i].n)
			return i;
	}
	return SIZE_MAX;
}

/* The adapters of layer L's modules that read the same input, set number
 * k of them: q, k, v; gate, up; expert e's w1, w3 (k = 2 + e).  Their
 * number (0: no set k), at most LORA_SET_MAX. */
enum { LORA_SET_MAX = 3 };

static int lora_set(const struct lf_layer *L, int experts, int k, const struct lf_lora **set)
{
	if (k == 0) {
		set[0] = &L->lq;
		set[1] = &L->lk;
		set[2] = &L->lv;
		return 3;
	}
	if (k == 1) {
		set[0] = &L->lgate;
		set[1] = &L->lup;
		return 2;
	}
	if (!L->lw1 || !L->lw3 || k - 2 >= experts)
		return 0;
	set[0] = &L->lw1[k - 2];
	set[1] = &L->lw3[k - 2];
	return 2;
}

/* Where tensors are placed, in the arena and in the gradient block: in
 * the table's order, except that the A matrices of a set of adapters
 * (lora_set) of one rank, each its own tensor, are placed one after
 * another without a gap, so that one product makes x A^T for the whole
 * set (lora_share).  Sets the follow and follower arrays. */
static void placement(struct lf_cuda_train *t)
{
	const struct lf_model *m = t->host;
	for (size_t i = 0; i < m->ntensors; i++) {
		t->follow[i] = SIZE_MAX;
		t->follower[i] = false;
	}
	for (int l = 0; l < m->cfg.layers; l++)
		for (int k = 0;; k++) {
			const struct lf_lora *all[LORA_SET_MAX], *set[LORA_SET_MAX];
			int na = lora_set(&m->layers[l], m->cfg.experts, k, all), n = 0;
			if (!na)
				break;
			for (int j = 0; j < na; j++)
				if (all[j]->r)
					set[n++] = all[j];
			size_t a[LORA_SET_MAX];
			bool join = true;
			for (int j = 0; j < n; j++) {
				a[j] = tensor_of(m, set[j]->A);
				join = join && set[j]->r == set[0]->r && a[j] != SIZE_MAX &&
				       set[j]->A == m->tensors[a[j]].data && m->tensors[a[j]].n == m->tensors[a[0]].n &&
				       (t->host_at[a[j]] == SIZE_MAX) == (t->host_at[a[0]] == SIZE_MAX) &&
				       !t->use[a[j]] && t->follow[a[j]] == SIZE_MAX && !t->follower[a[j]];
				for (int i = 0; i < j; i++)
					join = join && a[i] != a[j]; /* one tensor for all (phi3): nothing to place */
			}
			for (int j = 1; join && j < n; j++) {
				t->follow[a[j - 1]] = a[j];
				t->follower[a[j]] = true;
			}
		}
}

/* the floats of the tensors placed from tensor i on (i and its followers) */
static size_t run_floats(const struct lf_cuda_train *t, size_t i)
{
	size_t n = 0;
	for (size_t j = i; j != SIZE_MAX; j = t->follow[j])
		n += t->host->tensors[j].n;
	return n;
}

/* Each trained tensor's place in the gradient block: runs (placement)
 * without gaps, each run at a multiple of 64 floats (256 bytes). */
static void layout_grads(struct lf_cuda_train *t)
{
	const struct lf_model *m = t->host;
	t->gn = 0;
	for (size_t i = 0; i < m->ntensors; i++)
		t->grad_at[i] = SIZE_MAX;
	for (size_t i = 0; i < m->ntensors; i++) {
		if (t->follower[i] || t->host_at[i] == SIZE_MAX)
			continue;
		for (size_t j = i; j != SIZE_MAX; j = t->follow[j]) {
			t->grad_at[j] = t->gn;
			t->gn += m->tensors[j].n;
		}
		t->gn = (t->gn + 63) / 64 * 64;
	}
}

/* The weights' arena: the tensors (f32 and bf16 copies; runs of tensors
 * without gaps, placement), gradients, moments, cuBLASLt's workspace, the
 * optimizer's scalars. */
static void layout_weights(struct lf_cuda_train *t)
{
	const struct lf_model *m = t->host;
	struct dmem *a = &t->wmem;
	a->used = 0;
	for (size_t i = 0; i < m->ntensors; i++) {
		if (t->follower[i])
			continue;
		size_t n = run_floats(t, i);
		bool gemm = t->bf16 && (t->use[i] & USE_GEMM), trained = t->grad_at[i] != SIZE_MAX;
		float *f = !gemm || trained || (t->use[i] & USE_LOOKUP) ? carve_f(a, n) : NULL;
		for (size_t j = i; j != SIZE_MAX; j = t->follow[j]) {
			t->dt[j] = f;
			f = f ? f + m->tensors[j].n : NULL;
		}
		t->bt[i] = gemm ? (uint16_t *)carve(a, n * sizeof(uint16_t)) : NULL; /* a run's are never products' */
	}
	t->grads = carve_f(a, t->gn);
	t->mom1 = carve_f(a, t->mn);
	t->mom2 = carve_f(a, t->mn);
	t->ws = carve(a, LF_CUBLASLT_WORKSPACE_BYTES);
	t->loss_d = (double *)carve(a, sizeof(double));
	t->total_d = (double *)carve(a, sizeof(double));
	t->count_d = (long *)carve(a, sizeof(long));
	t->norm_sq_d = (double *)carve(a, (m->ntensors + 1) * sizeof(double));
	t->coef_d = (float *)carve(a, sizeof(float));
}

/* The activations' arena: buffers for calls of up to max_tokens tokens. */
static void layout_acts(struct lf_cuda_train *t)
{
	const struct lf_model *m = t->host;
	const struct lf_model_config *c = &m->cfg;
	struct dmem *a = &t->amem;
	bool moe = c->arch == LF_ARCH_MIXTRAL;
	size_t N = (size_t)t->max_tokens, H = c->hidden, I = c->intermediate, qd = (size_t)c->heads * c->head_dim,
	       kd = (size_t)c->kv_heads * c->head_dim, V = (size_t)c->vocab, E = moe ? (size_t)c->experts : 0,
	       K = moe ? (size_t)c->experts_per_tok : 1, P = N * K; /* the MLP's rows: tokens or pairs */
	size_t r = m->max_rank > 0 ? (size_t)m->max_rank : 1, wide = qd > I ? qd : I;
	wide = wide > H ? wide : H;
	size_t rows = ((size_t)1 << 26) / V;
	t->head_rows = (int)(rows < 1 ? 1 : rows > N ? N : rows);
	a->used = 0;
	t->xs = carve_f(a, (size_t)(c->layers + 1) * N * H);
	int nacts = t->checkpointing ? 1 : c->layers;
	for (int i = 0; i < nacts; i++)
		acts_carve(t, a, &t->acts[i], N);
	t->dx = carve_f(a, N * H);
	t->dh1 = carve_f(a, N * H);
	t->dh2 = carve_f(a, N * H);
	t->dmid = carve_f(a, P * wide);
	t->dq = carve_f(a, N * qd);
	t->dk = carve_f(a, N * kd);
	t->dv = carve_f(a, N * kd);
	t->dqk_raw = carve_f(a, N * qd);
	t->datt = carve_f(a, N * qd);
	t->dgate = carve_f(a, P * I);
	t->dup = carve_f(a, P * I);
	t->lora_u = carve_f(a, P * r * LORA_SET_MAX); /* x A^T of a set of modules (lora_share) */
	t->lora_t = carve_f(a, P * r * LORA_SET_MAX);
	t->xdrop = m->max_rank > 0 ? carve_f(a, P * wide) : NULL;
	t->tdrop = m->max_rank > 0 ? carve_f(a, P * wide) : NULL;
	t->deo = moe ? carve_f(a, P * H) : NULL;
	t->dxe = moe ? carve_f(a, P * H) : NULL;
	t->dweights = moe ? carve_f(a, N * K) : NULL;
	t->dprobs = moe ? carve_f(a, N * E) : NULL;
	t->xg = carve_f(a, N * H);
	t->xf = carve_f(a, N * H);
	t->dxf = carve_f(a, N * H);
	t->logits = carve_f(a, (size_t)t->head_rows * V);
	t->capped = c->final_softcap > 0 ? carve_f(a, (size_t)t->head_rows * V) : NULL;
	t->xb = t->bf16 ? (uint16_t *)carve(a, P * wide * sizeof(uint16_t)) : NULL;
	t->yb = t->bf16 ? (uint16_t *)carve(a, P * wide * sizeof(uint16_t)) : NULL;
	t->lb = t->bf16 ? (uint16_t *)carve(a, (size_t)t->head_rows * V * sizeof(uint16_t)) : NULL;
	t->inv_freq_d = carve_f(a, N * (size_t)(c->rope.rotary_dim / 2 + 1));
	t->ids_d = (int32_t *)carve(a, N * sizeof(int32_t));
	t->pos_d = (int32_t *)carve(a, N * sizeof(int32_t));
	t->rows_d = (int32_t *)carve(a, N * sizeof(int32_t));
	t->head_targets_d = (int32_t *)carve(a, N * sizeof(int32_t));
}

/* ---- the device view of the model ---- */

/* The device copies of host address p inside one of the model's tensors
 * (NULLs for NULL); *missing set when p is in none of them. */
static struct wt wt_of(const struct lf_cuda_train *t, const float *p, bool *missing)
{
	struct wt w = { NULL, NULL };
	if (!p)
		return w;
	size_t i = tensor_of(t->host, p);
	if (i == SIZE_MAX) {
		*missing = true;
		return w;
	}
	size_t off = (size_t)(p - t->host->tensors[i].data);
	w.f = t->dt[i] ? t->dt[i] + off : NULL;
	w.b = t->bt[i] ? t->bt[i] + off : NULL;
	return w;
}

/* The f32 device copy of host address p (norms, biases, adapters, the
 * embedding: tensors the bf16 mode keeps in f32 too). */
static const float *dev_of(const struct lf_cuda_train *t, const float *p, bool *missing)
{
	struct wt w = wt_of(t, p, missing);
	if (p && !w.f)
		*missing = true;
	return w.f;
}

/* What each tensor is used for (before the arena is laid out). */
static void mark_uses(struct lf_cuda_train *t)
{
	const struct lf_model *m = t->host;
	for (int l = 0; l < m->cfg.layers; l++) {
		const struct lf_layer *L = &m->layers[l];
		const float *w[] = { L->q, L->k, L->v, L->o, L->gate, L->up, L->down }; /* the router stays f32 */
		for (size_t i = 0; i < sizeof w / sizeof w[0]; i++)
			if (tensor_of(m, w[i]) != SIZE_MAX)
				t->use[tensor_of(m, w[i])] |= USE_GEMM;
		for (int e = 0; L->w1 && e < m->cfg.experts; e++) {
			const float *x[] = { L->w1[e], L->w2[e], L->w3[e] };
			for (size_t i = 0; i < 3; i++)
				if (tensor_of(m, x[i]) != SIZE_MAX)
					t->use[tensor_of(m, x[i])] |= USE_GEMM;
		}
	}
	if (tensor_of(m, m->lm_head) != SIZE_MAX)
		t->use[tensor_of(m, m->lm_head)] |= USE_GEMM;
	if (tensor_of(m, m->embed) != SIZE_MAX)
		t->use[tensor_of(m, m->embed)] |= USE_LOOKUP;
}

static void lora_dev(const struct lf_cuda_train *t, struct lf_lora *l, bool *missing)
{
	l->A = dev_of(t, l->A, missing);
	l->B = dev_of(t, l->B, missing);
}

static int make_device_view(struct lf_cuda_train *t)
{
	const struct lf_model *m = t->host;
	bool missing = false;
	t->dm = *m;
	t->dm.layers = (struct lf_layer *)lf_calloc((size_t)m->cfg.layers, sizeof *t->dm.layers);
	t->dm.embed = dev_of(t, m->embed, &missing);
	t->dm.norm = dev_of(t, m->norm, &missing);
	t->dm.lm_head = NULL; /* t->head */
	t->head = wt_of(t, m->lm_head, &missing);
	t->gl = (struct gpu_layer *)lf_calloc((size_t)m->cfg.layers, sizeof *t->gl);
	if (m->cfg.arch == LF_ARCH_MIXTRAL)
		t->expert_loras = (struct lf_lora *)lf_calloc((size_t)m->cfg.layers * 3 * m->cfg.experts + 1,
							      sizeof *t->expert_loras);
	for (int l = 0; l < m->cfg.layers; l++) {
		struct lf_layer *L = &t->dm.layers[l];
		*L = m->layers[l];
		struct gpu_layer *G = &t->gl[l];
		G->q = wt_of(t, L->q, &missing);
		G->k = wt_of(t, L->k, &missing);
		G->v = wt_of(t, L->v, &missing);
		G->o = wt_of(t, L->o, &missing);
		G->gate = wt_of(t, L->gate, &missing);
		G->up = wt_of(t, L->up, &missing);
		G->down = wt_of(t, L->down, &missing);
		G->router = wt_of(t, L->router, &missing);
		int E = m->cfg.experts;
		if (L->w1) { /* the experts' weights and adapters */
			G->w1 = (struct wt *)lf_calloc(3 * (size_t)E, sizeof *G->w1);
			G->w2 = G->w1 + E;
			G->w3 = G->w2 + E;
			struct lf_lora *la = t->expert_loras + (size_t)l * 3 * E;
			for (int e = 0; e < E; e++) {
				G->w1[e] = wt_of(t, L->w1[e], &missing);
				G->w2[e] = wt_of(t, L->w2[e], &missing);
				G->w3[e] = wt_of(t, L->w3[e], &missing);
				struct lf_lora *const *from[] = { &L->lw1, &L->lw2, &L->lw3 };
				for (int w = 0; w < 3; w++) {
					struct lf_lora *x = &la[(size_t)w * E + e];
					if (*from[w])
						*x = (*from[w])[e];
					if (x->mag)
						return lf_fail("layer %d: DoRA is not built on the GPU yet (use the CPU: "
							       "--device cpu)", l);
					lora_dev(t, x, &missing);
				}
			}
			L->lw1 = m->layers[l].lw1 ? la : NULL;
			L->lw2 = m->layers[l].lw2 ? la + E : NULL;
			L->lw3 = m->layers[l].lw3 ? la + 2 * E : NULL;
		}
		L->q = L->k = L->v = L->o = L->gate = L->up = L->down = L->router = NULL; /* t->gl */
		L->w1 = L->w2 = L->w3 = NULL;
		const float **w[] = { &L->q_b, &L->k_b, &L->v_b, &L->o_b, &L->gate_b, &L->up_b, &L->down_b,
				      &L->in_norm, &L->post_attn_norm, &L->pre_ff_norm, &L->post_ff_norm,
				      &L->q_norm, &L->k_norm };
		for (size_t i = 0; i < sizeof w / sizeof w[0]; i++)
			*w[i] = dev_of(t, *w[i], &missing);
		struct lf_lora *lo[] = { &L->lq, &L->lk, &L->lv, &L->lo, &L->lgate, &L->lup, &L->ldown, &L->lrouter };
		for (size_t i = 0; i < sizeof lo / sizeof lo[0]; i++) {
			if (lo[i]->mag)
				return lf_fail("layer %d: DoRA is not built on the GPU yet (use the CPU: --device cpu)", l);
			lora_dev(t, lo[i], &missing);
		}
	}
	if (missing)
		return lf_fail("a weight of the model is not in its tensor table (internal error)");
	return 0;
}

/* ---- products (the CPU ops' names and argument orders) ---- */

/* out[M,N] = a[M,K] b[N,K]^T */
static void mm_nt(struct lf_cuda_train *t, float *out, const float *a, const float *b, int M, int N, int K)
{
	lf_cuda_gemm_f32(t->gemm, out, a, b, M, N, K, 0, 1, 1.0f, 0.0f, t->s);
}

/* out[M,K] = beta out + a[M,N] b[N,K] */
static void mm_nn(struct lf_cuda_train *t, float *out, const float *a, const float *b, int M, int N, int K,
		  float beta)
{
	lf_cuda_gemm_f32(t->gemm, out, a, b, M, K, N, 0, 0, 1.0f, beta, t->s);
}

/* out[N,K] += scale a[M,N]^T b[M,K] */
static void mm_tn_acc(struct lf_cuda_train *t, float *out, const float *a, const float *b, int M, int N, int K,
		      float scale)
{
	lf_cuda_gemm_f32(t->gemm, out, a, b, N, K, M, 1, 0, scale, 1.0f, t->s);
}

/* Host memory to the device, in the compute stream's order (every copy and
 * kernel goes through t->s, nothing through the legacy default stream) */
static void to_device(struct lf_cuda_train *t, void *dst, const void *src, size_t bytes)
{
	LF_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, t->s));
}

/* ... between host and device, waited for: the host may then reuse or read
 * its side */
static void copy_sync(struct lf_cuda_train *t, void *dst, const void *src, size_t bytes, cudaMemcpyKind kind)
{
	LF_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, t->s));
	LF_CUDA_CHECK(cudaStreamSynchronize(t->s));
}

static void copy_d(struct lf_cuda_train *t, float *dst, const float *src, size_t n)
{
	LF_CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, t->s));
}

static void zero_d(struct lf_cuda_train *t, void *p, size_t bytes)
{
	LF_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, t->s));
}

/* ---- linear layers (backprop.c's linear_fwd / linear_bwd) ---- */

/* The dropout key of a LoRA pair's module: from the name of its A in the
 * tensor table, as backprop.c keys it (lf_lora_dropout_key). */
static uint64_t dropout_key(const struct lf_cuda_train *t, const struct lf_lora *l)
{
	for (size_t i = 0; i < t->host->ntensors; i++)
		if (t->dt[i] == l->A)
			return lf_lora_dropout_key(t->noise_seed, t->host->tensors[i].name);
	return lf_lora_dropout_key(t->noise_seed, "");
}

static bool dropping(const struct lf_cuda_train *t, const struct lf_lora *l)
{
	return l->r && t->training && t->lora_dropout > 0;
}

/* The bf16 mode's copy of x [n] for the products (in t->xb), or NULL
 * (the f32 mode, or not needed). */
static const uint16_t *bf16_of(struct lf_cuda_train *t, const float *x, size_t n, bool needed)
{
	if (!t->bf16 || !needed)
		return NULL;
	lf_cuda_f32_to_bf16(t->xb, x, n, t->s);
	return t->xb;
}

/* A linear module as the products see it: its weight, bias, adapter and
 * output width; for the backward, its gradients (NULL: not trained); for
 * the forward, a residual its output is added to (NULL: none). */
struct lin {
	struct wt w;
	const float *b;
	const struct lf_lora *lora;
	int out_f;
	float *gw, *gb;
	const struct lf_lora_grad *gl;
	const float *res;
};

/* Whether n modules that read the same x can take their adapters' x A^T
 * from one product u = x [A_0; A_1; ...]^T: the width of u, with module
 * i's columns at i * *step; 0: each needs its own.  One A tensor for all
 * (phi3's fused modules, one dropout mask): width r, step 0.  A's placed
 * one after another (placement), their gradients too where trained, x not
 * masked per module (LoRA dropout): width n r, step r.  One module: its r. */
static int lora_share(const struct lf_cuda_train *t, const struct lin *mods, int n, int in_f, bool grads, int *step)
{
	const struct lf_lora *l0 = mods[0].lora;
	int r = l0->r;
	bool same = true, stacked = !dropping(t, l0);
	for (int i = 0; i < n; i++) {
		const struct lf_lora *l = mods[i].lora;
		if (!r || l->r != r)
			return 0;
		size_t at = (size_t)i * r * in_f;
		same = same && l->A == l0->A;
		stacked = stacked && l->A == l0->A + at;
		if (grads) {
			const float *gA = mods[i].gl->A, *g0 = mods[0].gl->A;
			same = same && gA == g0;
			stacked = stacked && (g0 ? gA == g0 + at : !gA);
		}
	}
	*step = same ? 0 : r;
	return same ? r : stacked ? n * r : 0;
}

/* outs[i] += s_i (x A_i^T) B_i^T over the modules' adapters (each of rank
 * r > 0), u = x A^T in t->lora_u: one product for modules that share it
 * (lora_share). */
static void lora_fwd(struct lf_cuda_train *t, const struct lin *mods, int n, float *const *outs, const float *x,
		     int N, int in_f)
{
	int step, width = lora_share(t, mods, n, in_f, false, &step);
	if (!width) {
		for (int i = 0; i < n; i++)
			lora_fwd(t, &mods[i], 1, &outs[i], x, N, in_f);
		return;
	}
	const struct lf_lora *l0 = mods[0].lora;
	const float *xa = x;
	t->lora_shared += n > 1;
	if (dropping(t, l0)) {
		lf_cuda_dropout_f32(t->xdrop, x, (size_t)N * in_f, t->lora_dropout, dropout_key(t, l0), 0, t->s);
		xa = t->xdrop;
	}
	mm_nt(t, t->lora_u, xa, l0->A, N, width, in_f);
	for (int i = 0; i < n; i++) {
		const struct lf_lora *l = mods[i].lora;
		lf_cuda_gemm_f32_ld(t->gemm, outs[i], mods[i].out_f, t->lora_u + (size_t)i * step, width, l->B, l->r, N,
				    mods[i].out_f, l->r, 0, 1, l->scale, 1.0f, t->s);
	}
}

/* outs[i] = (res_i +) x W_i^T (+ b_i) (+ the adapter's part) for n modules
 * that read the same x (in bf16: xb, where the bf16 mode has a copy of W),
 * a residual added by the product's epilogue.  A weight with a bf16 copy
 * multiplies xb; the others (a mixtral router, whose choices would flip on
 * rounding) and the adapters' products stay f32. */
static void linears_fwd(struct lf_cuda_train *t, const struct lin *mods, int n, float *const *outs, const float *x,
			const uint16_t *xb, int N, int in_f)
{
	struct lin adapted[LORA_SET_MAX];
	float *aouts[LORA_SET_MAX];
	int k = 0;
	for (int i = 0; i < n; i++) {
		const struct lin *m = &mods[i];
		float beta = m->res ? 1.0f : 0.0f;
		if (m->w.b)
			lf_cuda_gemm_bf16_c(t->gemm, outs[i], m->res, xb, m->w.b, N, m->out_f, in_f, 0, 1, 1.0f, beta, t->s);
		else
			lf_cuda_gemm_f32_c(t->gemm, outs[i], m->res, x, m->w.f, N, m->out_f, in_f, 0, 1, 1.0f, beta, t->s);
		if (m->lora->r) {
			adapted[k] = *m;
			aouts[k++] = outs[i];
		}
	}
	if (k)
		lora_fwd(t, adapted, k, aouts, x, N, in_f);
	for (int i = 0; i < n; i++)
		if (mods[i].b)
			lf_cuda_bias_add_f32(outs[i], mods[i].b, N, mods[i].out_f, t->s);
}

static void linear_fwd(struct lf_cuda_train *t, float *out, const float *x, const uint16_t *xb, struct wt w,
		       const float *b, const struct lf_lora *lora, int N, int out_f, int in_f)
{
	struct lin m = { w, b, lora, out_f, NULL, NULL, NULL, NULL };
	linears_fwd(t, &m, 1, &out, x, xb, N, in_f);
}

/* out = res + linear_fwd's: a residual branch's last product */
static void linear_res_fwd(struct lf_cuda_train *t, float *out, const float *res, const float *x, const uint16_t *xb,
			   struct wt w, const float *b, const struct lf_lora *lora, int N, int out_f, int in_f)
{
	struct lin m = { w, b, lora, out_f, NULL, NULL, NULL, res };
	linears_fwd(t, &m, 1, &out, x, xb, N, in_f);
}

/* The adapters' backward for modules (each of rank r > 0) that read x:
 * with u = x A^T and tt = sum_i s_i dy_i B_i (t->lora_u, t->lora_t; one
 * product each for modules that share u, lora_share), dB_i += s_i dy_i^T
 * u_i, dA += tt^T x, dx += tt A (through the dropout mask where x was
 * masked). */
static void lora_bwd(struct lf_cuda_train *t, const struct lin *mods, int n, const float *const *dys, float *dx,
		     const float *x, int N, int in_f)
{
	int step, width = lora_share(t, mods, n, in_f, true, &step);
	if (!width) {
		for (int i = 0; i < n; i++)
			lora_bwd(t, &mods[i], 1, &dys[i], dx, x, N, in_f);
		return;
	}
	const struct lf_lora *l0 = mods[0].lora;
	const float *xa = x;
	bool drop = dropping(t, l0);
	t->lora_shared += n > 1;
	uint64_t key = drop ? dropout_key(t, l0) : 0;
	if (drop) {
		lf_cuda_dropout_f32(t->xdrop, x, (size_t)N * in_f, t->lora_dropout, key, 0, t->s);
		xa = t->xdrop;
	}
	bool any_gB = false;
	for (int i = 0; i < n; i++)
		any_gB = any_gB || mods[i].gl->B;
	if (any_gB)
		mm_nt(t, t->lora_u, xa, l0->A, N, width, in_f);
	for (int i = 0; i < n; i++) {
		const struct lf_lora *l = mods[i].lora;
		int of = mods[i].out_f;
		size_t at = (size_t)i * step;
		lf_cuda_gemm_f32_ld(t->gemm, t->lora_t + at, width, dys[i], of, l->B, l->r, N, l->r, of, 0, 0, l->scale,
				    step || !i ? 0.0f : 1.0f, t->s);
		if (mods[i].gl->B)
			lf_cuda_gemm_f32_ld(t->gemm, mods[i].gl->B, l->r, dys[i], of, t->lora_u + at, width, of, l->r, N,
					    1, 0, l->scale, 1.0f, t->s);
	}
	if (mods[0].gl->A)
		mm_tn_acc(t, mods[0].gl->A, t->lora_t, xa, N, width, in_f, 1.0f);
	if (!drop) {
		mm_nn(t, dx, t->lora_t, l0->A, N, width, in_f, 1.0f);
		return;
	}
	mm_nn(t, t->tdrop, t->lora_t, l0->A, N, width, in_f, 0.0f);
	lf_cuda_dropout_f32(dx, t->tdrop, (size_t)N * in_f, t->lora_dropout, key, 1, t->s);
}

/* dx = beta dx + sum_i dy_i W_i (+ the adapters' parts) for n modules that
 * read the same x (xb: x in bf16 where the bf16 mode trains a W);
 * gradients where trained. */
static void linears_bwd(struct lf_cuda_train *t, const struct lin *mods, int n, const float *const *dys, float *dx,
			float beta, const float *x, const uint16_t *xb, int N, int in_f)
{
	struct lin adapted[LORA_SET_MAX];
	const float *adys[LORA_SET_MAX];
	int k = 0;
	for (int i = 0; i < n; i++) {
		const struct lin *m = &mods[i];
		const float *dy = dys[i];
		float b = i ? 1.0f : beta;
		if (m->gb)
			lf_cuda_bias_grad_f32(m->gb, dy, N, m->out_f, t->s);
		if (m->w.b) {
			lf_cuda_f32_to_bf16(t->yb, dy, (size_t)N * m->out_f, t->s);
			lf_cuda_gemm_bf16(t->gemm, dx, t->yb, m->w.b, N, in_f, m->out_f, 0, 0, 1.0f, b, t->s);
			if (m->gw)
				lf_cuda_gemm_bf16(t->gemm, m->gw, t->yb, xb, m->out_f, in_f, N, 1, 0, 1.0f, 1.0f, t->s);
		} else {
			mm_nn(t, dx, dy, m->w.f, N, m->out_f, in_f, b);
			if (m->gw)
				mm_tn_acc(t, m->gw, dy, x, N, m->out_f, in_f, 1.0f);
		}
		if (m->lora->r) {
			adapted[k] = *m;
			adys[k++] = dy;
		}
	}
	if (k)
		lora_bwd(t, adapted, k, adys, dx, x, N, in_f);
}

static void linear_bwd(struct lf_cuda_train *t, float *dx, float beta, const float *dy, const float *x,
		       const uint16_t *xb, struct wt w, const struct lf_lora *lora, float *gw, float *gb,
		       const struct lf_lora_grad *gl, int N, int out_f, int in_f)
{
	struct lin m = { w, NULL, lora, out_f, gw, gb, gl };
	linears_bwd(t, &m, 1, &dy, dx, beta, x, xb, N, in_f);
}

/* ---- mixture of experts (mixtral): backprop.c's moe_route, moe_fwd,
 * moe_bwd, the router's softmax, top-k and the pairs' grouping on the
 * host, the products and sums on the device ---- */

static const struct lf_lora *expert_lora(const struct lf_lora *arr, int e)
{
	static const struct lf_lora none = { 0 };
	return arr ? &arr[e] : &none;
}

/* The router's logits (xb: xn2 in bf16), their softmax and each token's K
 * choices and weights (host), the pairs grouped by expert in token order,
 * xe their rows of xn2; with count, the load-balancing statistics. */
static void moe_route(struct lf_cuda_train *t, int l, struct acts *A, const uint16_t *xb, int N, bool count)
{
	const struct lf_model_config *c = &t->host->cfg;
	const struct lf_layer *L = &t->dm.layers[l];
	int H = c->hidden, E = c->experts, K = c->experts_per_tok;
	linear_fwd(t, A->probs, A->xn2, xb, t->gl[l].router, NULL, &L->lrouter, N, E, H);
	LF_CUDA_CHECK(cudaMemcpyAsync(A->probs_h, A->probs, (size_t)N * E * sizeof(float), cudaMemcpyDeviceToHost, t->s));
	LF_CUDA_CHECK(cudaStreamSynchronize(t->s));
	lf_cpu_router_topk_f32(A->probs_h, N, E, K, A->choice, A->weights_h);
	for (int i = 0; i < N && count; i++) {
		const float *p = A->probs_h + (size_t)i * E;
		const int *ch = A->choice + (size_t)i * K;
		for (int k = 0; k < K; k++)
			t->expert_load[(size_t)k * E + ch[k]] += 1;
		for (int e = 0; e < E; e++)
			t->expert_load[(size_t)K * E + e] += p[e];
	}
	memset(A->expert_start, 0, (size_t)(E + 1) * sizeof *A->expert_start);
	for (int i = 0; i < N * K; i++)
		A->expert_start[A->choice[i] + 1]++;
	for (int e = 0; e < E; e++)
		A->expert_start[e + 1] += A->expert_start[e];
	int *fill = (int *)lf_calloc((size_t)E + 1, sizeof *fill);
	for (int i = 0; i < N; i++)
		for (int k = 0; k < K; k++) {
			int e = A->choice[(size_t)i * K + k], p = A->expert_start[e] + fill[e]++;
			A->pair_row[p] = i;
			A->pair_of[(size_t)i * K + k] = p;
		}
	free(fill);
	size_t P = (size_t)N * K;
	to_device(t, A->probs, A->probs_h, (size_t)N * E * sizeof(float));
	to_device(t, A->weights, A->weights_h, P * sizeof(float));
	to_device(t, A->pair_row_d, A->pair_row, P * sizeof(int32_t));
	to_device(t, A->pair_of_d, A->pair_of, P * sizeof(int32_t));
	lf_cuda_gather_rows_f32(A->xe, A->xn2, A->pair_row_d, (int)P, H, t->s);
	LF_CUDA_CHECK(cudaStreamSynchronize(t->s)); /* the host arrays are this layer's until then */
}

/* mo = sum over each token's choices of weight x expert(xn2) */
static void moe_fwd(struct lf_cuda_train *t, int l, struct acts *A, const uint16_t *xb, int N, bool count)
{
	const struct lf_model_config *c = &t->host->cfg;
	const struct lf_layer *L = &t->dm.layers[l];
	const struct gpu_layer *W = &t->gl[l];
	int H = c->hidden, I = c->intermediate, E = c->experts, K = c->experts_per_tok;
	moe_route(t, l, A, xb, N, count);
	const uint16_t *xeb = bf16_of(t, A->xe, (size_t)N * K * H, true);
	for (int e = 0; e < E; e++) {
		int i0 = A->expert_start[e], n = A->expert_start[e + 1] - i0;
		if (!n)
			continue;
		size_t oi = (size_t)i0 * I, oh = (size_t)i0 * H;
		struct lin w13[] = { { W->w1[e], NULL, expert_lora(L->lw1, e), I },
				     { W->w3[e], NULL, expert_lora(L->lw3, e), I } };
		float *w13_out[] = { A->gate + oi, A->up + oi };
		linears_fwd(t, w13, 2, w13_out, A->xe + oh, xeb ? xeb + oh : NULL, n, H);
		lf_cuda_gated_act_f32(A->h + oi, A->gate + oi, A->up + oi, (long)n * I, c->act, t->s);
		const uint16_t *hb = NULL; /* in yb: xb holds xeb */
		if (t->bf16) {
			lf_cuda_f32_to_bf16(t->yb, A->h + oi, (size_t)n * I, t->s);
			hb = t->yb;
		}
		linear_fwd(t, A->eo + oh, A->h + oi, hb, W->w2[e], NULL, expert_lora(L->lw2, e), n, H, I);
	}
	lf_cuda_moe_combine_f32(A->mo, A->eo, A->weights, A->pair_of_d, N, K, H, t->s);
}

/* dxn2 = the gradient of xn2 from dmo, through the experts and the router
 * (and the load-balancing loss: aux_grad[e], its gradient w.r.t. each
 * router probability, or NULL) */
static void moe_bwd(struct lf_cuda_train *t, int l, const struct acts *A, const float *dmo, float *dxn2, int N,
		    const double *aux_grad, const struct lf_layer_grad *G)
{
	const struct lf_model_config *c = &t->host->cfg;
	const struct lf_layer *L = &t->dm.layers[l];
	const struct gpu_layer *W = &t->gl[l];
	int H = c->hidden, I = c->intermediate, E = c->experts, K = c->experts_per_tok;
	struct lf_lora_grad none = { NULL, NULL, NULL };
	lf_cuda_moe_combine_bwd_f32(t->deo, t->dweights, dmo, A->eo, A->weights, A->pair_of_d, N, K, H, t->s);
	for (int e = 0; e < E; e++) {
		int i0 = A->expert_start[e], n = A->expert_start[e + 1] - i0;
		if (!n)
			continue;
		size_t oi = (size_t)i0 * I, oh = (size_t)i0 * H;
		float *g1 = G->w1 ? G->w1[e] : NULL, *g2 = G->w2 ? G->w2[e] : NULL, *g3 = G->w3 ? G->w3[e] : NULL;
		const uint16_t *xb = bf16_of(t, A->h + oi, (size_t)n * I, g2);
		linear_bwd(t, t->dmid + oi, 0.0f, t->deo + oh, A->h + oi, xb, W->w2[e], expert_lora(L->lw2, e), g2, NULL,
			   G->lw2 ? &G->lw2[e] : &none, n, H, I);
		lf_cuda_gated_act_bwd_f32(t->dgate + oi, t->dup + oi, t->dmid + oi, A->gate + oi, A->up + oi,
					  (long)n * I, c->act, t->s);
		xb = bf16_of(t, A->xe + oh, (size_t)n * H, g1 || g3);
		struct lin w13[] = { { W->w1[e], NULL, expert_lora(L->lw1, e), I, g1, NULL, G->lw1 ? &G->lw1[e] : &none },
				     { W->w3[e], NULL, expert_lora(L->lw3, e), I, g3, NULL, G->lw3 ? &G->lw3[e] : &none } };
		const float *d13[] = { t->dgate + oi, t->dup + oi };
		linears_bwd(t, w13, 2, d13, t->dxe + oh, 0.0f, A->xe + oh, xb, n, H);
	}
	lf_cuda_moe_gather_sum_f32(dxn2, t->dxe, A->pair_of_d, N, K, H, t->s);
	/* the router: w_k = p_k / P over the chosen, then the softmax (host) */
	LF_CUDA_CHECK(cudaMemcpyAsync(t->dweights_h, t->dweights, (size_t)N * K * sizeof(float), cudaMemcpyDeviceToHost,
				      t->s));
	LF_CUDA_CHECK(cudaStreamSynchronize(t->s));
	lf_cpu_router_bwd_f32(t->dprobs_h, A->probs_h, A->choice, A->weights_h, t->dweights_h, aux_grad, N, E, K);
	to_device(t, t->dprobs, t->dprobs_h, (size_t)N * E * sizeof(float));
	const uint16_t *xb = bf16_of(t, A->xn2, (size_t)N * H, G->router);
	linear_bwd(t, t->dxe, 0.0f, t->dprobs, A->xn2, xb, W->router, &L->lrouter, G->router, NULL, &G->lrouter, N, E,
		   H);
	lf_cuda_add_f32(dxn2, dxn2, t->dxe, (size_t)N * H, t->s);
	LF_CUDA_CHECK(cudaStreamSynchronize(t->s)); /* dprobs_h is the next layer's */
}

/* ---- one layer ---- */

/* Attention: the bf16 mode's on the tensor cores (bf16 tile products, f32
 * softmax and accumulators), the f32 mode's on CUDA cores in f32. */
static void attention_fwd(struct lf_cuda_train *t, float *out, const float *q, const float *k, const float *v, int T,
			  int S, int q0, const struct lf_attn *a, float *lse)
{
	if (t->bf16)
		lf_cuda_attention_tc_f32(out, q, k, v, T, S, q0, a, NULL, lse, t->s);
	else
		lf_cuda_attention_f32(out, q, k, v, T, S, q0, a, NULL, lse, t->s);
}

static void attention_bwd(struct lf_cuda_train *t, float *dq, float *dk, float *dv, const float *dout,
			  const float *q, const float *k, const float *v, const float *out, int T,
			  const struct lf_attn *a, const float *lse)
{
	if (t->bf16)
		lf_cuda_attention_tc_bwd_f32(dq, dk, dv, dout, q, k, v, out, T, T, 0, a, NULL, lse, t->s);
	else
		lf_cuda_attention_bwd_f32(dq, dk, dv, dout, q, k, v, out, T, T, 0, a, NULL, lse, t->s);
}

static struct lf_attn attn_of(const struct lf_model_config *c, int l)
{
	struct lf_attn a = { c->heads, c->kv_heads, c->head_dim, (float)c->attn_scale, (float)c->attn_softcap,
			     c->window[l] };
	return a;
}

/* RoPE on x [N, heads, d] (rows of width floats), each row (sequence) of
 * the call with its positions and frequencies */
static void rope_rows(struct lf_cuda_train *t, float *x, int heads, int width, bool backward)
{
	const struct lf_model_config *c = &t->host->cfg;
	int half = c->rope.rotary_dim / 2;
	for (int r = 0, row0 = 0; r < t->nrows; row0 += t->row_len[r], r++) {
		const float *inv = t->inv_freq_d + (size_t)r * half;
		float *xr = x + (size_t)row0 * width;
		if (backward)
			lf_cuda_rope_bwd_f32(xr, t->pos_d + row0, t->row_len[r], heads, c->head_dim, width,
					     c->rope.rotary_dim, inv, t->attn_factor[r], t->s);
		else
			lf_cuda_rope_f32(xr, t->pos_d + row0, t->row_len[r], heads, c->head_dim, width, c->rope.rotary_dim,
					 inv, t->attn_factor[r], t->s);
	}
}

/* Attention of the call's sequences over their caches (lf_cuda_forward_batch):
 * each one's new keys and values appended to its cache for layer l, its
 * queries at cache positions len .. len+T-1 over the cache's 0 .. len+T-1. */
static void attend_cached(struct lf_cuda_train *t, int l, struct acts *A)
{
	const struct lf_model_config *c = &t->host->cfg;
	int qd = c->heads * c->head_dim, kd = c->kv_heads * c->head_dim;
	struct lf_attn a = attn_of(c, l);
	for (int s = 0, row0 = 0; s < t->nrows; row0 += t->row_len[s], s++) {
		struct lf_cuda_kv *kv = t->cached[s].kv;
		int T = t->row_len[s];
		size_t layer = (size_t)l * kv->capacity * kd, at = layer + (size_t)kv->len * kd;
		copy_d(t, kv->k + at, A->k + (size_t)row0 * kd, (size_t)T * kd);
		copy_d(t, kv->v + at, A->v + (size_t)row0 * kd, (size_t)T * kd);
		attention_fwd(t, A->att + (size_t)row0 * qd, A->q + (size_t)row0 * qd, kv->k + layer, kv->v + layer, T,
			      kv->len + T, kv->len, &a, NULL);
	}
}

/* Layer l on x [N, H]: its inner activations into A, its output into xout
 * (NULL: a recomputation). */
static void layer_fwd(struct lf_cuda_train *t, int l, struct acts *A, const float *x, float *xout, int N)
{
	const struct lf_model_config *c = &t->host->cfg;
	const struct lf_layer *L = &t->dm.layers[l];
	const struct gpu_layer *W = &t->gl[l];
	int H = c->hidden, I = c->intermediate, d = c->head_dim, nh = c->heads, nkv = c->kv_heads;
	int qd = nh * d, kd = nkv * d;
	float off = c->norm_plus_one ? 1.0f : 0.0f, eps = (float)c->eps;
	size_t NH = (size_t)N * H;
	lf_cuda_rmsnorm_f32(A->xn1, x, L->in_norm, N, H, eps, off, t->s);
	const uint16_t *xb = bf16_of(t, A->xn1, NH, true);
	struct lin qkv[] = { { W->q, L->q_b, &L->lq, qd }, { W->k, L->k_b, &L->lk, kd }, { W->v, L->v_b, &L->lv, kd } };
	float *qkv_out[] = { A->q, A->k, A->v };
	linears_fwd(t, qkv, 3, qkv_out, A->xn1, xb, N, H);
	if (c->qk_norm) {
		copy_d(t, A->q_raw, A->q, (size_t)N * qd);
		copy_d(t, A->k_raw, A->k, (size_t)N * kd);
		lf_cuda_rmsnorm_f32(A->q, A->q_raw, L->q_norm, N * nh, d, eps, 0.0f, t->s);
		lf_cuda_rmsnorm_f32(A->k, A->k_raw, L->k_norm, N * nkv, d, eps, 0.0f, t->s);
	}
	rope_rows(t, A->q, nh, qd, false);
	rope_rows(t, A->k, nkv, kd, false);
	if (t->cached)
		attend_cached(t, l, A);
	struct lf_attn a = attn_of(c, l);
	for (int s = 0; !t->cached && s < t->nspans; s++) {
		size_t s0 = (size_t)t->span_start[s];
		int len = t->span_len[s];
		attention_fwd(t, A->att + s0 * qd, A->q + s0 * qd, A->k + s0 * kd, A->v + s0 * kd, len, len, 0, &a,
			      A->lse + s0 * nh);
	}
	/* xmid = x + [norm](o(att)): the residual in o's epilogue without the norm */
	const uint16_t *attb = bf16_of(t, A->att, (size_t)N * qd, true);
	if (c->sandwich_norms) {
		linear_fwd(t, A->ao, A->att, attb, W->o, L->o_b, &L->lo, N, H, qd);
		lf_cuda_rmsnorm_f32(t->dh1, A->ao, L->post_attn_norm, N, H, eps, off, t->s);
		lf_cuda_add_f32(A->xmid, x, t->dh1, NH, t->s);
	} else {
		linear_res_fwd(t, A->xmid, x, A->att, attb, W->o, L->o_b, &L->lo, N, H, qd);
	}
	lf_cuda_rmsnorm_f32(A->xn2, A->xmid, c->sandwich_norms ? L->pre_ff_norm : L->post_attn_norm, N, H, eps, off,
			    t->s);
	xb = bf16_of(t, A->xn2, NH, true);
	if (c->arch == LF_ARCH_MIXTRAL) {
		moe_fwd(t, l, A, xb, N, xout != NULL);
	} else {
		struct lin gate_up[] = { { W->gate, L->gate_b, &L->lgate, I }, { W->up, L->up_b, &L->lup, I } };
		float *gate_up_out[] = { A->gate, A->up };
		linears_fwd(t, gate_up, 2, gate_up_out, A->xn2, xb, N, H);
		lf_cuda_gated_act_f32(A->h, A->gate, A->up, (long)N * I, c->act, t->s);
		/* xout = xmid + [norm](down(h)): the residual in down's epilogue
		 * without the norm; a recomputation (as backprop.c) needs down's
		 * output for the norm's backward only */
		const uint16_t *hb = xout || c->sandwich_norms ? bf16_of(t, A->h, (size_t)N * I, true) : NULL;
		if (c->sandwich_norms)
			linear_fwd(t, A->mo, A->h, hb, W->down, L->down_b, &L->ldown, N, H, I);
		else if (xout)
			linear_res_fwd(t, xout, A->xmid, A->h, hb, W->down, L->down_b, &L->ldown, N, H, I);
	}
	if (!xout || (c->arch != LF_ARCH_MIXTRAL && !c->sandwich_norms))
		return;
	const float *branch = A->mo;
	if (c->sandwich_norms) {
		lf_cuda_rmsnorm_f32(t->dh1, A->mo, L->post_ff_norm, N, H, eps, off, t->s);
		branch = t->dh1;
	}
	lf_cuda_add_f32(xout, A->xmid, branch, NH, t->s);
}

/* Backward of layer l: dx holds the gradient of its output and becomes
 * that of its input x. */
static void layer_bwd(struct lf_cuda_train *t, int l, const struct acts *A, const float *x, float *dx,
		      const struct lf_layer_grad *G, int N, const double *aux_grad)
{
	const struct lf_model_config *c = &t->host->cfg;
	const struct lf_layer *L = &t->dm.layers[l];
	const struct gpu_layer *W = &t->gl[l];
	int H = c->hidden, I = c->intermediate, d = c->head_dim, nh = c->heads, nkv = c->kv_heads;
	int qd = nh * d, kd = nkv * d;
	float off = c->norm_plus_one ? 1.0f : 0.0f, eps = (float)c->eps;
	size_t NH = (size_t)N * H;
	const uint16_t *xb;
	/* the MLP: out = xmid + [norm](down(act(gate) * up)) */
	const float *dmo = dx;
	if (c->sandwich_norms) {
		zero_d(t, t->dh1, NH * sizeof(float));
		lf_cuda_rmsnorm_bwd_f32(t->dh1, G->post_ff_norm, dx, A->mo, L->post_ff_norm, N, H, eps, off, t->s);
		dmo = t->dh1;
	}
	if (c->arch == LF_ARCH_MIXTRAL) {
		moe_bwd(t, l, A, dmo, t->dh2, N, aux_grad, G);
	} else {
		xb = bf16_of(t, A->h, (size_t)N * I, G->down);
		linear_bwd(t, t->dmid, 0.0f, dmo, A->h, xb, W->down, &L->ldown, G->down, G->down_b, &G->ldown, N, H, I);
		lf_cuda_gated_act_bwd_f32(t->dgate, t->dup, t->dmid, A->gate, A->up, (long)N * I, c->act, t->s);
		xb = bf16_of(t, A->xn2, NH, G->gate || G->up);
		struct lin gate_up[] = { { W->gate, NULL, &L->lgate, I, G->gate, G->gate_b, &G->lgate },
					 { W->up, NULL, &L->lup, I, G->up, G->up_b, &G->lup } };
		const float *dgate_up[] = { t->dgate, t->dup };
		linears_bwd(t, gate_up, 2, dgate_up, t->dh2, 0.0f, A->xn2, xb, N, H);
	}
	lf_cuda_rmsnorm_bwd_f32(dx, c->sandwich_norms ? G->pre_ff_norm : G->post_attn_norm, t->dh2, A->xmid,
				c->sandwich_norms ? L->pre_ff_norm : L->post_attn_norm, N, H, eps, off, t->s);
	/* attention: xmid = x + [norm](o(attn(rope(q), rope(k), v))) */
	const float *dao = dx;
	if (c->sandwich_norms) {
		zero_d(t, t->dh1, NH * sizeof(float));
		lf_cuda_rmsnorm_bwd_f32(t->dh1, G->post_attn_norm, dx, A->ao, L->post_attn_norm, N, H, eps, off, t->s);
		dao = t->dh1;
	}
	xb = bf16_of(t, A->att, (size_t)N * qd, G->o);
	linear_bwd(t, t->datt, 0.0f, dao, A->att, xb, W->o, &L->lo, G->o, G->o_b, &G->lo, N, H, qd);
	zero_d(t, t->dk, (size_t)N * kd * sizeof(float));
	zero_d(t, t->dv, (size_t)N * kd * sizeof(float));
	struct lf_attn a = attn_of(c, l);
	for (int s = 0; s < t->nspans; s++) {
		size_t s0 = (size_t)t->span_start[s];
		int len = t->span_len[s];
		attention_bwd(t, t->dq + s0 * qd, t->dk + s0 * kd, t->dv + s0 * kd, t->datt + s0 * qd, A->q + s0 * qd,
			      A->k + s0 * kd, A->v + s0 * kd, A->att + s0 * qd, len, &a, A->lse + s0 * nh);
	}
	rope_rows(t, t->dq, nh, qd, true);
	rope_rows(t, t->dk, nkv, kd, true);
	if (c->qk_norm) {
		zero_d(t, t->dqk_raw, (size_t)N * qd * sizeof(float));
		lf_cuda_rmsnorm_bwd_f32(t->dqk_raw, G->q_norm, t->dq, A->q_raw, L->q_norm, N * nh, d, eps, 0.0f, t->s);
		copy_d(t, t->dq, t->dqk_raw, (size_t)N * qd);
		zero_d(t, t->dqk_raw, (size_t)N * kd * sizeof(float));
		lf_cuda_rmsnorm_bwd_f32(t->dqk_raw, G->k_norm, t->dk, A->k_raw, L->k_norm, N * nkv, d, eps, 0.0f, t->s);
		copy_d(t, t->dk, t->dqk_raw, (size_t)N * kd);
	}
	xb = bf16_of(t, A->xn1, NH, G->q || G->k || G->v);
	struct lin qkv[] = { { W->q, NULL, &L->lq, qd, G->q, G->q_b, &G->lq },
			     { W->k, NULL, &L->lk, kd, G->k, G->k_b, &G->lk },
			     { W->v, NULL, &L->lv, kd, G->v, G->v_b, &G->lv } };
	const float *dqkv[] = { t->dq, t->dk, t->dv };
	linears_bwd(t, qkv, 3, dqkv, t->dh2, 0.0f, A->xn1, xb, N, H);
	lf_cuda_rmsnorm_bwd_f32(dx, G->in_norm, t->dh2, x, L->in_norm, N, H, eps, off, t->s);
}

/* ---- the head and the loss ---- */

/* The rows that have a target (host: t->rows, t->head_targets; device
 * copies); their number. */
static int head_rows(struct lf_cuda_train *t, int N)
{
	int n = 0;
	for (int i = 0; i < N; i++)
		if (t->targets[i] >= 0) {
			t->head_targets[n] = t->targets[i];
			t->rows[n++] = i;
		}
	if (n) {
		LF_CUDA_CHECK(cudaMemcpyAsync(t->rows_d, t->rows, (size_t)n * sizeof(int32_t), cudaMemcpyHostToDevice,
					      t->s));
		LF_CUDA_CHECK(cudaMemcpyAsync(t->head_targets_d, t->head_targets, (size_t)n * sizeof(int32_t),
					      cudaMemcpyHostToDevice, t->s));
		LF_CUDA_CHECK(cudaStreamSynchronize(t->s)); /* the host arrays change with the next micro-batch */
	}
	return n;
}

/* logits [k, V] of the final-normed rows xf [k, H] (xb: in bf16) */
static void head_logits(struct lf_cuda_train *t, const float *xf, const uint16_t *xb, int k)
{
	const struct lf_model_config *c = &t->host->cfg;
	if (t->bf16)
		lf_cuda_gemm_bf16(t->gemm, t->logits, xb, t->head.b, k, c->vocab, c->hidden, 0, 1, 1.0f, 0.0f, t->s);
	else
		mm_nt(t, t->logits, xf, t->head.f, k, c->vocab, c->hidden);
}

/* Loss over the rows that have a target, added on the device to loss_d;
 * dx = its gradient w.r.t. the last layer's output x (zero elsewhere);
 * train false: the loss only. */
static void head_fwd_bwd(struct lf_cuda_train *t, const float *x, float *dx, int N, float scale, bool train)
{
	const struct lf_model_config *c = &t->host->cfg;
	const struct lf_model *m = &t->dm;
	int H = c->hidden, V = c->vocab;
	float off = c->norm_plus_one ? 1.0f : 0.0f, eps = (float)c->eps;
	if (train)
		zero_d(t, dx, (size_t)N * H * sizeof(float));
	int n = head_rows(t, N);
	if (!n)
		return;
	lf_cuda_gather_rows_f32(t->xg, x, t->rows_d, n, H, t->s);
	lf_cuda_rmsnorm_f32(t->xf, t->xg, m->norm, n, H, eps, off, t->s);
	const uint16_t *xfb = bf16_of(t, t->xf, (size_t)n * H, true);
	for (int i0 = 0; i0 < n; i0 += t->head_rows) {
		int k = n - i0 < t->head_rows ? n - i0 : t->head_rows;
		const float *xf = t->xf + (size_t)i0 * H;
		head_logits(t, xf, xfb ? xfb + (size_t)i0 * H : NULL, k);
		if (c->final_softcap > 0) {
			lf_cuda_softcap_f32(t->logits, (long)k * V, (float)c->final_softcap, t->s);
			copy_d(t, t->capped, t->logits, (size_t)k * V);
		}
		lf_cuda_cross_entropy_f32(t->logits, t->head_targets_d + i0, k, V, scale, t->loss_d, t->count_d, t->s);
		if (!train)
			continue;
		if (c->final_softcap > 0)
			lf_cuda_softcap_bwd_f32(t->logits, t->capped, (long)k * V, (float)c->final_softcap, t->s);
		if (t->bf16) {
			lf_cuda_f32_to_bf16(t->lb, t->logits, (size_t)k * V, t->s);
			lf_cuda_gemm_bf16(t->gemm, t->dxf + (size_t)i0 * H, t->lb, t->head.b, k, H, V, 0, 0, 1.0f, 0.0f,
					  t->s);
			if (t->g.lm_head)
				lf_cuda_gemm_bf16(t->gemm, t->g.lm_head, t->lb, xfb + (size_t)i0 * H, V, H, k, 1, 0, 1.0f,
						  1.0f, t->s);
		} else {
			mm_nn(t, t->dxf + (size_t)i0 * H, t->logits, t->head.f, k, V, H, 0.0f);
			if (t->g.lm_head)
				mm_tn_acc(t, t->g.lm_head, t->logits, xf, k, V, H, 1.0f);
		}
	}
	if (!train)
		return;
	zero_d(t, t->dh1, (size_t)n * H * sizeof(float));
	lf_cuda_rmsnorm_bwd_f32(t->dh1, t->g.norm, t->dxf, t->xg, m->norm, n, H, eps, off, t->s);
	lf_cuda_scatter_rows_f32(dx, t->dh1, t->rows_d, n, H, t->s);
}

/* ---- a micro-batch ---- */

/* The call's ids, positions and RoPE frequencies (host) to the device. */
static void upload_call(struct lf_cuda_train *t, int N)
{
	int half = t->host->cfg.rope.rotary_dim / 2;
	to_device(t, t->ids_d, t->ids, (size_t)N * sizeof(int32_t));
	to_device(t, t->pos_d, t->pos, (size_t)N * sizeof(int32_t));
	to_device(t, t->inv_freq_d, t->inv_freq, (size_t)t->nrows * half * sizeof(float));
}

/* The first layer's input: the embeddings of the call's ids (NEFTune's
 * noise while training), times sqrt(hidden) where the model scales them. */
static void embed(struct lf_cuda_train *t, int N, bool training)
{
	const struct lf_model_config *c = &t->host->cfg;
	int H = c->hidden;
	lf_cuda_embedding_f32(t->xs, t->dm.embed, t->ids_d, N, H, t->s);
	t->training = training;
	if (training && t->neftune_mag > 0) {
		uint64_t key = lf_cuda_mix64(t->noise_seed ^ 0x6e656674756e65ULL);
		lf_cuda_neftune_f32(t->xs, (size_t)N * H, t->neftune_mag, key, t->s);
	}
	if (c->embed_scale)
		lf_cuda_grad_scale_f32(t->xs, (size_t)N * H, (float)sqrt((double)H), t->s);
}

/* Embeddings, positions, RoPE frequencies, targets and spans of a
 * micro-batch (backprop.c's prepare); the number of tokens. */
static int prepare(struct lf_cuda_train *t, const struct lf_train_row *rows, int nrows, bool training)
{
	const struct lf_model *m = t->host;
	int N, half = m->cfg.rope.rotary_dim / 2;
	if (lf_train_rows_check(t->host, rows, nrows, t->max_tokens, t->max_span, &N) < 0)
		return -1;
	for (int r = 0, row0 = 0; r < nrows; row0 += rows[r].T, r++) {
		const struct lf_train_row *q = &rows[r];
		int seq_len = 0;
		for (int i = 0; i < q->T; i++) {
			int32_t p = q->positions ? q->positions[i] : i;
			t->ids[row0 + i] = q->ids[i];
			t->pos[row0 + i] = p;
			seq_len = p + 1 > seq_len ? p + 1 : seq_len;
			t->targets[row0 + i] = i + 1 < q->T ? q->labels[i + 1] : -100;
		}
		t->attn_factor[r] = lf_model_rope_frequencies(m, seq_len, t->inv_freq + (size_t)r * half);
		t->row_len[r] = q->T;
	}
	t->nrows = nrows;
	upload_call(t, N);
	embed(t, N, training);
	t->nspans = 0;
	for (int r = 0, row0 = 0; r < nrows; row0 += rows[r].T, r++) {
		int k = rows[r].spans ? rows[r].nspans : 1;
		for (int s = 0, start = row0; s < k; s++) {
			int len = rows[r].spans ? (int)rows[r].spans[s] : rows[r].T;
			t->span_start[t->nspans] = start;
			t->span_len[t->nspans++] = len;
			start += len;
		}
	}
	zero_d(t, t->loss_d, sizeof(double));
	zero_d(t, t->count_d, sizeof(long));
	return N;
}

static double read_loss(struct lf_cuda_train *t, long *count)
{
	double loss;
	LF_CUDA_CHECK(cudaMemcpyAsync(&loss, t->loss_d, sizeof loss, cudaMemcpyDeviceToHost, t->s));
	if (count)
		LF_CUDA_CHECK(cudaMemcpyAsync(count, t->count_d, sizeof *count, cudaMemcpyDeviceToHost, t->s));
	LF_CUDA_CHECK(cudaStreamSynchronize(t->s));
	return loss;
}

static void forward(struct lf_cuda_train *t, int N)
{
	size_t NH = (size_t)N * t->host->cfg.hidden;
	for (int l = 0; l < t->host->cfg.layers; l++)
		layer_fwd(t, l, &t->acts[t->checkpointing ? 0 : l], t->xs + (size_t)l * NH, t->xs + (size_t)(l + 1) * NH,
			  N);
}

extern "C" int lf_cuda_train_step(struct lf_cuda_train *t, const struct lf_train_row *rows, int nrows, float scale,
				  double *loss_sum)
{
	const struct lf_model_config *c = &t->host->cfg;
	int N = prepare(t, rows, nrows, true), H = c->hidden;
	if (N < 0)
		return -1;
	size_t NH = (size_t)N * H;
	bool moe = c->arch == LF_ARCH_MIXTRAL;
	int E = c->experts, K = c->experts_per_tok;
	if (moe)
		memset(t->expert_load, 0, (size_t)(K * E + E) * sizeof *t->expert_load);
	forward(t, N);
	head_fwd_bwd(t, t->xs + (size_t)c->layers * NH, t->dx, N, scale, true);
	/* mixtral's load-balancing loss over every layer's routing (backprop.c) */
	double *aux = NULL;
	if (moe && t->moe_aux_coef != 0) {
		double n = (double)c->layers * N, loss = 0, *aux_grad = t->expert_load + (size_t)(K + 1) * E;
		for (int e = 0; e < E; e++) {
			double share = 0;
			for (int k = 0; k < K; k++)
				share += t->expert_load[(size_t)k * E + e] / n;
			loss += share * t->expert_load[(size_t)K * E + e] / n;
			aux_grad[e] = t->moe_aux_coef * E * share / n;
		}
		t->moe_aux_total += t->moe_aux_coef * E * loss;
		aux = aux_grad;
	}
	for (int l = c->layers - 1; l >= (t->g.embed ? 0 : t->g.lowest); l--) {
		struct acts *A = &t->acts[t->checkpointing ? 0 : l];
		const float *x = t->xs + (size_t)l * NH;
		if (t->checkpointing)
			layer_fwd(t, l, A, x, NULL, N);
		layer_bwd(t, l, A, x, t->dx, &t->g.layers[l], N, aux);
		if (t->comm && t->sync) /* this layer's gradients are final: their sum, while the backward goes on */
			sum_range(t, t->layer_lo[l], t->layer_hi[l], t->ev[l]);
	}
	if (t->g.embed) { /* the padding token's row gets none (backprop.c) */
		for (int i = 0; i < N; i++)
			t->ids[i] = t->ids[i] == c->pad_id ? -1 : t->ids[i];
		LF_CUDA_CHECK(cudaMemcpyAsync(t->ids_d, t->ids, (size_t)N * sizeof(int32_t), cudaMemcpyHostToDevice, t->s));
		lf_cuda_embedding_bwd_f32(t->g.embed, t->dx, t->ids_d, N, H,
					  c->embed_scale ? (float)sqrt((double)H) : 1.0f, t->s);
		LF_CUDA_CHECK(cudaStreamSynchronize(t->s)); /* before t->ids changes */
	}
	if (t->comm && t->sync)
		sum_rest(t);
	*loss_sum += read_loss(t, NULL);
	return 0;
}

extern "C" int lf_cuda_train_loss(struct lf_cuda_train *t, const struct lf_train_row *rows, int nrows,
				  double *loss_sum, long *targets)
{
	const struct lf_model_config *c = &t->host->cfg;
	int N = prepare(t, rows, nrows, false);
	if (N < 0)
		return -1;
	forward(t, N);
	head_fwd_bwd(t, t->xs + (size_t)c->layers * N * c->hidden, NULL, N, 1.0f, false);
	long count = 0;
	*loss_sum += read_loss(t, &count);
	*targets += count;
	return 0;
}

/* The logits of n rows x [n, H] (the last layer's output) into host
 * memory [n, V]. */
static void logits_out(struct lf_cuda_train *t, const float *x, int n, float *logits)
{
	const struct lf_model_config *c = &t->host->cfg;
	int H = c->hidden, V = c->vocab;
	float off = c->norm_plus_one ? 1.0f : 0.0f;
	lf_cuda_rmsnorm_f32(t->xf, x, t->dm.norm, n, H, (float)c->eps, off, t->s);
	const uint16_t *xfb = bf16_of(t, t->xf, (size_t)n * H, true);
	for (int i0 = 0; i0 < n; i0 += t->head_rows) {
		int k = n - i0 < t->head_rows ? n - i0 : t->head_rows;
		head_logits(t, t->xf + (size_t)i0 * H, xfb ? xfb + (size_t)i0 * H : NULL, k);
		if (c->final_softcap > 0)
			lf_cuda_softcap_f32(t->logits, (long)k * V, (float)c->final_softcap, t->s);
		LF_CUDA_CHECK(cudaMemcpyAsync(logits + (size_t)i0 * V, t->logits, (size_t)k * V * sizeof(float),
					      cudaMemcpyDeviceToHost, t->s));
	}
	LF_CUDA_CHECK(cudaStreamSynchronize(t->s));
}

extern "C" int lf_cuda_train_logits(struct lf_cuda_train *t, const struct lf_train_row *row, float *logits)
{
	const struct lf_model_config *c = &t->host->cfg;
	int N = prepare(t, row, 1, false);
	if (N < 0)
		return -1;
	forward(t, N);
	logits_out(t, t->xs + (size_t)c->layers * N * c->hidden, N, logits);
	return 0;
}

/* The kernels' scratch that the pool keeps between steps (lf_cuda_train_open)
 * back to the driver, so that it counts as free for a large allocation. */
static void trim_pool(struct lf_cuda_train *t)
{
	int dev = 0;
	cudaMemPool_t pool;
	if (t->s)
		LF_CUDA_CHECK(cudaStreamSynchronize(t->s)); /* the stream-ordered frees done */
	LF_CUDA_CHECK(cudaGetDevice(&dev));
	LF_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, dev));
	LF_CUDA_CHECK(cudaMemPoolTrimTo(pool, 0));
}

/* ---- inference with caches ---- */

extern "C" int lf_cuda_kv_init(struct lf_cuda_train *t, struct lf_cuda_kv *kv, int capacity)
{
	const struct lf_model_config *c = &t->host->cfg;
	memset(kv, 0, sizeof *kv);
	if (capacity < 1)
		return lf_fail("a KV cache of %d positions", capacity);
	size_t n = (size_t)c->layers * capacity * c->kv_heads * c->head_dim;
	trim_pool(t);
	if (cudaMalloc((void **)&kv->k, n * sizeof(float)) != cudaSuccess ||
	    cudaMalloc((void **)&kv->v, n * sizeof(float)) != cudaSuccess) {
		cudaGetLastError();
		lf_cuda_kv_free(kv);
		return lf_fail("the GPU has no room for a KV cache of %d positions (%.2f GiB)", capacity,
			       2.0 * n * sizeof(float) / 1073741824.0);
	}
	kv->capacity = capacity;
	return 0;
}

extern "C" int lf_cuda_kv_reserve(struct lf_cuda_train *t, struct lf_cuda_kv *kv, int capacity)
{
	if (capacity <= kv->capacity)
		return 0;
	const struct lf_model_config *c = &t->host->cfg;
	struct lf_cuda_kv bigger;
	if (lf_cuda_kv_init(t, &bigger, capacity) < 0)
		return -1;
	size_t kd = (size_t)c->kv_heads * c->head_dim;
	for (int l = 0; l < c->layers && kv->len; l++) {
		size_t from = (size_t)l * kv->capacity * kd, to = (size_t)l * capacity * kd;
		copy_d(t, bigger.k + to, kv->k + from, (size_t)kv->len * kd);
		copy_d(t, bigger.v + to, kv->v + from, (size_t)kv->len * kd);
	}
	LF_CUDA_CHECK(cudaStreamSynchronize(t->s));
	bigger.len = kv->len;
	lf_cuda_kv_free(kv);
	*kv = bigger;
	return 0;
}

extern "C" void lf_cuda_kv_free(struct lf_cuda_kv *kv)
{
	if (kv->k)
		LF_CUDA_CHECK(cudaFree(kv->k));
	if (kv->v)
		LF_CUDA_CHECK(cudaFree(kv->v));
	memset(kv, 0, sizeof *kv);
}

extern "C" int lf_cuda_forward_batch(struct lf_cuda_train *t, const struct lf_cuda_seq_in *seqs, int nseq,
				     bool last_only, float *logits)
{
	const struct lf_model *m = t->host;
	const struct lf_model_config *c = &m->cfg;
	int N = 0, H = c->hidden, half = c->rope.rotary_dim / 2;
	for (int s = 0; s < nseq; s++) {
		const struct lf_cuda_seq_in *q = &seqs[s];
		if (q->T < 1 || q->kv->len + q->T > q->kv->capacity)
			return lf_fail("forward: %d tokens after %d do not fit (%d in all)", q->T, q->kv->len,
				       q->kv->capacity);
		for (int i = 0; i < q->T; i++)
			if (q->ids[i] < 0 || q->ids[i] >= c->vocab)
				return lf_fail("token id %d is outside the vocabulary (%d)", q->ids[i], c->vocab);
		N += q->T;
	}
	if (N > t->max_tokens || nseq > t->max_tokens)
		return lf_fail("a call of %d tokens; the buffers hold %d", N, t->max_tokens);
	/* positions: given, or the cache's; RoPE's frequencies for the longest
	 * position each sequence reaches (model.c's rule) */
	for (int s = 0, row0 = 0; s < nseq; row0 += seqs[s].T, s++) {
		const struct lf_cuda_seq_in *q = &seqs[s];
		int32_t seq_len = q->kv->len + q->T;
		for (int i = 0; i < q->T; i++) {
			t->ids[row0 + i] = q->ids[i];
			t->pos[row0 + i] = q->positions ? q->positions[i] : q->kv->len + i;
			if (q->positions && q->positions[i] + 1 > seq_len)
				seq_len = q->positions[i] + 1;
		}
		t->attn_factor[s] = lf_model_rope_frequencies(m, seq_len, t->inv_freq + (size_t)s * half);
		t->row_len[s] = q->T;
	}
	t->nrows = nseq;
	upload_call(t, N);
	embed(t, N, false);
	t->cached = seqs;
	forward(t, N);
	t->cached = NULL;
	for (int s = 0; s < nseq; s++)
		seqs[s].kv->len += seqs[s].T;
	const float *x = t->xs + (size_t)c->layers * N * H;
	if (!last_only) {
		logits_out(t, x, N, logits);
		return 0;
	}
	for (int s = 0, row0 = 0; s < nseq; row0 += seqs[s].T, s++)
		t->rows[s] = row0 + seqs[s].T - 1;
	to_device(t, t->rows_d, t->rows, (size_t)nseq * sizeof(int32_t));
	lf_cuda_gather_rows_f32(t->xg, x, t->rows_d, nseq, H, t->s);
	logits_out(t, t->xg, nseq, logits);
	return 0;
}

/* ---- gradients, the optimizer, tensors ---- */

extern "C" void lf_cuda_train_zero_grads(struct lf_cuda_train *t)
{
	zero_d(t, t->grads, t->gn * sizeof(float));
}

/* The gradients between the device's block and the caller's host block,
 * tensor by tensor (their places differ: placement). */
static void copy_grads(struct lf_cuda_train *t, float *host, bool to_host)
{
	for (size_t i = 0; i < t->host->ntensors; i++) {
		if (t->host_at[i] == SIZE_MAX)
			continue;
		size_t bytes = t->host->tensors[i].n * sizeof(float);
		float *h = host + t->host_at[i], *d = t->grads + t->grad_at[i];
		LF_CUDA_CHECK(to_host ? cudaMemcpyAsync(h, d, bytes, cudaMemcpyDeviceToHost, t->s)
				      : cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice, t->s));
	}
	LF_CUDA_CHECK(cudaStreamSynchronize(t->s));
}

extern "C" void lf_cuda_train_get_grads(struct lf_cuda_train *t, float *host)
{
	copy_grads(t, host, true);
}

extern "C" void lf_cuda_train_set_grads(struct lf_cuda_train *t, const float *host)
{
	copy_grads(t, (float *)host, false);
}

static void check_trained(const struct lf_cuda_train *t, size_t i, bool moments)
{
	if (i >= t->host->ntensors || t->grad_at[i] == SIZE_MAX || (moments && t->mom_at[i] == SIZE_MAX)) {
		fprintf(stderr, "lf_cuda_train: tensor %zu is not trained%s (internal error)\n", i,
			moments ? " by this process" : "");
		exit(1);
	}
}

/* Each listed tensor's gradient scaled by the clipping coefficient (on
 * the device, or coef), then its AdamW step and its bf16 copy. */
static void adamw_all(struct lf_cuda_train *t, const struct lf_cuda_update *u, size_t n, long step,
		      const struct lf_adamw *h, const float *coef_d, float coef)
{
	const struct lf_model *m = t->host;
	for (size_t k = 0; k < n; k++) {
		size_t i = u[k].tensor, len = m->tensors[i].n, at = t->grad_at[i], mat = t->mom_at[i];
		check_trained(t, i, true);
		if (coef_d)
			lf_cuda_grad_scale_dev_f32(t->grads + at, len, coef_d, t->s);
		else
			lf_cuda_grad_scale_f32(t->grads + at, len, coef, t->s);
		lf_cuda_adamw_f32(t->dt[i], t->grads + at, t->mom1 + mat, t->mom2 + mat, len, step, u[k].lr, h->beta1,
				  h->beta2, h->eps, h->weight_decay, u[k].decay, 1.0f, t->s);
		if (t->bt[i])
			lf_cuda_f32_to_bf16(t->bt[i], t->dt[i], len, t->s);
	}
}

static void norm_sq(struct lf_cuda_train *t, const struct lf_cuda_update *u, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		check_trained(t, u[k].tensor, false);
		lf_cuda_grad_norm_sq_f32(t->norm_sq_d + k, t->grads + t->grad_at[u[k].tensor],
					 t->host->tensors[u[k].tensor].n, t->s);
	}
}

extern "C" void lf_cuda_train_update(struct lf_cuda_train *t, const struct lf_cuda_update *u, size_t n, long step,
				     const struct lf_adamw *h, double max_norm, double *grad_norm)
{
	norm_sq(t, u, n);
	lf_cuda_clip_coef(t->coef_d, t->norm_sq_d, n, max_norm, t->total_d, t->s);
	adamw_all(t, u, n, step, h, t->coef_d, 0);
	LF_CUDA_CHECK(cudaMemcpyAsync(grad_norm, t->total_d, sizeof *grad_norm, cudaMemcpyDeviceToHost, t->s));
	LF_CUDA_CHECK(cudaStreamSynchronize(t->s));
}

extern "C" void lf_cuda_train_norm_sq(struct lf_cuda_train *t, const struct lf_cuda_update *u, size_t n, double *sq)
{
	norm_sq(t, u, n);
	LF_CUDA_CHECK(cudaMemcpyAsync(sq, t->norm_sq_d, n * sizeof *sq, cudaMemcpyDeviceToHost, t->s));
	LF_CUDA_CHECK(cudaStreamSynchronize(t->s));
}

extern "C" void lf_cuda_train_adamw(struct lf_cuda_train *t, const struct lf_cuda_update *u, size_t n, long step,
				    const struct lf_adamw *h, float coef)
{
	adamw_all(t, u, n, step, h, NULL, coef);
	LF_CUDA_CHECK(cudaStreamSynchronize(t->s));
}

extern "C" void lf_cuda_train_get_tensor(struct lf_cuda_train *t, size_t i, float *host)
{
	check_trained(t, i, false);
	copy_sync(t, host, t->dt[i], t->host->tensors[i].n * sizeof(float), cudaMemcpyDeviceToHost);
}

extern "C" void lf_cuda_train_set_tensor(struct lf_cuda_train *t, size_t i, const float *host)
{
	check_trained(t, i, false);
	copy_sync(t, t->dt[i], host, t->host->tensors[i].n * sizeof(float), cudaMemcpyHostToDevice);
	if (t->bt[i])
		lf_cuda_f32_to_bf16(t->bt[i], t->dt[i], t->host->tensors[i].n, t->s);
}

extern "C" void lf_cuda_train_get_moments(struct lf_cuda_train *t, size_t i, float *m1, float *m2)
{
	check_trained(t, i, true);
	size_t n = t->host->tensors[i].n * sizeof(float), at = t->mom_at[i];
	LF_CUDA_CHECK(cudaMemcpyAsync(m1, t->mom1 + at, n, cudaMemcpyDeviceToHost, t->s));
	copy_sync(t, m2, t->mom2 + at, n, cudaMemcpyDeviceToHost); /* one wait for both: the stream's order */
}

extern "C" void lf_cuda_train_set_moments(struct lf_cuda_train *t, size_t i, const float *m1, const float *m2)
{
	check_trained(t, i, true);
	size_t n = t->host->tensors[i].n * sizeof(float), at = t->mom_at[i];
	to_device(t, t->mom1 + at, m1, n);
	copy_sync(t, t->mom2 + at, m2, n, cudaMemcpyHostToDevice); /* one wait for both */
}

extern "C" long lf_cuda_train_lora_shared(const struct lf_cuda_train *t)
{
	return t->lora_shared;
}

extern "C" void lf_cuda_train_set_noise(struct lf_cuda_train *t, float lora_dropout, float neftune_mag,
				       uint64_t noise_seed)
{
	t->lora_dropout = lora_dropout;
	t->neftune_mag = neftune_mag;
	t->noise_seed = noise_seed;
}

extern "C" void lf_cuda_train_set_moe_aux(struct lf_cuda_train *t, float coef)
{
	t->moe_aux_coef = coef;
	t->moe_aux_total = 0;
}

extern "C" double lf_cuda_train_moe_aux(const struct lf_cuda_train *t)
{
	return t->moe_aux_total;
}

extern "C" size_t lf_cuda_train_arena_bytes(const struct lf_cuda_train *t)
{
	return t->wmem.used + t->amem.used;
}

extern "C" const char *lf_cuda_train_device(const struct lf_cuda_train *t)
{
	return t->device;
}

/* ---- data parallel: the gradients summed over a group with NCCL ----
 * NCCL is loaded when a group is joined (dlopen, so a program that never
 * joins one needs no libnccl).  On a step's last micro-batch each layer's
 * gradients are summed, on a stream of their own, as soon as the backward
 * has made them (the range of the gradient block that layer's trained
 * tensors fill), while the backward goes on below; the rest of the block
 * (embedding, final norm, head) after it. */

static struct {
	void *lib;
	ncclResult_t (*get_unique_id)(ncclUniqueId *);
	ncclResult_t (*comm_init_rank)(ncclComm_t *, int, ncclUniqueId, int);
	ncclResult_t (*all_reduce)(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t);
	ncclResult_t (*comm_destroy)(ncclComm_t);
	const char *(*error_string)(ncclResult_t);
} nccl;

static int nccl_load(void)
{
	if (nccl.lib)
		return 0;
	void *lib = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
	if (!lib)
		return lf_fail("NCCL: %s (the GPUs' gradients are summed with NCCL: put libnccl.so.2 on "
			       "LD_LIBRARY_PATH)", dlerror());
	*(void **)&nccl.get_unique_id = dlsym(lib, "ncclGetUniqueId");
	*(void **)&nccl.comm_init_rank = dlsym(lib, "ncclCommInitRank");
	*(void **)&nccl.all_reduce = dlsym(lib, "ncclAllReduce");
	*(void **)&nccl.comm_destroy = dlsym(lib, "ncclCommDestroy");
	*(void **)&nccl.error_string = dlsym(lib, "ncclGetErrorString");
	if (!nccl.get_unique_id || !nccl.comm_init_rank || !nccl.all_reduce || !nccl.comm_destroy ||
	    !nccl.error_string) {
		dlclose(lib);
		return lf_fail("NCCL: libnccl.so.2 lacks a function lf needs");
	}
	nccl.lib = lib;
	return 0;
}

static void nccl_check(ncclResult_t r, const char *call)
{
	if (r != ncclSuccess) {
		fprintf(stderr, "lf: NCCL %s: %s\n", call, nccl.error_string(r));
		exit(1);
	}
}

extern "C" int lf_cuda_group_id(unsigned char id[LF_CUDA_GROUP_ID_BYTES])
{
	ncclUniqueId u;
	if (nccl_load() < 0)
		return -1;
	ncclResult_t r = nccl.get_unique_id(&u);
	if (r != ncclSuccess)
		return lf_fail("NCCL: %s", nccl.error_string(r));
	memcpy(id, u.internal, LF_CUDA_GROUP_ID_BYTES);
	return 0;
}

/* Each layer's range of the gradient block, when every layer's trained
 * tensors fill one range that no other tensor's gradient enters. */
static void layer_ranges(struct lf_cuda_train *t)
{
	const struct lf_model *m = t->host;
	int L = m->cfg.layers;
	for (int l = 0; l < L; l++) {
		t->layer_lo[l] = SIZE_MAX;
		t->layer_hi[l] = 0;
	}
	int *owner = (int *)lf_malloc((m->ntensors + 1) * sizeof *owner);
	for (size_t i = 0; i < m->ntensors; i++) {
		const char *p = strstr(m->tensors[i].name, "layers.");
		owner[i] = p ? atoi(p + 7) : -1;
		if (t->grad_at[i] == SIZE_MAX || owner[i] < 0 || owner[i] >= L)
			continue;
		size_t lo = t->grad_at[i], hi = lo + m->tensors[i].n;
		t->layer_lo[owner[i]] = lo < t->layer_lo[owner[i]] ? lo : t->layer_lo[owner[i]];
		t->layer_hi[owner[i]] = hi > t->layer_hi[owner[i]] ? hi : t->layer_hi[owner[i]];
	}
	t->by_layer = true;
	for (size_t i = 0; i < m->ntensors; i++) { /* no other tensor inside a layer's range */
		if (t->grad_at[i] == SIZE_MAX)
			continue;
		size_t lo = t->grad_at[i], hi = lo + m->tensors[i].n;
		for (int l = 0; l < L; l++)
			if (l != owner[i] && lo < t->layer_hi[l] && hi > t->layer_lo[l])
				t->by_layer = false;
	}
	for (int l = 0; l < L; l++)
		if (t->layer_lo[l] >= t->layer_hi[l] || !t->by_layer)
			t->layer_lo[l] = t->layer_hi[l] = 0;
	free(owner);
}

extern "C" int lf_cuda_train_join(struct lf_cuda_train *t, const unsigned char *id, int rank, int world)
{
	ncclUniqueId u;
	if (nccl_load() < 0)
		return -1;
	memcpy(u.internal, id, LF_CUDA_GROUP_ID_BYTES);
	ncclResult_t r = nccl.comm_init_rank(&t->comm, world, u, rank);
	if (r != ncclSuccess)
		return lf_fail("NCCL: joining a group of %d as %d: %s", world, rank, nccl.error_string(r));
	int L = t->host->cfg.layers;
	LF_CUDA_CHECK(cudaStreamCreateWithFlags(&t->cs, cudaStreamNonBlocking));
	t->ev = (cudaEvent_t *)lf_calloc((size_t)L + 2, sizeof *t->ev);
	for (int i = 0; i < L + 2; i++)
		LF_CUDA_CHECK(cudaEventCreateWithFlags(&t->ev[i], cudaEventDisableTiming));
	t->layer_lo = (size_t *)lf_calloc((size_t)L + 1, sizeof(size_t));
	t->layer_hi = (size_t *)lf_calloc((size_t)L + 1, sizeof(size_t));
	layer_ranges(t);
	return 0;
}

extern "C" void lf_cuda_train_set_sync(struct lf_cuda_train *t, bool last)
{
	t->sync = last;
}

/* Sum [lo, hi) of the gradient block over the group, on the group's
 * stream once the compute stream has got to here (event e). */
static void sum_range(struct lf_cuda_train *t, size_t lo, size_t hi, cudaEvent_t e)
{
	if (lo >= hi)
		return;
	LF_CUDA_CHECK(cudaEventRecord(e, t->s));
	LF_CUDA_CHECK(cudaStreamWaitEvent(t->cs, e, 0));
	nccl_check(nccl.all_reduce(t->grads + lo, t->grads + lo, hi - lo, ncclFloat32, ncclSum, t->comm, t->cs),
		   "ncclAllReduce");
}

/* After a synchronised step's backward: the block outside the layers'
 * ranges summed too, and the compute stream made to wait for every sum. */
static void sum_rest(struct lf_cuda_train *t)
{
	int L = t->host->cfg.layers;
	size_t at = 0;
	for (int l = 0; l <= L; l++) { /* the gaps between the layers' ranges, in order */
		size_t lo = SIZE_MAX;
		for (int k = 0; k < L; k++)
			if (t->layer_hi[k] > t->layer_lo[k] && t->layer_lo[k] >= at && t->layer_lo[k] < lo)
				lo = t->layer_lo[k];
		size_t end = lo == SIZE_MAX ? t->gn : lo;
		sum_range(t, at, end, t->ev[L]);
		if (lo == SIZE_MAX)
			break;
		for (int k = 0; k < L; k++)
			if (t->layer_lo[k] == lo)
				at = t->layer_hi[k];
	}
	LF_CUDA_CHECK(cudaEventRecord(t->ev[L + 1], t->cs));
	LF_CUDA_CHECK(cudaStreamWaitEvent(t->s, t->ev[L + 1], 0));
}

extern "C" void lf_cuda_train_sum_grads(struct lf_cuda_train *t)
{
	sum_range(t, 0, t->gn, t->ev[t->host->cfg.layers]);
	LF_CUDA_CHECK(cudaEventRecord(t->ev[t->host->cfg.layers + 1], t->cs));
	LF_CUDA_CHECK(cudaStreamWaitEvent(t->s, t->ev[t->host->cfg.layers + 1], 0));
}

/* ---- opening and closing ---- */

/* the number of GPUs, or 0 with lf_fail */
static int device_count(void)
{
	int n = 0;
	cudaError_t e = cudaGetDeviceCount(&n);
	if (e != cudaSuccess || n < 1) {
		lf_fail("no CUDA device: %s", e != cudaSuccess ? cudaGetErrorString(e) : "none found");
		return 0;
	}
	return n;
}

extern "C" int lf_cuda_train_probe(int device)
{
	int n = device_count();
	if (!n)
		return -1;
	cudaDeviceProp prop;
	cudaError_t e = cudaGetDeviceProperties(&prop, (device < 0 ? 0 : device) % n);
	if (e != cudaSuccess)
		return lf_fail("GPU %d: %s", (device < 0 ? 0 : device) % n, cudaGetErrorString(e));
	return 0;
}

/* cudaMalloc an arena counted by its layout; -1 with lf_fail when the GPU
 * lacks the room. */
static int dmem_alloc(struct lf_cuda_train *t, struct dmem *a, const char *what)
{
	size_t free_b = 0, total_b = 0;
	trim_pool(t);
	LF_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
	if (a->used > free_b || cudaMalloc((void **)&a->base, a->used) != cudaSuccess) {
		cudaGetLastError();
		a->base = NULL;
		return lf_fail("the GPU (%s) has %.2f GiB free; %s needs %.2f GiB%s", t->device, free_b / 1073741824.0,
			       what, a->used / 1073741824.0,
			       a == &t->amem ? ": use a smaller batch or cutoff_len" : "");
	}
	return 0;
}

extern "C" int lf_cuda_train_reserve(struct lf_cuda_train *t, int max_tokens, int max_span)
{
	if (max_tokens < 1 || max_span < 1 || max_span > max_tokens)
		return lf_fail("training buffers: bad sizes (%d tokens, spans of %d)", max_tokens, max_span);
	if (t->amem.base && max_tokens <= t->max_tokens && max_span <= t->max_span)
		return 0;
	if (t->amem.base) {
		LF_CUDA_CHECK(cudaStreamSynchronize(t->s));
		LF_CUDA_CHECK(cudaFree(t->amem.base));
		t->amem.base = NULL;
	}
	t->max_tokens = max_tokens > t->max_tokens ? max_tokens : t->max_tokens;
	t->max_span = max_span > t->max_span ? max_span : t->max_span;
	layout_acts(t); /* count */
	if (dmem_alloc(t, &t->amem, "the activations") < 0)
		return -1;
	layout_acts(t); /* place */
	size_t N = (size_t)t->max_tokens;
	int32_t **i32[] = { &t->ids, &t->pos, &t->targets, &t->rows, &t->head_targets };
	for (size_t i = 0; i < sizeof i32 / sizeof i32[0]; i++)
		*i32[i] = (int32_t *)lf_realloc(*i32[i], N * sizeof(int32_t));
	int **ints[] = { &t->span_start, &t->span_len, &t->row_len };
	for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
		*ints[i] = (int *)lf_realloc(*ints[i], N * sizeof(int));
	t->inv_freq = (float *)lf_realloc(t->inv_freq, N * (size_t)(t->host->cfg.rope.rotary_dim / 2 + 1) * sizeof(float));
	t->attn_factor = (float *)lf_realloc(t->attn_factor, N * sizeof(float));
	const struct lf_model_config *c = &t->host->cfg;
	if (c->arch == LF_ARCH_MIXTRAL) { /* the routing's host side */
		size_t E = (size_t)c->experts, K = (size_t)c->experts_per_tok;
		for (int i = 0; i < (t->checkpointing ? 1 : c->layers); i++) {
			struct acts *A = &t->acts[i];
			A->probs_h = (float *)lf_realloc(A->probs_h, N * E * sizeof(float));
			A->weights_h = (float *)lf_realloc(A->weights_h, N * K * sizeof(float));
			A->choice = (int *)lf_realloc(A->choice, N * K * sizeof(int));
			A->pair_row = (int32_t *)lf_realloc(A->pair_row, N * K * sizeof(int32_t));
			A->pair_of = (int32_t *)lf_realloc(A->pair_of, N * K * sizeof(int32_t));
			A->expert_start = (int *)lf_realloc(A->expert_start, (E + 1) * sizeof(int));
		}
		t->dweights_h = (float *)lf_realloc(t->dweights_h, N * K * sizeof(float));
		t->dprobs_h = (float *)lf_realloc(t->dprobs_h, N * E * sizeof(float));
	}
	return 0;
}

/* Tensor i's bf16 copy from its host f32, in pieces through host memory
 * (no device memory beyond the arena). */
static void upload_bf16(struct lf_cuda_train *t, size_t i)
{
	const size_t piece = (size_t)1 << 24;
	size_t n = t->host->tensors[i].n;
	uint16_t *h = (uint16_t *)lf_malloc((n < piece ? n : piece) * sizeof *h + 2);
	for (size_t at = 0; at < n; at += piece) {
		size_t k = n - at < piece ? n - at : piece;
		lf_cpu_f32_to_bf16(h, t->host->tensors[i].data + at, k);
		copy_sync(t, t->bt[i] + at, h, k * sizeof *h, cudaMemcpyHostToDevice);
	}
	free(h);
}

extern "C" struct lf_cuda_train *lf_cuda_train_open(const struct lf_model *m, int device, const size_t *grad_at,
						     const unsigned char *owned, int max_tokens,
						     int max_span, bool checkpointing, bool bf16)
{
	const struct lf_model_config *c = &m->cfg;
	if (max_tokens < 1 || max_span < 1 || max_span > max_tokens) {
		lf_fail("training buffers: bad sizes (%d tokens, spans of %d)", max_tokens, max_span);
		return NULL;
	}
	int ndev = device_count();
	if (!ndev)
		return NULL;
	device = (device < 0 ? 0 : device) % ndev;
	LF_CUDA_CHECK(cudaSetDevice(device));
	struct lf_cuda_train *t = (struct lf_cuda_train *)lf_calloc(1, sizeof *t);
	t->host = m;
	t->host_at = (size_t *)lf_calloc(m->ntensors + 1, sizeof *t->host_at);
	memcpy(t->host_at, grad_at, m->ntensors * sizeof *grad_at);
	t->grad_at = (size_t *)lf_calloc(m->ntensors + 1, sizeof *t->grad_at);
	t->mom_at = (size_t *)lf_calloc(m->ntensors + 1, sizeof *t->mom_at);
	for (size_t i = 0; i < m->ntensors; i++) {
		bool mine = grad_at[i] != SIZE_MAX && (!owned || owned[i]);
		t->mom_at[i] = mine ? t->mn : SIZE_MAX;
		t->mn += mine ? (m->tensors[i].n + 15) / 16 * 16 : 0;
	}
	t->checkpointing = checkpointing;
	t->bf16 = bf16;
	if (c->arch == LF_ARCH_MIXTRAL)
		t->expert_load = (double *)lf_calloc((size_t)(c->experts_per_tok + 2) * c->experts + 1, sizeof(double));
	t->dt = (float **)lf_calloc(m->ntensors + 1, sizeof *t->dt);
	t->bt = (uint16_t **)lf_calloc(m->ntensors + 1, sizeof *t->bt);
	t->use = (int *)lf_calloc(m->ntensors + 1, sizeof *t->use);
	mark_uses(t);
	t->follow = (size_t *)lf_calloc(m->ntensors + 1, sizeof *t->follow);
	t->follower = (bool *)lf_calloc(m->ntensors + 1, sizeof *t->follower);
	placement(t);
	layout_grads(t);
	t->acts = (struct acts *)lf_calloc(checkpointing ? 1 : (size_t)c->layers, sizeof *t->acts);
	cudaDeviceProp prop;
	LF_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
	snprintf(t->device, sizeof t->device, "%d: %s", device, prop.name);
	layout_weights(t); /* count */
	if (dmem_alloc(t, &t->wmem, "the model") < 0) {
		lf_cuda_train_close(t);
		return NULL;
	}
	/* the kernels' stream-ordered scratch (cudaMallocAsync) stays in the
	 * pool between steps instead of going back to the driver at every
	 * synchronisation: after the first step, no allocation in the loop */
	cudaMemPool_t pool;
	uint64_t keep = UINT64_MAX;
	LF_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
	LF_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
	layout_weights(t); /* place */
	LF_CUDA_CHECK(cudaStreamCreate(&t->s));
	LF_CUBLAS_CHECK(cublasLtCreate(&t->lt));
	t->gemm = lf_cuda_gemm_new(t->lt, t->ws, LF_CUBLASLT_WORKSPACE_BYTES);
	for (size_t i = 0; i < m->ntensors; i++) {
		if (t->dt[i])
			to_device(t, t->dt[i], m->tensors[i].data, m->tensors[i].n * sizeof(float));
		if (t->bt[i])
			upload_bf16(t, i);
	}
	zero_d(t, t->grads, (t->gn ? t->gn : 1) * sizeof(float));
	zero_d(t, t->mom1, (t->mn ? t->mn : 1) * sizeof(float));
	zero_d(t, t->mom2, (t->mn ? t->mn : 1) * sizeof(float));
	LF_CUDA_CHECK(cudaStreamSynchronize(t->s));
	if (make_device_view(t) < 0) {
		lf_cuda_train_close(t);
		return NULL;
	}
	float **dgrads = (float **)lf_calloc(m->ntensors + 1, sizeof *dgrads);
	for (size_t i = 0; i < m->ntensors; i++)
		dgrads[i] = t->grad_at[i] == SIZE_MAX ? NULL : t->grads + t->grad_at[i];
	lf_model_grad_init(&t->g, m, dgrads); /* pointer arithmetic only: device pointers come out */
	free(dgrads);
	if (lf_cuda_train_reserve(t, max_tokens, max_span) < 0) {
		lf_cuda_train_close(t);
		return NULL;
	}
	return t;
}

extern "C" struct lf_cuda_train *lf_cuda_model_open(const struct lf_model *m, int device, int max_tokens, bool bf16)
{
	size_t *at = (size_t *)lf_malloc((m->ntensors + 1) * sizeof *at);
	for (size_t i = 0; i < m->ntensors; i++)
		at[i] = SIZE_MAX;
	struct lf_cuda_train *t = lf_cuda_train_open(m, device, at, NULL, max_tokens, max_tokens, true, bf16);
	free(at);
	return t;
}

extern "C" void lf_cuda_train_close(struct lf_cuda_train *t)
{
	if (!t)
		return;
	if (t->g.layers)
		lf_model_grad_free(&t->g, t->host);
	if (t->comm) {
		LF_CUDA_CHECK(cudaStreamSynchronize(t->cs));
		nccl_check(nccl.comm_destroy(t->comm), "ncclCommDestroy");
		for (int i = 0; i < t->host->cfg.layers + 2; i++)
			LF_CUDA_CHECK(cudaEventDestroy(t->ev[i]));
		LF_CUDA_CHECK(cudaStreamDestroy(t->cs));
	}
	lf_cuda_gemm_free(t->gemm);
	if (t->lt)
		LF_CUBLAS_CHECK(cublasLtDestroy(t->lt));
	if (t->s)
		LF_CUDA_CHECK(cudaStreamDestroy(t->s));
	if (t->wmem.base)
		LF_CUDA_CHECK(cudaFree(t->wmem.base));
	if (t->amem.base)
		LF_CUDA_CHECK(cudaFree(t->amem.base));
	for (int l = 0; t->gl && l < t->host->cfg.layers; l++)
		free(t->gl[l].w1);
	for (int i = 0; t->acts && i < (t->checkpointing ? 1 : t->host->cfg.layers); i++) {
		struct acts *A = &t->acts[i];
		void *h[] = { A->probs_h, A->weights_h, A->choice, A->pair_row, A->pair_of, A->expert_start };
		for (size_t k = 0; k < sizeof h / sizeof h[0]; k++)
			free(h[k]);
	}
	void *p[] = { t->expert_loras, t->expert_load, t->dweights_h, t->dprobs_h, t->mom_at, t->ev, t->layer_lo,
		      t->layer_hi, t->dm.layers, t->gl, t->dt, t->bt, t->use, t->acts, t->grad_at, t->host_at, t->follow,
		      t->follower, t->ids, t->pos, t->targets, t->rows,
		      t->head_targets, t->span_start, t->span_len, t->row_len, t->inv_freq, t->attn_factor };
	for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
		free(p[i]);
	free(t);
}

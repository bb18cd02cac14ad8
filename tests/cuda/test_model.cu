/*
 * test_model.cu — the whole model on the GPU (libcommon/train_cuda.h)
 * against the CPU path (backprop.c, model.c) on the model folders given as
 * arguments (gpu-check.sh makes them with lf-init, one per architecture):
 * logits of every position, inference with KV caches (a batch of two
 * prompts, then single tokens), the evaluation loss, the training loss and every trained gradient, for full
 * training (gradient checkpointing, neat-packed spans with restarting
 * positions, NEFTune), LoRA on every linear layer (checkpointing) and
 * LoRA with dropout (no checkpointing), each followed by one optimizer step
 * (clipping and AdamW) from the same gradients; full training's step
 * again through NCCL in a group of one (the same bits).  Norms and biases
 * are perturbed so that no two are alike.
 *
 * Each in the f32 and the bf16 mode.  Tolerances, f32 mode: logits and
 * gradients max|gpu - cpu| <= 1e-4 max|cpu| per tensor, losses within 1e-5
 * relative (it differs from the CPU only by rounding: summation orders,
 * fused multiply-adds); bf16 mode: logits 3e-2, gradients 5e-2, losses
 * 2e-3 (bf16 products: 8 significant bits); both: the weights after the
 * optimizer step from the CPU's gradients within 1e-5 max|w|.  Mixtral in
 * the bf16 mode: its losses only, within 2e-2, a sanity check (a near tie
 * between two experts routes a token elsewhere than in f32, and the loss
 * moves with it); its f32 mode is checked as every other architecture.
 *
 * usage: cuda_test_model MODEL_DIR...   (exit 0 all pass, 1 a failure,
 * 2 no device or no model)
 *
 * cuda_test_model --dump MODEL_DIR ROWS.json PREFIX: for the bf16 check
 * against PyTorch (bf16_vs_torch.py): full training's first step on the
 * rows of token ids in ROWS.json ([[ids...], ...], labels = ids), in the f32
 * and the bf16 mode, written as PREFIX.f32.safetensors and
 * PREFIX.bf16.safetensors: "loss" (the step's summed cross-entropy over the
 * label tokens counted as transformers does) and "grad.NAME" for every
 * tensor, as lf-train --dump-grads writes them.
 */
extern "C" {
#include "backprop.h"
#include "error.h"
#include "safetensors.h"
#include "model.h"
#include "optim.h"
#include "train_cuda.h"
}

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

/* the f32 mode; the bf16 mode (bf16 products against the CPU's f32) */
#define GRAD_TOL 1e-4
#define LOSS_TOL 1e-5
#define STEP_TOL 1e-5
#define BF16_LOGITS_TOL 3e-2
#define BF16_GRAD_TOL 5e-2
#define BF16_LOSS_TOL 2e-3

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint32_t next_u32(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 11);
}

static float uniform(float scale)
{
	return scale * (2.0f * (float)(next_u32() & 0xffffff) / 16777216.0f - 1.0f);
}

/* max |got - ref| <= tol * max |ref| (NaN fails); the numbers into detail */
static int within(const float *got, const float *ref, size_t n, double tol, char *detail, size_t len)
{
	double max_abs = 0, max_ref = 0;
	for (size_t i = 0; i < n; i++) {
		double r = fabs((double)ref[i]), d = fabs((double)got[i] - (double)ref[i]);
		if (!(r <= max_ref))
			max_ref = isnan(r) ? INFINITY : r;
		if (!(d <= max_abs))
			max_abs = isnan(d) ? INFINITY : d;
	}
	snprintf(detail, len, "max|d|=%.3g max|ref|=%.3g", max_abs, max_ref);
	return isfinite(max_ref) && max_abs <= tol * max_ref;
}

/* two rows: one plain, one of three packed examples whose positions
 * restart, some labels ignored */
struct batch {
	int32_t ids[2][64], labels[2][64], pos[64];
	uint32_t spans[3];
	struct lf_train_row rows[2];
};

static void make_batch(struct batch *b, int vocab)
{
	int T[2] = { 37, 50 };
	for (int r = 0; r < 2; r++)
		for (int t = 0; t < T[r]; t++) {
			b->ids[r][t] = (int32_t)(next_u32() % (uint32_t)vocab);
			b->labels[r][t] = next_u32() % 4 == 0 ? -100 : (int32_t)(next_u32() % (uint32_t)vocab);
		}
	b->spans[0] = 20;
	b->spans[1] = 17;
	b->spans[2] = 13;
	for (int s = 0, t = 0; s < 3; s++)
		for (uint32_t i = 0; i < b->spans[s]; i++)
			b->pos[t++] = (int32_t)i;
	memset(b->rows, 0, sizeof b->rows);
	b->rows[0] = (struct lf_train_row){ b->ids[0], b->labels[0], NULL, NULL, T[0], 0 };
	b->rows[1] = (struct lf_train_row){ b->ids[1], b->labels[1], b->pos, b->spans, T[1], 3 };
}

/* LoRA (rank 4, scale 2) on every linear module of every layer, A and B
 * random so that both get gradients */
static int add_lora(struct lf_model *m)
{
	static const char *plain[] = { "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
				       "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj" };
	static const char *fused[] = { "self_attn.qkv_proj", "self_attn.o_proj", "mlp.gate_up_proj", "mlp.down_proj" };
	bool phi3 = m->cfg.arch == LF_ARCH_PHI3, moe = m->cfg.arch == LF_ARCH_MIXTRAL;
	size_t before = m->ntensors;
	for (int l = 0; l < m->cfg.layers; l++) {
		for (size_t i = 0; i < (phi3 ? 4 : moe ? 4 : 7); i++)
			if (lf_model_new_lora(m, l, phi3 ? fused[i] : plain[i], 4, 2.0f, false) < 0)
				return -1;
		for (int e = 0; moe && e <= m->cfg.experts; e++) /* the router, then every expert's w1, w2, w3 */
			for (int w = 1; w <= (e < m->cfg.experts ? 3 : 1); w++) {
				char part[64];
				if (e < m->cfg.experts)
					snprintf(part, sizeof part, "block_sparse_moe.experts.%d.w%d", e, w);
				else
					snprintf(part, sizeof part, "block_sparse_moe.gate");
				if (lf_model_new_lora(m, l, part, 4, 2.0f, false) < 0)
					return -1;
			}
	}
	for (size_t i = before; i < m->ntensors; i++) {
		float *w = (float *)m->tensors[i].data;
		for (size_t k = 0; k < m->tensors[i].n; k++)
			w[k] = uniform(0.1f);
	}
	return 0;
}

static void check_logits(struct lf_model *m, struct lf_cuda_train *g, const struct lf_train_row *row,
			 const char *name, double tol)
{
	int T = row->T, V = m->cfg.vocab;
	float *ref = (float *)xmalloc((size_t)T * V * sizeof(float)), *got = (float *)xmalloc((size_t)T * V * sizeof(float));
	struct lf_kv_cache kv;
	struct lf_forward_buf fb;
	char label[600], detail[256];
	snprintf(label, sizeof label, "%s/logits", name);
	if (lf_kv_cache_init(&kv, m, T) < 0 || lf_forward_buf_init(&fb, m, T, T) < 0 ||
	    lf_model_forward(m, &kv, &fb, row->ids, NULL, T, false, ref) < 0 || lf_cuda_train_logits(g, row, got) < 0) {
		result(0, label, lf_errmsg());
	} else {
		int ok = within(got, ref, (size_t)T * V, tol, detail, sizeof detail);
		result(ok, label, detail);
		lf_kv_cache_free(&kv);
		lf_forward_buf_free(&fb);
	}
	free(ref);
	free(got);
}

/* Inference with caches: two prompts of different lengths in one call,
 * then four single tokens each, the last logits of every call against the
 * CPU's lf_model_forward_batch. */
static void check_decode(struct lf_model *m, struct lf_cuda_train *g, const struct batch *b, const char *name,
			 double tol)
{
	int V = m->cfg.vocab, T[2] = { 21, 9 }, steps = 4;
	struct lf_kv_cache kv[2];
	struct lf_cuda_kv gkv[2];
	struct lf_forward_buf fb;
	float *ref = (float *)xmalloc(2 * (size_t)V * sizeof(float)), *got = (float *)xmalloc(2 * (size_t)V * sizeof(float));
	char label[600], detail[256] = "";
	snprintf(label, sizeof label, "%s/decode", name);
	memset(kv, 0, sizeof kv);
	memset(gkv, 0, sizeof gkv);
	int ok = lf_forward_buf_init(&fb, m, 32, 32) == 0;
	for (int s = 0; s < 2 && ok; s++)
		ok = lf_kv_cache_init(&kv[s], m, 32) == 0 && lf_cuda_kv_init(g, &gkv[s], 32) == 0;
	for (int k = 0; k <= steps && ok; k++) {
		struct lf_seq_in in[2];
		struct lf_cuda_seq_in gin[2];
		for (int s = 0; s < 2; s++) {
			const int32_t *ids = k ? &b->ids[s][T[s] + k - 1] : b->ids[s];
			int n = k ? 1 : T[s];
			in[s] = (struct lf_seq_in){ &kv[s], ids, NULL, n };
			gin[s] = (struct lf_cuda_seq_in){ &gkv[s], ids, NULL, n };
		}
		if (lf_model_forward_batch(m, in, 2, &fb, true, ref) < 0 || lf_cuda_forward_batch(g, gin, 2, true, got) < 0) {
			ok = 0;
			snprintf(detail, sizeof detail, "%s", lf_errmsg());
			break;
		}
		char d[200];
		if (!within(got, ref, 2 * (size_t)V, tol, d, sizeof d)) {
			ok = 0;
			snprintf(detail, sizeof detail, "call %d: %s", k, d);
		} else if (k == steps)
			snprintf(detail, sizeof detail, "%d calls, the last: %s", steps + 1, d);
	}
	result(ok, label, detail);
	for (int s = 0; s < 2; s++) {
		lf_kv_cache_free(&kv[s]);
		lf_cuda_kv_free(&gkv[s]);
	}
	lf_forward_buf_free(&fb);
	free(ref);
	free(got);
}

/* The NCCL path in a group of one (gpu-check's GPU machine has one GPU):
 * the step again with the gradients summed layer by layer as the backward
 * makes them, which must change nothing (the same bits). */
static void check_group_of_one(struct lf_cuda_train *t, const struct batch *b, long items, float dropout,
			       float neftune, uint64_t seed, const float *want, size_t gn, const char *name)
{
	char label[600], detail[256];
	snprintf(label, sizeof label, "%s/nccl_group_of_one", name);
	unsigned char id[LF_CUDA_GROUP_ID_BYTES];
	double loss = 0;
	if (lf_cuda_group_id(id) < 0 || lf_cuda_train_join(t, id, 0, 1) < 0) {
		result(0, label, lf_errmsg());
		return;
	}
	lf_cuda_train_zero_grads(t);
	lf_cuda_train_set_noise(t, dropout, neftune, seed);
	lf_cuda_train_set_sync(t, true);
	float *got = (float *)xmalloc((gn + 1) * sizeof(float));
	if (lf_cuda_train_step(t, b->rows, 2, 1.0f / (float)items, &loss) < 0) {
		result(0, label, lf_errmsg());
	} else {
		lf_cuda_train_get_grads(t, got);
		size_t diff = 0;
		for (size_t i = 0; i < gn; i++)
			diff += memcmp(&got[i], &want[i], sizeof(float)) != 0;
		snprintf(detail, sizeof detail, "%zu of %zu gradient elements differ from the step without a group", diff,
			 gn);
		result(diff == 0, label, detail);
	}
	lf_cuda_train_set_sync(t, false);
	free(got);
}

/* The passes of adapters that shared x A^T (lf_cuda_train_lora_shared)
 * since the count `before`: want of them, or (want -1) more than one per
 * layer (mixtral: q, k, v and each expert's w1, w3 that got tokens). */
static void check_shared(const struct lf_cuda_train *t, long before, long want, long layers, const char *name,
			 const char *when)
{
	long got = lf_cuda_train_lora_shared(t) - before;
	char label[600], detail[160];
	snprintf(label, sizeof label, "%s/lora_shared_%s", name, when);
	snprintf(detail, sizeof detail, "%ld passes of several modules' adapters with one x A^T (want %s%ld)", got,
		 want < 0 ? "over " : "", want < 0 ? layers : want);
	result(want < 0 ? got > layers : got == want, label, detail);
}

static void check_close(const char *name, const char *what, double got, double ref, double tol)
{
	char label[600], detail[256];
	snprintf(label, sizeof label, "%s/%s", name, what);
	snprintf(detail, sizeof detail, "gpu %.9g cpu %.9g", got, ref);
	result(fabs(got - ref) <= tol * fabs(ref) && isfinite(got), label, detail);
}

/* One configuration: trained tensors (full or the adapter's), the step on
 * both sides, every comparison. */
static void run(const char *dir, bool lora, float dropout, bool bf16)
{
	char name[256];
	snprintf(name, sizeof name, "%s:%s%s", strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir,
		 !lora ? "full" : dropout > 0 ? "lora_dropout" : "lora", bf16 ? ":bf16" : "");
	double grad_tol = bf16 ? BF16_GRAD_TOL : GRAD_TOL, loss_tol = bf16 ? BF16_LOSS_TOL : LOSS_TOL;
	struct lf_model *m = lf_model_load_writable(dir);
	size_t first = lora && m ? m->ntensors : 0; /* the trained tensors: from here on */
	for (size_t i = 0; m && i < m->ntensors; i++) /* norms and biases apart from one another */
		if (m->tensors[i].ndim == 1)
			for (size_t k = 0; k < m->tensors[i].n; k++)
				((float *)m->tensors[i].data)[k] += uniform(0.2f);
	if (!m || (lora && add_lora(m) < 0)) {
		result(0, name, lf_errmsg());
		if (m)
			lf_model_free(m);
		return;
	}
	size_t *at = (size_t *)xmalloc(m->ntensors * sizeof *at), gn = 0;
	for (size_t i = 0; i < m->ntensors; i++) {
		at[i] = i >= first ? gn : SIZE_MAX;
		gn += i >= first ? (m->tensors[i].n + 15) / 16 * 16 : 0;
	}
	float *gcpu = (float *)calloc(gn + 1, sizeof(float)), *ggpu = (float *)xmalloc((gn + 1) * sizeof(float));
	float **grads = (float **)calloc(m->ntensors, sizeof *grads);
	for (size_t i = first; i < m->ntensors; i++)
		grads[i] = gcpu + at[i];
	struct batch b;
	make_batch(&b, m->cfg.vocab);
	bool ckpt = dropout == 0;
	float neftune = lora ? 0.0f : 0.05f;
	uint64_t seed = 12345;

	/* the CPU reference */
	struct lf_backprop bp;
	struct lf_model_grad g;
	double loss_cpu = 0, eval_cpu = 0;
	long targets_cpu = 0;
	if (lf_backprop_init(&bp, m, 128, 64, ckpt) < 0) {
		result(0, name, lf_errmsg());
		lf_model_free(m);
		return;
	}
	lf_model_grad_init(&g, m, grads);
	long items = lf_train_row_label_tokens(&b.rows[0]) + lf_train_row_label_tokens(&b.rows[1]);
	bp.lora_dropout = dropout;
	bp.neftune_mag = neftune;
	bp.noise_seed = seed;
	bp.moe_aux_coef = 0.05f; /* mixtral's router loss (the others have none) */
	if (lf_backprop_loss(&bp, m, b.rows, 2, &eval_cpu, &targets_cpu) < 0 ||
	    lf_backprop_step(&bp, m, &g, b.rows, 2, 1.0f / (float)items, &loss_cpu) < 0)
		result(0, name, lf_errmsg());

	/* the GPU */
	struct lf_cuda_train *t = lf_cuda_train_open(m, 0, at, NULL, 128, 64, ckpt, bf16);
	if (!t) {
		result(0, name, lf_errmsg());
	} else {
		char label[600], detail[256];
		snprintf(label, sizeof label, "%s/arena", name);
		snprintf(detail, sizeof detail, "%.1f MiB on %s", lf_cuda_train_arena_bytes(t) / 1048576.0,
			 lf_cuda_train_device(t));
		result(1, label, detail);
		/* a mixture of experts in bf16 routes a few tokens elsewhere than
		 * the CPU's f32 (a near tie between two experts flips on rounding):
		 * its elementwise checks would compare different functions, so
		 * only its losses are compared */
		bool elementwise = !(bf16 && m->cfg.arch == LF_ARCH_MIXTRAL);
		if (!elementwise) /* the losses: a sanity check */
			loss_tol = 2e-2;
		if (elementwise)
			check_logits(m, t, &b.rows[0], name, bf16 ? BF16_LOGITS_TOL : GRAD_TOL);
		if (elementwise && (!lora || dropout == 0))
			check_decode(m, t, &b, name, bf16 ? BF16_LOGITS_TOL : GRAD_TOL);
		double eval_gpu = 0, loss_gpu = 0;
		long targets_gpu = 0, shared = lf_cuda_train_lora_shared(t);
		if (lf_cuda_train_loss(t, b.rows, 2, &eval_gpu, &targets_gpu) < 0)
			result(0, name, lf_errmsg());
		if (lora) /* q, k, v and gate, up (an expert's w1, w3): one x A^T per layer */
			check_shared(t, shared, m->cfg.arch == LF_ARCH_MIXTRAL ? -1 : 2 * m->cfg.layers, m->cfg.layers, name,
				     "eval");
		check_close(name, "eval_loss", eval_gpu, eval_cpu, loss_tol);
		check_close(name, "eval_targets", (double)targets_gpu, (double)targets_cpu, 0);
		lf_cuda_train_set_noise(t, dropout, neftune, seed);
		lf_cuda_train_set_moe_aux(t, 0.05f);
		shared = lf_cuda_train_lora_shared(t);
		if (lf_cuda_train_step(t, b.rows, 2, 1.0f / (float)items, &loss_gpu) < 0)
			result(0, name, lf_errmsg());
		/* forward, recompute (checkpointing), backward; dropout masks x per
		 * module (no checkpointing): only phi3's fused modules share then */
		long L = m->cfg.layers, want = m->cfg.arch == LF_ARCH_MIXTRAL ? -1 : 6 * L;
		if (dropout > 0)
			want = m->cfg.arch == LF_ARCH_PHI3 ? 4 * L : 0;
		if (lora)
			check_shared(t, shared, want, L, name, "step");
		check_close(name, "loss", loss_gpu, loss_cpu, loss_tol);
		if (m->cfg.arch == LF_ARCH_MIXTRAL)
			check_close(name, "moe_aux_loss", lf_cuda_train_moe_aux(t), bp.moe_aux_total, loss_tol);
		lf_cuda_train_get_grads(t, ggpu);
		int bad = 0;
		for (size_t i = first; elementwise && i < m->ntensors; i++) {
			if (!within(ggpu + at[i], gcpu + at[i], m->tensors[i].n, grad_tol, detail, sizeof detail)) {
				snprintf(label, sizeof label, "%s/grad.%s", name, m->tensors[i].name);
				result(0, label, detail);
				bad++;
			}
		}
		snprintf(label, sizeof label, "%s/grads", name);
		snprintf(detail, sizeof detail, "%zu tensors, %d over tolerance", m->ntensors - first, bad);
		if (elementwise)
			result(!bad, label, detail);
		if (!lora && !bf16)
			check_group_of_one(t, &b, items, dropout, neftune, seed, ggpu, gn, name);

		/* one optimizer step from the CPU's gradients on both sides */
		lf_cuda_train_set_grads(t, gcpu);
		struct lf_adamw h = lf_adamw_defaults();
		h.lr = 1e-3;
		h.weight_decay = 0.01;
		size_t np = m->ntensors - first;
		struct lf_cuda_update *u = (struct lf_cuda_update *)xmalloc(np * sizeof *u);
		double *sq = (double *)xmalloc(np * sizeof *sq);
		for (size_t k = 0; k < np; k++) {
			u[k] = (struct lf_cuda_update){ first + k, h.lr, lf_param_decays(m->tensors[first + k].name) };
			sq[k] = lf_grad_norm_sq(grads[first + k], m->tensors[first + k].n);
		}
		double norm_cpu = 0, norm_gpu = 0;
		float coef = lf_clip_coef(sq, np, 1.0, &norm_cpu);
		lf_cuda_train_update(t, u, np, 1, &h, 1.0, &norm_gpu);
		check_close(name, "grad_norm", norm_gpu, norm_cpu, 1e-12);
		bad = 0;
		for (size_t k = 0; k < np; k++) {
			size_t i = first + k, n = m->tensors[i].n;
			float *w = (float *)m->tensors[i].data, *mo = (float *)calloc(n, sizeof(float)),
			      *vo = (float *)calloc(n, sizeof(float)), *wg = (float *)xmalloc(n * sizeof(float));
			lf_adamw_step(w, grads[i], mo, vo, n, 1, h.lr, &h, u[k].decay, coef);
			lf_cuda_train_get_tensor(t, i, wg);
			if (!within(wg, w, n, STEP_TOL, detail, sizeof detail)) {
				snprintf(label, sizeof label, "%s/adamw.%s", name, m->tensors[i].name);
				result(0, label, detail);
				bad++;
			}
			free(mo);
			free(vo);
			free(wg);
		}
		snprintf(label, sizeof label, "%s/adamw", name);
		snprintf(detail, sizeof detail, "%zu tensors, %d over tolerance", np, bad);
		result(!bad, label, detail);
		free(u);
		free(sq);
		lf_cuda_train_close(t);
	}
	lf_model_grad_free(&g, m);
	lf_backprop_free(&bp, m);
	free(grads);
	free(gcpu);
	free(ggpu);
	free(at);
	lf_model_free(m);
}

/* --dump: one mode's step on rows, its loss and gradients to a file */
static int dump_mode(struct lf_model *m, const struct lf_train_row *rows, int nrows, int longest, bool bf16,
		     const char *prefix)
{
	size_t *at = (size_t *)xmalloc(m->ntensors * sizeof *at), gn = 0;
	for (size_t i = 0; i < m->ntensors; i++) {
		at[i] = gn;
		gn += (m->tensors[i].n + 15) / 16 * 16;
	}
	long items = 0, tokens = 0;
	for (int r = 0; r < nrows; r++) {
		items += lf_train_row_label_tokens(&rows[r]);
		tokens += rows[r].T;
	}
	struct lf_cuda_train *t = lf_cuda_train_open(m, 0, at, NULL, (int)tokens, longest, true, bf16);
	double loss = 0;
	if (!t || lf_cuda_train_step(t, rows, nrows, 1.0f / (float)items, &loss) < 0)
		return -1;
	float *g = (float *)xmalloc((gn + 1) * sizeof(float));
	lf_cuda_train_get_grads(t, g);
	char base[4096];
	snprintf(base, sizeof base, "%s.%s", strrchr(prefix, '/') ? strrchr(prefix, '/') + 1 : prefix,
		 bf16 ? "bf16" : "f32");
	char dir[4096];
	snprintf(dir, sizeof dir, "%.*s", strrchr(prefix, '/') ? (int)(strrchr(prefix, '/') - prefix) : 1,
		 strrchr(prefix, '/') ? prefix : ".");
	struct lf_st_writer *w = lf_st_writer_open(dir, base, 0, NULL);
	float l = (float)(loss / (double)items);
	int64_t one = 1;
	char **names = (char **)calloc(m->ntensors, sizeof *names);
	int rc = w && lf_st_writer_add(w, "loss", LF_DTYPE_F32, 1, &one, &l) == 0 ? 0 : -1;
	for (size_t i = 0; rc == 0 && i < m->ntensors; i++) {
		names[i] = (char *)xmalloc(strlen(m->tensors[i].name) + 6);
		sprintf(names[i], "grad.%s", m->tensors[i].name);
		rc = lf_st_writer_add(w, names[i], LF_DTYPE_F32, m->tensors[i].ndim, m->tensors[i].shape, g + at[i]);
	}
	if (rc == 0)
		rc = lf_st_writer_finish(w);
	for (size_t i = 0; i < m->ntensors; i++)
		free(names[i]);
	free(names);
	free(g);
	free(at);
	lf_cuda_train_close(t);
	return rc;
}

static int dump(const char *dir, const char *rows_json, const char *prefix)
{
	json_error_t err;
	json_t *j = json_load_file(rows_json, 0, &err);
	struct lf_model *m = lf_model_load_writable(dir);
	if (!j || !json_is_array(j) || !m) {
		fprintf(stderr, "%s: %s\n", program_invocation_short_name, m ? err.text : lf_errmsg());
		return 2;
	}
	int nrows = (int)json_array_size(j), longest = 1;
	struct lf_train_row *rows = (struct lf_train_row *)calloc((size_t)nrows, sizeof *rows);
	for (int r = 0; r < nrows; r++) {
		json_t *a = json_array_get(j, (size_t)r);
		int T = (int)json_array_size(a);
		int32_t *ids = (int32_t *)xmalloc((size_t)T * sizeof *ids);
		for (int i = 0; i < T; i++)
			ids[i] = (int32_t)json_integer_value(json_array_get(a, (size_t)i));
		rows[r] = (struct lf_train_row){ ids, ids, NULL, NULL, T, 0 };
		longest = T > longest ? T : longest;
	}
	int rc = 0;
	for (int bf16 = 0; bf16 < 2 && rc == 0; bf16++)
		rc = dump_mode(m, rows, nrows, longest, bf16, prefix);
	if (rc < 0)
		fprintf(stderr, "%s: %s\n", program_invocation_short_name, lf_errmsg());
	for (int r = 0; r < nrows; r++)
		free((void *)rows[r].ids);
	free(rows);
	json_decref(j);
	lf_model_free(m);
	return rc < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "--dump")) {
		if (lf_cuda_train_probe(0) < 0) {
			fprintf(stderr, "%s: %s\n", program_invocation_short_name, lf_errmsg());
			return 2;
		}
		return dump(argv[2], argv[3], argv[4]);
	}
	if (argc < 2) {
		fprintf(stderr, "usage: %s MODEL_DIR...\n", program_invocation_short_name);
		return 2;
	}
	if (lf_cuda_train_probe(0) < 0) {
		fprintf(stderr, "%s: %s\n", program_invocation_short_name, lf_errmsg());
		return 2;
	}
	for (int i = 1; i < argc; i++) {
		for (int bf16 = 0; bf16 < 2; bf16++) {
			run(argv[i], false, 0, bf16);
			run(argv[i], true, 0, bf16);
			run(argv[i], true, 0.1f, bf16);
		}
	}
	printf("%s: %d passed, %d failed\n", program_invocation_short_name, passes, failures);
	return failures ? 1 : 0;
}

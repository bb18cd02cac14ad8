/*
 * bench_train.cu — gpu-check's training benchmark of the CUDA path
 * (libcommon/train_cuda.h): a model of the size config.json in DIR gives,
 * with random weights made in memory (lf_model_new_random: no weight files
 * carried or written), trained in full or with LoRA (rank R on every linear
 * layer, B zero and A random as PEFT starts them) on batches of random
 * token rows of SEQ tokens with gradient checkpointing; warm-up steps, then
 * STEPS timed optimizer steps.  Prints one line:
 *
 *   BENCH lf NAME-METHOD-PRECISION tokens_per_s=X step_s=X mfu=X model_tflops=X mem_gib=X
 *
 * MFU counts the model's FLOPs without recompute: full 6 N, LoRA 4 N +
 * 6 N_lora (no weight gradients for the base), N the linear layers' and
 * the head's parameters, plus causal attention 6 L T d_q per token (half
 * of the dense 12 L T d_q); against 989 TFLOP/s (H100 SXM, dense bf16).
 * mem_gib: device memory in use after the run (the arena, cuBLASLt's and
 * the stream-ordered pool's), as cudaMemGetInfo sees it.
 *
 * usage: cuda_bench_train DIR full|lora SEQ BATCH STEPS RANK f32|bf16
 */
extern "C" {
#include "backprop.h"
#include "error.h"
#include "model.h"
#include "optim.h"
#include "train_cuda.h"
}

#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int add_lora(struct lf_model *m, int r)
{
	static const char *parts[] = { "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
				       "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj" };
	size_t before = m->ntensors;
	for (int l = 0; l < m->cfg.layers; l++)
		for (size_t i = 0; i < 7; i++)
			if (lf_model_new_lora(m, l, parts[i], r, 2.0f, false) < 0)
				return -1;
	for (size_t i = before; i < m->ntensors; i++) /* A: uniform +-1/sqrt(in), as PEFT's kaiming init */
		if (strstr(m->tensors[i].name, "lora_A")) {
			float *a = (float *)m->tensors[i].data, bound = 1.0f / sqrtf((float)m->tensors[i].shape[1]);
			for (size_t k = 0; k < m->tensors[i].n; k++)
				a[k] = bound * (2.0f * (float)((k * 2654435761u) % 1000003u) / 1000003.0f - 1.0f);
		}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 8) {
		fprintf(stderr, "usage: %s DIR full|lora SEQ BATCH STEPS RANK f32|bf16\n", argv[0]);
		return 2;
	}
	const char *dir = argv[1];
	bool lora = !strcmp(argv[2], "lora");
	int seq = atoi(argv[3]), batch = atoi(argv[4]), steps = atoi(argv[5]), rank = atoi(argv[6]);
	bool bf16 = !strcmp(argv[7], "bf16");
	if ((!lora && strcmp(argv[2], "full")) || seq < 2 || batch < 1 || steps < 1 || rank < 1 ||
	    (!bf16 && strcmp(argv[7], "f32"))) {
		fprintf(stderr, "%s: bad arguments\n", argv[0]);
		return 2;
	}
	if (lf_cuda_train_probe(0) < 0) {
		fprintf(stderr, "%s: %s\n", argv[0], lf_errmsg());
		return 2;
	}
	double t0 = now();
	struct lf_model *m = lf_model_new_random(dir, 1, 0.02f);
	if (!m) {
		fprintf(stderr, "%s: %s\n", argv[0], lf_errmsg());
		return 1;
	}
	const struct lf_model_config *c = &m->cfg;
	size_t base = m->ntensors;
	if (lora && add_lora(m, rank) < 0) {
		fprintf(stderr, "%s: %s\n", argv[0], lf_errmsg());
		return 1;
	}
	/* parameters: the linear layers' and the head's (FLOPs), the adapters' */
	double n_lin = 0, n_lora = 0;
	for (size_t i = 0; i < m->ntensors; i++) {
		const struct lf_model_tensor *t = &m->tensors[i];
		if (i >= base)
			n_lora += (double)t->n;
		else if (t->ndim == 2 && !strstr(t->name, "embed_tokens"))
			n_lin += (double)t->n;
	}
	if (c->tie_embeddings)
		n_lin += (double)c->vocab * c->hidden;
	size_t first = lora ? base : 0, *at = (size_t *)calloc(m->ntensors, sizeof *at), gn = 0;
	for (size_t i = 0; i < m->ntensors; i++) {
		at[i] = i >= first ? gn : SIZE_MAX;
		gn += i >= first ? (m->tensors[i].n + 15) / 16 * 16 : 0;
	}
	struct lf_cuda_train *t = lf_cuda_train_open(m, 0, at, NULL, batch * seq, seq, true, bf16);
	if (!t) {
		fprintf(stderr, "%s: %s\n", argv[0], lf_errmsg());
		return 1;
	}
	double t_open = now() - t0;
	/* rows of random ids, every token a label (pre-training) */
	int32_t *ids = (int32_t *)malloc((size_t)batch * seq * sizeof *ids);
	struct lf_train_row *rows = (struct lf_train_row *)calloc((size_t)batch, sizeof *rows);
	uint64_t z = 88172645463325252ULL;
	for (size_t i = 0; i < (size_t)batch * seq; i++) {
		z ^= z << 13, z ^= z >> 7, z ^= z << 17;
		ids[i] = (int32_t)(z % (uint64_t)c->vocab);
	}
	for (int r = 0; r < batch; r++)
		rows[r] = (struct lf_train_row){ ids + (size_t)r * seq, ids + (size_t)r * seq, NULL, NULL, seq, 0 };
	long items = (long)batch * seq;
	size_t np = m->ntensors - first;
	struct lf_cuda_update *u = (struct lf_cuda_update *)calloc(np, sizeof *u);
	for (size_t k = 0; k < np; k++)
		u[k] = (struct lf_cuda_update){ first + k, 1e-5, lf_param_decays(m->tensors[first + k].name) };
	struct lf_adamw h = lf_adamw_defaults();
	double loss = 0, norm = 0, t_steps = 0;
	int warmup = 2;
	for (int s = 0; s < warmup + steps; s++) {
		if (s == warmup)
			t_steps = now();
		lf_cuda_train_zero_grads(t);
		loss = 0;
		if (lf_cuda_train_step(t, rows, batch, 1.0f / (float)items, &loss) < 0) {
			fprintf(stderr, "%s: %s\n", argv[0], lf_errmsg());
			return 1;
		}
		lf_cuda_train_update(t, u, np, s + 1, &h, 1.0, &norm);
	}
	double step_s = (now() - t_steps) / steps, tok_s = (double)items / step_s;
	int qd = c->heads * c->head_dim;
	double attn = 6.0 * c->layers * seq * qd;
	double flops = (lora ? 4.0 * n_lin + 6.0 * n_lora : 6.0 * n_lin) + attn;
	size_t free_b = 0, total_b = 0;
	cudaMemGetInfo(&free_b, &total_b);
	const char *name = strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;
	printf("BENCH lf %s-%s-%s tokens_per_s=%.1f step_s=%.3f mfu=%.4f model_tflops=%.2f mem_gib=%.2f loss=%.4f "
	       "grad_norm=%.4g setup_s=%.1f params=%.3gB lora_params=%.3gM\n",
	       name, argv[2], argv[7], tok_s, step_s, tok_s * flops / 989e12, tok_s * flops / 1e12,
	       (double)(total_b - free_b) / 1073741824.0, loss / (double)items, norm, t_open, n_lin / 1e9, n_lora / 1e6);
	lf_cuda_train_close(t);
	lf_model_free(m);
	free(at);
	free(ids);
	free(rows);
	free(u);
	return 0;
}

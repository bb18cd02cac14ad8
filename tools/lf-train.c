/*
 * lf-train — fine-tune a Hugging Face model on lf-pack's shards, on the CPU:
 * stages pt and sft; full, freeze and LoRA (rsLoRA) fine-tuning; AdamW with
 * the Hugging Face Trainer's schedules, gradient accumulation, clipping and
 * loss normalisation; evaluation; checkpoints that resume exactly; a PEFT
 * adapter or a model folder at the end, in LLaMA-Factory's output layout.
 */
#include "backprop.h"
#include "device.h"
#include "dist.h"
#include "error.h"
#include "export.h"
#include "log.h"
#include "model.h"
#include "mp.h"
#include "nprandom.h"
#include "optim.h"
#include "options.h"
#include "output.h"
#include "pissa.h"
#include "plot.h"
#include "safetensors.h"
#include "shard.h"
#include "shardset.h"
#include "tboard.h"
#ifdef LF_HAVE_CUDA
#include "train_cuda.h"
#endif

#include "cpu/bf16.h"
#include "cpu/vec.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- options (LLaMA-Factory's names) ---- */

static char *opt_model, *opt_adapter, *opt_data, *opt_stage, *opt_ft, *opt_output, *opt_sched, *opt_sched_kwargs;
static char *opt_lora_target, *opt_freeze_modules, *opt_freeze_extra, *opt_resume, *opt_dump_grads;
static char *opt_additional_target, *opt_report_to, *opt_device;
static double opt_lr = 5e-5, opt_epochs = 3.0, opt_warmup_ratio = 0, opt_wd = 0, opt_beta1 = 0.9, opt_beta2 = 0.999;
static double opt_eps = 1e-8, opt_max_grad_norm = 1.0, opt_lora_alpha = -1, opt_lora_dropout = 0;
static double opt_loraplus = 0, opt_neftune = 0, opt_moe_aux = 0;
static long long opt_max_steps = -1, opt_batch = 8, opt_eval_batch = 8, opt_ga = 1, opt_seed = 42, opt_warmup_steps = 0;
static long long opt_lora_rank = 8, opt_freeze_layers = 2, opt_logging_steps = 500, opt_save_steps = 500;
static long long opt_save_limit = -1, opt_eval_steps = -1, opt_pissa_iter = 16, opt_ddp_timeout = 180000;
static long long opt_zero_stage;
static bool opt_overwrite, opt_no_ckpt, opt_rslora, opt_dora, opt_pissa_init, opt_plot_loss, opt_do_train = true;
static bool opt_bf16, opt_fp16, opt_save_only_model, opt_no_shuffle, opt_pissa_convert;

static struct lf_option options[] = {
	{ "model-name-or-path", 'm', LF_OPT_STRING, &opt_model, "DIR", "the base model folder (required)" },
	{ "adapter-name-or-path", 0, LF_OPT_STRING, &opt_adapter, "DIR", "a PEFT LoRA adapter to train further" },
	{ "data", 'd', LF_OPT_STRING, &opt_data, "SHARDS", "lf-pack's output (folder, bundle or .shard; required)",
	  LF_OPT_CLI_ONLY },
	{ "stage", 0, LF_OPT_STRING, &opt_stage, "STAGE", "pt or sft (default: the shards' kind)" },
	{ "finetuning-type", 0, LF_OPT_STRING, &opt_ft, "TYPE", "lora (default), freeze or full" },
	{ "output-dir", 'o', LF_OPT_STRING, &opt_output, "DIR", "checkpoints, logs and the result (required)" },
	{ "overwrite-output-dir", 0, LF_OPT_BOOL, &opt_overwrite, NULL,
	  "start afresh instead of resuming from the last checkpoint in --output-dir" },
	{ "resume-from-checkpoint", 0, LF_OPT_STRING, &opt_resume, "DIR", "resume from this checkpoint folder" },
	{ "learning-rate", 0, LF_OPT_FLOAT, &opt_lr, "LR", "AdamW's peak learning rate (default 5e-5)" },
	{ "lr-scheduler-type", 0, LF_OPT_STRING, &opt_sched, "NAME",
	  "linear (default), cosine, cosine_with_restarts, polynomial, constant, constant_with_warmup, inverse_sqrt, "
	  "cosine_with_min_lr, cosine_warmup_with_min_lr, warmup_stable_decay" },
	{ "lr-scheduler-kwargs", 0, LF_OPT_STRING, &opt_sched_kwargs, "JSON",
	  "the schedule's arguments as transformers' get_scheduler takes them, e.g. '{\"min_lr_rate\": 0.1}'" },
	{ "warmup-ratio", 0, LF_OPT_FLOAT, &opt_warmup_ratio, "R", "warm up over this fraction of the steps" },
	{ "warmup-steps", 0, LF_OPT_INT, &opt_warmup_steps, "N", "warm up over N steps (--warmup-ratio, when given, wins, as transformers 5)" },
	{ "num-train-epochs", 0, LF_OPT_FLOAT, &opt_epochs, "E", "epochs (default 3.0)" },
	{ "max-steps", 0, LF_OPT_INT, &opt_max_steps, "N", "optimizer steps in all (wins over the epochs)" },
	{ "per-device-train-batch-size", 0, LF_OPT_INT, &opt_batch, "N", "examples per micro-batch (default 8)" },
	{ "per-device-eval-batch-size", 0, LF_OPT_INT, &opt_eval_batch, "N", "examples per evaluation batch (default 8)" },
	{ "gradient-accumulation-steps", 0, LF_OPT_INT, &opt_ga, "N", "micro-batches per optimizer step (default 1)" },
	{ "weight-decay", 0, LF_OPT_FLOAT, &opt_wd, "W", "AdamW's decoupled weight decay (default 0)" },
	{ "adam-beta1", 0, LF_OPT_FLOAT, &opt_beta1, "B", "default 0.9" },
	{ "adam-beta2", 0, LF_OPT_FLOAT, &opt_beta2, "B", "default 0.999" },
	{ "adam-epsilon", 0, LF_OPT_FLOAT, &opt_eps, "E", "default 1e-8" },
	{ "max-grad-norm", 0, LF_OPT_FLOAT, &opt_max_grad_norm, "N", "clip the gradient norm to N (default 1.0; 0: off)" },
	{ "seed", 0, LF_OPT_INT, &opt_seed, "N", "seed of the data order and the LoRA initialisation (default 42)" },
	{ "disable-shuffling", 0, LF_OPT_BOOL, &opt_no_shuffle, NULL,
	  "train on the examples in the shards' order every epoch (LLaMA-Factory's sequential sampler)" },
	{ "disable-gradient-checkpointing", 0, LF_OPT_BOOL, &opt_no_ckpt, NULL,
	  "keep every layer's activations instead of recomputing them (more memory, less time)" },
	{ "lora-rank", 0, LF_OPT_INT, &opt_lora_rank, "R", "LoRA rank (default 8)" },
	{ "lora-alpha", 0, LF_OPT_FLOAT, &opt_lora_alpha, "A", "LoRA alpha (default 2 x rank)" },
	{ "lora-dropout", 0, LF_OPT_FLOAT, &opt_lora_dropout, "P",
	  "dropout on the adapters' input while training (default 0)" },
	{ "lora-target", 0, LF_OPT_STRING, &opt_lora_target, "LIST",
	  "modules that get LoRA: all (every linear layer but the head) or names such as q_proj,v_proj" },
	{ "additional-target", 0, LF_OPT_STRING, &opt_additional_target, "LIST",
	  "lora: modules trained in full beside the adapter (embed_tokens, norm, lm_head; PEFT's modules_to_save)" },
	{ "use-rslora", 0, LF_OPT_BOOL, &opt_rslora, NULL, "rank-stabilised LoRA: scale alpha / sqrt(rank)" },
	{ "use-dora", 0, LF_OPT_BOOL, &opt_dora, NULL,
	  "DoRA: a trained magnitude per output row over the direction W + s B A (PEFT's, norm detached)" },
	{ "pissa-init", 0, LF_OPT_BOOL, &opt_pissa_init, NULL,
	  "PiSSA: new adapters from the weights' principal singular vectors, the base holding the residual" },
	{ "pissa-iter", 0, LF_OPT_INT, &opt_pissa_iter, "N",
	  "PiSSA: subspace iterations of the fast SVD (default 16; -1: the full SVD)" },
	{ "pissa-convert", 0, LF_OPT_BOOL, &opt_pissa_convert, NULL,
	  "PiSSA: also write pissa_converted/, a rank-2r LoRA adapter for the original base" },
	{ "loraplus-lr-ratio", 0, LF_OPT_FLOAT, &opt_loraplus, "R",
	  "LoRA+: B matrices (and 1-D tensors) learn at R x the learning rate" },
	{ "freeze-trainable-layers", 0, LF_OPT_INT, &opt_freeze_layers, "N",
	  "freeze: train the last N layers (negative: the first -N; default 2)" },
	{ "freeze-trainable-modules", 0, LF_OPT_STRING, &opt_freeze_modules, "LIST",
	  "freeze: the modules of those layers to train (all, or names such as mlp,self_attn)" },
	{ "freeze-extra-modules", 0, LF_OPT_STRING, &opt_freeze_extra, "LIST",
	  "freeze: modules outside the layers to train too (embed_tokens, norm, lm_head)" },
	{ "neftune-noise-alpha", 0, LF_OPT_FLOAT, &opt_neftune, "A",
	  "NEFTune: uniform noise of +-A/sqrt(length x hidden) on the embeddings while training" },
	{ "moe-aux-loss-coef", 0, LF_OPT_FLOAT, &opt_moe_aux, "C",
	  "mixtral: add C x the router's load-balancing loss (default: off)" },
	{ "logging-steps", 0, LF_OPT_INT, &opt_logging_steps, "N", "log every N steps (default 500)" },
	{ "save-steps", 0, LF_OPT_INT, &opt_save_steps, "N", "write a checkpoint every N steps (default 500)" },
	{ "save-total-limit", 0, LF_OPT_INT, &opt_save_limit, "N", "keep the last N checkpoints only" },
	{ "eval-steps", 0, LF_OPT_INT, &opt_eval_steps, "N",
	  "evaluate on the validation split every N steps (default: at the end only)" },
	{ "report-to", 0, LF_OPT_STRING, &opt_report_to, "NAME",
	  "none (default) or tensorboard: event files under OUTPUT_DIR/runs/ as the Hugging Face Trainer writes them" },
	{ "plot-loss", 0, LF_OPT_BOOL, &opt_plot_loss, NULL,
	  "draw training_loss.png (and training_eval_loss.png) in the output folder at the end, as LLaMA-Factory" },
	{ "do-train", 0, LF_OPT_BOOL, &opt_do_train, NULL, "train (the default; false, evaluation only, is not built)" },
	{ "bf16", 0, LF_OPT_BOOL, &opt_bf16, NULL,
	  "bf16 mixed precision: the GPU's products in bf16 with f32 master weights; the CPU computes in f32 (more "
	  "precise) and says so; outputs keep the base's dtype" },
	{ "fp16", 0, LF_OPT_BOOL, &opt_fp16, NULL, "as --bf16, for f16 mixed precision" },
	{ "save-only-model", 0, LF_OPT_BOOL, &opt_save_only_model, NULL,
	  "checkpoints without the optimizer state (smaller; they cannot be resumed)" },
	{ "ddp-timeout", 0, LF_OPT_INT, &opt_ddp_timeout, "S",
	  "data-parallel runs: stop with an error when the other processes do not answer for S seconds "
	  "(default 180000, as LLaMA-Factory)" },
	{ "zero-stage", 0, LF_OPT_INT, &opt_zero_stage, "N",
	  "data-parallel runs: 1 shards the optimizer state over the processes (ZeRO stage 1; default 0)",
	  LF_OPT_CLI_ONLY },
	{ "device", 0, LF_OPT_STRING, &opt_device, "NAME",
	  "cpu (default) or cuda: train on an NVIDIA GPU, in f32, or bf16 with --bf16 (builds with CUDA only)",
	  LF_OPT_CLI_ONLY },
	{ "dump-grads", 0, LF_OPT_STRING, &opt_dump_grads, "FILE",
	  "write the first step's loss and every trained gradient (grad.NAME) to FILE.safetensors", LF_OPT_CLI_ONLY },
	{ 0 }
};

static const struct lf_tool_info tool = {
	"lf-train", "-m MODEL -d SHARDS -o DIR [OPTION]...",
	"Fine-tune a Hugging Face model on lf-pack's shards on the CPU (stages pt and sft).",
	"Example: lf-train -m models/tiny -d shards/ --finetuning-type lora --lora-rank 8 -o runs/sft",
};

/* ---- the run ---- */

enum ft { FT_FULL, FT_FREEZE, FT_LORA };

/* A trained tensor with its gradient and AdamW state; its learning rate is
 * lr_mult times the schedule's (LoRA+).  Under --zero-stage 1 the process
 * of rank owner alone keeps its AdamW state (m, v) and updates it. */
struct param {
	const struct lf_model_tensor *t;
	float *w, *g, *m, *v;
	bool decay;
	double lr_mult;
	int owner;
};

static struct {
	enum ft ft;
	struct lf_model *m;
	size_t nbase;       /* tensors of the base model (the rest are the adapter's) */
	float **grads;      /* per tensor, NULL when frozen */
	float *gbuf;        /* every gradient, one block (summed over the group in one go) */
	size_t gn;
	bool zero;          /* --zero-stage 1 in a group: the optimizer state sharded */
	int *part;          /* zero: each rank's part of gbuf (its tensors', in order) */
	struct lf_safetensors *resumed_optimizer; /* rank 0: the state to hand out (zero) */
	struct param *p;
	size_t np;
	struct lf_model_grad g;
	struct lf_backprop bp;
	int max_tokens, longest; /* the training buffers' sizes: a micro-batch's tokens, an example's */
	struct lf_shardset *set;
	int train, eval;    /* splits, eval -1 when there is none */
	bool pt;            /* pre-training shards (else sft) */
	uint64_t ntrain;
	long batches_per_epoch, steps_per_epoch, total_steps, warmup;
	struct lf_lr_sched sched;
	json_t *sched_kwargs; /* --lr-scheduler-kwargs, or NULL */
	long step;          /* optimizer steps done */
	double loss_total;  /* the sum of every step's loss, for train_loss */
	json_t *history;    /* log_history */
	double logged_loss; /* losses since the last log line */
	long logged_steps;
	double t0;
	int lora_r;
	float lora_scale;
	json_t *lora_targets, *modules_to_save;
	char *template_name; /* the shards' chat template, or NULL */
	float **pissa_init;  /* PiSSA: each adapter tensor as it started, in table order */
	size_t npissa;
	struct lf_tboard *tb; /* --report-to tensorboard */
} R;

static volatile sig_atomic_t stop_signal;
static int group_stop; /* the signal a process of the group got, after the step */
static struct lf_dist D; /* the data-parallel group (rank 0 writes) */

/* ---- the GPU (--device cuda) ----
 * The model, the gradients and AdamW's moments live on the device for the
 * whole run (libcommon/train_cuda.h); the host's copies of the trained
 * tensors and moments are brought up to date before anything is written.
 * The CPU's training buffers (R.bp) are then not allocated. */
static bool use_gpu;
#ifdef LF_HAVE_CUDA
static struct lf_cuda_train *gpu;
static bool gpu_nccl; /* the group's gradients summed by NCCL (else by MPI through the host) */

static size_t tensor_index(const struct param *p)
{
	return (size_t)(p->t - R.m->tensors);
}

/* Copy the model and the optimizer state to the GPU (after resuming). */
static void gpu_start(void)
{
	size_t *at = lf_malloc((R.m->ntensors + 1) * sizeof *at);
	unsigned char *owned = lf_calloc(R.m->ntensors + 1, 1); /* the tensors whose moments are this process's */
	for (size_t i = 0; i < R.m->ntensors; i++)
		at[i] = R.grads[i] ? (size_t)(R.grads[i] - R.gbuf) : SIZE_MAX;
	for (size_t i = 0; i < R.np; i++)
		owned[tensor_index(&R.p[i])] = R.p[i].owner == D.rank;
	gpu = lf_cuda_train_open(R.m, lf_device_local_rank(), at, owned, R.max_tokens, R.longest, !opt_no_ckpt,
				 opt_bf16 || opt_fp16);
	free(at);
	free(owned);
	if (!gpu)
		lf_die("--device cuda: %s", lf_errmsg());
	for (size_t i = 0; i < R.np; i++)
		if (R.p[i].m)
			lf_cuda_train_set_moments(gpu, tensor_index(&R.p[i]), R.p[i].m, R.p[i].v);
	/* a group's GPUs: NCCL, its id from rank 0 through MPI; without NCCL
	 * on rank 0, MPI sums through the host */
	if (D.world > 1) {
		unsigned char id[LF_CUDA_GROUP_ID_BYTES + 1] = { 0 };
		if (D.rank == 0 && lf_cuda_group_id(id) < 0)
			lf_note("%s: the GPUs' gradients go through the host (MPI)", lf_errmsg());
		else if (D.rank == 0)
			id[LF_CUDA_GROUP_ID_BYTES] = 1;
		if (lf_dist_broadcast(&D, id, sizeof id, 0) < 0)
			lf_die("%s", lf_errmsg());
		gpu_nccl = id[LF_CUDA_GROUP_ID_BYTES];
		if (gpu_nccl && lf_cuda_train_join(gpu, id, D.rank, D.world) < 0)
			lf_die("--device cuda: %s", lf_errmsg());
	}
	if (D.rank == 0)
		lf_note("training on GPU %s in %s (%.2f GiB of device memory)", lf_cuda_train_device(gpu),
			opt_bf16 || opt_fp16 ? "bf16" : "f32", (double)lf_cuda_train_arena_bytes(gpu) / 1073741824.0);
}

/* Clipping and AdamW on the GPU: all on the device, or under ZeRO 1 each
 * process's own tensors, with the group's norm, then sent to the others
 * (through the host). */
static void gpu_update(double lr, const struct lf_adamw *h, double *grad_norm)
{
	struct lf_cuda_update *u = lf_calloc(R.np + 1, sizeof *u);
	size_t n = 0;
	for (size_t i = 0; i < R.np; i++) {
		struct param *p = &R.p[i];
		if (p->owner != D.rank)
			continue;
		u[n].tensor = tensor_index(p);
		u[n].lr = p->lr_mult == 1 ? lr : opt_lr * p->lr_mult * lf_lr_lambda(&R.sched, R.step);
		u[n++].decay = p->decay;
	}
	if (!R.zero) {
		lf_cuda_train_update(gpu, u, n, R.step + 1, h, opt_max_grad_norm, grad_norm);
		free(u);
		return;
	}
	double *mine = lf_calloc(n + 1, sizeof *mine), *sq = lf_calloc(R.np + 1, sizeof *sq);
	lf_cuda_train_norm_sq(gpu, u, n, mine);
	for (size_t i = 0, k = 0; i < R.np; i++)
		if (R.p[i].owner == D.rank)
			sq[i] = mine[k++];
	if (lf_dist_sum_f64(&D, sq, R.np) < 0)
		lf_die("%s", lf_errmsg());
	float coef = lf_clip_coef(sq, R.np, opt_max_grad_norm, grad_norm);
	lf_cuda_train_adamw(gpu, u, n, R.step + 1, h, coef);
	for (size_t i = 0; i < R.np; i++) {
		struct param *p = &R.p[i];
		if (p->owner == D.rank)
			lf_cuda_train_get_tensor(gpu, tensor_index(p), p->w);
		if (lf_dist_broadcast(&D, p->w, p->t->n * sizeof(float), p->owner) < 0)
			lf_die("%s", lf_errmsg());
		if (p->owner != D.rank)
			lf_cuda_train_set_tensor(gpu, tensor_index(p), p->w);
	}
	free(mine);
	free(sq);
	free(u);
}

/* The trained tensors and their moments from the GPU into the host's
 * copies, before they are written. */
static void gpu_pull(void)
{
	for (size_t i = 0; gpu && i < R.np; i++) {
		lf_cuda_train_get_tensor(gpu, tensor_index(&R.p[i]), R.p[i].w);
		if (R.p[i].m)
			lf_cuda_train_get_moments(gpu, tensor_index(&R.p[i]), R.p[i].m, R.p[i].v);
	}
}
#else
/* this build has no GPU path: --device cuda starts lf-train-cuda */
static void gpu_start(void)
{
}

static void gpu_pull(void)
{
}
#endif

static void on_stop(int sig)
{
	stop_signal = sig;
	signal(sig, SIG_DFL); /* a second one stops at once */
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static bool in_list(const char *list, const char *name)
{
	char item[256];
	for (const char *p = list; p && *p;) {
		p = lf_list_next(p, item, sizeof item);
		if (!strcmp(item, name))
			return true;
	}
	return false;
}

/* ---- what is trained ---- */

/* LLaMA-Factory's freeze tuning: the parameters whose name contains
 * ".IDX.MODULE" for a trainable layer IDX and module (".IDX." for "all"),
 * or an extra module's name, as a substring. */
static bool freeze_trains(const char *name)
{
	int L = R.m->cfg.layers, n = (int)opt_freeze_layers;
	int lo = n > 0 ? (L - n > 0 ? L - n : 0) : 0, hi = n > 0 ? L : (-n < L ? -n : L);
	for (int i = lo; i < hi; i++) {
		char pat[512], mod[256];
		for (const char *p = opt_freeze_modules; p && *p;) {
			p = lf_list_next(p, mod, sizeof mod);
			snprintf(pat, sizeof pat, ".%d.%s", i, strcmp(mod, "all") ? mod : "");
			if (strstr(name, pat))
				return true;
		}
	}
	char mod[256];
	for (const char *p = opt_freeze_extra; p && *p;) {
		p = lf_list_next(p, mod, sizeof mod);
		if (*mod && strstr(name, mod))
			return true;
	}
	return false;
}

/* Check the module names freeze tuning was given, as LLaMA-Factory does. */
static void freeze_check_modules(void)
{
	static const char *const hidden[] = { "self_attn", "mlp", "block_sparse_moe", "input_layernorm",
					      "post_attention_layernorm", "pre_feedforward_layernorm",
					      "post_feedforward_layernorm" };
	for (const char *p = opt_freeze_modules; p && *p;) {
		char mod[256];
		p = lf_list_next(p, mod, sizeof mod);
		bool ok = !strcmp(mod, "all");
		for (size_t i = 0; i < sizeof hidden / sizeof hidden[0]; i++)
			ok |= !strcmp(mod, hidden[i]);
		if (!ok)
			lf_die_usage("option '--freeze-trainable-modules': '%s' is not a module of the decoder layers "
				     "(self_attn, mlp, input_layernorm, post_attention_layernorm, ...)", mod);
	}
	for (const char *p = opt_freeze_extra; p && *p;) {
		char mod[256];
		p = lf_list_next(p, mod, sizeof mod);
		if (strcmp(mod, "embed_tokens") && strcmp(mod, "norm") && (strcmp(mod, "lm_head") || R.m->cfg.tie_embeddings))
			lf_die_usage("option '--freeze-extra-modules': '%s' is not a module outside the layers "
				     "(embed_tokens, norm, lm_head)", mod);
	}
}

/* The linear modules LoRA goes on, per layer, as Hugging Face names them
 * below the layer; "all" is every one (LLaMA-Factory: every linear layer
 * but lm_head). */
static int lora_parts(const char **parts)
{
	static const char *const dense[] = { "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
					     "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj" };
	static const char *const phi3[] = { "self_attn.qkv_proj", "self_attn.o_proj", "mlp.gate_up_proj",
					    "mlp.down_proj" };
	/* mixtral (as transformers 4.x builds it): the router and every expert */
	static const char *mixtral[4 + 1 + 3 * 64];
	static char names[3 * 64][64];
	bool is_phi3 = R.m->cfg.arch == LF_ARCH_PHI3, is_moe = R.m->cfg.arch == LF_ARCH_MIXTRAL;
	const char *const *all = is_phi3 ? phi3 : dense;
	int nall = is_phi3 ? 4 : 7, n = 0;
	if (is_moe) {
		if (R.m->cfg.experts > 64)
			lf_die("%s: %d experts; lf-train's LoRA takes up to 64", opt_model, R.m->cfg.experts);
		memcpy(mixtral, dense, 4 * sizeof *mixtral);
		mixtral[4] = "block_sparse_moe.gate";
		nall = 5;
		for (int e = 0; e < R.m->cfg.experts; e++)
			for (int w = 1; w <= 3; w++) {
				snprintf(names[nall - 5], sizeof names[0], "block_sparse_moe.experts.%d.w%d", e, w);
				mixtral[nall] = names[nall - 5];
				nall++;
			}
		all = mixtral;
	}
	for (int i = 0; i < nall; i++) {
		const char *last = strrchr(all[i], '.') + 1;
		if (!strcmp(opt_lora_target, "all") || in_list(opt_lora_target, last))
			parts[n++] = all[i];
	}
	/* every name given must be one of them */
	for (const char *p = opt_lora_target; strcmp(opt_lora_target, "all") && p && *p;) {
		char mod[256];
		p = lf_list_next(p, mod, sizeof mod);
		bool ok = false;
		for (int i = 0; i < nall; i++)
			ok |= !strcmp(strrchr(all[i], '.') + 1, mod);
		if (!ok)
			lf_die_usage("option '--lora-target': '%s' is not a linear module of this model", mod);
	}
	return n;
}

/* PEFT's initialisation: A uniform in +-1/sqrt(in) (kaiming_uniform with
 * a = sqrt(5)), B zero. */
static void lora_init(float *A, size_t r, size_t in, struct lf_np_rng *rng)
{
	float bound = (float)(1.0 / sqrt((double)in));
	for (size_t i = 0; i < r * in; i++)
		A[i] = (float)((2.0 * lf_np_random(rng) - 1.0) * bound);
}

/* PiSSA on the module of adapter tensors A and B (the base weight named
 * as the module), keeping A and B as they start for --pissa-convert. */
static void pissa_init(const struct lf_model_tensor *A, const struct lf_model_tensor *B, size_t index)
{
	/* base_model.model.model.layers.N.PART.lora_A.weight -> model.layers.N.PART.weight */
	char name[512];
	snprintf(name, sizeof name, "%.*s.weight", (int)(strlen(A->name) - strlen("base_model.model.") - 14),
		 A->name + strlen("base_model.model."));
	const struct lf_model_tensor *w = NULL;
	for (size_t i = 0; i < R.nbase && !w; i++)
		if (!strcmp(R.m->tensors[i].name, name))
			w = &R.m->tensors[i];
	if (!w)
		lf_die("PiSSA: no base weight %s", name);
	if (lf_pissa_init((float *)w->data, (int)w->shape[0], (int)w->shape[1], (int)A->shape[0], R.lora_scale,
			  (int)opt_pissa_iter, (uint64_t)opt_seed * 1000003u + index, (float *)A->data,
			  (float *)B->data) < 0)
		lf_die("%s: %s", name, lf_errmsg());
	if (opt_dora) { /* PEFT sets DoRA's magnitude after PiSSA's split: ||W_res + s B A|| */
		const struct lf_model_tensor *mag = &R.m->tensors[index + 2];
		if (!strstr(mag->name, ".lora_magnitude_vector"))
			lf_die("DoRA: %s is not the magnitude of %s", mag->name, name);
		lf_lora_row_norms((float *)mag->data, w->data, A->data, B->data, (int)A->shape[0], R.lora_scale,
				  (int)w->shape[0], (int)w->shape[1]);
	}
	/* the group starts from rank 0's residual (and, share_start, adapter) */
	if (lf_dist_broadcast(&D, (float *)w->data, w->n * sizeof(float), 0) < 0)
		lf_die("%s", lf_errmsg());
	R.pissa_init = lf_realloc(R.pissa_init, (R.npissa + 2) * sizeof *R.pissa_init);
	R.pissa_init[R.npissa] = lf_malloc(A->n * sizeof(float) + 4);
	R.pissa_init[R.npissa + 1] = lf_malloc(B->n * sizeof(float) + 4);
	memcpy(R.pissa_init[R.npissa], A->data, A->n * sizeof(float));
	memcpy(R.pissa_init[R.npissa + 1], B->data, B->n * sizeof(float));
	R.npissa += 2;
}

static void setup_params(void)
{
	struct lf_model *m = R.m;
	R.grads = lf_calloc(m->ntensors + 1, sizeof *R.grads);
	size_t *at = lf_calloc(m->ntensors + 1, sizeof *at);
	for (size_t i = 0; i < m->ntensors; i++) {
		const struct lf_model_tensor *t = &m->tensors[i];
		bool train = R.ft == FT_FULL || (R.ft == FT_FREEZE && freeze_trains(t->name)) ||
			     (R.ft == FT_LORA && i >= R.nbase);
		if (!train)
			continue;
		R.p = lf_realloc(R.p, (R.np + 1) * sizeof *R.p);
		struct param *p = &R.p[R.np++];
		memset(p, 0, sizeof *p);
		p->t = t;
		p->w = (float *)t->data; /* owned copies: the model was loaded writable */
		at[R.np - 1] = R.gn;
		R.gn += (t->n + 15) / 16 * 16; /* each at a multiple of 16 floats */
		p->decay = lf_param_decays(t->name);
		p->lr_mult = 1;
		if (opt_loraplus > 0) {
			/* LLaMA-Factory's LoRA+ groups: B matrices and 1-D tensors at
			 * lr x ratio (weight decay unless a bias), the rest at lr with
			 * weight decay */
			bool b_group = strstr(t->name, "lora_B") || t->ndim == 1;
			p->lr_mult = b_group ? opt_loraplus : 1;
			p->decay = b_group ? !strstr(t->name, "bias") : true;
		}
	}
	if (!R.np)
		lf_die_usage("nothing to train: --finetuning-type %s selects no parameter of %s", opt_ft, opt_model);
	R.gbuf = lf_calloc(R.gn + 16, sizeof *R.gbuf);
	for (size_t i = 0; i < R.np; i++)
		R.p[i].g = R.grads[R.p[i].t - m->tensors] = R.gbuf + at[i];
	lf_model_grad_init(&R.g, m, R.grads);
	/* ZeRO 1: the tensors in order, in consecutive runs of about equal
	 * size, one run per process (a tensor goes where its middle falls) */
	R.zero = opt_zero_stage == 1 && D.world > 1;
	R.part = lf_calloc((size_t)D.world + 1, sizeof *R.part);
	for (size_t i = 0; i < R.np; i++) {
		struct param *p = &R.p[i];
		double middle = (double)at[i] + 0.5 * (double)p->t->n;
		p->owner = R.zero ? (int)(middle * D.world / (double)R.gn) : D.rank;
		size_t end = i + 1 < R.np ? at[i + 1] : R.gn;
		if (end - at[i] + (size_t)R.part[p->owner] > INT_MAX)
			lf_die("--zero-stage 1: a process's share of the gradients passes 2^31 elements: use more processes");
		R.part[p->owner] += (int)(end - at[i]);
		if (p->owner == D.rank) {
			p->m = lf_calloc(p->t->n + 1, sizeof(float));
			p->v = lf_calloc(p->t->n + 1, sizeof(float));
		}
	}
	free(at);
}

/* ---- data ---- */

/* Rows whose arrays the batch owns. */
struct batch {
	struct lf_train_row *rows;
	int n;
};

static void batch_clear(struct batch *b)
{
	for (int i = 0; i < b->n; i++) {
		free((int32_t *)b->rows[i].ids);
		free((int32_t *)b->rows[i].labels);
		free((int32_t *)b->rows[i].positions);
		free((uint32_t *)b->rows[i].spans);
	}
	b->n = 0;
}

/* Example i of split into the batch: ids, labels, positions restarting at
 * each packed example, and (neat packing) one attention span per example
 * and one for the padding after them. */
static void batch_add(struct batch *b, int split, uint64_t i)
{
	struct lf_shard_seq q;
	if (lf_shardset_get(R.set, (size_t)split, i, 0, &q) < 0)
		lf_die("%s", lf_errmsg());
	b->rows = lf_realloc(b->rows, (size_t)(b->n + 1) * sizeof *b->rows);
	int T = (int)q.n;
	int32_t *ids = lf_malloc((size_t)T * sizeof *ids + 4), *labels = lf_malloc((size_t)T * sizeof *labels + 4);
	int32_t *pos = lf_malloc((size_t)T * sizeof *pos + 4);
	uint32_t *spans = NULL;
	lf_shard_seq_decode(&q, ids, labels);
	int t = 0, nspans = 0;
	bool neat = q.nsegments && (q.flags & LF_SEQ_NEAT);
	if (neat)
		spans = lf_malloc((q.nsegments + 1) * sizeof *spans);
	for (uint32_t s = 0; s < q.nsegments; s++) {
		uint32_t len = lf_shard_seq_segment(&q, s);
		for (uint32_t k = 0; k < len; k++)
			pos[t++] = (int32_t)k;
		if (neat)
			spans[nspans++] = len;
	}
	if (neat && t < T)
		spans[nspans++] = (uint32_t)(T - t);
	for (int k = 0; t < T; t++, k++)
		pos[t] = q.nsegments ? 0 : k;
	struct lf_train_row *r = &b->rows[b->n];
	r->ids = ids;
	r->labels = labels;
	r->positions = pos;
	r->T = T;
	r->spans = spans;
	r->nspans = nspans;
	b->n++;
}

/* The example at (epoch, index): a permutation of the training split
 * seeded by (seed, epoch), the same whatever the number of processes; the
 * shards' order with --disable-shuffling. */
static uint64_t *epoch_order(long epoch)
{
	static uint64_t *order;
	static long cached = -1;
	if (cached != epoch) {
		size_t *perm = lf_malloc((R.ntrain + 1) * sizeof *perm);
		struct lf_np_rng rng;
		uint32_t words[2] = { (uint32_t)opt_seed, (uint32_t)epoch };
		lf_np_rng_seed_words(&rng, words, 2);
		if (opt_no_shuffle)
			for (uint64_t i = 0; i < R.ntrain; i++)
				perm[i] = i;
		else
			lf_np_permutation(&rng, R.ntrain, perm);
		free(order);
		order = lf_malloc((R.ntrain + 1) * sizeof *order);
		for (uint64_t i = 0; i < R.ntrain; i++)
			order[i] = perm[i];
		free(perm);
		cached = epoch;
	}
	return order;
}

/* ---- evaluation ---- */

static double evaluate(double *ppl)
{
	uint64_t n = lf_shardset_examples(R.set, (size_t)R.eval);
	struct batch b = { 0 };
	double sum = 0;
	long count = 0;
	/* each process evaluates every world-th batch; the sums are the group's */
	uint64_t step = (uint64_t)opt_eval_batch * (uint64_t)D.world;
	for (uint64_t i = (uint64_t)opt_eval_batch * (uint64_t)D.rank; i < n; i += step) {
		for (uint64_t k = i; k < n && k < i + (uint64_t)opt_eval_batch; k++)
			batch_add(&b, R.eval, k);
		int rc;
#ifdef LF_HAVE_CUDA
		if (gpu)
			rc = lf_cuda_train_loss(gpu, b.rows, b.n, &sum, &count);
		else
#endif
			rc = lf_backprop_loss(&R.bp, R.m, b.rows, b.n, &sum, &count);
		if (rc < 0)
			lf_die("%s: validation example %llu: %s", opt_data, (unsigned long long)i, lf_errmsg());
		batch_clear(&b);
	}
	free(b.rows);
	double sums[2] = { sum, (double)count };
	if (lf_dist_sum_f64(&D, sums, 2) < 0)
		lf_die("%s", lf_errmsg());
	sum = sums[0];
	count = (long)sums[1];
	double loss = count ? sum / (double)count : NAN;
	*ppl = exp(loss);
	return loss;
}

/* ---- logs ---- */

static void hms(char *out, size_t n, double s)
{
	long t = (long)(s + 0.5);
	snprintf(out, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
}

static void write_json(const char *path, json_t *j)
{
	struct lf_output o;
	if (lf_output_open(&o, path) < 0 || json_dumpf(j, o.f, JSON_INDENT(2) | JSON_REAL_PRECISION(10)) < 0 ||
	    fputc('\n', o.f) == EOF || lf_output_commit(&o) < 0)
		lf_die("%s: %s", path, lf_errmsg());
}

/* The numbers of a log entry as the Trainer's TensorBoard callback writes
 * them (eval_X as eval/X, the rest as train/X; lr as learning_rate), at the
 * global step. */
static void report_scalars(json_t *fields)
{
	static const char *const keys[] = { "loss", "grad_norm", "lr", "epoch", "eval_loss", "eval_perplexity",
					    "train_runtime", "train_samples_per_second", "train_steps_per_second",
					    "train_loss" };
	if (!R.tb)
		return;
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		json_t *v = json_object_get(fields, keys[i]);
		if (!json_is_number(v))
			continue;
		char *tag = lf_tboard_hf_tag(strcmp(keys[i], "lr") ? keys[i] : "learning_rate");
		if (lf_tboard_scalar(R.tb, tag, R.step, (float)json_number_value(v), 0) < 0)
			lf_die("%s", lf_errmsg());
		free(tag);
	}
}

/* One line of trainer_log.jsonl (LLaMA-Factory's LogCallback fields). */
static void trainer_log(json_t *fields)
{
	if (D.rank != 0) {
		json_decref(fields);
		return;
	}
	char path[4096], el[32], rem[32];
	double elapsed = now() - R.t0;
	double remaining = R.step ? elapsed / R.step * (R.total_steps - R.step) : 0;
	hms(el, sizeof el, elapsed);
	hms(rem, sizeof rem, remaining);
	json_object_set_new(fields, "current_steps", json_integer(R.step));
	json_object_set_new(fields, "total_steps", json_integer(R.total_steps));
	json_object_set_new(fields, "epoch", json_real((double)R.step / (double)R.steps_per_epoch));
	json_object_set_new(fields, "percentage", json_real(round(1e4 * R.step / R.total_steps) / 100));
	json_object_set_new(fields, "elapsed_time", json_string(el));
	json_object_set_new(fields, "remaining_time", json_string(rem));
	snprintf(path, sizeof path, "%s/trainer_log.jsonl", opt_output);
	FILE *f = fopen(path, "a");
	char *text = json_dumps(fields, JSON_COMPACT | JSON_REAL_PRECISION(10));
	if (!f || fprintf(f, "%s\n", text) < 0 || fclose(f) != 0)
		lf_die("%s: cannot append", path);
	free(text);
	if (lf_log_enabled())
		lf_log_event("log", json_deep_copy(fields));
	report_scalars(fields);
	json_array_append_new(R.history, fields);
}

/* ---- saving ---- */

static void save_tensors(const char *dir, const char *base, bool adapter_names_only, bool as_base_dtype)
{
	struct lf_st_writer *w = lf_st_writer_open(dir, base, as_base_dtype ? 5000000000ull : 0, NULL);
	if (!w)
		lf_die("%s", lf_errmsg());
	void **conv = lf_calloc(R.m->ntensors + 1, sizeof *conv);
	for (size_t i = 0; i < R.m->ntensors; i++) {
		const struct lf_model_tensor *t = &R.m->tensors[i];
		if (adapter_names_only != (i >= R.nbase))
			continue;
		enum lf_dtype dt = LF_DTYPE_F32;
		const void *data = t->data;
		const struct lf_tensor *src = as_base_dtype ? lf_safetensors_find(R.m->st, t->name) : NULL;
		if (src && src->dtype == LF_DTYPE_BF16) {
			uint16_t *h = lf_malloc(t->n * 2 + 2);
			for (size_t k = 0; k < t->n; k++)
				h[k] = lf_f32_to_bf16(t->data[k]);
			conv[i] = h;
			data = h;
			dt = LF_DTYPE_BF16;
		} else if (src && src->dtype == LF_DTYPE_F16) {
			_Float16 *h = lf_malloc(t->n * 2 + 2);
			for (size_t k = 0; k < t->n; k++)
				h[k] = (_Float16)t->data[k];
			conv[i] = h;
			data = h;
			dt = LF_DTYPE_F16;
		}
		if (lf_st_writer_add(w, t->name, dt, t->ndim, t->shape, data) < 0)
			lf_die("%s", lf_errmsg());
	}
	if (lf_st_writer_finish(w) < 0)
		lf_die("%s", lf_errmsg());
	for (size_t i = 0; i < R.m->ntensors; i++)
		free(conv[i]);
	free(conv);
}

/* PiSSA's adapters: as trained (for the residual base), as they started,
 * or converted for the original base. */
enum adapter_form { ADAPTER_TRAINED, ADAPTER_PISSA_START, ADAPTER_PISSA_CONVERTED };

static void save_adapter_config(const char *dir, enum adapter_form form)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/adapter_config.json", dir);
	/* PEFT's conversion doubles the rank and keeps the scale */
	bool conv = form == ADAPTER_PISSA_CONVERTED;
	double alpha = conv ? opt_lora_alpha * (opt_rslora ? sqrt(2.0) : 2.0) : opt_lora_alpha;
	char init[64] = "";
	if (opt_pissa_init && form == ADAPTER_TRAINED)
		snprintf(init, sizeof init, opt_pissa_iter < 0 ? "pissa" : "pissa_niter_%lld", opt_pissa_iter);
	json_t *c = json_pack("{s:s,s:s,s:s,s:I,s:f,s:f,s:O,s:b,s:b,s:s,s:b,s:b,s:b,s:n,s:{},s:{},s:n}", "peft_type",
			      "LORA", "task_type", "CAUSAL_LM", "base_model_name_or_path", opt_model, "r",
			      (json_int_t)(conv ? 2 * R.lora_r : R.lora_r), "lora_alpha", alpha, "lora_dropout", opt_lora_dropout,
			      "target_modules", R.lora_targets, "use_rslora", opt_rslora, "use_dora", opt_dora, "bias",
			      "none", "fan_in_fan_out", false, "inference_mode", true, "init_lora_weights", true,
			      "modules_to_save", "rank_pattern", "alpha_pattern", "layers_to_transform");
	if (json_array_size(R.modules_to_save))
		json_object_set(c, "modules_to_save", R.modules_to_save);
	if (*init)
		json_object_set_new(c, "init_lora_weights", json_string(init));
	write_json(path, c);
	json_decref(c);
}

/* PiSSA's starting adapter (pissa_init/) or the trained one converted for
 * the original base (pissa_converted/): A' = [A; A0], B' = [B, -B0], as
 * PEFT's save_pretrained(path_initial_model_for_weight_conversion=...). */
static void save_pissa(const char *name, enum adapter_form form)
{
	char dir[4096];
	snprintf(dir, sizeof dir, "%s/%s", opt_output, name);
	struct lf_outdir d;
	if (lf_outdir_open(&d, dir, "adapter_config.json") < 0)
		lf_die("%s", lf_errmsg());
	save_adapter_config(d.tmp, form);
	struct lf_st_writer *w = lf_st_writer_open(d.tmp, "adapter_model", 0, NULL);
	if (!w)
		lf_die("%s", lf_errmsg());
	float **bufs = lf_calloc(R.npissa + 1, sizeof *bufs);
	for (size_t i = R.nbase, k = 0; i < R.m->ntensors; i++) {
		const struct lf_model_tensor *t = &R.m->tensors[i];
		int64_t shape[2] = { t->shape[0], t->shape[1] };
		bool is_a = strstr(t->name, ".lora_A.") != NULL, is_b = strstr(t->name, ".lora_B.") != NULL;
		/* a DoRA magnitude or a modules_to_save copy: as it is (at step 0 for pissa_init/) */
		if (!is_a && !is_b) {
			if (lf_st_writer_add(w, t->name, LF_DTYPE_F32, t->ndim, t->shape, t->data) < 0)
				lf_die("%s", lf_errmsg());
			continue;
		}
		const float *start = R.pissa_init[k];
		const float *data = start;
		if (form == ADAPTER_PISSA_CONVERTED) {
			int64_t rows = t->shape[0], cols = t->shape[1];
			float *c = bufs[k] = lf_malloc((size_t)t->n * 2 * sizeof *c + 4);
			if (is_a) { /* [2r, in] */
				memcpy(c, t->data, t->n * sizeof *c);
				memcpy(c + t->n, start, t->n * sizeof *c);
				shape[0] = 2 * rows;
			} else { /* [out, 2r] */
				for (int64_t j = 0; j < rows; j++)
					for (int64_t q = 0; q < cols; q++) {
						c[j * 2 * cols + q] = t->data[j * cols + q];
						c[j * 2 * cols + cols + q] = -start[j * cols + q];
					}
				shape[1] = 2 * cols;
			}
			data = c;
		}
		if (lf_st_writer_add(w, t->name, LF_DTYPE_F32, 2, shape, data) < 0)
			lf_die("%s", lf_errmsg());
		k++;
	}
	if (lf_st_writer_finish(w) < 0)
		lf_die("%s", lf_errmsg());
	for (size_t k = 0; k < R.npissa; k++)
		free(bufs[k]);
	free(bufs);
	if (lf_export_inference_files(opt_model, d.tmp, R.template_name) < 0 || lf_outdir_commit(&d) < 0)
		lf_die("%s", lf_errmsg());
}

/* The trained weights into dir: the adapter (LoRA) or the whole model
 * (f32 masters in a checkpoint; the base's dtype in the final output). */
static void save_weights(const char *dir, bool final)
{
	if (R.ft == FT_LORA) {
		save_adapter_config(dir, ADAPTER_TRAINED);
		save_tensors(dir, "adapter_model", true, false);
	} else {
		save_tensors(dir, "model", false, final);
		if (lf_export_copy_file(opt_model, dir, "config.json") < 0)
			lf_die("%s", lf_errmsg());
	}
	/* the tokenizer, with the training template as its chat_template and
	 * the template's stop words among generation_config's eos ids */
	if (lf_export_inference_files(opt_model, dir, R.template_name) < 0)
		lf_die("%s", lf_errmsg());
}

static json_t *state_json(void)
{
	return json_pack("{s:I,s:f,s:I,s:f,s:O,s:I,s:I,s:I,s:I,s:{s:I,s:I,s:f,s:I,s:I}}", "global_step",
			 (json_int_t)R.step, "epoch", (double)R.step / (double)R.steps_per_epoch, "max_steps",
			 (json_int_t)R.total_steps, "num_train_epochs", opt_epochs, "log_history", R.history,
			 "logging_steps", (json_int_t)opt_logging_steps, "save_steps", (json_int_t)opt_save_steps,
			 "eval_steps", (json_int_t)opt_eval_steps, "train_batch_size", (json_int_t)opt_batch, "lf",
			 "seed", (json_int_t)opt_seed, "gradient_accumulation_steps", (json_int_t)opt_ga, "loss_total",
			 R.loss_total, "examples", (json_int_t)R.ntrain, "world_size", (json_int_t)D.world);
}

static int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;
	return (x > y) - (x < y);
}

/* The checkpoint-N folders of output_dir, in step order. */
static long *list_checkpoints(size_t *n)
{
	*n = 0;
	DIR *d = opendir(opt_output);
	long *steps = NULL;
	struct dirent *e;
	while (d && (e = readdir(d))) {
		long s;
		char tail;
		if (sscanf(e->d_name, "checkpoint-%ld%c", &s, &tail) == 1 && s > 0) {
			steps = lf_realloc(steps, (*n + 1) * sizeof *steps);
			steps[(*n)++] = s;
		}
	}
	if (d)
		closedir(d);
	if (*n)
		qsort(steps, *n, sizeof *steps, cmp_long);
	return steps;
}

static void remove_tree(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	char p[4096];
	while (d && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(p, sizeof p, "%s/%s", path, e->d_name);
		unlink(p);
	}
	if (d)
		closedir(d);
	rmdir(path);
}

/* The AdamW state (exp_avg.NAME, exp_avg_sq.NAME) of the tensors owner
 * keeps (every tensor outside ZeRO) into DIR/BASE.safetensors, by rank 0,
 * which receives another owner's first; their names go into weight_map. */
static void save_optimizer_part(const char *dir, const char *base, int owner, json_t *weight_map)
{
	struct lf_st_writer *w = lf_st_writer_open(dir, base, 0, NULL);
	char **names = lf_calloc(2 * R.np + 1, sizeof *names);
	float **got = lf_calloc(2 * R.np + 1, sizeof *got);
	char file[512];
	snprintf(file, sizeof file, "%s.safetensors", base);
	for (size_t i = 0; i < R.np && w; i++) {
		const struct param *p = &R.p[i];
		if (R.zero && p->owner != owner)
			continue;
		const float *m = p->m, *v = p->v;
		if (owner != D.rank) {
			got[2 * i] = lf_malloc(p->t->n * sizeof(float) + 4);
			got[2 * i + 1] = lf_malloc(p->t->n * sizeof(float) + 4);
			if (lf_dist_recv(&D, got[2 * i], p->t->n * sizeof(float), owner) < 0 ||
			    lf_dist_recv(&D, got[2 * i + 1], p->t->n * sizeof(float), owner) < 0)
				lf_die("%s", lf_errmsg());
			m = got[2 * i];
			v = got[2 * i + 1];
		}
		names[2 * i] = lf_malloc(strlen(p->t->name) + 16);
		names[2 * i + 1] = lf_malloc(strlen(p->t->name) + 16);
		sprintf(names[2 * i], "exp_avg.%s", p->t->name);
		sprintf(names[2 * i + 1], "exp_avg_sq.%s", p->t->name);
		if (lf_st_writer_add(w, names[2 * i], LF_DTYPE_F32, p->t->ndim, p->t->shape, m) < 0 ||
		    lf_st_writer_add(w, names[2 * i + 1], LF_DTYPE_F32, p->t->ndim, p->t->shape, v) < 0)
			lf_die("%s", lf_errmsg());
		for (int k = 0; k < 2 && weight_map; k++)
			json_object_set_new(weight_map, names[2 * i + k], json_string(file));
	}
	if (!w || lf_st_writer_finish(w) < 0)
		lf_die("%s", lf_errmsg());
	for (size_t i = 0; i < 2 * R.np; i++) {
		free(names[i]);
		free(got[i]);
	}
	free(names);
	free(got);
}

/* The optimizer state: optimizer.safetensors, or under ZeRO one file per
 * process that has tensors, written one after the other (rank 0 holds one
 * other process's state at a time), and optimizer.safetensors.index.json. */
static void save_optimizer(const char *dir)
{
	if (D.rank != 0) { /* ZeRO: this process's state to rank 0 (else rank 0 has it all) */
		for (size_t i = 0; i < R.np && R.zero; i++)
			if (R.p[i].owner == D.rank &&
			    (lf_dist_send(&D, R.p[i].m, R.p[i].t->n * sizeof(float), 0) < 0 ||
			     lf_dist_send(&D, R.p[i].v, R.p[i].t->n * sizeof(float), 0) < 0))
				lf_die("%s", lf_errmsg());
		return;
	}
	if (!R.zero) {
		save_optimizer_part(dir, "optimizer", D.rank, NULL);
		return;
	}
	json_t *map = json_object();
	for (int r = 0; r < D.world; r++) {
		char base[64];
		snprintf(base, sizeof base, "optimizer-%05d-of-%05d", r + 1, D.world);
		if (R.part[r])
			save_optimizer_part(dir, base, r, map);
	}
	char path[4096];
	snprintf(path, sizeof path, "%s/optimizer.safetensors.index.json", dir);
	json_t *index = json_pack("{s:{},s:o}", "metadata", "weight_map", map);
	write_json(path, index);
	json_decref(index);
}

/* checkpoint-STEP: the weights, the optimizer state, trainer_state.json;
 * built under a temporary name and renamed, so a kill leaves the previous
 * checkpoints whole. */
static void save_checkpoint(void)
{
	gpu_pull();
	if (D.rank != 0) {
		if (!opt_save_only_model)
			save_optimizer(NULL);
		return;
	}
	char name[4096];
	snprintf(name, sizeof name, "%s/checkpoint-%ld", opt_output, R.step);
	struct lf_outdir d;
	if (lf_outdir_open(&d, name, "trainer_state.json") < 0)
		lf_die("%s", lf_errmsg());
	save_weights(d.tmp, false);
	if (!opt_save_only_model)
		save_optimizer(d.tmp);
	json_t *st = state_json();
	char path[4096];
	snprintf(path, sizeof path, "%s/trainer_state.json", d.tmp);
	write_json(path, st);
	json_decref(st);
	if (lf_outdir_commit(&d) < 0)
		lf_die("%s", lf_errmsg());
	size_t n;
	long *steps = list_checkpoints(&n);
	for (size_t i = 0; opt_save_limit > 0 && i + (size_t)opt_save_limit < n; i++) {
		snprintf(name, sizeof name, "%s/checkpoint-%ld", opt_output, steps[i]);
		remove_tree(name);
	}
	free(steps);
}

/* Resume from a checkpoint folder: trained weights, optimizer state, the
 * step and the log history. */
static void load_checkpoint(const char *dir)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/trainer_state.json", dir);
	json_error_t err;
	json_t *st = json_load_file(path, 0, &err);
	json_t *lf = st ? json_object_get(st, "lf") : NULL;
	if (!st || !json_is_integer(json_object_get(st, "global_step")) || !json_is_object(lf))
		lf_die("%s: not a trainer state lf wrote (%s)", path, st ? "fields missing" : err.text);
	/* a step is the same examples whatever the split of its batch into
	 * processes, micro-batches and accumulation: resuming needs the same
	 * examples per step, not the same world size */
	json_t *ws = json_object_get(lf, "world_size");
	json_int_t then = json_integer_value(json_object_get(st, "train_batch_size")) *
			  json_integer_value(json_object_get(lf, "gradient_accumulation_steps")) *
			  (json_is_integer(ws) ? json_integer_value(ws) : 1);
	if (json_integer_value(json_object_get(lf, "seed")) != opt_seed ||
	    json_integer_value(json_object_get(lf, "examples")) != (json_int_t)R.ntrain)
		lf_die("%s: the checkpoint was made with another seed or data", path);
	if (then != (json_int_t)(opt_batch * opt_ga * D.world))
		lf_die("%s: the checkpoint's steps took %lld examples each (processes x batch size x accumulation), "
		       "this run's take %lld",
		       path, (long long)then, opt_batch * opt_ga * (long long)D.world);
	R.step = (long)json_integer_value(json_object_get(st, "global_step"));
	R.loss_total = json_real_value(json_object_get(lf, "loss_total"));
	json_decref(R.history);
	R.history = json_incref(json_object_get(st, "log_history"));
	json_decref(st);
	/* the log restarts from the checkpoint's history: lines a killed run
	 * wrote after its last checkpoint are dropped */
	snprintf(path, sizeof path, "%s/trainer_log.jsonl", opt_output);
	struct lf_output out;
	if (lf_output_open(&out, path) < 0)
		lf_die("%s", lf_errmsg());
	size_t i;
	json_t *line;
	json_array_foreach(R.history, i, line) {
		if (json_dumpf(line, out.f, JSON_COMPACT | JSON_REAL_PRECISION(10)) < 0 || fputc('\n', out.f) == EOF)
			lf_die("%s: write failed", path);
	}
	if (lf_output_commit(&out) < 0)
		lf_die("%s", lf_errmsg());
	snprintf(path, sizeof path, "%s/%s", dir, R.ft == FT_LORA ? "adapter_model.safetensors" : "model.safetensors");
	struct lf_safetensors *w = lf_safetensors_open(path);
	snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
	if (access(path, F_OK) != 0) /* ZeRO's files */
		snprintf(path, sizeof path, "%s/optimizer.safetensors.index.json", dir);
	if (access(path, F_OK) != 0)
		lf_die("%s: no optimizer state (saved with --save-only-model?): this checkpoint cannot be resumed; "
		       "--overwrite-output-dir starts afresh", dir);
	struct lf_safetensors *o = w ? lf_safetensors_open(path) : NULL;
	if (!w || !o)
		lf_die("%s", lf_errmsg());
	for (size_t i = 0; i < R.np; i++) {
		const struct lf_model_tensor *t = R.p[i].t;
		char name[1024];
		const struct lf_tensor *x = lf_safetensors_expect(w, t->name, t->ndim, t->shape);
		snprintf(name, sizeof name, "exp_avg.%s", t->name);
		const struct lf_tensor *a = x ? lf_safetensors_expect(o, name, t->ndim, t->shape) : NULL;
		snprintf(name, sizeof name, "exp_avg_sq.%s", t->name);
		const struct lf_tensor *b = a ? lf_safetensors_expect(o, name, t->ndim, t->shape) : NULL;
		if (!b || x->dtype != LF_DTYPE_F32 || a->dtype != LF_DTYPE_F32 || b->dtype != LF_DTYPE_F32)
			lf_die("%s: %s", dir, b ? "state tensors must be F32" : lf_errmsg());
		lf_tensor_to_f32(x, R.p[i].w);
		if (R.p[i].m) { /* else another process's (share_start) */
			lf_tensor_to_f32(a, R.p[i].m);
			lf_tensor_to_f32(b, R.p[i].v);
		}
	}
	lf_safetensors_close(w);
	if (R.zero)
		R.resumed_optimizer = o;
	else
		lf_safetensors_close(o);
	lf_note("resuming from %s (step %ld of %ld)", dir, R.step, R.total_steps);
}

static void dump_grads(double loss)
{
	const char *slash = strrchr(opt_dump_grads, '/');
	char dir[4096], base[1024];
	snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - opt_dump_grads) : 1, slash ? opt_dump_grads : ".");
	snprintf(base, sizeof base, "%s", slash ? slash + 1 : opt_dump_grads);
	size_t bl = strlen(base);
	if (bl > 12 && !strcmp(base + bl - 12, ".safetensors"))
		base[bl - 12] = 0;
	struct lf_st_writer *w = lf_st_writer_open(dir, base, 0, NULL);
	float l = (float)loss;
	int64_t one = 1;
	if (!w || lf_st_writer_add(w, "loss", LF_DTYPE_F32, 1, &one, &l) < 0)
		lf_die("%s", lf_errmsg());
	char **names = lf_calloc(R.np + 1, sizeof *names);
	for (size_t i = 0; i < R.np; i++) {
		names[i] = lf_malloc(strlen(R.p[i].t->name) + 6);
		sprintf(names[i], "grad.%s", R.p[i].t->name);
		if (lf_st_writer_add(w, names[i], LF_DTYPE_F32, R.p[i].t->ndim, R.p[i].t->shape, R.p[i].g) < 0)
			lf_die("%s", lf_errmsg());
	}
	if (lf_st_writer_finish(w) < 0)
		lf_die("%s", lf_errmsg());
	for (size_t i = 0; i < R.np; i++)
		free(names[i]);
	free(names);
}

/* ---- the loop ---- */

/* One optimizer step over the micro-batches that start at batch index
 * first of the epoch: returns the step's loss.  A micro-batch is the next
 * batch x world examples of the epoch's order; each process of the group
 * takes its batch of them, and the group's gradients are summed, so the
 * step is the same whatever the number of processes. */
static double train_step(long epoch, long first, long nbatches, double *grad_norm)
{
	const uint64_t *order = epoch_order(epoch);
	struct batch *mb = lf_calloc((size_t)nbatches, sizeof *mb);
	uint64_t group_batch = (uint64_t)opt_batch * (uint64_t)D.world;
	double items = 0;
	for (long k = 0; k < nbatches; k++) {
		uint64_t start = (uint64_t)(first + k) * group_batch, from = start + (uint64_t)D.rank * (uint64_t)opt_batch;
		for (uint64_t i = from; i < R.ntrain && i < from + (uint64_t)opt_batch; i++)
			batch_add(&mb[k], R.train, order[i]);
		for (int r = 0; r < mb[k].n; r++)
			items += lf_train_row_label_tokens(&mb[k].rows[r]);
	}
	/* the loss is normalised by the label tokens of the whole group's step */
	if (lf_dist_sum_f64(&D, &items, 1) < 0)
		lf_die("%s", lf_errmsg());
	#pragma omp parallel /* the gradients zeroed, each thread its share */
	{
		long lo, hi;
		lf_vec_share((long)R.gn, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
		memset(R.gbuf + lo, 0, (size_t)(hi - lo) * sizeof *R.gbuf);
	}
#ifdef LF_HAVE_CUDA
	if (gpu) {
		lf_cuda_train_zero_grads(gpu);
		lf_cuda_train_set_moe_aux(gpu, (float)opt_moe_aux);
	}
	/* NCCL sums the last micro-batch's gradients layer by layer as its
	 * backward runs, when every process has rows for it (else after) */
	uint64_t last = (uint64_t)(first + nbatches - 1) * group_batch + (uint64_t)(D.world - 1) * (uint64_t)opt_batch;
	bool by_layer = gpu_nccl && items && last < R.ntrain;
#endif
	double loss_sum = 0;
	R.bp.moe_aux_coef = (float)opt_moe_aux;
	R.bp.moe_aux_total = 0;
	for (long k = 0; k < nbatches; k++) {
		/* this micro-batch's noise: a seed from (seed, step, micro-batch);
		 * NEFTune's scale from the length LLaMA-Factory pads it to */
		R.bp.noise_seed = ((uint64_t)opt_seed << 40) ^ ((uint64_t)D.rank << 28) ^ ((uint64_t)R.step << 8) ^ (uint64_t)k;
		R.bp.lora_dropout = R.ft == FT_LORA ? (float)opt_lora_dropout : 0.0f;
		int longest = 0;
		for (int r = 0; r < mb[k].n; r++)
			longest = mb[k].rows[r].T > longest ? mb[k].rows[r].T : longest;
		if (!R.pt)
			longest = (longest + 7) / 8 * 8;
		R.bp.neftune_mag = opt_neftune > 0 ? (float)(opt_neftune / sqrt((double)longest * R.m->cfg.hidden)) : 0;
		int rc = 0;
#ifdef LF_HAVE_CUDA
		if (gpu && items && mb[k].n) {
			lf_cuda_train_set_noise(gpu, R.bp.lora_dropout, R.bp.neftune_mag, R.bp.noise_seed);
			lf_cuda_train_set_sync(gpu, by_layer && k == nbatches - 1);
			rc = lf_cuda_train_step(gpu, mb[k].rows, mb[k].n, 1.0f / (float)items, &loss_sum);
		} else
#endif
		if (items && mb[k].n)
			rc = lf_backprop_step(&R.bp, R.m, &R.g, mb[k].rows, mb[k].n, 1.0f / (float)items, &loss_sum);
		if (rc < 0)
			lf_die("%s: epoch %ld, micro-batch %ld: %s", opt_data, epoch, first + k, lf_errmsg());
		batch_clear(&mb[k]);
		free(mb[k].rows);
	}
	free(mb);
	/* the group's gradients, losses (the router's, as DDP under the Trainer,
	 * summed over the processes) and stop requests */
	/* ZeRO 1: each process gets the sums of its tensors' gradients only
	 * (all of them for --dump-grads) */
	bool dump = opt_dump_grads && R.step == 0, whole = !R.zero || dump, host_sums = true;
#ifdef LF_HAVE_CUDA
	if (gpu)
		R.bp.moe_aux_total = lf_cuda_train_moe_aux(gpu);
	/* on GPUs: summed by NCCL (or through the host by MPI without it) */
	if (gpu_nccl && items && !by_layer)
		lf_cuda_train_sum_grads(gpu);
	host_sums = gpu ? D.world > 1 && !gpu_nccl : true;
	if (gpu && (host_sums || dump))
		lf_cuda_train_get_grads(gpu, R.gbuf);
#endif
	double sums[4] = { loss_sum, R.bp.moe_aux_total, stop_signal == SIGINT, stop_signal == SIGTERM };
	if ((host_sums && (whole ? lf_dist_sum_f32(&D, R.gbuf, R.gn) : lf_dist_sum_parts_f32(&D, R.gbuf, R.part)) < 0) ||
	    lf_dist_sum_f64(&D, sums, 4) < 0)
		lf_die("%s", lf_errmsg());
	group_stop = sums[2] > 0 ? SIGINT : sums[3] > 0 ? SIGTERM : 0;
	double loss = (items ? sums[0] / items : 0) + sums[1];
	if (dump && D.rank == 0)
		dump_grads(loss);
	double lr = lf_lr_at(&R.sched, R.step);
	struct lf_adamw h = { opt_lr, opt_beta1, opt_beta2, opt_eps, opt_wd };
#ifdef LF_HAVE_CUDA
	if (gpu) { /* the group's sums back (MPI), then clipping and AdamW on the device */
		if (D.world > 1 && !gpu_nccl)
			lf_cuda_train_set_grads(gpu, R.gbuf);
		gpu_update(lr, &h, grad_norm);
		R.step++;
		return loss;
	}
#endif
	/* clipping by the norm of every gradient; the owners' AdamW steps */
	double *sq = lf_calloc(R.np + 1, sizeof *sq);
	for (size_t i = 0; i < R.np; i++)
		if (R.p[i].owner == D.rank)
			sq[i] = lf_grad_norm_sq(R.p[i].g, R.p[i].t->n);
	if (R.zero && lf_dist_sum_f64(&D, sq, R.np) < 0)
		lf_die("%s", lf_errmsg());
	float coef = lf_clip_coef(sq, R.np, opt_max_grad_norm, grad_norm);
	free(sq);
	for (size_t i = 0; i < R.np; i++) {
		struct param *p = &R.p[i];
		if (p->owner != D.rank)
			continue;
		double plr = p->lr_mult == 1 ? lr : opt_lr * p->lr_mult * lf_lr_lambda(&R.sched, R.step);
		/* clipping: AdamW takes g * coef (the gradient buffer is zeroed next) */
		lf_adamw_step(p->w, p->g, p->m, p->v, p->t->n, R.step + 1, plr, &h, p->decay, coef);
	}
	for (size_t i = 0; i < R.np && R.zero; i++)
		if (lf_dist_broadcast(&D, R.p[i].w, R.p[i].t->n * sizeof(float), R.p[i].owner) < 0)
			lf_die("%s", lf_errmsg());
	R.step++;
	return loss;
}

static void train(void)
{
	R.t0 = now();
	if (opt_pissa_init && R.step == 0 && D.rank == 0)
		save_pissa("pissa_init", ADAPTER_PISSA_START);
	if (opt_report_to && !strcmp(opt_report_to, "tensorboard") && D.rank == 0) {
		char *dir = lf_tboard_default_logdir(opt_output, (int64_t)time(NULL));
		R.tb = lf_tboard_open(dir);
		free(dir);
		if (!R.tb)
			lf_die("%s", lf_errmsg());
		char path[4096];
		snprintf(path, sizeof path, "%s/config.json", opt_model);
		json_t *cfg = json_load_file(path, 0, NULL);
		char *text = cfg ? json_dumps(cfg, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
		if (text && lf_tboard_text(R.tb, "model_config", text, R.step, 0) < 0)
			lf_die("%s", lf_errmsg());
		free(text);
		json_decref(cfg);
	}
	double eval_ppl;
	while (R.step < R.total_steps) {
		long epoch = R.step / R.steps_per_epoch, in_epoch = R.step % R.steps_per_epoch;
		long first = in_epoch * opt_ga, n = R.batches_per_epoch - first < opt_ga ? R.batches_per_epoch - first : opt_ga;
		double gn, lr = lf_lr_at(&R.sched, R.step);
		double loss = train_step(epoch, first, n, &gn);
		R.loss_total += loss;
		R.logged_loss += loss;
		R.logged_steps++;
		double elapsed = now() - R.t0;
		if (D.rank == 0)
			lf_progress("step %ld/%ld  loss %.4f  lr %.3g  grad_norm %.3f  %.2f s/step", R.step, R.total_steps,
				    loss, lr, gn, elapsed / R.step);
		if (R.step % opt_logging_steps == 0 || R.step == R.total_steps) {
			trainer_log(json_pack("{s:f,s:f,s:f}", "loss", R.logged_loss / R.logged_steps, "lr", lr,
					      "grad_norm", gn));
			R.logged_loss = 0;
			R.logged_steps = 0;
		}
		if (R.eval >= 0 && opt_eval_steps > 0 && R.step % opt_eval_steps == 0) {
			double el = evaluate(&eval_ppl);
			trainer_log(json_pack("{s:f,s:f}", "eval_loss", el, "eval_perplexity", eval_ppl));
		}
		if (group_stop) {
			lf_progress_done();
			save_checkpoint();
			if (D.rank == 0)
				lf_note("stopped by signal %d after step %ld: checkpoint-%ld saved; run again to resume",
					group_stop, R.step, R.step);
			lf_dist_finish(&D);
			exit(128 + group_stop);
		}
		if (opt_save_steps > 0 && R.step % opt_save_steps == 0 && R.step < R.total_steps)
			save_checkpoint();
	}
	lf_progress_done();
}

/* ---- setup ---- */

static void check_options(void)
{
	/* string options are freed when given again: their defaults go in here */
	opt_ft = opt_ft ? opt_ft : "lora";
	opt_sched = opt_sched ? opt_sched : "linear";
	opt_lora_target = opt_lora_target ? opt_lora_target : "all";
	opt_freeze_modules = opt_freeze_modules ? opt_freeze_modules : "all";
	if (!opt_model || !opt_data || !opt_output)
		lf_die_usage("--model-name-or-path, --data and --output-dir are required");
	R.ft = !strcmp(opt_ft, "full") ? FT_FULL : !strcmp(opt_ft, "freeze") ? FT_FREEZE : !strcmp(opt_ft, "lora") ? FT_LORA : -1;
	if ((int)R.ft < 0)
		lf_die_usage("option '--finetuning-type': '%s' is not full, freeze or lora (oft and QLoRA are not "
			     "built yet)", opt_ft);
	if (opt_stage && strcmp(opt_stage, "pt") && strcmp(opt_stage, "sft"))
		lf_die_usage("option '--stage': '%s' is not built yet (lf-train runs pt and sft)", opt_stage);
	if (opt_report_to && strcmp(opt_report_to, "none") && strcmp(opt_report_to, "tensorboard"))
		lf_die_usage("option '--report-to': '%s' is not none or tensorboard (lf reports to nothing else)",
			     opt_report_to);
	if (opt_pissa_init && (strcmp(opt_ft, "lora") || opt_adapter))
		lf_die_usage("--pissa-init initialises new LoRA adapters: it needs --finetuning-type lora and no "
			     "--adapter-name-or-path");
	if (opt_pissa_convert && !opt_pissa_init)
		lf_die_usage("--pissa-convert converts a PiSSA adapter: it needs --pissa-init");
	if (!opt_do_train)
		lf_die_usage("--do-train false (evaluation or prediction only) is not built in lf-train: use lf-eval "
			     "or lf-generate");
	use_gpu = lf_device_is_cuda(opt_device);
	const char *gpu_unbuilt = opt_dora ? "--use-dora" : NULL;
	if (use_gpu && gpu_unbuilt)
		lf_die_usage("%s with --device cuda is not built yet (it runs on the CPU)", gpu_unbuilt);
	if ((opt_bf16 || opt_fp16) && D.rank == 0 && !use_gpu)
		lf_note("--%s: lf-train computes in f32 on the CPU (--device cuda honours it); the outputs keep the base "
			"model's dtype", opt_bf16 ? "bf16" : "fp16");
	if (opt_fp16 && D.rank == 0 && use_gpu)
		lf_note("--fp16: the GPU computes in bf16 (its range needs no loss scaling; an fp16 mode is not built)");
	if (opt_lora_dropout < 0 || opt_lora_dropout >= 1)
		lf_die_usage("option '--lora-dropout': %g is not in [0, 1)", opt_lora_dropout);
	if (opt_batch < 1 || opt_eval_batch < 1 || opt_ga < 1 || opt_lora_rank < 1 || opt_logging_steps < 1 ||
	    opt_lr < 0 || opt_epochs <= 0 || opt_warmup_ratio < 0 || opt_warmup_ratio > 1 || opt_warmup_steps < 0)
		lf_die_usage("batch sizes, accumulation, rank and logging steps must be positive, the learning rate "
			     "and warmup not negative, the epochs above 0");
	enum lf_lr_sched_type type;
	if (lf_lr_sched_parse(opt_sched, &type) < 0)
		lf_die_usage("option '--lr-scheduler-type': %s", lf_errmsg());
	R.sched.type = type;
	if (opt_sched_kwargs) {
		json_error_t err;
		R.sched_kwargs = json_loads(opt_sched_kwargs, 0, &err);
		if (!json_is_object(R.sched_kwargs))
			lf_die_usage("option '--lr-scheduler-kwargs': not a JSON object%s%s", R.sched_kwargs ? "" : ": ",
				     R.sched_kwargs ? "" : err.text);
		/* the keys are checked now, on a schedule of the right type */
		struct lf_lr_sched probe;
		lf_lr_sched_init(&probe, type, 0, 1, 1.0);
		if (lf_lr_sched_kwargs(&probe, R.sched_kwargs) < 0)
			lf_die_usage("option '--lr-scheduler-kwargs': %s", lf_errmsg());
	}
	if (opt_lora_alpha < 0)
		opt_lora_alpha = 2.0 * (double)opt_lora_rank;
}

static void open_data(void)
{
	R.set = lf_shardset_open(opt_data);
	if (!R.set)
		lf_die("%s", lf_errmsg());
	const char *kind = NULL;
	size_t kn = 0;
	lf_mp_get_str(lf_shardset_meta(R.set), "kind", &kind, &kn, false);
	bool pt = kind && kn == 2 && !memcmp(kind, "pt", 2), sft = kind && kn == 3 && !memcmp(kind, "sft", 3);
	if (!pt && !sft)
		lf_die("%s: shards of %.*s examples; lf-train trains on sft and pt shards", opt_data, (int)kn,
		       kind ? kind : "unknown");
	R.pt = pt;
	const msgpack_object *tpl = lf_mp_get(lf_shardset_meta(R.set), "template");
	const char *tname;
	size_t tn;
	if (tpl && tpl->type == MSGPACK_OBJECT_MAP && lf_mp_get_str(tpl, "name", &tname, &tn, false) > 0)
		R.template_name = lf_strndup(tname, tn);
	if (opt_stage && strcmp(opt_stage, pt ? "pt" : "sft"))
		lf_die("%s: %s shards, but --stage %s", opt_data, pt ? "pt" : "sft", opt_stage);
	R.train = lf_shardset_find_split(R.set, "train");
	R.eval = lf_shardset_find_split(R.set, "validation");
	if (R.train < 0 || !(R.ntrain = lf_shardset_examples(R.set, (size_t)R.train)))
		lf_die("%s: no training examples", opt_data);
	uint64_t cutoff = 0;
	lf_mp_get_uint(lf_shardset_meta(R.set), "cutoff_len", &cutoff, false);
	int longest = (int)cutoff + 1;
	R.max_tokens = (int)(opt_batch > opt_eval_batch ? opt_batch : opt_eval_batch) * longest;
	R.longest = longest;
	if (!use_gpu && lf_backprop_init(&R.bp, R.m, R.max_tokens, longest, !opt_no_ckpt) < 0)
		lf_die("%s", lf_errmsg());
	/* steps: every epoch's micro-batches (of batch x world examples), the
	 * last accumulation possibly shorter */
	uint64_t group_batch = (uint64_t)opt_batch * (uint64_t)D.world;
	R.batches_per_epoch = (long)((R.ntrain + group_batch - 1) / group_batch);
	R.steps_per_epoch = (R.batches_per_epoch + opt_ga - 1) / opt_ga;
	R.total_steps = opt_max_steps > 0 ? opt_max_steps : (long)ceil(opt_epochs * (double)R.steps_per_epoch);
	bool ratio = lf_option_find(options, "warmup-ratio")->given;
	R.warmup = lf_warmup_steps((double)opt_warmup_steps, ratio ? opt_warmup_ratio : NAN, R.total_steps);
	if (R.warmup < 0)
		lf_die_usage("%s", lf_errmsg());
	lf_lr_sched_init(&R.sched, R.sched.type, R.warmup, R.total_steps, opt_lr);
	if (lf_lr_sched_kwargs(&R.sched, R.sched_kwargs) < 0)
		lf_die_usage("option '--lr-scheduler-kwargs': %s", lf_errmsg());
	if (lf_lr_sched_check(&R.sched) < 0)
		lf_die_usage("option '--lr-scheduler-type': %s", lf_errmsg());
}

static void load_model(void)
{
	/* PiSSA leaves the residual in the base weights: they are copies then */
	R.m = R.ft == FT_LORA && !opt_pissa_init ? lf_model_load(opt_model) : lf_model_load_writable(opt_model);
	if (!R.m)
		lf_die("%s", lf_errmsg());
	R.nbase = R.m->ntensors;
	if (R.ft == FT_FREEZE)
		freeze_check_modules();
	if (R.ft != FT_LORA) {
		if (opt_adapter)
			lf_die_usage("--adapter-name-or-path trains an adapter further: it needs --finetuning-type lora");
		return;
	}
	R.m->writable = true; /* the adapter's tensors are copies, to be trained */
	R.lora_targets = json_array();
	if (opt_adapter) {
		if (lf_model_load_adapter(R.m, opt_adapter) < 0)
			lf_die("%s", lf_errmsg());
		R.lora_r = R.m->max_rank;
		/* the adapter's own settings go into the saved config */
		char path[4096];
		snprintf(path, sizeof path, "%s/adapter_config.json", opt_adapter);
		json_t *c = json_load_file(path, 0, NULL);
		opt_lora_alpha = json_number_value(json_object_get(c, "lora_alpha"));
		opt_rslora = json_is_true(json_object_get(c, "use_rslora"));
		opt_dora = json_is_true(json_object_get(c, "use_dora"));
		json_t *drop = json_object_get(c, "lora_dropout");
		double p = json_is_number(drop) ? json_number_value(drop) : 0;
		if (p < 0 || p >= 1)
			lf_die("%s: field 'lora_dropout': %g is not in [0, 1)", path, p);
		if (opt_lora_dropout > 0 && opt_lora_dropout != p && D.rank == 0)
			lf_note("--lora-dropout %g: the adapter's lora_dropout %g is kept, as PEFT resumes it (%s)",
				opt_lora_dropout, p, path);
		opt_lora_dropout = p;
		json_t *ms = json_object_get(c, "modules_to_save");
		R.modules_to_save = json_is_array(ms) ? json_incref(ms) : json_array();
		json_t *tm = json_object_get(c, "target_modules");
		if (json_is_array(tm))
			json_array_extend(R.lora_targets, tm);
		else if (json_is_string(tm))
			json_array_append(R.lora_targets, tm);
		json_decref(c);
		return;
	}
	R.modules_to_save = json_array();
	for (const char *p = opt_additional_target; p && *p;) {
		char mod[256];
		p = lf_list_next(p, mod, sizeof mod);
		if (lf_model_new_module_copy(R.m, mod) < 0)
			lf_die_usage("option '--additional-target': %s", lf_errmsg());
		json_array_append_new(R.modules_to_save, json_string(mod));
	}
	const char *parts[4 + 1 + 3 * 64];
	int np = lora_parts(parts);
	R.lora_r = (int)opt_lora_rank;
	R.lora_scale = (float)(opt_rslora ? opt_lora_alpha / sqrt((double)R.lora_r) : opt_lora_alpha / R.lora_r);
	struct lf_np_rng rng;
	lf_np_rng_seed(&rng, (uint64_t)opt_seed);
	for (int l = 0; l < R.m->cfg.layers; l++)
		for (int i = 0; i < np; i++)
			if (lf_model_new_lora(R.m, l, parts[i], R.lora_r, R.lora_scale, opt_dora) < 0)
				lf_die("%s", lf_errmsg());
	for (size_t i = R.nbase; i < R.m->ntensors; i++) {
		const struct lf_model_tensor *t = &R.m->tensors[i];
		size_t n = strlen(t->name);
		if (n > 14 && !strcmp(t->name + n - 14, ".lora_A.weight")) {
			if (opt_pissa_init)
				pissa_init(t, &R.m->tensors[i + 1], i);
			else
				lora_init((float *)t->data, (size_t)t->shape[0], (size_t)t->shape[1], &rng);
		}
	}
	for (int i = 0; i < np; i++) {
		const char *last = strrchr(parts[i], '.') + 1;
		bool seen = false;
		for (size_t k = 0; k < json_array_size(R.lora_targets); k++)
			seen |= !strcmp(json_string_value(json_array_get(R.lora_targets, k)), last);
		if (!seen)
			json_array_append_new(R.lora_targets, json_string(last));
	}
}

/* Where to start: a given checkpoint, the last one in output_dir, or
 * nothing (a fresh output_dir; an old one only with --overwrite-output-dir).
 * Rank 0 decides and reads; the others take its state (share_start). */
static void find_start(void)
{
	if (D.rank != 0)
		return;
	struct stat st;
	if (mkdir(opt_output, 0777) != 0 && errno != EEXIST)
		lf_die("%s: cannot create: %s", opt_output, strerror(errno));
	if (stat(opt_output, &st) != 0 || !S_ISDIR(st.st_mode))
		lf_die("%s: not a folder", opt_output);
	char path[4096];
	if (opt_resume) {
		load_checkpoint(opt_resume);
		return;
	}
	size_t n;
	long *steps = list_checkpoints(&n);
	if (n && !opt_overwrite) {
		snprintf(path, sizeof path, "%s/checkpoint-%ld", opt_output, steps[n - 1]);
		load_checkpoint(path);
	} else {
		for (size_t i = 0; i < n; i++) {
			snprintf(path, sizeof path, "%s/checkpoint-%ld", opt_output, steps[i]);
			remove_tree(path);
		}
		snprintf(path, sizeof path, "%s/trainer_log.jsonl", opt_output);
		unlink(path);
	}
	free(steps);
}

/* Every process of the group starts from rank 0's trained tensors (a new
 * adapter's too), optimizer state and step, as DDP broadcasts the model;
 * under ZeRO each owner gets its tensors' state from the checkpoint. */
static void share_start(void)
{
	double at[3] = { (double)R.step, R.loss_total, R.resumed_optimizer != NULL };
	if (lf_dist_broadcast(&D, at, sizeof at, 0) < 0)
		lf_die("%s", lf_errmsg());
	R.step = (long)at[0];
	R.loss_total = at[1];
	for (size_t i = 0; i < R.np; i++) {
		struct param *p = &R.p[i];
		size_t bytes = p->t->n * sizeof(float);
		if (lf_dist_broadcast(&D, p->w, bytes, 0) < 0 ||
		    (!R.zero && (lf_dist_broadcast(&D, p->m, bytes, 0) < 0 || lf_dist_broadcast(&D, p->v, bytes, 0) < 0)))
			lf_die("%s", lf_errmsg());
		if (!R.zero || !at[2] || p->owner == 0)
			continue;
		if (D.rank == p->owner) {
			if (lf_dist_recv(&D, p->m, bytes, 0) < 0 || lf_dist_recv(&D, p->v, bytes, 0) < 0)
				lf_die("%s", lf_errmsg());
		} else if (D.rank == 0) {
			float *x = lf_malloc(bytes + 4);
			for (int k = 0; k < 2; k++) {
				char name[1024];
				snprintf(name, sizeof name, "%s.%s", k ? "exp_avg_sq" : "exp_avg", p->t->name);
				lf_tensor_to_f32(lf_safetensors_find(R.resumed_optimizer, name), x);
				if (lf_dist_send(&D, x, bytes, p->owner) < 0)
					lf_die("%s", lf_errmsg());
			}
			free(x);
		}
	}
	lf_safetensors_close(R.resumed_optimizer);
	R.resumed_optimizer = NULL;
}

/* LLaMA-Factory's plot_loss: the loss and eval_loss of the log history. */
static void plot_losses(void)
{
	static const char *const keys[] = { "loss", "eval_loss" };
	size_t n = json_array_size(R.history);
	long *steps = lf_malloc((n + 1) * sizeof *steps);
	double *values = lf_malloc((n + 1) * sizeof *values);
	for (size_t k = 0; k < 2; k++) {
		size_t m = 0;
		for (size_t i = 0; i < n; i++) {
			json_t *e = json_array_get(R.history, i), *v = json_object_get(e, keys[k]);
			if (!json_is_number(v))
				continue;
			steps[m] = (long)json_integer_value(json_object_get(e, "current_steps"));
			values[m++] = json_number_value(v);
		}
		int rc = lf_plot_key(opt_output, keys[k], steps, values, m);
		if (rc < 0)
			lf_die("%s", lf_errmsg());
		if (rc == 1)
			lf_note("no metric %s to plot", keys[k]);
	}
	free(steps);
	free(values);
}

/* The frozen weights in the CPU product's panels once for the whole run,
 * and room for the LoRA layers' merged weights (lf_backprop_pack_frozen),
 * within an eighth of the machine's memory shared by the processes of the
 * group. */
static void pack_frozen(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
	size_t budget = pages > 0 && page > 0 ? (size_t)pages * (size_t)page / 8 / (size_t)D.world : 0;
	lf_backprop_pack_frozen(&R.bp, R.m, &R.g, budget);
}

static void finish(void)
{
	double elapsed = now() - R.t0, ppl = NAN, el = R.eval >= 0 ? evaluate(&ppl) : NAN; /* the group's */
	gpu_pull();
	if (D.rank != 0)
		return;
	save_weights(opt_output, true);
	double examples = (double)R.step * (double)(opt_batch * opt_ga * D.world);
	json_t *res = json_pack("{s:f,s:f,s:f,s:f,s:f}", "epoch", (double)R.step / (double)R.steps_per_epoch,
				"train_loss", R.step ? R.loss_total / (double)R.step : NAN, "train_runtime", elapsed,
				"train_samples_per_second", elapsed > 0 ? examples / elapsed : 0,
				"train_steps_per_second", elapsed > 0 ? (double)R.step / elapsed : 0);
	char path[4096];
	snprintf(path, sizeof path, "%s/train_results.json", opt_output);
	write_json(path, res);
	if (R.eval >= 0) {
		json_object_set_new(res, "eval_loss", json_real(el));
		json_object_set_new(res, "perplexity", json_real(ppl));
		json_t *ev = json_pack("{s:f,s:f,s:f}", "epoch", (double)R.step / (double)R.steps_per_epoch,
				       "eval_loss", el, "perplexity", ppl);
		snprintf(path, sizeof path, "%s/eval_results.json", opt_output);
		write_json(path, ev);
		json_decref(ev);
	}
	snprintf(path, sizeof path, "%s/all_results.json", opt_output);
	write_json(path, res);
	if (lf_log_enabled())
		lf_log_event("result", json_deep_copy(res));
	json_decref(res);
	json_t *st = state_json();
	snprintf(path, sizeof path, "%s/trainer_state.json", opt_output);
	write_json(path, st);
	json_decref(st);
	if (opt_pissa_convert)
		save_pissa("pissa_converted", ADAPTER_PISSA_CONVERTED);
	if (opt_plot_loss)
		plot_losses();
	if (R.tb && lf_tboard_close(R.tb) < 0)
		lf_die("%s", lf_errmsg());
	R.tb = NULL;
}

/* libgomp reads OMP_WAIT_POLICY once, when it loads.  Training's parallel
 * regions are long, so threads that sleep instead of spinning between them
 * cost nothing on a quiet machine and keep lf-train from slowing 3-7x when
 * other processes want the cores (scripts/bench/train.sh): lf-train starts
 * itself again with the passive policy unless the user chose one. */
static void passive_openmp(char **argv)
{
	if (getenv("OMP_WAIT_POLICY"))
		return;
	setenv("OMP_WAIT_POLICY", "passive", 1);
	lf_exec_keep_places();
	execv("/proc/self/exe", argv); /* on failure, go on as we are */
}

int main(int argc, char **argv)
{
	passive_openmp(argv);
	lf_set_progname(argv[0]);
	prctl(PR_SET_NAME, lf_progname()); /* not "exe", after the start again */
	int first = lf_options_parse(&tool, options, argc, argv);
	if (first < argc)
		lf_die_usage("unexpected operand '%s'", argv[first]);
	if (opt_ddp_timeout < 1)
		lf_die_usage("option '--ddp-timeout': %lld is not a positive number of seconds", opt_ddp_timeout);
	if (opt_zero_stage < 0 || opt_zero_stage > 3)
		lf_die_usage("option '--zero-stage': %lld is not 0, 1, 2 or 3", opt_zero_stage);
	if (opt_zero_stage > 1)
		lf_die_usage("--zero-stage %lld (sharded gradients%s) is not built yet: 1 shards the optimizer state",
			     opt_zero_stage, opt_zero_stage == 3 ? " and weights" : "");
#ifndef LF_HAVE_CUDA
	if (lf_device_is_cuda(opt_device))
		lf_device_exec_cuda(argv);
#endif
	if (lf_dist_init(&D, (double)opt_ddp_timeout) < 0)
		lf_die("%s", lf_errmsg());
	static char name[64];
	if (D.rank != 0) { /* rank 0 writes and reports; the others say only what goes wrong, and who */
		snprintf(name, sizeof name, "%s[%d]", lf_progname(), D.rank);
		lf_set_progname(name);
		lf_log_close();
	}
	check_options();
#ifdef LF_HAVE_CUDA
	if (use_gpu && lf_cuda_train_probe(lf_device_local_rank()) < 0)
		lf_die("--device cuda: %s", lf_errmsg());
#endif
	lf_output_init_signals();
	signal(SIGINT, on_stop);
	signal(SIGTERM, on_stop);
	R.history = json_array();
	load_model();
	setup_params();
	open_data();
	find_start();
	share_start();
	if (use_gpu)
		gpu_start();
	else
		pack_frozen();
	train();
	finish();
	lf_model_grad_free(&R.g, R.m);
	lf_backprop_free(&R.bp, R.m);
#ifdef LF_HAVE_CUDA
	lf_cuda_train_close(gpu);
#endif
	for (size_t i = 0; i < R.np; i++) {
		free(R.p[i].m);
		free(R.p[i].v);
	}
	free(R.p);
	free(R.grads);
	free(R.gbuf);
	free(R.part);
	json_decref(R.history);
	json_decref(R.lora_targets);
	json_decref(R.modules_to_save);
	free(R.template_name);
	for (size_t i = 0; i < R.npissa; i++)
		free(R.pissa_init[i]);
	free(R.pissa_init);
	lf_shardset_close(R.set);
	lf_model_free(R.m);
	lf_log_close();
	lf_dist_finish(&D);
	return 0;
}

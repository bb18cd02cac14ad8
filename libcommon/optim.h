/*
 * optim.h — lf-train's optimizer arithmetic, as the Hugging Face Trainer
 * (transformers 5.5.4 on torch 2.9.1) does it: the AdamW step, gradient-norm
 * clipping, the learning-rate schedules of get_scheduler, the warmup rule of
 * TrainingArguments and the choice of parameters that get weight decay.
 * tests/unit/test_optim.c checks every part against tests/golden/optim.json
 * (scripts/goldens/make-optim-goldens.py).
 */
#ifndef LF_OPTIM_H
#define LF_OPTIM_H

#include <jansson.h>
#include <stddef.h>

/* ---- AdamW ---------------------------------------------------------------
 * Hyper-parameters as TrainingArguments names them: learning_rate (the base lr
 * the schedule scales; the step takes the scheduled lr separately),
 * adam_beta1, adam_beta2, adam_epsilon, weight_decay. */
struct lf_adamw {
	double lr, beta1, beta2, eps, weight_decay;
};

/* HF's defaults: lr 5e-5, betas (0.9, 0.999), eps 1e-8, weight_decay 0. */
struct lf_adamw lf_adamw_defaults(void);

/*
 * One AdamW step over one f32 tensor of n elements, with the arithmetic of
 * torch.optim.AdamW's single-tensor path (foreach=False, torch's CPU default):
 * p *= 1 - lr*wd (when decay and wd != 0); m = lerp(m, g, 1 - beta1) (one
 * FMA); v = fma((1 - beta2)*g, g, v*beta2); p += -lr/bc1 * m / (sqrt(v)/sqrt(bc2)
 * + eps), with bc1 = 1 - beta1^step, bc2 = 1 - beta2^step in double and every
 * scalar rounded to f32 once.  Bit for bit torch's result when torch's sqrt is
 * the IEEE one (tests/golden/optim.json); stock torch on the CPU takes float
 * sqrt from MKL, one ulp off now and then, so there the params agree to an
 * ulp or so; the vector body of torch's fused=True CPU kernel is bit for bit.
 * step is the 1-based count of steps this tensor has taken (this one
 * included); lr the scheduled lr of this step (lf_lr_at); decay 0 for a
 * tensor in the no-decay group (lf_param_decays).  The gradient used is
 * g * grad_coef, rounded once as lf_grad_scale would store it (clipping's
 * coefficient, or 1), without writing g.  m and v start as zeros; p, g, m
 * and v do not overlap.  Elementwise, OpenMP-parallel, identical results
 * whatever the thread count.
 */
void lf_adamw_step(float *p, const float *g, float *m, float *v, size_t n, long step, double lr,
		   const struct lf_adamw *h, int decay, float grad_coef);

/* ---- gradient clipping ----------------------------------------------------
 * torch.nn.utils.clip_grad_norm_(params, max_norm), norm type 2:
 * total = sqrt(sum over tensors of |g|^2); coef = max_norm / (total + 1e-6)
 * in f32, clamped to 1; every grad multiplied by coef (also when it is 1).
 * Sums are in double, so total matches torch's f32 one to its rounding. */

/* sum of g[i]^2 in double; deterministic whatever the thread count */
double lf_grad_norm_sq(const float *g, size_t n);
/* From the per-tensor squared norms: *total_norm (what the Trainer logs as
 * grad_norm; may be NULL) and the multiplier for every grad.  max_norm <= 0
 * means no clipping: returns 1.  A non-finite norm gives a non-finite or zero
 * multiplier, as torch (error_if_nonfinite=False). */
float lf_clip_coef(const double *norm_sq, size_t ntensors, double max_norm, double *total_norm);
/* g[i] *= coef */
void lf_grad_scale(float *g, size_t n, float coef);

/* ---- learning-rate schedules ----------------------------------------------
 * transformers' get_scheduler: each a LambdaLR, lr = base_lr * lambda(step),
 * step the number of optimizer steps taken so far (optimizer step k, 1-based,
 * uses lambda(k - 1)).  reduce_lr_on_plateau and greedy follow metrics, not
 * the step count: lf does not support them. */
enum lf_lr_sched_type {
	LF_LR_LINEAR,
	LF_LR_COSINE,
	LF_LR_COSINE_WITH_RESTARTS,
	LF_LR_POLYNOMIAL,
	LF_LR_CONSTANT,
	LF_LR_CONSTANT_WITH_WARMUP,
	LF_LR_INVERSE_SQRT,
	LF_LR_COSINE_WITH_MIN_LR,
	LF_LR_COSINE_WARMUP_WITH_MIN_LR,
	LF_LR_WARMUP_STABLE_DECAY,
};

/* The names lf accepts, comma-separated, for messages. */
extern const char lf_lr_sched_names[];
/* 0, or -1 with lf_fail naming the value (and saying so for HF's
 * metric-driven schedules). */
int lf_lr_sched_parse(const char *name, enum lf_lr_sched_type *out);
const char *lf_lr_sched_name(enum lf_lr_sched_type t);

/* wsd's warmup_type / decay_type */
enum lf_wsd_shape { LF_WSD_LINEAR, LF_WSD_COSINE, LF_WSD_1_SQRT };

/*
 * A schedule: the type, the steps, base_lr, and lr_scheduler_kwargs.
 * lf_lr_sched_init fills get_scheduler's defaults; set kwargs after it.
 */
struct lf_lr_sched {
	enum lf_lr_sched_type type;
	long warmup_steps, total_steps;
	double base_lr;
	double num_cycles;     /* cosine*: 0.5; cosine_with_restarts: 1; wsd: 0.5 */
	double lr_end, power;  /* polynomial: 1e-7, 1.0 */
	long timescale;        /* inverse_sqrt: 0 = warmup_steps, or 10000 without warmup */
	double min_lr_rate;    /* cosine_with_min_lr, cosine_warmup_with_min_lr (required) */
	double min_lr;         /* the same given as an lr (min_lr_rate = min_lr / base_lr) */
	double warmup_lr_rate; /* cosine_warmup_with_min_lr: NAN = unset */
	long num_decay_steps;  /* wsd (required) */
	long num_stable_steps; /* wsd: -1 = total - warmup - decay */
	enum lf_wsd_shape warmup_type, decay_type; /* wsd: linear, cosine */
	double min_lr_ratio;                       /* wsd: 0 */
};

/* Unset kwargs are NAN (min_lr_rate, min_lr, warmup_lr_rate) or -1
 * (num_decay_steps, num_stable_steps). */
void lf_lr_sched_init(struct lf_lr_sched *s, enum lf_lr_sched_type type, long warmup_steps, long total_steps,
		      double base_lr);
/* lr_scheduler_kwargs (a JSON object; NULL or null: none) onto s: only the
 * keys the schedule's function takes (as Python, which raises TypeError for
 * others; constant and constant_with_warmup ignore them all).  0, or -1 with
 * lf_fail naming the key. */
int lf_lr_sched_kwargs(struct lf_lr_sched *s, const json_t *kwargs);
/* What get_scheduler refuses: polynomial with lr_end >= base_lr, min_lr
 * schedules with neither or both of min_lr / min_lr_rate, wsd without
 * num_decay_steps.  0, or -1 with lf_fail. */
int lf_lr_sched_check(const struct lf_lr_sched *s);
/* lambda(step), as the Python lambdas compute it (same double operations) */
double lf_lr_lambda(const struct lf_lr_sched *s, long step);
/* base_lr * lambda(step): the lr of optimizer step step + 1 */
double lf_lr_at(const struct lf_lr_sched *s, long step);

/*
 * The warmup of TrainingArguments.get_warmup_steps in transformers 5.x:
 * warmup_ratio (deprecated), when given (not NAN), replaces warmup_steps;
 * then a value >= 1 is a step count (truncated: 2.7 -> 2, 1.0 -> 1) and a
 * value < 1 a ratio: ceil(total_steps * value) in double.  So warmup_ratio
 * 1.0 means ONE step.  -1 with lf_fail for a negative value.
 */
long lf_warmup_steps(double warmup_steps, double warmup_ratio, long total_steps);

/* ---- weight decay ----------------------------------------------------------
 * Trainer.get_decay_parameter_names: no decay for a parameter whose
 * lowercased Hugging Face name contains "bias", "layernorm" or "rmsnorm", has
 * a component "norm" or a component ending in "_norm"; decay for every other
 * (embeddings, lm_head, LoRA A/B, DoRA magnitudes).  transformers also
 * excludes parameters of nn.LayerNorm modules whatever their names; no
 * architecture lf supports has one. */
int lf_param_decays(const char *hf_param_name);

#endif

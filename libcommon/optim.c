/*
 * optim.c — the optimizer arithmetic of lf-train, as the Hugging Face Trainer
 * does it (transformers 5.5.4, torch 2.9.1): the AdamW step (the arithmetic
 * of torch's single-tensor path, bit for bit where torch's sqrt is the IEEE
 * one), gradient-norm clipping, get_scheduler's
 * learning-rate lambdas, the warmup rule and the weight-decay name rule.
 * The elementwise arithmetic (AdamW, the norm, clipping) is
 * kernels/cpu/adamw.c's, which the CUDA twins share.
 * Written from reading torch/optim/adam.py, torch/nn/utils/clip_grad.py,
 * transformers/optimization.py, training_args.py and trainer.py; the goldens
 * (tests/golden/optim.json) come from running them.
 */
#include "optim.h"

#include "error.h"
#include "cpu/adamw.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/*
 * The schedules' a*b+c rounded twice, as Python does: GCC contracts them
 * into FMAs when the target has one unless told not to.
 */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

/* ---------------------------------------------------------------- AdamW */

struct lf_adamw lf_adamw_defaults(void)
{
	return (struct lf_adamw){ .lr = 5e-5, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.0 };
}

void lf_adamw_step(float *p, const float *g, float *m, float *v, size_t n, long step, double lr,
		   const struct lf_adamw *h, int decay, float grad_coef)
{
	lf_cpu_adamw_f32(p, g, m, v, n, step, lr, h->beta1, h->beta2, h->eps, h->weight_decay, decay, grad_coef);
}

/* ------------------------------------------------------------- clipping */

double lf_grad_norm_sq(const float *g, size_t n)
{
	return lf_cpu_grad_norm_sq_f32(g, n);
}

float lf_clip_coef(const double *norm_sq, size_t ntensors, double max_norm, double *total_norm)
{
	return lf_cpu_clip_coef(norm_sq, ntensors, max_norm, total_norm);
}

void lf_grad_scale(float *g, size_t n, float coef)
{
	lf_cpu_grad_scale_f32(g, n, coef);
}

/* ------------------------------------------------------------ schedules */

static const char *const sched_names[] = {
	[LF_LR_LINEAR] = "linear",
	[LF_LR_COSINE] = "cosine",
	[LF_LR_COSINE_WITH_RESTARTS] = "cosine_with_restarts",
	[LF_LR_POLYNOMIAL] = "polynomial",
	[LF_LR_CONSTANT] = "constant",
	[LF_LR_CONSTANT_WITH_WARMUP] = "constant_with_warmup",
	[LF_LR_INVERSE_SQRT] = "inverse_sqrt",
	[LF_LR_COSINE_WITH_MIN_LR] = "cosine_with_min_lr",
	[LF_LR_COSINE_WARMUP_WITH_MIN_LR] = "cosine_warmup_with_min_lr",
	[LF_LR_WARMUP_STABLE_DECAY] = "warmup_stable_decay",
};
#define NSCHED (sizeof sched_names / sizeof *sched_names)

const char lf_lr_sched_names[] = "linear, cosine, cosine_with_restarts, polynomial, constant, constant_with_warmup, "
				 "inverse_sqrt, cosine_with_min_lr, cosine_warmup_with_min_lr, warmup_stable_decay";

int lf_lr_sched_parse(const char *name, enum lf_lr_sched_type *out)
{
	for (size_t t = 0; t < NSCHED; t++)
		if (!strcmp(name, sched_names[t])) {
			*out = (enum lf_lr_sched_type)t;
			return 0;
		}
	if (!strcmp(name, "reduce_lr_on_plateau") || !strcmp(name, "greedy"))
		return lf_fail("lr_scheduler_type '%s' follows evaluation metrics and is not supported (%s)", name,
			       lf_lr_sched_names);
	return lf_fail("unknown lr_scheduler_type '%s' (%s)", name, lf_lr_sched_names);
}

const char *lf_lr_sched_name(enum lf_lr_sched_type t)
{
	return (size_t)t < NSCHED ? sched_names[t] : "?";
}

void lf_lr_sched_init(struct lf_lr_sched *s, enum lf_lr_sched_type type, long warmup_steps, long total_steps,
		      double base_lr)
{
	*s = (struct lf_lr_sched){
		.type = type,
		.warmup_steps = warmup_steps,
		.total_steps = total_steps,
		.base_lr = base_lr,
		.num_cycles = type == LF_LR_COSINE_WITH_RESTARTS ? 1.0 : 0.5,
		.lr_end = 1e-7,
		.power = 1.0,
		.timescale = 0,
		.min_lr_rate = NAN,
		.min_lr = NAN,
		.warmup_lr_rate = NAN,
		.num_decay_steps = -1,
		.num_stable_steps = -1,
		.warmup_type = LF_WSD_LINEAR,
		.decay_type = LF_WSD_COSINE,
		.min_lr_ratio = 0.0,
	};
}

int lf_lr_sched_check(const struct lf_lr_sched *s)
{
	const char *name = lf_lr_sched_name(s->type);
	if (s->warmup_steps < 0 || s->total_steps < 0)
		return lf_fail("%s: negative warmup or training steps", name);
	switch (s->type) {
	case LF_LR_POLYNOMIAL:
		if (!(s->base_lr > s->lr_end))
			return lf_fail("polynomial: lr_end (%g) must be smaller than the learning rate (%g)", s->lr_end,
				       s->base_lr);
		break;
	case LF_LR_COSINE_WITH_MIN_LR:
	case LF_LR_COSINE_WARMUP_WITH_MIN_LR:
		if (!isnan(s->min_lr) && !isnan(s->min_lr_rate))
			return lf_fail("%s: give one of min_lr and min_lr_rate, not both", name);
		if (isnan(s->min_lr) && isnan(s->min_lr_rate))
			return lf_fail("%s: needs min_lr or min_lr_rate in lr_scheduler_kwargs", name);
		break;
	case LF_LR_WARMUP_STABLE_DECAY:
		if (s->num_decay_steps < 0)
			return lf_fail("warmup_stable_decay: needs num_decay_steps in lr_scheduler_kwargs");
		break;
	default:
		break;
	}
	return 0;
}

/* get_scheduler passes lr_scheduler_kwargs to the schedule's function, which
 * takes only its own parameters (a TypeError otherwise); constant and
 * constant_with_warmup are called without them. */
static const char *const sched_kwargs[NSCHED] = {
	[LF_LR_LINEAR] = "",
	[LF_LR_COSINE] = "num_cycles",
	[LF_LR_COSINE_WITH_RESTARTS] = "num_cycles",
	[LF_LR_POLYNOMIAL] = "lr_end power",
	[LF_LR_CONSTANT] = "*",
	[LF_LR_CONSTANT_WITH_WARMUP] = "*",
	[LF_LR_INVERSE_SQRT] = "timescale",
	[LF_LR_COSINE_WITH_MIN_LR] = "num_cycles min_lr min_lr_rate",
	[LF_LR_COSINE_WARMUP_WITH_MIN_LR] = "num_cycles min_lr min_lr_rate warmup_lr_rate",
	[LF_LR_WARMUP_STABLE_DECAY] = "num_decay_steps num_stable_steps warmup_type decay_type min_lr_ratio num_cycles",
};

static int takes(const char *list, const char *key)
{
	size_t n = strlen(key);
	for (const char *c = strstr(list, key); c; c = strstr(c + 1, key))
		if ((c == list || c[-1] == ' ') && (c[n] == ' ' || c[n] == 0))
			return 1;
	return 0;
}

static int kw_number(const char *name, const char *key, const json_t *v, double *out)
{
	if (!json_is_number(v))
		return lf_fail("%s: lr_scheduler_kwargs '%s' is not a number", name, key);
	*out = json_number_value(v);
	return 0;
}

static int kw_count(const char *name, const char *key, const json_t *v, long *out)
{
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return lf_fail("%s: lr_scheduler_kwargs '%s' is not a non-negative integer", name, key);
	*out = (long)json_integer_value(v);
	return 0;
}

static int kw_shape(const char *name, const char *key, const json_t *v, enum lf_wsd_shape *out)
{
	const char *s = json_is_string(v) ? json_string_value(v) : "";
	if (!strcmp(s, "linear"))
		*out = LF_WSD_LINEAR;
	else if (!strcmp(s, "cosine"))
		*out = LF_WSD_COSINE;
	else if (!strcmp(s, "1-sqrt"))
		*out = LF_WSD_1_SQRT;
	else
		return lf_fail("%s: lr_scheduler_kwargs '%s' must be 'linear', 'cosine' or '1-sqrt'", name, key);
	return 0;
}

int lf_lr_sched_kwargs(struct lf_lr_sched *s, const json_t *kwargs)
{
	const char *name = lf_lr_sched_name(s->type), *list = sched_kwargs[s->type];
	if (!kwargs || json_is_null(kwargs) || !strcmp(list, "*"))
		return 0;
	if (!json_is_object(kwargs))
		return lf_fail("%s: lr_scheduler_kwargs is not a mapping", name);
	const char *key;
	const json_t *v;
	json_object_foreach((json_t *)kwargs, key, v) {
		if (!takes(list, key))
			return lf_fail("%s: lr_scheduler_kwargs '%s' is not a parameter of this schedule (%s)", name, key,
				       *list ? list : "it takes none");
		int rc = !strcmp(key, "num_cycles")	    ? kw_number(name, key, v, &s->num_cycles)
			 : !strcmp(key, "lr_end")	    ? kw_number(name, key, v, &s->lr_end)
			 : !strcmp(key, "power")	    ? kw_number(name, key, v, &s->power)
			 : !strcmp(key, "timescale")	    ? kw_count(name, key, v, &s->timescale)
			 : !strcmp(key, "min_lr")	    ? kw_number(name, key, v, &s->min_lr)
			 : !strcmp(key, "min_lr_rate")	    ? kw_number(name, key, v, &s->min_lr_rate)
			 : !strcmp(key, "warmup_lr_rate")   ? kw_number(name, key, v, &s->warmup_lr_rate)
			 : !strcmp(key, "num_decay_steps")  ? kw_count(name, key, v, &s->num_decay_steps)
			 : !strcmp(key, "num_stable_steps") ? kw_count(name, key, v, &s->num_stable_steps)
			 : !strcmp(key, "warmup_type")	    ? kw_shape(name, key, v, &s->warmup_type)
			 : !strcmp(key, "decay_type")	    ? kw_shape(name, key, v, &s->decay_type)
							    : kw_number(name, key, v, &s->min_lr_ratio);
		if (rc < 0)
			return -1;
	}
	return 0;
}

static double warmup_lambda(long step, long warmup)
{
	return (double)step / (double)(warmup > 1 ? warmup : 1);
}

/* (step - warmup) / max(1, total - warmup) */
static double progress(const struct lf_lr_sched *s, long step)
{
	long span = s->total_steps - s->warmup_steps;
	return (double)(step - s->warmup_steps) / (double)(span > 1 ? span : 1);
}

static double cosine(double num_cycles, double progress)
{
	return 0.5 * (1.0 + cos(M_PI * num_cycles * 2.0 * progress));
}

static double min_lr_rate(const struct lf_lr_sched *s)
{
	return isnan(s->min_lr_rate) ? s->min_lr / s->base_lr : s->min_lr_rate;
}

static double polynomial(const struct lf_lr_sched *s, long step)
{
	double lr_init = s->base_lr;
	long decay_steps = s->total_steps - s->warmup_steps;
	if (step > s->total_steps || decay_steps <= 0)
		return s->lr_end / lr_init;
	double pct_remaining = 1.0 - (double)(step - s->warmup_steps) / (double)decay_steps;
	return ((lr_init - s->lr_end) * pow(pct_remaining, s->power) + s->lr_end) / lr_init;
}

/* cosine_warmup_with_min_lr computes in floats from the start, and its warmup
 * reaches 1/warmup at step 0 (or starts at warmup_lr_rate) */
static double cosine_warmup_with_min_lr(const struct lf_lr_sched *s, long step)
{
	double cur = (double)step, warmup = (double)s->warmup_steps, total = (double)s->total_steps;
	if (cur < warmup) {
		if (isnan(s->warmup_lr_rate))
			return (cur + 1.0) / fmax(1.0, warmup);
		double w = s->warmup_lr_rate;
		return w + (1.0 - w) * cur / fmax(1.0, warmup - 1.0);
	}
	double prog = (cur - warmup + 1.0) / fmax(1.0, total - warmup);
	double rate = min_lr_rate(s);
	double factor = cosine(s->num_cycles, prog) * (1.0 - rate) + rate;
	return factor > 0 ? factor : 0.0;
}

static double wsd_shape(enum lf_wsd_shape shape, double progress, double num_cycles, int warming)
{
	switch (shape) {
	case LF_WSD_COSINE:
		return warming ? 0.5 * (1.0 - cos(M_PI * progress)) : cosine(num_cycles, progress);
	case LF_WSD_1_SQRT:
		return warming ? 1.0 - sqrt(1.0 - progress) : 1.0 - sqrt(progress);
	default:
		return warming ? progress : 1.0 - progress;
	}
}

static double warmup_stable_decay(const struct lf_lr_sched *s, long step)
{
	long warmup = s->warmup_steps, decay = s->num_decay_steps;
	long stable = s->num_stable_steps >= 0 ? s->num_stable_steps : s->total_steps - warmup - decay;
	double factor;
	if (step < warmup)
		factor = wsd_shape(s->warmup_type, warmup_lambda(step, warmup), s->num_cycles, 1);
	else if (step < warmup + stable)
		return 1.0;
	else if (step < warmup + stable + decay)
		factor = wsd_shape(s->decay_type, warmup_lambda(step - warmup - stable, decay), s->num_cycles, 0);
	else
		return s->min_lr_ratio;
	factor = factor * (1.0 - s->min_lr_ratio) + s->min_lr_ratio;
	return factor > 0.0 ? factor : 0.0;
}

double lf_lr_lambda(const struct lf_lr_sched *s, long step)
{
	long warmup = s->warmup_steps;
	switch (s->type) {
	case LF_LR_CONSTANT:
		return 1.0;
	case LF_LR_COSINE_WARMUP_WITH_MIN_LR:
		return cosine_warmup_with_min_lr(s, step);
	case LF_LR_WARMUP_STABLE_DECAY:
		return warmup_stable_decay(s, step);
	default:
		break;
	}
	if (step < warmup)
		return warmup_lambda(step, warmup);
	switch (s->type) {
	case LF_LR_LINEAR: {
		long span = s->total_steps - warmup;
		double f = (double)(s->total_steps - step) / (double)(span > 1 ? span : 1);
		return f > 0.0 ? f : 0.0;
	}
	case LF_LR_COSINE:
	case LF_LR_COSINE_WITH_MIN_LR: {
		double rate = s->type == LF_LR_COSINE ? 0.0 : min_lr_rate(s);
		double f = cosine(s->num_cycles, progress(s, step)) * (1.0 - rate) + rate;
		return f > 0.0 ? f : 0.0;
	}
	case LF_LR_COSINE_WITH_RESTARTS: {
		double prog = progress(s, step);
		if (prog >= 1.0)
			return 0.0;
		double f = 0.5 * (1.0 + cos(M_PI * fmod(s->num_cycles * prog, 1.0)));
		return f > 0.0 ? f : 0.0;
	}
	case LF_LR_POLYNOMIAL:
		return polynomial(s, step);
	case LF_LR_CONSTANT_WITH_WARMUP:
		return 1.0;
	case LF_LR_INVERSE_SQRT: {
		long timescale = s->timescale > 0 ? s->timescale : warmup > 0 ? warmup : 10000;
		long shift = timescale - warmup;
		return 1.0 / sqrt((double)(step + shift) / (double)timescale);
	}
	default:
		return 1.0;
	}
}

double lf_lr_at(const struct lf_lr_sched *s, long step)
{
	return s->base_lr * lf_lr_lambda(s, step);
}

long lf_warmup_steps(double warmup_steps, double warmup_ratio, long total_steps)
{
	double w = isnan(warmup_ratio) ? warmup_steps : warmup_ratio;
	if (!(w >= 0))
		return lf_fail("warmup_steps must not be negative (%g)", w);
	if (w >= 1)
		return (long)w;
	return (long)ceil((double)total_steps * w);
}

/* ---------------------------------------------------------- weight decay */

int lf_param_decays(const char *name)
{
	size_t n = strlen(name);
	char *lower = lf_malloc(n + 1);
	for (size_t i = 0; i <= n; i++)
		lower[i] = (char)tolower((unsigned char)name[i]);
	int decays = !strstr(lower, "bias") && !strstr(lower, "layernorm") && !strstr(lower, "rmsnorm");
	/* components: "norm" itself, or one ending in "_norm" */
	for (const char *c = lower; decays && *c;) {
		const char *end = strchr(c, '.');
		size_t len = end ? (size_t)(end - c) : strlen(c);
		if ((len == 4 && !memcmp(c, "norm", 4)) || (len >= 5 && !memcmp(c + len - 5, "_norm", 5)))
			decays = 0;
		c += len + (end != NULL);
	}
	free(lower);
	return decays;
}

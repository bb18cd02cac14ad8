/*
 * sample.c — next-token choice and generation settings (see sample.h).
 * The filters follow transformers' logits processors: repetition penalty
 * (a seen token's logit divided by the penalty when positive, multiplied
 * when negative), temperature, top-k (ties at the k-th value kept), top-p
 * (the smallest set of most likely tokens whose probability reaches p, at
 * least one), then a draw from the softmax.  The arithmetic is
 * kernels/cpu/sample.c's (lf_cpu_sample_f32, the CUDA twin's reference).
 */
#include "sample.h"
#include "error.h"

#include "cpu/sample.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void lf_gen_params_add_stop(struct lf_gen_params *p, int32_t id)
{
	if (id < 0 || lf_gen_params_is_stop(p, id) || p->nstop == (int)(sizeof p->stop_ids / sizeof p->stop_ids[0]))
		return;
	p->stop_ids[p->nstop++] = id;
}

bool lf_gen_params_is_stop(const struct lf_gen_params *p, int32_t id)
{
	for (int i = 0; i < p->nstop; i++)
		if (p->stop_ids[i] == id)
			return true;
	return false;
}

static void add_ids(struct lf_gen_params *p, const json_t *v)
{
	if (json_is_integer(v))
		lf_gen_params_add_stop(p, (int32_t)json_integer_value(v));
	for (size_t i = 0; json_is_array(v) && i < json_array_size(v); i++)
		if (json_is_integer(json_array_get(v, i)))
			lf_gen_params_add_stop(p, (int32_t)json_integer_value(json_array_get(v, i)));
}

int lf_gen_params_load(struct lf_gen_params *p, const char *model_dir)
{
	memset(p, 0, sizeof *p);
	p->do_sample = true;
	p->temperature = 0.95;
	p->top_p = 0.7;
	p->top_k = 50;
	p->repetition_penalty = 1.0;
	p->max_new_tokens = 1024;
	char path[4096];
	snprintf(path, sizeof path, "%s/config.json", model_dir);
	json_t *cfg = json_load_file(path, 0, NULL);
	if (cfg)
		add_ids(p, json_object_get(cfg, "eos_token_id"));
	json_decref(cfg);
	snprintf(path, sizeof path, "%s/generation_config.json", model_dir);
	json_error_t err;
	json_t *g = json_load_file(path, 0, &err);
	if (!g)
		return 0; /* absent (or unreadable): the defaults */
	if (!json_is_object(g)) {
		json_decref(g);
		return lf_fail("%s: not a JSON object", path);
	}
	const json_t *v;
	if ((v = json_object_get(g, "do_sample")) && json_is_boolean(v))
		p->do_sample = json_is_true(v);
	if ((v = json_object_get(g, "temperature")) && json_is_number(v))
		p->temperature = json_number_value(v);
	if ((v = json_object_get(g, "top_p")) && json_is_number(v))
		p->top_p = json_number_value(v);
	if ((v = json_object_get(g, "top_k")) && json_is_integer(v))
		p->top_k = (int)json_integer_value(v);
	if ((v = json_object_get(g, "repetition_penalty")) && json_is_number(v))
		p->repetition_penalty = json_number_value(v);
	if ((v = json_object_get(g, "max_new_tokens")) && json_is_integer(v))
		p->max_new_tokens = (int)json_integer_value(v);
	add_ids(p, json_object_get(g, "eos_token_id"));
	json_decref(g);
	return 0;
}

int lf_gen_params_override(struct lf_gen_params *p, const struct lf_gen_options *o)
{
	if (o->do_sample_given)
		p->do_sample = o->do_sample;
	if (o->temperature >= 0)
		p->temperature = o->temperature;
	if (o->top_p >= 0)
		p->top_p = o->top_p;
	if (o->top_k >= 0)
		p->top_k = (int)o->top_k;
	if (o->repetition_penalty >= 0)
		p->repetition_penalty = o->repetition_penalty;
	if (o->max_new_tokens >= 0)
		p->max_new_tokens = o->max_new_tokens > INT32_MAX / 2 ? INT32_MAX / 2 : (int)o->max_new_tokens;
	if (p->top_p <= 0 || p->top_p > 1 || p->repetition_penalty <= 0)
		return lf_fail("top_p must be in (0, 1] and repetition_penalty positive");
	return 0;
}

int32_t lf_sample_next(float *logits, int V, const struct lf_gen_params *p, const int32_t *history, size_t nhistory,
		       struct lf_np_rng *rng)
{
	/* the arithmetic is kernels/cpu/sample.c's (the CUDA twin's reference);
	   the one uniform draw is taken only when sampling, as before */
	const struct lf_cpu_sample_params cp = { p->do_sample, p->temperature, p->top_p, p->repetition_penalty,
						 p->top_k };
	double u = lf_cpu_sample_draws(&cp) ? lf_np_random(rng) : 0.0;
	int32_t pick = lf_cpu_sample_f32(logits, V, &cp, history, nhistory, u);
	if (pick < 0)
		lf_die("out of memory (allocating %zu bytes)", (size_t)V * 12);
	return pick;
}

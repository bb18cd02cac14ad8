/*
 * sample.h — choosing the next token from a model's logits as transformers'
 * generate does: the repetition penalty over the tokens so far, then greedy
 * argmax, or temperature, top-k and top-p (nucleus) filtering and a draw,
 * in that order; and the generation settings with their defaults (the
 * model's generation_config.json, else LLaMA-Factory's).
 */
#ifndef LF_SAMPLE_H
#define LF_SAMPLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nprandom.h"

struct lf_gen_params {
	bool do_sample;
	double temperature, top_p, repetition_penalty;
	int top_k;           /* 0: off */
	int max_new_tokens;
	int32_t stop_ids[16]; /* the model's eos ids and the template's stop words */
	int nstop;
};

/* LLaMA-Factory's generating defaults (do_sample, temperature 0.95, top_p
 * 0.7, top_k 50, repetition_penalty 1.0, max_new_tokens 1024), overridden
 * by DIR/generation_config.json's keys where it has them (its eos ids join
 * the stop ids).  -1 with lf_fail on a malformed file. */
int lf_gen_params_load(struct lf_gen_params *p, const char *model_dir);
bool lf_gen_params_is_stop(const struct lf_gen_params *p, int32_t id);

/* The settings a program's options give (lf-generate, lf-chat): negative
 * numbers and do_sample_given false mean "not given". */
struct lf_gen_options {
	bool do_sample, do_sample_given;
	double temperature, top_p, repetition_penalty;
	long long top_k, max_new_tokens;
};
#define LF_GEN_OPTIONS_UNSET { false, false, -1, -1, -1, -1, -1 }
/* Apply the given ones over p and check the result (top_p in (0, 1],
 * repetition_penalty positive).  -1 with lf_fail. */
int lf_gen_params_override(struct lf_gen_params *p, const struct lf_gen_options *o);
void lf_gen_params_add_stop(struct lf_gen_params *p, int32_t id);

/* The next token.  logits (V values) are modified in place; history: the
 * ids so far (prompt and generated), for the repetition penalty. */
int32_t lf_sample_next(float *logits, int V, const struct lf_gen_params *p, const int32_t *history, size_t nhistory,
		       struct lf_np_rng *rng);

#endif

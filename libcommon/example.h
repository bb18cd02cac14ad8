/*
 * example.h — LLaMA-Factory's preprocessing of one token record, before any
 * packing: the settings a token stream's header carries, the truncation
 * rule (infer_seqlen), and the (input_ids, labels) of a supervised or a
 * pre-training example.  lf-pack builds its shards from these; lf-eval
 * evaluates a token stream with them.
 */
#ifndef LF_EXAMPLE_H
#define LF_EXAMPLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "record.h"

/* A growable array of token ids. */
struct lf_ivec {
	int32_t *v;
	size_t n, cap;
};

void lf_ivec_reserve(struct lf_ivec *a, size_t n);
void lf_ivec_push(struct lf_ivec *a, int32_t x);
void lf_ivec_fill(struct lf_ivec *a, int32_t x, size_t k);
/* The first k ids of ids. */
void lf_ivec_ids(struct lf_ivec *a, struct lf_ids ids, size_t k);
void lf_ivec_cat(struct lf_ivec *a, const int32_t *v, size_t k);
void lf_ivec_free(struct lf_ivec *a);

/* What preprocessing needs from a token stream's header (and the options
 * that may restate its settings). */
struct lf_example_settings {
	enum lf_rec_type type;
	size_t cutoff; /* LLaMA-Factory's cutoff_len (lf-pack takes 1 off for explicit packing) */
	bool train_on_prompt, mask_history, efficient_eos, add_bos;
	int32_t bos, eos, pad; /* bos -1 when the tokenizer has none */
	uint64_t vocab;
};

/* Read the settings of a token stream's header.  train_on_prompt and
 * mask_history come from the header unless an option restates them (a
 * different value is refused, see lf_header_bool_setting); either option
 * may be NULL.  cutoff is left alone.  -1 with lf_fail. */
struct lf_option;
int lf_example_settings_read(const msgpack_object *header, const struct lf_option *train_on_prompt,
			     const struct lf_option *mask_history, struct lf_example_settings *s);

/* Ids of a record outside the vocabulary (they would index past the
 * embeddings): -1 with lf_fail naming the field. */
int lf_example_check_ids(const struct lf_token_record *r, uint64_t vocab);

/* How much of a source and a target fit in cutoff tokens. */
void lf_infer_seqlen(size_t source, size_t target, size_t cutoff, size_t *new_source, size_t *new_target);

/* The supervised example of an sft record: the turns truncated to cutoff,
 * prompts labelled -100 (or themselves with train_on_prompt; eos first
 * with efficient_eos), earlier answers -100 with mask_history.  ids and
 * labels are overwritten. */
void lf_example_supervised(const struct lf_token_record *r, const struct lf_example_settings *s, struct lf_ivec *ids,
			   struct lf_ivec *labels);

/* One pre-training document on its own (no packing): bos first where the
 * tokenizer adds one, cut to cutoff, pad ids labelled -100. */
void lf_example_document(const struct lf_token_record *r, const struct lf_example_settings *s, struct lf_ivec *ids,
			 struct lf_ivec *labels);

#endif

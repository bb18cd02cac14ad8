/*
 * example.c — one token record to one training example, as LLaMA-Factory's
 * preprocessing does before packing (see example.h): the header settings,
 * infer_seqlen, supervised and pre-training examples.
 */
#include "example.h"

#include "error.h"
#include "mp.h"
#include "stream.h"
#include "shard.h"

#include <stdlib.h>
#include <string.h>

/* ---- id arrays ---- */

void lf_ivec_reserve(struct lf_ivec *a, size_t n)
{
	if (n > a->cap) {
		a->cap = n > 2 * a->cap ? n : 2 * a->cap;
		a->v = lf_realloc(a->v, a->cap * sizeof *a->v);
	}
}

void lf_ivec_push(struct lf_ivec *a, int32_t x)
{
	lf_ivec_reserve(a, a->n + 1);
	a->v[a->n++] = x;
}

void lf_ivec_fill(struct lf_ivec *a, int32_t x, size_t k)
{
	lf_ivec_reserve(a, a->n + k);
	for (size_t i = 0; i < k; i++)
		a->v[a->n++] = x;
}

void lf_ivec_ids(struct lf_ivec *a, struct lf_ids ids, size_t k)
{
	lf_ivec_reserve(a, a->n + k);
	for (size_t i = 0; i < k; i++)
		a->v[a->n++] = lf_ids_at(ids, i);
}

void lf_ivec_cat(struct lf_ivec *a, const int32_t *v, size_t k)
{
	lf_ivec_reserve(a, a->n + k);
	memcpy(a->v + a->n, v, k * sizeof *v);
	a->n += k;
}

void lf_ivec_free(struct lf_ivec *a)
{
	free(a->v);
	a->v = NULL;
	a->n = a->cap = 0;
}

/* ---- the header ---- */

int lf_example_settings_read(const msgpack_object *h, const struct lf_option *train_on_prompt,
			     const struct lf_option *mask_history, struct lf_example_settings *s)
{
	size_t kn;
	const char *kind = lf_header_kind(h, &kn);
	if (!kind || !(kn == 6 && !memcmp(kind, "tokens", 6)))
		return lf_fail("a '%.*s' stream, where token streams (from lf-tokenize) are expected", kind ? (int)kn : 7,
			       kind ? kind : "unknown");
	const char *type;
	size_t tn;
	if (lf_mp_get_str(h, "type", &type, &tn, true) < 0 || lf_rec_type_parse(type, tn) < 0)
		return lf_fail("header: no known record type");
	s->type = (enum lf_rec_type)lf_rec_type_parse(type, tn);
	if (lf_header_bool_setting(h, "train_on_prompt", train_on_prompt, &s->train_on_prompt) < 0 ||
	    lf_header_bool_setting(h, "mask_history", mask_history, &s->mask_history) < 0)
		return -1;
	const msgpack_object *tpl = lf_mp_get(h, "template");
	if (lf_mp_get_bool(tpl, "efficient_eos", &s->efficient_eos, false) < 0)
		return lf_fail_prefix("header template");
	const msgpack_object *tok = lf_mp_get(h, "tokenizer");
	if (!tok || tok->type != MSGPACK_OBJECT_MAP)
		return lf_fail("header: no tokenizer map (not written by lf-tokenize?)");
	const char *what[3] = { "bos_id", "eos_id", "pad_id" };
	int32_t *dst[3] = { &s->bos, &s->eos, &s->pad };
	for (int i = 0; i < 3; i++) {
		const msgpack_object *id = lf_mp_get(tok, what[i]);
		*dst[i] = -1;
		if (!id || id->type == MSGPACK_OBJECT_NIL)
			continue;
		if (id->type != MSGPACK_OBJECT_POSITIVE_INTEGER || id->via.u64 > INT32_MAX)
			return lf_fail("header: tokenizer %s is not a token id", what[i]);
		*dst[i] = (int32_t)id->via.u64;
	}
	if (s->eos < 0 || s->pad < 0)
		return lf_fail("header: the tokenizer map has no eos_id or pad_id");
	if (lf_mp_get_bool(tok, "add_bos_token", &s->add_bos, false) < 0 ||
	    lf_mp_get_uint(tok, "vocab_size", &s->vocab, true) < 0)
		return lf_fail_prefix("header tokenizer");
	return 0;
}

static int check_field(struct lf_ids ids, const char *field, uint64_t vocab)
{
	for (size_t i = 0; i < ids.n; i++)
		if ((uint64_t)(uint32_t)lf_ids_at(ids, i) >= vocab)
			return lf_fail("%s: token id %d is outside the vocabulary (%llu ids)", field,
				       (int)lf_ids_at(ids, i), (unsigned long long)vocab);
	return 0;
}

int lf_example_check_ids(const struct lf_token_record *r, uint64_t vocab)
{
	for (size_t k = 0; k < r->nturns; k++)
		if (check_field(r->turns[k].source, "source_ids", vocab) < 0 ||
		    check_field(r->turns[k].target, "target_ids", vocab) < 0)
			return lf_fail_prefix("turn %zu", k);
	if (r->prompt_thought > r->prompt.n || r->response_thought > r->response.n)
		return lf_fail("prompt_thought or response_thought: longer than the ids they count");
	if (check_field(r->prompt, "prompt_ids", vocab) < 0 || check_field(r->response, "response_ids", vocab) < 0 ||
	    check_field(r->chosen, "chosen_ids", vocab) < 0 || check_field(r->rejected, "rejected_ids", vocab) < 0 ||
	    check_field(r->text, "ids", vocab) < 0)
		return -1;
	return 0;
}

/* ---- LLaMA-Factory's truncation ---- */

void lf_infer_seqlen(size_t source, size_t target, size_t cutoff, size_t *new_source, size_t *new_target)
{
	size_t max_target;
	if (target * 2 < cutoff)
		max_target = cutoff;
	else if (source * 2 < cutoff)
		max_target = cutoff - source;
	else /* int(cutoff * (target / (source + target))), in doubles as Python */
		max_target = (size_t)((double)cutoff * ((double)target / (double)(source + target)));
	*new_target = max_target < target ? max_target : target;
	size_t max_source = cutoff > *new_target ? cutoff - *new_target : 0;
	*new_source = max_source < source ? max_source : source;
}

/* ---- examples ---- */

void lf_example_supervised(const struct lf_token_record *r, const struct lf_example_settings *s, struct lf_ivec *ids,
			   struct lf_ivec *labels)
{
	ids->n = labels->n = 0;
	size_t total = s->efficient_eos ? 1 : 0;
	size_t nt = r->nturns;
	/* with mask_history the latest turn is budgeted first and the kept
	 * turns are put back in order at the end */
	size_t *keep_s = lf_calloc(nt + 1, sizeof *keep_s), *keep_t = lf_calloc(nt + 1, sizeof *keep_t);
	size_t kept = 0;
	for (size_t k = 0; k < nt; k++) {
		if (total >= s->cutoff)
			break;
		const struct lf_token_turn *turn = &r->turns[s->mask_history ? nt - 1 - k : k];
		lf_infer_seqlen(turn->source.n, turn->target.n, s->cutoff - total, &keep_s[k], &keep_t[k]);
		total += keep_s[k] + keep_t[k];
		kept++;
	}
	for (size_t i = 0; i < kept; i++) {
		size_t k = s->mask_history ? kept - 1 - i : i; /* processing index (turn_idx) */
		const struct lf_token_turn *turn = &r->turns[s->mask_history ? nt - 1 - k : k];
		size_t sl = keep_s[k], tl = keep_t[k];
		lf_ivec_ids(ids, turn->source, sl);
		if (s->train_on_prompt) {
			lf_ivec_ids(labels, turn->source, sl);
		} else if (s->efficient_eos && k != 0 && sl > 0) {
			lf_ivec_push(labels, s->eos);
			lf_ivec_fill(labels, LF_IGNORE_INDEX, sl - 1);
		} else {
			lf_ivec_fill(labels, LF_IGNORE_INDEX, sl);
		}
		lf_ivec_ids(ids, turn->target, tl);
		if (s->mask_history && k != 0)
			lf_ivec_fill(labels, LF_IGNORE_INDEX, tl);
		else
			lf_ivec_ids(labels, turn->target, tl);
	}
	if (s->efficient_eos) {
		lf_ivec_push(ids, s->eos);
		lf_ivec_push(labels, s->eos);
	}
	free(keep_s);
	free(keep_t);
}

void lf_example_document(const struct lf_token_record *r, const struct lf_example_settings *s, struct lf_ivec *ids,
			 struct lf_ivec *labels)
{
	ids->n = labels->n = 0;
	if (s->add_bos && s->bos >= 0)
		lf_ivec_push(ids, s->bos);
	lf_ivec_ids(ids, r->text, r->text.n);
	if (ids->n > s->cutoff)
		ids->n = s->cutoff;
	for (size_t t = 0; t < ids->n; t++)
		lf_ivec_push(labels, ids->v[t] == s->pad ? LF_IGNORE_INDEX : ids->v[t]);
}

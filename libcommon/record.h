/*
 * record.h — the records an lf stream carries, in memory and in msgpack.
 *
 * Text records (kind "text", written by lf-template) mirror how LLaMA-Factory
 * encodes a conversation: template slots after substitution ("elements"),
 * grouped as that record type needs.  Token records (kind "tokens", written by
 * lf-tokenize) keep the same shape with token ids in place of elements.
 * man 5 lf-stream is the normative description; this is its C form.
 *
 * Decoded records point into the reader's buffer (valid until the next
 * record); built records point into the caller's arena.
 */
#ifndef LF_RECORD_H
#define LF_RECORD_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"

enum lf_rec_type {
	LF_REC_SFT,      /* turns of (source, target) */
	LF_REC_PAIRWISE, /* prompt, chosen, rejected */
	LF_REC_KTO,      /* prompt, response, desirable */
	LF_REC_PT,       /* text */
	LF_REC_PROMPT,   /* prompt, response (reference answer; may be empty) */
	LF_REC_NTYPES
};

const char *lf_rec_type_name(enum lf_rec_type t);
/* -1 when the name is unknown. */
int lf_rec_type_parse(const char *s, size_t n);

enum lf_elem_kind {
	LF_ELEM_TEXT,  /* a string, encoded by the tokenizer in one call */
	LF_ELEM_BOS,   /* the tokenizer's bos token (left out where it has none) */
	LF_ELEM_EOS,   /* the tokenizer's eos token (stop_words[0] with replace_eos) */
	LF_ELEM_TOKEN, /* one named special token, e.g. "<|user|>" */
};

/* A byte range [start, end) of an element's text that came from user data. */
struct lf_range {
	uint32_t start, end;
};

struct lf_elem {
	enum lf_elem_kind kind;
	const char *text; /* TEXT: the string; TOKEN: the token */
	size_t len;
	const struct lf_range *user; /* TEXT only: sorted, disjoint */
	size_t nuser;
	bool thought; /* TEXT only: an empty thought a reasoning template inserted */
};

struct lf_elems {
	struct lf_elem *v;
	size_t n, cap;
};

struct lf_turn {
	struct lf_elems source, target;
};

struct lf_text_record {
	enum lf_rec_type type;
	uint32_t dataset;     /* index into the header's datasets */
	uint64_t row;         /* row in the dataset, in LLaMA-Factory's order */
	uint64_t source_row;  /* row in the file (differs from row after num_samples) */
	struct lf_turn *turns; /* SFT */
	size_t nturns, cap_turns;
	struct lf_elems prompt;   /* PAIRWISE, KTO, PROMPT */
	struct lf_elems response; /* KTO, PROMPT */
	struct lf_elems chosen, rejected; /* PAIRWISE */
	struct lf_elems text;     /* PT */
	bool desirable;           /* KTO */
};

/* Token ids: little-endian int32 as stored in the msgpack bin. */
struct lf_ids {
	const uint8_t *raw;
	size_t n;
};

static inline int32_t lf_ids_at(struct lf_ids ids, size_t i)
{
	const uint8_t *p = ids.raw + 4 * i;
	return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
}

struct lf_token_turn {
	struct lf_ids source, target;
};

struct lf_token_record {
	enum lf_rec_type type;
	uint32_t dataset;
	uint64_t row, source_row;
	struct lf_token_turn *turns; /* SFT */
	size_t nturns;
	struct lf_ids prompt, response, chosen, rejected, text;
	bool desirable;
	/* KTO: how many trailing prompt ids / leading response ids are an
	 * inserted empty thought (so lf-pack can rebuild the KL prompt). */
	uint32_t prompt_thought, response_thought;
};

/* Building text records. */
void lf_elems_push(struct lf_arena *a, struct lf_elems *e, struct lf_elem el);
void lf_elems_append(struct lf_arena *a, struct lf_elems *dst, const struct lf_elems *src);
struct lf_turn *lf_text_record_add_turn(struct lf_arena *a, struct lf_text_record *r);
void lf_text_record_clear(struct lf_text_record *r);

/* msgpack form. */
void lf_text_record_pack(msgpack_packer *pk, const struct lf_text_record *r);
/* Returns -1 with lf_fail naming the field. */
int lf_text_record_unpack(const msgpack_object *o, enum lf_rec_type type, struct lf_arena *a,
			  struct lf_text_record *r);

void lf_token_record_pack(msgpack_packer *pk, const struct lf_token_record *r);
int lf_token_record_unpack(const msgpack_object *o, enum lf_rec_type type, struct lf_arena *a,
			   struct lf_token_record *r);
void lf_pk_ids(msgpack_packer *pk, const int32_t *ids, size_t n);

#endif

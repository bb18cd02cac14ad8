/*
 * record.c — packing and unpacking text and token records (see record.h).
 */
#include "record.h"
#include "error.h"
#include "mp.h"

#include <string.h>

static const char *type_names[LF_REC_NTYPES] = { "sft", "pairwise", "kto", "pt", "prompt" };
/* Fields each record type adds to dataset and row (both kinds). */
static const size_t type_fields[LF_REC_NTYPES] = { 1, 3, 3, 1, 2 };

const char *lf_rec_type_name(enum lf_rec_type t)
{
	return (unsigned)t < LF_REC_NTYPES ? type_names[t] : "?";
}

int lf_rec_type_parse(const char *s, size_t n)
{
	for (int i = 0; i < LF_REC_NTYPES; i++)
		if (strlen(type_names[i]) == n && memcmp(type_names[i], s, n) == 0)
			return i;
	return -1;
}

void lf_elems_push(struct lf_arena *a, struct lf_elems *e, struct lf_elem el)
{
	if (e->n == e->cap) {
		size_t cap = e->cap ? 2 * e->cap : 8;
		struct lf_elem *v = lf_arena_alloc(a, cap * sizeof *v);
		if (e->n)
			memcpy(v, e->v, e->n * sizeof *v);
		e->v = v;
		e->cap = cap;
	}
	e->v[e->n++] = el;
}

void lf_elems_append(struct lf_arena *a, struct lf_elems *dst, const struct lf_elems *src)
{
	for (size_t i = 0; i < src->n; i++)
		lf_elems_push(a, dst, src->v[i]);
}

struct lf_turn *lf_text_record_add_turn(struct lf_arena *a, struct lf_text_record *r)
{
	if (r->nturns == r->cap_turns) {
		size_t cap = r->cap_turns ? 2 * r->cap_turns : 4;
		struct lf_turn *t = lf_arena_alloc(a, cap * sizeof *t);
		if (r->nturns)
			memcpy(t, r->turns, r->nturns * sizeof *t);
		r->turns = t;
		r->cap_turns = cap;
	}
	struct lf_turn *t = &r->turns[r->nturns++];
	memset(t, 0, sizeof *t);
	return t;
}

void lf_text_record_clear(struct lf_text_record *r)
{
	enum lf_rec_type type = r->type;
	memset(r, 0, sizeof *r);
	r->type = type;
}

/* ---- text records ---- */

static void pack_elems(msgpack_packer *pk, const struct lf_elems *e)
{
	msgpack_pack_array(pk, e->n);
	for (size_t i = 0; i < e->n; i++) {
		const struct lf_elem *el = &e->v[i];
		switch (el->kind) {
		case LF_ELEM_TEXT:
			msgpack_pack_map(pk, 1 + (el->nuser ? 1 : 0) + (el->thought ? 1 : 0));
			lf_pk_str(pk, "text");
			lf_pk_strn(pk, el->text, el->len);
			if (el->nuser) {
				lf_pk_str(pk, "user");
				msgpack_pack_array(pk, 2 * el->nuser);
				for (size_t j = 0; j < el->nuser; j++) {
					msgpack_pack_uint32(pk, el->user[j].start);
					msgpack_pack_uint32(pk, el->user[j].end);
				}
			}
			if (el->thought)
				lf_pk_kv_bool(pk, "thought", true);
			break;
		case LF_ELEM_BOS:
		case LF_ELEM_EOS:
			msgpack_pack_map(pk, 1);
			lf_pk_kv_str(pk, "special", el->kind == LF_ELEM_BOS ? "bos" : "eos");
			break;
		case LF_ELEM_TOKEN:
			msgpack_pack_map(pk, 1);
			lf_pk_str(pk, "token");
			lf_pk_strn(pk, el->text, el->len);
			break;
		}
	}
}

static void pack_ident(msgpack_packer *pk, uint32_t dataset, uint64_t row, uint64_t source_row)
{
	lf_pk_kv_uint(pk, "dataset", dataset);
	lf_pk_kv_uint(pk, "row", row);
	if (source_row != row)
		lf_pk_kv_uint(pk, "source_row", source_row);
}

void lf_text_record_pack(msgpack_packer *pk, const struct lf_text_record *r)
{
	msgpack_pack_map(pk, 2 + (r->source_row != r->row) + type_fields[r->type]);
	pack_ident(pk, r->dataset, r->row, r->source_row);
	switch (r->type) {
	case LF_REC_SFT:
		lf_pk_str(pk, "turns");
		msgpack_pack_array(pk, r->nturns);
		for (size_t i = 0; i < r->nturns; i++) {
			msgpack_pack_map(pk, 2);
			lf_pk_str(pk, "source");
			pack_elems(pk, &r->turns[i].source);
			lf_pk_str(pk, "target");
			pack_elems(pk, &r->turns[i].target);
		}
		break;
	case LF_REC_PAIRWISE:
		lf_pk_str(pk, "prompt");
		pack_elems(pk, &r->prompt);
		lf_pk_str(pk, "chosen");
		pack_elems(pk, &r->chosen);
		lf_pk_str(pk, "rejected");
		pack_elems(pk, &r->rejected);
		break;
	case LF_REC_KTO:
		lf_pk_str(pk, "prompt");
		pack_elems(pk, &r->prompt);
		lf_pk_str(pk, "response");
		pack_elems(pk, &r->response);
		lf_pk_kv_bool(pk, "desirable", r->desirable);
		break;
	case LF_REC_PT:
		lf_pk_str(pk, "text");
		pack_elems(pk, &r->text);
		break;
	case LF_REC_PROMPT:
		lf_pk_str(pk, "prompt");
		pack_elems(pk, &r->prompt);
		lf_pk_str(pk, "response");
		pack_elems(pk, &r->response);
		break;
	default:
		break;
	}
}

static int unpack_elem(const msgpack_object *o, struct lf_arena *a, struct lf_elem *el)
{
	memset(el, 0, sizeof *el);
	if (o->type != MSGPACK_OBJECT_MAP)
		return lf_fail("element is not a map");
	const msgpack_object *v;
	if ((v = lf_mp_get(o, "text"))) {
		if (v->type != MSGPACK_OBJECT_STR)
			return lf_fail("element field 'text' is not a string");
		el->kind = LF_ELEM_TEXT;
		el->text = v->via.str.ptr;
		el->len = v->via.str.size;
		const msgpack_object *u = lf_mp_get(o, "user");
		if (u) {
			if (u->type != MSGPACK_OBJECT_ARRAY || u->via.array.size % 2)
				return lf_fail("element field 'user' is not an array of start, end pairs");
			size_t nr = u->via.array.size / 2;
			struct lf_range *rs = lf_arena_alloc(a, (nr ? nr : 1) * sizeof *rs);
			uint64_t prev_end = 0;
			for (size_t i = 0; i < nr; i++) {
				const msgpack_object *s = &u->via.array.ptr[2 * i], *e = &u->via.array.ptr[2 * i + 1];
				if (s->type != MSGPACK_OBJECT_POSITIVE_INTEGER || e->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
				    s->via.u64 < prev_end || e->via.u64 < s->via.u64 || e->via.u64 > el->len)
					return lf_fail("element field 'user' has a bad range");
				rs[i].start = (uint32_t)s->via.u64;
				rs[i].end = (uint32_t)e->via.u64;
				prev_end = e->via.u64;
			}
			el->user = rs;
			el->nuser = nr;
		}
		bool thought = false;
		if (lf_mp_get_bool(o, "thought", &thought, false) < 0)
			return lf_fail_prefix("element");
		el->thought = thought;
		return 0;
	}
	if ((v = lf_mp_get(o, "special"))) {
		if (lf_mp_str_is(v, "bos"))
			el->kind = LF_ELEM_BOS;
		else if (lf_mp_str_is(v, "eos"))
			el->kind = LF_ELEM_EOS;
		else
			return lf_fail("element field 'special' is neither \"bos\" nor \"eos\"");
		return 0;
	}
	if ((v = lf_mp_get(o, "token"))) {
		if (v->type != MSGPACK_OBJECT_STR || v->via.str.size == 0)
			return lf_fail("element field 'token' is not a non-empty string");
		el->kind = LF_ELEM_TOKEN;
		el->text = v->via.str.ptr;
		el->len = v->via.str.size;
		return 0;
	}
	return lf_fail("element has none of 'text', 'special', 'token'");
}

static int unpack_elems(const msgpack_object *rec, const char *key, struct lf_arena *a, struct lf_elems *e)
{
	const msgpack_object *o = lf_mp_get(rec, key);
	memset(e, 0, sizeof *e);
	if (!o)
		return lf_fail("missing field '%s'", key);
	if (o->type != MSGPACK_OBJECT_ARRAY)
		return lf_fail("field '%s' is not an array of elements", key);
	for (uint32_t i = 0; i < o->via.array.size; i++) {
		struct lf_elem el;
		if (unpack_elem(&o->via.array.ptr[i], a, &el) < 0)
			return lf_fail_prefix("field '%s' element %u", key, i);
		lf_elems_push(a, e, el);
	}
	return 0;
}

static int unpack_ident(const msgpack_object *o, uint32_t *dataset, uint64_t *row, uint64_t *source_row)
{
	if (o->type != MSGPACK_OBJECT_MAP)
		return lf_fail("record is not a map");
	uint64_t ds = 0;
	if (lf_mp_get_uint(o, "dataset", &ds, true) < 0 || lf_mp_get_uint(o, "row", row, true) < 0)
		return -1;
	if (ds > UINT32_MAX)
		return lf_fail("field 'dataset' is out of range");
	*dataset = (uint32_t)ds;
	*source_row = *row;
	return lf_mp_get_uint(o, "source_row", source_row, false) < 0 ? -1 : 0;
}

int lf_text_record_unpack(const msgpack_object *o, enum lf_rec_type type, struct lf_arena *a,
			  struct lf_text_record *r)
{
	memset(r, 0, sizeof *r);
	r->type = type;
	if (unpack_ident(o, &r->dataset, &r->row, &r->source_row) < 0)
		return -1;
	switch (type) {
	case LF_REC_SFT: {
		const msgpack_object *t = lf_mp_get(o, "turns");
		if (!t)
			return lf_fail("missing field 'turns'");
		if (t->type != MSGPACK_OBJECT_ARRAY)
			return lf_fail("field 'turns' is not an array");
		for (uint32_t i = 0; i < t->via.array.size; i++) {
			struct lf_turn *turn = lf_text_record_add_turn(a, r);
			const msgpack_object *m = &t->via.array.ptr[i];
			if (unpack_elems(m, "source", a, &turn->source) < 0 ||
			    unpack_elems(m, "target", a, &turn->target) < 0)
				return lf_fail_prefix("turn %u", i);
		}
		return 0;
	}
	case LF_REC_PAIRWISE:
		if (unpack_elems(o, "prompt", a, &r->prompt) < 0 || unpack_elems(o, "chosen", a, &r->chosen) < 0 ||
		    unpack_elems(o, "rejected", a, &r->rejected) < 0)
			return -1;
		return 0;
	case LF_REC_KTO:
		if (unpack_elems(o, "prompt", a, &r->prompt) < 0 || unpack_elems(o, "response", a, &r->response) < 0 ||
		    lf_mp_get_bool(o, "desirable", &r->desirable, true) < 0)
			return -1;
		return 0;
	case LF_REC_PT:
		return unpack_elems(o, "text", a, &r->text);
	case LF_REC_PROMPT:
		if (unpack_elems(o, "prompt", a, &r->prompt) < 0 || unpack_elems(o, "response", a, &r->response) < 0)
			return -1;
		return 0;
	default:
		return lf_fail("unknown record type");
	}
}

/* ---- token records ---- */

void lf_pk_ids(msgpack_packer *pk, const int32_t *ids, size_t n)
{
	msgpack_pack_bin(pk, 4 * n);
	uint8_t tmp[4096];
	size_t i = 0;
	while (i < n) {
		size_t k = 0;
		for (; i < n && k + 4 <= sizeof tmp; i++, k += 4) {
			uint32_t v = (uint32_t)ids[i];
			tmp[k] = (uint8_t)v;
			tmp[k + 1] = (uint8_t)(v >> 8);
			tmp[k + 2] = (uint8_t)(v >> 16);
			tmp[k + 3] = (uint8_t)(v >> 24);
		}
		msgpack_pack_bin_body(pk, tmp, k);
	}
}

static void pack_raw_ids(msgpack_packer *pk, const char *key, struct lf_ids ids)
{
	lf_pk_str(pk, key);
	msgpack_pack_bin(pk, 4 * ids.n);
	msgpack_pack_bin_body(pk, ids.raw, 4 * ids.n);
}

void lf_token_record_pack(msgpack_packer *pk, const struct lf_token_record *r)
{
	size_t thought = r->type == LF_REC_KTO ? (r->prompt_thought > 0) + (r->response_thought > 0) : 0;
	msgpack_pack_map(pk, 2 + (r->source_row != r->row) + type_fields[r->type] + thought);
	pack_ident(pk, r->dataset, r->row, r->source_row);
	switch (r->type) {
	case LF_REC_SFT:
		lf_pk_str(pk, "turns");
		msgpack_pack_array(pk, r->nturns);
		for (size_t i = 0; i < r->nturns; i++) {
			msgpack_pack_map(pk, 2);
			pack_raw_ids(pk, "source_ids", r->turns[i].source);
			pack_raw_ids(pk, "target_ids", r->turns[i].target);
		}
		break;
	case LF_REC_PAIRWISE:
		pack_raw_ids(pk, "prompt_ids", r->prompt);
		pack_raw_ids(pk, "chosen_ids", r->chosen);
		pack_raw_ids(pk, "rejected_ids", r->rejected);
		break;
	case LF_REC_KTO:
		pack_raw_ids(pk, "prompt_ids", r->prompt);
		pack_raw_ids(pk, "response_ids", r->response);
		lf_pk_kv_bool(pk, "desirable", r->desirable);
		if (r->prompt_thought)
			lf_pk_kv_uint(pk, "prompt_thought", r->prompt_thought);
		if (r->response_thought)
			lf_pk_kv_uint(pk, "response_thought", r->response_thought);
		break;
	case LF_REC_PT:
		pack_raw_ids(pk, "ids", r->text);
		break;
	case LF_REC_PROMPT:
		pack_raw_ids(pk, "prompt_ids", r->prompt);
		pack_raw_ids(pk, "response_ids", r->response);
		break;
	default:
		break;
	}
}

static int unpack_ids(const msgpack_object *rec, const char *key, struct lf_ids *ids)
{
	const msgpack_object *o = lf_mp_get(rec, key);
	if (!o)
		return lf_fail("missing field '%s'", key);
	if (o->type != MSGPACK_OBJECT_BIN || o->via.bin.size % 4)
		return lf_fail("field '%s' is not a bin of little-endian int32 ids", key);
	ids->raw = (const uint8_t *)o->via.bin.ptr;
	ids->n = o->via.bin.size / 4;
	return 0;
}

static int unpack_count(const msgpack_object *o, const char *key, uint32_t *v, size_t limit)
{
	uint64_t x = 0;
	if (lf_mp_get_uint(o, key, &x, false) < 0)
		return -1;
	if (x > limit)
		return lf_fail("field '%s' (%llu) exceeds the ids it counts (%zu)", key, (unsigned long long)x, limit);
	*v = (uint32_t)x;
	return 0;
}

int lf_token_record_unpack(const msgpack_object *o, enum lf_rec_type type, struct lf_arena *a,
			   struct lf_token_record *r)
{
	memset(r, 0, sizeof *r);
	r->type = type;
	if (unpack_ident(o, &r->dataset, &r->row, &r->source_row) < 0)
		return -1;
	switch (type) {
	case LF_REC_SFT: {
		const msgpack_object *t = lf_mp_get(o, "turns");
		if (!t)
			return lf_fail("missing field 'turns'");
		if (t->type != MSGPACK_OBJECT_ARRAY)
			return lf_fail("field 'turns' is not an array");
		r->nturns = t->via.array.size;
		r->turns = lf_arena_alloc(a, (r->nturns ? r->nturns : 1) * sizeof *r->turns);
		for (size_t i = 0; i < r->nturns; i++) {
			const msgpack_object *m = &t->via.array.ptr[i];
			if (unpack_ids(m, "source_ids", &r->turns[i].source) < 0 ||
			    unpack_ids(m, "target_ids", &r->turns[i].target) < 0)
				return lf_fail_prefix("turn %zu", i);
		}
		return 0;
	}
	case LF_REC_PAIRWISE:
		if (unpack_ids(o, "prompt_ids", &r->prompt) < 0 || unpack_ids(o, "chosen_ids", &r->chosen) < 0 ||
		    unpack_ids(o, "rejected_ids", &r->rejected) < 0)
			return -1;
		return 0;
	case LF_REC_KTO:
		if (unpack_ids(o, "prompt_ids", &r->prompt) < 0 || unpack_ids(o, "response_ids", &r->response) < 0 ||
		    lf_mp_get_bool(o, "desirable", &r->desirable, true) < 0 ||
		    unpack_count(o, "prompt_thought", &r->prompt_thought, r->prompt.n) < 0 ||
		    unpack_count(o, "response_thought", &r->response_thought, r->response.n) < 0)
			return -1;
		return 0;
	case LF_REC_PT:
		return unpack_ids(o, "ids", &r->text);
	case LF_REC_PROMPT:
		if (unpack_ids(o, "prompt_ids", &r->prompt) < 0 || unpack_ids(o, "response_ids", &r->response) < 0)
			return -1;
		return 0;
	default:
		return lf_fail("unknown record type");
	}
}

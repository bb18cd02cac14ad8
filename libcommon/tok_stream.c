/*
 * tok_stream.c — the "tokenizer" map of a token stream's header (man 5
 * lf-stream): lf-tokenize writes it; every tool that reads token ids checks
 * its own tokenizer against it, so ids are never read with another
 * vocabulary by mistake.
 */
#include "tok_internal.h"
#include "error.h"
#include "mp.h"

#include <stdio.h>
#include <string.h>

static void fingerprint_hex(const struct lf_tokenizer *t, const int32_t ids[3], char hex[17])
{
	snprintf(hex, 17, "%016llx", (unsigned long long)lf_tokenizer_fingerprint(t, ids, 3));
}

void lf_tokenizer_pack_header(msgpack_packer *pk, const struct lf_tokenizer *t, const char *path, const int32_t ids[3],
			      const struct lf_tok_addition *added, size_t nadded)
{
	char fp[17];
	fingerprint_hex(t, ids, fp);
	const struct lf_tok_config *cfg = lf_tokenizer_config(t);
	msgpack_pack_map(pk, 9);
	lf_pk_kv_str(pk, "fingerprint", fp);
	lf_pk_kv_str(pk, "path", path);
	lf_pk_kv_uint(pk, "vocab_size", lf_tokenizer_vocab_size(t));
	static const char *names[3] = { "bos_id", "eos_id", "pad_id" };
	for (int k = 0; k < 3; k++) {
		lf_pk_str(pk, names[k]);
		if (ids[k] >= 0)
			msgpack_pack_int32(pk, ids[k]);
		else
			msgpack_pack_nil(pk);
	}
	lf_pk_kv_bool(pk, "add_bos_token", cfg->has_add_bos_token && cfg->add_bos_token);
	lf_pk_kv_bool(pk, "split_special_tokens", t->encode_special_tokens);
	lf_pk_str(pk, "added_tokens");
	msgpack_pack_array(pk, nadded);
	for (size_t i = 0; i < nadded; i++) {
		msgpack_pack_map(pk, 3);
		lf_pk_str(pk, "content");
		lf_pk_strn(pk, added[i].content, added[i].len);
		lf_pk_str(pk, "id");
		msgpack_pack_int32(pk, added[i].id);
		lf_pk_kv_bool(pk, "special", added[i].special);
	}
}

/* Give t the tokens the stream's tokenizer had added, checking their ids. */
static int apply_additions(struct lf_tokenizer *t, const msgpack_object *map)
{
	bool split = false;
	if (lf_mp_get_bool(map, "split_special_tokens", &split, false) < 0)
		return lf_fail_prefix("header: tokenizer");
	lf_tokenizer_set_split_special(t, split);
	const msgpack_object *list = lf_mp_get(map, "added_tokens");
	if (!list || list->type == MSGPACK_OBJECT_NIL)
		return 0;
	if (list->type != MSGPACK_OBJECT_ARRAY)
		return lf_fail("header: tokenizer.added_tokens is not a list");
	for (uint32_t i = 0; i < list->via.array.size; i++) {
		const msgpack_object *a = &list->via.array.ptr[i];
		const char *s;
		size_t n;
		uint64_t id;
		bool special;
		if (lf_mp_get_str(a, "content", &s, &n, true) < 0 || lf_mp_get_uint(a, "id", &id, true) < 0 ||
		    lf_mp_get_bool(a, "special", &special, true) < 0)
			return lf_fail_prefix("header: tokenizer.added_tokens[%u]", i);
		int32_t got = lf_tokenizer_add_token(t, s, n, special);
		if (got < 0)
			return -1;
		if ((uint64_t)got != id)
			return lf_fail("header: added token '%.*s' has id %llu in the stream but %d here", (int)n, s,
				       (unsigned long long)id, got);
	}
	return 0;
}

int lf_tokenizer_check_stream(struct lf_tokenizer *t, const msgpack_object *header, int32_t ids[3])
{
	const msgpack_object *map = lf_mp_get(header, "tokenizer");
	if (!map || map->type != MSGPACK_OBJECT_MAP)
		return lf_fail("header: no 'tokenizer' map (not made by lf-tokenize?)");
	static const char *names[3] = { "bos_id", "eos_id", "pad_id" };
	for (int k = 0; k < 3; k++) {
		const msgpack_object *v = lf_mp_get(map, names[k]);
		if (!v || v->type == MSGPACK_OBJECT_NIL)
			ids[k] = -1;
		else if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 <= INT32_MAX)
			ids[k] = (int32_t)v->via.u64;
		else
			return lf_fail("header: tokenizer.%s is not a token id", names[k]);
	}
	const char *fp;
	size_t n;
	if (lf_mp_get_str(map, "fingerprint", &fp, &n, true) < 0)
		return lf_fail_prefix("header: tokenizer");
	char mine[17];
	fingerprint_hex(t, ids, mine);
	if (n != 16 || memcmp(fp, mine, 16)) {
		const char *path = "?";
		size_t pn = 1;
		lf_mp_get_str(map, "path", &path, &pn, false);
		return lf_fail("the stream was tokenized with another tokenizer (%.*s, fingerprint %.*s; this one's is %s)",
			       (int)pn, path, (int)n, fp, mine);
	}
	return apply_additions(t, map);
}

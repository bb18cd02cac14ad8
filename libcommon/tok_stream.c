/*
 * tok_stream.c — the "tokenizer" map of a token stream's header (man 5
 * lf-stream): lf-tokenize writes it; every tool that reads token ids checks
 * its own tokenizer against it, so ids are never read with another
 * vocabulary by mistake.
 */
#include "tokenizer.h"
#include "error.h"
#include "mp.h"

#include <stdio.h>
#include <string.h>

static void fingerprint_hex(const struct lf_tokenizer *t, const int32_t ids[3], char hex[17])
{
	snprintf(hex, 17, "%016llx", (unsigned long long)lf_tokenizer_fingerprint(t, ids, 3));
}

void lf_tokenizer_pack_header(msgpack_packer *pk, const struct lf_tokenizer *t, const char *path, const int32_t ids[3])
{
	char fp[17];
	fingerprint_hex(t, ids, fp);
	const struct lf_tok_config *cfg = lf_tokenizer_config(t);
	msgpack_pack_map(pk, 7);
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
}

int lf_tokenizer_check_stream(const struct lf_tokenizer *t, const msgpack_object *header, int32_t ids[3])
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
	return 0;
}

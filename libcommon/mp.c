/*
 * mp.c — msgpack helpers (see mp.h).
 */
#include "mp.h"
#include "buf.h"
#include "error.h"
#include "pyjson.h"

#include <inttypes.h>
#include <stdio.h>
#include <utf8proc.h>

#include <string.h>

static uint64_t be(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

int64_t lf_mp_span(const uint8_t *buf, size_t len, size_t max_len, size_t *bad_at, const char **why)
{
	uint64_t pending[LF_MP_MAX_DEPTH + 1]; /* objects still to read per level */
	int depth = 0;
	size_t pos = 0;
	pending[0] = 1;
	for (;;) {
		while (depth > 0 && pending[depth] == 0)
			depth--;
		if (pending[depth] == 0)
			return (int64_t)pos;
		if (pos >= len)
			return 0;
		size_t at = pos;
		uint8_t b = buf[pos++];
		uint64_t payload = 0, children = 0;
		int nlen = 0; /* bytes of length field that follow */
		int kind = 0; /* 0 scalar with payload, 1 array, 2 map, 3 ext */
		if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
			payload = 0;
		} else if (b <= 0x8f) {
			kind = 2;
			children = b & 0x0f;
		} else if (b <= 0x9f) {
			kind = 1;
			children = b & 0x0f;
		} else if (b <= 0xbf) {
			payload = b & 0x1f;
		} else {
			switch (b) {
			case 0xc4: case 0xd9: nlen = 1; break;
			case 0xc5: case 0xda: nlen = 2; break;
			case 0xc6: case 0xdb: nlen = 4; break;
			case 0xc7: nlen = 1; kind = 3; break;
			case 0xc8: nlen = 2; kind = 3; break;
			case 0xc9: nlen = 4; kind = 3; break;
			case 0xca: payload = 4; break;
			case 0xcb: payload = 8; break;
			case 0xcc: case 0xd0: payload = 1; break;
			case 0xcd: case 0xd1: payload = 2; break;
			case 0xce: case 0xd2: payload = 4; break;
			case 0xcf: case 0xd3: payload = 8; break;
			case 0xd4: payload = 2; break;
			case 0xd5: payload = 3; break;
			case 0xd6: payload = 5; break;
			case 0xd7: payload = 9; break;
			case 0xd8: payload = 17; break;
			case 0xdc: nlen = 2; kind = 1; break;
			case 0xdd: nlen = 4; kind = 1; break;
			case 0xde: nlen = 2; kind = 2; break;
			case 0xdf: nlen = 4; kind = 2; break;
			default:
				*bad_at = at;
				*why = "invalid msgpack type byte 0xc1";
				return -1;
			}
		}
		if (nlen) {
			if (pos + (size_t)nlen > len)
				return 0;
			uint64_t n = be(buf + pos, nlen);
			pos += (size_t)nlen;
			if (kind == 1 || kind == 2)
				children = n;
			else
				payload = n + (kind == 3 ? 1 : 0);
		}
		if (kind == 2)
			children *= 2;
		if (payload > max_len || children > max_len || pos + payload > max_len) {
			*bad_at = at;
			*why = "object larger than the record size limit (garbage or corrupted input)";
			return -1;
		}
		if (payload) {
			if (pos + payload > len)
				return 0;
			pos += (size_t)payload;
		}
		pending[depth]--;
		if (children) {
			if (depth == LF_MP_MAX_DEPTH) {
				*bad_at = at;
				*why = "objects nested too deeply";
				return -1;
			}
			pending[++depth] = children;
		}
	}
}

bool lf_mp_key_is(const msgpack_object *key, const char *s)
{
	size_t n = strlen(s);
	return key->type == MSGPACK_OBJECT_STR && key->via.str.size == n && memcmp(key->via.str.ptr, s, n) == 0;
}

bool lf_mp_str_is(const msgpack_object *o, const char *s)
{
	return lf_mp_key_is(o, s);
}

const msgpack_object *lf_mp_get(const msgpack_object *map, const char *key)
{
	if (!map || map->type != MSGPACK_OBJECT_MAP)
		return NULL;
	for (uint32_t i = 0; i < map->via.map.size; i++)
		if (lf_mp_key_is(&map->via.map.ptr[i].key, key))
			return &map->via.map.ptr[i].val;
	return NULL;
}

int lf_mp_get_uint(const msgpack_object *map, const char *key, uint64_t *v, bool required)
{
	const msgpack_object *o = lf_mp_get(map, key);
	if (!o)
		return required ? lf_fail("missing field '%s'", key) : 0;
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return lf_fail("field '%s' is not a non-negative integer", key);
	*v = o->via.u64;
	return 1;
}

int lf_mp_get_bool(const msgpack_object *map, const char *key, bool *v, bool required)
{
	const msgpack_object *o = lf_mp_get(map, key);
	if (!o || o->type == MSGPACK_OBJECT_NIL)
		return required ? lf_fail("missing field '%s'", key) : 0;
	if (o->type != MSGPACK_OBJECT_BOOLEAN)
		return lf_fail("field '%s' is not a boolean", key);
	*v = o->via.boolean;
	return 1;
}

int lf_mp_get_str(const msgpack_object *map, const char *key, const char **s, size_t *n, bool required)
{
	const msgpack_object *o = lf_mp_get(map, key);
	if (!o || o->type == MSGPACK_OBJECT_NIL)
		return required ? lf_fail("missing field '%s'", key) : 0;
	if (o->type != MSGPACK_OBJECT_STR)
		return lf_fail("field '%s' is not a string", key);
	*s = o->via.str.ptr;
	if (n)
		*n = o->via.str.size;
	return 1;
}

void lf_pk_strn(msgpack_packer *pk, const char *s, size_t n)
{
	msgpack_pack_str(pk, n);
	msgpack_pack_str_body(pk, s, n);
}

void lf_pk_str(msgpack_packer *pk, const char *s)
{
	lf_pk_strn(pk, s, strlen(s));
}

void lf_pk_bool(msgpack_packer *pk, bool v)
{
	if (v)
		msgpack_pack_true(pk);
	else
		msgpack_pack_false(pk);
}

void lf_pk_kv_str(msgpack_packer *pk, const char *key, const char *val)
{
	lf_pk_str(pk, key);
	if (val)
		lf_pk_str(pk, val);
	else
		msgpack_pack_nil(pk);
}

void lf_pk_kv_uint(msgpack_packer *pk, const char *key, uint64_t v)
{
	lf_pk_str(pk, key);
	msgpack_pack_uint64(pk, v);
}

void lf_pk_kv_bool(msgpack_packer *pk, const char *key, bool v)
{
	lf_pk_str(pk, key);
	lf_pk_bool(pk, v);
}

void lf_json_string(struct lf_buf *out, const char *s, size_t n)
{
	/* Fast path: valid UTF-8 goes through json.dumps's escaping as is. */
	if (utf8proc_decompose((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, NULL, 0, 0) >= 0 || n == 0) {
		lf_pyjson_string(out, s, n);
		return;
	}
	struct lf_buf clean = LF_BUF_INIT;
	size_t i = 0;
	while (i < n) {
		utf8proc_int32_t cp;
		utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
		if (k <= 0) {
			lf_buf_addstr(&clean, "\xef\xbf\xbd");
			i++;
		} else {
			lf_buf_add(&clean, s + i, (size_t)k);
			i += (size_t)k;
		}
	}
	lf_pyjson_string(out, clean.data, clean.len);
	lf_buf_free(&clean);
}

void lf_mp_to_json(struct lf_buf *out, const msgpack_object *o)
{
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		lf_buf_addstr(out, "null");
		break;
	case MSGPACK_OBJECT_BOOLEAN:
		lf_buf_addstr(out, o->via.boolean ? "true" : "false");
		break;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		lf_buf_addf(out, "%" PRIu64, o->via.u64);
		break;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		lf_buf_addf(out, "%" PRId64, o->via.i64);
		break;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		lf_py_float_repr(out, o->via.f64);
		break;
	case MSGPACK_OBJECT_STR:
		lf_json_string(out, o->via.str.ptr, o->via.str.size);
		break;
	case MSGPACK_OBJECT_BIN:
		if (o->via.bin.size % 4 == 0) {
			const uint8_t *p = (const uint8_t *)o->via.bin.ptr;
			lf_buf_addch(out, '[');
			for (uint32_t i = 0; i < o->via.bin.size; i += 4) {
				int32_t v = (int32_t)((uint32_t)p[i] | (uint32_t)p[i + 1] << 8 | (uint32_t)p[i + 2] << 16 |
						      (uint32_t)p[i + 3] << 24);
				lf_buf_addf(out, i ? ",%d" : "%d", v);
			}
			lf_buf_addch(out, ']');
		} else {
			lf_buf_addch(out, '"');
			for (uint32_t i = 0; i < o->via.bin.size; i++)
				lf_buf_addf(out, "%02x", (unsigned char)o->via.bin.ptr[i]);
			lf_buf_addch(out, '"');
		}
		break;
	case MSGPACK_OBJECT_ARRAY:
		lf_buf_addch(out, '[');
		for (uint32_t i = 0; i < o->via.array.size; i++) {
			if (i)
				lf_buf_addch(out, ',');
			lf_mp_to_json(out, &o->via.array.ptr[i]);
		}
		lf_buf_addch(out, ']');
		break;
	case MSGPACK_OBJECT_MAP:
		lf_buf_addch(out, '{');
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			const msgpack_object *k = &o->via.map.ptr[i].key;
			if (i)
				lf_buf_addch(out, ',');
			if (k->type == MSGPACK_OBJECT_STR) {
				lf_mp_to_json(out, k);
			} else {
				struct lf_buf tmp = LF_BUF_INIT;
				lf_mp_to_json(&tmp, k);
				lf_json_string(out, tmp.data, tmp.len);
				lf_buf_free(&tmp);
			}
			lf_buf_addch(out, ':');
			lf_mp_to_json(out, &o->via.map.ptr[i].val);
		}
		lf_buf_addch(out, '}');
		break;
	default:
		lf_buf_addstr(out, "null");
		break;
	}
}

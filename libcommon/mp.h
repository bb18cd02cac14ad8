/*
 * mp.h — small helpers over msgpack-c: finding where one object ends in a
 * byte buffer (without trusting its sizes), looking up map keys, and packing
 * the strings and numbers our records use.
 */
#ifndef LF_MP_H
#define LF_MP_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LF_MP_MAX_DEPTH 32

/* Length of the complete msgpack object at the start of buf[0..len).
 * Returns > 0: its length; 0: incomplete, more bytes needed; -1: malformed
 * (*bad_at = offset of the offending byte, *why = reason).  Container counts
 * and lengths larger than max_len (the largest object we accept) are
 * malformed, so a garbage length never makes us allocate or wait for it. */
int64_t lf_mp_span(const uint8_t *buf, size_t len, size_t max_len, size_t *bad_at, const char **why);

/* Map lookups; NULL when obj is not a map or has no such key. */
const msgpack_object *lf_mp_get(const msgpack_object *map, const char *key);
bool lf_mp_key_is(const msgpack_object *key, const char *s);
bool lf_mp_str_is(const msgpack_object *o, const char *s);

/* Typed reads: return -1 (with lf_fail naming `what`) on a wrong type. */
int lf_mp_get_uint(const msgpack_object *map, const char *key, uint64_t *v, bool required);
int lf_mp_get_bool(const msgpack_object *map, const char *key, bool *v, bool required);
int lf_mp_get_str(const msgpack_object *map, const char *key, const char **s, size_t *n, bool required);

/* Write o as JSON: maps with string keys as objects, bins of 4-byte
 * multiples as arrays of little-endian int32 ids, other bins as hex strings;
 * invalid UTF-8 in strings becomes U+FFFD. */
struct lf_buf;
void lf_mp_to_json(struct lf_buf *out, const msgpack_object *o);
/* A string as a JSON literal, invalid UTF-8 replaced by U+FFFD. */
void lf_json_string(struct lf_buf *out, const char *s, size_t n);

/* Packing helpers. */
void lf_pk_str(msgpack_packer *pk, const char *s);
void lf_pk_strn(msgpack_packer *pk, const char *s, size_t n);
void lf_pk_bool(msgpack_packer *pk, bool v);
void lf_pk_kv_str(msgpack_packer *pk, const char *key, const char *val);
void lf_pk_kv_uint(msgpack_packer *pk, const char *key, uint64_t v);
void lf_pk_kv_bool(msgpack_packer *pk, const char *key, bool v);

#endif

/*
 * strmap.h — open-addressing hash maps for the tokenizer: byte strings to
 * 32-bit values (vocabularies) and 64-bit keys to 64-bit values (BPE merges).
 * Keys of the string map point into memory the caller keeps alive.
 */
#ifndef LF_STRMAP_H
#define LF_STRMAP_H

#include <stddef.h>
#include <stdint.h>

struct lf_strmap_slot {
	const char *key; /* NULL: empty */
	uint32_t len;
	uint32_t value;
};

struct lf_strmap {
	struct lf_strmap_slot *slots;
	size_t cap, n; /* cap is a power of two */
};

uint64_t lf_hash_bytes(const void *p, size_t n);
void lf_strmap_init(struct lf_strmap *m, size_t expected);
/* Insert or overwrite. */
void lf_strmap_put(struct lf_strmap *m, const char *key, size_t len, uint32_t value);
/* 1 and *value when present, else 0. */
int lf_strmap_get(const struct lf_strmap *m, const char *key, size_t len, uint32_t *value);
void lf_strmap_free(struct lf_strmap *m);

struct lf_u64map_slot {
	uint64_t key; /* UINT64_MAX: empty */
	uint64_t value;
};

struct lf_u64map {
	struct lf_u64map_slot *slots;
	size_t cap, n;
};

void lf_u64map_init(struct lf_u64map *m, size_t expected);
void lf_u64map_put(struct lf_u64map *m, uint64_t key, uint64_t value);
int lf_u64map_get(const struct lf_u64map *m, uint64_t key, uint64_t *value);
void lf_u64map_free(struct lf_u64map *m);

#endif

/*
 * strmap.c — hash maps (see strmap.h).  Hashing is xxHash3.
 */
#include "strmap.h"
#include "error.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <xxhash.h>

uint64_t lf_hash_bytes(const void *p, size_t n)
{
	return XXH3_64bits(p, n);
}

/* Slot arrays of vocabulary-sized maps are megabytes probed at random:
 * backed by huge pages where the system allows, they take far fewer page
 * faults to fill and TLB misses to read.  Filled with byte `fill`. */
static void *table_alloc(size_t bytes, int fill)
{
	const size_t huge = 2u << 20;
	void *p;
	if (bytes < huge) {
		p = lf_malloc(bytes);
	} else {
		bytes = (bytes + huge - 1) / huge * huge;
		if (posix_memalign(&p, huge, bytes) != 0)
			lf_die("out of memory (%zu bytes)", bytes);
		madvise(p, bytes, MADV_HUGEPAGE);
	}
	memset(p, fill, bytes);
	return p;
}

static size_t capacity_for(size_t expected)
{
	size_t cap = 16;
	while (cap < expected * 2)
		cap *= 2;
	return cap;
}

void lf_strmap_init(struct lf_strmap *m, size_t expected)
{
	m->cap = capacity_for(expected);
	m->n = 0;
	m->slots = table_alloc(m->cap * sizeof *m->slots, 0);
}

static void strmap_grow(struct lf_strmap *m)
{
	struct lf_strmap old = *m;
	m->cap *= 2;
	m->n = 0;
	m->slots = table_alloc(m->cap * sizeof *m->slots, 0);
	for (size_t i = 0; i < old.cap; i++) {
		struct lf_strmap_slot *s = &old.slots[i];
		if (!s->key)
			continue;
		size_t j = lf_hash_bytes(s->key, s->len) & (m->cap - 1);
		while (m->slots[j].key)
			j = (j + 1) & (m->cap - 1);
		m->slots[j] = *s;
		m->n++;
	}
	free(old.slots);
}

void lf_strmap_put(struct lf_strmap *m, const char *key, size_t len, uint32_t value)
{
	if ((m->n + 1) * 2 > m->cap)
		strmap_grow(m);
	uint64_t h = lf_hash_bytes(key, len);
	size_t j = h & (m->cap - 1);
	while (m->slots[j].key) {
		struct lf_strmap_slot *s = &m->slots[j];
		if (s->len == len && !memcmp(s->key, key, len)) {
			s->key = key; /* the caller may free the old key's memory */
			s->value = value;
			return;
		}
		j = (j + 1) & (m->cap - 1);
	}
	m->slots[j] = (struct lf_strmap_slot){ key ? key : "", (uint32_t)len, value };
	m->n++;
}

int lf_strmap_get(const struct lf_strmap *m, const char *key, size_t len, uint32_t *value)
{
	if (!m->cap)
		return 0;
	uint64_t h = lf_hash_bytes(key, len);
	size_t j = h & (m->cap - 1);
	while (m->slots[j].key) {
		const struct lf_strmap_slot *s = &m->slots[j];
		if (s->len == len && !memcmp(s->key, key, len)) {
			*value = s->value;
			return 1;
		}
		j = (j + 1) & (m->cap - 1);
	}
	return 0;
}

void lf_strmap_free(struct lf_strmap *m)
{
	free(m->slots);
	memset(m, 0, sizeof *m);
}

/* ---- 64-bit keys ---- */

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

void lf_u64map_init(struct lf_u64map *m, size_t expected)
{
	m->cap = capacity_for(expected);
	m->n = 0;
	m->slots = table_alloc(m->cap * sizeof *m->slots, 0xff);
}

static void u64map_grow(struct lf_u64map *m)
{
	struct lf_u64map old = *m;
	lf_u64map_init(m, old.cap);
	for (size_t i = 0; i < old.cap; i++)
		if (old.slots[i].key != UINT64_MAX)
			lf_u64map_put(m, old.slots[i].key, old.slots[i].value);
	free(old.slots);
}

void lf_u64map_put(struct lf_u64map *m, uint64_t key, uint64_t value)
{
	if ((m->n + 1) * 2 > m->cap)
		u64map_grow(m);
	size_t j = mix64(key) & (m->cap - 1);
	while (m->slots[j].key != UINT64_MAX && m->slots[j].key != key)
		j = (j + 1) & (m->cap - 1);
	if (m->slots[j].key == UINT64_MAX)
		m->n++;
	m->slots[j] = (struct lf_u64map_slot){ key, value };
}

int lf_u64map_get(const struct lf_u64map *m, uint64_t key, uint64_t *value)
{
	size_t j = mix64(key) & (m->cap - 1);
	while (m->slots[j].key != UINT64_MAX) {
		if (m->slots[j].key == key) {
			*value = m->slots[j].value;
			return 1;
		}
		j = (j + 1) & (m->cap - 1);
	}
	return 0;
}

void lf_u64map_free(struct lf_u64map *m)
{
	free(m->slots);
	memset(m, 0, sizeof *m);
}

/*
 * tok_bpe.c — the BPE model (the library's models::bpe): a word's characters
 * become symbols (vocabulary entries, byte fallback <0xNN> tokens, or unk),
 * then the lowest-ranked merge among adjacent pairs is applied, leftmost
 * first on ties, until none applies.  A per-state cache keeps the ids of
 * words already merged.
 */
#include "tok_internal.h"
#include "error.h"
#include "unicode.h"

#include <stdlib.h>
#include <string.h>

struct symbol {
	int32_t id;
	int32_t prev, next;
	uint32_t len; /* 0: merged away */
};

struct merge {
	uint32_t rank, pos;
	int32_t new_id;
};

static bool merge_less(const struct merge *a, const struct merge *b)
{
	return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

struct heap {
	struct merge *v;
	size_t n, cap;
};

static void heap_push(struct heap *h, struct merge m)
{
	if (h->n == h->cap) {
		h->cap = h->cap ? 2 * h->cap : 64;
		h->v = lf_realloc(h->v, h->cap * sizeof *h->v);
	}
	size_t i = h->n++;
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (!merge_less(&m, &h->v[parent]))
			break;
		h->v[i] = h->v[parent];
		i = parent;
	}
	h->v[i] = m;
}

static struct merge heap_pop(struct heap *h)
{
	struct merge top = h->v[0];
	struct merge last = h->v[--h->n];
	size_t i = 0;
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		const struct merge *best = &last;
		if (l < h->n && merge_less(&h->v[l], best)) {
			m = l;
			best = &h->v[l];
		}
		if (r < h->n && merge_less(&h->v[r], best))
			m = r;
		if (m == i)
			break;
		h->v[i] = h->v[m];
		i = m;
	}
	if (h->n)
		h->v[i] = last;
	return top;
}

static bool pair_merge(const struct tok_bpe *bpe, int32_t a, int32_t b, uint32_t *rank, int32_t *new_id)
{
	uint64_t v;
	if (!lf_u64map_get(&bpe->merges, (uint64_t)(uint32_t)a << 32 | (uint32_t)b, &v))
		return false;
	*rank = (uint32_t)(v >> 32);
	*new_id = (int32_t)(uint32_t)v;
	return true;
}

struct word {
	struct symbol *s;
	size_t n, cap;
};

static void add_symbol(struct word *w, int32_t id, uint32_t len)
{
	if (w->n == w->cap) {
		w->cap = w->cap ? 2 * w->cap : 64;
		w->s = lf_realloc(w->s, w->cap * sizeof *w->s);
	}
	w->s[w->n] = (struct symbol){ id, (int32_t)w->n - 1, (int32_t)w->n + 1, len };
	w->n++;
}

/* The word's initial symbols (BPE::merge_word before merge_all). */
static void initial_symbols(const struct tok_bpe *bpe, const char *word, size_t len, struct word *w,
			    struct lf_buf *tmp)
{
	int32_t unk_id = -1;
	uint32_t unk_len = 0;
	bool pending_unk = false;
	for (size_t i = 0; i < len;) {
		uint32_t cp;
		size_t k = lf_utf8_decode(word + i, len - i, &cp);
		if (!k)
			k = 1;
		bool first = i == 0, last = i + k == len;
		const char *s = word + i;
		size_t sl = k;
		if ((!first && bpe->prefix_len) || (last && bpe->suffix_len)) {
			lf_buf_reset(tmp);
			if (!first)
				lf_buf_add(tmp, bpe->prefix, bpe->prefix_len);
			lf_buf_add(tmp, word + i, k);
			if (last)
				lf_buf_add(tmp, bpe->suffix, bpe->suffix_len);
			s = tmp->data;
			sl = tmp->len;
		}
		i += k;
		uint32_t id;
		if (lf_strmap_get(&bpe->vocab, s, sl, &id)) {
			if (pending_unk) {
				add_symbol(w, unk_id, unk_len);
				pending_unk = false;
			}
			add_symbol(w, (int32_t)id, (uint32_t)k);
			continue;
		}
		if (bpe->byte_fallback) {
			bool all = true;
			for (size_t j = 0; j < sl; j++)
				if (bpe->byte_ids[(uint8_t)s[j]] < 0)
					all = false;
			if (all) {
				for (size_t j = 0; j < sl; j++)
					add_symbol(w, bpe->byte_ids[(uint8_t)s[j]], 1);
				continue;
			}
		}
		if (bpe->unk >= 0) {
			if (pending_unk && bpe->fuse_unk) {
				unk_len += (uint32_t)k;
			} else {
				if (pending_unk)
					add_symbol(w, unk_id, unk_len);
				unk_id = bpe->unk;
				unk_len = (uint32_t)k;
				pending_unk = true;
			}
		}
	}
	if (pending_unk)
		add_symbol(w, unk_id, unk_len);
	if (w->n)
		w->s[w->n - 1].next = -1;
}

static void merge_all(const struct tok_bpe *bpe, struct word *w, struct heap *h)
{
	h->n = 0;
	for (size_t i = 0; i + 1 < w->n; i++) {
		uint32_t rank;
		int32_t nid;
		if (pair_merge(bpe, w->s[i].id, w->s[i + 1].id, &rank, &nid))
			heap_push(h, (struct merge){ rank, (uint32_t)i, nid });
	}
	while (h->n) {
		struct merge top = heap_pop(h);
		struct symbol *cur = &w->s[top.pos];
		if (cur->len == 0 || cur->next < 0)
			continue;
		struct symbol *right = &w->s[cur->next];
		uint32_t rank;
		int32_t nid;
		if (!pair_merge(bpe, cur->id, right->id, &rank, &nid) || nid != top.new_id)
			continue;
		cur->id = top.new_id;
		cur->len += right->len;
		right->len = 0;
		cur->next = right->next;
		if (cur->next >= 0)
			w->s[cur->next].prev = (int32_t)top.pos;
		if (cur->prev >= 0) {
			struct symbol *prev = &w->s[cur->prev];
			if (pair_merge(bpe, prev->id, cur->id, &rank, &nid))
				heap_push(h, (struct merge){ rank, (uint32_t)cur->prev, nid });
		}
		if (cur->next >= 0) {
			struct symbol *next = &w->s[cur->next];
			if (pair_merge(bpe, cur->id, next->id, &rank, &nid))
				heap_push(h, (struct merge){ rank, top.pos, nid });
		}
	}
}

#define CACHE_MAX_WORD 256 /* longer words are not cached, as in the library */

void tok_bpe_encode(const struct lf_tokenizer *t, struct lf_tok_state *st, const char *word, size_t len,
		    struct lf_idvec *out)
{
	const struct tok_bpe *bpe = &t->bpe;
	if (!len)
		return;
	uint32_t id;
	if (bpe->ignore_merges && lf_strmap_get(&bpe->vocab, word, len, &id)) {
		lf_idvec_push(out, (int32_t)id);
		return;
	}
	uint32_t at;
	if (lf_strmap_get(&st->cache, word, len, &at)) {
		int32_t n = st->cache_ids.v[at];
		for (int32_t i = 0; i < n; i++)
			lf_idvec_push(out, st->cache_ids.v[at + 1 + i]);
		return;
	}
	struct word w = { st->symbols, 0, st->cap_symbols };
	struct heap h = { st->heap, 0, st->cap_heap };
	initial_symbols(bpe, word, len, &w, &st->tmp);
	merge_all(bpe, &w, &h);
	size_t start = out->n;
	for (int32_t i = w.n ? 0 : -1; i >= 0; i = w.s[i].next)
		if (w.s[i].len)
			lf_idvec_push(out, w.s[i].id);
	st->symbols = w.s;
	st->cap_symbols = w.cap;
	st->heap = h.v;
	st->cap_heap = h.cap;
	if (len >= CACHE_MAX_WORD)
		return;
	if (st->cache.n >= st->cache_limit) { /* full: start over */
		lf_strmap_free(&st->cache);
		lf_strmap_init(&st->cache, st->cache_limit);
		lf_buf_reset(&st->cache_keys);
		st->cache_ids.n = 0;
	}
	/* keys live in cache_keys, which must not move: it was sized at creation */
	if (st->cache_keys.len + len > st->cache_keys.cap - 1)
		return;
	const char *key = st->cache_keys.data + st->cache_keys.len;
	lf_buf_add(&st->cache_keys, word, len);
	lf_strmap_put(&st->cache, key, len, (uint32_t)st->cache_ids.n);
	lf_idvec_push(&st->cache_ids, (int32_t)(out->n - start));
	for (size_t i = start; i < out->n; i++)
		lf_idvec_push(&st->cache_ids, out->v[i]);
}

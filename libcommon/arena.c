/*
 * arena.c — bump allocator (see arena.h).
 */
#include "arena.h"
#include "error.h"

#include <stdlib.h>
#include <string.h>

#define CHUNK (64u << 10)

struct lf_arena_chunk {
	struct lf_arena_chunk *next;
	size_t used, cap;
	max_align_t data[];
};

void *lf_arena_alloc(struct lf_arena *a, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	struct lf_arena_chunk *c = a->head;
	if (!c || c->cap - c->used < n) {
		size_t cap = n > CHUNK ? n : CHUNK;
		c = lf_malloc(sizeof *c + cap);
		c->used = 0;
		c->cap = cap;
		c->next = a->head;
		a->head = c;
	}
	void *p = (char *)c->data + c->used;
	c->used += n;
	return p;
}

char *lf_arena_memdup(struct lf_arena *a, const void *p, size_t n)
{
	char *d = lf_arena_alloc(a, n + 1);
	if (n)
		memcpy(d, p, n);
	d[n] = 0;
	return d;
}

void lf_arena_reset(struct lf_arena *a)
{
	struct lf_arena_chunk *c = a->head;
	if (!c)
		return;
	struct lf_arena_chunk *rest = c->next;
	while (rest) {
		struct lf_arena_chunk *next = rest->next;
		free(rest);
		rest = next;
	}
	c->next = NULL;
	c->used = 0;
}

void lf_arena_free(struct lf_arena *a)
{
	while (a->head) {
		struct lf_arena_chunk *next = a->head->next;
		free(a->head);
		a->head = next;
	}
}

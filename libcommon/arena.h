/*
 * arena.h — bump allocation for data that lives as long as one record.
 */
#ifndef LF_ARENA_H
#define LF_ARENA_H

#include <stddef.h>

struct lf_arena_chunk;

struct lf_arena {
	struct lf_arena_chunk *head;
};

void *lf_arena_alloc(struct lf_arena *a, size_t n);
char *lf_arena_memdup(struct lf_arena *a, const void *p, size_t n); /* NUL-terminated copy */
/* Free everything but the first chunk, for reuse. */
void lf_arena_reset(struct lf_arena *a);
void lf_arena_free(struct lf_arena *a);

#endif

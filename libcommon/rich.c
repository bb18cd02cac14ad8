/*
 * rich.c — text with user-content ranges (see rich.h).
 */
#include "rich.h"
#include "error.h"

#include <stdlib.h>
#include <string.h>

void lf_rich_template(struct lf_rich *x, const char *s, size_t n)
{
	lf_buf_add(&x->text, s, n);
}

static void add_range(struct lf_rich *x, size_t start, size_t end)
{
	if (start == end)
		return;
	if (x->nr && x->r[x->nr - 1].end == start) {
		x->r[x->nr - 1].end = (uint32_t)end;
		return;
	}
	if (x->nr == x->cap) {
		x->cap = x->cap ? 2 * x->cap : 4;
		x->r = lf_realloc(x->r, x->cap * sizeof *x->r);
	}
	x->r[x->nr++] = (struct lf_range){ (uint32_t)start, (uint32_t)end };
}

void lf_rich_user(struct lf_rich *x, const char *s, size_t n)
{
	size_t start = x->text.len;
	lf_buf_add(&x->text, s, n);
	add_range(x, start, x->text.len);
}

void lf_rich_append(struct lf_rich *x, const struct lf_rich *y)
{
	size_t base = x->text.len;
	lf_buf_add(&x->text, y->text.data, y->text.len);
	for (size_t i = 0; i < y->nr; i++)
		add_range(x, base + y->r[i].start, base + y->r[i].end);
}

void lf_rich_reset(struct lf_rich *x)
{
	lf_buf_reset(&x->text);
	x->nr = 0;
}

void lf_rich_free(struct lf_rich *x)
{
	lf_buf_free(&x->text);
	free(x->r);
	memset(x, 0, sizeof *x);
}

struct lf_elem lf_rich_elem(const struct lf_rich *x, struct lf_arena *a)
{
	struct lf_elem el = { .kind = LF_ELEM_TEXT };
	el.text = lf_arena_memdup(a, x->text.data ? x->text.data : "", x->text.len);
	el.len = x->text.len;
	if (x->nr) {
		struct lf_range *r = lf_arena_alloc(a, x->nr * sizeof *r);
		memcpy(r, x->r, x->nr * sizeof *r);
		el.user = r;
		el.nuser = x->nr;
	}
	return el;
}

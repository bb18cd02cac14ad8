/*
 * rich.h — text that remembers which of its bytes came from user data.
 *
 * Templates build each element by splicing dataset content into template
 * text; the ranges from user data travel in the stream so that lf-tokenize
 * matches special tokens only in template text (man 5 lf-stream).
 */
#ifndef LF_RICH_H
#define LF_RICH_H

#include <stddef.h>

#include "arena.h"
#include "buf.h"
#include "record.h"

struct lf_rich {
	struct lf_buf text;
	struct lf_range *r;
	size_t nr, cap;
};

#define LF_RICH_INIT { LF_BUF_INIT, NULL, 0, 0 }

void lf_rich_template(struct lf_rich *x, const char *s, size_t n); /* append template text */
void lf_rich_user(struct lf_rich *x, const char *s, size_t n);     /* append user text */
void lf_rich_append(struct lf_rich *x, const struct lf_rich *y);
void lf_rich_reset(struct lf_rich *x);
void lf_rich_free(struct lf_rich *x);
/* Copy into an arena as a TEXT element. */
struct lf_elem lf_rich_elem(const struct lf_rich *x, struct lf_arena *a);

#endif

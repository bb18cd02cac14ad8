/*
 * buf.h — a growable byte buffer (always NUL-terminated after its data).
 */
#ifndef LF_BUF_H
#define LF_BUF_H

#include <stddef.h>

struct lf_buf {
	char *data;
	size_t len;
	size_t cap;
};

#define LF_BUF_INIT { NULL, 0, 0 }

void lf_buf_grow(struct lf_buf *b, size_t extra);
void lf_buf_add(struct lf_buf *b, const void *p, size_t n);
void lf_buf_addstr(struct lf_buf *b, const char *s);
void lf_buf_addch(struct lf_buf *b, char c);
void lf_buf_addf(struct lf_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A decimal integer (what "%llu" gives, without printf's cost). */
void lf_buf_add_uint(struct lf_buf *b, unsigned long long v);
void lf_buf_reset(struct lf_buf *b);
void lf_buf_free(struct lf_buf *b);
/* Give the caller the data (NUL-terminated, never NULL) and empty the buffer. */
char *lf_buf_detach(struct lf_buf *b, size_t *len);

#endif

/*
 * buf.c — growable byte buffer (see buf.h).
 */
#include "buf.h"
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lf_buf_grow(struct lf_buf *b, size_t extra)
{
	size_t need = b->len + extra + 1;
	if (need <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap *= 2;
	b->data = lf_realloc(b->data, cap);
	b->cap = cap;
	b->data[b->len] = 0;
}

void lf_buf_add(struct lf_buf *b, const void *p, size_t n)
{
	lf_buf_grow(b, n);
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = 0;
}

void lf_buf_addstr(struct lf_buf *b, const char *s)
{
	lf_buf_add(b, s, strlen(s));
}

void lf_buf_addch(struct lf_buf *b, char c)
{
	lf_buf_grow(b, 1);
	b->data[b->len++] = c;
	b->data[b->len] = 0;
}

void lf_buf_add_uint(struct lf_buf *b, unsigned long long v)
{
	char digits[20];
	size_t n = 0;
	do {
		digits[sizeof digits - ++n] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	lf_buf_add(b, digits + sizeof digits - n, n);
}

void lf_buf_addf(struct lf_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n <= 0)
		return;
	lf_buf_grow(b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void lf_buf_reset(struct lf_buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = 0;
}

void lf_buf_free(struct lf_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

char *lf_buf_detach(struct lf_buf *b, size_t *len)
{
	lf_buf_grow(b, 0);
	char *d = b->data;
	if (len)
		*len = b->len;
	b->data = NULL;
	b->len = b->cap = 0;
	return d;
}

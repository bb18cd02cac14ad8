/*
 * jsonscan.h — a pull scanner over JSON text, for the files too big to build
 * a tree of quickly (a tokenizer.json holds 150k-token vocabularies and as
 * many merges: jansson takes 200-550 ms and 190 MB on them, this scanner
 * about a tenth).  The caller walks objects and arrays, decodes strings into
 * its own buffers and skips what it does not need; small parts can be handed
 * to jansson as a span of raw text.  Errors name the file, line and column.
 */
#ifndef LF_JSONSCAN_H
#define LF_JSONSCAN_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

struct lf_jscan {
	const char *name;
	const char *start, *p, *end;
};

void lf_jscan_init(struct lf_jscan *s, const char *name, const char *data, size_t len);
/* The next non-blank character (not consumed), or -1 at the end. */
int lf_jscan_peek(struct lf_jscan *s);
/* lf_fail with "NAME: line L column C: MESSAGE" at the current position. */
int lf_jscan_fail(struct lf_jscan *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int lf_jscan_expect(struct lf_jscan *s, char c);
/* A string, decoded (escapes, surrogate pairs) and appended to out. */
int lf_jscan_string(struct lf_jscan *s, struct lf_buf *out);
int lf_jscan_int(struct lf_jscan *s, int64_t *v);
int lf_jscan_skip(struct lf_jscan *s);
/* Skip a value and give its raw text. */
int lf_jscan_span(struct lf_jscan *s, const char **text, size_t *len);
/* Objects: begin consumes '{'; next gives 1 with the key read (and the ':'),
 * 0 at the closing '}', -1 on error.  Arrays alike with '[' and ']'. */
int lf_jscan_object_begin(struct lf_jscan *s);
int lf_jscan_object_next(struct lf_jscan *s, struct lf_buf *key);
int lf_jscan_array_begin(struct lf_jscan *s);
int lf_jscan_array_next(struct lf_jscan *s);

#endif

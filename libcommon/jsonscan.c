/*
 * jsonscan.c — pull scanning of JSON text (see jsonscan.h).
 */
#include "jsonscan.h"
#include "error.h"
#include "unicode.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void lf_jscan_init(struct lf_jscan *s, const char *name, const char *data, size_t len)
{
	s->name = name;
	s->start = s->p = data;
	s->end = data + len;
}

static void skip_ws(struct lf_jscan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
		s->p++;
}

int lf_jscan_peek(struct lf_jscan *s)
{
	skip_ws(s);
	return s->p < s->end ? (unsigned char)*s->p : -1;
}

int lf_jscan_fail(struct lf_jscan *s, const char *fmt, ...)
{
	size_t line = 1, col = 1;
	for (const char *q = s->start; q < s->p && q < s->end; q++) {
		if (*q == '\n') {
			line++;
			col = 1;
		} else if (((unsigned char)*q & 0xc0) != 0x80) {
			col++;
		}
	}
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (s->p >= s->end)
		return lf_fail("%s: unexpected end of file (truncated?): %s", s->name, msg);
	return lf_fail("%s: line %zu column %zu: %s", s->name, line, col, msg);
}

int lf_jscan_expect(struct lf_jscan *s, char c)
{
	if (lf_jscan_peek(s) != (unsigned char)c)
		return lf_jscan_fail(s, "expected '%c'", c);
	s->p++;
	return 0;
}

static int hex4(struct lf_jscan *s, const char *p, uint32_t *v)
{
	*v = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
		if (d < 0)
			return lf_jscan_fail(s, "bad \\u escape");
		*v = *v << 4 | (uint32_t)d;
	}
	return 0;
}

int lf_jscan_string(struct lf_jscan *s, struct lf_buf *out)
{
	if (lf_jscan_expect(s, '"') < 0)
		return -1;
	for (;;) {
		const char *q = s->p;
		while (q < s->end && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20)
			q++;
		if (q >= s->end) {
			s->p = q;
			return lf_jscan_fail(s, "unterminated string");
		}
		size_t bad;
		if (!lf_utf8_valid(s->p, (size_t)(q - s->p), &bad)) {
			s->p += bad;
			return lf_jscan_fail(s, "invalid UTF-8 in a string");
		}
		lf_buf_add(out, s->p, (size_t)(q - s->p));
		s->p = q;
		if (*q == '"') {
			s->p++;
			return 0;
		}
		if ((unsigned char)*q < 0x20)
			return lf_jscan_fail(s, "control character in a string");
		/* an escape */
		if (q + 1 >= s->end)
			return lf_jscan_fail(s, "unterminated escape");
		char e = q[1];
		const char *simple = "\"\\/bfnrt", *value = "\"\\/\b\f\n\r\t";
		const char *k = strchr(simple, e);
		if (k && e) {
			lf_buf_addch(out, value[k - simple]);
			s->p = q + 2;
			continue;
		}
		if (e != 'u')
			return lf_jscan_fail(s, "bad escape '\\%c'", e);
		if (q + 6 > s->end)
			return lf_jscan_fail(s, "truncated \\u escape");
		uint32_t cp;
		if (hex4(s, q + 2, &cp) < 0)
			return -1;
		s->p = q + 6;
		if (cp >= 0xd800 && cp <= 0xdbff) {
			uint32_t lo;
			if (s->p + 6 > s->end || s->p[0] != '\\' || s->p[1] != 'u' || hex4(s, s->p + 2, &lo) < 0 ||
			    lo < 0xdc00 || lo > 0xdfff)
				return lf_jscan_fail(s, "lone leading surrogate in a \\u escape");
			cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			s->p += 6;
		} else if (cp >= 0xdc00 && cp <= 0xdfff) {
			return lf_jscan_fail(s, "lone trailing surrogate in a \\u escape");
		}
		char enc[4];
		lf_buf_add(out, enc, lf_utf8_encode(cp, enc));
	}
}

int lf_jscan_int(struct lf_jscan *s, int64_t *v)
{
	int c = lf_jscan_peek(s);
	bool neg = false;
	if (c == '-') {
		neg = true;
		s->p++;
	}
	if (s->p >= s->end || *s->p < '0' || *s->p > '9')
		return lf_jscan_fail(s, "expected an integer");
	int64_t x = 0;
	while (s->p < s->end && *s->p >= '0' && *s->p <= '9') {
		if (x > (INT64_MAX - 9) / 10)
			return lf_jscan_fail(s, "integer too large");
		x = x * 10 + (*s->p++ - '0');
	}
	if (s->p < s->end && (*s->p == '.' || *s->p == 'e' || *s->p == 'E'))
		return lf_jscan_fail(s, "expected an integer, found a fraction");
	*v = neg ? -x : x;
	return 0;
}

static int skip_depth(struct lf_jscan *s, int depth)
{
	if (depth > 512)
		return lf_jscan_fail(s, "nesting too deep");
	int c = lf_jscan_peek(s);
	switch (c) {
	case '"': {
		s->p++;
		for (;;) {
			const char *q = memchr(s->p, '"', (size_t)(s->end - s->p));
			if (!q) {
				s->p = s->end;
				return lf_jscan_fail(s, "unterminated string");
			}
			size_t backslashes = 0;
			for (const char *b = q - 1; b >= s->p && *b == '\\'; b--)
				backslashes++;
			s->p = q + 1;
			if (backslashes % 2 == 0)
				return 0;
		}
	}
	case '{':
	case '[': {
		char close = c == '{' ? '}' : ']';
		s->p++;
		if (lf_jscan_peek(s) == close) {
			s->p++;
			return 0;
		}
		for (;;) {
			if (c == '{') {
				if (lf_jscan_peek(s) != '"')
					return lf_jscan_fail(s, "expected a key");
				if (skip_depth(s, depth + 1) < 0 || lf_jscan_expect(s, ':') < 0)
					return -1;
			}
			if (skip_depth(s, depth + 1) < 0)
				return -1;
			int n = lf_jscan_peek(s);
			if (n == ',') {
				s->p++;
				continue;
			}
			if (n == close) {
				s->p++;
				return 0;
			}
			return lf_jscan_fail(s, "expected ',' or '%c'", close);
		}
	}
	case -1:
		return lf_jscan_fail(s, "expected a value");
	default: {
		const char *q = s->p;
		while (q < s->end && (strchr("+-.eE0123456789", *q) || (*q >= 'a' && *q <= 'z')))
			q++;
		if (q == s->p)
			return lf_jscan_fail(s, "unexpected character '%c'", *s->p);
		size_t n = (size_t)(q - s->p);
		if ((*s->p >= 'a' && *s->p <= 'z') && !(n == 4 && !memcmp(s->p, "true", 4)) &&
		    !(n == 5 && !memcmp(s->p, "false", 5)) && !(n == 4 && !memcmp(s->p, "null", 4)))
			return lf_jscan_fail(s, "unexpected word '%.*s'", (int)n, s->p);
		s->p = q;
		return 0;
	}
	}
}

int lf_jscan_skip(struct lf_jscan *s)
{
	return skip_depth(s, 0);
}

int lf_jscan_span(struct lf_jscan *s, const char **text, size_t *len)
{
	lf_jscan_peek(s);
	const char *a = s->p;
	if (lf_jscan_skip(s) < 0)
		return -1;
	*text = a;
	*len = (size_t)(s->p - a);
	return 0;
}

int lf_jscan_object_begin(struct lf_jscan *s)
{
	return lf_jscan_expect(s, '{');
}

static int after_item(struct lf_jscan *s, char close)
{
	int c = lf_jscan_peek(s);
	if (c == ',') {
		s->p++;
		return 1;
	}
	if (c == close) {
		s->p++;
		return 0;
	}
	return lf_jscan_fail(s, "expected ',' or '%c'", close);
}

/* Objects and arrays remember whether an item was read by looking back at
 * the previous non-blank character: '{' or '[' means none yet. */
static int first_item(struct lf_jscan *s, char open)
{
	const char *q = s->p;
	while (q > s->start && (q[-1] == ' ' || q[-1] == '\n' || q[-1] == '\r' || q[-1] == '\t'))
		q--;
	return q > s->start && q[-1] == open;
}

int lf_jscan_object_next(struct lf_jscan *s, struct lf_buf *key)
{
	if (first_item(s, '{')) {
		if (lf_jscan_peek(s) == '}') {
			s->p++;
			return 0;
		}
	} else {
		int rc = after_item(s, '}');
		if (rc <= 0)
			return rc;
	}
	lf_buf_reset(key);
	if (lf_jscan_string(s, key) < 0 || lf_jscan_expect(s, ':') < 0)
		return -1;
	return 1;
}

int lf_jscan_array_begin(struct lf_jscan *s)
{
	return lf_jscan_expect(s, '[');
}

int lf_jscan_array_next(struct lf_jscan *s)
{
	if (first_item(s, '[')) {
		if (lf_jscan_peek(s) == ']') {
			s->p++;
			return 0;
		}
		return 1;
	}
	return after_item(s, ']');
}

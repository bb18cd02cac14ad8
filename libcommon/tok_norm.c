/*
 * tok_norm.c — normalizers (the library's normalizers module): each rewrites
 * the text and carries a per-byte user flag along, so added tokens matched
 * after normalization still stay out of user content.
 */
#include "tok_internal.h"
#include "error.h"
#include "unicode.h"

#include <string.h>

struct replace_ctx {
	const char *s;
	size_t n, pos;
	const uint8_t *flags;
	const struct tok_norm *norm;
	struct lf_buf *out, *out_flags;
};

static void add_flags(struct lf_buf *out_flags, const uint8_t *flags, size_t n)
{
	if (!out_flags)
		return;
	if (flags)
		lf_buf_add(out_flags, flags, n);
	else
		for (size_t i = 0; i < n; i++)
			lf_buf_addch(out_flags, 0);
}

static void copy_span(struct replace_ctx *c, size_t a, size_t b)
{
	lf_buf_add(c->out, c->s + a, b - a);
	add_flags(c->out_flags, c->flags ? c->flags + a : NULL, b - a);
}

static void on_replace(size_t start, size_t end, void *arg)
{
	struct replace_ctx *c = arg;
	copy_span(c, c->pos, start);
	uint8_t f = 0;
	for (size_t i = start; c->flags && i < end; i++)
		f |= c->flags[i];
	lf_buf_add(c->out, c->norm->text, c->norm->text_len);
	for (size_t i = 0; c->out_flags && i < c->norm->text_len; i++)
		lf_buf_addch(c->out_flags, (char)f);
	c->pos = end;
}

void tok_pattern_each(const struct tok_pattern *p, struct lf_regex_scratch *rx, const char *s, size_t n,
		      void (*fn)(size_t start, size_t end, void *arg), void *arg)
{
	if (p->re) {
		lf_regex_each(p->re, rx, s, n, fn, arg);
		return;
	}
	if (!p->lit_len) /* the library's empty literal matches nothing */
		return;
	size_t i = 0;
	while (i + p->lit_len <= n) {
		const char *hit = memmem(s + i, n - i, p->lit, p->lit_len);
		if (!hit)
			return;
		size_t at = (size_t)(hit - s);
		fn(at, at + p->lit_len, arg);
		i = at + p->lit_len;
	}
}

void tok_normalize(const struct tok_norm *n, struct lf_regex_scratch *rx, const char *text, size_t len,
		   const uint8_t *flags, struct lf_buf *out, struct lf_buf *out_flags)
{
	switch (n->type) {
	case TN_SEQUENCE: {
		struct lf_buf a = LF_BUF_INIT, af = LF_BUF_INIT, b = LF_BUF_INIT, bf = LF_BUF_INIT;
		lf_buf_add(&a, text, len);
		add_flags(&af, flags, len);
		for (size_t i = 0; i < n->nkids; i++) {
			lf_buf_reset(&b);
			lf_buf_reset(&bf);
			tok_normalize(&n->kids[i], rx, a.data ? a.data : "", a.len, (const uint8_t *)af.data, &b, &bf);
			struct lf_buf t = a;
			a = b;
			b = t;
			t = af;
			af = bf;
			bf = t;
		}
		lf_buf_add(out, a.data ? a.data : "", a.len);
		add_flags(out_flags, (const uint8_t *)af.data, a.len);
		lf_buf_free(&a);
		lf_buf_free(&af);
		lf_buf_free(&b);
		lf_buf_free(&bf);
		return;
	}
	case TN_NFC:
	case TN_NFD:
	case TN_NFKC:
	case TN_NFKD: {
		enum lf_nf form = n->type == TN_NFC ? LF_NFC : n->type == TN_NFD ? LF_NFD : n->type == TN_NFKC ? LF_NFKC : LF_NFKD;
		lf_uni_normalize_flags(form, text, len, flags, out, out_flags);
		return;
	}
	case TN_LOWERCASE:
		lf_uni_lowercase_flags(text, len, flags, out, out_flags);
		return;
	case TN_PREPEND:
		if (len) { /* the prefix takes the first character's flags, as its alignment */
			lf_buf_add(out, n->text, n->text_len);
			for (size_t i = 0; out_flags && i < n->text_len; i++)
				lf_buf_addch(out_flags, (char)(flags ? flags[0] : 0));
		}
		lf_buf_add(out, text, len);
		add_flags(out_flags, flags, len);
		return;
	case TN_REPLACE: {
		struct replace_ctx c = { text, len, 0, flags, n, out, out_flags };
		tok_pattern_each(&n->pat, rx, text, len, on_replace, &c);
		copy_span(&c, c.pos, len);
		return;
	}
	case TN_STRIP: {
		size_t a = 0, b = len;
		while (n->left && a < b) {
			uint32_t cp;
			size_t k = lf_utf8_decode(text + a, b - a, &cp);
			if (!k || !lf_uni_is_whitespace(cp))
				break;
			a += k;
		}
		while (n->right && b > a) {
			size_t k = 1;
			while (k < b - a && ((uint8_t)text[b - k] & 0xc0) == 0x80)
				k++;
			uint32_t cp;
			if (lf_utf8_decode(text + b - k, k, &cp) != k || !lf_uni_is_whitespace(cp))
				break;
			b -= k;
		}
		lf_buf_add(out, text + a, b - a);
		add_flags(out_flags, flags ? flags + a : NULL, b - a);
		return;
	}
	}
}

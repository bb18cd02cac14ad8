/*
 * tok_decode.c — decoding (the library's decoders module): ids become their
 * tokens, and each decoder in turn rewrites the list of token strings.
 */
#include "tok_internal.h"
#include "error.h"
#include "unicode.h"

#include <stdlib.h>
#include <string.h>

/* ---- the token list ---- */

struct toks {
	struct lf_buf *v;
	size_t n, cap;
};

static struct lf_buf *tok_push(struct toks *l)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		l->v = lf_realloc(l->v, cap * sizeof *l->v);
		memset(l->v + l->cap, 0, (cap - l->cap) * sizeof *l->v);
		l->cap = cap;
	}
	lf_buf_reset(&l->v[l->n]);
	return &l->v[l->n++];
}

/* ---- ByteLevel: the byte-level alphabet back to bytes ---- */

static void byte_level(struct toks *l)
{
	struct lf_buf bytes = LF_BUF_INIT;
	for (size_t i = 0; i < l->n; i++) {
		const char *s = l->v[i].data ? l->v[i].data : "";
		size_t n = l->v[i].len, start = bytes.len;
		bool all = true;
		for (size_t k = 0; k < n;) {
			uint32_t cp;
			size_t len = lf_utf8_decode(s + k, n - k, &cp);
			int16_t b = len ? tok_byte_level_byte(cp) : -1;
			if (b < 0) {
				all = false;
				break;
			}
			lf_buf_addch(&bytes, (char)b);
			k += len;
		}
		if (!all) { /* not all in the alphabet: the token's own bytes */
			bytes.len = start;
			lf_buf_add(&bytes, s, n);
		}
	}
	for (size_t i = 0; i < l->n; i++)
		lf_buf_free(&l->v[i]);
	l->n = 0;
	struct lf_buf *one = tok_push(l);
	lf_utf8_lossy(one, bytes.data ? bytes.data : "", bytes.len);
	lf_buf_free(&bytes);
}

/* ---- ByteFallback: runs of <0xNN> tokens back to text ---- */

static int fallback_byte(const struct lf_buf *t)
{
	if (t->len != 6 || memcmp(t->data, "<0x", 3) || t->data[5] != '>')
		return -1;
	int v = 0;
	for (int i = 3; i < 5; i++) {
		char c = t->data[i];
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
		if (d < 0)
			return -1;
		v = v * 16 + d;
	}
	return v;
}

static void flush_bytes(struct toks *out, struct lf_buf *bytes)
{
	if (!bytes->len)
		return;
	if (lf_utf8_valid(bytes->data, bytes->len, NULL)) {
		lf_buf_add(tok_push(out), bytes->data, bytes->len);
	} else {
		for (size_t i = 0; i < bytes->len; i++)
			lf_buf_addstr(tok_push(out), "\xef\xbf\xbd");
	}
	lf_buf_reset(bytes);
}

static void byte_fallback(struct toks *l)
{
	struct toks out = { 0 };
	struct lf_buf bytes = LF_BUF_INIT;
	for (size_t i = 0; i < l->n; i++) {
		int b = fallback_byte(&l->v[i]);
		if (b >= 0) {
			lf_buf_addch(&bytes, (char)b);
			continue;
		}
		flush_bytes(&out, &bytes);
		lf_buf_add(tok_push(&out), l->v[i].data ? l->v[i].data : "", l->v[i].len);
	}
	flush_bytes(&out, &bytes);
	lf_buf_free(&bytes);
	for (size_t i = 0; i < l->cap; i++)
		lf_buf_free(&l->v[i]);
	free(l->v);
	*l = out;
}

/* ---- the others ---- */

static void fuse(struct toks *l)
{
	struct lf_buf all = LF_BUF_INIT;
	for (size_t i = 0; i < l->n; i++)
		lf_buf_add(&all, l->v[i].data ? l->v[i].data : "", l->v[i].len);
	l->n = 0;
	struct lf_buf *one = tok_push(l);
	lf_buf_add(one, all.data ? all.data : "", all.len);
	lf_buf_free(&all);
}

/* Strip up to `start` leading and `stop` trailing copies of one character. */
static void strip(const struct tok_dec *d, struct toks *l)
{
	for (size_t i = 0; i < l->n; i++) {
		struct lf_buf *t = &l->v[i];
		const char *s = t->data ? t->data : "";
		size_t a = 0, b = t->len, c = d->content_len;
		for (size_t k = 0; k < d->start && a + c <= b && !memcmp(s + a, d->content, c); k++)
			a += c;
		for (size_t k = 0; k < d->stop && b >= a + c && !memcmp(s + b - c, d->content, c); k++)
			b -= c;
		struct lf_buf nt = LF_BUF_INIT;
		lf_buf_add(&nt, s + a, b - a);
		lf_buf_free(t);
		*t = nt;
	}
}

struct replace_ctx {
	const struct tok_dec *d;
	const char *s;
	size_t pos;
	struct lf_buf *out;
};

static void on_match(size_t start, size_t end, void *arg)
{
	struct replace_ctx *c = arg;
	lf_buf_add(c->out, c->s + c->pos, start - c->pos);
	lf_buf_add(c->out, c->d->content, c->d->content_len);
	c->pos = end;
}

static void replace(const struct tok_dec *d, struct toks *l, struct lf_regex_scratch *rx)
{
	for (size_t i = 0; i < l->n; i++) {
		struct lf_buf *t = &l->v[i];
		struct lf_buf nt = LF_BUF_INIT;
		struct replace_ctx c = { d, t->data ? t->data : "", 0, &nt };
		tok_pattern_each(&d->pat, rx, c.s, t->len, on_match, &c);
		lf_buf_add(&nt, c.s + c.pos, t->len - c.pos);
		lf_buf_free(t);
		*t = nt;
	}
}

/* Metaspace: the replacement character becomes a space, and disappears from
 * the first token (every occurrence there) unless the scheme is "never". */
static void metaspace(const struct tok_dec *d, struct toks *l)
{
	for (size_t i = 0; i < l->n; i++) {
		struct lf_buf *t = &l->v[i];
		struct lf_buf nt = LF_BUF_INIT;
		const char *s = t->data ? t->data : "";
		size_t rl = d->replacement_len;
		for (size_t k = 0; k < t->len;) {
			if (k + rl <= t->len && !memcmp(s + k, d->replacement, rl)) {
				if (!(i == 0 && d->prepend_scheme != TPS_NEVER))
					lf_buf_addch(&nt, ' ');
				k += rl;
			} else {
				lf_buf_addch(&nt, s[k++]);
			}
		}
		lf_buf_free(t);
		*t = nt;
	}
}

static void run(const struct tok_dec *d, struct toks *l, struct lf_regex_scratch *rx)
{
	switch (d->type) {
	case TD_SEQUENCE:
		for (size_t i = 0; i < d->nkids; i++)
			run(&d->kids[i], l, rx);
		break;
	case TD_BYTE_LEVEL:
		byte_level(l);
		break;
	case TD_BYTE_FALLBACK:
		byte_fallback(l);
		break;
	case TD_FUSE:
		fuse(l);
		break;
	case TD_STRIP:
		strip(d, l);
		break;
	case TD_REPLACE:
		replace(d, l, rx);
		break;
	case TD_METASPACE:
		metaspace(d, l);
		break;
	}
}

int lf_tokenizer_decode(const struct lf_tokenizer *t, const int32_t *ids, size_t n, bool skip_special,
			struct lf_buf *out)
{
	struct toks l = { 0 };
	for (size_t i = 0; i < n; i++) {
		size_t len;
		const char *tok = lf_tokenizer_id_to_token(t, ids[i], &len);
		if (!tok) {
			for (size_t k = 0; k < l.cap; k++)
				lf_buf_free(&l.v[k]);
			free(l.v);
			return lf_fail("id %d (position %zu) is not in the vocabulary (%zu ids)", ids[i], i,
				       lf_tokenizer_vocab_size(t));
		}
		if (skip_special && t->added_index_by_id[ids[i]] >= 0 && t->added[t->added_index_by_id[ids[i]]].special)
			continue;
		lf_buf_add(tok_push(&l), tok, len);
	}
	if (t->dec) {
		struct lf_regex_scratch *rx = lf_regex_scratch_new();
		run(t->dec, &l, rx);
		lf_regex_scratch_free(rx);
		for (size_t i = 0; i < l.n; i++)
			lf_buf_add(out, l.v[i].data ? l.v[i].data : "", l.v[i].len);
	} else {
		for (size_t i = 0; i < l.n; i++) {
			if (i)
				lf_buf_addch(out, ' ');
			lf_buf_add(out, l.v[i].data ? l.v[i].data : "", l.v[i].len);
		}
	}
	for (size_t i = 0; i < l.cap; i++)
		lf_buf_free(&l.v[i]);
	free(l.v);
	return 0;
}

int lf_tokenizer_decode_generated(const struct lf_tokenizer *t, const int32_t *ids, size_t n, bool skip_special,
				  struct lf_buf *out)
{
	int32_t *known = lf_malloc((n + 1) * sizeof *known);
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		size_t len;
		if (lf_tokenizer_id_to_token(t, ids[i], &len))
			known[k++] = ids[i];
	}
	int rc = lf_tokenizer_decode(t, known, k, skip_special, out);
	free(known);
	return rc;
}

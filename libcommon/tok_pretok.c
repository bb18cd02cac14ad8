/*
 * tok_pretok.c — pre-tokenizers (the library's pre_tokenizers module): each
 * splits every current piece into smaller ones, some rewriting the text
 * (ByteLevel maps bytes to its printable alphabet, Metaspace replaces
 * spaces).  Splits follow the library's NormalizedString::split: a pattern
 * yields matches and the gaps between them, and a behavior decides which are
 * kept and what is merged with what.
 */
#include "tok_internal.h"
#include "error.h"
#include "unicode.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct span {
	size_t start, end;
	bool match;
};

struct spans {
	struct span *v;
	size_t n, cap;
};

static void span_push(struct spans *s, size_t a, size_t b, bool match)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 32;
		s->v = lf_realloc(s->v, s->cap * sizeof *s->v);
	}
	s->v[s->n++] = (struct span){ a, b, match };
}

/* ---- pieces ---- */

static struct tok_piece *pieces(struct lf_tok_state *st)
{
	return st->pieces;
}

static void out_piece(struct lf_tok_state *st, size_t off, size_t len, bool first)
{
	if (!len)
		return;
	if (st->npieces2 == st->cap_pieces2) {
		st->cap_pieces2 = st->cap_pieces2 ? 2 * st->cap_pieces2 : 64;
		st->pieces2 = lf_realloc(st->pieces2, st->cap_pieces2 * sizeof(struct tok_piece));
	}
	((struct tok_piece *)st->pieces2)[st->npieces2++] = (struct tok_piece){ off, len, first };
}

static void swap_pieces(struct lf_tok_state *st)
{
	void *p = st->pieces;
	size_t cap = st->cap_pieces;
	st->pieces = st->pieces2;
	st->cap_pieces = st->cap_pieces2;
	st->npieces = st->npieces2;
	st->pieces2 = p;
	st->cap_pieces2 = cap;
	st->npieces2 = 0;
}

static size_t add_text(struct lf_tok_state *st, const char *s, size_t n)
{
	size_t off = st->pieces_text.len;
	lf_buf_add(&st->pieces_text, s, n);
	return off;
}

/* Keep the spans a behavior keeps, merged as it merges, as output pieces. */
static void emit_spans(struct lf_tok_state *st, const struct tok_piece *p, struct spans *sp, enum tok_behavior b)
{
	struct spans out = { 0 };
	bool prev = false;
	switch (b) {
	case TB_ISOLATED:
	case TB_REMOVED:
		for (size_t i = 0; i < sp->n; i++)
			span_push(&out, sp->v[i].start, sp->v[i].end, b == TB_REMOVED && sp->v[i].match);
		break;
	case TB_CONTIGUOUS:
		for (size_t i = 0; i < sp->n; i++) {
			if (out.n && sp->v[i].match == prev)
				out.v[out.n - 1].end = sp->v[i].end;
			else
				span_push(&out, sp->v[i].start, sp->v[i].end, false);
			prev = sp->v[i].match;
		}
		break;
	case TB_MERGED_WITH_PREVIOUS:
		for (size_t i = 0; i < sp->n; i++) {
			if (sp->v[i].match && !prev && out.n)
				out.v[out.n - 1].end = sp->v[i].end;
			else
				span_push(&out, sp->v[i].start, sp->v[i].end, false);
			prev = sp->v[i].match;
		}
		break;
	case TB_MERGED_WITH_NEXT:
		for (size_t k = sp->n; k-- > 0;) {
			if (sp->v[k].match && !prev && out.n)
				out.v[out.n - 1].start = sp->v[k].start;
			else
				span_push(&out, sp->v[k].start, sp->v[k].end, false);
			prev = sp->v[k].match;
		}
		for (size_t i = 0, j = out.n; i + 1 < j; i++, j--) {
			struct span t = out.v[i];
			out.v[i] = out.v[j - 1];
			out.v[j - 1] = t;
		}
		break;
	}
	for (size_t i = 0; i < out.n; i++)
		if (!out.v[i].match)
			out_piece(st, p->off + out.v[i].start, out.v[i].end - out.v[i].start, p->first && out.v[i].start == 0);
	free(out.v);
}

/* Pattern::find_matches: the matches and the gaps between them. */
struct match_ctx {
	struct spans *sp;
	size_t prev;
};

static void on_match(size_t start, size_t end, void *arg)
{
	struct match_ctx *m = arg;
	if (m->prev != start)
		span_push(m->sp, m->prev, start, false);
	span_push(m->sp, start, end, true);
	m->prev = end;
}

static void pattern_spans(const struct tok_pattern *pat, struct lf_tok_state *st, const char *s, size_t n,
			  struct spans *sp)
{
	sp->n = 0;
	if (!n) {
		span_push(sp, 0, 0, false);
		return;
	}
	struct match_ctx m = { sp, 0 };
	tok_pattern_each(pat, st->rx, s, n, on_match, &m);
	if (m.prev != n)
		span_push(sp, m.prev, n, false);
}

static void regex_spans(const struct lf_regex *re, struct lf_tok_state *st, const char *s, size_t n,
			struct spans *sp)
{
	struct tok_pattern pat = { .re = (struct lf_regex *)re };
	pattern_spans(&pat, st, s, n, sp);
}

/* A character test as a pattern: each matching character is one match. */
static void char_spans(bool (*is)(uint32_t), const char *s, size_t n, struct spans *sp)
{
	sp->n = 0;
	if (!n) {
		span_push(sp, 0, 0, false);
		return;
	}
	size_t last = 0, i = 0;
	while (i < n) {
		uint32_t cp;
		size_t k = lf_utf8_decode(s + i, n - i, &cp);
		if (!k)
			k = 1, cp = 0xfffd;
		if (is(cp)) {
			if (last < i)
				span_push(sp, last, i, false);
			span_push(sp, i, i + k, true);
			last = i + k;
		}
		i += k;
	}
	if (last < n)
		span_push(sp, last, n, false);
}

/* The Whitespace pre-tokenizer's \w+|[^\w\s]+ (Rust regex): runs of word
 * characters and runs of other non-space characters are matches. */
static void whitespace_spans(const char *s, size_t n, struct spans *sp)
{
	sp->n = 0;
	if (!n) {
		span_push(sp, 0, 0, false);
		return;
	}
	size_t i = 0, last = 0;
	while (i < n) {
		uint32_t cp;
		size_t k = lf_utf8_decode(s + i, n - i, &cp);
		if (!k)
			k = 1, cp = 0xfffd;
		if (lf_uni_is_whitespace(cp)) {
			i += k;
			continue;
		}
		bool word = lf_uni_is_word_rust(cp);
		size_t j = i + k;
		while (j < n) {
			size_t k2 = lf_utf8_decode(s + j, n - j, &cp);
			if (!k2)
				k2 = 1, cp = 0xfffd;
			if (lf_uni_is_whitespace(cp) || lf_uni_is_word_rust(cp) != word)
				break;
			j += k2;
		}
		if (last < i)
			span_push(sp, last, i, false);
		span_push(sp, i, j, true);
		last = i = j;
	}
	if (last < n)
		span_push(sp, last, n, false);
}

static void invert(struct spans *sp)
{
	for (size_t i = 0; i < sp->n; i++)
		sp->v[i].match = !sp->v[i].match;
}

/* ---- the byte-level alphabet ---- */

static char bl_char[256][2];
static uint8_t bl_len[256];
static int16_t bl_byte[512]; /* the inverse: a code point below 512 -> its byte, or -1 */
static pthread_once_t bl_once = PTHREAD_ONCE_INIT;

static void build_alphabet(void)
{
	for (int i = 0; i < 512; i++)
		bl_byte[i] = -1;
	int n = 0;
	for (int b = 0; b < 256; b++) {
		bool printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
		uint32_t cp = printable ? (uint32_t)b : (uint32_t)(256 + n++);
		char enc[4];
		bl_len[b] = (uint8_t)lf_utf8_encode(cp, enc);
		memcpy(bl_char[b], enc, bl_len[b]);
		bl_byte[cp] = (int16_t)b;
	}
}

void tok_pretok_init(void)
{
	pthread_once(&bl_once, build_alphabet);
}

int tok_byte_level_byte(uint32_t cp)
{
	pthread_once(&bl_once, build_alphabet);
	return cp < 512 ? bl_byte[cp] : -1;
}

/* ---- one pre-tokenizer over every piece ---- */

static void apply(const struct lf_tokenizer *t, const struct tok_pretok *pt, struct lf_tok_state *st)
{
	if (pt->type == TP_SEQUENCE) {
		for (size_t i = 0; i < pt->nkids; i++)
			apply(t, &pt->kids[i], st);
		return;
	}
	struct spans sp = { 0 };
	st->npieces2 = 0;
	for (size_t i = 0; i < st->npieces; i++) {
		struct tok_piece p = pieces(st)[i];
		switch (pt->type) {
		case TP_SPLIT:
			pattern_spans(&pt->pat, st, st->pieces_text.data + p.off, p.len, &sp);
			if (pt->invert)
				invert(&sp);
			emit_spans(st, &p, &sp, pt->behavior);
			break;
		case TP_BYTE_LEVEL: {
			if (pt->add_prefix_space && st->pieces_text.data[p.off] != ' ') {
				/* room first: the piece is copied from the buffer itself */
				lf_buf_grow(&st->pieces_text, p.len + 1);
				size_t off = add_text(st, " ", 1);
				lf_buf_add(&st->pieces_text, st->pieces_text.data + p.off, p.len);
				p.off = off;
				p.len += 1;
			}
			size_t first_out = st->npieces2;
			if (pt->use_regex) {
				regex_spans(t->byte_level_re, st, st->pieces_text.data + p.off, p.len, &sp);
				emit_spans(st, &p, &sp, TB_ISOLATED);
			} else {
				out_piece(st, p.off, p.len, p.first);
			}
			/* map each new piece's bytes to the alphabet */
			for (size_t k = first_out; k < st->npieces2; k++) {
				struct tok_piece *q = &((struct tok_piece *)st->pieces2)[k];
				size_t off = st->pieces_text.len;
				for (size_t j = 0; j < q->len; j++) {
					uint8_t b = (uint8_t)st->pieces_text.data[q->off + j];
					lf_buf_add(&st->pieces_text, bl_char[b], bl_len[b]);
				}
				q->len = st->pieces_text.len - off;
				q->off = off;
			}
			break;
		}
		case TP_METASPACE: {
			size_t off = st->pieces_text.len;
			const char *rep = pt->replacement;
			size_t rl = pt->replacement_len;
			bool prepend = pt->prepend_scheme == TPS_ALWAYS || (pt->prepend_scheme == TPS_FIRST && p.first);
			/* replace first, then test the result's start, as the library does */
			struct lf_buf tmp = LF_BUF_INIT;
			for (size_t j = 0; j < p.len; j++) {
				char c = st->pieces_text.data[p.off + j];
				if (c == ' ')
					lf_buf_add(&tmp, rep, rl);
				else
					lf_buf_addch(&tmp, c);
			}
			bool starts = tmp.len >= rl && !memcmp(tmp.data, rep, rl);
			if (prepend && !starts)
				lf_buf_add(&st->pieces_text, rep, rl);
			lf_buf_add(&st->pieces_text, tmp.data ? tmp.data : "", tmp.len);
			lf_buf_free(&tmp);
			struct tok_piece q = { off, st->pieces_text.len - off, p.first };
			if (pt->split) {
				sp.n = 0;
				const char *s = st->pieces_text.data + q.off;
				size_t last = 0;
				for (size_t j = 0; j + rl <= q.len;) {
					if (!memcmp(s + j, rep, rl)) {
						if (last < j)
							span_push(&sp, last, j, false);
						span_push(&sp, j, j + rl, true);
						last = j + rl;
						j += rl;
					} else {
						j++;
					}
				}
				if (last < q.len || !q.len)
					span_push(&sp, last, q.len, false);
				emit_spans(st, &q, &sp, TB_MERGED_WITH_NEXT);
			} else {
				out_piece(st, q.off, q.len, q.first);
			}
			break;
		}
		case TP_DIGITS:
			char_spans(lf_uni_is_numeric, st->pieces_text.data + p.off, p.len, &sp);
			emit_spans(st, &p, &sp, pt->individual_digits ? TB_ISOLATED : TB_CONTIGUOUS);
			break;
		case TP_PUNCTUATION:
			char_spans(lf_uni_is_punct_old, st->pieces_text.data + p.off, p.len, &sp);
			emit_spans(st, &p, &sp, pt->behavior);
			break;
		case TP_WHITESPACE_SPLIT:
			char_spans(lf_uni_is_whitespace, st->pieces_text.data + p.off, p.len, &sp);
			emit_spans(st, &p, &sp, TB_REMOVED);
			break;
		case TP_WHITESPACE:
			whitespace_spans(st->pieces_text.data + p.off, p.len, &sp);
			invert(&sp);
			emit_spans(st, &p, &sp, TB_REMOVED);
			break;
		case TP_BERT:
			/* whitespace removed, then punctuation isolated */
			char_spans(lf_uni_is_whitespace, st->pieces_text.data + p.off, p.len, &sp);
			{
				size_t mark = st->npieces2;
				emit_spans(st, &p, &sp, TB_REMOVED);
				size_t end = st->npieces2;
				struct tok_piece *tmp = lf_malloc((end - mark + 1) * sizeof *tmp);
				memcpy(tmp, (struct tok_piece *)st->pieces2 + mark, (end - mark) * sizeof *tmp);
				st->npieces2 = mark;
				for (size_t k = 0; k < end - mark; k++) {
					char_spans(lf_uni_is_punct_old, st->pieces_text.data + tmp[k].off, tmp[k].len, &sp);
					emit_spans(st, &tmp[k], &sp, TB_ISOLATED);
				}
				free(tmp);
			}
			break;
		default:
			break;
		}
	}
	free(sp.v);
	swap_pieces(st);
}

void tok_pretokenize(const struct lf_tokenizer *t, struct lf_tok_state *st, const char *text, size_t len, bool first)
{
	lf_buf_reset(&st->pieces_text);
	st->npieces = 0;
	st->npieces2 = 0;
	if (!len)
		return;
	size_t off = add_text(st, text, len);
	out_piece(st, off, len, first);
	swap_pieces(st);
	if (t->pretok)
		apply(t, t->pretok, st);
}

/*
 * tok_encode.c — encoding (the library's TokenizerImpl::encode): added tokens
 * split out of the raw text, the rest normalized, added tokens split out of
 * the normalized text, pre-tokenized, run through the model; then the
 * post-processor's special tokens when asked for.  Also the per-thread state.
 */
#include "tok_internal.h"
#include "error.h"
#include "unicode.h"

#include <stdlib.h>
#include <string.h>

#define CACHE_WORDS (1u << 16)
#define CACHE_KEY_BYTES (4u << 20)

struct lf_tok_state *lf_tok_state_new(const struct lf_tokenizer *t)
{
	tok_pretok_init();
	struct lf_tok_state *st = lf_calloc(1, sizeof *st);
	st->t = t;
	st->rx = lf_regex_scratch_new();
	st->cache_limit = CACHE_WORDS;
	lf_strmap_init(&st->cache, CACHE_WORDS);
	lf_buf_grow(&st->cache_keys, CACHE_KEY_BYTES);
	return st;
}

void lf_tok_state_free(struct lf_tok_state *st)
{
	if (!st)
		return;
	lf_regex_scratch_free(st->rx);
	lf_strmap_free(&st->cache);
	lf_buf_free(&st->cache_keys);
	lf_idvec_free(&st->cache_ids);
	lf_buf_free(&st->norm);
	lf_buf_free(&st->tmp);
	lf_buf_free(&st->pieces_text);
	lf_buf_free(&st->flags);
	lf_buf_free(&st->flags_tmp);
	free(st->pieces);
	free(st->pieces2);
	free(st->symbols);
	free(st->heap);
	free(st);
}

/* ---- \w and \s next to an added token (single_word, lstrip, rstrip) ---- */

static bool word_before(const char *s, size_t at)
{
	if (!at)
		return false;
	size_t k = 1;
	while (k < at && ((uint8_t)s[at - k] & 0xc0) == 0x80)
		k++;
	uint32_t cp;
	return lf_utf8_decode(s + at - k, k, &cp) == k && lf_uni_is_word_rust(cp);
}

static bool word_after(const char *s, size_t n, size_t at)
{
	uint32_t cp;
	return at < n && lf_utf8_decode(s + at, n - at, &cp) && lf_uni_is_word_rust(cp);
}

static size_t spaces_before(const char *s, size_t at)
{
	while (at > 0) {
		size_t k = 1;
		while (k < at && ((uint8_t)s[at - k] & 0xc0) == 0x80)
			k++;
		uint32_t cp;
		if (lf_utf8_decode(s + at - k, k, &cp) != k || !lf_uni_is_whitespace(cp))
			break;
		at -= k;
	}
	return at;
}

static size_t spaces_after(const char *s, size_t n, size_t at)
{
	while (at < n) {
		uint32_t cp;
		size_t k = lf_utf8_decode(s + at, n - at, &cp);
		if (!k || !lf_uni_is_whitespace(cp))
			break;
		at += k;
	}
	return at;
}

/* ---- the pipeline ---- */

static void model_piece(const struct lf_tokenizer *t, struct lf_tok_state *st, const char *s, size_t n, bool first,
			struct lf_idvec *out)
{
	tok_pretokenize(t, st, s, n, first);
	for (size_t i = 0; i < st->npieces; i++) {
		const struct tok_piece *p = &((const struct tok_piece *)st->pieces)[i];
		tok_bpe_encode(t, st, st->pieces_text.data + p->off, p->len, out);
	}
}

typedef void (*gap_fn)(const struct lf_tokenizer *t, struct lf_tok_state *st, const char *s, size_t n,
		       const uint8_t *user, bool first, struct lf_idvec *out);

/* AddedVocabulary::find_matches over s, as splits: gaps go to on_gap, added
 * tokens to out. */
static void split_added(const struct lf_tokenizer *t, struct lf_tok_state *st, const struct tok_trie *trie,
			const char *s, size_t n, const uint8_t *user, bool first, gap_fn on_gap, struct lf_idvec *out)
{
	size_t offset = 0, from = 0, ms, me, idx;
	while (tok_added_find(t, trie, s, n, from, user, &ms, &me, &idx)) {
		from = me;
		const struct tok_added *a = &t->added[idx];
		size_t start = ms, stop = me;
		if (a->special && t->encode_special_tokens)
			continue;
		if (a->single_word && (word_before(s, ms) || word_after(s, n, me)))
			continue;
		if (a->lstrip) {
			size_t ns = spaces_before(s, start);
			start = ns > offset ? ns : offset;
		}
		if (a->rstrip)
			stop = spaces_after(s, n, stop);
		if (offset < start)
			on_gap(t, st, s + offset, start - offset, user ? user + offset : NULL, first && offset == 0, out);
		lf_idvec_push(out, a->id);
		offset = stop;
	}
	if (offset < n)
		on_gap(t, st, s + offset, n - offset, user ? user + offset : NULL, first && offset == 0, out);
}

static void normalized_gap(const struct lf_tokenizer *t, struct lf_tok_state *st, const char *s, size_t n,
			   const uint8_t *user, bool first, struct lf_idvec *out)
{
	(void)user;
	model_piece(t, st, s, n, first, out);
}

static void raw_gap(const struct lf_tokenizer *t, struct lf_tok_state *st, const char *s, size_t n,
		    const uint8_t *user, bool first, struct lf_idvec *out)
{
	const char *text = s;
	size_t len = n;
	const uint8_t *flags = user;
	/* the state's buffers: raw_gap is not re-entered while they are in use */
	struct lf_buf *norm = &st->norm, *nflags = &st->flags_tmp, start = LF_BUF_INIT;
	lf_buf_reset(norm);
	lf_buf_reset(nflags);
	if (t->norm) {
		if (first && t->track_start && n) {
			/* mark the first character, to see whether it survives */
			if (user)
				lf_buf_add(&start, user, n);
			else
				for (size_t i = 0; i < n; i++)
					lf_buf_addch(&start, 0);
			uint32_t cp;
			size_t k = lf_utf8_decode(s, n, &cp);
			for (size_t i = 0; i < (k ? k : 1); i++)
				start.data[i] |= TOK_FLAG_START;
			flags = (const uint8_t *)start.data;
		}
		tok_normalize(t->norm, st->rx, s, n, flags, norm, flags ? nflags : NULL);
		text = norm->data ? norm->data : "";
		len = norm->len;
		if (start.data)
			first = len && (nflags->data[0] & TOK_FLAG_START);
		flags = flags ? (const uint8_t *)nflags->data : NULL;
	}
	split_added(t, st, &t->norm_trie, text, len, flags, first, normalized_gap, out);
	lf_buf_free(&start);
}

/* ---- post-processors ---- */

static void post_process(const struct tok_post *p, struct lf_idvec *ids, size_t base)
{
	size_t n = ids->n - base;
	int32_t *seq = lf_malloc((n ? n : 1) * sizeof *seq);
	if (n)
		memcpy(seq, ids->v + base, n * sizeof *seq);
	switch (p->type) {
	case TPP_SEQUENCE:
		free(seq);
		for (size_t i = 0; i < p->nkids; i++)
			post_process(&p->kids[i], ids, base);
		return;
	case TPP_BYTE_LEVEL:
		free(seq);
		return;
	case TPP_TEMPLATE:
		ids->n = base;
		for (size_t i = 0; i < p->nitems; i++) {
			if (p->items[i].sequence)
				for (size_t k = 0; k < n; k++)
					lf_idvec_push(ids, seq[k]);
			else
				for (size_t k = 0; k < p->items[i].nids; k++)
					lf_idvec_push(ids, p->items[i].ids[k]);
		}
		break;
	case TPP_ROBERTA:
	case TPP_BERT:
		ids->n = base;
		lf_idvec_push(ids, p->cls);
		for (size_t k = 0; k < n; k++)
			lf_idvec_push(ids, seq[k]);
		lf_idvec_push(ids, p->sep);
		break;
	}
	free(seq);
}

void lf_tokenizer_encode(const struct lf_tokenizer *t, struct lf_tok_state *st, const char *text, size_t len,
			 const struct lf_range *user, size_t nuser, bool add_special, struct lf_idvec *out)
{
	size_t base = out->n;
	const uint8_t *flags = NULL;
	if (user && nuser) {
		lf_buf_reset(&st->flags);
		lf_buf_grow(&st->flags, len);
		memset(st->flags.data, 0, len);
		for (size_t i = 0; i < nuser; i++)
			for (size_t k = user[i].start; k < user[i].end && k < len; k++)
				st->flags.data[k] = TOK_FLAG_USER;
		flags = (const uint8_t *)st->flags.data;
	}
	split_added(t, st, &t->raw_trie, text, len, flags, true, raw_gap, out);
	if (add_special && t->post)
		post_process(t->post, out, base);
}

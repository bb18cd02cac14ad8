/*
 * tok_load.c — reading tokenizer.json and tokenizer_config.json into a
 * tokenizer (see tok_internal.h), the fingerprint, and token lookups.
 *
 * The model's vocabulary and merges (most of the file) are read with the
 * pull scanner; the small pipeline components are handed to jansson.  A
 * component lf does not implement is an error naming it: never ids that
 * silently differ from the library's.
 */
#include "tok_internal.h"
#include "error.h"
#include "jsonscan.h"
#include "unicode.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

void lf_idvec_push(struct lf_idvec *v, int32_t id)
{
	if (v->n == v->cap) {
		v->cap = v->cap ? 2 * v->cap : 64;
		v->v = lf_realloc(v->v, v->cap * sizeof *v->v);
	}
	v->v[v->n++] = id;
}

void lf_idvec_free(struct lf_idvec *v)
{
	free(v->v);
	memset(v, 0, sizeof *v);
}

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		lf_fail("%s: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	struct stat st;
	size_t size = fstat(fileno(f), &st) == 0 && st.st_size > 0 ? (size_t)st.st_size : 0;
	struct lf_buf b = LF_BUF_INIT;
	lf_buf_grow(&b, size + 1);
	char chunk[1 << 16];
	size_t k;
	if (size) { /* one read into place */
		b.len = fread(b.data, 1, size, f);
		b.data[b.len] = 0;
	}
	while ((k = fread(chunk, 1, sizeof chunk, f)) > 0)
		lf_buf_add(&b, chunk, k);
	int bad = ferror(f);
	fclose(f);
	if (bad) {
		lf_buf_free(&b);
		lf_fail("%s: read failed", path);
		return NULL;
	}
	return lf_buf_detach(&b, len);
}

/* ---- components (jansson) ---- */

struct loader {
	struct lf_tokenizer *t;
	const char *file;
};

static const char *jstr(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static bool jbool(const json_t *o, const char *key, bool dflt)
{
	const json_t *v = json_object_get(o, key);
	return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static int parse_pattern(struct loader *L, const json_t *o, const char *what, struct tok_pattern *p)
{
	const json_t *pat = json_object_get(o, "pattern");
	const char *s;
	if ((s = jstr(pat, "String"))) {
		p->lit_len = json_string_length(json_object_get(pat, "String"));
		if (!p->lit_len) /* the library makes it a regex matching between every two characters */
			return lf_fail("%s: %s: an empty String pattern is not supported by lf", L->file, what);
		p->lit = lf_strndup(s, p->lit_len);
		return 0;
	}
	if ((s = jstr(pat, "Regex"))) {
		p->re = lf_regex_compile(s, json_string_length(json_object_get(pat, "Regex")));
		if (!p->re)
			return lf_fail_prefix("%s: %s pattern", L->file, what);
		return 0;
	}
	return lf_fail("%s: %s has no String or Regex pattern", L->file, what);
}

static int parse_behavior(struct loader *L, const json_t *o, enum tok_behavior dflt, enum tok_behavior *b)
{
	const char *s = jstr(o, "behavior");
	static const char *names[] = { "Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous" };
	*b = dflt;
	if (!s)
		return 0;
	for (int i = 0; i < 5; i++)
		if (!strcmp(s, names[i])) {
			*b = (enum tok_behavior)i;
			return 0;
		}
	return lf_fail("%s: unknown split behavior '%s'", L->file, s);
}

static int parse_prepend_scheme(struct loader *L, const json_t *o, enum tok_prepend *p)
{
	const char *s = jstr(o, "prepend_scheme");
	if (s) {
		if (!strcmp(s, "always"))
			*p = TPS_ALWAYS;
		else if (!strcmp(s, "first"))
			*p = TPS_FIRST;
		else if (!strcmp(s, "never"))
			*p = TPS_NEVER;
		else
			return lf_fail("%s: unknown prepend_scheme '%s'", L->file, s);
		return 0;
	}
	/* older files: add_prefix_space */
	*p = jbool(o, "add_prefix_space", true) ? TPS_ALWAYS : TPS_NEVER;
	return 0;
}

static int parse_replacement(struct loader *L, const json_t *o, char **out, size_t *len)
{
	const char *s = jstr(o, "replacement");
	if (!s)
		s = "\xe2\x96\x81"; /* ▁ */
	uint32_t cp;
	size_t n = strlen(s);
	if (!n || lf_utf8_decode(s, n, &cp) != n)
		return lf_fail("%s: Metaspace replacement must be one character", L->file);
	*out = lf_strdup(s);
	*len = n;
	return 0;
}

static int parse_norm(struct loader *L, const json_t *o, struct tok_norm *n)
{
	memset(n, 0, sizeof *n);
	const char *type = jstr(o, "type");
	if (!type)
		return lf_fail("%s: normalizer without a type", L->file);
	if (!strcmp(type, "Sequence")) {
		const json_t *list = json_object_get(o, "normalizers");
		n->type = TN_SEQUENCE;
		n->nkids = json_array_size(list);
		n->kids = lf_calloc(n->nkids ? n->nkids : 1, sizeof *n->kids);
		for (size_t i = 0; i < n->nkids; i++)
			if (parse_norm(L, json_array_get(list, i), &n->kids[i]) < 0)
				return -1;
		return 0;
	}
	static const struct {
		const char *name;
		enum tn_type type;
	} simple[] = { { "NFC", TN_NFC }, { "NFD", TN_NFD }, { "NFKC", TN_NFKC }, { "NFKD", TN_NFKD },
		       { "Lowercase", TN_LOWERCASE } };
	for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++)
		if (!strcmp(type, simple[i].name)) {
			n->type = simple[i].type;
			return 0;
		}
	if (!strcmp(type, "Prepend")) {
		n->type = TN_PREPEND;
		const char *s = jstr(o, "prepend");
		if (!s)
			return lf_fail("%s: Prepend without 'prepend'", L->file);
		n->text_len = json_string_length(json_object_get(o, "prepend"));
		n->text = lf_strndup(s, n->text_len);
		return 0;
	}
	if (!strcmp(type, "Replace")) {
		n->type = TN_REPLACE;
		const char *s = jstr(o, "content");
		if (!s)
			return lf_fail("%s: Replace without 'content'", L->file);
		n->text_len = json_string_length(json_object_get(o, "content"));
		n->text = lf_strndup(s, n->text_len);
		return parse_pattern(L, o, "Replace normalizer", &n->pat);
	}
	if (!strcmp(type, "Strip")) {
		n->type = TN_STRIP;
		n->left = jbool(o, "strip_left", true);
		n->right = jbool(o, "strip_right", true);
		return 0;
	}
	return lf_fail("%s: normalizer '%s' is not supported by lf", L->file, type);
}

static int parse_pretok(struct loader *L, const json_t *o, struct tok_pretok *p)
{
	memset(p, 0, sizeof *p);
	const char *type = jstr(o, "type");
	if (!type)
		return lf_fail("%s: pre-tokenizer without a type", L->file);
	if (!strcmp(type, "Sequence")) {
		const json_t *list = json_object_get(o, "pretokenizers");
		p->type = TP_SEQUENCE;
		p->nkids = json_array_size(list);
		p->kids = lf_calloc(p->nkids ? p->nkids : 1, sizeof *p->kids);
		for (size_t i = 0; i < p->nkids; i++)
			if (parse_pretok(L, json_array_get(list, i), &p->kids[i]) < 0)
				return -1;
		return 0;
	}
	if (!strcmp(type, "ByteLevel")) {
		p->type = TP_BYTE_LEVEL;
		p->add_prefix_space = jbool(o, "add_prefix_space", true);
		p->use_regex = jbool(o, "use_regex", true);
		if (p->use_regex && !L->t->byte_level_re) {
			static const char gpt2[] =
				"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
			L->t->byte_level_re = lf_regex_compile(gpt2, sizeof gpt2 - 1);
			if (!L->t->byte_level_re)
				return -1;
		}
		return 0;
	}
	if (!strcmp(type, "Split")) {
		p->type = TP_SPLIT;
		p->invert = jbool(o, "invert", false);
		if (parse_behavior(L, o, TB_ISOLATED, &p->behavior) < 0)
			return -1;
		return parse_pattern(L, o, "Split pre-tokenizer", &p->pat);
	}
	if (!strcmp(type, "Metaspace")) {
		p->type = TP_METASPACE;
		p->split = jbool(o, "split", true);
		if (parse_replacement(L, o, &p->replacement, &p->replacement_len) < 0)
			return -1;
		return parse_prepend_scheme(L, o, &p->prepend_scheme);
	}
	if (!strcmp(type, "Digits")) {
		p->type = TP_DIGITS;
		p->individual_digits = jbool(o, "individual_digits", false);
		return 0;
	}
	if (!strcmp(type, "Punctuation")) {
		p->type = TP_PUNCTUATION;
		return parse_behavior(L, o, TB_ISOLATED, &p->behavior);
	}
	if (!strcmp(type, "Whitespace")) {
		p->type = TP_WHITESPACE;
		return 0;
	}
	if (!strcmp(type, "WhitespaceSplit")) {
		p->type = TP_WHITESPACE_SPLIT;
		return 0;
	}
	if (!strcmp(type, "BertPreTokenizer")) {
		p->type = TP_BERT;
		return 0;
	}
	return lf_fail("%s: pre-tokenizer '%s' is not supported by lf", L->file, type);
}

/* [token, id] of Roberta/Bert processors: the id as written. */
static int token_pair(struct loader *L, const json_t *o, const char *key, int32_t *id)
{
	const json_t *v = json_object_get(o, key);
	if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_integer(json_array_get(v, 1)) ||
	    json_integer_value(json_array_get(v, 1)) < 0 || json_integer_value(json_array_get(v, 1)) > INT32_MAX)
		return lf_fail("%s: post-processor '%s' is not [token, id]", L->file, key);
	*id = (int32_t)json_integer_value(json_array_get(v, 1));
	return 0;
}

static int parse_post(struct loader *L, const json_t *o, struct tok_post *p)
{
	memset(p, 0, sizeof *p);
	const char *type = jstr(o, "type");
	if (!type)
		return lf_fail("%s: post-processor without a type", L->file);
	if (!strcmp(type, "Sequence")) {
		const json_t *list = json_object_get(o, "processors");
		p->type = TPP_SEQUENCE;
		p->nkids = json_array_size(list);
		p->kids = lf_calloc(p->nkids ? p->nkids : 1, sizeof *p->kids);
		for (size_t i = 0; i < p->nkids; i++)
			if (parse_post(L, json_array_get(list, i), &p->kids[i]) < 0)
				return -1;
		return 0;
	}
	if (!strcmp(type, "ByteLevel")) {
		p->type = TPP_BYTE_LEVEL;
		return 0;
	}
	if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
		p->type = !strcmp(type, "BertProcessing") ? TPP_BERT : TPP_ROBERTA;
		return token_pair(L, o, "cls", &p->cls) < 0 || token_pair(L, o, "sep", &p->sep) < 0 ? -1 : 0;
	}
	if (!strcmp(type, "TemplateProcessing")) {
		p->type = TPP_TEMPLATE;
		const json_t *single = json_object_get(o, "single"), *specials = json_object_get(o, "special_tokens");
		p->nitems = json_array_size(single);
		p->items = lf_calloc(p->nitems ? p->nitems : 1, sizeof *p->items);
		for (size_t i = 0; i < p->nitems; i++) {
			const json_t *item = json_array_get(single, i), *v;
			if ((v = json_object_get(item, "Sequence"))) {
				p->items[i].sequence = true;
				continue;
			}
			const char *id = jstr(json_object_get(item, "SpecialToken"), "id");
			const json_t *spec = json_object_get(specials, id ? id : "");
			const json_t *ids = json_object_get(spec, "ids");
			if (!id || !json_is_array(ids))
				return lf_fail("%s: TemplateProcessing item %zu names no known special token", L->file, i);
			p->items[i].nids = json_array_size(ids);
			p->items[i].ids = lf_calloc(p->items[i].nids ? p->items[i].nids : 1, sizeof(int32_t));
			for (size_t k = 0; k < p->items[i].nids; k++) {
				const json_t *x = json_array_get(ids, k);
				if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > INT32_MAX)
					return lf_fail("%s: TemplateProcessing special token '%s': ids[%zu] is not a token id",
						       L->file, id, k);
				p->items[i].ids[k] = (int32_t)json_integer_value(x);
			}
		}
		return 0;
	}
	return lf_fail("%s: post-processor '%s' is not supported by lf", L->file, type);
}

static int parse_dec(struct loader *L, const json_t *o, struct tok_dec *d)
{
	memset(d, 0, sizeof *d);
	const char *type = jstr(o, "type");
	if (!type)
		return lf_fail("%s: decoder without a type", L->file);
	if (!strcmp(type, "Sequence")) {
		const json_t *list = json_object_get(o, "decoders");
		d->type = TD_SEQUENCE;
		d->nkids = json_array_size(list);
		d->kids = lf_calloc(d->nkids ? d->nkids : 1, sizeof *d->kids);
		for (size_t i = 0; i < d->nkids; i++)
			if (parse_dec(L, json_array_get(list, i), &d->kids[i]) < 0)
				return -1;
		return 0;
	}
	if (!strcmp(type, "ByteLevel")) {
		d->type = TD_BYTE_LEVEL;
		return 0;
	}
	if (!strcmp(type, "ByteFallback")) {
		d->type = TD_BYTE_FALLBACK;
		return 0;
	}
	if (!strcmp(type, "Fuse")) {
		d->type = TD_FUSE;
		return 0;
	}
	if (!strcmp(type, "Metaspace")) {
		d->type = TD_METASPACE;
		if (parse_replacement(L, o, &d->replacement, &d->replacement_len) < 0)
			return -1;
		return parse_prepend_scheme(L, o, &d->prepend_scheme);
	}
	if (!strcmp(type, "Strip")) {
		d->type = TD_STRIP;
		const char *c = jstr(o, "content");
		uint32_t cp;
		if (!c || !*c || lf_utf8_decode(c, strlen(c), &cp) != strlen(c))
			return lf_fail("%s: Strip decoder content must be one character", L->file);
		const json_t *start = json_object_get(o, "start"), *stop = json_object_get(o, "stop");
		if ((start && !json_is_integer(start)) || (stop && !json_is_integer(stop)) ||
		    json_integer_value(start) < 0 || json_integer_value(stop) < 0)
			return lf_fail("%s: Strip decoder start and stop must be counts", L->file);
		d->content = lf_strdup(c);
		d->content_len = strlen(c);
		d->start = (size_t)json_integer_value(start);
		d->stop = (size_t)json_integer_value(stop);
		return 0;
	}
	if (!strcmp(type, "Replace")) {
		d->type = TD_REPLACE;
		const char *s = jstr(o, "content");
		if (!s)
			return lf_fail("%s: Replace decoder without 'content'", L->file);
		d->content_len = json_string_length(json_object_get(o, "content"));
		d->content = lf_strndup(s, d->content_len);
		return parse_pattern(L, o, "Replace decoder", &d->pat);
	}
	return lf_fail("%s: decoder '%s' is not supported by lf", L->file, type);
}

/* ---- the model (scanned) ---- */

struct vocab_entry {
	uint32_t off, len;
	int64_t id;
};

static int scan_vocab(struct loader *L, struct lf_jscan *s, struct lf_buf *pool, struct vocab_entry **entries,
		      size_t *n)
{
	size_t cap = 1 << 16;
	*entries = lf_malloc(cap * sizeof **entries);
	*n = 0;
	if (lf_jscan_object_begin(s) < 0)
		return -1;
	struct lf_buf key = LF_BUF_INIT;
	int rc;
	while ((rc = lf_jscan_object_next(s, &key)) == 1) {
		int64_t id;
		if (lf_jscan_int(s, &id) < 0) {
			lf_buf_free(&key);
			return -1;
		}
		if (id < 0 || id >= LF_TOK_MAX_ID) {
			lf_buf_free(&key);
			return lf_jscan_fail(s, "token id %lld out of range (lf takes ids below %d)", (long long)id,
					     LF_TOK_MAX_ID);
		}
		if (*n == cap) {
			cap *= 2;
			*entries = lf_realloc(*entries, cap * sizeof **entries);
		}
		(*entries)[(*n)++] = (struct vocab_entry){ (uint32_t)pool->len, (uint32_t)key.len, id };
		lf_buf_add(pool, key.data ? key.data : "", key.len);
	}
	lf_buf_free(&key);
	(void)L;
	return rc < 0 ? -1 : 0;
}

/* One merge as read: its two tokens, in the merges pool. */
struct merge_text {
	uint32_t a, an, b, bn;
};

/* Merges: ["a b", ...] or [["a", "b"], ...], read into a pool. */
static int scan_merges(struct lf_jscan *s, struct lf_buf *pool, struct merge_text **out, size_t *n)
{
	size_t cap = 1 << 16;
	*out = lf_malloc(cap * sizeof **out);
	*n = 0;
	if (lf_jscan_array_begin(s) < 0)
		return -1;
	struct lf_buf a = LF_BUF_INIT;
	int rc;
	while ((rc = lf_jscan_array_next(s)) == 1) {
		size_t rank = *n;
		struct merge_text m;
		if (lf_jscan_peek(s) == '[') {
			m.a = (uint32_t)pool->len;
			if (lf_jscan_array_begin(s) < 0 || lf_jscan_array_next(s) != 1 || lf_jscan_string(s, pool) < 0) {
				rc = lf_jscan_fail(s, "merge %zu is not a pair of strings", rank);
				break;
			}
			m.an = (uint32_t)(pool->len - m.a);
			m.b = (uint32_t)pool->len;
			if (lf_jscan_array_next(s) != 1 || lf_jscan_string(s, pool) < 0 || lf_jscan_array_next(s) != 0) {
				rc = lf_jscan_fail(s, "merge %zu is not a pair of strings", rank);
				break;
			}
			m.bn = (uint32_t)(pool->len - m.b);
		} else {
			lf_buf_reset(&a);
			if (lf_jscan_string(s, &a) < 0) {
				rc = -1;
				break;
			}
			/* "a b": exactly one space, as the library requires */
			char *sp = memchr(a.data ? a.data : "", ' ', a.len);
			if (!sp || memchr(sp + 1, ' ', a.len - (size_t)(sp + 1 - a.data))) {
				rc = lf_jscan_fail(s, "merge %zu is not \"a b\"", rank);
				break;
			}
			size_t left = (size_t)(sp - a.data);
			m.a = (uint32_t)pool->len;
			m.an = (uint32_t)left;
			m.b = (uint32_t)(pool->len + left);
			m.bn = (uint32_t)(a.len - left - 1);
			lf_buf_add(pool, a.data, left);
			lf_buf_add(pool, sp + 1, m.bn);
		}
		if (*n == cap) {
			cap *= 2;
			*out = lf_realloc(*out, cap * sizeof **out);
		}
		(*out)[(*n)++] = m;
	}
	lf_buf_free(&a);
	return rc < 0 ? -1 : 0;
}

/* Resolve the merges to (a, b) -> (rank, new id). */
static int resolve_merges(struct loader *L, struct tok_bpe *bpe, const char *pool, const struct merge_text *m,
			  size_t n, XXH64_state_t *h)
{
	struct lf_buf joined = LF_BUF_INIT;
	lf_u64map_init(&bpe->merges, n);
	int rc = 0;
	for (size_t rank = 0; rank < n; rank++) {
		const char *a = pool + m[rank].a, *b = pool + m[rank].b;
		size_t an = m[rank].an, bn = m[rank].bn;
		uint32_t ia, ib, inew;
		if (!lf_strmap_get(&bpe->vocab, a, an, &ia)) {
			rc = lf_fail("%s: merge %zu: token '%.*s' is not in the vocabulary", L->file, rank, (int)an, a);
			break;
		}
		if (!lf_strmap_get(&bpe->vocab, b, bn, &ib)) {
			rc = lf_fail("%s: merge %zu: token '%.*s' is not in the vocabulary", L->file, rank, (int)bn, b);
			break;
		}
		/* the merged token: a + b without b's continuing_subword_prefix */
		size_t skip = bpe->prefix_len <= bn ? bpe->prefix_len : 0;
		lf_buf_reset(&joined);
		lf_buf_add(&joined, a, an);
		lf_buf_add(&joined, b + skip, bn - skip);
		if (!lf_strmap_get(&bpe->vocab, joined.data, joined.len, &inew)) {
			rc = lf_fail("%s: merge %zu: '%.*s' is not in the vocabulary", L->file, rank, (int)joined.len,
				     joined.data);
			break;
		}
		lf_u64map_put(&bpe->merges, (uint64_t)ia << 32 | ib, (uint64_t)rank << 32 | inew);
		uint32_t rec[2] = { ia, ib };
		XXH64_update(h, rec, sizeof rec);
	}
	lf_buf_free(&joined);
	return rc;
}

static char *opt_string(const json_t *v)
{
	return json_is_string(v) ? lf_strndup(json_string_value(v), json_string_length(v)) : NULL;
}

/* The model object: vocab and merges scanned, the rest read as values. */
static int load_model(struct loader *L, struct lf_jscan *s, XXH64_state_t *h)
{
	struct tok_bpe *bpe = &L->t->bpe;
	struct lf_buf key = LF_BUF_INIT, pool = LF_BUF_INIT;
	struct vocab_entry *entries = NULL;
	size_t nentries = 0;
	const char *merges_at = NULL;
	json_t *settings = json_object();
	int rc;
	bool have_vocab = false;
	if (lf_jscan_object_begin(s) < 0) {
		json_decref(settings);
		return -1;
	}
	while ((rc = lf_jscan_object_next(s, &key)) == 1) {
		if (!strcmp(key.data, "vocab")) {
			if (lf_jscan_peek(s) != '{') {
				rc = lf_jscan_fail(s, "model vocab is not an object (a Unigram model? not supported yet)");
				break;
			}
			if (scan_vocab(L, s, &pool, &entries, &nentries) < 0) {
				rc = -1;
				break;
			}
			have_vocab = true;
		} else if (!strcmp(key.data, "merges")) {
			lf_jscan_peek(s);
			merges_at = s->p; /* read after the vocab (which may come later) */
			if (lf_jscan_skip(s) < 0) {
				rc = -1;
				break;
			}
		} else {
			const char *text;
			size_t len;
			if (lf_jscan_span(s, &text, &len) < 0) {
				rc = -1;
				break;
			}
			json_error_t err;
			json_t *v = json_loadb(text, len, JSON_DECODE_ANY, &err);
			if (!v) {
				rc = lf_fail("%s: model field '%s': %s", L->file, key.data, err.text);
				break;
			}
			json_object_set_new(settings, key.data, v);
		}
	}
	lf_buf_free(&key);
	if (rc < 0)
		goto out;
	const char *type = json_string_value(json_object_get(settings, "type"));
	if (type && strcmp(type, "BPE")) {
		rc = lf_fail("%s: model '%s' is not supported by lf (BPE is)", L->file, type);
		goto out;
	}
	if (!have_vocab || !merges_at) {
		rc = lf_fail("%s: the model has no vocab or no merges", L->file);
		goto out;
	}
	const json_t *dropout = json_object_get(settings, "dropout");
	if (dropout && !json_is_null(dropout) && json_number_value(dropout) != 0.0) {
		rc = lf_fail("%s: BPE dropout is not supported by lf (it makes encoding random)", L->file);
		goto out;
	}
	/* vocabulary */
	bpe->pool = lf_buf_detach(&pool, NULL);
	size_t nids = 0;
	for (size_t i = 0; i < nentries; i++)
		if ((size_t)entries[i].id + 1 > nids)
			nids = (size_t)entries[i].id + 1;
	bpe->nids = nids;
	bpe->nvocab = nentries;
	bpe->off = lf_malloc((nids ? nids : 1) * sizeof *bpe->off);
	bpe->len = lf_malloc((nids ? nids : 1) * sizeof *bpe->len);
	memset(bpe->len, 0xff, (nids ? nids : 1) * sizeof *bpe->len);
	lf_strmap_init(&bpe->vocab, nentries);
	for (size_t i = 0; i < nentries; i++) {
		const char *tok = bpe->pool + entries[i].off;
		lf_strmap_put(&bpe->vocab, tok, entries[i].len, (uint32_t)entries[i].id);
		bpe->off[entries[i].id] = entries[i].off;
		bpe->len[entries[i].id] = entries[i].len;
	}
	bpe->nvocab = bpe->vocab.n; /* a key given twice counts once, as in the library's map */
	for (size_t id = 0; id < nids; id++) {
		uint32_t rec = (uint32_t)id;
		XXH64_update(h, &rec, sizeof rec);
		if (bpe->len[id] != UINT32_MAX)
			XXH64_update(h, bpe->pool + bpe->off[id], bpe->len[id]);
		XXH64_update(h, "", 1);
	}
	/* settings */
	bpe->unk_token = opt_string(json_object_get(settings, "unk_token"));
	bpe->prefix = opt_string(json_object_get(settings, "continuing_subword_prefix"));
	bpe->suffix = opt_string(json_object_get(settings, "end_of_word_suffix"));
	bpe->prefix_len = bpe->prefix ? strlen(bpe->prefix) : 0;
	bpe->suffix_len = bpe->suffix ? strlen(bpe->suffix) : 0;
	bpe->byte_fallback = jbool(settings, "byte_fallback", false);
	bpe->fuse_unk = jbool(settings, "fuse_unk", false);
	bpe->ignore_merges = jbool(settings, "ignore_merges", false);
	bpe->unk = -1;
	if (bpe->unk_token) {
		uint32_t id;
		if (!lf_strmap_get(&bpe->vocab, bpe->unk_token, strlen(bpe->unk_token), &id)) {
			/* the library fails on the first unknown character instead */
			rc = lf_fail("%s: the model's unk_token '%s' is not in its vocabulary", L->file, bpe->unk_token);
			goto out;
		}
		bpe->unk = (int32_t)id;
	}
	for (int b = 0; b < 256; b++) {
		char name[8];
		snprintf(name, sizeof name, "<0x%02X>", b);
		uint32_t id;
		bpe->byte_ids[b] = lf_strmap_get(&bpe->vocab, name, 6, &id) ? (int32_t)id : -1;
	}
	json_t *desc = json_pack("{s:s,s:o,s:o,s:o,s:b,s:b,s:b}", "type", "BPE", "unk_token",
				 bpe->unk_token ? json_string(bpe->unk_token) : json_null(), "continuing_subword_prefix",
				 bpe->prefix ? json_string(bpe->prefix) : json_null(), "end_of_word_suffix",
				 bpe->suffix ? json_string(bpe->suffix) : json_null(), "byte_fallback", bpe->byte_fallback,
				 "fuse_unk", bpe->fuse_unk, "ignore_merges", bpe->ignore_merges);
	bpe->desc = json_dumps(desc, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(desc);
	/* merges */
	{
		struct lf_jscan ms = *s;
		ms.p = merges_at;
		struct lf_buf mpool = LF_BUF_INIT;
		struct merge_text *merges = NULL;
		size_t nmerges = 0;
		rc = scan_merges(&ms, &mpool, &merges, &nmerges);
		if (rc == 0)
			rc = resolve_merges(L, bpe, mpool.data ? mpool.data : "", merges, nmerges, h);
		free(merges);
		lf_buf_free(&mpool);
	}
out:
	free(entries);
	lf_buf_free(&pool);
	json_decref(settings);
	return rc < 0 ? -1 : 0;
}

/* ---- added tokens ---- */

static bool same_added(const struct tok_added *a, const struct tok_added *b)
{
	return a->len == b->len && !memcmp(a->content, b->content, a->len) && a->special == b->special &&
	       a->normalized == b->normalized && a->lstrip == b->lstrip && a->rstrip == b->rstrip &&
	       a->single_word == b->single_word;
}

/* The library's add_tokens: an existing token keeps its id, a new one gets
 * the next id past the vocabulary (the file's "id" is not used). */
static void add_token(struct lf_tokenizer *t, struct tok_added tok)
{
	uint32_t idx;
	if (!tok.len) {
		free(tok.content);
		return;
	}
	if (lf_strmap_get(&t->added_by_content, tok.content, tok.len, &idx) && same_added(&t->added[idx], &tok)) {
		free(tok.content);
		return;
	}
	int32_t id = lf_tokenizer_token_to_id(t, tok.content, tok.len);
	if (id < 0) {
		int32_t max = t->added_max_id;
		size_t vs = t->bpe.nvocab;
		id = max < 0 ? (int32_t)vs : ((size_t)max >= vs || vs == 0 ? max + 1 : (int32_t)vs);
	}
	if (id > t->added_max_id)
		t->added_max_id = id;
	tok.id = id;
	tok.pattern = tok.content;
	tok.pattern_len = tok.len;
	if (tok.normalized && t->norm) {
		struct lf_buf out = LF_BUF_INIT, flags = LF_BUF_INIT;
		struct lf_regex_scratch *rx = lf_regex_scratch_new();
		tok_normalize(t->norm, rx, tok.content, tok.len, NULL, &out, &flags);
		lf_regex_scratch_free(rx);
		if (out.len != tok.len || memcmp(out.data, tok.content, tok.len)) {
			tok.pattern = lf_buf_detach(&out, &tok.pattern_len);
		}
		lf_buf_free(&out);
		lf_buf_free(&flags);
	}
	/* same content again (with other flags): the new entry replaces the old */
	if (lf_strmap_get(&t->added_by_content, tok.content, tok.len, &idx)) {
		struct tok_added *old = &t->added[idx];
		if (old->pattern != old->content)
			free(old->pattern);
		free(old->content);
		*old = tok;
		lf_strmap_put(&t->added_by_content, old->content, old->len, idx);
		return;
	}
	t->added = lf_realloc(t->added, (t->nadded + 1) * sizeof *t->added);
	t->added[t->nadded] = tok;
	lf_strmap_put(&t->added_by_content, t->added[t->nadded].content, tok.len, (uint32_t)t->nadded);
	t->nadded++;
}

static int parse_added(struct loader *L, const json_t *list)
{
	if (!json_is_array(list))
		return lf_fail("%s: 'added_tokens' is not a list", L->file);
	for (size_t i = 0; i < json_array_size(list); i++) {
		const json_t *o = json_array_get(list, i);
		const json_t *c = json_object_get(o, "content");
		if (!json_is_string(c))
			return lf_fail("%s: added token %zu has no content", L->file, i);
		struct tok_added tok = {
			.content = lf_strndup(json_string_value(c), json_string_length(c)),
			.len = json_string_length(c),
			.special = jbool(o, "special", false),
			.normalized = jbool(o, "normalized", !jbool(o, "special", false)),
			.lstrip = jbool(o, "lstrip", false),
			.rstrip = jbool(o, "rstrip", false),
			.single_word = jbool(o, "single_word", false),
		};
		add_token(L->t, tok);
	}
	return 0;
}

/* The matching tries and the id -> added token index. */
static int rebuild_tries(struct lf_tokenizer *t)
{
	tok_trie_free(&t->raw_trie);
	tok_trie_free(&t->norm_trie);
	if (tok_trie_build(&t->raw_trie, t->added, t->nadded, false) < 0 ||
	    tok_trie_build(&t->norm_trie, t->added, t->nadded, true) < 0)
		return -1;
	size_t n = t->bpe.nids;
	for (size_t i = 0; i < t->nadded; i++)
		if ((size_t)t->added[i].id + 1 > n)
			n = (size_t)t->added[i].id + 1;
	t->nids = n;
	free(t->added_index_by_id);
	t->added_index_by_id = lf_malloc((n ? n : 1) * sizeof *t->added_index_by_id);
	memset(t->added_index_by_id, 0xff, (n ? n : 1) * sizeof *t->added_index_by_id);
	for (size_t i = 0; i < t->nadded; i++)
		t->added_index_by_id[t->added[i].id] = (int32_t)i;
	return 0;
}

/* ---- tokenizer_config.json ---- */

static char *config_token(const json_t *cfg, const char *key)
{
	const json_t *v = json_object_get(cfg, key);
	if (json_is_object(v))
		v = json_object_get(v, "content");
	return opt_string(v);
}

static struct tok_added config_added(const char *content, size_t len, const json_t *o, bool special)
{
	return (struct tok_added){
		.content = lf_strndup(content, len),
		.len = len,
		.special = special,
		.normalized = jbool(o, "normalized", !special),
		.lstrip = jbool(o, "lstrip", false),
		.rstrip = jbool(o, "rstrip", false),
		.single_word = jbool(o, "single_word", false),
	};
}

struct config_entry {
	long long index;
	const char *content;
	size_t len;
	const json_t *o;
};

static int by_index(const void *a, const void *b)
{
	long long x = ((const struct config_entry *)a)->index, y = ((const struct config_entry *)b)->index;
	return x < y ? -1 : x > y;
}

/* What transformers' fast tokenizer adds when it loads tokenizer_config.json
 * beside tokenizer.json: each added_tokens_decoder entry (in index order)
 * that is not already an added token with the same flags, then every
 * special token of the config (bos, eos, unk, sep, pad, cls, mask,
 * additional_special_tokens) that is no added token yet, as special.  A
 * token is special when its entry says so or it is one of those. */
static void add_config_tokens(struct lf_tokenizer *t, const json_t *cfg)
{
	static const char *keys[] = { "bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
				      "mask_token" };
	const json_t *specials[64];
	size_t nspecials = 0;
	for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
		const json_t *v = json_object_get(cfg, keys[k]);
		if (json_is_string(v) || json_is_string(json_object_get(v, "content")))
			specials[nspecials++] = v;
	}
	const json_t *extra = json_object_get(cfg, "additional_special_tokens"), *v;
	size_t i;
	json_array_foreach(extra, i, v)
		if (nspecials < 64 && (json_is_string(v) || json_is_string(json_object_get(v, "content"))))
			specials[nspecials++] = v;

	/* the decoder's entries, by index */
	const json_t *dec = json_object_get(cfg, "added_tokens_decoder");
	struct config_entry *e = lf_calloc(json_object_size(dec) + 1, sizeof *e);
	size_t n = 0;
	const char *key;
	json_t *o;
	json_object_foreach((json_t *)dec, key, o) {
		const json_t *c = json_object_get(o, "content");
		if (json_is_string(c))
			e[n++] = (struct config_entry){ strtoll(key, NULL, 10), json_string_value(c), json_string_length(c), o };
	}
	qsort(e, n, sizeof *e, by_index);
	for (i = 0; i < n; i++) {
		bool special = jbool(e[i].o, "special", false);
		for (size_t k = 0; k < nspecials && !special; k++) {
			const json_t *c = json_is_string(specials[k]) ? specials[k] : json_object_get(specials[k], "content");
			special = json_string_length(c) == e[i].len && !memcmp(json_string_value(c), e[i].content, e[i].len);
		}
		struct tok_added tok = config_added(e[i].content, e[i].len, e[i].o, jbool(e[i].o, "special", false));
		uint32_t idx;
		bool same = lf_strmap_get(&t->added_by_content, tok.content, tok.len, &idx) && same_added(&t->added[idx], &tok);
		tok.special = special;
		if (same)
			free(tok.content);
		else
			add_token(t, tok);
	}
	free(e);
	for (size_t k = 0; k < nspecials; k++) {
		const json_t *sv = specials[k];
		const json_t *c = json_is_string(sv) ? sv : json_object_get(sv, "content");
		uint32_t idx;
		if (!json_string_length(c) || lf_strmap_get(&t->added_by_content, json_string_value(c), json_string_length(c), &idx))
			continue;
		add_token(t, config_added(json_string_value(c), json_string_length(c), json_is_object(sv) ? sv : NULL, true));
	}
}

static int load_config(struct lf_tokenizer *t, const char *path)
{
	json_error_t err;
	json_t *cfg = json_load_file(path, JSON_DECODE_INT_AS_REAL, &err);
	if (!cfg)
		return lf_fail("%s: line %d column %d: %s", path, err.line, err.column, err.text);
	if (!json_is_object(cfg)) {
		json_decref(cfg);
		return lf_fail("%s: not a JSON object", path);
	}
	struct lf_tok_config *c = &t->config;
	c->bos_token = config_token(cfg, "bos_token");
	c->eos_token = config_token(cfg, "eos_token");
	c->pad_token = config_token(cfg, "pad_token");
	const json_t *v;
	if (json_is_boolean(v = json_object_get(cfg, "add_bos_token"))) {
		c->has_add_bos_token = true;
		c->add_bos_token = json_is_true(v);
	}
	add_config_tokens(t, cfg);
	json_decref(cfg);
	return 0;
}

/* ---- loading ---- */

/* The canonical form and the added tokens as the files give them: the
 * fingerprint's base, fixed at load so later additions do not move it. */
static uint64_t files_hash(const struct lf_tokenizer *t)
{
	XXH64_state_t *h = XXH64_createState();
	XXH64_reset(h, 0);
	XXH64_update(h, t->canonical.data, t->canonical.len);
	for (size_t i = 0; i < t->nadded; i++) {
		const struct tok_added *a = &t->added[i];
		int32_t rec[2] = { a->id, (a->special ? 1 : 0) | (a->normalized ? 2 : 0) | (a->lstrip ? 4 : 0) |
						  (a->rstrip ? 8 : 0) | (a->single_word ? 16 : 0) };
		XXH64_update(h, rec, sizeof rec);
		XXH64_update(h, a->content, a->len);
		XXH64_update(h, "", 1);
	}
	uint64_t v = XXH64_digest(h);
	XXH64_freeState(h);
	return v;
}

static bool has_metaspace_first(const struct tok_pretok *p)
{
	for (size_t i = 0; i < p->nkids; i++)
		if (has_metaspace_first(&p->kids[i]))
			return true;
	return p->type == TP_METASPACE && p->prepend_scheme == TPS_FIRST;
}

static int load_json(struct loader *L, const char *text, size_t len, XXH64_state_t *h)
{
	struct lf_tokenizer *t = L->t;
	struct lf_jscan s;
	lf_jscan_init(&s, L->file, text, len);
	struct lf_buf key = LF_BUF_INIT;
	json_t *parts = json_object(); /* the small components, by key */
	bool have_model = false;
	int rc;
	if (lf_jscan_object_begin(&s) < 0)
		rc = -1;
	else
		while ((rc = lf_jscan_object_next(&s, &key)) == 1) {
			if (!strcmp(key.data, "model")) {
				if (load_model(L, &s, h) < 0) {
					rc = -1;
					break;
				}
				have_model = true;
				continue;
			}
			const char *span;
			size_t n;
			if (lf_jscan_span(&s, &span, &n) < 0) {
				rc = -1;
				break;
			}
			json_error_t err;
			json_t *v = json_loadb(span, n, JSON_DECODE_ANY, &err);
			if (!v) {
				rc = lf_fail("%s: '%s': %s", L->file, key.data, err.text);
				break;
			}
			json_object_set_new(parts, key.data, v);
		}
	lf_buf_free(&key);
	if (rc == 0 && lf_jscan_peek(&s) != -1)
		rc = lf_jscan_fail(&s, "data after the tokenizer object");
	if (rc == 0 && !have_model)
		rc = lf_fail("%s: no model", L->file);
	/* the components, in pipeline order; the added tokens need the normalizer */
	static const char *names[] = { "normalizer", "pre_tokenizer", "post_processor", "decoder" };
	for (int i = 0; i < 4 && rc == 0; i++) {
		const json_t *v = json_object_get(parts, names[i]);
		if (!v || json_is_null(v))
			continue;
		if (i == 0) {
			t->norm = lf_calloc(1, sizeof *t->norm);
			rc = parse_norm(L, v, t->norm);
		} else if (i == 1) {
			t->pretok = lf_calloc(1, sizeof *t->pretok);
			rc = parse_pretok(L, v, t->pretok);
		} else if (i == 2) {
			t->post = lf_calloc(1, sizeof *t->post);
			rc = parse_post(L, v, t->post);
		} else {
			t->dec = lf_calloc(1, sizeof *t->dec);
			rc = parse_dec(L, v, t->dec);
		}
		char *canon = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
		lf_buf_addf(&t->canonical, "%s=%s\n", names[i], canon);
		free(canon);
	}
	if (rc == 0 && json_object_get(parts, "added_tokens"))
		rc = parse_added(L, json_object_get(parts, "added_tokens"));
	t->track_start = t->norm && t->pretok && has_metaspace_first(t->pretok);
	json_decref(parts);
	return rc < 0 ? -1 : 0;
}

struct lf_tokenizer *lf_tokenizer_load(const char *path)
{
	struct lf_tokenizer *t = lf_calloc(1, sizeof *t);
	t->path = lf_strdup(path);
	t->added_max_id = -1;
	struct lf_buf json_path = LF_BUF_INIT, cfg_path = LF_BUF_INIT;
	struct stat st;
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
		lf_buf_addf(&json_path, "%s/tokenizer.json", path);
		lf_buf_addf(&cfg_path, "%s/tokenizer_config.json", path);
	} else {
		lf_buf_addstr(&json_path, path);
		const char *slash = strrchr(path, '/');
		lf_buf_addf(&cfg_path, "%.*stokenizer_config.json", slash ? (int)(slash - path + 1) : 0, path);
	}
	size_t len;
	char *text = read_file(json_path.data, &len);
	struct loader L = { t, json_path.data };
	XXH64_state_t *h = XXH64_createState();
	XXH64_reset(h, 0);
	lf_strmap_init(&t->added_by_content, 16);
	int rc = text ? load_json(&L, text, len, h) : -1;
	free(text);
	if (rc == 0 && access(cfg_path.data, F_OK) == 0)
		rc = load_config(t, cfg_path.data);
	if (rc == 0)
		rc = rebuild_tries(t);
	if (rc == 0) {
		uint64_t base = XXH64_digest(h);
		lf_buf_addf(&t->canonical, "model=%s\nvocab+merges=%016llx\n", t->bpe.desc, (unsigned long long)base);
		t->files_hash = files_hash(t);
	}
	XXH64_freeState(h);
	lf_buf_free(&json_path);
	lf_buf_free(&cfg_path);
	if (rc < 0) {
		lf_tokenizer_free(t);
		return NULL;
	}
	return t;
}

int lf_tokenizer_add_special(struct lf_tokenizer *t, const char *token, size_t len)
{
	if (lf_tokenizer_token_to_id(t, token, len) < 0)
		return lf_fail("token '%.*s' is not in the vocabulary of %s", (int)len, token, t->path);
	return lf_tokenizer_add_token(t, token, len, true) < 0 ? -1 : 0;
}

int32_t lf_tokenizer_add_token(struct lf_tokenizer *t, const char *token, size_t len, bool special)
{
	if (!len)
		return lf_fail("an empty token cannot be added");
	struct tok_added tok = { .content = lf_strndup(token, len), .len = len, .special = special, .normalized = !special };
	add_token(t, tok);
	if (rebuild_tries(t) < 0)
		return -1;
	return lf_tokenizer_token_to_id(t, token, len);
}

void lf_tokenizer_set_split_special(struct lf_tokenizer *t, bool split)
{
	t->encode_special_tokens = split;
}

/* ---- lookups and the fingerprint ---- */

int32_t lf_tokenizer_token_to_id(const struct lf_tokenizer *t, const char *s, size_t len)
{
	uint32_t v;
	if (lf_strmap_get(&t->added_by_content, s, len, &v))
		return t->added[v].id;
	if (lf_strmap_get(&t->bpe.vocab, s, len, &v))
		return (int32_t)v;
	return -1;
}

const char *lf_tokenizer_id_to_token(const struct lf_tokenizer *t, int32_t id, size_t *len)
{
	if (t->added_index_by_id) {
		if (id >= 0 && (size_t)id < t->nids && t->added_index_by_id[id] >= 0) {
			const struct tok_added *a = &t->added[t->added_index_by_id[id]];
			if (len)
				*len = a->len;
			return a->content;
		}
	} else { /* while loading */
		for (size_t i = 0; i < t->nadded; i++)
			if (t->added[i].id == id) {
				if (len)
					*len = t->added[i].len;
				return t->added[i].content;
			}
	}
	if (id >= 0 && (size_t)id < t->bpe.nids && t->bpe.len[id] != UINT32_MAX) {
		if (len)
			*len = t->bpe.len[id];
		return t->bpe.pool + t->bpe.off[id];
	}
	return NULL;
}

size_t lf_tokenizer_vocab_size(const struct lf_tokenizer *t)
{
	return t->nids;
}

const struct lf_tok_config *lf_tokenizer_config(const struct lf_tokenizer *t)
{
	return &t->config;
}

uint64_t lf_tokenizer_fingerprint(const struct lf_tokenizer *t, const int32_t *extra, size_t nextra)
{
	if (!nextra)
		return t->files_hash;
	XXH64_state_t *h = XXH64_createState();
	XXH64_reset(h, 0);
	XXH64_update(h, &t->files_hash, sizeof t->files_hash);
	XXH64_update(h, extra, nextra * sizeof *extra);
	uint64_t v = XXH64_digest(h);
	XXH64_freeState(h);
	return v;
}

/* ---- freeing ---- */

static void free_pattern(struct tok_pattern *p)
{
	free(p->lit);
	lf_regex_free(p->re);
}

static void free_norm(struct tok_norm *n)
{
	for (size_t i = 0; i < n->nkids; i++)
		free_norm(&n->kids[i]);
	free(n->kids);
	free(n->text);
	free_pattern(&n->pat);
}

static void free_pretok(struct tok_pretok *p)
{
	for (size_t i = 0; i < p->nkids; i++)
		free_pretok(&p->kids[i]);
	free(p->kids);
	free_pattern(&p->pat);
	free(p->replacement);
}

static void free_post(struct tok_post *p)
{
	for (size_t i = 0; i < p->nkids; i++)
		free_post(&p->kids[i]);
	free(p->kids);
	for (size_t i = 0; i < p->nitems; i++)
		free(p->items[i].ids);
	free(p->items);
}

static void free_dec(struct tok_dec *d)
{
	for (size_t i = 0; i < d->nkids; i++)
		free_dec(&d->kids[i]);
	free(d->kids);
	free(d->content);
	free(d->replacement);
	free_pattern(&d->pat);
}

void lf_tokenizer_free(struct lf_tokenizer *t)
{
	if (!t)
		return;
	if (t->norm)
		free_norm(t->norm);
	if (t->pretok)
		free_pretok(t->pretok);
	if (t->post)
		free_post(t->post);
	if (t->dec)
		free_dec(t->dec);
	free(t->norm);
	free(t->pretok);
	free(t->post);
	free(t->dec);
	for (size_t i = 0; i < t->nadded; i++) {
		if (t->added[i].pattern != t->added[i].content)
			free(t->added[i].pattern);
		free(t->added[i].content);
	}
	free(t->added);
	lf_strmap_free(&t->added_by_content);
	tok_trie_free(&t->raw_trie);
	tok_trie_free(&t->norm_trie);
	free(t->bpe.pool);
	free(t->bpe.off);
	free(t->bpe.len);
	lf_strmap_free(&t->bpe.vocab);
	lf_u64map_free(&t->bpe.merges);
	free(t->bpe.unk_token);
	free(t->bpe.prefix);
	free(t->bpe.suffix);
	free(t->bpe.desc);
	free(t->config.bos_token);
	free(t->config.eos_token);
	free(t->config.pad_token);
	lf_regex_free(t->byte_level_re);
	lf_buf_free(&t->canonical);
	free(t->path);
	free(t->added_index_by_id);
	free(t);
}

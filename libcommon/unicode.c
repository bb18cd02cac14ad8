/*
 * unicode.c — character classes, UTF-8, normalization and lowercase at the
 * Unicode versions the tokenizers library uses (see unicode.h).
 */
#include "unicode.h"
#include "error.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ---- UTF-8 ---- */

/* Length of the sequence a lead byte starts, and the valid range of the
 * second byte (RFC 3629); 0 for bytes that cannot start a character. */
static int lead_info(uint8_t b, uint8_t *lo, uint8_t *hi)
{
	*lo = 0x80;
	*hi = 0xbf;
	if (b >= 0xc2 && b <= 0xdf)
		return 2;
	if (b == 0xe0) {
		*lo = 0xa0;
		return 3;
	}
	if ((b >= 0xe1 && b <= 0xec) || b == 0xee || b == 0xef)
		return 3;
	if (b == 0xed) {
		*hi = 0x9f;
		return 3;
	}
	if (b == 0xf0) {
		*lo = 0x90;
		return 4;
	}
	if (b >= 0xf1 && b <= 0xf3)
		return 4;
	if (b == 0xf4) {
		*hi = 0x8f;
		return 4;
	}
	return 0;
}

/* How many bytes of s form a valid character (> 0), or the negated length of
 * the maximal invalid subpart (< 0). */
static int utf8_step(const uint8_t *s, size_t n, uint32_t *cp)
{
	uint8_t b = s[0], lo, hi;
	if (b < 0x80) {
		*cp = b;
		return 1;
	}
	int len = lead_info(b, &lo, &hi);
	if (len == 0)
		return -1;
	if (n < 2 || s[1] < lo || s[1] > hi)
		return -1;
	uint32_t c = b & (0x7f >> len);
	c = (c << 6) | (s[1] & 0x3f);
	for (int i = 2; i < len; i++) {
		if ((size_t)i >= n || (s[i] & 0xc0) != 0x80)
			return -i;
		c = (c << 6) | (s[i] & 0x3f);
	}
	*cp = c;
	return len;
}

size_t lf_utf8_decode(const char *s, size_t n, uint32_t *cp)
{
	if (n == 0)
		return 0;
	int k = utf8_step((const uint8_t *)s, n, cp);
	return k > 0 ? (size_t)k : 0;
}

size_t lf_utf8_encode(uint32_t cp, char *out)
{
	uint8_t *o = (uint8_t *)out;
	if (cp < 0x80) {
		o[0] = (uint8_t)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (uint8_t)(0xc0 | cp >> 6);
		o[1] = (uint8_t)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (uint8_t)(0xe0 | cp >> 12);
		o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (uint8_t)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (uint8_t)(0xf0 | cp >> 18);
	o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
	o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
	o[3] = (uint8_t)(0x80 | (cp & 0x3f));
	return 4;
}

bool lf_utf8_valid(const char *s, size_t n, size_t *bad_at)
{
	size_t i = 0;
	while (i < n) {
		if ((uint8_t)s[i] < 0x80) {
			i++;
			continue;
		}
		uint32_t cp;
		int k = utf8_step((const uint8_t *)s + i, n - i, &cp);
		if (k < 0) {
			if (bad_at)
				*bad_at = i;
			return false;
		}
		i += (size_t)k;
	}
	return true;
}

void lf_utf8_lossy(struct lf_buf *out, const char *s, size_t n)
{
	size_t i = 0, run = 0;
	while (i < n) {
		uint32_t cp;
		int k = (uint8_t)s[i] < 0x80 ? 1 : utf8_step((const uint8_t *)s + i, n - i, &cp);
		if (k > 0) {
			i += (size_t)k;
			continue;
		}
		lf_buf_add(out, s + run, i - run);
		lf_buf_addstr(out, "\xef\xbf\xbd");
		i += (size_t)-k;
		run = i;
	}
	lf_buf_add(out, s + run, n - run);
}

/* ---- classes ---- */

enum lf_gc lf_uni_category(uint32_t cp)
{
	size_t lo = 0, hi = lf_uni_categories_len;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (cp < lf_uni_categories[mid].start)
			hi = mid;
		else if (cp > lf_uni_categories[mid].end)
			lo = mid + 1;
		else
			return (enum lf_gc)lf_uni_categories[mid].cat;
	}
	return LF_GC_CN;
}

size_t lf_uni_category_ranges(uint32_t cats, struct lf_uni_range **out)
{
	struct lf_uni_range *r = lf_malloc((lf_uni_categories_len + 1) * sizeof *r);
	size_t n = 0;
	uint32_t next = 0; /* first code point not yet classified: Cn up to the next range */
	for (size_t i = 0; i <= lf_uni_categories_len; i++) {
		uint32_t start = i < lf_uni_categories_len ? lf_uni_categories[i].start : 0x110000;
		if ((cats & (1u << LF_GC_CN)) && next < start) { /* the unassigned gap */
			if (n && r[n - 1].end + 1 == next)
				r[n - 1].end = start - 1;
			else
				r[n++] = (struct lf_uni_range){ next, start - 1 };
		}
		if (i == lf_uni_categories_len)
			break;
		const struct lf_uni_cat_range *c = &lf_uni_categories[i];
		if (cats & (1u << c->cat)) {
			if (n && r[n - 1].end + 1 == c->start)
				r[n - 1].end = c->end;
			else
				r[n++] = (struct lf_uni_range){ c->start, c->end };
		}
		next = c->end + 1;
	}
	*out = r;
	return n;
}

const struct lf_uni_range lf_uni_white_space[] = {
	{ 0x9, 0xd }, { 0x20, 0x20 }, { 0x85, 0x85 }, { 0xa0, 0xa0 }, { 0x1680, 0x1680 }, { 0x2000, 0x200a },
	{ 0x2028, 0x2029 }, { 0x202f, 0x202f }, { 0x205f, 0x205f }, { 0x3000, 0x3000 },
};
const size_t lf_uni_white_space_len = sizeof lf_uni_white_space / sizeof lf_uni_white_space[0];

static bool in_ranges(const struct lf_uni_range *r, size_t n, uint32_t cp)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (cp < r[mid].start)
			hi = mid;
		else if (cp > r[mid].end)
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

bool lf_uni_is_whitespace(uint32_t cp)
{
	return in_ranges(lf_uni_white_space, lf_uni_white_space_len, cp);
}

bool lf_uni_is_numeric(uint32_t cp)
{
	/* Rust's char methods follow Unicode 17.0, which added these numbers */
	if ((cp >= 0x11de0 && cp <= 0x11de9) || (cp >= 0x16ff4 && cp <= 0x16ff6))
		return true;
	return (LF_GC_MASK_N >> lf_uni_category(cp)) & 1;
}

bool lf_uni_is_punct_old(uint32_t cp)
{
	return in_ranges(lf_uni_punct_8, lf_uni_punct_8_len, cp);
}

/* ---- normalization (Unicode 9.0 data) ---- */

enum { SBASE = 0xac00, LBASE = 0x1100, VBASE = 0x1161, TBASE = 0x11a7, LCOUNT = 19, VCOUNT = 21, TCOUNT = 28,
       NCOUNT = VCOUNT * TCOUNT, SCOUNT = LCOUNT * NCOUNT };

static uint8_t ccc_of(uint32_t cp)
{
	if (cp < 0x300)
		return 0;
	size_t lo = 0, hi = lf_uni_ccc_table_len;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (cp < lf_uni_ccc_table[mid].cp)
			hi = mid;
		else if (cp > lf_uni_ccc_table[mid].cp)
			lo = mid + 1;
		else
			return lf_uni_ccc_table[mid].ccc;
	}
	return 0;
}

static const struct lf_uni_decomp *decomp_of(uint32_t cp)
{
	if (cp < 0xa0)
		return NULL;
	size_t lo = 0, hi = lf_uni_decomp_table_len;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (cp < lf_uni_decomp_table[mid].cp)
			hi = mid;
		else if (cp > lf_uni_decomp_table[mid].cp)
			lo = mid + 1;
		else
			return &lf_uni_decomp_table[mid];
	}
	return NULL;
}

static uint32_t compose_pair(uint32_t a, uint32_t b)
{
	if (a >= LBASE && a < LBASE + LCOUNT && b >= VBASE && b < VBASE + VCOUNT)
		return SBASE + ((a - LBASE) * VCOUNT + (b - VBASE)) * TCOUNT;
	if (a >= SBASE && a < SBASE + SCOUNT && (a - SBASE) % TCOUNT == 0 && b > TBASE && b < TBASE + TCOUNT)
		return a + (b - TBASE);
	size_t lo = 0, hi = lf_uni_comp_table_len;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		const struct lf_uni_comp *c = &lf_uni_comp_table[mid];
		if (a < c->first || (a == c->first && b < c->second))
			hi = mid;
		else if (a > c->first || b > c->second)
			lo = mid + 1;
		else
			return c->composite;
	}
	return 0;
}

/* Code points being normalized, each with the flags it carries. */
struct cps {
	uint32_t *v;
	uint8_t *f;
	size_t n, cap;
	uint8_t flag; /* for the pushes of the current input character */
};

static void cps_push(struct cps *c, uint32_t cp)
{
	if (c->n == c->cap) {
		c->cap = c->cap ? 2 * c->cap : 64;
		c->v = lf_realloc(c->v, c->cap * sizeof *c->v);
		c->f = lf_realloc(c->f, c->cap);
	}
	c->f[c->n] = c->flag;
	c->v[c->n++] = cp;
}

static void decompose(uint32_t cp, bool compat, struct cps *out)
{
	if (cp >= SBASE && cp < SBASE + SCOUNT) {
		uint32_t s = cp - SBASE;
		cps_push(out, LBASE + s / NCOUNT);
		cps_push(out, VBASE + (s % NCOUNT) / TCOUNT);
		if (s % TCOUNT)
			cps_push(out, TBASE + s % TCOUNT);
		return;
	}
	const struct lf_uni_decomp *d = decomp_of(cp);
	if (d && compat && d->compat_len) {
		for (uint32_t i = 0; i < d->compat_len; i++)
			cps_push(out, lf_uni_decomp_pool[d->compat_off + i]);
	} else if (d && d->canon_len) {
		for (uint32_t i = 0; i < d->canon_len; i++)
			cps_push(out, lf_uni_decomp_pool[d->canon_off + i]);
	} else {
		cps_push(out, cp);
	}
}

/* Canonical ordering: stable sort of each run of non-starters by class. */
static void reorder(struct cps *c)
{
	for (size_t i = 1; i < c->n; i++) {
		uint8_t cc = ccc_of(c->v[i]);
		if (cc == 0)
			continue;
		size_t j = i;
		uint32_t cp = c->v[i];
		uint8_t f = c->f[i];
		while (j > 0) {
			uint8_t prev = ccc_of(c->v[j - 1]);
			if (prev == 0 || prev <= cc)
				break;
			c->v[j] = c->v[j - 1];
			c->f[j] = c->f[j - 1];
			j--;
		}
		c->v[j] = cp;
		c->f[j] = f;
	}
}

static void compose(struct cps *c)
{
	size_t out = 0;
	long starter = -1;
	uint8_t last_cc = 0;
	for (size_t i = 0; i < c->n; i++) {
		uint32_t cp = c->v[i];
		uint8_t cc = ccc_of(cp);
		if (starter >= 0) {
			bool adjacent = (size_t)starter == out - 1;
			bool blocked = !adjacent && (last_cc == 0 || last_cc >= cc);
			uint32_t comp = blocked ? 0 : compose_pair(c->v[starter], cp);
			if (comp) {
				c->v[starter] = comp;
				c->f[starter] |= c->f[i];
				continue;
			}
		}
		if (cc == 0)
			starter = (long)out;
		last_cc = cc;
		c->f[out] = c->f[i];
		c->v[out++] = cp;
	}
	c->n = out;
}

void lf_uni_normalize_flags(enum lf_nf form, const char *s, size_t n, const uint8_t *flags, struct lf_buf *out,
			    struct lf_buf *out_flags)
{
	/* Code points below U+0300 are starters that compose with nothing before
	 * them (NFC); below U+00A0 nothing decomposes either. */
	size_t i = 0;
	uint8_t limit = form == LF_NFC ? 0xcc : 0xc2;
	while (i < n && (uint8_t)s[i] < limit)
		i++;
	if (i == n) {
		lf_buf_add(out, s, n);
		for (size_t k = 0; out_flags && k < n; k++)
			lf_buf_addch(out_flags, (char)(flags ? flags[k] : 0));
		return;
	}
	bool compat = form == LF_NFKC || form == LF_NFKD;
	struct cps c = { 0 };
	for (size_t k = 0; k < n;) {
		uint32_t cp;
		size_t len = lf_utf8_decode(s + k, n - k, &cp);
		if (!len) { /* not UTF-8: callers validate first */
			cp = 0xfffd;
			len = 1;
		}
		c.flag = flags ? flags[k] : 0;
		decompose(cp, compat, &c);
		k += len;
	}
	reorder(&c);
	if (form == LF_NFC || form == LF_NFKC)
		compose(&c);
	char enc[4];
	for (size_t k = 0; k < c.n; k++) {
		size_t len = lf_utf8_encode(c.v[k], enc);
		lf_buf_add(out, enc, len);
		for (size_t j = 0; out_flags && j < len; j++)
			lf_buf_addch(out_flags, (char)c.f[k]);
	}
	free(c.v);
	free(c.f);
}

void lf_uni_normalize(enum lf_nf form, const char *s, size_t n, struct lf_buf *out)
{
	lf_uni_normalize_flags(form, s, n, NULL, out, NULL);
}

/* ---- lowercase ---- */

/* Lowercase mappings Unicode 16.0 and 17.0 added (utf8proc 2.8 has 15.0;
 * Rust's char::to_lowercase, which the tokenizers library uses, has 17.0). */
static uint32_t lower_new(uint32_t cp)
{
	if (cp >= 0x10d50 && cp <= 0x10d65) /* Garay (16.0) */
		return cp + 0x20;
	if (cp >= 0x16ea0 && cp <= 0x16eb8) /* Beria Erfe (17.0) */
		return cp + 0x1b;
	switch (cp) {
	case 0x1c89: return 0x1c8a;
	case 0xa7cb: return 0x0264;
	case 0xa7cc: return 0xa7cd;
	case 0xa7ce: return 0xa7cf;
	case 0xa7d2: return 0xa7d3;
	case 0xa7d4: return 0xa7d5;
	case 0xa7da: return 0xa7db;
	case 0xa7dc: return 0x019b;
	default: return 0;
	}
}

void lf_uni_lowercase_flags(const char *s, size_t n, const uint8_t *flags, struct lf_buf *out,
			    struct lf_buf *out_flags)
{
	char enc[8];
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t len = lf_utf8_decode(s + i, n - i, &cp), olen;
		uint8_t f = flags ? flags[i] : 0;
		if (!len) {
			enc[0] = s[i];
			olen = 1;
			len = 1;
		} else if (cp < 0x80) {
			enc[0] = (char)(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
			olen = 1;
		} else if (cp == 0x130) { /* the one unconditional multi-character mapping */
			memcpy(enc, "i\xcc\x87", 3);
			olen = 3;
		} else {
			uint32_t l = lower_new(cp);
			if (!l)
				l = (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
			olen = lf_utf8_encode(l, enc);
		}
		lf_buf_add(out, enc, olen);
		for (size_t j = 0; out_flags && j < olen; j++)
			lf_buf_addch(out_flags, (char)f);
		i += len;
	}
}

void lf_uni_lowercase(const char *s, size_t n, struct lf_buf *out)
{
	lf_uni_lowercase_flags(s, n, NULL, out, NULL);
}

bool lf_uni_is_word_rust(uint32_t cp)
{
	if (cp < 0x80)
		return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || cp == '_';
	if (cp == 0x200c || cp == 0x200d) /* Join_Control */
		return true;
	/* Other_Alphabetic symbols: circled and squared letters */
	if ((cp >= 0x24b6 && cp <= 0x24e9) || (cp >= 0x1f130 && cp <= 0x1f149) || (cp >= 0x1f150 && cp <= 0x1f169) ||
	    (cp >= 0x1f170 && cp <= 0x1f189))
		return true;
	uint32_t mask = LF_GC_MASK_L | LF_GC_MASK_M | (1u << LF_GC_ND) | (1u << LF_GC_NL) | (1u << LF_GC_PC);
	return (mask >> lf_uni_category(cp)) & 1;
}

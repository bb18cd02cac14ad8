/*
 * regex.c — Oniguruma-syntax patterns on PCRE2 (see regex.h).
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "regex.h"
#include "buf.h"
#include "error.h"
#include "unicode.h"

#include <ctype.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

struct lf_regex {
	pcre2_code *code;
	bool jit;
};

struct lf_regex_scratch {
	pcre2_match_data *md;
	pcre2_jit_stack *stack;  /* grows to 64 MB: deep backtracking on long pieces */
	pcre2_match_context *mc;
};

/* ---- Unicode sets as code-point ranges ---- */

struct set {
	struct lf_uni_range *r;
	size_t n;
};

static void set_from(struct set *s, const struct lf_uni_range *r, size_t n)
{
	s->r = lf_malloc((n ? n : 1) * sizeof *r);
	memcpy(s->r, r, n * sizeof *r);
	s->n = n;
}

/* Everything but s (surrogates excluded: they never occur in UTF-8). */
static void set_complement(struct set *s)
{
	struct lf_uni_range *r = lf_malloc((s->n + 2) * sizeof *r);
	size_t n = 0;
	uint32_t next = 0;
	for (size_t i = 0; i < s->n; i++) {
		if (s->r[i].start > next)
			r[n++] = (struct lf_uni_range){ next, s->r[i].start - 1 };
		next = s->r[i].end + 1;
	}
	if (next <= 0x10ffff)
		r[n++] = (struct lf_uni_range){ next, 0x10ffff };
	free(s->r);
	s->r = r;
	s->n = n;
}

/* s = s | t (both sorted; the result sorted and merged). */
static void set_union(struct set *s, const struct set *t)
{
	struct lf_uni_range *r = lf_malloc((s->n + t->n + 1) * sizeof *r);
	size_t n = 0, i = 0, j = 0;
	while (i < s->n || j < t->n) {
		struct lf_uni_range next = j >= t->n || (i < s->n && s->r[i].start <= t->r[j].start) ? s->r[i++] : t->r[j++];
		if (n && next.start <= r[n - 1].end + 1) {
			if (next.end > r[n - 1].end)
				r[n - 1].end = next.end;
		} else {
			r[n++] = next;
		}
	}
	free(s->r);
	s->r = r;
	s->n = n;
}

static void set_free(struct set *s)
{
	free(s->r);
	s->r = NULL;
	s->n = 0;
}

/* General category names Oniguruma accepts, as a category mask. */
static uint32_t category_mask(const char *name)
{
	static const struct {
		const char *name;
		uint32_t mask;
	} names[] = {
		{ "l", LF_GC_MASK_L }, { "letter", LF_GC_MASK_L }, { "lu", 1u << LF_GC_LU }, { "uppercaseletter", 1u << LF_GC_LU },
		{ "ll", 1u << LF_GC_LL }, { "lowercaseletter", 1u << LF_GC_LL }, { "lt", 1u << LF_GC_LT },
		{ "titlecaseletter", 1u << LF_GC_LT }, { "lm", 1u << LF_GC_LM }, { "modifierletter", 1u << LF_GC_LM },
		{ "lo", 1u << LF_GC_LO }, { "otherletter", 1u << LF_GC_LO }, { "m", LF_GC_MASK_M }, { "mark", LF_GC_MASK_M },
		{ "combiningmark", LF_GC_MASK_M }, { "mn", 1u << LF_GC_MN }, { "nonspacingmark", 1u << LF_GC_MN },
		{ "mc", 1u << LF_GC_MC }, { "spacingmark", 1u << LF_GC_MC }, { "me", 1u << LF_GC_ME },
		{ "enclosingmark", 1u << LF_GC_ME }, { "n", LF_GC_MASK_N }, { "number", LF_GC_MASK_N },
		{ "nd", 1u << LF_GC_ND }, { "decimalnumber", 1u << LF_GC_ND }, { "digit", 1u << LF_GC_ND },
		{ "nl", 1u << LF_GC_NL }, { "letternumber", 1u << LF_GC_NL }, { "no", 1u << LF_GC_NO },
		{ "othernumber", 1u << LF_GC_NO }, { "p", LF_GC_MASK_P }, { "punctuation", LF_GC_MASK_P },
		{ "punct", LF_GC_MASK_P }, { "pc", 1u << LF_GC_PC }, { "connectorpunctuation", 1u << LF_GC_PC },
		{ "pd", 1u << LF_GC_PD }, { "dashpunctuation", 1u << LF_GC_PD }, { "ps", 1u << LF_GC_PS },
		{ "openpunctuation", 1u << LF_GC_PS }, { "pe", 1u << LF_GC_PE }, { "closepunctuation", 1u << LF_GC_PE },
		{ "pi", 1u << LF_GC_PI }, { "initialpunctuation", 1u << LF_GC_PI }, { "pf", 1u << LF_GC_PF },
		{ "finalpunctuation", 1u << LF_GC_PF }, { "po", 1u << LF_GC_PO }, { "otherpunctuation", 1u << LF_GC_PO },
		{ "s", LF_GC_MASK_S }, { "symbol", LF_GC_MASK_S }, { "sm", 1u << LF_GC_SM }, { "mathsymbol", 1u << LF_GC_SM },
		{ "sc", 1u << LF_GC_SC }, { "currencysymbol", 1u << LF_GC_SC }, { "sk", 1u << LF_GC_SK },
		{ "modifiersymbol", 1u << LF_GC_SK }, { "so", 1u << LF_GC_SO }, { "othersymbol", 1u << LF_GC_SO },
		{ "z", LF_GC_MASK_Z }, { "separator", LF_GC_MASK_Z }, { "zs", 1u << LF_GC_ZS },
		{ "spaceseparator", 1u << LF_GC_ZS }, { "zl", 1u << LF_GC_ZL }, { "lineseparator", 1u << LF_GC_ZL },
		{ "zp", 1u << LF_GC_ZP }, { "paragraphseparator", 1u << LF_GC_ZP }, { "c", LF_GC_MASK_C },
		{ "other", LF_GC_MASK_C }, { "cc", 1u << LF_GC_CC }, { "control", 1u << LF_GC_CC }, { "cntrl", 1u << LF_GC_CC },
		{ "cf", 1u << LF_GC_CF }, { "format", 1u << LF_GC_CF }, { "cs", 1u << LF_GC_CS }, { "surrogate", 1u << LF_GC_CS },
		{ "co", 1u << LF_GC_CO }, { "privateuse", 1u << LF_GC_CO }, { "cn", 1u << LF_GC_CN },
		{ "unassigned", 1u << LF_GC_CN },
	};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (!strcmp(names[i].name, name))
			return names[i].mask;
	return 0;
}

static void category_set(struct set *s, uint32_t mask)
{
	s->n = lf_uni_category_ranges(mask, &s->r);
}

/* The set an escape letter names (s d w h, upper case negated), or -1. */
static int escape_set(char c, struct set *s)
{
	char lower = (char)tolower((unsigned char)c);
	switch (lower) {
	case 's':
		set_from(s, lf_uni_white_space, lf_uni_white_space_len);
		break;
	case 'd':
		category_set(s, 1u << LF_GC_ND);
		break;
	case 'w': { /* Oniguruma's Word: Alphabetic, Mark, Decimal_Number, Connector_Punctuation, Join_Control */
		struct set a, b;
		set_from(&a, lf_uni_alphabetic, lf_uni_alphabetic_len);
		category_set(&b, LF_GC_MASK_M | (1u << LF_GC_ND) | (1u << LF_GC_PC));
		static const struct lf_uni_range join[] = { { 0x200c, 0x200d } };
		struct set j;
		set_from(&j, join, 1);
		set_union(&a, &b);
		set_union(&a, &j);
		set_free(&b);
		set_free(&j);
		*s = a;
		break;
	}
	case 'h': {
		static const struct lf_uni_range hex[] = { { '0', '9' }, { 'A', 'F' }, { 'a', 'f' } };
		set_from(s, hex, 3);
		break;
	}
	default:
		return -1;
	}
	if (c != lower)
		set_complement(s);
	return 0;
}

/* \p{Name}, \p{^Name}, \P{Name} at pat[i] (after the backslash and 'p'/'P'). */
static int property_set(const char *pat, size_t len, size_t *i, bool negated, struct set *s)
{
	if (*i >= len || pat[*i] != '{')
		return lf_fail("\\p without {name} at offset %zu", *i);
	size_t close = *i + 1;
	while (close < len && pat[close] != '}')
		close++;
	if (close >= len)
		return lf_fail("unterminated \\p{ at offset %zu", *i);
	char name[64];
	size_t k = 0;
	size_t j = *i + 1;
	if (j < close && pat[j] == '^') {
		negated = !negated;
		j++;
	}
	for (; j < close && k + 1 < sizeof name; j++) {
		char c = pat[j];
		if (c == ' ' || c == '_' || c == '-')
			continue;
		name[k++] = (char)tolower((unsigned char)c);
	}
	name[k] = 0;
	uint32_t mask = category_mask(name);
	if (!mask)
		return lf_fail("unsupported property \\p{%.*s} (lf supports general categories)", (int)(close - *i - 1),
			       pat + *i + 1);
	category_set(s, mask);
	if (negated)
		set_complement(s);
	*i = close + 1;
	return 0;
}

/* Ranges for use inside a class, largest first (PCRE2 tests them in order). */
static int cmp_size_desc(const void *a, const void *b)
{
	const struct lf_uni_range *x = a, *y = b;
	uint32_t sx = x->end - x->start, sy = y->end - y->start;
	return sx > sy ? -1 : sx < sy;
}

static void emit_set(struct lf_buf *out, struct set *s)
{
	struct lf_uni_range *r = lf_malloc((s->n ? s->n : 1) * sizeof *r);
	memcpy(r, s->r, s->n * sizeof *r);
	qsort(r, s->n, sizeof *r, cmp_size_desc);
	for (size_t i = 0; i < s->n; i++) {
		if (r[i].start == r[i].end)
			lf_buf_addf(out, "\\x{%x}", r[i].start);
		else
			lf_buf_addf(out, "\\x{%x}-\\x{%x}", r[i].start, r[i].end);
	}
	free(r);
}

/* Translate one escape at pat[*i] (just after the backslash). */
static int translate_escape(const char *pat, size_t len, size_t *i, bool in_class, struct lf_buf *out)
{
	char c = pat[*i];
	struct set s = { 0 };
	if (c == 'p' || c == 'P') {
		(*i)++;
		if (property_set(pat, len, i, c == 'P', &s) < 0)
			return -1;
	} else if (escape_set(c, &s) == 0) {
		(*i)++;
	} else if (c == 'u' && *i + 4 < len && isxdigit((unsigned char)pat[*i + 1])) { /* \uHHHH */
		lf_buf_addf(out, "\\x{%.4s}", pat + *i + 1);
		*i += 5;
		return 0;
	} else if ((c == 'b' || c == 'B') && !in_class) {
		/* word boundaries on Oniguruma's Unicode \w, not PCRE2's ASCII one */
		struct set w = { 0 };
		escape_set('w', &w);
		struct lf_buf cls = LF_BUF_INIT;
		lf_buf_addch(&cls, '[');
		emit_set(&cls, &w);
		lf_buf_addch(&cls, ']');
		const char *W = cls.data;
		if (c == 'b')
			lf_buf_addf(out, "(?:(?<=%s)(?!%s)|(?<!%s)(?=%s))", W, W, W, W);
		else
			lf_buf_addf(out, "(?:(?<=%s)(?=%s)|(?<!%s)(?!%s))", W, W, W, W);
		lf_buf_free(&cls);
		set_free(&w);
		(*i)++;
		return 0;
	} else if (c == 'v') { /* Oniguruma: the VT character; PCRE2: vertical space */
		lf_buf_addstr(out, "\\x{b}");
		(*i)++;
		return 0;
	} else {
		lf_buf_addch(out, '\\');
		/* copy the escaped character whole (it may be multibyte) */
		uint32_t cp;
		size_t k = lf_utf8_decode(pat + *i, len - *i, &cp);
		if (!k)
			return lf_fail("invalid UTF-8 in pattern at offset %zu", *i);
		lf_buf_add(out, pat + *i, k);
		*i += k;
		return 0;
	}
	if (!in_class)
		lf_buf_addch(out, '[');
	emit_set(out, &s);
	if (!in_class)
		lf_buf_addch(out, ']');
	set_free(&s);
	return 0;
}

/* Does an inline option group turn on (?i) anywhere? */
static bool has_caseless(const char *pat, size_t len)
{
	for (size_t i = 0; i + 2 < len; i++) {
		if (pat[i] != '(' || pat[i + 1] != '?')
			continue;
		bool on = false;
		size_t j = i + 2;
		while (j < len && isalpha((unsigned char)pat[j]))
			on |= pat[j++] == 'i';
		if (on && j < len && (pat[j] == ':' || pat[j] == ')' || pat[j] == '-'))
			return true;
	}
	return false;
}

/* Oniguruma's (?i) folds one character to several and back ("straße"
 * matches "STRASSE"); PCRE2 cannot, so such patterns are refused rather
 * than matched differently. */
static int check_case_folding(const char *pat, size_t len)
{
	if (!has_caseless(pat, len))
		return 0;
	for (size_t i = 0; i < len;) {
		uint32_t cp;
		size_t k = lf_utf8_decode(pat + i, len - i, &cp);
		if (!k)
			return lf_fail("invalid UTF-8 in pattern at offset %zu", i);
		for (size_t r = 0; r < lf_uni_multi_fold_len; r++)
			if (cp >= lf_uni_multi_fold[r].start && cp <= lf_uni_multi_fold[r].end)
				return lf_fail("case-insensitive '%.*s' (offset %zu) folds to several characters, which lf "
					       "does not match as Oniguruma does", (int)k, pat + i, i);
		i += k;
	}
	struct lf_buf lower = LF_BUF_INIT;
	lf_uni_lowercase(pat, len, &lower);
	int rc = 0;
	for (size_t t = 0; t < lf_uni_multi_fold_targets_len && rc == 0; t++) {
		const char *target = lf_uni_multi_fold_targets[t];
		if (memmem(lower.data ? lower.data : "", lower.len, target, strlen(target)))
			rc = lf_fail("case-insensitive '%s' in the pattern could match a character that folds to it "
				     "(such as \u00df for ss), which lf does not match as Oniguruma does", target);
	}
	lf_buf_free(&lower);
	return rc;
}

static int translate(const char *pat, size_t len, struct lf_buf *out)
{
	if (check_case_folding(pat, len) < 0)
		return -1;
	bool in_class = false;
	size_t i = 0;
	while (i < len) {
		char c = pat[i];
		if (c == '\\') {
			if (i + 1 >= len)
				return lf_fail("pattern ends with a backslash");
			i++;
			if (translate_escape(pat, len, &i, in_class, out) < 0)
				return -1;
			continue;
		}
		if (in_class) {
			if (c == '[') {
				if (i + 1 < len && pat[i + 1] == ':')
					return lf_fail("POSIX bracket classes are not supported (offset %zu)", i);
				return lf_fail("nested character classes are not supported (offset %zu)", i);
			}
			if (c == '&' && i + 1 < len && pat[i + 1] == '&')
				return lf_fail("class intersection && is not supported (offset %zu)", i);
			if (c == ']')
				in_class = false;
			lf_buf_addch(out, c);
			i++;
			continue;
		}
		if (c == '(' && i + 1 < len && pat[i + 1] == '?') {
			/* option groups: Oniguruma's (?m) is "dot matches newline", PCRE2's (?s) */
			size_t j = i + 2;
			while (j < len && (isalpha((unsigned char)pat[j]) || pat[j] == '-'))
				j++;
			if (j > i + 2 && j < len && (pat[j] == ':' || pat[j] == ')')) {
				lf_buf_addstr(out, "(?");
				for (size_t k = i + 2; k < j; k++) {
					if (!strchr("imx-", pat[k]))
						return lf_fail("option (?%c) is not supported (offset %zu)", pat[k], k);
					lf_buf_addch(out, pat[k] == 'm' ? 's' : pat[k]);
				}
				i = j;
				continue;
			}
		}
		if (c == '[') {
			in_class = true;
			lf_buf_addch(out, '[');
			i++;
			if (i < len && pat[i] == '^')
				lf_buf_addch(out, pat[i++]);
			if (i < len && pat[i] == ']') /* a leading ] is a literal */
				lf_buf_addstr(out, "\\]"), i++;
			continue;
		}
		lf_buf_addch(out, c);
		i++;
	}
	if (in_class)
		return lf_fail("unterminated character class");
	return 0;
}

struct lf_regex *lf_regex_compile(const char *pattern, size_t len)
{
	struct lf_buf pcre = LF_BUF_INIT;
	if (translate(pattern, len, &pcre) < 0) {
		lf_buf_free(&pcre);
		return NULL;
	}
	int err;
	PCRE2_SIZE at;
	/* Oniguruma's Ruby syntax: ^ and $ are line anchors */
	pcre2_code *code = pcre2_compile((PCRE2_SPTR)pcre.data, pcre.len, PCRE2_UTF | PCRE2_NO_UTF_CHECK | PCRE2_MULTILINE,
					 &err, &at, NULL);
	lf_buf_free(&pcre);
	if (!code) {
		PCRE2_UCHAR msg[256];
		pcre2_get_error_message(err, msg, sizeof msg);
		lf_fail("pattern does not compile: %s", (char *)msg);
		return NULL;
	}
	struct lf_regex *re = lf_calloc(1, sizeof *re);
	re->code = code;
	re->jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
	return re;
}

void lf_regex_free(struct lf_regex *re)
{
	if (!re)
		return;
	pcre2_code_free(re->code);
	free(re);
}

struct lf_regex_scratch *lf_regex_scratch_new(void)
{
	struct lf_regex_scratch *sc = lf_calloc(1, sizeof *sc);
	sc->md = pcre2_match_data_create(16, NULL);
	sc->stack = pcre2_jit_stack_create(64 << 10, 64 << 20, NULL);
	sc->mc = pcre2_match_context_create(NULL);
	if (!sc->md || !sc->stack || !sc->mc)
		lf_die("out of memory (regex scratch)");
	pcre2_jit_stack_assign(sc->mc, NULL, sc->stack);
	pcre2_set_heap_limit(sc->mc, 1u << 20); /* KiB: 1 GB for the interpreter */
	return sc;
}

void lf_regex_scratch_free(struct lf_regex_scratch *sc)
{
	if (!sc)
		return;
	pcre2_match_data_free(sc->md);
	pcre2_jit_stack_free(sc->stack);
	pcre2_match_context_free(sc->mc);
	free(sc);
}

void lf_regex_each(const struct lf_regex *re, struct lf_regex_scratch *sc, const char *s, size_t n,
		   void (*fn)(size_t start, size_t end, void *arg), void *arg)
{
	size_t pos = 0, last_end = (size_t)-1;
	while (pos <= n) {
		int rc = re->jit ? pcre2_jit_match(re->code, (PCRE2_SPTR)s, n, pos, 0, sc->md, sc->mc)
				 : PCRE2_ERROR_JIT_STACKLIMIT;
		if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) /* no JIT, or out of JIT stack: the interpreter */
			rc = pcre2_match(re->code, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, sc->md, sc->mc);
		if (rc == PCRE2_ERROR_NOMATCH)
			return;
		if (rc < 0) {
			/* a resource limit: stopping here would give other ids silently */
			PCRE2_UCHAR msg[256];
			pcre2_get_error_message(rc, msg, sizeof msg);
			lf_die("regex match on a %zu-byte piece failed: %s", n, (char *)msg);
		}
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(sc->md);
		size_t ms = ov[0], me = ov[1];
		if (ms == me && me == last_end) { /* no empty match right after a match */
			if (me >= n)
				return;
			uint32_t cp;
			size_t k = lf_utf8_decode(s + me, n - me, &cp);
			pos = me + (k ? k : 1);
			continue;
		}
		fn(ms, me, arg);
		last_end = me;
		pos = me;
	}
}

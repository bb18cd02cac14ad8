/*
 * regex.h — the tokenizers library's regular expressions (Oniguruma syntax
 * and semantics) on PCRE2.
 *
 * Patterns are rewritten before PCRE2 compiles them: every class whose
 * meaning depends on Unicode data (\p{..}, \s, \d, \w, \h and their negations)
 * becomes an explicit set of code-point ranges from lf's Unicode 16.0 tables,
 * the version Oniguruma uses there, so results do not depend on PCRE2's own
 * (older) tables.  Matching follows Oniguruma's find_iter: leftmost matches,
 * an empty match right after the previous match is skipped.  Patterns are
 * JIT-compiled; a compiled regex is shared by threads, each with its own
 * lf_regex_scratch.
 */
#ifndef LF_REGEX_H
#define LF_REGEX_H

#include <stdbool.h>
#include <stddef.h>

struct lf_regex;
struct lf_regex_scratch;

/* NULL with lf_fail naming the problem (an unsupported construct, or PCRE2's
 * message and offset). */
struct lf_regex *lf_regex_compile(const char *pattern, size_t len);
void lf_regex_free(struct lf_regex *re);

struct lf_regex_scratch *lf_regex_scratch_new(void);
void lf_regex_scratch_free(struct lf_regex_scratch *sc);

/* Call fn(start, end, arg) for every match in s[0..n) (valid UTF-8), left to
 * right, as Oniguruma's find_iter yields them. */
void lf_regex_each(const struct lf_regex *re, struct lf_regex_scratch *sc, const char *s, size_t n,
		   void (*fn)(size_t start, size_t end, void *arg), void *arg);

#endif

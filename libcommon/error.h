/*
 * error.h — how every lf program reports problems.
 *
 * Messages go to stderr as "PROG: error: WHAT" (or "warning"), lowercase, no
 * final full stop, the subject quoted: lf-template: error: data.json: record 17:
 * missing column 'instruction'.
 *
 * Library code does not print: it records the message with lf_fail() and
 * returns -1; the tool reports it at the edge with lf_die("%s", lf_errmsg()).
 * Exit status: 0 success, 1 failure (bad data, I/O), 2 bad usage.
 */
#ifndef LF_ERROR_H
#define LF_ERROR_H

#include <stddef.h>

#define LF_EXIT_FAILURE 1
#define LF_EXIT_USAGE 2

void lf_set_progname(const char *argv0);
const char *lf_progname(void);

/* Record an error message for the caller to report; returns -1. */
int lf_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prefix the recorded message with more context: "CONTEXT: old message". */
int lf_fail_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *lf_errmsg(void);

/* Print "PROG: error: ..." and exit 1 (after removing unfinished outputs). */
void lf_die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
/* Print "PROG: error: ..." plus a hint to --help and exit 2. */
void lf_die_usage(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
void lf_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void lf_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Allocation that never returns NULL: out of memory is fatal. */
void *lf_malloc(size_t n);
void *lf_calloc(size_t count, size_t size);
void *lf_realloc(void *p, size_t n);
char *lf_strdup(const char *s);
char *lf_strndup(const char *s, size_t n);

/* Hooks run (last registered first) by lf_die before exiting; lf_errmsg()
 * then holds the fatal message. */
void lf_on_die(void (*fn)(void));

#endif

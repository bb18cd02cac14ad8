/*
 * error.c — error recording, reporting and checked allocation (see error.h).
 */
#include "error.h"
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *progname = "lf";
static _Thread_local char errbuf[4096]; /* per thread: tools fail records on worker threads */
static void (*die_hooks[8])(void);
static int ndie_hooks;

void lf_set_progname(const char *argv0)
{
	const char *slash = strrchr(argv0, '/');
	progname = slash ? slash + 1 : argv0;
}

const char *lf_progname(void)
{
	return progname;
}

int lf_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof errbuf, fmt, ap);
	va_end(ap);
	return -1;
}

int lf_fail_prefix(const char *fmt, ...)
{
	char prefix[1024], old[sizeof errbuf];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof prefix, fmt, ap);
	va_end(ap);
	memcpy(old, errbuf, sizeof old);
	size_t n = strlen(prefix);
	if (n > sizeof errbuf - 3)
		n = sizeof errbuf - 3;
	memcpy(errbuf, prefix, n);
	memcpy(errbuf + n, ": ", 2);
	size_t room = sizeof errbuf - n - 3;
	size_t m = strnlen(old, room);
	memcpy(errbuf + n + 2, old, m);
	errbuf[n + 2 + m] = 0;
	return -1;
}

const char *lf_errmsg(void)
{
	return errbuf[0] ? errbuf : "unknown error";
}

static void report(const char *kind, const char *fmt, va_list ap)
{
	char msg[8192];
	vsnprintf(msg, sizeof msg, fmt, ap);
	lf_progress_done();
	fprintf(stderr, "%s: %s%s%s\n", progname, kind, kind[0] ? ": " : "", msg);
}

void lf_on_die(void (*fn)(void))
{
	for (int i = 0; i < ndie_hooks; i++)
		if (die_hooks[i] == fn)
			return;
	if (ndie_hooks < 8)
		die_hooks[ndie_hooks++] = fn;
}

static void run_die_hooks(void)
{
	while (ndie_hooks > 0)
		die_hooks[--ndie_hooks]();
}

/* Report a fatal error, run the hooks and exit with `code`. */
static _Noreturn void die(int code, const char *fmt, va_list ap)
{
	char msg[sizeof errbuf]; /* fmt's arguments may be errbuf itself */
	vsnprintf(msg, sizeof msg, fmt, ap);
	memcpy(errbuf, msg, sizeof errbuf);
	lf_progress_done();
	fprintf(stderr, "%s: error: %s\n", progname, errbuf);
	if (code == LF_EXIT_USAGE)
		fprintf(stderr, "Try '%s --help' for more information.\n", progname);
	run_die_hooks();
	exit(code);
}

void lf_die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	die(LF_EXIT_FAILURE, fmt, ap);
}

void lf_die_usage(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	die(LF_EXIT_USAGE, fmt, ap);
}

void lf_warn(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	report("warning", fmt, ap);
	va_end(ap);
}

void lf_note(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	report("", fmt, ap);
	va_end(ap);
}

static void *checked(void *p, size_t n)
{
	if (!p && n)
		lf_die("out of memory (allocating %zu bytes)", n);
	return p;
}

void *lf_malloc(size_t n)
{
	return checked(malloc(n ? n : 1), n);
}

void *lf_calloc(size_t count, size_t size)
{
	return checked(calloc(count ? count : 1, size ? size : 1), count * size);
}

void *lf_realloc(void *p, size_t n)
{
	return checked(realloc(p, n ? n : 1), n);
}

char *lf_strdup(const char *s)
{
	return lf_strndup(s, strlen(s));
}

char *lf_strndup(const char *s, size_t n)
{
	char *d = lf_malloc(n + 1);
	memcpy(d, s, n);
	d[n] = 0;
	return d;
}

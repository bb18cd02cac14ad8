/*
 * check.h — the C unit tests' harness: one "ok - ..." or "not ok - ..." line
 * per check (the runner counts them), exit status 1 when any failed.
 */
#ifndef LF_CHECK_H
#define LF_CHECK_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

static int check_failed;

__attribute__((format(printf, 4, 5))) static bool check_at(bool ok, const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf(ok ? "ok - " : "not ok - ");
	vprintf(fmt, ap);
	va_end(ap);
	if (!ok) {
		printf(" (%s:%d)", file, line);
		check_failed++;
	}
	printf("\n");
	fflush(stdout);
	return ok;
}

#define CHECK(cond, ...) check_at((cond), __FILE__, __LINE__, __VA_ARGS__)

static int check_done(void)
{
	return check_failed ? 1 : 0;
}

#endif

/*
 * report.h — how the GPU checks report: one "PASS name detail" or "FAIL
 * name detail" line per check, counted for the exit status; and host
 * allocation that stops the check when memory runs out.  Header-only; each
 * check includes it once.
 */
#ifndef LF_TEST_REPORT_H
#define LF_TEST_REPORT_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

static int passes, failures;

static inline void result(int ok, const char *name, const char *detail)
{
    printf("%s %s %s\n", ok ? "PASS" : "FAIL", name, detail);
    fflush(stdout);
    if (ok)
        passes++;
    else
        failures++;
}

static inline void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "%s: out of host memory (%zu bytes)\n", program_invocation_short_name, n);
        exit(1);
    }
    return p;
}

#endif

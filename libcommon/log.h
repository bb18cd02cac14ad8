/*
 * log.h — the machine-readable log (--log FILE: JSON lines) and the progress
 * line a long job shows on stderr when stderr is a terminal.
 */
#ifndef LF_LOG_H
#define LF_LOG_H

#include <jansson.h>
#include <stdbool.h>

/* Open the JSON-lines log (appends).  Returns -1 with lf_fail. */
int lf_log_open(const char *path);
bool lf_log_enabled(void);
/* Write {"time": ..., "tool": ..., "event": EVENT, ...fields}; steals fields
 * (may be NULL). */
void lf_log_event(const char *event, json_t *fields);
void lf_log_close(void);

/* "\rPROG: MESSAGE" on a terminal, at most ten times a second. */
void lf_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Clear the progress line. */
void lf_progress_done(void);

#endif

/*
 * output.h — all-or-nothing output files.
 *
 * An output is written under a temporary name beside its final path and
 * renamed into place only when complete, so a reader never sees half a file.
 * A path that is a device or a pipe (/dev/null, a FIFO) is written in place.
 * Unfinished temporaries are removed when the program dies, is interrupted
 * (SIGINT, SIGTERM, SIGHUP) or loses its reader (SIGPIPE).
 */
#ifndef LF_OUTPUT_H
#define LF_OUTPUT_H

#include <stdbool.h>
#include <stdio.h>

struct lf_output {
	FILE *f;
	char *path; /* final path; NULL for stdout */
	char *tmp;  /* temporary path while writing; NULL for a device or pipe */
	int slot;   /* index in the cleanup registry */
};

/* Open path for writing ("-" or NULL: stdout).  Returns -1 with lf_fail. */
int lf_output_open(struct lf_output *o, const char *path);
bool lf_output_is_stdout(const struct lf_output *o);
/* Flush, sync and rename into place.  Returns -1 with lf_fail. */
int lf_output_commit(struct lf_output *o);
/* Close and remove the temporary file. */
void lf_output_abort(struct lf_output *o);

/* Install the signal handlers that remove unfinished outputs. */
void lf_output_init_signals(void);
/* Remove every unfinished temporary (called on fatal errors). */
void lf_output_cleanup(void);

#endif

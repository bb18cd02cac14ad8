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

/* Output folders: built under PATH.tmp.PID and renamed to PATH when complete.
 * An existing PATH is replaced only when it holds `marker` (an earlier
 * output of the same tool) or is empty; anything else is refused.  Files
 * made inside are removed if the program dies or is interrupted. */
struct lf_outdir {
	char *path, *tmp, *marker, *file;
	int *slots;
	size_t nslots;
	int dir_slot;
};
int lf_outdir_open(struct lf_outdir *d, const char *path, const char *marker);
/* The temporary path of file `name` in the folder (valid until the next
 * call), registered for cleanup. */
const char *lf_outdir_file(struct lf_outdir *d, const char *name);
int lf_outdir_commit(struct lf_outdir *d);
void lf_outdir_abort(struct lf_outdir *d);

#endif

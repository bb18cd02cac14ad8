/*
 * log.c — JSON-lines log and terminal progress line (see log.h).
 */
#include "log.h"
#include "error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static FILE *logf;
static int progress_shown;
static struct timespec last_progress;

int lf_log_open(const char *path)
{
	logf = fopen(path, "a");
	if (!logf)
		return lf_fail("%s: cannot open log: %s", path, strerror(errno));
	return 0;
}

bool lf_log_enabled(void)
{
	return logf != NULL;
}

void lf_log_event(const char *event, json_t *fields)
{
	if (!logf) {
		json_decref(fields);
		return;
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	json_t *o = json_object();
	json_object_set_new(o, "time", json_real((double)ts.tv_sec + ts.tv_nsec / 1e9));
	json_object_set_new(o, "tool", json_string(lf_progname()));
	json_object_set_new(o, "event", json_string(event));
	if (fields)
		json_object_update(o, fields);
	json_decref(fields);
	json_dumpf(o, logf, JSON_COMPACT | JSON_PRESERVE_ORDER);
	fputc('\n', logf);
	fflush(logf);
	json_decref(o);
}

void lf_log_close(void)
{
	if (logf)
		fclose(logf);
	logf = NULL;
}

void lf_progress(const char *fmt, ...)
{
	if (!isatty(STDERR_FILENO))
		return;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	double dt = (double)(now.tv_sec - last_progress.tv_sec) + (now.tv_nsec - last_progress.tv_nsec) / 1e9;
	if (progress_shown && dt < 0.1)
		return;
	last_progress = now;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\r%s: %s\033[K", lf_progname(), msg);
	progress_shown = 1;
}

void lf_progress_done(void)
{
	if (progress_shown && isatty(STDERR_FILENO))
		fprintf(stderr, "\r\033[K");
	progress_shown = 0;
}

/*
 * output.c — temporary-then-rename outputs and their cleanup (see output.h).
 */
#include "output.h"
#include "error.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_PENDING 64

/* Paths of unfinished temporaries, read by the signal handler. */
static char pending[MAX_PENDING][4096];
static volatile sig_atomic_t pending_used[MAX_PENDING];

static int register_tmp(const char *tmp)
{
	for (int i = 0; i < MAX_PENDING; i++) {
		if (!pending_used[i]) {
			snprintf(pending[i], sizeof pending[i], "%s", tmp);
			pending_used[i] = 1;
			return i;
		}
	}
	return -1;
}

void lf_output_cleanup(void)
{
	for (int i = 0; i < MAX_PENDING; i++) {
		if (pending_used[i]) {
			unlink(pending[i]);
			pending_used[i] = 0;
		}
	}
}

static void on_signal(int sig)
{
	for (int i = 0; i < MAX_PENDING; i++)
		if (pending_used[i])
			unlink(pending[i]);
	signal(sig, SIG_DFL);
	raise(sig);
}

void lf_output_init_signals(void)
{
	int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGPIPE };
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
		struct sigaction sa;
		memset(&sa, 0, sizeof sa);
		sa.sa_handler = on_signal;
		sigemptyset(&sa.sa_mask);
		sigaction(sigs[i], &sa, NULL);
	}
	lf_on_die(lf_output_cleanup);
}

int lf_output_open(struct lf_output *o, const char *path)
{
	memset(o, 0, sizeof *o);
	o->slot = -1;
	if (!path || strcmp(path, "-") == 0) {
		o->f = stdout;
		return 0;
	}
	struct stat st;
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		return lf_fail("%s: is a directory", path);
	if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
		/* a device or a pipe (/dev/null, a FIFO): written in place, never
		 * replaced by a rename */
		int fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			return lf_fail("%s: cannot open: %s", path, strerror(errno));
		o->f = fdopen(fd, "wb");
		o->path = lf_strdup(path);
		return 0;
	}
	size_t n = strlen(path) + 32;
	o->tmp = lf_malloc(n);
	snprintf(o->tmp, n, "%s.tmp.%ld", path, (long)getpid());
	int fd = open(o->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
	if (fd < 0) {
		int e = errno;
		free(o->tmp);
		o->tmp = NULL;
		return lf_fail("%s: cannot create: %s", path, strerror(e));
	}
	o->slot = register_tmp(o->tmp);
	o->f = fdopen(fd, "wb");
	o->path = lf_strdup(path);
	return 0;
}

bool lf_output_is_stdout(const struct lf_output *o)
{
	return o->path == NULL;
}

static void forget(struct lf_output *o)
{
	if (o->slot >= 0)
		pending_used[o->slot] = 0;
	free(o->path);
	free(o->tmp);
	o->path = o->tmp = NULL;
	o->f = NULL;
	o->slot = -1;
}

int lf_output_commit(struct lf_output *o)
{
	if (lf_output_is_stdout(o)) {
		if (fflush(stdout) != 0)
			return lf_fail("<stdout>: write failed: %s", strerror(errno));
		return 0;
	}
	int bad = ferror(o->f) || fflush(o->f) != 0 || (o->tmp && fsync(fileno(o->f)) != 0);
	int e = errno;
	if (fclose(o->f) != 0 && !bad) {
		bad = 1;
		e = errno;
	}
	o->f = NULL;
	if (bad && o->tmp)
		unlink(o->tmp);
	if (bad) {
		lf_fail("%s: write failed: %s", o->path, strerror(e));
		forget(o);
		return -1;
	}
	if (o->tmp && rename(o->tmp, o->path) != 0) {
		e = errno;
		unlink(o->tmp);
		lf_fail("%s: cannot rename from %s: %s", o->path, o->tmp, strerror(e));
		forget(o);
		return -1;
	}
	forget(o);
	return 0;
}

void lf_output_abort(struct lf_output *o)
{
	if (lf_output_is_stdout(o)) {
		fflush(stdout);
		return;
	}
	if (o->f)
		fclose(o->f);
	if (o->tmp)
		unlink(o->tmp);
	forget(o);
}

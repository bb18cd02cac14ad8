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
#include <dirent.h>
#include <unistd.h>

#define MAX_PENDING 1024

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

/* Temporary folders (lf_outdir), removed after the files in them. */
static char pending_dir[8][4096];
static volatile sig_atomic_t pending_dir_used[8];

/* Remove a flat folder of files. */
static void remove_flat_dir(const char *path)
{
	DIR *d = opendir(path);
	if (d) {
		struct dirent *e;
		char f[4096];
		while ((e = readdir(d))) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			snprintf(f, sizeof f, "%s/%s", path, e->d_name);
			unlink(f);
		}
		closedir(d);
	}
	rmdir(path);
}

/* Outside a signal handler: the folder and whatever is in it (files past
 * the registry's capacity included). */
static void remove_pending_dirs(void)
{
	for (int i = 0; i < 8; i++) {
		if (pending_dir_used[i]) {
			remove_flat_dir(pending_dir[i]);
			pending_dir_used[i] = 0;
		}
	}
}

void lf_output_cleanup(void)
{
	for (int i = 0; i < MAX_PENDING; i++) {
		if (pending_used[i]) {
			unlink(pending[i]);
			pending_used[i] = 0;
		}
	}
	remove_pending_dirs();
}

static void on_signal(int sig)
{
	for (int i = 0; i < MAX_PENDING; i++)
		if (pending_used[i])
			unlink(pending[i]);
	for (int i = 0; i < 8; i++)
		if (pending_dir_used[i])
			rmdir(pending_dir[i]);
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

/* ---- output folders ---- */

static bool is_lf_output(const char *path, const char *marker)
{
	char m[4096];
	snprintf(m, sizeof m, "%s/%s", path, marker);
	return access(m, F_OK) == 0;
}

static bool is_empty_dir(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return false;
	struct dirent *e;
	bool empty = true;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			empty = false;
	closedir(d);
	return empty;
}

int lf_outdir_open(struct lf_outdir *d, const char *path, const char *marker)
{
	memset(d, 0, sizeof *d);
	d->dir_slot = -1;
	struct stat st;
	if (stat(path, &st) == 0) {
		if (!S_ISDIR(st.st_mode))
			return lf_fail("%s: exists and is not a folder", path);
		if (!is_lf_output(path, marker) && !is_empty_dir(path))
			return lf_fail("%s: exists and is not an output of this tool (no %s): not replaced", path,
				       marker);
	}
	size_t n = strlen(path) + 32;
	d->tmp = lf_malloc(n);
	snprintf(d->tmp, n, "%s.tmp.%ld", path, (long)getpid());
	remove_flat_dir(d->tmp); /* a leftover of an earlier run with our pid */
	if (mkdir(d->tmp, 0777) != 0) {
		int e = errno;
		free(d->tmp);
		d->tmp = NULL;
		return lf_fail("%s: cannot create: %s", path, strerror(e));
	}
	for (int i = 0; i < 8; i++) {
		if (!pending_dir_used[i]) {
			snprintf(pending_dir[i], sizeof pending_dir[i], "%s", d->tmp);
			pending_dir_used[i] = 1;
			d->dir_slot = i;
			break;
		}
	}
	d->path = lf_strdup(path);
	d->marker = lf_strdup(marker);
	return 0;
}

const char *lf_outdir_file(struct lf_outdir *d, const char *name)
{
	free(d->file);
	size_t n = strlen(d->tmp) + strlen(name) + 2;
	d->file = lf_malloc(n);
	snprintf(d->file, n, "%s/%s", d->tmp, name);
	int slot = register_tmp(d->file);
	if (slot >= 0) {
		d->slots = lf_realloc(d->slots, (d->nslots + 1) * sizeof *d->slots);
		d->slots[d->nslots++] = slot;
	}
	return d->file;
}

static void outdir_forget(struct lf_outdir *d)
{
	for (size_t i = 0; i < d->nslots; i++)
		pending_used[d->slots[i]] = 0;
	if (d->dir_slot >= 0)
		pending_dir_used[d->dir_slot] = 0;
	free(d->slots);
	free(d->file);
	free(d->tmp);
	free(d->path);
	free(d->marker);
	memset(d, 0, sizeof *d);
	d->dir_slot = -1;
}

int lf_outdir_commit(struct lf_outdir *d)
{
	int fd = open(d->tmp, O_RDONLY | O_DIRECTORY);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	char *old = NULL;
	struct stat st;
	if (stat(d->path, &st) == 0) {
		/* checked again: it may have appeared while we worked */
		if (!S_ISDIR(st.st_mode) || (!is_lf_output(d->path, d->marker) && !is_empty_dir(d->path))) {
			lf_fail("%s: appeared while writing and is not an output of this tool: not replaced; the "
				"result is in %s", d->path, d->tmp);
			outdir_forget(d);
			return -1;
		}
		size_t n = strlen(d->path) + 32;
		old = lf_malloc(n);
		snprintf(old, n, "%s.old.%ld", d->path, (long)getpid());
		remove_flat_dir(old);
		if (rename(d->path, old) != 0) {
			int e = errno;
			free(old);
			lf_fail("%s: cannot move the previous output aside: %s", d->path, strerror(e));
			lf_outdir_abort(d);
			return -1;
		}
	}
	if (rename(d->tmp, d->path) != 0) {
		int e = errno;
		if (old)
			rename(old, d->path);
		free(old);
		lf_fail("%s: cannot rename from %s: %s", d->path, d->tmp, strerror(e));
		lf_outdir_abort(d);
		return -1;
	}
	if (old)
		remove_flat_dir(old);
	free(old);
	outdir_forget(d);
	return 0;
}

void lf_outdir_abort(struct lf_outdir *d)
{
	if (d->tmp)
		remove_flat_dir(d->tmp);
	outdir_forget(d);
}

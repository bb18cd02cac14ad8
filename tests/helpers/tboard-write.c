/*
 * tboard-write.c — test helper for libcommon/tboard and libcommon/plot,
 * driven by tests/tools/tboard_oracle.py.
 *
 *   tboard-write events LOGDIR     event file from commands on stdin, one a line:
 *       scalar TAG STEP VALUE WALL_TIME
 *       hf KEY STEP VALUE WALL_TIME      (KEY renamed as the HF Trainer does)
 *       text NAME STEP WALL_TIME TEXT    (TEXT: the rest of the line, \n = newline)
 *       flush
 *       crash                            (exit at once without closing)
 *     prints the event file's path first
 *   tboard-write plot PNG TITLE YLABEL   "STEP VALUE" lines on stdin; prints
 *     the layout as JSON
 *   tboard-write key OUTPUT_DIR KEY      the same through lf_plot_key
 *   tboard-write smooth                  one value a line in, smoothed out (%.17g)
 *   tboard-write logdir OUTPUT_DIR NOW   the Trainer's default log folder
 *   tboard-write tag KEY                 the tag of a Trainer log key
 */
#include "error.h"
#include "plot.h"
#include "tboard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *unescape(char *s)
{
	char *w = s;
	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && r[1] == 'n') {
			*w++ = '\n';
			r++;
		} else if (r[0] == '\\' && r[1] == '\\') {
			*w++ = '\\';
			r++;
		} else {
			*w++ = *r;
		}
	}
	*w = 0;
	return s;
}

static int events(const char *logdir)
{
	struct lf_tboard *tb = lf_tboard_open(logdir);
	if (!tb)
		lf_die("%s", lf_errmsg());
	printf("%s\n", lf_tboard_path(tb));
	fflush(stdout);
	char line[65536];
	while (fgets(line, sizeof line, stdin)) {
		line[strcspn(line, "\n")] = 0;
		char tag[4096];
		long long step;
		double value, wall;
		int off = 0;
		int rc = 0;
		if (sscanf(line, "scalar %4095s %lld %lf %lf", tag, &step, &value, &wall) == 4) {
			rc = lf_tboard_scalar(tb, tag, step, (float)value, wall);
		} else if (sscanf(line, "hf %4095s %lld %lf %lf", tag, &step, &value, &wall) == 4) {
			char *t = lf_tboard_hf_tag(tag);
			rc = lf_tboard_scalar(tb, t, step, (float)value, wall);
			free(t);
		} else if (sscanf(line, "text %4095s %lld %lf %n", tag, &step, &wall, &off) == 3 && off > 0) {
			rc = lf_tboard_text(tb, tag, unescape(line + off), step, wall);
		} else if (strcmp(line, "flush") == 0) {
			rc = lf_tboard_flush(tb);
		} else if (strcmp(line, "crash") == 0) {
			_exit(0);
		} else if (line[0]) {
			lf_die("bad command: %s", line);
		}
		if (rc != 0)
			lf_die("%s", lf_errmsg());
	}
	if (lf_tboard_close(tb) != 0)
		lf_die("%s", lf_errmsg());
	return 0;
}

static size_t read_points(long **steps, double **values)
{
	size_t n = 0, cap = 16;
	*steps = lf_malloc(cap * sizeof(long));
	*values = lf_malloc(cap * sizeof(double));
	char line[256];
	while (fgets(line, sizeof line, stdin)) {
		char *end;
		long s = strtol(line, &end, 10);
		if (end == line)
			continue;
		double v = strtod(end, NULL);
		if (n == cap) {
			cap *= 2;
			*steps = lf_realloc(*steps, cap * sizeof(long));
			*values = lf_realloc(*values, cap * sizeof(double));
		}
		(*steps)[n] = s;
		(*values)[n] = v;
		n++;
	}
	return n;
}

int main(int argc, char **argv)
{
	lf_set_progname(argv[0]);
	if (argc == 3 && strcmp(argv[1], "events") == 0)
		return events(argv[2]);
	if (argc == 5 && strcmp(argv[1], "plot") == 0) {
		long *steps;
		double *values;
		size_t n = read_points(&steps, &values);
		struct lf_plot_frame f;
		if (lf_plot_loss(argv[2], argv[3], argv[4], steps, values, n, &f) != 0)
			lf_die("%s", lf_errmsg());
		printf("{\"width\": %d, \"height\": %d, \"left\": %.17g, \"top\": %.17g, \"right\": %.17g, "
		       "\"bottom\": %.17g, \"xmin\": %.17g, \"xmax\": %.17g, \"ymin\": %.17g, \"ymax\": %.17g}\n",
		       f.width, f.height, f.left, f.top, f.right, f.bottom, f.xmin, f.xmax, f.ymin, f.ymax);
		free(steps);
		free(values);
		return 0;
	}
	if (argc == 4 && strcmp(argv[1], "key") == 0) {
		long *steps;
		double *values;
		size_t n = read_points(&steps, &values);
		int rc = lf_plot_key(argv[2], argv[3], steps, values, n);
		if (rc < 0)
			lf_die("%s", lf_errmsg());
		printf("%s\n", rc == 1 ? "skipped" : "written");
		free(steps);
		free(values);
		return 0;
	}
	if (argc == 2 && strcmp(argv[1], "smooth") == 0) {
		size_t n = 0, cap = 16;
		double *v = lf_malloc(cap * sizeof(double));
		char line[256];
		while (fgets(line, sizeof line, stdin)) {
			if (n == cap) {
				cap *= 2;
				v = lf_realloc(v, cap * sizeof(double));
			}
			v[n++] = strtod(line, NULL);
		}
		lf_plot_smooth(v, v, n);
		for (size_t i = 0; i < n; i++)
			printf("%.17g\n", v[i]);
		free(v);
		return 0;
	}
	if (argc == 4 && strcmp(argv[1], "logdir") == 0) {
		char *d = lf_tboard_default_logdir(argv[2], strtoll(argv[3], NULL, 10));
		printf("%s\n", d);
		free(d);
		return 0;
	}
	if (argc == 3 && strcmp(argv[1], "tag") == 0) {
		char *t = lf_tboard_hf_tag(argv[2]);
		printf("%s\n", t);
		free(t);
		return 0;
	}
	fprintf(stderr, "usage: tboard-write events LOGDIR | plot PNG TITLE YLABEL | key OUTPUT_DIR KEY | smooth | "
			"logdir OUTPUT_DIR NOW | tag KEY\n");
	return 2;
}

/*
 * nprandom-dump — test helper: print what libcommon/nprandom computes for one
 * request given on the command line, numbers separated by spaces, so that
 * tests/tools/nprandom.py can compare them with numpy and datasets.
 *
 *   nprandom-dump u64 SEED N             N next_uint64 values
 *   nprandom-dump u32 SEED N             N next_uint32 values
 *   nprandom-dump random SEED N          N random() values (%.17g)
 *   nprandom-dump interval SEED MAX N    N random_interval(MAX) values
 *   nprandom-dump mixed SEED OPS         one draw per letter of OPS: a next_uint32,
 *                                        b next_uint64, d random()
 *   nprandom-dump perm SEED N            permutation(N)
 *   nprandom-dump choice SEED SIZE P,..  choice(len(P), SIZE, p=P)
 *   nprandom-dump split N TEST SEED      train_test_split: line 1 the test rows,
 *                                        line 2 the train rows; TEST with '.',
 *                                        'e' or "nan" is a fraction, else a count
 *   nprandom-dump interleave SEED STRATEGY LEN,.. [P,..]
 *                                        interleave_datasets: DATASET:ROW pairs
 *
 * SEED is a decimal integer below 2**64, or w:W0,W1,... for the 32-bit words
 * of a larger one (least significant first).  Errors go to stderr as
 * "nprandom-dump: error: MESSAGE" with exit status 1.
 */
#include "buf.h"
#include "error.h"
#include "nprandom.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t parse_u64(const char *s)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (!*s || *end || errno || *s == '-')
		lf_die_usage("bad number '%s'", s);
	return v;
}

static void seed_rng(struct lf_np_rng *rng, const char *s)
{
	if (strncmp(s, "w:", 2)) {
		lf_np_rng_seed(rng, parse_u64(s));
		return;
	}
	uint32_t words[64];
	size_t n = 0;
	char *dup = lf_strdup(s + 2);
	for (char *t = strtok(dup, ","); t; t = strtok(NULL, ",")) {
		uint64_t w = parse_u64(t);
		if (w > UINT32_MAX || n == 64)
			lf_die_usage("bad seed words '%s'", s);
		words[n++] = (uint32_t)w;
	}
	free(dup);
	lf_np_rng_seed_words(rng, words, n);
}

/* A comma-separated list of doubles (count in *n), lf_malloc'd. */
static double *parse_doubles(const char *s, size_t *n)
{
	char *dup = lf_strdup(s);
	double *v = lf_malloc((strlen(s) + 1) * sizeof *v);
	*n = 0;
	for (char *t = strtok(dup, ","); t; t = strtok(NULL, ",")) {
		char *end;
		v[(*n)++] = strtod(t, &end);
		if (*end)
			lf_die_usage("bad number '%s'", t);
	}
	free(dup);
	return v;
}

static void add_sep(struct lf_buf *b, size_t i)
{
	if (i)
		lf_buf_addch(b, ' ');
}

static void add_rows(struct lf_buf *b, const size_t *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		add_sep(b, i);
		lf_buf_add_uint(b, v[i]);
	}
	lf_buf_addch(b, '\n');
}

int main(int argc, char **argv)
{
	lf_set_progname(argv[0]);
	if (argc < 3)
		lf_die_usage("usage: nprandom-dump COMMAND ARGS...");
	const char *cmd = argv[1];
	struct lf_buf out = LF_BUF_INIT;
	struct lf_np_rng rng;

	if (!strcmp(cmd, "u64") || !strcmp(cmd, "u32") || !strcmp(cmd, "random")) {
		if (argc != 4)
			lf_die_usage("usage: nprandom-dump %s SEED N", cmd);
		seed_rng(&rng, argv[2]);
		uint64_t n = parse_u64(argv[3]);
		for (uint64_t i = 0; i < n; i++) {
			add_sep(&out, i);
			if (cmd[0] == 'r')
				lf_buf_addf(&out, "%.17g", lf_np_random(&rng));
			else
				lf_buf_add_uint(&out, cmd[1] == '6' ? lf_np_next_uint64(&rng) : lf_np_next_uint32(&rng));
		}
		lf_buf_addch(&out, '\n');
	} else if (!strcmp(cmd, "interval")) {
		if (argc != 5)
			lf_die_usage("usage: nprandom-dump interval SEED MAX N");
		seed_rng(&rng, argv[2]);
		uint64_t max = parse_u64(argv[3]), n = parse_u64(argv[4]);
		for (uint64_t i = 0; i < n; i++) {
			add_sep(&out, i);
			lf_buf_add_uint(&out, lf_np_random_interval(&rng, max));
		}
		lf_buf_addch(&out, '\n');
	} else if (!strcmp(cmd, "mixed")) {
		if (argc != 4)
			lf_die_usage("usage: nprandom-dump mixed SEED OPS");
		seed_rng(&rng, argv[2]);
		for (size_t i = 0; argv[3][i]; i++) {
			add_sep(&out, i);
			char op = argv[3][i];
			if (op == 'a')
				lf_buf_add_uint(&out, lf_np_next_uint32(&rng));
			else if (op == 'b')
				lf_buf_add_uint(&out, lf_np_next_uint64(&rng));
			else if (op == 'd')
				lf_buf_addf(&out, "%.17g", lf_np_random(&rng));
			else
				lf_die_usage("bad op '%c'", op);
		}
		lf_buf_addch(&out, '\n');
	} else if (!strcmp(cmd, "perm")) {
		if (argc != 4)
			lf_die_usage("usage: nprandom-dump perm SEED N");
		seed_rng(&rng, argv[2]);
		size_t n = (size_t)parse_u64(argv[3]);
		size_t *perm = lf_malloc((n ? n : 1) * sizeof *perm);
		lf_np_permutation(&rng, n, perm);
		add_rows(&out, perm, n);
		free(perm);
	} else if (!strcmp(cmd, "choice")) {
		if (argc != 5)
			lf_die_usage("usage: nprandom-dump choice SEED SIZE P,...");
		seed_rng(&rng, argv[2]);
		size_t size = (size_t)parse_u64(argv[3]), k;
		double *p = parse_doubles(argv[4], &k);
		size_t *idx = lf_malloc((size ? size : 1) * sizeof *idx);
		int rc = lf_np_choice(&rng, k, p, size, idx);
		free(p);
		if (rc < 0) {
			free(idx);
			lf_die("%s", lf_errmsg());
		}
		add_rows(&out, idx, size);
		free(idx);
	} else if (!strcmp(cmd, "split")) {
		if (argc != 5)
			lf_die_usage("usage: nprandom-dump split N TEST_SIZE SEED");
		const char *t = argv[3];
		int is_count = !strpbrk(t, ".eEn");
		char *end;
		double test_size = strtod(t, &end);
		if (*end)
			lf_die_usage("bad test size '%s'", t);
		struct lf_hf_split s;
		if (lf_hf_train_test_split((size_t)parse_u64(argv[2]), test_size, is_count, parse_u64(argv[4]), &s) < 0)
			lf_die("%s", lf_errmsg());
		add_rows(&out, s.test, s.n_test);
		add_rows(&out, s.train, s.n_train);
		lf_hf_split_free(&s);
	} else if (!strcmp(cmd, "interleave")) {
		if (argc != 5 && argc != 6)
			lf_die_usage("usage: nprandom-dump interleave SEED STRATEGY LEN,... [P,...]");
		enum lf_hf_stop stop;
		if (lf_hf_stop_parse(argv[3], &stop) < 0)
			lf_die("%s", lf_errmsg());
		size_t k, kp = 0;
		double *lens_d = parse_doubles(argv[4], &k);
		size_t *lens = lf_malloc((k ? k : 1) * sizeof *lens);
		for (size_t i = 0; i < k; i++)
			lens[i] = (size_t)lens_d[i];
		double *p = argc == 6 ? parse_doubles(argv[5], &kp) : NULL;
		if (p && kp != k)
			lf_die_usage("a and p must have same size");
		struct lf_hf_pick *picks;
		size_t n;
		int rc = lf_hf_interleave(lens, k, p, parse_u64(argv[2]), stop, &picks, &n);
		free(lens);
		free(lens_d);
		free(p);
		if (rc < 0)
			lf_die("%s", lf_errmsg());
		for (size_t i = 0; i < n; i++) {
			add_sep(&out, i);
			lf_buf_add_uint(&out, picks[i].dataset);
			lf_buf_addch(&out, ':');
			lf_buf_add_uint(&out, picks[i].row);
		}
		lf_buf_addch(&out, '\n');
		free(picks);
	} else {
		lf_die_usage("unknown command '%s'", cmd);
	}
	fwrite(out.data ? out.data : "", 1, out.len, stdout);
	lf_buf_free(&out);
	return 0;
}

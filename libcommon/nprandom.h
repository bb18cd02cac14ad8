/*
 * nprandom.h — numpy's default_rng bit for bit, and the two index
 * computations of Hugging Face `datasets` (4.0.0) that LLaMA-Factory uses to
 * pick rows: Dataset.train_test_split (val_size) and interleave_datasets on
 * map-style datasets (mix_strategy interleave_*).
 *
 * The generator is numpy.random.default_rng(seed): a SeedSequence built from
 * the seed's 32-bit words feeds PCG64 (128-bit LCG, XSL-RR output).  Every
 * function here draws from it exactly as numpy 2.x does, so a Python run and
 * an lf run with the same seed select the same rows in the same order.
 *
 * Row indices are size_t.  Results are allocated with lf_malloc (never NULL);
 * the caller frees them.  Functions that can fail record the message with
 * lf_fail (error.h) and return -1; the messages are datasets' and numpy's own.
 */
#ifndef LF_NPRANDOM_H
#define LF_NPRANDOM_H

#include <stddef.h>
#include <stdint.h>

/* ---- numpy.random.Generator(PCG64) ---- */

struct lf_np_rng {
	uint64_t state_hi, state_lo; /* the 128-bit LCG state */
	uint64_t inc_hi, inc_lo;     /* the 128-bit increment (odd) */
	int has_uint32;              /* next_uint32's buffered upper half */
	uint32_t uinteger;
};

/* default_rng(seed) for a non-negative integer seed. */
void lf_np_rng_seed(struct lf_np_rng *rng, uint64_t seed);
/* default_rng(seed) for any non-negative integer given as its 32-bit words,
 * least significant first, as numpy splits it (seed 0 is one word, 0; a
 * larger seed has no leading zero words; 2**64 is {0, 0, 1}).  Also
 * default_rng(SeedSequence(words)) for a list of 32-bit integers. */
void lf_np_rng_seed_words(struct lf_np_rng *rng, const uint32_t *words, size_t n);

/* The bit generator's raw outputs.  next_uint32 returns the low half of a
 * 64-bit draw and keeps the high half for the next next_uint32 call;
 * next_uint64 neither uses nor clears that buffer (numpy's PCG64 does the
 * same). */
uint64_t lf_np_next_uint64(struct lf_np_rng *rng);
uint32_t lf_np_next_uint32(struct lf_np_rng *rng);
/* Generator.random(): (next_uint64 >> 11) * 2**-53, in [0, 1). */
double lf_np_random(struct lf_np_rng *rng);
/* A uniform integer in [0, max] by numpy's masked rejection (random_interval:
 * next_uint32 draws when max < 2**32, else next_uint64). */
uint64_t lf_np_random_interval(struct lf_np_rng *rng, uint64_t max);

/* Generator.shuffle(a) of a 1-d array: Fisher-Yates from the end, each swap
 * index from lf_np_random_interval. */
void lf_np_shuffle(struct lf_np_rng *rng, size_t *a, size_t n);
/* Generator.permutation(n): out[0..n) = 0..n-1, shuffled. */
void lf_np_permutation(struct lf_np_rng *rng, size_t n, size_t *out);

/* Generator.choice(k, size, replace=True, p) in two steps.  lf_np_choice_cdf
 * checks p (k values) as numpy does (NaN, negative, Kahan sum within
 * sqrt(eps) of 1) and writes cdf = cumsum(p) / cumsum(p)[-1] (k values);
 * lf_np_choice_draw then gives searchsorted(cdf, random(), side='right'),
 * one draw per call.  A choice(k, size=N) call is N such draws in order, so
 * drawing in chunks (as datasets does, 1000 at a time) changes nothing. */
int lf_np_choice_cdf(const double *p, size_t k, double *cdf);
size_t lf_np_choice_draw(struct lf_np_rng *rng, const double *cdf, size_t k);
/* Both steps: out[0..size) = choice(k, size, p=p) (p is checked even when
 * size is 0; k = 0 with size > 0 is numpy's "a must be a positive integer"). */
int lf_np_choice(struct lf_np_rng *rng, size_t k, const double *p, size_t size, size_t *out);

/* ---- datasets (4.0.0) ---- */

/* Dataset.train_test_split(test_size, seed=seed) without train_size,
 * stratification or shuffle=False.  test_size is a fraction in (0, 1) when
 * test_is_count is 0 (n_test = ceil(test_size * n_rows)), else a row count
 * (an integral value, 0 < count < n_rows).  LLaMA-Factory passes
 * int(val_size) when val_size > 1, else val_size as a float.
 *
 * rows is permutation(n_rows) under default_rng(seed); test is its first
 * n_test entries and train the n_train = n_rows - n_test after them, in that
 * order.  An empty table gives two empty splits without any checks.  Errors:
 * test_size out of range, an empty train split. */
struct lf_hf_split {
	size_t *rows;            /* owned: all the rows, test then train */
	size_t *test, n_test;    /* rows of the test split (points into rows) */
	size_t *train, n_train;  /* rows of the train split (points into rows) */
};

int lf_hf_train_test_split(size_t n_rows, double test_size, int test_is_count, uint64_t seed,
			   struct lf_hf_split *out);
void lf_hf_split_free(struct lf_hf_split *s);

/* interleave_datasets' stopping_strategy. */
enum lf_hf_stop {
	LF_HF_FIRST_EXHAUSTED,
	LF_HF_ALL_EXHAUSTED,
	/* Not in datasets 4.0.0 (LLaMA-Factory 0.9.5's newest allowed), whose
	 * interleave_datasets raises "all_exhausted_without_replacement is not
	 * supported. Please enter a valid stopping_strategy." for it: this
	 * follows datasets 4.3 and later (round robin fixed in 4.3.0). */
	LF_HF_ALL_EXHAUSTED_WITHOUT_REPLACEMENT,
};

/* The strategy of a name ("first_exhausted", ...); -1 for another name. */
int lf_hf_stop_parse(const char *name, enum lf_hf_stop *out);
const char *lf_hf_stop_name(enum lf_hf_stop stop);

struct lf_hf_pick {
	size_t dataset; /* which of the interleaved datasets */
	size_t row;     /* its row */
};

/* interleave_datasets(datasets, probabilities, seed, stopping_strategy) for
 * k map-style datasets of lengths[0..k): the rows it selects, in order.
 * probs == NULL: round robin (seed unused); else probs[0..k) drive
 * default_rng(seed).choice(k, p=probs) as in datasets.
 *
 *   first_exhausted  stop as soon as one dataset has given all its rows
 *   all_exhausted    stop once every dataset has; a dataset that ran out
 *                    starts again from its row 0
 *   ..._without_replacement  like all_exhausted, but a dataset that ran
 *                    out gives nothing more (a draw of it is skipped)
 *
 * datasets computes indices into the concatenation of the datasets; an
 * empty dataset i that is drawn (all_exhausted, or any strategy with
 * probabilities) contributes index offset(i) + 0, which is row 0 of the next
 * non-empty dataset, or past the end ("Index N out of range for dataset of
 * size N.").  This does the same.  Errors also: no datasets, bad
 * probabilities, and (instead of looping forever as Python would) a strategy
 * needing every dataset to run out while one can never be drawn.
 * *out is lf_malloc'd (NULL when *n_out is 0). */
int lf_hf_interleave(const size_t *lengths, size_t k, const double *probs, uint64_t seed,
		     enum lf_hf_stop stop, struct lf_hf_pick **out, size_t *n_out);

#endif

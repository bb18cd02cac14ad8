/*
 * nprandom.c — numpy's default_rng (SeedSequence -> PCG64) and the row
 * selections of datasets' train_test_split and interleave_datasets (see
 * nprandom.h).  Written from numpy 2.4's bit_generator.pyx, pcg64.h,
 * distributions.c and _generator.pyx, and datasets 4.0.0's arrow_dataset.py.
 */
#include "nprandom.h"

#include "buf.h"
#include "error.h"
#include "pyjson.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef unsigned __int128 u128;

/* ---- SeedSequence (numpy.random.bit_generator) ---- */

/* SeedSequence's pool size and hash constants; all arithmetic is on 32-bit
 * words. */
enum { SS_POOL = 4 };
static const uint32_t SS_INIT_A = 0x43b0d7e5, SS_MULT_A = 0x931e8875;
static const uint32_t SS_INIT_B = 0x8b51f9dd, SS_MULT_B = 0x58f38ded;
static const uint32_t SS_MIX_L = 0xca01f9dd, SS_MIX_R = 0x4973f715;

static uint32_t hashmix(uint32_t value, uint32_t *hash_const)
{
	value ^= *hash_const;
	*hash_const *= SS_MULT_A;
	value *= *hash_const;
	value ^= value >> 16;
	return value;
}

static uint32_t mix(uint32_t x, uint32_t y)
{
	uint32_t r = SS_MIX_L * x - SS_MIX_R * y;
	return r ^ (r >> 16);
}

/* The pool SeedSequence(entropy=words) mixes its entropy into. */
static void seedseq_pool(const uint32_t *words, size_t n, uint32_t pool[SS_POOL])
{
	uint32_t hc = SS_INIT_A;
	for (size_t i = 0; i < SS_POOL; i++)
		pool[i] = hashmix(i < n ? words[i] : 0, &hc);
	for (size_t src = 0; src < SS_POOL; src++)
		for (size_t dst = 0; dst < SS_POOL; dst++)
			if (src != dst)
				pool[dst] = mix(pool[dst], hashmix(pool[src], &hc));
	for (size_t src = SS_POOL; src < n; src++)
		for (size_t dst = 0; dst < SS_POOL; dst++)
			pool[dst] = mix(pool[dst], hashmix(words[src], &hc));
}

/* generate_state(n64, np.uint64): 2*n64 words cycling over the pool, paired
 * little-endian into 64-bit words. */
static void seedseq_state64(const uint32_t pool[SS_POOL], uint64_t *out, size_t n64)
{
	uint32_t hc = SS_INIT_B;
	for (size_t i = 0; i < 2 * n64; i++) {
		uint32_t v = pool[i % SS_POOL];
		v ^= hc;
		hc *= SS_MULT_B;
		v *= hc;
		v ^= v >> 16;
		if (i % 2 == 0)
			out[i / 2] = v;
		else
			out[i / 2] |= (uint64_t)v << 32;
	}
}

/* ---- PCG64 ---- */

static const u128 PCG_MULT = ((u128)2549297995355413924ULL << 64) | 4865540595714422341ULL;

static u128 get_state(const struct lf_np_rng *rng)
{
	return ((u128)rng->state_hi << 64) | rng->state_lo;
}

static void put_state(struct lf_np_rng *rng, u128 s)
{
	rng->state_hi = (uint64_t)(s >> 64);
	rng->state_lo = (uint64_t)s;
}

static u128 get_inc(const struct lf_np_rng *rng)
{
	return ((u128)rng->inc_hi << 64) | rng->inc_lo;
}

static void pcg_step(struct lf_np_rng *rng)
{
	put_state(rng, get_state(rng) * PCG_MULT + get_inc(rng));
}

void lf_np_rng_seed_words(struct lf_np_rng *rng, const uint32_t *words, size_t n)
{
	uint32_t pool[SS_POOL];
	uint64_t v[4];
	seedseq_pool(words, n, pool);
	seedseq_state64(pool, v, 4);
	/* pcg64_set_seed: the first two words are the state (high word first),
	 * the next two the stream; then pcg's srandom. */
	u128 initstate = ((u128)v[0] << 64) | v[1];
	u128 initseq = ((u128)v[2] << 64) | v[3];
	u128 inc = (initseq << 1) | 1;
	rng->inc_hi = (uint64_t)(inc >> 64);
	rng->inc_lo = (uint64_t)inc;
	put_state(rng, 0);
	pcg_step(rng);
	put_state(rng, get_state(rng) + initstate);
	pcg_step(rng);
	rng->has_uint32 = 0;
	rng->uinteger = 0;
}

void lf_np_rng_seed(struct lf_np_rng *rng, uint64_t seed)
{
	/* numpy's _int_to_uint32_array: low word first, no leading zero words,
	 * but at least one word. */
	uint32_t w[2] = { (uint32_t)seed, (uint32_t)(seed >> 32) };
	lf_np_rng_seed_words(rng, w, w[1] ? 2 : 1);
}

uint64_t lf_np_next_uint64(struct lf_np_rng *rng)
{
	pcg_step(rng);
	/* XSL-RR: xor the halves, rotate right by the top 6 bits */
	uint64_t x = rng->state_hi ^ rng->state_lo;
	unsigned rot = (unsigned)(rng->state_hi >> 58);
	return (x >> rot) | (x << ((64 - rot) & 63));
}

uint32_t lf_np_next_uint32(struct lf_np_rng *rng)
{
	if (rng->has_uint32) {
		rng->has_uint32 = 0;
		return rng->uinteger;
	}
	uint64_t next = lf_np_next_uint64(rng);
	rng->has_uint32 = 1;
	rng->uinteger = (uint32_t)(next >> 32);
	return (uint32_t)next;
}

double lf_np_random(struct lf_np_rng *rng)
{
	return (double)(lf_np_next_uint64(rng) >> 11) * (1.0 / 9007199254740992.0);
}

uint64_t lf_np_random_interval(struct lf_np_rng *rng, uint64_t max)
{
	if (max == 0)
		return 0;
	uint64_t mask = max, value;
	mask |= mask >> 1;
	mask |= mask >> 2;
	mask |= mask >> 4;
	mask |= mask >> 8;
	mask |= mask >> 16;
	mask |= mask >> 32;
	if (max <= 0xffffffffu) {
		do
			value = lf_np_next_uint32(rng) & mask;
		while (value > max);
	} else {
		do
			value = lf_np_next_uint64(rng) & mask;
		while (value > max);
	}
	return value;
}

void lf_np_shuffle(struct lf_np_rng *rng, size_t *a, size_t n)
{
	for (size_t i = n; i-- > 1;) {
		size_t j = (size_t)lf_np_random_interval(rng, i);
		size_t t = a[j];
		a[j] = a[i];
		a[i] = t;
	}
}

void lf_np_permutation(struct lf_np_rng *rng, size_t n, size_t *out)
{
	for (size_t i = 0; i < n; i++)
		out[i] = i;
	lf_np_shuffle(rng, out, n);
}

/* ---- Generator.choice(k, size, p=p) ---- */

/* numpy.random._common.kahan_sum */
static double kahan_sum(const double *a, size_t n)
{
	if (n == 0)
		return 0.0;
	double sum = a[0], c = 0.0;
	for (size_t i = 1; i < n; i++) {
		double y = a[i] - c;
		double t = sum + y;
		c = (t - sum) - y;
		sum = t;
	}
	return sum;
}

int lf_np_choice_cdf(const double *p, size_t k, double *cdf)
{
	double sum = kahan_sum(p, k);
	if (isnan(sum))
		return lf_fail("Probabilities contain NaN");
	for (size_t i = 0; i < k; i++)
		if (p[i] < 0)
			return lf_fail("Probabilities are not non-negative");
	/* (an empty p sums to 0 and fails here) */
	if (fabs(sum - 1.0) > sqrt(DBL_EPSILON))
		return lf_fail("Probabilities do not sum to 1. See Notes section of docstring for more information.");
	/* cumsum is a plain running sum; then every entry over the last */
	double run = 0.0;
	for (size_t i = 0; i < k; i++) {
		run = i ? run + p[i] : p[i];
		cdf[i] = run;
	}
	double last = cdf[k - 1];
	for (size_t i = 0; i < k; i++)
		cdf[i] /= last;
	return 0;
}

size_t lf_np_choice_draw(struct lf_np_rng *rng, const double *cdf, size_t k)
{
	double u = lf_np_random(rng);
	/* searchsorted side='right': how many entries are <= u */
	size_t lo = 0, hi = k;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (cdf[mid] <= u)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int lf_np_choice(struct lf_np_rng *rng, size_t k, const double *p, size_t size, size_t *out)
{
	if (k == 0 && size != 0)
		return lf_fail("a must be a positive integer unless no samples are taken");
	double *cdf = lf_malloc((k ? k : 1) * sizeof *cdf);
	if (lf_np_choice_cdf(p, k, cdf) < 0) {
		free(cdf);
		return -1;
	}
	for (size_t i = 0; i < size; i++)
		out[i] = lf_np_choice_draw(rng, cdf, k);
	free(cdf);
	return 0;
}

/* ---- Dataset.train_test_split ---- */

static void add_test_size(struct lf_buf *b, double test_size, int test_is_count)
{
	if (test_is_count)
		lf_buf_addf(b, "%.0f", test_size);
	else
		lf_py_float_repr(b, test_size);
}

static int split_fail(const char *pre, double test_size, int test_is_count, const char *post)
{
	struct lf_buf b = LF_BUF_INIT;
	lf_buf_addstr(&b, pre);
	add_test_size(&b, test_size, test_is_count);
	lf_buf_addstr(&b, post);
	lf_fail("%s", b.data);
	lf_buf_free(&b);
	return -1;
}

int lf_hf_train_test_split(size_t n_rows, double test_size, int test_is_count, uint64_t seed,
			   struct lf_hf_split *out)
{
	memset(out, 0, sizeof *out);
	/* an empty table splits into two empty tables, unchecked */
	if (n_rows == 0) {
		out->rows = lf_malloc(sizeof *out->rows);
		out->test = out->train = out->rows;
		return 0;
	}
	if (test_is_count && test_size != floor(test_size))
		return lf_fail("test_size=%.17g: a row count must be an integer", test_size);
	char tail[160];
	snprintf(tail, sizeof tail,
		 " should be either positive and smaller than the number of samples %zu or a float in the (0, 1) range",
		 n_rows);
	if (test_is_count ? test_size >= (double)n_rows || test_size <= 0 : test_size <= 0 || test_size >= 1)
		return split_fail("test_size=", test_size, test_is_count, tail);
	size_t n_test;
	if (test_is_count) {
		n_test = (size_t)test_size;
	} else {
		double t = ceil(test_size * (double)n_rows);
		if (isnan(t))
			return lf_fail("cannot convert float NaN to integer");
		n_test = (size_t)t;
	}
	size_t n_train = n_rows - n_test;
	if (n_train == 0) {
		char pre[64];
		snprintf(pre, sizeof pre, "With n_samples=%zu, test_size=", n_rows);
		return split_fail(pre, test_size, test_is_count,
				  " and train_size=None, the resulting train set will be empty. "
				  "Adjust any of the aforementioned parameters.");
	}
	struct lf_np_rng rng;
	lf_np_rng_seed(&rng, seed);
	out->rows = lf_malloc(n_rows * sizeof *out->rows);
	lf_np_permutation(&rng, n_rows, out->rows);
	out->test = out->rows;
	out->n_test = n_test;
	out->train = out->rows + n_test;
	out->n_train = n_train;
	return 0;
}

void lf_hf_split_free(struct lf_hf_split *s)
{
	free(s->rows);
	memset(s, 0, sizeof *s);
}

/* ---- interleave_datasets (map-style) ---- */

static const char *const stop_names[] = {
	[LF_HF_FIRST_EXHAUSTED] = "first_exhausted",
	[LF_HF_ALL_EXHAUSTED] = "all_exhausted",
	[LF_HF_ALL_EXHAUSTED_WITHOUT_REPLACEMENT] = "all_exhausted_without_replacement",
};

int lf_hf_stop_parse(const char *name, enum lf_hf_stop *out)
{
	for (size_t i = 0; i < sizeof stop_names / sizeof stop_names[0]; i++)
		if (!strcmp(name, stop_names[i])) {
			*out = (enum lf_hf_stop)i;
			return 0;
		}
	return lf_fail("%s is not supported. Please enter a valid stopping_strategy.", name);
}

const char *lf_hf_stop_name(enum lf_hf_stop stop)
{
	return (unsigned)stop < sizeof stop_names / sizeof stop_names[0] ? stop_names[stop] : "?";
}

struct picks {
	struct lf_hf_pick *v;
	size_t n, cap;
	const size_t *lengths;
	size_t k, total;
	int bad;          /* an index fell past the end of the concatenation */
	size_t bad_index;
};

/* Append datasets' index offset(i) + row, as the (dataset, row) of the
 * concatenation it lands in: row < lengths[i] lands in dataset i; row 0 of an
 * empty dataset lands in the next non-empty one, or past the end. */
static void add_pick(struct picks *p, size_t i, size_t row)
{
	while (i < p->k && p->lengths[i] == 0)
		i++;
	if (i == p->k) {
		if (!p->bad) {
			p->bad = 1;
			p->bad_index = p->total + row;
		}
		return;
	}
	if (p->n == p->cap) {
		p->cap = p->cap ? 2 * p->cap : 64;
		p->v = lf_realloc(p->v, p->cap * sizeof *p->v);
	}
	p->v[p->n].dataset = i;
	p->v[p->n].row = row;
	p->n++;
}

/* Whether searchsorted(cdf, u, 'right') can give i for some u that
 * Generator.random() returns (a multiple of 2**-53 in [0, 1)). */
static int drawable(const double *cdf, size_t i)
{
	if (i == 0)
		return cdf[0] > 0;
	double m = ceil(ldexp(cdf[i - 1], 53));
	return m < 9007199254740992.0 && ldexp(m, -53) < cdf[i];
}

static void round_robin(struct picks *p, enum lf_hf_stop stop)
{
	size_t lo = SIZE_MAX, hi = 0;
	for (size_t i = 0; i < p->k; i++) {
		lo = p->lengths[i] < lo ? p->lengths[i] : lo;
		hi = p->lengths[i] > hi ? p->lengths[i] : hi;
	}
	if (stop == LF_HF_FIRST_EXHAUSTED) {
		/* min(lengths) rounds over every dataset */
		for (size_t r = 0; r < lo; r++)
			for (size_t i = 0; i < p->k; i++)
				add_pick(p, i, r);
	} else if (stop == LF_HF_ALL_EXHAUSTED) {
		/* max(lengths) rounds, each dataset wrapping round (np.mod by a
		 * zero length gives 0) */
		for (size_t r = 0; r < hi; r++)
			for (size_t i = 0; i < p->k; i++)
				add_pick(p, i, p->lengths[i] ? r % p->lengths[i] : 0);
	} else {
		/* max(lengths) rounds over the datasets not yet used up */
		for (size_t r = 0; r < hi; r++)
			for (size_t i = 0; i < p->k; i++)
				if (p->lengths[i] > r)
					add_pick(p, i, r);
	}
}

static int random_picks(struct picks *p, const double *probs, uint64_t seed, enum lf_hf_stop stop)
{
	double *cdf = lf_malloc(p->k * sizeof *cdf);
	if (lf_np_choice_cdf(probs, p->k, cdf) < 0) {
		free(cdf);
		return -1;
	}
	if (stop != LF_HF_FIRST_EXHAUSTED)
		for (size_t i = 0; i < p->k; i++)
			if (!drawable(cdf, i)) {
				free(cdf);
				return lf_fail("dataset %zu can never be drawn (probability %g), so stopping "
					       "strategy %s would never stop", i, probs[i], lf_hf_stop_name(stop));
			}
	size_t *cur = lf_calloc(p->k, sizeof *cur);
	unsigned char *exhausted = lf_calloc(p->k, 1);
	size_t n_exhausted = 0;
	struct lf_np_rng rng;
	lf_np_rng_seed(&rng, seed);
	/* datasets draws choice(k, size=1000, p) at a time and checks the
	 * stopping condition before using each draw; drawing one at a time
	 * gives the same sequence. */
	for (;;) {
		if (stop == LF_HF_FIRST_EXHAUSTED ? n_exhausted > 0 : n_exhausted == p->k)
			break;
		size_t s = lf_np_choice_draw(&rng, cdf, p->k);
		if (s >= p->k) /* cannot happen: cdf ends at 1 and draws are < 1 */
			s = p->k - 1;
		if (stop != LF_HF_ALL_EXHAUSTED_WITHOUT_REPLACEMENT || !exhausted[s]) {
			add_pick(p, s, cur[s]);
			cur[s]++;
		}
		if (cur[s] >= p->lengths[s]) {
			if (!exhausted[s]) {
				exhausted[s] = 1;
				n_exhausted++;
			}
			if (stop != LF_HF_ALL_EXHAUSTED_WITHOUT_REPLACEMENT)
				cur[s] = 0;
		}
	}
	free(cur);
	free(exhausted);
	free(cdf);
	return 0;
}

int lf_hf_interleave(const size_t *lengths, size_t k, const double *probs, uint64_t seed,
		     enum lf_hf_stop stop, struct lf_hf_pick **out, size_t *n_out)
{
	*out = NULL;
	*n_out = 0;
	if (k == 0)
		return lf_fail("Unable to interleave an empty list of datasets.");
	if ((unsigned)stop > LF_HF_ALL_EXHAUSTED_WITHOUT_REPLACEMENT)
		return lf_fail("unknown stopping strategy %d", (int)stop);
	struct picks p = { .lengths = lengths, .k = k };
	for (size_t i = 0; i < k; i++)
		p.total += lengths[i];
	if (!probs) {
		round_robin(&p, stop);
	} else if (random_picks(&p, probs, seed, stop) < 0) {
		free(p.v);
		return -1;
	}
	if (p.bad) {
		free(p.v);
		return lf_fail("Index %zu out of range for dataset of size %zu.", p.bad_index, p.total);
	}
	*out = p.v;
	*n_out = p.n;
	return 0;
}

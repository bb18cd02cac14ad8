/* kernels/cpu/sample.h — the next-token choice as a kernel op: the
 * arithmetic of libcommon/sample.c's lf_sample_next (transformers'
 * generate order: repetition penalty over the distinct ids seen, then
 * greedy argmax, or temperature, top-k, top-p and a draw), moved here so
 * that the CUDA twin (kernels/cuda/sample.h) has a CPU reference that links
 * without libcommon; lf_sample_next calls it.
 *
 * The op takes the uniform draw u in [0, 1) as an argument instead of an
 * RNG: lf_sample_next draws u = lf_np_random(rng) exactly when
 * lf_cpu_sample_draws() says the op will use it (sampling), so a greedy
 * choice consumes no random number. */
#ifndef LF_KERNELS_CPU_SAMPLE_H
#define LF_KERNELS_CPU_SAMPLE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* the generation settings the choice needs (libcommon's lf_gen_params
   without the stop ids and lengths) */
struct lf_cpu_sample_params {
    int do_sample;             /* 0: greedy */
    double temperature;        /* <= 0: greedy too */
    double top_p;              /* (0, 1]; 1: off */
    double repetition_penalty; /* 1: off */
    int top_k;                 /* <= 0 or >= V: off */
};

/* whether lf_cpu_sample_f32 samples (and so reads u): do_sample and not
   temperature <= 0 (a NaN temperature samples, as lf_sample_next did) */
static inline int lf_cpu_sample_draws(const struct lf_cpu_sample_params *p)
{
    return p->do_sample && !(p->temperature <= 0);
}

/* The next token from V >= 1 logits, modified in place, in this order:
 *   - repetition penalty (when != 1): each distinct id of history[0 ..
 *     nhistory) in [0, V), once: x < 0 ? x * (float)pen : x / (float)pen;
 *   - greedy (!lf_cpu_sample_draws): the first index of the largest logit
 *     (strict >, scanning up from index 0; so 0 when logits[0] is NaN,
 *     other NaNs never chosen, -0 and +0 equal); nothing else changes;
 *   - temperature: x = (float)(x / temperature) (double division);
 *   - top-k (0 < top_k < V): the top_k-th largest value kth (with
 *     multiplicity) and every x < kth set to -inf (ties at kth kept);
 *   - all V (logit, id) pairs sorted by logit descending, ties by id
 *     ascending (a total order without NaN: qsort's instability does not
 *     show); mx = the first logit; z = sum of exp(logit - mx) in double in
 *     that order; top-p (top_p < 1): keep = the first n whose running sum
 *     of exp(.)/z reaches top_p, else V; total = the sum over the kept
 *     ones in that order; the pick is the first kept one whose running
 *     sum exceeds u * total, else the last kept one.
 * Returns the id, or -1 when scratch memory (V * 8 bytes, and V * 4 more
 * for top-k) cannot be allocated.  NaN logits while sampling give qsort an
 * inconsistent order (undefined pick, as in lf_sample_next). */
int32_t lf_cpu_sample_f32(float *logits, int V, const struct lf_cpu_sample_params *p, const int32_t *history,
                          size_t nhistory, double u);

#ifdef __cplusplus
}
#endif

#endif

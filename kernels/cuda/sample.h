/* kernels/cuda/sample.h — the CUDA twin of the next-token choice
 * (kernels/cpu/sample.h): B rows of V logits, one block per row, each row
 * choosing the id lf_cpu_sample_f32 chooses from the same logits, settings,
 * history and uniform draw.
 *
 * Exact against the CPU op: the repetition penalty, the temperature and
 * the top-k cut (the same f32/double operations, each correctly rounded,
 * so the modified logits have the CPU's bits), the greedy argmax (first
 * index of the largest; 0 when logits[0] is NaN) and the sorted order
 * (logit descending, ties -- -0 and +0 included -- by id ascending).  The
 * double sums run in the CPU's order (the sorted order, one thread), but
 * each term exp(logit - mx) comes from CUDA's exp, which is within 1 ulp
 * of glibc's and not always the same double: z, the top-p mass and the
 * running sum can differ from the CPU's in their last bits, so a pick
 * differs only when u * total (or the top-p mass against top_p) falls
 * within a few double ulps of a boundary -- for random u, a chance of
 * order 1e-15 per row.
 *
 * Not supported (as on the CPU, where they give an undefined or NaN pick):
 * NaN or +inf logits while sampling.  Rows whose logits are all -inf give
 * V - 1, as the CPU does. */
#ifndef LF_KERNELS_CUDA_SAMPLE_H
#define LF_KERNELS_CUDA_SAMPLE_H

#include <stdint.h>
#include <cuda_runtime.h>

#include "cpu/sample.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out[b] = lf_cpu_sample_f32(logits + b*V, V, p, history + b*H,
 * nhistory[b], u[b]) for b in [0, B), logits modified in place as the CPU
 * op modifies them.  logits: device [B, V]; history: device [B, H] (ids
 * out of [0, V) ignored) or NULL (no history; then nhistory may be NULL
 * too); nhistory: device [B], each <= H; u: device [B], each in [0, 1)
 * (read only when sampling, may be NULL for greedy); out: device [B].
 * p is read on the host and passed by value.
 *
 * The kernel: the penalty over the first occurrences of the history,
 * then either a block argmax, or the temperature, top-k's k-th largest by
 * an 8-bit radix select over order-preserving keys (4 passes over the row),
 * the logits above -inf compacted in id order, a stable LSD radix sort of
 * those (8 passes of 4 bits: after top-k only the survivors, usually k;
 * with top-k off the whole row), the exp terms in parallel and the double
 * sums, the top-p cut and the draw on one thread in the CPU's order.
 * Sampling takes B * V * 24 bytes of stream-ordered scratch
 * (cudaMallocAsync).  Queued on stream, nothing synchronised.
 *
 * Returns cudaSuccess (B == 0: nothing queued), or cudaErrorInvalidValue
 * (nothing queued) for B < 0, V < 1, H < 0 or a NULL required pointer;
 * launch and allocation errors exit through cuda_check.h. */
cudaError_t lf_cuda_sample_f32(float *logits, int B, int V, const struct lf_cpu_sample_params *p,
                               const int32_t *history, const int *nhistory, int H, const double *u, int32_t *out,
                               cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif

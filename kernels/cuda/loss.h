/* kernels/cuda/loss.h — CUDA ops of the model's two ends: the token
 * embedding lookup (forward and backward) and the fused softmax
 * cross-entropy of the head (the twin of lf_cpu_cross_entropy_f32,
 * kernels/cpu/grad.h).
 *
 * As in ops.h: every pointer is device memory, a trailing stream gets the
 * work and nothing is synchronised; launch errors exit through
 * cuda_check.h.  bf16 arrays are uint16_t bit patterns (round to nearest
 * even on store). */
#ifndef LF_KERNELS_CUDA_LOSS_H
#define LF_KERNELS_CUDA_LOSS_H

#include <stdint.h>
#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Softmax cross-entropy of n rows of V logits against targets, forward and
   backward in one, in place: lf_cpu_cross_entropy_f32's semantics.  A
   target outside [0, V) (-100 in transformers) is ignored: its row of
   logits becomes zeros and it adds nothing.  For every other row,
   loss = logsumexp(row) - row[target] (in double), and the row is replaced
   by scale * (softmax(row) - onehot(target)).  Then *loss_sum += the sum
   of the rows' losses and *counted += the number of rows counted (both
   device memory, accumulated, either may be NULL; the CPU op returns the
   count instead).
   One block per row, never a second [n, V] array: a first pass over the
   row keeps a running max and sum of exp in f32 per thread (combined over
   the block in double), a second writes the gradient.  The rows' losses go
   to n doubles of stream-ordered scratch (cudaMallocAsync) and one block
   adds them up in a fixed order: the same bits on every run (atomicAdd on
   a double would add in arrival order).  V up to 2^31 - 1 (tested to
   262144). */
void lf_cuda_cross_entropy_f32(float *logits, const int32_t *targets, long n, int V, float scale, double *loss_sum,
                               long *counted, cudaStream_t stream);
/* the same on bf16 logits: computed in f32, the gradient stored as bf16 */
void lf_cuda_cross_entropy_bf16(uint16_t *logits, const int32_t *targets, long n, int V, float scale,
                                double *loss_sum, long *counted, cudaStream_t stream);

/* out[t, :] = table[ids[t], :] for t < N, rows of H; ids in [0, V) of the
   table (not checked).  Gemma's sqrt(H) scaling is the caller's (lf's CPU
   path applies it after NEFTune's noise). */
void lf_cuda_embedding_f32(float *out, const float *table, const int32_t *ids, int N, int H, cudaStream_t stream);
void lf_cuda_embedding_bf16(uint16_t *out, const uint16_t *table, const int32_t *ids, int N, int H,
                            cudaStream_t stream);

/* dtable[ids[t], j] += dy[t, j] * scale for t < N, j < H, in token order
   per element: the CPU loop's (libcommon/backprop.c) sums exactly, bits
   and all.  A negative id adds nothing (the CPU loop skips the padding
   token's, as nn.Embedding's padding_idx).  Deterministic without sorting or atomics: the block of token t
   works only if t is the first occurrence of its id, and then adds the rows
   of every occurrence in order.  The search reads O(N) ids per block,
   O(N^2) in all: cheap for a micro-batch's tokens.  An id repeated r
   times is r rows added by one block. */
void lf_cuda_embedding_bwd_f32(float *dtable, const float *dy, const int32_t *ids, int N, int H, float scale,
                               cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif

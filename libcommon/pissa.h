/*
 * pissa.h — PiSSA (Meng et al.): a LoRA pair initialised from the principal
 * singular vectors of its weight, the weight replaced by the residual, as
 * PEFT's init_lora_weights "pissa" (the full SVD) and "pissa_niter_N"
 * (randomized subspace iteration, as torch.svd_lowrank) do.
 */
#ifndef LF_PISSA_H
#define LF_PISSA_H

#include <stdint.h>

/* w [out, in] = U S Vt: A [r, in] = sqrt(S_r / scale) Vt_r, B [out, r] =
 * U_r sqrt(S_r / scale), and w becomes w - scale B A.  niter < 0: the full
 * SVD; else niter subspace iterations from a Gaussian start drawn from seed
 * (PEFT draws its own: the same subspace, not the same numbers).  -1 with
 * lf_fail. */
int lf_pissa_init(float *w, int out, int in, int r, float scale, int niter, uint64_t seed, float *A, float *B);

#endif

/* kernels/cpu/svd.h — the singular value decomposition of a row-major f32
 * matrix (LAPACK's sgesvd, from OpenBLAS), for PiSSA's initialisation. */
#ifndef LF_KERNELS_CPU_SVD_H
#define LF_KERNELS_CPU_SVD_H

#ifdef __cplusplus
extern "C" {
#endif

/* a [m, n] = U diag(s) Vt with k = min(m, n): U [m, k], s [k] (descending),
   Vt [k, n], all row-major; a is left unchanged.  -1 when LAPACK fails. */
int lf_cpu_svd_f32(const float *a, int m, int n, float *U, float *s, float *Vt);

#ifdef __cplusplus
}
#endif

#endif

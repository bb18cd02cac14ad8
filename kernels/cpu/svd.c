/* kernels/cpu/svd.c — lf_cpu_svd_f32 on LAPACK's sgesvd (see svd.h).
 * LAPACK is column-major: the row-major a [m, n] is the column-major a^T
 * [n, m] = U' s Vt', so a = Vt'^T s U'^T, and Vt' read row-major is U,
 * U' read row-major is Vt. */
#include "svd.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* Fortran LAPACK (the trailing lengths of the two character arguments,
 * as gfortran passes them) */
void sgesvd_(const char *jobu, const char *jobvt, const int *m, const int *n, float *a, const int *lda, float *s,
             float *u, const int *ldu, float *vt, const int *ldvt, float *work, const int *lwork, int *info,
             size_t jobu_len, size_t jobvt_len);

int lf_cpu_svd_f32(const float *a, int m, int n, float *U, float *s, float *Vt)
{
    int cm = n, cn = m, k = m < n ? m : n, info = 0, lwork = -1;
    float *copy = malloc((size_t)m * n * sizeof *copy), query = 0;
    if (!copy)
        return -1;
    memcpy(copy, a, (size_t)m * n * sizeof *copy);
    /* the column-major [cm, cn] matrix: left vectors u' [cm, k] (= Vt
       row-major), right vt' [k, cn] (= U row-major) */
    sgesvd_("S", "S", &cm, &cn, copy, &cm, s, Vt, &cm, U, &k, &query, &lwork, &info, 1, 1);
    if (info != 0) {
        free(copy);
        return -1;
    }
    lwork = (int)query + 1;
    float *work = malloc((size_t)lwork * sizeof *work);
    if (!work) {
        free(copy);
        return -1;
    }
    sgesvd_("S", "S", &cm, &cn, copy, &cm, s, Vt, &cm, U, &k, work, &lwork, &info, 1, 1);
    free(work);
    free(copy);
    return info == 0 ? 0 : -1;
}

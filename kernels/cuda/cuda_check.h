/* kernels/cuda/cuda_check.h — checked-call macros for the CUDA runtime and
 * cuBLAS/cuBLASLt.  On failure they print file:line, the failing call, the
 * error name and its description to stderr, then exit(1).  Device code
 * errors surface at the next checked call (or LF_CUDA_CHECK_LAST after a
 * launch). */
#ifndef LF_KERNELS_CUDA_CHECK_H
#define LF_KERNELS_CUDA_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <cuda_runtime.h>
#include <cublasLt.h>

static inline void lf_cuda_check_(cudaError_t err, const char *call,
                                  const char *file, int line)
{
    if (err != cudaSuccess) {
        fprintf(stderr, "%s:%d: CUDA error %s: %s\n    in %s\n", file, line,
                cudaGetErrorName(err), cudaGetErrorString(err), call);
        exit(1);
    }
}

static inline void lf_cublas_check_(cublasStatus_t st, const char *call,
                                    const char *file, int line)
{
    if (st != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "%s:%d: cuBLAS error %d: %s\n    in %s\n", file, line,
                (int)st, cublasLtGetStatusString(st), call);
        exit(1);
    }
}

#define LF_CUDA_CHECK(call) lf_cuda_check_((call), #call, __FILE__, __LINE__)
#define LF_CUBLAS_CHECK(call) lf_cublas_check_((call), #call, __FILE__, __LINE__)
/* after a kernel launch: catches bad launch configurations at once */
#define LF_CUDA_CHECK_LAST() \
    lf_cuda_check_(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)

#endif

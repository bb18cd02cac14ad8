/* kernels/cuda/launch.h — the launch shape of the element-wise kernels:
 * blocks of lf_cuda_block threads, enough of them to cover n elements,
 * capped so that the kernels' grid-stride loops do the rest; and the
 * opt-in to more than 48 KB of dynamic shared memory per block. */
#ifndef LF_KERNELS_CUDA_LAUNCH_H
#define LF_KERNELS_CUDA_LAUNCH_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda_check.h"

static const int lf_cuda_block = 256;

static inline unsigned int lf_cuda_grid(size_t n)
{
    size_t blocks = (n + lf_cuda_block - 1) / lf_cuda_block;
    if (blocks > 65535u)
        blocks = 65535u;
    return blocks ? (unsigned int)blocks : 1u;
}

/* Lets kernel fn use `bytes` of dynamic shared memory per block (above
 * 48 KB it must opt in), after checking the device allows that much; who
 * and head_dim name the caller in the error.  The attribute sticks to the
 * function, so each (fn, bytes) is set once per process (a process drives
 * one device); later calls are a table lookup, not three driver calls per
 * launch. */
static inline void lf_cuda_smem_optin(const void *fn, size_t bytes, int head_dim, const char *who)
{
    enum { SLOTS = 32 };
    static const void *set_fn[SLOTS];
    static size_t set_bytes[SLOTS];
    static int nset;
    if (bytes <= 48 * 1024)
        return;
    for (int i = 0; i < nset; i++)
        if (set_fn[i] == fn && set_bytes[i] >= bytes)
            return;
    int dev = 0, optin = 0;
    LF_CUDA_CHECK(cudaGetDevice(&dev));
    LF_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    if ((size_t)optin < bytes) {
        fprintf(stderr, "%s: head dim %d needs %zu bytes of shared memory per block; this device allows %d\n", who,
                head_dim, bytes, optin);
        exit(1);
    }
    LF_CUDA_CHECK(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    if (nset < SLOTS) {
        set_fn[nset] = fn;
        set_bytes[nset++] = bytes;
    }
}

#endif

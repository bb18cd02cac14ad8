/* kernels/cuda/launch.h — the launch shape of the element-wise kernels:
 * blocks of lf_cuda_block threads, enough of them to cover n elements,
 * capped so that the kernels' grid-stride loops do the rest. */
#ifndef LF_KERNELS_CUDA_LAUNCH_H
#define LF_KERNELS_CUDA_LAUNCH_H

#include <stddef.h>

static const int lf_cuda_block = 256;

static inline unsigned int lf_cuda_grid(size_t n)
{
    size_t blocks = (n + lf_cuda_block - 1) / lf_cuda_block;
    if (blocks > 65535u)
        blocks = 65535u;
    return blocks ? (unsigned int)blocks : 1u;
}

#endif

/* kernels/cuda/convert.cu — the f32 <-> bf16 conversion kernels and their
 * launchers (see convert.h).  Grid-stride loops, one element per step. */
#include "convert.h"
#include "cuda_check.h"
#include "launch.h"

#include <cuda_bf16.h>

__global__ void lf_f32_to_bf16_kernel(uint16_t *out, const float *in, size_t n)
{
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        out[i] = __bfloat16_as_ushort(__float2bfloat16_rn(in[i]));
}

__global__ void lf_bf16_to_f32_kernel(float *out, const uint16_t *in, size_t n)
{
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        out[i] = __uint_as_float((unsigned int)in[i] << 16);
}

extern "C" void lf_cuda_f32_to_bf16(uint16_t *out, const float *in, size_t n,
                                    cudaStream_t stream)
{
    if (n == 0)
        return;
    lf_f32_to_bf16_kernel<<<lf_cuda_grid(n), lf_cuda_block, 0, stream>>>(out, in, n);
    LF_CUDA_CHECK_LAST();
}

extern "C" void lf_cuda_bf16_to_f32(float *out, const uint16_t *in, size_t n,
                                    cudaStream_t stream)
{
    if (n == 0)
        return;
    lf_bf16_to_f32_kernel<<<lf_cuda_grid(n), lf_cuda_block, 0, stream>>>(out, in, n);
    LF_CUDA_CHECK_LAST();
}

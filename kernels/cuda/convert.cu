/* kernels/cuda/convert.cu — the f32 <-> bf16 conversion kernels and their
 * launchers (see convert.h).  Grid-stride loops, one element per step. */
#include "convert.h"
#include "cuda_check.h"

#include <cuda_bf16.h>

static const int lf_convert_block = 256;

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

/* enough blocks to fill the GPU several times over, capped so the
   grid-stride loop does the rest */
static unsigned int lf_convert_grid(size_t n)
{
    size_t blocks = (n + lf_convert_block - 1) / lf_convert_block;
    if (blocks > 65535u)
        blocks = 65535u;
    return blocks ? (unsigned int)blocks : 1u;
}

extern "C" void lf_cuda_f32_to_bf16(uint16_t *out, const float *in, size_t n,
                                    cudaStream_t stream)
{
    if (n == 0)
        return;
    lf_f32_to_bf16_kernel<<<lf_convert_grid(n), lf_convert_block, 0, stream>>>(out, in, n);
    LF_CUDA_CHECK_LAST();
}

extern "C" void lf_cuda_bf16_to_f32(float *out, const uint16_t *in, size_t n,
                                    cudaStream_t stream)
{
    if (n == 0)
        return;
    lf_bf16_to_f32_kernel<<<lf_convert_grid(n), lf_convert_block, 0, stream>>>(out, in, n);
    LF_CUDA_CHECK_LAST();
}

/* kernels/cuda/elementwise.cu — the element and row ops of elementwise.h:
 * grid-stride loops over elements, and over columns for the bias gradient
 * (each thread sums one column down the rows, in order, as the CPU does). */
#include "elementwise.h"
#include "cuda_check.h"
#include "launch.h"

static __global__ void lf_add_kernel(float *out, const float *x, const float *y, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = x[i] + y[i];
}

extern "C" void lf_cuda_add_f32(float *out, const float *x, const float *y, size_t n, cudaStream_t stream)
{
    if (!n)
        return;
    lf_add_kernel<<<lf_cuda_grid(n), lf_cuda_block, 0, stream>>>(out, x, y, n);
    LF_CUDA_CHECK_LAST();
}

static __global__ void lf_bias_add_kernel(float *out, const float *b, size_t total, int n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x)
        out[i] += b[i % (size_t)n];
}

extern "C" void lf_cuda_bias_add_f32(float *out, const float *b, int T, int n, cudaStream_t stream)
{
    size_t total = (size_t)T * n;
    if (!total)
        return;
    lf_bias_add_kernel<<<lf_cuda_grid(total), lf_cuda_block, 0, stream>>>(out, b, total, n);
    LF_CUDA_CHECK_LAST();
}

static __global__ void lf_bias_grad_kernel(float *db, const float *dy, int T, int n)
{
    for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < n; j += gridDim.x * blockDim.x) {
        float s = db[j];
        for (int t = 0; t < T; t++)
            s += dy[(size_t)t * n + j];
        db[j] = s;
    }
}

extern "C" void lf_cuda_bias_grad_f32(float *db, const float *dy, int T, int n, cudaStream_t stream)
{
    if (T < 1 || n < 1)
        return;
    lf_bias_grad_kernel<<<lf_cuda_grid((size_t)n), lf_cuda_block, 0, stream>>>(db, dy, T, n);
    LF_CUDA_CHECK_LAST();
}

/* scatter 0: out[i] = x[rows[i]]; 1: out[rows[i]] = x[i] */
static __global__ void lf_rows_kernel(float *out, const float *x, const int32_t *rows, int n, int H, int scatter)
{
    size_t total = (size_t)n * H;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        size_t i = e / (size_t)H, j = e % (size_t)H, r = (size_t)rows[i];
        if (scatter)
            out[r * H + j] = x[e];
        else
            out[e] = x[r * H + j];
    }
}

extern "C" void lf_cuda_gather_rows_f32(float *out, const float *x, const int32_t *rows, int n, int H,
                                        cudaStream_t stream)
{
    if (n < 1 || H < 1)
        return;
    lf_rows_kernel<<<lf_cuda_grid((size_t)n * H), lf_cuda_block, 0, stream>>>(out, x, rows, n, H, 0);
    LF_CUDA_CHECK_LAST();
}

extern "C" void lf_cuda_scatter_rows_f32(float *out, const float *x, const int32_t *rows, int n, int H,
                                         cudaStream_t stream)
{
    if (n < 1 || H < 1)
        return;
    lf_rows_kernel<<<lf_cuda_grid((size_t)n * H), lf_cuda_block, 0, stream>>>(out, x, rows, n, H, 1);
    LF_CUDA_CHECK_LAST();
}

/* u in [0, 1) from the hash of key + i, as the CPU path draws it */
static __device__ __forceinline__ double lf_uniform(uint64_t key, size_t i)
{
    return (double)(lf_cuda_mix64(key + i) >> 11) * 0x1.0p-53;
}

static __global__ void lf_dropout_kernel(float *out, const float *x, size_t n, float p, float scale, uint64_t key,
                                         int accumulate)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float k = lf_uniform(key, i) >= p ? scale : 0.0f;
        float v = __fmul_rn(x[i], k);
        out[i] = accumulate ? __fadd_rn(out[i], v) : v;
    }
}

extern "C" void lf_cuda_dropout_f32(float *out, const float *x, size_t n, float p, uint64_t key, int accumulate,
                                    cudaStream_t stream)
{
    if (!n)
        return;
    float scale = 1.0f / (1.0f - p);
    lf_dropout_kernel<<<lf_cuda_grid(n), lf_cuda_block, 0, stream>>>(out, x, n, p, scale, key, accumulate);
    LF_CUDA_CHECK_LAST();
}

static __global__ void lf_neftune_kernel(float *x, size_t n, float mag, uint64_t key)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float u = (float)(2.0 * lf_uniform(key, i) - 1.0);
        x[i] = __fadd_rn(x[i], __fmul_rn(mag, u));
    }
}

extern "C" void lf_cuda_neftune_f32(float *x, size_t n, float mag, uint64_t key, cudaStream_t stream)
{
    if (!n)
        return;
    lf_neftune_kernel<<<lf_cuda_grid(n), lf_cuda_block, 0, stream>>>(x, n, mag, key);
    LF_CUDA_CHECK_LAST();
}

/* ---- a mixture of experts' pairs ---- */

static __global__ void lf_moe_combine_kernel(float *mo, const float *eo, const float *weights, const int32_t *pair_of,
                                             int N, int K, int H)
{
    size_t total = (size_t)N * H;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        size_t t = e / (size_t)H, j = e % (size_t)H;
        float acc = 0.0f;
        for (int k = 0; k < K; k++)
            acc = __fadd_rn(acc, __fmul_rn(weights[t * K + k], eo[(size_t)pair_of[t * K + k] * H + j]));
        mo[e] = acc;
    }
}

extern "C" void lf_cuda_moe_combine_f32(float *mo, const float *eo, const float *weights, const int32_t *pair_of,
                                        int N, int K, int H, cudaStream_t stream)
{
    if (N < 1 || H < 1)
        return;
    lf_moe_combine_kernel<<<lf_cuda_grid((size_t)N * H), lf_cuda_block, 0, stream>>>(mo, eo, weights, pair_of, N, K,
                                                                                       H);
    LF_CUDA_CHECK_LAST();
}

/* one block of lf_cuda_block threads per (token, choice) */
static __global__ void lf_moe_combine_bwd_kernel(float *deo, float *dweights, const float *dmo, const float *eo,
                                                 const float *weights, const int32_t *pair_of, int K, int H)
{
    __shared__ float part[256];
    size_t tk = blockIdx.x, t = tk / (size_t)K, i = (size_t)pair_of[tk];
    float w = weights[tk], dot = 0.0f;
    for (int j = threadIdx.x; j < H; j += blockDim.x) {
        float d = dmo[t * H + j];
        deo[i * H + j] = __fmul_rn(w, d);
        dot = __fadd_rn(dot, __fmul_rn(d, eo[i * H + j]));
    }
    part[threadIdx.x] = dot;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s)
            part[threadIdx.x] += part[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0)
        dweights[tk] = part[0];
}

extern "C" void lf_cuda_moe_combine_bwd_f32(float *deo, float *dweights, const float *dmo, const float *eo,
                                            const float *weights, const int32_t *pair_of, int N, int K, int H,
                                            cudaStream_t stream)
{
    if (N < 1 || K < 1 || H < 1)
        return;
    lf_moe_combine_bwd_kernel<<<(unsigned int)(N * K), 256, 0, stream>>>(deo, dweights, dmo, eo, weights, pair_of, K,
                                                                        H);
    LF_CUDA_CHECK_LAST();
}

static __global__ void lf_moe_gather_sum_kernel(float *dx, const float *dxe, const int32_t *pair_of, int N, int K,
                                                int H)
{
    size_t total = (size_t)N * H;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        size_t t = e / (size_t)H, j = e % (size_t)H;
        float acc = 0.0f;
        for (int k = 0; k < K; k++)
            acc = __fadd_rn(acc, dxe[(size_t)pair_of[t * K + k] * H + j]);
        dx[e] = acc;
    }
}

extern "C" void lf_cuda_moe_gather_sum_f32(float *dx, const float *dxe, const int32_t *pair_of, int N, int K, int H,
                                           cudaStream_t stream)
{
    if (N < 1 || H < 1)
        return;
    lf_moe_gather_sum_kernel<<<lf_cuda_grid((size_t)N * H), lf_cuda_block, 0, stream>>>(dx, dxe, pair_of, N, K, H);
    LF_CUDA_CHECK_LAST();
}

/* kernels/cuda/ops.cu — the CUDA twins of the CPU reference's RMSNorm,
 * rotary embedding, gated activation and soft-capping ops, forward and
 * backward, and the bf16 forms of the forward ops (see ops.h).
 *
 * Kept simple: RMSNorm runs one block per row with an f32 block
 * reduction; everything else is a grid-stride loop over elements (RoPE:
 * over (row, frequency) pairs, each applying its angle to every head).
 * The math is the CPU op's formula, in the same order, with the CUDA
 * runtime's accurate expf/tanhf/erff/sincosf (no fast-math), so results
 * differ from the CPU's by a few ulp (fused multiply-adds, libm) and by
 * the order of the reductions' sums.
 *
 * The bf16 forms share the f32 kernels through a template on the storage
 * type of the activations: lf_ld() widens an element to f32, lf_st()
 * narrows on store (round to nearest even). */
#include "ops.h"
#include "cuda_check.h"
#include "launch.h"

#include <cuda_bf16.h>

/* threads for a one-block-per-row kernel: n rounded up to whole warps,
   at most lf_cuda_block (the block reduction needs a multiple of 32) */
static int lf_row_threads(int n)
{
    int t = (n + 31) / 32 * 32;
    return t < lf_cuda_block ? t : lf_cuda_block;
}

static __device__ __forceinline__ float lf_ld(float v) { return v; }
static __device__ __forceinline__ float lf_ld(uint16_t v) { return __uint_as_float((unsigned int)v << 16); }
static __device__ __forceinline__ void lf_st(float *p, float v) { *p = v; }
static __device__ __forceinline__ void lf_st(uint16_t *p, float v)
{
    *p = __bfloat16_as_ushort(__float2bfloat16_rn(v));
}

static __device__ __forceinline__ float lf_warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* The sum of v over the block, returned to every thread.  blockDim.x is a
   multiple of 32, at most 1024; red is 32 floats of shared memory.  Every
   warp adds the warps' sums in the same order, so all threads get the
   same bits.  The first barrier lets a second call reuse red. */
static __device__ float lf_block_sum(float v, float *red)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = lf_warp_sum(v);
    __syncthreads();
    if (lane == 0)
        red[warp] = v;
    __syncthreads();
    v = lane < warps ? red[lane] : 0.0f;
    return lf_warp_sum(v);
}

/* ---- RMSNorm --------------------------------------------------------------- */

/* one block per row; x is read in full (the reduction's barriers) before
   out is written, so out may alias x */
template <typename T>
static __global__ void lf_rmsnorm_kernel(T *out, const T *x, const float *w, int n, float eps, float offset)
{
    __shared__ float red[32];
    size_t row = (size_t)blockIdx.x * n;
    const T *xr = x + row;
    T *o = out + row;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float v = lf_ld(xr[i]);
        ss += v * v;
    }
    ss = lf_block_sum(ss, red);
    float r = 1.0f / sqrtf(ss / (float)n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        lf_st(&o[i], lf_ld(xr[i]) * r * (w[i] + offset));
}

extern "C" void lf_cuda_rmsnorm_f32(float *out, const float *x, const float *w, int T, int n, float eps,
                                    float offset, cudaStream_t stream)
{
    if (T <= 0 || n <= 0)
        return;
    lf_rmsnorm_kernel<float><<<T, lf_row_threads(n), 0, stream>>>(out, x, w, n, eps, offset);
    LF_CUDA_CHECK_LAST();
}

extern "C" void lf_cuda_rmsnorm_bf16(uint16_t *out, const uint16_t *x, const float *w, int T, int n, float eps,
                                     float offset, cudaStream_t stream)
{
    if (T <= 0 || n <= 0)
        return;
    lf_rmsnorm_kernel<uint16_t><<<T, lf_row_threads(n), 0, stream>>>(out, x, w, n, eps, offset);
    LF_CUDA_CHECK_LAST();
}

/* dx, one block per row: with r = 1/sqrt(mean x^2 + eps), w' = w + offset,
   dx += r dy w' - x r^3 / n * sum(dy w' x).  When rs is not NULL, r is
   kept there for dw. */
static __global__ void lf_rmsnorm_bwd_dx_kernel(float *dx, float *rs, const float *dy, const float *x,
                                                const float *w, int n, float eps, float offset)
{
    __shared__ float red[32];
    size_t row = (size_t)blockIdx.x * n;
    const float *xr = x + row, *g = dy + row;
    float *o = dx + row;
    float ss = 0.0f, dot = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float v = xr[i];
        ss += v * v;
        dot += g[i] * (w[i] + offset) * v;
    }
    ss = lf_block_sum(ss, red);
    dot = lf_block_sum(dot, red);
    float r = 1.0f / sqrtf(ss / (float)n + eps);
    float c = dot * r * r * r / (float)n;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        o[i] += r * g[i] * (w[i] + offset) - xr[i] * c;
    if (rs && threadIdx.x == 0)
        rs[blockIdx.x] = r;
}

/* dw, first pass: block (x, y) sums dy x r over rows
   [y rows_per, (y+1) rows_per) for its lf_cuda_block columns, one column
   per thread (neighbouring threads read neighbouring floats), into
   part[y, :]. */
static __global__ void lf_rmsnorm_bwd_dw_part_kernel(float *part, const float *dy, const float *x, const float *rs,
                                                     int T, int n, int rows_per)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    int t0 = blockIdx.y * rows_per, t1 = t0 + rows_per < T ? t0 + rows_per : T;
    float s = 0.0f;
    for (int t = t0; t < t1; t++) {
        size_t k = (size_t)t * n + i;
        s += dy[k] * x[k] * rs[t];
    }
    part[(size_t)blockIdx.y * n + i] = s;
}

/* dw, second pass: dw[i] += the P partial sums of column i, in order */
static __global__ void lf_rmsnorm_bwd_dw_sum_kernel(float *dw, const float *part, int P, int n)
{
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        float s = 0.0f;
        for (int p = 0; p < P; p++)
            s += part[(size_t)p * n + i];
        dw[i] += s;
    }
}

/* dw is a sum over all T rows.  It is done as per-chunk partial sums and a
 * second kernel adding them up in a fixed order, not with atomicAdd: the
 * result is then the same bits on every run (training runs repeat), there
 * is no T-way contention on n addresses, and the partial pass reads dy and
 * x coalesced, column per thread.  The price is scratch for the rows'
 * r and the partials, taken stream-ordered (cudaMallocAsync), as the CPU
 * op mallocs its r. */
extern "C" void lf_cuda_rmsnorm_bwd_f32(float *dx, float *dw, const float *dy, const float *x, const float *w,
                                        int T, int n, float eps, float offset, cudaStream_t stream)
{
    if (T <= 0 || n <= 0)
        return;
    float *rs = NULL, *part = NULL;
    int P = 0, rows_per = 0;
    if (dw) {
        /* chunks of at least 32 rows, at most 1024 chunks */
        P = (T + 31) / 32;
        if (P > 1024)
            P = 1024;
        rows_per = (T + P - 1) / P;
        P = (T + rows_per - 1) / rows_per;
        LF_CUDA_CHECK(cudaMallocAsync((void **)&rs, ((size_t)T + (size_t)P * n) * sizeof(float), stream));
        part = rs + T;
    }
    lf_rmsnorm_bwd_dx_kernel<<<T, lf_row_threads(n), 0, stream>>>(dx, rs, dy, x, w, n, eps, offset);
    LF_CUDA_CHECK_LAST();
    if (dw) {
        dim3 grid((unsigned int)((n + lf_cuda_block - 1) / lf_cuda_block), (unsigned int)P);
        lf_rmsnorm_bwd_dw_part_kernel<<<grid, lf_cuda_block, 0, stream>>>(part, dy, x, rs, T, n, rows_per);
        LF_CUDA_CHECK_LAST();
        lf_rmsnorm_bwd_dw_sum_kernel<<<lf_cuda_grid((size_t)n), lf_cuda_block, 0, stream>>>(dw, part, P, n);
        LF_CUDA_CHECK_LAST();
        LF_CUDA_CHECK(cudaFreeAsync(rs, stream));
    }
}

/* ---- rotary embedding --------------------------------------------------------- */

/* One step per (row t, frequency i < half): the angle pos[t] inv_freq[i]
   in f32 (as the CPU op and transformers), then dims i and i + half of
   every head of the row.  sign -1 rotates back (the backward). */
template <typename T>
static __global__ void lf_rope_kernel(T *x, const int32_t *pos, int nt, int heads, int d, int row_stride, int half,
                                      const float *inv_freq, float attention_factor, float sign)
{
    size_t total = (size_t)nt * half, stride = (size_t)gridDim.x * blockDim.x;
    for (size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += stride) {
        int t = (int)(k / half), i = (int)(k % half);
        float angle = (float)pos[t] * inv_freq[i];
        float sn, cs;
        sincosf(angle, &sn, &cs);
        float c = cs * attention_factor, s = sign * sn * attention_factor;
        T *row = x + (size_t)t * row_stride;
        for (int h = 0; h < heads; h++) {
            T *v = row + (size_t)h * d;
            float x1 = lf_ld(v[i]), x2 = lf_ld(v[i + half]);
            lf_st(&v[i], x1 * c - x2 * s);
            lf_st(&v[i + half], x2 * c + x1 * s);
        }
    }
}

extern "C" void lf_cuda_rope_f32(float *x, const int32_t *pos, int T, int heads, int d, int row_stride,
                                 int rotary_dim, const float *inv_freq, float attention_factor, cudaStream_t stream)
{
    int half = rotary_dim / 2;
    if (T <= 0 || heads <= 0 || half <= 0)
        return;
    size_t total = (size_t)T * half;
    lf_rope_kernel<float><<<lf_cuda_grid(total), lf_cuda_block, 0, stream>>>(x, pos, T, heads, d, row_stride, half,
                                                                           inv_freq, attention_factor, 1.0f);
    LF_CUDA_CHECK_LAST();
}

extern "C" void lf_cuda_rope_bf16(uint16_t *x, const int32_t *pos, int T, int heads, int d, int row_stride,
                                  int rotary_dim, const float *inv_freq, float attention_factor, cudaStream_t stream)
{
    int half = rotary_dim / 2;
    if (T <= 0 || heads <= 0 || half <= 0)
        return;
    size_t total = (size_t)T * half;
    lf_rope_kernel<uint16_t><<<lf_cuda_grid(total), lf_cuda_block, 0, stream>>>(x, pos, T, heads, d, row_stride,
                                                                              half, inv_freq, attention_factor,
                                                                              1.0f);
    LF_CUDA_CHECK_LAST();
}

extern "C" void lf_cuda_rope_bwd_f32(float *dx, const int32_t *pos, int T, int heads, int d, int row_stride,
                                     int rotary_dim, const float *inv_freq, float attention_factor,
                                     cudaStream_t stream)
{
    int half = rotary_dim / 2;
    if (T <= 0 || heads <= 0 || half <= 0)
        return;
    size_t total = (size_t)T * half;
    lf_rope_kernel<float><<<lf_cuda_grid(total), lf_cuda_block, 0, stream>>>(dx, pos, T, heads, d, row_stride, half,
                                                                           inv_freq, attention_factor, -1.0f);
    LF_CUDA_CHECK_LAST();
}

/* ---- gated activations ------------------------------------------------------ */

/* act(g): 0 silu, 1 gelu tanh approximation, anything else gelu (erf),
   as the CPU op */
static __device__ __forceinline__ float lf_act(float g, int act)
{
    if (act == 0)
        return g / (1.0f + expf(-g));
    if (act == 1)
        return 0.5f * g * (1.0f + tanhf(0.7978845608028654f * (g + 0.044715f * g * g * g)));
    return 0.5f * g * (1.0f + erff(g * 0.7071067811865476f));
}

/* each element read before it is written, by the same thread: out may
   alias gate or up */
template <typename T>
static __global__ void lf_gated_act_kernel(T *out, const T *gate, const T *up, size_t n, int act)
{
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        float y = lf_act(lf_ld(gate[i]), act);
        lf_st(&out[i], y * lf_ld(up[i]));
    }
}

extern "C" void lf_cuda_gated_act_f32(float *out, const float *gate, const float *up, long n, int act,
                                      cudaStream_t stream)
{
    if (n <= 0)
        return;
    lf_gated_act_kernel<float><<<lf_cuda_grid((size_t)n), lf_cuda_block, 0, stream>>>(out, gate, up, (size_t)n, act);
    LF_CUDA_CHECK_LAST();
}

extern "C" void lf_cuda_gated_act_bf16(uint16_t *out, const uint16_t *gate, const uint16_t *up, long n, int act,
                                       cudaStream_t stream)
{
    if (n <= 0)
        return;
    lf_gated_act_kernel<uint16_t><<<lf_cuda_grid((size_t)n), lf_cuda_block, 0, stream>>>(out, gate, up, (size_t)n,
                                                                                        act);
    LF_CUDA_CHECK_LAST();
}

/* the CPU op's derivatives, formula for formula (grad.c) */
static __global__ void lf_gated_act_bwd_kernel(float *dgate, float *dup, const float *dout, const float *gate,
                                               const float *up, size_t n, int act)
{
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        float g = gate[i], y, dy;
        if (act == 0) {
            float sg = 1.0f / (1.0f + expf(-g));
            y = g * sg;
            dy = sg * (1.0f + g * (1.0f - sg));
        } else if (act == 1) {
            const float k0 = 0.7978845608028654f, k1 = 0.044715f;
            float th = tanhf(k0 * (g + k1 * g * g * g));
            y = 0.5f * g * (1.0f + th);
            dy = 0.5f * (1.0f + th) + 0.5f * g * (1.0f - th * th) * k0 * (1.0f + 3.0f * k1 * g * g);
        } else {
            float e = erff(g * 0.7071067811865476f);
            y = 0.5f * g * (1.0f + e);
            dy = 0.5f * (1.0f + e) + g * 0.3989422804014327f * expf(-0.5f * g * g);
        }
        dgate[i] = dout[i] * up[i] * dy;
        dup[i] = dout[i] * y;
    }
}

extern "C" void lf_cuda_gated_act_bwd_f32(float *dgate, float *dup, const float *dout, const float *gate,
                                          const float *up, long n, int act, cudaStream_t stream)
{
    if (n <= 0)
        return;
    lf_gated_act_bwd_kernel<<<lf_cuda_grid((size_t)n), lf_cuda_block, 0, stream>>>(dgate, dup, dout, gate, up,
                                                                                  (size_t)n, act);
    LF_CUDA_CHECK_LAST();
}

/* ---- soft-capping ------------------------------------------------------------ */

template <typename T>
static __global__ void lf_softcap_kernel(T *x, size_t n, float cap)
{
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        lf_st(&x[i], cap * tanhf(lf_ld(x[i]) / cap));
}

extern "C" void lf_cuda_softcap_f32(float *x, long n, float cap, cudaStream_t stream)
{
    if (n <= 0)
        return;
    lf_softcap_kernel<float><<<lf_cuda_grid((size_t)n), lf_cuda_block, 0, stream>>>(x, (size_t)n, cap);
    LF_CUDA_CHECK_LAST();
}

extern "C" void lf_cuda_softcap_bf16(uint16_t *x, long n, float cap, cudaStream_t stream)
{
    if (n <= 0)
        return;
    lf_softcap_kernel<uint16_t><<<lf_cuda_grid((size_t)n), lf_cuda_block, 0, stream>>>(x, (size_t)n, cap);
    LF_CUDA_CHECK_LAST();
}

static __global__ void lf_softcap_bwd_kernel(float *dy, const float *y, size_t n, float cap)
{
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        float u = y[i] / cap;
        dy[i] *= 1.0f - u * u;
    }
}

extern "C" void lf_cuda_softcap_bwd_f32(float *dy, const float *y, long n, float cap, cudaStream_t stream)
{
    if (n <= 0)
        return;
    lf_softcap_bwd_kernel<<<lf_cuda_grid((size_t)n), lf_cuda_block, 0, stream>>>(dy, y, (size_t)n, cap);
    LF_CUDA_CHECK_LAST();
}

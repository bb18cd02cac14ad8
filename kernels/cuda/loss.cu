/* kernels/cuda/loss.cu — the embedding lookup (forward and backward) and
 * the fused softmax cross-entropy (see loss.h).
 *
 * Cross-entropy: one block per row.  Pass one reads the row once, each
 * thread keeping a running max m and sum s of exp(x - m) in f32 (rescaled
 * when the max grows); the block combines the (m, s) pairs with the sums
 * in double, as the CPU op adds its f32 piece sums in double.  Pass two
 * reads the row again and writes exp(x - max) * ((float)(1 / z) * scale),
 * less scale at the target: the CPU op's formula and roundings, with
 * CUDA's expf (2 ulp) for its lf_expf (1 ulp).  Rows are read with 16-byte
 * loads where V allows.  The loss of a row is log(z) + max - row[target]
 * in double, to scratch; a one-block kernel adds the rows in a fixed order.
 *
 * Embedding backward: see loss.h; the adds are __fmul_rn / __fadd_rn so
 * nvcc does not fuse them into an FMA the CPU loop does not have. */
#include "loss.h"
#include "cuda_check.h"

#include <cuda_bf16.h>

/* ---- element access ----------------------------------------------------------- */

static __device__ __forceinline__ float lf_ld(float v) { return v; }
static __device__ __forceinline__ float lf_ld(uint16_t v) { return __uint_as_float((unsigned int)v << 16); }
static __device__ __forceinline__ uint16_t lf_bf16(float v) { return __bfloat16_as_ushort(__float2bfloat16_rn(v)); }

/* VEC consecutive elements at p (VEC 4 for f32, 8 for bf16: one 16-byte
   load, p 16-byte aligned; or 1) into / out of x as f32 */
static __device__ __forceinline__ void lf_load(const float *p, float (&x)[1]) { x[0] = *p; }
static __device__ __forceinline__ void lf_load(const uint16_t *p, float (&x)[1]) { x[0] = lf_ld(*p); }
static __device__ __forceinline__ void lf_load(const float *p, float (&x)[4])
{
    float4 v = *(const float4 *)p;
    x[0] = v.x;
    x[1] = v.y;
    x[2] = v.z;
    x[3] = v.w;
}
static __device__ __forceinline__ void lf_load(const uint16_t *p, float (&x)[8])
{
    uint4 v = *(const uint4 *)p;
    unsigned int w[4] = { v.x, v.y, v.z, v.w };
    for (int k = 0; k < 4; k++) {
        x[2 * k] = __uint_as_float(w[k] << 16);
        x[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
    }
}
static __device__ __forceinline__ void lf_store(float *p, const float (&x)[1]) { *p = x[0]; }
static __device__ __forceinline__ void lf_store(uint16_t *p, const float (&x)[1]) { *p = lf_bf16(x[0]); }
static __device__ __forceinline__ void lf_store(float *p, const float (&x)[4])
{
    *(float4 *)p = make_float4(x[0], x[1], x[2], x[3]);
}
static __device__ __forceinline__ void lf_store(uint16_t *p, const float (&x)[8])
{
    unsigned int w[4];
    for (int k = 0; k < 4; k++)
        w[k] = (unsigned int)lf_bf16(x[2 * k]) | (unsigned int)lf_bf16(x[2 * k + 1]) << 16;
    *(uint4 *)p = make_uint4(w[0], w[1], w[2], w[3]);
}

static int lf_aligned16(const void *p)
{
    return ((uintptr_t)p & 15u) == 0;
}

/* ---- cross-entropy ------------------------------------------------------------ */

/* threads per row: the row's vectors rounded up to whole warps, at most
   LF_CE_THREADS */
enum { LF_CE_THREADS = 512, LF_CE_SUM_THREADS = 1024 };

static int lf_ce_threads(long nvec)
{
    long t = (nvec + 31) / 32 * 32;
    return t < LF_CE_THREADS ? (int)t : LF_CE_THREADS;
}

/* one element into the running (max m, sum s of exp(x - m)); -inf logits
   (masked) add nothing, NaN poisons the sum as on the CPU */
static __device__ __forceinline__ void lf_online(float &m, float &s, float x)
{
    if (x > m) {
        s = s * expf(m - x) + 1.0f;
        m = x;
    } else if (x != -INFINITY) {
        s += expf(x - m);
    }
}

/* exp(a - M) for a <= M as the factor that rescales a sum kept relative
   to a; 1 when a == M (also both -inf: an empty part) */
static __device__ __forceinline__ double lf_rescale(float a, float M)
{
    return a == M ? 1.0 : (double)expf(a - M);
}

/* (m, s) <- the pair of the union with (m2, s2); symmetric, so both lanes
   of a butterfly step get the same bits */
static __device__ __forceinline__ void lf_combine(float &m, double &s, float m2, double s2)
{
    float M = m > m2 ? m : m2;
    s = __dadd_rn(__dmul_rn(s, lf_rescale(m, M)), __dmul_rn(s2, lf_rescale(m2, M)));
    m = M;
}

static __device__ __forceinline__ void lf_warp_combine(float &m, double &s)
{
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o);
        double s2 = __shfl_xor_sync(0xffffffffu, s, o);
        lf_combine(m, s, m2, s2);
    }
}

/* One block per row of V = nvec * VEC elements. */
template <typename T, int VEC>
static __global__ void lf_ce_kernel(T *logits, const int32_t *targets, int V, float scale, double *row_loss)
{
    __shared__ float red_m[32];
    __shared__ double red_s[32];
    size_t t = blockIdx.x;
    T *row = logits + t * (size_t)V;
    int nvec = V / VEC, y = targets[t];
    if (y < 0 || y >= V) { /* ignored: zeros, no loss */
        float zero[VEC];
        for (int k = 0; k < VEC; k++)
            zero[k] = 0.0f;
        for (int i = threadIdx.x; i < nvec; i += blockDim.x)
            lf_store(row + (size_t)i * VEC, zero);
        if (threadIdx.x == 0)
            row_loss[t] = 0.0;
        return;
    }
    /* read before the barriers below, so before any thread writes */
    float ly = threadIdx.x == 0 ? lf_ld(row[y]) : 0.0f;

    float m = -INFINITY, s = 0.0f;
    for (int i = threadIdx.x; i < nvec; i += blockDim.x) {
        float x[VEC];
        lf_load(row + (size_t)i * VEC, x);
        for (int k = 0; k < VEC; k++)
            lf_online(m, s, x[k]);
    }
    /* the block's (max, sum): each warp's, then every warp combines the
       warps' results in the same order, so all threads get the same bits */
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    double z = s;
    lf_warp_combine(m, z);
    if (lane == 0) {
        red_m[warp] = m;
        red_s[warp] = z;
    }
    __syncthreads();
    float mx = lane < warps ? red_m[lane] : -INFINITY;
    z = lane < warps ? red_s[lane] : 0.0;
    lf_warp_combine(mx, z);
    if (threadIdx.x == 0)
        row_loss[t] = log(z) + (double)mx - (double)ly;

    float k = __fmul_rn((float)(1.0 / z), scale);
    for (int i = threadIdx.x; i < nvec; i += blockDim.x) {
        float x[VEC];
        lf_load(row + (size_t)i * VEC, x);
        for (int j = 0; j < VEC; j++) {
            x[j] = __fmul_rn(expf(x[j] - mx), k);
            if (i * VEC + j == y)
                x[j] = __fsub_rn(x[j], scale);
        }
        lf_store(row + (size_t)i * VEC, x);
    }
}

/* *loss_sum += the counted rows' losses, *counted += their number: each
   thread adds a fixed stride of rows in order, then a fixed tree */
static __global__ void lf_ce_sum_kernel(const double *row_loss, const int32_t *targets, long n, int V,
                                        double *loss_sum, long *counted)
{
    __shared__ double red_s[LF_CE_SUM_THREADS];
    __shared__ long red_c[LF_CE_SUM_THREADS];
    double s = 0.0;
    long c = 0;
    for (long t = threadIdx.x; t < n; t += blockDim.x)
        if (targets[t] >= 0 && targets[t] < V) {
            s += row_loss[t];
            c++;
        }
    red_s[threadIdx.x] = s;
    red_c[threadIdx.x] = c;
    for (int w = blockDim.x / 2; w > 0; w >>= 1) {
        __syncthreads();
        if ((int)threadIdx.x < w) {
            red_s[threadIdx.x] += red_s[threadIdx.x + w];
            red_c[threadIdx.x] += red_c[threadIdx.x + w];
        }
    }
    if (threadIdx.x == 0) {
        if (loss_sum)
            *loss_sum += red_s[0];
        if (counted)
            *counted += red_c[0];
    }
}

template <typename T, int VEC>
static void lf_ce_launch(T *logits, const int32_t *targets, long n, int V, float scale, double *row_loss,
                         cudaStream_t stream)
{
    lf_ce_kernel<T, VEC><<<(unsigned int)n, lf_ce_threads(V / VEC), 0, stream>>>(logits, targets, V, scale,
                                                                                  row_loss);
    LF_CUDA_CHECK_LAST();
}

template <typename T>
static void lf_ce(T *logits, const int32_t *targets, long n, int V, float scale, double *loss_sum, long *counted,
                  cudaStream_t stream)
{
    if (n <= 0 || V <= 0)
        return;
    if (n > 0x7fffffffL) {
        fprintf(stderr, "lf_cuda_cross_entropy: %ld rows, more than a grid holds\n", n);
        exit(1);
    }
    double *row_loss;
    LF_CUDA_CHECK(cudaMallocAsync((void **)&row_loss, (size_t)n * sizeof(double), stream));
    const int vec = 16 / (int)sizeof(T);
    if (V % vec == 0 && lf_aligned16(logits))
        lf_ce_launch<T, 16 / sizeof(T)>(logits, targets, n, V, scale, row_loss, stream);
    else
        lf_ce_launch<T, 1>(logits, targets, n, V, scale, row_loss, stream);
    lf_ce_sum_kernel<<<1, LF_CE_SUM_THREADS, 0, stream>>>(row_loss, targets, n, V, loss_sum, counted);
    LF_CUDA_CHECK_LAST();
    LF_CUDA_CHECK(cudaFreeAsync(row_loss, stream));
}

extern "C" void lf_cuda_cross_entropy_f32(float *logits, const int32_t *targets, long n, int V, float scale,
                                          double *loss_sum, long *counted, cudaStream_t stream)
{
    lf_ce<float>(logits, targets, n, V, scale, loss_sum, counted, stream);
}

extern "C" void lf_cuda_cross_entropy_bf16(uint16_t *logits, const int32_t *targets, long n, int V, float scale,
                                           double *loss_sum, long *counted, cudaStream_t stream)
{
    lf_ce<uint16_t>(logits, targets, n, V, scale, loss_sum, counted, stream);
}

/* ---- embedding ------------------------------------------------------------------ */

enum { LF_EMB_THREADS = 256 };

/* one block per token: row ids[t] of the table to row t, in units of U
   (16 bytes, 4 or 2) */
template <typename U>
static __global__ void lf_embedding_kernel(U *out, const U *table, const int32_t *ids, int units)
{
    size_t t = blockIdx.x;
    const U *src = table + (size_t)ids[t] * units;
    U *dst = out + t * units;
    for (int i = threadIdx.x; i < units; i += blockDim.x)
        dst[i] = src[i];
}

template <typename U>
static void lf_embedding_launch(void *out, const void *table, const int32_t *ids, int N, size_t row_bytes,
                                cudaStream_t stream)
{
    int units = (int)(row_bytes / sizeof(U));
    int threads = (units + 31) / 32 * 32;
    threads = threads < LF_EMB_THREADS ? threads : LF_EMB_THREADS;
    lf_embedding_kernel<U><<<N, threads, 0, stream>>>((U *)out, (const U *)table, ids, units);
    LF_CUDA_CHECK_LAST();
}

static void lf_embedding(void *out, const void *table, const int32_t *ids, int N, int H, int es,
                         cudaStream_t stream)
{
    if (N <= 0 || H <= 0)
        return;
    size_t row_bytes = (size_t)H * es;
    if (row_bytes % 16 == 0 && lf_aligned16(out) && lf_aligned16(table))
        lf_embedding_launch<uint4>(out, table, ids, N, row_bytes, stream);
    else if (es == 4)
        lf_embedding_launch<uint32_t>(out, table, ids, N, row_bytes, stream);
    else
        lf_embedding_launch<uint16_t>(out, table, ids, N, row_bytes, stream);
}

extern "C" void lf_cuda_embedding_f32(float *out, const float *table, const int32_t *ids, int N, int H,
                                      cudaStream_t stream)
{
    lf_embedding(out, table, ids, N, H, 4, stream);
}

extern "C" void lf_cuda_embedding_bf16(uint16_t *out, const uint16_t *table, const int32_t *ids, int N, int H,
                                       cudaStream_t stream)
{
    lf_embedding(out, table, ids, N, H, 2, stream);
}

/* acc + d * scale with the CPU loop's two roundings, per lane */
static __device__ __forceinline__ float lf_axpy1(float acc, float d, float scale)
{
    return __fadd_rn(acc, __fmul_rn(d, scale));
}
static __device__ __forceinline__ float4 lf_axpy1(float4 acc, float4 d, float scale)
{
    return make_float4(lf_axpy1(acc.x, d.x, scale), lf_axpy1(acc.y, d.y, scale), lf_axpy1(acc.z, d.z, scale),
                       lf_axpy1(acc.w, d.w, scale));
}

/* One block per token t, H = units * (sizeof(U) / 4) floats a row.  The
   block of the first occurrence of an id owns that id's row of dtable
   (every other block leaves at once).  It scans the ids from t on, a
   block-width chunk at a time, lists the chunk's occurrences in token
   order (ballot and popcount), and adds their dy rows column by column,
   each column's sum kept in a register, in that order. */
template <typename U>
static __global__ void lf_embedding_bwd_kernel(U *dtable, const U *dy, const int32_t *ids, int N, int units,
                                               float scale)
{
    __shared__ int hits[LF_EMB_THREADS];
    __shared__ int warp_hits[LF_EMB_THREADS / 32];
    int t = blockIdx.x, id = ids[t];
    if (id < 0) /* the same on every thread: a token that adds nothing */
        return;
    int earlier = 0;
    for (int s = threadIdx.x; s < t; s += blockDim.x)
        earlier |= ids[s] == id;
    if (__syncthreads_or(earlier))
        return;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    U *dst = dtable + (size_t)id * units;
    for (int c0 = t; c0 < N; c0 += blockDim.x) {
        int s = c0 + threadIdx.x;
        int hit = s < N && ids[s] == id;
        unsigned int b = __ballot_sync(0xffffffffu, hit);
        if (lane == 0)
            warp_hits[warp] = __popc(b);
        __syncthreads();
        int before = 0, total = 0;
        for (int w = 0; w < warps; w++) {
            before += w < warp ? warp_hits[w] : 0;
            total += warp_hits[w];
        }
        if (hit)
            hits[before + __popc(b & ((1u << lane) - 1u))] = s;
        __syncthreads();
        if (total) /* the same on every thread */
            for (int j = threadIdx.x; j < units; j += blockDim.x) {
                U acc = dst[j];
                for (int k = 0; k < total; k++)
                    acc = lf_axpy1(acc, dy[(size_t)hits[k] * units + j], scale);
                dst[j] = acc;
            }
        __syncthreads(); /* before the next chunk writes warp_hits and hits */
    }
}

extern "C" void lf_cuda_embedding_bwd_f32(float *dtable, const float *dy, const int32_t *ids, int N, int H,
                                          float scale, cudaStream_t stream)
{
    if (N <= 0 || H <= 0)
        return;
    if (H % 4 == 0 && lf_aligned16(dtable) && lf_aligned16(dy))
        lf_embedding_bwd_kernel<float4><<<N, LF_EMB_THREADS, 0, stream>>>((float4 *)dtable, (const float4 *)dy, ids,
                                                                          N, H / 4, scale);
    else
        lf_embedding_bwd_kernel<float><<<N, LF_EMB_THREADS, 0, stream>>>(dtable, dy, ids, N, H, scale);
    LF_CUDA_CHECK_LAST();
}

/* kernels/cuda/attention_tc.cu — FlashAttention-2-style attention, forward
 * and backward, with the tile products on tensor cores: bf16 inputs, f32
 * accumulation, through the portable WMMA API (nvcuda::wmma, 16 x 16 x 16
 * bf16 fragments; sm_80 and later).  The same arguments and semantics as
 * attention.cu's f32 kernels (see attention.h); the bf16 mode of the GPU
 * training path.
 *
 * What is bf16 and what is not.  q, k, v, dout are read as f32 from global
 * memory and rounded to bf16 (nearest even) into shared memory, and so are
 * the probabilities P and the score gradients dS before their products;
 * every product (Q K^T, P V; dO V^T, dS K, P^T dO, dS^T Q) runs on the
 * tensor cores with f32 accumulation.  Everything else is f32 on CUDA
 * cores: scaling, soft-capping, masks, the online softmax's running max and
 * sum (summed from the unrounded P), exp/log, the output and gradient
 * accumulators, rowsum(dO o O) (from the f32 dO and O), lse.  Results
 * differ from the f32 kernels by the bf16 rounding of the products' inputs
 * (~2^-9 relative per input): about 5e-3 of max |out| and of the
 * gradients' max, a few 1e-2 with large logits (scores of 20 .. 30, whose
 * bf16 error moves the exp); tests/cuda/test_attention_tc.cu measures it.
 *
 * Tiles.  Every kernel runs 256 threads = 8 warps over tiles of 64 query
 * rows and 64 keys (BR = BC = 64).  D, the head dim padded to a multiple of
 * 32 (32, 64, 96, 128: zeros in shared memory past d, only d columns
 * written), is a template parameter.  Shared memory rows: bf16 operand
 * tiles of D + 8 elements, f32 score tiles of BC + 4 floats, bf16 P / dS
 * tiles of BC + 8, the f32 output tile of D + 4 (strides that keep WMMA's
 * 16-byte ldm rule and 32-byte fragment alignment and shift rows across
 * banks).  Work split:
 *   score-shaped products (64 x 64 = 4 x 4 fragments): warp w computes row
 *     fragment w / 2, column fragments 2 (w % 2) and 2 (w % 2) + 1, over
 *     D / 16 k-steps, and stores them as f32 into shared memory
 *     (store_matrix_sync) for the threads;
 *   output-shaped products (64 x D = 4 x D/16 fragments): warp w owns row
 *     fragment w / 2, column fragments w % 2 + 2 i (i < D / 32), over the 4
 *     k-steps of the 64-wide tile;
 *   element-wise work (masks, softmax, dS): thread tid owns row tid / 4,
 *     columns tid % 4 + 4 j, so a row's max and sum are two xor shuffles
 *     (lanes 4r .. 4r + 3 of one warp; every lane gets the same bits).
 * WMMA's element-to-thread mapping is unspecified, so nothing per-row
 * touches a fragment: the forward's output accumulator lives in shared
 * memory (f32), rescaled by its row's threads by exp(m_old - m_new) and
 * then loaded into fragments, P V added, stored back; the backward's dq,
 * dk, dv accumulators need no rescaling and stay in fragments (registers)
 * until the end (times scale: a uniform element-wise loop), then go through
 * shared memory to global memory.
 *
 * Dynamic shared memory per block (lf_atc_*_smem below), in bytes:
 *
 *     D      forward   dq        dk/dv
 *     32      51200     64512     74240
 *     64      71680     80896     90624
 *     96      92160     97280    107008
 *     128    112640    113664    123392
 *
 * all within sm_80's opt-in 166912 (and sm_90's 232448); each launch
 * raises cudaFuncAttributeMaxDynamicSharedMemorySize after checking the
 * device's opt-in limit, as attention.cu does.  Registers (ptxas -v,
 * sm_90a / sm_80): forward 76 .. 98, dq 96 .. 128, dk/dv 70 .. 191 (D 128:
 * its 8 accumulator fragments; one block per SM), no spills but a few
 * bytes in dk/dv D 64 on sm_80.
 *
 * Forward: one block per (query tile, head), the tiles that see the most
 * keys first; per key tile: K and V into shared memory (bf16), S = Q K^T,
 * mask/scale/cap and the online softmax by the row threads (P in bf16),
 * O = alpha O, O += P V; then out = O / l, lse = m + log l.  A row with no
 * key so far uses 0 as its max (exp(-inf) = 0, never -inf - -inf).
 *
 * Backward, deterministic (no atomics), attention.cu's split:
 *   dq kernel, one block per (query tile, head): delta = rowsum(dO o O)
 *     (f32, into scratch), lse recomputed when not given (a pass of Q K^T
 *     over the keys), then per key tile: S = Q K^T, dP = dO V^T, P =
 *     exp(S' - lse), dS = P (dP - delta) (times 1 - (S'/cap)^2 with a cap)
 *     in bf16, dq += dS K; dq = scale dq (overwritten).
 *   dk/dv kernel, one block per (key tile, kv head), K and V resident;
 *     loops over the group's query heads and the query tiles that see the
 *     tile's keys: S, dP, P, dS as above, dV += P^T dO, dK += dS^T Q (the
 *     transposes are column-major matrix_a loads of the same tiles); then
 *     dk += scale dK, dv += dV.
 *
 * Head dims over 128 (LF_CUDA_ATTENTION_TC_MAX_D): the functions call the
 * f32 kernels (lf_cuda_attention_f32 / lf_cuda_attention_bwd_f32) instead.
 *
 * Not done yet: cp.async / ldmatrix / mma.sync PTX (WMMA goes through
 * shared memory for every score tile), wgmma on sm_90, bf16 storage of
 * q/k/v/out in global memory, split-K for long decodes. */
#include "attention.h"
#include "cuda_check.h"
#include "launch.h"

#include <cuda_bf16.h>
#include <mma.h>
#include <math.h>
#include <type_traits>

namespace lf_atc_wmma = nvcuda::wmma;

typedef __nv_bfloat16 lf_bf16;

enum { LF_ATC_THREADS = 256, LF_ATC_BR = 64, LF_ATC_BC = 64 };

/* ---- shared-memory geometry ------------------------------------------------ */

/* row strides in elements */
template <int D> struct lf_atc_geo {
    static constexpr int LDH = D + 8;           /* bf16 operand tiles [64][D + 8] */
    static constexpr int LS = LF_ATC_BC + 4;    /* f32 score tiles [64][68] */
    static constexpr int LPB = LF_ATC_BC + 8;   /* bf16 P / dS tiles [64][72] */
    static constexpr int LO = D + 4;            /* f32 output tile [64][D + 4] */
    static constexpr size_t OPB = sizeof(lf_bf16) * 64 * LDH; /* bytes of an operand tile */
    static constexpr size_t SB = sizeof(float) * 64 * LS;     /* of a score tile */
    static constexpr size_t PB = sizeof(lf_bf16) * 64 * LPB;  /* of a P / dS tile */
    static constexpr size_t OB = sizeof(float) * 64 * LO;     /* of an output tile */
    static_assert(2 * LS >= LO, "two score tiles hold an output tile");
};

/* forward: S, O (f32), Q, K, V (bf16), P (bf16) */
template <int D> static constexpr size_t lf_atc_fwd_smem()
{
    return lf_atc_geo<D>::SB + lf_atc_geo<D>::OB + 3 * lf_atc_geo<D>::OPB + lf_atc_geo<D>::PB;
}

/* dq: S, dP (f32; reused as the output tile), Q, dO, K, V (bf16), dS (bf16) */
template <int D> static constexpr size_t lf_atc_dq_smem()
{
    return 2 * lf_atc_geo<D>::SB + 4 * lf_atc_geo<D>::OPB + lf_atc_geo<D>::PB;
}

/* dk/dv: S, dP (f32; reused as the output tile), K, V, Q, dO (bf16), P, dS
   (bf16), lse and delta of the query tile (f32) */
template <int D> static constexpr size_t lf_atc_dkdv_smem()
{
    return 2 * lf_atc_geo<D>::SB + 4 * lf_atc_geo<D>::OPB + 2 * lf_atc_geo<D>::PB + 2 * sizeof(float) * 64;
}

/* ---- device helpers ---------------------------------------------------------- */

/* the first key a query at position p sees (ops.c attn_lo) */
static __device__ __forceinline__ int lf_atc_lo(int p, int window)
{
    return window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
}

/* a score from its dot product: scaled, then soft-capped (ops.c's order) */
static __device__ __forceinline__ float lf_atc_score(float dot, float scale, float cap)
{
    float x = dot * scale;
    return cap > 0.0f ? cap * tanhf(x / cap) : x;
}

/* max / sum over the 4 lanes of a row (lanes 4r .. 4r + 3) */
static __device__ __forceinline__ float lf_atc_max4(float v)
{
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
    return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}

static __device__ __forceinline__ float lf_atc_sum4(float v)
{
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

/* rows [r0, r0 + 64) of a row-major f32 matrix (rows of `stride` floats),
   columns [col, col + d), into sm[64][D + 8] as bf16 (nearest even); zeros
   at or past rows_end and past d.  All threads of the block take part. */
template <int D>
static __device__ __forceinline__ void lf_atc_load(lf_bf16 *sm, const float *__restrict__ g, long stride, int r0,
                                                   int rows_end, int d, long col)
{
    constexpr int LDH = lf_atc_geo<D>::LDH;
    for (int i = threadIdx.x; i < 64 * D; i += LF_ATC_THREADS) {
        int r = i / D, c = i % D, row = r0 + r;
        float x = row < rows_end && c < d ? g[(long)row * stride + col + c] : 0.0f;
        sm[r * LDH + c] = __float2bfloat16_rn(x);
    }
}

/* Ss[r][j] = sum over c < D of A[r][c] B[j][c] for the 64 x 64 tile (A, B
   bf16 [64][D + 8]; Ss f32 [64][68]); warp w: row fragment w / 2, column
   fragments 2 (w % 2) + {0, 1} */
template <int D> static __device__ __forceinline__ void lf_atc_abt(float *Ss, const lf_bf16 *A, const lf_bf16 *B)
{
    using namespace lf_atc_wmma;
    constexpr int LDH = lf_atc_geo<D>::LDH, LS = lf_atc_geo<D>::LS;
    const int w = threadIdx.x >> 5, rf = w >> 1, c0 = 2 * (w & 1);
    fragment<accumulator, 16, 16, 16, float> s0, s1;
    fill_fragment(s0, 0.0f);
    fill_fragment(s1, 0.0f);
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        fragment<matrix_a, 16, 16, 16, lf_bf16, row_major> fa;
        fragment<matrix_b, 16, 16, 16, lf_bf16, col_major> fb0, fb1;
        load_matrix_sync(fa, A + rf * 16 * LDH + kk * 16, LDH);
        load_matrix_sync(fb0, B + c0 * 16 * LDH + kk * 16, LDH);
        load_matrix_sync(fb1, B + (c0 + 1) * 16 * LDH + kk * 16, LDH);
        mma_sync(s0, fa, fb0, s0);
        mma_sync(s1, fa, fb1, s1);
    }
    store_matrix_sync(Ss + rf * 16 * LS + c0 * 16, s0, LS, mem_row_major);
    store_matrix_sync(Ss + rf * 16 * LS + (c0 + 1) * 16, s1, LS, mem_row_major);
}

/* acc[i] += (A B) fragment (rf, w % 2 + 2 i), over the 64-wide inner
   dimension: A the 64 x 64 bf16 tile at P (rows of LPB), read as stored
   (TRANS false: A[r][n] = P[r][n]) or transposed (A[r][n] = P[n][r], a
   column-major load); B bf16 [64][D + 8] row-major (B[n][c]) */
template <int D, bool TRANS>
static __device__ __forceinline__ void
lf_atc_acc(lf_atc_wmma::fragment<lf_atc_wmma::accumulator, 16, 16, 16, float> (&acc)[D / 32], const lf_bf16 *P,
           const lf_bf16 *B)
{
    using namespace lf_atc_wmma;
    constexpr int LDH = lf_atc_geo<D>::LDH, LPB = lf_atc_geo<D>::LPB;
    typedef typename std::conditional<TRANS, col_major, row_major>::type LA;
    const int w = threadIdx.x >> 5, rf = w >> 1, cp = w & 1;
#pragma unroll
    for (int kk = 0; kk < LF_ATC_BC / 16; kk++) {
        fragment<matrix_a, 16, 16, 16, lf_bf16, LA> fa;
        load_matrix_sync(fa, TRANS ? P + kk * 16 * LPB + rf * 16 : P + rf * 16 * LPB + kk * 16, LPB);
#pragma unroll
        for (int i = 0; i < D / 32; i++) {
            fragment<matrix_b, 16, 16, 16, lf_bf16, row_major> fb;
            load_matrix_sync(fb, B + kk * 16 * LDH + (cp + 2 * i) * 16, LDH);
            mma_sync(acc[i], fa, fb, acc[i]);
        }
    }
}

/* the warp's output fragments (rf, w % 2 + 2 i) into Os f32 [64][D + 4],
   times mul */
template <int D>
static __device__ __forceinline__ void
lf_atc_store_out(float *Os, lf_atc_wmma::fragment<lf_atc_wmma::accumulator, 16, 16, 16, float> (&acc)[D / 32],
                 float mul)
{
    using namespace lf_atc_wmma;
    constexpr int LO = lf_atc_geo<D>::LO;
    const int w = threadIdx.x >> 5, rf = w >> 1, cp = w & 1;
#pragma unroll
    for (int i = 0; i < D / 32; i++) {
        for (int e = 0; e < acc[i].num_elements; e++)
            acc[i].x[e] *= mul;
        store_matrix_sync(Os + rf * 16 * LO + (cp + 2 * i) * 16, acc[i], LO, mem_row_major);
    }
}

/* ---- forward --------------------------------------------------------------------- */

/* one block per (query tile, head); lse may be NULL */
template <int D>
static __global__ void __launch_bounds__(LF_ATC_THREADS)
    lf_atc_fwd_kernel(float *__restrict__ out, float *__restrict__ lse, const float *__restrict__ q,
                      const float *__restrict__ k, const float *__restrict__ v, int T, int S, int q0, struct lf_attn a)
{
    using namespace lf_atc_wmma;
    typedef lf_atc_geo<D> G;
    constexpr int LS = G::LS, LPB = G::LPB, LO = G::LO, BR = LF_ATC_BR, BC = LF_ATC_BC;
    extern __shared__ __align__(128) float lf_atc_smem_f[];
    char *lf_atc_smem = (char *)lf_atc_smem_f;
    float *Ss = (float *)lf_atc_smem, *Os = (float *)(lf_atc_smem + G::SB);
    lf_bf16 *Qb = (lf_bf16 *)(lf_atc_smem + G::SB + G::OB), *Kb = (lf_bf16 *)((char *)Qb + G::OPB);
    lf_bf16 *Vb = (lf_bf16 *)((char *)Kb + G::OPB), *Pb = (lf_bf16 *)((char *)Vb + G::OPB);
    const int r = threadIdx.x >> 2, sub = threadIdx.x & 3, w = threadIdx.x >> 5, rf = w >> 1, cp = w & 1;
    const int h = blockIdx.y, d = a.d, kvh = h / (a.heads / a.kv_heads);
    const long qs = (long)a.heads * d, ks = (long)a.kv_heads * d;
    const int t0 = (gridDim.x - 1 - blockIdx.x) * BR, t_end = min(t0 + BR, T);
    /* the keys the tile's rows see: the first row's window start to the
       last row's position */
    const int klo = lf_atc_lo(q0 + t0, a.window), khi = min(q0 + t_end - 1, S - 1) + 1;
    const int t = t0 + r, p = q0 + t;
    const int plo = t < T ? lf_atc_lo(p, a.window) : 1, phi = t < T ? min(p, S - 1) : 0;

    lf_atc_load<D>(Qb, q, qs, t0, T, d, (long)h * d);
    for (int c = sub; c < D; c += 4)
        Os[r * LO + c] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    for (int k0 = klo; k0 < khi; k0 += BC) {
        __syncthreads(); /* the last tile's K, V, P are used up, O stored */
        lf_atc_load<D>(Kb, k, ks, k0, khi, d, (long)kvh * d);
        lf_atc_load<D>(Vb, v, ks, k0, khi, d, (long)kvh * d);
        __syncthreads();
        lf_atc_abt<D>(Ss, Qb, Kb);
        __syncthreads();
        float x[BC / 4], mt = -INFINITY;
#pragma unroll
        for (int jj = 0; jj < BC / 4; jj++) {
            int j = sub + 4 * jj, key = k0 + j;
            float s = lf_atc_score(Ss[r * LS + j], a.scale, a.softcap);
            x[jj] = key >= plo && key <= phi ? s : -INFINITY;
            mt = fmaxf(mt, x[jj]);
        }
        mt = lf_atc_max4(mt);
        float mn = fmaxf(m, mt), mu = mn == -INFINITY ? 0.0f : mn, alpha = expf(m - mu);
        l *= alpha;
#pragma unroll
        for (int jj = 0; jj < BC / 4; jj++) {
            float pr = expf(x[jj] - mu);
            l += pr;
            Pb[r * LPB + sub + 4 * jj] = __float2bfloat16_rn(pr);
        }
        m = mn;
        for (int c = sub; c < D; c += 4)
            Os[r * LO + c] *= alpha;
        __syncthreads(); /* P written, O rescaled */
        fragment<accumulator, 16, 16, 16, float> acc[D / 32];
#pragma unroll
        for (int i = 0; i < D / 32; i++)
            load_matrix_sync(acc[i], Os + rf * 16 * LO + (cp + 2 * i) * 16, LO, mem_row_major);
        lf_atc_acc<D, false>(acc, Pb, Vb);
        lf_atc_store_out<D>(Os, acc, 1.0f);
    }
    __syncthreads(); /* O complete */
    float lt = lf_atc_sum4(l);
    if (t < T) {
        float inv = lt > 0.0f ? 1.0f / lt : 0.0f;
        float *o = out + (long)t * qs + (long)h * d;
        for (int c = sub; c < d; c += 4)
            o[c] = Os[r * LO + c] * inv;
        if (lse && sub == 0)
            lse[(long)t * a.heads + h] = lt > 0.0f ? m + logf(lt) : -INFINITY;
    }
}

/* ---- backward: dq -------------------------------------------------------------- */

/* one block per (query tile, head): delta[t, h] = rowsum(dO o O); with
   lse_in NULL the rows' lse recomputed into lse_out; dq overwritten */
template <int D>
static __global__ void __launch_bounds__(LF_ATC_THREADS)
    lf_atc_bwd_dq_kernel(float *__restrict__ dq, float *__restrict__ delta, float *__restrict__ lse_out,
                         const float *__restrict__ lse_in, const float *__restrict__ dout,
                         const float *__restrict__ q, const float *__restrict__ k, const float *__restrict__ v,
                         const float *__restrict__ out, int T, int S, int q0, struct lf_attn a)
{
    using namespace lf_atc_wmma;
    typedef lf_atc_geo<D> G;
    constexpr int LS = G::LS, LPB = G::LPB, LO = G::LO, BR = LF_ATC_BR, BC = LF_ATC_BC;
    extern __shared__ __align__(128) float lf_atc_smem_f[];
    char *lf_atc_smem = (char *)lf_atc_smem_f;
    float *Ss = (float *)lf_atc_smem, *dPs = (float *)(lf_atc_smem + G::SB);
    lf_bf16 *Qb = (lf_bf16 *)(lf_atc_smem + 2 * G::SB), *dOb = (lf_bf16 *)((char *)Qb + G::OPB);
    lf_bf16 *Kb = (lf_bf16 *)((char *)dOb + G::OPB), *Vb = (lf_bf16 *)((char *)Kb + G::OPB);
    lf_bf16 *dSb = (lf_bf16 *)((char *)Vb + G::OPB);
    const int r = threadIdx.x >> 2, sub = threadIdx.x & 3;
    const int h = blockIdx.y, d = a.d, kvh = h / (a.heads / a.kv_heads);
    const long qs = (long)a.heads * d, ks = (long)a.kv_heads * d;
    const int t0 = (gridDim.x - 1 - blockIdx.x) * BR, t_end = min(t0 + BR, T);
    const int klo = lf_atc_lo(q0 + t0, a.window), khi = min(q0 + t_end - 1, S - 1) + 1;
    const int t = t0 + r, p = q0 + t;
    const int plo = t < T ? lf_atc_lo(p, a.window) : 1, phi = t < T ? min(p, S - 1) : 0;
    const float cap = a.softcap;

    lf_atc_load<D>(Qb, q, qs, t0, T, d, (long)h * d);
    lf_atc_load<D>(dOb, dout, qs, t0, T, d, (long)h * d);

    /* delta from the f32 dO and O */
    float Di = 0.0f, Li = 0.0f;
    if (t < T) {
        const float *o = out + (long)t * qs + (long)h * d, *g = dout + (long)t * qs + (long)h * d;
        for (int c = sub; c < d; c += 4)
            Di = fmaf(g[c], o[c], Di);
    }
    Di = lf_atc_sum4(Di);
    if (t < T && sub == 0)
        delta[(long)t * a.heads + h] = Di;
    if (lse_in)
        Li = t < T ? lse_in[(long)t * a.heads + h] : 0.0f;
    else {
        /* the forward's max and sum again, from the same bf16 scores */
        float m = -INFINITY, l = 0.0f;
        for (int k0 = klo; k0 < khi; k0 += BC) {
            __syncthreads();
            lf_atc_load<D>(Kb, k, ks, k0, khi, d, (long)kvh * d);
            __syncthreads();
            lf_atc_abt<D>(Ss, Qb, Kb);
            __syncthreads();
            float x[BC / 4], mt = -INFINITY;
#pragma unroll
            for (int jj = 0; jj < BC / 4; jj++) {
                int j = sub + 4 * jj, key = k0 + j;
                float s = lf_atc_score(Ss[r * LS + j], a.scale, cap);
                x[jj] = key >= plo && key <= phi ? s : -INFINITY;
                mt = fmaxf(mt, x[jj]);
            }
            mt = lf_atc_max4(mt);
            float mn = fmaxf(m, mt), mu = mn == -INFINITY ? 0.0f : mn;
            l *= expf(m - mu);
#pragma unroll
            for (int jj = 0; jj < BC / 4; jj++)
                l += expf(x[jj] - mu);
            m = mn;
        }
        float lt = lf_atc_sum4(l);
        Li = lt > 0.0f ? m + logf(lt) : -INFINITY;
        if (t < T && sub == 0)
            lse_out[(long)t * a.heads + h] = Li;
    }

    fragment<accumulator, 16, 16, 16, float> acc[D / 32];
#pragma unroll
    for (int i = 0; i < D / 32; i++)
        fill_fragment(acc[i], 0.0f);
    for (int k0 = klo; k0 < khi; k0 += BC) {
        __syncthreads(); /* the last tile's K and dS are used up */
        lf_atc_load<D>(Kb, k, ks, k0, khi, d, (long)kvh * d);
        lf_atc_load<D>(Vb, v, ks, k0, khi, d, (long)kvh * d);
        __syncthreads();
        lf_atc_abt<D>(Ss, Qb, Kb);
        lf_atc_abt<D>(dPs, dOb, Vb);
        __syncthreads();
#pragma unroll 4
        for (int jj = 0; jj < BC / 4; jj++) {
            int j = sub + 4 * jj, key = k0 + j;
            float x = lf_atc_score(Ss[r * LS + j], a.scale, cap);
            float pr = key >= plo && key <= phi ? expf(x - Li) : 0.0f;
            float g = pr * (dPs[r * LS + j] - Di);
            if (cap > 0.0f) {
                float u = x / cap;
                g *= 1.0f - u * u;
            }
            dSb[r * LPB + j] = __float2bfloat16_rn(g);
        }
        __syncthreads();
        lf_atc_acc<D, false>(acc, dSb, Kb);
    }
    __syncthreads(); /* S and dP are free: the output tile */
    float *Os = Ss;
    lf_atc_store_out<D>(Os, acc, a.scale);
    __syncthreads();
    if (t < T) {
        float *o = dq + (long)t * qs + (long)h * d;
        for (int c = sub; c < d; c += 4)
            o[c] = Os[r * LO + c];
    }
}

/* ---- backward: dk, dv ---------------------------------------------------------- */

/* one block per (key tile, kv head); delta and lse [T, heads] */
template <int D>
static __global__ void __launch_bounds__(LF_ATC_THREADS)
    lf_atc_bwd_dkdv_kernel(float *__restrict__ dk, float *__restrict__ dv, const float *__restrict__ delta,
                           const float *__restrict__ lse, const float *__restrict__ dout,
                           const float *__restrict__ q, const float *__restrict__ k, const float *__restrict__ v,
                           int T, int S, int q0, struct lf_attn a)
{
    using namespace lf_atc_wmma;
    typedef lf_atc_geo<D> G;
    constexpr int LS = G::LS, LPB = G::LPB, LO = G::LO, BR = LF_ATC_BR, BC = LF_ATC_BC;
    extern __shared__ __align__(128) float lf_atc_smem_f[];
    char *lf_atc_smem = (char *)lf_atc_smem_f;
    float *Ss = (float *)lf_atc_smem, *dPs = (float *)(lf_atc_smem + G::SB);
    lf_bf16 *Kb = (lf_bf16 *)(lf_atc_smem + 2 * G::SB), *Vb = (lf_bf16 *)((char *)Kb + G::OPB);
    lf_bf16 *Qb = (lf_bf16 *)((char *)Vb + G::OPB), *dOb = (lf_bf16 *)((char *)Qb + G::OPB);
    lf_bf16 *Pb = (lf_bf16 *)((char *)dOb + G::OPB), *dSb = (lf_bf16 *)((char *)Pb + G::PB);
    float *Ls = (float *)((char *)dSb + G::PB), *Ds = Ls + BR;
    const int r = threadIdx.x >> 2, sub = threadIdx.x & 3;
    const int kvh = blockIdx.y, d = a.d, group = a.heads / a.kv_heads;
    const long qs = (long)a.heads * d, ks = (long)a.kv_heads * d;
    const int j0 = blockIdx.x * BC, j_end = min(j0 + BC, S);
    const float cap = a.softcap;
    /* the queries that see a key of the tile: position >= j0, and within
       the window of the tile's last key */
    const int tlo = max(0, j0 - q0);
    const int thi = a.window > 0 ? min(T, j_end - 1 + a.window - q0) : T;

    lf_atc_load<D>(Kb, k, ks, j0, j_end, d, (long)kvh * d);
    lf_atc_load<D>(Vb, v, ks, j0, j_end, d, (long)kvh * d);
    fragment<accumulator, 16, 16, 16, float> dka[D / 32], dva[D / 32];
#pragma unroll
    for (int i = 0; i < D / 32; i++) {
        fill_fragment(dka[i], 0.0f);
        fill_fragment(dva[i], 0.0f);
    }
    for (int h = kvh * group; h < (kvh + 1) * group; h++)
        for (int t0 = tlo; t0 < thi; t0 += BR) {
            __syncthreads(); /* the last tile's Q, dO, P, dS are used up */
            lf_atc_load<D>(Qb, q, qs, t0, T, d, (long)h * d);
            lf_atc_load<D>(dOb, dout, qs, t0, T, d, (long)h * d);
            for (int i = threadIdx.x; i < BR; i += LF_ATC_THREADS) {
                int tt = t0 + i;
                Ls[i] = tt < T ? lse[(long)tt * a.heads + h] : 0.0f;
                Ds[i] = tt < T ? delta[(long)tt * a.heads + h] : 0.0f;
            }
            __syncthreads();
            lf_atc_abt<D>(Ss, Qb, Kb);
            lf_atc_abt<D>(dPs, dOb, Vb);
            __syncthreads();
            {
                int t = t0 + r, p = q0 + t;
                int lo = t < T ? lf_atc_lo(p, a.window) : 1, hi = t < T ? min(p, S - 1) : 0;
                float Li = Ls[r], Di = Ds[r];
#pragma unroll 4
                for (int jj = 0; jj < BC / 4; jj++) {
                    int j = sub + 4 * jj, key = j0 + j;
                    float x = lf_atc_score(Ss[r * LS + j], a.scale, cap);
                    float pr = key >= lo && key <= hi ? expf(x - Li) : 0.0f;
                    float g = pr * (dPs[r * LS + j] - Di);
                    if (cap > 0.0f) {
                        float u = x / cap;
                        g *= 1.0f - u * u;
                    }
                    Pb[r * LPB + j] = __float2bfloat16_rn(pr);
                    dSb[r * LPB + j] = __float2bfloat16_rn(g);
                }
            }
            __syncthreads();
            lf_atc_acc<D, true>(dva, Pb, dOb); /* dV += P^T dO */
            lf_atc_acc<D, true>(dka, dSb, Qb); /* dK += dS^T Q */
        }
    /* through the (free) score tiles into dk, then dv */
    float *Os = Ss;
    const int key = j0 + r;
    __syncthreads();
    lf_atc_store_out<D>(Os, dka, a.scale);
    __syncthreads();
    if (key < S) {
        float *g = dk + (long)key * ks + (long)kvh * d;
        for (int c = sub; c < d; c += 4)
            g[c] += Os[r * LO + c];
    }
    __syncthreads();
    lf_atc_store_out<D>(Os, dva, 1.0f);
    __syncthreads();
    if (key < S) {
        float *g = dv + (long)key * ks + (long)kvh * d;
        for (int c = sub; c < d; c += 4)
            g[c] += Os[r * LO + c];
    }
}

/* ---- launchers ------------------------------------------------------------------ */

template <int D>
static void lf_atc_fwd_launch(float *out, float *lse, const float *q, const float *k, const float *v, int T, int S,
                              int q0, const struct lf_attn *a, cudaStream_t stream)
{
    static_assert(lf_atc_fwd_smem<D>() <= 166912, "forward tile over sm_80's opt-in shared memory");
    constexpr size_t smem = lf_atc_fwd_smem<D>();
    lf_cuda_smem_optin((const void *)lf_atc_fwd_kernel<D>, smem, a->d, "lf_cuda_attention_tc_f32");
    dim3 grid((unsigned int)((T + LF_ATC_BR - 1) / LF_ATC_BR), (unsigned int)a->heads);
    lf_atc_fwd_kernel<D><<<grid, LF_ATC_THREADS, smem, stream>>>(out, lse, q, k, v, T, S, q0, *a);
    LF_CUDA_CHECK_LAST();
}

template <int D>
static void lf_atc_bwd_launch(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                              const float *v, const float *out, int T, int S, int q0, const struct lf_attn *a,
                              const float *lse, float *tmp, cudaStream_t stream)
{
    static_assert(lf_atc_dq_smem<D>() <= 166912 && lf_atc_dkdv_smem<D>() <= 166912,
                  "backward tiles over sm_80's opt-in shared memory");
    constexpr size_t dq_smem = lf_atc_dq_smem<D>(), kv_smem = lf_atc_dkdv_smem<D>();
    float *delta = tmp, *lse_tmp = lse ? NULL : tmp + (size_t)T * a->heads;
    lf_cuda_smem_optin((const void *)lf_atc_bwd_dq_kernel<D>, dq_smem, a->d, "lf_cuda_attention_tc_bwd_f32");
    lf_cuda_smem_optin((const void *)lf_atc_bwd_dkdv_kernel<D>, kv_smem, a->d, "lf_cuda_attention_tc_bwd_f32");
    dim3 qgrid((unsigned int)((T + LF_ATC_BR - 1) / LF_ATC_BR), (unsigned int)a->heads);
    lf_atc_bwd_dq_kernel<D><<<qgrid, LF_ATC_THREADS, dq_smem, stream>>>(dq, delta, lse_tmp, lse, dout, q, k, v, out,
                                                                          T, S, q0, *a);
    LF_CUDA_CHECK_LAST();
    /* only the keys some query sees: [0, min(S, q0 + T)) */
    int keys = S < q0 + T ? S : q0 + T;
    dim3 kgrid((unsigned int)((keys + LF_ATC_BC - 1) / LF_ATC_BC), (unsigned int)a->kv_heads);
    lf_atc_bwd_dkdv_kernel<D><<<kgrid, LF_ATC_THREADS, kv_smem, stream>>>(dk, dv, delta, lse ? lse : lse_tmp, dout,
                                                                            q, k, v, T, S, q0, *a);
    LF_CUDA_CHECK_LAST();
}

extern "C" void lf_cuda_attention_tc_f32(float *out, const float *q, const float *k, const float *v, int T, int S,
                                         int q0, const struct lf_attn *a, float *scratch, float *lse,
                                         cudaStream_t stream)
{
    if (T < 1)
        return;
    lf_cuda_attention_check(a, "lf_cuda_attention_tc_f32");
    if (a->d <= 32)
        lf_atc_fwd_launch<32>(out, lse, q, k, v, T, S, q0, a, stream);
    else if (a->d <= 64)
        lf_atc_fwd_launch<64>(out, lse, q, k, v, T, S, q0, a, stream);
    else if (a->d <= 96)
        lf_atc_fwd_launch<96>(out, lse, q, k, v, T, S, q0, a, stream);
    else if (a->d <= LF_CUDA_ATTENTION_TC_MAX_D)
        lf_atc_fwd_launch<128>(out, lse, q, k, v, T, S, q0, a, stream);
    else
        lf_cuda_attention_f32(out, q, k, v, T, S, q0, a, scratch, lse, stream);
}

extern "C" void lf_cuda_attention_tc_bwd_f32(float *dq, float *dk, float *dv, const float *dout, const float *q,
                                             const float *k, const float *v, const float *out, int T, int S, int q0,
                                             const struct lf_attn *a, float *scratch, const float *lse,
                                             cudaStream_t stream)
{
    if (T < 1 || S < 1)
        return;
    lf_cuda_attention_check(a, "lf_cuda_attention_tc_bwd_f32");
    if (a->d > LF_CUDA_ATTENTION_TC_MAX_D) {
        lf_cuda_attention_bwd_f32(dq, dk, dv, dout, q, k, v, out, T, S, q0, a, scratch, lse, stream);
        return;
    }
    float *tmp = NULL;
    size_t n = (size_t)T * a->heads * (lse ? 1 : 2);
    LF_CUDA_CHECK(cudaMallocAsync((void **)&tmp, n * sizeof(float), stream));
    if (a->d <= 32)
        lf_atc_bwd_launch<32>(dq, dk, dv, dout, q, k, v, out, T, S, q0, a, lse, tmp, stream);
    else if (a->d <= 64)
        lf_atc_bwd_launch<64>(dq, dk, dv, dout, q, k, v, out, T, S, q0, a, lse, tmp, stream);
    else if (a->d <= 96)
        lf_atc_bwd_launch<96>(dq, dk, dv, dout, q, k, v, out, T, S, q0, a, lse, tmp, stream);
    else
        lf_atc_bwd_launch<128>(dq, dk, dv, dout, q, k, v, out, T, S, q0, a, lse, tmp, stream);
    LF_CUDA_CHECK(cudaFreeAsync(tmp, stream));
}

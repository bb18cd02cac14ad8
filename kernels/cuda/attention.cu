/* kernels/cuda/attention.cu — FlashAttention-2-style attention, forward and
 * backward, f32 on CUDA cores (see attention.h for the semantics, which
 * are kernels/cpu/ops.c's and grad.c's).
 *
 * Tiles.  Every kernel runs 256 threads as a 16 x 16 grid (ty = tid / 16,
 * tx = tid % 16) over tiles of BR query rows and BC keys held in shared
 * memory, rows of D + 1 floats (the odd stride keeps a column's reads in
 * distinct banks).  A thread owns score-tile entries (ty + 16 i, tx + 16 j)
 * and output entries (row ty + 16 i, column tx + 16 c), so the 16 threads
 * of a row are 16 neighbouring lanes of one warp and a row's max and sum
 * are shuffles (xor 8, 4, 2, 1: every lane ends with the same bits).  D is
 * a template parameter (64, 96, 128, 256: a head dim d <= D is padded with
 * zeros in shared memory and only its d columns written), the tile sizes
 * are chosen per D so every block fits the opt-in shared memory of sm_80
 * (163 KB) and sm_90 (227 KB):
 *
 *                    forward           dq                dk/dv
 *     D <= 128       BR 64, BC 64      BR 64, BC 64      BR 64, BC 32
 *     D = 256        BR 64, BC 32      BR 32, BC 32      BR 32, BC 32
 *
 * Dynamic shared memory per block (lf_att_*_smem below), in bytes:
 *
 *     D      forward   dq        dk/dv
 *     64      49920     66560     58880
 *     96      66304     91136     83456
 *     128     82688    115712    108032
 *     256    107136    102912    136064
 *
 * All over the 48 KB (49152) default, so each launch raises the kernel's
 * cudaFuncAttributeMaxDynamicSharedMemorySize, after checking the device's
 * opt-in limit (sm_80 166912, sm_90 232448; a device below, such as
 * sm_86/sm_89's 101376, gets a clear message and exit(1) for the tiles that
 * do not fit there).  Registers: 64 .. 128 per thread, no spills to speak
 * of (ptxas -v), so a block is 256 threads x <= 128 registers.
 *
 * Forward: one block per (query tile, head), the tiles that see the most
 * keys launched first.  The block loops over the keys its rows see ([the
 * first row's window start, the last row's position]), per key tile: K
 * into shared memory, scores, mask (-inf), online softmax (running max m
 * and sum l per row, the accumulator rescaled by exp(m_old - m_new)), P
 * into shared memory, V over K's buffer, acc += P V.  out = acc / l, lse =
 * m + log l.  Masked entries never reach exp with a -inf max: a row whose
 * keys are all masked so far uses 0 as its max, so its p are exp(-inf) = 0.
 *
 * Backward, deterministic by construction (no atomics), FA2's split into
 * a query-major and a key-major kernel:
 *   dq kernel, one block per (query tile, head): D_i = rowsum(dO o O) (kept
 *     in scratch for the other kernel), lse recomputed when not given (one
 *     more pass over the keys, into scratch), then per key tile: dP = dO
 *     V^T, S = Q K^T, P = exp(S' - lse) (S' scaled and capped), dS = P (dP
 *     - D) (times 1 - (S'/cap)^2 with a cap), dq += dS K; dq = scale dq,
 *     overwritten.
 *   dk/dv kernel, one block per (key tile, kv head): the K and V tiles stay
 *     in shared memory, the accumulators in registers; the block loops over
 *     the group's query heads in order and, for each, the query tiles that
 *     see its keys (causal and window bounds), recomputing P and dS as
 *     above: dV += P^T dO, dK += dS^T Q; then dk += scale dK, dv += dV.
 *   The price of not using atomics is a second recomputation of Q K^T and
 *   dO V^T (7 tile products per (query, key) tile pair instead of 5); in
 *   return dk and dv are summed over the group's heads inside one block
 *   (no per-head buffers, no reduction kernel), dq needs no zeroing, and
 *   every run gives the same bits, which training repeats need.
 *
 * Numbers: f32 throughout, the CUDA runtime's accurate expf/logf/tanhf (no
 * fast-math), sums in a different order from the CPU's, so results agree
 * with the CPU ops to ~1e-6 relative.  Not yet done (later slices): bf16
 * storage, tensor cores (mma / wgmma), split-K for long decodes (a T = 1
 * query runs one block per head over all its keys), a variable-length
 * (many spans per launch) form. */
#include "attention.h"
#include "cuda_check.h"
#include "launch.h"

#include <math.h>

enum { LF_ATT_THREADS = 256 };

/* ---- device helpers ------------------------------------------------------------ */

/* the first key a query at position p sees (ops.c attn_lo) */
static __device__ __forceinline__ int lf_att_lo(int p, int window)
{
    return window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
}

/* a score from its dot product: scaled, then soft-capped where the layer
   has a cap (ops.c: scale after the product, tanh after the scale) */
static __device__ __forceinline__ float lf_att_score(float dot, float scale, float cap)
{
    float x = dot * scale;
    return cap > 0.0f ? cap * tanhf(x / cap) : x;
}

/* max and sum over the 16 lanes of a row (lanes 0-15 or 16-31 of a warp);
   every lane gets the same bits */
static __device__ __forceinline__ float lf_att_max16(float v)
{
#pragma unroll
    for (int o = 8; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

static __device__ __forceinline__ float lf_att_sum16(float v)
{
#pragma unroll
    for (int o = 8; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* rows [r0, r0 + R) of a row-major matrix with rows of `stride` floats,
   its columns [col, col + d), into sm[R][D + 1]; zeros for rows at or past
   rows_end and columns past d.  All threads of the block take part. */
template <int D, int R>
static __device__ __forceinline__ void lf_att_load(float *sm, const float *g, long stride, int r0, int rows_end,
                                                   int d, long col)
{
    for (int i = threadIdx.x; i < R * D; i += LF_ATT_THREADS) {
        int r = i / D, c = i % D, row = r0 + r;
        sm[r * (D + 1) + c] = row < rows_end && c < d ? g[(long)row * stride + col + c] : 0.0f;
    }
}

/* s[i][j] = sum over c < D of A[ty + 16 i][c] * B[tx + 16 j][c], A and B
   tiles of rows of D + 1 floats */
template <int D, int RI, int RJ>
static __device__ __forceinline__ void lf_att_dot_tile(float (&s)[RI][RJ], const float *A, const float *B, int ty,
                                                       int tx)
{
#pragma unroll
    for (int i = 0; i < RI; i++)
#pragma unroll
        for (int j = 0; j < RJ; j++)
            s[i][j] = 0.0f;
#pragma unroll 4
    for (int c = 0; c < D; c++) {
        float av[RI], bv[RJ];
#pragma unroll
        for (int i = 0; i < RI; i++)
            av[i] = A[(ty + 16 * i) * (D + 1) + c];
#pragma unroll
        for (int j = 0; j < RJ; j++)
            bv[j] = B[(tx + 16 * j) * (D + 1) + c];
#pragma unroll
        for (int i = 0; i < RI; i++)
#pragma unroll
            for (int j = 0; j < RJ; j++)
                s[i][j] = fmaf(av[i], bv[j], s[i][j]);
    }
}

/* acc[i][c] += sum over n < N of P[rows(i)][n] * B[n][tx + 16 c]: P a tile
   with rows of LP floats, read at row ty + 16 i (transposed: P[n][ty + 16
   i]), B rows of D + 1 floats */
template <int D, int RI, int N, int LP, bool TRANSPOSED>
static __device__ __forceinline__ void lf_att_acc_tile(float (&acc)[RI][D / 16], const float *P, const float *B,
                                                       int ty, int tx)
{
#pragma unroll 4
    for (int n = 0; n < N; n++) {
        float pv[RI], bv[D / 16];
#pragma unroll
        for (int i = 0; i < RI; i++)
            pv[i] = TRANSPOSED ? P[n * LP + ty + 16 * i] : P[(ty + 16 * i) * LP + n];
#pragma unroll
        for (int c = 0; c < D / 16; c++)
            bv[c] = B[n * (D + 1) + tx + 16 * c];
#pragma unroll
        for (int i = 0; i < RI; i++)
#pragma unroll
            for (int c = 0; c < D / 16; c++)
                acc[i][c] = fmaf(pv[i], bv[c], acc[i][c]);
    }
}

/* ---- shared memory per block (bytes) ------------------------------------------- */

template <int D, int BR, int BC> static constexpr size_t lf_att_fwd_smem()
{
    return sizeof(float) * ((size_t)(BR + BC) * (D + 1) + (size_t)BR * (BC + 1));
}

template <int D, int BR, int BC> static constexpr size_t lf_att_dq_smem()
{
    return sizeof(float) * ((size_t)(2 * BR + BC) * (D + 1) + (size_t)BR * (BC + 1));
}

template <int D, int BR, int BC> static constexpr size_t lf_att_dkdv_smem()
{
    return sizeof(float) * ((size_t)(2 * BR + 2 * BC) * (D + 1) + (size_t)BR * (BC + 1) + 2 * (size_t)BR);
}

/* ---- forward ----------------------------------------------------------------- */

/* one block per (query tile, head); lse may be NULL */
template <int D, int BR, int BC>
static __global__ void __launch_bounds__(LF_ATT_THREADS)
    lf_att_fwd_kernel(float *__restrict__ out, float *__restrict__ lse, const float *__restrict__ q,
                      const float *__restrict__ k, const float *__restrict__ v, int T, int S, int q0, struct lf_attn a)
{
    constexpr int LD = D + 1, LP = BC + 1, RI = BR / 16, RJ = BC / 16, CJ = D / 16;
    extern __shared__ float lf_att_smem[];
    float *Qs = lf_att_smem, *KVs = Qs + BR * LD, *Ps = KVs + BC * LD;
    const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
    const int h = blockIdx.y, d = a.d, kvh = h / (a.heads / a.kv_heads);
    const long qs = (long)a.heads * d, ks = (long)a.kv_heads * d;
    const int t0 = (gridDim.x - 1 - blockIdx.x) * BR, t_end = min(t0 + BR, T);
    /* the keys the tile's rows see, from the first row's window start to
       the last row's position */
    const int klo = lf_att_lo(q0 + t0, a.window), khi = min(q0 + t_end - 1, S - 1) + 1;

    lf_att_load<D, BR>(Qs, q, qs, t0, T, d, (long)h * d);
    float m[RI], l[RI], acc[RI][CJ];
    int plo[RI], phi[RI]; /* each row's visible keys [plo, phi]; empty past T */
#pragma unroll
    for (int i = 0; i < RI; i++) {
        int t = t0 + ty + 16 * i, p = q0 + t;
        m[i] = -INFINITY;
        l[i] = 0.0f;
        plo[i] = t < T ? lf_att_lo(p, a.window) : 1;
        phi[i] = t < T ? min(p, S - 1) : 0;
#pragma unroll
        for (int c = 0; c < CJ; c++)
            acc[i][c] = 0.0f;
    }
    for (int k0 = klo; k0 < khi; k0 += BC) {
        __syncthreads(); /* the last tile's P and V are used up */
        lf_att_load<D, BC>(KVs, k, ks, k0, khi, d, (long)kvh * d);
        __syncthreads();
        float s[RI][RJ];
        lf_att_dot_tile<D, RI, RJ>(s, Qs, KVs, ty, tx);
#pragma unroll
        for (int i = 0; i < RI; i++) {
            float mt = -INFINITY;
#pragma unroll
            for (int j = 0; j < RJ; j++) {
                int key = k0 + tx + 16 * j;
                float x = lf_att_score(s[i][j], a.scale, a.softcap);
                s[i][j] = key >= plo[i] && key <= phi[i] ? x : -INFINITY;
                mt = fmaxf(mt, s[i][j]);
            }
            mt = lf_att_max16(mt);
            float mn = fmaxf(m[i], mt), mu = mn == -INFINITY ? 0.0f : mn, alpha = expf(m[i] - mu);
            l[i] *= alpha;
#pragma unroll
            for (int c = 0; c < CJ; c++)
                acc[i][c] *= alpha;
#pragma unroll
            for (int j = 0; j < RJ; j++) {
                float p = expf(s[i][j] - mu);
                l[i] += p;
                Ps[(ty + 16 * i) * LP + tx + 16 * j] = p;
            }
            m[i] = mn;
        }
        __syncthreads(); /* P written, K read by all */
        lf_att_load<D, BC>(KVs, v, ks, k0, khi, d, (long)kvh * d);
        __syncthreads();
        lf_att_acc_tile<D, RI, BC, LP, false>(acc, Ps, KVs, ty, tx);
    }
#pragma unroll
    for (int i = 0; i < RI; i++) {
        float lt = lf_att_sum16(l[i]);
        int t = t0 + ty + 16 * i;
        if (t >= T)
            continue;
        float inv = lt > 0.0f ? 1.0f / lt : 0.0f;
        float *o = out + (long)t * qs + (long)h * d;
#pragma unroll
        for (int c = 0; c < CJ; c++)
            if (tx + 16 * c < d)
                o[tx + 16 * c] = acc[i][c] * inv;
        if (lse && tx == 0)
            lse[(long)t * a.heads + h] = lt > 0.0f ? m[i] + logf(lt) : -INFINITY;
    }
}

/* ---- backward: dq -------------------------------------------------------------- */

/* one block per (query tile, head): delta[t, h] = rowsum(dO o O); with
   lse_in NULL, the rows' lse recomputed into lse_out; dq overwritten */
template <int D, int BR, int BC>
static __global__ void __launch_bounds__(LF_ATT_THREADS)
    lf_att_bwd_dq_kernel(float *__restrict__ dq, float *__restrict__ delta, float *__restrict__ lse_out,
                         const float *__restrict__ lse_in, const float *__restrict__ dout,
                         const float *__restrict__ q, const float *__restrict__ k, const float *__restrict__ v,
                         const float *__restrict__ out, int T, int S, int q0, struct lf_attn a)
{
    constexpr int LD = D + 1, LP = BC + 1, RI = BR / 16, RJ = BC / 16, CJ = D / 16;
    extern __shared__ float lf_att_smem[];
    float *Qs = lf_att_smem, *dOs = Qs + BR * LD, *KVs = dOs + BR * LD, *dSs = KVs + BC * LD;
    const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
    const int h = blockIdx.y, d = a.d, kvh = h / (a.heads / a.kv_heads);
    const long qs = (long)a.heads * d, ks = (long)a.kv_heads * d;
    const int t0 = (gridDim.x - 1 - blockIdx.x) * BR, t_end = min(t0 + BR, T);
    const int klo = lf_att_lo(q0 + t0, a.window), khi = min(q0 + t_end - 1, S - 1) + 1;
    const float cap = a.softcap;

    lf_att_load<D, BR>(Qs, q, qs, t0, T, d, (long)h * d);
    lf_att_load<D, BR>(dOs, dout, qs, t0, T, d, (long)h * d);
    __syncthreads();

    float Di[RI], Li[RI];
    int plo[RI], phi[RI];
#pragma unroll
    for (int i = 0; i < RI; i++) {
        int r = ty + 16 * i, t = t0 + r, p = q0 + t;
        float sd = 0.0f;
        if (t < T) {
            const float *o = out + (long)t * qs + (long)h * d;
            for (int c = tx; c < d; c += 16)
                sd = fmaf(dOs[r * LD + c], o[c], sd);
        }
        Di[i] = lf_att_sum16(sd);
        if (t < T && tx == 0)
            delta[(long)t * a.heads + h] = Di[i];
        plo[i] = t < T ? lf_att_lo(p, a.window) : 1;
        phi[i] = t < T ? min(p, S - 1) : 0;
        Li[i] = lse_in && t < T ? lse_in[(long)t * a.heads + h] : 0.0f;
    }

    if (!lse_in) {
        /* the forward's max and sum again, scores only */
        float m[RI], l[RI];
#pragma unroll
        for (int i = 0; i < RI; i++) {
            m[i] = -INFINITY;
            l[i] = 0.0f;
        }
        for (int k0 = klo; k0 < khi; k0 += BC) {
            __syncthreads();
            lf_att_load<D, BC>(KVs, k, ks, k0, khi, d, (long)kvh * d);
            __syncthreads();
            float s[RI][RJ];
            lf_att_dot_tile<D, RI, RJ>(s, Qs, KVs, ty, tx);
#pragma unroll
            for (int i = 0; i < RI; i++) {
                float mt = -INFINITY;
#pragma unroll
                for (int j = 0; j < RJ; j++) {
                    int key = k0 + tx + 16 * j;
                    float x = lf_att_score(s[i][j], a.scale, cap);
                    s[i][j] = key >= plo[i] && key <= phi[i] ? x : -INFINITY;
                    mt = fmaxf(mt, s[i][j]);
                }
                mt = lf_att_max16(mt);
                float mn = fmaxf(m[i], mt), mu = mn == -INFINITY ? 0.0f : mn;
                l[i] *= expf(m[i] - mu);
#pragma unroll
                for (int j = 0; j < RJ; j++)
                    l[i] += expf(s[i][j] - mu);
                m[i] = mn;
            }
        }
#pragma unroll
        for (int i = 0; i < RI; i++) {
            float lt = lf_att_sum16(l[i]);
            int t = t0 + ty + 16 * i;
            Li[i] = lt > 0.0f ? m[i] + logf(lt) : -INFINITY;
            if (t < T && tx == 0)
                lse_out[(long)t * a.heads + h] = Li[i];
        }
    }

    float acc[RI][CJ];
#pragma unroll
    for (int i = 0; i < RI; i++)
#pragma unroll
        for (int c = 0; c < CJ; c++)
            acc[i][c] = 0.0f;
    for (int k0 = klo; k0 < khi; k0 += BC) {
        float dp[RI][RJ], s[RI][RJ];
        __syncthreads(); /* the last tile's dS and K are used up */
        lf_att_load<D, BC>(KVs, v, ks, k0, khi, d, (long)kvh * d);
        __syncthreads();
        lf_att_dot_tile<D, RI, RJ>(dp, dOs, KVs, ty, tx);
        __syncthreads();
        lf_att_load<D, BC>(KVs, k, ks, k0, khi, d, (long)kvh * d);
        __syncthreads();
        lf_att_dot_tile<D, RI, RJ>(s, Qs, KVs, ty, tx);
#pragma unroll
        for (int i = 0; i < RI; i++)
#pragma unroll
            for (int j = 0; j < RJ; j++) {
                int key = k0 + tx + 16 * j;
                float x = lf_att_score(s[i][j], a.scale, cap);
                float p = key >= plo[i] && key <= phi[i] ? expf(x - Li[i]) : 0.0f;
                float g = p * (dp[i][j] - Di[i]);
                if (cap > 0.0f) {
                    float u = x / cap;
                    g *= 1.0f - u * u;
                }
                dSs[(ty + 16 * i) * LP + tx + 16 * j] = g;
            }
        __syncthreads();
        lf_att_acc_tile<D, RI, BC, LP, false>(acc, dSs, KVs, ty, tx);
    }
#pragma unroll
    for (int i = 0; i < RI; i++) {
        int t = t0 + ty + 16 * i;
        if (t >= T)
            continue;
        float *o = dq + (long)t * qs + (long)h * d;
#pragma unroll
        for (int c = 0; c < CJ; c++)
            if (tx + 16 * c < d)
                o[tx + 16 * c] = a.scale * acc[i][c];
    }
}

/* ---- backward: dk, dv ---------------------------------------------------------- */

/* one block per (key tile, kv head); delta and lse [T, heads] */
template <int D, int BR, int BC>
static __global__ void __launch_bounds__(LF_ATT_THREADS)
    lf_att_bwd_dkdv_kernel(float *__restrict__ dk, float *__restrict__ dv, const float *__restrict__ delta,
                           const float *__restrict__ lse, const float *__restrict__ dout,
                           const float *__restrict__ q, const float *__restrict__ k, const float *__restrict__ v,
                           int T, int S, int q0, struct lf_attn a)
{
    constexpr int LD = D + 1, LP = BC + 1, RI = BR / 16, RJ = BC / 16, RK = BC / 16, CJ = D / 16;
    extern __shared__ float lf_att_smem[];
    float *Ks = lf_att_smem, *Vs = Ks + BC * LD, *Qs = Vs + BC * LD, *dOs = Qs + BR * LD, *Ps = dOs + BR * LD;
    float *Ls = Ps + BR * LP, *Ds = Ls + BR;
    const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
    const int kvh = blockIdx.y, d = a.d, group = a.heads / a.kv_heads;
    const long qs = (long)a.heads * d, ks = (long)a.kv_heads * d;
    const int j0 = blockIdx.x * BC, j_end = min(j0 + BC, S);
    const float cap = a.softcap;
    /* the queries that see a key of the tile: position >= j0, and within
       the window of the tile's last key */
    const int tlo = max(0, j0 - q0);
    const int thi = a.window > 0 ? min(T, j_end - 1 + a.window - q0) : T;

    lf_att_load<D, BC>(Ks, k, ks, j0, j_end, d, (long)kvh * d);
    lf_att_load<D, BC>(Vs, v, ks, j0, j_end, d, (long)kvh * d);
    float dka[RK][CJ], dva[RK][CJ];
#pragma unroll
    for (int i = 0; i < RK; i++)
#pragma unroll
        for (int c = 0; c < CJ; c++) {
            dka[i][c] = 0.0f;
            dva[i][c] = 0.0f;
        }
    for (int h = kvh * group; h < (kvh + 1) * group; h++)
        for (int t0 = tlo; t0 < thi; t0 += BR) {
            __syncthreads(); /* the last tile's P, dS, Q and dO are used up */
            lf_att_load<D, BR>(Qs, q, qs, t0, T, d, (long)h * d);
            lf_att_load<D, BR>(dOs, dout, qs, t0, T, d, (long)h * d);
            for (int r = threadIdx.x; r < BR; r += LF_ATT_THREADS) {
                int t = t0 + r;
                Ls[r] = t < T ? lse[(long)t * a.heads + h] : 0.0f;
                Ds[r] = t < T ? delta[(long)t * a.heads + h] : 0.0f;
            }
            __syncthreads();
            float s[RI][RJ], dp[RI][RJ];
            lf_att_dot_tile<D, RI, RJ>(s, Qs, Ks, ty, tx);
            lf_att_dot_tile<D, RI, RJ>(dp, dOs, Vs, ty, tx);
#pragma unroll
            for (int i = 0; i < RI; i++) {
                int r = ty + 16 * i, t = t0 + r, p = q0 + t;
                int lo = t < T ? lf_att_lo(p, a.window) : 1, hi = t < T ? min(p, S - 1) : 0;
#pragma unroll
                for (int j = 0; j < RJ; j++) {
                    int key = j0 + tx + 16 * j;
                    float x = lf_att_score(s[i][j], a.scale, cap);
                    float pr = key >= lo && key <= hi ? expf(x - Ls[r]) : 0.0f;
                    float g = pr * (dp[i][j] - Ds[r]);
                    if (cap > 0.0f) {
                        float u = x / cap;
                        g *= 1.0f - u * u;
                    }
                    Ps[r * LP + tx + 16 * j] = pr;
                    s[i][j] = g; /* dS, written once P is used up */
                }
            }
            __syncthreads();
            lf_att_acc_tile<D, RK, BR, LP, true>(dva, Ps, dOs, ty, tx); /* dV += P^T dO */
            __syncthreads();
#pragma unroll
            for (int i = 0; i < RI; i++)
#pragma unroll
                for (int j = 0; j < RJ; j++)
                    Ps[(ty + 16 * i) * LP + tx + 16 * j] = s[i][j];
            __syncthreads();
            lf_att_acc_tile<D, RK, BR, LP, true>(dka, Ps, Qs, ty, tx); /* dK += dS^T Q */
        }
#pragma unroll
    for (int i = 0; i < RK; i++) {
        int key = j0 + ty + 16 * i;
        if (key >= S)
            continue;
        float *gk = dk + (long)key * ks + (long)kvh * d, *gv = dv + (long)key * ks + (long)kvh * d;
#pragma unroll
        for (int c = 0; c < CJ; c++)
            if (tx + 16 * c < d) {
                gk[tx + 16 * c] += a.scale * dka[i][c];
                gv[tx + 16 * c] += dva[i][c];
            }
    }
}

/* ---- launchers ------------------------------------------------------------------ */

extern "C" void lf_cuda_attention_check(const struct lf_attn *a, const char *who)
{
    if (a->d < 1 || a->d > LF_CUDA_ATTENTION_MAX_D || a->heads < 1 || a->kv_heads < 1 ||
        a->heads % a->kv_heads != 0) {
        fprintf(stderr, "%s: unsupported shape (heads %d, kv_heads %d, head dim %d; head dim 1..%d, heads a "
                        "multiple of kv_heads)\n", who, a->heads, a->kv_heads, a->d, LF_CUDA_ATTENTION_MAX_D);
        exit(1);
    }
}

template <int D>
static void lf_att_fwd_launch(float *out, float *lse, const float *q, const float *k, const float *v, int T, int S,
                              int q0, const struct lf_attn *a, cudaStream_t stream)
{
    constexpr int BR = 64, BC = D > 128 ? 32 : 64;
    constexpr size_t smem = lf_att_fwd_smem<D, BR, BC>();
    lf_cuda_smem_optin((const void *)lf_att_fwd_kernel<D, BR, BC>, smem, a->d, "lf_cuda_attention_f32");
    dim3 grid((unsigned int)((T + BR - 1) / BR), (unsigned int)a->heads);
    lf_att_fwd_kernel<D, BR, BC><<<grid, LF_ATT_THREADS, smem, stream>>>(out, lse, q, k, v, T, S, q0, *a);
    LF_CUDA_CHECK_LAST();
}

template <int D>
static void lf_att_bwd_launch(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                              const float *v, const float *out, int T, int S, int q0, const struct lf_attn *a,
                              const float *lse, float *tmp, cudaStream_t stream)
{
    constexpr int QBR = D > 128 ? 32 : 64, QBC = QBR, KBR = D > 128 ? 32 : 64, KBC = 32;
    constexpr size_t dq_smem = lf_att_dq_smem<D, QBR, QBC>(), kv_smem = lf_att_dkdv_smem<D, KBR, KBC>();
    float *delta = tmp, *lse_tmp = lse ? NULL : tmp + (size_t)T * a->heads;
    lf_cuda_smem_optin((const void *)lf_att_bwd_dq_kernel<D, QBR, QBC>, dq_smem, a->d, "lf_cuda_attention_bwd_f32");
    lf_cuda_smem_optin((const void *)lf_att_bwd_dkdv_kernel<D, KBR, KBC>, kv_smem, a->d,
                      "lf_cuda_attention_bwd_f32");
    dim3 qgrid((unsigned int)((T + QBR - 1) / QBR), (unsigned int)a->heads);
    lf_att_bwd_dq_kernel<D, QBR, QBC><<<qgrid, LF_ATT_THREADS, dq_smem, stream>>>(dq, delta, lse_tmp, lse, dout, q, k,
                                                                                  v, out, T, S, q0, *a);
    LF_CUDA_CHECK_LAST();
    /* only the keys some query sees: [0, min(S, q0 + T)) */
    int keys = S < q0 + T ? S : q0 + T;
    dim3 kgrid((unsigned int)((keys + KBC - 1) / KBC), (unsigned int)a->kv_heads);
    lf_att_bwd_dkdv_kernel<D, KBR, KBC><<<kgrid, LF_ATT_THREADS, kv_smem, stream>>>(dk, dv, delta,
                                                                                    lse ? lse : lse_tmp, dout, q, k,
                                                                                    v, T, S, q0, *a);
    LF_CUDA_CHECK_LAST();
}

extern "C" void lf_cuda_attention_f32(float *out, const float *q, const float *k, const float *v, int T, int S, int q0,
                                      const struct lf_attn *a, float *scratch, float *lse, cudaStream_t stream)
{
    (void)scratch;
    if (T < 1)
        return;
    lf_cuda_attention_check(a, "lf_cuda_attention_f32");
    if (a->d <= 64)
        lf_att_fwd_launch<64>(out, lse, q, k, v, T, S, q0, a, stream);
    else if (a->d <= 96)
        lf_att_fwd_launch<96>(out, lse, q, k, v, T, S, q0, a, stream);
    else if (a->d <= 128)
        lf_att_fwd_launch<128>(out, lse, q, k, v, T, S, q0, a, stream);
    else
        lf_att_fwd_launch<256>(out, lse, q, k, v, T, S, q0, a, stream);
}

extern "C" void lf_cuda_attention_bwd_f32(float *dq, float *dk, float *dv, const float *dout, const float *q,
                                          const float *k, const float *v, const float *out, int T, int S, int q0,
                                          const struct lf_attn *a, float *scratch, const float *lse,
                                          cudaStream_t stream)
{
    (void)scratch;
    if (T < 1 || S < 1)
        return;
    lf_cuda_attention_check(a, "lf_cuda_attention_bwd_f32");
    float *tmp = NULL;
    size_t n = (size_t)T * a->heads * (lse ? 1 : 2);
    LF_CUDA_CHECK(cudaMallocAsync((void **)&tmp, n * sizeof(float), stream));
    if (a->d <= 64)
        lf_att_bwd_launch<64>(dq, dk, dv, dout, q, k, v, out, T, S, q0, a, lse, tmp, stream);
    else if (a->d <= 96)
        lf_att_bwd_launch<96>(dq, dk, dv, dout, q, k, v, out, T, S, q0, a, lse, tmp, stream);
    else if (a->d <= 128)
        lf_att_bwd_launch<128>(dq, dk, dv, dout, q, k, v, out, T, S, q0, a, lse, tmp, stream);
    else
        lf_att_bwd_launch<256>(dq, dk, dv, dout, q, k, v, out, T, S, q0, a, lse, tmp, stream);
    LF_CUDA_CHECK(cudaFreeAsync(tmp, stream));
}

/* kernels/cuda/sample.cu — the next-token choice on the GPU, one block per
 * row (see sample.h): lf_cpu_sample_f32's arithmetic, the sorted order
 * built by a radix select (top-k) and a stable radix sort of the logits
 * above -inf, the double sums on one thread in the CPU's order.
 *
 * The float operations are the correctly rounded intrinsics (__fmul_rn,
 * __fdiv_rn, __ddiv_rn, __double2float_rn, ...), so the penalty and the
 * temperature give the CPU's bits; this file must not be built with
 * --use_fast_math. */
#include "sample.h"
#include "cuda_check.h"

#include <math.h>
#include <stdint.h>

#define LF_SAMPLE_THREADS 512
#define LF_SAMPLE_DIGITS 16 /* the sort's 4-bit digits */

/* An order-preserving key: a smaller key is a larger logit, and -0 and +0
   give the same key (the CPU's comparisons treat them as equal). */
static __device__ __forceinline__ uint32_t lf_sample_key(float f)
{
    uint32_t b = __float_as_uint(f);
    if ((b & 0x7fffffffu) == 0)
        b = 0;
    uint32_t asc = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
    return ~asc;
}

/* the logit of a key (+0 for a zero) */
static __device__ __forceinline__ float lf_sample_key_value(uint32_t k)
{
    uint32_t asc = ~k;
    return __uint_as_float((asc & 0x80000000u) ? (asc & 0x7fffffffu) : ~asc);
}

/* exclusive prefix sum of every thread's mine over the block (Hillis-Steele
   in part[blockDim.x]); *total gets the sum.  Every thread must call it. */
static __device__ int lf_sample_block_scan(int *part, int mine, int *total)
{
    const int tid = threadIdx.x, T = blockDim.x;
    part[tid] = mine;
    __syncthreads();
    for (int off = 1; off < T; off <<= 1) {
        int add = tid >= off ? part[tid - off] : 0;
        __syncthreads();
        part[tid] += add;
        __syncthreads();
    }
    int incl = part[tid];
    *total = part[T - 1];
    __syncthreads();
    return incl - mine;
}

/* (value, index) of the greedy choice: the larger value, on a tie the
   smaller index; index -1: none yet */
static __device__ __forceinline__ void lf_sample_better(float &bv, int &bi, float v, int i)
{
    if (i < 0)
        return;
    if (bi < 0 || v > bv || (v == bv && i < bi)) {
        bv = v;
        bi = i;
    }
}

/* keys/ids: the row's 2 * V scratch each (two halves, ping-pong); terms:
   its V doubles */
static __global__ void __launch_bounds__(LF_SAMPLE_THREADS)
    lf_sample_kernel(float *logits, int V, struct lf_cpu_sample_params p, int sampling, const int32_t *history,
                     const int *nhistory, int H, const double *u, int32_t *out, uint32_t *keys_all,
                     int32_t *ids_all, double *terms_all)
{
    __shared__ int cnt[LF_SAMPLE_DIGITS * LF_SAMPLE_THREADS];
    __shared__ int part[LF_SAMPLE_THREADS];
    __shared__ float red_v[LF_SAMPLE_THREADS];
    __shared__ int red_i[LF_SAMPLE_THREADS];
    __shared__ int sel[2];
    const int tid = threadIdx.x, T = blockDim.x;
    const size_t row = blockIdx.x;
    float *x = logits + row * (size_t)V;

    /* repetition penalty: each distinct id once (its first occurrence),
       so no two threads touch one logit */
    if (p.repetition_penalty != 1.0 && history) {
        const int32_t *h = history + row * (size_t)H;
        const int nh = nhistory[row];
        const float pen = __double2float_rn(p.repetition_penalty);
        for (int i = tid; i < nh; i += T) {
            int32_t id = h[i];
            if (id < 0 || id >= V)
                continue;
            bool earlier = false;
            for (int j = 0; j < i && !earlier; j++)
                earlier = h[j] == id;
            if (earlier)
                continue;
            float v = x[id];
            x[id] = v < 0 ? __fmul_rn(v, pen) : __fdiv_rn(v, pen);
        }
        __syncthreads();
    }

    if (!sampling) {
        /* the first index of the largest value; NaNs skipped, and 0 when
           x[0] is NaN (the CPU's scan keeps index 0 then) */
        float bv = 0.0f;
        int bi = -1;
        for (int v = tid; v < V; v += T) {
            float xv = x[v];
            if (xv == xv)
                lf_sample_better(bv, bi, xv, v);
        }
        red_v[tid] = bv;
        red_i[tid] = bi;
        __syncthreads();
        for (int half = T / 2; half > 0; half >>= 1) {
            if (tid < half) {
                lf_sample_better(bv, bi, red_v[tid + half], red_i[tid + half]);
                red_v[tid] = bv;
                red_i[tid] = bi;
            }
            __syncthreads();
        }
        if (tid == 0) {
            float x0 = x[0];
            out[row] = x0 != x0 ? 0 : red_i[0];
        }
        return;
    }

    /* temperature: the double quotient rounded to f32 */
    for (int v = tid; v < V; v += T)
        x[v] = __double2float_rn(__ddiv_rn((double)x[v], p.temperature));
    __syncthreads();

    /* top-k: the k-th smallest key (k-th largest value, with multiplicity)
       by an 8-bit radix select; below it -> -inf */
    if (p.top_k > 0 && p.top_k < V) {
        uint32_t prefix = 0, mask = 0;
        int want = p.top_k;
        for (int shift = 24; shift >= 0; shift -= 8) {
            for (int i = tid; i < 256; i += T)
                cnt[i] = 0;
            __syncthreads();
            for (int v = tid; v < V; v += T) {
                uint32_t k = lf_sample_key(x[v]);
                if ((k & mask) == prefix)
                    atomicAdd(&cnt[(k >> shift) & 255u], 1);
            }
            __syncthreads();
            if (tid == 0) {
                int below = 0, d = 0;
                for (; d < 255; d++) {
                    if (below + cnt[d] >= want)
                        break;
                    below += cnt[d];
                }
                sel[0] = d;
                sel[1] = want - below;
            }
            __syncthreads();
            prefix |= (uint32_t)sel[0] << shift;
            mask |= 255u << shift;
            want = sel[1];
        }
        const float kth = lf_sample_key_value(prefix);
        for (int v = tid; v < V; v += T)
            if (x[v] < kth)
                x[v] = -INFINITY;
        __syncthreads();
    }

    /* the logits above -inf, in id order (contiguous chunks per thread),
       with the largest -inf id (the CPU's last sorted element then) */
    uint32_t *ka = keys_all + row * 2 * (size_t)V, *kb = ka + V;
    int32_t *ia = ids_all + row * 2 * (size_t)V, *ib = ia + V;
    double *terms = terms_all + row * (size_t)V;
    int n, last_inf;
    {
        const int chunk = (V + T - 1) / T;
        const int lo = min(V, tid * chunk), hi = min(V, lo + chunk);
        int c = 0, li = -1;
        for (int v = lo; v < hi; v++) {
            if (x[v] != -INFINITY)
                c++;
            else
                li = v;
        }
        int off = lf_sample_block_scan(part, c, &n);
        for (int v = lo; v < hi; v++) {
            float xv = x[v];
            if (xv != -INFINITY) {
                ka[off] = lf_sample_key(xv);
                ia[off] = v;
                off++;
            }
        }
        /* the largest -inf id: the chunks are in id order, so it is that
           of the last chunk that has one */
        red_i[tid] = li;
        __syncthreads();
        if (tid == 0) {
            int m = -1;
            for (int t = T - 1; t >= 0 && m < 0; t--)
                m = red_i[t];
            sel[0] = m;
        }
        __syncthreads();
        last_inf = sel[0];
    }

    /* stable LSD radix sort of the n keys (ids along), 4 bits a pass: the
       keys ascending (logits descending), equal keys in id order */
    {
        const int chunk = (n + T - 1) / T;
        const int lo = min(n, tid * chunk), hi = min(n, lo + chunk);
        for (int shift = 0; shift < 32; shift += 4) {
            int c[LF_SAMPLE_DIGITS];
            for (int d = 0; d < LF_SAMPLE_DIGITS; d++)
                c[d] = 0;
            for (int i = lo; i < hi; i++)
                c[(ka[i] >> shift) & 15u]++;
            for (int d = 0; d < LF_SAMPLE_DIGITS; d++)
                cnt[d * T + tid] = c[d];
            __syncthreads();
            /* exclusive scan of cnt in (digit, thread) order: 16 entries a
               thread, then the block scan of their sums */
            int s = 0;
            for (int j = 0; j < LF_SAMPLE_DIGITS; j++)
                s += cnt[tid * LF_SAMPLE_DIGITS + j];
            int total;
            int run = lf_sample_block_scan(part, s, &total);
            for (int j = 0; j < LF_SAMPLE_DIGITS; j++) {
                int c0 = cnt[tid * LF_SAMPLE_DIGITS + j];
                cnt[tid * LF_SAMPLE_DIGITS + j] = run;
                run += c0;
            }
            __syncthreads();
            for (int d = 0; d < LF_SAMPLE_DIGITS; d++)
                c[d] = cnt[d * T + tid];
            for (int i = lo; i < hi; i++) {
                uint32_t k = ka[i];
                int pos = c[(k >> shift) & 15u]++;
                kb[pos] = k;
                ib[pos] = ia[i];
            }
            __syncthreads();
            uint32_t *kt = ka;
            ka = kb;
            kb = kt;
            int32_t *it = ia;
            ia = ib;
            ib = it;
        }
    }

    if (n == 0) { /* every logit -inf: the CPU's sums are NaN, its pick the last id */
        if (tid == 0)
            out[row] = V - 1;
        return;
    }
    const double mx = (double)lf_sample_key_value(ka[0]);
    for (int j = tid; j < n; j += T)
        terms[j] = exp((double)lf_sample_key_value(ka[j]) - mx);
    __syncthreads();

    /* the CPU's sums, in its order (the -inf elements after these add
       zeros) */
    if (tid == 0) {
        double z = 0;
        for (int j = 0; j < n; j++)
            z = __dadd_rn(z, terms[j]);
        int keep = V;
        if (p.top_p < 1.0) {
            double mass = 0;
            for (int j = 0; j < n; j++) {
                mass = __dadd_rn(mass, __ddiv_rn(terms[j], z));
                if (mass >= p.top_p) {
                    keep = j + 1;
                    break;
                }
            }
        }
        const int m = keep < n ? keep : n;
        double total = 0;
        for (int j = 0; j < m; j++)
            total = __dadd_rn(total, terms[j]);
        const double ut = __dmul_rn(u[row], total);
        double acc = 0;
        int32_t pick = keep <= n ? ia[keep - 1] : last_inf;
        for (int j = 0; j < m; j++) {
            acc = __dadd_rn(acc, terms[j]);
            if (ut < acc) {
                pick = ia[j];
                break;
            }
        }
        out[row] = pick;
    }
}

extern "C" cudaError_t lf_cuda_sample_f32(float *logits, int B, int V, const struct lf_cpu_sample_params *p,
                                          const int32_t *history, const int *nhistory, int H, const double *u,
                                          int32_t *out, cudaStream_t stream)
{
    if (B < 0 || V < 1 || H < 0 || !p || (B > 0 && (!logits || !out)))
        return cudaErrorInvalidValue;
    if (B == 0)
        return cudaSuccess;
    const int sampling = lf_cpu_sample_draws(p);
    if (p->repetition_penalty != 1.0 && history && !nhistory)
        return cudaErrorInvalidValue;
    if (sampling && !u)
        return cudaErrorInvalidValue;
    uint32_t *keys = NULL;
    int32_t *ids = NULL;
    double *terms = NULL;
    const size_t rv = (size_t)B * (size_t)V;
    if (sampling) {
        LF_CUDA_CHECK(cudaMallocAsync((void **)&keys, rv * 2 * sizeof *keys, stream));
        LF_CUDA_CHECK(cudaMallocAsync((void **)&ids, rv * 2 * sizeof *ids, stream));
        LF_CUDA_CHECK(cudaMallocAsync((void **)&terms, rv * sizeof *terms, stream));
    }
    lf_sample_kernel<<<(unsigned int)B, LF_SAMPLE_THREADS, 0, stream>>>(logits, V, *p, sampling, history, nhistory,
                                                                       H, u, out, keys, ids, terms);
    LF_CUDA_CHECK_LAST();
    if (sampling) {
        LF_CUDA_CHECK(cudaFreeAsync(keys, stream));
        LF_CUDA_CHECK(cudaFreeAsync(ids, stream));
        LF_CUDA_CHECK(cudaFreeAsync(terms, stream));
    }
    return cudaSuccess;
}

/* kernels/cpu/gemm.c — lf_cpu_sgemm_f32 (see gemm.h): lf's own f32
 * product, in AVX-512 and in AVX2 with FMA, and the OpenBLAS call it falls
 * back to.
 *
 * Why our own: training's products have a few fixed shapes (1024-token
 * activations against weights of a few hundred to 32000 rows), and
 * OpenBLAS spends a tenth of their time packing both operands and waiting
 * between its threads.  Here:
 *   - a register tile that runs at the FMA units' peak: AVX-512 6 x 64 (24
 *     accumulators; per k, 4 vector loads of B and 6 broadcasts of A),
 *     AVX2 6 x 16 (12 of its 16 registers; 2 loads of B, 6 broadcasts);
 *   - an operand whose rows run along the tile's direction is read in
 *     place: A when not transposed (6 row pointers), and on AVX-512 B when
 *     not transposed (its rows are the tile's 64 columns).  A^T (a weight's
 *     gradient) and B^T (a forward x W^T) are packed, into per-thread
 *     buffers, and B when its rows are a multiple of 1 KB apart (they would
 *     all fall in the same few sets of the L1 cache), and on AVX2 always
 *     (16 columns are one cache line per row: read in place, a tile's
 *     column of B spans too many lines that share L1 sets);
 *   - the threads split C's columns in panels of the tile's width, or its
 *     rows when A is packed and has enough of them (so that no two threads
 *     pack the same rows); each thread runs its share alone, with no
 *     barrier until the end, and packs into buffers of its own
 *     (thread-local: callers on several threads at once are safe);
 *   - except where that packs nothing twice (B packed beforehand, or with
 *     many blocks of columns): there C is cut into chunks that each thread
 *     takes as it comes free, so that a thread slowed by others' load on
 *     its core does not hold up the product (the threads finished up to
 *     6-9% of a product apart in equal shares; measured in place as below,
 *     over 4-5 runs: the products of a LoRA q,v step of train.sh 3-7%
 *     faster, a full fine-tuning step's 0-4%, a LoRA-all step's unchanged,
 *     its layers' weights not being packed beforehand);
 *   - and a B of at most 16 MB that the product would pack itself is
 *     packed whole first, by the threads together, where that lets the
 *     product go in chunks or spares packing B twice: on two threads or
 *     more with A read in place, and with A^T packed where each thread's
 *     rows would pack B once per MC of them (the head's gradient
 *     dlogits^T x: 32000 rows, each thread packed x 42 times; its chunks
 *     also keep their rows of C in the cache over all of K).  Measured in
 *     place as below, over 4 runs of 20-24 steps: a full fine-tuning
 *     step's products but the head's two largest (which this leaves as
 *     they were) 3.5-6% faster, dlogits^T x 8-13%;
 *   - B can be packed once beforehand, for products against many A (a
 *     frozen weight in training: lf_cpu_packed_b), in the layout the
 *     product packs a block of columns into, over all of them;
 *   - K is cut into equal blocks of at most KC, summed in order into C;
 *   - the AVX2 tile prefetches its lines of C before its k loop: in
 *     training, C is mostly an activation last touched a step ago, far in
 *     memory (measured in place, with a build that chose per call at random
 *     between with and without, this and NC_AVX2 cut the products' time of
 *     a train.sh step by 2-8%).
 * An element's sum depends only on K's blocks and the tile's k order, so
 * the result is the same at any thread count (not across instruction
 * sets).
 *
 * Measured (scripts/bench/gemm.sh, 2 threads): on an AMD EPYC with AVX-512,
 * a full fine-tuning step of train.sh's model, its products weighted by
 * count, 631-647 ms against OpenBLAS 0.3.21's 668-706 ms (206-211 against
 * 189-199 GFLOP/s); LoRA's narrow products 2.1x OpenBLAS's.  On an AMD
 * EPYC (Zen 3) with AVX2 only, the same step 890-912 ms against 896-926 ms
 * (146-150 against 144-149 GFLOP/s: on par), LoRA's narrow products
 * 1.4-2.4x OpenBLAS's (its times there vary the most). */
#include "gemm.h"
#include "vec.h"
#include "vec_impl.h"

#include <immintrin.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>

#define MR 6     /* tile rows */
#define NR 64    /* tile columns: 4 vectors of 16 */
#define KC 384   /* most of K per pass: a 6-row panel of packed A^T is 9 KB */
#define MC 384   /* rows of A^T packed at a time (longer runs of each row of A^T read) */
#define NC 320   /* columns of B packed at a time (kc x NC in the L2) */
#define NARROW 16      /* C at most this wide: the narrow tile, one vector a row */
#define NARROW_ROWS 12 /* rows of the narrow tile */
/* Shapes lf's own product takes (below, OpenBLAS did as well or better in
   scripts/bench/gemm.c's sizes): K >= 16, and either N >= 64 and M >= 16, or
   N <= NARROW and M >= 64 (the narrow tile) */
#define MIN_K 16
#define MIN_M 16
#define MIN_N 64
#define MIN_M_NARROW 64
/* A^T packed: the threads split C's rows from this many on (so that no two
   threads pack the same rows); fewer rows (a LoRA A's gradient, 8 or 16)
   would split unevenly in tiles of 6, and are cheap to pack twice */
#define SPLIT_ROWS_MIN 64
/* rows of a chunk of C (gemm_take_chunks) when B is packed beforehand: 16
   of the tile's rows; about ten chunks to a block of columns at 1024 rows */
#define CHUNK_ROWS 96
/* B packed beforehand of at most this many floats (16 MB) goes in chunks
   over several K blocks (a 32000-row head's, 49 MB, does not) */
#define CHUNKED_PANELS_MAX (1L << 22)

void lf_cpu_sgemm_blas_f32(int ta, int tb, int M, int N, int K, float alpha, const float *A, long lda,
                           const float *B, long ldb, float beta, float *C, long ldc)
{
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A,
                (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

/* mask of the first n (0..16) lanes */
__attribute__((target("avx512f"))) static inline __mmask16 first_lanes(int n)
{
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

/* r[0..15] rows of 16 -> their transpose */
__attribute__((target("avx512f"))) static inline void transpose16(__m512 *r)
{
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 2]);
        __m512d c = _mm512_castps_pd(t[4 * i + 1]), d = _mm512_castps_pd(t[4 * i + 3]);
        r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
        r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
        r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
    }
    /* r[4i + m] now holds rows 4i..4i+3 of columns m, m+4, m+8, m+12 (one
       128-bit lane each); gather the lanes */
    for (int m = 0; m < 4; m++) {
        __m512 a = _mm512_shuffle_f32x4(r[m], r[4 + m], 0x88), b = _mm512_shuffle_f32x4(r[m], r[4 + m], 0xdd);
        __m512 c = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0x88), d = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0xdd);
        t[m] = _mm512_shuffle_f32x4(a, c, 0x88);
        t[m + 8] = _mm512_shuffle_f32x4(a, c, 0xdd);
        t[m + 4] = _mm512_shuffle_f32x4(b, d, 0x88);
        t[m + 12] = _mm512_shuffle_f32x4(b, d, 0xdd);
    }
    for (int i = 0; i < 16; i++)
        r[i] = t[i];
}

/* B^T's rows j < nc (each kc long, ldb apart) -> panels of NR columns,
   each [kc][NR], zeros past nc */
__attribute__((target("avx512f"))) static void pack_bt(float *q, const float *B, long ldb, int nc, int kc)
{
    for (int j0 = 0; j0 < nc; j0 += NR) {
        float *panel = q + (long)j0 * kc;
        for (int jb = j0; jb < j0 + NR; jb += 16) {
            float *dst = panel + (jb - j0);
            int k = 0;
            for (; k + 16 <= kc; k += 16) {
                __m512 r[16];
                for (int j = 0; j < 16; j++)
                    r[j] = jb + j < nc ? _mm512_loadu_ps(B + (long)(jb + j) * ldb + k) : _mm512_setzero_ps();
                transpose16(r);
                for (int j = 0; j < 16; j++)
                    _mm512_store_ps(dst + (long)(k + j) * NR, r[j]);
            }
            for (; k < kc; k++)
                for (int j = 0; j < 16; j++)
                    dst[(long)k * NR + j] = jb + j < nc ? B[(long)(jb + j) * ldb + k] : 0.0f;
        }
    }
}

/* B's rows k < kc (ldb apart), columns j < nc -> panels of NR columns, each
   [kc][NR], zeros past nc */
__attribute__((target("avx512f"))) static void pack_b(float *q, const float *B, long ldb, int nc, int kc)
{
    for (int j0 = 0; j0 < nc; j0 += NR) {
        float *panel = q + (long)j0 * kc;
        for (int k = 0; k < kc; k++)
            for (int v = 0; v < 4; v++)
                _mm512_store_ps(panel + (long)k * NR + 16 * v,
                                _mm512_maskz_loadu_ps(first_lanes(nc - j0 - 16 * v), B + (long)k * ldb + j0 + 16 * v));
    }
}

/* A^T's rows k < kc (lda apart), columns i < mc -> panels of MR rows, each
   [kc][MR], zeros past mc */
__attribute__((target("avx512f"))) static void pack_at(float *q, const float *A, long lda, int mc, int kc)
{
    for (int k = 0; k < kc; k++) {
        const float *row = A + (long)k * lda;
        for (int i = 0; i < mc; i += MR)
            _mm512_mask_storeu_ps(q + (long)i * kc + k * MR, 0x3f, _mm512_maskz_loadu_ps(first_lanes(mc - i), row + i));
    }
}

/* The mr x nr tile at c (mr <= MR, nr <= NR):
       c[r*ldc + j] = alpha * sum_k a[r*rs + k*cs] * b[k*ldb + j] + beta * c[...]
   beta == 0: c is not read.  Inlined twice: for whole tiles (partial ==
   0: plain loads of b) and for the last, narrower ones (masked loads). */
__attribute__((target("avx512f"), always_inline)) static inline void
tile_body(int kc, const float *a, long rs, long cs, const float *b, long ldb, float *c, long ldc, float alpha,
          float beta, int mr, int nr, const int partial)
{
    const float *arow[MR];
    for (int r = 0; r < MR; r++)
        arow[r] = a + (r < mr ? r : 0) * rs;  /* rows past mr repeat row 0, and are not stored */
    __mmask16 m[4];
    for (int v = 0; v < 4; v++)
        m[v] = first_lanes(nr - 16 * v);
    __m512 acc[MR][4];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++)
            acc[r][v] = _mm512_setzero_ps();
    for (long k = 0; k < kc; k++, b += ldb) {
        __m512 bv[4];
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++)
            bv[v] = partial ? _mm512_maskz_loadu_ps(m[v], b + 16 * v) : _mm512_loadu_ps(b + 16 * v);
        _mm_prefetch((const char *)(b + 8 * ldb), _MM_HINT_T0);
        _mm_prefetch((const char *)(b + 8 * ldb + 32), _MM_HINT_T0);
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            __m512 x = _mm512_set1_ps(arow[r][k * cs]);
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++)
                acc[r][v] = _mm512_fmadd_ps(x, bv[v], acc[r][v]);
        }
    }
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        if (r >= mr)
            break;
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) {
            float *p = c + r * ldc + 16 * v;
            __m512 y = _mm512_mul_ps(va, acc[r][v]);
            if (beta != 0.0f)
                y = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m[v], p), y);
            _mm512_mask_storeu_ps(p, m[v], y);
        }
    }
}

__attribute__((target("avx512f"))) static void tile(int kc, const float *a, long rs, long cs, const float *b,
                                                    long ldb, float *c, long ldc, float alpha, float beta, int mr,
                                                    int nr)
{
    if (nr == NR)
        tile_body(kc, a, rs, cs, b, ldb, c, ldc, alpha, beta, mr, NR, 0);
    else
        tile_body(kc, a, rs, cs, b, ldb, c, ldc, alpha, beta, mr, nr, 1);
}

/* The narrow tile: c[mr x nr] (mr <= NARROW_ROWS, nr <= NARROW) as tile()
   computes it, one vector of B per k (a LoRA product: x A^T, dy B, dy^T u) */
__attribute__((target("avx512f"))) static void narrow_tile(int kc, const float *a, long rs, long cs, const float *b,
                                                           long ldb, float *c, long ldc, float alpha, float beta,
                                                           int mr, int nr)
{
    const float *arow[NARROW_ROWS];
    for (int r = 0; r < NARROW_ROWS; r++)
        arow[r] = a + (r < mr ? r : 0) * rs;
    __mmask16 m = first_lanes(nr);
    __m512 acc[NARROW_ROWS];
#pragma GCC unroll 12
    for (int r = 0; r < NARROW_ROWS; r++)
        acc[r] = _mm512_setzero_ps();
    for (long k = 0; k < kc; k++, b += ldb) {
        __m512 bv = _mm512_maskz_loadu_ps(m, b);
#pragma GCC unroll 12
        for (int r = 0; r < NARROW_ROWS; r++)
            acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(arow[r][k * cs]), bv, acc[r]);
    }
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 12
    for (int r = 0; r < NARROW_ROWS; r++) {
        if (r >= mr)
            break;
        __m512 y = _mm512_mul_ps(va, acc[r]);
        if (beta != 0.0f)
            y = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m, c + r * ldc), y);
        _mm512_mask_storeu_ps(c + r * ldc, m, y);
    }
}

/* B^T's rows j < nc (each kc long, ldb apart) -> [kc][NARROW], zeros past nc */
static void pack_bt_narrow(float *q, const float *B, long ldb, int nc, int kc)
{
    for (int k = 0; k < kc; k++)
        for (int j = 0; j < NARROW; j++)
            q[(long)k * NARROW + j] = j < nc ? B[(long)j * ldb + k] : 0.0f;
}

/* ---- AVX2 with FMA (16 registers of 8): a 6 x 16 tile ---- */

#define NR_AVX2 16  /* tile columns: 2 vectors of 8 */
#define NC_AVX2 192 /* NC for AVX2: kc x NC_AVX2 is 288 KB, about half of a Zen 3
                       core's 512 KB L2 (as kc x NC of a 1 MB one) */

/* r[0..7] rows of 8 -> their transpose */
__attribute__((target("avx2"))) static inline void transpose8(__m256 *r)
{
    __m256 t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* u[4h + c] holds rows 4h..4h+3 of columns c (low half) and c + 4 */
    for (int h = 0; h < 2; h++) {
        u[4 * h] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0x44);
        u[4 * h + 1] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0xee);
        u[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
        u[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xee);
    }
    for (int c = 0; c < 4; c++) {
        r[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
        r[c + 4] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
    }
}

/* pack_bt with panels of NR_AVX2 columns */
__attribute__((target("avx2"))) static void pack_bt_avx2(float *q, const float *B, long ldb, int nc, int kc)
{
    for (int j0 = 0; j0 < nc; j0 += NR_AVX2) {
        float *panel = q + (long)j0 * kc;
        for (int jb = j0; jb < j0 + NR_AVX2; jb += 8) {
            float *dst = panel + (jb - j0);
            int k = 0;
            for (; k + 8 <= kc; k += 8) {
                __m256 r[8];
                for (int j = 0; j < 8; j++)
                    r[j] = jb + j < nc ? _mm256_loadu_ps(B + (long)(jb + j) * ldb + k) : _mm256_setzero_ps();
                transpose8(r);
                for (int j = 0; j < 8; j++)
                    _mm256_store_ps(dst + (long)(k + j) * NR_AVX2, r[j]);
            }
            for (; k < kc; k++)
                for (int j = 0; j < 8; j++)
                    dst[(long)k * NR_AVX2 + j] = jb + j < nc ? B[(long)(jb + j) * ldb + k] : 0.0f;
        }
    }
}

/* pack_b with panels of NR_AVX2 columns */
__attribute__((target("avx2"))) static void pack_b_avx2(float *q, const float *B, long ldb, int nc, int kc)
{
    for (int j0 = 0; j0 < nc; j0 += NR_AVX2) {
        float *panel = q + (long)j0 * kc;
        __m256i m0 = lf_avx2_lanes(nc - j0), m1 = lf_avx2_lanes(nc - j0 - 8);
        for (int k = 0; k < kc; k++) {
            _mm256_store_ps(panel + (long)k * NR_AVX2, _mm256_maskload_ps(B + (long)k * ldb + j0, m0));
            _mm256_store_ps(panel + (long)k * NR_AVX2 + 8, _mm256_maskload_ps(B + (long)k * ldb + j0 + 8, m1));
        }
    }
}

/* pack_at in plain C (the compiler's moves of 6 floats; AMD's masked
   stores are microcoded and slow), 16 rows of A at a time: each panel's
   16 x 6 floats are 6 whole cache lines written together, where a row at
   a time wrote 24 bytes to every panel in turn (measured in place as the
   header says, over 3 runs: the weight gradients' products 1-5% faster,
   the head's dlogits^T x 3-7%) */
static void pack_at_c(float *q, const float *A, long lda, int mc, int kc)
{
    for (int k0 = 0; k0 < kc; k0 += 16) {
        int k1 = k0 + 16 < kc ? k0 + 16 : kc;
        for (int i = 0; i < mc; i += MR) {
            float *dst = q + (long)i * kc;
            if (mc - i >= MR)
                for (int k = k0; k < k1; k++)
                    memcpy(dst + k * MR, A + (long)k * lda + i, MR * sizeof *dst);
            else
                for (int k = k0; k < k1; k++)
                    for (int r = 0; r < MR; r++)
                        dst[k * MR + r] = i + r < mc ? A[(long)k * lda + i + r] : 0.0f;
        }
    }
}

/* tile_body's 6 x 16 form: per k, 2 vector loads of b and 6 broadcasts of
   a into 12 accumulators (of 16 registers) */
__attribute__((target("avx2,fma"), always_inline)) static inline void
tile_avx2_body(int kc, const float *a, long rs, long cs, const float *b, long ldb, float *c, long ldc, float alpha,
               float beta, int mr, int nr, const int partial)
{
    const float *arow[MR];
    for (int r = 0; r < MR; r++)
        arow[r] = a + (r < mr ? r : 0) * rs; /* rows past mr repeat row 0, and are not stored */
    __m256i m0 = lf_avx2_lanes(nr), m1 = lf_avx2_lanes(nr - 8);
    __m256 acc[MR][2];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        acc[r][0] = acc[r][1] = _mm256_setzero_ps();
        /* C's lines, which are written at the end: far in memory when C is
           an activation last touched a step ago */
        const float *cr = c + (r < mr ? r : 0) * ldc;
        _mm_prefetch((const char *)cr, _MM_HINT_T0);
        _mm_prefetch((const char *)(cr + nr - 1), _MM_HINT_T0);
    }
#pragma GCC unroll 2
    for (long k = 0; k < kc; k++, b += ldb) {
        __m256 b0 = partial ? _mm256_maskload_ps(b, m0) : _mm256_loadu_ps(b);
        __m256 b1 = partial ? _mm256_maskload_ps(b + 8, m1) : _mm256_loadu_ps(b + 8);
        _mm_prefetch((const char *)(b + 8 * ldb), _MM_HINT_T0);
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            __m256 x = _mm256_broadcast_ss(arow[r] + k * cs);
            acc[r][0] = _mm256_fmadd_ps(x, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(x, b1, acc[r][1]);
        }
    }
    __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        if (r >= mr)
            break;
        float *p = c + r * ldc;
        __m256 y0 = _mm256_mul_ps(va, acc[r][0]), y1 = _mm256_mul_ps(va, acc[r][1]);
        if (beta != 0.0f) {
            y0 = _mm256_fmadd_ps(vb, partial ? _mm256_maskload_ps(p, m0) : _mm256_loadu_ps(p), y0);
            y1 = _mm256_fmadd_ps(vb, partial ? _mm256_maskload_ps(p + 8, m1) : _mm256_loadu_ps(p + 8), y1);
        }
        if (partial) { /* through memory: AMD's masked stores are microcoded and slow */
            float row[NR_AVX2];
            _mm256_storeu_ps(row, y0);
            _mm256_storeu_ps(row + 8, y1);
            memcpy(p, row, (size_t)nr * sizeof *p);
        } else {
            _mm256_storeu_ps(p, y0);
            _mm256_storeu_ps(p + 8, y1);
        }
    }
}

__attribute__((target("avx2,fma"))) static void tile_avx2(int kc, const float *a, long rs, long cs, const float *b,
                                                          long ldb, float *c, long ldc, float alpha, float beta,
                                                          int mr, int nr)
{
    if (nr == NR_AVX2)
        tile_avx2_body(kc, a, rs, cs, b, ldb, c, ldc, alpha, beta, mr, NR_AVX2, 0);
    else
        tile_avx2_body(kc, a, rs, cs, b, ldb, c, ldc, alpha, beta, mr, nr, 1);
}

struct gemm {
    int avx512;  /* else AVX2 */
    int nr;      /* the tile's columns: NR or NR_AVX2 */
    int nc;      /* B's columns packed at a time: NC or NC_AVX2 */
    int ta, tb, pack_b_rows, K;
    float alpha, beta;
    const float *A, *B;
    long lda, ldb, ldc;
    float *C;
    const float *panels; /* B packed beforehand (lf_cpu_packed_b), or NULL */
    long npad;           /* its columns, rounded up to whole panels */
};

/* Each thread's packing buffers, made on its first product and freed when
   the thread ends (libgomp ends threads when a team shrinks); a calling
   thread's B packed whole for a product in chunks (grown as needed) */
struct pack_buffers {
    float *a, *b;
    float *whole_b;
    long whole_b_floats;
};
static __thread struct pack_buffers buffers;
static pthread_key_t buffers_key;
static pthread_once_t buffers_once = PTHREAD_ONCE_INIT;

static void buffers_free(void *p)
{
    struct pack_buffers *pb = p;
    free(pb->a);
    free(pb->b);
    free(pb->whole_b);
    pb->a = pb->b = pb->whole_b = NULL;
    pb->whole_b_floats = 0;
}

static void buffers_key_make(void)
{
    if (pthread_key_create(&buffers_key, buffers_free) != 0)
        abort();
}

/* NULL: out of memory */
static struct pack_buffers *thread_buffers(void)
{
    if (buffers.a)
        return &buffers;
    pthread_once(&buffers_once, buffers_key_make);
    buffers.a = aligned_alloc(64, sizeof(float) * KC * (MC + MR));
    buffers.b = aligned_alloc(64, sizeof(float) * KC * (NC + NR));
    if (!buffers.a || !buffers.b || pthread_setspecific(buffers_key, &buffers) != 0) {
        buffers_free(&buffers);
        return NULL;
    }
    return &buffers;
}

/* K's blocks: equal ones of at most KC */
static int k_step(int K)
{
    int blocks = (K + KC - 1) / KC;
    return (K + blocks - 1) / blocks;
}

/* N columns rounded up to whole panels of the tile's nr */
static long panels_width(int N, int nr)
{
    return (N + nr - 1) / nr * (long)nr;
}

/* Thread t of nt's share [*lo, *hi) of n, in whole units of unit (the last
   cut at n) */
static void share(int n, int unit, int t, int nt, int *lo, int *hi)
{
    long units = (n + unit - 1) / unit;
    *lo = (int)(units * t / nt) * unit;
    *hi = (int)(units * (t + 1) / nt) * unit;
    if (*hi > n)
        *hi = n;
}

/* op(B)'s columns [j0, j0 + nc) of the K block at k0 (kc deep) -> q, as
   panels of the tile's width (B^T transposed into them when tb) */
static void pack_b_cols(int avx512, int tb, float *q, const float *B, long ldb, int k0, int kc, int j0, int nc)
{
    if (tb && avx512)
        pack_bt(q, B + (long)j0 * ldb + k0, ldb, nc, kc);
    else if (tb)
        pack_bt_avx2(q, B + (long)j0 * ldb + k0, ldb, nc, kc);
    else if (avx512)
        pack_b(q, B + (long)k0 * ldb + j0, ldb, nc, kc);
    else
        pack_b_avx2(q, B + (long)k0 * ldb + j0, ldb, nc, kc);
}

/* op(B) (K x N) whole -> panels: per K block, the panels of nr columns,
   each [kc][nr] (the layout gemm_block packs a block of columns into, over
   all of them), npad floats apart per row of a K block; on the caller's
   team of threads when large */
static void pack_panels(int avx512, int tb, float *panels, long npad, const float *B, long ldb, int N, int K)
{
    int nr = avx512 ? NR : NR_AVX2, kstep = k_step(K), cols = 8 * nr;
    int k_blocks = (K + kstep - 1) / kstep, col_blocks = (N + cols - 1) / cols;
    #pragma omp parallel for if ((long)N * K >= 65536)
    for (int i = 0; i < k_blocks * col_blocks; i++) {
        int k0 = i / col_blocks * kstep, j0 = i % col_blocks * cols;
        int kc = K - k0 < kstep ? K - k0 : kstep, nc = N - j0 < cols ? N - j0 : cols;
        pack_b_cols(avx512, tb, panels + (long)k0 * npad + (long)j0 * kc, B, ldb, k0, kc, j0, nc);
    }
}

/* The block of C of M rows and N columns at (i0, j0), by one thread: per
   K block, A^T's rows packed MC at a time (once: A^T is the large operand
   of a weight's gradient), and under them B's blocks of g->nc columns. */
static void gemm_block(const struct gemm *g, int i0, int M, int j0, int N, float *pa, float *pb)
{
    int kstep = k_step(g->K), nr_max = g->nr;
    int mstep = g->ta ? MC : M;
    int packed = g->tb || g->pack_b_rows || g->panels;
    for (int k0 = 0; k0 < g->K; k0 += kstep) {
        int kc = g->K - k0 < kstep ? g->K - k0 : kstep;
        float beta = k0 == 0 ? g->beta : 1.0f;
        for (int ic = 0; ic < M; ic += mstep) {
            int mc = M - ic < mstep ? M - ic : mstep;
            if (g->ta) {
                const float *at = g->A + (long)k0 * g->lda + i0 + ic;
                if (g->avx512)
                    pack_at(pa, at, g->lda, mc, kc);
                else
                    pack_at_c(pa, at, g->lda, mc, kc);
            }
            for (int jc = 0; jc < N; jc += g->nc) {
                int nc = N - jc < g->nc ? N - jc : g->nc;
                const float *b = packed ? pb : g->B + (long)k0 * g->ldb + j0 + jc;
                long ldb = packed ? nr_max : g->ldb;
                if (g->panels)
                    b = g->panels + (long)k0 * g->npad + (long)(j0 + jc) * kc;
                else if (packed)
                    pack_b_cols(g->avx512, g->tb, pb, g->B, g->ldb, k0, kc, j0 + jc, nc);
                for (int ir = 0; ir < mc; ir += MR) {
                    const float *a = g->ta ? pa + (long)ir * kc : g->A + (long)(i0 + ic + ir) * g->lda + k0;
                    long rs = g->ta ? 1 : g->lda, cs = g->ta ? MR : 1;
                    int mr = mc - ir < MR ? mc - ir : MR;
                    for (int jr = 0; jr < nc; jr += nr_max) {
                        const float *bp = packed ? b + (long)jr * kc : b + jr;
                        float *c = g->C + (long)(i0 + ic + ir) * g->ldc + j0 + jc + jr;
                        int nr = nc - jr < nr_max ? nc - jr : nr_max;
                        if (g->avx512)
                            tile(kc, a, rs, cs, bp, ldb, c, g->ldc, g->alpha, beta, mr, nr);
                        else
                            tile_avx2(kc, a, rs, cs, bp, ldb, c, g->ldc, g->alpha, beta, mr, nr);
                    }
                }
            }
        }
    }
}

/* Rows [i0, i0 + M) of a C at most NARROW wide, by one thread: A read in
   place (transposed or not), B^T packed per K block.  AVX-512: the narrow
   tile; AVX2: its own 6 x 16 tile, which is already that narrow. */
static void narrow_block(const struct gemm *g, int i0, int M, int N, float *pb)
{
    int kstep = k_step(g->K), rows = g->avx512 ? NARROW_ROWS : MR;
    long rs = g->ta ? 1 : g->lda, cs = g->ta ? g->lda : 1;
    for (int k0 = 0; k0 < g->K; k0 += kstep) {
        int kc = g->K - k0 < kstep ? g->K - k0 : kstep;
        float beta = k0 == 0 ? g->beta : 1.0f;
        const float *b = g->B + (long)k0 * g->ldb;
        long ldb = g->ldb;
        if (g->tb) {
            pack_bt_narrow(pb, g->B + k0, g->ldb, N, kc);
            b = pb, ldb = NARROW;
        }
        for (int ir = 0; ir < M; ir += rows) {
            const float *a = g->A + (long)(i0 + ir) * rs + (long)k0 * cs;
            float *c = g->C + (long)(i0 + ir) * g->ldc;
            int mr = M - ir < rows ? M - ir : rows;
            if (g->avx512)
                narrow_tile(kc, a, rs, cs, b, ldb, c, g->ldc, g->alpha, beta, mr, N);
            else
                tile_avx2(kc, a, rs, cs, b, ldb, c, g->ldc, g->alpha, beta, mr, N);
        }
    }
}

static int own_gemm_fits(int M, int N, int K)
{
    if (lf_cpu_isa() < LF_CPU_ISA_AVX2 || K < MIN_K)
        return 0;
    if (N <= NARROW)
        return M >= MIN_M_NARROW;
    return M >= MIN_M && N >= MIN_N;
}

/* Thread t of nt's share of the product: C's rows (in whole tiles) or its
   columns (in whole panels).  -1: no memory for its packing buffers. */
static int gemm_share(const struct gemm *g, int M, int N, int t, int nt)
{
    struct pack_buffers *pb = thread_buffers();
    if (!pb)
        return -1;
    int lo, hi;
    if (N <= NARROW) {
        share(M, g->avx512 ? NARROW_ROWS : MR, t, nt, &lo, &hi);
        if (lo < hi)
            narrow_block(g, lo, hi - lo, N, pb->b);
    } else if ((g->ta && M >= SPLIT_ROWS_MIN) || (N + g->nr - 1) / g->nr < nt) {
        share(M, MR, t, nt, &lo, &hi);
        if (lo < hi)
            gemm_block(g, lo, hi - lo, 0, N, pb->a, pb->b);
    } else {
        share(N, g->nr, t, nt, &lo, &hi);
        if (lo < hi)
            gemm_block(g, 0, M, lo, hi - lo, pb->a, pb->b);
    }
    return 0;
}

/* Whether g goes in chunks that the threads take as they come free
   (gemm_take_chunks) rather than in equal shares: C wider than the narrow
   tile, and either
   - B packed beforehand: with A^T packed, when there are rows enough for
     chunks of CHUNK_ROWS to go round (as gemm_packs_b_first asks; a chunk
     is rows of C over all its columns, so that no two chunks pack the
     same rows of A^T); with A read in place, when B is in one K block or
     small enough to stay in the L3 cache (each chunk reads its columns of
     B over all of K), or
   - A read in place and enough blocks of columns to go round nt threads a
     few times (a chunk is then a whole block of columns, its B packed
     once as in a share) */
static int gemm_chunked(const struct gemm *g, int M, int N, int nt)
{
    if (N <= NARROW)
        return 0;
    if (g->ta)
        return g->panels && M >= 2 * MC * nt;
    if (g->panels)
        return g->K <= KC || g->npad * g->K <= CHUNKED_PANELS_MAX;
    return (N + g->nc - 1) / g->nc >= 4 * nt;
}

/* A thread's part of a chunked product: the next chunk that no thread has
   taken (*next, shared by the team), until none is left.  A chunk is a
   block of g->nc columns (all N with A^T packed), cut in CHUNK_ROWS rows
   when B is packed beforehand (else whole, so that each block of B is
   packed once).  -1: no memory for the packing buffers. */
static int gemm_take_chunks(const struct gemm *g, int M, int N, long *next)
{
    struct pack_buffers *pb = thread_buffers();
    if (!pb)
        return -1;
    int rows = g->panels ? CHUNK_ROWS : M, row_chunks = (M + rows - 1) / rows;
    int cols = g->ta ? N : g->nc;
    long chunks = (long)row_chunks * ((N + cols - 1) / cols);
    for (;;) {
        long i;
        #pragma omp atomic capture
        i = (*next)++;
        if (i >= chunks)
            return 0;
        int i0 = (int)(i % row_chunks) * rows, j0 = (int)(i / row_chunks) * cols;
        gemm_block(g, i0, M - i0 < rows ? M - i0 : rows, j0, N - j0 < cols ? N - j0 : cols, pb->a, pb->b);
    }
}

/* The product g on the caller's team of threads (or the calling thread
   alone inside a parallel region) */
static void gemm_run(const struct gemm *g, int M, int N)
{
    int failed = 0;
    if (omp_in_parallel()) /* a thread of the caller's team: it alone */
        failed = gemm_share(g, M, N, 0, 1) < 0;
    else if (gemm_chunked(g, M, N, omp_get_max_threads())) {
        long next = 0;
        #pragma omp parallel reduction(| : failed)
        failed = gemm_take_chunks(g, M, N, &next) < 0;
    } else {
        #pragma omp parallel reduction(| : failed)
        failed = gemm_share(g, M, N, omp_get_thread_num(), omp_get_num_threads()) < 0;
    }
    if (failed) {
        fprintf(stderr, "lf_cpu_sgemm_f32: out of memory for the packing buffers\n");
        exit(1);
    }
}

/* Whether a product that packs B itself (g->panels NULL) does better to
   pack it whole first, shared by the threads, and go in chunks: where B
   fits the L3 cache (as gemm_chunked asks), C is wider than the narrow
   tile, and either
   - A^T is packed and each thread's share of rows would pack B's blocks
     twice or more (one pass per MC rows: the head's gradient dlogits^T x,
     a weight's gradient of 1024 rows), or
   - A is read in place, the product is not in chunks already, and there
     are threads to balance. */
static int gemm_packs_b_first(const struct gemm *g, int M, int N, int nt)
{
    if (N <= NARROW || panels_width(N, g->nr) * g->K > CHUNKED_PANELS_MAX)
        return 0;
    if (g->ta)
        return M >= 2 * MC * nt;
    return nt > 1 && !gemm_chunked(g, M, N, nt);
}

void lf_cpu_sgemm_f32(int ta, int tb, int M, int N, int K, float alpha, const float *A, long lda,
                      const float *B, long ldb, float beta, float *C, long ldc)
{
    if (M <= 0 || N <= 0)
        return;
    if (!own_gemm_fits(M, N, K)) {
        lf_cpu_sgemm_blas_f32(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    int avx512 = lf_cpu_isa() == LF_CPU_ISA_AVX512;
    /* AVX2: B always packed (its rows in place, read 16 wide, fell in a few
       L1 sets at most leading dimensions) */
    struct gemm g = {avx512, avx512 ? NR : NR_AVX2, avx512 ? NC : NC_AVX2, ta, tb, !tb && (!avx512 || ldb % 256 == 0),
                     K, alpha, beta, A, B, lda, ldb, ldc, C, NULL, 0};
    struct pack_buffers *pb;
    if (!omp_in_parallel() && gemm_packs_b_first(&g, M, N, omp_get_max_threads()) && (pb = thread_buffers())) {
        long npad = panels_width(N, g.nr);
        if (pb->whole_b_floats < npad * K) {
            free(pb->whole_b);
            pb->whole_b = aligned_alloc(64, sizeof(float) * npad * K);
            pb->whole_b_floats = pb->whole_b ? npad * K : 0;
        }
        if (pb->whole_b) {
            pack_panels(avx512, tb, pb->whole_b, npad, B, ldb, N, K);
            g.panels = pb->whole_b;
            g.npad = npad;
        }
    }
    gemm_run(&g, M, N);
}

/* ---- B packed once, for products against many A ---- */

int lf_cpu_packed_b_init(struct lf_cpu_packed_b *p, int tb, int N, int K, const float *B, long ldb)
{
    *p = (struct lf_cpu_packed_b){tb, N, K, B, ldb, NULL};
    /* only where lf's own product takes B through its wide tile */
    if (lf_cpu_isa() < LF_CPU_ISA_AVX2 || K < MIN_K || N < MIN_N)
        return 0;
    int nr = lf_cpu_isa() == LF_CPU_ISA_AVX512 ? NR : NR_AVX2;
    long npad = panels_width(N, nr);
    p->panels = aligned_alloc(64, sizeof(float) * npad * K);
    if (!p->panels)
        return -1;
    lf_cpu_packed_b_repack(p, B);
    return 0;
}

void lf_cpu_packed_b_repack(struct lf_cpu_packed_b *p, const float *B)
{
    p->B = B;
    if (!p->panels)
        return;
    int avx512 = lf_cpu_isa() == LF_CPU_ISA_AVX512, nr = avx512 ? NR : NR_AVX2;
    pack_panels(avx512, p->tb, p->panels, panels_width(p->N, nr), B, p->ldb, p->N, p->K);
}

void lf_cpu_packed_b_free(struct lf_cpu_packed_b *p)
{
    free(p->panels);
    p->panels = NULL;
}

void lf_cpu_sgemm_packed_f32(int ta, int M, float alpha, const float *A, long lda, const struct lf_cpu_packed_b *B,
                             float beta, float *C, long ldc)
{
    if (M <= 0 || B->N <= 0)
        return;
    if (!B->panels || !own_gemm_fits(M, B->N, B->K)) {
        lf_cpu_sgemm_f32(ta, B->tb, M, B->N, B->K, alpha, A, lda, B->B, B->ldb, beta, C, ldc);
        return;
    }
    int avx512 = lf_cpu_isa() == LF_CPU_ISA_AVX512, nr = avx512 ? NR : NR_AVX2;
    struct gemm g = {avx512, nr, avx512 ? NC : NC_AVX2, ta, B->tb, 0, B->K, alpha, beta, A, B->B, lda, B->ldb, ldc,
                     C, B->panels, panels_width(B->N, nr)};
    gemm_run(&g, M, B->N);
}

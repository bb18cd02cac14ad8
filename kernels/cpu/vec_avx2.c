/* kernels/cpu/vec_avx2.c — the AVX2 (with FMA) versions of vec.h's
 * kernels, for CPUs that have AVX2 but not AVX-512 (AMD before Zen 4,
 * Intel's client cores).  vec.c's dispatch calls them when lf_cpu_isa()
 * says AVX2; every function here is compiled with target("avx2,fma"), so
 * the build flags stay portable.  They follow vec.c's AVX-512 versions
 * with 8-float vectors and 16 registers instead of 32:
 *   - exp: the same reduction and polynomial; 2^n as two multiplications
 *     by powers of two built from their bits, as the portable lf_expf does
 *     (AVX2 has no vscalefps), so overflow and gradual underflow are IEEE's;
 *   - a long row's dot product: two accumulators over 16-float steps, the
 *     same order for one vector or four (a result has the same bits
 *     whatever M is);
 *   - short rows: 8 at a time (one register each), summed horizontally by
 *     one hadd tree shared by the 8 rows;
 *   - attention tiles: 4 query rows x 16 keys (qk) or x 16 output columns
 *     (pv), 8 accumulators in named registers;
 *   - tails: masked loads (vmaskmovps loads cost what plain loads do on
 *     Zen 3), but plain stores wherever the vector is whole: a masked
 *     store measured 4.1 ns against 0.4 ns for a plain one on this EPYC.
 * Measured here (AMD EPYC Zen 3, one thread, best of 40): one head of
 * causal attention, 512 queries over 512 keys of 64, its qk tiles in
 * 0.26 ms and pv tiles in 0.21 ms against the portable C's 14.7 and 4.6;
 * exp_sum 0.7 ns an element against 7-10 ns; exp at most 1.01 ulp from
 * exp in double on every third float in [-104, 89]. */
#include "vec.h"
#include "vec_impl.h"

#include <immintrin.h>

/* ---- helpers ---- */

/* stores lanes i < left of v at p: a plain store when that is all 8 (a
   masked store is ten times slower on Zen 3), nothing when left <= 0 */
__attribute__((target("avx2,fma"))) static inline void store_lanes(float *p, long left, __m256 v)
{
    if (left >= 8)
        _mm256_storeu_ps(p, v);
    else if (left > 0)
        _mm256_maskstore_ps(p, lf_avx2_lanes(left), v);
}

/* the sum of v's 8 lanes: halves, then pairs, then the last two */
__attribute__((target("avx2,fma"))) static inline float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ---- exp ---- */

__attribute__((target("avx2,fma"))) static inline __m256 exp_avx2(__m256 x)
{
    __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    /* max and min return their second operand for a NaN: xc is never NaN */
    __m256 xc = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(EXP_LO)), _mm256_set1_ps(EXP_HI));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(EXP_LOG2E)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_C1), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_C2), r);
    __m256 p = _mm256_set1_ps(EXP_P0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P5));
    __m256 y = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
    /* y * 2^n1 * 2^n2 with n1 = n >> 1 and n2 = n - n1, both within
       [-75, 64], so each power of two is a normal float made from its
       exponent bits; y * 2^n1 is exact (normal), the second product
       rounds once, into the subnormals or to inf as IEEE does */
    __m256i ni = _mm256_cvtps_epi32(n), bias = _mm256_set1_epi32(127);
    __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    y = _mm256_mul_ps(_mm256_mul_ps(y, s1), s2);
    return _mm256_blendv_ps(y, x, nan);
}

/* ---- dot products ---- */

/* one row against one vector, front to back: two accumulators over
   16-float steps, then one 8-float step into the first, then a masked
   tail into the second (dot4_avx2 keeps exactly this order) */
__attribute__((target("avx2,fma"))) static float dot1_avx2(const float *w, const float *x, int K)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k), _mm256_loadu_ps(x + k), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k + 8), _mm256_loadu_ps(x + k + 8), a1);
    }
    if (k + 8 <= K) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k), _mm256_loadu_ps(x + k), a0);
        k += 8;
    }
    if (k < K) {
        __m256i m = lf_avx2_lanes(K - k);
        a1 = _mm256_fmadd_ps(_mm256_maskload_ps(w + k, m), _mm256_maskload_ps(x + k, m), a1);
    }
    return hsum(_mm256_add_ps(a0, a1));
}

/* dot1_avx2 for four vectors x0..x3 against one row w, each with the same
   accumulators and order as dot1_avx2, w loaded once (8 accumulators and
   2 of w: 10 of the 16 registers) */
__attribute__((target("avx2,fma"))) static void dot4_avx2(float *out, long ldo, const float *w, const float *x,
                                                          long ldx, int K)
{
    const float *x0 = x, *x1 = x + ldx, *x2 = x1 + ldx, *x3 = x2 + ldx;
    __m256 z = _mm256_setzero_ps(), a00 = z, a01 = z, a10 = z, a11 = z, a20 = z, a21 = z, a30 = z, a31 = z;
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        __m256 w0 = _mm256_loadu_ps(w + k), w1 = _mm256_loadu_ps(w + k + 8);
        a00 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x0 + k), a00);
        a01 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x0 + k + 8), a01);
        a10 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x1 + k), a10);
        a11 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x1 + k + 8), a11);
        a20 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x2 + k), a20);
        a21 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x2 + k + 8), a21);
        a30 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x3 + k), a30);
        a31 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x3 + k + 8), a31);
    }
    if (k + 8 <= K) {
        __m256 w0 = _mm256_loadu_ps(w + k);
        a00 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x0 + k), a00);
        a10 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x1 + k), a10);
        a20 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x2 + k), a20);
        a30 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x3 + k), a30);
        k += 8;
    }
    if (k < K) {
        __m256i m = lf_avx2_lanes(K - k);
        __m256 w0 = _mm256_maskload_ps(w + k, m);
        a01 = _mm256_fmadd_ps(w0, _mm256_maskload_ps(x0 + k, m), a01);
        a11 = _mm256_fmadd_ps(w0, _mm256_maskload_ps(x1 + k, m), a11);
        a21 = _mm256_fmadd_ps(w0, _mm256_maskload_ps(x2 + k, m), a21);
        a31 = _mm256_fmadd_ps(w0, _mm256_maskload_ps(x3 + k, m), a31);
    }
    out[0] = hsum(_mm256_add_ps(a00, a01));
    out[ldo] = hsum(_mm256_add_ps(a10, a11));
    out[2 * ldo] = hsum(_mm256_add_ps(a20, a21));
    out[3 * ldo] = hsum(_mm256_add_ps(a30, a31));
}

__attribute__((target("avx2,fma"))) void lf_avx2_dot_rows(float *out, long ldo, const float *w, long ldw,
                                                          const float *x, long ldx, int M, int rows, int K)
{
    for (int r = 0; r < rows; r++) {
        const float *wr = w + (long)r * ldw;
        int m = 0;
        for (; m + 4 <= M; m += 4)
            dot4_avx2(out + (long)m * ldo + r, ldo, wr, x + (long)m * ldx, ldx, K);
        for (; m < M; m++)
            out[(long)m * ldo + r] = dot1_avx2(wr, x + (long)m * ldx, K);
    }
}

/* Short rows (attention's keys, head_dim long), 8 at a time: row j's
   products go to the 8 lanes of accumulator v[j] (8 accumulators and x
   fit the 16 registers; 16 rows would not), and one tree of hadds sums
   all 8 at once, leaving row j's sum in lane j; every row's lanes are
   added in the same order, ((0+1) + (2+3)) + ((4+5) + (6+7)).  A block
   short of 8 rows reads its last row for the missing ones and does not
   store them; each row's sum depends on that row alone. */
__attribute__((target("avx2,fma"))) void lf_avx2_dot_short_rows(float *out, const float *w, long ldw, const float *x,
                                                                int rows, int K)
{
    for (int r0 = 0; r0 < rows; r0 += 8) {
        int nr = rows - r0 < 8 ? rows - r0 : 8;
        const float *wr[8];
        __m256 v[8];
        #pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            wr[j] = w + (long)(r0 + (j < nr ? j : nr - 1)) * ldw;
            v[j] = _mm256_setzero_ps();
        }
        for (int j = 0; j < 8; j++)
            for (int k = 0; k < K; k += 16)
                _mm_prefetch((const char *)(w + (long)(r0 + PREFETCH_ROWS + j) * ldw + k), _MM_HINT_T0);
        int k = 0;
        for (; k + 8 <= K; k += 8) {
            __m256 xk = _mm256_loadu_ps(x + k);
            #pragma GCC unroll 8
            for (int j = 0; j < 8; j++)
                v[j] = _mm256_fmadd_ps(_mm256_loadu_ps(wr[j] + k), xk, v[j]);
        }
        if (k < K) {
            __m256i m = lf_avx2_lanes(K - k);
            __m256 xk = _mm256_maskload_ps(x + k, m);
            #pragma GCC unroll 8
            for (int j = 0; j < 8; j++)
                v[j] = _mm256_fmadd_ps(_mm256_maskload_ps(wr[j] + k, m), xk, v[j]);
        }
        /* hadd(a, b) = a0+a1, a2+a3, b0+b1, b2+b3, then the same of lanes
           4-7: after two rounds u0 holds rows 0-3's lanes 0-3 in its low
           half and their lanes 4-7 in its high half (u1: rows 4-7) */
        __m256 t0 = _mm256_hadd_ps(v[0], v[1]), t1 = _mm256_hadd_ps(v[2], v[3]);
        __m256 t2 = _mm256_hadd_ps(v[4], v[5]), t3 = _mm256_hadd_ps(v[6], v[7]);
        __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
        __m256 sum = _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
        store_lanes(out + r0, nr, sum);
    }
}

/* ---- row sums, norms, axpy ---- */

/* columns in chunks of 32 held in four registers over all the rows */
__attribute__((target("avx2,fma"))) void lf_avx2_weighted_rows(float *out, const float *p, const float *v, long ldv,
                                                               int rows, int n, int acc)
{
    for (int j = 0; j < n; j += 32) {
        __m256i m0 = lf_avx2_lanes(n - j), m1 = lf_avx2_lanes(n - j - 8);
        __m256i m2 = lf_avx2_lanes(n - j - 16), m3 = lf_avx2_lanes(n - j - 24);
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        if (acc) {
            a0 = _mm256_maskload_ps(out + j, m0);
            a1 = _mm256_maskload_ps(out + j + 8, m1);
            a2 = _mm256_maskload_ps(out + j + 16, m2);
            a3 = _mm256_maskload_ps(out + j + 24, m3);
        }
        for (int r = 0; r < rows; r++) {
            const float *vr = v + (long)r * ldv + j;
            for (int c = 0; c < 32 && c < n - j; c += 16)
                _mm_prefetch((const char *)(vr + PREFETCH_ROWS * ldv + c), _MM_HINT_T0);
            __m256 pr = _mm256_set1_ps(p[r]);
            a0 = _mm256_fmadd_ps(pr, _mm256_maskload_ps(vr, m0), a0);
            a1 = _mm256_fmadd_ps(pr, _mm256_maskload_ps(vr + 8, m1), a1);
            a2 = _mm256_fmadd_ps(pr, _mm256_maskload_ps(vr + 16, m2), a2);
            a3 = _mm256_fmadd_ps(pr, _mm256_maskload_ps(vr + 24, m3), a3);
        }
        store_lanes(out + j, n - j, a0);
        store_lanes(out + j + 8, n - j - 8, a1);
        store_lanes(out + j + 16, n - j - 16, a2);
        store_lanes(out + j + 24, n - j - 24, a3);
    }
}

__attribute__((target("avx2,fma"))) float lf_avx2_sumsq(const float *x, int n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
        a0 = _mm256_fmadd_ps(v0, v0, a0);
        a1 = _mm256_fmadd_ps(v1, v1, a1);
    }
    for (; i < n; i += 8) {
        __m256 v = _mm256_maskload_ps(x + i, lf_avx2_lanes(n - i));
        a0 = _mm256_fmadd_ps(v, v, a0);
    }
    return hsum(_mm256_add_ps(a0, a1));
}

__attribute__((target("avx2,fma"))) void lf_avx2_norm_apply(float *out, const float *x, float r, const float *w,
                                                            float offset, int n)
{
    __m256 rv = _mm256_set1_ps(r), ov = _mm256_set1_ps(offset);
    for (int i = 0; i < n; i += 8) {
        __m256i m = lf_avx2_lanes(n - i);
        __m256 v = _mm256_mul_ps(_mm256_maskload_ps(x + i, m), rv);
        store_lanes(out + i, n - i, _mm256_mul_ps(v, _mm256_add_ps(_mm256_maskload_ps(w + i, m), ov)));
    }
}

__attribute__((target("avx2,fma"))) void lf_avx2_rmsnorm_bwd_row(float *dx, const float *g, const float *x,
                                                                 const float *w, float offset, float r, int n)
{
    __m256 ov = _mm256_set1_ps(offset), a0 = _mm256_setzero_ps(), a1 = a0;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 gw0 = _mm256_mul_ps(_mm256_loadu_ps(g + i), _mm256_add_ps(_mm256_loadu_ps(w + i), ov));
        __m256 gw1 = _mm256_mul_ps(_mm256_loadu_ps(g + i + 8), _mm256_add_ps(_mm256_loadu_ps(w + i + 8), ov));
        a0 = _mm256_fmadd_ps(gw0, _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(gw1, _mm256_loadu_ps(x + i + 8), a1);
    }
    for (; i < n; i += 8) {
        __m256i m = lf_avx2_lanes(n - i);
        __m256 gw = _mm256_mul_ps(_mm256_maskload_ps(g + i, m), _mm256_add_ps(_mm256_maskload_ps(w + i, m), ov));
        a0 = _mm256_fmadd_ps(gw, _mm256_maskload_ps(x + i, m), a0);
    }
    float c = hsum(_mm256_add_ps(a0, a1)) * r * r * r / (float)n;
    __m256 rv = _mm256_set1_ps(r), cv = _mm256_set1_ps(c);
    for (i = 0; i < n; i += 8) {
        __m256i m = lf_avx2_lanes(n - i);
        __m256 gw = _mm256_mul_ps(_mm256_maskload_ps(g + i, m), _mm256_add_ps(_mm256_maskload_ps(w + i, m), ov));
        __m256 d = _mm256_fmsub_ps(rv, gw, _mm256_mul_ps(_mm256_maskload_ps(x + i, m), cv));
        store_lanes(dx + i, n - i, _mm256_add_ps(_mm256_maskload_ps(dx + i, m), d));
    }
}

__attribute__((target("avx2,fma"))) void lf_avx2_mul_axpy(float *y, const float *a, const float *b, float s, int n)
{
    __m256 sv = _mm256_set1_ps(s);
    for (int i = 0; i < n; i += 8) {
        __m256i m = lf_avx2_lanes(n - i);
        __m256 ab = _mm256_mul_ps(_mm256_maskload_ps(a + i, m), _mm256_maskload_ps(b + i, m));
        store_lanes(y + i, n - i, _mm256_fmadd_ps(ab, sv, _mm256_maskload_ps(y + i, m)));
    }
}

__attribute__((target("avx2,fma"))) void lf_avx2_axpy(float *y, float a, const float *x, int n)
{
    __m256 av = _mm256_set1_ps(a);
    for (int i = 0; i < n; i += 8) {
        __m256i m = lf_avx2_lanes(n - i);
        __m256 yv = _mm256_maskload_ps(y + i, m);
        store_lanes(y + i, n - i, _mm256_fmadd_ps(av, _mm256_maskload_ps(x + i, m), yv));
    }
}

__attribute__((target("avx2,fma"))) void lf_avx2_scale(float *x, float a, int n)
{
    __m256 av = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, _mm256_mul_ps(av, _mm256_loadu_ps(x + i)));
    if (i < n)
        store_lanes(x + i, n - i, _mm256_mul_ps(av, _mm256_maskload_ps(x + i, lf_avx2_lanes(n - i))));
}

/* ---- exp's users ---- */

__attribute__((target("avx2,fma"))) float lf_avx2_exp_sum(float *x, int n, float sub)
{
    __m256 s = _mm256_set1_ps(sub), acc = _mm256_setzero_ps();
    int i = 0;
    /* four vectors at a time: one exp is a chain of ~20 dependent steps,
       and four side by side keep the FMA units busy (a 32000-float row
       15% faster, measured in a loop; the sum keeps its order) */
    for (; i + 32 <= n; i += 32) {
        __m256 e0 = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i), s));
        __m256 e1 = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), s));
        __m256 e2 = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i + 16), s));
        __m256 e3 = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i + 24), s));
        _mm256_storeu_ps(x + i, e0);
        _mm256_storeu_ps(x + i + 8, e1);
        _mm256_storeu_ps(x + i + 16, e2);
        _mm256_storeu_ps(x + i + 24, e3);
        acc = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(_mm256_add_ps(acc, e0), e1), e2), e3);
    }
    for (; i < n; i += 8) {
        __m256i m = lf_avx2_lanes(n - i);
        __m256 e = exp_avx2(_mm256_sub_ps(_mm256_maskload_ps(x + i, m), s));
        store_lanes(x + i, n - i, e);
        /* lanes past n (exp(-sub), maybe inf) add nothing */
        acc = _mm256_add_ps(acc, _mm256_and_ps(e, _mm256_castsi256_ps(m)));
    }
    return hsum(acc);
}

/* silu(g) u for one vector, and its two gradients */
__attribute__((target("avx2,fma"), always_inline)) static inline __m256 silu_mul8(__m256 g, __m256 u)
{
    __m256 e = exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), g));
    return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), u);
}

__attribute__((target("avx2,fma"), always_inline)) static inline void silu_mul_bwd8(__m256 *dg, __m256 *du, __m256 d,
                                                                                 __m256 g, __m256 u)
{
    __m256 one = _mm256_set1_ps(1.0f);
    __m256 sg = _mm256_div_ps(one, _mm256_add_ps(one, exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), g))));
    __m256 dy = _mm256_mul_ps(sg, _mm256_add_ps(one, _mm256_mul_ps(g, _mm256_sub_ps(one, sg))));
    *dg = _mm256_mul_ps(_mm256_mul_ps(d, u), dy);
    *du = _mm256_mul_ps(d, _mm256_mul_ps(g, sg));
}

/* Both take two vectors at a time where they can, as exp_sum four: each
   is a long chain of dependent steps with a division in it (on a Zen 3,
   a million floats: silu_mul 1.9x as fast as one at a time, its gradient
   1.6x; the same bits). */
__attribute__((target("avx2,fma"))) void lf_avx2_silu_mul(float *out, const float *gate, const float *up, long n)
{
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 y0 = silu_mul8(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i));
        __m256 y1 = silu_mul8(_mm256_loadu_ps(gate + i + 8), _mm256_loadu_ps(up + i + 8));
        _mm256_storeu_ps(out + i, y0);
        _mm256_storeu_ps(out + i + 8, y1);
    }
    for (; i < n; i += 8) {
        __m256i m = lf_avx2_lanes(n - i);
        store_lanes(out + i, n - i, silu_mul8(_mm256_maskload_ps(gate + i, m), _mm256_maskload_ps(up + i, m)));
    }
}

__attribute__((target("avx2,fma"))) void lf_avx2_silu_mul_bwd(float *dgate, float *dup, const float *dout,
                                                              const float *gate, const float *up, long n)
{
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 dg0, du0, dg1, du1;
        silu_mul_bwd8(&dg0, &du0, _mm256_loadu_ps(dout + i), _mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i));
        silu_mul_bwd8(&dg1, &du1, _mm256_loadu_ps(dout + i + 8), _mm256_loadu_ps(gate + i + 8),
                      _mm256_loadu_ps(up + i + 8));
        _mm256_storeu_ps(dgate + i, dg0);
        _mm256_storeu_ps(dgate + i + 8, dg1);
        _mm256_storeu_ps(dup + i, du0);
        _mm256_storeu_ps(dup + i + 8, du1);
    }
    for (; i < n; i += 8) {
        __m256i m = lf_avx2_lanes(n - i);
        __m256 dg, du;
        silu_mul_bwd8(&dg, &du, _mm256_maskload_ps(dout + i, m), _mm256_maskload_ps(gate + i, m),
                      _mm256_maskload_ps(up + i, m));
        store_lanes(dgate + i, n - i, dg);
        store_lanes(dup + i, n - i, du);
    }
}

/* ---- attention tiles ---- */

/* The two tiles' product: out[r][j] = scale sum over k < kn of a_r[k]
   b[k][j] for 4 rows of a (lda apart) and the n columns of b (ldb apart),
   16 columns per step: 8 accumulators, 2 vectors of b and a broadcast
   element of a (11 of the 16 registers); rows past nr repeat row 0 and are
   not stored */
__attribute__((target("avx2,fma"))) static void rows4_product(float *out, long ldo, const float *a, long lda, int nr,
                                                              const float *b, long ldb, int n, int kn, float scale)
{
    const float *a0 = a, *a1 = nr > 1 ? a + lda : a, *a2 = nr > 2 ? a + 2 * lda : a, *a3 = nr > 3 ? a + 3 * lda : a;
    __m256 sv = _mm256_set1_ps(scale);
    for (int j = 0; j < n; j += 16) {
        __m256i m0 = lf_avx2_lanes(n - j), m1 = lf_avx2_lanes(n - j - 8);
        __m256 z = _mm256_setzero_ps(), c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z, c30 = z, c31 = z;
        const float *bp = b + j;
        for (int k = 0; k < kn; k++, bp += ldb) {
            __m256 b0 = _mm256_maskload_ps(bp, m0), b1 = _mm256_maskload_ps(bp + 8, m1);
            __m256 x = _mm256_set1_ps(a0[k]);
            c00 = _mm256_fmadd_ps(x, b0, c00);
            c01 = _mm256_fmadd_ps(x, b1, c01);
            x = _mm256_set1_ps(a1[k]);
            c10 = _mm256_fmadd_ps(x, b0, c10);
            c11 = _mm256_fmadd_ps(x, b1, c11);
            x = _mm256_set1_ps(a2[k]);
            c20 = _mm256_fmadd_ps(x, b0, c20);
            c21 = _mm256_fmadd_ps(x, b1, c21);
            x = _mm256_set1_ps(a3[k]);
            c30 = _mm256_fmadd_ps(x, b0, c30);
            c31 = _mm256_fmadd_ps(x, b1, c31);
        }
        store_lanes(out + j, n - j, _mm256_mul_ps(c00, sv));
        store_lanes(out + j + 8, n - j - 8, _mm256_mul_ps(c01, sv));
        if (nr > 1) {
            store_lanes(out + ldo + j, n - j, _mm256_mul_ps(c10, sv));
            store_lanes(out + ldo + j + 8, n - j - 8, _mm256_mul_ps(c11, sv));
        }
        if (nr > 2) {
            store_lanes(out + 2 * ldo + j, n - j, _mm256_mul_ps(c20, sv));
            store_lanes(out + 2 * ldo + j + 8, n - j - 8, _mm256_mul_ps(c21, sv));
        }
        if (nr > 3) {
            store_lanes(out + 3 * ldo + j, n - j, _mm256_mul_ps(c30, sv));
            store_lanes(out + 3 * ldo + j + 8, n - j - 8, _mm256_mul_ps(c31, sv));
        }
    }
}

/* 4 query rows x 16 keys per step, over the head's d features */
__attribute__((target("avx2,fma"))) void lf_avx2_qk_tile(float *sc, long lds, const float *q, long ldq, int nr,
                                                         const float *kt, long ldt, int n, int d, float scale)
{
    rows4_product(sc, lds, q, ldq, nr, kt, ldt, n, d, scale);
}

/* 4 rows x 16 columns of the output per step, over all n keys (times 1:
   the same bits as none) */
__attribute__((target("avx2,fma"))) void lf_avx2_pv_tile(float *out, long ldo, const float *p, long ldp, int nr,
                                                         const float *v, long ldv, int n, int d)
{
    rows4_product(out, ldo, p, ldp, nr, v, ldv, d, n, 1.0f);
}

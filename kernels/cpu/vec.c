/* kernels/cpu/vec.c — the single-threaded vector building blocks of
 * vec.h: an AVX-512 version of each (functions compiled with
 * target("avx512f"), chosen at run time), the portable C one, and the
 * dispatch between them and vec_avx2.c's AVX2 versions.
 *
 * exp: x = n ln2 + r with n = rint(x / ln2) and |r| <= ln2 / 2 (ln2 in two
 * parts, Cody and Waite), exp(r) by Cephes' expf polynomial (relative error
 * 1.7e-7 on that interval), times 2^n with one rounding (vscalefps; in C
 * and AVX2 two multiplications by powers of two in the normal range) so
 * that overflow and gradual underflow come out as IEEE arithmetic gives
 * them.  Measured against exp in double on every third float in
 * [-104, 89]: at most 1.01 ulp (AVX-512 and AVX2) and 0.98 ulp (portable).
 *
 * Dot products of long rows (matrix-vector): one row front to back per
 * call with four accumulators (one stream per thread is what the hardware
 * prefetcher follows best); several vectors against one row share its
 * loads.  Short rows (a query against its keys): 16 rows at once, whose
 * final horizontal sums share one shuffle tree, which would otherwise cost
 * as much as the products.  Attention tiles keep their accumulators in
 * named registers (an array indexed at run time would live in memory;
 * fully unrolled loops over a small array are the same). */
#include "vec.h"
#include "vec_impl.h"

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- which instruction set ---- */

static int forced_isa = -1, best_isa = -1; /* read and written atomically */

static int cpu_best_isa(void)
{
    int best = __atomic_load_n(&best_isa, __ATOMIC_RELAXED);
    if (best < 0) { /* every thread that gets here computes the same */
        __builtin_cpu_init(); /* libgcc checks that the OS saves the AVX state too */
        best = __builtin_cpu_supports("avx512f")                                   ? LF_CPU_ISA_AVX512
               : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? LF_CPU_ISA_AVX2
                                                                                   : LF_CPU_ISA_PORTABLE;
        const char *env = getenv("LF_CPU_ISA");
        for (int isa = LF_CPU_ISA_PORTABLE; env && isa < best; isa++)
            if (!strcmp(env, lf_cpu_isa_name(isa)))
                best = isa;
        __atomic_store_n(&best_isa, best, __ATOMIC_RELAXED);
    }
    return best;
}

const char *lf_cpu_isa_name(int isa)
{
    return isa == LF_CPU_ISA_AVX512 ? "avx512" : isa == LF_CPU_ISA_AVX2 ? "avx2" : "portable";
}

int lf_cpu_isa(void)
{
    int best = cpu_best_isa(), forced = __atomic_load_n(&forced_isa, __ATOMIC_RELAXED);
    return forced >= 0 && forced < best ? forced : best;
}

void lf_cpu_set_isa(int isa)
{
    __atomic_store_n(&forced_isa, isa, __ATOMIC_RELAXED);
}

/* ---- portable C ---- */

static float pow2i(int n) /* 2^n for -126 <= n <= 127 */
{
    uint32_t u = (uint32_t)(n + 127) << 23;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float lf_expf(float x)
{
    if (x != x)
        return x;
    x = x > EXP_HI ? EXP_HI : x < EXP_LO ? EXP_LO : x;
    float n = (x * EXP_LOG2E + ROUND_MAGIC) - ROUND_MAGIC;
    float r = x - n * EXP_C1;
    r = r - n * EXP_C2;
    float p = EXP_P0;
    p = p * r + EXP_P1;
    p = p * r + EXP_P2;
    p = p * r + EXP_P3;
    p = p * r + EXP_P4;
    p = p * r + EXP_P5;
    float y = p * (r * r) + r + 1.0f;
    int ni = (int)n, n1 = ni >> 1, n2 = ni - n1; /* both within [-75, 64] */
    return y * pow2i(n1) * pow2i(n2);
}

static float dot_portable(const float *w, const float *x, int K)
{
    float acc[16] = { 0 };
    int k = 0;
    for (; k + 16 <= K; k += 16)
        for (int j = 0; j < 16; j++)
            acc[j] += w[k + j] * x[k + j];
    for (int j = 0; k + j < K; j++)
        acc[j] += w[k + j] * x[k + j];
    for (int s = 8; s > 0; s /= 2)
        for (int j = 0; j < s; j++)
            acc[j] += acc[j + s];
    return acc[0];
}

/* ---- AVX-512 ---- */

__attribute__((target("avx512f"))) static inline __m512 exp_avx512(__m512 x)
{
    __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    __m512 xc = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(EXP_LO)), _mm512_set1_ps(EXP_HI));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(EXP_LOG2E)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_C1), xc);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_C2), r);
    __m512 p = _mm512_set1_ps(EXP_P0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P5));
    __m512 y = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
    /* y * 2^n, one rounding, overflow and gradual underflow as IEEE */
    y = _mm512_scalef_ps(y, n);
    return _mm512_mask_blend_ps(nan, y, x);
}

__attribute__((target("avx512f"))) static inline __mmask16 tail_mask(int left)
{
    return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
}

/* one row, read front to back (one stream per thread is what the
   hardware prefetcher follows best: rows side by side measured slower):
   four accumulators over 64-float steps, then 16-float steps, then a
   masked tail */
__attribute__((target("avx512f"))) static float dot1_avx512(const float *w, const float *x, int K)
{
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int k = 0;
    for (; k + 64 <= K; k += 64) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + k), _mm512_loadu_ps(x + k), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + k + 16), _mm512_loadu_ps(x + k + 16), a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(w + k + 32), _mm512_loadu_ps(x + k + 32), a2);
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(w + k + 48), _mm512_loadu_ps(x + k + 48), a3);
    }
    for (; k + 16 <= K; k += 16)
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + k), _mm512_loadu_ps(x + k), a0);
    if (k < K) {
        __mmask16 m = tail_mask(K - k);
        a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w + k), _mm512_maskz_loadu_ps(m, x + k), a1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

/* dot1_avx512 for four vectors x0..x3 against one row w, each with the
   same accumulators and order as dot1_avx512, w loaded once */
__attribute__((target("avx512f"))) static void dot4_avx512(float *out, long ldo, const float *w, const float *x,
                                                           long ldx, int K)
{
    const float *x0 = x, *x1 = x + ldx, *x2 = x1 + ldx, *x3 = x2 + ldx;
    __m512 z = _mm512_setzero_ps();
    __m512 a00 = z, a01 = z, a02 = z, a03 = z, a10 = z, a11 = z, a12 = z, a13 = z;
    __m512 a20 = z, a21 = z, a22 = z, a23 = z, a30 = z, a31 = z, a32 = z, a33 = z;
    int k = 0;
    for (; k + 64 <= K; k += 64) {
        __m512 w0 = _mm512_loadu_ps(w + k), w1 = _mm512_loadu_ps(w + k + 16);
        __m512 w2 = _mm512_loadu_ps(w + k + 32), w3 = _mm512_loadu_ps(w + k + 48);
        a00 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x0 + k), a00);
        a01 = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x0 + k + 16), a01);
        a02 = _mm512_fmadd_ps(w2, _mm512_loadu_ps(x0 + k + 32), a02);
        a03 = _mm512_fmadd_ps(w3, _mm512_loadu_ps(x0 + k + 48), a03);
        a10 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x1 + k), a10);
        a11 = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x1 + k + 16), a11);
        a12 = _mm512_fmadd_ps(w2, _mm512_loadu_ps(x1 + k + 32), a12);
        a13 = _mm512_fmadd_ps(w3, _mm512_loadu_ps(x1 + k + 48), a13);
        a20 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x2 + k), a20);
        a21 = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x2 + k + 16), a21);
        a22 = _mm512_fmadd_ps(w2, _mm512_loadu_ps(x2 + k + 32), a22);
        a23 = _mm512_fmadd_ps(w3, _mm512_loadu_ps(x2 + k + 48), a23);
        a30 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x3 + k), a30);
        a31 = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x3 + k + 16), a31);
        a32 = _mm512_fmadd_ps(w2, _mm512_loadu_ps(x3 + k + 32), a32);
        a33 = _mm512_fmadd_ps(w3, _mm512_loadu_ps(x3 + k + 48), a33);
    }
    for (; k + 16 <= K; k += 16) {
        __m512 w0 = _mm512_loadu_ps(w + k);
        a00 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x0 + k), a00);
        a10 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x1 + k), a10);
        a20 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x2 + k), a20);
        a30 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x3 + k), a30);
    }
    if (k < K) {
        __mmask16 m = tail_mask(K - k);
        __m512 w0 = _mm512_maskz_loadu_ps(m, w + k);
        a01 = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(m, x0 + k), a01);
        a11 = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(m, x1 + k), a11);
        a21 = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(m, x2 + k), a21);
        a31 = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(m, x3 + k), a31);
    }
    out[0] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a00, a01), _mm512_add_ps(a02, a03)));
    out[ldo] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a10, a11), _mm512_add_ps(a12, a13)));
    out[2 * ldo] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a20, a21), _mm512_add_ps(a22, a23)));
    out[3 * ldo] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a30, a31), _mm512_add_ps(a32, a33)));
}

__attribute__((target("avx512f"))) static void dot_rows_avx512(float *out, long ldo, const float *w, long ldw,
                                                               const float *x, long ldx, int M, int rows, int K)
{
    for (int r = 0; r < rows; r++) {
        const float *wr = w + (long)r * ldw;
        int m = 0;
        for (; m + 4 <= M; m += 4)
            dot4_avx512(out + (long)m * ldo + r, ldo, wr, x + (long)m * ldx, ldx, K);
        for (; m < M; m++)
            out[(long)m * ldo + r] = dot1_avx512(wr, x + (long)m * ldx, K);
    }
}

/* Short rows (attention's keys, head_dim long), 16 at a time: row j's
   products go to the 16 lanes of one accumulator, and one shuffle tree
   sums all 16 accumulators' lanes at once, halving them as dot_portable
   does (lanes j + 8, then j + 4, j + 2, j + 1).  Accumulator v[slot[j]]
   holds row j so that the tree leaves row j's sum in lane j.  A block
   short of 16 rows reads its last row for the missing ones, masked to
   nothing; each row's sum depends on that row alone. */
__attribute__((target("avx512f"))) static void dot_short_rows_avx512(float *out, const float *w, long ldw,
                                                                     const float *x, int rows, int K)
{
    static const int slot[16] = { 0, 2, 1, 3, 8, 10, 9, 11, 4, 6, 5, 7, 12, 14, 13, 15 };
    for (int r0 = 0; r0 < rows; r0 += 16) {
        int nr = rows - r0 < 16 ? rows - r0 : 16;
        const float *wr[16];
        __mmask16 live[16];
        __m512 v[16];
        #pragma GCC unroll 16
        for (int j = 0; j < 16; j++) {
            wr[j] = w + (long)(r0 + (j < nr ? j : nr - 1)) * ldw;
            live[j] = j < nr ? (__mmask16)0xffff : 0;
            v[j] = _mm512_setzero_ps();
        }
        for (int j = 0; j < 16; j++)
            for (int k = 0; k < K; k += 16)
                _mm_prefetch((const char *)(w + (long)(r0 + PREFETCH_ROWS + j) * ldw + k), _MM_HINT_T0);
        for (int k = 0; k < K; k += 16) {
            __mmask16 m = tail_mask(K - k);
            __m512 xk = _mm512_maskz_loadu_ps(m, x + k);
            #pragma GCC unroll 16
            for (int j = 0; j < 16; j++)
                v[slot[j]] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m & live[j], wr[j] + k), xk, v[slot[j]]);
        }
        /* v[i] + v[i + 8] by 128-bit quarters (lanes j and j + 8 of a row),
           then quarters 0 + 1, then elements j + 2, then j + 1 */
        __m512 s[8], t[4], u[2];
        #pragma GCC unroll 8
        for (int i = 0; i < 8; i++)
            s[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[i], v[i + 8], 0x44),
                                 _mm512_shuffle_f32x4(v[i], v[i + 8], 0xee));
        #pragma GCC unroll 4
        for (int i = 0; i < 4; i++)
            t[i] = _mm512_add_ps(_mm512_shuffle_f32x4(s[i], s[i + 4], 0x88),
                                 _mm512_shuffle_f32x4(s[i], s[i + 4], 0xdd));
        #pragma GCC unroll 2
        for (int i = 0; i < 2; i++)
            u[i] = _mm512_add_ps(_mm512_shuffle_ps(t[i], t[i + 2], 0x44), _mm512_shuffle_ps(t[i], t[i + 2], 0xee));
        __m512 sum = _mm512_add_ps(_mm512_shuffle_ps(u[0], u[1], 0x88), _mm512_shuffle_ps(u[0], u[1], 0xdd));
        _mm512_mask_storeu_ps(out + r0, tail_mask(nr), sum);
    }
}

/* columns in chunks of 64 held in four registers over all the rows */
__attribute__((target("avx512f"))) static void weighted_rows_avx512(float *out, const float *p, const float *v,
                                                                    long ldv, int rows, int n, int acc)
{
    for (int j = 0; j < n; j += 64) {
        __mmask16 m0 = tail_mask(n - j), m1 = tail_mask(n - j - 16 > 0 ? n - j - 16 : 0);
        __mmask16 m2 = tail_mask(n - j - 32 > 0 ? n - j - 32 : 0), m3 = tail_mask(n - j - 48 > 0 ? n - j - 48 : 0);
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        if (acc) {
            a0 = _mm512_maskz_loadu_ps(m0, out + j);
            a1 = _mm512_maskz_loadu_ps(m1, out + j + 16);
            a2 = _mm512_maskz_loadu_ps(m2, out + j + 32);
            a3 = _mm512_maskz_loadu_ps(m3, out + j + 48);
        }
        for (int r = 0; r < rows; r++) {
            const float *vr = v + (long)r * ldv + j;
            for (int c = 0; c < 64 && c < n - j; c += 16)
                _mm_prefetch((const char *)(vr + PREFETCH_ROWS * ldv + c), _MM_HINT_T0);
            __m512 pr = _mm512_set1_ps(p[r]);
            a0 = _mm512_fmadd_ps(pr, _mm512_maskz_loadu_ps(m0, vr), a0);
            a1 = _mm512_fmadd_ps(pr, _mm512_maskz_loadu_ps(m1, vr + 16), a1);
            a2 = _mm512_fmadd_ps(pr, _mm512_maskz_loadu_ps(m2, vr + 32), a2);
            a3 = _mm512_fmadd_ps(pr, _mm512_maskz_loadu_ps(m3, vr + 48), a3);
        }
        _mm512_mask_storeu_ps(out + j, m0, a0);
        _mm512_mask_storeu_ps(out + j + 16, m1, a1);
        _mm512_mask_storeu_ps(out + j + 32, m2, a2);
        _mm512_mask_storeu_ps(out + j + 48, m3, a3);
    }
}

__attribute__((target("avx512f"))) static float sumsq_avx512(const float *x, int n)
{
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 v0 = _mm512_loadu_ps(x + i), v1 = _mm512_loadu_ps(x + i + 16);
        a0 = _mm512_fmadd_ps(v0, v0, a0);
        a1 = _mm512_fmadd_ps(v1, v1, a1);
    }
    for (; i < n; i += 16) {
        __m512 v = _mm512_maskz_loadu_ps(tail_mask(n - i), x + i);
        a0 = _mm512_fmadd_ps(v, v, a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

__attribute__((target("avx512f"))) static void norm_apply_avx512(float *out, const float *x, float r, const float *w,
                                                                 float offset, int n)
{
    __m512 rv = _mm512_set1_ps(r), ov = _mm512_set1_ps(offset);
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), rv);
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(v, _mm512_add_ps(_mm512_maskz_loadu_ps(m, w + i), ov)));
    }
}

__attribute__((target("avx512f"))) static void rmsnorm_bwd_row_avx512(float *dx, const float *g, const float *x,
                                                                      const float *w, float offset, float r, int n)
{
    __m512 ov = _mm512_set1_ps(offset), a0 = _mm512_setzero_ps(), a1 = a0;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 gw0 = _mm512_mul_ps(_mm512_loadu_ps(g + i), _mm512_add_ps(_mm512_loadu_ps(w + i), ov));
        __m512 gw1 = _mm512_mul_ps(_mm512_loadu_ps(g + i + 16), _mm512_add_ps(_mm512_loadu_ps(w + i + 16), ov));
        a0 = _mm512_fmadd_ps(gw0, _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(gw1, _mm512_loadu_ps(x + i + 16), a1);
    }
    for (; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 gw = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, g + i), _mm512_add_ps(_mm512_maskz_loadu_ps(m, w + i), ov));
        a0 = _mm512_fmadd_ps(gw, _mm512_maskz_loadu_ps(m, x + i), a0);
    }
    float c = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)) * r * r * r / (float)n;
    __m512 rv = _mm512_set1_ps(r), cv = _mm512_set1_ps(c);
    for (i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 gw = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, g + i), _mm512_add_ps(_mm512_maskz_loadu_ps(m, w + i), ov));
        __m512 d = _mm512_fmsub_ps(rv, gw, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), cv));
        _mm512_mask_storeu_ps(dx + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, dx + i), d));
    }
}

__attribute__((target("avx512f"))) static void mul_axpy_avx512(float *y, const float *a, const float *b, float s,
                                                               int n)
{
    __m512 sv = _mm512_set1_ps(s);
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 ab = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i));
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(ab, sv, _mm512_maskz_loadu_ps(m, y + i)));
    }
}

__attribute__((target("avx512f"))) static void axpy_avx512(float *y, float a, const float *x, int n)
{
    __m512 av = _mm512_set1_ps(a);
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 yv = _mm512_maskz_loadu_ps(m, y + i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, x + i), yv));
    }
}

__attribute__((target("avx512f"))) static void scale_avx512(float *x, float a, int n)
{
    __m512 av = _mm512_set1_ps(a);
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(av, _mm512_maskz_loadu_ps(m, x + i)));
    }
}

__attribute__((target("avx512f"))) static float exp_sum_avx512(float *x, int n, float sub)
{
    __m512 s = _mm512_set1_ps(sub), acc = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 e = exp_avx512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), s));
        _mm512_mask_storeu_ps(x + i, m, e);
        acc = _mm512_mask_add_ps(acc, m, acc, e);
    }
    return _mm512_reduce_add_ps(acc);
}

__attribute__((target("avx512f"))) static void silu_mul_avx512(float *out, const float *gate, const float *up, long n)
{
    __m512 one = _mm512_set1_ps(1.0f);
    for (long i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i > 16 ? 16 : (int)(n - i));
        __m512 g = _mm512_maskz_loadu_ps(m, gate + i), u = _mm512_maskz_loadu_ps(m, up + i);
        __m512 e = exp_avx512(_mm512_sub_ps(_mm512_setzero_ps(), g));
        __m512 y = _mm512_div_ps(g, _mm512_add_ps(one, e));
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(y, u));
    }
}

__attribute__((target("avx512f"))) static void silu_mul_bwd_avx512(float *dgate, float *dup, const float *dout,
                                                                   const float *gate, const float *up, long n)
{
    __m512 one = _mm512_set1_ps(1.0f);
    for (long i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i > 16 ? 16 : (int)(n - i));
        __m512 g = _mm512_maskz_loadu_ps(m, gate + i), u = _mm512_maskz_loadu_ps(m, up + i);
        __m512 d = _mm512_maskz_loadu_ps(m, dout + i);
        __m512 sg = _mm512_div_ps(one, _mm512_add_ps(one, exp_avx512(_mm512_sub_ps(_mm512_setzero_ps(), g))));
        __m512 dy = _mm512_mul_ps(sg, _mm512_add_ps(one, _mm512_mul_ps(g, _mm512_sub_ps(one, sg))));
        _mm512_mask_storeu_ps(dgate + i, m, _mm512_mul_ps(_mm512_mul_ps(d, u), dy));
        _mm512_mask_storeu_ps(dup + i, m, _mm512_mul_ps(d, _mm512_mul_ps(g, sg)));
    }
}

/* 4 query rows x 32 keys per step: 8 accumulators; rows past nr repeat
   row 0 and are not stored */
__attribute__((target("avx512f"))) static void qk_tile_avx512(float *sc, long lds, const float *q, long ldq, int nr,
                                                              const float *kt, long ldt, int n, int d, float scale)
{
    const float *q0 = q, *q1 = nr > 1 ? q + ldq : q, *q2 = nr > 2 ? q + 2 * ldq : q, *q3 = nr > 3 ? q + 3 * ldq : q;
    __m512 sv = _mm512_set1_ps(scale);
    for (int s = 0; s < n; s += 32) {
        __mmask16 m0 = tail_mask(n - s), m1 = tail_mask(n - s - 16 > 0 ? n - s - 16 : 0);
        __m512 z = _mm512_setzero_ps(), a0 = z, a1 = z, b0 = z, b1 = z, c0 = z, c1 = z, e0 = z, e1 = z;
        const float *kp = kt + s;
        for (int k = 0; k < d; k++, kp += ldt) {
            __m512 k0 = _mm512_maskz_loadu_ps(m0, kp), k1 = _mm512_maskz_loadu_ps(m1, kp + 16);
            __m512 x = _mm512_set1_ps(q0[k]);
            a0 = _mm512_fmadd_ps(x, k0, a0);
            a1 = _mm512_fmadd_ps(x, k1, a1);
            x = _mm512_set1_ps(q1[k]);
            b0 = _mm512_fmadd_ps(x, k0, b0);
            b1 = _mm512_fmadd_ps(x, k1, b1);
            x = _mm512_set1_ps(q2[k]);
            c0 = _mm512_fmadd_ps(x, k0, c0);
            c1 = _mm512_fmadd_ps(x, k1, c1);
            x = _mm512_set1_ps(q3[k]);
            e0 = _mm512_fmadd_ps(x, k0, e0);
            e1 = _mm512_fmadd_ps(x, k1, e1);
        }
        _mm512_mask_storeu_ps(sc + s, m0, _mm512_mul_ps(a0, sv));
        _mm512_mask_storeu_ps(sc + s + 16, m1, _mm512_mul_ps(a1, sv));
        if (nr > 1) {
            _mm512_mask_storeu_ps(sc + lds + s, m0, _mm512_mul_ps(b0, sv));
            _mm512_mask_storeu_ps(sc + lds + s + 16, m1, _mm512_mul_ps(b1, sv));
        }
        if (nr > 2) {
            _mm512_mask_storeu_ps(sc + 2 * lds + s, m0, _mm512_mul_ps(c0, sv));
            _mm512_mask_storeu_ps(sc + 2 * lds + s + 16, m1, _mm512_mul_ps(c1, sv));
        }
        if (nr > 3) {
            _mm512_mask_storeu_ps(sc + 3 * lds + s, m0, _mm512_mul_ps(e0, sv));
            _mm512_mask_storeu_ps(sc + 3 * lds + s + 16, m1, _mm512_mul_ps(e1, sv));
        }
    }
}

/* 4 rows x 64 columns of the output per step: 16 accumulators, named (an
   array indexed at run time would live in memory) */
__attribute__((target("avx512f"))) static void pv_tile_avx512(float *out, long ldo, const float *p, long ldp, int nr,
                                                              const float *v, long ldv, int n, int d)
{
    const float *p0 = p, *p1 = nr > 1 ? p + ldp : p, *p2 = nr > 2 ? p + 2 * ldp : p, *p3 = nr > 3 ? p + 3 * ldp : p;
    for (int j = 0; j < d; j += 64) {
        __mmask16 m0 = tail_mask(d - j), m1 = tail_mask(d - j - 16 > 0 ? d - j - 16 : 0);
        __mmask16 m2 = tail_mask(d - j - 32 > 0 ? d - j - 32 : 0), m3 = tail_mask(d - j - 48 > 0 ? d - j - 48 : 0);
        __m512 z = _mm512_setzero_ps();
        __m512 a0 = z, a1 = z, a2 = z, a3 = z, b0 = z, b1 = z, b2 = z, b3 = z;
        __m512 c0 = z, c1 = z, c2 = z, c3 = z, e0 = z, e1 = z, e2 = z, e3 = z;
        const float *vp = v + j;
        for (int s = 0; s < n; s++, vp += ldv) {
            __m512 v0 = _mm512_maskz_loadu_ps(m0, vp), v1 = _mm512_maskz_loadu_ps(m1, vp + 16);
            __m512 v2 = _mm512_maskz_loadu_ps(m2, vp + 32), v3 = _mm512_maskz_loadu_ps(m3, vp + 48);
            __m512 x;
            x = _mm512_set1_ps(p0[s]);
            a0 = _mm512_fmadd_ps(x, v0, a0);
            a1 = _mm512_fmadd_ps(x, v1, a1);
            a2 = _mm512_fmadd_ps(x, v2, a2);
            a3 = _mm512_fmadd_ps(x, v3, a3);
            x = _mm512_set1_ps(p1[s]);
            b0 = _mm512_fmadd_ps(x, v0, b0);
            b1 = _mm512_fmadd_ps(x, v1, b1);
            b2 = _mm512_fmadd_ps(x, v2, b2);
            b3 = _mm512_fmadd_ps(x, v3, b3);
            x = _mm512_set1_ps(p2[s]);
            c0 = _mm512_fmadd_ps(x, v0, c0);
            c1 = _mm512_fmadd_ps(x, v1, c1);
            c2 = _mm512_fmadd_ps(x, v2, c2);
            c3 = _mm512_fmadd_ps(x, v3, c3);
            x = _mm512_set1_ps(p3[s]);
            e0 = _mm512_fmadd_ps(x, v0, e0);
            e1 = _mm512_fmadd_ps(x, v1, e1);
            e2 = _mm512_fmadd_ps(x, v2, e2);
            e3 = _mm512_fmadd_ps(x, v3, e3);
        }
        _mm512_mask_storeu_ps(out + j, m0, a0);
        _mm512_mask_storeu_ps(out + j + 16, m1, a1);
        _mm512_mask_storeu_ps(out + j + 32, m2, a2);
        _mm512_mask_storeu_ps(out + j + 48, m3, a3);
        if (nr > 1) {
            _mm512_mask_storeu_ps(out + ldo + j, m0, b0);
            _mm512_mask_storeu_ps(out + ldo + j + 16, m1, b1);
            _mm512_mask_storeu_ps(out + ldo + j + 32, m2, b2);
            _mm512_mask_storeu_ps(out + ldo + j + 48, m3, b3);
        }
        if (nr > 2) {
            _mm512_mask_storeu_ps(out + 2 * ldo + j, m0, c0);
            _mm512_mask_storeu_ps(out + 2 * ldo + j + 16, m1, c1);
            _mm512_mask_storeu_ps(out + 2 * ldo + j + 32, m2, c2);
            _mm512_mask_storeu_ps(out + 2 * ldo + j + 48, m3, c3);
        }
        if (nr > 3) {
            _mm512_mask_storeu_ps(out + 3 * ldo + j, m0, e0);
            _mm512_mask_storeu_ps(out + 3 * ldo + j + 16, m1, e1);
            _mm512_mask_storeu_ps(out + 3 * ldo + j + 32, m2, e2);
            _mm512_mask_storeu_ps(out + 3 * ldo + j + 48, m3, e3);
        }
    }
}

/* ---- dispatch ---- */

void lf_vec_dot_rows_m_f32(float *out, long ldo, const float *w, long ldw, const float *x, long ldx, int M, int rows,
                           int K)
{
    int isa = lf_cpu_isa();
    if (isa == LF_CPU_ISA_AVX512) {
        dot_rows_avx512(out, ldo, w, ldw, x, ldx, M, rows, K);
        return;
    }
    if (isa == LF_CPU_ISA_AVX2) {
        lf_avx2_dot_rows(out, ldo, w, ldw, x, ldx, M, rows, K);
        return;
    }
    for (int r = 0; r < rows; r++)
        for (int m = 0; m < M; m++)
            out[(long)m * ldo + r] = dot_portable(w + (long)r * ldw, x + (long)m * ldx, K);
}

void lf_vec_dot_short_rows_f32(float *out, const float *w, long ldw, const float *x, int rows, int K)
{
    int isa = lf_cpu_isa();
    if (isa == LF_CPU_ISA_AVX512) {
        dot_short_rows_avx512(out, w, ldw, x, rows, K);
        return;
    }
    if (isa == LF_CPU_ISA_AVX2) {
        lf_avx2_dot_short_rows(out, w, ldw, x, rows, K);
        return;
    }
    for (int r = 0; r < rows; r++)
        out[r] = dot_portable(w + (long)r * ldw, x, K);
}

void lf_vec_weighted_rows_f32(float *out, const float *p, const float *v, long ldv, int rows, int n, int acc)
{
    int isa = lf_cpu_isa();
    if (isa == LF_CPU_ISA_AVX512) {
        weighted_rows_avx512(out, p, v, ldv, rows, n, acc);
        return;
    }
    if (isa == LF_CPU_ISA_AVX2) {
        lf_avx2_weighted_rows(out, p, v, ldv, rows, n, acc);
        return;
    }
    if (!acc)
        memset(out, 0, (size_t)n * sizeof *out);
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < n; j++)
            out[j] += p[r] * v[(long)r * ldv + j];
}

float lf_vec_sumsq_f32(const float *x, int n)
{
    int isa = lf_cpu_isa();
    if (isa == LF_CPU_ISA_AVX512)
        return sumsq_avx512(x, n);
    if (isa == LF_CPU_ISA_AVX2)
        return lf_avx2_sumsq(x, n);
    float acc[16] = { 0 };
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++)
            acc[j] += x[i + j] * x[i + j];
    for (int j = 0; i + j < n; j++)
        acc[j] += x[i + j] * x[i + j];
    for (int s = 8; s > 0; s /= 2)
        for (int j = 0; j < s; j++)
            acc[j] += acc[j + s];
    return acc[0];
}

void lf_vec_norm_apply_f32(float *out, const float *x, float r, const float *w, float offset, int n)
{
    int isa = lf_cpu_isa();
    if (isa == LF_CPU_ISA_AVX512) {
        norm_apply_avx512(out, x, r, w, offset, n);
        return;
    }
    if (isa == LF_CPU_ISA_AVX2) {
        lf_avx2_norm_apply(out, x, r, w, offset, n);
        return;
    }
    for (int i = 0; i < n; i++)
        out[i] = x[i] * r * (w[i] + offset);
}

void lf_vec_qk_tile_f32(float *sc, long lds, const float *q, long ldq, int nr, const float *kt, long ldt, int n, int d,
                        float scale)
{
    int isa = lf_cpu_isa();
    if (isa == LF_CPU_ISA_AVX512) {
        qk_tile_avx512(sc, lds, q, ldq, nr, kt, ldt, n, d, scale);
        return;
    }
    if (isa == LF_CPU_ISA_AVX2) {
        lf_avx2_qk_tile(sc, lds, q, ldq, nr, kt, ldt, n, d, scale);
        return;
    }
    for (int r = 0; r < nr; r++)
        for (int s = 0; s < n; s++) {
            float acc = 0;
            for (int k = 0; k < d; k++)
                acc += q[r * ldq + k] * kt[k * ldt + s];
            sc[r * lds + s] = acc * scale;
        }
}

void lf_vec_pv_tile_f32(float *out, long ldo, const float *p, long ldp, int nr, const float *v, long ldv, int n,
                        int d)
{
    int isa = lf_cpu_isa();
    if (isa == LF_CPU_ISA_AVX512) {
        pv_tile_avx512(out, ldo, p, ldp, nr, v, ldv, n, d);
        return;
    }
    if (isa == LF_CPU_ISA_AVX2) {
        lf_avx2_pv_tile(out, ldo, p, ldp, nr, v, ldv, n, d);
        return;
    }
    for (int r = 0; r < nr; r++) {
        float *o = out + r * ldo;
        memset(o, 0, (size_t)d * sizeof *o);
        for (int s = 0; s < n; s++)
            for (int j = 0; j < d; j++)
                o[j] += p[r * ldp + s] * v[s * ldv + j];
    }
}

void lf_vec_transpose_f32(float *dst, long ldd, const float *src, long lds, int rows, int cols)
{
    /* blocks of 16 x 16: both sides stay in cache */
    for (int r0 = 0; r0 < rows; r0 += 16)
        for (int c0 = 0; c0 < cols; c0 += 16) {
            int r1 = r0 + 16 < rows ? r0 + 16 : rows, c1 = c0 + 16 < cols ? c0 + 16 : cols;
            for (int c = c0; c < c1; c++)
                for (int r = r0; r < r1; r++)
                    dst[c * ldd + r] = src[r * lds + c];
        }
}

void lf_vec_rmsnorm_bwd_row_f32(float *dx, const float *g, const float *x, const float *w, float offset, float r,
                                int n)
{
    int isa = lf_cpu_isa();
    if (isa == LF_CPU_ISA_AVX512) {
        rmsnorm_bwd_row_avx512(dx, g, x, w, offset, r, n);
        return;
    }
    if (isa == LF_CPU_ISA_AVX2) {
        lf_avx2_rmsnorm_bwd_row(dx, g, x, w, offset, r, n);
        return;
    }
    float acc[16] = { 0 };
    for (int i = 0; i < n; i++)
        acc[i % 16] += g[i] * (w[i] + offset) * x[i];
    for (int s = 8; s > 0; s /= 2)
        for (int j = 0; j < s; j++)
            acc[j] += acc[j + s];
    float c = acc[0] * r * r * r / (float)n;
    for (int i = 0; i < n; i++)
        dx[i] += r * (g[i] * (w[i] + offset)) - x[i] * c;
}

void lf_vec_mul_axpy_f32(float *y, const float *a, const float *b, float s, int n)
{
    int isa = lf_cpu_isa();
    if (isa == LF_CPU_ISA_AVX512) {
        mul_axpy_avx512(y, a, b, s, n);
        return;
    }
    if (isa == LF_CPU_ISA_AVX2) {
        lf_avx2_mul_axpy(y, a, b, s, n);
        return;
    }
    for (int i = 0; i < n; i++)
        y[i] += a[i] * b[i] * s;
}

void lf_vec_axpy_f32(float *y, float a, const float *x, int n)
{
    int isa = lf_cpu_isa();
    if (isa == LF_CPU_ISA_AVX512) {
        axpy_avx512(y, a, x, n);
        return;
    }
    if (isa == LF_CPU_ISA_AVX2) {
        lf_avx2_axpy(y, a, x, n);
        return;
    }
    for (int i = 0; i < n; i++)
        y[i] += a * x[i];
}

void lf_vec_scale_f32(float *x, float a, int n)
{
    int isa = lf_cpu_isa();
    if (isa == LF_CPU_ISA_AVX512) {
        scale_avx512(x, a, n);
        return;
    }
    if (isa == LF_CPU_ISA_AVX2) {
        lf_avx2_scale(x, a, n);
        return;
    }
    for (int i = 0; i < n; i++)
        x[i] *= a;
}

float lf_vec_exp_sum_f32(float *x, int n, float sub)
{
    int isa = lf_cpu_isa();
    if (isa == LF_CPU_ISA_AVX512)
        return exp_sum_avx512(x, n, sub);
    if (isa == LF_CPU_ISA_AVX2)
        return lf_avx2_exp_sum(x, n, sub);
    float sum = 0;
    for (int i = 0; i < n; i++) {
        x[i] = lf_expf(x[i] - sub);
        sum += x[i];
    }
    return sum;
}

void lf_vec_silu_mul_f32(float *out, const float *gate, const float *up, long n)
{
    int isa = lf_cpu_isa();
    if (isa == LF_CPU_ISA_AVX512) {
        silu_mul_avx512(out, gate, up, n);
        return;
    }
    if (isa == LF_CPU_ISA_AVX2) {
        lf_avx2_silu_mul(out, gate, up, n);
        return;
    }
    for (long i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + lf_expf(-g)) * up[i];
    }
}

void lf_vec_silu_mul_bwd_f32(float *dgate, float *dup, const float *dout, const float *gate, const float *up, long n)
{
    int isa = lf_cpu_isa();
    if (isa == LF_CPU_ISA_AVX512) {
        silu_mul_bwd_avx512(dgate, dup, dout, gate, up, n);
        return;
    }
    if (isa == LF_CPU_ISA_AVX2) {
        lf_avx2_silu_mul_bwd(dgate, dup, dout, gate, up, n);
        return;
    }
    for (long i = 0; i < n; i++) {
        float g = gate[i], sg = 1.0f / (1.0f + lf_expf(-g));
        float dy = sg * (1.0f + g * (1.0f - sg));
        dgate[i] = dout[i] * up[i] * dy;
        dup[i] = dout[i] * (g * sg);
    }
}

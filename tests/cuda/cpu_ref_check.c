/* tests/cuda/cpu_ref_check.c — checks the CPU reference kernels
 * (kernels/cpu): lf_cpu_matmul_nt_f32 and gemm.h's product (each
 * transposition, edges, leading dimensions, alpha and beta) against a naive
 * triple loop, the
 * bf16 <-> f32 conversions against known bit patterns, and the vector
 * kernels (vec.h: exp, dot products, weighted sums, silu; matmul.h's gemv;
 * ops.h's attention, gated activation and RoPE) against plain scalar references
 * in double, for every instruction set the CPU has (vec.h), at sizes that
 * are not multiples of the vector width, and with 1, 2 and 3 threads (the
 * results must be the same bits).  Built as
 * $(OUT)/tests/kernels_cpu_check; prints "ok NAME" or "FAIL NAME ..." per
 * check and exits 1 if any failed.  Needs no GPU. */
#include "cpu/bf16.h"
#include "cpu/gemm.h"
#include "cpu/grad.h"
#include "cpu/matmul.h"
#include "cpu/ops.h"
#include "cpu/vec.h"

#include "test_rng.h"

#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

static void report(int ok, const char *name, const char *detail)
{
    if (ok)
        printf("ok %s\n", name);
    else {
        printf("FAIL %s %s\n", name, detail);
        failures++;
    }
}

static uint32_t f32_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static float bits_f32(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}


static void check_bf16_patterns(void)
{
    static const struct { uint32_t in; uint16_t want; const char *what; } cases[] = {
        { 0x3f800000u, 0x3f80, "1.0" },
        { 0xbf800000u, 0xbf80, "-1.0" },
        { 0x00000000u, 0x0000, "+0" },
        { 0x80000000u, 0x8000, "-0" },
        { 0x3f808000u, 0x3f80, "tie, even lsb stays" },
        { 0x3f818000u, 0x3f82, "tie, odd lsb rounds up to even" },
        { 0xbf818000u, 0xbf82, "negative tie rounds to even" },
        { 0x3f808001u, 0x3f81, "just above half rounds up" },
        { 0x3f807fffu, 0x3f80, "just below half rounds down" },
        { 0x3f80ffffu, 0x3f81, "rounds up" },
        { 0x3fffffffu, 0x4000, "carry into the exponent" },
        { 0x40490fdbu, 0x4049, "pi" },
        { 0x7f800000u, 0x7f80, "+inf" },
        { 0xff800000u, 0xff80, "-inf" },
        { 0x7f7fffffu, 0x7f80, "FLT_MAX overflows to +inf" },
        { 0xff7fffffu, 0xff80, "-FLT_MAX overflows to -inf" },
        { 0x7f7f7fffu, 0x7f7f, "largest that stays finite" },
        { 0x00008000u, 0x0000, "subnormal tie to even (zero)" },
        { 0x00018000u, 0x0002, "subnormal tie to even (up)" },
        { 0x00000001u, 0x0000, "smallest subnormal" },
        { 0x7fc00000u, 0x7fc0, "quiet NaN" },
        { 0xffc00000u, 0xffc0, "negative quiet NaN" },
        { 0x7f800001u, 0x7fc0, "signalling NaN stays NaN (not inf)" },
        { 0x7fffffffu, 0x7fff, "NaN with all payload bits" },
        { 0xff80ffffu, 0xffc0, "negative NaN, low payload" },
    };
    char name[96], detail[160];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t got = lf_f32_to_bf16(bits_f32(cases[i].in));
        snprintf(name, sizeof name, "bf16_round_%08x", (unsigned)cases[i].in);
        snprintf(detail, sizeof detail, "(%s): got 0x%04x want 0x%04x",
                 cases[i].what, (unsigned)got, (unsigned)cases[i].want);
        report(got == cases[i].want, name, detail);
    }
}

/* every bf16 value: widening is a shift, and narrowing gives it back
   (NaNs stay NaNs, signalling ones come back quieted) */
static void check_bf16_roundtrip(void)
{
    int bad = 0;
    uint32_t first_bad = 0;
    for (uint32_t h = 0; h < 65536u; h++) {
        float x = lf_bf16_to_f32((uint16_t)h);
        uint16_t back = lf_f32_to_bf16(x);
        int is_nan = (h & 0x7fffu) > 0x7f80u;
        int ok = f32_bits(x) == h << 16 &&
                 (is_nan ? (back & 0x7fffu) > 0x7f80u && (back & 0x8000u) == (h & 0x8000u)
                         : back == h);
        if (!ok && !bad++)
            first_bad = h;
    }
    char detail[96];
    snprintf(detail, sizeof detail, "%d of 65536 wrong, first 0x%04x",
             bad, (unsigned)first_bad);
    report(bad == 0, "bf16_roundtrip_all_65536", detail);
}

/* the rule in bf16.h against a slower one written from the definition:
   pick the nearer of the two neighbouring bf16 values, ties to even */
static uint16_t bf16_by_definition(float x)
{
    uint32_t u = f32_bits(x);
    if (isnan(x))
        return (uint16_t)((u >> 16) | 0x0040u);
    uint32_t down = u & 0xffff0000u, rest = u & 0xffffu;
    uint16_t lo = (uint16_t)(down >> 16);
    if (rest < 0x8000u)
        return lo;
    if (rest > 0x8000u)
        return (uint16_t)(lo + 1);
    return (lo & 1u) ? (uint16_t)(lo + 1) : lo;
}

static void check_bf16_random(void)
{
    enum { n = 1 << 20 };
    float *in = malloc(n * sizeof *in), *back = malloc(n * sizeof *back);
    uint16_t *out = malloc(n * sizeof *out);
    if (!in || !out || !back) {
        report(0, "bf16_random", "out of memory");
        return;
    }
    static const uint32_t low[] = { 0x0000u, 0x7fffu, 0x8000u, 0x8001u, 0xffffu };
    for (int i = 0; i < n; i++) {
        uint32_t u = rng_u32();
        if (i % 4 == 0) /* force the rounding edge cases */
            u = (u & 0xffff0000u) | low[(u >> 3) % 5];
        in[i] = bits_f32(u);
    }
    lf_cpu_f32_to_bf16(out, in, n);
    lf_cpu_bf16_to_f32(back, out, n);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        uint16_t want = bf16_by_definition(in[i]);
        if (out[i] != want || f32_bits(back[i]) != (uint32_t)want << 16)
            bad++;
    }
    char detail[64];
    snprintf(detail, sizeof detail, "%d of %d differ from the definition", bad, n);
    report(bad == 0, "bf16_random_1M", detail);
    free(in);
    free(out);
    free(back);
}

static void naive_matmul_nt(double *out, const float *a, const float *b,
                            int M, int N, int K)
{
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = 0.0;
            for (int k = 0; k < K; k++)
                s += (double)a[(size_t)m * K + k] * b[(size_t)n * K + k];
            out[(size_t)m * N + n] = s;
        }
}

/* lf_cpu_matmul_nt_f32 (scale 0), or lf_cpu_matmul_nt_acc_f32 with that
 * scale over random contents (LoRA's update), against the naive product. */
static void check_matmul(int M, int N, int K, float scale)
{
    size_t na = (size_t)M * K, nb = (size_t)N * K, no = (size_t)M * N;
    float *a = malloc((na ? na : 1) * sizeof *a), *b = malloc((nb ? nb : 1) * sizeof *b);
    float *out = malloc((no ? no : 1) * sizeof *out), *init = malloc((no ? no : 1) * sizeof *init);
    double *ref = malloc((no ? no : 1) * sizeof *ref);
    char name[64], detail[160];
    snprintf(name, sizeof name, scale ? "matmul_nt_acc_f32_%dx%dx%d" : "matmul_nt_f32_%dx%dx%d", M, N, K);
    if (!a || !b || !out || !ref || !init) {
        report(0, name, "out of memory");
        return;
    }
    for (size_t i = 0; i < na; i++) a[i] = rng_uniform();
    for (size_t i = 0; i < nb; i++) b[i] = rng_uniform();
    for (size_t i = 0; i < no; i++) /* plain: NaN, which must all be overwritten */
        out[i] = init[i] = scale ? rng_uniform() : NAN;
    if (scale)
        lf_cpu_matmul_nt_acc_f32(out, a, b, M, N, K, scale);
    else
        lf_cpu_matmul_nt_f32(out, a, b, M, N, K);
    naive_matmul_nt(ref, a, b, M, N, K);
    /* f32 accumulation of K terms of size <= 1: error well under K * 2^-24 * K */
    double max_err = 0.0, tol = 1e-6 * (K + 1) + 1e-6;
    for (size_t i = 0; i < no; i++) {
        double want = scale ? init[i] + (double)scale * ref[i] : ref[i];
        double e = fabs((double)out[i] - want);
        if (!(e <= max_err))
            max_err = isnan(e) ? INFINITY : e;
    }
    snprintf(detail, sizeof detail, "max abs err %.3g > tol %.3g", max_err, tol);
    report(max_err <= tol, name, detail);
    free(a);
    free(b);
    free(out);
    free(init);
    free(ref);
}

/* ---- vector kernels (vec.h, gemv, attention, silu) ---- */

/* lf_cpu_sgemm_f32: C = alpha op(A) op(B) + beta C with leading dimensions
 * wider than the rows, against the product in double, at 1, 2 and 3
 * threads, for every instruction set (AVX-512 and AVX2: lf's own product
 * where the shape allows, which must give the same bits at each thread
 * count and when each thread of a parallel region calls it; else
 * OpenBLAS, which need not).  beta 0 starts
 * from NaN, which must not come through. */
static void check_sgemm(int ta, int tb, int M, int N, int K, float alpha, float beta)
{
    long lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + (N % 64 ? 5 : 0), ldc = N + 1;
    long ra = ta ? K : M, rb = tb ? N : K;
    float *a = malloc(sizeof(float) * ra * lda), *b = malloc(sizeof(float) * rb * ldb);
    float *c0 = malloc(sizeof(float) * M * ldc), *c = malloc(sizeof(float) * M * ldc);
    float *first = malloc(sizeof(float) * M * ldc), *inner = malloc(sizeof(float) * M * ldc);
    char name[96], detail[200];
    for (long i = 0; i < ra * lda; i++) a[i] = rng_uniform();
    for (long i = 0; i < rb * ldb; i++) b[i] = rng_uniform();
    for (long i = 0; i < M * ldc; i++) c0[i] = beta == 0.0f ? NAN : rng_uniform();
    int saved = omp_get_max_threads(), best = lf_cpu_isa();
    for (int isa = 0; isa <= best; isa++) {
        lf_cpu_set_isa(isa);
        snprintf(name, sizeof name, "sgemm_%s_%c%c_%dx%dx%d_a%g_b%g", lf_cpu_isa_name(isa), ta ? 't' : 'n',
                 tb ? 't' : 'n', M, N, K, alpha, beta);
        double max_err = 0, tol = 1e-6 * (K + 1) + 1e-6;
        int same = 1;
        for (int threads = 1; threads <= 3; threads++) {
            omp_set_num_threads(threads);
            memcpy(c, c0, sizeof(float) * M * ldc);
            lf_cpu_sgemm_f32(ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
            if (threads == 1) {
                memcpy(first, c, sizeof(float) * M * ldc);
                for (int i = 0; i < M; i++)
                    for (int j = 0; j < N; j++) {
                        double s = 0;
                        for (int k = 0; k < K; k++)
                            s += (double)(ta ? a[(long)k * lda + i] : a[(long)i * lda + k]) *
                                 (tb ? b[(long)j * ldb + k] : b[(long)k * ldb + j]);
                        double want = alpha * s + (beta != 0.0f ? beta * (double)c0[(long)i * ldc + j] : 0.0);
                        double e = fabs(c[(long)i * ldc + j] - want);
                        if (!(e <= max_err))
                            max_err = isnan(e) ? INFINITY : e;
                    }
                for (int i = 0; i < M; i++) /* the column past N is not C's */
                    if (memcmp(&c[(long)i * ldc + N], &c0[(long)i * ldc + N], sizeof(float)))
                        max_err = INFINITY;
            } else if (memcmp(first, c, sizeof(float) * M * ldc)) {
                same = 0;
            }
        }
        /* called by each thread of a parallel region (the attention's
           per-head products): each runs it alone, into its own C */
        omp_set_num_threads(2);
        #pragma omp parallel
        {
            float *mine = omp_get_thread_num() == 0 ? c : inner;
            memcpy(mine, c0, sizeof(float) * M * ldc);
            lf_cpu_sgemm_f32(ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, mine, ldc);
        }
        if (memcmp(first, c, sizeof(float) * M * ldc) || memcmp(first, inner, sizeof(float) * M * ldc))
            same = 0;
        /* B packed beforehand (lf_cpu_packed_b): the bits of the product
           that packs it itself, at the same thread count */
        int packed_same = 1;
        struct lf_cpu_packed_b pb;
        if (lf_cpu_packed_b_init(&pb, tb, N, K, b, ldb) < 0)
            packed_same = 0;
        for (int threads = 1; threads <= 2 && packed_same; threads++) {
            omp_set_num_threads(threads);
            memcpy(c, c0, sizeof(float) * M * ldc);
            memcpy(inner, c0, sizeof(float) * M * ldc);
            lf_cpu_sgemm_f32(ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
            lf_cpu_sgemm_packed_f32(ta, M, alpha, a, lda, &pb, beta, inner, ldc);
            packed_same = !memcmp(c, inner, sizeof(float) * M * ldc);
        }
        lf_cpu_packed_b_free(&pb);
        snprintf(detail, sizeof detail,
                 "max abs err %.3g (tol %.3g), same bits at 1-3 threads and in a parallel region: %s, with B packed "
                 "beforehand: %s",
                 max_err, tol, same ? "yes" : "no", packed_same ? "yes" : "no");
        /* OpenBLAS's sums may change with the thread count */
        report(max_err <= tol && (same || isa == LF_CPU_ISA_PORTABLE) && packed_same, name, detail);
    }
    lf_cpu_set_isa(-1);
    omp_set_num_threads(saved);
    free(a);
    free(b);
    free(c0);
    free(c);
    free(first);
    free(inner);
}

static void check_sgemm_shapes(void)
{
    /* M, N, K: whole tiles; ragged ones; K over one block (384) in two
       equal ones; N under two panels (rows split over the threads); N
       whose rows are 1 KB multiples apart (B packed); few rows (LoRA's
       dA); narrow ones (N <= 16: LoRA's x A^T, dy B, dy^T u), one with K
       in two blocks; rows over one block of packed A^T (384), with B in
       one block of columns and in several (320 on AVX-512, 192 on AVX2);
       C in chunks taken by the threads as they come free (B packed
       beforehand, in one K block or several; or 9 blocks of 192 columns,
       in one K block or two: in chunks on AVX2 at 1 and 2 threads, in
       shares at 3); with A^T of 800 and 900 rows (at 1 thread) and 1600
       (at 1 and 2), B packed whole first and C in chunks of rows (else in
       shares, as in a parallel region); shapes just outside lf's own
       (OpenBLAS) */
    static const int shapes[][3] = { { 96, 128, 64 }, { 70, 131, 389 }, { 131, 200, 777 }, { 200, 64, 100 },
                                     { 67, 256, 130 }, { 64, 64, 64 },  { 16, 100, 200 },  { 100, 16, 70 },
                                     { 131, 8, 400 },  { 64, 1, 16 },   { 77, 13, 1030 },  { 64, 20, 64 },
                                     { 900, 100, 389 }, { 800, 400, 50 }, { 15, 64, 64 }, { 64, 64, 15 },
                                     { 70, 1700, 100 }, { 20, 1700, 400 }, { 1600, 70, 100 } };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int form = 0; form < 4; form++)
            check_sgemm(form & 1, form >> 1, shapes[i][0], shapes[i][1], shapes[i][2], i % 2 ? 0.5f : 1.0f,
                        i % 3 == 0 ? 0.0f : i % 3 == 1 ? 1.0f : 0.25f);
}

/* error of got against the exact want in units of the float spacing at
   want (results under FLT_MIN: in units of 2^-126 absolute) */
static double ulp_err(float got, double want)
{
    if (isnan(want))
        return isnan(got) ? 0 : INFINITY;
    if (isinf((float)want)) /* overflows: inf is right */
        return isinf(got) && (got > 0) == (want > 0) ? 0 : INFINITY;
    double a = fabs(want);
    double ulp = a < FLT_MIN ? ldexp(1.0, -126) : ldexp(1.0, ilogb(a) - 23);
    return fabs((double)got - want) / ulp;
}

/* exp: lf_expf and the vector form (lf_vec_exp_sum_f32 with sub 0) against
   exp in double, within 2 ulp; the special values exactly */
static void check_exp(int isa)
{
    enum { n = 1 << 20 };
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    char name[64], detail[160];
    snprintf(name, sizeof name, "exp_f32_%s", lf_cpu_isa_name(isa));
    if (!x || !y) {
        report(0, name, "out of memory");
        return;
    }
    static const float special[] = { 0.0f, -0.0f, 1.0f, -1.0f, 88.72f, 88.7228f, 88.73f, 89.0f, 100.0f, -87.3f,
                                     -87.34f, -88.0f, -100.0f, -103.9f, -104.0f, -105.0f, -1000.0f, 1e-8f,
                                     -1e-8f, 0.34657359f, -0.34657359f, 0.5f, 20.0f, -20.0f };
    int ns = sizeof special / sizeof special[0];
    for (int i = 0; i < n; i++) {
        if (i < ns)
            x[i] = special[i];
        else if (i % 3 == 0) /* the whole range */
            x[i] = 96.0f * rng_uniform() - 8.0f;
        else if (i % 3 == 1) /* beyond it */
            x[i] = 110.0f * rng_uniform();
        else /* softmax's arguments: <= 0, mostly small */
            x[i] = -fabsf(rng_uniform()) * 30.0f;
    }
    memcpy(y, x, n * sizeof *x);
    lf_cpu_set_isa(isa);
    lf_vec_exp_sum_f32(y, n - 3, 0.0f); /* n - 3: a tail that is not a whole vector */
    lf_vec_exp_sum_f32(y + n - 3, 3, 0.0f);
    double max_v = 0, max_s = 0;
    for (int i = 0; i < n; i++) {
        double want = exp((double)x[i]);
        double ev = ulp_err(y[i], want), es = ulp_err(lf_expf(x[i]), want);
        max_v = ev > max_v || isnan(ev) ? ev : max_v;
        max_s = es > max_s || isnan(es) ? es : max_s;
    }
    /* the sum, as softmax uses it: exp(x - max) over 1001 values */
    double want_sum = 0;
    for (int i = 0; i < 1001; i++) {
        y[i] = 10.0f * rng_uniform();
        want_sum += exp((double)y[i] - 9.5);
    }
    float sum = lf_vec_exp_sum_f32(y, 1001, 9.5f);
    float inf = INFINITY, nan = NAN, v[3] = { inf, -inf, nan };
    lf_vec_exp_sum_f32(v, 3, 0.0f);
    int special_ok = v[0] == inf && v[1] == 0.0f && isnan(v[2]) && lf_expf(inf) == inf && lf_expf(-inf) == 0.0f &&
                     isnan(lf_expf(nan)) && lf_expf(0.0f) == 1.0f;
    double sum_err = fabs(sum - want_sum) / want_sum;
    snprintf(detail, sizeof detail, "max ulp error: vector %.3g, scalar %.3g (2 allowed); sum rel err %.3g; "
             "inf/-inf/nan/0 %s", max_v, max_s, sum_err, special_ok ? "ok" : "wrong");
    report(max_v <= 2 && max_s <= 2 && sum_err < 1e-5 && special_ok, name, detail);
    lf_cpu_set_isa(-1);
    free(x);
    free(y);
}

/* dot_short_rows, weighted_rows, axpy, scale, silu_mul, mul_axpy,
   rmsnorm_bwd_row, sumsq, norm_apply against scalar
   loops in double, for n from 0 to 150 and a strided layout; 21 rows: a
   block of 16 short rows and a partial one, and each row's bits the same
   when the rows are taken from the sixth on */
static void check_vec_ops(int isa)
{
    enum { maxn = 150, rows = 21, ld = 163 };
    float w[rows * ld], x[ld], p[rows], out[ld], part[rows], y[ld], y0[ld], g[ld], u[ld];
    double worst[9] = { 0 };
    int same_rows = 1;
    lf_cpu_set_isa(isa);
    for (int n = 0; n <= maxn; n++) {
        for (int i = 0; i < rows * ld; i++)
            w[i] = rng_uniform();
        for (int i = 0; i < ld; i++) {
            x[i] = rng_uniform();
            y[i] = y0[i] = rng_uniform();
            g[i] = 12.0f * rng_uniform();
            u[i] = rng_uniform();
        }
        for (int r = 0; r < rows; r++)
            p[r] = rng_uniform();
        /* dot products of rows of n, stride ld */
        lf_vec_dot_short_rows_f32(out, w, ld, x, rows, n);
        lf_vec_dot_short_rows_f32(part, w + 5 * ld, ld, x, rows - 5, n);
        same_rows &= memcmp(part, out + 5, (rows - 5) * sizeof *out) == 0;
        for (int r = 0; r < rows; r++) {
            double want = 0;
            for (int k = 0; k < n; k++)
                want += (double)w[r * ld + k] * x[k];
            double e = fabs(out[r] - want);
            worst[0] = e > worst[0] || isnan(e) ? e : worst[0];
        }
        /* weighted sum of rows: out[j] = sum_r p[r] w[r, j], j < n */
        lf_vec_weighted_rows_f32(out, p, w, ld, rows, n, 0);
        for (int j = 0; j < n; j++) {
            double want = 0;
            for (int r = 0; r < rows; r++)
                want += (double)p[r] * w[r * ld + j];
            double e = fabs(out[j] - want);
            worst[1] = e > worst[1] || isnan(e) ? e : worst[1];
        }
        /* again, added to what out holds (the first 3 rows, then the rest) */
        lf_vec_weighted_rows_f32(out, p, w, ld, 3, n, 0);
        lf_vec_weighted_rows_f32(out, p + 3, w + 3 * ld, ld, rows - 3, n, 1);
        for (int j = 0; j < n; j++) {
            double want = 0;
            for (int r = 0; r < rows; r++)
                want += (double)p[r] * w[r * ld + j];
            double e = fabs(out[j] - want);
            worst[1] = e > worst[1] || isnan(e) ? e : worst[1];
        }
        /* y += a x, then x *= a (y[n] must stay) */
        lf_vec_axpy_f32(y, 0.375f, x, n);
        for (int i = 0; i <= n && i < ld; i++) {
            double want = i < n ? y0[i] + 0.375 * x[i] : y0[i];
            double e = fabs(y[i] - want);
            worst[2] = e > worst[2] || isnan(e) ? e : worst[2];
        }
        memcpy(y, x, sizeof x);
        lf_vec_scale_f32(y, -1.5f, n);
        for (int i = 0; i <= n && i < ld; i++) {
            double e = fabs(y[i] - (i < n ? -1.5 * x[i] : x[i]));
            worst[3] = e > worst[3] || isnan(e) ? e : worst[3];
        }
        /* silu(g) * u, in place on g */
        memcpy(y, g, sizeof g);
        lf_vec_silu_mul_f32(y, y, u, n);
        for (int i = 0; i <= n && i < ld; i++) {
            double want = i < n ? g[i] / (1.0 + exp(-(double)g[i])) * u[i] : g[i];
            double e = fabs(y[i] - want) / (fabs(want) + 1e-30);
            worst[4] = (e > worst[4] || isnan(e)) && fabs(want) > 1e-30 ? e : worst[4];
        }
        /* y += x u s (y[n] must stay) */
        memcpy(y, y0, sizeof y0);
        lf_vec_mul_axpy_f32(y, x, u, 0.375f, n);
        for (int i = 0; i <= n && i < ld; i++) {
            double want = i < n ? y0[i] + (double)x[i] * u[i] * 0.375 : y0[i];
            double e = fabs(y[i] - want);
            worst[5] = e > worst[5] || isnan(e) ? e : worst[5];
        }
        /* RMSNorm's backward row: gradient u, input x, weight p's first
           row of w with offset 1, r 0.8 */
        memcpy(y, y0, sizeof y0);
        lf_vec_rmsnorm_bwd_row_f32(y, u, x, w, 1.0f, 0.8f, n);
        double dot = 0;
        for (int i = 0; i < n; i++)
            dot += (double)u[i] * (w[i] + 1.0) * x[i];
        double c = n ? dot * 0.8 * 0.8 * 0.8 / n : 0;
        for (int i = 0; i <= n && i < ld; i++) {
            double want = i < n ? y0[i] + 0.8 * u[i] * (w[i] + 1.0) - x[i] * c : y0[i];
            double e = fabs(y[i] - want);
            worst[6] = e > worst[6] || isnan(e) ? e : worst[6];
        }
        /* RMSNorm's forward: the sum of squares of x, then x r (w + 1) in
           place on a copy of x, r 0.8 (y[n] must stay) */
        double ss = 0;
        for (int i = 0; i < n; i++)
            ss += (double)x[i] * x[i];
        double e = fabs(lf_vec_sumsq_f32(x, n) - ss);
        worst[7] = e > worst[7] || isnan(e) ? e : worst[7];
        memcpy(y, x, sizeof x);
        lf_vec_norm_apply_f32(y, y, 0.8f, w, 1.0f, n);
        for (int i = 0; i <= n && i < ld; i++) {
            double want = i < n ? x[i] * 0.8 * (w[i] + 1.0) : x[i];
            e = fabs(y[i] - want);
            worst[8] = e > worst[8] || isnan(e) ? e : worst[8];
        }
    }
    lf_cpu_set_isa(-1);
    static const char *names[] = { "dot_short_rows", "weighted_rows", "axpy",  "scale",     "silu_mul",
                                   "mul_axpy",       "rmsnorm_bwd_row", "sumsq", "norm_apply" };
    static const double tol[] = { 2e-6 * maxn, 2e-6 * rows, 1e-7, 1e-7, 3e-7, 2e-7, 2e-6, 2e-6 * maxn, 3e-7 };
    for (int i = 0; i < 9; i++) {
        char name[64], detail[96];
        snprintf(name, sizeof name, "vec_%s_f32_%s", names[i], lf_cpu_isa_name(isa));
        snprintf(detail, sizeof detail, "max err %.3g > tol %.3g", worst[i], tol[i]);
        report(worst[i] <= tol[i], name, detail);
    }
    char name[64];
    snprintf(name, sizeof name, "vec_dot_short_rows_f32_split_%s", lf_cpu_isa_name(isa));
    report(same_rows, name, "a row's bits depend on the rows beside it");
}

/* lf_cpu_gemv_multi_f32 (M vectors, three weights) against the naive
   product; 1, 2 and 3 threads give the same bits, and so does
   lf_cpu_gemv_f32 on each vector and weight alone */
static void check_gemv(int isa, int M, int N, int K)
{
    int N2 = N / 3 + 1, N3 = 2 * N + 5, Ns[3] = { N, N2, N3 };
    size_t nw = (size_t)(N + N2 + N3) * K, nx = (size_t)M * K, no = (size_t)M * (N + N2 + N3);
    float *w = malloc((nw ? nw : 1) * sizeof *w), *x = malloc((nx ? nx : 1) * sizeof *x);
    float *buf = malloc((no + 3) * sizeof *buf), *first = malloc((no + 3) * sizeof *first);
    float *one = malloc((size_t)(N3 + 1) * sizeof *one);
    double *ref = malloc((size_t)(M * N3 + 1) * sizeof *ref);
    char name[64], detail[160];
    snprintf(name, sizeof name, "gemv_f32_M%d_%dx%d_%s", M, N, K, lf_cpu_isa_name(isa));
    for (size_t i = 0; i < nw; i++)
        w[i] = rng_uniform();
    for (size_t i = 0; i < nx; i++)
        x[i] = rng_uniform();
    const float *ws[3] = { w, w + (size_t)N * K, w + (size_t)(N + N2) * K };
    /* the three outputs one after another, one guard float after each */
    float *out[3] = { buf, buf + (size_t)M * N + 1, buf + (size_t)M * (N + N2) + 2 };
    lf_cpu_set_isa(isa);
    double max_err = 0, tol = 1e-6 * (K + 1) + 1e-6;
    int same = 1;
    for (int threads = 1; threads <= 3; threads++) {
        omp_set_num_threads(threads);
        for (size_t i = 0; i < no + 3; i++)
            buf[i] = NAN;
        for (int i = 0; i < 3; i++)
            out[i][(size_t)M * Ns[i]] = 12345.0f; /* past the end stays */
        lf_cpu_gemv_multi_f32(out, ws, Ns, 3, x, M, K);
        for (int i = 0; i < 3; i++) {
            naive_matmul_nt(ref, x, ws[i], M, Ns[i], K);
            for (size_t j = 0; j < (size_t)M * Ns[i]; j++) {
                double e = fabs((double)out[i][j] - ref[j]);
                max_err = e > max_err || isnan(e) ? e : max_err;
            }
            same &= out[i][(size_t)M * Ns[i]] == 12345.0f;
            for (int m = 0; m < M; m++) {
                lf_cpu_gemv_f32(one, ws[i], x + (size_t)m * K, Ns[i], K);
                same &= memcmp(one, out[i] + (size_t)m * Ns[i], (size_t)Ns[i] * sizeof(float)) == 0;
            }
        }
        if (threads == 1)
            memcpy(first, buf, (no + 3) * sizeof *buf);
        else
            same &= memcmp(first, buf, (no + 3) * sizeof *buf) == 0;
    }
    omp_set_num_threads(2);
    lf_cpu_set_isa(-1);
    snprintf(detail, sizeof detail, "max abs err %.3g (tol %.3g); same bits for 1/2/3 threads and alone: %s",
             max_err, tol, same ? "yes" : "no");
    report(max_err <= tol && same, name, detail);
    free(w);
    free(x);
    free(buf);
    free(first);
    free(one);
    free(ref);
}

/* attention in double from the definition (ops.h): causal, window,
   softcap, grouped-query */
static void attention_ref(double *out, const float *q, const float *k, const float *v, int T, int S, int q0,
                          const struct lf_attn *a)
{
    int qs = a->heads * a->d, ks = a->kv_heads * a->d, group = a->heads / a->kv_heads;
    double *sc = malloc((size_t)S * sizeof *sc);
    for (int t = 0; t < T; t++)
        for (int h = 0; h < a->heads; h++) {
            int kh = h / group, p = q0 + t, lo = a->window > 0 && p - a->window + 1 > 0 ? p - a->window + 1 : 0;
            double mx = -INFINITY, sum = 0;
            for (int s = lo; s <= p; s++) {
                double d = 0;
                for (int i = 0; i < a->d; i++)
                    d += (double)q[(size_t)t * qs + h * a->d + i] * k[(size_t)s * ks + kh * a->d + i];
                d *= a->scale;
                if (a->softcap > 0)
                    d = a->softcap * tanh(d / a->softcap);
                sc[s] = d;
                mx = d > mx ? d : mx;
            }
            for (int s = lo; s <= p; s++)
                sum += sc[s] = exp(sc[s] - mx);
            for (int i = 0; i < a->d; i++) {
                double o = 0;
                for (int s = lo; s <= p; s++)
                    o += sc[s] / sum * v[(size_t)s * ks + kh * a->d + i];
                out[(size_t)t * qs + h * a->d + i] = o;
            }
        }
    free(sc);
}

static void check_attention(int isa, int T, int q0, int heads, int kv_heads, int d, int window, float softcap)
{
    int S = q0 + T, qs = heads * d, ks = kv_heads * d;
    float *q = malloc((size_t)T * qs * sizeof *q), *k = malloc((size_t)S * ks * sizeof *k);
    float *v = malloc((size_t)S * ks * sizeof *v), *out = malloc((size_t)T * qs * sizeof *out);
    float *first = malloc((size_t)T * qs * sizeof *first), *scratch = malloc((size_t)T * S * sizeof *scratch);
    double *ref = malloc((size_t)T * qs * sizeof *ref);
    for (size_t i = 0; i < (size_t)T * qs; i++)
        q[i] = 2.0f * rng_uniform();
    for (size_t i = 0; i < (size_t)S * ks; i++) {
        k[i] = 2.0f * rng_uniform();
        v[i] = rng_uniform();
    }
    /* the same keys and values in a cache laid out by head, 3 positions
       of room past S, NaN there */
    int cap = S + 3;
    float *kc = malloc((size_t)cap * ks * sizeof *kc), *vc = malloc((size_t)cap * ks * sizeof *vc);
    for (size_t i = 0; i < (size_t)cap * ks; i++)
        kc[i] = vc[i] = NAN;
    for (int s = 0; s < S; s++)
        for (int g = 0; g < kv_heads; g++) {
            memcpy(kc + ((size_t)g * cap + s) * d, k + (size_t)s * ks + (size_t)g * d, d * sizeof *k);
            memcpy(vc + ((size_t)g * cap + s) * d, v + (size_t)s * ks + (size_t)g * d, d * sizeof *v);
        }
    struct lf_attn a = { heads, kv_heads, d, 1.0f / sqrtf((float)d), softcap, window };
    attention_ref(ref, q, k, v, T, S, q0, &a);
    lf_cpu_set_isa(isa);
    for (int cache = 0; cache <= 1; cache++) {
        double max_err = 0;
        int same = 1;
        for (int threads = 1; threads <= 3; threads++) {
            omp_set_num_threads(threads);
            for (size_t i = 0; i < (size_t)T * qs; i++)
                out[i] = NAN;
            if (cache)
                lf_cpu_attention_cache_f32(out, q, kc, vc, cap, T, q0, &a);
            else
                lf_cpu_attention_f32(out, q, k, v, T, S, q0, &a, scratch);
            for (size_t i = 0; i < (size_t)T * qs; i++) {
                double e = fabs(out[i] - ref[i]);
                max_err = e > max_err || isnan(e) ? e : max_err;
            }
            if (threads == 1)
                memcpy(first, out, (size_t)T * qs * sizeof *out);
            else
                same &= memcmp(first, out, (size_t)T * qs * sizeof *out) == 0;
        }
        char name[112], detail[128];
        snprintf(name, sizeof name, "attention%s_f32_T%d_q0%d_h%d_kv%d_d%d_w%d_cap%g_%s", cache ? "_cache" : "", T,
                 q0, heads, kv_heads, d, window, softcap, lf_cpu_isa_name(isa));
        snprintf(detail, sizeof detail, "max abs err %.3g > 2e-6, or threads change bits (%s)", max_err,
                 same ? "same" : "differ");
        report(max_err <= 2e-6 && same, name, detail);
    }
    omp_set_num_threads(2);
    lf_cpu_set_isa(-1);
    free(kc);
    free(vc);
    free(q);
    free(k);
    free(v);
    free(out);
    free(first);
    free(scratch);
    free(ref);
}

/* lf_cpu_gated_act_f32 silu (act 0) over a length that splits unevenly */
static void check_gated_silu(int isa, long n)
{
    float *g = malloc(n * sizeof *g), *u = malloc(n * sizeof *u), *out = malloc(n * sizeof *out);
    for (long i = 0; i < n; i++) {
        g[i] = 20.0f * rng_uniform();
        u[i] = rng_uniform();
    }
    lf_cpu_set_isa(isa);
    lf_cpu_gated_act_f32(out, g, u, n, 0);
    lf_cpu_set_isa(-1);
    double max_rel = 0;
    for (long i = 0; i < n; i++) {
        double want = g[i] / (1.0 + exp(-(double)g[i])) * u[i];
        double e = fabs(out[i] - want) / (fabs(want) + 1e-30);
        max_rel = e > max_rel || isnan(e) ? e : max_rel;
    }
    char name[64], detail[96];
    snprintf(name, sizeof name, "gated_act_silu_f32_%ld_%s", n, lf_cpu_isa_name(isa));
    snprintf(detail, sizeof detail, "max rel err %.3g > 3e-7", max_rel);
    report(max_rel <= 3e-7, name, detail);
    free(g);
    free(u);
    free(out);
}

/* its backward, lf_cpu_gated_act_bwd_f32 act 0, against the derivative in
 * double: dgate = dout up s (1 + g (1 - s)), dup = dout g s; dgate's error
 * relative to the size of its terms, dout up s (1 + |g| (1 - s)) (near
 * g = -1.28 they cancel); 1 - s itself is off by up to an ulp of 1, which
 * g (1 - s) makes 1e-6 of the terms at g near 16 */
static void check_gated_silu_bwd(int isa, long n)
{
    float *g = malloc(n * sizeof *g), *u = malloc(n * sizeof *u), *d = malloc(n * sizeof *d);
    float *dg = malloc(n * sizeof *dg), *du = malloc(n * sizeof *du);
    for (long i = 0; i < n; i++) {
        g[i] = 40.0f * rng_uniform() - 20.0f;
        u[i] = rng_uniform() - 0.5f;
        d[i] = rng_uniform() - 0.5f;
    }
    lf_cpu_set_isa(isa);
    lf_cpu_gated_act_bwd_f32(dg, du, d, g, u, n, 0);
    lf_cpu_set_isa(-1);
    double worst_g = 0, worst_u = 0;
    for (long i = 0; i < n; i++) {
        double sg = 1.0 / (1.0 + exp(-(double)g[i]));
        double want_g = (double)d[i] * u[i] * sg * (1.0 + g[i] * (1.0 - sg)), want_u = (double)d[i] * g[i] * sg;
        double size_g = fabs((double)d[i] * u[i]) * sg * (1.0 + fabs(g[i]) * (1.0 - sg));
        double eg = fabs(dg[i] - want_g) / (size_g + 1e-30), eu = fabs(du[i] - want_u) / (fabs(want_u) + 1e-30);
        worst_g = (eg > worst_g || isnan(eg)) && size_g > 1e-30 ? eg : worst_g;
        worst_u = (eu > worst_u || isnan(eu)) && fabs(want_u) > 1e-30 ? eu : worst_u;
    }
    char name[64], detail[96];
    snprintf(name, sizeof name, "gated_act_silu_bwd_f32_%ld_%s", n, lf_cpu_isa_name(isa));
    snprintf(detail, sizeof detail, "max rel err dgate %.3g > 2e-6 or dup %.3g > 4e-7", worst_g, worst_u);
    report(worst_g <= 2e-6 && worst_u <= 4e-7, name, detail);
    free(g);
    free(u);
    free(d);
    free(dg);
    free(du);
}

/* RoPE against the rotation in double: rotary_dim of d rotated (the
 * halves [0, half) and [half, 2 half) paired), the rest of each head and
 * each row's padding untouched; head dims past 1024 too (the angles go in
 * pieces of 512). */
static void check_rope(int T, int heads, int d, int rotary_dim, int pad)
{
    int half = rotary_dim / 2, stride = heads * d + pad;
    size_t n = (size_t)T * stride;
    float *x = malloc(n * sizeof *x), *x0 = malloc(n * sizeof *x0), *inv = malloc((half + 1) * sizeof *inv);
    int32_t *pos = malloc(T * sizeof *pos);
    for (size_t i = 0; i < n; i++)
        x[i] = x0[i] = rng_uniform();
    for (int i = 0; i < half; i++)
        inv[i] = powf(10000.0f, -2.0f * i / rotary_dim);
    for (int t = 0; t < T; t++)
        pos[t] = 3 * t + 1;
    lf_cpu_rope_f32(x, pos, T, heads, d, stride, rotary_dim, inv, 1.25f);
    double max_err = 0;
    for (int t = 0; t < T; t++)
        for (int k = 0; k < stride; k++) {
            int h = k / d, i = k % d;
            double want = x0[(size_t)t * stride + k];
            if (h < heads && i < 2 * half) {
                int f = i < half ? i : i - half;
                float angle = (float)pos[t] * inv[f];
                double c = cosf(angle) * 1.25f, sn = sinf(angle) * 1.25f;
                const float *v = x0 + (size_t)t * stride + (size_t)h * d;
                want = i < half ? v[f] * c - v[f + half] * sn : v[f + half] * c + v[f] * sn;
            }
            double e = fabs(x[(size_t)t * stride + k] - want);
            max_err = e > max_err || isnan(e) ? e : max_err;
        }
    char name[80], detail[96];
    snprintf(name, sizeof name, "rope_f32_T%d_h%d_d%d_rot%d_pad%d", T, heads, d, rotary_dim, pad);
    snprintf(detail, sizeof detail, "max abs err %.3g > 1e-5", max_err);
    report(max_err <= 1e-5, name, detail);
    /* from a rope table (training's form): the same bits, forward and
       backward */
    float *cs = malloc((size_t)T * 2 * half * sizeof *cs), *y = malloc(n * sizeof *y);
    lf_cpu_rope_table_f32(cs, pos, T, half, inv, 1.25f);
    int same = 1;
    for (int sign = 1; sign >= -1; sign -= 2) {
        memcpy(x, x0, n * sizeof *x);
        memcpy(y, x0, n * sizeof *y);
        if (sign > 0)
            lf_cpu_rope_f32(x, pos, T, heads, d, stride, rotary_dim, inv, 1.25f);
        else
            lf_cpu_rope_bwd_f32(x, pos, T, heads, d, stride, rotary_dim, inv, 1.25f);
        lf_cpu_rope_apply_f32(y, cs, T, heads, d, stride, rotary_dim, (float)sign);
        same = same && !memcmp(x, y, n * sizeof *x);
    }
    snprintf(name, sizeof name, "rope_table_f32_T%d_h%d_d%d_rot%d_pad%d", T, heads, d, rotary_dim, pad);
    report(same, name, "the table's rotations differ from lf_cpu_rope_f32's or its backward's bits");
    free(cs);
    free(y);
    free(x);
    free(x0);
    free(inv);
    free(pos);
}

static void check_vector_kernels(void)
{
    lf_cpu_set_isa(-1);
    int best = lf_cpu_isa();
    printf("# this CPU's best instruction set: %s (the kernels are checked with it and each one below)\n",
           lf_cpu_isa_name(best));
    static const int gemv_shapes[][2] = { { 1, 1 },  { 3, 5 },     { 17, 15 },  { 33, 16 },  { 5, 17 },
                                          { 9, 31 }, { 64, 33 },   { 7, 63 },   { 11, 64 },  { 13, 65 },
                                          { 100, 127 }, { 257, 513 }, { 130, 1376 }, { 4, 0 }, { 0, 8 } };
    static const int attn[][7] = { /* T, q0, heads, kv_heads, d, window, softcap */
        { 1, 0, 2, 1, 8, 0, 0 },     { 1, 37, 4, 2, 16, 0, 0 },   { 1, 100, 3, 3, 13, 9, 0 },
        { 5, 0, 2, 2, 8, 0, 0 },     { 45, 0, 4, 2, 16, 0, 0 },   { 70, 3, 6, 2, 17, 0, 0 },
        { 33, 40, 2, 1, 64, 0, 0 },  { 64, 0, 4, 4, 16, 8, 0 },   { 40, 10, 2, 2, 8, 7, 4 },
        { 1, 20, 2, 2, 8, 0, 4 },    { 100, 0, 2, 1, 65, 31, 0 }, { 3, 10, 2, 1, 8, 0, 0 },
        { 4, 0, 2, 2, 16, 3, 0 },    { 7, 50, 4, 1, 130, 0, 0 },  { 257, 0, 2, 2, 64, 0, 0 },
        { 1, 300, 4, 2, 64, 0, 0 },  { 2, 200, 6, 3, 128, 50, 0 },
    };
    for (int isa = LF_CPU_ISA_PORTABLE; isa <= best; isa++) {
        check_exp(isa);
        check_vec_ops(isa);
        for (size_t j = 0; j < sizeof gemv_shapes / sizeof gemv_shapes[0]; j++)
            for (int M = 1; M <= 9; M += M < 5 ? 1 : 4) /* 1 2 3 4 5 9 */
                check_gemv(isa, M, gemv_shapes[j][0], gemv_shapes[j][1]);
        for (size_t j = 0; j < sizeof attn / sizeof attn[0]; j++)
            check_attention(isa, attn[j][0], attn[j][1], attn[j][2], attn[j][3], attn[j][4], attn[j][5],
                            (float)attn[j][6]);
        check_gated_silu(isa, 1000003);
        check_gated_silu(isa, 37);
        check_gated_silu_bwd(isa, 1000003);
        check_gated_silu_bwd(isa, 37);
    }
}

int main(void)
{
    check_bf16_patterns();
    check_bf16_roundtrip();
    check_bf16_random();
    static const int shapes[][3] = {
        { 1, 1, 1 }, { 3, 5, 7 }, { 16, 16, 16 }, { 64, 33, 129 },
        { 1, 257, 513 }, { 257, 129, 513 }, { 128, 96, 1024 }, { 4, 6, 0 },
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        check_matmul(shapes[i][0], shapes[i][1], shapes[i][2], 0.0f);
        check_matmul(shapes[i][0], shapes[i][1], shapes[i][2], 0.75f);
    }
    check_sgemm_shapes();
    check_vector_kernels();
    check_rope(3, 2, 8, 8, 0);
    check_rope(5, 3, 80, 40, 7);
    check_rope(2, 2, 2304, 2304, 3);
    check_rope(2, 1, 3000, 2050, 0);
    check_rope(300, 6, 64, 64, 0); /* the table made and applied on the threads */
    if (failures) {
        printf("kernels_cpu_check: %d check(s) failed\n", failures);
        return 1;
    }
    printf("kernels_cpu_check: all checks passed\n");
    return 0;
}

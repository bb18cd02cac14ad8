/* tests/cuda/cpu_ref_check.c — checks the CPU reference kernels
 * (kernels/cpu): lf_cpu_matmul_nt_f32 against a naive triple loop, and the
 * bf16 <-> f32 conversions against known bit patterns.  Built as
 * $(OUT)/tests/kernels_cpu_check; prints "ok NAME" or "FAIL NAME ..." per
 * check and exits 1 if any failed.  Needs no GPU. */
#include "cpu/bf16.h"
#include "cpu/matmul.h"

#include "test_rng.h"

#include <math.h>
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
    if (failures) {
        printf("kernels_cpu_check: %d check(s) failed\n", failures);
        return 1;
    }
    printf("kernels_cpu_check: all checks passed\n");
    return 0;
}

/* kernels/cpu/vec.h — single-threaded vector building blocks of the CPU
 * kernels (matmul.c, ops.c): dot products of matrix rows with one vector,
 * y += a x, exp with a known error, softmax's exp-and-sum, silu(gate) * up.
 * Each has an AVX-512 version (vec.c), used where the CPU has avx512f, an
 * AVX2 one (vec_avx2.c) for CPUs with AVX2 and FMA but not AVX-512 (AMD
 * before Zen 4, Intel's client cores), and a portable C version (vec.c).
 * The CPU is checked at run time and the vector code is compiled with
 * target attributes, so the build flags stay portable.  All compute the
 * same formulas; sums may be grouped differently.
 *
 * Every result of a row (a dot product, an exp) depends only on that row's
 * inputs, never on how the rows are split over calls or threads. */
#ifndef LF_KERNELS_CPU_VEC_H
#define LF_KERNELS_CPU_VEC_H

#ifdef __cplusplus
extern "C" {
#endif

/* Instruction sets, each a superset of the ones before it (AVX2 here
   means AVX2 with FMA) */
enum { LF_CPU_ISA_PORTABLE = 0, LF_CPU_ISA_AVX2 = 1, LF_CPU_ISA_AVX512 = 2 };

/* The instruction set the kernels use: the best this CPU has, or the one
   set by lf_cpu_set_isa if that is lower.  LF_CPU_ISA=portable or avx2 in
   the environment caps it the same way. */
int lf_cpu_isa(void);

/* "portable", "avx2" or "avx512" */
const char *lf_cpu_isa_name(int isa);
/* Thread t of nt's share [*lo, *hi) of n elements for an elementwise
   kernel: cut at multiples of 16, so every vector is whole but the last. */
static inline void lf_vec_share(long n, long t, long nt, long *lo, long *hi)
{
    *lo = n * t / nt / 16 * 16;
    *hi = t == nt - 1 ? n : n * (t + 1) / nt / 16 * 16;
}

/* Cap the instruction set (tests compare them all); -1: back to the CPU's
   best.  Asking for one the CPU lacks gives the best it has below it. */
void lf_cpu_set_isa(int isa);

/* out[r] = sum_k w[r * ldw + k] * x[k] for r < rows, made for many short
   rows (attention's keys against one query): 16 rows at a time (8 with
   AVX2), which share the summing of each row's partial sums. */
void lf_vec_dot_short_rows_f32(float *out, const float *w, long ldw, const float *x, int rows, int K);

/* Rows of a matrix against M vectors (matrix-vector products), each row
   of w read once for all of them, front to back with four accumulators
   (two with AVX2):
   out[m * ldo + r] = sum_k w[r * ldw + k] * x[m * ldx + k] for m < M,
   r < rows; each result has the same bits whatever M is. */
void lf_vec_dot_rows_m_f32(float *out, long ldo, const float *w, long ldw, const float *x, long ldx, int M, int rows,
                           int K);

/* out[j] (+)= sum_r p[r] * v[r * ldv + j] for j < n, r < rows: a
   weighted sum of rows (attention's probabilities times the values of one
   query), added to out when acc is 1, stored when 0 (the terms added in
   order after out); out must not alias p or v. */
void lf_vec_weighted_rows_f32(float *out, const float *p, const float *v, long ldv, int rows, int n, int acc);

/* sum of x[i]^2 for i < n. */
float lf_vec_sumsq_f32(const float *x, int n);

/* out[i] = x[i] * r * (w[i] + offset) for i < n (RMSNorm's scaling, in
   that order); out may alias x. */
void lf_vec_norm_apply_f32(float *out, const float *x, float r, const float *w, float offset, int n);

/* Attention's two products for a tile of up to LF_VEC_TILE rows of
   queries (nr <= LF_VEC_TILE), in registers, no packing:
   qk: sc[r * lds + s] = scale * sum_k q[r * ldq + k] * kt[k * ldt + s]
       for r < nr, s < n (kt: the keys transposed, [d, keys]);
   pv: out[r * ldo + j] = sum_s p[r * ldp + s] * v[s * ldv + j]
       for r < nr, j < d.
   Each row's result is the same whatever rows share its tile. */
enum { LF_VEC_TILE = 4 };
void lf_vec_qk_tile_f32(float *sc, long lds, const float *q, long ldq, int nr, const float *kt, long ldt, int n, int d,
                        float scale);
void lf_vec_pv_tile_f32(float *out, long ldo, const float *p, long ldp, int nr, const float *v, long ldv, int n,
                        int d);

/* dst[c * ldd + r] = src[r * lds + c] for r < rows, c < cols. */
void lf_vec_transpose_f32(float *dst, long ldd, const float *src, long lds, int rows, int cols);

/* RMSNorm's backward for one row, y = x r (w + offset):
   dx[i] += r g[i] (w[i] + offset) - x[i] c, c = r^3 / n sum g (w + offset) x
   (the sum in f32). */
void lf_vec_rmsnorm_bwd_row_f32(float *dx, const float *g, const float *x, const float *w, float offset, float r,
                                int n);

/* y[i] += a[i] * b[i] * s for i < n (a weight's gradient, row by row). */
void lf_vec_mul_axpy_f32(float *y, const float *a, const float *b, float s, int n);

/* y[i] += a * x[i] for i < n. */
void lf_vec_axpy_f32(float *y, float a, const float *x, int n);

/* x[i] *= a for i < n. */
void lf_vec_scale_f32(float *x, float a, int n);

/* exp(x) in f32: within 2 ulp of the exact value where that is a normal
   float; results under FLT_MIN (x < -87.3) come out as zero or subnormal
   with an absolute error under 2^-126, x > 88.72 gives +inf, NaN stays
   NaN.  The scalar form of what the vector forms compute. */
float lf_expf(float x);

/* x[i] = exp(x[i] - sub) for i < n (lf_expf's accuracy); returns their
   sum. */
float lf_vec_exp_sum_f32(float *x, int n, float sub);

/* out[i] = gate[i] / (1 + exp(-gate[i])) * up[i] for i < n; out may alias
   gate or up. */
void lf_vec_silu_mul_f32(float *out, const float *gate, const float *up, long n);

/* Its backward: with s = sigmoid(g), dgate = dout * up * s (1 + g (1 - s))
   and dup = dout * g s; dgate and dup must not alias the inputs. */
void lf_vec_silu_mul_bwd_f32(float *dgate, float *dup, const float *dout, const float *gate, const float *up, long n);

#ifdef __cplusplus
}
#endif

#endif

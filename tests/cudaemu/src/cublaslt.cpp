/* cudaemu: cuBLASLt matmul on the host.  D = alpha op(A) op(B) + beta C,
 * column-major as cuBLAS defines it, inputs widened exactly to double (TF32
 * / BF16 "fast" compute types round the inputs first, as the tensor cores
 * do), products summed in double by OpenBLAS's dgemm, the epilogue in double,
 * one rounding to D's type.  With beta == 0, C is not read.  Shapes, types,
 * leading dimensions and the pointers' device allocations are checked; a
 * mismatch aborts with a message (it is a bug in the caller). */
#include "cublasLt.h"
#include "cuda_bf16.h"
#include "cuda_fp16.h"

#include <set>
#include <algorithm>
#include <stdarg.h>
#include <vector>

extern "C" void cblas_dgemm(int order, int ta, int tb, int m, int n, int k, double alpha, const double *a, int lda,
                            const double *b, int ldb, double beta, double *c, int ldc);
enum { CblasColMajor = 102, CblasNoTrans = 111, CblasTrans = 112 };

struct cublasLtContext { int magic; };
struct cublasLtMatmulDescOpaque_st {
    cublasComputeType_t compute;
    cudaDataType_t scale;
    int pointer_mode, transa, transb, transc, epilogue, fill;
    const void *bias;
    int bias_type; /* -1: D's type */
    long long bias_stride;
};
struct cublasLtMatrixLayoutOpaque_st {
    cudaDataType_t type;
    int order;
    uint64_t rows, cols;
    int64_t ld;
    int batch;
    int64_t stride;
};
struct cublasLtMatmulPreferenceOpaque_st { size_t ws; };

static std::set<const void *> handles, descs, layouts, prefs;

static void lt_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void lt_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fflush(stdout);
    fprintf(stderr, "cudaemu cuBLASLt: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

static const char *type_name(int t)
{
    switch (t) {
    case CUDA_R_32F: return "CUDA_R_32F";
    case CUDA_R_64F: return "CUDA_R_64F";
    case CUDA_R_16F: return "CUDA_R_16F";
    case CUDA_R_16BF: return "CUDA_R_16BF";
    default: return "an unsupported type";
    }
}
static size_t type_size(int t)
{
    switch (t) {
    case CUDA_R_32F: return 4;
    case CUDA_R_64F: return 8;
    case CUDA_R_16F: case CUDA_R_16BF: return 2;
    default: return 0;
    }
}

extern "C" {

cublasStatus_t cublasLtCreate(cublasLtHandle_t *h)
{
    if (!h)
        return CUBLAS_STATUS_INVALID_VALUE;
    *h = new cublasLtContext{ 0x4c74 };
    handles.insert(*h);
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t h)
{
    if (!handles.count(h))
        return CUBLAS_STATUS_NOT_INITIALIZED;
    handles.erase(h);
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
size_t cublasLtGetVersion(void) { return CUBLASLT_VERSION; }
size_t cublasLtGetCudartVersion(void) { return 13000; }

const char *cublasLtGetStatusName(cublasStatus_t s)
{
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    }
    return "<unknown>";
}
const char *cublasLtGetStatusString(cublasStatus_t s)
{
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "the resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
    default: return cublasLtGetStatusName(s);
    }
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t compute, cudaDataType_t scale)
{
    switch (compute) {
    case CUBLAS_COMPUTE_32F: case CUBLAS_COMPUTE_32F_PEDANTIC: case CUBLAS_COMPUTE_32F_FAST_TF32:
    case CUBLAS_COMPUTE_32F_FAST_16BF: case CUBLAS_COMPUTE_32F_FAST_16F:
        if (scale != CUDA_R_32F)
            lt_die("cublasLtMatmulDescCreate: compute type %d needs scale type CUDA_R_32F, got %s", (int)compute,
                   type_name(scale));
        break;
    case CUBLAS_COMPUTE_64F: case CUBLAS_COMPUTE_64F_PEDANTIC:
        if (scale != CUDA_R_64F)
            lt_die("cublasLtMatmulDescCreate: CUBLAS_COMPUTE_64F needs scale type CUDA_R_64F");
        break;
    default:
        lt_die("cublasLtMatmulDescCreate: compute type %d is not emulated", (int)compute);
    }
    *d = new cublasLtMatmulDescOpaque_st{ compute, scale, 0, CUBLAS_OP_N, CUBLAS_OP_N, CUBLAS_OP_N,
                                          CUBLASLT_EPILOGUE_DEFAULT, 0, NULL, -1, 0 };
    descs.insert(*d);
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d)
{
    if (!descs.count(d))
        lt_die("cublasLtMatmulDescDestroy(%p): not a live descriptor", (void *)d);
    descs.erase(d);
    delete d;
    return CUBLAS_STATUS_SUCCESS;
}

static int read_int(const void *buf, size_t size, const char *what)
{
    if (size == 4) {
        int32_t v;
        memcpy(&v, buf, 4);
        return v;
    }
    if (size == 8) {
        int64_t v;
        memcpy(&v, buf, 8);
        return (int)v;
    }
    lt_die("%s: attribute size %zu (4 expected)", what, size);
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a,
                                              const void *buf, size_t size)
{
    const char *w = "cublasLtMatmulDescSetAttribute";
    if (!descs.count(d))
        lt_die("%s(%p): not a live descriptor", w, (void *)d);
    switch (a) {
    case CUBLASLT_MATMUL_DESC_COMPUTE_TYPE: d->compute = (cublasComputeType_t)read_int(buf, size, w); break;
    case CUBLASLT_MATMUL_DESC_SCALE_TYPE: d->scale = (cudaDataType_t)read_int(buf, size, w); break;
    case CUBLASLT_MATMUL_DESC_POINTER_MODE: d->pointer_mode = read_int(buf, size, w); break;
    case CUBLASLT_MATMUL_DESC_TRANSA: d->transa = read_int(buf, size, w); break;
    case CUBLASLT_MATMUL_DESC_TRANSB: d->transb = read_int(buf, size, w); break;
    case CUBLASLT_MATMUL_DESC_TRANSC: d->transc = read_int(buf, size, w); break;
    case CUBLASLT_MATMUL_DESC_FILL_MODE: d->fill = read_int(buf, size, w); break;
    case CUBLASLT_MATMUL_DESC_EPILOGUE: d->epilogue = read_int(buf, size, w); break;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
        if (size != sizeof(void *))
            lt_die("%s(BIAS_POINTER): size %zu", w, size);
        memcpy(&d->bias, buf, sizeof(void *));
        break;
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: d->bias_type = read_int(buf, size, w); break;
    case CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE:
        if (size != 8)
            lt_die("%s(BIAS_BATCH_STRIDE): size %zu", w, size);
        memcpy(&d->bias_stride, buf, 8);
        break;
    case CUBLASLT_MATMUL_DESC_SM_COUNT_TARGET: case CUBLASLT_MATMUL_DESC_FAST_ACCUM: break;
    default: lt_die("%s: attribute %d is not emulated", w, (int)a);
    }
    if (d->transa == CUBLAS_OP_C)
        d->transa = CUBLAS_OP_T; /* real data: the same */
    if (d->transb == CUBLAS_OP_C)
        d->transb = CUBLAS_OP_T;
    if ((d->transa != CUBLAS_OP_N && d->transa != CUBLAS_OP_T) ||
        (d->transb != CUBLAS_OP_N && d->transb != CUBLAS_OP_T))
        lt_die("%s: bad transpose value", w);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescGetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a, void *buf,
                                              size_t size, size_t *written)
{
    int32_t v = 0;
    switch (a) {
    case CUBLASLT_MATMUL_DESC_COMPUTE_TYPE: v = d->compute; break;
    case CUBLASLT_MATMUL_DESC_SCALE_TYPE: v = d->scale; break;
    case CUBLASLT_MATMUL_DESC_POINTER_MODE: v = d->pointer_mode; break;
    case CUBLASLT_MATMUL_DESC_TRANSA: v = d->transa; break;
    case CUBLASLT_MATMUL_DESC_TRANSB: v = d->transb; break;
    case CUBLASLT_MATMUL_DESC_TRANSC: v = d->transc; break;
    case CUBLASLT_MATMUL_DESC_EPILOGUE: v = d->epilogue; break;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
        if (written) *written = sizeof(void *);
        if (size < sizeof(void *)) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(buf, &d->bias, sizeof(void *));
        return CUBLAS_STATUS_SUCCESS;
    default: return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (written) *written = 4;
    if (size < 4) return CUBLAS_STATUS_INVALID_VALUE;
    memcpy(buf, &v, 4);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType type, uint64_t rows, uint64_t cols,
                                          int64_t ld)
{
    if (!type_size(type))
        lt_die("cublasLtMatrixLayoutCreate: type %d is not emulated (CUDA_R_32F, CUDA_R_64F, CUDA_R_16F, "
               "CUDA_R_16BF are)", (int)type);
    if (rows && (ld < (int64_t)rows))
        lt_die("cublasLtMatrixLayoutCreate(%s, rows %llu, cols %llu, ld %lld): ld < rows (column-major)",
               type_name(type), (unsigned long long)rows, (unsigned long long)cols, (long long)ld);
    *l = new cublasLtMatrixLayoutOpaque_st{ type, CUBLASLT_ORDER_COL, rows, cols, ld, 1, 0 };
    layouts.insert(*l);
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l)
{
    if (!layouts.count(l))
        lt_die("cublasLtMatrixLayoutDestroy(%p): not a live layout", (void *)l);
    layouts.erase(l);
    delete l;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t a,
                                                const void *buf, size_t size)
{
    const char *w = "cublasLtMatrixLayoutSetAttribute";
    if (!layouts.count(l))
        lt_die("%s(%p): not a live layout", w, (void *)l);
    int64_t v = 0;
    if (size == 4) {
        int32_t x;
        memcpy(&x, buf, 4);
        v = x;
    } else if (size == 8)
        memcpy(&v, buf, 8);
    else
        lt_die("%s: attribute size %zu", w, size);
    switch (a) {
    case CUBLASLT_MATRIX_LAYOUT_TYPE: l->type = (cudaDataType_t)v; break;
    case CUBLASLT_MATRIX_LAYOUT_ORDER: l->order = (int)v; break;
    case CUBLASLT_MATRIX_LAYOUT_ROWS: l->rows = (uint64_t)v; break;
    case CUBLASLT_MATRIX_LAYOUT_COLS: l->cols = (uint64_t)v; break;
    case CUBLASLT_MATRIX_LAYOUT_LD: l->ld = v; break;
    case CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT: l->batch = (int)v; break;
    case CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET: l->stride = v; break;
    default: lt_die("%s: attribute %d is not emulated", w, (int)a);
    }
    if (l->order != CUBLASLT_ORDER_COL && l->order != CUBLASLT_ORDER_ROW)
        lt_die("%s: only CUBLASLT_ORDER_COL and CUBLASLT_ORDER_ROW are emulated", w);
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutGetAttribute(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t a,
                                                void *buf, size_t size, size_t *written)
{
    int64_t v;
    switch (a) {
    case CUBLASLT_MATRIX_LAYOUT_TYPE: v = l->type; break;
    case CUBLASLT_MATRIX_LAYOUT_ORDER: v = l->order; break;
    case CUBLASLT_MATRIX_LAYOUT_ROWS: v = (int64_t)l->rows; break;
    case CUBLASLT_MATRIX_LAYOUT_COLS: v = (int64_t)l->cols; break;
    case CUBLASLT_MATRIX_LAYOUT_LD: v = l->ld; break;
    case CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT: v = l->batch; break;
    case CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET: v = l->stride; break;
    default: return CUBLAS_STATUS_INVALID_VALUE;
    }
    size_t need = a == CUBLASLT_MATRIX_LAYOUT_LD || a == CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET ||
                          a == CUBLASLT_MATRIX_LAYOUT_ROWS || a == CUBLASLT_MATRIX_LAYOUT_COLS
                      ? 8 : 4;
    if (written) *written = need;
    if (size < need) return CUBLAS_STATUS_INVALID_VALUE;
    if (need == 8)
        memcpy(buf, &v, 8);
    else {
        int32_t x = (int32_t)v;
        memcpy(buf, &x, 4);
    }
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p)
{
    *p = new cublasLtMatmulPreferenceOpaque_st{ 0 };
    prefs.insert(*p);
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p)
{
    if (!prefs.count(p))
        lt_die("cublasLtMatmulPreferenceDestroy(%p): not a live preference", (void *)p);
    prefs.erase(p);
    delete p;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                    cublasLtMatmulPreferenceAttributes_t a, const void *buf,
                                                    size_t size)
{
    if (!prefs.count(p))
        lt_die("cublasLtMatmulPreferenceSetAttribute(%p): not a live preference", (void *)p);
    if (a == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES) {
        if (size != 8)
            lt_die("cublasLtMatmulPreferenceSetAttribute(MAX_WORKSPACE_BYTES): size %zu, uint64_t expected", size);
        memcpy(&p->ws, buf, 8);
    }
    return CUBLAS_STATUS_SUCCESS;
}

} /* extern "C" */

/* ---- the product ------------------------------------------------------------------ */
struct shape {
    long long m, n, k;
};

static void check_layout(const char *who, const char *name, cublasLtMatrixLayout_t l)
{
    if (!l || !layouts.count(l))
        lt_die("%s: %s layout %p is not a live cublasLtMatrixLayout_t", who, name, (void *)l);
}

static long long lrows(cublasLtMatrixLayout_t l) { return (long long)l->rows; }
static long long lcols(cublasLtMatrixLayout_t l) { return (long long)l->cols; }

static void describe(char *buf, size_t len, const char *name, cublasLtMatrixLayout_t l)
{
    snprintf(buf, len, "%s: %s %lld x %lld ld %lld%s", name, type_name(l->type), lrows(l), lcols(l), (long long)l->ld,
             l->order == CUBLASLT_ORDER_ROW ? " (row-major)" : "");
}

static shape check_shapes(const char *who, cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t A, cublasLtMatrixLayout_t B,
                          cublasLtMatrixLayout_t C, cublasLtMatrixLayout_t D)
{
    if (!op || !descs.count(op))
        lt_die("%s: matmul descriptor %p is not live", who, (void *)op);
    check_layout(who, "A", A);
    check_layout(who, "B", B);
    check_layout(who, "C", C);
    check_layout(who, "D", D);
    if (op->transc != CUBLAS_OP_N)
        lt_die("%s: TRANSC must be CUBLAS_OP_N", who);
    shape s;
    s.m = lrows(D);
    s.n = lcols(D);
    long long am = op->transa == CUBLAS_OP_N ? lrows(A) : lcols(A), ak = op->transa == CUBLAS_OP_N ? lcols(A) : lrows(A);
    long long bk = op->transb == CUBLAS_OP_N ? lrows(B) : lcols(B), bn = op->transb == CUBLAS_OP_N ? lcols(B) : lrows(B);
    s.k = ak;
    char da[160], db[160], dc[160], dd[160];
    describe(da, sizeof da, "A", A);
    describe(db, sizeof db, "B", B);
    describe(dc, sizeof dc, "C", C);
    describe(dd, sizeof dd, "D", D);
    const char *msg = NULL;
    if (am != s.m)
        msg = "op(A) has a different number of rows than D (m)";
    else if (bn != s.n)
        msg = "op(B) has a different number of columns than D (n)";
    else if (ak != bk)
        msg = "op(A)'s columns and op(B)'s rows differ (k)";
    else if (lrows(C) != s.m || lcols(C) != s.n)
        msg = "C and D differ in shape";
    else if (A->type != B->type)
        msg = "A and B have different types";
    else if (C->type != D->type)
        msg = "C and D have different types";
    else if (A->batch != D->batch || B->batch != D->batch || C->batch != D->batch)
        msg = "batch counts differ";
    else if (C->order != D->order)
        msg = "C and D have different orders";
    if (msg)
        lt_die("%s: %s\n    transa %s, transb %s; %s; %s; %s; %s", who, msg, op->transa == CUBLAS_OP_N ? "N" : "T",
               op->transb == CUBLAS_OP_N ? "N" : "T", da, db, dc, dd);
    cublasLtMatrixLayout_t all[4] = { A, B, C, D };
    for (int i = 0; i < 4; i++) {
        cublasLtMatrixLayout_t l = all[i];
        long long inner = l->order == CUBLASLT_ORDER_COL ? lrows(l) : lcols(l);
        if (inner > 0 && l->ld < inner)
            lt_die("%s: matrix %c: ld %lld is less than its %s %lld", who, "ABCD"[i], (long long)l->ld,
                   l->order == CUBLASLT_ORDER_COL ? "rows" : "cols", inner);
    }
    if (D->type == CUDA_R_64F || A->type == CUDA_R_64F) {
        if (op->compute != CUBLAS_COMPUTE_64F && op->compute != CUBLAS_COMPUTE_64F_PEDANTIC)
            lt_die("%s: f64 matrices need CUBLAS_COMPUTE_64F", who);
    } else if (op->compute == CUBLAS_COMPUTE_64F || op->compute == CUBLAS_COMPUTE_64F_PEDANTIC)
        lt_die("%s: CUBLAS_COMPUTE_64F needs f64 matrices", who);
    if (A->type == CUDA_R_32F && D->type != CUDA_R_32F)
        lt_die("%s: f32 A and B with %s C/D: not a cuBLASLt combination", who, type_name(D->type));
    if (op->compute == CUBLAS_COMPUTE_32F_FAST_TF32 && A->type != CUDA_R_32F)
        lt_die("%s: CUBLAS_COMPUTE_32F_FAST_TF32 with %s inputs", who, type_name(A->type));
    return s;
}

/* bytes a matrix spans from its pointer (all batches) */
static size_t extent(cublasLtMatrixLayout_t l)
{
    long long outer = l->order == CUBLASLT_ORDER_COL ? lcols(l) : lrows(l);
    long long inner = l->order == CUBLASLT_ORDER_COL ? lrows(l) : lcols(l);
    if (!outer || !inner)
        return 0;
    long long elems = (outer - 1) * l->ld + inner + (long long)(l->batch - 1) * (l->stride > 0 ? l->stride : 0);
    return (size_t)elems * type_size(l->type);
}

static double load(const void *p, int type, size_t i)
{
    switch (type) {
    case CUDA_R_32F: return ((const float *)p)[i];
    case CUDA_R_64F: return ((const double *)p)[i];
    case CUDA_R_16BF: return emu_bf16_bits_to_f32(((const uint16_t *)p)[i]);
    case CUDA_R_16F: return emu_f16_bits_to_f32(((const uint16_t *)p)[i]);
    }
    return NAN;
}
static void store(void *p, int type, size_t i, double v)
{
    switch (type) {
    case CUDA_R_32F: ((float *)p)[i] = (float)v; break;
    case CUDA_R_64F: ((double *)p)[i] = v; break;
    case CUDA_R_16BF: ((uint16_t *)p)[i] = emu_f32_to_bf16_bits((float)v); break;
    case CUDA_R_16F: ((uint16_t *)p)[i] = emu_f32_to_f16_bits((float)v); break;
    }
}
static size_t at(cublasLtMatrixLayout_t l, long long r, long long c)
{
    return l->order == CUBLASLT_ORDER_COL ? (size_t)(c * l->ld + r) : (size_t)(r * l->ld + c);
}
static float round_tf32(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) != 0x7f800000u) {
        u += 0xfffu + ((u >> 13) & 1u);
        u &= ~0x1fffu;
    }
    memcpy(&x, &u, 4);
    return x;
}

/* the stored matrix as dense column-major doubles, rounded as the compute type says */
static std::vector<double> widen(const void *p, cublasLtMatrixLayout_t l, long long batch, int compute)
{
    long long R = lrows(l), Cn = lcols(l);
    std::vector<double> out((size_t)(R * Cn));
    const char *base = (const char *)p + (size_t)(batch * l->stride) * type_size(l->type);
    static int tf32 = -1;
    if (tf32 < 0)
        tf32 = !getenv("EMU_TF32") || atoi(getenv("EMU_TF32")) != 0;
    for (long long c = 0; c < Cn; c++)
        for (long long r = 0; r < R; r++) {
            double v = load(base, l->type, at(l, r, c));
            if (l->type == CUDA_R_32F) {
                if (compute == CUBLAS_COMPUTE_32F_FAST_TF32 && tf32)
                    v = round_tf32((float)v);
                else if (compute == CUBLAS_COMPUTE_32F_FAST_16BF)
                    v = emu_bf16_bits_to_f32(emu_f32_to_bf16_bits((float)v));
                else if (compute == CUBLAS_COMPUTE_32F_FAST_16F)
                    v = emu_f16_bits_to_f32(emu_f32_to_f16_bits((float)v));
            }
            out[(size_t)(c * R + r)] = v;
        }
    return out;
}

extern "C" cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t op,
                                                         cublasLtMatrixLayout_t A, cublasLtMatrixLayout_t B,
                                                         cublasLtMatrixLayout_t C, cublasLtMatrixLayout_t D,
                                                         cublasLtMatmulPreference_t pref, int requested,
                                                         cublasLtMatmulHeuristicResult_t results[], int *returned)
{
    const char *who = "cublasLtMatmulAlgoGetHeuristic";
    if (!handles.count(h))
        lt_die("%s: handle %p is not live (cublasLtCreate)", who, (void *)h);
    if (pref && !prefs.count(pref))
        lt_die("%s: preference %p is not live", who, (void *)pref);
    check_shapes(who, op, A, B, C, D);
    if (requested < 1 || !results || !returned)
        return CUBLAS_STATUS_INVALID_VALUE;
    memset(&results[0], 0, sizeof results[0]);
    results[0].algo.data[0] = 0x656d75; /* "emu" */
    results[0].workspaceSize = 0;
    results[0].state = CUBLAS_STATUS_SUCCESS;
    results[0].wavesCount = 1.0f;
    *returned = 1;
    return CUBLAS_STATUS_SUCCESS;
}

extern "C" cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t op, const void *alpha,
                                         const void *A, cublasLtMatrixLayout_t Ad, const void *B,
                                         cublasLtMatrixLayout_t Bd, const void *beta, const void *C,
                                         cublasLtMatrixLayout_t Cd, void *D, cublasLtMatrixLayout_t Dd,
                                         const cublasLtMatmulAlgo_t *algo, void *ws, size_t ws_size,
                                         cudaStream_t stream)
{
    const char *who = "cublasLtMatmul";
    (void)algo;
    (void)stream;
    if (!handles.count(h))
        lt_die("%s: handle %p is not live (cublasLtCreate)", who, (void *)h);
    shape s = check_shapes(who, op, Ad, Bd, Cd, Dd);
    if (!alpha || !beta)
        lt_die("%s: alpha or beta is NULL", who);
    if (ws_size && ws)
        emu_require_device(who, "workspace", ws, ws_size);
    int dev_scalars = op->pointer_mode == CUBLASLT_POINTER_MODE_DEVICE;
    if (op->pointer_mode != CUBLASLT_POINTER_MODE_HOST && !dev_scalars)
        lt_die("%s: pointer mode %d is not emulated", who, op->pointer_mode);
    if (dev_scalars) {
        emu_require_device(who, "alpha (POINTER_MODE_DEVICE)", alpha, op->scale == CUDA_R_64F ? 8 : 4);
        emu_require_device(who, "beta (POINTER_MODE_DEVICE)", beta, op->scale == CUDA_R_64F ? 8 : 4);
    }
    double al = op->scale == CUDA_R_64F ? *(const double *)alpha : *(const float *)alpha;
    double be = op->scale == CUDA_R_64F ? *(const double *)beta : *(const float *)beta;
    int ep = op->epilogue;
    int has_bias = 0, act = 0; /* act 1 relu, 2 gelu */
    switch (ep) {
    case CUBLASLT_EPILOGUE_DEFAULT: break;
    case CUBLASLT_EPILOGUE_RELU: act = 1; break;
    case CUBLASLT_EPILOGUE_BIAS: has_bias = 1; break;
    case CUBLASLT_EPILOGUE_RELU_BIAS: has_bias = 1, act = 1; break;
    case CUBLASLT_EPILOGUE_GELU: act = 2; break;
    case CUBLASLT_EPILOGUE_GELU_BIAS: has_bias = 1, act = 2; break;
    default: lt_die("%s: epilogue %d is not emulated (DEFAULT, RELU, BIAS, RELU_BIAS, GELU, GELU_BIAS are)", who, ep);
    }
    int bias_type = op->bias_type >= 0 ? op->bias_type : Dd->type == CUDA_R_16BF || Dd->type == CUDA_R_16F ? Dd->type
                                                                                                              : CUDA_R_32F;
    if (has_bias) {
        if (!op->bias)
            lt_die("%s: a BIAS epilogue without CUBLASLT_MATMUL_DESC_BIAS_POINTER", who);
        emu_require_device(who, "bias", op->bias,
                           (size_t)(s.m + (Dd->batch - 1) * op->bias_stride) * type_size(bias_type));
    }
    if (s.m == 0 || s.n == 0)
        return CUBLAS_STATUS_SUCCESS;
    size_t ea = extent(Ad), eb = extent(Bd), ec = extent(Cd), ed = extent(Dd);
    if (s.k > 0) {
        emu_require_device(who, "A", A, ea);
        emu_require_device(who, "B", B, eb);
    }
    if (be != 0.0)
        emu_require_device(who, "C", C, ec);
    emu_require_device(who, "D", D, ed);
    if (be != 0.0 && C == D && (Cd->ld != Dd->ld || Cd->order != Dd->order))
        lt_die("%s: C == D (in place) needs the same layout for C and D", who);

    std::vector<double> acc((size_t)(s.m * s.n));
    for (long long b = 0; b < Dd->batch; b++) {
        std::fill(acc.begin(), acc.end(), 0.0);
        if (s.k > 0 && al != 0.0) {
            std::vector<double> a = widen(A, Ad, b, op->compute), bm = widen(B, Bd, b, op->compute);
            cblas_dgemm(CblasColMajor, op->transa == CUBLAS_OP_N ? CblasNoTrans : CblasTrans,
                        op->transb == CUBLAS_OP_N ? CblasNoTrans : CblasTrans, (int)s.m, (int)s.n, (int)s.k, 1.0,
                        a.data(), (int)(lrows(Ad) ? lrows(Ad) : 1), bm.data(), (int)(lrows(Bd) ? lrows(Bd) : 1), 0.0,
                        acc.data(), (int)s.m);
        }
        const char *cb = (const char *)C + (size_t)(b * Cd->stride) * type_size(Cd->type);
        char *db = (char *)D + (size_t)(b * Dd->stride) * type_size(Dd->type);
        const char *bb = has_bias ? (const char *)op->bias + (size_t)(b * op->bias_stride) * type_size(bias_type) : NULL;
        for (long long j = 0; j < s.n; j++)
            for (long long i = 0; i < s.m; i++) {
                double v = al * acc[(size_t)(j * s.m + i)];
                if (be != 0.0)
                    v += be * load(cb, Cd->type, at(Cd, i, j));
                if (has_bias)
                    v += load(bb, bias_type, (size_t)i);
                if (act == 1)
                    v = v > 0 ? v : 0;
                else if (act == 2)
                    v = 0.5 * v * (1.0 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
                store(db, Dd->type, at(Dd, i, j), v);
            }
    }
    return CUBLAS_STATUS_SUCCESS;
}

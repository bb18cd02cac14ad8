/* cudaemu: the portable WMMA API (nvcuda::wmma) on the CPU.
 *
 * Fragments hold the WHOLE tile in every thread (num_elements = rows x
 * cols, the logical matrix in row-major order whatever the layout), so each
 * emulated lane computes the full product redundantly; code that is correct
 * on a GPU touches fragment elements only through load/store/fill and
 * uniform loops over num_elements, which give the same result here.
 *
 * Faithfulness:
 *  - inputs are whatever the fragment's element type holds (__nv_bfloat16:
 *    already rounded to nearest even when the caller converted it; __half;
 *    float for tf32 is NOT rounded - not used by lf); products are formed in
 *    f32 (exact for bf16/half x bf16/half) and summed in f32 in k order onto
 *    the accumulator (a GPU's tensor core sums in f32 too, its internal
 *    order/alignment differs in the last bits);
 *  - every operation is warp-collective: it starts with __syncwarp(), so a
 *    lane that diverges (skips the call, has exited, waits at a barrier) is
 *    reported by the emulator as on a GPU it would hang or be undefined;
 *  - store_matrix_sync writes only this lane's share of the tile (element e
 *    of the row-major tile by lane e % 32): a lane reading elements another
 *    lane of the warp stored before a __syncwarp/__syncthreads sees what
 *    was there before, as on a GPU;
 *  - load_matrix_sync reads the whole tile: ldm and the layout are
 *    honoured (element (r, c) at p[r * ldm + c] for row-major, p[r + c *
 *    ldm] for column-major). The CUDA requirements (ldm a multiple of 8 for
 *    16-bit types, 4 for float; pointer 32-byte aligned) are checked and
 *    trap, since a GPU gives garbage or faults there. */
#ifndef CUDAEMU_MMA_H
#define CUDAEMU_MMA_H
#include "cuda_runtime.h"
#include "cuda_bf16.h"
#include "cuda_fp16.h"

#include <stdint.h>

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K> struct emu_frag_shape;
template <int M, int N, int K> struct emu_frag_shape<matrix_a, M, N, K> { enum { rows = M, cols = K }; };
template <int M, int N, int K> struct emu_frag_shape<matrix_b, M, N, K> { enum { rows = K, cols = N }; };
template <int M, int N, int K> struct emu_frag_shape<accumulator, M, N, K> { enum { rows = M, cols = N }; };

template <class Use, int M, int N, int K, class T, class Layout = void> class fragment {
  public:
    enum { rows = emu_frag_shape<Use, M, N, K>::rows, cols = emu_frag_shape<Use, M, N, K>::cols };
    enum { num_elements = rows * cols, num_storage_elements = rows * cols };
    typedef T element_type;
    typedef T storage_element_type;
    T x[num_elements];
};

static inline int emu_wmma_lane(void)
{
    unsigned lin = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    return (int)(lin & 31u);
}

static inline void emu_wmma_check(const void *p, unsigned ldm, size_t esize, const char *who)
{
    /* the emulator's dynamic shared memory is malloc'ed (16-byte aligned);
       a GPU's starts at least 128-byte aligned: check the offset there */
    uintptr_t a = (uintptr_t)p, base = (uintptr_t)emu_dyn_smem;
    if (emu_dyn_smem && a >= base && a < base + 256 * 1024)
        a -= base;
    if ((a & 31u) != 0)
        emu_trap(esize == 4 ? "wmma load/store: pointer not 32-byte aligned"
                            : "wmma load/store: pointer not 32-byte aligned (16-bit elements)");
    if ((ldm * esize) % 16 != 0) {
        (void)who;
        emu_trap("wmma load/store: ldm not a multiple of 16 bytes (8 16-bit / 4 32-bit elements)");
    }
}

template <class L> struct emu_is_col : std::false_type {};
template <> struct emu_is_col<col_major> : std::true_type {};

/* matrix_a / matrix_b with the layout in the type */
template <class Use, int M, int N, int K, class T, class Layout>
static inline void load_matrix_sync(fragment<Use, M, N, K, T, Layout> &f, const T *p, unsigned ldm)
{
    typedef fragment<Use, M, N, K, T, Layout> F;
    static_assert(!std::is_same<Use, accumulator>::value, "accumulator loads need a layout_t");
    __syncwarp();
    emu_wmma_check(p, ldm, sizeof(T), "load_matrix_sync");
    for (int r = 0; r < F::rows; r++)
        for (int c = 0; c < F::cols; c++)
            f.x[r * F::cols + c] = emu_is_col<Layout>::value ? p[r + (size_t)c * ldm] : p[(size_t)r * ldm + c];
}

/* accumulators: the layout given at the call */
template <int M, int N, int K, class T>
static inline void load_matrix_sync(fragment<accumulator, M, N, K, T, void> &f, const T *p, unsigned ldm,
                                    layout_t layout)
{
    typedef fragment<accumulator, M, N, K, T, void> F;
    __syncwarp();
    emu_wmma_check(p, ldm, sizeof(T), "load_matrix_sync");
    for (int r = 0; r < F::rows; r++)
        for (int c = 0; c < F::cols; c++)
            f.x[r * F::cols + c] = layout == mem_col_major ? p[r + (size_t)c * ldm] : p[(size_t)r * ldm + c];
}

template <int M, int N, int K, class T>
static inline void store_matrix_sync(T *p, const fragment<accumulator, M, N, K, T, void> &f, unsigned ldm,
                                     layout_t layout)
{
    typedef fragment<accumulator, M, N, K, T, void> F;
    __syncwarp();
    emu_wmma_check(p, ldm, sizeof(T), "store_matrix_sync");
    int lane = emu_wmma_lane();
    for (int e = lane; e < F::num_elements; e += 32) {
        int r = e / F::cols, c = e % F::cols;
        if (layout == mem_col_major)
            p[r + (size_t)c * ldm] = f.x[e];
        else
            p[(size_t)r * ldm + c] = f.x[e];
    }
}

template <class Use, int M, int N, int K, class T, class Layout, class V>
static inline void fill_fragment(fragment<Use, M, N, K, T, Layout> &f, const V &v)
{
    __syncwarp();
    T t = (T)v;
    for (int e = 0; e < fragment<Use, M, N, K, T, Layout>::num_elements; e++)
        f.x[e] = t;
}

/* d = a b + c: f32 products of the (already rounded) inputs, summed in f32
   in k order onto c; d may alias c */
template <int M, int N, int K, class TA, class LA, class TB, class LB, class TC>
static inline void mma_sync(fragment<accumulator, M, N, K, TC, void> &d, const fragment<matrix_a, M, N, K, TA, LA> &a,
                            const fragment<matrix_b, M, N, K, TB, LB> &b,
                            const fragment<accumulator, M, N, K, TC, void> &c, bool satf = false)
{
    (void)satf;
    __syncwarp();
    float af[M * K], bt[N * K], out[M * N];
    for (int e = 0; e < M * K; e++)
        af[e] = (float)a.x[e];
    for (int kk = 0; kk < K; kk++)
        for (int j = 0; j < N; j++)
            bt[j * K + kk] = (float)b.x[kk * N + j];
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float s = (float)c.x[i * N + j];
            for (int kk = 0; kk < K; kk++)
                s += af[i * K + kk] * bt[j * K + kk];
            out[i * N + j] = s;
        }
    for (int e = 0; e < M * N; e++)
        d.x[e] = (TC)out[e];
}

} // namespace wmma
} // namespace nvcuda

#endif

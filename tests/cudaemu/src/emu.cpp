/* cudaemu runtime: kernel execution (blocks one after another, the threads
 * of a block as fibers switched at __syncthreads and warp operations),
 * device memory bookkeeping, streams, events, errors, device properties. */
#include "cuda_runtime.h"

#include <map>
#include <set>
#include <string>
#include <vector>

#include <errno.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#else
#define EMU_ASAN 0
#endif

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;
char *emu_dyn_smem;

/* ---- configuration (environment) ------------------------------------------- */
static struct {
    int init;
    int order; /* 0 fwd, 1 rev, 2 rand */
    unsigned long long seed;
    int verbose;
    int exit_barrier_ok;
    int lax;
    int nodev;
    int smem_optin;
    size_t stack;
} cfg;

static void cfg_init(void)
{
    if (cfg.init)
        return;
    cfg.init = 1;
    const char *e = getenv("EMU_ORDER");
    cfg.order = !e ? 0 : !strcmp(e, "rev") ? 1 : !strcmp(e, "rand") ? 2 : 0;
    e = getenv("EMU_SEED");
    cfg.seed = e ? strtoull(e, NULL, 0) : 12345;
    cfg.verbose = getenv("EMU_VERBOSE") ? atoi(getenv("EMU_VERBOSE")) : 0;
    cfg.exit_barrier_ok = getenv("EMU_EXIT_BARRIER_OK") != NULL;
    cfg.lax = getenv("EMU_LAX") != NULL;
    cfg.nodev = getenv("EMU_NODEV") != NULL;
    e = getenv("EMU_SMEM_OPTIN");
    cfg.smem_optin = e ? atoi(e) : 232448;
    e = getenv("EMU_STACK_KB");
    cfg.stack = (size_t)(e ? atoi(e) : (EMU_ASAN ? 512 : 256)) << 10;
}

static unsigned long long rng_next(void)
{
    cfg.seed = cfg.seed * 6364136223846793005ull + 1442695040888963407ull;
    return cfg.seed >> 33;
}

/* ---- errors ----------------------------------------------------------------- */
static cudaError_t last_error = cudaSuccess;
static cudaError_t ret(cudaError_t e)
{
    if (e != cudaSuccess)
        last_error = e;
    return e;
}

cudaError_t cudaGetLastError(void)
{
    cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}
cudaError_t cudaPeekAtLastError(void) { return last_error; }

const char *cudaGetErrorName(cudaError_t e)
{
    switch (e) {
#define C(x) case x: return #x;
    C(cudaSuccess) C(cudaErrorInvalidValue) C(cudaErrorMemoryAllocation) C(cudaErrorInitializationError)
    C(cudaErrorCudartUnloading) C(cudaErrorInvalidConfiguration) C(cudaErrorInvalidSymbol)
    C(cudaErrorInvalidDevicePointer) C(cudaErrorInvalidMemcpyDirection) C(cudaErrorInvalidDeviceFunction)
    C(cudaErrorNoDevice) C(cudaErrorInvalidDevice) C(cudaErrorInvalidResourceHandle) C(cudaErrorNotReady)
    C(cudaErrorIllegalAddress) C(cudaErrorLaunchOutOfResources) C(cudaErrorAssert) C(cudaErrorMisalignedAddress)
    C(cudaErrorLaunchFailure) C(cudaErrorNotSupported) C(cudaErrorUnknown)
#undef C
    }
    return "cudaErrorUnknown";
}

const char *cudaGetErrorString(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInitializationError: return "initialization error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorInvalidDeviceFunction: return "invalid device function";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorNotSupported: return "operation not supported";
    default: return "unknown error";
    }
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fflush(stdout);
    fprintf(stderr, "cudaemu: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

/* ---- fibers ------------------------------------------------------------------- */
extern "C" void emu_switch(void **from_sp, void *to_sp);
asm(R"(
.text
.globl emu_switch
.type emu_switch,@function
emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
.size emu_switch,.-emu_switch
)");

enum { MAXT = 1024 };
enum { ST_NEW, ST_RUN, ST_WARP, ST_BAR, ST_DONE };

static struct {
    void *sp;
    char *stack; /* lowest usable byte */
    void *fake;
    int state;
    int wop, warg, wwidth;
    unsigned wmask;
    uint64_t wval, wres;
    int bop, bval, bres;
} th[MAXT];

static std::vector<char *> free_stacks;
static void *sched_sp;
static void *sched_fake;
static const void *sched_bottom;
static size_t sched_size;
static int cur = -1, nthreads, in_kernel;
static emu_body_fn cur_body;
static void *cur_ctx;
static const char *cur_name, *cur_file;
static int cur_line;
static unsigned long long n_launches, n_blocks, n_phases;

static char *stack_get(void)
{
    if (!free_stacks.empty()) {
        char *s = free_stacks.back();
        free_stacks.pop_back();
#if EMU_ASAN
        __asan_unpoison_memory_region(s, cfg.stack);
#endif
        return s;
    }
    size_t page = 4096;
    char *m = (char *)mmap(NULL, cfg.stack + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                           -1, 0);
    if (m == MAP_FAILED)
        die("mmap of a fiber stack failed: %s", strerror(errno));
    mprotect(m, page, PROT_NONE); /* guard: a fiber stack overflow faults */
    return m + page;
}

static void fiber_yield(int final)
{
    int t = cur;
#if EMU_ASAN
    __sanitizer_start_switch_fiber(final ? NULL : &th[t].fake, sched_bottom, sched_size);
#else
    (void)final;
#endif
    emu_switch(&th[t].sp, sched_sp);
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(th[cur].fake, &sched_bottom, &sched_size);
#endif
}

static void fiber_start(void)
{
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(NULL, &sched_bottom, &sched_size);
#endif
    cur_body(cur_ctx);
    th[cur].state = ST_DONE;
    fiber_yield(1);
    die("a finished fiber was resumed");
}

static void set_thread_idx(int t)
{
    unsigned bx = blockDim.x, by = blockDim.y;
    threadIdx.x = t % bx;
    threadIdx.y = (t / bx) % by;
    threadIdx.z = t / (bx * by);
}

static void resume(int t)
{
    if (th[t].state == ST_NEW) {
        th[t].stack = stack_get();
        uintptr_t top = (uintptr_t)(th[t].stack + cfg.stack) & ~(uintptr_t)15;
        void **sp = (void **)(top - 72); /* fiber_start is entered with rsp = top - 8, as after a call */
        memset(sp, 0, 72);
        unsigned int mx;
        unsigned short cw;
        asm volatile("stmxcsr %0" : "=m"(mx));
        asm volatile("fnstcw %0" : "=m"(cw));
        memcpy(&sp[0], &mx, 4);
        memcpy((char *)&sp[0] + 4, &cw, 2);
        sp[7] = (void *)fiber_start; /* after 1 control word slot + 6 registers */
        th[t].sp = sp;
    }
    th[t].state = ST_RUN;
    cur = t;
    set_thread_idx(t);
#if EMU_ASAN
    __sanitizer_start_switch_fiber(&sched_fake, th[t].stack, cfg.stack);
#endif
    emu_switch(&sched_sp, th[t].sp);
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(sched_fake, NULL, NULL);
#endif
    if (th[t].state == ST_RUN)
        die("internal: a fiber came back running");
    if (th[t].state == ST_DONE) {
        free_stacks.push_back(th[t].stack);
        th[t].stack = NULL;
    }
    cur = -1;
}

static void where(char *buf, size_t len)
{
    snprintf(buf, len, "kernel %s (launched at %s:%d), block (%u,%u,%u) of (%u,%u,%u), %d threads", cur_name,
             cur_file, cur_line, blockIdx.x, blockIdx.y, blockIdx.z, gridDim.x, gridDim.y, gridDim.z, nthreads);
}

#define KDIE(...)                                                                                                 \
    do {                                                                                                          \
        char w_[512];                                                                                             \
        where(w_, sizeof w_);                                                                                     \
        fflush(stdout);                                                                                           \
        fprintf(stderr, "cudaemu: %s:\n    ", w_);                                                                \
        fprintf(stderr, __VA_ARGS__);                                                                             \
        fprintf(stderr, "\n");                                                                                    \
        abort();                                                                                                  \
    } while (0)

void emu_trap(const char *what)
{
    if (in_kernel)
        KDIE("thread %d: %s", cur, what);
    die("%s", what);
}

void emu_syncthreads(void)
{
    if (!in_kernel || cur < 0)
        die("__syncthreads() outside a kernel");
    th[cur].state = ST_BAR;
    th[cur].bop = 0;
    fiber_yield(0);
}

int emu_syncthreads_red(int op, int v)
{
    if (!in_kernel || cur < 0)
        die("__syncthreads_*() outside a kernel");
    th[cur].state = ST_BAR;
    th[cur].bop = op;
    th[cur].bval = v != 0;
    fiber_yield(0);
    return th[cur].bres;
}

uint64_t emu_warp_op(int op, unsigned mask, uint64_t v, int arg, int width)
{
    if (!in_kernel || cur < 0)
        die("warp operation outside a kernel");
    if (width <= 0 || width > 32 || (width & (width - 1)))
        KDIE("thread %d: shuffle width %d is not a power of 2 up to 32", cur, width);
    th[cur].state = ST_WARP;
    th[cur].wop = op;
    th[cur].wmask = mask;
    th[cur].wval = v;
    th[cur].warg = arg;
    th[cur].wwidth = width;
    fiber_yield(0);
    return th[cur].wres;
}

static const char *wop_name(int op)
{
    static const char *n[] = { "?", "__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync",
                               "__ballot_sync", "__any_sync", "__all_sync", "__syncwarp", "__match_any_sync",
                               "__uni_sync" };
    return op > 0 && op <= 10 ? n[op] : "?";
}

static const char *st_name(int s)
{
    static const char *n[] = { "not started", "running", "at a warp operation", "at __syncthreads", "exited" };
    return n[s];
}

/* resolves the warp operations the waiting lanes of warp w are at;
   returns 0 when no lane waits */
static int warp_exchange(int w)
{
    int t0 = w * 32, t1 = t0 + 32 < nthreads ? t0 + 32 : nthreads;
    unsigned waiting = 0;
    for (int t = t0; t < t1; t++)
        if (th[t].state == ST_WARP)
            waiting |= 1u << (t - t0);
    if (!waiting)
        return 0;
    unsigned exist = t1 - t0 == 32 ? 0xffffffffu : (1u << (t1 - t0)) - 1u;
    uint64_t res[32];
    for (int l = 0; l < 32; l++) {
        if (!(waiting >> l & 1))
            continue;
        int t = t0 + l;
        unsigned m = th[t].wmask;
        int op = th[t].wop;
        if (!(m >> l & 1))
            KDIE("thread %d (warp %d lane %d): %s with mask 0x%08x that leaves out the calling lane", t, w, l,
                 wop_name(op), m);
        if (m & ~exist)
            KDIE("thread %d: %s with mask 0x%08x in a warp of %d threads (lanes past the block's end are "
                 "not there: undefined on a GPU)",
                 t, wop_name(op), m, t1 - t0);
        for (int j = 0; j < 32; j++) {
            if (!(m >> j & 1))
                continue;
            int s = th[t0 + j].state;
            if (s != ST_WARP)
                KDIE("thread %d (warp %d lane %d) is at %s with mask 0x%08x, but lane %d of the mask is %s "
                     "(a deadlock or undefined result on a GPU)",
                     t, w, l, wop_name(op), m, j, st_name(s));
            if (th[t0 + j].wmask != m || th[t0 + j].wop != op)
                KDIE("lanes %d and %d of warp %d meet at different warp operations (%s mask 0x%08x vs %s mask "
                     "0x%08x)",
                     l, j, w, wop_name(op), m, wop_name(th[t0 + j].wop), th[t0 + j].wmask);
        }
        int width = th[t].wwidth, base = l & ~(width - 1), src = l;
        unsigned bits = 0;
        switch (op) {
        case EMU_W_IDX: src = base + (th[t].warg & (width - 1)); break;
        case EMU_W_UP: src = l - th[t].warg; if (src < base) src = l; break;
        case EMU_W_DOWN: src = l + th[t].warg; if (src >= base + width) src = l; break;
        case EMU_W_XOR: src = l ^ th[t].warg; if (src >= base + width || src < 0) src = l; break;
        default: break;
        }
        if (op >= EMU_W_IDX && op <= EMU_W_XOR) {
            if (src < 0 || src > 31 || !(m >> src & 1))
                KDIE("thread %d (lane %d): %s reads lane %d, which is not in the mask 0x%08x (undefined value)",
                     t, l, wop_name(op), src, m);
            res[l] = th[t0 + src].wval;
            continue;
        }
        for (int j = 0; j < 32; j++)
            if (m >> j & 1) {
                if (op == EMU_W_MATCH_ANY)
                    bits |= (unsigned)(th[t0 + j].wval == th[t].wval) << j;
                else
                    bits |= (unsigned)(th[t0 + j].wval != 0) << j;
            }
        switch (op) {
        case EMU_W_BALLOT: case EMU_W_MATCH_ANY: res[l] = bits; break;
        case EMU_W_ANY: res[l] = bits != 0; break;
        case EMU_W_ALL: res[l] = bits == m; break;
        case EMU_W_UNI: res[l] = bits == 0 || bits == m; break;
        default: res[l] = 0; break;
        }
    }
    for (int l = 0; l < 32; l++)
        if (waiting >> l & 1) {
            th[t0 + l].wres = res[l];
            th[t0 + l].state = ST_RUN;
        }
    return 1;
}

static void run_warp(int w, int rev_lanes, unsigned char *lane_perm)
{
    int t0 = w * 32, t1 = t0 + 32 < nthreads ? t0 + 32 : nthreads, n = t1 - t0;
    for (;;) {
        for (int i = 0; i < (lane_perm ? 32 : n); i++) {
            int l = lane_perm ? lane_perm[i] : rev_lanes ? n - 1 - i : i;
            if (l >= n)
                continue;
            int t = t0 + l;
            if (th[t].state == ST_NEW || th[t].state == ST_RUN)
                resume(t);
        }
        n_phases++;
        if (!warp_exchange(w))
            return;
    }
}

static void run_block(void)
{
    for (int t = 0; t < nthreads; t++)
        th[t].state = ST_NEW;
    int nw = (nthreads + 31) / 32;
    int order[MAXT / 32];
    unsigned char lane_perm[32];
    for (;;) {
        for (int i = 0; i < nw; i++)
            order[i] = cfg.order == 1 ? nw - 1 - i : i;
        if (cfg.order == 2)
            for (int i = nw - 1; i > 0; i--) {
                int j = (int)(rng_next() % (unsigned)(i + 1)), x = order[i];
                order[i] = order[j];
                order[j] = x;
            }
        for (int i = 0; i < nw; i++) {
            unsigned char *perm = NULL;
            if (cfg.order == 2) {
                for (int l = 0; l < 32; l++)
                    lane_perm[l] = (unsigned char)l;
                for (int l = 31; l > 0; l--) {
                    int j = (int)(rng_next() % (unsigned)(l + 1));
                    unsigned char x = lane_perm[l];
                    lane_perm[l] = lane_perm[j];
                    lane_perm[j] = x;
                }
                perm = lane_perm;
            }
            run_warp(order[i], cfg.order == 1, perm);
        }
        /* every thread is at the barrier or has exited */
        int nbar = 0, ndone = 0, op = -1, first = -1;
        for (int t = 0; t < nthreads; t++) {
            if (th[t].state == ST_BAR) {
                nbar++;
                if (op < 0) {
                    op = th[t].bop;
                    first = t;
                } else if (th[t].bop != op)
                    KDIE("threads %d and %d meet at different barriers (__syncthreads%s vs __syncthreads%s)", first,
                         t, op == 0 ? "" : op == 1 ? "_count" : op == 2 ? "_and" : "_or",
                         th[t].bop == 0 ? "" : th[t].bop == 1 ? "_count" : th[t].bop == 2 ? "_and" : "_or");
            } else if (th[t].state == ST_DONE)
                ndone++;
            else
                KDIE("internal: thread %d %s at the end of a phase", t, st_name(th[t].state));
        }
        if (!nbar)
            return;
        if (ndone && !cfg.exit_barrier_ok) {
            int ex = -1;
            for (int t = 0; t < nthreads && ex < 0; t++)
                if (th[t].state == ST_DONE)
                    ex = t;
            KDIE("__syncthreads reached by %d threads (first: %d) while %d threads of the block have exited "
                 "(first: %d): a barrier in divergent code, undefined on a GPU (EMU_EXIT_BARRIER_OK=1 to "
                 "accept)",
                 nbar, first, ndone, ex);
        }
        int r = 0, cnt = 0;
        for (int t = 0; t < nthreads; t++)
            if (th[t].state == ST_BAR)
                cnt += th[t].bval;
        r = op == 1 ? cnt : op == 2 ? cnt == nbar : op == 3 ? cnt > 0 : 0;
        for (int t = 0; t < nthreads; t++)
            if (th[t].state == ST_BAR) {
                th[t].bres = r;
                th[t].state = ST_RUN;
            }
    }
}

/* ---- static shared memory: poisoned (0xff) at each block's first use ---------- */
struct shared_var {
    void *p;
    size_t n;
    unsigned long long gen, launch;
};
static std::vector<shared_var> shared_vars;
static unsigned long long block_gen, launch_gen;
static size_t static_smem, dyn_smem;

void emu_shared_poison(void *p, size_t n)
{
    if (!in_kernel)
        return;
    for (auto &v : shared_vars)
        if (v.p == p) {
            if (v.gen != block_gen) {
                v.gen = block_gen;
                memset(p, 0xff, n);
            }
            if (v.launch != launch_gen) {
                v.launch = launch_gen;
                static_smem += n;
                goto check;
            }
            return;
        }
    shared_vars.push_back(shared_var{ p, n, block_gen, launch_gen });
    memset(p, 0xff, n);
    static_smem += n;
check:
    if (static_smem > 48 * 1024)
        KDIE("%zu bytes of static __shared__ memory (48 KB is the limit)", static_smem);
    if (static_smem + dyn_smem > (size_t)cfg.smem_optin)
        KDIE("%zu bytes of static and %zu of dynamic shared memory: over the %d bytes a block may have",
             static_smem, dyn_smem, cfg.smem_optin);
}

/* ---- launches ------------------------------------------------------------------- */
static std::map<const void *, int> smem_attr;
static std::set<void *> streams;

static int stream_ok(cudaStream_t s)
{
    return s == 0 || s == cudaStreamLegacy || s == cudaStreamPerThread || streams.count((void *)s);
}

void emu_launch_impl(const char *file, int line, const char *name, const void *key, emu_body_fn body, void *ctx,
                     dim3 g, dim3 b, size_t smem, cudaStream_t stream)
{
    cfg_init();
    if (in_kernel)
        die("%s:%d: launch of %s from inside kernel %s: dynamic parallelism is not emulated", file, line, name,
            cur_name);
    unsigned long long nt = (unsigned long long)b.x * b.y * b.z;
    const char *bad = NULL;
    cudaError_t err = cudaSuccess;
    if (!b.x || !b.y || !b.z || nt > 1024 || b.y > 1024 || b.z > 64)
        bad = "bad block shape", err = cudaErrorInvalidConfiguration;
    else if (!g.x || !g.y || !g.z || g.x > 2147483647u || g.y > 65535 || g.z > 65535)
        bad = "bad grid shape", err = cudaErrorInvalidConfiguration;
    else if (!stream_ok(stream))
        bad = "invalid stream", err = cudaErrorInvalidResourceHandle;
    size_t allowed = 48 * 1024;
    if (!bad) {
        auto it = key ? smem_attr.find(key) : smem_attr.end();
        if (it != smem_attr.end() && (size_t)it->second > allowed)
            allowed = it->second;
        if (!key)
            allowed = cfg.smem_optin; /* a template kernel launched without its arguments: no key */
        if (smem > allowed)
            bad = "too much dynamic shared memory (over 48 KB needs cudaFuncSetAttribute("
                  "cudaFuncAttributeMaxDynamicSharedMemorySize) first)",
            err = cudaErrorInvalidValue;
    }
    if (bad) {
        fprintf(stderr, "cudaemu: %s:%d: launch of %s<<<(%u,%u,%u), (%u,%u,%u), %zu>>> fails: %s\n", file, line,
                name, g.x, g.y, g.z, b.x, b.y, b.z, smem, bad);
        ret(err);
        return;
    }
    if (cfg.verbose >= 2)
        fprintf(stderr, "cudaemu: %s:%d: %s<<<(%u,%u,%u), (%u,%u,%u), %zu>>>\n", file, line, name, g.x, g.y, g.z, b.x,
                b.y, b.z, smem);
    n_launches++;
    char *buf = (char *)malloc(smem ? smem : 1);
    emu_dyn_smem = smem ? buf : NULL;
    gridDim = g;
    blockDim = b;
    nthreads = (int)nt;
    cur_body = body;
    cur_ctx = ctx;
    cur_name = name;
    cur_file = file;
    cur_line = line;
    in_kernel = 1;
    launch_gen++;
    static_smem = 0;
    dyn_smem = smem;
    unsigned long long nb = (unsigned long long)g.x * g.y * g.z;
    std::vector<unsigned> perm;
    if (cfg.order == 2 && nb <= (1u << 24)) {
        perm.resize(nb);
        for (unsigned long long i = 0; i < nb; i++)
            perm[i] = (unsigned)i;
        for (unsigned long long i = nb - 1; i > 0; i--) {
            unsigned long long j = rng_next() % (i + 1);
            unsigned x = perm[i];
            perm[i] = perm[j];
            perm[j] = x;
        }
    }
    for (unsigned long long i = 0; i < nb; i++) {
        unsigned long long id = cfg.order == 1 ? nb - 1 - i : perm.empty() ? i : perm[i];
        blockIdx.x = (unsigned)(id % g.x);
        blockIdx.y = (unsigned)(id / g.x % g.y);
        blockIdx.z = (unsigned)(id / ((unsigned long long)g.x * g.y));
        if (smem)
            memset(buf, 0xff, smem);
        block_gen++;
        n_blocks++;
        run_block();
    }
    in_kernel = 0;
    emu_dyn_smem = NULL;
    free(buf);
}

unsigned long long emu_clock64(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void host_only(const char *fn)
{
    if (in_kernel)
        KDIE("%s called from device code", fn);
}
#define HOST_ONLY() host_only(__func__)

/* ---- device / memory ------------------------------------------------------------ */
static const size_t TOTAL_MEM = (size_t)80 << 30;
enum { A_DEVICE = 1, A_HOST = 2, A_MANAGED = 3 };
struct alloc_info {
    size_t n;
    int kind;
};
static std::map<uintptr_t, alloc_info> allocs;
static size_t live_dev_bytes;
static long live_dev;

/* the allocation holding p, or NULL */
static const std::pair<const uintptr_t, alloc_info> *find_alloc(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    auto it = allocs.upper_bound(a);
    if (it == allocs.begin())
        return NULL;
    --it;
    if (a >= it->first && a < it->first + (it->second.n ? it->second.n : 1))
        return &*it;
    return NULL;
}

/* 1: [p, p+n) is inside one device (or managed) allocation; 0: p is not
   device memory; -1: p is device memory but the range runs past its end */
static int dev_range(const void *p, size_t n)
{
    auto a = find_alloc(p);
    if (!a || a->second.kind == A_HOST)
        return 0;
    return (uintptr_t)p + n <= a->first + a->second.n ? 1 : -1;
}

int emu_device_ptr_extent(const void *p, size_t n) { return dev_range(p, n) == 1; }

void emu_require_device(const char *who, const char *what, const void *p, size_t n)
{
    int r = dev_range(p, n);
    if (r == 1)
        return;
    fflush(stdout);
    if (r == 0)
        fprintf(stderr, "cudaemu: %s: %s %p is not device memory (cudaMalloc)\n", who, what, p);
    else {
        auto a = find_alloc(p);
        fprintf(stderr,
                "cudaemu: %s: %s: %zu bytes from %p run past the end of its device allocation (%zu bytes at %p, "
                "offset %zu)\n",
                who, what, n, p, a->second.n, (void *)a->first, (size_t)((uintptr_t)p - a->first));
    }
    if (!cfg.lax)
        abort();
}

static cudaError_t dev_alloc(void **p, size_t n, int kind, const char *fn)
{
    HOST_ONLY();
    cfg_init();
    if (!p)
        return ret(cudaErrorInvalidValue);
    if (kind != A_HOST && live_dev_bytes + n > TOTAL_MEM) {
        fprintf(stderr, "cudaemu: %s(%zu): out of the emulated 80 GB\n", fn, n);
        *p = NULL;
        return ret(cudaErrorMemoryAllocation);
    }
    void *q = NULL;
    if (posix_memalign(&q, 256, n ? n : 1)) {
        *p = NULL;
        return ret(cudaErrorMemoryAllocation);
    }
    if (kind != A_HOST)
        memset(q, 0xff, n); /* NaN in f32, bf16, f16, f64: catches reads of what no one wrote */
    allocs[(uintptr_t)q] = alloc_info{ n, kind };
    if (kind != A_HOST) {
        live_dev_bytes += n;
        live_dev++;
    }
    *p = q;
    return cudaSuccess;
}

static cudaError_t dev_free(void *p, int host, const char *fn)
{
    HOST_ONLY();
    if (!p)
        return cudaSuccess;
    auto it = allocs.find((uintptr_t)p);
    if (it == allocs.end() || (it->second.kind == A_HOST) != (host != 0)) {
        fflush(stdout);
        fprintf(stderr, "cudaemu: %s(%p): not a pointer from %s (freed twice, or an offset pointer?)\n", fn, p,
                host ? "cudaMallocHost" : "cudaMalloc");
        if (!cfg.lax)
            abort();
        return ret(cudaErrorInvalidValue);
    }
    if (it->second.kind != A_HOST) {
        live_dev_bytes -= it->second.n;
        live_dev--;
        memset(p, 0xfe, it->second.n); /* a use after free reads garbage (ASan builds: reports it) */
    }
    allocs.erase(it);
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t n) { return dev_alloc(p, n, A_DEVICE, "cudaMalloc"); }
cudaError_t cudaMallocAsync(void **p, size_t n, cudaStream_t s)
{
    if (!stream_ok(s))
        return ret(cudaErrorInvalidResourceHandle);
    return dev_alloc(p, n, A_DEVICE, "cudaMallocAsync");
}
cudaError_t cudaMallocManaged(void **p, size_t n, unsigned int f) { (void)f; return dev_alloc(p, n, A_MANAGED, "cudaMallocManaged"); }
cudaError_t cudaFree(void *p) { return dev_free(p, 0, "cudaFree"); }
cudaError_t cudaFreeAsync(void *p, cudaStream_t s)
{
    if (!stream_ok(s))
        return ret(cudaErrorInvalidResourceHandle);
    return dev_free(p, 0, "cudaFreeAsync");
}
cudaError_t cudaMallocHost(void **p, size_t n) { return dev_alloc(p, n, A_HOST, "cudaMallocHost"); }
cudaError_t cudaHostAlloc(void **p, size_t n, unsigned int f) { (void)f; return dev_alloc(p, n, A_HOST, "cudaHostAlloc"); }
cudaError_t cudaFreeHost(void *p) { return dev_free(p, 1, "cudaFreeHost"); }
cudaError_t cudaMallocPitch(void **p, size_t *pitch, size_t w, size_t h)
{
    size_t pt = (w + 511) / 512 * 512;
    *pitch = pt;
    return dev_alloc(p, pt * h, A_DEVICE, "cudaMallocPitch");
}
cudaError_t cudaPointerGetAttributes(struct cudaPointerAttributes *a, const void *p)
{
    auto f = find_alloc(p);
    memset(a, 0, sizeof *a);
    a->type = !f ? cudaMemoryTypeUnregistered : f->second.kind == A_HOST ? cudaMemoryTypeHost
              : f->second.kind == A_MANAGED ? cudaMemoryTypeManaged : cudaMemoryTypeDevice;
    a->devicePointer = f && f->second.kind != A_HOST ? (void *)p : NULL;
    a->hostPointer = !f || f->second.kind != A_DEVICE ? (void *)p : NULL;
    return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t *fr, size_t *total)
{
    if (fr)
        *fr = TOTAL_MEM - live_dev_bytes;
    if (total)
        *total = TOTAL_MEM;
    return cudaSuccess;
}

static const char *kind_name(cudaMemcpyKind k)
{
    static const char *n[] = { "cudaMemcpyHostToHost", "cudaMemcpyHostToDevice", "cudaMemcpyDeviceToHost",
                               "cudaMemcpyDeviceToDevice", "cudaMemcpyDefault" };
    return (unsigned)k <= 4 ? n[k] : "bad kind";
}

/* checks one side of a copy: want 1 device, 0 host, -1 either */
static int check_side(const char *fn, const char *side, const void *p, size_t n, int want, cudaMemcpyKind k)
{
    int r = dev_range(p, n);
    const char *msg = NULL;
    if (r < 0)
        msg = "runs past the end of its device allocation";
    else if (want == 1 && r == 0)
        msg = "is not device memory";
    else if (want == 0 && r == 1)
        msg = "is device memory";
    if (!msg)
        return 1;
    fflush(stdout);
    auto a = find_alloc(p);
    fprintf(stderr, "cudaemu: %s(%s): %s %p (%zu bytes) %s", fn, kind_name(k), side, p, n, msg);
    if (a && a->second.kind != A_HOST)
        fprintf(stderr, " (allocation of %zu bytes at %p, offset %zu)", a->second.n, (void *)a->first,
                (size_t)((uintptr_t)p - a->first));
    fprintf(stderr, "\n");
    if (!cfg.lax)
        abort();
    return 0;
}

static cudaError_t copy(const char *fn, void *d, const void *s, size_t n, cudaMemcpyKind k)
{
    HOST_ONLY();
    cfg_init();
    if ((unsigned)k > 4)
        return ret(cudaErrorInvalidMemcpyDirection);
    if (!n)
        return cudaSuccess;
    if (!d || !s)
        return ret(cudaErrorInvalidValue);
    int wd = k == cudaMemcpyHostToDevice || k == cudaMemcpyDeviceToDevice ? 1 : k == cudaMemcpyDefault ? -1 : 0;
    int ws = k == cudaMemcpyDeviceToHost || k == cudaMemcpyDeviceToDevice ? 1 : k == cudaMemcpyDefault ? -1 : 0;
    if (!check_side(fn, "dst", d, n, wd, k) || !check_side(fn, "src", s, n, ws, k))
        return ret(cudaErrorInvalidValue);
    memmove(d, s, n);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *d, const void *s, size_t n, cudaMemcpyKind k) { return copy("cudaMemcpy", d, s, n, k); }
cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind k, cudaStream_t st)
{
    if (!stream_ok(st))
        return ret(cudaErrorInvalidResourceHandle);
    return copy("cudaMemcpyAsync", d, s, n, k);
}
cudaError_t cudaMemcpy2D(void *d, size_t dp, const void *s, size_t sp, size_t w, size_t h, cudaMemcpyKind k)
{
    if (w > dp || w > sp)
        return ret(cudaErrorInvalidValue);
    for (size_t r = 0; r < h; r++) {
        cudaError_t e = copy("cudaMemcpy2D", (char *)d + r * dp, (const char *)s + r * sp, w, k);
        if (e)
            return e;
    }
    return cudaSuccess;
}
cudaError_t cudaMemcpy2DAsync(void *d, size_t dp, const void *s, size_t sp, size_t w, size_t h, cudaMemcpyKind k,
                              cudaStream_t st)
{
    if (!stream_ok(st))
        return ret(cudaErrorInvalidResourceHandle);
    return cudaMemcpy2D(d, dp, s, sp, w, h, k);
}
static cudaError_t set(const char *fn, void *d, int v, size_t n)
{
    HOST_ONLY();
    cfg_init();
    if (!n)
        return cudaSuccess;
    if (!check_side(fn, "dst", d, n, 1, cudaMemcpyHostToDevice))
        return ret(cudaErrorInvalidValue);
    memset(d, v, n);
    return cudaSuccess;
}
cudaError_t cudaMemset(void *d, int v, size_t n) { return set("cudaMemset", d, v, n); }
cudaError_t cudaMemsetAsync(void *d, int v, size_t n, cudaStream_t s)
{
    if (!stream_ok(s))
        return ret(cudaErrorInvalidResourceHandle);
    return set("cudaMemsetAsync", d, v, n);
}
cudaError_t cudaMemset2D(void *d, size_t pitch, int v, size_t w, size_t h)
{
    for (size_t r = 0; r < h; r++) {
        cudaError_t e = set("cudaMemset2D", (char *)d + r * pitch, v, w);
        if (e)
            return e;
    }
    return cudaSuccess;
}
cudaError_t cudaMemset2DAsync(void *d, size_t pitch, int v, size_t w, size_t h, cudaStream_t s)
{
    (void)s;
    return cudaMemset2D(d, pitch, v, w, h);
}
cudaError_t cudaMemPrefetchAsync(const void *p, size_t n, int dev, cudaStream_t s)
{
    (void)p; (void)n; (void)dev; (void)s;
    return cudaSuccess;
}
cudaError_t emu_memcpy_symbol(void *d, const void *s, size_t n)
{
    memcpy(d, s, n);
    return cudaSuccess;
}

/* ---- device queries --------------------------------------------------------------- */
cudaError_t cudaGetDeviceCount(int *n)
{
    cfg_init();
    *n = cfg.nodev ? 0 : 1;
    return cfg.nodev ? ret(cudaErrorNoDevice) : cudaSuccess;
}
cudaError_t cudaGetDevice(int *d) { *d = 0; return cudaSuccess; }
cudaError_t cudaSetDevice(int d)
{
    cfg_init();
    return d == 0 && !cfg.nodev ? cudaSuccess : ret(cudaErrorInvalidDevice);
}
cudaError_t cudaSetDeviceFlags(unsigned int f) { (void)f; return cudaSuccess; }
cudaError_t cudaDeviceSynchronize(void) { HOST_ONLY(); return cudaSuccess; }
cudaError_t cudaDeviceReset(void) { return cudaSuccess; }
cudaError_t cudaDeviceSetLimit(cudaLimit l, size_t v) { (void)l; (void)v; return cudaSuccess; }
cudaError_t cudaDeviceGetLimit(size_t *v, cudaLimit l) { (void)l; *v = 1024; return cudaSuccess; }
cudaError_t cudaDriverGetVersion(int *v) { *v = 13000; return cudaSuccess; }
cudaError_t cudaRuntimeGetVersion(int *v) { *v = 13000; return cudaSuccess; }

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d)
{
    cfg_init();
    if (d != 0 || cfg.nodev)
        return ret(cudaErrorInvalidDevice);
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "NVIDIA H100 80GB HBM3 (cudaemu CPU emulation)");
    memcpy(p->uuid.bytes, "cudaemu-h100-000", 16);
    p->totalGlobalMem = TOTAL_MEM;
    p->sharedMemPerBlock = 49152;
    p->regsPerBlock = 65536;
    p->warpSize = 32;
    p->memPitch = 2147483647;
    p->maxThreadsPerBlock = 1024;
    p->maxThreadsDim[0] = 1024, p->maxThreadsDim[1] = 1024, p->maxThreadsDim[2] = 64;
    p->maxGridSize[0] = 2147483647, p->maxGridSize[1] = 65535, p->maxGridSize[2] = 65535;
    p->clockRate = 1980000;
    p->totalConstMem = 65536;
    p->major = 9;
    p->minor = 0;
    p->textureAlignment = 512;
    p->multiProcessorCount = 132;
    p->concurrentKernels = 1;
    p->ECCEnabled = 1;
    p->pciBusID = 0x18;
    p->asyncEngineCount = 3;
    p->unifiedAddressing = 1;
    p->memoryClockRate = 2619000;
    p->memoryBusWidth = 5120;
    p->l2CacheSize = 52428800;
    p->persistingL2CacheMaxSize = 32505856;
    p->maxThreadsPerMultiProcessor = 2048;
    p->streamPrioritiesSupported = 1;
    p->globalL1CacheSupported = 1;
    p->localL1CacheSupported = 1;
    p->sharedMemPerMultiprocessor = 233472;
    p->regsPerMultiprocessor = 65536;
    p->managedMemory = 1;
    p->cooperativeLaunch = 1;
    p->sharedMemPerBlockOptin = (size_t)cfg.smem_optin;
    p->concurrentManagedAccess = 1;
    p->maxBlocksPerMultiProcessor = 32;
    p->accessPolicyMaxWindowSize = 134213632;
    p->reservedSharedMemPerBlock = 1024;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int d)
{
    cudaDeviceProp p;
    cudaError_t e = cudaGetDeviceProperties(&p, d);
    if (e)
        return e;
    switch (a) {
    case cudaDevAttrMaxThreadsPerBlock: *v = 1024; break;
    case cudaDevAttrMaxBlockDimX: *v = 1024; break;
    case cudaDevAttrMaxBlockDimY: *v = 1024; break;
    case cudaDevAttrMaxBlockDimZ: *v = 64; break;
    case cudaDevAttrMaxGridDimX: *v = 2147483647; break;
    case cudaDevAttrMaxGridDimY: *v = 65535; break;
    case cudaDevAttrMaxGridDimZ: *v = 65535; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *v = 49152; break;
    case cudaDevAttrTotalConstantMemory: *v = 65536; break;
    case cudaDevAttrWarpSize: *v = 32; break;
    case cudaDevAttrMaxRegistersPerBlock: *v = 65536; break;
    case cudaDevAttrClockRate: *v = p.clockRate; break;
    case cudaDevAttrMultiProcessorCount: *v = 132; break;
    case cudaDevAttrIntegrated: *v = 0; break;
    case cudaDevAttrConcurrentKernels: *v = 1; break;
    case cudaDevAttrMemoryClockRate: *v = p.memoryClockRate; break;
    case cudaDevAttrGlobalMemoryBusWidth: *v = p.memoryBusWidth; break;
    case cudaDevAttrL2CacheSize: *v = p.l2CacheSize; break;
    case cudaDevAttrMaxThreadsPerMultiProcessor: *v = 2048; break;
    case cudaDevAttrUnifiedAddressing: *v = 1; break;
    case cudaDevAttrComputeCapabilityMajor: *v = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *v = 0; break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor: *v = 233472; break;
    case cudaDevAttrMaxRegistersPerMultiprocessor: *v = 65536; break;
    case cudaDevAttrCooperativeLaunch: *v = 1; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = cfg.smem_optin; break;
    case cudaDevAttrMaxBlocksPerMultiprocessor: *v = 32; break;
    default: *v = 0; return ret(cudaErrorInvalidValue);
    }
    return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void *fn, cudaFuncAttribute a, int v)
{
    cfg_init();
    if (!fn)
        return ret(cudaErrorInvalidDeviceFunction);
    if (a == cudaFuncAttributeMaxDynamicSharedMemorySize) {
        if (v < 0 || v > cfg.smem_optin) {
            fprintf(stderr, "cudaemu: cudaFuncSetAttribute(MaxDynamicSharedMemorySize, %d): over the opt-in "
                            "limit %d\n", v, cfg.smem_optin);
            return ret(cudaErrorInvalidValue);
        }
        smem_attr[fn] = v;
    }
    return cudaSuccess;
}
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes *a, const void *fn)
{
    memset(a, 0, sizeof *a);
    a->maxThreadsPerBlock = 1024;
    a->numRegs = 32;
    a->ptxVersion = a->binaryVersion = 90;
    auto it = smem_attr.find(fn);
    a->maxDynamicSharedSizeBytes = it != smem_attr.end() ? it->second : 49152;
    return cudaSuccess;
}
cudaError_t cudaFuncSetCacheConfig(const void *fn, cudaFuncCache c) { (void)fn; (void)c; return cudaSuccess; }
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int *n, const void *fn, int block, size_t smem)
{
    (void)fn;
    int by_threads = block > 0 ? 2048 / block : 0;
    int by_smem = smem ? (int)(233472 / (smem + 1024)) : 32;
    *n = by_threads < by_smem ? by_threads : by_smem;
    if (*n > 32)
        *n = 32;
    return cudaSuccess;
}

/* ---- streams and events (everything runs synchronously at its call) -------------- */
cudaError_t cudaStreamCreate(cudaStream_t *s)
{
    HOST_ONLY();
    void *p = malloc(16);
    streams.insert(p);
    *s = (cudaStream_t)p;
    return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int f) { (void)f; return cudaStreamCreate(s); }
cudaError_t cudaStreamCreateWithPriority(cudaStream_t *s, unsigned int f, int pr) { (void)f; (void)pr; return cudaStreamCreate(s); }
cudaError_t cudaStreamDestroy(cudaStream_t s)
{
    if (!s || !streams.count((void *)s))
        return ret(cudaErrorInvalidResourceHandle);
    streams.erase((void *)s);
    free(s);
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) { HOST_ONLY(); return stream_ok(s) ? cudaSuccess : ret(cudaErrorInvalidResourceHandle); }
cudaError_t cudaStreamQuery(cudaStream_t s) { return stream_ok(s) ? cudaSuccess : ret(cudaErrorInvalidResourceHandle); }
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned int f)
{
    (void)e; (void)f;
    return stream_ok(s) ? cudaSuccess : ret(cudaErrorInvalidResourceHandle);
}
cudaError_t cudaDeviceGetStreamPriorityRange(int *least, int *greatest)
{
    if (least) *least = 0;
    if (greatest) *greatest = -5;
    return cudaSuccess;
}

struct emu_event {
    double t;
    int recorded;
    unsigned flags;
};
static std::set<void *> events;

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned int f)
{
    emu_event *p = new emu_event{ 0, 0, f };
    events.insert(p);
    *e = (cudaEvent_t)p;
    return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t *e) { return cudaEventCreateWithFlags(e, 0); }
cudaError_t cudaEventDestroy(cudaEvent_t e)
{
    if (!events.count((void *)e))
        return ret(cudaErrorInvalidResourceHandle);
    events.erase((void *)e);
    delete (emu_event *)e;
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s)
{
    if (!events.count((void *)e) || !stream_ok(s))
        return ret(cudaErrorInvalidResourceHandle);
    ((emu_event *)e)->t = now();
    ((emu_event *)e)->recorded = 1;
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) { return events.count((void *)e) ? cudaSuccess : ret(cudaErrorInvalidResourceHandle); }
cudaError_t cudaEventQuery(cudaEvent_t e) { return events.count((void *)e) ? cudaSuccess : ret(cudaErrorInvalidResourceHandle); }
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b)
{
    if (!events.count((void *)a) || !events.count((void *)b))
        return ret(cudaErrorInvalidResourceHandle);
    emu_event *x = (emu_event *)a, *y = (emu_event *)b;
    if (!x->recorded || !y->recorded || (x->flags & cudaEventDisableTiming) || (y->flags & cudaEventDisableTiming))
        return ret(cudaErrorInvalidResourceHandle);
    *ms = (float)((y->t - x->t) * 1e3);
    return cudaSuccess;
}

__attribute__((destructor)) static void emu_report(void)
{
    cfg_init();
    if (cfg.verbose || live_dev)
        fprintf(stderr,
                "cudaemu: %llu launches, %llu blocks, %llu warp steps; %ld device allocations (%zu bytes) live at "
                "exit\n",
                n_launches, n_blocks, n_phases, live_dev, live_dev_bytes);
}

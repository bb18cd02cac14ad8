/* a stand-in libnccl.so.2 for the CPU emulator: sums over MPI_COMM_WORLD (device memory is host memory there);
   without MPI, a group of one */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
typedef struct { char internal[128]; } ncclUniqueId;
typedef void *ncclComm_t;
static int world(void) { int f = 0, w = 1; MPI_Initialized(&f); if (f) MPI_Comm_size(MPI_COMM_WORLD, &w); return f ? w : 1; }
int ncclGetUniqueId(ncclUniqueId *u) { memset(u, 7, sizeof *u); return 0; }
int ncclCommInitRank(ncclComm_t *c, int n, ncclUniqueId u, int r) { fprintf(stderr, "fakenccl: join %d of %d (world %d)\n", r, n, world()); *c = (void *)1; (void)u; return n == world() ? 0 : 1; }
int ncclAllReduce(const void *s, void *d, size_t n, int type, int op, ncclComm_t c, void *stream) {
	static long calls; calls++; if (getenv("FAKENCCL_VERBOSE")) fprintf(stderr, "fakenccl: allreduce %zu floats (call %ld)\n", n, calls);
	(void)type; (void)op; (void)c; (void)stream;
	int f = 0; MPI_Initialized(&f);
	if (!f) { if (s != d) memcpy(d, s, n * 4); return 0; }
	return MPI_Allreduce(s == d ? MPI_IN_PLACE : s, d, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD) == MPI_SUCCESS ? 0 : 1; }
int ncclCommDestroy(ncclComm_t c) { (void)c; return 0; }
const char *ncclGetErrorString(int r) { return r ? "fake error" : "ok"; }

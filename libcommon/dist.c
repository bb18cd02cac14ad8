/*
 * dist.c — the data-parallel process group (see dist.h): finding the
 * launcher, joining, and sums and broadcasts that wait at most the group's
 * timeout: over MPI (non-blocking operations polled against a deadline)
 * under mpirun and srun, over TCP (dist_tcp.c) under a launcher that sets
 * only torchrun's variables.
 */
#include "dist.h"
#include "dist_tcp.h"
#include "error.h"

#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef LF_HAVE_MPI
#include <mpi.h>
#endif

/* The number of processes the environment's launcher started (1 when
 * none did), and its name. */
static int launched_world(const char **launcher)
{
	static const struct {
		const char *var, *name;
	} vars[] = {
		{ "OMPI_COMM_WORLD_SIZE", "mpirun" }, /* Open MPI's mpirun */
		{ "PMI_SIZE", "mpirun" },             /* MPICH's hydra, srun --mpi=pmi2 */
		{ "SLURM_NTASKS", "srun" },           /* inside a Slurm job step */
	};
	for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
		const char *v = getenv(vars[i].var);
		/* sbatch sets SLURM_NTASKS for the batch script too: only a step
		 * started by srun has SLURM_STEP_ID */
		if (!v || (i == 2 && !getenv("SLURM_STEP_ID")))
			continue;
		*launcher = vars[i].name;
		return atoi(v) > 0 ? atoi(v) : 1;
	}
	*launcher = "none";
	return 1;
}

#ifdef LF_HAVE_MPI

static bool joined;

/* lf_die on any process stops them all (the launcher may not). */
static void abort_group(void)
{
	if (joined)
		MPI_Abort(MPI_COMM_WORLD, 1);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Poll a request until it completes or the deadline passes. */
static int wait_for(struct lf_dist *d, MPI_Request *req, const char *what)
{
	double start = now();
	long polls = 0;
	for (;;) {
		int done = 0;
		if (MPI_Test(req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS)
			return lf_fail("process %d: MPI %s failed", d->rank, what);
		if (done)
			return 0;
		/* MPI moves a large message only while it is polled: poll without
		 * pause, letting other processes have the core in between */
		if (++polls % 64 == 0) {
			sched_yield();
			if (now() - start > d->timeout)
				return lf_fail("process %d of %d: the others did not join the %s within %g s "
					       "(--ddp-timeout): a process died or hangs",
					       d->rank, d->world, what, d->timeout);
		}
	}
}

static int mpi_init(struct lf_dist *d, int want)
{
	if (want <= 1)
		return 0;
	/* srun with no MPI plugin leaves MPI_Init nothing to join */
	if (!strcmp(d->launcher, "srun") && !getenv("PMIX_RANK") && !getenv("PMI_RANK"))
		return lf_fail("srun started %d tasks with no MPI plugin: start lf-train with srun --mpi=pmix (or the "
			       "plugin `srun --mpi=list` names that this Open MPI supports)",
			       want);
	int provided;
	if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
		return lf_fail("MPI_Init failed under %s", d->launcher);
	joined = true;
	lf_on_die(abort_group);
	MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
	MPI_Comm_size(MPI_COMM_WORLD, &d->world);
	if (d->world != want) {
		/* srun without an MPI plugin makes N groups of one */
		int world = d->world;
		MPI_Finalize();
		joined = false;
		return lf_fail("%s started %d processes but MPI joined %d of them: under Slurm start lf-train with "
			       "srun --mpi=pmix (or the plugin `srun --mpi=list` names)",
			       d->launcher, want, world);
	}
	return 0;
}

static void mpi_finish(struct lf_dist *d)
{
	if (!joined)
		return;
	if (lf_dist_barrier(d) < 0)
		lf_die("%s", lf_errmsg());
	joined = false;
	MPI_Finalize();
}

/* MPI counts are ints: large arrays go in pieces. */
static int sum(struct lf_dist *d, void *x, size_t n, size_t size, MPI_Datatype type)
{
	const size_t piece = (size_t)1 << 28;
	for (size_t at = 0; at < n && d->world > 1; at += piece) {
		int count = (int)(n - at < piece ? n - at : piece);
		MPI_Request req;
		if (MPI_Iallreduce(MPI_IN_PLACE, (char *)x + at * size, count, type, MPI_SUM, MPI_COMM_WORLD, &req) !=
		    MPI_SUCCESS)
			return lf_fail("process %d: MPI sum failed", d->rank);
		if (wait_for(d, &req, "sum") < 0)
			return -1;
	}
	return 0;
}

static int mpi_sum(struct lf_dist *d, void *x, size_t n, size_t elem)
{
	return sum(d, x, n, elem, elem == sizeof(float) ? MPI_FLOAT : MPI_DOUBLE);
}

static int mpi_sum_parts_f32(struct lf_dist *d, float *x, const int *counts)
{
	MPI_Request req;
	if (MPI_Ireduce_scatter(MPI_IN_PLACE, x, counts, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &req) != MPI_SUCCESS)
		return lf_fail("process %d: MPI sum failed", d->rank);
	if (wait_for(d, &req, "sum") < 0)
		return -1;
	/* in place, MPI leaves this process's sums at the start of x */
	size_t at = 0;
	for (int r = 0; r < d->rank; r++)
		at += (size_t)counts[r];
	memmove(x + at, x, (size_t)counts[d->rank] * sizeof *x);
	return 0;
}

/* Bytes in pieces of at most 1 GiB (MPI counts are ints), each through
 * start(buffer, count) and a wait. */
enum transfer { BROADCAST, SEND, RECEIVE };

static int transfer(struct lf_dist *d, enum transfer kind, void *x, size_t bytes, int peer)
{
	static const char *const what[] = { "broadcast", "send", "receive" };
	const size_t piece = (size_t)1 << 30;
	for (size_t at = 0; at < bytes && d->world > 1; at += piece) {
		int count = (int)(bytes - at < piece ? bytes - at : piece), rc;
		char *p = (char *)x + at;
		MPI_Request req;
		rc = kind == BROADCAST ? MPI_Ibcast(p, count, MPI_BYTE, peer, MPI_COMM_WORLD, &req) :
		     kind == SEND      ? MPI_Isend(p, count, MPI_BYTE, peer, 0, MPI_COMM_WORLD, &req) :
					 MPI_Irecv(p, count, MPI_BYTE, peer, 0, MPI_COMM_WORLD, &req);
		if (rc != MPI_SUCCESS)
			return lf_fail("process %d: MPI %s failed", d->rank, what[kind]);
		if (wait_for(d, &req, what[kind]) < 0)
			return -1;
	}
	return 0;
}

static int mpi_broadcast(struct lf_dist *d, void *x, size_t bytes, int root)
{
	return transfer(d, BROADCAST, x, bytes, root);
}

static int mpi_send(struct lf_dist *d, const void *x, size_t bytes, int to)
{
	return transfer(d, SEND, (void *)x, bytes, to);
}

static int mpi_recv(struct lf_dist *d, void *x, size_t bytes, int from)
{
	return transfer(d, RECEIVE, x, bytes, from);
}

static int mpi_barrier(struct lf_dist *d)
{
	MPI_Request req;
	if (MPI_Ibarrier(MPI_COMM_WORLD, &req) != MPI_SUCCESS)
		return lf_fail("process %d: MPI barrier failed", d->rank);
	return wait_for(d, &req, "barrier");
}

#else /* built without MPI: mpirun's and srun's groups refused */

static int mpi_init(struct lf_dist *d, int want)
{
	if (want > 1)
		return lf_fail("%s started %d processes, but this lf was built without MPI (install Open MPI's "
			       "development files and run make again)",
			       d->launcher, want);
	return 0;
}

static void mpi_finish(struct lf_dist *d)
{
	(void)d;
}

/* never called: a group of more than one is refused above */
static int mpi_sum(struct lf_dist *d, void *x, size_t n, size_t elem)
{
	(void)x, (void)n, (void)elem;
	return lf_fail("process %d: built without MPI", d->rank);
}

static int mpi_sum_parts_f32(struct lf_dist *d, float *x, const int *counts)
{
	(void)counts;
	return mpi_sum(d, x, 0, sizeof *x);
}

static int mpi_broadcast(struct lf_dist *d, void *x, size_t bytes, int root)
{
	(void)root;
	return mpi_sum(d, x, bytes, 1);
}

static int mpi_send(struct lf_dist *d, const void *x, size_t bytes, int to)
{
	(void)to;
	return mpi_sum(d, (void *)x, bytes, 1);
}

static int mpi_recv(struct lf_dist *d, void *x, size_t bytes, int from)
{
	(void)from;
	return mpi_sum(d, x, bytes, 1);
}

static int mpi_barrier(struct lf_dist *d)
{
	return mpi_sum(d, NULL, 0, 1);
}

#endif

/* ---- the group, whichever carries it ---- */

int lf_dist_init(struct lf_dist *d, double timeout)
{
	memset(d, 0, sizeof *d);
	d->world = 1;
	d->timeout = timeout;
	int want = launched_world(&d->launcher);
	/* torchrun's variables without an MPI launcher: the group over TCP */
	const char *ws = getenv("WORLD_SIZE");
	if (!strcmp(d->launcher, "none") && ws && atoi(ws) > 1) {
		d->tcp = true;
		return lf_dist_tcp_init(d);
	}
	return mpi_init(d, want);
}

void lf_dist_finish(struct lf_dist *d)
{
	if (!d->tcp) {
		mpi_finish(d);
		return;
	}
	if (lf_dist_barrier(d) < 0)
		lf_die("%s", lf_errmsg());
	lf_dist_tcp_finish(d);
}

int lf_dist_sum_f32(struct lf_dist *d, float *x, size_t n)
{
	if (d->world <= 1)
		return 0;
	return d->tcp ? lf_dist_tcp_sum(d, x, n, sizeof *x) : mpi_sum(d, x, n, sizeof *x);
}

int lf_dist_sum_f64(struct lf_dist *d, double *x, size_t n)
{
	if (d->world <= 1)
		return 0;
	return d->tcp ? lf_dist_tcp_sum(d, x, n, sizeof *x) : mpi_sum(d, x, n, sizeof *x);
}

int lf_dist_sum_parts_f32(struct lf_dist *d, float *x, const int *counts)
{
	if (d->world <= 1)
		return 0;
	if (!d->tcp)
		return mpi_sum_parts_f32(d, x, counts);
	size_t n = 0; /* over TCP every process gets every part */
	for (int r = 0; r < d->world; r++)
		n += (size_t)counts[r];
	return lf_dist_tcp_sum(d, x, n, sizeof *x);
}

int lf_dist_broadcast(struct lf_dist *d, void *x, size_t bytes, int root)
{
	if (d->world <= 1)
		return 0;
	return d->tcp ? lf_dist_tcp_broadcast(d, x, bytes, root) : mpi_broadcast(d, x, bytes, root);
}

int lf_dist_send(struct lf_dist *d, const void *x, size_t bytes, int to)
{
	if (d->world <= 1)
		return lf_fail("no process %d to send to (a group of one)", to);
	return d->tcp ? lf_dist_tcp_send(d, x, bytes, to) : mpi_send(d, x, bytes, to);
}

int lf_dist_recv(struct lf_dist *d, void *x, size_t bytes, int from)
{
	if (d->world <= 1)
		return lf_fail("no process %d to receive from (a group of one)", from);
	return d->tcp ? lf_dist_tcp_recv(d, x, bytes, from) : mpi_recv(d, x, bytes, from);
}

int lf_dist_barrier(struct lf_dist *d)
{
	if (d->world <= 1)
		return 0;
	if (!d->tcp)
		return mpi_barrier(d);
	double zero = 0;
	return lf_dist_tcp_sum(d, &zero, 1, sizeof zero);
}

/*
 * dist.h — the process group of a data-parallel run: which process this is
 * (rank) of how many (world), as the launcher says, and the few
 * collectives lf-train needs: over MPI under mpirun and srun, over TCP
 * through rank 0 (dist_tcp.h) under a launcher that sets only torchrun's
 * variables (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT).  Every
 * collective has a deadline (the group's timeout, LLaMA-Factory's
 * ddp_timeout): a peer that died or hangs makes the others stop with an
 * error instead of waiting for ever.
 *
 * A process started by no launcher is a group of one, and every collective
 * is then a no-op.  A build without MPI (make finds Open MPI through
 * pkg-config) refuses mpirun's and srun's groups; TCP needs nothing.
 */
#ifndef LF_DIST_H
#define LF_DIST_H

#include <stdbool.h>
#include <stddef.h>

struct lf_dist {
	int rank, world;
	double timeout;       /* seconds a collective may wait for the others */
	const char *launcher; /* "mpirun", "srun", "torchrun" (its variables alone) or "none" */
	bool tcp;             /* the group over TCP (dist_tcp.h), not MPI */
};

/* Join the group the launcher made; -1 (message in lf_errmsg) when the
 * environment asks for a group this build or this launch cannot make. */
int lf_dist_init(struct lf_dist *d, double timeout);
/* Leave the group cleanly (after a barrier, with the timeout). */
void lf_dist_finish(struct lf_dist *d);

/* Element-wise sums over the group, the result on every process.  -1 when
 * the others do not answer within the timeout. */
int lf_dist_sum_f32(struct lf_dist *d, float *x, size_t n);
int lf_dist_sum_f64(struct lf_dist *d, double *x, size_t n);
/* The sums of x[0, n) over the group, each process getting its part: part
 * r is counts[r] elements, the parts in rank order tiling x; afterwards
 * this process's part of x holds its sums (the rest is undefined). */
int lf_dist_sum_parts_f32(struct lf_dist *d, float *x, const int *counts);
/* The root's bytes to every process. */
int lf_dist_broadcast(struct lf_dist *d, void *x, size_t bytes, int root);
/* Point to point, in order. */
int lf_dist_send(struct lf_dist *d, const void *x, size_t bytes, int to);
int lf_dist_recv(struct lf_dist *d, void *x, size_t bytes, int from);
int lf_dist_barrier(struct lf_dist *d);

#endif

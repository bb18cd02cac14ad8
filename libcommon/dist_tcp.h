/*
 * dist_tcp.h — the process group over TCP for launchers that only set
 * torchrun's variables (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT): the
 * other half of dist.c, which calls these when it finds such a launch.
 * Every process connects to rank 0, which listens on MASTER_ADDR at
 * MASTER_PORT (MASTER_PORT + 1 under torchrun itself, whose agent keeps
 * MASTER_PORT for its own store); collectives go through rank 0: it adds
 * the others' arrays to its own in rank order (the same sums on every run)
 * and sends the result back.  Every read and write has the group's
 * deadline, and a peer that closes its connection (a process that died)
 * is an error at once.
 */
#ifndef LF_DIST_TCP_H
#define LF_DIST_TCP_H

#include <stddef.h>

#include "dist.h"

/* Join: d->rank, d->world from the environment; -1 with lf_fail. */
int lf_dist_tcp_init(struct lf_dist *d);
void lf_dist_tcp_finish(struct lf_dist *d);
/* elem 4: f32, 8: f64 */
int lf_dist_tcp_sum(struct lf_dist *d, void *x, size_t n, size_t elem);
int lf_dist_tcp_broadcast(struct lf_dist *d, void *x, size_t bytes, int root);
/* Point to point between rank 0 and another process (what lf-train
 * sends); -1 with lf_fail between two others. */
int lf_dist_tcp_send(struct lf_dist *d, const void *x, size_t bytes, int to);
int lf_dist_tcp_recv(struct lf_dist *d, void *x, size_t bytes, int from);

#endif

/*
 * dist_tcp.c — the process group over TCP sockets, through rank 0 (see
 * dist_tcp.h): the rendezvous, reads and writes with the group's deadline,
 * and the collectives lf-train needs.
 */
#include "dist_tcp.h"
#include "error.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HELLO_MAGIC "lfdist1"

struct hello {
	char magic[8];
	int32_t rank, world;
};

static int *peer_fd;      /* rank 0: each other process's connection, by rank */
static int master_fd = -1; /* the others: the connection to rank 0 */

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Wait until fd is ready for events, at most until deadline; -1 with
 * lf_fail naming the peer when the time is up. */
static int ready(struct lf_dist *d, int fd, short events, double deadline, int peer)
{
	for (;;) {
		double left = deadline - now();
		if (left <= 0)
			return lf_fail("process %d of %d: process %d did not answer within %g s (--ddp-timeout): a "
				       "process died or hangs",
				       d->rank, d->world, peer, d->timeout);
		struct pollfd p = { fd, events, 0 };
		int n = poll(&p, 1, left > 1e6 ? 1000000000 : (int)(left * 1000) + 1);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return lf_fail("process %d: poll: %s", d->rank, strerror(errno));
	}
}

static int write_all(struct lf_dist *d, int fd, const void *buf, size_t n, int peer)
{
	double deadline = now() + d->timeout;
	for (const char *p = buf; n;) {
		if (ready(d, fd, POLLOUT, deadline, peer) < 0)
			return -1;
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
		if (k < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (k <= 0)
			return lf_fail("process %d: the connection to process %d broke (%s): it stopped", d->rank, peer,
				       k < 0 ? strerror(errno) : "closed");
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static int read_all(struct lf_dist *d, int fd, void *buf, size_t n, int peer)
{
	double deadline = now() + d->timeout;
	for (char *p = buf; n;) {
		if (ready(d, fd, POLLIN, deadline, peer) < 0)
			return -1;
		ssize_t k = recv(fd, p, n, 0);
		if (k < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (k <= 0)
			return lf_fail("process %d: process %d closed its connection (%s): it stopped", d->rank, peer,
				       k < 0 ? strerror(errno) : "end of stream");
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static int env_int(const char *name, long lo, long hi, long *out)
{
	const char *v = getenv(name);
	char *end;
	if (!v || !*v)
		return lf_fail("a torchrun-style launch sets WORLD_SIZE but not %s", name);
	long x = strtol(v, &end, 10);
	if (*end || x < lo || x > hi)
		return lf_fail("%s=%s: not a number from %ld to %ld", name, v, lo, hi);
	*out = x;
	return 0;
}

static void no_delay(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* rank 0: listen, take every other process's hello, answer them all */
static int host(struct lf_dist *d, int port)
{
	int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	struct sockaddr_in a = { 0 };
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_ANY);
	a.sin_port = htons((uint16_t)port);
	if (ls < 0 || setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, d->world) < 0) {
		int e = errno;
		if (ls >= 0)
			close(ls);
		return lf_fail("process 0: cannot listen on port %d for the group: %s", port, strerror(e));
	}
	peer_fd = lf_calloc((size_t)d->world, sizeof *peer_fd);
	for (int r = 0; r < d->world; r++)
		peer_fd[r] = -1;
	double deadline = now() + d->timeout;
	for (int joined = 1; joined < d->world;) {
		if (ready(d, ls, POLLIN, deadline, -1) < 0) {
			close(ls);
			return lf_fail("process 0: %d of %d processes joined within %g s (--ddp-timeout)", joined,
				       d->world, d->timeout);
		}
		int fd = accept(ls, NULL, NULL);
		if (fd < 0)
			continue;
		struct hello h;
		if (read_all(d, fd, &h, sizeof h, -1) < 0 || memcmp(h.magic, HELLO_MAGIC, 8)) {
			close(fd); /* not one of ours */
			continue;
		}
		if (h.world != d->world || h.rank < 1 || h.rank >= d->world || peer_fd[h.rank] >= 0) {
			close(fd);
			close(ls);
			return lf_fail("process 0: a process says it is rank %d of %d; this group is %d processes%s",
				       (int)h.rank, (int)h.world, d->world,
				       h.rank >= 1 && h.rank < d->world && peer_fd[h.rank] >= 0 ? " and has that rank" : "");
		}
		no_delay(fd);
		peer_fd[h.rank] = fd;
		joined++;
	}
	close(ls);
	char ok = 1;
	for (int r = 1; r < d->world; r++)
		if (write_all(d, peer_fd[r], &ok, 1, r) < 0)
			return -1;
	return 0;
}

/* the others: connect to rank 0 (again and again until it listens), say
 * hello, wait for its answer */
static int join(struct lf_dist *d, const char *addr, int port)
{
	char service[16];
	snprintf(service, sizeof service, "%d", port);
	struct addrinfo hints = { 0 }, *res = NULL;
	hints.ai_family = AF_INET;
	hints.ai_socktype = SOCK_STREAM;
	int rc = getaddrinfo(addr, service, &hints, &res);
	if (rc != 0)
		return lf_fail("MASTER_ADDR=%s: %s", addr, gai_strerror(rc));
	double deadline = now() + d->timeout;
	for (;;) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
			master_fd = fd;
			break;
		}
		if (fd >= 0)
			close(fd);
		if (now() > deadline) {
			freeaddrinfo(res);
			return lf_fail("process %d: no process 0 listening at %s:%d within %g s (--ddp-timeout)", d->rank,
				       addr, port, d->timeout);
		}
		struct timespec pause = { 0, 100000000 };
		nanosleep(&pause, NULL);
	}
	freeaddrinfo(res);
	no_delay(master_fd);
	struct hello h = { HELLO_MAGIC, d->rank, d->world };
	char ok = 0;
	if (write_all(d, master_fd, &h, sizeof h, 0) < 0 || read_all(d, master_fd, &ok, 1, 0) < 0)
		return -1;
	return ok == 1 ? 0 : lf_fail("process %d: process 0 refused it", d->rank);
}

int lf_dist_tcp_init(struct lf_dist *d)
{
	long world, rank, port;
	const char *addr = getenv("MASTER_ADDR");
	if (env_int("WORLD_SIZE", 1, 1 << 20, &world) < 0 || env_int("RANK", 0, world - 1, &rank) < 0 ||
	    env_int("MASTER_PORT", 1, 65534, &port) < 0)
		return -1;
	if (!addr || !*addr)
		return lf_fail("a torchrun-style launch sets WORLD_SIZE but not MASTER_ADDR");
	d->world = (int)world;
	d->rank = (int)rank;
	d->launcher = "torchrun";
	/* torchrun's own agent serves its store on MASTER_PORT */
	if (getenv("TORCHELASTIC_RUN_ID"))
		port++;
	return d->rank == 0 ? host(d, (int)port) : join(d, addr, (int)port);
}

void lf_dist_tcp_finish(struct lf_dist *d)
{
	for (int r = 1; peer_fd && r < d->world; r++)
		if (peer_fd[r] >= 0)
			close(peer_fd[r]);
	free(peer_fd);
	peer_fd = NULL;
	if (master_fd >= 0)
		close(master_fd);
	master_fd = -1;
}

/* x += y, n elements of elem bytes (f32 or f64) */
static void add(void *x, const void *y, size_t n, size_t elem)
{
	if (elem == sizeof(float))
		for (size_t i = 0; i < n; i++)
			((float *)x)[i] += ((const float *)y)[i];
	else
		for (size_t i = 0; i < n; i++)
			((double *)x)[i] += ((const double *)y)[i];
}

int lf_dist_tcp_sum(struct lf_dist *d, void *x, size_t n, size_t elem)
{
	size_t bytes = n * elem;
	if (d->rank != 0)
		return write_all(d, master_fd, x, bytes, 0) < 0 ? -1 : read_all(d, master_fd, x, bytes, 0);
	/* rank 0 adds the others' arrays to its own, in rank order, a piece
	 * at a time */
	const size_t piece = (size_t)1 << 20;
	char *buf = lf_malloc(piece);
	int rc = 0;
	for (int r = 1; r < d->world && rc == 0; r++)
		for (size_t at = 0; at < bytes && rc == 0; at += piece) {
			size_t k = bytes - at < piece ? bytes - at : piece;
			rc = read_all(d, peer_fd[r], buf, k, r);
			if (rc == 0)
				add((char *)x + at, buf, k / elem, elem);
		}
	free(buf);
	for (int r = 1; r < d->world && rc == 0; r++)
		rc = write_all(d, peer_fd[r], x, bytes, r);
	return rc;
}

int lf_dist_tcp_broadcast(struct lf_dist *d, void *x, size_t bytes, int root)
{
	if (d->rank != 0)
		return d->rank == root ? write_all(d, master_fd, x, bytes, 0) : read_all(d, master_fd, x, bytes, 0);
	if (root != 0 && read_all(d, peer_fd[root], x, bytes, root) < 0)
		return -1;
	for (int r = 1; r < d->world; r++)
		if (r != root && write_all(d, peer_fd[r], x, bytes, r) < 0)
			return -1;
	return 0;
}

int lf_dist_tcp_send(struct lf_dist *d, const void *x, size_t bytes, int to)
{
	if (d->rank != 0 && to != 0)
		return lf_fail("process %d: sending to process %d is not built (only to and from process 0)", d->rank,
			       to);
	return write_all(d, d->rank == 0 ? peer_fd[to] : master_fd, x, bytes, to);
}

int lf_dist_tcp_recv(struct lf_dist *d, void *x, size_t bytes, int from)
{
	if (d->rank != 0 && from != 0)
		return lf_fail("process %d: receiving from process %d is not built (only to and from process 0)",
			       d->rank, from);
	return read_all(d, d->rank == 0 ? peer_fd[from] : master_fd, x, bytes, from);
}

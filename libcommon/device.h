/*
 * device.h — the --device option of the programs that run a model: cpu or
 * cuda.  Each such program is built twice where nvcc is found: PROGRAM, the
 * CPU path alone, and PROGRAM-cuda beside it, the same source with the GPU
 * path (LF_HAVE_CUDA), since loading cuBLASLt costs every start of a
 * program that links it ~0.15 s and 200 MB.  PROGRAM hands a cuda run to
 * PROGRAM-cuda with the same arguments.
 */
#ifndef LF_DEVICE_H
#define LF_DEVICE_H

#include <stdbool.h>

#include "error.h"

/* name NULL or "cpu": false; "cuda": true; anything else a usage error
 * (exit 2) naming it. */
bool lf_device_is_cuda(const char *name);

/* Before a program replaces itself with exec: where OpenMP binding was
 * asked for (OMP_PROC_BIND, OMP_PLACES), libgomp bound this thread to the
 * first place as it loaded, and a binding outlives exec: the new process
 * would see that one place only and put every thread on it (a training
 * step 1.65x as long on 2 cores).  This gives the thread every place's
 * CPUs again, the mask libgomp found; without binding it does nothing. */
void lf_exec_keep_places(void);

/* In a program built without the GPU path: replace this process with
 * PROGRAM-cuda beside it (the same argv), or stop with a usage error when
 * there is none (a build without nvcc).  Call before any work. */
void lf_device_exec_cuda(char **argv);

/* The GPU of this process: its local rank's as the MPI and Slurm
 * launchers or torchrun number them (0 without one). */
int lf_device_local_rank(void);

/* The start of lf-eval, lf-generate and lf-chat: --device's value checked,
 * a cuda run handed to PROGRAM-cuda (in a build without the GPU path) or
 * its GPU checked (in PROGRAM-cuda, built with LF_HAVE_CUDA: this is inline
 * so that it sees the program's build, not libcommon's), and a note that
 * --bf16 changes nothing on the CPU.  Whether the model runs on the GPU. */
#ifdef LF_HAVE_CUDA
#include "train_cuda.h"
#endif
static inline bool lf_device_start(const char *device, bool bf16, char **argv)
{
	bool cuda = lf_device_is_cuda(device);
#ifdef LF_HAVE_CUDA
	(void)argv; /* this is PROGRAM-cuda */
	if (cuda && lf_cuda_train_probe(lf_device_local_rank()) < 0)
		lf_die("--device cuda: %s", lf_errmsg());
#else
	if (cuda)
		lf_device_exec_cuda(argv);
#endif
	if (bf16 && !cuda)
		lf_note("--bf16: %s computes in f32 on the CPU (--device cuda honours it)", lf_progname());
	return cuda;
}

#endif

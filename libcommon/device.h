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

/* name NULL or "cpu": false; "cuda": true; anything else a usage error
 * (exit 2) naming it. */
bool lf_device_is_cuda(const char *name);

/* In a program built without the GPU path: replace this process with
 * PROGRAM-cuda beside it (the same argv), or stop with a usage error when
 * there is none (a build without nvcc).  Call before any work. */
void lf_device_exec_cuda(char **argv);

/* The GPU of this process: its local rank's as the MPI and Slurm
 * launchers or torchrun number them (0 without one). */
int lf_device_local_rank(void);

#endif

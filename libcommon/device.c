/*
 * device.c — the --device option and the hand-over to PROGRAM-cuda, and
 * what a program that starts itself again keeps (see device.h).
 */
#include "device.h"
#include "error.h"

#include <errno.h>
#include <omp.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool lf_device_is_cuda(const char *name)
{
	if (!name || !strcmp(name, "cpu"))
		return false;
	if (strcmp(name, "cuda"))
		lf_die_usage("option '--device': '%s' is not cpu or cuda", name);
	return true;
}

void lf_exec_keep_places(void)
{
	cpu_set_t cpus;
	CPU_ZERO(&cpus);
	int places = omp_get_num_places();
	for (int p = 0; p < places; p++) {
		int n = omp_get_place_num_procs(p), ids[n > 0 ? n : 1];
		omp_get_place_proc_ids(p, ids);
		for (int i = 0; i < n; i++)
			if (ids[i] >= 0 && ids[i] < CPU_SETSIZE)
				CPU_SET(ids[i], &cpus);
	}
	if (CPU_COUNT(&cpus) > 0)
		sched_setaffinity(0, sizeof cpus, &cpus); /* on failure, go on as we are */
}

void lf_device_exec_cuda(char **argv)
{
	char path[4096];
	ssize_t n = readlink("/proc/self/exe", path, sizeof path - 32);
	if (n < 0)
		lf_die("--device cuda: cannot find this program: %s", strerror(errno));
	path[n] = 0;
	size_t len = strlen(path);
	if (len > 5 && !strcmp(path + len - 5, "-cuda"))
		lf_die("--device cuda: %s was built without the GPU path", path);
	strcat(path, "-cuda");
	if (access(path, X_OK) != 0)
		lf_die_usage("--device cuda: this lf was built without CUDA (no %s: nvcc was not found when it was "
			     "built)", path);
	lf_exec_keep_places();
	execv(path, argv);
	lf_die("--device cuda: cannot start %s: %s", path, strerror(errno));
}

int lf_device_local_rank(void)
{
	static const char *const vars[] = { "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "LOCAL_RANK" };
	for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
		if (getenv(vars[i]))
			return atoi(getenv(vars[i]));
	return 0;
}

/*
 * lf-run — run an unmodified LLaMA-Factory recipe by composing the lf tools:
 * a training recipe becomes lf-template | lf-tokenize | lf-pack, then
 * lf-train; an export recipe becomes lf-merge.  The equivalent commands are
 * printed first, so they can go into a Makefile as they are.  With
 * --nproc-per-node N (LLaMA-Factory's NPROC_PER_NODE) lf-train runs as N
 * processes under mpirun.
 */
#include "error.h"
#include "options.h"
#include "recipe.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static bool opt_dry_run;
static long long opt_nproc = -1;

static struct lf_option options[] = {
	{ "dry-run", 'n', LF_OPT_BOOL, &opt_dry_run, NULL, "print the commands, run nothing", LF_OPT_CLI_ONLY },
	{ "nproc-per-node", 0, LF_OPT_INT, &opt_nproc, "N",
	  "train data-parallel in N processes on this machine, under mpirun (default: $NPROC_PER_NODE, else 1)",
	  LF_OPT_CLI_ONLY },
	{ 0 }
};

static const struct lf_tool_info tool = {
	"lf-run", "[OPTION]... RECIPE.yaml",
	"Run a LLaMA-Factory recipe with the lf tools, printing the equivalent commands.",
	"Training recipes (stage pt or sft): lf-template | lf-tokenize | lf-pack, then lf-train;\n"
	"the shards go to OUTPUT_DIR/lf-shards.  Export recipes (export_dir): lf-merge.",
};

static const char *recipe_value(const struct lf_recipe *r, const char *key)
{
	for (size_t i = 0; i < r->n; i++)
		if (!strcmp(r->v[i].key, key))
			return r->v[i].value;
	return NULL;
}

/* The folder of this program, where the other tools are. */
static char bindir[PATH_MAX];

static void find_bindir(const char *argv0)
{
	ssize_t n = readlink("/proc/self/exe", bindir, sizeof bindir - 1);
	if (n > 0) {
		bindir[n] = 0;
	} else {
		snprintf(bindir, sizeof bindir, "%s", argv0);
	}
	char *slash = strrchr(bindir, '/');
	if (slash)
		*slash = 0;
	else
		snprintf(bindir, sizeof bindir, ".");
}

/* One command: its arguments (NULL-terminated). */
struct cmd {
	const char *argv[32];
};

static void print_cmd(const struct cmd *c, const char *sep)
{
	for (int i = 0; c->argv[i]; i++) {
		const char *a = c->argv[i];
		bool plain = strspn(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@") == strlen(a);
		printf(i ? " %s%s%s" : "%s%s%s", plain ? "" : "'", a, plain ? "" : "'");
	}
	printf("%s", sep);
}

static pid_t start(const struct cmd *c, int in, int out)
{
	pid_t pid = fork();
	if (pid < 0)
		lf_die("fork: %s", strerror(errno));
	if (pid == 0) {
		signal(SIGINT, SIG_DFL); /* lf-run ignores them; the tools must not */
		signal(SIGTERM, SIG_DFL);
		if (in >= 0 && dup2(in, 0) < 0)
			_exit(127);
		if (out >= 0 && dup2(out, 1) < 0)
			_exit(127);
		for (int fd = 3; fd < 64; fd++)
			close(fd);
		char path[PATH_MAX + 64];
		snprintf(path, sizeof path, "%s/%s", bindir, c->argv[0]);
		execv(path, (char *const *)c->argv);
		execvp(c->argv[0], (char *const *)c->argv);
		fprintf(stderr, "lf-run: %s: %s\n", c->argv[0], strerror(errno));
		_exit(127);
	}
	return pid;
}

/* Run the commands as one pipeline; the exit status of the first that
 * failed (a signal as 128 + its number), 0 when all succeeded. */
static int run_pipeline(const struct cmd *cmds, int n)
{
	pid_t pids[8];
	int in = -1;
	for (int i = 0; i < n; i++) {
		int fds[2] = { -1, -1 };
		if (i + 1 < n && pipe(fds) < 0)
			lf_die("pipe: %s", strerror(errno));
		pids[i] = start(&cmds[i], in, fds[1]);
		if (in >= 0)
			close(in);
		if (fds[1] >= 0)
			close(fds[1]);
		in = fds[0];
	}
	int rc = 0;
	for (int i = 0; i < n; i++) {
		int st;
		while (waitpid(pids[i], &st, 0) < 0)
			if (errno != EINTR)
				lf_die("waitpid: %s", strerror(errno));
		int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		if (code && !rc)
			rc = code;
	}
	return rc;
}

/* lf-train's command as N processes of mpirun, each bound to its share of
 * this machine's cores and running that many OpenMP threads (unless
 * OMP_NUM_THREADS says otherwise); more processes than cores share them. */
static void under_mpirun(struct cmd *train, long long n, char *np, char *pe, char *threads)
{
	long cores = sysconf(_SC_NPROCESSORS_ONLN), per = cores / n > 1 ? cores / n : 1;
	const char *head[16];
	int k = 0;
	snprintf(np, 32, "%lld", n);
	head[k++] = "mpirun";
	head[k++] = "-np";
	head[k++] = np;
	if (n <= cores) {
		snprintf(pe, 48, "slot:PE=%ld", per);
		head[k++] = "--map-by";
		head[k++] = pe;
		head[k++] = "--bind-to";
		head[k++] = "core";
	} else {
		head[k++] = "--oversubscribe";
		head[k++] = "--bind-to";
		head[k++] = "none";
	}
	if (!getenv("OMP_NUM_THREADS")) {
		snprintf(threads, 48, "OMP_NUM_THREADS=%ld", per);
		head[k++] = "-x";
		head[k++] = threads;
	}
	struct cmd c = { { 0 } };
	memcpy(c.argv, head, (size_t)k * sizeof *head);
	for (int i = 0; train->argv[i]; i++)
		c.argv[k++] = train->argv[i];
	*train = c;
}

int main(int argc, char **argv)
{
	lf_set_progname(argv[0]);
	int first = lf_options_parse(&tool, options, argc, argv);
	if (first != argc - 1)
		lf_die_usage("one recipe file is needed");
	if (opt_nproc < 0) {
		const char *v = getenv("NPROC_PER_NODE");
		char *end;
		opt_nproc = v && *v ? strtoll(v, &end, 10) : 1;
		if (v && *v && (*end || opt_nproc < 1))
			lf_die_usage("NPROC_PER_NODE=%s is not a positive number of processes", v);
	}
	if (opt_nproc < 1 || opt_nproc > 4096)
		lf_die_usage("option '--nproc-per-node': %lld is not a number of processes from 1 to 4096", opt_nproc);
	const char *mpi_size = getenv("OMPI_COMM_WORLD_SIZE"), *pmi_size = getenv("PMI_SIZE");
	const char *tasks = getenv("SLURM_STEP_ID") ? getenv("SLURM_NTASKS") : NULL;
	if ((mpi_size && atoi(mpi_size) > 1) || (pmi_size && atoi(pmi_size) > 1) || (tasks && atoi(tasks) > 1))
		lf_die("lf-run starts the processes itself (--nproc-per-node N); under mpirun or srun start "
		       "lf-train, as lf-run --dry-run prints it");
	find_bindir(argv[0]);
	/* the tools are found in lf-run's folder first, by mpirun too */
	const char *path_env = getenv("PATH");
	char *search = lf_malloc(strlen(bindir) + (path_env ? strlen(path_env) : 0) + 2);
	sprintf(search, "%s%s%s", bindir, path_env ? ":" : "", path_env ? path_env : "");
	setenv("PATH", search, 1);
	free(search);
	const char *path = argv[first];
	struct lf_recipe r;
	if (lf_recipe_load(&r, path) < 0)
		lf_die("%s", lf_errmsg());
	const char *stage = recipe_value(&r, "stage"), *export_dir = recipe_value(&r, "export_dir");
	const char *output_dir = recipe_value(&r, "output_dir");
	/* the child tools see a Ctrl-C themselves (same process group): lf-run
	 * waits for them and reports their status */
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	int rc;
	if (export_dir && !stage) {
		struct cmd merge = { { "lf-merge", "--config", path, NULL } };
		print_cmd(&merge, "\n");
		fflush(stdout);
		rc = opt_dry_run ? 0 : run_pipeline(&merge, 1);
	} else {
		if (!stage)
			stage = "sft";
		if (strcmp(stage, "sft") && strcmp(stage, "pt"))
			lf_die("%s: stage '%s' is not built yet (lf-run runs pt and sft training and export recipes)", path,
			       stage);
		if (!output_dir)
			lf_die("%s: no output_dir", path);
		char shards[PATH_MAX];
		snprintf(shards, sizeof shards, "%s/lf-shards", output_dir);
		struct cmd prep[3] = { { { "lf-template", "--config", path, NULL } },
				       { { "lf-tokenize", "--config", path, NULL } },
				       { { "lf-pack", "--config", path, "-o", shards, NULL } } };
		struct cmd train = { { "lf-train", "--config", path, "--data", shards, NULL } };
		char np[32], pe[48], threads[48];
		if (opt_nproc > 1)
			under_mpirun(&train, opt_nproc, np, pe, threads);
		print_cmd(&prep[0], " |\n  ");
		print_cmd(&prep[1], " |\n  ");
		print_cmd(&prep[2], "\n");
		print_cmd(&train, "\n");
		fflush(stdout);
		if (opt_dry_run) {
			rc = 0;
		} else {
			char mk[PATH_MAX + 16];
			snprintf(mk, sizeof mk, "%s", output_dir);
			for (char *p = mk + 1; *p; p++)
				if (*p == '/') {
					*p = 0;
					mkdir(mk, 0777);
					*p = '/';
				}
			mkdir(mk, 0777);
			rc = run_pipeline(prep, 3);
			if (!rc)
				rc = run_pipeline(&train, 1);
		}
	}
	lf_recipe_free(&r);
	if (rc)
		fprintf(stderr, "lf-run: stopped: a step exited with status %d\n", rc);
	return rc;
}

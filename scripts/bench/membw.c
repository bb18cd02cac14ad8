/* scripts/bench/membw.c — the memory's streaming read rate right now: a
 * plain read of a 512 MiB buffer, far larger than the caches, on
 * OMP_NUM_THREADS threads, best of 5.  Decoding one token reads every
 * weight once, so this bounds a CPU decode's speed; forward.sh sets each
 * side's decode against it.  Prints one JSON line: {"stream_gbs": ...}.
 *
 * Built by forward.sh with cc -O3 -march=native -fopenmp. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
    size_t n = (size_t)512 << 20 >> 2; /* 512 MiB of floats */
    float *buf = malloc(n * sizeof *buf);
    if (!buf) {
        fprintf(stderr, "membw: out of memory\n");
        return 1;
    }
    #pragma omp parallel for
    for (size_t i = 0; i < n; i++)
        buf[i] = (float)(i & 7);
    double best = 1e30, sum = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t = omp_get_wtime();
        float s = 0;
        #pragma omp parallel for simd reduction(+ : s)
        for (size_t i = 0; i < n; i++)
            s += buf[i];
        t = omp_get_wtime() - t;
        best = t < best ? t : best;
        sum += s;
    }
    /* the sum printed so that the reads are not optimised away */
    printf("{\"stream_gbs\": %.2f, \"checksum\": %g}\n", (double)n * sizeof *buf / best / 1e9, sum);
    free(buf);
    return 0;
}

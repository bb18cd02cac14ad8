/* kernels/cpu/sample.c — the next-token choice (see sample.h): libcommon's
 * lf_sample_next arithmetic statement for statement, with the uniform draw
 * passed in. */
#include "sample.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static int cmp_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

struct scored {
    float logit;
    int32_t id;
};

/* logit descending, then id ascending: a total order (no NaN), so the
   sorted array does not depend on qsort's (un)stability */
static int cmp_scored_desc(const void *a, const void *b)
{
    const struct scored *x = a, *y = b;
    if (x->logit != y->logit)
        return x->logit < y->logit ? 1 : -1;
    return x->id < y->id ? -1 : x->id > y->id;
}

int32_t lf_cpu_sample_f32(float *logits, int V, const struct lf_cpu_sample_params *p, const int32_t *history,
                          size_t nhistory, double u)
{
    if (p->repetition_penalty != 1.0) {
        for (size_t i = 0; i < nhistory; i++) {
            int32_t id = history[i];
            if (id < 0 || id >= V)
                continue;
            /* each seen token once, as scatter over the gathered values */
            bool earlier = false;
            for (size_t j = 0; j < i && !earlier; j++)
                earlier = history[j] == id;
            if (earlier)
                continue;
            float x = logits[id];
            logits[id] = x < 0 ? x * (float)p->repetition_penalty : x / (float)p->repetition_penalty;
        }
    }
    if (!lf_cpu_sample_draws(p)) {
        int best = 0;
        for (int v = 1; v < V; v++)
            if (logits[v] > logits[best])
                best = v;
        return best;
    }
    for (int v = 0; v < V; v++)
        logits[v] = (float)(logits[v] / p->temperature);
    if (p->top_k > 0 && p->top_k < V) {
        float *copy = malloc((size_t)V * sizeof *copy);
        if (!copy)
            return -1;
        memcpy(copy, logits, (size_t)V * sizeof *copy);
        qsort(copy, (size_t)V, sizeof *copy, cmp_desc);
        float kth = copy[p->top_k - 1];
        for (int v = 0; v < V; v++)
            if (logits[v] < kth)
                logits[v] = -INFINITY;
        free(copy);
    }
    struct scored *s = malloc((size_t)V * sizeof *s);
    if (!s)
        return -1;
    for (int v = 0; v < V; v++)
        s[v] = (struct scored){ logits[v], v };
    qsort(s, (size_t)V, sizeof *s, cmp_scored_desc);
    double mx = s[0].logit, z = 0;
    for (int v = 0; v < V; v++)
        z += exp(s[v].logit - mx);
    /* top-p: keep the most likely tokens until their mass reaches top_p */
    int keep = V;
    if (p->top_p < 1.0) {
        double mass = 0;
        for (int v = 0; v < V; v++) {
            mass += exp(s[v].logit - mx) / z;
            if (mass >= p->top_p) {
                keep = v + 1;
                break;
            }
        }
    }
    double total = 0;
    for (int v = 0; v < keep; v++)
        total += exp(s[v].logit - mx);
    double ut = u * total, acc = 0;
    int32_t pick = s[keep - 1].id;
    for (int v = 0; v < keep; v++) {
        acc += exp(s[v].logit - mx);
        if (ut < acc) {
            pick = s[v].id;
            break;
        }
    }
    free(s);
    return pick;
}

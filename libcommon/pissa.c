/*
 * pissa.c — PiSSA's initialisation of a LoRA pair (PEFT's init_lora_weights
 * "pissa" and "pissa_niter_N", see pissa.h): the principal singular
 * triplets of W become the adapter, W the residual.
 */
#include "pissa.h"

#include "error.h"
#include "nprandom.h"

#include "cpu/grad.h"
#include "cpu/matmul.h"
#include "cpu/svd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Orthonormal columns of x [m, q] (row-major), in place: modified
 * Gram-Schmidt in double, twice. */
static void orthonormalize(float *x, int m, int q)
{
	for (int pass = 0; pass < 2; pass++)
		for (int j = 0; j < q; j++) {
			for (int k = 0; k < j; k++) {
				double dot = 0;
				for (int i = 0; i < m; i++)
					dot += (double)x[(size_t)i * q + j] * x[(size_t)i * q + k];
				for (int i = 0; i < m; i++)
					x[(size_t)i * q + j] -= (float)(dot * x[(size_t)i * q + k]);
			}
			double nn = 0;
			for (int i = 0; i < m; i++)
				nn += (double)x[(size_t)i * q + j] * x[(size_t)i * q + j];
			float inv = nn > 0 ? (float)(1.0 / sqrt(nn)) : 0.0f;
			for (int i = 0; i < m; i++)
				x[(size_t)i * q + j] *= inv;
		}
}

/* The top r singular triplets of w [out, in] by randomized subspace
 * iteration (Halko et al.'s algorithm 4.4, as torch.svd_lowrank): Q from
 * w R with R Gaussian [in, r], niter rounds of Q <- orth(w orth(w^T Q)),
 * then the SVD of Q^T w.  U [out, r], s [r], Vt [r, in]. */
static int svd_lowrank(const float *w, int out, int in, int r, int niter, uint64_t seed, float *U, float *s,
		       float *Vt)
{
	struct lf_np_rng rng;
	lf_np_rng_seed(&rng, seed);
	float *R = lf_malloc((size_t)in * r * sizeof *R), *Q = lf_malloc((size_t)out * r * sizeof *Q);
	float *Z = lf_malloc((size_t)in * r * sizeof *Z), *Bq = lf_malloc((size_t)r * in * sizeof *Bq);
	float *Ub = lf_malloc((size_t)r * r * sizeof *Ub);
	for (size_t i = 0; i < (size_t)in * r; i += 2) { /* Box-Muller */
		double u1 = 1.0 - lf_np_random(&rng), u2 = lf_np_random(&rng), rad = sqrt(-2.0 * log(u1));
		R[i] = (float)(rad * cos(2 * M_PI * u2));
		if (i + 1 < (size_t)in * r)
			R[i + 1] = (float)(rad * sin(2 * M_PI * u2));
	}
	/* Q = orth(w R): w [out, in] @ R [in, r] */
	lf_cpu_matmul_nn_f32(Q, w, R, out, in, r, 0.0f);
	orthonormalize(Q, out, r);
	for (int it = 0; it < niter; it++) {
		/* Z = orth(w^T Q) [in, r]; Q = orth(w Z) */
		memset(Z, 0, (size_t)in * r * sizeof *Z);
		lf_cpu_matmul_tn_acc_f32(Z, w, Q, out, in, r, 1.0f);
		orthonormalize(Z, in, r);
		lf_cpu_matmul_nn_f32(Q, w, Z, out, in, r, 0.0f);
		orthonormalize(Q, out, r);
	}
	/* Bq = Q^T w [r, in] = Ub s Vt; U = Q Ub */
	memset(Bq, 0, (size_t)r * in * sizeof *Bq);
	lf_cpu_matmul_tn_acc_f32(Bq, Q, w, out, r, in, 1.0f);
	int rc = lf_cpu_svd_f32(Bq, r, in, Ub, s, Vt);
	if (rc == 0)
		lf_cpu_matmul_nn_f32(U, Q, Ub, out, r, r, 0.0f);
	free(R);
	free(Q);
	free(Z);
	free(Bq);
	free(Ub);
	return rc < 0 ? lf_fail("PiSSA: the SVD did not converge") : 0;
}

int lf_pissa_init(float *w, int out, int in, int r, float scale, int niter, uint64_t seed, float *A, float *B)
{
	int k = out < in ? out : in;
	if (r < 1 || r > k)
		return lf_fail("PiSSA: rank %d for a %d x %d weight", r, out, in);
	float *U, *s, *Vt;
	if (niter < 0) { /* the full SVD */
		U = lf_malloc((size_t)out * k * sizeof *U);
		s = lf_malloc((size_t)k * sizeof *s);
		Vt = lf_malloc((size_t)k * in * sizeof *Vt);
		if (lf_cpu_svd_f32(w, out, in, U, s, Vt) < 0) {
			free(U);
			free(s);
			free(Vt);
			return lf_fail("PiSSA: the SVD did not converge");
		}
	} else {
		k = r;
		U = lf_malloc((size_t)out * r * sizeof *U);
		s = lf_malloc((size_t)r * sizeof *s);
		Vt = lf_malloc((size_t)r * in * sizeof *Vt);
		if (svd_lowrank(w, out, in, r, niter, seed, U, s, Vt) < 0) {
			free(U);
			free(s);
			free(Vt);
			return -1;
		}
	}
	/* A = sqrt(s / scale) Vt[:r], B = U[:, :r] sqrt(s / scale) */
	for (int i = 0; i < r; i++) {
		float g = sqrtf(s[i] / scale);
		for (int c = 0; c < in; c++)
			A[(size_t)i * in + c] = g * Vt[(size_t)i * in + c];
		for (int j = 0; j < out; j++)
			B[(size_t)j * r + i] = U[(size_t)j * k + i] * g;
	}
	/* W -= scale B A */
	float *At = lf_malloc((size_t)in * r * sizeof *At);
	for (int i = 0; i < r; i++)
		for (int c = 0; c < in; c++)
			At[(size_t)c * r + i] = A[(size_t)i * in + c];
	lf_cpu_matmul_nt_acc_f32(w, B, At, out, in, r, -scale);
	free(At);
	free(U);
	free(s);
	free(Vt);
	return 0;
}

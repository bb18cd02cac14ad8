/*
 * test_optim.c — libcommon/optim.c against torch 2.9.1 and transformers 5.5.4
 * (tests/golden/optim.json, scripts/goldens/make-optim-goldens.py): AdamW
 * traces bit for bit (torch's single-tensor AdamW with its sqrt made the IEEE
 * one; stock torch's MKL sqrt is off by an ulp now and then, so against it
 * within a few ulp), clip_grad_norm_ to f32 rounding, every schedule's lr
 * bit for bit, the warmup rule, and the weight-decay names of real models;
 * plus thread-count invariance and the errors.
 */
#include "check.h"
#include "error.h"
#include "optim.h"
#include "cpu/vec.h"

#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define GOLDEN "tests/golden/optim.json"

/* "3f800000bf000000..." (big-endian f32 bit patterns) into a new array */
static float *unhex(const char *s, size_t *n)
{
	size_t len = strlen(s);
	*n = len / 8;
	float *out = lf_malloc((*n + 1) * sizeof *out);
	for (size_t i = 0; i < *n; i++) {
		char word[9];
		memcpy(word, s + 8 * i, 8);
		word[8] = 0;
		uint32_t bits = (uint32_t)strtoul(word, NULL, 16);
		memcpy(&out[i], &bits, 4);
	}
	return out;
}

static float *unhex_at(const json_t *arr, size_t i, size_t *n)
{
	return unhex(json_string_value(json_array_get(arr, i)), n);
}

/* distance in units in the last place (0 for identical bits) */
static int64_t ulps(float a, float b)
{
	int32_t ia, ib;
	memcpy(&ia, &a, 4);
	memcpy(&ib, &b, 4);
	if (ia < 0)
		ia = INT32_MIN - ia;
	if (ib < 0)
		ib = INT32_MIN - ib;
	return llabs((int64_t)ia - ib);
}

static bool same_double(double a, double b)
{
	return memcmp(&a, &b, sizeof a) == 0;
}

/* a schedule as the golden names it: type, warmup, total, base lr, kwargs */
static int sched_from(struct lf_lr_sched *s, const char *type, long warmup, long total, double base_lr,
		      const json_t *kwargs)
{
	enum lf_lr_sched_type t;
	if (lf_lr_sched_parse(type, &t) < 0)
		return -1;
	lf_lr_sched_init(s, t, warmup, total, base_lr);
	if (lf_lr_sched_kwargs(s, kwargs) < 0 || lf_lr_sched_check(s) < 0)
		return -1;
	return 0;
}

static void test_adamw_case(const json_t *c)
{
	const char *name = json_string_value(json_object_get(c, "name"));
	struct lf_adamw h = {
		.lr = json_number_value(json_object_get(c, "lr")),
		.beta1 = json_number_value(json_object_get(c, "beta1")),
		.beta2 = json_number_value(json_object_get(c, "beta2")),
		.eps = json_number_value(json_object_get(c, "eps")),
		.weight_decay = json_number_value(json_object_get(c, "weight_decay")),
	};
	const json_t *tensors = json_object_get(c, "tensors"), *steps = json_object_get(c, "steps");
	size_t nt = json_array_size(tensors), nsteps = json_array_size(steps);

	struct lf_lr_sched sched;
	bool lr_ok = sched_from(&sched, json_string_value(json_object_get(c, "schedule")),
				(long)json_integer_value(json_object_get(c, "warmup_steps")), (long)nsteps, h.lr,
				json_object_get(c, "kwargs")) == 0;
	for (size_t k = 0; lr_ok && k < nsteps; k++)
		lr_ok = same_double(lf_lr_at(&sched, (long)k),
				    json_number_value(json_object_get(json_array_get(steps, k), "lr")));
	CHECK(lr_ok, "adamw %s: the %s schedule gives the lr torch used at each step", name,
	      json_string_value(json_object_get(c, "schedule")));

	size_t total = 0, differ = 0;
	int64_t worst = 0;
	bool states_same = true;
	double stock_worst = 0;
	for (size_t t = 0; t < nt; t++) {
		const json_t *tj = json_array_get(tensors, t);
		size_t n, gn, wn;
		float *p = unhex(json_string_value(json_object_get(tj, "init")), &n);
		float *m = lf_calloc(n + 1, sizeof *m), *v = lf_calloc(n + 1, sizeof *v);
		int decay = json_is_true(json_object_get(tj, "decay"));
		for (size_t k = 0; k < nsteps; k++) {
			const json_t *sj = json_array_get(steps, k);
			float *g = unhex_at(json_object_get(sj, "grads"), t, &gn);
			float *want = unhex_at(json_object_get(sj, "params"), t, &wn);
			double lr = json_number_value(json_object_get(sj, "lr"));
			lf_adamw_step(p, g, m, v, n, (long)k + 1, lr, &h, decay, 1.0f);
			for (size_t i = 0; i < n; i++) {
				int64_t u = ulps(p[i], want[i]);
				differ += u != 0;
				worst = u > worst ? u : worst;
			}
			total += n;
			free(g);
			free(want);
		}
		/* stock torch (MKL's sqrt): within a few ulp of 1 */
		float *stock = unhex_at(json_object_get(c, "stock_params"), t, &wn);
		for (size_t i = 0; i < n; i++) {
			double d = fabs((double)p[i] - stock[i]) / fmax(1.0, fabs(stock[i]));
			stock_worst = d > stock_worst ? d : stock_worst;
		}
		free(stock);
		float *wm = unhex_at(json_object_get(c, "exp_avg"), t, &wn);
		float *wv = unhex_at(json_object_get(c, "exp_avg_sq"), t, &wn);
		states_same = states_same && !memcmp(m, wm, n * 4) && !memcmp(v, wv, n * 4);
		free(wm);
		free(wv);
		free(p);
		free(m);
		free(v);
	}
	CHECK(differ == 0,
	      "adamw %s: %zu params over %zu steps bit-exact with torch's AdamW (IEEE sqrt; %zu differ, max %lld ulp)",
	      name, total, nsteps, differ, (long long)worst);
	CHECK(states_same, "adamw %s: exp_avg and exp_avg_sq after the last step bit-exact", name);
	CHECK(stock_worst <= 4 * 0x1p-24, "adamw %s: final params within 4 ulp of 1 of stock torch's (MKL sqrt; %lld of its "
	      "(step, element) params differ from the IEEE ones; %.3g)", name,
	      (long long)json_integer_value(json_object_get(c, "stock_params_differing")), stock_worst / 0x1p-24);
}

/* a large tensor: 1 thread and 4 threads give the same bits, and the same
 * as the tensor done in small pieces (each element on its own), and the
 * portable C the same as the vector code of each instruction set (the
 * golden cases above check whichever this CPU runs against torch) */
static void test_adamw_threads(void)
{
	size_t n = 300007;
	float *p[4], *m[4], *v[4], *g = lf_malloc(n * sizeof *g);
	uint64_t r = 12345;
	for (int k = 0; k < 4; k++) {
		p[k] = lf_malloc(n * sizeof(float));
		m[k] = lf_calloc(n, sizeof(float));
		v[k] = lf_calloc(n, sizeof(float));
	}
	for (size_t i = 0; i < n; i++) {
		r = r * 6364136223846793005ull + 1442695040888963407ull;
		p[0][i] = p[1][i] = p[2][i] = p[3][i] = (float)((double)(r >> 11) / 9007199254740992.0 - 0.5);
	}
	struct lf_adamw h = lf_adamw_defaults();
	h.weight_decay = 0.1;
	for (long step = 1; step <= 3; step++) {
		for (size_t i = 0; i < n; i++) {
			r = r * 6364136223846793005ull + 1442695040888963407ull;
			g[i] = (float)((double)(r >> 11) / 9007199254740992.0 - 0.5) * 1e-2f;
		}
		omp_set_num_threads(1);
		lf_adamw_step(p[0], g, m[0], v[0], n, step, 1e-3, &h, 1, 1.0f);
		omp_set_num_threads(4);
		lf_adamw_step(p[1], g, m[1], v[1], n, step, 1e-3, &h, 1, 1.0f);
		for (size_t i = 0; i < n; i += 1000) {
			size_t len = n - i < 1000 ? n - i : 1000;
			lf_adamw_step(p[2] + i, g + i, m[2] + i, v[2] + i, len, step, 1e-3, &h, 1, 1.0f);
		}
		lf_cpu_set_isa(LF_CPU_ISA_PORTABLE);
		lf_adamw_step(p[3], g, m[3], v[3], n, step, 1e-3, &h, 1, 1.0f);
		lf_cpu_set_isa(-1);
	}
	CHECK(!memcmp(p[0], p[1], n * 4) && !memcmp(m[0], m[1], n * 4) && !memcmp(v[0], v[1], n * 4),
	      "adamw: 1 and 4 threads give the same bits (%zu elements, 3 steps)", n);
	CHECK(!memcmp(p[0], p[2], n * 4), "adamw: the same bits when the tensor is stepped in pieces");
	CHECK(!memcmp(p[0], p[3], n * 4) && !memcmp(m[0], m[3], n * 4) && !memcmp(v[0], v[3], n * 4),
	      "adamw: the portable C gives the bits of the %s code", lf_cpu_isa_name(lf_cpu_isa()));

	/* grad_coef: the same bits as clipping's g *= coef before the step,
	   for every instruction set, and g is left as it was */
	float coef = 0.3719f, *gs = lf_malloc(n * sizeof *gs), *g0 = lf_malloc(n * sizeof *g0);
	memcpy(g0, g, n * sizeof *g);
	memcpy(gs, g, n * sizeof *g);
	lf_grad_scale(gs, n, coef);
	lf_cpu_set_isa(-1);
	for (int isa = LF_CPU_ISA_PORTABLE, best = lf_cpu_isa(); isa <= best; isa++) {
		lf_cpu_set_isa(isa);
		memcpy(p[1], p[0], n * 4), memcpy(m[1], m[0], n * 4), memcpy(v[1], v[0], n * 4);
		memcpy(p[2], p[0], n * 4), memcpy(m[2], m[0], n * 4), memcpy(v[2], v[0], n * 4);
		lf_adamw_step(p[1], gs, m[1], v[1], n, 4, 1e-3, &h, 1, 1.0f);
		lf_adamw_step(p[2], g, m[2], v[2], n, 4, 1e-3, &h, 1, coef);
		CHECK(!memcmp(p[1], p[2], n * 4) && !memcmp(m[1], m[2], n * 4) && !memcmp(v[1], v[2], n * 4) &&
			      !memcmp(g, g0, n * 4),
		      "adamw %s: grad_coef %g gives the bits of g *= coef first, and leaves g", lf_cpu_isa_name(isa),
		      coef);
		/* every instruction set the bits of the portable C's step (p[3]) */
		if (isa == LF_CPU_ISA_PORTABLE)
			memcpy(p[3], p[1], n * 4), memcpy(m[3], m[1], n * 4), memcpy(v[3], v[1], n * 4);
		else
			CHECK(!memcmp(p[1], p[3], n * 4) && !memcmp(m[1], m[3], n * 4) && !memcmp(v[1], v[3], n * 4),
			      "adamw %s: the bits of the portable C's step", lf_cpu_isa_name(isa));
	}
	lf_cpu_set_isa(-1);
	free(gs);
	free(g0);

	float *big = lf_malloc(3000001 * sizeof *big);
	for (size_t i = 0; i < 3000001; i++) {
		r = r * 6364136223846793005ull + 1442695040888963407ull;
		big[i] = (float)((double)(r >> 11) / 9007199254740992.0 - 0.5);
	}
	omp_set_num_threads(1);
	double s1 = lf_grad_norm_sq(big, 3000001);
	omp_set_num_threads(3);
	double s3 = lf_grad_norm_sq(big, 3000001);
	CHECK(same_double(s1, s3) && fabs(s1 / (3000001 / 12.0) - 1) < 1e-2,
	      "grad norm: 1 and 3 threads give the same double (%.17g)", s1);
	omp_set_num_threads(omp_get_num_procs());
	free(big);
	for (int k = 0; k < 4; k++) {
		free(p[k]);
		free(m[k]);
		free(v[k]);
	}
	free(g);
}

static void test_clip_case(const json_t *c)
{
	const char *name = json_string_value(json_object_get(c, "name"));
	const json_t *grads = json_object_get(c, "grads"), *clipped = json_object_get(c, "clipped");
	size_t nt = json_array_size(grads);
	double max_norm = json_number_value(json_object_get(c, "max_norm"));
	double want_total = json_number_value(json_object_get(c, "total_norm"));
	float *g[16];
	size_t n[16];
	double sq[16];
	for (size_t t = 0; t < nt && t < 16; t++) {
		g[t] = unhex_at(grads, t, &n[t]);
		sq[t] = lf_grad_norm_sq(g[t], n[t]);
	}
	double total;
	float coef = lf_clip_coef(sq, nt, max_norm, &total);
	int64_t tu = ulps((float)total, (float)want_total);
	CHECK(tu <= 2, "clip %s: total norm %.9g, torch %.9g (%lld ulp)", name, total, want_total, (long long)tu);
	int64_t worst = 0;
	for (size_t t = 0; t < nt; t++) {
		size_t wn;
		float *want = unhex_at(clipped, t, &wn);
		lf_grad_scale(g[t], n[t], coef);
		for (size_t i = 0; i < n[t]; i++) {
			int64_t u = ulps(g[t][i], want[i]);
			worst = u > worst ? u : worst;
		}
		free(want);
		free(g[t]);
	}
	bool clips = want_total + 1e-6 > max_norm;
	CHECK(clips ? worst <= 2 : worst == 0 && coef == 1.0f,
	      "clip %s: grads after clipping (coef %.9g) %s torch's (max %lld ulp)", name, coef,
	      clips ? "within 2 ulp of" : "bit-exact with", (long long)worst);
}

static void test_schedule_case(const json_t *c)
{
	const char *type = json_string_value(json_object_get(c, "type"));
	const json_t *warg = json_object_get(c, "warmup_arg"), *lrs = json_object_get(c, "lr");
	const json_t *ws = json_object_get(warg, "warmup_steps"), *wr = json_object_get(warg, "warmup_ratio");
	long total = (long)json_integer_value(json_object_get(c, "total_steps"));
	long warmup = lf_warmup_steps(ws ? json_number_value(ws) : 0.0, wr ? json_number_value(wr) : NAN, total);
	long want_warmup = (long)json_integer_value(json_object_get(c, "warmup_steps"));
	char *kw = json_dumps(json_object_get(c, "kwargs"), JSON_COMPACT);
	struct lf_lr_sched s;
	bool ok = warmup == want_warmup &&
		  sched_from(&s, type, warmup, total, json_number_value(json_object_get(c, "base_lr")),
			     json_object_get(c, "kwargs")) == 0;
	size_t bad = 0;
	for (size_t k = 0; ok && k < json_array_size(lrs); k++)
		if (!same_double(lf_lr_at(&s, (long)k), json_number_value(json_array_get(lrs, k)))) {
			if (!bad)
				printf("# %s %s warmup %ld step %zu: %.17g, transformers %.17g\n", type, kw, warmup, k,
				       lf_lr_at(&s, (long)k), json_number_value(json_array_get(lrs, k)));
			bad++;
		}
	CHECK(ok && bad == 0, "schedule %s %s, warmup %ld of %ld: the lr of steps 0..%ld bit-exact%s%s", type, kw,
	      warmup, total, total, ok ? "" : ": ", ok ? "" : lf_errmsg());
	free(kw);
}

static void test_warmup(const json_t *cases)
{
	size_t i, bad = 0;
	const json_t *c;
	json_array_foreach(cases, i, c) {
		const json_t *ws = json_object_get(c, "warmup_steps"), *wr = json_object_get(c, "warmup_ratio");
		long total = (long)json_integer_value(json_object_get(c, "total_steps"));
		long got = lf_warmup_steps(ws ? json_number_value(ws) : 0.0, wr ? json_number_value(wr) : NAN, total);
		long want = (long)json_integer_value(json_object_get(c, "resolved"));
		if (got != want) {
			printf("# warmup_steps %g warmup_ratio %g of %ld: %ld, transformers %ld\n",
			       ws ? json_number_value(ws) : 0.0, wr ? json_number_value(wr) : NAN, total, got, want);
			bad++;
		}
	}
	CHECK(bad == 0, "warmup: %zu combinations of warmup_steps / warmup_ratio resolve as TrainingArguments",
	      json_array_size(cases));
	CHECK(lf_warmup_steps(-1, NAN, 10) < 0 && strstr(lf_errmsg(), "negative"), "warmup: a negative value is an error: %s",
	      lf_errmsg());
}

static void test_decay_case(const json_t *c)
{
	const json_t *names = json_object_get(c, "names"), *decay = json_object_get(c, "decay");
	size_t i, j, bad = 0, ndecay = 0;
	const json_t *n, *d;
	json_array_foreach(names, i, n) {
		const char *name = json_string_value(n);
		bool want = false;
		json_array_foreach(decay, j, d)
			want = want || !strcmp(json_string_value(d), name);
		ndecay += want;
		if (lf_param_decays(name) != want) {
			printf("# %s: lf %s, transformers %s\n", name, want ? "no decay" : "decay", want ? "decay" : "no decay");
			bad++;
		}
	}
	CHECK(bad == 0, "decay %s: %zu of %zu parameters decay, as Trainer.get_decay_parameter_names says",
	      json_string_value(json_object_get(c, "model")), ndecay, json_array_size(names));
}

static void test_names_and_errors(void)
{
	const char *all[] = { "linear",		"cosine",	  "cosine_with_restarts",
			      "polynomial",	"constant",	  "constant_with_warmup",
			      "inverse_sqrt",	"cosine_with_min_lr", "cosine_warmup_with_min_lr",
			      "warmup_stable_decay" };
	bool ok = true;
	for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
		enum lf_lr_sched_type t;
		ok = ok && lf_lr_sched_parse(all[i], &t) == 0 && !strcmp(lf_lr_sched_name(t), all[i]) &&
		     strstr(lf_lr_sched_names, all[i]);
	}
	CHECK(ok, "schedules: every name parses and is listed");
	enum lf_lr_sched_type t;
	CHECK(lf_lr_sched_parse("cosine_restarts", &t) < 0 && strstr(lf_errmsg(), "'cosine_restarts'") &&
		      strstr(lf_errmsg(), "warmup_stable_decay"),
	      "schedules: an unknown name is an error naming it and the choices: %s", lf_errmsg());
	CHECK(lf_lr_sched_parse("reduce_lr_on_plateau", &t) < 0 && strstr(lf_errmsg(), "metrics"),
	      "schedules: reduce_lr_on_plateau is refused: %s", lf_errmsg());

	struct lf_lr_sched s;
	lf_lr_sched_init(&s, LF_LR_POLYNOMIAL, 0, 10, 1e-7);
	CHECK(lf_lr_sched_check(&s) < 0 && strstr(lf_errmsg(), "lr_end"), "schedules: polynomial with lr_end >= lr: %s",
	      lf_errmsg());
	lf_lr_sched_init(&s, LF_LR_WARMUP_STABLE_DECAY, 0, 10, 1e-3);
	CHECK(lf_lr_sched_check(&s) < 0 && strstr(lf_errmsg(), "num_decay_steps"),
	      "schedules: warmup_stable_decay without num_decay_steps: %s", lf_errmsg());
	lf_lr_sched_init(&s, LF_LR_COSINE_WITH_MIN_LR, 0, 10, 1e-3);
	CHECK(lf_lr_sched_check(&s) < 0, "schedules: cosine_with_min_lr without min_lr: %s", lf_errmsg());
	json_t *kw = json_pack("{s:f}", "power", 2.0);
	lf_lr_sched_init(&s, LF_LR_COSINE, 0, 10, 1e-3);
	CHECK(lf_lr_sched_kwargs(&s, kw) < 0 && strstr(lf_errmsg(), "'power'"),
	      "schedules: a kwarg the schedule does not take is an error: %s", lf_errmsg());
	lf_lr_sched_init(&s, LF_LR_CONSTANT, 0, 10, 1e-3);
	CHECK(lf_lr_sched_kwargs(&s, kw) == 0, "schedules: constant ignores lr_scheduler_kwargs, as get_scheduler");
	json_decref(kw);
	kw = json_pack("{s:s}", "decay_type", "square");
	lf_lr_sched_init(&s, LF_LR_WARMUP_STABLE_DECAY, 0, 10, 1e-3);
	CHECK(lf_lr_sched_kwargs(&s, kw) < 0 && strstr(lf_errmsg(), "1-sqrt"),
	      "schedules: an unknown wsd decay_type is an error: %s", lf_errmsg());
	json_decref(kw);

	CHECK(lf_param_decays("model.layers.0.self_attn.q_norm.weight") == 0 &&
		      lf_param_decays("model.layers.0.mlp.gate.e_score_correction_bias") == 0 &&
		      lf_param_decays("encoder.LayerNorm.weight") == 0 && lf_param_decays("model.norm") == 0 &&
		      lf_param_decays("model.normalizer.weight") == 1 && lf_param_decays("model.enorm.weight") == 1 &&
		      lf_param_decays("lm_head.weight") == 1,
	      "decay: names beyond the models (components, case, suffixes)");
}

int main(void)
{
	json_error_t err;
	json_t *doc = json_load_file(GOLDEN, 0, &err);
	if (!CHECK(doc != NULL, "%s loads%s%s", GOLDEN, doc ? "" : ": ", doc ? "" : err.text))
		return check_done();
	size_t i;
	const json_t *c;
	json_array_foreach(json_object_get(doc, "adamw"), i, c)
		test_adamw_case(c);
	test_adamw_threads();
	json_array_foreach(json_object_get(doc, "clip"), i, c)
		test_clip_case(c);
	json_array_foreach(json_object_get(doc, "schedules"), i, c)
		test_schedule_case(c);
	test_warmup(json_object_get(doc, "warmup"));
	json_array_foreach(json_object_get(doc, "decay"), i, c)
		test_decay_case(c);
	test_names_and_errors();
	json_decref(doc);
	return check_done();
}

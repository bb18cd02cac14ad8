/*
 * lf-generate — answers for prompt records: reads a token stream of prompt
 * records (lf-template --stage ppo, or --prompt-only, piped through
 * lf-tokenize), generates a response for each with the model on the CPU,
 * and writes JSON lines {"prompt", "predict", "label"} as LLaMA-Factory's
 * generated_predictions.jsonl (special tokens left out of the text).
 */
#include "device.h"
#include "error.h"
#include "log.h"
#include "model.h"
#include "mp.h"
#include "options.h"
#include "output.h"
#include "record.h"
#include "sample.h"
#include "stream.h"
#include "tokenizer.h"

#include <jansson.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

static char *opt_model, *opt_tokenizer, *opt_output, *opt_adapter, *opt_device;
static bool opt_bf16;
static long long opt_seed = 42, opt_max_samples = -1, opt_batch_size = 8;
static struct lf_gen_options gen = LF_GEN_OPTIONS_UNSET;

static struct lf_option options[] = {
	{ "model-name-or-path", 'm', LF_OPT_STRING, &opt_model, "DIR", "the model folder" },
	{ "tokenizer", 0, LF_OPT_STRING, &opt_tokenizer, "PATH", "the tokenizer (default: the model folder's)",
	  LF_OPT_CLI_ONLY },
	{ "adapter-name-or-path", 0, LF_OPT_STRING, &opt_adapter, "DIR", "a PEFT LoRA adapter to apply (unmerged)" },
	{ "do-sample", 0, LF_OPT_BOOL, &gen.do_sample, NULL, "sample (default: the model's generation_config, else on)" },
	{ "temperature", 0, LF_OPT_FLOAT, &gen.temperature, "X", "sampling temperature (default 0.95)" },
	{ "top-p", 0, LF_OPT_FLOAT, &gen.top_p, "X", "nucleus sampling mass (default 0.7)" },
	{ "top-k", 0, LF_OPT_INT, &gen.top_k, "N", "sample among the N most likely tokens (default 50; 0: all)" },
	{ "repetition-penalty", 0, LF_OPT_FLOAT, &gen.repetition_penalty, "X", "penalty for seen tokens (default 1.0)" },
	{ "max-new-tokens", 0, LF_OPT_INT, &gen.max_new_tokens, "N", "longest answer (default 1024)" },
	{ "seed", 0, LF_OPT_INT, &opt_seed, "N", "sampling seed (default 42)" },
	{ "max-samples", 0, LF_OPT_INT, &opt_max_samples, "N", "answer the first N records only", LF_OPT_CLI_ONLY },
	{ "batch-size", 'b', LF_OPT_INT, &opt_batch_size, "N", "answer N prompts at once (default 8)", LF_OPT_CLI_ONLY },
	{ "output", 'o', LF_OPT_STRING, &opt_output, "FILE", "write to FILE (default: stdout)", LF_OPT_CLI_ONLY },
	{ "device", 0, LF_OPT_STRING, &opt_device, "NAME",
	  "cpu (default) or cuda: run the model on an NVIDIA GPU (builds with CUDA only)", LF_OPT_CLI_ONLY },
	{ "bf16", 0, LF_OPT_BOOL, &opt_bf16, NULL,
	  "with --device cuda: the products in bf16 (the CPU computes in f32 and says so)" },
	{ 0 }
};

static const struct lf_tool_info tool = {
	"lf-generate", "--model-name-or-path DIR [OPTION]... [STREAM]",
	"Generate answers for a token stream of prompt records, as JSON lines {prompt, predict, label}.",
	"STREAM defaults to standard input.  Settings not given come from the model's\n"
	"generation_config.json, else LLaMA-Factory's defaults.\n"
	"Example: lf-template -t qwen3 --stage ppo --dataset-dir data --dataset identity |\n"
	"  lf-tokenize --tokenizer m | lf-generate -m m --max-new-tokens 64",
};

/* Generation settings: the model's, then the command line's. */
static void settings(struct lf_gen_params *p)
{
	gen.do_sample_given = lf_option_find(options, "do-sample")->given;
	if (lf_gen_params_load(p, opt_model) < 0)
		lf_die("%s", lf_errmsg());
	if (lf_gen_params_override(p, &gen) < 0)
		lf_die_usage("%s", lf_errmsg());
}

static void decode(const struct lf_tokenizer *t, const int32_t *ids, size_t n, json_t *o, const char *key)
{
	struct lf_buf b = LF_BUF_INIT;
	if (lf_tokenizer_decode_generated(t, ids, n, true, &b) < 0)
		lf_die("%s", lf_errmsg());
	json_object_set_new(o, key, json_stringn(b.data ? b.data : "", b.len));
	lf_buf_free(&b);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int32_t *ids_of(struct lf_ids v)
{
	int32_t *x = lf_malloc((v.n + 1) * sizeof *x);
	for (size_t i = 0; i < v.n; i++)
		x[i] = lf_ids_at(v, i);
	return x;
}

/* ---- batches ---- */

struct job {
	uint64_t record;
	int T, cap, len; /* prompt length, room, ids so far */
	int32_t *seq, *label;
	size_t nlabel;
	struct lf_kv_cache kv;
#ifdef LF_HAVE_CUDA
	struct lf_cuda_kv gkv; /* --device cuda: the cache on the GPU instead */
#endif
	struct lf_np_rng rng;
};

static bool use_gpu; /* --device cuda */
#ifdef LF_HAVE_CUDA
static struct lf_cuda_train *gpu; /* the model on the GPU */
static int gpu_cap;               /* the tokens a call may have */
#endif

/* One forward of n sequences (jobs js[k] running in[k]): the last logits of
 * each, on the CPU or the GPU. */
static int forward(const struct lf_model *m, struct lf_seq_in *in, struct job **js, int n, struct lf_forward_buf *b,
		   float *logits)
{
#ifdef LF_HAVE_CUDA
	if (gpu) {
		struct lf_cuda_seq_in *g = lf_malloc((size_t)n * sizeof *g);
		int sum = 0;
		for (int k = 0; k < n; k++) {
			g[k] = (struct lf_cuda_seq_in){ &js[k]->gkv, in[k].ids, in[k].positions, in[k].T };
			sum += in[k].T;
		}
		int rc = 0;
		if (sum > gpu_cap) {
			gpu_cap = sum > 2 * gpu_cap ? sum : 2 * gpu_cap;
			rc = lf_cuda_train_reserve(gpu, gpu_cap, 1);
		}
		rc = rc < 0 ? rc : lf_cuda_forward_batch(gpu, g, n, true, logits);
		free(g);
		return rc;
	}
#else
	(void)js;
#endif
	return lf_model_forward_batch(m, in, n, b, true, logits);
}

static int cache_init(const struct lf_model *m, struct job *j)
{
#ifdef LF_HAVE_CUDA
	if (gpu)
		return lf_cuda_kv_init(gpu, &j->gkv, j->cap);
#endif
	return lf_kv_cache_init(&j->kv, m, j->cap);
}

static void cache_free(struct job *j)
{
#ifdef LF_HAVE_CUDA
	if (gpu)
		lf_cuda_kv_free(&j->gkv);
#endif
	lf_kv_cache_free(&j->kv);
}

static struct {
	uint64_t generated, prefill_tokens;
	double prefill_s, decode_s;
} stats;

static void write_answer(const struct lf_tokenizer *t, const struct job *j, FILE *f)
{
	json_t *line = json_object();
	decode(t, j->seq, (size_t)j->T, line, "prompt");
	decode(t, j->seq + j->T, (size_t)(j->len - j->T), line, "predict");
	decode(t, j->label, j->nlabel, line, "label");
	char *text = json_dumps(line, JSON_COMPACT | JSON_ENSURE_ASCII);
	if (fprintf(f, "%s\n", text) < 0)
		lf_die("%s: write failed", opt_output ? opt_output : "<stdout>");
	free(text);
	json_decref(line);
}

/* The batch's prompts in one forward, then one token per unfinished
 * sequence per forward until each stops. */
static void run_batch(const struct lf_model *m, const struct lf_gen_params *p, struct job *jobs, int nb,
		      const struct lf_tokenizer *t, FILE *f)
{
	int V = m->cfg.vocab, sum = 0, maxcap = 0;
	for (int i = 0; i < nb; i++) {
		sum += jobs[i].T;
		maxcap = jobs[i].cap > maxcap ? jobs[i].cap : maxcap;
	}
	struct lf_forward_buf b = { 0 };
#ifdef LF_HAVE_CUDA
	if (!gpu)
#endif
		lf_forward_buf_init(&b, m, sum > nb ? sum : nb, maxcap);
	float *logits = lf_malloc((size_t)nb * V * sizeof *logits);
	struct lf_seq_in *in = lf_malloc((size_t)nb * sizeof *in);
	struct job **js = lf_malloc((size_t)nb * sizeof *js);
	int *which = lf_malloc((size_t)nb * sizeof *which);
	for (int i = 0; i < nb; i++) {
		in[i] = (struct lf_seq_in){ &jobs[i].kv, jobs[i].seq, NULL, jobs[i].T };
		js[i] = &jobs[i];
	}
	double t0 = now();
	if (forward(m, in, js, nb, &b, logits) < 0)
		lf_die("record %llu: %s", (unsigned long long)jobs[0].record, lf_errmsg());
	double t1 = now();
	int active = nb;
	for (int i = 0; i < nb; i++)
		which[i] = i;
	for (;;) {
		/* choose each active sequence's next token */
		int next_active = 0;
		for (int k = 0; k < active; k++) {
			struct job *j = &jobs[which[k]];
			int32_t next = lf_sample_next(logits + (size_t)k * V, V, p, j->seq, (size_t)j->len, &j->rng);
			if (lf_gen_params_is_stop(p, next))
				continue; /* finished */
			j->seq[j->len++] = next;
			if (j->len - j->T == p->max_new_tokens)
				continue;
			in[next_active] = (struct lf_seq_in){ &j->kv, &j->seq[j->len - 1], NULL, 1 };
			js[next_active] = j;
			which[next_active++] = which[k];
		}
		active = next_active;
		if (!active)
			break;
		if (forward(m, in, js, active, &b, logits) < 0)
			lf_die("record %llu: %s", (unsigned long long)jobs[which[0]].record, lf_errmsg());
	}
	double t2 = now();
	stats.prefill_s += t1 - t0;
	stats.decode_s += t2 - t1;
	for (int i = 0; i < nb; i++) {
		struct job *j = &jobs[i];
		stats.prefill_tokens += (uint64_t)j->T;
		stats.generated += (uint64_t)(j->len - j->T);
		if (lf_log_enabled())
			lf_log_event("answer", json_pack("{s:I,s:i,s:i,s:i}", "record", (json_int_t)j->record, "prompt_tokens",
							 j->T, "new_tokens", j->len - j->T, "batch", nb));
		write_answer(t, j, f);
		free(j->seq);
		free(j->label);
		cache_free(j);
	}
	fflush(f);
	if (lf_log_enabled())
		lf_log_event("batch", json_pack("{s:i,s:f,s:f}", "sequences", nb, "prefill_seconds", t1 - t0,
						"decode_seconds", t2 - t1));
	free(which);
	free(js);
	free(in);
	free(logits);
	lf_forward_buf_free(&b);
}

int main(int argc, char **argv)
{
	lf_set_progname(argv[0]);
	lf_output_init_signals();
	int first = lf_options_parse(&tool, options, argc, argv);
	use_gpu = lf_device_start(opt_device, opt_bf16, argv);
	if (!opt_model)
		lf_die_usage("--model-name-or-path DIR is required");
	if (argc - first > 1)
		lf_die_usage("one STREAM at a time");
	if (opt_batch_size < 1 || opt_batch_size > 4096)
		lf_die_usage("option '--batch-size': N must be between 1 and 4096");
	struct lf_gen_params p;
	settings(&p);
	struct lf_tokenizer *t = lf_tokenizer_load(opt_tokenizer ? opt_tokenizer : opt_model);
	if (!t)
		lf_die("%s", lf_errmsg());
	struct lf_reader *rd = lf_reader_open(first < argc ? argv[first] : NULL);
	if (!rd)
		lf_die("%s", lf_errmsg());
	const msgpack_object *h = lf_reader_header(rd);
	size_t kn, tn;
	const char *kind = lf_header_kind(h, &kn), *type;
	if (!(kn == 6 && !memcmp(kind, "tokens", 6)) || lf_mp_get_str(h, "type", &type, &tn, true) < 0 ||
	    lf_rec_type_parse(type, tn) != LF_REC_PROMPT)
		lf_die("%s: lf-generate reads token streams of prompt records (lf-template --stage ppo | lf-tokenize)",
		       lf_reader_name(rd));
	int32_t ids3[3];
	if (lf_tokenizer_check_stream(t, h, ids3) < 0)
		lf_die("%s: %s", lf_reader_name(rd), lf_errmsg());
	lf_gen_params_add_stop(&p, ids3[1]); /* the template's eos */
	const msgpack_object *stops = lf_mp_get(lf_mp_get(h, "template"), "stop_words");
	for (uint32_t i = 0; stops && stops->type == MSGPACK_OBJECT_ARRAY && i < stops->via.array.size; i++) {
		const msgpack_object *s = &stops->via.array.ptr[i];
		if (s->type == MSGPACK_OBJECT_STR)
			lf_gen_params_add_stop(&p, lf_tokenizer_token_to_id(t, s->via.str.ptr, s->via.str.size));
	}
	struct lf_model *m = lf_model_load(opt_model);
	if (!m || (opt_adapter && lf_model_load_adapter(m, opt_adapter) < 0))
		lf_die("%s", lf_errmsg());
#ifdef LF_HAVE_CUDA
	gpu_cap = 4096;
	if (use_gpu && !(gpu = lf_cuda_model_open(m, lf_device_local_rank(), gpu_cap, opt_bf16)))
		lf_die("--device cuda: %s", lf_errmsg());
#endif
	struct lf_output out;
	if (lf_output_open(&out, opt_output) < 0)
		lf_die("%s", lf_errmsg());
	struct lf_arena arena = { 0 };
	const msgpack_object *o;
	int rc = 1;
	uint64_t n = 0;
	struct job *jobs = lf_calloc((size_t)opt_batch_size, sizeof *jobs);
	while (rc == 1) {
		/* a batch of records */
		int nb = 0;
		while (nb < opt_batch_size && (opt_max_samples < 0 || n + (uint64_t)nb < (uint64_t)opt_max_samples) &&
		       (rc = lf_reader_next(rd, &o)) == 1) {
			struct lf_token_record r;
			lf_arena_reset(&arena);
			if (lf_token_record_unpack(o, LF_REC_PROMPT, &arena, &r) < 0)
				lf_die("%s: record %llu: %s", lf_reader_name(rd), (unsigned long long)(n + nb), lf_errmsg());
			if (r.prompt.n < 1)
				lf_die("%s: record %llu: empty prompt", lf_reader_name(rd), (unsigned long long)(n + nb));
			struct job *j = &jobs[nb];
			j->record = n + (uint64_t)nb;
			j->T = (int)r.prompt.n;
			j->cap = j->T + p.max_new_tokens;
			j->seq = lf_malloc((size_t)j->cap * sizeof *j->seq);
			for (int i = 0; i < j->T; i++)
				j->seq[i] = lf_ids_at(r.prompt, (size_t)i);
			j->label = ids_of(r.response);
			j->nlabel = r.response.n;
			j->len = j->T;
			/* each record its own draws, whatever the batch size */
			uint32_t words[3] = { (uint32_t)opt_seed, (uint32_t)((uint64_t)opt_seed >> 32), (uint32_t)j->record };
			lf_np_rng_seed_words(&j->rng, words, 3);
			if (cache_init(m, j) < 0)
				lf_die("record %llu: %s", (unsigned long long)j->record, lf_errmsg());
			nb++;
		}
		if (rc < 0 && !nb)
			break;
		if (nb)
			run_batch(m, &p, jobs, nb, t, out.f);
		n += (uint64_t)nb;
		lf_progress("%llu answers, %llu tokens", (unsigned long long)n, (unsigned long long)stats.generated);
		if (opt_max_samples >= 0 && n >= (uint64_t)opt_max_samples)
			break;
	}
	free(jobs);
	lf_progress_done();
	if (rc < 0)
		lf_die("%s", lf_errmsg());
	if (lf_output_commit(&out) < 0)
		lf_die("%s", lf_errmsg());
	lf_note("%llu answers, %llu tokens generated; prefill %.0f tokens/s, decode %.1f tokens/s",
		(unsigned long long)n, (unsigned long long)stats.generated,
		stats.prefill_s > 0 ? (double)stats.prefill_tokens / stats.prefill_s : 0,
		stats.decode_s > 0 ? (double)stats.generated / stats.decode_s : 0);
	if (lf_log_enabled())
		lf_log_event("summary", json_pack("{s:I,s:I,s:I,s:f,s:f,s:I}", "answers", (json_int_t)n, "prompt_tokens",
						  (json_int_t)stats.prefill_tokens, "new_tokens",
						  (json_int_t)stats.generated, "prefill_seconds", stats.prefill_s,
						  "decode_seconds", stats.decode_s, "batch_size", (json_int_t)opt_batch_size));
	lf_log_close();
	lf_arena_free(&arena);
	lf_reader_close(rd);
#ifdef LF_HAVE_CUDA
	lf_cuda_train_close(gpu);
#endif
	lf_model_free(m);
	lf_tokenizer_free(t);
	return 0;
}

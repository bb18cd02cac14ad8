/*
 * lf-eval — evaluate a model on the CPU or a GPU: the logits of given token
 * ids (--task logits, for checking against other implementations) and the
 * loss and perplexity over the labels of lf-pack's shards (--task
 * perplexity).
 */
#include "device.h"
#include "error.h"
#include "example.h"
#include "log.h"
#include "model.h"
#include "options.h"
#include "safetensors.h"
#include "shardset.h"
#include "stream.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char *opt_model, *opt_task, *opt_input, *opt_output, *opt_split, *opt_adapter, *opt_device;
static bool opt_bf16;
static long long opt_max_samples = -1, opt_cutoff_len = 2048;

static struct lf_option options[] = {
	{ "model-name-or-path", 'm', LF_OPT_STRING, &opt_model, "DIR", "the model folder (config.json, safetensors)" },
	{ "task", 0, LF_OPT_STRING, &opt_task, "TASK", "logits or perplexity" },
	{ "input", 'i', LF_OPT_STRING, &opt_input, "PATH",
	  "logits: JSON lines {\"ids\": [...]}; perplexity: lf-pack's shards (folder, bundle or .shard) or a token "
	  "stream from lf-tokenize (- for standard input)",
	  LF_OPT_CLI_ONLY },
	{ "split", 0, LF_OPT_STRING, &opt_split, "NAME", "perplexity: the split to read (default: validation if the "
	  "shards have one, else train)", LF_OPT_CLI_ONLY },
	{ "max-samples", 0, LF_OPT_INT, &opt_max_samples, "N", "perplexity: the first N examples only",
	  LF_OPT_CLI_ONLY },
	{ "cutoff-len", 0, LF_OPT_INT, &opt_cutoff_len, "N",
	  "perplexity over a token stream: cut each example to N tokens as lf-pack does (default 2048)" },
	{ "adapter-name-or-path", 0, LF_OPT_STRING, &opt_adapter, "DIR", "a PEFT LoRA adapter to apply (unmerged)" },
	{ "output", 'o', LF_OPT_STRING, &opt_output, "FILE",
	  "logits: the safetensors file to write; perplexity: JSON result file (default: stdout)", LF_OPT_CLI_ONLY },
	{ "device", 0, LF_OPT_STRING, &opt_device, "NAME",
	  "cpu (default) or cuda: run the model on an NVIDIA GPU (builds with CUDA only)", LF_OPT_CLI_ONLY },
	{ "bf16", 0, LF_OPT_BOOL, &opt_bf16, NULL,
	  "with --device cuda: the products in bf16 (the CPU computes in f32 and says so)" },
	{ 0 }
};

static const struct lf_tool_info tool = {
	"lf-eval", "--model-name-or-path DIR --task TASK [OPTION]...",
	"Evaluate a Hugging Face model on the CPU or a GPU: logits of token ids, perplexity over lf-pack shards or a "
	"token stream.",
	"Tasks:\n"
	"  logits      --input ids.jsonl -o logits.safetensors: tensor logits.N [T, vocab] (f32) for line N\n"
	"  perplexity  --input SHARDS|STREAM: mean loss over the label tokens and its exp, as one JSON object",
};

/* ---- the forward pass ---- */

static bool use_gpu; /* --device cuda */
#ifdef LF_HAVE_CUDA
/* the model on the GPU, with room for sequences of up to gpu_cap tokens
 * (twice as much made when a longer one comes) */
static struct lf_cuda_train *gpu;
static int gpu_cap;
#endif

/* logits [T, V] of ids at RoPE positions pos (NULL: 0 .. T-1) */
static int forward_logits(const struct lf_model *m, const int32_t *ids, const int32_t *pos, int T, float *logits)
{
#ifdef LF_HAVE_CUDA
	if (use_gpu) {
		if (!gpu && !(gpu = lf_cuda_model_open(m, lf_device_local_rank(), T, opt_bf16)))
			lf_die("--device cuda: %s", lf_errmsg());
		if (T > gpu_cap) {
			gpu_cap = T > 2 * gpu_cap ? T : 2 * gpu_cap;
			if (lf_cuda_train_reserve(gpu, gpu_cap, gpu_cap) < 0)
				lf_die("--device cuda: %s", lf_errmsg());
		}
		int32_t *labels = lf_malloc((size_t)T * sizeof *labels);
		for (int t = 0; t < T; t++)
			labels[t] = -100;
		struct lf_train_row row = { ids, labels, pos, NULL, T, 0 };
		int rc = lf_cuda_train_logits(gpu, &row, logits);
		free(labels);
		return rc;
	}
#endif
	struct lf_kv_cache kv;
	struct lf_forward_buf b;
	lf_kv_cache_init(&kv, m, T);
	lf_forward_buf_init(&b, m, T, T);
	int rc = lf_model_forward(m, &kv, &b, ids, pos, T, false, logits);
	lf_forward_buf_free(&b);
	lf_kv_cache_free(&kv);
	return rc;
}

/* ---- logits ---- */

static int32_t *parse_ids(const char *line, size_t *n, const char *where)
{
	json_error_t err;
	json_t *o = json_loads(line, 0, &err);
	const json_t *a = o ? json_object_get(o, "ids") : NULL;
	if (!json_is_array(a) || json_array_size(a) == 0) {
		json_decref(o);
		lf_die("%s: not a JSON object with a non-empty \"ids\" list", where);
	}
	*n = json_array_size(a);
	int32_t *ids = lf_malloc(*n * sizeof *ids);
	for (size_t i = 0; i < *n; i++) {
		const json_t *x = json_array_get(a, i);
		if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > INT32_MAX)
			lf_die("%s: ids[%zu] is not a token id", where, i);
		ids[i] = (int32_t)json_integer_value(x);
	}
	json_decref(o);
	return ids;
}

static void task_logits(const struct lf_model *m)
{
	if (!opt_input || !opt_output)
		lf_die_usage("--task logits needs --input ids.jsonl and -o FILE.safetensors");
	FILE *f = strcmp(opt_input, "-") ? fopen(opt_input, "r") : stdin;
	if (!f)
		lf_die("%s: cannot open", opt_input);
	const char *slash = strrchr(opt_output, '/');
	char dir[4096], base[1024];
	snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - opt_output) : 1, slash ? opt_output : ".");
	snprintf(base, sizeof base, "%s", slash ? slash + 1 : opt_output);
	size_t bl = strlen(base);
	if (bl > 12 && !strcmp(base + bl - 12, ".safetensors"))
		base[bl - 12] = 0;
	struct lf_st_writer *w = lf_st_writer_open(dir, base, 0, NULL);
	if (!w)
		lf_die("%s", lf_errmsg());
	float **keep = NULL;
	char **names = NULL;
	size_t nkeep = 0;
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	long lineno = 0;
	while ((len = getline(&line, &cap, f)) > 0) {
		lineno++;
		if (strspn(line, " \t\r\n") == (size_t)len)
			continue;
		char where[4200];
		snprintf(where, sizeof where, "%s: line %ld", opt_input, lineno);
		size_t n;
		int32_t *ids = parse_ids(line, &n, where);
		float *logits = lf_malloc(n * (size_t)m->cfg.vocab * sizeof *logits);
		if (forward_logits(m, ids, NULL, (int)n, logits) < 0)
			lf_die("%s: %s", where, lf_errmsg());
		char name[64];
		snprintf(name, sizeof name, "logits.%zu", nkeep);
		keep = lf_realloc(keep, (nkeep + 1) * sizeof *keep);
		names = lf_realloc(names, (nkeep + 1) * sizeof *names);
		keep[nkeep] = logits;
		names[nkeep] = lf_strdup(name);
		int64_t shape[2] = { (int64_t)n, m->cfg.vocab };
		if (lf_st_writer_add(w, names[nkeep], LF_DTYPE_F32, 2, shape, logits) < 0)
			lf_die("%s", lf_errmsg());
		nkeep++;
		free(ids);
		lf_progress("%zu sequences", nkeep);
	}
	lf_progress_done();
	free(line);
	if (f != stdin)
		fclose(f);
	if (!nkeep)
		lf_die("%s: no sequences", opt_input);
	if (lf_st_writer_finish(w) < 0)
		lf_die("%s", lf_errmsg());
	for (size_t i = 0; i < nkeep; i++) {
		free(keep[i]);
		free(names[i]);
	}
	free(keep);
	free(names);
}

/* ---- perplexity ---- */

/* Cross-entropy of the next token over label positions, as transformers'
 * causal LM loss: logits at t predict labels[t + 1]. */
static void add_loss(const float *logits, const int32_t *labels, int T, int V, double *sum, uint64_t *count)
{
	for (int t = 0; t + 1 < T; t++) {
		int32_t y = labels[t + 1];
		if (y < 0)
			continue;
		const float *row = logits + (size_t)t * V;
		double mx = -INFINITY, z = 0;
		for (int v = 0; v < V; v++)
			mx = row[v] > mx ? row[v] : mx;
		for (int v = 0; v < V; v++)
			z += exp(row[v] - mx);
		*sum += log(z) + mx - row[y];
		(*count)++;
	}
}

static void run_part(const struct lf_model *m, const int32_t *ids, const int32_t *pos, const int32_t *labels,
		     int len, uint64_t example, double *sum, uint64_t *count)
{
	float *logits = lf_malloc((size_t)len * (size_t)m->cfg.vocab * sizeof *logits);
	if (forward_logits(m, ids, pos, len, logits) < 0)
		lf_die("%s: example %llu: %s", opt_input, (unsigned long long)example, lf_errmsg());
	add_loss(logits, labels, len, m->cfg.vocab, sum, count);
	free(logits);
}

/* What perplexity adds up over the examples. */
struct ppl {
	double sum;
	uint64_t label_tokens, tokens, examples;
	const char *split; /* the shards' split, or "stream" */
};

static void ppl_shards(const struct lf_model *m, struct ppl *r)
{
	struct lf_shardset *set = lf_shardset_open(opt_input);
	if (!set)
		lf_die("%s", lf_errmsg());
	int split = opt_split ? lf_shardset_find_split(set, opt_split) : lf_shardset_find_split(set, "validation");
	if (split < 0 && !opt_split)
		split = lf_shardset_find_split(set, "train");
	if (split < 0)
		lf_die("%s: no split '%s'", opt_input, opt_split ? opt_split : "train");
	uint64_t n = lf_shardset_examples(set, (size_t)split);
	if (opt_max_samples >= 0 && (uint64_t)opt_max_samples < n)
		n = (uint64_t)opt_max_samples;
	for (uint64_t i = 0; i < n; i++) {
		struct lf_shard_seq q;
		if (lf_shardset_get(set, (size_t)split, i, 0, &q) < 0)
			lf_die("%s", lf_errmsg());
		int T = (int)q.n;
		r->examples++;
		r->tokens += (uint64_t)T;
		if (T < 2)
			continue;
		int32_t *ids = lf_malloc((size_t)T * sizeof *ids), *labels = lf_malloc((size_t)T * sizeof *labels);
		int32_t *pos = lf_malloc((size_t)T * sizeof *pos);
		lf_shard_seq_decode(&q, ids, labels);
		/* a neat-packed sequence is its examples one by one (attention
		 * never crosses them, positions restart); plain packing is one
		 * sequence whose positions restart per example (0 for padding) */
		bool neat = q.nsegments && (q.flags & LF_SEQ_NEAT);
		int t = 0;
		for (uint32_t g = 0; g < q.nsegments; g++)
			for (uint32_t k = 0; k < lf_shard_seq_segment(&q, g); k++)
				pos[t++] = (int32_t)k;
		while (t < T)
			pos[t++] = 0;
		int nparts = neat ? (int)q.nsegments : 1, start = 0;
		for (int s = 0; s < nparts; s++) {
			int len = neat ? (int)lf_shard_seq_segment(&q, (uint32_t)s) : T;
			if (len >= 2)
				run_part(m, ids + start, q.nsegments ? pos + start : NULL, labels + start, len, i,
					 &r->sum, &r->label_tokens);
			start += len;
		}
		free(ids);
		free(labels);
		free(pos);
		lf_progress("%llu of %llu examples", (unsigned long long)i + 1, (unsigned long long)n);
	}
	r->split = lf_strdup(lf_shardset_split_name(set, (size_t)split));
	lf_shardset_close(set);
}

/* A token stream: each sft record is its supervised example, each pt
 * record its document, cut to --cutoff-len as lf-pack would without
 * packing. */
static void ppl_stream(const struct lf_model *m, struct ppl *r)
{
	struct lf_reader *rd = lf_reader_open(opt_input);
	if (!rd)
		lf_die("%s", lf_errmsg());
	const char *name = lf_reader_name(rd);
	struct lf_example_settings ex = { 0 };
	if (lf_example_settings_read(lf_reader_header(rd), NULL, NULL, &ex) < 0)
		lf_die("%s: %s", name, lf_errmsg());
	if (ex.type != LF_REC_SFT && ex.type != LF_REC_PT)
		lf_die("%s: perplexity over a stream reads sft and pt records, not %s (pack them with lf-pack)", name,
		       lf_rec_type_name(ex.type));
	if (opt_cutoff_len < 2)
		lf_die_usage("option '--cutoff-len': at least 2 tokens");
	ex.cutoff = (size_t)opt_cutoff_len;
	if (ex.vocab > (uint64_t)m->cfg.vocab)
		lf_die("%s: the stream's tokenizer has %llu ids, the model %d", name, (unsigned long long)ex.vocab,
		       m->cfg.vocab);
	struct lf_arena arena = { 0 };
	struct lf_ivec ids = { 0 }, labels = { 0 };
	const msgpack_object *o;
	int rc = 0;
	while ((opt_max_samples < 0 || r->examples < (uint64_t)opt_max_samples) && (rc = lf_reader_next(rd, &o)) == 1) {
		struct lf_token_record rec;
		lf_arena_reset(&arena);
		if (lf_token_record_unpack(o, ex.type, &arena, &rec) < 0 || lf_example_check_ids(&rec, ex.vocab) < 0)
			lf_die("%s: record %llu: %s", name, (unsigned long long)r->examples, lf_errmsg());
		if (ex.type == LF_REC_SFT)
			lf_example_supervised(&rec, &ex, &ids, &labels);
		else
			lf_example_document(&rec, &ex, &ids, &labels);
		if (ids.n >= 2)
			run_part(m, ids.v, NULL, labels.v, (int)ids.n, r->examples, &r->sum, &r->label_tokens);
		r->examples++;
		r->tokens += ids.n;
		lf_progress("%llu examples", (unsigned long long)r->examples);
	}
	if (rc < 0)
		lf_die("%s", lf_errmsg());
	lf_ivec_free(&ids);
	lf_ivec_free(&labels);
	lf_arena_free(&arena);
	lf_reader_close(rd);
	r->split = lf_strdup("stream");
}

/* Shards (a folder, a .shard or a bundle) start with their magic or are a
 * folder; anything else is read as a stream. */
static bool input_is_shards(const char *path)
{
	struct stat st;
	if (!strcmp(path, "-") || stat(path, &st) != 0)
		return false;
	if (S_ISDIR(st.st_mode))
		return true;
	FILE *f = fopen(path, "rb");
	char head[512] = { 0 };
	size_t n = f ? fread(head, 1, sizeof head, f) : 0;
	if (f)
		fclose(f);
	return (n >= 7 && !memcmp(head, LF_SHARD_MAGIC, 7)) || (n >= 262 && !memcmp(head + 257, "ustar", 5));
}

static void task_perplexity(const struct lf_model *m)
{
	if (!opt_input)
		lf_die_usage("--task perplexity needs --input SHARDS or a token stream");
	struct ppl r = { 0 };
	if (input_is_shards(opt_input))
		ppl_shards(m, &r);
	else
		ppl_stream(m, &r);
	lf_progress_done();
	if (!r.label_tokens)
		lf_die("%s: no label tokens to evaluate", opt_input);
	double loss = r.sum / (double)r.label_tokens;
	json_t *j = json_pack("{s:s,s:s,s:I,s:I,s:I,s:f,s:f}", "task", "perplexity", "split", r.split, "examples",
			      (json_int_t)r.examples, "tokens", (json_int_t)r.tokens, "label_tokens",
			      (json_int_t)r.label_tokens, "loss", loss, "perplexity", exp(loss));
	char *text = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT | JSON_REAL_PRECISION(10));
	FILE *out = opt_output ? fopen(opt_output, "w") : stdout;
	if (!out || fprintf(out, "%s\n", text) < 0 || (out != stdout && fclose(out) != 0))
		lf_die("%s: write failed", opt_output ? opt_output : "<stdout>");
	if (lf_log_enabled())
		lf_log_event("result", json_deep_copy(j));
	free(text);
	json_decref(j);
	free((char *)r.split);
}

int main(int argc, char **argv)
{
	lf_set_progname(argv[0]);
	int first = lf_options_parse(&tool, options, argc, argv);
	if (first < argc)
		lf_die_usage("unexpected operand '%s' (inputs go with --input)", argv[first]);
	use_gpu = lf_device_start(opt_device, opt_bf16, argv);
	if (!opt_model)
		lf_die_usage("--model-name-or-path DIR is required");
	if (!opt_task)
		lf_die_usage("--task is required: logits or perplexity");
	bool logits = !strcmp(opt_task, "logits"), ppl = !strcmp(opt_task, "perplexity");
	if (!logits && !ppl)
		lf_die_usage("task '%s' is not built: lf-eval runs logits and perplexity (LLaMA-Factory's benchmark "
			     "tasks such as mmlu_test are not offered yet)", opt_task);
	struct lf_model *m = lf_model_load(opt_model);
	if (!m || (opt_adapter && lf_model_load_adapter(m, opt_adapter) < 0))
		lf_die("%s", lf_errmsg());
	if (logits)
		task_logits(m);
	else
		task_perplexity(m);
#ifdef LF_HAVE_CUDA
	lf_cuda_train_close(gpu);
#endif
	lf_model_free(m);
	lf_log_close();
	return 0;
}

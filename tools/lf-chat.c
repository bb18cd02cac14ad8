/*
 * lf-chat — talk to a model in the terminal: each line read is a user
 * message; the conversation so far is rendered with a chat template (as
 * LLaMA-Factory's chat does), tokenized, and the answer streamed as it is
 * generated.  /clear forgets the conversation, /exit (or end of input)
 * leaves.
 */
#include "arena.h"
#include "convert.h"
#include "device.h"
#include "error.h"
#include "model.h"
#include "options.h"
#include "record.h"
#include "sample.h"
#include "template.h"
#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *opt_model, *opt_template, *opt_tokenizer, *opt_system, *opt_adapter, *opt_device;
static bool opt_bf16;
static long long opt_seed = 42;
static struct lf_gen_options gen = LF_GEN_OPTIONS_UNSET;
static bool opt_enable_thinking = true;

static struct lf_option options[] = {
	{ "model-name-or-path", 'm', LF_OPT_STRING, &opt_model, "DIR", "the model folder" },
	{ "template", 't', LF_OPT_STRING, &opt_template, "NAME", "chat template (see lf-template --list-templates)" },
	{ "tokenizer", 0, LF_OPT_STRING, &opt_tokenizer, "PATH", "the tokenizer (default: the model folder's)",
	  LF_OPT_CLI_ONLY },
	{ "default-system", 0, LF_OPT_STRING, &opt_system, "TEXT", "the system message (default: the template's)" },
	{ "enable-thinking", 0, LF_OPT_BOOL, &opt_enable_thinking, NULL,
	  "reasoning templates: let the model think (default on)" },
	{ "adapter-name-or-path", 0, LF_OPT_STRING, &opt_adapter, "DIR", "a PEFT LoRA adapter to apply (unmerged)" },
	{ "do-sample", 0, LF_OPT_BOOL, &gen.do_sample, NULL, "sample (default: the model's generation_config, else on)" },
	{ "temperature", 0, LF_OPT_FLOAT, &gen.temperature, "X", "sampling temperature (default 0.95)" },
	{ "top-p", 0, LF_OPT_FLOAT, &gen.top_p, "X", "nucleus sampling mass (default 0.7)" },
	{ "top-k", 0, LF_OPT_INT, &gen.top_k, "N", "sample among the N most likely tokens (default 50; 0: all)" },
	{ "repetition-penalty", 0, LF_OPT_FLOAT, &gen.repetition_penalty, "X", "penalty for seen tokens (default 1.0)" },
	{ "max-new-tokens", 0, LF_OPT_INT, &gen.max_new_tokens, "N", "longest answer (default 1024)" },
	{ "seed", 0, LF_OPT_INT, &opt_seed, "N", "sampling seed (default 42)", LF_OPT_CLI_ONLY },
	{ "device", 0, LF_OPT_STRING, &opt_device, "NAME",
	  "cpu (default) or cuda: run the model on an NVIDIA GPU (builds with CUDA only)", LF_OPT_CLI_ONLY },
	{ "bf16", 0, LF_OPT_BOOL, &opt_bf16, NULL,
	  "with --device cuda: the products in bf16 (the CPU computes in f32 and says so)" },
	{ 0 }
};

static const struct lf_tool_info tool = {
	"lf-chat", "--model-name-or-path DIR --template NAME [OPTION]...",
	"Chat with a model in the terminal: one line per message; /clear starts over, /exit leaves.",
	"Example: lf-init -t qwen3 -o tiny && lf-chat -m tiny -t qwen",
};

struct chat {
	struct lf_message *msgs;
	size_t n, cap;
};

static void chat_add(struct chat *c, enum lf_role role, const char *text, size_t len)
{
	if (c->n == c->cap) {
		c->cap = c->cap ? 2 * c->cap : 16;
		c->msgs = lf_realloc(c->msgs, c->cap * sizeof *c->msgs);
	}
	c->msgs[c->n++] = (struct lf_message){ role, lf_strndup(text, len), len };
}

static void chat_clear(struct chat *c)
{
	for (size_t i = 0; i < c->n; i++)
		free((char *)c->msgs[i].content);
	c->n = 0;
}

/* The prompt ids of the conversation: the template's rendering of it, up to
 * the assistant's turn. */
static int prompt_ids(const struct lf_template *tpl, const struct chat *c, const struct lf_tokenizer *t,
		      struct lf_tok_state *st, const struct lf_tok_specials *sp, struct lf_idvec *ids)
{
	struct lf_arena a = { 0 };
	struct lf_example ex = { 0 };
	ex.prompt = c->msgs;
	ex.nprompt = c->n;
	ex.system = opt_system ? opt_system : "";
	ex.system_len = strlen(ex.system);
	ex.tools = "";
	ex.kto_tag = -1;
	struct lf_text_record rec = { .type = LF_REC_PROMPT };
	struct lf_render_opts ro = { false };
	int rc = lf_template_render(tpl, &ro, &ex, &a, &rec);
	ids->n = 0;
	if (rc == 0)
		rc = lf_tok_encode_elems(t, st, sp, &rec.prompt, ids, NULL, NULL);
	lf_arena_free(&a);
	return rc;
}

/* Print what the answer's ids decode to beyond what is shown already
 * (bytes of a character still incomplete wait for the next token). */
static void stream_text(const struct lf_tokenizer *t, const int32_t *ids, size_t n, size_t *shown, struct lf_buf *text)
{
	lf_buf_reset(text);
	if (lf_tokenizer_decode_generated(t, ids, n, true, text) < 0)
		return;
	size_t len = text->len;
	if (len >= 3 && !memcmp(text->data + len - 3, "\xEF\xBF\xBD", 3))
		return; /* U+FFFD at the end: a character cut in two */
	if (len > *shown) {
		fwrite(text->data + *shown, 1, len - *shown, stdout);
		fflush(stdout);
		*shown = len;
	}
}

static bool use_gpu; /* --device cuda */

/* The conversation's cache, on the CPU or (--device cuda) the GPU. */
struct cache {
	struct lf_kv_cache kv;
	struct lf_forward_buf b;
#ifdef LF_HAVE_CUDA
	struct lf_cuda_train *gpu;
	struct lf_cuda_kv gkv;
#endif
};

static int *cache_len(struct cache *c)
{
#ifdef LF_HAVE_CUDA
	if (c->gpu)
		return &c->gkv.len;
#endif
	return &c->kv.len;
}

/* Room for capacity positions (keeping the first *cache_len), and for
 * calls of up to tokens tokens. */
static int cache_reserve(const struct lf_model *m, struct cache *c, int capacity, int tokens)
{
#ifdef LF_HAVE_CUDA
	if (c->gpu)
		return lf_cuda_kv_reserve(c->gpu, &c->gkv, capacity) < 0 ||
		       lf_cuda_train_reserve(c->gpu, tokens, 1) < 0 ? -1 : 0;
#endif
	lf_forward_buf_free(&c->b);
	return lf_kv_cache_reserve(&c->kv, m, capacity) < 0 || lf_forward_buf_init(&c->b, m, tokens, capacity) < 0 ?
		       -1 : 0;
}

/* ids[0..T) after what the cache holds: the last one's logits */
static int cache_forward(const struct lf_model *m, struct cache *c, const int32_t *ids, int T, float *logits)
{
#ifdef LF_HAVE_CUDA
	if (c->gpu) {
		struct lf_cuda_seq_in in = { &c->gkv, ids, NULL, T };
		return lf_cuda_forward_batch(c->gpu, &in, 1, true, logits);
	}
#endif
	return lf_model_forward(m, &c->kv, &c->b, ids, NULL, T, true, logits);
}

int main(int argc, char **argv)
{
	lf_set_progname(argv[0]);
	int first = lf_options_parse(&tool, options, argc, argv);
	if (first < argc)
		lf_die_usage("unexpected operand '%s'", argv[first]);
	use_gpu = lf_device_start(opt_device, opt_bf16, argv);
	if (!opt_model || !opt_template)
		lf_die_usage("--model-name-or-path DIR and --template NAME are required");
	struct lf_template tpl;
	if (lf_template_get(opt_template, &tpl) < 0)
		lf_die_usage("%s", lf_errmsg());
	tpl.enable_thinking = opt_enable_thinking;
	struct lf_gen_params p;
	if (lf_gen_params_load(&p, opt_model) < 0)
		lf_die("%s", lf_errmsg());
	gen.do_sample_given = lf_option_find(options, "do-sample")->given;
	if (lf_gen_params_override(&p, &gen) < 0)
		lf_die_usage("%s", lf_errmsg());
	const char *tok_path = opt_tokenizer ? opt_tokenizer : opt_model;
	struct lf_tokenizer *t = lf_tokenizer_load(tok_path);
	if (!t)
		lf_die("%s", lf_errmsg());
	const char *words[LF_MAX_STOP_WORDS];
	size_t lens[LF_MAX_STOP_WORDS], nstop = lf_template_nstop(&tpl);
	for (size_t i = 0; i < nstop; i++) {
		words[i] = tpl.stop_words[i];
		lens[i] = strlen(words[i]);
	}
	struct lf_tok_specials sp;
	if (lf_tok_resolve_specials(t, words, lens, nstop, tpl.replace_eos, tok_path, &sp) < 0)
		lf_die("%s", lf_errmsg());
	lf_gen_params_add_stop(&p, sp.eos);
	for (size_t i = 0; i < nstop; i++)
		lf_gen_params_add_stop(&p, lf_tokenizer_token_to_id(t, words[i], lens[i]));
	struct lf_tok_state *st = lf_tok_state_new(t);
	struct lf_model *m = lf_model_load(opt_model);
	if (!m || (opt_adapter && lf_model_load_adapter(m, opt_adapter) < 0))
		lf_die("%s", lf_errmsg());
	struct lf_np_rng rng;
	lf_np_rng_seed(&rng, (uint64_t)opt_seed);
	bool tty = isatty(STDIN_FILENO);
	if (tty)
		fprintf(stderr, "lf-chat: %s with template %s; /clear starts over, /exit leaves\n", opt_model, opt_template);
	struct chat c = { 0 };
	struct lf_idvec ids = { 0 }, cached = { 0 };
	struct cache kc = { 0 };
#ifdef LF_HAVE_CUDA
	if (use_gpu && (!(kc.gpu = lf_cuda_model_open(m, lf_device_local_rank(), 256, opt_bf16)) ||
			lf_cuda_kv_init(kc.gpu, &kc.gkv, 256) < 0))
		lf_die("--device cuda: %s", lf_errmsg());
	if (!use_gpu)
#endif
		lf_kv_cache_init(&kc.kv, m, 1);
	struct lf_buf text = LF_BUF_INIT;
	float *logits = lf_malloc((size_t)m->cfg.vocab * sizeof *logits);
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	for (;;) {
		if (tty)
			fputs("\nUser: ", stderr);
		if ((len = getline(&line, &cap, stdin)) <= 0)
			break;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = 0;
		if (!strcmp(line, "/exit"))
			break;
		if (!strcmp(line, "/clear")) {
			chat_clear(&c);
			*cache_len(&kc) = 0;
			cached.n = 0;
			if (tty)
				fputs("History has been removed.\n", stderr);
			continue;
		}
		chat_add(&c, LF_ROLE_USER, line, (size_t)len);
		if (prompt_ids(&tpl, &c, t, st, &sp, &ids) < 0)
			lf_die("%s", lf_errmsg());
		/* the cache keeps the conversation: only what differs from what it
		 * holds runs again (not with RoPE scaled by the length, whose keys
		 * depend on it) */
		size_t T = ids.n, common = 0;
		bool reuse = m->cfg.rope.type != LF_ROPE_DYNAMIC && m->cfg.rope.type != LF_ROPE_LONGROPE;
		while (reuse && common < (size_t)*cache_len(&kc) && common + 1 < T && cached.v[common] == ids.v[common])
			common++;
		*cache_len(&kc) = (int)common;
		if (cache_reserve(m, &kc, (int)(T + (size_t)p.max_new_tokens), (int)(T - common)) < 0 ||
		    cache_forward(m, &kc, ids.v + common, (int)(T - common), logits) < 0)
			lf_die("%s", lf_errmsg());
		if (tty)
			fputs("Assistant: ", stderr);
		size_t shown = 0;
		for (int k = 0; k < p.max_new_tokens; k++) {
			int32_t next = lf_sample_next(logits, m->cfg.vocab, &p, ids.v, ids.n, &rng);
			if (lf_gen_params_is_stop(&p, next))
				break;
			lf_idvec_push(&ids, next);
			stream_text(t, ids.v + T, ids.n - T, &shown, &text);
			if (k + 1 < p.max_new_tokens && cache_forward(m, &kc, &next, 1, logits) < 0)
				lf_die("%s", lf_errmsg());
		}
		lf_buf_reset(&text);
		lf_tokenizer_decode_generated(t, ids.v + T, ids.n - T, true, &text);
		if (text.len > shown)
			fwrite(text.data + shown, 1, text.len - shown, stdout);
		fputc('\n', stdout);
		fflush(stdout);
		chat_add(&c, LF_ROLE_ASSISTANT, text.data ? text.data : "", text.len);
		cached.n = 0; /* what the cache now holds */
		for (int i = 0; i < *cache_len(&kc); i++)
			lf_idvec_push(&cached, ids.v[i]);
	}
	free(line);
	free(logits);
	lf_buf_free(&text);
	lf_idvec_free(&ids);
	lf_idvec_free(&cached);
	lf_kv_cache_free(&kc.kv);
	lf_forward_buf_free(&kc.b);
#ifdef LF_HAVE_CUDA
	lf_cuda_kv_free(&kc.gkv);
	lf_cuda_train_close(kc.gpu);
#endif
	chat_clear(&c);
	free(c.msgs);
	lf_tok_state_free(st);
	lf_model_free(m);
	lf_tokenizer_free(t);
	return 0;
}

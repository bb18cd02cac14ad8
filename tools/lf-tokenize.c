/*
 * lf-tokenize — text records to token records with a Hugging Face tokenizer,
 * and plain text <-> ids for people and scripts.
 *
 * Pipeline mode reads lf-template's text stream and writes a token stream
 * (man 5 lf-stream): each text element is encoded in one call with
 * add_special_tokens=false, special tokens matched outside the user-content
 * ranges (everywhere with parse_special_in_content), bos/eos/named tokens
 * resolved by LLaMA-Factory's rules.  --text and --decode are the
 * tokenizers library's encode and decode over JSON lines.
 */
#include "buf.h"
#include "error.h"
#include "log.h"
#include "mp.h"
#include "options.h"
#include "output.h"
#include "pyjson.h"
#include "record.h"
#include "stream.h"
#include "tokenizer.h"
#include "unicode.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char *opt_tokenizer, *opt_model, *opt_output, *opt_add_tokens, *opt_add_special_tokens;
static bool opt_text, opt_no_special, opt_decode, opt_skip_special, opt_parse_special, opt_split_special;
static long long opt_threads = 0;

static struct lf_option options[] = {
	{ "tokenizer", 0, LF_OPT_STRING, &opt_tokenizer, "PATH",
	  "model folder with tokenizer.json (and tokenizer_config.json), or a tokenizer.json", LF_OPT_CLI_ONLY },
	{ "model-name-or-path", 0, LF_OPT_STRING, &opt_model, "PATH", "the model folder (recipe key; --tokenizer wins)" },
	{ "text", 0, LF_OPT_BOOL, &opt_text, NULL, "encode JSON lines {\"text\": ...} to {\"ids\": [...]}",
	  LF_OPT_CLI_ONLY },
	{ "no-special", 0, LF_OPT_BOOL, &opt_no_special, NULL,
	  "with --text: add_special_tokens=false (no post-processor tokens)", LF_OPT_CLI_ONLY },
	{ "decode", 0, LF_OPT_BOOL, &opt_decode, NULL, "decode JSON lines {\"ids\": [...]} to {\"text\": ...}",
	  LF_OPT_CLI_ONLY },
	{ "skip-special", 0, LF_OPT_BOOL, &opt_skip_special, NULL, "with --decode: leave special tokens out",
	  LF_OPT_CLI_ONLY },
	{ "parse-special-in-content", 0, LF_OPT_BOOL, &opt_parse_special, NULL,
	  "match special tokens inside user content too (must agree with the stream header)", LF_OPT_CLI_ONLY },
	{ "add-tokens", 0, LF_OPT_STRING, &opt_add_tokens, "LIST",
	  "add these comma-separated tokens to the tokenizer (new ids past its vocabulary)" },
	{ "add-special-tokens", 0, LF_OPT_STRING, &opt_add_special_tokens, "LIST",
	  "add these comma-separated special tokens to the tokenizer" },
	{ "split-special-tokens", 0, LF_OPT_BOOL, &opt_split_special, NULL,
	  "never split out special tokens: their spellings are encoded as text" },
	{ "threads", 'j', LF_OPT_INT, &opt_threads, "N", "encode with N threads (default: all cores)", LF_OPT_CLI_ONLY },
	{ "output", 'o', LF_OPT_STRING, &opt_output, "FILE", "write to FILE (default: stdout)", LF_OPT_CLI_ONLY },
	{ 0 }
};

static const struct lf_tool_info tool = {
	"lf-tokenize", "--tokenizer PATH [OPTION]... [INPUT]",
	"Tokenize lf text streams (or JSON lines with --text / --decode) exactly as Hugging Face tokenizers do.",
	"INPUT defaults to standard input.\n"
	"Example: lf-template -t llama3 --dataset-dir data --dataset identity | lf-tokenize --tokenizer models/llama3 -o id.lfs",
};

/* ---- tokens added on request (add_tokens, add_special_tokens) ---- */

static struct lf_tok_addition additions[256];
static size_t nadditions;

/* LLaMA-Factory's split of a token list: commas, each token stripped. */
static void add_tokens(struct lf_tokenizer *t, const char *list, bool special)
{
	const char *p = list;
	while (p) {
		const char *comma = strchr(p, ',');
		const char *end = comma ? comma : p + strlen(p);
		while (p < end && strchr(" \t\r\n\v\f", *p))
			p++;
		while (end > p && strchr(" \t\r\n\v\f", end[-1]))
			end--;
		if (end > p) {
			if (nadditions == sizeof additions / sizeof additions[0])
				lf_die_usage("at most %zu added tokens", nadditions);
			int32_t id = lf_tokenizer_add_token(t, p, (size_t)(end - p), special);
			if (id < 0)
				lf_die("%s", lf_errmsg());
			additions[nadditions++] = (struct lf_tok_addition){ lf_strndup(p, (size_t)(end - p)),
									    (size_t)(end - p), id, special };
		}
		p = comma ? comma + 1 : NULL;
	}
}

/* ---- parallel batches ---- */

typedef void (*item_fn)(void *ctx, size_t index, struct lf_tok_state *st);

struct worker {
	pthread_t thread;
	void *ctx;
	item_fn fn;
	size_t start, end;
	struct lf_tok_state *st;
};

static void *run_worker(void *arg)
{
	struct worker *w = arg;
	for (size_t i = w->start; i < w->end; i++)
		w->fn(w->ctx, i, w->st);
	return NULL;
}

/* Run fn over items [0, n) on the states' threads, in contiguous slices. */
static void parallel(struct lf_tok_state **states, size_t nthreads, size_t n, item_fn fn, void *ctx)
{
	if (nthreads <= 1 || n < 2) {
		for (size_t i = 0; i < n; i++)
			fn(ctx, i, states[0]);
		return;
	}
	struct worker w[64];
	size_t per = (n + nthreads - 1) / nthreads, used = 0;
	for (size_t k = 0; k < nthreads && k * per < n; k++, used++) {
		w[k] = (struct worker){ .ctx = ctx, .fn = fn, .start = k * per, .end = (k + 1) * per < n ? (k + 1) * per : n,
					.st = states[k] };
		if (pthread_create(&w[k].thread, NULL, run_worker, &w[k]) != 0)
			lf_die("cannot start a thread");
	}
	for (size_t k = 0; k < used; k++)
		pthread_join(w[k].thread, NULL);
}

/* ---- JSON lines (text and decode modes) ---- */

struct line_batch {
	const struct lf_tokenizer *t;
	char **lines;
	size_t *lens;
	struct lf_buf *out;
	char **errors;
	uint64_t *ntokens; /* ids written or read per line */
	uint64_t first_line;
};

/* A blank input line gives a blank output line, keeping lines aligned. */
static bool blank_line(struct line_batch *b, size_t i)
{
	for (size_t k = 0; k < b->lens[i]; k++)
		if (!strchr(" \t\r\n", b->lines[i][k]))
			return false;
	lf_buf_reset(&b->out[i]);
	lf_buf_addch(&b->out[i], '\n');
	b->ntokens[i] = 0;
	return true;
}

static void encode_line(void *ctx, size_t i, struct lf_tok_state *st)
{
	struct line_batch *b = ctx;
	if (blank_line(b, i))
		return;
	json_error_t err;
	json_t *o = json_loadb(b->lines[i], b->lens[i], JSON_ALLOW_NUL, &err);
	const json_t *text = json_object_get(o, "text");
	struct lf_buf *out = &b->out[i];
	lf_buf_reset(out);
	if (!o || !json_is_string(text)) {
		char msg[512];
		snprintf(msg, sizeof msg, "line %llu: %s", (unsigned long long)(b->first_line + i + 1),
			 !o ? err.text : "field 'text' is missing or not a string");
		b->errors[i] = lf_strdup(msg);
		json_decref(o);
		return;
	}
	struct lf_idvec ids = { 0 };
	lf_tokenizer_encode(b->t, st, json_string_value(text), json_string_length(text), NULL, 0, !opt_no_special, &ids);
	b->ntokens[i] = ids.n;
	lf_buf_addstr(out, "{\"ids\":[");
	for (size_t k = 0; k < ids.n; k++) {
		if (k)
			lf_buf_addch(out, ',');
		lf_buf_add_uint(out, (uint32_t)ids.v[k]);
	}
	lf_buf_addstr(out, "]}\n");
	lf_idvec_free(&ids);
	json_decref(o);
}

static void decode_line(void *ctx, size_t i, struct lf_tok_state *st)
{
	(void)st;
	struct line_batch *b = ctx;
	if (blank_line(b, i))
		return;
	json_error_t err;
	json_t *o = json_loadb(b->lines[i], b->lens[i], 0, &err);
	const json_t *ids = json_object_get(o, "ids");
	struct lf_buf *out = &b->out[i];
	lf_buf_reset(out);
	char msg[512];
	msg[0] = 0;
	if (!o || !json_is_array(ids)) {
		snprintf(msg, sizeof msg, "line %llu: %s", (unsigned long long)(b->first_line + i + 1),
			 !o ? err.text : "field 'ids' is missing or not a list");
	} else {
		size_t n = json_array_size(ids);
		b->ntokens[i] = n;
		int32_t *v = lf_malloc((n ? n : 1) * sizeof *v);
		for (size_t k = 0; k < n && !msg[0]; k++) {
			const json_t *x = json_array_get(ids, k);
			if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > INT32_MAX)
				snprintf(msg, sizeof msg, "line %llu: ids[%zu] is not a token id",
					 (unsigned long long)(b->first_line + i + 1), k);
			else
				v[k] = (int32_t)json_integer_value(x);
		}
		struct lf_buf text = LF_BUF_INIT;
		if (!msg[0] && lf_tokenizer_decode(b->t, v, n, opt_skip_special, &text) < 0)
			snprintf(msg, sizeof msg, "line %llu: %s", (unsigned long long)(b->first_line + i + 1), lf_errmsg());
		if (!msg[0]) {
			lf_buf_addstr(out, "{\"text\": ");
			lf_pyjson_string(out, text.data ? text.data : "", text.len);
			lf_buf_addstr(out, "}\n");
		}
		lf_buf_free(&text);
		free(v);
	}
	if (msg[0])
		b->errors[i] = lf_strdup(msg);
	json_decref(o);
}

#define BATCH 1024

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The closing line on stderr and the log's summary event. */
static void summary(const char *unit, uint64_t items, uint64_t tokens, uint64_t bytes, double seconds, size_t nthreads)
{
	lf_note("%llu %s%s, %llu token%s in %.2f s (%.0f tokens/s, %zu thread%s)", (unsigned long long)items, unit,
		items == 1 ? "" : "s", (unsigned long long)tokens, tokens == 1 ? "" : "s", seconds, seconds > 0 ? (double)tokens / seconds : 0.0, nthreads,
		nthreads == 1 ? "" : "s");
	if (lf_log_enabled())
		lf_log_event("summary", json_pack("{s:s,s:I,s:I,s:I,s:f,s:I}", "unit", unit, "count", (json_int_t)items,
						  "tokens", (json_int_t)tokens, "input_bytes", (json_int_t)bytes,
						  "seconds", seconds, "threads", (json_int_t)nthreads));
}

static void json_lines(const struct lf_tokenizer *t, struct lf_tok_state **states, size_t nthreads, const char *in_path,
		       item_fn fn)
{
	FILE *in = stdin;
	const char *name = "<stdin>";
	if (in_path && strcmp(in_path, "-")) {
		in = fopen(in_path, "rb");
		if (!in)
			lf_die("%s: cannot open", in_path);
		name = in_path;
	} else if (isatty(STDIN_FILENO)) {
		lf_note("reading JSON lines from the terminal (Ctrl-D ends)");
	}
	struct lf_output out;
	if (lf_output_open(&out, opt_output) < 0)
		lf_die("%s", lf_errmsg());
	struct line_batch b = { .t = t };
	double t0 = now_seconds();
	uint64_t tokens = 0, bytes = 0;
	b.ntokens = lf_calloc(BATCH, sizeof *b.ntokens);
	b.lines = lf_calloc(BATCH, sizeof *b.lines);
	b.lens = lf_calloc(BATCH, sizeof *b.lens);
	b.out = lf_calloc(BATCH, sizeof *b.out);
	b.errors = lf_calloc(BATCH, sizeof *b.errors);
	size_t caps[BATCH] = { 0 };
	uint64_t lineno = 0;
	for (;;) {
		size_t n = 0;
		ssize_t got;
		while (n < BATCH && (got = getline(&b.lines[n], &caps[n], in)) > 0) {
			b.lens[n] = (size_t)got;
			n++;
		}
		if (!n)
			break;
		b.first_line = lineno;
		parallel(states, nthreads, n, fn, &b);
		for (size_t i = 0; i < n; i++) {
			if (b.errors[i])
				lf_die("%s: %s", name, b.errors[i]);
			if (fwrite(b.out[i].data, 1, b.out[i].len, out.f) != b.out[i].len)
				lf_die("write failed");
			tokens += b.ntokens[i];
			bytes += b.lens[i];
		}
		lineno += n;
		lf_progress("%llu lines", (unsigned long long)lineno);
	}
	if (ferror(in))
		lf_die("%s: read failed", name);
	lf_progress_done();
	if (lf_output_commit(&out) < 0)
		lf_die("%s", lf_errmsg());
	summary("line", lineno, tokens, bytes, now_seconds() - t0, nthreads);
	for (size_t i = 0; i < BATCH; i++) {
		free(b.lines[i]);
		lf_buf_free(&b.out[i]);
	}
	free(b.lines);
	free(b.lens);
	free(b.out);
	free(b.errors);
	free(b.ntokens);
	if (in != stdin)
		fclose(in);
}

/* ---- pipeline mode ---- */

struct resolved {
	struct lf_tok_specials sp; /* bos, eos, pad, parse_special */
	enum lf_rec_type type;
};

struct record_batch {
	const struct lf_tokenizer *t;
	const struct resolved *r;
	struct lf_buf *raw; /* the text records, packed */
	msgpack_sbuffer *out;
	char **errors;
	uint64_t *ntokens; /* ids per record */
	uint64_t first;
};

/* Ids as the stream stores them: little-endian int32 bytes in b. */
static struct lf_ids ids_le(struct lf_buf *b, const struct lf_idvec *ids)
{
	lf_buf_grow(b, 4 * ids->n + 1);
	uint8_t *p = (uint8_t *)b->data;
	for (size_t j = 0; j < ids->n; j++) {
		uint32_t x = (uint32_t)ids->v[j];
		p[4 * j] = (uint8_t)x;
		p[4 * j + 1] = (uint8_t)(x >> 8);
		p[4 * j + 2] = (uint8_t)(x >> 16);
		p[4 * j + 3] = (uint8_t)(x >> 24);
	}
	b->len = 4 * ids->n;
	b->data[b->len] = 0;
	return (struct lf_ids){ p, ids->n };
}

static void encode_record(void *ctx, size_t i, struct lf_tok_state *st)
{
	struct record_batch *b = ctx;
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	struct lf_arena a = { 0 };
	struct lf_text_record tr;
	struct lf_token_record kr;
	struct lf_idvec ids[4] = { 0 };
	struct lf_idvec *turn_ids = NULL;
	int rc = -1;
	if (msgpack_unpack_next(&u, b->raw[i].data, b->raw[i].len, NULL) != MSGPACK_UNPACK_SUCCESS) {
		lf_fail("not a msgpack record");
		goto done;
	}
	if (lf_text_record_unpack(&u.data, b->r->type, &a, &tr) < 0)
		goto done;
	memset(&kr, 0, sizeof kr);
	kr.type = tr.type;
	kr.dataset = tr.dataset;
	kr.row = tr.row;
	kr.source_row = tr.source_row;
	kr.desirable = tr.desirable;
	/* ids of each part, then views of them for packing */
	struct lf_ids *views[4] = { &kr.prompt, &kr.response, &kr.chosen, &kr.rejected };
	const struct lf_elems *parts[4] = { &tr.prompt, &tr.response, &tr.chosen, &tr.rejected };
	if (tr.type == LF_REC_SFT) {
		turn_ids = lf_calloc(2 * (tr.nturns ? tr.nturns : 1), sizeof *turn_ids);
		kr.turns = lf_arena_alloc(&a, (tr.nturns ? tr.nturns : 1) * sizeof *kr.turns);
		kr.nturns = tr.nturns;
		for (size_t k = 0; k < tr.nturns; k++)
			if (lf_tok_encode_elems(b->t, st, &b->r->sp, &tr.turns[k].source, &turn_ids[2 * k], NULL, NULL) < 0 ||
			    lf_tok_encode_elems(b->t, st, &b->r->sp, &tr.turns[k].target, &turn_ids[2 * k + 1], NULL, NULL) < 0)
				goto done;
	} else if (tr.type == LF_REC_PT) {
		if (lf_tok_encode_elems(b->t, st, &b->r->sp, &tr.text, &ids[0], NULL, NULL) < 0)
			goto done;
		views[0] = &kr.text;
	} else {
		uint32_t lead = 0, trail = 0;
		for (int k = 0; k < 4; k++)
			if (lf_tok_encode_elems(b->t, st, &b->r->sp, parts[k], &ids[k], k == 1 ? &lead : NULL, k == 0 ? &trail : NULL) < 0)
				goto done;
		if (tr.type == LF_REC_KTO) {
			kr.prompt_thought = trail;
			kr.response_thought = lead;
		}
	}
	/* little-endian int32 bytes, as the stream stores them */
	struct lf_buf bytes[4] = { LF_BUF_INIT, LF_BUF_INIT, LF_BUF_INIT, LF_BUF_INIT };
	for (int k = 0; k < 4; k++)
		*views[k] = ids_le(&bytes[k], &ids[k]);
	struct lf_buf *tb = NULL;
	if (tr.type == LF_REC_SFT) {
		tb = lf_calloc(2 * (tr.nturns ? tr.nturns : 1), sizeof *tb);
		for (size_t k = 0; k < 2 * tr.nturns; k++) {
			struct lf_ids v = ids_le(&tb[k], &turn_ids[k]);
			if (k % 2)
				kr.turns[k / 2].target = v;
			else
				kr.turns[k / 2].source = v;
		}
	}
	msgpack_packer pk;
	msgpack_packer_init(&pk, &b->out[i], msgpack_sbuffer_write);
	lf_token_record_pack(&pk, &kr);
	b->ntokens[i] = ids[0].n + ids[1].n + ids[2].n + ids[3].n;
	for (size_t k = 0; k < 2 * tr.nturns; k++)
		b->ntokens[i] += turn_ids[k].n;
	for (int k = 0; k < 4; k++)
		lf_buf_free(&bytes[k]);
	for (size_t k = 0; tb && k < 2 * tr.nturns; k++)
		lf_buf_free(&tb[k]);
	free(tb);
	rc = 0;
done:
	if (rc < 0) {
		char msg[600];
		snprintf(msg, sizeof msg, "stream record %llu: %s", (unsigned long long)(b->first + i), lf_errmsg());
		b->errors[i] = lf_strdup(msg);
	}
	for (size_t k = 0; turn_ids && k < 2 * tr.nturns; k++)
		lf_idvec_free(&turn_ids[k]);
	free(turn_ids);
	for (int k = 0; k < 4; k++)
		lf_idvec_free(&ids[k]);
	lf_arena_free(&a);
	msgpack_unpacked_destroy(&u);
}

/* LLaMA-Factory's special tokens from the header's template: stop words
 * (registered as special tokens), replace_eos. */
static void resolve(struct lf_tokenizer *t, const msgpack_object *header, const char *path, struct resolved *r)
{
	const msgpack_object *tpl = lf_mp_get(header, "template");
	const msgpack_object *stops = lf_mp_get(tpl, "stop_words");
	bool replace = false;
	lf_mp_get_bool(tpl, "replace_eos", &replace, false);
	const char *words[16];
	size_t lens[16], n = 0;
	for (uint32_t i = 0; stops && stops->type == MSGPACK_OBJECT_ARRAY && i < stops->via.array.size && n < 16; i++) {
		const msgpack_object *s = &stops->via.array.ptr[i];
		if (s->type != MSGPACK_OBJECT_STR)
			lf_die("stream header: template stop word %u is not a string", i);
		words[n] = s->via.str.ptr;
		lens[n++] = s->via.str.size;
	}
	bool parse = r->sp.parse_special;
	if (lf_tok_resolve_specials(t, words, lens, n, replace, path, &r->sp) < 0)
		lf_die("%s", lf_errmsg());
	r->sp.parse_special = parse;
	for (size_t i = 0; i < r->sp.nmissing; i++)
		lf_warn("template stop word '%.*s' is not in the vocabulary of %s: not added (lf does not resize "
			"vocabularies), so text spelling it stays text", (int)lens[r->sp.missing[i]], words[r->sp.missing[i]],
			path);
}

static void pack_header(msgpack_packer *pk, const msgpack_object *in, const struct lf_tokenizer *t,
			const struct resolved *r, const char *path, int argc, char **argv)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < in->via.map.size; i++)
		if (!lf_mp_key_is(&in->via.map.ptr[i].key, "tokenizer"))
			n++;
	msgpack_pack_map(pk, n + 1);
	for (uint32_t i = 0; i < in->via.map.size; i++) {
		const msgpack_object *k = &in->via.map.ptr[i].key, *v = &in->via.map.ptr[i].val;
		if (lf_mp_key_is(k, "tokenizer"))
			continue;
		msgpack_pack_object(pk, *k);
		if (lf_mp_key_is(k, "kind")) {
			lf_pk_str(pk, "tokens");
		} else if (lf_mp_key_is(k, "provenance") && v->type == MSGPACK_OBJECT_ARRAY) {
			msgpack_pack_array(pk, v->via.array.size + 1);
			for (uint32_t j = 0; j < v->via.array.size; j++)
				msgpack_pack_object(pk, v->via.array.ptr[j]);
			msgpack_pack_map(pk, 3);
			lf_pk_kv_str(pk, "tool", "lf-tokenize");
			lf_pk_kv_str(pk, "version", LF_VERSION);
			lf_pk_str(pk, "argv");
			msgpack_pack_array(pk, (size_t)argc);
			for (int a = 0; a < argc; a++)
				lf_pk_str(pk, argv[a]);
		} else {
			msgpack_pack_object(pk, *v);
		}
	}
	int32_t ids[3] = { r->sp.bos, r->sp.eos, r->sp.pad };
	lf_pk_str(pk, "tokenizer");
	lf_tokenizer_pack_header(pk, t, path, ids, additions, nadditions);
}

static void pipeline(struct lf_tokenizer *t, size_t nthreads, const char *path, const char *in_path, int argc,
		     char **argv)
{
	struct lf_reader *rd = lf_reader_open(in_path);
	if (!rd)
		lf_die("%s", lf_errmsg());
	const msgpack_object *h = lf_reader_header(rd);
	size_t kn;
	const char *kind = lf_header_kind(h, &kn);
	if (!(kn == 4 && !memcmp(kind, "text", 4)))
		lf_die("%s: a '%.*s' stream, lf-tokenize reads text streams (from lf-template)", lf_reader_name(rd),
		       (int)kn, kind);
	const char *type;
	size_t tn;
	if (lf_mp_get_str(h, "type", &type, &tn, true) < 0 || lf_rec_type_parse(type, tn) < 0)
		lf_die("%s: header: no known record type", lf_reader_name(rd));
	struct resolved r = { .type = (enum lf_rec_type)lf_rec_type_parse(type, tn) };
	if (lf_header_bool_setting(h, "parse_special_in_content", lf_option_find(options, "parse-special-in-content"),
				   &r.sp.parse_special) < 0)
		lf_die("%s: %s", lf_reader_name(rd), lf_errmsg());
	resolve(t, h, path, &r);
	struct lf_tok_state *states[64];
	for (size_t k = 0; k < nthreads; k++)
		states[k] = lf_tok_state_new(t);

	struct lf_writer *w = lf_writer_open(opt_output);
	if (!w)
		lf_die_usage("%s", lf_errmsg());
	pack_header(lf_writer_pk(w), h, t, &r, path, argc, argv);
	lf_writer_end_header(w);

	struct record_batch b = { .t = t, .r = &r };
	double t0 = now_seconds();
	uint64_t tokens = 0, bytes = 0;
	b.ntokens = lf_calloc(BATCH, sizeof *b.ntokens);
	b.raw = lf_calloc(BATCH, sizeof *b.raw);
	b.out = lf_calloc(BATCH, sizeof *b.out);
	b.errors = lf_calloc(BATCH, sizeof *b.errors);
	for (size_t i = 0; i < BATCH; i++)
		msgpack_sbuffer_init(&b.out[i]);
	const msgpack_object *rec;
	int rc = 1;
	uint64_t done = 0;
	while (rc == 1) {
		size_t n = 0;
		while (n < BATCH && (rc = lf_reader_next(rd, &rec)) == 1) {
			/* copy: the record points into the reader's buffer */
			const char *raw;
			size_t len;
			lf_reader_raw(rd, &raw, &len);
			lf_buf_reset(&b.raw[n]);
			lf_buf_add(&b.raw[n], raw, len);
			n++;
		}
		if (rc < 0)
			lf_die("%s", lf_errmsg());
		b.first = done;
		parallel(states, nthreads, n, encode_record, &b);
		for (size_t i = 0; i < n; i++) {
			if (b.errors[i])
				lf_die("%s: %s", lf_reader_name(rd), b.errors[i]);
			lf_writer_add_packed(w, b.out[i].data, b.out[i].size);
			msgpack_sbuffer_clear(&b.out[i]);
			tokens += b.ntokens[i];
			bytes += b.raw[i].len;
		}
		done += n;
		lf_progress("%llu records", (unsigned long long)done);
	}
	lf_progress_done();
	/* the counts upstream skipped travel on */
	const msgpack_object *trailer = lf_reader_trailer(rd);
	uint64_t skipped = 0;
	lf_mp_get_uint(trailer, "skipped", &skipped, false);
	const msgpack_object *tds = lf_mp_get(trailer, "datasets");
	size_t nds = tds && tds->type == MSGPACK_OBJECT_ARRAY ? tds->via.array.size : 0;
	struct lf_stream_counts *per = lf_calloc(nds ? nds : 1, sizeof *per);
	for (size_t i = 0; i < nds; i++) {
		lf_mp_get_uint(&tds->via.array.ptr[i], "records", &per[i].records, false);
		lf_mp_get_uint(&tds->via.array.ptr[i], "skipped", &per[i].skipped, false);
	}
	if (lf_writer_finish(w, skipped, per, nds) < 0)
		lf_die("%s", lf_errmsg());
	summary("record", done, tokens, bytes, now_seconds() - t0, nthreads);
	free(per);
	for (size_t i = 0; i < BATCH; i++) {
		lf_buf_free(&b.raw[i]);
		msgpack_sbuffer_destroy(&b.out[i]);
	}
	free(b.raw);
	free(b.out);
	free(b.errors);
	free(b.ntokens);
	for (size_t k = 0; k < nthreads; k++)
		lf_tok_state_free(states[k]);
	lf_reader_close(rd);
}

int main(int argc, char **argv)
{
	lf_set_progname(argv[0]);
	lf_output_init_signals();
	int first = lf_options_parse(&tool, options, argc, argv);
	const char *path = opt_tokenizer ? opt_tokenizer : opt_model;
	if (!path)
		lf_die_usage("--tokenizer PATH is required (a model folder or a tokenizer.json)");
	if (argc - first > 1)
		lf_die_usage("one INPUT at a time");
	if (opt_text && opt_decode)
		lf_die_usage("--text and --decode exclude each other");
	if (opt_no_special && !opt_text)
		lf_die_usage("--no-special goes with --text");
	if (opt_skip_special && !opt_decode)
		lf_die_usage("--skip-special goes with --decode");
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	size_t nthreads = opt_threads > 0 ? (size_t)opt_threads : (size_t)(cores > 0 ? cores : 1);
	if (opt_threads < 0)
		lf_die_usage("option '--threads': N must be positive");
	if (nthreads > 64)
		nthreads = 64;
	double t0 = now_seconds();
	struct lf_tokenizer *t = lf_tokenizer_load(path);
	if (!t)
		lf_die("%s", lf_errmsg());
	if (lf_log_enabled()) {
		char fp[17];
		snprintf(fp, sizeof fp, "%016llx", (unsigned long long)lf_tokenizer_fingerprint(t, NULL, 0));
		lf_log_event("tokenizer", json_pack("{s:s,s:s,s:I,s:f}", "path", path, "fingerprint", fp, "vocab_size",
						    (json_int_t)lf_tokenizer_vocab_size(t), "load_seconds",
						    now_seconds() - t0));
	}
	/* LLaMA-Factory's order: added tokens, then the template's stop words */
	if (opt_add_tokens)
		add_tokens(t, opt_add_tokens, false);
	if (opt_add_special_tokens)
		add_tokens(t, opt_add_special_tokens, true);
	lf_tokenizer_set_split_special(t, opt_split_special);
	const char *in = first < argc ? argv[first] : NULL;
	if (opt_text || opt_decode) {
		struct lf_tok_state *states[64];
		for (size_t k = 0; k < nthreads; k++)
			states[k] = lf_tok_state_new(t);
		json_lines(t, states, nthreads, in, opt_text ? encode_line : decode_line);
		for (size_t k = 0; k < nthreads; k++)
			lf_tok_state_free(states[k]);
	} else {
		pipeline(t, nthreads, path, in, argc, argv);
	}
	lf_tokenizer_free(t);
	for (size_t i = 0; i < nadditions; i++)
		free((char *)additions[i].content);
	lf_log_close();
	return 0;
}

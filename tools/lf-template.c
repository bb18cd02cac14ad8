/*
 * lf-template — render datasets with a chat template into an lf text stream.
 *
 * Reads datasets the way LLaMA-Factory does (dataset_info.json entries or
 * files given directly), converts each row to a conversation, applies the
 * template's slots and writes one text record per example (man 5 lf-stream).
 * Truncation, labels and tokens are later tools' work.
 */
#include "convert.h"
#include "dataset.h"
#include "error.h"
#include "log.h"
#include "mp.h"
#include "options.h"
#include "output.h"
#include "record.h"
#include "stream.h"
#include "template.h"
#include "template_jinja.h"
#include "tokenizer.h"
#include "toolfmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WARNINGS 20 /* per dataset; the rest go to the count (and --log) */

static char *opt_template, *opt_dataset, *opt_eval_dataset, *opt_dataset_dir, *opt_format, *opt_file_type;
static char *opt_columns, *opt_tags, *opt_stage, *opt_default_system, *opt_tool_format, *opt_output;
static char *opt_jinja;
static bool opt_eval, opt_ranking, opt_prompt_only, opt_enable_thinking = true, opt_preserve_thinking;
static bool opt_train_on_prompt, opt_mask_history, opt_parse_special, opt_strict;
static long long opt_max_samples = -1, opt_seed = 42;

static void list_templates(void)
{
	for (size_t i = 0; i < lf_template_ndefs; i++) {
		struct lf_template t;
		lf_template_get(lf_template_defs[i].name, &t);
		printf("%s", t.name);
		const char *cls = t.cls == LF_TPL_LLAMA2 ? "system-in-first-user-turn" : t.cls == LF_TPL_REASONING ? "reasoning" : NULL;
		if (cls)
			printf("\t%s", cls);
		if (t.efficient_eos)
			printf("\tefficient_eos");
		if (t.replace_eos)
			printf("\treplace_eos");
		printf("\n");
	}
}

static struct lf_option options[] = {
	{ "template", 't', LF_OPT_STRING, &opt_template, "NAME", "chat template (see --list-templates)" },
	{ "dataset", 0, LF_OPT_STRING, &opt_dataset, "NAMES", "datasets of DIR/dataset_info.json, comma-separated" },
	{ "eval-dataset", 0, LF_OPT_STRING, &opt_eval_dataset, "NAMES", "evaluation datasets (rendered with --eval)" },
	{ "eval", 0, LF_OPT_BOOL, &opt_eval, NULL, "render --eval-dataset instead of --dataset", LF_OPT_CLI_ONLY },
	{ "dataset-dir", 0, LF_OPT_STRING, &opt_dataset_dir, "DIR", "folder holding dataset_info.json (default: data)" },
	{ "format", 'f', LF_OPT_STRING, &opt_format, "LAYOUT",
	  "layout of FILEs given directly: alpaca (default), sharegpt, openai", LF_OPT_CLI_ONLY },
	{ "file-type", 0, LF_OPT_STRING, &opt_file_type, "TYPE",
	  "read FILEs as json, jsonl, csv or txt (default: by extension; json for stdin)", LF_OPT_CLI_ONLY },
	{ "columns", 0, LF_OPT_STRING, &opt_columns, "K=COL,..",
	  "column mapping for FILEs, as dataset_info.json's \"columns\"", LF_OPT_CLI_ONLY },
	{ "tags", 0, LF_OPT_STRING, &opt_tags, "K=TAG,..", "sharegpt tags for FILEs, as dataset_info.json's \"tags\"",
	  LF_OPT_CLI_ONLY },
	{ "ranking", 0, LF_OPT_BOOL, &opt_ranking, NULL, "FILEs hold preference pairs (dataset_info's \"ranking\")",
	  LF_OPT_CLI_ONLY },
	{ "stage", 0, LF_OPT_STRING, &opt_stage, "STAGE",
	  "pt, sft, rm, dpo, kto or ppo: picks the record type (default: from the data)" },
	{ "prompt-only", 0, LF_OPT_BOOL, &opt_prompt_only, NULL,
	  "prompt records: the assistant turn left out, for generation and evaluation", LF_OPT_CLI_ONLY },
	{ "default-system", 0, LF_OPT_STRING, &opt_default_system, "TEXT", "replace the template's default system" },
	{ "tool-format", 0, LF_OPT_STRING, &opt_tool_format, "NAME",
	  "tool format: default, glm4, llama3, mistral, qwen (default: the template's)" },
	{ "enable-thinking", 0, LF_OPT_BOOL, &opt_enable_thinking, NULL,
	  "reasoning templates: train on the empty thought (default true)" },
	{ "preserve-thinking", 0, LF_OPT_BOOL, &opt_preserve_thinking, NULL,
	  "reasoning templates: keep the thoughts of earlier turns" },
	{ "train-on-prompt", 0, LF_OPT_BOOL, &opt_train_on_prompt, NULL, "label the prompt too (recorded for lf-pack)" },
	{ "mask-history", 0, LF_OPT_BOOL, &opt_mask_history, NULL,
	  "train on the last turn only (recorded for lf-pack)" },
	{ "parse-special-in-content", 0, LF_OPT_BOOL, &opt_parse_special, NULL,
	  "let user text that spells a special token become that token, as LLaMA-Factory does", LF_OPT_CLI_ONLY },
	{ "max-samples", 0, LF_OPT_INT, &opt_max_samples, "N", "read at most the first N rows of each dataset" },
	{ "seed", 0, LF_OPT_INT, &opt_seed, "N", "seed for num_samples resampling (default 42)" },
	{ "strict", 0, LF_OPT_BOOL, &opt_strict, NULL, "stop at the first bad record instead of skipping it",
	  LF_OPT_CLI_ONLY },
	{ "output", 'o', LF_OPT_STRING, &opt_output, "FILE", "write the stream to FILE (default: stdout)",
	  LF_OPT_CLI_ONLY },
	{ "list-templates", 0, LF_OPT_ACTION, NULL, NULL, "list the templates and exit", LF_OPT_CLI_ONLY,
	  list_templates },
	{ "jinja", 0, LF_OPT_STRING, &opt_jinja, "TOKENIZER",
	  "print the Jinja chat_template LLaMA-Factory saves for --template with TOKENIZER and exit",
	  LF_OPT_CLI_ONLY },
	{ 0 }
};

static const struct lf_tool_info tool = {
	"lf-template", "[OPTION]... [FILE]...",
	"Render datasets with a chat template into an lf text stream (man 5 lf-stream).",
	"FILEs are read with --format's default columns; '-' is standard input.\n"
	"Example: lf-template -t llama3 --dataset-dir data --dataset alpaca_en_demo | lf-inspect --head 1",
};

/* ---- --jinja ---- */

/* The template's Jinja chat_template for the tokenizer at path on stdout (one
 * newline after it); notes on stderr when LLaMA-Factory would keep the
 * tokenizer's own chat_template instead. */
static int print_jinja(const char *path)
{
	if (!opt_template)
		lf_die_usage("--jinja needs --template (see --list-templates)");
	struct lf_template t;
	if (lf_template_get(opt_template, &t) < 0)
		lf_die_usage("%s", lf_errmsg());
	if (opt_tool_format && lf_template_set_tool_format(&t, opt_tool_format) < 0)
		lf_die_usage("%s", lf_errmsg());
	if (opt_default_system)
		t.default_system = opt_default_system;
	struct lf_tokenizer *tok = lf_tokenizer_load(path);
	if (!tok)
		lf_die("%s", lf_errmsg());
	int has = lf_jinja_tokenizer_has_template(path);
	if (has < 0)
		lf_die("%s", lf_errmsg());
	struct lf_jinja_tokens jt;
	char *jinja = NULL;
	if (lf_template_jinja_tokens(&t, tok, &jt) < 0 || !(jinja = lf_template_jinja(&t, &jt)))
		lf_die("%s", lf_errmsg());
	if (!lf_template_jinja_written(&t, has))
		lf_note("%s has a chat_template of its own, which LLaMA-Factory keeps (template '%s' does not "
			"replace it); printed is the template's", path, t.name);
	if (fputs(jinja, stdout) == EOF || putchar('\n') == EOF || fflush(stdout) == EOF)
		lf_die("standard output: write error");
	free(jinja);
	lf_tokenizer_free(tok);
	return 0;
}

/* ---- datasets ---- */

/* "k=v,k=v" into a JSON object for lf_dataset_attr_join. */
static json_t *parse_pairs(const char *spec, const char *option)
{
	json_t *o = json_object();
	char *copy = lf_strdup(spec), *save = NULL;
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		if (!eq || eq == tok)
			lf_die_usage("option '--%s': '%s' is not KEY=NAME", option, tok);
		*eq = 0;
		json_object_set_new(o, tok, json_string(eq + 1));
	}
	free(copy);
	return o;
}

static enum lf_formatting parse_format(const char *s)
{
	if (!s || !strcmp(s, "alpaca"))
		return LF_FMT_ALPACA;
	if (!strcmp(s, "sharegpt"))
		return LF_FMT_SHAREGPT;
	if (!strcmp(s, "openai"))
		return LF_FMT_OPENAI;
	lf_die_usage("option '--format': unknown layout '%s' (alpaca, sharegpt or openai)", s);
}

static void file_attr(struct lf_dataset_attr *a, const char *path)
{
	enum lf_formatting f = parse_format(opt_format);
	lf_dataset_attr_init(a, path, path, f);
	if (f == LF_FMT_OPENAI) { /* OpenAI messages: role/content, "tool" results */
		json_t *tags = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "role_tag", "role", "content_tag", "content",
					 "user_tag", "user", "assistant_tag", "assistant", "observation_tag", "tool",
					 "function_tag", "function_call", "system_tag", "system");
		json_t *entry = json_pack("{s:o,s:{s:s}}", "tags", tags, "columns", "messages", "messages");
		if (lf_dataset_attr_join(a, entry, path) < 0)
			lf_die("%s", lf_errmsg());
		json_decref(entry);
	}
	json_t *entry = json_object();
	if (opt_columns)
		json_object_set_new(entry, "columns", parse_pairs(opt_columns, "columns"));
	if (opt_tags)
		json_object_set_new(entry, "tags", parse_pairs(opt_tags, "tags"));
	if (opt_ranking)
		json_object_set_new(entry, "ranking", json_true());
	if (lf_dataset_attr_join(a, entry, path) < 0)
		lf_die_usage("%s", lf_errmsg());
	json_decref(entry);
}

/* ---- record type and checks ---- */

static enum lf_rec_type type_for_stage(const char *stage)
{
	if (!strcmp(stage, "pt"))
		return LF_REC_PT;
	if (!strcmp(stage, "sft"))
		return LF_REC_SFT;
	if (!strcmp(stage, "rm") || !strcmp(stage, "dpo"))
		return LF_REC_PAIRWISE;
	if (!strcmp(stage, "kto"))
		return LF_REC_KTO;
	if (!strcmp(stage, "ppo"))
		return LF_REC_PROMPT;
	lf_die_usage("option '--stage': unknown stage '%s' (pt, sft, rm, dpo, kto or ppo)", stage);
}

static enum lf_rec_type type_of_dataset(const struct lf_dataset_attr *a)
{
	return a->ranking ? LF_REC_PAIRWISE : a->kto_tag ? LF_REC_KTO : LF_REC_SFT;
}

static enum lf_rec_type choose_type(const struct lf_dataset_attr *ds, size_t n)
{
	enum lf_rec_type type;
	if (opt_prompt_only)
		type = LF_REC_PROMPT;
	else if (opt_stage)
		type = type_for_stage(opt_stage);
	else
		type = type_of_dataset(&ds[0]);
	for (size_t i = 0; i < n; i++) {
		const struct lf_dataset_attr *a = &ds[i];
		if (type == LF_REC_PAIRWISE && !a->ranking)
			lf_die_usage("dataset '%s' is not a preference dataset (\"ranking\": true); stage rm/dpo needs one",
				     a->name);
		if (type != LF_REC_PAIRWISE && a->ranking)
			lf_die_usage("dataset '%s' holds preference pairs; use --stage rm or --stage dpo", a->name);
		if (type == LF_REC_KTO && !a->kto_tag)
			lf_die_usage("dataset '%s' has no kto_tag column; stage kto needs one", a->name);
		if (type == LF_REC_SFT && a->kto_tag)
			lf_die_usage("dataset '%s' has a kto_tag column; use --stage kto", a->name);
	}
	return type;
}

static void check_settings(enum lf_rec_type type, const struct lf_template *t)
{
	if ((opt_train_on_prompt || opt_mask_history) && type != LF_REC_SFT)
		lf_die_usage("train_on_prompt and mask_history apply to supervised fine-tuning (stage sft) only");
	if (opt_train_on_prompt && opt_mask_history)
		lf_die_usage("train_on_prompt and mask_history cannot be used together");
	if (opt_train_on_prompt && t->efficient_eos)
		lf_die_usage("template '%s' uses efficient_eos and does not support train_on_prompt", t->name);
}

/* ---- num_samples: a deterministic stand-in for numpy's sampling ---- */

static uint64_t rng_state;

static uint64_t rng_next(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t rng_below(uint64_t n)
{
	return n ? rng_next() % n : 0;
}

/* LLaMA-Factory's num_samples: a permutation of all rows cut to N, topped
 * up with rows drawn with replacement when N exceeds the dataset. */
static uint64_t *sample_order(uint64_t nrows, uint64_t n)
{
	uint64_t *perm = lf_malloc((nrows ? nrows : 1) * sizeof *perm);
	for (uint64_t i = 0; i < nrows; i++)
		perm[i] = i;
	for (uint64_t i = nrows; i > 1; i--) {
		uint64_t j = rng_below(i);
		uint64_t t = perm[i - 1];
		perm[i - 1] = perm[j];
		perm[j] = t;
	}
	uint64_t *order = lf_malloc((n ? n : 1) * sizeof *order);
	for (uint64_t i = 0; i < n; i++)
		order[i] = i < nrows ? perm[i] : rng_below(nrows);
	free(perm);
	return order;
}

/* ---- the stream ---- */

static void pack_header(msgpack_packer *pk, enum lf_rec_type type, const struct lf_template *t,
			const struct lf_dataset_attr *ds, size_t nds, int argc, char **argv)
{
	msgpack_pack_map(pk, 11);
	lf_pk_kv_str(pk, "format", LF_STREAM_FORMAT);
	lf_pk_kv_uint(pk, "version", LF_STREAM_VERSION);
	lf_pk_kv_str(pk, "kind", "text");
	lf_pk_kv_str(pk, "type", lf_rec_type_name(type));
	lf_pk_str(pk, "provenance");
	msgpack_pack_array(pk, 1);
	msgpack_pack_map(pk, 3);
	lf_pk_kv_str(pk, "tool", "lf-template");
	lf_pk_kv_str(pk, "version", LF_VERSION);
	lf_pk_str(pk, "argv");
	msgpack_pack_array(pk, (size_t)argc);
	for (int i = 0; i < argc; i++)
		lf_pk_str(pk, argv[i]);
	lf_pk_str(pk, "datasets");
	msgpack_pack_array(pk, nds);
	for (size_t i = 0; i < nds; i++) {
		msgpack_pack_map(pk, 4);
		lf_pk_kv_str(pk, "name", ds[i].name);
		lf_pk_kv_str(pk, "path", ds[i].path);
		lf_pk_kv_str(pk, "formatting", lf_formatting_name(ds[i].formatting));
		lf_pk_kv_bool(pk, "ranking", ds[i].ranking);
	}
	lf_pk_str(pk, "template");
	msgpack_pack_map(pk, 8);
	lf_pk_kv_str(pk, "name", t->name);
	lf_pk_str(pk, "stop_words");
	size_t nstop = lf_template_nstop(t);
	msgpack_pack_array(pk, nstop);
	for (size_t i = 0; i < nstop; i++)
		lf_pk_str(pk, t->stop_words[i]);
	lf_pk_kv_bool(pk, "replace_eos", t->replace_eos);
	lf_pk_kv_bool(pk, "efficient_eos", t->efficient_eos);
	lf_pk_kv_bool(pk, "enable_thinking", t->enable_thinking);
	lf_pk_kv_bool(pk, "preserve_thinking", t->preserve_thinking);
	lf_pk_str(pk, "thought_words");
	msgpack_pack_array(pk, 2);
	lf_pk_str(pk, t->thought_words[0]);
	lf_pk_str(pk, t->thought_words[1]);
	lf_pk_kv_str(pk, "tool_format", t->function.tool_format);
	lf_pk_kv_bool(pk, "parse_special_in_content", opt_parse_special);
	lf_pk_kv_bool(pk, "train_on_prompt", opt_train_on_prompt);
	lf_pk_kv_bool(pk, "mask_history", opt_mask_history);
	lf_pk_kv_str(pk, "stage", opt_stage);
}

struct counts {
	uint64_t records, skipped, rows;
	unsigned warned;
};

static void bad_record(const struct lf_dataset_attr *a, const char *where, uint64_t index, struct counts *c)
{
	const char *reason = lf_errmsg();
	if (opt_strict)
		lf_die("%s: record %llu: %s", where, (unsigned long long)index, reason);
	c->skipped++;
	if (c->warned++ < MAX_WARNINGS)
		lf_warn("%s: record %llu: %s (skipped)", where, (unsigned long long)index, reason);
	if (lf_log_enabled())
		lf_log_event("skip", json_pack("{s:s,s:s,s:I,s:s}", "dataset", a->name, "file", where, "record",
					       (json_int_t)index, "reason", reason));
}

/* Render one row into the stream, or count it as skipped. */
static void render_row(struct lf_writer *w, const struct lf_template *t, enum lf_rec_type type,
		       const struct lf_dataset_attr *a, uint32_t ds_index, json_t *row, const char *where,
		       uint64_t file_index, uint64_t row_no, uint64_t source_row, struct lf_arena *arena,
		       struct counts *c)
{
	struct lf_example ex;
	struct lf_text_record rec = { .type = type, .dataset = ds_index, .row = row_no, .source_row = source_row };
	struct lf_render_opts ro = { .mask_history = opt_mask_history };
	lf_arena_reset(arena);
	if (!row || lf_convert_row(a, row, arena, &ex) < 0 || lf_template_render(t, &ro, &ex, arena, &rec) < 0) {
		bad_record(a, where, file_index, c);
		return;
	}
	lf_text_record_pack(lf_writer_pk(w), &rec);
	lf_writer_end_record(w);
	c->records++;
}

struct held_row {
	json_t *row;
	char *where;
	uint64_t index;
};

static void render_dataset(struct lf_writer *w, const struct lf_template *t, enum lf_rec_type type,
			   const struct lf_dataset_attr *a, uint32_t ds_index, struct counts *c)
{
	struct lf_rows *rows = lf_rows_open(a->path, opt_file_type);
	if (!rows)
		lf_die("dataset '%s': %s", a->name, lf_errmsg());
	struct lf_arena arena = { 0 };
	uint64_t limit = opt_max_samples >= 0 ? (uint64_t)opt_max_samples : UINT64_MAX;
	json_t *row;
	int rc = 0;
	if (a->num_samples < 0) {
		while (c->rows < limit && (rc = lf_rows_next(rows, &row)) == 1) {
			uint64_t n = c->rows++;
			render_row(w, t, type, a, ds_index, row, lf_rows_where(rows), lf_rows_index(rows), n, n, &arena, c);
			json_decref(row);
			if (n % 1024 == 0)
				lf_progress("%s: %llu rows", a->name, (unsigned long long)n);
		}
	} else {
		/* num_samples needs every row before choosing. */
		struct held_row *held = NULL;
		size_t nheld = 0;
		while ((rc = lf_rows_next(rows, &row)) == 1) {
			held = lf_realloc(held, (nheld + 1) * sizeof *held);
			held[nheld].row = row;
			held[nheld].where = lf_strdup(lf_rows_where(rows));
			held[nheld].index = lf_rows_index(rows);
			nheld++;
		}
		if (rc == 0) {
			uint64_t n = (uint64_t)a->num_samples;
			uint64_t *order = sample_order(nheld, nheld ? n : 0);
			for (uint64_t i = 0; i < n && i < limit && nheld; i++) {
				struct held_row *h = &held[order[i]];
				c->rows++;
				if (!h->row)
					lf_fail("not a valid JSON object");
				render_row(w, t, type, a, ds_index, h->row, h->where, h->index, i, order[i], &arena, c);
			}
			free(order);
		}
		for (size_t i = 0; i < nheld; i++) {
			json_decref(held[i].row);
			free(held[i].where);
		}
		free(held);
	}
	if (rc < 0)
		lf_die("dataset '%s': %s", a->name, lf_errmsg());
	if (c->warned > MAX_WARNINGS)
		lf_warn("%s: %u more records skipped (see --log for each)", a->name, c->warned - MAX_WARNINGS);
	lf_arena_free(&arena);
	lf_rows_close(rows);
}

int main(int argc, char **argv)
{
	lf_set_progname(argv[0]);
	lf_output_init_signals();
	int first = lf_options_parse(&tool, options, argc, argv);
	if (opt_jinja)
		return print_jinja(opt_jinja);

	/* the datasets */
	const char *names = opt_eval ? opt_eval_dataset : opt_dataset;
	if (opt_eval && !opt_eval_dataset)
		lf_die_usage("--eval needs --eval-dataset (eval_dataset in the recipe)");
	struct lf_dataset_attr *ds = NULL;
	size_t nds = 0;
	if (names) {
		char *copy = lf_strdup(names), *save = NULL;
		for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
			while (*tok == ' ')
				tok++;
			char *end = tok + strlen(tok);
			while (end > tok && end[-1] == ' ')
				*--end = 0;
			if (!*tok)
				continue;
			ds = lf_realloc(ds, (nds + 1) * sizeof *ds);
			if (lf_dataset_attr_from_info(&ds[nds], opt_dataset_dir ? opt_dataset_dir : "data", tok) < 0)
				lf_die("%s", lf_errmsg());
			nds++;
		}
		free(copy);
	}
	for (int i = first; i < argc; i++) {
		ds = lf_realloc(ds, (nds + 1) * sizeof *ds);
		file_attr(&ds[nds++], argv[i]);
	}
	if (nds == 0)
		lf_die_usage("no input: give --dataset NAMES or FILEs ('-' for standard input)");
	if (nds > UINT32_MAX)
		lf_die_usage("too many datasets");

	/* the template */
	enum lf_rec_type type = choose_type(ds, nds);
	if (!opt_template && type != LF_REC_PT)
		lf_die_usage("--template is required (see --list-templates); lf-template does not guess one "
			     "from a tokenizer's chat_template");
	struct lf_template t;
	if (lf_template_get(opt_template ? opt_template : "empty", &t) < 0)
		lf_die_usage("%s", lf_errmsg());
	if (opt_tool_format && lf_template_set_tool_format(&t, opt_tool_format) < 0)
		lf_die_usage("%s", lf_errmsg());
	if (opt_default_system)
		t.default_system = opt_default_system;
	if (t.cls == LF_TPL_REASONING) {
		t.enable_thinking = opt_enable_thinking;
		t.preserve_thinking = opt_preserve_thinking;
	}
	check_settings(type, &t);
	if (t.replace_eos && lf_template_nstop(&t) == 0)
		lf_die("template '%s': replace_eos needs stop words", t.name);
	rng_state = (uint64_t)opt_seed;

	struct lf_writer *w = lf_writer_open(opt_output);
	if (!w)
		lf_die_usage("%s", lf_errmsg());
	pack_header(lf_writer_pk(w), type, &t, ds, nds, argc, argv);
	lf_writer_end_header(w);

	struct lf_stream_counts *per = lf_calloc(nds, sizeof *per);
	uint64_t total = 0, skipped = 0;
	for (size_t i = 0; i < nds; i++) {
		struct counts c = { 0 };
		render_dataset(w, &t, type, &ds[i], (uint32_t)i, &c);
		per[i].records = c.records;
		per[i].skipped = c.skipped;
		total += c.records;
		skipped += c.skipped;
		if (lf_log_enabled())
			lf_log_event("dataset", json_pack("{s:s,s:I,s:I}", "dataset", ds[i].name, "records",
							  (json_int_t)c.records, "skipped", (json_int_t)c.skipped));
	}
	lf_progress_done();
	if (total == 0)
		lf_die("no valid records in %zu dataset%s (%llu skipped): check the layout, columns and tags",
		       nds, nds == 1 ? "" : "s", (unsigned long long)skipped);
	w->skipped = skipped;
	if (lf_writer_finish(w, skipped, per, nds) < 0)
		lf_die("%s", lf_errmsg());
	lf_note("%llu record%s from %zu dataset%s (%llu skipped), template %s, type %s", (unsigned long long)total,
		total == 1 ? "" : "s", nds, nds == 1 ? "" : "s", (unsigned long long)skipped, t.name, lf_rec_type_name(type));
	if (lf_log_enabled())
		lf_log_event("summary", json_pack("{s:I,s:I,s:s,s:s}", "records", (json_int_t)total, "skipped",
						  (json_int_t)skipped, "template", t.name, "type", lf_rec_type_name(type)));
	lf_log_close();
	for (size_t i = 0; i < nds; i++)
		lf_dataset_attr_free(&ds[i]);
	free(ds);
	free(per);
	return 0;
}

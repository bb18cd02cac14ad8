/*
 * lf-inspect — print an lf stream as JSON lines, count it, or summarize it.
 *
 * Every record is checked as it is read (the stream's framing and trailer by
 * the reader, each record's fields by the record decoder), so lf-inspect is
 * also how a stream is verified.
 */
#include "buf.h"
#include "error.h"
#include "mp.h"
#include "options.h"
#include "record.h"
#include "stream.h"
#include "tokenizer.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long long opt_head = -1;
static bool opt_count, opt_stats, opt_header, opt_trailer, opt_force;
static char *opt_tokenizer;

static struct lf_option options[] = {
	{ "head", 'n', LF_OPT_INT, &opt_head, "N", "print the first N records only", LF_OPT_CLI_ONLY },
	{ "count", 0, LF_OPT_BOOL, &opt_count, NULL, "print the number of records", LF_OPT_CLI_ONLY },
	{ "stats", 0, LF_OPT_BOOL, &opt_stats, NULL, "print statistics per dataset as one JSON object",
	  LF_OPT_CLI_ONLY },
	{ "header", 0, LF_OPT_BOOL, &opt_header, NULL, "print the stream header only", LF_OPT_CLI_ONLY },
	{ "trailer", 0, LF_OPT_BOOL, &opt_trailer, NULL, "print the stream trailer only", LF_OPT_CLI_ONLY },
	{ "tokenizer", 0, LF_OPT_STRING, &opt_tokenizer, "PATH",
	  "text streams: write bos/eos as this tokenizer's tokens; token streams: decode the ids to \"text\"",
	  LF_OPT_CLI_ONLY },
	{ "force", 0, LF_OPT_BOOL, &opt_force, NULL,
	  "decode a token stream even with a tokenizer other than the one that made it", LF_OPT_CLI_ONLY },
	{ 0 }
};

static const struct lf_tool_info tool = {
	"lf-inspect", "[OPTION]... [STREAM]",
	"Print an lf stream (man 5 lf-stream) as JSON lines, one object per record.",
	"STREAM defaults to standard input.  Text records gain a \"text\" field: the whole\n"
	"rendered sequence, special tokens written as their strings.",
};

/* ---- the tokenizer (--tokenizer) ---- */

static struct lf_tokenizer *tokenizer;
static const char *bos_name, *eos_name;
static bool has_bos = true;

static void load_tokenizer(const char *path)
{
	tokenizer = lf_tokenizer_load(path);
	if (!tokenizer)
		lf_die("%s", lf_errmsg());
	const struct lf_tok_config *cfg = lf_tokenizer_config(tokenizer);
	bos_name = cfg->bos_token;
	has_bos = bos_name != NULL;
	eos_name = cfg->eos_token ? cfg->eos_token : "<|endoftext|>"; /* as LLaMA-Factory adds it */
}

/* ---- the header ---- */

struct stream_info {
	const msgpack_object *header;
	bool tokens;
	enum lf_rec_type type;
	const msgpack_object *datasets;
	const char *eos; /* how to write the eos element */
	size_t eos_len;
};

static void read_info(struct lf_reader *r, struct stream_info *si)
{
	const msgpack_object *h = lf_reader_header(r);
	si->header = h;
	size_t n;
	const char *kind = lf_header_kind(h, &n);
	if (n == 4 && !memcmp(kind, "text", 4))
		si->tokens = false;
	else if (n == 6 && !memcmp(kind, "tokens", 6))
		si->tokens = true;
	else
		lf_die("%s: unknown stream kind '%.*s'", lf_reader_name(r), (int)n, kind);
	const char *type;
	if (lf_mp_get_str(h, "type", &type, &n, true) < 0)
		lf_die("%s: header: %s", lf_reader_name(r), lf_errmsg());
	int t = lf_rec_type_parse(type, n);
	if (t < 0)
		lf_die("%s: unknown record type '%.*s'", lf_reader_name(r), (int)n, type);
	si->type = (enum lf_rec_type)t;
	si->datasets = lf_mp_get(h, "datasets");
	si->eos = eos_name ? eos_name : "<eos>";
	si->eos_len = strlen(si->eos);
	{ /* with replace_eos the eos is the template's first stop word, whatever the tokenizer's */
		const msgpack_object *tpl = lf_mp_get(h, "template");
		bool replace = false;
		const msgpack_object *stops = lf_mp_get(tpl, "stop_words");
		if (lf_mp_get_bool(tpl, "replace_eos", &replace, false) > 0 && replace && stops &&
		    stops->type == MSGPACK_OBJECT_ARRAY && stops->via.array.size > 0 &&
		    stops->via.array.ptr[0].type == MSGPACK_OBJECT_STR) {
			si->eos = stops->via.array.ptr[0].via.str.ptr;
			si->eos_len = stops->via.array.ptr[0].via.str.size;
		}
	}
}

static const msgpack_object *dataset_name(const struct stream_info *si, uint32_t index)
{
	if (!si->datasets || si->datasets->type != MSGPACK_OBJECT_ARRAY || index >= si->datasets->via.array.size)
		return NULL;
	const msgpack_object *name = lf_mp_get(&si->datasets->via.array.ptr[index], "name");
	return name && name->type == MSGPACK_OBJECT_STR ? name : NULL;
}

/* ---- rendering text records ---- */

static void render_elems(struct lf_buf *out, const struct stream_info *si, const struct lf_elems *e)
{
	for (size_t i = 0; i < e->n; i++) {
		const struct lf_elem *el = &e->v[i];
		switch (el->kind) {
		case LF_ELEM_TEXT:
		case LF_ELEM_TOKEN:
			lf_buf_add(out, el->text, el->len);
			break;
		case LF_ELEM_BOS:
			if (has_bos)
				lf_buf_addstr(out, bos_name ? bos_name : "<bos>");
			break;
		case LF_ELEM_EOS:
			lf_buf_add(out, si->eos, si->eos_len);
			break;
		}
	}
}

static void render_text(struct lf_buf *out, const struct stream_info *si, const struct lf_text_record *r)
{
	switch (r->type) {
	case LF_REC_SFT:
		for (size_t i = 0; i < r->nturns; i++) {
			render_elems(out, si, &r->turns[i].source);
			render_elems(out, si, &r->turns[i].target);
		}
		break;
	case LF_REC_PAIRWISE:
		render_elems(out, si, &r->prompt);
		render_elems(out, si, &r->chosen);
		break;
	case LF_REC_KTO:
	case LF_REC_PROMPT:
		render_elems(out, si, &r->prompt);
		render_elems(out, si, &r->response);
		break;
	case LF_REC_PT:
		render_elems(out, si, &r->text);
		break;
	default:
		break;
	}
}

static void add_ids(struct lf_idvec *v, struct lf_ids ids)
{
	for (size_t i = 0; i < ids.n; i++)
		lf_idvec_push(v, lf_ids_at(ids, i));
}

/* The same sequence render_text gives, decoded from the ids. */
static int render_tokens(struct lf_buf *out, const struct lf_token_record *r)
{
	struct lf_idvec v = { 0 };
	switch (r->type) {
	case LF_REC_SFT:
		for (size_t i = 0; i < r->nturns; i++) {
			add_ids(&v, r->turns[i].source);
			add_ids(&v, r->turns[i].target);
		}
		break;
	case LF_REC_PAIRWISE:
		add_ids(&v, r->prompt);
		add_ids(&v, r->chosen);
		break;
	case LF_REC_KTO:
	case LF_REC_PROMPT:
		add_ids(&v, r->prompt);
		add_ids(&v, r->response);
		break;
	case LF_REC_PT:
		add_ids(&v, r->text);
		break;
	default:
		break;
	}
	int rc = lf_tokenizer_decode(tokenizer, v.v, v.n, false, out);
	lf_idvec_free(&v);
	return rc;
}

/* ---- statistics ---- */

struct stats {
	uint64_t records, turns, elements, text_bytes, user_bytes, ids;
	uint64_t min_len, max_len; /* text bytes (or ids) per record */
};

static void count_elems(struct stats *s, const struct lf_elems *e, uint64_t *len)
{
	for (size_t i = 0; i < e->n; i++) {
		s->elements++;
		if (e->v[i].kind != LF_ELEM_TEXT)
			continue;
		s->text_bytes += e->v[i].len;
		*len += e->v[i].len;
		for (size_t k = 0; k < e->v[i].nuser; k++)
			s->user_bytes += e->v[i].user[k].end - e->v[i].user[k].start;
	}
}

static void stats_text(struct stats *s, const struct lf_text_record *r)
{
	uint64_t len = 0;
	const struct lf_elems *lists[3] = { &r->prompt, &r->response, &r->text };
	for (size_t i = 0; i < r->nturns; i++) {
		count_elems(s, &r->turns[i].source, &len);
		count_elems(s, &r->turns[i].target, &len);
	}
	for (int i = 0; i < 3; i++)
		count_elems(s, lists[i], &len);
	if (r->type == LF_REC_PAIRWISE) {
		count_elems(s, &r->chosen, &len);
		count_elems(s, &r->rejected, &len);
	}
	s->turns += r->type == LF_REC_SFT ? r->nturns : 1;
	s->min_len = s->records == 0 || len < s->min_len ? len : s->min_len;
	s->max_len = len > s->max_len ? len : s->max_len;
	s->records++;
}

static void stats_tokens(struct stats *s, const struct lf_token_record *r)
{
	uint64_t len = r->prompt.n + r->response.n + r->chosen.n + r->rejected.n + r->text.n;
	for (size_t i = 0; i < r->nturns; i++)
		len += r->turns[i].source.n + r->turns[i].target.n;
	s->ids += len;
	s->turns += r->type == LF_REC_SFT ? r->nturns : 1;
	s->min_len = s->records == 0 || len < s->min_len ? len : s->min_len;
	s->max_len = len > s->max_len ? len : s->max_len;
	s->records++;
}

static void print_stats(const struct stream_info *si, const struct stats *per, size_t nper, const msgpack_object *trailer)
{
	struct lf_buf out = LF_BUF_INIT;
	const msgpack_object *tds = lf_mp_get(trailer, "datasets");
	uint64_t skipped = 0;
	lf_mp_get_uint(trailer, "skipped", &skipped, false);
	lf_buf_addf(&out, "{\"kind\":\"%s\",\"type\":\"%s\",\"skipped\":%llu,\"datasets\":[", si->tokens ? "tokens" : "text",
		    lf_rec_type_name(si->type), (unsigned long long)skipped);
	for (size_t i = 0; i < nper; i++) {
		const struct stats *s = &per[i];
		const msgpack_object *name = dataset_name(si, (uint32_t)i);
		uint64_t ds_skipped = 0;
		if (tds && tds->type == MSGPACK_OBJECT_ARRAY && i < tds->via.array.size)
			lf_mp_get_uint(&tds->via.array.ptr[i], "skipped", &ds_skipped, false);
		if (i)
			lf_buf_addch(&out, ',');
		lf_buf_addstr(&out, "{\"name\":");
		if (name)
			lf_mp_to_json(&out, name);
		else
			lf_buf_addstr(&out, "null");
		lf_buf_addf(&out, ",\"records\":%llu,\"skipped\":%llu,\"turns\":%llu", (unsigned long long)s->records,
			    (unsigned long long)ds_skipped, (unsigned long long)s->turns);
		const char *unit = si->tokens ? "ids" : "text_bytes";
		uint64_t total = si->tokens ? s->ids : s->text_bytes;
		lf_buf_addf(&out, ",\"%s\":%llu,\"min_%s\":%llu,\"mean_%s\":%.1f,\"max_%s\":%llu", unit,
			    (unsigned long long)total, unit, (unsigned long long)s->min_len, unit,
			    s->records ? (double)total / (double)s->records : 0.0, unit, (unsigned long long)s->max_len);
		if (!si->tokens)
			lf_buf_addf(&out, ",\"elements\":%llu,\"user_bytes\":%llu", (unsigned long long)s->elements,
				    (unsigned long long)s->user_bytes);
		lf_buf_addch(&out, '}');
	}
	lf_buf_addstr(&out, "]}\n");
	fwrite(out.data, 1, out.len, stdout);
	lf_buf_free(&out);
}

/* ---- main ---- */

int main(int argc, char **argv)
{
	lf_set_progname(argv[0]);
	int first = lf_options_parse(&tool, options, argc, argv);
	if (argc - first > 1)
		lf_die_usage("one STREAM at a time");
	if (lf_option_find(options, "head")->given && opt_head < 0)
		lf_die_usage("option '--head': N must not be negative");
	if (opt_force && !opt_tokenizer)
		lf_die_usage("--force goes with --tokenizer");
	if (opt_tokenizer)
		load_tokenizer(opt_tokenizer);
	struct lf_reader *r = lf_reader_open(first < argc ? argv[first] : NULL);
	if (!r)
		lf_die("%s", lf_errmsg());
	struct stream_info si;
	read_info(r, &si);
	struct lf_buf out = LF_BUF_INIT;
	if (opt_header) {
		lf_mp_to_json(&out, si.header);
		lf_buf_addch(&out, '\n');
		fwrite(out.data, 1, out.len, stdout);
		lf_buf_free(&out);
		lf_reader_close(r);
		return 0;
	}
	int32_t stream_ids[3];
	if (tokenizer && si.tokens && lf_tokenizer_check_stream(tokenizer, si.header, stream_ids) < 0) {
		if (!opt_force)
			lf_die("%s: %s; --force decodes anyway", lf_reader_name(r), lf_errmsg());
		lf_warn("%s: %s", lf_reader_name(r), lf_errmsg());
	}
	bool print = !opt_count && !opt_stats && !opt_trailer;
	struct stats *per = NULL;
	size_t nper = 0;
	struct lf_arena arena = { 0 };
	const msgpack_object *rec;
	int rc = 1;
	long long printed = 0;
	while ((opt_head < 0 || printed < opt_head || !print) && (rc = lf_reader_next(r, &rec)) == 1) {
		lf_arena_reset(&arena);
		struct lf_text_record tr;
		struct lf_token_record kr;
		int bad = si.tokens ? lf_token_record_unpack(rec, si.type, &arena, &kr)
				    : lf_text_record_unpack(rec, si.type, &arena, &tr);
		if (bad < 0)
			lf_die("%s: stream record %llu: %s", lf_reader_name(r),
			       (unsigned long long)lf_reader_records(r) - 1, lf_errmsg());
		uint32_t ds = si.tokens ? kr.dataset : tr.dataset;
		if (opt_stats) {
			if (ds >= nper) {
				per = lf_realloc(per, (ds + 1) * sizeof *per);
				memset(per + nper, 0, (ds + 1 - nper) * sizeof *per);
				nper = ds + 1;
			}
			if (si.tokens)
				stats_tokens(&per[ds], &kr);
			else
				stats_text(&per[ds], &tr);
		}
		if (!print)
			continue;
		/* {"dataset_name": ..., <the record's own fields>, "text": ...} */
		lf_buf_reset(&out);
		lf_buf_addstr(&out, "{\"dataset_name\":");
		const msgpack_object *name = dataset_name(&si, ds);
		if (name)
			lf_mp_to_json(&out, name);
		else
			lf_buf_addstr(&out, "null");
		lf_buf_addf(&out, ",\"type\":\"%s\"", lf_rec_type_name(si.type));
		for (uint32_t i = 0; i < rec->via.map.size; i++) {
			lf_buf_addch(&out, ',');
			lf_mp_to_json(&out, &rec->via.map.ptr[i].key);
			lf_buf_addch(&out, ':');
			lf_mp_to_json(&out, &rec->via.map.ptr[i].val);
		}
		if (!si.tokens || tokenizer) {
			struct lf_buf text = LF_BUF_INIT;
			if (si.tokens && render_tokens(&text, &kr) < 0)
				lf_die("%s: stream record %llu: %s", lf_reader_name(r),
				       (unsigned long long)lf_reader_records(r) - 1, lf_errmsg());
			if (!si.tokens)
				render_text(&text, &si, &tr);
			lf_buf_addstr(&out, ",\"text\":");
			lf_json_string(&out, text.data ? text.data : "", text.len);
			lf_buf_free(&text);
		}
		lf_buf_addstr(&out, "}\n");
		if (fwrite(out.data, 1, out.len, stdout) != out.len)
			lf_die("<stdout>: write failed");
		printed++;
	}
	if (rc < 0)
		lf_die("%s", lf_errmsg());
	if (rc == 0) {
		if (opt_count)
			printf("%llu\n", (unsigned long long)lf_reader_records(r));
		if (opt_stats)
			print_stats(&si, per, nper, lf_reader_trailer(r));
		if (opt_trailer) {
			lf_buf_reset(&out);
			lf_mp_to_json(&out, lf_reader_trailer(r));
			lf_buf_addch(&out, '\n');
			fwrite(out.data, 1, out.len, stdout);
		}
	}
	if (fflush(stdout) != 0)
		lf_die("<stdout>: write failed");
	lf_buf_free(&out);
	lf_arena_free(&arena);
	free(per);
	lf_reader_close(r);
	lf_tokenizer_free(tokenizer);
	return 0;
}

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
#include "shardset.h"
#include "stream.h"
#include "tokenizer.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static long long opt_head = -1;
static bool opt_count, opt_stats, opt_header, opt_trailer, opt_force;
static char *opt_tokenizer, *opt_split;
static bool opt_verify;

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
	{ "split", 0, LF_OPT_STRING, &opt_split, "NAME",
	  "shards: print this split only (train, validation; default: all)", LF_OPT_CLI_ONLY },
	{ "verify", 0, LF_OPT_BOOL, &opt_verify, NULL, "shards: check every block's checksum, print nothing",
	  LF_OPT_CLI_ONLY },
	{ "force", 0, LF_OPT_BOOL, &opt_force, NULL,
	  "decode a token stream even with a tokenizer other than the one that made it", LF_OPT_CLI_ONLY },
	{ 0 }
};

static const struct lf_tool_info tool = {
	"lf-inspect", "[OPTION]... [STREAM]",
	"Print an lf stream (man 5 lf-stream) or lf-pack's shards (man 5 lf-shard) as JSON lines.",
	"STREAM defaults to standard input; a folder, a .shard file or a bundle .tar is read\n"
	"as shards, one object per example.  Text records gain a \"text\" field: the whole\n"
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


/* ---- shards (lf-pack's output) ---- */

static bool is_shard_input(const char *path)
{
	struct stat st;
	if (!path || stat(path, &st) != 0)
		return false;
	size_t n = strlen(path);
	if (S_ISDIR(st.st_mode) || (n > 6 && !strcmp(path + n - 6, ".shard")) || (n > 4 && !strcmp(path + n - 4, ".tar")))
		return true;
	FILE *f = fopen(path, "rb");
	if (!f)
		return false;
	char b[512] = { 0 };
	n = fread(b, 1, sizeof b, f);
	fclose(f);
	return (n >= 8 && !memcmp(b, LF_SHARD_MAGIC, sizeof LF_SHARD_MAGIC)) ||
	       (n == 512 && !memcmp(b + 257, "ustar", 5));
}

static void add_int_array(struct lf_buf *out, const char *key, const int32_t *v, size_t n)
{
	lf_buf_addf(out, ",\"%s\":[", key);
	for (size_t i = 0; i < n; i++)
		lf_buf_addf(out, i ? ",%d" : "%d", (int)v[i]);
	lf_buf_addch(out, ']');
}

/* Decoded text with the ignored-label runs in «» and packed examples
 * separated by " ‖ ". */
static void shard_text(struct lf_buf *out, const struct lf_shard_seq *q, const int32_t *ids, const int32_t *labels)
{
	struct lf_buf text = LF_BUF_INIT;
	uint32_t seg = 0, seg_end = q->nsegments ? lf_shard_seq_segment(q, 0) : q->n;
	uint32_t t = 0;
	while (t < q->n) {
		if (q->nsegments && t == seg_end) {
			lf_buf_addstr(&text, " \u2016 ");
			seg++;
			seg_end += seg < q->nsegments ? lf_shard_seq_segment(q, seg) : q->n - seg_end;
		}
		bool masked = labels[t] == -100;
		uint32_t u = t;
		while (u < q->n && u < seg_end && (labels[u] == -100) == masked)
			u++;
		if (masked)
			lf_buf_addstr(&text, "\u00ab");
		if (lf_tokenizer_decode(tokenizer, ids + t, u - t, false, &text) < 0)
			lf_die("%s", lf_errmsg());
		if (masked)
			lf_buf_addstr(&text, "\u00bb");
		t = u;
	}
	lf_json_string(out, text.data ? text.data : "", text.len);
	lf_buf_free(&text);
}

static void print_seq(struct lf_buf *out, const char *prefix, const struct lf_shard_seq *q, bool positions)
{
	static int32_t *ids, *labels, *aux;
	static size_t cap;
	if (q->n + 1 > cap) {
		cap = 2 * (q->n + 1);
		ids = lf_realloc(ids, cap * sizeof *ids);
		labels = lf_realloc(labels, cap * sizeof *labels);
		aux = lf_realloc(aux, cap * sizeof *aux);
	}
	lf_shard_seq_decode(q, ids, labels);
	char key[64];
	snprintf(key, sizeof key, "%sinput_ids", prefix);
	add_int_array(out, key, ids, q->n);
	snprintf(key, sizeof key, "%slabels", prefix);
	add_int_array(out, key, labels, q->n);
	if (positions) {
		/* LLaMA-Factory's position_ids and attention_mask of a packed sequence */
		uint32_t t = 0;
		for (uint32_t k = 0; k < q->nsegments; k++)
			for (uint32_t i = 0; i < lf_shard_seq_segment(q, k); i++)
				aux[t++] = (int32_t)i;
		while (t < q->n)
			aux[t++] = 0;
		add_int_array(out, "position_ids", aux, q->n);
		t = 0;
		for (uint32_t k = 0; k < q->nsegments; k++)
			for (uint32_t i = 0; i < lf_shard_seq_segment(q, k); i++)
				aux[t++] = q->flags & LF_SEQ_NEAT ? (int32_t)k + 1 : 1;
		while (t < q->n)
			aux[t++] = q->flags & LF_SEQ_NEAT ? 0 : 1;
		add_int_array(out, "attention_mask", aux, q->n);
	}
	if (tokenizer) {
		lf_buf_addf(out, ",\"%stext\":", prefix);
		shard_text(out, q, ids, labels);
	}
}

struct shard_stats {
	uint64_t examples, sequences, tokens, label_tokens, pad_tokens, packed, longest, shortest;
};

static void stats_seq(struct shard_stats *st, const struct lf_shard_seq *q)
{
	st->sequences++;
	st->tokens += q->n;
	if (q->n > st->longest)
		st->longest = q->n;
	if (st->sequences == 1 || q->n < st->shortest)
		st->shortest = q->n;
	uint64_t used = 0;
	for (uint32_t k = 0; k < q->nsegments; k++)
		used += lf_shard_seq_segment(q, k);
	if (q->nsegments) {
		st->packed += q->nsegments;
		st->pad_tokens += q->n - used;
	}
	for (uint32_t t = 0; t < q->n; t++)
		st->label_tokens += (q->mask[t / 8] >> (t % 8)) & 1;
	st->label_tokens += q->nexceptions;
}

static int inspect_shards(const char *path)
{
	struct lf_shardset *set = lf_shardset_open(path);
	if (!set)
		lf_die("%s", lf_errmsg());
	const msgpack_object *meta = lf_shardset_meta(set);
	struct lf_buf out = LF_BUF_INIT;
	if (opt_header) {
		lf_mp_to_json(&out, meta);
		lf_buf_addch(&out, '\n');
		fwrite(out.data, 1, out.len, stdout);
		lf_buf_free(&out);
		lf_shardset_close(set);
		return 0;
	}
	if (opt_verify) {
		if (lf_shardset_verify(set) < 0)
			lf_die("%s", lf_errmsg());
		lf_note("%s: every block checks", path);
		lf_shardset_close(set);
		return 0;
	}
	if (tokenizer) {
		int32_t ids[3];
		if (lf_tokenizer_check_stream(tokenizer, meta, ids) < 0) {
			if (!opt_force)
				lf_die("%s: %s; --force decodes anyway", path, lf_errmsg());
			lf_warn("%s: %s", path, lf_errmsg());
		}
	}
	const msgpack_object *kind = lf_mp_get(meta, "kind");
	int type = kind && kind->type == MSGPACK_OBJECT_STR ? lf_rec_type_parse(kind->via.str.ptr, kind->via.str.size) : -1;
	if (type < 0)
		lf_die("%s: shard metadata: unknown kind", path);
	bool packing = false;
	lf_mp_get_bool(meta, "packing", &packing, false);
	if (opt_split && lf_shardset_find_split(set, opt_split) < 0)
		lf_die("%s: no split '%s'", path, opt_split);
	bool print = !opt_count && !opt_stats;
	json_t *stats = json_object();
	uint64_t total = 0;
	long long printed = 0;
	for (size_t sp = 0; sp < lf_shardset_nsplits(set); sp++) {
		const char *split = lf_shardset_split_name(set, sp);
		if (opt_split && strcmp(opt_split, split))
			continue;
		struct shard_stats st = { 0 };
		uint64_t n = lf_shardset_examples(set, sp);
		total += n;
		for (uint64_t i = 0; i < n && (print || opt_stats) && (opt_head < 0 || printed < opt_head || !print); i++) {
			struct lf_shard_seq q[2];
			unsigned k = lf_shard_seqs_per_example(lf_shardset_shard(set, sp, 0));
			for (unsigned j = 0; j < k; j++) {
				if (lf_shardset_get(set, sp, i, j, &q[j]) < 0)
					lf_die("%s", lf_errmsg());
				stats_seq(&st, &q[j]);
			}
			st.examples++;
			if (!print)
				continue;
			lf_buf_reset(&out);
			lf_buf_addf(&out, "{\"split\":\"%s\",\"index\":%llu", split, (unsigned long long)i);
			if (q[0].dataset != UINT32_MAX)
				lf_buf_addf(&out, ",\"dataset\":%u,\"row\":%llu", q[0].dataset, (unsigned long long)q[0].row);
			switch (type) {
			case LF_REC_PAIRWISE:
				print_seq(&out, "chosen_", &q[0], false);
				print_seq(&out, "rejected_", &q[1], false);
				break;
			case LF_REC_KTO:
				print_seq(&out, "", &q[0], false);
				print_seq(&out, "kl_", &q[1], false);
				lf_buf_addf(&out, ",\"kto_tags\":%s", q[0].flags & LF_SEQ_DESIRABLE ? "true" : "false");
				break;
			case LF_REC_PROMPT: {
				/* input_ids: the prompt; labels: the reference answer */
				int32_t *ids = lf_malloc((q[0].n + q[1].n + 1) * sizeof *ids);
				lf_shard_seq_decode(&q[0], ids, NULL);
				add_int_array(&out, "input_ids", ids, q[0].n);
				lf_shard_seq_decode(&q[1], ids, NULL);
				add_int_array(&out, "labels", ids, q[1].n);
				free(ids);
				break;
			}
			default:
				print_seq(&out, "", &q[0], packing && type == LF_REC_SFT);
			}
			lf_buf_addstr(&out, "}\n");
			if (fwrite(out.data, 1, out.len, stdout) != out.len)
				lf_die("<stdout>: write failed");
			printed++;
		}
		json_object_set_new(stats, split,
				    json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:f}", "examples",
					      (json_int_t)st.examples, "sequences", (json_int_t)st.sequences, "tokens",
					      (json_int_t)st.tokens, "label_tokens", (json_int_t)st.label_tokens,
					      "pad_tokens", (json_int_t)st.pad_tokens, "packed_examples",
					      (json_int_t)st.packed, "shortest", (json_int_t)st.shortest, "longest",
					      (json_int_t)st.longest, "mean_length",
					      st.sequences ? (double)st.tokens / (double)st.sequences : 0.0,
					      "packing_efficiency",
					      st.tokens ? (double)(st.tokens - st.pad_tokens) / (double)st.tokens : 0.0));
	}
	if (opt_count)
		printf("%llu\n", (unsigned long long)total);
	if (opt_stats) {
		char *js = json_dumps(stats, JSON_SORT_KEYS | JSON_COMPACT);
		printf("%s\n", js);
		free(js);
	}
	json_decref(stats);
	if (fflush(stdout) != 0)
		lf_die("<stdout>: write failed");
	lf_buf_free(&out);
	lf_shardset_close(set);
	lf_tokenizer_free(tokenizer);
	return 0;
}

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
	if (is_shard_input(first < argc ? argv[first] : NULL))
		return inspect_shards(argv[first]);
	if (opt_verify || opt_split)
		lf_die_usage("--verify and --split are for shards");
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

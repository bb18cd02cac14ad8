/*
 * lf-pack — token records to training shards: LLaMA-Factory's truncation,
 * labels and packing (man 1 lf-pack, man 5 lf-shard).
 *
 * Records flow: input stream (or, for interleaved mixing, a spool of it in
 * the mixed order) -> one processor per record type, working per
 * preprocessing batch as LLaMA-Factory's datasets.map does -> examples ->
 * the sink, which writes the train shards directly or, when a validation
 * split or a shuffle needs the examples in another order, a temporary shard
 * it then reads back in that order.  The output folder is built under a
 * temporary name and renamed into place when complete.
 */
#include "buf.h"
#include "error.h"
#include "example.h"
#include "log.h"
#include "mp.h"
#include "nprandom.h"
#include "options.h"
#include "output.h"
#include "record.h"
#include "shard.h"
#include "shardset.h"
#include "stream.h"
#include "tokenizer.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static long long opt_cutoff_len = 2048, opt_batch_size = 1000, opt_max_samples = -1, opt_seed = 42;
static bool opt_packing, opt_neat_packing, opt_train_on_prompt, opt_mask_history, opt_shuffle;
static double opt_val_size = 0;
static char *opt_output, *opt_tokenizer, *opt_model, *opt_mix, *opt_probs, *opt_shard_size,
	    *opt_bundle, *opt_stage;

static struct lf_option options[] = {
	{ "cutoff-len", 0, LF_OPT_INT, &opt_cutoff_len, "N", "the longest sequence, in tokens (default 2048)" },
	{ "packing", 0, LF_OPT_BOOL, &opt_packing, NULL,
	  "pack examples into cutoff-len blocks (default: on for pre-training only)" },
	{ "neat-packing", 0, LF_OPT_BOOL, &opt_neat_packing, NULL,
	  "pack, and keep each example's attention to itself (implies --packing)" },
	{ "train-on-prompt", 0, LF_OPT_BOOL, &opt_train_on_prompt, NULL,
	  "label prompts too (must agree with the stream header)" },
	{ "mask-history", 0, LF_OPT_BOOL, &opt_mask_history, NULL,
	  "label the last turn only (must agree with the stream header)" },
	{ "preprocessing-batch-size", 0, LF_OPT_INT, &opt_batch_size, "N",
	  "records per batch for packing, pre-training blocks and KTO's KL pairs (default 1000)" },
	{ "max-samples", 0, LF_OPT_INT, &opt_max_samples, "N", "keep the first N rows of each dataset" },
	{ "mix-strategy", 0, LF_OPT_STRING, &opt_mix, "NAME",
	  "concat, interleave_under, interleave_over or interleave_once (default concat)" },
	{ "interleave-probs", 0, LF_OPT_STRING, &opt_probs, "LIST", "sampling probabilities for interleaving" },
	{ "val-size", 0, LF_OPT_FLOAT, &opt_val_size, "X",
	  "hold out a validation split: a fraction (< 1) or a number of rows" },
	{ "seed", 0, LF_OPT_INT, &opt_seed, "N",
	  "seed for mixing, the validation split and --shuffle (default 42)" },
	{ "shuffle", 0, LF_OPT_BOOL, &opt_shuffle, NULL, "write the training examples in a seeded random order",
	  LF_OPT_CLI_ONLY },
	{ "shard-size", 0, LF_OPT_STRING, &opt_shard_size, "SIZE",
	  "start a new shard file past SIZE bytes (K, M, G suffixes; default one file per split)", LF_OPT_CLI_ONLY },
	{ "bundle", 0, LF_OPT_STRING, &opt_bundle, "FILE.tar",
	  "also write the shards and manifest as one tar file", LF_OPT_CLI_ONLY },
	{ "tokenizer", 0, LF_OPT_STRING, &opt_tokenizer, "PATH",
	  "refuse a stream not made with this tokenizer", LF_OPT_CLI_ONLY },
	{ "model-name-or-path", 0, LF_OPT_STRING, &opt_model, "PATH", "the model folder (recipe key; as --tokenizer)" },
	{ "stage", 0, LF_OPT_STRING, &opt_stage, "STAGE", "must agree with the stream's record type when given" },
	{ "output", 'o', LF_OPT_STRING, &opt_output, "DIR", "the output folder (required)", LF_OPT_CLI_ONLY },
	{ 0 }
};

static const struct lf_tool_info tool = {
	"lf-pack", "-o DIR [OPTION]... [INPUT]",
	"Truncate, label and pack token records into training shards, as LLaMA-Factory's preprocessing does.",
	"INPUT (a token stream from lf-tokenize) defaults to standard input.\n"
	"Example: lf-template -t llama3 --dataset identity | lf-tokenize --tokenizer m | lf-pack --cutoff-len 1024 -o id",
};

/* ---- settings from the stream header ---- */

static struct {
	struct lf_example_settings ex; /* type, cutoff (after packing's -1), labels, special ids */
	size_t block;                  /* length of every packed sequence */
	bool packing, neat;
	unsigned width;
} cfg;

/* ---- the examples processors produce ---- */

struct seq {
	struct lf_ivec ids, labels;
	uint32_t *segs;
	size_t nsegs, cap_segs;
	uint32_t flags, dataset;
	uint64_t row;
};

static void seq_clear(struct seq *s)
{
	s->ids.n = s->labels.n = 0;
	s->nsegs = 0;
	s->flags = 0;
	s->dataset = UINT32_MAX;
	s->row = UINT64_MAX;
}

static void seq_add_segment(struct seq *s, uint32_t len)
{
	if (s->nsegs == s->cap_segs) {
		s->cap_segs = s->cap_segs ? 2 * s->cap_segs : 16;
		s->segs = lf_realloc(s->segs, s->cap_segs * sizeof *s->segs);
	}
	s->segs[s->nsegs++] = len;
}

static unsigned seqs_per_example(enum lf_rec_type t)
{
	return t == LF_REC_PAIRWISE || t == LF_REC_KTO || t == LF_REC_PROMPT ? 2 : 1;
}

/* ---- the sink: examples to shards ---- */

struct counts {
	uint64_t examples, sequences, tokens, label_tokens, pad_tokens, packed;
	uint32_t longest;
};

struct split_out {
	const char *name;
	struct lf_shard_writer *w;
	json_t *shards; /* manifest entries */
	unsigned nfiles;
	struct counts all, file; /* the split's, the open shard's */
};

static struct lf_outdir outdir;
static uint64_t shard_limit; /* bytes; 0: no limit */
static struct split_out train_out = { "train" }, val_out = { "validation" };
static struct split_out *current = &train_out; /* where processed examples go */
static struct lf_shard_writer *shuffle_spool; /* --shuffle: the training examples, before reordering */
static char *shuffle_path;
static const msgpack_object *in_header;
static int in_argc;
static char **in_argv;

static void pack_meta(msgpack_sbuffer *sb, const char *split, unsigned index, const struct counts *c);

static void split_close_file(struct split_out *o)
{
	if (!o->w)
		return;
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	pack_meta(&sb, o->name, o->nfiles - 1, &o->file);
	uint64_t n = lf_shard_writer_examples(o->w);
	if (lf_shard_writer_finish(o->w, sb.data, sb.size) < 0)
		lf_die("%s", lf_errmsg());
	o->w = NULL;
	msgpack_sbuffer_destroy(&sb);
	char name[64];
	snprintf(name, sizeof name, "%s-%05u.shard", o->name, o->nfiles - 1);
	struct stat st;
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", outdir.tmp, name);
	if (stat(path, &st) != 0)
		lf_die("%s: %s", path, strerror(errno));
	uint64_t bytes = (uint64_t)st.st_size;
	json_array_append_new(o->shards, json_pack("{s:s,s:I,s:I}", "file", name, "examples", (json_int_t)n,
						   "bytes", (json_int_t)bytes));
}

static void split_open_file(struct split_out *o)
{
	char name[64];
	snprintf(name, sizeof name, "%s-%05u.shard", o->name, o->nfiles);
	const char *path = lf_outdir_file(&outdir, name);
	o->w = lf_shard_writer_open(path, cfg.width, seqs_per_example(cfg.ex.type));
	if (!o->w)
		lf_die("%s", lf_errmsg());
	if (!o->shards)
		o->shards = json_array();
	o->nfiles++;
	memset(&o->file, 0, sizeof o->file);
}

static void count(struct counts *c, const struct lf_shard_seq_in *in)
{
	c->examples++;
	for (unsigned j = 0; j < seqs_per_example(cfg.ex.type); j++) {
		c->sequences++;
		c->tokens += in[j].n;
		if (in[j].n > c->longest)
			c->longest = in[j].n;
		uint64_t used = 0;
		for (uint32_t k = 0; k < in[j].nsegments; k++)
			used += in[j].segments[k];
		if (in[j].nsegments) {
			c->pad_tokens += in[j].n - used;
			c->packed += in[j].nsegments;
		}
		for (uint32_t t = 0; t < in[j].n; t++)
			c->label_tokens += in[j].labels[t] != LF_IGNORE_INDEX;
	}
}

static void split_add(struct split_out *o, const struct lf_shard_seq_in *in)
{
	if (o->w && shard_limit && lf_shard_writer_bytes(o->w) >= shard_limit)
		split_close_file(o);
	if (!o->w)
		split_open_file(o);
	if (lf_shard_writer_add(o->w, in) < 0)
		lf_die("%s", lf_errmsg());
	count(&o->all, in);
	count(&o->file, in);
}

static void emit(struct seq *s)
{
	struct lf_shard_seq_in in[2];
	unsigned k = seqs_per_example(cfg.ex.type);
	for (unsigned j = 0; j < k; j++)
		in[j] = (struct lf_shard_seq_in){ s[j].ids.v, s[j].labels.v, (uint32_t)s[j].ids.n, s[j].segs,
						  (uint32_t)s[j].nsegs, s[j].flags, s[j].dataset, s[j].row };
	if (current == &train_out && shuffle_spool) {
		if (lf_shard_writer_add(shuffle_spool, in) < 0)
			lf_die("%s", lf_errmsg());
	} else {
		split_add(current, in);
	}
}

/* ---- the batch: records of one preprocessing batch ---- */

struct item {
	struct lf_ivec ids, labels; /* sft: the encoded example; kto: prompt, response */
	uint32_t dataset, prompt_thought;
	uint64_t row;
	bool desirable;
};

static struct {
	struct item *v;
	size_t n, cap;
	uint64_t id; /* batch number */
	bool open;
	struct lf_ivec pt; /* pre-training: the batch's ids concatenated */
} batch;

static struct seq out[2];

static void emit_one(const struct lf_ivec *ids, const struct lf_ivec *labels, uint32_t dataset, uint64_t row)
{
	seq_clear(&out[0]);
	lf_ivec_cat(&out[0].ids, ids->v, ids->n);
	lf_ivec_cat(&out[0].labels, labels->v, labels->n);
	out[0].dataset = dataset;
	out[0].row = row;
	emit(out);
}

struct by_length {
	size_t len, idx;
};

static int cmp_by_length(const void *a, const void *b)
{
	const struct by_length *x = a, *y = b;
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* LLaMA-Factory's greedy knapsack over the batch's example lengths: sorted
 * ascending, each pack repeatedly takes the largest remaining length that
 * fits (bisect right); the example for a length is the last remaining one
 * of that length in input order (length2indexes[length].pop()). */
static void pack_batch(void)
{
	size_t n = batch.n;
	struct by_length *sorted = lf_malloc((n + 1) * sizeof *sorted);
	for (size_t i = 0; i < n; i++)
		sorted[i] = (struct by_length){ batch.v[i].ids.n, i };
	qsort(sorted, n, sizeof *sorted, cmp_by_length);
	/* lengths still unpacked, ascending; per length, its group in sorted[]
	 * (start, and one past the last example not yet taken) */
	size_t *lengths = lf_malloc((n + 1) * sizeof *lengths), nleft = n;
	size_t *group_start = lf_malloc((n + 1) * sizeof *group_start), *group_end = lf_malloc((n + 1) * sizeof *group_end);
	size_t ngroups = 0;
	for (size_t i = 0; i < n; i++) {
		lengths[i] = sorted[i].len;
		if (i == 0 || sorted[i].len != sorted[i - 1].len)
			group_start[ngroups++] = i;
		group_end[ngroups - 1] = i + 1;
	}
	while (nleft) {
		seq_clear(&out[0]);
		if (cfg.neat)
			out[0].flags |= LF_SEQ_NEAT;
		size_t room = cfg.ex.cutoff;
		for (;;) {
			size_t lo = 0, hi = nleft; /* bisect right */
			while (lo < hi) {
				size_t mid = (lo + hi) / 2;
				if (lengths[mid] <= room)
					lo = mid + 1;
				else
					hi = mid;
			}
			if (lo == 0)
				break;
			size_t len = lengths[lo - 1];
			memmove(lengths + lo - 1, lengths + lo, (nleft - lo) * sizeof *lengths);
			nleft--;
			room -= len;
			size_t g = 0, gh = ngroups; /* the group of this length */
			while (g < gh) {
				size_t mid = (g + gh) / 2;
				if (sorted[group_start[mid]].len < len)
					g = mid + 1;
				else
					gh = mid;
			}
			const struct item *it = &batch.v[sorted[--group_end[g]].idx];
			lf_ivec_cat(&out[0].ids, it->ids.v, it->ids.n);
			lf_ivec_cat(&out[0].labels, it->labels.v, it->labels.n);
			seq_add_segment(&out[0], (uint32_t)len);
		}
		size_t pad = cfg.block - out[0].ids.n;
		lf_ivec_fill(&out[0].ids, cfg.ex.pad, pad);
		lf_ivec_fill(&out[0].labels, LF_IGNORE_INDEX, pad);
		emit(out);
	}
	free(sorted);
	free(lengths);
	free(group_start);
	free(group_end);
}

/* Pre-training with packing: the batch's texts concatenated, cut into
 * blocks, the remainder dropped, bos over the first id of each block. */
static void pt_blocks(void)
{
	size_t nblocks = batch.pt.n / cfg.block;
	for (size_t b = 0; b < nblocks; b++) {
		seq_clear(&out[0]);
		lf_ivec_cat(&out[0].ids, batch.pt.v + b * cfg.block, cfg.block);
		if (cfg.ex.add_bos && cfg.ex.bos >= 0)
			out[0].ids.v[0] = cfg.ex.bos;
		for (size_t t = 0; t < cfg.block; t++) /* the collator masks pad ids */
			lf_ivec_push(&out[0].labels, out[0].ids.v[t] == cfg.ex.pad ? LF_IGNORE_INDEX : out[0].ids.v[t]);
		emit(out);
	}
	batch.pt.n = 0;
}

/* KTO: each example, and its KL completion: the prompt with the previous
 * record's response (the last record's for the first), rotated within the
 * batch; an empty thought the template inserted travels with the response. */
static void kto_batch(void)
{
	for (size_t i = 0; i < batch.n; i++) {
		const struct item *it = &batch.v[i], *kl = &batch.v[i ? i - 1 : batch.n - 1];
		size_t sl, tl;
		seq_clear(&out[0]);
		seq_clear(&out[1]);
		lf_infer_seqlen(it->ids.n, it->labels.n, cfg.ex.cutoff, &sl, &tl);
		lf_ivec_cat(&out[0].ids, it->ids.v, sl);
		lf_ivec_cat(&out[0].ids, it->labels.v, tl);
		lf_ivec_fill(&out[0].labels, LF_IGNORE_INDEX, sl);
		lf_ivec_cat(&out[0].labels, it->labels.v, tl);
		out[0].flags = it->desirable ? LF_SEQ_DESIRABLE : 0;
		out[0].dataset = it->dataset;
		out[0].row = it->row;
		/* the KL prompt: ours without our inserted thought, plus theirs */
		static struct lf_ivec kl_prompt;
		struct lf_ivec *kp = &kl_prompt;
		kp->n = 0;
		lf_ivec_cat(kp, it->ids.v, it->ids.n - it->prompt_thought);
		lf_ivec_cat(kp, kl->ids.v + kl->ids.n - kl->prompt_thought, kl->prompt_thought);
		size_t ksl, ktl;
		lf_infer_seqlen(kp->n, kl->labels.n, cfg.ex.cutoff, &ksl, &ktl);
		lf_ivec_cat(&out[1].ids, kp->v, ksl);
		lf_ivec_cat(&out[1].ids, kl->labels.v, ktl);
		lf_ivec_fill(&out[1].labels, LF_IGNORE_INDEX, ksl);
		lf_ivec_cat(&out[1].labels, kl->labels.v, ktl);
		out[1].dataset = kl->dataset;
		out[1].row = kl->row;
		emit(out);
	}
}

static void batch_flush(void)
{
	if (!batch.open)
		return;
	if (cfg.ex.type == LF_REC_SFT && cfg.packing)
		pack_batch();
	else if (cfg.ex.type == LF_REC_PT && cfg.packing)
		pt_blocks();
	else if (cfg.ex.type == LF_REC_KTO)
		kto_batch();
	batch.n = 0;
	batch.open = false;
}

static struct item *batch_item(void)
{
	if (batch.n == batch.cap) {
		size_t old = batch.cap;
		batch.cap = batch.cap ? 2 * batch.cap : 64;
		batch.v = lf_realloc(batch.v, batch.cap * sizeof *batch.v);
		memset(batch.v + old, 0, (batch.cap - old) * sizeof *batch.v);
	}
	struct item *it = &batch.v[batch.n++];
	it->ids.n = it->labels.n = 0;
	return it;
}

/* ---- one record ---- */

static struct lf_ivec scratch_ids, scratch_labels;

static void process(const struct lf_token_record *r, uint64_t position)
{
	uint64_t id = position / (uint64_t)opt_batch_size;
	if (batch.open && id != batch.id)
		batch_flush();
	batch.open = true;
	batch.id = id;
	switch (cfg.ex.type) {
	case LF_REC_SFT:
		lf_example_supervised(r, &cfg.ex, &scratch_ids, &scratch_labels);
		if (!cfg.packing) {
			emit_one(&scratch_ids, &scratch_labels, r->dataset, r->row);
		} else if (scratch_ids.n <= cfg.ex.cutoff) { /* longer ones are dropped, as LLaMA-Factory */
			struct item *it = batch_item();
			lf_ivec_cat(&it->ids, scratch_ids.v, scratch_ids.n);
			lf_ivec_cat(&it->labels, scratch_labels.v, scratch_labels.n);
		}
		break;
	case LF_REC_PT:
		if (cfg.packing) {
			lf_ivec_ids(&batch.pt, r->text, r->text.n);
		} else {
			scratch_ids.n = scratch_labels.n = 0;
			if (cfg.ex.add_bos && cfg.ex.bos >= 0)
				lf_ivec_push(&scratch_ids, cfg.ex.bos);
			lf_ivec_ids(&scratch_ids, r->text, r->text.n);
			if (scratch_ids.n > cfg.ex.cutoff)
				scratch_ids.n = cfg.ex.cutoff;
			for (size_t t = 0; t < scratch_ids.n; t++)
				lf_ivec_push(&scratch_labels,
					scratch_ids.v[t] == cfg.ex.pad ? LF_IGNORE_INDEX : scratch_ids.v[t]);
			emit_one(&scratch_ids, &scratch_labels, r->dataset, r->row);
		}
		break;
	case LF_REC_PAIRWISE: {
		size_t extra = cfg.ex.efficient_eos ? 1 : 0;
		size_t cn = r->chosen.n + extra, rn = r->rejected.n + extra, sl, tl;
		lf_infer_seqlen(r->prompt.n, cn > rn ? cn : rn, cfg.ex.cutoff, &sl, &tl);
		const struct lf_ids *resp[2] = { &r->chosen, &r->rejected };
		for (int j = 0; j < 2; j++) {
			seq_clear(&out[j]);
			out[j].dataset = r->dataset;
			out[j].row = r->row;
			lf_ivec_ids(&out[j].ids, r->prompt, sl);
			lf_ivec_fill(&out[j].labels, LF_IGNORE_INDEX, sl);
			size_t n = resp[j]->n + extra < tl ? resp[j]->n + extra : tl;
			size_t from_ids = n < resp[j]->n ? n : resp[j]->n;
			lf_ivec_ids(&out[j].ids, *resp[j], from_ids);
			lf_ivec_ids(&out[j].labels, *resp[j], from_ids);
			if (n > from_ids) {
				lf_ivec_push(&out[j].ids, cfg.ex.eos);
				lf_ivec_push(&out[j].labels, cfg.ex.eos);
			}
		}
		emit(out);
		break;
	}
	case LF_REC_KTO: {
		struct item *it = batch_item();
		lf_ivec_ids(&it->ids, r->prompt, r->prompt.n);
		lf_ivec_ids(&it->labels, r->response, r->response.n);
		if (cfg.ex.efficient_eos)
			lf_ivec_push(&it->labels, cfg.ex.eos);
		it->prompt_thought = r->prompt_thought;
		it->desirable = r->desirable;
		it->dataset = r->dataset;
		it->row = r->row;
		break;
	}
	case LF_REC_PROMPT: {
		size_t extra = cfg.ex.efficient_eos ? 1 : 0, sl, tl;
		lf_infer_seqlen(r->prompt.n, r->response.n + extra, cfg.ex.cutoff, &sl, &tl);
		seq_clear(&out[0]);
		seq_clear(&out[1]);
		out[0].dataset = out[1].dataset = r->dataset;
		out[0].row = out[1].row = r->row;
		lf_ivec_ids(&out[0].ids, r->prompt, sl);
		lf_ivec_fill(&out[0].labels, LF_IGNORE_INDEX, sl);
		size_t from_ids = tl < r->response.n ? tl : r->response.n;
		lf_ivec_ids(&out[1].ids, r->response, from_ids);
		if (tl > from_ids)
			lf_ivec_push(&out[1].ids, cfg.ex.eos);
		lf_ivec_cat(&out[1].labels, out[1].ids.v, out[1].ids.n);
		emit(out);
		break;
	}
	default:
		lf_die("record type %s is not packed", lf_rec_type_name(cfg.ex.type));
	}
}

/* ---- metadata and manifest ---- */

static void pk_header_key(msgpack_packer *pk, const char *key)
{
	const msgpack_object *v = lf_mp_get(in_header, key);
	lf_pk_str(pk, key);
	if (v)
		msgpack_pack_object(pk, *v);
	else
		msgpack_pack_nil(pk);
}

static void pk_counts(msgpack_packer *pk, const struct counts *c)
{
	msgpack_pack_map(pk, 7);
	lf_pk_kv_uint(pk, "examples", c->examples);
	lf_pk_kv_uint(pk, "sequences", c->sequences);
	lf_pk_kv_uint(pk, "tokens", c->tokens);
	lf_pk_kv_uint(pk, "label_tokens", c->label_tokens);
	lf_pk_kv_uint(pk, "pad_tokens", c->pad_tokens);
	lf_pk_kv_uint(pk, "packed_examples", c->packed);
	lf_pk_kv_uint(pk, "longest", c->longest);
}

static void pack_meta(msgpack_sbuffer *sb, const char *split, unsigned index, const struct counts *c)
{
	msgpack_packer pk;
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 18);
	lf_pk_kv_str(&pk, "format", "lf-shard");
	lf_pk_kv_uint(&pk, "version", LF_SHARD_VERSION);
	lf_pk_kv_str(&pk, "kind", lf_rec_type_name(cfg.ex.type));
	lf_pk_kv_str(&pk, "split", split);
	lf_pk_kv_uint(&pk, "index", index);
	lf_pk_str(&pk, "counts");
	pk_counts(&pk, c);
	lf_pk_kv_uint(&pk, "cutoff_len", cfg.ex.cutoff);
	lf_pk_kv_bool(&pk, "packing", cfg.packing);
	lf_pk_kv_bool(&pk, "neat_packing", cfg.neat);
	lf_pk_kv_bool(&pk, "train_on_prompt", cfg.ex.train_on_prompt);
	lf_pk_kv_bool(&pk, "mask_history", cfg.ex.mask_history);
	lf_pk_kv_uint(&pk, "preprocessing_batch_size", (uint64_t)opt_batch_size);
	pk_header_key(&pk, "stage");
	pk_header_key(&pk, "tokenizer");
	pk_header_key(&pk, "template");
	pk_header_key(&pk, "datasets");
	const msgpack_object *prov = lf_mp_get(in_header, "provenance");
	lf_pk_str(&pk, "provenance");
	uint32_t np = prov && prov->type == MSGPACK_OBJECT_ARRAY ? prov->via.array.size : 0;
	msgpack_pack_array(&pk, np + 1);
	for (uint32_t i = 0; i < np; i++)
		msgpack_pack_object(&pk, prov->via.array.ptr[i]);
	msgpack_pack_map(&pk, 3);
	lf_pk_kv_str(&pk, "tool", "lf-pack");
	lf_pk_kv_str(&pk, "version", LF_VERSION);
	lf_pk_str(&pk, "argv");
	msgpack_pack_array(&pk, (size_t)in_argc);
	for (int a = 0; a < in_argc; a++)
		lf_pk_str(&pk, in_argv[a]);
	lf_pk_kv_str(&pk, "created_by", "lf-pack " LF_VERSION);
}

static json_t *split_json(const struct split_out *o)
{
	const struct counts *c = &o->all;
	return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o}", "examples", (json_int_t)c->examples, "sequences",
			 (json_int_t)c->sequences, "tokens", (json_int_t)c->tokens, "label_tokens",
			 (json_int_t)c->label_tokens, "pad_tokens", (json_int_t)c->pad_tokens, "packed_examples",
			 (json_int_t)c->packed, "longest", (json_int_t)c->longest, "shards",
			 o->shards ? json_incref(o->shards) : json_array());
}

static void write_manifest(void)
{
	json_t *m = json_object();
	json_object_set_new(m, "format", json_string("lf-shards"));
	json_object_set_new(m, "version", json_integer(1));
	json_object_set_new(m, "kind", json_string(lf_rec_type_name(cfg.ex.type)));
	json_object_set_new(m, "cutoff_len", json_integer((json_int_t)cfg.ex.cutoff));
	json_object_set_new(m, "packing", json_boolean(cfg.packing));
	json_object_set_new(m, "neat_packing", json_boolean(cfg.neat));
	const msgpack_object *tok = lf_mp_get(in_header, "tokenizer");
	const char *fp;
	size_t fpn;
	if (tok && lf_mp_get_str(tok, "fingerprint", &fp, &fpn, false) == 1)
		json_object_set_new(m, "tokenizer_fingerprint", json_stringn(fp, fpn));
	json_t *splits = json_object();
	json_object_set_new(splits, "train", split_json(&train_out));
	if (val_out.nfiles)
		json_object_set_new(splits, "validation", split_json(&val_out));
	json_object_set_new(m, "splits", splits);
	const char *path = lf_outdir_file(&outdir, "manifest.json");
	if (json_dump_file(m, path, JSON_INDENT(2) | JSON_SORT_KEYS) != 0)
		lf_die("%s: cannot write", path);
	if (lf_log_enabled())
		lf_log_event("packed", json_deep_copy(splits));
	json_decref(m);
}

/* ---- shuffling ---- */

static void copy_example(struct lf_shard *s, uint64_t i, struct split_out *o)
{
	static struct lf_ivec ids[2], labels[2];
	static uint32_t *segs[2];
	static size_t cap_segs[2];
	struct lf_shard_seq_in in[2];
	unsigned k = lf_shard_seqs_per_example(s);
	for (unsigned j = 0; j < k; j++) {
		struct lf_shard_seq q;
		if (lf_shard_get(s, i, j, &q) < 0)
			lf_die("%s", lf_errmsg());
		ids[j].n = labels[j].n = 0;
		lf_ivec_reserve(&ids[j], q.n + 1);
		lf_ivec_reserve(&labels[j], q.n + 1);
		lf_shard_seq_decode(&q, ids[j].v, labels[j].v);
		if (q.nsegments > cap_segs[j]) {
			cap_segs[j] = q.nsegments;
			segs[j] = lf_realloc(segs[j], cap_segs[j] * sizeof *segs[j]);
		}
		for (uint32_t g = 0; g < q.nsegments; g++)
			segs[j][g] = lf_shard_seq_segment(&q, g);
		in[j] = (struct lf_shard_seq_in){ ids[j].v, labels[j].v, q.n, segs[j], q.nsegments, q.flags, q.dataset,
						  q.row };
	}
	split_add(o, in);
}

/* --shuffle: the training examples, spooled to a shard, written in the
 * order of numpy's permutation under --seed. */
static void shuffle_train(void)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	pack_meta(&sb, "train", 0, &train_out.file);
	if (lf_shard_writer_finish(shuffle_spool, sb.data, sb.size) < 0)
		lf_die("%s", lf_errmsg());
	shuffle_spool = NULL;
	msgpack_sbuffer_destroy(&sb);
	struct lf_shard *s = lf_shard_open(shuffle_path);
	if (!s)
		lf_die("%s", lf_errmsg());
	size_t n = (size_t)lf_shard_examples(s);
	size_t *perm = lf_malloc((n + 1) * sizeof *perm);
	struct lf_np_rng rng;
	lf_np_rng_seed(&rng, (uint64_t)opt_seed);
	lf_np_permutation(&rng, n, perm);
	for (size_t i = 0; i < n; i++) {
		copy_example(s, perm[i], &train_out);
		lf_progress("shuffling: %zu of %zu", i, n);
	}
	lf_progress_done();
	lf_shard_close(s);
	unlink(shuffle_path);
	free(perm);
}

/* ---- reading the input ---- */

static uint64_t parse_size(const char *s)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	double mult = 1;
	switch (*end) {
	case 'k': case 'K': mult = 1e3; end++; break;
	case 'm': case 'M': mult = 1e6; end++; break;
	case 'g': case 'G': mult = 1e9; end++; break;
	}
	if (*end == 'B' || *end == 'b')
		end++;
	if (errno || end == s || *end || !(v > 0) || v * mult > 1e18)
		lf_die_usage("option '--shard-size': '%s' is not a size (such as 512M)", s);
	return (uint64_t)(v * mult);
}

static uint64_t kept;

static void read_header(struct lf_reader *rd)
{
	const char *name = lf_reader_name(rd);
	if (lf_example_settings_read(lf_reader_header(rd), lf_option_find(options, "train-on-prompt"),
				     lf_option_find(options, "mask-history"), &cfg.ex) < 0)
		lf_die("%s: %s", name, lf_errmsg());
	if (opt_stage) {
		static const char *const want[] = { [LF_REC_SFT] = "sft", [LF_REC_PAIRWISE] = "rm",
						    [LF_REC_KTO] = "kto", [LF_REC_PT] = "pt", [LF_REC_PROMPT] = "ppo" };
		bool ok = !strcmp(opt_stage, want[cfg.ex.type]) ||
			  (cfg.ex.type == LF_REC_PAIRWISE && !strcmp(opt_stage, "dpo")) ||
			  (cfg.ex.type == LF_REC_PROMPT && !strcmp(opt_stage, "sft"));
		if (!ok)
			lf_die("%s: a stream of %s records cannot make stage '%s' data (make the stream with "
			       "lf-template --stage %s)", name, lf_rec_type_name(cfg.ex.type), opt_stage, opt_stage);
	}
	cfg.width = cfg.ex.vocab <= 65536 ? 2 : 4;
	/* LLaMA-Factory: neat_packing turns packing on; an explicit packing
	 * takes 1 from cutoff_len; pre-training packs by default. */
	const struct lf_option *pk = lf_option_find(options, "packing");
	bool explicit_packing = opt_neat_packing || (pk->given && opt_packing);
	cfg.neat = opt_neat_packing;
	cfg.packing = explicit_packing || (!pk->given && cfg.ex.type == LF_REC_PT);
	if (cfg.neat && cfg.ex.type != LF_REC_SFT)
		lf_die_usage("--neat-packing is for sft streams only (as LLaMA-Factory)");
	if (cfg.packing && cfg.ex.type != LF_REC_SFT && cfg.ex.type != LF_REC_PT)
		lf_die_usage("--packing is for sft and pt streams; this stream holds %s records",
			     lf_rec_type_name(cfg.ex.type));
	cfg.ex.cutoff = (size_t)opt_cutoff_len - (explicit_packing ? 1 : 0);
	cfg.block = cfg.ex.type == LF_REC_PT ? cfg.ex.cutoff : cfg.ex.cutoff + 1;
	if (cfg.ex.cutoff < 1)
		lf_die_usage("option '--cutoff-len': too short for packing");
}

/* ---- the record spool: interleaved mixing and the validation split ----
 *
 * LLaMA-Factory mixes the datasets (interleave_datasets), then splits off
 * the validation rows (train_test_split), then preprocesses each split in
 * its order, batch by batch.  Both need every record first: they are
 * spooled to an unlinked file, indexed per dataset. */

static bool mix_interleave;
static enum lf_hf_stop mix_stop;
static double *probs;
static size_t nprobs, ndatasets;
static FILE *mix_spool; /* the records, as read (NULL: processed as they come) */
static uint64_t mix_spool_size;
static size_t mix_total;
static struct lf_arena arena;

struct spooled {
	uint64_t offset, len;
};
/* per dataset, its records in row order */
static struct dataset_rows {
	struct spooled *v;
	size_t n, cap;
} *mix_rows;

static void parse_mix(void)
{
	if (!opt_mix || !strcmp(opt_mix, "concat")) {
		if (opt_probs)
			lf_die_usage("option '--interleave-probs' goes with an interleave mix strategy");
		return;
	}
	static const char *const names[][2] = { { "interleave_under", "first_exhausted" },
						{ "interleave_over", "all_exhausted" },
						{ "interleave_once", "all_exhausted_without_replacement" } };
	for (size_t i = 0; i < 3; i++)
		if (!strcmp(opt_mix, names[i][0]) && lf_hf_stop_parse(names[i][1], &mix_stop) == 0)
			mix_interleave = true;
	if (!mix_interleave)
		lf_die_usage("option '--mix-strategy': '%s' is not concat, interleave_under, interleave_over or "
			     "interleave_once", opt_mix);
	for (const char *p = opt_probs; p && *p;) {
		char *end;
		errno = 0;
		double v = strtod(p, &end);
		if (errno || end == p || (*end && *end != ','))
			lf_die_usage("option '--interleave-probs': '%s' is not a list of numbers", opt_probs);
		probs = lf_realloc(probs, (nprobs + 1) * sizeof *probs);
		probs[nprobs++] = v;
		p = *end ? end + 1 : end;
	}
}

static void spool_record(const struct lf_token_record *r, const msgpack_object *o)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_object(&pk, *o);
	if (fwrite(sb.data, 1, sb.size, mix_spool) != sb.size)
		lf_die("cannot spool records for mixing: %s", strerror(errno));
	if (r->dataset >= ndatasets)
		lf_die("record of dataset %u: the header lists %zu datasets", r->dataset, ndatasets);
	struct dataset_rows *d = &mix_rows[r->dataset];
	if (d->n == d->cap) {
		d->cap = d->cap ? 2 * d->cap : 256;
		d->v = lf_realloc(d->v, d->cap * sizeof *d->v);
	}
	d->v[d->n++] = (struct spooled){ mix_spool_size, sb.size };
	mix_spool_size += sb.size;
	mix_total++;
	msgpack_sbuffer_destroy(&sb);
}

static void process_spooled(const struct lf_hf_pick *picks, const size_t *which, size_t n, const char *what)
{
	static char *buf;
	static size_t cap;
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	for (size_t i = 0; i < n; i++) {
		struct lf_hf_pick pk = picks[which ? which[i] : i];
		if (pk.dataset >= ndatasets || pk.row >= mix_rows[pk.dataset].n)
			lf_die("--mix-strategy %s: a pick past the end of dataset %zu", opt_mix, pk.dataset);
		struct spooled sp = mix_rows[pk.dataset].v[pk.row];
		if (sp.len > cap) {
			cap = sp.len;
			buf = lf_realloc(buf, cap);
		}
		size_t off = 0;
		struct lf_token_record r;
		lf_arena_reset(&arena);
		if (pread(fileno(mix_spool), buf, sp.len, (off_t)sp.offset) != (ssize_t)sp.len ||
		    msgpack_unpack_next(&u, buf, sp.len, &off) != MSGPACK_UNPACK_SUCCESS ||
		    lf_token_record_unpack(&u.data, cfg.ex.type, &arena, &r) < 0)
			lf_die("cannot read back spooled record %zu", i);
		process(&r, i);
		lf_progress("%s: %zu of %zu records", what, i, n);
	}
	batch_flush();
	msgpack_unpacked_destroy(&u);
}

/* The mixed order (interleave_datasets, or the datasets one after the
 * other), split, each split processed in its own order. */
static void run_spooled(void)
{
	if (fflush(mix_spool) != 0)
		lf_die("cannot spool records: %s", strerror(errno));
	struct lf_hf_pick *picks;
	size_t npicks;
	if (mix_interleave && ndatasets > 1) {
		size_t *lengths = lf_calloc(ndatasets, sizeof *lengths);
		for (size_t d = 0; d < ndatasets; d++)
			lengths[d] = mix_rows[d].n;
		if (lf_hf_interleave(lengths, ndatasets, nprobs ? probs : NULL, (uint64_t)opt_seed, mix_stop, &picks,
				     &npicks) < 0)
			lf_die("--mix-strategy %s: %s", opt_mix, lf_errmsg());
		free(lengths);
	} else {
		picks = lf_malloc((mix_total + 1) * sizeof *picks);
		npicks = 0;
		for (size_t d = 0; d < ndatasets; d++)
			for (size_t row = 0; row < mix_rows[d].n; row++)
				picks[npicks++] = (struct lf_hf_pick){ d, row };
	}
	if (opt_val_size > 0) {
		struct lf_hf_split split;
		if (lf_hf_train_test_split(npicks, opt_val_size, opt_val_size > 1, (uint64_t)opt_seed, &split) < 0)
			lf_die("--val-size %g: %s", opt_val_size, lf_errmsg());
		current = &val_out;
		process_spooled(picks, split.test, split.n_test, "validation");
		current = &train_out;
		process_spooled(picks, split.train, split.n_train, "train");
		lf_hf_split_free(&split);
	} else {
		process_spooled(picks, NULL, npicks, "mixing");
	}
	free(picks);
	for (size_t d = 0; d < ndatasets; d++)
		free(mix_rows[d].v);
	free(mix_rows);
	fclose(mix_spool);
}

/* The record's position in LLaMA-Factory's merged dataset, which decides its
 * preprocessing batch: concatenated datasets, rows counted from 0. */
static uint64_t ds_base, ds_last_row;
static uint32_t ds_current = UINT32_MAX;

static uint64_t concat_position(const struct lf_token_record *r)
{
	if (r->dataset != ds_current) {
		if (ds_current != UINT32_MAX)
			ds_base += ds_last_row + 1;
		ds_current = r->dataset;
	}
	ds_last_row = r->row;
	return ds_base + r->row;
}

int main(int argc, char **argv)
{
	lf_set_progname(argv[0]);
	lf_output_init_signals();
	int first = lf_options_parse(&tool, options, argc, argv);
	in_argc = argc;
	in_argv = argv;
	if (!opt_output)
		lf_die_usage("-o DIR is required (lf-pack writes a folder of shards and a manifest)");
	if (argc - first > 1)
		lf_die_usage("one INPUT at a time (lf-template mixes datasets into one stream)");
	if (opt_cutoff_len < 1 || opt_cutoff_len > INT32_MAX)
		lf_die_usage("option '--cutoff-len': N must be positive");
	if (opt_batch_size < 1)
		lf_die_usage("option '--preprocessing-batch-size': N must be positive");
	if (opt_seed < 0)
		lf_die_usage("option '--seed': N must not be negative");
	if (!(opt_val_size >= 0) || (opt_val_size > 1 && opt_val_size != floor(opt_val_size)))
		lf_die_usage("option '--val-size': a fraction below 1 or a whole number of examples");
	parse_mix();
	if (opt_shard_size)
		shard_limit = parse_size(opt_shard_size);

	struct lf_reader *rd = lf_reader_open(first < argc ? argv[first] : NULL);
	if (!rd)
		lf_die("%s", lf_errmsg());
	in_header = lf_reader_header(rd);
	read_header(rd);
	const char *tok_path = opt_tokenizer ? opt_tokenizer : opt_model;
	if (tok_path) {
		struct lf_tokenizer *t = lf_tokenizer_load(tok_path);
		int32_t ids[3];
		if (!t)
			lf_die("%s", lf_errmsg());
		if (lf_tokenizer_check_stream(t, in_header, ids) < 0)
			lf_die("%s: %s", lf_reader_name(rd), lf_errmsg());
		lf_tokenizer_free(t);
	}
	if (lf_outdir_open(&outdir, opt_output, "manifest.json") < 0)
		lf_die("%s", lf_errmsg());
	const msgpack_object *dsets = lf_mp_get(in_header, "datasets");
	ndatasets = dsets && dsets->type == MSGPACK_OBJECT_ARRAY ? dsets->via.array.size : 1;
	if (nprobs && nprobs != ndatasets)
		lf_die_usage("option '--interleave-probs': %zu probabilities for %zu datasets", nprobs, ndatasets);
	/* one dataset: nothing to mix, as LLaMA-Factory */
	if ((mix_interleave && ndatasets > 1) || opt_val_size > 0) {
		const char *path = lf_outdir_file(&outdir, "records.spool"); /* beside the output, unlinked */
		mix_spool = fopen(path, "w+b");
		if (!mix_spool)
			lf_die("%s: cannot create: %s", path, strerror(errno));
		unlink(path);
		mix_rows = lf_calloc(ndatasets, sizeof *mix_rows);
	}
	if (opt_shuffle) {
		shuffle_path = lf_strdup(lf_outdir_file(&outdir, "train.spool"));
		shuffle_spool = lf_shard_writer_open(shuffle_path, cfg.width, seqs_per_example(cfg.ex.type));
		if (!shuffle_spool)
			lf_die("%s", lf_errmsg());
	}

	const msgpack_object *o;
	int rc;
	uint64_t nrec = 0;
	while ((rc = lf_reader_next(rd, &o)) == 1) {
		struct lf_token_record r;
		lf_arena_reset(&arena);
		if (lf_token_record_unpack(o, cfg.ex.type, &arena, &r) < 0 || lf_example_check_ids(&r, cfg.ex.vocab) < 0)
			lf_die("%s: record %llu: %s", lf_reader_name(rd), (unsigned long long)nrec, lf_errmsg());
		nrec++;
		if (opt_max_samples >= 0 && r.row >= (uint64_t)opt_max_samples)
			continue;
		if (mix_spool)
			spool_record(&r, o);
		else
			process(&r, concat_position(&r));
		kept++;
		lf_progress("%llu records", (unsigned long long)nrec);
	}
	if (rc == 0 && mix_spool)
		run_spooled();
	if (rc < 0)
		lf_die("%s", lf_errmsg());
	batch_flush();
	lf_progress_done();
	lf_arena_free(&arena);
	free(probs);
	if (shuffle_spool)
		shuffle_train();
	split_close_file(&train_out);
	split_close_file(&val_out);
	if (!train_out.nfiles) /* an empty split still gets its (empty) shard */
		split_open_file(&train_out), split_close_file(&train_out);
	write_manifest();
	lf_reader_close(rd); /* in_header pointed into it */
	if (lf_outdir_commit(&outdir) < 0)
		lf_die("%s", lf_errmsg());
	if (opt_bundle && lf_shardset_bundle(opt_output, opt_bundle) < 0)
		lf_die("%s", lf_errmsg());
	lf_note("%s: %llu records -> %llu train examples (%llu tokens, %llu labelled)%s", opt_output,
		(unsigned long long)kept, (unsigned long long)train_out.all.examples,
		(unsigned long long)train_out.all.tokens, (unsigned long long)train_out.all.label_tokens,
		val_out.all.examples ? ", plus a validation split" : "");
	lf_log_close();
	return 0;
}

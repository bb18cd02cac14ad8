/*
 * shard-from-jsonl — test helper: a one-file shard (lf-shard(5)) from JSON
 * lines, so that examples given as ids and labels (as LLaMA-Factory's
 * preprocessing gives them, e.g. by a goldens script) can be trained on.
 *
 *   shard-from-jsonl KIND SPLIT CUTOFF_LEN VOCAB IN.jsonl OUT.shard
 *
 * Each line: {"input_ids": [...], "labels": [...]} and optionally
 * "segments": [lengths] and "neat": true for a packed row.  KIND is sft or
 * pt; the metadata holds what lf-train reads (kind, split, cutoff_len).
 */
#include "error.h"
#include "mp.h"
#include "shard.h"

#include <jansson.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int32_t *ints(json_t *a, uint32_t *n)
{
	*n = json_is_array(a) ? (uint32_t)json_array_size(a) : 0;
	int32_t *v = lf_malloc((size_t)*n * sizeof *v + 4);
	for (uint32_t i = 0; i < *n; i++)
		v[i] = (int32_t)json_integer_value(json_array_get(a, i));
	return v;
}

int main(int argc, char **argv)
{
	lf_set_progname(argv[0]);
	if (argc != 7)
		lf_die("usage: shard-from-jsonl KIND SPLIT CUTOFF_LEN VOCAB IN.jsonl OUT.shard");
	long vocab = atol(argv[4]);
	FILE *f = fopen(argv[5], "r");
	if (!f)
		lf_die("%s: cannot open", argv[5]);
	struct lf_shard_writer *w = lf_shard_writer_open(argv[6], vocab <= 65536 ? 2 : 4, 1);
	if (!w)
		lf_die("%s", lf_errmsg());
	char *line = NULL;
	size_t cap = 0;
	uint64_t row = 0;
	while (getline(&line, &cap, f) > 0) {
		json_error_t err;
		json_t *o = json_loads(line, 0, &err);
		if (!o)
			lf_die("%s: line %llu: %s", argv[5], (unsigned long long)row + 1, err.text);
		uint32_t n, nl, ns;
		int32_t *ids = ints(json_object_get(o, "input_ids"), &n), *labels = ints(json_object_get(o, "labels"), &nl);
		int32_t *segs = ints(json_object_get(o, "segments"), &ns);
		if (n != nl || n == 0)
			lf_die("%s: line %llu: input_ids and labels differ in length or are empty", argv[5],
			       (unsigned long long)row + 1);
		struct lf_shard_seq_in in = { ids, labels, n, (const uint32_t *)segs, ns,
					      json_is_true(json_object_get(o, "neat")) ? LF_SEQ_NEAT : 0, 0, row++ };
		if (lf_shard_writer_add(w, &in) < 0)
			lf_die("%s", lf_errmsg());
		free(ids);
		free(labels);
		free(segs);
		json_decref(o);
	}
	free(line);
	fclose(f);
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 6);
	lf_pk_kv_str(&pk, "format", "lf-shard");
	lf_pk_kv_uint(&pk, "version", LF_SHARD_VERSION);
	lf_pk_kv_str(&pk, "kind", argv[1]);
	lf_pk_kv_str(&pk, "split", argv[2]);
	lf_pk_kv_uint(&pk, "cutoff_len", (uint64_t)atol(argv[3]));
	lf_pk_kv_str(&pk, "created_by", "shard-from-jsonl");
	if (lf_shard_writer_finish(w, sb.data, sb.size) < 0)
		lf_die("%s", lf_errmsg());
	msgpack_sbuffer_destroy(&sb);
	return 0;
}

/*
 * test_shard.c — shard files written and read back: random examples of one
 * and two sequences, 2- and 4-byte ids, labels with exceptions, packed
 * lengths, shards spanning many checksum blocks; and the reader's refusal of
 * a block whose bytes changed, with the error naming the block.
 */
#include "check.h"
#include "error.h"
#include "mp.h"
#include "shard.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "/tmp/lf-test-shard-XXXXXX";

struct example {
	int32_t *ids[2], *labels[2];
	uint32_t n[2], *segs[2], nsegs[2], flags;
};

static uint64_t rng = 88172645463325252ull;

static uint32_t next(uint32_t bound)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng % bound);
}

static void make(struct example *e, unsigned k, uint32_t vocab, uint32_t maxlen)
{
	memset(e, 0, sizeof *e);
	e->flags = next(2);
	for (unsigned j = 0; j < k; j++) {
		uint32_t n = next(maxlen);
		e->n[j] = n;
		e->ids[j] = malloc((n + 1) * sizeof(int32_t));
		e->labels[j] = malloc((n + 1) * sizeof(int32_t));
		for (uint32_t t = 0; t < n; t++) {
			e->ids[j][t] = (int32_t)next(vocab);
			uint32_t r = next(10);
			e->labels[j][t] = r < 4 ? LF_IGNORE_INDEX : r < 9 ? e->ids[j][t] : (int32_t)next(vocab);
		}
		e->nsegs[j] = n ? next(5) : 0;
		e->segs[j] = malloc((e->nsegs[j] + 1) * sizeof(uint32_t));
		uint32_t left = n;
		for (uint32_t g = 0; g < e->nsegs[j]; g++) {
			e->segs[j][g] = left ? next(left + 1) : 0;
			left -= e->segs[j][g];
		}
	}
}

static void drop(struct example *e)
{
	for (int j = 0; j < 2; j++) {
		free(e->ids[j]);
		free(e->labels[j]);
		free(e->segs[j]);
	}
}

static int round_trip(const char *name, unsigned width, unsigned k, uint32_t vocab, uint32_t maxlen, size_t count)
{
	char path[256];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	struct example *ex = calloc(count + 1, sizeof *ex);
	struct lf_shard_writer *w = lf_shard_writer_open(path, width, k);
	if (!w)
		return -1;
	for (size_t i = 0; i < count; i++) {
		make(&ex[i], k, vocab, maxlen);
		struct lf_shard_seq_in in[2];
		for (unsigned j = 0; j < k; j++)
			in[j] = (struct lf_shard_seq_in){ ex[i].ids[j], ex[i].labels[j], ex[i].n[j], ex[i].segs[j],
							  ex[i].nsegs[j], ex[i].flags, (uint32_t)i, 7 * i };
		if (lf_shard_writer_add(w, in) < 0)
			return -1;
	}
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	lf_pk_kv_str(&pk, "format", "lf-shard");
	int rc = lf_shard_writer_finish(w, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
	if (rc < 0)
		return -1;
	struct lf_shard *s = lf_shard_open(path);
	if (!s)
		return -1;
	bool same = lf_shard_examples(s) == count && lf_shard_seqs_per_example(s) == k &&
		    lf_shard_token_width(s) == width && lf_shard_verify(s) == 0;
	int32_t *ids = malloc((maxlen + 1) * sizeof *ids), *labels = malloc((maxlen + 1) * sizeof *labels);
	for (size_t i = 0; same && i < count; i++) {
		for (unsigned j = 0; same && j < k; j++) {
			struct lf_shard_seq q;
			if (lf_shard_get(s, i, j, &q) < 0) {
				same = false;
				break;
			}
			lf_shard_seq_decode(&q, ids, labels);
			same = q.n == ex[i].n[j] && q.nsegments == ex[i].nsegs[j] && q.flags == ex[i].flags &&
			       q.dataset == i && q.row == 7 * i && !memcmp(ids, ex[i].ids[j], q.n * sizeof *ids) &&
			       !memcmp(labels, ex[i].labels[j], q.n * sizeof *labels);
			for (uint32_t g = 0; same && g < q.nsegments; g++)
				same = lf_shard_seq_segment(&q, g) == ex[i].segs[j][g];
		}
	}
	free(ids);
	free(labels);
	lf_shard_close(s);
	for (size_t i = 0; i < count; i++)
		drop(&ex[i]);
	free(ex);
	return same ? 0 : 1;
}

int main(void)
{
	if (!mkdtemp(dir))
		return 2;
	int rc = round_trip("a.shard", 2, 1, 65536, 300, 200);
	CHECK(rc == 0, "2-byte ids, one sequence per example: read back as written%s", rc < 0 ? lf_errmsg() : "");
	rc = round_trip("b.shard", 4, 2, 200000, 2000, 1500);
	CHECK(rc == 0, "4-byte ids, two sequences per example, several 1 MiB blocks: read back as written%s",
	      rc < 0 ? lf_errmsg() : "");
	rc = round_trip("c.shard", 2, 1, 100, 1, 3);
	CHECK(rc == 0, "empty sequences read back");
	rc = round_trip("d.shard", 2, 2, 100, 10, 0);
	CHECK(rc == 0, "a shard without examples opens");

	/* A changed byte in the third block: opening works (blocks are checked
	 * as they are used), reading an example there fails naming the block. */
	char path[256];
	snprintf(path, sizeof path, "%s/b.shard", dir);
	FILE *f = fopen(path, "r+b");
	fseek(f, 128 + 2 * LF_SHARD_BLOCK_SIZE + 1000, SEEK_SET);
	int c = fgetc(f);
	fseek(f, -1, SEEK_CUR);
	fputc(c ^ 1, f);
	fclose(f);
	struct lf_shard *s = lf_shard_open(path);
	CHECK(s != NULL, "a shard with a bad data block still opens");
	bool caught = false;
	for (uint64_t i = 0; s && i < lf_shard_examples(s) && !caught; i++) {
		struct lf_shard_seq q;
		for (unsigned j = 0; j < 2; j++)
			if (lf_shard_get(s, i, j, &q) < 0)
				caught = strstr(lf_errmsg(), "block 2") != NULL;
	}
	CHECK(caught, "reading the examples in the bad block fails, naming block 2: %s", lf_errmsg());
	CHECK(s && lf_shard_verify(s) < 0, "lf_shard_verify finds it too");
	lf_shard_close(s);
	const char *names[] = { "a.shard", "b.shard", "c.shard", "d.shard" };
	for (int i = 0; i < 4; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		unlink(path);
	}
	rmdir(dir);
	return check_done();
}

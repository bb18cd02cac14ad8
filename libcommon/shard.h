/*
 * shard.h — lf-pack's shard files: training examples the trainer maps into
 * memory (man 5 lf-shard).
 *
 * A shard holds examples of one kind; each example is a fixed number of
 * sequences (sft and pt 1; pairwise 2: chosen, rejected; kto 2: the example
 * and its KL completion; prompt 2: prompt and reference).  A sequence is its
 * token ids, its labels (a bit per token — label equals the id, or ignored —
 * plus the few positions whose label is another id) and, when packed, the
 * lengths of the examples packed into it.
 *
 * The writer streams: token data goes out as it comes, the per-sequence
 * index is spooled to an unlinked temporary file and copied behind the data,
 * then the metadata (a msgpack map the caller packs), the table of xxHash64
 * block checksums, and last the fixed header at offset 0.  The reader maps
 * the file, checks header, metadata and checksum table when opening and each
 * block the first time an example touches it, so no read path sees corrupted
 * bytes.
 */
#ifndef LF_SHARD_H
#define LF_SHARD_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LF_SHARD_MAGIC "LFSHARD"
#define LF_SHARD_VERSION 1
#define LF_SHARD_HEADER_SIZE 128
#define LF_SHARD_BLOCK_SIZE ((uint32_t)1 << 20)
#define LF_IGNORE_INDEX (-100)
/* Sequence flags. */
#define LF_SEQ_DESIRABLE 1u /* kto: the example's tag */
#define LF_SEQ_NEAT 2u      /* packed with attention kept inside each example */

/* One sequence to write: ids and labels aligned (labels -100 where ignored),
 * and for a packed sequence the lengths of its examples (padding, if any,
 * follows their sum). */
struct lf_shard_seq_in {
	const int32_t *ids;
	const int32_t *labels;
	uint32_t n;
	const uint32_t *segments;
	uint32_t nsegments;
	uint32_t flags;
	uint32_t dataset; /* where an unpacked example came from (UINT32_MAX: several) */
	uint64_t row;
};

struct lf_shard_writer;

/* Create a shard at path (the caller owns atomicity: lf-pack writes into a
 * temporary folder).  token_width 2 or 4 bytes. */
struct lf_shard_writer *lf_shard_writer_open(const char *path, unsigned token_width, unsigned seqs_per_example);
/* Add one example (seqs_per_example sequences).  -1 with lf_fail. */
int lf_shard_writer_add(struct lf_shard_writer *w, const struct lf_shard_seq_in *seqs);
uint64_t lf_shard_writer_examples(const struct lf_shard_writer *w);
uint64_t lf_shard_writer_bytes(const struct lf_shard_writer *w);
/* Finish with the metadata map (msgpack bytes).  Frees w.  -1 with lf_fail. */
int lf_shard_writer_finish(struct lf_shard_writer *w, const char *meta, size_t meta_len);
void lf_shard_writer_abort(struct lf_shard_writer *w);

/* Reading. */
struct lf_shard;

struct lf_shard_seq {
	const uint8_t *tokens; /* width bytes per id, little-endian */
	unsigned width;
	uint32_t n;
	const uint8_t *mask; /* bit t (LSB first): label t equals id t */
	const uint8_t *exceptions; /* nexceptions x (u32 position, i32 label), sorted */
	uint32_t nexceptions;
	const uint8_t *segments; /* nsegments x u32 lengths */
	uint32_t nsegments;
	uint32_t flags;
	uint32_t dataset;
	uint64_t row;
};

/* Open a shard file (mapped) or a shard inside a mapped bundle (base, size;
 * the caller keeps the mapping alive).  Checks the header, the metadata and
 * the checksum table.  NULL with lf_fail. */
struct lf_shard *lf_shard_open(const char *path);
struct lf_shard *lf_shard_open_mem(const char *name, const uint8_t *base, size_t size);
void lf_shard_close(struct lf_shard *s);
const char *lf_shard_name(const struct lf_shard *s);
uint64_t lf_shard_examples(const struct lf_shard *s);
unsigned lf_shard_seqs_per_example(const struct lf_shard *s);
unsigned lf_shard_token_width(const struct lf_shard *s);
uint64_t lf_shard_size(const struct lf_shard *s);
/* The metadata map (valid while the shard is open). */
const msgpack_object *lf_shard_meta(const struct lf_shard *s);
/* Sequence j of example i; checks the blocks it lies in.  -1 with lf_fail. */
int lf_shard_get(struct lf_shard *s, uint64_t example, unsigned j, struct lf_shard_seq *q);
/* Check every block.  -1 with lf_fail naming the first bad one. */
int lf_shard_verify(struct lf_shard *s);

int32_t lf_shard_seq_id(const struct lf_shard_seq *q, uint32_t t);
/* Decode ids and/or labels (either may be NULL) into n-element arrays. */
void lf_shard_seq_decode(const struct lf_shard_seq *q, int32_t *ids, int32_t *labels);
uint32_t lf_shard_seq_segment(const struct lf_shard_seq *q, uint32_t k);

#endif

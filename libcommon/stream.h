/*
 * stream.h — the lf stream: how lf tools pass records through pipes.
 *
 * A stream is a sequence of msgpack maps: one header, any number of records,
 * one trailer (man 5 lf-stream).  The writer produces it; the reader checks
 * it: a stream that ends without its trailer, carries garbage, or whose
 * trailer disagrees with what was read is an error naming the stream, the
 * record number and the byte offset.  A writer that dies while writing to a
 * pipe ends the stream with an error trailer, so the next tool reports the
 * upstream failure instead of treating a short stream as complete.
 */
#ifndef LF_STREAM_H
#define LF_STREAM_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "output.h"

#define LF_STREAM_FORMAT "lf-stream"
#define LF_STREAM_VERSION 1
/* The largest single header, record or trailer a reader accepts. */
#define LF_STREAM_MAX_OBJECT ((size_t)256 << 20)

struct lf_writer {
	struct lf_output out;
	struct lf_buf buf; /* packed bytes not yet written */
	msgpack_packer pk;
	uint64_t records;
	uint64_t skipped;
	int state; /* 0 header next, 1 records, 2 finished */
};

/* Open a stream for writing (path "-" or NULL: stdout, refused when stdout
 * is a terminal).  The caller then packs the header map with lf_writer_pk()
 * and calls lf_writer_end_header(), then packs each record and calls
 * lf_writer_end_record().  Returns NULL with lf_fail. */
struct lf_writer *lf_writer_open(const char *path);
msgpack_packer *lf_writer_pk(struct lf_writer *w);
void lf_writer_end_header(struct lf_writer *w);
void lf_writer_end_record(struct lf_writer *w);
/* A record packed elsewhere (one msgpack map), written and counted. */
void lf_writer_add_packed(struct lf_writer *w, const char *data, size_t len);
/* Per-dataset counts for the trailer (optional; nds may be 0). */
struct lf_stream_counts {
	uint64_t records;
	uint64_t skipped;
};
/* Write the trailer {records, skipped, status "ok"} and close (rename into
 * place).  Returns -1 with lf_fail. */
int lf_writer_finish(struct lf_writer *w, uint64_t skipped, const struct lf_stream_counts *per_dataset, size_t nds);
/* Abandon: remove a file output; a stdout output gets an error trailer. */
void lf_writer_abort(struct lf_writer *w, const char *message);

struct lf_reader;

/* Open a stream (path "-" or NULL: stdin) and read its header.  Returns NULL
 * with lf_fail. */
struct lf_reader *lf_reader_open(const char *path);
const msgpack_object *lf_reader_header(const struct lf_reader *r);
/* Next record: 1 and *rec set (valid until the next call), 0 at the end of a
 * complete stream (trailer read and checked), -1 on error (lf_fail). */
int lf_reader_next(struct lf_reader *r, const msgpack_object **rec);
/* The msgpack bytes of the record lf_reader_next last gave (valid as long
 * as it), to pass it on without packing it again. */
void lf_reader_raw(const struct lf_reader *r, const char **data, size_t *len);
/* The trailer, after lf_reader_next returned 0. */
const msgpack_object *lf_reader_trailer(const struct lf_reader *r);
const char *lf_reader_name(const struct lf_reader *r);
uint64_t lf_reader_records(const struct lf_reader *r);
void lf_reader_close(struct lf_reader *r);

/* Header helpers: the "kind" string (NULL when absent). */
const char *lf_header_kind(const msgpack_object *header, size_t *n);

/* A setting an upstream tool decided and recorded in the header (such as
 * train_on_prompt, which lf-template validates against the template): *value
 * is the header's, or the option's where the header has none.  An option
 * given (on the command line or in a recipe) with a different value than the
 * header's is refused: -1 with lf_fail naming both. */
struct lf_option;
int lf_header_bool_setting(const msgpack_object *header, const char *key, const struct lf_option *opt, bool *value);

#endif

/*
 * stream.c — writing and reading lf streams (see stream.h, man 5 lf-stream).
 */
#include "stream.h"
#include "error.h"
#include "mp.h"
#include "options.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FLUSH_AT (1u << 20)

/* ---- writer ---- */

static struct lf_writer *active_writer; /* for the die hook */

static int buf_write(void *data, const char *p, size_t n)
{
	lf_buf_add(data, p, n);
	return 0;
}

static int flush(struct lf_writer *w)
{
	if (w->buf.len && fwrite(w->buf.data, 1, w->buf.len, w->out.f) != w->buf.len)
		return lf_fail("%s: write failed: %s", w->out.path ? w->out.path : "<stdout>", strerror(errno));
	lf_buf_reset(&w->buf);
	return 0;
}

static void on_die(void)
{
	if (active_writer)
		lf_writer_abort(active_writer, lf_errmsg());
}

struct lf_writer *lf_writer_open(const char *path)
{
	bool to_stdout = !path || strcmp(path, "-") == 0;
	if (to_stdout && isatty(STDOUT_FILENO)) {
		lf_fail("refusing to write a binary stream to a terminal; pipe it into lf-inspect or use -o FILE");
		return NULL;
	}
	struct lf_writer *w = lf_calloc(1, sizeof *w);
	if (lf_output_open(&w->out, path) < 0) {
		free(w);
		return NULL;
	}
	msgpack_packer_init(&w->pk, &w->buf, buf_write);
	active_writer = w;
	lf_on_die(on_die);
	return w;
}

msgpack_packer *lf_writer_pk(struct lf_writer *w)
{
	return &w->pk;
}

void lf_writer_end_header(struct lf_writer *w)
{
	w->state = 1;
}

void lf_writer_end_record(struct lf_writer *w)
{
	w->records++;
	if (w->buf.len >= FLUSH_AT && flush(w) < 0)
		lf_die("%s", lf_errmsg());
}

void lf_writer_add_packed(struct lf_writer *w, const char *data, size_t len)
{
	lf_buf_add(&w->buf, data, len);
	lf_writer_end_record(w);
}

static void pack_trailer(struct lf_writer *w, uint64_t skipped, const char *error,
			 const struct lf_stream_counts *per, size_t nds)
{
	msgpack_packer *pk = &w->pk;
	msgpack_pack_map(pk, 4 + (error ? 1 : 0) + (nds ? 1 : 0));
	lf_pk_kv_bool(pk, "trailer", true);
	lf_pk_kv_uint(pk, "records", w->records);
	lf_pk_kv_uint(pk, "skipped", skipped);
	lf_pk_kv_str(pk, "status", error ? "error" : "ok");
	if (error)
		lf_pk_kv_str(pk, "error", error);
	if (nds) {
		lf_pk_str(pk, "datasets");
		msgpack_pack_array(pk, nds);
		for (size_t i = 0; i < nds; i++) {
			msgpack_pack_map(pk, 2);
			lf_pk_kv_uint(pk, "records", per[i].records);
			lf_pk_kv_uint(pk, "skipped", per[i].skipped);
		}
	}
}

int lf_writer_finish(struct lf_writer *w, uint64_t skipped, const struct lf_stream_counts *per_dataset, size_t nds)
{
	pack_trailer(w, skipped, NULL, per_dataset, nds);
	w->state = 2;
	int rc = flush(w);
	if (rc == 0)
		rc = lf_output_commit(&w->out);
	else
		lf_output_abort(&w->out);
	if (active_writer == w)
		active_writer = NULL;
	lf_buf_free(&w->buf);
	free(w);
	return rc;
}

void lf_writer_abort(struct lf_writer *w, const char *message)
{
	if (active_writer == w)
		active_writer = NULL;
	if (lf_output_is_stdout(&w->out)) {
		if (w->state == 0) { /* no header yet: a header-less stream is an error by itself */
			lf_buf_reset(&w->buf);
		} else if (w->state == 1) {
			pack_trailer(w, w->skipped, message ? message : "aborted", NULL, 0);
			w->state = 2;
		}
		flush(w);
		fflush(stdout);
	} else {
		lf_output_abort(&w->out);
	}
	lf_buf_free(&w->buf);
	free(w);
}

/* ---- reader ---- */

struct lf_reader {
	char *name;
	int fd;
	bool eof;
	uint8_t *buf;
	size_t cap, start, end; /* unread bytes are buf[start..end) */
	uint64_t consumed;      /* stream offset of buf[start] */
	uint64_t records;
	uint8_t *header_bytes;
	msgpack_unpacked header;
	msgpack_unpacked cur;
	const uint8_t *cur_raw; /* the bytes of cur */
	size_t cur_len;
	uint8_t *trailer_bytes;
	msgpack_unpacked trailer;
	bool done;
};

static int fill(struct lf_reader *r)
{
	if (r->start > 0 && (r->start == r->end || r->start > r->cap / 2)) {
		memmove(r->buf, r->buf + r->start, r->end - r->start);
		r->end -= r->start;
		r->start = 0;
	}
	if (r->end == r->cap) {
		r->cap = r->cap ? r->cap * 2 : (1u << 20);
		r->buf = lf_realloc(r->buf, r->cap);
	}
	ssize_t n;
	do
		n = read(r->fd, r->buf + r->end, r->cap - r->end);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return lf_fail("%s: read failed: %s", r->name, strerror(errno));
	if (n == 0)
		r->eof = true;
	r->end += (size_t)n;
	return 0;
}

/* Where the next object lies: 1 found (*len), 0 clean end of input, -1 error. */
static int next_object(struct lf_reader *r, size_t *len, const char *what)
{
	for (;;) {
		size_t bad_at = 0;
		const char *why = NULL;
		int64_t span = lf_mp_span(r->buf + r->start, r->end - r->start, LF_STREAM_MAX_OBJECT, &bad_at, &why);
		if (span > 0) {
			*len = (size_t)span;
			return 1;
		}
		if (span < 0)
			return lf_fail("%s: %s (byte offset %llu): %s", r->name, what,
				       (unsigned long long)(r->consumed + bad_at), why);
		if (r->eof) {
			if (r->start == r->end)
				return 0;
			return lf_fail("%s: %s (byte offset %llu): input ends inside it (truncated stream)", r->name,
				       what, (unsigned long long)r->consumed);
		}
		if (fill(r) < 0)
			return -1;
	}
}

static int unpack_at(struct lf_reader *r, msgpack_unpacked *u, const uint8_t *p, size_t len, const char *what)
{
	size_t off = 0;
	msgpack_unpacked_destroy(u);
	msgpack_unpacked_init(u);
	if (msgpack_unpack_next(u, (const char *)p, len, &off) != MSGPACK_UNPACK_SUCCESS || off != len)
		return lf_fail("%s: %s (byte offset %llu): malformed msgpack", r->name, what,
			       (unsigned long long)r->consumed);
	if (u->data.type != MSGPACK_OBJECT_MAP) {
		if (r->consumed == 0)
			return lf_fail("%s: not an lf stream (it does not start with an lf-stream header)", r->name);
		return lf_fail("%s: %s (byte offset %llu): not a map", r->name, what, (unsigned long long)r->consumed);
	}
	return 0;
}

/* Copy the next object out of the buffer (header and trailer outlive it). */
static int read_owned(struct lf_reader *r, uint8_t **bytes, msgpack_unpacked *u, const char *what)
{
	size_t len;
	int rc = next_object(r, &len, what);
	if (rc <= 0)
		return rc;
	*bytes = lf_malloc(len);
	memcpy(*bytes, r->buf + r->start, len);
	if (unpack_at(r, u, *bytes, len, what) < 0)
		return -1;
	r->start += len;
	r->consumed += len;
	return 1;
}

static int check_header(struct lf_reader *r)
{
	const msgpack_object *h = &r->header.data;
	const msgpack_object *fmt = lf_mp_get(h, "format");
	if (!fmt || !lf_mp_str_is(fmt, LF_STREAM_FORMAT))
		return lf_fail("%s: not an lf stream (it does not start with an lf-stream header)", r->name);
	uint64_t version = 0;
	if (lf_mp_get_uint(h, "version", &version, true) < 0)
		return lf_fail_prefix("%s: header", r->name);
	if (version > LF_STREAM_VERSION)
		return lf_fail("%s: stream version %llu is newer than this lf understands (%d)", r->name,
			       (unsigned long long)version, LF_STREAM_VERSION);
	const char *kind;
	if (lf_mp_get_str(h, "kind", &kind, NULL, true) < 0)
		return lf_fail_prefix("%s: header", r->name);
	return 0;
}

struct lf_reader *lf_reader_open(const char *path)
{
	struct lf_reader *r = lf_calloc(1, sizeof *r);
	msgpack_unpacked_init(&r->header);
	msgpack_unpacked_init(&r->cur);
	msgpack_unpacked_init(&r->trailer);
	if (!path || strcmp(path, "-") == 0) {
		r->name = lf_strdup("<stdin>");
		r->fd = STDIN_FILENO;
	} else {
		r->name = lf_strdup(path);
		r->fd = open(path, O_RDONLY | O_CLOEXEC);
		if (r->fd < 0) {
			lf_fail("%s: cannot open: %s", path, strerror(errno));
			lf_reader_close(r);
			return NULL;
		}
	}
	int rc = read_owned(r, &r->header_bytes, &r->header, "stream header");
	if (rc == 0)
		lf_fail("%s: empty input, no stream header (did the tool writing it fail?)", r->name);
	if (rc <= 0 || check_header(r) < 0) {
		lf_reader_close(r);
		return NULL;
	}
	return r;
}

const msgpack_object *lf_reader_header(const struct lf_reader *r)
{
	return &r->header.data;
}

static bool is_trailer(const msgpack_object *o)
{
	return o->type == MSGPACK_OBJECT_MAP && o->via.map.size > 0 && lf_mp_key_is(&o->via.map.ptr[0].key, "trailer");
}

static int check_trailer(struct lf_reader *r)
{
	const msgpack_object *t = &r->trailer.data;
	const char *status = NULL;
	size_t n = 0;
	if (lf_mp_get_str(t, "status", &status, &n, true) < 0)
		return lf_fail_prefix("%s: trailer", r->name);
	if (!(n == 2 && memcmp(status, "ok", 2) == 0)) {
		const char *msg = "no reason given";
		size_t mn = strlen(msg);
		lf_mp_get_str(t, "error", &msg, &mn, false);
		return lf_fail("%s: the tool that wrote this stream failed after %llu records: %.*s", r->name,
			       (unsigned long long)r->records, (int)mn, msg);
	}
	uint64_t records = 0;
	if (lf_mp_get_uint(t, "records", &records, true) < 0)
		return lf_fail_prefix("%s: trailer", r->name);
	if (records != r->records)
		return lf_fail("%s: trailer counts %llu records but the stream holds %llu", r->name,
			       (unsigned long long)records, (unsigned long long)r->records);
	size_t len;
	int rc = next_object(r, &len, "data after the trailer");
	if (rc < 0)
		return -1;
	if (rc > 0)
		return lf_fail("%s: data after the trailer (byte offset %llu)", r->name,
			       (unsigned long long)r->consumed);
	return 0;
}

int lf_reader_next(struct lf_reader *r, const msgpack_object **rec)
{
	if (r->done)
		return 0;
	char what[64];
	snprintf(what, sizeof what, "stream record %llu", (unsigned long long)r->records);
	size_t len;
	int rc = next_object(r, &len, what);
	if (rc < 0)
		return -1;
	if (rc == 0)
		return lf_fail("%s: stream ends after %llu records without a trailer (the tool writing it stopped early)",
			       r->name, (unsigned long long)r->records);
	if (unpack_at(r, &r->cur, r->buf + r->start, len, what) < 0)
		return -1;
	if (is_trailer(&r->cur.data)) {
		r->trailer_bytes = lf_malloc(len);
		memcpy(r->trailer_bytes, r->buf + r->start, len);
		unpack_at(r, &r->trailer, r->trailer_bytes, len, "stream trailer");
		r->start += len;
		r->consumed += len;
		r->done = true;
		return check_trailer(r) < 0 ? -1 : 0;
	}
	/* The record's strings point into buf: keep those bytes until the next call. */
	*rec = &r->cur.data;
	r->cur_raw = r->buf + r->start;
	r->cur_len = len;
	r->start += len;
	r->consumed += len;
	r->records++;
	return 1;
}

void lf_reader_raw(const struct lf_reader *r, const char **data, size_t *len)
{
	*data = (const char *)r->cur_raw;
	*len = r->cur_len;
}

const msgpack_object *lf_reader_trailer(const struct lf_reader *r)
{
	return r->done ? &r->trailer.data : NULL;
}

const char *lf_reader_name(const struct lf_reader *r)
{
	return r->name;
}

uint64_t lf_reader_records(const struct lf_reader *r)
{
	return r->records;
}

void lf_reader_close(struct lf_reader *r)
{
	if (!r)
		return;
	if (r->fd > STDIN_FILENO)
		close(r->fd);
	msgpack_unpacked_destroy(&r->header);
	msgpack_unpacked_destroy(&r->cur);
	msgpack_unpacked_destroy(&r->trailer);
	free(r->header_bytes);
	free(r->trailer_bytes);
	free(r->buf);
	free(r->name);
	free(r);
}

const char *lf_header_kind(const msgpack_object *header, size_t *n)
{
	const char *s = NULL;
	if (lf_mp_get_str(header, "kind", &s, n, false) <= 0)
		return NULL;
	return s;
}

int lf_header_bool_setting(const msgpack_object *header, const char *key, const struct lf_option *opt, bool *value)
{
	bool recorded;
	int has = lf_mp_get_bool(header, key, &recorded, false);
	if (has < 0)
		return lf_fail_prefix("stream header");
	bool given = opt && opt->given;
	bool mine = opt ? *(const bool *)opt->value : false;
	if (has == 0) {
		*value = mine;
		return 0;
	}
	if (given && mine != recorded)
		return lf_fail("option '--%s=%s' contradicts the stream, made with %s=%s (set it where the stream "
			       "is made, e.g. lf-template)",
			       opt->name, mine ? "true" : "false", key, recorded ? "true" : "false");
	*value = recorded;
	return 0;
}

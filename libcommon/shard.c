/*
 * shard.c — writing and reading lf shard files (see shard.h, man 5 lf-shard).
 *
 * Layout, all integers little-endian:
 *   [0, 128)        fixed header (magic, version, widths, section offsets,
 *                   counts, and an xxHash64 of itself + metadata + table)
 *   data            per sequence, 8-byte aligned: ids, label mask, padding
 *                   to 4, label exceptions (u32 position, i32 label),
 *                   segment lengths (u32)
 *   index           per sequence 40 bytes: u64 data offset, u64 row,
 *                   u32 length, u32 exceptions, u32 segments, u32 flags,
 *                   u32 dataset, u32 zero
 *   metadata        msgpack map
 *   checksum table  xxHash64 of each 1 MiB block of [128, metadata)
 */
#include "shard.h"
#include "error.h"
#include "mp.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define INDEX_ENTRY 40

static void put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p)
{
	return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

/* ---- writing ---- */

struct lf_shard_writer {
	char *path;
	int fd;
	unsigned width, seqs_per_example;
	uint8_t *block; /* the body block being filled */
	size_t block_len;
	uint64_t pos; /* file offset of the next body byte */
	uint64_t *sums;
	size_t nsums, cap_sums;
	FILE *index; /* spooled index entries */
	uint64_t nseqs, examples;
	uint8_t *scratch;
	size_t scratch_cap;
	bool failed;
};

static int write_all(int fd, const void *p, size_t n, const char *path)
{
	const uint8_t *b = p;
	while (n) {
		ssize_t k = write(fd, b, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return lf_fail("%s: write failed: %s", path, strerror(errno));
		b += k;
		n -= (size_t)k;
	}
	return 0;
}

static int flush_block(struct lf_shard_writer *w)
{
	if (!w->block_len)
		return 0;
	if (w->nsums == w->cap_sums) {
		w->cap_sums = w->cap_sums ? 2 * w->cap_sums : 64;
		w->sums = lf_realloc(w->sums, w->cap_sums * sizeof *w->sums);
	}
	w->sums[w->nsums++] = XXH64(w->block, w->block_len, 0);
	int rc = write_all(w->fd, w->block, w->block_len, w->path);
	w->block_len = 0;
	return rc;
}

/* Append body bytes (data or index), checksummed block by block. */
static int body_write(struct lf_shard_writer *w, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n) {
		size_t k = LF_SHARD_BLOCK_SIZE - w->block_len;
		if (k > n)
			k = n;
		memcpy(w->block + w->block_len, b, k);
		w->block_len += k;
		w->pos += k;
		b += k;
		n -= k;
		if (w->block_len == LF_SHARD_BLOCK_SIZE && flush_block(w) < 0)
			return -1;
	}
	return 0;
}

static int body_pad(struct lf_shard_writer *w, unsigned align)
{
	static const uint8_t zero[8];
	size_t k = (size_t)((align - w->pos % align) % align);
	return k ? body_write(w, zero, k) : 0;
}

struct lf_shard_writer *lf_shard_writer_open(const char *path, unsigned token_width, unsigned seqs_per_example)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
	if (fd < 0) {
		lf_fail("%s: cannot create: %s", path, strerror(errno));
		return NULL;
	}
	/* the index spool lives beside the shard (same file system, which has
	 * room for the shard), unlinked at once */
	size_t n = strlen(path) + 8;
	char *index_path = lf_malloc(n);
	snprintf(index_path, n, "%s.index", path);
	FILE *index = fopen(index_path, "w+b");
	int e = errno;
	if (index)
		unlink(index_path);
	free(index_path);
	if (!index) {
		lf_fail("%s: cannot create a temporary file for the index: %s", path, strerror(e));
		close(fd);
		unlink(path);
		return NULL;
	}
	struct lf_shard_writer *w = lf_calloc(1, sizeof *w);
	w->path = lf_strdup(path);
	w->fd = fd;
	w->index = index;
	w->width = token_width;
	w->seqs_per_example = seqs_per_example;
	w->block = lf_malloc(LF_SHARD_BLOCK_SIZE);
	uint8_t zero[LF_SHARD_HEADER_SIZE] = { 0 };
	if (write_all(fd, zero, sizeof zero, path) < 0) {
		lf_shard_writer_abort(w);
		return NULL;
	}
	w->pos = LF_SHARD_HEADER_SIZE;
	return w;
}

static int add_seq(struct lf_shard_writer *w, const struct lf_shard_seq_in *s)
{
	uint32_t n = s->n, nexc = 0;
	size_t masklen = (n + 7) / 8;
	size_t need = (size_t)n * w->width + masklen + 3 + 8 * (size_t)n + 4 * (size_t)s->nsegments;
	if (need > w->scratch_cap) {
		w->scratch_cap = need * 2;
		w->scratch = lf_realloc(w->scratch, w->scratch_cap);
	}
	uint8_t *p = w->scratch;
	int64_t limit = w->width == 2 ? 65535 : INT32_MAX;
	for (uint32_t t = 0; t < n; t++) {
		if (s->ids[t] < 0 || s->ids[t] > limit)
			return lf_fail("%s: token id %d does not fit the shard's %u-byte ids", w->path, (int)s->ids[t],
				       w->width);
		if (w->width == 2) {
			p[2 * t] = (uint8_t)s->ids[t];
			p[2 * t + 1] = (uint8_t)(s->ids[t] >> 8);
		} else {
			put_u32(p + 4 * t, (uint32_t)s->ids[t]);
		}
	}
	p += (size_t)n * w->width;
	uint8_t *mask = p;
	memset(mask, 0, masklen);
	p += masklen;
	while ((uintptr_t)(p - w->scratch) % 4)
		*p++ = 0;
	uint8_t *exc = p;
	for (uint32_t t = 0; t < n; t++) {
		if (s->labels[t] == s->ids[t]) {
			mask[t / 8] |= (uint8_t)(1u << (t % 8));
		} else if (s->labels[t] != LF_IGNORE_INDEX) {
			put_u32(exc + 8 * nexc, t);
			put_u32(exc + 8 * nexc + 4, (uint32_t)s->labels[t]);
			nexc++;
		}
	}
	p = exc + 8 * (size_t)nexc;
	for (uint32_t k = 0; k < s->nsegments; k++, p += 4)
		put_u32(p, s->segments[k]);
	if (body_pad(w, 8) < 0)
		return -1;
	uint8_t entry[INDEX_ENTRY];
	put_u64(entry, w->pos);
	put_u64(entry + 8, s->row);
	put_u32(entry + 16, n);
	put_u32(entry + 20, nexc);
	put_u32(entry + 24, s->nsegments);
	put_u32(entry + 28, s->flags);
	put_u32(entry + 32, s->dataset);
	put_u32(entry + 36, 0);
	if (fwrite(entry, 1, sizeof entry, w->index) != sizeof entry)
		return lf_fail("%s: cannot spool the index: %s", w->path, strerror(errno));
	w->nseqs++;
	return body_write(w, w->scratch, (size_t)(p - w->scratch));
}

int lf_shard_writer_add(struct lf_shard_writer *w, const struct lf_shard_seq_in *seqs)
{
	for (unsigned j = 0; j < w->seqs_per_example; j++) {
		if (add_seq(w, &seqs[j]) < 0) {
			w->failed = true;
			return -1;
		}
	}
	w->examples++;
	return 0;
}

uint64_t lf_shard_writer_examples(const struct lf_shard_writer *w)
{
	return w->examples;
}

uint64_t lf_shard_writer_bytes(const struct lf_shard_writer *w)
{
	return w->pos + (uint64_t)w->nseqs * INDEX_ENTRY;
}

int lf_shard_writer_finish(struct lf_shard_writer *w, const char *meta, size_t meta_len)
{
	if (w->failed) {
		lf_shard_writer_abort(w);
		return lf_fail("shard writer used after a failure");
	}
	if (body_pad(w, 8) < 0)
		goto fail;
	uint64_t index_offset = w->pos;
	if (fflush(w->index) != 0 || fseek(w->index, 0, SEEK_SET) != 0) {
		lf_fail("%s: cannot read back the index: %s", w->path, strerror(errno));
		goto fail;
	}
	uint8_t buf[INDEX_ENTRY * 256];
	size_t k;
	while ((k = fread(buf, 1, sizeof buf, w->index)) > 0)
		if (body_write(w, buf, k) < 0)
			goto fail;
	if (ferror(w->index)) {
		lf_fail("%s: cannot read back the index", w->path);
		goto fail;
	}
	if (w->pos - index_offset != w->nseqs * INDEX_ENTRY) {
		lf_fail("%s: the spooled index is short", w->path);
		goto fail;
	}
	uint64_t meta_offset = w->pos;
	if (flush_block(w) < 0 || write_all(w->fd, meta, meta_len, w->path) < 0)
		goto fail;
	uint64_t table_offset = meta_offset + meta_len;
	uint8_t *table = lf_malloc(8 * w->nsums + 1);
	for (size_t b = 0; b < w->nsums; b++)
		put_u64(table + 8 * b, w->sums[b]);
	int rc = write_all(w->fd, table, 8 * w->nsums, w->path);
	uint8_t h[LF_SHARD_HEADER_SIZE] = { 0 };
	memcpy(h, LF_SHARD_MAGIC, sizeof LF_SHARD_MAGIC);
	put_u32(h + 8, LF_SHARD_VERSION);
	put_u32(h + 12, w->width);
	put_u64(h + 16, table_offset + 8 * w->nsums);
	put_u64(h + 24, w->examples);
	put_u32(h + 32, w->seqs_per_example);
	put_u32(h + 36, LF_SHARD_BLOCK_SIZE);
	put_u64(h + 40, index_offset);
	put_u64(h + 48, meta_offset);
	put_u64(h + 56, meta_len);
	put_u64(h + 64, table_offset);
	put_u64(h + 72, w->nsums);
	put_u64(h + 80, LF_SHARD_HEADER_SIZE);
	XXH64_state_t *st = XXH64_createState();
	XXH64_reset(st, 0);
	XXH64_update(st, h, 120);
	XXH64_update(st, meta, meta_len);
	XXH64_update(st, table, 8 * w->nsums);
	put_u64(h + 120, XXH64_digest(st));
	XXH64_freeState(st);
	free(table);
	if (rc < 0)
		goto fail;
	if (pwrite(w->fd, h, sizeof h, 0) != (ssize_t)sizeof h || fsync(w->fd) != 0) {
		lf_fail("%s: write failed: %s", w->path, strerror(errno));
		goto fail;
	}
	if (close(w->fd) != 0) {
		w->fd = -1;
		lf_fail("%s: write failed: %s", w->path, strerror(errno));
		goto fail;
	}
	w->fd = -1;
	fclose(w->index);
	free(w->block);
	free(w->sums);
	free(w->scratch);
	free(w->path);
	free(w);
	return 0;
fail:
	lf_shard_writer_abort(w);
	return -1;
}

void lf_shard_writer_abort(struct lf_shard_writer *w)
{
	if (!w)
		return;
	if (w->fd >= 0)
		close(w->fd);
	unlink(w->path);
	if (w->index)
		fclose(w->index);
	free(w->block);
	free(w->sums);
	free(w->scratch);
	free(w->path);
	free(w);
}

/* ---- reading ---- */

struct lf_shard {
	char *name;
	const uint8_t *base;
	size_t size;
	bool mapped; /* we own the mapping */
	unsigned width, seqs_per_example;
	uint64_t examples, index_offset, meta_offset, table_offset, nblocks;
	uint8_t *checked; /* per block: 1 when its checksum was verified */
	msgpack_unpacked meta;
};

static struct lf_shard *open_fail(struct lf_shard *s)
{
	if (s->mapped)
		munmap((void *)s->base, s->size);
	msgpack_unpacked_destroy(&s->meta);
	free(s->checked);
	free(s->name);
	free(s);
	return NULL;
}

static struct lf_shard *shard_parse(struct lf_shard *s)
{
	const uint8_t *h = s->base;
	const char *name = s->name;
	msgpack_unpacked_init(&s->meta);
	if (s->size < LF_SHARD_HEADER_SIZE || memcmp(h, LF_SHARD_MAGIC, sizeof LF_SHARD_MAGIC) != 0) {
		lf_fail("%s: not an lf shard (no LFSHARD magic)", name);
		return open_fail(s);
	}
	uint32_t version = get_u32(h + 8);
	if (version != LF_SHARD_VERSION) {
		lf_fail("%s: shard version %u, this program reads version %u", name, version, LF_SHARD_VERSION);
		return open_fail(s);
	}
	uint64_t file_size = get_u64(h + 16);
	if (file_size != s->size) {
		lf_fail("%s: truncated or extended: the header says %llu bytes, the file has %llu", name,
			(unsigned long long)file_size, (unsigned long long)s->size);
		return open_fail(s);
	}
	s->width = get_u32(h + 12);
	s->examples = get_u64(h + 24);
	s->seqs_per_example = get_u32(h + 32);
	uint32_t block_size = get_u32(h + 36);
	s->index_offset = get_u64(h + 40);
	s->meta_offset = get_u64(h + 48);
	uint64_t meta_len = get_u64(h + 56);
	s->table_offset = get_u64(h + 64);
	s->nblocks = get_u64(h + 72);
	uint64_t body = s->meta_offset - LF_SHARD_HEADER_SIZE;
	bool sane = (s->width == 2 || s->width == 4) && s->seqs_per_example >= 1 && s->seqs_per_example <= 2 &&
		    block_size == LF_SHARD_BLOCK_SIZE && get_u64(h + 80) == LF_SHARD_HEADER_SIZE &&
		    s->index_offset >= LF_SHARD_HEADER_SIZE && s->meta_offset >= s->index_offset &&
		    s->meta_offset <= s->size && meta_len <= s->size - s->meta_offset &&
		    s->table_offset == s->meta_offset + meta_len && s->nblocks <= s->size / 8 &&
		    s->table_offset + 8 * s->nblocks == s->size &&
		    s->nblocks == (body + LF_SHARD_BLOCK_SIZE - 1) / LF_SHARD_BLOCK_SIZE &&
		    s->examples <= (s->meta_offset - s->index_offset) / INDEX_ENTRY &&
		    s->examples * s->seqs_per_example * INDEX_ENTRY == s->meta_offset - s->index_offset;
	if (!sane) {
		lf_fail("%s: corrupted shard header (inconsistent sizes or offsets)", name);
		return open_fail(s);
	}
	XXH64_state_t *st = XXH64_createState();
	XXH64_reset(st, 0);
	XXH64_update(st, h, 120);
	XXH64_update(st, s->base + s->meta_offset, meta_len + 8 * s->nblocks);
	uint64_t sum = XXH64_digest(st);
	XXH64_freeState(st);
	if (sum != get_u64(h + 120)) {
		lf_fail("%s: corrupted shard: the checksum of its header, metadata and block table does not match",
			name);
		return open_fail(s);
	}
	size_t off = 0;
	if (msgpack_unpack_next(&s->meta, (const char *)s->base + s->meta_offset, meta_len, &off) !=
		    MSGPACK_UNPACK_SUCCESS ||
	    off != meta_len || s->meta.data.type != MSGPACK_OBJECT_MAP || !lf_mp_str_is(lf_mp_get(&s->meta.data, "format"), "lf-shard")) {
		lf_fail("%s: corrupted shard metadata", name);
		return open_fail(s);
	}
	s->checked = lf_calloc(s->nblocks + 1, 1);
	return s;
}

struct lf_shard *lf_shard_open(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		lf_fail("%s: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		lf_fail("%s: not a regular file", path);
		return NULL;
	}
	if (st.st_size < LF_SHARD_HEADER_SIZE) {
		close(fd);
		lf_fail("%s: not an lf shard (%lld bytes, shorter than a header)", path, (long long)st.st_size);
		return NULL;
	}
	void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (m == MAP_FAILED) {
		lf_fail("%s: cannot map: %s", path, strerror(errno));
		return NULL;
	}
	struct lf_shard *s = lf_calloc(1, sizeof *s);
	s->name = lf_strdup(path);
	s->base = m;
	s->size = (size_t)st.st_size;
	s->mapped = true;
	return shard_parse(s);
}

struct lf_shard *lf_shard_open_mem(const char *name, const uint8_t *base, size_t size)
{
	struct lf_shard *s = lf_calloc(1, sizeof *s);
	s->name = lf_strdup(name);
	s->base = base;
	s->size = size;
	return shard_parse(s);
}

void lf_shard_close(struct lf_shard *s)
{
	if (!s)
		return;
	if (s->mapped)
		munmap((void *)s->base, s->size);
	msgpack_unpacked_destroy(&s->meta);
	free(s->checked);
	free(s->name);
	free(s);
}

const char *lf_shard_name(const struct lf_shard *s)
{
	return s->name;
}

uint64_t lf_shard_examples(const struct lf_shard *s)
{
	return s->examples;
}

unsigned lf_shard_seqs_per_example(const struct lf_shard *s)
{
	return s->seqs_per_example;
}

unsigned lf_shard_token_width(const struct lf_shard *s)
{
	return s->width;
}

uint64_t lf_shard_size(const struct lf_shard *s)
{
	return s->size;
}

const msgpack_object *lf_shard_meta(const struct lf_shard *s)
{
	return &s->meta.data;
}

static int check_block(struct lf_shard *s, uint64_t b)
{
	if (__atomic_load_n(&s->checked[b], __ATOMIC_ACQUIRE))
		return 0;
	uint64_t start = LF_SHARD_HEADER_SIZE + b * LF_SHARD_BLOCK_SIZE;
	uint64_t end = start + LF_SHARD_BLOCK_SIZE;
	if (end > s->meta_offset)
		end = s->meta_offset;
	uint64_t want = get_u64(s->base + s->table_offset + 8 * b);
	if (XXH64(s->base + start, end - start, 0) != want)
		return lf_fail("%s: corrupted shard: block %llu (bytes %llu-%llu) fails its checksum", s->name,
			       (unsigned long long)b, (unsigned long long)start, (unsigned long long)end);
	__atomic_store_n(&s->checked[b], 1, __ATOMIC_RELEASE);
	return 0;
}

/* Check the blocks covering [start, end) of the body. */
static int check_range(struct lf_shard *s, uint64_t start, uint64_t end)
{
	if (end <= start)
		return 0;
	for (uint64_t b = (start - LF_SHARD_HEADER_SIZE) / LF_SHARD_BLOCK_SIZE;
	     b <= (end - 1 - LF_SHARD_HEADER_SIZE) / LF_SHARD_BLOCK_SIZE; b++)
		if (check_block(s, b) < 0)
			return -1;
	return 0;
}

int lf_shard_verify(struct lf_shard *s)
{
	for (uint64_t b = 0; b < s->nblocks; b++)
		if (check_block(s, b) < 0)
			return -1;
	return 0;
}

int lf_shard_get(struct lf_shard *s, uint64_t example, unsigned j, struct lf_shard_seq *q)
{
	if (example >= s->examples || j >= s->seqs_per_example)
		return lf_fail("%s: no example %llu sequence %u", s->name, (unsigned long long)example, j);
	uint64_t at = s->index_offset + (example * s->seqs_per_example + j) * INDEX_ENTRY;
	if (check_range(s, at, at + INDEX_ENTRY) < 0)
		return -1;
	const uint8_t *e = s->base + at;
	uint64_t off = get_u64(e);
	memset(q, 0, sizeof *q);
	q->row = get_u64(e + 8);
	q->n = get_u32(e + 16);
	q->nexceptions = get_u32(e + 20);
	q->nsegments = get_u32(e + 24);
	q->flags = get_u32(e + 28);
	q->dataset = get_u32(e + 32);
	q->width = s->width;
	uint64_t toks = (uint64_t)q->n * s->width, mask = ((uint64_t)q->n + 7) / 8;
	uint64_t exc = (off + toks + mask + 3) / 4 * 4;
	uint64_t end = exc + 8 * (uint64_t)q->nexceptions + 4 * (uint64_t)q->nsegments;
	if (off < LF_SHARD_HEADER_SIZE || off % 8 || end > s->index_offset)
		return lf_fail("%s: corrupted shard: example %llu points outside the data", s->name,
			       (unsigned long long)example);
	if (check_range(s, off, end) < 0)
		return -1;
	q->tokens = s->base + off;
	q->mask = q->tokens + toks;
	q->exceptions = s->base + exc;
	q->segments = q->exceptions + 8 * (size_t)q->nexceptions;
	for (uint32_t k = 0; k < q->nexceptions; k++)
		if (get_u32(q->exceptions + 8 * k) >= q->n)
			return lf_fail("%s: corrupted shard: example %llu has a label past its end", s->name,
				       (unsigned long long)example);
	uint64_t sum = 0;
	for (uint32_t k = 0; k < q->nsegments; k++)
		sum += get_u32(q->segments + 4 * k);
	if (sum > q->n)
		return lf_fail("%s: corrupted shard: example %llu's packed lengths exceed its length", s->name,
			       (unsigned long long)example);
	return 0;
}

int32_t lf_shard_seq_id(const struct lf_shard_seq *q, uint32_t t)
{
	if (q->width == 2)
		return (int32_t)(q->tokens[2 * t] | (uint32_t)q->tokens[2 * t + 1] << 8);
	return (int32_t)get_u32(q->tokens + 4 * t);
}

void lf_shard_seq_decode(const struct lf_shard_seq *q, int32_t *ids, int32_t *labels)
{
	for (uint32_t t = 0; t < q->n; t++) {
		int32_t id = lf_shard_seq_id(q, t);
		if (ids)
			ids[t] = id;
		if (labels)
			labels[t] = (q->mask[t / 8] >> (t % 8) & 1) ? id : LF_IGNORE_INDEX;
	}
	for (uint32_t k = 0; labels && k < q->nexceptions; k++)
		labels[get_u32(q->exceptions + 8 * k)] = (int32_t)get_u32(q->exceptions + 8 * k + 4);
}

uint32_t lf_shard_seq_segment(const struct lf_shard_seq *q, uint32_t k)
{
	return get_u32(q->segments + 4 * k);
}

/*
 * shardset.c — opening lf-pack's outputs (folder, tar bundle, single shard)
 * and writing bundles (see shardset.h).  Bundles are listed with libarchive;
 * their members are read in place from one mapping of the uncompressed tar,
 * so the trainer maps a bundle as it maps a shard.
 */
#include "shardset.h"
#include "error.h"
#include "mp.h"
#include "output.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdio.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct split {
	char *name;
	struct lf_shard **shards;
	uint64_t *first; /* first example of each shard, plus the total */
	size_t n;
};

struct lf_shardset {
	char *name;
	struct split *splits;
	size_t nsplits;
	uint8_t *map; /* a mapped bundle */
	size_t map_size;
};

/* A bundle's members: name -> (offset, size) in the mapping. */
struct member {
	char *name;
	uint64_t offset, size;
};

static void free_members(struct member *m, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(m[i].name);
	free(m);
}

static uint64_t tar_octal(const uint8_t *p, size_t n)
{
	uint64_t v = 0;
	if (p[0] & 0x80) { /* base-256, for sizes past 8 GB */
		for (size_t i = 1; i < n; i++)
			v = v << 8 | p[i];
		return v;
	}
	for (size_t i = 0; i < n && p[i] >= '0' && p[i] <= '7'; i++)
		v = v * 8 + (uint64_t)(p[i] - '0');
	return v;
}

/* List a tar's regular members with libarchive; their data offsets follow
 * from the header positions it reports (a pax extended header, written for
 * long names or big files, comes before the member's own header). */
static int list_members(const char *path, const uint8_t *map, size_t size, struct member **out, size_t *nout)
{
	struct archive *a = archive_read_new();
	archive_read_support_format_tar(a);
	if (archive_read_open_memory(a, map, size) != ARCHIVE_OK) {
		int rc = lf_fail("%s: not a tar bundle: %s", path, archive_error_string(a));
		archive_read_free(a);
		return rc;
	}
	struct member *m = NULL;
	size_t n = 0;
	struct archive_entry *e;
	int r;
	while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
		uint64_t pos = (uint64_t)archive_read_header_position(a);
		while (pos + 512 <= size && (map[pos + 156] == 'x' || map[pos + 156] == 'g'))
			pos += 512 + (tar_octal(map + pos + 124, 12) + 511) / 512 * 512;
		uint64_t len = (uint64_t)archive_entry_size(e);
		if (archive_entry_filetype(e) != AE_IFREG)
			continue;
		if (pos + 512 > size || len > size - pos - 512) {
			free_members(m, n);
			archive_read_free(a);
			return lf_fail("%s: truncated bundle: member %s runs past the end", path,
				       archive_entry_pathname(e));
		}
		m = lf_realloc(m, (n + 1) * sizeof *m);
		m[n++] = (struct member){ lf_strdup(archive_entry_pathname(e)), pos + 512, len };
	}
	if (r != ARCHIVE_EOF) {
		int rc = lf_fail("%s: corrupted bundle: %s", path, archive_error_string(a));
		free_members(m, n);
		archive_read_free(a);
		return rc;
	}
	archive_read_free(a);
	*out = m;
	*nout = n;
	return 0;
}

static const struct member *find_member(const struct member *m, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(m[i].name, name))
			return &m[i];
	return NULL;
}

static struct lf_shardset *set_new(const char *path)
{
	struct lf_shardset *s = lf_calloc(1, sizeof *s);
	s->name = lf_strdup(path);
	return s;
}

/* Build the splits from a manifest; shards come from the folder dir or from
 * the bundle's members. */
static int load_manifest(struct lf_shardset *s, json_t *m, const char *dir, const struct member *mem, size_t nmem)
{
	const char *fmt = json_string_value(json_object_get(m, "format"));
	json_t *splits = json_object_get(m, "splits");
	if (!fmt || strcmp(fmt, "lf-shards") != 0 || !json_is_object(splits))
		return lf_fail("%s: manifest.json is not an lf-pack manifest", s->name);
	if (json_integer_value(json_object_get(m, "version")) != 1)
		return lf_fail("%s: manifest version %lld, this program reads version 1", s->name,
			       (long long)json_integer_value(json_object_get(m, "version")));
	const char *key;
	json_t *v;
	s->splits = lf_calloc(json_object_size(splits) + 1, sizeof *s->splits);
	json_object_foreach(splits, key, v)
	{
		struct split *sp = &s->splits[s->nsplits++];
		sp->name = lf_strdup(key);
		json_t *files = json_object_get(v, "shards");
		if (!json_is_array(files))
			return lf_fail("%s: manifest: split %s has no shard list", s->name, key);
		sp->n = json_array_size(files);
		sp->shards = lf_calloc(sp->n + 1, sizeof *sp->shards);
		sp->first = lf_calloc(sp->n + 1, sizeof *sp->first);
		for (size_t k = 0; k < sp->n; k++) {
			json_t *f = json_array_get(files, k);
			const char *file = json_string_value(json_object_get(f, "file"));
			json_int_t want = json_integer_value(json_object_get(f, "examples"));
			json_int_t bytes = json_integer_value(json_object_get(f, "bytes"));
			if (!file || strchr(file, '/'))
				return lf_fail("%s: manifest: split %s: shard %zu has no valid file name", s->name, key, k);
			if (mem) {
				const struct member *x = find_member(mem, nmem, file);
				if (!x)
					return lf_fail("%s: the bundle lacks %s, which its manifest lists", s->name, file);
				char name[4096];
				snprintf(name, sizeof name, "%s:%s", s->name, file);
				sp->shards[k] = lf_shard_open_mem(name, s->map + x->offset, x->size);
			} else {
				char p[4096];
				snprintf(p, sizeof p, "%s/%s", dir, file);
				sp->shards[k] = lf_shard_open(p);
			}
			if (!sp->shards[k])
				return -1;
			if ((json_int_t)lf_shard_examples(sp->shards[k]) != want ||
			    (json_int_t)lf_shard_size(sp->shards[k]) != bytes)
				return lf_fail("%s: %s does not match the manifest (examples or size differ)", s->name, file);
			sp->first[k + 1] = sp->first[k] + lf_shard_examples(sp->shards[k]);
		}
		if (!sp->n)
			return lf_fail("%s: manifest: split %s has no shards", s->name, key);
	}
	if (!s->nsplits)
		return lf_fail("%s: manifest lists no splits", s->name);
	return 0;
}

static struct lf_shardset *open_fail(struct lf_shardset *s)
{
	lf_shardset_close(s);
	return NULL;
}

struct lf_shardset *lf_shardset_open(const char *path)
{
	struct stat st;
	if (stat(path, &st) != 0) {
		lf_fail("%s: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	struct lf_shardset *s = set_new(path);
	json_error_t err;
	if (S_ISDIR(st.st_mode)) {
		char p[4096];
		snprintf(p, sizeof p, "%s/manifest.json", path);
		json_t *m = json_load_file(p, 0, &err);
		if (!m) {
			lf_fail("%s: %s", p, access(p, F_OK) ? "no manifest.json: not an lf-pack output" : err.text);
			return open_fail(s);
		}
		int rc = load_manifest(s, m, path, NULL, 0);
		json_decref(m);
		return rc < 0 ? open_fail(s) : s;
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		lf_fail("%s: cannot open: %s", path, strerror(errno));
		return open_fail(s);
	}
	uint8_t ustar[5] = { 0 };
	bool tar = pread(fd, ustar, sizeof ustar, 257) == (ssize_t)sizeof ustar && !memcmp(ustar, "ustar", 5);
	if (!tar) {
		close(fd);
		s->splits = lf_calloc(1, sizeof *s->splits);
		s->nsplits = 1;
		struct split *sp = &s->splits[0];
		sp->shards = lf_calloc(1, sizeof *sp->shards);
		sp->first = lf_calloc(2, sizeof *sp->first);
		sp->shards[0] = lf_shard_open(path);
		if (!sp->shards[0])
			return open_fail(s);
		sp->n = 1;
		const msgpack_object *split = lf_mp_get(lf_shard_meta(sp->shards[0]), "split");
		sp->name = split && split->type == MSGPACK_OBJECT_STR
				   ? lf_strndup(split->via.str.ptr, split->via.str.size)
				   : lf_strdup("train");
		sp->first[1] = lf_shard_examples(sp->shards[0]);
		return s;
	}
	s->map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (s->map == MAP_FAILED) {
		s->map = NULL;
		lf_fail("%s: cannot map: %s", path, strerror(errno));
		return open_fail(s);
	}
	s->map_size = (size_t)st.st_size;
	struct member *mem = NULL;
	size_t nmem = 0;
	if (list_members(path, s->map, s->map_size, &mem, &nmem) < 0)
		return open_fail(s);
	const struct member *mf = find_member(mem, nmem, "manifest.json");
	json_t *m = mf ? json_loadb((const char *)s->map + mf->offset, mf->size, 0, &err) : NULL;
	if (!m) {
		lf_fail("%s: %s", path, mf ? "corrupted manifest.json" : "no manifest.json: not an lf-pack bundle");
		free_members(mem, nmem);
		return open_fail(s);
	}
	int rc = load_manifest(s, m, NULL, mem, nmem);
	json_decref(m);
	free_members(mem, nmem);
	return rc < 0 ? open_fail(s) : s;
}

void lf_shardset_close(struct lf_shardset *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->nsplits; i++) {
		for (size_t k = 0; k < s->splits[i].n; k++)
			lf_shard_close(s->splits[i].shards[k]);
		free(s->splits[i].shards);
		free(s->splits[i].first);
		free(s->splits[i].name);
	}
	free(s->splits);
	if (s->map)
		munmap(s->map, s->map_size);
	free(s->name);
	free(s);
}

const char *lf_shardset_name(const struct lf_shardset *s)
{
	return s->name;
}

size_t lf_shardset_nsplits(const struct lf_shardset *s)
{
	return s->nsplits;
}

const char *lf_shardset_split_name(const struct lf_shardset *s, size_t split)
{
	return s->splits[split].name;
}

int lf_shardset_find_split(const struct lf_shardset *s, const char *name)
{
	for (size_t i = 0; i < s->nsplits; i++)
		if (!strcmp(s->splits[i].name, name))
			return (int)i;
	return -1;
}

uint64_t lf_shardset_examples(const struct lf_shardset *s, size_t split)
{
	return s->splits[split].first[s->splits[split].n];
}

size_t lf_shardset_nshards(const struct lf_shardset *s, size_t split)
{
	return s->splits[split].n;
}

struct lf_shard *lf_shardset_shard(const struct lf_shardset *s, size_t split, size_t k)
{
	return s->splits[split].shards[k];
}

const msgpack_object *lf_shardset_meta(const struct lf_shardset *s)
{
	return lf_shard_meta(s->splits[0].shards[0]);
}

int lf_shardset_get(struct lf_shardset *s, size_t split, uint64_t i, unsigned j, struct lf_shard_seq *q)
{
	const struct split *sp = &s->splits[split];
	size_t lo = 0, hi = sp->n; /* the shard k with first[k] <= i < first[k+1] */
	while (hi - lo > 1) {
		size_t mid = (lo + hi) / 2;
		if (sp->first[mid] <= i)
			lo = mid;
		else
			hi = mid;
	}
	return lf_shard_get(sp->shards[lo], i - sp->first[lo], j, q);
}

int lf_shardset_verify(struct lf_shardset *s)
{
	for (size_t i = 0; i < s->nsplits; i++)
		for (size_t k = 0; k < s->splits[i].n; k++)
			if (lf_shard_verify(s->splits[i].shards[k]) < 0)
				return -1;
	return 0;
}

/* ---- bundles ----
 *
 * Written as plain ustar members here rather than with libarchive's writer:
 * every libarchive tar writer links archive_write_set_format.o, which pulls
 * in all its writers, xar's among them, and with it libxml2 and ICU, which
 * a static build (make STATIC=1, the binaries carried to GPU machines)
 * cannot take.  Reading stays with libarchive.  A member is a 512-byte
 * header (POSIX ustar; sizes of 8 GiB and more in GNU's base-256 form,
 * which libarchive and GNU tar read) and its bytes padded to 512; the
 * archive ends with two zero blocks. */

static void tar_octal_field(char *p, size_t n, uint64_t v)
{
	/* n-1 octal digits and a NUL */
	p[n - 1] = 0;
	for (size_t i = n - 1; i-- > 0;) {
		p[i] = (char)('0' + (v & 7));
		v >>= 3;
	}
}

static void tar_header(uint8_t h[512], const char *name, uint64_t size, uint64_t mtime)
{
	memset(h, 0, 512);
	memcpy(h, name, strlen(name)); /* names are short: checked by the caller */
	tar_octal_field((char *)h + 100, 8, 0644);
	tar_octal_field((char *)h + 108, 8, 0);
	tar_octal_field((char *)h + 116, 8, 0);
	if (size < (uint64_t)1 << 33) {
		tar_octal_field((char *)h + 124, 12, size);
	} else {
		h[124] = 0x80;
		for (int i = 0; i < 8; i++)
			h[135 - i] = (uint8_t)(size >> (8 * i));
	}
	tar_octal_field((char *)h + 136, 12, mtime);
	h[156] = '0';
	memcpy(h + 257, "ustar", 6);
	memcpy(h + 263, "00", 2);
	memset(h + 148, ' ', 8);
	unsigned sum = 0;
	for (int i = 0; i < 512; i++)
		sum += h[i];
	tar_octal_field((char *)h + 148, 7, sum);
	h[155] = ' ';
}

static int add_file(FILE *out, const char *dir, const char *name, const char *tar_path)
{
	if (strlen(name) >= 100)
		return lf_fail("%s: member name %s is too long for a tar header", tar_path, name);
	char p[4096];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	FILE *in = fopen(p, "rb");
	struct stat st;
	if (!in || fstat(fileno(in), &st) != 0) {
		if (in)
			fclose(in);
		return lf_fail("%s: cannot read: %s", p, strerror(errno));
	}
	uint8_t h[512];
	tar_header(h, name, (uint64_t)st.st_size, (uint64_t)st.st_mtime);
	int rc = fwrite(h, 1, 512, out) == 512 ? 0 : lf_fail("%s: write failed: %s", tar_path, strerror(errno));
	static char buf[1 << 16];
	uint64_t copied = 0;
	size_t k;
	while (rc == 0 && (k = fread(buf, 1, sizeof buf, in)) > 0) {
		if (fwrite(buf, 1, k, out) != k)
			rc = lf_fail("%s: write failed: %s", tar_path, strerror(errno));
		copied += k;
	}
	if (rc == 0 && (ferror(in) || copied != (uint64_t)st.st_size))
		rc = lf_fail("%s: read failed or the file changed while bundling", p);
	static const char zero[512];
	size_t pad = (size_t)((512 - copied % 512) % 512);
	if (rc == 0 && pad && fwrite(zero, 1, pad, out) != pad)
		rc = lf_fail("%s: write failed: %s", tar_path, strerror(errno));
	fclose(in);
	return rc;
}

int lf_shardset_bundle(const char *dir, const char *tar_path)
{
	struct lf_shardset *s = lf_shardset_open(dir);
	if (!s)
		return -1;
	struct lf_output out;
	if (lf_output_open(&out, tar_path) < 0) {
		lf_shardset_close(s);
		return -1;
	}
	if (lf_output_is_stdout(&out)) {
		lf_shardset_close(s);
		return lf_fail("--bundle needs a file name");
	}
	int rc = add_file(out.f, dir, "manifest.json", tar_path);
	for (size_t i = 0; rc == 0 && i < s->nsplits; i++) {
		for (size_t k = 0; rc == 0 && k < s->splits[i].n; k++) {
			const char *n = lf_shard_name(s->splits[i].shards[k]);
			const char *base = strrchr(n, '/');
			rc = add_file(out.f, dir, base ? base + 1 : n, tar_path);
		}
	}
	static const char end[1024];
	if (rc == 0 && fwrite(end, 1, sizeof end, out.f) != sizeof end)
		rc = lf_fail("%s: write failed: %s", tar_path, strerror(errno));
	lf_shardset_close(s);
	if (rc < 0) {
		lf_output_abort(&out);
		return -1;
	}
	return lf_output_commit(&out);
}

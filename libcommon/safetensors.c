/*
 * safetensors.c — safetensors files (see safetensors.h): reading one file or
 * a sharded folder mapped into memory with every header checked, the f32
 * view of a tensor, and writing files sharded by size, atomically.
 *
 * What the reader accepts is what the Rust reader (safetensors 0.8) accepts,
 * less its looseness about duplicate names: a JSON object (blanks around it
 * allowed, unknown fields of a tensor ignored), tensors whose bytes tile the
 * data exactly (no overlap, no hole, nothing after the last one).
 *
 * What the writer writes is what safetensors' save_file writes: per file,
 * tensors ordered by dtype, widest first (the Rust Dtype enum order,
 * descending), then by name bytewise; compact JSON with __metadata__ first;
 * the header padded with spaces to a multiple of 8 so that every tensor is
 * aligned to its element size.  Shards and the index are named and laid out
 * as transformers' save_pretrained does (huggingface_hub's greedy split).
 */
#include "safetensors.h"
#include "buf.h"
#include "error.h"
#include "jsonscan.h"
#include "output.h"
#include "strmap.h"
#include "unicode.h"
#include "cpu/bf16.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c reads and writes tensor bytes as they are in memory: little-endian hosts only"
#endif

#define MAX_HEADER 100000000ull /* the Rust reader's MAX_HEADER_SIZE */

/* ---- dtypes ---- */

static const struct {
	const char *name;
	size_t size;
	int rank; /* position in the Rust Dtype enum: the writer's order */
} dtypes[LF_DTYPE_COUNT] = {
	[LF_DTYPE_F32] = { "F32", 4, 15 },
	[LF_DTYPE_F16] = { "F16", 2, 11 },
	[LF_DTYPE_BF16] = { "BF16", 2, 12 },
	[LF_DTYPE_F64] = { "F64", 8, 17 },
	[LF_DTYPE_I8] = { "I8", 1, 5 },
	[LF_DTYPE_U8] = { "U8", 1, 4 },
	[LF_DTYPE_I16] = { "I16", 2, 9 },
	[LF_DTYPE_I32] = { "I32", 4, 13 },
	[LF_DTYPE_I64] = { "I64", 8, 18 },
	[LF_DTYPE_BOOL] = { "BOOL", 1, 0 },
};

int lf_dtype_parse(const char *s, size_t n)
{
	for (int t = 0; t < LF_DTYPE_COUNT; t++)
		if (strlen(dtypes[t].name) == n && !memcmp(dtypes[t].name, s, n))
			return t;
	return -1;
}

const char *lf_dtype_name(enum lf_dtype t)
{
	return (unsigned)t < LF_DTYPE_COUNT ? dtypes[t].name : "?";
}

size_t lf_dtype_size(enum lf_dtype t)
{
	return (unsigned)t < LF_DTYPE_COUNT ? dtypes[t].size : 0;
}

/* numel * element size, or -1 when it does not fit 64 bits. */
static int shape_bytes(enum lf_dtype t, int ndim, const int64_t *shape, uint64_t *bytes)
{
	uint64_t n = dtypes[t].size;
	for (int d = 0; d < ndim; d++) {
		uint64_t k = (uint64_t)shape[d];
		if (k && n > UINT64_MAX / k)
			return -1;
		n *= k;
	}
	*bytes = n;
	return 0;
}

static void format_shape(struct lf_buf *b, int ndim, const int64_t *shape)
{
	lf_buf_addch(b, '[');
	for (int d = 0; d < ndim; d++)
		lf_buf_addf(b, "%s%lld", d ? ", " : "", (long long)shape[d]);
	lf_buf_addch(b, ']');
}

/* ---- reading ---- */

struct st_file {
	char *path;
	const uint8_t *map;
	size_t size;
	const uint8_t *data; /* the byte buffer after the header */
	char **meta;	     /* key, value, key, value ... */
	size_t nmeta;
};

struct lf_safetensors {
	char *path; /* what was opened */
	struct st_file *files;
	size_t nfiles;
	struct lf_tensor *t;
	size_t n, cap;
	struct lf_strmap names; /* name -> index in t */
};

void lf_safetensors_close(struct lf_safetensors *st)
{
	if (!st)
		return;
	for (size_t i = 0; i < st->nfiles; i++) {
		struct st_file *f = &st->files[i];
		if (f->map)
			munmap((void *)f->map, f->size);
		for (size_t k = 0; k < 2 * f->nmeta; k++)
			free(f->meta[k]);
		free(f->meta);
		free(f->path);
	}
	for (size_t i = 0; i < st->n; i++)
		free((char *)st->t[i].name);
	free(st->files);
	free(st->t);
	free(st->path);
	lf_strmap_free(&st->names);
	free(st);
}

/* Re-record an error of the scanner (a JSON syntax error, "header: line 1
 * column C: ...") with the file and, when there is one, the tensor. */
static int header_fail(const struct st_file *f, const char *tensor)
{
	char msg[2048];
	snprintf(msg, sizeof msg, "%s", lf_errmsg());
	if (tensor)
		return lf_fail("%s: tensor '%s': %s", f->path, tensor, msg);
	return lf_fail("%s: %s", f->path, msg);
}

/* "__metadata__": {"key": "value", ...} or null. */
static int parse_metadata(struct st_file *f, struct lf_jscan *s)
{
	if (lf_jscan_peek(s) == 'n')
		return lf_jscan_skip(s) < 0 ? header_fail(f, NULL) : 0;
	if (lf_jscan_peek(s) != '{')
		return lf_fail("%s: __metadata__ is not an object", f->path);
	struct lf_buf key = LF_BUF_INIT, val = LF_BUF_INIT;
	int rc = lf_jscan_object_begin(s);
	while (rc == 0 && (rc = lf_jscan_object_next(s, &key)) == 1) {
		if (lf_jscan_peek(s) != '"') {
			lf_fail("%s: __metadata__ '%s': the value is not a string", f->path, key.data);
			goto fail;
		}
		lf_buf_reset(&val);
		if ((rc = lf_jscan_string(s, &val)) < 0)
			break;
		f->meta = lf_realloc(f->meta, 2 * (f->nmeta + 1) * sizeof *f->meta);
		f->meta[2 * f->nmeta] = lf_strndup(key.data, key.len);
		f->meta[2 * f->nmeta + 1] = lf_strndup(val.data, val.len);
		f->nmeta++;
	}
	if (rc < 0) {
		header_fail(f, NULL);
		goto fail;
	}
	lf_buf_free(&key);
	lf_buf_free(&val);
	return 0;
fail:
	lf_buf_free(&key);
	lf_buf_free(&val);
	return -1;
}

/* A list of at most max non-negative integers. */
static int parse_ints(const struct st_file *f, struct lf_jscan *s, const char *tensor, const char *field,
		      int64_t *v, int max, int *n)
{
	*n = 0;
	if (lf_jscan_peek(s) != '[')
		return lf_fail("%s: tensor '%s': %s is not a list", f->path, tensor, field);
	int rc = lf_jscan_array_begin(s);
	while (rc == 0 && (rc = lf_jscan_array_next(s)) == 1) {
		int c = lf_jscan_peek(s);
		if (c == '-')
			return lf_fail("%s: tensor '%s': %s has a negative value", f->path, tensor, field);
		if (c < '0' || c > '9')
			return lf_fail("%s: tensor '%s': %s is not a list of integers", f->path, tensor, field);
		if (*n == max)
			return lf_fail("%s: tensor '%s': %s has more than %d values", f->path, tensor, field, max);
		rc = lf_jscan_int(s, &v[(*n)++]);
	}
	return rc < 0 ? header_fail(f, tensor) : 0;
}

/* The fields of one tensor entry: {"dtype": ..., "shape": [...],
 * "data_offsets": [begin, end]}, others skipped. */
static int parse_fields(const struct st_file *f, struct lf_jscan *s, const char *name, struct lf_tensor *t,
			int64_t *off, int *noff)
{
	struct lf_buf key = LF_BUF_INIT, val = LF_BUF_INIT;
	int rc = lf_jscan_object_begin(s);
	while (rc == 0 && (rc = lf_jscan_object_next(s, &key)) == 1) {
		rc = 0;
		if (!strcmp(key.data, "dtype")) {
			if (lf_jscan_peek(s) != '"') {
				lf_fail("%s: tensor '%s': dtype is not a string", f->path, name);
				goto fail;
			}
			lf_buf_reset(&val);
			if ((rc = lf_jscan_string(s, &val)) < 0)
				break;
			int d = lf_dtype_parse(val.data, val.len);
			if (d < 0) {
				lf_fail("%s: tensor '%s': unknown dtype '%s'", f->path, name, val.data);
				goto fail;
			}
			t->dtype = (enum lf_dtype)d;
		} else if (!strcmp(key.data, "shape")) {
			if (parse_ints(f, s, name, "shape", t->shape, LF_TENSOR_MAX_DIMS, &t->ndim) < 0)
				goto fail;
		} else if (!strcmp(key.data, "data_offsets")) {
			if (parse_ints(f, s, name, "data_offsets", off, 2, noff) < 0)
				goto fail;
		} else {
			rc = lf_jscan_skip(s);
		}
	}
	if (rc < 0) {
		header_fail(f, name);
		goto fail;
	}
	lf_buf_free(&key);
	lf_buf_free(&val);
	return 0;
fail:
	lf_buf_free(&key);
	lf_buf_free(&val);
	return -1;
}

/* One tensor entry, checked against the file and the tensors before it. */
static int parse_tensor(struct lf_safetensors *st, struct st_file *f, struct lf_jscan *s, const char *name,
			uint64_t data_size)
{
	if (lf_jscan_peek(s) != '{')
		return lf_fail("%s: tensor '%s': not an object", f->path, name);
	struct lf_tensor t = { .dtype = LF_DTYPE_COUNT, .ndim = -1, .file = f->path };
	int64_t off[2];
	int noff = -1;
	if (parse_fields(f, s, name, &t, off, &noff) < 0)
		return -1;
	if (t.dtype == LF_DTYPE_COUNT)
		return lf_fail("%s: tensor '%s': no dtype", f->path, name);
	if (t.ndim < 0)
		return lf_fail("%s: tensor '%s': no shape", f->path, name);
	if (noff != 2)
		return lf_fail("%s: tensor '%s': data_offsets is not [begin, end]", f->path, name);
	if (off[0] > off[1])
		return lf_fail("%s: tensor '%s': data_offsets [%lld, %lld] end before they begin", f->path, name,
			       (long long)off[0], (long long)off[1]);
	if ((uint64_t)off[1] > data_size)
		return lf_fail("%s: tensor '%s': data_offsets [%lld, %lld] beyond the %llu bytes of data "
			       "(truncated file?)",
			       f->path, name, (long long)off[0], (long long)off[1], (unsigned long long)data_size);
	uint64_t bytes;
	if (shape_bytes(t.dtype, t.ndim, t.shape, &bytes) < 0 || bytes != (uint64_t)(off[1] - off[0])) {
		struct lf_buf sh = LF_BUF_INIT;
		format_shape(&sh, t.ndim, t.shape);
		lf_fail("%s: tensor '%s': %s %s does not take the %lld bytes of data_offsets [%lld, %lld]", f->path,
			name, dtypes[t.dtype].name, sh.data, (long long)(off[1] - off[0]), (long long)off[0],
			(long long)off[1]);
		lf_buf_free(&sh);
		return -1;
	}
	uint32_t other;
	if (lf_strmap_get(&st->names, name, strlen(name), &other)) {
		if (!strcmp(st->t[other].file, f->path))
			return lf_fail("%s: tensor '%s' appears twice", f->path, name);
		return lf_fail("%s: tensor '%s' is also in %s", f->path, name, st->t[other].file);
	}
	t.name = lf_strdup(name);
	t.data = f->data + off[0];
	t.nbytes = (size_t)bytes;
	if (st->n == st->cap) {
		st->cap = st->cap ? 2 * st->cap : 64;
		st->t = lf_realloc(st->t, st->cap * sizeof *st->t);
	}
	st->t[st->n] = t;
	lf_strmap_put(&st->names, t.name, strlen(t.name), (uint32_t)st->n);
	st->n++;
	return 0;
}

struct span {
	uint64_t begin, end;
	size_t i;
};

static int span_cmp(const void *a, const void *b)
{
	const struct span *x = a, *y = b;
	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	return x->end < y->end ? -1 : x->end > y->end;
}

/* The tensors first..st->n of file f must tile its data exactly. */
static int check_tiling(const struct lf_safetensors *st, const struct st_file *f, size_t first, uint64_t data_size)
{
	size_t n = st->n - first;
	struct span *sp = lf_malloc((n + 1) * sizeof *sp);
	for (size_t i = 0; i < n; i++) {
		const struct lf_tensor *t = &st->t[first + i];
		sp[i].begin = (uint64_t)((const uint8_t *)t->data - f->data);
		sp[i].end = sp[i].begin + t->nbytes;
		sp[i].i = first + i;
	}
	qsort(sp, n, sizeof *sp, span_cmp);
	uint64_t at = 0;
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (sp[i].begin < at)
			rc = lf_fail("%s: tensor '%s': bytes [%llu, %llu) overlap tensor '%s'", f->path,
				     st->t[sp[i].i].name, (unsigned long long)sp[i].begin, (unsigned long long)sp[i].end,
				     st->t[sp[i - 1].i].name);
		else if (sp[i].begin > at)
			rc = lf_fail("%s: tensor '%s': bytes [%llu, %llu) before it belong to no tensor", f->path,
				     st->t[sp[i].i].name, (unsigned long long)at, (unsigned long long)sp[i].begin);
		at = sp[i].end;
	}
	free(sp);
	if (rc == 0 && at != data_size)
		rc = lf_fail("%s: %llu bytes after the last tensor belong to no tensor", f->path,
			     (unsigned long long)(data_size - at));
	return rc;
}

static int parse_header(struct lf_safetensors *st, struct st_file *f, const char *json, size_t len,
			uint64_t data_size)
{
	struct lf_jscan s;
	lf_jscan_init(&s, "header", json, len);
	if (lf_jscan_peek(&s) != '{')
		return lf_fail("%s: not a safetensors file (the header is not a JSON object)", f->path);
	size_t first = st->n;
	struct lf_buf key = LF_BUF_INIT;
	int rc = lf_jscan_object_begin(&s);
	while (rc == 0 && (rc = lf_jscan_object_next(&s, &key)) == 1) {
		if (strlen(key.data) != key.len)
			rc = lf_fail("%s: a tensor name holds a NUL character", f->path);
		else if (!strcmp(key.data, "__metadata__"))
			rc = parse_metadata(f, &s);
		else
			rc = parse_tensor(st, f, &s, key.data, data_size);
		if (rc < 0) {
			lf_buf_free(&key);
			return -1;
		}
	}
	lf_buf_free(&key);
	if (rc < 0)
		return header_fail(f, NULL);
	if (lf_jscan_peek(&s) != -1)
		return lf_fail("%s: header: text after the JSON object", f->path);
	return check_tiling(st, f, first, data_size);
}

static int open_file(struct lf_safetensors *st, const char *path)
{
	st->files = lf_realloc(st->files, (st->nfiles + 1) * sizeof *st->files);
	struct st_file *f = &st->files[st->nfiles++];
	memset(f, 0, sizeof *f);
	f->path = lf_strdup(path);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return lf_fail("%s: cannot open: %s", path, strerror(errno));
	struct stat sb;
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return lf_fail("%s: not a regular file", path);
	}
	if (sb.st_size < 8) {
		close(fd);
		return lf_fail("%s: not a safetensors file (%lld bytes, shorter than the header length)", path,
			       (long long)sb.st_size);
	}
	void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		return lf_fail("%s: cannot map: %s", path, strerror(errno));
	f->map = m;
	f->size = (size_t)sb.st_size;
	uint64_t n = 0;
	for (int i = 7; i >= 0; i--)
		n = n << 8 | f->map[i];
	if (n > MAX_HEADER)
		return lf_fail("%s: header length %llu is over the 100 MB limit (not a safetensors file?)", path,
			       (unsigned long long)n);
	if (n > f->size - 8)
		return lf_fail("%s: header length %llu is larger than the file (%zu bytes; truncated?)", path,
			       (unsigned long long)n, f->size);
	f->data = f->map + 8 + n;
	return parse_header(st, f, (const char *)f->map + 8, (size_t)n, f->size - 8 - n);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* model.safetensors.index.json: open every file of its weight_map and check
 * that each tensor is where the map says. */
static int open_index(struct lf_safetensors *st, const char *path)
{
	json_error_t err;
	json_t *root = json_load_file(path, 0, &err);
	if (!root)
		return lf_fail("%s: line %d: %s", path, err.line, err.text);
	json_t *map = json_object_get(root, "weight_map");
	int rc = 0;
	if (!json_is_object(map))
		rc = lf_fail("%s: no \"weight_map\" object", path);
	else if (json_object_size(map) == 0)
		rc = lf_fail("%s: the weight_map is empty", path);
	const char *slash = strrchr(path, '/');
	size_t dirlen = slash ? (size_t)(slash - path + 1) : 0;
	size_t nfiles = 0;
	char **files = lf_malloc((json_object_size(map) + 1) * sizeof *files);
	const char *name;
	json_t *v;
	json_object_foreach(map, name, v) {
		if (rc < 0)
			break;
		const char *file = json_string_value(v);
		if (!file)
			rc = lf_fail("%s: weight_map: tensor '%s': the file is not a string", path, name);
		else if (file[0] == '/' || strstr(file, "..") || !file[0])
			rc = lf_fail("%s: weight_map: tensor '%s': bad file name '%s'", path, name, file);
		else
			files[nfiles++] = (char *)file;
	}
	qsort(files, nfiles, sizeof *files, cmp_str);
	struct lf_buf full = LF_BUF_INIT;
	for (size_t i = 0; i < nfiles && rc == 0; i++) {
		if (i && !strcmp(files[i], files[i - 1]))
			continue;
		lf_buf_reset(&full);
		lf_buf_add(&full, path, dirlen);
		lf_buf_addstr(&full, files[i]);
		rc = open_file(st, full.data);
	}
	json_object_foreach(map, name, v) {
		if (rc < 0)
			break;
		lf_buf_reset(&full);
		lf_buf_add(&full, path, dirlen);
		lf_buf_addstr(&full, json_string_value(v));
		const struct lf_tensor *t = lf_safetensors_find(st, name);
		if (!t)
			rc = lf_fail("%s: tensor '%s' is not in %s", path, name, full.data);
		else if (strcmp(t->file, full.data))
			rc = lf_fail("%s: tensor '%s' is in %s, not in %s", path, name, t->file, full.data);
	}
	lf_buf_free(&full);
	free(files);
	json_decref(root);
	return rc;
}

static bool is_file(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

struct lf_safetensors *lf_safetensors_open(const char *path)
{
	struct lf_safetensors *st = lf_calloc(1, sizeof *st);
	st->path = lf_strdup(path);
	lf_strmap_init(&st->names, 256);
	struct stat sb;
	int rc;
	size_t n = strlen(path);
	if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
		struct lf_buf b = LF_BUF_INIT;
		lf_buf_addf(&b, "%s%smodel.safetensors", path, n && path[n - 1] == '/' ? "" : "/");
		if (is_file(b.data)) {
			rc = open_file(st, b.data);
		} else {
			lf_buf_addstr(&b, ".index.json");
			if (is_file(b.data))
				rc = open_index(st, b.data);
			else
				rc = lf_fail("%s: no model.safetensors or model.safetensors.index.json", path);
		}
		lf_buf_free(&b);
	} else if (n >= 5 && !strcmp(path + n - 5, ".json")) {
		rc = open_index(st, path);
	} else {
		rc = open_file(st, path);
	}
	if (rc < 0) {
		lf_safetensors_close(st);
		return NULL;
	}
	return st;
}

size_t lf_safetensors_count(const struct lf_safetensors *st)
{
	return st->n;
}

const struct lf_tensor *lf_safetensors_at(const struct lf_safetensors *st, size_t i)
{
	return i < st->n ? &st->t[i] : NULL;
}

const struct lf_tensor *lf_safetensors_find(const struct lf_safetensors *st, const char *name)
{
	uint32_t i;
	return lf_strmap_get(&st->names, name, strlen(name), &i) ? &st->t[i] : NULL;
}

const struct lf_tensor *lf_safetensors_expect(const struct lf_safetensors *st, const char *name, int ndim,
					      const int64_t *shape)
{
	const struct lf_tensor *t = lf_safetensors_find(st, name);
	if (!t) {
		lf_fail("%s: missing tensor '%s'", st->path, name);
		return NULL;
	}
	bool ok = t->ndim == ndim;
	for (int d = 0; ok && d < ndim; d++)
		ok = shape[d] < 0 || shape[d] == t->shape[d];
	if (ok)
		return t;
	struct lf_buf a = LF_BUF_INIT, b = LF_BUF_INIT;
	format_shape(&a, t->ndim, t->shape);
	format_shape(&b, ndim, shape);
	lf_fail("%s: tensor '%s': shape %s, expected %s", t->file, name, a.data, b.data);
	lf_buf_free(&a);
	lf_buf_free(&b);
	return NULL;
}

const char *lf_safetensors_metadata(const struct lf_safetensors *st, const char *key)
{
	if (!st->nfiles)
		return NULL;
	const struct st_file *f = &st->files[0];
	for (size_t k = 0; k < f->nmeta; k++)
		if (!strcmp(f->meta[2 * k], key))
			return f->meta[2 * k + 1];
	return NULL;
}

/* ---- conversion ---- */

size_t lf_tensor_numel(const struct lf_tensor *t)
{
	size_t n = 1;
	for (int d = 0; d < t->ndim; d++)
		n *= (size_t)t->shape[d];
	return n;
}

/* IEEE binary16 -> binary32, exact (subnormals, infinities, NaN payloads). */
static float f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
	if (exp == 0x1f) {
		u = sign | 0x7f800000u | man << 13;
	} else if (exp) {
		u = sign | (exp + 112) << 23 | man << 13;
	} else {
		float x = (float)man * 0x1p-24f; /* zero or subnormal */
		return sign ? -x : x;
	}
	float x;
	memcpy(&x, &u, sizeof x);
	return x;
}

/* Elements are read with memcpy: the data is only as aligned as the file
 * made it. */
#define CONVERT(type, expr)                                   \
	for (size_t i = 0; i < n; i++) {                      \
		type v;                                       \
		memcpy(&v, p + i * sizeof v, sizeof v);       \
		out[i] = (float)(expr);                       \
	}

void lf_tensor_to_f32(const struct lf_tensor *t, float *out)
{
	const uint8_t *p = t->data;
	size_t n = lf_tensor_numel(t);
	switch (t->dtype) {
	case LF_DTYPE_F32:
		if (n)
			memcpy(out, p, n * sizeof *out);
		break;
	case LF_DTYPE_F16:
		CONVERT(uint16_t, f16_to_f32(v));
		break;
	case LF_DTYPE_BF16:
		CONVERT(uint16_t, lf_bf16_to_f32(v));
		break;
	case LF_DTYPE_F64:
		CONVERT(double, v);
		break;
	case LF_DTYPE_I8:
		CONVERT(int8_t, v);
		break;
	case LF_DTYPE_U8:
		CONVERT(uint8_t, v);
		break;
	case LF_DTYPE_I16:
		CONVERT(int16_t, v);
		break;
	case LF_DTYPE_I32:
		CONVERT(int32_t, v);
		break;
	case LF_DTYPE_I64:
		CONVERT(int64_t, v);
		break;
	case LF_DTYPE_BOOL:
		CONVERT(uint8_t, v != 0);
		break;
	case LF_DTYPE_COUNT:
		break;
	}
}

/* ---- writing ---- */

struct wtensor {
	char *name;
	enum lf_dtype dtype;
	int ndim;
	int64_t shape[LF_TENSOR_MAX_DIMS];
	const void *data;
	uint64_t nbytes;
	unsigned shard;
};

struct lf_st_writer {
	char *dir, *base;
	uint64_t max_shard;
	char **meta; /* key, value, ... */
	size_t nmeta;
	struct wtensor *t;
	size_t n, cap;
	struct lf_strmap names;
};

void lf_st_writer_abort(struct lf_st_writer *w)
{
	if (!w)
		return;
	for (size_t i = 0; i < w->n; i++)
		free(w->t[i].name);
	for (size_t k = 0; k < 2 * w->nmeta; k++)
		free(w->meta[k]);
	free(w->meta);
	free(w->t);
	free(w->dir);
	free(w->base);
	lf_strmap_free(&w->names);
	free(w);
}

struct lf_st_writer *lf_st_writer_open(const char *dir, const char *base, uint64_t max_shard_bytes,
				       const char *const *metadata)
{
	struct stat sb;
	if (stat(dir, &sb) != 0 && mkdir(dir, 0777) != 0 && errno != EEXIST) {
		lf_fail("%s: cannot create the folder: %s", dir, strerror(errno));
		return NULL;
	}
	if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
		lf_fail("%s: not a folder", dir);
		return NULL;
	}
	if (!base[0] || strchr(base, '/')) {
		lf_fail("%s: bad safetensors base name '%s'", dir, base);
		return NULL;
	}
	struct lf_st_writer *w = lf_calloc(1, sizeof *w);
	w->dir = lf_strdup(dir);
	w->base = lf_strdup(base);
	w->max_shard = max_shard_bytes;
	lf_strmap_init(&w->names, 256);
	for (size_t k = 0; metadata && metadata[2 * k]; k++) {
		if (!metadata[2 * k + 1] || !lf_utf8_valid(metadata[2 * k], strlen(metadata[2 * k]), NULL) ||
		    !lf_utf8_valid(metadata[2 * k + 1], strlen(metadata[2 * k + 1]), NULL)) {
			lf_fail("%s: metadata '%s': not a UTF-8 key and value", dir, metadata[2 * k]);
			lf_st_writer_abort(w);
			return NULL;
		}
		w->meta = lf_realloc(w->meta, 2 * (w->nmeta + 1) * sizeof *w->meta);
		w->meta[2 * w->nmeta] = lf_strdup(metadata[2 * k]);
		w->meta[2 * w->nmeta + 1] = lf_strdup(metadata[2 * k + 1]);
		w->nmeta++;
	}
	return w;
}

int lf_st_writer_add(struct lf_st_writer *w, const char *name, enum lf_dtype dtype, int ndim, const int64_t *shape,
		     const void *data)
{
	size_t len = strlen(name);
	if (!lf_utf8_valid(name, len, NULL) || !strcmp(name, "__metadata__"))
		return lf_fail("%s: tensor '%s': not a valid tensor name", w->dir, name);
	if ((unsigned)dtype >= LF_DTYPE_COUNT)
		return lf_fail("%s: tensor '%s': unknown dtype %d", w->dir, name, (int)dtype);
	if (ndim < 0 || ndim > LF_TENSOR_MAX_DIMS)
		return lf_fail("%s: tensor '%s': %d dimensions (at most %d)", w->dir, name, ndim, LF_TENSOR_MAX_DIMS);
	for (int d = 0; d < ndim; d++)
		if (shape[d] < 0)
			return lf_fail("%s: tensor '%s': negative size in its shape", w->dir, name);
	uint64_t bytes;
	if (shape_bytes(dtype, ndim, shape, &bytes) < 0 || bytes > (uint64_t)INT64_MAX)
		return lf_fail("%s: tensor '%s': too large", w->dir, name);
	if (bytes && !data)
		return lf_fail("%s: tensor '%s': no data", w->dir, name);
	uint32_t other;
	if (lf_strmap_get(&w->names, name, len, &other))
		return lf_fail("%s: tensor '%s' added twice", w->dir, name);
	if (w->n == w->cap) {
		w->cap = w->cap ? 2 * w->cap : 64;
		w->t = lf_realloc(w->t, w->cap * sizeof *w->t);
	}
	struct wtensor *t = &w->t[w->n];
	memset(t, 0, sizeof *t);
	t->name = lf_strdup(name);
	t->dtype = dtype;
	t->ndim = ndim;
	if (ndim)
		memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
	t->data = data;
	t->nbytes = bytes;
	lf_strmap_put(&w->names, t->name, len, (uint32_t)w->n);
	w->n++;
	return 0;
}

/* A JSON string as serde_json writes it (UTF-8 kept, control characters
 * escaped). */
static void serde_string(struct lf_buf *b, const char *s)
{
	lf_buf_addch(b, '"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		const char *e = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\n' ? "\\n" : c == '\r' ? "\\r" :
				c == '\t' ? "\\t" : c == '\b' ? "\\b" : c == '\f' ? "\\f" : NULL;
		if (e)
			lf_buf_addstr(b, e);
		else if (c < 0x20)
			lf_buf_addf(b, "\\u%04x", c);
		else
			lf_buf_addch(b, (char)c);
	}
	lf_buf_addch(b, '"');
}

/* A JSON string as Python's json.dumps writes it (ensure_ascii). */
static void py_ascii_string(struct lf_buf *b, const char *s)
{
	size_t n = strlen(s);
	lf_buf_addch(b, '"');
	while (n) {
		uint32_t cp;
		size_t k = lf_utf8_decode(s, n, &cp);
		const char *e = cp == '"' ? "\\\"" : cp == '\\' ? "\\\\" : cp == '\n' ? "\\n" : cp == '\r' ? "\\r" :
				cp == '\t' ? "\\t" : cp == '\b' ? "\\b" : cp == '\f' ? "\\f" : NULL;
		if (e) {
			lf_buf_addstr(b, e);
		} else if (cp >= 0x20 && cp < 0x7f) {
			lf_buf_addch(b, (char)cp);
		} else if (cp < 0x10000) {
			lf_buf_addf(b, "\\u%04x", cp);
		} else {
			cp -= 0x10000;
			lf_buf_addf(b, "\\u%04x\\u%04x", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
		}
		s += k ? k : 1;
		n -= k ? k : 1;
	}
	lf_buf_addch(b, '"');
}

/* The Rust writer's order: dtype widest first, then name bytewise. */
static int write_order(const void *a, const void *b, void *tensors)
{
	const struct wtensor *t = tensors, *x = &t[*(const size_t *)a], *y = &t[*(const size_t *)b];
	if (x->dtype != y->dtype)
		return dtypes[y->dtype].rank - dtypes[x->dtype].rank;
	return strcmp(x->name, y->name);
}

static int name_order(const void *a, const void *b, void *tensors)
{
	const struct wtensor *t = tensors;
	return strcmp(t[*(const size_t *)a].name, t[*(const size_t *)b].name);
}

/* The header (length, JSON, padding) of the tensors idx[0..n) in file order. */
static void shard_header(const struct lf_st_writer *w, const size_t *idx, size_t n, struct lf_buf *h)
{
	lf_buf_add(h, "\0\0\0\0\0\0\0\0", 8);
	lf_buf_addch(h, '{');
	if (w->nmeta) {
		lf_buf_addstr(h, "\"__metadata__\":{");
		for (size_t k = 0; k < w->nmeta; k++) {
			if (k)
				lf_buf_addch(h, ',');
			serde_string(h, w->meta[2 * k]);
			lf_buf_addch(h, ':');
			serde_string(h, w->meta[2 * k + 1]);
		}
		lf_buf_addch(h, '}');
	}
	uint64_t at = 0;
	for (size_t i = 0; i < n; i++) {
		const struct wtensor *t = &w->t[idx[i]];
		if (i || w->nmeta)
			lf_buf_addch(h, ',');
		serde_string(h, t->name);
		lf_buf_addf(h, ":{\"dtype\":\"%s\",\"shape\":[", dtypes[t->dtype].name);
		for (int d = 0; d < t->ndim; d++) {
			if (d)
				lf_buf_addch(h, ',');
			lf_buf_add_uint(h, (unsigned long long)t->shape[d]);
		}
		lf_buf_addstr(h, "],\"data_offsets\":[");
		lf_buf_add_uint(h, at);
		lf_buf_addch(h, ',');
		lf_buf_add_uint(h, at + t->nbytes);
		lf_buf_addstr(h, "]}");
		at += t->nbytes;
	}
	lf_buf_addch(h, '}');
	while (h->len % 8)
		lf_buf_addch(h, ' ');
	uint64_t len = h->len - 8;
	for (int i = 0; i < 8; i++)
		h->data[i] = (char)(len >> (8 * i));
}

/* Write (not yet commit) one file; flushed so that write errors show now. */
static int write_shard(const struct lf_st_writer *w, struct lf_output *o, const char *path, size_t *idx, size_t n)
{
	qsort_r(idx, n, sizeof *idx, write_order, w->t);
	struct lf_buf h = LF_BUF_INIT;
	shard_header(w, idx, n, &h);
	if (lf_output_open(o, path) < 0) {
		lf_buf_free(&h);
		return -1;
	}
	fwrite(h.data, 1, h.len, o->f);
	lf_buf_free(&h);
	for (size_t i = 0; i < n; i++)
		if (w->t[idx[i]].nbytes)
			fwrite(w->t[idx[i]].data, 1, w->t[idx[i]].nbytes, o->f);
	if (ferror(o->f) || fflush(o->f) != 0 || fsync(fileno(o->f)) != 0)
		return lf_fail("%s: write failed: %s", path, strerror(errno));
	return 0;
}

/* base.safetensors.index.json as transformers writes it: json.dumps(index,
 * indent=2, sort_keys=True) + "\n". */
static int write_index(const struct lf_st_writer *w, struct lf_output *o, const char *path, char **shard_names)
{
	size_t *idx = lf_malloc((w->n + 1) * sizeof *idx);
	uint64_t total = 0;
	for (size_t i = 0; i < w->n; i++) {
		idx[i] = i;
		total += w->t[i].nbytes;
	}
	qsort_r(idx, w->n, sizeof *idx, name_order, w->t);
	struct lf_buf b = LF_BUF_INIT;
	lf_buf_addstr(&b, "{\n  \"metadata\": {\n    \"total_size\": ");
	lf_buf_add_uint(&b, total);
	lf_buf_addstr(&b, "\n  },\n  \"weight_map\": {");
	for (size_t i = 0; i < w->n; i++) {
		lf_buf_addstr(&b, i ? ",\n    " : "\n    ");
		py_ascii_string(&b, w->t[idx[i]].name);
		lf_buf_addstr(&b, ": ");
		py_ascii_string(&b, shard_names[w->t[idx[i]].shard]);
	}
	lf_buf_addstr(&b, w->n ? "\n  }\n}\n" : "}\n}\n");
	free(idx);
	int rc = lf_output_open(o, path);
	if (rc == 0) {
		fwrite(b.data, 1, b.len, o->f);
		if (ferror(o->f) || fflush(o->f) != 0 || fsync(fileno(o->f)) != 0)
			rc = lf_fail("%s: write failed: %s", path, strerror(errno));
	}
	lf_buf_free(&b);
	return rc;
}

int lf_st_writer_finish(struct lf_st_writer *w)
{
	/* huggingface_hub's split: in add order, a new shard when the next
	 * tensor would take the current one past the limit */
	unsigned nshards = 0;
	uint64_t size = 0;
	for (size_t i = 0; i < w->n; i++) {
		if (nshards == 0 || (w->max_shard && size && size + w->t[i].nbytes > w->max_shard)) {
			nshards++;
			size = 0;
		}
		w->t[i].shard = nshards - 1;
		size += w->t[i].nbytes;
	}
	if (nshards == 0)
		nshards = 1;
	char **names = lf_calloc(nshards, sizeof *names);
	struct lf_output *out = lf_calloc(nshards + 1, sizeof *out);
	size_t nout = 0;
	struct lf_buf path = LF_BUF_INIT;
	size_t *idx = lf_malloc((w->n + 1) * sizeof *idx);
	int rc = 0;
	for (unsigned s = 0, first = 0; s < nshards && rc == 0; s++) {
		struct lf_buf nb = LF_BUF_INIT;
		if (nshards == 1)
			lf_buf_addf(&nb, "%s.safetensors", w->base);
		else
			lf_buf_addf(&nb, "%s-%05u-of-%05u.safetensors", w->base, s + 1, nshards);
		names[s] = lf_buf_detach(&nb, NULL);
		size_t n = 0;
		while (first + n < w->n && w->t[first + n].shard == s) {
			idx[n] = first + n;
			n++;
		}
		first += (unsigned)n;
		lf_buf_reset(&path);
		lf_buf_addf(&path, "%s/%s", w->dir, names[s]);
		rc = write_shard(w, &out[nout], path.data, idx, n);
		if (out[nout].f)
			nout++;
	}
	if (rc == 0 && nshards > 1) {
		lf_buf_reset(&path);
		lf_buf_addf(&path, "%s/%s.safetensors.index.json", w->dir, w->base);
		rc = write_index(w, &out[nout], path.data, names);
		if (out[nout].f)
			nout++;
	}
	/* every file is complete: rename them into place, the index last */
	size_t done = 0;
	for (; done < nout && rc == 0; done++)
		rc = lf_output_commit(&out[done]);
	for (size_t i = done; i < nout; i++)
		lf_output_abort(&out[i]);
	for (unsigned s = 0; s < nshards; s++)
		free(names[s]);
	free(names);
	free(out);
	free(idx);
	lf_buf_free(&path);
	lf_st_writer_abort(w);
	return rc;
}

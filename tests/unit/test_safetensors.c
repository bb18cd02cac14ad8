/*
 * test_safetensors.c — safetensors written and read back (one file and
 * sharded folders, every dtype, 0-d and empty tensors, metadata), the
 * exact bytes of a small file, f16/bf16 conversions, atomic writes; and the
 * reader's refusal of every kind of bad header, truncation or overlap with
 * a message naming the file and the tensor (plus random damage that must
 * never crash it).
 */
#include "check.h"
#include "error.h"
#include "safetensors.h"

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[] = "/tmp/lf-test-safetensors-XXXXXX";

static char *path_of(const char *name)
{
	static char p[4][512];
	static int k;
	k = (k + 1) % 4;
	snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
	return p[k];
}

static void write_bytes(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(p, 1, n, f) != n) {
		perror(path);
		exit(2);
	}
	fclose(f);
}

static unsigned char *read_bytes(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	*n = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	unsigned char *b = malloc(*n + 1);
	if (fread(b, 1, *n, f) != *n)
		*n = 0;
	fclose(f);
	return b;
}

/* A file of header json (length-prefixed) and data. */
static const char *make_file(const char *name, const char *json, const void *data, size_t n)
{
	size_t h = strlen(json);
	unsigned char *b = malloc(8 + h + n + 1);
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)((uint64_t)h >> (8 * i));
	memcpy(b + 8, json, h);
	if (n)
		memcpy(b + 8 + h, data, n);
	const char *p = path_of(name);
	write_bytes(p, b, 8 + h + n);
	free(b);
	return p;
}

static void rm_dir(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return;
	struct dirent *e;
	char f[1024];
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(f, sizeof f, "%s/%s", path, e->d_name);
		struct stat sb;
		if (lstat(f, &sb) == 0 && S_ISDIR(sb.st_mode))
			rm_dir(f);
		else
			unlink(f);
	}
	closedir(d);
	rmdir(path);
}

/* The names in a folder, sorted, joined by spaces. */
static void list_dir(const char *path, char *out, size_t cap)
{
	char names[64][256];
	int n = 0;
	DIR *d = opendir(path);
	struct dirent *e;
	while (d && (e = readdir(d)) && n < 64)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			snprintf(names[n++], sizeof names[0], "%s", e->d_name);
	if (d)
		closedir(d);
	qsort(names, (size_t)n, sizeof names[0], (int (*)(const void *, const void *))strcmp);
	out[0] = 0;
	for (int i = 0; i < n; i++)
		snprintf(out + strlen(out), cap - strlen(out), "%s%s", i ? " " : "", names[i]);
}

/* ---- round trips ---- */

struct spec {
	const char *name;
	enum lf_dtype dtype;
	int ndim;
	int64_t shape[LF_TENSOR_MAX_DIMS];
	unsigned char *data;
	size_t nbytes;
	float *expect; /* the values as f32 */
};

static uint64_t rng = 88172645463325252ull;

static uint32_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)rng;
}

/* Data for a tensor whose values convert to f32 exactly and predictably:
 * small integers in every type (so the expected f32 is known). */
static void fill(struct spec *s, float *expect)
{
	size_t n = 1;
	for (int d = 0; d < s->ndim; d++)
		n *= (size_t)s->shape[d];
	s->nbytes = n * lf_dtype_size(s->dtype);
	s->data = malloc(s->nbytes + 1);
	for (size_t i = 0; i < n; i++) {
		int v = (int)(next() % 200) - 100;
		unsigned char *p = s->data + i * lf_dtype_size(s->dtype);
		switch (s->dtype) {
		case LF_DTYPE_F32: {
			float x = (float)v / 4;
			memcpy(p, &x, 4);
			expect[i] = x;
			break;
		}
		case LF_DTYPE_F64: {
			double x = (double)v / 8;
			memcpy(p, &x, 8);
			expect[i] = (float)x;
			break;
		}
		case LF_DTYPE_BF16: {
			float x = (float)v / 2;
			uint32_t u;
			memcpy(&u, &x, 4);
			uint16_t h = (uint16_t)(u >> 16);
			memcpy(p, &h, 2);
			expect[i] = x;
			break;
		}
		case LF_DTYPE_F16: {
			/* v/2 as binary16: |v| < 128, so exponent and 10-bit mantissa */
			float x = (float)v / 2;
			uint16_t h = 0;
			if (x != 0) {
				float a = fabsf(x);
				int e;
				float m = frexpf(a, &e); /* a = m * 2^e, m in [0.5, 1) */
				h = (uint16_t)((x < 0 ? 0x8000 : 0) | (unsigned)(e - 1 + 15) << 10 |
					       ((unsigned)(m * 2048) & 0x3ff));
			}
			memcpy(p, &h, 2);
			expect[i] = x;
			break;
		}
		case LF_DTYPE_I8: {
			int8_t x = (int8_t)v;
			memcpy(p, &x, 1);
			expect[i] = x;
			break;
		}
		case LF_DTYPE_U8: {
			uint8_t x = (uint8_t)(v + 100);
			memcpy(p, &x, 1);
			expect[i] = x;
			break;
		}
		case LF_DTYPE_I16: {
			int16_t x = (int16_t)(v * 300);
			memcpy(p, &x, 2);
			expect[i] = x;
			break;
		}
		case LF_DTYPE_I32: {
			int32_t x = v * 100000;
			memcpy(p, &x, 4);
			expect[i] = (float)x;
			break;
		}
		case LF_DTYPE_I64: {
			int64_t x = (int64_t)v * ((int64_t)1 << 40);
			memcpy(p, &x, 8);
			expect[i] = (float)x;
			break;
		}
		case LF_DTYPE_BOOL: {
			uint8_t x = v > 0;
			memcpy(p, &x, 1);
			expect[i] = x;
			break;
		}
		default:
			break;
		}
	}
}

static void make_specs(struct spec *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		size_t numel = 1;
		for (int d = 0; d < s[i].ndim; d++)
			numel *= (size_t)s[i].shape[d];
		s[i].expect = malloc((numel + 1) * sizeof(float));
		fill(&s[i], s[i].expect);
	}
}

static void free_specs(struct spec *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(s[i].data);
		free(s[i].expect);
	}
}

/* Every tensor of specs is in st with its dtype, shape, bytes and values. */
static bool same_tensors(const struct lf_safetensors *st, const struct spec *s, size_t n, const char *what)
{
	bool ok = lf_safetensors_count(st) == n;
	for (size_t i = 0; ok && i < n; i++) {
		const struct lf_tensor *t = lf_safetensors_find(st, s[i].name);
		ok = t && t->dtype == s[i].dtype && t->ndim == s[i].ndim && t->nbytes == s[i].nbytes;
		for (int d = 0; ok && d < s[i].ndim; d++)
			ok = t->shape[d] == s[i].shape[d];
		ok = ok && (!t->nbytes || !memcmp(t->data, s[i].data, t->nbytes));
		/* naturally aligned in the mapping */
		ok = ok && (uintptr_t)t->data % lf_dtype_size(t->dtype) == 0;
		if (ok) {
			size_t numel = lf_tensor_numel(t);
			float *f = malloc((numel + 1) * sizeof *f);
			lf_tensor_to_f32(t, f);
			for (size_t k = 0; ok && k < numel; k++)
				ok = f[k] == s[i].expect[k];
			free(f);
		}
		if (!ok)
			printf("# %s: tensor '%s' differs\n", what, s[i].name);
	}
	return ok;
}

static int write_specs(const char *out, uint64_t max, const struct spec *s, size_t n, const char *const *meta)
{
	struct lf_st_writer *w = lf_st_writer_open(out, "model", max, meta);
	if (!w)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (lf_st_writer_add(w, s[i].name, s[i].dtype, s[i].ndim, s[i].shape, s[i].data) < 0) {
			lf_st_writer_abort(w);
			return -1;
		}
	return lf_st_writer_finish(w);
}

static struct spec specs[] = {
	{ "f32", LF_DTYPE_F32, 2, { 3, 5 } },
	{ "f16", LF_DTYPE_F16, 1, { 7 } },
	{ "bf16", LF_DTYPE_BF16, 3, { 2, 3, 2 } },
	{ "f64", LF_DTYPE_F64, 1, { 5 } },
	{ "i8", LF_DTYPE_I8, 1, { 9 } },
	{ "u8", LF_DTYPE_U8, 1, { 3 } },
	{ "i16", LF_DTYPE_I16, 2, { 2, 2 } },
	{ "i32", LF_DTYPE_I32, 1, { 3 } },
	{ "i64", LF_DTYPE_I64, 1, { 4 } },
	{ "bool", LF_DTYPE_BOOL, 1, { 11 } },
	{ "scalar", LF_DTYPE_F32, 0, { 0 } },
	{ "empty", LF_DTYPE_F16, 2, { 0, 4 } },
	{ "empty.i64", LF_DTYPE_I64, 1, { 0 } },
	{ "layers.10.w", LF_DTYPE_BF16, 8, { 1, 2, 1, 2, 1, 2, 1, 3 } },
	{ "layers.2.w", LF_DTYPE_BF16, 2, { 4, 4 } },
	{ "model.embed_tokens.weight", LF_DTYPE_F32, 2, { 16, 8 } },
};
#define NSPECS (sizeof specs / sizeof specs[0])

static void test_single(void)
{
	static const char *const meta[] = { "format", "pt", "note", "a \"quoted\"\n\tvalue \xc3\xa9", NULL };
	char *out = path_of("single");
	CHECK(write_specs(out, 0, specs, NSPECS, meta) == 0, "single file written: %s", lf_errmsg());
	char names[4096];
	list_dir(out, names, sizeof names);
	CHECK(!strcmp(names, "model.safetensors"), "single file: only model.safetensors in the folder (%s)", names);
	struct lf_safetensors *st = lf_safetensors_open(out);
	if (!CHECK(st != NULL, "single file read from its folder: %s", st ? "" : lf_errmsg()))
		return;
	CHECK(same_tensors(st, specs, NSPECS, "single"), "single file: every dtype, 0-d, empty, 8-d round trip");
	const char *v = lf_safetensors_metadata(st, "note");
	CHECK(v && !strcmp(v, meta[3]), "single file: metadata with escapes and UTF-8 kept");
	CHECK(lf_safetensors_metadata(st, "format") && !strcmp(lf_safetensors_metadata(st, "format"), "pt"),
	      "single file: format pt");
	CHECK(!lf_safetensors_metadata(st, "absent"), "single file: absent metadata key is NULL");
	CHECK(!lf_safetensors_find(st, "nope"), "find of an absent name is NULL");
	/* file order: widest dtype first, names bytewise */
	const char *order[] = { "empty.i64", "i64", "f64", "f32", "model.embed_tokens.weight", "scalar", "i32" };
	bool ok = true;
	for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
		ok = ok && !strcmp(lf_safetensors_at(st, i)->name, order[i]);
	ok = ok && !strcmp(lf_safetensors_at(st, 7)->name, "bf16") &&
	     !strcmp(lf_safetensors_at(st, 8)->name, "layers.10.w") &&
	     !strcmp(lf_safetensors_at(st, 9)->name, "layers.2.w") &&
	     !strcmp(lf_safetensors_at(st, NSPECS - 1)->name, "bool");
	CHECK(ok, "single file: tensors ordered by dtype width, then name (the Rust writer's order)");

	int64_t want[2] = { 16, 8 }, any[2] = { -1, 8 }, bad[2] = { 16, 9 };
	CHECK(lf_safetensors_expect(st, "model.embed_tokens.weight", 2, want) != NULL, "expect: exact shape");
	CHECK(lf_safetensors_expect(st, "model.embed_tokens.weight", 2, any) != NULL, "expect: -1 matches any size");
	CHECK(!lf_safetensors_expect(st, "model.embed_tokens.weight", 2, bad) &&
		      strstr(lf_errmsg(), "model.safetensors: tensor 'model.embed_tokens.weight': shape [16, 8], "
					  "expected [16, 9]"),
	      "expect: wrong shape names file, tensor and shapes (%s)", lf_errmsg());
	CHECK(!lf_safetensors_expect(st, "model.norm.weight", 1, want) &&
		      strstr(lf_errmsg(), "missing tensor 'model.norm.weight'"),
	      "expect: missing tensor (%s)", lf_errmsg());
	CHECK(!lf_safetensors_expect(st, "f32", 1, want), "expect: wrong number of dimensions");
	lf_safetensors_close(st);

	st = lf_safetensors_open(path_of("single/model.safetensors"));
	CHECK(st && lf_safetensors_count(st) == NSPECS, "single file read by its path");
	lf_safetensors_close(st);
}

/* The test vector of hf-formats.md: F32 [2] = 1, 2, no metadata, 72 bytes. */
static void test_bytes(void)
{
	char *out = path_of("vector");
	float v[2] = { 1, 2 };
	int64_t shape[1] = { 2 };
	struct lf_st_writer *w = lf_st_writer_open(out, "model", 0, NULL);
	lf_st_writer_add(w, "a", LF_DTYPE_F32, 1, shape, v);
	CHECK(lf_st_writer_finish(w) == 0, "test vector written");
	static const char want[] = "\x38\0\0\0\0\0\0\0{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}"
				   "  \0\0\x80\x3f\0\0\0\x40";
	size_t n;
	unsigned char *got = read_bytes(path_of("vector/model.safetensors"), &n);
	CHECK(got && n == 72 && !memcmp(got, want, 72), "test vector: the exact 72 bytes");
	free(got);

	/* an empty writer: a valid file with no tensors ("{}" padded to 8) */
	w = lf_st_writer_open(path_of("nothing"), "model", 0, NULL);
	CHECK(lf_st_writer_finish(w) == 0, "empty writer finishes");
	got = read_bytes(path_of("nothing/model.safetensors"), &n);
	CHECK(got && n == 16 && !memcmp(got, "\x08\0\0\0\0\0\0\0{}      ", 16), "empty writer: {} padded to 8");
	free(got);
	struct lf_safetensors *st = lf_safetensors_open(path_of("nothing"));
	CHECK(st && lf_safetensors_count(st) == 0, "no tensors read back");
	lf_safetensors_close(st);
}

static void test_sharded(void)
{
	/* sizes in add order: 40 40 40 100 10; limit 96 ->
	 * [40 40] [40] [100] [10] */
	static struct spec s[] = {
		{ "b.first", LF_DTYPE_F32, 1, { 10 } }, { "a.second", LF_DTYPE_F64, 1, { 5 } },
		{ "z.third", LF_DTYPE_I32, 1, { 10 } }, { "big", LF_DTYPE_BF16, 2, { 5, 10 } },
		{ "tail", LF_DTYPE_I16, 1, { 5 } },
	};
	make_specs(s, 5);
	char *out = path_of("sharded");
	static const char *const meta[] = { "format", "pt", NULL };
	CHECK(write_specs(out, 96, s, 5, meta) == 0, "sharded written: %s", lf_errmsg());
	char names[4096];
	list_dir(out, names, sizeof names);
	CHECK(!strcmp(names, "model-00001-of-00004.safetensors model-00002-of-00004.safetensors "
			     "model-00003-of-00004.safetensors model-00004-of-00004.safetensors "
			     "model.safetensors.index.json"),
	      "sharded: four shards and the index, no temporaries (%s)", names);
	size_t n;
	char *index = (char *)read_bytes(path_of("sharded/model.safetensors.index.json"), &n);
	static const char want[] = "{\n"
				   "  \"metadata\": {\n"
				   "    \"total_size\": 230\n"
				   "  },\n"
				   "  \"weight_map\": {\n"
				   "    \"a.second\": \"model-00001-of-00004.safetensors\",\n"
				   "    \"b.first\": \"model-00001-of-00004.safetensors\",\n"
				   "    \"big\": \"model-00003-of-00004.safetensors\",\n"
				   "    \"tail\": \"model-00004-of-00004.safetensors\",\n"
				   "    \"z.third\": \"model-00002-of-00004.safetensors\"\n"
				   "  }\n"
				   "}\n";
	CHECK(index && n == strlen(want) && !memcmp(index, want, n), "sharded: index as transformers writes it");
	free(index);
	struct lf_safetensors *st = lf_safetensors_open(out);
	if (CHECK(st != NULL, "sharded folder read: %s", st ? "" : lf_errmsg())) {
		CHECK(same_tensors(st, s, 5, "sharded"), "sharded: round trip");
		const struct lf_tensor *t = lf_safetensors_find(st, "big");
		CHECK(t && strstr(t->file, "model-00003-of-00004.safetensors"), "sharded: a tensor knows its file");
		CHECK(!strcmp(lf_safetensors_at(st, 0)->name, "a.second") &&
			      !strcmp(lf_safetensors_at(st, 4)->name, "tail"),
		      "sharded: tensors in shard order");
		CHECK(lf_safetensors_metadata(st, "format") != NULL, "sharded: metadata of the first shard");
		lf_safetensors_close(st);
	}
	st = lf_safetensors_open(path_of("sharded/model.safetensors.index.json"));
	CHECK(st && lf_safetensors_count(st) == 5, "sharded: read through the index's path");
	lf_safetensors_close(st);

	/* one tensor above the limit alone: a single file */
	CHECK(write_specs(path_of("onebig"), 8, &s[3], 1, NULL) == 0, "one big tensor written");
	list_dir(path_of("onebig"), names, sizeof names);
	CHECK(!strcmp(names, "model.safetensors"), "one tensor over the limit: model.safetensors (%s)", names);
	/* a limit that takes everything: one file */
	CHECK(write_specs(path_of("fits"), 230, s, 5, NULL) == 0 &&
		      (list_dir(path_of("fits"), names, sizeof names), !strcmp(names, "model.safetensors")),
	      "tensors that fit the limit exactly: one file (%s)", names);
	free_specs(s, 5);
}

/* A shard that cannot be written: nothing under a final name, no temporaries. */
static void test_atomic(void)
{
	static struct spec s[] = {
		{ "a", LF_DTYPE_F32, 1, { 10 } },
		{ "b", LF_DTYPE_F32, 1, { 10 } },
	};
	make_specs(s, 2);
	char *out = path_of("atomic");
	mkdir(out, 0777);
	mkdir(path_of("atomic/model-00002-of-00002.safetensors"), 0777);
	CHECK(write_specs(out, 40, s, 2, NULL) < 0 && strstr(lf_errmsg(), "model-00002-of-00002.safetensors"),
	      "atomic: an unwritable second shard fails (%s)", lf_errmsg());
	char names[4096];
	list_dir(out, names, sizeof names);
	CHECK(!strcmp(names, "model-00002-of-00002.safetensors"),
	      "atomic: the first shard was not renamed into place, its temporary removed (%s)", names);
	rmdir(path_of("atomic/model-00002-of-00002.safetensors"));

	/* a bad add leaves the writer usable */
	struct lf_st_writer *w = lf_st_writer_open(out, "model", 0, NULL);
	int64_t neg[1] = { -1 }, big[2] = { INT64_MAX, 4 }, one[1] = { 10 };
	CHECK(lf_st_writer_add(w, "x", LF_DTYPE_F32, 1, neg, s[0].data) < 0, "add: negative size refused");
	CHECK(lf_st_writer_add(w, "x", LF_DTYPE_F32, 2, big, s[0].data) < 0, "add: overflowing shape refused");
	CHECK(lf_st_writer_add(w, "x", LF_DTYPE_F32, 9, one, s[0].data) < 0, "add: 9 dimensions refused");
	CHECK(lf_st_writer_add(w, "__metadata__", LF_DTYPE_F32, 1, one, s[0].data) < 0, "add: __metadata__ refused");
	CHECK(lf_st_writer_add(w, "x", LF_DTYPE_F32, 1, one, s[0].data) == 0 &&
		      lf_st_writer_add(w, "x", LF_DTYPE_F32, 1, one, s[0].data) < 0 && strstr(lf_errmsg(), "'x'"),
	      "add: a name added twice refused");
	CHECK(lf_st_writer_finish(w) == 0, "writer finishes after refused adds");
	struct lf_safetensors *st = lf_safetensors_open(out);
	CHECK(st && lf_safetensors_count(st) == 1, "only the accepted tensor written");
	lf_safetensors_close(st);
	free_specs(s, 2);
}

static float bits_f32(uint32_t u)
{
	float x;
	memcpy(&x, &u, 4);
	return x;
}

static void test_convert(void)
{
	static const uint16_t h[] = { 0x0001, 0x03ff, 0x0400, 0x3c00, 0xc000, 0x7bff, 0x7c00, 0xfc00, 0x8000, 0x3555, 0x7e00 };
	float want[] = { 0x1p-24f, 1023 * 0x1p-24f, 0x1p-14f, 1, -2, 65504, INFINITY, -INFINITY, -0.0f,
			 0.333251953125f, NAN };
	struct lf_tensor t = { .name = "h", .dtype = LF_DTYPE_F16, .ndim = 1, .shape = { 11 }, .data = h };
	float f[11];
	lf_tensor_to_f32(&t, f);
	bool ok = true;
	for (int i = 0; i < 10; i++)
		ok = ok && f[i] == want[i] && signbit(f[i]) == signbit(want[i]);
	CHECK(ok && isnan(f[10]), "f16: subnormals, normals, max, infinities, -0 and NaN");
	static const uint16_t b[] = { 0x3f80, 0xc040, 0x0001, 0x7f80, 0xff80, 0x7fc0, 0x8000 };
	t.dtype = LF_DTYPE_BF16;
	t.shape[0] = 7;
	t.data = b;
	lf_tensor_to_f32(&t, f);
	CHECK(f[0] == 1 && f[1] == -3 && f[2] == bits_f32(0x00010000) && isinf(f[3]) && f[3] > 0 && isinf(f[4]) &&
		      f[4] < 0 && isnan(f[5]) && f[6] == 0 && signbit(f[6]),
	      "bf16: exact upper halves of f32");
	/* unaligned data */
	unsigned char raw[17];
	double d = -1.5;
	memcpy(raw + 1, &d, 8);
	int64_t k = -(1ll << 53);
	memcpy(raw + 9, &k, 8);
	t.dtype = LF_DTYPE_F64;
	t.shape[0] = 1;
	t.data = raw + 1;
	lf_tensor_to_f32(&t, f);
	t.dtype = LF_DTYPE_I64;
	t.data = raw + 9;
	lf_tensor_to_f32(&t, f + 1);
	CHECK(f[0] == -1.5f && f[1] == -0x1p53f, "f64 and i64 read from unaligned addresses");
	CHECK(lf_dtype_parse("BF16", 4) == LF_DTYPE_BF16 && lf_dtype_parse("F8_E4M3", 7) < 0 &&
		      !strcmp(lf_dtype_name(LF_DTYPE_BOOL), "BOOL") && lf_dtype_size(LF_DTYPE_I64) == 8,
	      "dtype names and sizes");
}

/* ---- refusals ---- */

/* A file that must be refused with a message holding its name, `tensor`
 * (when given) and `what`. */
static void refused(const char *label, const char *path, const char *tensor, const char *what)
{
	struct lf_safetensors *st = lf_safetensors_open(path);
	const char *msg = lf_errmsg();
	const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	char tq[256] = "";
	if (tensor)
		snprintf(tq, sizeof tq, "'%s'", tensor);
	bool ok = !st && strstr(msg, base) && strstr(msg, tq) && strstr(msg, what) && !strchr(msg, '\n');
	CHECK(ok, "refused: %s (%s)", label, st ? "accepted" : msg);
	lf_safetensors_close(st);
}

static void bad_header(const char *label, const char *json, size_t data, const char *tensor, const char *what)
{
	static unsigned char zeros[256];
	char name[128];
	snprintf(name, sizeof name, "bad-%d.safetensors", (int)(next() % 1000000));
	refused(label, make_file(name, json, zeros, data), tensor, what);
}

#define T(json) "{\"t\":" json "}"
#define OK_T "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"

static void test_refusals(void)
{
	write_bytes(path_of("short.safetensors"), "\x10\0\0", 3);
	refused("file shorter than 8 bytes", path_of("short.safetensors"), NULL, "shorter");
	write_bytes(path_of("long.safetensors"), "\x40\0\0\0\0\0\0\0{}", 10);
	refused("header length beyond the file", path_of("long.safetensors"), NULL, "larger than the file");
	write_bytes(path_of("huge.safetensors"), "\x00\xe2\x04\x0c\0\0\0\0{}", 10);
	refused("header length over 100 MB", path_of("huge.safetensors"), NULL, "100 MB");
	write_bytes(path_of("max.safetensors"), "\xff\xff\xff\xff\xff\xff\xff\xff{}", 10);
	refused("header length 2^64-1", path_of("max.safetensors"), NULL, "100 MB");

	bad_header("malformed JSON (truncated object)", "{\"t\":{\"dtype\":\"F32\",", 0, "t", "header");
	bad_header("malformed JSON (missing colon)", "{\"t\" 1}", 0, NULL, "header: line 1 column 6: expected ':'");
	bad_header("malformed JSON (bad string)", "{\"t\":{\"dtype\":\"F\x01\"}}", 0, "t", "control character");
	bad_header("not an object (array)", "[1, 2]", 0, NULL, "not a JSON object");
	bad_header("not an object (string)", "\"x\"", 0, NULL, "not a JSON object");
	bad_header("empty header", "", 0, NULL, "not a JSON object");
	bad_header("text after the object", "{} x", 0, NULL, "after the JSON object");
	bad_header("tensor not an object", T("[1]"), 0, "t", "not an object");
	bad_header("unknown dtype", T("{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}"), 2, "t",
		   "unknown dtype 'F8_E4M3'");
	bad_header("dtype not a string", T("{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}"), 8, "t",
		   "dtype is not a string");
	bad_header("no dtype", T("{\"shape\":[2],\"data_offsets\":[0,8]}"), 8, "t", "no dtype");
	bad_header("no shape", T("{\"dtype\":\"F32\",\"data_offsets\":[0,8]}"), 8, "t", "no shape");
	bad_header("no data_offsets", T("{\"dtype\":\"F32\",\"shape\":[2]}"), 8, "t", "data_offsets");
	bad_header("shape not a list", T("{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}"), 8, "t",
		   "shape is not a list");
	bad_header("shape with a negative size", T("{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}"), 8,
		   "t", "negative");
	bad_header("shape with a fraction", T("{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}"), 8, "t",
		   "fraction");
	bad_header("shape with a string", T("{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}"), 8,
		   "t", "not a list of integers");
	bad_header("shape of 9 dimensions",
		   T("{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}"), 8, "t",
		   "more than 8");
	bad_header("shape size too large for 64 bits",
		   T("{\"dtype\":\"F32\",\"shape\":[9000000000000000000],\"data_offsets\":[0,8]}"), 8, "t",
		   "does not take");
	bad_header("shape whose byte size overflows",
		   T("{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}"), 0, "t",
		   "does not take");
	bad_header("shape with a 0 and a huge size", T("{\"dtype\":\"F32\",\"shape\":[0,99999999999999],"
						       "\"data_offsets\":[0,8]}"),
		   8, "t", "does not take");
	bad_header("integer too large", T("{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,8]}"),
		   8, "t", "too large");
	bad_header("data_offsets of one value", T("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8]}"), 8, "t",
		   "not [begin, end]");
	bad_header("data_offsets of three values", T("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}"),
		   8, "t", "more than 2");
	bad_header("data_offsets not a list", T("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":{}}"), 8, "t",
		   "not a list");
	bad_header("data_offsets end before begin", T("{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}"), 8,
		   "t", "end before");
	bad_header("data_offsets beyond the data (truncated)", T(OK_T), 4, "t", "truncated");
	bad_header("byte size not numel * dtype size", T("{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}"),
		   8, "t", "F32 [3] does not take the 8 bytes");
	bad_header("overlapping tensors",
		   "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		   "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
		   12, "b", "overlap tensor 'a'");
	bad_header("same bytes for two tensors",
		   "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		   "\"b\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
		   8, "b", "overlap");
	bad_header("a hole between tensors",
		   "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
		   "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
		   12, "b", "belong to no tensor");
	bad_header("bytes after the last tensor", T(OK_T), 12, NULL, "4 bytes after the last tensor");
	bad_header("the same name twice", "{\"t\":" OK_T ",\"t\":" OK_T "}", 8, "t", "twice");
	bad_header("__metadata__ with a number", "{\"__metadata__\":{\"k\":1}}", 0, NULL, "not a string");
	bad_header("__metadata__ not an object", "{\"__metadata__\":[]}", 0, NULL, "__metadata__ is not an object");
	bad_header("a NUL in a name", "{\"a\\u0000b\":" OK_T "}", 8, NULL, "NUL");

	/* what the Rust reader accepts */
	const char *p = make_file("lenient.safetensors",
				  " \n{\"__metadata__\":null,\"t\":{\"data_offsets\":[0,8],\"extra\":[1,{\"x\":2}],"
				  "\"shape\":[2],\"dtype\":\"F32\"}}\t\r\n   ",
				  "\0\0\x80\x3f\0\0\0\x40", 8);
	struct lf_safetensors *st = lf_safetensors_open(p);
	float f[2] = { 0, 0 };
	if (st && lf_safetensors_find(st, "t"))
		lf_tensor_to_f32(lf_safetensors_find(st, "t"), f);
	CHECK(st && f[0] == 1 && f[1] == 2, "accepted: blanks around the object, null metadata, any field order, "
					    "unknown fields (%s)",
	      st ? "" : lf_errmsg());
	lf_safetensors_close(st);
	p = make_file("empties.safetensors",
		      "{\"a\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[0,0]},"
		      "\"b\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
		      "\"c\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[0,1]}}",
		      "\x07", 1);
	st = lf_safetensors_open(p);
	CHECK(st && lf_safetensors_count(st) == 3 && lf_tensor_numel(lf_safetensors_find(st, "a")) == 0 &&
		      lf_tensor_numel(lf_safetensors_find(st, "c")) == 1,
	      "accepted: empty tensors sharing an offset, a scalar");
	lf_safetensors_close(st);

	refused("a missing file", path_of("absent.safetensors"), NULL, "cannot open");
	mkdir(path_of("emptydir"), 0777);
	refused("a folder without either file", path_of("emptydir"), NULL,
		"no model.safetensors or model.safetensors.index.json");
}

static void write_index(const char *folder, const char *text)
{
	char p[512];
	snprintf(p, sizeof p, "%s/model.safetensors.index.json", folder);
	write_bytes(p, text, strlen(text));
}

static void test_bad_shards(void)
{
	static const char f32x2[8] = "\0\0\x80\x3f\0\0\0\x40";
	mkdir(path_of("shards"), 0777);
	make_file("shards/one.safetensors", "{\"a\":" OK_T ",\"b\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[8,9]}}",
		  "\0\0\x80\x3f\0\0\0\x40\x01", 9);
	make_file("shards/two.safetensors", "{\"c\":" OK_T "}", f32x2, 8);
	make_file("shards/dup.safetensors", "{\"a\":" OK_T "}", f32x2, 8);
	make_file("shards/broken.safetensors", "{\"d\":" OK_T "}", f32x2, 4);
	const char *dirp = path_of("shards");
	write_index(dirp, "{\"metadata\":{},\"weight_map\":{\"a\":\"one.safetensors\",\"b\":\"one.safetensors\","
			  "\"c\":\"two.safetensors\"}}");
	struct lf_safetensors *st = lf_safetensors_open(dirp);
	CHECK(st && lf_safetensors_count(st) == 3 && lf_safetensors_find(st, "c"), "hand-made index read (%s)",
	      st ? "" : lf_errmsg());
	lf_safetensors_close(st);
	const char *ix = "model.safetensors.index.json";
	write_index(dirp, "{\"weight_map\":{\"a\":\"one.safetensors\",\"c\":\"one.safetensors\"}}");
	refused("index names a tensor of a file it does not list", dirp, "c", ix);
	write_index(dirp, "{\"weight_map\":{\"a\":\"one.safetensors\",\"c\":\"one.safetensors\","
			  "\"b\":\"two.safetensors\"}}");
	refused("index names a tensor in the wrong file", dirp, "c", "is in");
	write_index(dirp, "{\"weight_map\":{\"a\":\"one.safetensors\",\"x\":\"two.safetensors\"}}");
	refused("index names a tensor its file lacks", dirp, "x", "is not in");
	write_index(dirp, "{\"weight_map\":{\"a\":\"one.safetensors\",\"z\":\"three.safetensors\"}}");
	refused("index names a missing file", dirp, NULL, "three.safetensors: cannot open");
	write_index(dirp, "{\"weight_map\":{\"a\":\"one.safetensors\",\"x\":\"dup.safetensors\"}}");
	refused("a name in two shards", dirp, "a", "is also in");
	write_index(dirp, "{\"weight_map\":{\"d\":\"broken.safetensors\"}}");
	refused("a truncated shard", dirp, "d", "broken.safetensors");
	write_index(dirp, "{\"weight_map\":{\"a\":\"one.safetensors\",");
	refused("malformed index JSON", dirp, NULL, ix);
	write_index(dirp, "{\"metadata\":{}}");
	refused("index without weight_map", dirp, NULL, "weight_map");
	write_index(dirp, "{\"weight_map\":{}}");
	refused("index with an empty weight_map", dirp, NULL, "empty");
	write_index(dirp, "{\"weight_map\":{\"a\":3}}");
	refused("index file not a string", dirp, "a", "not a string");
	write_index(dirp, "{\"weight_map\":{\"a\":\"../one.safetensors\"}}");
	refused("index file outside the folder", dirp, "a", "bad file name");
}

/* Damaged copies of a good file: refused or read, never a crash (ASan). */
static void test_damage(void)
{
	size_t n;
	unsigned char *good = read_bytes(path_of("single/model.safetensors"), &n);
	if (!good)
		return;
	uint64_t hlen = 0;
	for (int i = 7; i >= 0; i--)
		hlen = hlen << 8 | good[i];
	unsigned char *b = malloc(n);
	int opened = 0, tries = 3000;
	for (int k = 0; k < tries; k++) {
		memcpy(b, good, n);
		size_t len = n;
		int flips = 1 + (int)(next() % 4);
		for (int j = 0; j < flips; j++) {
			size_t at = next() % (8 + hlen);
			unsigned r = next() % 3;
			b[at] = r == 0 ? (unsigned char)next() : r == 1 ? (unsigned char)"{}[]\",:0123456789- "[next() % 20] :
								   (unsigned char)(b[at] ^ (1u << (next() % 8)));
		}
		if (k % 5 == 0)
			len = next() % n;
		write_bytes(path_of("damaged.safetensors"), b, len);
		struct lf_safetensors *st = lf_safetensors_open(path_of("damaged.safetensors"));
		if (st) {
			opened++;
			for (size_t i = 0; i < lf_safetensors_count(st); i++) {
				const struct lf_tensor *t = lf_safetensors_at(st, i);
				float *f = malloc((lf_tensor_numel(t) + 1) * sizeof *f);
				lf_tensor_to_f32(t, f);
				free(f);
			}
			lf_safetensors_close(st);
		} else if (!strstr(lf_errmsg(), "damaged.safetensors")) {
			CHECK(false, "damaged file: the message names the file (%s)", lf_errmsg());
			break;
		}
	}
	CHECK(true, "%d damaged copies refused or read without a crash (%d read)", tries, opened);
	free(b);
	free(good);
}

int main(void)
{
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 2;
	}
	make_specs(specs, NSPECS);
	test_single();
	test_bytes();
	test_sharded();
	test_atomic();
	test_convert();
	test_refusals();
	test_bad_shards();
	test_damage();
	free_specs(specs, NSPECS);
	rm_dir(dir);
	return check_done();
}

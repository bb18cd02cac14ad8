/*
 * st-dump — test helper: libcommon/safetensors read and written from the
 * command line, for tests/tools/safetensors_oracle.py to compare with the
 * safetensors Python package.
 *
 *   st-dump read PATH [KEY...]
 *       one JSON object on stdout: {"tensors": [{"name", "dtype", "shape",
 *       "file" (its base name), "bits": [the f32 bit pattern of each
 *       element, as lf_tensor_to_f32 gives it]}...] in the reader's order,
 *       "metadata": {KEY: value or null}}
 *   st-dump write DIR BASE MAX_SHARD_BYTES SPEC.json
 *       writes what SPEC describes: {"metadata": [[key, value]...],
 *       "tensors": [{"name", "dtype", "shape", "hex": the raw bytes}...]}
 *
 * Errors go to stderr as "st-dump: error: MESSAGE" with exit status 1.
 */
#include "error.h"
#include "safetensors.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int dump(int argc, char **argv)
{
	struct lf_safetensors *st = lf_safetensors_open(argv[2]);
	if (!st)
		lf_die("%s", lf_errmsg());
	json_t *tensors = json_array();
	for (size_t i = 0; i < lf_safetensors_count(st); i++) {
		const struct lf_tensor *t = lf_safetensors_at(st, i);
		json_t *shape = json_array(), *bits = json_array();
		for (int d = 0; d < t->ndim; d++)
			json_array_append_new(shape, json_integer(t->shape[d]));
		size_t n = lf_tensor_numel(t);
		float *f = lf_malloc((n + 1) * sizeof *f);
		lf_tensor_to_f32(t, f);
		for (size_t k = 0; k < n; k++) {
			uint32_t u;
			memcpy(&u, &f[k], sizeof u);
			json_array_append_new(bits, json_integer(u));
		}
		free(f);
		const char *slash = strrchr(t->file, '/');
		json_array_append_new(tensors, json_pack("{s:s, s:s, s:o, s:s, s:o}", "name", t->name, "dtype",
							 lf_dtype_name(t->dtype), "shape", shape, "file",
							 slash ? slash + 1 : t->file, "bits", bits));
	}
	json_t *meta = json_object();
	for (int i = 3; i < argc; i++) {
		const char *v = lf_safetensors_metadata(st, argv[i]);
		json_object_set_new(meta, argv[i], v ? json_string(v) : json_null());
	}
	json_t *out = json_pack("{s:o, s:o}", "tensors", tensors, "metadata", meta);
	json_dumpf(out, stdout, JSON_COMPACT);
	putchar('\n');
	json_decref(out);
	lf_safetensors_close(st);
	return 0;
}

static unsigned char *unhex(const char *s, size_t *n)
{
	size_t len = strlen(s);
	if (len % 2)
		lf_die("odd hex string");
	unsigned char *b = lf_malloc(len / 2 + 1);
	for (size_t i = 0; i < len / 2; i++) {
		unsigned v;
		if (sscanf(s + 2 * i, "%2x", &v) != 1)
			lf_die("bad hex string");
		b[i] = (unsigned char)v;
	}
	*n = len / 2;
	return b;
}

static int write_spec(char **argv)
{
	json_error_t err;
	json_t *spec = json_load_file(argv[5], 0, &err);
	if (!spec)
		lf_die("%s: line %d: %s", argv[5], err.line, err.text);
	json_t *pairs = json_object_get(spec, "metadata"), *tensors = json_object_get(spec, "tensors");
	size_t nmeta = json_array_size(pairs);
	const char **meta = lf_calloc(2 * nmeta + 1, sizeof *meta);
	for (size_t k = 0; k < nmeta; k++) {
		meta[2 * k] = json_string_value(json_array_get(json_array_get(pairs, k), 0));
		meta[2 * k + 1] = json_string_value(json_array_get(json_array_get(pairs, k), 1));
	}
	struct lf_st_writer *w = lf_st_writer_open(argv[2], argv[3], strtoull(argv[4], NULL, 10), nmeta ? meta : NULL);
	if (!w)
		lf_die("%s", lf_errmsg());
	size_t n = json_array_size(tensors);
	unsigned char **data = lf_calloc(n + 1, sizeof *data);
	for (size_t i = 0; i < n; i++) {
		json_t *t = json_array_get(tensors, i), *shape = json_object_get(t, "shape");
		const char *dt = json_string_value(json_object_get(t, "dtype"));
		int dtype = dt ? lf_dtype_parse(dt, strlen(dt)) : -1;
		if (dtype < 0)
			lf_die("tensor %zu: bad dtype", i);
		int64_t dims[LF_TENSOR_MAX_DIMS + 1];
		int ndim = (int)json_array_size(shape);
		for (int d = 0; d < ndim && d <= LF_TENSOR_MAX_DIMS; d++)
			dims[d] = json_integer_value(json_array_get(shape, (size_t)d));
		size_t len;
		const char *hex = json_string_value(json_object_get(t, "hex"));
		data[i] = unhex(hex ? hex : "", &len);
		size_t want = lf_dtype_size((enum lf_dtype)dtype);
		for (int d = 0; d < ndim && d <= LF_TENSOR_MAX_DIMS; d++)
			want *= (size_t)dims[d];
		if (ndim <= LF_TENSOR_MAX_DIMS && len != want)
			lf_die("tensor %zu: %zu bytes of data, its shape takes %zu", i, len, want);
		if (lf_st_writer_add(w, json_string_value(json_object_get(t, "name")), (enum lf_dtype)dtype, ndim, dims,
				     data[i]) < 0)
			lf_die("%s", lf_errmsg());
	}
	if (lf_st_writer_finish(w) < 0)
		lf_die("%s", lf_errmsg());
	for (size_t i = 0; i < n; i++)
		free(data[i]);
	free(data);
	free(meta);
	json_decref(spec);
	return 0;
}

int main(int argc, char **argv)
{
	lf_set_progname(argv[0]);
	if (argc >= 3 && !strcmp(argv[1], "read"))
		return dump(argc, argv);
	if (argc == 6 && !strcmp(argv[1], "write"))
		return write_spec(argv);
	lf_die_usage("usage: st-dump read PATH [KEY...] | st-dump write DIR BASE MAX_SHARD_BYTES SPEC.json");
}

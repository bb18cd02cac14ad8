/*
 * safetensors.h — Hugging Face safetensors files: reading them mapped into
 * memory (a single file, or a folder's model.safetensors or sharded
 * model-0000i-of-0000n.safetensors with model.safetensors.index.json) and
 * writing them atomically, sharded by size with the index.
 *
 * Format: u64 little-endian header length N, N bytes of JSON (an object:
 * tensor name -> {"dtype", "shape", "data_offsets": [begin, end]} relative
 * to the byte after the header, plus an optional "__metadata__" object of
 * string values), then the tensor bytes, row-major, little-endian.
 */
#ifndef LF_SAFETENSORS_H
#define LF_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum lf_dtype {
	LF_DTYPE_F32,
	LF_DTYPE_F16,
	LF_DTYPE_BF16,
	LF_DTYPE_F64,
	LF_DTYPE_I8,
	LF_DTYPE_U8,
	LF_DTYPE_I16,
	LF_DTYPE_I32,
	LF_DTYPE_I64,
	LF_DTYPE_BOOL,
	LF_DTYPE_COUNT
};

/* "F32", "BF16", ... as safetensors spells them; -1 for an unknown name. */
int lf_dtype_parse(const char *s, size_t n);
const char *lf_dtype_name(enum lf_dtype t);
size_t lf_dtype_size(enum lf_dtype t);

#define LF_TENSOR_MAX_DIMS 8

struct lf_tensor {
	const char *name;
	enum lf_dtype dtype;
	int ndim;
	int64_t shape[LF_TENSOR_MAX_DIMS];
	const void *data; /* in the mapping; not aligned beyond what the file gives */
	size_t nbytes;
	const char *file; /* the file it is in */
};

struct lf_safetensors;

/* Open path: a .safetensors file, or a folder holding model.safetensors or
 * model.safetensors.index.json (and its shards).  Checks every header:
 * JSON shape, known dtypes, offsets inside the file, sizes that match the
 * shapes, tensors that tile the data exactly (no overlap, hole or
 * trailing bytes, as the Rust reader requires), no duplicate names.  A
 * folder with both prefers model.safetensors, as transformers does; a
 * path ending in .json is read as an index.  NULL with lf_fail naming the
 * file and the tensor. */
struct lf_safetensors *lf_safetensors_open(const char *path);
void lf_safetensors_close(struct lf_safetensors *st);
/* Tensors in file order (shards sorted by file name), each file's in the
 * order of its header. */
size_t lf_safetensors_count(const struct lf_safetensors *st);
const struct lf_tensor *lf_safetensors_at(const struct lf_safetensors *st, size_t i);
/* NULL when absent. */
const struct lf_tensor *lf_safetensors_find(const struct lf_safetensors *st, const char *name);
/* The tensor with this name and shape (ndim values; -1 matches any size);
 * NULL with lf_fail ("model.safetensors: tensor 'x': shape [4, 8], expected
 * [4, 16]" or "... missing tensor 'x'"). */
const struct lf_tensor *lf_safetensors_expect(const struct lf_safetensors *st, const char *name, int ndim,
					      const int64_t *shape);
/* A __metadata__ value of the first file, or NULL. */
const char *lf_safetensors_metadata(const struct lf_safetensors *st, const char *key);

/* Tensor elements converted to f32 (F32, F16, BF16, F64 and the integer
 * types, BOOL as 0 or 1, rounding to nearest); out holds
 * lf_tensor_numel(t) floats. */
void lf_tensor_to_f32(const struct lf_tensor *t, float *out);
size_t lf_tensor_numel(const struct lf_tensor *t);

/* ---- writing ---- */

struct lf_st_writer;

/* Write into folder dir: `base`.safetensors, or, when the tensors exceed
 * max_shard_bytes (0: never), `base`-0000i-of-0000n.safetensors plus
 * `base`.safetensors.index.json ({"metadata": {"total_size": N},
 * "weight_map": {name: file}}), as transformers' save_pretrained names
 * them.  Tensors are added in order; their data must stay valid until
 * finish, which writes every file under a temporary name and renames them
 * when all are complete.  metadata: pairs of strings, e.g. {"format",
 * "pt"}, NULL-terminated (may be NULL).  The folder is made if missing.
 *
 * Each file is laid out as safetensors' save_file lays it out: tensors by
 * dtype, widest first, then by name; the header padded with spaces to a
 * multiple of 8 bytes, so each tensor is aligned to its element size.
 * Shards take tensors in add order, a new one when the next tensor would
 * take the current one past max_shard_bytes (a bigger tensor gets a shard
 * of its own); a single shard is written as `base`.safetensors.
 * Metadata is written in the order given (the Rust writer's is its hash
 * map's).  The temporaries are lf_output files (output.h): removed when a
 * tool that called lf_output_init_signals dies or is killed. */
struct lf_st_writer *lf_st_writer_open(const char *dir, const char *base, uint64_t max_shard_bytes,
				       const char *const *metadata);
/* -1 with lf_fail for a bad or repeated name, dtype or shape; the writer
 * stays usable. */
int lf_st_writer_add(struct lf_st_writer *w, const char *name, enum lf_dtype dtype, int ndim, const int64_t *shape,
		     const void *data);
/* Write the files; frees the writer, also on failure (-1 with lf_fail;
 * then no file was renamed into place, short of a failed rename). */
int lf_st_writer_finish(struct lf_st_writer *w);
/* Free the writer without writing anything. */
void lf_st_writer_abort(struct lf_st_writer *w);

#endif

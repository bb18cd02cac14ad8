/*
 * dataset.h — datasets as LLaMA-Factory describes them, and reading their rows.
 *
 * A dataset is a file, a folder of files or an archive, in one layout
 * (alpaca, sharegpt, openai) with a column and tag mapping, as an entry of
 * dataset_info.json gives it (LLaMA-Factory's DatasetAttr) or as command-line
 * options give it for a file named directly.  Rows are JSON objects: from
 * .json (an array, or JSON lines), .jsonl, .csv (a header row; every field a
 * string, empty fields null) and .txt (one row {"text": line} per line).
 * Folders are read in name order; .tar, .tar.gz, .zip and other archives
 * libarchive knows are read member by member; a .gz/.xz/.bz2/.zst file is
 * read decompressed.  Parquet, arrow and hub datasets are refused clearly.
 */
#ifndef LF_DATASET_H
#define LF_DATASET_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

enum lf_formatting { LF_FMT_ALPACA, LF_FMT_SHAREGPT, LF_FMT_OPENAI };

const char *lf_formatting_name(enum lf_formatting f);

struct lf_dataset_attr {
	char *name;      /* dataset_info key, or the file as given */
	char *path;      /* file, folder or archive to read ("-": stdin) */
	enum lf_formatting formatting;
	bool ranking;
	long long num_samples; /* -1: not set */
	/* columns (NULL: not mapped) */
	char *prompt, *query, *response, *history, *messages, *system, *tools;
	char *images, *videos, *audios, *chosen, *rejected, *kto_tag;
	/* sharegpt tags (NULL: not mapped) */
	char *role_tag, *content_tag, *user_tag, *assistant_tag, *observation_tag, *function_tag, *system_tag;
};

/* LLaMA-Factory's defaults for a dataset with no "columns"/"tags" given. */
void lf_dataset_attr_init(struct lf_dataset_attr *a, const char *name, const char *path,
			  enum lf_formatting formatting);
/* Apply an entry's "columns" / "tags" objects (unset names become NULL, as
 * LLaMA-Factory does).  Returns -1 with lf_fail. */
int lf_dataset_attr_join(struct lf_dataset_attr *a, const json_t *entry, const char *where);
/* Look `name` up in DIR/dataset_info.json.  Returns -1 with lf_fail. */
int lf_dataset_attr_from_info(struct lf_dataset_attr *a, const char *dataset_dir, const char *name);
void lf_dataset_attr_free(struct lf_dataset_attr *a);

struct lf_rows;

/* Open a dataset's files.  file_type forces the type for stdin or files with
 * other extensions ("json", "jsonl", "csv", "txt"); NULL: by extension.
 * Returns NULL with lf_fail. */
struct lf_rows *lf_rows_open(const char *path, const char *file_type);
/* Next row: 1 (*row set, a new reference, or NULL when the row is not a JSON
 * object / not valid JSON — then lf_errmsg() says why and the caller counts
 * it as a bad record), 0 at the end, -1 on a fatal error (lf_fail). */
int lf_rows_next(struct lf_rows *r, json_t **row);
/* Where the last row came from: "file" or "archive:member", and its index in
 * that file (0-based). */
const char *lf_rows_where(const struct lf_rows *r);
uint64_t lf_rows_index(const struct lf_rows *r);
void lf_rows_close(struct lf_rows *r);

#endif

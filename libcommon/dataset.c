/*
 * dataset.c — dataset attributes (LLaMA-Factory's DatasetAttr and
 * dataset_info.json) and reading rows from files, folders and archives
 * (see dataset.h).
 */
#include "dataset.h"
#include "buf.h"
#include "error.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- attributes ---- */

const char *lf_formatting_name(enum lf_formatting f)
{
	return f == LF_FMT_SHAREGPT ? "sharegpt" : f == LF_FMT_OPENAI ? "openai" : "alpaca";
}

static char *dup_or_null(const char *s)
{
	return s ? lf_strdup(s) : NULL;
}

/* The attribute fields, by their dataset_info.json names. */
struct field {
	const char *name;
	size_t offset;
	const char *dflt;
};

#define FIELD(n, d) { #n, offsetof(struct lf_dataset_attr, n), d }
static const struct field column_fields[] = {
	FIELD(prompt, "instruction"), FIELD(query, "input"), FIELD(response, "output"), FIELD(history, NULL),
	FIELD(messages, "conversations"), FIELD(system, NULL), FIELD(tools, NULL), FIELD(images, NULL),
	FIELD(videos, NULL), FIELD(audios, NULL), FIELD(chosen, NULL), FIELD(rejected, NULL),
	FIELD(kto_tag, NULL),
};
static const struct field tag_fields[] = {
	FIELD(role_tag, "from"), FIELD(content_tag, "value"), FIELD(user_tag, "human"),
	FIELD(assistant_tag, "gpt"), FIELD(observation_tag, "observation"), FIELD(function_tag, "function_call"),
	FIELD(system_tag, "system"),
};
#undef FIELD
#define NCOLUMNS (sizeof column_fields / sizeof column_fields[0])
#define NTAGS (sizeof tag_fields / sizeof tag_fields[0])

static char **field_ptr(struct lf_dataset_attr *a, const struct field *f)
{
	return (char **)((char *)a + f->offset);
}

void lf_dataset_attr_init(struct lf_dataset_attr *a, const char *name, const char *path,
			  enum lf_formatting formatting)
{
	memset(a, 0, sizeof *a);
	a->name = lf_strdup(name);
	a->path = lf_strdup(path);
	a->formatting = formatting;
	a->num_samples = -1;
	for (size_t i = 0; i < NCOLUMNS; i++)
		*field_ptr(a, &column_fields[i]) = dup_or_null(column_fields[i].dflt);
	for (size_t i = 0; i < NTAGS; i++)
		*field_ptr(a, &tag_fields[i]) = dup_or_null(tag_fields[i].dflt);
}

static int join_group(struct lf_dataset_attr *a, const json_t *obj, const struct field *fields, size_t n,
		      const char *group, const char *where)
{
	if (!json_is_object(obj))
		return lf_fail("%s: '%s' is not an object", where, group);
	const char *key;
	json_t *val;
	json_object_foreach((json_t *)obj, key, val) {
		size_t i;
		for (i = 0; i < n; i++)
			if (!strcmp(fields[i].name, key))
				break;
		if (i == n)
			return lf_fail("%s: unknown %s name '%s'", where, group, key);
		if (!json_is_string(val) && !json_is_null(val))
			return lf_fail("%s: %s '%s' is not a string", where, group, key);
	}
	/* As DatasetAttr.join: every name the entry leaves out becomes unset. */
	for (size_t i = 0; i < n; i++) {
		char **p = field_ptr(a, &fields[i]);
		free(*p);
		const json_t *v = json_object_get(obj, fields[i].name);
		*p = json_is_string(v) ? lf_strdup(json_string_value(v)) : NULL;
	}
	return 0;
}

int lf_dataset_attr_join(struct lf_dataset_attr *a, const json_t *entry, const char *where)
{
	const json_t *v;
	if ((v = json_object_get(entry, "formatting")) && !json_is_null(v)) {
		const char *f = json_string_value(v);
		if (!f)
			return lf_fail("%s: 'formatting' is not a string", where);
		if (!strcmp(f, "alpaca"))
			a->formatting = LF_FMT_ALPACA;
		else if (!strcmp(f, "sharegpt"))
			a->formatting = LF_FMT_SHAREGPT;
		else if (!strcmp(f, "openai"))
			a->formatting = LF_FMT_OPENAI;
		else
			return lf_fail("%s: unknown formatting '%s' (alpaca, sharegpt or openai)", where, f);
	}
	if ((v = json_object_get(entry, "ranking")) && !json_is_null(v)) {
		if (!json_is_boolean(v))
			return lf_fail("%s: 'ranking' is not a boolean", where);
		a->ranking = json_is_true(v);
	}
	if ((v = json_object_get(entry, "num_samples")) && !json_is_null(v)) {
		if (!json_is_integer(v) || json_integer_value(v) < 0)
			return lf_fail("%s: 'num_samples' is not a non-negative integer", where);
		a->num_samples = json_integer_value(v);
	}
	if ((v = json_object_get(entry, "columns")) && join_group(a, v, column_fields, NCOLUMNS, "column", where) < 0)
		return -1;
	if ((v = json_object_get(entry, "tags")) && join_group(a, v, tag_fields, NTAGS, "tag", where) < 0)
		return -1;
	return 0;
}

static const char *hub_keys[] = { "hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name" };

int lf_dataset_attr_from_info(struct lf_dataset_attr *a, const char *dataset_dir, const char *name)
{
	struct lf_buf path = LF_BUF_INIT;
	lf_buf_addf(&path, "%s/dataset_info.json", dataset_dir);
	json_error_t err;
	json_t *info = json_load_file(path.data, JSON_DECODE_ANY, &err);
	if (!info) {
		if (access(path.data, F_OK) != 0)
			lf_fail("%s: cannot open: %s (is --dataset-dir right?)", path.data, strerror(errno));
		else
			lf_fail("%s: line %d column %d: invalid JSON: %s", path.data, err.line, err.column, err.text);
		lf_buf_free(&path);
		return -1;
	}
	int rc = -1;
	json_t *entry = json_object_get(info, name);
	char where[512];
	snprintf(where, sizeof where, "%s: dataset '%s'", path.data, name);
	if (!json_is_object(info)) {
		lf_fail("%s: not a JSON object of datasets", path.data);
	} else if (!entry) {
		lf_fail("%s: no dataset named '%s'", path.data, name);
	} else if (!json_is_object(entry)) {
		lf_fail("%s: not an object", where);
	} else {
		size_t i;
		for (i = 0; i < sizeof hub_keys / sizeof hub_keys[0]; i++)
			if (json_object_get(entry, hub_keys[i]))
				break;
		const char *file_name = json_string_value(json_object_get(entry, "file_name"));
		if (i < sizeof hub_keys / sizeof hub_keys[0]) {
			lf_fail("%s: '%s' datasets are not supported: lf reads local files only "
				"(download it and give its file_name)", where, hub_keys[i]);
		} else if (!file_name) {
			lf_fail("%s: no 'file_name'", where);
		} else {
			struct lf_buf file = LF_BUF_INIT;
			if (file_name[0] == '/')
				lf_buf_addstr(&file, file_name);
			else
				lf_buf_addf(&file, "%s/%s", dataset_dir, file_name);
			lf_dataset_attr_init(a, name, file.data, LF_FMT_ALPACA);
			lf_buf_free(&file);
			rc = lf_dataset_attr_join(a, entry, where);
			if (rc == 0 && (a->images || a->videos || a->audios))
				rc = lf_fail("%s: image, video and audio columns are not supported yet (text-only models)",
					     where);
		}
	}
	json_decref(info);
	lf_buf_free(&path);
	return rc;
}

void lf_dataset_attr_free(struct lf_dataset_attr *a)
{
	free(a->name);
	free(a->path);
	for (size_t i = 0; i < NCOLUMNS; i++)
		free(*field_ptr(a, &column_fields[i]));
	for (size_t i = 0; i < NTAGS; i++)
		free(*field_ptr(a, &tag_fields[i]));
	memset(a, 0, sizeof *a);
}

/* ---- reading rows ---- */

enum file_type { FT_NONE, FT_JSON, FT_JSONL, FT_CSV, FT_TXT };

/* One input file's bytes, read in chunks (a plain file or an archive member). */
struct source {
	FILE *f;                /* plain file or stdin */
	struct archive *ar;     /* archive member (current entry of ar) */
};

static ssize_t source_read(struct source *s, void *buf, size_t n)
{
	if (s->ar) {
		la_ssize_t k = archive_read_data(s->ar, buf, n);
		if (k < 0)
			return lf_fail("%s", archive_error_string(s->ar));
		return k;
	}
	size_t k = fread(buf, 1, n, s->f);
	if (k == 0 && ferror(s->f))
		return lf_fail("read failed: %s", strerror(errno));
	return (ssize_t)k;
}

struct lf_rows {
	/* the files still to read */
	char **files;
	size_t nfiles, next_file;
	char *forced_type;
	/* archive being read, if any */
	struct archive *ar;
	char *ar_name;
	/* current file */
	struct source src;
	char *where;
	enum file_type type;
	uint64_t index;   /* rows handed out from the current file */
	uint64_t line;    /* current line (jsonl/txt/csv) */
	bool open;
	/* buffered bytes of the current file */
	char *buf;
	size_t cap, start, end;
	bool eof;
	/* JSON array of the current file: elements read so far, and where the
	 * scanner is (1-based line, 0-based column) for error messages */
	size_t array_pos;
	uint64_t array_line, array_col;
	/* CSV header */
	char **header;
	size_t nheader;
	struct lf_buf tmp;
};

static enum file_type type_from_string(const char *s)
{
	static const char *names[] = { "json", "jsonl", "csv", "txt" };
	static const enum file_type types[] = { FT_JSON, FT_JSONL, FT_CSV, FT_TXT };
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (!strcmp(s, names[i]))
			return types[i];
	return FT_NONE;
}

static enum file_type type_from_name(const char *name)
{
	const char *dot = strrchr(name, '.');
	const char *slash = strrchr(name, '/');
	if (!dot || (slash && dot < slash))
		return FT_NONE;
	return type_from_string(dot + 1);
}

static bool has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && !strcmp(s + n - m, suffix);
}

static bool is_archive_name(const char *name)
{
	static const char *suffixes[] = { ".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2",
					  ".tar.zst", ".zip", ".7z" };
	for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++)
		if (has_suffix(name, suffixes[i]))
			return true;
	return false;
}

static bool is_compressed_name(const char *name)
{
	return has_suffix(name, ".gz") || has_suffix(name, ".xz") || has_suffix(name, ".bz2") ||
	       has_suffix(name, ".zst") || has_suffix(name, ".lz4");
}

/* The name without its compression suffix ("a.json.gz" -> "a.json"). */
static char *strip_compression(const char *name)
{
	const char *dot = strrchr(name, '.');
	return lf_strndup(name, dot ? (size_t)(dot - name) : strlen(name));
}

static int unsupported_type(const char *name)
{
	const char *dot = strrchr(name, '.');
	if (dot && (!strcmp(dot, ".parquet") || !strcmp(dot, ".arrow")))
		return lf_fail("%s: %s files are not supported; convert them to JSON lines", name, dot + 1);
	return lf_fail("%s: unknown file type (allowed: json, jsonl, csv, txt, or an archive of them)", name);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

struct lf_rows *lf_rows_open(const char *path, const char *file_type)
{
	struct lf_rows *r = lf_calloc(1, sizeof *r);
	if (file_type) {
		if (type_from_string(file_type) == FT_NONE) {
			lf_fail("unknown file type '%s' (json, jsonl, csv or txt)", file_type);
			free(r);
			return NULL;
		}
		r->forced_type = lf_strdup(file_type);
	}
	struct stat st;
	if (strcmp(path, "-") != 0 && stat(path, &st) != 0) {
		lf_fail("%s: cannot open: %s", path, strerror(errno));
		lf_rows_close(r);
		return NULL;
	}
	if (strcmp(path, "-") != 0 && S_ISDIR(st.st_mode)) {
		DIR *d = opendir(path);
		if (!d) {
			lf_fail("%s: cannot open folder: %s", path, strerror(errno));
			lf_rows_close(r);
			return NULL;
		}
		struct dirent *de;
		while ((de = readdir(d))) {
			if (de->d_name[0] == '.')
				continue;
			r->files = lf_realloc(r->files, (r->nfiles + 1) * sizeof *r->files);
			struct lf_buf p = LF_BUF_INIT;
			lf_buf_addf(&p, "%s/%s", path, de->d_name);
			r->files[r->nfiles++] = lf_buf_detach(&p, NULL);
		}
		closedir(d);
		if (r->nfiles == 0) {
			lf_fail("%s: empty folder", path);
			lf_rows_close(r);
			return NULL;
		}
		qsort(r->files, r->nfiles, sizeof *r->files, cmp_str);
		/* As LLaMA-Factory: every file of a folder has the same type. */
		enum file_type t0 = type_from_name(r->files[0]);
		for (size_t i = 0; i < r->nfiles && !file_type; i++) {
			char *plain = is_compressed_name(r->files[i]) ? strip_compression(r->files[i]) : NULL;
			enum file_type t = type_from_name(plain ? plain : r->files[i]);
			free(plain);
			if (i == 0)
				t0 = t;
			if (t != t0 || t == FT_NONE) {
				if (t == FT_NONE)
					unsupported_type(r->files[i]);
				else
					lf_fail("%s: the files of a dataset folder must all have one type", path);
				lf_rows_close(r);
				return NULL;
			}
		}
	} else {
		r->files = lf_malloc(sizeof *r->files);
		r->files[0] = lf_strdup(path);
		r->nfiles = 1;
	}
	return r;
}

static void close_current(struct lf_rows *r)
{
	if (r->src.f && r->src.f != stdin)
		fclose(r->src.f);
	r->src.f = NULL;
	r->src.ar = NULL;
	for (size_t i = 0; i < r->nheader; i++)
		free(r->header[i]);
	free(r->header);
	r->header = NULL;
	r->nheader = 0;
	free(r->where);
	r->where = NULL;
	r->start = r->end = 0;
	r->eof = false;
	r->open = false;
}

static void close_archive(struct lf_rows *r)
{
	if (r->ar) {
		archive_read_free(r->ar);
		r->ar = NULL;
	}
	free(r->ar_name);
	r->ar_name = NULL;
}

/* Ensure at least one unread byte (or eof).  -1 on error. */
static int fill(struct lf_rows *r)
{
	if (r->start < r->end || r->eof)
		return 0;
	r->start = r->end = 0;
	if (!r->cap) {
		r->cap = 1 << 16;
		r->buf = lf_malloc(r->cap);
	}
	ssize_t k = source_read(&r->src, r->buf, r->cap);
	if (k < 0)
		return lf_fail_prefix("%s", r->where);
	if (k == 0)
		r->eof = true;
	r->end = (size_t)k;
	return 0;
}

/* Read one line (without its terminator: \n, \r\n or \r, as Python's
 * universal newlines) into r->tmp.  1 line, 0 end, -1 error. */
static int read_line(struct lf_rows *r)
{
	lf_buf_reset(&r->tmp);
	bool any = false;
	for (;;) {
		if (fill(r) < 0)
			return -1;
		if (r->start == r->end)
			return any ? 1 : 0;
		any = true;
		char *p = r->buf + r->start;
		size_t n = r->end - r->start;
		size_t i = 0;
		while (i < n && p[i] != '\n' && p[i] != '\r')
			i++;
		lf_buf_add(&r->tmp, p, i);
		if (i == n) {
			r->start = r->end;
			continue;
		}
		char c = p[i];
		r->start += i + 1;
		if (c == '\r') { /* swallow the \n of \r\n */
			if (fill(r) < 0)
				return -1;
			if (r->start < r->end && r->buf[r->start] == '\n')
				r->start++;
		}
		r->line++;
		return 1;
	}
}

/* ---- JSON arrays, element by element ----
 *
 * A .json file holding an array of rows is read one element at a time: a
 * scanner that follows strings and nesting cuts out each element's text,
 * which is then parsed alone, so memory holds one row, not the file. */

/* The next non-blank byte, not consumed: -1 at the end, -2 on error. */
static int array_peek(struct lf_rows *r)
{
	for (;;) {
		if (fill(r) < 0)
			return -2;
		if (r->start == r->end)
			return -1;
		char c = r->buf[r->start];
		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			return (unsigned char)c;
		r->start++;
		r->array_line += c == '\n';
		r->array_col = c == '\n' ? 0 : r->array_col + 1;
	}
}

static int array_fail(struct lf_rows *r, const char *what)
{
	return lf_fail("%s: line %llu column %llu: invalid JSON: %s", r->where, (unsigned long long)r->array_line,
		       (unsigned long long)r->array_col + 1, what);
}

/* The next element's text into r->tmp, its position in *line, *col.
 * 1 an element, 0 the array ended (only blanks after it), -1 error. */
static int array_element(struct lf_rows *r, uint64_t *line, uint64_t *col)
{
	int c = array_peek(r);
	if (c == -2)
		return -1;
	if (c == ']' || (r->array_pos > 0 && c != ',')) {
		if (c != ']')
			return array_fail(r, c == -1 ? "the array is not closed" : "expected ',' or ']'");
		r->start++;
		r->array_col++;
		c = array_peek(r);
		if (c == -2)
			return -1;
		return c == -1 ? 0 : array_fail(r, "data after the array");
	}
	if (r->array_pos > 0) {
		r->start++; /* the ',' */
		r->array_col++;
		if ((c = array_peek(r)) == -2)
			return -1;
	}
	if (c == -1)
		return array_fail(r, "the array is not closed");
	*line = r->array_line;
	*col = r->array_col;
	lf_buf_reset(&r->tmp);
	int depth = 0;
	bool in_string = false, escaped = false, done = false;
	while (!done) {
		if (fill(r) < 0)
			return -1;
		if (r->start == r->end)
			return array_fail(r, "the array is not closed");
		const char *p = r->buf + r->start;
		size_t n = r->end - r->start, i = 0;
		for (; i < n && !done; i++) {
			char ch = p[i];
			if (ch == '\n') {
				r->array_line++;
				r->array_col = 0;
			} else {
				r->array_col++;
			}
			if (in_string) {
				if (escaped)
					escaped = false;
				else if (ch == '\\')
					escaped = true;
				else if (ch == '"')
					in_string = false, done = depth == 0;
			} else if (ch == '"') {
				in_string = true;
			} else if (ch == '{' || ch == '[') {
				depth++;
			} else if (ch == '}' || ch == ']') {
				if (depth == 0) { /* a bare value ended by the array's ']' */
					r->array_col--;
					break;
				}
				done = --depth == 0;
			} else if (depth == 0 && (ch == ',' || ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r')) {
				if (ch == '\n')
					r->array_line--; /* not consumed */
				else
					r->array_col--;
				break;
			}
		}
		lf_buf_add(&r->tmp, p, i);
		r->start += i;
		if (i < n && !done)
			done = true; /* stopped before a delimiter */
	}
	r->array_pos++;
	return 1;
}

/* ---- CSV (RFC 4180) ---- */

/* Parse one CSV record from the stream into fields.  1 ok, 0 end, -1 error. */
static int csv_record(struct lf_rows *r, char ***fields, size_t *nfields, bool **quoted)
{
	*fields = NULL;
	*nfields = 0;
	*quoted = NULL;
	struct lf_buf field = LF_BUF_INIT;
	bool in_quotes = false, was_quoted = false, any = false;
	uint64_t start_line = r->line + 1;
	for (;;) {
		if (fill(r) < 0) {
			lf_buf_free(&field);
			return -1;
		}
		int c = r->start < r->end ? (unsigned char)r->buf[r->start++] : -1;
		if (c == -1 && !any) {
			lf_buf_free(&field);
			return 0;
		}
		any = true;
		if (in_quotes) {
			if (c == -1) {
				lf_buf_free(&field);
				return lf_fail("%s: line %llu: unterminated quoted CSV field", r->where,
					       (unsigned long long)start_line);
			}
			if (c == '"') {
				if (fill(r) < 0)
					return -1;
				if (r->start < r->end && r->buf[r->start] == '"') {
					r->start++;
					lf_buf_addch(&field, '"');
				} else {
					in_quotes = false;
				}
			} else {
				if (c == '\n')
					r->line++;
				lf_buf_addch(&field, (char)c);
			}
			continue;
		}
		if (c == '"' && field.len == 0 && !was_quoted) {
			in_quotes = was_quoted = true;
			continue;
		}
		if (c == ',' || c == '\n' || c == '\r' || c == -1) {
			*fields = lf_realloc(*fields, (*nfields + 1) * sizeof **fields);
			*quoted = lf_realloc(*quoted, (*nfields + 1) * sizeof **quoted);
			(*quoted)[*nfields] = was_quoted;
			(*fields)[(*nfields)++] = lf_buf_detach(&field, NULL);
			was_quoted = false;
			if (c == ',')
				continue;
			if (c == '\r') {
				if (fill(r) < 0)
					return -1;
				if (r->start < r->end && r->buf[r->start] == '\n')
					r->start++;
			}
			r->line++;
			return 1;
		}
		lf_buf_addch(&field, (char)c);
	}
}

static void free_fields(char **f, size_t n, bool *q)
{
	for (size_t i = 0; i < n; i++)
		free(f[i]);
	free(f);
	free(q);
}

/* ---- opening the next file ---- */

static int start_file(struct lf_rows *r, const char *where, enum file_type type)
{
	r->where = lf_strdup(where);
	r->type = type;
	r->index = 0;
	r->line = 0;
	r->open = true;
	if (type == FT_JSON) {
		/* An array of rows, or JSON lines in a .json file (as the datasets
		 * library accepts): look at the first non-blank byte. */
		uint64_t line = 1, col = 0;
		for (;;) {
			if (fill(r) < 0)
				return -1;
			if (r->start == r->end)
				return lf_fail("%s: empty file: invalid JSON", where);
			char c = r->buf[r->start];
			if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
				r->start++;
				line += c == '\n';
				col = c == '\n' ? 0 : col + 1;
				continue;
			}
			r->array_line = line;
			r->array_col = col;
			if (c != '[')
				r->type = FT_JSONL;
			break;
		}
		if (r->type == FT_JSON) {
			r->start++; /* the '[' */
			r->array_col++;
			r->array_pos = 0;
		}
	} else if (type == FT_CSV) {
		bool *q;
		int rc = csv_record(r, &r->header, &r->nheader, &q);
		free(q);
		if (rc < 0)
			return -1;
		if (rc == 0)
			return lf_fail("%s: empty CSV file (no header row)", where);
	}
	return 0;
}

static int open_plain(struct lf_rows *r, const char *name)
{
	enum file_type t = r->forced_type ? type_from_string(r->forced_type) : type_from_name(name);
	if (!strcmp(name, "-")) {
		r->src.f = stdin;
		return start_file(r, "<stdin>", t == FT_NONE ? FT_JSON : t);
	}
	if (t == FT_NONE)
		return unsupported_type(name);
	r->src.f = fopen(name, "rb");
	if (!r->src.f)
		return lf_fail("%s: cannot open: %s", name, strerror(errno));
	return start_file(r, name, t);
}

static int open_archive(struct lf_rows *r, const char *name, bool raw)
{
	r->ar = archive_read_new();
	archive_read_support_filter_all(r->ar);
	if (raw) {
		archive_read_support_format_raw(r->ar);
	} else { /* the formats datasets come in (not xar & co, which would pull in libxml2) */
		archive_read_support_format_tar(r->ar);
		archive_read_support_format_gnutar(r->ar);
		archive_read_support_format_zip(r->ar);
		archive_read_support_format_7zip(r->ar);
	}
	if (archive_read_open_filename(r->ar, name, 1 << 16) != ARCHIVE_OK)
		return lf_fail("%s: cannot read archive: %s", name, archive_error_string(r->ar));
	r->ar_name = lf_strdup(name);
	return 0;
}

/* Move to the next archive member that holds rows: 1 opened, 0 none left. */
static int next_member(struct lf_rows *r)
{
	struct archive_entry *e;
	for (;;) {
		int rc = archive_read_next_header(r->ar, &e);
		if (rc == ARCHIVE_EOF)
			return 0;
		if (rc < ARCHIVE_WARN)
			return lf_fail("%s: %s", r->ar_name, archive_error_string(r->ar));
		if (archive_entry_filetype(e) != AE_IFREG)
			continue;
		const char *member = archive_entry_pathname(e);
		char *plain_name = NULL;
		enum file_type t;
		if (!member || !strcmp(member, "data")) { /* a single compressed file */
			plain_name = strip_compression(r->ar_name);
			t = type_from_name(plain_name);
		} else {
			const char *base = strrchr(member, '/');
			base = base ? base + 1 : member;
			if (base[0] == '.')
				continue; /* __MACOSX/._x and other hidden files */
			t = type_from_name(member);
		}
		if (r->forced_type)
			t = type_from_string(r->forced_type);
		struct lf_buf where = LF_BUF_INIT;
		if (plain_name)
			lf_buf_addstr(&where, r->ar_name);
		else
			lf_buf_addf(&where, "%s:%s", r->ar_name, member);
		free(plain_name);
		if (t == FT_NONE) {
			if (member && strcmp(member, "data"))
				continue; /* README and the like inside an archive */
			int rc2 = unsupported_type(where.data);
			lf_buf_free(&where);
			return rc2;
		}
		r->src.ar = r->ar;
		int rc2 = start_file(r, where.data, t);
		lf_buf_free(&where);
		return rc2 < 0 ? -1 : 1;
	}
}

/* Open the next file (or archive member) with rows.  1 ok, 0 none left. */
static int open_next(struct lf_rows *r)
{
	close_current(r);
	if (r->ar) {
		int rc = next_member(r);
		if (rc != 0)
			return rc;
		close_archive(r);
	}
	while (r->next_file < r->nfiles) {
		const char *name = r->files[r->next_file++];
		if (is_archive_name(name) || is_compressed_name(name)) {
			if (open_archive(r, name, !is_archive_name(name)) < 0)
				return -1;
			int rc = next_member(r);
			if (rc != 0)
				return rc;
			close_archive(r);
			continue;
		}
		if (open_plain(r, name) < 0)
			return -1;
		return 1;
	}
	return 0;
}

/* Parse one JSON line as a row; NULL with lf_fail when it is not one. */
static json_t *parse_line(struct lf_rows *r)
{
	json_error_t err;
	json_t *v = json_loadb(r->tmp.data, r->tmp.len, JSON_ALLOW_NUL, &err);
	if (!v) {
		lf_fail("line %llu column %d: invalid JSON: %s", (unsigned long long)r->line, err.column, err.text);
		return NULL;
	}
	if (!json_is_object(v)) {
		json_decref(v);
		lf_fail("line %llu: not a JSON object", (unsigned long long)r->line);
		return NULL;
	}
	return v;
}

static bool blank(const struct lf_buf *b)
{
	for (size_t i = 0; i < b->len; i++)
		if (b->data[i] != ' ' && b->data[i] != '\t')
			return false;
	return true;
}

int lf_rows_next(struct lf_rows *r, json_t **row)
{
	*row = NULL;
	for (;;) {
		if (!r->open) {
			int rc = open_next(r);
			if (rc <= 0)
				return rc;
		}
		switch (r->type) {
		case FT_JSON: {
			uint64_t line = 0, col = 0;
			int rc = array_element(r, &line, &col);
			if (rc < 0)
				return -1;
			if (rc == 0)
				break;
			r->index++;
			json_error_t err;
			json_t *v = json_loadb(r->tmp.data, r->tmp.len, JSON_ALLOW_NUL | JSON_DECODE_ANY, &err);
			if (!v)
				return lf_fail("%s: line %llu column %llu: invalid JSON: %s", r->where,
					       (unsigned long long)(line + (uint64_t)err.line - 1),
					       (unsigned long long)(err.line == 1 ? col + (uint64_t)err.column : (uint64_t)err.column),
					       err.text);
			if (!json_is_object(v)) {
				json_decref(v);
				lf_fail("not a JSON object");
				return 1;
			}
			*row = v;
			return 1;
		}
		case FT_JSONL: {
			int rc;
			while ((rc = read_line(r)) == 1 && blank(&r->tmp))
				;
			if (rc < 0)
				return -1;
			if (rc == 0)
				break;
			r->index++;
			*row = parse_line(r);
			return 1;
		}
		case FT_TXT: {
			int rc = read_line(r);
			if (rc < 0)
				return -1;
			if (rc == 0)
				break;
			r->index++;
			json_t *o = json_object();
			json_object_set_new(o, "text", json_stringn(r->tmp.data ? r->tmp.data : "", r->tmp.len));
			if (!json_object_get(o, "text")) {
				json_decref(o);
				lf_fail("line %llu: not valid UTF-8", (unsigned long long)r->line);
				return 1;
			}
			*row = o;
			return 1;
		}
		case FT_CSV: {
			char **f;
			size_t nf;
			bool *q;
			int rc = csv_record(r, &f, &nf, &q);
			if (rc < 0)
				return -1;
			if (rc == 0)
				break;
			r->index++;
			if (nf == 1 && f[0][0] == 0 && !q[0]) { /* blank line */
				free_fields(f, nf, q);
				r->index--;
				continue;
			}
			if (nf != r->nheader) {
				lf_fail("line %llu: %zu fields, the header has %zu", (unsigned long long)r->line, nf,
					r->nheader);
				free_fields(f, nf, q);
				return 1;
			}
			json_t *o = json_object();
			for (size_t i = 0; i < nf; i++) {
				json_t *v = (f[i][0] || q[i]) ? json_string(f[i]) : json_null();
				if (!v) {
					json_decref(o);
					free_fields(f, nf, q);
					lf_fail("line %llu: field '%s' is not valid UTF-8", (unsigned long long)r->line,
						r->header[i]);
					return 1;
				}
				json_object_set_new(o, r->header[i], v);
			}
			free_fields(f, nf, q);
			*row = o;
			return 1;
		}
		default:
			break;
		}
		close_current(r);
	}
}

const char *lf_rows_where(const struct lf_rows *r)
{
	return r->where ? r->where : (r->nfiles ? r->files[0] : "?");
}

uint64_t lf_rows_index(const struct lf_rows *r)
{
	return r->index ? r->index - 1 : 0;
}

void lf_rows_close(struct lf_rows *r)
{
	if (!r)
		return;
	close_current(r);
	close_archive(r);
	for (size_t i = 0; i < r->nfiles; i++)
		free(r->files[i]);
	free(r->files);
	free(r->forced_type);
	free(r->buf);
	lf_buf_free(&r->tmp);
	free(r);
}

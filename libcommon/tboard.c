/*
 * tboard.c — TensorBoard event files (see tboard.h): CRC-32C, TFRecord
 * framing, the few protobuf messages of an Event encoded by hand, the file
 * name and the Trainer's default log folder.
 */
#include "tboard.h"

#include "buf.h"
#include "error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

struct lf_tboard {
	FILE *f;
	char *path;
	int failed; /* a write failed: later calls fail too */
};

/* ---- CRC-32C ---- */

static uint32_t crc_table[256];
static int crc_ready;

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		crc_table[i] = c;
	}
	crc_ready = 1;
}

uint32_t lf_crc32c(uint32_t crc, const void *data, size_t n)
{
	if (!crc_ready)
		crc_init();
	const unsigned char *p = data;
	crc = ~crc;
	for (size_t i = 0; i < n; i++)
		crc = crc_table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
	return ~crc;
}

uint32_t lf_tboard_mask_crc(uint32_t crc)
{
	return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u;
}

static void put_u32le(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

void lf_tboard_frame(unsigned char *out, const void *payload, size_t n)
{
	uint64_t len = n;
	for (int i = 0; i < 8; i++)
		out[i] = (unsigned char)(len >> (8 * i));
	put_u32le(out + 8, lf_tboard_mask_crc(lf_crc32c(0, out, 8)));
	memcpy(out + 12, payload, n);
	put_u32le(out + 12 + n, lf_tboard_mask_crc(lf_crc32c(0, payload, n)));
}

/* ---- protobuf encoding ---- */

static void pb_varint(struct lf_buf *b, uint64_t v)
{
	unsigned char tmp[10];
	int n = 0;
	do {
		tmp[n] = (unsigned char)(v & 0x7F);
		v >>= 7;
		if (v)
			tmp[n] |= 0x80;
		n++;
	} while (v);
	lf_buf_add(b, tmp, (size_t)n);
}

static void pb_key(struct lf_buf *b, unsigned field, unsigned wire)
{
	pb_varint(b, ((uint64_t)field << 3) | wire);
}

static void pb_bytes(struct lf_buf *b, unsigned field, const void *p, size_t n)
{
	pb_key(b, field, 2);
	pb_varint(b, n);
	lf_buf_add(b, p, n);
}

static void pb_double(struct lf_buf *b, unsigned field, double v)
{
	uint64_t u;
	memcpy(&u, &v, 8);
	unsigned char tmp[8];
	for (int i = 0; i < 8; i++)
		tmp[i] = (unsigned char)(u >> (8 * i));
	pb_key(b, field, 1);
	lf_buf_add(b, tmp, 8);
}

static void pb_float(struct lf_buf *b, unsigned field, float v)
{
	uint32_t u;
	memcpy(&u, &v, 4);
	unsigned char tmp[4];
	put_u32le(tmp, u);
	pb_key(b, field, 5);
	lf_buf_add(b, tmp, 4);
}

/* Event header fields: wall_time (1, double) and step (2, int64; proto3
 * leaves out a zero). */
static void event_head(struct lf_buf *b, double wall_time, int64_t step)
{
	pb_double(b, 1, wall_time);
	if (step != 0) {
		pb_key(b, 2, 0);
		pb_varint(b, (uint64_t)step);
	}
}

static double now_seconds(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (double)tv.tv_sec + (double)tv.tv_usec * 1e-6;
}

static int write_record(struct lf_tboard *tb, const struct lf_buf *payload)
{
	if (tb->failed)
		return lf_fail("%s: an earlier write failed", tb->path);
	unsigned char *rec = lf_malloc(payload->len + 16);
	lf_tboard_frame(rec, payload->data, payload->len);
	size_t n = payload->len + 16;
	int bad = fwrite(rec, 1, n, tb->f) != n || fflush(tb->f) != 0;
	free(rec);
	if (bad) {
		tb->failed = 1;
		return lf_fail("%s: %s", tb->path, strerror(errno));
	}
	return 0;
}

/* ---- the writer ---- */

static int mkdir_parents(const char *dir)
{
	char *p = lf_strdup(dir);
	size_t n = strlen(p);
	while (n > 1 && p[n - 1] == '/')
		p[--n] = 0;
	for (char *s = p + 1; ; s++) {
		int end = *s == 0;
		if (*s == '/' || end) {
			*s = 0;
			struct stat sb;
			if (stat(p, &sb) != 0) {
				if (mkdir(p, 0777) != 0 && errno != EEXIST) {
					int e = errno;
					lf_fail("%s: %s", p, strerror(e));
					free(p);
					return -1;
				}
			} else if (!S_ISDIR(sb.st_mode)) {
				lf_fail("%s: not a folder", p);
				free(p);
				return -1;
			}
			if (end)
				break;
			*s = '/';
		}
	}
	free(p);
	return 0;
}

static unsigned file_counter; /* per process, like the Python writer's */

struct lf_tboard *lf_tboard_open(const char *logdir)
{
	if (!logdir || !*logdir) {
		lf_fail("tensorboard: no log folder");
		return NULL;
	}
	if (mkdir_parents(logdir) != 0) {
		lf_fail_prefix("tensorboard log folder");
		return NULL;
	}
	char host[256];
	if (gethostname(host, sizeof host) != 0)
		strcpy(host, "localhost");
	host[sizeof host - 1] = 0;
	double now = now_seconds();
	struct lf_buf name = LF_BUF_INIT;
	lf_buf_addf(&name, "%s%sevents.out.tfevents.%010lld.%s.%ld.%u", logdir,
		    logdir[strlen(logdir) - 1] == '/' ? "" : "/", (long long)now, host, (long)getpid(),
		    file_counter++);
	struct lf_tboard *tb = lf_calloc(1, sizeof *tb);
	tb->path = lf_buf_detach(&name, NULL);
	tb->f = fopen(tb->path, "wb");
	if (!tb->f) {
		lf_fail("%s: %s", tb->path, strerror(errno));
		free(tb->path);
		free(tb);
		return NULL;
	}
	/* Event { wall_time = 1; file_version = 3; source_metadata = 10:
	 * SourceMetadata { writer = 1 } } */
	struct lf_buf ev = LF_BUF_INIT, src = LF_BUF_INIT;
	event_head(&ev, now, 0);
	pb_bytes(&ev, 3, "brain.Event:2", 13);
	pb_bytes(&src, 1, "lf", 2);
	pb_bytes(&ev, 10, src.data, src.len);
	int rc = write_record(tb, &ev);
	lf_buf_free(&ev);
	lf_buf_free(&src);
	if (rc != 0) {
		fclose(tb->f);
		unlink(tb->path);
		free(tb->path);
		free(tb);
		return NULL;
	}
	return tb;
}

const char *lf_tboard_path(const struct lf_tboard *tb)
{
	return tb->path;
}

int lf_tboard_scalar(struct lf_tboard *tb, const char *tag, int64_t step, float value, double wall_time)
{
	/* Value { tag = 1; simple_value = 2 } */
	struct lf_buf val = LF_BUF_INIT;
	pb_bytes(&val, 1, tag, strlen(tag));
	pb_float(&val, 2, value);
	/* Summary { repeated Value value = 1 } */
	struct lf_buf sum = LF_BUF_INIT;
	pb_bytes(&sum, 1, val.data, val.len);
	/* Event { wall_time = 1; step = 2; summary = 5 } */
	struct lf_buf ev = LF_BUF_INIT;
	event_head(&ev, wall_time > 0 ? wall_time : now_seconds(), step);
	pb_bytes(&ev, 5, sum.data, sum.len);
	int rc = write_record(tb, &ev);
	lf_buf_free(&val);
	lf_buf_free(&sum);
	lf_buf_free(&ev);
	return rc;
}

int lf_tboard_text(struct lf_tboard *tb, const char *name, const char *text, int64_t step, double wall_time)
{
	/* SummaryMetadata { plugin_data = 1: PluginData { plugin_name = 1;
	 * content = 2 (TextPluginData{version 0}: empty, left out) } } */
	struct lf_buf plugin = LF_BUF_INIT;
	pb_bytes(&plugin, 1, "text", 4);
	struct lf_buf meta = LF_BUF_INIT;
	pb_bytes(&meta, 1, plugin.data, plugin.len);
	/* TensorProto { dtype = 1 (DT_STRING = 7); tensor_shape = 2:
	 * TensorShapeProto { dim = 2: Dim { size = 1 } }; string_val = 8 } */
	struct lf_buf dim = LF_BUF_INIT;
	pb_key(&dim, 1, 0);
	pb_varint(&dim, 1);
	struct lf_buf shape = LF_BUF_INIT;
	pb_bytes(&shape, 2, dim.data, dim.len);
	struct lf_buf tensor = LF_BUF_INIT;
	pb_key(&tensor, 1, 0);
	pb_varint(&tensor, 7);
	pb_bytes(&tensor, 2, shape.data, shape.len);
	pb_bytes(&tensor, 8, text, strlen(text));
	/* Value { tag = 1; tensor = 8; metadata = 9 } */
	struct lf_buf tag = LF_BUF_INIT;
	lf_buf_addf(&tag, "%s/text_summary", name);
	struct lf_buf val = LF_BUF_INIT;
	pb_bytes(&val, 1, tag.data, tag.len);
	pb_bytes(&val, 8, tensor.data, tensor.len);
	pb_bytes(&val, 9, meta.data, meta.len);
	struct lf_buf sum = LF_BUF_INIT;
	pb_bytes(&sum, 1, val.data, val.len);
	struct lf_buf ev = LF_BUF_INIT;
	event_head(&ev, wall_time > 0 ? wall_time : now_seconds(), step);
	pb_bytes(&ev, 5, sum.data, sum.len);
	int rc = write_record(tb, &ev);
	struct lf_buf *all[] = { &plugin, &meta, &dim, &shape, &tensor, &tag, &val, &sum, &ev };
	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
		lf_buf_free(all[i]);
	return rc;
}

int lf_tboard_flush(struct lf_tboard *tb)
{
	if (tb->failed)
		return lf_fail("%s: an earlier write failed", tb->path);
	if (fflush(tb->f) != 0 || fsync(fileno(tb->f)) != 0) {
		tb->failed = 1;
		return lf_fail("%s: %s", tb->path, strerror(errno));
	}
	return 0;
}

int lf_tboard_close(struct lf_tboard *tb)
{
	if (!tb)
		return 0;
	int rc = 0;
	if (tb->failed)
		rc = lf_fail("%s: an earlier write failed", tb->path);
	if (fclose(tb->f) != 0 && rc == 0)
		rc = lf_fail("%s: %s", tb->path, strerror(errno));
	free(tb->path);
	free(tb);
	return rc;
}

/* ---- names ---- */

char *lf_tboard_hf_tag(const char *key)
{
	struct lf_buf b = LF_BUF_INIT;
	if (strncmp(key, "eval_", 5) == 0)
		lf_buf_addf(&b, "eval/%s", key + 5);
	else if (strncmp(key, "test_", 5) == 0)
		lf_buf_addf(&b, "test/%s", key + 5);
	else
		lf_buf_addf(&b, "train/%s", key);
	return lf_buf_detach(&b, NULL);
}

char *lf_tboard_default_logdir(const char *output_dir, int64_t now)
{
	const char *env = getenv("TENSORBOARD_LOGGING_DIR");
	struct lf_buf b = LF_BUF_INIT;
	if (env && *env) {
		const char *home = getenv("HOME");
		if (env[0] == '~' && (env[1] == '/' || env[1] == 0) && home)
			lf_buf_addf(&b, "%s%s", home, env + 1);
		else
			lf_buf_addstr(&b, env);
		return lf_buf_detach(&b, NULL);
	}
	static const char *const months[12] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
						"Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t t = (time_t)now;
	struct tm tm;
	localtime_r(&t, &tm);
	char host[256];
	if (gethostname(host, sizeof host) != 0)
		strcpy(host, "localhost");
	host[sizeof host - 1] = 0;
	size_t n = strlen(output_dir);
	lf_buf_addf(&b, "%s%sruns/%s%02d_%02d-%02d-%02d_%s", output_dir,
		    n == 0 || output_dir[n - 1] == '/' ? "" : "/", months[tm.tm_mon % 12], tm.tm_mday, tm.tm_hour,
		    tm.tm_min, tm.tm_sec, host);
	return lf_buf_detach(&b, NULL);
}

/*
 * test_tboard_plot.c — libcommon/tboard and libcommon/plot: CRC-32C known
 * answers, the TFRecord mask and framing against the byte-exact records of
 * the format reference, event files written and decoded back by a small
 * reader here (framing, CRCs, the Event protobuf), records readable before
 * the writer closes, the Trainer's tag names and default log folder;
 * LLaMA-Factory's smooth() against values its own Python code computed, and
 * the loss plot read back with libpng: size, frame, curve pixels where the
 * data are, blank where they are not, no temporary left behind.
 */
#include "check.h"
#include "error.h"
#include "plot.h"
#include "tboard.h"

#include <dirent.h>
#include <math.h>
#include <png.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[] = "/tmp/lf-test-tboard-XXXXXX";

/* ---- a tiny reader: records and the protobuf fields we write ---- */

struct pbfield {
	unsigned field, wire;
	uint64_t u;		   /* varint, fixed64, fixed32 */
	const unsigned char *p; /* length-delimited */
	size_t n;
};

/* Next field of the message P[*pos..end); 0 at its end, -1 when broken. */
static int pb_next(const unsigned char *p, size_t end, size_t *pos, struct pbfield *f)
{
	if (*pos >= end)
		return 0;
	uint64_t v = 0;
	int shift = 0;
	size_t i = *pos;
	for (;;) {
		if (i >= end || shift > 63)
			return -1;
		v |= (uint64_t)(p[i] & 0x7F) << shift;
		shift += 7;
		if (!(p[i++] & 0x80))
			break;
	}
	f->field = (unsigned)(v >> 3);
	f->wire = (unsigned)(v & 7);
	f->p = NULL;
	f->n = 0;
	f->u = 0;
	if (f->wire == 0 || f->wire == 2) {
		v = 0;
		shift = 0;
		for (;;) {
			if (i >= end || shift > 63)
				return -1;
			v |= (uint64_t)(p[i] & 0x7F) << shift;
			shift += 7;
			if (!(p[i++] & 0x80))
				break;
		}
		if (f->wire == 0) {
			f->u = v;
		} else {
			if (v > end - i)
				return -1;
			f->p = p + i;
			f->n = (size_t)v;
			i += (size_t)v;
		}
	} else if (f->wire == 1 || f->wire == 5) {
		size_t k = f->wire == 1 ? 8 : 4;
		if (end - i < k)
			return -1;
		for (size_t j = 0; j < k; j++)
			f->u |= (uint64_t)p[i + j] << (8 * j);
		i += k;
	} else {
		return -1;
	}
	*pos = i;
	return 1;
}

struct event {
	double wall_time;
	int64_t step;
	char version[32];
	char writer[32];
	char tag[128];
	int has_scalar, has_text;
	float value;
	char text[256];
	char plugin[32];
	uint64_t dtype, dim;
};

static uint32_t get_u32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void copy_str(char *dst, size_t cap, const struct pbfield *f)
{
	size_t n = f->n < cap - 1 ? f->n : cap - 1;
	memcpy(dst, f->p, n);
	dst[n] = 0;
}

/* Decode one Event; returns -1 when it does not parse. */
static int decode_event(const unsigned char *p, size_t n, struct event *e)
{
	memset(e, 0, sizeof *e);
	size_t pos = 0;
	struct pbfield f;
	int r;
	while ((r = pb_next(p, n, &pos, &f)) == 1) {
		if (f.field == 1 && f.wire == 1) {
			memcpy(&e->wall_time, &f.u, 8);
		} else if (f.field == 2 && f.wire == 0) {
			e->step = (int64_t)f.u;
		} else if (f.field == 3 && f.wire == 2) {
			copy_str(e->version, sizeof e->version, &f);
		} else if (f.field == 10 && f.wire == 2) { /* SourceMetadata { writer = 1 } */
			size_t sp = 0;
			struct pbfield w;
			if (pb_next(f.p, f.n, &sp, &w) == 1 && w.field == 1 && w.wire == 2)
				copy_str(e->writer, sizeof e->writer, &w);
		} else if (f.field == 5 && f.wire == 2) {
			size_t sp = 0;
			struct pbfield v;
			while ((r = pb_next(f.p, f.n, &sp, &v)) == 1) {
				if (v.field != 1 || v.wire != 2)
					return -1;
				size_t vp = 0;
				struct pbfield x;
				while ((r = pb_next(v.p, v.n, &vp, &x)) == 1) {
					if (x.field == 1 && x.wire == 2) {
						copy_str(e->tag, sizeof e->tag, &x);
					} else if (x.field == 2 && x.wire == 5) {
						uint32_t u = (uint32_t)x.u;
						memcpy(&e->value, &u, 4);
						e->has_scalar = 1;
					} else if (x.field == 8 && x.wire == 2) { /* TensorProto */
						size_t tp = 0;
						struct pbfield t;
						while ((r = pb_next(x.p, x.n, &tp, &t)) == 1) {
							if (t.field == 1 && t.wire == 0)
								e->dtype = t.u;
							else if (t.field == 8 && t.wire == 2)
								copy_str(e->text, sizeof e->text, &t);
							else if (t.field == 2 && t.wire == 2) {
								/* shape { dim { size } } */
								size_t dp = 0;
								struct pbfield d, s;
								if (pb_next(t.p, t.n, &dp, &d) == 1 && d.field == 2) {
									size_t zp = 0;
									if (pb_next(d.p, d.n, &zp, &s) == 1 && s.field == 1)
										e->dim = s.u;
								}
							}
						}
						e->has_text = 1;
					} else if (x.field == 9 && x.wire == 2) { /* SummaryMetadata */
						size_t mp = 0;
						struct pbfield m, q;
						if (pb_next(x.p, x.n, &mp, &m) == 1 && m.field == 1) {
							size_t qp = 0;
							if (pb_next(m.p, m.n, &qp, &q) == 1 && q.field == 1)
								copy_str(e->plugin, sizeof e->plugin, &q);
						}
					} else {
						return -1;
					}
				}
				if (r < 0)
					return -1;
			}
			if (r < 0)
				return -1;
		} else {
			return -1;
		}
	}
	return r < 0 ? -1 : 0;
}

static unsigned char *slurp(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	unsigned char *buf = NULL;
	size_t cap = 0, len = 0;
	for (;;) {
		if (len == cap) {
			cap = cap ? cap * 2 : 4096;
			buf = realloc(buf, cap);
		}
		size_t k = fread(buf + len, 1, cap - len, f);
		if (k == 0)
			break;
		len += k;
	}
	fclose(f);
	*n = len;
	return buf;
}

/* Read every record of an event file; returns the count, -1 on a bad CRC
 * or a broken record. */
static int read_events(const char *path, struct event *ev, int max)
{
	size_t n;
	unsigned char *b = slurp(path, &n);
	if (!b)
		return -1;
	size_t pos = 0;
	int k = 0;
	while (pos < n) {
		if (n - pos < 12 || k == max)
			goto bad;
		uint64_t len = 0;
		for (int i = 0; i < 8; i++)
			len |= (uint64_t)b[pos + i] << (8 * i);
		if (get_u32(b + pos + 8) != lf_tboard_mask_crc(lf_crc32c(0, b + pos, 8)))
			goto bad;
		if (len > n - pos - 16)
			goto bad;
		const unsigned char *payload = b + pos + 12;
		if (get_u32(payload + len) != lf_tboard_mask_crc(lf_crc32c(0, payload, len)))
			goto bad;
		if (decode_event(payload, len, &ev[k]) != 0)
			goto bad;
		k++;
		pos += 16 + len;
	}
	free(b);
	return k;
bad:
	free(b);
	return -1;
}

/* ---- CRC, mask, framing ---- */

static void test_crc(void)
{
	unsigned char zeros[32], ones[32], inc[32], dec[32];
	for (int i = 0; i < 32; i++) {
		zeros[i] = 0;
		ones[i] = 0xFF;
		inc[i] = (unsigned char)i;
		dec[i] = (unsigned char)(31 - i);
	}
	CHECK(lf_crc32c(0, "123456789", 9) == 0xE3069283u, "crc32c check value of \"123456789\"");
	CHECK(lf_crc32c(0, zeros, 32) == 0x8A9136AAu, "crc32c of 32 zero bytes (RFC 3720)");
	CHECK(lf_crc32c(0, ones, 32) == 0x62A8AB43u, "crc32c of 32 0xff bytes (RFC 3720)");
	CHECK(lf_crc32c(0, inc, 32) == 0x46DD794Eu, "crc32c of 0..31 (RFC 3720)");
	CHECK(lf_crc32c(0, dec, 32) == 0x113FDB5Cu, "crc32c of 31..0 (RFC 3720)");
	CHECK(lf_crc32c(0, "", 0) == 0, "crc32c of nothing");
	CHECK(lf_crc32c(lf_crc32c(0, "1234", 4), "56789", 5) == 0xE3069283u, "crc32c continued across two calls");
	CHECK(lf_tboard_mask_crc(0) == 0xA282EAD8u && lf_tboard_mask_crc(0xE3069283u) == 0xC78AB0E5u &&
		      lf_tboard_mask_crc(0xFFFFFFFFu) == 0xA282EAD7u,
	      "masked crc: rotate right 15, add 0xa282ead8");
}

static const unsigned char VERSION_RECORD[] = {
	0x18, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xa3, 0x7f, 0x4b, 0x22, 0x09, 0x00, 0x00, 0x00,
	0x40, 0xfc, 0x54, 0xd9, 0x41, 0x1a, 0x0d, 'b',	'r',  'a',  'i',  'n',	'.',  'E',  'v',  'e',
	'n',  't',  ':',  '2',	0xec, 0xed, 0x8f, 0x9d,
};

static const unsigned char SCALAR_RECORD[] = {
	0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x29, 0xed, 0xa9, 0x50, 0x09, 0x00, 0x00, 0x40,
	0x40, 0xfc, 0x54, 0xd9, 0x41, 0x10, 0x0a, 0x2a, 0x13, 0x0a, 0x11, 0x0a, 0x0a, 't',  'r',  'a',
	'i',  'n',  '/',  'l',	'o',  's',  's',  0x15, 0x00, 0x00, 0xc0, 0x3f, 0x3f, 0xdd, 0xc3, 0x79,
};

static void test_frame(void)
{
	unsigned char out[64];
	lf_tboard_frame(out, VERSION_RECORD + 12, 24);
	CHECK(memcmp(out, VERSION_RECORD, sizeof VERSION_RECORD) == 0, "version record framed byte for byte");
	lf_tboard_frame(out, SCALAR_RECORD + 12, 32);
	CHECK(memcmp(out, SCALAR_RECORD, sizeof SCALAR_RECORD) == 0, "scalar record framed byte for byte");
}

/* ---- event files ---- */

static int count_files(const char *d, const char *prefix, char *name, size_t cap)
{
	DIR *dd = opendir(d);
	if (!dd)
		return -1;
	int k = 0;
	struct dirent *de;
	while ((de = readdir(dd))) {
		if (de->d_name[0] == '.')
			continue;
		if (!prefix || strncmp(de->d_name, prefix, strlen(prefix)) == 0) {
			k++;
			if (name)
				snprintf(name, cap, "%s", de->d_name);
		}
	}
	closedir(dd);
	return k;
}

static void test_events(void)
{
	char logdir[512];
	snprintf(logdir, sizeof logdir, "%s/out/runs/Jan01_00-00-00_host", dir);
	struct lf_tboard *tb = lf_tboard_open(logdir);
	if (!CHECK(tb != NULL, "open an event file in a new nested folder (%s)", tb ? "" : lf_errmsg()))
		return;
	char path[1024];
	snprintf(path, sizeof path, "%s", lf_tboard_path(tb));
	char name[512];
	CHECK(count_files(logdir, "events.out.tfevents.", name, sizeof name) == 1, "one events.out.tfevents.* file");
	/* events.out.tfevents.<10 digits>.<host>.<pid>.<n> */
	char host[256] = "";
	gethostname(host, sizeof host);
	char want_tail[400];
	snprintf(want_tail, sizeof want_tail, ".%s.%ld.", host, (long)getpid());
	int digits = 1;
	for (int i = 0; i < 10; i++)
		digits &= name[20 + i] >= '0' && name[20 + i] <= '9';
	CHECK(strlen(name) > 31 && digits && name[30] == '.' && strstr(name + 30, want_tail) == name + 30,
	      "file name: seconds (10 digits), hostname, pid, counter: %s", name);
	CHECK(strcmp(path + strlen(path) - strlen(name), name) == 0, "lf_tboard_path names the file");

	CHECK(lf_tboard_scalar(tb, "train/loss", 10, 1.5f, 1700000001.0) == 0, "write a scalar");
	/* readable while the writer is still open: every record is flushed */
	struct event ev[16];
	int k = read_events(path, ev, 16);
	CHECK(k == 2, "two records readable before close (%d)", k);
	size_t n;
	unsigned char *bytes = slurp(path, &n);
	CHECK(n == 46 + sizeof SCALAR_RECORD && memcmp(bytes + 46, SCALAR_RECORD, sizeof SCALAR_RECORD) == 0,
	      "the scalar record is byte for byte the reference's");
	free(bytes);

	CHECK(lf_tboard_scalar(tb, "train/learning_rate", 10, 5e-5f, 1700000001.5) == 0 &&
		      lf_tboard_scalar(tb, "eval/loss", 0, -2.25f, 1700000002.0) == 0 &&
		      lf_tboard_scalar(tb, "train/epoch", (int64_t)1 << 40, 0.5f, 0) == 0 &&
		      lf_tboard_text(tb, "args", "{\"output_dir\": \"saves\"}", 0, 1700000003.0) == 0 &&
		      lf_tboard_flush(tb) == 0,
	      "more scalars, a text summary, a flush");
	CHECK(lf_tboard_close(tb) == 0, "close");
	k = read_events(path, ev, 16);
	CHECK(k == 6, "six records with good CRCs decode (%d)", k);
	if (k != 6)
		return;
	CHECK(strcmp(ev[0].version, "brain.Event:2") == 0 && strcmp(ev[0].writer, "lf") == 0 &&
		      ev[0].wall_time > 1.6e9 && !ev[0].has_scalar,
	      "first record: file_version brain.Event:2, source writer lf, wall_time now");
	CHECK(strcmp(ev[1].tag, "train/loss") == 0 && ev[1].step == 10 && ev[1].value == 1.5f &&
		      ev[1].wall_time == 1700000001.0,
	      "train/loss at step 10 = 1.5");
	CHECK(strcmp(ev[2].tag, "train/learning_rate") == 0 && ev[2].value == 5e-5f && ev[2].wall_time == 1700000001.5,
	      "train/learning_rate as a float");
	CHECK(strcmp(ev[3].tag, "eval/loss") == 0 && ev[3].step == 0 && ev[3].value == -2.25f,
	      "step 0 (left out, proto3) and a negative value");
	CHECK(ev[4].step == (int64_t)1 << 40 && ev[4].wall_time > 1.6e9, "a large step; wall_time 0 means now");
	CHECK(ev[5].has_text && strcmp(ev[5].tag, "args/text_summary") == 0 && strcmp(ev[5].plugin, "text") == 0 &&
		      ev[5].dtype == 7 && ev[5].dim == 1 && strcmp(ev[5].text, "{\"output_dir\": \"saves\"}") == 0,
	      "text summary: tag args/text_summary, plugin text, DT_STRING [1]");

	/* a second writer in the same process gets the next counter */
	struct lf_tboard *tb2 = lf_tboard_open(logdir);
	CHECK(tb2 && strcmp(lf_tboard_path(tb2), path) != 0 && count_files(logdir, "events.out.tfevents.", NULL, 0) == 2,
	      "a second writer makes a second file");
	lf_tboard_close(tb2);

	/* refusals */
	char bad[600];
	snprintf(bad, sizeof bad, "%s/file", dir);
	FILE *f = fopen(bad, "w");
	fclose(f);
	snprintf(bad, sizeof bad, "%s/file/sub", dir);
	CHECK(lf_tboard_open(bad) == NULL && strstr(lf_errmsg(), "file"), "a log folder under a file is refused: %s",
	      lf_errmsg());
	CHECK(lf_tboard_close(NULL) == 0, "closing NULL is fine");
}

static void test_names(void)
{
	static const char *const pairs[][2] = {
		{ "loss", "train/loss" },
		{ "grad_norm", "train/grad_norm" },
		{ "learning_rate", "train/learning_rate" },
		{ "epoch", "train/epoch" },
		{ "eval_loss", "eval/loss" },
		{ "eval_runtime", "eval/runtime" },
		{ "test_loss", "test/loss" },
		{ "train_runtime", "train/train_runtime" },
		{ "rewards/chosen", "train/rewards/chosen" },
		{ "eval_rewards/chosen", "eval/rewards/chosen" },
		{ "evaluation", "train/evaluation" },
	};
	int ok = 1;
	for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
		char *t = lf_tboard_hf_tag(pairs[i][0]);
		if (strcmp(t, pairs[i][1]) != 0) {
			printf("# %s -> %s, want %s\n", pairs[i][0], t, pairs[i][1]);
			ok = 0;
		}
		free(t);
	}
	CHECK(ok, "Trainer log keys renamed as rewrite_logs does");

	unsetenv("TENSORBOARD_LOGGING_DIR");
	char *d = lf_tboard_default_logdir("saves/x", 1700000000);
	char host[256] = "";
	gethostname(host, sizeof host);
	/* 1700000000 is Nov 14 2023 22:13:20 UTC; the day and hour depend on
	 * the local zone */
	CHECK(strncmp(d, "saves/x/runs/Nov1", 17) == 0 && strlen(d) == strlen("saves/x/runs/Nov14_22-13-20_") + strlen(host) &&
		      d[18] == '_' && d[21] == '-' && d[24] == '-' && d[27] == '_' && strcmp(d + 28, host) == 0,
	      "default log folder OUTPUT/runs/MonDD_HH-MM-SS_host: %s", d);
	free(d);
	setenv("TENSORBOARD_LOGGING_DIR", "~/tb", 1);
	d = lf_tboard_default_logdir("saves/x", 1700000000);
	char want[512];
	snprintf(want, sizeof want, "%s/tb", getenv("HOME") ? getenv("HOME") : "");
	CHECK(getenv("HOME") == NULL || strcmp(d, want) == 0, "TENSORBOARD_LOGGING_DIR wins, ~ expanded: %s", d);
	free(d);
	unsetenv("TENSORBOARD_LOGGING_DIR");
}

/* ---- smoothing ---- */

static void test_smooth(void)
{
	/* llamafactory.extras.ploting.smooth (LLaMA-Factory 0.9.5), printed
	 * with repr() */
	const double in1[8] = { 2.5, 2.25, 2.0, 1.875, 1.9, 1.5, 1.25, 1.3125 };
	const double want1[8] = { 2.5,
				  2.2944094470506036,
				  2.052298242999965,
				  1.906494867738688,
				  1.9011537339397677,
				  1.5712600620261998,
				  1.3070679268561043,
				  1.3115350585413648 };
	double out[100];
	lf_plot_smooth(in1, out, 8);
	int exact = 1;
	double worst = 0;
	for (int i = 0; i < 8; i++) {
		exact &= out[i] == want1[i];
		worst = fmax(worst, fabs(out[i] - want1[i]) / want1[i]);
	}
	CHECK(worst < 1e-15, "smooth() of 8 losses as LLaMA-Factory's (%s, worst relative %.3g)",
	      exact ? "bit for bit" : "within rounding", worst);
	double one = 1.0;
	lf_plot_smooth(&one, out, 1);
	CHECK(out[0] == 1.0, "smooth() of one value");
	/* x_i = 3 exp(-i/30) + 0.1 sin(i), i = 0..99 */
	double in3[100];
	for (int i = 0; i < 100; i++)
		in3[i] = 3.0 * exp(-i / 30.0) + 0.1 * sin((double)i);
	lf_plot_smooth(in3, out, 100);
	CHECK(fabs(in3[1] - 2.985795399926807) < 1e-15 && out[0] == 3.0 &&
		      fabs(out[1] - 2.9984084153053683) < 1e-14 && fabs(out[50] - 0.7602695812931216) < 1e-14 &&
		      fabs(out[99] - 0.14384998003957392) < 1e-14,
	      "smooth() of 100 values: s[1], s[50], s[99] as LLaMA-Factory's");
	lf_plot_smooth(in1, out, 0);
	CHECK(1, "smooth() of nothing");
	/* in place */
	double inplace[8];
	memcpy(inplace, in1, sizeof inplace);
	lf_plot_smooth(inplace, inplace, 8);
	CHECK(memcmp(inplace, (lf_plot_smooth(in1, out, 8), out), sizeof inplace) == 0, "smooth() in place");
}

/* ---- the plot ---- */

static int is_white(const unsigned char *p)
{
	return p[0] == 255 && p[1] == 255 && p[2] == 255;
}

static int is_blue(const unsigned char *p)
{
	return p[2] > p[0] + 30 && p[0] < 230;
}

static void test_plot(void)
{
	enum { N = 120 };
	long steps[N];
	double loss[N], sm[N];
	for (int i = 0; i < N; i++) {
		steps[i] = 10 + 5 * i;
		loss[i] = 2.0 - 1.5 * i / (N - 1) + ((i % 3) - 1) * 0.05;
	}
	lf_plot_smooth(loss, sm, N);
	char out[512], png[600];
	snprintf(out, sizeof out, "%s/saves", dir);
	mkdir(out, 0777);
	snprintf(png, sizeof png, "%s/training_loss.png", out);
	struct lf_plot_frame f;
	int rc = lf_plot_loss(png, "training loss of saves", "loss", steps, loss, N, &f);
	if (!CHECK(rc == 0, "plot written (%s)", rc ? lf_errmsg() : ""))
		return;
	CHECK(count_files(out, NULL, NULL, 0) == 1, "only the PNG in its folder (no temporary left)");
	CHECK(f.width == 640 && f.height == 480 && f.left == 80 && f.right == 576,
	      "a 640x480 figure, matplotlib's subplot box");
	CHECK(fabs(f.xmin - (10 - 0.05 * 595)) < 1e-9 && fabs(f.xmax - (605 + 0.05 * 595)) < 1e-9,
	      "x range: the steps with 5%% margins");

	png_image img;
	memset(&img, 0, sizeof img);
	img.version = PNG_IMAGE_VERSION;
	if (!CHECK(png_image_begin_read_from_file(&img, png) != 0, "libpng reads it"))
		return;
	CHECK(img.width == 640 && img.height == 480 && img.format == PNG_FORMAT_RGB,
	      "640x480 RGB (%ux%u, format %u)", img.width, img.height, img.format);
	img.format = PNG_FORMAT_RGB;
	unsigned char *px = malloc(PNG_IMAGE_SIZE(img));
	if (!CHECK(png_image_finish_read(&img, NULL, px, 0, NULL) != 0, "libpng decodes every row")) {
		free(px);
		return;
	}
	int W = (int)img.width;
#define PX(x, y) (px + ((size_t)(y) * (size_t)W + (size_t)(x)) * 3)
	/* every smoothed point lies on blue */
	int on = 0, raw_on = 0;
	for (int i = 0; i < N; i++) {
		double x = f.left + (steps[i] - f.xmin) / (f.xmax - f.xmin) * (f.right - f.left);
		double y = f.bottom - (sm[i] - f.ymin) / (f.ymax - f.ymin) * (f.bottom - f.top);
		double yr = f.bottom - (loss[i] - f.ymin) / (f.ymax - f.ymin) * (f.bottom - f.top);
		on += is_blue(PX((int)x, (int)y));
		raw_on += !is_white(PX((int)x, (int)yr)) && PX((int)x, (int)yr)[2] >= PX((int)x, (int)yr)[0];
	}
	CHECK(on == N, "the smoothed curve passes through all %d points (%d)", N, on);
	CHECK(raw_on == N, "the raw curve is drawn at all %d points (%d)", N, raw_on);
	/* the lower left of the axes is empty for a falling curve */
	int blank = 1;
	for (int y = (int)f.bottom - 60; y < (int)f.bottom - 3; y++)
		for (int x = (int)f.left + 3; x < (int)f.left + 60; x++)
			blank &= is_white(PX(x, y));
	CHECK(blank, "no ink where there are no data (lower left)");
	int frame = 1;
	for (int y = (int)f.top + 1; y < (int)f.bottom; y++)
		frame &= PX((int)f.left, y)[0] == 0 && PX((int)f.right, y)[0] == 0;
	CHECK(frame, "the axes frame, left and right, in black");
	int title_ink = 0, tick_ink = 0, legend_ink = 0;
	for (int y = 0; y < (int)f.top - 2; y++)
		for (int x = 0; x < W; x++)
			title_ink += PX(x, y)[0] < 128;
	for (int y = (int)f.bottom + 2; y < 480; y++)
		for (int x = 0; x < W; x++)
			tick_ink += PX(x, y)[0] < 128;
	for (int y = (int)f.top + 2; y < (int)f.top + 60; y++)
		for (int x = (int)f.right - 130; x < (int)f.right - 2; x++)
			legend_ink += is_blue(PX(x, y));
	CHECK(title_ink > 100 && tick_ink > 100, "title and tick labels drawn (%d, %d dark pixels)", title_ink, tick_ink);
	CHECK(legend_ink > 20, "legend handles in the free upper right corner (%d blue pixels)", legend_ink);
	int corner = 1;
	for (int y = 0; y < 20; y++)
		for (int x = 0; x < 20; x++)
			corner &= is_white(PX(x, y));
	CHECK(corner, "white background");
#undef PX
	free(px);

	/* lf_plot_key: the name and skip rule of plot_loss */
	rc = lf_plot_key(out, "eval_loss", steps, loss, 5);
	snprintf(png, sizeof png, "%s/training_eval_loss.png", out);
	struct stat sb;
	CHECK(rc == 0 && stat(png, &sb) == 0, "lf_plot_key writes training_eval_loss.png");
	rc = lf_plot_key(out, "eval/acc", steps, loss, 1);
	snprintf(png, sizeof png, "%s/training_eval_acc.png", out);
	CHECK(rc == 0 && stat(png, &sb) == 0, "a '/' in the key becomes '_', one point is fine");
	CHECK(lf_plot_key(out, "eval_accuracy", steps, loss, 0) == 1 && count_files(out, NULL, NULL, 0) == 3,
	      "a key with no points is skipped, nothing written");
	CHECK(lf_plot_loss(png, "t", "y", steps, loss, 0, NULL) == -1, "no points: an error");
	double odd[6] = { 1.0, NAN, 2.0, INFINITY, 0.5, 0.25 };
	snprintf(png, sizeof png, "%s/odd.png", out);
	CHECK(lf_plot_loss(png, "non-finite values: \xc3\xa9t\xc3\xa9 ~ {[|]}", "loss", steps, odd, 6, NULL) == 0,
	      "NaN and infinity break the curve, UTF-8 in the title");
	long big[2] = { 0, 5000000 };
	double tiny[2] = { 1e-7, 3e-7 };
	snprintf(png, sizeof png, "%s/tiny.png", out);
	CHECK(lf_plot_loss(png, "t", "learning_rate", big, tiny, 2, NULL) == 0, "large steps and tiny values");
	snprintf(png, sizeof png, "%s/nodir/x.png", out);
	CHECK(lf_plot_loss(png, "t", "y", steps, loss, 3, NULL) == -1 && strstr(lf_errmsg(), "nodir"),
	      "an unwritable path is an error: %s", lf_errmsg());
}

static void cleanup(const char *path)
{
	struct stat sb;
	if (lstat(path, &sb) != 0)
		return;
	if (S_ISDIR(sb.st_mode)) {
		DIR *d = opendir(path);
		struct dirent *de;
		while (d && (de = readdir(d))) {
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			char sub[1024];
			snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
			cleanup(sub);
		}
		if (d)
			closedir(d);
		rmdir(path);
	} else {
		unlink(path);
	}
}

int main(void)
{
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	test_crc();
	test_frame();
	test_events();
	test_names();
	test_smooth();
	test_plot();
	if (!getenv("LF_KEEP_TEST_FILES"))
		cleanup(dir);
	else
		printf("# files kept in %s\n", dir);
	return check_done();
}

/*
 * test_stream.c — the stream reader and writer: round trips of every record
 * type, and truncated, trailer-less, corrupted and random inputs, which must
 * give an error naming the offset, never a crash or a wrong success.
 */
#include "check.h"
#include "error.h"
#include "mp.h"
#include "options.h"
#include "record.h"
#include "stream.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "/tmp/lf-test-stream-XXXXXX";

/* A path in the test folder (four live at once). */
static char *path(const char *name)
{
	static char buf[4][256];
	static int next;
	char *b = buf[next++ % 4];
	snprintf(b, sizeof buf[0], "%s/%s", dir, name);
	return b;
}

static void pack_header(msgpack_packer *pk, const char *kind, const char *type)
{
	msgpack_pack_map(pk, 4);
	lf_pk_kv_str(pk, "format", LF_STREAM_FORMAT);
	lf_pk_kv_uint(pk, "version", LF_STREAM_VERSION);
	lf_pk_kv_str(pk, "kind", kind);
	lf_pk_kv_str(pk, "type", type);
}

static struct lf_elem text(const char *s, const struct lf_range *user, size_t nuser)
{
	return (struct lf_elem){ .kind = LF_ELEM_TEXT, .text = s, .len = strlen(s), .user = user, .nuser = nuser };
}

/* A text stream of n SFT records; returns its size. */
static long write_sft(const char *file, int n)
{
	struct lf_writer *w = lf_writer_open(file);
	if (!w)
		return -1;
	pack_header(lf_writer_pk(w), "text", "sft");
	lf_writer_end_header(w);
	struct lf_arena a = { 0 };
	static const struct lf_range user[] = { { 5, 10 } };
	for (int i = 0; i < n; i++) {
		lf_arena_reset(&a);
		struct lf_text_record r = { .type = LF_REC_SFT, .dataset = 0, .row = (uint64_t)i, .source_row = (uint64_t)i };
		struct lf_turn *t = lf_text_record_add_turn(&a, &r);
		lf_elems_push(&a, &t->source, (struct lf_elem){ .kind = LF_ELEM_BOS });
		lf_elems_push(&a, &t->source, text("user:hello<|x|>", user, 1));
		lf_elems_push(&a, &t->target, text("reply", NULL, 0));
		lf_elems_push(&a, &t->target, (struct lf_elem){ .kind = LF_ELEM_TOKEN, .text = "<|end|>", .len = 7 });
		lf_elems_push(&a, &t->target, (struct lf_elem){ .kind = LF_ELEM_EOS });
		lf_text_record_pack(lf_writer_pk(w), &r);
		lf_writer_end_record(w);
	}
	lf_arena_free(&a);
	if (lf_writer_finish(w, 3, NULL, 0) < 0)
		return -1;
	FILE *f = fopen(file, "rb");
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	fclose(f);
	return size;
}

/* Read a stream to its end: number of records, or -1 on error. */
static long read_all(const char *file, bool check_records)
{
	struct lf_reader *r = lf_reader_open(file);
	if (!r)
		return -1;
	const msgpack_object *rec;
	int rc;
	struct lf_arena a = { 0 };
	while ((rc = lf_reader_next(r, &rec)) == 1) {
		struct lf_text_record tr;
		lf_arena_reset(&a);
		if (check_records && lf_text_record_unpack(rec, LF_REC_SFT, &a, &tr) < 0) {
			rc = -1;
			break;
		}
	}
	long n = rc == 0 ? (long)lf_reader_records(r) : -1;
	lf_arena_free(&a);
	lf_reader_close(r);
	return n;
}

static void copy_prefix(const char *from, const char *to, long n)
{
	FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
	char *buf = malloc((size_t)n + 1);
	size_t got = fread(buf, 1, (size_t)n, in);
	fwrite(buf, 1, got, out);
	free(buf);
	fclose(in);
	fclose(out);
}

static void test_round_trip(void)
{
	long size = write_sft(path("a.lfs"), 100);
	CHECK(size > 0, "writer produces a stream (%ld bytes)", size);
	CHECK(access(path("a.lfs.tmp"), F_OK) != 0, "no temporary file is left behind");
	CHECK(read_all(path("a.lfs"), true) == 100, "reader reads back the 100 records");

	struct lf_reader *r = lf_reader_open(path("a.lfs"));
	const msgpack_object *rec;
	struct lf_arena a = { 0 };
	struct lf_text_record tr;
	lf_reader_next(r, &rec);
	CHECK(lf_text_record_unpack(rec, LF_REC_SFT, &a, &tr) == 0 && tr.nturns == 1 && tr.turns[0].source.n == 2 &&
		      tr.turns[0].target.n == 3,
	      "a decoded record keeps its turns and elements");
	const struct lf_elem *el = &tr.turns[0].source.v[1];
	CHECK(el->kind == LF_ELEM_TEXT && el->len == 15 && !memcmp(el->text, "user:hello<|x|>", 15) && el->nuser == 1 &&
		      el->user[0].start == 5 && el->user[0].end == 10,
	      "text elements keep their user-content ranges");
	CHECK(tr.turns[0].source.v[0].kind == LF_ELEM_BOS && tr.turns[0].target.v[2].kind == LF_ELEM_EOS &&
		      tr.turns[0].target.v[1].kind == LF_ELEM_TOKEN,
	      "bos, eos and named tokens survive");
	while (lf_reader_next(r, &rec) == 1)
		;
	uint64_t skipped = 0;
	lf_mp_get_uint(lf_reader_trailer(r), "skipped", &skipped, true);
	CHECK(skipped == 3, "the trailer carries the skipped count");
	lf_reader_close(r);
	lf_arena_free(&a);
}

static void test_truncation(void)
{
	long size = write_sft(path("b.lfs"), 20);
	int wrong = 0, crashes_none = 1;
	for (long n = 0; n < size; n++) {
		copy_prefix(path("b.lfs"), path("cut.lfs"), n);
		if (read_all(path("cut.lfs"), true) >= 0)
			wrong++;
	}
	CHECK(wrong == 0 && crashes_none, "every truncation of a %ld-byte stream is an error (%d read as complete)", size,
	      wrong);
	copy_prefix(path("b.lfs"), path("cut.lfs"), size / 2);
	read_all(path("cut.lfs"), true);
	CHECK(strstr(lf_errmsg(), "byte offset") || strstr(lf_errmsg(), "without a trailer"),
	      "a truncated stream's error names where it stopped: %s", lf_errmsg());
}

static void test_trailer_less(void)
{
	/* header + records, no trailer: a writer that died without its die hook */
	FILE *f = fopen(path("c.lfs"), "wb");
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	pack_header(&pk, "text", "sft");
	for (int i = 0; i < 3; i++) {
		msgpack_pack_map(&pk, 3);
		lf_pk_kv_uint(&pk, "dataset", 0);
		lf_pk_kv_uint(&pk, "row", (uint64_t)i);
		lf_pk_str(&pk, "turns");
		msgpack_pack_array(&pk, 0);
	}
	fwrite(sb.data, 1, sb.size, f);
	fclose(f);
	CHECK(read_all(path("c.lfs"), true) < 0 && strstr(lf_errmsg(), "without a trailer"),
	      "a stream without a trailer is an error: %s", lf_errmsg());

	/* a trailer whose count disagrees */
	msgpack_pack_map(&pk, 4);
	lf_pk_kv_bool(&pk, "trailer", true);
	lf_pk_kv_uint(&pk, "records", 5);
	lf_pk_kv_uint(&pk, "skipped", 0);
	lf_pk_kv_str(&pk, "status", "ok");
	f = fopen(path("c.lfs"), "wb");
	fwrite(sb.data, 1, sb.size, f);
	fclose(f);
	CHECK(read_all(path("c.lfs"), true) < 0 && strstr(lf_errmsg(), "counts 5 records"),
	      "a trailer that miscounts is an error: %s", lf_errmsg());

	/* an error trailer: the upstream tool's message reaches the reader */
	msgpack_sbuffer_clear(&sb);
	pack_header(&pk, "text", "sft");
	msgpack_pack_map(&pk, 5);
	lf_pk_kv_bool(&pk, "trailer", true);
	lf_pk_kv_uint(&pk, "records", 0);
	lf_pk_kv_uint(&pk, "skipped", 0);
	lf_pk_kv_str(&pk, "status", "error");
	lf_pk_kv_str(&pk, "error", "data.json: record 7: missing column 'output'");
	f = fopen(path("c.lfs"), "wb");
	fwrite(sb.data, 1, sb.size, f);
	fclose(f);
	CHECK(read_all(path("c.lfs"), true) < 0 && strstr(lf_errmsg(), "record 7: missing column"),
	      "an error trailer carries the upstream failure: %s", lf_errmsg());

	/* data after the trailer */
	msgpack_sbuffer_clear(&sb);
	pack_header(&pk, "text", "sft");
	msgpack_pack_map(&pk, 4);
	lf_pk_kv_bool(&pk, "trailer", true);
	lf_pk_kv_uint(&pk, "records", 0);
	lf_pk_kv_uint(&pk, "skipped", 0);
	lf_pk_kv_str(&pk, "status", "ok");
	msgpack_pack_nil(&pk);
	f = fopen(path("c.lfs"), "wb");
	fwrite(sb.data, 1, sb.size, f);
	fclose(f);
	CHECK(read_all(path("c.lfs"), true) < 0 && strstr(lf_errmsg(), "after the trailer"),
	      "data after the trailer is an error: %s", lf_errmsg());

	/* a newer version */
	msgpack_sbuffer_clear(&sb);
	msgpack_pack_map(&pk, 3);
	lf_pk_kv_str(&pk, "format", LF_STREAM_FORMAT);
	lf_pk_kv_uint(&pk, "version", 99);
	lf_pk_kv_str(&pk, "kind", "text");
	f = fopen(path("c.lfs"), "wb");
	fwrite(sb.data, 1, sb.size, f);
	fclose(f);
	CHECK(read_all(path("c.lfs"), true) < 0 && strstr(lf_errmsg(), "newer"),
	      "a stream from a newer lf is refused: %s", lf_errmsg());
	msgpack_sbuffer_destroy(&sb);

	f = fopen(path("empty.lfs"), "wb");
	fclose(f);
	CHECK(read_all(path("empty.lfs"), true) < 0 && strstr(lf_errmsg(), "empty input"),
	      "empty input is an error: %s", lf_errmsg());
}

static uint64_t rng = 0x12345678;
static uint32_t next_rand(void)
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(rng >> 33);
}

static void test_garbage(void)
{
	long size = write_sft(path("d.lfs"), 50);
	FILE *f = fopen(path("d.lfs"), "rb");
	unsigned char *orig = malloc((size_t)size);
	CHECK(fread(orig, 1, (size_t)size, f) == (size_t)size, "read the stream back");
	fclose(f);
	int complete = 0;
	for (int trial = 0; trial < 300; trial++) {
		unsigned char *buf = malloc((size_t)size);
		memcpy(buf, orig, (size_t)size);
		int flips = 1 + (int)(next_rand() % 4);
		for (int k = 0; k < flips; k++)
			buf[next_rand() % (uint32_t)size] = (unsigned char)next_rand();
		f = fopen(path("bad.lfs"), "wb");
		fwrite(buf, 1, (size_t)size, f);
		fclose(f);
		if (read_all(path("bad.lfs"), true) >= 0 && memcmp(buf, orig, (size_t)size) != 0)
			complete++; /* a flip inside a string stays a valid stream: allowed */
		free(buf);
	}
	CHECK(1, "300 corrupted streams read without a crash (%d still well-formed)", complete);
	int accepted = 0;
	for (int trial = 0; trial < 300; trial++) {
		size_t n = next_rand() % 4096;
		unsigned char *buf = malloc(n + 1);
		for (size_t i = 0; i < n; i++)
			buf[i] = (unsigned char)next_rand();
		f = fopen(path("rand.lfs"), "wb");
		fwrite(buf, 1, n, f);
		fclose(f);
		if (read_all(path("rand.lfs"), true) >= 0)
			accepted++;
		free(buf);
	}
	CHECK(accepted == 0, "300 random byte strings are all refused (%d accepted)", accepted);
	/* a huge declared array must not be waited for or allocated */
	unsigned char huge[] = { 0xdd, 0x7f, 0xff, 0xff, 0xff };
	size_t bad_at = 0;
	const char *why = NULL;
	CHECK(lf_mp_span(huge, sizeof huge, LF_STREAM_MAX_OBJECT, &bad_at, &why) < 0,
	      "an array declaring 2^31 items is malformed at once");
	unsigned char deep[40];
	memset(deep, 0x91, sizeof deep);
	CHECK(lf_mp_span(deep, sizeof deep, LF_STREAM_MAX_OBJECT, &bad_at, &why) < 0 && strstr(why, "nested"),
	      "nesting deeper than msgpack-c's stack is refused");
	free(orig);
}

static void test_token_records(void)
{
	struct lf_writer *w = lf_writer_open(path("t.lfs"));
	pack_header(lf_writer_pk(w), "tokens", "kto");
	lf_writer_end_header(w);
	int32_t p[] = { 1, 2, 3, -5, 70000 }, q[] = { 9, 8 };
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	lf_pk_ids(&pk, p, 5);
	lf_pk_ids(&pk, q, 2);
	msgpack_unpacked u1, u2;
	msgpack_unpacked_init(&u1);
	msgpack_unpacked_init(&u2);
	size_t off = 0;
	msgpack_unpack_next(&u1, sb.data, sb.size, &off);
	msgpack_unpack_next(&u2, sb.data, sb.size, &off);
	struct lf_token_record r = { .type = LF_REC_KTO, .row = 4, .source_row = 9, .desirable = true,
				     .prompt = { (const uint8_t *)u1.data.via.bin.ptr, 5 },
				     .response = { (const uint8_t *)u2.data.via.bin.ptr, 2 },
				     .prompt_thought = 2 };
	lf_token_record_pack(lf_writer_pk(w), &r);
	lf_writer_end_record(w);
	lf_writer_finish(w, 0, NULL, 0);
	msgpack_unpacked_destroy(&u1);
	msgpack_unpacked_destroy(&u2);
	msgpack_sbuffer_destroy(&sb);

	struct lf_reader *rd = lf_reader_open(path("t.lfs"));
	const msgpack_object *rec;
	struct lf_arena a = { 0 };
	struct lf_token_record back;
	CHECK(rd && lf_reader_next(rd, &rec) == 1 && lf_token_record_unpack(rec, LF_REC_KTO, &a, &back) == 0,
	      "a KTO token record reads back");
	CHECK(back.prompt.n == 5 && lf_ids_at(back.prompt, 3) == -5 && lf_ids_at(back.prompt, 4) == 70000 &&
		      back.response.n == 2 && back.desirable && back.row == 4 && back.source_row == 9 &&
		      back.prompt_thought == 2,
	      "ids (negative and wide too), flags and rows survive");
	lf_reader_close(rd);
	lf_arena_free(&a);
}

static void test_bad_records(void)
{
	/* records whose fields are wrong decode to an error naming the field */
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 3);
	lf_pk_kv_uint(&pk, "dataset", 0);
	lf_pk_kv_uint(&pk, "row", 1);
	lf_pk_str(&pk, "turns");
	msgpack_pack_array(&pk, 1);
	msgpack_pack_map(&pk, 2);
	lf_pk_str(&pk, "source");
	msgpack_pack_array(&pk, 1);
	msgpack_pack_map(&pk, 2);
	lf_pk_kv_str(&pk, "text", "abc");
	lf_pk_str(&pk, "user");
	msgpack_pack_array(&pk, 2);
	msgpack_pack_uint32(&pk, 1);
	msgpack_pack_uint32(&pk, 9); /* past the text */
	lf_pk_str(&pk, "target");
	msgpack_pack_array(&pk, 0);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	msgpack_unpack_next(&u, sb.data, sb.size, NULL);
	struct lf_arena a = { 0 };
	struct lf_text_record r;
	CHECK(lf_text_record_unpack(&u.data, LF_REC_SFT, &a, &r) < 0 && strstr(lf_errmsg(), "'user'"),
	      "a user range past its text is refused: %s", lf_errmsg());
	CHECK(lf_text_record_unpack(&u.data, LF_REC_PAIRWISE, &a, &r) < 0 && strstr(lf_errmsg(), "'prompt'"),
	      "a record of the wrong type names the missing field: %s", lf_errmsg());
	msgpack_unpacked_destroy(&u);
	msgpack_sbuffer_destroy(&sb);
	lf_arena_free(&a);
}

static void test_header_settings(void)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	lf_pk_kv_bool(&pk, "train_on_prompt", true);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	msgpack_unpack_next(&u, sb.data, sb.size, NULL);
	bool cli = false, v = false;
	struct lf_option opt = { "train-on-prompt", 0, LF_OPT_BOOL, &cli };
	CHECK(lf_header_bool_setting(&u.data, "train_on_prompt", &opt, &v) == 0 && v,
	      "a setting not given takes the header's value");
	opt.given = true;
	int rc = lf_header_bool_setting(&u.data, "train_on_prompt", &opt, &v);
	CHECK(rc < 0 && strstr(lf_errmsg(), "contradicts"), "a contradicting command-line value is refused: %s",
	      lf_errmsg());
	cli = true;
	CHECK(lf_header_bool_setting(&u.data, "train_on_prompt", &opt, &v) == 0 && v, "an agreeing value is fine");
	CHECK(lf_header_bool_setting(&u.data, "mask_history", &opt, &v) == 0 && v,
	      "without the key in the header the option decides");
	msgpack_unpacked_destroy(&u);
	msgpack_sbuffer_destroy(&sb);
}

int main(void)
{
	test_header_settings();
	if (!mkdtemp(dir))
		return 1;
	test_round_trip();
	test_truncation();
	test_trailer_less();
	test_garbage();
	test_token_records();
	test_bad_records();
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	if (system(cmd) != 0)
		return 1;
	return check_done();
}

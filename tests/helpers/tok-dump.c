/*
 * tok-dump — test helper: show a tokenizer's intermediate stages, which the
 * tokenizers library exposes too.  Reads JSON lines, each one JSON string,
 * and writes one JSON line per input:
 *   tok-dump norm TOKENIZER    the normalized string (Tokenizer.normalizer.normalize_str)
 *   tok-dump pretok TOKENIZER  the pre-tokens, a JSON array of strings
 *                              (Tokenizer.pre_tokenizer.pre_tokenize_str)
 * tests/tools/tokenize_oracle.py compares them with the library.
 */
#include "buf.h"
#include "error.h"
#include "jsonscan.h"
#include "pyjson.h"
#include "tok_internal.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	lf_set_progname(argv[0]);
	if (argc != 3 || (strcmp(argv[1], "norm") && strcmp(argv[1], "pretok")))
		lf_die_usage("usage: tok-dump norm|pretok TOKENIZER < json-strings");
	bool pretok = !strcmp(argv[1], "pretok");
	struct lf_tokenizer *t = lf_tokenizer_load(argv[2]);
	if (!t)
		lf_die("%s", lf_errmsg());
	struct lf_tok_state *st = lf_tok_state_new(t);
	struct lf_buf in = LF_BUF_INIT, text = LF_BUF_INIT, norm = LF_BUF_INIT, out = LF_BUF_INIT;
	char chunk[65536];
	size_t k;
	while ((k = fread(chunk, 1, sizeof chunk, stdin)) > 0)
		lf_buf_add(&in, chunk, k);
	struct lf_jscan js;
	lf_jscan_init(&js, "<stdin>", in.data ? in.data : "", in.len);
	while (lf_jscan_peek(&js) >= 0) {
		lf_buf_reset(&text);
		lf_buf_reset(&norm);
		lf_buf_reset(&out);
		if (lf_jscan_string(&js, &text) < 0)
			lf_die("%s", lf_errmsg());
		const char *s = text.data ? text.data : "";
		size_t n = text.len;
		if (t->norm) {
			tok_normalize(t->norm, st->rx, s, n, NULL, &norm, NULL);
			s = norm.data ? norm.data : "";
			n = norm.len;
		}
		if (!pretok) {
			lf_pyjson_string(&out, s, n);
		} else {
			tok_pretokenize(t, st, s, n, true);
			lf_buf_addch(&out, '[');
			for (size_t i = 0; i < st->npieces; i++) {
				const struct tok_piece *p = &((const struct tok_piece *)st->pieces)[i];
				if (i)
					lf_buf_addstr(&out, ", ");
				lf_pyjson_string(&out, st->pieces_text.data + p->off, p->len);
			}
			lf_buf_addch(&out, ']');
		}
		lf_buf_addch(&out, '\n');
		fwrite(out.data, 1, out.len, stdout);
	}
	lf_buf_free(&in);
	lf_buf_free(&text);
	lf_buf_free(&norm);
	lf_buf_free(&out);
	lf_tok_state_free(st);
	lf_tokenizer_free(t);
	return 0;
}

/*
 * unicode-dump — test helper: apply one of lf's Unicode operations (nfc, nfd,
 * nfkc, nfkd, lower) to each line of stdin (LF-separated) and print the
 * results, one per line.  tests/tools/tokenize_oracle.py compares them with
 * the tokenizers library's normalizers.
 */
#include "buf.h"
#include "unicode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	const char *op = argv[1];
	struct lf_buf in = LF_BUF_INIT, out = LF_BUF_INIT;
	char chunk[65536];
	size_t k;
	while ((k = fread(chunk, 1, sizeof chunk, stdin)) > 0)
		lf_buf_add(&in, chunk, k);
	size_t start = 0;
	for (size_t i = 0; i <= in.len; i++) {
		if (i < in.len && in.data[i] != '\n')
			continue;
		const char *s = in.data + start;
		size_t n = i - start;
		if (!strcmp(op, "lower"))
			lf_uni_lowercase(s, n, &out);
		else
			lf_uni_normalize(!strcmp(op, "nfc") ? LF_NFC : !strcmp(op, "nfd") ? LF_NFD
								  : !strcmp(op, "nfkc") ? LF_NFKC : LF_NFKD,
					 s, n, &out);
		if (i < in.len)
			lf_buf_addch(&out, '\n');
		start = i + 1;
	}
	fwrite(out.data ? out.data : "", 1, out.len, stdout);
	lf_buf_free(&in);
	lf_buf_free(&out);
	return 0;
}

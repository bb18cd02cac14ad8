/*
 * pyjson-dump — test helper: for each JSON line on stdin, print what lf
 * writes for json.dumps(v, ensure_ascii=False), json.dumps(v, indent=4,
 * ensure_ascii=False), str(v) and repr(v), each as "LENGTH\nBYTES\n".
 * tests/tools/pyjson.py compares them with Python's own.
 */
#include "buf.h"
#include "pyjson.h"

#include <stdio.h>
#include <stdlib.h>

static void emit(struct lf_buf *b)
{
	printf("%zu\n", b->len);
	fwrite(b->data ? b->data : "", 1, b->len, stdout);
	printf("\n");
	lf_buf_reset(b);
}

int main(void)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	struct lf_buf b = LF_BUF_INIT;
	while ((n = getline(&line, &cap, stdin)) > 0) {
		json_error_t err;
		json_t *v = json_loadb(line, (size_t)n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
		if (!v) {
			fprintf(stderr, "pyjson-dump: bad input line: %s\n", err.text);
			return 1;
		}
		lf_pyjson_dumps(&b, v, -1);
		emit(&b);
		lf_pyjson_dumps(&b, v, 4);
		emit(&b);
		lf_py_str(&b, v);
		emit(&b);
		lf_py_repr(&b, v);
		emit(&b);
		json_decref(v);
	}
	free(line);
	lf_buf_free(&b);
	return 0;
}

/*
 * grad-dump — test helper: one optimizer step's loss and gradients by
 * libcommon/backprop, for comparing with transformers + PEFT.
 *
 *   grad-dump MODEL DATA.jsonl MICRO_BATCH OUT.safetensors [ADAPTER]
 *
 * DATA.jsonl: one example per line, {"input_ids": [...], "labels": [...]}.
 * The examples are run in file order, MICRO_BATCH rows at a time, the loss
 * normalised by the label tokens of all of them (transformers'
 * num_items_in_batch).  Without ADAPTER every tensor of the model is
 * trained; with a PEFT LoRA adapter folder only its lora_A / lora_B are.
 * OUT gets "loss" (F32 [1]) and "grad.NAME" for every trained tensor.
 */
#include "backprop.h"
#include "error.h"
#include "model.h"
#include "safetensors.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int32_t *ints(json_t *a, int *n, const char *what, int line)
{
	if (!json_is_array(a) || json_array_size(a) == 0)
		lf_die("line %d: no %s", line, what);
	*n = (int)json_array_size(a);
	int32_t *v = lf_malloc((size_t)*n * sizeof *v);
	for (int i = 0; i < *n; i++)
		v[i] = (int32_t)json_integer_value(json_array_get(a, (size_t)i));
	return v;
}

int main(int argc, char **argv)
{
	lf_set_progname(argv[0]);
	if (argc != 5 && argc != 6)
		lf_die("usage: grad-dump MODEL DATA.jsonl MICRO_BATCH OUT.safetensors [ADAPTER]");
	struct lf_model *m = lf_model_load_writable(argv[1]);
	size_t nbase = m ? m->ntensors : 0;
	if (!m || (argc == 6 && lf_model_load_adapter(m, argv[5]) < 0))
		lf_die("%s", lf_errmsg());
	int mb = atoi(argv[3]);
	FILE *f = fopen(argv[2], "r");
	if (!f || mb < 1)
		lf_die("%s: cannot open (or bad micro-batch)", argv[2]);
	struct lf_train_row *rows = NULL;
	int nrows = 0, longest = 0, total_tokens = 0;
	char *line = NULL;
	size_t cap = 0;
	while (getline(&line, &cap, f) > 0) {
		json_error_t err;
		json_t *o = json_loads(line, 0, &err);
		if (!o)
			lf_die("%s: line %d: %s", argv[2], nrows + 1, err.text);
		rows = lf_realloc(rows, (size_t)(nrows + 1) * sizeof *rows);
		struct lf_train_row *r = &rows[nrows++];
		memset(r, 0, sizeof *r);
		int nl;
		r->ids = ints(json_object_get(o, "input_ids"), &r->T, "input_ids", nrows);
		r->labels = ints(json_object_get(o, "labels"), &nl, "labels", nrows);
		if (nl != r->T)
			lf_die("line %d: labels and input_ids differ in length", nrows);
		longest = r->T > longest ? r->T : longest;
		total_tokens += r->T;
		json_decref(o);
	}
	free(line);
	fclose(f);
	/* trained: everything, or the adapter's tensors */
	float **grads = lf_calloc(m->ntensors, sizeof *grads);
	for (size_t i = argc == 6 ? nbase : 0; i < m->ntensors; i++)
		grads[i] = lf_calloc(m->tensors[i].n, sizeof(float));
	struct lf_model_grad g;
	lf_model_grad_init(&g, m, grads);
	struct lf_backprop bp;
	if (lf_backprop_init(&bp, m, total_tokens, longest, true) < 0)
		lf_die("%s", lf_errmsg());
	long items = 0;
	for (int i = 0; i < nrows; i++)
		items += lf_train_row_label_tokens(&rows[i]);
	double loss = 0;
	long counted = 0;
	for (int i = 0; i < nrows; i += mb) {
		int k = nrows - i < mb ? nrows - i : mb;
		if (lf_backprop_step(&bp, m, &g, rows + i, k, 1.0f / (float)items, &loss, &counted) < 0)
			lf_die("%s", lf_errmsg());
	}
	const char *out = argv[4], *slash = strrchr(out, '/');
	char dir[4096], base[1024];
	snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - out) : 1, slash ? out : ".");
	snprintf(base, sizeof base, "%s", slash ? slash + 1 : out);
	if (strlen(base) > 12 && !strcmp(base + strlen(base) - 12, ".safetensors"))
		base[strlen(base) - 12] = 0;
	struct lf_st_writer *w = lf_st_writer_open(dir, base, 0, NULL);
	float lossf = (float)(loss / (double)items);
	int64_t one = 1;
	if (!w || lf_st_writer_add(w, "loss", LF_DTYPE_F32, 1, &one, &lossf) < 0)
		lf_die("%s", lf_errmsg());
	char **names = lf_calloc(m->ntensors, sizeof *names);
	for (size_t i = 0; i < m->ntensors; i++) {
		if (!grads[i])
			continue;
		const struct lf_model_tensor *t = &m->tensors[i];
		names[i] = lf_malloc(strlen(t->name) + 6);
		sprintf(names[i], "grad.%s", t->name);
		if (lf_st_writer_add(w, names[i], LF_DTYPE_F32, t->ndim, t->shape, grads[i]) < 0)
			lf_die("%s", lf_errmsg());
	}
	if (lf_st_writer_finish(w) < 0)
		lf_die("%s", lf_errmsg());
	for (size_t i = 0; i < m->ntensors; i++) {
		free(grads[i]);
		free(names[i]);
	}
	for (int i = 0; i < nrows; i++) {
		free((void *)rows[i].ids);
		free((void *)rows[i].labels);
	}
	free(rows);
	free(names);
	free(grads);
	lf_backprop_free(&bp, m);
	lf_model_grad_free(&g, m);
	lf_model_free(m);
	return 0;
}

/*
 * lf-merge — merge a PEFT LoRA adapter into its base model and write a
 * Hugging Face model folder: W + scale B A for every adapted linear layer,
 * in the base's dtype, sharded safetensors with their index, the config,
 * generation config and tokenizer files beside.
 */
#include "error.h"
#include "export.h"
#include "log.h"
#include "model.h"
#include "options.h"
#include "output.h"
#include "safetensors.h"

#include "cpu/bf16.h"
#include "cpu/matmul.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *opt_model, *opt_adapter, *opt_export_dir, *opt_export_device, *opt_template;
static bool opt_legacy;
static long long opt_export_size = 5;

static struct lf_option options[] = {
	{ "model-name-or-path", 'm', LF_OPT_STRING, &opt_model, "DIR", "the base model folder (required)" },
	{ "adapter-name-or-path", 'a', LF_OPT_STRING, &opt_adapter, "DIR", "the PEFT LoRA adapter (required)" },
	{ "export-dir", 'o', LF_OPT_STRING, &opt_export_dir, "DIR", "the merged model folder (required)" },
	{ "export-size", 0, LF_OPT_INT, &opt_export_size, "GB", "the largest safetensors file, in GB (default 5)" },
	{ "export-device", 0, LF_OPT_STRING, &opt_export_device, "DEVICE",
	  "cpu or auto (both merge on the CPU, the only device lf-merge uses)" },
	{ "export-legacy-format", 0, LF_OPT_BOOL, &opt_legacy, NULL, "write .bin files: not supported (safetensors only)" },
	{ "template", 't', LF_OPT_STRING, &opt_template, "NAME",
	  "write this template as the chat_template and its stop words into generation_config.json (default: the "
	  "adapter folder's tokenizer files when lf-train wrote them, else the base's)" },
	{ 0 }
};

static const struct lf_tool_info tool = {
	"lf-merge", "-m MODEL -a ADAPTER -o DIR [OPTION]...",
	"Merge a LoRA adapter into its base model and write a Hugging Face model folder.",
	"Example: lf-merge -m models/tiny -a runs/sft -o merged/",
};

/* W [out, in] += scale * B [out, r] @ A [r, in] (DoRA: then each row
 * scaled to its magnitude) */
static void merge_one(float *w, const struct lf_lora *l, int out, int in)
{
	if (!l->r)
		return;
	float *at = lf_malloc((size_t)l->r * (size_t)in * sizeof *at + 4);
	/* B @ A = B @ (A^T)^T: the nt product takes A^T [in, r] */
	for (int i = 0; i < l->r; i++)
		for (int j = 0; j < in; j++)
			at[(size_t)j * l->r + i] = l->A[(size_t)i * in + j];
	lf_cpu_matmul_nt_acc_f32(w, l->B, at, out, in, l->r, l->scale);
	free(at);
	/* DoRA: each row rescaled to its magnitude, m / ||W + s B A|| */
	for (int j = 0; l->mag && j < out; j++) {
		float *row = w + (size_t)j * in, ss = 0;
		for (int i = 0; i < in; i++)
			ss += row[i] * row[i];
		float g = l->mag[j] / sqrtf(ss);
		for (int i = 0; i < in; i++)
			row[i] *= g;
	}
}

int main(int argc, char **argv)
{
	lf_set_progname(argv[0]);
	int first = lf_options_parse(&tool, options, argc, argv);
	if (first < argc)
		lf_die_usage("unexpected operand '%s'", argv[first]);
	if (!opt_model || !opt_adapter || !opt_export_dir)
		lf_die_usage("--model-name-or-path, --adapter-name-or-path and --export-dir are required");
	if (opt_export_size < 1)
		lf_die_usage("option '--export-size': at least 1 (GB)");
	if (opt_export_device && strcmp(opt_export_device, "cpu") && strcmp(opt_export_device, "auto"))
		lf_die_usage("option '--export-device': '%s' is not cpu or auto", opt_export_device);
	if (opt_legacy)
		lf_die_usage("--export-legacy-format (pytorch_model.bin) is not supported: lf writes safetensors");
	lf_output_init_signals();
	struct lf_model *m = lf_model_load_writable(opt_model);
	if (!m)
		lf_die("%s", lf_errmsg());
	size_t nbase = m->ntensors;
	/* the adapter's shapes must be the base's: a mismatched base is refused */
	if (lf_model_load_adapter(m, opt_adapter) < 0)
		lf_die("%s (is %s the adapter's base model?)", lf_errmsg(), opt_model);
	const struct lf_model_config *c = &m->cfg;
	int H = c->hidden, I = c->intermediate, qd = c->heads * c->head_dim, kd = c->kv_heads * c->head_dim;
	for (int l = 0; l < c->layers; l++) {
		struct lf_layer *L = &m->layers[l];
		merge_one((float *)L->q, &L->lq, qd, H);
		merge_one((float *)L->k, &L->lk, kd, H);
		merge_one((float *)L->v, &L->lv, kd, H);
		merge_one((float *)L->o, &L->lo, H, qd);
		merge_one((float *)L->gate, &L->lgate, I, H);
		merge_one((float *)L->up, &L->lup, I, H);
		merge_one((float *)L->down, &L->ldown, H, I);
		if (L->router)
			merge_one((float *)L->router, &L->lrouter, c->experts, H);
		for (int e = 0; e < c->experts; e++) {
			if (L->lw1)
				merge_one((float *)L->w1[e], &L->lw1[e], I, H);
			if (L->lw3)
				merge_one((float *)L->w3[e], &L->lw3[e], I, H);
			if (L->lw2)
				merge_one((float *)L->w2[e], &L->lw2[e], H, I);
		}
		lf_progress("merged layer %d of %d", l + 1, c->layers);
	}
	lf_progress_done();
	/* the base's tensors, in its dtype, into the new folder */
	struct lf_outdir d;
	if (lf_outdir_open(&d, opt_export_dir, "lf-merge.json") < 0)
		lf_die("%s", lf_errmsg());
	struct lf_st_writer *w = lf_st_writer_open(d.tmp, "model", (uint64_t)opt_export_size << 30, NULL);
	if (!w)
		lf_die("%s", lf_errmsg());
	void **conv = lf_calloc(nbase + 1, sizeof *conv);
	for (size_t i = 0; i < nbase; i++) {
		const struct lf_model_tensor *t = &m->tensors[i];
		const struct lf_tensor *src = lf_safetensors_find(m->st, t->name);
		enum lf_dtype dt = src ? src->dtype : LF_DTYPE_F32;
		const void *data = t->data;
		/* a trained copy (modules_to_save) replaces the base's tensor */
		char copy[1024];
		snprintf(copy, sizeof copy, "base_model.model.%s", t->name);
		for (size_t k = nbase; k < m->ntensors; k++)
			if (!strcmp(m->tensors[k].name, copy))
				data = m->tensors[k].data;
		if (data != t->data && !strcmp(t->name, "model.embed_tokens.weight") && c->tie_embeddings)
			lf_die("%s: a trained copy of the embeddings of a model with tied embeddings: the merged model "
			       "would need an untied head, which lf-merge does not write yet", opt_adapter);
		const float *f = data;
		if (dt == LF_DTYPE_BF16) {
			uint16_t *h = lf_malloc(t->n * 2 + 2);
			for (size_t k = 0; k < t->n; k++)
				h[k] = lf_f32_to_bf16(f[k]);
			data = conv[i] = h;
		} else if (dt == LF_DTYPE_F16) {
			_Float16 *h = lf_malloc(t->n * 2 + 2);
			for (size_t k = 0; k < t->n; k++)
				h[k] = (_Float16)f[k];
			data = conv[i] = h;
		} else {
			dt = LF_DTYPE_F32;
		}
		if (lf_st_writer_add(w, t->name, dt, t->ndim, t->shape, data) < 0)
			lf_die("%s", lf_errmsg());
	}
	if (lf_st_writer_finish(w) < 0)
		lf_die("%s", lf_errmsg());
	for (size_t i = 0; i < nbase; i++)
		free(conv[i]);
	free(conv);
	if (lf_export_copy_file(opt_model, d.tmp, "config.json") < 0)
		lf_die("%s", lf_errmsg());
	/* the tokenizer files: the adapter's (lf-train writes the training
	 * template into them), else the base's; --template rewrites them */
	char probe[4096];
	snprintf(probe, sizeof probe, "%s/tokenizer.json", opt_adapter);
	FILE *pf = fopen(probe, "r");
	const char *tok_dir = pf && !opt_template ? opt_adapter : opt_model;
	if (pf)
		fclose(pf);
	if (lf_export_inference_files(tok_dir, d.tmp, opt_template) < 0)
		lf_die("%s", lf_errmsg());
	/* where the folder came from; it also marks it as lf-merge's, which a
	 * later run may replace */
	json_t *prov = json_pack("{s:s,s:s,s:s}", "base_model", opt_model, "adapter", opt_adapter, "created_by",
				 "lf-merge " LF_VERSION);
	if (json_dump_file(prov, lf_outdir_file(&d, "lf-merge.json"), JSON_INDENT(2)) < 0)
		lf_die("%s/lf-merge.json: write failed", d.tmp);
	json_decref(prov);
	if (lf_outdir_commit(&d) < 0)
		lf_die("%s", lf_errmsg());
	lf_model_free(m);
	lf_log_close();
	return 0;
}

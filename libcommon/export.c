/*
 * export.c — the files beside saved weights that inference reads: the
 * tokenizer files, the training template as the tokenizer's chat_template
 * (where LLaMA-Factory writes it), and generation_config.json's eos ids
 * with the template's stop words, so that inference elsewhere formats and
 * stops as training did.
 */
#include "export.h"

#include "error.h"
#include "output.h"
#include "template.h"
#include "template_jinja.h"
#include "tokenizer.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

static const char *const tokenizer_files[] = { "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
					       "chat_template.jinja", "tokenizer.model" };

int lf_export_copy_file(const char *from_dir, const char *to_dir, const char *name)
{
	char src[4096], dst[4096];
	snprintf(src, sizeof src, "%s/%s", from_dir, name);
	snprintf(dst, sizeof dst, "%s/%s", to_dir, name);
	FILE *in = fopen(src, "rb");
	if (!in)
		return 0; /* optional */
	struct lf_output o;
	if (lf_output_open(&o, dst) < 0) {
		fclose(in);
		return -1;
	}
	char buf[65536];
	size_t n;
	int rc = 0;
	while (rc == 0 && (n = fread(buf, 1, sizeof buf, in)) > 0)
		if (fwrite(buf, 1, n, o.f) != n)
			rc = lf_fail("%s: write failed", dst);
	fclose(in);
	if (rc < 0) {
		lf_output_abort(&o);
		return -1;
	}
	return lf_output_commit(&o);
}

static int write_json(const char *dir, const char *name, json_t *j)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	struct lf_output o;
	if (lf_output_open(&o, path) < 0)
		return -1;
	if (json_dumpf(j, o.f, JSON_INDENT(2)) < 0 || fputc('\n', o.f) == EOF) {
		lf_output_abort(&o);
		return lf_fail("%s: write failed", path);
	}
	return lf_output_commit(&o);
}

static int write_text(const char *dir, const char *name, const char *text)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	struct lf_output o;
	if (lf_output_open(&o, path) < 0)
		return -1;
	if (fputs(text, o.f) == EOF) {
		lf_output_abort(&o);
		return lf_fail("%s: write failed", path);
	}
	return lf_output_commit(&o);
}

/* The template's Jinja into tokenizer_config.json (and chat_template.jinja
 * where the tokenizer keeps its template there), when LLaMA-Factory would
 * write it: the tokenizer has none, or the template replaces it. */
static int write_chat_template(const struct lf_template *t, const struct lf_tokenizer *tok, const char *src_dir,
			       const char *dst_dir)
{
	int has = lf_jinja_tokenizer_has_template(src_dir);
	if (has < 0)
		return -1;
	if (!lf_template_jinja_written(t, has))
		return 0;
	struct lf_jinja_tokens jt;
	char *jinja = NULL;
	if (lf_template_jinja_tokens(t, tok, &jt) < 0 || !(jinja = lf_template_jinja(t, &jt))) {
		/* as LLaMA-Factory: the tokenizer's own template stays */
		lf_note("%s: the tokenizer's chat_template is kept: %s", dst_dir, lf_errmsg());
		return 0;
	}
	char path[4096];
	snprintf(path, sizeof path, "%s/tokenizer_config.json", src_dir);
	json_error_t err;
	json_t *cfg = json_load_file(path, 0, &err);
	if (!cfg)
		cfg = json_object();
	json_object_set_new(cfg, "chat_template", json_string(jinja));
	int rc = write_json(dst_dir, "tokenizer_config.json", cfg);
	json_decref(cfg);
	snprintf(path, sizeof path, "%s/chat_template.jinja", src_dir);
	FILE *f = fopen(path, "r");
	if (f) {
		fclose(f);
		if (rc == 0)
			rc = write_text(dst_dir, "chat_template.jinja", jinja);
	}
	free(jinja);
	return rc;
}

/* generation_config.json with eos_token_id = the base's eos ids, then the
 * template's stop words that are tokens. */
static int write_generation_config(const struct lf_template *t, const struct lf_tokenizer *tok,
				   const char *src_dir, const char *dst_dir)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/generation_config.json", src_dir);
	json_t *gen = json_load_file(path, 0, NULL);
	if (!gen)
		gen = json_object();
	json_t *eos = json_object_get(gen, "eos_token_id"), *ids = json_array();
	if (json_is_integer(eos))
		json_array_append(ids, eos);
	else if (json_is_array(eos))
		json_array_extend(ids, eos);
	for (int i = 0; i < LF_MAX_STOP_WORDS && t->stop_words[i]; i++) {
		int32_t id = lf_tokenizer_token_to_id(tok, t->stop_words[i], strlen(t->stop_words[i]));
		bool seen = id < 0;
		for (size_t k = 0; k < json_array_size(ids) && !seen; k++)
			seen = json_integer_value(json_array_get(ids, k)) == id;
		if (!seen)
			json_array_append_new(ids, json_integer(id));
	}
	json_object_set_new(gen, "eos_token_id", json_array_size(ids) == 1 ? json_incref(json_array_get(ids, 0)) : ids);
	if (json_array_size(ids) == 1)
		json_decref(ids);
	int rc = write_json(dst_dir, "generation_config.json", gen);
	json_decref(gen);
	return rc;
}

int lf_export_inference_files(const char *src_dir, const char *dst_dir, const char *template_name)
{
	for (size_t i = 0; i < sizeof tokenizer_files / sizeof tokenizer_files[0]; i++)
		if (lf_export_copy_file(src_dir, dst_dir, tokenizer_files[i]) < 0)
			return -1;
	if (!template_name)
		return lf_export_copy_file(src_dir, dst_dir, "generation_config.json");
	struct lf_template t;
	if (lf_template_get(template_name, &t) < 0)
		return -1;
	struct lf_tokenizer *tok = lf_tokenizer_load(src_dir);
	if (!tok)
		return -1;
	int rc = write_chat_template(&t, tok, src_dir, dst_dir);
	if (rc == 0)
		rc = write_generation_config(&t, tok, src_dir, dst_dir);
	lf_tokenizer_free(tok);
	return rc;
}

/*
 * export.h — the inference files written beside trained or merged weights.
 */
#ifndef LF_EXPORT_H
#define LF_EXPORT_H

/* Copy the tokenizer files of src_dir (tokenizer.json, tokenizer_config.json,
 * special_tokens_map.json, chat_template.jinja, tokenizer.model, where
 * present) into dst_dir; with a template name, also write the template's
 * Jinja as the chat_template where LLaMA-Factory writes it (the tokenizer has
 * none, or the template replaces it) and generation_config.json with the
 * template's stop words added to eos_token_id; without one, copy
 * generation_config.json as it is.  Files are written atomically.  -1 with
 * lf_fail. */
int lf_export_inference_files(const char *src_dir, const char *dst_dir, const char *template_name);

/* Copy from_dir/name to to_dir/name atomically; nothing when from_dir has
 * no such file.  -1 with lf_fail. */
int lf_export_copy_file(const char *from_dir, const char *to_dir, const char *name);

#endif

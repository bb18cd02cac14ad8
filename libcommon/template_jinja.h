/*
 * template_jinja.h — a template's Jinja chat_template, as LLaMA-Factory
 * writes it into the tokenizer it saves after training (Template.
 * _get_jinja_template and fix_jinja_template, data/template.py), so that
 * transformers' apply_chat_template, vLLM and others format prompts as
 * training did.
 *
 * The Jinja is built from the prefix, system, user and assistant
 * formatters only (no tools, observations, function calls or thoughts:
 * reasoning templates give the plain template's Jinja).  Text slots become
 * single-quoted Jinja strings ('{{content}}' the message, the system's the
 * system message), bos and eos slots the tokenizer's token spelled out, and
 * templates that fuse the system into the first user turn (gemma, llama2,
 * mistral, ...) do so in the Jinja too.  A formatter holding a named
 * special token (chatglm3, yuan) cannot be converted: LLaMA-Factory then
 * keeps the tokenizer's own chat_template.
 */
#ifndef LF_TEMPLATE_JINJA_H
#define LF_TEMPLATE_JINJA_H

#include <stdbool.h>

#include "template.h"
#include "tokenizer.h"

/* What the Jinja reads from the tokenizer: its tokens as LLaMA-Factory's
 * fix_special_tokens leaves them before fix_jinja_template runs. */
struct lf_jinja_tokens {
	const char *bos_token; /* NULL: the tokenizer has no bos (bos slots add nothing) */
	const char *eos_token; /* NULL: none (eos slots add nothing; after fix_special_tokens there always is one) */
};

/* The tokens for template t on tok: the bos of tokenizer_config.json when the
 * tokenizer knows it; the eos is the template's first stop word with
 * replace_eos, else the config's eos when known, else "<|endoftext|>" (which
 * LLaMA-Factory adds).  The strings point into t and tok.  -1 with lf_fail
 * (replace_eos without stop words, as LLaMA-Factory raises). */
int lf_template_jinja_tokens(const struct lf_template *t, const struct lf_tokenizer *tok, struct lf_jinja_tokens *out);

/* The Jinja chat_template of t (its default_system included, as given),
 * malloc'd; NULL with lf_fail where LLaMA-Factory cannot convert the
 * template (a named special-token slot: its "Dict is not supported"). */
char *lf_template_jinja(const struct lf_template *t, const struct lf_jinja_tokens *tok);

/* fix_jinja_template's rule: whether LLaMA-Factory writes t's Jinja into a
 * tokenizer that has (has_chat_template) or lacks a chat_template of its
 * own.  Templates with replace_jinja_template (alpaca, chatml, default,
 * vicuna) replace it; the others only set one where there is none.  (Where
 * lf_template_jinja fails, nothing is written either way.) */
bool lf_template_jinja_written(const struct lf_template *t, bool has_chat_template);

/* Whether the tokenizer at PATH (a folder, or its tokenizer.json) has a
 * chat_template of its own, as transformers' from_pretrained loads one: a
 * non-null "chat_template" in tokenizer_config.json, a chat_template.jinja
 * file beside it, or *.jinja files in additional_chat_templates/.  1 or 0;
 * -1 with lf_fail when tokenizer_config.json cannot be read. */
int lf_jinja_tokenizer_has_template(const char *path);

#endif

/*
 * template.h — LLaMA-Factory's chat templates (data/template.py), rendering
 * an aligned example (convert.h) into a text record (record.h).
 *
 * A template is formatters made of slots: text with {{content}}, the bos or
 * eos token, or a named special token.  Rendering follows Template._encode,
 * Llama2Template (system fused into the first user turn) and
 * ReasoningTemplate (empty thoughts added, history thoughts removed), with
 * the tool formats of toolfmt.h.  Which rows a record type drops is
 * LLaMA-Factory's processors' rule.
 */
#ifndef LF_TEMPLATE_H
#define LF_TEMPLATE_H

#include <stdbool.h>

#include "arena.h"
#include "convert.h"
#include "record.h"

#define LF_MAX_SLOTS 6
#define LF_MAX_STOP_WORDS 4

enum lf_slot_kind { LF_SLOT_NONE, LF_SLOT_TEXT, LF_SLOT_BOS, LF_SLOT_EOS, LF_SLOT_TOKEN };

struct lf_slot {
	enum lf_slot_kind kind;
	const char *text; /* TEXT: may hold {{content}}; TOKEN: the token */
};

struct lf_formatter {
	struct lf_slot slots[LF_MAX_SLOTS];
	const char *tool_format; /* function and tools formatters */
};

enum lf_template_class { LF_TPL_PLAIN, LF_TPL_LLAMA2, LF_TPL_REASONING };

struct lf_template {
	const char *name;
	struct lf_formatter user, assistant, system, function, observation, tools, prefix;
	const char *default_system;
	const char *stop_words[LF_MAX_STOP_WORDS];
	const char *thought_words[2];
	const char *tool_call_words[2];
	bool efficient_eos, replace_eos, replace_jinja_template;
	enum lf_template_class cls;
	/* settings (DataArguments) */
	bool enable_thinking;
	bool preserve_thinking;
};

/* The registered templates, in name order (template_defs.c). */
extern const struct lf_template lf_template_defs[];
extern const size_t lf_template_ndefs;

/* A template by name with LLaMA-Factory's defaults filled in (enable_thinking
 * on, preserve_thinking off).  Returns -1 with lf_fail for an unknown name. */
int lf_template_get(const char *name, struct lf_template *t);
/* tool_format override (LLaMA-Factory's data_args.tool_format). */
int lf_template_set_tool_format(struct lf_template *t, const char *format);
size_t lf_template_nstop(const struct lf_template *t);

struct lf_render_opts {
	bool mask_history; /* discards history thoughts in reasoning templates */
};

/* Render one example as a record of rec->type (set by the caller along with
 * dataset and row).  Returns 0, or -1 with lf_fail(reason) when the example
 * is dropped, as LLaMA-Factory drops or fails on it. */
int lf_template_render(const struct lf_template *t, const struct lf_render_opts *opts,
		       const struct lf_example *ex, struct lf_arena *a, struct lf_text_record *rec);

#endif

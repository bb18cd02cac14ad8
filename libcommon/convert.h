/*
 * convert.h — one dataset row to LLaMA-Factory's aligned example.
 *
 * The alpaca, sharegpt and openai converters of LLaMA-Factory
 * (data/converter.py): a row becomes prompt messages, response messages, a
 * system text and a tools text.  Rows LLaMA-Factory drops (wrong role order,
 * wrong message count) and rows it would crash on (missing or mistyped
 * columns, messages without a role) are refused here with the reason.
 */
#ifndef LF_CONVERT_H
#define LF_CONVERT_H

#include <jansson.h>
#include <stddef.h>

#include "arena.h"
#include "dataset.h"

enum lf_role { LF_ROLE_USER, LF_ROLE_ASSISTANT, LF_ROLE_OBSERVATION, LF_ROLE_FUNCTION, LF_ROLE_SYSTEM };

struct lf_message {
	enum lf_role role;
	const char *content;
	size_t len;
};

struct lf_example {
	struct lf_message *prompt;
	size_t nprompt;
	struct lf_message *response;
	size_t nresponse;
	const char *system; /* "" when none */
	size_t system_len;
	const char *tools;  /* "" when none */
	size_t tools_len;
	int kto_tag;        /* -1: not a KTO example; else 0 or 1 */
	const char *no_response; /* why there is no response, for messages */
};

/* Returns 0, or -1 with lf_fail(reason) for a row to skip. */
int lf_convert_row(const struct lf_dataset_attr *a, const json_t *row, struct lf_arena *arena,
		   struct lf_example *ex);

#endif

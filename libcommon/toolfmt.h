/*
 * toolfmt.h — LLaMA-Factory's tool formats (data/tool_utils.py): how a
 * template writes the tool list into the system prompt and an assistant's
 * tool calls into its turn.  Formats: default, glm4, llama3, mistral, qwen.
 */
#ifndef LF_TOOLFMT_H
#define LF_TOOLFMT_H

#include <jansson.h>
#include <stdbool.h>

#include "rich.h"

/* One tool call: the "name" value as given and json.dumps of "arguments". */
struct lf_tool_call {
	const json_t *name;
	char *arguments;
};

bool lf_tool_format_known(const char *name);
/* "default, glm4, llama3, mistral, qwen" */
const char *lf_tool_format_list(void);

/* The tool list (the tools column, JSON text) as the system prompt part.
 * Returns -1 with lf_fail for tools LLaMA-Factory cannot format. */
int lf_tool_format_tools(const char *format, const char *tools, size_t len, struct lf_rich *out);
/* Parse a function message's JSON into calls (json.loads then one call per
 * object); *root holds the parsed value (json_decref it).  -1 with lf_fail. */
int lf_tool_parse_calls(const char *json, size_t len, json_t **root, struct lf_tool_call **calls, size_t *n);
void lf_tool_calls_free(json_t *root, struct lf_tool_call *calls, size_t n);
/* The calls as the format writes them.  -1 with lf_fail. */
int lf_tool_format_calls(const char *format, const struct lf_tool_call *calls, size_t n, struct lf_rich *out);

#endif

/*
 * pyjson.h — Python's text forms of JSON values, byte for byte.
 *
 * LLaMA-Factory re-serializes tool calls and tool lists with
 * json.dumps(..., ensure_ascii=False) and formats some tool fields with
 * Python's str(); lf must produce the same bytes.  Values are jansson json_t
 * (objects keep their insertion order, as Python dicts do).
 */
#ifndef LF_PYJSON_H
#define LF_PYJSON_H

#include <jansson.h>

#include "buf.h"

/* json.dumps(v, ensure_ascii=False); indent < 0 means no indent (separators
 * ", " and ": "), indent >= 0 is json.dumps(..., indent=N). */
void lf_pyjson_dumps(struct lf_buf *out, const json_t *v, int indent);
/* A JSON string literal as json.dumps writes it: "..." with Python's escapes. */
void lf_pyjson_string(struct lf_buf *out, const char *s, size_t n);
/* repr(float) */
void lf_py_float_repr(struct lf_buf *out, double d);
/* str(v) and repr(v) of the Python value json.loads would make of v. */
void lf_py_str(struct lf_buf *out, const json_t *v);
void lf_py_repr(struct lf_buf *out, const json_t *v);
/* bool(v) */
int lf_py_truthy(const json_t *v);

#endif

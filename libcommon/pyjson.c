/*
 * pyjson.c — Python json.dumps / str / repr of JSON values (see pyjson.h).
 */
#include "pyjson.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

void lf_pyjson_string(struct lf_buf *out, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	lf_buf_grow(out, n + 2);
	lf_buf_addch(out, '"');
	size_t run = 0; /* start of the pending run of bytes copied verbatim */
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		const char *esc = NULL;
		char u[7];
		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		switch (c) {
		case '"': esc = "\\\""; break;
		case '\\': esc = "\\\\"; break;
		case '\n': esc = "\\n"; break;
		case '\r': esc = "\\r"; break;
		case '\t': esc = "\\t"; break;
		case '\b': esc = "\\b"; break;
		case '\f': esc = "\\f"; break;
		default:
			memcpy(u, "\\u00", 4);
			u[4] = hex[c >> 4];
			u[5] = hex[c & 15];
			u[6] = 0;
			esc = u;
		}
		lf_buf_add(out, s + run, i - run);
		lf_buf_addstr(out, esc);
		run = i + 1;
	}
	lf_buf_add(out, s + run, n - run);
	lf_buf_addch(out, '"');
}

void lf_py_float_repr(struct lf_buf *out, double d)
{
	if (isnan(d)) {
		lf_buf_addstr(out, "nan");
		return;
	}
	if (isinf(d)) {
		lf_buf_addstr(out, d < 0 ? "-inf" : "inf");
		return;
	}
	/* Shortest digits that read back as d: the correctly rounded p-digit
	 * form for the smallest p that round-trips, as Python's repr picks. */
	char tmp[64];
	for (int p = 1; p <= 17; p++) {
		snprintf(tmp, sizeof tmp, "%.*e", p - 1, d);
		if (strtod(tmp, NULL) == d)
			break;
	}
	const char *t = tmp;
	int neg = 0;
	if (*t == '-') {
		neg = 1;
		t++;
	}
	char digits[32];
	int nd = 0;
	for (; *t && *t != 'e'; t++)
		if (*t != '.')
			digits[nd++] = *t;
	while (nd > 1 && digits[nd - 1] == '0')
		nd--;
	int exp10 = atoi(t + 1);
	int decpt = exp10 + 1;
	if (neg)
		lf_buf_addch(out, '-');
	if (decpt > -4 && decpt <= 16) {
		if (decpt <= 0) {
			lf_buf_addstr(out, "0.");
			for (int i = 0; i < -decpt; i++)
				lf_buf_addch(out, '0');
			lf_buf_add(out, digits, nd);
		} else if (decpt >= nd) {
			lf_buf_add(out, digits, nd);
			for (int i = nd; i < decpt; i++)
				lf_buf_addch(out, '0');
			lf_buf_addstr(out, ".0");
		} else {
			lf_buf_add(out, digits, decpt);
			lf_buf_addch(out, '.');
			lf_buf_add(out, digits + decpt, nd - decpt);
		}
	} else {
		lf_buf_addch(out, digits[0]);
		if (nd > 1) {
			lf_buf_addch(out, '.');
			lf_buf_add(out, digits + 1, nd - 1);
		}
		lf_buf_addf(out, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
	}
}

static void newline_indent(struct lf_buf *out, int indent, int level)
{
	lf_buf_addch(out, '\n');
	for (int i = 0; i < indent * level; i++)
		lf_buf_addch(out, ' ');
}

static void dumps(struct lf_buf *out, const json_t *v, int indent, int level)
{
	const char *item_sep = indent >= 0 ? "," : ", ";
	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		if (json_object_size(v) == 0) {
			lf_buf_addstr(out, "{}");
			return;
		}
		lf_buf_addch(out, '{');
		const char *key;
		json_t *val;
		int first = 1;
		json_object_foreach((json_t *)v, key, val) {
			if (!first)
				lf_buf_addstr(out, item_sep);
			first = 0;
			if (indent >= 0)
				newline_indent(out, indent, level + 1);
			lf_pyjson_string(out, key, strlen(key));
			lf_buf_addstr(out, ": ");
			dumps(out, val, indent, level + 1);
		}
		if (indent >= 0)
			newline_indent(out, indent, level);
		lf_buf_addch(out, '}');
		return;
	}
	case JSON_ARRAY: {
		if (json_array_size(v) == 0) {
			lf_buf_addstr(out, "[]");
			return;
		}
		lf_buf_addch(out, '[');
		for (size_t i = 0; i < json_array_size(v); i++) {
			if (i)
				lf_buf_addstr(out, item_sep);
			if (indent >= 0)
				newline_indent(out, indent, level + 1);
			dumps(out, json_array_get(v, i), indent, level + 1);
		}
		if (indent >= 0)
			newline_indent(out, indent, level);
		lf_buf_addch(out, ']');
		return;
	}
	case JSON_STRING:
		lf_pyjson_string(out, json_string_value(v), json_string_length(v));
		return;
	case JSON_INTEGER:
		lf_buf_addf(out, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return;
	case JSON_REAL:
		lf_py_float_repr(out, json_real_value(v));
		return;
	case JSON_TRUE:
		lf_buf_addstr(out, "true");
		return;
	case JSON_FALSE:
		lf_buf_addstr(out, "false");
		return;
	case JSON_NULL:
		lf_buf_addstr(out, "null");
		return;
	}
}

void lf_pyjson_dumps(struct lf_buf *out, const json_t *v, int indent)
{
	dumps(out, v, indent, 0);
}

/* str.isprintable() for one code point. */
static int py_printable(utf8proc_int32_t cp)
{
	if (cp == ' ')
		return 1;
	switch (utf8proc_category(cp)) {
	case UTF8PROC_CATEGORY_CC:
	case UTF8PROC_CATEGORY_CF:
	case UTF8PROC_CATEGORY_CS:
	case UTF8PROC_CATEGORY_CO:
	case UTF8PROC_CATEGORY_CN:
	case UTF8PROC_CATEGORY_ZL:
	case UTF8PROC_CATEGORY_ZP:
	case UTF8PROC_CATEGORY_ZS:
		return 0;
	default:
		return 1;
	}
}

static void str_repr(struct lf_buf *out, const char *s, size_t n)
{
	char quote = '\'';
	if (memchr(s, '\'', n) && !memchr(s, '"', n))
		quote = '"';
	lf_buf_addch(out, quote);
	size_t i = 0;
	while (i < n) {
		utf8proc_int32_t cp;
		utf8proc_ssize_t len = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
		if (len <= 0) { /* not UTF-8: show the byte escaped */
			lf_buf_addf(out, "\\x%02x", (unsigned char)s[i]);
			i++;
			continue;
		}
		if (cp == quote || cp == '\\') {
			lf_buf_addch(out, '\\');
			lf_buf_addch(out, (char)cp);
		} else if (cp == '\t') {
			lf_buf_addstr(out, "\\t");
		} else if (cp == '\n') {
			lf_buf_addstr(out, "\\n");
		} else if (cp == '\r') {
			lf_buf_addstr(out, "\\r");
		} else if (cp < ' ' || cp == 0x7f) {
			lf_buf_addf(out, "\\x%02x", (unsigned)cp);
		} else if (cp < 0x7f || py_printable(cp)) {
			lf_buf_add(out, s + i, (size_t)len);
		} else if (cp <= 0xff) {
			lf_buf_addf(out, "\\x%02x", (unsigned)cp);
		} else if (cp <= 0xffff) {
			lf_buf_addf(out, "\\u%04x", (unsigned)cp);
		} else {
			lf_buf_addf(out, "\\U%08x", (unsigned)cp);
		}
		i += (size_t)len;
	}
	lf_buf_addch(out, quote);
}

void lf_py_repr(struct lf_buf *out, const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_STRING:
		str_repr(out, json_string_value(v), json_string_length(v));
		return;
	case JSON_OBJECT: {
		lf_buf_addch(out, '{');
		const char *key;
		json_t *val;
		int first = 1;
		json_object_foreach((json_t *)v, key, val) {
			if (!first)
				lf_buf_addstr(out, ", ");
			first = 0;
			str_repr(out, key, strlen(key));
			lf_buf_addstr(out, ": ");
			lf_py_repr(out, val);
		}
		lf_buf_addch(out, '}');
		return;
	}
	case JSON_ARRAY:
		lf_buf_addch(out, '[');
		for (size_t i = 0; i < json_array_size(v); i++) {
			if (i)
				lf_buf_addstr(out, ", ");
			lf_py_repr(out, json_array_get(v, i));
		}
		lf_buf_addch(out, ']');
		return;
	case JSON_TRUE:
		lf_buf_addstr(out, "True");
		return;
	case JSON_FALSE:
		lf_buf_addstr(out, "False");
		return;
	case JSON_NULL:
		lf_buf_addstr(out, "None");
		return;
	case JSON_INTEGER:
	case JSON_REAL:
		dumps(out, v, -1, 0);
		return;
	}
}

void lf_py_str(struct lf_buf *out, const json_t *v)
{
	if (json_is_string(v))
		lf_buf_add(out, json_string_value(v), json_string_length(v));
	else
		lf_py_repr(out, v);
}

int lf_py_truthy(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return json_object_size(v) != 0;
	case JSON_ARRAY: return json_array_size(v) != 0;
	case JSON_STRING: return json_string_length(v) != 0;
	case JSON_INTEGER: return json_integer_value(v) != 0;
	case JSON_REAL: return json_real_value(v) != 0.0;
	case JSON_TRUE: return 1;
	default: return 0;
	}
}

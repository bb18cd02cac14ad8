/*
 * convert.c — LLaMA-Factory's dataset converters (see convert.h).
 */
#include "convert.h"
#include "buf.h"
#include "error.h"
#include "pyjson.h"

#include <string.h>

struct msgs {
	struct lf_message *v;
	size_t n, cap;
};

static void push(struct lf_arena *a, struct msgs *m, enum lf_role role, const char *s, size_t n)
{
	if (m->n == m->cap) {
		size_t cap = m->cap ? 2 * m->cap : 8;
		struct lf_message *v = lf_arena_alloc(a, cap * sizeof *v);
		if (m->n)
			memcpy(v, m->v, m->n * sizeof *v);
		m->v = v;
		m->cap = cap;
	}
	m->v[m->n++] = (struct lf_message){ role, s, n };
}

static const char *str_of(const json_t *v, size_t *n)
{
	*n = json_string_length(v);
	return json_string_value(v);
}

/* A column's value; *present says whether the row has the key at all. */
static const json_t *column(const json_t *row, const char *name, int *present)
{
	const json_t *v = name ? json_object_get(row, name) : NULL;
	if (present)
		*present = v != NULL;
	return v;
}

/* system / tools columns: "" when absent or null, a string, or (tools) a
 * JSON list/object written back as text. */
static int text_column(const json_t *row, const char *name, bool allow_json, struct lf_arena *a, const char **s,
		       size_t *n)
{
	*s = "";
	*n = 0;
	const json_t *v = column(row, name, NULL);
	if (!v || json_is_null(v))
		return 0;
	if (json_is_string(v)) {
		*s = str_of(v, n);
		return 0;
	}
	if (!lf_py_truthy(v))
		return 0;
	if (allow_json && (json_is_array(v) || json_is_object(v))) {
		struct lf_buf b = LF_BUF_INIT;
		lf_pyjson_dumps(&b, v, -1);
		*s = lf_arena_memdup(a, b.data, b.len);
		*n = b.len;
		lf_buf_free(&b);
		return 0;
	}
	return lf_fail("column '%s' is not a string", name);
}

/* The KTO tag and response arrangement shared by every converter. */
static void kto_response(struct lf_arena *a, struct msgs *resp, struct lf_message answer, bool desirable)
{
	if (desirable) {
		push(a, resp, answer.role, answer.content, answer.len);
		push(a, resp, LF_ROLE_ASSISTANT, "", 0);
	} else {
		push(a, resp, LF_ROLE_ASSISTANT, "", 0);
		push(a, resp, answer.role, answer.content, answer.len);
	}
}

static int kto_flag(const struct lf_dataset_attr *at, const json_t *row)
{
	if (!at->kto_tag)
		return -1;
	const json_t *v = column(row, at->kto_tag, NULL);
	if (!json_is_boolean(v))
		return lf_fail("column '%s' (kto_tag) is missing or not a boolean", at->kto_tag), -2;
	return json_is_true(v);
}

/* ---- alpaca ---- */

static int convert_alpaca(const struct lf_dataset_attr *at, const json_t *row, struct lf_arena *a,
			  struct lf_example *ex)
{
	struct msgs prompt = { 0 }, resp = { 0 };
	const json_t *hist = column(row, at->history, NULL);
	if (json_is_array(hist)) {
		for (size_t i = 0; i < json_array_size(hist); i++) {
			const json_t *pair = json_array_get(hist, i);
			const json_t *p = json_array_get(pair, 0), *r = json_array_get(pair, 1);
			if (!json_is_array(pair) || json_array_size(pair) != 2 || !json_is_string(p) || !json_is_string(r))
				return lf_fail("column '%s': item %zu is not a [prompt, response] pair of strings",
					       at->history, i);
			size_t pn, rn;
			const char *ps = str_of(p, &pn), *rs = str_of(r, &rn);
			push(a, &prompt, LF_ROLE_USER, ps, pn);
			push(a, &prompt, LF_ROLE_ASSISTANT, rs, rn);
		}
	}
	/* user turn = "instruction\ninput", each part only when non-empty */
	struct lf_buf query = LF_BUF_INIT;
	int present;
	const json_t *inst = column(row, at->prompt, &present);
	if (at->prompt && !present) {
		lf_buf_free(&query);
		return lf_fail("missing column '%s'", at->prompt);
	}
	const json_t *parts[2] = { inst, column(row, at->query, NULL) };
	const char *names[2] = { at->prompt, at->query };
	int nparts = 0;
	for (int i = 0; i < 2; i++) {
		if (!parts[i] || !lf_py_truthy(parts[i]))
			continue;
		if (!json_is_string(parts[i])) {
			lf_buf_free(&query);
			return lf_fail("column '%s' is not a string", names[i]);
		}
		if (nparts++)
			lf_buf_addch(&query, '\n');
		lf_buf_add(&query, json_string_value(parts[i]), json_string_length(parts[i]));
	}
	size_t qn = query.len;
	push(a, &prompt, LF_ROLE_USER, lf_arena_memdup(a, query.data ? query.data : "", qn), qn);
	lf_buf_free(&query);

	ex->kto_tag = kto_flag(at, row);
	if (ex->kto_tag == -2)
		return -1;
	const json_t *out = column(row, at->response, NULL);
	if (ex->kto_tag >= 0) {
		if (!json_is_string(out))
			return lf_fail("column '%s' is missing or not a string", at->response ? at->response : "output");
		size_t n;
		const char *s = str_of(out, &n);
		kto_response(a, &resp, (struct lf_message){ LF_ROLE_ASSISTANT, s, n }, ex->kto_tag);
	} else if (at->ranking) {
		const json_t *c = column(row, at->chosen, NULL), *r = column(row, at->rejected, NULL);
		if (!json_is_string(c) || !json_is_string(r))
			return lf_fail("columns '%s' and '%s' must both be strings", at->chosen ? at->chosen : "chosen",
				       at->rejected ? at->rejected : "rejected");
		size_t cn, rn;
		const char *cs = str_of(c, &cn), *rs = str_of(r, &rn);
		push(a, &resp, LF_ROLE_ASSISTANT, cs, cn);
		push(a, &resp, LF_ROLE_ASSISTANT, rs, rn);
	} else if (at->response && json_is_string(out)) {
		size_t n;
		const char *s = str_of(out, &n);
		push(a, &resp, LF_ROLE_ASSISTANT, s, n);
	} else {
		ex->no_response = at->response ? "missing column for the response" : "no response column";
	}
	ex->prompt = prompt.v;
	ex->nprompt = prompt.n;
	ex->response = resp.v;
	ex->nresponse = resp.n;
	if (text_column(row, at->system, false, a, &ex->system, &ex->system_len) < 0 ||
	    text_column(row, at->tools, true, a, &ex->tools, &ex->tools_len) < 0)
		return -1;
	return 0;
}

/* ---- sharegpt and openai ---- */

static bool tag_eq(const char *tag, const json_t *role)
{
	return tag && json_is_string(role) && !strcmp(tag, json_string_value(role));
}

/* tag_mapping[role] of the converters (later tags win, as in the dict). */
static int map_role(const struct lf_dataset_attr *at, const json_t *role, enum lf_role *out)
{
	const char *tags[5] = { at->user_tag, at->assistant_tag, at->observation_tag, at->function_tag, at->system_tag };
	const enum lf_role roles[5] = { LF_ROLE_USER, LF_ROLE_ASSISTANT, LF_ROLE_OBSERVATION, LF_ROLE_FUNCTION,
					LF_ROLE_SYSTEM };
	int found = -1;
	for (int i = 0; i < 5; i++)
		if (tag_eq(tags[i], role))
			found = i;
	if (found < 0)
		return -1;
	*out = roles[found];
	return 0;
}

static bool odd_turn_ok(enum lf_role r)
{
	return r == LF_ROLE_USER || r == LF_ROLE_OBSERVATION;
}

static bool even_turn_ok(enum lf_role r)
{
	return r == LF_ROLE_ASSISTANT || r == LF_ROLE_FUNCTION;
}

/* A message's role and content fields, checked. */
static int message_fields(const struct lf_dataset_attr *at, const json_t *m, size_t i, const json_t **role,
			  const json_t **content)
{
	if (!json_is_object(m))
		return lf_fail("message %zu is not an object", i);
	*role = json_object_get(m, at->role_tag ? at->role_tag : "");
	if (!*role)
		return lf_fail("message %zu: missing '%s'", i, at->role_tag ? at->role_tag : "(role tag)");
	*content = json_object_get(m, at->content_tag ? at->content_tag : "");
	if (!*content)
		return lf_fail("message %zu: missing '%s'", i, at->content_tag ? at->content_tag : "(content tag)");
	return 0;
}

static int need_string(const json_t *content, size_t i)
{
	if (!json_is_string(content))
		return lf_fail("message %zu: content is not a string", i);
	return 0;
}

static const char *role_text(const json_t *role)
{
	return json_is_string(role) ? json_string_value(role) : "(not a string)";
}

/* Roles must alternate user/observation, assistant/function. */
static int check_order(const struct msgs *m, size_t offset)
{
	for (size_t i = 0; i < m->n; i++) {
		bool ok = i % 2 == 0 ? odd_turn_ok(m->v[i].role) : even_turn_ok(m->v[i].role);
		if (!ok)
			return lf_fail("message %zu: wrong role order (a %s message where a %s belongs)", i + offset,
				       m->v[i].role == LF_ROLE_USER        ? "user"
				       : m->v[i].role == LF_ROLE_ASSISTANT ? "assistant"
				       : m->v[i].role == LF_ROLE_OBSERVATION ? "observation"
				       : m->v[i].role == LF_ROLE_FUNCTION    ? "function"
									     : "system",
				       i % 2 == 0 ? "user or observation message" : "assistant or function message");
	}
	return 0;
}

static int check_count(const struct lf_dataset_attr *at, size_t n)
{
	if (!at->ranking && n % 2 != 0)
		return lf_fail("odd number of messages (%zu): the conversation must end with an assistant turn", n);
	if (at->ranking && n % 2 == 0)
		return lf_fail("even number of messages (%zu): a preference conversation ends with a user turn", n);
	return 0;
}

/* Pairwise responses from the chosen and rejected message objects. */
static int ranking_responses(const struct lf_dataset_attr *at, const json_t *row, struct lf_arena *a,
			     struct msgs *resp)
{
	const char *cols[2] = { at->chosen, at->rejected };
	for (int k = 0; k < 2; k++) {
		const json_t *m = column(row, cols[k], NULL);
		if (!json_is_object(m))
			return lf_fail("column '%s' is missing or not a message object", cols[k] ? cols[k] : "(unset)");
		const json_t *role, *content;
		if (message_fields(at, m, 0, &role, &content) < 0)
			return lf_fail_prefix("column '%s'", cols[k]);
		enum lf_role r;
		if (map_role(at, role, &r) < 0)
			return lf_fail("column '%s': unknown role '%s'", cols[k], role_text(role));
		if (!json_is_string(content))
			return lf_fail("column '%s': content is not a string", cols[k]);
		size_t n;
		const char *s = str_of(content, &n);
		push(a, resp, r, s, n);
	}
	return 0;
}

/* The tail shared by sharegpt and openai: KTO, ranking or plain split. */
static int finish_conversation(const struct lf_dataset_attr *at, const json_t *row, struct lf_arena *a,
			       struct msgs *aligned, struct lf_example *ex)
{
	struct msgs prompt = { 0 }, resp = { 0 };
	ex->kto_tag = kto_flag(at, row);
	if (ex->kto_tag == -2)
		return -1;
	if (ex->kto_tag >= 0) {
		if (aligned->n == 0)
			return lf_fail("empty conversation");
		prompt = *aligned;
		prompt.n--;
		kto_response(a, &resp, aligned->v[aligned->n - 1], ex->kto_tag);
	} else if (at->ranking) {
		prompt = *aligned;
		if (ranking_responses(at, row, a, &resp) < 0)
			return -1;
	} else {
		if (aligned->n == 0)
			return lf_fail("empty conversation");
		prompt = *aligned;
		prompt.n--;
		push(a, &resp, aligned->v[aligned->n - 1].role, aligned->v[aligned->n - 1].content,
		     aligned->v[aligned->n - 1].len);
	}
	ex->prompt = prompt.v;
	ex->nprompt = prompt.n;
	ex->response = resp.v;
	ex->nresponse = resp.n;
	return 0;
}

/* The messages column, with a leading system message taken out. */
static int conversation(const struct lf_dataset_attr *at, const json_t *row, struct lf_arena *a,
			const json_t **msgs, size_t *first, struct lf_example *ex)
{
	int present;
	*msgs = column(row, at->messages, &present);
	if (!present)
		return lf_fail("missing column '%s'", at->messages ? at->messages : "(messages)");
	if (!json_is_array(*msgs))
		return lf_fail("column '%s' is not a list of messages", at->messages);
	*first = 0;
	ex->system = "";
	ex->system_len = 0;
	if (at->system_tag && json_array_size(*msgs) > 0) {
		const json_t *role, *content;
		if (message_fields(at, json_array_get(*msgs, 0), 0, &role, &content) < 0)
			return -1;
		if (tag_eq(at->system_tag, role)) {
			if (!json_is_string(content))
				return lf_fail("message 0: system content is not a string");
			ex->system = str_of(content, &ex->system_len);
			*first = 1;
			return 0;
		}
	}
	return text_column(row, at->system, false, a, &ex->system, &ex->system_len);
}

static int convert_sharegpt(const struct lf_dataset_attr *at, const json_t *row, struct lf_arena *a,
			    struct lf_example *ex)
{
	const json_t *msgs;
	size_t first;
	if (conversation(at, row, a, &msgs, &first, ex) < 0)
		return -1;
	struct msgs aligned = { 0 };
	for (size_t i = first; i < json_array_size(msgs); i++) {
		const json_t *role, *content;
		if (message_fields(at, json_array_get(msgs, i), i, &role, &content) < 0)
			return -1;
		size_t turn = i - first;
		bool allowed = turn % 2 == 0 ? (tag_eq(at->user_tag, role) || tag_eq(at->observation_tag, role))
					     : (tag_eq(at->assistant_tag, role) || tag_eq(at->function_tag, role));
		if (!allowed)
			return lf_fail("message %zu: role '%s' is out of order (expected %s)", i, role_text(role),
				       turn % 2 == 0 ? "a user or observation message" : "an assistant or function message");
		enum lf_role r;
		map_role(at, role, &r);
		if (need_string(content, i) < 0)
			return -1;
		size_t n;
		const char *s = str_of(content, &n);
		push(a, &aligned, r, s, n);
	}
	if (check_count(at, aligned.n) < 0)
		return -1;
	if (text_column(row, at->tools, true, a, &ex->tools, &ex->tools_len) < 0)
		return -1;
	return finish_conversation(at, row, a, &aligned, ex);
}

static void push_observations(struct lf_arena *a, struct msgs *aligned, struct lf_buf *obs, size_t *nobs)
{
	if (*nobs == 0)
		return;
	push(a, aligned, LF_ROLE_OBSERVATION, lf_arena_memdup(a, obs->data, obs->len), obs->len);
	lf_buf_reset(obs);
	*nobs = 0;
}

static int convert_openai(const struct lf_dataset_attr *at, const json_t *row, struct lf_arena *a,
			  struct lf_example *ex)
{
	const json_t *msgs;
	size_t first;
	if (conversation(at, row, a, &msgs, &first, ex) < 0)
		return -1;
	struct msgs aligned = { 0 };
	struct lf_buf obs = LF_BUF_INIT;
	size_t nobs = 0;
	int rc = 0;
	for (size_t i = first; i < json_array_size(msgs) && rc == 0; i++) {
		const json_t *m = json_array_get(msgs, i), *role, *content;
		if ((rc = message_fields(at, m, i, &role, &content)) < 0)
			break;
		const char *s = NULL;
		size_t n = 0;
		bool is_function = false;
		if (tag_eq(at->assistant_tag, role) || tag_eq(at->function_tag, role)) {
			const json_t *calls = json_object_get(m, "tool_calls");
			if (calls && lf_py_truthy(calls)) {
				if (!json_is_array(calls)) {
					rc = lf_fail("message %zu: 'tool_calls' is not a list", i);
					break;
				}
				json_t *list = json_array();
				for (size_t k = 0; k < json_array_size(calls) && rc == 0; k++) {
					json_t *fn = json_object_get(json_array_get(calls, k), "function");
					if (!fn)
						rc = lf_fail("message %zu: tool call %zu has no 'function'", i, k);
					else
						json_array_append(list, fn);
				}
				if (rc == 0) {
					struct lf_buf b = LF_BUF_INIT;
					lf_pyjson_dumps(&b, list, -1);
					s = lf_arena_memdup(a, b.data, b.len);
					n = b.len;
					lf_buf_free(&b);
					is_function = true;
				}
				json_decref(list);
				if (rc < 0)
					break;
			}
		}
		if (!s) {
			if ((rc = need_string(content, i)) < 0)
				break;
			s = str_of(content, &n);
		}
		if (!is_function && tag_eq(at->observation_tag, role)) {
			if (nobs++)
				lf_buf_addstr(&obs, "\n</tool_response>\n<tool_response>\n");
			lf_buf_add(&obs, s, n);
			continue;
		}
		push_observations(a, &aligned, &obs, &nobs);
		enum lf_role r;
		if (is_function) {
			r = LF_ROLE_FUNCTION;
		} else if (map_role(at, role, &r) < 0) {
			rc = lf_fail("message %zu: unknown role '%s'", i, role_text(role));
			break;
		}
		push(a, &aligned, r, s, n);
	}
	/* as LLaMA-Factory: tool results after the last message are dropped */
	lf_buf_free(&obs);
	if (rc < 0)
		return -1;
	if (check_order(&aligned, first) < 0 || check_count(at, aligned.n) < 0)
		return -1;
	if (text_column(row, at->tools, true, a, &ex->tools, &ex->tools_len) < 0)
		return -1;
	/* LLaMA-Factory's openai converter appends "detailed thinking off". */
	static const char short_prompt[] = "detailed thinking off";
	struct lf_buf sys = LF_BUF_INIT;
	lf_buf_add(&sys, ex->system, ex->system_len);
	bool has_tools = ex->tools_len > 0;
	if (sys.len == 0) {
		if (!has_tools)
			lf_buf_addstr(&sys, short_prompt);
	} else if (!has_tools) {
		if (!strstr(sys.data, "detailed thinking on") && !strstr(sys.data, "detailed thinking off")) {
			lf_buf_addch(&sys, '\n');
			lf_buf_addstr(&sys, short_prompt);
		}
	} else {
		lf_buf_addch(&sys, '\n');
	}
	ex->system = lf_arena_memdup(a, sys.data ? sys.data : "", sys.len);
	ex->system_len = sys.len;
	lf_buf_free(&sys);
	return finish_conversation(at, row, a, &aligned, ex);
}

int lf_convert_row(const struct lf_dataset_attr *a, const json_t *row, struct lf_arena *arena,
		   struct lf_example *ex)
{
	memset(ex, 0, sizeof *ex);
	ex->system = ex->tools = "";
	ex->kto_tag = -1;
	if (!json_is_object(row))
		return lf_fail("not a JSON object");
	switch (a->formatting) {
	case LF_FMT_SHAREGPT:
		return convert_sharegpt(a, row, arena, ex);
	case LF_FMT_OPENAI:
		return convert_openai(a, row, arena, ex);
	default:
		return convert_alpaca(a, row, arena, ex);
	}
}

/*
 * toolfmt.c — tool formats (see toolfmt.h).  Each follows the Python it
 * mirrors closely, including what Python's str() and json.dumps write; input
 * LLaMA-Factory would crash on is an error here.
 */
#include "toolfmt.h"
#include "buf.h"
#include "error.h"
#include "pyjson.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *formats[] = { "default", "glm4", "llama3", "mistral", "qwen" };

bool lf_tool_format_known(const char *name)
{
	for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
		if (!strcmp(formats[i], name))
			return true;
	return false;
}

const char *lf_tool_format_list(void)
{
	return "default, glm4, llama3, mistral, qwen";
}

/* ---- helpers ---- */

static void rich_str(struct lf_rich *out, const char *s)
{
	lf_rich_template(out, s, strlen(s));
}

/* str(v) as user text. */
static void rich_py_str(struct lf_rich *out, const json_t *v)
{
	struct lf_buf b = LF_BUF_INIT;
	lf_py_str(&b, v);
	lf_rich_user(out, b.data ? b.data : "", b.len);
	lf_buf_free(&b);
}

/* json.dumps(v, ensure_ascii=False[, indent]) as user text. */
static void rich_dumps(struct lf_rich *out, const json_t *v, int indent)
{
	struct lf_buf b = LF_BUF_INIT;
	lf_pyjson_dumps(&b, v, indent);
	lf_rich_user(out, b.data, b.len);
	lf_buf_free(&b);
}

/* tool.get("type") == "function" */
static bool is_function_wrapper(const json_t *tool)
{
	const json_t *t = json_object_get(tool, "type");
	return json_is_string(t) && !strcmp(json_string_value(t), "function");
}

/* tool if it is {"type": "function", ...} else {"type": "function", "function": tool} (new reference) */
static json_t *wrap_tool(json_t *tool)
{
	if (is_function_wrapper(tool))
		return json_incref(tool);
	json_t *w = json_object();
	json_object_set_new(w, "type", json_string("function"));
	json_object_set(w, "function", tool);
	return w;
}

/* tool.get("function", "") if tool.get("type") == "function" else tool */
static const json_t *unwrap_tool(const json_t *tool)
{
	if (!is_function_wrapper(tool))
		return tool;
	const json_t *f = json_object_get(tool, "function");
	return f ? f : NULL; /* "" in Python: unusable as a tool below */
}

/* Python `name in container` for the "required" field. */
static int py_contains(const json_t *container, const char *name)
{
	if (json_is_array(container)) {
		for (size_t i = 0; i < json_array_size(container); i++) {
			const json_t *v = json_array_get(container, i);
			if (json_is_string(v) && !strcmp(json_string_value(v), name))
				return 1;
		}
		return 0;
	}
	if (json_is_string(container))
		return strstr(json_string_value(container), name) != NULL;
	if (json_is_object(container))
		return json_object_get(container, name) != NULL;
	return lf_fail("tool parameter 'required' is not a list");
}

/* ", ".join(iterable) for the "enum" field. */
static int py_join_enum(struct lf_buf *out, const json_t *v)
{
	if (json_is_string(v)) { /* a string joins its characters */
		const char *s = json_string_value(v);
		size_t n = json_string_length(v);
		for (size_t i = 0; i < n;) {
			size_t k = 1;
			while (i + k < n && ((unsigned char)s[i + k] & 0xc0) == 0x80)
				k++;
			if (i)
				lf_buf_addstr(out, ", ");
			lf_buf_add(out, s + i, k);
			i += k;
		}
		return 0;
	}
	if (json_is_object(v)) {
		const char *key;
		json_t *val;
		int first = 1;
		json_object_foreach((json_t *)v, key, val) {
			if (!first)
				lf_buf_addstr(out, ", ");
			first = 0;
			lf_buf_addstr(out, key);
		}
		return 0;
	}
	if (!json_is_array(v))
		return lf_fail("tool parameter 'enum' is not a list");
	for (size_t i = 0; i < json_array_size(v); i++) {
		const json_t *e = json_array_get(v, i);
		if (!json_is_string(e))
			return lf_fail("tool parameter 'enum' holds a value that is not a string");
		if (i)
			lf_buf_addstr(out, ", ");
		lf_buf_add(out, json_string_value(e), json_string_length(e));
	}
	return 0;
}

static const json_t *get_or_empty(const json_t *obj, const char *key)
{
	static json_t *empty;
	if (!empty)
		empty = json_string("");
	const json_t *v = json_object_get(obj, key);
	return v ? v : empty;
}

/* ---- tool lists ---- */

static int default_tools(const json_t *tools, struct lf_rich *out)
{
	struct lf_rich text = LF_RICH_INIT, names = LF_RICH_INIT;
	int rc = 0;
	for (size_t i = 0; i < json_array_size(tools) && rc == 0; i++) {
		const json_t *tool = unwrap_tool(json_array_get(tools, i));
		const json_t *params = tool ? json_object_get(tool, "parameters") : NULL;
		const json_t *props = json_object_get(params, "properties");
		const json_t *name = json_object_get(tool, "name");
		if (!json_is_object(tool) || !json_is_object(params) || !json_is_object(props) || !name) {
			rc = lf_fail("tool %zu has no name or no parameters.properties object", i);
			break;
		}
		if (!json_is_string(name)) {
			rc = lf_fail("tool %zu: name is not a string", i);
			break;
		}
		struct lf_rich args = LF_RICH_INIT;
		const char *pname;
		json_t *param;
		json_object_foreach((json_t *)props, pname, param) {
			if (!json_is_object(param)) {
				rc = lf_fail("tool %zu: parameter '%s' is not an object", i, pname);
				break;
			}
			const json_t *required = json_object_get(params, "required");
			int req = required ? py_contains(required, pname) : 0;
			if (req < 0) {
				rc = -1;
				break;
			}
			struct lf_buf en = LF_BUF_INIT;
			const json_t *e = json_object_get(param, "enum");
			if (e && lf_py_truthy(e) && py_join_enum(&en, e) < 0) {
				lf_buf_free(&en);
				rc = -1;
				break;
			}
			const json_t *items = json_object_get(param, "items");
			if (items && lf_py_truthy(items) && !json_is_object(items)) {
				lf_buf_free(&en);
				rc = lf_fail("tool %zu: parameter '%s': 'items' is not an object", i, pname);
				break;
			}
			rich_str(&args, "  - ");
			lf_rich_user(&args, pname, strlen(pname));
			rich_str(&args, " (");
			rich_py_str(&args, get_or_empty(param, "type"));
			if (req)
				rich_str(&args, ", required");
			rich_str(&args, "): ");
			rich_py_str(&args, get_or_empty(param, "description"));
			if (e && lf_py_truthy(e)) {
				rich_str(&args, ", should be one of [");
				lf_rich_user(&args, en.data ? en.data : "", en.len);
				rich_str(&args, "]");
			}
			lf_buf_free(&en);
			if (items && lf_py_truthy(items)) {
				rich_str(&args, ", where each item should be ");
				rich_py_str(&args, get_or_empty(items, "type"));
			}
			rich_str(&args, "\n");
		}
		if (rc == 0) {
			rich_str(&text, "> Tool Name: ");
			rich_py_str(&text, name);
			rich_str(&text, "\nTool Description: ");
			rich_py_str(&text, get_or_empty(tool, "description"));
			rich_str(&text, "\nTool Args:\n");
			lf_rich_append(&text, &args);
			rich_str(&text, "\n");
			if (i)
				rich_str(&names, ", ");
			rich_py_str(&names, name);
		}
		lf_rich_free(&args);
	}
	if (rc == 0) {
		rich_str(out, "You have access to the following tools:\n");
		lf_rich_append(out, &text);
		rich_str(out, "Use the following format if using a tool:\n```\nAction: tool name (one of [");
		lf_rich_append(out, &names);
		rich_str(out, "])\nAction Input: the input to the tool, in a JSON format representing the kwargs "
			      "(e.g. ```{\"input\": \"hello world\", \"num_beams\": 5}```)\n```\n");
	}
	lf_rich_free(&text);
	lf_rich_free(&names);
	return rc;
}

static int qwen_tools(const json_t *tools, struct lf_rich *out)
{
	rich_str(out, "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
		      "You are provided with function signatures within <tools></tools> XML tags:\n<tools>");
	for (size_t i = 0; i < json_array_size(tools); i++) {
		json_t *w = wrap_tool(json_array_get(tools, i));
		rich_str(out, "\n");
		rich_dumps(out, w, -1);
		json_decref(w);
	}
	rich_str(out, "\n</tools>\n\nFor each function call, return a json object with function name and arguments "
		      "within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, "
		      "\"arguments\": <args-json-object>}\n</tool_call>");
	return 0;
}

/* datetime.now().strftime("%d %b %Y"); SOURCE_DATE_EPOCH fixes it (UTC). */
static void today(char *out, size_t n)
{
	const char *sde = getenv("SOURCE_DATE_EPOCH");
	time_t t = sde && *sde ? (time_t)strtoll(sde, NULL, 10) : time(NULL);
	struct tm tm;
	if (sde && *sde)
		gmtime_r(&t, &tm);
	else
		localtime_r(&t, &tm);
	static const char *months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					"Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	snprintf(out, n, "%02d %s %d", tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900);
}

static int llama3_tools(const json_t *tools, struct lf_rich *out)
{
	char date[32];
	today(date, sizeof date);
	rich_str(out, "Cutting Knowledge Date: December 2023\nToday Date: ");
	rich_str(out, date);
	rich_str(out, "\n\nYou have access to the following functions. To call a function, please respond with JSON "
		      "for a function call. Respond in the format {\"name\": function name, \"parameters\": dictionary "
		      "of argument name and its value}. Do not use variables.\n\n");
	for (size_t i = 0; i < json_array_size(tools); i++) {
		json_t *w = wrap_tool(json_array_get(tools, i));
		rich_dumps(out, w, 4);
		rich_str(out, "\n\n");
		json_decref(w);
	}
	return 0;
}

static int mistral_tools(const json_t *tools, struct lf_rich *out)
{
	json_t *list = json_array();
	for (size_t i = 0; i < json_array_size(tools); i++)
		json_array_append_new(list, wrap_tool(json_array_get(tools, i)));
	rich_str(out, "[AVAILABLE_TOOLS] ");
	rich_dumps(out, list, -1);
	rich_str(out, "[/AVAILABLE_TOOLS]");
	json_decref(list);
	return 0;
}

static int glm4_tools(const json_t *tools, struct lf_rich *out)
{
	rich_str(out, "你是一个名为 ChatGLM 的人工智能助手。你是基于智谱 AI 公司训练的语言模型 GLM-4 模型开发的，"
		      "你的任务是针对用户的问题和要求提供适当的答复和支持。\n\n# 可用工具");
	for (size_t i = 0; i < json_array_size(tools); i++) {
		const json_t *tool = unwrap_tool(json_array_get(tools, i));
		const json_t *name = json_object_get(tool, "name");
		if (!json_is_object(tool) || !name)
			return lf_fail("tool %zu has no name", i);
		rich_str(out, "\n\n## ");
		rich_py_str(out, name);
		rich_str(out, "\n\n");
		rich_dumps(out, tool, 4);
		rich_str(out, "\n在调用上述函数时，请使用 Json 格式表示调用的参数。");
	}
	return 0;
}

int lf_tool_format_tools(const char *format, const char *tools, size_t len, struct lf_rich *out)
{
	json_error_t err;
	json_t *v = json_loadb(tools, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
	if (!v)
		return lf_fail("tools are not valid JSON: %s", err.text);
	int rc = 0;
	bool empty = (json_is_array(v) && json_array_size(v) == 0) || (json_is_object(v) && json_object_size(v) == 0) ||
		     (json_is_string(v) && json_string_length(v) == 0);
	if (empty) {
		rc = 0; /* LLaMA-Factory writes "" for an empty tool list */
	} else if (!json_is_array(v)) {
		rc = lf_fail("tools are not a JSON list of tools");
	} else {
		for (size_t i = 0; i < json_array_size(v); i++)
			if (!json_is_object(json_array_get(v, i)))
				rc = lf_fail("tool %zu is not a JSON object", i);
		if (rc == 0) {
			if (!strcmp(format, "qwen"))
				rc = qwen_tools(v, out);
			else if (!strcmp(format, "llama3"))
				rc = llama3_tools(v, out);
			else if (!strcmp(format, "mistral"))
				rc = mistral_tools(v, out);
			else if (!strcmp(format, "glm4"))
				rc = glm4_tools(v, out);
			else
				rc = default_tools(v, out);
		}
	}
	json_decref(v);
	return rc;
}

/* ---- tool calls ---- */

int lf_tool_parse_calls(const char *json, size_t len, json_t **root, struct lf_tool_call **calls, size_t *n)
{
	*calls = NULL;
	*n = 0;
	json_error_t err;
	*root = json_loadb(json, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
	if (!*root)
		return lf_fail("function call is not valid JSON: %s", err.text);
	size_t count = json_is_array(*root) ? json_array_size(*root) : 1;
	*calls = lf_calloc(count ? count : 1, sizeof **calls);
	for (size_t i = 0; i < count; i++) {
		const json_t *tc = json_is_array(*root) ? json_array_get(*root, i) : *root;
		const json_t *name = json_object_get(tc, "name"), *args = json_object_get(tc, "arguments");
		if (!json_is_object(tc) || !name || !args) {
			lf_tool_calls_free(*root, *calls, i);
			*root = NULL;
			*calls = NULL;
			return lf_fail("function call %zu needs 'name' and 'arguments'", i);
		}
		struct lf_buf b = LF_BUF_INIT;
		lf_pyjson_dumps(&b, args, -1);
		(*calls)[i].name = name;
		(*calls)[i].arguments = lf_buf_detach(&b, NULL);
	}
	*n = count;
	return 0;
}

void lf_tool_calls_free(json_t *root, struct lf_tool_call *calls, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(calls[i].arguments);
	free(calls);
	json_decref(root);
}

/* json.loads(call.arguments): the value the arguments were dumped from. */
static json_t *load_arguments(const struct lf_tool_call *c)
{
	return json_loads(c->arguments, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
}

static int calls_as_objects(const struct lf_tool_call *calls, size_t n, const char *args_key, json_t **list)
{
	*list = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *o = json_object();
		json_t *args = load_arguments(&calls[i]);
		if (!args) {
			json_decref(o);
			json_decref(*list);
			return lf_fail("function call %zu: arguments do not read back as JSON", i);
		}
		json_object_set(o, "name", (json_t *)calls[i].name);
		json_object_set_new(o, args_key, args);
		json_array_append_new(*list, o);
	}
	return 0;
}

int lf_tool_format_calls(const char *format, const struct lf_tool_call *calls, size_t n, struct lf_rich *out)
{
	if (!strcmp(format, "qwen")) {
		json_t *list;
		if (calls_as_objects(calls, n, "arguments", &list) < 0)
			return -1;
		for (size_t i = 0; i < n; i++) {
			if (i)
				rich_str(out, "\n");
			rich_str(out, "<tool_call>\n");
			rich_dumps(out, json_array_get(list, i), -1);
			rich_str(out, "\n</tool_call>");
		}
		json_decref(list);
		return 0;
	}
	if (!strcmp(format, "llama3") || !strcmp(format, "mistral")) {
		bool llama3 = !strcmp(format, "llama3");
		json_t *list;
		if (calls_as_objects(calls, n, llama3 ? "parameters" : "arguments", &list) < 0)
			return -1;
		rich_dumps(out, llama3 && n == 1 ? json_array_get(list, 0) : list, -1);
		json_decref(list);
		return 0;
	}
	if (!strcmp(format, "glm4")) {
		if (n != 1)
			return lf_fail("the glm4 tool format takes exactly one function call (%zu given)", n);
		rich_py_str(out, calls[0].name);
		rich_str(out, "\n");
		lf_rich_user(out, calls[0].arguments, strlen(calls[0].arguments));
		return 0;
	}
	for (size_t i = 0; i < n; i++) { /* default */
		if (i)
			rich_str(out, "\n");
		rich_str(out, "Action: ");
		rich_py_str(out, calls[i].name);
		rich_str(out, "\nAction Input: ");
		lf_rich_user(out, calls[i].arguments, strlen(calls[i].arguments));
	}
	return 0;
}

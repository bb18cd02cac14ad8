/*
 * template.c — rendering examples with chat templates (see template.h).
 */
#include "template.h"
#include "error.h"
#include "rich.h"
#include "toolfmt.h"

#include <string.h>

/* ---- looking templates up ---- */

static bool has_slots(const struct lf_formatter *f)
{
	return f->slots[0].kind != LF_SLOT_NONE;
}

static void set_slots(struct lf_formatter *f, const struct lf_slot *s, size_t n)
{
	memset(f->slots, 0, sizeof f->slots);
	memcpy(f->slots, s, n * sizeof *s);
}

/* ["{{content}}"] or ["{{content}}", eos] as register_template's defaults. */
static void default_assistant_slots(struct lf_formatter *f, bool efficient_eos)
{
	const struct lf_slot s[2] = { { LF_SLOT_TEXT, "{{content}}" }, { LF_SLOT_EOS, NULL } };
	set_slots(f, s, efficient_eos ? 1 : 2);
}

int lf_template_get(const char *name, struct lf_template *t)
{
	const struct lf_template *def = NULL;
	for (size_t i = 0; i < lf_template_ndefs; i++)
		if (!strcmp(lf_template_defs[i].name, name))
			def = &lf_template_defs[i];
	if (!def)
		return lf_fail("unknown template '%s' (see --list-templates)", name);
	*t = *def;
	const struct lf_slot content[1] = { { LF_SLOT_TEXT, "{{content}}" } };
	if (!has_slots(&t->user))
		set_slots(&t->user, content, 1);
	if (!has_slots(&t->assistant))
		default_assistant_slots(&t->assistant, t->efficient_eos);
	if (!has_slots(&t->system))
		set_slots(&t->system, content, 1);
	if (!has_slots(&t->function)) {
		if (has_slots(&def->assistant))
			t->function = def->assistant;
		else
			default_assistant_slots(&t->function, t->efficient_eos);
		t->function.tool_format = "default";
	}
	if (!t->function.tool_format)
		t->function.tool_format = "default";
	if (!has_slots(&t->observation))
		t->observation = has_slots(&def->user) ? def->user : t->user;
	if (!has_slots(&t->tools) && !t->tools.tool_format)
		t->tools.tool_format = "default";
	if (!t->thought_words[0]) {
		t->thought_words[0] = "<think>\n";
		t->thought_words[1] = "\n</think>\n\n";
	}
	if (!t->tool_call_words[0]) {
		t->tool_call_words[0] = "<tool_call>";
		t->tool_call_words[1] = "</tool_call>";
	}
	t->enable_thinking = true;
	t->preserve_thinking = false;
	return 0;
}

int lf_template_set_tool_format(struct lf_template *t, const char *format)
{
	if (!lf_tool_format_known(format))
		return lf_fail("unknown tool format '%s' (supported: %s)", format, lf_tool_format_list());
	/* As get_template_and_fix_tokenizer: default slots, then the format. */
	default_assistant_slots(&t->function, t->efficient_eos);
	t->function.tool_format = format;
	memset(&t->tools, 0, sizeof t->tools);
	t->tools.tool_format = format;
	return 0;
}

size_t lf_template_nstop(const struct lf_template *t)
{
	size_t n = 0;
	while (n < LF_MAX_STOP_WORDS && t->stop_words[n])
		n++;
	return n;
}

/* ---- formatters ---- */

static void push_text(struct lf_arena *a, struct lf_elems *out, const struct lf_rich *r)
{
	if (r->text.len)
		lf_elems_push(a, out, lf_rich_elem(r, a));
}

/* One text slot with {{content}} replaced once (StringFormatter.apply). */
static void substitute(const char *slot, const struct lf_rich *content, struct lf_rich *out)
{
	const char *p = content ? strstr(slot, "{{content}}") : NULL;
	if (!p) {
		lf_rich_template(out, slot, strlen(slot));
		return;
	}
	lf_rich_template(out, slot, (size_t)(p - slot));
	lf_rich_append(out, content);
	lf_rich_template(out, p + 11, strlen(p + 11));
}

static void apply_slots(const struct lf_formatter *f, const struct lf_rich *content, struct lf_arena *a,
			struct lf_elems *out)
{
	for (int i = 0; i < LF_MAX_SLOTS && f->slots[i].kind != LF_SLOT_NONE; i++) {
		const struct lf_slot *s = &f->slots[i];
		struct lf_elem el = { 0 };
		switch (s->kind) {
		case LF_SLOT_TEXT: {
			struct lf_rich r = LF_RICH_INIT;
			substitute(s->text, content, &r);
			push_text(a, out, &r);
			lf_rich_free(&r);
			continue;
		}
		case LF_SLOT_BOS:
			el.kind = LF_ELEM_BOS;
			break;
		case LF_SLOT_EOS:
			el.kind = LF_ELEM_EOS;
			break;
		case LF_SLOT_TOKEN:
			el.kind = LF_ELEM_TOKEN;
			el.text = s->text;
			el.len = strlen(s->text);
			break;
		default:
			continue;
		}
		lf_elems_push(a, out, el);
	}
}

/* The first slot applied, as a string (Llama2Template's system_text). */
static int first_slot_text(const struct lf_formatter *f, const struct lf_rich *content, struct lf_rich *out)
{
	if (f->slots[0].kind != LF_SLOT_TEXT)
		return lf_fail("this template's system formatter does not start with text");
	substitute(f->slots[0].text, content, out);
	return 0;
}

/* Leftmost non-greedy match of open(.*?)close: 1 found, 0 not. */
static int find_block(const char *s, size_t n, const char *open, const char *close, size_t *start, size_t *end,
		      size_t *inner_start, size_t *inner_end)
{
	size_t lo = strlen(open), lc = strlen(close);
	const char *p = memmem(s, n, open, lo);
	if (!p)
		return 0;
	size_t from = (size_t)(p - s) + lo;
	const char *q = memmem(s + from, n - from, close, lc);
	if (!q)
		return 0;
	*start = (size_t)(p - s);
	*inner_start = from;
	*inner_end = (size_t)(q - s);
	*end = *inner_end + lc;
	return 1;
}

/* s.replace(old, "") */
static void remove_all(const char *s, size_t n, const char *old, size_t on, struct lf_buf *out)
{
	size_t i = 0;
	while (on && i < n) {
		const char *p = memmem(s + i, n - i, old, on);
		if (!p)
			break;
		lf_buf_add(out, s + i, (size_t)(p - (s + i)));
		i = (size_t)(p - s) + on;
	}
	lf_buf_add(out, s + i, n - i);
}

/* FunctionFormatter.apply before its slots: the function message as text. */
static int function_text(const struct lf_template *t, const struct lf_message *m, bool with_words,
			 struct lf_rich *out)
{
	size_t s0, e0, i0, i1;
	bool call_match = with_words && find_block(m->content, m->len, t->tool_call_words[0], t->tool_call_words[1],
						    &s0, &e0, &i0, &i1);
	struct lf_buf rest = LF_BUF_INIT;
	const char *json;
	size_t json_len;
	bool thought = false;
	if (call_match) {
		remove_all(m->content, m->len, m->content + s0, e0 - s0, &rest); /* the thought around the call */
		json = m->content + i0;
		json_len = i1 - i0;
	} else {
		thought = with_words && find_block(m->content, m->len, t->thought_words[0], t->thought_words[1], &s0,
						    &e0, &i0, &i1);
		if (thought) {
			remove_all(m->content, m->len, m->content + s0, e0 - s0, &rest);
			json = rest.data ? rest.data : "";
			json_len = rest.len;
		} else {
			json = m->content;
			json_len = m->len;
		}
	}
	json_t *root;
	struct lf_tool_call *calls;
	size_t n;
	if (lf_tool_parse_calls(json, json_len, &root, &calls, &n) < 0) {
		lf_buf_free(&rest);
		return -1;
	}
	struct lf_rich formatted = LF_RICH_INIT;
	int rc = lf_tool_format_calls(t->function.tool_format, calls, n, &formatted);
	if (rc == 0) {
		if (call_match)
			lf_rich_user(out, rest.data ? rest.data : "", rest.len);
		else if (thought) /* the thought goes before the calls */
			lf_rich_user(out, m->content + s0, e0 - s0);
		lf_rich_append(out, &formatted);
	}
	lf_rich_free(&formatted);
	lf_tool_calls_free(root, calls, n);
	lf_buf_free(&rest);
	return rc;
}

/* ---- Template._encode ---- */

static void user_rich(struct lf_rich *r, const char *s, size_t n)
{
	lf_rich_reset(r);
	lf_rich_user(r, s, n);
}

static int encode(const struct lf_template *t, const struct lf_example *ex, const struct lf_message *msgs, size_t n,
		  struct lf_arena *a, struct lf_elems *out)
{
	bool llama2 = t->cls == LF_TPL_LLAMA2;
	struct lf_rich system = LF_RICH_INIT, tool_text = LF_RICH_INIT, content = LF_RICH_INIT, tmp = LF_RICH_INIT;
	int rc = 0;
	/* system = system or default_system */
	if (ex->system_len)
		lf_rich_user(&system, ex->system, ex->system_len);
	else if (t->default_system)
		lf_rich_template(&system, t->default_system, strlen(t->default_system));
	bool want_system = system.text.len > 0 || ex->tools_len > 0;
	if (ex->tools_len) {
		if (has_slots(&t->tools)) { /* a plain formatter around the raw tools text */
			user_rich(&tmp, ex->tools, ex->tools_len);
			rc = first_slot_text(&t->tools, &tmp, &tool_text);
		} else {
			rc = lf_tool_format_tools(t->tools.tool_format, ex->tools, ex->tools_len, &tool_text);
		}
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		struct lf_elems *e = &out[i];
		struct lf_rich system_text = LF_RICH_INIT;
		memset(e, 0, sizeof *e);
		if (i == 0) {
			apply_slots(&t->prefix, NULL, a, e);
			if (want_system) {
				lf_rich_reset(&content);
				lf_rich_append(&content, &system);
				lf_rich_append(&content, &tool_text);
				if (llama2)
					rc = first_slot_text(&t->system, &content, &system_text);
				else
					apply_slots(&t->system, &content, a, e);
			}
		}
		const struct lf_message *m = &msgs[i];
		lf_rich_reset(&content);
		switch (m->role) {
		case LF_ROLE_USER:
			if (llama2)
				lf_rich_append(&content, &system_text);
			lf_rich_user(&content, m->content, m->len);
			apply_slots(&t->user, &content, a, e);
			break;
		case LF_ROLE_ASSISTANT:
			lf_rich_user(&content, m->content, m->len);
			apply_slots(&t->assistant, &content, a, e);
			break;
		case LF_ROLE_OBSERVATION:
			lf_rich_user(&content, m->content, m->len);
			apply_slots(&t->observation, &content, a, e);
			break;
		case LF_ROLE_FUNCTION:
			if (rc == 0 && (rc = function_text(t, m, !llama2, &content)) == 0)
				apply_slots(&t->function, &content, a, e);
			if (rc < 0)
				lf_fail_prefix("message %zu", i);
			break;
		default:
			rc = lf_fail("message %zu: a system message inside the conversation", i);
		}
		lf_rich_free(&system_text);
	}
	lf_rich_free(&system);
	lf_rich_free(&tool_text);
	lf_rich_free(&content);
	lf_rich_free(&tmp);
	return rc;
}

/* ---- reasoning templates ---- */

static bool has_thought(const struct lf_template *t, const struct lf_message *m)
{
	for (int k = 0; k < 2; k++) {
		const char *w = t->thought_words[k];
		size_t n = strlen(w);
		while (n && (*w == ' ' || *w == '\n' || *w == '\t' || *w == '\r'))
			w++, n--;
		while (n && (w[n - 1] == ' ' || w[n - 1] == '\n' || w[n - 1] == '\t' || w[n - 1] == '\r'))
			n--;
		if (memmem(m->content, m->len, w, n))
			return true;
	}
	return false;
}

/* ReasoningTemplate.remove_thought: drop every thought block, then the
 * newlines at the start. */
static void remove_thought(const struct lf_template *t, struct lf_message *m, struct lf_arena *a)
{
	struct lf_buf b = LF_BUF_INIT;
	size_t i = 0;
	for (;;) {
		size_t s0, e0, i0, i1;
		if (!find_block(m->content + i, m->len - i, t->thought_words[0], t->thought_words[1], &s0, &e0, &i0, &i1))
			break;
		lf_buf_add(&b, m->content + i, s0);
		i += e0;
	}
	lf_buf_add(&b, m->content + i, m->len - i);
	size_t k = 0;
	while (k < b.len && b.data[k] == '\n')
		k++;
	m->content = lf_arena_memdup(a, b.data + k, b.len - k);
	m->len = b.len - k;
	lf_buf_free(&b);
}

static struct lf_elem thought_elem(const struct lf_template *t, struct lf_arena *a)
{
	size_t n0 = strlen(t->thought_words[0]), n1 = strlen(t->thought_words[1]);
	char *s = lf_arena_alloc(a, n0 + n1 + 1);
	memcpy(s, t->thought_words[0], n0);
	memcpy(s + n0, t->thought_words[1], n1 + 1);
	return (struct lf_elem){ .kind = LF_ELEM_TEXT, .text = s, .len = n0 + n1, .thought = true };
}

static void prepend(struct lf_arena *a, struct lf_elems *e, struct lf_elem el)
{
	struct lf_elems old = *e;
	memset(e, 0, sizeof *e);
	lf_elems_push(a, e, el);
	lf_elems_append(a, e, &old);
}

static struct lf_message *copy_messages(const struct lf_message *m, size_t n, struct lf_arena *a)
{
	struct lf_message *c = lf_arena_alloc(a, (n ? n : 1) * sizeof *c);
	memcpy(c, m, n * sizeof *c);
	return c;
}

/* encode_multiturn: (source, target) per turn into rec->turns. */
static int encode_multiturn(const struct lf_template *t, const struct lf_example *ex, const struct lf_message *in,
			    size_t n, bool discard_history_cot, struct lf_arena *a, struct lf_text_record *rec)
{
	struct lf_message *m = copy_messages(in, n, a);
	bool reasoning = t->cls == LF_TPL_REASONING;
	if (reasoning && !t->enable_thinking)
		for (size_t i = 1; i < n; i += 2)
			remove_thought(t, &m[i], a);
	if (reasoning && discard_history_cot)
		for (size_t i = 1; i + 2 < n; i += 2)
			remove_thought(t, &m[i], a);
	struct lf_elems *enc = lf_arena_alloc(a, (n ? n : 1) * sizeof *enc);
	if (encode(t, ex, m, n, a, enc) < 0)
		return -1;
	if (reasoning) {
		for (size_t i = discard_history_cot ? n - 2 : 0; i + 1 < n; i += 2) {
			if (has_thought(t, &m[i + 1]))
				continue;
			if (!t->enable_thinking)
				lf_elems_push(a, &enc[i], thought_elem(t, a));
			else
				prepend(a, &enc[i + 1], thought_elem(t, a));
		}
	}
	for (size_t i = 0; i + 1 < n; i += 2) {
		struct lf_turn *turn = lf_text_record_add_turn(a, rec);
		turn->source = enc[i];
		turn->target = enc[i + 1];
	}
	return 0;
}

/* encode_oneturn: everything before the last message, and the last. */
static int encode_oneturn(const struct lf_template *t, const struct lf_example *ex, const struct lf_message *in,
			  size_t n, struct lf_arena *a, struct lf_elems *prompt, struct lf_elems *response)
{
	struct lf_message *m = copy_messages(in, n, a);
	bool reasoning = t->cls == LF_TPL_REASONING;
	if (reasoning && !t->preserve_thinking)
		for (size_t i = 1; i + 2 < n; i += 2)
			remove_thought(t, &m[i], a);
	if (reasoning && !t->enable_thinking)
		remove_thought(t, &m[n - 1], a);
	struct lf_elems *enc = lf_arena_alloc(a, n * sizeof *enc);
	if (encode(t, ex, m, n, a, enc) < 0)
		return -1;
	memset(prompt, 0, sizeof *prompt);
	for (size_t i = 0; i + 1 < n; i++)
		lf_elems_append(a, prompt, &enc[i]);
	*response = enc[n - 1];
	if (reasoning && !has_thought(t, &m[n - 1])) {
		if (!t->enable_thinking)
			lf_elems_push(a, prompt, thought_elem(t, a));
		else
			prepend(a, response, thought_elem(t, a));
	}
	return 0;
}

/* ---- record types ---- */

static struct lf_message *with_last(const struct lf_example *ex, struct lf_message last, struct lf_arena *a)
{
	struct lf_message *m = lf_arena_alloc(a, (ex->nprompt + 1) * sizeof *m);
	memcpy(m, ex->prompt, ex->nprompt * sizeof *m);
	m[ex->nprompt] = last;
	return m;
}

static int need_prompt(const struct lf_example *ex)
{
	if (ex->nprompt % 2 != 1)
		return lf_fail("the prompt has %zu messages (it needs an odd number, ending with a user turn)",
			       ex->nprompt);
	return 0;
}

int lf_template_render(const struct lf_template *t, const struct lf_render_opts *opts,
		       const struct lf_example *ex, struct lf_arena *a, struct lf_text_record *rec)
{
	struct lf_message *m;
	switch (rec->type) {
	case LF_REC_SFT:
		if (need_prompt(ex) < 0)
			return -1;
		if (ex->nresponse != 1)
			return lf_fail("%s", ex->no_response ? ex->no_response : "no response to train on");
		m = with_last(ex, ex->response[0], a);
		return encode_multiturn(t, ex, m, ex->nprompt + 1, opts->mask_history && !t->preserve_thinking, a,
					rec);
	case LF_REC_PAIRWISE: {
		if (need_prompt(ex) < 0)
			return -1;
		if (ex->nresponse < 2)
			return lf_fail("no chosen and rejected responses");
		struct lf_elems unused;
		m = with_last(ex, ex->response[0], a);
		if (encode_oneturn(t, ex, m, ex->nprompt + 1, a, &rec->prompt, &rec->chosen) < 0)
			return -1;
		m = with_last(ex, ex->response[1], a);
		return encode_oneturn(t, ex, m, ex->nprompt + 1, a, &unused, &rec->rejected);
	}
	case LF_REC_KTO:
		if (need_prompt(ex) < 0)
			return -1;
		if (ex->nresponse < 2)
			return lf_fail("not a KTO example (no kto_tag)");
		rec->desirable = ex->response[0].len > 0;
		m = with_last(ex, ex->response[rec->desirable ? 0 : 1], a);
		return encode_oneturn(t, ex, m, ex->nprompt + 1, a, &rec->prompt, &rec->response);
	case LF_REC_PT: {
		if (ex->nprompt == 0)
			return lf_fail("no text");
		struct lf_rich r = LF_RICH_INIT;
		lf_rich_user(&r, ex->prompt[0].content, ex->prompt[0].len);
		memset(&rec->text, 0, sizeof rec->text);
		push_text(a, &rec->text, &r);
		lf_rich_free(&r);
		/* text + eos_token; the llama3 template ends documents with <|end_of_text|> */
		struct lf_elem eos = { .kind = LF_ELEM_EOS };
		if (!strcmp(t->name, "llama3"))
			eos = (struct lf_elem){ .kind = LF_ELEM_TOKEN, .text = "<|end_of_text|>", .len = 15 };
		lf_elems_push(a, &rec->text, eos);
		return 0;
	}
	case LF_REC_PROMPT: {
		if (need_prompt(ex) < 0)
			return -1;
		struct lf_message last = { LF_ROLE_ASSISTANT, "", 0 };
		if (ex->nresponse == 1)
			last = ex->response[0];
		m = with_last(ex, last, a);
		return encode_oneturn(t, ex, m, ex->nprompt + 1, a, &rec->prompt, &rec->response);
	}
	default:
		return lf_fail("unknown record type");
	}
}

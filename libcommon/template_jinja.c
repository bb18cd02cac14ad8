/*
 * template_jinja.c — owns the Jinja chat_template of a template as
 * LLaMA-Factory 0.9.5 writes it (Template._get_jinja_template, Llama2Template's
 * variant, fix_jinja_template's replace rule), and the tokenizer facts it
 * reads (see template_jinja.h).  The text is byte for byte LLaMA-Factory's:
 * tests/golden/jinja-templates.json holds its output for every template.
 */
#include "template_jinja.h"
#include "buf.h"
#include "error.h"

#include <dirent.h>
#include <jansson.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the tokenizer's tokens ---- */

static const char *known_token(const struct lf_tokenizer *tok, const char *s)
{
	return s && lf_tokenizer_token_to_id(tok, s, strlen(s)) >= 0 ? s : NULL;
}

int lf_template_jinja_tokens(const struct lf_template *t, const struct lf_tokenizer *tok, struct lf_jinja_tokens *out)
{
	const struct lf_tok_config *cfg = lf_tokenizer_config(tok);
	out->bos_token = known_token(tok, cfg->bos_token);
	if (t->replace_eos) {
		if (!lf_template_nstop(t))
			return lf_fail("template '%s': replace_eos needs stop words", t->name);
		out->eos_token = t->stop_words[0]; /* added to the tokenizer when it lacks it */
	} else {
		out->eos_token = known_token(tok, cfg->eos_token);
		if (!out->eos_token)
			out->eos_token = "<|endoftext|>";
	}
	return 0;
}

/* ---- the Jinja text ---- */

/* A single-quoted Jinja string: only single quotes are escaped, as
 * LLaMA-Factory's _jinja_escape does (backslashes stay as they are). */
static void add_quoted(struct lf_buf *b, const char *s, size_t n)
{
	lf_buf_addch(b, '\'');
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\'')
			lf_buf_addch(b, '\\');
		lf_buf_addch(b, s[i]);
	}
	lf_buf_addch(b, '\'');
}

static void add_item(struct lf_buf *b, size_t *nitems, const char *s, size_t n, bool quote)
{
	if ((*nitems)++)
		lf_buf_addstr(b, " + ");
	if (quote)
		add_quoted(b, s, n);
	else
		lf_buf_add(b, s, n);
}

/* A token spelled out in quotes, unescaped (LLaMA-Factory does not escape
 * the bos and eos). */
static void add_token_item(struct lf_buf *b, size_t *nitems, const char *token)
{
	if ((*nitems)++)
		lf_buf_addstr(b, " + ");
	lf_buf_addch(b, '\'');
	lf_buf_addstr(b, token);
	lf_buf_addch(b, '\'');
}

/* One formatter's slots as a Jinja expression ("" when they add nothing):
 * each text slot is cut at "{{content}}" into the text before it, the
 * placeholder variable and the text up to a second "{{content}}" (what
 * follows a second one is dropped, as str.split's third piece is). */
static int slots_to_jinja(const struct lf_template *t, const char *what, const struct lf_formatter *f,
			  const struct lf_jinja_tokens *tok, const char *placeholder, struct lf_buf *b)
{
	static const char mark[] = "{{content}}";
	const size_t ml = sizeof mark - 1;
	size_t nitems = 0;
	for (int i = 0; i < LF_MAX_SLOTS && f->slots[i].kind != LF_SLOT_NONE; i++) {
		const struct lf_slot *s = &f->slots[i];
		switch (s->kind) {
		case LF_SLOT_TEXT: {
			const char *text = s->text, *p = strstr(text, mark);
			size_t head = p ? (size_t)(p - text) : strlen(text);
			if (head)
				add_item(b, &nitems, text, head, true);
			if (p) {
				add_item(b, &nitems, placeholder, strlen(placeholder), false);
				const char *rest = p + ml, *q = strstr(rest, mark);
				size_t tail = q ? (size_t)(q - rest) : strlen(rest);
				if (tail)
					add_item(b, &nitems, rest, tail, true);
			}
			break;
		}
		case LF_SLOT_BOS:
			if (tok->bos_token)
				add_token_item(b, &nitems, tok->bos_token);
			break;
		case LF_SLOT_EOS:
			if (tok->eos_token)
				add_token_item(b, &nitems, tok->eos_token);
			break;
		case LF_SLOT_TOKEN:
			return lf_fail("template '%s' cannot be written as a Jinja chat_template: its %s formatter holds "
				       "the named special token '%s' (LLaMA-Factory: \"Dict is not supported.\"; it leaves "
				       "the tokenizer's chat_template as it was)", t->name, what, s->text);
		default:
			break;
		}
	}
	return 0;
}

static const char head_system[] =
	"{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
	"{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% endif %}";

static const char turns_head[] = "{% if message['role'] == 'user' %}{{ ";
static const char turns_mid[] = " }}{% elif message['role'] == 'assistant' %}{{ ";
static const char turns_tail[] = " }}{% endif %}{% endfor %}";

char *lf_template_jinja(const struct lf_template *t, const struct lf_jinja_tokens *tok)
{
	struct lf_buf prefix = LF_BUF_INIT, system = LF_BUF_INIT, user = LF_BUF_INIT, assistant = LF_BUF_INIT;
	struct lf_buf out = LF_BUF_INIT;
	char *result = NULL;
	if (slots_to_jinja(t, "prefix", &t->prefix, tok, "content", &prefix) < 0 ||
	    slots_to_jinja(t, "system", &t->system, tok, "system_message", &system) < 0 ||
	    slots_to_jinja(t, "user", &t->user, tok, "content", &user) < 0 ||
	    slots_to_jinja(t, "assistant", &t->assistant, tok, "content", &assistant) < 0)
		goto done;

	if (prefix.len)
		lf_buf_addf(&out, "{{ %s }}", prefix.data);
	if (t->default_system && *t->default_system) {
		lf_buf_addstr(&out, "{% set system_message = ");
		add_quoted(&out, t->default_system, strlen(t->default_system));
		lf_buf_addstr(&out, " %}");
	}
	lf_buf_addstr(&out, head_system);
	if (t->cls == LF_TPL_LLAMA2) {
		/* the system fused into the first turn's content */
		lf_buf_addstr(&out, "{% for message in loop_messages %}"
				    "{% if loop.index0 == 0 and system_message is defined %}{% set content = ");
		lf_buf_add(&out, system.data, system.len);
		lf_buf_addstr(&out, " + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}");
	} else {
		lf_buf_addstr(&out, "{% if system_message is defined %}{{ ");
		lf_buf_add(&out, system.data, system.len);
		lf_buf_addstr(&out, " }}{% endif %}{% for message in loop_messages %}{% set content = message['content'] %}");
	}
	lf_buf_addstr(&out, turns_head);
	lf_buf_add(&out, user.data, user.len);
	lf_buf_addstr(&out, turns_mid);
	lf_buf_add(&out, assistant.data, assistant.len);
	lf_buf_addstr(&out, turns_tail);
	result = lf_buf_detach(&out, NULL);
done:
	lf_buf_free(&prefix);
	lf_buf_free(&system);
	lf_buf_free(&user);
	lf_buf_free(&assistant);
	lf_buf_free(&out);
	return result;
}

bool lf_template_jinja_written(const struct lf_template *t, bool has_chat_template)
{
	return !has_chat_template || t->replace_jinja_template;
}

/* ---- the tokenizer's own chat_template ---- */

static bool is_file(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static bool dir_has_jinja(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return false;
	bool found = false;
	struct dirent *e;
	while (!found && (e = readdir(d))) {
		size_t n = strlen(e->d_name);
		found = n > 6 && !strcmp(e->d_name + n - 6, ".jinja");
	}
	closedir(d);
	return found;
}

int lf_jinja_tokenizer_has_template(const char *path)
{
	struct stat st;
	struct lf_buf dir = LF_BUF_INIT, p = LF_BUF_INIT;
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
		lf_buf_addstr(&dir, path);
	} else {
		const char *slash = strrchr(path, '/');
		if (slash)
			lf_buf_add(&dir, path, (size_t)(slash - path));
		else
			lf_buf_addstr(&dir, ".");
	}
	int rc = 0;
	lf_buf_addf(&p, "%s/chat_template.jinja", dir.data);
	if (is_file(p.data)) {
		rc = 1;
		goto done;
	}
	lf_buf_reset(&p);
	lf_buf_addf(&p, "%s/additional_chat_templates", dir.data);
	if (dir_has_jinja(p.data)) {
		rc = 1;
		goto done;
	}
	lf_buf_reset(&p);
	lf_buf_addf(&p, "%s/tokenizer_config.json", dir.data);
	if (access(p.data, F_OK) == 0) {
		json_error_t err;
		json_t *cfg = json_load_file(p.data, JSON_DECODE_INT_AS_REAL, &err);
		if (!cfg) {
			rc = lf_fail("%s: line %d column %d: %s", p.data, err.line, err.column, err.text);
			goto done;
		}
		const json_t *v = json_object_get(cfg, "chat_template");
		rc = v && !json_is_null(v);
		json_decref(cfg);
	}
done:
	lf_buf_free(&dir);
	lf_buf_free(&p);
	return rc;
}

/*
 * test_template.c — what the goldens cannot see: which bytes of each element
 * came from user data (so lf-tokenize leaves special-token spellings in user
 * text alone), the empty-thought markers, and template lookups.  The element
 * texts themselves are checked against LLaMA-Factory by
 * tests/tools/template_goldens.py.
 */
#include "check.h"
#include "error.h"
#include "template.h"

#include <string.h>

static struct lf_message msg(enum lf_role role, const char *s)
{
	return (struct lf_message){ role, s, strlen(s) };
}

/* The bytes of el that are user content, joined with '|'. */
static void user_bytes(const struct lf_elem *el, char *out, size_t n)
{
	out[0] = 0;
	for (size_t i = 0; i < el->nuser; i++) {
		size_t len = strlen(out);
		snprintf(out + len, n - len, "%s%.*s", i ? "|" : "", (int)(el->user[i].end - el->user[i].start),
			 el->text + el->user[i].start);
	}
}

static void test_user_ranges(void)
{
	struct lf_template t;
	CHECK(lf_template_get("qwen", &t) == 0, "qwen is a template");
	struct lf_message prompt[] = { msg(LF_ROLE_USER, "Say <|im_end|> now") };
	struct lf_message resp[] = { msg(LF_ROLE_ASSISTANT, "<|im_start|>ok") };
	struct lf_example ex = { .prompt = prompt, .nprompt = 1, .response = resp, .nresponse = 1,
				 .system = "", .tools = "", .kto_tag = -1 };
	struct lf_arena a = { 0 };
	struct lf_text_record r = { .type = LF_REC_SFT };
	struct lf_render_opts ro = { 0 };
	CHECK(lf_template_render(&t, &ro, &ex, &a, &r) == 0 && r.nturns == 1, "a one-turn example renders");
	const struct lf_elems *src = &r.turns[0].source;
	char buf[256];
	/* the default system is template text: no user range */
	CHECK(src->n == 2 && src->v[0].nuser == 0, "the default system carries no user range");
	user_bytes(&src->v[1], buf, sizeof buf);
	CHECK(!strcmp(buf, "Say <|im_end|> now"), "the user turn's range covers exactly the user text: '%s'", buf);
	user_bytes(&r.turns[0].target.v[0], buf, sizeof buf);
	CHECK(!strcmp(buf, "<|im_start|>ok"), "the answer's range covers the answer: '%s'", buf);

	/* a system from the data is user content; with Llama2Template it is fused
	 * into the first user turn with template text around it */
	CHECK(lf_template_get("llama2", &t) == 0, "llama2 is a template");
	ex.system = "Be <s> brief";
	ex.system_len = strlen(ex.system);
	lf_text_record_clear(&r);
	CHECK(lf_template_render(&t, &ro, &ex, &a, &r) == 0, "llama2 renders a system");
	src = &r.turns[0].source;
	const struct lf_elem *el = &src->v[src->n - 1];
	user_bytes(el, buf, sizeof buf);
	CHECK(!strcmp(buf, "Be <s> brief|Say <|im_end|> now"), "system and user text are separate user ranges: '%s'",
	      buf);
	CHECK(el->len > 0 && !strncmp(el->text, "[INST] <<SYS>>\n", 15), "the system is fused into the first turn");
	lf_arena_free(&a);
}

static void test_thoughts(void)
{
	struct lf_template t;
	lf_template_get("qwen3", &t);
	struct lf_message prompt[] = { msg(LF_ROLE_USER, "Q") };
	struct lf_message resp[] = { msg(LF_ROLE_ASSISTANT, "A") };
	struct lf_example ex = { .prompt = prompt, .nprompt = 1, .response = resp, .nresponse = 1,
				 .system = "", .tools = "", .kto_tag = -1 };
	struct lf_arena a = { 0 };
	struct lf_text_record r = { .type = LF_REC_KTO };
	struct lf_render_opts ro = { 0 };
	struct lf_message kto_resp[] = { msg(LF_ROLE_ASSISTANT, "A"), msg(LF_ROLE_ASSISTANT, "") };
	ex.response = kto_resp;
	ex.nresponse = 2;
	CHECK(lf_template_render(&t, &ro, &ex, &a, &r) == 0, "a KTO example renders with a reasoning template");
	CHECK(r.response.n >= 1 && r.response.v[0].thought && r.response.v[0].nuser == 0 &&
		      !strcmp(r.response.v[0].text, "<think>\n\n</think>\n\n"),
	      "enable_thinking puts a marked empty thought at the start of the response");
	t.enable_thinking = false;
	lf_text_record_clear(&r);
	CHECK(lf_template_render(&t, &ro, &ex, &a, &r) == 0 && r.prompt.n >= 1 && r.prompt.v[r.prompt.n - 1].thought,
	      "without thinking the marked thought ends the prompt");
	lf_arena_free(&a);
}

static void test_lookup(void)
{
	struct lf_template t;
	int rc = lf_template_get("no-such-template", &t);
	CHECK(rc < 0 && strstr(lf_errmsg(), "unknown template"),
	      "an unknown template is an error: %s", lf_errmsg());
	bool sorted = true;
	for (size_t i = 1; i < lf_template_ndefs; i++)
		if (strcmp(lf_template_defs[i - 1].name, lf_template_defs[i].name) >= 0)
			sorted = false;
	CHECK(sorted, "the template table is in name order");
	static const char *required[] = { "default", "empty", "alpaca", "vicuna", "llama2", "llama3", "mistral", "qwen",
					  "chatml", "qwen3", "qwen3_nothink", "gemma", "gemma3", "chatglm3", "phi", "yi",
					  "baichuan2", "deepseek", "deepseek3", "intern2", "cohere", "falcon", "zephyr",
					  "yuan" };
	size_t found = 0;
	for (size_t i = 0; i < sizeof required / sizeof required[0]; i++)
		found += lf_template_get(required[i], &t) == 0;
	CHECK(found == sizeof required / sizeof required[0], "all %zu templates the foundation names exist (%zu found)",
	      sizeof required / sizeof required[0], found);
	lf_template_get("chatglm3", &t);
	CHECK(lf_template_set_tool_format(&t, "qwen") == 0 && !strcmp(t.function.tool_format, "qwen") &&
		      t.function.slots[0].kind == LF_SLOT_TEXT && t.function.slots[1].kind == LF_SLOT_NONE,
	      "a tool_format override takes the efficient_eos default slots, as LLaMA-Factory");
	CHECK(lf_template_set_tool_format(&t, "xml") < 0 && strstr(lf_errmsg(), "unknown tool format"),
	      "an unknown tool format is an error");
}

int main(void)
{
	test_user_ranges();
	test_thoughts();
	test_lookup();
	return check_done();
}

/*
 * test_recipe.c — YAML recipes as PyYAML reads them, and the owner table:
 * sorted, one entry per LLaMA-Factory key (tests/golden/llamafactory-keys.txt,
 * written from LLaMA-Factory's own dataclasses), each owned by a known tool.
 */
#include "check.h"
#include "error.h"
#include "recipe.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *write_file(const char *text)
{
	static char path[] = "/tmp/lf-test-recipe-XXXXXX";
	strcpy(path, "/tmp/lf-test-recipe-XXXXXX");
	int fd = mkstemp(path);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		abort();
	close(fd);
	return path;
}

static const struct lf_recipe_entry *entry(const struct lf_recipe *r, const char *key)
{
	for (size_t i = 0; i < r->n; i++)
		if (!strcmp(r->v[i].key, key))
			return &r->v[i];
	return NULL;
}

static void test_yaml(void)
{
	struct lf_recipe r;
	const char *p = write_file("### model\n"
				   "model_name_or_path: meta-llama/Meta-Llama-3-8B-Instruct\n"
				   "trust_remote_code: true\n"
				   "dataset: identity,alpaca_en_demo  # comment\n"
				   "eval_dataset: [a, b]\n"
				   "learning_rate: 1.0e-4\n"
				   "resume_from_checkpoint: null\n"
				   "default_system: \"true\"\n"
				   "empty_value:\n"
				   "packing: yes\n");
	int rc = lf_recipe_load(&r, p);
	CHECK(rc == 0, "the LLaMA-Factory example recipe loads: %s", rc ? lf_errmsg() : "yes");
	const struct lf_recipe_entry *e;
	CHECK((e = entry(&r, "dataset")) && !strcmp(e->value, "identity,alpaca_en_demo"), "a comma list stays text");
	CHECK((e = entry(&r, "eval_dataset")) && e->is_list && !strcmp(e->value, "a,b"), "a YAML list is comma-joined");
	CHECK((e = entry(&r, "resume_from_checkpoint")) && !e->value, "null is no value");
	CHECK((e = entry(&r, "empty_value")) && !e->value, "an empty value is null, as PyYAML reads it");
	CHECK((e = entry(&r, "default_system")) && e->quoted && !strcmp(e->value, "true"), "a quoted scalar is a string");
	CHECK((e = entry(&r, "learning_rate")) && e->line == 6, "entries remember their line");
	CHECK(lf_yaml_bool("yes") == 1 && lf_yaml_bool("Off") == 0 && lf_yaml_bool("maybe") == -1,
	      "YAML 1.1 booleans as PyYAML reads them");
	lf_recipe_free(&r);
	unlink(p);

	p = write_file("a: 1\na: 2\n");
	rc = lf_recipe_load(&r, p);
	CHECK(rc < 0 && strstr(lf_errmsg(), "line 2") && strstr(lf_errmsg(), "twice"),
	      "a key given twice is an error naming the line: %s", lf_errmsg());
	lf_recipe_free(&r);
	unlink(p);
	p = write_file("lr_scheduler_kwargs:\n  min_lr: 1e-5\n  num_decay_steps: 6\n  warmup_type: cosine\n"
		       "  on: yes\n  off: ~\n  text: '12'\n");
	rc = lf_recipe_load(&r, p);
	CHECK(rc == 0 && r.n == 1 && r.v[0].value &&
	      !strcmp(r.v[0].value, "{\"min_lr\":1.0000000000000001e-5,\"num_decay_steps\":6,\"warmup_type\":\"cosine\","
				    "\"on\":true,\"off\":null,\"text\":\"12\"}"),
	      "a mapping of scalars is a value, as its JSON text (YAML 1.1 scalars typed): %s",
	      rc == 0 && r.n ? r.v[0].value : lf_errmsg());
	lf_recipe_free(&r);
	unlink(p);
	p = write_file("rope_scaling:\n  type:\n    deeper: 1\n");
	CHECK(lf_recipe_load(&r, p) < 0 && strstr(lf_errmsg(), "line 3") && strstr(lf_errmsg(), "plain value"),
	      "a mapping inside a mapping value is refused: %s", lf_errmsg());
	lf_recipe_free(&r);
	unlink(p);
	p = write_file("- a\n- b\n");
	CHECK(lf_recipe_load(&r, p) < 0 && strstr(lf_errmsg(), "mapping"), "a list is not a recipe: %s", lf_errmsg());
	lf_recipe_free(&r);
	unlink(p);
	p = write_file("a: [unclosed\n");
	CHECK(lf_recipe_load(&r, p) < 0 && strstr(lf_errmsg(), "YAML error"), "broken YAML names the problem: %s",
	      lf_errmsg());
	lf_recipe_free(&r);
	unlink(p);
	CHECK(lf_recipe_load(&r, "/nonexistent/recipe.yaml") < 0 && strstr(lf_errmsg(), "cannot open"),
	      "a missing recipe is an error: %s", lf_errmsg());
	lf_recipe_free(&r);
}

static const char *tools[] = { "lf", "lf-template", "lf-tokenize", "lf-pack", "lf-train", "lf-merge",
			       "lf-quantize", "lf-generate", "lf-chat", "lf-eval", "lf-serve" };

static bool known_tool(const char *name, size_t n)
{
	for (size_t i = 0; i < sizeof tools / sizeof tools[0]; i++)
		if (strlen(tools[i]) == n && !strncmp(tools[i], name, n))
			return true;
	return false;
}

static void test_table(void)
{
	bool sorted = true, owners = true, notes = true;
	for (size_t i = 0; i < lf_recipe_nkeys; i++) {
		const struct lf_recipe_key *k = &lf_recipe_keys[i];
		if (i && strcmp(lf_recipe_keys[i - 1].key, k->key) >= 0)
			sorted = false;
		if (!known_tool(k->owner, strlen(k->owner)))
			owners = false;
		for (const char *p = k->readers; p && *p;) {
			const char *end = strchr(p, ',');
			size_t n = end ? (size_t)(end - p) : strlen(p);
			if (!known_tool(p, n))
				owners = false;
			p = end ? end + 1 : p + n;
		}
		if ((k->status == LF_KEY_NO_EFFECT || k->status == LF_KEY_UNSUPPORTED) && !k->note)
			notes = false;
	}
	CHECK(sorted, "the owner table is sorted, one entry per key");
	CHECK(owners, "every owner and reader is an lf tool");
	CHECK(notes, "every no-effect or unsupported key says why");

	FILE *f = fopen("tests/golden/llamafactory-keys.txt", "r");
	CHECK(f != NULL, "tests/golden/llamafactory-keys.txt is there");
	if (!f)
		return;
	char line[256];
	size_t n = 0, missing = 0;
	while (fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = 0;
		if (!*line)
			continue;
		n++;
		if (!lf_recipe_key_find(line)) {
			if (missing++ < 5)
				printf("# no owner for LLaMA-Factory key '%s'\n", line);
		}
	}
	fclose(f);
	CHECK(missing == 0 && n == lf_recipe_nkeys, "every one of LLaMA-Factory's %zu keys has exactly one owner (%zu in the table)",
	      n, lf_recipe_nkeys);
	const struct lf_recipe_key *k = lf_recipe_key_find("cutoff_len");
	CHECK(k && !strcmp(k->owner, "lf-pack"), "cutoff_len belongs to lf-pack");
	k = lf_recipe_key_find("template");
	CHECK(k && !strcmp(k->owner, "lf-template") && k->status == LF_KEY_ACTIVE, "template belongs to lf-template");
	k = lf_recipe_key_find("max_samples");
	CHECK(k && lf_recipe_key_for(k, "lf-template") && lf_recipe_key_for(k, "lf-pack") &&
		      !lf_recipe_key_for(k, "lf-train"),
	      "readers are matched by whole tool names");
}

int main(void)
{
	test_yaml();
	test_table();
	return check_done();
}

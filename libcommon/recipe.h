/*
 * recipe.h — LLaMA-Factory YAML recipes and who owns each of their keys.
 *
 * An unmodified LLaMA-Factory recipe can be given to every lf tool with
 * --config.  Every key LLaMA-Factory accepts has exactly one owning lf tool
 * (the table in recipe_keys.c); a tool applies the keys it owns or reads,
 * passes over keys owned by other tools, and stops on a key no one knows or
 * on a key it owns but does not implement yet.
 */
#ifndef LF_RECIPE_H
#define LF_RECIPE_H

#include <stdbool.h>
#include <stddef.h>

enum lf_key_status {
	LF_KEY_ACTIVE,      /* the owner implements it */
	LF_KEY_PLANNED,     /* the owner (or its option) is not built yet */
	LF_KEY_NO_EFFECT,   /* accepted; nothing to do in lf (note says why) */
	LF_KEY_UNSUPPORTED, /* lf does not offer it (note says why / what instead) */
};

struct lf_recipe_key {
	const char *key;     /* LLaMA-Factory's name, e.g. "cutoff_len" */
	const char *owner;   /* lf tool that owns it, e.g. "lf-pack"; "lf" for no tool */
	const char *readers; /* other tools that also read it, comma-separated, or NULL */
	enum lf_key_status status;
	const char *note;    /* for PLANNED/NO_EFFECT/UNSUPPORTED: why, briefly */
};

extern const struct lf_recipe_key lf_recipe_keys[];
extern const size_t lf_recipe_nkeys;

const struct lf_recipe_key *lf_recipe_key_find(const char *key);
/* Does `tool` own or read this key? */
bool lf_recipe_key_for(const struct lf_recipe_key *k, const char *tool);

/* One top-level entry of a recipe. */
struct lf_recipe_entry {
	char *key;
	char *value;    /* scalar text; NULL for null; list items joined by ','; a
			 * mapping of scalars (lr_scheduler_kwargs) as its JSON text */
	bool is_list;
	bool quoted;    /* a quoted scalar (never null or a boolean) */
	int line;
};

struct lf_recipe {
	char *path;
	struct lf_recipe_entry *v;
	size_t n;
};

/* Read a YAML mapping of keys to scalars, lists of scalars or mappings of
 * scalars (a JSON object works too).  Returns -1 with lf_fail naming the file and line. */
int lf_recipe_load(struct lf_recipe *r, const char *path);
void lf_recipe_free(struct lf_recipe *r);

/* YAML 1.1 scalars as PyYAML reads them. */
bool lf_yaml_is_null(const char *s);
/* 1 true, 0 false, -1 not a boolean. */
int lf_yaml_bool(const char *s);

#endif

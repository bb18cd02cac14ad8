/*
 * recipe.c — loading YAML recipes with libyaml and looking up key owners
 * (see recipe.h; the owner table is recipe_keys.c).
 */
#include "recipe.h"
#include "buf.h"
#include "error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <yaml.h>

const struct lf_recipe_key *lf_recipe_key_find(const char *key)
{
	for (size_t i = 0; i < lf_recipe_nkeys; i++)
		if (strcmp(lf_recipe_keys[i].key, key) == 0)
			return &lf_recipe_keys[i];
	return NULL;
}

bool lf_recipe_key_for(const struct lf_recipe_key *k, const char *tool)
{
	if (strcmp(k->owner, tool) == 0)
		return true;
	if (!k->readers)
		return false;
	size_t n = strlen(tool);
	for (const char *p = k->readers; *p;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len == n && strncmp(p, tool, n) == 0)
			return true;
		if (!end)
			break;
		p = end + 1;
	}
	return false;
}

bool lf_yaml_is_null(const char *s)
{
	return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

int lf_yaml_bool(const char *s)
{
	static const char *yes[] = { "true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", "y", "Y" };
	static const char *no[] = { "false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF", "n", "N" };
	for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
		if (!strcmp(s, yes[i]))
			return 1;
	for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
		if (!strcmp(s, no[i]))
			return 0;
	return -1;
}

static int next_event(yaml_parser_t *p, yaml_event_t *ev, const char *path)
{
	if (!yaml_parser_parse(p, ev))
		return lf_fail("%s: line %zu: YAML error: %s", path, p->problem_mark.line + 1,
			       p->problem ? p->problem : "malformed");
	return 0;
}

static char *scalar_text(const yaml_event_t *ev)
{
	return lf_strndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
}

static void add_entry(struct lf_recipe *r, struct lf_recipe_entry e)
{
	r->v = lf_realloc(r->v, (r->n + 1) * sizeof *r->v);
	r->v[r->n++] = e;
}

/* A plain YAML scalar as the JSON value PyYAML would make of it (null,
 * a boolean, an integer, a float, else a string); a quoted one is a string. */
static json_t *scalar_json(const yaml_event_t *ev)
{
	char *text = scalar_text(ev), *end;
	json_t *v = NULL;
	if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
		v = json_string(text);
	} else if (lf_yaml_is_null(text)) {
		v = json_null();
	} else if (lf_yaml_bool(text) >= 0) {
		v = json_boolean(lf_yaml_bool(text));
	} else {
		errno = 0;
		long long i = strtoll(text, &end, 10);
		if (*text && !*end && !errno) {
			v = json_integer(i);
		} else {
			double d = strtod(text, &end);
			v = *text && !*end ? json_real(d) : json_string(text);
		}
	}
	free(text);
	return v;
}

/* A value that is itself a mapping of keys to scalars (lr_scheduler_kwargs):
 * its JSON text into e->value.  The MAPPING_START event has been read. */
static int parse_nested(struct lf_recipe *r, yaml_parser_t *p, struct lf_recipe_entry *e)
{
	json_t *obj = json_object();
	yaml_event_t ev;
	int rc = 0;
	for (;;) {
		if (next_event(p, &ev, r->path) < 0) {
			rc = -1;
			break;
		}
		if (ev.type == YAML_MAPPING_END_EVENT) {
			yaml_event_delete(&ev);
			break;
		}
		if (ev.type != YAML_SCALAR_EVENT) {
			rc = lf_fail("%s: line %d: key '%s': expected a key of its mapping", r->path,
				     (int)ev.start_mark.line + 1, e->key);
			yaml_event_delete(&ev);
			break;
		}
		char *key = scalar_text(&ev);
		yaml_event_delete(&ev);
		if (next_event(p, &ev, r->path) < 0) {
			free(key);
			rc = -1;
			break;
		}
		if (ev.type != YAML_SCALAR_EVENT) {
			rc = lf_fail("%s: line %d: key '%s': '%s' must be a plain value", r->path,
				     (int)ev.start_mark.line + 1, e->key, key);
			free(key);
			yaml_event_delete(&ev);
			break;
		}
		json_object_set_new(obj, key, scalar_json(&ev));
		free(key);
		yaml_event_delete(&ev);
	}
	if (rc == 0) {
		e->value = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
		e->quoted = true;
	}
	json_decref(obj);
	return rc;
}

static int parse_mapping(struct lf_recipe *r, yaml_parser_t *p)
{
	yaml_event_t ev;
	for (;;) {
		if (next_event(p, &ev, r->path) < 0)
			return -1;
		if (ev.type == YAML_MAPPING_END_EVENT) {
			yaml_event_delete(&ev);
			return 0;
		}
		int line = (int)ev.start_mark.line + 1;
		if (ev.type != YAML_SCALAR_EVENT) {
			yaml_event_delete(&ev);
			return lf_fail("%s: line %d: expected a key", r->path, line);
		}
		struct lf_recipe_entry e = { .key = scalar_text(&ev), .line = line };
		yaml_event_delete(&ev);
		for (size_t i = 0; i < r->n; i++)
			if (!strcmp(r->v[i].key, e.key)) {
				lf_fail("%s: line %d: key '%s' given twice (first on line %d)", r->path, line, e.key,
					r->v[i].line);
				free(e.key);
				return -1;
			}
		if (next_event(p, &ev, r->path) < 0) {
			free(e.key);
			return -1;
		}
		if (ev.type == YAML_SCALAR_EVENT) {
			e.quoted = ev.data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
			e.value = scalar_text(&ev);
			if (!e.quoted && lf_yaml_is_null(e.value)) {
				free(e.value);
				e.value = NULL;
			}
			yaml_event_delete(&ev);
		} else if (ev.type == YAML_SEQUENCE_START_EVENT) {
			yaml_event_delete(&ev);
			struct lf_buf items = LF_BUF_INIT;
			for (;;) {
				if (next_event(p, &ev, r->path) < 0) {
					lf_buf_free(&items);
					free(e.key);
					return -1;
				}
				if (ev.type == YAML_SEQUENCE_END_EVENT) {
					yaml_event_delete(&ev);
					break;
				}
				if (ev.type != YAML_SCALAR_EVENT) {
					yaml_event_delete(&ev);
					lf_buf_free(&items);
					lf_fail("%s: line %d: key '%s': list items must be plain values", r->path, line, e.key);
					free(e.key);
					return -1;
				}
				if (items.len)
					lf_buf_addch(&items, ',');
				lf_buf_add(&items, ev.data.scalar.value, ev.data.scalar.length);
				yaml_event_delete(&ev);
			}
			e.is_list = true;
			e.value = lf_buf_detach(&items, NULL);
		} else if (ev.type == YAML_MAPPING_START_EVENT) {
			yaml_event_delete(&ev);
			if (parse_nested(r, p, &e) < 0) {
				free(e.key);
				return -1;
			}
		} else {
			yaml_event_delete(&ev);
			lf_fail("%s: line %d: key '%s': not a recipe value", r->path, line, e.key);
			free(e.key);
			return -1;
		}
		add_entry(r, e);
	}
}

int lf_recipe_load(struct lf_recipe *r, const char *path)
{
	memset(r, 0, sizeof *r);
	r->path = lf_strdup(path);
	FILE *f = fopen(path, "rb");
	if (!f)
		return lf_fail("%s: cannot open: %s", path, strerror(errno));
	yaml_parser_t p;
	yaml_parser_initialize(&p);
	yaml_parser_set_input_file(&p, f);
	yaml_event_t ev;
	int rc = 0, depth_ok = 0;
	for (;;) {
		if (next_event(&p, &ev, path) < 0) {
			rc = -1;
			break;
		}
		yaml_event_type_t t = ev.type;
		int line = (int)ev.start_mark.line + 1;
		yaml_event_delete(&ev);
		if (t == YAML_STREAM_END_EVENT)
			break;
		if (t == YAML_STREAM_START_EVENT || t == YAML_DOCUMENT_START_EVENT || t == YAML_DOCUMENT_END_EVENT)
			continue;
		if (t == YAML_MAPPING_START_EVENT && !depth_ok) {
			depth_ok = 1;
			if (parse_mapping(r, &p) < 0) {
				rc = -1;
				break;
			}
			continue;
		}
		rc = lf_fail("%s: line %d: a recipe is a mapping of keys to values", path, line);
		break;
	}
	yaml_parser_delete(&p);
	fclose(f);
	return rc;
}

void lf_recipe_free(struct lf_recipe *r)
{
	for (size_t i = 0; i < r->n; i++) {
		free(r->v[i].key);
		free(r->v[i].value);
	}
	free(r->v);
	free(r->path);
	memset(r, 0, sizeof *r);
}

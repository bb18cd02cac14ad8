/*
 * options.c — option tables, --help, --version and --config (see options.h).
 */
#include "options.h"
#include "error.h"
#include "log.h"
#include "recipe.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *config_path;
static char *log_path;

enum { OPT_CONFIG = 0x1000, OPT_LOG, OPT_HELP, OPT_VERSION, OPT_RECIPE_KEYS, OPT_FIRST_TABLE };

const struct lf_option *lf_option_find(const struct lf_option *opts, const char *name)
{
	for (const struct lf_option *o = opts; o->name; o++)
		if (!strcmp(o->name, name))
			return o;
	return NULL;
}

/* The option whose recipe key is `key` (cutoff_len -> cutoff-len). */
static struct lf_option *find_by_key(struct lf_option *opts, const char *key)
{
	for (struct lf_option *o = opts; o->name; o++) {
		if (o->flags & LF_OPT_CLI_ONLY)
			continue;
		const char *a = o->name, *b = key;
		while (*a && *b && (*a == *b || (*a == '-' && *b == '_')))
			a++, b++;
		if (!*a && !*b)
			return o;
	}
	return NULL;
}

/* Store text into an option; returns -1 with lf_fail on a bad value. */
static int set_value(struct lf_option *o, const char *text)
{
	char *end;
	switch (o->type) {
	case LF_OPT_BOOL: {
		int b = text ? lf_yaml_bool(text) : 1;
		if (b < 0 && text && (!strcmp(text, "1") || !strcmp(text, "0")))
			b = text[0] == '1';
		if (b < 0)
			return lf_fail("'%s' is not a boolean (true or false)", text);
		*(bool *)o->value = b;
		break;
	}
	case LF_OPT_INT: {
		errno = 0;
		long long v = strtoll(text, &end, 10);
		if (!*text || *end || errno)
			return lf_fail("'%s' is not an integer", text);
		*(long long *)o->value = v;
		break;
	}
	case LF_OPT_FLOAT: {
		errno = 0;
		double v = strtod(text, &end);
		if (!*text || *end || errno || !isfinite(v))
			return lf_fail("'%s' is not a number", text);
		*(double *)o->value = v;
		break;
	}
	case LF_OPT_STRING:
		free(*(char **)o->value);
		*(char **)o->value = lf_strdup(text);
		break;
	case LF_OPT_ACTION:
		break;
	}
	o->given = true;
	return 0;
}

static void apply_recipe(const struct lf_tool_info *tool, struct lf_option *opts, const char *path)
{
	struct lf_recipe r;
	if (lf_recipe_load(&r, path) < 0)
		lf_die_usage("%s", lf_errmsg());
	for (size_t i = 0; i < r.n; i++) {
		const struct lf_recipe_entry *e = &r.v[i];
		const struct lf_recipe_key *k = lf_recipe_key_find(e->key);
		if (!k)
			lf_die_usage("%s: line %d: unknown key '%s' (not a LLaMA-Factory setting)", path, e->line, e->key);
		if (!lf_recipe_key_for(k, tool->name))
			continue; /* another tool's key */
		struct lf_option *o = find_by_key(opts, e->key);
		if (!o) {
			/* Null, or false (the feature switched off), asks nothing of lf. */
			if (!e->value || k->status == LF_KEY_NO_EFFECT || (!e->quoted && lf_yaml_bool(e->value) == 0))
				continue;
			if (strcmp(k->owner, tool->name))
				continue; /* a reader that has no use for it yet */
			if (k->status == LF_KEY_UNSUPPORTED)
				lf_die_usage("%s: line %d: key '%s' is not supported by lf%s%s", path, e->line, e->key,
					     k->note ? ": " : "", k->note ? k->note : "");
			lf_die_usage("%s: line %d: key '%s' is not supported by %s yet%s%s", path, e->line, e->key,
				     tool->name, k->note ? ": " : "", k->note ? k->note : "");
		}
		if (!e->value)
			continue; /* null: keep the default */
		if (set_value(o, e->value) < 0)
			lf_die_usage("%s: line %d: key '%s': %s", path, e->line, e->key, lf_errmsg());
	}
	lf_recipe_free(&r);
}

static const char *status_name(enum lf_key_status s)
{
	switch (s) {
	case LF_KEY_ACTIVE: return "active";
	case LF_KEY_PLANNED: return "planned";
	case LF_KEY_NO_EFFECT: return "no-effect";
	default: return "unsupported";
	}
}

/* The owner table as TSV: key, owner, readers, status, note. */
static void print_recipe_keys(void)
{
	for (size_t i = 0; i < lf_recipe_nkeys; i++) {
		const struct lf_recipe_key *k = &lf_recipe_keys[i];
		printf("%s\t%s\t%s\t%s\t%s\n", k->key, k->owner, k->readers ? k->readers : "-", status_name(k->status),
		       k->note ? k->note : "-");
	}
}

static void print_help(const struct lf_tool_info *tool, const struct lf_option *opts)
{
	printf("Usage: %s %s\n%s\n\nOptions:\n", tool->name, tool->usage, tool->summary);
	struct row {
		int short_name;
		const char *name, *metavar, *help;
		enum lf_opt_type type;
	} common[] = {
		{ 'c', "config", "FILE", "read options from a LLaMA-Factory YAML recipe (command line wins)", LF_OPT_STRING },
		{ 0, "log", "FILE", "append a machine-readable JSON-lines log to FILE", LF_OPT_STRING },
		{ 'h', "help", NULL, "show this help and exit", LF_OPT_ACTION },
		{ 0, "version", NULL, "show the version and exit", LF_OPT_ACTION },
		{ 0, "recipe-keys", NULL, "list every LLaMA-Factory recipe key with its owning lf tool", LF_OPT_ACTION },
	};
	size_t ncommon = sizeof common / sizeof common[0];
	size_t nopts = 0;
	while (opts[nopts].name)
		nopts++;
	for (size_t i = 0; i < nopts + ncommon; i++) {
		struct row r;
		if (i < nopts)
			r = (struct row){ opts[i].short_name, opts[i].name, opts[i].metavar, opts[i].help, opts[i].type };
		else
			r = common[i - nopts];
		char left[128];
		int n = snprintf(left, sizeof left, "  %c%c%c --%s", r.short_name ? '-' : ' ',
				 r.short_name ? r.short_name : ' ', r.short_name ? ',' : ' ', r.name);
		if (r.type == LF_OPT_BOOL)
			n += snprintf(left + n, sizeof left - (size_t)n, "[=BOOL]");
		else if (r.metavar)
			n += snprintf(left + n, sizeof left - (size_t)n, " %s", r.metavar);
		if (n < 30)
			printf("%-30s%s\n", left, r.help);
		else
			printf("%s\n%30s%s\n", left, "", r.help);
	}
	if (tool->epilog)
		printf("\n%s\n", tool->epilog);
	printf("\nRecipe keys are the long options with '-' spelled '_' (see lf(7)).\n");
}

int lf_options_parse(const struct lf_tool_info *tool, struct lf_option *opts, int argc, char **argv)
{
	size_t nopts = 0;
	while (opts[nopts].name)
		nopts++;
	struct option *lo = lf_calloc(nopts + 6, sizeof *lo);
	char shorts[256] = "c:h";
	size_t ns = strlen(shorts);
	for (size_t i = 0; i < nopts; i++) {
		int has = opts[i].type == LF_OPT_BOOL ? optional_argument
			  : opts[i].type == LF_OPT_ACTION ? no_argument
							  : required_argument;
		lo[i] = (struct option){ opts[i].name, has, NULL, OPT_FIRST_TABLE + (int)i };
		if (opts[i].short_name && ns + 3 < sizeof shorts) {
			shorts[ns++] = (char)opts[i].short_name;
			if (has == required_argument)
				shorts[ns++] = ':';
			else if (has == optional_argument)
				shorts[ns++] = ':', shorts[ns++] = ':';
		}
	}
	shorts[ns] = 0;
	lo[nopts] = (struct option){ "config", required_argument, NULL, OPT_CONFIG };
	lo[nopts + 1] = (struct option){ "log", required_argument, NULL, OPT_LOG };
	lo[nopts + 2] = (struct option){ "help", no_argument, NULL, OPT_HELP };
	lo[nopts + 3] = (struct option){ "version", no_argument, NULL, OPT_VERSION };
	lo[nopts + 4] = (struct option){ "recipe-keys", no_argument, NULL, OPT_RECIPE_KEYS };

	/* First pass: find --config (and --help/--version, which win). */
	opterr = 0;
	optind = 1;
	int c;
	while ((c = getopt_long(argc, argv, shorts, lo, NULL)) != -1) {
		if (c == OPT_CONFIG || c == 'c') {
			free(config_path);
			config_path = lf_strdup(optarg);
		}
	}
	if (config_path)
		apply_recipe(tool, opts, config_path);

	/* Second pass: the command line. */
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, shorts, lo, NULL)) != -1) {
		struct lf_option *o = NULL;
		if (c >= OPT_FIRST_TABLE) {
			o = &opts[c - OPT_FIRST_TABLE];
		} else {
			for (size_t i = 0; i < nopts && c < 256; i++)
				if (opts[i].short_name == c)
					o = &opts[i];
		}
		if (o) {
			if (o->type == LF_OPT_ACTION) {
				free(lo);
				o->action();
				exit(0);
			}
			if (set_value(o, optarg) < 0)
				lf_die_usage("option '--%s': %s", o->name, lf_errmsg());
			continue;
		}
		switch (c) {
		case OPT_CONFIG:
		case 'c':
			break;
		case OPT_LOG:
			free(log_path);
			log_path = lf_strdup(optarg);
			break;
		case OPT_HELP:
		case 'h':
			free(lo);
			print_help(tool, opts);
			exit(0);
		case OPT_VERSION:
			free(lo);
			printf("%s (lf) %s\n", tool->name, LF_VERSION);
			exit(0);
		case OPT_RECIPE_KEYS:
			free(lo);
			print_recipe_keys();
			exit(0);
		case ':':
			lf_die_usage("option '%s' needs a value", argv[optind - 1]);
		default:
			if (optopt && optopt < 256)
				lf_die_usage("unknown option '-%c'", optopt);
			lf_die_usage("unknown option '%s'", argv[optind - 1]);
		}
	}
	free(lo);
	if (log_path && lf_log_open(log_path) < 0)
		lf_die("%s", lf_errmsg());
	return optind;
}

const char *lf_list_next(const char *p, char *item, size_t size)
{
	const char *e = strchr(p, ',');
	size_t k = e ? (size_t)(e - p) : strlen(p);
	while (k && *p == ' ')
		p++, k--;
	while (k && p[k - 1] == ' ')
		k--;
	snprintf(item, size, "%.*s", (int)k, p);
	return e ? e + 1 : NULL;
}

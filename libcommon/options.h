/*
 * options.h — declarative command-line options shared by every lf program.
 *
 * A tool lists its options once (name, type, storage, help); that table
 * drives getopt_long, --help, and --config: an option's recipe key is its
 * long name with '-' spelled '_' (--cutoff-len <-> cutoff_len).  The common
 * options --config, --log, --help and --version are added to every tool.
 * Command-line values override the recipe's.
 */
#ifndef LF_OPTIONS_H
#define LF_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>

enum lf_opt_type {
	LF_OPT_BOOL,   /* bool *: --name, --name=true|false */
	LF_OPT_INT,    /* long long * */
	LF_OPT_FLOAT,  /* double * */
	LF_OPT_STRING, /* char ** (a recipe list arrives comma-joined) */
	LF_OPT_ACTION, /* no value: action() runs and the program exits 0 */
};

#define LF_OPT_CLI_ONLY 1u /* not a LLaMA-Factory key: not read from recipes */

struct lf_option {
	const char *name;
	int short_name;
	enum lf_opt_type type;
	void *value;
	const char *metavar;
	const char *help;
	unsigned flags;
	void (*action)(void);
	bool given; /* set when given on the command line or in the recipe */
};

struct lf_tool_info {
	const char *name;    /* "lf-template" */
	const char *usage;   /* "[OPTION]... [FILE]..." */
	const char *summary; /* one line */
	const char *epilog;  /* printed after the options, or NULL */
};

/* Parse argv (recipe first when --config is given, then the command line).
 * Exits with a usage error on bad input.  Returns the index of the first
 * operand. */
int lf_options_parse(const struct lf_tool_info *tool, struct lf_option *opts, int argc, char **argv);
const struct lf_option *lf_option_find(const struct lf_option *opts, const char *name);

/* Comma-separated lists (a recipe's list arrives comma-joined): the next
 * item of p, without the spaces around it, into item (size bytes); returns
 * where the rest starts, NULL after the last item.  Walk a list with
 *     for (const char *p = list; p && *p;) { p = lf_list_next(p, item, sizeof item); ... } */
const char *lf_list_next(const char *p, char *item, size_t size);

#endif

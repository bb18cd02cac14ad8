/*
 * tok_internal.h — the parts of a loaded tokenizer, shared by the tok_*.c
 * modules: tok_load.c (tokenizer.json), tok_norm.c (normalizers),
 * tok_pretok.c (pre-tokenizers), tok_bpe.c (the BPE model), tok_added.c
 * (added tokens), tok_encode.c (the encode pipeline and post-processors),
 * tok_decode.c (decoders).  Each mirrors the tokenizers library module of
 * the same concept.
 */
#ifndef LF_TOK_INTERNAL_H
#define LF_TOK_INTERNAL_H

#include "buf.h"
#include "regex.h"
#include "strmap.h"
#include "tokenizer.h"

/* Token ids lf accepts in a vocabulary: far above any real one, low enough
 * that a typo cannot make the id-indexed tables gigabytes. */
#define LF_TOK_MAX_ID (1 << 24)

/* A Split/Replace pattern: a literal string or an (Oniguruma) regex. */
struct tok_pattern {
	char *lit; /* literal, or NULL for a regex */
	size_t lit_len;
	struct lf_regex *re;
};

enum tn_type { TN_SEQUENCE, TN_NFC, TN_NFD, TN_NFKC, TN_NFKD, TN_LOWERCASE, TN_PREPEND, TN_REPLACE, TN_STRIP };

struct tok_norm {
	enum tn_type type;
	struct tok_norm *kids;
	size_t nkids;
	char *text; /* Prepend's prefix, Replace's content */
	size_t text_len;
	struct tok_pattern pat;
	bool left, right; /* Strip */
};

enum tp_type {
	TP_SEQUENCE, TP_BYTE_LEVEL, TP_SPLIT, TP_METASPACE, TP_DIGITS, TP_PUNCTUATION, TP_WHITESPACE,
	TP_WHITESPACE_SPLIT, TP_BERT
};
enum tok_behavior { TB_REMOVED, TB_ISOLATED, TB_MERGED_WITH_PREVIOUS, TB_MERGED_WITH_NEXT, TB_CONTIGUOUS };
enum tok_prepend { TPS_ALWAYS, TPS_FIRST, TPS_NEVER };

struct tok_pretok {
	enum tp_type type;
	struct tok_pretok *kids;
	size_t nkids;
	struct tok_pattern pat; /* Split */
	bool invert;
	enum tok_behavior behavior;
	bool add_prefix_space, use_regex; /* ByteLevel */
	char *replacement;                /* Metaspace: the replacement character, UTF-8 */
	size_t replacement_len;
	enum tok_prepend prepend_scheme;
	bool split;             /* Metaspace */
	bool individual_digits; /* Digits */
};

enum tpp_type { TPP_SEQUENCE, TPP_TEMPLATE, TPP_BYTE_LEVEL, TPP_ROBERTA, TPP_BERT };

struct tok_template_item {
	bool sequence; /* $A; else a special token's ids */
	int32_t *ids;
	size_t nids;
};

struct tok_post {
	enum tpp_type type;
	struct tok_post *kids;
	size_t nkids;
	struct tok_template_item *items; /* TemplateProcessing's "single" */
	size_t nitems;
	int32_t cls, sep; /* Roberta, Bert */
};

enum td_type { TD_SEQUENCE, TD_BYTE_LEVEL, TD_METASPACE, TD_BYTE_FALLBACK, TD_FUSE, TD_STRIP, TD_REPLACE };

struct tok_dec {
	enum td_type type;
	struct tok_dec *kids;
	size_t nkids;
	char *content; /* Strip: one character; Replace: the replacement */
	size_t content_len;
	size_t start, stop; /* Strip */
	struct tok_pattern pat;
	char *replacement; /* Metaspace */
	size_t replacement_len;
	enum tok_prepend prepend_scheme;
};

struct tok_bpe {
	char *pool; /* every token's bytes */
	uint32_t *off, *len; /* by id; len UINT32_MAX: no token */
	size_t nids;     /* one past the largest id */
	size_t nvocab;   /* entries in the vocabulary */
	struct lf_strmap vocab;
	struct lf_u64map merges; /* (a << 32 | b) -> (rank << 32 | new id) */
	int32_t unk; /* -1: none */
	char *unk_token;
	bool byte_fallback, fuse_unk, ignore_merges;
	char *prefix, *suffix; /* continuing_subword_prefix, end_of_word_suffix (NULL: none) */
	size_t prefix_len, suffix_len;
	int32_t byte_ids[256]; /* <0xNN> tokens, -1 when absent */
	char *desc;            /* canonical text of the model's settings, for the fingerprint */
};

struct tok_added {
	char *content;
	size_t len;
	char *pattern; /* what is matched: content, or its normalized form */
	size_t pattern_len;
	int32_t id;
	bool special, normalized, lstrip, rstrip, single_word;
};

struct tok_trie_node {
	uint32_t first, count; /* edges [first, first + count) */
	int32_t token;         /* index into added, -1: none */
};

struct tok_trie_edge {
	uint8_t byte;
	uint32_t child;
};

struct tok_trie {
	struct tok_trie_node *nodes;
	size_t nnodes;
	struct tok_trie_edge *edges;
	size_t nedges;
	uint8_t first_byte[32]; /* bit set of bytes a pattern starts with */
};

struct lf_tokenizer {
	char *path;
	struct tok_bpe bpe;
	struct tok_norm *norm;
	struct tok_pretok *pretok;
	struct tok_post *post;
	struct tok_dec *dec;
	struct tok_added *added;
	size_t nadded;
	uint64_t files_hash;        /* of the canonical form as loaded (lf_tokenizer_fingerprint) */
	bool encode_special_tokens; /* split_special_tokens: special added tokens are plain text */
	int32_t added_max_id; /* -1: none */
	struct lf_strmap added_by_content;
	int32_t *added_index_by_id; /* id -> index into added, -1: none (rebuild_tries) */
	size_t nids;                /* one past the largest id, added tokens included (rebuild_tries) */
	struct tok_trie raw_trie, norm_trie;
	struct lf_tok_config config;
	struct lf_regex *byte_level_re; /* the GPT-2 pattern, when a ByteLevel uses it */
	bool track_start; /* a normalizer and a Metaspace with prepend_scheme "first" */
	struct lf_buf canonical; /* pipeline components as canonical JSON, for the fingerprint */
};

struct lf_tok_state {
	const struct lf_tokenizer *t;
	struct lf_regex_scratch *rx;
	/* the word cache: pre-token bytes -> ids */
	struct lf_strmap cache;
	struct lf_buf cache_keys;
	struct lf_idvec cache_ids;
	size_t cache_limit;
	/* scratch */
	struct lf_buf norm, tmp, pieces_text;
	struct lf_buf flags, flags_tmp;
	void *pieces, *pieces2; /* struct tok_piece arrays */
	size_t npieces, cap_pieces, npieces2, cap_pieces2;
	void *symbols; /* BPE symbols */
	size_t cap_symbols;
	void *heap;
	size_t cap_heap;
};

/* Per-byte flags carried through the normalizers: the byte is user content
 * (added tokens are not matched there); the byte belongs to the character at
 * the input's original offset 0 (what Metaspace's prepend_scheme "first"
 * asks of a piece, after normalizers such as Strip may have removed it). */
enum { TOK_FLAG_USER = 1, TOK_FLAG_START = 2 };

/* A piece of text during pre-tokenization: bytes [off, off + len) of the
 * state's pieces_text; first: it starts the input (Metaspace's "first"). */
struct tok_piece {
	size_t off, len;
	bool first;
};

/* tok_norm.c: normalize text; flags (may be NULL) carry one user flag per
 * byte through the normalizers into out_flags. */
void tok_normalize(const struct tok_norm *n, struct lf_regex_scratch *rx, const char *text, size_t len,
		   const uint8_t *flags, struct lf_buf *out, struct lf_buf *out_flags);
/* tok_pretok.c: split text into pre-tokens, appended to st->pieces;
 * tok_pretok_init builds the byte-level alphabet (once, before threads). */
void tok_pretok_init(void);
/* The byte a ByteLevel alphabet character stands for, or -1. */
int tok_byte_level_byte(uint32_t cp);
void tok_pretokenize(const struct lf_tokenizer *t, struct lf_tok_state *st, const char *text, size_t len, bool first);
/* tok_bpe.c */
void tok_bpe_encode(const struct lf_tokenizer *t, struct lf_tok_state *st, const char *word, size_t len,
		    struct lf_idvec *out);
/* tok_added.c: the next added-token match in text[from..len) outside the
 * user flags (NULL: everywhere): 1 with [*start, *end) and the token index
 * (before lstrip/rstrip), 0 when none. */
int tok_added_find(const struct lf_tokenizer *t, const struct tok_trie *trie, const char *text, size_t len,
		   size_t from, const uint8_t *user, size_t *start, size_t *end, size_t *token);
int tok_trie_build(struct tok_trie *trie, const struct tok_added *added, size_t n, bool normalized);
void tok_trie_free(struct tok_trie *trie);
/* tok_decode.c */
int tok_decode(const struct tok_dec *d, struct lf_buf *tokens, size_t *ntokens, size_t *cap);
/* Pattern matching shared by normalizers, pre-tokenizers and decoders: call
 * fn for each match (literal or regex). */
void tok_pattern_each(const struct tok_pattern *p, struct lf_regex_scratch *rx, const char *s, size_t n,
		      void (*fn)(size_t start, size_t end, void *arg), void *arg);

#endif

/*
 * tokenizer.h — Hugging Face tokenizers (tokenizer.json), encoding and
 * decoding exactly as the Rust tokenizers library does.
 *
 * A tokenizer is loaded once and shared; each thread encodes with its own
 * lf_tok_state (word cache and scratch buffers).  Encoding follows the
 * library: added tokens are split out first (those with normalized=false on
 * the raw text, the others after normalization), the rest is normalized,
 * pre-tokenized and run through the model; with add_special the
 * post-processor adds its tokens.  Unlike the library, encoding can be told
 * byte ranges of user content in which special added tokens are not matched
 * (non-special ones, such as gemma3's whitespace runs, still are).
 */
#ifndef LF_TOKENIZER_H
#define LF_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "record.h"

struct lf_tokenizer;
struct lf_tok_state;

struct lf_idvec {
	int32_t *v;
	size_t n, cap;
};

void lf_idvec_push(struct lf_idvec *v, int32_t id);
void lf_idvec_free(struct lf_idvec *v);

/* Load PATH: a folder with tokenizer.json (and tokenizer_config.json, when
 * present), or a tokenizer.json file.  NULL with lf_fail naming the file,
 * position and problem (an unknown component is named). */
struct lf_tokenizer *lf_tokenizer_load(const char *path);
void lf_tokenizer_free(struct lf_tokenizer *t);

/* Register a token as a special added token, as transformers'
 * add_special_tokens does for a template's stop words: it must be in the
 * vocabulary already.  Call before creating states.  -1 with lf_fail. */
int lf_tokenizer_add_special(struct lf_tokenizer *t, const char *token, size_t len);
/* The library's add_tokens([token], special_tokens=special): a token already
 * in the vocabulary keeps its id, a new one gets the next id past it.  The
 * id, or -1 with lf_fail.  Call before creating states. */
int32_t lf_tokenizer_add_token(struct lf_tokenizer *t, const char *token, size_t len, bool special);
/* transformers' split_special_tokens (the library's encode_special_tokens):
 * special added tokens are not split out, their spellings stay text. */
void lf_tokenizer_set_split_special(struct lf_tokenizer *t, bool split);

struct lf_tok_state *lf_tok_state_new(const struct lf_tokenizer *t);
void lf_tok_state_free(struct lf_tok_state *st);

/* Encode text (valid UTF-8) in one call, appending ids to out.  Added tokens
 * are not matched inside the user ranges when special (NULL/0: everywhere).  add_special:
 * the library's add_special_tokens=true (the post-processor's tokens). */
void lf_tokenizer_encode(const struct lf_tokenizer *t, struct lf_tok_state *st, const char *text, size_t len,
			 const struct lf_range *user, size_t nuser, bool add_special, struct lf_idvec *out);

/* Decode ids as the library's decode(ids, skip_special_tokens).  -1 with
 * lf_fail naming the first id out of range. */
int lf_tokenizer_decode(const struct lf_tokenizer *t, const int32_t *ids, size_t n, bool skip_special,
			struct lf_buf *out);

/* The same for what a model generated: ids the tokenizer lacks (a model's
 * embedding rows past the tokenizer's vocabulary, as padded vocabularies
 * have) give no text, as transformers' decode leaves them out. */
int lf_tokenizer_decode_generated(const struct lf_tokenizer *t, const int32_t *ids, size_t n, bool skip_special,
				  struct lf_buf *out);

/* Token lookups (added tokens first, then the model's vocabulary). */
int32_t lf_tokenizer_token_to_id(const struct lf_tokenizer *t, const char *s, size_t len);
const char *lf_tokenizer_id_to_token(const struct lf_tokenizer *t, int32_t id, size_t *len);
/* One past the largest id. */
size_t lf_tokenizer_vocab_size(const struct lf_tokenizer *t);

/* tokenizer_config.json's tokens (NULL when not given) and flags. */
struct lf_tok_config {
	char *bos_token, *eos_token, *pad_token;
	bool add_bos_token, has_add_bos_token;
};
const struct lf_tok_config *lf_tokenizer_config(const struct lf_tokenizer *t);

/* xxHash64 of the tokenizer's canonical form: vocabulary, merges, added
 * tokens, pipeline components, as loaded from its files (not what
 * lf_tokenizer_add_special or _add_token added later); `extra` (such as the
 * resolved bos/eos/pad ids) is mixed in. */
uint64_t lf_tokenizer_fingerprint(const struct lf_tokenizer *t, const int32_t *extra, size_t nextra);

/* tok_stream.c: a token stream header's "tokenizer" map.  ids: the resolved
 * bos, eos and pad ids (-1: none); added: the tokens add_tokens and
 * add_special_tokens added to the files' tokenizer.  check: 0 when t is the
 * tokenizer the stream was made with, after giving t the header's added
 * tokens and split_special_tokens (ids then hold the header's); -1 with
 * lf_fail. */
struct lf_tok_addition {
	const char *content;
	size_t len;
	int32_t id;
	bool special;
};
void lf_tokenizer_pack_header(msgpack_packer *pk, const struct lf_tokenizer *t, const char *path, const int32_t ids[3],
			      const struct lf_tok_addition *added, size_t nadded);
int lf_tokenizer_check_stream(struct lf_tokenizer *t, const msgpack_object *header, int32_t ids[3]);

/* tok_elems.c: the special tokens a template fixes on a tokenizer, as
 * LLaMA-Factory's fix_special_tokens: stop words become special tokens
 * (those not in the vocabulary are listed in missing: lf does not resize
 * vocabularies); with replace_eos the eos is stop_words[0]; no eos means
 * <|endoftext|>; no pad means the eos.  Call before creating states.  -1
 * with lf_fail. */
struct lf_tok_specials {
	int32_t bos, eos, pad; /* -1: none */
	bool parse_special;    /* match special tokens inside user content too */
	size_t missing[16], nmissing;
};
int lf_tok_resolve_specials(struct lf_tokenizer *t, const char *const *stop_words, const size_t *stop_lens,
			    size_t nstop, bool replace_eos, const char *path, struct lf_tok_specials *out);
/* Ids of an element list (text encoded with add_special_tokens=false,
 * special tokens matched outside user content unless parse_special; bos,
 * eos and named tokens resolved).  lead_thought / trail_thought (may be
 * NULL): ids from leading / a trailing inserted empty thought.  -1 with
 * lf_fail naming the element. */
struct lf_elems;
int lf_tok_encode_elems(const struct lf_tokenizer *t, struct lf_tok_state *st, const struct lf_tok_specials *r,
			const struct lf_elems *e, struct lf_idvec *ids, uint32_t *lead_thought, uint32_t *trail_thought);

#endif

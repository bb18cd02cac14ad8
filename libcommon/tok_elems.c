/*
 * tok_elems.c — token ids of lf-template's elements (text slots, bos, eos,
 * named special tokens) and the special tokens LLaMA-Factory's template
 * fixes on a tokenizer (its fix_special_tokens): shared by lf-tokenize,
 * which encodes streams, and lf-chat, which encodes conversations.
 */
#include "error.h"
#include "tokenizer.h"
#include "record.h"
#include "unicode.h"

#include <string.h>

static int32_t token_id(const struct lf_tokenizer *t, const char *s)
{
	return s ? lf_tokenizer_token_to_id(t, s, strlen(s)) : -1;
}

int lf_tok_resolve_specials(struct lf_tokenizer *t, const char *const *stop_words, const size_t *stop_lens,
			    size_t nstop, bool replace_eos, const char *path, struct lf_tok_specials *out)
{
	memset(out, 0, sizeof *out);
	for (size_t i = 0; i < nstop; i++) {
		if (lf_tokenizer_add_special(t, stop_words[i], stop_lens[i]) < 0) {
			/* LLaMA-Factory adds it as a new token (an id past the model's
			 * embeddings unless resize_vocab); lf does not resize.  Only
			 * the eos must exist. */
			if (i == 0 && replace_eos)
				return lf_fail("template stop word '%.*s' (the eos with replace_eos) is not in the "
					       "vocabulary of %s", (int)stop_lens[i], stop_words[i], path);
			if (out->nmissing < sizeof out->missing / sizeof out->missing[0])
				out->missing[out->nmissing++] = i;
		}
	}
	const struct lf_tok_config *cfg = lf_tokenizer_config(t);
	out->bos = token_id(t, cfg->bos_token);
	if (replace_eos) {
		if (!nstop)
			return lf_fail("replace_eos without stop words");
		out->eos = lf_tokenizer_token_to_id(t, stop_words[0], stop_lens[0]);
	} else {
		out->eos = token_id(t, cfg->eos_token);
		if (out->eos < 0)
			out->eos = token_id(t, "<|endoftext|>");
	}
	if (out->eos < 0)
		return lf_fail("%s: the tokenizer has no eos token (and no <|endoftext|>)", path);
	out->pad = token_id(t, cfg->pad_token);
	if (out->pad < 0)
		out->pad = out->eos;
	return 0;
}

/* Encode an element list.  lead_thought / trail_thought (may be NULL): ids
 * from a leading / the last element that is an inserted empty thought. */
int lf_tok_encode_elems(const struct lf_tokenizer *t, struct lf_tok_state *st, const struct lf_tok_specials *r,
			const struct lf_elems *e, struct lf_idvec *ids, uint32_t *lead_thought, uint32_t *trail_thought)
{
	bool leading = true;
	for (size_t i = 0; i < e->n; i++) {
		const struct lf_elem *el = &e->v[i];
		size_t before = ids->n;
		switch (el->kind) {
		case LF_ELEM_TEXT: {
			size_t bad;
			if (!lf_utf8_valid(el->text, el->len, &bad))
				return lf_fail("element %zu: text is not UTF-8 (byte %zu)", i, bad);
			lf_tokenizer_encode(t, st, el->text, el->len, r->parse_special ? NULL : el->user,
					    r->parse_special ? 0 : el->nuser, false, ids);
			break;
		}
		case LF_ELEM_BOS:
			if (r->bos >= 0)
				lf_idvec_push(ids, r->bos);
			break;
		case LF_ELEM_EOS:
			lf_idvec_push(ids, r->eos);
			break;
		case LF_ELEM_TOKEN: {
			int32_t id = lf_tokenizer_token_to_id(t, el->text, el->len);
			if (id < 0)
				return lf_fail("token '%.*s' is not in the vocabulary", (int)el->len, el->text);
			lf_idvec_push(ids, id);
			break;
		}
		}
		uint32_t produced = (uint32_t)(ids->n - before);
		bool thought = el->kind == LF_ELEM_TEXT && el->thought;
		if (thought && leading && lead_thought)
			*lead_thought += produced;
		if (thought && i + 1 == e->n && trail_thought)
			*trail_thought = produced;
		if (!thought)
			leading = false;
	}
	return 0;
}


/*
 * tok_added.c — finding added tokens in text: a byte trie per matching set
 * (tokens matched on the raw text, tokens matched after normalization), and
 * leftmost-longest search, as the library's Aho-Corasick automaton finds
 * them, that can keep special tokens out of user content.
 */
#include "tok_internal.h"
#include "error.h"

#include <stdlib.h>
#include <string.h>

struct build_node {
	int32_t token;
	uint32_t *kids;
	uint8_t *bytes;
	size_t n, cap;
};

static uint32_t child(struct build_node **nodes, size_t *nnodes, size_t *cap, uint32_t at, uint8_t b)
{
	struct build_node *node = &(*nodes)[at];
	for (size_t i = 0; i < node->n; i++)
		if (node->bytes[i] == b)
			return node->kids[i];
	if (*nnodes == *cap) {
		*cap *= 2;
		*nodes = lf_realloc(*nodes, *cap * sizeof **nodes);
		node = &(*nodes)[at];
	}
	uint32_t id = (uint32_t)(*nnodes)++;
	(*nodes)[id] = (struct build_node){ .token = -1 };
	node = &(*nodes)[at];
	if (node->n == node->cap) {
		node->cap = node->cap ? 2 * node->cap : 2;
		node->kids = lf_realloc(node->kids, node->cap * sizeof *node->kids);
		node->bytes = lf_realloc(node->bytes, node->cap);
	}
	node->kids[node->n] = id;
	node->bytes[node->n++] = b;
	return id;
}

int tok_trie_build(struct tok_trie *trie, const struct tok_added *added, size_t n, bool normalized)
{
	memset(trie, 0, sizeof *trie);
	size_t cap = 64, nnodes = 1;
	struct build_node *nodes = lf_malloc(cap * sizeof *nodes);
	nodes[0] = (struct build_node){ .token = -1 };
	/* the library's order: special tokens, then the others; where two
	 * patterns are the same, the first one is found */
	for (size_t j = 0; j < 2 * n; j++) {
		size_t i = j % n;
		if ((j < n) != added[i].special || added[i].normalized != normalized || !added[i].pattern_len)
			continue;
		uint32_t at = 0;
		for (size_t k = 0; k < added[i].pattern_len; k++)
			at = child(&nodes, &nnodes, &cap, at, (uint8_t)added[i].pattern[k]);
		if (nodes[at].token < 0)
			nodes[at].token = (int32_t)i;
		uint8_t b0 = (uint8_t)added[i].pattern[0];
		trie->first_byte[b0 >> 3] |= (uint8_t)(1u << (b0 & 7));
	}
	/* flatten, each node's edges sorted by byte */
	trie->nodes = lf_malloc(nnodes * sizeof *trie->nodes);
	trie->nnodes = nnodes;
	size_t nedges = 0;
	for (size_t i = 0; i < nnodes; i++)
		nedges += nodes[i].n;
	trie->edges = lf_malloc((nedges ? nedges : 1) * sizeof *trie->edges);
	trie->nedges = nedges;
	size_t e = 0;
	for (size_t i = 0; i < nnodes; i++) {
		struct build_node *b = &nodes[i];
		trie->nodes[i] = (struct tok_trie_node){ (uint32_t)e, (uint32_t)b->n, b->token };
		for (size_t k = 0; k < b->n; k++) { /* insertion sort: nodes have few edges */
			size_t j = e + k;
			while (j > e && trie->edges[j - 1].byte > b->bytes[k]) {
				trie->edges[j] = trie->edges[j - 1];
				j--;
			}
			trie->edges[j] = (struct tok_trie_edge){ b->bytes[k], b->kids[k] };
		}
		e += b->n;
		free(b->kids);
		free(b->bytes);
	}
	free(nodes);
	return 0;
}

void tok_trie_free(struct tok_trie *trie)
{
	free(trie->nodes);
	free(trie->edges);
	memset(trie, 0, sizeof *trie);
}

static int32_t step(const struct tok_trie *trie, uint32_t node, uint8_t b)
{
	const struct tok_trie_node *nd = &trie->nodes[node];
	size_t lo = nd->first, hi = nd->first + nd->count;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (trie->edges[mid].byte < b)
			lo = mid + 1;
		else if (trie->edges[mid].byte > b)
			hi = mid;
		else
			return (int32_t)trie->edges[mid].child;
	}
	return -1;
}

int tok_added_find(const struct lf_tokenizer *t, const struct tok_trie *trie, const char *text, size_t len,
		   size_t from, const uint8_t *user, size_t *start, size_t *end, size_t *token)
{
	if (!trie->nnodes || trie->nodes[0].count == 0)
		return 0;
	const uint8_t *s = (const uint8_t *)text;
	for (size_t pos = from; pos < len; pos++) {
		if (!(trie->first_byte[s[pos] >> 3] & (1u << (s[pos] & 7))))
			continue;
		/* a match that touches user content may not be a special token */
		bool in_user = false;
		int32_t node = 0, best = -1;
		size_t best_end = 0;
		for (size_t k = pos; k < len; k++) {
			if (user && (user[k] & TOK_FLAG_USER))
				in_user = true;
			node = step(trie, (uint32_t)node, s[k]);
			if (node < 0)
				break;
			int32_t tk = trie->nodes[node].token;
			if (tk >= 0 && !(in_user && t->added[tk].special)) {
				best = tk;
				best_end = k + 1;
			}
		}
		if (best >= 0) {
			*start = pos;
			*end = best_end;
			*token = (size_t)best;
			return 1;
		}
	}
	return 0;
}

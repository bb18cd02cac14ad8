/*
 * shardset.h — what lf-pack writes, as readers see it: a folder with
 * manifest.json and shard files per split (train, validation), the same
 * bundled into one uncompressed tar (read in place, mapped), or a single
 * shard file.  Examples of a split are numbered across its shards.
 */
#ifndef LF_SHARDSET_H
#define LF_SHARDSET_H

#include "shard.h"

struct lf_shardset;

/* Open a folder, a .tar bundle or a .shard file; checks the manifest against
 * the shards (names, example counts, sizes).  NULL with lf_fail. */
struct lf_shardset *lf_shardset_open(const char *path);
void lf_shardset_close(struct lf_shardset *s);
const char *lf_shardset_name(const struct lf_shardset *s);
size_t lf_shardset_nsplits(const struct lf_shardset *s);
const char *lf_shardset_split_name(const struct lf_shardset *s, size_t split);
/* -1 when there is no such split. */
int lf_shardset_find_split(const struct lf_shardset *s, const char *name);
uint64_t lf_shardset_examples(const struct lf_shardset *s, size_t split);
size_t lf_shardset_nshards(const struct lf_shardset *s, size_t split);
struct lf_shard *lf_shardset_shard(const struct lf_shardset *s, size_t split, size_t k);
/* The metadata of the set's first shard. */
const msgpack_object *lf_shardset_meta(const struct lf_shardset *s);
/* Sequence j of example i of a split.  -1 with lf_fail. */
int lf_shardset_get(struct lf_shardset *s, size_t split, uint64_t i, unsigned j, struct lf_shard_seq *q);
/* Check every block of every shard.  -1 with lf_fail. */
int lf_shardset_verify(struct lf_shardset *s);

/* Write the folder dir (manifest first, then shards) as one tar file,
 * atomically.  -1 with lf_fail. */
int lf_shardset_bundle(const char *dir, const char *tar_path);

#endif

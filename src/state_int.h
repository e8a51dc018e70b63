/*
 * The state store's internals shared with its bulk loader (state_load.c):
 * sorted appends straight into LMDB, bypassing the write-back cache.
 */
#ifndef TRAILHOUND_STATE_INT_H
#define TRAILHOUND_STATE_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "trailhound/state.h"

struct th_state_rec {
	const void *key;
	size_t klen;
	const void *val;
	size_t vlen;
};

/* Write @p n records, their keys strictly ascending and after every key the
 * store holds, in one LMDB transaction (MDB_APPEND); a full map grows.
 * The store must have no uncommitted changes.
 * Returns 0, TH_EINVAL (changes pending, read-only, or a key not after the
 * last), TH_ENOSPC (nothing written) or TH_ESTATE. */
int th_state_append_sorted(struct th_state *st, const struct th_state_rec *recs, size_t n);
/* A key a worker writes: not empty, within LMDB's limit (th_key: at most
 * 511 bytes), not metadata (which never travels through the changelog).
 * Anything else in a changelog was not written by a worker; kept, it would
 * fail the restore at every restart. */
bool th_state_key_is_data(const void *key, size_t klen);
/* Does the store hold any record besides its metadata, committed or not? */
bool th_state_has_records(struct th_state *st);

#endif

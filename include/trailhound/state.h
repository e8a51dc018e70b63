/*
 * The state store: one LMDB environment (one per input partition in Kafka
 * mode, one for `scan`) behind an in-memory write-back cache.
 *
 * Writes are coalesced: th_state_put() only touches the cache, and
 * th_state_commit() writes each dirty key once, together with the last
 * applied input offset, in a single LMDB write transaction. So LMDB sees one
 * put per distinct key per batch, and the stored offset always matches the
 * stored state. th_state_rollback() forgets everything since the last commit
 * (used when a Kafka transaction aborts).
 *
 * Keys and values are opaque bytes here; the detector owns their layout
 * (docs/state-format.md). Keys starting with a 0 byte are reserved for the
 * store's own metadata (format version, input offset).
 *
 * Ownership: th_state_open() returns a store the caller closes with
 * th_state_close(). Values returned by th_state_get() are borrowed and valid
 * until the next put/del of that key, commit, rollback or close.
 * Not thread-safe: one thread per store.
 */
#ifndef TRAILHOUND_STATE_H
#define TRAILHOUND_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "trailhound/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TH_STATE_FORMAT_VERSION 1
/* In the store's directory while it is open for writing: the boot id of the
 * machine that opened it (a clean close removes it). */
#define TH_STATE_OPEN_MARKER "trailhound.open"
#define TH_STATE_NO_OFFSET INT64_MIN

struct th_state;

struct th_state_stats {
	uint64_t gets, cache_hits, db_reads, commits, db_puts, db_dels;
	size_t cached, dirty;
};

/**
 * @brief Open (creating if needed) the store in directory @p dir.
 *
 * An existing store is verified first, in a forked child (a structural walk
 * of data.mdb and a cursor over every record: liblmdb crashes on corrupt
 * pages, the child may, this process does not), and its open marker
 * (TH_STATE_OPEN_MARKER) is checked against the boot id. See
 * docs/state-format.md for the failure each check covers.
 * @param map_size initial LMDB map size in bytes (0 = 4 GiB); it grows when full.
 * @returns 0; TH_EUNTRUSTED when the store exists but cannot be trusted
 *          (not closed cleanly across a system crash, corrupt, another
 *          program's file, another format version): the caller rebuilds it
 *          (Kafka: wipe and restore from the changelog); TH_ESTATE when LMDB
 *          fails (errstr explains); TH_ENOMEM.
 */
int th_state_open(struct th_state **stp, const char *dir, size_t map_size, char *errstr,
		  size_t errstr_size);
/**
 * @brief Open an existing store read-only (`trailhound inspect`): works on a
 *        read-only directory or filesystem (without LMDB's lock file when it
 *        cannot be created), checks trust as th_state_open() does, and never
 *        writes. put/del only touch the cache; commit and wipe return
 *        TH_EINVAL.
 * @returns as th_state_open(); TH_ESTATE also when there is no store.
 */
int th_state_open_readonly(struct th_state **stp, const char *dir, char *errstr,
			   size_t errstr_size);

/**
 * @brief Delete a store's files in @p dir (data, lock file, open marker), so
 *        that th_state_open() creates a new one: how a caller rebuilds a
 *        store that was TH_EUNTRUSTED. The store must not be open.
 * @returns 0 or a negative errno.
 */
int th_state_remove_files(const char *dir);

/** @brief Sync and close; uncommitted changes are dropped. NULL is a no-op. */
void th_state_close(struct th_state *st);

/**
 * @brief Look a key up (cache first, then LMDB).
 * @returns 0 with val and vlen set, TH_ENOTFOUND, or TH_ESTATE.
 */
int th_state_get(struct th_state *st, const void *key, size_t klen, const void **val,
		 size_t *vlen);
/** @brief Set a key in the write-back cache. @returns 0 or TH_ENOMEM. */
int th_state_put(struct th_state *st, const void *key, size_t klen, const void *val,
		 size_t vlen);
/** @brief Delete a key (in the write-back cache). @returns 0 or TH_ENOMEM. */
int th_state_del(struct th_state *st, const void *key, size_t klen);

/**
 * @brief Visit every live key starting with @p prefix (committed and
 *        uncommitted). The callback may put/del the key it is visiting (and
 *        only that key); returning non-zero stops the scan.
 * @returns 0, the callback's non-zero value, or TH_ESTATE.
 */
int th_state_scan(struct th_state *st, const void *prefix, size_t plen,
		  int (*cb)(void *ctx, const void *key, size_t klen, const void *val, size_t vlen),
		  void *ctx);

/**
 * @brief Visit the uncommitted changes (val NULL = deletion), e.g. to send
 *        them to a changelog topic before committing.
 */
int th_state_dirty_foreach(struct th_state *st,
			   int (*cb)(void *ctx, const void *key, size_t klen, const void *val,
				     size_t vlen),
			   void *ctx);

/**
 * @brief Write all dirty keys and @p input_offset (TH_STATE_NO_OFFSET keeps
 *        the stored one) in one LMDB transaction.
 * A full map grows and the commit is retried inside; it is never an error.
 * @returns 0; TH_ENOSPC when the disk is full (nothing written, the cache
 *          keeps its changes: calling again once space returns commits them);
 *          TH_ESTATE (nothing written; the cache keeps its changes).
 */
int th_state_commit(struct th_state *st, int64_t input_offset);
/** @brief Forget every change since the last commit. */
void th_state_rollback(struct th_state *st);
/** @brief Last committed input offset, or TH_STATE_NO_OFFSET. */
int64_t th_state_offset(struct th_state *st);
/** @brief Delete every key (committed at once) and the offset. @returns 0 or TH_ESTATE. */
int th_state_wipe(struct th_state *st);
/** LMDB's key limit (mdb_env_get_maxkeysize of the default build). */
#define TH_STATE_KEY_MAX 511
/**
 * @brief A bulk load: a restore's changelog records, in any order, into an
 *        empty store, written in key order with LMDB's MDB_APPEND.
 *
 * Random puts into a B-tree write about one page per record, each half
 * filled; sorted appends write each page once, full. Records are gathered
 * in memory (about @p mem_bytes), sorted, and spilled as sorted runs to
 * unnamed temporary files in @p tmp_dir when that fills; finish merges the
 * runs. A key's last record wins, a deletion (val NULL) included.
 * Nothing reaches the store before th_state_load_finish(), so a load that is
 * dropped (th_state_load_destroy without finish) leaves the store empty.
 * Ownership: the load borrows @p st (which must outlive it) and is freed by
 * th_state_load_destroy(); destroy(NULL) is a no-op.
 * @returns 0; TH_EINVAL when the store holds records or uncommitted changes;
 *          TH_EIO when no temporary file can be made in @p tmp_dir; TH_ENOMEM.
 */
struct th_state_load;
struct th_state_load_stats {
	uint64_t records; /* added (deletions included) */
	uint64_t written; /* keys in the store after finish */
	uint64_t runs;	  /* sorted runs spilled to temporary files */
	uint64_t spilled_bytes;
	uint64_t commits; /* LMDB transactions */
};
int th_state_load_new(struct th_state_load **ldp, struct th_state *st, const char *tmp_dir,
		      size_t mem_bytes);
/** @returns 0; TH_EINVAL for a key no worker writes (empty, over
 *           TH_STATE_KEY_MAX, or the store's metadata: the caller skips the
 *           record, nothing is kept); TH_ENOSPC or TH_EIO
 *           when a spill fails; TH_ENOMEM. After any error but TH_EINVAL
 *           the load is incomplete: destroy it (the store is untouched). */
int th_state_load_add(struct th_state_load *ld, const void *key, size_t klen, const void *val,
		      size_t vlen);
/** @brief Write every key's last record into the store (committed in
 *         transactions of a few MB; the input offset is the caller's commit).
 * @returns 0, TH_ENOSPC, TH_EIO or TH_ESTATE; after an error the store holds
 *          part of the load: the caller wipes it. */
int th_state_load_finish(struct th_state_load *ld);
void th_state_load_get_stats(const struct th_state_load *ld, struct th_state_load_stats *out);
void th_state_load_destroy(struct th_state_load *ld);

void th_state_get_stats(const struct th_state *st, struct th_state_stats *out);
/** @brief Records changed (put or deleted) since the last commit or rollback. */
size_t th_state_changes(const struct th_state *st);

#ifdef __cplusplus
}
#endif

#endif

/*
 * The state store: LMDB behind a write-back cache (see state.h for the
 * contract). LMDB is opened with MDB_WRITEMAP|MDB_NOSYNC|MDB_NOMETASYNC:
 * measured 4-10x faster than synced commits here, and a process crash loses
 * nothing LMDB committed (the pages are in the shared mapping). A machine
 * crash can lose the last commits; the stored input offset then lags the
 * group's committed offset, and the worker rebuilds the partition from its
 * changelog, so durability comes from Kafka, not from fsync.
 */
#include "trailhound/state.h"

#include <errno.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "trailhound/hash.h"

/* Clean entries kept as a read cache between commits; past this the cache
 * is emptied after a commit. */
#define CACHE_MAX_CLEAN 262144

static const char META_VERSION[] = "\0version";
static const char META_OFFSET[] = "\0offset";

struct entry {
	UT_hash_handle hh;
	void *key;
	size_t klen;
	void *val; /* NULL when absent/deleted */
	size_t vlen;
	bool dirty;
	bool in_db; /* the key existed in LMDB when first read (for scans) */
	uint32_t visit_gen; /* == st->scan_gen when the current scan visited it */
	struct entry *dirty_next; /* the dirty list: commits and scans touch only these */
};

struct th_state {
	MDB_env *env;
	MDB_dbi dbi;
	MDB_txn *rtxn; /* long-lived read txn, reset between commits */
	bool rtxn_live;
	struct entry *cache;
	/* Dirty entries, one list per first key byte (the record type), so a
	 * prefix scan walks only the uncommitted entries of its type. */
	struct entry *dirty_head[256];
	uint32_t scan_gen;
	size_t ndirty, ncached;
	int64_t offset;
	struct th_state_stats stats;
};

static int mdb_fail(const char *what, int rc)
{
	th_log_err("state", "%s: %s", what, mdb_strerror(rc));
	return TH_ESTATE;
}

static int rtxn_get(struct th_state *st, MDB_txn **txn)
{
	int rc;
	if (!st->rtxn) {
		rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &st->rtxn);
		if (rc)
			return mdb_fail("mdb_txn_begin(read)", rc);
		st->rtxn_live = true;
	} else if (!st->rtxn_live) {
		rc = mdb_txn_renew(st->rtxn);
		if (rc)
			return mdb_fail("mdb_txn_renew", rc);
		st->rtxn_live = true;
	}
	*txn = st->rtxn;
	return 0;
}

static void rtxn_release(struct th_state *st)
{
	if (st->rtxn && st->rtxn_live) {
		mdb_txn_reset(st->rtxn);
		st->rtxn_live = false;
	}
}

static void entry_free(struct entry *e)
{
	free(e->key);
	free(e->val);
	free(e);
}

static void cache_clear(struct th_state *st, bool keep_clean)
{
	struct entry *e, *tmp;
	HASH_ITER(hh, st->cache, e, tmp)
	{
		if (keep_clean && !e->dirty)
			continue;
		HASH_DEL(st->cache, e);
		entry_free(e);
	}
	memset(st->dirty_head, 0, sizeof(st->dirty_head));
	st->ndirty = 0;
	st->ncached = HASH_COUNT(st->cache);
}

static struct entry *entry_new(struct th_state *st, const void *key, size_t klen)
{
	struct entry *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->key = malloc(klen ? klen : 1);
	if (!e->key) {
		free(e);
		return NULL;
	}
	memcpy(e->key, key, klen);
	e->klen = klen;
	HASH_ADD_KEYPTR(hh, st->cache, e->key, klen, e);
	st->ncached++;
	return e;
}

static int meta_read(struct th_state *st, const char *key, size_t klen, MDB_val *out)
{
	MDB_txn *txn;
	MDB_val k = {klen, (void *)key};
	int rc = rtxn_get(st, &txn);
	if (rc)
		return rc;
	rc = mdb_get(txn, st->dbi, &k, out);
	if (rc == MDB_NOTFOUND)
		return TH_ENOTFOUND;
	return rc ? mdb_fail("mdb_get(meta)", rc) : 0;
}

int th_state_open(struct th_state **stp, const char *dir, size_t map_size, char *errstr,
		  size_t errstr_size)
{
	struct th_state *st = calloc(1, sizeof(*st));
	MDB_txn *txn = NULL;
	MDB_val v;
	int rc;

	if (!st)
		return TH_ENOMEM;
	st->offset = TH_STATE_NO_OFFSET;
	if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
		snprintf(errstr, errstr_size, "state dir %s: %s", dir, strerror(errno));
		goto fail;
	}
	if ((rc = mdb_env_create(&st->env)) ||
	    (rc = mdb_env_set_mapsize(st->env, map_size ? map_size : (size_t)4 << 30)) ||
	    (rc = mdb_env_open(st->env, dir,
			       MDB_NOTLS | MDB_WRITEMAP | MDB_NOSYNC | MDB_NOMETASYNC, 0640))) {
		snprintf(errstr, errstr_size, "LMDB %s: %s", dir, mdb_strerror(rc));
		goto fail;
	}
	if ((rc = mdb_txn_begin(st->env, NULL, 0, &txn)) ||
	    (rc = mdb_dbi_open(txn, NULL, 0, &st->dbi))) {
		snprintf(errstr, errstr_size, "LMDB %s: %s", dir, mdb_strerror(rc));
		goto fail;
	}
	/* Format version: written on first open, checked afterwards. */
	MDB_val k = {sizeof(META_VERSION) - 1, (void *)META_VERSION};
	rc = mdb_get(txn, st->dbi, &k, &v);
	if (rc == MDB_NOTFOUND) {
		unsigned char ver = TH_STATE_FORMAT_VERSION;
		MDB_val nv = {1, &ver};
		rc = mdb_put(txn, st->dbi, &k, &nv, 0);
	} else if (rc == 0 && (v.mv_size != 1 || *(unsigned char *)v.mv_data !=
							 TH_STATE_FORMAT_VERSION)) {
		snprintf(errstr, errstr_size,
			 "state in %s has format version %u, this build reads %u: wipe it or "
			 "restore it from the changelog",
			 dir, v.mv_size ? *(unsigned char *)v.mv_data : 0, TH_STATE_FORMAT_VERSION);
		goto fail;
	}
	if (rc || (rc = mdb_txn_commit(txn))) {
		txn = NULL;
		snprintf(errstr, errstr_size, "LMDB %s: %s", dir, mdb_strerror(rc));
		goto fail;
	}
	txn = NULL;
	if (meta_read(st, META_OFFSET, sizeof(META_OFFSET) - 1, &v) == 0 &&
	    v.mv_size == sizeof(int64_t))
		memcpy(&st->offset, v.mv_data, sizeof(int64_t));
	rtxn_release(st);
	*stp = st;
	return 0;
fail:
	if (txn)
		mdb_txn_abort(txn);
	th_state_close(st);
	return TH_ESTATE;
}

void th_state_close(struct th_state *st)
{
	if (!st)
		return;
	cache_clear(st, false);
	if (st->rtxn)
		mdb_txn_abort(st->rtxn);
	if (st->env) {
		mdb_env_sync(st->env, 1);
		mdb_env_close(st->env);
	}
	free(st);
}

int th_state_get(struct th_state *st, const void *key, size_t klen, const void **val,
		 size_t *vlen)
{
	struct entry *e;
	MDB_txn *txn;
	MDB_val k = {klen, (void *)key}, v;
	int rc;

	st->stats.gets++;
	HASH_FIND(hh, st->cache, key, klen, e);
	if (e) {
		st->stats.cache_hits++;
		if (!e->val)
			return TH_ENOTFOUND;
		*val = e->val;
		*vlen = e->vlen;
		return 0;
	}
	if ((rc = rtxn_get(st, &txn)))
		return rc;
	st->stats.db_reads++;
	rc = mdb_get(txn, st->dbi, &k, &v);
	if (rc && rc != MDB_NOTFOUND)
		return mdb_fail("mdb_get", rc);
	/* Cache hits and misses alike: the detector asks for the same keys
	 * (an account, a role, a hot key) many times per batch. */
	e = entry_new(st, key, klen);
	if (!e)
		return TH_ENOMEM;
	if (rc == MDB_NOTFOUND)
		return TH_ENOTFOUND;
	e->in_db = true;
	e->val = malloc(v.mv_size ? v.mv_size : 1);
	if (!e->val)
		return TH_ENOMEM;
	memcpy(e->val, v.mv_data, v.mv_size);
	e->vlen = v.mv_size;
	*val = e->val;
	*vlen = e->vlen;
	return 0;
}

static struct entry *entry_for_write(struct th_state *st, const void *key, size_t klen)
{
	struct entry *e;
	HASH_FIND(hh, st->cache, key, klen, e);
	if (!e) {
		/* Not read before: whether it is in LMDB matters only to scans,
		 * which check LMDB themselves. */
		e = entry_new(st, key, klen);
		if (!e)
			return NULL;
	}
	if (!e->dirty) {
		unsigned char type = klen ? *(const unsigned char *)key : 0;
		e->dirty = true;
		e->dirty_next = st->dirty_head[type];
		st->dirty_head[type] = e;
		st->ndirty++;
	}
	return e;
}

int th_state_put(struct th_state *st, const void *key, size_t klen, const void *val,
		 size_t vlen)
{
	struct entry *e = entry_for_write(st, key, klen);
	void *nv;
	if (!e)
		return TH_ENOMEM;
	if (e->val && e->vlen >= vlen) {
		nv = e->val;
	} else {
		nv = malloc(vlen ? vlen : 1);
		if (!nv)
			return TH_ENOMEM;
		free(e->val);
	}
	memcpy(nv, val, vlen);
	e->val = nv;
	e->vlen = vlen;
	return 0;
}

int th_state_del(struct th_state *st, const void *key, size_t klen)
{
	struct entry *e = entry_for_write(st, key, klen);
	if (!e)
		return TH_ENOMEM;
	free(e->val);
	e->val = NULL;
	e->vlen = 0;
	return 0;
}

int th_state_scan(struct th_state *st, const void *prefix, size_t plen,
		  int (*cb)(void *ctx, const void *key, size_t klen, const void *val, size_t vlen),
		  void *ctx)
{
	MDB_txn *txn;
	MDB_cursor *cur = NULL;
	MDB_val k = {plen, (void *)prefix}, v;
	struct entry *e, *tmp;
	int rc, ret = 0;

	uint32_t gen = ++st->scan_gen;
	(void)tmp;
	if ((rc = rtxn_get(st, &txn)))
		return rc;
	if ((rc = mdb_cursor_open(txn, st->dbi, &cur)))
		return mdb_fail("mdb_cursor_open", rc);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0)
			break;
		HASH_FIND(hh, st->cache, k.mv_data, k.mv_size, e);
		if (e) {
			e->visit_gen = gen;
			if (!e->val)
				continue;
			ret = cb(ctx, e->key, e->klen, e->val, e->vlen);
		} else {
			ret = cb(ctx, k.mv_data, k.mv_size, v.mv_data, v.mv_size);
		}
		if (ret)
			break;
	}
	mdb_cursor_close(cur);
	if (ret)
		return ret;
	if (rc && rc != MDB_NOTFOUND)
		return mdb_fail("mdb_cursor_get", rc);
	/* Keys that exist only in the cache: written since the last commit, so
	 * on the dirty list. The list is walked by pointer so a callback that
	 * re-dirties its own key (already listed) cannot disturb it. */
	for (int t = 0; t < 256; t++) {
		if (plen && t != *(const unsigned char *)prefix)
			continue;
		for (e = st->dirty_head[t]; e; e = e->dirty_next) {
			if (e->visit_gen == gen || !e->val || e->klen < plen ||
			    memcmp(e->key, prefix, plen) != 0)
				continue;
			e->visit_gen = gen;
			if ((ret = cb(ctx, e->key, e->klen, e->val, e->vlen)))
				return ret;
		}
	}
	return 0;
}

int th_state_dirty_foreach(struct th_state *st,
			   int (*cb)(void *ctx, const void *key, size_t klen, const void *val,
				     size_t vlen),
			   void *ctx)
{
	int ret;
	for (int t = 0; t < 256; t++)
		for (struct entry *e = st->dirty_head[t]; e; e = e->dirty_next)
			if ((ret = cb(ctx, e->key, e->klen, e->val, e->vlen)))
				return ret;
	return 0;
}

int th_state_commit(struct th_state *st, int64_t input_offset)
{
	MDB_txn *txn;
	struct entry *e;
	int rc;

	rtxn_release(st);
	if ((rc = mdb_txn_begin(st->env, NULL, 0, &txn)))
		return mdb_fail("mdb_txn_begin(write)", rc);
	for (int t = 0; t < 256; t++) {
		for (e = st->dirty_head[t]; e; e = e->dirty_next) {
			MDB_val k = {e->klen, e->key};
			if (e->val) {
				MDB_val v = {e->vlen, e->val};
				rc = mdb_put(txn, st->dbi, &k, &v, 0);
				st->stats.db_puts++;
			} else {
				rc = mdb_del(txn, st->dbi, &k, NULL);
				if (rc == MDB_NOTFOUND)
					rc = 0;
				st->stats.db_dels++;
			}
			if (rc)
				goto fail;
		}
	}
	if (input_offset != TH_STATE_NO_OFFSET) {
		MDB_val k = {sizeof(META_OFFSET) - 1, (void *)META_OFFSET};
		MDB_val v = {sizeof(input_offset), &input_offset};
		if ((rc = mdb_put(txn, st->dbi, &k, &v, 0)))
			goto fail;
	}
	if ((rc = mdb_txn_commit(txn)))
		return mdb_fail("mdb_txn_commit", rc);
	if (input_offset != TH_STATE_NO_OFFSET)
		st->offset = input_offset;
	st->stats.commits++;
	for (int t = 0; t < 256; t++)
		for (e = st->dirty_head[t]; e; e = e->dirty_next) {
			e->dirty = false;
			e->in_db = e->val != NULL;
		}
	memset(st->dirty_head, 0, sizeof(st->dirty_head));
	st->ndirty = 0;
	if (st->ncached > CACHE_MAX_CLEAN)
		cache_clear(st, false);
	return 0;
fail:
	mdb_txn_abort(txn);
	return mdb_fail("commit", rc);
}

void th_state_rollback(struct th_state *st)
{
	/* Clean entries are still true, but a rollback is rare: start afresh. */
	cache_clear(st, false);
	rtxn_release(st);
}

int64_t th_state_offset(struct th_state *st)
{
	return st->offset;
}

int th_state_wipe(struct th_state *st)
{
	MDB_txn *txn;
	int rc;
	unsigned char ver = TH_STATE_FORMAT_VERSION;
	MDB_val k = {sizeof(META_VERSION) - 1, (void *)META_VERSION}, v = {1, &ver};

	cache_clear(st, false);
	rtxn_release(st);
	if ((rc = mdb_txn_begin(st->env, NULL, 0, &txn)))
		return mdb_fail("mdb_txn_begin(wipe)", rc);
	if ((rc = mdb_drop(txn, st->dbi, 0)) || (rc = mdb_put(txn, st->dbi, &k, &v, 0))) {
		mdb_txn_abort(txn);
		return mdb_fail("mdb_drop", rc);
	}
	if ((rc = mdb_txn_commit(txn)))
		return mdb_fail("mdb_txn_commit(wipe)", rc);
	st->offset = TH_STATE_NO_OFFSET;
	return 0;
}

int th_state_apply(struct th_state *st, const void *key, size_t klen, const void *val,
		   size_t vlen)
{
	if (klen && ((const char *)key)[0] == '\0')
		return TH_EINVAL; /* metadata never travels through the changelog */
	return val ? th_state_put(st, key, klen, val, vlen) : th_state_del(st, key, klen);
}

void th_state_get_stats(const struct th_state *st, struct th_state_stats *out)
{
	*out = st->stats;
	out->cached = st->ncached;
	out->dirty = st->ndirty;
}

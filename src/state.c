/*
 * The state store: LMDB behind a write-back cache (see state.h for the
 * contract; docs/state-format.md for the reasoning below).
 *
 * Flags: MDB_NOSYNC|MDB_NOMETASYNC, and no MDB_WRITEMAP. Commits write their
 * pages with pwrite(): a full disk is an ENOSPC from the commit (retried
 * later) instead of a SIGBUS on a sparse shared mapping, and a process
 * crash loses nothing committed (the pages are in the kernel's page cache).
 * Commits are not fsynced (4-10x faster here), so a *system* crash can
 * leave a store that is torn. That case is detected, not prevented: while a
 * store is open for writing, the file TH_STATE_OPEN_MARKER in its directory
 * holds the kernel's boot id; a clean close syncs and removes it. A store
 * found with a marker from another boot was open when the machine went
 * down and is reported TH_EUNTRUSTED; the worker rebuilds it from its
 * changelog, so durability comes from Kafka, not from fsync.
 *
 * Every existing store is also walked in a forked child before it is used:
 * liblmdb trusts its pages and crashes on a corrupt one, so the child reads
 * every page the store reaches (the main tree with every value byte, and the
 * free list) and a crash or an error there marks the store untrusted
 * instead of crashing this process.
 */
#include "trailhound/state.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "trailhound/hash.h"
#include "state_int.h"

/* Clean entries kept as a read cache between commits; past this the cache
 * is emptied after a commit. LMDB's own reads are memory-mapped, so the cache
 * saves only the lookup and copy: 32k entries (~20 MB per partition) keep the
 * hot keys without holding a million-key partition in the heap. */
#define CACHE_MAX_CLEAN 32768

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

/* A full map grows by doubling, up to this (address space, not disk). */
#define MAP_SIZE_MAX ((size_t)1 << 40)
#define MAP_SIZE_DEFAULT ((size_t)4 << 30)

struct th_state {
	MDB_env *env;
	bool readonly;
	char *marker; /* path of the open marker; NULL when read-only */
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
		if (rc == MDB_MAP_RESIZED) {
			/* another process (a worker, for inspect) grew the map */
			if ((rc = mdb_env_set_mapsize(st->env, 0)) == 0)
				rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &st->rtxn);
		}
		if (rc) {
			st->rtxn = NULL;
			return mdb_fail("mdb_txn_begin(read)", rc);
		}
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

/* End the read txn entirely: a map resize needs no transaction alive. */
static void rtxn_end(struct th_state *st)
{
	if (st->rtxn)
		mdb_txn_abort(st->rtxn);
	st->rtxn = NULL;
	st->rtxn_live = false;
}

static void entry_free(struct entry *e)
{
	free(e->val);
	free(e); /* the key lives in the same block */
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
	/* The key in the entry's own block: a lookup that compares it reads
	 * the line it already has, not a second allocation. */
	struct entry *e = calloc(1, sizeof(*e) + klen);
	if (!e)
		return NULL;
	e->key = e + 1;
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

/* ---- trust: the open marker and the verifying walk ---- */

/* The kernel's boot id, a UUID that changes at every boot; "" when unknown
 * (no /proc): then any marker left behind counts as another boot's. */
static void boot_id(char out[64])
{
	int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, out, 63) : -1;
	if (fd >= 0)
		close(fd);
	if (n < 0)
		n = 0;
	out[n] = '\0';
	out[strcspn(out, "\n")] = '\0';
}

static char *path_join(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);
	if (p)
		snprintf(p, n, "%s/%s", dir, name);
	return p;
}

static void fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

/* Write the marker durably before the first write to the store, so a system
 * crash at any later point leaves it behind. */
static int marker_write(const char *path, const char *dir, const char *boot)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	size_t n = strlen(boot);
	int err = 0;
	if (fd < 0)
		return -errno;
	if (write(fd, boot, n) != (ssize_t)n || write(fd, "\n", 1) != 1 || fsync(fd) != 0)
		err = errno ? -errno : TH_EIO;
	close(fd);
	fsync_dir(dir);
	return err;
}

/* Exit codes of the verifying child. */
enum {
	VERIFY_OK = 0,
	VERIFY_NOT_LMDB = 10,  /* mdb_env_open refused the file */
	VERIFY_CORRUPT = 11,   /* LMDB reported corruption while walking */
	VERIFY_DISORDER = 12,  /* keys out of order, or more records than could fit */
	VERIFY_FREELIST = 13,  /* the free list names pages outside the file, one twice, or
				* a page a tree uses */
	VERIFY_FAILED = 14,    /* could not check (no memory, ...) */
};

static volatile unsigned verify_sink;

/* ---- a structural check of data.mdb, independent of liblmdb ----
 *
 * liblmdb validates little of what it reads: a flipped page flag (P_DIRTY),
 * or a page's free-space bounds (lower/upper), make its *write* path modify
 * the read-only map or write past a page buffer. So every page reachable
 * from the current meta page is checked here, with every read bounded by
 * the file. The layout is LMDB's data format version 1 (mdb.c: MDB_meta,
 * MDB_db, MDB_page, MDB_node), stable across 0.9.x, on a 64-bit host. */
#define LM_MAGIC 0xBEEFC0DEu
#define LM_DATA_VERSION 1
#define LM_PAGEHDRSZ 16
#define LM_NODESIZE 8
#define LM_P_BRANCH 0x01
#define LM_P_LEAF 0x02
#define LM_P_OVERFLOW 0x04
#define LM_P_META 0x08
#define LM_F_BIGDATA 0x01
#define LM_P_INVALID (~(uint64_t)0)
#define LM_MAX_DEPTH 64

struct lm_walk {
	const unsigned char *map;
	uint64_t fsize, psize, last_pg;
	uint64_t free_past_end; /* free-list pages at or past the end of the file */
	unsigned char *seen; /* one bit per page: a page reached twice is a cycle */
	/* one bit per page the free list names: LMDB hands a free page to the
	 * next write, so a page listed twice, or one a tree still uses, would be
	 * written over while something else points at it */
	unsigned char *freed;
	uint64_t leaves_entries;
	int leaf_depth;
};

static uint16_t lm_u16(const unsigned char *p)
{
	uint16_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static uint32_t lm_u32(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static uint64_t lm_u64(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

/* The page's bytes, or NULL when pgno lies outside the used file or was
 * already reached. */
static const unsigned char *lm_page(struct lm_walk *w, uint64_t pgno, uint64_t npages)
{
	if (pgno < 2 || npages == 0 || pgno > w->last_pg || npages > w->last_pg - pgno + 1 ||
	    (pgno + npages) * w->psize > w->fsize)
		return NULL;
	for (uint64_t i = pgno; i < pgno + npages; i++) {
		if (w->seen[i / 8] & (1u << (i % 8)))
			return NULL;
		w->seen[i / 8] |= (unsigned char)(1u << (i % 8));
	}
	const unsigned char *p = w->map + pgno * w->psize;
	return lm_u64(p) == pgno ? p : NULL;
}

/* Check one tree page and everything below it; returns 0 or a VERIFY_* code. */
static int lm_tree(struct lm_walk *w, uint64_t pgno, int depth, bool freedb)
{
	const unsigned char *p = lm_page(w, pgno, 1);
	if (!p || depth > LM_MAX_DEPTH)
		return VERIFY_CORRUPT;
	uint16_t flags = lm_u16(p + 10), lower = lm_u16(p + 12), upper = lm_u16(p + 14);
	if ((flags != LM_P_BRANCH && flags != LM_P_LEAF) || lower < LM_PAGEHDRSZ ||
	    lower > upper || upper > w->psize || (lower - LM_PAGEHDRSZ) % 2)
		return VERIFY_CORRUPT;
	unsigned nkeys = (unsigned)(lower - LM_PAGEHDRSZ) / 2;
	if (nkeys == 0)
		return VERIFY_CORRUPT;
	if (flags == LM_P_LEAF) {
		if (w->leaf_depth < 0)
			w->leaf_depth = depth;
		else if (w->leaf_depth != depth)
			return VERIFY_CORRUPT; /* a B+tree's leaves are all at one depth */
	}
	for (unsigned i = 0; i < nkeys; i++) {
		uint16_t off = lm_u16(p + LM_PAGEHDRSZ + 2 * i);
		if (off < upper || off % 2 || (uint64_t)off + LM_NODESIZE > w->psize)
			return VERIFY_CORRUPT;
		const unsigned char *node = p + off;
		uint16_t lo = lm_u16(node), hi = lm_u16(node + 2), nflags = lm_u16(node + 4),
			 ksize = lm_u16(node + 6);
		uint64_t room = w->psize - off - LM_NODESIZE;
		if (ksize > room || ksize > TH_STATE_KEY_MAX)
			return VERIFY_CORRUPT;
		if (flags == LM_P_BRANCH) {
			uint64_t child = lo | ((uint64_t)hi << 16) | ((uint64_t)nflags << 32);
			int rc = lm_tree(w, child, depth + 1, freedb);
			if (rc)
				return rc;
			continue;
		}
		uint64_t dsize = lo | ((uint64_t)hi << 16);
		const unsigned char *data = node + LM_NODESIZE + ksize;
		w->leaves_entries++;
		if (nflags == LM_F_BIGDATA) {
			if (room - ksize < 8)
				return VERIFY_CORRUPT;
			uint64_t ovpg = lm_u64(data);
			const unsigned char *op = w->map + (ovpg <= w->last_pg ? ovpg : 0) * w->psize;
			if (ovpg < 2 || ovpg > w->last_pg || (ovpg + 1) * w->psize > w->fsize)
				return VERIFY_CORRUPT;
			uint32_t npages = lm_u32(op + 12);
			if (lm_u16(op + 10) != LM_P_OVERFLOW || !lm_page(w, ovpg, npages) ||
			    dsize > (uint64_t)npages * w->psize - LM_PAGEHDRSZ)
				return VERIFY_CORRUPT;
			data = op + LM_PAGEHDRSZ;
		} else if (nflags != 0 || dsize > room - ksize) {
			return VERIFY_CORRUPT; /* no sub-databases or duplicates in our store */
		}
		if (freedb) {
			/* an ID list: [count, pgno...], each a page the next write reuses */
			if (dsize < 8 || dsize % 8 || lm_u64(data) != dsize / 8 - 1)
				return VERIFY_FREELIST;
			for (uint64_t j = 1; j < dsize / 8; j++) {
				uint64_t fp = lm_u64(data + 8 * j);
				if (fp < 2 || fp > w->last_pg ||
				    (w->freed[fp / 8] & (1u << (fp % 8))))
					return VERIFY_FREELIST;
				w->freed[fp / 8] |= (unsigned char)(1u << (fp % 8));
				if (fp >= w->fsize / w->psize)
					w->free_past_end++;
			}
		}
	}
	return 0;
}

static int lm_db(struct lm_walk *w, const unsigned char *db, bool freedb)
{
	uint64_t root = lm_u64(db + 40), entries = lm_u64(db + 32);
	uint16_t depth = lm_u16(db + 6);
	if (root == LM_P_INVALID)
		return entries == 0 ? 0 : VERIFY_CORRUPT;
	w->leaves_entries = 0;
	w->leaf_depth = -1;
	int rc = lm_tree(w, root, 1, freedb);
	if (rc)
		return rc;
	if (w->leaves_entries != entries || w->leaf_depth != depth)
		return VERIFY_CORRUPT;
	return 0;
}

/* Returns 0 or a VERIFY_* code. */
static int lm_check_file(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = VERIFY_NOT_LMDB;
	struct stat sb;
	struct lm_walk w = {0};
	void *map = MAP_FAILED;

	if (fd < 0 || fstat(fd, &sb) != 0 || sb.st_size < 2 * 4096)
		goto cleanup;
	map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED)
		goto cleanup;
	w.map = map;
	w.fsize = (uint64_t)sb.st_size;
	/* meta pages 0 and 1: both must be valid; the newer one is current */
	const unsigned char *m0 = w.map;
	uint32_t psize = lm_u32(m0 + LM_PAGEHDRSZ + 24);
	if (lm_u32(m0 + LM_PAGEHDRSZ) != LM_MAGIC || psize < 512 || psize > 65536 ||
	    (psize & (psize - 1)) || 2ull * psize > w.fsize)
		goto cleanup;
	w.psize = psize;
	const unsigned char *m1 = w.map + psize, *cur = m0;
	for (int i = 0; i < 2; i++) {
		const unsigned char *m = i ? m1 : m0;
		if (lm_u32(m + LM_PAGEHDRSZ) != LM_MAGIC ||
		    lm_u32(m + LM_PAGEHDRSZ + 4) != LM_DATA_VERSION ||
		    lm_u16(m + 10) != LM_P_META || lm_u64(m) != (uint64_t)i)
			goto cleanup;
	}
	if (lm_u64(m1 + LM_PAGEHDRSZ + 128) > lm_u64(m0 + LM_PAGEHDRSZ + 128))
		cur = m1;
	rc = VERIFY_CORRUPT;
	/* The file may end before the meta's last page: pages a transaction
	 * allocated at the end and freed again before its commit are counted
	 * there (and listed as free) but never written. Every page the trees
	 * reach must lie inside the file (lm_page), and every page past its
	 * end must be free (checked below). */
	w.last_pg = lm_u64(cur + LM_PAGEHDRSZ + 120);
	uint64_t fpages = w.fsize / psize;
	/* Pages past the end must all be free, and the free list takes 8 bytes
	 * of the file per page: this bounds last_pg (and the bitmap below). */
	if (w.last_pg < 1 || (w.last_pg >= fpages && w.last_pg - fpages >= w.fsize / 8))
		goto cleanup;
	if (!(w.seen = calloc(fpages / 8 + 1, 1)) || !(w.freed = calloc(w.last_pg / 8 + 1, 1))) {
		rc = VERIFY_FAILED;
		goto cleanup;
	}
	if ((rc = lm_db(&w, cur + LM_PAGEHDRSZ + 24, true)) ||
	    (rc = lm_db(&w, cur + LM_PAGEHDRSZ + 24 + 48, false)))
		goto cleanup;
	if (w.last_pg + 1 > fpages && w.free_past_end != w.last_pg + 1 - fpages) {
		rc = VERIFY_FREELIST;
		goto cleanup;
	}
	/* No page both free and in a tree (the trees reach only pages inside
	 * the file, so the bitmaps are compared over the shorter one). */
	for (uint64_t i = 0; i < fpages / 8 + 1 && i < w.last_pg / 8 + 1; i++)
		if (w.seen[i] & w.freed[i]) {
			rc = VERIFY_FREELIST;
			goto cleanup;
		}
	rc = 0;
cleanup:
	free(w.seen);
	free(w.freed);
	if (map != MAP_FAILED)
		munmap(map, (size_t)sb.st_size);
	if (fd >= 0)
		close(fd);
	return rc;
}

/* In the child: walk everything a later use of the store could read. */
static int verify_walk(const char *dir)
{
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_dbi dbi;
	MDB_envinfo info;
	MDB_val k, v, prev = {0, NULL};
	struct stat sb;
	unsigned sum = 0;
	uint64_t nrec = 0, max_rec;
	int rc;

	char *data = path_join(dir, "data.mdb");
	if (!data)
		return VERIFY_FAILED;
	if ((rc = lm_check_file(data)))
		return rc;
	if (mdb_env_create(&env))
		return VERIFY_FAILED;
	/* NOLOCK: the child reads alone, without touching the lock file that
	 * the parent (or a running worker) holds. */
	rc = mdb_env_open(env, dir, MDB_RDONLY | MDB_NOLOCK | MDB_NOTLS, 0);
	if (rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH || rc == EINVAL)
		return VERIFY_NOT_LMDB;
	if (rc)
		return rc == ENOMEM ? VERIFY_FAILED : VERIFY_CORRUPT;
	if (mdb_env_info(env, &info))
		return VERIFY_CORRUPT;
	/* (The meta's last page may lie past the end of the file, see
	 * lm_check_file; the pages liblmdb reads below were found inside it.) */
	if (stat(data, &sb) != 0)
		return VERIFY_FAILED;
	free(data);
	/* every record takes at least 8 bytes of a page: a count beyond this
	 * means the walk is looping through corrupt page pointers */
	max_rec = (uint64_t)sb.st_size / 8 + 16;
	if ((rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) ||
	    (rc = mdb_dbi_open(txn, NULL, 0, &dbi)) || (rc = mdb_cursor_open(txn, dbi, &cur)))
		return rc == ENOMEM ? VERIFY_FAILED : VERIFY_CORRUPT;
	while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
		if (++nrec > max_rec)
			return VERIFY_DISORDER;
		if (prev.mv_data) {
			size_t m = prev.mv_size < k.mv_size ? prev.mv_size : k.mv_size;
			int c = memcmp(prev.mv_data, k.mv_data, m);
			if (c > 0 || (c == 0 && prev.mv_size >= k.mv_size))
				return VERIFY_DISORDER;
		}
		prev = k;
		/* touch every byte: a value on a page past the end of the file
		 * faults here, in the child */
		for (size_t i = 0; i < v.mv_size; i++)
			sum += ((const unsigned char *)v.mv_data)[i];
	}
	if (rc != MDB_NOTFOUND)
		return VERIFY_CORRUPT;
	mdb_cursor_close(cur);
	/* The free list (dbi 0, readable in a read-only txn): its page numbers
	 * are what the next write reuses. */
	if ((rc = mdb_cursor_open(txn, 0, &cur)))
		return VERIFY_CORRUPT;
	nrec = 0;
	while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
		const size_t *ids = v.mv_data; /* [count, pgno...] */
		if (++nrec > max_rec || v.mv_size < sizeof(size_t) ||
		    v.mv_size % sizeof(size_t) || ids[0] != v.mv_size / sizeof(size_t) - 1)
			return VERIFY_FREELIST;
		for (size_t i = 1; i <= ids[0]; i++)
			if (ids[i] < 2 || ids[i] > info.me_last_pgno)
				return VERIFY_FREELIST;
	}
	if (rc != MDB_NOTFOUND)
		return VERIFY_CORRUPT;
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	mdb_env_close(env);
	verify_sink = sum; /* keeps the reads from being optimised away */
	return VERIFY_OK;
}

/* Walk the store in a child process; 0 when it can be trusted, else
 * TH_EUNTRUSTED (or TH_ESTATE when the check itself could not run) with
 * errstr saying why. */
static int verify_store(const char *dir, char *errstr, size_t errstr_size)
{
	int status;
	pid_t pid;

	fflush(NULL); /* nothing buffered is written twice */
	pid = fork();
	if (pid < 0) {
		th_errstr(errstr, errstr_size, "state %s: cannot check it: fork: %s", dir,
			  strerror(errno));
		return TH_ESTATE;
	}
	if (pid == 0) {
		/* a crash here must not dump core or run the parent's handlers */
		static const int sigs[] = {SIGSEGV, SIGBUS, SIGABRT, SIGILL, SIGFPE};
		for (size_t i = 0; i < TH_ARRAY_SIZE(sigs); i++)
			signal(sigs[i], SIG_DFL);
		_exit(verify_walk(dir));
	}
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			th_errstr(errstr, errstr_size, "state %s: cannot check it: waitpid: %s", dir,
				  strerror(errno));
			return TH_ESTATE;
		}
	}
	if (WIFSIGNALED(status)) {
		th_errstr(errstr, errstr_size,
			  "state %s cannot be trusted: reading it crashed (signal %d): the store "
			  "is corrupt; rebuild it (worker: restored from the changelog; scan: "
			  "delete the directory)",
			  dir, WTERMSIG(status));
		return TH_EUNTRUSTED;
	}
	switch (WIFEXITED(status) ? WEXITSTATUS(status) : VERIFY_FAILED) {
	case VERIFY_OK: return 0;
	case VERIFY_NOT_LMDB:
		th_errstr(errstr, errstr_size,
			  "state %s cannot be trusted: data.mdb is not an LMDB file (another "
			  "program's file?); rebuild it",
			  dir);
		return TH_EUNTRUSTED;
	case VERIFY_FAILED:
		th_errstr(errstr, errstr_size, "state %s: cannot check it (out of memory?)", dir);
		return TH_ESTATE;
	default:
		/* a corruption found, or a sanitizer's report of a crash */
		th_errstr(errstr, errstr_size,
			  "state %s cannot be trusted: the store is corrupt (check %d failed); "
			  "rebuild it",
			  dir, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		return TH_EUNTRUSTED;
	}
}

/* Before opening: is there a store here, and may it be used? */
static int check_existing(const char *dir, bool readonly, char *errstr, size_t errstr_size)
{
	char *data = path_join(dir, "data.mdb"), *marker = path_join(dir, TH_STATE_OPEN_MARKER);
	char boot[64], was[64] = "";
	struct stat sb;
	int rc = 0, fd;
	bool marked;

	if (!data || !marker) {
		rc = TH_ENOMEM;
		goto cleanup;
	}
	if (stat(data, &sb) != 0 || sb.st_size == 0)
		goto cleanup; /* nothing yet: a new store (a stale marker is moot) */
	fd = open(marker, O_RDONLY | O_CLOEXEC);
	marked = fd >= 0;
	if (fd >= 0) {
		ssize_t n = read(fd, was, sizeof(was) - 1);
		close(fd);
		was[n > 0 ? n : 0] = '\0';
		was[strcspn(was, "\n")] = '\0';
		boot_id(boot);
		/* Same boot: the process that had it open ended (or still runs);
		 * its commits are in the page cache, intact. Another boot: the
		 * machine went down with unsynced commits. */
		if (!boot[0] || strcmp(boot, was) != 0) {
			th_errstr(errstr, errstr_size,
				  "state %s cannot be trusted: it was open when the machine went "
				  "down (boot %s, now %s) and its last commits were not synced; "
				  "rebuild it",
				  dir, was[0] ? was : "?", boot[0] ? boot : "unknown");
			rc = TH_EUNTRUSTED;
			goto cleanup;
		}
	}
	rc = verify_store(dir, errstr, errstr_size);
	/* A read-only look (inspect) at a store a worker has open races its
	 * commits: the check reads without LMDB's reader lock, so a commit
	 * may reuse a page under it. A real corruption stays; a race passes
	 * on the next try. */
	for (int i = 0; i < 3 && rc == TH_EUNTRUSTED && readonly && marked; i++)
		rc = verify_store(dir, errstr, errstr_size);
cleanup:
	free(data);
	free(marker);
	return rc;
}

static int open_env(struct th_state *st, const char *dir, size_t map_size, bool readonly,
		    char *errstr, size_t errstr_size)
{
	unsigned flags = MDB_NOTLS | MDB_NOSYNC | MDB_NOMETASYNC;
	int rc;

	if (readonly)
		flags = MDB_NOTLS | MDB_RDONLY;
	if ((rc = mdb_env_create(&st->env)) ||
	    (!readonly && (rc = mdb_env_set_mapsize(st->env, map_size))))
		goto fail;
	rc = mdb_env_open(st->env, dir, flags, 0640);
	if (rc && readonly && (rc == EACCES || rc == EROFS || rc == EPERM)) {
		/* The lock file cannot be created or opened for writing (a
		 * read-only directory or filesystem): read without locks. */
		mdb_env_close(st->env);
		st->env = NULL;
		if ((rc = mdb_env_create(&st->env)) ||
		    (rc = mdb_env_open(st->env, dir, flags | MDB_NOLOCK, 0640)))
			goto fail;
	}
	if (!rc)
		return 0;
fail:
	th_errstr(errstr, errstr_size, "LMDB %s: %s", dir, mdb_strerror(rc));
	return rc == ENOSPC || rc == EDQUOT ? TH_ENOSPC : TH_ESTATE;
}

static int state_open(struct th_state **stp, const char *dir, size_t map_size, bool readonly,
		      char *errstr, size_t errstr_size)
{
	struct th_state *st = calloc(1, sizeof(*st));
	MDB_txn *txn = NULL;
	MDB_stat mst;
	MDB_val v;
	char boot[64];
	int rc, err;

	*stp = NULL;
	if (!st)
		return TH_ENOMEM;
	st->offset = TH_STATE_NO_OFFSET;
	st->readonly = readonly;
	if (!readonly && mkdir(dir, 0750) != 0 && errno != EEXIST) {
		th_errstr(errstr, errstr_size, "state dir %s: %s", dir, strerror(errno));
		err = TH_ESTATE;
		goto fail;
	}
	if ((err = check_existing(dir, readonly, errstr, errstr_size)))
		goto fail;
	if (!readonly) {
		if (!(st->marker = path_join(dir, TH_STATE_OPEN_MARKER))) {
			err = TH_ENOMEM;
			goto fail;
		}
		boot_id(boot);
		if ((rc = marker_write(st->marker, dir, boot))) {
			th_errstr(errstr, errstr_size, "state %s: writing %s: %s", dir,
				  TH_STATE_OPEN_MARKER, th_strerror(rc));
			free(st->marker);
			st->marker = NULL;
			err = rc == -ENOSPC || rc == -EDQUOT ? TH_ENOSPC : TH_ESTATE;
			goto fail;
		}
	}
	if ((err = open_env(st, dir, map_size ? map_size : MAP_SIZE_DEFAULT, readonly, errstr,
			    errstr_size)))
		goto fail;
	err = TH_ESTATE;
	if ((rc = mdb_txn_begin(st->env, NULL, readonly ? MDB_RDONLY : 0, &txn)) ||
	    (rc = mdb_dbi_open(txn, NULL, 0, &st->dbi)) || (rc = mdb_stat(txn, st->dbi, &mst))) {
		th_errstr(errstr, errstr_size, "LMDB %s: %s", dir, mdb_strerror(rc));
		goto fail;
	}
	/* Format version: written into an empty store, checked in any other.
	 * A store with records but no version is another program's. */
	MDB_val k = {sizeof(META_VERSION) - 1, (void *)META_VERSION};
	rc = mdb_get(txn, st->dbi, &k, &v);
	if (rc == MDB_NOTFOUND && mst.ms_entries == 0) {
		if (!readonly) {
			unsigned char ver = TH_STATE_FORMAT_VERSION;
			MDB_val nv = {1, &ver};
			rc = mdb_put(txn, st->dbi, &k, &nv, 0);
		} else {
			rc = 0;
		}
	} else if (rc == MDB_NOTFOUND) {
		th_errstr(errstr, errstr_size,
			  "state %s cannot be trusted: an LMDB store without trailhound's format "
			  "version (another program's?); rebuild it",
			  dir);
		err = TH_EUNTRUSTED;
		goto fail;
	} else if (rc == 0 && (v.mv_size != 1 ||
			       *(unsigned char *)v.mv_data != TH_STATE_FORMAT_VERSION)) {
		th_errstr(errstr, errstr_size,
			  "state %s cannot be trusted: it has format version %u, this build reads "
			  "%u; wipe it or restore it from the changelog",
			  dir, v.mv_size ? *(unsigned char *)v.mv_data : 0, TH_STATE_FORMAT_VERSION);
		err = TH_EUNTRUSTED;
		goto fail;
	}
	if (rc || (rc = readonly ? (mdb_txn_abort(txn), 0) : mdb_txn_commit(txn))) {
		txn = NULL;
		th_errstr(errstr, errstr_size, "LMDB %s: %s", dir, mdb_strerror(rc));
		if (rc == ENOSPC || rc == EDQUOT)
			err = TH_ENOSPC;
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
	/* a store that failed to open was not used: no marker left behind */
	if (st->marker && st->env) {
		mdb_env_close(st->env);
		st->env = NULL;
	}
	if (st->marker)
		unlink(st->marker);
	th_state_close(st);
	return err;
}

int th_state_open(struct th_state **stp, const char *dir, size_t map_size, char *errstr,
		  size_t errstr_size)
{
	return state_open(stp, dir, map_size, false, errstr, errstr_size);
}

int th_state_open_readonly(struct th_state **stp, const char *dir, char *errstr,
			   size_t errstr_size)
{
	return state_open(stp, dir, 0, true, errstr, errstr_size);
}

void th_state_close(struct th_state *st)
{
	if (!st)
		return;
	cache_clear(st, false);
	rtxn_end(st);
	if (st->env) {
		int rc = st->readonly ? 0 : mdb_env_sync(st->env, 1);
		mdb_env_close(st->env);
		/* Synced: a system crash from here on cannot tear it. */
		if (!rc && st->marker) {
			unlink(st->marker);
			char *slash = strrchr(st->marker, '/');
			if (slash) {
				*slash = '\0';
				fsync_dir(st->marker);
			}
		} else if (rc) {
			th_log_err("state", "sync on close: %s", mdb_strerror(rc));
		}
	}
	free(st->marker);
	free(st);
}

int th_state_remove_files(const char *dir)
{
	static const char *const names[] = {"data.mdb", "lock.mdb", TH_STATE_OPEN_MARKER};
	int err = 0;
	for (size_t i = 0; i < TH_ARRAY_SIZE(names); i++) {
		char *p = path_join(dir, names[i]);
		if (!p)
			return TH_ENOMEM;
		if (unlink(p) != 0 && errno != ENOENT && !err)
			err = -errno;
		free(p);
	}
	fsync_dir(dir);
	return err;
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
	struct entry *e;
	int rc, ret = 0;

	uint32_t gen = ++st->scan_gen;
	if ((rc = rtxn_get(st, &txn)))
		return rc;
	if ((rc = mdb_cursor_open(txn, st->dbi, &cur)))
		return mdb_fail("mdb_cursor_open", rc);
	/* LMDB refuses an empty key: an empty prefix starts at the first key */
	for (rc = mdb_cursor_get(cur, &k, &v, plen ? MDB_SET_RANGE : MDB_FIRST); rc == 0;
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

/* One attempt at writing every dirty key and the offset. Returns 0 or an
 * LMDB/errno code; nothing is written unless it returns 0. */
static int commit_once(struct th_state *st, int64_t input_offset)
{
	MDB_txn *txn;
	struct entry *e;
	int rc;

	if ((rc = mdb_txn_begin(st->env, NULL, 0, &txn)))
		return rc;
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
	/* commit frees the txn, failed or not */
	return mdb_txn_commit(txn);
fail:
	mdb_txn_abort(txn);
	return rc;
}

/* Double the map. Every transaction of this process must be over (LMDB's
 * rule for mdb_env_set_mapsize), including the long-lived read txn. */
static int grow_map(struct th_state *st)
{
	MDB_envinfo info;
	int rc;
	rtxn_end(st);
	if ((rc = mdb_env_info(st->env, &info)))
		return rc;
	if (info.me_mapsize >= MAP_SIZE_MAX)
		return MDB_MAP_FULL;
	size_t nsize = info.me_mapsize * 2;
	if (nsize > MAP_SIZE_MAX)
		nsize = MAP_SIZE_MAX;
	if ((rc = mdb_env_set_mapsize(st->env, nsize)))
		return rc;
	th_log_info("state", "map full at %zu bytes: grown to %zu", info.me_mapsize, nsize);
	return 0;
}

/* liblmdb reports a short write as EIO ("short write, filesystem full?"):
 * a write that found the disk full after its first pages. Whether that is
 * what happened is asked of the disk: can one more page be allocated at the
 * end of the file? (The probe is given back at once.) */
static bool disk_full(struct th_state *st)
{
	int fd, err;
	struct stat sb;
	if (mdb_env_get_fd(st->env, &fd) || fstat(fd, &sb) != 0)
		return false;
	err = posix_fallocate(fd, sb.st_size, 4096);
	if (ftruncate(fd, sb.st_size) != 0)
		th_log_warn("state", "giving back the space probe: %s", strerror(errno));
	return err == ENOSPC || err == EDQUOT;
}

/* Run one write transaction (@p once), growing a full map and trying again;
 * a short write that found the disk full becomes ENOSPC. Returns 0 or an
 * LMDB/errno code, with nothing written unless 0. */
static int write_retrying(struct th_state *st, int (*once)(struct th_state *, const void *),
			  const void *arg)
{
	int rc;
	rtxn_release(st);
	while ((rc = once(st, arg)) == MDB_MAP_FULL) {
		int grc = grow_map(st);
		if (grc) {
			th_log_err("state", "map full and cannot grow: %s", mdb_strerror(grc));
			return grc;
		}
	}
	if (rc == EIO && disk_full(st))
		rc = ENOSPC;
	return rc;
}

static int commit_dirty(struct th_state *st, const void *input_offset)
{
	return commit_once(st, *(const int64_t *)input_offset);
}

int th_state_commit(struct th_state *st, int64_t input_offset)
{
	struct entry *e;
	int rc;

	if (st->readonly)
		return TH_EINVAL;
	rc = write_retrying(st, commit_dirty, &input_offset);
	if (rc == MDB_MAP_FULL)
		return TH_ESTATE;
	if (rc == ENOSPC || rc == EDQUOT) {
		/* Nothing was written (the meta page was not reached) and the
		 * dirty list is untouched: a later call commits it all. */
		th_log_err("state", "commit: %s: keeping %zu changes for a retry",
			   mdb_strerror(rc), st->ndirty);
		return TH_ENOSPC;
	}
	if (rc)
		return mdb_fail("commit", rc);
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
}

struct append_batch {
	const struct th_state_rec *recs;
	size_t n;
};

/* MDB_APPEND: each key goes after the tree's last one, into its last leaf,
 * and a full leaf is left full (the split puts the new key alone on the new
 * page): every page is written once, filled, instead of once per random put. */
static int append_once(struct th_state *st, const void *arg)
{
	const struct append_batch *b = arg;
	MDB_txn *txn;
	MDB_cursor *cur;
	int rc;

	if ((rc = mdb_txn_begin(st->env, NULL, 0, &txn)))
		return rc;
	if ((rc = mdb_cursor_open(txn, st->dbi, &cur)))
		goto fail;
	for (size_t i = 0; i < b->n; i++) {
		MDB_val k = {b->recs[i].klen, (void *)b->recs[i].key};
		MDB_val v = {b->recs[i].vlen, (void *)b->recs[i].val};
		if ((rc = mdb_cursor_put(cur, &k, &v, MDB_APPEND)))
			goto fail; /* the abort frees the cursor */
	}
	mdb_cursor_close(cur);
	return mdb_txn_commit(txn);
fail:
	mdb_txn_abort(txn);
	return rc;
}

int th_state_append_sorted(struct th_state *st, const struct th_state_rec *recs, size_t n)
{
	struct append_batch b = {recs, n};
	int rc;
	if (st->readonly || st->ndirty)
		return TH_EINVAL;
	rc = write_retrying(st, append_once, &b);
	if (rc == MDB_MAP_FULL)
		return TH_ESTATE;
	if (rc == ENOSPC || rc == EDQUOT) {
		th_log_err("state", "bulk load: %s", mdb_strerror(rc));
		return TH_ENOSPC;
	}
	if (rc == MDB_KEYEXIST) {
		/* not after the store's last key: a caller's bug, not the disk's */
		th_log_err("state", "bulk load: keys not in ascending order after the store's");
		return TH_EINVAL;
	}
	if (rc)
		return mdb_fail("bulk load", rc);
	st->stats.commits++;
	st->stats.db_puts += n;
	return 0;
}

bool th_state_has_records(struct th_state *st)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	bool any = true; /* when LMDB cannot tell, assume the worst */
	if (rtxn_get(st, &txn) || mdb_cursor_open(txn, st->dbi, &cur))
		return any;
	/* the last key: metadata keys start with 0 and sort first */
	if (mdb_cursor_get(cur, &k, &v, MDB_LAST) == MDB_NOTFOUND)
		any = false;
	else
		any = k.mv_size > 0 && ((const unsigned char *)k.mv_data)[0] != 0;
	mdb_cursor_close(cur);
	return any || st->ndirty > 0;
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

	if (st->readonly)
		return TH_EINVAL;
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

bool th_state_key_is_data(const void *key, size_t klen)
{
	return klen > 0 && klen <= TH_STATE_KEY_MAX && ((const char *)key)[0] != '\0';
}

size_t th_state_changes(const struct th_state *st)
{
	return st->ndirty;
}

void th_state_get_stats(const struct th_state *st, struct th_state_stats *out)
{
	*out = st->stats;
	out->cached = st->ncached;
	out->dirty = st->ndirty;
}

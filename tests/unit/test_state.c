/*
 * Unit tests of the state store: the write-back cache in front of LMDB,
 * commits with the input offset, rollback, prefix scans over committed and
 * uncommitted keys, wipe, the bulk load of a restore and the format version;
 * and what the machine can do to a store: keys of any length, corrupt or
 * foreign files, a system crash while open, a full map, a full disk (on a
 * small tmpfs mounted by the test), a read-only directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <lmdb.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "trailhound/records.h"
#include "trailhound/state.h"

#define E(expr) assert_int_equal((expr), 0)

struct fixture {
	char dir[64];
	struct th_state *st;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256];
	snprintf(f->dir, sizeof(f->dir), "/tmp/th-test-state-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	E(th_state_open(&f->st, f->dir, 64 << 20, err, sizeof(err)));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char path[128];
	th_state_close(f->st);
	th_state_remove_files(f->dir);
	snprintf(path, sizeof(path), "%s/data.mdb.orig", f->dir);
	unlink(path);
	assert_int_equal(rmdir(f->dir), 0); /* nothing else was left behind */
	free(f);
	return 0;
}

static void reopen(struct fixture *f)
{
	char err[256];
	th_state_close(f->st);
	E(th_state_open(&f->st, f->dir, 64 << 20, err, sizeof(err)));
}

static void check_value(struct th_state *st, const char *key, const char *want)
{
	const void *v;
	size_t n;
	int rc = th_state_get(st, key, strlen(key), &v, &n);
	if (!want) {
		assert_int_equal(rc, TH_ENOTFOUND);
		return;
	}
	assert_int_equal(rc, 0);
	assert_int_equal(n, strlen(want));
	assert_memory_equal(v, want, n);
}

static void test_put_get_commit_reopen(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(th_state_offset(f->st), TH_STATE_NO_OFFSET);
	E(th_state_put(f->st, "k1", 2, "v1", 2));
	check_value(f->st, "k1", "v1"); /* visible before commit */
	E(th_state_commit(f->st, 42));
	assert_int_equal(th_state_offset(f->st), 42);
	reopen(f);
	check_value(f->st, "k1", "v1");
	assert_int_equal(th_state_offset(f->st), 42);
	/* NO_OFFSET keeps the stored offset */
	E(th_state_put(f->st, "k2", 2, "v2", 2));
	E(th_state_commit(f->st, TH_STATE_NO_OFFSET));
	reopen(f);
	assert_int_equal(th_state_offset(f->st), 42);
	check_value(f->st, "k2", "v2");
}

static void test_coalesced_writes(void **state)
{
	struct fixture *f = *state;
	struct th_state_stats s;
	char v[16];
	for (int i = 0; i < 1000; i++) {
		int n = snprintf(v, sizeof(v), "%d", i);
		E(th_state_put(f->st, "hot", 3, v, (size_t)n));
	}
	E(th_state_put(f->st, "cold", 4, "x", 1));
	E(th_state_commit(f->st, 1));
	th_state_get_stats(f->st, &s);
	/* one LMDB put per distinct key per batch */
	assert_int_equal(s.db_puts, 2);
	check_value(f->st, "hot", "999");
}

static void test_rollback(void **state)
{
	struct fixture *f = *state;
	E(th_state_put(f->st, "a", 1, "committed", 9));
	E(th_state_commit(f->st, 5));
	E(th_state_put(f->st, "a", 1, "changed", 7));
	E(th_state_put(f->st, "b", 1, "new", 3));
	E(th_state_del(f->st, "a", 1));
	check_value(f->st, "a", NULL);
	th_state_rollback(f->st);
	check_value(f->st, "a", "committed");
	check_value(f->st, "b", NULL);
	assert_int_equal(th_state_offset(f->st), 5);
}

struct seen {
	int n;
	char keys[16][16];
};

static int collect(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct seen *s = ctx;
	(void)val;
	(void)vlen;
	memcpy(s->keys[s->n], key, klen);
	s->keys[s->n][klen] = '\0';
	s->n++;
	return 0;
}

static int has(const struct seen *s, const char *k)
{
	for (int i = 0; i < s->n; i++)
		if (strcmp(s->keys[i], k) == 0)
			return 1;
	return 0;
}

static void test_scan_merges_cache_and_lmdb(void **state)
{
	struct fixture *f = *state;
	struct seen s = {0};
	E(th_state_put(f->st, "p|1", 3, "a", 1));
	E(th_state_put(f->st, "p|2", 3, "b", 1));
	E(th_state_put(f->st, "q|1", 3, "c", 1));
	E(th_state_commit(f->st, 1));
	E(th_state_put(f->st, "p|3", 3, "d", 1)); /* uncommitted new */
	E(th_state_del(f->st, "p|1", 3));        /* uncommitted delete */
	E(th_state_put(f->st, "p|2", 3, "B", 1)); /* uncommitted change */
	E(th_state_scan(f->st, "p|", 2, collect, &s));
	assert_int_equal(s.n, 2);
	assert_true(has(&s, "p|2"));
	assert_true(has(&s, "p|3"));
	assert_false(has(&s, "p|1"));
	assert_false(has(&s, "q|1"));
}

/* Scans against a model of the store: random puts, deletes, reads (clean
 * and negative cache entries) and commits, each scan's keys and values
 * compared with the model's. Keys share long prefixes and differ in length,
 * so the cache's dirty entries and LMDB's records interleave in key order. */
#define MODEL_KEYS 300
struct model {
	char val[MODEL_KEYS][16]; /* "" = absent */
	int seen[MODEL_KEYS];
	int bad;
};

static void model_key(char *out, int i)
{
	/* p|7, p|70, p|700 ...: prefixes of one another */
	snprintf(out, 16, "p|%d", i);
}

static int model_index(const void *key, size_t klen)
{
	char k[32];
	if (klen >= sizeof(k) || klen < 3)
		return -1;
	memcpy(k, key, klen);
	k[klen] = '\0';
	return atoi(k + 2);
}

static int model_check_cb(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct model *m = ctx;
	int i = model_index(key, klen);
	if (i < 0 || i >= MODEL_KEYS || m->seen[i]++ || vlen != strlen(m->val[i]) ||
	    memcmp(val, m->val[i], vlen) != 0)
		m->bad++;
	return 0;
}

static void test_scan_matches_a_model(void **state)
{
	struct fixture *f = *state;
	static struct model m;
	char k[16];
	const void *v;
	size_t n;
	srand(21);
	memset(&m, 0, sizeof(m));
	for (int round = 0; round < 400; round++) {
		int ops = rand() % 40;
		for (int o = 0; o < ops; o++) {
			int i = rand() % MODEL_KEYS, what = rand() % 10;
			model_key(k, i);
			if (what < 5) {
				snprintf(m.val[i], sizeof(m.val[i]), "v%d", rand() % 1000);
				E(th_state_put(f->st, k, strlen(k), m.val[i], strlen(m.val[i])));
			} else if (what < 7) {
				m.val[i][0] = '\0';
				E(th_state_del(f->st, k, strlen(k)));
			} else {
				int rc = th_state_get(f->st, k, strlen(k), &v, &n);
				assert_int_equal(rc, m.val[i][0] ? 0 : TH_ENOTFOUND);
			}
		}
		if (rand() % 3 == 0)
			E(th_state_commit(f->st, round));
		memset(m.seen, 0, sizeof(m.seen));
		m.bad = 0;
		E(th_state_scan(f->st, "p|", 2, model_check_cb, &m));
		assert_int_equal(m.bad, 0);
		for (int i = 0; i < MODEL_KEYS; i++)
			if (m.seen[i] != (m.val[i][0] != 0))
				fail_msg("round %d: key %d seen %d times, in the model: %s", round, i,
					 m.seen[i], m.val[i][0] ? "yes" : "no");
	}
}

/* A callback may change the store while it scans: deleting the key it was
 * given, and (rarer) writing keys the scan has not reached yet, which the
 * scan must then see as they are now. */
struct mutating {
	struct th_state *st;
	char visited[MODEL_KEYS][16];
	int n, bad;
};

static int mutating_cb(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct mutating *m = ctx;
	int i = model_index(key, klen);
	if (i < 0 || i >= MODEL_KEYS) {
		m->bad++;
		return 0;
	}
	if (m->visited[i][0])
		m->bad++; /* twice */
	snprintf(m->visited[i], sizeof(m->visited[i]), "%.*s", (int)vlen, (const char *)val);
	m->n++;
	if (i == 10) {
		/* ahead of the scan: one committed key deleted, one changed, one new */
		if (th_state_del(m->st, "p|150", 5) || th_state_put(m->st, "p|160", 5, "v2", 2) ||
		    th_state_put(m->st, "p|170", 5, "new", 3))
			m->bad++;
	}
	if (i % 10 == 3 && th_state_del(m->st, key, klen))
		m->bad++;
	return 0;
}

static void test_scan_sees_the_callbacks_writes(void **state)
{
	struct fixture *f = *state;
	static struct mutating m;
	char k[16];
	const void *v;
	size_t n;
	memset(&m, 0, sizeof(m));
	m.st = f->st;
	for (int i = 100; i < 200; i++) {
		model_key(k, i);
		if (i != 170)
			E(th_state_put(f->st, k, strlen(k), "v0", 2));
	}
	model_key(k, 10);
	E(th_state_put(f->st, k, strlen(k), "v0", 2));
	E(th_state_commit(f->st, 1));
	E(th_state_put(f->st, "p|105", 5, "v1", 2)); /* dirty change */
	E(th_state_del(f->st, "p|106", 5));          /* dirty delete */
	E(th_state_put(f->st, "p|11", 4, "c", 1));   /* only in the cache */
	assert_int_equal(th_state_get(f->st, "p|107", 5, &v, &n), 0);            /* clean */
	assert_int_equal(th_state_get(f->st, "p|99", 4, &v, &n), TH_ENOTFOUND); /* negative */
	E(th_state_scan(f->st, "p|", 2, mutating_cb, &m));
	assert_int_equal(m.bad, 0);
	assert_string_equal(m.visited[105], "v1");
	assert_string_equal(m.visited[106], "");
	assert_string_equal(m.visited[107], "v0");
	assert_string_equal(m.visited[11], "c");
	assert_string_equal(m.visited[150], "");
	assert_string_equal(m.visited[160], "v2");
	assert_string_equal(m.visited[170], "new");
	/* 10, 11, 100..199 less 106 and 150 */
	assert_int_equal(m.n, 2 + 100 - 2);
	/* the callback's own deletes took effect */
	assert_int_equal(th_state_get(f->st, "p|113", 5, &v, &n), TH_ENOTFOUND);
	assert_int_equal(th_state_get(f->st, "p|114", 5, &v, &n), 0);
}

static int count_dirty(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	int *n = ctx;
	(void)key;
	(void)klen;
	(void)vlen;
	*n += val ? 1 : 100;
	return 0;
}

static void test_dirty_foreach(void **state)
{
	struct fixture *f = *state;
	int n = 0;
	E(th_state_put(f->st, "x", 1, "1", 1));
	E(th_state_put(f->st, "y", 1, "2", 1));
	E(th_state_del(f->st, "z", 1));
	E(th_state_dirty_foreach(f->st, count_dirty, &n));
	assert_int_equal(n, 2 + 100); /* two puts and one tombstone */
	E(th_state_commit(f->st, 3));
	n = 0;
	E(th_state_dirty_foreach(f->st, count_dirty, &n));
	assert_int_equal(n, 0);
}

static void test_wipe(void **state)
{
	struct fixture *f = *state;
	E(th_state_put(f->st, "k", 1, "v", 1));
	E(th_state_commit(f->st, 10));
	E(th_state_wipe(f->st));
	assert_int_equal(th_state_offset(f->st), TH_STATE_NO_OFFSET);
	check_value(f->st, "k", NULL);
	reopen(f);
	check_value(f->st, "k", NULL);
	assert_int_equal(th_state_offset(f->st), TH_STATE_NO_OFFSET);
}

static void test_many_keys_and_clean_cache_eviction(void **state)
{
	struct fixture *f = *state;
	char k[32], v[32];
	for (int i = 0; i < 300000; i++) {
		int kl = snprintf(k, sizeof(k), "key-%d", i);
		int vl = snprintf(v, sizeof(v), "value-%d", i);
		E(th_state_put(f->st, k, (size_t)kl, v, (size_t)vl));
		if (i % 50000 == 49999)
			E(th_state_commit(f->st, i));
	}
	E(th_state_commit(f->st, 300000));
	for (int i = 0; i < 300000; i += 7919) {
		snprintf(k, sizeof(k), "key-%d", i);
		snprintf(v, sizeof(v), "value-%d", i);
		check_value(f->st, k, v);
	}
}

static void test_format_version_is_checked(void **state)
{
	struct fixture *f = *state;
	char err[256];
	struct th_state *other = NULL;
	/* write another version straight into the metadata key */
	E(th_state_put(f->st, "\0version", 8, "\x07", 1));
	E(th_state_commit(f->st, 1));
	th_state_close(f->st);
	f->st = NULL;
	assert_int_equal(th_state_open(&other, f->dir, 64 << 20, err, sizeof(err)),
			 TH_EUNTRUSTED);
	assert_null(other);
	assert_non_null(strstr(err, "format version 7"));
	/* the caller's way out: remove the files, open a new store */
	E(th_state_remove_files(f->dir));
	E(th_state_open(&f->st, f->dir, 64 << 20, err, sizeof(err)));
	const void *v;
	size_t vn;
	E(th_state_get(f->st, "\0version", 8, &v, &vn));
	assert_int_equal(vn, 1);
	assert_int_equal(*(const unsigned char *)v, TH_STATE_FORMAT_VERSION);
}

/* ---- keys of any length (issue 8: MDB_BAD_VALSIZE stopped scan) ---- */

static char *long_arn(size_t len, char fill)
{
	char *arn = malloc(len + 1);
	int n = snprintf(arn, len + 1, "arn:aws:iam::123456789012:role/");
	memset(arn + n, fill, len - (size_t)n);
	arn[len] = '\0';
	return arn;
}

static void test_long_keys_commit(void **state)
{
	struct fixture *f = *state;
	char *arn600 = long_arn(600, 'p'), *arn2048 = long_arn(2048, 'q');
	char k[6][TH_KEY_SIZE];
	size_t kl[6];
	/* every key type that carries a role ARN, at both lengths */
	kl[0] = th_key(k[0], sizeof(k[0]), 'r', 1, arn600);
	kl[1] = th_key(k[1], sizeof(k[1]), 'q', 3, arn600, "123456789012", "ASIAEXAMPLE");
	kl[2] = th_key(k[2], sizeof(k[2]), 'd', 5, "5", "123456789012", arn600, arn600, "16509");
	kl[3] = th_key(k[3], sizeof(k[3]), 'r', 1, arn2048);
	kl[4] = th_key(k[4], sizeof(k[4]), 'i', 2, arn2048, arn2048);
	kl[5] = th_key(k[5], sizeof(k[5]), 'd', 5, arn2048, arn2048, arn2048, arn2048, arn2048);
	for (int i = 0; i < 6; i++) {
		assert_true(kl[i] > 0 && kl[i] <= TH_KEY_MAX);
		E(th_state_put(f->st, k[i], kl[i], "v", 1));
	}
	E(th_state_commit(f->st, 7));
	reopen(f);
	for (int i = 0; i < 6; i++) {
		const void *v;
		size_t n;
		E(th_state_get(f->st, k[i], kl[i], &v, &n));
	}
	free(arn600);
	free(arn2048);
}

/* ---- trust ---- */

static void path_in(char *out, size_t n, const struct fixture *f, const char *name)
{
	snprintf(out, n, "%s/%s", f->dir, name);
}

static void fill_store(struct fixture *f, int nkeys)
{
	char k[32], v[64];
	for (int i = 0; i < nkeys; i++) {
		snprintf(k, sizeof(k), "key-%06d", i);
		int n = snprintf(v, sizeof(v), "value-%06d-padding-padding", i);
		E(th_state_put(f->st, k, strlen(k), v, (size_t)n));
	}
	E(th_state_commit(f->st, nkeys));
}

static void check_store(struct th_state *st, int nkeys)
{
	char k[32], v[64];
	for (int i = 0; i < nkeys; i++) {
		snprintf(k, sizeof(k), "key-%06d", i);
		snprintf(v, sizeof(v), "value-%06d-padding-padding", i);
		check_value(st, k, v);
	}
}

static void test_clean_close_is_trusted(void **state)
{
	struct fixture *f = *state;
	char path[128];
	struct stat sb;
	fill_store(f, 500);
	path_in(path, sizeof(path), f, TH_STATE_OPEN_MARKER);
	assert_int_equal(stat(path, &sb), 0); /* open: marked */
	th_state_close(f->st);
	f->st = NULL;
	assert_int_not_equal(stat(path, &sb), 0); /* closed cleanly: unmarked */
	reopen(f);
	check_store(f->st, 500);
	assert_int_equal(th_state_offset(f->st), 500);
}

/* In a forked child: crash for real, not into cmocka's handlers (which
 * would go on running the rest of the tests in the child). */
static void default_signals(void)
{
	static const int sigs[] = {SIGSEGV, SIGBUS, SIGABRT, SIGILL, SIGFPE};
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		signal(sigs[i], SIG_DFL);
}

static void test_process_crash_is_trusted(void **state)
{
	struct fixture *f = *state;
	char err[256];
	int status;
	th_state_close(f->st);
	f->st = NULL;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct th_state *st;
		default_signals();
		if (th_state_open(&st, f->dir, 64 << 20, err, sizeof(err)))
			_exit(2);
		char k[32], v[64];
		for (int i = 0; i < 300; i++) {
			snprintf(k, sizeof(k), "key-%06d", i);
			int n = snprintf(v, sizeof(v), "value-%06d-padding-padding", i);
			th_state_put(st, k, strlen(k), v, (size_t)n);
		}
		if (th_state_commit(st, 300))
			_exit(3);
		th_state_put(st, "uncommitted", 11, "x", 1);
		abort(); /* no close: the marker stays, from this boot */
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	/* the same boot: the kernel still has every committed page */
	E(th_state_open(&f->st, f->dir, 64 << 20, err, sizeof(err)));
	check_store(f->st, 300);
	check_value(f->st, "uncommitted", NULL);
	assert_int_equal(th_state_offset(f->st), 300);
}

/* Pages at the end of data.mdb that no meta's tree can reach: listed in the
 * free list by a transaction older than the newest one. Sets *last_pg to
 * the newest meta's last page. */
static uint64_t trailing_free_pages(const char *dir, const char *data, uint64_t *last_pg)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_envinfo info;
	MDB_stat mst;
	MDB_val k, v;
	struct stat sb;
	E(mdb_env_create(&env));
	E(mdb_env_open(env, dir, MDB_RDONLY | MDB_NOLOCK, 0));
	E(mdb_env_info(env, &info));
	E(mdb_env_stat(env, &mst));
	E(stat(data, &sb));
	uint64_t pages = (uint64_t)sb.st_size / mst.ms_psize;
	unsigned char *free_pg = calloc(info.me_last_pgno + 1, 1);
	assert_non_null(free_pg);
	E(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn));
	E(mdb_cursor_open(txn, 0, &cur));
	while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0) {
		size_t id;
		memcpy(&id, k.mv_data, sizeof(id));
		const size_t *ids = v.mv_data; /* [count, pgno...] */
		for (size_t i = 1; id < info.me_last_txnid && i <= ids[0]; i++)
			free_pg[ids[i]] = 1;
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	mdb_env_close(env);
	uint64_t n = 0;
	while (n < pages && pages - 1 - n <= info.me_last_pgno && free_pg[pages - 1 - n])
		n++;
	free(free_pg);
	*last_pg = info.me_last_pgno;
	return n;
}

/* LMDB's file may end before the page its meta names last: pages a
 * transaction allocated at the end and freed again before committing are
 * counted and listed as free but never written (seen in kafka.crash after a
 * restore). Such a store is sound and must be trusted; one whose tree
 * reaches past the end of its file must not. The store here is cut after
 * its last reachable page, which is the same file. */
static void test_store_ending_before_its_last_page(void **state)
{
	struct fixture *f = *state;
	char err[256], path[128], k[32];
	static char big[1500];
	uint64_t last_pg;
	struct stat sb;
	memset(big, 'x', sizeof(big));
	for (int i = 0; i < 400; i++) { /* ~200 pages */
		snprintf(k, sizeof(k), "big-%04d", i);
		E(th_state_put(f->st, k, strlen(k), big, sizeof(big)));
	}
	E(th_state_commit(f->st, 1));
	E(th_state_wipe(f->st)); /* frees them all */
	/* a new tree at the end of the file (the wipe's pages are not reusable
	 * before the next transaction), then the same keys again, on reused
	 * pages below, freeing the end; a last commit leaves that free list
	 * older than the newest transaction, so no meta's tree reaches it */
	fill_store(f, 300);
	fill_store(f, 300);
	E(th_state_put(f->st, "other", 5, "x", 1));
	E(th_state_commit(f->st, 300));
	th_state_close(f->st);
	f->st = NULL;
	path_in(path, sizeof(path), f, "data.mdb");
	uint64_t cut = trailing_free_pages(f->dir, path, &last_pg);
	assert_true(cut >= 10);
	E(stat(path, &sb));
	E(truncate(path, sb.st_size - (off_t)(cut * 4096)));
	E(stat(path, &sb));
	/* the case itself: the file ends before the meta's last page */
	assert_true((uint64_t)sb.st_size < (last_pg + 1) * 4096);
	E(th_state_open(&f->st, f->dir, 64 << 20, err, sizeof(err)));
	check_store(f->st, 300);
	assert_int_equal(th_state_offset(f->st), 300);
	/* ... and goes on working */
	fill_store(f, 400);
	reopen(f);
	check_store(f->st, 400);
	th_state_close(f->st);
	f->st = NULL;
	/* a twin: the newest meta names 8 more pages, past the end of the file
	 * and not free */
	{
		unsigned char meta[2][4096];
		uint64_t txnid[2], lp;
		FILE *fp = fopen(path, "r+b");
		assert_non_null(fp);
		assert_int_equal(fread(meta, 4096, 2, fp), 2);
		for (int i = 0; i < 2; i++)
			memcpy(&txnid[i], meta[i] + 16 + 128, 8);
		int cur = txnid[1] > txnid[0];
		memcpy(&lp, meta[cur] + 16 + 120, 8);
		lp += 8;
		E(fseek(fp, (long)cur * 4096 + 16 + 120, SEEK_SET));
		assert_int_equal(fwrite(&lp, 8, 1, fp), 1);
		E(fclose(fp));
	}
	assert_int_equal(th_state_open(&f->st, f->dir, 64 << 20, err, sizeof(err)), TH_EUNTRUSTED);
	assert_null(f->st);
	/* another: a file cut inside its tree's pages */
	E(truncate(path, 3 * 4096));
	assert_int_equal(th_state_open(&f->st, f->dir, 64 << 20, err, sizeof(err)), TH_EUNTRUSTED);
	assert_null(f->st);
	E(th_state_remove_files(f->dir));
	E(th_state_open(&f->st, f->dir, 64 << 20, err, sizeof(err)));
}

static void test_system_crash_is_untrusted(void **state)
{
	struct fixture *f = *state;
	char path[128], err[256];
	struct th_state *st = NULL;
	fill_store(f, 100);
	th_state_close(f->st);
	f->st = NULL;
	/* what a machine that went down with the store open leaves behind */
	path_in(path, sizeof(path), f, TH_STATE_OPEN_MARKER);
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fputs("00000000-0000-4000-8000-000000000000\n", fp);
	fclose(fp);
	assert_int_equal(th_state_open(&st, f->dir, 64 << 20, err, sizeof(err)), TH_EUNTRUSTED);
	assert_null(st);
	assert_non_null(strstr(err, "machine went down"));
	/* read-only opens judge it the same way */
	assert_int_equal(th_state_open_readonly(&st, f->dir, err, sizeof(err)), TH_EUNTRUSTED);
	/* rebuilt: a new, empty, trusted store */
	E(th_state_remove_files(f->dir));
	E(th_state_open(&f->st, f->dir, 64 << 20, err, sizeof(err)));
	check_value(f->st, "key-000001", NULL);
}

static void write_file(const char *path, const void *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0640);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, p, n), (ssize_t)n);
	close(fd);
}

static void *read_file(const char *path, size_t *n)
{
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	char *p = malloc((size_t)sb.st_size);
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, p, (size_t)sb.st_size), sb.st_size);
	close(fd);
	*n = (size_t)sb.st_size;
	return p;
}

static void test_random_file_is_untrusted(void **state)
{
	struct fixture *f = *state;
	char path[128], err[256], junk[65536];
	struct th_state *st = NULL;
	th_state_close(f->st);
	f->st = NULL;
	th_state_remove_files(f->dir);
	srand(8);
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (char)rand();
	path_in(path, sizeof(path), f, "data.mdb");
	write_file(path, junk, sizeof(junk));
	assert_int_equal(th_state_open(&st, f->dir, 64 << 20, err, sizeof(err)), TH_EUNTRUSTED);
	assert_non_null(strstr(err, "not an LMDB file"));
	/* a text file, as a misconfigured path would give */
	write_file(path, "hello, world\n", 13);
	assert_int_equal(th_state_open(&st, f->dir, 64 << 20, err, sizeof(err)), TH_EUNTRUSTED);
	E(th_state_remove_files(f->dir));
	E(th_state_open(&f->st, f->dir, 64 << 20, err, sizeof(err)));
}

static void test_foreign_lmdb_is_untrusted(void **state)
{
	struct fixture *f = *state;
	char err[256];
	struct th_state *st = NULL;
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = {3, "foo"}, v = {3, "bar"};
	th_state_close(f->st);
	f->st = NULL;
	th_state_remove_files(f->dir);
	/* another program's LMDB store in the same directory */
	E(mdb_env_create(&env));
	E(mdb_env_open(env, f->dir, 0, 0640));
	E(mdb_txn_begin(env, NULL, 0, &txn));
	E(mdb_dbi_open(txn, NULL, 0, &dbi));
	E(mdb_put(txn, dbi, &k, &v, 0));
	E(mdb_txn_commit(txn));
	mdb_env_close(env);
	assert_int_equal(th_state_open(&st, f->dir, 64 << 20, err, sizeof(err)), TH_EUNTRUSTED);
	assert_non_null(strstr(err, "without trailhound's format version"));
	E(th_state_remove_files(f->dir));
	E(th_state_open(&f->st, f->dir, 64 << 20, err, sizeof(err)));
}

/* Flip bytes in every page header of a real store: th_state_open either
 * refuses it (TH_EUNTRUSTED, or TH_ESTATE) or opens a store that then reads
 * and commits without crashing. Before the verifying walk, several of these
 * crashed inside liblmdb. */
static int scan_count_cb(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	(void)key;
	(void)klen;
	(void)val;
	(void)vlen;
	(*(int *)ctx)++;
	return 0;
}

static void test_flipped_page_headers_never_crash(void **state)
{
	struct fixture *f = *state;
	char path[128], orig[128], err[256];
	static const unsigned char masks[] = {0x01, 0xff};
	/* the header's fields: page number, flags, lower and upper bounds
	 * (bytes 8-9 are padding) */
	static const size_t offs[] = {0, 1, 7, 10, 11, 12, 13, 14, 15};
	size_t n;
	int refused = 0, opened = 0;
	fill_store(f, 1000);
	th_state_close(f->st);
	f->st = NULL;
	path_in(path, sizeof(path), f, "data.mdb");
	path_in(orig, sizeof(orig), f, "data.mdb.orig");
	unsigned char *good = read_file(path, &n);
	write_file(orig, good, n);
	assert_true(n >= 8 * 4096); /* several pages: branch, leaves, free */
	for (size_t page = 0; page * 4096 < n; page++) {
		for (size_t o = 0; o < sizeof(offs) / sizeof(offs[0]); o++) {
			for (size_t m = 0; m < sizeof(masks); m++) {
				size_t off = offs[o];
				struct th_state *st = NULL;
				good[page * 4096 + off] ^= masks[m];
				write_file(path, good, n);
				good[page * 4096 + off] ^= masks[m];
				/* the test itself must survive a crash: run it in a child */
				pid_t pid = fork();
				assert_true(pid >= 0);
				if (pid == 0) {
					default_signals();
					int rc = th_state_open(&st, f->dir, 64 << 20, err,
							       sizeof(err));
					if (rc == TH_EUNTRUSTED || rc == TH_ESTATE)
						_exit(10);
					if (rc)
						_exit(3);
					int cnt = 0;
					th_state_scan(st, "", 0, scan_count_cb, &cnt);
					th_state_put(st, "after", 5, "x", 1);
					th_state_commit(st, 1);
					th_state_close(st);
					_exit(0);
				}
				int status;
				assert_int_equal(waitpid(pid, &status, 0), pid);
				if (!WIFEXITED(status))
					fail_msg("page %zu byte %zu mask %02x: crashed (signal %d)",
						 page, off, masks[m], WTERMSIG(status));
				assert_true(WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == 10);
				if (WEXITSTATUS(status) == 10)
					refused++;
				else
					opened++;
				th_state_remove_files(f->dir);
			}
		}
	}
	/* the flips that matter were caught (not everything was waved through) */
	assert_true(refused > 0);
	print_message("flipped headers: %d refused, %d opened safely\n", refused, opened);
	/* the original reopens trusted, with its data */
	write_file(path, good, n);
	E(th_state_open(&f->st, f->dir, 64 << 20, err, sizeof(err)));
	check_store(f->st, 1000);
	free(good);
}

/* The free list names the pages LMDB's next writes reuse. One naming a page
 * a tree still uses, or one page twice, would have a write go over a live
 * page (a corrupt tree, then reads of it out of bounds): such a store is not
 * trusted. The store's own free list is edited in place. */
static uint64_t meta_u64(const unsigned char *file, int meta, size_t off)
{
	uint64_t v;
	memcpy(&v, file + (size_t)meta * 4096 + 16 + off, sizeof(v));
	return v;
}

static void test_free_list_naming_a_used_page_is_untrusted(void **state)
{
	struct fixture *f = *state;
	char path[128], err[256];
	size_t n;
	fill_store(f, 1000);
	fill_store(f, 1000); /* the same keys again: their old pages go free */
	E(th_state_put(f->st, "other", 5, "x", 1));
	E(th_state_commit(f->st, 1000));
	th_state_close(f->st);
	f->st = NULL;
	path_in(path, sizeof(path), f, "data.mdb");
	unsigned char *good = read_file(path, &n);
	/* the newer meta page; its MDB_db records: free list at 24, main at 72,
	 * each with its root page at 40 */
	int cur = meta_u64(good, 1, 128) > meta_u64(good, 0, 128);
	uint64_t free_root = meta_u64(good, cur, 24 + 40), main_root = meta_u64(good, cur, 72 + 40);
	assert_true(free_root * 4096 < n && main_root * 4096 < n);
	unsigned char *fp = good + free_root * 4096;
	uint16_t flags, off, ksize, nflags;
	memcpy(&flags, fp + 10, 2);
	assert_int_equal(flags, 0x02); /* a leaf: the free list is small */
	memcpy(&off, fp + 16, 2);      /* its first record */
	unsigned char *node = fp + off;
	memcpy(&nflags, node + 4, 2);
	memcpy(&ksize, node + 6, 2);
	assert_int_equal(nflags, 0);
	unsigned char *ids = node + 8 + ksize; /* [count, pgno...] */
	uint64_t count, first;
	memcpy(&count, ids, 8);
	memcpy(&first, ids + 8, 8);
	assert_true(count >= 2);
	static const char *const what[] = {"the main tree's root", "the free list's own root",
					   "its first page again"};
	uint64_t bad[] = {main_root, free_root, first};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct th_state *st = NULL;
		uint64_t was;
		memcpy(&was, ids + 16, 8);
		memcpy(ids + 16, &bad[i], 8); /* the record's second page */
		write_file(path, good, n);
		memcpy(ids + 16, &was, 8);
		int rc = th_state_open(&st, f->dir, 64 << 20, err, sizeof(err));
		if (rc != TH_EUNTRUSTED)
			fail_msg("a free list naming %s: opened (%d)", what[i], rc);
		assert_null(st);
		assert_non_null(strstr(err, "corrupt"));
		E(th_state_remove_files(f->dir));
	}
	/* the twin: the store as LMDB left it is trusted, with its data */
	write_file(path, good, n);
	E(th_state_open(&f->st, f->dir, 64 << 20, err, sizeof(err)));
	check_store(f->st, 1000);
	check_value(f->st, "other", "x");
	free(good);
}

/* ---- a full map grows ---- */

static void test_map_full_grows(void **state)
{
	struct fixture *f = *state;
	char err[256];
	th_state_close(f->st);
	th_state_remove_files(f->dir);
	E(th_state_open(&f->st, f->dir, 64 << 10, err, sizeof(err)));
	fill_store(f, 5000); /* ~300 KB of records into a 64 KiB map */
	/* and again with a live read txn (gets before the commit) */
	check_store(f->st, 5000);
	char k[32];
	for (int i = 5000; i < 9000; i++) {
		snprintf(k, sizeof(k), "more-%06d", i);
		E(th_state_put(f->st, k, strlen(k), "0123456789012345678901234567890123456789", 40));
	}
	E(th_state_commit(f->st, 9000));
	th_state_close(f->st);
	E(th_state_open(&f->st, f->dir, 64 << 10, err, sizeof(err)));
	check_store(f->st, 5000);
	check_value(f->st, "more-008999", "0123456789012345678901234567890123456789");
	assert_int_equal(th_state_offset(f->st), 9000);
}

/* ---- the bulk load (a restore): any order in, key order into LMDB ---- */

#define LOAD_KEYS 400

/* The model a load is checked against: per key, its last record, kept by
 * the test itself (a deletion or a value made from a seed). */
struct load_model {
	int seed[LOAD_KEYS]; /* -1: never written or deleted last */
};

static size_t load_value(int seed, unsigned char *out)
{
	/* 0 to ~3 KB: some values go to LMDB's overflow pages */
	size_t n = (size_t)(seed * 7919) % 3100;
	for (size_t i = 0; i < n; i++)
		out[i] = (unsigned char)(seed + i * 31);
	return n;
}

static void load_key(int i, char *k, size_t ksize)
{
	/* keys of several lengths, one a prefix of another */
	snprintf(k, ksize, "k%d%s", i, i % 3 ? "" : "-long-tail");
}

/* Add @p nrec random records over LOAD_KEYS keys, ~1 in 6 a deletion. */
static void load_records(struct th_state_load *ld, struct load_model *m, int nrec, unsigned seed)
{
	static unsigned char val[4096];
	char k[64];
	for (int i = 0; i < LOAD_KEYS; i++)
		m->seed[i] = -1;
	srand(seed);
	for (int r = 0; r < nrec; r++) {
		int i = rand() % LOAD_KEYS;
		load_key(i, k, sizeof(k));
		if (rand() % 6 == 0) {
			E(th_state_load_add(ld, k, strlen(k), NULL, 0));
			m->seed[i] = -1;
		} else {
			int vs = rand() % 100000;
			size_t n = load_value(vs, val);
			E(th_state_load_add(ld, k, strlen(k), val, n));
			m->seed[i] = vs;
		}
	}
}

static int count_cb(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	(void)key, (void)klen, (void)val, (void)vlen;
	++*(int *)ctx;
	return 0;
}

static void check_model(struct th_state *st, const struct load_model *m)
{
	static unsigned char want[4096];
	char k[64];
	int live = 0, seen = 0;
	for (int i = 0; i < LOAD_KEYS; i++) {
		const void *v;
		size_t n;
		load_key(i, k, sizeof(k));
		int rc = th_state_get(st, k, strlen(k), &v, &n);
		if (m->seed[i] < 0) {
			assert_int_equal(rc, TH_ENOTFOUND);
			continue;
		}
		live++;
		assert_int_equal(rc, 0);
		size_t wn = load_value(m->seed[i], want);
		assert_int_equal(n, wn);
		assert_memory_equal(v, want, n);
	}
	E(th_state_scan(st, "k", 1, count_cb, &seen));
	assert_int_equal(seen, live); /* and no key the model lacks */
}

static int open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	assert_non_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static void load_and_check(struct fixture *f, size_t mem, bool spills)
{
	struct th_state_load *ld;
	struct th_state_load_stats ls;
	struct load_model m;
	int fds = open_fds();
	E(th_state_load_new(&ld, f->st, f->dir, mem));
	load_records(ld, &m, 6000, 7);
	/* however many runs: one temporary file (a worker restores up to 1024
	 * partitions at once, each store already holding two descriptors) */
	assert_true(open_fds() <= fds + 1);
	E(th_state_load_finish(ld));
	th_state_load_get_stats(ld, &ls);
	th_state_load_destroy(ld);
	assert_int_equal(ls.records, 6000);
	if (spills)
		assert_true(ls.runs > 3);
	else
		assert_int_equal(ls.runs, 0);
	E(th_state_commit(f->st, 42));
	check_model(f->st, &m);
	int live = 0;
	for (int i = 0; i < LOAD_KEYS; i++)
		live += m.seed[i] >= 0;
	assert_int_equal(ls.written, live);
	assert_true(ls.commits >= 1);
	/* as a store: its offset, and it passes the open's walk */
	reopen(f);
	assert_int_equal(th_state_offset(f->st), 42);
	check_model(f->st, &m);
}

static void test_load_in_memory_matches_a_model(void **state)
{
	load_and_check(*state, 64 << 20, false);
}

static void test_load_of_spilled_runs_matches_a_model(void **state)
{
	/* ~9 MB of records through 256 KiB: dozens of sorted runs, the same
	 * key in many of them (the latest must win, a deletion included) */
	load_and_check(*state, 256 << 10, true);
}

static void test_load_grows_the_map(void **state)
{
	struct fixture *f = *state;
	char err[256];
	th_state_close(f->st);
	th_state_remove_files(f->dir);
	E(th_state_open(&f->st, f->dir, 64 << 10, err, sizeof(err)));
	load_and_check(f, 1 << 20, true); /* ~1.5 MB of live values, 64 KiB map */
}

static void test_load_refuses_what_a_restore_must_not_take(void **state)
{
	struct fixture *f = *state;
	struct th_state_load *ld = NULL;
	/* metadata, an empty key and a key over LMDB's limit: no worker writes them */
	static char big[TH_STATE_KEY_MAX + 2];
	memset(big, 'b', sizeof(big));
	E(th_state_load_new(&ld, f->st, f->dir, 1 << 20));
	assert_int_equal(th_state_load_add(ld, "\0offset", 7, "x", 1), TH_EINVAL);
	assert_int_equal(th_state_load_add(ld, "", 0, "x", 1), TH_EINVAL);
	assert_int_equal(th_state_load_add(ld, big, TH_STATE_KEY_MAX + 1, "x", 1), TH_EINVAL);
	E(th_state_load_add(ld, big, TH_STATE_KEY_MAX, "x", 1)); /* the longest legal */
	E(th_state_load_finish(ld));
	th_state_load_destroy(ld);
	E(th_state_commit(f->st, 1));
	const void *v;
	size_t n;
	E(th_state_get(f->st, big, TH_STATE_KEY_MAX, &v, &n));
	assert_int_equal(th_state_get(f->st, "\0offset", 7, &v, &n), 0);
	assert_int_equal(th_state_offset(f->st), 1); /* not the record's "x" */
	/* a store holding records, or uncommitted changes, takes no load */
	assert_int_equal(th_state_load_new(&ld, f->st, f->dir, 1 << 20), TH_EINVAL);
	assert_null(ld);
	E(th_state_wipe(f->st));
	E(th_state_put(f->st, "a", 1, "1", 1));
	assert_int_equal(th_state_load_new(&ld, f->st, f->dir, 1 << 20), TH_EINVAL);
	th_state_rollback(f->st);
	E(th_state_load_new(&ld, f->st, f->dir, 1 << 20));
	th_state_load_destroy(ld);
}

static void test_load_dropped_writes_nothing(void **state)
{
	struct fixture *f = *state;
	struct th_state_load *ld;
	struct th_state_load_stats ls;
	struct load_model m;
	E(th_state_load_new(&ld, f->st, f->dir, 64 << 10));
	load_records(ld, &m, 2000, 3);
	th_state_load_get_stats(ld, &ls);
	assert_true(ls.runs > 0); /* runs were on disk */
	th_state_load_destroy(ld);
	int seen = 0;
	E(th_state_scan(f->st, "k", 1, count_cb, &seen));
	assert_int_equal(seen, 0);
	/* and the runs' files are gone: teardown's rmdir finds the directory
	 * holding only the store's files */
}

/* ---- a full disk: TH_ENOSPC, nothing lost, and the retry commits ---- */

static void test_disk_full_keeps_changes(void **state)
{
	struct fixture *f = *state;
	char mnt[128], sdir[160], filler[160], err[256], k[32], v[1024];
	struct th_state *st = NULL;
	int rc;
	(void)state;
	snprintf(mnt, sizeof(mnt), "%s/tmpfs", f->dir);
	assert_int_equal(mkdir(mnt, 0750), 0);
	if (mount("tmpfs", mnt, "tmpfs", 0, "size=2m") != 0) {
		int e = errno;
		rmdir(mnt);
		if (geteuid() == 0)
			fail_msg("mount tmpfs as root failed: %s", strerror(e));
		/* only when not root: mounting needs CAP_SYS_ADMIN */
		print_message("SKIPPED: cannot mount a tmpfs (%s) as uid %d; run as root\n",
			      strerror(e), (int)geteuid());
		skip();
		return;
	}
	snprintf(sdir, sizeof(sdir), "%s/st", mnt);
	snprintf(filler, sizeof(filler), "%s/filler", mnt);
	E(th_state_open(&st, sdir, 64 << 20, err, sizeof(err)));
	/* take every free byte */
	int fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0640);
	assert_true(fd >= 0);
	memset(v, 'f', sizeof(v));
	while (write(fd, v, sizeof(v)) > 0)
		;
	close(fd);
	memset(v, 'v', sizeof(v));
	v[sizeof(v) - 1] = '\0';
	for (int i = 0; i < 400; i++) {
		snprintf(k, sizeof(k), "big-%04d", i);
		E(th_state_put(st, k, strlen(k), v, strlen(v)));
	}
	rc = th_state_commit(st, 400);
	assert_int_equal(rc, TH_ENOSPC);
	assert_int_equal(th_state_offset(st), TH_STATE_NO_OFFSET);
	/* the cache kept every change */
	struct th_state_stats ss;
	th_state_get_stats(st, &ss);
	assert_int_equal(ss.dirty, 400);
	check_value(st, "big-0399", v);
	/* still full: still TH_ENOSPC, never a crash */
	assert_int_equal(th_state_commit(st, 400), TH_ENOSPC);
	/* Some room, not enough: the write runs out part-way, which liblmdb
	 * reports as a short write (EIO); still TH_ENOSPC, still nothing lost. */
	struct stat fsb;
	assert_int_equal(stat(filler, &fsb), 0);
	assert_int_equal(truncate(filler, fsb.st_size - 64 * 1024), 0);
	assert_int_equal(th_state_commit(st, 400), TH_ENOSPC);
	th_state_get_stats(st, &ss);
	assert_int_equal(ss.dirty, 400);
	/* space returns: the same call commits everything */
	assert_int_equal(unlink(filler), 0);
	E(th_state_commit(st, 400));
	th_state_close(st);
	E(th_state_open(&st, sdir, 64 << 20, err, sizeof(err)));
	assert_int_equal(th_state_offset(st), 400);
	for (int i = 0; i < 400; i++) {
		snprintf(k, sizeof(k), "big-%04d", i);
		check_value(st, k, v);
	}
	th_state_close(st);
	assert_int_equal(umount(mnt), 0);
	rmdir(mnt);
}

/* ---- read-only ---- */

static void test_readonly_open(void **state)
{
	struct fixture *f = *state;
	char mnt[128], err[256];
	struct th_state *st = NULL;
	fill_store(f, 200);
	th_state_close(f->st);
	f->st = NULL;
	/* a read-only view of the store's directory, without its lock file */
	snprintf(mnt, sizeof(mnt), "%s.ro", f->dir);
	char path[128];
	path_in(path, sizeof(path), f, "lock.mdb");
	unlink(path);
	assert_int_equal(mkdir(mnt, 0750), 0);
	if (mount(f->dir, mnt, NULL, MS_BIND, NULL) != 0 ||
	    mount(NULL, mnt, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) != 0) {
		int e = errno;
		umount(mnt);
		rmdir(mnt);
		if (geteuid() == 0)
			fail_msg("read-only bind mount as root failed: %s", strerror(e));
		print_message("SKIPPED: cannot bind-mount read-only (%s) as uid %d; run as root\n",
			      strerror(e), (int)geteuid());
		skip();
		return;
	}
	E(th_state_open_readonly(&st, mnt, err, sizeof(err)));
	check_store(st, 200);
	assert_int_equal(th_state_offset(st), 200);
	assert_int_equal(th_state_commit(st, 1), TH_EINVAL);
	th_state_close(st);
	/* the writable open refuses to write there, with an error, not a crash */
	assert_int_not_equal(th_state_open(&st, mnt, 0, err, sizeof(err)), 0);
	assert_int_equal(umount(mnt), 0);
	rmdir(mnt);
	reopen(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_put_get_commit_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_coalesced_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rollback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scan_merges_cache_and_lmdb, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scan_matches_a_model, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scan_sees_the_callbacks_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dirty_foreach, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wipe, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_keys_and_clean_cache_eviction, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_format_version_is_checked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_keys_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_clean_close_is_trusted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_process_crash_is_trusted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_ending_before_its_last_page, setup, teardown),
		cmocka_unit_test_setup_teardown(test_system_crash_is_untrusted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_random_file_is_untrusted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_foreign_lmdb_is_untrusted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flipped_page_headers_never_crash, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_free_list_naming_a_used_page_is_untrusted, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_map_full_grows, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_in_memory_matches_a_model, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_of_spilled_runs_matches_a_model, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_load_grows_the_map, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_refuses_what_a_restore_must_not_take, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_load_dropped_writes_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_disk_full_keeps_changes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_readonly_open, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Unit tests of the state store: the write-back cache in front of LMDB,
 * commits with the input offset, rollback, prefix scans over committed and
 * uncommitted keys, wipe, changelog application and the format version.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

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
	snprintf(path, sizeof(path), "%s/data.mdb", f->dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/lock.mdb", f->dir);
	unlink(path);
	rmdir(f->dir);
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

static int count_dirty(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	int *n = ctx;
	(void)key;
	(void)klen;
	(void)vlen;
	*n += val ? 1 : 100;
	return 0;
}

static void test_dirty_foreach_and_apply(void **state)
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
	/* changelog records: values and tombstones; metadata refused */
	E(th_state_apply(f->st, "x", 1, NULL, 0));
	E(th_state_apply(f->st, "w", 1, "9", 1));
	assert_int_equal(th_state_apply(f->st, "\0offset", 7, "1", 1), TH_EINVAL);
	E(th_state_commit(f->st, 4));
	check_value(f->st, "x", NULL);
	check_value(f->st, "w", "9");
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
	assert_int_equal(th_state_open(&other, f->dir, 64 << 20, err, sizeof(err)), TH_ESTATE);
	assert_non_null(strstr(err, "format version 7"));
	/* leave a usable store for teardown */
	char path[128];
	snprintf(path, sizeof(path), "%s/data.mdb", f->dir);
	unlink(path);
	E(th_state_open(&f->st, f->dir, 64 << 20, err, sizeof(err)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_put_get_commit_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_coalesced_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rollback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scan_merges_cache_and_lmdb, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dirty_foreach_and_apply, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wipe, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_keys_and_clean_cache_eviction, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_format_version_is_checked, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Tests for archive.c: S3 log file names, the delivery order of a small tree
 * with two region prefixes plus loose and explicit files, and what is skipped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "trailhound/archive.h"
#include "trailhound/common.h"

#define E(expr)                                                                        \
	do {                                                                           \
		int rc_ = (expr);                                                      \
		if (rc_)                                                               \
			fail_msg("%s: %s", #expr, th_strerror(rc_));                   \
	} while (0)

static void test_s3_names(void **state)
{
	(void)state;
	int64_t ts;
	assert_true(th_archive_s3_name(
		"123456789012_CloudTrail_us-east-1_20261001T0105Z_a1B2c3D4e5F6g7H8.json.gz", &ts));
	assert_int_equal(ts, 1790816700000LL); /* 2026-10-01T01:05:00Z */
	assert_true(th_archive_s3_name("123456789012_CloudTrail_eu-west-1_20261001T0105Z_x.json",
				       &ts));
	/* digest files, other accounts' shapes, truncated stamps: not log files by name */
	assert_false(th_archive_s3_name(
		"123456789012_CloudTrail-Digest_us-east-1_t_us-east-1_20261001T0105Z.json.gz", &ts));
	assert_false(th_archive_s3_name("12345678901_CloudTrail_us-east-1_20261001T0105Z_x.json.gz",
					&ts));
	assert_false(th_archive_s3_name("123456789012_CloudTrail_us-east-1_20261001T015Z_x.json.gz",
					&ts));
	assert_false(th_archive_s3_name("123456789012_CloudTrail_us-east-1_20261001T0105Z_.json.gz",
					&ts));
	assert_false(th_archive_s3_name("123456789012_CloudTrail_us-east-1_20261001T0105Z_x.txt",
					&ts));
	assert_false(th_archive_s3_name(".DS_Store", &ts));
}

static char root[256];

static void put(const char *rel, const char *text)
{
	char path[512], dir[600];
	snprintf(path, sizeof(path), "%s/%s", root, rel);
	snprintf(dir, sizeof(dir), "mkdir -p \"$(dirname '%s')\"", path);
	assert_int_equal(system(dir), 0);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int skips[TH_SKIP__COUNT];

static void on_skip(void *ctx, const char *path, enum th_archive_skip why, const char *detail)
{
	(void)ctx, (void)path, (void)detail;
	skips[why]++;
}

static const char *name_of(const char *path)
{
	const char *b = strrchr(path, '/');
	return b ? b + 1 : path;
}

static void test_delivery_order_across_prefixes(void **state)
{
	(void)state;
	const char *ev = "{\"Records\":[]}";
	snprintf(root, sizeof(root), "/tmp/th-archive-XXXXXX");
	assert_non_null(mkdtemp(root));
	/* us-east-1 sorts after eu-west-1 by path, but its files interleave in time */
	put("AWSLogs/111111111111/CloudTrail/us-east-1/2026/10/01/"
	    "111111111111_CloudTrail_us-east-1_20261001T0005Z_a.json.gz", ev);
	put("AWSLogs/111111111111/CloudTrail/us-east-1/2026/10/02/"
	    "111111111111_CloudTrail_us-east-1_20261002T0005Z_b.json.gz", ev);
	put("AWSLogs/111111111111/CloudTrail/eu-west-1/2026/10/01/"
	    "111111111111_CloudTrail_eu-west-1_20261001T1200Z_c.json.gz", ev);
	put("AWSLogs/222222222222/CloudTrail/us-east-1/2026/09/30/"
	    "222222222222_CloudTrail_us-east-1_20260930T2355Z_d.json.gz", ev);
	put("AWSLogs/111111111111/CloudTrail-Digest/us-east-1/2026/10/01/"
	    "111111111111_CloudTrail-Digest_us-east-1_t_us-east-1_20261001T0100Z.json.gz", "{}");
	put("AWSLogs/.DS_Store", "junk");
	put("AWSLogs/notes.txt", "not json");
	/* a loose file without a stamp sorts by its first eventTime */
	put("extra/late.jsonl", "{\"eventTime\":\"2026-10-01T06:00:00Z\",\"eventSource\":\"s\","
				"\"eventName\":\"n\"}\n");
	char loop[512], tree[512], loose[512];
	snprintf(loop, sizeof(loop), "%s/AWSLogs/111111111111/loop", root);
	assert_int_equal(symlink("..", loop), 0);
	snprintf(tree, sizeof(tree), "%s/AWSLogs", root);
	snprintf(loose, sizeof(loose), "%s/extra", root);

	char *args[] = {loose, tree};
	struct th_archive *a;
	const struct th_archive_file *f;
	const char *want[] = {
		"222222222222_CloudTrail_us-east-1_20260930T2355Z_d.json.gz",
		"111111111111_CloudTrail_us-east-1_20261001T0005Z_a.json.gz",
		"late.jsonl",
		"111111111111_CloudTrail_eu-west-1_20261001T1200Z_c.json.gz",
		"111111111111_CloudTrail_us-east-1_20261002T0005Z_b.json.gz",
	};
	memset(skips, 0, sizeof(skips));
	E(th_archive_new(&a, args, 2, on_skip, NULL));
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		E(th_archive_next(a, &f));
		assert_string_equal(name_of(f->path), want[i]);
	}
	assert_int_equal(th_archive_next(a, &f), TH_ENOTFOUND);
	th_archive_destroy(a);
	assert_int_equal(skips[TH_SKIP_DIGEST], 1);
	assert_int_equal(skips[TH_SKIP_HIDDEN], 1);
	assert_int_equal(skips[TH_SKIP_NOT_CLOUDTRAIL], 1);
	assert_int_equal(skips[TH_SKIP_SYMLINK_LOOP], 1);

	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_s3_names),
		cmocka_unit_test(test_delivery_order_across_prefixes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

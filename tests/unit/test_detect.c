/*
 * The detector's aging against its store (detect.c, prune): what a long run
 * keeps. A learned role is kept while events name it and for its window
 * after (role_retention_days); a role written before record version 3 has
 * no last sighting and is given the first prune's time, so an upgrade
 * forgets nothing at once; role_retention_days = 0 keeps roles for ever.
 * The in-memory table of accounts' first event times is bounded, and what
 * it drops is read again from the store. Events here are struct th_event
 * values with a service source (no reference data needed).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "trailhound/codec.h"
#include "trailhound/common.h"
#include "trailhound/detect.h"
#include "trailhound/enrich.h"
#include "trailhound/event.h"
#include "trailhound/records.h"
#include "trailhound/state.h"

#include "../../src/detect_int.h" /* the detector's tables, counted */

static char errstr[512];

#define E(expr)                                                                                    \
	do {                                                                                       \
		int rc_ = (expr);                                                                  \
		if (rc_)                                                                           \
			fail_msg("%s: %s (%s)", #expr, th_strerror(rc_), errstr);                  \
	} while (0)

#define T0 1767225600000LL /* 2026-01-01T00:00:00Z */
#define ROLE "arn:aws:iam::111122223333:role/service-role/report-role"

struct run {
	char dir[64];
	struct th_enrich *en;
	struct th_state *st;
	struct th_detector *det;
	int64_t offset;
};

static int no_alert(void *ctx, const struct th_alert *a)
{
	(void)ctx;
	(void)a;
	return 0;
}

/* with_enrich: public addresses are told from AWS ones (the reference data) */
static void run_open2(struct run *r, int64_t role_retention_ms, bool with_enrich)
{
	struct th_detect_conf conf;
	struct th_enrich_conf ec = {
		.asn_db_path = TH_SHARED_DATA "/asn/asn.mmdb",
		.aws_ranges_path = TH_SHARED_DATA "/aws-ip-ranges/ip-ranges.json",
	};
	memset(r, 0, sizeof(*r));
	snprintf(r->dir, sizeof(r->dir), "/tmp/th-detect-XXXXXX");
	assert_non_null(mkdtemp(r->dir));
	if (with_enrich)
		E(th_enrich_new(&r->en, &ec, errstr, sizeof(errstr)));
	E(th_state_open(&r->st, r->dir, 256u << 20, errstr, sizeof(errstr)));
	th_detect_conf_defaults(&conf);
	conf.role_retention_ms = role_retention_ms;
	E(th_detector_new(&r->det, &conf, r->en, r->st, no_alert, r));
}

static void run_open(struct run *r, int64_t role_retention_ms)
{
	run_open2(r, role_retention_ms, false);
}

static void run_close(struct run *r)
{
	th_detector_destroy(r->det);
	th_enrich_destroy(r->en);
	th_state_close(r->st);
	E(th_state_remove_files(r->dir));
	rmdir(r->dir);
}

/* An event at t of an account's service identity from a service source: it
 * moves the clock (and so the daily prune) and the account's first event
 * time, nothing else. */
static void event_of(struct run *r, const char *acct, int64_t t)
{
	struct th_event ev;
	memset(&ev, 0, sizeof(ev));
	ev.event_time_ms = t;
	ev.recipient_account_id = acct;
	ev.event_source = "s3.amazonaws.com";
	ev.event_name = "ListBuckets";
	ev.source_ip = "AWS Internal";
	ev.ui.type = "AWSService";
	E(th_detector_process(r->det, &ev, NULL));
}

static void tick(struct run *r, int64_t t)
{
	event_of(r, "111122223333", t);
	E(th_detector_checkpoint(r->det));
	E(th_state_commit(r->st, ++r->offset));
}

/* The role as a build before version 3 wrote it: a Lambda role first seen
 * at T0 with one function in us-east-1, and no last sighting. */
static void put_role_v2(struct run *r)
{
	char key[TH_KEY_SIZE];
	struct th_wbuf w = {0};
	th_put_u8(&w, 2);
	th_put_u8(&w, 1);
	th_put_i64(&w, T0);
	th_put_varint(&w, 1);
	th_put_str(&w, "us-east-1");
	th_put_varint(&w, 0);
	th_put_varint(&w, 1);
	th_put_str(&w, "report");
	th_put_varint(&w, 1);
	size_t kl = th_key(key, sizeof(key), 'r', 1, ROLE);
	E(th_state_put(r->st, key, kl, w.p, w.len));
	E(th_state_commit(r->st, ++r->offset));
	th_wbuf_free(&w);
}

/* 1 and the role in *ro when the store holds it, 0 when not. */
static int get_role(struct run *r, struct th_role *ro)
{
	char key[TH_KEY_SIZE];
	const void *v;
	size_t n;
	size_t kl = th_key(key, sizeof(key), 'r', 1, ROLE);
	int rc = th_state_get(r->st, key, kl, &v, &n);
	if (rc == TH_ENOTFOUND)
		return 0;
	E(rc);
	E(th_role_decode(v, n, ro));
	return 1;
}

static void test_role_from_before_version_3_is_kept_a_window_then_pruned(void **state)
{
	static struct th_role ro;
	struct run r;
	(void)state;
	th_role_init(&ro);
	run_open(&r, 40 * TH_DAY_MS);
	put_role_v2(&r);
	/* the first prune after the upgrade gives it that prune's time */
	tick(&r, T0 + 100 * TH_DAY_MS);
	assert_int_equal(get_role(&r, &ro), 1);
	assert_true(ro.last_seen_ms == T0 + 100 * TH_DAY_MS);
	assert_true(ro.first_seen_ms == T0);
	assert_int_equal(ro.n_functions, 1);
	assert_string_equal(ro.functions[0].name, "report");
	/* kept within its window, gone past it */
	tick(&r, T0 + 139 * TH_DAY_MS);
	assert_int_equal(get_role(&r, &ro), 1);
	tick(&r, T0 + 141 * TH_DAY_MS);
	assert_int_equal(get_role(&r, &ro), 0);
	th_role_free(&ro);
	run_close(&r);
}

/* The twin: with role_retention_days = 0 the same role stays, as it was. */
static void test_role_retention_0_keeps_roles(void **state)
{
	static struct th_role ro;
	struct run r;
	(void)state;
	th_role_init(&ro);
	run_open(&r, 0);
	put_role_v2(&r);
	tick(&r, T0 + 100 * TH_DAY_MS);
	tick(&r, T0 + 900 * TH_DAY_MS);
	assert_int_equal(get_role(&r, &ro), 1);
	assert_true(ro.last_seen_ms == 0);
	assert_int_equal(ro.n_functions, 1);
	th_role_free(&ro);
	run_close(&r);
}

/* The window is never shorter than the training window (30 days by
 * default): a role's other sessions are judged against that training. */
static void test_role_window_is_at_least_training(void **state)
{
	static struct th_role ro;
	struct run r;
	(void)state;
	th_role_init(&ro);
	run_open(&r, 1 * TH_DAY_MS);
	put_role_v2(&r);
	tick(&r, T0 + 100 * TH_DAY_MS);
	tick(&r, T0 + 129 * TH_DAY_MS);
	assert_int_equal(get_role(&r, &ro), 1);
	tick(&r, T0 + 131 * TH_DAY_MS);
	assert_int_equal(get_role(&r, &ro), 0);
	th_role_free(&ro);
	run_close(&r);
}

/* Events name the caller's account (userIdentity.accountId): every external
 * account that calls in (a public bucket's readers, cross-account attempts)
 * is one more. 100,000 of them over 100 days must not stay in memory; an
 * account dropped from the table keeps its first event time (the store). */
static void test_account_table_is_bounded(void **state)
{
	struct run r;
	char acct[16];
	int64_t first = 0;
	(void)state;
	run_open(&r, 0);
	event_of(&r, "999999999999", T0);
	for (int i = 0; i < 100000; i++) {
		snprintf(acct, sizeof(acct), "%012d", 100000000 + i);
		event_of(&r, acct, T0 + (int64_t)i * 86400);
		if (i % 5000 == 4999) {
			E(th_detector_checkpoint(r.det));
			E(th_state_commit(r.st, ++r.offset));
		}
	}
	size_t n = HASH_COUNT(r.det->accounts);
	if (n > 65536)
		fail_msg("%zu accounts held in memory", n);
	/* the first account's first event time, read back from the store */
	E(th_detect_account_seen(r.det, "999999999999", 0, &first));
	assert_true(first == T0);
	run_close(&r);
}

/* A CI job's session (a role nobody knows as Lambda's) used from a public
 * address: a remote use of an unknown key, held until its session's end. */
static void ci_call(struct run *r, int job, int64_t t)
{
	char akid[32], arn[96];
	struct th_event ev;
	snprintf(akid, sizeof(akid), "ASIACI%014d", job);
	snprintf(arn, sizeof(arn), "arn:aws:sts::111122223333:assumed-role/ci-deploy/job-%d", job);
	memset(&ev, 0, sizeof(ev));
	ev.event_time_ms = t;
	ev.recipient_account_id = "111122223333";
	ev.event_source = "s3.amazonaws.com";
	ev.event_name = "PutObject";
	ev.source_ip = "38.104.55.10"; /* AS174, public, not AWS */
	ev.user_agent = "aws-cli/2.17.20";
	ev.ui.type = "AssumedRole";
	ev.ui.arn = arn;
	ev.ui.account_id = "111122223333";
	ev.ui.access_key_id = akid;
	ev.ui.session_issuer_arn = "arn:aws:iam::111122223333:role/ci-deploy";
	ev.ui.creation_ms = t;
	E(th_detector_process(r->det, &ev, NULL));
}

/* The decoded-object cache holds at most OBJS_MAX tokens and roles between
 * events (~10 KB a token); a sweep that ends many holds at once (the
 * watermark past a busy hour of CI jobs, a lagging partition catching up,
 * the end of a scan) must not decode all their keys into it at once. */
static void test_expiry_sweep_keeps_the_object_cache_bounded(void **state)
{
	struct run r;
	const int jobs = 12000;
	(void)state;
	run_open2(&r, 0, true);
	for (int i = 0; i < jobs; i++) {
		ci_call(&r, i, T0 + i * 100);
		if (i % 2000 == 1999) {
			E(th_detector_checkpoint(r.det));
			E(th_state_commit(r.st, ++r.offset));
		}
	}
	E(th_detector_checkpoint(r.det));
	E(th_state_commit(r.st, ++r.offset));
	struct th_detect_stats st;
	th_detector_get_stats(r.det, &st);
	assert_int_equal(st.held_pending, jobs);
	/* 13 hours on: every hold ends in the one sweep this event starts */
	event_of(&r, "111122223333", T0 + 13 * 3600 * 1000LL);
	th_detector_get_stats(r.det, &st);
	assert_int_equal(st.held_pending, 0);
	assert_int_equal(st.held_expired, jobs);
	if (r.det->nobjs > OBJS_MAX + 2 || r.det->nbsights > OBJS_MAX + 2)
		fail_msg("%zu objects and %zu sightings decoded after the sweep", r.det->nobjs,
			 r.det->nbsights);
	run_close(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_role_from_before_version_3_is_kept_a_window_then_pruned),
		cmocka_unit_test(test_role_retention_0_keeps_roles),
		cmocka_unit_test(test_role_window_is_at_least_training),
		cmocka_unit_test(test_account_table_is_bounded),
		cmocka_unit_test(test_expiry_sweep_keeps_the_object_cache_bounded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Adding a variation is one descriptor plus its facts (issue 10): this file
 * builds the detector with a variation table of its own, the six builtin
 * descriptors plus a seventh, test-only one, and touches no other file.
 * The seventh fires on a real case (tests/cases/variations/v4_remote.jsonl,
 * the function's token used from a hosting provider), is deduplicated when
 * the same use repeats within the dedup window, and is encoded to Avro and
 * read back with the schema (schemas/alert.avsc) unchanged.
 *
 * The same input with the builtin table gives variation 4, so the outcome
 * comes from the descriptor and nothing else.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <avro.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "trailhound/avro_alert.h"
#include "trailhound/common.h"
#include "trailhound/detect.h"
#include "trailhound/input.h"
#include "trailhound/state.h"
#include "trailhound/variation.h"

#define CASE TH_TEST_DIR "/cases/variations/v4_remote.jsonl"
#define SCHEMA_PATH TH_SCHEMA_DIR "/alert.avsc"
#define SCHEMA_ID 7
#define SEVENTH 7

static char errstr[512];

#define E(expr)                                                                                    \
	do {                                                                                       \
		int rc_ = (expr);                                                                  \
		if (rc_)                                                                           \
			fail_msg("%s: %s (%s)", #expr, th_strerror(rc_), errstr);                  \
	} while (0)

/* ---- the test-only variation: one descriptor and its match function ---- */

/* A function's token used from a hosting provider's network (the case's
 * source, AS16276): a fact the detector already gathers (the call's ASN). */
static bool match_hosting(const struct th_match_ctx *m, struct th_evidence *ev)
{
	if (m->call->asn != 16276)
		return false;
	th_evidence_add(ev, "AS%u is a hosting provider (test-only variation)", m->call->asn);
	return true;
}

static const struct th_variation seventh = {
	.id = SEVENTH,
	.name = "Usage of AWS Lambda's token from a hosting provider (test)",
	.severity = "Medium",
	.tactic = "TA0006",
	.cred = TH_CRED_TOKEN,
	.upgradable = true,
	.description = "Test-only variation.",
	.match = match_hosting,
};

/* ---- a detector over one scratch store, fed a JSON-lines file ---- */

struct run {
	struct th_enrich *en;
	struct th_state *st;
	struct th_detector *det;
	struct th_parser *parser;
	struct th_avro_alert *avro;
	char dir[64];
	int n_alerts;
	int variation[8];
	struct th_wbuf avro_out[8];
};

static int on_alert(void *ctx, const struct th_alert *a)
{
	struct run *r = ctx;
	assert_true(r->n_alerts < 8);
	r->variation[r->n_alerts] = a->variation;
	int rc = th_avro_alert_encode(r->avro, a, &r->avro_out[r->n_alerts]);
	r->n_alerts++;
	return rc;
}

static int on_event(void *ctx, const struct th_event *ev, const char *raw, size_t raw_len,
		    uint64_t offset)
{
	struct run *r = ctx;
	struct th_input_ref ref = {.topic = "test", .partition = 0, .offset = (int64_t)offset};
	(void)raw;
	(void)raw_len;
	return th_detector_process(r->det, ev, &ref);
}

static void on_reject(void *ctx, enum th_reject why, const char *detail, const char *raw,
		      size_t raw_len, uint64_t offset)
{
	(void)ctx;
	(void)raw;
	(void)raw_len;
	fail_msg("record at %llu rejected (%s): %s", (unsigned long long)offset, th_reject_name(why),
		 detail);
}

static void feed(struct run *r, const char *line)
{
	size_t n = strlen(line);
	char *buf = calloc(1, n + TH_PARSE_PADDING);
	assert_non_null(buf);
	memcpy(buf, line, n);
	struct th_sink sink = {on_event, on_reject, r};
	E(th_parser_feed(r->parser, buf, n, 0, &sink));
	free(buf);
}

static void run_open(struct run *r, const struct th_variation *vars, size_t n)
{
	struct th_enrich_conf ec = {
		.asn_db_path = TH_SHARED_DATA "/asn/asn.mmdb",
		.aws_ranges_path = TH_SHARED_DATA "/aws-ip-ranges/ip-ranges.json",
	};
	struct th_detect_conf conf;

	memset(r, 0, sizeof(*r));
	snprintf(r->dir, sizeof(r->dir), "/tmp/th-variation-extra-XXXXXX");
	assert_non_null(mkdtemp(r->dir));
	E(th_enrich_new(&r->en, &ec, errstr, sizeof(errstr)));
	E(th_state_open(&r->st, r->dir, 64u << 20, errstr, sizeof(errstr)));
	E(th_avro_alert_new(&r->avro, SCHEMA_PATH, SCHEMA_ID, errstr, sizeof(errstr)));
	E(th_parser_new(&r->parser, TH_RECORD_MAX_DEFAULT));
	th_parser_set_max_future_skew(r->parser, 0);
	th_detect_conf_defaults(&conf);
	conf.variations = vars;
	conf.n_variations = n;
	E(th_detector_new(&r->det, &conf, r->en, r->st, on_alert, r));
}

static void run_close(struct run *r)
{
	th_detector_destroy(r->det);
	th_parser_destroy(r->parser);
	th_avro_alert_destroy(r->avro);
	th_state_close(r->st);
	E(th_state_remove_files(r->dir));
	rmdir(r->dir);
	th_enrich_destroy(r->en);
	for (int i = 0; i < 8; i++)
		th_wbuf_free(&r->avro_out[i]);
}

/* The case's events, then its last one (the remote use) again an hour
 * later under a new eventID: the same key, function and ASN within the
 * 7-day dedup window. */
static void feed_case_and_repeat(struct run *r)
{
	static char line[1 << 16], last[1 << 16];
	FILE *f = fopen(CASE, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		if (line[0] != '{')
			continue;
		feed(r, line);
		memcpy(last, line, sizeof(line));
	}
	fclose(f);
	char *id = strstr(last, "\"eventID\":\"");
	char *tm = strstr(last, "\"eventTime\":\"");
	assert_non_null(id);
	assert_non_null(tm);
	char *c = id + strlen("\"eventID\":\"");
	*c = *c == '0' ? '1' : '0';              /* another event */
	char *hour = tm + strlen("\"eventTime\":\"2026-03-22T");
	assert_true(hour[0] >= '0' && hour[0] <= '1' && hour[1] < '9');
	hour[1]++;                               /* an hour later */
	feed(r, last);
	E(th_detector_advance(r->det, true));
}

/* ---- tests ---- */

static void test_builtin_table_gives_variation_4(void **state)
{
	struct run r;
	struct th_detect_stats st;
	(void)state;
	run_open(&r, th_variations, th_variations_count);
	feed_case_and_repeat(&r);
	th_detector_get_stats(r.det, &st);
	assert_int_equal(r.n_alerts, 1);
	assert_int_equal(r.variation[0], 4);
	assert_int_equal(st.suppressed_dedup, 1);
	run_close(&r);
}

static void test_extra_variation_fires_dedups_and_encodes(void **state)
{
	/* The builtin descriptors in their order, the seventh before the
	 * catch-all variation 4: the table is data, its order the precedence. */
	struct th_variation vars[TH_VARIATION_MAX];
	size_t n = 0;
	for (size_t i = 0; i < th_variations_count; i++) {
		if (th_variations[i].id == 4)
			vars[n++] = seventh;
		vars[n++] = th_variations[i];
	}
	struct run r;
	struct th_detect_stats st;
	(void)state;
	E(th_variations_check(vars, n, errstr, sizeof(errstr)));
	run_open(&r, vars, n);
	feed_case_and_repeat(&r);
	th_detector_get_stats(r.det, &st);

	/* fires, once: the repeat inside the dedup window is suppressed */
	assert_int_equal(r.n_alerts, 1);
	assert_int_equal(r.variation[0], SEVENTH);
	assert_int_equal(st.alerts[SEVENTH], 1);
	assert_int_equal(st.alerts[4], 0);
	assert_int_equal(st.suppressed_dedup, 1);

	/* encoded: the Avro body reads back with the unchanged schema */
	const struct th_wbuf *w = &r.avro_out[0];
	assert_true(w->len > TH_AVRO_HEADER_LEN);
	avro_schema_t schema;
	avro_value_iface_t *iface;
	avro_value_t rec, v;
	FILE *f = fopen(SCHEMA_PATH, "rb");
	static char text[1 << 16];
	assert_non_null(f);
	size_t tl = fread(text, 1, sizeof(text), f);
	fclose(f);
	assert_int_equal(avro_schema_from_json_length(text, tl, &schema), 0);
	assert_non_null(iface = avro_generic_class_from_schema(schema));
	assert_int_equal(avro_generic_value_new(iface, &rec), 0);
	avro_reader_t rd = avro_reader_memory((const char *)w->p + TH_AVRO_HEADER_LEN,
					      (int64_t)(w->len - TH_AVRO_HEADER_LEN));
	assert_int_equal(avro_value_read(rd, &rec), 0);
	avro_reader_free(rd);
	int32_t var = 0;
	const char *s = NULL;
	size_t sl = 0;
	assert_int_equal(avro_value_get_by_name(&rec, "variation", &v, NULL), 0);
	assert_int_equal(avro_value_get_int(&v, &var), 0);
	assert_int_equal(var, SEVENTH);
	assert_int_equal(avro_value_get_by_name(&rec, "alert_name", &v, NULL), 0);
	assert_int_equal(avro_value_get_string(&v, &s, &sl), 0);
	assert_string_equal(s, seventh.name);
	int sev = -1;
	assert_int_equal(avro_value_get_by_name(&rec, "severity", &v, NULL), 0);
	assert_int_equal(avro_value_get_enum(&v, &sev), 0);
	assert_string_equal(avro_schema_enum_get(avro_value_get_schema(&v), sev), "Medium");
	avro_value_decref(&rec);
	avro_value_iface_decref(iface);
	avro_schema_decref(schema);
	run_close(&r);
}

/* A table the detector could not index safely is refused up front. */
/* An evidence line holds an identity ARN whole (TH_ARN_SIZE) with its
 * sentence; a longer one (no line the detector writes) is cut on a UTF-8
 * character's boundary, never inside one. */
static void test_evidence_lines_fit_an_arn_and_cut_on_characters(void **state)
{
	static struct th_evidence ev;
	static char arn[TH_ARN_SIZE], wide[3 * TH_EVIDENCE_LINE];
	(void)state;
	memset(arn, 'a', sizeof(arn) - 1);
	th_evidence_add(&ev, "the key was assumed by %s, so it is the role's other session, not "
			     "function %s's token",
			arn, "orders");
	assert_non_null(strstr(ev.text[0], arn));
	assert_non_null(strstr(ev.text[0], "orders's token"));
	for (size_t i = 0; i + 2 < sizeof(wide); i += 2)
		memcpy(wide + i, "\xc3\xa9", 2); /* é */
	for (int shift = 0; shift < 4; shift++) {
		ev.n = 0;
		th_evidence_add(&ev, "%.*s%s", shift, "xxx", wide);
		size_t n = strlen(ev.text[0]);
		assert_true(n < TH_EVIDENCE_LINE && n > TH_EVIDENCE_LINE - 4);
		assert_int_equal(th_utf8_valid(ev.text[0], n), 1);
	}
}

static void test_bad_tables_are_refused(void **state)
{
	struct th_variation vars[2] = {th_variations[0], seventh};
	struct th_detector *det = NULL;
	struct th_detect_conf conf;
	(void)state;

	vars[1].id = TH_VARIATION_MAX + 1; /* past every id-indexed array */
	assert_int_equal(th_variations_check(vars, 2, errstr, sizeof(errstr)), TH_EINVAL);
	th_detect_conf_defaults(&conf);
	conf.variations = vars;
	conf.n_variations = 2;
	assert_int_equal(th_detector_new(&det, &conf, NULL, NULL, on_alert, NULL), TH_EINVAL);
	assert_null(det);

	vars[1].id = vars[0].id; /* duplicate */
	assert_int_equal(th_variations_check(vars, 2, errstr, sizeof(errstr)), TH_EINVAL);
	vars[1].id = SEVENTH;
	vars[1].severity = "Critical"; /* not in the Avro Severity enum */
	assert_int_equal(th_variations_check(vars, 2, errstr, sizeof(errstr)), TH_EINVAL);
	vars[1].severity = "Medium";
	vars[1].cred = TH_CRED_UNKNOWN; /* judges nothing */
	assert_int_equal(th_variations_check(vars, 2, errstr, sizeof(errstr)), TH_EINVAL);
	vars[1].cred = TH_CRED_TOKEN;
	assert_int_equal(th_variations_check(vars, 2, errstr, sizeof(errstr)), 0);
	/* the builtin table is valid */
	assert_int_equal(th_variations_check(th_variations, th_variations_count, errstr,
					     sizeof(errstr)),
			 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_builtin_table_gives_variation_4),
		cmocka_unit_test(test_evidence_lines_fit_an_arn_and_cut_on_characters),
		cmocka_unit_test(test_extra_variation_fires_dedups_and_encodes),
		cmocka_unit_test(test_bad_tables_are_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

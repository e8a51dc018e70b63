/*
 * Tests for avro_alert.c: each alert is encoded, its 5-byte Confluent header
 * checked, and the body decoded again with avro-c's reader against a second,
 * independent parse of schemas/alert.avsc; every field is compared by name.
 * (tests/test_avro_python.py proves the same bytes decode with fastavro.)
 */
#define _GNU_SOURCE /* memmem */
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
#include "trailhound/records.h"

#define SCHEMA_PATH TH_SCHEMA_DIR "/alert.avsc"

static char errstr[512];

#define E(expr)                                                                        \
	do {                                                                           \
		int rc_ = (expr);                                                      \
		if (rc_)                                                               \
			fail_msg("%s: %s (%s)", #expr, th_strerror(rc_), errstr);      \
	} while (0)

static const char *const actions[] = {"Review the role's recent calls",
				      "Rotate the function's role", "Check the source ASN", NULL};
static const char *const no_actions[] = {NULL};

static void full_alert(struct th_alert *a)
{
	memset(a, 0, sizeof(*a));
	th_alert_id(a->alert_id, 1, "123456789012", "arn:aws:iam::123456789012:role/fn-role",
		    "fn", 64496, "ASIAEXAMPLEKEY000001");
	a->variation = 1;
	a->alert_name = "Lambda credentials used from outside AWS";
	a->severity = "High";
	a->description = "A key issued to a function was used from a public address.";
	a->tactic = "TA0006";
	a->account_id = "123456789012";
	a->region = "eu-west-1";
	a->role_arn = "arn:aws:iam::123456789012:role/fn-role";
	a->function_name = "fn";
	a->session_name = "fn";
	a->access_key_id = "ASIAEXAMPLEKEY000001";
	a->event_id = "0b1c2d3e-0000-4000-8000-000000000001";
	a->event_name = "ListBuckets";
	a->event_source = "s3.amazonaws.com";
	a->event_time_ms = 1718000000123;
	a->source_ip = "198.51.100.7";
	a->network = "public";
	a->asn = 4294967295u; /* the largest uint32: must survive as a long */
	a->as_org = "Example Transit";
	a->source_aws_region = "us-east-1";
	a->user_agent = "aws-cli/2.15.0 Python/3.11";
	a->vpc_endpoint_id = "vpce-0123456789abcdef0";
	a->vpc_endpoint_account_id = "210987654321";
	a->evidence[0] = "source ASN 64496 is not an Amazon ASN";
	a->evidence[1] = "user agent is a CLI";
	a->n_evidence = 2;
	a->history.origin = "issued-by-lambda";
	a->history.issued_ms = 1717999000000;
	a->history.first_seen_ms = 1717999001000;
	a->history.last_seen_ms = 1717999999999;
	a->history.inside_count = 41;
	a->history.outside_count = 1;
	a->history.distinct_ips = 3;
	a->history.api_calls[0] = "s3:GetObject";
	a->history.api_calls[1] = "sts:GetCallerIdentity";
	a->history.n_calls = 2;
	a->actions = actions;
	a->upgrade_of = "00112233445566778899aabbccddeeff";
	a->input.topic = "cloudtrail";
	a->input.partition = 7;
	a->input.offset = 9007199254740993; /* beyond a double's integers */
}

/* Only what the detector always sets; every nullable field NULL. */
static void minimal_alert(struct th_alert *a)
{
	memset(a, 0, sizeof(*a));
	th_alert_id(a->alert_id, 5, "1", "r", "", 0, "k");
	a->variation = 5;
	a->alert_name = "n";
	a->severity = "Medium";
	a->description = "d";
	a->tactic = "TA0006";
	a->account_id = "1";
	a->role_arn = "r";
	a->access_key_id = "k";
	a->event_id = "e";
	a->event_name = "GetObject";
	a->event_source = "s3.amazonaws.com";
	a->source_ip = "10.0.0.1";
	a->network = "private";
	a->history.origin = "learned-from-runtime";
	a->actions = no_actions;
	a->input.topic = "-";
	a->input.partition = -1;
}

/* ---- decoding with avro-c's reader ---- */

struct decoded {
	avro_schema_t schema;
	avro_value_iface_t *iface;
	avro_value_t rec;
};

static void decode(const struct th_wbuf *w, int32_t want_id, struct decoded *d)
{
	static char text[1 << 16];
	FILE *f = fopen(SCHEMA_PATH, "rb");
	assert_non_null(f);
	size_t n = fread(text, 1, sizeof(text), f);
	fclose(f);
	assert_int_equal(avro_schema_from_json_length(text, n, &d->schema), 0);
	assert_non_null(d->iface = avro_generic_class_from_schema(d->schema));
	assert_int_equal(avro_generic_value_new(d->iface, &d->rec), 0);

	assert_true(w->len > TH_AVRO_HEADER_LEN);
	assert_int_equal(w->p[0], 0x00);
	uint32_t id = (uint32_t)w->p[1] << 24 | (uint32_t)w->p[2] << 16 | (uint32_t)w->p[3] << 8 |
		      w->p[4];
	assert_int_equal(id, (uint32_t)want_id);

	avro_reader_t r = avro_reader_memory((const char *)w->p + TH_AVRO_HEADER_LEN,
					     (int64_t)(w->len - TH_AVRO_HEADER_LEN));
	if (avro_value_read(r, &d->rec))
		fail_msg("avro_value_read: %s", avro_strerror());
	char extra;
	/* The body is exactly one record: nothing may be left over. */
	assert_int_not_equal(avro_read(r, &extra, 1), 0);
	avro_reader_free(r);
}

static void decoded_free(struct decoded *d)
{
	avro_value_decref(&d->rec);
	avro_value_iface_decref(d->iface);
	avro_schema_decref(d->schema);
}

static avro_value_t get(avro_value_t *rec, const char *name)
{
	avro_value_t v;
	if (avro_value_get_by_name(rec, name, &v, NULL))
		fail_msg("no field %s", name);
	return v;
}

/* Into a ["null", T] union: false for null, else the value in *v. */
static bool unwrap(avro_value_t *v)
{
	if (avro_value_get_type(v) != AVRO_UNION)
		return true;
	avro_value_t b;
	assert_int_equal(avro_value_get_current_branch(v, &b), 0);
	if (avro_value_get_type(&b) == AVRO_NULL)
		return false;
	*v = b;
	return true;
}

static void check_str(avro_value_t *rec, const char *name, const char *want)
{
	avro_value_t v = get(rec, name);
	bool nullable = avro_value_get_type(&v) == AVRO_UNION;
	if (!unwrap(&v)) {
		if (want)
			fail_msg("%s: null, want \"%s\"", name, want);
		return;
	}
	if (!want && nullable)
		fail_msg("%s: a value, want null", name);
	const char *s;
	size_t size;
	assert_int_equal(avro_value_get_string(&v, &s, &size), 0);
	/* avro-c's size counts the NUL it adds. */
	if (size != strlen(want ? want : "") + 1 || strcmp(s, want ? want : "") != 0)
		fail_msg("%s: \"%s\", want \"%s\"", name, s, want ? want : "");
}

static void check_long(avro_value_t *rec, const char *name, int64_t want)
{
	avro_value_t v = get(rec, name);
	int64_t got;
	if (!unwrap(&v))
		fail_msg("%s: null, want %lld", name, (long long)want);
	if (avro_value_get_type(&v) == AVRO_INT32) {
		int32_t i;
		assert_int_equal(avro_value_get_int(&v, &i), 0);
		got = i;
	} else {
		assert_int_equal(avro_value_get_type(&v), AVRO_INT64);
		assert_int_equal(avro_value_get_long(&v, &got), 0);
	}
	if (got != want)
		fail_msg("%s: %lld, want %lld", name, (long long)got, (long long)want);
}

static void check_null(avro_value_t *rec, const char *name)
{
	avro_value_t v = get(rec, name);
	assert_int_equal(avro_value_get_type(&v), AVRO_UNION);
	if (unwrap(&v))
		fail_msg("%s: a value, want null", name);
}

/* n items, or up to a NULL when n < 0 */
static void check_strs(avro_value_t *rec, const char *name, const char *const *want, int n)
{
	avro_value_t v = get(rec, name), item;
	size_t count, wn = 0;
	while (n < 0 ? want[wn] != NULL : wn < (size_t)n)
		wn++;
	assert_int_equal(avro_value_get_size(&v, &count), 0);
	if (count != wn)
		fail_msg("%s: %zu items, want %zu", name, count, wn);
	for (size_t i = 0; i < wn; i++) {
		const char *s;
		size_t size;
		assert_int_equal(avro_value_get_by_index(&v, i, &item, NULL), 0);
		assert_int_equal(avro_value_get_string(&item, &s, &size), 0);
		if (strcmp(s, want[i]) != 0)
			fail_msg("%s[%zu]: \"%s\", want \"%s\"", name, i, s, want[i]);
	}
}

/* Every field of struct th_alert against the decoded record. */
static void check_alert(avro_value_t *rec, const struct th_alert *a)
{
	avro_value_t sev = get(rec, "severity"), h = get(rec, "history"), in = get(rec, "input");
	int e;

	check_str(rec, "alert_id", a->alert_id);
	check_str(rec, "alert_name", a->alert_name);
	check_long(rec, "variation", a->variation);
	assert_int_equal(avro_value_get_enum(&sev, &e), 0);
	assert_string_equal(avro_schema_enum_get(avro_value_get_schema(&sev), e), a->severity);
	check_str(rec, "description", a->description);
	check_str(rec, "tactic", a->tactic);
	check_str(rec, "account_id", a->account_id);
	check_str(rec, "region", a->region);
	check_str(rec, "role_arn", a->role_arn);
	check_str(rec, "function_name", a->function_name);
	check_str(rec, "session_name", a->session_name);
	check_str(rec, "access_key_id", a->access_key_id);
	check_str(rec, "event_id", a->event_id);
	check_str(rec, "event_name", a->event_name);
	check_str(rec, "event_source", a->event_source);
	check_long(rec, "event_time", a->event_time_ms);
	check_str(rec, "source_ip", a->source_ip);
	check_str(rec, "network", a->network);
	check_long(rec, "asn", a->asn);
	check_str(rec, "as_org", a->as_org);
	check_str(rec, "source_aws_region", a->source_aws_region);
	check_str(rec, "user_agent", a->user_agent);
	check_str(rec, "vpc_endpoint_id", a->vpc_endpoint_id);
	check_str(rec, "vpc_endpoint_account_id", a->vpc_endpoint_account_id);
	check_strs(rec, "evidence", a->evidence, a->n_evidence);
	check_str(&h, "origin", a->history.origin);
	if (a->history.issued_ms > 0)
		check_long(&h, "issued_at", a->history.issued_ms);
	else
		check_null(&h, "issued_at");
	check_long(&h, "first_seen", a->history.first_seen_ms);
	check_long(&h, "last_seen", a->history.last_seen_ms);
	check_long(&h, "inside_count", a->history.inside_count);
	check_long(&h, "outside_count", a->history.outside_count);
	check_long(&h, "distinct_ips", a->history.distinct_ips);
	check_strs(&h, "api_calls", a->history.api_calls, a->history.n_calls);
	check_strs(rec, "investigative_actions", a->actions, -1);
	check_str(rec, "upgrade_of", a->upgrade_of);
	check_str(&in, "topic", a->input.topic);
	check_long(&in, "partition", a->input.partition);
	check_long(&in, "offset", a->input.offset);
}

static void round_trip(struct th_avro_alert *aa, int32_t id, const struct th_alert *a)
{
	struct th_wbuf w = {0};
	struct decoded d;
	E(th_avro_alert_encode(aa, a, &w));
	decode(&w, id, &d);
	check_alert(&d.rec, a);
	decoded_free(&d);
	th_wbuf_free(&w);
}

/* ---- tests ---- */

static void test_full_and_minimal_alerts(void **state)
{
	struct th_avro_alert *aa = NULL;
	struct th_alert a;
	(void)state;
	/* Distinct bytes show the id is big-endian. */
	E(th_avro_alert_new(&aa, SCHEMA_PATH, 0x01020304, errstr, sizeof(errstr)));
	full_alert(&a);
	round_trip(aa, 0x01020304, &a);
	/* The same encoder next: arrays must be emptied, unions switched to null. */
	minimal_alert(&a);
	round_trip(aa, 0x01020304, &a);
	full_alert(&a);
	round_trip(aa, 0x01020304, &a);
	th_avro_alert_destroy(aa);
}

static void test_schema_id_setter_and_header(void **state)
{
	struct th_avro_alert *aa = NULL;
	struct th_wbuf w = {0};
	struct th_alert a;
	(void)state;
	E(th_avro_alert_new(&aa, SCHEMA_PATH, 1, errstr, sizeof(errstr)));
	th_avro_alert_set_schema_id(aa, 2147483647);
	minimal_alert(&a);
	E(th_avro_alert_encode(aa, &a, &w));
	static const uint8_t hdr[] = {0x00, 0x7f, 0xff, 0xff, 0xff};
	assert_memory_equal(w.p, hdr, sizeof(hdr));
	/* encode resets the buffer: a second message is not appended. */
	size_t len = w.len;
	E(th_avro_alert_encode(aa, &a, &w));
	assert_int_equal(w.len, len);
	th_wbuf_free(&w);
	th_avro_alert_destroy(aa);
}

static void test_full_lists_and_non_ascii(void **state)
{
	static const char *const calls[TH_ALERT_MAX_CALLS] = {
		"s3:GetObject", "s3:PutObject", "s3:ListBuckets", "sts:GetCallerIdentity",
		"iam:ListRoles", "iam:GetRole", "ec2:DescribeInstances", "ec2:RunInstances",
		"lambda:ListFunctions", "lambda:GetFunction", "kms:Decrypt", "ssm:GetParameter",
		"secretsmanager:GetSecretValue", "dynamodb:Scan", "logs:FilterLogEvents",
		"sqs:ReceiveMessage"};
	static const char *const ev[TH_ALERT_MAX_EVIDENCE] = {
		"AS-Organisation « Zürich Netz AG »", "東京のアドレス",
		"emoji 🦊 in the agent",
		"quote \" and backslash \\", "tab\tand newline\n", "ünïcödé", "e4", "e8"};
	struct th_avro_alert *aa = NULL;
	struct th_alert a;
	(void)state;
	E(th_avro_alert_new(&aa, SCHEMA_PATH, 42, errstr, sizeof(errstr)));
	full_alert(&a);
	for (int i = 0; i < TH_ALERT_MAX_CALLS; i++)
		a.history.api_calls[i] = calls[i];
	a.history.n_calls = TH_ALERT_MAX_CALLS;
	for (int i = 0; i < TH_ALERT_MAX_EVIDENCE; i++)
		a.evidence[i] = ev[i];
	a.n_evidence = TH_ALERT_MAX_EVIDENCE;
	a.as_org = "Zürich Netz AG";
	a.session_name = "セッション-1";
	a.user_agent = "Mozilla/5.0 (🦊)";
	round_trip(aa, 42, &a);
	th_avro_alert_destroy(aa);
}

static void test_alert_larger_than_the_buffer(void **state)
{
	struct th_avro_alert *aa = NULL;
	struct th_alert a;
	size_t n = 100000;
	char *big = malloc(n + 1);
	(void)state;
	assert_non_null(big);
	memset(big, 'x', n);
	big[n] = '\0';
	E(th_avro_alert_new(&aa, SCHEMA_PATH, 3, errstr, sizeof(errstr)));
	full_alert(&a);
	a.user_agent = big;
	round_trip(aa, 3, &a);
	/* and smaller ones still work after the growth */
	full_alert(&a);
	round_trip(aa, 3, &a);
	th_avro_alert_destroy(aa);
	free(big);
}

/* The string field @p name of a decoded record, which must be valid UTF-8. */
static const char *strict_str(avro_value_t *rec, const char *name)
{
	avro_value_t v = get(rec, name);
	const char *s;
	size_t size;
	assert_true(unwrap(&v));
	assert_int_equal(avro_value_get_string(&v, &s, &size), 0);
	if (!th_utf8_valid(s, size - 1))
		fail_msg("%s is not valid UTF-8", name);
	return s;
}

/* Spec v2 §5 (issue 8): a user agent longer than the 512-byte field whose
 * multibyte character straddles byte 511 is cut before that character, so
 * the alert's JSON line and its Avro record are valid UTF-8. */
static void test_cut_user_agent_is_valid_utf8(void **state)
{
	struct th_avro_alert *aa = NULL;
	struct th_alert a;
	struct th_call c;
	struct th_wbuf w = {0};
	struct decoded d;
	char ua[700];
	static const char *const chars[] = {"\xc3\xa9", "\xe6\x9d\xb1", "\xf0\x9f\xa6\x8a"};
	(void)state;
	E(th_avro_alert_new(&aa, SCHEMA_PATH, 9, errstr, sizeof(errstr)));
	for (size_t ci = 0; ci < 3; ci++) {
		size_t clen = strlen(chars[ci]);
		/* the character starts at every offset that makes it straddle 511 */
		for (size_t start = 511 - clen + 1; start <= 511; start++) {
			memset(ua, 'A', start);
			memcpy(ua + start, chars[ci], clen);
			memset(ua + start + clen, 'Z', 50);
			ua[start + clen + 50] = '\0';
			memset(&c, 0, sizeof(c));
			th_strlcpy(c.user_agent, ua, sizeof(c.user_agent)); /* the detector's copy */
			assert_int_equal(strlen(c.user_agent), start); /* cut before it */
			full_alert(&a);
			a.user_agent = c.user_agent;
			th_wbuf_reset(&w);
			th_alert_to_json(&a, &w);
			assert_true(th_utf8_valid((const char *)w.p, w.len));
			E(th_avro_alert_encode(aa, &a, &w));
			decode(&w, 9, &d);
			assert_string_equal(strict_str(&d.rec, "user_agent"), c.user_agent);
			decoded_free(&d);
		}
	}
	/* invalid bytes that reach the encoders anyway become U+FFFD, never
	 * an invalid record */
	full_alert(&a);
	a.user_agent = "bad \xc3 lead, \xff byte, \xed\xa0\x80 surrogate";
	a.evidence[0] = "cut \xe6\x9d";
	th_wbuf_reset(&w);
	th_alert_to_json(&a, &w);
	assert_true(th_utf8_valid((const char *)w.p, w.len));
	assert_non_null(memmem(w.p, w.len, "bad \\ufffd lead", strlen("bad \\ufffd lead")));
	E(th_avro_alert_encode(aa, &a, &w));
	decode(&w, 9, &d);
	assert_string_equal(strict_str(&d.rec, "user_agent"),
			    "bad \xef\xbf\xbd lead, \xef\xbf\xbd byte, "
			    "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd surrogate");
	decoded_free(&d);
	th_wbuf_free(&w);
	th_avro_alert_destroy(aa);
}

static void test_unknown_severity_fails(void **state)
{
	struct th_avro_alert *aa = NULL;
	struct th_wbuf w = {0};
	struct th_alert a;
	(void)state;
	E(th_avro_alert_new(&aa, SCHEMA_PATH, 1, errstr, sizeof(errstr)));
	full_alert(&a);
	a.severity = "Critical";
	assert_int_equal(th_avro_alert_encode(aa, &a, &w), TH_EAVRO);
	a.severity = NULL;
	assert_int_equal(th_avro_alert_encode(aa, &a, &w), TH_EAVRO);
	/* the encoder is still usable */
	full_alert(&a);
	round_trip(aa, 1, &a);
	th_wbuf_free(&w);
	th_avro_alert_destroy(aa);
}

static void test_schema_text_is_the_file(void **state)
{
	struct th_avro_alert *aa = NULL;
	(void)state;
	E(th_avro_alert_new(&aa, SCHEMA_PATH, 1, errstr, sizeof(errstr)));
	/* The original text, not avro_schema_to_json's: that drops "doc" and
	 * "logicalType", which the registry and consumers need. */
	const char *js = th_avro_alert_schema_json(aa);
	assert_non_null(strstr(js, "\"io.trailhound\""));
	assert_non_null(strstr(js, "timestamp-millis"));
	assert_non_null(strstr(js, "\"doc\""));
	th_avro_alert_destroy(aa);
}

static int write_tmp(char *path, size_t size, const char *text)
{
	snprintf(path, size, "/tmp/th-avro-test-XXXXXX");
	int fd = mkstemp(path);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, text, strlen(text));
	close(fd);
	return n == (ssize_t)strlen(text) ? 0 : -1;
}

static void test_bad_schemas_fail_at_load(void **state)
{
	static const struct {
		const char *text;
		const char *msg; /* expected in errstr */
	} cases[] = {
		{"{not json", "alert schema"},
		{"\"string\"", "not a record"},
		{"{\"type\":\"record\",\"name\":\"A\","
		 "\"fields\":[{\"name\":\"alert_id\",\"type\":\"string\"}]}",
		 "no field alert_name"},
		{"{\"type\":\"record\",\"name\":\"A\","
		 "\"fields\":[{\"name\":\"alert_id\",\"type\":\"int\"}]}",
		 "field alert_id has the wrong type"},
	};
	struct th_avro_alert *aa = NULL;
	char path[64];
	(void)state;
	for (size_t i = 0; i < TH_ARRAY_SIZE(cases); i++) {
		assert_int_equal(write_tmp(path, sizeof(path), cases[i].text), 0);
		errstr[0] = '\0';
		assert_int_equal(th_avro_alert_new(&aa, path, 1, errstr, sizeof(errstr)), TH_EAVRO);
		assert_null(aa);
		if (!strstr(errstr, cases[i].msg))
			fail_msg("case %zu: errstr \"%s\" lacks \"%s\"", i, errstr, cases[i].msg);
		unlink(path);
	}
	assert_int_equal(th_avro_alert_new(&aa, "/nonexistent/alert.avsc", 1, errstr,
					   sizeof(errstr)),
			 TH_ENOTFOUND);
	assert_null(aa);
	th_avro_alert_destroy(NULL);
}

static void test_nested_field_missing_names_the_path(void **state)
{
	/* The real schema with history.issued_at renamed. */
	static char text[1 << 16];
	FILE *f = fopen(SCHEMA_PATH, "rb");
	assert_non_null(f);
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	char *p = strstr(text, "\"issued_at\"");
	assert_non_null(p);
	memcpy(p, "\"issued_on\"", 11);
	struct th_avro_alert *aa = NULL;
	char path[64];
	(void)state;
	assert_int_equal(write_tmp(path, sizeof(path), text), 0);
	assert_int_equal(th_avro_alert_new(&aa, path, 1, errstr, sizeof(errstr)), TH_EAVRO);
	assert_non_null(strstr(errstr, "history.issued_at"));
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_and_minimal_alerts),
		cmocka_unit_test(test_schema_id_setter_and_header),
		cmocka_unit_test(test_full_lists_and_non_ascii),
		cmocka_unit_test(test_alert_larger_than_the_buffer),
		cmocka_unit_test(test_cut_user_agent_is_valid_utf8),
		cmocka_unit_test(test_unknown_severity_fails),
		cmocka_unit_test(test_schema_text_is_the_file),
		cmocka_unit_test(test_bad_schemas_fail_at_load),
		cmocka_unit_test(test_nested_field_missing_names_the_path),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

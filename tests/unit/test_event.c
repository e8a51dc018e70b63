/*
 * Tests for the CloudTrail event parser (parser.cpp, time.c) and the input
 * framing (input.c). Each table row is one class of input; the issue asks for
 * one row per rejection class, so a new class is a new row, not new code.
 *
 * Every JSON literal is copied into a buffer with TH_PARSE_PADDING spare bytes
 * (simdjson reads past the end) filled with '"', so a parser that trusted the
 * padding's content would show up here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "trailhound/input.h"
#include "trailhound/archive.h"
#include "trailhound/parser.h"
#include "trailhound/time.h"

/* 0 or fail with the expression and the error text (LMDB mtest's E()). */
#define E(expr)                                                                                    \
	do {                                                                                       \
		int rc_ = (expr);                                                                  \
		if (rc_)                                                                           \
			fail_msg("%s:%d: %s: %s", __FILE__, __LINE__, #expr, th_strerror(rc_));    \
	} while (0)

/* ---- helpers ---- */

static char *padded(const char *s, size_t n)
{
	char *b = malloc(n + TH_PARSE_PADDING);
	assert_non_null(b);
	memcpy(b, s, n);
	memset(b + n, '"', TH_PARSE_PADDING);
	return b;
}

#define MAX_SEEN 256

/* What a sink saw, in order. */
struct seen {
	int nev, nrej;
	int by_reason[TH_REJECT__COUNT];
	struct {
		char id[64];
		uint64_t offset;
	} ev[MAX_SEEN];
	struct {
		enum th_reject why;
		uint64_t offset;
		char detail[256];
	} rej[MAX_SEEN];
	int stop_after; /* stop the stream after this many events; 0 = never */
};

static int seen_event(void *ctx, const struct th_event *ev, const char *raw, size_t raw_len,
		      uint64_t offset)
{
	struct seen *s = ctx;
	/* The raw span must be exactly the record: the alert encoder and the
	 * Kafka worker forward it as is. */
	assert_true(raw_len >= 2);
	assert_int_equal(raw[0], '{');
	assert_int_equal(raw[raw_len - 1], '}');
	assert_non_null(ev->event_id);
	if (s->nev < MAX_SEEN) {
		snprintf(s->ev[s->nev].id, sizeof(s->ev[0].id), "%s", ev->event_id);
		s->ev[s->nev].offset = offset;
	}
	s->nev++;
	return s->stop_after && s->nev >= s->stop_after ? 7 : 0;
}

static void seen_reject(void *ctx, enum th_reject why, const char *detail, const char *raw,
			size_t raw_len, uint64_t offset)
{
	struct seen *s = ctx;
	(void)raw;
	(void)raw_len;
	assert_true(why > TH_REJECT_NONE && why < TH_REJECT__COUNT);
	assert_non_null(detail);
	assert_true(detail[0] != '\0'); /* the operator needs a reason, not just a label */
	if (s->nrej < MAX_SEEN) {
		s->rej[s->nrej].why = why;
		s->rej[s->nrej].offset = offset;
		snprintf(s->rej[s->nrej].detail, sizeof(s->rej[0].detail), "%s", detail);
	}
	s->by_reason[why]++;
	s->nrej++;
}

static int feed(struct th_parser *p, const char *json, size_t len, uint64_t offset, struct seen *s)
{
	struct th_sink sink = {seen_event, seen_reject, s};
	char *b = padded(json, len);
	int rc = th_parser_feed(p, b, len, offset, &sink);
	free(b);
	return rc;
}

static void dump(const struct seen *s)
{
	for (int i = 0; i < s->nev && i < MAX_SEEN; i++)
		print_message("  event %s @%llu\n", s->ev[i].id, (unsigned long long)s->ev[i].offset);
	for (int i = 0; i < s->nrej && i < MAX_SEEN; i++)
		print_message("  reject %s @%llu: %s\n", th_reject_name(s->rej[i].why),
			      (unsigned long long)s->rej[i].offset, s->rej[i].detail);
}

static void expect_ids(const struct seen *s, const char *const *ids, int n)
{
	if (s->nev != n)
		dump(s);
	assert_int_equal(s->nev, n);
	for (int i = 0; i < n; i++)
		assert_string_equal(s->ev[i].id, ids[i]);
}

static uint64_t offset_of(const char *hay, const char *needle)
{
	const char *f = strstr(hay, needle);
	assert_non_null(f);
	return (uint64_t)(f - hay);
}

/* A minimal valid event with a given eventID and second. */
static size_t small_event(char *b, size_t size, int i)
{
	int n = snprintf(b, size,
			 "{\"eventVersion\":\"1.08\",\"userIdentity\":{\"type\":\"AssumedRole\","
			 "\"accessKeyId\":\"ASIA%016d\"},\"eventTime\":\"2023-07-10T12:%02d:%02dZ\","
			 "\"eventSource\":\"sts.amazonaws.com\",\"eventName\":\"GetCallerIdentity\","
			 "\"awsRegion\":\"us-east-1\",\"sourceIPAddress\":\"203.0.113.%d\","
			 "\"eventID\":\"id-%d\"}",
			 i, (i / 60) % 60, i % 60, i % 250, i);
	assert_true(n > 0 && (size_t)n < size);
	return (size_t)n;
}

/* ---- a fully populated event ---- */

static const char full_event[] =
	"{\"eventVersion\":\"1.08\","
	"\"userIdentity\":{\"type\":\"AssumedRole\",\"principalId\":\"AROAEXAMPLE:my-fn\","
	"\"arn\":\"arn:aws:sts::111122223333:assumed-role/my-fn-role/my-fn\","
	"\"accountId\":\"111122223333\",\"accessKeyId\":\"ASIAEXAMPLEKEY00001\","
	"\"invokedBy\":\"lambda.amazonaws.com\",\"sessionContext\":{\"sessionIssuer\":{"
	"\"type\":\"Role\",\"principalId\":\"AROAEXAMPLE\","
	"\"arn\":\"arn:aws:iam::111122223333:role/my-fn-role\",\"accountId\":\"111122223333\","
	"\"userName\":\"my-fn-role\"},\"webIdFederationData\":{},"
	"\"attributes\":{\"creationDate\":\"2023-07-10T12:25:32Z\",\"mfaAuthenticated\":\"false\"}},"
	"\"ignoredNumber\":5},"
	"\"eventTime\":\"2023-07-10T12:25:32.896Z\",\"eventSource\":\"sts.amazonaws.com\","
	"\"eventName\":\"AssumeRole\",\"awsRegion\":\"us-east-1\","
	"\"sourceIPAddress\":\"203.0.113.7\",\"userAgent\":\"aws-cli/2.13.0 \\\"quoted\\\" \\u00e9\","
	"\"errorCode\":\"AccessDenied\","
	"\"requestParameters\":{\"roleArn\":\"arn:aws:iam::111122223333:role/target\","
	"\"roleSessionName\":\"awslambda_744_20230710122532896\",\"role\":\"target\","
	"\"functionName\":\"my-fn\",\"durationSeconds\":3600},"
	"\"responseElements\":{\"credentials\":{\"accessKeyId\":\"ASIANEWKEY000000001\","
	"\"sessionToken\":\"IQoJb3JpZ2luX2VjEC0a\",\"expiration\":\"Jul 10, 2023, 2:25:32 PM\"},"
	"\"assumedRoleUser\":{\"arn\":\"x\"}},"
	"\"requestID\":\"35e443bf-c4ea-4c91-b478-9247f9d96e8d\","
	"\"eventID\":\"ce4cf2a2-1f5c-4d6b-9bde-4e5a0cd0d8f1\",\"readOnly\":true,"
	"\"eventType\":\"AwsApiCall\",\"managementEvent\":true,"
	"\"recipientAccountId\":\"444455556666\",\"vpcEndpointId\":\"vpce-0123456789abcdef0\","
	"\"vpcEndpointAccountId\":\"777788889999\",\"eventCategory\":\"Management\","
	"\"tlsDetails\":{\"tlsVersion\":\"TLSv1.2\"},"
	"\"bigNumber\":123456789012345678901234567890,\"nested\":[[[[{\"a\":[1,2,{}]}]]]]}";

static void check_full_event(const struct th_event *ev)
{
	assert_int_equal(ev->event_time_ms, 1688991932896LL);
	assert_string_equal(ev->event_time, "2023-07-10T12:25:32.896Z");
	assert_string_equal(ev->event_id, "ce4cf2a2-1f5c-4d6b-9bde-4e5a0cd0d8f1");
	assert_string_equal(ev->event_source, "sts.amazonaws.com");
	assert_string_equal(ev->event_name, "AssumeRole");
	assert_string_equal(ev->aws_region, "us-east-1");
	assert_string_equal(ev->source_ip, "203.0.113.7");
	assert_string_equal(ev->user_agent, "aws-cli/2.13.0 \"quoted\" \xc3\xa9");
	assert_string_equal(ev->recipient_account_id, "444455556666");
	assert_string_equal(ev->error_code, "AccessDenied");
	assert_string_equal(ev->vpc_endpoint_id, "vpce-0123456789abcdef0");
	assert_string_equal(ev->vpc_endpoint_account_id, "777788889999");
	assert_string_equal(ev->ui.type, "AssumedRole");
	assert_string_equal(ev->ui.arn, "arn:aws:sts::111122223333:assumed-role/my-fn-role/my-fn");
	assert_string_equal(ev->ui.account_id, "111122223333");
	assert_string_equal(ev->ui.access_key_id, "ASIAEXAMPLEKEY00001");
	assert_string_equal(ev->ui.invoked_by, "lambda.amazonaws.com");
	assert_string_equal(ev->ui.principal_id, "AROAEXAMPLE:my-fn");
	assert_string_equal(ev->ui.session_issuer_arn, "arn:aws:iam::111122223333:role/my-fn-role");
	assert_string_equal(ev->ui.creation_date, "2023-07-10T12:25:32Z");
	assert_int_equal(ev->ui.creation_ms, 1688991932000LL);
	assert_string_equal(ev->req.role_arn, "arn:aws:iam::111122223333:role/target");
	assert_string_equal(ev->req.role_session_name, "awslambda_744_20230710122532896");
	assert_string_equal(ev->req.role, "target");
	assert_string_equal(ev->req.function_name, "my-fn");
	assert_string_equal(ev->cred.access_key_id, "ASIANEWKEY000000001");
	assert_string_equal(ev->cred.expiration, "Jul 10, 2023, 2:25:32 PM");
	assert_int_equal(ev->cred.expiration_ms, 1688999132000LL);
	assert_string_equal(th_event_account(ev), "111122223333");
	assert_string_equal(th_event_session_name(ev), "my-fn");
}

static void test_full_event(void **state)
{
	struct th_parser *p;
	struct th_event ev;
	enum th_reject why = TH_REJECT_NONE;
	char detail[256] = "";
	size_t n = strlen(full_event);
	char *b = padded(full_event, n);
	(void)state;

	E(th_parser_new(&p, 0));
	E(th_parser_parse(p, b, n, &ev, &why, detail, sizeof(detail)));
	check_full_event(&ev);

	/* The same record through the framing entry point. */
	struct seen s = {0};
	assert_int_equal(feed(p, full_event, n, 42, &s), 0);
	assert_int_equal(s.nrej, 0);
	assert_int_equal(s.nev, 1);
	assert_int_equal(s.ev[0].offset, 42);
	free(b);
	th_parser_destroy(p);
}

/* Strings of an event stay valid after the input buffer is gone (they are
 * copies), until the next parse. */
static void test_strings_are_copies(void **state)
{
	struct th_parser *p;
	struct th_event ev;
	enum th_reject why;
	size_t n = strlen(full_event);
	char *b = padded(full_event, n);
	(void)state;

	E(th_parser_new(&p, 0));
	E(th_parser_parse(p, b, n, &ev, &why, NULL, 0));
	memset(b, 'x', n);
	free(b);
	check_full_event(&ev);
	th_parser_destroy(p);
}

/* ---- accepted variants: one field checked per row ---- */

static const char *field_of(const struct th_event *ev, const char *name)
{
	if (strcmp(name, "eventID") == 0)
		return ev->event_id;
	if (strcmp(name, "eventName") == 0)
		return ev->event_name;
	if (strcmp(name, "userAgent") == 0)
		return ev->user_agent;
	if (strcmp(name, "userIdentity.type") == 0)
		return ev->ui.type;
	if (strcmp(name, "userIdentity.accessKeyId") == 0)
		return ev->ui.access_key_id;
	if (strcmp(name, "requestParameters.roleArn") == 0)
		return ev->req.role_arn;
	if (strcmp(name, "credentials.accessKeyId") == 0)
		return ev->cred.access_key_id;
	if (strcmp(name, "account") == 0)
		return th_event_account(ev);
	fail_msg("unknown field %s", name);
	return NULL;
}

#define REQ "\"eventTime\":\"2023-07-10T12:25:32Z\",\"eventSource\":\"s\",\"eventName\":\"N\""

static const struct accept_case {
	const char *name, *json, *field, *want; /* want NULL: the field is absent */
} accept_cases[] = {
	{"null userIdentity is absent", "{" REQ ",\"userIdentity\":null}", "userIdentity.type", NULL},
	{"null string is absent", "{" REQ ",\"userAgent\":null}", "userAgent", NULL},
	/* Request and response shapes vary by service: a type we do not expect
	 * there is ignored, not a rejection. */
	{"requestParameters as a string", "{" REQ ",\"requestParameters\":\"x\"}",
	 "requestParameters.roleArn", NULL},
	{"requestParameters.roleArn as an object", "{" REQ ",\"requestParameters\":{\"roleArn\":{}}}",
	 "requestParameters.roleArn", NULL},
	{"responseElements as a string", "{" REQ ",\"responseElements\":\"ok\"}",
	 "credentials.accessKeyId", NULL},
	{"credentials as a string", "{" REQ ",\"responseElements\":{\"credentials\":\"x\"}}",
	 "credentials.accessKeyId", NULL},
	{"escapes and \\u sequences", "{" REQ ",\"userAgent\":\"a\\\"b\\\\c\\/d\\u00e9\\ud83d\\ude00\"}",
	 "userAgent", "a\"b\\c/d\xc3\xa9\xf0\x9f\x98\x80"},
	{"escaped key", "{" REQ ",\"user\\u0041gent\":\"ua\"}", "userAgent", "ua"},
	{"whitespace everywhere", " {\n\t\"eventName\" : \"X\" ,\r\n \"eventTime\":\"2023-07-10T12:25:32Z\","
				  "\"eventSource\":\"s\" } \n",
	 "eventName", "X"},
	{"unknown deep nesting",
	 "{" REQ ",\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[{}]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],"
	 "\"eventID\":\"deep\"}",
	 "eventID", "deep"},
	{"huge integers elsewhere", "{" REQ ",\"n\":1e999,\"m\":-123456789012345678901234567890}",
	 "eventName", "N"},
	{"account from recipientAccountId", "{" REQ ",\"recipientAccountId\":\"123456789012\"}",
	 "account", "123456789012"},
	/* S3 data events name an anonymous caller instead of an account. */
	{"anonymous S3 caller", "{" REQ ",\"userIdentity\":{\"type\":\"AWSAccount\","
				"\"accountId\":\"ANONYMOUS_PRINCIPAL\"}}",
	 "account", "ANONYMOUS_PRINCIPAL"},
	{"UTF-8 byte-order mark before the record", "\xEF\xBB\xBF{" REQ ",\"eventID\":\"bom\"}",
	 "eventID", "bom"},
	{"CloudTrail's first day", "{\"eventTime\":\"2013-11-01T00:00:00Z\",\"eventSource\":\"s\","
				   "\"eventName\":\"First\"}",
	 "eventName", "First"},
	{"UTF-8 in values", "{" REQ ",\"userAgent\":\"\xe6\x97\xa5\xe6\x9c\xac\"}", "userAgent",
	 "\xe6\x97\xa5\xe6\x9c\xac"},
	/* A lone UTF-16 surrogate escape is how a Java JSON writer (CloudTrail's)
	 * renders a caller's string that holds one: the caller chose it, so it
	 * must not cost the event. It reads as U+FFFD, valid UTF-8 downstream. */
	{"lone high surrogate in userAgent", "{" REQ ",\"userAgent\":\"a\\ud800b\"}", "userAgent",
	 "a\xef\xbf\xbd" "b"},
	{"lone low surrogate in userAgent", "{" REQ ",\"userAgent\":\"\\udc00\"}", "userAgent",
	 "\xef\xbf\xbd"},
	{"high surrogate at the end", "{" REQ ",\"userAgent\":\"x\\uD83D\"}", "userAgent",
	 "x\xef\xbf\xbd"},
	{"high surrogate then a non-low escape",
	 "{" REQ ",\"userAgent\":\"\\ud83d\\u00e9\\ud83d\\ud83d\\ude00\"}", "userAgent",
	 "\xef\xbf\xbd\xc3\xa9\xef\xbf\xbd\xf0\x9f\x98\x80"},
	{"lone surrogate in requestParameters.roleArn",
	 "{" REQ ",\"requestParameters\":{\"roleArn\":\"arn:\\udfff\"}}",
	 "requestParameters.roleArn", "arn:\xef\xbf\xbd"},
	{"other escapes", "{" REQ ",\"userAgent\":\"\\b\\f\\n\\r\\t\\u00E9\\u0041\"}", "userAgent",
	 "\b\f\n\r\t\xc3\xa9" "A"},
	/* A key no field of ours can be is skipped, whatever its escapes. */
	{"lone surrogate in a requestParameters key",
	 "{" REQ ",\"requestParameters\":{\"\\ud800\":\"x\",\"roleArn\":\"r\"}}",
	 "requestParameters.roleArn", "r"},
	{"lone surrogate in a top-level key", "{" REQ ",\"\\udbff\":1,\"eventID\":\"k\"}", "eventID",
	 "k"},
};

static void test_accept_table(void **state)
{
	struct th_parser *p;
	(void)state;

	E(th_parser_new(&p, 0));
	for (size_t i = 0; i < TH_ARRAY_SIZE(accept_cases); i++) {
		const struct accept_case *c = &accept_cases[i];
		size_t n = strlen(c->json);
		char *b = padded(c->json, n);
		struct th_event ev;
		enum th_reject why = TH_REJECT_NONE;
		char detail[256] = "";
		int rc = th_parser_parse(p, b, n, &ev, &why, detail, sizeof(detail));
		if (rc)
			fail_msg("%s: rejected as %s: %s", c->name, th_reject_name(why), detail);
		const char *got = field_of(&ev, c->field);
		if (c->want == NULL && got != NULL)
			fail_msg("%s: %s = \"%s\", want absent", c->name, c->field, got);
		if (c->want && (!got || strcmp(got, c->want) != 0))
			fail_msg("%s: %s = \"%s\", want \"%s\"", c->name, c->field, got ? got : "(null)",
				 c->want);
		free(b);
	}
	th_parser_destroy(p);
}

/* A missing eventID is synthesized from the record's bytes: stable across runs
 * and different for different records, so alert IDs stay deterministic. */
static void test_synthesized_event_id(void **state)
{
	static const char a[] = "{" REQ "}", b2[] = "{" REQ ",\"x\":1}";
	struct th_parser *p;
	struct th_event ev;
	enum th_reject why;
	char first[64];
	(void)state;

	E(th_parser_new(&p, 0));
	char *b = padded(a, strlen(a));
	E(th_parser_parse(p, b, strlen(a), &ev, &why, NULL, 0));
	assert_non_null(ev.event_id);
	assert_memory_equal(ev.event_id, "th-", 3);
	snprintf(first, sizeof(first), "%s", ev.event_id);
	E(th_parser_parse(p, b, strlen(a), &ev, &why, NULL, 0));
	assert_string_equal(ev.event_id, first);
	free(b);
	b = padded(b2, strlen(b2));
	E(th_parser_parse(p, b, strlen(b2), &ev, &why, NULL, 0));
	assert_string_not_equal(ev.event_id, first);
	free(b);
	th_parser_destroy(p);
}

/* ---- rejections: one row per class ---- */

#define BAD_UTF8 "\xff"

static const struct reject_case {
	const char *name, *json;
	enum th_reject why;
	size_t record_max; /* 0: default */
	bool feed_only;    /* only meaningful for a top-level value */
} reject_cases[] = {
	{"syntax error", "{" REQ ",\"x\":}", TH_REJECT_MALFORMED_JSON, 0, false},
	{"missing colon", "{\"eventTime\" \"2023-07-10T12:25:32Z\"}", TH_REJECT_MALFORMED_JSON, 0,
	 false},
	{"truncated in a string", "{" REQ ",\"userAgent\":\"aws-c", TH_REJECT_MALFORMED_JSON, 0, false},
	{"truncated after a value", "{" REQ ",\"userAgent\":\"aws-cli\"", TH_REJECT_MALFORMED_JSON, 0,
	 false},
	{"truncated nested", "{" REQ ",\"userIdentity\":{\"type\":\"Root\"}", TH_REJECT_MALFORMED_JSON,
	 0, false},
	{"trailing garbage", "{" REQ "} x", TH_REJECT_MALFORMED_JSON, 0, false},
	{"eventName is a number", "{\"eventTime\":\"2023-07-10T12:25:32Z\",\"eventSource\":\"s\","
				  "\"eventName\":42}",
	 TH_REJECT_WRONG_TYPE, 0, false},
	{"eventTime is a number", "{\"eventTime\":1688991932,\"eventSource\":\"s\",\"eventName\":\"N\"}",
	 TH_REJECT_WRONG_TYPE, 0, false},
	{"userIdentity is a string", "{" REQ ",\"userIdentity\":\"AssumedRole\"}",
	 TH_REJECT_WRONG_TYPE, 0, false},
	{"userIdentity is an array", "{" REQ ",\"userIdentity\":[]}", TH_REJECT_WRONG_TYPE, 0, false},
	{"userIdentity.accessKeyId is a number", "{" REQ ",\"userIdentity\":{\"accessKeyId\":12345}}",
	 TH_REJECT_WRONG_TYPE, 0, false},
	{"sessionIssuer.arn is an object",
	 "{" REQ ",\"userIdentity\":{\"sessionContext\":{\"sessionIssuer\":{\"arn\":{}}}}}",
	 TH_REJECT_WRONG_TYPE, 0, false},
	{"too large", "{" REQ ",\"userAgent\":\"0123456789012345678901234567890123456789\"}",
	 TH_REJECT_TOO_LARGE, 100, false},
	{"invalid UTF-8 in a value", "{" REQ ",\"userAgent\":\"a" BAD_UTF8 "b\"}",
	 TH_REJECT_INVALID_UTF8, 0, false},
	{"overlong UTF-8", "{" REQ ",\"userAgent\":\"\xc0\xaf\"}", TH_REJECT_INVALID_UTF8, 0, false},
	{"UTF-16 surrogate in UTF-8", "{" REQ ",\"userAgent\":\"\xed\xa0\x80\"}",
	 TH_REJECT_INVALID_UTF8, 0, false},
	{"unknown escape in a value", "{" REQ ",\"userAgent\":\"a\\xb\"}", TH_REJECT_MALFORMED_JSON, 0,
	 false},
	{"short \\u escape in a value", "{" REQ ",\"userAgent\":\"\\u00g0\"}",
	 TH_REJECT_MALFORMED_JSON, 0, false},
	{"invalid UTF-8 in an ignored key", "{" REQ ",\"x" BAD_UTF8 "\":1}", TH_REJECT_INVALID_UTF8, 0,
	 false},
	{"missing eventTime", "{\"eventSource\":\"s\",\"eventName\":\"N\"}", TH_REJECT_MISSING_FIELD, 0,
	 false},
	{"missing eventSource", "{\"eventTime\":\"2023-07-10T12:25:32Z\",\"eventName\":\"N\"}",
	 TH_REJECT_MISSING_FIELD, 0, false},
	{"missing eventName", "{\"eventTime\":\"2023-07-10T12:25:32Z\",\"eventSource\":\"s\"}",
	 TH_REJECT_MISSING_FIELD, 0, false},
	{"eventName null", "{\"eventTime\":\"2023-07-10T12:25:32Z\",\"eventSource\":\"s\","
			   "\"eventName\":null}",
	 TH_REJECT_MISSING_FIELD, 0, false},
	{"empty object", "{}", TH_REJECT_MISSING_FIELD, 0, false},
	{"Feb 30", "{\"eventTime\":\"2023-02-30T00:00:00Z\",\"eventSource\":\"s\",\"eventName\":\"N\"}",
	 TH_REJECT_BAD_TIMESTAMP, 0, false},
	{"hour 24", "{\"eventTime\":\"2023-07-10T24:00:00Z\",\"eventSource\":\"s\",\"eventName\":\"N\"}",
	 TH_REJECT_BAD_TIMESTAMP, 0, false},
	{"garbage time", "{\"eventTime\":\"yesterday\",\"eventSource\":\"s\",\"eventName\":\"N\"}",
	 TH_REJECT_BAD_TIMESTAMP, 0, false},
	{"scalar number", "42", TH_REJECT_NOT_CLOUDTRAIL, 0, false},
	{"scalar string", "\"AssumeRole\"", TH_REJECT_NOT_CLOUDTRAIL, 0, false},
	{"scalar null", "null", TH_REJECT_NOT_CLOUDTRAIL, 0, false},
	{"other EventBridge detail-type",
	 "{\"version\":\"0\",\"id\":\"1\",\"detail-type\":\"EC2 Instance State-change Notification\","
	 "\"source\":\"aws.ec2\",\"detail\":{\"instance-id\":\"i-1\",\"state\":\"running\"}}",
	 TH_REJECT_NOT_CLOUDTRAIL, 0, true},
	{"EventBridge envelope without detail",
	 "{\"detail-type\":\"AWS API Call via CloudTrail\",\"source\":\"aws.sts\"}",
	 TH_REJECT_NOT_CLOUDTRAIL, 0, true},
	{"Records is not an array", "{\"Records\":{}}", TH_REJECT_WRONG_TYPE, 0, true},
	{"detail-type that only contains via CloudTrail",
	 "{\"detail-type\":\"Not via CloudTrail at all\",\"detail\":{" REQ "}}",
	 TH_REJECT_NOT_CLOUDTRAIL, 0, true},
	/* spec v2 §5: event-time bounds */
	{"eventTime in 9999", "{\"eventTime\":\"9999-01-01T00:00:00Z\",\"eventSource\":\"s\","
			      "\"eventName\":\"N\"}",
	 TH_REJECT_EVENT_TIME_OUT_OF_RANGE, 0, false},
	{"eventTime in 1970", "{\"eventTime\":\"1970-01-01T00:00:00Z\",\"eventSource\":\"s\","
			      "\"eventName\":\"N\"}",
	 TH_REJECT_EVENT_TIME_OUT_OF_RANGE, 0, false},
	{"eventTime a second before CloudTrail",
	 "{\"eventTime\":\"2013-10-31T23:59:59Z\",\"eventSource\":\"s\",\"eventName\":\"N\"}",
	 TH_REJECT_EVENT_TIME_OUT_OF_RANGE, 0, false},
	/* spec v2 §5: account IDs are 12 digits */
	{"13-digit accountId", "{" REQ ",\"userIdentity\":{\"accountId\":\"1234567890123\"}}",
	 TH_REJECT_INVALID_IDENTIFIER, 0, false},
	{"11-digit accountId", "{" REQ ",\"userIdentity\":{\"accountId\":\"12345678901\"}}",
	 TH_REJECT_INVALID_IDENTIFIER, 0, false},
	{"non-digit recipientAccountId", "{" REQ ",\"recipientAccountId\":\"12345678901a\"}",
	 TH_REJECT_INVALID_IDENTIFIER, 0, false},
	{"empty recipientAccountId", "{" REQ ",\"recipientAccountId\":\"\"}",
	 TH_REJECT_INVALID_IDENTIFIER, 0, false},
	{"sessionIssuer.accountId with spaces",
	 "{" REQ ",\"userIdentity\":{\"sessionContext\":{\"sessionIssuer\":{\"accountId\":"
	 "\" 123456789012\"}}}}",
	 TH_REJECT_INVALID_IDENTIFIER, 0, false},
	{"vpcEndpointAccountId not digits", "{" REQ ",\"vpcEndpointAccountId\":\"AWS Internal\"}",
	 TH_REJECT_INVALID_IDENTIFIER, 0, false},
	{"Unicode digits in accountId",
	 "{" REQ ",\"userIdentity\":{\"accountId\":\"12345678901\xd9\xa1\"}}",
	 TH_REJECT_INVALID_IDENTIFIER, 0, false},
};

static void test_reject_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < TH_ARRAY_SIZE(reject_cases); i++) {
		const struct reject_case *c = &reject_cases[i];
		struct th_parser *p;
		size_t n = strlen(c->json);

		E(th_parser_new(&p, c->record_max));
		if (!c->feed_only) {
			char *b = padded(c->json, n);
			struct th_event ev;
			enum th_reject why = TH_REJECT_NONE;
			char detail[256] = "";
			int rc = th_parser_parse(p, b, n, &ev, &why, detail, sizeof(detail));
			if (rc != TH_EPARSE || why != c->why)
				fail_msg("%s: th_parser_parse rc=%d why=%s, want %s", c->name, rc,
					 th_reject_name(why), th_reject_name(c->why));
			if (!detail[0])
				fail_msg("%s: no detail", c->name);
			free(b);
		}
		/* The same record as a whole top-level value (a Kafka message). */
		struct seen s = {0};
		assert_int_equal(feed(p, c->json, n, 1000, &s), 0);
		if (s.nev != 0 || s.nrej != 1 || s.rej[0].why != c->why || s.rej[0].offset != 1000) {
			dump(&s);
			fail_msg("%s: th_parser_feed: %d events, %d rejects, want one %s", c->name,
				 s.nev, s.nrej, th_reject_name(c->why));
		}
		th_parser_destroy(p);
	}
}

/* ---- timestamps ---- */

static const struct iso_case {
	const char *s;
	int64_t ms; /* -1: rejected */
} iso_cases[] = {
	{"2023-07-10T12:25:32Z", 1688991932000LL},
	{"2023-07-10T12:25:32.896Z", 1688991932896LL},
	{"2023-07-10T12:25:32.5Z", 1688991932500LL},
	{"2023-07-10T12:25:32.05Z", 1688991932050LL},
	{"2023-07-10T12:25:32.007Z", 1688991932007LL},
	{"2023-07-10T12:25:32.999999999Z", 1688991932999LL}, /* truncated, not rounded */
	{"2023-07-10T12:25:32+00:00", 1688991932000LL},
	{"2023-07-10T12:25:32.123+00:00", 1688991932123LL},
	{"2024-02-29T00:00:00Z", 1709164800000LL},
	{"2023-12-31T23:59:59Z", 1704067199000LL},
	{"1970-01-01T00:00:00Z", 0},
	{"2023-02-30T00:00:00Z", -1},
	{"2023-02-29T00:00:00Z", -1},
	{"2023-07-10T24:00:00Z", -1},
	{"2023-07-10T12:60:00Z", -1},
	{"2023-13-01T00:00:00Z", -1},
	{"2023-00-01T00:00:00Z", -1},
	{"2023-07-00T00:00:00Z", -1},
	{"2023-07-10T12:25:32", -1},
	{"2023-07-10T12:25:32+01:00", -1}, /* only UTC is CloudTrail's */
	{"2023-07-10T12:25:32.Z", -1},
	{"2023-07-10T12:25:32ZZ", -1},
	{"2023-07-10 12:25:32Z", -1},
	{"2023-7-10T12:25:32Z", -1},
	{"2023-07-10T12:25:3aZ", -1},
	{"1969-12-31T23:59:59Z", -1},
	{"", -1},
	{"garbage", -1},
};

static void test_iso_table(void **state)
{
	struct th_parser *p;
	(void)state;

	E(th_parser_new(&p, 0));
	for (size_t i = 0; i < TH_ARRAY_SIZE(iso_cases); i++) {
		const struct iso_case *c = &iso_cases[i];
		int64_t ms = -42;
		int rc = th_time_parse_iso(c->s, strlen(c->s), &ms);
		if (c->ms < 0 ? rc != TH_EPARSE : (rc != 0 || ms != c->ms))
			fail_msg("\"%s\": rc=%d ms=%lld, want %lld", c->s, rc, (long long)ms,
				 (long long)c->ms);

		/* The same through a record's eventTime. */
		char json[256];
		int n = snprintf(json, sizeof(json),
				 "{\"eventTime\":\"%s\",\"eventSource\":\"s\",\"eventName\":\"N\"}", c->s);
		char *b = padded(json, (size_t)n);
		struct th_event ev;
		enum th_reject why = TH_REJECT_NONE;
		rc = th_parser_parse(p, b, (size_t)n, &ev, &why, NULL, 0);
		/* Valid times before CloudTrail's launch are out of range (spec v2 §5). */
		if (c->ms >= 0 && c->ms < TH_EVENT_TIME_MIN_MS) {
			if (rc != TH_EPARSE || why != TH_REJECT_EVENT_TIME_OUT_OF_RANGE)
				fail_msg("eventTime \"%s\": rc=%d why=%s, want out of range", c->s,
					 rc, th_reject_name(why));
		} else if (c->ms < 0 ? (rc != TH_EPARSE || why != TH_REJECT_BAD_TIMESTAMP)
				     : (rc != 0 || ev.event_time_ms != c->ms))
			fail_msg("eventTime \"%s\": rc=%d why=%s", c->s, rc, th_reject_name(why));
		free(b);
	}
	th_parser_destroy(p);
}

static const struct exp_case {
	const char *s;
	int64_t ms; /* -1: rejected */
} exp_cases[] = {
	{"Jul 10, 2023, 2:25:32 PM", 1688999132000LL},
	{"Aug 26, 2019 11:15:26 PM", 1566861326000LL},
	{"Jul 10, 2023, 12:25:32 PM", 1688991932000LL}, /* 12 PM is noon */
	{"Jan 1, 2024, 12:00:00 AM", 1704067200000LL},  /* 12 AM is midnight */
	{"Jan 1, 2024, 12:59:59 AM", 1704070799000LL},
	{"Jan 1, 2024, 12:30:00 PM", 1704112200000LL},
	{"Jan 1, 2024, 1:00:00 AM", 1704070800000LL},
	{"Dec 31, 2023, 11:59:59 PM", 1704067199000LL},
	{"Jan 1, 2024 12:00:00 AM", 1704067200000LL},
	{"2023-07-10T14:25:32Z", 1688999132000LL}, /* ISO also accepted */
	{"Jan 1, 2024, 0:00:00 AM", -1},           /* a 12-hour clock has no hour 0 */
	{"Jan 1, 2024, 13:00:00 PM", -1},
	{"Jan 1, 2024, 1:00:00", -1},
	{"Jan 1, 2024, 1:00:00 XM", -1},
	{"Jan 1, 2024, 1:00:00 PM extra", -1},
	{"Feb 30, 2024, 1:00:00 AM", -1},
	{"Foo 1, 2024, 1:00:00 AM", -1},
	{"anF 1, 2024, 1:00:00 AM", -1},
	{"jul 10, 2023, 2:25:32 PM", -1},
	{"Jul 10, 2023, 2:60:32 PM", -1},
	{"Jul 10, 2023, 2:-5:32 PM", -1},
	{"Jul 10, 2023, 2:25:-1 PM", -1},
	{"", -1},
};

static void test_expiration_table(void **state)
{
	struct th_parser *p;
	(void)state;

	E(th_parser_new(&p, 0));
	for (size_t i = 0; i < TH_ARRAY_SIZE(exp_cases); i++) {
		const struct exp_case *c = &exp_cases[i];
		int64_t ms = -42;
		int rc = th_time_parse_expiration(c->s, strlen(c->s), &ms);
		if (c->ms < 0 ? rc != TH_EPARSE : (rc != 0 || ms != c->ms))
			fail_msg("\"%s\": rc=%d ms=%lld, want %lld", c->s, rc, (long long)ms,
				 (long long)c->ms);

		/* In a record an unparsable expiration is 0, never a rejection: it is
		 * not needed to judge the event itself. */
		char json[256];
		int n = snprintf(json, sizeof(json),
				 "{" REQ ",\"responseElements\":{\"credentials\":{\"expiration\":\"%s\"}}}",
				 c->s);
		char *b = padded(json, (size_t)n);
		struct th_event ev;
		enum th_reject why = TH_REJECT_NONE;
		E(th_parser_parse(p, b, (size_t)n, &ev, &why, NULL, 0));
		assert_int_equal(ev.cred.expiration_ms, c->ms < 0 ? 0 : c->ms);
		free(b);
	}
	th_parser_destroy(p);
}

static void test_time_format(void **state)
{
	static const struct {
		int64_t ms;
		const char *s;
	} rows[] = {
		{0, "1970-01-01T00:00:00Z"},
		{1688991932000LL, "2023-07-10T12:25:32Z"},
		{1688991932896LL, "2023-07-10T12:25:32.896Z"},
		{1709164800007LL, "2024-02-29T00:00:00.007Z"},
	};
	(void)state;
	for (size_t i = 0; i < TH_ARRAY_SIZE(rows); i++) {
		char buf[32];
		int64_t back;
		th_time_format(rows[i].ms, buf, sizeof(buf));
		assert_string_equal(buf, rows[i].s);
		E(th_time_parse_iso(buf, strlen(buf), &back));
		assert_int_equal(back, rows[i].ms);
	}
}

/* ---- framing through th_parser_feed ---- */

static const char ev_a[] = "{" REQ ",\"eventID\":\"a\"}";
static const char ev_b[] = "{" REQ ",\"eventID\":\"b\"}";
static const char ev_c[] = "{" REQ ",\"eventID\":\"c\"}";

static void test_records_with_bad_record(void **state)
{
	static const struct {
		const char *name, *bad;
		enum th_reject why;
	} rows[] = {
		{"missing field", "{\"eventTime\":\"2023-07-10T12:25:32Z\",\"eventSource\":\"s\"}",
		 TH_REJECT_MISSING_FIELD},
		{"wrong type", "{" REQ ",\"userIdentity\":\"x\"}", TH_REJECT_WRONG_TYPE},
		{"bad timestamp", "{\"eventTime\":\"2023-02-30T00:00:00Z\",\"eventSource\":\"s\","
				  "\"eventName\":\"N\"}",
		 TH_REJECT_BAD_TIMESTAMP},
		/* The next ones fail simdjson for the whole document: the structural
		 * fallback must still deliver the neighbours. (A record with unbalanced
		 * brackets is beyond it: the split loses the container's structure and
		 * reports the rest once.) */
		{"invalid UTF-8", "{" REQ ",\"userAgent\":\"" BAD_UTF8 "\"}", TH_REJECT_INVALID_UTF8},
		{"key without a value", "{" REQ ",\"x\"}", TH_REJECT_MALFORMED_JSON},
		{"missing colon", "{" REQ ",\"x\" 1}", TH_REJECT_MALFORMED_JSON},
		{"not an object", "17", TH_REJECT_NOT_CLOUDTRAIL},
	};
	static const char *const want[] = {"a", "b", "c"};
	struct th_parser *p;
	(void)state;

	E(th_parser_new(&p, 0));
	for (size_t i = 0; i < TH_ARRAY_SIZE(rows); i++) {
		char doc[1024];
		int n = snprintf(doc, sizeof(doc),
				 "{\"Records\":[\n%s,\n%s,\n%s,\n%s\n],\"x\":\"trailing key\"}", ev_a,
				 ev_b, rows[i].bad, ev_c);
		struct seen s = {0};
		assert_int_equal(feed(p, doc, (size_t)n, 500, &s), 0);
		print_message("Records with a %s record\n", rows[i].name);
		expect_ids(&s, want, 3);
		assert_int_equal(s.ev[0].offset, 500 + offset_of(doc, ev_a));
		assert_int_equal(s.ev[2].offset, 500 + offset_of(doc, ev_c));
		if (s.nrej != 1 || s.rej[0].why != rows[i].why)
			dump(&s);
		assert_int_equal(s.nrej, 1);
		assert_int_equal(s.rej[0].why, rows[i].why);
		assert_int_equal(s.rej[0].offset, 500 + offset_of(doc, rows[i].bad));
	}
	th_parser_destroy(p);
}

static void test_records_and_arrays(void **state)
{
	static const char *const abc[] = {"a", "b", "c"};
	struct th_parser *p;
	char doc[1024];
	int n;
	(void)state;

	E(th_parser_new(&p, 0));

	/* An S3 log file object, with other keys around Records. */
	n = snprintf(doc, sizeof(doc), "{\"x\":[1,{\"y\":2}],\"Records\":[%s,%s,%s]}", ev_a, ev_b,
		     ev_c);
	struct seen s1 = {0};
	assert_int_equal(feed(p, doc, (size_t)n, 0, &s1), 0);
	expect_ids(&s1, abc, 3);
	assert_int_equal(s1.nrej, 0);
	assert_int_equal(s1.ev[1].offset, offset_of(doc, ev_b));

	struct seen s2 = {0};
	assert_int_equal(feed(p, "{\"Records\":[]}", 14, 0, &s2), 0);
	assert_int_equal(s2.nev + s2.nrej, 0);

	/* A top-level array, pretty-printed. */
	n = snprintf(doc, sizeof(doc), "[\n  %s,\n  %s,\n  %s\n]\n", ev_a, ev_b, ev_c);
	struct seen s3 = {0};
	assert_int_equal(feed(p, doc, (size_t)n, 10, &s3), 0);
	expect_ids(&s3, abc, 3);
	assert_int_equal(s3.nrej, 0);
	assert_int_equal(s3.ev[2].offset, 10 + offset_of(doc, ev_c));

	/* An array with a non-object element and a bad record. */
	n = snprintf(doc, sizeof(doc), "[%s,\"str\",%s,{\"eventName\":\"N\"},%s]", ev_a, ev_b, ev_c);
	struct seen s4 = {0};
	assert_int_equal(feed(p, doc, (size_t)n, 0, &s4), 0);
	expect_ids(&s4, abc, 3);
	assert_int_equal(s4.nrej, 2);
	assert_int_equal(s4.by_reason[TH_REJECT_NOT_CLOUDTRAIL], 1);
	assert_int_equal(s4.by_reason[TH_REJECT_MISSING_FIELD], 1);

	/* An array with invalid UTF-8 in one record: the fallback splits it. */
	n = snprintf(doc, sizeof(doc), "[%s,{" REQ ",\"k\":\"" BAD_UTF8 "\"},%s,%s]", ev_a, ev_b,
		     ev_c);
	struct seen s5 = {0};
	assert_int_equal(feed(p, doc, (size_t)n, 0, &s5), 0);
	expect_ids(&s5, abc, 3);
	assert_int_equal(s5.nrej, 1);
	assert_int_equal(s5.rej[0].why, TH_REJECT_INVALID_UTF8);
	assert_int_equal(s5.ev[1].offset, offset_of(doc, ev_b));

	/* A Records array cut short: the complete records survive, the rest is
	 * reported once. */
	n = snprintf(doc, sizeof(doc), "{\"Records\":[%s,%s,{\"eventSource\":\"cu", ev_a, ev_b);
	struct seen s6 = {0};
	assert_int_equal(feed(p, doc, (size_t)n, 0, &s6), 0);
	expect_ids(&s6, abc, 2);
	assert_int_equal(s6.nrej, 1);
	assert_int_equal(s6.rej[0].why, TH_REJECT_MALFORMED_JSON);
	assert_int_equal(s6.rej[0].offset, offset_of(doc, "{\"eventSource\":\"cu"));

	th_parser_destroy(p);
}

static void test_eventbridge(void **state)
{
	static const char *const a[] = {"a"};
	struct th_parser *p;
	char doc[1024];
	int n;
	(void)state;

	E(th_parser_new(&p, 0));
	n = snprintf(doc, sizeof(doc),
		     "{\"version\":\"0\",\"id\":\"6a7e8feb\",\"detail-type\":\"AWS API Call via "
		     "CloudTrail\",\"source\":\"aws.sts\",\"account\":\"111122223333\","
		     "\"time\":\"2023-07-10T12:25:32Z\",\"region\":\"us-east-1\",\"resources\":[],"
		     "\"detail\":%s}",
		     ev_a);
	struct seen s1 = {0};
	assert_int_equal(feed(p, doc, (size_t)n, 7, &s1), 0);
	expect_ids(&s1, a, 1);
	assert_int_equal(s1.nrej, 0);
	assert_int_equal(s1.ev[0].offset, 7 + offset_of(doc, ev_a));

	/* Key order is not guaranteed: detail before detail-type. */
	n = snprintf(doc, sizeof(doc),
		     "{\"detail\":%s,\"source\":\"aws.sts\",\"detail-type\":\"AWS API Call via "
		     "CloudTrail\"}",
		     ev_a);
	struct seen s2 = {0};
	assert_int_equal(feed(p, doc, (size_t)n, 0, &s2), 0);
	expect_ids(&s2, a, 1);

	/* A bad event inside a good envelope is reported as the event's fault. */
	n = snprintf(doc, sizeof(doc),
		     "{\"detail-type\":\"AWS API Call via CloudTrail\",\"detail\":{\"eventTime\":"
		     "\"2023-07-10T12:25:32Z\",\"eventSource\":\"s\"}}");
	struct seen s3 = {0};
	assert_int_equal(feed(p, doc, (size_t)n, 0, &s3), 0);
	assert_int_equal(s3.nev, 0);
	assert_int_equal(s3.nrej, 1);
	assert_int_equal(s3.rej[0].why, TH_REJECT_MISSING_FIELD);

	/* Every "... via CloudTrail" detail-type carries a CloudTrail record. */
	static const char *const via[] = {"AWS Console Sign In via CloudTrail",
					  "AWS Service Event via CloudTrail",
					  "AWS Console Action via CloudTrail"};
	for (size_t i = 0; i < TH_ARRAY_SIZE(via); i++) {
		n = snprintf(doc, sizeof(doc), "{\"detail-type\":\"%s\",\"detail\":%s}", via[i],
			     ev_a);
		struct seen s4 = {0};
		assert_int_equal(feed(p, doc, (size_t)n, 0, &s4), 0);
		if (s4.nev != 1)
			fail_msg("detail-type \"%s\" not accepted", via[i]);
		expect_ids(&s4, a, 1);
	}
	th_parser_destroy(p);
}


/* A detail quotes the bad value cut on a character boundary: dead letters
 * carry it as a JSON string, which must stay valid UTF-8. */
static bool valid_utf8(const char *s)
{
	const unsigned char *u = (const unsigned char *)s;
	while (*u) {
		int n = *u < 0x80 ? 0 : (*u & 0xE0) == 0xC0 ? 1 : (*u & 0xF0) == 0xE0 ? 2 : (*u & 0xF8) == 0xF0 ? 3 : -1;
		if (n < 0)
			return false;
		u++;
		for (; n > 0; n--, u++)
			if ((*u & 0xC0) != 0x80)
				return false;
	}
	return true;
}

static void test_detail_is_valid_utf8(void **state)
{
	struct th_parser *p;
	(void)state;
	E(th_parser_new(&p, 0));
	for (int shift = 0; shift < 3; shift++) {
		char json[512], val[200] = "";
		size_t n = 0;
		for (int i = 0; i < shift; i++)
			val[n++] = 'x';
		for (int i = 0; i < 40; i++) {
			memcpy(val + n, "\xe2\x82\xac", 3); /* the euro sign */
			n += 3;
		}
		val[n] = '\0';
		const char *const fmts[] = {
			"{\"eventTime\":\"%s\",\"eventSource\":\"s\",\"eventName\":\"N\"}",
			"{" REQ ",\"recipientAccountId\":\"%s\"}",
		};
		for (size_t f = 0; f < TH_ARRAY_SIZE(fmts); f++) {
			int len = snprintf(json, sizeof(json), fmts[f], val);
			char *b = padded(json, (size_t)len);
			struct th_event ev;
			enum th_reject why;
			char detail[256] = "";
			assert_int_equal(th_parser_parse(p, b, (size_t)len, &ev, &why, detail, sizeof(detail)),
					 TH_EPARSE);
			if (!valid_utf8(detail))
				fail_msg("detail not UTF-8: %s", detail);
			free(b);
		}
		/* An EventBridge envelope of another detail-type (PutEvents takes
		 * any text) is rejected naming it: cut on a character too. */
		int len = snprintf(json, sizeof(json), "{\"detail-type\":\"%s\",\"detail\":{}}", val);
		struct seen s = {0};
		assert_int_equal(feed(p, json, (size_t)len, 0, &s), 0);
		assert_int_equal(s.nrej, 1);
		assert_int_equal(s.rej[0].why, TH_REJECT_NOT_CLOUDTRAIL);
		if (!valid_utf8(s.rej[0].detail))
			fail_msg("envelope detail not UTF-8 (shift %d): %s", shift, s.rej[0].detail);
	}
	th_parser_destroy(p);
}

/* ---- spec v2 §5: event-time bounds against the wall clock ---- */

static int parse_at(struct th_parser *p, int64_t ms, enum th_reject *why)
{
	char t[40], json[200];
	struct th_event ev;
	th_time_format(ms, t, sizeof(t));
	int n = snprintf(json, sizeof(json),
			 "{\"eventTime\":\"%s\",\"eventSource\":\"s\",\"eventName\":\"N\"}", t);
	char *b = padded(json, (size_t)n);
	*why = TH_REJECT_NONE;
	int rc = th_parser_parse(p, b, (size_t)n, &ev, why, NULL, 0);
	free(b);
	return rc;
}

static void test_event_time_future_bound(void **state)
{
	struct th_parser *p;
	enum th_reject why;
	struct timespec ts;
	(void)state;

	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t now = (int64_t)ts.tv_sec * 1000;
	E(th_parser_new(&p, 0));
	/* the default skew is an hour: half an hour ahead passes, two hours do not */
	E(parse_at(p, now + 1800 * 1000LL, &why));
	assert_int_equal(parse_at(p, now + 7200 * 1000LL, &why), TH_EPARSE);
	assert_int_equal(why, TH_REJECT_EVENT_TIME_OUT_OF_RANGE);
	/* a tighter bound */
	th_parser_set_max_future_skew(p, 60 * 1000);
	assert_int_equal(parse_at(p, now + 1800 * 1000LL, &why), TH_EPARSE);
	assert_int_equal(why, TH_REJECT_EVENT_TIME_OUT_OF_RANGE);
	/* 0 disables the future bound, not the lower one */
	th_parser_set_max_future_skew(p, 0);
	E(parse_at(p, now + 7200 * 1000LL, &why));
	E(parse_at(p, 253402300799000LL, &why)); /* 9999-12-31T23:59:59Z */
	assert_int_equal(parse_at(p, TH_EVENT_TIME_MIN_MS - 1000, &why), TH_EPARSE);
	assert_int_equal(why, TH_REJECT_EVENT_TIME_OUT_OF_RANGE);
	E(parse_at(p, TH_EVENT_TIME_MIN_MS, &why));
	th_parser_destroy(p);
}

/* A log file holds only records written before its delivery: the bound
 * counts from the delivery time too, so it holds in a backtest whose wall
 * clock is months past the archive. */
static void test_event_time_after_delivery(void **state)
{
	struct th_parser *p;
	enum th_reject why;
	int64_t delivered;
	(void)state;

	assert_true(th_archive_s3_name(
		"111122223333_CloudTrail_us-east-1_20260302T0905Z_0123456789abcdef.json.gz",
		&delivered));
	E(th_parser_new(&p, 0));
	E(parse_at(p, delivered + 40 * 86400 * 1000LL, &why)); /* unknown delivery: taken */
	th_parser_set_delivered(p, delivered);
	E(parse_at(p, delivered - 86400 * 1000LL, &why)); /* late delivery is normal */
	E(parse_at(p, delivered + 1800 * 1000LL, &why));  /* within the skew */
	assert_int_equal(parse_at(p, delivered + 40 * 86400 * 1000LL, &why), TH_EPARSE);
	assert_int_equal(why, TH_REJECT_EVENT_TIME_OUT_OF_RANGE);
	/* the reason names the delivery, not the wall clock */
	char t[40], json[200], detail[256] = "";
	struct th_event ev;
	th_time_format(delivered + 7200 * 1000LL, t, sizeof(t));
	int n = snprintf(json, sizeof(json),
			 "{\"eventTime\":\"%s\",\"eventSource\":\"s\",\"eventName\":\"N\"}", t);
	char *b = padded(json, (size_t)n);
	assert_int_equal(th_parser_parse(p, b, (size_t)n, &ev, &why, detail, sizeof(detail)),
			 TH_EPARSE);
	free(b);
	assert_non_null(strstr(detail, "delivery"));
	/* 0 skew disables this bound as it does the wall clock's */
	th_parser_set_max_future_skew(p, 0);
	E(parse_at(p, delivered + 40 * 86400 * 1000LL, &why));
	th_parser_set_max_future_skew(p, 3600 * 1000LL);
	/* the next file, of unknown delivery */
	th_parser_set_delivered(p, INT64_MIN);
	E(parse_at(p, delivered + 40 * 86400 * 1000LL, &why));
	th_parser_destroy(p);
}

/* ---- spec v2 §5: identifier sizes, every legal length accepted ---- */

static const struct id_case {
	const char *name;
	const char *source;        /* eventSource */
	const char *before, *after; /* JSON around the identifier */
	const char *prefix;        /* the identifier's start; padded with 'a' to len */
	size_t len;
	enum th_reject why; /* TH_REJECT_NONE: accepted */
} id_cases[] = {
#define UI_ARN "{\"userIdentity\":{\"arn\":\""
#define ROLE_ARN "{\"requestParameters\":{\"roleArn\":\""
#define ARN_PFX "arn:aws:iam::111122223333:role/"
	{"600-char role ARN (512-char path)", "sts.amazonaws.com", ROLE_ARN, "\"}", ARN_PFX, 600,
	 TH_REJECT_NONE},
	/* 1023: the most a principal ARN may have, TH_ARN_SIZE - 1 (see parser.cpp) */
	{"1023-char role ARN", "sts.amazonaws.com", ROLE_ARN, "\"}", ARN_PFX, 1023, TH_REJECT_NONE},
	{"1024-char role ARN", "sts.amazonaws.com", ROLE_ARN, "\"}", ARN_PFX, 1024,
	 TH_REJECT_IDENTIFIER_TOO_LONG},
	{"2049-char role ARN", "sts.amazonaws.com", ROLE_ARN, "\"}", ARN_PFX, 2049,
	 TH_REJECT_IDENTIFIER_TOO_LONG},
	{"2049-char role ARN of another service", "glue.amazonaws.com", ROLE_ARN, "\"}", ARN_PFX,
	 2049, TH_REJECT_NONE},
	{"1023-char userIdentity.arn", "s3.amazonaws.com", UI_ARN, "\"}", ARN_PFX, 1023,
	 TH_REJECT_NONE},
	{"1024-char userIdentity.arn", "s3.amazonaws.com", UI_ARN, "\"}", ARN_PFX, 1024,
	 TH_REJECT_IDENTIFIER_TOO_LONG},
	{"1024-char sessionIssuer.arn", "s3.amazonaws.com",
	 "{\"userIdentity\":{\"sessionContext\":{\"sessionIssuer\":{\"arn\":\"", "\"}}}", ARN_PFX,
	 1024, TH_REJECT_IDENTIFIER_TOO_LONG},
	{"1024-char lambda role", "lambda.amazonaws.com", "{\"requestParameters\":{\"role\":\"", "\"}",
	 ARN_PFX, 1024, TH_REJECT_IDENTIFIER_TOO_LONG},
	{"2049-char userIdentity.arn", "s3.amazonaws.com", UI_ARN, "\"}", ARN_PFX, 2049,
	 TH_REJECT_IDENTIFIER_TOO_LONG},
	{"2049-char sessionIssuer.arn", "s3.amazonaws.com",
	 "{\"userIdentity\":{\"sessionContext\":{\"sessionIssuer\":{\"arn\":\"", "\"}}}", ARN_PFX,
	 2049, TH_REJECT_IDENTIFIER_TOO_LONG},
	{"2049-char lambda role", "lambda.amazonaws.com", "{\"requestParameters\":{\"role\":\"", "\"}",
	 ARN_PFX, 2049, TH_REJECT_IDENTIFIER_TOO_LONG},
	{"128-char access key", "s3.amazonaws.com", "{\"userIdentity\":{\"accessKeyId\":\"", "\"}",
	 "ASIA", 128, TH_REJECT_NONE},
	{"129-char access key", "s3.amazonaws.com", "{\"userIdentity\":{\"accessKeyId\":\"", "\"}",
	 "ASIA", 129, TH_REJECT_IDENTIFIER_TOO_LONG},
	{"129-char issued access key", "sts.amazonaws.com",
	 "{\"responseElements\":{\"credentials\":{\"accessKeyId\":\"", "\"}}", "ASIA", 129,
	 TH_REJECT_IDENTIFIER_TOO_LONG},
	{"64-char session name", "sts.amazonaws.com", "{\"requestParameters\":{\"roleSessionName\":\"",
	 "\"}", "s", 64, TH_REJECT_NONE},
	{"65-char session name", "sts.amazonaws.com", "{\"requestParameters\":{\"roleSessionName\":\"",
	 "\"}", "s", 65, TH_REJECT_IDENTIFIER_TOO_LONG},
	{"170-char function ARN", "lambda.amazonaws.com",
	 "{\"requestParameters\":{\"functionName\":\"", "\"}",
	 "arn:aws:lambda:us-east-1:111122223333:function:", 170, TH_REJECT_NONE},
	{"171-char function ARN", "lambda.amazonaws.com",
	 "{\"requestParameters\":{\"functionName\":\"", "\"}",
	 "arn:aws:lambda:us-east-1:111122223333:function:", 171, TH_REJECT_IDENTIFIER_TOO_LONG},
	/* A call AWS refused carries the parameters its caller chose, of any
	 * length (a ValidationError names the one over the limit); nothing is
	 * learned from them, and the call itself (by a stolen key, perhaps) must
	 * still be judged. */
#define REFUSED "\"},\"errorCode\":\"ValidationError\""
	{"65-char session name of a refused AssumeRole", "sts.amazonaws.com",
	 "{\"requestParameters\":{\"roleSessionName\":\"", REFUSED, "s", 65, TH_REJECT_NONE},
	{"2049-char role ARN of a refused AssumeRole", "sts.amazonaws.com", ROLE_ARN, REFUSED, ARN_PFX,
	 2049, TH_REJECT_NONE},
	{"171-char function name of a refused Lambda call", "lambda.amazonaws.com",
	 "{\"requestParameters\":{\"functionName\":\"", REFUSED, "f", 171, TH_REJECT_NONE},
	{"2049-char lambda role of a refused CreateFunction", "lambda.amazonaws.com",
	 "{\"requestParameters\":{\"role\":\"", REFUSED, ARN_PFX, 2049, TH_REJECT_NONE},
	/* The caller's own identity is AWS's, refused call or not. */
	{"129-char access key of a refused call", "sts.amazonaws.com",
	 "{\"userIdentity\":{\"accessKeyId\":\"", REFUSED, "ASIA", 129,
	 TH_REJECT_IDENTIFIER_TOO_LONG},
#undef REFUSED
#undef UI_ARN
#undef ROLE_ARN
#undef ARN_PFX
};

static void test_identifier_sizes(void **state)
{
	struct th_parser *p;
	(void)state;

	E(th_parser_new(&p, 0));
	for (size_t i = 0; i < TH_ARRAY_SIZE(id_cases); i++) {
		const struct id_case *c = &id_cases[i];
		char id[4096], json[8192];
		size_t pl = strlen(c->prefix);
		assert_true(c->len < sizeof(id) && pl <= c->len);
		memcpy(id, c->prefix, pl);
		memset(id + pl, 'a', c->len - pl);
		id[c->len] = '\0';
		/* the identifier object is the first member; the required fields follow */
		int n = snprintf(json, sizeof(json),
				 "%.*s%s%s,\"eventTime\":\"2023-07-10T12:25:32Z\",\"eventSource\":"
				 "\"%s\",\"eventName\":\"AssumeRole\"}",
				 (int)strlen(c->before) - 1, c->before + 1, id, c->after, c->source);
		assert_true(n > 0 && (size_t)n < sizeof(json));
		/* "{" + before-without-its-"{" */
		char doc[8200];
		int m = snprintf(doc, sizeof(doc), "{%s", json);
		assert_true(m > 0 && (size_t)m < sizeof(doc));
		struct seen s = {0};
		assert_int_equal(feed(p, doc, (size_t)m, 0, &s), 0);
		if (c->why == TH_REJECT_NONE ? s.nev != 1
					     : (s.nrej != 1 || s.rej[0].why != c->why)) {
			dump(&s);
			fail_msg("%s: want %s", c->name,
				 c->why ? th_reject_name(c->why) : "accepted");
		}
	}
	th_parser_destroy(p);
}

/* th_parser_feed takes exactly one value: a second object after it is
 * trailing content (th_input splits such lines before calling it). */
static void test_feed_two_objects(void **state)
{
	struct th_parser *p;
	char doc[512];
	int n;
	(void)state;

	E(th_parser_new(&p, 0));
	n = snprintf(doc, sizeof(doc), "%s %s", ev_a, ev_b);
	struct seen s = {0};
	assert_int_equal(feed(p, doc, (size_t)n, 0, &s), 0);
	assert_int_equal(s.nev, 0);
	assert_int_equal(s.nrej, 1);
	assert_int_equal(s.rej[0].why, TH_REJECT_MALFORMED_JSON);
	th_parser_destroy(p);
}

/* Whitespace around a value (a Kafka message ending in a newline) is not
 * part of the record: raw, offset and the synthesized eventID are those of
 * the bare object. Found by fuzzing. */
static void test_feed_whitespace(void **state)
{
	static const char bare[] = "{" REQ "}";
	static const char wrapped[] = " \r\n\t{" REQ "}\n\n ";
	struct th_parser *p;
	(void)state;

	E(th_parser_new(&p, 0));
	struct seen s1 = {0}, s2 = {0};
	assert_int_equal(feed(p, bare, strlen(bare), 0, &s1), 0);
	assert_int_equal(feed(p, wrapped, strlen(wrapped), 100, &s2), 0); /* seen_event checks raw */
	assert_int_equal(s1.nev, 1);
	assert_int_equal(s2.nev, 1);
	assert_string_equal(s1.ev[0].id, s2.ev[0].id);
	assert_int_equal(s2.ev[0].offset, 104);
	th_parser_destroy(p);
}

/* A non-zero on_event return stops the container and comes back to the caller. */
static void test_feed_stop(void **state)
{
	struct th_parser *p;
	char doc[1024];
	int n;
	(void)state;

	E(th_parser_new(&p, 0));
	n = snprintf(doc, sizeof(doc), "{\"Records\":[%s,%s,%s]}", ev_a, ev_b, ev_c);
	struct seen s = {.stop_after = 2};
	assert_int_equal(feed(p, doc, (size_t)n, 0, &s), 7);
	assert_int_equal(s.nev, 2);

	/* Also from the fallback path. */
	n = snprintf(doc, sizeof(doc), "[%s,%s,{\"x\":\"" BAD_UTF8 "\"},%s]", ev_a, ev_b, ev_c);
	struct seen s2 = {.stop_after = 1};
	assert_int_equal(feed(p, doc, (size_t)n, 0, &s2), 7);
	assert_int_equal(s2.nev, 1);
	th_parser_destroy(p);
}

/* ---- th_input over temporary files ---- */

static char *write_tmp(const char *data, size_t n, bool gz)
{
	const char *dir = getenv("TMPDIR");
	size_t plen = strlen(dir ? dir : "/tmp") + 32;
	char *path = malloc(plen);
	assert_non_null(path);
	snprintf(path, plen, "%s/th_event_XXXXXX", dir ? dir : "/tmp");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	if (gz) {
		gzFile g = gzdopen(fd, "wb");
		assert_non_null(g);
		if (n)
			assert_int_equal(gzwrite(g, data, (unsigned)n), (int)n);
		assert_int_equal(gzclose(g), Z_OK);
	} else {
		size_t done = 0;
		while (done < n) {
			ssize_t w = write(fd, data + done, n - done);
			assert_true(w > 0);
			done += (size_t)w;
		}
		close(fd);
	}
	return path;
}

/* Runs a whole input; returns th_input_run's result. */
static int run_input(const char *data, size_t n, bool gz, size_t record_max, size_t doc_max,
		     struct seen *s)
{
	char *path = write_tmp(data, n, gz);
	struct th_input *in = NULL;
	struct th_parser *p;
	struct th_sink sink = {seen_event, seen_reject, s};
	char errstr[256] = "";

	E(th_parser_new(&p, record_max));
	int rc = th_input_open(&in, path, doc_max, errstr, sizeof(errstr));
	if (rc)
		fail_msg("th_input_open: %s", errstr);
	rc = th_input_run(in, p, &sink);
	th_input_close(in);
	th_parser_destroy(p);
	unlink(path);
	free(path);
	return rc;
}

/* A growable text buffer for building inputs. */
struct text {
	char *p;
	size_t n, cap;
};

static void put(struct text *t, const char *s, size_t n)
{
	if (t->n + n + 1 > t->cap) {
		t->cap = (t->n + n + 1) * 2;
		t->p = realloc(t->p, t->cap);
		assert_non_null(t->p);
	}
	memcpy(t->p + t->n, s, n);
	t->n += n;
	t->p[t->n] = '\0';
}

static void puts_(struct text *t, const char *s)
{
	put(t, s, strlen(s));
}

/* Lines id-0 .. id-(n-1); line `cut` (if >= 0) replaced by its first `keep`
 * bytes followed by `tail`. Returns the offset of the cut line. */
static uint64_t jsonl(struct text *t, int n, int cut, size_t keep, const char *tail)
{
	uint64_t cut_off = 0;
	for (int i = 0; i < n; i++) {
		char line[512];
		size_t len = small_event(line, sizeof(line), i);
		if (i == cut) {
			cut_off = t->n;
			put(t, line, keep);
			puts_(t, tail);
			continue;
		}
		put(t, line, len);
		puts_(t, "\n");
	}
	return cut_off;
}

static void expect_all_but(const struct seen *s, int n, int missing)
{
	int j = 0;
	if (s->nev != (missing >= 0 ? n - 1 : n))
		dump(s);
	assert_int_equal(s->nev, missing >= 0 ? n - 1 : n);
	for (int i = 0; i < n; i++) {
		char id[32];
		if (i == missing)
			continue;
		snprintf(id, sizeof(id), "id-%d", i);
		assert_string_equal(s->ev[j].id, id);
		j++;
	}
}

static void test_input_jsonl(void **state)
{
	struct text t = {0};
	(void)state;
	jsonl(&t, 20, -1, 0, NULL);
	for (int gz = 0; gz <= 1; gz++) {
		struct seen s = {0};
		E(run_input(t.p, t.n, gz, 0, 0, &s));
		expect_all_but(&s, 20, -1);
		assert_int_equal(s.nrej, 0);
		/* Offsets are of the uncompressed stream. */
		assert_int_equal(s.ev[0].offset, 0);
		assert_int_equal(s.ev[1].offset, offset_of(t.p, "{\"eventVersion\":\"1.08\","
							      "\"userIdentity\":{\"type\":\"AssumedRole\","
							      "\"accessKeyId\":\"ASIA0000000000000001"));
	}
	/* CRLF line ends and blank lines. */
	struct text c = {0};
	for (int i = 0; i < 3; i++) {
		char line[512];
		put(&c, line, small_event(line, sizeof(line), i));
		puts_(&c, "\r\n\r\n");
	}
	struct seen s = {0};
	E(run_input(c.p, c.n, false, 0, 0, &s));
	expect_all_but(&s, 3, -1);
	assert_int_equal(s.nrej, 0);
	free(c.p);
	free(t.p);
}

static void test_input_pretty(void **state)
{
	static const char pretty_events[] =
		"{\n"
		"  \"eventTime\": \"2023-07-10T12:25:32Z\",\n"
		"  \"userIdentity\": {\n"
		"    \"type\": \"AssumedRole\",\n"
		"    \"sessionContext\": {\"attributes\": {\"creationDate\": \"2023-07-10T12:00:00Z\"}}\n"
		"  },\n"
		"  \"eventSource\": \"sts.amazonaws.com\",\n"
		"  \"eventName\": \"GetCallerIdentity\",\n"
		"  \"eventID\": \"p1\"\n"
		"}\n"
		"{\n"
		"  \"eventTime\": \"2023-07-10T12:25:33Z\", \"eventSource\": \"s\",\n"
		"  \"eventName\": \"N\", \"eventID\": \"p2\"\n"
		"}\n";
	static const char pretty_records[] =
		"{\n"
		"  \"Records\": [\n"
		"    {\n"
		"      \"eventTime\": \"2023-07-10T12:25:32Z\",\n"
		"      \"eventSource\": \"s\", \"eventName\": \"N\", \"eventID\": \"r1\"\n"
		"    },\n"
		"    {\n"
		"      \"eventTime\": \"2023-07-10T12:25:33Z\",\n"
		"      \"eventSource\": \"s\", \"eventName\": \"N\", \"eventID\": \"r2\"\n"
		"    }\n"
		"  ]\n"
		"}\n"
		"[\n"
		"  {\"eventTime\": \"2023-07-10T12:25:34Z\", \"eventSource\": \"s\", \"eventName\": "
		"\"N\", \"eventID\": \"r3\"}\n"
		"]\n";
	static const char *const want1[] = {"p1", "p2"};
	static const char *const want2[] = {"r1", "r2", "r3"};
	(void)state;

	for (int gz = 0; gz <= 1; gz++) {
		struct seen s = {0};
		E(run_input(pretty_events, strlen(pretty_events), gz, 0, 0, &s));
		expect_ids(&s, want1, 2);
		assert_int_equal(s.nrej, 0);
		assert_int_equal(s.ev[1].offset, offset_of(pretty_events, "{\n  \"eventTime\": "
									  "\"2023-07-10T12:25:33Z\""));

		struct seen s2 = {0};
		E(run_input(pretty_records, strlen(pretty_records), gz, 0, 0, &s2));
		expect_ids(&s2, want2, 3);
		assert_int_equal(s2.nrej, 0);
	}
}

/* A pretty-printed record cut short costs that record, not one report per
 * remaining line of it, nor its neighbours in a container. */
static void test_input_pretty_cut(void **state)
{
	static const char events[] =
		"{\n"
		"  \"eventTime\": \"2023-07-10T12:25:32Z\",\n"
		"  \"eventSource\": \"s\", \"eventName\": \"N\", \"eventID\": \"p1\"\n"
		"}\n"
		"{\n"
		"  \"eventTime\": \"2023-07-10T12:25:32Z\",\n"
		"  \"userAgent\": \"aws-cli/2.1\n" /* cut inside the string */
		"  \"eventSource\": \"s\", \"eventName\": \"N\", \"eventID\": \"p2\"\n"
		"}\n"
		"{\n"
		"  \"eventTime\": \"2023-07-10T12:25:32Z\",\n"
		"  \"eventSource\": \"s\", \"eventName\": \"N\", \"eventID\": \"p3\"\n"
		"}\n";
	static const char records[] =
		"{\"Records\": [\n"
		"    {\n"
		"      \"eventTime\": \"2023-07-10T12:25:32Z\",\n"
		"      \"eventSource\": \"s\", \"eventName\": \"N\", \"eventID\": \"r1\"\n"
		"    },\n"
		"    {\n"
		"      \"eventTime\": \"2023-07-10T12:25:32Z\",\n"
		"      \"userIdentity\": {\n" /* the rest of this record is lost */
		"    {\n"
		"      \"eventTime\": \"2023-07-10T12:25:32Z\",\n"
		"      \"eventSource\": \"s\", \"eventName\": \"N\", \"eventID\": \"r3\"\n"
		"    },\n"
		"    {\n"
		"      \"eventTime\": \"2023-07-10T12:25:32Z\",\n"
		"      \"userAgent\": \"cut in a str\n"
		"    {\n"
		"      \"eventTime\": \"2023-07-10T12:25:32Z\",\n"
		"      \"eventSource\": \"s\", \"eventName\": \"N\", \"eventID\": \"r5\"\n"
		"    }\n"
		"]}\n";
	static const char *const want1[] = {"p1", "p3"};
	static const char *const want2[] = {"r1", "r3", "r5"};
	(void)state;

	for (int gz = 0; gz <= 1; gz++) {
		struct seen s = {0};
		E(run_input(events, strlen(events), gz, 0, 0, &s));
		expect_ids(&s, want1, 2);
		if (s.nrej != 1)
			dump(&s);
		assert_int_equal(s.nrej, 1);
		assert_int_equal(s.rej[0].offset, offset_of(events, "{\n  \"eventTime\": "
								  "\"2023-07-10T12:25:32Z\",\n  \"userAgent"));

		struct seen s2 = {0};
		E(run_input(records, strlen(records), gz, 0, 0, &s2));
		expect_ids(&s2, want2, 3);
		if (s2.nrej != 2)
			dump(&s2);
		assert_int_equal(s2.nrej, 2);
		assert_int_equal(s2.rej[0].offset,
				 offset_of(records, "{\n      \"eventTime\": \"2023-07-10T12:25:32Z\",\n"
						    "      \"userIdentity"));
		assert_int_equal(s2.rej[1].offset,
				 offset_of(records, "{\n      \"eventTime\": \"2023-07-10T12:25:32Z\",\n"
						    "      \"userAgent"));
	}
}

/* Objects back to back on one line, with and without a space. */
static void test_input_two_per_line(void **state)
{
	static const char *const want[] = {"a", "b", "c", "a", "b"};
	struct text t = {0};
	(void)state;
	puts_(&t, ev_a);
	puts_(&t, " ");
	puts_(&t, ev_b);
	puts_(&t, ev_c);
	puts_(&t, "\n");
	puts_(&t, ev_a);
	puts_(&t, "\t");
	puts_(&t, ev_b);
	puts_(&t, "\n");
	struct seen s = {0};
	E(run_input(t.p, t.n, false, 0, 0, &s));
	expect_ids(&s, want, 5);
	assert_int_equal(s.nrej, 0);
	assert_int_equal(s.ev[1].offset, strlen(ev_a) + 1);
	assert_int_equal(s.ev[2].offset, strlen(ev_a) + 1 + strlen(ev_b));
	free(t.p);
}

/* A cut line in the middle of JSON lines costs exactly that record, however
 * it was cut. */
static void test_input_truncated_line(void **state)
{
	static const struct {
		const char *name;
		size_t keep;
		const char *tail;
	} rows[] = {
		{"inside a string", 120, "\n"},
		{"after a comma", 0, NULL}, /* keep is computed: up to the comma before eventSource */
		{"after a nested object", 0, NULL},
		{"inside a key", 3, "\n"},
		{"just the brace", 1, "\n"},
	};
	char line[512];
	size_t len = small_event(line, sizeof(line), 5);
	(void)state;

	for (size_t r = 0; r < TH_ARRAY_SIZE(rows); r++) {
		size_t keep = rows[r].keep;
		const char *tail = rows[r].tail;
		if (r == 1) {
			keep = (size_t)offset_of(line, ",\"eventSource\"") + 1;
			tail = "\n";
		} else if (r == 2) {
			keep = (size_t)offset_of(line, ",\"eventTime\"");
			tail = "\n";
		}
		assert_true(keep < len);
		for (int gz = 0; gz <= 1; gz++) {
			struct text t = {0};
			struct seen s = {0};
			uint64_t off = jsonl(&t, 10, 5, keep, tail);
			print_message("truncated %s%s\n", rows[r].name, gz ? " (gzip)" : "");
			E(run_input(t.p, t.n, gz, 0, 0, &s));
			expect_all_but(&s, 10, 5);
			if (s.nrej != 1)
				dump(&s);
			assert_int_equal(s.nrej, 1);
			assert_int_equal(s.rej[0].why, TH_REJECT_MALFORMED_JSON);
			assert_int_equal(s.rej[0].offset, off);
			free(t.p);
		}
	}
}

#define X40 "0123456789012345678901234567890123456789"

/* Bad records of every class between good lines: each is reported with its
 * line's offset, the others are parsed. */
static void test_input_bad_lines(void **state)
{
	static const struct {
		const char *line;
		enum th_reject why;
	} bad[] = {
		{"{\"eventTime\":\"2023-02-30T00:00:00Z\",\"eventSource\":\"s\",\"eventName\":\"N\"}",
		 TH_REJECT_BAD_TIMESTAMP},
		{"{" REQ ",\"userAgent\":\"" BAD_UTF8 "\"}", TH_REJECT_INVALID_UTF8},
		{"{" REQ ",\"eventName\":7}", TH_REJECT_WRONG_TYPE},
		{"{\"eventSource\":\"s\",\"eventName\":\"N\"}", TH_REJECT_MISSING_FIELD},
		{"[1]", TH_REJECT_NOT_CLOUDTRAIL}, /* reported at the element: offset + 1 */
		{"not json at all", TH_REJECT_MALFORMED_JSON},
		{"{" REQ ",\"x\":[1,2}", TH_REJECT_MALFORMED_JSON},
		{"{" REQ ",\"userAgent\":\"" X40 X40 X40 X40 X40 X40 X40 X40 X40 X40 "\"}",
		 TH_REJECT_TOO_LARGE},
	};
	struct text t = {0};
	uint64_t offs[TH_ARRAY_SIZE(bad)];
	int n = 0;
	(void)state;

	for (size_t i = 0; i < TH_ARRAY_SIZE(bad); i++) {
		char line[512];
		put(&t, line, small_event(line, sizeof(line), n++));
		puts_(&t, "\n");
		offs[i] = t.n;
		puts_(&t, bad[i].line);
		puts_(&t, "\n");
	}
	char line[512];
	put(&t, line, small_event(line, sizeof(line), n++));
	puts_(&t, "\n");

	struct seen s = {0};
	/* A record limit between the good lines' size and the long bad one. */
	E(run_input(t.p, t.n, false, 400, 0, &s));
	expect_all_but(&s, n, -1);
	if (s.nrej != (int)TH_ARRAY_SIZE(bad))
		dump(&s);
	assert_int_equal(s.nrej, TH_ARRAY_SIZE(bad));
	for (size_t i = 0; i < TH_ARRAY_SIZE(bad); i++) {
		assert_int_equal(s.rej[i].why, bad[i].why);
		assert_int_equal(s.rej[i].offset, offs[i] + (bad[i].line[0] == '[' ? 1 : 0));
	}
	free(t.p);
}

/* Input that ends inside a value: the last record is reported, the earlier
 * ones are all parsed. */
static void test_input_ends_inside_value(void **state)
{
	static const struct {
		const char *name;
		size_t keep;
	} rows[] = {
		{"inside a string", 120},
		{"after a comma", 0},
		{"at the opening brace", 1},
	};
	char line[512];
	size_t len = small_event(line, sizeof(line), 9);
	(void)state;

	for (size_t r = 0; r < TH_ARRAY_SIZE(rows); r++) {
		size_t keep = rows[r].keep ? rows[r].keep
					   : (size_t)offset_of(line, ",\"eventSource\"") + 1;
		assert_true(keep < len);
		for (int gz = 0; gz <= 1; gz++) {
			struct text t = {0};
			struct seen s = {0};
			uint64_t off = jsonl(&t, 10, 9, keep, "");
			print_message("ends %s%s\n", rows[r].name, gz ? " (gzip)" : "");
			E(run_input(t.p, t.n, gz, 0, 0, &s));
			expect_all_but(&s, 10, 9);
			if (s.nrej != 1)
				dump(&s);
			assert_int_equal(s.nrej, 1);
			assert_int_equal(s.rej[0].why, TH_REJECT_MALFORMED_JSON);
			assert_int_equal(s.rej[0].offset, off);
			free(t.p);
		}
	}

	/* A pretty-printed Records file cut short: the complete records survive. */
	static const char cut_records[] =
		"{\"Records\": [\n"
		"  {\"eventTime\": \"2023-07-10T12:25:32Z\", \"eventSource\": \"s\", \"eventName\": "
		"\"N\", \"eventID\": \"r1\"},\n"
		"  {\"eventTime\": \"2023-07-10T12:25:33Z\", \"eventSource\": \"s\", \"eventName\": "
		"\"N\", \"eventID\": \"r2\"},\n"
		"  {\"eventTime\": \"2023-07-10T12:25:34Z\", \"eventSource\": \"s\", \"eventN";
	static const char *const want[] = {"r1", "r2"};
	struct seen s = {0};
	E(run_input(cut_records, strlen(cut_records), true, 0, 0, &s));
	expect_ids(&s, want, 2);
	assert_int_equal(s.nrej, 1);
	assert_int_equal(s.rej[0].offset, offset_of(cut_records, "{\"eventTime\": \"2023-07-10T12:25:34Z\""));

	/* Empty and whitespace-only inputs are not errors. */
	struct seen e = {0};
	E(run_input("", 0, false, 0, 0, &e));
	E(run_input(" \n\n", 3, true, 0, 0, &e));
	assert_int_equal(e.nev + e.nrej, 0);
}

/* A closed input's buffers serve the next open (src/input.c's spares): a
 * file that is the start of the one read before it, cut inside a record,
 * ends in that record's reject. The bytes left in the buffer would complete
 * it exactly, at the same offsets. */
static void test_input_reused_buffer_keeps_no_stale_bytes(void **state)
{
	struct text t = {0};
	(void)state;
	jsonl(&t, 10, -1, 0, NULL);
	uint64_t rec7 = offset_of(t.p, "{\"eventVersion\":\"1.08\",\"userIdentity\":{\"type\":"
				       "\"AssumedRole\",\"accessKeyId\":\"ASIA0000000000000007");
	size_t cut = (size_t)rec7 + 120;
	for (int gz = 0; gz <= 1; gz++) {
		struct seen whole = {0}, s = {0};
		E(run_input(t.p, t.n, gz, 0, 0, &whole));
		expect_all_but(&whole, 10, -1);
		E(run_input(t.p, cut, gz, 0, 0, &s));
		if (s.nev != 7 || s.nrej != 1)
			dump(&s);
		assert_int_equal(s.nev, 7);
		assert_string_equal(s.ev[6].id, "id-6");
		assert_int_equal(s.nrej, 1);
		assert_int_equal(s.rej[0].why, TH_REJECT_MALFORMED_JSON);
		assert_int_equal(s.rej[0].offset, rec7);
	}
	free(t.p);
}

/* Large inputs: values straddle the 4 MiB read chunks; a single Records
 * document larger than a chunk grows the buffer. */
static void test_input_large(void **state)
{
	struct text t = {0};
	const int n = 60000; /* ~17 MB of JSON lines */
	(void)state;

	jsonl(&t, n, -1, 0, NULL);
	assert_true(t.n > (size_t)12 << 20);
	for (int gz = 0; gz <= 1; gz++) {
		struct seen s = {0};
		E(run_input(t.p, t.n, gz, 0, 0, &s));
		assert_int_equal(s.nev, n);
		assert_int_equal(s.nrej, 0);
	}

	/* The same events as one Records document, then one more line. */
	struct text r = {0};
	puts_(&r, "{\"Records\":[");
	for (int i = 0; i < n; i++) {
		char line[512];
		if (i)
			puts_(&r, ",");
		put(&r, line, small_event(line, sizeof(line), i));
	}
	puts_(&r, "]}\n");
	char line[512];
	put(&r, line, small_event(line, sizeof(line), n));
	puts_(&r, "\n");
	struct seen s = {0};
	E(run_input(r.p, r.n, false, 0, 0, &s));
	assert_int_equal(s.nev, n + 1);
	assert_int_equal(s.nrej, 0);

	/* Containers stream: their records are delivered as the file is read, so
	 * the document limit is never reached -- for a log file or an array. */
	for (int array = 0; array <= 1; array++) {
		if (array) {
			r.p[0] = '[';
			memset(r.p + 1, ' ', strlen("{\"Records\":[") - 1);
			char *close = strstr(r.p, "]}\n");
			assert_non_null(close);
			close[1] = ' ';
		}
		struct seen s1 = {0};
		E(run_input(r.p, r.n, false, 0, 1 << 20, &s1));
		assert_int_equal(s1.nev, n + 1);
		assert_int_equal(s1.nrej, 0);
		assert_int_equal(s1.ev[1].offset, offset_of(r.p, "},{") + 2);
	}
	free(r.p);
	free(t.p);
}

/* Log files and arrays stream: memory holds about a record, not the file; one
 * record over the limit is rejected and skipped, and the records after it count. */
static void test_input_records_stream(void **state)
{
	const int n = 20000; /* ~5.5 MB */
	(void)state;
	for (int pretty = 0; pretty <= 2; pretty++) {
		struct text r = {0};
		puts_(&r, pretty == 2 ? "[" : pretty ? "{\n  \"Records\": [\n    " : "{\"Records\":[");
		for (int i = 0; i < n; i++) {
			char line[512];
			if (i)
				puts_(&r, pretty ? ",\n    " : ",");
			if (i == 7000) {
				/* one record of 3 MB, nested and with escapes */
				puts_(&r, "{\"eventTime\":\"2023-07-10T12:25:32Z\",\"x\":[{\"a\":\"\\\"]}\",\"b\":\"");
				for (int k = 0; k < 3 << 20; k += 64)
					puts_(&r, "0123456789012345678901234567890123456789012345678901234567890123");
				puts_(&r, "\"}],\"eventSource\":\"s\",\"eventName\":\"N\"},");
			}
			put(&r, line, small_event(line, sizeof(line), i));
		}
		puts_(&r, pretty == 2 ? "]\n" : pretty ? "\n  ]\n}\n" : "]}\n");
		for (int gz = 0; gz <= 1; gz++) {
			struct seen s = {0};
			E(run_input(r.p, r.n, gz, 0, 0, &s));
			if (s.nev != n || s.nrej != 1)
				dump(&s);
			assert_int_equal(s.nev, n);
			assert_int_equal(s.nrej, 1);
			assert_int_equal(s.rej[0].why, TH_REJECT_TOO_LARGE);
			assert_int_equal(s.rej[0].offset, offset_of(r.p, "{\"eventTime\":\"2023-07-10T12:25:32Z\",\"x\""));
		}
		free(r.p);
	}
}

static void test_input_open_errors(void **state)
{
	struct th_input *in = NULL;
	char errstr[256] = "";
	(void)state;
	assert_int_equal(th_input_open(&in, "/nonexistent/th-no-such-file", 0, errstr, sizeof(errstr)),
			 TH_ENOTFOUND);
	assert_non_null(strstr(errstr, "/nonexistent/th-no-such-file"));
	/* a directory says so (it used to fail later as "input/output error") */
	errstr[0] = '\0';
	assert_int_equal(th_input_open(&in, "/", 0, errstr, sizeof(errstr)), TH_EINVAL);
	assert_non_null(strstr(errstr, "is a directory"));
	th_input_close(NULL);
	th_parser_destroy(NULL);
}


/* ---- issue 8: framing that lost or misread valid records ---- */

/* A stray '[' line before JSON lines opens no array: it alone is rejected and
 * every record after it is read (it used to swallow the rest of the file). */
static void test_input_stray_bracket(void **state)
{
	(void)state;
	for (int gz = 0; gz <= 1; gz++) {
		struct text t = {0};
		puts_(&t, "[\n");
		jsonl(&t, 1000, -1, 0, NULL);
		struct seen s = {0};
		E(run_input(t.p, t.n, gz, 0, 0, &s));
		if (s.nev != 1000 || s.nrej != 1)
			dump(&s);
		assert_int_equal(s.nev, 1000);
		assert_int_equal(s.nrej, 1);
		assert_int_equal(s.rej[0].offset, 0);
		assert_string_equal(s.ev[0].id, "id-0");
		free(t.p);
	}
	/* A real array after the stray line's records still reads as an array, and
	 * an array whose elements lack commas after the first keeps those before. */
	static const char mixed[] =
		"[\n"
		"{\"eventTime\":\"2023-07-10T12:25:32Z\",\"eventSource\":\"s\",\"eventName\":\"N\","
		"\"eventID\":\"a\"}\n"
		"[{\"eventTime\":\"2023-07-10T12:25:32Z\",\"eventSource\":\"s\",\"eventName\":\"N\","
		"\"eventID\":\"b\"},\n"
		"{\"eventTime\":\"2023-07-10T12:25:32Z\",\"eventSource\":\"s\",\"eventName\":\"N\","
		"\"eventID\":\"c\"}\n"
		"{\"eventTime\":\"2023-07-10T12:25:32Z\",\"eventSource\":\"s\",\"eventName\":\"N\","
		"\"eventID\":\"d\"}\n";
	static const char *const want[] = {"a", "b", "c", "d"};
	struct seen m = {0};
	E(run_input(mixed, strlen(mixed), false, 0, 0, &m));
	expect_ids(&m, want, 4);
}

/* What json.dumps(event, indent=0) writes: every line in column 0, so the
 * objects of an array start there too. */
static const char indent0_event[] =
	"{\n"
	"\"eventVersion\": \"1.08\",\n"
	"\"userIdentity\": {\n"
	"\"type\": \"AssumedRole\",\n"
	"\"sessionContext\": {\n"
	"\"attributes\": {\n"
	"\"creationDate\": \"2023-07-10T12:00:00Z\"\n"
	"}\n"
	"}\n"
	"},\n"
	"\"eventTime\": \"2023-07-10T12:25:32Z\",\n"
	"\"eventSource\": \"s3.amazonaws.com\",\n"
	"\"eventName\": \"GetObject\",\n"
	"\"resources\": [\n"
	"{\n"
	"\"accountId\": \"111122223333\",\n"
	"\"ARN\": \"arn:aws:s3:::b\"\n"
	"},\n"
	"{\n"
	"\"ARN\": \"arn:aws:s3:::b/k\"\n"
	"}\n"
	"],\n"
	"\"tags\": [[\n"
	"{\n"
	"\"k\": {\n"
	"\"v\": [\n"
	"{}\n"
	"]\n"
	"}\n"
	"}\n"
	"]],\n"
	"\"eventID\": \"%s\"\n"
	"}\n";

static void test_input_indent0(void **state)
{
	(void)state;
	for (int gz = 0; gz <= 1; gz++) {
		struct text t = {0};
		char ev[2048];
		for (int i = 0; i < 14; i++) {
			char id[16];
			snprintf(id, sizeof(id), "i%d", i);
			snprintf(ev, sizeof(ev), indent0_event, id);
			puts_(&t, ev);
		}
		struct seen s = {0};
		E(run_input(t.p, t.n, gz, 0, 0, &s));
		if (s.nev != 14 || s.nrej)
			dump(&s);
		assert_int_equal(s.nev, 14);
		assert_int_equal(s.nrej, 0);
		assert_string_equal(s.ev[13].id, "i13");
		free(t.p);
	}
	/* The same inside a Records file written with indent=0. */
	struct text r = {0};
	char ev[2048];
	puts_(&r, "{\n\"Records\": [\n");
	for (int i = 0; i < 3; i++) {
		snprintf(ev, sizeof(ev), indent0_event, i == 0 ? "r0" : i == 1 ? "r1" : "r2");
		ev[strlen(ev) - 1] = '\0'; /* drop the newline */
		puts_(&r, ev);
		puts_(&r, i < 2 ? ",\n" : "\n");
	}
	puts_(&r, "]\n}\n");
	static const char *const want[] = {"r0", "r1", "r2"};
	struct seen s = {0};
	E(run_input(r.p, r.n, false, 0, 0, &s));
	expect_ids(&s, want, 3);
	assert_int_equal(s.nrej, 0);
	free(r.p);

	/* ... with its middle record cut short: that record alone is lost. */
	struct text c = {0};
	puts_(&c, "{\n\"Records\": [\n");
	for (int i = 0; i < 3; i++) {
		snprintf(ev, sizeof(ev), indent0_event, i == 0 ? "r0" : i == 1 ? "r1" : "r2");
		if (i == 1)
			*strstr(ev, "\"eventName\"") = '\0'; /* cut after "eventSource": ...,\n */
		else
			ev[strlen(ev) - 1] = '\0';
		puts_(&c, ev);
		puts_(&c, i < 2 ? (i == 1 ? "" : ",\n") : "\n");
	}
	puts_(&c, "]\n}\n");
	/* (The container's closing lines are then reported as stray text.) */
	static const char *const want2[] = {"r0", "r2"};
	struct seen s2 = {0};
	E(run_input(c.p, c.n, false, 0, 0, &s2));
	expect_ids(&s2, want2, 2);
	assert_true(s2.nrej >= 1);
	assert_int_equal(s2.rej[0].offset, offset_of(c.p, "{\n\"eventVersion\": \"1.08\",\n\"userIdentity"
							   "\": {\n\"type\": \"AssumedRole\",\n\"sessionContext"
							   "\": {\n\"attributes\": {\n\"creationDate\": \"2023-07-10"
							   "T12:00:00Z\"\n}\n}\n},\n\"eventTime\": \"2023-07-10T12:25:"
							   "32Z\",\n\"eventSource\": \"s3.amazonaws.com\",\n{"));
	for (int i = 0; i < s2.nrej; i++)
		assert_int_equal(s2.rej[i].why, TH_REJECT_MALFORMED_JSON);
	free(c.p);
}

/* A JSON line cut where a '{' could legally follow (after ',' in an array, or
 * after ':') still costs only itself: the next line is taken as a continuation
 * only on a guess, dropped when the value turns out broken. */
static void test_input_cut_where_an_object_may_follow(void **state)
{
	static const char *const tails[] = {
		"{\"a\":[{\"x\":1},",  /* after ',' in an array */
		"{\"a\":[",            /* after '[' */
		"{\"a\":",             /* after ':' */
		"{\"a\":{\"b\":[[",    /* deeper */
	};
	(void)state;
	for (size_t i = 0; i < TH_ARRAY_SIZE(tails); i++) {
		for (int last = 0; last <= 1; last++) {
			/* the cut line before the last record, or before all but one */
			int n = 12, cut = last ? n - 2 : 3;
			struct text t = {0};
			for (int k = 0; k < n; k++) {
				char line[512];
				if (k == cut) {
					puts_(&t, tails[i]);
					puts_(&t, "\n");
				}
				put(&t, line, small_event(line, sizeof(line), k));
				puts_(&t, "\n");
			}
			struct seen s = {0};
			print_message("cut \"%s\" before record %d\n", tails[i], cut);
			E(run_input(t.p, t.n, false, 0, 0, &s));
			expect_all_but(&s, n, -1);
			if (s.nrej != 1)
				dump(&s);
			assert_int_equal(s.nrej, 1);
			assert_int_equal(s.rej[0].why, TH_REJECT_MALFORMED_JSON);
			free(t.p);
		}
	}
}

/* A UTF-8 byte-order mark at the start of the file, or of a line (files joined
 * with cat), costs nothing. */
static void test_input_bom(void **state)
{
	(void)state;
	for (int gz = 0; gz <= 1; gz++) {
		struct text t = {0};
		char line[512];
		puts_(&t, "\xEF\xBB\xBF");
		for (int i = 0; i < 4; i++) {
			if (i == 2)
				puts_(&t, "\xEF\xBB\xBF");
			put(&t, line, small_event(line, sizeof(line), i));
			puts_(&t, "\n");
		}
		struct seen s = {0};
		E(run_input(t.p, t.n, gz, 0, 0, &s));
		expect_all_but(&s, 4, -1);
		assert_int_equal(s.nrej, 0);
		free(t.p);
	}
	/* a pretty-printed file with a BOM */
	char ev[2048];
	int n = snprintf(ev, sizeof(ev), "\xEF\xBB\xBF%s", indent0_event);
	char doc[2048];
	n = snprintf(doc, sizeof(doc), ev, "bom");
	static const char *const want[] = {"bom"};
	struct seen s = {0};
	E(run_input(doc, (size_t)n, false, 0, 0, &s));
	expect_ids(&s, want, 1);
	assert_int_equal(s.nrej, 0);
}

/* Text after a gzip member is read, not dropped (zlib's gzread ignores it);
 * so is a second member. */
static void test_input_gzip_then_plain(void **state)
{
	struct text a = {0}, b = {0};
	(void)state;
	jsonl(&a, 5, -1, 0, NULL);
	for (int i = 5; i < 10; i++) {
		char line[512];
		put(&b, line, small_event(line, sizeof(line), i));
		puts_(&b, "\n");
	}
	char *gz_path = write_tmp(a.p, a.n, true);
	char *gz2_path = write_tmp(b.p, b.n, true);
	for (int second_gz = 0; second_gz <= 1; second_gz++) {
		struct text all = {0};
		FILE *f = fopen(gz_path, "rb");
		assert_non_null(f);
		char chunk[4096];
		size_t n;
		while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
			put(&all, chunk, n);
		fclose(f);
		if (second_gz) {
			f = fopen(gz2_path, "rb");
			assert_non_null(f);
			while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
				put(&all, chunk, n);
			fclose(f);
		} else {
			put(&all, b.p, b.n);
		}
		struct seen s = {0};
		E(run_input(all.p, all.n, false, 0, 0, &s));
		expect_all_but(&s, 10, -1);
		assert_int_equal(s.nrej, 0);
		free(all.p);
	}
	unlink(gz_path);
	unlink(gz2_path);
	free(gz_path);
	free(gz2_path);
	free(a.p);
	free(b.p);
}

/* Over-long runs are rejected once and skipped without being buffered; the
 * records after them are read. (Memory itself is checked by the scan tests.) */
static void test_input_over_long_runs(void **state)
{
	(void)state;
	for (int kind = 0; kind < 3; kind++) {
		for (int gz = 0; gz <= 1; gz++) {
			struct text t = {0};
			char line[512];
			put(&t, line, small_event(line, sizeof(line), 0));
			puts_(&t, "\n");
			size_t big = 300000;
			char *run = malloc(big);
			assert_non_null(run);
			if (kind == 0)
				memset(run, 0, big); /* zeros, no newline */
			else if (kind == 1)
				memset(run, 'x', big); /* text, no newline */
			else {
				/* one JSON line far over the record limit */
				memset(run, 'a', big);
				memcpy(run, "{\"userAgent\":\"", 14);
				memcpy(run + big - 2, "\"}", 2);
			}
			put(&t, run, big);
			free(run);
			puts_(&t, "\n");
			for (int i = 1; i < 5; i++) {
				put(&t, line, small_event(line, sizeof(line), i));
				puts_(&t, "\n");
			}
			struct seen s = {0};
			E(run_input(t.p, t.n, gz, 1024, 0, &s));
			expect_all_but(&s, 5, -1);
			if (s.nrej != 1)
				dump(&s);
			assert_int_equal(s.nrej, 1);
			assert_int_equal(s.rej[0].why, kind == 2 ? TH_REJECT_TOO_LARGE
								 : TH_REJECT_MALFORMED_JSON);
			free(t.p);
		}
	}
}

/* A gzip stream cut short is an I/O error after the records before the cut. */
static void test_input_truncated_gzip(void **state)
{
	struct text t = {0};
	(void)state;
	jsonl(&t, 2000, -1, 0, NULL);
	char *path = write_tmp(t.p, t.n, true);
	FILE *f = fopen(path, "r+b");
	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	long size = ftell(f);
	fclose(f);
	assert_int_equal(truncate(path, size / 2), 0);

	struct th_input *in = NULL;
	struct th_parser *p;
	struct seen s = {0};
	struct th_sink sink = {seen_event, seen_reject, &s};
	char errstr[256];
	E(th_parser_new(&p, 0));
	E(th_input_open(&in, path, 0, errstr, sizeof(errstr)));
	int rc = th_input_run(in, p, &sink);
	/* zlib reports a truncated stream either as an error or as a clean end;
	 * what matters is that no record is invented and no record after the cut
	 * is claimed. */
	assert_true(rc == 0 || rc == TH_EIO);
	assert_true(s.nev < 2000);
	th_input_close(in);
	th_parser_destroy(p);
	unlink(path);
	free(path);
	free(t.p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_event),
		cmocka_unit_test(test_strings_are_copies),
		cmocka_unit_test(test_accept_table),
		cmocka_unit_test(test_synthesized_event_id),
		cmocka_unit_test(test_reject_table),
		cmocka_unit_test(test_iso_table),
		cmocka_unit_test(test_expiration_table),
		cmocka_unit_test(test_time_format),
		cmocka_unit_test(test_records_with_bad_record),
		cmocka_unit_test(test_records_and_arrays),
		cmocka_unit_test(test_eventbridge),
		cmocka_unit_test(test_event_time_future_bound),
		cmocka_unit_test(test_event_time_after_delivery),
		cmocka_unit_test(test_identifier_sizes),
		cmocka_unit_test(test_detail_is_valid_utf8),
		cmocka_unit_test(test_feed_two_objects),
		cmocka_unit_test(test_feed_whitespace),
		cmocka_unit_test(test_feed_stop),
		cmocka_unit_test(test_input_jsonl),
		cmocka_unit_test(test_input_pretty),
		cmocka_unit_test(test_input_pretty_cut),
		cmocka_unit_test(test_input_two_per_line),
		cmocka_unit_test(test_input_truncated_line),
		cmocka_unit_test(test_input_bad_lines),
		cmocka_unit_test(test_input_ends_inside_value),
		cmocka_unit_test(test_input_reused_buffer_keeps_no_stale_bytes),
		cmocka_unit_test(test_input_large),
		cmocka_unit_test(test_input_open_errors),
		cmocka_unit_test(test_input_truncated_gzip),
		cmocka_unit_test(test_input_stray_bracket),
		cmocka_unit_test(test_input_indent0),
		cmocka_unit_test(test_input_cut_where_an_object_may_follow),
		cmocka_unit_test(test_input_bom),
		cmocka_unit_test(test_input_gzip_then_plain),
		cmocka_unit_test(test_input_over_long_runs),
		cmocka_unit_test(test_input_records_stream),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

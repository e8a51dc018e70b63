/*
 * Unit tests of the bridge's AWS pieces that need no server: notification
 * parsing (S3, SNS-wrapped, CloudTrail's SNS message, test events), S3 key
 * decoding and URL encoding, XML answers, CloudTrail file names, and the
 * credential chain's environment and profile sources.
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

#include "trailhound/aws.h"
#include "trailhound/bridge.h"
#include "trailhound/common.h"

#define E(expr) assert_int_equal((expr), 0)

static struct th_s3_obj objs[8];

static int notice(const char *json, int *n)
{
	return th_aws_json_notice(json, strlen(json), objs, 8, n);
}

static void test_s3_notification(void **state)
{
	int n;
	(void)state;
	const char *j = "{\"Records\":[{\"eventName\":\"ObjectCreated:Put\",\"s3\":{\"bucket\":"
			"{\"name\":\"b\"},\"object\":{\"key\":\"AWSLogs/1/a+b%2Bc%3D.json.gz\","
			"\"eTag\":\"abc\",\"size\":3}}},"
			"{\"eventName\":\"ObjectRemoved:Delete\",\"s3\":{\"bucket\":{\"name\":\"b\"},"
			"\"object\":{\"key\":\"gone\"}}}]}";
	assert_int_equal(notice(j, &n), TH_NOTICE_OBJECTS);
	assert_int_equal(n, 1); /* removals announce no new file */
	assert_string_equal(objs[0].bucket, "b");
	/* '+' is a space, %2B a plus: notifications URL-encode keys */
	assert_string_equal(objs[0].key, "AWSLogs/1/a b+c=.json.gz");
	assert_string_equal(objs[0].etag, "abc");
}

/* S3 -> EventBridge -> SQS: one object in "detail", its ETag and version ID
 * spelled "etag" and "version-id"; only "Object Created" is a new file */
static void test_eventbridge_object_created(void **state)
{
	int n;
	(void)state;
	const char *j = "{\"version\":\"0\",\"detail-type\":\"Object Created\",\"source\":"
			"\"aws.s3\",\"detail\":{\"bucket\":{\"name\":\"eb\"},\"object\":{\"key\":"
			"\"AWSLogs/1/x+y%3A.json.gz\",\"etag\":\"e1\",\"version-id\":\"v1\"}}}";
	assert_int_equal(notice(j, &n), TH_NOTICE_OBJECTS);
	assert_int_equal(n, 1);
	assert_string_equal(objs[0].bucket, "eb");
	assert_string_equal(objs[0].key, "AWSLogs/1/x y:.json.gz");
	assert_string_equal(objs[0].etag, "e1");
	assert_string_equal(objs[0].version, "v1");
	const char *del = "{\"detail-type\":\"Object Deleted\",\"source\":\"aws.s3\",\"detail\":"
			  "{\"bucket\":{\"name\":\"eb\"},\"object\":{\"key\":\"k\"}}}";
	assert_int_equal(notice(del, &n), TH_NOTICE_OBJECTS);
	assert_int_equal(n, 0);
	const char *nokey = "{\"detail-type\":\"Object Created\",\"source\":\"aws.s3\","
			    "\"detail\":{\"bucket\":{\"name\":\"eb\"},\"object\":{}}}";
	assert_int_equal(notice(nokey, &n), TH_EPARSE);
}

static void test_sns_wrapped_and_cloudtrail(void **state)
{
	int n;
	(void)state;
	const char *sns = "{\"Type\":\"Notification\",\"Message\":\"{\\\"Records\\\":[{\\\"eventName"
			  "\\\":\\\"ObjectCreated:Copy\\\",\\\"s3\\\":{\\\"bucket\\\":{\\\"name\\\":"
			  "\\\"b2\\\"},\\\"object\\\":{\\\"key\\\":\\\"k%20x\\\"}}}]}\"}";
	assert_int_equal(notice(sns, &n), TH_NOTICE_OBJECTS);
	assert_int_equal(n, 1);
	assert_string_equal(objs[0].bucket, "b2");
	assert_string_equal(objs[0].key, "k x");
	assert_string_equal(objs[0].etag, "");
	/* CloudTrail's own message: plain keys, '+' stays '+' */
	const char *ct = "{\"Type\":\"Notification\",\"Message\":\"{\\\"s3Bucket\\\":\\\"tb\\\","
			 "\\\"s3ObjectKey\\\":[\\\"a+1\\\",\\\"b\\\"]}\"}";
	assert_int_equal(notice(ct, &n), TH_NOTICE_OBJECTS);
	assert_int_equal(n, 2);
	assert_string_equal(objs[0].key, "a+1");
	assert_string_equal(objs[1].bucket, "tb");
}

static void test_test_events_and_garbage(void **state)
{
	int n;
	(void)state;
	assert_int_equal(notice("{\"Service\":\"Amazon S3\",\"Event\":\"s3:TestEvent\"}", &n),
			 TH_NOTICE_TEST);
	assert_int_equal(notice("{\"Type\":\"SubscriptionConfirmation\"}", &n), TH_NOTICE_TEST);
	assert_int_equal(notice("{\"Type\":\"Notification\",\"Message\":"
				"\"CloudTrail validation message.\"}", &n),
			 TH_NOTICE_TEST);
	assert_int_equal(notice("{\"hello\":1}", &n), TH_EPARSE);
	assert_int_equal(notice("not json", &n), TH_EPARSE);
	assert_int_equal(notice("{\"Records\":[{\"eventName\":\"ObjectCreated:Put\"}]}", &n),
			 TH_EPARSE);
	/* an SNS message inside an SNS message is not a notification */
	assert_int_equal(notice("{\"Type\":\"Notification\",\"Message\":\"{\\\"Type\\\":"
				"\\\"Notification\\\",\\\"Message\\\":\\\"x\\\"}\"}", &n),
			 TH_EPARSE);
	/* more objects than the caller's array: an error, not a silent cut */
	char big[4096];
	size_t o = (size_t)snprintf(big, sizeof(big), "{\"s3Bucket\":\"b\",\"s3ObjectKey\":[");
	for (int i = 0; i < 9; i++)
		o += (size_t)snprintf(big + o, sizeof(big) - o, "%s\"k%d\"", i ? "," : "", i);
	snprintf(big + o, sizeof(big) - o, "]}");
	assert_int_equal(notice(big, &n), TH_ETOOBIG);
}

static int count_msg(void *ctx, const struct th_sqs_msg *m)
{
	int *c = ctx;
	if (*c == 0) {
		assert_string_equal(m->receipt, "r1");
		assert_string_equal(m->body, "{\"x\":1}");
		assert_int_equal(m->receive_count, 3);
	}
	(*c)++;
	return 0;
}

static void test_sqs_answer(void **state)
{
	int c = 0;
	(void)state;
	const char *j = "{\"Messages\":[{\"MessageId\":\"m\",\"ReceiptHandle\":\"r1\",\"Body\":"
			"\"{\\\"x\\\":1}\",\"Attributes\":{\"ApproximateReceiveCount\":\"3\"}},"
			"{\"MessageId\":\"m2\",\"ReceiptHandle\":\"r2\",\"Body\":\"\"}]}";
	assert_int_equal(th_aws_json_sqs_messages(j, strlen(j), count_msg, &c), 2);
	assert_int_equal(c, 2);
	assert_int_equal(th_aws_json_sqs_messages("{}", 2, count_msg, &c), 0);
	assert_int_equal(th_aws_json_sqs_messages("<xml/>", 6, count_msg, &c), TH_EPARSE);
}

static void test_urls_and_encoding(void **state)
{
	char out[512];
	struct th_aws_target moto = {"us-east-1", "http://127.0.0.1:5000/"};
	struct th_aws_target aws = {"eu-west-1", ""};
	(void)state;
	E(th_aws_s3_url(&moto, "b", "AWSLogs/1/a b+c.json.gz", out, sizeof(out)));
	assert_string_equal(out, "http://127.0.0.1:5000/b/AWSLogs/1/a%20b%2Bc.json.gz");
	E(th_aws_s3_url(&aws, "b", "k~x", out, sizeof(out)));
	assert_string_equal(out, "https://b.s3.eu-west-1.amazonaws.com/k~x");
	E(th_aws_uri_encode("AWSLogs/o-1=", out, sizeof(out)));
	assert_string_equal(out, "AWSLogs%2Fo-1%3D");
	assert_int_equal(th_aws_uri_encode("abcdef", out, 4), TH_ETOOBIG);
	th_aws_endpoint(&aws, "sqs", out, sizeof(out));
	assert_string_equal(out, "https://sqs.eu-west-1.amazonaws.com");
	/* a bucket name with a dot: path-style (the TLS wildcard certificate
	 * does not match my.trail.s3.…); the China regions' amazonaws.com.cn */
	E(th_aws_s3_url(&aws, "my.trail", "k", out, sizeof(out)));
	assert_string_equal(out, "https://s3.eu-west-1.amazonaws.com/my.trail/k");
	struct th_aws_target cn = {"cn-northwest-1", ""};
	E(th_aws_s3_url(&cn, "b", "k", out, sizeof(out)));
	assert_string_equal(out, "https://b.s3.cn-northwest-1.amazonaws.com.cn/k");
	th_aws_endpoint(&cn, "sts", out, sizeof(out));
	assert_string_equal(out, "https://sts.cn-northwest-1.amazonaws.com.cn");
	th_aws_s3_key_decode("a%zz%4", out, sizeof(out));
	assert_string_equal(out, "a%zz%4"); /* broken escapes stay as they are */
}

static void test_xml(void **state)
{
	char out[64];
	(void)state;
	const char *x = "<R><Contents><Key>a&amp;b</Key><ETag>&quot;e1&quot;</ETag></Contents>"
			"<Contents><Key>c</Key></Contents><IsTruncated>false</IsTruncated></R>";
	const char *end = x + strlen(x), *p = x;
	char block[256];
	p = th_aws_xml_text(p, end, "Contents", block, sizeof(block));
	assert_non_null(p);
	th_aws_xml_text(block, block + strlen(block), "Key", out, sizeof(out));
	assert_string_equal(out, "a&b");
	th_aws_xml_text(block, block + strlen(block), "ETag", out, sizeof(out));
	assert_string_equal(out, "\"e1\"");
	p = th_aws_xml_text(p, end, "Contents", block, sizeof(block));
	assert_non_null(p);
	assert_null(th_aws_xml_text(p, end, "Contents", block, sizeof(block)));
	assert_null(th_aws_xml_text(x, end, "Missing", out, sizeof(out)));
	assert_string_equal(out, "");
}

static void test_cloudtrail_names(void **state)
{
	int64_t ms;
	(void)state;
	E(th_bridge_key_time("AWSLogs/o-a/1/CloudTrail/us-east-1/2026/11/29/"
			     "123456789012_CloudTrail_us-east-1_20261129T1205Z_Ab_c.json.gz",
			     &ms));
	assert_true(ms == 1795953900000LL);
	/* a region or id with '_' before the stamp does not confuse it */
	assert_int_equal(th_bridge_key_time("x/1_CloudTrail_us-east-1_2026112T1205Z_a", &ms),
			 TH_EPARSE);
	assert_int_equal(th_bridge_key_time("x/notes.txt", &ms), TH_EPARSE);
	assert_true(th_bridge_key_skipped("AWSLogs/1/CloudTrail-Digest/us-east-1/x.json.gz"));
	assert_true(th_bridge_key_skipped("AWSLogs/1/CloudTrail-Insight/us-east-1/x.json.gz"));
	assert_false(th_bridge_key_skipped("AWSLogs/1/CloudTrail/us-east-1/x.json.gz"));
}

static void test_creds_env_then_profile(void **state)
{
	struct th_aws_target t = {"us-east-1", ""};
	struct th_aws_credsrc *src;
	const struct th_aws_creds *c;
	char err[512], path[] = "/tmp/th-test-creds-XXXXXX";
	(void)state;
	setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
	unsetenv("AWS_ROLE_ARN");
	unsetenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
	unsetenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
	setenv("AWS_ACCESS_KEY_ID", "AKIAENV", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
	setenv("AWS_SESSION_TOKEN", "tok", 1);
	E(th_aws_creds_new(&src, &t));
	E(th_aws_creds_get(src, false, &c, err, sizeof(err)));
	assert_string_equal(c->akid, "AKIAENV");
	assert_string_equal(c->token, "tok");
	assert_string_equal(c->source, "environment");
	th_aws_creds_destroy(src);

	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char *ini = "# comment\n[default]\naws_access_key_id=AKIADEF\n"
			  "aws_secret_access_key = s1\n\n[ other ]\n aws_access_key_id = AKIAOTH \n"
			  "aws_secret_access_key=s2\n";
	assert_int_equal(write(fd, ini, strlen(ini)), (int)strlen(ini));
	close(fd);
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	unsetenv("AWS_SESSION_TOKEN");
	setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
	setenv("AWS_PROFILE", "other", 1);
	E(th_aws_creds_new(&src, &t));
	E(th_aws_creds_get(src, false, &c, err, sizeof(err)));
	assert_string_equal(c->akid, "AKIAOTH");
	assert_string_equal(c->secret, "s2");
	assert_string_equal(c->token, "");
	th_aws_creds_destroy(src);
	/* a named profile that is missing is an error naming it, not a fallback */
	setenv("AWS_PROFILE", "nope", 1);
	E(th_aws_creds_new(&src, &t));
	assert_int_equal(th_aws_creds_get(src, false, &c, err, sizeof(err)), TH_ECONFIG);
	assert_non_null(strstr(err, "'nope'"));
	assert_null(strstr(err, "s2"));
	th_aws_creds_destroy(src);
	/* nothing at all: a clear error */
	unsetenv("AWS_PROFILE");
	setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials", 1);
	E(th_aws_creds_new(&src, &t));
	assert_int_equal(th_aws_creds_get(src, false, &c, err, sizeof(err)), TH_ECONFIG);
	assert_non_null(strstr(err, "no AWS credentials"));
	th_aws_creds_destroy(src);
	unlink(path);
}

/* An S3 outage or throttling must not use up a file's receives (the bridge
 * would dead-letter good files); a refusal or a missing object must. */
static void test_transient_errors(void **state)
{
	(void)state;
	assert_true(th_aws_transient(TH_EIO, 0, ""));          /* no answer */
	assert_true(th_aws_transient(0, 500, "InternalError"));
	assert_true(th_aws_transient(0, 503, "SlowDown"));
	assert_true(th_aws_transient(0, 503, "ServiceUnavailable"));
	assert_true(th_aws_transient(0, 502, ""));             /* a proxy's answer */
	assert_true(th_aws_transient(0, 429, ""));
	assert_true(th_aws_transient(0, 400, "RequestTimeout"));
	assert_false(th_aws_transient(TH_ETOOBIG, 0, ""));     /* over the size cap */
	assert_false(th_aws_transient(0, 404, "NoSuchKey"));
	assert_false(th_aws_transient(0, 403, "AccessDenied"));
	assert_false(th_aws_transient(0, 400, "InvalidArgument"));
	assert_false(th_aws_transient(0, 301, "PermanentRedirect"));
}

/* A 301 PermanentRedirect without x-amz-bucket-region (a proxy dropped it)
 * names the bucket's endpoint: its region is what the error tells the
 * operator to set. */
static void test_redirect_endpoint_region(void **state)
{
	static const struct {
		const char *host, *region;
	} ok[] = {
		{"trail.s3.eu-west-1.amazonaws.com", "eu-west-1"},
		{"trail.s3-eu-west-1.amazonaws.com", "eu-west-1"},
		{"trail.s3.dualstack.ap-southeast-2.amazonaws.com", "ap-southeast-2"},
		{"s3.eu-central-1.amazonaws.com", "eu-central-1"},
		{"trail.s3.amazonaws.com", "us-east-1"},   /* the global endpoint */
		{"trail.s3-external-1.amazonaws.com", "us-east-1"},
		{"s3-logs.s3.eu-north-1.amazonaws.com", "eu-north-1"}, /* a bucket named s3-… */
		{"my.s3.bucket.s3.us-west-2.amazonaws.com", "us-west-2"},
		{"trail.s3.cn-north-1.amazonaws.com.cn", "cn-north-1"},
	};
	char out[64];
	(void)state;
	for (size_t i = 0; i < TH_ARRAY_SIZE(ok); i++) {
		assert_int_equal(th_aws_s3_endpoint_region(ok[i].host, out, sizeof(out)), 0);
		assert_string_equal(out, ok[i].region);
	}
	assert_int_equal(th_aws_s3_endpoint_region("minio.local:9000", out, sizeof(out)),
			 TH_ENOTFOUND);
	assert_string_equal(out, "");
	assert_int_equal(th_aws_s3_endpoint_region("sqs.eu-west-1.amazonaws.com", out, sizeof(out)),
			 TH_ENOTFOUND);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_transient_errors),
		cmocka_unit_test(test_s3_notification),
		cmocka_unit_test(test_eventbridge_object_created),
		cmocka_unit_test(test_sns_wrapped_and_cloudtrail),
		cmocka_unit_test(test_test_events_and_garbage),
		cmocka_unit_test(test_sqs_answer),
		cmocka_unit_test(test_urls_and_encoding),
		cmocka_unit_test(test_xml),
		cmocka_unit_test(test_cloudtrail_names),
		cmocka_unit_test(test_creds_env_then_profile),
		cmocka_unit_test(test_redirect_endpoint_region),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

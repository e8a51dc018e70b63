/*
 * The JSON that AWS answers with or delivers (SQS ReceiveMessage answers, S3
 * event notifications, SNS envelopes, CloudTrail's SNS message, credential
 * documents): a small shim over simdjson's DOM behind the C interface of
 * aws.h. These documents are small and read once, so the DOM is simpler than
 * On-Demand here. No exception crosses the C boundary.
 */
#include "trailhound/aws.h"
#include "trailhound/common.h"

#include <simdjson.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

using namespace simdjson;

namespace {

void copy_sv(std::string_view v, char *out, size_t size)
{
	if (!size)
		return;
	size_t n = v.size() < size - 1 ? v.size() : size - 1;
	if (n) /* an empty view's data() may be NULL */
		memcpy(out, v.data(), n);
	out[n] = '\0';
}

std::string_view str_at(dom::element e, const char *key)
{
	std::string_view v;
	if (e.is_object() && e[key].get_string().get(v) == SUCCESS)
		return v;
	return {};
}

/* One new object from a notification: its bucket and object elements, and
 * the names its ETag and version ID have there (S3's own notification and
 * S3's EventBridge event spell them differently). The key comes URL-encoded
 * ('+' for a space) in both (AWS's Lambda Powertools decodes the EventBridge
 * event's key with unquote_plus too). */
int add_object(dom::element bucket, dom::element object, const char *etag_name,
	       const char *version_name, struct th_s3_obj *objs, int max_objs, int *n)
{
	std::string_view b = str_at(bucket, "name"), k = str_at(object, "key");
	if (b.empty() || k.empty())
		return TH_EPARSE;
	if (*n >= max_objs)
		return TH_ETOOBIG;
	struct th_s3_obj *o = &objs[(*n)++];
	memset(o, 0, sizeof(*o));
	copy_sv(b, o->bucket, sizeof(o->bucket));
	std::string enc(k);
	th_aws_s3_key_decode(enc.c_str(), o->key, sizeof(o->key));
	copy_sv(str_at(object, etag_name), o->etag, sizeof(o->etag));
	copy_sv(str_at(object, version_name), o->version, sizeof(o->version));
	return 0;
}

int add_s3_records(dom::array recs, struct th_s3_obj *objs, int max_objs, int *n)
{
	for (dom::element r : recs) {
		std::string_view name = str_at(r, "eventName");
		/* ObjectRemoved, Restore, Replication...: no new log file */
		if (name.substr(0, 14) != "ObjectCreated:")
			continue;
		dom::element s3, bucket, object;
		if (r["s3"].get(s3) || s3["bucket"].get(bucket) || s3["object"].get(object))
			return TH_EPARSE;
		if (int rc = add_object(bucket, object, "eTag", "versionId", objs, max_objs, n))
			return rc;
	}
	return 0;
}

int notice(dom::parser &parser, const char *json, size_t len, struct th_s3_obj *objs,
	   int max_objs, int *n, int depth)
{
	dom::element doc;
	if (parser.parse(json, len).get(doc) || !doc.is_object())
		return TH_EPARSE;
	std::string_view type = str_at(doc, "Type");
	if (type == "SubscriptionConfirmation" || type == "UnsubscribeConfirmation")
		return TH_NOTICE_TEST;
	std::string_view msg = str_at(doc, "Message");
	/* what CloudTrail sends when it checks the topic: not JSON inside */
	if (msg == "CloudTrail validation message.")
		return TH_NOTICE_TEST;
	if (type == "Notification" && depth == 0) {
		/* SNS envelope: the message is itself a JSON document (the parser's
		 * buffers are reused, so copy it out first) */
		std::string inner(msg);
		return notice(parser, inner.data(), inner.size(), objs, max_objs, n, 1);
	}
	if (str_at(doc, "Event") == "s3:TestEvent")
		return TH_NOTICE_TEST;
	dom::array recs;
	if (doc["Records"].get(recs) == SUCCESS) {
		int rc = add_s3_records(recs, objs, max_objs, n);
		return rc ? rc : TH_NOTICE_OBJECTS;
	}
	dom::element detail;
	if (str_at(doc, "source") == "aws.s3" && doc["detail"].get(detail) == SUCCESS) {
		/* S3's event to EventBridge, a rule's target this queue (S3 ->
		 * EventBridge -> SQS): one object in "detail". Only "Object
		 * Created" is a new log file; Object Deleted, Restore, … are none */
		if (str_at(doc, "detail-type") != "Object Created")
			return TH_NOTICE_OBJECTS;
		dom::element bucket, object;
		if (detail["bucket"].get(bucket) || detail["object"].get(object))
			return TH_EPARSE;
		int rc = add_object(bucket, object, "etag", "version-id", objs, max_objs, n);
		return rc ? rc : TH_NOTICE_OBJECTS;
	}
	std::string_view bucket = str_at(doc, "s3Bucket");
	dom::array keys;
	if (!bucket.empty() && doc["s3ObjectKey"].get(keys) == SUCCESS) {
		/* CloudTrail's own SNS message: keys are plain, not URL-encoded */
		for (dom::element k : keys) {
			std::string_view key;
			if (k.get_string().get(key) || key.empty())
				return TH_EPARSE;
			if (*n >= max_objs)
				return TH_ETOOBIG;
			struct th_s3_obj *o = &objs[(*n)++];
			memset(o, 0, sizeof(*o));
			copy_sv(bucket, o->bucket, sizeof(o->bucket));
			copy_sv(key, o->key, sizeof(o->key));
		}
		return TH_NOTICE_OBJECTS;
	}
	return TH_EPARSE;
}

} // namespace

extern "C" int th_aws_json_strings(const char *json, size_t len, const char *const *names,
				   char **outs, const size_t *out_sizes, int n)
{
	dom::parser parser;
	dom::element doc;
	for (int i = 0; i < n; i++)
		if (out_sizes[i])
			outs[i][0] = '\0';
	if (parser.parse(json, len).get(doc) || !doc.is_object())
		return TH_EPARSE;
	for (int i = 0; i < n; i++)
		copy_sv(str_at(doc, names[i]), outs[i], out_sizes[i]);
	return 0;
}

extern "C" int th_aws_json_sqs_messages(const char *json, size_t len,
					int (*fn)(void *ctx, const struct th_sqs_msg *m),
					void *ctx)
{
	dom::parser parser;
	dom::element doc;
	if (parser.parse(json, len).get(doc) || !doc.is_object())
		return TH_EPARSE;
	dom::array msgs;
	if (doc["Messages"].get(msgs) != SUCCESS)
		return 0; /* an empty receive has no "Messages" */
	int count = 0;
	for (dom::element m : msgs) {
		std::string id(str_at(m, "MessageId")), receipt(str_at(m, "ReceiptHandle"));
		std::string body(str_at(m, "Body"));
		struct th_sqs_msg sm = {id.c_str(), receipt.c_str(), body.c_str(), body.size(), 0};
		dom::element attrs;
		if (m["Attributes"].get(attrs) == SUCCESS) {
			std::string rc(str_at(attrs, "ApproximateReceiveCount"));
			sm.receive_count = strtol(rc.c_str(), nullptr, 10);
		}
		if (receipt.empty())
			return TH_EPARSE;
		count++;
		if (fn(ctx, &sm))
			break;
	}
	return count;
}

extern "C" int th_aws_json_notice(const char *json, size_t len, struct th_s3_obj *objs,
				  int max_objs, int *n_objs)
{
	dom::parser parser;
	*n_objs = 0;
	return notice(parser, json, len, objs, max_objs, n_objs, 0);
}

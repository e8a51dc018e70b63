/*
 * The CloudTrail event parser: the one C++ translation unit of the hot path, a
 * thin shim over simdjson On-Demand behind the C interface of parser.h.
 *
 * Why simdjson: parsing is the ceiling of the whole product (measured ~500k
 * events/s here, 3x the fastest C option). On-Demand visits each top-level key
 * once, so a record is read in a single forward pass: the event fields are
 * extracted and, in the same pass, "Records"/"detail" containers are noticed.
 * Strings are copied (NUL-terminated) into a per-parser arena because
 * simdjson's views die at the next iterate().
 *
 * No exception crosses the C boundary: simdjson is used with error codes only.
 */
#include "trailhound/parser.h"
#include "trailhound/time.h"
#include "trailhound/input.h"
#include "trailhound/records.h"

#include <simdjson.h>

#include <cstdio>
#include <cstring>
#include <ctime>
#include <cstddef>
#include <new>
#include <utility>
#include <string_view>
#include <vector>

using namespace simdjson;

namespace {

struct span {
	const char *p;
	size_t n;
	bool obj = true; /* false: a container element that is not an object */
};

/* raw_json() of an On-Demand object runs up to the next token, so it carries
 * the whitespace that follows the value; a record's raw bytes (forwarded and
 * hashed for synthesized eventIDs) end at its closing brace. */
inline span trimmed(std::string_view raw)
{
	size_t n = raw.size();
	while (n && (raw[n - 1] == ' ' || raw[n - 1] == '\n' || raw[n - 1] == '\r' ||
		     raw[n - 1] == '\t'))
		n--;
	return {raw.data(), n};
}

/* A non-object element of a container, kept with its position so that its
 * rejection points at it rather than at the container. Only the start is
 * taken from simdjson: raw_json_token()'s length comes from the next
 * structural index, which is garbage when the document is malformed further
 * on (found by fuzzing); element_span() measures it instead. */
inline span non_object(ondemand::value &el)
{
	return {el.raw_json_token().data(), 0, false};
}

long json_unescape(const char *raw, char *d, size_t cap);

/* Arena for the strings of the event being built. It is sized up front to
 * the record length (unescaped strings never exceed it), so pointers stay
 * valid for the life of the event. */
struct arena {
	char *buf = nullptr;
	size_t cap = 0, used = 0;

	bool reserve(size_t n)
	{
		used = 0;
		if (n <= cap)
			return true;
		char *nb = static_cast<char *>(realloc(buf, n));
		if (!nb)
			return false;
		buf = nb;
		cap = n;
		return true;
	}
	const char *put(std::string_view s)
	{
		if (used + s.size() + 1 > cap)
			return nullptr; /* cannot happen when reserve() was sized right */
		char *d = buf + used;
		memcpy(d, s.data(), s.size());
		d[s.size()] = '\0';
		used += s.size() + 1;
		return d;
	}
	/* A JSON string by its raw bytes (after the opening quote), unescaped;
	 * NULL when it holds an escape JSON does not have. */
	const char *put_json(const char *raw)
	{
		if (used >= cap)
			return nullptr;
		char *d = buf + used;
		long n = json_unescape(raw, d, cap - used - 1);
		if (n < 0)
			return nullptr;
		d[n] = '\0';
		used += size_t(n) + 1;
		return d;
	}
};

/* What a pass over a top-level object found besides event fields. */
struct container_info {
	bool has_records = false;
	bool records_not_array = false;
	std::vector<span> records;
	bool has_detail_type = false;
	std::string_view detail_type;
	bool has_detail = false;
	span detail{nullptr, 0};
};

/* Failure of one extraction, carried out of the nested helpers. */
struct failure {
	enum th_reject why = TH_REJECT_NONE;
	const char *field = nullptr;
	error_code err = SUCCESS;
};

/* How late an eventTime may be (spec v2 §5), see finish_event. */
struct time_bound {
	int64_t max_future_skew_ms = TH_MAX_FUTURE_SKEW_DEFAULT_MS;
	int64_t wall_ms = 0; /* the wall clock when last read */
	int64_t delivered_ms = INT64_MIN; /* the log file's delivery time, if known */
};

} // namespace

struct th_parser {
	ondemand::parser outer;
	ondemand::parser inner;
	arena strings;
	size_t record_max;
	struct time_bound clock;
	std::string detail_type_copy;
};

extern "C" {

const char *th_reject_name(enum th_reject r)
{
	switch (r) {
	case TH_REJECT_NONE: return "none";
	case TH_REJECT_MALFORMED_JSON: return "malformed_json";
	case TH_REJECT_INVALID_UTF8: return "invalid_utf8";
	case TH_REJECT_TOO_LARGE: return "too_large";
	case TH_REJECT_WRONG_TYPE: return "wrong_type";
	case TH_REJECT_MISSING_FIELD: return "missing_field";
	case TH_REJECT_BAD_TIMESTAMP: return "bad_timestamp";
	case TH_REJECT_NOT_CLOUDTRAIL: return "not_cloudtrail";
	case TH_REJECT_EVENT_TIME_OUT_OF_RANGE: return "event_time_out_of_range";
	case TH_REJECT_IDENTIFIER_TOO_LONG: return "identifier_too_long";
	case TH_REJECT_INVALID_IDENTIFIER: return "invalid_identifier";
	case TH_REJECT_PROCESSING_FAILED: return "processing_failed";
	case TH_REJECT__COUNT: break;
	}
	return "unknown";
}

int th_parser_new(struct th_parser **pp, size_t record_max)
{
	th_parser *p = new (std::nothrow) th_parser();
	if (!p)
		return TH_ENOMEM;
	p->record_max = record_max ? record_max : TH_RECORD_MAX_DEFAULT;
	*pp = p;
	return 0;
}

void th_parser_set_max_future_skew(struct th_parser *p, int64_t ms)
{
	p->clock.max_future_skew_ms = ms > 0 ? ms : 0;
}

void th_parser_set_delivered(struct th_parser *p, int64_t delivered_ms)
{
	p->clock.delivered_ms = delivered_ms;
}

size_t th_parser_record_max(const struct th_parser *p)
{
	return p->record_max;
}

void th_parser_destroy(struct th_parser *p)
{
	if (!p)
		return;
	free(p->strings.buf);
	delete p;
}

} /* extern "C" */

namespace {

enum th_reject reject_of(error_code err)
{
	switch (err) {
	case UTF8_ERROR: return TH_REJECT_INVALID_UTF8;
	case INCORRECT_TYPE: return TH_REJECT_WRONG_TYPE;
	default: return TH_REJECT_MALFORMED_JSON;
	}
}

inline int hex4(const char *p)
{
	int v = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		int d = c >= '0' && c <= '9'   ? c - '0'
			: c >= 'a' && c <= 'f' ? c - 'a' + 10
			: c >= 'A' && c <= 'F' ? c - 'A' + 10
					       : -1;
		if (d < 0)
			return -1;
		v = v << 4 | d;
	}
	return v;
}

inline size_t put_utf8(char *d, uint32_t cp)
{
	if (cp < 0x80) {
		d[0] = char(cp);
		return 1;
	}
	if (cp < 0x800) {
		d[0] = char(0xC0 | cp >> 6);
		d[1] = char(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		d[0] = char(0xE0 | cp >> 12);
		d[1] = char(0x80 | (cp >> 6 & 0x3F));
		d[2] = char(0x80 | (cp & 0x3F));
		return 3;
	}
	d[0] = char(0xF0 | cp >> 18);
	d[1] = char(0x80 | (cp >> 12 & 0x3F));
	d[2] = char(0x80 | (cp >> 6 & 0x3F));
	d[3] = char(0x80 | (cp & 0x3F));
	return 4;
}

/* Unescapes the JSON string whose bytes start at raw (after the opening
 * quote; stage 1 has found its closing quote) into d, which has room for
 * cap bytes. Returns the length, or -1 for an escape JSON does not have, or
 * -2 when the string does not fit.
 *
 * Why not simdjson's unescaper: it fails the whole string on a UTF-16
 * surrogate escape without its pair ("\ud800"). A Java JSON writer, as
 * CloudTrail's, writes exactly that for a caller's string holding a lone
 * surrogate (a request parameter, a header), so the caller would choose to
 * lose the event. Such an escape reads as U+FFFD, keeping every string valid
 * UTF-8, and so does "\u0000", keeping every string whole as a C string.
 * The unescaped form is never longer than the escaped one. */
long json_unescape(const char *raw, char *d, size_t cap)
{
	const char *p = raw;
	const char *quote = nullptr; /* the next '"' at or after p */
	size_t n = 0;
	for (;;) {
		/* glibc's vectorised searches, not a byte loop: user agents and
		 * ARNs run to hundreds of bytes, and a byte loop here cost the
		 * parse ~10 % against simdjson's own unescaper. Stage 1 has
		 * validated the string, so its closing quote exists. */
		if (!quote || quote < p)
			quote = static_cast<const char *>(rawmemchr(p, '"'));
		const char *bs = static_cast<const char *>(memchr(p, '\\', size_t(quote - p)));
		const char *q = bs ? bs : quote;
		size_t run = size_t(q - p);
		if (run > cap - n)
			return -2;
		memcpy(d + n, p, run);
		n += run;
		if (!bs)
			return long(n);
		/* A backslash: stage 1 guarantees a byte after it. */
		char e = q[1];
		p = q + 2;
		uint32_t cp;
		switch (e) {
		case '"': cp = '"'; break;
		case '\\': cp = '\\'; break;
		case '/': cp = '/'; break;
		case 'b': cp = '\b'; break;
		case 'f': cp = '\f'; break;
		case 'n': cp = '\n'; break;
		case 'r': cp = '\r'; break;
		case 't': cp = '\t'; break;
		case 'u': {
			/* hex4 stops at the first non-hex byte, so it never reads
			 * past the closing quote. */
			int v = hex4(p);
			if (v < 0)
				return -1;
			p += 4;
			cp = uint32_t(v);
			if (cp >= 0xD800 && cp <= 0xDBFF && p[0] == '\\' && p[1] == 'u') {
				int lo = hex4(p + 2);
				if (lo < 0)
					return -1;
				if (lo >= 0xDC00 && lo <= 0xDFFF) {
					cp = 0x10000 + ((cp - 0xD800) << 10) + (uint32_t(lo) - 0xDC00);
					p += 6;
				}
			}
			/* "\u0000" is legal JSON, but a NUL would end the C string
			 * there: "lambda.amazonaws.com\u0000…" read as a service
			 * name, a user agent cut where its caller chose. */
			if ((cp >= 0xD800 && cp <= 0xDFFF) || cp == 0)
				cp = 0xFFFD;
			break;
		}
		default:
			return -1;
		}
		if (cap - n < 4)
			return -2;
		n += put_utf8(d + n, cp);
	}
}

/* The key of a field as raw bytes. CloudTrail never escapes keys, so the
 * common case is a short scan; a key with a backslash is unescaped into kbuf.
 * An escaped key longer than kbuf, or with an escape JSON does not have,
 * cannot be one of ours: it is returned empty, so it matches nothing and its
 * value is skipped. */
inline void field_key(ondemand::field &f, std::string_view &key, char (&kbuf)[32])
{
	/* Stage 1 has validated the string, so its closing quote exists: a plain
	 * loop over a short key beats a memchr call. */
	const char *k = f.key().raw();
	const char *q = k;
	while (*q != '"' && *q != '\\')
		q++;
	if (*q == '"') {
		key = std::string_view(k, size_t(q - k));
		return;
	}
	long n = json_unescape(k, kbuf, sizeof(kbuf));
	key = std::string_view(kbuf, n > 0 ? size_t(n) : 0);
}

#define KEYIS(lit) (key.size() == sizeof(lit) - 1 && memcmp(key.data(), lit, sizeof(lit) - 1) == 0)

/* A string field: a string, or null (= absent). Anything else is wrong_type
 * when strict, ignored otherwise (nested request/response fields vary by
 * service, so their types are not ours to police). */
inline bool get_str(ondemand::value v, arena &a, const char **out, failure &fail,
		    const char *name, bool strict)
{
	ondemand::json_type t;
	error_code err = v.type().get(t);
	if (err) {
		fail = {reject_of(err), name, err};
		return false;
	}
	if (t == ondemand::json_type::string) {
		ondemand::raw_json_string rs;
		err = v.get_raw_json_string().get(rs);
		if (err) {
			fail = {reject_of(err), name, err};
			return false;
		}
		const char *put = a.put_json(rs.raw());
		if (!put) {
			fail = {TH_REJECT_MALFORMED_JSON, name, STRING_ERROR};
			return false;
		}
		*out = put;
		return true;
	}
	if (t == ondemand::json_type::null || !strict)
		return true;
	fail = {TH_REJECT_WRONG_TYPE, name, INCORRECT_TYPE};
	return false;
}

/* Opens an object-valued field; null means absent. */
inline int get_obj(ondemand::value v, ondemand::object &obj, failure &fail, const char *name,
		   bool strict)
{
	ondemand::json_type t;
	error_code err = v.type().get(t);
	if (err) {
		fail = {reject_of(err), name, err};
		return -1;
	}
	if (t == ondemand::json_type::object) {
		err = v.get_object().get(obj);
		if (err) {
			fail = {reject_of(err), name, err};
			return -1;
		}
		return 1;
	}
	if (t == ondemand::json_type::null || !strict)
		return 0;
	fail = {TH_REJECT_WRONG_TYPE, name, INCORRECT_TYPE};
	return -1;
}

#define FIELD_LOOP(obj, body)                                                                      \
	for (auto fr : (obj)) {                                                                    \
		ondemand::field f;                                                                 \
		error_code ferr = std::move(fr).get(f);                                                       \
		if (ferr) {                                                                        \
			fail = {reject_of(ferr), nullptr, ferr};                                   \
			return false;                                                              \
		}                                                                                  \
		std::string_view key;                                                              \
		char kbuf[32];                                                                     \
		field_key(f, key, kbuf);                                                           \
		body                                                                               \
	}

bool parse_session_context(ondemand::object obj, th_event *ev, arena &a, failure &fail)
{
	FIELD_LOOP(obj, {
		ondemand::object sub;
		if (KEYIS("sessionIssuer")) {
			int r = get_obj(f.value(), sub, fail, "userIdentity.sessionContext.sessionIssuer",
					true);
			if (r < 0)
				return false;
			if (r > 0) {
				FIELD_LOOP(sub, {
					if (KEYIS("arn") &&
					    !get_str(f.value(), a, &ev->ui.session_issuer_arn, fail,
						     "sessionIssuer.arn", true))
						return false;
					if (KEYIS("accountId") &&
					    !get_str(f.value(), a, &ev->ui.session_issuer_account_id,
						     fail, "sessionIssuer.accountId", true))
						return false;
				});
			}
		} else if (KEYIS("attributes")) {
			int r = get_obj(f.value(), sub, fail, "userIdentity.sessionContext.attributes",
					true);
			if (r < 0)
				return false;
			if (r > 0) {
				FIELD_LOOP(sub, {
					if (KEYIS("creationDate") &&
					    !get_str(f.value(), a, &ev->ui.creation_date, fail,
						     "attributes.creationDate", true))
						return false;
				});
			}
		}
	});
	return true;
}

bool parse_user_identity(ondemand::object obj, th_event *ev, arena &a, failure &fail)
{
	FIELD_LOOP(obj, {
		bool ok = true;
		switch (key.size()) {
		case 3:
			if (KEYIS("arn"))
				ok = get_str(f.value(), a, &ev->ui.arn, fail, "userIdentity.arn", true);
			break;
		case 4:
			if (KEYIS("type"))
				ok = get_str(f.value(), a, &ev->ui.type, fail, "userIdentity.type", true);
			break;
		case 9:
			if (KEYIS("accountId"))
				ok = get_str(f.value(), a, &ev->ui.account_id, fail,
					     "userIdentity.accountId", true);
			else if (KEYIS("invokedBy"))
				ok = get_str(f.value(), a, &ev->ui.invoked_by, fail,
					     "userIdentity.invokedBy", true);
			break;
		case 11:
			if (KEYIS("accessKeyId"))
				ok = get_str(f.value(), a, &ev->ui.access_key_id, fail,
					     "userIdentity.accessKeyId", true);
			else if (KEYIS("principalId"))
				ok = get_str(f.value(), a, &ev->ui.principal_id, fail,
					     "userIdentity.principalId", true);
			break;
		case 14:
			if (KEYIS("sessionContext")) {
				ondemand::object sub;
				int r = get_obj(f.value(), sub, fail, "userIdentity.sessionContext", true);
				ok = r >= 0 && (r == 0 || parse_session_context(sub, ev, a, fail));
			}
			break;
		}
		if (!ok)
			return false;
	});
	return true;
}

bool parse_request(ondemand::object obj, th_event *ev, arena &a, failure &fail)
{
	FIELD_LOOP(obj, {
		bool ok = true;
		if (KEYIS("roleArn"))
			ok = get_str(f.value(), a, &ev->req.role_arn, fail, "", false);
		else if (KEYIS("roleSessionName"))
			ok = get_str(f.value(), a, &ev->req.role_session_name, fail, "", false);
		else if (KEYIS("role"))
			ok = get_str(f.value(), a, &ev->req.role, fail, "", false);
		else if (KEYIS("functionName"))
			ok = get_str(f.value(), a, &ev->req.function_name, fail, "", false);
		if (!ok)
			return false;
	});
	return true;
}

bool parse_response(ondemand::object obj, th_event *ev, arena &a, failure &fail)
{
	FIELD_LOOP(obj, {
		if (KEYIS("credentials")) {
			ondemand::object sub;
			int r = get_obj(f.value(), sub, fail, "responseElements.credentials", false);
			if (r < 0)
				return false;
			if (r > 0) {
				FIELD_LOOP(sub, {
					bool ok = true;
					if (KEYIS("accessKeyId"))
						ok = get_str(f.value(), a, &ev->cred.access_key_id, fail,
							     "", false);
					else if (KEYIS("expiration"))
						ok = get_str(f.value(), a, &ev->cred.expiration, fail,
							     "", false);
					if (!ok)
						return false;
				});
			}
		}
	});
	return true;
}

/* One top-level field of an event (or of a container). */
bool parse_top_field(ondemand::field &f, std::string_view key, th_event *ev, arena &a,
		     container_info *ci, failure &fail)
{
	ondemand::object sub;
	int r;
	switch (key.size()) {
	case 6:
		if (ci && KEYIS("detail")) {
			r = get_obj(f.value(), sub, fail, "detail", false);
			if (r < 0)
				return false;
			if (r > 0) {
				std::string_view raw;
				if (error_code err = sub.raw_json().get(raw)) {
					fail = {reject_of(err), "detail", err};
					return false;
				}
				ci->has_detail = true;
				ci->detail = trimmed(raw);
			}
		}
		return true;
	case 7:
		if (KEYIS("eventID"))
			return get_str(f.value(), a, &ev->event_id, fail, "eventID", true);
		if (ci && KEYIS("Records")) {
			ci->has_records = true;
			ondemand::array arr;
			if (f.value().get_array().get(arr)) {
				ci->records_not_array = true;
				return true;
			}
			for (auto er : arr) {
				ondemand::value el;
				if (error_code err = std::move(er).get(el)) {
					fail = {reject_of(err), "Records", err};
					return false;
				}
				ondemand::object eo;
				std::string_view raw;
				if (error_code err = el.get_object().get(eo)) {
					/* A non-object record: keep its position so it is
					 * reported, and move on. */
					if (err != INCORRECT_TYPE) {
						fail = {reject_of(err), "Records", err};
						return false;
					}
					ci->records.push_back(non_object(el));
					continue;
				}
				if (error_code err = eo.raw_json().get(raw)) {
					fail = {reject_of(err), "Records", err};
					return false;
				}
				ci->records.push_back(trimmed(raw));
			}
		}
		return true;
	case 9:
		if (KEYIS("eventTime"))
			return get_str(f.value(), a, &ev->event_time, fail, "eventTime", true);
		if (KEYIS("eventName"))
			return get_str(f.value(), a, &ev->event_name, fail, "eventName", true);
		if (KEYIS("awsRegion"))
			return get_str(f.value(), a, &ev->aws_region, fail, "awsRegion", true);
		if (KEYIS("errorCode"))
			return get_str(f.value(), a, &ev->error_code, fail, "errorCode", true);
		if (KEYIS("userAgent"))
			return get_str(f.value(), a, &ev->user_agent, fail, "userAgent", true);
		return true;
	case 11:
		if (KEYIS("eventSource"))
			return get_str(f.value(), a, &ev->event_source, fail, "eventSource", true);
		if (ci && KEYIS("detail-type")) {
			std::string_view s;
			if (f.value().get_string().get(s) == SUCCESS) {
				ci->has_detail_type = true;
				ci->detail_type = s;
			}
		}
		return true;
	case 12:
		if (KEYIS("userIdentity")) {
			r = get_obj(f.value(), sub, fail, "userIdentity", true);
			return r >= 0 && (r == 0 || parse_user_identity(sub, ev, a, fail));
		}
		/* only whether there is one matters (a failed sign-in): any type passes */
		if (KEYIS("errorMessage"))
			return get_str(f.value(), a, &ev->error_message, fail, "errorMessage", false);
		return true;
	case 13:
		if (KEYIS("vpcEndpointId"))
			return get_str(f.value(), a, &ev->vpc_endpoint_id, fail, "vpcEndpointId", true);
		return true;
	case 15:
		if (KEYIS("sourceIPAddress"))
			return get_str(f.value(), a, &ev->source_ip, fail, "sourceIPAddress", true);
		return true;
	case 16:
		if (KEYIS("responseElements")) {
			r = get_obj(f.value(), sub, fail, "responseElements", false);
			return r >= 0 && (r == 0 || parse_response(sub, ev, a, fail));
		}
		return true;
	case 17:
		if (KEYIS("requestParameters")) {
			r = get_obj(f.value(), sub, fail, "requestParameters", false);
			return r >= 0 && (r == 0 || parse_request(sub, ev, a, fail));
		}
		return true;
	case 18:
		if (KEYIS("recipientAccountId"))
			return get_str(f.value(), a, &ev->recipient_account_id, fail,
				       "recipientAccountId", true);
		return true;
	case 20:
		if (KEYIS("vpcEndpointAccountId"))
			return get_str(f.value(), a, &ev->vpc_endpoint_account_id, fail,
				       "vpcEndpointAccountId", true);
		return true;
	}
	return true;
}

void set_detail(char *detail, size_t size, const char *fmt, const char *a, const char *b)
{
	if (detail && size)
		snprintf(detail, size, fmt, a ? a : "", b ? b : "");
}

static_assert(TH_ARN_SIZE - 1 >= 640, "a role ARN with IAM's longest path and name must fit");

/* Identifier sizes (spec v2 §5): the longest value AWS allows for each
 * identifier the detector keys its state by. Longer values are rejected as
 * identifier_too_long; an account ID that is not 12 digits as
 * invalid_identifier. Every legal length is accepted. */
enum id_kind { ID_ACCOUNT, ID_LENGTH };
enum id_scope { IN_ANY, IN_STS_LAMBDA };
struct id_rule {
	const char *name;
	size_t off; /* of the const char * in th_event */
	enum id_kind kind;
	size_t max; /* ID_LENGTH: the longest value AWS allows */
	enum id_scope scope;
};

/* requestParameters belong to each service; these names carry the limits below
 * only in STS AssumeRole and the Lambda API, the only events the detector reads
 * them from (and only from calls that succeeded, see check_identifiers), so
 * another service's "role" of any length is not ours to judge. */
const id_rule id_rules[] = {
	/* Account IDs are 12 decimal digits (AWS Account Management reference,
	 * "AccountId": pattern ^\d{12}$). */
	{"userIdentity.accountId", offsetof(th_event, ui.account_id), ID_ACCOUNT, 12, IN_ANY},
	{"recipientAccountId", offsetof(th_event, recipient_account_id), ID_ACCOUNT, 12, IN_ANY},
	{"sessionIssuer.accountId", offsetof(th_event, ui.session_issuer_account_id), ID_ACCOUNT, 12,
	 IN_ANY},
	{"vpcEndpointAccountId", offsetof(th_event, vpc_endpoint_account_id), ID_ACCOUNT, 12, IN_ANY},
	/* Principal ARNs: an IAM role or user ARN with a 512-character path and a
	 * 64-character name is about 613 characters (the longest AWS allows, and
	 * it must pass); an assumed-role ARN is shorter. STS's arnType allows
	 * 2048, but that is the bound of any ARN, not of a principal's. The
	 * detector keeps these in TH_ARN_SIZE fields (records.h) and keys later
	 * work by what it kept: a longer value accepted was cut there, and a use
	 * of it held for its role was never found again. */
	{"userIdentity.arn", offsetof(th_event, ui.arn), ID_LENGTH, TH_ARN_SIZE - 1, IN_ANY},
	{"sessionIssuer.arn", offsetof(th_event, ui.session_issuer_arn), ID_LENGTH, TH_ARN_SIZE - 1,
	 IN_ANY},
	{"requestParameters.roleArn", offsetof(th_event, req.role_arn), ID_LENGTH, TH_ARN_SIZE - 1,
	 IN_STS_LAMBDA},
	{"requestParameters.role", offsetof(th_event, req.role), ID_LENGTH, TH_ARN_SIZE - 1,
	 IN_STS_LAMBDA},
	/* Access key IDs: STS Credentials.AccessKeyId and IAM accessKeyIdType,
	 * "Minimum length of 16. Maximum length of 128." */
	{"userIdentity.accessKeyId", offsetof(th_event, ui.access_key_id), ID_LENGTH, 128, IN_ANY},
	{"responseElements.credentials.accessKeyId", offsetof(th_event, cred.access_key_id),
	 ID_LENGTH, 128, IN_STS_LAMBDA},
	/* STS AssumeRole RoleSessionName: "Minimum length of 2. Maximum length of 64." */
	{"requestParameters.roleSessionName", offsetof(th_event, req.role_session_name), ID_LENGTH,
	 64, IN_STS_LAMBDA},
	/* Lambda FunctionName: 64 characters as a name, "Maximum length of 170"
	 * in ARN form (GetFunction, Invoke, UpdateFunctionConfiguration). */
	{"requestParameters.functionName", offsetof(th_event, req.function_name), ID_LENGTH, 170,
	 IN_STS_LAMBDA},
};

/* S3 data events name an anonymous caller this way instead of an account ID
 * (Amazon S3 User Guide, "Logging Amazon S3 API calls using AWS CloudTrail"). */
const char anonymous_principal[] = "ANONYMOUS_PRINCIPAL";

/* How many bytes of s to quote in a detail: at most max, cut on a UTF-8
 * character boundary so the dead letter's detail stays valid UTF-8. */
int quote_len(const char *s, size_t max)
{
	size_t n = strnlen(s, max + 1);
	if (n <= max)
		return int(n);
	n = max;
	while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80)
		n--;
	return int(n);
}

bool is_account_id(const char *s, bool user_identity)
{
	size_t i = 0;
	while (i < 12 && s[i] >= '0' && s[i] <= '9')
		i++;
	if (i == 12 && s[12] == '\0')
		return true;
	return user_identity && strcmp(s, anonymous_principal) == 0;
}

int check_identifiers(const th_event *ev, enum th_reject *why, char *detail, size_t detail_size)
{
	/* A call AWS refused (errorCode) logs the parameters its caller sent,
	 * of any length: a ValidationError is how AWS answers one over its
	 * limit. The detector learns nothing from a refused call's parameters,
	 * but judges the call itself, which a caller must not be able to drop
	 * by sending a 65-character session name. */
	bool sts_lambda = !ev->error_code && (strcmp(ev->event_source, "sts.amazonaws.com") == 0 ||
					      strcmp(ev->event_source, "lambda.amazonaws.com") == 0);
	for (const id_rule &r : id_rules) {
		const char *v = *reinterpret_cast<const char *const *>(
			reinterpret_cast<const char *>(ev) + r.off);
		if (!v || (r.scope == IN_STS_LAMBDA && !sts_lambda))
			continue;
		if (r.kind == ID_ACCOUNT) {
			if (is_account_id(v, r.off == offsetof(th_event, ui.account_id)))
				continue;
			*why = TH_REJECT_INVALID_IDENTIFIER;
			if (detail && detail_size)
				snprintf(detail, detail_size, "%s \"%.*s%s\" is not a 12-digit account ID",
					 r.name, quote_len(v, 40), v, strlen(v) > 40 ? "..." : "");
			return TH_EPARSE;
		}
		size_t n = strlen(v);
		if (n <= r.max)
			continue;
		*why = TH_REJECT_IDENTIFIER_TOO_LONG;
		if (detail && detail_size)
			snprintf(detail, detail_size, "%s of %zu bytes is longer than AWS allows (%zu)",
				 r.name, n, r.max);
		return TH_EPARSE;
	}
	return 0;
}

int64_t wall_clock_ms()
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

/* Required fields, timestamps and the synthesized eventID: the checks that
 * turn a pass over the keys into an event. */
int finish_event(th_event *ev, arena &a, time_bound &clock, const char *buf, size_t len,
		 enum th_reject *why, char *detail, size_t detail_size)
{
	const char *missing = !ev->event_time     ? "eventTime"
			      : !ev->event_source ? "eventSource"
			      : !ev->event_name   ? "eventName"
						  : nullptr;
	if (missing) {
		*why = TH_REJECT_MISSING_FIELD;
		set_detail(detail, detail_size, "required field %s is missing%s", missing, nullptr);
		return TH_EPARSE;
	}
	if (th_time_parse_iso(ev->event_time, strlen(ev->event_time), &ev->event_time_ms)) {
		*why = TH_REJECT_BAD_TIMESTAMP;
		if (detail && detail_size)
			snprintf(detail, detail_size, "eventTime \"%.*s\" is not an ISO-8601 UTC time",
				 quote_len(ev->event_time, 64), ev->event_time);
		return TH_EPARSE;
	}
	/* One record dated 9999 (or 1970) must not move the detector's clock:
	 * it would expire every held use and prune every baseline (spec v2 §5).
	 * The wall clock is read here and nowhere else in the decision path. */
	/* The clock is read only when an event looks too far ahead of the last
	 * reading: the wall clock only moves forward, so a stale reading can
	 * only make the bound stricter, and re-reading then gives the exact
	 * answer without a system call per event. */
	const int64_t skew = clock.max_future_skew_ms;
	bool ahead = skew > 0 && ev->event_time_ms > clock.wall_ms + skew;
	if (ahead) {
		clock.wall_ms = wall_clock_ms();
		ahead = ev->event_time_ms > clock.wall_ms + skew;
	}
	/* A log file holds only records written before its delivery (AWS:
	 * "can contain records written at any point before that time"). In a
	 * backtest the wall clock is months ahead of the archive, so this is
	 * the bound that keeps one record dated "last week" in a file of last
	 * year from moving the clock by a year. */
	bool after_delivery = skew > 0 && clock.delivered_ms != INT64_MIN &&
			      ev->event_time_ms > clock.delivered_ms + skew;
	if (ev->event_time_ms < TH_EVENT_TIME_MIN_MS || ahead || after_delivery) {
		*why = TH_REJECT_EVENT_TIME_OUT_OF_RANGE;
		set_detail(detail, detail_size,
			   ev->event_time_ms < TH_EVENT_TIME_MIN_MS
				   ? "eventTime %.64s is before CloudTrail existed (2013-11-01)%s"
			   : ahead ? "eventTime %.64s is further ahead of the clock than "
				     "max_future_skew%s"
				   : "eventTime %.64s is later than its log file's delivery (the "
				     "time in its name) by more than max_future_skew%s",
			   ev->event_time, nullptr);
		return TH_EPARSE;
	}
	if (int rc = check_identifiers(ev, why, detail, detail_size))
		return rc;
	if (ev->ui.creation_date &&
	    th_time_parse_iso(ev->ui.creation_date, strlen(ev->ui.creation_date), &ev->ui.creation_ms))
		ev->ui.creation_ms = 0;
	if (ev->cred.expiration && th_time_parse_expiration(ev->cred.expiration,
							    strlen(ev->cred.expiration),
							    &ev->cred.expiration_ms))
		ev->cred.expiration_ms = 0;
	if (!ev->event_id) {
		/* Some sources (documentation samples, hand-made fixtures) omit eventID;
		 * a hash of the record keeps alert IDs deterministic. */
		uint64_t h = 1469598103934665603ULL;
		for (size_t i = 0; i < len; i++)
			h = (h ^ (unsigned char)buf[i]) * 1099511628211ULL;
		char id[24];
		snprintf(id, sizeof(id), "th-%016llx", (unsigned long long)h);
		ev->event_id = a.put(id);
	}
	return 0;
}

/* Pass over one object: event fields, plus containers when ci is given. */
int parse_object(ondemand::parser &parser, arena &a, size_t record_max, const char *buf,
		 size_t len, th_event *ev, container_info *ci, failure &fail)
{
	*ev = th_event{};
	/* Container documents (Records files) may be larger than one record; their
	 * strings are not kept, so the arena only needs one record's worth. */
	if (!a.reserve(len + 64))
		return TH_ENOMEM;
	/* A UTF-8 byte-order mark before the value (see th_parser_feed). */
	if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) {
		buf += 3;
		len -= 3;
	}
	ondemand::document doc;
	error_code err = parser.iterate(buf, len, len + TH_PARSE_PADDING).get(doc);
	if (err) {
		fail = {reject_of(err), nullptr, err};
		return TH_EPARSE;
	}
	ondemand::object obj;
	err = doc.get_object().get(obj);
	if (err) {
		fail = {err == INCORRECT_TYPE ? TH_REJECT_NOT_CLOUDTRAIL : reject_of(err), nullptr, err};
		return TH_EPARSE;
	}
	for (auto fr : obj) {
		ondemand::field f;
		if ((err = std::move(fr).get(f))) {
			fail = {reject_of(err), nullptr, err};
			return TH_EPARSE;
		}
		std::string_view key;
		char kbuf[32];
		field_key(f, key, kbuf);
		if (!parse_top_field(f, key, ev, a, ci, fail))
			return TH_EPARSE;
	}
	/* On-Demand validates lazily: make sure nothing follows the value. */
	if (doc.current_location().error() == SUCCESS) {
		fail = {TH_REJECT_MALFORMED_JSON, nullptr, TRAILING_CONTENT};
		return TH_EPARSE;
	}
	(void)record_max;
	return 0;
}

void describe_failure(const failure &fail, char *detail, size_t size)
{
	if (!detail || !size)
		return;
	if (fail.why == TH_REJECT_WRONG_TYPE && fail.field)
		snprintf(detail, size, "field %s has the wrong type", fail.field);
	else if (fail.field && *fail.field)
		snprintf(detail, size, "%s (at %s)", error_message(fail.err), fail.field);
	else
		snprintf(detail, size, "%s", error_message(fail.err));
}

} // namespace

extern "C" {

int th_parser_parse(struct th_parser *p, const char *buf, size_t len, struct th_event *ev,
		    enum th_reject *why, char *detail, size_t detail_size)
{
	failure fail;
	if (len > p->record_max) {
		*why = TH_REJECT_TOO_LARGE;
		if (detail && detail_size)
			snprintf(detail, detail_size, "record of %zu bytes is over the %zu-byte limit",
				 len, p->record_max);
		return TH_EPARSE;
	}
	int rc = parse_object(p->inner, p->strings, p->record_max, buf, len, ev, nullptr, fail);
	if (rc == TH_ENOMEM)
		return rc;
	if (rc) {
		*why = fail.why;
		describe_failure(fail, detail, detail_size);
		return TH_EPARSE;
	}
	return finish_event(ev, p->strings, p->clock, buf, len, why, detail, detail_size);
}

/* The bytes of a container element that starts at p, clamped to the buffer. */
static span element_span(const char *buf, size_t len, const char *p)
{
	const char *end = buf + len;
	if (p < buf || p >= end)
		p = buf;
	const char *e = th_json_skip_value(p, end);
	return {p, size_t((e ? e : end) - p)};
}

static int deliver(struct th_parser *p, const char *buf, size_t len, uint64_t offset,
		   const struct th_sink *sink)
{
	th_event ev;
	enum th_reject why = TH_REJECT_NONE;
	char detail[256];
	int rc = th_parser_parse(p, buf, len, &ev, &why, detail, sizeof(detail));
	if (rc == 0)
		return sink->on_event(sink->ctx, &ev, buf, len, offset);
	if (rc == TH_ENOMEM)
		snprintf(detail, sizeof(detail), "out of memory");
	sink->on_reject(sink->ctx, why ? why : TH_REJECT_MALFORMED_JSON, detail, buf, len, offset);
	return 0;
}

/* An array at the top level: each element is an event. simdjson validates the
 * whole array first, so any error falls back to structural splitting. */
static int feed_array(struct th_parser *p, const char *buf, size_t len, uint64_t offset,
		      const struct th_sink *sink)
{
	ondemand::document doc;
	ondemand::array arr;
	std::vector<span> els;
	error_code err = p->outer.iterate(buf, len, len + TH_PARSE_PADDING).get(doc);
	if (!err)
		err = doc.get_array().get(arr);
	if (!err) {
		for (auto er : arr) {
			ondemand::value el;
			ondemand::object eo;
			std::string_view raw;
			if ((err = std::move(er).get(el)))
				break;
			if (el.get_object().get(eo)) {
				els.push_back(non_object(el));
				continue;
			}
			if ((err = eo.raw_json().get(raw)))
				break;
			els.push_back(trimmed(raw));
		}
	}
	if (!err && doc.current_location().error() == SUCCESS)
		err = TRAILING_CONTENT;
	if (err) {
		int r = th_split_container(p, buf, len, offset, sink);
		if (r == 1)
			return 0;
		if (r < 0)
			return -r;
		char detail[256];
		snprintf(detail, sizeof(detail), "%s", error_message(err));
		sink->on_reject(sink->ctx, reject_of(err), detail, buf, len, offset);
		return 0;
	}
	for (const span &s : els) {
		int rc;
		if (!s.obj) {
			span e = element_span(buf, len, s.p);
			sink->on_reject(sink->ctx, TH_REJECT_NOT_CLOUDTRAIL,
					"array element is not an object", e.p, e.n,
					offset + uint64_t(e.p - buf));
			continue;
		}
		if ((rc = deliver(p, s.p, s.n, offset + uint64_t(s.p - buf), sink)))
			return rc;
	}
	return 0;
}

int th_parser_feed(struct th_parser *p, const char *buf, size_t len, uint64_t offset,
		   const struct th_sink *sink)
{
	/* The value without surrounding whitespace (a Kafka message may end in a
	 * newline): its raw bytes, offset and synthesized eventID are then the
	 * same as when th_input frames it. The padding after it stays readable. */
	size_t i = 0;
	while (i < len && (buf[i] == ' ' || buf[i] == '\n' || buf[i] == '\r' || buf[i] == '\t'))
		i++;
	/* A UTF-8 byte-order mark (Windows editors, some exporters) is not JSON
	 * but says nothing about the value: skip it rather than lose the record. */
	if (len - i >= 3 && memcmp(buf + i, "\xEF\xBB\xBF", 3) == 0) {
		i += 3;
		while (i < len &&
		       (buf[i] == ' ' || buf[i] == '\n' || buf[i] == '\r' || buf[i] == '\t'))
			i++;
	}
	buf += i;
	len -= i;
	offset += i;
	len = trimmed(std::string_view(buf, len)).n;
	if (len && buf[0] == '[')
		return feed_array(p, buf, len, offset, sink);

	container_info ci;
	th_event ev;
	failure fail;
	char detail[256];
	/* The container limit is enforced by the framer; a bare event must fit
	 * the record limit. */
	int rc = parse_object(p->outer, p->strings, p->record_max, buf, len, &ev, &ci, fail);
	if (rc == TH_ENOMEM) {
		sink->on_reject(sink->ctx, TH_REJECT_TOO_LARGE, "out of memory", buf, len, offset);
		return 0;
	}
	if (rc) {
		/* A {"Records":[...]} file with one bad record fails as a whole in
		 * simdjson (UTF-8 and structure are validated up front): split it
		 * structurally and judge each record on its own. */
		if (fail.why != TH_REJECT_NOT_CLOUDTRAIL) {
			int r = th_split_container(p, buf, len, offset, sink);
			if (r == 1)
				return 0;
			if (r < 0)
				return -r;
		}
		describe_failure(fail, detail, sizeof(detail));
		sink->on_reject(sink->ctx, fail.why, detail, buf, len, offset);
		return 0;
	}
	if (ci.has_records) {
		if (ci.records_not_array) {
			sink->on_reject(sink->ctx, TH_REJECT_WRONG_TYPE, "field Records is not an array",
					buf, len, offset);
			return 0;
		}
		for (const span &s : ci.records) {
			if (!s.obj) {
				span e = element_span(buf, len, s.p);
				sink->on_reject(sink->ctx, TH_REJECT_NOT_CLOUDTRAIL,
						"Records element is not an object", e.p, e.n,
						offset + uint64_t(e.p - buf));
				continue;
			}
			if ((rc = deliver(p, s.p, s.n, offset + uint64_t(s.p - buf), sink)))
				return rc;
		}
		return 0;
	}
	if (ci.has_detail_type) {
		/* Every CloudTrail detail-type ("AWS API Call via CloudTrail", "AWS
		 * Console Sign In via CloudTrail", "AWS Service Event via CloudTrail",
		 * "AWS Console Action via CloudTrail") carries the record in detail. */
		static const char via[] = " via CloudTrail";
		const std::string_view dt = ci.detail_type, suffix(via, sizeof(via) - 1);
		bool cloudtrail = dt.size() > suffix.size() &&
				  dt.compare(dt.size() - suffix.size(), suffix.size(), suffix) == 0;
		if (cloudtrail && ci.has_detail)
			return deliver(p, ci.detail.p, ci.detail.n, offset + uint64_t(ci.detail.p - buf),
				       sink);
		p->detail_type_copy.assign(ci.detail_type.data(), ci.detail_type.size());
		/* Any text may be a detail-type (PutEvents): cut it on a character
		 * boundary, the detail goes out as a Kafka header. */
		const char *dtc = p->detail_type_copy.c_str();
		snprintf(detail, sizeof(detail), "EventBridge envelope of detail-type \"%.*s\"%s",
			 quote_len(dtc, 80), dtc, ci.has_detail ? "" : " without detail");
		sink->on_reject(sink->ctx, TH_REJECT_NOT_CLOUDTRAIL, detail, buf, len, offset);
		return 0;
	}
	if (len > p->record_max) {
		snprintf(detail, sizeof(detail), "record of %zu bytes is over the %zu-byte limit", len,
			 p->record_max);
		sink->on_reject(sink->ctx, TH_REJECT_TOO_LARGE, detail, buf, len, offset);
		return 0;
	}
	enum th_reject why = TH_REJECT_NONE;
	if (finish_event(&ev, p->strings, p->clock, buf, len, &why, detail, sizeof(detail))) {
		sink->on_reject(sink->ctx, why, detail, buf, len, offset);
		return 0;
	}
	return sink->on_event(sink->ctx, &ev, buf, len, offset);
}

} /* extern "C" */

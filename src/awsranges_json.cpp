/*
 * The ip-ranges.json reader behind enrich.c: simdjson's DOM over the whole
 * document (a few MB, read once at startup), handing each prefix to a C
 * callback. Only error codes are used, and the entry point catches anything
 * else, so no C++ exception ever unwinds into C.
 */
#include "awsranges_json.h"

#include <cstdarg>
#include <cstdio>
#include <new>

#include <simdjson.h>

extern "C" {
#include "trailhound/common.h"
}

namespace {


/*
 * One of the two prefix arrays. "ipv6_prefixes" may be absent because files
 * published before AWS announced IPv6 ranges (still replayed for old logs)
 * do not have it.
 */
int walk(simdjson::dom::object root, const char *key, const char *prefix_key, int ip_version,
	 bool required, th_awsranges_cb *cb, void *ctx, char *errstr, size_t errstr_size)
{
	simdjson::dom::array arr;
	simdjson::error_code err = root[key].get_array().get(arr);
	size_t i = 0;

	if (err == simdjson::NO_SUCH_FIELD && !required)
		return 0;
	if (err) {
		th_errstr(errstr, errstr_size, "\"%s\": %s", key, simdjson::error_message(err));
		return TH_EPARSE;
	}
	for (simdjson::dom::element el : arr) {
		simdjson::dom::object obj;
		const char *prefix, *region, *service;
		int rc;

		if (el.get_object().get(obj) || obj[prefix_key].get_c_str().get(prefix) ||
		    obj["region"].get_c_str().get(region) ||
		    obj["service"].get_c_str().get(service)) {
			th_errstr(errstr, errstr_size,
				"%s[%zu]: expected an object with string \"%s\", \"region\" and "
				"\"service\"",
				key, i, prefix_key);
			return TH_EPARSE;
		}
		/* The callback explains its own failures in its context. */
		rc = cb(ctx, ip_version, prefix, region, service);
		if (rc)
			return rc;
		i++;
	}
	return 0;
}

int parse(const char *buf, size_t len, th_awsranges_cb *cb, void *ctx, char *create_date,
	  size_t create_date_size, char *errstr, size_t errstr_size)
{
	simdjson::dom::parser parser;
	simdjson::dom::object root;
	const char *date;
	simdjson::error_code err;
	int rc;

	if (create_date && create_date_size)
		create_date[0] = '\0';
	/* realloc_if_needed: the caller's buffer has no SIMDJSON_PADDING. */
	err = parser.parse(buf, len, true).get_object().get(root);
	if (err) {
		th_errstr(errstr, errstr_size, "not a JSON object: %s", simdjson::error_message(err));
		return err == simdjson::MEMALLOC ? TH_ENOMEM : TH_EPARSE;
	}
	if (create_date && create_date_size && !root["createDate"].get_c_str().get(date))
		snprintf(create_date, create_date_size, "%s", date);

	rc = walk(root, "prefixes", "ip_prefix", 4, true, cb, ctx, errstr, errstr_size);
	if (rc)
		return rc;
	return walk(root, "ipv6_prefixes", "ipv6_prefix", 6, false, cb, ctx, errstr, errstr_size);
}

} // namespace

extern "C" int th_awsranges_parse(const char *buf, size_t len, th_awsranges_cb *cb, void *ctx,
				  char *create_date, size_t create_date_size, char *errstr,
				  size_t errstr_size)
{
	try {
		return parse(buf, len, cb, ctx, create_date, create_date_size, errstr, errstr_size);
	} catch (const std::bad_alloc &) {
		th_errstr(errstr, errstr_size, "out of memory reading ip-ranges.json");
		return TH_ENOMEM;
	} catch (...) {
		th_errstr(errstr, errstr_size, "unexpected error reading ip-ranges.json");
		return TH_EPARSE;
	}
}

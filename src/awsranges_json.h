/*
 * Private to enrich.c: the reader of AWS's ip-ranges.json. It lives in a thin
 * C++ file because simdjson is a C++ library; this header is the whole C
 * boundary, and nothing crosses it but strings, ints and a callback.
 */
#ifndef TRAILHOUND_AWSRANGES_JSON_H
#define TRAILHOUND_AWSRANGES_JSON_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Called once per entry of "prefixes" (ip_version 4) and "ipv6_prefixes"
 * (ip_version 6), in file order. The strings are NUL-terminated and valid only
 * during the call. Return 0 to go on, or a negative TH_E* code to stop the
 * parse, which then returns that code.
 */
typedef int th_awsranges_cb(void *ctx, int ip_version, const char *prefix, const char *region,
			    const char *service);

/**
 * @brief Walk the prefixes of an ip-ranges.json document held in @p buf.
 * @p create_date (may be NULL) receives the file's "createDate", "" if absent.
 * @returns 0, TH_EPARSE (not JSON, or not the ip-ranges.json shape), TH_ENOMEM,
 *          or whatever @p cb returned; @p errstr explains.
 */
int th_awsranges_parse(const char *buf, size_t len, th_awsranges_cb *cb, void *ctx,
		       char *create_date, size_t create_date_size, char *errstr,
		       size_t errstr_size);

#ifdef __cplusplus
}
#endif

#endif

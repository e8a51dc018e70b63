/*
 * Enrichment of a CloudTrail source address: is it a service name, a private
 * address, an AWS address (and of which region/service), or a public non-AWS
 * address, and which ASN / AS organisation announces it.
 *
 * Sources: AWS's ip-ranges.json (IPv4 and IPv6 prefixes with region and
 * service, longest-prefix match), a GeoLite2-ASN schema .mmdb read with
 * libmaxminddb, and a table of Amazon ASNs used to recognise AWS addresses
 * when no ip-ranges.json is configured (the region is then unknown).
 *
 * Ownership: th_enrich_new() returns an object the caller frees with
 * th_enrich_destroy(). Lookups are read-only and safe to call from several
 * threads at once.
 */
#ifndef TRAILHOUND_ENRICH_H
#define TRAILHOUND_ENRICH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "trailhound/common.h"

#ifdef __cplusplus
extern "C" {
#endif


enum th_net_kind {
	TH_NET_SERVICE = 0, /* an AWS service name: "AWS Internal", "<service>.amazonaws.com" */
	TH_NET_PRIVATE,     /* RFC 1918, CGNAT, loopback, link-local, ULA, ... */
	TH_NET_AWS,         /* an AWS address (ip-ranges.json, else an Amazon ASN) */
	TH_NET_PUBLIC,      /* a public address that is not AWS's */
	/* Neither an address nor a service name as AWS writes it ("aws internal",
	 * "Lambda.amazonaws.com", "evil.example.com", empty, missing). Last, so
	 * the stored values of the others do not change. */
	TH_NET_UNRECOGNISED,
};

struct th_netinfo {
	enum th_net_kind kind;
	int family;           /* AF_INET, AF_INET6, or 0 when not an address */
	uint32_t asn;         /* 0 when unknown */
	char as_org[96];      /* "" when unknown */
	char aws_region[32];  /* e.g. "us-east-1"; "" when not AWS or region unknown */
	char aws_service[32]; /* most specific service of the matched prefix, e.g. "EC2" */
	bool aws_by_asn;      /* AWS recognised through the Amazon-ASN fallback */
};

struct th_enrich_conf {
	const char *asn_db_path;      /* .mmdb (GeoLite2-ASN schema); NULL = no ASN data */
	const char *aws_ranges_path;  /* ip-ranges.json; NULL = Amazon-ASN fallback */
	const uint32_t *amazon_asns;  /* NULL = th_enrich_default_amazon_asns */
	size_t amazon_asns_count;
};

/* The built-in Amazon ASNs (used when conf->amazon_asns is NULL). */
extern const uint32_t th_enrich_default_amazon_asns[];
extern const size_t th_enrich_default_amazon_asns_count;

struct th_enrich;

/**
 * @brief Load the reference data named in @p conf.
 * @returns 0, TH_ENOTFOUND (a file is missing), TH_EPARSE (bad ip-ranges.json
 *          or .mmdb), TH_ENOMEM; @p errstr explains. Also TH_EIO (a file exists
 *          but cannot be read) and TH_EINVAL (@p enp or @p conf NULL). On
 *          failure *enp is NULL.
 */
int th_enrich_new(struct th_enrich **enp, const struct th_enrich_conf *conf, char *errstr,
		  size_t errstr_size);
void th_enrich_destroy(struct th_enrich *en);
/**
 * @brief Whether a file @p en was loaded from has been replaced or rewritten
 *        since (another inode, size or modification time): load the reference
 *        data again to use it. A file missing right now is not a change.
 */
bool th_enrich_files_changed(const struct th_enrich *en);
/**
 * @brief When the loaded reference data was made, in seconds since the epoch:
 *        the ASN database's build epoch and ip-ranges.json's createDate; 0 when
 *        that file is not loaded (or its date unknown). Stale data misjudges
 *        networks: what an operator watches.
 */
void th_enrich_built(const struct th_enrich *en, int64_t *asn_db_s, int64_t *aws_ranges_s);

/**
 * @brief Classify @p source_ip (a CloudTrail sourceIPAddress value, NUL-terminated).
 * Never fails. An IPv4/IPv6 literal is an address; exactly "AWS Internal", or
 * one or more lowercase DNS labels ([a-z0-9-]) followed by ".amazonaws.com",
 * is TH_NET_SERVICE; anything else, NULL and "" included, is
 * TH_NET_UNRECOGNISED (the caller counts it and judges it remote: a name
 * AWS does not write must never pass for Lambda's own traffic).
 */
void th_enrich_lookup(const struct th_enrich *en, const char *source_ip, struct th_netinfo *out);

/**
 * @brief Classify an address already in binary form: @p addr points to a
 * struct in_addr (@p family AF_INET) or struct in6_addr (AF_INET6), network
 * byte order. th_enrich_lookup() is inet_pton() followed by this, so callers
 * holding parsed addresses skip the text parse (~40 ns IPv4, ~200 ns IPv6).
 * Never fails: any other family is TH_NET_SERVICE.
 */
void th_enrich_lookup_addr(const struct th_enrich *en, int family, const void *addr,
			   struct th_netinfo *out);

/** @brief Number of IPv4 / IPv6 AWS prefixes loaded (0 without ip-ranges.json). */
size_t th_enrich_aws_prefix_count(const struct th_enrich *en, int family);

#ifdef __cplusplus
}
#endif

#endif

/*
 * Tests for enrich.c against the shared reference data, used in place: AWS's
 * ip-ranges.json (createDate 2026-08-22-15-17-05) and the GeoLite2-ASN-schema
 * asn.mmdb built from @ip-location-db/asn 2.3.2026061719. Every expected row
 * was checked with `mmdblookup` and a Python longest-prefix match over the
 * JSON. If the shared data is ever refreshed, the rows must be re-checked.
 *
 * Besides the tables, an independent brute-force longest-prefix match over
 * every prefix in the file checks the flattened ranges at prefix boundaries.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <maxminddb.h>

#include "trailhound/enrich.h"

#include "../../src/awsranges_json.h"

#define RANGES_PATH TH_SHARED_DATA "/aws-ip-ranges/ip-ranges.json"
#define ASN_PATH TH_SHARED_DATA "/asn/asn.mmdb"

/* 0 or fail with the code and errstr (LMDB's E() habit). */
#define E(expr)                                                                        \
	do {                                                                           \
		int rc_ = (expr);                                                      \
		if (rc_)                                                               \
			fail_msg("%s: %s (%s)", #expr, th_strerror(rc_), errstr);      \
	} while (0)

struct row {
	const char *ip;
	enum th_net_kind kind;
	int family;
	const char *region;
	const char *service;
	uint32_t asn;
	const char *as_org; /* NULL: not checked */
	bool by_asn;
};

static char tmpdir[64];
static struct th_enrich *full; /* both files */

static const char *kind_name(enum th_net_kind kind)
{
	static const char *const names[] = {"SERVICE", "PRIVATE", "AWS", "PUBLIC", "UNRECOGNISED"};

	return (unsigned)kind < TH_ARRAY_SIZE(names) ? names[kind] : "?";
}

static void check_rows(const struct th_enrich *en, const struct row *rows, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct row *r = &rows[i];
		struct th_netinfo ni;
		const char *ip = r->ip ? r->ip : "(null)";

		memset(&ni, 0x5a, sizeof(ni)); /* stale garbage must be overwritten */
		th_enrich_lookup(en, r->ip, &ni);
		if (ni.kind != r->kind)
			fail_msg("%s: kind %s, want %s", ip, kind_name(ni.kind),
				 kind_name(r->kind));
		if (ni.family != r->family)
			fail_msg("%s: family %d, want %d", ip, ni.family, r->family);
		if (strcmp(ni.aws_region, r->region) != 0)
			fail_msg("%s: region \"%s\", want \"%s\"", ip, ni.aws_region, r->region);
		if (strcmp(ni.aws_service, r->service) != 0)
			fail_msg("%s: service \"%s\", want \"%s\"", ip, ni.aws_service,
				 r->service);
		if (ni.asn != r->asn)
			fail_msg("%s: asn %u, want %u", ip, ni.asn, r->asn);
		if (r->as_org && strcmp(ni.as_org, r->as_org) != 0)
			fail_msg("%s: as_org \"%s\", want \"%s\"", ip, ni.as_org, r->as_org);
		if (ni.aws_by_asn != r->by_asn)
			fail_msg("%s: aws_by_asn %d, want %d", ip, ni.aws_by_asn, r->by_asn);
		if (r->asn == 0 && ni.as_org[0])
			fail_msg("%s: as_org \"%s\" without an ASN", ip, ni.as_org);
	}
}

static char *write_tmp(const char *name, const char *content, size_t len)
{
	static char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(content, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	return path;
}

static int group_setup(void **state)
{
	struct th_enrich_conf conf = {.asn_db_path = ASN_PATH, .aws_ranges_path = RANGES_PATH};
	char errstr[256] = "";

	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_enrich.XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	if (th_enrich_new(&full, &conf, errstr, sizeof(errstr)) != 0) {
		fprintf(stderr, "loading the reference data: %s\n", errstr);
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	static const char *const files[] = {"synthetic.json", "v4only.json", "bad.json",
					    "bad.mmdb", "wide.json", "edge.json",
					    "ip-ranges-wide.json", "asn-copy.mmdb",
					    "asn-flipped.mmdb"};
	char path[128];

	(void)state;
	th_enrich_destroy(full);
	for (size_t i = 0; i < TH_ARRAY_SIZE(files); i++) {
		snprintf(path, sizeof(path), "%s/%s", tmpdir, files[i]);
		unlink(path);
	}
	return rmdir(tmpdir);
}

/* --- with both files ------------------------------------------------------ */

static void test_aws(void **state)
{
	static const struct row rows[] = {
		/* The brief's canonical case: Lambda/EC2 egress in N. Virginia. */
		{"54.158.64.105", TH_NET_AWS, AF_INET, "us-east-1", "EC2", 14618,
		 "Amazon.com, Inc.", false},
		{"::ffff:54.158.64.105", TH_NET_AWS, AF_INET, "us-east-1", "EC2", 14618, NULL,
		 false},
		{"2600:1f18:1234::1", TH_NET_AWS, AF_INET6, "us-east-1", "EC2", 14618, NULL, false},
		{"2a05:d018::1", TH_NET_AWS, AF_INET6, "eu-west-1", "EC2", 16509, NULL, false},
		/* AMAZON + S3 + EC2 on one prefix: the named service wins. */
		{"52.216.1.1", TH_NET_AWS, AF_INET, "us-east-1", "S3", 16509, NULL, false},
		{"3.5.140.1", TH_NET_AWS, AF_INET, "ap-northeast-2", "S3", 16509, NULL, false},
		{"2406:daf9:a800::1", TH_NET_AWS, AF_INET6, "ap-southeast-1", "S3", 16509, NULL,
		 false},
		{"2600:f0f0:5536::1", TH_NET_AWS, AF_INET6, "ap-northeast-1", "IVS_REALTIME", 16509,
		 NULL, false},
		{"13.32.1.1", TH_NET_AWS, AF_INET, "GLOBAL", "CLOUDFRONT", 16509, NULL, false},
		/* 15.193.0.0/19 GLOBAL holds regional /24s; after them the /19 resumes. */
		{"15.193.0.1", TH_NET_AWS, AF_INET, "ap-south-1", "AMAZON_CONNECT", 16509, NULL,
		 false},
		{"15.193.10.1", TH_NET_AWS, AF_INET, "af-south-1", "AMAZON_CONNECT", 16509, NULL,
		 false},
		{"15.193.31.1", TH_NET_AWS, AF_INET, "GLOBAL", "AMAZON_CONNECT", 16509, NULL,
		 false},
		/* Adjacent /32s of different regions, AMAZON only. */
		{"3.4.12.4", TH_NET_AWS, AF_INET, "eu-west-1", "AMAZON", 16509, NULL, false},
		{"3.4.12.5", TH_NET_AWS, AF_INET, "us-east-1", "AMAZON", 16509, NULL, false},
		/* the longest service names fit: CLOUDFRONT_ORIGIN_FACING */
		{"130.176.88.1", TH_NET_AWS, AF_INET, "GLOBAL", "CLOUDFRONT_ORIGIN_FACING", 16509,
		 NULL, false},
	};

	(void)state;
	check_rows(full, rows, TH_ARRAY_SIZE(rows));
}

static void test_public(void **state)
{
	static const struct row rows[] = {
		{"8.8.8.8", TH_NET_PUBLIC, AF_INET, "", "", 15169, "Google LLC", false},
		{"::ffff:8.8.8.8", TH_NET_PUBLIC, AF_INET, "", "", 15169, "Google LLC", false},
		{"2001:4860:4860::8888", TH_NET_PUBLIC, AF_INET6, "", "", 15169, "Google LLC",
		 false},
		{"1.1.1.1", TH_NET_PUBLIC, AF_INET, "", "", 13335, "Cloudflare, Inc.", false},
		/* Just outside 172.16/12 and 100.64/10. */
		{"172.15.255.255", TH_NET_PUBLIC, AF_INET, "", "", 7018, NULL, false},
		{"172.32.0.1", TH_NET_PUBLIC, AF_INET, "", "", 21928, NULL, false},
		{"100.128.0.1", TH_NET_PUBLIC, AF_INET, "", "", 21928, NULL, false},
		/* An Amazon ASN, but in no prefix of ip-ranges.json: with the file
		 * loaded the ASN table is not consulted. */
		{"35.96.5.1", TH_NET_PUBLIC, AF_INET, "", "", 801, "Amazon Technologies Inc.",
		 false},
	};

	(void)state;
	check_rows(full, rows, TH_ARRAY_SIZE(rows));
}

static void test_private(void **state)
{
	static const struct row rows[] = {
		{"10.1.2.3", TH_NET_PRIVATE, AF_INET, "", "", 0, "", false},
		{"172.16.0.1", TH_NET_PRIVATE, AF_INET, "", "", 0, "", false},
		{"172.31.255.255", TH_NET_PRIVATE, AF_INET, "", "", 0, "", false},
		{"192.168.1.1", TH_NET_PRIVATE, AF_INET, "", "", 0, "", false},
		{"100.64.0.1", TH_NET_PRIVATE, AF_INET, "", "", 0, "", false},
		{"100.127.255.255", TH_NET_PRIVATE, AF_INET, "", "", 0, "", false},
		{"127.0.0.1", TH_NET_PRIVATE, AF_INET, "", "", 0, "", false},
		{"169.254.169.254", TH_NET_PRIVATE, AF_INET, "", "", 0, "", false},
		{"0.0.0.0", TH_NET_PRIVATE, AF_INET, "", "", 0, "", false},
		{"::ffff:10.0.0.1", TH_NET_PRIVATE, AF_INET, "", "", 0, "", false},
		{"::1", TH_NET_PRIVATE, AF_INET6, "", "", 0, "", false},
		{"::", TH_NET_PRIVATE, AF_INET6, "", "", 0, "", false},
		{"fc00::1", TH_NET_PRIVATE, AF_INET6, "", "", 0, "", false},
		{"fd12:3456:789a::1", TH_NET_PRIVATE, AF_INET6, "", "", 0, "", false},
		{"fe80::1", TH_NET_PRIVATE, AF_INET6, "", "", 0, "", false},
		{"febf:ffff::1", TH_NET_PRIVATE, AF_INET6, "", "", 0, "", false},
	};

	(void)state;
	check_rows(full, rows, TH_ARRAY_SIZE(rows));
}

static void test_service(void **state)
{
	static const struct row rows[] = {
		{"lambda.amazonaws.com", TH_NET_SERVICE, 0, "", "", 0, "", false},
		{"AWS Internal", TH_NET_SERVICE, 0, "", "", 0, "", false},
		{"streams.dynamodb.amazonaws.com", TH_NET_SERVICE, 0, "", "", 0, "", false},
		{"access-analyzer.amazonaws.com", TH_NET_SERVICE, 0, "", "", 0, "", false},
		/* Spec v2: anything else is unrecognised (judged remote by the
		 * detector), never a service. */
		{"", TH_NET_UNRECOGNISED, 0, "", "", 0, "", false},
		{NULL, TH_NET_UNRECOGNISED, 0, "", "", 0, "", false},
		{"aws internal", TH_NET_UNRECOGNISED, 0, "", "", 0, "", false},
		{"AWS Internal ", TH_NET_UNRECOGNISED, 0, "", "", 0, "", false},
		{"Lambda.amazonaws.com", TH_NET_UNRECOGNISED, 0, "", "", 0, "", false},
		{"amazonaws.com", TH_NET_UNRECOGNISED, 0, "", "", 0, "", false},
		{".amazonaws.com", TH_NET_UNRECOGNISED, 0, "", "", 0, "", false},
		{"a..amazonaws.com", TH_NET_UNRECOGNISED, 0, "", "", 0, "", false},
		{"lambda.amazonaws.com.evil.example", TH_NET_UNRECOGNISED, 0, "", "", 0, "", false},
		{"lambda_x.amazonaws.com", TH_NET_UNRECOGNISED, 0, "", "", 0, "", false},
		{"evil.example.com", TH_NET_UNRECOGNISED, 0, "", "", 0, "", false},
		{"54.158.64", TH_NET_UNRECOGNISED, 0, "", "", 0, "", false},
		{" 54.158.64.105", TH_NET_UNRECOGNISED, 0, "", "", 0, "", false},
		{"54.158.64.105 ", TH_NET_UNRECOGNISED, 0, "", "", 0, "", false},
		{"fe80::1%eth0", TH_NET_UNRECOGNISED, 0, "", "", 0, "", false},
		{"2600:1f18::/33", TH_NET_UNRECOGNISED, 0, "", "", 0, "", false},
	};

	(void)state;
	check_rows(full, rows, TH_ARRAY_SIZE(rows));
}

static void test_prefix_count(void **state)
{
	(void)state;
	/* As listed in aws-ip-ranges/PROVENANCE.md: entries, not distinct prefixes. */
	assert_int_equal(th_enrich_aws_prefix_count(full, AF_INET), 10668);
	assert_int_equal(th_enrich_aws_prefix_count(full, AF_INET6), 6160);
	assert_int_equal(th_enrich_aws_prefix_count(full, AF_UNIX), 0);
	assert_int_equal(th_enrich_aws_prefix_count(NULL, AF_INET), 0);
}

/* --- brute-force cross-check --------------------------------------------- */

struct bf_pfx {
	int family;
	unsigned char net[16];
	unsigned len;
	char region[32];
	char service[32];
};

struct bf_list {
	struct bf_pfx *p;
	size_t n, cap;
};

static int bf_collect(void *ctx, int ip_version, const char *prefix, const char *region,
		      const char *service)
{
	struct bf_list *l = ctx;
	struct bf_pfx *p;
	char addr[64];
	const char *slash = strchr(prefix, '/');

	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 1024;
		l->p = realloc(l->p, l->cap * sizeof(*l->p));
		if (!l->p)
			return TH_ENOMEM;
	}
	p = &l->p[l->n++];
	memset(p, 0, sizeof(*p));
	if (!slash || (size_t)(slash - prefix) >= sizeof(addr))
		return TH_EPARSE;
	memcpy(addr, prefix, (size_t)(slash - prefix));
	addr[slash - prefix] = '\0';
	p->family = ip_version == 4 ? AF_INET : AF_INET6;
	if (inet_pton(p->family, addr, p->net) != 1)
		return TH_EPARSE;
	p->len = (unsigned)atoi(slash + 1);
	snprintf(p->region, sizeof(p->region), "%s", region);
	snprintf(p->service, sizeof(p->service), "%s", service);
	return 0;
}

static bool bf_match(const unsigned char *a, const unsigned char *net, unsigned len)
{
	unsigned full_bytes = len / 8, rest = len % 8;

	if (memcmp(a, net, full_bytes) != 0)
		return false;
	return rest == 0 ||
	       ((a[full_bytes] ^ net[full_bytes]) & (unsigned char)(0xff << (8 - rest))) == 0;
}

static int bf_rank(const char *service)
{
	return strcmp(service, "AMAZON") == 0 ? 0 : strcmp(service, "EC2") == 0 ? 1 : 2;
}

/* The rule from enrich.h, written the slow, obvious way. */
static const struct bf_pfx *bf_lookup(const struct bf_list *l, int family,
				      const unsigned char *a)
{
	const struct bf_pfx *best = NULL;

	for (size_t i = 0; i < l->n; i++) {
		const struct bf_pfx *p = &l->p[i];

		if (p->family != family || !bf_match(a, p->net, p->len))
			continue;
		if (!best || p->len > best->len ||
		    (p->len == best->len &&
		     (bf_rank(p->service) > bf_rank(best->service) ||
		      (bf_rank(p->service) == 2 && bf_rank(best->service) == 2 &&
		       strcmp(p->service, best->service) < 0))))
			best = p;
	}
	return best;
}

/* a += delta (+1 or -1) over a big-endian address of @n bytes; false on wrap. */
static bool addr_step(unsigned char *a, size_t n, int delta)
{
	for (size_t i = n; i-- > 0;) {
		if (delta > 0 ? ++a[i] != 0 : a[i]-- != 0)
			return true;
	}
	return false;
}

static void test_bruteforce_boundaries(void **state)
{
	struct bf_list l = {0};
	char *buf = NULL;
	char errstr[256] = "";
	long size;
	FILE *f;
	uint32_t seed = 12345;
	size_t checked = 0;

	(void)state;
	f = fopen(RANGES_PATH, "rb");
	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	size = ftell(f);
	rewind(f);
	buf = malloc((size_t)size);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
	fclose(f);
	E(th_awsranges_parse(buf, (size_t)size, bf_collect, &l, NULL, 0, errstr, sizeof(errstr)));
	assert_true(l.n > 10000);

	/* Every 7th prefix (a fixed, spread sample), at its first and last
	 * address and one step outside each end, plus a pseudo-random inside. */
	for (size_t i = 0; i < l.n; i += 7) {
		const struct bf_pfx *p = &l.p[i];
		size_t n = p->family == AF_INET ? 4 : 16;
		unsigned char probes[5][16];
		bool valid[5] = {true, true, true, true, true};

		memcpy(probes[0], p->net, n);
		memcpy(probes[1], p->net, n);
		for (unsigned bit = p->len; bit < n * 8; bit++)
			probes[1][bit / 8] |= (unsigned char)(0x80 >> (bit % 8));
		memcpy(probes[2], probes[0], n);
		valid[2] = addr_step(probes[2], n, -1);
		memcpy(probes[3], probes[1], n);
		valid[3] = addr_step(probes[3], n, +1);
		memcpy(probes[4], p->net, n);
		for (unsigned bit = p->len; bit < n * 8; bit++) {
			seed = seed * 1103515245u + 12345u;
			if (seed & 0x10000)
				probes[4][bit / 8] |= (unsigned char)(0x80 >> (bit % 8));
		}

		for (int k = 0; k < 5; k++) {
			const struct bf_pfx *want;
			struct th_netinfo ni;
			char text[INET6_ADDRSTRLEN];
			char cut[sizeof(ni.aws_service)];
			size_t len;

			if (!valid[k])
				continue;
			assert_non_null(inet_ntop(p->family, probes[k], text, sizeof(text)));
			th_enrich_lookup(full, text, &ni);
			if (ni.kind == TH_NET_PRIVATE)
				continue;
			want = bf_lookup(&l, p->family, probes[k]);
			if (!want) {
				if (ni.kind != TH_NET_PUBLIC)
					fail_msg("%s: kind %s, want PUBLIC", text,
						 kind_name(ni.kind));
				checked++;
				continue;
			}
			/* aws_service is cut to its size; so is the expectation. */
			len = strnlen(want->service, sizeof(cut) - 1);
			memcpy(cut, want->service, len);
			cut[len] = '\0';
			if (ni.kind != TH_NET_AWS || strcmp(ni.aws_region, want->region) != 0 ||
			    strcmp(ni.aws_service, cut) != 0)
				fail_msg("%s: %s %s %s, want AWS %s %s", text, kind_name(ni.kind),
					 ni.aws_region, ni.aws_service, want->region, cut);
			checked++;
		}
	}
	assert_true(checked > 8000);
	free(l.p);
	free(buf);
}

/* --- other configurations ------------------------------------------------- */

static void test_amazon_asn_fallback(void **state)
{
	static const struct row rows[] = {
		{"54.158.64.105", TH_NET_AWS, AF_INET, "", "", 14618, "Amazon.com, Inc.", true},
		{"2a05:d018::1", TH_NET_AWS, AF_INET6, "", "", 16509, NULL, true},
		{"35.96.5.1", TH_NET_AWS, AF_INET, "", "", 801, NULL, true},
		{"43.192.0.1", TH_NET_AWS, AF_INET, "", "", 135629, NULL, true},
		{"8.8.8.8", TH_NET_PUBLIC, AF_INET, "", "", 15169, NULL, false},
		{"10.0.0.1", TH_NET_PRIVATE, AF_INET, "", "", 0, "", false},
		{"lambda.amazonaws.com", TH_NET_SERVICE, 0, "", "", 0, "", false},
	};
	struct th_enrich_conf conf = {.asn_db_path = ASN_PATH};
	struct th_enrich *en = NULL;
	char errstr[256] = "";

	(void)state;
	E(th_enrich_new(&en, &conf, errstr, sizeof(errstr)));
	check_rows(en, rows, TH_ARRAY_SIZE(rows));
	assert_int_equal(th_enrich_aws_prefix_count(en, AF_INET), 0);
	assert_int_equal(th_enrich_aws_prefix_count(en, AF_INET6), 0);
	th_enrich_destroy(en);
}

static void test_custom_amazon_asns(void **state)
{
	/* The table replaces the default; the caller's array need not outlive
	 * th_enrich_new(). */
	static const struct row rows[] = {
		{"8.8.8.8", TH_NET_AWS, AF_INET, "", "", 15169, NULL, true},
		{"54.158.64.105", TH_NET_PUBLIC, AF_INET, "", "", 14618, NULL, false},
	};
	uint32_t asns[] = {15169};
	struct th_enrich_conf conf = {
		.asn_db_path = ASN_PATH, .amazon_asns = asns, .amazon_asns_count = 1};
	struct th_enrich *en = NULL;
	char errstr[256] = "";

	(void)state;
	E(th_enrich_new(&en, &conf, errstr, sizeof(errstr)));
	asns[0] = 0;
	check_rows(en, rows, TH_ARRAY_SIZE(rows));
	th_enrich_destroy(en);
}

static void test_ranges_without_asn_db(void **state)
{
	static const struct row rows[] = {
		{"54.158.64.105", TH_NET_AWS, AF_INET, "us-east-1", "EC2", 0, "", false},
		{"8.8.8.8", TH_NET_PUBLIC, AF_INET, "", "", 0, "", false},
	};
	struct th_enrich_conf conf = {.aws_ranges_path = RANGES_PATH};
	struct th_enrich *en = NULL;
	char errstr[256] = "";

	(void)state;
	E(th_enrich_new(&en, &conf, errstr, sizeof(errstr)));
	check_rows(en, rows, TH_ARRAY_SIZE(rows));
	th_enrich_destroy(en);
}

static void test_no_data(void **state)
{
	static const struct row rows[] = {
		{"54.158.64.105", TH_NET_PUBLIC, AF_INET, "", "", 0, "", false},
		{"192.168.0.1", TH_NET_PRIVATE, AF_INET, "", "", 0, "", false},
		{"AWS Internal", TH_NET_SERVICE, 0, "", "", 0, "", false},
	};
	struct th_enrich_conf conf = {0};
	struct th_enrich *en = NULL;
	char errstr[256] = "";

	(void)state;
	E(th_enrich_new(&en, &conf, errstr, sizeof(errstr)));
	check_rows(en, rows, TH_ARRAY_SIZE(rows));
	th_enrich_destroy(en);
	th_enrich_destroy(NULL);
}

/*
 * Nesting and the edges of the address space, which the real file does not
 * reach: a prefix at the very top (no "end + 1"), a child ending where its
 * parent ends, two named services on one prefix in either order.
 */
static void test_synthetic_ranges(void **state)
{
	static const char json[] =
		"{\"createDate\": \"2000-01-01-00-00-00\", \"prefixes\": ["
		"{\"ip_prefix\": \"20.0.0.0/8\", \"region\": \"r1\", \"service\": \"AMAZON\"},"
		"{\"ip_prefix\": \"20.1.0.0/16\", \"region\": \"r2\", \"service\": \"EC2\"},"
		"{\"ip_prefix\": \"20.1.0.0/16\", \"region\": \"r2\", \"service\": \"AMAZON\"},"
		"{\"ip_prefix\": \"20.1.2.0/24\", \"region\": \"r3\", \"service\": \"ZETA\"},"
		"{\"ip_prefix\": \"20.1.2.0/24\", \"region\": \"r3\", \"service\": \"EC2\"},"
		"{\"ip_prefix\": \"20.1.2.0/24\", \"region\": \"r3\", \"service\": \"ALPHA\"},"
		"{\"ip_prefix\": \"20.255.255.255/32\", \"region\": \"r4\", \"service\": \"AMAZON\"},"
		"{\"ip_prefix\": \"255.255.255.0/24\", \"region\": \"r5\", \"service\": \"AMAZON\"},"
		"{\"ip_prefix\": \"255.255.255.255/32\", \"region\": \"r6\", \"service\": \"AMAZON\"}"
		"], \"ipv6_prefixes\": ["
		"{\"ipv6_prefix\": \"2001:db8::/32\", \"region\": \"r7\", \"service\": \"AMAZON\"},"
		"{\"ipv6_prefix\": \"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff/128\", \"region\": \"r8\","
		" \"service\": \"S3\"},"
		"{\"ipv6_prefix\": \"ffff::/16\", \"region\": \"r9\", \"service\": \"AMAZON\"}"
		"]}";
	static const struct row rows[] = {
		{"19.255.255.255", TH_NET_PUBLIC, AF_INET, "", "", 0, "", false},
		{"20.0.0.0", TH_NET_AWS, AF_INET, "r1", "AMAZON", 0, "", false},
		{"20.1.0.0", TH_NET_AWS, AF_INET, "r2", "EC2", 0, "", false},
		{"20.1.1.255", TH_NET_AWS, AF_INET, "r2", "EC2", 0, "", false},
		{"20.1.2.0", TH_NET_AWS, AF_INET, "r3", "ALPHA", 0, "", false},
		{"20.1.2.255", TH_NET_AWS, AF_INET, "r3", "ALPHA", 0, "", false},
		{"20.1.3.0", TH_NET_AWS, AF_INET, "r2", "EC2", 0, "", false},
		{"20.2.0.0", TH_NET_AWS, AF_INET, "r1", "AMAZON", 0, "", false},
		{"20.255.255.254", TH_NET_AWS, AF_INET, "r1", "AMAZON", 0, "", false},
		{"20.255.255.255", TH_NET_AWS, AF_INET, "r4", "AMAZON", 0, "", false},
		{"21.0.0.0", TH_NET_PUBLIC, AF_INET, "", "", 0, "", false},
		{"255.255.254.255", TH_NET_PUBLIC, AF_INET, "", "", 0, "", false},
		{"255.255.255.254", TH_NET_AWS, AF_INET, "r5", "AMAZON", 0, "", false},
		{"255.255.255.255", TH_NET_AWS, AF_INET, "r6", "AMAZON", 0, "", false},
		{"2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", TH_NET_PUBLIC, AF_INET6, "", "", 0, "",
		 false},
		{"2001:db8::", TH_NET_AWS, AF_INET6, "r7", "AMAZON", 0, "", false},
		{"2001:db8:ffff:ffff:ffff:ffff:ffff:fffe", TH_NET_AWS, AF_INET6, "r7", "AMAZON", 0,
		 "", false},
		{"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", TH_NET_AWS, AF_INET6, "r8", "S3", 0, "",
		 false},
		{"2001:db9::", TH_NET_PUBLIC, AF_INET6, "", "", 0, "", false},
		{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", TH_NET_AWS, AF_INET6, "r9", "AMAZON", 0,
		 "", false},
		{"fffe::1", TH_NET_PUBLIC, AF_INET6, "", "", 0, "", false},
	};
	struct th_enrich_conf conf = {0};
	struct th_enrich *en = NULL;
	char errstr[256] = "";

	(void)state;
	conf.aws_ranges_path = write_tmp("synthetic.json", json, sizeof(json) - 1);
	E(th_enrich_new(&en, &conf, errstr, sizeof(errstr)));
	check_rows(en, rows, TH_ARRAY_SIZE(rows));
	assert_int_equal(th_enrich_aws_prefix_count(en, AF_INET), 9);
	assert_int_equal(th_enrich_aws_prefix_count(en, AF_INET6), 3);
	th_enrich_destroy(en);
}

/* Files from before AWS published IPv6 ranges have no "ipv6_prefixes". */
static void test_ranges_without_ipv6(void **state)
{
	static const char json[] = "{\"prefixes\": [{\"ip_prefix\": \"20.0.0.0/8\", "
				   "\"region\": \"us-east-1\", \"service\": \"AMAZON\"}]}";
	static const struct row rows[] = {
		{"20.0.0.1", TH_NET_AWS, AF_INET, "us-east-1", "AMAZON", 0, "", false},
		{"2600:1f18::1", TH_NET_PUBLIC, AF_INET6, "", "", 0, "", false},
	};
	struct th_enrich_conf conf = {0};
	struct th_enrich *en = NULL;
	char errstr[256] = "";

	(void)state;
	conf.aws_ranges_path = write_tmp("v4only.json", json, sizeof(json) - 1);
	E(th_enrich_new(&en, &conf, errstr, sizeof(errstr)));
	check_rows(en, rows, TH_ARRAY_SIZE(rows));
	th_enrich_destroy(en);
}

/* --- errors --------------------------------------------------------------- */

struct bad_case {
	const char *what;
	const char *json; /* NULL: the first half of the real file */
};

static void expect_error(struct th_enrich_conf *conf, int want, const char *what)
{
	static char sentinel;
	/* Not NULL, so the test sees th_enrich_new() reset it on failure. */
	struct th_enrich *en = (struct th_enrich *)(void *)&sentinel;
	char errstr[256] = "";
	int rc;

	rc = th_enrich_new(&en, conf, errstr, sizeof(errstr));
	if (rc != want)
		fail_msg("%s: got %d (%s), want %s; errstr \"%s\"", what, rc, th_strerror(rc),
			 th_strerror(want), errstr);
	assert_null(en);
	if (!errstr[0])
		fail_msg("%s: empty errstr", what);
}

static void test_missing_files(void **state)
{
	struct th_enrich_conf conf = {0};

	(void)state;
	conf.asn_db_path = TH_SHARED_DATA "/asn/no-such.mmdb";
	expect_error(&conf, TH_ENOTFOUND, "missing mmdb");
	conf.asn_db_path = ASN_PATH;
	conf.aws_ranges_path = TH_SHARED_DATA "/aws-ip-ranges/no-such.json";
	expect_error(&conf, TH_ENOTFOUND, "missing ip-ranges.json");
	conf.aws_ranges_path = "/nonexistent-dir/ip-ranges.json";
	expect_error(&conf, TH_ENOTFOUND, "missing directory");
}

static void test_bad_ranges(void **state)
{
	static const struct bad_case cases[] = {
		{"truncated real file", NULL},
		{"empty file", ""},
		{"not JSON", "prefixes: 1.2.3.0/24"},
		{"not an object", "[1, 2, 3]"},
		{"no prefixes", "{\"ipv6_prefixes\": []}"},
		{"prefixes not an array", "{\"prefixes\": {}}"},
		{"entry not an object", "{\"prefixes\": [\"1.2.3.0/24\"]}"},
		{"no region",
		 "{\"prefixes\": [{\"ip_prefix\": \"1.2.3.0/24\", \"service\": \"AMAZON\"}]}"},
		{"number region", "{\"prefixes\": [{\"ip_prefix\": \"1.2.3.0/24\", \"region\": 1, "
				  "\"service\": \"AMAZON\"}]}"},
		{"no length", "{\"prefixes\": [{\"ip_prefix\": \"1.2.3.0\", \"region\": \"r\", "
			      "\"service\": \"AMAZON\"}]}"},
		{"length too long", "{\"prefixes\": [{\"ip_prefix\": \"1.2.3.0/33\", \"region\": "
				    "\"r\", \"service\": \"AMAZON\"}]}"},
		{"length not a number", "{\"prefixes\": [{\"ip_prefix\": \"1.2.3.0/2x\", "
					"\"region\": \"r\", \"service\": \"AMAZON\"}]}"},
		{"negative length", "{\"prefixes\": [{\"ip_prefix\": \"1.2.3.0/-1\", \"region\": "
				    "\"r\", \"service\": \"AMAZON\"}]}"},
		{"bad address", "{\"prefixes\": [{\"ip_prefix\": \"300.2.3.0/24\", \"region\": "
				"\"r\", \"service\": \"AMAZON\"}]}"},
		{"host bits set", "{\"prefixes\": [{\"ip_prefix\": \"1.2.3.1/24\", \"region\": "
				  "\"r\", \"service\": \"AMAZON\"}]}"},
		{"IPv6 in prefixes", "{\"prefixes\": [{\"ip_prefix\": \"2600::/16\", \"region\": "
				     "\"r\", \"service\": \"AMAZON\"}]}"},
		{"IPv4 in ipv6_prefixes",
		 "{\"prefixes\": [], \"ipv6_prefixes\": [{\"ipv6_prefix\": \"1.2.3.0/24\", "
		 "\"region\": \"r\", \"service\": \"AMAZON\"}]}"},
		{"IPv6 length too long",
		 "{\"prefixes\": [], \"ipv6_prefixes\": [{\"ipv6_prefix\": \"2600::/129\", "
		 "\"region\": \"r\", \"service\": \"AMAZON\"}]}"},
		{"region too long",
		 "{\"prefixes\": [{\"ip_prefix\": \"1.2.3.0/24\", \"region\": "
		 "\"a-region-name-much-longer-than-any-real-one\", \"service\": \"AMAZON\"}]}"},
	};
	struct th_enrich_conf conf = {.asn_db_path = ASN_PATH};
	char *real = NULL;
	long size;
	FILE *f;

	(void)state;
	f = fopen(RANGES_PATH, "rb");
	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	size = ftell(f);
	rewind(f);
	real = malloc((size_t)size);
	assert_non_null(real);
	assert_int_equal(fread(real, 1, (size_t)size, f), (size_t)size);
	fclose(f);

	for (size_t i = 0; i < TH_ARRAY_SIZE(cases); i++) {
		const struct bad_case *c = &cases[i];

		if (c->json)
			conf.aws_ranges_path = write_tmp("bad.json", c->json, strlen(c->json));
		else
			conf.aws_ranges_path = write_tmp("bad.json", real, (size_t)size / 2);
		expect_error(&conf, TH_EPARSE, c->what);
	}
	free(real);
}

/* Expect TH_EPARSE with @p needle in errstr. */
static void expect_refusal(struct th_enrich_conf *conf, const char *needle, const char *what)
{
	struct th_enrich *en = NULL;
	char errstr[512] = "";
	int rc = th_enrich_new(&en, conf, errstr, sizeof(errstr));
	if (rc != TH_EPARSE)
		fail_msg("%s: got %d (%s), want TH_EPARSE; errstr \"%s\"", what, rc,
			 th_strerror(rc), errstr);
	assert_null(en);
	if (!strstr(errstr, needle))
		fail_msg("%s: errstr \"%s\" does not say \"%s\"", what, errstr, needle);
}

static char *read_all(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	long size = ftell(f);
	rewind(f);
	char *buf = malloc((size_t)size + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
	fclose(f);
	buf[size] = '\0';
	*n = (size_t)size;
	return buf;
}

/* Issue 8: a range covering everything made every address AWS's, silently. */
static void test_too_wide_ranges_are_refused(void **state)
{
	static const char *const wide[] = {
		"{\"prefixes\": [{\"ip_prefix\": \"0.0.0.0/0\", \"region\": \"r\", "
		"\"service\": \"AMAZON\"}]}",
		"{\"prefixes\": [{\"ip_prefix\": \"128.0.0.0/1\", \"region\": \"r\", "
		"\"service\": \"AMAZON\"}]}",
		"{\"prefixes\": [{\"ip_prefix\": \"2.0.0.0/7\", \"region\": \"r\", "
		"\"service\": \"EC2\"}]}",
		"{\"prefixes\": [], \"ipv6_prefixes\": [{\"ipv6_prefix\": \"::/0\", "
		"\"region\": \"r\", \"service\": \"AMAZON\"}]}",
		"{\"prefixes\": [], \"ipv6_prefixes\": [{\"ipv6_prefix\": \"2000::/3\", "
		"\"region\": \"r\", \"service\": \"AMAZON\"}]}",
		"{\"prefixes\": [], \"ipv6_prefixes\": [{\"ipv6_prefix\": \"2600::/11\", "
		"\"region\": \"r\", \"service\": \"AMAZON\"}]}",
	};
	struct th_enrich_conf conf = {0};
	struct th_enrich *en = NULL;
	char errstr[512] = "";
	size_t n;

	(void)state;
	for (size_t i = 0; i < TH_ARRAY_SIZE(wide); i++) {
		conf.aws_ranges_path = write_tmp("wide.json", wide[i], strlen(wide[i]));
		expect_refusal(&conf, "wider than", wide[i]);
	}
	/* an IPv4-mapped IPv6 prefix would load and never match (lookups map
	 * ::ffff:a.b.c.d to IPv4 first): refused too (fuzz finding 5) */
	static const char mapped[] =
		"{\"prefixes\": [], \"ipv6_prefixes\": [{\"ipv6_prefix\": \"::ffff:3.4.12.0/120\", "
		"\"region\": \"r\", \"service\": \"EC2\"}]}";
	conf.aws_ranges_path = write_tmp("mapped.json", mapped, sizeof(mapped) - 1);
	expect_refusal(&conf, "IPv4-mapped", mapped);
	/* the bounds themselves are accepted: a /8 and an IPv6 /12 */
	static const char edge[] =
		"{\"prefixes\": [{\"ip_prefix\": \"3.0.0.0/8\", \"region\": \"r\", "
		"\"service\": \"AMAZON\"}], \"ipv6_prefixes\": [{\"ipv6_prefix\": "
		"\"2600::/12\", \"region\": \"r\", \"service\": \"AMAZON\"}]}";
	conf.aws_ranges_path = write_tmp("edge.json", edge, sizeof(edge) - 1);
	E(th_enrich_new(&en, &conf, errstr, sizeof(errstr)));
	th_enrich_destroy(en);
	/* the real file with one 0.0.0.0/0 entry slipped in (a copy, made here) */
	char *real = read_all(RANGES_PATH, &n);
	char *at = strstr(real, "\"prefixes\": [");
	assert_non_null(at);
	static const char bad[] = "{\"ip_prefix\": \"0.0.0.0/0\", \"region\": \"us-east-1\", "
				  "\"service\": \"AMAZON\", \"network_border_group\": \"us-east-1\"},";
	size_t head = (size_t)(at - real) + strlen("\"prefixes\": [");
	char *doc = malloc(n + sizeof(bad));
	assert_non_null(doc);
	memcpy(doc, real, head);
	memcpy(doc + head, bad, sizeof(bad) - 1);
	memcpy(doc + head + sizeof(bad) - 1, real + head, n - head);
	conf.aws_ranges_path = write_tmp("ip-ranges-wide.json", doc, n + sizeof(bad) - 1);
	expect_refusal(&conf, "0.0.0.0/0", "real file with 0.0.0.0/0");
	free(doc);
	free(real);
}

/* Issue 8: flipped bytes in the .mmdb search tree were accepted silently. */
static void test_corrupt_mmdb_tree_is_refused(void **state)
{
	struct th_enrich_conf conf = {0};
	struct th_enrich *en = NULL;
	char errstr[512] = "";
	MMDB_s mmdb;
	size_t n;
	int tested = 0;

	(void)state;
	assert_int_equal(MMDB_open(ASN_PATH, MMDB_MODE_MMAP, &mmdb), MMDB_SUCCESS);
	uint32_t nodes = mmdb.metadata.node_count;
	assert_int_equal(mmdb.metadata.record_size, 24); /* 6 bytes per node below */
	char *good = read_all(ASN_PATH, &n);
	/* the unmodified copy loads */
	conf.asn_db_path = write_tmp("asn-copy.mmdb", good, n);
	E(th_enrich_new(&en, &conf, errstr, sizeof(errstr)));
	th_enrich_destroy(en);
	/* Records that point to another node, spread over the tree: change
	 * each one's low bit (another node: the old target is orphaned) or
	 * its high bit (a pointer past the data section). */
	for (uint32_t node = 1; node < nodes && tested < 12; node += nodes / 7) {
		for (uint32_t m = node; m < nodes; m++) {
			MMDB_search_node_s sn;
			assert_int_equal(MMDB_read_node(&mmdb, m, &sn), MMDB_SUCCESS);
			if (sn.left_record_type != MMDB_RECORD_TYPE_SEARCH_NODE)
				continue;
			for (int variant = 0; variant < 2; variant++) {
				size_t at = (size_t)m * 6 + (variant ? 0 : 2);
				unsigned char mask = variant ? 0x80 : 0x01;
				good[at] ^= (char)mask;
				conf.asn_db_path = write_tmp("asn-flipped.mmdb", good, n);
				good[at] ^= (char)mask;
				expect_refusal(&conf, "corrupt database", "flipped tree record");
				tested++;
			}
			break;
		}
	}
	assert_true(tested >= 10);
	MMDB_close(&mmdb);
	free(good);
}

/* The worker reloads reference data when a file it loaded changes
 * (th_enrich_files_changed): a new copy renamed over it, or the same file
 * rewritten; not a file missing for a moment (mid-replace), and not one only
 * read again. Both files, the ASN database and ip-ranges.json, alike. The
 * dates it reports are the files' own: the database's build epoch and the
 * JSON's createDate. */
static void test_files_changed(void **state)
{
	struct th_enrich *en = NULL;
	char errstr[512] = "", asn[160], ranges[160], next[176];
	size_t na, nr;
	int64_t built, created;
	MMDB_s mmdb;
	(void)state;
	char *a = read_all(ASN_PATH, &na), *r = read_all(RANGES_PATH, &nr);
	snprintf(asn, sizeof(asn), "%s", write_tmp("reload.mmdb", a, na));
	snprintf(ranges, sizeof(ranges), "%s", write_tmp("reload.json", r, nr));
	struct th_enrich_conf conf = {.asn_db_path = asn, .aws_ranges_path = ranges};
	E(th_enrich_new(&en, &conf, errstr, sizeof(errstr)));
	assert_false(th_enrich_files_changed(en));
	th_enrich_built(en, &built, &created);
	assert_int_equal(MMDB_open(ASN_PATH, MMDB_MODE_MMAP, &mmdb), MMDB_SUCCESS);
	assert_int_equal(built, (int64_t)mmdb.metadata.build_epoch);
	MMDB_close(&mmdb);
	assert_non_null(strstr(r, "\"createDate\": \"2026-08-22-15-17-05\""));
	assert_int_equal(created, 1787411825); /* 2026-08-22T15:17:05Z */
	for (int which = 0; which < 2; which++) {
		const char *path = which ? ranges : asn;
		/* renamed over: another inode (same size, same bytes) */
		snprintf(next, sizeof(next), "%s.new", path);
		FILE *f = fopen(next, "wb");
		assert_non_null(f);
		assert_int_equal(fwrite(which ? r : a, 1, which ? nr : na, f), which ? nr : na);
		assert_int_equal(fclose(f), 0);
		assert_int_equal(rename(next, path), 0);
		assert_true(th_enrich_files_changed(en));
		/* loaded again: no change now */
		th_enrich_destroy(en);
		E(th_enrich_new(&en, &conf, errstr, sizeof(errstr)));
		assert_false(th_enrich_files_changed(en));
		/* gone for a moment: not a change; back as it was: none either */
		snprintf(next, sizeof(next), "%s.away", path);
		assert_int_equal(rename(path, next), 0);
		assert_false(th_enrich_files_changed(en));
		assert_int_equal(rename(next, path), 0);
		assert_false(th_enrich_files_changed(en));
		/* rewritten in place with a later time: a change */
		struct timespec later[2] = {{.tv_sec = 2000000000}, {.tv_sec = 2000000000}};
		assert_int_equal(utimensat(AT_FDCWD, path, later, 0), 0);
		assert_true(th_enrich_files_changed(en));
		th_enrich_destroy(en);
		E(th_enrich_new(&en, &conf, errstr, sizeof(errstr)));
	}
	th_enrich_destroy(en);
	free(a);
	free(r);
}

/* `cp new.mmdb asn.mmdb` rewrites the file in place under a running worker:
 * truncated, then written. libmaxminddb maps its file, so lookups through a
 * mapping of the file itself would fault (SIGBUS) past the truncation or read
 * the new bytes mixed with the old; the worker maps a private copy instead. */
static void test_mmdb_rewritten_in_place(void **state)
{
	static const char *const ips[] = {"38.104.55.20", "95.216.30.191", "1.1.1.1",
					  "2a01:4f8::1"};
	struct th_enrich *en = NULL, *again = NULL;
	struct th_netinfo before[4], after;
	char errstr[512] = "", path[160];
	size_t na;
	(void)state;
	char *a = read_all(ASN_PATH, &na);
	snprintf(path, sizeof(path), "%s", write_tmp("inplace.mmdb", a, na));
	struct th_enrich_conf conf = {.asn_db_path = path};
	E(th_enrich_new(&en, &conf, errstr, sizeof(errstr)));
	for (int i = 0; i < 4; i++) {
		th_enrich_lookup(en, ips[i], &before[i]);
		assert_true(before[i].asn > 0);
	}
	/* truncated and half rewritten with other bytes, as a copy in progress */
	int fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	char *junk = malloc(na / 2);
	assert_non_null(junk);
	memset(junk, 0x5a, na / 2);
	assert_int_equal(write(fd, junk, na / 2), (ssize_t)(na / 2));
	assert_int_equal(close(fd), 0);
	for (int i = 0; i < 4; i++) {
		th_enrich_lookup(en, ips[i], &after);
		assert_int_equal(after.asn, before[i].asn);
		assert_string_equal(after.as_org, before[i].as_org);
	}
	/* the reload check sees it; the half file does not load */
	assert_true(th_enrich_files_changed(en));
	assert_int_not_equal(th_enrich_new(&again, &conf, errstr, sizeof(errstr)), 0);
	th_enrich_destroy(again);
	again = NULL;
	/* the copy finished: it loads, and answers as before */
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, a, na), (ssize_t)na);
	assert_int_equal(close(fd), 0);
	E(th_enrich_new(&again, &conf, errstr, sizeof(errstr)));
	th_enrich_lookup(again, ips[0], &after);
	assert_int_equal(after.asn, before[0].asn);
	th_enrich_destroy(again);
	th_enrich_destroy(en);
	free(junk);
	free(a);
}

static void test_bad_mmdb(void **state)
{
	static const char junk[] = "this is not a MaxMind DB file\n";
	struct th_enrich_conf conf = {0};

	(void)state;
	conf.asn_db_path = write_tmp("bad.mmdb", junk, sizeof(junk) - 1);
	expect_error(&conf, TH_EPARSE, "junk mmdb");
	/* JSON is no MaxMind DB either. */
	conf.asn_db_path = RANGES_PATH;
	expect_error(&conf, TH_EPARSE, "ip-ranges.json as mmdb");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_aws),
		cmocka_unit_test(test_public),
		cmocka_unit_test(test_files_changed),
		cmocka_unit_test(test_mmdb_rewritten_in_place),
		cmocka_unit_test(test_private),
		cmocka_unit_test(test_service),
		cmocka_unit_test(test_prefix_count),
		cmocka_unit_test(test_bruteforce_boundaries),
		cmocka_unit_test(test_amazon_asn_fallback),
		cmocka_unit_test(test_custom_amazon_asns),
		cmocka_unit_test(test_ranges_without_asn_db),
		cmocka_unit_test(test_no_data),
		cmocka_unit_test(test_synthetic_ranges),
		cmocka_unit_test(test_ranges_without_ipv6),
		cmocka_unit_test(test_missing_files),
		cmocka_unit_test(test_bad_ranges),
		cmocka_unit_test(test_bad_mmdb),
		cmocka_unit_test(test_too_wide_ranges_are_refused),
		cmocka_unit_test(test_corrupt_mmdb_tree_is_refused),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

/*
 * Enrichment of a CloudTrail source address: service name, private, AWS or
 * public, plus the ASN that announces it.
 *
 * AWS's prefixes nest (a /16 "AMAZON" holding a /24 "EC2" holding a /28
 * "S3"...), so a longest-prefix match is needed. Rather than a trie, the
 * prefixes are flattened at load time into sorted, non-overlapping ranges: a
 * "stop" is the first address of a range over which the longest matching
 * prefix does not change, and a lookup is one branch-free binary search for
 * the last stop at or below the address. The keys sit in their own dense
 * arrays (7,047 IPv4 stops = 28 KB, 4,803 IPv6 stops = 77 KB for the
 * 2026-08 file), so the search stays in cache, and a lookup allocates
 * nothing.
 */
#define _GNU_SOURCE /* memfd_create */
#include "trailhound/enrich.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <maxminddb.h>

#include "awsranges_json.h"
#include "trailhound/time.h"

#define TH_ENRICH_COMP "enrich"

/* The widest prefixes accepted from ip-ranges.json (see th_on_prefix()). */
#define TH_AWS_MIN_PREFIX_V4 8
#define TH_AWS_MIN_PREFIX_V6 12

/* A stop whose range is covered by no AWS prefix. */
#define TH_AWS_NOTAG UINT16_MAX
/* Region and service ids share a 16-bit tag; 255 is kept out of both halves
 * so that no tag equals TH_AWS_NOTAG. */
#define TH_AWS_MAX_NAMES 255
#define TH_AWS_NAME_SIZE 32

/* th_set_aws() copies fixed sizes out of the name tables. */
_Static_assert(sizeof(((struct th_netinfo *)0)->aws_region) == TH_AWS_NAME_SIZE,
	       "region names are copied whole");
_Static_assert(sizeof(((struct th_netinfo *)0)->aws_service) <= TH_AWS_NAME_SIZE,
	       "service names are copied cut");

/*
 * Amazon's ASNs, for recognising AWS addresses when no ip-ranges.json is
 * configured. Names are those of the @ip-location-db/asn 2.3.2026061719 data
 * (DB-IP organisation names) behind the shared asn.mmdb. Twitch (AS46489) is
 * left out on purpose: it announces IVS ranges, but no customer code runs
 * there, so a call from it is not "inside" anyone's cloud.
 */
const uint32_t th_enrich_default_amazon_asns[] = {
	16509,	/* AMAZON-02 "Amazon.com, Inc." -- most of AWS */
	14618,	/* AMAZON-AES "Amazon.com, Inc." -- us-east-1 */
	8987,	/* AMAZON EXPANSION "Amazon Data Services Ireland Ltd" */
	9059,	/* "Amazon Data Services Ireland Ltd" */
	7224,	/* AMAZON-AS "Amazon.com, Inc." */
	38895,	/* AMAZON-AS-AP "Amazon.com Tech Telecom" */
	10124,	/* known as Amazon's; absent from the 2.3.2026061719 data, name unverified */
	62785,	/* "Amazon.com Services, LLC" */
	801,	/* "Amazon Technologies Inc." */
	21664,	/* "Amazon.com, Inc." */
	36263,	/* "Amazon.com, Inc." */
	400098, /* "Amazon Technologies Inc." */
	401395, /* "Amazon Technologies, Inc." */
	214101, /* "Amazon Data Services European Sovereign Cloud GmbH" */
	135630, /* "Amazon Connection Technology Services (Beijing) Co., LTD" */
	/* The operators of the AWS China regions announce those regions' ranges. */
	55960,	/* "Beijing Guanghuan Xinwang Digital" (Sinnet) -- cn-north-1 */
	135629, /* "Ningxia West Cloud Data Technology Co.Ltd." (NWCD) -- cn-northwest-1 */
};
const size_t th_enrich_default_amazon_asns_count = TH_ARRAY_SIZE(th_enrich_default_amazon_asns);

/* An address or prefix start; IPv4 is kept in the top 32 bits while building so
 * both families share one flattening routine. */
struct th_u128 {
	uint64_t hi, lo;
};

struct th_enrich {
	MMDB_s mmdb;
	bool have_mmdb;
	bool have_ranges;

	/* Sorted stops: keys[i] is the first address of a range whose answer is
	 * tags[i]; keys[0] is always 0. */
	uint32_t *v4_keys;
	uint16_t *v4_tags;
	size_t v4_nstops;
	struct th_u128 *v6_keys;
	uint16_t *v6_tags;
	size_t v6_nstops;
	size_t v4_prefixes, v6_prefixes; /* entries read from the file */

	char regions[TH_AWS_MAX_NAMES][TH_AWS_NAME_SIZE];
	size_t nregions;
	char services[TH_AWS_MAX_NAMES][TH_AWS_NAME_SIZE];
	size_t nservices;

	uint32_t *amazon_asns; /* sorted */
	size_t namazon_asns;

	/* The files as loaded, to tell when one is replaced or rewritten
	 * (th_enrich_files_changed): path and identity, taken before reading. */
	struct source {
		char *path;
		struct stat st;
	} src[2];
	int64_t ranges_created_s; /* ip-ranges.json's createDate; 0 = unknown */
};

/* Records which file is about to be read. A file replaced between this and
 * the read looks changed at the next check: one reload too many, never one
 * missed. */
static int note_source(struct th_enrich *en, int i, const char *path)
{
	en->src[i].path = strdup(path);
	if (!en->src[i].path)
		return TH_ENOMEM;
	if (stat(path, &en->src[i].st) != 0)
		memset(&en->src[i].st, 0, sizeof(en->src[i].st));
	return 0;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

void th_enrich_built(const struct th_enrich *en, int64_t *asn_db_s, int64_t *aws_ranges_s)
{
	*asn_db_s = en && en->have_mmdb ? (int64_t)en->mmdb.metadata.build_epoch : 0;
	*aws_ranges_s = en && en->have_ranges ? en->ranges_created_s : 0;
}

bool th_enrich_files_changed(const struct th_enrich *en)
{
	for (size_t i = 0; en && i < TH_ARRAY_SIZE(en->src); i++) {
		struct stat now;
		/* a file gone for a moment (mid-replace) is not a change yet */
		if (en->src[i].path && stat(en->src[i].path, &now) == 0 &&
		    !same_file(&now, &en->src[i].st))
			return true;
	}
	return false;
}

/* One entry of ip-ranges.json while building. */
struct th_pfx {
	struct th_u128 start;
	uint8_t len;
	uint8_t region;
	uint8_t service;
	uint8_t rank; /* how specific the service is; see th_service_rank() */
};

struct th_build {
	struct th_enrich *en;
	struct th_pfx *pfx[2]; /* [0] IPv4, [1] IPv6 */
	size_t npfx[2], cap[2];
	char err[256]; /* why th_on_prefix() stopped the parse */
};

struct th_private_net {
	struct th_u128 net;
	uint8_t len;
};


/* --- 128-bit helpers ------------------------------------------------------ */

static inline bool th_u128_eq(struct th_u128 a, struct th_u128 b)
{
	return a.hi == b.hi && a.lo == b.lo;
}

static inline bool th_u128_lt(struct th_u128 a, struct th_u128 b)
{
	return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo);
}

/* The bits after the first @len, set. */
static struct th_u128 th_u128_hostmask(unsigned len)
{
	struct th_u128 m;

	m.hi = len >= 64 ? 0 : ~UINT64_C(0) >> len;
	m.lo = len >= 128 ? 0 : len <= 64 ? ~UINT64_C(0) : ~UINT64_C(0) >> (len - 64);
	return m;
}

static struct th_u128 th_u128_from_bytes(const unsigned char b[16])
{
	struct th_u128 a = {0, 0};

	for (int i = 0; i < 8; i++) {
		a.hi = a.hi << 8 | b[i];
		a.lo = a.lo << 8 | b[8 + i];
	}
	return a;
}

static inline struct th_u128 th_u128_from_v4(uint32_t v4)
{
	struct th_u128 a = {(uint64_t)v4 << 32, 0};

	return a;
}

static bool th_u128_in(struct th_u128 a, struct th_u128 net, unsigned len)
{
	struct th_u128 m = th_u128_hostmask(len);

	return (a.hi & ~m.hi) == net.hi && (a.lo & ~m.lo) == net.lo;
}

/* --- private and reserved addresses ------------------------------------- */

#define TH_V4NET(a, b, c, d, len)                                                            \
	{{((uint64_t)(a) << 24 | (uint64_t)(b) << 16 | (uint64_t)(c) << 8 | (uint64_t)(d)) << 32, \
	  0},                                                                                 \
	 len}

/* Addresses that never leave a network: a call "from" one came through a VPC
 * or a proxy, which the detector weighs separately (vpcEndpointId). */
static const struct th_private_net th_private_v4[] = {
	TH_V4NET(10, 0, 0, 0, 8),     /* RFC 1918 */
	TH_V4NET(172, 16, 0, 0, 12),  /* RFC 1918 */
	TH_V4NET(192, 168, 0, 0, 16), /* RFC 1918 */
	TH_V4NET(100, 64, 0, 0, 10),  /* CGNAT */
	TH_V4NET(127, 0, 0, 0, 8),    /* loopback */
	TH_V4NET(169, 254, 0, 0, 16), /* link-local, the instance metadata service */
	TH_V4NET(0, 0, 0, 0, 8),      /* "this network" */
};

static const struct th_private_net th_private_v6[] = {
	{{0, 0}, 128},                    /* unspecified, as 0/8 for IPv4 */
	{{0, 1}, 128},                    /* loopback */
	{{UINT64_C(0xfc00) << 48, 0}, 7}, /* unique local */
	{{UINT64_C(0xfe80) << 48, 0}, 10}, /* link-local */
};

static bool th_is_private(struct th_u128 a, const struct th_private_net *nets, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (th_u128_in(a, nets[i].net, nets[i].len))
			return true;
	return false;
}

/* --- building the AWS stops --------------------------------------------- */

/*
 * AWS lists one prefix once per service using it, always with "AMAZON" (the
 * superset) and often with "EC2" (whose ranges also carry services hosted on
 * EC2, like S3 or IVS). The most specific is therefore: a named service, then
 * EC2, then AMAZON.
 */
static uint8_t th_service_rank(const char *service)
{
	if (strcmp(service, "AMAZON") == 0)
		return 0;
	if (strcmp(service, "EC2") == 0)
		return 1;
	return 2;
}

/* Region and service names are few (tens); a linear scan at load time is
 * cheaper than a hash table's code. */
static int th_intern(char names[][TH_AWS_NAME_SIZE], size_t *n, const char *name, bool truncate,
		     uint8_t *id)
{
	size_t len = strlen(name);

	if (len >= TH_AWS_NAME_SIZE) {
		char cut[TH_AWS_NAME_SIZE];
		if (!truncate)
			return TH_EPARSE;
		/* on a character boundary: the name ends up in alerts */
		len = th_copy_utf8(cut, sizeof(cut), name);
	}
	for (size_t i = 0; i < *n; i++) {
		if (strncmp(names[i], name, len) == 0 && names[i][len] == '\0') {
			*id = (uint8_t)i;
			return 0;
		}
	}
	if (*n >= TH_AWS_MAX_NAMES - 1)
		return TH_ETOOBIG;
	memcpy(names[*n], name, len);
	names[*n][len] = '\0';
	*id = (uint8_t)(*n)++;
	return 0;
}

/* "a.b.c.d/len" or "x:y::/len", host bits clear. */
static int th_parse_prefix(const char *s, int ip_version, struct th_u128 *start, uint8_t *len)
{
	char addr[INET6_ADDRSTRLEN];
	const char *slash = strchr(s, '/');
	unsigned char bytes[16];
	unsigned long l;
	char *end;
	size_t alen;

	if (!slash)
		return TH_EPARSE;
	alen = (size_t)(slash - s);
	if (alen == 0 || alen >= sizeof(addr) || slash[1] < '0' || slash[1] > '9')
		return TH_EPARSE;
	memcpy(addr, s, alen);
	addr[alen] = '\0';
	errno = 0;
	l = strtoul(slash + 1, &end, 10);
	if (*end != '\0' || errno || l > (ip_version == 4 ? 32u : 128u))
		return TH_EPARSE;

	if (ip_version == 4) {
		uint32_t v4;

		if (inet_pton(AF_INET, addr, bytes) != 1)
			return TH_EPARSE;
		memcpy(&v4, bytes, 4);
		*start = th_u128_from_v4(ntohl(v4));
	} else {
		if (inet_pton(AF_INET6, addr, bytes) != 1)
			return TH_EPARSE;
		*start = th_u128_from_bytes(bytes);
	}
	/* A set host bit means the file is not what we think it is. */
	if (!th_u128_in(*start, *start, (unsigned)l))
		return TH_EPARSE;
	*len = (uint8_t)l;
	return 0;
}

static int th_on_prefix(void *ctx, int ip_version, const char *prefix, const char *region,
			const char *service)
{
	struct th_build *b = ctx;
	struct th_enrich *en = b->en;
	int fam = ip_version == 4 ? 0 : 1;
	struct th_pfx p;
	int rc;

	rc = th_parse_prefix(prefix, ip_version, &p.start, &p.len);
	if (rc) {
		th_errstr(b->err, sizeof(b->err), "bad IPv%d prefix \"%s\"", ip_version,
				 prefix);
		return rc;
	}
	/* No one network holds more than IANA gives a whole regional registry
	 * (an IPv4 /8, an IPv6 /12); AWS's widest prefixes are about /11 and
	 * /32. A wider one (0.0.0.0/0, ::/0) would make every address AWS's
	 * and silence every alert, so the file is refused, not trusted. */
	if (p.len < (ip_version == 4 ? TH_AWS_MIN_PREFIX_V4 : TH_AWS_MIN_PREFIX_V6)) {
		th_errstr(b->err, sizeof(b->err),
			  "prefix \"%s\" (%s, %s) is wider than /%d: no single network is "
			  "that large, refusing the file (it would make every address look like AWS)",
			  prefix, region, service,
			  ip_version == 4 ? TH_AWS_MIN_PREFIX_V4 : TH_AWS_MIN_PREFIX_V6);
		return TH_EPARSE;
	}
	/* Lookups turn ::ffff:a.b.c.d into IPv4 first, so an IPv4-mapped
	 * prefix in the IPv6 list would load and never match: the file is not
	 * what AWS publishes. */
	if (ip_version == 6 && p.start.hi == 0 && p.start.lo >> 32 == 0xffff) {
		th_errstr(b->err, sizeof(b->err),
			  "prefix \"%s\" (%s, %s) is an IPv4-mapped IPv6 prefix: list it under "
			  "\"prefixes\" as IPv4, refusing the file",
			  prefix, region, service);
		return TH_EPARSE;
	}
	/* A cut region would never equal a function's region: refuse it. */
	rc = th_intern(en->regions, &en->nregions, region, false, &p.region);
	if (rc == 0)
		rc = th_intern(en->services, &en->nservices, service, true, &p.service);
	if (rc) {
		th_errstr(b->err, sizeof(b->err),
				 "prefix \"%s\": region \"%s\" / service \"%s\": %s", prefix, region,
				 service,
				 rc == TH_ETOOBIG ? "more than 254 distinct names" : "name too long");
		return TH_EPARSE;
	}
	p.rank = th_service_rank(service);

	if (b->npfx[fam] == b->cap[fam]) {
		size_t cap = b->cap[fam] ? b->cap[fam] * 2 : 8192;
		struct th_pfx *np = realloc(b->pfx[fam], cap * sizeof(*np));

		if (!np) {
			th_errstr(b->err, sizeof(b->err), "out of memory");
			return TH_ENOMEM;
		}
		b->pfx[fam] = np;
		b->cap[fam] = cap;
	}
	b->pfx[fam][b->npfx[fam]++] = p;
	return 0;
}

static int th_pfx_cmp(const void *pa, const void *pb)
{
	const struct th_pfx *a = pa, *b = pb;

	if (!th_u128_eq(a->start, b->start))
		return th_u128_lt(a->start, b->start) ? -1 : 1;
	/* Covering prefixes first, so the sweep meets parents before children. */
	return (int)a->len - (int)b->len;
}

static inline uint16_t th_pfx_tag(const struct th_pfx *p)
{
	return (uint16_t)(p->region << 8 | p->service);
}

/*
 * Sort, merge the entries of each prefix into one (keeping the most specific
 * service; among named services the alphabetically first, so the answer does
 * not depend on file order), and leave them in pfx[0..*n).
 */
static void th_pfx_merge(const struct th_enrich *en, struct th_pfx *pfx, size_t *n)
{
	size_t out = 0;

	if (*n == 0)
		return; /* pfx may be NULL, which qsort must not see */
	qsort(pfx, *n, sizeof(*pfx), th_pfx_cmp);
	for (size_t i = 0; i < *n; i++) {
		struct th_pfx *best;

		if (out && th_u128_eq(pfx[out - 1].start, pfx[i].start) &&
		    pfx[out - 1].len == pfx[i].len) {
			best = &pfx[out - 1];
			if (pfx[i].rank > best->rank ||
			    (pfx[i].rank == best->rank && pfx[i].rank == 2 &&
			     strcmp(en->services[pfx[i].service], en->services[best->service]) < 0))
				*best = pfx[i];
			continue;
		}
		pfx[out++] = pfx[i];
	}
	*n = out;
}

struct th_stops {
	struct th_u128 *key;
	uint16_t *tag;
	size_t n;
};

static void th_stop_add(struct th_stops *st, struct th_u128 key, uint16_t tag)
{
	/* Several prefixes can end or start at one address: the last word wins. */
	if (st->n && th_u128_eq(st->key[st->n - 1], key)) {
		st->tag[st->n - 1] = tag;
		if (st->n >= 2 && st->tag[st->n - 2] == tag)
			st->n--;
		return;
	}
	if (st->tag[st->n - 1] == tag)
		return;
	st->key[st->n] = key;
	st->tag[st->n] = tag;
	st->n++;
}

/* Close @p (its range ends): the enclosing prefix, or nothing, resumes after it. */
static void th_stop_close(struct th_stops *st, const struct th_pfx *p, const struct th_pfx *parent)
{
	struct th_u128 m = th_u128_hostmask(p->len);
	struct th_u128 next = {p->start.hi | m.hi, p->start.lo | m.lo};

	/* next = end + 1, unless the prefix runs to the top of the space. */
	if (next.hi == UINT64_MAX && next.lo == UINT64_MAX)
		return;
	if (++next.lo == 0)
		next.hi++;
	th_stop_add(st, next, parent ? th_pfx_tag(parent) : TH_AWS_NOTAG);
}

/*
 * One sweep over the merged prefixes. AWS prefixes either nest or are
 * disjoint, so the open ones form a stack (at most one per prefix length).
 * @st must have room for 2 * n + 1 stops.
 */
static void th_flatten(const struct th_pfx *pfx, size_t n, struct th_stops *st)
{
	const struct th_pfx *stack[129];
	size_t depth = 0;

	st->key[0] = (struct th_u128){0, 0};
	st->tag[0] = TH_AWS_NOTAG;
	st->n = 1;
	for (size_t i = 0; i < n; i++) {
		while (depth) {
			struct th_u128 m = th_u128_hostmask(stack[depth - 1]->len);
			struct th_u128 end = {stack[depth - 1]->start.hi | m.hi,
					      stack[depth - 1]->start.lo | m.lo};

			if (!th_u128_lt(end, pfx[i].start))
				break;
			depth--;
			th_stop_close(st, stack[depth], depth ? stack[depth - 1] : NULL);
		}
		th_stop_add(st, pfx[i].start, th_pfx_tag(&pfx[i]));
		stack[depth++] = &pfx[i];
	}
	while (depth) {
		depth--;
		th_stop_close(st, stack[depth], depth ? stack[depth - 1] : NULL);
	}
}

static int th_build_family(struct th_enrich *en, struct th_build *b, int fam)
{
	struct th_stops st = {0};
	size_t n = b->npfx[fam];
	int rc = TH_ENOMEM;

	th_pfx_merge(en, b->pfx[fam], &n);
	st.key = malloc((2 * n + 1) * sizeof(*st.key));
	st.tag = malloc((2 * n + 1) * sizeof(*st.tag));
	if (!st.key || !st.tag)
		goto cleanup;
	th_flatten(b->pfx[fam], n, &st);

	if (fam == 0) {
		/* IPv4 stops are prefix starts or ends + 1, so the low 96 bits are 0. */
		en->v4_keys = malloc(st.n * sizeof(*en->v4_keys));
		if (!en->v4_keys)
			goto cleanup;
		for (size_t i = 0; i < st.n; i++)
			en->v4_keys[i] = (uint32_t)(st.key[i].hi >> 32);
		en->v4_tags = st.tag;
		en->v4_nstops = st.n;
	} else {
		en->v6_keys = st.key;
		en->v6_tags = st.tag;
		en->v6_nstops = st.n;
		st.key = NULL;
	}
	st.tag = NULL;
	th_log_debug(TH_ENRICH_COMP, "IPv%d: %zu distinct prefixes, %zu ranges", fam ? 6 : 4, n,
		     fam ? en->v6_nstops : en->v4_nstops);
	rc = 0;
cleanup:
	free(st.key);
	free(st.tag);
	return rc;
}

static int th_read_file(const char *path, char **bufp, size_t *lenp, char *errstr,
			size_t errstr_size)
{
	FILE *f = NULL;
	char *buf = NULL;
	struct stat sb;
	int rc;

	f = fopen(path, "rb");
	if (!f) {
		rc = errno == ENOENT || errno == ENOTDIR ? TH_ENOTFOUND : TH_EIO;
		th_errstr(errstr, errstr_size, "%s: %s", path, strerror(errno));
		goto cleanup;
	}
	if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
		rc = TH_EIO;
		th_errstr(errstr, errstr_size, "%s: not a regular file", path);
		goto cleanup;
	}
	buf = malloc((size_t)sb.st_size + 1);
	if (!buf) {
		rc = TH_ENOMEM;
		th_errstr(errstr, errstr_size, "%s: out of memory", path);
		goto cleanup;
	}
	if (fread(buf, 1, (size_t)sb.st_size, f) != (size_t)sb.st_size) {
		rc = TH_EIO;
		th_errstr(errstr, errstr_size, "%s: short read", path);
		goto cleanup;
	}
	*bufp = buf;
	*lenp = (size_t)sb.st_size;
	buf = NULL;
	rc = 0;
cleanup:
	free(buf);
	if (f)
		fclose(f);
	return rc;
}

static int th_load_ranges(struct th_enrich *en, const char *path, char *errstr,
			  size_t errstr_size)
{
	struct th_build b = {.en = en};
	char create_date[32];
	char perr[256] = "";
	char *buf = NULL;
	size_t len = 0;
	int rc;

	rc = th_read_file(path, &buf, &len, errstr, errstr_size);
	if (rc)
		goto cleanup;
	rc = th_awsranges_parse(buf, len, th_on_prefix, &b, create_date, sizeof(create_date),
				perr, sizeof(perr));
	if (rc) {
		/* perr is empty when th_on_prefix() was the one failing. */
		th_errstr(errstr, errstr_size, "%s: %s", path, perr[0] ? perr : b.err);
		goto cleanup;
	}
	for (int fam = 0; fam < 2; fam++) {
		rc = th_build_family(en, &b, fam);
		if (rc) {
			th_errstr(errstr, errstr_size, "%s: out of memory", path);
			goto cleanup;
		}
	}
	en->v4_prefixes = b.npfx[0];
	en->v6_prefixes = b.npfx[1];
	en->have_ranges = true;
	/* "2026-08-22-15-17-05", UTC */
	int64_t ms;
	char iso[32];
	if (strlen(create_date) == 19 &&
	    snprintf(iso, sizeof(iso), "%.10sT%.2s:%.2s:%.2sZ", create_date, create_date + 11,
		     create_date + 14, create_date + 17) == 20 &&
	    th_time_parse_iso(iso, 20, &ms) == 0)
		en->ranges_created_s = ms / 1000;
	th_log_info(TH_ENRICH_COMP, "%s (createDate %s): %zu IPv4 and %zu IPv6 prefixes", path,
		    create_date[0] ? create_date : "unknown", en->v4_prefixes, en->v6_prefixes);
cleanup:
	free(buf);
	free(b.pfx[0]);
	free(b.pfx[1]);
	return rc;
}

/* --- ASN database -------------------------------------------------------- */

/*
 * The MaxMind DB format has no checksum, and libmaxminddb checks only the
 * records a lookup happens to follow: a corrupt search tree otherwise gives
 * wrong ASNs (or none) silently for as long as the process runs. So the
 * whole tree is walked once at load: every record must be a node, empty, or
 * a data pointer whose entry decodes; every node must be reachable from the
 * root (a redirected pointer orphans the subtree it used to point to); no
 * path may be deeper than the address has bits (a cycle). Aliases (the IPv4
 * subtree reached again from ::ffff:0:0/96 and 2002::/16) make the tree a
 * DAG, so the number of visits is bounded rather than required to equal
 * node_count. About 50 ms for a GeoLite2-ASN database.
 */
static int th_verify_mmdb(const MMDB_s *mmdb, char *errstr, size_t errstr_size)
{
	const uint32_t nodes = mmdb->metadata.node_count;
	const unsigned max_depth = mmdb->metadata.ip_version == 6 ? 128 : 32;
	uint8_t *reached = calloc(nodes / 8 + 1, 1);
	uint8_t *decoded = calloc(mmdb->data_section_size / 8 + 1, 1);
	struct {
		uint32_t node;
		uint8_t depth, side;
	} stack[130];
	uint64_t visits = 0;
	int sp = 0, rc = 0;

	if (!reached || !decoded) {
		rc = TH_ENOMEM;
		th_errstr(errstr, errstr_size, "out of memory");
		goto cleanup;
	}
	if (!nodes) {
		rc = TH_EPARSE;
		th_errstr(errstr, errstr_size, "empty search tree");
		goto cleanup;
	}
	stack[sp].node = 0;
	stack[sp].depth = 0;
	stack[sp].side = 0;
	sp = 1;
	reached[0] = 1;
	while (sp > 0) {
		MMDB_search_node_s sn;
		uint32_t n = stack[sp - 1].node;
		uint8_t side = stack[sp - 1].side++;
		if (side > 1) {
			sp--;
			continue;
		}
		if (MMDB_read_node(mmdb, n, &sn) != MMDB_SUCCESS) {
			th_errstr(errstr, errstr_size, "search tree node %u unreadable", n);
			rc = TH_EPARSE;
			goto cleanup;
		}
		uint64_t rec = side ? sn.right_record : sn.left_record;
		uint8_t type = side ? sn.right_record_type : sn.left_record_type;
		MMDB_entry_s entry = side ? sn.right_record_entry : sn.left_record_entry;
		if (type == MMDB_RECORD_TYPE_SEARCH_NODE) {
			if (rec == 0 || rec >= nodes || stack[sp - 1].depth + 1u >= max_depth ||
			    ++visits > 4ull * nodes) {
				th_errstr(errstr, errstr_size,
					  "search tree node %u points to node %llu at depth %u "
					  "(a loop or a pointer out of the tree)",
					  n, (unsigned long long)rec, stack[sp - 1].depth + 1u);
				rc = TH_EPARSE;
				goto cleanup;
			}
			reached[rec / 8] |= (uint8_t)(1u << (rec % 8));
			stack[sp].node = (uint32_t)rec;
			stack[sp].depth = (uint8_t)(stack[sp - 1].depth + 1);
			stack[sp].side = 0;
			sp++;
		} else if (type == MMDB_RECORD_TYPE_DATA) {
			uint32_t off = entry.offset;
			if (off >= mmdb->data_section_size) {
				th_errstr(errstr, errstr_size, "search tree node %u: data offset %u "
					  "outside the data section", n, off);
				rc = TH_EPARSE;
				goto cleanup;
			}
			if (!(decoded[off / 8] & (1u << (off % 8)))) {
				MMDB_entry_data_list_s *list = NULL;
				int st = MMDB_get_entry_data_list(&entry, &list);
				MMDB_free_entry_data_list(list);
				if (st != MMDB_SUCCESS) {
					th_errstr(errstr, errstr_size,
						  "search tree node %u: data at offset %u: %s", n, off,
						  MMDB_strerror(st));
					rc = TH_EPARSE;
					goto cleanup;
				}
				decoded[off / 8] |= (uint8_t)(1u << (off % 8));
			}
		} else if (type != MMDB_RECORD_TYPE_EMPTY) {
			th_errstr(errstr, errstr_size,
				  "search tree node %u: record %llu is neither a node nor data", n,
				  (unsigned long long)rec);
			rc = TH_EPARSE;
			goto cleanup;
		}
	}
	for (uint32_t n = 0; n < nodes; n++) {
		if (!(reached[n / 8] & (1u << (n % 8)))) {
			th_errstr(errstr, errstr_size,
				  "search tree node %u is not reachable from the root (a pointer "
				  "was changed)",
				  n);
			rc = TH_EPARSE;
			goto cleanup;
		}
	}
cleanup:
	free(reached);
	free(decoded);
	return rc;
}

/* A private copy of the database file in memory (a memfd), to open through
 * /proc/self/fd. libmaxminddb only memory-maps its file, and a file that is
 * rewritten in place under the mapping (`cp new.mmdb asn.mmdb`) is read half
 * old, half new, or faults (SIGBUS) past its truncation: the worker would
 * crash or look up garbage. A rename over the file was always safe; the copy
 * makes an in-place rewrite safe too (the reload check sees it and loads the
 * new file once it verifies). @returns the memfd; -1 with errno when no
 * copy could be made (the caller then maps the file itself, and
 * MMDB_open reports a file it cannot read); -2 when the file changed while
 * it was copied. */
static int snapshot_file(const char *path)
{
	struct stat before, after;
	int in = open(path, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return -1;
	int out = memfd_create("trailhound-asn-db", MFD_CLOEXEC);
	if (out < 0 || fstat(in, &before) != 0)
		goto fail;
	char buf[1 << 16];
	for (;;) {
		ssize_t n = read(in, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto fail;
		if (n == 0)
			break;
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				goto fail;
			off += w;
		}
	}
	if (fstat(in, &after) != 0)
		goto fail;
	close(in);
	if (after.st_size != before.st_size || after.st_mtim.tv_sec != before.st_mtim.tv_sec ||
	    after.st_mtim.tv_nsec != before.st_mtim.tv_nsec) {
		close(out);
		return -2;
	}
	return out;
fail:;
	int e = errno;
	close(in);
	if (out >= 0)
		close(out);
	errno = e;
	return -1;
}

static int th_open_mmdb(struct th_enrich *en, const char *path, char *errstr,
			size_t errstr_size)
{
	struct stat sb;
	int status;

	/* MMDB_open reports only "could not open"; stat tells missing from
	 * unreadable. */
	if (stat(path, &sb) != 0) {
		th_errstr(errstr, errstr_size, "%s: %s", path, strerror(errno));
		return errno == ENOENT || errno == ENOTDIR ? TH_ENOTFOUND : TH_EIO;
	}
	if (S_ISDIR(sb.st_mode)) {
		th_errstr(errstr, errstr_size, "%s: a directory, not the .mmdb file", path);
		return TH_EIO;
	}
	int snap = snapshot_file(path);
	if (snap == -2) {
		th_errstr(errstr, errstr_size, "%s: changed while being read (rewritten in place?)",
			  path);
		return TH_EIO;
	}
	char snap_path[64];
	if (snap >= 0)
		snprintf(snap_path, sizeof(snap_path), "/proc/self/fd/%d", snap);
	else if (access(path, R_OK) == 0)
		th_log_warn(TH_ENRICH_COMP, "%s: no private copy (%s): mapping the file itself; "
					    "replace it by renaming over it, never in place",
			    path, strerror(errno));
	/* the mapping keeps the memfd's memory; the descriptor can go */
	status = MMDB_open(snap >= 0 ? snap_path : path, MMDB_MODE_MMAP, &en->mmdb);
	if (snap >= 0)
		close(snap);
	if (status != MMDB_SUCCESS) {
		th_errstr(errstr, errstr_size, "%s: %s", path, MMDB_strerror(status));
		switch (status) {
		case MMDB_OUT_OF_MEMORY_ERROR:
			return TH_ENOMEM;
		case MMDB_FILE_OPEN_ERROR:
		case MMDB_IO_ERROR:
			return TH_EIO;
		default:
			return TH_EPARSE;
		}
	}
	en->have_mmdb = true;
	if ((status = th_verify_mmdb(&en->mmdb, errstr, errstr_size))) {
		char why[200];
		th_copy_utf8(why, sizeof(why), errstr);
		th_errstr(errstr, errstr_size, "%s: corrupt database: %s", path, why);
		return status;
	}
	/* Other ASN databases (DB-IP, IPinfo) use the same two fields; only warn. */
	if (!en->mmdb.metadata.database_type ||
	    !strstr(en->mmdb.metadata.database_type, "ASN"))
		th_log_warn(TH_ENRICH_COMP, "%s: database_type \"%s\" is not an ASN database", path,
			    en->mmdb.metadata.database_type ? en->mmdb.metadata.database_type : "");
	return 0;
}

static void th_lookup_asn(const struct th_enrich *en, const struct sockaddr *sa,
			  struct th_netinfo *out)
{
	static const char *const asn_path[] = {"autonomous_system_number", NULL};
	static const char *const org_path[] = {"autonomous_system_organization", NULL};
	MMDB_lookup_result_s res;
	MMDB_entry_data_s data;
	int mmdb_error;

	res = MMDB_lookup_sockaddr(&en->mmdb, sa, &mmdb_error);
	if (mmdb_error != MMDB_SUCCESS || !res.found_entry)
		return;
	if (MMDB_aget_value(&res.entry, &data, asn_path) == MMDB_SUCCESS && data.has_data) {
		if (data.type == MMDB_DATA_TYPE_UINT32)
			out->asn = data.uint32;
		else if (data.type == MMDB_DATA_TYPE_UINT16)
			out->asn = data.uint16;
	}
	if (MMDB_aget_value(&res.entry, &data, org_path) == MMDB_SUCCESS && data.has_data &&
	    data.type == MMDB_DATA_TYPE_UTF8_STRING)
		th_copy_utf8n_mark(out->as_org, sizeof(out->as_org), data.utf8_string,
				   data.data_size);
}

static int th_asn_cmp(const void *pa, const void *pb)
{
	uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;

	return a < b ? -1 : a > b;
}

static bool th_is_amazon_asn(const struct th_enrich *en, uint32_t asn)
{
	size_t lo = 0, hi = en->namazon_asns;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (en->amazon_asns[mid] == asn)
			return true;
		if (en->amazon_asns[mid] < asn)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* --- public API ---------------------------------------------------------- */

int th_enrich_new(struct th_enrich **enp, const struct th_enrich_conf *conf, char *errstr,
		  size_t errstr_size)
{
	struct th_enrich *en = NULL;
	const uint32_t *asns;
	size_t nasns;
	int rc;

	if (!enp || !conf) {
		th_errstr(errstr, errstr_size, "th_enrich_new: NULL argument");
		rc = TH_EINVAL;
		goto cleanup;
	}
	*enp = NULL;
	en = calloc(1, sizeof(*en));
	if (!en) {
		th_errstr(errstr, errstr_size, "out of memory");
		rc = TH_ENOMEM;
		goto cleanup;
	}

	/* A private copy: the caller's table need not outlive us. */
	asns = conf->amazon_asns ? conf->amazon_asns : th_enrich_default_amazon_asns;
	nasns = conf->amazon_asns ? conf->amazon_asns_count : th_enrich_default_amazon_asns_count;
	if (nasns) {
		en->amazon_asns = malloc(nasns * sizeof(*en->amazon_asns));
		if (!en->amazon_asns) {
			th_errstr(errstr, errstr_size, "out of memory");
			rc = TH_ENOMEM;
			goto cleanup;
		}
		memcpy(en->amazon_asns, asns, nasns * sizeof(*en->amazon_asns));
		qsort(en->amazon_asns, nasns, sizeof(*en->amazon_asns), th_asn_cmp);
		en->namazon_asns = nasns;
	}

	/* Each error names the setting as well as the path: "x: No such file"
	 * or libmaxminddb's "An attempt to read data from the MaxMind DB file
	 * failed" (a directory) does not say which of the two files is wrong
	 * or where it was given. */
	char why[512] = "out of memory";
	if (conf->asn_db_path) {
		if ((rc = note_source(en, 0, conf->asn_db_path)) ||
		    (rc = th_open_mmdb(en, conf->asn_db_path, why, sizeof(why)))) {
			th_errstr(errstr, errstr_size, "ASN database (asn_db, --asn-db) %s", why);
			goto cleanup;
		}
	}
	if (conf->aws_ranges_path) {
		if ((rc = note_source(en, 1, conf->aws_ranges_path)) ||
		    (rc = th_load_ranges(en, conf->aws_ranges_path, why, sizeof(why)))) {
			th_errstr(errstr, errstr_size, "AWS ip-ranges.json (aws_ranges, --aws-ranges) %s",
				  why);
			goto cleanup;
		}
	}
	*enp = en;
	en = NULL;
	rc = 0;
cleanup:
	th_enrich_destroy(en);
	return rc;
}

void th_enrich_destroy(struct th_enrich *en)
{
	if (!en)
		return;
	if (en->have_mmdb)
		MMDB_close(&en->mmdb);
	for (size_t i = 0; i < TH_ARRAY_SIZE(en->src); i++)
		free(en->src[i].path);
	free(en->v4_keys);
	free(en->v4_tags);
	free(en->v6_keys);
	free(en->v6_tags);
	free(en->amazon_asns);
	free(en);
}

/* Index of the last stop at or below @a; keys[0] == 0 so there always is one. */
static inline size_t th_find_v4(const uint32_t *keys, size_t n, uint32_t a)
{
	const uint32_t *base = keys;

	while (n > 1) {
		size_t half = n / 2;

		/* Written so the compiler emits a conditional move, not a branch
		 * that mispredicts on every other level. */
		base = base[half] <= a ? base + half : base;
		n -= half;
	}
	return (size_t)(base - keys);
}

static inline size_t th_find_v6(const struct th_u128 *keys, size_t n, struct th_u128 a)
{
	const struct th_u128 *base = keys;

	while (n > 1) {
		size_t half = n / 2;

		base = th_u128_lt(a, base[half]) ? base : base + half;
		n -= half;
	}
	return (size_t)(base - keys);
}

static void th_set_aws(const struct th_enrich *en, uint16_t tag, struct th_netinfo *out)
{
	out->kind = TH_NET_AWS;
	memcpy(out->aws_region, en->regions[tag >> 8], sizeof(out->aws_region));
	memcpy(out->aws_service, en->services[tag & 0xff], sizeof(out->aws_service) - 1);
	out->aws_service[sizeof(out->aws_service) - 1] = '\0';
}

static void th_netinfo_clear(struct th_netinfo *out)
{
	out->kind = TH_NET_SERVICE;
	out->family = 0;
	out->asn = 0;
	out->as_org[0] = '\0';
	out->aws_region[0] = '\0';
	out->aws_service[0] = '\0';
	out->aws_by_asn = false;
}

void th_enrich_lookup_addr(const struct th_enrich *en, int family, const void *addr,
			   struct th_netinfo *out)
{
	union {
		struct sockaddr sa;
		struct sockaddr_in sin;
		struct sockaddr_in6 sin6;
	} sa;
	struct th_u128 a;
	uint16_t tag = TH_AWS_NOTAG;

	th_netinfo_clear(out);
	/* Copied first: the caller's bytes need not be aligned for in6_addr. */
	memset(&sa, 0, sizeof(sa));
	if (family == AF_INET6) {
		memcpy(&sa.sin6.sin6_addr, addr, sizeof(sa.sin6.sin6_addr));
		a = th_u128_from_bytes(sa.sin6.sin6_addr.s6_addr);
		if (a.hi == 0 && a.lo >> 32 == 0xffff) {
			/* ::ffff:a.b.c.d is how dual-stack sockets show IPv4 clients. */
			uint32_t v4 = htonl((uint32_t)a.lo);

			memset(&sa, 0, sizeof(sa));
			memcpy(&sa.sin.sin_addr, &v4, sizeof(v4));
			family = AF_INET;
		}
	} else if (family == AF_INET) {
		memcpy(&sa.sin.sin_addr, addr, sizeof(sa.sin.sin_addr));
	} else {
		return;
	}

	if (family == AF_INET) {
		sa.sin.sin_family = AF_INET;
		out->family = AF_INET;
		a = th_u128_from_v4(ntohl(sa.sin.sin_addr.s_addr));
		if (th_is_private(a, th_private_v4, TH_ARRAY_SIZE(th_private_v4))) {
			out->kind = TH_NET_PRIVATE;
			return;
		}
		if (en && en->have_ranges)
			tag = en->v4_tags[th_find_v4(en->v4_keys, en->v4_nstops,
						     (uint32_t)(a.hi >> 32))];
	} else {
		sa.sin6.sin6_family = AF_INET6;
		out->family = AF_INET6;
		if (th_is_private(a, th_private_v6, TH_ARRAY_SIZE(th_private_v6))) {
			out->kind = TH_NET_PRIVATE;
			return;
		}
		if (en && en->have_ranges)
			tag = en->v6_tags[th_find_v6(en->v6_keys, en->v6_nstops, a)];
	}

	out->kind = TH_NET_PUBLIC;
	if (!en)
		return;
	if (en->have_mmdb)
		th_lookup_asn(en, &sa.sa, out);
	if (tag != TH_AWS_NOTAG) {
		th_set_aws(en, tag, out);
	} else if (!en->have_ranges && out->asn && th_is_amazon_asn(en, out->asn)) {
		out->kind = TH_NET_AWS;
		out->aws_by_asn = true;
	}
}

/* A service name as AWS writes it in sourceIPAddress: "AWS Internal", or
 * "<service>.amazonaws.com" where <service> is one or more lowercase DNS
 * labels ("lambda", "streams.dynamodb"). Exact case: CloudTrail never writes
 * "Lambda.amazonaws.com" or "aws internal", so such strings are not Lambda's
 * own traffic and must not be excluded as if they were. */
static bool th_is_service_name(const char *s)
{
	static const char suffix[] = ".amazonaws.com";
	const size_t sl = sizeof(suffix) - 1;
	size_t n = strlen(s), label = 0;

	if (strcmp(s, "AWS Internal") == 0)
		return true;
	/* 253 is the longest DNS name. */
	if (n <= sl || n > 253 || strcmp(s + n - sl, suffix) != 0)
		return false;
	for (size_t i = 0; i < n - sl; i++) {
		char c = s[i];
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-') {
			label++;
		} else {
			return false;
		}
	}
	return label > 0;
}

void th_enrich_lookup(const struct th_enrich *en, const char *source_ip, struct th_netinfo *out)
{
	unsigned char addr[sizeof(struct in6_addr)];

	if (!source_ip || !source_ip[0]) {
		th_netinfo_clear(out);
		out->kind = TH_NET_UNRECOGNISED;
		return;
	}
	/* Parsed once, here; the binary form serves the range match and
	 * libmaxminddb alike (MMDB_lookup_string would parse it again through
	 * getaddrinfo). */
	if (inet_pton(AF_INET, source_ip, addr) == 1)
		th_enrich_lookup_addr(en, AF_INET, addr, out);
	else if (inet_pton(AF_INET6, source_ip, addr) == 1)
		th_enrich_lookup_addr(en, AF_INET6, addr, out);
	else {
		th_netinfo_clear(out);
		if (!th_is_service_name(source_ip))
			out->kind = TH_NET_UNRECOGNISED;
	}
}

size_t th_enrich_aws_prefix_count(const struct th_enrich *en, int family)
{
	if (!en)
		return 0;
	if (family == AF_INET)
		return en->v4_prefixes;
	if (family == AF_INET6)
		return en->v6_prefixes;
	return 0;
}

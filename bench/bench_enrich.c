/*
 * Benchmark of th_enrich_lookup(): lookups per second over one million
 * pre-formatted source addresses per set, for AWS and non-AWS IPv4 and IPv6,
 * service names, and a CloudTrail-like mix; once with both data files and
 * once with ip-ranges.json alone, which isolates the AWS range match from the
 * libmaxminddb lookup. Each set runs from text (th_enrich_lookup) and from
 * binary addresses (th_enrich_lookup_addr), which shows what inet_pton costs.
 *
 * usage: bench_enrich IP-RANGES.JSON ASN.MMDB [LOOKUPS]
 *
 * AWS addresses are drawn uniformly inside randomly chosen prefixes of the
 * file (read with the same JSON shim as the library), so they follow the
 * file's mix of regions and prefix lengths.
 */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "trailhound/enrich.h"

#include "../src/awsranges_json.h"

#define ADDR_SIZE 48

struct prefix {
	int family;
	unsigned char net[16];
	unsigned len;
};

struct prefixes {
	struct prefix *p;
	size_t n, cap;
};

struct bin_addr {
	int family; /* 0 for a service name */
	unsigned char a[16];
};

struct set {
	const char *name;
	char (*addr)[ADDR_SIZE];
	struct bin_addr *bin;
	size_t n;
};

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

/* xorshift64*: reproducible runs, no libc rand() quality worries. */
static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

static int collect(void *ctx, int ip_version, const char *prefix, const char *region,
		   const char *service)
{
	struct prefixes *ps = ctx;
	const char *slash = strchr(prefix, '/');
	char addr[64];
	struct prefix *p;

	(void)region;
	(void)service;
	if (!slash || (size_t)(slash - prefix) >= sizeof(addr))
		return TH_EPARSE;
	if (ps->n == ps->cap) {
		ps->cap = ps->cap ? ps->cap * 2 : 4096;
		ps->p = realloc(ps->p, ps->cap * sizeof(*ps->p));
		if (!ps->p)
			return TH_ENOMEM;
	}
	p = &ps->p[ps->n];
	memcpy(addr, prefix, (size_t)(slash - prefix));
	addr[slash - prefix] = '\0';
	p->family = ip_version == 4 ? AF_INET : AF_INET6;
	p->len = (unsigned)atoi(slash + 1);
	if (inet_pton(p->family, addr, p->net) != 1)
		return TH_EPARSE;
	ps->n++;
	return 0;
}

static int load_prefixes(const char *path, struct prefixes *ps)
{
	char errstr[256] = "";
	char *buf = NULL;
	long size;
	FILE *f;
	int rc = TH_EIO;

	f = fopen(path, "rb");
	if (!f)
		goto cleanup;
	if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0)
		goto cleanup;
	rewind(f);
	buf = malloc((size_t)size);
	if (!buf || fread(buf, 1, (size_t)size, f) != (size_t)size)
		goto cleanup;
	rc = th_awsranges_parse(buf, (size_t)size, collect, ps, NULL, 0, errstr, sizeof(errstr));
	if (rc)
		fprintf(stderr, "%s: %s\n", path, errstr);
cleanup:
	if (f)
		fclose(f);
	free(buf);
	return rc;
}

/* A random address inside a random prefix of @family. */
static void random_aws(const struct prefixes *ps, int family, char *out)
{
	const struct prefix *p;
	unsigned char a[16];
	size_t nbytes = family == AF_INET ? 4 : 16;

	do
		p = &ps->p[rng() % ps->n];
	while (p->family != family);
	memcpy(a, p->net, nbytes);
	for (unsigned bit = p->len; bit < nbytes * 8; bit++)
		if (rng() & 1)
			a[bit / 8] |= (unsigned char)(0x80 >> (bit % 8));
	inet_ntop(family, a, out, ADDR_SIZE);
}

static void random_v4(char *out)
{
	uint32_t a = (uint32_t)rng();

	snprintf(out, ADDR_SIZE, "%u.%u.%u.%u", a >> 24, (a >> 16) & 0xff, (a >> 8) & 0xff,
		 a & 0xff);
}

/* Global unicast, 2000::/3, where all real IPv6 sources live. */
static void random_v6(char *out)
{
	unsigned char a[16];
	uint64_t r1 = rng(), r2 = rng();

	memcpy(a, &r1, 8);
	memcpy(a + 8, &r2, 8);
	a[0] = (unsigned char)(0x20 | (a[0] & 0x1f));
	inet_ntop(AF_INET6, a, out, ADDR_SIZE);
}

static void service_name(char *out)
{
	static const char *const names[] = {"lambda.amazonaws.com", "AWS Internal",
					    "ec2.amazonaws.com", "sts.amazonaws.com"};

	snprintf(out, ADDR_SIZE, "%s", names[rng() % TH_ARRAY_SIZE(names)]);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* One pass over @s; returns the seconds, *done the lookups made, kinds[] the
 * answers. */
static double run_pass(const struct th_enrich *en, const struct set *s, bool binary,
		       size_t *done, size_t kinds[4])
{
	struct th_netinfo ni;
	double t0 = now();

	*done = 0;
	for (size_t i = 0; i < s->n; i++) {
		if (!binary)
			th_enrich_lookup(en, s->addr[i], &ni);
		else if (s->bin[i].family)
			th_enrich_lookup_addr(en, s->bin[i].family, s->bin[i].a, &ni);
		else
			continue; /* a binary caller never has a service name to look up */
		kinds[ni.kind]++;
		(*done)++;
	}
	return now() - t0;
}

static void run(const struct th_enrich *en, const struct set *s)
{
	size_t kinds[4] = {0}, dummy[4] = {0};
	size_t n_text, n_bin;
	double dt_text, dt_bin;
	char bin[48] = "         -";

	dt_text = run_pass(en, s, false, &n_text, kinds);
	dt_bin = run_pass(en, s, true, &n_bin, dummy);
	if (n_bin)
		snprintf(bin, sizeof(bin), "%6.2f M/s %5.0f ns", (double)n_bin / dt_bin / 1e6,
			 dt_bin / (double)n_bin * 1e9);
	printf("  %-28s %6.2f M/s %5.0f ns | %-19s  aws %5.1f%% public %5.1f%% "
	       "private %4.1f%% service %5.1f%%\n",
	       s->name, (double)n_text / dt_text / 1e6, dt_text / (double)n_text * 1e9, bin,
	       100.0 * (double)kinds[TH_NET_AWS] / (double)n_text,
	       100.0 * (double)kinds[TH_NET_PUBLIC] / (double)n_text,
	       100.0 * (double)kinds[TH_NET_PRIVATE] / (double)n_text,
	       100.0 * (double)kinds[TH_NET_SERVICE] / (double)n_text);
}

int main(int argc, char **argv)
{
	enum { V4_AWS, V4_ANY, V6_AWS, V6_ANY, SERVICE, MIX, NSETS };
	struct set sets[NSETS] = {
		[V4_AWS] = {.name = "IPv4 in AWS prefixes"},
		[V4_ANY] = {.name = "IPv4 random (mostly not AWS)"},
		[V6_AWS] = {.name = "IPv6 in AWS prefixes"},
		[V6_ANY] = {.name = "IPv6 random in 2000::/3"},
		[SERVICE] = {.name = "service names"},
		[MIX] = {.name = "CloudTrail-like mix (*)"},
	};
	struct th_enrich_conf conf = {0};
	struct th_enrich *en = NULL;
	struct prefixes ps = {0};
	char errstr[256] = "";
	size_t n = 1000000, done, kinds[4] = {0};
	int rc = 1;

	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: %s IP-RANGES.JSON ASN.MMDB [LOOKUPS]\n", argv[0]);
		return 2;
	}
	if (argc == 4)
		n = strtoul(argv[3], NULL, 10);
	if (n == 0 || load_prefixes(argv[1], &ps) != 0)
		goto cleanup;

	for (int k = 0; k < NSETS; k++) {
		sets[k].addr = malloc(n * ADDR_SIZE);
		sets[k].bin = calloc(n, sizeof(*sets[k].bin));
		if (!sets[k].addr || !sets[k].bin)
			goto cleanup;
		sets[k].n = n;
	}
	for (size_t i = 0; i < n; i++) {
		/* The mix follows the corpus: ~35 % service names (perf-blocks.md),
		 * the rest mostly AWS IPv4. */
		unsigned r = (unsigned)(rng() % 100);

		random_aws(&ps, AF_INET, sets[V4_AWS].addr[i]);
		random_v4(sets[V4_ANY].addr[i]);
		random_aws(&ps, AF_INET6, sets[V6_AWS].addr[i]);
		random_v6(sets[V6_ANY].addr[i]);
		service_name(sets[SERVICE].addr[i]);
		if (r < 35)
			service_name(sets[MIX].addr[i]);
		else if (r < 60)
			random_aws(&ps, AF_INET, sets[MIX].addr[i]);
		else if (r < 85)
			random_v4(sets[MIX].addr[i]);
		else if (r < 95)
			random_aws(&ps, AF_INET6, sets[MIX].addr[i]);
		else
			random_v6(sets[MIX].addr[i]);
	}
	for (int k = 0; k < NSETS; k++) {
		for (size_t i = 0; i < n; i++) {
			struct bin_addr *b = &sets[k].bin[i];

			if (inet_pton(AF_INET, sets[k].addr[i], b->a) == 1)
				b->family = AF_INET;
			else if (inet_pton(AF_INET6, sets[k].addr[i], b->a) == 1)
				b->family = AF_INET6;
		}
	}

	for (int pass = 0; pass < 2; pass++) {
		conf.aws_ranges_path = argv[1];
		conf.asn_db_path = pass == 0 ? argv[2] : NULL;
		if (th_enrich_new(&en, &conf, errstr, sizeof(errstr)) != 0) {
			fprintf(stderr, "%s\n", errstr);
			goto cleanup;
		}
		printf("%s, %zu lookups per set; from text | from binary:\n",
		       pass == 0 ? "ip-ranges.json + asn.mmdb" : "ip-ranges.json only", n);
		/* Warm-up: fault in the mmap'd database and the range arrays. */
		run_pass(en, &sets[MIX], false, &done, kinds);
		for (int k = 0; k < NSETS; k++)
			run(en, &sets[k]);
		th_enrich_destroy(en);
		en = NULL;
	}
	printf("(*) 35 %% service names, 25 %% AWS IPv4, 25 %% random IPv4, 10 %% AWS IPv6, "
	       "5 %% random IPv6\n");
	rc = 0;
cleanup:
	for (int k = 0; k < NSETS; k++) {
		free(sets[k].addr);
		free(sets[k].bin);
	}
	free(ps.p);
	return rc;
}

/*
 * libFuzzer target for the ip-ranges.json loader: the JSON walker
 * (src/awsranges_json.cpp, th_awsranges_parse()) on the bytes in memory,
 * then the whole load (src/enrich.c: read, prefix parse, name interning,
 * merge and flattening into the lookup tables) through th_enrich_new() on a
 * memfd, then lookups.
 *
 * Oracles, beyond ASan/UBSan: a failed load says why; after a successful
 * load, the first address of every prefix the file listed (and that a
 * strict reading accepts, /8 or longer for IPv4, /16 or longer for IPv6)
 * is classified as AWS (or private, which takes precedence), and the
 * lookup never fails.
 */
#define _GNU_SOURCE /* memfd_create */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "awsranges_json.h" /* src/: the walker's private C boundary */
#include "fuzz_common.h"
#include "trailhound/enrich.h"

#define MAX_CHECKS 64

struct seen {
	int n;
	struct {
		int family;
		unsigned char addr[16];
		char text[48];
	} p[MAX_CHECKS];
	unsigned long total;
};

static int on_prefix(void *ctx, int ip_version, const char *prefix, const char *region,
		     const char *service)
{
	struct seen *s = ctx;
	char addr[48];
	const char *slash = strchr(prefix, '/');
	char *end;
	unsigned long len;
	int fam = ip_version == 4 ? AF_INET : AF_INET6;

	if (!prefix || !region || !service || (ip_version != 4 && ip_version != 6))
		fuzz_fail("walker: callback with ip_version %d / NULL strings", ip_version);
	s->total++;
	if (s->n == MAX_CHECKS || !slash || (size_t)(slash - prefix) >= sizeof(addr) ||
	    slash[1] < '0' || slash[1] > '9')
		return 0;
	memcpy(addr, prefix, (size_t)(slash - prefix));
	addr[slash - prefix] = '\0';
	len = strtoul(slash + 1, &end, 10);
	if (*end || len < (fam == AF_INET ? 8u : 16u) || len > (fam == AF_INET ? 32u : 128u) ||
	    inet_pton(fam, addr, s->p[s->n].addr) != 1)
		return 0;
	s->p[s->n].family = fam;
	snprintf(s->p[s->n].text, sizeof(s->p[s->n].text), "%s", addr);
	s->n++;
	return 0;
}

static void check_lookup(const struct th_enrich *en, const struct seen *s)
{
	struct th_netinfo ni;
	for (int i = 0; i < s->n; i++) {
		th_enrich_lookup_addr(en, s->p[i].family, s->p[i].addr, &ni);
		if (ni.kind != TH_NET_AWS && ni.kind != TH_NET_PRIVATE)
			fuzz_fail("prefix %s loaded but its address is classified %d, not AWS",
				  s->p[i].text, (int)ni.kind);
		if (ni.family != s->p[i].family)
			fuzz_fail("lookup of %s: family %d", s->p[i].text, ni.family);
		struct th_netinfo ni2;
		th_enrich_lookup(en, s->p[i].text, &ni2);
		if (ni2.kind != ni.kind || strcmp(ni2.aws_region, ni.aws_region) != 0)
			fuzz_fail("lookup of %s: text and binary paths disagree", s->p[i].text);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct seen seen;
	struct th_enrich_conf conf = {0};
	struct th_enrich *en = NULL;
	char date[32], err[512] = "", path[64];
	int walk, rc, fd;

	th_log_level = TH_LOG_ERR; /* a successful load logs at info */
	memset(&seen, 0, sizeof(seen));
	walk = th_awsranges_parse((const char *)data, size, on_prefix, &seen, date, sizeof(date),
				  err, sizeof(err));
	if (walk && !err[0])
		fuzz_fail("walker failed (%d) without a message", walk);
	if (strnlen(date, sizeof(date)) == sizeof(date))
		fuzz_fail("createDate not terminated");

	if ((fd = memfd_create("fuzz-ranges", MFD_CLOEXEC)) < 0)
		return 0;
	if (size && write(fd, data, size) != (ssize_t)size)
		goto cleanup;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	conf.aws_ranges_path = path;
	err[0] = '\0';
	rc = th_enrich_new(&en, &conf, err, sizeof(err));
	if (rc) {
		if (en || !err[0])
			fuzz_fail("th_enrich_new failed (%d): enp %p, message \"%s\"", rc,
				  (void *)en, err);
		goto cleanup;
	}
	if (walk)
		fuzz_fail("the walker refused the file (%s) but the load accepted it", err);
	check_lookup(en, &seen);
	/* Arbitrary addresses from the input, too. */
	for (size_t i = 0; i + 16 <= size && i < 256; i += 16) {
		struct th_netinfo ni;
		th_enrich_lookup_addr(en, AF_INET6, data + i, &ni);
		th_enrich_lookup_addr(en, AF_INET, data + i, &ni);
	}
cleanup:
	th_enrich_destroy(en);
	close(fd);
	return 0;
}

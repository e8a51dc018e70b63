/*
 * Parser throughput: the ceiling of the whole product. Not a test.
 *
 *   bench_parse FILE [RUNS]     (RUNS defaults to 3)
 *
 * Two measurements over the same data, each RUNS times, reported as
 * min/median/max events/s and MB/s (MB = 10^6 bytes of uncompressed JSON).
 * Rates are per second of CPU time of the process (parsing is single-threaded
 * and CPU-bound), so other load on a shared machine skews them less than wall
 * time would; the wall-clock median is printed beside them.
 *  - feed:  the file held in memory, one th_parser_feed() per top-level value
 *           (the Kafka path: a message is a value). This is the parser alone.
 *  - input: th_input_run() over the file (the scan path: read, gunzip if
 *           needed, framing, parsing).
 * The sink reads a few fields of every event, as the detector would.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "trailhound/event.h"
#include "trailhound/input.h"

struct counts {
	uint64_t events, rejected, checksum;
};

static int on_event(void *ctx, const struct th_event *ev, const char *raw, size_t raw_len,
		    uint64_t offset)
{
	struct counts *c = ctx;
	(void)raw;
	(void)raw_len;
	(void)offset;
	c->events++;
	/* Touch what the detector reads first, so nothing is optimized away. */
	c->checksum += (uint64_t)ev->event_time_ms + (unsigned char)ev->event_name[0] +
		       (ev->ui.access_key_id ? (unsigned char)ev->ui.access_key_id[0] : 0) +
		       (ev->source_ip ? (unsigned char)ev->source_ip[0] : 0);
	return 0;
}

static void on_reject(void *ctx, enum th_reject why, const char *detail, const char *raw,
		      size_t raw_len, uint64_t offset)
{
	struct counts *c = ctx;
	(void)why;
	(void)detail;
	(void)raw;
	(void)raw_len;
	(void)offset;
	c->rejected++;
}

static double clock_s(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct timing {
	double cpu, wall;
};

static struct timing now(void)
{
	return (struct timing){clock_s(CLOCK_PROCESS_CPUTIME_ID), clock_s(CLOCK_MONOTONIC)};
}

static struct timing since(struct timing t0)
{
	struct timing t = now();
	return (struct timing){t.cpu - t0.cpu, t.wall - t0.wall};
}

/* The whole (uncompressed) file, with TH_PARSE_PADDING spare bytes. zlib's
 * gzread passes plain files through, as th_input does. */
static char *slurp(const char *path, size_t *len)
{
	gzFile gz = gzopen(path, "rb");
	size_t cap = 1 << 20, n = 0;
	char *buf = NULL;

	if (!gz)
		return NULL;
	gzbuffer(gz, 1 << 20);
	buf = malloc(cap + TH_PARSE_PADDING);
	while (buf) {
		if (cap - n < (1 << 20)) {
			char *nb = realloc(buf, cap * 2 + TH_PARSE_PADDING);
			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
		int r = gzread(gz, buf + n, (unsigned)(cap - n));
		if (r < 0) {
			free(buf);
			buf = NULL;
			break;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	gzclose(gz);
	if (buf)
		memset(buf + n, 0, TH_PARSE_PADDING);
	*len = n;
	return buf;
}

/* One th_parser_feed() per top-level value: JSON lines take memchr, anything
 * else the structural skip. Returns elapsed seconds. */
static struct timing run_feed(struct th_parser *p, const char *buf, size_t len,
			      struct counts *c)
{
	const struct th_sink sink = {on_event, on_reject, c};
	const char *s = buf, *end = buf + len;
	struct timing t0 = now();

	while (s < end) {
		if (*s == ' ' || *s == '\n' || *s == '\r' || *s == '\t') {
			s++;
			continue;
		}
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		const char *e = nl ? nl : end;
		if (!(*s == '{' && e[-1] == '}')) {
			e = th_json_skip_value(s, end);
			if (!e) {
				c->rejected++;
				break;
			}
		}
		th_parser_feed(p, s, (size_t)(e - s), (uint64_t)(s - buf), &sink);
		s = e;
	}
	return since(t0);
}

static struct timing run_input(struct th_parser *p, const char *path, struct counts *c)
{
	const struct th_sink sink = {on_event, on_reject, c};
	struct th_input *in = NULL;
	char errstr[256];
	struct timing t0 = now();

	if (th_input_open(&in, path, 0, errstr, sizeof(errstr))) {
		fprintf(stderr, "bench_parse: %s\n", errstr);
		exit(1);
	}
	int rc = th_input_run(in, p, &sink);
	th_input_close(in);
	if (rc) {
		fprintf(stderr, "bench_parse: %s: %s\n", path, th_strerror(rc));
		exit(1);
	}
	return since(t0);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void report(const char *what, const struct timing *t, int runs, uint64_t events,
		   size_t bytes)
{
	double *secs = malloc(2 * sizeof(double) * (size_t)runs), *wall = secs + runs;
	if (!secs)
		return;
	for (int i = 0; i < runs; i++) {
		secs[i] = t[i].cpu;
		wall[i] = t[i].wall;
	}
	qsort(secs, (size_t)runs, sizeof(*secs), cmp_double);
	qsort(wall, (size_t)runs, sizeof(*wall), cmp_double);
	/* The fastest run has the highest rate: min rate = slowest run. */
	double slow = secs[runs - 1], med = secs[runs / 2], fast = secs[0];
	printf("%-6s events/s  min %10.0f  median %10.0f  max %10.0f\n", what,
	       (double)events / slow, (double)events / med, (double)events / fast);
	printf("%-6s MB/s      min %10.1f  median %10.1f  max %10.1f\n", what,
	       (double)bytes / 1e6 / slow, (double)bytes / 1e6 / med, (double)bytes / 1e6 / fast);
	printf("%-6s wall-clock median: %.0f events/s, %.1f MB/s\n", what,
	       (double)events / wall[runs / 2], (double)bytes / 1e6 / wall[runs / 2]);
	free(secs);
}

int main(int argc, char **argv)
{
	struct th_parser *p = NULL;
	size_t len = 0;
	int runs = argc > 2 ? atoi(argv[2]) : 3;

	if (argc < 2 || argc > 3 || runs < 1) {
		fprintf(stderr, "usage: %s FILE [RUNS]\n", argv[0]);
		return 2;
	}
	char *buf = slurp(argv[1], &len);
	if (!buf) {
		fprintf(stderr, "bench_parse: cannot read %s\n", argv[1]);
		return 1;
	}
	if (th_parser_new(&p, 0)) {
		fprintf(stderr, "bench_parse: out of memory\n");
		return 1;
	}
	struct timing *feed = calloc((size_t)runs, sizeof(*feed));
	struct timing *input = calloc((size_t)runs, sizeof(*input));
	if (!feed || !input)
		return 1;

	struct counts c0 = {0};
	/* A warm-up pass: page cache, allocator, simdjson's buffers. */
	run_feed(p, buf, len, &c0);
	struct counts cf = {0}, ci = {0};
	for (int i = 0; i < runs; i++) {
		struct counts c = {0};
		feed[i] = run_feed(p, buf, len, &c);
		cf = c;
	}
	for (int i = 0; i < runs; i++) {
		struct counts c = {0};
		input[i] = run_input(p, argv[1], &c);
		ci = c;
	}

	printf("bench_parse: %s: %.1f MB, %llu events, %llu rejected, %.0f bytes/event, %d runs\n",
	       argv[1], (double)len / 1e6, (unsigned long long)cf.events,
	       (unsigned long long)cf.rejected, cf.events ? (double)len / (double)cf.events : 0.0,
	       runs);
	if (ci.events != cf.events || ci.rejected != cf.rejected)
		printf("note: th_input saw %llu events, %llu rejected\n",
		       (unsigned long long)ci.events, (unsigned long long)ci.rejected);
	report("feed", feed, runs, cf.events, len);
	report("input", input, runs, ci.events, len);
	/* So the checksum is used. */
	if (cf.checksum == 1)
		printf(" \n");

	free(feed);
	free(input);
	free(buf);
	th_parser_destroy(p);
	return 0;
}

/*
 * libFuzzer target for the whole pipeline, as the Kafka worker runs it:
 * event bytes → parser → detector (real LMDB state, real enrichment) →
 * state commit → both alert encoders.
 *
 * Input: JSON lines. Each line is one Kafka message (th_parser_feed()), so
 * one input is a sequence of events and the detector learns across them
 * (issuance, then remote use, ...). A line that is exactly "#rollback"
 * aborts the open batch as a failed Kafka transaction does
 * (th_state_rollback() + th_detector_reset()). Every few events the batch
 * commits (checkpoint + th_state_commit()); at the end the detector decides
 * every held use (advance(final)) and commits.
 *
 * Oracles, beyond ASan/UBSan: the detector and every commit succeed (the
 * scratch store is on tmpfs with room to spare, so a failure is a defect:
 * e.g. a key LMDB refuses); every alert renders as valid JSON (valid UTF-8)
 * and encodes as Avro that decodes back to the same alert; every record
 * the detector stored decodes with its decoder.
 *
 * Process-wide, built once: the enrichment (asn.mmdb + ip-ranges.json from
 * TH_SHARED_DATA; without them the Amazon-ASN fallback), the Avro encoder
 * and the store in a scratch directory. The store is wiped before every
 * input, so a crash reproduces from its file alone; every 64 inputs it is
 * closed and reopened (the open path over an existing store).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "trailhound/avro_alert.h"
#include "trailhound/detect.h"
#include "trailhound/input.h"
#include "trailhound/records.h"

#define RECORD_MAX (64 * 1024)
#define BATCH 4 /* events per commit: small, so commits land mid-sequence */
#define MAP_SIZE (256u << 20)
#define SCHEMA_ID 42
#define REOPEN_EVERY 64

static struct {
	bool ready;
	struct th_enrich *en;
	struct th_avro_alert *avro;
	struct th_state *st;
	const char *dir;
	char schema[1024];
	bool enriched;
	unsigned long inputs, events, rejects, alerts;
} g;

struct run {
	struct th_detector *det;
	struct th_wbuf json, avro;
	unsigned since_commit;
	int64_t line;
	unsigned long alerts;
};

static void open_store(void)
{
	char err[512];
	int rc = th_state_open(&g.st, g.dir, MAP_SIZE, err, sizeof(err));
	if (rc)
		fuzz_fail("state open %s: %s (%s)", g.dir, err, th_strerror(rc));
}

/* Free what the process keeps, so LeakSanitizer reports only real leaks. */
static void teardown(void)
{
	/* FUZZ_STATS=1: show that the replay reaches the detector and alerts. */
	if (getenv("FUZZ_STATS"))
		fprintf(stderr, "fuzz_pipeline: %lu inputs, %lu events, %lu rejected, %lu alerts, "
				"enrichment %s\n",
			g.inputs, g.events, g.rejects, g.alerts, g.enriched ? "from TH_SHARED_DATA" : "fallback");
	th_state_close(g.st);
	th_avro_alert_destroy(g.avro);
	th_enrich_destroy(g.en);
	fuzz_avro_check_free();
	g.ready = false;
}

static void setup(void)
{
	char err[512];
	const char *data = fuzz_shared_data();
	struct th_enrich_conf ec = {0};
	char asn[1024], ranges[1024];

	if (data) {
		snprintf(asn, sizeof(asn), "%s/asn/asn.mmdb", data);
		snprintf(ranges, sizeof(ranges), "%s/aws-ip-ranges/ip-ranges.json", data);
		ec.asn_db_path = asn;
		ec.aws_ranges_path = ranges;
		if (th_enrich_new(&g.en, &ec, err, sizeof(err))) {
			fprintf(stderr, "fuzz_pipeline: %s; no enrichment data\n", err);
			memset(&ec, 0, sizeof(ec));
		} else {
			g.enriched = true;
		}
	}
	if (!g.en && th_enrich_new(&g.en, &ec, err, sizeof(err)))
		fuzz_fail("enrich: %s", err);
	snprintf(g.schema, sizeof(g.schema), "%s/alert.avsc", TH_SCHEMA_DIR);
	if (th_avro_alert_new(&g.avro, g.schema, SCHEMA_ID, err, sizeof(err)))
		fuzz_fail("avro: %s", err);
	if (!(g.dir = fuzz_scratch_dir("pipeline")))
		fuzz_fail("no scratch directory");
	open_store();
	g.ready = true;
	/* registered after fuzz_scratch_dir()'s, so it runs first: the store
	 * closes before its directory goes */
	atexit(teardown);
}

static int on_alert(void *ctx, const struct th_alert *a)
{
	struct run *r = ctx;
	int rc;

	th_wbuf_reset(&r->json);
	th_alert_to_json(a, &r->json);
	if (r->json.oom)
		fuzz_fail("alert JSON: out of memory");
	/* Every string in an alert came from parsed (valid) JSON, so the line
	 * must be valid JSON and valid UTF-8: a strict consumer drops it else. */
	if (!fuzz_json_valid((const char *)r->json.p, r->json.len))
		fuzz_fail("alert %s: JSON line invalid (%s): %.*s", a->alert_id,
			  fuzz_utf8_valid(r->json.p, r->json.len) ? "syntax" : "UTF-8",
			  (int)r->json.len, (const char *)r->json.p);
	if ((rc = th_avro_alert_encode(g.avro, a, &r->avro)))
		fuzz_fail("alert %s: Avro encode failed: %s", a->alert_id, th_strerror(rc));
	fuzz_avro_check(g.schema, a, r->avro.p, r->avro.len, SCHEMA_ID);
	r->alerts++;
	g.alerts++;
	return 0;
}

/* For the failure message: which keys LMDB cannot take (over 511 bytes). */
static int long_key(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	(void)ctx;
	(void)vlen;
	if (klen > 511)
		fprintf(stderr, "fuzz_pipeline: %s of a %zu-byte key '%c': %.*s\n",
			val ? "put" : "delete", klen, *(const char *)key, (int)(klen < 300 ? klen : 300),
			(const char *)key);
	return 0;
}

static void commit(struct run *r, int64_t offset)
{
	int rc;
	if ((rc = th_detector_checkpoint(r->det)))
		fuzz_fail("checkpoint: %s", th_strerror(rc));
	if ((rc = th_state_commit(g.st, offset))) {
		th_state_dirty_foreach(g.st, long_key, NULL);
		fuzz_fail("state commit: %s", th_strerror(rc));
	}
}

static int on_event(void *ctx, const struct th_event *ev, const char *raw, size_t raw_len,
		    uint64_t offset)
{
	struct run *r = ctx;
	struct th_input_ref ref = {.topic = "fuzz", .partition = 0, .offset = r->line};
	int rc;
	(void)raw;
	(void)raw_len;
	(void)offset;
	g.events++;
	if ((rc = th_detector_process(r->det, ev, &ref)))
		fuzz_fail("detector failed on line %lld: %s", (long long)r->line, th_strerror(rc));
	if (++r->since_commit >= BATCH) {
		r->since_commit = 0;
		commit(r, r->line);
	}
	return 0;
}

static void on_reject(void *ctx, enum th_reject why, const char *detail, const char *raw,
		      size_t raw_len, uint64_t offset)
{
	(void)ctx;
	(void)raw;
	(void)raw_len;
	(void)offset;
	g.rejects++;
	if (why <= TH_REJECT_NONE || why >= TH_REJECT__COUNT || !detail)
		fuzz_fail("reject with reason %d", (int)why);
}

/* Every record the detector wrote must decode with its own decoder. */
static int check_record(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	static struct th_token tok;
	static struct th_role role;
	static struct th_held held;
	struct th_sighting s;
	struct th_dedup dd;
	int rc = 0;
	(void)ctx;
	if (klen < 2 || ((const char *)key)[1] != TH_KEY_SEP)
		return 0; /* the store's metadata, or a layout this check does not know */
	switch (((const char *)key)[0]) {
	case 'k': rc = th_token_decode(val, vlen, &tok); break;
	case 'r': rc = th_role_decode(val, vlen, &role); break;
	case 'b':
	case 'i':
	case 'n': rc = th_sighting_decode(val, vlen, &s); break;
	case 'd': rc = th_dedup_decode(val, vlen, &dd); break;
	case 'p': rc = th_held_decode(val, vlen, &held); break;
	default: break;
	}
	if (rc)
		fuzz_fail("stored record '%c' (key %zu bytes, value %zu bytes) does not decode",
			  ((const char *)key)[0], klen, vlen);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct run r = {0};
	struct th_detect_conf conf;
	struct th_parser *p = NULL;
	struct th_sink sink = {on_event, on_reject, &r};
	char *buf = NULL;
	int rc;

	if (!g.ready) {
		th_log_level = TH_LOG_ERR; /* keep the campaign's log readable */
		setup();
	}
	if (++g.inputs % REOPEN_EVERY == 0) {
		th_state_close(g.st);
		g.st = NULL;
		open_store();
	}
	if ((rc = th_state_wipe(g.st)))
		fuzz_fail("state wipe: %s", th_strerror(rc));
	th_detect_conf_defaults(&conf);
	if (th_detector_new(&r.det, &conf, g.en, g.st, on_alert, &r) ||
	    th_parser_new(&p, RECORD_MAX) || !(buf = malloc(size + TH_PARSE_PADDING)))
		fuzz_fail("out of memory");

	for (size_t at = 0; at < size; r.line++) {
		const uint8_t *nl = memchr(data + at, '\n', size - at);
		size_t len = nl ? (size_t)(nl - (data + at)) : size - at;
		/* A message in its own exact buffer plus the padding the parser
		 * may read, as the worker hands over a Kafka payload. */
		memcpy(buf, data + at, len);
		memset(buf + len, 0, TH_PARSE_PADDING);
		at += len + (nl ? 1 : 0);
		if (len == 9 && memcmp(buf, "#rollback", 9) == 0) {
			th_state_rollback(g.st);
			th_detector_reset(r.det);
			r.since_commit = 0;
			continue;
		}
		(void)th_parser_feed(p, buf, len, 0, &sink);
	}
	if ((rc = th_detector_advance(r.det, true)))
		fuzz_fail("advance(final): %s", th_strerror(rc));
	commit(&r, r.line);
	/* Every key: the empty prefix once failed in LMDB (FINDINGS.md). */
	if ((rc = th_state_scan(g.st, "", 0, check_record, NULL)))
		fuzz_fail("state scan: %s", th_strerror(rc));

	th_detector_destroy(r.det);
	th_parser_destroy(p);
	th_wbuf_free(&r.json);
	th_wbuf_free(&r.avro);
	free(buf);
	return 0;
}

/*
 * libFuzzer target for the state/changelog record decoders (records.c over
 * codec.c) and the key builder th_key(). A record arrives from LMDB or from
 * the changelog topic, so its bytes are untrusted: a decoder must refuse
 * what it cannot read (TH_EPARSE) and never read or write out of bounds.
 *
 * Input: byte 0 picks the decoder, the rest is the value. Whatever decodes
 * is re-encoded and decoded again: the second encoding must decode and
 * re-encode to the same bytes (encode∘decode is stable), which catches a
 * decoder that keeps what its encoder cannot write (counts past the arrays,
 * strings cut mid-way) and the reverse.
 *
 * Byte 0 % 8 == 6 fuzzes th_key(): the rest is split at '\n' into up to 5
 * parts, and the key goes into a heap buffer of exactly the size byte 1
 * selects (so ASan sees an overrun), as the detector builds its keys.
 *
 * Byte 0 % 8 == 7 is a hostile changelog: the rest is a list of records
 * (u8 flags, bit 0 = deletion; varint key length; key; varint value length;
 * value), loaded with th_state_load (the worker's restore: a 512-byte memory
 * budget, so the records spill as sorted runs and are merged back) into a
 * scratch store and committed, as the worker restores a partition; then the detector runs a detection
 * case's story (tests/cases/variations/v2_cli.jsonl) over that state, so
 * every stored value reaches the decoder the detector uses for its key.
 * The detector must not fail (an unreadable record is the same as none),
 * nor its commit, nor the load of the restored records (a key no worker
 * writes is skipped, as the restore skips it).
 * FUZZ_DUMP_RESTORE=FILE writes the store after the story in this format
 * (how the seed-restore-* inputs were made).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "trailhound/detect.h"
#include "trailhound/input.h"
#include "trailhound/records.h"
#include "trailhound/state.h"

enum { R_TOKEN, R_ROLE, R_SIGHTING, R_HELD, R_DEDUP, R_CALL, R_KEY, R_RESTORE, R__COUNT };

/* Big records: static, not on the stack. A role owns a function array and a
 * token its alerts' room, so they are kept out of the union (another kind's
 * bytes would be their pointers). */
static struct th_role role_a, role_b;
static struct th_token token_a, token_b;
static union {
	struct th_sighting sighting;
	struct th_held held;
	struct th_dedup dedup;
	struct th_call call;
} a, b;

static int decode(int kind, const uint8_t *p, size_t n, void *out)
{
	struct th_rbuf r;
	switch (kind) {
	case R_TOKEN: return th_token_decode(p, n, out);
	case R_ROLE: return th_role_decode(p, n, out);
	case R_SIGHTING: return th_sighting_decode(p, n, out);
	case R_HELD: return th_held_decode(p, n, out);
	case R_DEDUP: return th_dedup_decode(p, n, out);
	case R_CALL:
		th_rbuf_init(&r, p, n);
		return th_call_decode(&r, out);
	}
	return TH_EINVAL;
}

static void encode(int kind, const void *in, struct th_wbuf *w)
{
	th_wbuf_reset(w);
	switch (kind) {
	case R_TOKEN: th_token_encode(w, in); break;
	case R_ROLE: th_role_encode(w, in); break;
	case R_SIGHTING: th_sighting_encode(w, in); break;
	case R_HELD: th_held_encode(w, in); break;
	case R_DEDUP: th_dedup_encode(w, in); break;
	case R_CALL: th_call_encode(w, in); break;
	}
	if (w->oom)
		fuzz_fail("encode: out of memory");
}

static size_t key_of(char *buf, size_t size, int n, const char *const *p)
{
	return th_key(buf, size, 'k', n, p[0], p[1], p[2], p[3], p[4]);
}

/* th_key()'s contract (records.h): a key fits LMDB whatever the parts, is
 * never a truncation (0 and "" when it does not fit the buffer), has one
 * separator per part, distinct parts give distinct keys, fewer parts give a
 * prefix, and mapping a mapped part keeps it. */
static void fuzz_key(const uint8_t *data, size_t size)
{
	const char *parts[5] = {NULL};
	char *text, *buf, full[TH_KEY_SIZE], other[TH_KEY_SIZE], fewer[TH_KEY_SIZE];
	size_t bufsz;
	int n = 0;

	if (size < 2)
		return;
	/* 2..256 bytes, or the TH_KEY_SIZE the detector's key buffers have */
	bufsz = data[0] == 0xff ? TH_KEY_SIZE : (size_t)data[0] + 2;
	if (!(text = malloc(size + 1)) || !(buf = malloc(bufsz)))
		fuzz_fail("out of memory");
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';
	for (char *s = text; n < 5; n++) {
		parts[n] = s;
		char *nl = strchr(s, '\n');
		if (!nl) {
			n++;
			break;
		}
		*nl = '\0';
		s = nl + 1;
	}
	size_t len = key_of(buf, bufsz, n, parts);
	size_t flen = key_of(full, sizeof(full), n, parts);
	if (flen == 0 || flen > TH_KEY_MAX || strlen(full) != flen || full[0] != 'k')
		fuzz_fail("th_key: %zu-byte key from %d parts in a TH_KEY_SIZE buffer", flen, n);
	size_t seps = 0;
	for (size_t i = 0; i < flen; i++)
		seps += full[i] == TH_KEY_SEP;
	if (seps != (size_t)n)
		fuzz_fail("th_key: %zu separators for %d parts", seps, n);
	if (len == 0 ? (bufsz && buf[0] != '\0') || flen < bufsz
		     : len != flen || memcmp(buf, full, flen + 1) != 0)
		fuzz_fail("th_key: %zu bytes in a %zu-byte buffer, %zu in a full one", len, bufsz,
			  flen);
	/* fewer parts: a prefix */
	size_t plen = key_of(fewer, sizeof(fewer), n - 1, parts);
	if (plen > flen || memcmp(fewer, full, plen) != 0)
		fuzz_fail("th_key: the %d-part key is not a prefix of the %d-part key", n - 1, n);
	/* a last part one byte longer: another key */
	size_t ll = strlen(parts[n - 1]);
	char *longer = malloc(ll + 2);
	if (!longer)
		fuzz_fail("out of memory");
	memcpy(longer, parts[n - 1], ll);
	longer[ll] = 'x';
	longer[ll + 1] = '\0';
	const char *lp[5] = {parts[0], parts[1], parts[2], parts[3], parts[4]};
	lp[n - 1] = longer;
	size_t olen = key_of(other, sizeof(other), n, lp);
	if (olen == flen && memcmp(other, full, flen) == 0)
		fuzz_fail("th_key: two distinct parts map to the same key");
	/* a mapped part maps to itself */
	char m1[TH_KEY_PART_MAX + 1], m2[TH_KEY_PART_MAX + 1];
	size_t l1 = th_key_part(m1, parts[0]), l2 = th_key_part(m2, m1);
	if (l1 > TH_KEY_PART_MAX || l1 != l2 || memcmp(m1, m2, l1) != 0)
		fuzz_fail("th_key_part: mapping a mapped part changes it");
	free(longer);
	free(buf);
	free(text);
}

/* ---- a hostile changelog under the detector ---- */

static struct {
	bool ready;
	const char *dir;
	struct th_state *st;
	struct th_enrich *en;
	char *story;
	size_t story_len;
} rs;

static void restore_teardown(void)
{
	th_state_close(rs.st);
	th_enrich_destroy(rs.en);
	free(rs.story);
}

static void restore_setup(void)
{
	char err[512], path[1024];
	struct th_enrich_conf ec = {0};
	const char *dir = fuzz_scratch_dir("records");
	rs.dir = dir;
	FILE *f;

	th_log_level = 0; /* a corrupt store is expected to be logged about */
	if (!dir || th_state_open(&rs.st, dir, 64u << 20, err, sizeof(err)))
		fuzz_fail("scratch store: %s", dir ? err : "no directory");
	if (th_enrich_new(&rs.en, &ec, err, sizeof(err)))
		fuzz_fail("enrich: %s", err);
	snprintf(path, sizeof(path), "%s/cases/variations/v2_cli.jsonl", TH_TEST_DIR);
	if ((f = fopen(path, "rb"))) {
		static char buf[1 << 16];
		rs.story_len = fread(buf, 1, sizeof(buf), f);
		fclose(f);
		if ((rs.story = malloc(rs.story_len + TH_PARSE_PADDING))) {
			memcpy(rs.story, buf, rs.story_len);
			memset(rs.story + rs.story_len, 0, TH_PARSE_PADDING);
		}
	}
	rs.ready = true;
	atexit(restore_teardown);
}

static int on_alert(void *ctx, const struct th_alert *a)
{
	struct th_wbuf *w = ctx;
	/* Strings may come from the hostile store: render, do not judge. */
	th_wbuf_reset(w);
	th_alert_to_json(a, w);
	return 0;
}

static int on_event(void *ctx, const struct th_event *ev, const char *raw, size_t raw_len,
		    uint64_t offset)
{
	struct th_input_ref ref = {.topic = "fuzz", .partition = 0, .offset = (int64_t)offset};
	int rc = th_detector_process(ctx, ev, &ref);
	(void)raw;
	(void)raw_len;
	if (rc)
		fuzz_fail("detector failed over a restored store: %s", th_strerror(rc));
	return 0;
}

static void on_reject(void *ctx, enum th_reject why, const char *detail, const char *raw,
		      size_t raw_len, uint64_t offset)
{
	(void)ctx, (void)why, (void)detail, (void)raw, (void)raw_len, (void)offset;
}

static int dump_cb(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct th_wbuf *w = ctx;
	th_put_u8(w, 0);
	th_put_varint(w, klen);
	th_put_bytes(w, key, klen);
	th_put_varint(w, vlen);
	th_put_bytes(w, val, vlen);
	return 0;
}

static void dump(const char *path)
{
	struct th_wbuf w = {0};
	FILE *f = fopen(path, "wb");
	th_put_u8(&w, R_RESTORE);
	for (const char *t = "abrkindpq"; *t; t++) {
		const char prefix[2] = {*t, TH_KEY_SEP};
		th_state_scan(rs.st, prefix, sizeof(prefix), dump_cb, &w);
	}
	if (!f || w.oom || fwrite(w.p, 1, w.len, f) != w.len)
		fuzz_fail("cannot write %s", path);
	fclose(f);
	th_wbuf_free(&w);
}

static void fuzz_restore(const uint8_t *data, size_t size)
{
	struct th_rbuf r;
	struct th_detect_conf conf;
	struct th_detector *det = NULL;
	struct th_parser *p = NULL;
	struct th_wbuf w = {0};
	int rc;

	if (!rs.ready)
		restore_setup();
	struct th_state_load *ld = NULL;
	if ((rc = th_state_wipe(rs.st)))
		fuzz_fail("state wipe: %s", th_strerror(rc));
	if ((rc = th_state_load_new(&ld, rs.st, rs.dir, 512)))
		fuzz_fail("state load: %s", th_strerror(rc));
	th_rbuf_init(&r, data, size);
	while (r.p < r.end && !r.bad) {
		uint8_t flags = th_get_u8(&r);
		uint64_t klen = th_get_varint(&r);
		if (r.bad || klen > (uint64_t)(r.end - r.p))
			break;
		const uint8_t *key = r.p;
		r.p += klen;
		uint64_t vlen = th_get_varint(&r);
		if (r.bad || vlen > (uint64_t)(r.end - r.p))
			break;
		const uint8_t *val = r.p;
		r.p += vlen;
		/* An exact-size copy of the value, as a Kafka message is. */
		uint8_t *v = malloc(vlen ? vlen : 1);
		if (!v)
			fuzz_fail("out of memory");
		memcpy(v, val, vlen);
		rc = th_state_load_add(ld, key, klen, flags & 1 ? NULL : v, vlen);
		free(v);
		if (rc && rc != TH_EINVAL) /* TH_EINVAL: skipped, as the restore skips it */
			fuzz_fail("state load add: %s", th_strerror(rc));
	}
	/* whatever the records: sorted, merged and appended without an error
	 * (an ordering bug would be LMDB's MDB_KEYEXIST here) */
	if ((rc = th_state_load_finish(ld)) || (rc = th_state_commit(rs.st, 0)))
		fuzz_fail("state load finish: %s", th_strerror(rc));
	th_state_load_destroy(ld);
	if (!rs.story)
		return;
	th_detect_conf_defaults(&conf);
	if (th_detector_new(&det, &conf, rs.en, rs.st, on_alert, &w) ||
	    th_parser_new(&p, 1 << 20))
		fuzz_fail("out of memory");
	struct th_sink sink = {on_event, on_reject, det};
	uint64_t line = 0;
	for (char *at = rs.story, *end = rs.story + rs.story_len; at < end; line++) {
		char *nl = memchr(at, '\n', (size_t)(end - at));
		size_t len = nl ? (size_t)(nl - at) : (size_t)(end - at);
		char save = at[len];
		at[len] = '\0'; /* the padding the parser may read */
		(void)th_parser_feed(p, at, len, line, &sink);
		at[len] = save;
		at += len + 1;
	}
	if ((rc = th_detector_advance(det, true)) || (rc = th_detector_checkpoint(det)))
		fuzz_fail("detector over a restored store: %s", th_strerror(rc));
	if ((rc = th_state_commit(rs.st, 1)))
		fuzz_fail("commit after the story: %s", th_strerror(rc));
	const char *out = getenv("FUZZ_DUMP_RESTORE");
	if (out)
		dump(out);
	th_detector_destroy(det);
	th_parser_destroy(p);
	th_wbuf_free(&w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct th_wbuf w1, w2;
	int kind;

	if (size < 1)
		return 0;
	kind = data[0] % R__COUNT;
	if (kind == R_KEY) {
		fuzz_key(data + 1, size - 1);
		return 0;
	}
	if (kind == R_RESTORE) {
		fuzz_restore(data + 1, size - 1);
		return 0;
	}
	void *pa = kind == R_ROLE ? (void *)&role_a : kind == R_TOKEN ? (void *)&token_a : (void *)&a;
	void *pb = kind == R_ROLE ? (void *)&role_b : kind == R_TOKEN ? (void *)&token_b : (void *)&b;
	if (decode(kind, data + 1, size - 1, pa) != 0)
		return 0;
	encode(kind, pa, &w1);
	if (decode(kind, w1.p, w1.len, pb) != 0)
		fuzz_fail("kind %d: a decoded record re-encodes to %zu bytes that do not decode",
			  kind, w1.len);
	encode(kind, pb, &w2);
	if (w1.len != w2.len || memcmp(w1.p, w2.p, w1.len) != 0)
		fuzz_fail("kind %d: encode(decode(encode(x))) differs from encode(x) (%zu vs %zu bytes)",
			  kind, w2.len, w1.len);
	return 0;
}

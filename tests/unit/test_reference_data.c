/*
 * The parser against real CloudTrail: every *.json file of the shared
 * reference data (Stratus Red Team detonation logs and the Lambda shape
 * examples), used in place, must parse with no rejected record. The files'
 * PROVENANCE.md notes are not data and are skipped.
 *
 * Then corrupted copies (in a temporary directory) check the other half of
 * the contract: each bad record is reported with its reason and offset, and
 * every other record is still parsed, counted exactly. The corruptions are
 * byte-for-byte replacements where possible, so offsets stay those of the
 * original records.
 *
 * Expected counts were taken with Python's json module (len of each file's
 * array); if the shared data is ever refreshed, they must be re-taken.
 */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "trailhound/event.h"
#include "trailhound/input.h"

#define STRATUS_DIR TH_SHARED_DATA "/stratus-detonation-logs"
#define SHAPES_DIR TH_SHARED_DATA "/lambda-shape-examples"
#define STRATUS_FILES 35
#define STRATUS_EVENTS 310
#define SHAPES_FILES 8
#define SHAPES_EVENTS 12
/* The largest Stratus file, used for the in-place corruptions. */
#define BIG_FILE STRATUS_DIR "/aws.execution.ssm-send-command.json"
#define BIG_EVENTS 56

/* 0 or fail with the expression and the error text (LMDB mtest's E()). */
#define E(expr)                                                                                    \
	do {                                                                                       \
		int rc_ = (expr);                                                                  \
		if (rc_)                                                                           \
			fail_msg("%s:%d: %s: %s", __FILE__, __LINE__, #expr, th_strerror(rc_));    \
	} while (0)

#define MAX_RECORDS 1024

/* Everything a run saw. Raw records are kept (copied) so the corruption tests
 * can rebuild inputs from real records. */
struct seen {
	int nev, nrej;
	int by_reason[TH_REJECT__COUNT];
	struct {
		uint64_t offset;
		size_t len;
		char *raw;
	} ev[MAX_RECORDS];
	struct {
		enum th_reject why;
		uint64_t offset;
		char detail[256];
	} rej[MAX_RECORDS];
	bool keep_raw;
};

static int seen_event(void *ctx, const struct th_event *ev, const char *raw, size_t raw_len,
		      uint64_t offset)
{
	struct seen *s = ctx;
	/* Every field the detector reads must be present in a real record. */
	assert_non_null(ev->event_id);
	assert_non_null(ev->event_source);
	assert_non_null(ev->event_name);
	assert_true(ev->event_time_ms > 1262304000000LL); /* after 2010 */
	assert_int_equal(raw[0], '{');
	assert_int_equal(raw[raw_len - 1], '}');
	assert_true(s->nev < MAX_RECORDS);
	s->ev[s->nev].offset = offset;
	s->ev[s->nev].len = raw_len;
	if (s->keep_raw) {
		s->ev[s->nev].raw = malloc(raw_len + 1);
		assert_non_null(s->ev[s->nev].raw);
		memcpy(s->ev[s->nev].raw, raw, raw_len);
		s->ev[s->nev].raw[raw_len] = '\0';
	}
	s->nev++;
	return 0;
}

static void seen_reject(void *ctx, enum th_reject why, const char *detail, const char *raw,
			size_t raw_len, uint64_t offset)
{
	struct seen *s = ctx;
	(void)raw;
	(void)raw_len;
	assert_true(s->nrej < MAX_RECORDS);
	s->rej[s->nrej].why = why;
	s->rej[s->nrej].offset = offset;
	snprintf(s->rej[s->nrej].detail, sizeof(s->rej[0].detail), "%s", detail);
	s->by_reason[why]++;
	s->nrej++;
}

static void seen_free(struct seen *s)
{
	for (int i = 0; i < s->nev; i++)
		free(s->ev[i].raw);
	free(s);
}

static struct seen *seen_new(bool keep_raw)
{
	struct seen *s = calloc(1, sizeof(*s));
	assert_non_null(s);
	s->keep_raw = keep_raw;
	return s;
}

static void dump(const char *path, const struct seen *s)
{
	print_message("%s: %d events, %d rejects\n", path, s->nev, s->nrej);
	for (int i = 0; i < s->nrej; i++)
		print_message("  reject %s @%llu: %s\n", th_reject_name(s->rej[i].why),
			      (unsigned long long)s->rej[i].offset, s->rej[i].detail);
}

static void run_file(const char *path, struct seen *s)
{
	struct th_parser *p;
	struct th_input *in = NULL;
	struct th_sink sink = {seen_event, seen_reject, s};
	char errstr[256] = "";

	E(th_parser_new(&p, 0));
	if (th_input_open(&in, path, 0, errstr, sizeof(errstr)))
		fail_msg("%s", errstr);
	E(th_input_run(in, p, &sink));
	th_input_close(in);
	th_parser_destroy(p);
}

static bool is_json_file(const char *name)
{
	size_t n = strlen(name);
	return n > 5 && strcmp(name + n - 5, ".json") == 0;
}

/* Parses every *.json in dir; returns the number of files, adds up events. */
static int parse_dir(const char *dir, int *events)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int files = 0;

	if (!d)
		fail_msg("cannot open %s (TH_SHARED_DATA)", dir);
	while ((de = readdir(d)) != NULL) {
		char path[1024];
		if (!is_json_file(de->d_name))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		struct seen *s = seen_new(false);
		run_file(path, s);
		if (s->nrej != 0 || s->nev == 0)
			dump(path, s);
		assert_int_equal(s->nrej, 0);
		assert_true(s->nev > 0);
		*events += s->nev;
		files++;
		seen_free(s);
	}
	closedir(d);
	return files;
}

static void test_stratus_logs(void **state)
{
	int events = 0;
	(void)state;
	assert_int_equal(parse_dir(STRATUS_DIR, &events), STRATUS_FILES);
	assert_int_equal(events, STRATUS_EVENTS);
}

static void test_lambda_shapes(void **state)
{
	int events = 0;
	(void)state;
	assert_int_equal(parse_dir(SHAPES_DIR, &events), SHAPES_FILES);
	assert_int_equal(events, SHAPES_EVENTS);
}

/* Spot checks of the fields the Lambda detections rely on, in real records. */
static int check_lambda_event(void *ctx, const struct th_event *ev, const char *raw, size_t raw_len,
			      uint64_t offset)
{
	int *n = ctx;
	(void)raw;
	(void)raw_len;
	(void)offset;
	if (*n == 0) {
		assert_string_equal(ev->event_name, "AssumeRole");
		assert_string_equal(ev->ui.type, "AWSService");
		assert_string_equal(ev->ui.invoked_by, "lambda.amazonaws.com");
		assert_string_equal(ev->req.role_session_name, "awslambda_744_20230710122532896");
		assert_string_equal(ev->cred.access_key_id, "ASIATFQR7NSCYPF22374");
		assert_string_equal(ev->cred.expiration, "Jul 10, 2023, 2:25:32 PM");
		assert_int_equal(ev->cred.expiration_ms, 1688999132000LL);
		assert_int_equal(ev->event_time_ms, 1688991932000LL);
	}
	(*n)++;
	return 0;
}

static void no_reject(void *ctx, enum th_reject why, const char *detail, const char *raw,
		      size_t raw_len, uint64_t offset)
{
	(void)ctx;
	(void)raw;
	(void)raw_len;
	fail_msg("unexpected reject %s @%llu: %s", th_reject_name(why), (unsigned long long)offset,
		 detail);
}

static void test_lambda_fields(void **state)
{
	struct th_parser *p;
	struct th_input *in = NULL;
	int n = 0;
	struct th_sink sink = {check_lambda_event, no_reject, &n};
	char errstr[256];
	(void)state;

	E(th_parser_new(&p, 0));
	E(th_input_open(&in, SHAPES_DIR "/01_invictus_real_lambda_service_AssumeRole.json", 0,
			errstr, sizeof(errstr)));
	E(th_input_run(in, p, &sink));
	assert_int_equal(n, 2);
	th_input_close(in);
	th_parser_destroy(p);
}

/* ---- corrupted copies ---- */

static char tmpdir[256];

static int setup_tmp(void **state)
{
	const char *base = getenv("TMPDIR");
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "%s/th_refdata_XXXXXX", base ? base : "/tmp");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_tmp(void **state)
{
	DIR *d = opendir(tmpdir);
	struct dirent *de;
	(void)state;
	if (!d)
		return 0;
	while ((de = readdir(d)) != NULL) {
		char path[512];
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", tmpdir, de->d_name);
		unlink(path);
	}
	closedir(d);
	return rmdir(tmpdir);
}

static char *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	long n = ftell(f);
	assert_true(n >= 0);
	rewind(f);
	char *b = malloc((size_t)n + 1);
	assert_non_null(b);
	assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	b[n] = '\0';
	*len = (size_t)n;
	return b;
}

static void write_all(const char *path, const char *b, size_t n)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(b, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

/* Position of the value of "key" inside [rec, rec+len): the byte after the
 * colon and the whitespace that follows it. */
static char *value_of(char *rec, size_t len, const char *key)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "\"%s\"", key);
	char *k = memmem(rec, len, pat, strlen(pat));
	assert_non_null(k);
	char *v = k + strlen(pat);
	while (*v == ' ' || *v == ':')
		v++;
	return v;
}

/* Same-length corruptions, each making a record invalid for one reason. */
enum corruption { C_UTF8, C_TIMESTAMP, C_MISSING, C_WRONG_TYPE };

static enum th_reject corrupt(char *rec, size_t len, enum corruption c)
{
	char *v;
	switch (c) {
	case C_UTF8:
		/* The first byte of the eventName value becomes a lone 0xFF. */
		v = value_of(rec, len, "eventName");
		assert_int_equal(*v, '"');
		v[1] = (char)0xff;
		return TH_REJECT_INVALID_UTF8;
	case C_TIMESTAMP:
		/* Month 13. */
		v = value_of(rec, len, "eventTime");
		assert_int_equal(v[5], '-');
		v[6] = '1';
		v[7] = '3';
		return TH_REJECT_BAD_TIMESTAMP;
	case C_MISSING:
		v = memmem(rec, len, "\"eventName\"", 11);
		assert_non_null(v);
		memcpy(v + 1, "eventNamX", 9);
		return TH_REJECT_MISSING_FIELD;
	case C_WRONG_TYPE: {
		/* "sts.amazonaws.com" -> ["ts.amazonaws.co"]: same length, an array. */
		v = value_of(rec, len, "eventSource");
		char *end = strchr(v + 1, '"');
		assert_non_null(end);
		v[0] = '[';
		v[1] = '"';
		end[-1] = '"';
		end[0] = ']';
		return TH_REJECT_WRONG_TYPE;
	}
	}
	return TH_REJECT_NONE;
}

/* Every Stratus record as one JSON line (pretty-printing only puts newlines
 * between tokens, so they become spaces), with bad records among them. */
static void test_corrupted_jsonl(void **state)
{
	struct seen *all = seen_new(true);
	DIR *d = opendir(STRATUS_DIR);
	struct dirent *de;
	(void)state;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		char path[1024];
		if (!is_json_file(de->d_name))
			continue;
		snprintf(path, sizeof(path), "%s/%s", STRATUS_DIR, de->d_name);
		run_file(path, all);
	}
	closedir(d);
	assert_int_equal(all->nev, STRATUS_EVENTS);
	assert_int_equal(all->nrej, 0);

	static const struct {
		int record;
		int kind; /* enum corruption, or -1 truncate, -2 garbage line before it */
	} bad[] = {
		{3, C_UTF8}, {40, -1}, {41, C_TIMESTAMP}, {100, C_MISSING},
		{101, -2}, {200, C_WRONG_TYPE}, {250, -1}, {309, -1},
	};
	struct {
		uint64_t offset;
		enum th_reject why;
	} want[TH_ARRAY_SIZE(bad)];
	size_t cap = 0, n = 0;
	for (int i = 0; i < all->nev; i++)
		cap += all->ev[i].len + 64;
	char *out = malloc(cap);
	assert_non_null(out);
	int lost = 0;
	for (int i = 0; i < all->nev; i++) {
		char *rec = all->ev[i].raw;
		size_t len = all->ev[i].len;
		for (size_t j = 0; j < len; j++)
			if (rec[j] == '\n' || rec[j] == '\r')
				rec[j] = ' ';
		for (size_t b = 0; b < TH_ARRAY_SIZE(bad); b++) {
			if (bad[b].record != i)
				continue;
			want[b].offset = n;
			if (bad[b].kind == -2) {
				static const char junk[] = "-- log rotated --\n";
				memcpy(out + n, junk, sizeof(junk) - 1);
				n += sizeof(junk) - 1;
				want[b].why = TH_REJECT_MALFORMED_JSON;
			} else if (bad[b].kind == -1) {
				/* Cut in a string value: half the record. The last one is the
				 * end of the file, without a newline. */
				len /= 2;
				want[b].why = TH_REJECT_MALFORMED_JSON;
				lost++;
			} else {
				want[b].why = corrupt(rec, len, (enum corruption)bad[b].kind);
				lost++;
			}
		}
		memcpy(out + n, rec, len);
		n += len;
		if (i + 1 < all->nev)
			out[n++] = '\n';
	}

	char path[512];
	snprintf(path, sizeof(path), "%s/stratus-corrupted.jsonl", tmpdir);
	write_all(path, out, n);
	struct seen *s = seen_new(false);
	run_file(path, s);
	if (s->nrej != (int)TH_ARRAY_SIZE(bad))
		dump(path, s);
	assert_int_equal(s->nev, STRATUS_EVENTS - lost);
	assert_int_equal(s->nrej, TH_ARRAY_SIZE(bad));
	for (size_t b = 0; b < TH_ARRAY_SIZE(bad); b++) {
		if (s->rej[b].why != want[b].why || s->rej[b].offset != want[b].offset)
			dump(path, s);
		assert_int_equal(s->rej[b].why, want[b].why);
		assert_int_equal(s->rej[b].offset, want[b].offset);
	}
	seen_free(s);
	seen_free(all);
	free(out);
}

/* The largest Stratus file as it is (one pretty-printed array) with bad
 * records inside: invalid UTF-8 makes simdjson refuse the whole array, so the
 * structural fallback has to judge each record on its own. */
static void test_corrupted_array(void **state)
{
	static const struct {
		int record;
		enum corruption kind;
	} bad[] = {{0, C_TIMESTAMP}, {7, C_UTF8}, {20, C_MISSING}, {21, C_WRONG_TYPE}, {55, C_UTF8}};
	struct seen *orig = seen_new(false);
	size_t len;
	char *buf = read_all(BIG_FILE, &len);
	(void)state;

	run_file(BIG_FILE, orig);
	assert_int_equal(orig->nev, BIG_EVENTS);
	assert_int_equal(orig->nrej, 0);

	enum th_reject why[TH_ARRAY_SIZE(bad)];
	for (size_t b = 0; b < TH_ARRAY_SIZE(bad); b++) {
		int r = bad[b].record;
		why[b] = corrupt(buf + orig->ev[r].offset, orig->ev[r].len, bad[b].kind);
	}
	char path[512];
	snprintf(path, sizeof(path), "%s/ssm-send-command-corrupted.json", tmpdir);
	write_all(path, buf, len);

	struct seen *s = seen_new(false);
	run_file(path, s);
	if (s->nrej != (int)TH_ARRAY_SIZE(bad))
		dump(path, s);
	assert_int_equal(s->nev, BIG_EVENTS - (int)TH_ARRAY_SIZE(bad));
	assert_int_equal(s->nrej, TH_ARRAY_SIZE(bad));
	for (size_t b = 0; b < TH_ARRAY_SIZE(bad); b++) {
		assert_int_equal(s->rej[b].why, why[b]);
		assert_int_equal(s->rej[b].offset, orig->ev[bad[b].record].offset);
	}
	seen_free(s);

	/* The same file cut in the middle of its last record (a partial copy):
	 * every complete record is still parsed, the cut one is reported. */
	int last = BIG_EVENTS - 1;
	size_t cut = (size_t)orig->ev[last].offset + orig->ev[last].len / 2;
	snprintf(path, sizeof(path), "%s/ssm-send-command-cut.json", tmpdir);
	write_all(path, buf, cut);
	s = seen_new(false);
	run_file(path, s);
	if (s->nrej != (int)TH_ARRAY_SIZE(bad))
		dump(path, s);
	/* Records 0..54 minus the four corrupted among them. */
	assert_int_equal(s->nev, BIG_EVENTS - 1 - ((int)TH_ARRAY_SIZE(bad) - 1));
	assert_int_equal(s->nrej, TH_ARRAY_SIZE(bad));
	assert_int_equal(s->rej[TH_ARRAY_SIZE(bad) - 1].offset, orig->ev[last].offset);
	assert_int_equal(s->rej[TH_ARRAY_SIZE(bad) - 1].why, TH_REJECT_MALFORMED_JSON);
	seen_free(s);
	seen_free(orig);
	free(buf);
}

static size_t line_start(const char *buf, size_t off)
{
	while (off > 0 && buf[off - 1] != '\n')
		off--;
	return off;
}

/* Records cut short in the middle of the pretty-printed array (lines lost
 * in a copy): each costs that record only, because the split resyncs on the
 * next line with a record's indentation. */
static void test_cut_records_in_array(void **state)
{
	enum cut { HALF, IN_STRING, NO_CLOSING_LINE };
	static const struct {
		int record;
		enum cut how;
	} cuts[] = {{5, HALF}, {20, IN_STRING}, {40, NO_CLOSING_LINE}};
	struct seen *orig = seen_new(false);
	size_t len, n = 0, pos = 0;
	char *buf = read_all(BIG_FILE, &len);
	char *out = malloc(len + 16);
	uint64_t want[TH_ARRAY_SIZE(cuts)];
	(void)state;

	assert_non_null(out);
	run_file(BIG_FILE, orig);
	assert_int_equal(orig->nev, BIG_EVENTS);
	for (size_t c = 0; c < TH_ARRAY_SIZE(cuts); c++) {
		int r = cuts[c].record;
		size_t off = (size_t)orig->ev[r].offset, rlen = orig->ev[r].len, keep_to;
		want[c] = n + (off - pos);
		switch (cuts[c].how) {
		case HALF:
			keep_to = off + rlen / 2;
			break;
		case IN_STRING:
			keep_to = (size_t)(value_of(buf + off, rlen, "eventName") - buf) + 3;
			break;
		default:
			/* Drop the line holding the record's closing brace. */
			keep_to = line_start(buf, off + rlen - 1);
			break;
		}
		memcpy(out + n, buf + pos, keep_to - pos);
		n += keep_to - pos;
		if (cuts[c].how == NO_CLOSING_LINE) {
			pos = (size_t)((char *)memchr(buf + off + rlen, '\n', len - off - rlen) - buf) + 1;
		} else {
			out[n++] = '\n';
			pos = line_start(buf, (size_t)orig->ev[r + 1].offset);
		}
	}
	memcpy(out + n, buf + pos, len - pos);
	n += len - pos;

	char path[512];
	snprintf(path, sizeof(path), "%s/ssm-send-command-lines-lost.json", tmpdir);
	write_all(path, out, n);
	struct seen *s = seen_new(false);
	run_file(path, s);
	if (s->nrej != (int)TH_ARRAY_SIZE(cuts))
		dump(path, s);
	assert_int_equal(s->nev, BIG_EVENTS - (int)TH_ARRAY_SIZE(cuts));
	assert_int_equal(s->nrej, TH_ARRAY_SIZE(cuts));
	for (size_t c = 0; c < TH_ARRAY_SIZE(cuts); c++) {
		assert_int_equal(s->rej[c].why, TH_REJECT_MALFORMED_JSON);
		assert_int_equal(s->rej[c].offset, want[c]);
	}
	seen_free(s);
	seen_free(orig);
	free(out);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stratus_logs),
		cmocka_unit_test(test_lambda_shapes),
		cmocka_unit_test(test_lambda_fields),
		cmocka_unit_test(test_corrupted_jsonl),
		cmocka_unit_test(test_corrupted_array),
		cmocka_unit_test(test_cut_records_in_array),
	};
	return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}

/*
 * libFuzzer target for the alert encoders (src/avro_alert.c and the JSON
 * rendering in src/alert.c) on alerts whose strings are fuzzed: any length,
 * any bytes but NUL, invalid UTF-8 and multibyte characters cut anywhere.
 *
 * Input layout: 38 bytes of numbers (variation, times, counts, which
 * optional fields are NULL, how many evidence / API-call / action items),
 * then the strings, separated by NUL bytes; missing strings are "".
 *
 * Oracles: the Avro encoder succeeds for every valid severity (and refuses
 * an unknown one with TH_EAVRO); its output decodes with avro-c's reader
 * against schemas/alert.avsc into exactly the numbers and valid UTF-8
 * strings written, and into valid UTF-8 for the invalid ones (the encoders
 * repair them); the JSON rendering is always valid JSON.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "trailhound/avro_alert.h"

#define NSTR 32
#define SCHEMA_ID 7

static const char *const severities[] = {"Informational", "Low", "Medium", "High"};

struct cursor {
	const uint8_t *p;
	size_t n;
};

static uint64_t take(struct cursor *c, size_t bytes)
{
	uint64_t v = 0;
	for (size_t i = 0; i < bytes; i++) {
		v = v << 8 | (c->n ? *c->p : 0);
		if (c->n)
			c->p++, c->n--;
	}
	return v;
}

static struct th_avro_alert *aa;
static char schema[1024];
static struct th_wbuf avro, json;

/* Free what the process keeps, so LeakSanitizer reports only real leaks. */
static void teardown(void)
{
	th_avro_alert_destroy(aa);
	fuzz_avro_check_free();
	th_wbuf_free(&avro);
	th_wbuf_free(&json);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cursor c = {data, size};
	struct th_alert a;
	const char *s[NSTR], *actions[9];
	char *text = NULL;
	char err[512];
	int rc;

	if (!aa) {
		th_log_level = 0; /* the refused-severity case logs an error */
		snprintf(schema, sizeof(schema), "%s/alert.avsc", TH_SCHEMA_DIR);
		if (th_avro_alert_new(&aa, schema, SCHEMA_ID, err, sizeof(err)))
			fuzz_fail("%s", err);
		atexit(teardown);
	}
	memset(&a, 0, sizeof(a));
	a.variation = (int)(take(&c, 1) % 8);
	unsigned sev = (unsigned)take(&c, 1);
	a.event_time_ms = (int64_t)take(&c, 8);
	a.history.issued_ms = (int64_t)take(&c, 4) - (1LL << 31);
	a.history.first_seen_ms = (int64_t)take(&c, 4);
	a.history.last_seen_ms = (int64_t)take(&c, 4);
	a.history.inside_count = (uint32_t)take(&c, 2);
	a.history.outside_count = (uint32_t)take(&c, 2);
	a.history.distinct_ips = (uint32_t)take(&c, 1);
	a.asn = (uint32_t)take(&c, 4);
	a.input.partition = (int32_t)take(&c, 2) - 1;
	uint32_t nulls = (uint32_t)take(&c, 3); /* which optional strings are NULL */
	unsigned counts = (unsigned)take(&c, 2);
	a.n_evidence = (int)(counts % (TH_ALERT_MAX_EVIDENCE + 1));
	a.history.n_calls = (int)(counts / 16 % (TH_ALERT_MAX_CALLS + 1));
	int n_actions = (int)(counts / 512 % 9);

	/* The strings: an exact-size NUL-terminated copy of the rest. */
	if (!(text = malloc(c.n + 1)))
		fuzz_fail("out of memory");
	memcpy(text, c.p, c.n);
	text[c.n] = '\0';
	int ns = 0;
	for (char *t = text; ns < NSTR;) {
		s[ns++] = t;
		size_t l = strlen(t);
		if (t + l >= text + c.n)
			break;
		t += l + 1;
	}
	for (int i = ns; i < NSTR; i++)
		s[i] = "";

	snprintf(a.alert_id, sizeof(a.alert_id), "%.32s", s[0]);
	bool utf8 = fuzz_utf8_valid(a.alert_id, strlen(a.alert_id));
	for (int i = 1; i < NSTR; i++)
		utf8 = utf8 && fuzz_utf8_valid(s[i], strlen(s[i]));
	a.alert_name = s[1];
	a.description = s[2];
	a.tactic = s[3];
	a.account_id = s[4];
	a.role_arn = s[5];
	a.access_key_id = s[6];
	a.event_id = s[7];
	a.event_name = s[8];
	a.event_source = s[9];
	a.source_ip = s[10];
	a.network = s[11];
	a.history.origin = s[12];
	a.input.topic = s[13];
	a.input.offset = (int64_t)a.event_time_ms ^ 0x5555;
	/* the nullable ones */
	const char **opt[] = {&a.region, &a.function_name, &a.session_name, &a.as_org,
			      &a.source_aws_region, &a.user_agent, &a.vpc_endpoint_id,
			      &a.vpc_endpoint_account_id, &a.upgrade_of};
	for (size_t i = 0; i < sizeof(opt) / sizeof(opt[0]); i++)
		*opt[i] = nulls >> i & 1 ? NULL : s[14 + i];
	for (int i = 0; i < a.n_evidence; i++)
		a.evidence[i] = s[(23 + i) % NSTR];
	for (int i = 0; i < a.history.n_calls; i++)
		a.history.api_calls[i] = s[(i * 7 + 3) % NSTR];
	for (int i = 0; i < n_actions; i++)
		actions[i] = s[(31 - i) % NSTR];
	actions[n_actions] = NULL;
	/* never NULL: alert.h promises a NULL-terminated list (the JSON
	 * rendering relies on it; see FINDINGS.md) */
	a.actions = actions;

	bool valid_sev = sev % 5 < 4;
	a.severity = valid_sev ? severities[sev % 5] : s[22];
	if (!valid_sev) {
		for (int i = 0; i < 4; i++)
			valid_sev = valid_sev || strcmp(a.severity, severities[i]) == 0;
	}
	rc = th_avro_alert_encode(aa, &a, &avro);
	if (valid_sev) {
		if (rc)
			fuzz_fail("Avro encode failed: %s", th_strerror(rc));
		fuzz_avro_check(schema, &a, avro.p, avro.len, SCHEMA_ID);
	} else if (rc != TH_EAVRO) {
		fuzz_fail("Avro encode of severity \"%s\" returned %d, not TH_EAVRO", a.severity,
			  rc);
	}

	th_wbuf_reset(&json);
	th_alert_to_json(&a, &json);
	if (json.oom)
		fuzz_fail("JSON: out of memory");
	/* The rendering repairs invalid UTF-8 (alert.c), so it is always valid JSON. */
	if (!fuzz_json_valid((const char *)json.p, json.len))
		fuzz_fail("JSON rendering (strings %s UTF-8) is not valid JSON: %.*s",
			  utf8 ? "valid" : "invalid", (int)json.len, (const char *)json.p);
	free(text);
	return 0;
}

/*
 * Alert identity and JSON rendering (the `scan` output and the debugging
 * view of what goes to Kafka as Avro).
 */
#include "trailhound/alert.h"
#include "trailhound/event.h"
#include "trailhound/time.h"

#include <inttypes.h>
#include <stdbool.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

static void digest_str(EVP_MD_CTX *ctx, const char *s, bool sep)
{
	if (sep)
		EVP_DigestUpdate(ctx, "|", 1);
	if (s)
		EVP_DigestUpdate(ctx, s, strlen(s));
}

void th_alert_id(char out[TH_ALERT_ID_LEN + 1], int variation, const char *account,
		 const char *role_arn, const char *fn_or_session, uint32_t asn, const char *key)
{
	static const char hex[] = "0123456789abcdef";
	char num[32];
	unsigned char md[EVP_MAX_MD_SIZE] = {0};
	unsigned int mdlen = 0;
	/* Hashed piece by piece: the same bytes as the documented string, of
	 * any length, never cut into a colliding prefix. */
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		snprintf(num, sizeof(num), "trailhound/v1|%d", variation);
		digest_str(ctx, num, false);
		digest_str(ctx, account, true);
		digest_str(ctx, role_arn, true);
		digest_str(ctx, fn_or_session, true);
		snprintf(num, sizeof(num), "%" PRIu32, asn);
		digest_str(ctx, num, true);
		digest_str(ctx, key, true);
		EVP_DigestFinal_ex(ctx, md, &mdlen);
	}
	EVP_MD_CTX_free(ctx);
	for (int i = 0; i < TH_ALERT_ID_LEN / 2; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[TH_ALERT_ID_LEN] = '\0';
}

void th_json_put_string(struct th_wbuf *w, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)(s ? s : "");
	const unsigned char *end = p + strlen((const char *)p);
	th_put_u8(w, '"');
	while (p < end) {
		const unsigned char *run = p;
		size_t l;
		/* Runs of printable ASCII and whole valid UTF-8 characters go out
		 * as they are; an invalid byte becomes U+FFFD, so a strict
		 * consumer never drops the alert over one bad byte. */
		for (;;) {
			if (p >= end || *p == '"' || *p == '\\' || *p < 0x20)
				break;
			if (*p < 0x80) {
				p++;
				continue;
			}
			if (!(l = th_utf8_char_len(p, (size_t)(end - p))))
				break;
			p += l;
		}
		if (p > run)
			th_put_bytes(w, run, (size_t)(p - run));
		if (p >= end)
			break;
		char esc[7] = {'\\', 0};
		size_t n = 2;
		switch (*p) {
		case '"': esc[1] = '"'; break;
		case '\\': esc[1] = '\\'; break;
		case '\n': esc[1] = 'n'; break;
		case '\r': esc[1] = 'r'; break;
		case '\t': esc[1] = 't'; break;
		default:
			if (*p >= 0x80) {
				TH_PUT_LIT(w, "\\ufffd");
				p++;
				continue;
			}
			esc[1] = 'u';
			esc[2] = '0';
			esc[3] = '0';
			esc[4] = hex[*p >> 4];
			esc[5] = hex[*p & 15];
			n = 6;
		}
		th_put_bytes(w, esc, n);
		p++;
	}
	th_put_u8(w, '"');
}

static void put_lit(struct th_wbuf *w, const char *s)
{
	th_put_bytes(w, s, strlen(s));
}

static void kv_str(struct th_wbuf *w, const char *k, const char *v, int *first)
{
	if (!*first)
		th_put_u8(w, ',');
	*first = 0;
	th_json_put_string(w, k);
	th_put_u8(w, ':');
	if (v)
		th_json_put_string(w, v);
	else
		put_lit(w, "null");
}

static void kv_int(struct th_wbuf *w, const char *k, int64_t v, int *first)
{
	char num[32];
	if (!*first)
		th_put_u8(w, ',');
	*first = 0;
	th_json_put_string(w, k);
	snprintf(num, sizeof(num), ":%" PRId64, v);
	put_lit(w, num);
}

static void kv_time(struct th_wbuf *w, const char *k, int64_t ms, int *first)
{
	char ts[40];
	if (ms <= 0) {
		kv_str(w, k, NULL, first);
		return;
	}
	th_time_format(ms, ts, sizeof(ts));
	kv_str(w, k, ts, first);
}

static void kv_list(struct th_wbuf *w, const char *k, const char *const *v, int n, int *first)
{
	if (!*first)
		th_put_u8(w, ',');
	*first = 0;
	th_json_put_string(w, k);
	put_lit(w, ":[");
	for (int i = 0; (n < 0 ? v[i] != NULL : i < n); i++) {
		if (i)
			th_put_u8(w, ',');
		th_json_put_string(w, v[i]);
	}
	th_put_u8(w, ']');
}

void th_alert_to_json(const struct th_alert *a, struct th_wbuf *w)
{
	int first = 1, hf = 1;
	th_put_u8(w, '{');
	kv_str(w, "alert_id", a->alert_id, &first);
	kv_str(w, "alert_name", a->alert_name, &first);
	kv_int(w, "variation", a->variation, &first);
	kv_str(w, "severity", a->severity, &first);
	kv_str(w, "description", a->description, &first);
	kv_str(w, "tactic", a->tactic, &first);
	kv_str(w, "account_id", a->account_id, &first);
	kv_str(w, "region", a->region, &first);
	kv_str(w, "role_arn", a->role_arn, &first);
	kv_str(w, "function_name", a->function_name, &first);
	kv_str(w, "session_name", a->session_name, &first);
	kv_str(w, "access_key_id", a->access_key_id, &first);
	kv_str(w, "event_id", a->event_id, &first);
	kv_str(w, "event_name", a->event_name, &first);
	kv_str(w, "event_source", a->event_source, &first);
	kv_time(w, "event_time", a->event_time_ms, &first);
	kv_str(w, "source_ip", a->source_ip, &first);
	kv_str(w, "network", a->network, &first);
	kv_int(w, "asn", a->asn, &first);
	kv_str(w, "as_org", a->as_org, &first);
	kv_str(w, "source_aws_region", a->source_aws_region, &first);
	kv_str(w, "user_agent", a->user_agent, &first);
	kv_str(w, "vpc_endpoint_id", a->vpc_endpoint_id, &first);
	kv_str(w, "vpc_endpoint_account_id", a->vpc_endpoint_account_id, &first);
	kv_list(w, "evidence", a->evidence, a->n_evidence, &first);
	put_lit(w, ",\"history\":{");
	kv_str(w, "origin", a->history.origin, &hf);
	kv_time(w, "issued_at", a->history.issued_ms, &hf);
	kv_int(w, "inside_count", a->history.inside_count, &hf);
	kv_int(w, "outside_count", a->history.outside_count, &hf);
	kv_time(w, "first_seen", a->history.first_seen_ms, &hf);
	kv_time(w, "last_seen", a->history.last_seen_ms, &hf);
	kv_int(w, "distinct_ips", a->history.distinct_ips, &hf);
	kv_list(w, "api_calls", a->history.api_calls, a->history.n_calls, &hf);
	th_put_u8(w, '}');
	kv_list(w, "investigative_actions", a->actions, -1, &first);
	kv_str(w, "upgrade_of", a->upgrade_of, &first);
	put_lit(w, ",\"input\":{");
	hf = 1;
	kv_str(w, "topic", a->input.topic, &hf);
	kv_int(w, "partition", a->input.partition, &hf);
	kv_int(w, "offset", a->input.offset, &hf);
	th_put_bytes(w, "}}", 2);
}

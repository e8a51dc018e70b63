/*
 * The alert: one struct with every field of the spec's §4, built by the
 * detector and rendered by the sinks (JSON lines for `scan`, Avro for the
 * Kafka worker). Designed once; both encoders read the same struct.
 *
 * All strings are borrowed from the detector and valid only during the
 * on_alert callback.
 */
#ifndef TRAILHOUND_ALERT_H
#define TRAILHOUND_ALERT_H

#include <stdint.h>
#include <stdio.h>

#include "trailhound/codec.h"
#include "trailhound/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TH_ALERT_MAX_EVIDENCE 8
#define TH_ALERT_MAX_CALLS 16
#define TH_ALERT_ID_LEN 32

struct th_alert {
	char alert_id[TH_ALERT_ID_LEN + 1];
	int variation; /* 1..6, the row of the spec's table */
	const char *alert_name, *severity, *description, *tactic;
	const char *account_id, *region, *role_arn, *function_name, *session_name, *access_key_id;
	const char *event_id, *event_name, *event_source;
	int64_t event_time_ms;
	const char *source_ip, *as_org, *source_aws_region, *user_agent;
	const char *vpc_endpoint_id, *vpc_endpoint_account_id;
	uint32_t asn;
	const char *network; /* "public", "aws", "private", "vpc-endpoint" */
	const char *evidence[TH_ALERT_MAX_EVIDENCE];
	int n_evidence;
	struct {
		const char *origin; /* how the key is known: issued-by-lambda, ... */
		int64_t issued_ms, first_seen_ms, last_seen_ms;
		uint32_t inside_count, outside_count, distinct_ips;
		const char *api_calls[TH_ALERT_MAX_CALLS];
		int n_calls;
	} history;
	const char *const *actions; /* the seed's investigative actions, NULL-terminated */
	const char *upgrade_of;     /* alert_id of the weaker alert this one upgrades, or NULL */
	struct {
		const char *topic; /* Kafka topic, or the input file for scan */
		int32_t partition;
		int64_t offset;
	} input;
};

/**
 * @brief The deterministic alert ID: first 32 hex digits of SHA-256 of
 *        "trailhound/v1|<variation>|<account>|<role>|<function or session>|<asn>|<key>".
 */
void th_alert_id(char out[TH_ALERT_ID_LEN + 1], int variation, const char *account,
		 const char *role_arn, const char *fn_or_session, uint32_t asn, const char *key);

/** @brief Render an alert as one JSON object (no newline) into @p w. */
void th_alert_to_json(const struct th_alert *a, struct th_wbuf *w);

/** @brief Append a JSON string literal (quoted, escaped) to @p w. */
void th_json_put_string(struct th_wbuf *w, const char *s);

#ifdef __cplusplus
}
#endif

#endif

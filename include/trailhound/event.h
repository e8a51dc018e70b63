/*
 * The CloudTrail event parser: one JSON record in, a struct th_event with the
 * fields the detector needs out, or a reason why the record was rejected.
 *
 * The parsing itself is a thin C++ shim over simdjson On-Demand (src/event.cpp);
 * everything else sees this C interface. Strings in a parsed event are
 * NUL-terminated copies owned by the th_parser and valid until the next
 * th_parser_parse() call on the same parser (or its destruction).
 */
#ifndef TRAILHOUND_EVENT_H
#define TRAILHOUND_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "trailhound/common.h"

#ifdef __cplusplus
extern "C" {
#endif


/* Bytes of readable memory the parser needs after a record (simdjson). */
#define TH_PARSE_PADDING 64
/* Default per-record size limit. */
#define TH_RECORD_MAX_DEFAULT (1024 * 1024)
/* Default max_future_skew (spec v2 §5): how far past the wall clock an
 * eventTime may lie before the event is rejected as out of range. */
#define TH_MAX_FUTURE_SKEW_DEFAULT_MS (3600LL * 1000)
/* CloudTrail's launch, 2013-11-01T00:00:00Z: no real event is older. */
#define TH_EVENT_TIME_MIN_MS 1383264000000LL

/* Why a record was rejected. The names (th_reject_name) are the metric labels. */
enum th_reject {
	TH_REJECT_NONE = 0,
	TH_REJECT_MALFORMED_JSON, /* not valid JSON (syntax, truncation) */
	TH_REJECT_INVALID_UTF8,   /* bytes that are not UTF-8 */
	TH_REJECT_TOO_LARGE,      /* over the record size limit */
	TH_REJECT_WRONG_TYPE,     /* a known field with a type CloudTrail never uses */
	TH_REJECT_MISSING_FIELD,  /* eventTime, eventSource or eventName absent */
	TH_REJECT_BAD_TIMESTAMP,  /* eventTime not an ISO-8601 UTC time */
	TH_REJECT_NOT_CLOUDTRAIL, /* valid JSON but not a CloudTrail event or envelope */
	TH_REJECT_EVENT_TIME_OUT_OF_RANGE, /* before CloudTrail existed or too far ahead */
	TH_REJECT_IDENTIFIER_TOO_LONG,     /* an identifier longer than AWS allows */
	TH_REJECT_INVALID_IDENTIFIER,      /* an identifier of a shape AWS never writes */
	TH_REJECT_PROCESSING_FAILED,       /* parsed, but processing failed repeatedly */
	TH_REJECT__COUNT
};
const char *th_reject_name(enum th_reject r);

struct th_event {
	int64_t event_time_ms; /* eventTime, ms since the epoch (UTC) */
	const char *event_time;
	const char *event_id; /* eventID; synthesized from the record's hash when absent */
	const char *event_source, *event_name, *aws_region, *source_ip, *user_agent;
	const char *recipient_account_id, *error_code;
	const char *vpc_endpoint_id, *vpc_endpoint_account_id;
	struct {
		const char *type, *arn, *account_id, *access_key_id, *invoked_by, *principal_id;
		const char *session_issuer_arn; /* sessionContext.sessionIssuer.arn */
		const char *session_issuer_account_id; /* sessionContext.sessionIssuer.accountId */
		const char *creation_date;      /* sessionContext.attributes.creationDate */
		int64_t creation_ms;            /* 0 when absent or unparsable */
	} ui;
	struct {
		const char *role_arn, *role_session_name, *role, *function_name;
	} req;
	struct {
		const char *access_key_id, *expiration; /* responseElements.credentials */
		int64_t expiration_ms;                  /* 0 when absent or unparsable */
	} cred;
};

struct th_parser;

/** @brief Create a parser. @returns 0 or TH_ENOMEM. Free with th_parser_destroy(). */
int th_parser_new(struct th_parser **pp, size_t record_max);
void th_parser_destroy(struct th_parser *p);

/**
 * @brief Set how far ahead of the wall clock an eventTime may be (spec v2 §5);
 *        later events are rejected as TH_REJECT_EVENT_TIME_OUT_OF_RANGE, as are
 *        events before TH_EVENT_TIME_MIN_MS. 0 disables the future bound (the
 *        lower bound always holds). A new parser uses TH_MAX_FUTURE_SKEW_DEFAULT_MS.
 *        This bound is the only place the parser reads the wall clock.
 */
void th_parser_set_max_future_skew(struct th_parser *p, int64_t ms);

/** @brief The per-record size limit the parser was created with. */
size_t th_parser_record_max(const struct th_parser *p);

/**
 * @brief Parse one CloudTrail event record.
 * @param buf the record's JSON; TH_PARSE_PADDING readable bytes must follow buf+len.
 * @param ev filled on success; its strings belong to @p p.
 * @param why set to the rejection reason on failure.
 * @param detail optional buffer for a human-readable detail of the failure.
 * @returns 0, or TH_EPARSE with @p why set.
 */
int th_parser_parse(struct th_parser *p, const char *buf, size_t len, struct th_event *ev,
		    enum th_reject *why, char *detail, size_t detail_size);

/** @brief The account an event belongs to: userIdentity.accountId, else recipientAccountId. */
const char *th_event_account(const struct th_event *ev);

/** @brief The session name of an AssumedRole ARN (after the last '/'), or NULL. */
const char *th_event_session_name(const struct th_event *ev);

/* ---- time ---- */

/**
 * @brief Parse an ISO-8601 UTC timestamp ("2023-07-10T12:25:32Z", optional
 *        fractional seconds, "Z" or "+00:00") to ms since the epoch.
 * @returns 0 or TH_EPARSE.
 */
int th_time_parse_iso(const char *s, size_t len, int64_t *ms);
/**
 * @brief Parse an STS expiration as CloudTrail writes it ("Jul 10, 2023, 2:25:32 PM",
 *        also without the comma after the year) or an ISO-8601 time.
 * @returns 0 or TH_EPARSE.
 */
int th_time_parse_expiration(const char *s, size_t len, int64_t *ms);
/** @brief Format ms since the epoch as "YYYY-MM-DDTHH:MM:SS[.mmm]Z" into buf (>= 25 bytes). */
void th_time_format(int64_t ms, char *buf, size_t size);

#ifdef __cplusplus
}
#endif

#endif

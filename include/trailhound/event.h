/*
 * The CloudTrail event: the fields of one record that the detector needs,
 * as the parser (parser.h) fills them, and derived views of it (src/event.c).
 *
 * Strings in a parsed event are NUL-terminated copies owned by the
 * th_parser and valid until the next th_parser_parse() call on the same
 * parser (or its destruction).
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


struct th_event {
	int64_t event_time_ms; /* eventTime, ms since the epoch (UTC) */
	const char *event_time;
	const char *event_id; /* eventID; synthesized from the record's hash when absent */
	const char *event_source, *event_name, *aws_region, *source_ip, *user_agent;
	const char *recipient_account_id, *error_code;
	/* errorMessage: beside errorCode on a refused call, alone on a failed
	 * console sign-in (ConsoleLogin logs no errorCode) */
	const char *error_message;
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

/** @brief The account an event belongs to: userIdentity.accountId, else recipientAccountId. */
const char *th_event_account(const struct th_event *ev);

/** @brief The session name of an AssumedRole ARN (after the last '/'), or NULL. */
const char *th_event_session_name(const struct th_event *ev);

#ifdef __cplusplus
}
#endif

#endif

/*
 * The CloudTrail event parser: one JSON record in, a struct th_event with the
 * fields the detector needs out, or a reason why the record was rejected; and
 * th_parser_feed(), which takes one top-level JSON value (a record, an S3 log
 * object, an array, an EventBridge envelope) to the records in it.
 *
 * The parsing itself is a thin C++ shim over simdjson On-Demand
 * (src/parser.cpp); everything else sees this C interface.
 */
#ifndef TRAILHOUND_PARSER_H
#define TRAILHOUND_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "trailhound/common.h"
#include "trailhound/event.h"

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

/**
 * @brief Set the delivery time of the log file being read (the timestamp in
 *        its S3 name, th_archive_s3_name), or INT64_MIN when it is unknown (a
 *        new parser's setting). CloudTrail delivers a record after it was
 *        written, so an eventTime later than @p delivered_ms by more than
 *        max_future_skew is rejected as TH_REJECT_EVENT_TIME_OUT_OF_RANGE, as
 *        one past the wall clock is. 0 skew disables this bound too.
 */
void th_parser_set_delivered(struct th_parser *p, int64_t delivered_ms);

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

/* Where the records go. Both callbacks borrow their arguments for the call only. */
struct th_sink {
	/* A parsed event; raw/raw_len is the record's original JSON. Return
	 * non-zero to stop reading (e.g. on a fatal downstream error). */
	int (*on_event)(void *ctx, const struct th_event *ev, const char *raw, size_t raw_len,
			uint64_t offset);
	/* A rejected record: reason, human detail, and the raw bytes (may be
	 * truncated to what was framed). */
	void (*on_reject)(void *ctx, enum th_reject why, const char *detail, const char *raw,
			  size_t raw_len, uint64_t offset);
	void *ctx;
};

/**
 * @brief Split one complete top-level JSON value into events.
 * @param buf the value; TH_PARSE_PADDING readable bytes must follow buf+len.
 * @param offset byte offset of buf in its input (for error reports).
 * @returns 0, or the non-zero value an on_event callback returned.
 */
int th_parser_feed(struct th_parser *p, const char *buf, size_t len, uint64_t offset,
		   const struct th_sink *sink);

#ifdef __cplusplus
}
#endif

#endif

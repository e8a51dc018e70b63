/*
 * Input framing: turns bytes into CloudTrail event records.
 *
 * A top-level JSON value is an event, an S3 log object {"Records":[...]}, an
 * array of events, or an EventBridge envelope ("detail-type": "AWS API Call
 * via CloudTrail", event under "detail"). th_parser_feed() (parser.h) handles
 * one such value (a Kafka message); th_input_* reads files or stdin holding a stream of
 * values separated by whitespace (JSON lines and pretty-printed files alike),
 * gzip-compressed or not, and feeds every value through the same path.
 *
 * Bad input never stops the stream: each rejected record is reported through
 * the sink's on_reject with its byte offset and reason, and framing resyncs at
 * the next line that starts a JSON value. Memory stays bounded whatever the
 * input (see src/input.c).
 */
#ifndef TRAILHOUND_INPUT_H
#define TRAILHOUND_INPUT_H

#include <stdint.h>
#include <stdio.h>

#include "trailhound/parser.h"

#ifdef __cplusplus
extern "C" {
#endif


/**
 * @brief Find the end of the JSON value starting at p (structure only: strings,
 *        escapes and bracket depth; no validation of scalars).
 * @returns the byte after the value, or NULL when the value is not complete
 *          within [p, end) or a raw newline occurs inside a string.
 */
const char *th_json_skip_value(const char *p, const char *end);

/**
 * @brief Structural fallback for a top-level object or array that simdjson
 *        rejected as a whole: finds the elements of its "Records" array (or of
 *        the array itself) and parses each on its own, so one bad record does not
 *        cost its neighbours.
 * @returns 1 when it recognised a container and delivered its elements, 0 when
 *          the value is not a container (the caller rejects it as a whole),
 *          or the non-zero value an on_event callback returned (as a negative).
 */
int th_split_container(struct th_parser *p, const char *buf, size_t len, uint64_t offset,
		       const struct th_sink *sink);

struct th_input;

/**
 * @brief Open a file ("-" = stdin); gzip is detected automatically.
 * @param doc_max last bound on a top-level value held in memory; 0 = 256 MiB.
 *        Values are in practice bounded by the parser's record_max (plus 64 KiB
 *        of envelope): containers stream record by record, and a longer record
 *        is rejected and skipped without being buffered.
 * @returns 0, or TH_ENOTFOUND / TH_EIO / TH_EINVAL (a directory) with errstr set.
 */
int th_input_open(struct th_input **inp, const char *path, size_t doc_max, char *errstr,
		  size_t errstr_size);
void th_input_close(struct th_input *in);

/**
 * @brief Read the whole input, feeding every top-level value to th_parser_feed().
 * @returns 0 at end of input, TH_EIO on a read error (decompression included),
 *          or the non-zero value an on_event callback returned.
 */
int th_input_run(struct th_input *in, struct th_parser *p, const struct th_sink *sink);

/** @brief Compressed bytes consumed so far (for progress). */
uint64_t th_input_bytes_read(const struct th_input *in);

#ifdef __cplusplus
}
#endif

#endif

/*
 * The alert as Avro (schemas/alert.avsc) in the Confluent wire format: byte
 * 0x00, the 4-byte big-endian schema id, then the Avro binary body. This is
 * what the Kafka worker produces and what `scan --avro-out` writes, so any
 * Confluent-compatible consumer (Java KafkaAvroDeserializer, Python
 * AvroDeserializer, fastavro after stripping 5 bytes) reads our alerts.
 *
 * Also a minimal Schema Registry client, used once at start-up to get the id
 * when it is not configured.
 *
 * Ownership: th_avro_alert_new() allocates; th_avro_alert_destroy() frees.
 * A struct th_avro_alert reuses one Avro value and one buffer for every
 * record, so it is not thread-safe: one per thread.
 */
#ifndef TRAILHOUND_AVRO_ALERT_H
#define TRAILHOUND_AVRO_ALERT_H

#include <stddef.h>
#include <stdint.h>

#include "trailhound/alert.h"
#include "trailhound/codec.h"
#include "trailhound/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TH_AVRO_HEADER_LEN 5 /* 0x00 magic + big-endian int32 schema id */

struct th_avro_alert;

/**
 * @brief Load and parse the alert schema, and check that it has every field
 *        of struct th_alert with a compatible type.
 * @param aap         receives the encoder
 * @param schema_path alert.avsc (config `alert_schema`)
 * @param schema_id   the id written in each message header
 * @returns 0, or with errstr set: TH_ENOTFOUND (no such file), TH_EIO (read
 *          error), TH_ETOOBIG (file over 1 MiB), TH_EAVRO (not a valid schema,
 *          or a field missing or of the wrong type), TH_ENOMEM.
 */
int th_avro_alert_new(struct th_avro_alert **aap, const char *schema_path, int32_t schema_id,
		      char *errstr, size_t errstr_size);

/** @brief Free the encoder; NULL is a no-op. */
void th_avro_alert_destroy(struct th_avro_alert *aa);

/** @brief Change the schema id written in headers (after registering the schema). */
void th_avro_alert_set_schema_id(struct th_avro_alert *aa, int32_t schema_id);

/**
 * @brief Reset @p w and write one Confluent-framed message for @p a into it.
 *
 * NULL strings are written as null in nullable fields and as "" elsewhere;
 * history.issued_at <= 0 is written as null (as the JSON rendering does).
 * @returns 0, TH_EAVRO (a severity not in the Severity enum, or an avro-c
 *          failure; logged with avro-c's message) or TH_ENOMEM.
 */
int th_avro_alert_encode(struct th_avro_alert *aa, const struct th_alert *a, struct th_wbuf *w);

/** @brief The schema file's text as loaded (what to register); owned by @p aa. */
const char *th_avro_alert_schema_json(const struct th_avro_alert *aa);

#ifdef __cplusplus
}
#endif

#endif

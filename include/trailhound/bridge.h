/*
 * The S3-to-Kafka bridge (`trailhound bridge`): CloudTrail log files announced
 * on SQS (S3 event notifications, the same inside SNS, or CloudTrail's own SNS
 * message), or listed from the archive (--backfill), are fetched with a signed
 * S3 GET, decompressed as a stream with a size cap and published one message
 * per event, keyed by the credential owner's account (th_event_account) with
 * the murmur2 partitioner, as `trailhound produce` does.
 *
 * Exactly once per file: one Kafka transaction holds a file's events (and its
 * rejected records, sent to the dead-letter topic with reason headers as the
 * worker does) plus a marker record keyed "s3://bucket/key@ETag" in a
 * compacted ledger topic. The SQS message is deleted only after the commit; a
 * redelivered or re-listed file whose marker exists is skipped (markers are
 * read, read_committed, at start and caught up before every file). While a
 * file is in flight the messages' visibility timeout is extended. A file that
 * cannot be read (HTTP error, corrupt gzip, over the size cap) is reported and
 * left on the queue; once its message was received bridge_max_receives times
 * it is dead-lettered (reason file_unreadable) and the message deleted.
 */
#ifndef TRAILHOUND_BRIDGE_H
#define TRAILHOUND_BRIDGE_H

#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "trailhound/config.h"

#ifdef __cplusplus
extern "C" {
#endif

struct th_bridge_opts {
	const char *backfill;   /* "s3://bucket/prefix": list and publish, then exit */
	int64_t since_ms;       /* backfill: files delivered at most this long ago; 0 = all */
	long exit_when_idle_ms; /* live: exit after this long without a message; 0 = never */
	int wait_s;             /* SQS long-poll wait, 0..20 (default 20) */
};

struct th_bridge_stats {
	uint64_t files, events, rejected, skipped, unreadable, dead_lettered, messages;
};

/**
 * @brief Run the bridge until *run is 0, idle (exit_when_idle_ms) or, with
 *        backfill, the listing is done. @returns 0, TH_EIO (backfill: some
 *        files could not be read), TH_EINVAL (a bad --backfill URL),
 *        TH_ECONFIG (configuration, or AWS refused the credentials or
 *        signature) or TH_EFATAL (Kafka fatal error); `bridge` maps them to
 *        exit codes 3, 2, 4 and 5.
 */
int th_bridge_run(const struct th_config *cf, const struct th_bridge_opts *o,
		  volatile sig_atomic_t *run, struct th_bridge_stats *stats);

/**
 * @brief A new configuration with the producer settings `produce` and the
 *        bridge share: idempotence, the murmur2 partitioner (the Java client's,
 *        so an account lands on the same partition whoever produced it), lz4,
 *        then the kafka.* / kafka.producer.* pass-through (th_kafka_conf_new()).
 * @returns the configuration, or NULL with errstr set.
 */
rd_kafka_conf_t *th_bridge_producer_conf(const struct th_config *cf, char *errstr,
					 size_t errstr_size);

/**
 * @brief The delivery time in a CloudTrail log file's name
 *        (ACCT_CloudTrail_REGION_YYYYMMDDTHHMMZ_RAND.json.gz), ms since the epoch.
 * @returns 0, or TH_EPARSE when the name has no such timestamp.
 */
int th_bridge_key_time(const char *key, int64_t *ms);
/** @brief Whether a key is a digest or Insights file (never published). */
bool th_bridge_key_skipped(const char *key);
/**
 * @brief Whether a key is a CloudTrail log file, the only objects the live
 *        bridge and the backfill publish: a CloudTrail file name with its
 *        delivery time (th_bridge_key_time()) inside a CloudTrail/ folder, not a
 *        digest or Insights file. @p delivered_ms (may be NULL) receives the time.
 */
bool th_bridge_key_is_log(const char *key, int64_t *delivered_ms);

#ifdef __cplusplus
}
#endif

#endif

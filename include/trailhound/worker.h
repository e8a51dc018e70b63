/*
 * The Kafka stream worker (`trailhound run`): one member of a consumer group
 * that reads CloudTrail topics, runs the detector per input partition and
 * produces Avro alerts with exactly-once semantics.
 *
 * The loop follows librdkafka's examples/transactions.c: one transactional
 * producer per worker (stable transactional.id, consumer group metadata sent
 * with the offsets, KIP-447); a transaction per batch, committed
 * commit_interval_ms after its first message (batch_size is only a cap):
 * the loop consumes and processes while the transaction is open and never
 * flushes or waits per message; abortable errors abort, rewind to the
 * committed offsets and roll back the partitions' state; fatal errors (e.g.
 * fenced by a newer instance) end th_worker_run() with TH_EFATAL, and
 * `trailhound run` exits 5.
 *
 * State follows its partition as in Kafka Streams: one LMDB environment per
 * input partition; each transaction's coalesced state changes also go to a
 * compacted changelog topic (co-partitioned with the input) inside the same
 * transaction; LMDB commits, with the input offset, only after Kafka commits.
 * On assignment a store whose offset differs from the group's committed
 * offset, or that th_state_open() cannot trust, is wiped and restored from
 * the changelog (read_committed).
 *
 * Errors (as examples/transactions.c): an abortable error, or a retriable
 * one from send_offsets_to_transaction, aborts, rewinds and rolls back; a
 * retriable commit error retries the commit; anything fatal (fenced
 * producer, fatal consumer error such as a fenced static member, a rewind
 * that cannot read the committed offsets) returns TH_EFATAL, for the
 * supervisor to restart the process. A lost assignment aborts the open
 * transaction. A disk full at the LMDB commit (after Kafka committed) pauses
 * consumption and retries the commit until space returns.
 */
#ifndef TRAILHOUND_WORKER_H
#define TRAILHOUND_WORKER_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "trailhound/config.h"
#include "trailhound/parser.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Phases of the loop whose wall time is measured (stats.phase_ms, and the
 * [stats] line's time.<phase>_ms), in this order: consume, detect, produce,
 * changelog, send_offsets, commit, lmdb, begin. */
#define TH_WORKER_PHASES 8

/* What a run did (filled in when th_worker_run returns, if asked for). */
struct th_worker_stats {
	uint64_t messages;     /* processed (including reprocessing after an abort) */
	uint64_t alerts;       /* produced (including in transactions later aborted) */
	uint64_t transactions; /* committed */
	uint64_t aborts;       /* transactions aborted (and the input rewound) */
	uint64_t lost;         /* assignments lost with a transaction open */
	uint64_t disk_full;    /* times a state commit found the disk full */
	uint64_t restores;     /* partitions restored from the changelog */
	uint64_t rejects_by[TH_REJECT__COUNT];
	uint64_t phase_ms[TH_WORKER_PHASES]; /* cumulative wall time per phase */
};

struct th_worker_opts {
	/* Exit once every assigned partition is caught up and nothing arrived
	 * for this long (ms); 0 = run until signalled. */
	long exit_when_idle_ms;
	/* With exit_when_idle_ms: before exiting, decide every held use as at end
	 * of input (what `scan` does), so a finite replay matches `scan`. */
	bool drain;
	/* A message whose processing fails this many times in a row (each
	 * failure aborts the transaction and rewinds) is dead-lettered as
	 * processing_failed instead of processed again; 0 = 3. */
	int max_attempts;
	/* Disk full: retry the pending state commit this often (ms); 0 = 5000. */
	long disk_retry_ms;
	/* Timeout of each transactional API call (ms); 0 = 30000. */
	long txn_timeout_ms;
	/* Optional: receives the run's counters. */
	struct th_worker_stats *stats;
	/* Tests only (fault injection): called before each input message is
	 * processed; a non-zero return makes its processing fail. */
	int (*test_hook)(void *ctx, const char *topic, int32_t partition, int64_t offset);
	void *test_ctx;
};

/**
 * @brief Whether the kafka.* settings leave the worker's clients what
 *        exactly-once rests on (read_committed, no auto commit, partition
 *        EOF), as `run` checks at its start. For --check-config.
 * @returns 0, or TH_ECONFIG with errstr naming the setting.
 */
int th_worker_check_kafka_settings(const struct th_config *cf, char *errstr, size_t errstr_size);

/**
 * @brief Run the worker until @p *run becomes 0 (signal) or, with
 *        exit_when_idle_ms, until caught up.
 * @returns 0 on a clean stop, TH_ECONFIG on a configuration error, or
 *          TH_EFATAL on a runtime failure (fenced, fatal Kafka error, state
 *          store) for the supervisor to restart (`run` exits 4 or 5).
 */
int th_worker_run(const struct th_config *cf, const struct th_worker_opts *opts,
		  volatile sig_atomic_t *run);

#ifdef __cplusplus
}
#endif

#endif

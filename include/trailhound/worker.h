/*
 * The Kafka stream worker (`trailhound run`): one member of a consumer group
 * that reads CloudTrail topics, runs the detector per input partition and
 * produces Avro alerts with exactly-once semantics.
 *
 * The loop follows librdkafka's examples/transactions.c: one transactional
 * producer per worker (stable transactional.id, consumer group metadata sent
 * with the offsets, KIP-447); a transaction per batch (at most batch_size
 * messages or commit_interval_ms); abortable errors abort, rewind to the
 * committed offsets and roll back the partitions' state; fatal errors (e.g.
 * fenced by a newer instance) end the worker with a non-zero exit code.
 *
 * State follows its partition as in Kafka Streams: one LMDB environment per
 * input partition; each transaction's coalesced state changes also go to a
 * compacted changelog topic (co-partitioned with the input) inside the same
 * transaction; LMDB commits, with the input offset, only after Kafka commits.
 * On assignment a store whose offset differs from the group's committed
 * offset is wiped and restored from the changelog (read_committed).
 */
#ifndef TRAILHOUND_WORKER_H
#define TRAILHOUND_WORKER_H

#include <signal.h>
#include <stdbool.h>

#include "trailhound/config.h"

#ifdef __cplusplus
extern "C" {
#endif

struct th_worker_opts {
	/* Exit once every assigned partition is caught up and nothing arrived
	 * for this long (ms); 0 = run until signalled. */
	long exit_when_idle_ms;
	/* With exit_when_idle_ms: before exiting, decide every held use as at end
	 * of input (what `scan` does), so a finite replay matches `scan`. */
	bool drain;
};

/**
 * @brief Run the worker until @p *run becomes 0 (signal) or, with
 *        exit_when_idle_ms, until caught up.
 * @returns a TH_EXIT_* code: 0 clean stop, 4 configuration error, 5 runtime
 *          failure (fenced, fatal Kafka error, state store) for the
 *          supervisor to restart.
 */
int th_worker_run(const struct th_config *cf, const struct th_worker_opts *opts,
		  volatile sig_atomic_t *run);

#ifdef __cplusplus
}
#endif

#endif

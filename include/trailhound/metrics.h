/*
 * Prometheus metrics, /healthz and /readyz of the stream worker (src/metrics.c),
 * served by libmicrohttpd on its own thread when `metrics_listen` is set.
 * The names are a contract with deploy/ (dashboard, alert rules): see
 * docs/operations.md; all are prefixed trailhound_.
 *
 * One registry per process (there is one worker per process). The worker
 * feeds it through these hooks: counters are relaxed atomics (one add on
 * the hot path, no lock), the per-partition tables (lag, state size) are
 * snapshots swapped under a mutex that the worker holds only to copy a few
 * hundred bytes, so a scrape never blocks the worker loop and the worker
 * never waits on a slow scraper (the HTTP thread formats from copies).
 */
#ifndef TRAILHOUND_METRICS_H
#define TRAILHOUND_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "trailhound/event.h"
#include "trailhound/parser.h"

#ifdef __cplusplus
extern "C" {
#endif

enum th_counter {
	TH_M_EVENTS_CONSUMED,      /* input messages consumed */
	TH_M_EVENTS_PARSED,        /* events handed to the detector */
	TH_M_TXN_COMMITTED,
	TH_M_TXN_ABORTED,
	TH_M_RESTORE_RECORDS,      /* changelog records restored */
	TH_M_RESTORE_SKIPPED,      /* ... and skipped: a key no worker writes */
	TH_M_SUPPRESSED_ACTIVATION, /* set, not added: the detectors' own counters */
	TH_M_DEDUPLICATED,
	TH_M_HELD_EXPIRED,
	TH_M_REFERENCE_RELOADED,     /* reference data loaded again after its files changed */
	TH_M_REFERENCE_RELOAD_FAILED, /* ... or not: the worker kept what it had */
	/* the bridge's (trailhound bridge); shown only once one was counted */
	TH_M_BRIDGE_FILES_PUBLISHED, /* S3 objects published, each in its transaction */
	TH_M_BRIDGE_FILES_SKIPPED,   /* published before (the ledger names them) */
	TH_M_BRIDGE_FILES_UNREADABLE, /* an attempt that could not read the object */
	TH_M_BRIDGE_DEAD_LETTERED,   /* files and notifications given up on */
	TH_M_BRIDGE_MESSAGES,        /* SQS messages received */
	TH_M__COUNTERS
};

enum th_gauge {
	TH_G_HELD_PENDING,
	TH_G_PARTITIONS_ASSIGNED,
	TH_G_ASSIGNMENT_HELD,   /* 1 from an assignment (even of no partition) to its revoke */
	TH_G_PARTITIONS_RESTORING,
	TH_G_ASN_DB_BUILT,      /* the loaded reference data's dates (Unix seconds; 0 = none) */
	TH_G_AWS_RANGES_CREATED,
	TH_G__COUNT
};

/* Commit-latency histogram bounds (seconds), le="+Inf" implied. */
#define TH_METRICS_COMMIT_BUCKETS 12

/** @brief Add @p n to a counter (relaxed atomic; any thread). */
void th_metrics_add(enum th_counter c, uint64_t n);
/** @brief Set a counter computed elsewhere (it must only grow). */
void th_metrics_set_counter(enum th_counter c, uint64_t v);
uint64_t th_metrics_get(enum th_counter c);
void th_metrics_set_gauge(enum th_gauge g, int64_t v);
int64_t th_metrics_get_gauge(enum th_gauge g);
void th_metrics_reject(enum th_reject why);
/** @brief One alert produced: @p variation 1..6, @p severity as in the alert. */
void th_metrics_alert(int variation, const char *severity);
/*
 * Alerts and rejects produced inside a Kafka transaction count only once it
 * commits: an aborted batch is processed again, and counting both would
 * report alerts and dead letters no read_committed consumer ever sees.
 * Staged ones wait in a tally until th_metrics_staged_commit() adds them to
 * the counters or th_metrics_staged_discard() drops them (the abort). One
 * thread only (the worker's loop, or the bridge's).
 */
void th_metrics_staged_alert(int variation, const char *severity);
void th_metrics_staged_reject(enum th_reject why);
void th_metrics_staged_commit(void);
void th_metrics_staged_discard(void);
/** @brief One commit_transaction() that took @p seconds. */
void th_metrics_commit_seconds(double seconds);
/** @brief The loop is alive (for /healthz): call at least every few seconds. */
void th_metrics_heartbeat(void);
/** @brief Alive but unable to work (credentials expired): /healthz 503 until the next heartbeat. */
void th_metrics_unhealthy(void);
/** @brief Whether a broker answered lately (from statistics and errors). */
void th_metrics_broker_up(bool up);

/* State size of one assigned partition. */
struct th_metrics_part {
	char topic[256];
	int32_t partition;
	int64_t state_bytes;
};
/** @brief Replace the per-partition table (copied). */
void th_metrics_set_parts(const struct th_metrics_part *parts, int n);

/**
 * @brief Feed one librdkafka statistics JSON document (the consumer's
 *        stats_cb): consumer lag per partition and broker states.
 * @returns 0 or TH_EPARSE.
 */
int th_metrics_feed_stats(const char *json, size_t len);
/**
 * @brief Total consumer lag over the partitions the last statistics showed.
 * @returns the number of partitions with a known lag (0: none known yet).
 */
int th_metrics_total_lag(int64_t *lag);

/** @brief Whether /readyz answers 200 now. */
bool th_metrics_ready(void);
/** @brief Whether /healthz answers 200 now. */
bool th_metrics_healthy(void);

/**
 * @brief The text exposition (format 0.0.4) of every metric, malloc'd.
 * @returns 0 or TH_ENOMEM.
 */
int th_metrics_render(char **out, size_t *len);

/**
 * @brief Serve /metrics, /healthz and /readyz on @p listen ("host:port",
 *        "[v6]:port" or ":port" for every address). @p stale_s: /healthz
 *        fails when the loop has not beaten for this long.
 * @returns 0, or TH_ECONFIG (bad address, port taken) with errstr set.
 */
int th_metrics_start(const char *listen, double stale_s, char *errstr, size_t errstr_size);
/**
 * @brief Whether th_metrics_start() would accept @p listen as an address
 *        (syntax, a port in 1..65535, the host resolves); binds nothing.
 * @returns 0, or TH_ECONFIG with errstr set.
 */
int th_metrics_check_listen(const char *listen, char *errstr, size_t errstr_size);
void th_metrics_stop(void);
/**
 * @brief This process is `trailhound bridge`: serve its series
 *        (trailhound_bridge_*) from now on, at 0 until counted. Rules and
 *        dashboards tell the bridge from the workers by them, and a counter
 *        born with its first count hides that count from increase().
 */
void th_metrics_serve_bridge(void);
/** @brief Zero every metric (tests, and a worker started again in-process). */
void th_metrics_reset(void);

#ifdef __cplusplus
}
#endif

#endif

/*
 * Private to metrics.c: the reader of librdkafka's statistics JSON, in a thin
 * C++ file because simdjson is a C++ library. Nothing crosses this boundary
 * but strings, ints and a callback.
 */
#ifndef TRAILHOUND_METRICS_STATS_H
#define TRAILHOUND_METRICS_STATS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Called for each partition (>= 0) of each topic whose lag is known:
 * consumer_lag_stored, else consumer_lag, else (an active partition with
 * nothing committed) ls_offset - lo_offset; librdkafka writes -1 for
 * unknown, and partitions not fetched are skipped. */
typedef void th_stats_lag_cb(void *ctx, const char *topic, int32_t partition, int64_t lag);

/**
 * @brief Walk a statistics document: lag per partition, and *brokers_up =
 *        how many brokers are in state "UP".
 * @returns 0 or TH_EPARSE / TH_ENOMEM.
 */
int th_stats_parse(const char *json, size_t len, th_stats_lag_cb *cb, void *ctx,
		   int *brokers_up);

#ifdef __cplusplus
}
#endif

#endif

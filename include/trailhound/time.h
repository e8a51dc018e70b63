/*
 * Exact timestamp parsing and formatting for CloudTrail's times (src/time.c):
 * all detection time comes from event fields, never from the wall clock.
 */
#ifndef TRAILHOUND_TIME_H
#define TRAILHOUND_TIME_H

#include <stddef.h>
#include <stdint.h>

#include "trailhound/common.h"

#ifdef __cplusplus
extern "C" {
#endif

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

/*
 * `trailhound run --check-config` (src/check_config.c): validates what the
 * worker needs without joining the group or consuming: brokers reachable,
 * input topics exist, the changelog exists with exactly as many partitions
 * as the input and is compacted, state_dir is writable, the reference data
 * and the alert schema load. Each check prints one "ok" or "FAIL" line; then
 * the effective configuration with secrets masked.
 */
#ifndef TRAILHOUND_CHECK_H
#define TRAILHOUND_CHECK_H

#include <stdio.h>

#include "trailhound/config.h"

#ifdef __cplusplus
extern "C" {
#endif

/** @returns 0 when every check passed, else TH_ECONFIG. */
int th_config_check(struct th_config *cf, FILE *out);

#ifdef __cplusplus
}
#endif

#endif

/*
 * The detector: learns Lambda credentials, roles, functions and baselines
 * from a stream of CloudTrail events and classifies every remote use of a
 * Lambda role's credentials into one of the six variations of "Remote usage
 * of AWS Lambda's token" (../shared/spec/detection.md; the exact rules are in
 * docs/detections.md).
 *
 * One detector serves one state store (one partition). All time comes from
 * eventTime. Alerts go to the on_alert callback as they are decided.
 *
 * Ownership: th_detector_new() borrows @p en and @p st (they must outlive the
 * detector) and copies @p conf. Free with th_detector_destroy().
 */
#ifndef TRAILHOUND_DETECT_H
#define TRAILHOUND_DETECT_H

#include <stdbool.h>
#include <stdint.h>

#include "trailhound/alert.h"
#include "trailhound/enrich.h"
#include "trailhound/event.h"
#include "trailhound/state.h"
#include "trailhound/variation.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TH_DAY_MS (24LL * 3600 * 1000)
#define TH_MAX_LIST 32

struct th_detect_conf {
	int64_t activation_ms; /* default 14 days */
	int64_t training_ms;   /* default 30 days */
	int64_t dedup_ms;      /* default 7 days */
	int64_t role_retention_ms; /* a learned role is pruned once not seen for this long, or
				      for training_ms or 30 days if longer (default 365
				      days; 0 keeps roles for ever) */
	int64_t hold_ms;       /* late attribution: hold a key's remote use this long after
				  its creationDate (default 12 h, the longest Lambda session);
				  also the longest credential lifetime believed (a
				  creationDate or expiration further off is not) */
	/* User-agent families of command-line tools (variation 2): a UA matches
	 * when it contains the pattern; "^x" means "starts with x". A UA with
	 * "exec-env/" never matches (the CLI running inside Lambda). */
	const char *cli_user_agents[TH_MAX_LIST];
	int n_cli_user_agents;
	/* UAs that claim Lambda's runtime or AWS-internal callers (variation 1). */
	const char *lambda_user_agents[TH_MAX_LIST];
	int n_lambda_user_agents;
	uint32_t trusted_asns[TH_MAX_LIST * 8];
	int n_trusted_asns;
	/* The variations to try, in order (variation.h); NULL: the builtin
	 * th_variations. Borrowed: must outlive the detector. */
	const struct th_variation *variations;
	size_t n_variations;
};

/** @brief Fill @p conf with the spec's defaults. */
void th_detect_conf_defaults(struct th_detect_conf *conf);

/* Where the event came from, for the alert's traceability fields. */
struct th_input_ref {
	const char *topic; /* Kafka topic or input file name */
	int32_t partition;
	int64_t offset;
};

struct th_detect_stats {
	uint64_t events, candidates, inside_uses, remote_uses, excluded;
	uint64_t source_unrecognised; /* sourceIPAddress neither an address nor a service name */
	uint64_t held, held_resolved, held_expired;
	uint64_t held_pending; /* keys whose held uses wait for a decision now */
	uint64_t alerts[TH_VARIATION_MAX + 1]; /* by variation id, [0] unused */
	uint64_t upgrades;
	uint64_t suppressed_activation, suppressed_dedup;
	uint64_t pruned;
};

typedef int (*th_alert_fn)(void *ctx, const struct th_alert *alert);

struct th_detector;

/** @returns 0, TH_ENOMEM, or TH_EINVAL for a variation table th_variations_check() refuses. */
int th_detector_new(struct th_detector **dp, const struct th_detect_conf *conf,
		    const struct th_enrich *en, struct th_state *st, th_alert_fn on_alert,
		    void *ctx);
void th_detector_destroy(struct th_detector *d);

/**
 * @brief Learn from and classify one event.
 * @returns 0, TH_ESTATE / TH_ENOMEM, or the non-zero value on_alert returned.
 */
int th_detector_process(struct th_detector *d, const struct th_event *ev,
			const struct th_input_ref *ref);

/**
 * @brief Age state by event time: expire held uses (classifying those whose
 *        role became Lambda's), prune tokens, baselines and dedup entries that
 *        fell out of their windows. Called by the detector itself as event time
 *        advances; call with @p final at end of input to decide every held use.
 */
int th_detector_advance(struct th_detector *d, bool final);

/**
 * @brief Write the detector's in-memory bookkeeping (its event-time clock) to
 *        the store. Call right before every th_state_commit().
 */
int th_detector_checkpoint(struct th_detector *d);

/** @brief Drop in-memory state derived from uncommitted events (after a rollback). */
void th_detector_reset(struct th_detector *d);
/**
 * @brief Judge addresses by @p en from the next event on (reference data
 *        reloaded): forgets the addresses enriched by the one before. The
 *        caller keeps @p en alive while the detector uses it.
 */
void th_detector_set_enrich(struct th_detector *d, const struct th_enrich *en);

void th_detector_get_stats(const struct th_detector *d, struct th_detect_stats *out);

#ifdef __cplusplus
}
#endif

#endif

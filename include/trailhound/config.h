/*
 * Configuration: one table (src/config.c) of every setting with its type,
 * default, bounds and description, in the style of redis' static_configs.
 * `--help-config`, the example config (deploy/trailhound.conf) and the parser
 * all come from that table. Unknown keys are an error, except `kafka.*`,
 * which pass verbatim to librdkafka (as kcat's -X does).
 *
 * File format: one `key = value` per line; `#` starts a comment; values may
 * be quoted; lists are comma-separated.
 *
 * Ownership: th_config_init() fills defaults; th_config_free() releases what
 * th_config_set()/th_config_load() allocated.
 */
#ifndef TRAILHOUND_CONFIG_H
#define TRAILHOUND_CONFIG_H

#include <stdbool.h>
#include <stdio.h>

#include "trailhound/detect.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TH_CONF_MAX_KAFKA 64
#define TH_CONF_MAX_TOPICS 16

struct th_config {
	struct th_detect_conf detect;
	/* reference data */
	char *asn_db, *aws_ranges;
	long reference_check_s; /* run: how often to look for new reference data; 0 = never */
	uint32_t amazon_asns[64]; /* empty = the built-in table */
	int n_amazon_asns;
	/* parser: eventTime bound ahead of the wall clock, ms; 0 = none (spec v2 §5) */
	int64_t max_future_skew_ms;
	/* the Kafka worker (`run`) */
	char *brokers;
	char *group_id;
	char *input_topics[TH_CONF_MAX_TOPICS];
	int n_input_topics;
	char *output_topic, *changelog_topic, *dead_letter_topic;
	char *transactional_id;
	char *state_dir;
	long batch_size;         /* messages per transaction, at most */
	long commit_interval_ms; /* time per transaction, at most */
	long commit_max_changes; /* changed state records per transaction, about at most */
	long record_max;
	long schema_id;          /* Confluent wire-format schema id; 0 = register */
	char *schema_registry_url;
	char *alert_schema;      /* path to alert.avsc */
	long restore_timeout_ms;
	/* the S3-to-Kafka bridge (`bridge`, src/bridge.c) */
	char *aws_region, *aws_endpoint, *bridge_queue_url, *bridge_ledger_topic;
	char *bridge_transactional_id;
	long bridge_max_receives, bridge_object_max_mb, bridge_visibility_s;
	int64_t bridge_ledger_retention_ms; /* markers of older files not loaded; 0 = all */
	/* operations: the stop's bound (0 = none; watchdog.h), Prometheus
	 * endpoint ("" = off), log level and format */
	int64_t stop_timeout_ms;
	char *metrics_listen;
	char *log_level, *log_format;
	/* how many secret settings (th_config_is_secret) were set */
	int n_secrets;
	/* kafka.* pass-through, in order */
	char *kafka_keys[TH_CONF_MAX_KAFKA], *kafka_values[TH_CONF_MAX_KAFKA];
	int n_kafka;
	/* storage for list items (user agents) */
	char *owned[TH_MAX_LIST * 4];
	int n_owned;
};

/**
 * @brief The librdkafka property name of kafka.* setting i for a client of
 *        `scope` ("consumer", "producer", or another name for a client that
 *        takes only the unscoped kafka.X settings): kafka.X applies to every
 *        client, kafka.consumer.X / kafka.producer.X only to that scope.
 * @returns the name (without the scope prefix), or NULL when it does not apply.
 */
const char *th_config_kafka_key(const struct th_config *cf, int i, const char *scope);

/** @brief Defaults for every setting. */
void th_config_init(struct th_config *cf);
void th_config_free(struct th_config *cf);
/**
 * @brief Set one setting from "key=value" (or key, value).
 * @returns 0 or TH_ECONFIG with errstr set (unknown key, bad value, out of bounds).
 */
int th_config_set(struct th_config *cf, const char *key, const char *value, char *errstr,
		  size_t errstr_size);
int th_config_set_kv(struct th_config *cf, const char *kv, char *errstr, size_t errstr_size);
/**
 * @brief Read a config file. A file that sets a secret (th_config_is_secret)
 *        and that group or others may read or write is refused.
 * @returns 0, TH_ENOTFOUND or TH_ECONFIG (errstr names the line, never a
 *          line's text that may hold a secret).
 */
int th_config_load(struct th_config *cf, const char *path, char *errstr, size_t errstr_size);
/**
 * @brief Whether a setting holds a secret (kafka.*password*, *secret*,
 *        ssl.key.pem, sasl.oauthbearer.config, ...): its value is never
 *        printed or logged, and a config file holding one must be private.
 */
bool th_config_is_secret(const char *key);
/**
 * @brief Apply TRAILHOUND_<SETTING> variables of @p envp (upper case, '.'
 *        written "__": TRAILHOUND_METRICS_LISTEN, TRAILHOUND_KAFKA__SASL__PASSWORD).
 *        An unknown setting or a bad value is an error (a typo must not be
 *        silently ignored). @returns 0 or TH_ECONFIG with errstr set.
 */
int th_config_apply_env(struct th_config *cf, char *const *envp, char *errstr,
			size_t errstr_size);
/**
 * @brief After the file and the --set options: apply the environment
 *        (th_config_apply_env), then @p sets ("key=value") again so the
 *        command line wins (file < environment < --set), then configure the
 *        log (log_level, log_format). @returns 0 or TH_ECONFIG with errstr set.
 */
int th_config_apply_overrides(struct th_config *cf, char *const *envp, char *const *sets,
			      int n_sets, char *errstr, size_t errstr_size);
/** @brief Print the effective configuration, secrets masked as "***". */
void th_config_print(const struct th_config *cf, FILE *out);
/**
 * @brief Open the reference data named by asn_db / aws_ranges (falling back to
 *        $TH_ASN_DB / $TH_AWS_RANGES). @returns as th_enrich_new().
 */
int th_config_open_enrich(struct th_config *cf, struct th_enrich **en, char *errstr,
			  size_t errstr_size);
/** @brief The alert schema path: alert_schema, or the one this build ships. */
const char *th_config_alert_schema(const struct th_config *cf);
/** @brief Print every setting with its default and description (--help-config). */
void th_config_help(FILE *out);
/**
 * @brief Print an example config file with every setting at its default, or at
 *        the value one of @p sets ("KEY=VALUE", as --set) gives it; kafka.*
 *        sets are printed as settings too. Each set is checked as --set checks
 *        it (an unknown setting or a bad value prints nothing).
 * @returns 0, or TH_ECONFIG with @p errstr naming the set.
 */
int th_config_example(FILE *out, char *const *sets, int n_sets, char *errstr,
		      size_t errstr_size);

#ifdef __cplusplus
}
#endif

#endif

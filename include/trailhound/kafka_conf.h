/*
 * A librdkafka client's configuration from trailhound's settings: the one
 * place the worker's clients, the bridge's and `produce`'s get the broker
 * list, their own defaults and the kafka.* settings of their scope.
 */
#ifndef TRAILHOUND_KAFKA_CONF_H
#define TRAILHOUND_KAFKA_CONF_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

#include "trailhound/config.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * @brief A new client configuration: trailhound's log sink, bootstrap.servers
 *        from `brokers`, then @p defaults (name, value, ..., NULL), then the
 *        kafka.* settings that apply to @p scope (th_config_kafka_key()), which
 *        may override the defaults.
 * @returns the configuration (the caller owns it), or NULL with errstr set
 *          when librdkafka refuses a property.
 */
rd_kafka_conf_t *th_kafka_conf_new(const struct th_config *cf, const char *scope,
				   const char *const *defaults, char *errstr, size_t errstr_size);

/**
 * @brief th_kafka_conf_new(), and then the properties of @p locked (name,
 *        value, ..., NULL) must have these values: a kafka.* setting of the
 *        scope that changes one is refused, naming it and @p why, rather than
 *        silently changing what the caller relies on.
 * @returns the configuration, or NULL with errstr set.
 */
rd_kafka_conf_t *th_kafka_conf_new_locked(const struct th_config *cf, const char *scope,
					  const char *const *defaults,
					  const char *const *locked, const char *why,
					  char *errstr, size_t errstr_size);

#ifdef __cplusplus
}
#endif

#endif

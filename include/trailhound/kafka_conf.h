/*
 * A librdkafka client's configuration from trailhound's settings: the one
 * place the worker's clients, the bridge's and `produce`'s get the broker
 * list, their own defaults and the kafka.* settings of their scope; and
 * th_kafka_watermarks(), the watermark query they share.
 */
#ifndef TRAILHOUND_KAFKA_CONF_H
#define TRAILHOUND_KAFKA_CONF_H

#include <stddef.h>
#include <stdint.h>

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

/**
 * @brief A partition's low and high watermarks (the earliest offset and the
 *        next to be written), asked of its leader, in at most @p timeout_ms.
 *        rd_kafka_query_watermark_offsets() does the same but, in librdkafka
 *        before 2.3.0 (Debian's 2.0.2), never returns while the leader's
 *        broker cannot be reached, whatever its timeout (librdkafka #2588,
 *        fixed by #4460): a worker or bridge in it stops answering SIGTERM
 *        and its liveness probe until the broker is back. This asks the
 *        same through rd_kafka_offsets_for_times() (earliest and latest),
 *        which keeps its timeout. @p lo or @p hi NULL: not asked (one
 *        round trip fewer).
 * @returns RD_KAFKA_RESP_ERR_NO_ERROR, or the error (__TIMED_OUT, ...).
 */
rd_kafka_resp_err_t th_kafka_watermarks(rd_kafka_t *rk, const char *topic, int32_t partition,
					int64_t *lo, int64_t *hi, int timeout_ms);

#ifdef __cplusplus
}
#endif

#endif

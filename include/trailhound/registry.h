/*
 * The Schema Registry client: registers the alert schema (schemas/alert.avsc)
 * with a Confluent-compatible registry to get the id that frames every Avro
 * alert (avro_alert.h). Setup time only; blocking.
 */
#ifndef TRAILHOUND_REGISTRY_H
#define TRAILHOUND_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "trailhound/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * @brief Register @p schema_json under @p subject with a Confluent-compatible
 *        Schema Registry (POST {url}/subjects/{subject}/versions) and return
 *        its id. Registering an already registered schema returns the
 *        existing id, so this is safe at every start-up.
 *
 * Blocking, with a 5 s connect and 10 s total timeout; call it at setup only.
 * @p registry_url may carry user:password@ for basic auth; it is never
 * copied into errstr.
 * @returns 0, TH_ECONFIG (transport error, non-2xx reply, or no id in the
 *          reply; errstr says which) or TH_ENOMEM.
 */
int th_registry_register(const char *registry_url, const char *subject, const char *schema_json,
			  int32_t *id, char *errstr, size_t errstr_size);

#ifdef __cplusplus
}
#endif

#endif

/*
 * Logging (src/log.c): the th_log_err/warn/info/debug(component, fmt, ...)
 * macros of common.h write one line per call to stderr, as text
 * ("<ts> LEVEL [component] msg") or, with log_format = "json", as JSON lines
 * ({"ts","level","msg","fields":{"component"}}) for log shippers. The level
 * is the `log_level` setting (error, warn, info, debug).
 *
 * Secrets never reach a log line: values registered with
 * th_log_add_secret() (the config does this for every secret setting) are
 * masked as "***" in every line, whatever produced the text.
 */
#ifndef TRAILHOUND_LOG_H
#define TRAILHOUND_LOG_H

#include <stdarg.h>
#include <stddef.h>

#include "trailhound/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** @returns the TH_LOG_* level named (error, warn, info, debug) or TH_EINVAL. */
int th_log_parse_level(const char *name);
/**
 * @brief Set the level and the format ("text" or "json"); NULL or "" keeps
 *        the current one. @returns 0 or TH_ECONFIG with errstr set.
 */
int th_log_configure(const char *level, const char *format, char *errstr, size_t errstr_size);
void th_log_set_json(int on);
/** @brief Mask @p value in every later log line. @returns 0 or TH_ENOMEM (list full). */
int th_log_add_secret(const char *value);
void th_log_clear_secrets(void);
/** @brief Mask the registered secrets in @p buf in place. @returns its new length. */
size_t th_log_mask(char *buf);
void th_log_vwrite(int level, const char *component, const char *fmt, va_list ap);

/* librdkafka's log callback (rd_kafka_conf_set_log_cb): its lines go
 * through this sink too (level, format, masking). */
struct rd_kafka_s;
void th_log_rdkafka(const struct rd_kafka_s *rk, int level, const char *fac, const char *buf);

#ifdef __cplusplus
}
#endif

#endif

/*
 * The log sink shared by all modules (common.h's th_log_* macros): levelled,
 * as text lines or JSON lines for log shippers, on stderr.
 *
 * Secrets: every value of a secret setting (th_config_is_secret) is handed
 * to th_log_add_secret() when it is set, and any occurrence of one in a log
 * line is replaced by "***" before the line is written. The call sites do
 * not log secrets in the first place (config errors name the key, never a
 * secret's value); this is the net under them, for texts we do not control
 * (librdkafka's log and error strings).
 */
#include "trailhound/log.h"

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

int th_log_level = TH_LOG_INFO;

#define MAX_SECRETS 32
/* Shorter values would mask ordinary words ("a", "on"): a secret that short
 * is no secret anyway. */
#define MIN_SECRET_LEN 4

static struct {
	bool json;
	pthread_mutex_t lock; /* the secrets list, and one line at a time */
	char *secrets[MAX_SECRETS];
	int n_secrets;
} L = {.lock = PTHREAD_MUTEX_INITIALIZER};

static const char *level_name(int level)
{
	switch (level) {
	case TH_LOG_ERR: return "error";
	case TH_LOG_WARN: return "warn";
	case TH_LOG_INFO: return "info";
	case TH_LOG_DEBUG: return "debug";
	default: return "log";
	}
}

int th_log_parse_level(const char *name)
{
	static const struct {
		const char *name;
		int level;
	} names[] = {{"error", TH_LOG_ERR}, {"err", TH_LOG_ERR},     {"warn", TH_LOG_WARN},
		     {"warning", TH_LOG_WARN}, {"info", TH_LOG_INFO}, {"debug", TH_LOG_DEBUG}};
	for (size_t i = 0; name && i < TH_ARRAY_SIZE(names); i++)
		if (strcasecmp(name, names[i].name) == 0)
			return names[i].level;
	return TH_EINVAL;
}

int th_log_configure(const char *level, const char *format, char *errstr, size_t errstr_size)
{
	if (level && *level) {
		int lv = th_log_parse_level(level);
		if (lv < 0) {
			th_errstr(errstr, errstr_size,
				  "log_level: \"%s\" is not one of error, warn, info, debug", level);
			return TH_ECONFIG;
		}
		th_log_level = lv;
	}
	if (format && *format) {
		if (strcmp(format, "json") != 0 && strcmp(format, "text") != 0) {
			th_errstr(errstr, errstr_size, "log_format: \"%s\" is not text or json",
				  format);
			return TH_ECONFIG;
		}
		L.json = strcmp(format, "json") == 0;
	}
	return 0;
}

void th_log_set_json(int on)
{
	L.json = on != 0;
}

int th_log_add_secret(const char *value)
{
	int rc = 0;
	if (!value || strlen(value) < MIN_SECRET_LEN)
		return 0;
	pthread_mutex_lock(&L.lock);
	for (int i = 0; i < L.n_secrets; i++)
		if (strcmp(L.secrets[i], value) == 0)
			goto out;
	if (L.n_secrets >= MAX_SECRETS) {
		rc = TH_ENOMEM;
		goto out;
	}
	if (!(L.secrets[L.n_secrets] = strdup(value))) {
		rc = TH_ENOMEM;
		goto out;
	}
	L.n_secrets++;
out:
	pthread_mutex_unlock(&L.lock);
	return rc;
}

void th_log_clear_secrets(void)
{
	pthread_mutex_lock(&L.lock);
	for (int i = 0; i < L.n_secrets; i++)
		free(L.secrets[i]);
	L.n_secrets = 0;
	pthread_mutex_unlock(&L.lock);
}

/* Replace every registered secret in buf (NUL-terminated, size cap) by "***"
 * in place; the text only gets shorter. Caller holds L.lock. */
static void mask_secrets(char *buf)
{
	for (int i = 0; i < L.n_secrets; i++) {
		size_t n = strlen(L.secrets[i]);
		char *p;
		while ((p = strstr(buf, L.secrets[i]))) {
			memcpy(p, "***", 3);
			memmove(p + 3, p + n, strlen(p + n) + 1);
		}
	}
}

size_t th_log_mask(char *buf)
{
	pthread_mutex_lock(&L.lock);
	mask_secrets(buf);
	pthread_mutex_unlock(&L.lock);
	return strlen(buf);
}

/* JSON string body of s (no quotes) into out; cut when out is full. */
static void json_escape(char *out, size_t cap, const char *s)
{
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p && o + 7 < cap; p++) {
		unsigned char c = *p;
		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c == '\n') {
			out[o++] = '\\';
			out[o++] = 'n';
		} else if (c == '\t') {
			out[o++] = '\\';
			out[o++] = 't';
		} else if (c < 0x20 || c == 0x7f) {
			o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
		} else {
			out[o++] = (char)c;
		}
	}
	out[o] = '\0';
}

void th_log_vwrite(int level, const char *component, const char *fmt, va_list ap)
{
	char msg[4096], ts[40];
	struct timespec now;
	struct tm tm;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	pthread_mutex_lock(&L.lock);
	mask_secrets(msg);
	if (L.json) {
		/* escaping may grow the text up to 6x; what does not fit is cut */
		char emsg[8192], ecomp[256];
		char day[24];
		strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
		snprintf(ts, sizeof(ts), "%s.%03ldZ", day, now.tv_nsec / 1000000);
		json_escape(emsg, sizeof(emsg), msg);
		json_escape(ecomp, sizeof(ecomp), component ? component : "");
		fprintf(stderr,
			"{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"%s\",\"fields\":{\"component\":"
			"\"%s\"}}\n",
			ts, level_name(level), emsg, ecomp);
	} else {
		static const char *names[] = {[TH_LOG_ERR] = "ERROR",
					      [TH_LOG_WARN] = "WARN",
					      [TH_LOG_INFO] = "INFO",
					      [TH_LOG_DEBUG] = "DEBUG"};
		strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
		fprintf(stderr, "%s %s [%s] %s\n", ts,
			level >= 0 && level <= TH_LOG_DEBUG && names[level] ? names[level] : "LOG",
			component ? component : "", msg);
	}
	pthread_mutex_unlock(&L.lock);
}

void th_log_write(int level, const char *component, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	th_log_vwrite(level, component, fmt, ap);
	va_end(ap);
}

void th_log_rdkafka(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	/* librdkafka's levels are syslog's, like ours; 5 (notice) is info */
	int lv = level <= TH_LOG_ERR ? TH_LOG_ERR : level == TH_LOG_WARN ? TH_LOG_WARN
					      : level <= TH_LOG_INFO ? TH_LOG_INFO : TH_LOG_DEBUG;
	(void)rk;
	if (lv <= th_log_level)
		th_log_write(lv, "kafka", "%s: %s", fac, buf);
}

/*
 * Error strings and the log sink shared by all modules.
 */
#include "trailhound/common.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int th_log_level = TH_LOG_INFO;

const char *th_strerror(int err)
{
	switch (err) {
	case TH_OK: return "success";
	case TH_EINVAL: return "invalid argument or input";
	case TH_ENOMEM: return "out of memory";
	case TH_EIO: return "input/output error";
	case TH_ENOTFOUND: return "not found";
	case TH_EPARSE: return "malformed input";
	case TH_ETOOBIG: return "input over the configured limit";
	case TH_ESTATE: return "state store failure";
	case TH_EKAFKA: return "Kafka client failure";
	case TH_EAVRO: return "Avro encoding failure";
	case TH_ECONFIG: return "bad configuration";
	case TH_EFATAL: return "unrecoverable error";
	case TH_ENOSPC: return "no space left on device";
	case TH_EUNTRUSTED: return "state store cannot be trusted (rebuild it)";
	default:
		if (err < 0 && err > -1000)
			return strerror(-err);
		return "unknown error";
	}
}

void th_errstr(char *errstr, size_t errstr_size, const char *fmt, ...)
{
	va_list ap;
	if (!errstr || !errstr_size)
		return;
	va_start(ap, fmt);
	vsnprintf(errstr, errstr_size, fmt, ap);
	va_end(ap);
}

void th_log_write(int level, const char *component, const char *fmt, ...)
{
	static const char *names[] = {[TH_LOG_ERR] = "ERROR",
				      [TH_LOG_WARN] = "WARN",
				      [TH_LOG_INFO] = "INFO",
				      [TH_LOG_DEBUG] = "DEBUG"};
	char ts[32];
	struct timespec now;
	struct tm tm;
	va_list ap;

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
	fprintf(stderr, "%s %s [%s] ", ts,
		level >= 0 && level <= TH_LOG_DEBUG && names[level] ? names[level] : "LOG",
		component);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/*
 * Shared definitions for every trailhound module: error codes, logging and
 * small helpers.
 *
 * Return convention, one for the whole core library:
 *   - A function that can fail returns int: 0 on success, a negative TH_E*
 *     code (or -errno) otherwise; th_strerror() turns it into text. Setup
 *     functions also fill an errstr buffer (librdkafka's errstr, size).
 *   - A function that finds something returns a pointer (NULL: not there) or
 *     says so in an out-parameter; a question is answered with bool.
 *   - Where a lookup must tell "found" from "absent" from "failed" in one int
 *     it returns 1 / 0 / negative TH_E*, and says so in its comment
 *     (th_state_get's TH_ENOTFOUND is the public form of "absent").
 *   - A callback's non-zero return stops the walk that called it and is
 *     passed back unchanged.
 *   - Process exit codes (TH_EXIT_*) are not part of the core: only the
 *     command line (src/cmd.h) has them, mapped from these codes.
 */
#ifndef TRAILHOUND_COMMON_H
#define TRAILHOUND_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif


#define TH_VERSION "0.1.0"

/* Error codes. Values above -1000 are reserved for -errno pass-through. */
enum th_err {
	TH_OK = 0,
	TH_EINVAL = -1001,    /* invalid argument or input */
	TH_ENOMEM = -1002,    /* allocation failed */
	TH_EIO = -1003,       /* read/write failure */
	TH_ENOTFOUND = -1004, /* key or file not found */
	TH_EPARSE = -1005,    /* malformed input */
	TH_ETOOBIG = -1006,   /* input over a configured limit */
	TH_ESTATE = -1007,    /* state store failure (LMDB) */
	TH_EKAFKA = -1008,    /* Kafka client failure */
	TH_EAVRO = -1009,     /* Avro encoding failure */
	TH_ECONFIG = -1010,   /* bad configuration */
	TH_EFATAL = -1011,    /* unrecoverable; the process should exit */
	TH_ENOSPC = -1012,    /* disk full: nothing written, changes kept; retry later */
	TH_EUNTRUSTED = -1013, /* state store cannot be trusted: rebuild it */
};

/**
 * @brief Text for a TH_E* code (or a negative errno).
 * @returns a static string; never NULL.
 */
const char *th_strerror(int err);

/**
 * @brief Format a setup-time error message into errstr (NULL or size 0: no-op),
 *        the librdkafka `errstr, errstr_size` convention.
 */
void th_errstr(char *errstr, size_t errstr_size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Logging: levels follow syslog numbering. Macros check the level before
 * formatting so disabled levels cost one comparison on the hot path. */
enum th_log_level {
	TH_LOG_ERR = 3,
	TH_LOG_WARN = 4,
	TH_LOG_INFO = 6,
	TH_LOG_DEBUG = 7,
};
extern int th_log_level;
void th_log_write(int level, const char *component, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define th_log(level, comp, ...)                                               \
	do {                                                                   \
		if ((level) <= th_log_level)                                   \
			th_log_write((level), (comp), __VA_ARGS__);            \
	} while (0)
#define th_log_err(comp, ...) th_log(TH_LOG_ERR, comp, __VA_ARGS__)
#define th_log_warn(comp, ...) th_log(TH_LOG_WARN, comp, __VA_ARGS__)
#define th_log_info(comp, ...) th_log(TH_LOG_INFO, comp, __VA_ARGS__)
#define th_log_debug(comp, ...) th_log(TH_LOG_DEBUG, comp, __VA_ARGS__)

/**
 * @brief Copy at most @p len bytes of @p src into @p dst (size @p dst_size,
 *        always NUL-terminated when dst_size > 0), cutting on a UTF-8
 *        character boundary: when the text does not fit, the cut never
 *        leaves the lead bytes of a multibyte character without its
 *        continuation bytes, so valid UTF-8 in gives valid UTF-8 out (spec v2
 *        §5: alert text is valid UTF-8). A NUL in the first @p len bytes ends
 *        the copy. NULL src copies "".
 * @returns the number of bytes copied (excluding the NUL).
 */
size_t th_copy_utf8n(char *dst, size_t dst_size, const char *src, size_t len);

/** @brief th_copy_utf8n() of the whole C string @p src. */
size_t th_copy_utf8(char *dst, size_t dst_size, const char *src);

/* What stands for the text a cut left out: U+2026 HORIZONTAL ELLIPSIS. */
#define TH_CUT_MARK "\xe2\x80\xa6"
#define TH_CUT_MARK_LEN 3

/**
 * @brief th_copy_utf8n(), but a cut says so: when the text does not fit,
 *        its head is kept and TH_CUT_MARK ends it (alert fields: a reader
 *        must not take a cut value for the event's own). @p dst_size must be
 *        more than TH_CUT_MARK_LEN.
 * @returns the number of bytes written (excluding the NUL).
 */
size_t th_copy_utf8n_mark(char *dst, size_t dst_size, const char *src, size_t len);

/** @brief th_copy_utf8n_mark() of the whole C string @p src. */
size_t th_copy_utf8_mark(char *dst, size_t dst_size, const char *src);

/**
 * @brief Copy the C string @p src, or, when it does not fit, TH_CUT_MARK
 *        followed by as much of its end as fits, starting on a character
 *        boundary: for a path, whose last component names the file.
 *        @p dst_size must be more than TH_CUT_MARK_LEN.
 * @returns the number of bytes written (excluding the NUL).
 */
size_t th_copy_utf8_tail(char *dst, size_t dst_size, const char *src);

/**
 * @brief Length of the well-formed UTF-8 character at @p p (RFC 3629: no
 *        overlong forms, no surrogates, nothing above U+10FFFF), reading at
 *        most @p avail bytes.
 * @returns 1..4, or 0 when the bytes at p are not a whole valid character.
 */
size_t th_utf8_char_len(const unsigned char *p, size_t avail);

/** @brief Whether the @p n bytes at @p s are entirely valid UTF-8. */
int th_utf8_valid(const char *s, size_t n);

#define TH_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#ifdef __cplusplus
}
#endif

#endif

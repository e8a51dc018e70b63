/*
 * Error strings shared by all modules (the log sink is src/log.c).
 */
#include "trailhound/common.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <stdint.h>
#include <time.h>

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

size_t th_utf8_char_len(const unsigned char *p, size_t avail)
{
	unsigned char c;
	size_t n;
	if (!avail)
		return 0;
	c = p[0];
	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		n = 2;
	else if (c >= 0xE0 && c <= 0xEF)
		n = 3;
	else if (c >= 0xF0 && c <= 0xF4)
		n = 4;
	else
		return 0; /* continuation byte, overlong lead C0/C1, or F5..FF */
	if (avail < n)
		return 0;
	for (size_t i = 1; i < n; i++)
		if ((p[i] & 0xC0) != 0x80)
			return 0;
	/* The second byte's range rules out overlongs, surrogates and > U+10FFFF. */
	if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] > 0x9F) ||
	    (c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] > 0x8F))
		return 0;
	return n;
}

int th_utf8_valid(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;
	while (i < n) {
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		size_t l = th_utf8_char_len(p + i, n - i);
		if (!l)
			return 0;
		i += l;
	}
	return 1;
}

size_t th_copy_utf8n(char *dst, size_t dst_size, const char *src, size_t len)
{
	const unsigned char *s = (const unsigned char *)src;
	if (!dst_size)
		return 0;
	if (!src)
		len = 0;
	else
		len = strnlen(src, len);
	if (len >= dst_size) {
		len = dst_size - 1;
		/* s[len] is the first byte left out. If it continues a character,
		 * back up to that character's lead byte so the character is left
		 * out whole (at most 3 continuation bytes follow a lead byte). */
		size_t back = 0;
		while (len > 0 && back < 3 && (s[len] & 0xC0) == 0x80) {
			len--;
			back++;
		}
		/* Invalid input (a 4th continuation byte): the run is not a
		 * character anyway; cut where the bytes ran out. */
		if ((s[len] & 0xC0) == 0x80)
			len = dst_size - 1;
	}
	if (len)
		memcpy(dst, src, len);
	dst[len] = '\0';
	return len;
}

size_t th_copy_utf8(char *dst, size_t dst_size, const char *src)
{
	return th_copy_utf8n(dst, dst_size, src, SIZE_MAX);
}

size_t th_copy_utf8n_mark(char *dst, size_t dst_size, const char *src, size_t len)
{
	/* Only as far as the room: the common case is one short scan and a copy. */
	size_t have = src ? strnlen(src, len < dst_size ? len : dst_size) : 0;
	if (have < dst_size) {
		memcpy(dst, src ? src : "", have);
		dst[have] = '\0';
		return have;
	}
	size_t n = th_copy_utf8n(dst, dst_size - TH_CUT_MARK_LEN, src, len);
	memcpy(dst + n, TH_CUT_MARK, TH_CUT_MARK_LEN + 1);
	return n + TH_CUT_MARK_LEN;
}

size_t th_copy_utf8_mark(char *dst, size_t dst_size, const char *src)
{
	return th_copy_utf8n_mark(dst, dst_size, src, SIZE_MAX);
}

size_t th_copy_utf8_tail(char *dst, size_t dst_size, const char *src)
{
	size_t len = src ? strlen(src) : 0;
	if (len < dst_size)
		return th_copy_utf8(dst, dst_size, src);
	size_t keep = dst_size - 1 - TH_CUT_MARK_LEN;
	const unsigned char *s = (const unsigned char *)src + (len - keep);
	/* Start on a character: continuation bytes of one cut in two are left
	 * out with the rest (at most 3 follow a lead byte). */
	for (int i = 0; i < 3 && keep && (*s & 0xC0) == 0x80; i++, s++)
		keep--;
	memcpy(dst, TH_CUT_MARK, TH_CUT_MARK_LEN);
	memcpy(dst + TH_CUT_MARK_LEN, s, keep);
	dst[TH_CUT_MARK_LEN + keep] = '\0';
	return TH_CUT_MARK_LEN + keep;
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

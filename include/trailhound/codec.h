/*
 * A tiny binary codec for state values: little-endian fixed-width integers,
 * LEB128 varints and length-prefixed strings, with bounds-checked reads. The
 * record layouts built on it are in docs/state-format.md.
 */
#ifndef TRAILHOUND_CODEC_H
#define TRAILHOUND_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "trailhound/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A growable output buffer; th_wbuf_reset() keeps the allocation. */
struct th_wbuf {
	uint8_t *p;
	size_t len, cap;
	bool oom; /* sticky: any failed growth */
};

/* Room for n more bytes (grown by doubling); false, and w->oom set, when
 * memory ran out. Lets a writer check once and then fill w->p directly. */
bool th_wbuf_reserve(struct th_wbuf *w, size_t n);
void th_wbuf_reset(struct th_wbuf *w);
void th_wbuf_free(struct th_wbuf *w);
/* A string (NULL is written as empty). */
void th_put_str(struct th_wbuf *w, const char *s);
void th_put_bytes(struct th_wbuf *w, const void *b, size_t n);
/* Out-of-line varint write; th_put_varint() is its inline fast path. */
void th_put_varint_slow(struct th_wbuf *w, uint64_t v);

/* The integer writers and readers below run a few dozen times per state
 * record, and records are encoded and decoded on every event: as calls into
 * codec.c (each through th_put_bytes() and a libc memcpy of one byte) they
 * cost more than the rest of a record's work. Inline, they write straight
 * into the buffer while it has room, with the same results. */
static inline void th_put_u8(struct th_wbuf *w, uint8_t v)
{
	if (!w->oom && w->len < w->cap) {
		w->p[w->len++] = v;
		return;
	}
	th_put_bytes(w, &v, 1);
}

static inline void th_put_varint(struct th_wbuf *w, uint64_t v)
{
	if (!w->oom && w->cap - w->len >= 10) { /* a varint has at most 10 bytes */
		uint8_t *o = w->p + w->len;
		size_t n = 0;
		do {
			uint8_t b = (uint8_t)(v & 0x7f);
			v >>= 7;
			if (v)
				b |= 0x80;
			o[n++] = b;
		} while (v);
		w->len += n;
		return;
	}
	th_put_varint_slow(w, v);
}

static inline void th_put_i64(struct th_wbuf *w, int64_t v)
{
	/* zigzag so small negatives stay short */
	th_put_varint(w, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}
/* Append a string literal; its length is computed, never counted by hand. */
#define TH_PUT_LIT(w, lit) th_put_bytes((w), (lit), sizeof(lit) - 1)

/* A bounds-checked reader; any overrun sets bad and yields zeros. */
struct th_rbuf {
	const uint8_t *p, *end;
	bool bad;
};

static inline void th_rbuf_init(struct th_rbuf *r, const void *p, size_t n)
{
	r->p = (const uint8_t *)p;
	r->end = r->p + n;
	r->bad = false;
}
static inline uint8_t th_get_u8(struct th_rbuf *r)
{
	if (r->p >= r->end) {
		r->bad = true;
		return 0;
	}
	return *r->p++;
}

static inline uint64_t th_get_varint(struct th_rbuf *r)
{
	uint64_t v = 0;
	for (int shift = 0; shift < 64; shift += 7) {
		if (r->p >= r->end) {
			r->bad = true;
			return 0;
		}
		uint8_t b = *r->p++;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return v;
	}
	r->bad = true;
	return 0;
}

static inline int64_t th_get_i64(struct th_rbuf *r)
{
	uint64_t u = th_get_varint(r);
	return (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
}

/* A stored time (ms since the epoch) is at most this far from 0 (2^53 ms,
 * ~285,000 years; the parser takes years 1970-9999): any sum of two times
 * and a period stays far inside int64_t. */
#define TH_TIME_BOUND_MS ((int64_t)1 << 53)

/* A time: as th_get_i64, but a value past TH_TIME_BOUND_MS marks the record
 * garbled (r->bad) and reads as 0. Stores and changelogs are read as
 * untrusted: a time near INT64_MAX would overflow the detector's arithmetic. */
static inline int64_t th_get_time(struct th_rbuf *r)
{
	int64_t t = th_get_i64(r);
	if (t > TH_TIME_BOUND_MS || t < -TH_TIME_BOUND_MS) {
		r->bad = true;
		return 0;
	}
	return t;
}
/* Copies into dst (size dstsz, always NUL-terminated, truncating). */
void th_get_str(struct th_rbuf *r, char *dst, size_t dstsz);

/* Copy a C string into a fixed buffer, truncating on a UTF-8 character
 * boundary (th_copy_utf8()); NULL → "". */
void th_strlcpy(char *dst, const char *src, size_t dstsz);

/* Append @p n bytes of text, each invalid UTF-8 sequence replaced by U+FFFD:
 * what leaves the process as text (alerts) is always valid UTF-8. */
void th_put_utf8(struct th_wbuf *w, const char *s, size_t n);

#ifdef __cplusplus
}
#endif

#endif

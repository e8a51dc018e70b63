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

void th_wbuf_reset(struct th_wbuf *w);
void th_wbuf_free(struct th_wbuf *w);
void th_put_u8(struct th_wbuf *w, uint8_t v);
void th_put_varint(struct th_wbuf *w, uint64_t v);
void th_put_i64(struct th_wbuf *w, int64_t v);
/* A string (NULL is written as empty). */
void th_put_str(struct th_wbuf *w, const char *s);
void th_put_bytes(struct th_wbuf *w, const void *b, size_t n);
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
uint8_t th_get_u8(struct th_rbuf *r);
uint64_t th_get_varint(struct th_rbuf *r);
int64_t th_get_i64(struct th_rbuf *r);
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

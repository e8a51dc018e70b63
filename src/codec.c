/*
 * Binary codec for state values (see codec.h).
 */
#include "trailhound/codec.h"

#include <stdlib.h>
#include <string.h>

bool th_wbuf_reserve(struct th_wbuf *w, size_t n)
{
	if (w->oom)
		return false;
	if (w->len + n <= w->cap)
		return true;
	size_t ncap = w->cap ? w->cap * 2 : 256;
	while (ncap < w->len + n)
		ncap *= 2;
	uint8_t *np = realloc(w->p, ncap);
	if (!np) {
		w->oom = true;
		return false;
	}
	w->p = np;
	w->cap = ncap;
	return true;
}

void th_wbuf_reset(struct th_wbuf *w)
{
	w->len = 0;
	w->oom = false;
}

void th_wbuf_free(struct th_wbuf *w)
{
	free(w->p);
	w->p = NULL;
	w->len = w->cap = 0;
}

void th_put_bytes(struct th_wbuf *w, const void *b, size_t n)
{
	/* Nothing to add: a never-grown buffer has p == NULL, and memcpy's
	 * arguments must be valid even for n == 0 (fuzz finding 6). */
	if (n == 0)
		return;
	if (!th_wbuf_reserve(w, n))
		return;
	memcpy(w->p + w->len, b, n);
	w->len += n;
}

void th_put_varint_slow(struct th_wbuf *w, uint64_t v)
{
	uint8_t b[10];
	size_t n = 0;
	do {
		b[n] = (uint8_t)(v & 0x7f);
		v >>= 7;
		if (v)
			b[n] |= 0x80;
		n++;
	} while (v);
	th_put_bytes(w, b, n);
}

void th_put_str(struct th_wbuf *w, const char *s)
{
	size_t n = s ? strlen(s) : 0;
	th_put_varint(w, n);
	th_put_bytes(w, s, n);
}

void th_get_str(struct th_rbuf *r, char *dst, size_t dstsz)
{
	uint64_t n = th_get_varint(r);
	if (r->bad || n > (uint64_t)(r->end - r->p)) {
		r->bad = true;
		if (dstsz)
			dst[0] = '\0';
		return;
	}
	if (dstsz) {
		/* A stored string longer than the field (an older, wider
		 * layout) is cut on a character boundary like any other. */
		size_t c = (size_t)n;
		if (memchr(r->p, '\0', c)) {
			r->bad = true; /* strings are stored without NULs */
			dst[0] = '\0';
			return;
		}
		th_copy_utf8n(dst, dstsz, (const char *)r->p, c);
	}
	r->p += n;
}

void th_strlcpy(char *dst, const char *src, size_t dstsz)
{
	th_copy_utf8(dst, dstsz, src);
}

void th_put_utf8(struct th_wbuf *w, const char *s, size_t n)
{
	static const unsigned char repl[3] = {0xEF, 0xBF, 0xBD}; /* U+FFFD */
	const unsigned char *p = (const unsigned char *)s, *run = p, *end = p + n;
	while (p < end) {
		size_t l = *p < 0x80 ? 1 : th_utf8_char_len(p, (size_t)(end - p));
		if (l) {
			p += l;
			continue;
		}
		th_put_bytes(w, run, (size_t)(p - run));
		th_put_bytes(w, repl, sizeof(repl));
		run = ++p;
	}
	th_put_bytes(w, run, (size_t)(p - run));
}

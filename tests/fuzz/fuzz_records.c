/*
 * libFuzzer target for the state/changelog record decoders (records.c over
 * codec.c) and the key builder th_key(). A record arrives from LMDB or from
 * the changelog topic, so its bytes are untrusted: a decoder must refuse
 * what it cannot read (TH_EPARSE) and never read or write out of bounds.
 *
 * Input: byte 0 picks the decoder, the rest is the value. Whatever decodes
 * is re-encoded and decoded again: the second encoding must decode and
 * re-encode to the same bytes (encode∘decode is stable), which catches a
 * decoder that keeps what its encoder cannot write (counts past the arrays,
 * strings cut mid-way) and the reverse.
 *
 * Byte 0 % 7 == 6 fuzzes th_key(): the rest is split at '\n' into up to 5
 * parts, and the key goes into a heap buffer of exactly the size byte 1
 * selects (so ASan sees an overrun), as the detector builds its keys.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "trailhound/records.h"

enum { R_TOKEN, R_ROLE, R_SIGHTING, R_HELD, R_DEDUP, R_CALL, R_KEY, R__COUNT };

/* Big records: static, not on the stack. */
static union {
	struct th_token token;
	struct th_role role;
	struct th_sighting sighting;
	struct th_held held;
	struct th_dedup dedup;
	struct th_call call;
} a, b;

static int decode(int kind, const uint8_t *p, size_t n, void *out)
{
	struct th_rbuf r;
	switch (kind) {
	case R_TOKEN: return th_token_decode(p, n, out);
	case R_ROLE: return th_role_decode(p, n, out);
	case R_SIGHTING: return th_sighting_decode(p, n, out);
	case R_HELD: return th_held_decode(p, n, out);
	case R_DEDUP: return th_dedup_decode(p, n, out);
	case R_CALL:
		th_rbuf_init(&r, p, n);
		return th_call_decode(&r, out);
	}
	return TH_EINVAL;
}

static void encode(int kind, const void *in, struct th_wbuf *w)
{
	th_wbuf_reset(w);
	switch (kind) {
	case R_TOKEN: th_token_encode(w, in); break;
	case R_ROLE: th_role_encode(w, in); break;
	case R_SIGHTING: th_sighting_encode(w, in); break;
	case R_HELD: th_held_encode(w, in); break;
	case R_DEDUP: th_dedup_encode(w, in); break;
	case R_CALL: th_call_encode(w, in); break;
	}
	if (w->oom)
		fuzz_fail("encode: out of memory");
}

static void fuzz_key(const uint8_t *data, size_t size)
{
	const char *parts[5] = {NULL};
	char *text, *buf;
	size_t bufsz;
	int n = 0;

	if (size < 2)
		return;
	/* 2..257 bytes, and the 512 the detector's key buffers have */
	bufsz = data[0] == 0xff ? 512 : (size_t)data[0] + 2;
	if (!(text = malloc(size)) || !(buf = malloc(bufsz)))
		fuzz_fail("out of memory");
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';
	for (char *s = text; n < 5; n++) {
		parts[n] = s;
		char *nl = strchr(s, '\n');
		if (!nl) {
			n++;
			break;
		}
		*nl = '\0';
		s = nl + 1;
	}
	size_t len = th_key(buf, bufsz, 'k', n, parts[0], parts[1], parts[2], parts[3], parts[4]);
	if (len >= bufsz || buf[0] != 'k' || strlen(buf) > len)
		fuzz_fail("th_key: length %zu in a %zu-byte buffer", len, bufsz);
	free(buf);
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct th_wbuf w1, w2;
	int kind;

	if (size < 1)
		return 0;
	kind = data[0] % R__COUNT;
	if (kind == R_KEY) {
		fuzz_key(data + 1, size - 1);
		return 0;
	}
	if (decode(kind, data + 1, size - 1, &a) != 0)
		return 0;
	encode(kind, &a, &w1);
	if (decode(kind, w1.p, w1.len, &b) != 0)
		fuzz_fail("kind %d: a decoded record re-encodes to %zu bytes that do not decode",
			  kind, w1.len);
	encode(kind, &b, &w2);
	if (w1.len != w2.len || memcmp(w1.p, w2.p, w1.len) != 0)
		fuzz_fail("kind %d: encode(decode(encode(x))) differs from encode(x) (%zu vs %zu bytes)",
			  kind, w2.len, w1.len);
	return 0;
}

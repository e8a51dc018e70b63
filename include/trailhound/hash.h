/*
 * The hash function of trailhound's in-memory tables (uthash). uthash's
 * default (Jenkins' one-at-a-time family) costs about five instructions per
 * byte, and our keys are long (role ARNs, "k|account|key"): this one reads
 * eight bytes at a time. Include this header instead of <uthash.h>.
 */
#ifndef TRAILHOUND_HASH_H
#define TRAILHOUND_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint32_t th_hash_bytes(const void *key, size_t len)
{
	const unsigned char *p = key;
	uint64_t h = 0x9e3779b97f4a7c15ULL ^ (uint64_t)len;
	while (len >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		h = (h ^ w) * 0xff51afd7ed558ccdULL;
		h ^= h >> 32;
		p += 8;
		len -= 8;
	}
	uint64_t w = 0;
	memcpy(&w, p, len);
	h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 29;
	h *= 0xff51afd7ed558ccdULL;
	return (uint32_t)(h >> 32);
}

#define HASH_FUNCTION(keyptr, keylen, hashv) ((hashv) = th_hash_bytes((keyptr), (keylen)))
#include <uthash.h>

#endif

/*
 * The detector's records and their keys in the state store. Layouts are
 * documented in docs/state-format.md; every value starts with a format
 * version byte (TH_REC_VERSION; TH_DEDUP_VERSION for the dedup ledger and
 * TH_TOKEN_VERSION for a token, whose decoders also read version-1 values),
 * and every key with a one-letter record type:
 *
 *   a|<account>                          account: first event time
 *   b|<account>|<asn>                    account egress ASN baseline: last seen
 *   r|<role ARN>                         role: Lambda?, functions and regions
 *   k|<account>|<access key>             token: origin, function, history, alerts
 *   i|<role ARN>|<identity ARN>          identity that assumed a role (training)
 *   n|<role ARN>|<asn>                   ASN of a role's other sessions (training)
 *   d|<var>|<acct>|<role>|<fn/sess>|<asn>  dedup ledger
 *   p|<account>|<access key>             remote uses held for late attribution
 *   q|<role ARN>|<account>|<access key>  index of held keys by role
 *
 * '|' is the byte 0x1f in real keys (it cannot occur in ARNs or key IDs).
 * A part longer than TH_KEY_PART_MAX bytes (or holding a 0x1f) is stored as
 * its first bytes, '~' and the hex SHA-256 of the whole part, so that every
 * key fits LMDB's 511-byte limit whatever the input (th_key()).
 */
#ifndef TRAILHOUND_RECORDS_H
#define TRAILHOUND_RECORDS_H

#include <stdbool.h>
#include <stdint.h>

#include "trailhound/codec.h"
#include "trailhound/enrich.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TH_REC_VERSION 1
#define TH_KEY_SEP '\x1f'

/* Keys: LMDB's compiled-in maximum key size (mdb_env_get_maxkeysize()) is
 * 511 bytes. The longest key has 5 parts (the dedup ledger), so with every
 * part mapped to at most TH_KEY_PART_MAX bytes a key is at most
 * 1 + 5 * (1 + 101) = 511 bytes, whatever the input. */
#define TH_KEY_MAX 511
#define TH_KEY_SIZE (TH_KEY_MAX + 1) /* a buffer for any key, with its NUL */
#define TH_KEY_MAX_PARTS 5
#define TH_KEY_PART_MAX ((TH_KEY_MAX - 1) / TH_KEY_MAX_PARTS - 1)
/* A long part becomes <prefix>~<64 hex digits of SHA-256(part)>. */
#define TH_KEY_DIGEST_MARK '~'
#define TH_KEY_DIGEST_HEX 64
#define TH_KEY_PREFIX_KEEP (TH_KEY_PART_MAX - 1 - TH_KEY_DIGEST_HEX)

/* Room for an ARN of any length AWS allows: an IAM role or user ARN reaches
 * about 600 characters (512-character path + 64-character name); the
 * parser rejects longer ones, so these fields never cut a legal ARN. */
#define TH_ARN_SIZE 1024

/* Summary of one call event: what an alert (or a deferred decision) needs. */
struct th_call {
	char event_id[72], event_name[72], event_source[72], aws_region[32];
	char source_ip[48], user_agent[512], vpce_id[40], vpce_account[16];
	char session[128];
	/* A Kafka topic name has at most 249 characters; a longer input (a
	 * scanned file's path) keeps its end, th_copy_utf8_tail(). */
	char input_topic[256];
	int64_t event_time_ms, creation_ms, input_offset;
	int32_t input_partition;
	uint32_t asn;
	char as_org[96], src_region[32];
	uint8_t net_kind; /* enum th_net_kind */
};

enum th_origin {
	TH_ORIGIN_UNKNOWN = 0,
	TH_ORIGIN_ISSUED = 1,  /* issued by Lambda to the function */
	TH_ORIGIN_RUNTIME = 2, /* seen used by the function's runtime from inside */
	TH_ORIGIN_ASSUMED = 3, /* assumed by an identity (an "other session") */
	TH_ORIGIN_SESSION = 4, /* its session name is a known function of the role */
};
const char *th_origin_name(enum th_origin o);

/* version 3 writes the same fields shorter (a role ARN of the aws partition
 * as its account number and name, a function named like its session once,
 * times after the first as differences); version 2 has address hashes,
 * version 1 none. Decoders read all three. */
#define TH_TOKEN_VERSION 3
#define TH_TOKEN_MAX_IPS 8
/* Distinct addresses past the stored ones are remembered by a 32-bit hash,
 * so distinct_ips stays a count of addresses, not of uses, up to
 * TH_TOKEN_MAX_IPS + TH_TOKEN_MAX_IP_HASHES (64). */
#define TH_TOKEN_MAX_IP_HASHES 56
#define TH_TOKEN_MAX_CALLS 16
#define TH_TOKEN_MAX_ALERTS 4

struct th_alert_ref {
	uint8_t variation;
	uint8_t upgraded; /* a variation-1 upgrade was already raised for it */
	char alert_id[33];
	struct th_call call;
};

struct th_token {
	uint8_t origin; /* enum th_origin */
	char role_arn[TH_ARN_SIZE], session[128], function[128], identity[TH_ARN_SIZE];
	int64_t issued_ms, expiry_ms, first_seen_ms, last_seen_ms;
	uint32_t inside, outside;
	uint8_t n_ips;
	char ips[TH_TOKEN_MAX_IPS][48];
	uint32_t distinct_ips; /* n_ips + n_ip_hashes (more in records of builds
				* before the hashes, which counted every use from an address
				* not stored) */
	uint8_t n_ip_hashes;
	uint32_t ip_hashes[TH_TOKEN_MAX_IP_HASHES];
	uint8_t n_calls;
	struct {
		char name[96]; /* "<service>:<eventName>" */
		uint32_t count;
		int64_t last_ms;
	} calls[TH_TOKEN_MAX_CALLS];
	uint8_t n_alerts;
	/* Room for TH_TOKEN_MAX_ALERTS, allocated with the first alert
	 * (th_token_alerts_room()): most keys never alert, and inline these
	 * were 5.7 KB of every decoded token's 10.6 KB. Owned by the record
	 * like a role's functions: th_token_init() before first use,
	 * th_token_free() at the end, th_token_clear() keeps the room; never
	 * copy a token by assignment. */
	struct th_alert_ref *alerts;
};
void th_token_init(struct th_token *t);
void th_token_free(struct th_token *t);
/* Makes t->alerts hold TH_TOKEN_MAX_ALERTS entries: 0 or TH_ENOMEM. */
int th_token_alerts_room(struct th_token *t);

/* A role's functions and regions. A shared execution role may serve
 * hundreds of functions, and one function name may be deployed in every
 * region (IAM roles are global): a function not learned, or a region not
 * learned, turns into a missed or a false alert, so the caps sit well above
 * what AWS accounts hold. Functions: TH_ROLE_MAX_FUNCTIONS keeps an encoded
 * role (at most ~140 B per function) under Kafka's default 1 MB record
 * limit, since the changelog carries it whole. Regions: every distinct
 * region of the role is named once in .regions, and each function holds a
 * bit per region; AWS has fewer than 40 regions. */
#define TH_ROLE_MAX_FUNCTIONS 4096
#define TH_ROLE_MAX_REGIONS 64
/* version 2: no last sightings; version 1: per-function region lists, at most 64 functions */
#define TH_ROLE_VERSION 3

struct th_role_function {
	char name[128];
	uint64_t regions; /* bit i: ro->regions[i]; 0 while the region is not known */
	/* when the function was last learned or issued a key (the detector moves
	 * it at most once a month); 0 in a value written before version 3. At
	 * the cap the least recently seen function gives way to a new one. */
	int64_t last_seen_ms;
};

struct th_role {
	uint8_t is_lambda;
	int64_t first_seen_ms;
	/* The latest event that named the role (issuance, function management,
	 * a call of one of its sessions), moved at most once a day: a role not
	 * seen for its window is pruned. 0 in a value written before version 3. */
	int64_t last_seen_ms;
	uint8_t n_regions;
	char regions[TH_ROLE_MAX_REGIONS][24];
	uint64_t service_regions; /* regions of Lambda's own service sessions (bits) */
	/* Sorted by name (strcmp), distinct: found by binary search on every
	 * use of a function's key. Owned by the record: th_role_init() before
	 * first use, th_role_free() at the end; th_role_clear() keeps the
	 * array for reuse. Kept last: the detector links spare records through
	 * their first bytes. */
	uint32_t n_functions, cap_functions;
	struct th_role_function *functions;
};

/* Training entry: most recent sighting, and the most recent one by another key.
 * Version 2 adds the latest sighting of each of up to TH_SIGHTING_KEYS keys
 * (oldest first): a decision judged after later events were taught (a held
 * use, an upgrade, an event arriving late) must count only evidence from at
 * or before its own event time, by another key (th_sighting_other_at). */
#define TH_SIGHTING_VERSION 2 /* version 1 had no per-key list */
#define TH_SIGHTING_KEYS 12
struct th_sighting {
	char key[32];
	int64_t last_ms;     /* by .key */
	int64_t other_ms;    /* by any key other than .key; 0 when none */
	int64_t first_ms;    /* earliest sighting by any key */
	uint8_t n;
	struct th_sighting_key {
		char key[32]; /* "?" for the unknown other key of a version-1 value */
		int64_t ms;
	} by_key[TH_SIGHTING_KEYS]; /* sorted by ms, oldest first; keys distinct */
};

#define TH_HELD_MAX 8
struct th_held {
	int64_t expiry_ms;
	char role_arn[TH_ARN_SIZE];
	uint8_t n;
	struct th_call calls[TH_HELD_MAX];
	/* ASNs seen from public addresses while held: taught to the account
	 * baseline if the key turns out not to be Lambda's. */
	uint8_t n_asns;
	uint32_t asns[TH_HELD_MAX];
	int64_t asn_ms[TH_HELD_MAX];
};

/* The dedup ledger of one key: every alert raised for it that an event
 * still to come could fall within the dedup window of (docs/state-format.md).
 * Alerts of one key are at least the dedup period apart, so the entries kept
 * for a bounded lateness are few; when full, the oldest gives way. */
#define TH_DEDUP_VERSION 2 /* version 1 held the last alert only */
#define TH_DEDUP_MAX 16
struct th_dedup {
	uint8_t n;
	struct {
		int64_t alert_ms; /* event time of the alert */
		uint64_t count;   /* matches it covers, itself and suppressed ones */
		char alert_id[33];
	} alerts[TH_DEDUP_MAX]; /* sorted by alert_ms, oldest first */
};

/* Reset to an empty record (cheaper than zeroing the whole struct). */
void th_token_clear(struct th_token *t);
void th_role_clear(struct th_role *ro);
void th_role_init(struct th_role *ro);
void th_role_free(struct th_role *ro);
/* The function's index, or -1. */
int th_role_find_function(const struct th_role *ro, const char *name);
/* Adds the function if new (sorted), and its region when given and not
 * known. A role holding TH_ROLE_MAX_FUNCTIONS already drops its least
 * recently seen function (functions of preview deployments come and go
 * under one shared role: a full role must not stop learning). Returns the
 * function's index, or -1 when memory ran out. *changed is set when anything
 * was added. */
int th_role_add_function(struct th_role *ro, const char *name, const char *region, bool *changed);
/* Adds a region of Lambda's service sessions; sets *changed when new. */
void th_role_add_service_region(struct th_role *ro, const char *region, bool *changed);
/* The bit of region in ro->regions, or 0 when the role has not seen it. */
uint64_t th_role_region_bit(const struct th_role *ro, const char *region);
void th_held_clear(struct th_held *h);

/* Encoders append to w (after th_wbuf_reset). Decoders read untrusted bytes
 * (a store, a changelog record): they never read outside [p, p + n) and
 * return 0, or TH_EPARSE for a truncated, over-long or garbled value (a
 * wrong version byte, a count over its array's size, a string holding a NUL,
 * trailing bytes). On TH_EPARSE the output struct holds no meaning. */
void th_call_encode(struct th_wbuf *w, const struct th_call *c);
int th_call_decode(struct th_rbuf *r, struct th_call *c);
void th_token_encode(struct th_wbuf *w, const struct th_token *t);
/* Also TH_ENOMEM: a value with alerts needs their room (t->alerts). */
int th_token_decode(const void *p, size_t n, struct th_token *t);
/* What pruning needs of a token, read in place (no string is copied): the
 * same verdict on a value as th_token_decode(), which it calls, into
 * @p scratch, only for a key holding alerts. */
struct th_token_life {
	int64_t expiry_ms, last_seen_ms;
	int n_alerts;
};
int th_token_life(const void *p, size_t n, struct th_token_life *out, struct th_token *scratch);
void th_role_encode(struct th_wbuf *w, const struct th_role *r);
int th_role_decode(const void *p, size_t n, struct th_role *r);
/* What pruning needs of a role, read in place: its last sighting (0 for a
 * value written before version 3, which has none). TH_EPARSE for a value
 * of no version this code reads; the rest of the value is not checked. */
int th_role_last_seen(const void *p, size_t n, int64_t *last_ms);
void th_sighting_encode(struct th_wbuf *w, const struct th_sighting *s);
int th_sighting_decode(const void *p, size_t n, struct th_sighting *s);
void th_held_encode(struct th_wbuf *w, const struct th_held *h);
int th_held_decode(const void *p, size_t n, struct th_held *h);
void th_dedup_encode(struct th_wbuf *w, const struct th_dedup *d);
int th_dedup_decode(const void *p, size_t n, struct th_dedup *d);

/* Record a sighting by key at time t (see struct th_sighting). */
void th_sighting_update(struct th_sighting *s, const char *key, int64_t t);
/* Last time seen by a key other than @p key (0 when never). */
int64_t th_sighting_other(const struct th_sighting *s, const char *key);
/* Last time seen by a key other than @p key at or before @p t (0 when none
 * kept): training evidence for a decision about @p key's event at @p t. */
int64_t th_sighting_other_at(const struct th_sighting *s, const char *key, int64_t t);

/**
 * @brief Build the key "<type><sep>part<sep>part..." into @p buf.
 *
 * Each part is mapped on its own: one of at most TH_KEY_PART_MAX bytes
 * without a TH_KEY_SEP is kept as it is; any other becomes its first
 * TH_KEY_PREFIX_KEEP bytes (0x1f bytes shown as '?'), '~' and the 64 hex
 * digits of the SHA-256 of the whole part: at most TH_KEY_PART_MAX bytes.
 * So distinct long parts give distinct keys (no truncation into collisions),
 * a key built from fewer parts is a prefix of one built from more (prefix
 * scans), and mapping a mapped part again leaves it as it is (a part read
 * back out of a key rebuilds the same key). NULL parts are empty.
 *
 * @param size   room in buf; TH_KEY_SIZE always suffices
 * @param nparts 0..TH_KEY_MAX_PARTS
 * @returns the key's length (<= TH_KEY_MAX), or 0 with buf "" when nparts is
 *          out of range or the key does not fit in @p size: never a
 *          truncated key, which could collide with another.
 */
size_t th_key(char *buf, size_t size, char type, int nparts, ...);

/**
 * @brief Map one key part as th_key() does into @p out (TH_KEY_PART_MAX + 1
 *        bytes), e.g. to compare a user-given ARN with parts read from keys.
 * @returns the mapped length.
 */
size_t th_key_part(char out[TH_KEY_PART_MAX + 1], const char *part);

#ifdef __cplusplus
}
#endif

#endif

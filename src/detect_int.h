/*
 * The detector's internals, shared by detect.c (the logic) and
 * detect_memory.c (its working memory: records cached in decoded form, the
 * accounts' first events, the keys with held uses, addresses already
 * enriched, and the event-time clock). Not a public header.
 */
#ifndef TRAILHOUND_DETECT_INT_H
#define TRAILHOUND_DETECT_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "trailhound/detect.h"
#include "trailhound/hash.h"
#include "trailhound/records.h"
#include "trailhound/variation.h"

#define HOUR_MS (3600LL * 1000)
#define EXPIRY_SWEEP_MS (30 * 60 * 1000LL)
/* Pruning only bounds growth: once a day of event time is plenty. */
#define PRUNE_SWEEP_MS (24 * HOUR_MS)
/* Tokens are kept this long past their expiry for late-delivered events. */
#define TOKEN_GRACE_MS (24 * HOUR_MS)
#define MAX_RESOLVE 4096
/* How late (behind the watermark, in event time) an event may arrive and
 * still be deduplicated against every alert of its key: the ledger keeps an
 * alert until the watermark is this far past its dedup window. 30 days covers
 * a region's backlog or an archive read prefix by prefix over a month, and
 * matches the training window, the longest any other evidence is kept; a
 * later event may re-alert a key whose alert was pruned (docs/detections.md). */
#define DEDUP_LATENESS_MS (30 * TH_DAY_MS)

enum verdict { NET_NONE = 0, NET_INSIDE, NET_REMOTE };

struct clock_rec {
	int64_t watermark, next_expiry, next_prune;
};

/* Accounts' first event times, read on every event: kept in memory (and
 * written through to the store whenever they move). */
struct acct_first {
	UT_hash_handle hh;
	int64_t first_ms;
	char acct[];
};

/* Decoded tokens and roles, cached across events: nearly every event reads
 * and updates one of each, and decoding/encoding them per event cost more
 * than parsing the event. Dirty objects are encoded into the store by
 * objs_flush() (at checkpoints and before sweeps); a rollback drops them. */
struct obj {
	UT_hash_handle hh;
	bool dirty;
	bool exists; /* in the store, or saved since */
	void *payload; /* struct th_token or struct th_role */
	size_t klen;
	char key[];
};

/* Decoded objects kept per partition: a decoded token is ~10 KB, so this
 * bounds the detector's memory (OBJS_MAX x 10 KB per partition). Checked
 * between events as well as at checkpoints, so a transaction that touches
 * many keys (a burst of new credentials) flushes and drops them as it goes
 * instead of holding one decoded copy of each until its commit. */
#define OBJS_MAX 1024
/* Freed payloads kept for reuse (spares): enough to skip malloc on the hot
 * path, few enough not to pin a burst's worth of memory. */
#define SPARES_MAX 256

/* Account-baseline sightings ("b|account|asn"), cached decoded like the
 * objects above: every event of a non-Lambda identity from a public address
 * updates one, nearly always the same few per account, and reading,
 * decoding, encoding and writing it back per event cost a sixth of the
 * detector's work on a mixed stream. Written by th_dmem_flush(), dropped
 * with the objects. */
struct bsight {
	UT_hash_handle hh;
	bool dirty;
	bool exists; /* in the store, or taught since */
	struct th_sighting s;
	size_t klen;
	char key[];
};


/* Keys with held uses ("p" records), mirrored in memory: every issuance asks
 * whether its key has held uses, and the answer is nearly always no. */
struct held_key {
	UT_hash_handle hh;
	int64_t expiry_ms;
	char key[];
};

/* Source-address enrichment, cached: Lambda egress addresses repeat. */
#define IPCACHE_SIZE 4096
struct ip_slot {
	char ip[48];
	struct th_netinfo ni;
};

struct th_detector {
	struct obj *last_tok, *last_role; /* save_* without a second lookup */
	struct acct_first *accounts;
	struct held_key *held_keys;
	bool held_loaded;
	struct ip_slot *ipcache;
	struct obj *objs;
	size_t nobjs;
	/* Payloads of dropped objects, kept for reuse (a token is ~10 KB, a
	 * role ~20 KB): dropping the cache every few thousand keys and
	 * allocating it again showed in profiles as malloc/free and fresh
	 * pages. Linked through their first bytes; at most OBJS_MAX each. */
	struct bsight *bsights;
	size_t nbsights;
	void *spare_tok, *spare_role;
	size_t nspare_tok, nspare_role;
	struct th_detect_conf conf;
	const struct th_enrich *en;
	struct th_state *st;
	th_alert_fn on_alert;
	void *ctx;
	struct th_detect_stats stats;
	struct clock_rec clock;
	bool clock_loaded, clock_dirty;
	struct th_wbuf w;
	/* Scratch records: large, so kept off the stack. */
	struct th_token tok;
	struct th_role role;
	struct th_held held;
	struct th_call call;
	struct th_evidence evid;
	struct th_alert alert;
	char k1[1024], k2[1024];
	/* keys collected by scans before acting on them */
	char (*collected)[2 * (TH_KEY_PART_MAX + 1)]; /* "<acct>\x1f<akid>" as keyed */
	size_t ncollected;
};

static inline bool starts_with(const char *s, const char *p)
{
	return s && strncmp(s, p, strlen(p)) == 0;
}

static inline bool streq(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

/* ---- detect_memory.c: the detector's working memory. Loaded objects are
 * owned by the cache and stay valid until th_dmem_flush()/clear; save_*
 * marks them dirty. Errors are negative TH_E* codes. ---- */

int th_dmem_put(struct th_detector *d, const char *key, size_t klen);
int th_dmem_clock_load(struct th_detector *d);
int th_dmem_clock_save(struct th_detector *d);
int th_dmem_flush(struct th_detector *d);
void th_dmem_clear_objects(struct th_detector *d);
void th_dmem_free_spares(struct th_detector *d);
int th_dmem_load_role(struct th_detector *d, const char *arn, struct th_role **ro);
int th_dmem_save_role(struct th_detector *d, const char *arn, const struct th_role *ro);
int th_dmem_load_token(struct th_detector *d, const char *acct, const char *akid,
                       struct th_token **t);
int th_dmem_save_token(struct th_detector *d, const char *acct, const char *akid,
                       const struct th_token *t);
int th_dmem_load_sighting(struct th_detector *d, char type, const char *a, const char *b,
                          struct th_sighting *s);
int th_dmem_teach_sighting(struct th_detector *d, char type, const char *a, const char *b,
                           const char *key, int64_t t);
void th_dmem_asn_str(char *buf, size_t n, uint32_t asn);
int th_dmem_teach_account_asn(struct th_detector *d, const char *acct, uint32_t asn, int64_t t);
void th_dmem_clear_accounts(struct th_detector *d);
void th_dmem_clear_held(struct th_detector *d);
int th_dmem_held_add(struct th_detector *d, const char *pk, size_t pkl, int64_t expiry);
void th_dmem_held_remove(struct th_detector *d, const char *pk, size_t pkl);
int th_dmem_held_has(struct th_detector *d, const char *pk, size_t pkl, bool *has);
void th_dmem_enrich(struct th_detector *d, const char *ip, struct th_netinfo *out);
int th_dmem_account_seen(struct th_detector *d, const char *acct, int64_t t, int64_t *first);

#endif

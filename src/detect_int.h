/*
 * The detector's internals, shared by its files (detect*.c: the engine, and
 * one file per seam: learning, classification, holds and upgrades, alerting
 * and dedup, working memory). Functions shared between them are named
 * th_detect_*; each is declared under the file that defines it. Not a public
 * header.
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
/* A held use waits at least this long after the use itself, even when its
 * key's creationDate says the hold is over: events of one moment arrive
 * minutes apart, and the issuance may be among them. */
#define HOLD_FLOOR_MS (15 * 60 * 1000LL)
/* How far ahead of its event a creationDate may be (clock skew). */
#define CREATION_SKEW_MS (5 * 60 * 1000LL)
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
/* A role's last sighting moves at most this often: each move rewrites the
 * role (up to 600 KB for a shared role) into the store and the changelog,
 * and pruning by days needs no finer time. */
#define ROLE_TOUCH_MS (24 * HOUR_MS)
/* A function's last sighting (which function of a full role gives way to a
 * new one) moves at most this often: a shared role of thousands of functions
 * is rewritten whole for each move. */
#define FUNCTION_TOUCH_MS (30 * TH_DAY_MS)

enum verdict { NET_NONE = 0, NET_INSIDE, NET_REMOTE };

struct clock_rec {
	int64_t watermark, next_expiry, next_prune;
};

/* Accounts' first event times, read on every event: kept in memory (and
 * written through to the store whenever they move). An event names its
 * caller's account, so every external account that calls in is one more:
 * past ACCOUNTS_MAX (~6 MB) the table is emptied and read again from the
 * store as accounts come back. */
#define ACCOUNTS_MAX 65536
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

/* Decoded objects kept per partition: a decoded token is ~4.8 KB (and
 * 5.8 KB more once it holds an alert), so this bounds the detector's memory
 * (OBJS_MAX x ~5 KB per partition). Checked
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
 * detector's work on a mixed stream. Written by th_detect_flush(), dropped
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
	/* Payloads of dropped objects, kept for reuse (a token is ~4.8 KB, a
	 * role ~1.6 KB): dropping the cache every few thousand keys and
	 * allocating it again showed in profiles as malloc/free and fresh
	 * pages. Linked through their first bytes; at most SPARES_MAX each. */
	struct bsight *bsights;
	size_t nbsights;
	void *spare_tok, *spare_role;
	size_t nspare_tok, nspare_role;
	struct th_detect_conf conf;
	/* conf.variations by id (NULL: no such variation), for the properties
	 * of an earlier decision (th_alert_ref.variation). */
	const struct th_variation *by_id[TH_VARIATION_MAX + 1];
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

/* FNV-1a: a well-spread 32-bit hash of a short string (an address). */
static inline uint32_t str_hash(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

/* ---- detect_memory.c: the detector's working memory. Loaded objects are
 * owned by the cache and stay valid until th_detect_flush()/clear; save_*
 * marks them dirty. Errors are negative TH_E* codes. ---- */

int th_detect_put(struct th_detector *d, const char *key, size_t klen);
int th_detect_clock_load(struct th_detector *d);
int th_detect_clock_save(struct th_detector *d);
int th_detect_flush(struct th_detector *d);
void th_detect_clear_objects(struct th_detector *d);
void th_detect_free_spares(struct th_detector *d);
int th_detect_load_role(struct th_detector *d, const char *arn, struct th_role **ro);
int th_detect_save_role(struct th_detector *d, const char *arn, const struct th_role *ro);
/* Records that an event at t named the role (kept until pruned past its
 * window); only for a role that exists or is being saved. */
int th_detect_touch_role(struct th_detector *d, const char *arn, struct th_role *ro, int64_t t);
int th_detect_load_token(struct th_detector *d, const char *acct, const char *akid,
			 struct th_token **t);
int th_detect_save_token(struct th_detector *d, const char *acct, const char *akid,
			 const struct th_token *t);
int th_detect_load_sighting(struct th_detector *d, char type, const char *a, const char *b,
			    struct th_sighting *s);
int th_detect_teach_sighting(struct th_detector *d, char type, const char *a, const char *b,
			     const char *key, int64_t t);
void th_detect_asn_str(char *buf, size_t n, uint32_t asn);
int th_detect_teach_account_asn(struct th_detector *d, const char *acct, uint32_t asn, int64_t t);
void th_detect_clear_accounts(struct th_detector *d);
void th_detect_clear_held(struct th_detector *d);
int th_detect_held_add(struct th_detector *d, const char *pk, size_t pkl, int64_t expiry);
void th_detect_held_remove(struct th_detector *d, const char *pk, size_t pkl);
int th_detect_held_has(struct th_detector *d, const char *pk, size_t pkl, bool *has);
void th_detect_enrich(struct th_detector *d, const char *ip, struct th_netinfo *out);
int th_detect_account_seen(struct th_detector *d, const char *acct, int64_t t, int64_t *first);

/* ---- shared by the detector's files (detect*.c) ---- */

/* The region set a source address is judged against. */
struct regions {
	int n;
	const char *r[TH_ROLE_MAX_REGIONS];
};

/* detect_classify.c: which credential, which network, the judgement */
bool th_detect_is_poller_name(const char *s);
const char *th_detect_token_function(const struct th_token *t);
void th_detect_regions_of(const struct th_role *ro, const char *function, struct regions *out);
enum verdict th_detect_net_verdict(const struct th_call *c, const char *acct,
				   const struct regions *rs, char *reason, size_t rsz);
enum th_cred_class th_detect_classify(const struct th_role *ro, bool role_found, struct th_token *t,
				      bool tok_found, const char *session);
int th_detect_decide(struct th_detector *d, const char *acct, const char *akid,
		     enum th_cred_class cls, struct th_token *t, const char *role_arn,
		     const struct th_call *c, const char *remote_reason, const char *upgrade_of,
		     const char *why);

const char *th_detect_ua_lambda_claim(const struct th_detector *d, const char *ua);
/* Copies user agent @p ua into @p dst as th_copy_utf8_mark() does, but a
 * cut one ends with every marker the user agents are judged by that the
 * whole value holds: judged on the copy, it decides as the whole would. */
void th_detect_keep_user_agent(const struct th_detector *d, char *dst, size_t size,
			       const char *ua);

/* detect_learn.c: what events teach */
/* What processing a call knows of its role and key: loaded from the working
 * memory, and perhaps learned from the call itself. */
struct th_detect_known {
	struct th_role *ro;
	struct th_token *t;
	int role_found, tok_found;
	bool role_learned, key_learned;
};
int th_detect_learn_runtime(struct th_detector *d, const struct th_event *ev, const char *acct,
			    const char *role_arn, const char *session, struct th_detect_known *k);
void th_detect_token_record_use(const struct th_detector *d, struct th_token *t,
				const struct th_call *c, enum verdict vd);
int th_detect_learn_issuance(struct th_detector *d, const struct th_event *ev, const char *acct);
int th_detect_learn_assumption(struct th_detector *d, const struct th_event *ev, const char *acct);
int th_detect_learn_federated(struct th_detector *d, const struct th_event *ev, const char *acct);
int th_detect_learn_function(struct th_detector *d, const struct th_event *ev);

/* detect_hold.c: held uses, upgrades and re-decisions */
/* 0, or TH_ENOMEM (no room for the token's first alert) */
int th_detect_remember_decision(struct th_token *t, int variation, const char *alert_id,
				const struct th_call *c);
int th_detect_upgrade_alerts(struct th_detector *d, const char *acct, const char *akid,
			     struct th_token *t);
int th_detect_hold_use(struct th_detector *d, const char *acct, const char *akid,
		       const char *role_arn, const struct th_call *c);
int th_detect_hold_inside(struct th_detector *d, const char *acct, const char *akid,
			  const char *role_arn, const struct th_call *c);
int th_detect_resolve_key(struct th_detector *d, const char *acct, const char *akid, bool expire);
int th_detect_resolve_role(struct th_detector *d, const char *role_arn);
int th_detect_expire_lapsed(struct th_detector *d, const char *acct, const char *akid,
			    const char *role_arn, int64_t t);
int th_detect_expire_held(struct th_detector *d, int64_t now, bool final);
int th_detect_redecide_as_other(struct th_detector *d, const char *acct, const char *akid,
				struct th_token *t, const char *role_arn, const char *was_function);

/* detect_alert.c: activation, dedup and the alert */
int64_t th_detect_dedup_horizon(const struct th_detector *d, int64_t now);
int th_detect_raise_alert(struct th_detector *d, const struct th_variation *v, const char *acct,
			  const char *akid, enum th_cred_class cls, const struct th_token *t,
			  const char *role_arn, const struct th_call *c, const char *upgrade_of,
			  char alert_id[33], bool *raised);

#endif

/*
 * The detector's working memory: what it keeps between events besides the
 * store itself. Tokens and roles cached in decoded form (decoding and
 * encoding them per event cost more than parsing the event), accounts' first
 * event times, the keys with held uses, addresses already enriched, and the
 * event-time clock. Everything here is either written through to the store or
 * flushed to it before a commit, and dropped on a rollback.
 */
#include "detect_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


int th_detect_put(struct th_detector *d, const char *key, size_t klen)
{
	if (d->w.oom)
		return TH_ENOMEM;
	return th_state_put(d->st, key, klen, d->w.p, d->w.len);
}

/* ---- the event-time clock (persisted so a rollback restores it) ---- */

static const char CLOCK_KEY[] = "w";

int th_detect_clock_load(struct th_detector *d)
{
	const void *v;
	size_t n;
	struct th_rbuf r;
	if (d->clock_loaded)
		return 0;
	memset(&d->clock, 0, sizeof(d->clock));
	int rc = th_state_get(d->st, CLOCK_KEY, 1, &v, &n);
	if (rc == 0) {
		th_rbuf_init(&r, v, n);
		if (th_get_u8(&r) == TH_REC_VERSION) {
			d->clock.watermark = th_get_time(&r);
			d->clock.next_expiry = th_get_time(&r);
			d->clock.next_prune = th_get_time(&r);
		}
		/* a garbled clock (a hostile changelog) starts afresh, as none */
		if (r.bad)
			memset(&d->clock, 0, sizeof(d->clock));
	} else if (rc != TH_ENOTFOUND) {
		return rc;
	}
	d->clock_loaded = true;
	return 0;
}

int th_detect_clock_save(struct th_detector *d)
{
	th_wbuf_reset(&d->w);
	th_put_u8(&d->w, TH_REC_VERSION);
	th_put_i64(&d->w, d->clock.watermark);
	th_put_i64(&d->w, d->clock.next_expiry);
	th_put_i64(&d->w, d->clock.next_prune);
	return th_detect_put(d, CLOCK_KEY, 1);
}

/* ---- records ---- */


/* A payload for a new object: a spare one (its content is garbage, like
 * malloc's; decode or clear below sets what is read), else a new one. */
static void *spare_take(struct th_detector *d, char type)
{
	void **head = type == 'k' ? &d->spare_tok : &d->spare_role;
	size_t *n = type == 'k' ? &d->nspare_tok : &d->nspare_role;
	void *p = *head;
	if (p) {
		memcpy(head, p, sizeof(void *));
		(*n)--;
		return p;
	}
	if (type == 'k') {
		struct th_token *t = malloc(sizeof(*t));
		if (t)
			th_token_init(t); /* owns an alerts array: no garbage pointer */
		return t;
	}
	struct th_role *ro = malloc(sizeof(*ro));
	if (ro)
		th_role_init(ro); /* owns a function array: no garbage pointer */
	return ro;
}

static void spare_put(struct th_detector *d, char type, void *p)
{
	void **head = type == 'k' ? &d->spare_tok : &d->spare_role;
	size_t *n = type == 'k' ? &d->nspare_tok : &d->nspare_role;
	if (type == 'r' && (*n >= SPARES_MAX || ((struct th_role *)p)->cap_functions > 256))
		th_role_free(p); /* a shared role's thousands of functions are not kept spare */
	if (type == 'k' && *n >= SPARES_MAX)
		th_token_free(p);
	if (*n >= SPARES_MAX) {
		free(p);
		return;
	}
	memcpy(p, head, sizeof(void *));
	*head = p;
	(*n)++;
}

void th_detect_free_spares(struct th_detector *d)
{
	void *p, *next;
	for (p = d->spare_tok; p; p = next) {
		memcpy(&next, p, sizeof(void *));
		th_token_free(p);
		free(p);
	}
	for (p = d->spare_role; p; p = next) {
		memcpy(&next, p, sizeof(void *));
		th_role_free(p);
		free(p);
	}
	d->spare_tok = d->spare_role = NULL;
	d->nspare_tok = d->nspare_role = 0;
}

static struct obj *obj_get(struct th_detector *d, char type, const char *key, size_t klen,
			   int *found)
{
	struct obj *o;
	const void *v;
	size_t n;
	*found = 0;
	HASH_FIND(hh, d->objs, key, klen, o);
	if (o) {
		*found = o->exists;
		return o;
	}
	o = calloc(1, sizeof(*o) + klen + 1);
	if (!o)
		return NULL;
	o->payload = spare_take(d, type);
	if (!o->payload) {
		free(o);
		return NULL;
	}
	memcpy(o->key, key, klen);
	o->klen = klen;
	int rc = th_state_get(d->st, key, klen, &v, &n);
	if (rc && rc != TH_ENOTFOUND) {
		/* A read error must not turn into an empty record that a later
		 * save would write over the real one. */
		spare_put(d, type, o->payload);
		free(o);
		*found = rc;
		return NULL;
	}
	int drc = rc ? rc
		     : type == 'k' ? th_token_decode(v, n, o->payload)
				   : th_role_decode(v, n, o->payload);
	if (drc == TH_ENOMEM) {
		spare_put(d, type, o->payload);
		free(o);
		*found = drc;
		return NULL;
	}
	int ok = drc == 0;
	if (!ok) {
		if (type == 'k')
			th_token_clear(o->payload);
		else
			th_role_clear(o->payload);
	}
	o->exists = ok;
	HASH_ADD(hh, d->objs, key, klen, o);
	d->nobjs++;
	*found = ok;
	return o;
}

int th_detect_flush(struct th_detector *d)
{
	struct obj *o, *tmp;
	HASH_ITER(hh, d->objs, o, tmp)
	{
		if (!o->dirty)
			continue;
		th_wbuf_reset(&d->w);
		if (o->key[0] == 'k')
			th_token_encode(&d->w, o->payload);
		else
			th_role_encode(&d->w, o->payload);
		int rc = th_detect_put(d, o->key, o->klen);
		if (rc)
			return rc;
		o->dirty = false;
	}
	struct bsight *b, *btmp;
	HASH_ITER(hh, d->bsights, b, btmp)
	{
		if (!b->dirty)
			continue;
		th_wbuf_reset(&d->w);
		th_sighting_encode(&d->w, &b->s);
		int rc = th_detect_put(d, b->key, b->klen);
		if (rc)
			return rc;
		b->dirty = false;
	}
	return 0;
}

void th_detect_clear_objects(struct th_detector *d)
{
	struct obj *o, *tmp;
	d->last_tok = d->last_role = NULL;
	HASH_ITER(hh, d->objs, o, tmp)
	{
		HASH_DEL(d->objs, o);
		spare_put(d, o->key[0] == 'k' ? 'k' : 'r', o->payload);
		free(o);
	}
	d->nobjs = 0;
	struct bsight *b, *btmp;
	HASH_ITER(hh, d->bsights, b, btmp)
	{
		HASH_DEL(d->bsights, b);
		free(b);
	}
	d->nbsights = 0;
}

static void obj_mark(struct th_detector *d, const char *key, size_t klen)
{
	struct obj *o;
	HASH_FIND(hh, d->objs, key, klen, o);
	if (o)
		o->dirty = o->exists = true;
}

/* Returns 1 (found), 0 (new, empty) or a negative error; *ro points into the cache. */
int th_detect_load_role(struct th_detector *d, const char *arn, struct th_role **ro)
{
	int found;
	size_t kl = th_key(d->k1, sizeof(d->k1), 'r', 1, arn);
	struct obj *o = obj_get(d, 'r', d->k1, kl, &found);
	if (!o)
		return found < 0 ? found : TH_ENOMEM;
	d->last_role = o;
	*ro = o->payload;
	return found;
}

int th_detect_save_role(struct th_detector *d, const char *arn, const struct th_role *ro)
{
	if (d->last_role && d->last_role->payload == ro) {
		d->last_role->dirty = d->last_role->exists = true;
		return 0;
	}
	size_t kl = th_key(d->k1, sizeof(d->k1), 'r', 1, arn);
	obj_mark(d, d->k1, kl);
	return 0;
}

int th_detect_touch_role(struct th_detector *d, const char *arn, struct th_role *ro, int64_t t)
{
	if (t < ro->last_seen_ms + ROLE_TOUCH_MS)
		return 0;
	ro->last_seen_ms = t;
	return th_detect_save_role(d, arn, ro);
}

int th_detect_load_token(struct th_detector *d, const char *acct, const char *akid,
			 struct th_token **t)
{
	int found;
	size_t kl = th_key(d->k1, sizeof(d->k1), 'k', 2, acct, akid);
	struct obj *o = obj_get(d, 'k', d->k1, kl, &found);
	if (!o)
		return found < 0 ? found : TH_ENOMEM;
	d->last_tok = o;
	*t = o->payload;
	return found;
}

int th_detect_save_token(struct th_detector *d, const char *acct, const char *akid,
			 const struct th_token *t)
{
	if (d->last_tok && d->last_tok->payload == t) {
		d->last_tok->dirty = d->last_tok->exists = true;
		return 0;
	}
	size_t kl = th_key(d->k1, sizeof(d->k1), 'k', 2, acct, akid);
	obj_mark(d, d->k1, kl);
	return 0;
}

/* Whether an update left a sighting as it was (its per-key list included:
 * a late sighting by a new key may change only the list). */
static bool sighting_same(const struct th_sighting *a, const struct th_sighting *b)
{
	if (a->last_ms != b->last_ms || a->other_ms != b->other_ms || a->first_ms != b->first_ms ||
	    strcmp(a->key, b->key) != 0 || a->n != b->n)
		return false;
	for (int i = 0; i < a->n; i++)
		if (a->by_key[i].ms != b->by_key[i].ms || strcmp(a->by_key[i].key, b->by_key[i].key) != 0)
			return false;
	return true;
}

int th_detect_load_sighting(struct th_detector *d, char type, const char *a, const char *b,
			    struct th_sighting *s)
{
	const void *v;
	size_t n;
	size_t kl = th_key(d->k2, sizeof(d->k2), type, 2, a, b);
	if (type == 'b') {
		struct bsight *bs;
		HASH_FIND(hh, d->bsights, d->k2, kl, bs);
		if (bs) {
			*s = bs->s;
			return bs->exists;
		}
	}
	int rc = th_state_get(d->st, d->k2, kl, &v, &n);
	if (rc == 0 && th_sighting_decode(v, n, s) == 0)
		return 1;
	memset(s, 0, sizeof(*s));
	return rc == TH_ENOTFOUND || rc == 0 ? 0 : rc;
}

int th_detect_teach_sighting(struct th_detector *d, char type, const char *a, const char *b,
			     const char *key, int64_t t)
{
	struct th_sighting s, before;
	int rc = th_detect_load_sighting(d, type, a, b, &s);
	if (rc < 0)
		return rc;
	before = s;
	th_sighting_update(&s, key, t);
	/* Most sightings repeat one already stored (the account's office ASN
	 * many times a second; CloudTrail times have whole seconds): writing the
	 * same record again cost an encode, a second cache lookup and a dirty
	 * key per event. Both structs are fully initialised (decode and the
	 * not-found path memset them), so comparing the fields is exact. */
	if (rc == 1 && sighting_same(&before, &s))
		return 0;
	th_wbuf_reset(&d->w);
	th_sighting_encode(&d->w, &s);
	return th_detect_put(d, d->k2, strlen(d->k2));
}

void th_detect_asn_str(char *buf, size_t n, uint32_t asn)
{
	/* Once per event from a public address: snprintf's format machinery
	 * cost more than the rest of the account-baseline update. */
	char tmp[10];
	size_t len = 0;
	if (!n)
		return;
	do {
		tmp[len++] = (char)('0' + asn % 10);
		asn /= 10;
	} while (asn);
	if (len >= n) { /* what snprintf keeps: the leading digits */
		size_t keep = n - 1;
		for (size_t i = 0; i < keep; i++)
			buf[i] = tmp[len - 1 - i];
		buf[keep] = '\0';
		return;
	}
	for (size_t i = 0; i < len; i++)
		buf[i] = tmp[len - 1 - i];
	buf[len] = '\0';
}

int th_detect_teach_account_asn(struct th_detector *d, const char *acct, uint32_t asn, int64_t t)
{
	char a[16];
	struct bsight *bs;
	if (!asn || !acct)
		return 0;
	th_detect_asn_str(a, sizeof(a), asn);
	size_t kl = th_key(d->k2, sizeof(d->k2), 'b', 2, acct, a);
	HASH_FIND(hh, d->bsights, d->k2, kl, bs);
	if (!bs) {
		struct th_sighting s;
		int rc = th_detect_load_sighting(d, 'b', acct, a, &s);
		if (rc < 0)
			return rc;
		/* load_sighting rebuilt the same key in d->k2 */
		bs = malloc(sizeof(*bs) + kl + 1);
		if (!bs)
			return TH_ENOMEM;
		bs->dirty = false;
		bs->exists = rc == 1;
		bs->s = s;
		bs->klen = kl;
		memcpy(bs->key, d->k2, kl + 1);
		HASH_ADD(hh, d->bsights, key, kl, bs);
		d->nbsights++;
	}
	struct th_sighting before = bs->s;
	th_sighting_update(&bs->s, "", t);
	/* Written at the next flush only if it changed (see teach_sighting). */
	if (!bs->exists || !sighting_same(&before, &bs->s)) {
		bs->dirty = true;
		bs->exists = true;
	}
	return 0;
}

void th_detect_clear_accounts(struct th_detector *d)
{
	struct acct_first *a, *tmp;
	HASH_ITER(hh, d->accounts, a, tmp)
	{
		HASH_DEL(d->accounts, a);
		free(a);
	}
}

void th_detect_clear_held(struct th_detector *d)
{
	struct held_key *h, *tmp;
	HASH_ITER(hh, d->held_keys, h, tmp)
	{
		HASH_DEL(d->held_keys, h);
		free(h);
	}
	d->held_loaded = false;
}

int th_detect_held_add(struct th_detector *d, const char *pk, size_t pkl, int64_t expiry)
{
	struct held_key *h;
	HASH_FIND(hh, d->held_keys, pk, pkl, h);
	if (!h) {
		h = malloc(sizeof(*h) + pkl + 1);
		if (!h)
			return TH_ENOMEM;
		memcpy(h->key, pk, pkl);
		h->key[pkl] = '\0';
		HASH_ADD(hh, d->held_keys, key, pkl, h);
	}
	h->expiry_ms = expiry;
	return 0;
}

void th_detect_held_remove(struct th_detector *d, const char *pk, size_t pkl)
{
	struct held_key *h;
	HASH_FIND(hh, d->held_keys, pk, pkl, h);
	if (h) {
		HASH_DEL(d->held_keys, h);
		free(h);
	}
}

static int held_load_cb(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct th_rbuf r;
	th_rbuf_init(&r, val, vlen);
	int64_t expiry = th_get_u8(&r) == TH_REC_VERSION ? th_get_time(&r) : 0;
	return th_detect_held_add(ctx, key, klen, expiry);
}

/* Whether the state key "p|acct|akid" exists, answered from memory. */
int th_detect_held_has(struct th_detector *d, const char *pk, size_t pkl, bool *has)
{
	struct held_key *h;
	if (!d->held_loaded) {
		static const char prefix[2] = {'p', TH_KEY_SEP};
		int rc = th_state_scan(d->st, prefix, 2, held_load_cb, d);
		if (rc)
			return rc < 0 ? rc : TH_ENOMEM;
		d->held_loaded = true;
	}
	HASH_FIND(hh, d->held_keys, pk, pkl, h);
	*has = h != NULL;
	return 0;
}

void th_detect_enrich(struct th_detector *d, const char *ip, struct th_netinfo *out)
{
	/* "" bypasses the cache: an unused slot holds "" too, with a zeroed
	 * (service) verdict, which would exclude a call that has no source. */
	if (!ip || !*ip || !d->ipcache || strlen(ip) >= sizeof(d->ipcache[0].ip)) {
		th_enrich_lookup(d->en, ip, out);
		return;
	}
	struct ip_slot *s = &d->ipcache[str_hash(ip) & (IPCACHE_SIZE - 1)];
	if (strcmp(s->ip, ip) != 0) {
		th_enrich_lookup(d->en, ip, &s->ni);
		th_strlcpy(s->ip, ip, sizeof(s->ip));
	}
	*out = s->ni;
}

/* Earliest event time of the account (activation period); t = 0 only reads. */
int th_detect_account_seen(struct th_detector *d, const char *acct, int64_t t, int64_t *first)
{
	struct acct_first *a;
	size_t alen = strlen(acct);
	int rc;
	HASH_FIND(hh, d->accounts, acct, alen, a);
	if (!a) {
		if (HASH_COUNT(d->accounts) >= ACCOUNTS_MAX)
			th_detect_clear_accounts(d); /* all written through: nothing lost */
		const void *v;
		size_t n;
		struct th_rbuf r;
		size_t kl = th_key(d->k1, sizeof(d->k1), 'a', 1, acct);
		a = calloc(1, sizeof(*a) + alen + 1);
		if (!a)
			return TH_ENOMEM;
		memcpy(a->acct, acct, alen);
		rc = th_state_get(d->st, d->k1, kl, &v, &n);
		if (rc == 0) {
			th_rbuf_init(&r, v, n);
			if (th_get_u8(&r) == TH_REC_VERSION)
				a->first_ms = th_get_time(&r);
		} else if (rc != TH_ENOTFOUND) {
			free(a);
			return rc;
		}
		HASH_ADD(hh, d->accounts, acct, alen, a);
	}
	if (t && (!a->first_ms || t < a->first_ms)) {
		a->first_ms = t;
		size_t kl = th_key(d->k1, sizeof(d->k1), 'a', 1, acct);
		th_wbuf_reset(&d->w);
		th_put_u8(&d->w, TH_REC_VERSION);
		th_put_i64(&d->w, t);
		if ((rc = th_detect_put(d, d->k1, kl)))
			return rc;
	}
	*first = a->first_ms;
	return 0;
}

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


int th_dmem_put(struct th_detector *d, const char *key, size_t klen)
{
	if (d->w.oom)
		return TH_ENOMEM;
	return th_state_put(d->st, key, klen, d->w.p, d->w.len);
}

/* ---- the event-time clock (persisted so a rollback restores it) ---- */

static const char CLOCK_KEY[] = "w";

int th_dmem_clock_load(struct th_detector *d)
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
			d->clock.watermark = th_get_i64(&r);
			d->clock.next_expiry = th_get_i64(&r);
			d->clock.next_prune = th_get_i64(&r);
		}
	} else if (rc != TH_ENOTFOUND) {
		return rc;
	}
	d->clock_loaded = true;
	return 0;
}

int th_dmem_clock_save(struct th_detector *d)
{
	th_wbuf_reset(&d->w);
	th_put_u8(&d->w, TH_REC_VERSION);
	th_put_i64(&d->w, d->clock.watermark);
	th_put_i64(&d->w, d->clock.next_expiry);
	th_put_i64(&d->w, d->clock.next_prune);
	return th_dmem_put(d, CLOCK_KEY, 1);
}

/* ---- records ---- */


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
	o->payload = malloc(type == 'k' ? sizeof(struct th_token) : sizeof(struct th_role));
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
		free(o->payload);
		free(o);
		*found = rc;
		return NULL;
	}
	int ok = rc == 0 && (type == 'k' ? th_token_decode(v, n, o->payload)
					 : th_role_decode(v, n, o->payload)) == 0;
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

int th_dmem_flush(struct th_detector *d)
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
		int rc = th_dmem_put(d, o->key, o->klen);
		if (rc)
			return rc;
		o->dirty = false;
	}
	return 0;
}

void th_dmem_clear_objects(struct th_detector *d)
{
	struct obj *o, *tmp;
	d->last_tok = d->last_role = NULL;
	HASH_ITER(hh, d->objs, o, tmp)
	{
		HASH_DEL(d->objs, o);
		free(o->payload);
		free(o);
	}
	d->nobjs = 0;
}

static void obj_mark(struct th_detector *d, const char *key, size_t klen)
{
	struct obj *o;
	HASH_FIND(hh, d->objs, key, klen, o);
	if (o)
		o->dirty = o->exists = true;
}

/* Returns 1 (found), 0 (new, empty) or a negative error; *ro points into the cache. */
int th_dmem_load_role(struct th_detector *d, const char *arn, struct th_role **ro)
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

int th_dmem_save_role(struct th_detector *d, const char *arn, const struct th_role *ro)
{
	if (d->last_role && d->last_role->payload == ro) {
		d->last_role->dirty = d->last_role->exists = true;
		return 0;
	}
	size_t kl = th_key(d->k1, sizeof(d->k1), 'r', 1, arn);
	obj_mark(d, d->k1, kl);
	return 0;
}

int th_dmem_load_token(struct th_detector *d, const char *acct, const char *akid,
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

int th_dmem_save_token(struct th_detector *d, const char *acct, const char *akid,
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

int th_dmem_load_sighting(struct th_detector *d, char type, const char *a, const char *b,
			 struct th_sighting *s)
{
	const void *v;
	size_t n;
	size_t kl = th_key(d->k2, sizeof(d->k2), type, 2, a, b);
	int rc = th_state_get(d->st, d->k2, kl, &v, &n);
	if (rc == 0 && th_sighting_decode(v, n, s) == 0)
		return 1;
	memset(s, 0, sizeof(*s));
	return rc == TH_ENOTFOUND || rc == 0 ? 0 : rc;
}

int th_dmem_teach_sighting(struct th_detector *d, char type, const char *a, const char *b,
			  const char *key, int64_t t)
{
	struct th_sighting s;
	int rc = th_dmem_load_sighting(d, type, a, b, &s);
	if (rc < 0)
		return rc;
	th_sighting_update(&s, key, t);
	th_wbuf_reset(&d->w);
	th_sighting_encode(&d->w, &s);
	return th_dmem_put(d, d->k2, strlen(d->k2));
}

void th_dmem_asn_str(char *buf, size_t n, uint32_t asn)
{
	snprintf(buf, n, "%u", asn);
}

int th_dmem_teach_account_asn(struct th_detector *d, const char *acct, uint32_t asn, int64_t t)
{
	char a[16];
	if (!asn || !acct)
		return 0;
	th_dmem_asn_str(a, sizeof(a), asn);
	return th_dmem_teach_sighting(d, 'b', acct, a, "", t);
}

void th_dmem_clear_accounts(struct th_detector *d)
{
	struct acct_first *a, *tmp;
	HASH_ITER(hh, d->accounts, a, tmp)
	{
		HASH_DEL(d->accounts, a);
		free(a);
	}
}

void th_dmem_clear_held(struct th_detector *d)
{
	struct held_key *h, *tmp;
	HASH_ITER(hh, d->held_keys, h, tmp)
	{
		HASH_DEL(d->held_keys, h);
		free(h);
	}
	d->held_loaded = false;
}

int th_dmem_held_add(struct th_detector *d, const char *pk, size_t pkl, int64_t expiry)
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

void th_dmem_held_remove(struct th_detector *d, const char *pk, size_t pkl)
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
	int64_t expiry = th_get_u8(&r) == TH_REC_VERSION ? th_get_i64(&r) : 0;
	return th_dmem_held_add(ctx, key, klen, expiry);
}

/* Whether the state key "p|acct|akid" exists, answered from memory. */
int th_dmem_held_has(struct th_detector *d, const char *pk, size_t pkl, bool *has)
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

void th_dmem_enrich(struct th_detector *d, const char *ip, struct th_netinfo *out)
{
	/* "" bypasses the cache: an unused slot holds "" too, with a zeroed
	 * (service) verdict, which would exclude a call that has no source. */
	if (!ip || !*ip || !d->ipcache || strlen(ip) >= sizeof(d->ipcache[0].ip)) {
		th_enrich_lookup(d->en, ip, out);
		return;
	}
	uint32_t h = 2166136261u;
	for (const char *p = ip; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	struct ip_slot *s = &d->ipcache[h & (IPCACHE_SIZE - 1)];
	if (strcmp(s->ip, ip) != 0) {
		th_enrich_lookup(d->en, ip, &s->ni);
		th_strlcpy(s->ip, ip, sizeof(s->ip));
	}
	*out = s->ni;
}

/* Earliest event time of the account (activation period); t = 0 only reads. */
int th_dmem_account_seen(struct th_detector *d, const char *acct, int64_t t, int64_t *first)
{
	struct acct_first *a;
	size_t alen = strlen(acct);
	int rc;
	HASH_FIND(hh, d->accounts, acct, alen, a);
	if (!a) {
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
				a->first_ms = th_get_i64(&r);
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
		if ((rc = th_dmem_put(d, d->k1, kl)))
			return rc;
	}
	*first = a->first_ms;
	return 0;
}

/*
 * Holds and upgrades (detect.h): a remote use of a key not yet known waits
 * ("p" records, indexed by role in "q") until its issuance, its assumption or
 * its role's function is learned, or until the hold ends; a remote alert is
 * upgraded when the key's inside use turns up, and a key decided as a
 * function's token is decided again when an identity's AssumeRole of it
 * arrives. The held keys to decide are found by one routine:
 * collect them (a role's index, or the in-memory mirror), then resolve each.
 */
#include "trailhound/detect.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detect_int.h"

/* Remember a token's remote decision, so later evidence can decide the
 * call again: an inside use (upgrade to variation 1) or an AssumeRole by an
 * identity (the key was never the function's: variations 5-6). Raised alerts
 * keep their ID (empty when activation or dedup suppressed the alert: there
 * is no earlier alert to name, but the call must still be re-decided to give
 * what the other arrival order gives). Suppressed decisions are kept once per
 * (ASN, AWS region, VPC endpoint, user agent), the facts a verdict depends
 * on, and give way to raised ones when the slots are full. */
int th_detect_remember_decision(struct th_token *t, int variation, const char *alert_id,
				const struct th_call *c)
{
	int slot = -1;
	bool raised = alert_id && alert_id[0];
	for (int i = 0; i < t->n_alerts; i++) {
		const struct th_alert_ref *r = &t->alerts[i];
		if (r->alert_id[0])
			continue;
		if (slot < 0)
			slot = i; /* a suppressed one a raised one may replace */
		if (!raised && r->call.asn == c->asn && streq(r->call.src_region, c->src_region) &&
		    streq(r->call.vpce_id, c->vpce_id) && streq(r->call.user_agent, c->user_agent))
			return 0;
	}
	if (th_token_alerts_room(t))
		return TH_ENOMEM;
	if (t->n_alerts < TH_TOKEN_MAX_ALERTS)
		slot = t->n_alerts++;
	else if (!raised || slot < 0)
		return 0;
	struct th_alert_ref *r = &t->alerts[slot];
	r->variation = (uint8_t)variation;
	r->upgraded = 0;
	th_strlcpy(r->alert_id, raised ? alert_id : "", sizeof(r->alert_id));
	r->call = *c;
	return 0;
}

/* An inside use arrived: earlier remote alerts of the key become variation 1. */
int th_detect_upgrade_alerts(struct th_detector *d, const char *acct, const char *akid,
			     struct th_token *t)
{
	int n = t->n_alerts;
	for (int i = 0; i < n; i++) {
		struct th_alert_ref *r = &t->alerts[i];
		/* Only what the descriptor calls upgradable (variation 1 has
		 * nothing stronger). */
		const struct th_variation *v = d->by_id[r->variation];
		if (r->upgraded || !v || !v->upgradable)
			continue;
		r->upgraded = 1;
		char prior[33], reason[400];
		struct th_call c = r->call;
		memcpy(prior, r->alert_id, sizeof(prior));
		int rc;
		if (!prior[0]) {
			/* A suppressed decision: deduplicated against another key's
			 * alert of the weaker variation, whose ledger entry does not
			 * cover the stronger one (the inside use arriving first gives
			 * variation 1 on this call), so it is decided again, naming no
			 * alert. Unless the account was still in its activation
			 * period then: that suppression is counted already. */
			int64_t first = 0;
			if ((rc = th_detect_account_seen(d, acct, 0, &first)))
				return rc;
			if (!first || c.event_time_ms - first < d->conf.activation_ms)
				continue;
		}
		struct th_role *ro;
		struct regions rs;
		rc = th_detect_load_role(d, t->role_arn, &ro);
		if (rc < 0)
			return rc;
		th_detect_regions_of(ro, th_detect_token_function(t), &rs);
		/* Judged with what is known now, as redecide_as_other does: an
		 * AWS region learned since (a late issuance there) can make the
		 * call the function's own, which the other order never alerts. */
		if (th_detect_net_verdict(&c, acct, &rs, reason, sizeof(reason)) != NET_REMOTE)
			continue;
		if ((rc = th_detect_decide(d, acct, akid, TH_CRED_TOKEN, t, t->role_arn, &c, reason,
					   prior[0] ? prior : NULL, "the key's inside use is now known")))
			return rc;
	}
	return 0;
}


int th_detect_hold_use(struct th_detector *d, const char *acct, const char *akid,
		       const char *role_arn, const struct th_call *c)
{
	struct th_held *h = &d->held;
	const void *v;
	size_t n;
	char pk[512];
	size_t pkl = th_key(pk, sizeof(pk), 'p', 2, acct, akid);
	int rc = th_state_get(d->st, pk, pkl, &v, &n);
	if (rc == 0) {
		if (th_held_decode(v, n, h))
			th_held_clear(h);
	} else if (rc == TH_ENOTFOUND) {
		bool dummy;
		if ((rc = th_detect_held_has(d, pk, pkl, &dummy)))
			return rc;
		th_held_clear(h);
		th_strlcpy(h->role_arn, role_arn, sizeof(h->role_arn));
		int64_t base = c->creation_ms ? c->creation_ms : c->event_time_ms;
		h->expiry_ms = base + d->conf.hold_ms;
		/* index by role, so learning about the role finds its held keys */
		size_t ql = th_key(d->k2, sizeof(d->k2), 'q', 3, role_arn, acct, akid);
		if ((rc = th_state_put(d->st, d->k2, ql, "", 0)))
			return rc;
	} else {
		return rc;
	}
	if (h->expiry_ms < c->event_time_ms + HOLD_FLOOR_MS)
		h->expiry_ms = c->event_time_ms + HOLD_FLOOR_MS;
	/* Keep the first uses per distinct (ASN, user agent); later repeats add
	 * nothing a decision needs. */
	bool dup = false;
	for (int i = 0; i < h->n && !dup; i++)
		dup = h->calls[i].asn == c->asn && strcmp(h->calls[i].user_agent, c->user_agent) == 0 &&
		      strcmp(h->calls[i].vpce_id, c->vpce_id) == 0 &&
		      /* not an inside use kept with them (th_detect_hold_inside) */
		      h->calls[i].net_kind == c->net_kind &&
		      strcmp(h->calls[i].src_region, c->src_region) == 0;
	if (!dup && h->n < TH_HELD_MAX)
		h->calls[h->n++] = *c;
	if (c->net_kind == TH_NET_PUBLIC && c->asn) {
		int i;
		for (i = 0; i < h->n_asns; i++)
			if (h->asns[i] == c->asn)
				break;
		if (i < h->n_asns) {
			if (c->event_time_ms > h->asn_ms[i])
				h->asn_ms[i] = c->event_time_ms;
		} else if (h->n_asns < TH_HELD_MAX) {
			h->asns[h->n_asns] = c->asn;
			h->asn_ms[h->n_asns++] = c->event_time_ms;
		}
	}
	d->stats.held++;
	if ((rc = th_detect_held_add(d, pk, pkl, h->expiry_ms)))
		return rc;
	th_wbuf_reset(&d->w);
	th_held_encode(&d->w, h);
	return th_detect_put(d, pk, pkl);
}

/* An inside use of a key whose remote use is held: kept with the held uses, so
 * that when the key becomes known its remote uses are judged with both
 * networks, as when the issuance arrives first (spec §3, order independence:
 * the inside use arriving after the remote one upgrades it). Does not move
 * the hold's end. A key with no hold is left alone, unless @p role_arn is
 * given (the key's role is known as Lambda's): then the inside use starts a
 * hold of its own, so a remote use after it, decided when the key becomes
 * known, still sees both networks (variation 1, as in the issuance-first
 * order). Keys of other roles (every EC2/ECS session) are not remembered. */
int th_detect_hold_inside(struct th_detector *d, const char *acct, const char *akid,
			  const char *role_arn, const struct th_call *c)
{
	struct th_held *h = &d->held;
	const void *v;
	size_t n;
	char pk[512];
	size_t pkl = th_key(pk, sizeof(pk), 'p', 2, acct, akid);
	bool has;
	int rc = th_detect_held_has(d, pk, pkl, &has);
	if (rc)
		return rc;
	if (!has && role_arn) {
		th_held_clear(h);
		th_strlcpy(h->role_arn, role_arn, sizeof(h->role_arn));
		h->expiry_ms = (c->creation_ms ? c->creation_ms : c->event_time_ms) + d->conf.hold_ms;
		if (h->expiry_ms < c->event_time_ms + HOLD_FLOOR_MS)
			h->expiry_ms = c->event_time_ms + HOLD_FLOOR_MS;
		size_t ql = th_key(d->k2, sizeof(d->k2), 'q', 3, role_arn, acct, akid);
		if ((rc = th_state_put(d->st, d->k2, ql, "", 0)))
			return rc;
		h->calls[h->n++] = *c;
		if ((rc = th_detect_held_add(d, pk, pkl, h->expiry_ms)))
			return rc;
		th_wbuf_reset(&d->w);
		th_held_encode(&d->w, h);
		return th_detect_put(d, pk, pkl);
	}
	if (!has)
		return 0;
	rc = th_state_get(d->st, pk, pkl, &v, &n);
	if (rc == TH_ENOTFOUND)
		return 0;
	if (rc)
		return rc;
	if (th_held_decode(v, n, h))
		return 0;
	/* One inside use per network is all a decision needs. */
	for (int i = 0; i < h->n; i++)
		if (h->calls[i].asn == c->asn && h->calls[i].net_kind == c->net_kind &&
		    streq(h->calls[i].src_region, c->src_region) && streq(h->calls[i].vpce_id, c->vpce_id))
			return 0;
	if (h->n >= TH_HELD_MAX)
		return 0;
	h->calls[h->n++] = *c;
	th_wbuf_reset(&d->w);
	th_held_encode(&d->w, h);
	return th_detect_put(d, pk, pkl);
}

/* Decide the held uses of one key if its credential is now known (or, when
 * @p expire, as whatever is known at the end of the hold). */
int th_detect_resolve_key(struct th_detector *d, const char *acct, const char *akid, bool expire)
{
	struct th_held *h = &d->held;
	struct th_token *t;
	struct th_role *ro;
	const void *v;
	size_t n;
	char pk[512], reason[400];
	size_t pkl = th_key(pk, sizeof(pk), 'p', 2, acct, akid);
	bool has;
	int rc = th_detect_held_has(d, pk, pkl, &has);
	if (rc || !has)
		return rc;
	rc = th_state_get(d->st, pk, pkl, &v, &n);
	if (rc == TH_ENOTFOUND) {
		th_detect_held_remove(d, pk, pkl);
		return 0;
	}
	if (rc)
		return rc;
	if (th_held_decode(v, n, h)) {
		th_held_clear(h);
		goto drop;
	}
	int role_found = th_detect_load_role(d, h->role_arn, &ro);
	if (role_found < 0)
		return role_found;
	int tok_found = th_detect_load_token(d, acct, akid, &t);
	if (tok_found < 0)
		return tok_found;
	if (!role_found || !ro->is_lambda) {
		if (!expire)
			return 0;
		/* Never Lambda's: an ordinary session, whose networks teach the baseline. */
		for (int i = 0; i < h->n_asns; i++)
			if ((rc = th_detect_teach_account_asn(d, acct, h->asns[i], h->asn_ms[i])))
				return rc;
		d->stats.held_expired++;
		goto drop;
	}
	enum th_cred_class cls =
		th_detect_classify(ro, true, t, tok_found, h->n ? h->calls[0].session : NULL);
	if (cls == TH_CRED_UNKNOWN) {
		if (!expire)
			return 0;
		/* The role is Lambda's but nothing ties the key to a function or an
		 * identity: judged as another identity's session, identity unknown. */
		cls = TH_CRED_OTHER;
	}
	/* Only inside uses waited (th_detect_hold_inside): nothing to decide.
	 * At the end of the hold they are forgotten, as an inside use of an
	 * unknown key always was; once the key is known they count on it. */
	bool any_remote = false;
	for (int i = 0; i < h->n && !any_remote; i++) {
		struct th_call c = h->calls[i];
		struct regions rs;
		th_detect_regions_of(ro, cls == TH_CRED_TOKEN ? th_detect_token_function(t) : NULL, &rs);
		any_remote = th_detect_net_verdict(&c, acct, &rs, reason, sizeof(reason)) == NET_REMOTE;
	}
	if (!any_remote && expire)
		goto drop;
	if (!tok_found) {
		th_strlcpy(t->role_arn, h->role_arn, sizeof(t->role_arn));
		if (h->n)
			th_strlcpy(t->session, h->calls[0].session, sizeof(t->session));
	}
	if (any_remote)
		d->stats.held_resolved++;
	/* Inside uses first (th_detect_hold_inside): a remote use is judged with
	 * every network the key was seen in while it waited. */
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < h->n; i++) {
			struct th_call c = h->calls[i];
			struct regions rs;
			th_detect_regions_of(ro, cls == TH_CRED_TOKEN ? th_detect_token_function(t) : NULL,
					     &rs);
			enum verdict vd = th_detect_net_verdict(&c, acct, &rs, reason, sizeof(reason));
			if ((pass == 0) != (vd == NET_INSIDE))
				continue;
			th_detect_token_record_use(d, t, &c, vd);
			if (vd == NET_REMOTE && (rc = th_detect_decide(d, acct, akid, cls, t, h->role_arn, &c,
								      reason, NULL, NULL)))
				return rc;
		}
	}
	/* What process_call teaches for another session's call, once the
	 * session is decided (after its own decisions: a session is no
	 * evidence for itself): the role's training must not depend on whether
	 * the use arrived before its AssumeRole. Only a session whose AssumeRole
	 * is known, as in process_call: a key judged another session only
	 * because its hold ended (identity unknown) may be a stolen token. */
	if (cls == TH_CRED_OTHER && tok_found && t->origin == TH_ORIGIN_ASSUMED) {
		for (int i = 0; i < h->n_asns; i++) {
			char asn[16];
			th_detect_asn_str(asn, sizeof(asn), h->asns[i]);
			if ((rc = th_detect_teach_sighting(d, 'n', h->role_arn, asn, akid, h->asn_ms[i])))
				return rc;
		}
	}
	if ((rc = th_detect_save_token(d, acct, akid, t)))
		return rc;
drop:
	th_detect_held_remove(d, pk, pkl);
	if ((rc = th_state_del(d->st, pk, pkl)))
		return rc;
	size_t ql = th_key(d->k2, sizeof(d->k2), 'q', 3, h->role_arn, acct, akid);
	return th_state_del(d->st, d->k2, ql);
}

/* ---- the held keys to decide: collect them, then resolve each ---- */

struct collect_ctx {
	struct th_detector *d;
	size_t skip; /* prefix length to drop from each key */
};

static int collect_cb(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct collect_ctx *cc = ctx;
	struct th_detector *d = cc->d;
	(void)val;
	(void)vlen;
	if (d->ncollected >= MAX_RESOLVE)
		return 1;
	if (klen - cc->skip >= sizeof(d->collected[0]))
		return 0;
	memcpy(d->collected[d->ncollected], (const char *)key + cc->skip, klen - cc->skip);
	d->collected[d->ncollected][klen - cc->skip] = '\0';
	d->ncollected++;
	return 0;
}

/* The keys held under a role (its "q" index), into d->collected. */
static int collect_role(struct th_detector *d, const char *role_arn)
{
	char prefix[512];
	size_t pl = th_key(prefix, sizeof(prefix), 'q', 1, role_arn);
	prefix[pl++] = TH_KEY_SEP;
	struct collect_ctx cc = {.d = d, .skip = pl};
	d->ncollected = 0;
	int rc = th_state_scan(d->st, prefix, pl, collect_cb, &cc);
	return rc < 0 ? rc : 0;
}

/* The keys whose holds end by @p before (the in-memory mirror), into
 * d->collected, sorted: the alert order must not depend on hash order. */
static void collect_expiring(struct th_detector *d, int64_t before)
{
	struct held_key *hk, *tmp;
	d->ncollected = 0;
	HASH_ITER(hh, d->held_keys, hk, tmp)
	{
		size_t kl = strlen(hk->key);
		if (hk->expiry_ms > before || kl < 2 || kl - 2 >= sizeof(d->collected[0]))
			continue;
		if (d->ncollected >= MAX_RESOLVE)
			break;
		memcpy(d->collected[d->ncollected++], hk->key + 2, kl - 1);
	}
	qsort(d->collected, d->ncollected, sizeof(d->collected[0]),
	      (int (*)(const void *, const void *))strcmp);
}

/* "<acct>\x1f<akid>" → the two parts (in place). */
static bool split2(char *s, char **a, char **b)
{
	char *sep = strchr(s, TH_KEY_SEP);
	if (!sep)
		return false;
	*sep = '\0';
	*a = s;
	*b = sep + 1;
	return true;
}

/* Whether the hold of a key ended before @p t (no hold record: no). */
static bool hold_lapsed(struct th_detector *d, const char *acct, const char *akid, int64_t t)
{
	const void *v;
	size_t n;
	char pk[512];
	size_t pkl = th_key(pk, sizeof(pk), 'p', 2, acct, akid);
	if (th_state_get(d->st, pk, pkl, &v, &n))
		return false;
	struct th_rbuf r;
	th_rbuf_init(&r, v, n);
	return th_get_u8(&r) == TH_REC_VERSION && th_get_time(&r) < t;
}

/* Resolve the collected keys in order: every one, or with @p lapsed_before
 * only those whose hold ended before that time. */
/* may_drop: no caller holds a loaded object (the periodic sweep), so the
 * decoded objects are written and dropped whenever they pass OBJS_MAX: a
 * sweep ending thousands of holds would otherwise decode every one of their
 * keys (~5 KB each) before the next event's check. */
static int resolve_collected(struct th_detector *d, bool expire, const int64_t *lapsed_before,
			     bool may_drop)
{
	size_t n = d->ncollected;
	for (size_t i = 0; i < n; i++) {
		if (may_drop && (d->nobjs > OBJS_MAX || d->nbsights > OBJS_MAX)) {
			int rc = th_detect_flush(d);
			if (rc)
				return rc;
			th_detect_clear_objects(d);
		}
		char *acct, *akid, a[TH_KEY_PART_MAX + 1], k[TH_KEY_PART_MAX + 1];
		if (!split2(d->collected[i], &acct, &akid))
			continue;
		th_strlcpy(a, acct, sizeof(a));
		th_strlcpy(k, akid, sizeof(k));
		if (lapsed_before && !hold_lapsed(d, a, k, *lapsed_before))
			continue;
		int rc = th_detect_resolve_key(d, a, k, expire);
		if (rc)
			return rc;
	}
	return 0;
}

int th_detect_resolve_role(struct th_detector *d, const char *role_arn)
{
	int rc = collect_role(d, role_arn);
	return rc ? rc : resolve_collected(d, false, NULL, false);
}

/* Holds that lapsed before time t are decided with what was known before the
 * event at t teaches anything: called by every learning path before it
 * changes a key or a role, so the outcome does not depend on whether some
 * unrelated event happened to trigger the periodic sweep in between. */
int th_detect_expire_lapsed(struct th_detector *d, const char *acct, const char *akid,
			    const char *role_arn, int64_t t)
{
	int rc;
	if (acct && akid) {
		char pk[512];
		size_t pkl = th_key(pk, sizeof(pk), 'p', 2, acct, akid);
		bool has;
		if ((rc = th_detect_held_has(d, pk, pkl, &has)))
			return rc;
		if (has && hold_lapsed(d, acct, akid, t) &&
		    (rc = th_detect_resolve_key(d, acct, akid, true)))
			return rc;
	}
	if (!role_arn)
		return 0;
	if ((rc = collect_role(d, role_arn)))
		return rc;
	return resolve_collected(d, true, &t, false);
}

int th_detect_expire_held(struct th_detector *d, int64_t now, bool final)
{
	int64_t before = final ? INT64_MAX : now;
	bool unused;
	int rc = th_detect_held_has(d, "", 0, &unused); /* loads the in-memory mirror */
	if (rc)
		return rc;
	for (;;) {
		collect_expiring(d, before);
		size_t n = d->ncollected;
		if (n == 0)
			return 0;
		if ((rc = resolve_collected(d, true, NULL, true)))
			return rc;
		if (n < MAX_RESOLVE)
			return 0;
	}
}

/* The key, decided earlier as a Lambda token on weaker evidence (its session
 * name, or its runtime-looking use), turns out to be an identity's session:
 * decide its remembered remote calls again as the role's other session, as
 * they would have been had the AssumeRole arrived first. Each raised alert is
 * named by the new one (upgrade_of). */
int th_detect_redecide_as_other(struct th_detector *d, const char *acct, const char *akid,
				struct th_token *t, const char *role_arn, const char *was_function)
{
	char why[1400], reason[400]; /* why names an identity ARN (up to 2048 bytes, cut) */
	struct th_role *ro;
	struct regions rs;
	int rc = th_detect_load_role(d, role_arn, &ro);
	if (rc < 0)
		return rc;
	th_detect_regions_of(ro, NULL, &rs);
	snprintf(why, sizeof(why),
		 "the key was assumed by %s, so it is the role's other session, not function "
		 "%s's token",
		 t->identity[0] ? t->identity : "an identity",
		 was_function[0] ? was_function : "?");
	int n = t->n_alerts;
	for (int i = 0; i < n; i++) {
		struct th_alert_ref *r = &t->alerts[i];
		if (r->upgraded == 2)
			continue;
		r->upgraded = 2; /* decided as another session: nothing more to upgrade */
		struct th_call c = r->call;
		char prior[33];
		memcpy(prior, r->alert_id, sizeof(prior));
		if (th_detect_net_verdict(&c, acct, &rs, reason, sizeof(reason)) != NET_REMOTE)
			continue;
		if ((rc = th_detect_decide(d, acct, akid, TH_CRED_OTHER, t, role_arn, &c, reason,
					   prior[0] ? prior : NULL, why)))
			return rc;
		/* What process_call teaches for another session's call. */
		if (c.net_kind == TH_NET_PUBLIC && c.asn) {
			char asn[16];
			th_detect_asn_str(asn, sizeof(asn), c.asn);
			rc = th_detect_teach_sighting(d, 'n', role_arn, asn, akid, c.event_time_ms);
			if (rc)
				return rc;
		}
	}
	return 0;
}

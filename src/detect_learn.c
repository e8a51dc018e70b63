/*
 * Learning (detect.h): what events teach about credentials and roles.
 * Lambda's sts:AssumeRole issues a function's token (or a poller's); an
 * AssumeRole by any other identity makes the key that identity's session;
 * lambda:CreateFunction/UpdateFunctionConfiguration ties a function to its
 * role; and every use of a known key adds to its history. What is learned
 * may decide held uses and re-decide earlier ones (detect_hold.c).
 */
#include "trailhound/detect.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detect_int.h"

/* Counts each distinct source address once: the first TH_TOKEN_MAX_IPS are
 * kept (inspect lists them), later ones by hash. An address not counted
 * again at every use keeps distinct_ips a count an analyst can read: a
 * stolen key used a thousand times from one address past the kept ones is
 * one more address, not a thousand. Counting stops when the hashes are full
 * (64 addresses). */
static void record_address(struct th_token *t, const char *ip)
{
	for (int i = 0; i < t->n_ips; i++)
		if (strcmp(t->ips[i], ip) == 0)
			return;
	if (t->n_ips < TH_TOKEN_MAX_IPS) {
		th_strlcpy(t->ips[t->n_ips++], ip, sizeof(t->ips[0]));
		t->distinct_ips++;
		return;
	}
	uint32_t h = str_hash(ip);
	for (int i = 0; i < t->n_ip_hashes; i++)
		if (t->ip_hashes[i] == h)
			return;
	if (t->n_ip_hashes < TH_TOKEN_MAX_IP_HASHES) {
		t->ip_hashes[t->n_ip_hashes++] = h;
		t->distinct_ips++;
	}
}

void th_detect_token_record_use(const struct th_detector *d, struct th_token *t,
				const struct th_call *c, enum verdict vd)
{
	int64_t tm = c->event_time_ms;
	if (!t->first_seen_ms || tm < t->first_seen_ms)
		t->first_seen_ms = tm;
	if (tm > t->last_seen_ms)
		t->last_seen_ms = tm;
	if (!t->issued_ms && c->creation_ms)
		t->issued_ms = c->creation_ms;
	if (!t->expiry_ms && c->creation_ms)
		t->expiry_ms = c->creation_ms + d->conf.hold_ms;
	if (vd == NET_INSIDE)
		t->inside++;
	else if (vd == NET_REMOTE)
		t->outside++;
	record_address(t, c->source_ip);
	char name[96];
	const char *svc = c->event_source;
	const char *dot = strstr(svc, ".amazonaws.com");
	size_t sl = dot ? (size_t)(dot - svc) : strlen(svc);
	/* the service in at most 40 bytes, the name in the rest; a cut says so
	 * (the names are evidence in the alert's history.api_calls) */
	sl = th_copy_utf8n_mark(name, 41, svc, sl);
	name[sl] = ':';
	th_copy_utf8_mark(name + sl + 1, sizeof(name) - sl - 1, c->event_name);
	int oldest = -1;
	for (int i = 0; i < t->n_calls; i++) {
		if (strcmp(t->calls[i].name, name) == 0) {
			t->calls[i].count++;
			if (tm > t->calls[i].last_ms)
				t->calls[i].last_ms = tm;
			return;
		}
		if (oldest < 0 || t->calls[i].last_ms < t->calls[oldest].last_ms)
			oldest = i;
	}
	int slot = t->n_calls < TH_TOKEN_MAX_CALLS ? t->n_calls++ : oldest;
	th_strlcpy(t->calls[slot].name, name, sizeof(t->calls[slot].name));
	t->calls[slot].count = 1;
	t->calls[slot].last_ms = tm;
}

/* Moves the function's last sighting to t when the role is written anyway
 * (@p saving) or the sighting is a month old; returns whether it moved. */
static bool function_seen(struct th_role *ro, int fi, int64_t t, bool saving)
{
	if (fi < 0)
		return false;
	struct th_role_function *f = &ro->functions[fi];
	if (t <= f->last_seen_ms || (!saving && t < f->last_seen_ms + FUNCTION_TOUCH_MS))
		return false;
	f->last_seen_ms = t;
	return true;
}

/* A credential's expiry from an AssumeRole response, within what STS can
 * issue (at most hold_ms, 12 hours by default): a record claiming more (or an expiry before its
 * own event) must not keep the key, or prune it, on its say-so. */
static int64_t issued_expiry(const struct th_detector *d, const struct th_event *ev)
{
	int64_t t = ev->event_time_ms, e = ev->cred.expiration_ms;
	return e > t && e <= t + d->conf.hold_ms ? e : t + d->conf.hold_ms;
}

/* Lambda's sts:AssumeRole: credentials for a function, or for one of
 * Lambda's own service sessions (an event-source poller). Either way the key
 * is a Lambda credential, judged as a Lambda token when used remotely (spec
 * v2); a poller session names no function, so it is judged against the
 * role's regions and teaches no function. */
int th_detect_learn_issuance(struct th_detector *d, const struct th_event *ev, const char *acct)
{
	struct th_role *ro;
	struct th_token *t;
	const char *role_arn = ev->req.role_arn, *sess = ev->req.role_session_name;
	const char *akid = ev->cred.access_key_id;
	int rc, found;
	bool changed = false;
	if ((found = th_detect_load_role(d, role_arn, &ro)) < 0)
		return found;
	/* A function may carry a poller-shaped name; once it is known (function
	 * management), its issuance is a function's. */
	bool poller = !sess || !*sess ||
		      (th_detect_is_poller_name(sess) && (!found || th_role_find_function(ro, sess) < 0));
	/* Only a change to the role can decide other keys' holds; checking the
	 * role's held keys on every issuance would cost a scan per event. */
	bool will_change = !found || !ro->is_lambda;
	if (!will_change) {
		uint64_t bit = th_role_region_bit(ro, ev->aws_region);
		int i = poller ? -1 : th_role_find_function(ro, sess);
		uint64_t known = poller ? ro->service_regions : i >= 0 ? ro->functions[i].regions : 0;
		/* awsRegion is optional in a record (NULL when absent): no
		 * region, nothing to learn of it */
		bool region = ev->aws_region && *ev->aws_region;
		will_change = (!poller && i < 0) || (region && !(known & bit));
	}
	if ((rc = th_detect_expire_lapsed(d, acct, akid, will_change ? role_arn : NULL,
					  ev->event_time_ms)))
		return rc;
	if ((found = th_detect_load_role(d, role_arn, &ro)) < 0)
		return found;
	if (!found)
		ro->first_seen_ms = ev->event_time_ms;
	if (!ro->is_lambda) {
		ro->is_lambda = 1;
		changed = true;
	}
	bool seen = false; /* a function's sighting moved: written, decides nothing */
	if (poller)
		th_role_add_service_region(ro, ev->aws_region, &changed);
	else
		seen = function_seen(ro, th_role_add_function(ro, sess, ev->aws_region, &changed),
				     ev->event_time_ms, changed);
	if ((changed || seen) && ev->event_time_ms > ro->last_seen_ms)
		ro->last_seen_ms = ev->event_time_ms;
	if ((rc = changed || seen ? th_detect_save_role(d, role_arn, ro)
				  : th_detect_touch_role(d, role_arn, ro, ev->event_time_ms)))
		return rc;
	if (akid && *akid) {
		int tf = th_detect_load_token(d, acct, akid, &t);
		if (tf < 0)
			return tf;
		/* An AssumeRole by an identity decides whichever arrives first:
		 * "an assumer other than Lambda decides" (one key has one issuer in
		 * real CloudTrail, so only a forged record gets here). */
		if (tf == 0 || t->origin != TH_ORIGIN_ASSUMED) {
			t->origin = TH_ORIGIN_ISSUED;
			th_strlcpy(t->role_arn, role_arn, sizeof(t->role_arn));
			th_strlcpy(t->session, sess, sizeof(t->session));
			th_strlcpy(t->function, poller ? NULL : sess, sizeof(t->function));
			t->issued_ms = ev->event_time_ms;
			t->expiry_ms = issued_expiry(d, ev);
			if ((rc = th_detect_save_token(d, acct, akid, t)))
				return rc;
		}
		if ((rc = th_detect_resolve_key(d, acct, akid, false)))
			return rc;
	}
	return changed ? th_detect_resolve_role(d, role_arn) : 0;
}

/* sts:AssumeRole by an identity: the key is that identity's session,
 * whatever its name (spec v2: a session named after a function, or
 * "awslambda_...", is still the role's other session). */
int th_detect_learn_assumption(struct th_detector *d, const struct th_event *ev, const char *acct)
{
	struct th_token *t;
	const char *akid = ev->cred.access_key_id;
	/* A service that assumed the role has no ARN: it is named by invokedBy. */
	const char *who = ev->ui.arn           ? ev->ui.arn
			  : ev->ui.invoked_by   ? ev->ui.invoked_by
			  : ev->ui.principal_id ? ev->ui.principal_id
						: ev->ui.type;
	char was_role[sizeof(t->role_arn)], was_function[sizeof(t->function)];
	int rc;
	/* The credentials belong to the role's account (which may differ from
	 * the caller's); their uses are keyed by the role's account. */
	char racct[16] = "";
	const char *p = strstr(ev->req.role_arn, ":iam::");
	if (p && sscanf(p + 6, "%15[0-9]", racct) == 1)
		acct = racct;
	if ((rc = th_detect_expire_lapsed(d, acct, akid, NULL, ev->event_time_ms)))
		return rc;
	if ((rc = th_detect_teach_sighting(d, 'i', ev->req.role_arn, who ? who : "unknown", akid,
					   ev->event_time_ms)))
		return rc;
	int found = th_detect_load_token(d, acct, akid, &t);
	if (found < 0)
		return found;
	/* Decided as a Lambda token before this arrived: decide it again. */
	bool was_token = found && t->origin != TH_ORIGIN_UNKNOWN && t->origin != TH_ORIGIN_ASSUMED;
	th_strlcpy(was_role, t->role_arn[0] ? t->role_arn : ev->req.role_arn, sizeof(was_role));
	th_strlcpy(was_function, t->function, sizeof(was_function));
	t->origin = TH_ORIGIN_ASSUMED;
	th_strlcpy(t->role_arn, ev->req.role_arn, sizeof(t->role_arn));
	th_strlcpy(t->session, ev->req.role_session_name, sizeof(t->session));
	th_strlcpy(t->identity, who, sizeof(t->identity));
	t->function[0] = '\0';
	t->issued_ms = ev->event_time_ms;
	t->expiry_ms = issued_expiry(d, ev);
	if (was_token && (rc = th_detect_redecide_as_other(d, acct, akid, t, was_role, was_function)))
		return rc;
	if ((rc = th_detect_save_token(d, acct, akid, t)))
		return rc;
	return th_detect_resolve_key(d, acct, akid, false);
}

/* sts:AssumeRoleWithWebIdentity / AssumeRoleWithSAML: a federated caller's
 * session, learned like an AssumeRole by an identity, but only where it can
 * matter: the role is known as Lambda's, or the key's use already waits for
 * it. Web identities (every Cognito app user, every EKS pod) assume roles at
 * a volume that would otherwise fill the store with sessions of roles that
 * are nobody's Lambda role. */
int th_detect_learn_federated(struct th_detector *d, const struct th_event *ev, const char *acct)
{
	struct th_role *ro;
	const char *akid = ev->cred.access_key_id;
	char racct[16] = "", pk[512];
	const char *p = strstr(ev->req.role_arn, ":iam::");
	if (p && sscanf(p + 6, "%15[0-9]", racct) == 1)
		acct = racct;
	int found = th_detect_load_role(d, ev->req.role_arn, &ro);
	if (found < 0)
		return found;
	bool wanted = found && ro->is_lambda;
	if (!wanted) {
		size_t pkl = th_key(pk, sizeof(pk), 'p', 2, acct, akid);
		int rc = th_detect_held_has(d, pk, pkl, &wanted);
		if (rc)
			return rc;
	}
	return wanted ? th_detect_learn_assumption(d, ev, acct) : 0;
}

/* lambda:CreateFunction* / UpdateFunctionConfiguration*: role → function. */
int th_detect_learn_function(struct th_detector *d, const struct th_event *ev)
{
	struct th_role *ro;
	const char *fn = ev->req.function_name;
	char name[128];
	/* functionName may be a name, a partial or a full ARN. */
	const char *p = strstr(fn, ":function:");
	if (p) {
		p += strlen(":function:");
		size_t n = strcspn(p, ":");
		snprintf(name, sizeof(name), "%.*s", (int)n, p);
	} else {
		th_strlcpy(name, fn, sizeof(name));
	}
	int rc, found;
	if ((rc = th_detect_expire_lapsed(d, NULL, NULL, ev->req.role, ev->event_time_ms)))
		return rc;
	if ((found = th_detect_load_role(d, ev->req.role, &ro)) < 0)
		return found;
	if (!found)
		ro->first_seen_ms = ev->event_time_ms;
	ro->is_lambda = 1;
	if (ev->event_time_ms > ro->last_seen_ms)
		ro->last_seen_ms = ev->event_time_ms;
	bool changed = false;
	function_seen(ro, th_role_add_function(ro, name, ev->aws_region, &changed),
		      ev->event_time_ms, true);
	if ((rc = th_detect_save_role(d, ev->req.role, ro)))
		return rc;
	return th_detect_resolve_role(d, ev->req.role);
}

/* Runtime learning: a call of the function's SDK from inside its
 * environment names the function (its session) and vouches for the key. The
 * user agent only labels the benign side; the network must agree. Updates
 * @p k (reloading what deciding lapsed holds may have changed). */
int th_detect_learn_runtime(struct th_detector *d, const struct th_event *ev, const char *acct,
			    const char *role_arn, const char *session, struct th_detect_known *k)
{
	const char *akid = ev->ui.access_key_id;
	const struct th_call *c = &d->call;
	char reason[400];
	int rc;

	int fn_idx = session && k->role_found ? th_role_find_function(k->ro, session) : -1;
	/* The session name may teach a function only while nothing better is
	 * known of the key: an AssumeRole by an identity or Lambda's issuance
	 * decides what the key is, and a poller's name is never a function. */
	bool name_may_teach = session && *session && !th_detect_is_poller_name(session) &&
			      (!k->tok_found || (k->t->origin != TH_ORIGIN_ASSUMED &&
						 k->t->origin != TH_ORIGIN_ISSUED));
	bool learns_role = name_may_teach && (!k->role_found || !k->ro->is_lambda || fn_idx < 0);
	bool learns_key = name_may_teach && (!k->tok_found || k->t->origin == TH_ORIGIN_UNKNOWN);
	/* Nothing to learn (the common case: a known function's known key) is
	 * checked first: the user-agent search is the costly part. */
	if ((learns_role || learns_key) && session && ev->user_agent &&
	    th_detect_ua_lambda_claim(d, ev->user_agent)) {
		struct regions rs;
		th_detect_regions_of(k->ro, fn_idx >= 0 ? session : NULL, &rs);
		if (th_detect_net_verdict(c, acct, &rs, reason, sizeof(reason)) == NET_INSIDE) {
			/* Rare (first sight of a function or key): decide lapsed holds
			 * first, then reload what that may have changed. */
			if ((rc = th_detect_expire_lapsed(d, acct, akid, learns_role ? role_arn : NULL,
							  ev->event_time_ms)))
				return rc;
			if ((k->role_found = th_detect_load_role(d, role_arn, &k->ro)) < 0)
				return k->role_found;
			if ((k->tok_found = th_detect_load_token(d, acct, akid, &k->t)) < 0)
				return k->tok_found;
			if (learns_role) {
				if (!k->role_found)
					k->ro->first_seen_ms = ev->event_time_ms;
				k->ro->is_lambda = 1;
				if (ev->event_time_ms > k->ro->last_seen_ms)
					k->ro->last_seen_ms = ev->event_time_ms;
				bool added = false;
				function_seen(k->ro, th_role_add_function(k->ro, session, NULL, &added),
					      ev->event_time_ms, true);
				k->role_found = 1;
				k->role_learned = true;
				if ((rc = th_detect_save_role(d, role_arn, k->ro)))
					return rc;
			}
			if (learns_key && (!k->tok_found || k->t->origin == TH_ORIGIN_UNKNOWN)) {
				k->t->origin = TH_ORIGIN_RUNTIME;
				th_strlcpy(k->t->function, session, sizeof(k->t->function));
				k->tok_found = 1;
				k->key_learned = true;
			}
		}
	}
	return 0;
}

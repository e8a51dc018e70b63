/*
 * The detector engine (detect.h): its life cycle, what happens to each
 * event, and aging as event time advances. Each step has its own file:
 * learning in detect_learn.c, classification and the judgement by the
 * variation table in detect_classify.c (the variations themselves are
 * descriptors in variations.c), holds, upgrades and re-decisions in
 * detect_hold.c, activation, dedup and the alert in detect_alert.c, and the
 * working memory in detect_memory.c.
 *
 * Per event:
 *   1. a call made with an AssumedRole ASIA key is classified: which
 *      credential (Lambda token / other session of a Lambda role / unknown),
 *      which network (inside / remote), then judged by the variations;
 *   2. the event teaches: Lambda issuance, role assumption by an identity,
 *      function management, runtime use, baselines;
 *   3. what it taught may decide uses held earlier (late attribution) or
 *      upgrade earlier alerts (an inside use after a remote one).
 * Everything is keyed by event time, and all state lives in the store, so a
 * replay of the same input gives the same alerts.
 */
#include "trailhound/detect.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detect_int.h"

void th_detect_conf_defaults(struct th_detect_conf *c)
{
	static const char *cli[] = {"aws-cli/", "^AWSPowerShell", "aws-shell", "s3cmd"};
	static const char *lam[] = {"exec-env/AWS_Lambda", "awslambda-worker/", "aws-internal/"};
	memset(c, 0, sizeof(*c));
	c->activation_ms = 14 * TH_DAY_MS;
	c->training_ms = 30 * TH_DAY_MS;
	c->dedup_ms = 7 * TH_DAY_MS;
	c->role_retention_ms = 365 * TH_DAY_MS;
	c->hold_ms = 12 * HOUR_MS;
	for (size_t i = 0; i < TH_ARRAY_SIZE(cli); i++)
		c->cli_user_agents[c->n_cli_user_agents++] = cli[i];
	for (size_t i = 0; i < TH_ARRAY_SIZE(lam); i++)
		c->lambda_user_agents[c->n_lambda_user_agents++] = lam[i];
}

int th_detector_new(struct th_detector **dp, const struct th_detect_conf *conf,
		    const struct th_enrich *en, struct th_state *st, th_alert_fn on_alert,
		    void *ctx)
{
	/* Every array indexed by variation id is TH_VARIATION_MAX + 1 long:
	 * a table with another id would write past them. */
	if (conf->variations &&
	    th_variations_check(conf->variations, conf->n_variations, NULL, 0))
		return TH_EINVAL;
	struct th_detector *d = calloc(1, sizeof(*d));
	if (!d)
		return TH_ENOMEM;
	d->collected = calloc(MAX_RESOLVE, sizeof(*d->collected));
	d->ipcache = calloc(IPCACHE_SIZE, sizeof(*d->ipcache));
	if (!d->collected || !d->ipcache) {
		free(d->collected);
		free(d->ipcache);
		free(d);
		return TH_ENOMEM;
	}
	d->conf = *conf;
	if (!d->conf.variations) {
		d->conf.variations = th_variations;
		d->conf.n_variations = th_variations_count;
	}
	for (size_t i = 0; i < d->conf.n_variations; i++) {
		const struct th_variation *v = &d->conf.variations[i];
		d->by_id[v->id >= 1 && v->id <= TH_VARIATION_MAX ? v->id : 0] = v;
	}
	d->en = en;
	d->st = st;
	d->on_alert = on_alert;
	d->ctx = ctx;
	*dp = d;
	return 0;
}


void th_detector_destroy(struct th_detector *d)
{
	if (!d)
		return;
	th_detect_clear_accounts(d);
	th_detect_clear_objects(d);
	th_detect_free_spares(d);
	th_token_free(&d->tok);
	th_detect_clear_held(d);
	th_wbuf_free(&d->w);
	free(d->ipcache);
	free(d->collected);
	free(d);
}

void th_detector_get_stats(const struct th_detector *d, struct th_detect_stats *out)
{
	*out = d->stats;
	/* a gauge, not a counter: the keys whose held uses wait right now */
	out->held_pending = d->held_loaded ? (uint64_t)HASH_COUNT(d->held_keys) : 0;
}

void th_detector_set_enrich(struct th_detector *d, const struct th_enrich *en)
{
	d->en = en;
	for (size_t i = 0; i < IPCACHE_SIZE; i++)
		d->ipcache[i].ip[0] = '\0';
}

void th_detector_reset(struct th_detector *d)
{
	th_detect_clear_accounts(d);
	th_detect_clear_objects(d);
	th_detect_clear_held(d);
	d->clock_loaded = false;
	d->clock_dirty = false;
}


struct prune_ctx {
	struct th_detector *d;
	char type;
	int64_t now, cutoff;
	int err;
};

/* How long a role is kept after its last sighting: role_retention_ms (a
 * function may run once a quarter or a year, and its role's other sessions
 * are judged only while the role is known as Lambda's), never less than the
 * lateness an event may still arrive with (DEDUP_LATENESS_MS) or the
 * training window that keeps those sessions' evidence. */
static int64_t role_window_ms(const struct th_detector *d)
{
	int64_t w = d->conf.role_retention_ms;
	if (w < d->conf.training_ms)
		w = d->conf.training_ms;
	return w > DEDUP_LATENESS_MS ? w : DEDUP_LATENESS_MS;
}

/* A role written before version 3 has no last sighting: it is given the
 * prune's time, so it stays a whole window from the upgrade unless seen. */
static int role_restamp(struct th_detector *d, const void *key, size_t klen, const void *val,
			size_t vlen, int64_t now)
{
	struct th_role ro;
	th_role_init(&ro);
	int rc = th_role_decode(val, vlen, &ro);
	if (rc == 0) {
		ro.last_seen_ms = now;
		th_wbuf_reset(&d->w);
		th_role_encode(&d->w, &ro);
		rc = th_detect_put(d, key, klen);
	} else if (rc == TH_EPARSE) {
		rc = 0; /* not a role this code wrote: left as it is */
	}
	th_role_free(&ro);
	return rc;
}

static int prune_cb(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct prune_ctx *pc = ctx;
	int64_t last = 0;
	bool drop = false;
	switch (pc->type) {
	case 'k': {
		struct th_token_life t;
		if (th_token_life(val, vlen, &t, &pc->d->tok) == 0) {
			last = t.expiry_ms > t.last_seen_ms ? t.expiry_ms : t.last_seen_ms;
			/* Keys with alerts stay for the training window, so investigators
			 * can still `inspect` them; others go a day after expiry. */
			drop = last + (t.n_alerts ? pc->d->conf.training_ms : TOKEN_GRACE_MS) <
			       pc->cutoff;
		}
		break;
	}
	case 'b':
	case 'i':
	case 'n': {
		struct th_sighting s;
		if (th_sighting_decode(val, vlen, &s) == 0) {
			last = s.last_ms > s.other_ms ? s.last_ms : s.other_ms;
			drop = last < pc->cutoff;
		}
		break;
	}
	case 'r': {
		int64_t seen;
		if (th_role_last_seen(val, vlen, &seen) != 0)
			break;
		if (!seen) {
			if ((pc->err = role_restamp(pc->d, key, klen, val, vlen, pc->now)))
				return 1;
			break;
		}
		drop = seen < pc->cutoff;
		break;
	}
	case 'd': {
		/* Whole records go once their latest alert is past the horizon;
		 * older entries of a live record are dropped when it is next
		 * written (dedup_add), and the record is bounded either way. */
		struct th_dedup dd;
		if (th_dedup_decode(val, vlen, &dd) == 0)
			drop = dd.n == 0 || dd.alerts[dd.n - 1].alert_ms <= pc->cutoff;
		break;
	}
	}
	if (drop) {
		pc->d->stats.pruned++;
		if ((pc->err = th_state_del(pc->d->st, key, klen)))
			return 1;
	}
	return 0;
}

static int prune(struct th_detector *d, int64_t now)
{
	static const struct {
		char type;
		int which; /* 0 tokens, 1 training, 2 dedup, 3 roles */
	} kinds[] = {{'k', 0}, {'b', 1}, {'i', 1}, {'n', 1}, {'d', 2}, {'r', 3}};
	for (size_t i = 0; i < TH_ARRAY_SIZE(kinds); i++) {
		if (kinds[i].which == 3 && !d->conf.role_retention_ms)
			continue;
		char prefix[2] = {kinds[i].type, TH_KEY_SEP};
		int64_t cutoff = kinds[i].which == 0   ? now
				 : kinds[i].which == 1 ? now - d->conf.training_ms
				 : kinds[i].which == 2 ? th_detect_dedup_horizon(d, now)
						       : now - role_window_ms(d);
		struct prune_ctx pc = {.d = d, .type = kinds[i].type, .now = now, .cutoff = cutoff};
		int rc = th_state_scan(d->st, prefix, 2, prune_cb, &pc);
		if (pc.err)
			return pc.err;
		if (rc < 0)
			return rc;
	}
	return 0;
}

int th_detector_advance(struct th_detector *d, bool final)
{
	int rc;
	if ((rc = th_detect_clock_load(d)))
		return rc;
	int64_t now = d->clock.watermark;
	if (final || now >= d->clock.next_expiry) {
		if ((rc = th_detect_expire_held(d, now, final)))
			return rc;
		d->clock.next_expiry = now + EXPIRY_SWEEP_MS;
	}
	if (final || now >= d->clock.next_prune) {
		/* Pruning scans and deletes records in the store: write the cached
		 * objects first and forget them, so none is resurrected. */
		if ((rc = th_detect_flush(d)))
			return rc;
		th_detect_clear_objects(d);
		if ((rc = prune(d, now)))
			return rc;
		d->clock.next_prune = now + PRUNE_SWEEP_MS;
	}
	return th_detect_clock_save(d);
}


static void call_from_event(struct th_detector *d, const struct th_event *ev,
			    const struct th_netinfo *ni, const char *session,
			    const struct th_input_ref *ref, struct th_call *c)
{
	(void)d;
	(void)session;
	/* Fields an alert names: a value too long for its field (only a string
	 * AWS does not write, or a user agent) ends in a mark that says so. */
	th_copy_utf8_mark(c->event_name, sizeof(c->event_name), ev->event_name);
	th_copy_utf8_mark(c->event_source, sizeof(c->event_source), ev->event_source);
	th_copy_utf8_mark(c->aws_region, sizeof(c->aws_region), ev->aws_region);
	th_copy_utf8_mark(c->source_ip, sizeof(c->source_ip), ev->source_ip);
	/* The event id, session, user agent and input name matter only for
	 * remote calls (held or judged, and named in alerts): call_complete()
	 * copies them then. Copying them for every inside call was a tenth of
	 * the detector's work on a Lambda-heavy stream. */
	c->event_id[0] = c->session[0] = c->user_agent[0] = '\0';
	th_copy_utf8_mark(c->vpce_id, sizeof(c->vpce_id), ev->vpc_endpoint_id);
	th_strlcpy(c->vpce_account, ev->vpc_endpoint_account_id, sizeof(c->vpce_account));
	c->input_topic[0] = '\0';
	c->input_partition = ref ? ref->partition : -1;
	c->input_offset = ref ? ref->offset : -1;
	c->event_time_ms = ev->event_time_ms;
	/* A session is created before its calls and lives at most hold_ms
	 * (12 hours by default; CREATION_SKEW_MS of clock skew allowed): a
	 * creationDate outside that is not believed, so one record cannot
	 * stretch or cut short a hold or a token's life (time poisoning through
	 * a field the eventTime bounds do not cover). */
	c->creation_ms = ev->ui.creation_ms &&
				 ev->ui.creation_ms <= ev->event_time_ms + CREATION_SKEW_MS &&
				 ev->ui.creation_ms >= ev->event_time_ms - d->conf.hold_ms
			 ? ev->ui.creation_ms
			 : 0;
	c->asn = ni->asn;
	/* The AS name: in th_detect_net_verdict()'s reason for a public source, and in
	 * alerts (call_complete()). */
	if (ni->kind == TH_NET_PUBLIC)
		th_strlcpy(c->as_org, ni->as_org, sizeof(c->as_org));
	else
		c->as_org[0] = '\0';
	th_strlcpy(c->src_region, ni->aws_region, sizeof(c->src_region));
	c->net_kind = (uint8_t)ni->kind;
}

_Static_assert(sizeof(((struct th_call *)0)->as_org) >= sizeof(((struct th_netinfo *)0)->as_org),
	       "an AS name fits the call as enrichment gave it (marked there when cut)");

static void call_complete(const struct th_detector *d, const struct th_event *ev,
			  const struct th_netinfo *ni, const char *session,
			  const struct th_input_ref *ref, struct th_call *c)
{
	th_copy_utf8_mark(c->event_id, sizeof(c->event_id), ev->event_id);
	th_copy_utf8_mark(c->session, sizeof(c->session), session);
	th_strlcpy(c->as_org, ni->as_org, sizeof(c->as_org)); /* cut (marked) by enrich if at all */
	/* A user agent is the caller's to choose, of any length; the variation
	 * is decided on this copy (a held use later, from the store). */
	th_detect_keep_user_agent(d, c->user_agent, sizeof(c->user_agent), ev->user_agent);
	/* The end of a long path is the file's name: what traces the event. */
	th_copy_utf8_tail(c->input_topic, sizeof(c->input_topic), ref ? ref->topic : NULL);
}

/* The role ARN of a session: sessionIssuer.arn, else rebuilt from the
 * assumed-role ARN (which drops the role's path). */
static const char *session_role_arn(const struct th_event *ev, char *buf, size_t n)
{
	if (ev->ui.session_issuer_arn && *ev->ui.session_issuer_arn)
		return ev->ui.session_issuer_arn;
	const char *arn = ev->ui.arn, *acct = th_event_account(ev);
	const char *p = arn ? strstr(arn, ":assumed-role/") : NULL;
	if (!p || !acct)
		return NULL;
	p += strlen(":assumed-role/");
	const char *slash = strchr(p, '/');
	if (!slash)
		return NULL;
	snprintf(buf, n, "arn:aws:iam::%s:role/%.*s", acct, (int)(slash - p), p);
	return buf;
}

static int process_call(struct th_detector *d, const struct th_event *ev, const char *acct,
			const struct th_netinfo *ni, const struct th_input_ref *ref)
{
	struct th_token *t;
	struct th_role *ro;
	struct th_call *c = &d->call;
	char rolebuf[300], reason[400];
	const char *akid = ev->ui.access_key_id;
	const char *session = th_event_session_name(ev);
	const char *role_arn = session_role_arn(ev, rolebuf, sizeof(rolebuf));
	int rc;

	if (!role_arn)
		return 0;
	/* Lambda's own service traffic never alerts. Only what AWS writes
	 * excludes (invokedBy, a service name as the source), never a name the
	 * caller chose: a session called "awslambda_..." is judged like any
	 * other (spec v2). */
	if (ev->ui.invoked_by || ni->kind == TH_NET_SERVICE) {
		d->stats.excluded++;
		return 0;
	}
	d->stats.candidates++;
	call_from_event(d, ev, ni, session, ref, c);
	int role_found = th_detect_load_role(d, role_arn, &ro);
	if (role_found < 0)
		return role_found;
	int tok_found = th_detect_load_token(d, acct, akid, &t);
	if (tok_found < 0)
		return tok_found;

	/* What the call itself teaches (rare: first sight of a function or key). */
	struct th_detect_known k = {.ro = ro, .t = t, .role_found = role_found, .tok_found = tok_found};
	if ((rc = th_detect_learn_runtime(d, ev, acct, role_arn, session, &k)))
		return rc;
	ro = k.ro;
	t = k.t;
	role_found = k.role_found;
	tok_found = k.tok_found;
	/* A call of one of its sessions keeps a role known (prune). */
	if (role_found && (rc = th_detect_touch_role(d, role_arn, ro, ev->event_time_ms)))
		return rc;

	enum th_cred_class cls = th_detect_classify(ro, role_found, t, tok_found, session);
	struct regions rs;
	th_detect_regions_of(ro, cls == TH_CRED_TOKEN ? th_detect_token_function(t) : NULL, &rs);
	enum verdict vd = th_detect_net_verdict(c, acct, &rs, reason, sizeof(reason));

	if (cls != TH_CRED_UNKNOWN || (role_found && ro->is_lambda)) {
		if (!t->role_arn[0])
			th_strlcpy(t->role_arn, role_arn, sizeof(t->role_arn));
		if (!t->session[0])
			th_strlcpy(t->session, session, sizeof(t->session));
	}
	if (vd == NET_INSIDE) {
		d->stats.inside_uses++;
		if (cls == TH_CRED_UNKNOWN) {
			/* The key's remote use may be held: its inside use must
			 * count when the key becomes known. */
			if ((rc = th_detect_hold_inside(d, acct, akid,
							role_found && ro->is_lambda ? role_arn : NULL, c)))
				return rc;
		} else {
			th_detect_token_record_use(d, t, c, vd);
			if (cls == TH_CRED_TOKEN && (rc = th_detect_upgrade_alerts(d, acct, akid, t)))
				return rc;
			if ((rc = th_detect_save_token(d, acct, akid, t)))
				return rc;
		}
	} else if (vd == NET_REMOTE) {
		d->stats.remote_uses++;
		call_complete(d, ev, ni, session, ref, c);
		/* A key tied to a function by its session name alone is decided at
		 * once, as the function's token: holding it until an AssumeRole
		 * might arrive would delay a real stolen key's alert by up to the
		 * key's 12 hours whenever its issuance was not seen. If an
		 * AssumeRole by another identity arrives later, the use is decided
		 * again as the role's other session (redecide_as_other). */
		if (cls != TH_CRED_UNKNOWN && role_found && ro->is_lambda) {
			th_detect_token_record_use(d, t, c, vd);
			if ((rc = th_detect_decide(d, acct, akid, cls, t, role_arn, c, reason, NULL, NULL)))
				return rc;
			if ((rc = th_detect_save_token(d, acct, akid, t)))
				return rc;
		} else if ((rc = th_detect_hold_use(d, acct, akid, role_arn, c))) {
			return rc;
		}
	}
	/* Training for other sessions of a Lambda role: the networks they use. */
	if (cls == TH_CRED_OTHER && ni->kind == TH_NET_PUBLIC && ni->asn) {
		char asn[16];
		th_detect_asn_str(asn, sizeof(asn), ni->asn);
		if ((rc = th_detect_teach_sighting(d, 'n', role_arn, asn, akid, ev->event_time_ms)))
			return rc;
	}
	if (k.key_learned && (rc = th_detect_resolve_key(d, acct, akid, false)))
		return rc;
	if (k.role_learned && (rc = th_detect_resolve_role(d, role_arn)))
		return rc;
	return 0;
}

int th_detector_process(struct th_detector *d, const struct th_event *ev,
			const struct th_input_ref *ref)
{
	const char *acct = th_event_account(ev);
	struct th_netinfo ni;
	int64_t first;
	int rc;

	d->stats.events++;
	if (d->nobjs > OBJS_MAX || d->nbsights > OBJS_MAX) {
		/* between events no object is in use: write the dirty ones to the
		 * store's transaction and drop the decoded copies */
		if ((rc = th_detect_flush(d)))
			return rc;
		th_detect_clear_objects(d);
	}
	if ((rc = th_detect_clock_load(d)))
		return rc;
	if (!acct || !*acct)
		return 0;
	if ((rc = th_detect_account_seen(d, acct, ev->event_time_ms, &first)))
		return rc;
	th_detect_enrich(d, ev->source_ip, &ni);
	if (ni.kind == TH_NET_UNRECOGNISED)
		d->stats.source_unrecognised++;

	const char *type = ev->ui.type;
	const char *akid = ev->ui.access_key_id;
	if (streq(type, "AssumedRole") && starts_with(akid, "ASIA")) {
		if ((rc = process_call(d, ev, acct, &ni, ref)))
			return rc;
	} else if (ni.kind == TH_NET_PUBLIC && type && !streq(type, "AWSService") &&
		   ((akid && *akid) || (!ev->error_code && !ev->error_message))) {
		/* Non-Lambda identities from public non-AWS networks: the account's
		 * egress baseline. (Sessions of roles not yet known as Lambda's are
		 * taught when their hold ends, see resolve_key.) Calls made with
		 * the identity's credentials (an access key) teach, and sign-ins and
		 * federation requests that succeeded; a failed one is logged too
		 * (a failed ConsoleLogin with an errorMessage and no errorCode), and
		 * anyone who knows the account could otherwise make their network
		 * "known" by failing to sign in. */
		if ((rc = th_detect_teach_account_asn(d, acct, ni.asn, ev->event_time_ms)))
			return rc;
	}

	if (!ev->error_code && streq(ev->event_source, "sts.amazonaws.com") &&
	    (streq(ev->event_name, "AssumeRole") || streq(ev->event_name, "AssumeRoleWithWebIdentity") ||
	     streq(ev->event_name, "AssumeRoleWithSAML")) &&
	    ev->req.role_arn) {
		/* Lambda's issuance, or an assumption by any other identity, other
		 * AWS services (ec2.amazonaws.com, ...) and federated callers (CI
		 * through OIDC, SSO through SAML: they choose their session name
		 * too) included (spec v2: "any identity other than the Lambda
		 * service"). Lambda issues only through AssumeRole. */
		if (streq(ev->event_name, "AssumeRole") && streq(type, "AWSService") &&
		    streq(ev->ui.invoked_by, "lambda.amazonaws.com"))
			rc = th_detect_learn_issuance(d, ev, acct);
		else if (ev->cred.access_key_id && *ev->cred.access_key_id)
			rc = streq(ev->event_name, "AssumeRole") ? th_detect_learn_assumption(d, ev, acct)
								 : th_detect_learn_federated(d, ev, acct);
		if (rc)
			return rc;
	} else if (!ev->error_code && streq(ev->event_source, "lambda.amazonaws.com") &&
		   (starts_with(ev->event_name, "CreateFunction") ||
		    starts_with(ev->event_name, "UpdateFunctionConfiguration")) &&
		   ev->req.role && ev->req.function_name) {
		if ((rc = th_detect_learn_function(d, ev)))
			return rc;
	}

	if (ev->event_time_ms > d->clock.watermark) {
		d->clock.watermark = ev->event_time_ms;
		d->clock_dirty = true;
		if (d->clock.watermark >= d->clock.next_expiry ||
		    d->clock.watermark >= d->clock.next_prune)
			return th_detector_advance(d, false);
	}
	return 0;
}

int th_detector_checkpoint(struct th_detector *d)
{
	int rc = th_detect_flush(d);
	if (rc)
		return rc;
	if (d->nobjs > OBJS_MAX || d->nbsights > OBJS_MAX)
		th_detect_clear_objects(d);
	if (!d->clock_loaded || !d->clock_dirty)
		return 0;
	d->clock_dirty = false;
	return th_detect_clock_save(d);
}

/*
 * The detector engine (detect.h): learning, classification, late
 * attribution, upgrades and the three periods. The variations themselves are
 * descriptors in variations.c; this file gathers the facts they judge.
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
	th_dmem_clear_accounts(d);
	th_dmem_clear_objects(d);
	th_dmem_free_spares(d);
	th_dmem_clear_held(d);
	th_wbuf_free(&d->w);
	free(d->ipcache);
	free(d->collected);
	free(d);
}

void th_detector_get_stats(const struct th_detector *d, struct th_detect_stats *out)
{
	*out = d->stats;
}

void th_detector_reset(struct th_detector *d)
{
	th_dmem_clear_accounts(d);
	th_dmem_clear_objects(d);
	th_dmem_clear_held(d);
	d->clock_loaded = false;
	d->clock_dirty = false;
}

/* ---- roles and functions ---- */

static int find_function(const struct th_role *ro, const char *name)
{
	for (int i = 0; i < ro->n_functions; i++)
		if (strcmp(ro->functions[i].name, name) == 0)
			return i;
	return -1;
}

static bool has_region(char regions[][24], uint8_t n, const char *region)
{
	if (!region || !*region)
		return true; /* nothing to add */
	for (int i = 0; i < n; i++)
		if (strcmp(regions[i], region) == 0)
			return true;
	return false;
}

static void add_region(char regions[][24], uint8_t *n, const char *region)
{
	if (!region || !*region)
		return;
	for (int i = 0; i < *n; i++)
		if (strcmp(regions[i], region) == 0)
			return;
	if (*n < TH_MAX_REGIONS)
		th_strlcpy(regions[(*n)++], region, 24);
}

/* Adds a function (and a region, when given). Returns its index or -1. */
static int role_add_function(struct th_role *ro, const char *name, const char *region)
{
	int i = find_function(ro, name);
	if (i < 0) {
		if (ro->n_functions >= TH_ROLE_MAX_FUNCTIONS)
			return -1;
		i = ro->n_functions++;
		memset(&ro->functions[i], 0, sizeof(ro->functions[i]));
		th_strlcpy(ro->functions[i].name, name, sizeof(ro->functions[i].name));
	}
	add_region(ro->functions[i].regions, &ro->functions[i].n_regions, region);
	return i;
}

/* Lambda's own service sessions (event-source pollers) are named
 * "awslambda_<n>_<yyyymmddHHMMSSmmm>". The name alone decides nothing (anyone
 * may pass it to AssumeRole, and a function may be called "awslambda_orders"):
 * it only tells a Lambda-issued poller session, which names no function,
 * from a Lambda-issued function session, and keeps such a name from ever
 * being learned as a function. */
static bool is_poller_name(const char *s)
{
	static const char prefix[] = "awslambda_";
	if (!starts_with(s, prefix))
		return false;
	s += sizeof(prefix) - 1;
	size_t n = strspn(s, "0123456789");
	if (n == 0 || s[n] != '_')
		return false;
	s += n + 1;
	n = strspn(s, "0123456789");
	return n > 0 && s[n] == '\0';
}

/* The function a token belongs to, or NULL for a Lambda service session
 * (a poller), which is judged against the role's regions. */
static const char *token_function(const struct th_token *t)
{
	return t->function[0] ? t->function : NULL;
}

/* The region set a source address is judged against. */
struct regions {
	int n;
	const char *r[TH_MAX_REGIONS * (TH_ROLE_MAX_FUNCTIONS + 1)];
};

static void regions_of(const struct th_role *ro, const char *function, struct regions *out)
{
	out->n = 0;
	if (function) {
		int i = find_function(ro, function);
		if (i >= 0)
			for (int j = 0; j < ro->functions[i].n_regions; j++)
				out->r[out->n++] = ro->functions[i].regions[j];
		return;
	}
	for (int i = 0; i < ro->n_functions; i++)
		for (int j = 0; j < ro->functions[i].n_regions; j++)
			out->r[out->n++] = ro->functions[i].regions[j];
	for (int j = 0; j < ro->n_service_regions; j++)
		out->r[out->n++] = ro->service_regions[j];
}

static bool regions_has(const struct regions *rs, const char *region)
{
	for (int i = 0; i < rs->n; i++)
		if (strcmp(rs->r[i], region) == 0)
			return true;
	return false;
}

static void regions_join(const struct regions *rs, char *buf, size_t n)
{
	size_t used = 0;
	buf[0] = '\0';
	for (int i = 0; i < rs->n && used + 1 < n; i++) {
		bool dup = false;
		for (int j = 0; j < i; j++)
			dup = dup || strcmp(rs->r[j], rs->r[i]) == 0;
		if (dup)
			continue;
		int w = snprintf(buf + used, n - used, "%s%s", used ? ", " : "", rs->r[i]);
		if (w < 0)
			break;
		used += (size_t)w < n - used ? (size_t)w : n - used - 1;
	}
}

/* ---- the network of a call (spec §3) ---- */

/* The reason is written only for a remote verdict: it becomes the alert's
 * first evidence line, and formatting it for every inside call is waste. */
static enum verdict net_verdict(const struct th_call *c, const char *acct,
				const struct regions *rs, char *reason, size_t rsz)
{
	reason[0] = '\0';
	/* Before the endpoint check: the spec judges every unrecognised source
	 * remote, and a string AWS never writes says nothing trustworthy about
	 * the rest of the record. */
	if ((enum th_net_kind)c->net_kind == TH_NET_UNRECOGNISED) {
		snprintf(reason, rsz,
			 "source \"%s\" is neither an IP address nor an AWS service name: judged "
			 "remote, ASN unknown",
			 c->source_ip);
		return NET_REMOTE;
	}
	if (c->vpce_id[0]) {
		if (c->vpce_account[0] && !streq(c->vpce_account, acct)) {
			snprintf(reason, rsz,
				 "the call came through VPC endpoint %s owned by another account (%s)",
				 c->vpce_id, c->vpce_account);
			return NET_REMOTE;
		}
		return NET_INSIDE;
	}
	switch ((enum th_net_kind)c->net_kind) {
	case TH_NET_SERVICE:
		return NET_NONE;
	case TH_NET_PRIVATE:
		return NET_INSIDE;
	case TH_NET_AWS:
		if (rs->n == 0 || !c->src_region[0] || streq(c->src_region, "GLOBAL"))
			return NET_INSIDE;
		if (regions_has(rs, c->src_region))
			return NET_INSIDE;
		{
			char where[200];
			regions_join(rs, where, sizeof(where));
			snprintf(reason, rsz,
				 "source %s is an AWS address of region %s, where the function never "
				 "runs (it runs in %s)",
				 c->source_ip, c->src_region, where);
		}
		return NET_REMOTE;
	case TH_NET_PUBLIC:
		snprintf(reason, rsz, "source %s is a public non-AWS address (AS%u %s)", c->source_ip,
			 c->asn, c->as_org[0] ? c->as_org : "unknown organisation");
		return NET_REMOTE;
	case TH_NET_UNRECOGNISED:
		break; /* decided above */
	}
	return NET_NONE;
}

/* ---- user agents ---- */

static const char *ua_lambda_claim(const struct th_detector *d, const char *ua)
{
	if (!ua)
		return NULL;
	for (int i = 0; i < d->conf.n_lambda_user_agents; i++)
		if (strstr(ua, d->conf.lambda_user_agents[i]))
			return d->conf.lambda_user_agents[i];
	return NULL;
}

static const char *ua_cli_family(const struct th_detector *d, const char *ua)
{
	if (!ua || strstr(ua, "exec-env/"))
		return NULL;
	for (int i = 0; i < d->conf.n_cli_user_agents; i++) {
		const char *p = d->conf.cli_user_agents[i];
		if (p[0] == '^' ? starts_with(ua, p + 1) : strstr(ua, p) != NULL)
			return p[0] == '^' ? p + 1 : p;
	}
	return NULL;
}

static bool asn_trusted(const struct th_detector *d, uint32_t asn)
{
	for (int i = 0; i < d->conf.n_trusted_asns; i++)
		if (d->conf.trusted_asns[i] == asn)
			return true;
	return false;
}

/* ---- which credential ---- */

static enum th_cred_class classify(const struct th_role *ro, bool role_found, struct th_token *t,
				   bool tok_found, const char *session)
{
	if (tok_found && t->origin == TH_ORIGIN_ASSUMED)
		return TH_CRED_OTHER;
	if (tok_found && t->origin != TH_ORIGIN_UNKNOWN)
		return TH_CRED_TOKEN;
	if (role_found && ro->is_lambda && session && find_function(ro, session) >= 0) {
		t->origin = TH_ORIGIN_SESSION;
		th_strlcpy(t->function, session, sizeof(t->function));
		return TH_CRED_TOKEN;
	}
	return TH_CRED_UNKNOWN;
}

/* ---- alerts ---- */

static void history_fill(struct th_alert *a, const struct th_token *t)
{
	a->history.origin = th_origin_name((enum th_origin)t->origin);
	a->history.issued_ms = t->issued_ms;
	a->history.first_seen_ms = t->first_seen_ms;
	a->history.last_seen_ms = t->last_seen_ms;
	a->history.inside_count = t->inside;
	a->history.outside_count = t->outside;
	a->history.distinct_ips = t->distinct_ips;
	a->history.n_calls = 0;
	for (int i = 0; i < t->n_calls && i < TH_ALERT_MAX_CALLS; i++)
		a->history.api_calls[a->history.n_calls++] = t->calls[i].name;
}

static const char *network_name(const struct th_call *c)
{
	if (c->vpce_id[0])
		return "vpc-endpoint";
	switch ((enum th_net_kind)c->net_kind) {
	case TH_NET_PRIVATE: return "private";
	case TH_NET_AWS: return "aws";
	case TH_NET_PUBLIC: return "public";
	case TH_NET_UNRECOGNISED: return "unrecognised";
	case TH_NET_SERVICE: break;
	}
	return "service";
}

/* ---- the dedup ledger ---- */

/* Ledger entries at or before this time can no longer matter: an event still
 * to come is at most DEDUP_LATENESS_MS behind the watermark @p now, so it
 * cannot fall within the dedup window of an alert that old. */
static int64_t dedup_horizon(const struct th_detector *d, int64_t now)
{
	return now - d->conf.dedup_ms - DEDUP_LATENESS_MS;
}

/* The alert whose window (before or after it) holds time t: the nearest one,
 * the earlier on a tie; -1 when none. Alerts of a key are at least the dedup
 * period apart, so at most two windows can hold t. */
static int dedup_near(const struct th_dedup *dd, int64_t t, int64_t window)
{
	int best = -1;
	int64_t best_dist = 0;
	for (int i = 0; i < dd->n; i++) {
		int64_t a = dd->alerts[i].alert_ms;
		int64_t dist = t > a ? t - a : a - t;
		if (dist < window && (best < 0 || dist < best_dist)) {
			best = i;
			best_dist = dist;
		}
	}
	return best;
}

/* Record an alert raised at time t, in time order. Entries at or before the
 * horizon go first; if the ledger is still full, the oldest alert (possibly
 * this one, when it is the latest arrival of the oldest time) gives way: the
 * one an event still to come is least likely to fall near. */
static void dedup_add(struct th_dedup *dd, int64_t t, const char *alert_id, int64_t horizon)
{
	int keep = 0;
	for (int i = 0; i < dd->n; i++)
		if (dd->alerts[i].alert_ms > horizon)
			dd->alerts[keep++] = dd->alerts[i];
	dd->n = (uint8_t)keep;
	int pos = dd->n;
	while (pos > 0 && dd->alerts[pos - 1].alert_ms > t)
		pos--;
	if (dd->n == TH_DEDUP_MAX) {
		if (pos == 0)
			return; /* older than every alert kept, and no room */
		memmove(&dd->alerts[0], &dd->alerts[1], (size_t)(pos - 1) * sizeof(dd->alerts[0]));
		pos--;
	} else {
		memmove(&dd->alerts[pos + 1], &dd->alerts[pos],
			(size_t)(dd->n - pos) * sizeof(dd->alerts[0]));
		dd->n++;
	}
	dd->alerts[pos].alert_ms = t;
	dd->alerts[pos].count = 1;
	th_strlcpy(dd->alerts[pos].alert_id, alert_id, sizeof(dd->alerts[pos].alert_id));
}

/* Activation and dedup, then emission. *raised tells whether it fired. */
static int raise_alert(struct th_detector *d, const struct th_variation *v, const char *acct,
		       const char *akid, enum th_cred_class cls, const struct th_token *t,
		       const char *role_arn, const struct th_call *c, const char *upgrade_of,
		       char alert_id[33], bool *raised)
{
	struct th_alert *a = &d->alert;
	/* A poller's token names no function: its session stands in (dedup, ID). */
	const char *fn = cls == TH_CRED_TOKEN ? token_function(t) : NULL;
	const char *fn_or_sess = fn ? fn : c->session;
	int64_t first = 0, tm = c->event_time_ms;
	char asn[16], dkey[1024];
	struct th_dedup dd; /* ~1 KB: fine on the stack */
	const void *val;
	size_t vlen, dkl;
	int rc;

	*raised = false;
	th_alert_id(alert_id, v->id, acct, role_arn, fn_or_sess, c->asn, akid);
	if ((rc = th_dmem_account_seen(d, acct, 0, &first)))
		return rc;
	if (!first || tm - first < d->conf.activation_ms) {
		d->stats.suppressed_activation++;
		return 0;
	}
	th_dmem_asn_str(asn, sizeof(asn), c->asn);
	{
		char var[4];
		snprintf(var, sizeof(var), "%d", v->id);
		dkl = th_key(dkey, sizeof(dkey), 'd', 5, var, acct, role_arn, fn_or_sess, asn);
	}
	rc = th_state_get(d->st, dkey, dkl, &val, &vlen);
	if (rc && rc != TH_ENOTFOUND)
		return rc;
	/* A garbled ledger is started again: at worst one alert too many. */
	if (rc == TH_ENOTFOUND || th_dedup_decode(val, vlen, &dd))
		dd.n = 0;
	/* Before or after in event time, whatever the arrival order (spec v2). */
	int near = dedup_near(&dd, tm, d->conf.dedup_ms);
	if (near >= 0) {
		dd.alerts[near].count++;
		th_wbuf_reset(&d->w);
		th_dedup_encode(&d->w, &dd);
		d->stats.suppressed_dedup++;
		return th_dmem_put(d, dkey, dkl);
	}
	dedup_add(&dd, tm, alert_id,
		  dedup_horizon(d, d->clock.watermark > tm ? d->clock.watermark : tm));
	th_wbuf_reset(&d->w);
	th_dedup_encode(&d->w, &dd);
	if ((rc = th_dmem_put(d, dkey, dkl)))
		return rc;

	memset(a, 0, sizeof(*a));
	memcpy(a->alert_id, alert_id, sizeof(a->alert_id));
	a->variation = v->id;
	a->alert_name = v->name;
	a->severity = v->severity;
	a->description = v->description;
	a->tactic = "TA0006";
	a->account_id = acct;
	a->region = c->aws_region[0] ? c->aws_region : NULL;
	a->role_arn = role_arn;
	a->function_name = fn;
	a->session_name = c->session[0] ? c->session : NULL;
	a->access_key_id = akid;
	a->event_id = c->event_id;
	a->event_name = c->event_name;
	a->event_source = c->event_source;
	a->event_time_ms = c->event_time_ms;
	a->source_ip = c->source_ip;
	a->asn = c->asn;
	a->as_org = c->as_org[0] ? c->as_org : NULL;
	a->source_aws_region = c->src_region[0] ? c->src_region : NULL;
	a->user_agent = c->user_agent[0] ? c->user_agent : NULL;
	a->vpc_endpoint_id = c->vpce_id[0] ? c->vpce_id : NULL;
	a->vpc_endpoint_account_id = c->vpce_account[0] ? c->vpce_account : NULL;
	a->network = network_name(c);
	for (int i = 0; i < d->evid.n && i < TH_ALERT_MAX_EVIDENCE; i++)
		a->evidence[a->n_evidence++] = d->evid.text[i];
	history_fill(a, t);
	a->actions = th_investigative_actions;
	a->upgrade_of = upgrade_of;
	a->input.topic = c->input_topic;
	a->input.partition = c->input_partition;
	a->input.offset = c->input_offset;
	d->stats.alerts[v->id]++;
	if (upgrade_of)
		d->stats.upgrades++;
	*raised = true;
	return d->on_alert(d->ctx, a);
}

/* Remember a token's remote decision, so later evidence can decide the
 * call again: an inside use (upgrade to variation 1) or an AssumeRole by an
 * identity (the key was never the function's: variations 5-6). Raised alerts
 * keep their ID (empty when activation or dedup suppressed the alert: there
 * is no earlier alert to name, but the call must still be re-decided to give
 * what the other arrival order gives). Suppressed decisions are kept once per
 * (ASN, AWS region, VPC endpoint, user agent), the facts a verdict depends
 * on, and give way to raised ones when the slots are full. */
static void remember_decision(struct th_token *t, int variation, const char *alert_id,
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
			return;
	}
	if (t->n_alerts < TH_TOKEN_MAX_ALERTS)
		slot = t->n_alerts++;
	else if (!raised || slot < 0)
		return;
	struct th_alert_ref *r = &t->alerts[slot];
	r->variation = (uint8_t)variation;
	r->upgraded = 0;
	th_strlcpy(r->alert_id, raised ? alert_id : "", sizeof(r->alert_id));
	r->call = *c;
}

/* Gather the facts, run the variations, raise the winner. Updates t's alert
 * refs (the caller saves t). A re-decision of an earlier call (later
 * evidence) passes @p why, and @p upgrade_of when that call had raised an
 * alert. */
static int decide(struct th_detector *d, const char *acct, const char *akid,
		  enum th_cred_class cls, struct th_token *t, const char *role_arn,
		  const struct th_call *c, const char *remote_reason, const char *upgrade_of,
		  const char *why)
{
	struct th_match_ctx m = {0};
	struct th_sighting s;
	int64_t tm = c->event_time_ms, since = c->event_time_ms - d->conf.training_ms;
	char asn[16];
	int rc;

	m.cls = cls;
	m.call = c;
	m.tok = t;
	m.key_used_inside = t->inside > 0;
	m.ua_lambda_claim = ua_lambda_claim(d, c->user_agent);
	m.ua_cli_family = ua_cli_family(d, c->user_agent);
	th_dmem_asn_str(asn, sizeof(asn), c->asn);
	if (c->asn) {
		if ((rc = th_dmem_load_sighting(d, 'b', acct, asn, &s)) < 0)
			return rc;
		/* In training: seen within the window, and not only after this use
		 * (the first sighting bounds it; order-independent within the
		 * window, unlike "the latest sighting"). */
		m.asn_in_baseline = rc == 1 && s.last_ms >= since && s.first_ms <= tm;
		m.asn_trusted = asn_trusted(d, c->asn);
	}
	if (cls == TH_CRED_OTHER) {
		m.identity = t->origin == TH_ORIGIN_ASSUMED && t->identity[0] ? t->identity : NULL;
		if (m.identity) {
			if ((rc = th_dmem_load_sighting(d, 'i', role_arn, m.identity, &s)) < 0)
				return rc;
			int64_t o = rc == 1 ? th_sighting_other(&s, akid) : 0;
			m.identity_seen = o && o >= since;
		}
		if ((rc = th_dmem_load_sighting(d, 'n', role_arn, asn, &s)) < 0)
			return rc;
		int64_t o = rc == 1 ? th_sighting_other(&s, akid) : 0;
		m.asn_seen_for_role = c->asn && o && o >= since;
	}

	d->evid.n = 0;
	th_evidence_add(&d->evid, "%s", remote_reason);
	for (size_t i = 0; i < th_variations_count; i++) {
		const struct th_variation *v = &th_variations[i];
		if (!v->match(&m, &d->evid))
			continue;
		char id[33];
		bool raised;
		if (upgrade_of)
			th_evidence_add(&d->evid, "upgrades alert %s: %s", upgrade_of, why);
		else if (why)
			th_evidence_add(&d->evid, "decided again: %s", why);
		rc = raise_alert(d, v, acct, akid, cls, t, role_arn, c, upgrade_of, id, &raised);
		if (rc)
			return rc;
		/* First decisions only: a re-decision is reached through the
		 * original call's entry. */
		if (cls == TH_CRED_TOKEN && !why)
			remember_decision(t, v->id, raised ? id : NULL, c);
		return 0;
	}
	return 0;
}

/* An inside use arrived: earlier remote alerts of the key become variation 1. */
static int upgrade_alerts(struct th_detector *d, const char *acct, const char *akid,
			  struct th_token *t)
{
	int n = t->n_alerts;
	for (int i = 0; i < n; i++) {
		struct th_alert_ref *r = &t->alerts[i];
		/* Variation 1 has nothing stronger; a suppressed decision has no
		 * alert to upgrade (the dedup ledger already holds that case). */
		if (r->upgraded || r->variation < 2 || r->variation > 4 || !r->alert_id[0])
			continue;
		r->upgraded = 1;
		char prior[33], reason[400];
		struct th_call c = r->call;
		memcpy(prior, r->alert_id, sizeof(prior));
		struct th_role *ro;
		struct regions rs;
		int rc = th_dmem_load_role(d, t->role_arn, &ro);
		if (rc < 0)
			return rc;
		regions_of(ro, token_function(t), &rs);
		net_verdict(&c, acct, &rs, reason, sizeof(reason));
		if ((rc = decide(d, acct, akid, TH_CRED_TOKEN, t, t->role_arn, &c, reason, prior,
				 "the key's inside use is now known")))
			return rc;
	}
	return 0;
}

/* ---- token history ---- */

static void token_record_use(struct th_token *t, const struct th_call *c, enum verdict vd)
{
	int64_t tm = c->event_time_ms;
	if (!t->first_seen_ms || tm < t->first_seen_ms)
		t->first_seen_ms = tm;
	if (tm > t->last_seen_ms)
		t->last_seen_ms = tm;
	if (!t->issued_ms && c->creation_ms)
		t->issued_ms = c->creation_ms;
	if (!t->expiry_ms && c->creation_ms)
		t->expiry_ms = c->creation_ms + 12 * HOUR_MS;
	if (vd == NET_INSIDE)
		t->inside++;
	else if (vd == NET_REMOTE)
		t->outside++;
	bool seen = false;
	for (int i = 0; i < t->n_ips && !seen; i++)
		seen = strcmp(t->ips[i], c->source_ip) == 0;
	if (!seen) {
		t->distinct_ips++;
		if (t->n_ips < TH_TOKEN_MAX_IPS)
			th_strlcpy(t->ips[t->n_ips++], c->source_ip, sizeof(t->ips[0]));
	}
	char name[96];
	const char *svc = c->event_source;
	const char *dot = strstr(svc, ".amazonaws.com");
	size_t sl = dot ? (size_t)(dot - svc) : strlen(svc);
	if (sl > 40)
		sl = 40;
	sl = th_copy_utf8n(name, sl + 1, svc, sl);
	name[sl] = ':';
	th_copy_utf8(name + sl + 1, sizeof(name) - sl - 1, c->event_name);
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

/* ---- held uses (late attribution) ---- */

static int hold_use(struct th_detector *d, const char *acct, const char *akid,
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
		if ((rc = th_dmem_held_has(d, pk, pkl, &dummy)))
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
	if (h->expiry_ms < c->event_time_ms + 15 * 60 * 1000LL)
		h->expiry_ms = c->event_time_ms + 15 * 60 * 1000LL;
	/* Keep the first uses per distinct (ASN, user agent); later repeats add
	 * nothing a decision needs. */
	bool dup = false;
	for (int i = 0; i < h->n && !dup; i++)
		dup = h->calls[i].asn == c->asn && strcmp(h->calls[i].user_agent, c->user_agent) == 0 &&
		      strcmp(h->calls[i].vpce_id, c->vpce_id) == 0;
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
	if ((rc = th_dmem_held_add(d, pk, pkl, h->expiry_ms)))
		return rc;
	th_wbuf_reset(&d->w);
	th_held_encode(&d->w, h);
	return th_dmem_put(d, pk, pkl);
}

/* Decide the held uses of one key if its credential is now known (or, when
 * @p expire, as whatever is known at the end of the hold). */
static int resolve_key(struct th_detector *d, const char *acct, const char *akid, bool expire)
{
	struct th_held *h = &d->held;
	struct th_token *t;
	struct th_role *ro;
	const void *v;
	size_t n;
	char pk[512], reason[400];
	size_t pkl = th_key(pk, sizeof(pk), 'p', 2, acct, akid);
	bool has;
	int rc = th_dmem_held_has(d, pk, pkl, &has);
	if (rc || !has)
		return rc;
	rc = th_state_get(d->st, pk, pkl, &v, &n);
	if (rc == TH_ENOTFOUND) {
		th_dmem_held_remove(d, pk, pkl);
		return 0;
	}
	if (rc)
		return rc;
	if (th_held_decode(v, n, h)) {
		th_held_clear(h);
		goto drop;
	}
	int role_found = th_dmem_load_role(d, h->role_arn, &ro);
	if (role_found < 0)
		return role_found;
	int tok_found = th_dmem_load_token(d, acct, akid, &t);
	if (tok_found < 0)
		return tok_found;
	if (!role_found || !ro->is_lambda) {
		if (!expire)
			return 0;
		/* Never Lambda's: an ordinary session, whose networks teach the baseline. */
		for (int i = 0; i < h->n_asns; i++)
			if ((rc = th_dmem_teach_account_asn(d, acct, h->asns[i], h->asn_ms[i])))
				return rc;
		d->stats.held_expired++;
		goto drop;
	}
	enum th_cred_class cls = classify(ro, true, t, tok_found, h->n ? h->calls[0].session : NULL);
	if (cls == TH_CRED_UNKNOWN) {
		if (!expire)
			return 0;
		/* The role is Lambda's but nothing ties the key to a function or an
		 * identity: judged as another identity's session, identity unknown. */
		cls = TH_CRED_OTHER;
	}
	if (!tok_found) {
		th_strlcpy(t->role_arn, h->role_arn, sizeof(t->role_arn));
		if (h->n)
			th_strlcpy(t->session, h->calls[0].session, sizeof(t->session));
	}
	d->stats.held_resolved++;
	for (int i = 0; i < h->n; i++) {
		struct th_call c = h->calls[i];
		struct regions rs;
		regions_of(ro, cls == TH_CRED_TOKEN ? token_function(t) : NULL, &rs);
		enum verdict vd = net_verdict(&c, acct, &rs, reason, sizeof(reason));
		token_record_use(t, &c, vd);
		if (vd == NET_REMOTE &&
		    (rc = decide(d, acct, akid, cls, t, h->role_arn, &c, reason, NULL, NULL)))
			return rc;
	}
	if ((rc = th_dmem_save_token(d, acct, akid, t)))
		return rc;
drop:
	th_dmem_held_remove(d, pk, pkl);
	if ((rc = th_state_del(d->st, pk, pkl)))
		return rc;
	size_t ql = th_key(d->k2, sizeof(d->k2), 'q', 3, h->role_arn, acct, akid);
	return th_state_del(d->st, d->k2, ql);
}

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

static int resolve_role(struct th_detector *d, const char *role_arn)
{
	char prefix[512];
	size_t pl = th_key(prefix, sizeof(prefix), 'q', 1, role_arn);
	prefix[pl++] = TH_KEY_SEP;
	struct collect_ctx cc = {.d = d, .skip = pl};
	int rc;
	d->ncollected = 0;
	rc = th_state_scan(d->st, prefix, pl, collect_cb, &cc);
	if (rc < 0)
		return rc;
	size_t n = d->ncollected;
	for (size_t i = 0; i < n; i++) {
		char *acct, *akid;
		if (!split2(d->collected[i], &acct, &akid))
			continue;
		char a[TH_KEY_PART_MAX + 1], k[TH_KEY_PART_MAX + 1];
		th_strlcpy(a, acct, sizeof(a));
		th_strlcpy(k, akid, sizeof(k));
		if ((rc = resolve_key(d, a, k, false)))
			return rc;
	}
	return 0;
}

/* Holds that lapsed before time t are decided with what was known before the
 * event at t teaches anything: called by every learning path before it
 * changes a key or a role, so the outcome does not depend on whether some
 * unrelated event happened to trigger the periodic sweep in between. */
static int expire_lapsed(struct th_detector *d, const char *acct, const char *akid,
			 const char *role_arn, int64_t t)
{
	const void *v;
	size_t n;
	char pk[512];
	int rc;
	if (acct && akid) {
		size_t pkl = th_key(pk, sizeof(pk), 'p', 2, acct, akid);
		bool has;
		if ((rc = th_dmem_held_has(d, pk, pkl, &has)))
			return rc;
		if (has && th_state_get(d->st, pk, pkl, &v, &n) == 0) {
			struct th_rbuf r;
			th_rbuf_init(&r, v, n);
			if (th_get_u8(&r) == TH_REC_VERSION && th_get_i64(&r) < t &&
			    (rc = resolve_key(d, acct, akid, true)))
				return rc;
		}
	}
	if (!role_arn)
		return 0;
	char prefix[512];
	size_t pl = th_key(prefix, sizeof(prefix), 'q', 1, role_arn);
	prefix[pl++] = TH_KEY_SEP;
	struct collect_ctx cc = {.d = d, .skip = pl};
	d->ncollected = 0;
	if ((rc = th_state_scan(d->st, prefix, pl, collect_cb, &cc)) < 0)
		return rc;
	size_t nk = d->ncollected;
	for (size_t i = 0; i < nk; i++) {
		char *a, *k, ab[TH_KEY_PART_MAX + 1], kb[TH_KEY_PART_MAX + 1];
		if (!split2(d->collected[i], &a, &k))
			continue;
		th_strlcpy(ab, a, sizeof(ab));
		th_strlcpy(kb, k, sizeof(kb));
		size_t pkl = th_key(pk, sizeof(pk), 'p', 2, ab, kb);
		if (th_state_get(d->st, pk, pkl, &v, &n))
			continue;
		struct th_rbuf r;
		th_rbuf_init(&r, v, n);
		if (th_get_u8(&r) == TH_REC_VERSION && th_get_i64(&r) < t &&
		    (rc = resolve_key(d, ab, kb, true)))
			return rc;
	}
	return 0;
}

/* ---- aging ---- */

struct prune_ctx {
	struct th_detector *d;
	char type;
	int64_t cutoff;
	int err;
};

static int prune_cb(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct prune_ctx *pc = ctx;
	int64_t last = 0;
	bool drop = false;
	switch (pc->type) {
	case 'k': {
		struct th_token *t = &pc->d->tok;
		if (th_token_decode(val, vlen, t) == 0) {
			last = t->expiry_ms > t->last_seen_ms ? t->expiry_ms : t->last_seen_ms;
			/* Keys with alerts stay for the training window, so investigators
			 * can still `inspect` them; others go a day after expiry. */
			drop = last + (t->n_alerts ? pc->d->conf.training_ms : TOKEN_GRACE_MS) <
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
		int which; /* 0 tokens, 1 training, 2 dedup */
	} kinds[] = {{'k', 0}, {'b', 1}, {'i', 1}, {'n', 1}, {'d', 2}};
	for (size_t i = 0; i < TH_ARRAY_SIZE(kinds); i++) {
		char prefix[2] = {kinds[i].type, TH_KEY_SEP};
		int64_t cutoff = kinds[i].which == 0   ? now
				 : kinds[i].which == 1 ? now - d->conf.training_ms
						       : dedup_horizon(d, now);
		struct prune_ctx pc = {.d = d, .type = kinds[i].type, .cutoff = cutoff};
		int rc = th_state_scan(d->st, prefix, 2, prune_cb, &pc);
		if (pc.err)
			return pc.err;
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int expire_held(struct th_detector *d, int64_t now, bool final)
{
	int64_t before = final ? INT64_MAX : now;
	bool unused;
	int rc = th_dmem_held_has(d, "", 0, &unused); /* loads the in-memory mirror */
	if (rc)
		return rc;
	for (;;) {
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
		size_t n = d->ncollected;
		if (n == 0)
			return 0;
		/* Sorted order keeps the alert order independent of hash order. */
		qsort(d->collected, n, sizeof(d->collected[0]),
		      (int (*)(const void *, const void *))strcmp);
		for (size_t i = 0; i < n; i++) {
			char *acct, *akid, a[TH_KEY_PART_MAX + 1], k[TH_KEY_PART_MAX + 1];
			if (!split2(d->collected[i], &acct, &akid))
				continue;
			th_strlcpy(a, acct, sizeof(a));
			th_strlcpy(k, akid, sizeof(k));
			if ((rc = resolve_key(d, a, k, true)))
				return rc;
		}
		if (n < MAX_RESOLVE)
			return 0;
	}
}

int th_detector_advance(struct th_detector *d, bool final)
{
	int rc;
	if ((rc = th_dmem_clock_load(d)))
		return rc;
	int64_t now = d->clock.watermark;
	if (final || now >= d->clock.next_expiry) {
		if ((rc = expire_held(d, now, final)))
			return rc;
		d->clock.next_expiry = now + EXPIRY_SWEEP_MS;
	}
	if (final || now >= d->clock.next_prune) {
		/* Pruning scans and deletes records in the store: write the cached
		 * objects first and forget them, so none is resurrected. */
		if ((rc = th_dmem_flush(d)))
			return rc;
		th_dmem_clear_objects(d);
		if ((rc = prune(d, now)))
			return rc;
		d->clock.next_prune = now + PRUNE_SWEEP_MS;
	}
	return th_dmem_clock_save(d);
}

/* ---- processing ---- */

static void call_from_event(struct th_detector *d, const struct th_event *ev,
			    const struct th_netinfo *ni, const char *session,
			    const struct th_input_ref *ref, struct th_call *c)
{
	(void)d;
	(void)session;
	th_strlcpy(c->event_name, ev->event_name, sizeof(c->event_name));
	th_strlcpy(c->event_source, ev->event_source, sizeof(c->event_source));
	th_strlcpy(c->aws_region, ev->aws_region, sizeof(c->aws_region));
	th_strlcpy(c->source_ip, ev->source_ip, sizeof(c->source_ip));
	/* The event id, session, user agent and input name matter only for
	 * remote calls (held or judged, and named in alerts): call_complete()
	 * copies them then. Copying them for every inside call was a tenth of
	 * the detector's work on a Lambda-heavy stream. */
	c->event_id[0] = c->session[0] = c->user_agent[0] = '\0';
	th_strlcpy(c->vpce_id, ev->vpc_endpoint_id, sizeof(c->vpce_id));
	th_strlcpy(c->vpce_account, ev->vpc_endpoint_account_id, sizeof(c->vpce_account));
	c->input_topic[0] = '\0';
	c->input_partition = ref ? ref->partition : -1;
	c->input_offset = ref ? ref->offset : -1;
	c->event_time_ms = ev->event_time_ms;
	/* A session is created before its calls and lives at most 12 hours
	 * (5 minutes of clock skew allowed): a creationDate outside that is not
	 * believed, so one record cannot stretch or cut short a hold or a
	 * token's life (time poisoning through a field the eventTime bounds do
	 * not cover). */
	c->creation_ms = ev->ui.creation_ms &&
				 ev->ui.creation_ms <= ev->event_time_ms + 5 * 60 * 1000LL &&
				 ev->ui.creation_ms >= ev->event_time_ms - 12 * HOUR_MS
			 ? ev->ui.creation_ms
			 : 0;
	c->asn = ni->asn;
	/* The AS name: in net_verdict()'s reason for a public source, and in
	 * alerts (call_complete()). */
	if (ni->kind == TH_NET_PUBLIC)
		th_strlcpy(c->as_org, ni->as_org, sizeof(c->as_org));
	else
		c->as_org[0] = '\0';
	th_strlcpy(c->src_region, ni->aws_region, sizeof(c->src_region));
	c->net_kind = (uint8_t)ni->kind;
}

static void call_complete(const struct th_event *ev, const struct th_netinfo *ni,
			  const char *session, const struct th_input_ref *ref,
			  struct th_call *c)
{
	th_strlcpy(c->event_id, ev->event_id, sizeof(c->event_id));
	th_strlcpy(c->session, session, sizeof(c->session));
	th_strlcpy(c->as_org, ni->as_org, sizeof(c->as_org));
	th_strlcpy(c->user_agent, ev->user_agent, sizeof(c->user_agent));
	th_strlcpy(c->input_topic, ref ? ref->topic : NULL, sizeof(c->input_topic));
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
	bool role_learned = false, key_learned = false;
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
	int role_found = th_dmem_load_role(d, role_arn, &ro);
	if (role_found < 0)
		return role_found;
	int tok_found = th_dmem_load_token(d, acct, akid, &t);
	if (tok_found < 0)
		return tok_found;

	/* Runtime learning: the function's SDK from inside its environment. The
	 * UA only labels the benign side; the network must agree. */
	int fn_idx = session && role_found ? find_function(ro, session) : -1;
	/* The session name may teach a function only while nothing better is
	 * known of the key: an AssumeRole by an identity or Lambda's issuance
	 * decides what the key is, and a poller's name is never a function. */
	bool name_may_teach = session && *session && !is_poller_name(session) &&
			      (!tok_found || (t->origin != TH_ORIGIN_ASSUMED &&
					      t->origin != TH_ORIGIN_ISSUED));
	bool learns_role = name_may_teach && (!role_found || !ro->is_lambda || fn_idx < 0);
	bool learns_key = name_may_teach && (!tok_found || t->origin == TH_ORIGIN_UNKNOWN);
	/* Nothing to learn (the common case: a known function's known key) is
	 * checked first: the user-agent search is the costly part. */
	if ((learns_role || learns_key) && session && ev->user_agent &&
	    strstr(ev->user_agent, "exec-env/AWS_Lambda")) {
		struct regions rs;
		regions_of(ro, fn_idx >= 0 ? session : NULL, &rs);
		if (net_verdict(c, acct, &rs, reason, sizeof(reason)) == NET_INSIDE) {
			/* Rare (first sight of a function or key): decide lapsed holds
			 * first, then reload what that may have changed. */
			if ((rc = expire_lapsed(d, acct, akid, learns_role ? role_arn : NULL,
						ev->event_time_ms)))
				return rc;
			if ((role_found = th_dmem_load_role(d, role_arn, &ro)) < 0)
				return role_found;
			if ((tok_found = th_dmem_load_token(d, acct, akid, &t)) < 0)
				return tok_found;
			if (learns_role) {
				if (!role_found)
					ro->first_seen_ms = ev->event_time_ms;
				ro->is_lambda = 1;
				role_add_function(ro, session, NULL);
				role_found = 1;
				role_learned = true;
				if ((rc = th_dmem_save_role(d, role_arn, ro)))
					return rc;
			}
			if (learns_key && (!tok_found || t->origin == TH_ORIGIN_UNKNOWN)) {
				t->origin = TH_ORIGIN_RUNTIME;
				th_strlcpy(t->function, session, sizeof(t->function));
				tok_found = 1;
				key_learned = true;
			}
		}
	}

	enum th_cred_class cls = classify(ro, role_found, t, tok_found, session);
	struct regions rs;
	regions_of(ro, cls == TH_CRED_TOKEN ? token_function(t) : NULL, &rs);
	enum verdict vd = net_verdict(c, acct, &rs, reason, sizeof(reason));

	if (cls != TH_CRED_UNKNOWN || (role_found && ro->is_lambda)) {
		if (!t->role_arn[0])
			th_strlcpy(t->role_arn, role_arn, sizeof(t->role_arn));
		if (!t->session[0])
			th_strlcpy(t->session, session, sizeof(t->session));
	}
	if (vd == NET_INSIDE) {
		d->stats.inside_uses++;
		if (cls != TH_CRED_UNKNOWN) {
			token_record_use(t, c, vd);
			if (cls == TH_CRED_TOKEN && (rc = upgrade_alerts(d, acct, akid, t)))
				return rc;
			if ((rc = th_dmem_save_token(d, acct, akid, t)))
				return rc;
		}
	} else if (vd == NET_REMOTE) {
		d->stats.remote_uses++;
		call_complete(ev, ni, session, ref, c);
		/* A key tied to a function by its session name alone is decided at
		 * once, as the function's token: holding it until an AssumeRole
		 * might arrive would delay a real stolen key's alert by up to the
		 * key's 12 hours whenever its issuance was not seen. If an
		 * AssumeRole by another identity arrives later, the use is decided
		 * again as the role's other session (redecide_as_other). */
		if (cls != TH_CRED_UNKNOWN && role_found && ro->is_lambda) {
			token_record_use(t, c, vd);
			if ((rc = decide(d, acct, akid, cls, t, role_arn, c, reason, NULL, NULL)))
				return rc;
			if ((rc = th_dmem_save_token(d, acct, akid, t)))
				return rc;
		} else if ((rc = hold_use(d, acct, akid, role_arn, c))) {
			return rc;
		}
	}
	/* Training for other sessions of a Lambda role: the networks they use. */
	if (cls == TH_CRED_OTHER && ni->kind == TH_NET_PUBLIC && ni->asn) {
		char asn[16];
		th_dmem_asn_str(asn, sizeof(asn), ni->asn);
		if ((rc = th_dmem_teach_sighting(d, 'n', role_arn, asn, akid, ev->event_time_ms)))
			return rc;
	}
	if (key_learned && (rc = resolve_key(d, acct, akid, false)))
		return rc;
	if (role_learned && (rc = resolve_role(d, role_arn)))
		return rc;
	return 0;
}

/* A credential's expiry from an AssumeRole response, within what STS can
 * issue (at most 12 hours): a record claiming more (or an expiry before its
 * own event) must not keep the key, or prune it, on its say-so. */
static int64_t issued_expiry(const struct th_event *ev)
{
	int64_t t = ev->event_time_ms, e = ev->cred.expiration_ms;
	return e > t && e <= t + 12 * HOUR_MS ? e : t + 12 * HOUR_MS;
}

/* Lambda's sts:AssumeRole: credentials for a function, or for one of
 * Lambda's own service sessions (an event-source poller). Either way the key
 * is a Lambda credential, judged as a Lambda token when used remotely (spec
 * v2); a poller session names no function, so it is judged against the
 * role's regions and teaches no function. */
static int learn_issuance(struct th_detector *d, const struct th_event *ev, const char *acct)
{
	struct th_role *ro;
	struct th_token *t;
	const char *role_arn = ev->req.role_arn, *sess = ev->req.role_session_name;
	const char *akid = ev->cred.access_key_id;
	int rc, found;
	bool changed = false;
	if ((found = th_dmem_load_role(d, role_arn, &ro)) < 0)
		return found;
	/* A function may carry a poller-shaped name; once it is known (function
	 * management), its issuance is a function's. */
	bool poller = !sess || !*sess ||
		      (is_poller_name(sess) && (!found || find_function(ro, sess) < 0));
	/* Only a change to the role can decide other keys' holds; checking the
	 * role's held keys on every issuance would cost a scan per event. */
	bool will_change = !found || !ro->is_lambda;
	if (!will_change && poller) {
		will_change = !has_region(ro->service_regions, ro->n_service_regions, ev->aws_region);
	} else if (!will_change) {
		int i = find_function(ro, sess);
		will_change = i < 0 || !has_region(ro->functions[i].regions,
						   ro->functions[i].n_regions, ev->aws_region);
	}
	if ((rc = expire_lapsed(d, acct, akid, will_change ? role_arn : NULL, ev->event_time_ms)))
		return rc;
	if ((found = th_dmem_load_role(d, role_arn, &ro)) < 0)
		return found;
	if (!found)
		ro->first_seen_ms = ev->event_time_ms;
	if (!ro->is_lambda) {
		ro->is_lambda = 1;
		changed = true;
	}
	if (poller) {
		uint8_t before = ro->n_service_regions;
		add_region(ro->service_regions, &ro->n_service_regions, ev->aws_region);
		changed = changed || before != ro->n_service_regions;
	} else {
		int i = find_function(ro, sess);
		uint8_t before = i >= 0 ? ro->functions[i].n_regions : 0;
		i = role_add_function(ro, sess, ev->aws_region);
		changed = changed || i < 0 || before != ro->functions[i].n_regions || before == 0;
	}
	if (changed && (rc = th_dmem_save_role(d, role_arn, ro)))
		return rc;
	if (akid && *akid) {
		int tf = th_dmem_load_token(d, acct, akid, &t);
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
			t->expiry_ms = issued_expiry(ev);
			if ((rc = th_dmem_save_token(d, acct, akid, t)))
				return rc;
		}
		if ((rc = resolve_key(d, acct, akid, false)))
			return rc;
	}
	return changed ? resolve_role(d, role_arn) : 0;
}

/* The key, decided earlier as a Lambda token on weaker evidence (its session
 * name, or its runtime-looking use), turns out to be an identity's session:
 * decide its remembered remote calls again as the role's other session, as
 * they would have been had the AssumeRole arrived first. Each raised alert is
 * named by the new one (upgrade_of). */
static int redecide_as_other(struct th_detector *d, const char *acct, const char *akid,
			     struct th_token *t, const char *role_arn, const char *was_function)
{
	char why[1400], reason[400]; /* why names an identity ARN (up to 2048 bytes, cut) */
	struct th_role *ro;
	struct regions rs;
	int rc = th_dmem_load_role(d, role_arn, &ro);
	if (rc < 0)
		return rc;
	regions_of(ro, NULL, &rs);
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
		if (net_verdict(&c, acct, &rs, reason, sizeof(reason)) != NET_REMOTE)
			continue;
		if ((rc = decide(d, acct, akid, TH_CRED_OTHER, t, role_arn, &c, reason,
				 prior[0] ? prior : NULL, why)))
			return rc;
		/* What process_call teaches for another session's call. */
		if (c.net_kind == TH_NET_PUBLIC && c.asn) {
			char asn[16];
			th_dmem_asn_str(asn, sizeof(asn), c.asn);
			rc = th_dmem_teach_sighting(d, 'n', role_arn, asn, akid, c.event_time_ms);
			if (rc)
				return rc;
		}
	}
	return 0;
}

/* sts:AssumeRole by an identity: the key is that identity's session,
 * whatever its name (spec v2: a session named after a function, or
 * "awslambda_...", is still the role's other session). */
static int learn_assumption(struct th_detector *d, const struct th_event *ev, const char *acct)
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
	if ((rc = expire_lapsed(d, acct, akid, NULL, ev->event_time_ms)))
		return rc;
	if ((rc = th_dmem_teach_sighting(d, 'i', ev->req.role_arn, who ? who : "unknown", akid,
				 ev->event_time_ms)))
		return rc;
	int found = th_dmem_load_token(d, acct, akid, &t);
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
	t->expiry_ms = issued_expiry(ev);
	if (was_token && (rc = redecide_as_other(d, acct, akid, t, was_role, was_function)))
		return rc;
	if ((rc = th_dmem_save_token(d, acct, akid, t)))
		return rc;
	return resolve_key(d, acct, akid, false);
}

/* lambda:CreateFunction* / UpdateFunctionConfiguration*: role → function. */
static int learn_function(struct th_detector *d, const struct th_event *ev)
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
	if ((rc = expire_lapsed(d, NULL, NULL, ev->req.role, ev->event_time_ms)))
		return rc;
	if ((found = th_dmem_load_role(d, ev->req.role, &ro)) < 0)
		return found;
	if (!found)
		ro->first_seen_ms = ev->event_time_ms;
	ro->is_lambda = 1;
	role_add_function(ro, name, ev->aws_region);
	if ((rc = th_dmem_save_role(d, ev->req.role, ro)))
		return rc;
	return resolve_role(d, ev->req.role);
}

int th_detector_process(struct th_detector *d, const struct th_event *ev,
			const struct th_input_ref *ref)
{
	const char *acct = th_event_account(ev);
	struct th_netinfo ni;
	int64_t first;
	int rc;

	d->stats.events++;
	if ((rc = th_dmem_clock_load(d)))
		return rc;
	if (!acct || !*acct)
		return 0;
	if ((rc = th_dmem_account_seen(d, acct, ev->event_time_ms, &first)))
		return rc;
	th_dmem_enrich(d, ev->source_ip, &ni);
	if (ni.kind == TH_NET_UNRECOGNISED)
		d->stats.source_unrecognised++;

	const char *type = ev->ui.type;
	const char *akid = ev->ui.access_key_id;
	if (streq(type, "AssumedRole") && starts_with(akid, "ASIA")) {
		if ((rc = process_call(d, ev, acct, &ni, ref)))
			return rc;
	} else if (ni.kind == TH_NET_PUBLIC && type && !streq(type, "AWSService")) {
		/* Non-Lambda identities from public non-AWS networks: the account's
		 * egress baseline. (Sessions of roles not yet known as Lambda's are
		 * taught when their hold ends, see resolve_key.) */
		if ((rc = th_dmem_teach_account_asn(d, acct, ni.asn, ev->event_time_ms)))
			return rc;
	}

	if (!ev->error_code && streq(ev->event_source, "sts.amazonaws.com") &&
	    streq(ev->event_name, "AssumeRole") && ev->req.role_arn) {
		/* Lambda's issuance, or an assumption by any other identity, other
		 * AWS services (ec2.amazonaws.com, ...) included (spec v2: "any
		 * identity other than the Lambda service"). */
		if (streq(type, "AWSService") && streq(ev->ui.invoked_by, "lambda.amazonaws.com"))
			rc = learn_issuance(d, ev, acct);
		else if (ev->cred.access_key_id && *ev->cred.access_key_id)
			rc = learn_assumption(d, ev, acct);
		if (rc)
			return rc;
	} else if (!ev->error_code && streq(ev->event_source, "lambda.amazonaws.com") &&
		   (starts_with(ev->event_name, "CreateFunction") ||
		    starts_with(ev->event_name, "UpdateFunctionConfiguration")) &&
		   ev->req.role && ev->req.function_name) {
		if ((rc = learn_function(d, ev)))
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
	int rc = th_dmem_flush(d);
	if (rc)
		return rc;
	if (d->nobjs > OBJS_MAX || d->nbsights > OBJS_MAX)
		th_dmem_clear_objects(d);
	if (!d->clock_loaded || !d->clock_dirty)
		return 0;
	d->clock_dirty = false;
	return th_dmem_clock_save(d);
}

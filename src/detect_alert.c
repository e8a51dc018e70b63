/*
 * Alerting and dedup (detect.h): activation (no alert until an account's
 * first event is activation_days old), the dedup ledger ("d" records: one
 * alert per variation, account, role, function or session and ASN within
 * dedup_days, in event time whatever the arrival order), and the alert
 * itself, filled from the winning variation's descriptor and handed to
 * on_alert.
 */
#include "trailhound/detect.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detect_int.h"


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


/* Ledger entries at or before this time can no longer matter: an event still
 * to come is at most DEDUP_LATENESS_MS behind the watermark @p now, so it
 * cannot fall within the dedup window of an alert that old. */
int64_t th_detect_dedup_horizon(const struct th_detector *d, int64_t now)
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
int th_detect_raise_alert(struct th_detector *d, const struct th_variation *v, const char *acct,
			  const char *akid, enum th_cred_class cls, const struct th_token *t,
			  const char *role_arn, const struct th_call *c, const char *upgrade_of,
			  char alert_id[33], bool *raised)
{
	struct th_alert *a = &d->alert;
	/* A poller's token names no function: its session stands in (dedup, ID). */
	const char *fn = cls == TH_CRED_TOKEN ? th_detect_token_function(t) : NULL;
	const char *fn_or_sess = fn ? fn : c->session;
	int64_t first = 0, tm = c->event_time_ms;
	char asn[16], dkey[1024];
	struct th_dedup dd; /* ~1 KB: fine on the stack */
	const void *val;
	size_t vlen, dkl;
	int rc;

	*raised = false;
	th_alert_id(alert_id, v->id, acct, role_arn, fn_or_sess, c->asn, akid);
	if ((rc = th_detect_account_seen(d, acct, 0, &first)))
		return rc;
	if (!first || tm - first < d->conf.activation_ms) {
		d->stats.suppressed_activation++;
		return 0;
	}
	th_detect_asn_str(asn, sizeof(asn), c->asn);
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
		return th_detect_put(d, dkey, dkl);
	}
	dedup_add(&dd, tm, alert_id,
		  th_detect_dedup_horizon(d, d->clock.watermark > tm ? d->clock.watermark : tm));
	th_wbuf_reset(&d->w);
	th_dedup_encode(&d->w, &dd);
	if ((rc = th_detect_put(d, dkey, dkl)))
		return rc;

	memset(a, 0, sizeof(*a));
	memcpy(a->alert_id, alert_id, sizeof(a->alert_id));
	a->variation = v->id;
	a->alert_name = v->name;
	a->severity = v->severity;
	a->description = v->description;
	a->tactic = v->tactic;
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

/*
 * Classification (detect.h): which credential a call used (a function's
 * token, another identity's session of a Lambda role, or not yet known),
 * which network it came from (inside the function's environment or remote,
 * spec §3), and the judgement: decide() gathers every fact the variations
 * may look at into struct th_match_ctx and runs the detector's variation
 * table (variation.h); the first match is raised by detect_alert.c.
 */
#include "trailhound/detect.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detect_int.h"


/* Lambda's own service sessions (event-source pollers) are named
 * "awslambda_<n>_<yyyymmddHHMMSSmmm>". The name alone decides nothing (anyone
 * may pass it to AssumeRole, and a function may be called "awslambda_orders"):
 * it only tells a Lambda-issued poller session, which names no function,
 * from a Lambda-issued function session, and keeps such a name from ever
 * being learned as a function. */
bool th_detect_is_poller_name(const char *s)
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
const char *th_detect_token_function(const struct th_token *t)
{
	return t->function[0] ? t->function : NULL;
}

void th_detect_regions_of(const struct th_role *ro, const char *function, struct regions *out)
{
	uint64_t bits;
	out->n = 0;
	if (function) {
		int i = th_role_find_function(ro, function);
		bits = i >= 0 ? ro->functions[i].regions : 0;
	} else {
		/* A service session: every region the role's functions or service
		 * sessions were issued in (the table holds exactly those). */
		bits = UINT64_MAX;
	}
	for (int j = 0; j < ro->n_regions; j++)
		if (bits & (UINT64_C(1) << j))
			out->r[out->n++] = ro->regions[j];
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


/* The reason is written only for a remote verdict: it becomes the alert's
 * first evidence line, and formatting it for every inside call is waste. */
enum verdict th_detect_net_verdict(const struct th_call *c, const char *acct,
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


const char *th_detect_ua_lambda_claim(const struct th_detector *d, const char *ua)
{
	if (!ua)
		return NULL;
	for (int i = 0; i < d->conf.n_lambda_user_agents; i++)
		if (strstr(ua, d->conf.lambda_user_agents[i]))
			return d->conf.lambda_user_agents[i];
	return NULL;
}

/* What ua_cli_family() looks for besides the configured command-line tools:
 * an SDK inside Lambda appends it. */
#define UA_EXEC_ENV "exec-env/"

/* A marker's word kept after a cut: the marker and what follows it up to
 * the next space (its version, the runtime), at most this long. */
#define UA_WORD_MAX 64
/* Room for the kept words; the head gets the rest of the field. */
#define UA_WORDS_MAX 192

/* Appends the word of marker @p m to @p words when @p ua holds it ending
 * past @p head_min (shorter heads keep it whole), and it is not there yet. */
static void keep_marker(const char *ua, const char *m, size_t head_min, char *words, size_t *n)
{
	size_t ml = strlen(m);
	const char *at = ml ? strstr(ua, m) : NULL;
	if (!at || (size_t)(at - ua) + ml <= head_min)
		return;
	size_t wl = strcspn(at, " ");
	if (wl > UA_WORD_MAX)
		wl = ml > UA_WORD_MAX ? ml : UA_WORD_MAX;
	/* a marker that no longer fits is dropped whole, never cut (a cut
	 * marker would not match, nor could it match what the value lacks) */
	if (ml > wl || *n + 1 + wl >= UA_WORDS_MAX)
		return;
	char word[UA_WORDS_MAX];
	size_t cut = th_copy_utf8n(word, sizeof(word), at, wl);
	if (cut < ml)
		return;
	words[*n] = ' ';
	memcpy(words + *n + 1, word, cut + 1);
	if (strstr(words, word) != words + *n + 1)
		words[*n] = '\0'; /* kept already */
	else
		*n += 1 + cut;
}

void th_detect_keep_user_agent(const struct th_detector *d, char *dst, size_t size, const char *ua)
{
	size_t len = ua ? strlen(ua) : 0;
	if (len < size || size <= UA_WORDS_MAX + TH_CUT_MARK_LEN + 1) {
		th_copy_utf8_mark(dst, size, ua);
		return;
	}
	/* A marker ending within this many bytes is kept by any head. */
	size_t head_min = size - 1 - TH_CUT_MARK_LEN - UA_WORDS_MAX, n = 0;
	char words[UA_WORDS_MAX] = "";
	/* in the order they decide: a Lambda claim (variation 1) first */
	for (int i = 0; i < d->conf.n_lambda_user_agents; i++)
		keep_marker(ua, d->conf.lambda_user_agents[i], head_min, words, &n);
	keep_marker(ua, UA_EXEC_ENV, head_min, words, &n);
	/* an anchored one ('^') is judged at the start, which every head keeps */
	for (int i = 0; i < d->conf.n_cli_user_agents; i++)
		if (d->conf.cli_user_agents[i][0] != '^')
			keep_marker(ua, d->conf.cli_user_agents[i], head_min, words, &n);
	size_t h = th_copy_utf8n_mark(dst, size - n, ua, len);
	memcpy(dst + h, words, n + 1);
}

static const char *ua_cli_family(const struct th_detector *d, const char *ua)
{
	if (!ua || strstr(ua, UA_EXEC_ENV))
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


enum th_cred_class th_detect_classify(const struct th_role *ro, bool role_found, struct th_token *t,
				      bool tok_found, const char *session)
{
	if (tok_found && t->origin == TH_ORIGIN_ASSUMED)
		return TH_CRED_OTHER;
	if (tok_found && t->origin != TH_ORIGIN_UNKNOWN)
		return TH_CRED_TOKEN;
	if (role_found && ro->is_lambda && session && th_role_find_function(ro, session) >= 0) {
		t->origin = TH_ORIGIN_SESSION;
		th_strlcpy(t->function, session, sizeof(t->function));
		return TH_CRED_TOKEN;
	}
	return TH_CRED_UNKNOWN;
}

/* Gather the facts, run the variations, raise the winner. Updates t's alert
 * refs (the caller saves t). A re-decision of an earlier call (later
 * evidence) passes @p why, and @p upgrade_of when that call had raised an
 * alert. */
int th_detect_decide(struct th_detector *d, const char *acct, const char *akid,
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
	m.ua_lambda_claim = th_detect_ua_lambda_claim(d, c->user_agent);
	m.ua_cli_family = ua_cli_family(d, c->user_agent);
	th_detect_asn_str(asn, sizeof(asn), c->asn);
	if (c->asn) {
		if ((rc = th_detect_load_sighting(d, 'b', acct, asn, &s)) < 0)
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
			if ((rc = th_detect_load_sighting(d, 'i', role_arn, m.identity, &s)) < 0)
				return rc;
			/* By another key, at or before this event: a later
			 * assumption (taught before a held use is decided, or
			 * arriving first) is no training for it. */
			int64_t o = rc == 1 ? th_sighting_other_at(&s, akid, tm) : 0;
			m.identity_seen = o && o >= since;
		}
		if ((rc = th_detect_load_sighting(d, 'n', role_arn, asn, &s)) < 0)
			return rc;
		int64_t o = rc == 1 ? th_sighting_other_at(&s, akid, tm) : 0;
		m.asn_seen_for_role = c->asn && o && o >= since;
	}

	d->evid.n = 0;
	th_evidence_add(&d->evid, "%s", remote_reason);
	for (size_t i = 0; i < d->conf.n_variations; i++) {
		const struct th_variation *v = &d->conf.variations[i];
		if (v->cred != cls || !v->match(&m, &d->evid))
			continue;
		char id[33];
		bool raised;
		if (upgrade_of)
			th_evidence_add(&d->evid, "upgrades alert %s: %s", upgrade_of, why);
		else if (why)
			th_evidence_add(&d->evid, "decided again: %s", why);
		/* First decisions only are remembered: a re-decision is reached
		 * through the original call's entry. Their room is made first,
		 * so that no alert is raised and then forgotten. */
		bool remember = cls == TH_CRED_TOKEN && !why;
		if (remember && th_token_alerts_room(t))
			return TH_ENOMEM;
		rc = th_detect_raise_alert(d, v, acct, akid, cls, t, role_arn, c, upgrade_of, id, &raised);
		if (rc)
			return rc;
		return remember ? th_detect_remember_decision(t, v->id, raised ? id : NULL, c) : 0;
	}
	return 0;
}

/*
 * The six variations, in the spec's order (first match wins). Each is a
 * const descriptor with a pure match function over facts the detector has
 * already gathered; see variation.h for how to add one.
 */
#include "trailhound/variation.h"

#include "trailhound/common.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* MITRE ATT&CK TA0006, Credential Access: every variation is a use of
 * credentials taken from a function. */
static const char CREDENTIAL_ACCESS[] = "TA0006";

static const char DESCRIPTION[] =
	"An AWS Lambda's token was used externally of the cloud environment.";

const char *const th_investigative_actions[] = {
	"Check if the role is attached to the Lambda.",
	"Check if the IAM role was assumed by a different identity.",
	"Check what API calls were executed by the access-key.",
	NULL,
};

void th_evidence_add(struct th_evidence *ev, const char *fmt, ...)
{
	char line[TH_EVIDENCE_LINE + 4];
	va_list ap;
	if (ev->n >= TH_EVIDENCE_MAX)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* A line longer than any the detector writes is still cut on a
	 * character's boundary: alerts are UTF-8 (JSON, Avro strings). */
	th_copy_utf8(ev->text[ev->n++], sizeof(ev->text[0]), line);
}

/* 1: the key is both inside and outside, or the remote call impersonates
 * Lambda's runtime. */
static bool match_token_suspicious(const struct th_match_ctx *m, struct th_evidence *ev)
{
	if (!m->key_used_inside && !m->ua_lambda_claim)
		return false;
	if (m->key_used_inside)
		th_evidence_add(ev,
				"the same key was also used from inside the function's environment "
				"(%u inside call(s)): two networks within its lifetime",
				m->tok->inside);
	if (m->ua_lambda_claim)
		th_evidence_add(ev,
				"the remote call claims a Lambda/AWS-internal user agent (%s) that "
				"only runs inside AWS",
				m->ua_lambda_claim);
	return true;
}

/* 2: a command-line tool drove the stolen token. */
static bool match_token_cli(const struct th_match_ctx *m, struct th_evidence *ev)
{
	if (!m->ua_cli_family)
		return false;
	th_evidence_add(ev, "user agent of a command-line tool (%s)", m->ua_cli_family);
	return true;
}

/* 3: remote, but from a network the account's people already use. */
static bool match_token_known_asn(const struct th_match_ctx *m, struct th_evidence *ev)
{
	if (!m->call->asn || (!m->asn_in_baseline && !m->asn_trusted))
		return false;
	if (m->asn_in_baseline)
		th_evidence_add(ev,
				"AS%u is in the account's training baseline (used by its non-Lambda "
				"identities in the training period)",
				m->call->asn);
	if (m->asn_trusted)
		th_evidence_add(ev, "AS%u is a configured trusted ASN", m->call->asn);
	return true;
}

/* 4: any other remote use of a Lambda token. */
static bool match_token_remote(const struct th_match_ctx *m, struct th_evidence *ev)
{
	(void)m;
	(void)ev;
	return true;
}

/* 5: another identity's session of a Lambda role, new identity or network. */
static bool match_role_new(const struct th_match_ctx *m, struct th_evidence *ev)
{
	if (m->identity_seen && m->asn_seen_for_role)
		return false;
	if (!m->identity)
		th_evidence_add(ev, "the identity that assumed the role is unknown");
	else if (!m->identity_seen)
		th_evidence_add(ev, "%s had not assumed this Lambda role in the training period",
				m->identity);
	if (!m->asn_seen_for_role)
		th_evidence_add(ev, "AS%u was not used by this role's sessions in the training period",
				m->call->asn);
	return true;
}

/* 6: another identity's session of a Lambda role, both already seen. */
static bool match_role_known(const struct th_match_ctx *m, struct th_evidence *ev)
{
	th_evidence_add(ev, "%s assumed this Lambda role before, from AS%u, in the training period",
			m->identity ? m->identity : "the identity", m->call->asn);
	return true;
}

#define TOKEN_VARIATION(ID, NAME, SEVERITY, UPGRADABLE, MATCH)                                    \
	{.id = (ID), .name = (NAME), .severity = (SEVERITY), .tactic = CREDENTIAL_ACCESS,          \
	 .cred = TH_CRED_TOKEN, .upgradable = (UPGRADABLE), .description = DESCRIPTION,          \
	 .match = (MATCH)}
#define ROLE_VARIATION(ID, NAME, SEVERITY, MATCH)                                                 \
	{.id = (ID), .name = (NAME), .severity = (SEVERITY), .tactic = CREDENTIAL_ACCESS,          \
	 .cred = TH_CRED_OTHER, .upgradable = false, .description = DESCRIPTION, .match = (MATCH)}

/* Variation 1 has nothing stronger to become, so it is not upgradable; 2-4
 * become 1 once the key's inside use is known. 5-6 judge another identity's
 * session, which has no inside use. */
const struct th_variation th_variations[] = {
	TOKEN_VARIATION(1, "Suspicious usage of AWS Lambda's token", "High", false,
			match_token_suspicious),
	TOKEN_VARIATION(2, "Remote command line usage of AWS Lambda's token", "High", true,
			match_token_cli),
	TOKEN_VARIATION(3, "Usage of AWS Lambda's token from known ASN", "Informational", true,
			match_token_known_asn),
	TOKEN_VARIATION(4, "Remote usage of AWS Lambda's token", "Informational", true,
			match_token_remote),
	ROLE_VARIATION(5, "Suspicious usage of AWS Lambda's role", "Medium", match_role_new),
	ROLE_VARIATION(6, "Suspicious usage of AWS Lambda's role", "Low", match_role_known),
};
const size_t th_variations_count = TH_ARRAY_SIZE(th_variations);

_Static_assert(TH_ARRAY_SIZE(th_variations) <= TH_VARIATION_MAX,
	       "every builtin variation needs an id up to TH_VARIATION_MAX");
_Static_assert(TH_VARIATION_MAX <= UINT8_MAX,
	       "a token's alert refs store the variation id in a uint8_t (records.h)");

static bool known_severity(const char *s)
{
	static const char *const sev[] = {"High", "Medium", "Low", "Informational"};
	for (size_t i = 0; s && i < TH_ARRAY_SIZE(sev); i++)
		if (strcmp(s, sev[i]) == 0)
			return true;
	return false;
}

int th_variations_check(const struct th_variation *vars, size_t n, char *errstr,
			size_t errstr_size)
{
	bool seen[TH_VARIATION_MAX + 1] = {false};
	for (size_t i = 0; i < n; i++) {
		const struct th_variation *v = &vars[i];
		if (v->id < 1 || v->id > TH_VARIATION_MAX || seen[v->id]) {
			th_errstr(errstr, errstr_size,
				  "variation #%zu: id %d is not unique within 1..%d", i, v->id,
				  TH_VARIATION_MAX);
			return TH_EINVAL;
		}
		seen[v->id] = true;
		if (!v->name || !v->tactic || !v->description || !v->match ||
		    !known_severity(v->severity) ||
		    (v->cred != TH_CRED_TOKEN && v->cred != TH_CRED_OTHER)) {
			th_errstr(errstr, errstr_size,
				  "variation %d: name, tactic, description, match, a known "
				  "severity and a credential kind are required",
				  v->id);
			return TH_EINVAL;
		}
	}
	return 0;
}

const char *th_cred_class_name(enum th_cred_class cls)
{
	switch (cls) {
	case TH_CRED_TOKEN: return "token";
	case TH_CRED_OTHER: return "role-session";
	default: return "unknown";
	}
}

/*
 * The six variations, in the spec's order (first match wins). Each is a
 * const descriptor with a pure match function over facts the detector has
 * already gathered; see variation.h for how to add one.
 */
#include "trailhound/variation.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

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
	va_list ap;
	if (ev->n >= TH_EVIDENCE_MAX)
		return;
	va_start(ap, fmt);
	vsnprintf(ev->text[ev->n++], sizeof(ev->text[0]), fmt, ap);
	va_end(ap);
}

/* 1: the key is both inside and outside, or the remote call impersonates
 * Lambda's runtime. */
static bool match_token_suspicious(const struct th_match_ctx *m, struct th_evidence *ev)
{
	if (m->cls != TH_CRED_TOKEN || (!m->key_used_inside && !m->ua_lambda_claim))
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
	if (m->cls != TH_CRED_TOKEN || !m->ua_cli_family)
		return false;
	th_evidence_add(ev, "user agent of a command-line tool (%s)", m->ua_cli_family);
	return true;
}

/* 3: remote, but from a network the account's people already use. */
static bool match_token_known_asn(const struct th_match_ctx *m, struct th_evidence *ev)
{
	if (m->cls != TH_CRED_TOKEN || !m->call->asn || (!m->asn_in_baseline && !m->asn_trusted))
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
	(void)ev;
	return m->cls == TH_CRED_TOKEN;
}

/* 5: another identity's session of a Lambda role, new identity or network. */
static bool match_role_new(const struct th_match_ctx *m, struct th_evidence *ev)
{
	if (m->cls != TH_CRED_OTHER || (m->identity_seen && m->asn_seen_for_role))
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
	if (m->cls != TH_CRED_OTHER)
		return false;
	th_evidence_add(ev, "%s assumed this Lambda role before, from AS%u, in the training period",
			m->identity ? m->identity : "the identity", m->call->asn);
	return true;
}

const struct th_variation th_variations[] = {
	{.id = 1,
	 .name = "Suspicious usage of AWS Lambda's token",
	 .severity = "High",
	 .description = DESCRIPTION,
	 .match = match_token_suspicious},
	{.id = 2,
	 .name = "Remote command line usage of AWS Lambda's token",
	 .severity = "High",
	 .description = DESCRIPTION,
	 .match = match_token_cli},
	{.id = 3,
	 .name = "Usage of AWS Lambda's token from known ASN",
	 .severity = "Informational",
	 .description = DESCRIPTION,
	 .match = match_token_known_asn},
	{.id = 4,
	 .name = "Remote usage of AWS Lambda's token",
	 .severity = "Informational",
	 .description = DESCRIPTION,
	 .match = match_token_remote},
	{.id = 5,
	 .name = "Suspicious usage of AWS Lambda's role",
	 .severity = "Medium",
	 .description = DESCRIPTION,
	 .match = match_role_new},
	{.id = 6,
	 .name = "Suspicious usage of AWS Lambda's role",
	 .severity = "Low",
	 .description = DESCRIPTION,
	 .match = match_role_known},
};
const size_t th_variations_count = sizeof(th_variations) / sizeof(th_variations[0]);

const struct th_variation *th_variation_get(int id)
{
	for (size_t i = 0; i < th_variations_count; i++)
		if (th_variations[i].id == id)
			return &th_variations[i];
	return NULL;
}

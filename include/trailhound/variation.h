/*
 * The variations of "Remote usage of AWS Lambda's token": one const
 * descriptor each (name, severity, description, match), listed once in
 * th_variations[] in the spec's order; the first that matches wins.
 *
 * To add a variation: write its match function in src/variations.c, add its
 * descriptor to th_variations[], and add a folder of cases under
 * tests/cases/<name>/. Match functions are pure: the detector gathers every
 * fact they may look at into struct th_match_ctx beforehand.
 */
#ifndef TRAILHOUND_VARIATION_H
#define TRAILHOUND_VARIATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "trailhound/records.h"

#ifdef __cplusplus
extern "C" {
#endif

enum th_cred_class {
	TH_CRED_UNKNOWN = 0, /* not (yet) known to be a Lambda role's */
	TH_CRED_TOKEN,       /* a Lambda token: the function's own credentials */
	TH_CRED_OTHER,       /* a Lambda role assumed by another identity */
};

/* Everything a match function may look at, gathered by the detector. */
struct th_match_ctx {
	enum th_cred_class cls;
	const struct th_call *call;  /* the remote use being judged */
	const struct th_token *tok;  /* what is known of its key */
	const char *remote_reason;   /* why the call counts as remote */
	bool key_used_inside;        /* the key has at least one inside use */
	const char *ua_lambda_claim; /* matched Lambda/AWS-internal UA marker, or NULL */
	const char *ua_cli_family;   /* matched command-line UA family, or NULL */
	bool asn_in_baseline;        /* source ASN in the account's training baseline */
	bool asn_trusted;            /* source ASN in the configured trusted list */
	const char *identity;        /* who assumed the role (other sessions), or NULL */
	bool identity_seen;          /* identity assumed this role in training (other key) */
	bool asn_seen_for_role;      /* ASN used by this role's other sessions in training */
};

#define TH_EVIDENCE_MAX 8
struct th_evidence {
	int n;
	char text[TH_EVIDENCE_MAX][320];
};
void th_evidence_add(struct th_evidence *ev, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

struct th_variation {
	int id;               /* the row of the spec's table, 1..6 */
	const char *name;     /* alert name */
	const char *severity; /* High, Medium, Low, Informational */
	const char *description;
	/* True when the variation applies; appends its reasons to @p ev. */
	bool (*match)(const struct th_match_ctx *m, struct th_evidence *ev);
};

extern const struct th_variation th_variations[];
extern const size_t th_variations_count;
/* The seed's investigative actions, NULL-terminated. */
extern const char *const th_investigative_actions[];

/** @brief The descriptor of variation @p id, or NULL. */
const struct th_variation *th_variation_get(int id);

#ifdef __cplusplus
}
#endif

#endif

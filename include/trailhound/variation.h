/*
 * The variations of "Remote usage of AWS Lambda's token": one const
 * descriptor each (id, name, severity, tactic, the credential kind it judges,
 * whether a later inside use upgrades it, description, match), listed once
 * in th_variations[] in the spec's order; the first that matches wins.
 *
 * Everything that differs between variations is a property of its
 * descriptor: the detector never tests variation ids, arrays indexed by id
 * are sized from TH_VARIATION_MAX, and the names table that the schema doc,
 * docs/detections.md and the Python tools use comes from the binary
 * (`trailhound variations --json`).
 *
 * To add a variation: write its match function in src/variations.c, add its
 * descriptor to th_variations[] (an unused id up to TH_VARIATION_MAX), and
 * add a folder of cases under tests/cases/<name>/. A variation that needs a
 * fact the detector does not gather yet also adds the field to struct
 * th_match_ctx and fills it in th_detect_decide() (src/detect_classify.c). Match
 * functions are pure: the detector gathers every fact they may look at
 * beforehand. The detector takes its table from th_detect_conf.variations,
 * so a test can run it with a table of its own (tests/unit/test_variation_extra.c).
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
	enum th_cred_class cls; /* always the variation's own kind (descriptor .cred) */
	const struct th_call *call;  /* the remote use being judged */
	const struct th_token *tok;  /* what is known of its key */
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
/* A line may name an identity ARN whole (TH_ARN_SIZE) inside a sentence of
 * its own and a function name: an investigator needs the ARN, not a cut. */
#define TH_EVIDENCE_LINE (TH_ARN_SIZE + 512)
struct th_evidence {
	int n;
	char text[TH_EVIDENCE_MAX][TH_EVIDENCE_LINE];
};
void th_evidence_add(struct th_evidence *ev, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Ids run 1..TH_VARIATION_MAX; arrays indexed by id have TH_VARIATION_MAX + 1
 * slots. The spec's table uses 1..6; the spare ids cost a few counters and
 * let a variation be added without resizing anything. */
#define TH_VARIATION_MAX 15

struct th_variation {
	int id;               /* 1..TH_VARIATION_MAX, unique; the spec's row for 1..6 */
	const char *name;     /* alert name */
	const char *severity; /* High, Medium, Low, Informational (the Avro Severity enum) */
	const char *tactic;   /* MITRE ATT&CK tactic of the alert */
	/* The credential kind it judges: TH_CRED_TOKEN (a function's own
	 * token, keyed by function in dedup and alert IDs) or TH_CRED_OTHER (a
	 * Lambda role assumed by another identity, keyed by session). */
	enum th_cred_class cred;
	/* A later inside use of the same key decides the call again, so its
	 * alert can be upgraded (to the variation that then matches). */
	bool upgradable;
	const char *description;
	/* True when the variation applies; appends its reasons to @p ev. Only
	 * called for calls of the variation's credential kind. */
	bool (*match)(const struct th_match_ctx *m, struct th_evidence *ev);
};

/* The builtin table, in the spec's order. */
extern const struct th_variation th_variations[];
extern const size_t th_variations_count;
/* The seed's investigative actions, NULL-terminated. */
extern const char *const th_investigative_actions[];

/**
 * @brief Check a variation table: ids in 1..TH_VARIATION_MAX and unique,
 *        name, severity (one of the four), tactic and match set, credential
 *        kind TH_CRED_TOKEN or TH_CRED_OTHER.
 * @returns 0, or TH_EINVAL with errstr set.
 */
int th_variations_check(const struct th_variation *vars, size_t n, char *errstr,
			size_t errstr_size);

/** @brief "token" or "role-session" for a credential kind; "unknown" otherwise. */
const char *th_cred_class_name(enum th_cred_class cls);

#ifdef __cplusplus
}
#endif

#endif

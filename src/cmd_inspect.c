/*
 * `trailhound inspect`: what the detector knows, for investigators. Answers
 * the seed's investigative questions from the state store: what API calls an
 * access key executed and from where, whether a role is attached to a Lambda
 * function, who else assumed the role, and an account's age and usual
 * networks. Human-readable by default, --json for tools.
 */
#include <dirent.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "trailhound/alert.h"
#include "cmd.h"
#include "trailhound/time.h"
#include "trailhound/records.h"
#include "trailhound/state.h"

struct out {
	bool json;
	int nfound;
	struct th_wbuf w; /* JSON array being built */
};

static void ts(int64_t ms, char *buf, size_t n)
{
	if (ms > 0)
		th_time_format(ms, buf, n);
	else
		snprintf(buf, n, "-");
}

static void json_sep(struct out *o)
{
	if (o->w.len > 1)
		th_put_u8(&o->w, ',');
}

static void json_kv(struct th_wbuf *w, const char *k, const char *v, bool first)
{
	if (!first)
		th_put_u8(w, ',');
	th_json_put_string(w, k);
	th_put_u8(w, ':');
	th_json_put_string(w, v);
}

static void json_kn(struct th_wbuf *w, const char *k, int64_t v)
{
	char num[32];
	th_put_u8(w, ',');
	th_json_put_string(w, k);
	snprintf(num, sizeof(num), ":%" PRId64, v);
	th_put_bytes(w, num, strlen(num));
}

static void json_kt(struct th_wbuf *w, const char *k, int64_t ms)
{
	char t[40];
	ts(ms, t, sizeof(t));
	json_kv(w, k, t, false);
}

/* ---- keys ---- */

static void show_token(struct out *o, const char *acct, const char *akid,
		       const struct th_token *t)
{
	char a[40], b[40], c[40], d[40];
	o->nfound++;
	if (o->json) {
		json_sep(o);
		th_put_u8(&o->w, '{');
		json_kv(&o->w, "kind", "key", true);
		json_kv(&o->w, "access_key_id", akid, false);
		json_kv(&o->w, "account_id", acct, false);
		json_kv(&o->w, "origin", th_origin_name((enum th_origin)t->origin), false);
		json_kv(&o->w, "role_arn", t->role_arn, false);
		json_kv(&o->w, "function_name", t->function, false);
		json_kv(&o->w, "session_name", t->session, false);
		json_kv(&o->w, "assumed_by", t->identity, false);
		json_kt(&o->w, "issued_at", t->issued_ms);
		json_kt(&o->w, "expires_at", t->expiry_ms);
		json_kt(&o->w, "first_seen", t->first_seen_ms);
		json_kt(&o->w, "last_seen", t->last_seen_ms);
		json_kn(&o->w, "inside_count", t->inside);
		json_kn(&o->w, "outside_count", t->outside);
		json_kn(&o->w, "distinct_ips", t->distinct_ips);
		TH_PUT_LIT(&o->w, ",\"source_ips\":[");
		for (int i = 0; i < t->n_ips; i++) {
			if (i)
				th_put_u8(&o->w, ',');
			th_json_put_string(&o->w, t->ips[i]);
		}
		TH_PUT_LIT(&o->w, "],\"api_calls\":[");
		for (int i = 0; i < t->n_calls; i++) {
			if (i)
				th_put_u8(&o->w, ',');
			th_put_u8(&o->w, '{');
			json_kv(&o->w, "call", t->calls[i].name, true);
			json_kn(&o->w, "count", t->calls[i].count);
			json_kt(&o->w, "last", t->calls[i].last_ms);
			th_put_u8(&o->w, '}');
		}
		TH_PUT_LIT(&o->w, "],\"alerts\":[");
		for (int i = 0; i < t->n_alerts; i++) {
			if (i)
				th_put_u8(&o->w, ',');
			th_put_u8(&o->w, '{');
			json_kv(&o->w, "alert_id", t->alerts[i].alert_id, true);
			json_kn(&o->w, "variation", t->alerts[i].variation);
			json_kv(&o->w, "event_id", t->alerts[i].call.event_id, false);
			th_put_u8(&o->w, '}');
		}
		TH_PUT_LIT(&o->w, "]}");
		return;
	}
	ts(t->issued_ms, a, sizeof(a));
	ts(t->expiry_ms, b, sizeof(b));
	ts(t->first_seen_ms, c, sizeof(c));
	ts(t->last_seen_ms, d, sizeof(d));
	printf("key %s (account %s)\n", akid, acct);
	printf("  known as      %s\n", th_origin_name((enum th_origin)t->origin));
	printf("  role          %s\n", t->role_arn);
	if (t->function[0])
		printf("  function      %s\n", t->function);
	printf("  session       %s\n", t->session);
	if (t->identity[0])
		printf("  assumed by    %s\n", t->identity);
	printf("  issued        %s   expires %s\n", a, b);
	printf("  seen          %s .. %s\n", c, d);
	printf("  networks      %u inside, %u outside; %u distinct source IPs\n", t->inside,
	       t->outside, t->distinct_ips);
	for (int i = 0; i < t->n_ips; i++)
		printf("    ip          %s\n", t->ips[i]);
	printf("  API calls executed by the key:\n");
	for (int i = 0; i < t->n_calls; i++) {
		ts(t->calls[i].last_ms, a, sizeof(a));
		printf("    %-40s x%-6u last %s\n", t->calls[i].name, t->calls[i].count, a);
	}
	for (int i = 0; i < t->n_alerts; i++)
		printf("  alert         %s (variation %d) on event %s%s\n", t->alerts[i].alert_id,
		       t->alerts[i].variation, t->alerts[i].call.event_id,
		       t->alerts[i].upgraded ? ", upgraded" : "");
}

struct key_ctx {
	struct out *o;
	const char *akid;
	struct th_token t; /* decoded into, key after key (its alerts' room kept) */
};

static int key_cb(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct key_ctx *kc = ctx;
	char k[512], *acct, *akid;
	if (klen >= sizeof(k))
		return 0;
	memcpy(k, key, klen);
	k[klen] = '\0';
	acct = k + 2;
	akid = strchr(acct, TH_KEY_SEP);
	if (!akid)
		return 0;
	*akid++ = '\0';
	if (kc->akid && strcmp(akid, kc->akid) != 0)
		return 0;
	int rc = th_token_decode(val, vlen, &kc->t);
	if (rc == 0)
		show_token(kc->o, acct, akid, &kc->t);
	return rc == TH_ENOMEM ? rc : 0;
}

/* ---- roles ---- */

struct sight_ctx {
	struct out *o;
	const char *label;
	size_t skip;
	bool first;
};

static int sight_cb(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct sight_ctx *sc = ctx;
	struct th_sighting s;
	char what[512], a[40], b[40];
	if (klen - sc->skip >= sizeof(what) || th_sighting_decode(val, vlen, &s))
		return 0;
	memcpy(what, (const char *)key + sc->skip, klen - sc->skip);
	what[klen - sc->skip] = '\0';
	int64_t last = s.last_ms > s.other_ms ? s.last_ms : s.other_ms;
	if (sc->o->json) {
		if (!sc->first)
			th_put_u8(&sc->o->w, ',');
		th_put_u8(&sc->o->w, '{');
		json_kv(&sc->o->w, sc->label, what, true);
		json_kt(&sc->o->w, "first_seen", s.first_ms);
		json_kt(&sc->o->w, "last_seen", last);
		th_put_u8(&sc->o->w, '}');
	} else {
		ts(s.first_ms, a, sizeof(a));
		ts(last, b, sizeof(b));
		printf("    %-*s %s .. %s\n", strcmp(sc->label, "asn") == 0 ? 12 : 60, what, a, b);
	}
	sc->first = false;
	return 0;
}

static void show_sightings(struct out *o, struct th_state *st, char type, const char *owner,
			   const char *label)
{
	char prefix[512];
	size_t pl = th_key(prefix, sizeof(prefix), type, 1, owner);
	prefix[pl++] = TH_KEY_SEP;
	struct sight_ctx sc = {o, label, pl, true};
	th_state_scan(st, prefix, pl, sight_cb, &sc);
}

/* A role's regions are named once in ro->regions; functions hold bits. */
static void json_regions(struct out *o, const struct th_role *ro, uint64_t bits)
{
	bool first = true;
	th_put_u8(&o->w, '[');
	for (int j = 0; j < ro->n_regions; j++) {
		if (!(bits & (UINT64_C(1) << j)))
			continue;
		if (!first)
			th_put_u8(&o->w, ',');
		first = false;
		th_json_put_string(&o->w, ro->regions[j]);
	}
	th_put_u8(&o->w, ']');
}

static void print_regions(const struct th_role *ro, uint64_t bits)
{
	for (int j = 0; j < ro->n_regions; j++)
		if (bits & (UINT64_C(1) << j))
			printf(" %s", ro->regions[j]);
}

static void show_role(struct out *o, struct th_state *st, const char *arn,
		      const struct th_role *ro)
{
	o->nfound++;
	if (o->json) {
		json_sep(o);
		th_put_u8(&o->w, '{');
		json_kv(&o->w, "kind", "role", true);
		json_kv(&o->w, "role_arn", arn, false);
		TH_PUT_LIT(&o->w, ",\"lambda_execution_role\":");
		th_put_bytes(&o->w, ro->is_lambda ? "true" : "false", ro->is_lambda ? 4 : 5);
		json_kt(&o->w, "first_seen", ro->first_seen_ms);
		/* "-" for a role not seen since an upgrade (record version 2) */
		json_kt(&o->w, "last_seen", ro->last_seen_ms);
		TH_PUT_LIT(&o->w, ",\"functions\":[");
		for (uint32_t i = 0; i < ro->n_functions; i++) {
			if (i)
				th_put_u8(&o->w, ',');
			th_put_u8(&o->w, '{');
			json_kv(&o->w, "name", ro->functions[i].name, true);
			json_kt(&o->w, "last_seen", ro->functions[i].last_seen_ms);
			TH_PUT_LIT(&o->w, ",\"regions\":");
			json_regions(o, ro, ro->functions[i].regions);
			th_put_u8(&o->w, '}');
		}
		TH_PUT_LIT(&o->w, "],\"service_session_regions\":");
		json_regions(o, ro, ro->service_regions);
		TH_PUT_LIT(&o->w, ",\"assumed_by\":[");
		show_sightings(o, st, 'i', arn, "identity");
		TH_PUT_LIT(&o->w, "],\"other_session_asns\":[");
		show_sightings(o, st, 'n', arn, "asn");
		TH_PUT_LIT(&o->w, "]}");
		return;
	}
	char a[40], b[40];
	ts(ro->first_seen_ms, a, sizeof(a));
	ts(ro->last_seen_ms, b, sizeof(b));
	printf("role %s\n", arn);
	printf("  Lambda execution role: %s (first seen %s, last seen %s)\n",
	       ro->is_lambda ? "yes" : "no", a, b);
	printf("  functions using it:\n");
	for (uint32_t i = 0; i < ro->n_functions; i++) {
		printf("    %-48s", ro->functions[i].name);
		print_regions(ro, ro->functions[i].regions);
		printf("%s\n", ro->functions[i].regions ? "" : " (region not yet known)");
	}
	if (ro->service_regions) {
		printf("  Lambda service sessions in:");
		print_regions(ro, ro->service_regions);
		printf("\n");
	}
	printf("  identities that assumed it (training window):\n");
	show_sightings(o, st, 'i', arn, "identity");
	printf("  ASNs of its other sessions:\n");
	show_sightings(o, st, 'n', arn, "asn");
}

struct role_ctx {
	struct out *o;
	struct th_state *st;
	const char *arn;   /* the asked-for ID as keyed (th_key_part) */
	const char *asked; /* ... and as given, shown in full */
	bool list_only;
};

static int role_cb(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct role_ctx *rc = ctx;
	static struct th_role ro; /* large: off the stack */
	char arn[512];
	if (klen - 2 >= sizeof(arn) || th_role_decode(val, vlen, &ro))
		return 0;
	memcpy(arn, (const char *)key + 2, klen - 2);
	arn[klen - 2] = '\0';
	if (rc->arn && strcmp(rc->arn, arn) != 0)
		return 0;
	if (rc->list_only && !rc->o->json) {
		printf("  %s%s, %u function(s)\n", arn, ro.is_lambda ? " (Lambda)" : "",
		       ro.n_functions);
		rc->o->nfound++;
		return 0;
	}
	/* a long ARN is keyed by prefix and digest: show the one asked for */
	show_role(rc->o, rc->st, rc->asked ? rc->asked : arn, &ro);
	return 0;
}

/* ---- accounts ---- */

static int account_cb(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct role_ctx *rc = ctx;
	struct out *o = rc->o;
	char acct[64], a[40];
	struct th_rbuf r;
	if (klen - 2 >= sizeof(acct))
		return 0;
	memcpy(acct, (const char *)key + 2, klen - 2);
	acct[klen - 2] = '\0';
	if (rc->arn && strcmp(rc->arn, acct) != 0)
		return 0;
	th_rbuf_init(&r, val, vlen);
	if (th_get_u8(&r) != TH_REC_VERSION)
		return 0;
	int64_t first = th_get_time(&r);
	o->nfound++;
	if (o->json) {
		json_sep(o);
		th_put_u8(&o->w, '{');
		json_kv(&o->w, "kind", "account", true);
		json_kv(&o->w, "account_id", acct, false);
		json_kt(&o->w, "first_seen", first);
		TH_PUT_LIT(&o->w, ",\"baseline_asns\":[");
		show_sightings(o, rc->st, 'b', acct, "asn");
		TH_PUT_LIT(&o->w, "]}");
		return 0;
	}
	ts(first, a, sizeof(a));
	printf("account %s\n  first event   %s (activation counts from here)\n", acct, a);
	printf("  egress ASNs of its non-Lambda identities (training baseline):\n");
	show_sightings(o, rc->st, 'b', acct, "asn");
	return 0;
}

static void inspect_usage(FILE *out)
{
	fprintf(out,
		"Usage: trailhound inspect --state DIR [--json] [WHAT [ID]]\n"
		"\n"
		"  key ACCESS_KEY_ID   the key's function, issuance, networks, API calls, IPs\n"
		"  role ROLE_ARN       the functions using the role, who else assumed it\n"
		"  account ACCOUNT_ID  the account's age and baseline ASNs\n"
		"  roles | accounts | keys   list them all\n"
		"\n"
		"Options:\n"
		"  --state DIR         the state to read (required)\n"
		"  --json              JSON instead of text\n"
		"  -h, --help          this text\n"
		"\n"
		"DIR is a `scan --state` directory or a worker's state_dir (every partition\n"
		"below it is searched). Exit codes: 0 found, 1 nothing found, 2 usage,\n"
		"5 DIR holds no state or it could not be read.\n");
}

static int inspect_one(struct out *o, const char *dir, const char *what, const char *id)
{
	struct th_state *st;
	char errstr[512];
	/* Read-only: inspect never writes, and must work on a store on a
	 * read-only directory or filesystem (a mounted backup, a copy). */
	if (th_state_open_readonly(&st, dir, errstr, sizeof(errstr))) {
		fprintf(stderr, "trailhound inspect: %s\n", errstr);
		return TH_EXIT_RUNTIME;
	}
	/* IDs are compared as they appear in keys (a long ARN is keyed by
	 * its prefix and digest: th_key()). */
	char keyed[TH_KEY_PART_MAX + 1];
	if (id)
		th_key_part(keyed, id);
	struct role_ctx rc = {o, st, id ? keyed : NULL, id, false};
	id = id ? keyed : NULL;
	if (strcmp(what, "key") == 0 || strcmp(what, "keys") == 0) {
		struct key_ctx kc = {.o = o, .akid = id};
		th_token_init(&kc.t);
		int krc = th_state_scan(st, "k\x1f", 2, key_cb, &kc);
		th_token_free(&kc.t);
		if (krc == TH_ENOMEM) {
			th_state_close(st);
			fprintf(stderr, "trailhound inspect: out of memory\n");
			return TH_EXIT_RUNTIME;
		}
	} else if (strcmp(what, "role") == 0 || strcmp(what, "roles") == 0) {
		rc.list_only = strcmp(what, "roles") == 0;
		th_state_scan(st, "r\x1f", 2, role_cb, &rc);
	} else {
		th_state_scan(st, "a\x1f", 2, account_cb, &rc);
	}
	th_state_close(st);
	return 0;
}

int th_cmd_inspect(int argc, char **argv)
{
	static const struct option opts[] = {
		{"state", required_argument, NULL, 's'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct out o = {0};
	const char *dir = NULL, *what = "accounts", *id = NULL;
	struct stat sb;
	char path[2048];
	int c, ret = 0, stores = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "s:jh", opts, NULL)) != -1) {
		switch (c) {
		case 's': dir = optarg; break;
		case 'j': o.json = true; break;
		case 'h': inspect_usage(stdout); return 0;
		default: inspect_usage(stderr); return TH_EXIT_USAGE;
		}
	}
	if (optind < argc)
		what = argv[optind++];
	if (optind < argc)
		id = argv[optind++];
	static const char *const whats[] = {"key", "keys", "role", "roles", "account", "accounts"};
	bool known = false;
	for (size_t i = 0; i < TH_ARRAY_SIZE(whats); i++)
		known = known || strcmp(what, whats[i]) == 0;
	if (!dir || !known || optind < argc ||
	    ((!strcmp(what, "key") || !strcmp(what, "role") || !strcmp(what, "account")) && !id)) {
		inspect_usage(stderr);
		return TH_EXIT_USAGE;
	}
	th_put_u8(&o.w, '[');
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	if (stat(path, &sb) == 0) {
		stores = 1;
		ret = inspect_one(&o, dir, what, id);
	} else {
		/* a worker's state_dir: one environment per partition below it */
		DIR *d = opendir(dir);
		struct dirent *de;
		if (!d) {
			fprintf(stderr, "trailhound inspect: %s: no state here\n", dir);
			return TH_EXIT_RUNTIME;
		}
		while ((de = readdir(d)) && !ret) {
			snprintf(path, sizeof(path), "%s/%s/data.mdb", dir, de->d_name);
			if (de->d_name[0] == '.' || stat(path, &sb) != 0)
				continue;
			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
			if (!o.json && (!id))
				printf("# %s\n", de->d_name);
			stores++;
			ret = inspect_one(&o, path, what, id);
		}
		closedir(d);
	}
	/* A directory holding no store at all is a wrong --state (the parent
	 * of a state_dir, a typo'd partition), not an answer: "nothing found"
	 * would tell an investigator that the detector never saw the key. */
	if (!ret && !stores) {
		fprintf(stderr,
			"trailhound inspect: %s: no trailhound state here (no data.mdb in it or in "
			"a directory below it; give a `scan --state` directory or the worker's "
			"state_dir)\n",
			dir);
		ret = TH_EXIT_RUNTIME;
	} else if (!ret && !o.nfound && id) {
		fprintf(stderr, "trailhound inspect: %s %s not found in the %d store(s) of %s\n",
			what, id, stores, dir);
	} else if (!ret && !o.nfound) {
		fprintf(stderr, "trailhound inspect: no %s in the %d store(s) of %s\n", what, stores,
			dir);
	}
	th_put_u8(&o.w, ']');
	if (o.json)
		printf("%.*s\n", (int)o.w.len, (const char *)o.w.p);
	th_wbuf_free(&o.w);
	if (ret)
		return ret;
	return o.nfound ? 0 : 1;
}

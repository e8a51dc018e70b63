/*
 * AWS credentials without an SDK: the chain the SDKs walk (environment, web
 * identity, shared credentials file, container endpoint, EC2 IMDSv2), with
 * temporary credentials refreshed five minutes before they expire. The first
 * source whose variables or file are present is used and kept: a pod with
 * IRSA must not silently fall back to a node role when STS refuses it.
 * Secrets never reach a log line or an errstr.
 */
#include "trailhound/aws.h"
#include "trailhound/common.h"
#include "trailhound/time.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "trailhound/event.h"

#define REFRESH_AHEAD_MS (5 * 60 * 1000)
/* a failed refresh ahead of expiry is tried again after this long, while the
 * current credentials stay in use (they must have this much life left) */
#define REFRESH_RETRY_MS (10 * 1000)
#define STILL_GOOD_MS (30 * 1000)

enum src_kind { SRC_NONE, SRC_ENV, SRC_WEBID, SRC_PROFILE, SRC_CONTAINER, SRC_IMDS };

struct th_aws_credsrc {
	struct th_aws_target t;
	char region[64], endpoint[512];
	enum src_kind kind;
	struct th_aws_creds cur;
	bool have;
	int64_t retry_at_ms; /* after a failed refresh ahead of expiry */
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *env(const char *name)
{
	const char *v = getenv(name);
	return v && v[0] ? v : NULL;
}

static void wipe(void *p, size_t n)
{
	volatile unsigned char *v = p;
	while (n--)
		*v++ = 0;
}

/* Read a small file (a token) into out, trailing whitespace trimmed. */
static int read_small(const char *path, char *out, size_t size)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return TH_ENOTFOUND;
	size_t n = fread(out, 1, size - 1, f);
	int big = !feof(f);
	fclose(f);
	if (big)
		return TH_ETOOBIG;
	while (n && isspace((unsigned char)out[n - 1]))
		n--;
	out[n] = '\0';
	return 0;
}

static int from_env(struct th_aws_creds *c)
{
	const char *ak = env("AWS_ACCESS_KEY_ID"), *sk = env("AWS_SECRET_ACCESS_KEY");
	const char *tok = env("AWS_SESSION_TOKEN");
	if (!ak || !sk)
		return TH_ENOTFOUND;
	snprintf(c->akid, sizeof(c->akid), "%s", ak);
	snprintf(c->secret, sizeof(c->secret), "%s", sk);
	snprintf(c->token, sizeof(c->token), "%s", tok ? tok : "");
	c->expires_ms = 0;
	snprintf(c->source, sizeof(c->source), "environment");
	return 0;
}

static const char *profile_path(char *buf, size_t size)
{
	const char *p = env("AWS_SHARED_CREDENTIALS_FILE"), *home = env("HOME");
	if (p)
		return p;
	if (!home)
		return NULL;
	snprintf(buf, size, "%s/.aws/credentials", home);
	return buf;
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	return s;
}

/* The INI file of the CLI: [profile] sections of key = value lines. */
static int from_profile(struct th_aws_creds *c, char *errstr, size_t errstr_size)
{
	char pbuf[1024], line[4608], want[160];
	const char *path = profile_path(pbuf, sizeof(pbuf));
	const char *prof = env("AWS_PROFILE");
	bool in = false, found = false;
	FILE *f;
	if (!path || !(f = fopen(path, "r")))
		return TH_ENOTFOUND;
	snprintf(want, sizeof(want), "%s", prof ? prof : "default");
	memset(c, 0, sizeof(*c));
	while (fgets(line, sizeof(line), f)) {
		char *s = trim(line);
		if (*s == '#' || *s == ';' || !*s)
			continue;
		if (*s == '[') {
			char *e = strchr(s, ']');
			if (e)
				*e = '\0';
			in = strcmp(trim(s + 1), want) == 0;
			found |= in;
			continue;
		}
		char *eq = strchr(s, '=');
		if (!in || !eq)
			continue;
		*eq = '\0';
		char *k = trim(s), *v = trim(eq + 1);
		if (strcmp(k, "aws_access_key_id") == 0)
			snprintf(c->akid, sizeof(c->akid), "%s", v);
		else if (strcmp(k, "aws_secret_access_key") == 0)
			snprintf(c->secret, sizeof(c->secret), "%s", v);
		else if (strcmp(k, "aws_session_token") == 0)
			snprintf(c->token, sizeof(c->token), "%s", v);
	}
	wipe(line, sizeof(line));
	fclose(f);
	if (!found && !prof)
		return TH_ENOTFOUND; /* no default profile: try the next source */
	if (!c->akid[0] || !c->secret[0]) {
		th_errstr(errstr, errstr_size,
			  "credentials file %s: profile '%s' has no aws_access_key_id and "
			  "aws_secret_access_key",
			  path, want);
		return TH_ECONFIG;
	}
	snprintf(c->source, sizeof(c->source), "profile");
	return 0;
}

static int set_expiry(struct th_aws_creds *c, const char *exp)
{
	int64_t ms;
	if (!exp[0] || th_time_parse_iso(exp, strlen(exp), &ms))
		return TH_EPARSE;
	c->expires_ms = ms;
	return 0;
}

static int from_webid(struct th_aws_credsrc *src, struct th_aws_creds *c, char *errstr,
		      size_t errstr_size)
{
	const char *role = env("AWS_ROLE_ARN"), *tokfile = env("AWS_WEB_IDENTITY_TOKEN_FILE");
	const char *sess = env("AWS_ROLE_SESSION_NAME"), *dur = env("TH_AWS_ROLE_DURATION_SECONDS");
	char tok[8192], etok[3 * 8192], erole[1024], esess[256], body[3 * 8192 + 2048], url[600];
	struct th_aws_resp r;
	char exp[64];
	int rc;
	if (!role || !tokfile)
		return TH_ENOTFOUND;
	if ((rc = read_small(tokfile, tok, sizeof(tok)))) {
		th_errstr(errstr, errstr_size, "web identity token file %s: %s", tokfile,
			  rc == TH_ETOOBIG ? "too big" : "cannot be read");
		return TH_ECONFIG;
	}
	if (th_aws_uri_encode(tok, etok, sizeof(etok)) || th_aws_uri_encode(role, erole, sizeof(erole)) ||
	    th_aws_uri_encode(sess ? sess : "trailhound-bridge", esess, sizeof(esess))) {
		th_errstr(errstr, errstr_size, "web identity: role ARN or token too long");
		wipe(tok, sizeof(tok));
		return TH_ECONFIG;
	}
	snprintf(body, sizeof(body),
		 "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=%s"
		 "&RoleSessionName=%s&WebIdentityToken=%s%s%s",
		 erole, esess, etok, dur ? "&DurationSeconds=" : "", dur ? dur : "");
	char ep[560];
	th_aws_endpoint(&src->t, "sts", ep, sizeof(ep));
	snprintf(url, sizeof(url), "%s/", ep);
	/* AssumeRoleWithWebIdentity is not signed: the token is the proof */
	struct th_aws_req rq = {.method = "POST",
				.url = url,
				.content_type = "application/x-www-form-urlencoded",
				.body = body,
				.body_len = strlen(body),
				.out_fd = -1,
				.timeout_s = 30};
	rc = th_aws_request(&rq, &r, errstr, errstr_size);
	wipe(tok, sizeof(tok));
	wipe(etok, sizeof(etok));
	wipe(body, sizeof(body));
	if (rc)
		return TH_ECONFIG;
	if (r.status != 200) {
		th_errstr(errstr, errstr_size,
			  "STS AssumeRoleWithWebIdentity for %s: HTTP %ld %s: %s", role, r.status,
			  r.code, r.message);
		th_aws_resp_free(&r);
		return TH_ECONFIG;
	}
	const char *end = r.body + r.len;
	memset(c, 0, sizeof(*c));
	th_aws_xml_text(r.body, end, "AccessKeyId", c->akid, sizeof(c->akid));
	th_aws_xml_text(r.body, end, "SecretAccessKey", c->secret, sizeof(c->secret));
	th_aws_xml_text(r.body, end, "SessionToken", c->token, sizeof(c->token));
	th_aws_xml_text(r.body, end, "Expiration", exp, sizeof(exp));
	wipe(r.body, r.len);
	th_aws_resp_free(&r);
	if (!c->akid[0] || !c->secret[0] || set_expiry(c, exp)) {
		th_errstr(errstr, errstr_size, "STS AssumeRoleWithWebIdentity: incomplete answer");
		return TH_ECONFIG;
	}
	snprintf(c->source, sizeof(c->source), "web-identity");
	return 0;
}

/* A credentials JSON document (container endpoint, IMDS). */
static int parse_creds_doc(const char *doc, size_t len, struct th_aws_creds *c)
{
	char exp[64];
	char *outs[] = {c->akid, c->secret, c->token, exp};
	const char *names[] = {"AccessKeyId", "SecretAccessKey", "Token", "Expiration"};
	size_t sizes[] = {sizeof(c->akid), sizeof(c->secret), sizeof(c->token), sizeof(exp)};
	if (th_aws_json_strings(doc, len, names, outs, sizes, 4) || !c->akid[0] || !c->secret[0])
		return TH_EPARSE;
	c->expires_ms = 0;
	if (exp[0] && set_expiry(c, exp))
		return TH_EPARSE;
	return 0;
}

static int from_container(struct th_aws_creds *c, char *errstr, size_t errstr_size)
{
	const char *full = env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
	const char *rel = env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
	const char *tokfile = env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
	const char *tokenv = env("AWS_CONTAINER_AUTHORIZATION_TOKEN");
	char url[1024], tok[4096] = "", hdr[4200] = "";
	struct th_aws_resp r;
	int rc;
	if (!full && !rel)
		return TH_ENOTFOUND;
	if (full)
		snprintf(url, sizeof(url), "%s", full);
	else /* ECS task role: the agent's fixed link-local address */
		snprintf(url, sizeof(url), "http://169.254.170.2%s", rel);
	if (tokfile && read_small(tokfile, tok, sizeof(tok))) {
		th_errstr(errstr, errstr_size, "container token file %s cannot be read", tokfile);
		return TH_ECONFIG;
	} else if (!tokfile && tokenv) {
		snprintf(tok, sizeof(tok), "%s", tokenv);
	}
	if (tok[0])
		snprintf(hdr, sizeof(hdr), "Authorization: %s", tok);
	struct th_aws_req rq = {.method = "GET", .url = url, .extra_header = hdr[0] ? hdr : NULL,
				.out_fd = -1, .timeout_s = 10};
	rc = th_aws_request(&rq, &r, errstr, errstr_size);
	wipe(tok, sizeof(tok));
	wipe(hdr, sizeof(hdr));
	if (rc)
		return TH_ECONFIG;
	rc = r.status == 200 ? parse_creds_doc(r.body, r.len, c) : TH_EIO;
	if (rc)
		th_errstr(errstr, errstr_size, "container credentials endpoint: HTTP %ld%s", r.status,
			  r.status == 200 ? ", not a credentials document" : "");
	if (r.body)
		wipe(r.body, r.len);
	th_aws_resp_free(&r);
	if (rc)
		return TH_ECONFIG;
	snprintf(c->source, sizeof(c->source), "container");
	return 0;
}

static int from_imds(struct th_aws_creds *c, char *errstr, size_t errstr_size)
{
	const char *dis = env("AWS_EC2_METADATA_DISABLED");
	const char *base = env("AWS_EC2_METADATA_SERVICE_ENDPOINT");
	char url[600], hdr[256], tokhdr[1200], role[256];
	struct th_aws_resp r;
	int rc = TH_ECONFIG;
	if (dis && strcasecmp(dis, "true") == 0)
		return TH_ENOTFOUND;
	if (!base)
		base = "http://169.254.169.254";
	/* IMDSv2: a session token first (PUT), then the role, then its keys */
	snprintf(url, sizeof(url), "%s/latest/api/token", base);
	snprintf(hdr, sizeof(hdr), "X-aws-ec2-metadata-token-ttl-seconds: 21600");
	struct th_aws_req rq = {.method = "PUT", .url = url, .extra_header = hdr, .out_fd = -1,
				.timeout_s = 2};
	if (th_aws_request(&rq, &r, errstr, errstr_size) || r.status != 200 || !r.body) {
		th_aws_resp_free(&r);
		return TH_ENOTFOUND;
	}
	snprintf(tokhdr, sizeof(tokhdr), "X-aws-ec2-metadata-token: %s", r.body);
	th_aws_resp_free(&r);
	snprintf(url, sizeof(url), "%s/latest/meta-data/iam/security-credentials/", base);
	rq = (struct th_aws_req){.method = "GET", .url = url, .extra_header = tokhdr,
				 .out_fd = -1, .timeout_s = 5};
	if (th_aws_request(&rq, &r, errstr, errstr_size) || r.status != 200 || !r.body) {
		th_errstr(errstr, errstr_size, "EC2 instance metadata: no IAM role attached");
		goto cleanup;
	}
	snprintf(role, sizeof(role), "%s", trim(r.body));
	th_aws_resp_free(&r);
	snprintf(url, sizeof(url), "%s/latest/meta-data/iam/security-credentials/%s", base, role);
	if (th_aws_request(&rq, &r, errstr, errstr_size) || r.status != 200 ||
	    parse_creds_doc(r.body, r.len, c)) {
		th_errstr(errstr, errstr_size, "EC2 instance metadata: role %s: no credentials", role);
		goto cleanup;
	}
	snprintf(c->source, sizeof(c->source), "imds");
	rc = 0;
cleanup:
	if (r.body)
		wipe(r.body, r.len);
	th_aws_resp_free(&r);
	wipe(tokhdr, sizeof(tokhdr));
	return rc;
}

int th_aws_creds_new(struct th_aws_credsrc **srcp, const struct th_aws_target *t)
{
	struct th_aws_credsrc *s = calloc(1, sizeof(*s));
	if (!s)
		return TH_ENOMEM;
	snprintf(s->region, sizeof(s->region), "%s", t->region ? t->region : "us-east-1");
	snprintf(s->endpoint, sizeof(s->endpoint), "%s", t->endpoint ? t->endpoint : "");
	s->t.region = s->region;
	s->t.endpoint = s->endpoint;
	*srcp = s;
	return 0;
}

void th_aws_creds_destroy(struct th_aws_credsrc *src)
{
	if (!src)
		return;
	wipe(src, sizeof(*src));
	free(src);
}

static int fetch(struct th_aws_credsrc *s, enum src_kind k, struct th_aws_creds *c,
		 char *errstr, size_t errstr_size)
{
	switch (k) {
	case SRC_ENV: return from_env(c);
	case SRC_WEBID: return from_webid(s, c, errstr, errstr_size);
	case SRC_PROFILE: return from_profile(c, errstr, errstr_size);
	case SRC_CONTAINER: return from_container(c, errstr, errstr_size);
	case SRC_IMDS: return from_imds(c, errstr, errstr_size);
	default: return TH_ENOTFOUND;
	}
}

int th_aws_creds_get(struct th_aws_credsrc *src, bool force, const struct th_aws_creds **out,
		     char *errstr, size_t errstr_size)
{
	struct th_aws_creds c;
	int rc = TH_ENOTFOUND;
	int64_t now = now_ms();
	/* still good for this use: not expiring soon, or a refresh ahead of
	 * expiry failed a moment ago and the current ones have life left */
	bool good = src->have && (src->cur.expires_ms == 0 ||
				  src->cur.expires_ms - now > STILL_GOOD_MS);
	if (good && !force &&
	    (src->cur.expires_ms == 0 || src->cur.expires_ms - now > REFRESH_AHEAD_MS ||
	     now < src->retry_at_ms)) {
		*out = &src->cur;
		return 0;
	}
	memset(&c, 0, sizeof(c));
	if (src->kind != SRC_NONE) {
		rc = fetch(src, src->kind, &c, errstr, errstr_size);
	} else {
		for (enum src_kind k = SRC_ENV; k <= SRC_IMDS; k++) {
			rc = fetch(src, k, &c, errstr, errstr_size);
			if (rc != TH_ENOTFOUND) {
				if (rc == 0)
					src->kind = k;
				break;
			}
		}
	}
	if (rc == TH_ENOTFOUND)
		th_errstr(errstr, errstr_size,
			  "no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
			  "AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE, a profile in "
			  "~/.aws/credentials, or run with a container or instance role");
	if (rc) {
		wipe(&c, sizeof(c));
		if (good && !force) {
			/* STS or the metadata service briefly unavailable ahead of
			 * expiry: the SDKs keep using credentials that are still valid
			 * rather than fail the request; so do we, and try again soon.
			 * Only a forced refresh (the service said they expired) or
			 * credentials about to expire make this an error */
			th_log_warn("aws",
				    "refreshing the credentials from %s failed (%s); the current "
				    "ones are valid for %lld s more, still used",
				    src->cur.source, errstr,
				    (long long)((src->cur.expires_ms - now) / 1000));
			src->retry_at_ms = now + REFRESH_RETRY_MS;
			*out = &src->cur;
			return 0;
		}
		return rc == TH_ENOTFOUND ? TH_ECONFIG : rc;
	}
	src->retry_at_ms = 0;
	if (src->have && strcmp(src->cur.akid, c.akid) != 0)
		th_log_info("aws", "credentials refreshed from %s (key %.4s…)", c.source, c.akid);
	else if (!src->have)
		th_log_info("aws", "credentials from %s (key %.4s…)", c.source, c.akid);
	src->cur = c;
	src->have = true;
	wipe(&c, sizeof(c));
	*out = &src->cur;
	return 0;
}

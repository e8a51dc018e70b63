/*
 * Encoding of the detector's records (records.h, docs/state-format.md).
 * Each value starts with TH_REC_VERSION (the dedup ledger: TH_DEDUP_VERSION,
 * a token: TH_TOKEN_VERSION; their version-1 forms still decode); a decoder
 * refuses other versions rather than guess, and the store as a whole is
 * versioned by state.c.
 */
#include "trailhound/records.h"

#include <openssl/evp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

const char *th_origin_name(enum th_origin o)
{
	switch (o) {
	case TH_ORIGIN_ISSUED: return "issued-by-lambda";
	case TH_ORIGIN_RUNTIME: return "learned-from-runtime";
	case TH_ORIGIN_ASSUMED: return "assumed-by-identity";
	case TH_ORIGIN_SESSION: return "session-is-function";
	case TH_ORIGIN_UNKNOWN: break;
	}
	return "unknown";
}

_Static_assert(1 + TH_KEY_MAX_PARTS * (1 + TH_KEY_PART_MAX) <= TH_KEY_MAX,
	       "the longest key must fit LMDB's key size limit");
_Static_assert(TH_KEY_PREFIX_KEEP > 0, "a digested part keeps a readable prefix");

/* Whether a part is stored as it is: short, and without the separator
 * (which would make the split between parts ambiguous). */
static bool part_is_plain(const char *part, size_t len)
{
	return len <= TH_KEY_PART_MAX && !memchr(part, TH_KEY_SEP, len);
}

/* The digested form (at most TH_KEY_PART_MAX bytes, no separator); returns
 * its length. */
static size_t part_digest(char *out, const char *part, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE] = {0};
	unsigned int mdlen = 0;
	size_t n = 0;

	for (; n < TH_KEY_PREFIX_KEEP && n < len; n++)
		out[n] = part[n] == TH_KEY_SEP ? '?' : part[n];
	out[n++] = TH_KEY_DIGEST_MARK;
	if (!EVP_Digest(part, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
		memset(md, 0, sizeof(md)); /* cannot happen with a working libcrypto */
	for (int i = 0; i < TH_KEY_DIGEST_HEX / 2; i++) {
		out[n++] = hex[md[i] >> 4];
		out[n++] = hex[md[i] & 15];
	}
	return n;
}

size_t th_key_part(char out[TH_KEY_PART_MAX + 1], const char *part)
{
	size_t len = part ? strlen(part) : 0, n;
	if (part_is_plain(part ? part : "", len)) {
		memcpy(out, part ? part : "", len);
		n = len;
	} else {
		n = part_digest(out, part, len);
	}
	out[n] = '\0';
	return n;
}

size_t th_key(char *buf, size_t size, char type, int nparts, ...)
{
	va_list ap;
	size_t n = 0;

	if (!size)
		return 0;
	buf[0] = '\0';
	if (nparts < 0 || nparts > TH_KEY_MAX_PARTS || size < 2)
		return 0;
	buf[n++] = type;
	va_start(ap, nparts);
	for (int i = 0; i < nparts; i++) {
		const char *part = va_arg(ap, const char *);
		size_t len = part ? strlen(part) : 0;
		char mapped[TH_KEY_PART_MAX];
		bool plain = part_is_plain(part ? part : "", len);
		size_t out = plain ? len : part_digest(mapped, part, len);
		/* separator + part + the final NUL must fit */
		if (size - n < out + 2) {
			va_end(ap);
			buf[0] = '\0';
			return 0;
		}
		buf[n++] = TH_KEY_SEP;
		memcpy(buf + n, plain ? (part ? part : "") : mapped, out);
		n += out;
	}
	va_end(ap);
	buf[n] = '\0';
	return n;
}

void th_call_encode(struct th_wbuf *w, const struct th_call *c)
{
	th_put_str(w, c->event_id);
	th_put_str(w, c->event_name);
	th_put_str(w, c->event_source);
	th_put_str(w, c->aws_region);
	th_put_str(w, c->source_ip);
	th_put_str(w, c->user_agent);
	th_put_str(w, c->vpce_id);
	th_put_str(w, c->vpce_account);
	th_put_str(w, c->session);
	th_put_str(w, c->input_topic);
	th_put_i64(w, c->event_time_ms);
	th_put_i64(w, c->creation_ms);
	th_put_i64(w, c->input_offset);
	th_put_i64(w, c->input_partition);
	th_put_varint(w, c->asn);
	th_put_str(w, c->as_org);
	th_put_str(w, c->src_region);
	th_put_u8(w, c->net_kind);
}

int th_call_decode(struct th_rbuf *r, struct th_call *c)
{
	th_get_str(r, c->event_id, sizeof(c->event_id));
	th_get_str(r, c->event_name, sizeof(c->event_name));
	th_get_str(r, c->event_source, sizeof(c->event_source));
	th_get_str(r, c->aws_region, sizeof(c->aws_region));
	th_get_str(r, c->source_ip, sizeof(c->source_ip));
	th_get_str(r, c->user_agent, sizeof(c->user_agent));
	th_get_str(r, c->vpce_id, sizeof(c->vpce_id));
	th_get_str(r, c->vpce_account, sizeof(c->vpce_account));
	th_get_str(r, c->session, sizeof(c->session));
	th_get_str(r, c->input_topic, sizeof(c->input_topic));
	c->event_time_ms = th_get_time(r);
	c->creation_ms = th_get_time(r);
	c->input_offset = th_get_i64(r);
	c->input_partition = (int32_t)th_get_i64(r);
	c->asn = (uint32_t)th_get_varint(r);
	th_get_str(r, c->as_org, sizeof(c->as_org));
	th_get_str(r, c->src_region, sizeof(c->src_region));
	c->net_kind = th_get_u8(r);
	return r->bad ? TH_EPARSE : 0;
}

/* A record decodes only when every byte was read, no more and no fewer:
 * trailing bytes mean the value is not what its version byte says. */
static int done(const struct th_rbuf *r)
{
	return r->bad || r->p != r->end ? TH_EPARSE : 0;
}

static int check_version(struct th_rbuf *r)
{
	return th_get_u8(r) == TH_REC_VERSION && !r->bad ? 0 : TH_EPARSE;
}

/* Version 3's flags: how the role ARN and the function are written. */
enum {
	TOKEN_ROLE_IN_ACCOUNT = 1, /* "arn:aws:iam::" 12 digits ":role/" name: the number, the name */
	TOKEN_FUNCTION_IS_SESSION = 2, /* function equals session: written once */
	TOKEN_FLAGS = TOKEN_ROLE_IN_ACCOUNT | TOKEN_FUNCTION_IS_SESSION,
};
#define ROLE_ARN_HEAD "arn:aws:iam::"
#define ROLE_ARN_MID ":role/"
/* "arn:aws:iam::" + 12 digits + ":role/" */
#define ROLE_ARN_PREFIX_LEN (sizeof(ROLE_ARN_HEAD) - 1 + 12 + sizeof(ROLE_ARN_MID) - 1)

/* The account number of a role ARN of the aws partition, or -1: the form
 * version 3 writes as a number and the name after ":role/". Every Lambda
 * execution role has it; other partitions (aws-cn, aws-us-gov) are written
 * whole. */
static int64_t role_arn_account(const char *arn)
{
	const size_t head = sizeof(ROLE_ARN_HEAD) - 1;
	int64_t acct = 0;
	if (strncmp(arn, ROLE_ARN_HEAD, head) != 0)
		return -1;
	for (size_t i = head; i < head + 12; i++) {
		if (arn[i] < '0' || arn[i] > '9')
			return -1;
		acct = acct * 10 + (arn[i] - '0');
	}
	return strncmp(arn + head + 12, ROLE_ARN_MID, sizeof(ROLE_ARN_MID) - 1) == 0 ? acct : -1;
}

/* a - b, wrapping instead of overflowing for values past the time bound
 * (the decoder refuses what they give back) */
static int64_t time_diff(int64_t a, int64_t b)
{
	return (int64_t)((uint64_t)a - (uint64_t)b);
}

void th_token_encode(struct th_wbuf *w, const struct th_token *t)
{
	int64_t acct = role_arn_account(t->role_arn);
	bool same_fn = strcmp(t->function, t->session) == 0;
	th_put_u8(w, TH_TOKEN_VERSION);
	th_put_u8(w, t->origin);
	th_put_u8(w, (uint8_t)((acct >= 0 ? TOKEN_ROLE_IN_ACCOUNT : 0) |
			       (same_fn ? TOKEN_FUNCTION_IS_SESSION : 0)));
	if (acct >= 0) {
		th_put_varint(w, (uint64_t)acct);
		th_put_str(w, t->role_arn + ROLE_ARN_PREFIX_LEN);
	} else {
		th_put_str(w, t->role_arn);
	}
	th_put_str(w, t->session);
	if (!same_fn)
		th_put_str(w, t->function);
	th_put_str(w, t->identity);
	/* times (each within TH_TIME_BOUND_MS) as differences: hours between
	 * them take 4 bytes where a time takes 6-7 */
	th_put_i64(w, t->issued_ms);
	th_put_i64(w, time_diff(t->expiry_ms, t->issued_ms));
	th_put_i64(w, time_diff(t->first_seen_ms, t->issued_ms));
	th_put_i64(w, time_diff(t->last_seen_ms, t->first_seen_ms));
	th_put_varint(w, t->inside);
	th_put_varint(w, t->outside);
	th_put_varint(w, t->distinct_ips);
	th_put_u8(w, t->n_ips);
	for (int i = 0; i < t->n_ips; i++)
		th_put_str(w, t->ips[i]);
	th_put_u8(w, t->n_ip_hashes);
	for (int i = 0; i < t->n_ip_hashes; i++)
		th_put_varint(w, t->ip_hashes[i]);
	th_put_u8(w, t->n_calls);
	for (int i = 0; i < t->n_calls; i++) {
		th_put_str(w, t->calls[i].name);
		th_put_varint(w, t->calls[i].count);
		th_put_i64(w, time_diff(t->calls[i].last_ms, t->last_seen_ms));
	}
	th_put_u8(w, t->n_alerts);
	for (int i = 0; i < t->n_alerts; i++) {
		th_put_u8(w, t->alerts[i].variation);
		th_put_u8(w, t->alerts[i].upgraded);
		th_put_str(w, t->alerts[i].alert_id);
		th_call_encode(w, &t->alerts[i].call);
	}
}

void th_token_clear(struct th_token *t)
{
	/* Only what decoding and the counters rely on: the arrays are bounded by
	 * their counts, and zeroing ~8 KB per event showed in profiles. */
	t->origin = 0;
	t->role_arn[0] = t->session[0] = t->function[0] = t->identity[0] = '\0';
	t->issued_ms = t->expiry_ms = t->first_seen_ms = t->last_seen_ms = 0;
	t->inside = t->outside = t->distinct_ips = 0;
	t->n_ips = t->n_calls = t->n_alerts = t->n_ip_hashes = 0;
}

void th_token_init(struct th_token *t)
{
	th_token_clear(t);
	t->alerts = NULL;
}

void th_token_free(struct th_token *t)
{
	free(t->alerts);
	t->alerts = NULL;
	t->n_alerts = 0;
}

int th_token_alerts_room(struct th_token *t)
{
	if (!t->alerts && !(t->alerts = malloc(TH_TOKEN_MAX_ALERTS * sizeof(*t->alerts))))
		return TH_ENOMEM;
	return 0;
}

void th_role_clear(struct th_role *ro)
{
	ro->is_lambda = 0;
	ro->first_seen_ms = 0;
	ro->last_seen_ms = 0;
	ro->n_regions = 0;
	ro->service_regions = 0;
	ro->n_functions = 0;
}

void th_role_init(struct th_role *ro)
{
	memset(ro, 0, sizeof(*ro));
}

void th_role_free(struct th_role *ro)
{
	free(ro->functions);
	ro->functions = NULL;
	ro->n_functions = ro->cap_functions = 0;
}

/* Index of the first function whose name is not below name. */
static uint32_t function_lower_bound(const struct th_role *ro, const char *name)
{
	uint32_t lo = 0, hi = ro->n_functions;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (strcmp(ro->functions[mid].name, name) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int th_role_find_function(const struct th_role *ro, const char *name)
{
	/* Compared as stored: a name longer than the field matches its cut. */
	char cut[sizeof(ro->functions[0].name)];
	if (strlen(name) >= sizeof(cut)) {
		th_strlcpy(cut, name, sizeof(cut));
		name = cut;
	}
	uint32_t i = function_lower_bound(ro, name);
	return i < ro->n_functions && strcmp(ro->functions[i].name, name) == 0 ? (int)i : -1;
}

static int region_index(const struct th_role *ro, const char *region)
{
	for (int i = 0; i < ro->n_regions; i++)
		if (strcmp(ro->regions[i], region) == 0)
			return i;
	return -1;
}

uint64_t th_role_region_bit(const struct th_role *ro, const char *region)
{
	int i = region && *region ? region_index(ro, region) : -1;
	return i < 0 ? 0 : UINT64_C(1) << i;
}

/* The region's bit, named in the role's table if new; 0 when the table is
 * full (a region past TH_ROLE_MAX_REGIONS is not learned). */
static uint64_t region_bit_add(struct th_role *ro, const char *region)
{
	if (!region || !*region)
		return 0;
	int i = region_index(ro, region);
	if (i < 0) {
		if (ro->n_regions >= TH_ROLE_MAX_REGIONS)
			return 0;
		i = ro->n_regions++;
		th_strlcpy(ro->regions[i], region, sizeof(ro->regions[i]));
	}
	return UINT64_C(1) << i;
}

void th_role_add_service_region(struct th_role *ro, const char *region, bool *changed)
{
	uint64_t bit = region_bit_add(ro, region);
	if (bit && !(ro->service_regions & bit)) {
		ro->service_regions |= bit;
		*changed = true;
	}
}

int th_role_add_function(struct th_role *ro, const char *name, const char *region, bool *changed)
{
	char cut[sizeof(ro->functions[0].name)];
	th_strlcpy(cut, name, sizeof(cut));
	uint32_t i = function_lower_bound(ro, cut);
	if (i >= ro->n_functions || strcmp(ro->functions[i].name, cut) != 0) {
		if (ro->n_functions >= TH_ROLE_MAX_FUNCTIONS) {
			uint32_t old = 0;
			for (uint32_t j = 1; j < ro->n_functions; j++)
				if (ro->functions[j].last_seen_ms < ro->functions[old].last_seen_ms)
					old = j;
			memmove(&ro->functions[old], &ro->functions[old + 1],
				(ro->n_functions - old - 1) * sizeof(ro->functions[0]));
			ro->n_functions--;
			i = function_lower_bound(ro, cut);
		}
		if (ro->n_functions == ro->cap_functions) {
			uint32_t cap = ro->cap_functions ? ro->cap_functions * 2 : 8;
			if (cap > TH_ROLE_MAX_FUNCTIONS)
				cap = TH_ROLE_MAX_FUNCTIONS;
			void *p = realloc(ro->functions, cap * sizeof(ro->functions[0]));
			if (!p)
				return -1;
			ro->functions = p;
			ro->cap_functions = cap;
		}
		memmove(&ro->functions[i + 1], &ro->functions[i],
			(ro->n_functions - i) * sizeof(ro->functions[0]));
		memcpy(ro->functions[i].name, cut, sizeof(cut));
		ro->functions[i].regions = 0;
		ro->functions[i].last_seen_ms = 0;
		ro->n_functions++;
		*changed = true;
	}
	uint64_t bit = region_bit_add(ro, region);
	if (bit && !(ro->functions[i].regions & bit)) {
		ro->functions[i].regions |= bit;
		*changed = true;
	}
	return (int)i;
}

/* A token's version: 3 as written now, or 2 or 1, which stores and
 * changelogs written before still hold. */
static int token_version(struct th_rbuf *r)
{
	int v = th_get_u8(r);
	return !r->bad && v >= TH_REC_VERSION && v <= TH_TOKEN_VERSION ? v : -1;
}

/* Reads the address hashes of a version-2 token; out NULL skips them. */
static int get_ip_hashes(struct th_rbuf *r, struct th_token *out)
{
	int n = th_get_u8(r);
	if (n > TH_TOKEN_MAX_IP_HASHES)
		return TH_EPARSE;
	for (int i = 0; i < n; i++) {
		uint64_t h = th_get_varint(r);
		if (h > UINT32_MAX)
			return TH_EPARSE;
		if (out)
			out->ip_hashes[i] = (uint32_t)h;
	}
	if (out)
		out->n_ip_hashes = (uint8_t)n;
	return 0;
}

/* A string th_get_str() would accept, passed over without copying. */
static void skip_str(struct th_rbuf *r)
{
	uint64_t n = th_get_varint(r);
	if (r->bad || n > (uint64_t)(r->end - r->p) || memchr(r->p, '\0', (size_t)n)) {
		r->bad = true;
		return;
	}
	r->p += n;
}

/* A time written (version 3) as its difference from base, a time already
 * read: the sum is held to the bound th_get_time() holds a time to. */
static int64_t get_time_after(struct th_rbuf *r, int64_t base)
{
	int64_t d = th_get_i64(r);
	if (d > 2 * TH_TIME_BOUND_MS || d < -2 * TH_TIME_BOUND_MS ||
	    base + d > TH_TIME_BOUND_MS || base + d < -TH_TIME_BOUND_MS) {
		r->bad = true;
		return 0;
	}
	return base + d;
}

/* A token's fields up to its counters, of any version; t NULL skips the
 * strings (th_token_life), whose times land in *times (issued, expiry,
 * first seen, last seen). */
static void get_token_head(struct th_rbuf *r, int version, struct th_token *t, int64_t times[4])
{
	int flags = 0;
	uint8_t origin = th_get_u8(r);
	if (t)
		t->origin = origin;
	if (version >= 3) {
		flags = th_get_u8(r);
		if (flags & ~TOKEN_FLAGS)
			r->bad = true;
	}
	if (flags & TOKEN_ROLE_IN_ACCOUNT) {
		uint64_t acct = th_get_varint(r);
		if (acct > 999999999999ULL)
			r->bad = true;
		if (t) {
			/* by hand: this runs for every token loaded */
			char *o = t->role_arn;
			memcpy(o, ROLE_ARN_HEAD, sizeof(ROLE_ARN_HEAD) - 1);
			o += sizeof(ROLE_ARN_HEAD) - 1;
			for (int i = 11; i >= 0; i--, acct /= 10)
				o[i] = (char)('0' + acct % 10);
			memcpy(o + 12, ROLE_ARN_MID, sizeof(ROLE_ARN_MID) - 1);
			th_get_str(r, t->role_arn + ROLE_ARN_PREFIX_LEN,
				   sizeof(t->role_arn) - ROLE_ARN_PREFIX_LEN);
		} else {
			skip_str(r);
		}
	} else if (t) {
		th_get_str(r, t->role_arn, sizeof(t->role_arn));
	} else {
		skip_str(r);
	}
	if (t) {
		th_get_str(r, t->session, sizeof(t->session));
		if (flags & TOKEN_FUNCTION_IS_SESSION)
			memcpy(t->function, t->session, sizeof(t->function));
		else
			th_get_str(r, t->function, sizeof(t->function));
		th_get_str(r, t->identity, sizeof(t->identity));
	} else {
		skip_str(r);
		if (!(flags & TOKEN_FUNCTION_IS_SESSION))
			skip_str(r);
		skip_str(r);
	}
	times[0] = th_get_time(r);
	if (version >= 3) {
		times[1] = get_time_after(r, times[0]);
		times[2] = get_time_after(r, times[0]);
		times[3] = get_time_after(r, times[2]);
	} else {
		for (int i = 1; i < 4; i++)
			times[i] = th_get_time(r);
	}
}

int th_token_decode(const void *p, size_t n, struct th_token *t)
{
	struct th_rbuf r;
	int64_t times[4];
	th_rbuf_init(&r, p, n);
	th_token_clear(t);
	int version = token_version(&r);
	if (version < 0)
		return TH_EPARSE;
	get_token_head(&r, version, t, times);
	t->issued_ms = times[0];
	t->expiry_ms = times[1];
	t->first_seen_ms = times[2];
	t->last_seen_ms = times[3];
	t->inside = (uint32_t)th_get_varint(&r);
	t->outside = (uint32_t)th_get_varint(&r);
	t->distinct_ips = (uint32_t)th_get_varint(&r);
	t->n_ips = th_get_u8(&r);
	if (t->n_ips > TH_TOKEN_MAX_IPS)
		return TH_EPARSE;
	for (int i = 0; i < t->n_ips; i++)
		th_get_str(&r, t->ips[i], sizeof(t->ips[i]));
	if (version >= 2 && get_ip_hashes(&r, t))
		return TH_EPARSE;
	t->n_calls = th_get_u8(&r);
	if (t->n_calls > TH_TOKEN_MAX_CALLS)
		return TH_EPARSE;
	for (int i = 0; i < t->n_calls; i++) {
		th_get_str(&r, t->calls[i].name, sizeof(t->calls[i].name));
		t->calls[i].count = (uint32_t)th_get_varint(&r);
		t->calls[i].last_ms = version >= 3 ? get_time_after(&r, t->last_seen_ms)
						   : th_get_time(&r);
	}
	uint8_t n_alerts = th_get_u8(&r);
	if (n_alerts > TH_TOKEN_MAX_ALERTS)
		return TH_EPARSE;
	if (n_alerts && th_token_alerts_room(t))
		return TH_ENOMEM;
	t->n_alerts = n_alerts;
	for (int i = 0; i < t->n_alerts; i++) {
		t->alerts[i].variation = th_get_u8(&r);
		t->alerts[i].upgraded = th_get_u8(&r);
		th_get_str(&r, t->alerts[i].alert_id, sizeof(t->alerts[i].alert_id));
		if (th_call_decode(&r, &t->alerts[i].call))
			return TH_EPARSE;
	}
	return done(&r);
}

int th_token_life(const void *p, size_t n, struct th_token_life *out, struct th_token *scratch)
{
	struct th_rbuf r;
	int64_t times[4];
	th_rbuf_init(&r, p, n);
	int version = token_version(&r);
	if (version < 0)
		return TH_EPARSE;
	get_token_head(&r, version, NULL, times);
	for (int i = 0; i < 3; i++) /* inside, outside, distinct_ips */
		th_get_varint(&r);
	int n_ips = th_get_u8(&r);
	if (n_ips > TH_TOKEN_MAX_IPS)
		return TH_EPARSE;
	for (int i = 0; i < n_ips; i++)
		skip_str(&r);
	if (version >= 2 && get_ip_hashes(&r, NULL))
		return TH_EPARSE;
	int n_calls = th_get_u8(&r);
	if (n_calls > TH_TOKEN_MAX_CALLS)
		return TH_EPARSE;
	for (int i = 0; i < n_calls; i++) {
		skip_str(&r);
		th_get_varint(&r);
		if (version >= 3)
			get_time_after(&r, times[3]);
		else
			th_get_time(&r);
	}
	int n_alerts = th_get_u8(&r);
	if (n_alerts) {
		/* rare (a key that alerted): its calls are checked by decoding */
		int rc = th_token_decode(p, n, scratch);
		if (rc)
			return rc;
	} else if (done(&r)) {
		return TH_EPARSE;
	}
	out->expiry_ms = times[1];
	out->last_seen_ms = times[3];
	out->n_alerts = n_alerts;
	return 0;
}

void th_role_encode(struct th_wbuf *w, const struct th_role *ro)
{
	th_put_u8(w, TH_ROLE_VERSION);
	th_put_u8(w, ro->is_lambda);
	th_put_i64(w, ro->first_seen_ms);
	th_put_i64(w, ro->last_seen_ms);
	th_put_varint(w, ro->n_regions);
	for (int i = 0; i < ro->n_regions; i++)
		th_put_str(w, ro->regions[i]);
	th_put_varint(w, ro->service_regions);
	th_put_varint(w, ro->n_functions);
	for (uint32_t i = 0; i < ro->n_functions; i++) {
		th_put_str(w, ro->functions[i].name);
		th_put_varint(w, ro->functions[i].regions);
		th_put_i64(w, ro->functions[i].last_seen_ms);
	}
}

/* A version-1 role (stores and changelogs written before version 2): each
 * function with its own list of region names, at most 64 functions. */
static int role_decode_v1(struct th_rbuf *r, struct th_role *ro)
{
	char name[128], region[24];
	bool changed;
	unsigned nf = th_get_u8(r);
	if (nf > 64)
		return TH_EPARSE;
	for (unsigned i = 0; i < nf && !r->bad; i++) {
		th_get_str(r, name, sizeof(name));
		int fi = th_role_add_function(ro, name, NULL, &changed);
		unsigned nr = th_get_u8(r);
		if (fi < 0 || nr > 8)
			return TH_EPARSE;
		for (unsigned j = 0; j < nr && !r->bad; j++) {
			th_get_str(r, region, sizeof(region));
			th_role_add_function(ro, name, region, &changed);
		}
	}
	unsigned ns = th_get_u8(r);
	if (ns > 8)
		return TH_EPARSE;
	for (unsigned j = 0; j < ns && !r->bad; j++) {
		th_get_str(r, region, sizeof(region));
		th_role_add_service_region(ro, region, &changed);
	}
	return done(r);
}

int th_role_decode(const void *p, size_t n, struct th_role *ro)
{
	struct th_rbuf r;
	th_rbuf_init(&r, p, n);
	th_role_clear(ro);
	int v = th_get_u8(&r);
	if (r.bad || (v != TH_REC_VERSION && v != 2 && v != TH_ROLE_VERSION))
		return TH_EPARSE;
	ro->is_lambda = th_get_u8(&r);
	ro->first_seen_ms = th_get_time(&r);
	if (v == TH_REC_VERSION)
		return role_decode_v1(&r, ro);
	/* version 2 is version 3 without the last sighting */
	if (v == TH_ROLE_VERSION)
		ro->last_seen_ms = th_get_time(&r);
	uint64_t nr = th_get_varint(&r);
	if (nr > TH_ROLE_MAX_REGIONS)
		return TH_EPARSE;
	ro->n_regions = (uint8_t)nr;
	for (int i = 0; i < ro->n_regions; i++)
		th_get_str(&r, ro->regions[i], sizeof(ro->regions[i]));
	/* A bit naming no region would make a function "inside" nowhere
	 * visible; such a value is not one this code wrote. */
	uint64_t known = nr == 64 ? UINT64_MAX : (UINT64_C(1) << nr) - 1;
	ro->service_regions = th_get_varint(&r);
	if (ro->service_regions & ~known)
		return TH_EPARSE;
	uint64_t nf = th_get_varint(&r);
	if (r.bad || nf > TH_ROLE_MAX_FUNCTIONS)
		return TH_EPARSE;
	/* Each function takes at least 2 bytes: a count past what is left is
	 * garbage, not a reason to allocate. */
	if (nf > (uint64_t)(r.end - r.p) / 2)
		return TH_EPARSE;
	if (nf > ro->cap_functions) {
		void *q = realloc(ro->functions, nf * sizeof(ro->functions[0]));
		if (!q)
			return TH_ENOMEM;
		ro->functions = q;
		ro->cap_functions = (uint32_t)nf;
	}
	for (uint64_t i = 0; i < nf && !r.bad; i++) {
		struct th_role_function *f = &ro->functions[i];
		th_get_str(&r, f->name, sizeof(f->name));
		f->regions = th_get_varint(&r);
		f->last_seen_ms = v == TH_ROLE_VERSION ? th_get_time(&r) : 0;
		/* Sorted and distinct, as written: lookups search by halves. */
		if ((f->regions & ~known) || (i && strcmp(ro->functions[i - 1].name, f->name) >= 0))
			return TH_EPARSE;
		ro->n_functions = (uint32_t)i + 1;
	}
	return done(&r);
}

int th_role_last_seen(const void *p, size_t n, int64_t *last_ms)
{
	struct th_rbuf r;
	th_rbuf_init(&r, p, n);
	int v = th_get_u8(&r);
	*last_ms = 0;
	if (r.bad || (v != TH_REC_VERSION && v != 2 && v != TH_ROLE_VERSION))
		return TH_EPARSE;
	if (v == TH_ROLE_VERSION) {
		th_get_u8(&r);
		th_get_time(&r);
		*last_ms = th_get_time(&r);
	}
	return r.bad ? TH_EPARSE : 0;
}

void th_sighting_encode(struct th_wbuf *w, const struct th_sighting *s)
{
	th_put_u8(w, TH_SIGHTING_VERSION);
	th_put_str(w, s->key);
	th_put_i64(w, s->last_ms);
	th_put_i64(w, s->other_ms);
	th_put_i64(w, s->first_ms);
	th_put_u8(w, s->n);
	for (int i = 0; i < s->n; i++) {
		th_put_str(w, s->by_key[i].key);
		th_put_i64(w, s->by_key[i].ms);
	}
}

/* Keep the latest sighting of each key, sorted by time. When a new key
 * finds the list full, the entry whose removal leaves the smallest gap
 * between its neighbours goes (never the newest): the kept entries stay
 * spread over the time seen, so a decision at any time of the window still
 * finds the sighting nearest before it. */
static void sighting_list_add(struct th_sighting *s, const char *key, int64_t t)
{
	char k[sizeof(s->by_key[0].key)];
	th_strlcpy(k, key, sizeof(k));
	int i;
	for (i = 0; i < s->n; i++)
		if (strcmp(s->by_key[i].key, k) == 0)
			break;
	if (i < s->n) {
		if (t <= s->by_key[i].ms)
			return;
		s->by_key[i].ms = t;
		/* moved later: bubble it up */
		for (; i + 1 < s->n && s->by_key[i + 1].ms <= s->by_key[i].ms; i++) {
			struct th_sighting_key tmp = s->by_key[i];
			s->by_key[i] = s->by_key[i + 1];
			s->by_key[i + 1] = tmp;
		}
		return;
	}
	if (s->n == TH_SIGHTING_KEYS) {
		/* the new entry takes part: it may be the one to go */
		int pos = s->n;
		while (pos > 0 && s->by_key[pos - 1].ms > t)
			pos--;
		int64_t at[TH_SIGHTING_KEYS + 1];
		for (int j = 0, m = 0; j <= s->n; j++)
			at[j] = j == pos ? t : s->by_key[m++].ms;
		int drop = -1;
		int64_t best = 0;
		for (int j = 1; j < s->n; j++) { /* interior of n + 1 entries */
			int64_t gap = at[j + 1] - at[j - 1];
			if (drop < 0 || gap < best) {
				drop = j;
				best = gap;
			}
		}
		if (drop == pos)
			return;
		int from = drop < pos ? drop : drop - 1; /* index in by_key */
		memmove(&s->by_key[from], &s->by_key[from + 1],
			(size_t)(s->n - from - 1) * sizeof(s->by_key[0]));
		s->n--;
	}
	int pos = s->n;
	while (pos > 0 && s->by_key[pos - 1].ms > t)
		pos--;
	memmove(&s->by_key[pos + 1], &s->by_key[pos], (size_t)(s->n - pos) * sizeof(s->by_key[0]));
	memcpy(s->by_key[pos].key, k, sizeof(k));
	s->by_key[pos].ms = t;
	s->n++;
}

int th_sighting_decode(const void *p, size_t n, struct th_sighting *s)
{
	struct th_rbuf r;
	th_rbuf_init(&r, p, n);
	memset(s, 0, sizeof(*s));
	uint8_t v = th_get_u8(&r);
	if (r.bad || (v != TH_REC_VERSION && v != TH_SIGHTING_VERSION))
		return TH_EPARSE;
	th_get_str(&r, s->key, sizeof(s->key));
	s->last_ms = th_get_time(&r);
	s->other_ms = th_get_time(&r);
	s->first_ms = th_get_time(&r);
	if (v == TH_REC_VERSION) {
		/* A version-1 value: its holder, and its other key, which is
		 * unknown ("?": another key than any asked about). */
		if (!r.bad && s->last_ms)
			sighting_list_add(s, s->key, s->last_ms);
		if (!r.bad && s->other_ms)
			sighting_list_add(s, "?", s->other_ms);
		return done(&r);
	}
	s->n = th_get_u8(&r);
	if (s->n > TH_SIGHTING_KEYS)
		return TH_EPARSE;
	for (int i = 0; i < s->n && !r.bad; i++) {
		th_get_str(&r, s->by_key[i].key, sizeof(s->by_key[i].key));
		s->by_key[i].ms = th_get_time(&r);
		if (i > 0 && s->by_key[i].ms < s->by_key[i - 1].ms)
			return TH_EPARSE;
		for (int j = 0; j < i; j++)
			if (strcmp(s->by_key[j].key, s->by_key[i].key) == 0)
				return TH_EPARSE;
	}
	return done(&r);
}

void th_sighting_update(struct th_sighting *s, const char *key, int64_t t)
{
	key = key ? key : "";
	sighting_list_add(s, key, t);
	if (!s->first_ms || t < s->first_ms)
		s->first_ms = t;
	if (strcmp(s->key, key) == 0) {
		if (t > s->last_ms)
			s->last_ms = t;
		return;
	}
	if (!s->key[0] && !s->last_ms) {
		th_strlcpy(s->key, key, sizeof(s->key));
		s->last_ms = t;
		return;
	}
	if (t >= s->last_ms) {
		/* the previous holder becomes "another key" */
		if (s->last_ms > s->other_ms)
			s->other_ms = s->last_ms;
		th_strlcpy(s->key, key, sizeof(s->key));
		s->last_ms = t;
	} else if (t > s->other_ms) {
		s->other_ms = t;
	}
}

int64_t th_sighting_other(const struct th_sighting *s, const char *key)
{
	if (strcmp(s->key, key ? key : "") == 0)
		return s->other_ms;
	return s->last_ms > s->other_ms ? s->last_ms : s->other_ms;
}

int64_t th_sighting_other_at(const struct th_sighting *s, const char *key, int64_t t)
{
	char k[sizeof(s->by_key[0].key)];
	th_strlcpy(k, key ? key : "", sizeof(k));
	for (int i = s->n - 1; i >= 0; i--)
		if (s->by_key[i].ms <= t && strcmp(s->by_key[i].key, k) != 0)
			return s->by_key[i].ms;
	return 0;
}

void th_held_encode(struct th_wbuf *w, const struct th_held *h)
{
	th_put_u8(w, TH_REC_VERSION);
	th_put_i64(w, h->expiry_ms);
	th_put_str(w, h->role_arn);
	th_put_u8(w, h->n);
	for (int i = 0; i < h->n; i++)
		th_call_encode(w, &h->calls[i]);
	th_put_u8(w, h->n_asns);
	for (int i = 0; i < h->n_asns; i++) {
		th_put_varint(w, h->asns[i]);
		th_put_i64(w, h->asn_ms[i]);
	}
}

void th_held_clear(struct th_held *h)
{
	/* the arrays are bounded by their counts; zeroing 10 KB per use showed */
	h->expiry_ms = 0;
	h->role_arn[0] = '\0';
	h->n = h->n_asns = 0;
}

int th_held_decode(const void *p, size_t n, struct th_held *h)
{
	struct th_rbuf r;
	th_rbuf_init(&r, p, n);
	th_held_clear(h);
	if (check_version(&r))
		return TH_EPARSE;
	h->expiry_ms = th_get_time(&r);
	th_get_str(&r, h->role_arn, sizeof(h->role_arn));
	h->n = th_get_u8(&r);
	if (h->n > TH_HELD_MAX)
		return TH_EPARSE;
	for (int i = 0; i < h->n; i++)
		if (th_call_decode(&r, &h->calls[i]))
			return TH_EPARSE;
	h->n_asns = th_get_u8(&r);
	if (h->n_asns > TH_HELD_MAX)
		return TH_EPARSE;
	for (int i = 0; i < h->n_asns; i++) {
		h->asns[i] = (uint32_t)th_get_varint(&r);
		h->asn_ms[i] = th_get_time(&r);
	}
	return done(&r);
}

void th_dedup_encode(struct th_wbuf *w, const struct th_dedup *d)
{
	th_put_u8(w, TH_DEDUP_VERSION);
	th_put_u8(w, d->n);
	for (int i = 0; i < d->n; i++) {
		th_put_i64(w, d->alerts[i].alert_ms);
		th_put_varint(w, d->alerts[i].count);
		th_put_str(w, d->alerts[i].alert_id);
	}
}

int th_dedup_decode(const void *p, size_t n, struct th_dedup *d)
{
	struct th_rbuf r;
	th_rbuf_init(&r, p, n);
	d->n = 0;
	uint8_t version = th_get_u8(&r);
	if (r.bad)
		return TH_EPARSE;
	if (version == TH_REC_VERSION) {
		/* Stores written before the ledger kept every alert: the last
		 * alert is the one entry (so an upgrade keeps deduplicating). */
		d->n = 1;
		d->alerts[0].alert_ms = th_get_time(&r);
		d->alerts[0].count = th_get_varint(&r);
		th_get_str(&r, d->alerts[0].alert_id, sizeof(d->alerts[0].alert_id));
		if (!d->alerts[0].alert_ms)
			d->n = 0; /* never written so by a detector; nothing to keep */
		return done(&r);
	}
	if (version != TH_DEDUP_VERSION)
		return TH_EPARSE;
	d->n = th_get_u8(&r);
	if (d->n > TH_DEDUP_MAX)
		return TH_EPARSE;
	for (int i = 0; i < d->n; i++) {
		d->alerts[i].alert_ms = th_get_time(&r);
		d->alerts[i].count = th_get_varint(&r);
		th_get_str(&r, d->alerts[i].alert_id, sizeof(d->alerts[i].alert_id));
		/* sorted, as the detector writes them: its search relies on it */
		if (i && d->alerts[i].alert_ms < d->alerts[i - 1].alert_ms)
			return TH_EPARSE;
	}
	return done(&r);
}

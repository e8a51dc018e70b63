/*
 * Tests for records.c and the UTF-8 helpers of common.c: state keys of any
 * part length (issue 8: th_key overflowed its buffer on a 1,021-character
 * account ID, and a 543-character role ARN made a key LMDB refuses), record
 * decoders fed truncated and garbled bytes, and cuts on character
 * boundaries. Run under ASan/UBSan too: an overflow is a failure there.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trailhound/records.h"

static char *filled(size_t len, char c)
{
	char *s = malloc(len + 1);
	assert_non_null(s);
	memset(s, c, len);
	s[len] = '\0';
	return s;
}

/* ---- keys ---- */

static void check_key_bytes(const char *k, size_t kl, int nparts)
{
	assert_true(kl <= TH_KEY_MAX);
	assert_int_equal(strlen(k), kl);
	int seps = 0;
	for (size_t i = 0; i < kl; i++)
		seps += k[i] == TH_KEY_SEP;
	assert_int_equal(seps, nparts); /* parts never smuggle a separator in */
}

static void test_key_every_length_fits(void **state)
{
	(void)state;
	/* an exact-size heap buffer: ASan reports any write past it */
	char *buf = malloc(TH_KEY_SIZE);
	assert_non_null(buf);
	for (size_t len = 0; len <= 3000; len++) {
		char *p = filled(len, 'a' + (char)(len % 26));
		for (int np = 1; np <= TH_KEY_MAX_PARTS; np++) {
			/* the long part in every position, beside short and long ones */
			for (int pos = 0; pos < np; pos++) {
				const char *parts[5] = {"123456789012", "ASIAEXAMPLE", "x", "", "16509"};
				parts[pos] = p;
				if (len % 97 == 0)
					for (int i = 0; i < np; i++)
						parts[i] = p; /* all of them long */
				size_t kl = th_key(buf, TH_KEY_SIZE, 'd', np, parts[0], parts[1],
						   parts[2], parts[3], parts[4]);
				assert_true(kl > 0);
				check_key_bytes(buf, kl, np);
			}
		}
		free(p);
	}
	free(buf);
}

static void test_key_parts_kept_or_digested(void **state)
{
	char k[TH_KEY_SIZE], part[TH_KEY_PART_MAX + 1];
	(void)state;
	/* up to TH_KEY_PART_MAX bytes: the part as it is */
	char *p = filled(TH_KEY_PART_MAX, 'r');
	size_t kl = th_key(k, sizeof(k), 'r', 1, p);
	assert_int_equal(kl, 2 + TH_KEY_PART_MAX);
	assert_memory_equal(k + 2, p, TH_KEY_PART_MAX);
	free(p);
	/* one more: prefix, '~', 64 hex digits, exactly TH_KEY_PART_MAX long */
	p = filled(TH_KEY_PART_MAX + 1, 'r');
	kl = th_key(k, sizeof(k), 'r', 1, p);
	assert_int_equal(kl, 2 + TH_KEY_PART_MAX);
	assert_memory_equal(k + 2, p, TH_KEY_PREFIX_KEEP);
	assert_int_equal(k[2 + TH_KEY_PREFIX_KEEP], TH_KEY_DIGEST_MARK);
	for (int i = 0; i < TH_KEY_DIGEST_HEX; i++)
		assert_non_null(strchr("0123456789abcdef", k[3 + TH_KEY_PREFIX_KEEP + i]));
	/* th_key_part() maps the same way */
	assert_int_equal(th_key_part(part, p), TH_KEY_PART_MAX);
	assert_memory_equal(part, k + 2, TH_KEY_PART_MAX);
	free(p);
	/* a separator inside a part is digested, so parts cannot be shifted:
	 * ("a\x1fb", "c") and ("a", "b\x1fc") are different keys */
	char k2[TH_KEY_SIZE];
	size_t l1 = th_key(k, sizeof(k), 'k', 2, "a\x1f" "b", "c");
	size_t l2 = th_key(k2, sizeof(k2), 'k', 2, "a", "b\x1f" "c");
	check_key_bytes(k, l1, 2);
	check_key_bytes(k2, l2, 2);
	assert_false(l1 == l2 && memcmp(k, k2, l1) == 0);
	/* NULL is an empty part */
	assert_int_equal(th_key(k, sizeof(k), 'a', 1, NULL), 2);
}

static void test_key_long_parts_never_collide(void **state)
{
	char k1[TH_KEY_SIZE], k2[TH_KEY_SIZE];
	(void)state;
	/* parts that differ only in their last byte, at every length past the cap */
	for (size_t len = TH_KEY_PART_MAX; len <= 3000; len += 7) {
		char *a = filled(len, 'p'), *b = filled(len, 'p');
		b[len - 1] = 'q';
		size_t l1 = th_key(k1, sizeof(k1), 'r', 1, a);
		size_t l2 = th_key(k2, sizeof(k2), 'r', 1, b);
		assert_false(l1 == l2 && memcmp(k1, k2, l1) == 0);
		/* and a part is not confused with its own extension */
		a[len - 1] = '\0';
		size_t l3 = th_key(k2, sizeof(k2), 'r', 1, a);
		assert_false(l1 == l3 && memcmp(k1, k2, l1) == 0);
		free(a);
		free(b);
	}
}

static void test_key_prefixes_and_round_trip(void **state)
{
	char full[TH_KEY_SIZE], prefix[TH_KEY_SIZE], again[TH_KEY_SIZE];
	(void)state;
	for (size_t len = 0; len <= 2048; len += 31) {
		char *role = filled(len, 'R'), *acct = filled(len / 3, '1'), *akid = filled(len / 2, 'K');
		size_t fl = th_key(full, sizeof(full), 'q', 3, role, acct, akid);
		size_t pl = th_key(prefix, sizeof(prefix), 'q', 1, role);
		/* what a prefix scan for the role's held keys relies on */
		assert_true(pl < fl);
		assert_memory_equal(full, prefix, pl);
		assert_int_equal(full[pl], TH_KEY_SEP);
		/* the parts read back out of the key rebuild the same key */
		char *a = full + pl + 1, *k = strchr(a, TH_KEY_SEP);
		assert_non_null(k);
		*k++ = '\0';
		char rb[TH_KEY_PART_MAX + 1];
		th_key_part(rb, role);
		size_t al = th_key(again, sizeof(again), 'q', 3, rb, a, k);
		full[pl + 1 + strlen(a)] = TH_KEY_SEP;
		assert_int_equal(al, fl);
		assert_memory_equal(again, full, fl);
		free(role);
		free(acct);
		free(akid);
	}
}

static void test_key_refuses_rather_than_truncates(void **state)
{
	char small[40];
	(void)state;
	/* does not fit: an empty key, never a cut one that could collide */
	memset(small, 'x', sizeof(small));
	assert_int_equal(th_key(small, sizeof(small), 'r', 1,
				"arn:aws:iam::123456789012:role/a-role-name-too-long-for-40"),
			 0);
	assert_string_equal(small, "");
	assert_int_equal(th_key(small, sizeof(small), 'r', 6, "a", "b", "c", "d", "e", "f"), 0);
	assert_int_equal(th_key(small, 0, 'r', 1, "a"), 0);
	assert_int_equal(th_key(small, sizeof(small), 'a', 1, "123456789012"), 14);
}

/* ---- record decoders ---- */

static void fill_call(struct th_call *c, int i)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->event_id, sizeof(c->event_id), "event-%d", i);
	th_strlcpy(c->event_name, "GetCallerIdentity", sizeof(c->event_name));
	th_strlcpy(c->event_source, "sts.amazonaws.com", sizeof(c->event_source));
	th_strlcpy(c->aws_region, "eu-west-1", sizeof(c->aws_region));
	th_strlcpy(c->source_ip, "2001:db8::1", sizeof(c->source_ip));
	th_strlcpy(c->user_agent, "aws-cli/2 \xc3\xa9", sizeof(c->user_agent));
	th_strlcpy(c->vpce_id, "vpce-1", sizeof(c->vpce_id));
	th_strlcpy(c->vpce_account, "210987654321", sizeof(c->vpce_account));
	th_strlcpy(c->session, "fn", sizeof(c->session));
	th_strlcpy(c->input_topic, "cloudtrail", sizeof(c->input_topic));
	c->event_time_ms = 1718000000000 + i;
	c->creation_ms = -5;
	c->input_offset = INT64_MAX;
	c->input_partition = 3;
	c->asn = UINT32_MAX;
	th_strlcpy(c->as_org, "Example", sizeof(c->as_org));
	th_strlcpy(c->src_region, "us-east-1", sizeof(c->src_region));
	c->net_kind = 3;
}

typedef int (*decode_fn)(const void *p, size_t n, void *out);

/* Every strict prefix and every one-byte extension fails; random bytes
 * never crash (ASan checks the bounds). */
static void check_decoder(const char *what, const struct th_wbuf *w, decode_fn dec, void *out)
{
	assert_int_equal(dec(w->p, w->len, out), 0);
	for (size_t n = 0; n < w->len; n++) {
		/* a copy of exactly n bytes, so a read past it is caught */
		void *cut = malloc(n ? n : 1);
		memcpy(cut, w->p, n);
		if (dec(cut, n, out) != TH_EPARSE)
			fail_msg("%s: a truncation to %zu of %zu bytes decoded", what, n, w->len);
		free(cut);
	}
	unsigned char *longer = malloc(w->len + 1);
	memcpy(longer, w->p, w->len);
	longer[w->len] = 0;
	if (dec(longer, w->len + 1, out) != TH_EPARSE)
		fail_msg("%s: a trailing byte was accepted", what);
	/* another version */
	longer[0] ^= 0x40;
	assert_int_equal(dec(longer, w->len, out), TH_EPARSE);
	free(longer);
	srand(8);
	for (int i = 0; i < 2000; i++) {
		size_t n = (size_t)rand() % (w->len + 64);
		unsigned char *junk = malloc(n ? n : 1);
		for (size_t j = 0; j < n; j++)
			junk[j] = (unsigned char)rand();
		if (n)
			junk[0] = TH_REC_VERSION; /* get past the first check */
		int rc = dec(junk, n, out);
		assert_true(rc == 0 || rc == TH_EPARSE);
		free(junk);
		/* and the real value with one byte changed */
		unsigned char *flip = malloc(w->len);
		memcpy(flip, w->p, w->len);
		flip[(size_t)rand() % w->len] ^= (unsigned char)(1u << (rand() % 8));
		rc = dec(flip, w->len, out);
		assert_true(rc == 0 || rc == TH_EPARSE);
		free(flip);
	}
}

static int dec_token(const void *p, size_t n, void *o) { return th_token_decode(p, n, o); }
static int dec_role(const void *p, size_t n, void *o) { return th_role_decode(p, n, o); }
static int dec_sighting(const void *p, size_t n, void *o) { return th_sighting_decode(p, n, o); }
static int dec_held(const void *p, size_t n, void *o) { return th_held_decode(p, n, o); }
static int dec_dedup(const void *p, size_t n, void *o) { return th_dedup_decode(p, n, o); }

/* A token with every array full (so every count and loop of the codec is
 * exercised) and n_alerts alerts. */
static void fill_token(struct th_token *t, int n_alerts)
{
	th_token_clear(t);
	t->origin = TH_ORIGIN_ISSUED;
	th_strlcpy(t->role_arn, "arn:aws:iam::123456789012:role/r", sizeof(t->role_arn));
	th_strlcpy(t->identity, "arn:aws:iam::123456789012:user/u", sizeof(t->identity));
	t->n_ips = TH_TOKEN_MAX_IPS;
	for (int i = 0; i < t->n_ips; i++)
		snprintf(t->ips[i], sizeof(t->ips[i]), "192.0.2.%d", i);
	t->n_ip_hashes = TH_TOKEN_MAX_IP_HASHES;
	for (int i = 0; i < t->n_ip_hashes; i++)
		t->ip_hashes[i] = UINT32_MAX - (uint32_t)i * 77777;
	t->distinct_ips = TH_TOKEN_MAX_IPS + TH_TOKEN_MAX_IP_HASHES;
	t->n_calls = TH_TOKEN_MAX_CALLS;
	for (int i = 0; i < t->n_calls; i++) {
		snprintf(t->calls[i].name, sizeof(t->calls[i].name), "s3:Op%d", i);
		t->calls[i].count = (uint32_t)i;
		t->calls[i].last_ms = -i;
	}
	assert_int_equal(th_token_alerts_room(t), 0);
	t->n_alerts = (uint8_t)n_alerts;
	for (int i = 0; i < t->n_alerts; i++) {
		t->alerts[i].variation = 1;
		th_strlcpy(t->alerts[i].alert_id, "00112233445566778899aabbccddeeff",
			   sizeof(t->alerts[i].alert_id));
		fill_call(&t->alerts[i].call, i);
	}
}

/* Pruning reads a token with th_token_life(): its verdict (and its fields)
 * must be th_token_decode()'s on every value, whole, cut, extended or with
 * a bit flipped, with alerts and without. */
static void check_life_agrees(const void *p, size_t n)
{
	static struct th_token dec, scratch;
	struct th_token_life life;
	int want = th_token_decode(p, n, &dec);
	int got = th_token_life(p, n, &life, &scratch);
	if (want != got)
		fail_msg("th_token_life gave %d where th_token_decode gave %d (%zu bytes)", got, want, n);
	if (!want) {
		assert_int_equal(life.expiry_ms, dec.expiry_ms);
		assert_int_equal(life.last_seen_ms, dec.last_seen_ms);
		assert_int_equal(life.n_alerts, dec.n_alerts);
	}
}

/* ---- roles: a shared execution role's functions and regions ---- */

static void role_round_trip(const struct th_role *in, struct th_role *out)
{
	struct th_wbuf w = {0};
	th_role_encode(&w, in);
	assert_false(w.oom);
	assert_int_equal(th_role_decode(w.p, w.len, out), 0);
	assert_int_equal(out->n_functions, in->n_functions);
	assert_int_equal(out->n_regions, in->n_regions);
	assert_true(out->service_regions == in->service_regions);
	assert_true(out->first_seen_ms == in->first_seen_ms);
	assert_true(out->last_seen_ms == in->last_seen_ms);
	for (uint32_t i = 0; i < in->n_functions; i++) {
		assert_string_equal(out->functions[i].name, in->functions[i].name);
		assert_true(out->functions[i].regions == in->functions[i].regions);
		assert_true(out->functions[i].last_seen_ms == in->functions[i].last_seen_ms);
	}
	th_wbuf_free(&w);
}

/* Version 1 held at most 64 functions and 8 regions each: the 65th
 * function of a shared role went unlearned (its keys judged as another
 * session's) and a function's 9th region too (its own calls there judged
 * remote). Both now sit far above what an account holds, and a full role
 * still learns: its least recently seen function gives way. */
static void test_role_holds_thousands_of_functions_in_every_region(void **state)
{
	static struct th_role ro, back;
	char name[160], region[24];
	bool changed;
	(void)state;
	th_role_init(&ro);
	th_role_init(&back);
	/* inserted out of order: the role keeps them sorted for its search */
	for (int k = 0; k < TH_ROLE_MAX_FUNCTIONS; k++) {
		int i = (k * 7919) % TH_ROLE_MAX_FUNCTIONS; /* 7919 is prime: a permutation */
		snprintf(name, sizeof(name), "orders-%05d", i);
		snprintf(region, sizeof(region), "region-%d", i % 40);
		changed = false;
		assert_true(th_role_add_function(&ro, name, region, &changed) >= 0);
		assert_true(changed);
	}
	assert_int_equal(ro.n_functions, TH_ROLE_MAX_FUNCTIONS);
	assert_int_equal(ro.n_regions, 40);
	for (int i = 0; i < TH_ROLE_MAX_FUNCTIONS; i++) {
		snprintf(name, sizeof(name), "orders-%05d", i);
		snprintf(region, sizeof(region), "region-%d", i % 40);
		int fi = th_role_find_function(&ro, name);
		assert_true(fi >= 0);
		assert_true(ro.functions[fi].regions == th_role_region_bit(&ro, region));
	}
	assert_int_equal(th_role_find_function(&ro, "orders-"), -1);
	assert_int_equal(th_role_find_function(&ro, "orders-99999"), -1);
	/* full: a new function takes the place of the least recently seen one */
	for (int i = 0; i < TH_ROLE_MAX_FUNCTIONS; i++)
		ro.functions[i].last_seen_ms = 1000 + (i == 1234 ? -1 : i);
	changed = false;
	int fi = th_role_add_function(&ro, "one-too-many", "us-east-1", &changed);
	assert_true(fi >= 0 && changed);
	assert_string_equal(ro.functions[fi].name, "one-too-many");
	assert_true(ro.functions[fi].regions == th_role_region_bit(&ro, "us-east-1"));
	assert_true(ro.functions[fi].last_seen_ms == 0);
	assert_int_equal(ro.n_functions, TH_ROLE_MAX_FUNCTIONS);
	assert_int_equal(th_role_find_function(&ro, "orders-01234"), -1);
	assert_true(th_role_find_function(&ro, "orders-01233") >= 0);
	assert_true(th_role_find_function(&ro, "orders-01235") >= 0);
	for (uint32_t i = 1; i < ro.n_functions; i++)
		assert_true(strcmp(ro.functions[i - 1].name, ro.functions[i].name) < 0);
	role_round_trip(&ro, &back);
	/* one function in 40 regions, then an already known region: no change */
	th_role_clear(&ro);
	for (int j = 0; j < 40; j++) {
		snprintf(region, sizeof(region), "region-%d", j);
		changed = false;
		th_role_add_function(&ro, "global-api", region, &changed);
		assert_true(changed);
	}
	changed = false;
	assert_int_equal(th_role_add_function(&ro, "global-api", "region-39", &changed), 0);
	assert_false(changed);
	assert_true(ro.functions[0].regions == (UINT64_C(1) << 40) - 1);
	role_round_trip(&ro, &back);
	/* the regions past the table's 64 are the only ones not learned */
	for (int j = 40; j < TH_ROLE_MAX_REGIONS + 5; j++) {
		snprintf(region, sizeof(region), "region-%d", j);
		changed = false;
		th_role_add_function(&ro, "global-api", region, &changed);
		assert_true(changed == (j < TH_ROLE_MAX_REGIONS));
	}
	th_role_free(&ro);
	th_role_free(&back);
}

/* The whole role travels in one changelog record: at the cap, with names
 * at the field's length, it stays under Kafka's default 1 MB record. */
static void test_role_at_the_cap_fits_a_kafka_record(void **state)
{
	static struct th_role ro, back;
	struct th_wbuf w = {0};
	char name[128];
	bool changed;
	(void)state;
	th_role_init(&ro);
	th_role_init(&back);
	for (int i = 0; i < TH_ROLE_MAX_REGIONS; i++) {
		char region[24];
		snprintf(region, sizeof(region), "xx-region-%012d", i);
		th_role_add_service_region(&ro, region, &changed);
	}
	for (int i = 0; i < TH_ROLE_MAX_FUNCTIONS; i++) {
		memset(name, 'f', sizeof(name) - 1);
		name[sizeof(name) - 1] = '\0';
		snprintf(name + 100, 27, "%026d", i);
		assert_true(th_role_add_function(&ro, name, "xx-region-000000000063", &changed) >= 0);
		ro.functions[th_role_find_function(&ro, name)].regions = UINT64_MAX;
		ro.functions[th_role_find_function(&ro, name)].last_seen_ms = 4102444800000; /* 2100 */
	}
	th_role_encode(&w, &ro);
	assert_true(w.len < 1000000);
	role_round_trip(&ro, &back);
	th_wbuf_free(&w);
	th_role_free(&ro);
	th_role_free(&back);
}

/* Stores and changelogs written before hold version-1 roles. */
static void test_role_version_1_still_decodes(void **state)
{
	static struct th_role ro;
	struct th_wbuf w = {0};
	(void)state;
	th_role_init(&ro);
	th_put_u8(&w, 1);
	th_put_u8(&w, 1);          /* is_lambda */
	th_put_i64(&w, 1700000000000);
	th_put_u8(&w, 2);          /* functions, in learning order */
	th_put_str(&w, "zeta");
	th_put_u8(&w, 2);
	th_put_str(&w, "eu-west-1");
	th_put_str(&w, "us-east-1");
	th_put_str(&w, "alpha");
	th_put_u8(&w, 0);          /* region not yet known */
	th_put_u8(&w, 1);          /* service-session regions */
	th_put_str(&w, "ap-south-1");
	assert_int_equal(th_role_decode(w.p, w.len, &ro), 0);
	assert_int_equal(ro.is_lambda, 1);
	assert_true(ro.first_seen_ms == 1700000000000);
	assert_int_equal(ro.n_functions, 2);
	assert_string_equal(ro.functions[0].name, "alpha");
	assert_true(ro.functions[0].regions == 0);
	int z = th_role_find_function(&ro, "zeta");
	assert_int_equal(z, 1);
	assert_true(ro.functions[z].regions ==
		    (th_role_region_bit(&ro, "eu-west-1") | th_role_region_bit(&ro, "us-east-1")));
	assert_true(ro.service_regions == th_role_region_bit(&ro, "ap-south-1"));
	assert_true(ro.service_regions != 0);
	th_wbuf_free(&w);
	th_role_free(&ro);
}

/* A version-2 role in region us-east-1 with two functions, as given. */
static void put_role_v2(struct th_wbuf *w, const char *first, const char *second,
			uint64_t second_bits)
{
	th_wbuf_reset(w);
	th_put_u8(w, 2);
	th_put_u8(w, 1);
	th_put_i64(w, 5);
	th_put_varint(w, 1);
	th_put_str(w, "us-east-1");
	th_put_varint(w, 0);
	th_put_varint(w, 2);
	th_put_str(w, first);
	th_put_varint(w, 1);
	th_put_str(w, second);
	th_put_varint(w, second_bits);
}

/* A version-2 value out of order, with a duplicate, or with a bit naming no
 * region is not one the encoder wrote. */
static void test_role_decoder_rejects_what_it_never_writes(void **state)
{
	static struct th_role ro;
	struct th_wbuf w = {0};
	(void)state;
	th_role_init(&ro);
	put_role_v2(&w, "b", "a", 1);
	assert_int_equal(th_role_decode(w.p, w.len, &ro), TH_EPARSE);
	put_role_v2(&w, "a", "a", 1);
	assert_int_equal(th_role_decode(w.p, w.len, &ro), TH_EPARSE);
	put_role_v2(&w, "a", "b", 2); /* bit 1: there is no second region */
	assert_int_equal(th_role_decode(w.p, w.len, &ro), TH_EPARSE);
	/* and the same value in order, with a bit of its one region, decodes */
	put_role_v2(&w, "a", "b", 1);
	assert_int_equal(th_role_decode(w.p, w.len, &ro), 0);
	assert_int_equal(th_role_find_function(&ro, "b"), 1);
	th_wbuf_free(&w);
	th_role_free(&ro);
}

/* Version 3 carries the role's last sighting (pruning drops a role not seen
 * for its window); a version-2 value, written before, decodes with none. */
static void test_role_keeps_its_last_sighting(void **state)
{
	static struct th_role ro, back;
	struct th_wbuf w = {0};
	bool changed = false;
	int64_t last = -1;
	(void)state;
	th_role_init(&ro);
	th_role_init(&back);
	ro.is_lambda = 1;
	ro.first_seen_ms = 1767225600000;
	ro.last_seen_ms = 1767225600000 + 90LL * 86400000;
	th_role_add_function(&ro, "api", "us-east-1", &changed);
	role_round_trip(&ro, &back);
	th_role_encode(&w, &ro);
	assert_int_equal(w.p[0], TH_ROLE_VERSION);
	assert_int_equal(th_role_last_seen(w.p, w.len, &last), 0);
	assert_true(last == ro.last_seen_ms);
	put_role_v2(&w, "a", "b", 1);
	assert_int_equal(th_role_decode(w.p, w.len, &back), 0);
	assert_true(back.first_seen_ms == 5 && back.last_seen_ms == 0);
	assert_int_equal(th_role_last_seen(w.p, w.len, &last), 0);
	assert_true(last == 0);
	/* a version this code never wrote, or a cut value, is refused */
	w.p[0] = TH_ROLE_VERSION + 1;
	assert_int_equal(th_role_last_seen(w.p, w.len, &last), TH_EPARSE);
	th_wbuf_reset(&w);
	th_role_encode(&w, &ro);
	assert_int_equal(th_role_last_seen(w.p, 3, &last), TH_EPARSE);
	th_wbuf_free(&w);
	th_role_free(&ro);
	th_role_free(&back);
}

static void test_token_life_agrees_with_decode(void **state)
{
	struct th_wbuf w = {0};
	static struct th_token t;
	(void)state;
	for (int alerts = 0; alerts <= TH_TOKEN_MAX_ALERTS; alerts += TH_TOKEN_MAX_ALERTS) {
		fill_token(&t, alerts);
		t.expiry_ms = 1700000000000 + alerts;
		t.last_seen_ms = 1700000000500;
		th_wbuf_reset(&w);
		th_token_encode(&w, &t);
		check_life_agrees(w.p, w.len);
		unsigned char *b = malloc(w.len + 1);
		for (size_t n = 0; n <= w.len + 1; n++) {
			memcpy(b, w.p, w.len);
			b[w.len] = 0;
			check_life_agrees(b, n);
		}
		srand(11);
		for (int i = 0; i < 4000; i++) {
			memcpy(b, w.p, w.len);
			b[(size_t)rand() % w.len] ^= (unsigned char)(1u << (rand() % 8));
			check_life_agrees(b, w.len);
		}
		free(b);
	}
	th_wbuf_free(&w);
}

/* The token layout of versions 1 and 2 (docs/state-format.md), written here
 * on its own, not by th_token_encode(): what stores and changelogs of older
 * builds hold. hashes_bad 1 writes one hash too many, 2 one past 32 bits. */
static void encode_token_old(struct th_wbuf *w, const struct th_token *t, int version,
			     int hashes_bad)
{
	th_put_u8(w, (uint8_t)version);
	th_put_u8(w, t->origin);
	th_put_str(w, t->role_arn);
	th_put_str(w, t->session);
	th_put_str(w, t->function);
	th_put_str(w, t->identity);
	th_put_i64(w, t->issued_ms);
	th_put_i64(w, t->expiry_ms);
	th_put_i64(w, t->first_seen_ms);
	th_put_i64(w, t->last_seen_ms);
	th_put_varint(w, t->inside);
	th_put_varint(w, t->outside);
	th_put_varint(w, t->distinct_ips);
	th_put_u8(w, t->n_ips);
	for (int i = 0; i < t->n_ips; i++)
		th_put_str(w, t->ips[i]);
	if (version >= 2) {
		th_put_u8(w, (uint8_t)(t->n_ip_hashes + (hashes_bad == 1)));
		for (int i = 0; i < t->n_ip_hashes; i++)
			th_put_varint(w, t->ip_hashes[i]);
		if (hashes_bad == 1)
			th_put_varint(w, 7);
		if (hashes_bad == 2)
			th_put_varint(w, (uint64_t)UINT32_MAX + 1);
	}
	th_put_u8(w, t->n_calls);
	for (int i = 0; i < t->n_calls; i++) {
		th_put_str(w, t->calls[i].name);
		th_put_varint(w, t->calls[i].count);
		th_put_i64(w, t->calls[i].last_ms);
	}
	th_put_u8(w, t->n_alerts);
	for (int i = 0; i < t->n_alerts; i++) {
		th_put_u8(w, t->alerts[i].variation);
		th_put_u8(w, t->alerts[i].upgraded);
		th_put_str(w, t->alerts[i].alert_id);
		th_call_encode(w, &t->alerts[i].call);
	}
}

/* Every field of two tokens, compared one by one. */
static void assert_tokens_equal(const struct th_token *a, const struct th_token *b)
{
	assert_int_equal(a->origin, b->origin);
	assert_string_equal(a->role_arn, b->role_arn);
	assert_string_equal(a->session, b->session);
	assert_string_equal(a->function, b->function);
	assert_string_equal(a->identity, b->identity);
	assert_int_equal(a->issued_ms, b->issued_ms);
	assert_int_equal(a->expiry_ms, b->expiry_ms);
	assert_int_equal(a->first_seen_ms, b->first_seen_ms);
	assert_int_equal(a->last_seen_ms, b->last_seen_ms);
	assert_int_equal(a->inside, b->inside);
	assert_int_equal(a->outside, b->outside);
	assert_int_equal(a->distinct_ips, b->distinct_ips);
	assert_int_equal(a->n_ips, b->n_ips);
	for (int i = 0; i < a->n_ips; i++)
		assert_string_equal(a->ips[i], b->ips[i]);
	assert_int_equal(a->n_ip_hashes, b->n_ip_hashes);
	for (int i = 0; i < a->n_ip_hashes; i++)
		assert_int_equal(a->ip_hashes[i], b->ip_hashes[i]);
	assert_int_equal(a->n_calls, b->n_calls);
	for (int i = 0; i < a->n_calls; i++) {
		assert_string_equal(a->calls[i].name, b->calls[i].name);
		assert_int_equal(a->calls[i].count, b->calls[i].count);
		assert_int_equal(a->calls[i].last_ms, b->calls[i].last_ms);
	}
	assert_int_equal(a->n_alerts, b->n_alerts);
	for (int i = 0; i < a->n_alerts; i++) {
		assert_int_equal(a->alerts[i].variation, b->alerts[i].variation);
		assert_int_equal(a->alerts[i].upgraded, b->alerts[i].upgraded);
		assert_string_equal(a->alerts[i].alert_id, b->alerts[i].alert_id);
		assert_string_equal(a->alerts[i].call.event_id, b->alerts[i].call.event_id);
		assert_int_equal(a->alerts[i].call.event_time_ms, b->alerts[i].call.event_time_ms);
	}
}

/* Stores and changelogs written by earlier builds hold tokens of versions 1
 * (no address hashes) and 2 (the same fields as now, written longer): both
 * decode to the token they were written from, th_token_life() agrees, and a
 * token written back is version 3 with the same fields. */
static void test_token_versions_1_and_2_still_decode(void **state)
{
	struct th_wbuf w = {0}, w3 = {0};
	static struct th_token t, t2;
	struct th_token_life life;
	(void)state;
	for (int version = 1; version <= 2; version++) {
		fill_token(&t, 1);
		th_strlcpy(t.session, "fn-1", sizeof(t.session));
		th_strlcpy(t.function, "fn-1", sizeof(t.function));
		t.issued_ms = 1700000000000;
		t.expiry_ms = t.issued_ms + 12 * 3600000LL;
		t.first_seen_ms = t.issued_ms + 1000;
		t.last_seen_ms = t.issued_ms + 7200000;
		for (int i = 0; i < t.n_calls; i++)
			t.calls[i].last_ms = t.last_seen_ms - i * 60000;
		if (version == 1) {
			t.n_ip_hashes = 0;
			t.distinct_ips = 58; /* what those builds counted: uses past the 8 stored */
		}
		th_wbuf_reset(&w);
		encode_token_old(&w, &t, version, 0);
		assert_int_equal(th_token_decode(w.p, w.len, &t2), 0);
		assert_tokens_equal(&t2, &t);
		assert_int_equal(th_token_life(w.p, w.len, &life, &t2), 0);
		assert_int_equal(life.expiry_ms, t.expiry_ms);
		assert_int_equal(life.last_seen_ms, t.last_seen_ms);
		check_decoder(version == 1 ? "token v1" : "token v2", &w, dec_token, &t2);
		/* written back: version 3, the same fields, fewer bytes */
		th_token_decode(w.p, w.len, &t2);
		th_wbuf_reset(&w3);
		th_token_encode(&w3, &t2);
		assert_int_equal(w3.p[0], 3);
		assert_true(w3.len < w.len);
		assert_int_equal(th_token_decode(w3.p, w3.len, &t2), 0);
		assert_tokens_equal(&t2, &t);
	}
	/* version 2 refuses too many hashes, or one past 32 bits */
	for (int bad = 1; bad <= 2; bad++) {
		fill_token(&t, 0);
		t.n_ip_hashes = TH_TOKEN_MAX_IP_HASHES - (bad == 2);
		th_wbuf_reset(&w);
		encode_token_old(&w, &t, 2, bad);
		assert_int_equal(th_token_decode(w.p, w.len, &t2), TH_EPARSE);
		assert_int_equal(th_token_life(w.p, w.len, &life, &t2), TH_EPARSE);
	}
	th_wbuf_free(&w);
	th_wbuf_free(&w3);
}

/* A token's alerts live out of line, in room made with its first alert: a
 * key that never alerted has none, decoding a value with alerts makes it,
 * and a token reused for other keys (the detector's spares) keeps it, so
 * decoding after decoding allocates once. */
static void test_token_alerts_room(void **state)
{
	struct th_wbuf with = {0}, without = {0};
	struct th_token t, src;
	(void)state;
	th_token_init(&src);
	fill_token(&src, 0);
	th_token_encode(&without, &src);
	fill_token(&src, TH_TOKEN_MAX_ALERTS);
	th_token_encode(&with, &src);

	th_token_init(&t);
	assert_int_equal(th_token_decode(without.p, without.len, &t), 0);
	assert_null(t.alerts); /* no alert, no room */
	assert_int_equal(th_token_decode(with.p, with.len, &t), 0);
	assert_non_null(t.alerts);
	assert_tokens_equal(&t, &src);
	struct th_alert_ref *room = t.alerts;
	assert_int_equal(th_token_decode(without.p, without.len, &t), 0);
	assert_int_equal(t.n_alerts, 0);
	th_token_clear(&t);
	assert_ptr_equal(t.alerts, room); /* kept for the next key */
	assert_int_equal(th_token_decode(with.p, with.len, &t), 0);
	assert_ptr_equal(t.alerts, room);
	assert_tokens_equal(&t, &src);
	th_token_free(&t);
	assert_null(t.alerts);
	assert_int_equal(t.n_alerts, 0);
	th_token_free(&t); /* twice is harmless */
	th_token_free(&src);
	th_wbuf_free(&with);
	th_wbuf_free(&without);
}

/* Version 3 writes a role ARN of the aws partition as its account number and
 * name, a function named like its session once, and times as differences:
 * every form decodes to what was written (an ARN of another partition, an
 * account number with leading zeros, no ARN at all, times at the bounds),
 * and a value that asks for more (an unknown flag, an account of 13 digits, a
 * difference leading past the time bound) is refused. */
static void test_token_version_3_forms(void **state)
{
	static const char *const arns[] = {
		"arn:aws:iam::123456789012:role/r",
		"arn:aws:iam::000000000001:role/service-role/path/fn-role",
		"arn:aws:iam::123456789012:role/",
		"arn:aws-cn:iam::123456789012:role/r",
		"arn:aws:iam::12345678901:role/r",
		"arn:aws:iam::1234567890123:role/r",
		"arn:aws:iam::123456789012:user/u",
		"arn:aws:iam::12345678901x:role/r",
		"",
	};
	static const char *const names[][2] = {
		{"fn", "fn"}, {"fn", ""}, {"", "fn"}, {"", ""}, {"fn-a", "fn-b"},
	};
	const int64_t times[][4] = {
		{1700000000000, 1700043200000, 1700000001000, 1700007200000},
		{0, 0, 1700000000000, 1700000000000}, /* no issuance seen */
		{TH_TIME_BOUND_MS, -TH_TIME_BOUND_MS, -TH_TIME_BOUND_MS, TH_TIME_BOUND_MS},
		{-TH_TIME_BOUND_MS, TH_TIME_BOUND_MS, TH_TIME_BOUND_MS, -TH_TIME_BOUND_MS},
	};
	struct th_wbuf w = {0};
	static struct th_token t, t2;
	struct th_token_life life;
	(void)state;
	for (size_t a = 0; a < TH_ARRAY_SIZE(arns); a++)
		for (size_t n = 0; n < TH_ARRAY_SIZE(names); n++)
			for (size_t k = 0; k < TH_ARRAY_SIZE(times); k++) {
				fill_token(&t, (int)(k % 2));
				th_strlcpy(t.role_arn, arns[a], sizeof(t.role_arn));
				th_strlcpy(t.session, names[n][0], sizeof(t.session));
				th_strlcpy(t.function, names[n][1], sizeof(t.function));
				t.issued_ms = times[k][0];
				t.expiry_ms = times[k][1];
				t.first_seen_ms = times[k][2];
				t.last_seen_ms = times[k][3];
				t.calls[0].last_ms = -times[k][3];
				th_wbuf_reset(&w);
				th_token_encode(&w, &t);
				assert_int_equal(w.p[0], TH_TOKEN_VERSION);
				if (th_token_decode(w.p, w.len, &t2))
					fail_msg("arn %zu names %zu times %zu did not decode", a, n, k);
				assert_tokens_equal(&t2, &t);
				assert_int_equal(th_token_life(w.p, w.len, &life, &t2), 0);
				assert_int_equal(life.expiry_ms, t.expiry_ms);
				assert_int_equal(life.last_seen_ms, t.last_seen_ms);
			}
	/* the short forms are taken: an ARN of the aws partition is a 6-byte
	 * number and its name ("r", 2 bytes with its length), another one is
	 * whole (35 bytes and 1 of length); a function unlike its session takes
	 * its own 3 */
	fill_token(&t, 0);
	th_strlcpy(t.session, "fn", sizeof(t.session));
	th_strlcpy(t.function, "fn", sizeof(t.function));
	th_wbuf_reset(&w);
	th_token_encode(&w, &t);
	size_t short_len = w.len;
	th_strlcpy(t.role_arn, "arn:aws-cn:iam::123456789012:role/r", sizeof(t.role_arn));
	th_strlcpy(t.function, "fm", sizeof(t.function));
	th_wbuf_reset(&w);
	th_token_encode(&w, &t);
	assert_int_equal(w.len, short_len + (36 - 8) + 3);
	check_decoder("token v3", &w, dec_token, &t2);

	/* hand-made values: version, origin, flags, then the role */
	struct {
		uint8_t flags;
		uint64_t acct;
		int64_t expiry_diff;
		int want;
	} hand[] = {
		{1 | 2, 123456789012ULL, 1000, 0},
		{1 | 2, 999999999999ULL, 1000, 0},
		{1 | 2, 1000000000000ULL, 1000, TH_EPARSE},
		{4, 0, 1000, TH_EPARSE},
		{1 | 2, 1, TH_TIME_BOUND_MS, 0},
		{1 | 2, 1, TH_TIME_BOUND_MS + 1, TH_EPARSE},
		{1 | 2, 1, INT64_MIN, TH_EPARSE},
	};
	for (size_t i = 0; i < TH_ARRAY_SIZE(hand); i++) {
		th_wbuf_reset(&w);
		th_put_u8(&w, 3);
		th_put_u8(&w, TH_ORIGIN_ISSUED);
		th_put_u8(&w, hand[i].flags);
		if (hand[i].flags & 1) {
			th_put_varint(&w, hand[i].acct);
			th_put_str(&w, "r");
		}
		th_put_str(&w, "fn");  /* session */
		th_put_str(&w, "");    /* identity */
		th_put_i64(&w, 0);     /* issued */
		th_put_i64(&w, hand[i].expiry_diff);
		th_put_i64(&w, 0);     /* first seen */
		th_put_i64(&w, 0);     /* last seen */
		th_put_varint(&w, 1);  /* inside */
		th_put_varint(&w, 0);  /* outside */
		th_put_varint(&w, 0);  /* distinct addresses */
		th_put_u8(&w, 0);      /* addresses */
		th_put_u8(&w, 0);      /* hashes */
		th_put_u8(&w, 0);      /* calls */
		th_put_u8(&w, 0);      /* alerts */
		int rc = th_token_decode(w.p, w.len, &t2);
		if (rc != hand[i].want)
			fail_msg("hand-made value %zu: %d, wanted %d", i, rc, hand[i].want);
		assert_int_equal(th_token_life(w.p, w.len, &life, &t2), hand[i].want);
		if (!rc) {
			char arn[64];
			snprintf(arn, sizeof(arn), "arn:aws:iam::%012llu:role/r",
				 (unsigned long long)hand[i].acct);
			assert_string_equal(t2.role_arn, arn);
			assert_string_equal(t2.function, "fn");
			assert_int_equal(t2.expiry_ms, hand[i].expiry_diff);
		}
	}
	th_wbuf_free(&w);
}

/* Stores and changelogs are untrusted: a time so large that the detector's
 * sums (an expiry plus a grace period, a watermark plus a sweep interval)
 * would overflow int64_t makes its record garbled, for every decoder and
 * for th_token_life(); the same record at the bound decodes (the twin). */
static void test_decoders_reject_times_past_the_bound(void **state)
{
	struct th_wbuf w = {0};
	static struct th_token t, t2;
	static struct th_held h, h2;
	struct th_sighting s = {0}, s2;
	struct th_dedup d = {0}, d2;
	struct th_token_life life;
	const int64_t ok[] = {TH_TIME_BOUND_MS, -TH_TIME_BOUND_MS, 0, 1700000000000};
	const int64_t bad[] = {TH_TIME_BOUND_MS + 1, INT64_MAX - 15053, INT64_MAX, INT64_MIN};
	(void)state;
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < TH_ARRAY_SIZE(ok); i++) {
			int64_t v = pass ? bad[i] : ok[i];
			int want = pass ? TH_EPARSE : 0;
			fill_token(&t, 0);
			t.expiry_ms = v;
			th_wbuf_reset(&w);
			th_token_encode(&w, &t);
			assert_int_equal(th_token_decode(w.p, w.len, &t2), want);
			assert_int_equal(th_token_life(w.p, w.len, &life, &t2), want);
			fill_token(&t, 1);
			t.alerts[0].call.event_time_ms = v;
			th_wbuf_reset(&w);
			th_token_encode(&w, &t);
			assert_int_equal(th_token_decode(w.p, w.len, &t2), want);
			assert_int_equal(th_token_life(w.p, w.len, &life, &t2), want);
			th_held_clear(&h);
			h.expiry_ms = v;
			th_wbuf_reset(&w);
			th_held_encode(&w, &h);
			assert_int_equal(th_held_decode(w.p, w.len, &h2), want);
			s.last_ms = v;
			th_wbuf_reset(&w);
			th_sighting_encode(&w, &s);
			assert_int_equal(th_sighting_decode(w.p, w.len, &s2), want);
			d.n = 1;
			d.alerts[0].alert_ms = v;
			th_wbuf_reset(&w);
			th_dedup_encode(&w, &d);
			assert_int_equal(th_dedup_decode(w.p, w.len, &d2), want);
		}
	}
	th_wbuf_free(&w);
}

/* Training evidence for a key's event at time t is a sighting by another key
 * at or before t (spec: 30 days sliding by event time; the session judged is
 * no evidence for itself). The version-1 fields keep only the latest holder
 * and the latest other time, so a decision judged after a later sighting
 * (a held use decided hours later) counted that later sighting. */
static void test_sighting_other_at_counts_only_earlier_other_keys(void **state)
{
	struct th_sighting s = {0}, s2;
	struct th_wbuf w = {0};
	(void)state;
	th_sighting_update(&s, "ASIAK0", 1000); /* an earlier session */
	th_sighting_update(&s, "ASIAK1", 2000); /* the one judged */
	th_sighting_update(&s, "ASIAK2", 3000); /* a later one */
	assert_int_equal(th_sighting_other_at(&s, "ASIAK1", 2500), 1000);
	assert_int_equal(th_sighting_other_at(&s, "ASIAK1", 3000), 3000);
	assert_int_equal(th_sighting_other_at(&s, "ASIAK0", 1500), 0);
	assert_int_equal(th_sighting_other_at(&s, "ASIAK2", 999), 0);
	/* the version-1 view is unchanged */
	assert_int_equal(th_sighting_other(&s, "ASIAK1"), 3000);
	th_sighting_encode(&w, &s);
	assert_int_equal(th_sighting_decode(w.p, w.len, &s2), 0);
	assert_int_equal(s2.n, 3);
	assert_int_equal(th_sighting_other_at(&s2, "ASIAK1", 2500), 1000);
	/* a key seen again moves to its latest time, once */
	th_sighting_update(&s, "ASIAK0", 4000);
	assert_int_equal(s.n, 3);
	assert_int_equal(th_sighting_other_at(&s, "ASIAK1", 2500), 0);
	assert_int_equal(th_sighting_other_at(&s, "ASIAK1", 5000), 4000);

	/* Many keys: the list stays bounded, sorted, and spread over the time
	 * seen, so an event at any time still finds a sighting shortly before. */
	struct th_sighting m = {0};
	char k[32];
	for (int i = 0; i < 1000; i++) {
		snprintf(k, sizeof(k), "ASIAKEY%04d", i);
		th_sighting_update(&m, k, 1000 + 15 * 60 * 1000LL * i);
	}
	assert_int_equal(m.n, TH_SIGHTING_KEYS);
	for (int i = 1; i < m.n; i++)
		assert_true(m.by_key[i - 1].ms <= m.by_key[i].ms);
	assert_int_equal(m.by_key[m.n - 1].ms, 1000 + 15 * 60 * 1000LL * 999);
	int64_t span = 15 * 60 * 1000LL * 999;
	for (int64_t t = 1000; t <= 1000 + span; t += span / 10) {
		int64_t o = th_sighting_other_at(&m, "ASIAJUDGED", t);
		assert_true(o && o <= t && t - o <= span / 4);
	}

	/* A version-1 value still decodes: its holder, and its other key as
	 * an unknown one ("?"), counted as another key as before. */
	th_wbuf_reset(&w);
	th_put_u8(&w, TH_REC_VERSION);
	th_put_str(&w, "ASIAK2");
	th_put_i64(&w, 3000);
	th_put_i64(&w, 2000);
	th_put_i64(&w, 1000);
	assert_int_equal(th_sighting_decode(w.p, w.len, &s2), 0);
	assert_int_equal(s2.n, 2);
	assert_int_equal(th_sighting_other_at(&s2, "ASIAK1", 2500), 2000);
	assert_int_equal(th_sighting_other_at(&s2, "ASIAK1", 3500), 3000);
	assert_int_equal(th_sighting_other_at(&s2, "ASIAK2", 3500), 2000);

	/* entries out of order or repeated are never written: refused */
	s2 = s;
	struct th_sighting_key tmp = s2.by_key[0];
	s2.by_key[0] = s2.by_key[1];
	s2.by_key[1] = tmp;
	th_wbuf_reset(&w);
	th_sighting_encode(&w, &s2);
	assert_int_equal(th_sighting_decode(w.p, w.len, &s2), TH_EPARSE);
	s2 = s;
	memcpy(s2.by_key[1].key, s2.by_key[0].key, sizeof(s2.by_key[0].key));
	th_wbuf_reset(&w);
	th_sighting_encode(&w, &s2);
	assert_int_equal(th_sighting_decode(w.p, w.len, &s2), TH_EPARSE);
	th_wbuf_free(&w);
}

static void test_decoders_reject_truncated_and_garbled(void **state)
{
	struct th_wbuf w = {0};
	static struct th_token t, t2;
	static struct th_role ro, ro2;
	static struct th_held h, h2;
	struct th_sighting s = {0}, s2;
	struct th_dedup d = {0}, d2;
	(void)state;

	fill_token(&t, TH_TOKEN_MAX_ALERTS);
	th_wbuf_reset(&w);
	th_token_encode(&w, &t);
	check_decoder("token", &w, dec_token, &t2);
	assert_int_equal(th_token_decode(w.p, w.len, &t2), 0);
	assert_string_equal(t2.alerts[3].call.user_agent, "aws-cli/2 \xc3\xa9");
	assert_int_equal(t2.alerts[3].call.asn, UINT32_MAX);

	th_role_clear(&ro);
	ro.is_lambda = 1;
	bool changed = false;
	for (int i = 0; i < 3; i++) {
		char name[16], region[24];
		snprintf(name, sizeof(name), "fn-%d", i);
		for (int j = 0; j < 8; j++) {
			snprintf(region, sizeof(region), "region-%d", j);
			assert_true(th_role_add_function(&ro, name, region, &changed) >= 0);
		}
	}
	th_role_add_service_region(&ro, "eu-west-1", &changed);
	th_role_add_service_region(&ro, "us-east-1", &changed);
	assert_true(changed);
	th_wbuf_reset(&w);
	th_role_encode(&w, &ro);
	check_decoder("role", &w, dec_role, &ro2);
	th_role_free(&ro);
	th_role_free(&ro2);

	th_sighting_update(&s, "ASIAONE", 100);
	th_sighting_update(&s, "ASIATWO", 200);
	th_wbuf_reset(&w);
	th_sighting_encode(&w, &s);
	check_decoder("sighting", &w, dec_sighting, &s2);

	th_held_clear(&h);
	h.expiry_ms = 99;
	th_strlcpy(h.role_arn, "arn:aws:iam::123456789012:role/r", sizeof(h.role_arn));
	h.n = TH_HELD_MAX;
	for (int i = 0; i < h.n; i++)
		fill_call(&h.calls[i], i);
	h.n_asns = TH_HELD_MAX;
	for (int i = 0; i < h.n_asns; i++) {
		h.asns[i] = (uint32_t)(64496 + i);
		h.asn_ms[i] = i;
	}
	th_wbuf_reset(&w);
	th_held_encode(&w, &h);
	check_decoder("held", &w, dec_held, &h2);

	d.n = TH_DEDUP_MAX;
	for (int i = 0; i < d.n; i++) {
		d.alerts[i].alert_ms = 5 + i;
		d.alerts[i].count = 7;
		th_strlcpy(d.alerts[i].alert_id, "00112233445566778899aabbccddeeff",
			   sizeof(d.alerts[i].alert_id));
	}
	th_wbuf_reset(&w);
	th_dedup_encode(&w, &d);
	check_decoder("dedup", &w, dec_dedup, &d2);
	assert_int_equal(th_dedup_decode(w.p, w.len, &d2), 0);
	assert_int_equal(d2.n, TH_DEDUP_MAX);
	assert_int_equal(d2.alerts[TH_DEDUP_MAX - 1].alert_ms, 5 + TH_DEDUP_MAX - 1);
	/* entries out of time order are not what the detector writes */
	d.alerts[1].alert_ms = 1;
	th_wbuf_reset(&w);
	th_dedup_encode(&w, &d);
	assert_int_equal(th_dedup_decode(w.p, w.len, &d2), TH_EPARSE);
	/* a version-1 ledger (the last alert only) still decodes, as one entry */
	th_wbuf_reset(&w);
	th_put_u8(&w, TH_REC_VERSION);
	th_put_i64(&w, 1700000000000LL);
	th_put_varint(&w, 3);
	th_put_str(&w, "00112233445566778899aabbccddeeff");
	assert_int_equal(th_dedup_decode(w.p, w.len, &d2), 0);
	assert_int_equal(d2.n, 1);
	assert_int_equal(d2.alerts[0].alert_ms, 1700000000000LL);
	assert_int_equal(d2.alerts[0].count, 3);
	assert_string_equal(d2.alerts[0].alert_id, "00112233445566778899aabbccddeeff");

	/* counts over the arrays' sizes are refused, not trusted */
	th_wbuf_reset(&w);
	th_put_u8(&w, TH_REC_VERSION);
	th_put_i64(&w, 0);
	th_put_str(&w, "arn");
	th_put_u8(&w, TH_HELD_MAX + 1);
	assert_int_equal(th_held_decode(w.p, w.len, &h2), TH_EPARSE);
	/* a string holding a NUL is not one we wrote */
	th_wbuf_reset(&w);
	th_put_u8(&w, TH_REC_VERSION);
	th_put_i64(&w, 1);
	th_put_varint(&w, 2);
	th_put_str(&w, "");
	w.p[w.len - 1] = 2; /* string of length 2 ... */
	th_put_bytes(&w, "a\0", 2); /* ... holding a NUL */
	assert_int_equal(th_dedup_decode(w.p, w.len, &d2), TH_EPARSE);
	th_wbuf_free(&w);
}

/* ---- UTF-8 ---- */

static void test_copy_utf8_cuts_on_boundaries(void **state)
{
	static const char *const chars[] = {"e", "\xc3\xa9", "\xe6\x9d\xb1", "\xf0\x9f\xa6\x8a"};
	char src[64], dst[32];
	(void)state;
	for (size_t ci = 0; ci < 4; ci++) {
		size_t cl = strlen(chars[ci]);
		/* a run of the character, cut at every destination size */
		size_t n = 0;
		while (n + cl < sizeof(src)) {
			memcpy(src + n, chars[ci], cl);
			n += cl;
		}
		src[n] = '\0';
		for (size_t size = 1; size <= sizeof(dst); size++) {
			size_t got = th_copy_utf8(dst, size, src);
			assert_int_equal(got, strlen(dst));
			assert_true(th_utf8_valid(dst, got));
			assert_int_equal(got % cl, 0);           /* whole characters */
			assert_true(got + cl > size - 1);        /* as many as fit */
			assert_memory_equal(dst, src, got);
		}
	}
	/* NULL, exact fit, explicit length */
	assert_int_equal(th_copy_utf8(dst, sizeof(dst), NULL), 0);
	assert_string_equal(dst, "");
	assert_int_equal(th_copy_utf8(dst, 4, "abc"), 3);
	assert_int_equal(th_copy_utf8n(dst, sizeof(dst), "abcdef", 2), 2);
	assert_string_equal(dst, "ab");
	/* th_strlcpy is the same copy */
	th_strlcpy(dst, "ab\xc3\xa9", 4);
	assert_string_equal(dst, "ab");
}

/* Alert fields: a cut keeps whole characters and says so with "…"; the head
 * for text, the end (the file name) for a path. */
static void test_marked_copies_cut_on_boundaries_and_say_so(void **state)
{
	static const char *const chars[] = {"e", "\xc3\xa9", "\xe6\x9d\xb1", "\xf0\x9f\xa6\x8a"};
	char src[64], dst[32];
	(void)state;
	for (size_t ci = 0; ci < 4; ci++) {
		size_t cl = strlen(chars[ci]), n = 0;
		while (n + cl < sizeof(src)) {
			memcpy(src + n, chars[ci], cl);
			n += cl;
		}
		src[n] = '\0';
		for (size_t size = TH_CUT_MARK_LEN + 1; size <= sizeof(dst); size++) {
			size_t got = th_copy_utf8_mark(dst, size, src);
			assert_int_equal(got, strlen(dst));
			assert_true(got < size && th_utf8_valid(dst, got));
			assert_string_equal(dst + got - TH_CUT_MARK_LEN, TH_CUT_MARK);
			size_t kept = got - TH_CUT_MARK_LEN;
			assert_int_equal(kept % cl, 0);                       /* whole characters */
			assert_true(kept + cl > size - 1 - TH_CUT_MARK_LEN);  /* as many as fit */
			assert_memory_equal(dst, src, kept);                  /* the head */

			got = th_copy_utf8_tail(dst, size, src);
			assert_int_equal(got, strlen(dst));
			assert_true(got < size && th_utf8_valid(dst, got));
			assert_memory_equal(dst, TH_CUT_MARK, TH_CUT_MARK_LEN);
			kept = got - TH_CUT_MARK_LEN;
			assert_int_equal(kept % cl, 0);
			assert_true(kept + cl > size - 1 - TH_CUT_MARK_LEN);
			/* the end */
			assert_memory_equal(dst + TH_CUT_MARK_LEN, src + n - kept, kept);
		}
	}
	/* what fits is copied as it is, to the last byte of room */
	assert_int_equal(th_copy_utf8_mark(dst, 4, "abc"), 3);
	assert_string_equal(dst, "abc");
	assert_int_equal(th_copy_utf8_tail(dst, 4, "abc"), 3);
	assert_string_equal(dst, "abc");
	assert_int_equal(th_copy_utf8_mark(dst, sizeof(dst), NULL), 0);
	assert_string_equal(dst, "");
	assert_int_equal(th_copy_utf8_tail(dst, sizeof(dst), NULL), 0);
	assert_string_equal(dst, "");
	/* an explicit length, as the ASN data gives one */
	assert_int_equal(th_copy_utf8n_mark(dst, 5, "abcdefgh", 4), 4);
	assert_string_equal(dst, "abcd");
	assert_int_equal(th_copy_utf8n_mark(dst, 5, "abcdefgh", 5), 4);
	assert_string_equal(dst, "a" TH_CUT_MARK);
}

static void test_utf8_validity(void **state)
{
	(void)state;
	assert_true(th_utf8_valid("", 0));
	assert_true(th_utf8_valid("a\xc3\xa9\xe6\x9d\xb1\xf0\x9f\xa6\x8a", 10));
	assert_false(th_utf8_valid("\xc3", 1));              /* cut */
	assert_false(th_utf8_valid("\xc0\xaf", 2));          /* overlong */
	assert_false(th_utf8_valid("\xe0\x80\xaf", 3));      /* overlong */
	assert_false(th_utf8_valid("\xed\xa0\x80", 3));      /* surrogate */
	assert_false(th_utf8_valid("\xf4\x90\x80\x80", 4));  /* above U+10FFFF */
	assert_false(th_utf8_valid("\x80", 1));              /* lone continuation */
	assert_false(th_utf8_valid("\xff", 1));
	struct th_wbuf w = {0};
	th_put_utf8(&w, "a\xc3z\xff", 4);
	assert_int_equal(w.len, 8);
	assert_memory_equal(w.p, "a\xef\xbf\xbdz\xef\xbf\xbd", 8);
	th_wbuf_free(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_every_length_fits),
		cmocka_unit_test(test_key_parts_kept_or_digested),
		cmocka_unit_test(test_key_long_parts_never_collide),
		cmocka_unit_test(test_key_prefixes_and_round_trip),
		cmocka_unit_test(test_key_refuses_rather_than_truncates),
		cmocka_unit_test(test_decoders_reject_truncated_and_garbled),
		cmocka_unit_test(test_token_life_agrees_with_decode),
		cmocka_unit_test(test_role_holds_thousands_of_functions_in_every_region),
		cmocka_unit_test(test_role_at_the_cap_fits_a_kafka_record),
		cmocka_unit_test(test_role_version_1_still_decodes),
		cmocka_unit_test(test_role_decoder_rejects_what_it_never_writes),
		cmocka_unit_test(test_role_keeps_its_last_sighting),
		cmocka_unit_test(test_token_versions_1_and_2_still_decode),
		cmocka_unit_test(test_token_version_3_forms),
		cmocka_unit_test(test_token_alerts_room),
		cmocka_unit_test(test_decoders_reject_times_past_the_bound),
		cmocka_unit_test(test_sighting_other_at_counts_only_earlier_other_keys),
		cmocka_unit_test(test_copy_utf8_cuts_on_boundaries),
		cmocka_unit_test(test_marked_copies_cut_on_boundaries_and_say_so),
		cmocka_unit_test(test_utf8_validity),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

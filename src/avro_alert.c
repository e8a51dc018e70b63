/*
 * The alert as Avro, Confluent-framed, with avro-c's generic values (the
 * Schema Registry call that gets the framing's schema id is in registry.c).
 *
 * The schema is data (schemas/alert.avsc), so at load time we check it
 * against what th_avro_alert_encode() writes and resolve every field index
 * and union branch once: a schema that drifted from struct th_alert fails at
 * start-up with a message naming the field, not on the first alert.
 */
#include "trailhound/avro_alert.h"

#include <avro.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCHEMA_MAX (1u << 20)

enum kind { K_STR, K_OPT_STR, K_INT, K_LONG, K_OPT_LONG, K_ENUM, K_STRS, K_RECORD };

/* Every field we write. Nested fields follow their record, whose entry
 * comes first so its schema is resolved before theirs. */
enum fid {
	F_ALERT_ID, F_ALERT_NAME, F_VARIATION, F_SEVERITY, F_DESCRIPTION, F_TACTIC,
	F_ACCOUNT_ID, F_REGION, F_ROLE_ARN, F_FUNCTION_NAME, F_SESSION_NAME, F_ACCESS_KEY_ID,
	F_EVENT_ID, F_EVENT_NAME, F_EVENT_SOURCE, F_EVENT_TIME, F_SOURCE_IP, F_NETWORK, F_ASN,
	F_AS_ORG, F_SOURCE_AWS_REGION, F_USER_AGENT, F_VPCE_ID, F_VPCE_ACCOUNT_ID, F_EVIDENCE,
	F_HISTORY, H_ORIGIN, H_ISSUED_AT, H_FIRST_SEEN, H_LAST_SEEN, H_INSIDE_COUNT,
	H_OUTSIDE_COUNT, H_DISTINCT_IPS, H_API_CALLS,
	F_ACTIONS, F_UPGRADE_OF,
	F_INPUT, I_TOPIC, I_PARTITION, I_OFFSET,
	F__COUNT
};

static const struct fdesc {
	const char *name;
	int parent; /* enum fid of the enclosing record, or -1 for Alert */
	enum kind kind;
} fdesc[F__COUNT] = {
	[F_ALERT_ID] = {"alert_id", -1, K_STR},
	[F_ALERT_NAME] = {"alert_name", -1, K_STR},
	[F_VARIATION] = {"variation", -1, K_INT},
	[F_SEVERITY] = {"severity", -1, K_ENUM},
	[F_DESCRIPTION] = {"description", -1, K_STR},
	[F_TACTIC] = {"tactic", -1, K_STR},
	[F_ACCOUNT_ID] = {"account_id", -1, K_STR},
	[F_REGION] = {"region", -1, K_OPT_STR},
	[F_ROLE_ARN] = {"role_arn", -1, K_STR},
	[F_FUNCTION_NAME] = {"function_name", -1, K_OPT_STR},
	[F_SESSION_NAME] = {"session_name", -1, K_OPT_STR},
	[F_ACCESS_KEY_ID] = {"access_key_id", -1, K_STR},
	[F_EVENT_ID] = {"event_id", -1, K_STR},
	[F_EVENT_NAME] = {"event_name", -1, K_STR},
	[F_EVENT_SOURCE] = {"event_source", -1, K_STR},
	[F_EVENT_TIME] = {"event_time", -1, K_LONG},
	[F_SOURCE_IP] = {"source_ip", -1, K_STR},
	[F_NETWORK] = {"network", -1, K_STR},
	[F_ASN] = {"asn", -1, K_LONG},
	[F_AS_ORG] = {"as_org", -1, K_OPT_STR},
	[F_SOURCE_AWS_REGION] = {"source_aws_region", -1, K_OPT_STR},
	[F_USER_AGENT] = {"user_agent", -1, K_OPT_STR},
	[F_VPCE_ID] = {"vpc_endpoint_id", -1, K_OPT_STR},
	[F_VPCE_ACCOUNT_ID] = {"vpc_endpoint_account_id", -1, K_OPT_STR},
	[F_EVIDENCE] = {"evidence", -1, K_STRS},
	[F_HISTORY] = {"history", -1, K_RECORD},
	[H_ORIGIN] = {"origin", F_HISTORY, K_STR},
	[H_ISSUED_AT] = {"issued_at", F_HISTORY, K_OPT_LONG},
	[H_FIRST_SEEN] = {"first_seen", F_HISTORY, K_LONG},
	[H_LAST_SEEN] = {"last_seen", F_HISTORY, K_LONG},
	[H_INSIDE_COUNT] = {"inside_count", F_HISTORY, K_LONG},
	[H_OUTSIDE_COUNT] = {"outside_count", F_HISTORY, K_LONG},
	[H_DISTINCT_IPS] = {"distinct_ips", F_HISTORY, K_LONG},
	[H_API_CALLS] = {"api_calls", F_HISTORY, K_STRS},
	[F_ACTIONS] = {"investigative_actions", -1, K_STRS},
	[F_UPGRADE_OF] = {"upgrade_of", -1, K_OPT_STR},
	[F_INPUT] = {"input", -1, K_RECORD},
	[I_TOPIC] = {"topic", F_INPUT, K_STR},
	[I_PARTITION] = {"partition", F_INPUT, K_INT},
	[I_OFFSET] = {"offset", F_INPUT, K_LONG},
};

/* Fields of a newer alert.avsc that this build does not write: each must be
 * optional (a union with null), and is written as null, its default. */
#define EXTRA_MAX 64
struct extra_field {
	int parent; /* enum fid of the enclosing record, or -1 for Alert */
	int idx, null_branch;
	const char *name; /* the schema's own string */
};

/* The detector's severities (variation.h), in the Severity enum's order. */
static const char *const sev_names[] = {"Informational", "Low", "Medium", "High"};

struct th_avro_alert {
	char *json; /* the schema file's text: what gets registered */
	avro_schema_t schema;
	avro_value_iface_t *iface;
	avro_value_t rec;
	bool have_rec;
	avro_writer_t wr;
	char *buf; /* the body; grown on ENOSPC, kept across records */
	size_t cap;
	int32_t schema_id;
	int idx[F__COUNT];
	int null_branch[F__COUNT], val_branch[F__COUNT]; /* unions only */
	bool widened[F__COUNT]; /* a K_INT field a newer schema made long */
	int sev[TH_ARRAY_SIZE(sev_names)];
	struct extra_field extra[EXTRA_MAX];
	int nextra;
};

static int read_file(const char *path, char **out, size_t *len, char *errstr, size_t errstr_size)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t n = 0;
	int rc = 0;

	if (!f) {
		snprintf(errstr, errstr_size, "alert schema %s: %s", path, strerror(errno));
		return errno == ENOENT ? TH_ENOTFOUND : TH_EIO;
	}
	/* One byte more than the limit tells "too big" from "exactly the limit". */
	if (!(buf = malloc(SCHEMA_MAX + 1))) {
		rc = TH_ENOMEM;
		snprintf(errstr, errstr_size, "alert schema %s: out of memory", path);
		goto cleanup;
	}
	n = fread(buf, 1, SCHEMA_MAX + 1, f);
	if (ferror(f)) {
		rc = TH_EIO;
		snprintf(errstr, errstr_size, "alert schema %s: read error", path);
		goto cleanup;
	}
	if (n > SCHEMA_MAX) {
		rc = TH_ETOOBIG;
		snprintf(errstr, errstr_size, "alert schema %s: larger than %u bytes", path,
			 SCHEMA_MAX);
		goto cleanup;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	buf = NULL;
cleanup:
	free(buf);
	fclose(f);
	return rc;
}

static avro_schema_t deref(avro_schema_t s)
{
	/* A named type used a second time is a link to its definition. */
	while (s && is_avro_link(s))
		s = avro_schema_link_target(s);
	return s;
}

/* Check the union is ["null", T] in either order, T as @p want; note both branches. */
static bool resolve_union(struct th_avro_alert *aa, enum fid id, avro_schema_t u,
			  avro_type_t want)
{
	if (!is_avro_union(u) || avro_schema_union_size(u) != 2)
		return false;
	aa->null_branch[id] = aa->val_branch[id] = -1;
	for (int i = 0; i < 2; i++) {
		avro_schema_t b = deref(avro_schema_union_branch(u, i));
		if (is_avro_null(b))
			aa->null_branch[id] = i;
		else if (b && avro_typeof(b) == want)
			aa->val_branch[id] = i;
	}
	return aa->null_branch[id] >= 0 && aa->val_branch[id] >= 0;
}

static bool known_field(int parent, const char *name)
{
	for (int id = 0; id < F__COUNT; id++)
		if (fdesc[id].parent == parent && strcmp(fdesc[id].name, name) == 0)
			return true;
	return false;
}

/* The fields of record @p rs (Alert when @p parent is -1) that we do not
 * write. A newer schema's added field is optional by the evolution rules
 * (docs/operations.md), and null is then its default: the alert carries it
 * as null. A required one cannot be filled, so the schema is refused here,
 * at start, rather than by every alert. */
static int resolve_extra(struct th_avro_alert *aa, avro_schema_t rs, int parent, char *errstr,
			 size_t errstr_size)
{
	const char *rec = parent < 0 ? "" : fdesc[parent].name;
	const char *dot = parent < 0 ? "" : ".";
	size_t n = avro_schema_record_size(rs);
	for (size_t i = 0; i < n; i++) {
		const char *name = avro_schema_record_field_name(rs, (int)i);
		if (!name || known_field(parent, name))
			continue;
		avro_schema_t u = deref(avro_schema_record_field_get_by_index(rs, (int)i));
		int null_branch = -1;
		for (size_t b = 0; is_avro_union(u) && b < avro_schema_union_size(u); b++)
			if (is_avro_null(deref(avro_schema_union_branch(u, (int)b)))) {
				null_branch = (int)b;
				break;
			}
		if (null_branch < 0) {
			snprintf(errstr, errstr_size,
				 "alert schema: field %s%s%s is not one this build writes, and "
				 "only an optional field (a union with null) can be left to its "
				 "default",
				 rec, dot, name);
			return TH_EAVRO;
		}
		if (aa->nextra == EXTRA_MAX) {
			snprintf(errstr, errstr_size,
				 "alert schema: more than %d fields this build does not write",
				 EXTRA_MAX);
			return TH_EAVRO;
		}
		aa->extra[aa->nextra++] = (struct extra_field){
			.parent = parent, .idx = (int)i, .null_branch = null_branch, .name = name};
	}
	return 0;
}

static int resolve_fields(struct th_avro_alert *aa, char *errstr, size_t errstr_size)
{
	avro_schema_t fs[F__COUNT];

	if (!is_avro_record(aa->schema)) {
		snprintf(errstr, errstr_size, "alert schema: the top level is not a record");
		return TH_EAVRO;
	}
	for (int id = 0; id < F__COUNT; id++) {
		const struct fdesc *d = &fdesc[id];
		avro_schema_t rs = d->parent < 0 ? aa->schema : fs[d->parent], s;
		/* for messages: "history.issued_at" */
		const char *rec = d->parent < 0 ? "" : fdesc[d->parent].name;
		const char *dot = d->parent < 0 ? "" : ".";
		bool ok = false;
		if ((aa->idx[id] = avro_schema_record_field_get_index(rs, d->name)) < 0) {
			snprintf(errstr, errstr_size, "alert schema: no field %s%s%s", rec, dot,
				 d->name);
			return TH_EAVRO;
		}
		fs[id] = s = deref(avro_schema_record_field_get_by_index(rs, aa->idx[id]));
		switch (d->kind) {
		case K_STR: ok = is_avro_string(s); break;
		case K_INT:
			/* int -> long is Avro's promotion, allowed by the evolution
			 * rules (docs/operations.md): write the newer schema's long */
			aa->widened[id] = is_avro_int64(s);
			ok = is_avro_int32(s) || aa->widened[id];
			break;
		case K_LONG: ok = is_avro_int64(s); break;
		case K_RECORD: ok = is_avro_record(s); break;
		case K_OPT_STR: ok = resolve_union(aa, id, s, AVRO_STRING); break;
		case K_OPT_LONG: ok = resolve_union(aa, id, s, AVRO_INT64); break;
		case K_STRS:
			ok = is_avro_array(s) &&
			     is_avro_string(deref(avro_schema_array_items(s)));
			break;
		case K_ENUM:
			ok = is_avro_enum(s);
			for (size_t i = 0; ok && i < TH_ARRAY_SIZE(sev_names); i++) {
				aa->sev[i] = avro_schema_enum_get_by_name(s, sev_names[i]);
				ok = aa->sev[i] >= 0;
			}
			break;
		}
		if (!ok) {
			snprintf(errstr, errstr_size,
				 "alert schema: field %s%s%s has the wrong type", rec, dot,
				 d->name);
			return TH_EAVRO;
		}
	}
	int rc;
	if ((rc = resolve_extra(aa, aa->schema, -1, errstr, errstr_size)) ||
	    (rc = resolve_extra(aa, fs[F_HISTORY], F_HISTORY, errstr, errstr_size)) ||
	    (rc = resolve_extra(aa, fs[F_INPUT], F_INPUT, errstr, errstr_size)))
		return rc;
	return 0;
}

int th_avro_alert_new(struct th_avro_alert **aap, const char *schema_path, int32_t schema_id,
		      char *errstr, size_t errstr_size)
{
	struct th_avro_alert *aa = calloc(1, sizeof(*aa));
	size_t len = 0;
	int rc = 0;

	*aap = NULL;
	if (!aa) {
		snprintf(errstr, errstr_size, "out of memory");
		return TH_ENOMEM;
	}
	aa->schema_id = schema_id;
	if ((rc = read_file(schema_path, &aa->json, &len, errstr, errstr_size)))
		goto cleanup;
	if (avro_schema_from_json_length(aa->json, len, &aa->schema)) {
		snprintf(errstr, errstr_size, "alert schema %s: %s", schema_path, avro_strerror());
		rc = TH_EAVRO;
		goto cleanup;
	}
	if ((rc = resolve_fields(aa, errstr, errstr_size)))
		goto cleanup;
	if (!(aa->iface = avro_generic_class_from_schema(aa->schema)) ||
	    avro_generic_value_new(aa->iface, &aa->rec)) {
		snprintf(errstr, errstr_size, "alert schema %s: %s", schema_path, avro_strerror());
		rc = TH_EAVRO;
		goto cleanup;
	}
	aa->have_rec = true;
	/* Alerts are well under 4 KiB; a bigger one grows the buffer once. */
	aa->cap = 4096;
	if (!(aa->buf = malloc(aa->cap)) ||
	    !(aa->wr = avro_writer_memory(aa->buf, (int64_t)aa->cap))) {
		snprintf(errstr, errstr_size, "out of memory");
		rc = TH_ENOMEM;
		goto cleanup;
	}
	*aap = aa;
	aa = NULL;
cleanup:
	th_avro_alert_destroy(aa);
	return rc;
}

void th_avro_alert_destroy(struct th_avro_alert *aa)
{
	if (!aa)
		return;
	if (aa->wr)
		avro_writer_free(aa->wr);
	if (aa->have_rec)
		avro_value_decref(&aa->rec);
	if (aa->iface)
		avro_value_iface_decref(aa->iface);
	if (aa->schema)
		avro_schema_decref(aa->schema);
	free(aa->buf);
	free(aa->json);
	free(aa);
}

void th_avro_alert_set_schema_id(struct th_avro_alert *aa, int32_t schema_id)
{
	aa->schema_id = schema_id;
}

const char *th_avro_alert_schema_json(const struct th_avro_alert *aa)
{
	return aa->json;
}

/* Filling the record: the first failure sticks, so the encoder reads as a
 * flat list of fields and checks once. */
struct fill {
	const struct th_avro_alert *aa;
	int err;      /* avro-c's errno-style code, or -1 for ours */
	enum fid bad; /* the field that failed */
	const struct extra_field *bad_extra; /* or this one */
	struct th_wbuf fix; /* scratch for a string that is not valid UTF-8 */
};

/* Avro strings are UTF-8 by definition: a strict reader rejects the whole
 * record over one invalid byte, so invalid sequences become U+FFFD. Valid
 * strings (all of them, in practice) are passed through untouched. */
static const char *utf8_text(struct fill *f, const char *s)
{
	size_t n;
	if (!s || th_utf8_valid(s, n = strlen(s)))
		return s;
	th_wbuf_reset(&f->fix);
	th_put_utf8(&f->fix, s, n);
	th_put_u8(&f->fix, '\0');
	return f->fix.oom ? "" : (const char *)f->fix.p;
}

static bool field(struct fill *f, avro_value_t *rec, enum fid id, avro_value_t *out)
{
	if (f->err)
		return false;
	if ((f->err = avro_value_get_by_index(rec, (size_t)f->aa->idx[id], out, NULL))) {
		f->bad = id;
		return false;
	}
	return true;
}

/* For a union field: select null (present=false) or the value branch in @p v. */
static bool branch(struct fill *f, enum fid id, avro_value_t *v, bool present)
{
	avro_value_t b;
	int disc = present ? f->aa->val_branch[id] : f->aa->null_branch[id];
	if ((f->err = avro_value_set_branch(v, disc, &b)) ||
	    (!present && (f->err = avro_value_set_null(&b)))) {
		f->bad = id;
		return false;
	}
	*v = b;
	return present;
}

static void put_str(struct fill *f, avro_value_t *rec, enum fid id, const char *s)
{
	avro_value_t v;
	if (!field(f, rec, id, &v))
		return;
	if (fdesc[id].kind == K_OPT_STR && !branch(f, id, &v, s != NULL))
		return;
	s = utf8_text(f, s);
	if ((f->err = avro_value_set_string(&v, s ? s : "")))
		f->bad = id;
}

static void put_long(struct fill *f, avro_value_t *rec, enum fid id, int64_t n, bool present)
{
	avro_value_t v;
	if (!field(f, rec, id, &v))
		return;
	if (fdesc[id].kind == K_OPT_LONG && !branch(f, id, &v, present))
		return;
	f->err = fdesc[id].kind == K_INT && !f->aa->widened[id] ? avro_value_set_int(&v, (int32_t)n)
								: avro_value_set_long(&v, n);
	if (f->err)
		f->bad = id;
}

/* @p n items, or up to a NULL when n < 0. */
static void put_strs(struct fill *f, avro_value_t *rec, enum fid id, const char *const *s, int n)
{
	avro_value_t v, item;
	if (!field(f, rec, id, &v))
		return;
	for (int i = 0; s && (n < 0 ? s[i] != NULL : i < n); i++) {
		if ((f->err = avro_value_append(&v, &item, NULL)) ||
		    (f->err = avro_value_set_string(&item, s[i] ? utf8_text(f, s[i]) : ""))) {
			f->bad = id;
			return;
		}
	}
}

static void put_severity(struct fill *f, avro_value_t *rec, const char *sev)
{
	avro_value_t v;
	if (!field(f, rec, F_SEVERITY, &v))
		return;
	for (size_t i = 0; sev && i < TH_ARRAY_SIZE(sev_names); i++) {
		if (strcmp(sev, sev_names[i]) == 0) {
			if ((f->err = avro_value_set_enum(&v, f->aa->sev[i])))
				f->bad = F_SEVERITY;
			return;
		}
	}
	f->err = -1;
	f->bad = F_SEVERITY;
}

static void fill(struct fill *f, avro_value_t *rec, const struct th_alert *a)
{
	avro_value_t h, in;

	put_str(f, rec, F_ALERT_ID, a->alert_id);
	put_str(f, rec, F_ALERT_NAME, a->alert_name);
	put_long(f, rec, F_VARIATION, a->variation, true);
	put_severity(f, rec, a->severity);
	put_str(f, rec, F_DESCRIPTION, a->description);
	put_str(f, rec, F_TACTIC, a->tactic);
	put_str(f, rec, F_ACCOUNT_ID, a->account_id);
	put_str(f, rec, F_REGION, a->region);
	put_str(f, rec, F_ROLE_ARN, a->role_arn);
	put_str(f, rec, F_FUNCTION_NAME, a->function_name);
	put_str(f, rec, F_SESSION_NAME, a->session_name);
	put_str(f, rec, F_ACCESS_KEY_ID, a->access_key_id);
	put_str(f, rec, F_EVENT_ID, a->event_id);
	put_str(f, rec, F_EVENT_NAME, a->event_name);
	put_str(f, rec, F_EVENT_SOURCE, a->event_source);
	put_long(f, rec, F_EVENT_TIME, a->event_time_ms, true);
	put_str(f, rec, F_SOURCE_IP, a->source_ip);
	put_str(f, rec, F_NETWORK, a->network);
	put_long(f, rec, F_ASN, a->asn, true);
	put_str(f, rec, F_AS_ORG, a->as_org);
	put_str(f, rec, F_SOURCE_AWS_REGION, a->source_aws_region);
	put_str(f, rec, F_USER_AGENT, a->user_agent);
	put_str(f, rec, F_VPCE_ID, a->vpc_endpoint_id);
	put_str(f, rec, F_VPCE_ACCOUNT_ID, a->vpc_endpoint_account_id);
	put_strs(f, rec, F_EVIDENCE, a->evidence, a->n_evidence);
	if (field(f, rec, F_HISTORY, &h)) {
		put_str(f, &h, H_ORIGIN, a->history.origin);
		/* 0 means "not known", as in the JSON rendering. */
		put_long(f, &h, H_ISSUED_AT, a->history.issued_ms, a->history.issued_ms > 0);
		put_long(f, &h, H_FIRST_SEEN, a->history.first_seen_ms, true);
		put_long(f, &h, H_LAST_SEEN, a->history.last_seen_ms, true);
		put_long(f, &h, H_INSIDE_COUNT, a->history.inside_count, true);
		put_long(f, &h, H_OUTSIDE_COUNT, a->history.outside_count, true);
		put_long(f, &h, H_DISTINCT_IPS, a->history.distinct_ips, true);
		put_strs(f, &h, H_API_CALLS, a->history.api_calls, a->history.n_calls);
	}
	put_strs(f, rec, F_ACTIONS, a->actions, -1);
	put_str(f, rec, F_UPGRADE_OF, a->upgrade_of);
	if (field(f, rec, F_INPUT, &in)) {
		put_str(f, &in, I_TOPIC, a->input.topic);
		put_long(f, &in, I_PARTITION, a->input.partition, true);
		put_long(f, &in, I_OFFSET, a->input.offset, true);
	}
	for (int i = 0; i < f->aa->nextra && !f->err; i++) {
		const struct extra_field *x = &f->aa->extra[i];
		avro_value_t *r = x->parent < 0 ? rec : x->parent == F_HISTORY ? &h : &in, v, b;
		if ((f->err = avro_value_get_by_index(r, (size_t)x->idx, &v, NULL)) ||
		    (f->err = avro_value_set_branch(&v, x->null_branch, &b)) ||
		    (f->err = avro_value_set_null(&b)))
			f->bad_extra = x;
	}
}

int th_avro_alert_encode(struct th_avro_alert *aa, const struct th_alert *a, struct th_wbuf *w)
{
	struct fill f = {.aa = aa};
	size_t need = 0;
	int rc;

	th_wbuf_reset(w);
	/* Reset empties the arrays; everything else is overwritten below. */
	avro_value_reset(&aa->rec);
	fill(&f, &aa->rec, a);
	th_wbuf_free(&f.fix);
	if (f.err) {
		if (f.err < 0)
			th_log_err("avro", "alert %s: severity \"%s\" is not in the Severity enum",
				   a->alert_id, a->severity ? a->severity : "(null)");
		else
			th_log_err("avro", "alert %s: field %s: %s", a->alert_id,
				   f.bad_extra ? f.bad_extra->name : fdesc[f.bad].name,
				   avro_strerror());
		return TH_EAVRO;
	}
	avro_writer_memory_set_dest(aa->wr, aa->buf, (int64_t)aa->cap);
	rc = avro_value_write(aa->wr, &aa->rec);
	if (rc == ENOSPC) {
		/* Rare (a huge user agent or evidence); size exactly, once. */
		if (avro_value_sizeof(&aa->rec, &need)) {
			th_log_err("avro", "alert %s: sizeof: %s", a->alert_id, avro_strerror());
			return TH_EAVRO;
		}
		char *nb = realloc(aa->buf, need);
		if (!nb)
			return TH_ENOMEM;
		aa->buf = nb;
		aa->cap = need;
		avro_writer_memory_set_dest(aa->wr, aa->buf, (int64_t)aa->cap);
		rc = avro_value_write(aa->wr, &aa->rec);
	}
	if (rc) {
		th_log_err("avro", "alert %s: write: %s", a->alert_id, avro_strerror());
		return TH_EAVRO;
	}
	uint32_t id = (uint32_t)aa->schema_id;
	uint8_t hdr[TH_AVRO_HEADER_LEN] = {0x00, (uint8_t)(id >> 24), (uint8_t)(id >> 16),
					   (uint8_t)(id >> 8), (uint8_t)id};
	th_put_bytes(w, hdr, sizeof(hdr));
	th_put_bytes(w, aa->buf, (size_t)avro_writer_tell(aa->wr));
	return w->oom ? TH_ENOMEM : 0;
}

/*
 * Oracles and scratch space shared by the fuzz targets (fuzz_common.h).
 */
#include "fuzz_common.h"

#include <avro.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "trailhound/avro_alert.h"

void fuzz_fail(const char *fmt, ...)
{
	va_list ap;
	fputs("fuzz oracle: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

bool fuzz_utf8_valid(const void *s, size_t n)
{
	const unsigned char *p = s, *end = p + n;
	while (p < end) {
		unsigned c = *p++;
		size_t more;
		uint32_t cp, min;
		if (c < 0x80)
			continue;
		if (c >= 0xc2 && c <= 0xdf) {
			more = 1, cp = c & 0x1f, min = 0x80;
		} else if (c >= 0xe0 && c <= 0xef) {
			more = 2, cp = c & 0x0f, min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			more = 3, cp = c & 0x07, min = 0x10000;
		} else {
			return false;
		}
		if ((size_t)(end - p) < more)
			return false;
		for (size_t i = 0; i < more; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i] & 0x3f);
		}
		p += more;
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
	}
	return true;
}

/* ---- Avro: decode what the encoder wrote and compare it with the alert ---- */

static struct {
	char path[1024];
	avro_schema_t schema;
	avro_value_iface_t *iface;
	avro_value_t rec;
	bool ready;
} dec;

void fuzz_avro_check_free(void)
{
	if (!dec.ready)
		return;
	avro_value_decref(&dec.rec);
	avro_value_iface_decref(dec.iface);
	avro_schema_decref(dec.schema);
	dec.ready = false;
}

static void dec_init(const char *schema_path)
{
	if (dec.ready && strcmp(dec.path, schema_path) == 0)
		return;
	fuzz_avro_check_free();
	FILE *f = fopen(schema_path, "rb");
	if (!f)
		fuzz_fail("cannot open schema %s", schema_path);
	static char json[1 << 16];
	size_t n = fread(json, 1, sizeof(json) - 1, f);
	fclose(f);
	json[n] = '\0';
	if (avro_schema_from_json_length(json, n, &dec.schema) ||
	    !(dec.iface = avro_generic_class_from_schema(dec.schema)) ||
	    avro_generic_value_new(dec.iface, &dec.rec))
		fuzz_fail("schema %s: %s", schema_path, avro_strerror());
	snprintf(dec.path, sizeof(dec.path), "%s", schema_path);
	dec.ready = true;
}

static avro_value_t get(avro_value_t *rec, const char *name)
{
	avro_value_t v;
	if (avro_value_get_by_name(rec, name, &v, NULL))
		fuzz_fail("avro: no field %s in the decoded alert", name);
	return v;
}

/* Step into a ["null", T] union; false when the null branch is set. */
static bool unwrap(avro_value_t *v)
{
	if (avro_value_get_type(v) != AVRO_UNION)
		return true;
	avro_value_t b;
	if (avro_value_get_current_branch(v, &b))
		fuzz_fail("avro: union without a branch");
	if (avro_value_get_type(&b) == AVRO_NULL)
		return false;
	*v = b;
	return true;
}

static void same_str(const char *name, avro_value_t v, const char *want)
{
	const char *got;
	size_t size;
	if (!unwrap(&v)) {
		if (want)
			fuzz_fail("avro: %s is null, expected \"%s\"", name, want);
		return;
	}
	if (avro_value_get_string(&v, &got, &size))
		fuzz_fail("avro: %s is not a string", name);
	/* avro-c's size counts the NUL it appends */
	size_t glen = size ? size - 1 : 0, wlen = want ? strlen(want) : 0;
	/* Avro strings are UTF-8: the encoder repairs what is not (alert.h), so
	 * only valid text must come back byte for byte, and anything valid. */
	if (!fuzz_utf8_valid(got, glen))
		fuzz_fail("avro: %s decoded as invalid UTF-8 (%zu bytes)", name, glen);
	if (want && !fuzz_utf8_valid(want, wlen))
		return;
	if (glen != wlen || memcmp(got, want ? want : "", wlen) != 0)
		fuzz_fail("avro: %s decoded as %zu bytes \"%.*s\", written %zu bytes \"%s\"", name,
			  glen, (int)glen, got, wlen, want ? want : "(null)");
}

static void same_long(const char *name, avro_value_t v, int64_t want, bool present)
{
	if (!unwrap(&v)) {
		if (present)
			fuzz_fail("avro: %s is null, expected %lld", name, (long long)want);
		return;
	}
	int64_t got;
	if (avro_value_get_type(&v) == AVRO_INT32) {
		int32_t i = 0;
		if (avro_value_get_int(&v, &i))
			fuzz_fail("avro: %s is not an int", name);
		got = i;
	} else if (avro_value_get_long(&v, &got)) {
		fuzz_fail("avro: %s is not a number", name);
	}
	if (got != want)
		fuzz_fail("avro: %s decoded as %lld, written %lld", name, (long long)got,
			  (long long)want);
}

static void same_strs(const char *name, avro_value_t v, const char *const *s, int n)
{
	size_t count, want = 0;
	while (s && (n < 0 ? s[want] != NULL : (int)want < n))
		want++;
	if (avro_value_get_size(&v, &count) || count != want)
		fuzz_fail("avro: %s has %zu items, written %zu", name, count, want);
	for (size_t i = 0; i < count; i++) {
		avro_value_t item;
		if (avro_value_get_by_index(&v, i, &item, NULL))
			fuzz_fail("avro: %s[%zu] missing", name, i);
		same_str(name, item, s[i] ? s[i] : "");
	}
}

void fuzz_avro_check(const char *schema_path, const struct th_alert *a, const uint8_t *msg,
		     size_t len, int32_t schema_id)
{
	dec_init(schema_path);
	if (len < TH_AVRO_HEADER_LEN || msg[0] != 0)
		fuzz_fail("avro: message of %zu bytes lacks the Confluent header", len);
	uint32_t id = (uint32_t)msg[1] << 24 | (uint32_t)msg[2] << 16 | (uint32_t)msg[3] << 8 |
		      msg[4];
	if ((int32_t)id != schema_id)
		fuzz_fail("avro: schema id %u, expected %d", id, schema_id);
	avro_value_reset(&dec.rec);
	avro_reader_t r = avro_reader_memory((const char *)msg + TH_AVRO_HEADER_LEN,
					     (int64_t)(len - TH_AVRO_HEADER_LEN));
	if (!r)
		fuzz_fail("avro: out of memory");
	if (avro_value_read(r, &dec.rec))
		fuzz_fail("avro: the encoded alert does not decode: %s", avro_strerror());
	avro_reader_free(r);

	avro_value_t *rec = &dec.rec, h, in;
	same_str("alert_id", get(rec, "alert_id"), a->alert_id);
	same_str("alert_name", get(rec, "alert_name"), a->alert_name ? a->alert_name : "");
	same_long("variation", get(rec, "variation"), a->variation, true);
	same_str("description", get(rec, "description"), a->description ? a->description : "");
	same_str("tactic", get(rec, "tactic"), a->tactic ? a->tactic : "");
	same_str("account_id", get(rec, "account_id"), a->account_id ? a->account_id : "");
	same_str("region", get(rec, "region"), a->region);
	same_str("role_arn", get(rec, "role_arn"), a->role_arn ? a->role_arn : "");
	same_str("function_name", get(rec, "function_name"), a->function_name);
	same_str("session_name", get(rec, "session_name"), a->session_name);
	same_str("access_key_id", get(rec, "access_key_id"),
		 a->access_key_id ? a->access_key_id : "");
	same_str("event_id", get(rec, "event_id"), a->event_id ? a->event_id : "");
	same_str("event_name", get(rec, "event_name"), a->event_name ? a->event_name : "");
	same_str("event_source", get(rec, "event_source"), a->event_source ? a->event_source : "");
	same_long("event_time", get(rec, "event_time"), a->event_time_ms, true);
	same_str("source_ip", get(rec, "source_ip"), a->source_ip ? a->source_ip : "");
	same_str("network", get(rec, "network"), a->network ? a->network : "");
	same_long("asn", get(rec, "asn"), a->asn, true);
	same_str("as_org", get(rec, "as_org"), a->as_org);
	same_str("source_aws_region", get(rec, "source_aws_region"), a->source_aws_region);
	same_str("user_agent", get(rec, "user_agent"), a->user_agent);
	same_str("vpc_endpoint_id", get(rec, "vpc_endpoint_id"), a->vpc_endpoint_id);
	same_str("vpc_endpoint_account_id", get(rec, "vpc_endpoint_account_id"),
		 a->vpc_endpoint_account_id);
	same_strs("evidence", get(rec, "evidence"), a->evidence, a->n_evidence);
	h = get(rec, "history");
	same_str("history.origin", get(&h, "origin"), a->history.origin ? a->history.origin : "");
	same_long("history.issued_at", get(&h, "issued_at"), a->history.issued_ms,
		  a->history.issued_ms > 0);
	same_long("history.first_seen", get(&h, "first_seen"), a->history.first_seen_ms, true);
	same_long("history.last_seen", get(&h, "last_seen"), a->history.last_seen_ms, true);
	same_long("history.inside_count", get(&h, "inside_count"), a->history.inside_count, true);
	same_long("history.outside_count", get(&h, "outside_count"), a->history.outside_count,
		  true);
	same_long("history.distinct_ips", get(&h, "distinct_ips"), a->history.distinct_ips, true);
	same_strs("history.api_calls", get(&h, "api_calls"), a->history.api_calls,
		  a->history.n_calls);
	same_strs("investigative_actions", get(rec, "investigative_actions"), a->actions, -1);
	same_str("upgrade_of", get(rec, "upgrade_of"), a->upgrade_of);
	in = get(rec, "input");
	same_str("input.topic", get(&in, "topic"), a->input.topic ? a->input.topic : "");
	same_long("input.partition", get(&in, "partition"), a->input.partition, true);
	same_long("input.offset", get(&in, "offset"), a->input.offset, true);
}

/* ---- scratch space ---- */

static char scratch[8][512];
static int n_scratch;

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void rm_scratch(void)
{
	for (int i = 0; i < n_scratch; i++)
		nftw(scratch[i], rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* A run that crashed (abort, ASan) never reaches atexit: remove the scratch
 * directories of processes that are gone, so a long campaign with
 * -fork/-ignore_crashes does not fill tmpfs. */
static void rm_stale(const char *base)
{
	DIR *d = opendir(base);
	struct dirent *de;
	if (!d)
		return;
	while ((de = readdir(d)) != NULL) {
		char path[1024];
		long pid;
		if (strncmp(de->d_name, "th-fuzz-", 8) != 0 ||
		    sscanf(de->d_name + 8, "%*[^-]-%ld-", &pid) != 1 || pid <= 0 ||
		    kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		snprintf(path, sizeof(path), "%s/%s", base, de->d_name);
		nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	}
	closedir(d);
}

const char *fuzz_scratch_dir(const char *tag)
{
	struct stat st;
	const char *tmp = getenv("TMPDIR");
	const char *base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) &&
					   access("/dev/shm", W_OK) == 0
				   ? "/dev/shm"
				   : (tmp && *tmp ? tmp : "/tmp");
	if (n_scratch == (int)(sizeof(scratch) / sizeof(scratch[0])))
		return NULL;
	if (n_scratch == 0)
		rm_stale(base);
	char *dir = scratch[n_scratch];
	snprintf(dir, sizeof(scratch[0]), "%s/th-fuzz-%s-%ld-XXXXXX", base, tag, (long)getpid());
	if (!mkdtemp(dir))
		return NULL;
	if (n_scratch++ == 0)
		atexit(rm_scratch);
	return dir;
}

const char *fuzz_shared_data(void)
{
	struct stat st;
	const char *env = getenv("TH_SHARED_DATA");
#ifdef TH_SHARED_DATA
	const char *def = TH_SHARED_DATA;
#else
	const char *def = NULL;
#endif
	const char *dir = env && *env ? env : def;
	return dir && stat(dir, &st) == 0 && S_ISDIR(st.st_mode) ? dir : NULL;
}

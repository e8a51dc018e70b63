/*
 * The configuration table (config.h): every setting once, with type,
 * default, bounds and description. Adding a setting = one row here and one
 * field in struct th_config.
 */
#include "trailhound/config.h"
#include "trailhound/log.h"

#include <ctype.h>
#include <stdbool.h>
#include <strings.h>
#include <sys/stat.h>
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum conf_type {
	T_DAYS,   /* int64 ms, given in days */
	T_HOURS,  /* int64 ms, given in hours */
	T_DURATION, /* int64 ms, given as <n>[ms|s|m|h|d]; a bare number is seconds */
	T_LONG,   /* long */
	T_STR,    /* char * */
	T_TOPICS, /* char *[] + count */
	T_UALIST, /* user-agent list in detect conf */
	T_ASNS,   /* trusted ASN list */
};

struct conf_item {
	const char *name;
	enum conf_type type;
	const char *def;
	long min, max;
	size_t off;
	const char *desc;
};

/* What a few settings have beyond a row of the table. */
struct conf_extra {
	const char *name;
	/* T_STR only: the accepted values, comma-separated (NULL = any) */
	const char *choices;
	/* the example config's value when it differs from the default (NULL = def) */
	const char *example;
	/* a comment for the example config only, after the description */
	const char *example_note;
};

#define D(f) offsetof(struct th_config, detect.f)
#define C(f) offsetof(struct th_config, f)

static const struct conf_item items[] = {
	/* detection */
	{"activation_days", T_DAYS, "14", 0, 3650, D(activation_ms),
	 "no alert for an account until its first event is this old (event time)"},
	{"training_days", T_DAYS, "30", 1, 3650, D(training_ms),
	 "sliding window of the baselines (account ASNs, role identities and ASNs)"},
	{"dedup_days", T_DAYS, "7", 0, 3650, D(dedup_ms),
	 "at most one alert per (variation, account, role, function/session, ASN) per period"},
	{"role_retention_days", T_DAYS, "365", 0, 3650, D(role_retention_ms),
	 "forget a learned Lambda role not seen for this long, or for training_days or 30 days if "
	 "longer (event time; 0 = never)"},
	{"hold_hours", T_HOURS, "12", 1, 48, D(hold_ms),
	 "how long a remote use of a not-yet-known key is held for late attribution"},
	{"cli_user_agents", T_UALIST, "aws-cli/,^AWSPowerShell,aws-shell,s3cmd", 0, 0,
	 D(cli_user_agents),
	 "user-agent families of command-line tools (variation 2); ^ anchors at the start"},
	{"lambda_user_agents", T_UALIST, "exec-env/AWS_Lambda,awslambda-worker/,aws-internal/", 0, 0,
	 D(lambda_user_agents),
	 "user-agent markers of Lambda's runtime and AWS-internal callers (variation 1)"},
	{"amazon_asns", T_ASNS, "", 0, 0, C(amazon_asns),
	 "ASNs that mark AWS addresses when aws_ranges is not set; empty = the built-in table"},
	{"trusted_asns", T_ASNS, "", 0, 0, D(trusted_asns),
	 "ASNs treated as known (e.g. VPN / Direct Connect egress): variation 3 instead of 4"},
	/* max is in seconds: a week is far more than any clock is off by */
	{"max_future_skew", T_DURATION, "1h", 0, 7 * 86400, C(max_future_skew_ms),
	 "reject events whose eventTime is this far ahead of the wall clock, or of the "
	 "delivery time in their S3 log file's name (5m, 1h, ...; 0 = no limit); events "
	 "before 2013-11-01 are always rejected"},
	/* reference data */
	{"asn_db", T_STR, "", 0, 0, C(asn_db), "ASN database (.mmdb, GeoLite2-ASN schema)"},
	{"aws_ranges", T_STR, "", 0, 0, C(aws_ranges),
	 "AWS ip-ranges.json; empty = recognise AWS addresses by Amazon's ASNs"},
	{"reference_check_s", T_LONG, "60", 0, 86400, C(reference_check_s),
	 "run: look this often whether asn_db or aws_ranges was replaced, and load it again "
	 "between transactions (0 = only at start)"},
	/* the Kafka worker */
	{"brokers", T_STR, "127.0.0.1:19092", 0, 0, C(brokers), "bootstrap servers"},
	{"group_id", T_STR, "trailhound", 0, 0, C(group_id), "consumer group of the workers"},
	{"input_topics", T_TOPICS, "cloudtrail", 0, 0, C(input_topics),
	 "CloudTrail topics, partitioned by account ID"},
	{"output_topic", T_STR, "trailhound.alerts", 0, 0, C(output_topic),
	 "Avro alerts (Confluent wire format), keyed by account ID"},
	{"changelog_topic", T_STR, "trailhound.state-changelog", 0, 0, C(changelog_topic),
	 "compacted changelog of the per-partition state (as many partitions as the input)"},
	{"dead_letter_topic", T_STR, "trailhound.dead-letter", 0, 0, C(dead_letter_topic),
	 "rejected records: original bytes + reason headers"},
	{"transactional_id", T_STR, "", 0, 0, C(transactional_id),
	 "stable per worker (e.g. the pod name); default trailhound-<hostname>"},
	{"state_dir", T_STR, "/var/lib/trailhound", 0, 0, C(state_dir),
	 "one LMDB environment per input partition below this directory"},
	{"batch_size", T_LONG, "100000", 1, 1000000, C(batch_size),
	 "commit the transaction after at most this many messages (a cap: normally "
	 "commit_interval_ms decides; small values cost a commit's round trips per batch)"},
	{"commit_interval_ms", T_LONG, "100", 1, 600000, C(commit_interval_ms),
	 "commit the transaction this long after its first message (the alert latency)"},
	{"commit_max_changes", T_LONG, "8192", 64, 10000000, C(commit_max_changes),
	 "commit earlier once this many state records changed (all partitions): LMDB keeps a "
	 "copy of every page a transaction writes, so a burst of new keys would otherwise "
	 "hold ~4 KB per key until the commit (a restore is not bound by it: it writes in key "
	 "order, in transactions of 4 MB)"},
	{"record_max", T_LONG, "1048576", 1024, 104857600, C(record_max),
	 "largest accepted record (bytes); larger ones go to the dead-letter topic"},
	{"schema_id", T_LONG, "0", 0, 2147483647, C(schema_id),
	 "schema id of alert.avsc in the wire format; 0 = register with schema_registry_url"},
	{"schema_registry_url", T_STR, "", 0, 0, C(schema_registry_url),
	 "Confluent-compatible Schema Registry used when schema_id is 0"},
	{"alert_schema", T_STR, "", 0, 0, C(alert_schema),
	 "the alert's Avro schema (.avsc); empty = the schemas/alert.avsc this build ships"},
	{"restore_timeout_ms", T_LONG, "300000", 1000, 86400000, C(restore_timeout_ms),
	 "longest time to restore one partition's state from its changelog"},
	/* the S3-to-Kafka bridge */
	{"aws_region", T_STR, "us-east-1", 0, 0, C(aws_region),
	 "bridge: region of the queue and the bucket (SigV4 signs with it)"},
	{"aws_endpoint", T_STR, "", 0, 0, C(aws_endpoint),
	 "bridge: one endpoint for S3, SQS and STS (S3-compatible stores, tests; path-style "
	 "S3 addressing); empty = AWS's own"},
	{"bridge_queue_url", T_STR, "", 0, 0, C(bridge_queue_url),
	 "bridge: the SQS queue receiving the S3 (or CloudTrail SNS) notifications"},
	{"bridge_ledger_topic", T_STR, "trailhound.bridge-ledger", 0, 0, C(bridge_ledger_topic),
	 "bridge: compacted topic of the files already published (one marker per file)"},
	{"bridge_transactional_id", T_STR, "", 0, 0, C(bridge_transactional_id),
	 "bridge: stable per bridge instance; default trailhound-bridge-<hostname>"},
	{"bridge_max_receives", T_LONG, "5", 1, 1000, C(bridge_max_receives),
	 "bridge: a file that cannot be read is dead-lettered after this many receives"},
	{"bridge_object_max_mb", T_LONG, "1024", 1, 65536, C(bridge_object_max_mb),
	 "bridge: largest log file fetched, compressed and again decompressed (MiB)"},
	{"bridge_visibility_s", T_LONG, "120", 1, 43200, C(bridge_visibility_s),
	 "bridge: SQS visibility timeout kept ahead of a file in flight (seconds)"},
	/* a marker is needed while SQS can deliver its file again (a queue keeps
	 * a message 14 days at most); max in seconds: ten years */
	{"bridge_ledger_retention", T_DURATION, "30d", 0, 3650L * 86400,
	 C(bridge_ledger_retention_ms),
	 "bridge: ledger markers of files delivered longer ago are not loaded (the live "
	 "bridge; a backfill reads those of its period); 0 = all"},
	/* operations; max in seconds: an hour */
	{"stop_timeout", T_DURATION, "60s", 0, 3600, C(stop_timeout_ms),
	 "run and bridge: after SIGTERM/SIGINT, end within this long even when a broker call "
	 "has not returned (exit 5, no clean close: the open transaction is aborted, nothing "
	 "committed is lost); keep it below the supervisor's grace period (manifests: 90 s); "
	 "0 = no limit"},
	{"metrics_listen", T_STR, "", 0, 0, C(metrics_listen),
	 "serve Prometheus /metrics, /healthz and /readyz on this address:port (e.g. "
	 "127.0.0.1:9464, 0.0.0.0:9464); empty = off"},
	{"log_level", T_STR, "info", 0, 0, C(log_level), "error, warn, info or debug (-v: debug)"},
	{"log_format", T_STR, "text", 0, 0, C(log_format),
	 "text, or json: one JSON object per line (ts, level, msg, fields) for log shippers"},
};

static const struct conf_extra extras[] = {
	{"schema_id", NULL, "1",
	 "1 lets this file start against a local broker without a registry (as scripts/demo.sh "
	 "does); with a Schema Registry set 0 and schema_registry_url"},
	{"log_level", "error,warn,info,debug", NULL, NULL},
	{"log_format", "text,json", NULL, NULL},
};

static const struct conf_extra *extra_of(const char *name)
{
	for (size_t i = 0; i < TH_ARRAY_SIZE(extras); i++)
		if (strcmp(extras[i].name, name) == 0)
			return &extras[i];
	return NULL;
}

#undef D
#undef C

/* The string settings whose empty value is one the description gives a
 * meaning ("empty = off", "= the default"); every other one needs a value. */
static bool empty_means_something(const char *name)
{
	for (size_t i = 0; i < TH_ARRAY_SIZE(items); i++)
		if (strcmp(items[i].name, name) == 0)
			return !*items[i].def;
	return false;
}

static const struct conf_item *find(const char *name)
{
	for (size_t i = 0; i < TH_ARRAY_SIZE(items); i++)
		if (strcmp(items[i].name, name) == 0)
			return &items[i];
	return NULL;
}

static char *own(struct th_config *cf, const char *s, size_t n)
{
	if (cf->n_owned >= (int)TH_ARRAY_SIZE(cf->owned))
		return NULL;
	char *p = malloc(n + 1);
	if (!p)
		return NULL;
	memcpy(p, s, n);
	p[n] = '\0';
	cf->owned[cf->n_owned++] = p;
	return p;
}

/* Split a comma list; calls fn(item, len) for each trimmed non-empty item. */
static int each_item(const char *v, int (*fn)(void *, const char *, size_t), void *ctx)
{
	while (*v) {
		const char *e = strchr(v, ',');
		size_t n = e ? (size_t)(e - v) : strlen(v);
		const char *s = v;
		size_t m = n;
		while (m && isspace((unsigned char)*s))
			s++, m--;
		while (m && isspace((unsigned char)s[m - 1]))
			m--;
		if (m) {
			int rc = fn(ctx, s, m);
			if (rc)
				return rc;
		}
		v += n + (e ? 1 : 0);
	}
	return 0;
}

struct list_ctx {
	struct th_config *cf;
	const struct conf_item *it;
};

static int add_ua(void *ctx, const char *s, size_t n)
{
	struct list_ctx *lc = ctx;
	const char **arr = (const char **)((char *)lc->cf + lc->it->off);
	int *count = lc->it->off == offsetof(struct th_config, detect.cli_user_agents)
			     ? &lc->cf->detect.n_cli_user_agents
			     : &lc->cf->detect.n_lambda_user_agents;
	if (*count >= TH_MAX_LIST)
		return TH_ECONFIG;
	char *p = own(lc->cf, s, n);
	if (!p)
		return TH_ENOMEM;
	arr[(*count)++] = p;
	return 0;
}

static int add_asn(void *ctx, const char *s, size_t n)
{
	struct list_ctx *lc = ctx;
	char buf[24], *end;
	bool amazon = lc->it->off == offsetof(struct th_config, amazon_asns);
	uint32_t *arr = amazon ? lc->cf->amazon_asns : lc->cf->detect.trusted_asns;
	int *count = amazon ? &lc->cf->n_amazon_asns : &lc->cf->detect.n_trusted_asns;
	int cap = amazon ? (int)TH_ARRAY_SIZE(lc->cf->amazon_asns)
			 : (int)TH_ARRAY_SIZE(lc->cf->detect.trusted_asns);
	if (n >= sizeof(buf))
		return TH_ECONFIG;
	memcpy(buf, s, n);
	buf[n] = '\0';
	const char *p = buf;
	if (strncasecmp(p, "AS", 2) == 0)
		p += 2;
	errno = 0;
	unsigned long v = strtoul(p, &end, 10);
	if (errno || *end || !*p || v == 0 || v > 4294967295UL || *count >= cap)
		return TH_ECONFIG;
	arr[(*count)++] = (uint32_t)v;
	return 0;
}

/* A name Kafka accepts for a topic: 1 to 249 of [a-zA-Z0-9._-], not "." or
 * "..". Anything else (a TOML array '["a", "b"]' split into '["a"' and
 * '"b"]') names a topic that can never exist: the worker subscribed to it
 * and sat idle. */
static bool topic_name_ok(const char *s, size_t n)
{
	if (n == 0 || n > 249 || (n <= 2 && strspn(s, ".") >= n))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
			return false;
	return true;
}

static int add_topic(void *ctx, const char *s, size_t n)
{
	struct list_ctx *lc = ctx;
	if (!topic_name_ok(s, n))
		return TH_EINVAL;
	if (lc->cf->n_input_topics >= TH_CONF_MAX_TOPICS)
		return TH_ECONFIG;
	char *p = malloc(n + 1);
	if (!p)
		return TH_ENOMEM;
	memcpy(p, s, n);
	p[n] = '\0';
	lc->cf->input_topics[lc->cf->n_input_topics++] = p;
	return 0;
}

/* Whether value is one of the comma-separated choices. */
static bool in_choices(const char *choices, const char *value)
{
	size_t n = strlen(value);
	for (const char *c = choices; *c;) {
		const char *e = strchr(c, ',');
		size_t m = e ? (size_t)(e - c) : strlen(c);
		if (m == n && strncmp(c, value, n) == 0)
			return true;
		c += m + (e ? 1 : 0);
	}
	return false;
}

static int set_item(struct th_config *cf, const struct conf_item *it, const char *value,
		    char *errstr, size_t errstr_size)
{
	char *base = (char *)cf;
	struct list_ctx lc = {cf, it};
	char *end;
	long v;
	int rc;

	switch (it->type) {
	case T_DAYS:
	case T_HOURS:
	case T_LONG:
		errno = 0;
		v = strtol(value, &end, 10);
		if (errno || end == value || *end) {
			snprintf(errstr, errstr_size, "%s: \"%s\" is not an integer", it->name, value);
			return TH_ECONFIG;
		}
		if (v < it->min || v > it->max) {
			snprintf(errstr, errstr_size, "%s: %ld is outside [%ld, %ld]", it->name, v,
				 it->min, it->max);
			return TH_ECONFIG;
		}
		if (it->type == T_LONG)
			*(long *)(base + it->off) = v;
		else
			*(int64_t *)(base + it->off) =
				(int64_t)v * (it->type == T_DAYS ? TH_DAY_MS : 3600LL * 1000);
		return 0;
	case T_DURATION: {
		/* strtoll would take "-5", " 5" and "5x"; accept digits and one unit */
		static const struct {
			const char *unit;
			int64_t ms;
		} units[] = {{"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000},
			     {"d", 86400000}};
		const char *q = value;
		uint64_t n = 0;
		size_t u;
		/* every digit is read (a long number is over the limit, not "not
		 * a duration"); past the limit n only has to stay past it */
		for (; *q >= '0' && *q <= '9'; q++)
			if (n <= (uint64_t)it->max * 1000)
				n = n * 10 + (uint64_t)(*q - '0');
		for (u = 0; u < TH_ARRAY_SIZE(units); u++)
			if (strcmp(q, units[u].unit) == 0)
				break;
		if (q == value || u == TH_ARRAY_SIZE(units)) {
			snprintf(errstr, errstr_size,
				 "%s: \"%s\" is not a duration (a number with ms, s, m, h or d)",
				 it->name, value);
			return TH_ECONFIG;
		}
		/* divided, not multiplied: n × unit can wrap past 2^64 */
		if (n > (uint64_t)it->max * 1000 / (uint64_t)units[u].ms) {
			snprintf(errstr, errstr_size, "%s: \"%s\" is over the %lds limit", it->name,
				 value, it->max);
			return TH_ECONFIG;
		}
		*(int64_t *)(base + it->off) = (int64_t)(n * (uint64_t)units[u].ms);
		return 0;
	}
	case T_STR: {
		char **slot = (char **)(base + it->off);
		const struct conf_extra *ex = extra_of(it->name);
		if (!*value && !empty_means_something(it->name)) {
			/* group_id "" failed at subscribe (exit 5, 'Unknown group');
			 * dead_letter_topic "" looped on the first record to set
			 * aside; an empty TRAILHOUND_* variable is a templating slip */
			snprintf(errstr, errstr_size,
				 "%s: empty (it needs a value; default \"%s\")", it->name, it->def);
			return TH_ECONFIG;
		}
		if (ex && ex->choices && !in_choices(ex->choices, value)) {
			snprintf(errstr, errstr_size, "%s: \"%.100s\" is not one of %s", it->name, value,
				 ex->choices);
			return TH_ECONFIG;
		}
		size_t len = strlen(it->name);
		if (len > 6 && strcmp(it->name + len - 6, "_topic") == 0 &&
		    !topic_name_ok(value, strlen(value))) {
			snprintf(errstr, errstr_size,
				 "%s: \"%.200s\" is no Kafka topic name (letters, digits, '.', "
				 "'_', '-', at most 249)",
				 it->name, value);
			return TH_ECONFIG;
		}
		char *p = strdup(value);
		if (!p)
			return TH_ENOMEM;
		free(*slot);
		*slot = p;
		return 0;
	}
	case T_TOPICS: {
		/* parse into fresh slots; keep the old list if the new one is bad */
		char *old[TH_CONF_MAX_TOPICS];
		int nold = cf->n_input_topics;
		memcpy(old, cf->input_topics, sizeof(old));
		cf->n_input_topics = 0;
		rc = each_item(value, add_topic, &lc);
		if (!rc && cf->n_input_topics == 0) {
			/* a worker with no topic would sit idle forever */
			snprintf(errstr, errstr_size, "%s: no topic given (at least one is required)",
				 it->name);
			cf->n_input_topics = nold;
			memcpy(cf->input_topics, old, sizeof(old));
			return TH_ECONFIG;
		}
		int keep = rc ? nold : 0;
		for (int i = 0; i < (rc ? cf->n_input_topics : nold); i++)
			free(rc ? cf->input_topics[i] : old[i]);
		if (rc) {
			memcpy(cf->input_topics, old, sizeof(old));
			cf->n_input_topics = keep;
		}
		if (rc == TH_EINVAL) {
			snprintf(errstr, errstr_size,
				 "%s: \"%.200s\" holds a name that is no Kafka topic name "
				 "(letters, digits, '.', '_', '-'): write a comma list, e.g. "
				 "\"a,b\"",
				 it->name, value);
			return TH_ECONFIG;
		}
		break;
	}
	case T_UALIST:
	case T_ASNS: {
		struct th_detect_conf saved = cf->detect;
		int saved_amazon = cf->n_amazon_asns;
		uint32_t saved_amazon_asns[TH_ARRAY_SIZE(cf->amazon_asns)];
		memcpy(saved_amazon_asns, cf->amazon_asns, sizeof(saved_amazon_asns));
		if (it->type == T_ASNS && it->off == offsetof(struct th_config, amazon_asns))
			cf->n_amazon_asns = 0;
		else if (it->type == T_ASNS)
			cf->detect.n_trusted_asns = 0;
		else if (it->off == offsetof(struct th_config, detect.cli_user_agents))
			cf->detect.n_cli_user_agents = 0;
		else
			cf->detect.n_lambda_user_agents = 0;
		rc = each_item(value, it->type == T_ASNS ? add_asn : add_ua, &lc);
		if (rc) {
			cf->detect = saved;
			cf->n_amazon_asns = saved_amazon;
			memcpy(cf->amazon_asns, saved_amazon_asns, sizeof(saved_amazon_asns));
		}
		break;
	}
	default:
		rc = TH_ECONFIG;
	}
	if (rc)
		snprintf(errstr, errstr_size, "%s: bad list \"%s\"", it->name, value);
	return rc ? TH_ECONFIG : 0;
}

void th_config_init(struct th_config *cf)
{
	char err[256];
	memset(cf, 0, sizeof(*cf));
	th_detect_conf_defaults(&cf->detect);
	for (size_t i = 0; i < TH_ARRAY_SIZE(items); i++)
		set_item(cf, &items[i], items[i].def, err, sizeof(err));
}

void th_config_free(struct th_config *cf)
{
	for (size_t i = 0; i < TH_ARRAY_SIZE(items); i++)
		if (items[i].type == T_STR) {
			char **slot = (char **)((char *)cf + items[i].off);
			free(*slot);
			*slot = NULL;
		}
	for (int i = 0; i < cf->n_input_topics; i++)
		free(cf->input_topics[i]);
	for (int i = 0; i < cf->n_kafka; i++) {
		free(cf->kafka_keys[i]);
		free(cf->kafka_values[i]);
	}
	for (int i = 0; i < cf->n_owned; i++)
		free(cf->owned[i]);
	cf->n_input_topics = cf->n_kafka = cf->n_owned = 0;
}

/* librdkafka properties a setting of ours decides: the clients set them from
 * that setting after the kafka.* ones, so a kafka.* naming one was silently
 * dropped (kafka.group.id = "staging" put a test pipeline into production's
 * group). NULL if key (after "kafka.") is not one of them. */
static const char *owned_property(const char *key)
{
	static const struct {
		const char *property, *setting;
	} owned[] = {{"group.id", "group_id"},
		     {"transactional.id", "transactional_id (bridge: bridge_transactional_id)"}};
	if (strncmp(key, "consumer.", 9) == 0 || strncmp(key, "producer.", 9) == 0)
		key += 9;
	for (size_t i = 0; i < TH_ARRAY_SIZE(owned); i++)
		if (strcmp(key, owned[i].property) == 0)
			return owned[i].setting;
	return NULL;
}

/* Where a URL's password is (scheme://user:password@host): 0 when it has
 * none, else its length with *start set. */
static size_t url_password(const char *url, const char **start)
{
	const char *s = strstr(url, "://"), *at, *colon, *slash;
	if (!s)
		return 0;
	s += 3;
	at = strchr(s, '@');
	slash = strchr(s, '/');
	if (!at || (slash && slash < at))
		return 0;
	colon = memchr(s, ':', (size_t)(at - s));
	if (!colon || colon + 1 == at)
		return 0;
	*start = colon + 1;
	return (size_t)(at - colon - 1);
}

/* A URL's password masked in place. */
static void mask_url_password(char *url)
{
	const char *p;
	size_t n = url_password(url, &p);
	if (!n)
		return;
	char *w = url + (p - url);
	memmove(w + 3, w + n, strlen(w + n) + 1);
	memcpy(w, "***", 3);
}

int th_config_set(struct th_config *cf, const char *key, const char *value, char *errstr,
		  size_t errstr_size)
{
	if (strncmp(key, "kafka.", 6) == 0 && key[6]) {
		const char *setting = owned_property(key + 6);
		int i;
		if (setting) {
			snprintf(errstr, errstr_size,
				 "%s: trailhound sets it from %s, which would override it; set %s "
				 "instead",
				 key, setting, setting);
			return TH_ECONFIG;
		}
		for (i = 0; i < cf->n_kafka; i++)
			if (strcmp(cf->kafka_keys[i], key + 6) == 0)
				break;
		if (i == TH_CONF_MAX_KAFKA) {
			snprintf(errstr, errstr_size, "too many kafka.* settings");
			return TH_ECONFIG;
		}
		char *v = strdup(value);
		if (!v)
			return TH_ENOMEM;
		if (th_config_is_secret(key)) {
			/* from here on no log line can show it (log.c masks it) */
			th_log_add_secret(value);
			cf->n_secrets++;
		}
		if (i == cf->n_kafka) {
			cf->kafka_keys[i] = strdup(key + 6);
			if (!cf->kafka_keys[i]) {
				free(v);
				return TH_ENOMEM;
			}
			cf->n_kafka++;
		} else {
			free(cf->kafka_values[i]);
		}
		cf->kafka_values[i] = v;
		return 0;
	}
	const struct conf_item *it = find(key);
	const char *pw;
	size_t pwlen;
	int rc;
	if (!it) {
		snprintf(errstr, errstr_size, "unknown setting \"%s\" (see --help-config)", key);
		return TH_ECONFIG;
	}
	if ((rc = set_item(cf, it, value, errstr, errstr_size)))
		return rc;
	if (strcmp(it->name, "schema_registry_url") == 0 &&
	    (pwlen = url_password(value, &pw)) > 0) {
		/* a password in the registry's URL is a secret like the kafka.*
		 * ones: no log line shows it (a libcurl error may quote the URL),
		 * and a file holding it must be private */
		char *secret = strndup(pw, pwlen);
		if (!secret)
			return TH_ENOMEM;
		th_log_add_secret(secret);
		free(secret);
		cf->n_secrets++;
	}
	return 0;
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	char *e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

int th_config_set_kv(struct th_config *cf, const char *kv, char *errstr, size_t errstr_size)
{
	char buf[4096];
	const char *eq = strchr(kv, '=');
	/* These errors never quote the text: a line that is not KEY=VALUE may
	 * still hold a secret (a password written "sasl.password: x" or a value
	 * on a line of its own), and config errors end up in logs. */
	if (strlen(kv) >= sizeof(buf)) {
		snprintf(errstr, errstr_size, "setting longer than %zu bytes", sizeof(buf) - 1);
		return TH_ECONFIG;
	}
	if (!eq) {
		snprintf(errstr, errstr_size,
			 "expected KEY = VALUE, got a line of %zu bytes without '=' (not shown: "
			 "it may hold a secret)",
			 strlen(kv));
		return TH_ECONFIG;
	}
	memcpy(buf, kv, strlen(kv) + 1);
	buf[eq - kv] = '\0';
	char *key = trim(buf), *val = trim(buf + (eq - kv) + 1);
	size_t n = strlen(val);
	if (n >= 2 && ((val[0] == '"' && val[n - 1] == '"') || (val[0] == '\'' && val[n - 1] == '\''))) {
		val[n - 1] = '\0';
		val++;
	}
	return th_config_set(cf, key, val, errstr, errstr_size);
}

/* A comment after a file line's value, "key = "v" # why" or "key = 5 # why",
 * is cut off: left in, it became part of the value (group_id "\"abc\" # why"
 * silently, an integer an error). A quoted value ends at its first closing
 * quote followed by nothing but blanks and a comment; an unquoted one at a
 * '#' after a blank, so "a#b" and URL fragments stay whole. */
static void cut_comment(char *line)
{
	char *eq = strchr(line, '=');
	if (!eq)
		return;
	char *v = eq + 1;
	while (isspace((unsigned char)*v))
		v++;
	if (*v == '"' || *v == '\'') {
		for (char *q = strchr(v + 1, *v); q; q = strchr(q + 1, *v)) {
			char *r = q + 1;
			while (isspace((unsigned char)*r))
				r++;
			if (*r == '#' || !*r) {
				q[1] = '\0';
				return;
			}
		}
		return;
	}
	for (char *h = strchr(v, '#'); h; h = strchr(h + 1, '#'))
		if (h > v && isspace((unsigned char)h[-1])) {
			*h = '\0';
			return;
		}
}

/* The longest config line accepted; longer ones are an error, never split. */
#define TH_CONFIG_LINE_MAX 4095

/* The settings a file has set so far, each with its line. A second line for
 * one is refused: the last one would win silently, and a reader of the file
 * who saw the first would be wrong about what runs. */
struct seen_keys {
	char **keys;
	int *lines;
	int n, cap;
};

/* 0 when the key of line s ("key = value") is new, else the line that set it
 * first; -1 when out of memory. */
static int seen_before(struct seen_keys *sk, const char *s, int lineno)
{
	const char *eq = strchr(s, '=');
	if (!eq)
		return 0; /* th_config_set_kv's error */
	size_t n = (size_t)(eq - s);
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		n--;
	for (int i = 0; i < sk->n; i++)
		if (strlen(sk->keys[i]) == n && memcmp(sk->keys[i], s, n) == 0)
			return sk->lines[i];
	if (sk->n == sk->cap) {
		int cap = sk->cap ? sk->cap * 2 : 32;
		char **k = realloc(sk->keys, (size_t)cap * sizeof(*k));
		if (!k)
			return -1;
		sk->keys = k;
		int *l = realloc(sk->lines, (size_t)cap * sizeof(*l));
		if (!l)
			return -1;
		sk->lines = l;
		sk->cap = cap;
	}
	if (!(sk->keys[sk->n] = strndup(s, n)))
		return -1;
	sk->lines[sk->n++] = lineno;
	return 0;
}

int th_config_load(struct th_config *cf, const char *path, char *errstr, size_t errstr_size)
{
	FILE *f = fopen(path, "r");
	char *line = NULL, err[400];
	size_t cap = 0;
	struct seen_keys sk = {0};
	ssize_t n;
	int lineno = 0, rc = 0, secrets_before = cf->n_secrets;
	struct stat sb;
	if (!f) {
		snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
		return errno == ENOENT ? TH_ENOTFOUND : TH_ECONFIG;
	}
	/* getline reads a whole line, NUL bytes included: a line is judged as
	 * the file holds it, never as the prefix a C string would show (a NUL in
	 * a comment must not end the comment, a long comment's tail must not
	 * come back as a setting). */
	while ((n = getline(&line, &cap, f)) != -1) {
		lineno++;
		if ((size_t)n > TH_CONFIG_LINE_MAX + 1 ||
		    ((size_t)n == TH_CONFIG_LINE_MAX + 1 && line[n - 1] != '\n')) {
			snprintf(errstr, errstr_size, "%s:%d: line longer than %d bytes", path, lineno,
				 TH_CONFIG_LINE_MAX);
			rc = TH_ECONFIG;
			break;
		}
		if (memchr(line, '\0', (size_t)n)) {
			snprintf(errstr, errstr_size, "%s:%d: NUL byte (not a text file)", path, lineno);
			rc = TH_ECONFIG;
			break;
		}
		char *s = line;
		/* a UTF-8 byte order mark (Windows editors) would be part of the
		 * first key: 'unknown setting "brokers"' */
		if (lineno == 1 && strncmp(s, "\xef\xbb\xbf", 3) == 0)
			s += 3;
		s = trim(s);
		if (!*s || *s == '#' || *s == '[')
			continue;
		cut_comment(s);
		int first = seen_before(&sk, s, lineno);
		if (first) {
			if (first < 0) {
				snprintf(errstr, errstr_size, "%s: out of memory", path);
				rc = TH_ENOMEM;
			} else {
				snprintf(errstr, errstr_size,
					 "%s:%d: \"%.*s\" is already set on line %d: a file sets "
					 "each setting once (TRAILHOUND_* variables and --set "
					 "override a file)",
					 path, lineno, (int)strcspn(s, " \t="), s, first);
				rc = TH_ECONFIG;
			}
			break;
		}
		if ((rc = th_config_set_kv(cf, s, err, sizeof(err)))) {
			snprintf(errstr, errstr_size, "%s:%d: %s", path, lineno, err);
			break;
		}
	}
	if (rc == 0 && ferror(f)) {
		snprintf(errstr, errstr_size, "%s: read error: %s", path, strerror(errno));
		rc = TH_ECONFIG;
	}
	/* Like ssh with a private key: a file that holds a password which others
	 * can read is refused, not used (the secret is already out; say so
	 * before it spreads further). Checked on the open file: no race with a
	 * rename. */
	if (rc == 0 && cf->n_secrets > secrets_before && fstat(fileno(f), &sb) == 0 &&
	    (sb.st_mode & (S_IRGRP | S_IROTH | S_IWGRP | S_IWOTH))) {
		snprintf(errstr, errstr_size,
			 "%s: holds secrets (kafka.*password*/secret settings, a password in "
			 "schema_registry_url) but its mode %04o lets "
			 "group or others read or write it: chmod 600 %s (or pass the secrets as "
			 "TRAILHOUND_* environment variables)",
			 path, (unsigned)(sb.st_mode & 07777), path);
		rc = TH_ECONFIG;
	}
	for (int i = 0; i < sk.n; i++)
		free(sk.keys[i]);
	free(sk.keys);
	free(sk.lines);
	free(line);
	fclose(f);
	return rc;
}

void th_config_help(FILE *out)
{
	fprintf(out, "Settings (config file `key = value`, or --set key=value):\n\n");
	for (size_t i = 0; i < TH_ARRAY_SIZE(items); i++)
		fprintf(out, "  %-22s default \"%s\"\n      %s\n", items[i].name, items[i].def,
			items[i].desc);
	fprintf(out, "\n  kafka.<property>       passed verbatim to every librdkafka client (e.g. "
		     "kafka.security.protocol)\n"
		     "  kafka.consumer.<p>     only to the group consumer (e.g. "
		     "kafka.consumer.group.instance.id)\n"
		     "  kafka.producer.<p>     only to the transactional producer\n");
}

/* The value the last of sets ("KEY=VALUE") gives key, or NULL; *len its
 * length without the blanks around it (as th_config_set_kv trims). */
static const char *set_value(char *const *sets, int n_sets, const char *key, int *len)
{
	const char *v = NULL;
	size_t n = strlen(key);
	for (int i = 0; i < n_sets; i++) {
		const char *eq = strchr(sets[i], '=');
		const char *k = sets[i];
		while (isspace((unsigned char)*k))
			k++;
		if (!eq || (size_t)(eq - k) < n || strncmp(k, key, n) != 0)
			continue;
		const char *r = k + n;
		while (r < eq && isspace((unsigned char)*r))
			r++;
		if (r != eq)
			continue;
		for (v = eq + 1; isspace((unsigned char)*v);)
			v++;
	}
	if (v && len) {
		size_t m = strlen(v);
		while (m > 0 && isspace((unsigned char)v[m - 1]))
			m--;
		*len = (int)m;
	}
	return v;
}

/* Check every set as --set does, and that it can be written as a file line
 * that reads back as the same value: one line, no quote of its own. */
static int check_example_sets(char *const *sets, int n_sets, char *errstr, size_t errstr_size)
{
	struct th_config scratch;
	int rc = 0;
	th_config_init(&scratch);
	for (int i = 0; i < n_sets && !rc; i++) {
		char err[400];
		const char *eq = strchr(sets[i], '=');
		for (const char *c = eq ? eq + 1 : ""; *c && !rc; c++)
			if ((unsigned char)*c < 0x20 || *c == 0x7f || *c == '"') {
				snprintf(errstr, errstr_size,
					 "--set %.*s: a value with a control character or a "
					 "double quote cannot be written as a config line",
					 (int)(eq - sets[i]), sets[i]);
				rc = TH_ECONFIG;
			}
		if (!rc && (rc = th_config_set_kv(&scratch, sets[i], err, sizeof(err))))
			snprintf(errstr, errstr_size, "--set: %s", err);
	}
	th_config_free(&scratch);
	return rc;
}

int th_config_example(FILE *out, char *const *sets, int n_sets, char *errstr,
		      size_t errstr_size)
{
	int rc = check_example_sets(sets, n_sets, errstr, errstr_size);
	if (rc)
		return rc;
	fprintf(out, "# trailhound configuration (generated by `trailhound run --example-config`)\n");
	for (size_t i = 0; i < TH_ARRAY_SIZE(items); i++) {
		const struct conf_extra *ex = extra_of(items[i].name);
		fprintf(out, "\n# %s\n", items[i].desc);
		if (ex && ex->example_note)
			fprintf(out, "# %s\n", ex->example_note);
		int len;
		const char *v = set_value(sets, n_sets, items[i].name, &len);
		if (!v) {
			v = ex && ex->example ? ex->example : items[i].def;
			len = (int)strlen(v);
		}
		fprintf(out, "%s = \"%.*s\"\n", items[i].name, len, v);
	}
	fprintf(out, "\n# librdkafka properties pass through with a kafka. prefix (every client),\n"
		     "# kafka.consumer. (the group consumer only) or kafka.producer. (the producer)\n"
		     "# kafka.security.protocol = \"plaintext\"\n"
		     "#\n"
		     "# Static membership (KIP-345): a stable id per worker (e.g. the pod name).\n"
		     "# Gain: a worker restarted within session.timeout.ms takes its partitions back\n"
		     "# without a rebalance, so the others do not stop, and its local state stays\n"
		     "# valid (no restore from the changelog). Cost: a worker that is really gone\n"
		     "# holds its partitions until session.timeout.ms expires (no alerts for them\n"
		     "# meanwhile; raise it and that wait grows), and two workers started with the\n"
		     "# same id fence each other (the older exits 5). Leave it unset for dynamic\n"
		     "# membership: every restart rebalances at once.\n"
		     "# kafka.consumer.group.instance.id = \"worker-1\"\n"
		     "# kafka.consumer.session.timeout.ms = \"45000\"\n"
		     "#\n"
		     "# Secrets (kafka.sasl.password, kafka.ssl.key.password, ...) make this file\n"
		     "# refused unless only its owner can read it (chmod 600); or pass them as\n"
		     "# environment variables: TRAILHOUND_KAFKA__SASL__PASSWORD=...\n");
	/* the kafka.* sets, each key once (its last value), in the order given */
	for (int i = 0; i < n_sets; i++) {
		const char *k = sets[i], *eq = strchr(sets[i], '=');
		while (isspace((unsigned char)*k))
			k++;
		size_t n = (size_t)(eq - k);
		while (n > 0 && isspace((unsigned char)k[n - 1]))
			n--;
		if (strncmp(k, "kafka.", 6) != 0)
			continue;
		char *key = strndup(k, n);
		if (!key)
			return TH_ENOMEM;
		bool first = true;
		for (int j = 0; j < i && first; j++)
			first = set_value(sets + j, 1, key, NULL) == NULL;
		int len;
		const char *v = set_value(sets, n_sets, key, &len);
		if (first)
			fprintf(out, "%s = \"%.*s\"\n", key, len, v);
		free(key);
	}
	return 0;
}

int th_config_open_enrich(struct th_config *cf, struct th_enrich **en, char *errstr,
			  size_t errstr_size)
{
	/* Environment fallbacks keep `scan` short to type in a shell; the
	 * database scripts/build-asn-mmdb.sh caches is the last resort. */
	const char *asn = cf->asn_db && *cf->asn_db ? cf->asn_db : getenv("TH_ASN_DB");
	const char *ranges =
		cf->aws_ranges && *cf->aws_ranges ? cf->aws_ranges : getenv("TH_AWS_RANGES");
	char cached[1024] = "";
	if (!asn || !*asn) {
		const char *cache = getenv("TH_CACHE_DIR"), *home = getenv("HOME");
		if (cache && *cache)
			snprintf(cached, sizeof(cached), "%s/asn/asn.mmdb", cache);
		else if (home && *home)
			snprintf(cached, sizeof(cached), "%s/.cache/trailhound/asn/asn.mmdb", home);
		if (cached[0] && access(cached, R_OK) == 0) {
			asn = cached;
			th_log_info("config", "ASN database: %s", cached);
		}
	}
	struct th_enrich_conf ec = {
		.asn_db_path = asn && *asn ? asn : NULL,
		.aws_ranges_path = ranges && *ranges ? ranges : NULL,
		.amazon_asns = cf->n_amazon_asns ? cf->amazon_asns : NULL,
		.amazon_asns_count = (size_t)cf->n_amazon_asns,
	};
	if (!ec.asn_db_path && !ec.aws_ranges_path) {
		/* Without either, no address is known to be AWS's: every Lambda call
		 * would look remote. Refuse rather than flood. */
		th_errstr(errstr, errstr_size,
			  "no reference data: give an ASN database (--asn-db, asn_db, $TH_ASN_DB or "
			  "scripts/build-asn-mmdb.sh) and/or AWS ip-ranges.json (--aws-ranges, "
			  "aws_ranges, $TH_AWS_RANGES)");
		return TH_ECONFIG;
	}
	if (!ec.asn_db_path)
		th_log_warn("config", "no ASN database: ASNs are unknown (no known-ASN variation, "
				      "no baselines by ASN)");
	else if (!ec.aws_ranges_path)
		th_log_info("config", "no ip-ranges.json: AWS addresses recognised by Amazon's ASNs, "
				      "regions unknown");
	return th_enrich_new(en, &ec, errstr, errstr_size);
}

const char *th_config_alert_schema(const struct th_config *cf)
{
	return cf->alert_schema && *cf->alert_schema ? cf->alert_schema
						     : TH_SCHEMA_DIR "/alert.avsc";
}

bool th_config_is_secret(const char *key)
{
	/* librdkafka's secret properties: sasl.password, ssl.key.password,
	 * ssl.keystore.password, sasl.oauthbearer.client.secret, ssl.key.pem
	 * (a private key in the file), sasl.oauthbearer.config (may carry a
	 * client secret); and anything else that says password or secret. */
	static const char *const words[] = {"password", "secret", "ssl.key.pem",
					    "sasl.oauthbearer.config", "sasl.kerberos.keytab"};
	char low[256];
	size_t n = 0;
	if (!key)
		return false;
	for (; key[n] && n + 1 < sizeof(low); n++)
		low[n] = (char)tolower((unsigned char)key[n]);
	low[n] = '\0';
	for (size_t i = 0; i < TH_ARRAY_SIZE(words); i++)
		if (strstr(low, words[i]))
			return true;
	return false;
}

/* Whether a variable name (after TRAILHOUND_) has the shape of the service
 * links Kubernetes puts in every pod of a namespace, one set per Service:
 * <NAME>_SERVICE_HOST, <NAME>_SERVICE_PORT[_<PORT>], <NAME>_PORT[_<N>_TCP…]. */
static bool service_link(const char *name, size_t n)
{
	static const char *const marks[] = {"SERVICE_HOST", "SERVICE_PORT", "PORT"};
	char buf[256];
	snprintf(buf, sizeof(buf), "%.*s", (int)(n < sizeof(buf) ? n : sizeof(buf) - 1), name);
	for (size_t i = 0; i < TH_ARRAY_SIZE(marks); i++) {
		size_t m = strlen(marks[i]);
		for (const char *p = strstr(buf, marks[i]); p; p = strstr(p + 1, marks[i]))
			if ((p == buf || p[-1] == '_') && (p[m] == '\0' || p[m] == '_'))
				return true;
	}
	return false;
}

int th_config_apply_env(struct th_config *cf, char *const *envp, char *errstr,
			size_t errstr_size)
{
	static const char prefix[] = "TRAILHOUND_";
	char key[256], err[400];
	for (char *const *e = envp; e && *e; e++) {
		const char *var = *e, *eq = strchr(var, '=');
		size_t n;
		if (strncmp(var, prefix, sizeof(prefix) - 1) != 0 || !eq)
			continue;
		/* TRAILHOUND_<SETTING>: upper case, '.' written as "__" */
		const char *name = var + sizeof(prefix) - 1;
		size_t k = 0;
		for (n = 0; name + n < eq && k + 1 < sizeof(key); n++) {
			if (name[n] == '_' && name + n + 1 < eq && name[n + 1] == '_') {
				key[k++] = '.';
				n++;
			} else {
				key[k++] = (char)tolower((unsigned char)name[n]);
			}
		}
		key[k] = '\0';
		if (name + n < eq || k == 0) {
			th_errstr(errstr, errstr_size, "environment: variable name %.*s%s is not a setting",
				  (int)(eq - var > 80 ? 80 : eq - var), var, eq - var > 80 ? "..." : "");
			return TH_ECONFIG;
		}
		int rc = th_config_set(cf, key, eq + 1, err, sizeof(err));
		if (rc) {
			/* th_config_set's errors quote values only of settings that
			 * are never secret */
			static const char hint[] =
				" (Kubernetes sets such a variable in every pod for a Service "
				"named trailhound-...: set enableServiceLinks: false in the pod "
				"spec, as deploy/kubernetes does)";
			bool link = service_link(name, (size_t)(eq - name));
			th_errstr(errstr, errstr_size, "environment %.*s: %s%s", (int)(eq - var),
				  var, err, link ? hint : "");
			return rc;
		}
	}
	return 0;
}

/* The value of one setting as the config file would give it. */
static void item_value(const struct th_config *cf, const struct conf_item *it, char *buf,
		       size_t cap)
{
	const char *base = (const char *)cf;
	size_t used = 0;
	buf[0] = '\0';
	switch (it->type) {
	case T_DAYS:
		snprintf(buf, cap, "%" PRId64, *(const int64_t *)(base + it->off) / (int64_t)TH_DAY_MS);
		break;
	case T_HOURS:
		snprintf(buf, cap, "%" PRId64, *(const int64_t *)(base + it->off) / (int64_t)3600000);
		break;
	case T_DURATION:
		snprintf(buf, cap, "%" PRId64 "ms", *(const int64_t *)(base + it->off));
		break;
	case T_LONG:
		snprintf(buf, cap, "%ld", *(const long *)(base + it->off));
		break;
	case T_STR: {
		const char *v = *(char *const *)(base + it->off);
		snprintf(buf, cap, "%s", v ? v : "");
		break;
	}
	case T_TOPICS:
		for (int i = 0; i < cf->n_input_topics && used < cap; i++)
			used += (size_t)snprintf(buf + used, cap - used, "%s%s", i ? "," : "",
						 cf->input_topics[i]);
		break;
	case T_UALIST: {
		bool cli = it->off == offsetof(struct th_config, detect.cli_user_agents);
		const char *const *arr =
			cli ? cf->detect.cli_user_agents : cf->detect.lambda_user_agents;
		int n = cli ? cf->detect.n_cli_user_agents : cf->detect.n_lambda_user_agents;
		for (int i = 0; i < n && used < cap; i++)
			used += (size_t)snprintf(buf + used, cap - used, "%s%s", i ? "," : "", arr[i]);
		break;
	}
	case T_ASNS: {
		bool amazon = it->off == offsetof(struct th_config, amazon_asns);
		const uint32_t *arr = amazon ? cf->amazon_asns : cf->detect.trusted_asns;
		int n = amazon ? cf->n_amazon_asns : cf->detect.n_trusted_asns;
		for (int i = 0; i < n && used < cap; i++)
			used += (size_t)snprintf(buf + used, cap - used, "%sAS%u", i ? "," : "",
						 (unsigned)arr[i]);
		break;
	}
	}
}

void th_config_print(const struct th_config *cf, FILE *out)
{
	char buf[4096];
	for (size_t i = 0; i < TH_ARRAY_SIZE(items); i++) {
		item_value(cf, &items[i], buf, sizeof(buf));
		if (strcmp(items[i].name, "schema_registry_url") == 0)
			mask_url_password(buf);
		fprintf(out, "%s = \"%s\"\n", items[i].name, buf);
	}
	for (int i = 0; i < cf->n_kafka; i++) {
		bool secret = th_config_is_secret(cf->kafka_keys[i]);
		fprintf(out, "kafka.%s = \"%s\"\n", cf->kafka_keys[i],
			secret ? "***" : cf->kafka_values[i]);
	}
}

int th_config_apply_overrides(struct th_config *cf, char *const *envp, char *const *sets,
			      int n_sets, char *errstr, size_t errstr_size)
{
	/* file < environment < command line: the commands collect --set values
	 * while parsing options and apply them here, once, after the environment */
	int rc = th_config_apply_env(cf, envp, errstr, errstr_size);
	for (int i = 0; !rc && i < n_sets; i++)
		rc = th_config_set_kv(cf, sets[i], errstr, errstr_size);
	if (!rc)
		rc = th_log_configure(cf->log_level, cf->log_format, errstr, errstr_size);
	return rc;
}

const char *th_config_kafka_key(const struct th_config *cf, int i, const char *scope)
{
	const char *k = cf->kafka_keys[i];
	bool for_consumer = strncmp(k, "consumer.", 9) == 0;
	bool for_producer = strncmp(k, "producer.", 9) == 0;
	if (!for_consumer && !for_producer)
		return k;
	if (strcmp(scope, for_consumer ? "consumer" : "producer") != 0)
		return NULL;
	return k + 9;
}

/*
 * The metrics registry and its HTTP endpoint (metrics.h). libmicrohttpd runs
 * the server on its own thread (MHD_USE_INTERNAL_POLLING_THREAD); its
 * handler only reads atomics and copies the mutex-protected tables, so a
 * scrape never waits for the worker and the worker never waits for a scrape.
 */
#include "trailhound/metrics.h"

#include <microhttpd.h>
#include <librdkafka/rdkafka.h>
#include <inttypes.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "metrics_stats.h"
#include "trailhound/common.h"
#include "trailhound/variation.h"

#define MAX_PARTS 1024
/* HTTP connections at once, and of one client address (th_metrics_start) */
#define METRICS_CONN_MAX 256
#define METRICS_CONN_PER_CLIENT 8
/* variation ids a descriptor table may use (variation.h) */
#define N_VARIATIONS TH_VARIATION_MAX
/* the severities variations.c gives alerts; anything else counts as "other" */
static const char *const severities[] = {"Critical", "High", "Medium", "Low", "Informational",
					 "other"};
#define N_SEVERITIES (sizeof(severities) / sizeof(severities[0]))

static const double commit_bounds[TH_METRICS_COMMIT_BUCKETS] = {
	0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

struct lag_entry {
	char topic[256];
	int32_t partition;
	int64_t lag;
};

static struct {
	_Atomic uint64_t counters[TH_M__COUNTERS];
	_Atomic int64_t gauges[TH_G__COUNT];
	_Atomic uint64_t rejects[TH_REJECT__COUNT];
	_Atomic uint64_t alerts[N_VARIATIONS + 1][N_SEVERITIES];
	_Atomic uint64_t commit_buckets[TH_METRICS_COMMIT_BUCKETS];
	_Atomic uint64_t commit_count;
	_Atomic uint64_t commit_sum_us;
	/* an open transaction's alerts and rejects (th_metrics_staged_*): the
	 * worker's thread alone touches them, so plain integers */
	uint64_t staged_alerts[N_VARIATIONS + 1][N_SEVERITIES];
	uint64_t staged_rejects[TH_REJECT__COUNT];
	_Atomic int64_t heartbeat_ms; /* CLOCK_MONOTONIC, 0 = never */
	_Atomic int broker_up;
	_Atomic int bridge; /* th_metrics_serve_bridge() */
	double stale_s;
	pthread_mutex_t lock; /* the two tables below */
	struct th_metrics_part parts[MAX_PARTS];
	int nparts;
	struct lag_entry lags[MAX_PARTS];
	int nlags;
	bool lag_known;
	struct MHD_Daemon *daemon;
	/* mhd_log's rate limit: set by th_metrics_start, then the server's
	 * thread alone touches it */
	int64_t log_window_ms;
	unsigned log_logged, log_dropped;
} M = {.lock = PTHREAD_MUTEX_INITIALIZER, .stale_s = 60};

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void th_metrics_add(enum th_counter c, uint64_t n)
{
	if ((unsigned)c < TH_M__COUNTERS)
		atomic_fetch_add_explicit(&M.counters[c], n, memory_order_relaxed);
}

void th_metrics_set_counter(enum th_counter c, uint64_t v)
{
	if ((unsigned)c < TH_M__COUNTERS)
		atomic_store_explicit(&M.counters[c], v, memory_order_relaxed);
}

uint64_t th_metrics_get(enum th_counter c)
{
	return (unsigned)c < TH_M__COUNTERS
		       ? atomic_load_explicit(&M.counters[c], memory_order_relaxed)
		       : 0;
}

void th_metrics_set_gauge(enum th_gauge g, int64_t v)
{
	if ((unsigned)g < TH_G__COUNT)
		atomic_store_explicit(&M.gauges[g], v, memory_order_relaxed);
}

int64_t th_metrics_get_gauge(enum th_gauge g)
{
	return (unsigned)g < TH_G__COUNT ? atomic_load_explicit(&M.gauges[g], memory_order_relaxed)
					 : 0;
}

static enum th_reject reject_index(enum th_reject why)
{
	return (unsigned)why < TH_REJECT__COUNT ? why : TH_REJECT_MALFORMED_JSON;
}

void th_metrics_reject(enum th_reject why)
{
	atomic_fetch_add_explicit(&M.rejects[reject_index(why)], 1, memory_order_relaxed);
}

/* The alerts table's row and column of an alert. */
static void alert_index(int variation, const char *severity, int *v, size_t *s)
{
	*v = variation < 1 || variation > N_VARIATIONS ? 0 : variation; /* 0: never expected,
									   kept, not dropped */
	for (*s = 0; *s + 1 < N_SEVERITIES; (*s)++)
		if (severity && strcmp(severity, severities[*s]) == 0)
			break;
}

void th_metrics_alert(int variation, const char *severity)
{
	int v;
	size_t s;
	alert_index(variation, severity, &v, &s);
	atomic_fetch_add_explicit(&M.alerts[v][s], 1, memory_order_relaxed);
}

void th_metrics_staged_alert(int variation, const char *severity)
{
	int v;
	size_t s;
	alert_index(variation, severity, &v, &s);
	M.staged_alerts[v][s]++;
}

void th_metrics_staged_reject(enum th_reject why)
{
	M.staged_rejects[reject_index(why)]++;
}

void th_metrics_staged_commit(void)
{
	for (int v = 0; v <= N_VARIATIONS; v++)
		for (size_t s = 0; s < N_SEVERITIES; s++)
			if (M.staged_alerts[v][s])
				atomic_fetch_add_explicit(&M.alerts[v][s], M.staged_alerts[v][s],
							  memory_order_relaxed);
	for (int i = 0; i < TH_REJECT__COUNT; i++)
		if (M.staged_rejects[i])
			atomic_fetch_add_explicit(&M.rejects[i], M.staged_rejects[i],
						  memory_order_relaxed);
	th_metrics_staged_discard();
}

void th_metrics_staged_discard(void)
{
	memset(M.staged_alerts, 0, sizeof(M.staged_alerts));
	memset(M.staged_rejects, 0, sizeof(M.staged_rejects));
}

void th_metrics_commit_seconds(double seconds)
{
	for (int i = 0; i < TH_METRICS_COMMIT_BUCKETS; i++)
		if (seconds <= commit_bounds[i]) {
			atomic_fetch_add_explicit(&M.commit_buckets[i], 1, memory_order_relaxed);
			break;
		}
	atomic_fetch_add_explicit(&M.commit_count, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&M.commit_sum_us, (uint64_t)(seconds * 1e6),
				  memory_order_relaxed);
}

void th_metrics_heartbeat(void)
{
	atomic_store_explicit(&M.heartbeat_ms, mono_ms(), memory_order_relaxed);
}

void th_metrics_unhealthy(void)
{
	atomic_store_explicit(&M.heartbeat_ms, 0, memory_order_relaxed);
}

void th_metrics_broker_up(bool up)
{
	atomic_store_explicit(&M.broker_up, up ? 1 : 0, memory_order_relaxed);
}

void th_metrics_set_parts(const struct th_metrics_part *parts, int n)
{
	if (n > MAX_PARTS)
		n = MAX_PARTS;
	pthread_mutex_lock(&M.lock);
	if (n > 0)
		memcpy(M.parts, parts, (size_t)n * sizeof(*parts));
	M.nparts = n < 0 ? 0 : n;
	pthread_mutex_unlock(&M.lock);
}

struct lag_acc {
	struct lag_entry lags[MAX_PARTS];
	int n;
};

static void on_lag(void *ctx, const char *topic, int32_t partition, int64_t lag)
{
	struct lag_acc *a = ctx;
	if (a->n >= MAX_PARTS)
		return;
	snprintf(a->lags[a->n].topic, sizeof(a->lags[a->n].topic), "%s", topic);
	a->lags[a->n].partition = partition;
	a->lags[a->n].lag = lag;
	a->n++;
}

int th_metrics_feed_stats(const char *json, size_t len)
{
	/* static: 280 KB is too much for the stack of librdkafka's callers; the
	 * statistics callback runs on one thread (the consumer's poll) */
	static struct lag_acc acc;
	int up = 0;
	acc.n = 0;
	int rc = th_stats_parse(json, len, on_lag, &acc, &up);
	if (rc)
		return rc;
	th_metrics_broker_up(up > 0);
	pthread_mutex_lock(&M.lock);
	memcpy(M.lags, acc.lags, (size_t)acc.n * sizeof(acc.lags[0]));
	M.nlags = acc.n;
	M.lag_known = true;
	pthread_mutex_unlock(&M.lock);
	return 0;
}

int th_metrics_total_lag(int64_t *lag)
{
	int64_t sum = 0;
	int n;
	pthread_mutex_lock(&M.lock);
	for (int i = 0; i < M.nlags; i++)
		sum += M.lags[i].lag;
	n = M.nlags;
	pthread_mutex_unlock(&M.lock);
	*lag = sum;
	return n;
}

bool th_metrics_healthy(void)
{
	int64_t hb = atomic_load_explicit(&M.heartbeat_ms, memory_order_relaxed);
	return hb != 0 && (double)(mono_ms() - hb) / 1000.0 <= M.stale_s;
}

bool th_metrics_ready(void)
{
	/* Ready with an empty assignment too: a replica beyond the partition
	 * count is a standby doing its job, and a StatefulSet's rolling update
	 * waits for every updated pod to be ready. */
	return th_metrics_healthy() && th_metrics_get_gauge(TH_G_ASSIGNMENT_HELD) > 0 &&
	       th_metrics_get_gauge(TH_G_PARTITIONS_RESTORING) == 0 &&
	       atomic_load_explicit(&M.broker_up, memory_order_relaxed);
}

void th_metrics_reset(void)
{
	for (int i = 0; i < TH_M__COUNTERS; i++)
		atomic_store(&M.counters[i], 0);
	for (int i = 0; i < TH_G__COUNT; i++)
		atomic_store(&M.gauges[i], 0);
	for (int i = 0; i < TH_REJECT__COUNT; i++)
		atomic_store(&M.rejects[i], 0);
	for (int v = 0; v <= N_VARIATIONS; v++)
		for (size_t s = 0; s < N_SEVERITIES; s++)
			atomic_store(&M.alerts[v][s], 0);
	for (int i = 0; i < TH_METRICS_COMMIT_BUCKETS; i++)
		atomic_store(&M.commit_buckets[i], 0);
	atomic_store(&M.commit_count, 0);
	atomic_store(&M.commit_sum_us, 0);
	th_metrics_staged_discard();
	atomic_store(&M.heartbeat_ms, 0);
	atomic_store(&M.broker_up, 0);
	atomic_store(&M.bridge, 0);
	pthread_mutex_lock(&M.lock);
	M.nparts = M.nlags = 0;
	M.lag_known = false;
	pthread_mutex_unlock(&M.lock);
}

/* ---- the text exposition ---- */

struct buf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	for (;;) {
		if (b->oom)
			return;
		va_start(ap, fmt);
		int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = true;
			return;
		}
		if ((size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = (b->cap + (size_t)n + 1) * 2;
		char *np = realloc(b->p, cap);
		if (!np) {
			b->oom = true;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
}

/* A label value escaped as the exposition format wants (\\, \", \n). */
static void put_label(struct buf *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			put(b, "\\%c", *s);
		else if (*s == '\n')
			put(b, "\\n");
		else
			put(b, "%c", *s);
	}
}

static void head(struct buf *b, const char *name, const char *type, const char *help)
{
	put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void counter(struct buf *b, const char *name, const char *help, enum th_counter c)
{
	head(b, name, "counter", help);
	put(b, "%s %" PRIu64 "\n", name, th_metrics_get(c));
}

static void gauge(struct buf *b, const char *name, const char *help, int64_t v)
{
	head(b, name, "gauge", help);
	put(b, "%s %" PRId64 "\n", name, v);
}

/* Whether a variation of this build alerts with this severity. */
static bool builtin_pair(int variation, const char *severity)
{
	for (size_t i = 0; i < th_variations_count; i++)
		if (th_variations[i].id == variation &&
		    strcmp(th_variations[i].severity, severity) == 0)
			return true;
	return false;
}

void th_metrics_serve_bridge(void)
{
	atomic_store(&M.bridge, 1);
}

/* The bridge's own counters: served by the bridge from its start (at 0), so
 * they tell its pods from the workers' at once and its first dead letter is
 * an increase; a worker never counts them and leaves them out. */
static void bridge_metrics(struct buf *b)
{
	static const struct {
		enum th_counter c;
		const char *outcome;
	} files[] = {{TH_M_BRIDGE_FILES_PUBLISHED, "published"},
		     {TH_M_BRIDGE_FILES_SKIPPED, "skipped"},
		     {TH_M_BRIDGE_FILES_UNREADABLE, "unreadable"}};
	if (!atomic_load(&M.bridge))
		return;
	head(b, "trailhound_bridge_files_total", "counter",
	     "S3 objects by outcome: published (in a committed transaction), skipped (the "
	     "ledger shows them published before), unreadable (an attempt failed; retried).");
	for (size_t i = 0; i < TH_ARRAY_SIZE(files); i++)
		put(b, "trailhound_bridge_files_total{outcome=\"%s\"} %" PRIu64 "\n",
		    files[i].outcome, th_metrics_get(files[i].c));
	counter(b, "trailhound_bridge_dead_lettered_total",
		"Files and notifications given up on, written to the dead-letter topic.",
		TH_M_BRIDGE_DEAD_LETTERED);
	counter(b, "trailhound_bridge_sqs_messages_total", "SQS messages received.",
		TH_M_BRIDGE_MESSAGES);
}

int th_metrics_render(char **out, size_t *len)
{
	struct buf b = {malloc(16384), 0, 16384, false};
	if (!b.p)
		return TH_ENOMEM;
	b.p[0] = '\0';

	head(&b, "trailhound_build_info", "gauge", "Build information (always 1).");
	put(&b, "trailhound_build_info{version=\"%s\",librdkafka=\"", TH_VERSION);
	put_label(&b, rd_kafka_version_str());
	put(&b, "\"} 1\n");
	counter(&b, "trailhound_events_consumed_total", "Input messages consumed.",
		TH_M_EVENTS_CONSUMED);
	counter(&b, "trailhound_events_parsed_total", "Events parsed and handed to the detector.",
		TH_M_EVENTS_PARSED);
	head(&b, "trailhound_events_rejected_total", "counter",
	     "Records rejected (sent to the dead-letter topic), by reason.");
	for (int i = 1; i < TH_REJECT__COUNT; i++)
		put(&b, "trailhound_events_rejected_total{reason=\"%s\"} %" PRIu64 "\n",
		    th_reject_name((enum th_reject)i), atomic_load(&M.rejects[i]));
	head(&b, "trailhound_alerts_total", "counter",
	     "Alerts committed, by variation and severity (an aborted transaction's are not).");
	for (int v = 0; v <= N_VARIATIONS; v++)
		for (size_t s = 0; s < N_SEVERITIES; s++) {
			uint64_t n = atomic_load(&M.alerts[v][s]);
			/* every pair a variation of this build alerts with from the
			 * start, at 0: a series born with its first alert hides that
			 * alert from increase() and rate(), and "no alert for 7
			 * days" needs a series to be 0; variation 0, "other" and
			 * other unexpected pairs only if they ever happen */
			if (!n && !builtin_pair(v, severities[s]))
				continue;
			put(&b, "trailhound_alerts_total{variation=\"%d\",severity=\"%s\"} %" PRIu64 "\n",
			    v, severities[s], n);
		}
	head(&b, "trailhound_detections_suppressed_total", "counter",
	     "Detections not alerted, by reason (activation: the account is too new).");
	put(&b, "trailhound_detections_suppressed_total{reason=\"activation\"} %" PRIu64 "\n",
	    th_metrics_get(TH_M_SUPPRESSED_ACTIVATION));
	counter(&b, "trailhound_detections_deduplicated_total",
		"Detections dropped by the dedup ledger.", TH_M_DEDUPLICATED);
	gauge(&b, "trailhound_held_uses_pending", "Held uses waiting for late attribution.",
	      th_metrics_get_gauge(TH_G_HELD_PENDING));
	counter(&b, "trailhound_held_uses_expired_total", "Held uses expired.", TH_M_HELD_EXPIRED);
	counter(&b, "trailhound_transactions_committed_total", "Kafka transactions committed.",
		TH_M_TXN_COMMITTED);
	counter(&b, "trailhound_transactions_aborted_total",
		"Kafka transactions aborted (the batch is redone).", TH_M_TXN_ABORTED);
	head(&b, "trailhound_transaction_commit_seconds", "histogram",
	     "Latency of commit_transaction.");
	uint64_t cum = 0;
	for (int i = 0; i < TH_METRICS_COMMIT_BUCKETS; i++) {
		cum += atomic_load(&M.commit_buckets[i]);
		put(&b, "trailhound_transaction_commit_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
		    commit_bounds[i], cum);
	}
	uint64_t count = atomic_load(&M.commit_count);
	put(&b, "trailhound_transaction_commit_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", count);
	put(&b, "trailhound_transaction_commit_seconds_sum %.6f\n",
	    (double)atomic_load(&M.commit_sum_us) / 1e6);
	put(&b, "trailhound_transaction_commit_seconds_count %" PRIu64 "\n", count);
	counter(&b, "trailhound_restore_records_total", "Changelog records restored.",
		TH_M_RESTORE_RECORDS);
	counter(&b, "trailhound_restore_records_skipped_total",
		"Changelog records skipped at a restore: a key no worker writes.",
		TH_M_RESTORE_SKIPPED);
	gauge(&b, "trailhound_partitions_restoring",
	      "Partitions whose state is being restored from the changelog.",
	      th_metrics_get_gauge(TH_G_PARTITIONS_RESTORING));
	gauge(&b, "trailhound_partitions_assigned", "Input partitions assigned to this worker.",
	      th_metrics_get_gauge(TH_G_PARTITIONS_ASSIGNED));
	gauge(&b, "trailhound_assignment_held",
	      "1 while this worker holds an assignment from its group, possibly of no partition "
	      "(a standby replica); 0 before the first and from a revoke to the next.",
	      th_metrics_get_gauge(TH_G_ASSIGNMENT_HELD));
	head(&b, "trailhound_reference_created_timestamp_seconds", "gauge",
	     "When the reference data in use was made (Unix time): the ASN database's build "
	     "epoch (file=asn_db), ip-ranges.json's createDate (file=aws_ranges); no series for "
	     "a file not loaded.");
	static const struct {
		enum th_gauge g;
		const char *file;
	} built[] = {{TH_G_ASN_DB_BUILT, "asn_db"}, {TH_G_AWS_RANGES_CREATED, "aws_ranges"}};
	for (size_t i = 0; i < TH_ARRAY_SIZE(built); i++)
		if (th_metrics_get_gauge(built[i].g) > 0)
			put(&b,
			    "trailhound_reference_created_timestamp_seconds{file=\"%s\"} %" PRId64 "\n",
			    built[i].file, th_metrics_get_gauge(built[i].g));
	head(&b, "trailhound_reference_reloads_total", "counter",
	     "Reference data (asn_db, aws_ranges) loaded again after one of its files changed, "
	     "by outcome (failed: the worker goes on with what it had).");
	put(&b, "trailhound_reference_reloads_total{outcome=\"loaded\"} %" PRIu64 "\n",
	    th_metrics_get(TH_M_REFERENCE_RELOADED));
	put(&b, "trailhound_reference_reloads_total{outcome=\"failed\"} %" PRIu64 "\n",
	    th_metrics_get(TH_M_REFERENCE_RELOAD_FAILED));

	/* the tables: copy under the lock, format outside it (heap: the HTTP
	 * thread's stack is small) */
	struct th_metrics_part *parts = malloc(MAX_PARTS * sizeof(*parts));
	struct lag_entry *lags = malloc(MAX_PARTS * sizeof(*lags));
	int np, nl;
	if (!parts || !lags) {
		free(parts);
		free(lags);
		free(b.p);
		return TH_ENOMEM;
	}
	pthread_mutex_lock(&M.lock);
	np = M.nparts;
	nl = M.nlags;
	memcpy(parts, M.parts, (size_t)np * sizeof(parts[0]));
	memcpy(lags, M.lags, (size_t)nl * sizeof(lags[0]));
	pthread_mutex_unlock(&M.lock);
	head(&b, "trailhound_state_bytes", "gauge",
	     "Bytes of a partition's LMDB state store on disk (partition = topic-partition).");
	for (int i = 0; i < np; i++) {
		put(&b, "trailhound_state_bytes{partition=\"");
		put_label(&b, parts[i].topic);
		put(&b, "-%d\"} %" PRId64 "\n", (int)parts[i].partition, parts[i].state_bytes);
	}
	head(&b, "trailhound_consumer_lag", "gauge",
	     "Messages behind the end of the partition (librdkafka statistics, read_committed).");
	for (int i = 0; i < nl; i++) {
		put(&b, "trailhound_consumer_lag{topic=\"");
		put_label(&b, lags[i].topic);
		put(&b, "\",partition=\"%d\"} %" PRId64 "\n", (int)lags[i].partition, lags[i].lag);
	}
	gauge(&b, "trailhound_ready", "1 when /readyz answers 200.", th_metrics_ready() ? 1 : 0);
	bridge_metrics(&b);
	free(parts);
	free(lags);
	if (b.oom) {
		free(b.p);
		return TH_ENOMEM;
	}
	*out = b.p;
	*len = b.len;
	return 0;
}

/* ---- HTTP ---- */

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, char *body,
			     size_t len, const char *type)
{
	struct MHD_Response *r =
		MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	enum MHD_Result ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result text_reply(struct MHD_Connection *conn, unsigned status, const char *text)
{
	char *body = strdup(text);
	if (!body)
		return MHD_NO;
	return reply(conn, status, body, strlen(body), "text/plain; charset=utf-8");
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url,
			       const char *method, const char *version, const char *upload,
			       size_t *upload_size, void **con_cls)
{
	(void)cls;
	(void)version;
	(void)upload;
	(void)upload_size;
	(void)con_cls;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return text_reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "GET only\n");
	if (strcmp(url, "/metrics") == 0) {
		char *body;
		size_t len;
		if (th_metrics_render(&body, &len))
			return text_reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
		return reply(conn, MHD_HTTP_OK, body, len, "text/plain; version=0.0.4; charset=utf-8");
	}
	if (strcmp(url, "/healthz") == 0)
		return th_metrics_healthy()
			       ? text_reply(conn, MHD_HTTP_OK, "ok\n")
			       : text_reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
					    "the worker loop has stalled\n");
	if (strcmp(url, "/readyz") == 0) {
		char why[256];
		if (th_metrics_ready())
			return text_reply(conn, MHD_HTTP_OK, "ready\n");
		snprintf(why, sizeof(why), "not ready: %s\n",
			 !th_metrics_healthy() ? "the worker loop has stalled"
			 : th_metrics_get_gauge(TH_G_ASSIGNMENT_HELD) == 0
				 ? "no assignment from the group yet"
			 : th_metrics_get_gauge(TH_G_PARTITIONS_RESTORING) > 0
				 ? "restoring state from the changelog"
				 : "no broker reachable");
		return text_reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE, why);
	}
	return text_reply(conn, MHD_HTTP_NOT_FOUND, "not found: try /metrics, /healthz, /readyz\n");
}

/* libmicrohttpd's own errors (a client that misbehaves, no memory) go
 * through the log like everything else, but at most MHD_LOG_BURST a minute:
 * it writes one for every connection it refuses or that hangs up early, so
 * any client that can connect could fill the log (and its volume, and push
 * out the lines that matter) at ~100 bytes per connect. Called on
 * libmicrohttpd's one thread only. */
#define MHD_LOG_BURST 10
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	int64_t now = mono_ms();
	(void)cls;
	if (now - M.log_window_ms >= 60000) {
		if (M.log_dropped)
			th_log_warn("metrics",
				    "libmicrohttpd: %u more messages in the last minute not logged",
				    M.log_dropped);
		M.log_window_ms = now;
		M.log_logged = M.log_dropped = 0;
	}
	if (M.log_logged >= MHD_LOG_BURST) {
		M.log_dropped++;
		return;
	}
	M.log_logged++;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	msg[strcspn(msg, "\n")] = '\0';
	th_log_warn("metrics", "libmicrohttpd: %s", msg);
}

/* metrics_listen as an address to bind: host:port, [v6]:port or :port, the
 * port a number in 1..65535 (getaddrinfo takes 74464 and the socket layer
 * keeps its low 16 bits; 0 is a random port nobody would scrape). *ai is
 * freeaddrinfo's. */
static int resolve_listen(const char *listen, struct addrinfo **ai, char *errstr,
			  size_t errstr_size)
{
	char host[256], port[16];
	struct addrinfo hints = {0};
	const char *colon = listen ? strrchr(listen, ':') : NULL;
	unsigned long n = 0;
	int rc;

	*ai = NULL;
	/* "[::1]" alone: the last colon is inside the brackets */
	if (!colon || !colon[1] || strlen(colon + 1) >= sizeof(port) ||
	    (size_t)(colon - listen) >= sizeof(host) ||
	    (strchr(listen, ']') && strchr(listen, ']') > colon)) {
		th_errstr(errstr, errstr_size, "metrics_listen \"%s\": want host:port",
			  listen ? listen : "");
		return TH_ECONFIG;
	}
	snprintf(port, sizeof(port), "%s", colon + 1);
	for (const char *q = port; *q; q++) {
		if (*q < '0' || *q > '9' || n > 65535) {
			n = 0; /* not a port */
			break;
		}
		n = n * 10 + (unsigned long)(*q - '0');
	}
	if (n < 1 || n > 65535) {
		th_errstr(errstr, errstr_size, "metrics_listen \"%s\": port %s is not in 1..65535",
			  listen, port);
		return TH_ECONFIG;
	}
	if (listen[0] == '[' && colon > listen && colon[-1] == ']')
		snprintf(host, sizeof(host), "%.*s", (int)(colon - listen - 2), listen + 1);
	else
		snprintf(host, sizeof(host), "%.*s", (int)(colon - listen), listen);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if ((rc = getaddrinfo(*host ? host : NULL, port, &hints, ai)) != 0) {
		*ai = NULL;
		th_errstr(errstr, errstr_size, "metrics_listen \"%s\": %s", listen, gai_strerror(rc));
		return TH_ECONFIG;
	}
	return 0;
}

int th_metrics_check_listen(const char *listen, char *errstr, size_t errstr_size)
{
	struct addrinfo *ai = NULL;
	int rc = resolve_listen(listen, &ai, errstr, errstr_size);
	if (ai)
		freeaddrinfo(ai);
	return rc;
}

int th_metrics_start(const char *listen, double stale_s, char *errstr, size_t errstr_size)
{
	struct addrinfo *ai = NULL;
	int rc;

	if (M.daemon)
		return 0;
	if (!listen || !*listen)
		return 0;
	if ((rc = resolve_listen(listen, &ai, errstr, errstr_size)))
		return rc;
	/* poll or epoll, not select(): a worker holding many partitions has
	 * descriptors past FD_SETSIZE, and select() cannot wait on a connection
	 * numbered there (libmicrohttpd closes it, the probe fails) */
	unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
	if (ai->ai_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	M.stale_s = stale_s > 0 ? stale_s : 60;
	M.log_window_ms = mono_ms();
	M.log_logged = M.log_dropped = 0;
	th_metrics_heartbeat();
	/* Prometheus and the kubelet's probes need a handful of connections.
	 * One client is held below the total: its idle connections (any byte
	 * resets the idle timeout, so they can be kept for good) must not take
	 * the slots the probes come through. */
	M.daemon = MHD_start_daemon(
		flags, 0, NULL, NULL, handler, NULL, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
		MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_CONNECTION_LIMIT,
		(unsigned)METRICS_CONN_MAX, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
		(unsigned)METRICS_CONN_PER_CLIENT, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
		MHD_OPTION_END);
	freeaddrinfo(ai);
	if (!M.daemon) {
		th_errstr(errstr, errstr_size,
			  "metrics_listen \"%s\": cannot listen there (address in use or not local?)",
			  listen);
		return TH_ECONFIG;
	}
	th_log_info("metrics", "serving /metrics, /healthz and /readyz on %s", listen);
	return 0;
}

void th_metrics_stop(void)
{
	if (M.daemon) {
		MHD_stop_daemon(M.daemon);
		M.daemon = NULL;
	}
}

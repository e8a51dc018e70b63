/*
 * The S3-to-Kafka bridge: SQS notifications (or an archive listing) in,
 * CloudTrail events out, exactly once per file. See include/trailhound/bridge.h.
 *
 * The transaction pattern is librdkafka's examples/transactions.c without the
 * consumer offsets: the "input position" here is the SQS message, deleted only
 * after commit_transaction() returned, and the ledger marker in the same
 * transaction is what makes a redelivery after a crash between the commit and
 * the delete harmless. An abortable error aborts the file's transaction and
 * leaves the message to be redelivered; a fatal one (fenced by a newer bridge
 * with the same transactional id) ends the process with exit code 5.
 */
#include "trailhound/bridge.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "trailhound/archive.h"
#include "trailhound/aws.h"
#include "trailhound/common.h"
#include "trailhound/event.h"
#include "trailhound/input.h"
#include "trailhound/kafka_conf.h"
#include "trailhound/log.h"
#include "trailhound/metrics.h"

#define MAX_OBJS 64   /* objects one notification may list */
#define MAX_BATCH 10  /* SQS ReceiveMessage's own limit */
#define MARKER_MAX 2600

/* ---- the set of published files (ledger markers) ---- */

struct markers {
	char **slot;
	size_t cap, n;
};

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ull;
	return h;
}

static bool markers_has(const struct markers *m, const char *k)
{
	if (!m->cap)
		return false;
	for (size_t i = fnv1a(k) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
		if (!m->slot[i])
			return false;
		if (strcmp(m->slot[i], k) == 0)
			return true;
	}
}

static int markers_add(struct markers *m, const char *k)
{
	if (markers_has(m, k))
		return 0;
	if ((m->n + 1) * 2 > m->cap) {
		size_t ncap = m->cap ? m->cap * 2 : 1024;
		char **ns = calloc(ncap, sizeof(*ns));
		if (!ns)
			return TH_ENOMEM;
		for (size_t i = 0; i < m->cap; i++) {
			if (!m->slot[i])
				continue;
			size_t j = fnv1a(m->slot[i]) & (ncap - 1);
			while (ns[j])
				j = (j + 1) & (ncap - 1);
			ns[j] = m->slot[i];
		}
		free(m->slot);
		m->slot = ns;
		m->cap = ncap;
	}
	char *dup = strdup(k);
	if (!dup)
		return TH_ENOMEM;
	size_t i = fnv1a(k) & (m->cap - 1);
	while (m->slot[i])
		i = (i + 1) & (m->cap - 1);
	m->slot[i] = dup;
	m->n++;
	return 0;
}

static void markers_free(struct markers *m);

/* The delivery time in a marker's file name ("s3://bucket/key@etag"), or
 * TH_EPARSE. */
static int marker_delivered(const char *k, int64_t *ms)
{
	char key[MARKER_MAX];
	const char *at = strrchr(k, '@');
	if (!at || (size_t)(at - k) >= sizeof(key))
		return TH_EPARSE;
	memcpy(key, k, (size_t)(at - k));
	key[at - k] = '\0';
	return th_bridge_key_time(key, ms);
}

/* Drop the markers of files delivered before keep_from (their notifications
 * are gone from SQS): rehash the others into a table of their size. Returns
 * how many were dropped, or TH_ENOMEM (the table is then unchanged). */
static long markers_prune(struct markers *m, int64_t keep_from)
{
	struct markers nm = {0};
	long dropped = 0;
	for (size_t i = 0; i < m->cap; i++) {
		int64_t t;
		if (!m->slot[i])
			continue;
		/* a name without a stamp is kept: no marker is given up unsure */
		if (marker_delivered(m->slot[i], &t) == 0 && t < keep_from) {
			dropped++;
			continue;
		}
		if (markers_add(&nm, m->slot[i])) {
			markers_free(&nm);
			return TH_ENOMEM;
		}
	}
	markers_free(m);
	*m = nm;
	return dropped;
}

static void markers_free(struct markers *m)
{
	for (size_t i = 0; i < m->cap; i++)
		free(m->slot[i]);
	free(m->slot);
}

/* ---- the bridge ---- */

/* What became of one file. */
enum outcome {
	F_PUBLISHED,
	F_SKIPPED,    /* marker present: published before */
	F_UNREADABLE, /* reported; retry later or dead-letter */
	F_RETRY,      /* transaction aborted (abortable Kafka error), or S3 or the
		       * network failing for now: retry later, no receive counted */
	F_FATAL,      /* fatal Kafka error */
	F_AUTH,       /* AWS refused the credentials: configuration */
};

struct pending {
	char receipt[2048];
	bool done;
};

struct bridge {
	const struct th_config *cf;
	const struct th_bridge_opts *o;
	volatile sig_atomic_t *run;
	struct th_bridge_stats *st;
	struct th_aws_target t;
	struct th_aws_credsrc *creds;
	struct th_sqs sqs;
	rd_kafka_t *rk, *ledger;
	struct th_parser *parser;
	struct markers seen;
	/* markers of files delivered before this are not held (0: all): the
	 * live bridge's bridge_ledger_retention, a backfill's --since */
	int64_t keep_from_ms;
	uint64_t markers_old; /* read from the ledger and not held */
	int64_t next_prune_ms;
	const char *topic;
	/* the file in flight */
	const struct th_s3_obj *obj;
	uint64_t f_events, f_rejects, dec_max;
	bool f_too_big;
	int f_err;
	/* messages of the current receive whose visibility is kept up */
	struct pending pend[MAX_BATCH];
	int n_pend;
	int64_t next_beat_ms;
	long stall_ms;
	/* the broker watch (/readyz): a thread asking for metadata */
	pthread_t watch;
	pthread_mutex_t watch_mu;
	pthread_cond_t watch_cv;
	bool watch_stop, watching;
	char errstr[1024];
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* JSON string escaping for the request bodies we build. */
static int json_str(const char *s, char *out, size_t size)
{
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (o + 7 >= size)
			return TH_ETOOBIG;
		if (*p == '"' || *p == '\\') {
			out[o++] = '\\';
			out[o++] = (char)*p;
		} else if (*p < 0x20) {
			o += (size_t)snprintf(out + o, size - o, "\\u%04x", *p);
		} else {
			out[o++] = (char)*p;
		}
	}
	out[o] = '\0';
	return 0;
}

bool th_bridge_key_skipped(const char *key)
{
	return strstr(key, "CloudTrail-Digest/") || strstr(key, "CloudTrail-Insight/");
}

int th_bridge_key_time(const char *key, int64_t *ms)
{
	/* the file name's delivery stamp, read as a backtest reads an archive */
	const char *base = strrchr(key, '/');
	return th_archive_s3_name(base ? base + 1 : key, ms) ? 0 : TH_EPARSE;
}

bool th_bridge_key_is_log(const char *key, int64_t *delivered_ms)
{
	/* what CloudTrail delivers: ACCOUNT_CloudTrail_REGION_YYYYMMDDTHHmmZ_UNIQUE.json.gz
	 * in a CloudTrail/ folder. Not another service's logs in the same bucket
	 * (vpcflowlogs/, Config/, elasticloadbalancing/ under AWSLogs/ too),
	 * digest or Insights files: the live bridge and the backfill keep the same
	 * files, so neither publishes a file the other would not */
	int64_t ms;
	return !th_bridge_key_skipped(key) && strstr(key, "/CloudTrail/") &&
	       th_bridge_key_time(key, delivered_ms ? delivered_ms : &ms) == 0;
}

static void marker_of(const struct th_s3_obj *o, const char *etag, char *out, size_t size)
{
	/* the ETag names the content (CloudTrail never rewrites a file). Not
	 * the version id, even when a notification gives one: a listing (the
	 * backfill) has none, and both must name a file alike */
	snprintf(out, size, "s3://%s/%s@%s", o->bucket, o->key, etag);
}

rd_kafka_conf_t *th_bridge_producer_conf(const struct th_config *cf, char *errstr,
					 size_t errstr_size)
{
	static const char *const defaults[] = {
		"enable.idempotence", "true",
		"partitioner", "murmur2_random",
		"linger.ms", "20",
		"compression.type", "lz4",
		NULL,
	};
	return th_kafka_conf_new(cf, "producer", defaults, errstr, errstr_size);
}

/* S3 answered that the bucket lives in another region than aws_region (301
 * PermanentRedirect; curl is not told to follow it). Not the file's fault and
 * not a passing failure: every file of that bucket would fail alike, so it is
 * a configuration error (exit 4) naming the bucket's region. Not followed: one
 * bridge signs for one region, S3 sends notifications only to a queue in the
 * bucket's own region, and a custom aws_endpoint (a VPC endpoint) serves one
 * region. Writes the message into why. */
static bool wrong_region(const struct bridge *b, const char *bucket,
			 const struct th_aws_resp *r, char *why, size_t why_size)
{
	if (r->status != 301 && strcmp(r->code, "PermanentRedirect") != 0)
		return false;
	if (r->region[0])
		snprintf(why, why_size,
			 "bucket %s is in region %s, not aws_region %s (S3: HTTP %ld %s): set "
			 "aws_region = %s, with a queue in that region",
			 bucket, r->region, b->t.region, r->status,
			 r->code[0] ? r->code : "redirect", r->region);
	else
		snprintf(why, why_size,
			 "bucket %s is in another region than aws_region %s (S3: HTTP %ld %s, "
			 "its region not given): set aws_region to the bucket's region",
			 bucket, b->t.region, r->status, r->code[0] ? r->code : "redirect");
	return true;
}

/* ---- SQS ---- */

static int sqs_simple(struct bridge *b, const char *action, const char *receipt, long vis)
{
	char body[4096], eurl[1024], erc[2400];
	struct th_aws_resp r;
	if (json_str(b->cf->bridge_queue_url, eurl, sizeof(eurl)) ||
	    json_str(receipt, erc, sizeof(erc)))
		return TH_ETOOBIG;
	if (vis >= 0)
		snprintf(body, sizeof(body),
			 "{\"QueueUrl\":\"%s\",\"ReceiptHandle\":\"%s\",\"VisibilityTimeout\":%ld}",
			 eurl, erc, vis);
	else
		snprintf(body, sizeof(body), "{\"QueueUrl\":\"%s\",\"ReceiptHandle\":\"%s\"}", eurl,
			 erc);
	int rc = th_sqs_call(&b->sqs, action, body, &r, b->errstr, sizeof(b->errstr));
	th_aws_resp_free(&r);
	if (rc)
		th_log_warn("bridge", "%s", b->errstr);
	return rc;
}

/* Keep the batch's messages invisible while a file is in flight: every third
 * of the visibility timeout, push it a whole timeout ahead again. */
static void heartbeat(struct bridge *b)
{
	int64_t now = now_ms();
	th_metrics_heartbeat(); /* /healthz: a long file is alive */
	if (!b->n_pend || now < b->next_beat_ms)
		return;
	b->next_beat_ms = now + b->cf->bridge_visibility_s * 1000 / 3;
	for (int i = 0; i < b->n_pend; i++)
		if (!b->pend[i].done &&
		    sqs_simple(b, "ChangeMessageVisibility", b->pend[i].receipt,
			       b->cf->bridge_visibility_s) == 0)
			th_log_debug("bridge", "visibility extended by %ld s",
				     b->cf->bridge_visibility_s);
}

static int on_progress(void *ctx)
{
	struct bridge *b = ctx;
	heartbeat(b);
	return *b->run ? 0 : 1;
}

/* ---- broker reachability (/readyz) ---- */

#define WATCH_EVERY_S 2
#define WATCH_TIMEOUT_MS 5000

/* /readyz follows the brokers: every WATCH_EVERY_S a metadata request (any
 * broker). Not librdkafka's statistics or its all-brokers-down error: both
 * come through rd_kafka_poll(), which nothing calls while the bridge waits on
 * SQS, and an idle producer does not reconnect by itself, so neither would
 * say when the brokers are back. A request answers both within seconds. */
static void *broker_watch(void *arg)
{
	struct bridge *b = arg;
	bool up = true;
	pthread_mutex_lock(&b->watch_mu);
	while (!b->watch_stop) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += WATCH_EVERY_S;
		pthread_cond_timedwait(&b->watch_cv, &b->watch_mu, &until);
		if (b->watch_stop)
			break;
		pthread_mutex_unlock(&b->watch_mu);
		const struct rd_kafka_metadata *md = NULL;
		rd_kafka_resp_err_t err = rd_kafka_metadata(b->rk, 0, NULL, &md, WATCH_TIMEOUT_MS);
		bool now_up = !err && md && md->broker_cnt > 0;
		if (md)
			rd_kafka_metadata_destroy(md);
		if (now_up != up) {
			if (now_up)
				th_log_info("bridge", "Kafka brokers reachable again: ready");
			else
				th_log_err("bridge", "no Kafka broker answers (%s): not ready until one "
						     "does", rd_kafka_err2str(err));
			th_metrics_broker_up(now_up);
			up = now_up;
		}
		pthread_mutex_lock(&b->watch_mu);
	}
	pthread_mutex_unlock(&b->watch_mu);
	return NULL;
}

static void broker_watch_stop(struct bridge *b)
{
	if (!b->watching)
		return;
	pthread_mutex_lock(&b->watch_mu);
	b->watch_stop = true;
	pthread_cond_signal(&b->watch_cv);
	pthread_mutex_unlock(&b->watch_mu);
	pthread_join(b->watch, NULL);
	pthread_cond_destroy(&b->watch_cv);
	pthread_mutex_destroy(&b->watch_mu);
	b->watching = false;
}

/* ---- the ledger ---- */

/* ledger_catch_up()'s return when a stop signal came first */
#define LEDGER_STOPPED 1

/* Read what the ledger holds now (read_committed); at start until every
 * partition reached its end, later whatever has arrived. 0, LEDGER_STOPPED
 * or an error (TH_E*, b->errstr says what). */
static int ledger_catch_up(struct bridge *b, bool to_end)
{
	int todo = 0, ret = 0;
	bool *done = NULL; /* by partition id: read to its end */
	int32_t max_id = -1;
	rd_kafka_topic_partition_list_t *asg = NULL;
	if (to_end) {
		if (rd_kafka_assignment(b->ledger, &asg) || !asg)
			return TH_EKAFKA;
		for (int i = 0; i < asg->cnt; i++)
			if (asg->elems[i].partition > max_id)
				max_id = asg->elems[i].partition;
		if (!(done = calloc((size_t)max_id + 1, sizeof(*done)))) {
			rd_kafka_topic_partition_list_destroy(asg);
			return TH_ENOMEM;
		}
		for (int i = 0; i < asg->cnt; i++) {
			int64_t lo = 0, hi = 0;
			int32_t id = asg->elems[i].partition;
			if (!*b->run) {
				rd_kafka_topic_partition_list_destroy(asg);
				free(done);
				return LEDGER_STOPPED;
			}
			/* an empty partition need not report its end: done now */
			if (th_kafka_watermarks(b->ledger, asg->elems[i].topic, id, &lo, &hi,
						10000) == RD_KAFKA_RESP_ERR_NO_ERROR &&
			    lo == hi)
				done[id] = true;
			else
				todo++;
		}
		rd_kafka_topic_partition_list_destroy(asg);
	}
	int64_t deadline = now_ms() + 120000;
	while (!to_end || todo > 0) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(b->ledger, to_end ? 500 : 0);
		if (!m) {
			if (!to_end)
				break;
			if (!*b->run) {
				ret = LEDGER_STOPPED;
				break;
			}
			if (now_ms() > deadline) {
				th_errstr(b->errstr, sizeof(b->errstr),
					  "ledger topic %s: not read to its end in 120 s",
					  b->cf->bridge_ledger_topic);
				ret = TH_EKAFKA;
				break;
			}
			continue;
		}
		if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
			if (to_end && m->partition >= 0 && m->partition <= max_id &&
			    !done[m->partition]) {
				done[m->partition] = true;
				todo--;
			}
		} else if (m->err) {
			th_errstr(b->errstr, sizeof(b->errstr), "ledger topic %s: %s",
				  b->cf->bridge_ledger_topic, rd_kafka_message_errstr(m));
			ret = TH_EKAFKA;
		} else if (m->key && m->key_len < MARKER_MAX && m->payload) {
			char k[MARKER_MAX];
			int64_t t;
			memcpy(k, m->key, m->key_len);
			k[m->key_len] = '\0';
			/* a file SQS can no longer deliver needs no marker in memory */
			if (b->keep_from_ms && marker_delivered(k, &t) == 0 && t < b->keep_from_ms)
				b->markers_old++;
			else
				ret = markers_add(&b->seen, k);
		}
		rd_kafka_message_destroy(m);
		if (ret)
			break;
	}
	free(done);
	return ret;
}

/* The live bridge: once an hour, forget the markers of files delivered
 * longer ago than bridge_ledger_retention (its own and other instances'), so
 * months of running hold what a fresh start would. */
static void ledger_prune(struct bridge *b)
{
	int64_t now = now_ms();
	if (b->o->backfill || !b->cf->bridge_ledger_retention_ms || now < b->next_prune_ms)
		return;
	b->next_prune_ms = now + 3600000;
	b->keep_from_ms = now - b->cf->bridge_ledger_retention_ms;
	long dropped = markers_prune(&b->seen, b->keep_from_ms);
	if (dropped > 0) {
		b->markers_old += (uint64_t)dropped;
		th_log_info("bridge", "ledger: %ld marker(s) older than bridge_ledger_retention "
				      "dropped, %zu held", dropped, b->seen.n);
	}
}

static int ledger_open(struct bridge *b)
{
	/* the ledger is read by assignment, never committed */
	static const char *const defaults[] = {
		"group.id", "trailhound-bridge-ledger",
		"enable.auto.commit", "false",
		"isolation.level", "read_committed",
		"enable.partition.eof", "true",
		NULL,
	};
	rd_kafka_conf_t *conf =
		th_kafka_conf_new(b->cf, "consumer", defaults, b->errstr, sizeof(b->errstr));
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_topic_partition_list_t *parts = NULL;
	rd_kafka_topic_t *rkt = NULL;
	int rc = TH_EKAFKA;
	if (!conf)
		return TH_ECONFIG;
	if (!(b->ledger = rd_kafka_new(RD_KAFKA_CONSUMER, conf, b->errstr, sizeof(b->errstr)))) {
		rd_kafka_conf_destroy(conf);
		return TH_ECONFIG;
	}
	rkt = rd_kafka_topic_new(b->ledger, b->cf->bridge_ledger_topic, NULL);
	rd_kafka_resp_err_t err = rd_kafka_metadata(b->ledger, 0, rkt, &md, 15000);
	if (err || md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt < 1) {
		th_errstr(b->errstr, sizeof(b->errstr),
			  "ledger topic %s: %s (create it, compacted: cleanup.policy=compact)",
			  b->cf->bridge_ledger_topic,
			  rd_kafka_err2str(err ? err : md->topic_cnt ? md->topics[0].err
								     : RD_KAFKA_RESP_ERR_UNKNOWN));
		rc = TH_ECONFIG;
		goto cleanup;
	}
	parts = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
	/* A file is published after its delivery, so the markers of files
	 * delivered since keep_from were written since then: start each
	 * partition at that time (a day earlier, for a clock that is off), not
	 * at the beginning of months of markers. An offset lookup that fails
	 * reads from the beginning: slower, never fewer markers. */
	for (int i = 0; i < md->topics[0].partition_cnt; i++)
		rd_kafka_topic_partition_list_add(parts, b->cf->bridge_ledger_topic,
						  md->topics[0].partitions[i].id)
			->offset = b->keep_from_ms ? b->keep_from_ms - 86400000 : RD_KAFKA_OFFSET_BEGINNING;
	if (b->keep_from_ms &&
	    rd_kafka_offsets_for_times(b->ledger, parts, 15000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		th_log_warn("bridge", "ledger topic %s: no offset lookup by time; read from the "
				      "beginning", b->cf->bridge_ledger_topic);
		for (int i = 0; i < parts->cnt; i++)
			parts->elems[i].offset = RD_KAFKA_OFFSET_BEGINNING;
	}
	for (int i = 0; b->keep_from_ms && i < parts->cnt; i++) {
		/* no marker that late: nothing to read there (END) */
		if (parts->elems[i].err || parts->elems[i].offset < 0)
			parts->elems[i].offset = parts->elems[i].err ? RD_KAFKA_OFFSET_BEGINNING
								     : RD_KAFKA_OFFSET_END;
	}
	if (rd_kafka_assign(b->ledger, parts)) {
		th_errstr(b->errstr, sizeof(b->errstr), "ledger topic: assign failed");
		goto cleanup;
	}
	rc = ledger_catch_up(b, true);
	if (!rc && b->keep_from_ms) {
		char day[32];
		time_t secs = (time_t)(b->keep_from_ms / 1000);
		struct tm tm;
		gmtime_r(&secs, &tm);
		strftime(day, sizeof(day), "%Y-%m-%dT%H:%MZ", &tm);
		th_log_info("bridge",
			    "ledger %s: %zu file(s) published before held; %" PRIu64
			    " marker(s) of files delivered before %s read and not held, "
			    "earlier-written ones not read (%s)",
			    b->cf->bridge_ledger_topic, b->seen.n, b->markers_old, day,
			    b->o->backfill ? "before --since" : "bridge_ledger_retention");
	} else if (!rc) {
		th_log_info("bridge", "ledger %s: %zu file(s) published before held",
			    b->cf->bridge_ledger_topic, b->seen.n);
	}
cleanup:
	if (md)
		rd_kafka_metadata_destroy(md);
	if (rkt)
		rd_kafka_topic_destroy(rkt);
	rd_kafka_topic_partition_list_destroy(parts);
	return rc;
}

/* ---- one file ---- */

static int sink_event(void *ctx, const struct th_event *ev, const char *raw, size_t raw_len,
		      uint64_t offset)
{
	struct bridge *b = ctx;
	const char *acct = th_event_account(ev);
	if (offset + raw_len > b->dec_max) {
		b->f_too_big = true;
		return TH_ETOOBIG;
	}
	for (;;) {
		rd_kafka_resp_err_t err = rd_kafka_producev(
			b->rk, RD_KAFKA_V_TOPIC(b->topic),
			RD_KAFKA_V_KEY(acct, acct ? strlen(acct) : 0),
			RD_KAFKA_V_VALUE((void *)raw, raw_len),
			RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
		if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
			/* a frozen broker keeps the queue full until
			 * message.timeout.ms (5 min): a stop signal stops the file */
			if (!*b->run)
				return TH_EIO;
			rd_kafka_poll(b->rk, 50);
			heartbeat(b);
			continue;
		}
		if (err) {
			th_log_warn("bridge", "produce: %s", rd_kafka_err2str(err));
			b->f_err = TH_EKAFKA;
			return TH_EKAFKA;
		}
		break;
	}
	if (b->f_events == 0 && b->stall_ms) {
		/* test hook (TH_BRIDGE_TEST_STALL_MS): a file that takes long, so
		 * the test can see the visibility kept up meanwhile */
		for (long waited = 0; waited < b->stall_ms && *b->run; waited += 100) {
			usleep(100000);
			heartbeat(b);
		}
	}
	if (++b->f_events % 1000 == 0) {
		rd_kafka_poll(b->rk, 0);
		heartbeat(b);
	}
	return *b->run ? 0 : TH_EIO;
}

static void sink_reject(void *ctx, enum th_reject why, const char *detail, const char *raw,
			size_t raw_len, uint64_t offset)
{
	struct bridge *b = ctx;
	char off[32];
	snprintf(off, sizeof(off), "%" PRIu64, offset);
	b->f_rejects++;
	/* counted when the file's transaction commits: an aborted file is read
	 * again (the next receive), and its rejects with it */
	th_metrics_staged_reject(why);
	th_log_debug("bridge", "s3://%s/%s: byte %" PRIu64 ": rejected (%s): %s", b->obj->bucket,
		     b->obj->key, offset, th_reject_name(why), detail);
	/* the worker's dead-letter rule: original bytes, reason headers */
	rd_kafka_resp_err_t err = rd_kafka_producev(
		b->rk, RD_KAFKA_V_TOPIC(b->cf->dead_letter_topic),
		RD_KAFKA_V_VALUE((void *)raw, raw_len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
		RD_KAFKA_V_HEADER("reason", th_reject_name(why), -1),
		RD_KAFKA_V_HEADER("detail", detail, -1),
		RD_KAFKA_V_HEADER("source.bucket", b->obj->bucket, -1),
		RD_KAFKA_V_HEADER("source.key", b->obj->key, -1),
		RD_KAFKA_V_HEADER("record.byte_offset", off, -1), RD_KAFKA_V_END);
	if (err)
		b->f_err = TH_EKAFKA;
}

/* Commit the open transaction (examples/transactions.c's error handling). */
static enum outcome commit(struct bridge *b)
{
	for (;;) {
		heartbeat(b);
		int64_t c0 = now_ms();
		rd_kafka_error_t *e = rd_kafka_commit_transaction(b->rk, 60000);
		if (!e) {
			th_metrics_commit_seconds((double)(now_ms() - c0) / 1000.0);
			th_metrics_add(TH_M_TXN_COMMITTED, 1);
			return F_PUBLISHED;
		}
		/* A stop signal ends the retries (as the worker's): a broker that
		 * stays frozen times the commit out again and again, while the
		 * messages wait for message.timeout.ms (5 min), longer than any
		 * grace period. Fatal: exit 5, the file stays on the queue and
		 * the restart's init_transactions aborts the transaction. */
		if (rd_kafka_error_is_retriable(e) && *b->run) {
			rd_kafka_error_destroy(e);
			continue;
		}
		bool abortable = rd_kafka_error_txn_requires_abort(e);
		th_log_err("bridge", "commit: %s", rd_kafka_error_string(e));
		rd_kafka_error_destroy(e);
		if (!abortable)
			return F_FATAL;
		th_metrics_add(TH_M_TXN_ABORTED, 1);
		if ((e = rd_kafka_abort_transaction(b->rk, 60000))) {
			th_log_err("bridge", "abort: %s", rd_kafka_error_string(e));
			rd_kafka_error_destroy(e);
			return F_FATAL;
		}
		return F_RETRY;
	}
}

static enum outcome abort_txn(struct bridge *b)
{
	th_metrics_add(TH_M_TXN_ABORTED, 1);
	rd_kafka_error_t *e = rd_kafka_abort_transaction(b->rk, 60000);
	if (!e)
		return F_RETRY;
	th_log_err("bridge", "abort: %s", rd_kafka_error_string(e));
	rd_kafka_error_destroy(e);
	return F_FATAL;
}

static enum outcome begin(struct bridge *b)
{
	rd_kafka_error_t *e = rd_kafka_begin_transaction(b->rk);
	if (!e)
		return F_PUBLISHED;
	th_log_err("bridge", "begin transaction: %s", rd_kafka_error_string(e));
	rd_kafka_error_destroy(e);
	return F_FATAL;
}

/* One more of a run's counts (logged at its end) and of its /metrics counter. */
static void tally(uint64_t *n, enum th_counter c)
{
	(*n)++;
	th_metrics_add(c, 1);
}

/* GET the object into an unlinked temporary file (so a truncated download
 * never reaches Kafka), then frame and publish it in one transaction. */
static enum outcome publish_file(struct bridge *b, const struct th_s3_obj *o, char *why,
				 size_t why_size)
{
	char url[4608], marker[MARKER_MAX], path[64], tmpl[512];
	const char *tmpdir = getenv("TMPDIR");
	struct th_aws_resp r = {0};
	struct th_input *in = NULL;
	const struct th_aws_creds *cr;
	enum outcome out = F_UNREADABLE;
	int fd = -1, rc;

	int64_t delivered;
	if (b->keep_from_ms && th_bridge_key_time(o->key, &delivered) == 0 &&
	    delivered < b->keep_from_ms)
		th_log_warn("bridge",
			    "s3://%s/%s: delivered before the ledger's markers held "
			    "(bridge_ledger_retention): published again if it was before",
			    o->bucket, o->key);
	if (o->etag[0]) {
		marker_of(o, o->etag, marker, sizeof(marker));
		ledger_catch_up(b, false);
		if (markers_has(&b->seen, marker))
			return F_SKIPPED;
	}
	th_log_debug("bridge", "s3://%s/%s: fetching", o->bucket, o->key);
	snprintf(tmpl, sizeof(tmpl), "%s/trailhound-bridge.XXXXXX", tmpdir ? tmpdir : "/tmp");
	if ((fd = mkstemp(tmpl)) < 0) {
		snprintf(why, why_size, "temporary file in %s: %s", tmpdir ? tmpdir : "/tmp",
			 strerror(errno));
		return F_RETRY;
	}
	unlink(tmpl);
	if (th_aws_s3_url(&b->t, o->bucket, o->key, url, sizeof(url))) {
		snprintf(why, why_size, "key too long");
		goto cleanup;
	}
	if (o->version[0]) {
		char ev[1200];
		size_t ul = strlen(url);
		if (th_aws_uri_encode(o->version, ev, sizeof(ev)) == 0)
			snprintf(url + ul, sizeof(url) - ul, "?versionId=%s", ev);
	}
	for (int attempt = 0; attempt < 2; attempt++) {
		if (th_aws_creds_get(b->creds, attempt > 0, &cr, b->errstr, sizeof(b->errstr))) {
			snprintf(why, why_size, "%s", b->errstr);
			out = F_AUTH;
			goto cleanup;
		}
		struct th_aws_req rq = {.method = "GET",
					.url = url,
					.service = "s3",
					.region = b->t.region,
					.creds = cr,
					.out_fd = fd,
					.max_bytes = (uint64_t)b->cf->bridge_object_max_mb << 20,
					.timeout_s = 3600,
					.progress = on_progress,
					.progress_ctx = b};
		if (ftruncate(fd, 0) || lseek(fd, 0, SEEK_SET) < 0) {
			snprintf(why, why_size, "temporary file: %s", strerror(errno));
			goto cleanup;
		}
		th_aws_resp_free(&r);
		rc = th_aws_request(&rq, &r, b->errstr, sizeof(b->errstr));
		if (rc) {
			snprintf(why, why_size, "GET: %.900s", b->errstr);
			if (th_aws_transient(rc, 0, ""))
				out = F_RETRY;
			goto cleanup;
		}
		if (r.status == 400 && strcmp(r.code, "ExpiredToken") == 0)
			continue;
		break;
	}
	if (r.status != 200 && wrong_region(b, o->bucket, &r, why, why_size)) {
		out = F_AUTH;
		goto cleanup;
	}
	if (r.status != 200) {
		snprintf(why, why_size, "GET: HTTP %ld %s%s%s", r.status, r.code,
			 r.message[0] ? ": " : "", r.message);
		/* our key or signature refused: every file would fail alike, so
		 * stop (exit 4) rather than dead-letter the whole stream; a plain
		 * AccessDenied (bucket policy, KMS) is this file's problem */
		if (strcmp(r.code, "AccessDenied") != 0 && th_aws_auth_error(r.code, r.status))
			out = F_AUTH;
		/* credentials that expired (and did not refresh) are not the
		 * file's fault either: it waits, its receives not counted */
		else if (th_aws_expired_error(r.code))
			out = F_RETRY;
		else if (strcmp(r.code, "RequestTimeTooSkewed") == 0)
			out = F_AUTH;
		/* S3 or the network failing for now (an outage, throttling) is not
		 * the file's fault: it waits on the queue without using up its
		 * receives, else an outage longer than bridge_max_receives
		 * visibility timeouts would dead-letter every good file */
		else if (th_aws_transient(0, r.status, r.code))
			out = F_RETRY;
		goto cleanup;
	}
	marker_of(o, r.etag, marker, sizeof(marker));
	ledger_catch_up(b, false);
	if (markers_has(&b->seen, marker)) {
		out = F_SKIPPED;
		goto cleanup;
	}
	if (lseek(fd, 0, SEEK_SET) < 0) {
		snprintf(why, why_size, "temporary file: %s", strerror(errno));
		goto cleanup;
	}
	/* th_input reads paths; /proc/self/fd reopens the unlinked file */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (th_input_open(&in, path, 0, why, why_size))
		goto cleanup;
	if ((out = begin(b)) != F_PUBLISHED)
		goto cleanup;
	b->obj = o;
	b->f_events = b->f_rejects = 0;
	b->f_err = 0;
	b->f_too_big = false;
	b->dec_max = (uint64_t)b->cf->bridge_object_max_mb << 20;
	struct th_sink sink = {sink_event, sink_reject, b};
	/* no record of a log file is later than its delivery: a backfill of
	 * last year must not publish one dated this week (the workers' clock) */
	th_parser_set_delivered(b->parser, th_archive_delivered(o->key));
	rc = th_input_run(in, b->parser, &sink);
	if (rc || b->f_err || !*b->run) {
		if (b->f_too_big)
			snprintf(why, why_size, "decompressed over bridge_object_max_mb (%ld MiB)",
				 b->cf->bridge_object_max_mb);
		else if (b->f_err)
			snprintf(why, why_size, "produce failed");
		else if (!*b->run)
			snprintf(why, why_size, "stopped");
		else
			snprintf(why, why_size, "corrupt or truncated file (%s)", th_strerror(rc));
		out = abort_txn(b);
		if (out == F_RETRY && !b->f_err && *b->run)
			out = F_UNREADABLE;
		goto cleanup;
	}
	char val[MARKER_MAX + 256];
	snprintf(val, sizeof(val),
		 "{\"events\":%" PRIu64 ",\"rejected\":%" PRIu64 ",\"published_ms\":%" PRId64 "}",
		 b->f_events, b->f_rejects, now_ms());
	if (rd_kafka_producev(b->rk, RD_KAFKA_V_TOPIC(b->cf->bridge_ledger_topic),
			      RD_KAFKA_V_KEY(marker, strlen(marker)),
			      RD_KAFKA_V_VALUE(val, strlen(val)),
			      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) {
		snprintf(why, why_size, "marker produce failed");
		out = abort_txn(b);
		goto cleanup;
	}
	/* test hook (tests/kafka/test_kafka_bridge.py): kill -9 mid-file, the
	 * events and the marker produced, the transaction open */
	if (getenv("TH_BRIDGE_TEST_KILL_BEFORE_COMMIT")) {
		rd_kafka_flush(b->rk, 5000);
		raise(SIGKILL);
	}
	if ((out = commit(b)) == F_PUBLISHED) {
		markers_add(&b->seen, marker);
		tally(&b->st->files, TH_M_BRIDGE_FILES_PUBLISHED);
		b->st->events += b->f_events;
		th_metrics_add(TH_M_EVENTS_PARSED, b->f_events);
		b->st->rejected += b->f_rejects;
		th_log_info("bridge", "s3://%s/%s: %" PRIu64 " events, %" PRIu64 " rejected",
			    o->bucket, o->key, b->f_events, b->f_rejects);
		th_metrics_staged_commit();
	} else {
		snprintf(why, why_size, "transaction %s", out == F_FATAL ? "failed" : "aborted");
	}
cleanup:
	if (out != F_PUBLISHED)
		th_metrics_staged_discard(); /* nothing of the file is visible */
	th_input_close(in);
	th_aws_resp_free(&r);
	if (fd >= 0)
		close(fd);
	return out;
}

/* A file or message given up on: to the dead-letter topic, in a transaction. */
static enum outcome dead_letter(struct bridge *b, const char *reason, const char *detail,
				const char *bucket, const char *key, const char *value,
				size_t value_len)
{
	enum outcome out = begin(b);
	if (out != F_PUBLISHED)
		return out;
	if (rd_kafka_producev(b->rk, RD_KAFKA_V_TOPIC(b->cf->dead_letter_topic),
			      RD_KAFKA_V_VALUE((void *)value, value_len),
			      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
			      RD_KAFKA_V_HEADER("reason", reason, -1),
			      RD_KAFKA_V_HEADER("detail", detail, -1),
			      RD_KAFKA_V_HEADER("source.bucket", bucket, -1),
			      RD_KAFKA_V_HEADER("source.key", key, -1), RD_KAFKA_V_END))
		return abort_txn(b);
	out = commit(b);
	if (out == F_PUBLISHED)
		tally(&b->st->dead_lettered, TH_M_BRIDGE_DEAD_LETTERED);
	return out;
}

/* ---- the live loop ---- */

struct recv_ctx {
	struct bridge *b;
	int rc; /* TH_E* code when the loop must end */
};

static int on_message(void *ctx, const struct th_sqs_msg *m)
{
	struct recv_ctx *rx = ctx;
	struct bridge *b = rx->b;
	static struct th_s3_obj objs[MAX_OBJS];
	int n = 0;
	bool keep = false;
	char why[1024];
	struct pending *pd = NULL;

	for (int i = 0; i < b->n_pend; i++)
		if (strcmp(b->pend[i].receipt, m->receipt) == 0)
			pd = &b->pend[i];
	tally(&b->st->messages, TH_M_BRIDGE_MESSAGES);
	int kind = th_aws_json_notice(m->body, m->body_len, objs, MAX_OBJS, &n);
	if (kind == TH_NOTICE_TEST) {
		th_log_info("bridge", "message %s: test event, deleted", m->id);
		goto done;
	}
	if (kind < 0) {
		th_log_warn("bridge", "message %s: not an S3 or CloudTrail notification%s; "
				      "dead-lettered",
			    m->id, kind == TH_ETOOBIG ? " (too many objects)" : "");
		enum outcome out = dead_letter(b, "unknown_notification",
					       "not an S3 or CloudTrail notification", "", "",
					       m->body, m->body_len);
		if (out == F_FATAL) {
			rx->rc = TH_EFATAL;
			return 1;
		}
		keep = out != F_PUBLISHED;
		goto done;
	}
	for (int i = 0; i < n && *b->run; i++) {
		const struct th_s3_obj *o = &objs[i];
		if (th_bridge_key_skipped(o->key)) {
			th_log_debug("bridge", "s3://%s/%s: digest or Insights file, skipped",
				     o->bucket, o->key);
			continue;
		}
		if (!th_bridge_key_is_log(o->key, NULL)) {
			th_log_info("bridge",
				    "s3://%s/%s: not a CloudTrail log file "
				    "(ACCOUNT_CloudTrail_REGION_YYYYMMDDTHHmmZ_ID.json.gz in a "
				    "CloudTrail/ folder), skipped",
				    o->bucket, o->key);
			continue;
		}
		why[0] = '\0';
		enum outcome out = publish_file(b, o, why, sizeof(why));
		switch (out) {
		case F_PUBLISHED: break;
		case F_SKIPPED:
			tally(&b->st->skipped, TH_M_BRIDGE_FILES_SKIPPED);
			th_log_info("bridge", "s3://%s/%s: published before (ledger), skipped",
				    o->bucket, o->key);
			break;
		case F_UNREADABLE:
			tally(&b->st->unreadable, TH_M_BRIDGE_FILES_UNREADABLE);
			if (m->receive_count >= b->cf->bridge_max_receives) {
				th_log_err("bridge",
					   "s3://%s/%s: %s; received %ld times: dead-lettered",
					   o->bucket, o->key, why, m->receive_count);
				out = dead_letter(b, "file_unreadable", why, o->bucket, o->key,
						  m->body, m->body_len);
				if (out == F_FATAL) {
					rx->rc = TH_EFATAL;
					return 1;
				}
				keep |= out != F_PUBLISHED;
			} else {
				th_log_warn("bridge",
					    "s3://%s/%s: %s; left on the queue (receive %ld of %ld)",
					    o->bucket, o->key, why, m->receive_count,
					    b->cf->bridge_max_receives);
				keep = true;
			}
			break;
		case F_RETRY:
			th_log_warn("bridge", "s3://%s/%s: %s; left on the queue", o->bucket, o->key,
				    why);
			keep = true;
			break;
		case F_AUTH:
			fprintf(stderr, "trailhound bridge: %s\n", why);
			rx->rc = TH_ECONFIG;
			return 1;
		case F_FATAL:
			th_log_err("bridge", "s3://%s/%s: %s: fatal Kafka error", o->bucket, o->key,
				   why);
			rx->rc = TH_EFATAL;
			return 1;
		}
	}
	if (!*b->run)
		keep = true;
done:
	if (pd)
		pd->done = true;
	if (!keep && getenv("TH_BRIDGE_TEST_KILL_BEFORE_DELETE"))
		raise(SIGKILL); /* test hook: committed, message not deleted */
	if (!keep && sqs_simple(b, "DeleteMessage", m->receipt, -1) == TH_ECONFIG) {
		rx->rc = TH_ECONFIG;
		return 1;
	}
	return 0;
}

static int collect_receipt(void *ctx, const struct th_sqs_msg *m)
{
	struct bridge *b = ctx;
	if (b->n_pend < MAX_BATCH) {
		snprintf(b->pend[b->n_pend].receipt, sizeof(b->pend[0].receipt), "%s", m->receipt);
		b->pend[b->n_pend++].done = false;
	}
	return 0;
}

static int live(struct bridge *b)
{
	char body[2048], eurl[1024];
	int64_t idle_since = now_ms();
	int wait = b->o->wait_s > 0 ? b->o->wait_s : (b->o->wait_s < 0 ? 0 : 20);
	if (json_str(b->cf->bridge_queue_url, eurl, sizeof(eurl)))
		return TH_ECONFIG;
	snprintf(body, sizeof(body),
		 "{\"QueueUrl\":\"%s\",\"MaxNumberOfMessages\":%d,\"WaitTimeSeconds\":%d,"
		 "\"VisibilityTimeout\":%ld,\"AttributeNames\":[\"ApproximateReceiveCount\"],"
		 "\"MessageSystemAttributeNames\":[\"ApproximateReceiveCount\"]}",
		 eurl, MAX_BATCH, wait, b->cf->bridge_visibility_s);
	bool expired = false;
	while (*b->run) {
		struct th_aws_resp r = {0};
		/* no sign of life while the credentials are expired: /healthz says so */
		if (!expired)
			th_metrics_heartbeat();
		ledger_prune(b);
		int rc = th_sqs_call(&b->sqs, "ReceiveMessage", body, &r, b->errstr,
				     sizeof(b->errstr));
		if (rc && th_aws_expired_error(r.code)) {
			/* refreshed once already (th_sqs_call): the source has nothing
			 * newer. Environment credentials never will in this process; a
			 * file, container or instance source may, so keep asking */
			const struct th_aws_creds *cr;
			char src[64] = "?", key[8] = "", cerr[256];
			if (th_aws_creds_get(b->creds, false, &cr, cerr, sizeof(cerr)) == 0) {
				snprintf(src, sizeof(src), "%s", cr->source);
				snprintf(key, sizeof(key), "%.4s", cr->akid);
			}
			if (!expired)
				th_log_err("bridge",
					   "the AWS credentials from %s (key %s…) have expired (%s) and "
					   "%s has no newer ones: renew them%s; /healthz answers 503 "
					   "until AWS accepts them",
					   src, key, r.code, src,
					   strcmp(src, "environment") == 0
						   ? " (AWS_SESSION_TOKEN…) and restart the bridge"
						   : "");
			expired = true;
			th_metrics_unhealthy();
			for (int i = 0; i < 50 && *b->run; i++)
				usleep(100000);
			continue;
		}
		if (!rc && expired) {
			th_log_info("bridge", "the AWS credentials are accepted again");
			expired = false;
			th_metrics_heartbeat();
		}
		if (rc == TH_ECONFIG) {
			fprintf(stderr,
				"trailhound bridge: AWS refused the request (check the credentials: "
				"a signature mismatch means a wrong secret key): %s\n",
				b->errstr);
			return TH_ECONFIG;
		}
		if (rc) {
			th_log_warn("bridge", "%s; retrying in 5 s", b->errstr);
			for (int i = 0; i < 50 && *b->run; i++)
				usleep(100000);
			continue;
		}
		b->n_pend = 0;
		b->next_beat_ms = now_ms() + b->cf->bridge_visibility_s * 1000 / 3;
		int n = th_aws_json_sqs_messages(r.body, r.len, collect_receipt, b);
		struct recv_ctx rx = {b, 0};
		if (n > 0)
			th_aws_json_sqs_messages(r.body, r.len, on_message, &rx);
		th_aws_resp_free(&r);
		b->n_pend = 0;
		if (rx.rc)
			return rx.rc;
		if (n < 0)
			th_log_warn("bridge", "ReceiveMessage: answer not understood");
		if (n > 0)
			idle_since = now_ms();
		else if (b->o->exit_when_idle_ms && now_ms() - idle_since >= b->o->exit_when_idle_ms)
			break;
	}
	return 0;
}

/* ---- backfill ---- */

/* One listed file. The listing holds every file of the period at once (to
 * publish them in delivery order), hundreds of thousands for an organisation
 * trail's month: so only what the publish needs, in one allocation ("key\0etag"),
 * not a th_s3_obj with its fixed-size buffers (2.6 KB a file). */
struct listed {
	char *key; /* owned; the ETag follows its NUL */
	int64_t t;
};

/* What a backfill listing gathers: the files to publish and, when listing
 * with a delimiter, the "folders" one level down. */
struct listing {
	const char *bucket;
	int64_t since;
	struct listed *files;
	size_t n, cap;
	char **dirs;
	size_t n_dirs, cap_dirs;
};

static int cmp_listed(const void *a, const void *b)
{
	const struct listed *x = a, *y = b;
	if (x->t != y->t)
		return x->t < y->t ? -1 : 1;
	return strcmp(x->key, y->key);
}

static int add_file(struct listing *ls, const char *block)
{
	struct listed l = {0};
	char key[sizeof(((struct th_s3_obj *)0)->key)], raw_etag[200];
	const char *be = block + strlen(block);
	th_aws_xml_text(block, be, "Key", key, sizeof(key));
	if (!th_bridge_key_is_log(key, &l.t) || l.t < ls->since)
		return 0;
	th_aws_xml_text(block, be, "ETag", raw_etag, sizeof(raw_etag));
	/* the listing quotes the ETag, a notification does not */
	size_t el = strlen(raw_etag), kl = strlen(key);
	const char *es = raw_etag;
	if (el >= 2 && raw_etag[0] == '"') {
		es++;
		el -= 2;
	}
	if (el >= sizeof(((struct th_s3_obj *)0)->etag))
		el = sizeof(((struct th_s3_obj *)0)->etag) - 1;
	if (!(l.key = malloc(kl + el + 2)))
		return TH_ENOMEM;
	memcpy(l.key, key, kl + 1);
	memcpy(l.key + kl + 1, es, el);
	l.key[kl + 1 + el] = '\0';
	if (ls->n == ls->cap) {
		size_t ncap = ls->cap ? ls->cap * 2 : 256;
		struct listed *nf = realloc(ls->files, ncap * sizeof(*nf));
		if (!nf) {
			free(l.key);
			return TH_ENOMEM;
		}
		ls->files = nf;
		ls->cap = ncap;
	}
	ls->files[ls->n++] = l;
	return 0;
}

static int add_dir(struct listing *ls, const char *dir)
{
	if (ls->n_dirs == ls->cap_dirs) {
		size_t ncap = ls->cap_dirs ? ls->cap_dirs * 2 : 64;
		char **nd = realloc(ls->dirs, ncap * sizeof(*nd));
		if (!nd)
			return TH_ENOMEM;
		ls->dirs = nd;
		ls->cap_dirs = ncap;
	}
	if (!(ls->dirs[ls->n_dirs] = strdup(dir)))
		return TH_ENOMEM;
	ls->n_dirs++;
	return 0;
}

static void drop_dirs(struct listing *ls, size_t from)
{
	for (size_t i = from; i < ls->n_dirs; i++)
		free(ls->dirs[i]);
	ls->n_dirs = from;
}

/* Every page of ListObjectsV2 under prefix (with delim: one level, its
 * folders into ls->dirs). Returns 0 or a TH_E* code. */
static int list_prefix(struct bridge *b, struct listing *ls, const char *prefix, bool delim)
{
	char url[10240], eprefix[3072], token[2048] = "", etoken[6200], base[600];
	/* test hook: small pages, so a test covers the continuation */
	const char *page = getenv("TH_BRIDGE_TEST_LIST_PAGE");
	if (page && strspn(page, "0123456789") != strlen(page))
		page = NULL;
	if (th_aws_uri_encode(prefix, eprefix, sizeof(eprefix)) ||
	    th_aws_s3_url(&b->t, ls->bucket, NULL, base, sizeof(base)))
		return TH_EINVAL;
	for (;;) {
		struct th_aws_resp r;
		const struct th_aws_creds *cr;
		if (th_aws_creds_get(b->creds, false, &cr, b->errstr, sizeof(b->errstr))) {
			fprintf(stderr, "trailhound bridge: %s\n", b->errstr);
			return TH_ECONFIG;
		}
		if (th_aws_uri_encode(token, etoken, sizeof(etoken)))
			return TH_EFATAL;
		/* parameters in canonical (sorted) order, values encoded: curl 7.88
		 * signs the query string as written */
		snprintf(url, sizeof(url), "%s?%s%s%s%slist-type=2%s%s&prefix=%s", base,
			 token[0] ? "continuation-token=" : "", token[0] ? etoken : "",
			 token[0] ? "&" : "", delim ? "delimiter=%2F&" : "",
			 page ? "&max-keys=" : "", page ? page : "", eprefix);
		struct th_aws_req rq = {.method = "GET", .url = url, .service = "s3",
					.region = b->t.region, .creds = cr, .out_fd = -1,
					.timeout_s = 120};
		int rrc = th_aws_request(&rq, &r, b->errstr, sizeof(b->errstr));
		if (!rrc && wrong_region(b, ls->bucket, &r, b->errstr, sizeof(b->errstr))) {
			fprintf(stderr, "trailhound bridge: ListObjectsV2 s3://%s/%s: %s\n",
				ls->bucket, prefix, b->errstr);
			th_aws_resp_free(&r);
			return TH_ECONFIG;
		}
		if (rrc || r.status != 200) {
			fprintf(stderr,
				"trailhound bridge: ListObjectsV2 s3://%s/%s: %s%s HTTP %ld %s %s\n",
				ls->bucket, prefix, r.status ? "" : b->errstr, r.status ? "" : ";",
				r.status, r.code, r.message);
			int ret = th_aws_auth_error(r.code, r.status) ? TH_ECONFIG
								      : TH_EFATAL;
			th_aws_resp_free(&r);
			return ret;
		}
		const char *p = r.body, *end = r.body + r.len;
		char block[8192], trunc[16];
		while ((p = th_aws_xml_text(p, end, "Contents", block, sizeof(block))))
			if (add_file(ls, block)) {
				th_aws_resp_free(&r);
				return TH_EFATAL;
			}
		for (p = r.body; delim && (p = th_aws_xml_text(p, end, "CommonPrefixes", block,
								 sizeof(block)));) {
			char dir[1100];
			th_aws_xml_text(block, block + strlen(block), "Prefix", dir, sizeof(dir));
			if (dir[0] && add_dir(ls, dir)) {
				th_aws_resp_free(&r);
				return TH_EFATAL;
			}
		}
		th_aws_xml_text(r.body, end, "IsTruncated", trunc, sizeof(trunc));
		th_aws_xml_text(r.body, end, "NextContinuationToken", token, sizeof(token));
		th_aws_resp_free(&r);
		th_log_debug("bridge", "ListObjectsV2 page s3://%s/%s: %zu file(s) so far%s",
			     ls->bucket, prefix, ls->n, strcmp(trunc, "true") == 0 ? ", more" : "");
		if (strcmp(trunc, "true") != 0 || !token[0])
			return 0;
	}
}

/* Where a folder (a prefix ending in '/') lies in a trail's layout,
 * [trail prefix/]AWSLogs/[o-ORGID/]ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/ (the
 * CloudTrail User Guide, "Finding your CloudTrail log files"): how many folders
 * below the account's CloudTrail/ it is (0 CloudTrail/ itself, 1 a region, more
 * inside one), or -1 when it is not at or below one. Anchored on AWSLogs/ and
 * the account, so a trail prefix that is itself called "CloudTrail" is not
 * taken for the folder of the log files. */
static int trail_depth(const char *dir)
{
	for (const char *a = dir; (a = strstr(a, "AWSLogs/")); a += 8) {
		const char *q = a + 8;
		if (a != dir && a[-1] != '/')
			continue;
		if (strncmp(q, "o-", 2) == 0) {
			const char *sl = strchr(q, '/');
			if (!sl)
				return -1;
			q = sl + 1;
		}
		if (strspn(q, "0123456789") != 12 || q[12] != '/' ||
		    strncmp(q + 13, "CloudTrail/", 11) != 0)
			continue;
		int n = 0;
		for (q += 24; *q; q++)
			n += *q == '/';
		return n;
	}
	return -1;
}

/* The day folders of the period in one region folder (a folder is the UTC
 * delivery day of its files). Returns 0 or a TH_E* code. */
static int list_days(struct bridge *b, struct listing *ls, const char *region)
{
	int64_t day0 = ls->since - ls->since % 86400000;
	int ret = 0;
	for (int64_t t = day0; t <= now_ms() + 86400000 && ret == 0 && *b->run; t += 86400000) {
		char dayp[1200];
		time_t secs = (time_t)(t / 1000);
		struct tm tm;
		gmtime_r(&secs, &tm);
		snprintf(dayp, sizeof(dayp), "%s%04d/%02d/%02d/", region, tm.tm_year + 1900,
			 tm.tm_mon + 1, tm.tm_mday);
		ret = list_prefix(b, ls, dayp, false);
	}
	return ret;
}

/* A folder at or below an account's CloudTrail/ (depth td, trail_depth()):
 * the regions' day folders of the period, or, inside a region, one flat
 * listing (add_file() keeps the files of the period). */
static int walk_trail(struct bridge *b, struct listing *ls, const char *dir, int td)
{
	if (td >= 2)
		return list_prefix(b, ls, dir, false);
	if (td == 1)
		return list_days(b, ls, dir);
	size_t regions = ls->n_dirs;
	int ret = list_prefix(b, ls, dir, true);
	for (size_t j = regions; j < ls->n_dirs && ret == 0 && *b->run; j++)
		ret = list_days(b, ls, ls->dirs[j]);
	drop_dirs(ls, regions);
	return ret;
}

/* With --since: walk the trail's folders (AWSLogs/, o-…/, account/) down to
 * each CloudTrail/<region>/ and list only the day folders inside the period,
 * instead of every key of a years-deep archive. Returns 0 or a TH_E* code. */
static int walk(struct bridge *b, struct listing *ls, const char *prefix, int depth,
		bool in_logs)
{
	size_t first = ls->n_dirs;
	int ret = list_prefix(b, ls, prefix, true);
	size_t last = ls->n_dirs;
	for (size_t i = first; i < last && ret == 0 && *b->run; i++) {
		const char *d = ls->dirs[i];
		size_t dl = strlen(d);
		if (dl >= 19 && strcmp(d + dl - 18, "CloudTrail-Digest/") == 0)
			continue;
		if (dl >= 20 && strcmp(d + dl - 19, "CloudTrail-Insight/") == 0)
			continue;
		int td = trail_depth(d);
		if (td >= 0) {
			ret = walk_trail(b, ls, d, td);
			continue;
		}
		/* the folder's own name */
		const char *nm = d + dl - 1;
		while (nm > d && nm[-1] != '/')
			nm--;
		size_t nl = (size_t)(d + dl - 1 - nm);
		bool awslogs = nl == 7 && strncmp(nm, "AWSLogs", 7) == 0;
		bool acct = nl == 12 && strspn(nm, "0123456789") >= 12;
		bool org = nl > 2 && strncmp(nm, "o-", 2) == 0;
		/* above AWSLogs/ any folder may lead to it (a trail's own prefix);
		 * below it only organisations and accounts do (not vpcflowlogs/,
		 * elasticloadbalancing/, … with their own years of day folders) */
		if (depth < 8 && (in_logs ? org || acct : true))
			ret = walk(b, ls, d, depth + 1, in_logs || awslogs);
	}
	drop_dirs(ls, first);
	return ret;
}

static int backfill(struct bridge *b)
{
	char bucket[256] = "", prefix[1024] = "";
	const char *s = b->o->backfill;
	struct listing ls;
	int ret;

	memset(&ls, 0, sizeof(ls));
	if (strncmp(s, "s3://", 5) != 0) {
		fprintf(stderr, "trailhound bridge: --backfill wants s3://bucket/prefix\n");
		return TH_EINVAL;
	}
	s += 5;
	const char *sl = strchr(s, '/');
	snprintf(bucket, sizeof(bucket), "%.*s", sl ? (int)(sl - s) : (int)strlen(s), s);
	snprintf(prefix, sizeof(prefix), "%s", sl ? sl + 1 : "");
	if (!bucket[0]) {
		fprintf(stderr, "trailhound bridge: --backfill: bad s3:// URL\n");
		return TH_EINVAL;
	}
	ls.bucket = bucket;
	ls.since = b->o->since_ms ? now_ms() - b->o->since_ms : 0;
	/* without --since the whole prefix is wanted: one flat listing is fewer
	 * requests than walking it */
	/* a prefix at or below an account's CloudTrail/ folder (one account, one
	 * region) is walked from there; a partial name ("…/CloudTrail/us-") by
	 * the walk, whose listing completes it into folders */
	size_t pl = strlen(prefix);
	int td = pl && prefix[pl - 1] == '/' ? trail_depth(prefix) : -1;
	if (!b->o->since_ms)
		ret = list_prefix(b, &ls, prefix, false);
	else if (td >= 0)
		ret = walk_trail(b, &ls, prefix, td);
	else
		ret = walk(b, &ls, prefix, 0, strstr(prefix, "AWSLogs/") != NULL);
	if (ret)
		goto cleanup;
	/* delivery order, as the live bridge would have published them */
	qsort(ls.files, ls.n, sizeof(*ls.files), cmp_listed);
	th_log_info("bridge", "backfill s3://%s/%s: %zu file(s) to publish", bucket, prefix, ls.n);
	for (size_t i = 0; i < ls.n && *b->run; i++) {
		char why[1024] = "";
		static struct th_s3_obj obj; /* 2.6 KB: not on the stack */
		const char *key = ls.files[i].key;
		memset(&obj, 0, sizeof(obj));
		snprintf(obj.bucket, sizeof(obj.bucket), "%s", bucket);
		snprintf(obj.key, sizeof(obj.key), "%s", key);
		snprintf(obj.etag, sizeof(obj.etag), "%s", key + strlen(key) + 1);
		enum outcome out = publish_file(b, &obj, why, sizeof(why));
		if (out == F_SKIPPED) {
			tally(&b->st->skipped, TH_M_BRIDGE_FILES_SKIPPED);
		} else if (out == F_UNREADABLE || out == F_RETRY) {
			tally(&b->st->unreadable, TH_M_BRIDGE_FILES_UNREADABLE);
			th_log_err("bridge", "s3://%s/%s: %s", bucket, key, why);
			ret = TH_EIO;
		} else if (out == F_AUTH) {
			fprintf(stderr, "trailhound bridge: %s\n", why);
			ret = TH_ECONFIG;
			break;
		} else if (out == F_FATAL) {
			ret = TH_EFATAL;
			break;
		}
	}
cleanup:
	drop_dirs(&ls, 0);
	free(ls.dirs);
	for (size_t i = 0; i < ls.n; i++)
		free(ls.files[i].key);
	free(ls.files);
	return ret;
}

int th_bridge_run(const struct th_config *cf, const struct th_bridge_opts *o,
		  volatile sig_atomic_t *run, struct th_bridge_stats *stats)
{
	struct bridge b;
	struct th_bridge_stats local = {0};
	rd_kafka_conf_t *conf = NULL;
	char tid[300], host[256];
	int ret = 0;
	bool metrics = false;

	memset(&b, 0, sizeof(b));
	b.cf = cf;
	b.o = o;
	b.run = run;
	b.st = stats ? stats : &local;
	memset(b.st, 0, sizeof(*b.st));
	b.t.region = cf->aws_region;
	b.t.endpoint = cf->aws_endpoint;
	b.topic = cf->input_topics[0];
	if (getenv("TH_BRIDGE_TEST_STALL_MS"))
		b.stall_ms = strtol(getenv("TH_BRIDGE_TEST_STALL_MS"), NULL, 10);
	if (!o->backfill && !cf->bridge_queue_url[0]) {
		fprintf(stderr, "trailhound bridge: set bridge_queue_url (or use --backfill)\n");
		return TH_ECONFIG;
	}
	if (th_aws_global_init() || th_aws_creds_new(&b.creds, &b.t)) {
		ret = TH_EFATAL;
		goto cleanup;
	}
	b.sqs = (struct th_sqs){&b.t, b.creds, cf->bridge_queue_url};
	const struct th_aws_creds *cr;
	if (th_aws_creds_get(b.creds, false, &cr, b.errstr, sizeof(b.errstr))) {
		fprintf(stderr, "trailhound bridge: %s\n", b.errstr);
		ret = TH_ECONFIG;
		goto cleanup;
	}
	if (th_parser_new(&b.parser, (size_t)cf->record_max)) {
		ret = TH_EFATAL;
		goto cleanup;
	}
	/* the worker's /metrics, /healthz, /readyz; stale after two ReceiveMessage
	 * waits or a visibility period without a sign of life */
	th_metrics_serve_bridge(); /* the trailhound_bridge_* series, from the start */
	if (cf->metrics_listen[0]) {
		double stale = 2.0 * 20 + (double)cf->bridge_visibility_s + 30.0;
		if (th_metrics_start(cf->metrics_listen, stale, b.errstr, sizeof(b.errstr))) {
			fprintf(stderr, "trailhound bridge: %s\n", b.errstr);
			ret = TH_ECONFIG;
			goto cleanup;
		}
		metrics = true;
	}
	th_parser_set_max_future_skew(b.parser, cf->max_future_skew_ms);

	if (cf->bridge_transactional_id[0]) {
		snprintf(tid, sizeof(tid), "%s", cf->bridge_transactional_id);
	} else {
		if (gethostname(host, sizeof(host)))
			snprintf(host, sizeof(host), "unknown");
		host[sizeof(host) - 1] = '\0';
		snprintf(tid, sizeof(tid), "trailhound-bridge-%s", host);
	}
	if (!(conf = th_bridge_producer_conf(cf, b.errstr, sizeof(b.errstr))) ||
	    rd_kafka_conf_set(conf, "transactional.id", tid, b.errstr, sizeof(b.errstr)) ||
	    /* a big file is one transaction: give it time (the broker caps this
	     * at transaction.max.timeout.ms, 15 min by default) */
	    rd_kafka_conf_set(conf, "transaction.timeout.ms", "600000", b.errstr,
			      sizeof(b.errstr))) {
		fprintf(stderr, "trailhound bridge: %s\n", b.errstr);
		ret = TH_ECONFIG;
		goto cleanup;
	}
	if (!(b.rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, b.errstr, sizeof(b.errstr)))) {
		fprintf(stderr, "trailhound bridge: %s\n", b.errstr);
		ret = TH_ECONFIG;
		goto cleanup;
	}
	conf = NULL;
	/* fences an older bridge with this id and aborts what it left open; in
	 * 1 s slices for up to a minute, so that SIGTERM while the brokers are
	 * still unreachable stops the start at once (exit 0, as the worker)
	 * instead of after the minute with exit 5 */
	rd_kafka_error_t *e;
	for (int waited = 0;; waited++) {
		e = rd_kafka_init_transactions(b.rk, 1000);
		if (!e || !rd_kafka_error_is_retriable(e) || waited >= 59)
			break;
		rd_kafka_error_destroy(e);
		e = NULL;
		if (!*run) {
			th_log_info("bridge", "stopped while waiting for the brokers %s",
				    cf->brokers);
			ret = 0;
			goto cleanup;
		}
	}
	if (e) {
		rd_kafka_resp_err_t ierr = rd_kafka_error_code(e);
		/* a missing ACL: no restart grants it (exit 4, as the worker) */
		bool acl = ierr == RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED ||
			   ierr == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED;
		if (acl)
			fprintf(stderr,
				"trailhound bridge: init_transactions: %s (grant the bridge's "
				"principal Write and Describe on TransactionalId %s, and Cluster "
				"IdempotentWrite on brokers before 3.0: docs/operations.md)\n",
				rd_kafka_error_string(e), tid);
		else
			fprintf(stderr, "trailhound bridge: init_transactions: %s\n",
				rd_kafka_error_string(e));
		rd_kafka_error_destroy(e);
		ret = acl ? TH_ECONFIG : TH_EFATAL;
		goto cleanup;
	}
	th_metrics_broker_up(true); /* init_transactions reached the coordinator */
	/* markers worth holding: the live bridge those SQS may still deliver,
	 * a backfill those of its period (all without --since) */
	if (o->backfill)
		b.keep_from_ms = o->since_ms ? now_ms() - o->since_ms : 0;
	else if (cf->bridge_ledger_retention_ms)
		b.keep_from_ms = now_ms() - cf->bridge_ledger_retention_ms;
	b.next_prune_ms = now_ms() + 3600000;
	int rc = ledger_open(&b);
	if (rc == LEDGER_STOPPED) {
		/* SIGTERM while the start reads the ledger (its broker slow or
		 * away): a clean stop, as while waiting for the brokers above */
		th_log_info("bridge", "stopped while reading the ledger %s",
			    cf->bridge_ledger_topic);
		ret = 0;
		goto cleanup;
	}
	if (rc) {
		fprintf(stderr, "trailhound bridge: %s\n", b.errstr);
		ret = rc == TH_ECONFIG ? TH_ECONFIG : TH_EFATAL;
		goto cleanup;
	}
	/* /readyz: the ledger is read (the bridge's "assignment"; it owns no
	 * input partition, so trailhound_partitions_assigned stays 0), the
	 * broker reached, the loop alive */
	th_metrics_set_gauge(TH_G_ASSIGNMENT_HELD, 1);
	th_metrics_heartbeat();
	if (metrics) {
		pthread_mutex_init(&b.watch_mu, NULL);
		pthread_cond_init(&b.watch_cv, NULL);
		if (pthread_create(&b.watch, NULL, broker_watch, &b) == 0) {
			b.watching = true;
		} else {
			pthread_cond_destroy(&b.watch_cv);
			pthread_mutex_destroy(&b.watch_mu);
			th_log_warn("bridge", "no broker watch thread: /readyz will not follow "
					      "the brokers");
		}
	}
	th_log_info("bridge", "transactional id %s, topic %s, %s", tid, b.topic,
		    o->backfill ? o->backfill : cf->bridge_queue_url);
	ret = o->backfill ? backfill(&b) : live(&b);
	th_log_info("bridge",
		    "files=%" PRIu64 " events=%" PRIu64 " rejected=%" PRIu64 " skipped=%" PRIu64
		    " unreadable=%" PRIu64 " dead_lettered=%" PRIu64 " messages=%" PRIu64,
		    b.st->files, b.st->events, b.st->rejected, b.st->skipped, b.st->unreadable,
		    b.st->dead_lettered, b.st->messages);
cleanup:
	broker_watch_stop(&b);
	if (conf)
		rd_kafka_conf_destroy(conf);
	if (b.ledger) {
		rd_kafka_consumer_close(b.ledger);
		rd_kafka_destroy(b.ledger);
	}
	if (b.rk)
		rd_kafka_destroy(b.rk);
	if (metrics)
		th_metrics_stop();
	th_parser_destroy(b.parser);
	th_aws_creds_destroy(b.creds);
	markers_free(&b.seen);
	return ret;
}

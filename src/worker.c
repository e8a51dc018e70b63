/*
 * The Kafka stream worker: consume → detect → produce alerts, dead letters
 * and state changes in one Kafka transaction per batch (see worker.h for the
 * design; librdkafka's examples/transactions.c is the model of the loop).
 */
#include "trailhound/worker.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "trailhound/avro_alert.h"
#include "trailhound/registry.h"
#include "trailhound/detect.h"
#include "trailhound/input.h"
#include "trailhound/kafka_conf.h"
#include "trailhound/log.h"
#include "trailhound/metrics.h"
#include "trailhound/watchdog.h"

/* Separates the input topic from the state key in changelog record keys, so
 * several input topics can share one changelog topic. */
#define CHANGELOG_SEP '\x1e'
#define MAX_PARTS 1024

/* How long the blocking Kafka calls may take. */
#define QUERY_TIMEOUT_MS 10000     /* metadata, watermarks, committed offsets on a rewind, abort */
/* Committed offsets on assignment: a crashed member's open transaction holds
 * them pending (UNSTABLE_OFFSET_COMMIT) until the coordinator aborts it, up to
 * transaction.timeout.ms after it began (assign_wait_ms: the producer's,
 * the same setting as the crashed member's), plus this margin for the
 * broker's scan for timed-out transactions (every 10 s by default) and the
 * abort markers; never less than ASSIGN_TIMEOUT_MS (coordinator may be busy). */
#define ASSIGN_TIMEOUT_MS 30000
#define ASSIGN_MARGIN_MS 20000
/* One committed() call: a stop signal is seen in between. A call that got no
 * answer at all in its slice asks again with twice the slice, up to
 * QUERY_TIMEOUT_MS: each call sends its own request and drops the answer of
 * the one before, so a coordinator slower than a fixed slice (an overloaded
 * broker) would never be heard. */
#define ASSIGN_SLICE_MS 1000
#define INIT_TXN_TIMEOUT_MS 60000  /* init_transactions: fencing waits out the old instance */
#define POLL_MS 200                /* one restore poll; a watermark query to wake a partition */
/* A restore sorts the changelog's records by key before they go into the
 * store (th_state_load): this much memory in all, shared by the partitions
 * restoring together, and spilled as sorted runs to temporary files beside
 * the stores when a partition's share fills (each share at least
 * RESTORE_SORT_MIN). */
#define RESTORE_SORT_BYTES ((size_t)64 << 20)
#define RESTORE_SORT_MIN ((size_t)1 << 20)
/* Changelog records taken from librdkafka's queue per call while restoring. */
#define RESTORE_POLL_BATCH 256
/* The [stats] log line, in seconds of wall time. */
#define STATS_INTERVAL_S 30.0
/* Defaults of the test-tunable th_worker_opts. */
#define DISK_RETRY_MS_DEFAULT 5000
#define TXN_TIMEOUT_MS_DEFAULT 30000
/* A dead letter cut to fit message.max.bytes: room left for its headers
 * (a detail is < 256 bytes, a topic name < 250) and the record framing, and
 * the most of a key kept (an account ID has 12 bytes). */
#define DL_HEADROOM 4096
#define DL_KEY_MAX 1024

struct worker;

/* Where the wall time goes, cumulative per phase (the [stats] line's
 * time.*_ms): the loop should spend it working (consume, detect), not
 * waiting on the transaction. */
enum phase {
	PH_CONSUME,      /* rd_kafka_consumer_poll (waiting for input included) */
	PH_DETECT,       /* parse + detect, less the produce calls it makes */
	PH_PRODUCE,      /* rd_kafka_producev of alerts and dead letters */
	PH_CHANGELOG,    /* detector checkpoint + changelog records of dirty keys */
	PH_SEND_OFFSETS, /* send_offsets_to_transaction */
	PH_COMMIT,       /* commit_transaction (flushes the transaction's output) */
	PH_LMDB,         /* LMDB commits after Kafka committed */
	PH_BEGIN,        /* begin_transaction */
	PH__COUNT
};
static const char *const phase_names[PH__COUNT] = {
	"consume", "detect", "produce", "changelog", "send_offsets", "commit", "lmdb", "begin",
};
_Static_assert(PH__COUNT == TH_WORKER_PHASES, "worker.h's TH_WORKER_PHASES names these phases");

/* One assigned input partition and its state. */
struct part {
	struct worker *w;
	char *topic;
	char *dir; /* its store's directory */
	int32_t partition;
	struct th_state *st;
	struct th_detector *det;
	bool active; /* processed messages in the open transaction */
	bool eof;    /* consumed up to the end of the partition */
	/* Kafka committed up to stuck_offset but the LMDB commit found the disk
	 * full: the changes wait in the store's cache until it has room. */
	bool stuck;
	int64_t stuck_offset;
};

struct worker {
	const struct th_config *cf;
	const struct th_worker_opts *opts;
	volatile sig_atomic_t *run;
	rd_kafka_t *consumer, *producer, *restorer;
	/* the producer's output topics, known (metadata) before the first
	 * transaction: otherwise its first records to each wait for a metadata
	 * refresh inside commit_transaction */
	rd_kafka_topic_t *out_topics[3];
	struct th_enrich *en;
	double reference_checked_at; /* reload_reference: when the files were last looked at */
	struct th_parser *parser;
	struct th_avro_alert *avro;
	struct part *parts[MAX_PARTS];
	int nparts;
	/* the message being processed */
	struct part *cur;
	const rd_kafka_message_t *cur_msg;
	int cur_err;
	/* transaction bookkeeping */
	long msgs_in_txn;
	double txn_started;
	bool txn_open;
	int fatal; /* TH_EFATAL or TH_ECONFIG once the worker must exit, 0 = none */
	/* The first authentication or TLS failure the clients reported: at
	 * startup it ends the wait for the broker with that reason (a wrong
	 * password or an untrusted CA never heals by retrying). */
	char conn_err[384];
	/* the input message whose processing failed last, and how often in a
	 * row: a deterministic failure must not abort → rewind → retry forever */
	char fail_topic[256];
	int32_t fail_partition;
	int64_t fail_offset;
	int fail_count;
	rd_kafka_resp_err_t dl_err; /* the last dead letter's produce */
	int fail_err;
	int max_attempts;
	long disk_retry_ms;
	/* Timeout of the transactional API calls: bounded so a stop signal is
	 * seen during a broker outage; a timed-out commit or abort is retried
	 * (librdkafka lets them resume), a timed-out send_offsets aborts. */
	int txn_timeout_ms;
	size_t max_msg_bytes; /* the producer's message.max.bytes */
	long assign_wait_ms;  /* how long an assignment waits for its committed offsets */
	/* commit_interval_ms, or half the producer's transaction.timeout.ms when
	 * that is shorter: the coordinator aborts a transaction open longer than
	 * its timeout and fences the producer (exit 5, and the same again after
	 * every restart) */
	long commit_every_ms;
	/* disk full: consumption paused until the stuck state commits succeed */
	bool disk_full;
	double disk_retry_at;
	/* scratch */
	struct th_wbuf out, key;
	char *padded;
	size_t padded_cap;
	/* counters */
	uint64_t n_msgs, n_alerts, n_rejects, n_txn, n_aborts, n_restored;
	uint64_t n_lost, n_disk_full, n_part_restores;
	uint64_t rejects_by[TH_REJECT__COUNT];
	double last_stats;
	double last_msg_at;
	double phase_s[PH__COUNT];
	double last_wake;
	int wake_next;
	double first_assign_at; /* for the "caught up" line: assignment to caught up */
	/* metrics (metrics.h): the detectors' counters of closed partitions,
	 * when the registry was last refreshed, and whether "caught up" was
	 * logged since the last assignment */
	struct th_detect_stats retired;
	double last_metrics;
	bool told_caught_up;
	double assigned_at;
	double data_committed_at; /* last commit that held new messages */
	uint64_t msgs_committed;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Charge the time since *t0 to a phase and restart the clock there. */
static void phase_add(struct worker *w, enum phase ph, double *t0)
{
	double t = now_s();
	w->phase_s[ph] += t - *t0;
	*t0 = t;
}

static void set_fatal(struct worker *w, const char *what, const char *why)
{
	th_log_err("worker", "%s: %s", what, why);
	if (!w->fatal)
		w->fatal = TH_EFATAL;
	*w->run = 0;
}

/* ---- configuration of the clients ---- */

static int conf_set(rd_kafka_conf_t *conf, const char *k, const char *v, char *errstr,
		    size_t errstr_size)
{
	if (rd_kafka_conf_set(conf, k, v, errstr, errstr_size) != RD_KAFKA_CONF_OK)
		return TH_ECONFIG;
	return 0;
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	struct worker *w = opaque;
	(void)rk;
	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		char buf[512];
		rd_kafka_resp_err_t ferr = rd_kafka_fatal_error(rk, buf, sizeof(buf));
		th_log_err("kafka", "fatal error %s: %s", rd_kafka_err2name(ferr), buf);
		if (!w->fatal)
			w->fatal = TH_EFATAL;
		*w->run = 0;
		return;
	}
	if ((err == RD_KAFKA_RESP_ERR__AUTHENTICATION || err == RD_KAFKA_RESP_ERR__SSL) &&
	    !w->conn_err[0])
		snprintf(w->conn_err, sizeof(w->conn_err), "%s", reason);
	if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
		th_metrics_broker_up(false);
	th_log_warn("kafka", "%s: %s", rd_kafka_err2name(err), reason);
}

/* librdkafka's statistics (statistics.interval.ms): consumer lag per
 * partition and broker states for /metrics and the [stats] line. */
static int stats_cb(rd_kafka_t *rk, char *json, size_t json_len, void *opaque)
{
	(void)rk;
	(void)opaque;
	if (th_metrics_feed_stats(json, json_len))
		th_log_debug("metrics", "unreadable librdkafka statistics (%zu bytes)", json_len);
	return 0; /* librdkafka frees json */
}

/* ---- per-partition state ---- */

static int on_alert(void *ctx, const struct th_alert *a);

static void retire_stats(struct worker *w, const struct th_detector *det);

static void part_close(struct part *p)
{
	if (!p)
		return;
	if (p->det)
		retire_stats(p->w, p->det);
	th_detector_destroy(p->det);
	th_state_close(p->st);
	free(p->topic);
	free(p->dir);
	free(p);
}

static struct part *part_find(struct worker *w, const char *topic, int32_t partition)
{
	for (int i = 0; i < w->nparts; i++)
		if (w->parts[i]->partition == partition && strcmp(w->parts[i]->topic, topic) == 0)
			return w->parts[i];
	return NULL;
}

/* Delete the files of a partition's state directory (an untrusted store);
 * its contents come back from the changelog. */
static int wipe_dir(const char *dir)
{
	char path[1280];
	int rc = 0;
	DIR *d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : TH_ESTATE;
	for (struct dirent *e; (e = readdir(d));) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= (int)sizeof(path) ||
		    (unlink(path) != 0 && errno != ENOENT)) {
			th_log_err("state", "cannot remove %s: %s", path, strerror(errno));
			rc = TH_ESTATE;
		}
	}
	closedir(d);
	return rc;
}

/* Open a partition's store; *untrusted is set when the store there could not
 * be trusted and was wiped (the caller must restore it from the changelog). */
static int part_open(struct worker *w, const char *topic, int32_t partition, struct part **out,
		     bool *untrusted)
{
	char dir[1024], errstr[512] = "";
	int rc;
	struct part *p = calloc(1, sizeof(*p));
	*untrusted = false;
	if (!p)
		return TH_ENOMEM;
	p->w = w;
	p->partition = partition;
	p->topic = strdup(topic);
	if (!p->topic) {
		rc = TH_ENOMEM;
		goto fail;
	}
	if (snprintf(dir, sizeof(dir), "%s/%s-%d", w->cf->state_dir, topic, (int)partition) >=
	    (int)sizeof(dir)) {
		snprintf(errstr, sizeof(errstr), "state directory name too long");
		rc = TH_ESTATE;
		goto fail;
	}
	if (!(p->dir = strdup(dir))) {
		rc = TH_ENOMEM;
		goto fail;
	}
	rc = th_state_open(&p->st, dir, 0, errstr, sizeof(errstr));
	if (rc == TH_EUNTRUSTED) {
		/* Not closed cleanly across a crash, corrupt, or not ours: its
		 * offset proves nothing. Start empty; the changelog has the state. */
		th_log_warn("state", "%s[%d]: %s: store cannot be trusted (%s): wiping it, restoring "
				     "from the changelog",
			    topic, (int)partition, dir, errstr);
		*untrusted = true;
		errstr[0] = '\0';
		if ((rc = wipe_dir(dir)) == 0)
			rc = th_state_open(&p->st, dir, 0, errstr, sizeof(errstr));
	}
	if (rc)
		goto fail;
	if ((rc = th_detector_new(&p->det, &w->cf->detect, w->en, p->st, on_alert, p))) {
		snprintf(errstr, sizeof(errstr), "detector: %s", th_strerror(rc));
		goto fail;
	}
	*out = p;
	return 0;
fail:
	th_log_err("state", "%s[%d]: %s", topic, (int)partition, errstr[0] ? errstr : th_strerror(rc));
	part_close(p);
	return rc;
}

/* A partition being restored from the changelog (restore_parts). */
struct restore {
	struct part *p;
	int64_t committed; /* the group's committed input offset the state is for */
	uint64_t n;	   /* changelog records applied */
	uint64_t skipped;  /* ... and refused (th_state_load_add: TH_EINVAL) */
	struct th_state_load *ld; /* the records, sorted into the store at the end */
	bool done;
};

/* One message of restore_parts' read: a changelog record added to its
 * partition's load, or a partition's end. The caller destroys @p m. */
static int restore_record(struct restore *rs, int nr, rd_kafka_message_t *m, int *left)
{
	int rc;
	if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
		/* the end of the changelog partition: of every input
		 * partition restoring from it */
		bool was_open = false;
		for (int i = 0; i < nr; i++)
			if (rs[i].p->partition == m->partition && !rs[i].done) {
				rs[i].done = true;
				was_open = true;
			}
		if (was_open)
			(*left)--;
		return 0;
	}
	if (m->err) {
		th_log_warn("restore", "%s", rd_kafka_message_errstr(m));
		return 0;
	}
	/* the input partition whose state this record is: same number,
	 * and the key starts with its topic */
	struct restore *r = NULL;
	const char *k = m->key;
	for (int i = 0; i < nr && !r; i++) {
		size_t tlen = strlen(rs[i].p->topic);
		if (rs[i].p->partition == m->partition && !rs[i].done &&
		    m->key_len > tlen && memcmp(k, rs[i].p->topic, tlen) == 0 &&
		    k[tlen] == CHANGELOG_SEP)
			r = &rs[i];
	}
	if (!r)
		return 0;
	struct part *p = r->p;
	size_t tlen = strlen(p->topic);
	rc = th_state_load_add(r->ld, k + tlen + 1, m->key_len - tlen - 1, m->payload, m->len);
	if (rc == TH_EINVAL) {
		/* A key no worker writes (someone else's write to the
		 * changelog): kept, it would fail this restore at every
		 * restart. Skipped, counted and named; the detector's
		 * records decode their values as untrusted anyway. */
		if (r->skipped++ < 10)
			th_log_warn("restore", "%s[%d]: changelog record at offset %" PRId64
					       " skipped: a key of %zu bytes no worker writes",
				    p->topic, (int)p->partition, m->offset, m->key_len - tlen - 1);
		th_metrics_add(TH_M_RESTORE_SKIPPED, 1);
		return 0;
	}
	if (rc)
		return rc;
	r->n++;
	th_metrics_add(TH_M_RESTORE_RECORDS, 1);
	return 0;
}

/* Read the partitions' changelogs from the start (read_committed) into their
 * wiped stores: the state as of the group's committed offsets. Each
 * partition's records are gathered and sorted by key while they arrive
 * (th_state_load), and written into its store, in key order, once its
 * changelog has ended. A stop signal ends it at once (*stopped, returns 0):
 * nothing reaches the stores, which keep no offset, so the next assignment
 * restores them in full. All of an assignment's partitions are read together
 * by one assign, so their fetches overlap the sorting instead of queueing
 * partition after partition; each ends at its partition-EOF, which the
 * restorer's low fetch.wait.max.ms makes prompt (the last offset is a
 * transaction marker, never a message, so EOF is the only sure end). */
static int restore_parts(struct worker *w, struct restore *rs, int nr, bool *stopped)
{
	rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(nr);
	rd_kafka_resp_err_t err;
	int rc = 0, left = 0;
	double deadline = now_s() + (double)w->cf->restore_timeout_ms / 1000.0;
	size_t share = RESTORE_SORT_BYTES / (size_t)(nr > 0 ? nr : 1);
	rd_kafka_queue_t *q = NULL;
	rd_kafka_message_t *msgs[RESTORE_POLL_BATCH];
	if (share < RESTORE_SORT_MIN)
		share = RESTORE_SORT_MIN;
	*stopped = false;

	for (int i = 0; i < nr; i++) {
		struct part *p = rs[i].p;
		int64_t lo = 0, hi = 0;
		if ((rc = th_state_wipe(p->st)) ||
		    (rc = th_state_load_new(&rs[i].ld, p->st, p->dir, share)))
			goto out;
		th_detector_reset(p->det);
		/* in 1 s asks, so that a stop signal is answered while the
		 * changelog's leader does not (a rolling restart of the brokers) */
		for (int waited = 1000;; waited += 1000) {
			err = th_kafka_watermarks(w->restorer, w->cf->changelog_topic,
						  p->partition, &lo, &hi, 1000);
			if (err != RD_KAFKA_RESP_ERR__TIMED_OUT || waited >= QUERY_TIMEOUT_MS ||
			    !*w->run)
				break;
		}
		if (err && !*w->run) {
			*stopped = true; /* as a stop in the read below: nothing kept */
			break;
		}
		if (err) {
			th_log_err("restore", "%s[%d]: watermarks: %s", w->cf->changelog_topic,
				   (int)p->partition, rd_kafka_err2str(err));
			rc = TH_EKAFKA;
			goto out;
		}
		if (hi <= lo) {
			rs[i].done = true;
			continue;
		}
		/* Several input topics share the changelog: their partitions of
		 * one number restore from the one changelog partition, read once
		 * (an assign may not name a partition twice) and told apart by
		 * the input topic that starts each key. */
		if (!rd_kafka_topic_partition_list_find(tp, w->cf->changelog_topic, p->partition)) {
			rd_kafka_topic_partition_list_add(tp, w->cf->changelog_topic, p->partition)
				->offset = RD_KAFKA_OFFSET_BEGINNING;
			left++;
		}
	}
	if (left && !*stopped && (err = rd_kafka_assign(w->restorer, tp))) {
		th_log_err("restore", "assign: %s", rd_kafka_err2str(err));
		rc = TH_EKAFKA;
		goto out;
	}
	/* the queue rd_kafka_consumer_poll() reads (the restorer has a group.id) */
	if (left && !*stopped && !(q = rd_kafka_queue_get_consumer(w->restorer))) {
		th_log_err("restore", "no consumer queue");
		rc = TH_EKAFKA;
		goto out;
	}
	while (left > 0 && !*stopped && !rc) {
		if (!*w->run) {
			/* SIGTERM: a restore may take restore_timeout_ms; a
			 * rolling deploy must not wait for it (or SIGKILL) */
			*stopped = true;
			break;
		}
		/* in batches: one poll per record spent ~3 % of a restore's
		 * CPU in the poll's locking and clock reads */
		ssize_t got = rd_kafka_consume_batch_queue(q, 20, msgs, RESTORE_POLL_BATCH);
		th_metrics_heartbeat(); /* a restore, however long, is alive */
		if (got <= 0) {
			/* the prefetch ran dry before the end: wake the fetcher
			 * (see wake_fetcher; the same stall, a changelog is read
			 * faster than librdkafka 2.0 refills its queue) */
			for (int i = 0; i < nr; i++) {
				int64_t hi;
				if (rs[i].done)
					continue;
				th_kafka_watermarks(w->restorer, w->cf->changelog_topic,
						    rs[i].p->partition, NULL, &hi, POLL_MS);
				break;
			}
		}
		if (now_s() > deadline) {
			for (int i = 0; i < nr; i++)
				if (!rs[i].done)
					th_log_err("restore", "%s[%d]: timed out after %" PRIu64
							      " records",
						   rs[i].p->topic, (int)rs[i].p->partition, rs[i].n);
			rc = TH_EKAFKA;
		}
		for (ssize_t i = 0; i < got; i++) {
			if (!rc)
				rc = restore_record(rs, nr, msgs[i], &left);
			rd_kafka_message_destroy(msgs[i]);
		}
	}
	if (tp->cnt)
		rd_kafka_assign(w->restorer, NULL);
	for (int i = 0; !rc && *stopped && i < nr; i++) {
		/* Half a state is no state: the load is dropped unwritten. The
		 * wipe covers a partition the stop reached before its wipe above
		 * (a stop while asking for watermarks): every store restoring is
		 * left a new one (empty, no offset) and restores in full next time. */
		if ((rc = th_state_wipe(rs[i].p->st)))
			break;
		th_log_info("restore", "%s[%d]: stopped after %" PRIu64 " state records: nothing "
				       "kept, restores in full next time",
			    rs[i].p->topic, (int)rs[i].p->partition, rs[i].n);
	}
	for (int i = 0; !rc && !*stopped && i < nr; i++) {
		struct part *p = rs[i].p;
		struct th_state_load_stats ls;
		if ((rc = th_state_load_finish(rs[i].ld)) ||
		    (rc = th_state_commit(p->st, rs[i].committed))) {
			/* part of the load is in: not a state at any offset */
			th_log_err("restore", "%s[%d]: writing the store: %s", p->topic,
				   (int)p->partition, th_strerror(rc));
			th_state_wipe(p->st);
			break;
		}
		th_state_load_get_stats(rs[i].ld, &ls);
		w->n_restored += rs[i].n;
		th_log_info("restore", "%s[%d]: %" PRIu64 " state records restored from %s, at offset "
				       "%" PRId64 ": %" PRIu64 " keys in key order, %" PRIu64
				       " store commits, %" PRIu64 " sorted runs (%" PRIu64
				       " bytes) spilled",
			    p->topic, (int)p->partition, rs[i].n, w->cf->changelog_topic,
			    rs[i].committed, ls.written, ls.commits, ls.runs, ls.spilled_bytes);
	}
out:
	for (int i = 0; i < nr; i++) {
		th_state_load_destroy(rs[i].ld);
		rs[i].ld = NULL;
		th_detector_reset(rs[i].p->det);
	}
	if (q)
		rd_kafka_queue_destroy(q);
	rd_kafka_topic_partition_list_destroy(tp);
	return rc;
}

/* ---- the transaction ---- */

static int begin_txn(struct worker *w)
{
	double t0 = now_s();
	rd_kafka_error_t *error = rd_kafka_begin_transaction(w->producer);
	phase_add(w, PH_BEGIN, &t0);
	if (error) {
		set_fatal(w, "begin_transaction", rd_kafka_error_string(error));
		rd_kafka_error_destroy(error);
		return TH_EKAFKA;
	}
	w->txn_open = true;
	w->msgs_in_txn = 0;
	w->txn_started = now_s();
	return 0;
}

struct changelog_ctx {
	struct worker *w;
	struct part *p;
	int err;
};

static int changelog_cb(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct changelog_ctx *cc = ctx;
	struct worker *w = cc->w;
	th_wbuf_reset(&w->key);
	th_put_bytes(&w->key, cc->p->topic, strlen(cc->p->topic));
	th_put_u8(&w->key, (uint8_t)CHANGELOG_SEP);
	th_put_bytes(&w->key, key, klen);
	if (w->key.oom)
		return cc->err = TH_ENOMEM;
	rd_kafka_resp_err_t err = rd_kafka_producev(
		w->producer, RD_KAFKA_V_TOPIC(w->cf->changelog_topic),
		RD_KAFKA_V_PARTITION(cc->p->partition), RD_KAFKA_V_KEY(w->key.p, w->key.len),
		RD_KAFKA_V_VALUE((void *)val, val ? vlen : 0), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
		RD_KAFKA_V_END);
	if (err) {
		th_log_warn("worker", "changelog produce: %s", rd_kafka_err2str(err));
		return cc->err = TH_EKAFKA;
	}
	return 0;
}

/* Roll every partition back to its last committed state and seek the
 * consumer to the committed offsets (examples/transactions.c's
 * rewind_consumer). A rewind that fails is fatal: going on from the current
 * positions would skip the aborted batch. The store of a partition whose
 * LMDB commit waits for disk space (stuck) holds changes Kafka has already
 * committed: those are kept. */
static int rewind_all(struct worker *w)
{
	rd_kafka_topic_partition_list_t *assigned = NULL;
	rd_kafka_error_t *error = NULL;
	rd_kafka_resp_err_t err;
	int rc = 0;

	for (int i = 0; i < w->nparts; i++) {
		struct part *p = w->parts[i];
		if (!p->stuck)
			th_state_rollback(p->st);
		th_detector_reset(p->det);
		p->active = false;
		p->eof = false;
	}
	w->last_msg_at = now_s();
	if ((err = rd_kafka_assignment(w->consumer, &assigned))) {
		set_fatal(w, "rewind: assignment", rd_kafka_err2str(err));
		return TH_EFATAL;
	}
	if (assigned->cnt) {
		th_watchdog_enter("committed", QUERY_TIMEOUT_MS);
		err = rd_kafka_committed(w->consumer, assigned, QUERY_TIMEOUT_MS);
		th_watchdog_leave();
		if (err) {
			set_fatal(w, "rewind: committed offsets", rd_kafka_err2str(err));
			rc = TH_EFATAL;
			goto out;
		}
		for (int i = 0; i < assigned->cnt; i++) {
			rd_kafka_topic_partition_t *tp = &assigned->elems[i];
			if (tp->err) {
				set_fatal(w, "rewind: committed offset", rd_kafka_err2str(tp->err));
				rc = TH_EFATAL;
				goto out;
			}
			if (tp->offset < 0)
				tp->offset = RD_KAFKA_OFFSET_BEGINNING;
		}
		/* Bounded: a seek waits for each partition's fetcher to answer, and
		 * once the group session is lost or the consumer fenced an answer
		 * may never come; a timed-out rewind is fatal (exit 5, restart)
		 * rather than a worker alive and stuck for good. */
		th_watchdog_enter("seek_partitions", QUERY_TIMEOUT_MS);
		error = rd_kafka_seek_partitions(w->consumer, assigned, QUERY_TIMEOUT_MS);
		th_watchdog_leave();
		if (error) {
			set_fatal(w, "rewind: seek", rd_kafka_error_string(error));
			rc = TH_EFATAL;
			goto out;
		}
		for (int i = 0; i < assigned->cnt; i++)
			if (assigned->elems[i].err) {
				set_fatal(w, "rewind: seek", rd_kafka_err2str(assigned->elems[i].err));
				rc = TH_EFATAL;
				goto out;
			}
	}
out:
	if (error)
		rd_kafka_error_destroy(error);
	rd_kafka_topic_partition_list_destroy(assigned);
	return rc;
}

/* Abort the open transaction (retrying a timed-out abort, as librdkafka
 * allows); without rewinding. */
static int abort_only(struct worker *w)
{
	rd_kafka_error_t *error;
	w->n_aborts++;
	th_metrics_add(TH_M_TXN_ABORTED, 1);
	th_metrics_staged_discard(); /* the batch is redone: its alerts come again */
	w->txn_open = false;
	for (;;) {
		th_watchdog_enter("abort_transaction", w->txn_timeout_ms);
		error = rd_kafka_abort_transaction(w->producer, w->txn_timeout_ms);
		th_watchdog_leave();
		if (!error)
			return 0;
		if (rd_kafka_error_is_retriable(error) && !rd_kafka_error_is_fatal(error) &&
		    *w->run) {
			th_log_warn("worker", "abort_transaction: %s: retrying",
				    rd_kafka_error_string(error));
			rd_kafka_error_destroy(error);
			continue;
		}
		set_fatal(w, "abort_transaction", rd_kafka_error_string(error));
		rd_kafka_error_destroy(error);
		return TH_EFATAL;
	}
}

/* Abort, rewind the consumer to the committed offsets, roll the state back. */
static int abort_txn(struct worker *w)
{
	int rc = abort_only(w);
	return rc ? rc : rewind_all(w);
}

/* Pause (or resume) every assigned partition. Paused, the consumer still
 * polls, so it keeps its place in the group. */
static int pause_all(struct worker *w, bool pause)
{
	rd_kafka_topic_partition_list_t *assigned = NULL;
	rd_kafka_resp_err_t err = rd_kafka_assignment(w->consumer, &assigned);
	if (!err)
		err = pause ? rd_kafka_pause_partitions(w->consumer, assigned)
			    : rd_kafka_resume_partitions(w->consumer, assigned);
	if (assigned)
		rd_kafka_topic_partition_list_destroy(assigned);
	if (err) {
		set_fatal(w, pause ? "pause" : "resume", rd_kafka_err2str(err));
		return TH_EFATAL;
	}
	return 0;
}

/* A state commit found the disk full after Kafka had committed. Kafka's
 * side (alerts, changelog, offsets) is durable; the store keeps the changes
 * in its cache and is behind until a retry succeeds. Stop consuming (more
 * input would only pile up more uncommitted state), stay in the group, and
 * retry. A crash meanwhile loses nothing: the store's offset is behind the
 * group's, so the next assignment restores it from the changelog. */
static void disk_full_begin(struct worker *w, const struct part *p)
{
	w->disk_retry_at = now_s() + (double)w->disk_retry_ms / 1000.0;
	if (w->disk_full)
		return;
	w->disk_full = true;
	w->n_disk_full++;
	th_log_err("state",
		   "%s[%d]: state_dir %s is full: the LMDB commit waits (Kafka has committed "
		   "it, nothing is lost); consumption paused, retrying every %ld ms",
		   p->topic, (int)p->partition, w->cf->state_dir, w->disk_retry_ms);
	pause_all(w, true);
}

/* Retry the stuck state commits; once all succeed, resume from the
 * committed offsets (messages fetched while paused were not processed). */
static void disk_full_retry(struct worker *w)
{
	bool still = false;
	if (!w->disk_full || now_s() < w->disk_retry_at)
		return;
	for (int i = 0; i < w->nparts; i++) {
		struct part *p = w->parts[i];
		if (!p->stuck)
			continue;
		int rc = th_state_commit(p->st, p->stuck_offset);
		if (rc == TH_ENOSPC) {
			still = true;
			continue;
		}
		if (rc) {
			set_fatal(w, "state commit", th_strerror(rc));
			return;
		}
		p->stuck = false;
	}
	if (still) {
		w->disk_retry_at = now_s() + (double)w->disk_retry_ms / 1000.0;
		th_log_warn("state", "state_dir %s still full: consumption stays paused",
			    w->cf->state_dir);
		return;
	}
	w->disk_full = false;
	th_log_info("state", "state_dir %s has room again: state committed, consumption resumed",
		    w->cf->state_dir);
	if (!pause_all(w, false))
		rewind_all(w);
}

/* Commit the open transaction: state changes to the changelog, consumer
 * positions with the group metadata, EndTxn; then LMDB. The errors are
 * handled as in examples/transactions.c. Returns 0 when committed (or
 * aborted and rewound), TH_EFATAL when the worker must stop. */
static int commit_txn(struct worker *w)
{
	rd_kafka_topic_partition_list_t *positions = NULL;
	rd_kafka_consumer_group_metadata_t *cgmd = NULL;
	rd_kafka_error_t *error = NULL;
	int rc = 0;

	if (!w->txn_open)
		return 0;
	if (w->msgs_in_txn == 0)
		return 0; /* nothing to commit: keep the transaction open */
	double t0 = now_s();
	for (int i = 0; i < w->nparts; i++) {
		struct part *p = w->parts[i];
		struct changelog_ctx cc = {w, p, 0};
		if (!p->active)
			continue;
		if ((rc = th_detector_checkpoint(p->det)) ||
		    (rc = th_state_dirty_foreach(p->st, changelog_cb, &cc)) || (rc = cc.err))
			goto abortable;
	}
	phase_add(w, PH_CHANGELOG, &t0);
	if (rd_kafka_assignment(w->consumer, &positions) || positions->cnt == 0 ||
	    rd_kafka_position(w->consumer, positions)) {
		/* no assignment (most likely lost): nothing to commit offsets for */
		th_log_warn("worker", "no assignment to commit: aborting the transaction");
		goto abortable;
	}
	cgmd = rd_kafka_consumer_group_metadata(w->consumer);
	th_watchdog_enter("send_offsets_to_transaction", w->txn_timeout_ms);
	error = rd_kafka_send_offsets_to_transaction(w->producer, positions, cgmd,
						     w->txn_timeout_ms);
	th_watchdog_leave();
	phase_add(w, PH_SEND_OFFSETS, &t0);
	if (error) {
		if (rd_kafka_error_is_fatal(error)) {
			set_fatal(w, "send_offsets_to_transaction", rd_kafka_error_string(error));
			rc = TH_EFATAL;
			goto out;
		}
		/* Abortable, or retriable (e.g. timed out): the offsets may not be
		 * part of the transaction, and committing it anyway would commit its
		 * output without its input offsets. Abort and redo the batch. */
		th_log_warn("worker", "send_offsets_to_transaction: %s%s: aborting",
			    rd_kafka_error_string(error),
			    rd_kafka_error_is_retriable(error) ? " (retriable)" : "");
		rd_kafka_error_destroy(error);
		error = NULL;
		goto abortable;
	}
	for (;;) {
		double c0 = t0;
		th_watchdog_enter("commit_transaction", w->txn_timeout_ms);
		error = rd_kafka_commit_transaction(w->producer, w->txn_timeout_ms);
		th_watchdog_leave();
		phase_add(w, PH_COMMIT, &t0);
		th_metrics_commit_seconds(t0 - c0);
		th_metrics_heartbeat(); /* a retried commit is alive */
		if (!error)
			break;
		if (rd_kafka_error_txn_requires_abort(error)) {
			th_log_warn("worker", "commit_transaction: %s: aborting",
				    rd_kafka_error_string(error));
			rd_kafka_error_destroy(error);
			error = NULL;
			goto abortable;
		}
		if (rd_kafka_error_is_retriable(error) && !rd_kafka_error_is_fatal(error) &&
		    *w->run) {
			/* e.g. a timeout: the commit itself may be retried */
			th_log_warn("worker", "commit_transaction: %s: retrying",
				    rd_kafka_error_string(error));
			rd_kafka_error_destroy(error);
			continue;
		}
		set_fatal(w, "commit_transaction", rd_kafka_error_string(error));
		rc = TH_EFATAL;
		goto out;
	}
	w->txn_open = false;
	w->n_txn++;
	th_metrics_add(TH_M_TXN_COMMITTED, 1);
	th_metrics_staged_commit();
	/* The committed positions as the consumer's stored offsets: never
	 * committed by the consumer itself (no auto commit), they only make
	 * librdkafka's statistics report consumer_lag_stored, the lag behind
	 * what the transactions committed (its consumer_lag knows only offsets
	 * the consumer committed, which it never does). */
	rd_kafka_offsets_store(w->consumer, positions);
	if (w->n_msgs > w->msgs_committed) {
		w->msgs_committed = w->n_msgs;
		w->data_committed_at = now_s();
	}
	/* Kafka has committed: now LMDB, with the offsets it committed. */
	for (int i = 0; i < positions->cnt; i++) {
		rd_kafka_topic_partition_t *tp = &positions->elems[i];
		struct part *p = part_find(w, tp->topic, tp->partition);
		if (!p || !p->active)
			continue;
		p->active = false;
		rc = th_state_commit(p->st, tp->offset);
		phase_add(w, PH_LMDB, &t0);
		if (rc == TH_ENOSPC) {
			p->stuck = true;
			p->stuck_offset = tp->offset;
			disk_full_begin(w, p);
			continue;
		}
		if (rc) {
			/* The changelog has it; the next assignment restores. */
			set_fatal(w, "state commit", th_strerror(rc));
			rc = TH_EFATAL;
			goto out;
		}
	}
	rc = begin_txn(w) ? TH_EFATAL : 0;
	goto out;
abortable:
	rc = abort_txn(w) || begin_txn(w) ? TH_EFATAL : 0;
out:
	if (error)
		rd_kafka_error_destroy(error);
	if (cgmd)
		rd_kafka_consumer_group_metadata_destroy(cgmd);
	if (positions)
		rd_kafka_topic_partition_list_destroy(positions);
	return rc;
}

/* ---- reference data, reloaded when its files change ---- */

/* The dates of the data in use, for /metrics: a file that stopped being
 * refreshed upstream is stale however often it is reloaded. */
static void show_reference_dates(const struct th_enrich *en)
{
	int64_t asn_db, aws_ranges;
	th_enrich_built(en, &asn_db, &aws_ranges);
	th_metrics_set_gauge(TH_G_ASN_DB_BUILT, asn_db);
	th_metrics_set_gauge(TH_G_AWS_RANGES_CREATED, aws_ranges);
}

/* ip-ranges.json changes several times a week and the ASN database weekly: a
 * worker that read them once judges a new AWS range as a public network
 * (remote uses, false alerts) until restarted, and a rolling restart of a
 * group rebalances it once per worker. So the files are looked at every
 * reference_check_s and, when one was replaced (a new inode, size or time:
 * `mv` over it, a Kubernetes volume update), loaded again and used from the
 * next event on. Called only between transactions (none open with
 * messages): every decision of a transaction is made with one version. A
 * file that does not load is reported and the loaded data kept. */
static void reload_reference(struct worker *w)
{
	char errstr[512];
	struct th_enrich *en;
	/* the loop runs once per message: read the clock only between
	 * transactions (a busy worker is between them once per commit) */
	if (w->cf->reference_check_s <= 0 || w->msgs_in_txn > 0)
		return;
	double now = now_s();
	if (now - w->reference_checked_at < (double)w->cf->reference_check_s)
		return;
	w->reference_checked_at = now;
	if (!th_enrich_files_changed(w->en))
		return;
	if (th_config_open_enrich((struct th_config *)w->cf, &en, errstr, sizeof(errstr))) {
		th_metrics_add(TH_M_REFERENCE_RELOAD_FAILED, 1);
		th_log_err("enrich", "reference data changed but does not load (%s): going on with "
				     "what was loaded; trying again in %ld s",
			   errstr, w->cf->reference_check_s);
		return;
	}
	for (int i = 0; i < w->nparts; i++)
		th_detector_set_enrich(w->parts[i]->det, en);
	th_enrich_destroy(w->en);
	w->en = en;
	show_reference_dates(en);
	th_metrics_add(TH_M_REFERENCE_RELOADED, 1);
	th_log_info("enrich", "reference data loaded again: used from the next event on");
}

/* ---- rebalancing (eager protocol, range assignor) ---- */

static int topic_partitions(rd_kafka_t *rk, const char *topic);

/* Partition p of an input restores from, and writes its changes to,
 * partition p of the changelog. An input topic given more partitions while
 * the worker runs (setup checked the counts) brings partitions the
 * changelog lacks: each commit's changelog record for one is refused, the
 * transaction aborted, and every partition of the worker would redo its
 * batch forever. Stop instead, saying why (the start then refuses the
 * counts too). A count that cannot be read now is not held against it. */
static bool changelog_lacks(struct worker *w, const rd_kafka_topic_partition_list_t *parts)
{
	int nc = topic_partitions(w->restorer, w->cf->changelog_topic);
	for (int i = 0; nc > 0 && i < parts->cnt; i++) {
		const rd_kafka_topic_partition_t *tp = &parts->elems[i];
		if (tp->partition < nc)
			continue;
		char why[512];
		snprintf(why, sizeof(why), "%s[%d] has no changelog partition (%s has %d): the input "
			 "topic was given more partitions; that needs a new input topic, changelog "
			 "and a replay (docs/operations.md, Topics)",
			 tp->topic, (int)tp->partition, w->cf->changelog_topic, nc);
		if (!w->fatal)
			w->fatal = TH_ECONFIG;
		set_fatal(w, "assign", why);
		return true;
	}
	return false;
}

/* The group's committed offsets of parts, waiting out offsets still pending
 * in another member's open transaction (see ASSIGN_MARGIN_MS) in slices, so
 * that a stop signal ends the wait: then *stopped is set. */
static rd_kafka_resp_err_t committed_offsets(struct worker *w,
					     rd_kafka_topic_partition_list_t *parts, bool *stopped)
{
	double deadline = now_s() + (double)w->assign_wait_ms / 1000.0;
	rd_kafka_resp_err_t err;
	int slice = ASSIGN_SLICE_MS;
	*stopped = false;
	for (;;) {
		bool pending = false;
		th_watchdog_enter("committed", slice);
		err = rd_kafka_committed(w->consumer, parts, slice);
		th_watchdog_leave();
		if (err == RD_KAFKA_RESP_ERR__TIMED_OUT && slice < QUERY_TIMEOUT_MS)
			slice = slice * 2 < QUERY_TIMEOUT_MS ? slice * 2 : QUERY_TIMEOUT_MS;
		for (int i = 0; !err && i < parts->cnt; i++)
			if (parts->elems[i].err == RD_KAFKA_RESP_ERR_UNSTABLE_OFFSET_COMMIT)
				pending = true;
		if (err == RD_KAFKA_RESP_ERR__TIMED_OUT ||
		    err == RD_KAFKA_RESP_ERR_UNSTABLE_OFFSET_COMMIT)
			pending = true;
		if (!pending || now_s() >= deadline)
			return err;
		th_metrics_heartbeat(); /* waiting on the coordinator, alive */
		if (!*w->run) {
			*stopped = true;
			return err;
		}
		for (int i = 0; i < parts->cnt; i++) {
			parts->elems[i].err = RD_KAFKA_RESP_ERR_NO_ERROR;
			parts->elems[i].offset = RD_KAFKA_OFFSET_INVALID;
		}
	}
}

static void assign_partitions(struct worker *w, rd_kafka_topic_partition_list_t *parts)
{
	struct restore rs[MAX_PARTS];
	int nr = 0;
	bool stopped;
	if (changelog_lacks(w, parts))
		return;
	rd_kafka_resp_err_t err = committed_offsets(w, parts, &stopped);
	if (stopped) {
		/* SIGTERM: take nothing on, the loop ends (exit 0) */
		th_log_info("worker", "stopped while waiting for the committed offsets");
		rd_kafka_assign(w->consumer, NULL);
		return;
	}
	if (err) {
		set_fatal(w, "committed offsets", rd_kafka_err2str(err));
		return;
	}
	for (int i = 0; i < parts->cnt; i++) {
		rd_kafka_topic_partition_t *tp = &parts->elems[i];
		struct part *p;
		bool untrusted;
		if (tp->err) {
			set_fatal(w, "committed offset", rd_kafka_err2str(tp->err));
			return;
		}
		if (w->nparts >= MAX_PARTS ||
		    part_open(w, tp->topic, tp->partition, &p, &untrusted)) {
			set_fatal(w, "assign", "cannot open the partition's state");
			return;
		}
		w->parts[w->nparts++] = p;
		int64_t committed = tp->offset >= 0 ? tp->offset : TH_STATE_NO_OFFSET;
		int64_t local = th_state_offset(p->st);
		if (untrusted || local != committed) {
			char lb[24] = "none", cb[24] = "none";
			if (local != TH_STATE_NO_OFFSET)
				snprintf(lb, sizeof(lb), "%" PRId64, local);
			if (committed != TH_STATE_NO_OFFSET)
				snprintf(cb, sizeof(cb), "%" PRId64, committed);
			th_log_info("worker", "%s[%d]: local state %s offset %s, group committed %s: "
					      "restoring",
				    tp->topic, (int)tp->partition,
				    untrusted ? "untrusted (wiped), was at" : "at", lb, cb);
			rs[nr++] = (struct restore){.p = p, .committed = committed};
		}
		/* Start from the committed offset just read, given explicitly:
		 * with INVALID the consumer fetches the committed offsets again,
		 * and when that fetch fails (e.g. "Not coordinator" right after a
		 * broker outage) librdkafka 2.0.x leaves the partitions without a
		 * fetch position for good: assigned, never fetching. No
		 * committed offset: auto.offset.reset (earliest) decides. */
		tp->offset = committed != TH_STATE_NO_OFFSET ? committed : RD_KAFKA_OFFSET_INVALID;
	}
	if (nr > 0) {
		double t0 = now_s();
		uint64_t before = w->n_restored;
		bool stopped;
		th_metrics_set_gauge(TH_G_PARTITIONS_RESTORING, nr);
		int rrc = restore_parts(w, rs, nr, &stopped);
		th_metrics_set_gauge(TH_G_PARTITIONS_RESTORING, 0);
		if (rrc) {
			set_fatal(w, "restore", "changelog restore failed");
			return;
		}
		if (stopped) {
			/* take nothing on: the loop ends at once (exit 0) */
			rd_kafka_assign(w->consumer, NULL);
			return;
		}
		w->n_part_restores += (uint64_t)nr;
		double dt = now_s() - t0;
		th_log_info("restore", "%d partition(s), %" PRIu64 " state records restored in %.3f s "
				       "(%.0f records/s)",
			    nr, w->n_restored - before, dt,
			    dt > 0 ? (double)(w->n_restored - before) / dt : 0.0);
	}
	if ((err = rd_kafka_assign(w->consumer, parts)))
		set_fatal(w, "assign", rd_kafka_err2str(err));
	else
		/* the lag statistics count from the stored offset (see commit_txn):
		 * from the committed one until the first commit (a partition with
		 * none stays unknown: INVALID is not stored) */
		rd_kafka_offsets_store(w->consumer, parts);
	/* a broker answered (the coordinator, the committed offsets) */
	th_metrics_broker_up(true);
	th_metrics_set_gauge(TH_G_PARTITIONS_ASSIGNED, w->nparts);
	th_metrics_set_gauge(TH_G_ASSIGNMENT_HELD, 1);
	w->told_caught_up = false;
	w->assigned_at = now_s();
	w->last_msg_at = now_s();
	if (w->first_assign_at == 0)
		w->first_assign_at = w->last_msg_at;
}

static void revoke_partitions(struct worker *w, bool lost)
{
	if (lost)
		w->n_lost++;
	if (w->txn_open && w->msgs_in_txn > 0) {
		if (lost) {
			/* Another member may own these partitions now: their offsets
			 * can no longer be committed (examples/transactions.c). Abort,
			 * and drop the uncommitted state with the partitions. */
			th_log_warn("worker", "assignment lost with a transaction open: aborting it");
			if (!abort_only(w))
				begin_txn(w);
		} else {
			commit_txn(w);
		}
	}
	for (int i = 0; i < w->nparts; i++) {
		if (w->parts[i]->stuck)
			th_log_warn("state", "%s[%d]: revoked with its state commit pending (disk "
					     "full): its next owner restores it from the changelog",
				    w->parts[i]->topic, (int)w->parts[i]->partition);
		th_state_rollback(w->parts[i]->st);
		part_close(w->parts[i]);
	}
	w->nparts = 0;
	th_metrics_set_gauge(TH_G_PARTITIONS_ASSIGNED, 0);
	th_metrics_set_gauge(TH_G_ASSIGNMENT_HELD, 0);
	th_metrics_set_parts(NULL, 0);
	w->disk_full = false;
	rd_kafka_resp_err_t err = rd_kafka_assign(w->consumer, NULL);
	if (err)
		set_fatal(w, "unassign", rd_kafka_err2str(err));
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
			 rd_kafka_topic_partition_list_t *parts, void *opaque)
{
	struct worker *w = opaque;
	(void)rk;
	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
		th_log_info("worker", "assigned %d partition(s)", parts->cnt);
		if (w->fatal) {
			/* a fatal worker takes on nothing: it is about to exit */
			rd_kafka_assign(w->consumer, NULL);
			return;
		}
		assign_partitions(w, parts);
	} else {
		bool lost = rd_kafka_assignment_lost(w->consumer) ||
			    err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS;
		th_log_info("worker", "revoked %d partition(s)%s", parts->cnt,
			    lost ? " (assignment lost)" : "");
		revoke_partitions(w, lost);
	}
}

/* ---- per message ---- */

/* One dead letter, its key and value cut to klen and vlen bytes; when cut,
 * headers give the original sizes. */
static rd_kafka_resp_err_t send_dead_letter(struct worker *w, const char *reason,
					    const char *detail, size_t klen, const char *raw,
					    size_t vlen, size_t raw_len, uint64_t offset)
{
	const rd_kafka_message_t *m = w->cur_msg;
	char part[16], off[32], roff[32], vorig[24], korig[24];
	rd_kafka_headers_t *h = rd_kafka_headers_new(8);
	snprintf(part, sizeof(part), "%d", (int)m->partition);
	snprintf(off, sizeof(off), "%" PRId64, m->offset);
	snprintf(roff, sizeof(roff), "%" PRIu64, offset);
	rd_kafka_header_add(h, "reason", -1, reason, -1);
	rd_kafka_header_add(h, "detail", -1, detail, -1);
	rd_kafka_header_add(h, "source.topic", -1, rd_kafka_topic_name(m->rkt), -1);
	rd_kafka_header_add(h, "source.partition", -1, part, -1);
	rd_kafka_header_add(h, "source.offset", -1, off, -1);
	rd_kafka_header_add(h, "record.byte_offset", -1, roff, -1);
	if (vlen < raw_len) {
		snprintf(vorig, sizeof(vorig), "%zu", raw_len);
		rd_kafka_header_add(h, "record.truncated_from", -1, vorig, -1);
	}
	if (klen < m->key_len) {
		snprintf(korig, sizeof(korig), "%zu", m->key_len);
		rd_kafka_header_add(h, "key.truncated_from", -1, korig, -1);
	}
	rd_kafka_resp_err_t err = rd_kafka_producev(
		w->producer, RD_KAFKA_V_TOPIC(w->cf->dead_letter_topic),
		RD_KAFKA_V_KEY(m->key, klen), RD_KAFKA_V_VALUE((void *)raw, vlen),
		RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
	if (err)
		rd_kafka_headers_destroy(h); /* librdkafka owns them only on success */
	return err;
}

static int produce_dead_letter(struct worker *w, enum th_reject why, const char *detail,
			       const char *raw, size_t raw_len, uint64_t offset)
{
	const rd_kafka_message_t *m = w->cur_msg;
	const char *reason = th_reject_name(why);
	double t0 = now_s();
	rd_kafka_resp_err_t err =
		send_dead_letter(w, reason, detail, m->key_len, raw, raw_len, raw_len, offset);
	if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
		/* The record with the dead letter's headers is more than the
		 * producer may send (message.max.bytes): it came in just under
		 * that, or from a producer allowed more. Refused, it would fail
		 * its batch at every attempt, poison handling included, and stop
		 * every partition of the transaction for good. Its start goes to
		 * the dead-letter topic (the headers say where the whole record
		 * is), and a key of more than DL_KEY_MAX bytes is cut too. */
		size_t klen = m->key_len < DL_KEY_MAX ? m->key_len : DL_KEY_MAX;
		size_t room = w->max_msg_bytes > DL_HEADROOM + klen
				      ? w->max_msg_bytes - DL_HEADROOM - klen
				      : 0;
		size_t vlen = raw_len < room ? raw_len : room;
		th_log_warn("worker", "%s[%d]@%" PRId64 ": dead letter of %zu bytes (key %zu) over "
				      "message.max.bytes %zu: sending its first %zu bytes",
			    rd_kafka_topic_name(m->rkt), (int)m->partition, m->offset, raw_len,
			    m->key_len, w->max_msg_bytes, vlen);
		err = send_dead_letter(w, reason, detail, klen, raw, vlen, raw_len, offset);
	}
	phase_add(w, PH_PRODUCE, &t0);
	w->dl_err = err;
	if (err)
		th_log_warn("worker", "dead letter produce: %s", rd_kafka_err2str(err));
	return err ? TH_EKAFKA : 0;
}

/* Whether a produce error refuses the topic itself (missing on brokers that
 * do not create topics, not ours to write, an illegal name): no record's
 * fault, and no retry or restart mends it. */
static bool topic_refusal(rd_kafka_resp_err_t err)
{
	return err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
	       err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
	       err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
	       err == RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION;
}

/* Stop the worker because the topic of `setting` refused what the current
 * message must write: exit 4 for a refusal of the topic itself, else 5. */
static void topic_refused(struct worker *w, const char *what, const char *setting,
			  const char *topic, rd_kafka_resp_err_t err)
{
	const rd_kafka_message_t *m = w->cur_msg; /* NULL: a held use decided later */
	char where[300] = "";
	bool config = topic_refusal(err);
	if (m)
		snprintf(where, sizeof(where), "%s[%d]@%" PRId64 ": ", rd_kafka_topic_name(m->rkt),
			 (int)m->partition, m->offset);
	th_log_err("worker", "%s%s: %s \"%s\" refuses it (%s)%s", where, what, setting, topic,
		   rd_kafka_err2str(err),
		   config ? ": create the topic or grant the worker Write on it" : "");
	if (!w->fatal)
		w->fatal = config ? TH_ECONFIG : TH_EFATAL;
	*w->run = 0;
}

static int on_alert(void *ctx, const struct th_alert *a)
{
	struct part *p = ctx;
	struct worker *w = p->w;
	if (th_avro_alert_encode(w->avro, a, &w->out))
		return TH_EAVRO;
	char variation[4];
	snprintf(variation, sizeof(variation), "%d", a->variation);
	double t0 = now_s();
	rd_kafka_resp_err_t err = rd_kafka_producev(
		w->producer, RD_KAFKA_V_TOPIC(w->cf->output_topic),
		RD_KAFKA_V_KEY(a->account_id, strlen(a->account_id)),
		RD_KAFKA_V_VALUE(w->out.p, w->out.len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
		RD_KAFKA_V_HEADER("alert_name", a->alert_name, -1),
		RD_KAFKA_V_HEADER("severity", a->severity, -1),
		RD_KAFKA_V_HEADER("variation", variation, -1),
		RD_KAFKA_V_HEADER("alert_id", a->alert_id, -1), RD_KAFKA_V_END);
	phase_add(w, PH_PRODUCE, &t0);
	if (err && topic_refusal(err)) {
		/* not the record's fault: as a failed message it would reach the
		 * dead-letter topic, and every alert after it too, unseen */
		topic_refused(w, "an alert cannot be sent", "output_topic", w->cf->output_topic,
			      err);
		return TH_EKAFKA;
	}
	if (err) {
		th_log_warn("worker", "alert produce: %s", rd_kafka_err2str(err));
		return TH_EKAFKA;
	}
	w->n_alerts++;
	th_metrics_staged_alert(a->variation, a->severity); /* counted when committed */
	return 0;
}

static int sink_event(void *ctx, const struct th_event *ev, const char *raw, size_t raw_len,
		      uint64_t offset)
{
	struct worker *w = ctx;
	const rd_kafka_message_t *m = w->cur_msg;
	struct th_input_ref ref = {.topic = rd_kafka_topic_name(m->rkt),
				   .partition = m->partition,
				   .offset = m->offset};
	(void)raw;
	(void)raw_len;
	(void)offset;
	int rc = th_detector_process(w->cur->det, ev, &ref);
	th_metrics_add(TH_M_EVENTS_PARSED, 1);
	if (rc)
		w->cur_err = rc;
	return rc;
}

static void sink_reject(void *ctx, enum th_reject why, const char *detail, const char *raw,
			size_t raw_len, uint64_t offset)
{
	struct worker *w = ctx;
	w->n_rejects++;
	w->rejects_by[why < TH_REJECT__COUNT ? why : TH_REJECT_MALFORMED_JSON]++;
	th_metrics_staged_reject(why); /* counted when committed */
	th_log_debug("worker", "%s[%d]@%" PRId64 ": rejected (%s): %s",
		     rd_kafka_topic_name(w->cur_msg->rkt), (int)w->cur_msg->partition,
		     w->cur_msg->offset, th_reject_name(why), detail);
	if (produce_dead_letter(w, why, detail, raw, raw_len, offset))
		w->cur_err = TH_EKAFKA;
}

static bool is_poison(const struct worker *w, const char *topic, const rd_kafka_message_t *m)
{
	return w->fail_count >= w->max_attempts && w->fail_partition == m->partition &&
	       w->fail_offset == m->offset && strcmp(w->fail_topic, topic) == 0;
}

/* Count consecutive failures of the same input message. */
static void note_failure(struct worker *w, const rd_kafka_message_t *m, int err)
{
	const char *topic = rd_kafka_topic_name(m->rkt);
	if (w->fail_count > 0 && w->fail_partition == m->partition && w->fail_offset == m->offset &&
	    strcmp(w->fail_topic, topic) == 0) {
		w->fail_count++;
	} else {
		snprintf(w->fail_topic, sizeof(w->fail_topic), "%s", topic);
		w->fail_partition = m->partition;
		w->fail_offset = m->offset;
		w->fail_count = 1;
	}
	w->fail_err = err;
}

static int handle_message(struct worker *w, const rd_kafka_message_t *m)
{
	const char *topic = rd_kafka_topic_name(m->rkt);
	struct part *p = part_find(w, topic, m->partition);
	if (!p) {
		th_log_warn("worker", "message for unassigned %s[%d]", topic, (int)m->partition);
		return 0;
	}
	/* simdjson reads up to TH_PARSE_PADDING bytes past the end */
	if (m->len + TH_PARSE_PADDING > w->padded_cap) {
		size_t cap = (m->len + TH_PARSE_PADDING) * 2;
		char *np = realloc(w->padded, cap);
		if (!np)
			return TH_ENOMEM;
		w->padded = np;
		w->padded_cap = cap;
	}
	if (m->len)
		memcpy(w->padded, m->payload, m->len);
	memset(w->padded + m->len, 0, TH_PARSE_PADDING);
	w->cur = p;
	w->cur_msg = m;
	w->cur_err = 0;
	p->active = true;
	p->eof = false;
	struct th_sink sink = {sink_event, sink_reject, w};
	if (is_poison(w, topic, m)) {
		/* It failed max_attempts times in a row (each time the batch was
		 * aborted and redone): set it aside so the partition moves on. */
		char detail[128];
		snprintf(detail, sizeof(detail), "processing failed %d times (last: %s)",
			 w->fail_count, th_strerror(w->fail_err));
		th_log_err("worker", "%s[%d]@%" PRId64 ": %s: dead-lettered", topic,
			   (int)m->partition, m->offset, detail);
		sink_reject(w, TH_REJECT_PROCESSING_FAILED, detail, m->len ? m->payload : "",
			    m->len, 0);
		/* set aside nowhere, its batch would be redone forever, the
		 * partition stuck behind it (/healthz still green) */
		if (w->cur_err)
			topic_refused(w, "cannot be set aside", "dead_letter_topic",
				      w->cf->dead_letter_topic, w->dl_err);
	} else if (w->opts->test_hook &&
		   (w->cur_err = w->opts->test_hook(w->opts->test_ctx, topic, m->partition,
						    m->offset))) {
		/* fault injection (tests) */
	} else if (m->len == 0) {
		sink_reject(w, TH_REJECT_MALFORMED_JSON, "empty message", "", 0, 0);
	} else {
		th_parser_feed(w->parser, w->padded, m->len, 0, &sink);
	}
	w->cur = NULL;
	w->cur_msg = NULL;
	w->n_msgs++;
	th_metrics_add(TH_M_EVENTS_CONSUMED, 1);
	w->msgs_in_txn++;
	return w->cur_err;
}

/* ---- setup ---- */

/* Partition count of a topic, or a negative error (unknown topic, timeout). */
static int topic_partitions(rd_kafka_t *rk, const char *topic)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
	int n = TH_EKAFKA;
	if (!rkt)
		return TH_EKAFKA;
	if (rd_kafka_metadata(rk, 0, rkt, &md, QUERY_TIMEOUT_MS) == RD_KAFKA_RESP_ERR_NO_ERROR &&
	    md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR)
		n = md->topics[0].partition_cnt;
	if (md)
		rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(rkt);
	return n;
}

/* The changelog is co-partitioned with the inputs: partition p of an input
 * restores from partition p of the changelog. Check it up front rather than
 * fail at the first restore. */
static int check_topics(struct worker *w, char *errstr, size_t errstr_size)
{
	const struct th_config *cf = w->cf;
	int nc = topic_partitions(w->restorer, cf->changelog_topic);
	if (nc < 0) {
		th_errstr(errstr, errstr_size, "changelog topic %s: not found (create it compacted, "
			  "with as many partitions as the input: deploy/topics.sh)",
			  cf->changelog_topic);
		return TH_ECONFIG;
	}
	for (int i = 0; i < cf->n_input_topics; i++) {
		int ni = topic_partitions(w->restorer, cf->input_topics[i]);
		/* exactly N (not "at least"): a changelog with more partitions
		 * was made for another input, or the input was recreated smaller */
		if (ni >= 0 && ni != nc) {
			th_errstr(errstr, errstr_size, "input topic %s has %d partitions but the changelog "
				  "%s has %d: they must be co-partitioned",
				  cf->input_topics[i], ni, cf->changelog_topic, nc);
			return TH_ECONFIG;
		}
	}
	return 0;
}

/* Consumer: read_committed, no auto commit (offsets go through the
 * transaction), range assignor (librdkafka 2.0.x's cooperative protocol has
 * known bugs). */
static const char *const consumer_defaults[] = {
	"enable.auto.commit", "false",
	"enable.auto.offset.store", "false",
	"isolation.level", "read_committed",
	"auto.offset.reset", "earliest",
	"partition.assignment.strategy", "range",
	"enable.partition.eof", "true",
	/* Fetching must keep ahead of a worker that processes ~300k
	 * events/s: a modest prefetch (see wake_fetcher for how it is
	 * refilled without librdkafka's ~1 s pause) and a bounded broker
	 * wait once caught up. */
	"queued.min.messages", "20000",
	"fetch.wait.max.ms", "100",
	/* consumer lag for /metrics and the [stats] line (stats_cb) */
	"statistics.interval.ms", "5000",
	NULL,
};
/* The changelog reader for restores */
static const char *const restore_defaults[] = {
	"enable.auto.commit", "false",
	"isolation.level", "read_committed",
	"enable.partition.eof", "true",
	"auto.offset.reset", "earliest",
	/* the end of a changelog is known only from an empty fetch: do not
	 * let the broker hold that fetch for the default 500 ms */
	"fetch.wait.max.ms", "10",
	NULL,
};

/* What exactly-once rests on; a kafka.* setting may not change it: offsets
 * only through the transactions, no aborted input, and the end of a
 * partition seen (caught up, --exit-when-idle). */
static const char *const consumer_locked[] = {
	"enable.auto.commit", "false",
	"enable.auto.offset.store", "false",
	"isolation.level", "read_committed",
	"enable.partition.eof", "true",
	NULL,
};
/* a restore applies committed changes only, and ends at EOF */
static const char *const restore_locked[] = {
	"isolation.level", "read_committed",
	"enable.partition.eof", "true",
	NULL,
};

/* The transactional producer's own defaults, which kafka.* may override. */
static const char *const producer_defaults[] = {
	"transaction.timeout.ms", "60000",
	"message.timeout.ms", "55000",
	"linger.ms", "5",
	/* After each commit the coordinator writes the transaction markers;
	 * the next transaction's AddOffsetsToTxn/AddPartitionsToTxn gets
	 * CONCURRENT_TRANSACTIONS until then and is retried after this
	 * backoff. librdkafka's 100 ms cost ~25 ms per transaction in
	 * send_offsets_to_transaction (the Java client uses 20 ms here). */
	"retry.backoff.ms", "10",
	NULL,
};

/* The configurations of the worker's three clients, built in one place for
 * setup() and for th_worker_check_kafka_settings(): the check must judge
 * exactly what the start will create. */
static rd_kafka_conf_t *consumer_conf(const struct th_config *cf, char *errstr,
				      size_t errstr_size)
{
	rd_kafka_conf_t *conf = th_kafka_conf_new_locked(cf, "consumer", consumer_defaults,
							 consumer_locked, "exactly-once", errstr,
							 errstr_size);
	char have[32];
	size_t n = sizeof(have);
	if (!conf)
		return NULL;
	if (conf_set(conf, "group.id", cf->group_id, errstr, errstr_size))
		goto fail;
	/* Without librdkafka's statistics /readyz never saw the brokers come
	 * back after an outage (it stayed 503 until the next rebalance), and
	 * the lag metrics stayed empty: refused, not silently degraded. */
	if (rd_kafka_conf_get(conf, "statistics.interval.ms", have, &n) == RD_KAFKA_CONF_OK &&
	    atoi(have) <= 0) {
		snprintf(errstr, errstr_size,
			 "kafka.statistics.interval.ms = %s: the group consumer's statistics "
			 "drive /readyz (broker reachability) and the lag metrics; set it above 0 "
			 "(default 5000) or remove it",
			 have);
		goto fail;
	}
	return conf;
fail:
	rd_kafka_conf_destroy(conf);
	return NULL;
}

/* The changelog reader for restores: no group membership, read_committed. */
static rd_kafka_conf_t *restore_conf(const struct th_config *cf, char *errstr, size_t errstr_size)
{
	rd_kafka_conf_t *conf = th_kafka_conf_new_locked(cf, "restore", restore_defaults,
							 restore_locked,
							 "exactly-once state restore", errstr,
							 errstr_size);
	if (conf && conf_set(conf, "group.id", "trailhound-restore", errstr, errstr_size)) {
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	return conf;
}

static rd_kafka_conf_t *producer_conf(const struct th_config *cf, const char *tid, char *errstr,
				      size_t errstr_size)
{
	rd_kafka_conf_t *conf = th_kafka_conf_new(cf, "producer", producer_defaults, errstr,
						  errstr_size);
	if (conf && conf_set(conf, "transactional.id", tid, errstr, errstr_size)) {
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	return conf;
}

int th_worker_check_kafka_settings(const struct th_config *cf, char *errstr, size_t errstr_size)
{
	static const char *const names[] = {"group consumer", "restore reader",
					    "transactional producer"};
	char why[512];
	for (int i = 0; i < 3; i++) {
		/* A transactional.id of the check's own: creating the producer
		 * neither contacts the coordinator (that is init_transactions)
		 * nor may it ever fence a worker running beside the check. */
		rd_kafka_conf_t *conf = i == 0   ? consumer_conf(cf, errstr, errstr_size)
					: i == 1 ? restore_conf(cf, errstr, errstr_size)
						 : producer_conf(cf, "trailhound-check-config",
								 errstr, errstr_size);
		if (!conf)
			return TH_ECONFIG;
		/* librdkafka judges some combinations only when the client is
		 * made (acks with idempotence, max.poll.interval.ms against
		 * session.timeout.ms): make each client as the start would, so
		 * a setting `run` refuses is refused here too. No connection
		 * matters: the client is destroyed before it does anything. */
		rd_kafka_t *rk = rd_kafka_new(i == 2 ? RD_KAFKA_PRODUCER : RD_KAFKA_CONSUMER, conf,
					      why, sizeof(why));
		if (!rk) {
			rd_kafka_conf_destroy(conf);
			snprintf(errstr, errstr_size, "kafka.* settings: the worker's %s refuses them: %s",
				 names[i], why);
			return TH_ECONFIG;
		}
		rd_kafka_destroy(rk);
	}
	return 0;
}

/* mkdir -p: the partitions' environments go below state_dir. */
static int make_dirs(const char *path, char *errstr, size_t errstr_size)
{
	char buf[1024];
	if (!path || !*path) {
		snprintf(errstr, errstr_size, "state_dir is empty");
		return TH_ECONFIG;
	}
	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf)) {
		snprintf(errstr, errstr_size, "state_dir too long");
		return TH_ECONFIG;
	}
	for (char *s = buf + 1;; s++) {
		if (*s == '/' || !*s) {
			char c = *s;
			*s = '\0';
			if (mkdir(buf, 0750) != 0 && errno != EEXIST) {
				snprintf(errstr, errstr_size, "state_dir %.400s: %s", buf, strerror(errno));
				return TH_ESTATE;
			}
			*s = c;
			if (!c)
				break;
		}
	}
	return 0;
}

static int setup(struct worker *w, char *errstr, size_t errstr_size)
{
	const struct th_config *cf = w->cf;
	char tid[256], host[128] = "localhost";
	int32_t schema_id = (int32_t)cf->schema_id;
	rd_kafka_conf_t *conf;
	rd_kafka_error_t *error;

	if (make_dirs(cf->state_dir, errstr, errstr_size))
		return TH_ECONFIG;
	if (th_config_open_enrich((struct th_config *)cf, &w->en, errstr, errstr_size))
		return TH_ECONFIG;
	show_reference_dates(w->en);
	if (th_parser_new(&w->parser, (size_t)cf->record_max))
		return TH_EFATAL;
	th_parser_set_max_future_skew(w->parser, cf->max_future_skew_ms);
	if (!schema_id && cf->schema_registry_url && *cf->schema_registry_url) {
		struct th_avro_alert *tmp = NULL;
		char subject[512];
		snprintf(subject, sizeof(subject), "%s-value", cf->output_topic);
		if (th_avro_alert_new(&tmp, th_config_alert_schema(cf), 0, errstr, errstr_size))
			return TH_ECONFIG;
		int rc = th_registry_register(cf->schema_registry_url, subject,
					    th_avro_alert_schema_json(tmp), &schema_id, errstr,
					    errstr_size);
		th_avro_alert_destroy(tmp);
		if (rc)
			return TH_ECONFIG;
		th_log_info("worker", "alert schema registered as id %d (subject %s)", (int)schema_id,
			    subject);
	} else if (!schema_id) {
		snprintf(errstr, errstr_size,
			 "set schema_id, or schema_registry_url to register alert.avsc");
		return TH_ECONFIG;
	}
	if (th_avro_alert_new(&w->avro, th_config_alert_schema(cf), schema_id, errstr, errstr_size))
		return TH_ECONFIG;

	if (!(conf = consumer_conf(cf, errstr, errstr_size)))
		return TH_ECONFIG;
	rd_kafka_conf_set_opaque(conf, w);
	rd_kafka_conf_set_error_cb(conf, error_cb);
	rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
	rd_kafka_conf_set_stats_cb(conf, stats_cb);
	if (!(w->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, errstr_size))) {
		rd_kafka_conf_destroy(conf);
		return TH_ECONFIG;
	}

	if (!(conf = restore_conf(cf, errstr, errstr_size)))
		return TH_ECONFIG;
	if (!(w->restorer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, errstr_size))) {
		rd_kafka_conf_destroy(conf);
		return TH_ECONFIG;
	}

	/* Producer: transactional, one per worker, a stable transactional.id. */
	if (cf->transactional_id && *cf->transactional_id)
		snprintf(tid, sizeof(tid), "%s", cf->transactional_id);
	else {
		gethostname(host, sizeof(host) - 1);
		snprintf(tid, sizeof(tid), "trailhound-%s", host);
	}
	if (!(conf = producer_conf(cf, tid, errstr, errstr_size)))
		return TH_ECONFIG;
	rd_kafka_conf_set_opaque(conf, w);
	rd_kafka_conf_set_error_cb(conf, error_cb);
	if (!(w->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size))) {
		rd_kafka_conf_destroy(conf);
		return TH_ECONFIG;
	}
	/* Fences any previous instance with this transactional.id and aborts
	 * whatever it left open. */
	/* In 1 s slices (a timed-out call resumes where it was), serving the
	 * clients' error events in between: an authentication or TLS failure
	 * stops the start with its reason instead of a time-out a minute later. */
	for (int waited = 0;; waited++) {
		th_watchdog_enter("init_transactions", 1000);
		error = rd_kafka_init_transactions(w->producer, 1000);
		th_watchdog_leave();
		if (!error)
			break;
		rd_kafka_resp_err_t ierr = rd_kafka_error_code(error);
		if (rd_kafka_error_is_retriable(error) && !*w->run) {
			/* SIGTERM while waiting for the brokers: a clean stop like
			 * any other (exit 0), nothing begun; the loop sees *run. */
			rd_kafka_error_destroy(error);
			th_log_info("worker", "stopped while waiting for the brokers %s", cf->brokers);
			return 0;
		}
		if (ierr == RD_KAFKA_RESP_ERR_INVALID_TRANSACTION_TIMEOUT) {
			/* the broker refuses this timeout at every start: a setting
			 * to change (exit 4), no restart mends it */
			snprintf(errstr, errstr_size, "init_transactions: %s (lower "
				 "kafka.producer.transaction.timeout.ms)",
				 rd_kafka_error_string(error));
			rd_kafka_error_destroy(error);
			return TH_ECONFIG;
		}
		if (ierr == RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED ||
		    ierr == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED) {
			/* a missing ACL: no restart grants it (exit 4, not 5) */
			snprintf(errstr, errstr_size, "init_transactions: %s (grant the worker's "
				 "principal the ACLs in docs/operations.md)",
				 rd_kafka_error_string(error));
			rd_kafka_error_destroy(error);
			return TH_ECONFIG;
		}
		bool again = rd_kafka_error_is_retriable(error) && waited < INIT_TXN_TIMEOUT_MS / 1000;
		if (again) {
			rd_kafka_error_destroy(error);
			rd_kafka_poll(w->producer, 0);
			rd_kafka_poll(w->consumer, 0);
			if (!w->conn_err[0])
				continue;
			snprintf(errstr, errstr_size, "cannot use the brokers %s: %s (check the kafka.sasl.* "
				 "and kafka.ssl.* settings)", cf->brokers, w->conn_err);
			return TH_ECONFIG;
		}
		if (w->conn_err[0])
			snprintf(errstr, errstr_size, "init_transactions: %s (brokers %s: %s)",
				 rd_kafka_error_string(error), cf->brokers, w->conn_err);
		else
			snprintf(errstr, errstr_size, "init_transactions: %s",
				 rd_kafka_error_string(error));
		rd_kafka_error_destroy(error);
		return TH_EFATAL;
	}
	char mmb[32];
	size_t mmb_len = sizeof(mmb);
	w->max_msg_bytes = rd_kafka_conf_get(rd_kafka_conf(w->producer), "message.max.bytes", mmb,
					     &mmb_len) == RD_KAFKA_CONF_OK
				   ? (size_t)strtoull(mmb, NULL, 10)
				   : 1000000;
	char tto[32];
	size_t tto_len = sizeof(tto);
	long txn_to = rd_kafka_conf_get(rd_kafka_conf(w->producer), "transaction.timeout.ms", tto,
					&tto_len) == RD_KAFKA_CONF_OK
			      ? strtol(tto, NULL, 10)
			      : 60000;
	w->assign_wait_ms = txn_to + ASSIGN_MARGIN_MS > ASSIGN_TIMEOUT_MS ? txn_to + ASSIGN_MARGIN_MS
									  : ASSIGN_TIMEOUT_MS;
	w->commit_every_ms = cf->commit_interval_ms;
	if (txn_to > 0 && cf->commit_interval_ms > txn_to / 2) {
		w->commit_every_ms = txn_to / 2;
		th_log_warn("worker", "commit_interval_ms %ld is more than half of the producer's "
				      "transaction.timeout.ms %ld, after which the broker aborts a "
				      "transaction and fences the worker: transactions commit at "
				      "most %ld ms after their first message",
			    cf->commit_interval_ms, txn_to, w->commit_every_ms);
	}
	th_log_info("worker", "transactional.id %s, group %s", tid, cf->group_id);
	th_metrics_broker_up(true); /* init_transactions reached the coordinator */
	const char *outs[3] = {cf->output_topic, cf->changelog_topic, cf->dead_letter_topic};
	for (int i = 0; i < 3; i++) {
		const struct rd_kafka_metadata *md = NULL;
		if (!(w->out_topics[i] = rd_kafka_topic_new(w->producer, outs[i], NULL)))
			continue;
		if (rd_kafka_metadata(w->producer, 0, w->out_topics[i], &md, QUERY_TIMEOUT_MS) ==
			    RD_KAFKA_RESP_ERR_NO_ERROR &&
		    md)
			rd_kafka_metadata_destroy(md);
	}
	int crc = check_topics(w, errstr, errstr_size);
	if (crc)
		return crc;

	rd_kafka_topic_partition_list_t *topics =
		rd_kafka_topic_partition_list_new(cf->n_input_topics);
	for (int i = 0; i < cf->n_input_topics; i++)
		rd_kafka_topic_partition_list_add(topics, cf->input_topics[i],
						  RD_KAFKA_PARTITION_UA);
	rd_kafka_resp_err_t err = rd_kafka_subscribe(w->consumer, topics);
	rd_kafka_topic_partition_list_destroy(topics);
	if (err) {
		snprintf(errstr, errstr_size, "subscribe: %s", rd_kafka_err2str(err));
		return TH_EFATAL;
	}
	return begin_txn(w) ? TH_EFATAL : 0;
}

/* ---- the loop ---- */

/* ---- metrics (metrics.h) ---- */

static void add_detect_stats(struct th_detect_stats *sum, const struct th_detect_stats *s)
{
	sum->suppressed_activation += s->suppressed_activation;
	sum->suppressed_dedup += s->suppressed_dedup;
	sum->held += s->held;
	sum->held_resolved += s->held_resolved;
	sum->held_expired += s->held_expired;
}

/* A partition's detector goes away: keep its counters in the totals. */
static void retire_stats(struct worker *w, const struct th_detector *det)
{
	struct th_detect_stats s;
	th_detector_get_stats(det, &s);
	add_detect_stats(&w->retired, &s);
}

/* The registry's values that are sums over the partitions (detector
 * counters, state size): refreshed about once a second, not per event. */
static void refresh_metrics(struct worker *w)
{
	static struct th_metrics_part mp[MAX_PARTS];
	struct th_detect_stats sum = w->retired, s;
	int64_t pending = 0;
	char path[1300];
	struct stat sb;
	for (int i = 0; i < w->nparts; i++) {
		struct part *p = w->parts[i];
		th_detector_get_stats(p->det, &s);
		add_detect_stats(&sum, &s);
		pending += (int64_t)s.held_pending;
		snprintf(mp[i].topic, sizeof(mp[i].topic), "%s", p->topic);
		mp[i].partition = p->partition;
		/* allocated blocks: LMDB's map file is sparse */
		snprintf(path, sizeof(path), "%s/%s-%d/data.mdb", w->cf->state_dir, p->topic,
			 (int)p->partition);
		mp[i].state_bytes = stat(path, &sb) == 0 ? (int64_t)sb.st_blocks * 512 : 0;
	}
	th_metrics_set_parts(mp, w->nparts);
	th_metrics_set_counter(TH_M_SUPPRESSED_ACTIVATION, sum.suppressed_activation);
	th_metrics_set_counter(TH_M_DEDUPLICATED, sum.suppressed_dedup);
	th_metrics_set_counter(TH_M_HELD_EXPIRED, sum.held_expired);
	th_metrics_set_gauge(TH_G_HELD_PENDING, pending);
	w->last_metrics = now_s();
}

/* The worker's metrics as one log line: counters since start, rejected
 * records by reason (each also went to the dead-letter topic), and how far
 * behind the input it is (librdkafka's statistics: the lag behind the last
 * committed transaction, summed over the assigned partitions). */
static void log_stats(struct worker *w)
{
	char lag[64] = " lag=unknown";
	int64_t total;
	if (th_metrics_total_lag(&total) > 0)
		snprintf(lag, sizeof(lag), " lag=%" PRId64, total);
	char reasons[512] = "";
	size_t used = 0;
	for (int i = 1; i < TH_REJECT__COUNT && used < sizeof(reasons); i++) {
		if (!w->rejects_by[i])
			continue;
		int n = snprintf(reasons + used, sizeof(reasons) - used, " rejected.%s=%" PRIu64,
				 th_reject_name((enum th_reject)i), w->rejects_by[i]);
		if (n < 0)
			break;
		used += (size_t)n;
	}
	char times[320] = "";
	used = 0;
	for (int i = 0; i < PH__COUNT && used < sizeof(times); i++) {
		int n = snprintf(times + used, sizeof(times) - used, " time.%s_ms=%.0f",
				 phase_names[i], w->phase_s[i] * 1000.0);
		if (n < 0)
			break;
		used += (size_t)n;
	}
	th_log_info("stats",
		    "partitions=%d messages=%" PRIu64 " alerts=%" PRIu64 " rejected=%" PRIu64
		    "%s transactions=%" PRIu64 " aborts=%" PRIu64 " restored_records=%" PRIu64
		    " lost_assignments=%" PRIu64 " disk_full=%" PRIu64 "%s%s%s",
		    w->nparts, w->n_msgs, w->n_alerts, w->n_rejects, reasons, w->n_txn, w->n_aborts,
		    w->n_restored, w->n_lost, w->n_disk_full, lag, times,
		    w->disk_full ? " (paused: disk full)" : "");
}

/* An error from the consumer. A fatal one (e.g. a static member fenced by
 * another with the same group.instance.id) leaves the consumer unusable: it
 * would sit without partitions for good, so exit for a restart. */
static void consumer_error(struct worker *w, const rd_kafka_message_t *m)
{
	char buf[512] = "";
	rd_kafka_resp_err_t err = m ? m->err : RD_KAFKA_RESP_ERR__FATAL;
	if (err == RD_KAFKA_RESP_ERR__FATAL || err == RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID ||
	    err == RD_KAFKA_RESP_ERR__FENCED || err == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
	    rd_kafka_fatal_error(w->consumer, NULL, 0)) {
		rd_kafka_resp_err_t ferr = rd_kafka_fatal_error(w->consumer, buf, sizeof(buf));
		if (!ferr)
			snprintf(buf, sizeof(buf), "%s", m ? rd_kafka_message_errstr(m) : "");
		set_fatal(w, "fatal consumer error", buf);
		return;
	}
	/* The principal lacks an ACL: librdkafka reports it once and then waits
	 * for good without partitions; no retry grants it. */
	if (err == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED ||
	    err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED) {
		snprintf(buf, sizeof(buf), "%s (grant the worker's principal the ACLs in "
			 "docs/operations.md)", rd_kafka_message_errstr(m));
		if (!w->fatal)
			w->fatal = TH_ECONFIG;
		set_fatal(w, "not authorized", buf);
		return;
	}
	th_log_warn("kafka", "consume: %s", rd_kafka_message_errstr(m));
}

static bool caught_up(struct worker *w)
{
	for (int i = 0; i < w->nparts; i++)
		if (!w->parts[i]->eof)
			return false;
	return w->nparts > 0;
}

static int drain(struct worker *w)
{
	/* End of a finite replay: decide held uses as `scan` does at end of input. */
	for (int i = 0; i < w->nparts; i++) {
		int rc = th_detector_advance(w->parts[i]->det, true);
		if (rc)
			return rc;
		w->parts[i]->active = true;
	}
	w->msgs_in_txn++; /* force a commit even with no new message */
	return commit_txn(w);
}

/* librdkafka 2.0.x stops fetching a partition while the consumer queue holds
 * queued.min.messages or queued.max.messages.kbytes, and decides again only
 * when its broker thread wakes up: up to a second later (2.1 added
 * fetch.queue.backoff.ms for this). A worker that drains the queue faster
 * would sit idle for most of that second. Any request to the broker wakes
 * its thread, which then fetches again at once: when the queue ran dry
 * before the end of the input, ask a partition's leader for its high
 * watermark (read-only, one round trip), a different partition each time
 * so that every broker gets woken. Through th_kafka_watermarks(): librdkafka
 * 2.0.2's own query never returns while the leader is unreachable (#2588),
 * and a broker stopped just after a fetch would hold the loop there. */
static void wake_fetcher(struct worker *w)
{
	int64_t hi;
	double t = now_s();
	if (w->disk_full || w->nparts == 0 || t - w->last_wake < 0.01 || t - w->last_msg_at > 1.0)
		return;
	for (int i = 0; i < w->nparts; i++) {
		struct part *p = w->parts[(w->wake_next + i) % w->nparts];
		if (p->eof)
			continue;
		w->wake_next = (w->wake_next + i + 1) % w->nparts;
		w->last_wake = t;
		th_kafka_watermarks(w->consumer, p->topic, p->partition, NULL, &hi, POLL_MS);
		return;
	}
}

/* State records the open transaction has changed so far, all partitions
 * (the detector's objects not yet written back add at most OBJS_MAX each). */
static size_t txn_changes(const struct worker *w)
{
	size_t n = 0;
	for (int i = 0; i < w->nparts; i++)
		n += th_state_changes(w->parts[i]->st);
	return n;
}

/* Commit by time (commit_interval_ms from the transaction's first message),
 * or earlier at batch_size messages or commit_max_changes changed records:
 * LMDB copies every page a transaction writes into memory, so a burst of
 * new keys would otherwise cost ~4 KB of memory per key until the commit. */
static bool txn_due(const struct worker *w)
{
	const struct th_config *cf = w->cf;
	if (w->msgs_in_txn <= 0)
		return false;
	return w->msgs_in_txn >= cf->batch_size ||
	       (now_s() - w->txn_started) * 1000.0 >= (double)w->commit_every_ms ||
	       txn_changes(w) >= (size_t)cf->commit_max_changes;
}

int th_worker_run(const struct th_config *cf, const struct th_worker_opts *opts,
		  volatile sig_atomic_t *run)
{
	struct worker w = {.cf = cf, .opts = opts, .run = run};
	char errstr[512] = "";
	w.max_attempts = opts->max_attempts > 0 ? opts->max_attempts : 3;
	w.disk_retry_ms = opts->disk_retry_ms > 0 ? opts->disk_retry_ms : DISK_RETRY_MS_DEFAULT;
	w.txn_timeout_ms = opts->txn_timeout_ms > 0 ? (int)opts->txn_timeout_ms : TXN_TIMEOUT_MS_DEFAULT;
	int rc = 0;
	/* Before setup: /healthz answers while init_transactions waits for a
	 * broker. Stale after two transactional timeouts without a beat (a
	 * commit retry beats once per timeout). */
	if (cf->metrics_listen && *cf->metrics_listen &&
	    th_metrics_start(cf->metrics_listen, 2.0 * w.txn_timeout_ms / 1000.0 + 30.0, errstr,
			     sizeof(errstr))) {
		rc = TH_ECONFIG;
		th_log_err("worker", "%s", errstr);
		goto out;
	}
	th_metrics_heartbeat();
	rc = setup(&w, errstr, sizeof(errstr));
	bool drained = false;

	if (rc) {
		th_log_err("worker", "%s", errstr);
		goto out;
	}
	w.last_msg_at = w.last_stats = w.reference_checked_at = now_s();
	while (*run && !w.fatal) {
		double t0 = now_s();
		th_metrics_heartbeat();
		rd_kafka_message_t *m = rd_kafka_consumer_poll(w.consumer, 5);
		if (!m) {
			wake_fetcher(&w);
			m = rd_kafka_consumer_poll(w.consumer, 45);
		}
		phase_add(&w, PH_CONSUME, &t0);
		/* the producer's error events (error_cb: fatal errors); the
		 * consumer's main queue: its statistics (stats_cb) and errors */
		rd_kafka_poll(w.producer, 0);
		rd_kafka_poll(w.consumer, 0);
		if (m) {
			if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
				struct part *p = part_find(&w, rd_kafka_topic_name(m->rkt), m->partition);
				if (p && !w.disk_full)
					p->eof = true;
			} else if (m->err) {
				consumer_error(&w, m);
			} else if (w.disk_full) {
				/* fetched before the pause: not processed now; the resume
				 * rewinds to the committed offsets */
			} else {
				double produced = w.phase_s[PH_PRODUCE];
				w.last_msg_at = t0;
				/* commit_interval_ms counts from the transaction's first
				 * message: an idle open transaction is not "due" */
				if (w.msgs_in_txn == 0)
					w.txn_started = t0;
				int err = handle_message(&w, m);
				phase_add(&w, PH_DETECT, &t0);
				w.phase_s[PH_DETECT] -= w.phase_s[PH_PRODUCE] - produced;
				if (err) {
					/* Abort the batch and redo it from the committed offsets.
					 * A message that keeps failing is dead-lettered after
					 * max_attempts (see is_poison). */
					note_failure(&w, m, err);
					th_log_err("worker", "processing %s[%d]@%" PRId64 " failed (%s), "
							     "attempt %d of %d: aborting the batch",
						   rd_kafka_topic_name(m->rkt), (int)m->partition,
						   m->offset, th_strerror(err), w.fail_count,
						   w.max_attempts);
					rd_kafka_message_destroy(m);
					if (abort_txn(&w) || begin_txn(&w))
						break;
					continue;
				}
			}
			rd_kafka_message_destroy(m);
		}
		if (!w.fatal && rd_kafka_fatal_error(w.consumer, NULL, 0))
			consumer_error(&w, NULL);
		if (w.fatal)
			break;
		disk_full_retry(&w);
		if (txn_due(&w)) {
			if (commit_txn(&w) == TH_EFATAL)
				break;
		}
		reload_reference(&w);
		if (now_s() - w.last_stats >= STATS_INTERVAL_S) {
			w.last_stats = now_s();
			log_stats(&w);
		}
		if (now_s() - w.last_metrics >= 1.0)
			refresh_metrics(&w);
		if (!w.told_caught_up && caught_up(&w)) {
			/* once per assignment: the operator's "it has caught up" */
			w.told_caught_up = true;
			th_log_info("worker", "caught up: every assigned partition (%d) read to its end, "
					      "%.1f s after the assignment; %" PRIu64 " messages so far",
				    w.nparts, now_s() - w.assigned_at, w.n_msgs);
		}
		if (opts->exit_when_idle_ms > 0 && !w.disk_full && caught_up(&w) &&
		    (now_s() - w.last_msg_at) * 1000.0 >= (double)opts->exit_when_idle_ms) {
			uint64_t aborts = w.n_aborts;
			if (commit_txn(&w) == TH_EFATAL)
				break;
			if (w.n_aborts != aborts)
				continue; /* aborted and rewound: read the batch again */
			if (opts->drain && !drained) {
				if (drain(&w))
					break;
				if (w.n_aborts != aborts)
					continue; /* the drain's decisions were rolled back too */
				drained = true;
			}
			/* from the first assignment to the commit of the last
			 * message (bench/stream.sh reads this) */
			th_log_info("worker", "caught up; exiting: %" PRIu64 " messages in %.3f s from "
					      "assignment to caught up",
				    w.n_msgs,
				    w.data_committed_at > w.first_assign_at && w.first_assign_at > 0
					    ? w.data_committed_at - w.first_assign_at
					    : 0.0);
			break;
		}
	}
	if (!w.fatal && w.txn_open && w.msgs_in_txn > 0)
		commit_txn(&w);
	if (w.disk_full)
		th_log_warn("state", "stopping with state commits pending (disk full): the next "
				     "owner of those partitions restores them from the changelog");
	rc = w.fatal;
	refresh_metrics(&w);
	log_stats(&w);
out:
	th_metrics_stop();
	if (opts->stats) {
		struct th_worker_stats *s = opts->stats;
		memset(s, 0, sizeof(*s));
		s->messages = w.n_msgs;
		s->alerts = w.n_alerts;
		s->transactions = w.n_txn;
		s->aborts = w.n_aborts;
		s->lost = w.n_lost;
		s->disk_full = w.n_disk_full;
		s->restores = w.n_part_restores;
		for (int i = 0; i < PH__COUNT && i < TH_WORKER_PHASES; i++)
			s->phase_ms[i] = (uint64_t)(w.phase_s[i] * 1000.0);
		memcpy(s->rejects_by, w.rejects_by, sizeof(s->rejects_by));
	}
	if (w.consumer) {
		/* A fatal worker must not commit anything more: no consumer close
		 * (its revoke would try to commit), just go. */
		if (!w.fatal)
			rd_kafka_consumer_close(w.consumer);
		for (int i = 0; i < w.nparts; i++)
			part_close(w.parts[i]);
		w.nparts = 0;
		rd_kafka_destroy_flags(w.consumer,
				       w.fatal ? RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE : 0);
	}
	if (w.restorer) {
		rd_kafka_consumer_close(w.restorer);
		rd_kafka_destroy(w.restorer);
	}
	if (w.producer) {
		if (w.txn_open && !w.fatal) {
			th_watchdog_enter("abort_transaction", QUERY_TIMEOUT_MS);
			rd_kafka_error_t *e = rd_kafka_abort_transaction(w.producer, QUERY_TIMEOUT_MS);
			th_watchdog_leave();
			if (e)
				rd_kafka_error_destroy(e);
		}
		for (int i = 0; i < 3; i++)
			if (w.out_topics[i])
				rd_kafka_topic_destroy(w.out_topics[i]);
		rd_kafka_destroy(w.producer);
	}
	th_avro_alert_destroy(w.avro);
	th_parser_destroy(w.parser);
	th_enrich_destroy(w.en);
	th_wbuf_free(&w.out);
	th_wbuf_free(&w.key);
	free(w.padded);
	return rc;
}

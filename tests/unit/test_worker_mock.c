/*
 * The worker's error paths against librdkafka's mock cluster (in process):
 * errors injected with rd_kafka_mock_push_request_errors() reach every branch
 * of the transaction loop (abort and rewind, retriable and fatal commit
 * errors, a retriable send_offsets error, lost assignment, a fatal consumer
 * error, a failed rewind, a poison message).
 *
 * The mock cluster of librdkafka 2.0.2 is for fault injection only: it keeps
 * no transaction markers (read_committed sees aborted records too) and does
 * not store offsets sent with a transaction (committed() stays INVALID, so a
 * rewind goes back to the beginning). So each test runs its whole input as
 * ONE transaction (huge batch, long commit interval, commit when idle): a
 * rewind to the beginning is then exactly the rewind to the committed
 * offsets, and every record the mock stored on the alert topic counts one
 * produced alert, aborted or committed. The exactly-once proofs against a
 * real broker are tests/kafka/.
 *
 * Each test asserts the worker's exit code and counters and what landed on
 * the topics; a watchdog ends a worker that would otherwise never stop (the
 * old zombie) so that the test fails instead of hanging.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>

#include "child_log.h"
#include "trailhound/config.h"
#include "trailhound/metrics.h"
#include "trailhound/state.h"
#include "trailhound/watchdog.h"
#include "trailhound/worker.h"

/* Kafka API keys (2.0.2's public headers do not export RD_KAFKAP_*) */
enum {
	API_PRODUCE = 0,
	API_OFFSET_FETCH = 9,
	API_JOIN_GROUP = 11,
	API_HEARTBEAT = 12,
	API_INIT_PRODUCER_ID = 22,
	API_ADD_OFFSETS_TO_TXN = 25,
	API_END_TXN = 26,
	API_TXN_OFFSET_COMMIT = 28,
};

#define INPUT TH_TEST_DIR "/cases/variations/v1_two_networks.jsonl"
#define WATCHDOG_S 60
/* the worker's transactional API timeout, and a broker answer slower than it */
#define TXN_TIMEOUT_MS 1500
#define SLOW_MS 3000

struct mock {
	rd_kafka_t *rk; /* owns the cluster */
	rd_kafka_mock_cluster_t *mc;
	char bootstraps[256];
	char state_dir[64];
	int n_input;
	struct th_config cf;
	struct th_worker_opts wo;
	struct th_worker_stats stats;
	volatile sig_atomic_t run;
	/* test hook */
	int hook_calls;
	int64_t poison_offset;
	int hook_action;
};

enum {
	HOOK_NONE,
	HOOK_POISON,
	HOOK_LOSE_ASSIGNMENT,
	HOOK_BREAK_REWIND,
	HOOK_COORDINATOR_DOWN,
	HOOK_COORDINATOR_DOWN_THEN_STOP,
	HOOK_STOP,
	HOOK_CHANGELOG_DOWN_THEN_STOP, /* run_forked only */
	/* run_forked only: two partitions, the first one's changelog leader down */
	HOOK_FIRST_CHANGELOG_DOWN_THEN_STOP,
};

/* Partitions of every topic setup_cluster() creates; the input's events go
 * round-robin over them. */
static int mock_partitions = 1;

/* run_forked()'s third broker: a partition moved to it is out of reach
 * once it is down */
#define SPARE 3

/* The forked cases' stop: asked for STOP_AFTER_S after the second message,
 * well inside the hang's limit (2 x 1.5 s + 10 s), as a SIGTERM would (the
 * run flag and the watchdog's stop count); the worker gets STOP_LIMIT_MS. */
#define STOP_AFTER_S 3
#define STOP_LIMIT_MS 2000

/* setup_cluster()'s broker ids: with three brokers the group coordinator is
 * broker 2 and everything else (partition leaders, the transaction
 * coordinator) broker 1, so the group coordinator alone can go down */
#define LEADER 1
#define GROUP_COORDINATOR 2

static void set(struct mock *m, const char *fmt, ...)
{
	char kv[512], err[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(kv, sizeof(kv), fmt, ap);
	va_end(ap);
	int rc = th_config_set_kv(&m->cf, kv, err, sizeof(err));
	if (rc)
		fail_msg("%s: %s", kv, err);
}

static void produce_input(struct mock *m)
{
	char errstr[512], line[65536];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", m->bootstraps, errstr,
					   sizeof(errstr)),
			 RD_KAFKA_CONF_OK);
	rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	assert_non_null(p);
	FILE *f = fopen(INPUT, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		size_t n = strlen(line);
		while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if (!n)
			continue;
		assert_int_equal(rd_kafka_producev(p, RD_KAFKA_V_TOPIC("in"),
						   RD_KAFKA_V_PARTITION(m->n_input % mock_partitions),
						   RD_KAFKA_V_KEY("k", 1), RD_KAFKA_V_VALUE(line, n),
						   RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
						   RD_KAFKA_V_END),
				 0);
		m->n_input++;
	}
	fclose(f);
	assert_int_equal(rd_kafka_flush(p, 10000), 0);
	rd_kafka_destroy(p);
	assert_true(m->n_input >= 3);
}

static int setup_cluster(void **state, int brokers)
{
	static struct mock m;
	char errstr[512];
	memset(&m, 0, sizeof(m));
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr));
	m.rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	assert_non_null(m.rk);
	m.mc = rd_kafka_mock_cluster_new(m.rk, brokers);
	assert_non_null(m.mc);
	snprintf(m.bootstraps, sizeof(m.bootstraps), "%s", rd_kafka_mock_cluster_bootstraps(m.mc));
	const char *topics[] = {"in", "alerts", "changelog", "dead"};
	for (size_t i = 0; i < 4; i++) {
		assert_int_equal(rd_kafka_mock_topic_create(m.mc, topics[i], mock_partitions, 1), 0);
		for (int32_t part = 0; brokers > 1 && part < mock_partitions; part++)
			assert_int_equal(
				rd_kafka_mock_partition_set_leader(m.mc, topics[i], part, LEADER), 0);
	}
	if (brokers > 1) {
		assert_int_equal(rd_kafka_mock_coordinator_set(m.mc, "transaction", "t1", LEADER), 0);
		assert_int_equal(
			rd_kafka_mock_coordinator_set(m.mc, "group", "g1", GROUP_COORDINATOR), 0);
	}
	produce_input(&m);

	snprintf(m.state_dir, sizeof(m.state_dir), "/tmp/th-mock-XXXXXX");
	assert_non_null(mkdtemp(m.state_dir));
	th_config_init(&m.cf);
	set(&m, "brokers=%s", m.bootstraps);
	set(&m, "input_topics=in");
	set(&m, "output_topic=alerts");
	set(&m, "changelog_topic=changelog");
	set(&m, "dead_letter_topic=dead");
	set(&m, "group_id=g1");
	set(&m, "transactional_id=t1");
	set(&m, "state_dir=%s", m.state_dir);
	set(&m, "schema_id=1");
	set(&m, "asn_db=%s", TH_SHARED_DATA "/asn/asn.mmdb");
	set(&m, "aws_ranges=%s", TH_SHARED_DATA "/aws-ip-ranges/ip-ranges.json");
	/* the whole input in one transaction (see the top of the file) */
	set(&m, "batch_size=1000000");
	set(&m, "commit_interval_ms=600000");
	set(&m, "kafka.consumer.heartbeat.interval.ms=100");
	set(&m, "kafka.consumer.session.timeout.ms=6000");
	m.wo.exit_when_idle_ms = 700;
	m.wo.drain = true;
	m.wo.stats = &m.stats;
	m.wo.txn_timeout_ms = TXN_TIMEOUT_MS;
	m.poison_offset = -1;
	m.run = 1;
	*state = &m;
	return 0;
}

static int setup(void **state)
{
	return setup_cluster(state, 1);
}

static int teardown(void **state)
{
	struct mock *m = *state;
	char cmd[128];
	th_config_free(&m->cf);
	rd_kafka_mock_cluster_destroy(m->mc);
	rd_kafka_destroy(m->rk);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", m->state_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", m->state_dir);
	return 0;
}

static void *watchdog(void *arg)
{
	struct mock *m = arg;
	for (int i = 0; i < WATCHDOG_S * 10 && m->run; i++)
		usleep(100000);
	if (m->run)
		fprintf(stderr, "watchdog: worker still running after %d s: stopping it\n",
			WATCHDOG_S);
	m->run = 0;
	return NULL;
}

static void *stop_later(void *arg)
{
	struct mock *m = arg;
	sleep(STOP_AFTER_S);
	fprintf(stderr, "asking the worker to stop\n");
	m->run = 0;
	th_watchdog_stop_requested();
	return NULL;
}

/* The stop of HOOK_CHANGELOG_DOWN_THEN_STOP: once a restore has begun (the
 * worker's gauge), a second into it. */
static void *stop_while_restoring(void *arg)
{
	struct mock *m = arg;
	for (int i = 0; i < 600 && th_metrics_get_gauge(TH_G_PARTITIONS_RESTORING) == 0; i++)
		usleep(100000);
	sleep(1);
	fprintf(stderr, "asking the worker to stop (restoring: %lld)\n",
		(long long)th_metrics_get_gauge(TH_G_PARTITIONS_RESTORING));
	m->run = 0;
	th_watchdog_stop_requested();
	return NULL;
}

static void stop_in_a_while(struct mock *m)
{
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, stop_later, m), 0);
	pthread_detach(t);
}

static int hook(void *ctx, const char *topic, int32_t partition, int64_t offset)
{
	struct mock *m = ctx;
	(void)topic;
	(void)partition;
	m->hook_calls++;
	switch (m->hook_action) {
	case HOOK_POISON:
		return offset == m->poison_offset ? TH_ESTATE : 0;
	case HOOK_LOSE_ASSIGNMENT:
		if (m->hook_calls == 2) {
			/* the group coordinator says our generation is gone: the
			 * next heartbeat loses the assignment, with the transaction
			 * holding this batch open */
			rd_kafka_mock_push_request_errors(m->mc, API_HEARTBEAT, 1,
							  RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION);
			usleep(600000);
		}
		return 0;
	case HOOK_BREAK_REWIND:
		if (m->hook_calls == 2) {
			/* the committed offsets become unreadable, then processing
			 * fails: the abort's rewind cannot read them */
			rd_kafka_mock_push_request_errors(
				m->mc, API_OFFSET_FETCH, 8, RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED,
				RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED,
				RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED,
				RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED,
				RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED,
				RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED,
				RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED,
				RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED);
			return TH_ESTATE;
		}
		return 0;
	case HOOK_COORDINATOR_DOWN:
	case HOOK_COORDINATOR_DOWN_THEN_STOP:
		if (m->hook_calls == 2)
			/* mid-transaction: the commit's send_offsets_to_transaction()
			 * will need the group coordinator */
			rd_kafka_mock_broker_set_down(m->mc, GROUP_COORDINATOR);
		if (m->hook_calls == 2 && m->hook_action == HOOK_COORDINATOR_DOWN_THEN_STOP)
			stop_in_a_while(m);
		return 0;
	case HOOK_STOP:
		if (m->hook_calls == 2)
			stop_in_a_while(m);
		return 0;
	default:
		return 0;
	}
}

static int run_worker(struct mock *m)
{
	pthread_t t;
	m->wo.test_hook = hook;
	m->wo.test_ctx = m;
	assert_int_equal(pthread_create(&t, NULL, watchdog, m), 0);
	int rc = th_worker_run(&m->cf, &m->wo, &m->run);
	m->run = 0;
	pthread_join(t, NULL);
	fprintf(stderr,
		"worker exit %d: messages=%llu alerts=%llu transactions=%llu aborts=%llu lost=%llu\n",
		rc, (unsigned long long)m->stats.messages, (unsigned long long)m->stats.alerts,
		(unsigned long long)m->stats.transactions, (unsigned long long)m->stats.aborts,
		(unsigned long long)m->stats.lost);
	return rc;
}

/* Records the mock stored on a topic (aborted ones included: no markers). */
static int64_t topic_records(struct mock *m, const char *topic)
{
	char errstr[512];
	int64_t lo = 0, hi = 0;
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_conf_set(conf, "bootstrap.servers", m->bootstraps, errstr, sizeof(errstr));
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	assert_non_null(rk);
	assert_int_equal(rd_kafka_query_watermark_offsets(rk, topic, 0, &lo, &hi, 10000), 0);
	rd_kafka_destroy(rk);
	return hi - lo;
}

/* The dead-letter records: how many, and whether each has reason @p reason
 * and source.offset @p offset. */
static int dead_letters(struct mock *m, const char *reason, int64_t offset)
{
	char errstr[512], want_off[32];
	int n = 0;
	int64_t total = topic_records(m, "dead");
	if (total == 0)
		return 0;
	snprintf(want_off, sizeof(want_off), "%lld", (long long)offset);
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_conf_set(conf, "bootstrap.servers", m->bootstraps, errstr, sizeof(errstr));
	rd_kafka_conf_set(conf, "group.id", "reader", errstr, sizeof(errstr));
	rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	assert_non_null(c);
	rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(tp, "dead", 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
	assert_int_equal(rd_kafka_assign(c, tp), 0);
	rd_kafka_topic_partition_list_destroy(tp);
	for (int tries = 0; n < total && tries < 200; tries++) {
		rd_kafka_message_t *msg = rd_kafka_consumer_poll(c, 100);
		if (!msg)
			continue;
		if (!msg->err) {
			rd_kafka_headers_t *h = NULL;
			const void *v;
			size_t vlen;
			assert_int_equal(rd_kafka_message_headers(msg, &h), 0);
			assert_int_equal(rd_kafka_header_get_last(h, "reason", &v, &vlen), 0);
			assert_int_equal(vlen, strlen(reason));
			assert_memory_equal(v, reason, vlen);
			assert_int_equal(rd_kafka_header_get_last(h, "source.offset", &v, &vlen), 0);
			assert_int_equal(vlen, strlen(want_off));
			assert_memory_equal(v, want_off, vlen);
			n++;
		}
		rd_kafka_message_destroy(msg);
	}
	rd_kafka_consumer_close(c);
	rd_kafka_destroy(c);
	return n;
}

/* No fault: one transaction, one alert, no abort. The reference for the
 * counts below. */
static void test_clean_run(void **state)
{
	struct mock *m = *state;
	assert_int_equal(run_worker(m), 0);
	assert_int_equal(m->stats.aborts, 0);
	assert_true(m->stats.transactions >= 1);
	assert_int_equal(m->stats.messages, m->n_input);
	assert_int_equal(m->stats.alerts, 1);
	assert_int_equal(topic_records(m, "alerts"), 1);
	assert_int_equal(topic_records(m, "dead"), 0);
}

/* An abortable error from @p api: abort, rewind, redo everything, commit. */
static void abortable(struct mock *m, int api, rd_kafka_resp_err_t err)
{
	rd_kafka_mock_push_request_errors(m->mc, api, 1, err);
	assert_int_equal(run_worker(m), 0);
	assert_true(m->stats.aborts >= 1);
	assert_true(m->stats.transactions >= 1);
	/* rewound to the start and read everything again */
	assert_true(m->stats.messages >= 2 * (uint64_t)m->n_input);
	/* the last transaction committed the alert again after the abort */
	assert_true(m->stats.alerts >= 2);
}

static void test_abortable_produce(void **state)
{
	abortable(*state, API_PRODUCE, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
}

static void test_abortable_add_offsets(void **state)
{
	abortable(*state, API_ADD_OFFSETS_TO_TXN, RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED);
}

static void test_abortable_txn_offset_commit(void **state)
{
	abortable(*state, API_TXN_OFFSET_COMMIT, RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED);
}

static void test_abortable_end_txn(void **state)
{
	abortable(*state, API_END_TXN, RD_KAFKA_RESP_ERR_POLICY_VIOLATION);
}

/* trailhound_alerts_total summed over its series, as a scrape shows it */
static uint64_t metric_alerts(void)
{
	char *out, *at;
	size_t len;
	uint64_t sum = 0;
	assert_int_equal(th_metrics_render(&out, &len), 0);
	for (at = out; (at = strstr(at, "\ntrailhound_alerts_total{")); at++)
		sum += strtoull(strchr(at, '}') + 1, NULL, 10);
	free(out);
	return sum;
}

/* A retriable error from send_offsets_to_transaction must abort: committing
 * would commit the batch's output without its input offsets (the old code
 * fell into "retry commit" and did). */
static void test_retriable_send_offsets_aborts(void **state)
{
	struct mock *m = *state;
	/* the answer comes after the call's timeout: a retriable error */
	rd_kafka_mock_broker_push_request_error_rtts(m->mc, 1, API_ADD_OFFSETS_TO_TXN, 1,
						     RD_KAFKA_RESP_ERR_NO_ERROR, SLOW_MS);
	th_metrics_reset();
	assert_int_equal(run_worker(m), 0);
	assert_int_equal(m->stats.aborts, 1);
	assert_true(m->stats.transactions >= 1);
	/* the batch was redone from the start, its alert produced again (the
	 * mock keeps the aborted copy too if it was sent before the abort) */
	assert_int_equal(m->stats.messages, 2 * m->n_input);
	assert_int_equal(m->stats.alerts, 2);
	assert_true(topic_records(m, "alerts") >= 1);
	/* /metrics counts the committed one only (it counted both) */
	assert_int_equal(metric_alerts(), 1);
}

/* A retriable commit error retries the commit: no abort, no reprocessing. */
static void test_retriable_commit_retries(void **state)
{
	struct mock *m = *state;
	rd_kafka_mock_broker_push_request_error_rtts(m->mc, 1, API_END_TXN, 1,
						     RD_KAFKA_RESP_ERR_NO_ERROR, SLOW_MS);
	assert_int_equal(run_worker(m), 0);
	assert_int_equal(m->stats.aborts, 0);
	assert_true(m->stats.transactions >= 1);
	assert_int_equal(m->stats.messages, m->n_input);
	assert_int_equal(topic_records(m, "alerts"), 1);
}

/* A fatal commit error (fenced producer): exit 5, nothing committed. */
static void test_fatal_commit_exits_5(void **state)
{
	struct mock *m = *state;
	rd_kafka_mock_push_request_errors(m->mc, API_END_TXN, 1,
					  RD_KAFKA_RESP_ERR_PRODUCER_FENCED);
	assert_int_equal(run_worker(m), TH_EFATAL);
	assert_int_equal(m->stats.transactions, 0);
}

/* A fatal consumer error (a static member fenced by another with the same
 * group.instance.id): exit 5 at once, not sit without partitions until the
 * watchdog stops it (the old code's zombie, exit 0). */
static void test_fatal_consumer_error_exits_5(void **state)
{
	struct mock *m = *state;
	set(m, "kafka.consumer.group.instance.id=i1");
	rd_kafka_mock_push_request_errors(m->mc, API_JOIN_GROUP, 1,
					  RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID);
	assert_int_equal(run_worker(m), TH_EFATAL);
	assert_int_equal(m->stats.messages, 0);
}

/* The assignment is lost while the transaction is open: abort it, drop the
 * uncommitted state, take the partitions back and redo the batch. */
static void test_lost_assignment_aborts(void **state)
{
	struct mock *m = *state;
	m->hook_action = HOOK_LOSE_ASSIGNMENT;
	assert_int_equal(run_worker(m), 0);
	assert_int_equal(m->stats.lost, 1);
	assert_int_equal(m->stats.aborts, 1);
	assert_true(m->stats.transactions >= 1);
	/* the aborted batch (at least 2 messages in) was read again from the
	 * start */
	assert_true(m->stats.messages >= (uint64_t)m->n_input + 2);
	assert_true(m->stats.alerts >= 1);
}

/* A rewind that cannot read the committed offsets ends the worker with 5
 * (the old code ended its loop with exit code 0). */
static void test_failed_rewind_exits_5(void **state)
{
	struct mock *m = *state;
	m->hook_action = HOOK_BREAK_REWIND;
	assert_int_equal(run_worker(m), TH_EFATAL);
	assert_int_equal(m->stats.transactions, 0);
}

/* A message whose processing always fails: 3 attempts (each aborts and
 * rewinds), then it is dead-lettered as processing_failed and the rest of
 * the partition is processed and committed (the old code looped forever). */
static void test_poison_message_dead_lettered(void **state)
{
	struct mock *m = *state;
	m->hook_action = HOOK_POISON;
	m->poison_offset = 2;
	assert_int_equal(run_worker(m), 0);
	assert_int_equal(m->stats.aborts, 3);
	assert_true(m->stats.transactions >= 1);
	assert_int_equal(m->stats.rejects_by[TH_REJECT_PROCESSING_FAILED], 1);
	/* 3 failed passes up to the poison message, then the whole input */
	assert_int_equal(m->stats.messages, 3 * 3 + m->n_input);
	assert_int_equal(dead_letters(m, "processing_failed", 2), 1);
}

/* The dead-letter topic does not exist (a typo, or never created) and the
 * brokers do not create topics (auto.create.topics.enable=false, as in
 * deploy/compose and most managed clusters): a poison message could be set
 * aside nowhere, and the worker redid its batch forever ("attempt 561 of
 * 3"), the partition stuck behind it with /healthz and /readyz green. It
 * stops now, as a configuration error a restart will not mend (exit 4),
 * naming the topic. The mock's watchdog ends a worker that loops. */
static void test_missing_dead_letter_topic_stops_the_worker(void **state)
{
	struct mock *m = *state;
	m->hook_action = HOOK_POISON;
	m->poison_offset = 2;
	/* what a broker answers for a topic it does not have and will not make */
	rd_kafka_mock_topic_set_error(m->mc, "dead", RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
	assert_int_equal(run_worker(m), TH_ECONFIG);
	/* the poison message's attempts and the one that tried to set it
	 * aside, not the hundreds of a loop */
	assert_true(m->stats.aborts < 10);
	assert_true(m->stats.rejects_by[TH_REJECT_PROCESSING_FAILED] >= 1);
}

/* The alert topic does not exist and the brokers do not create topics:
 * every alert failed its message, which after max_attempts went to the
 * dead-letter topic as processing_failed -- the worker ran on, exit 0, and
 * the SIEM never saw an alert again. A topic refused by name is no fault
 * of the record: the worker stops (exit 4), naming output_topic. */
static void test_missing_alert_topic_stops_the_worker(void **state)
{
	struct mock *m = *state;
	rd_kafka_mock_topic_set_error(m->mc, "alerts", RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
	assert_int_equal(run_worker(m), TH_ECONFIG);
	assert_int_equal(m->stats.rejects_by[TH_REJECT_PROCESSING_FAILED], 0);
}

/* The principal lacks the TransactionalId ACL: no restart grants it, so
 * the worker's start fails as a configuration error (exit 4), not as a
 * runtime failure for the supervisor to restart forever (the old code: 5).
 * The local broker runs no authorizer; the secure one (kafka.secure) is a
 * separate setup, and the mock answers exactly as a broker denying it. */
static void test_transactional_id_acl_missing_exits_4(void **state)
{
	struct mock *m = *state;
	rd_kafka_mock_push_request_errors(m->mc, API_INIT_PRODUCER_ID, 1,
					  RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
	assert_int_equal(run_worker(m), TH_ECONFIG);
	assert_int_equal(m->stats.messages, 0);
}

/* The same for a principal without IdempotentWrite on the cluster (brokers
 * before 3.0 require it of a transactional producer). */
static void test_cluster_acl_missing_exits_4(void **state)
{
	struct mock *m = *state;
	rd_kafka_mock_push_request_errors(m->mc, API_INIT_PRODUCER_ID, 1,
					  RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED);
	assert_int_equal(run_worker(m), TH_ECONFIG);
	assert_int_equal(m->stats.messages, 0);
}

/* kafka.producer.transaction.timeout.ms above the broker's
 * transaction.max.timeout.ms (15 min by default): init_transactions fails
 * with INVALID_TRANSACTION_TIMEOUT every time, a setting to change, yet the
 * worker exited 5 ("runtime failure, restart it") and its supervisor
 * restarted it forever. A configuration error now: exit 4. */
static void test_transaction_timeout_over_the_brokers_max_exits_4(void **state)
{
	struct mock *m = *state;
	rd_kafka_mock_push_request_errors(m->mc, API_INIT_PRODUCER_ID, 1,
					  RD_KAFKA_RESP_ERR_INVALID_TRANSACTION_TIMEOUT);
	assert_int_equal(run_worker(m), TH_ECONFIG);
	assert_int_equal(m->stats.messages, 0);
}

static void *stop_soon(void *arg)
{
	struct mock *m = arg;
	sleep(2);
	m->run = 0;
	return NULL;
}

/* SIGTERM while the start still waits for the brokers (all down): a clean
 * stop, 0, as at any other time (the old code: 5, a restart to no end). */
static void test_stop_while_waiting_for_brokers_exits_0(void **state)
{
	struct mock *m = *state;
	pthread_t t;
	rd_kafka_mock_broker_set_down(m->mc, 1);
	assert_int_equal(pthread_create(&t, NULL, stop_soon, m), 0);
	int rc = run_worker(m);
	pthread_join(t, NULL);
	assert_int_equal(rc, 0);
	assert_int_equal(m->stats.messages, 0);
	assert_int_equal(m->stats.transactions, 0);
}

/* A crashed member's transaction still holds offsets of the partition: the
 * coordinator answers the new owner's committed-offsets request with
 * UNSTABLE_OFFSET_COMMIT until that transaction times out
 * (transaction.timeout.ms) and is aborted. The new owner waits that out and
 * goes on; it exited 5 before. */
static void test_pending_offsets_waited_out(void **state)
{
	struct mock *m = *state;
	/* pending for ~35 s (librdkafka asks again every ~100 ms): longer
	 * than the old fixed 30 s wait, less than the transaction timeout
	 * configured here plus the margin */
	static rd_kafka_resp_err_t unstable[350];
	for (size_t i = 0; i < sizeof(unstable) / sizeof(unstable[0]); i++)
		unstable[i] = RD_KAFKA_RESP_ERR_UNSTABLE_OFFSET_COMMIT;
	set(m, "kafka.producer.transaction.timeout.ms=45000");
	set(m, "kafka.producer.message.timeout.ms=40000");
	rd_kafka_mock_push_request_errors_array(m->mc, API_OFFSET_FETCH,
						sizeof(unstable) / sizeof(unstable[0]), unstable);
	assert_int_equal(run_worker(m), 0);
	assert_int_equal(m->stats.messages, m->n_input);
	assert_int_equal(m->stats.alerts, 1);
}

/* A coordinator that answers the committed-offsets request, but slowly
 * (an overloaded broker: 1.5 s in its request queue). One answer is all
 * the assignment needs; the 30 s wait before the stop-signal slices got it
 * at once. Asking again every second and dropping each late answer never
 * got one, and the worker exited 5 at the end of the wait. */
static void test_slow_offset_fetch_answered(void **state)
{
	struct mock *m = *state;
	/* the wait: ASSIGN_TIMEOUT_MS, 30 s */
	set(m, "kafka.producer.transaction.timeout.ms=10000");
	set(m, "kafka.producer.message.timeout.ms=9000");
	for (int i = 0; i < 60; i++)
		rd_kafka_mock_broker_push_request_error_rtts(m->mc, 1, API_OFFSET_FETCH, 1,
							     RD_KAFKA_RESP_ERR_NO_ERROR, 1500);
	assert_int_equal(run_worker(m), 0);
	assert_int_equal(m->stats.messages, m->n_input);
	assert_int_equal(m->stats.alerts, 1);
}

/* The worker on a three-broker cluster in a child process with the hang
 * watchdog started as `run` starts it (exit 5): a watchdog that fires ends
 * the child, not this test. The child's log (stderr) goes to @p log; its
 * exit code is returned (the worker's own result: 0 = 0, anything else 1).
 * The parent has no threads when it forks (every earlier test joined its
 * clients'), so the child may build its own cluster. */
/* What each partition's store holds: "store in-N: offset X" or "no offset". */
static void print_store_offsets(struct mock *m)
{
	for (int part = 0; part < mock_partitions; part++) {
		char dir[128], err[256];
		struct th_state *st;
		snprintf(dir, sizeof(dir), "%s/in-%d", m->state_dir, part);
		if (th_state_open_readonly(&st, dir, err, sizeof(err))) {
			fprintf(stderr, "store in-%d: %s\n", part, err);
			continue;
		}
		int64_t off = th_state_offset(st);
		if (off == TH_STATE_NO_OFFSET)
			fprintf(stderr, "store in-%d: no offset\n", part);
		else
			fprintf(stderr, "store in-%d: offset %lld\n", part, (long long)off);
		th_state_close(st);
	}
}

static int run_forked(int hook_action, char *log, size_t log_size)
{
	char path[] = "/tmp/th-mock-log-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		void *state;
		dup2(fd, 2);
		if (hook_action == HOOK_FIRST_CHANGELOG_DOWN_THEN_STOP)
			mock_partitions = 2;
		setup_cluster(&state, 3);
		struct mock *m = state;
		m->hook_action = hook_action;
		m->wo.test_hook = hook;
		m->wo.test_ctx = m;
		if (hook_action == HOOK_STOP)
			m->wo.exit_when_idle_ms = 0; /* it runs until the stop */
		fprintf(stderr, "state_dir=%s\n", m->state_dir);
		if (hook_action == HOOK_CHANGELOG_DOWN_THEN_STOP ||
		    hook_action == HOOK_FIRST_CHANGELOG_DOWN_THEN_STOP) {
			/* a first run commits the input and its changelog; the
			 * second runs in a new group, which has no committed
			 * offset: the store is at another offset than the group's,
			 * so the assignment restores from the changelog, whose
			 * leader is then out of reach (a broker of a rolling
			 * restart) */
			m->wo.test_hook = NULL;
			if (th_worker_run(&m->cf, &m->wo, &m->run))
				_exit(3);
			print_store_offsets(m);
			fprintf(stderr, "first run done (messages=%llu transactions=%llu): a new "
					"group, the changelog's leader down\n",
				(unsigned long long)m->stats.messages,
				(unsigned long long)m->stats.transactions);
			set(m, "group_id=g2");
			rd_kafka_mock_coordinator_set(m->mc, "group", "g2", GROUP_COORDINATOR);
			rd_kafka_mock_partition_set_leader(m->mc, "changelog", 0, SPARE);
			rd_kafka_mock_broker_set_down(m->mc, SPARE);
			/* the first partition's: so the other is not yet wiped */
			m->wo.exit_when_idle_ms = 0;
			th_log_level = TH_LOG_INFO; /* the restore's lines */
			pthread_t t;
			pthread_create(&t, NULL, stop_while_restoring, m);
			pthread_detach(t);
		}
		th_watchdog_set_stop_limit(STOP_LIMIT_MS);
		if (th_watchdog_start(5))
			_exit(3);
		int rc = th_worker_run(&m->cf, &m->wo, &m->run);
		fprintf(stderr, "worker returned %d: messages=%llu transactions=%llu\n", rc,
			(unsigned long long)m->stats.messages,
			(unsigned long long)m->stats.transactions);
		print_store_offsets(m);
		_exit(rc == 0 ? 0 : 1);
	}
	close(fd);
	/* bounded: the watchdog fires 2 x 1.5 s + 10 s into the hang */
	int status = 0;
	bool done = child_wait_and_read_log(pid, 120, &status, path, log, log_size);
	char *sd = strstr(log, "state_dir=");
	if (sd) {
		char cmd[128];
		int len = (int)strcspn(sd + 10, "\n");
		snprintf(cmd, sizeof(cmd), "rm -rf '%.*s'", len, sd + 10);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove the child's state_dir\n");
	}
	if (!done)
		fail_msg("the child still ran after 120 s: no watchdog ended it");
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

/* librdkafka 2.0.2's send_offsets_to_transaction() waits for a group
 * coordinator that stays down forever, whatever its timeout (librdkafka
 * #5456; CI's broker outage met it: the worker sat in the group doing
 * nothing for minutes). The group coordinator goes down mid-transaction:
 * the watchdog names the hung call and ends the worker with 5. */
static void test_hung_send_offsets_exits_5(void **state)
{
	static char log[1 << 20];
	(void)state;
	assert_int_equal(run_forked(HOOK_COORDINATOR_DOWN, log, sizeof(log)), 5);
	assert_non_null(strstr(log, "[watchdog] send_offsets_to_transaction has not returned"));
	assert_null(strstr(log, "worker returned"));
}

/* Its twin: the same cluster and child, the coordinator stays up: the
 * worker commits and exits 0, and the watchdog says nothing. */
static void test_forked_run_with_coordinator_up_exits_0(void **state)
{
	static char log[1 << 20];
	(void)state;
	assert_int_equal(run_forked(HOOK_NONE, log, sizeof(log)), 0);
	assert_null(strstr(log, "[watchdog]"));
	assert_non_null(strstr(log, "worker returned 0"));
}

/* SIGTERM while send_offsets_to_transaction() hangs (the case above): the
 * stop cannot finish, and the worker ends STOP_LIMIT_MS after it was asked
 * for (stop_timeout), before a supervisor's kill would, and long before the
 * hang's own limit; the log says what it was still doing. */
static void test_stop_during_a_hang_ends_at_the_stop_limit(void **state)
{
	static char log[1 << 20];
	(void)state;
	assert_int_equal(run_forked(HOOK_COORDINATOR_DOWN_THEN_STOP, log, sizeof(log)), 5);
	assert_non_null(strstr(log, "asking the worker to stop"));
	assert_non_null(strstr(log, "[watchdog] the stop asked for"));
	assert_non_null(strstr(log, "send_offsets_to_transaction has been running for"));
	assert_null(strstr(log, "has not returned"));
	assert_null(strstr(log, "worker returned"));
}

/* Its twin: the same stop with every broker up finishes cleanly, inside
 * the limit: exit 0 and no word from the watchdog. */
static void test_stop_with_brokers_up_is_clean(void **state)
{
	static char log[1 << 20];
	(void)state;
	assert_int_equal(run_forked(HOOK_STOP, log, sizeof(log)), 0);
	assert_non_null(strstr(log, "asking the worker to stop"));
	assert_null(strstr(log, "[watchdog]"));
	assert_non_null(strstr(log, "worker returned 0"));
}

/* A stop while a restore waits for the changelog's leader, whose broker is
 * down: the worker stops at once, keeping nothing of the restore (exit 0).
 * rd_kafka_query_watermark_offsets() never returned while the leader was
 * unreachable, whatever its timeout (librdkafka #2588): the stop went
 * unanswered until the stop limit ended the worker with 5 (and without a
 * stop, the worker sat there, its liveness probe failing, until the broker
 * came back). */
static void test_stop_while_a_restore_waits_for_the_changelog_leader(void **state)
{
	static char log[1 << 20];
	(void)state;
	int rc = run_forked(HOOK_CHANGELOG_DOWN_THEN_STOP, log, sizeof(log));
	assert_non_null(strstr(log, "the changelog's leader down"));
	assert_non_null(strstr(log, "asking the worker to stop (restoring: 1)"));
	assert_null(strstr(log, "[watchdog]"));
	assert_non_null(strstr(log, "group committed"));
	assert_non_null(strstr(log, "restoring"));
	assert_non_null(strstr(log, "stopped after 0 state records"));
	assert_int_equal(rc, 0);
}

/* The same stop with two partitions restoring, the first one's changelog
 * leader down: the stop comes while the worker asks that leader for the
 * changelog's watermarks, before it has wiped the second partition's store.
 * Both stores, written by the first run, must be left with no offset (a new
 * store that restores in full next time), not the second one kept at the
 * first run's offset (docs/operations.md: a stop mid-restore keeps nothing). */
static void test_stop_while_asking_the_first_changelog_leader_wipes_every_store(void **state)
{
	static char log[1 << 20];
	(void)state;
	int rc = run_forked(HOOK_FIRST_CHANGELOG_DOWN_THEN_STOP, log, sizeof(log));
	const char *second = strstr(log, "first run done");
	assert_non_null(second);
	/* the first run left both stores at an offset */
	const char *s0 = strstr(log, "store in-0: offset "), *s1 = strstr(log, "store in-1: offset ");
	assert_true(s0 && s0 < second && s1 && s1 < second);
	assert_non_null(strstr(second, "asking the worker to stop (restoring: 2)"));
	assert_non_null(strstr(second, "in[0]: stopped after 0 state records"));
	assert_non_null(strstr(second, "in[1]: stopped after 0 state records"));
	if (!strstr(second, "store in-0: no offset") || !strstr(second, "store in-1: no offset"))
		fail_msg("a store kept its offset after the stop:\n%s", second);
	assert_null(strstr(log, "[watchdog]"));
	assert_int_equal(rc, 0);
}

int main(void)
{
	th_log_level = TH_LOG_WARN;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_clean_run, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abortable_produce, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abortable_add_offsets, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abortable_txn_offset_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abortable_end_txn, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retriable_send_offsets_aborts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retriable_commit_retries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fatal_commit_exits_5, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fatal_consumer_error_exits_5, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lost_assignment_aborts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_rewind_exits_5, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poison_message_dead_lettered, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_dead_letter_topic_stops_the_worker,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_alert_topic_stops_the_worker, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_transactional_id_acl_missing_exits_4, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_cluster_acl_missing_exits_4, setup, teardown),
		cmocka_unit_test_setup_teardown(test_transaction_timeout_over_the_brokers_max_exits_4,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_while_waiting_for_brokers_exits_0, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_pending_offsets_waited_out, setup, teardown),
		cmocka_unit_test_setup_teardown(test_slow_offset_fetch_answered, setup, teardown),
		cmocka_unit_test(test_forked_run_with_coordinator_up_exits_0),
		cmocka_unit_test(test_hung_send_offsets_exits_5),
		cmocka_unit_test(test_stop_during_a_hang_ends_at_the_stop_limit),
		cmocka_unit_test(test_stop_with_brokers_up_is_clean),
		cmocka_unit_test(test_stop_while_a_restore_waits_for_the_changelog_leader),
		cmocka_unit_test(
			test_stop_while_asking_the_first_changelog_leader_wipes_every_store),
	};
	/* TH_MOCK_FILTER=test_name runs one test (debugging) */
	if (getenv("TH_MOCK_FILTER"))
		cmocka_set_test_filter(getenv("TH_MOCK_FILTER"));
	if (getenv("TH_MOCK_VERBOSE"))
		th_log_level = TH_LOG_DEBUG;
	return cmocka_run_group_tests(tests, NULL, NULL);
}

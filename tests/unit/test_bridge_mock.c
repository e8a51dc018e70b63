/*
 * trailhound bridge against librdkafka's mock cluster, for what the local
 * broker cannot show: a principal without the ACLs of init_transactions (the
 * local broker runs no authorizer). The bridge's start reaches Kafka before
 * it asks SQS anything, so no AWS endpoint is needed: the queue URL points
 * at nothing and is never contacted.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>

#include "trailhound/bridge.h"
#include "trailhound/common.h"
#include "trailhound/config.h"
#include "trailhound/log.h"
#include "child_log.h"

enum { API_INIT_PRODUCER_ID = 22 };

struct mock {
	rd_kafka_t *rk;
	rd_kafka_mock_cluster_t *mc;
	struct th_config cf;
	volatile sig_atomic_t run;
};

static void set(struct mock *m, const char *fmt, ...)
{
	char kv[512], err[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(kv, sizeof(kv), fmt, ap);
	va_end(ap);
	if (th_config_set_kv(&m->cf, kv, err, sizeof(err)))
		fail_msg("%s: %s", kv, err);
}

static int setup(void **state)
{
	static struct mock m;
	char errstr[512];
	memset(&m, 0, sizeof(m));
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr));
	m.rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	assert_non_null(m.rk);
	m.mc = rd_kafka_mock_cluster_new(m.rk, 1);
	assert_non_null(m.mc);
	const char *topics[] = {"in", "ledger", "dead"};
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(rd_kafka_mock_topic_create(m.mc, topics[i], 1, 1), 0);
	th_config_init(&m.cf);
	set(&m, "brokers=%s", rd_kafka_mock_cluster_bootstraps(m.mc));
	set(&m, "input_topics=in");
	set(&m, "dead_letter_topic=dead");
	set(&m, "bridge_ledger_topic=ledger");
	set(&m, "bridge_transactional_id=bridge-1");
	set(&m, "bridge_queue_url=http://127.0.0.1:9/123456789012/never-asked");
	set(&m, "aws_endpoint=http://127.0.0.1:9");
	setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "unused", 1);
	unsetenv("AWS_SESSION_TOKEN");
	m.run = 1;
	*state = &m;
	return 0;
}

static int teardown(void **state)
{
	struct mock *m = *state;
	th_config_free(&m->cf);
	rd_kafka_mock_cluster_destroy(m->mc);
	rd_kafka_destroy(m->rk);
	return 0;
}

static int run_bridge(struct mock *m)
{
	struct th_bridge_opts o = {.exit_when_idle_ms = 1, .wait_s = 0};
	struct th_bridge_stats st;
	return th_bridge_run(&m->cf, &o, &m->run, &st);
}

/* Without the TransactionalId ACL (Write, Describe on bridge_transactional_id)
 * init_transactions fails for good: a configuration error (exit 4, as the
 * worker since ca1425f and cmd.h's exit codes say), not a Kafka failure a
 * restart heals (it exited 5: the supervisor restarted it for ever). */
static void test_transactional_id_acl_missing_exits_4(void **state)
{
	struct mock *m = *state;
	rd_kafka_mock_push_request_errors(m->mc, API_INIT_PRODUCER_ID, 1,
					  RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
	assert_int_equal(run_bridge(m), TH_ECONFIG);
}

/* The same without Cluster IdempotentWrite (brokers before 3.0 ask it of a
 * transactional producer). */
static void test_cluster_acl_missing_exits_4(void **state)
{
	struct mock *m = *state;
	rd_kafka_mock_push_request_errors(m->mc, API_INIT_PRODUCER_ID, 1,
					  RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED);
	assert_int_equal(run_bridge(m), TH_ECONFIG);
}

static void *stop_soon(void *arg)
{
	struct mock *m = arg;
	sleep(2);
	m->run = 0;
	return NULL;
}

/* SIGTERM while the start still waits for the brokers (all down): a clean
 * stop, 0, as the worker's. The bridge waited out init_transactions' minute
 * and exited 5 (TH_EFATAL), its supervisor's cue to start it again. */
static void test_stop_while_waiting_for_brokers_exits_0(void **state)
{
	struct mock *m = *state;
	pthread_t t;
	rd_kafka_mock_broker_set_down(m->mc, 1);
	assert_int_equal(pthread_create(&t, NULL, stop_soon, m), 0);
	int rc = run_bridge(m);
	pthread_join(t, NULL);
	assert_int_equal(rc, 0);
}

/* SIGTERM while the start reads the ledger (the broker leading the ledger's
 * partition is down, so the read cannot reach the end): a clean stop, 0,
 * like a stop in init_transactions above. The bridge never returned:
 * rd_kafka_query_watermark_offsets() ignores its timeout while the leader is
 * unreachable (librdkafka #2588), so SIGTERM went unanswered until the
 * broker came back; and a stop in the read loop exited 5. Two brokers: the
 * transaction coordinator (1) is up. In a child, waited for 90 s. */
static void test_stop_while_reading_the_ledger_exits_0(void **state)
{
	struct mock *m = *state;
	rd_kafka_mock_cluster_destroy(m->mc);
	m->mc = rd_kafka_mock_cluster_new(m->rk, 2);
	assert_non_null(m->mc);
	const char *topics[] = {"in", "ledger", "dead"};
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(rd_kafka_mock_topic_create(m->mc, topics[i], 1, 1), 0);
	assert_int_equal(rd_kafka_mock_partition_set_leader(m->mc, "ledger", 0, 2), 0);
	assert_int_equal(rd_kafka_mock_coordinator_set(m->mc, "transaction", "bridge-1", 1), 0);
	set(m, "brokers=%s", rd_kafka_mock_cluster_bootstraps(m->mc));
	set(m, "bridge_ledger_retention=0"); /* read from the beginning: no lookup by time */
	rd_kafka_mock_broker_set_down(m->mc, 2);
	char path[] = "/tmp/th-test-bridge-log-XXXXXX", logs[1 << 16];
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* the mock cluster's threads are the parent's: the child reaches
		 * its listeners through the sockets it inherited */
		dup2(fd, 2);
		th_log_level = TH_LOG_INFO;
		pthread_t t;
		pthread_create(&t, NULL, stop_soon, m);
		int rc = run_bridge(m);
		fflush(stderr);
		_exit(rc);
	}
	close(fd);
	int status = 0;
	bool ended = child_wait_and_read_log(pid, 90, &status, path, logs, sizeof(logs));
	assert_true(ended); /* it stopped, within 90 s of a stop asked at 2 s */
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_non_null(strstr(logs, "stopped while reading the ledger"));
}

int main(void)
{
	th_log_level = TH_LOG_WARN;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_transactional_id_acl_missing_exits_4, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_cluster_acl_missing_exits_4, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_while_waiting_for_brokers_exits_0, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_stop_while_reading_the_ledger_exits_0, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

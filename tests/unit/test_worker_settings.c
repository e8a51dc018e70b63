/*
 * th_worker_check_kafka_settings() (`run --check-config`) refuses every
 * kafka.* setting the worker's start refuses. It used to build the client
 * configurations without creating the clients, so combinations librdkafka
 * judges only in rd_kafka_new() passed the check ("ok", exit 0) while `run`
 * then exited 4 at once: acks != all or enable.idempotence = false with the
 * transactional producer, session.timeout.ms above max.poll.interval.ms on
 * the group consumer. No broker is needed: the clients are made and
 * destroyed, never used.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "trailhound/common.h"
#include "trailhound/config.h"
#include "trailhound/worker.h"

/* The check's verdict on the default configuration plus one setting;
 * errstr gets its reason. */
static int check_with(const char *kv, char *errstr, size_t errstr_size)
{
	struct th_config cf;
	char err[512];
	th_config_init(&cf);
	/* a port nothing listens on: the check must not need a broker */
	assert_int_equal(th_config_set_kv(&cf, "brokers=127.0.0.1:1", err, sizeof(err)), 0);
	if (kv)
		assert_int_equal(th_config_set_kv(&cf, kv, err, sizeof(err)), 0);
	errstr[0] = '\0';
	int rc = th_worker_check_kafka_settings(&cf, errstr, errstr_size);
	th_config_free(&cf);
	return rc;
}

static void test_defaults_pass(void **state)
{
	(void)state;
	char errstr[512];
	assert_int_equal(check_with(NULL, errstr, sizeof(errstr)), 0);
	/* settings every client accepts stay accepted */
	assert_int_equal(check_with("kafka.consumer.group.instance.id=worker-1", errstr,
				    sizeof(errstr)), 0);
	assert_int_equal(check_with("kafka.consumer.session.timeout.ms=45000", errstr,
				    sizeof(errstr)), 0);
	assert_int_equal(check_with("kafka.producer.acks=all", errstr, sizeof(errstr)), 0);
}

static void test_producer_refusals_are_caught(void **state)
{
	(void)state;
	char errstr[512];
	assert_int_equal(check_with("kafka.producer.acks=1", errstr, sizeof(errstr)), TH_ECONFIG);
	assert_non_null(strstr(errstr, "transactional producer"));
	assert_non_null(strstr(errstr, "acks"));
	assert_int_equal(check_with("kafka.enable.idempotence=false", errstr, sizeof(errstr)),
			 TH_ECONFIG);
	assert_non_null(strstr(errstr, "transactional producer"));
	assert_non_null(strstr(errstr, "enable.idempotence"));
}

static void test_consumer_refusals_are_caught(void **state)
{
	(void)state;
	char errstr[512];
	/* librdkafka's default max.poll.interval.ms is 300000 */
	assert_int_equal(check_with("kafka.consumer.session.timeout.ms=400000", errstr,
				    sizeof(errstr)), TH_ECONFIG);
	assert_non_null(strstr(errstr, "group consumer"));
	assert_non_null(strstr(errstr, "session.timeout.ms"));
	/* the settings exactly-once rests on, as before */
	assert_int_equal(check_with("kafka.consumer.isolation.level=read_uncommitted", errstr,
				    sizeof(errstr)), TH_ECONFIG);
	assert_non_null(strstr(errstr, "isolation.level"));
	/* /readyz follows the brokers through the consumer's statistics: with
	 * them off it stayed 503 after an outage until the next rebalance */
	assert_int_equal(check_with("kafka.statistics.interval.ms=0", errstr, sizeof(errstr)),
			 TH_ECONFIG);
	assert_non_null(strstr(errstr, "statistics.interval.ms = 0"));
	assert_non_null(strstr(errstr, "/readyz"));
	assert_int_equal(check_with("kafka.consumer.statistics.interval.ms=0", errstr,
				    sizeof(errstr)), TH_ECONFIG);
	assert_int_equal(check_with("kafka.consumer.statistics.interval.ms=60000", errstr,
				    sizeof(errstr)), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_pass),
		cmocka_unit_test(test_producer_refusals_are_caught),
		cmocka_unit_test(test_consumer_refusals_are_caught),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

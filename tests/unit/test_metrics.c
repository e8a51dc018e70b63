/*
 * Unit tests of the metrics registry (metrics.h): counters and labels in the
 * text exposition, the commit histogram, lag from a librdkafka statistics
 * document, and what /readyz and /healthz answer. promtool checks a live
 * scrape's syntax in tests/kafka/test_kafka_metrics.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "trailhound/metrics.h"
#include "trailhound/variation.h"

static char *render(void)
{
	char *out;
	size_t len;
	assert_int_equal(th_metrics_render(&out, &len), 0);
	assert_int_equal(strlen(out), len);
	return out;
}

static void test_counters_and_labels(void **state)
{
	(void)state;
	th_metrics_reset();
	th_metrics_add(TH_M_EVENTS_CONSUMED, 3);
	th_metrics_add(TH_M_EVENTS_PARSED, 2);
	th_metrics_reject(TH_REJECT_MALFORMED_JSON);
	th_metrics_alert(1, "High");
	th_metrics_alert(1, "High");
	th_metrics_alert(6, "Low");
	th_metrics_alert(3, "Weird");
	th_metrics_commit_seconds(0.003);
	th_metrics_commit_seconds(0.2);
	th_metrics_commit_seconds(100);
	char *m = render();
	assert_non_null(strstr(m, "\ntrailhound_events_consumed_total 3\n"));
	assert_non_null(strstr(m, "\ntrailhound_events_parsed_total 2\n"));
	assert_non_null(strstr(m, "trailhound_events_rejected_total{reason=\"malformed_json\"} 1\n"));
	assert_non_null(strstr(m, "trailhound_events_rejected_total{reason=\"too_large\"} 0\n"));
	assert_non_null(strstr(m, "trailhound_alerts_total{variation=\"1\",severity=\"High\"} 2\n"));
	assert_non_null(strstr(m, "trailhound_alerts_total{variation=\"6\",severity=\"Low\"} 1\n"));
	assert_non_null(strstr(m, "trailhound_alerts_total{variation=\"3\",severity=\"other\"} 1\n"));
	assert_non_null(strstr(m, "trailhound_transaction_commit_seconds_bucket{le=\"0.005\"} 1\n"));
	assert_non_null(strstr(m, "trailhound_transaction_commit_seconds_bucket{le=\"0.25\"} 2\n"));
	assert_non_null(strstr(m, "trailhound_transaction_commit_seconds_bucket{le=\"30\"} 2\n"));
	assert_non_null(strstr(m, "trailhound_transaction_commit_seconds_bucket{le=\"+Inf\"} 3\n"));
	assert_non_null(strstr(m, "trailhound_transaction_commit_seconds_count 3\n"));
	assert_non_null(strstr(m, "trailhound_build_info{version=\""));
	assert_non_null(strstr(m, "# TYPE trailhound_transaction_commit_seconds histogram\n"));
	free(m);
}

/* Every (variation, severity) pair the build can alert with is a series from
 * the start, at 0: a series that appears only with its first alert hides that
 * alert from increase()/rate() (no earlier sample), and a worker that has not
 * alerted (yet, or since its restart) would have no series at all, so the
 * rule "no alert in 7 days while events flow" (sum(increase(...[7d])) == 0)
 * had nothing to compare and could never fire. */
/* An aborted transaction's alerts and dead letters are produced again with
 * the redone batch: only committed ones count. */
static void test_staged_counts_only_when_committed(void **state)
{
	(void)state;
	th_metrics_reset();
	th_metrics_staged_alert(1, "High");
	th_metrics_staged_alert(1, "High");
	th_metrics_staged_reject(TH_REJECT_MALFORMED_JSON);
	char *m = render();
	assert_non_null(strstr(m, "trailhound_alerts_total{variation=\"1\",severity=\"High\"} 0\n"));
	free(m);
	th_metrics_staged_discard(); /* the abort */
	th_metrics_staged_alert(1, "High");
	th_metrics_staged_reject(TH_REJECT_MALFORMED_JSON);
	th_metrics_staged_commit();
	th_metrics_staged_commit(); /* nothing staged twice */
	m = render();
	assert_non_null(strstr(m, "trailhound_alerts_total{variation=\"1\",severity=\"High\"} 1\n"));
	assert_non_null(
		strstr(m, "trailhound_events_rejected_total{reason=\"malformed_json\"} 1\n"));
	free(m);
}

static void test_alert_series_exist_before_the_first_alert(void **state)
{
	char want[128];
	(void)state;
	th_metrics_reset();
	char *m = render();
	assert_true(th_variations_count > 0);
	for (size_t i = 0; i < th_variations_count; i++) {
		snprintf(want, sizeof(want),
			 "\ntrailhound_alerts_total{variation=\"%d\",severity=\"%s\"} 0\n",
			 th_variations[i].id, th_variations[i].severity);
		assert_non_null(strstr(m, want));
	}
	/* pairs no variation has stay out until they happen */
	assert_null(strstr(m, "severity=\"other\""));
	assert_null(strstr(m, "variation=\"0\""));
	free(m);
	th_metrics_alert(th_variations[0].id, th_variations[0].severity);
	m = render();
	snprintf(want, sizeof(want), "\ntrailhound_alerts_total{variation=\"%d\",severity=\"%s\"} 1\n",
		 th_variations[0].id, th_variations[0].severity);
	assert_non_null(strstr(m, want));
	free(m);
}

/* The bridge's series exist from its start, at 0. Served only once counted,
 * an idle bridge (nothing on its queue yet, or a queue it cannot read) had no
 * trailhound_bridge_sqs_messages_total, so the rules and the dashboard, which
 * tell the bridge from the workers by that series, took its
 * trailhound_assignment_held 1 for a standby worker's (TrailhoundNoPartitionOwned
 * fired while no worker held an assignment), and the bridge's first dead
 * letter or unreadable file was invisible to increase(). A worker never
 * serves them. */
static void test_bridge_series_from_its_start(void **state)
{
	(void)state;
	th_metrics_reset();
	char *m = render();
	assert_null(strstr(m, "trailhound_bridge_"));
	free(m);
	th_metrics_serve_bridge();
	m = render();
	assert_non_null(strstr(m, "\ntrailhound_bridge_files_total{outcome=\"published\"} 0\n"));
	assert_non_null(strstr(m, "\ntrailhound_bridge_files_total{outcome=\"unreadable\"} 0\n"));
	assert_non_null(strstr(m, "\ntrailhound_bridge_dead_lettered_total 0\n"));
	assert_non_null(strstr(m, "\ntrailhound_bridge_sqs_messages_total 0\n"));
	free(m);
	th_metrics_reset();
	m = render();
	assert_null(strstr(m, "trailhound_bridge_"));
	free(m);
}

static const char stats_json[] =
	"{\"name\":\"c\",\"type\":\"consumer\",\"brokers\":{\"b:9092/1\":{\"state\":\"UP\"},"
	"\"b:9092/bootstrap\":{\"state\":\"INIT\"}},"
	"\"topics\":{\"in\\\"x\":{\"partitions\":{"
	"\"0\":{\"consumer_lag\":-1,\"consumer_lag_stored\":42,\"lo_offset\":0,\"ls_offset\":50,"
	"\"fetch_state\":\"active\"},"
	"\"1\":{\"consumer_lag\":7,\"consumer_lag_stored\":-1,\"lo_offset\":0,\"ls_offset\":9,"
	"\"fetch_state\":\"active\"},"
	"\"2\":{\"consumer_lag\":-1,\"consumer_lag_stored\":-1,\"lo_offset\":5,\"ls_offset\":30,"
	"\"fetch_state\":\"active\"},"
	"\"3\":{\"consumer_lag\":-1,\"consumer_lag_stored\":-1,\"lo_offset\":-1,\"ls_offset\":-1,"
	"\"fetch_state\":\"none\"},"
	"\"-1\":{\"consumer_lag\":-1,\"consumer_lag_stored\":-1}}}}}";

static void test_lag_from_statistics(void **state)
{
	int64_t lag;
	(void)state;
	th_metrics_reset();
	assert_int_equal(th_metrics_total_lag(&lag), 0);
	assert_int_equal(th_metrics_feed_stats(stats_json, sizeof(stats_json) - 1), 0);
	/* 42 (stored) + 7 (committed) + 25 (nothing committed: all of it) */
	assert_int_equal(th_metrics_total_lag(&lag), 3);
	assert_int_equal(lag, 74);
	char *m = render();
	assert_non_null(strstr(m, "trailhound_consumer_lag{topic=\"in\\\"x\",partition=\"0\"} 42\n"));
	assert_non_null(strstr(m, "trailhound_consumer_lag{topic=\"in\\\"x\",partition=\"2\"} 25\n"));
	assert_null(strstr(m, "partition=\"3\""));
	assert_null(strstr(m, "partition=\"-1\""));
	free(m);
	assert_int_equal(th_metrics_feed_stats("{not json", 9), TH_EPARSE);
}

static void test_ready_and_healthy(void **state)
{
	(void)state;
	th_metrics_reset();
	assert_false(th_metrics_healthy()); /* never beaten */
	th_metrics_heartbeat();
	assert_true(th_metrics_healthy());
	th_metrics_broker_up(true);
	assert_false(th_metrics_ready()); /* no assignment yet */
	/* a standby: the group's assignment holds no partition for it */
	th_metrics_set_gauge(TH_G_ASSIGNMENT_HELD, 1);
	assert_true(th_metrics_ready());
	th_metrics_set_gauge(TH_G_PARTITIONS_ASSIGNED, 2);
	th_metrics_set_gauge(TH_G_PARTITIONS_RESTORING, 1);
	assert_false(th_metrics_ready());
	th_metrics_set_gauge(TH_G_PARTITIONS_RESTORING, 0);
	assert_true(th_metrics_ready());
	th_metrics_set_gauge(TH_G_ASSIGNMENT_HELD, 0); /* revoked */
	th_metrics_set_gauge(TH_G_PARTITIONS_ASSIGNED, 0);
	assert_false(th_metrics_ready());
	th_metrics_set_gauge(TH_G_ASSIGNMENT_HELD, 1);
	char *m = render();
	assert_non_null(strstr(m, "\ntrailhound_ready 1\n"));
	free(m);
	th_metrics_broker_up(false);
	assert_false(th_metrics_ready());
	struct th_metrics_part p = {"in", 1, 4096};
	th_metrics_set_parts(&p, 1);
	m = render();
	assert_non_null(strstr(m, "trailhound_state_bytes{partition=\"in-1\"} 4096\n"));
	assert_non_null(strstr(m, "\ntrailhound_ready 0\n"));
	free(m);
}

static void test_listen_address(void **state)
{
	char err[256];
	(void)state;
	assert_int_equal(th_metrics_start("nonsense", 60, err, sizeof(err)), TH_ECONFIG);
	assert_non_null(strstr(err, "host:port"));
	assert_int_equal(th_metrics_start("127.0.0.1:notaport", 60, err, sizeof(err)), TH_ECONFIG);
	th_metrics_stop();
}

/* A port outside 1..65535 was taken modulo 65536 (127.0.0.1:74464 served on
 * 8928 while the log said 74464), and 0 binds a random port: neither is where
 * the probes and Prometheus look. th_metrics_check_listen is what
 * `run --check-config` asks; it and the start judge an address alike. */
static void test_listen_port_out_of_range(void **state)
{
	char err[256];
	(void)state;
	static const char *const bad[] = {"127.0.0.1:74464", "127.0.0.1:65536", "127.0.0.1:0",
					  "127.0.0.1:-1", "127.0.0.1:+80", "0.0.0.0", "[::1]",
					  "127.0.0.1:", "no-such-host.invalid:9464"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(th_metrics_check_listen(bad[i], err, sizeof(err)), TH_ECONFIG);
		assert_non_null(strstr(err, "metrics_listen"));
		assert_int_equal(th_metrics_start(bad[i], 60, err, sizeof(err)), TH_ECONFIG);
		th_metrics_stop();
	}
	static const char *const good[] = {"127.0.0.1:9464", "0.0.0.0:65535", ":9464",
					   "[::1]:9464", "localhost:1"};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_int_equal(th_metrics_check_listen(good[i], err, sizeof(err)), 0);
}


/* A loopback port nobody listens on now (the kernel's pick, released). */
static int free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

/* A connection to 127.0.0.1:port from the loopback address src. */
static int connect_from(const char *src, int port)
{
	struct sockaddr_in me = {.sin_family = AF_INET}, to = {.sin_family = AF_INET};
	/* a safety net against a hung test, not a timing assertion */
	struct timeval tv = {.tv_sec = 30};
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	inet_pton(AF_INET, src, &me.sin_addr);
	inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
	to.sin_port = htons((uint16_t)port);
	assert_int_equal(bind(fd, (struct sockaddr *)&me, sizeof(me)), 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	assert_int_equal(connect(fd, (struct sockaddr *)&to, sizeof(to)), 0);
	return fd;
}

/* GET path from src: the HTTP status, or -1 when the server hung up. */
static int http_status(const char *src, int port, const char *path)
{
	char req[128], reply[64] = "";
	int fd = connect_from(src, port), status = -1;
	size_t got = 0;
	ssize_t n;
	snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\n\r\n", path);
	if (send(fd, req, strlen(req), MSG_NOSIGNAL) == (ssize_t)strlen(req))
		while (got + 1 < sizeof(reply) &&
		       (n = recv(fd, reply + got, sizeof(reply) - 1 - got, 0)) > 0)
			got += (size_t)n;
	reply[got] = '\0';
	if (sscanf(reply, "HTTP/1.%*d %d", &status) != 1)
		status = -1;
	close(fd);
	return status;
}

/* Sixteen connections that sent half a request and then kept quiet (each
 * byte resets libmicrohttpd's 10 s idle timeout, so one client can hold
 * them for good) took every slot of the endpoint: the kubelet's /healthz
 * was reset at connect, and after failureThreshold probes a healthy worker
 * was killed. One client's connections are now bounded below the total. */
static void test_idle_connections_of_one_client_leave_the_probes_room(void **state)
{
	char err[256];
	int port = free_port(), idle[64];
	(void)state;
	th_metrics_stop(); /* a failed test before may have left one running */
	snprintf(err, sizeof(err), "127.0.0.1:%d", port);
	assert_int_equal(th_metrics_start(err, 60, err, sizeof(err)), 0);
	th_metrics_heartbeat();
	assert_int_equal(http_status("127.0.0.1", port, "/healthz"), 200);
	for (size_t i = 0; i < TH_ARRAY_SIZE(idle); i++) {
		idle[i] = connect_from("127.0.0.2", port);
		static const char half[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n";
		send(idle[i], half, strlen(half), MSG_NOSIGNAL);
	}
	assert_int_equal(http_status("127.0.0.1", port, "/healthz"), 200);
	assert_int_equal(http_status("127.0.0.1", port, "/readyz"), 503);
	for (size_t i = 0; i < TH_ARRAY_SIZE(idle); i++)
		close(idle[i]);
	th_metrics_stop();
}

/* The server polled with select(): a connection whose descriptor was past
 * FD_SETSIZE (1024) was closed at once ("Socket descriptor larger than
 * FD_SETSIZE"), so a worker holding many partitions (three descriptors per
 * LMDB store, plus librdkafka's) answered no probe at all. */
static void test_probe_answered_past_fd_setsize(void **state)
{
	char err[256];
	int port = free_port(), fds[1200], n = 0;
	struct rlimit rl;
	(void)state;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < 1200)
		skip();
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > 4096 ? 4096 : rl.rlim_max;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
	th_metrics_stop(); /* a failed test before may have left one running */
	snprintf(err, sizeof(err), "127.0.0.1:%d", port);
	assert_int_equal(th_metrics_start(err, 60, err, sizeof(err)), 0);
	th_metrics_heartbeat();
	/* what a worker's stores and clients hold by the time a probe comes */
	do
		assert_true((fds[n] = open("/dev/null", O_RDONLY)) >= 0);
	while (fds[n++] < 1100 && n < (int)TH_ARRAY_SIZE(fds));
	assert_int_equal(http_status("127.0.0.1", port, "/healthz"), 200);
	while (n > 0)
		close(fds[--n]);
	th_metrics_stop();
}

/* libmicrohttpd logs a line for every connection it refuses: 2000 connects
 * beyond the limit wrote 1992 'Server reached connection limit' lines
 * (~225 KB), so anyone who can connect could fill the log volume and push
 * out the lines that matter. At most a burst a minute is logged now. */
static void test_refused_connections_do_not_flood_the_log(void **state)
{
	char err[256], path[] = "/tmp/th-test-metrics-log-XXXXXX", line[512];
	int port = free_port(), held[8], log_fd = mkstemp(path), saved = dup(2), lines = 0;
	(void)state;
	assert_true(log_fd >= 0 && saved >= 0);
	th_metrics_stop(); /* a failed test before may have left one running */
	snprintf(err, sizeof(err), "127.0.0.1:%d", port);
	assert_int_equal(th_metrics_start(err, 60, err, sizeof(err)), 0);
	for (size_t i = 0; i < TH_ARRAY_SIZE(held); i++)
		held[i] = connect_from("127.0.0.3", port);
	fflush(stderr);
	dup2(log_fd, 2);
	for (int i = 0; i < 200; i++)
		close(connect_from("127.0.0.3", port));
	/* a request served after them: every refusal before it has been logged */
	assert_int_equal(http_status("127.0.0.1", port, "/metrics"), 200);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	for (size_t i = 0; i < TH_ARRAY_SIZE(held); i++)
		close(held[i]);
	th_metrics_stop();
	FILE *f = fdopen(log_fd, "r");
	assert_non_null(f);
	rewind(f);
	while (fgets(line, sizeof(line), f))
		lines += strstr(line, "libmicrohttpd") != NULL;
	fclose(f);
	unlink(path);
	assert_true(lines >= 1);
	assert_true(lines <= 2 * 10 + 1); /* a burst, or two if a minute turned */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counters_and_labels),
		cmocka_unit_test(test_staged_counts_only_when_committed),
		cmocka_unit_test(test_alert_series_exist_before_the_first_alert),
		cmocka_unit_test(test_bridge_series_from_its_start),
		cmocka_unit_test(test_lag_from_statistics),
		cmocka_unit_test(test_ready_and_healthy),
		cmocka_unit_test(test_listen_address),
		cmocka_unit_test(test_listen_port_out_of_range),
		cmocka_unit_test(test_idle_connections_of_one_client_leave_the_probes_room),
		cmocka_unit_test(test_probe_answered_past_fd_setsize),
		cmocka_unit_test(test_refused_connections_do_not_flood_the_log),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

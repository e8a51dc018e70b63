/*
 * The hang watchdog (src/watchdog.c), each case in a child process since
 * the watchdog ends the process it runs in: a call past twice its timeout
 * plus the grace ends the child with the given code and names the call;
 * calls that return in time, and a call whose whole process was stopped
 * (SIGSTOP, like a paused VM) for longer than the limit, do not. The worker's
 * real hang (send_offsets_to_transaction, librdkafka #5456) is
 * unit.test_worker_mock's test_hung_send_offsets_exits_5.
 * A stop that outlives the stop limit ends the child too (and says what it
 * was still doing); one that finishes in time, or has no limit, does not.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "child_log.h"
#include "trailhound/log.h"
#include "trailhound/watchdog.h"

#define EXIT_HUNG 7
#define CALL_TIMEOUT_MS 100
#define STOP_LIMIT_MS 1000
/* a call far longer than the test: only the stop limit can end it */
#define SLOW_CALL_TIMEOUT_MS 600000

enum child_action {
	HANG,
	RETURN_IN_TIME,
	PAUSED_WHILE_IN_CALL,
	STOP_STUCK_IN_CALL,
	STOP_IN_TIME,
	STOP_WITHOUT_LIMIT,
};

static void child(enum child_action what, int ready_fd)
{
	if (th_watchdog_start(EXIT_HUNG))
		_exit(3);
	switch (what) {
	case HANG:
		th_watchdog_enter("fake_call", CALL_TIMEOUT_MS);
		sleep(120);
		break;
	case RETURN_IN_TIME:
		/* 3 s of calls, each well inside its limit */
		for (int i = 0; i < 60; i++) {
			th_watchdog_enter("fake_call", CALL_TIMEOUT_MS);
			usleep(50000);
			th_watchdog_leave();
		}
		break;
	case PAUSED_WHILE_IN_CALL:
		th_watchdog_enter("fake_call", CALL_TIMEOUT_MS);
		if (write(ready_fd, "r", 1) != 1)
			_exit(4);
		/* the parent stops us for longer than the limit in here */
		sleep(3);
		/* awake: the call returns a moment later */
		usleep(500000);
		th_watchdog_leave();
		break;
	case STOP_STUCK_IN_CALL:
		th_watchdog_set_stop_limit(STOP_LIMIT_MS);
		th_watchdog_enter("slow_call", SLOW_CALL_TIMEOUT_MS);
		th_watchdog_stop_requested();
		sleep(120);
		break;
	case STOP_IN_TIME:
		/* the stop takes a quarter of its limit, then the process ends */
		th_watchdog_set_stop_limit(STOP_LIMIT_MS);
		th_watchdog_stop_requested();
		usleep(STOP_LIMIT_MS * 1000 / 4);
		break;
	case STOP_WITHOUT_LIMIT:
		/* three times the limit of the cases above, with none set */
		th_watchdog_stop_requested();
		usleep(3 * STOP_LIMIT_MS * 1000);
		break;
	}
	th_watchdog_stop();
	_exit(0);
}

/* Run the child; @returns its exit code, its log in @p log. */
static int run_child(enum child_action what, char *log, size_t log_size)
{
	char path[] = "/tmp/th-watchdog-log-XXXXXX";
	int fd = mkstemp(path), ready[2];
	assert_true(fd >= 0);
	assert_int_equal(pipe(ready), 0);
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(fd, 2);
		close(ready[0]);
		child(what, ready[1]);
	}
	close(fd);
	close(ready[1]);
	if (what == PAUSED_WHILE_IN_CALL) {
		char c;
		assert_int_equal(read(ready[0], &c, 1), 1);
		kill(pid, SIGSTOP);
		/* longer than the call's limit, 2 x 0.1 s + the grace */
		sleep((unsigned)(th_watchdog_limit_ms(CALL_TIMEOUT_MS) / 1000 + 3));
		kill(pid, SIGCONT);
	}
	close(ready[0]);
	int status = 0;
	if (!child_wait_and_read_log(pid, 60, &status, path, log, log_size))
		fail_msg("the child still ran after 60 s");
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

static void test_hung_call_ends_the_process(void **state)
{
	char log[4096];
	(void)state;
	assert_int_equal(run_child(HANG, log, sizeof(log)), EXIT_HUNG);
	assert_non_null(strstr(log, "[watchdog] fake_call has not returned"));
	assert_non_null(strstr(log, "with a 0.1 s timeout"));
}

static void test_calls_returning_in_time_are_left_alone(void **state)
{
	char log[4096];
	(void)state;
	assert_int_equal(run_child(RETURN_IN_TIME, log, sizeof(log)), 0);
	assert_null(strstr(log, "[watchdog]"));
}

/* A zombie paused mid-commit (kafka.fencing's SIGSTOP) must wake and learn
 * it was fenced, not be ended for the time it was stopped. */
static void test_a_stopped_process_is_not_a_hung_call(void **state)
{
	char log[4096];
	(void)state;
	assert_int_equal(run_child(PAUSED_WHILE_IN_CALL, log, sizeof(log)), 0);
	assert_null(strstr(log, "[watchdog]"));
}

static void test_limit(void **state)
{
	(void)state;
	assert_int_equal(th_watchdog_limit_ms(30000), 70000);
	assert_int_equal(th_watchdog_limit_ms(0), TH_WATCHDOG_GRACE_MS);
}

static void test_overdue_stop_ends_the_process(void **state)
{
	char log[4096];
	(void)state;
	assert_int_equal(run_child(STOP_STUCK_IN_CALL, log, sizeof(log)), EXIT_HUNG);
	assert_non_null(strstr(log, "[watchdog] the stop asked for"));
	assert_non_null(strstr(log, "(stop_timeout 1.0 s); slow_call has been running for"));
	/* the stop limit ended it, not the call's own (20 min) */
	assert_null(strstr(log, "has not returned"));
}

static void test_stop_finishing_in_time_is_left_alone(void **state)
{
	char log[4096];
	(void)state;
	assert_int_equal(run_child(STOP_IN_TIME, log, sizeof(log)), 0);
	assert_null(strstr(log, "[watchdog]"));
}

static void test_no_stop_limit_by_default(void **state)
{
	char log[4096];
	(void)state;
	assert_int_equal(run_child(STOP_WITHOUT_LIMIT, log, sizeof(log)), 0);
	assert_null(strstr(log, "[watchdog]"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_limit),
		cmocka_unit_test(test_hung_call_ends_the_process),
		cmocka_unit_test(test_calls_returning_in_time_are_left_alone),
		cmocka_unit_test(test_a_stopped_process_is_not_a_hung_call),
		cmocka_unit_test(test_overdue_stop_ends_the_process),
		cmocka_unit_test(test_stop_finishing_in_time_is_left_alone),
		cmocka_unit_test(test_no_stop_limit_by_default),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * The hang watchdog (watchdog.h): a thread that wakes twice a second and
 * ends the process when the watched librdkafka call has run far past its
 * own timeout, or when a stop has taken longer than the stop limit. Enter
 * and leave are two atomic stores each, cheap enough for every
 * transactional call.
 */
#include "trailhound/watchdog.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "trailhound/common.h"

#define CHECK_MS 500

static struct {
	/* the watched call: a generation counter makes a leave (or the next
	 * enter) between the thread's reads visible, so it never fires on a
	 * call that has returned */
	_Atomic uint64_t gen;
	_Atomic int64_t entered_ms; /* CLOCK_MONOTONIC; 0 = no call under way */
	_Atomic long limit_ms;
	_Atomic int timeout_ms;
	const char *_Atomic call;
	/* the stop: asked for from a signal handler, so lock-free */
	_Atomic int stop_asked;
	_Atomic long stop_limit_ms; /* 0 = none */

	pthread_mutex_t lock; /* stop and wake below */
	pthread_cond_t wake;
	bool stop;
	bool started;
	int exit_code;
	pthread_t thread;
} W = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static_assert(ATOMIC_INT_LOCK_FREE == 2, "th_watchdog_stop_requested() runs in a signal handler");

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long th_watchdog_limit_ms(int timeout_ms)
{
	return 2L * (timeout_ms > 0 ? timeout_ms : 0) + TH_WATCHDOG_GRACE_MS;
}

void th_watchdog_enter(const char *call, int timeout_ms)
{
	atomic_store(&W.entered_ms, 0);
	atomic_fetch_add(&W.gen, 1);
	atomic_store(&W.call, call);
	atomic_store(&W.timeout_ms, timeout_ms);
	atomic_store(&W.limit_ms, th_watchdog_limit_ms(timeout_ms));
	atomic_store(&W.entered_ms, mono_ms());
}

void th_watchdog_leave(void)
{
	atomic_store(&W.entered_ms, 0);
	atomic_fetch_add(&W.gen, 1);
}

void th_watchdog_set_stop_limit(long within_ms)
{
	atomic_store(&W.stop_limit_ms, within_ms > 0 ? within_ms : 0);
}

void th_watchdog_stop_requested(void)
{
	atomic_store(&W.stop_asked, 1);
}

/* How long the watched call has run, counted by the watchdog's own ticks:
 * each tick adds the time since the previous one, at most MAX_STEP_MS. A
 * process stopped as a whole (SIGSTOP, a frozen VM, a laptop lid) wakes
 * with one long step; that pause is not a hang of the call (every thread
 * was stopped, librdkafka's timers too) and it is not counted: a zombie
 * paused mid-commit must still learn on waking that it was fenced, not be
 * ended by the watchdog. A starved thread counts late, never early. */
#define MAX_STEP_MS (2 * CHECK_MS)

struct tally {
	uint64_t gen;       /* the call counted */
	int64_t ran_ms;     /* its running time so far */
	int64_t tick_ms;    /* the previous tick */
	int64_t stopping_ms; /* time since the stop was asked for; -1 before */
};

/* This tick's step: the time since the previous one, at most MAX_STEP_MS. */
static int64_t step_of(struct tally *t, int64_t now)
{
	int64_t step = now - t->tick_ms < MAX_STEP_MS ? now - t->tick_ms : MAX_STEP_MS;
	t->tick_ms = now;
	return step;
}

/* The watched call, when it counts as hung: true with its name, timeout and
 * running time; otherwise *ran_ms is how long the call under way (if any)
 * has run. */
static bool hung(struct tally *t, int64_t now, int64_t step, const char **call, int *timeout_ms,
		 int64_t *ran_ms)
{
	uint64_t gen = atomic_load(&W.gen);
	int64_t entered = atomic_load(&W.entered_ms);
	*ran_ms = 0;
	if (!entered)
		return false;
	*call = atomic_load(&W.call);
	*timeout_ms = atomic_load(&W.timeout_ms);
	long limit = atomic_load(&W.limit_ms);
	if (atomic_load(&W.gen) != gen)
		return false; /* left or replaced meanwhile: count it next tick */
	if (gen != t->gen) {
		/* entered since the previous tick */
		t->gen = gen;
		t->ran_ms = now - entered < step ? now - entered : step;
	} else {
		t->ran_ms += step;
	}
	*ran_ms = t->ran_ms;
	return t->ran_ms > limit;
}

/* Whether a stop has run past the stop limit (counted like a call). */
static bool stop_overdue(struct tally *t, int64_t step)
{
	long limit = atomic_load(&W.stop_limit_ms);
	if (!atomic_load(&W.stop_asked))
		return false;
	t->stopping_ms = t->stopping_ms < 0 ? 0 : t->stopping_ms + step;
	return limit > 0 && t->stopping_ms > limit;
}

/* _exit: a stuck thread may hold librdkafka's locks, so nothing may be
 * destroyed or flushed on the way out (LMDB needs no close: its last commit
 * is durable, the open write transaction is dropped) */
static void end_process(void)
{
	fflush(stderr);
	_exit(W.exit_code);
}

static void *watch(void *arg)
{
	struct tally t = {.tick_ms = mono_ms(), .stopping_ms = -1};
	(void)arg;
	pthread_mutex_lock(&W.lock);
	while (!W.stop) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += CHECK_MS * 1000000L;
		until.tv_sec += until.tv_nsec / 1000000000L;
		until.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&W.wake, &W.lock, &until);
		if (W.stop)
			break;
		const char *call = NULL;
		int timeout_ms = 0;
		int64_t ran_ms, now = mono_ms(), step = step_of(&t, now);
		if (hung(&t, now, step, &call, &timeout_ms, &ran_ms)) {
			bool known = call && strcmp(call, "send_offsets_to_transaction") == 0;
			th_log_err("watchdog",
				   "%s has not returned %.1f s after it was called with a %.1f s "
				   "timeout: a librdkafka hang%s. It cannot be cancelled; exiting %d for "
				   "the supervisor to restart the process (the restart fences and "
				   "aborts the open transaction; nothing committed is lost)",
				   call ? call : "a librdkafka call", (double)ran_ms / 1000.0,
				   (double)timeout_ms / 1000.0,
				   known ? " (librdkafka #5456: a group coordinator that stays "
					   "unreachable)"
					 : "",
				   W.exit_code);
			end_process();
		}
		if (stop_overdue(&t, step)) {
			char doing[160] = "";
			if (ran_ms)
				snprintf(doing, sizeof(doing),
					 "; %s has been running for %.1f s with a %.1f s timeout",
					 call ? call : "a librdkafka call", (double)ran_ms / 1000.0,
					 (double)timeout_ms / 1000.0);
			th_log_err("watchdog",
				   "the stop asked for %.1f s ago has not finished (stop_timeout "
				   "%.1f s)%s: exiting %d without a clean close (the open transaction is "
				   "aborted by the next start with this transactional id, or by the "
				   "broker at transaction.timeout.ms; nothing committed is lost)",
				   (double)t.stopping_ms / 1000.0,
				   (double)atomic_load(&W.stop_limit_ms) / 1000.0, doing, W.exit_code);
			end_process();
		}
	}
	pthread_mutex_unlock(&W.lock);
	return NULL;
}

int th_watchdog_start(int exit_code)
{
	int rc = 0;
	pthread_mutex_lock(&W.lock);
	if (W.started) {
		rc = TH_EINVAL;
	} else {
		W.stop = false;
		W.exit_code = exit_code;
		if (pthread_create(&W.thread, NULL, watch, NULL))
			rc = TH_ENOMEM;
		else
			W.started = true;
	}
	pthread_mutex_unlock(&W.lock);
	return rc;
}

void th_watchdog_stop(void)
{
	pthread_mutex_lock(&W.lock);
	if (!W.started) {
		pthread_mutex_unlock(&W.lock);
		return;
	}
	W.stop = true;
	pthread_cond_signal(&W.wake);
	pthread_mutex_unlock(&W.lock);
	pthread_join(W.thread, NULL);
	pthread_mutex_lock(&W.lock);
	W.started = false;
	pthread_mutex_unlock(&W.lock);
}

/*
 * The hang watchdog (src/watchdog.c): ends the process when a blocking
 * librdkafka call outlives its own timeout by far.
 *
 * Why: librdkafka 2.0.2's rd_kafka_send_offsets_to_transaction() waits
 * forever for a group coordinator that stays unreachable, whatever timeout
 * it is given (librdkafka #5456, open upstream; seen here after a broker
 * outage, reproduced against the mock cluster by
 * unit.test_worker_mock's test_hung_send_offsets_exits_5). The call cannot be
 * cancelled, and no other transactional call may run while it is pending,
 * so the worker cannot abort or even stop: it would sit in the group doing
 * nothing. Exiting is the way out the worker already has for fatal errors
 * (exit 5, the supervisor restarts it): the restart's init_transactions()
 * fences and aborts the open transaction, and the partitions resume from
 * their committed offsets, as after a kill -9.
 *
 * One call is watched at a time (the worker's loop is one thread). Without
 * th_watchdog_start() enter/leave only record, nothing ends the process.
 *
 * It also bounds a stop: after SIGTERM a supervisor waits its grace period
 * (the manifests: 90 s) and then kills. A stop with the brokers frozen can
 * take longer than that (an abort of up to its timeout after a call that
 * timed out, or a hang above), so the kill would land at a moment nobody
 * chose. With a stop limit set, the process ends itself that long after the
 * stop was asked for, saying what it was still doing, with the same exit
 * as a hang.
 */
#ifndef TRAILHOUND_WATCHDOG_H
#define TRAILHOUND_WATCHDOG_H

#ifdef __cplusplus
extern "C" {
#endif

/**
 * @brief Start the watchdog thread; a hang then ends the process with
 *        _exit(@p exit_code) after logging which call hung and for how long.
 * @returns 0, TH_EINVAL when already started, TH_ENOMEM when the thread
 *          cannot be created.
 */
int th_watchdog_start(int exit_code);
/** @brief Stop and join the thread (no-op when not started). */
void th_watchdog_stop(void);

/**
 * @brief A blocking call named @p call (a string literal: it is kept) with
 *        its own timeout @p timeout_ms begins. It counts as hung once it has
 *        run for twice its timeout plus TH_WATCHDOG_GRACE_MS, not counting
 *        time the whole process was stopped (SIGSTOP, a paused VM).
 */
void th_watchdog_enter(const char *call, int timeout_ms);
/** @brief The call entered last has returned. */
void th_watchdog_leave(void);

/**
 * @brief Give a stop at most @p within_ms from th_watchdog_stop_requested()
 *        to the end of the process (0, the default: no limit). Counted like
 *        a call's running time: a stopped process's pause does not count.
 */
void th_watchdog_set_stop_limit(long within_ms);
/**
 * @brief A stop was asked for (SIGTERM, SIGINT). Async-signal-safe (one
 *        lock-free atomic store): the signal handler calls it.
 */
void th_watchdog_stop_requested(void);

/** @brief How long after entering a call with @p timeout_ms it counts as hung (ms). */
long th_watchdog_limit_ms(int timeout_ms);

#define TH_WATCHDOG_GRACE_MS 10000

#ifdef __cplusplus
}
#endif

#endif

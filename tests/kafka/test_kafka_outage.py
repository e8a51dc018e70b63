"""Broker outage longer than the session and transaction timeouts.

The worker runs with session.timeout.ms=6000 and transaction.timeout.ms=10000;
the broker is frozen (SIGSTOP, as a hung machine or a long GC pause: connections
stay open, nothing answers) for OUTAGE_S seconds while a batch is in flight,
then thawed. The worker must then be processing again (new input is committed)
or have exited 5 for its supervisor to restart it -- never idle with the broker
back (the zombie of issue 8: a fenced static member sat at partitions=0). Run
with static membership (group.instance.id) and without.

Afterwards every expected alert is committed exactly once and the group has
consumed the whole input. Every wait is bounded; no timing is asserted beyond
generous deadlines.
"""
import os
import signal
import time

import pytest

from conftest import (Progress, assert_caught_up, assert_exactly_once, broker_pid, log,
                      produce_file, read_alerts, read_topic, run_to_end, split_file)

OUTAGE_S = int(os.environ.get("TH_OUTAGE_S", "25"))
TIMEOUTS = ("--set", "kafka.consumer.session.timeout.ms=6000",
            "--set", "kafka.producer.transaction.timeout.ms=10000",
            "--set", "kafka.producer.message.timeout.ms=9000")


def wait_progress(progress, goal, worker, deadline_s, what):
    """Until the group committed `goal` messages; the worker must not exit meanwhile."""
    deadline = time.monotonic() + deadline_s
    while progress() < goal:
        assert worker.poll() is None, f"{what}: worker exited {worker.poll()}:\n{worker.tail()}"
        assert time.monotonic() < deadline, \
            f"{what}: committed {progress()} of {goal} after {deadline_s} s:\n{worker.tail()}"
        time.sleep(0.2)


@pytest.mark.parametrize("static", [True, False], ids=["static", "dynamic"])
def test_broker_outage(broker, topics, workers, sample, tmp_path, static):
    pipe = topics.names.pipeline("outage")
    names = topics.create(pipe)
    parts = split_file(sample.path, 3, tmp_path)
    total = sum(n for _, n in parts)
    tid = pipe.tid_prefix + ".W1"
    sdir = names.state_dir("outage")
    kw = {} if static else {"instance_id": False}
    start = lambda name: workers(names.input, pipe, tid, sdir, *TIMEOUTS, name=name, **kw)
    progress = Progress(broker, pipe.group, names.input)
    pid = broker_pid()
    w = start("outage0")
    try:
        produce_file(broker, names.input, parts[0][0])
        wait_progress(progress, parts[0][1], w, 180, "before the outage")

        # a batch in flight, then the broker stops answering
        produce_file(broker, names.input, parts[1][0])
        time.sleep(0.3)
        os.kill(pid, signal.SIGSTOP)
        log(f"broker frozen for {OUTAGE_S} s (worker {'static' if static else 'dynamic'})")
        try:
            time.sleep(OUTAGE_S)
        finally:
            os.kill(pid, signal.SIGCONT)
        log("broker thawed")
        produce_file(broker, names.input, parts[2][0])

        # processing again, or exited 5 and restarted by the "supervisor" (us)
        restarts = 0
        deadline = time.monotonic() + 240
        while progress() < total:
            rc = w.poll()
            if rc is not None:
                assert rc == 5, f"worker exited {rc} (only 5 asks for a restart):\n{w.tail()}"
                restarts += 1
                assert restarts <= 3, f"worker keeps exiting:\n{w.tail()}"
                log(f"worker exited 5 after the outage: restart #{restarts}")
                w = start(f"outage{restarts}")
            assert time.monotonic() < deadline, \
                (f"idle after the outage: committed {progress()} of {total}, worker alive, "
                 f"no progress:\n{w.tail()}")
            time.sleep(0.5)
        log(f"all {total} messages committed after the outage ({restarts} restart(s))")
        w.term()
        assert w.wait(60) == 0, w.tail()
    finally:
        progress.close()

    # decide the uses still held at the end of the input, as scan does
    run_to_end(workers, names.input, pipe, tid, sdir, name="outage-final", **kw)
    assert_exactly_once(read_alerts(broker, pipe.output), sample.expected_ids, "after the outage")
    assert read_topic(broker, pipe.dead_letter) == []
    assert_caught_up(broker, pipe.group, names.input)

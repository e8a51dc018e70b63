"""The bridge's /readyz while the shared broker is stopped and started again.

Its own file (CTest kafka.bridge_brokers), not in test_kafka_bridge.py: it
stops the broker every other Kafka test uses, so it must hold both locks
(tests/kafka.cmake), as the broker-freezing outage test does, while the rest
of the bridge's tests run alongside the worker tests. In kafka.bridge it took
the broker away from whichever worker test ran at the same time (and a test
file starting meanwhile found no broker, started one of its own and stopped
it when done). Fixtures and helpers are test_kafka_bridge.py's.
"""
import os
import signal
import subprocess
import time

import pytest

from conftest import KAFKA_LOCAL, broker_pid, free_port
# pytest fixtures are found by name in this module: moto, env, events
from test_kafka_bridge import assert_once_keyed, env, events, http_status, moto, wait_status  # noqa: F401


@pytest.mark.skipif(bool(os.environ.get("TH_KAFKA_BOOTSTRAP")),
                    reason="stops and starts the local broker (scripts/kafka-local.sh)")
def test_bridge_readyz_follows_the_brokers(env, events, tmp_path):
    """/readyz answers 503 while no broker answers and 200 again when one does
    (it had said "ready" from the start on, whatever became of the brokers).
    The broker is stopped and started again (its data kept); the bridge keeps
    running meanwhile, and publishes a file once the broker is back."""
    mport = free_port()
    logf = tmp_path / "bridge.log"
    with open(logf, "wb") as lf:
        proc = subprocess.Popen(env.cmd("--exit-when-idle", "600000", "--set",
                                        f"metrics_listen=127.0.0.1:{mport}"),
                                env=env.env(), stderr=lf, stdout=subprocess.DEVNULL)
        try:
            wait_status(mport, "/readyz", 200, proc, 60, logf)
            subprocess.run([KAFKA_LOCAL, "stop"], check=True)
            try:
                wait_status(mport, "/readyz", 503, proc, 60, logf)
                assert http_status(mport, "/healthz") == 200  # the loop itself runs
            finally:
                subprocess.run([KAFKA_LOCAL, "start"], check=True)
            wait_status(mport, "/readyz", 200, proc, 90, logf)
            env.upload(env.key(), events[0:25])
            deadline = time.monotonic() + 60
            while ": 25 events" not in logf.read_text():
                assert proc.poll() is None and time.monotonic() < deadline, logf.read_text()
                time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0, logf.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = logf.read_text()
    assert "no Kafka broker answers" in text and "Kafka brokers reachable again" in text
    assert_once_keyed(env, events[0:25])


def stop_while_frozen(env, events, tmp_path, *extra):
    """Publish one file whose first event stalls 5 s, freeze the broker
    (SIGSTOP: connections open, no answers) during the stall, SIGTERM the
    bridge once the stall is over. Returns the bridge's exit code (None if it
    still ran 150 s after the signal) and its log; the broker runs again."""
    env.upload(env.key(), events[0:25])
    mport = free_port()
    logf = tmp_path / "bridge.log"
    pid = broker_pid()
    rc = None
    with open(logf, "wb") as lf:
        proc = subprocess.Popen(env.cmd("--exit-when-idle", "600000", "--set",
                                        f"metrics_listen=127.0.0.1:{mport}", "--set",
                                        "bridge_visibility_s=6", *extra),
                                env=env.env(TH_BRIDGE_TEST_STALL_MS="5000"), stderr=lf,
                                stdout=subprocess.DEVNULL)
        frozen = False
        try:
            wait_status(mport, "/readyz", 200, proc, 60, logf)
            deadline = time.monotonic() + 30
            while env.queue_depth() == 0 or env.sqs.get_queue_attributes(
                    QueueUrl=env.queue, AttributeNames=["ApproximateNumberOfMessages"])[
                        "Attributes"]["ApproximateNumberOfMessages"] != "0":
                assert proc.poll() is None and time.monotonic() < deadline, logf.read_text()
                time.sleep(0.2)
            # received: the file is in its stall
            os.kill(pid, signal.SIGSTOP)
            frozen = True
            time.sleep(8)  # the stall is over: the file waits for the broker
            assert proc.poll() is None, logf.read_text()
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(150)
            except subprocess.TimeoutExpired:
                rc = None
        finally:
            if frozen:
                os.kill(pid, signal.SIGCONT)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return rc, logf.read_text()


def published_once_after(env, events):
    """The file left on the queue is published once by the next run."""
    # the file's visibility timeout (6 s) runs out: SQS hands it out again (a
    # fixed 7 s sleep, then an 8 s idle exit, waited for that)
    assert env.wait_visible() == 1
    p = env.run()
    assert p.returncode == 0, p.stderr
    assert_once_keyed(env, events[0:25])


@pytest.mark.skipif(bool(os.environ.get("TH_KAFKA_BOOTSTRAP")),
                    reason="freezes the local broker (SIGSTOP)")
@pytest.mark.skipif(bool(os.environ.get("TH_OUTAGE_QUICK")),
                    reason="the sanitizer pass (scripts/test.sh): the queue-full twin below "
                           "freezes the broker the same way in half the time")
def test_bridge_stop_while_commit_waits_for_a_frozen_broker(env, events, tmp_path):
    """SIGTERM while the file's commit waits for a frozen broker ends the
    bridge after the commit's own timeout with exit 5, the file left on the
    queue. Its commit loop retried a timed-out commit_transaction for as long
    as the broker stayed frozen, ignoring the signal, with /healthz beating:
    still running 150 s after SIGTERM (librdkafka fails the messages only at
    message.timeout.ms, 300 s). Once the broker is back, the next run
    publishes the file once. Without stop_timeout: the bridge's own bound is
    what this shows (the default 60 s would race the commit's 60 s)."""
    rc, text = stop_while_frozen(env, events, tmp_path, "--set", "stop_timeout=0")
    assert rc == 5, "exit %s after SIGTERM:\n%s" % (rc, text)
    assert "[bridge] commit: " in text  # the timed-out commit, not retried
    published_once_after(env, events)


@pytest.mark.skipif(bool(os.environ.get("TH_KAFKA_BOOTSTRAP")),
                    reason="freezes the local broker (SIGSTOP)")
def test_bridge_stop_past_stop_timeout_exits_5(env, events, tmp_path):
    """The same stop with stop_timeout 5 s: SIGTERM starts the stop's count,
    and the watchdog ends the bridge 5 s later, still in its commit, with exit
    5 and a line saying so. The manifests' grace periods exceed the default
    (py.test_deploy), so a supervisor's kill never lands first. The file left
    on the queue is published once by the next run."""
    rc, text = stop_while_frozen(env, events, tmp_path, "--set", "stop_timeout=5s")
    assert rc == 5, "exit %s after SIGTERM:\n%s" % (rc, text)
    assert "[watchdog] the stop asked for" in text and "(stop_timeout 5.0 s)" in text, text
    assert "[bridge] commit: " not in text  # the watchdog ended it first
    published_once_after(env, events)


@pytest.mark.skipif(bool(os.environ.get("TH_KAFKA_BOOTSTRAP")),
                    reason="freezes the local broker (SIGSTOP)")
def test_bridge_stop_while_producer_queue_full(env, events, tmp_path):
    """The same signal while the file's events wait for room in the producer's
    queue (5 messages here; 100000 by default, a large file with the broker
    frozen): the file stops and its transaction is aborted: exit 0, or 5 when
    the abort needed the frozen broker (the freeze can come before or after
    the file's first request) and timed out. The wait for room retried for as
    long as the queue stayed full, ignoring the signal: still running 150 s
    after SIGTERM."""
    rc, text = stop_while_frozen(env, events, tmp_path, "--set",
                                 "kafka.producer.queue.buffering.max.messages=5")
    assert rc in (0, 5), "exit %s after SIGTERM:\n%s" % (rc, text)
    assert "stopped; left on the queue" in text or "[bridge] abort: " in text, text
    published_once_after(env, events)

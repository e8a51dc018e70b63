"""`trailhound produce` when the brokers never take the events, without a
broker: the reason is said once, the summary counts every event and the exit
code is 5. It logged one "delivery failed" line per event, so a backfill
against a broker that is down (or a topic that does not exist) buried the
reason under one identical line per record of the archive."""
import os
import signal
import subprocess
import sys
import time

BIN = os.environ.get("TH_BIN", "build/trailhound")
SRC = os.environ.get("TH_SRC", os.path.join(os.path.dirname(__file__), ".."))
GEN = os.path.join(SRC, "tools/gen_sample.py")


def test_undeliverable_events_are_reported_once_and_counted(tmp_path):
    events = tmp_path / "events.jsonl"
    subprocess.run([sys.executable, GEN, "--seed", "3", "--accounts", "1", "--days", "2",
                    "--no-attacks", "--target-events", "300", "--out", str(events), "-q"],
                   check=True)
    n = sum(1 for _ in open(events))
    assert n >= 100
    # port 1: nothing listens; a short message.timeout.ms makes librdkafka
    # give every event its delivery report (failed) within seconds
    r = subprocess.run([BIN, "produce", "-b", "127.0.0.1:1", "-t", "cloudtrail",
                        "--set", "kafka.message.timeout.ms=2000", str(events)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 5, r.stderr
    failed = [l for l in r.stderr.splitlines() if "[produce] delivery failed" in l]
    assert len(failed) == 1, f"{len(failed)} delivery-failure lines for {n} events"
    assert "Message timed out" in failed[0]
    assert f"{n} events sent to cloudtrail, 0 delivered, 0 rejected, {n} failed" in r.stderr


def test_interrupt_while_the_queue_is_full_stops_at_once(tmp_path):
    """Ctrl-C (SIGINT) while the producer's queue is full of events no broker
    takes: produce stops, says how many were not delivered and exits 5. It
    waited for room until librdkafka failed the events at message.timeout.ms
    (5 min by default), then for the flush (60 s), ignoring the signal."""
    events = tmp_path / "events.jsonl"
    subprocess.run([sys.executable, GEN, "--seed", "3", "--accounts", "1", "--days", "2",
                    "--no-attacks", "--target-events", "300", "--out", str(events), "-q"],
                   check=True)
    p = subprocess.Popen([BIN, "produce", "-b", "127.0.0.1:1", "-t", "cloudtrail",
                          "--set", "kafka.queue.buffering.max.messages=5", str(events)],
                         stderr=subprocess.PIPE, text=True)
    time.sleep(2)  # the queue is full: 5 events, no broker
    assert p.poll() is None, p.stderr.read()
    p.send_signal(signal.SIGINT)
    try:
        _, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
        raise AssertionError(f"still running 30 s after SIGINT:\n{err}")
    assert p.returncode == 5, err
    assert "stopped: 5 event(s) not delivered" in err, err


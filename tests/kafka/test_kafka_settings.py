"""kafka.* settings pass to librdkafka verbatim and override the worker's own
defaults -- but not the ones exactly-once rests on. A setting that would
change one of those is refused at start (exit 4, naming it), where the old
worker ran with it and silently lost the guarantee:

  - isolation.level=read_uncommitted: input of aborted transactions (a bridge
    that aborts a file's transaction and publishes it again) is processed:
    alerts for events that were never published, state learnt from them; the
    restore applies aborted changelog records;
  - enable.auto.commit / enable.auto.offset.store: offsets committed outside
    the transactions, e.g. past a batch whose transaction then aborts;
  - enable.partition.eof=false: a restore never sees the end of the changelog
    (exit 5 after restore_timeout_ms, at every restart) and a caught-up worker
    never knows it.

The input holds one attack (tests/cases v1_two_networks, one alert) published
in a transaction that was aborted: a correct worker raises nothing from it.
"""
import os
import time

import pytest
from confluent_kafka import Producer

from conftest import SRC, read_alerts, read_topic, run_to_end

ATTACK = os.path.join(SRC, "tests/cases/variations/v1_two_networks.jsonl")


def publish_aborted(broker, topic, tid):
    p = Producer({"bootstrap.servers": broker, "transactional.id": tid})
    p.init_transactions(30)
    p.begin_transaction()
    for line in open(ATTACK, "rb").read().splitlines():
        if line.strip():
            p.produce(topic, value=line, key=b"123456789012", partition=0)
    p.flush(30)
    p.abort_transaction(30)


@pytest.mark.parametrize("setting", [
    "kafka.consumer.isolation.level=read_uncommitted",
    "kafka.isolation.level=read_uncommitted",
    "kafka.enable.auto.commit=true",
    "kafka.consumer.enable.auto.offset.store=1",
    "kafka.enable.partition.eof=false",
])
def test_setting_that_breaks_exactly_once_is_refused(broker, topics, workers, setting):
    pipe = topics.names.pipeline("set")
    names = topics.create(pipe)
    publish_aborted(broker, names.input, pipe.tid_prefix + ".input")
    w = workers(names.input, pipe, pipe.tid_prefix + ".W1", names.state_dir("W1"),
                "--exit-when-idle", "3000", "--drain", "--set", setting)
    rc = w.wait(120)
    key = setting.split("=")[0]
    assert rc == 4, f"{setting}: exit {rc}, alerts {len(read_alerts(broker, pipe.output))}:\n" \
        + w.tail()
    assert f"{key} = " in w.text() and "remove the setting" in w.text(), w.tail()
    assert read_topic(broker, pipe.output) == []


def test_same_values_spelt_otherwise_are_accepted(broker, topics, workers):
    """The positive twin: settings that leave those values as they are ("0" is
    false to librdkafka) are fine, and the aborted attack raises nothing."""
    pipe = topics.names.pipeline("same")
    names = topics.create(pipe)
    publish_aborted(broker, names.input, pipe.tid_prefix + ".input")
    run_to_end(workers, names.input, pipe, pipe.tid_prefix + ".W1", names.state_dir("W1"),
               "--set", "kafka.consumer.enable.auto.commit=0",
               "--set", "kafka.isolation.level=read_committed",
               "--set", "kafka.enable.partition.eof=1")
    assert read_alerts(broker, pipe.output) == []


def test_exit_when_idle_0_exits_once_caught_up(broker, topics, workers):
    """`run --exit-when-idle 0` ("exit once caught up and idle for 0 ms")
    never exited: the worker reads 0 as "no --exit-when-idle", so a replay
    asked to stop at once ran until killed. It exits 0 once caught up now."""
    pipe = topics.names.pipeline("idle0")
    names = topics.create(pipe)
    p = Producer({"bootstrap.servers": broker})
    for line in open(ATTACK, "rb").read().splitlines():
        if line.strip():
            p.produce(names.input, value=line, key=b"111122223333")
    assert p.flush(30) == 0
    w = workers(names.input, pipe, pipe.tid_prefix + ".W1", names.state_dir("W1"),
                "--exit-when-idle", "0")
    assert w.wait(120) == 0, w.tail()
    assert w.lines("caught up; exiting"), w.tail()


def test_commit_interval_past_the_transaction_timeout_commits_in_time(broker, topics, workers):
    """commit_interval_ms longer than the producer's transaction.timeout.ms
    (e.g. 600000, read as "commit by count only"): with input trickling in,
    the transaction opened by the first dead letter stayed open past the
    timeout, the coordinator aborted it and bumped the epoch, and the next
    produce was fenced: 'Producer attempted an operation with an old epoch',
    exit 5 -- and the same again after every restart. Transactions now commit
    within half the timeout (the start warns), and every record gets through."""
    pipe = topics.names.pipeline("txnto")
    names = topics.create(pipe)
    w = workers(names.input, pipe, pipe.tid_prefix + ".W1", names.state_dir("W1"),
                "--exit-when-idle", "8000",
                "--set", "commit_interval_ms=600000", "--set", "batch_size=1000000",
                "--set", "kafka.producer.transaction.timeout.ms=4000",
                "--set", "kafka.producer.message.timeout.ms=3000")
    p = Producer({"bootstrap.servers": broker})
    # the broker looks for timed-out transactions every 10 s: a trickle of
    # 20 s outlasts the timeout and one such look
    for i in range(10):
        p.produce(names.input, value=b"not json %d" % i, key=b"111122223333")
        assert p.flush(30) == 0
        time.sleep(2)
        if w.poll() is not None:
            break
    assert w.wait(120) == 0, w.tail()
    assert w.lines("transactions commit at most 2000 ms after their first message"), w.tail()
    assert len(read_topic(broker, pipe.dead_letter)) == 10, w.tail()

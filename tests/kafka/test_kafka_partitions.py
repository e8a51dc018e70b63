"""The input topic is given more partitions while a worker runs.

docs/operations.md: partitions are fixed for good; changing N needs a new
input topic, a new changelog and a replay. An operator who runs
`kafka-topics --alter --partitions` anyway gets a rebalance that hands the
worker input partition 4 of a changelog with 4 partitions (0-3). The worker
must stop with that reason (exit 4, as its start refuses such counts), not go
on: the old one kept running, and once partition 4 held an event every commit
failed on its changelog record ("Unknown partition"), aborted, and redid the
batch of every partition -- all of them stopped, for good, while the worker
looked alive and ready.
"""
import os
import time

from confluent_kafka import Producer
from confluent_kafka.admin import NewPartitions

from conftest import SRC, PARTITIONS, log, produce_file

ATTACK = os.path.join(SRC, "tests/cases/variations/v1_two_networks.jsonl")


def test_input_partitions_added_stop_the_worker(broker, admin, topics, workers):
    pipe = topics.names.pipeline("parts")
    names = topics.create(pipe)
    produce_file(broker, names.input, ATTACK)
    # a quick metadata refresh: the consumer sees the new partition within a second
    w = workers(names.input, pipe, pipe.tid_prefix + ".W1", names.state_dir("W1"),
                "--set", "kafka.topic.metadata.refresh.interval.ms=1000")
    deadline = time.monotonic() + 60
    while not w.lines("caught up"):
        assert w.poll() is None and time.monotonic() < deadline, w.tail()
        time.sleep(0.2)

    for f in admin.create_partitions([NewPartitions(names.input, PARTITIONS + 1)]).values():
        f.result()
    p = Producer({"bootstrap.servers": broker})
    for line in open(ATTACK, "rb").read().splitlines():
        p.produce(names.input, value=line, key=b"123456789012", partition=PARTITIONS)
    assert p.flush(30) == 0
    log("input topic given one more partition, an event in it")

    rc = w.wait(90)
    assert rc == 4, w.tail()
    assert w.lines(f"{names.input}[{PARTITIONS}] has no changelog partition"), w.tail()

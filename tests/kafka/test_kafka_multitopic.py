"""Two input topics share one changelog (docs/operations.md: "Several input
topics may share one changelog (its keys carry the input topic name)").

A worker reads both topics to the end; a second worker of the same group,
on a new node (an empty state_dir), must restore every partition of both
topics from the one changelog and stop cleanly, with each partition's store
equal to the first worker's.

Partition p of either topic restores from changelog partition p, so one
restore reads each changelog partition for two stores. The old worker asked
librdkafka to assign that changelog partition twice ("Duplicate ... in input
list"), failed the restore and exited 5 -- at every restart, for good.
"""
from confluent_kafka.admin import NewTopic

from conftest import (PARTITIONS, assert_caught_up, group_offsets, inspect_state, log,
                      produce_file, split_file, wait_for_topics)


def test_two_inputs_restore_from_one_changelog(broker, admin, topics, workers, sample,
                                               tmp_path):
    pipe = topics.names.pipeline("multi")
    names = topics.create(pipe)
    second = names.input + ".b"
    for f in admin.create_topics([NewTopic(second, PARTITIONS, 1)],
                                 operation_timeout=30).values():
        f.result()
    wait_for_topics(admin, [second])
    try:
        # different contents per topic: a record restored into the other
        # topic's store would show
        (half, _), _ = split_file(sample.path, 2, tmp_path)
        produce_file(broker, names.input, sample.path)
        produce_file(broker, second, half)
        inputs = f"{names.input},{second}"
        tid = pipe.tid_prefix + ".W1"

        first_dir, new_dir = names.state_dir("first"), names.state_dir("new-node")
        w = workers(inputs, pipe, tid, first_dir, "--exit-when-idle", "3000", name="first")
        assert w.wait(240) == 0, w.tail()
        assert_caught_up(broker, pipe.group, names.input)
        assert_caught_up(broker, pipe.group, second)

        w = workers(inputs, pipe, tid, new_dir, "--exit-when-idle", "3000", name="new-node")
        rc = w.wait(240)
        assert rc == 0, f"the new node's worker exited {rc}:\n{w.tail()}"
        restored = w.lines("state records restored from")
        log(f"{len(restored)} partitions restored")
        for t in (names.input, second):
            # every partition that holds input (and so has state)
            with_input = sum(o > 0 for o in group_offsets(broker, pipe.group, t))
            assert with_input >= 2, f"{t}: too few partitions hold input"
            assert sum(f"{t}[" in l for l in restored) == with_input, w.tail()
            assert inspect_state(new_dir, t) == inspect_state(first_dir, t), \
                f"{t}: the restored stores differ from the first worker's"
    finally:
        for f in admin.delete_topics([second], operation_timeout=30).values():
            f.result()

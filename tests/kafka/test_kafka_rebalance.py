"""Rebalance: worker A runs; mid-run worker B (its own transactional.id,
group.instance.id and state dir) joins, takes half the partitions (restoring
their state from the changelog), processes, and leaves on SIGTERM (clean close);
A gets those partitions back (restoring them again) and finishes. The output is
exactly once and the final state equals a clean run's."""
import re
import time

from conftest import (Progress, assert_caught_up, assert_exactly_once, assert_same_state,
                      changelog_state, end_offsets, inspect_state, log, produce_file,
                      read_alerts, read_topic)


def restored_partitions(w, topic):
    """Input partitions a worker restored from the changelog (its 'restored from' lines)."""
    pat = re.compile(re.escape(topic) + r"\[(\d+)\]: \d+ state records restored from")
    return sorted({int(m.group(1)) for l in w.lines("restored from") for m in [pat.search(l)] if m})


def test_worker_joins_and_leaves(broker, topics, workers, sample_200k_always):
    sample_200k = sample_200k_always
    t0 = time.monotonic()
    clean, pipe = topics.names.pipeline("clean"), topics.names.pipeline("rb")
    names = topics.create(clean, pipe)
    produce_file(broker, names.input, sample_200k.path)
    total = sample_200k.n_events
    clean_w = workers(names.input, clean, clean.tid_prefix + ".W1", names.state_dir("clean"),
                      "--exit-when-idle", "3000", "--drain", name="clean")

    # A exits only once idle for longer than B's session timeout (6 s): B is a
    # static member, so its clean close does not leave the group and A gets B's
    # partitions back only when the coordinator expires B's session.
    # A commits every 200 messages (at the defaults it reads the whole input in
    # about a second, before B has even started): the scenario
    # needs B to join while every partition still has input left, however
    # small a partition the sample gives and however fast the build is.
    a = workers(names.input, pipe, pipe.tid_prefix + ".A", names.state_dir("A"),
                "--exit-when-idle", "12000", "--drain", "--set", "batch_size=200", name="A")
    progress = Progress(broker, pipe.group, names.input)
    try:
        def wait_until(cond, what, timeout=120):
            deadline = time.monotonic() + timeout
            while not cond():
                assert a.poll() is None, f"A exited {a.poll()} {what}:\n{a.tail()}"
                assert time.monotonic() < deadline, f"timed out {what}:\n{a.tail()}"
                time.sleep(0.1)

        # B joins once A has committed progress on every partition that has input
        # (so B's partitions need a restore) and long before any is finished
        # (the partitions differ in size; waiting for a share of the total let A
        # finish a small one first)
        end = end_offsets(broker, names.input)
        nonempty = [p for p in range(len(end)) if end[p] > 0]
        wait_until(lambda: all(progress.parts()[p] > 0 for p in nonempty),
                   "waiting for A's progress on every partition")
        log(f"B joins at {progress()} of {total} committed")
        b = workers(names.input, pipe, pipe.tid_prefix + ".B", names.state_dir("B"), name="B")
        wait_until(lambda: b.lines("restored from") or b.poll() is not None,
                   "waiting for B's assignment")
        assert b.poll() is None, f"B exited {b.poll()}:\n{b.tail()}"
        # B's own progress: it commits on the partitions it restored
        b_restored = restored_partitions(b, names.input)
        at_join = progress.parts()
        # 2000 messages, or all that was left of them: the partitions are not
        # equally big and A may have nearly finished one before B took it
        b_goal = min(2000, sum(end[p] - at_join[p] for p in b_restored))
        assert b_goal > 0, f"B's partitions {b_restored} were done when B joined"
        wait_until(lambda: sum(progress.parts()[p] - at_join[p] for p in b_restored) >= b_goal,
                   f"waiting for B's progress on {b_restored}")
        log(f"B leaves (SIGTERM) at {progress()} of {total} committed")
        b.term()
        assert b.wait(60) == 0, b.tail()
        left = total - progress()
    finally:
        progress.close()
    assert left > 0, "the input was done before B left"
    rc = a.wait(240)
    assert rc == 0, f"A exited {rc}:\n{a.tail()}"
    assert clean_w.wait(240) == 0, clean_w.tail()
    log(f"A finished; {left} messages were left when B left")

    # The partitions moved: B got partitions with committed progress and restored
    # their state from the changelog; A then restored those same partitions when
    # they came back (its local copies were stale).
    b_parts = [int(x) for l in b.lines("local state at offset") for x in
               re.findall(re.escape(names.input) + r"\[(\d+)\]", l)]
    got_b = restored_partitions(b, names.input)
    got_a = restored_partitions(a, names.input)
    log(f"B restored partitions {got_b}; A restored {got_a} after B left")
    assert got_b, "B restored nothing from the changelog:\n" + b.tail()
    b_msgs = int(re.search(r" messages=(\d+) ", b.lines("[stats]")[-1]).group(1))
    assert b_msgs >= b_goal, b.tail()
    assert set(got_b) <= set(got_a), f"A did not restore B's partitions {got_b}:\n{a.tail()}"
    assert sorted(set(b_parts)) == got_b
    assert a.lines("assigned 2 partition(s)") and a.lines("assigned 4 partition(s)")
    assert b.lines("assigned 2 partition(s)") and b.lines("revoked 2 partition(s)")

    want = sample_200k.expected_ids
    assert_exactly_once(read_alerts(broker, pipe.output), want, "rebalanced run")
    assert_exactly_once(read_alerts(broker, clean.output), want, "clean run")
    assert read_topic(broker, pipe.dead_letter) == []
    assert_caught_up(broker, pipe.group, names.input)
    # the state A ends with (part kept, part restored twice) is the clean run's
    assert_same_state(inspect_state(names.state_dir("A"), names.input),
                      inspect_state(names.state_dir("clean"), names.input), "LMDB (inspect)")
    assert_same_state(changelog_state(broker, pipe.changelog),
                      changelog_state(broker, clean.changelog), "changelog")
    log(f"rebalance test: {time.monotonic() - t0:.1f} s")

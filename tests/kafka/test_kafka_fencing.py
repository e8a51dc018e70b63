"""Fencing: a second process with the same transactional.id fences the first,
which exits non-zero (5) and commits nothing more.

Two shapes of the same guarantee:
  - a running worker is fenced by a newer instance and exits promptly;
  - a paused zombie (SIGSTOP mid-transaction, like a long GC pause or a
    partitioned node) resumes only after its replacement has finished the whole
    input: it must not commit anything (output and group offsets unchanged),
    and exits 5.
Both end with every expected alert committed exactly once.
"""
import signal
import threading
import time

from confluent_kafka import Producer

from conftest import (Progress, assert_caught_up, assert_exactly_once, group_offsets, log,
                      produce_file, read_alerts, read_topic, run_to_end)

FENCED_EXIT = 5


def wait_progress(progress, w, goal, timeout=120):
    deadline = time.monotonic() + timeout
    while progress() < goal:
        assert w.poll() is None, f"{w.name} exited {w.poll()}:\n{w.tail()}"
        assert time.monotonic() < deadline, f"no progress to {goal}:\n{w.tail()}"
        time.sleep(0.05)


def test_newer_instance_fences_running_worker(broker, topics, workers, sample_200k, tmp_path):
    t0 = time.monotonic()
    pipe = topics.names.pipeline("fence")
    names = topics.create(pipe)
    total = sample_200k.n_events
    tid = pipe.tid_prefix + ".W"
    # The input arrives as a running service sees it: a third up front, the
    # rest in pieces while the second instance starts. A worker reads 200k
    # events in about a second, so input produced all at once could be done
    # (and the worker idle, with no transaction to be fenced in) before the
    # second instance is up.
    with open(sample_200k.path) as f:
        lines = f.readlines()
    cut = len(lines) // 3
    pieces = [lines[:cut]] + [lines[i:i + 4000] for i in range(cut, len(lines), 4000)]
    paths = []
    for i, piece in enumerate(pieces):
        paths.append(tmp_path / f"piece-{i:03d}.jsonl")
        paths[-1].write_text("".join(piece))
    produce_file(broker, names.input, paths[0])

    def trickle():
        for path in paths[1:]:
            produce_file(broker, names.input, path)
            time.sleep(0.1)

    feeder = threading.Thread(target=trickle)
    # worker 1: a long-running service (no --exit-when-idle)
    w1 = workers(names.input, pipe, tid, names.state_dir("1"), instance_id="node1", name="w1")
    progress = Progress(broker, pipe.group, names.input)
    try:
        wait_progress(progress, w1, total * 0.15)
        feeder.start()
        log(f"second instance starts at {progress()} of {total} committed")
        # worker 2: same transactional.id, another node (own group.instance.id, state dir)
        w2 = workers(names.input, pipe, tid, names.state_dir("2"), "--exit-when-idle", "10000",
                     "--drain", instance_id="node2", name="w2")
        rc1 = w1.wait(60)
        fenced_at = progress()
        log(f"worker 1 exited {rc1} {time.monotonic() - w2.started:.1f} s after worker 2 "
            f"started, at {fenced_at} committed")
    finally:
        if feeder.is_alive():
            feeder.join()
        progress.close()
    assert rc1 == FENCED_EXIT, w1.tail()
    assert "fenced by a newer instance" in w1.text(), w1.tail()
    assert fenced_at < total, "the input was done before worker 1 was fenced"
    rc2 = w2.wait(240)
    assert rc2 == 0, w2.tail()
    # worker 2 went on from the committed offsets, restoring worker 1's state
    assert w2.lines("restored from"), w2.tail()

    assert_exactly_once(read_alerts(broker, pipe.output), sample_200k.expected_ids)
    assert read_topic(broker, pipe.dead_letter) == []
    assert_caught_up(broker, pipe.group, names.input)
    log(f"fencing (running worker): {time.monotonic() - t0:.1f} s")


def test_paused_zombie_commits_nothing(broker, topics, workers, sample_200k):
    t0 = time.monotonic()
    pipe = topics.names.pipeline("zombie")
    names = topics.create(pipe)
    produce_file(broker, names.input, sample_200k.path)
    total = sample_200k.n_events
    tid = pipe.tid_prefix + ".W"

    w1 = workers(names.input, pipe, tid, names.state_dir("1"), instance_id="node1", name="w1")
    progress = Progress(broker, pipe.group, names.input)
    try:
        wait_progress(progress, w1, total * 0.2)
        time.sleep(0.05)  # inside the next transaction (it commits every 100 ms)
        w1.proc.send_signal(signal.SIGSTOP)
        paused_at = progress()
    finally:
        progress.close()
    log(f"worker 1 paused (SIGSTOP) at {paused_at} of {total} committed")
    try:
        # the replacement takes over (after worker 1's session expires) and finishes
        run_to_end(workers, names.input, pipe, tid, names.state_dir("2"),
                   instance_id="node2", name="w2")
        out_before = read_alerts(broker, pipe.output)
        offsets_before = group_offsets(broker, pipe.group, names.input)
        assert_exactly_once(out_before, sample_200k.expected_ids, "replacement's output")
        assert read_topic(broker, pipe.dead_letter) == []
    finally:
        w1.proc.send_signal(signal.SIGCONT)
    # The zombie resumes. A fenced producer learns so at its next transactional
    # request; if the abort of its old transaction did not need the coordinator
    # (nothing sent yet), it rejoins the group and only finds out when it has
    # work: give it some (two bad records, i.e. dead letters to produce).
    p = Producer({"bootstrap.servers": broker})
    extra = [b"", b'{"not": "cloudtrail"}']
    for v in extra:
        p.produce(names.input, key=sample_200k.expected[0]["account_id"].encode(), value=v)
    assert p.flush(30) == 0
    rc1 = w1.wait(90)
    log(f"worker 1 resumed and exited {rc1} {time.monotonic() - t0:.1f} s into the test")
    assert rc1 == FENCED_EXIT, w1.tail()
    assert "fenced by a newer instance" in w1.text(), w1.tail()
    # nothing more committed by the zombie: output, dead letters and offsets unchanged
    out_after = read_alerts(broker, pipe.output)
    assert sorted((m.partition, m.offset) for m, _ in out_after) == \
        sorted((m.partition, m.offset) for m, _ in out_before)
    assert read_topic(broker, pipe.dead_letter) == []
    assert group_offsets(broker, pipe.group, names.input) == offsets_before

    # the replacement, run again, handles the extra records exactly once
    run_to_end(workers, names.input, pipe, tid, names.state_dir("2"),
               instance_id="node2", name="w2-again")
    assert_exactly_once(read_alerts(broker, pipe.output), sample_200k.expected_ids)
    letters = read_topic(broker, pipe.dead_letter)
    assert sorted(m.value or b"" for m in letters) == sorted(extra)
    assert_caught_up(broker, pipe.group, names.input)
    log(f"fencing (paused zombie): {time.monotonic() - t0:.1f} s")

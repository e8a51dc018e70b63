"""A stop signal ends a restore from the changelog (docs/operations.md, "How a
partition's state moves").

A restore may take up to restore_timeout_ms (600 s in the manifests). The old
worker read the changelog to its end before it looked at its stop flag, so a
rolling deploy or `kubectl delete pod` during a long restore waited for
SIGKILL. Now SIGTERM ends the restore at once with exit 0 and keeps nothing of
the partially restored partitions: their stores are left empty, without an
offset, so the next start restores them in full; that start then processes
the rest of the input with the same results as a run never stopped.

The restore is made long: a commit every 100 events writes the changelog in
small record batches (and rewrites the keys they touch each time; active
segments are not compacted), and the stopped worker fetches one batch per
partition at a time (max.partition.fetch.bytes=1), so its restore takes
thousands of fetches.
"""
import re
import time
import urllib.request

from conftest import (PARTITIONS, assert_caught_up, assert_exactly_once, end_offsets, free_port,
                      group_offsets, inspect_state, log, produce_file, read_alerts, split_file)


def wait_for(w, needle, timeout=240):
    deadline = time.monotonic() + timeout
    while not w.lines(needle):
        assert w.poll() is None, f"{w.name} exited {w.poll()} before '{needle}':\n{w.tail()}"
        assert time.monotonic() < deadline, f"no '{needle}' from {w.name}:\n{w.tail()}"
        time.sleep(0.01)


def restored_records(w, port):
    """trailhound_restore_records_total as the worker serves it (0 until it does)."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    except OSError:
        return 0
    m = re.search(rb"^trailhound_restore_records_total (\d+)", text, re.M)
    return int(m.group(1)) if m else 0


def test_sigterm_ends_a_restore(broker, topics, workers, sample_200k, tmp_path):
    sample = sample_200k
    pipe = topics.names.pipeline("rstop")
    names = topics.create(pipe)
    (first, _), (second, _) = split_file(sample.path, 2, tmp_path)
    produce_file(broker, names.input, first)
    tid = pipe.tid_prefix + ".W1"
    a_dir, b_dir, c_dir = (names.state_dir(n) for n in ("first", "new-node", "check"))

    w = workers(names.input, pipe, tid, a_dir, "--exit-when-idle", "3000",
                "--set", "batch_size=100", name="first")
    assert w.wait(600) == 0, w.tail()
    assert_caught_up(broker, pipe.group, names.input)
    log(f"changelog: {sum(end_offsets(broker, pipe.changelog))} offsets")

    # The same worker on a new node: its restore is stopped. (A tenth of the
    # restore_timeout_ms of the manifests: the old worker ran the restore to
    # its end, this one must not need it.)
    port = free_port()
    w = workers(names.input, pipe, tid, b_dir, "--set", "restore_timeout_ms=60000",
                "--set", "kafka.max.partition.fetch.bytes=1",
                "--set", f"metrics_listen=127.0.0.1:{port}", name="interrupted")
    wait_for(w, ": restoring")
    # the restore has applied records: a partial state exists
    deadline = time.monotonic() + 120
    while restored_records(w, port) == 0:
        assert w.poll() is None and not w.lines("state records restored from"), w.tail()
        assert time.monotonic() < deadline, w.tail()
        time.sleep(0.01)
    w.term()
    rc = w.wait(120)
    assert rc == 0, f"SIGTERM during a restore: exit {rc}\n{w.tail()}"
    stopped = w.lines("stopped after")
    assert stopped, f"the restore ran to its end (or the signal came after it):\n{w.tail()}"
    assert not w.lines("state records restored from"), w.tail()
    log(f"stopped mid-restore: {stopped}")
    assert any(int(re.search(r"stopped after (\d+)", l).group(1)) > 0 for l in stopped), stopped

    # The next start restores every partition with state in full (nothing of
    # the stopped restore was kept: no offset), then processes the rest.
    produce_file(broker, names.input, second)
    w = workers(names.input, pipe, tid, b_dir, "--exit-when-idle", "3000", "--drain",
                name="resumed")
    assert w.wait(600) == 0, w.tail()
    committed = group_offsets(broker, pipe.group, names.input)
    with_state = [p for p in range(PARTITIONS) if committed[p] > 0]
    restoring = w.lines(": restoring")
    for p in with_state:
        assert any(re.search(rf"{re.escape(names.input)}\[{p}\]: local state at offset none", l)
                   for l in restoring), f"partition {p} not restored in full:\n{w.tail()}"
    assert not w.lines("untrusted"), w.tail()
    assert_caught_up(broker, pipe.group, names.input)
    # the results of an undisturbed run: every expected alert exactly once
    assert_exactly_once(read_alerts(broker, pipe.output), sample.expected_ids)
    # and the resumed store is the one the changelog describes: a node that
    # restores it without a stop holds the same state
    w = workers(names.input, pipe, tid, c_dir, "--exit-when-idle", "3000", name="check")
    assert w.wait(600) == 0, w.tail()
    assert inspect_state(c_dir, names.input) == inspect_state(b_dir, names.input)


def test_restore_skips_changelog_keys_no_worker_writes(broker, topics, workers, sample, tmp_path):
    """A changelog record whose key no worker writes (empty after the input-topic prefix,
    longer than LMDB's 511 bytes, or naming the store's metadata) came from someone else's
    write to the changelog. The old worker failed the whole restore on it (exit 5) at every
    restart: one record stopped the partition for good. Now it is skipped, counted and
    named, and the restore and the run go on with every expected alert exactly once."""
    from confluent_kafka import Producer

    pipe = topics.names.pipeline("rhostile")
    names = topics.create(pipe)
    (first, _), (second, _) = split_file(sample.path, 2, tmp_path)
    produce_file(broker, names.input, first)
    tid = pipe.tid_prefix + ".W1"
    w = workers(names.input, pipe, tid, names.state_dir("first"), "--exit-when-idle", "3000",
                name="first")
    assert w.wait(600) == 0, w.tail()

    prefix = names.input.encode() + b"\x1e"
    hostile = [prefix, prefix + b"k" * 600, prefix + b"\x00offset"]
    p = Producer({"bootstrap.servers": broker})
    for part in range(PARTITIONS):
        for key in hostile:
            p.produce(pipe.changelog, key=key, value=b"\x01junk", partition=part)
    assert p.flush(30) == 0

    # a new node restores every partition, past the hostile records
    produce_file(broker, names.input, second)
    port = free_port()
    w = workers(names.input, pipe, tid, names.state_dir("new-node"), "--exit-when-idle", "5000",
                "--set", f"metrics_listen=127.0.0.1:{port}", name="restored")
    deadline = time.monotonic() + 300
    while w.poll() is None and not w.lines("caught up") and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    except OSError:
        text = b""  # exited: the exit code below says why
    rc = w.wait(600)
    assert rc == 0, f"exit {rc}: the restore failed on records no worker writes\n{w.tail()}"
    # every partition restored (those with a committed offset) met all three
    restored = w.lines("state records restored from")
    assert restored, w.tail()
    skipped = w.lines("skipped: a key of")
    assert len(skipped) == len(hostile) * len(restored), "\n".join(skipped) or w.tail()
    m = re.search(rb"^trailhound_restore_records_skipped_total (\d+)", text, re.M)
    assert m and int(m.group(1)) == len(skipped), text.decode()[:2000]
    assert_caught_up(broker, pipe.group, names.input)
    assert_exactly_once(read_alerts(broker, pipe.output), sample.expected_ids)

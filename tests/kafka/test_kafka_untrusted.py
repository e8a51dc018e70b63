"""A state store that cannot be trusted is wiped and restored from the changelog.

A worker processes the first half of the input and stops. Between that run and
the next, every partition's data.mdb is corrupted (its two meta pages
overwritten, as a torn write or another program would): its offset still
"matches" nothing trustworthy. The next worker must not crash or stop on it:
th_state_open() reports TH_EUNTRUSTED, the worker wipes the partition's
directory and restores it from the changelog, then processes the second half.
The alerts are the expected set, each exactly once, and the state equals a clean
run's.
"""
import os
import time

from conftest import (PARTITIONS, assert_caught_up, assert_exactly_once, assert_same_state,
                      inspect_state, log, produce_file, read_alerts, read_topic, run_to_end,
                      split_file)


def corrupt_meta_pages(path):
    """Overwrite LMDB's two meta pages (the first 2 pages) with a pattern."""
    with open(path, "r+b") as f:
        f.seek(0)
        f.write(bytes((i * 37 + 11) & 0xFF for i in range(8192)))
        f.flush()
        os.fsync(f.fileno())


def test_corrupt_store_is_restored(broker, topics, workers, sample, tmp_path):
    pipe, clean = topics.names.pipeline("untrusted"), topics.names.pipeline("clean")
    names = topics.create(pipe, clean)
    (first, n1), (second, n2) = split_file(sample.path, 2, tmp_path)
    tid = pipe.tid_prefix + ".W1"
    sdir = names.state_dir("untrusted")

    produce_file(broker, names.input, first)
    # first run: no --drain (held uses stay held, as in a run that goes on)
    w = workers(names.input, pipe, tid, sdir, "--exit-when-idle", "3000", name="first")
    assert w.wait(240) == 0, w.tail()

    corrupted = 0
    for p in range(PARTITIONS):
        mdb = os.path.join(sdir, f"{names.input}-{p}", "data.mdb")
        if os.path.exists(mdb):
            corrupt_meta_pages(mdb)
            corrupted += 1
    assert corrupted >= 2, "the first run left too few stores to corrupt"
    log(f"corrupted {corrupted} stores")

    produce_file(broker, names.input, second)
    final = run_to_end(workers, names.input, pipe, tid, sdir, name="second")
    assert len(final.lines("cannot be trusted")) == corrupted, final.tail()
    assert len(final.lines("restored from")) >= corrupted, final.tail()

    assert_exactly_once(read_alerts(broker, pipe.output), sample.expected_ids,
                        "after restoring corrupt stores")
    assert read_topic(broker, pipe.dead_letter) == []
    assert_caught_up(broker, pipe.group, names.input)

    # the restored state is a clean run's
    run_to_end(workers, names.input, clean, clean.tid_prefix + ".W1", names.state_dir("clean"),
               name="clean")
    assert_same_state(inspect_state(sdir, names.input),
                      inspect_state(names.state_dir("clean"), names.input), "LMDB (inspect)")

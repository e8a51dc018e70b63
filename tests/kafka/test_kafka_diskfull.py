"""Disk full under the worker's state_dir, then space again.

The state_dir is a small tmpfs (we mount it: needs root). After the first half of
the input is committed, a file fills the tmpfs; the second half arrives. The
worker's next LMDB commit finds the disk full (th_state_commit -> TH_ENOSPC,
after Kafka has committed that transaction): it must say so, pause consumption
(no further progress), stay alive and in the group, and retry. Once the file is
removed it must resume and process everything, and the alerts must be the
expected set, each exactly once.
"""
import errno
import os
import subprocess
import time

import pytest

from conftest import (Progress, assert_caught_up, assert_exactly_once, log, produce_file,
                      read_alerts, read_topic, run_to_end, split_file)

TMPFS_SIZE = "16m"


@pytest.fixture
def tmpfs(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    d = tmp_path / "tmpfs"
    d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(d)],
                   check=True)
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)])


def fill(path):
    """Write a file until the filesystem is full; returns its size."""
    n = 0
    chunk = b"\0" * 65536
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                n += f.write(chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                break
        # the last bytes
        for size in (4096, 512, 1):
            while True:
                try:
                    n += f.write(b"\0" * size)
                except OSError:
                    break
    return n


def test_disk_full_pauses_and_resumes(broker, topics, workers, sample, tmp_path, tmpfs):
    pipe = topics.names.pipeline("diskfull")
    names = topics.create(pipe)
    (first, n1), (second, n2) = split_file(sample.path, 2, tmp_path)
    tid = pipe.tid_prefix + ".W1"
    sdir = str(tmpfs / "state")
    progress = Progress(broker, pipe.group, names.input)
    w = workers(names.input, pipe, tid, sdir, "--set", "batch_size=200", name="diskfull")
    filler = str(tmpfs / "filler")
    try:
        produce_file(broker, names.input, first)
        deadline = time.monotonic() + 180
        while progress() < n1:
            assert w.poll() is None, f"worker exited {w.poll()}:\n{w.tail()}"
            assert time.monotonic() < deadline, f"first half not committed:\n{w.tail()}"
            time.sleep(0.2)

        size = fill(filler)
        log(f"tmpfs full ({size} bytes of filler)")
        produce_file(broker, names.input, second)
        deadline = time.monotonic() + 120
        while not w.lines("is full"):
            assert w.poll() is None, f"worker died on a full disk ({w.poll()}):\n{w.tail()}"
            assert time.monotonic() < deadline, \
                f"the worker never reported the full disk (committed {progress()}):\n{w.tail()}"
            time.sleep(0.2)
        log(f"worker reports the full disk: {w.lines('is full')[0].split('] ')[-1]}")

        # while full: alive, and no more progress (the commit that hit the full
        # disk had already been committed in Kafka when the worker saw it)
        time.sleep(1)
        stalled = progress()
        time.sleep(8)
        assert w.poll() is None, f"worker exited while the disk was full:\n{w.tail()}"
        assert progress() == stalled, "the worker kept consuming with its state_dir full"
        assert stalled < n1 + n2, "everything was committed although the disk was full"
        assert w.lines("still full"), "no retry of the state commit while full"
        log(f"stalled at {stalled} of {n1 + n2} committed while full")

        os.unlink(filler)
        log("filler removed")
        deadline = time.monotonic() + 180
        while progress() < n1 + n2:
            assert w.poll() is None, f"worker exited {w.poll()}:\n{w.tail()}"
            assert time.monotonic() < deadline, \
                f"no resume after space returned ({progress()} of {n1 + n2}):\n{w.tail()}"
            time.sleep(0.2)
        assert w.lines("has room again"), w.tail()
        w.term()
        assert w.wait(60) == 0, w.tail()
    finally:
        progress.close()
        if os.path.exists(filler):
            os.unlink(filler)

    # decide the held uses at the end of the input (as scan), then compare
    run_to_end(workers, names.input, pipe, tid, sdir, name="diskfull-final")
    assert_exactly_once(read_alerts(broker, pipe.output), sample.expected_ids, "after disk full")
    assert read_topic(broker, pipe.dead_letter) == []
    assert_caught_up(broker, pipe.group, names.input)

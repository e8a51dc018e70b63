"""commit_max_changes: a transaction commits once its partitions' stores hold
that many changed records, before commit_interval_ms; it changes neither what
the worker outputs nor what it stores, nor what a restore of its changelog
gives.

Three workers over the same input, each with commit_interval_ms at ten minutes
and a batch_size above the input's size, so only the change cap can end a
transaction early:
  - "small": commit_max_changes=64;
  - "twin": the cap out of reach (the positive twin: the same run without it);
  - "restore": joins the small run's group afterwards with an empty state dir
    and commit_max_changes=64, so it restores every partition from the small
    run's changelog. The small run's many transactions left several versions
    of most keys there; the restore (th_state_load) sorts the records by key
    and writes each key's last one, once, in key order, whatever the cap.
The small run commits many transactions where the twin commits one or two;
both commit exactly scan's alerts once each and end with the same stores; the
restored stores equal the small run's, though the restore wrote fewer keys than
it read records."""
import re
import time

from conftest import (assert_caught_up, assert_exactly_once, assert_same_state, inspect_state,
                      log, produce_file, read_alerts, run_to_end)

NO_TIME = ["--set", "commit_interval_ms=600000", "--set", "batch_size=1000000"]


def transactions(w):
    """The transactions of a worker's last [stats] line."""
    m = re.search(r" transactions=(\d+) ", w.lines("[stats]")[-1])
    return int(m.group(1))


def restores(w):
    """{partition: (records read, keys written, store commits)} from a worker's
    'restored from' lines."""
    pat = re.compile(r"\[(\d+)\]: (\d+) state records restored from .*: (\d+) keys in key "
                     r"order, (\d+) store commits, ")
    out = {}
    for line in w.lines("restored from"):
        m = pat.search(line)
        assert m, line
        out[int(m.group(1))] = (int(m.group(2)), int(m.group(3)), int(m.group(4)))
    return out


def test_change_cap_ends_transactions_and_restore_keeps_last_records(broker, topics, workers, sample):
    t0 = time.monotonic()
    small, twin = topics.names.pipeline("small"), topics.names.pipeline("twin")
    names = topics.create(small, twin)
    produce_file(broker, names.input, sample.path)

    ws = run_to_end(workers, names.input, small, small.tid_prefix + ".W", names.state_dir("small"),
                    *NO_TIME, "--set", "commit_max_changes=64")
    wt = run_to_end(workers, names.input, twin, twin.tid_prefix + ".W", names.state_dir("twin"),
                    *NO_TIME, "--set", "commit_max_changes=10000000")
    n_small, n_twin = transactions(ws), transactions(wt)
    log(f"transactions: cap 64 -> {n_small}, no cap -> {n_twin}")
    # the twin's only commits: the end of input (and the drain of held uses)
    assert n_twin <= 3, wt.tail()
    assert n_small >= 10 * n_twin and n_small >= 20, ws.tail()

    # the same output and the same stores either way
    for pipe in (small, twin):
        assert_exactly_once(read_alerts(broker, pipe.output), sample.expected_ids, pipe.output)
        assert_caught_up(broker, pipe.group, names.input)
    small_state = inspect_state(names.state_dir("small"), names.input)
    assert_same_state(small_state, inspect_state(names.state_dir("twin"), names.input),
                      "stores, cap 64 against no cap")

    # a worker with an empty state dir takes the small run's partitions over
    wr = run_to_end(workers, names.input, small, small.tid_prefix + ".R",
                    names.state_dir("restore"), "--set", "commit_max_changes=64")
    got = restores(wr)
    log(f"restored (records read, keys written, store commits) per partition: {got}")
    # every partition with state (the sample may leave one without input)
    assert got and set(got) >= {p for p, _ in small_state if small_state[(p, "keys")].strip()
                                not in ("", "[]")}, wr.tail()
    for p, (records, keys, commits) in got.items():
        assert keys <= records and commits >= 1, (p, records, keys, commits)
    big = [p for p, (records, _, _) in got.items() if records > 2 * 1024]
    assert big, f"no partition has more than 2,048 state records: {got}"
    # the changelog of the small run's many transactions holds earlier versions of most
    # keys: the restore keeps each key's last record only
    assert all(got[p][1] < got[p][0] for p in big), got
    assert_same_state(inspect_state(names.state_dir("restore"), names.input), small_state,
                      "restored stores against the small run's")
    log(f"txnsize: {time.monotonic() - t0:.1f} s")

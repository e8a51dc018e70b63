"""Crash: kill -9 the worker at >= 10 random points of a >= 1M-event run,
restarting it each time (same transactional.id and group.instance.id, same state
dir; one restart with the state dir wiped, as on a new node); then let it
finish. Every expected alert is committed exactly once, nothing else, and the
final state equals a clean run's.

How the states are compared (both must hold):
  1. The LMDB stores: `trailhound inspect --json keys|roles|accounts` of each
     partition's environment, byte for byte against the clean run's. Both runs read
     the same input topic, so the partition directories pair up by name, and
     inspect's output is in LMDB key order, so no sorting is needed. This is the
     state a restarted or rebalanced worker actually continues from (some
     partitions of the crashed run end up restored from the changelog, others
     kept across restarts).
  2. The changelogs: the last committed value of every key of each partition's
     changelog (read_committed, tombstones delete), against the clean run's
     changelog. This is what a new worker would restore; batch boundaries differ
     between the runs, so only the folded state, not the record sequence, can be
     compared.
The kills must land inside transactions (not only between them, where
exactly-once would be trivial). At the default commit interval a transaction
writes its changelog records only in its last few milliseconds (one record per
changed key, just before the offsets and the commit), so a kill at a random
moment would rarely catch one. Each kill after the first progress target is
therefore aimed: the test watches the changelog's last stable offset (a
read_committed consumer's end offset) against its high watermark and kills as
soon as they differ, i.e. while a transaction holding changelog records is
open. Right after the kill the same check tells whether the kill landed before
the commit: the dead worker's transaction stays open until the restarted
worker's init_transactions aborts it. The test requires at least one such
landing, and, as a second proof independent of that check, that the changelog
read_uncommitted (aborted records included) holds strictly more records than
read_committed.

Comparing inspect's text rather than parsed JSON avoids depending on its JSON
being well-formed, and every field it prints (counts, first/last seen, API calls,
baselines, alerts raised per key) is derived from the input only.
"""
import os
import random
import shutil
import time

from conftest import (OpenTransactions, Progress, assert_caught_up, assert_exactly_once, assert_same_state,
                      changelog_state, inspect_state, log, produce_file, read_alerts,
                      read_topic, run_to_end)

KILLS = int(os.environ.get("TH_CRASH_KILLS", "10"))
SEED = int(os.environ.get("TH_CRASH_SEED", "20260901"))


def test_kill9_at_random_points(broker, topics, workers, sample_1m):
    t0 = time.monotonic()
    rng = random.Random(SEED)
    clean, crash = topics.names.pipeline("clean"), topics.names.pipeline("crash")
    names = topics.create(clean, crash)
    produce_file(broker, names.input, sample_1m.path)
    total = sample_1m.n_events

    # The clean reference run, alongside (a different group over the same input).
    clean_w = workers(names.input, clean, clean.tid_prefix + ".W1", names.state_dir("clean"),
                      "--exit-when-idle", "3000", "--drain")

    # The crashed run: kill points as fractions of the input committed so far;
    # two of them hit a worker still starting (init_transactions, the join,
    # a changelog restore). After the committed total passes the target, a random
    # delay of up to 150 ms puts the kill anywhere within a transaction (while
    # producing, in EndTxn, between the Kafka commit and the LMDB commit).
    tid = crash.tid_prefix + ".W1"
    sdir = names.state_dir("crash")
    # Kill points stay below 80% of the input: at the default commit interval the
    # worker runs at well over 100k events/s, so between the progress check and
    # the kill it can get ~10% of the 1M events further, and the last kill must
    # still leave input for the final run.
    targets = sorted(rng.uniform(0.03, 0.8) for _ in range(KILLS))
    early = set(rng.sample(range(KILLS), 2))
    # One restart also loses the local disk (a pod rescheduled to another node):
    # every partition must come back from the changelog. Plain kill -9 restarts
    # rarely hit the short window between the Kafka commit and the LMDB commit.
    wipe = rng.randrange(KILLS // 2, KILLS)
    progress = Progress(broker, crash.group, names.input)
    open_txn = OpenTransactions(broker, crash.changelog)
    aimed = landed = 0
    restores = 0
    wiped_parts = []
    try:
        for i in range(KILLS):
            before = progress()
            if i == wipe:
                # the partitions with committed input have state to restore
                wiped_parts = [p for p, n in enumerate(progress.parts()) if n > 0]
                shutil.rmtree(sdir)
                log(f"restart #{i + 1}: state dir wiped")
            w = workers(names.input, crash, tid, sdir, name=f"crash{i}")
            if i in early:
                # start-up (init_transactions, join, restore) takes ~0.5-1 s; later,
                # the worker may be through the rest of the input
                time.sleep(rng.uniform(0.05, 0.6))
                how = "while starting"
            else:
                goal = max(int(targets[i] * total), before + 1)
                deadline = time.monotonic() + 120
                while progress() < goal:
                    assert w.poll() is None, f"worker exited {w.poll()}:\n{w.tail()}"
                    assert time.monotonic() < deadline, f"no progress to {goal}:\n{w.tail()}"
                    time.sleep(0.05)
                # aim at the commit: wait until a transaction holding changelog
                # records is open (bounded: the input may run out first)
                aim_deadline = time.monotonic() + 10
                while not open_txn() and time.monotonic() < aim_deadline and w.poll() is None:
                    pass
                how = f"after committed >= {goal}, aimed at an open transaction"
                aimed += 1
            assert w.poll() is None, f"worker {i} exited early ({w.poll()}):\n{w.tail()}"
            w.kill9()
            if i not in early:
                if open_txn():
                    landed += 1
                    how += " (landed: the changelog's transaction is left open)"
                else:
                    how += " (missed: it committed first)"
            restores += len(w.lines("restored from"))
            log(f"kill -9 #{i + 1} {how}, {time.monotonic() - w.started:.1f} s after start; "
                f"committed {before} -> {progress()} of {total}; "
                f"{len(w.lines('restoring'))} partition restore(s) in this life")
        left = total - progress()
    finally:
        progress.close()
        open_txn.close()
    assert left > 0, "the input was done before the last kill: no kill was mid-run"
    log(f"{landed} of {aimed} aimed kills landed inside an open transaction")
    assert landed >= 1, "no aimed kill landed inside an open transaction"

    final = run_to_end(workers, names.input, crash, tid, sdir, name="crash-final")
    restores += len(final.lines("restored from"))
    rc = clean_w.wait(240)
    assert rc == 0, clean_w.tail()
    log(f"{KILLS} kills, {restores} partition restores from the changelog; "
        f"{left} messages left for the final run")
    # Every partition that had state when the disk was lost comes back from
    # the changelog (in the wiped life, or in a later one if that life was
    # killed before it finished restoring). How many partitions hold input
    # depends on the sample's accounts, so the bound is counted, not fixed.
    assert wiped_parts, "nothing was committed before the wipe"
    assert restores >= len(wiped_parts), \
        f"{restores} restores from the changelog for {len(wiped_parts)} wiped partitions"

    # exactly once: every expected alert, once, nothing else (read_committed)
    want = sample_1m.expected_ids
    assert sorted(sample_1m.scan) == want
    assert_exactly_once(read_alerts(broker, clean.output), want, "clean run")
    assert_exactly_once(read_alerts(broker, crash.output), want, "crashed run")
    assert read_topic(broker, crash.dead_letter) == []
    assert_caught_up(broker, crash.group, names.input)

    # the state after the crashed run is the clean run's
    assert_same_state(inspect_state(sdir, names.input),
                      inspect_state(names.state_dir("clean"), names.input), "LMDB (inspect)")
    got, ref = changelog_state(broker, crash.changelog), changelog_state(broker, clean.changelog)
    assert len(ref) > 100
    assert_same_state(got, ref, "changelog")

    # the kills landed inside transactions: their records were aborted
    committed = len(read_topic(broker, crash.changelog, timeout=120))
    uncommitted = len(read_topic(broker, crash.changelog, timeout=120,
                                 isolation="read_uncommitted"))
    alerts_c = len(read_topic(broker, crash.output))
    alerts_u = len(read_topic(broker, crash.output, isolation="read_uncommitted"))
    log(f"changelog records: {uncommitted} read_uncommitted, {committed} read_committed; "
        f"alerts: {alerts_u} read_uncommitted, {alerts_c} read_committed")
    assert uncommitted > committed, \
        "no kill landed inside a transaction that had written to the changelog"
    assert alerts_u >= alerts_c
    log(f"crash test: {len(ref)} state keys equal, {time.monotonic() - t0:.1f} s")

#!/usr/bin/env python3
"""Writes docs/benchmarks.md and its plots from the figures bench/stream.sh,
bench/latency.sh and bench/state_keys.sh left in a results directory
(stream.json, commit.csv, latency.json, latency.csv, latency_stats.txt,
keys.json; a missing file leaves its section out). A section of the existing
document whose heading names `--parse-only` (written by another benchmark) is
kept, at the end.

    bench/report.py --results DIR --out docs/benchmarks.md --plots docs/bench [--note TEXT]
"""

import argparse
import csv
import json
import os
import platform
import re
import subprocess
import time

TARGET_RUN_RATIO = 0.7
TARGET_P99_MS = 500
TARGET_RSS_MB = 300
TARGET_LMDB_B = 300
TARGET_RESTORE = 200000


def load(path):
    try:
        with open(path) as f:
            return json.load(f) if path.endswith(".json") else f.read()
    except OSError:
        return None


def stats_field(line, name):
    m = re.search(r"(?:^| )" + re.escape(name) + r"=(\d+)", line or "")
    return int(m.group(1)) if m else None


def machine():
    cpu = "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = next(int(x.split()[1]) for x in open("/proc/meminfo") if x.startswith("MemTotal"))
    try:
        rdk = subprocess.run(["pkg-config", "--modversion", "rdkafka"], capture_output=True,
                             text=True).stdout.strip() or "?"
    except OSError:
        rdk = "?"
    return (f"{os.cpu_count()} cores ({cpu}), {mem_kb / 1048576:.0f} GiB RAM, {platform.system()} "
            f"{platform.release()}; Kafka 3.9.1 single node from `scripts/kafka-local.sh` on the same "
            f"machine; librdkafka {rdk}")


def met(ok):
    return "**met**" if ok else "**missed**"


def plot_commit(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    xs = [r["commit_interval_ms"] for r in rows]
    ys = [r["events_per_s"] / 1000 for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(xs, ys, "o-")
    ax.set_xscale("log")
    ax.set_xticks(xs)
    ax.set_xticklabels([str(x) for x in xs])
    ax.set_xlabel("commit_interval_ms")
    ax.set_ylabel("k events/s (assignment → caught up)")
    ax.set_title("trailhound run, exactly-once: throughput vs commit interval")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_latency(lat, rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for r in rows:
        xs = sorted(lat.get(r["rate"], []))
        if not xs:
            continue
        ys = [(i + 1) / len(xs) for i in range(len(xs))]
        ax.plot(xs, ys, label=f"{r['rate'] // 1000}k events/s (p99 {r['p99']} ms)")
    ax.axvline(TARGET_P99_MS, color="grey", linestyle="--", linewidth=1, label="target p99 at 20k/s")
    ax.set_xlabel("produce → alert visible (read_committed), ms")
    ax.set_ylabel("fraction of alerts")
    ax.set_title("trailhound run, default config: latency CDF per input rate")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--plots", required=True)
    ap.add_argument("--total-s", type=float, default=0)
    ap.add_argument("--note", default="")
    a = ap.parse_args()
    R = lambda name: os.path.join(a.results, name)  # noqa: E731
    st = load(R("stream.json"))
    keys = load(R("keys.json"))
    latj = load(R("latency.json"))
    lat_stats = (load(R("latency_stats.txt")) or "").strip()
    commit = []
    if os.path.exists(R("commit.csv")):
        with open(R("commit.csv")) as f:
            commit = [{k: float(v) if "." in v else int(v) for k, v in r.items()} for r in csv.DictReader(f)]
    lat = {}
    if os.path.exists(R("latency.csv")):
        with open(R("latency.csv")) as f:
            for r in csv.DictReader(f):
                lat.setdefault(int(r["rate"]), []).append(float(r["latency_ms"]))

    os.makedirs(a.plots, exist_ok=True)
    rel = os.path.relpath(a.plots, os.path.dirname(os.path.abspath(a.out)) or ".")
    plots = {}
    try:
        if commit:
            plot_commit(commit, os.path.join(a.plots, "commit_interval.png"))
            plots["commit"] = f"{rel}/commit_interval.png"
        if latj and lat:
            plot_latency(lat, latj["rows"], os.path.join(a.plots, "latency.png"))
            plots["latency"] = f"{rel}/latency.png"
    except ImportError:
        print("report: no matplotlib: no plots")

    out = []
    w = out.append
    w("# Benchmarks\n")
    w("Written by `bench/stream.sh` (also run by `bench/run.sh`), in one command"
      + (f" that took {a.total_s / 60:.1f} min" if a.total_s else "")
      + "; numbers from one run, not a test.\n")
    w(f"Machine: {machine()}.  ")
    w(f"Date: {time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())}.\n")
    if a.note:
        w(f"**{a.note}**\n")

    if st:
        n = st["events"]
        kcat_r, scan1_r, scann_r, run_r = (n / st[k] for k in ("kcat_s", "scan1_s", "scann_s", "run_s"))
        lower = min(kcat_r, scan1_r)
        w("## Streaming: `run` against `scan` and kcat\n")
        w("Generated CloudTrail (`tools/gen_sample.py --seed 3 --accounts 30`), produced with "
          "`trailhound produce` (keyed by account) to a 4-partition topic; all three read the same events. "
          "No at-least-once mode exists, so the cost of exactly-once is not a number here.\n")
        w(f"| same {n} events ({st['bytes'] // 1000000} MB, 4 partitions) | wall | events/s | run ÷ this |")
        w("|---|---|---|---|")
        w(f"| `kcat -C -o beginning -e`, raw read | {st['kcat_s']:.3f} s | {kcat_r:.0f} | {run_r / kcat_r:.2f} |")
        w(f"| `trailhound scan --jobs 1` on the events as a file | {st['scan1_s']:.3f} s | {scan1_r:.0f} | "
          f"{run_r / scan1_r:.2f} |")
        w(f"| `trailhound scan` ({st['jobs']} jobs) | {st['scann_s']:.3f} s | {scann_r:.0f} | {run_r / scann_r:.2f} |")
        w(f"| `trailhound run`, exactly-once, default config, assignment → caught up | {st['run_s']:.3f} s | "
          f"{run_r:.0f} | 1.00 |\n")
        w(f"- `run` ÷ min(kcat, `scan --jobs 1`) = **{run_r / lower:.2f}** (target ≥ {TARGET_RUN_RATIO}: "
          f"{met(run_r / lower >= TARGET_RUN_RATIO)}). The worker is one thread, so `scan --jobs 1` is its "
          "like-for-like; kcat and the broker share the cores with it.")
        w(f"- `run`: process wall {st['run_wall_s']} s (includes joining the group and the 1 s "
          f"`--exit-when-idle`), CPU {st['run_user_s']} s user + {st['run_sys_s']} s sys, max RSS "
          f"{st['run_rss_kb']} kB.")
        w("- Where the worker's wall time went (`[stats]`, cumulative ms per phase; `consume` includes "
          f"joining the group and the idle second):\n  `{st['run_stats']}`\n")

        w("## 2 workers in one group against 1\n")
        w("The same events on a broker of their own whose `group.initial.rebalance.delay.ms` is Kafka's "
          "default, 3 s (the tests' broker uses 0): a new group waits that long for more members, so workers "
          "launched together get their shares in one assignment instead of the first starting alone and "
          "the second's join rebalancing both mid-run. A fresh group each; time from the first assignment "
          "until the group's committed offsets reach the end of all 4 partitions (watched from outside, "
          "`bench/kadmin.py wait-committed`).\n")
        if st.get("repeat", 1) > 1:
            w(f"Each row is the median of {st['repeat']} runs, 1 and 2 workers alternating (all runs: 1 worker "
              f"{st['one_all']} s; 2 workers {st['two_all']} s).\n")
        w("| workers | first assignment → all committed | events/s | CPU (all workers) | speed-up |")
        w("|---|---|---|---|---|")
        w(f"| 1 | {st['one_s']:.2f} s | {n / st['one_s']:.0f} | {st['one_cpu_s']:.1f} s | 1.00 |")
        w(f"| 2 | {st['two_s']:.2f} s | {n / st['two_s']:.0f} | {st['two_cpu_s']:.1f} s | "
          f"{st['one_s'] / st['two_s']:.2f} |\n")
        if st.get("two_split"):
            w(f"With 2 workers (the median run): {st['two_split']}.")
            shares = [int(x) for x in re.findall(r"(\d+) messages", st["two_split"])]
            if st.get("part_sizes"):
                w(f"The input is keyed by account (30 accounts over 4 partitions), so the partitions differ: "
                  f"{', '.join(st['part_sizes'].split())} events.")
            if len(shares) == 2 and max(shares) > 0:
                w(f"The larger share, {max(shares)} of {n} events, caps what 2 workers can gain at "
                  f"{n / max(shares):.2f}× even with a core each.")
            w("")
        if st.get("two_restored_all"):
            w(f"State records restored from the changelog by the 2 workers, per run: {st['two_restored_all']} "
              "(0: no partition moved during a run).\n")
        w(f"On {os.cpu_count()} cores the broker, the second worker and the first share the same CPUs, so a "
          "second worker can only buy what the first left idle; scaling out needs cores (or machines) for it.\n")

    if commit:
        w("## Throughput against `commit_interval_ms`\n")
        w("The same events, `run --set commit_interval_ms=N`, each from assignment to caught up with its own "
          "group and changelog (100 is the default)"
          + (f"; each row the median (by time) of {st['repeat']} runs" if st and st.get("repeat", 1) > 1 else "")
          + ".\n")
        w("| commit_interval_ms | assignment → caught up | events/s | transactions | send_offsets ms | commit ms |")
        w("|---|---|---|---|---|---|")
        for r in commit:
            w(f"| {r['commit_interval_ms']} | {r['seconds']:.3f} s | {r['events_per_s']} | {r['transactions']} | "
              f"{r['send_offsets_ms']} | {r['commit_ms']} |")
        w("")
        if "commit" in plots:
            w(f"![throughput against commit interval]({plots['commit']})\n")

    if latj:
        rows = latj["rows"]
        w("## produce → alert latency at fixed input rates (default config)\n")
        w("`bench/latency.sh`: a paced producer (`bench/latency.py`, Python confluent-kafka, linger.ms 5) "
          "writes generated events at each rate in turn into a 4-partition topic while one worker runs with "
          "the defaults (commit_interval_ms 100). One event in 50 is the remote use of a Lambda key issued and "
          "used inside just before it, each raising one alert. A `read_committed` consumer of the alert topic "
          "(fetch.wait.max.ms 10) notes when each alert becomes visible; latency = that time − the record "
          "timestamp (CreateTime) of the event named by the alert's `input.partition`/`input.offset`.\n")
        w("| input rate | achieved | events | alerts seen / raised by cases | p50 | p99 | max | "
          "p50 / p99: event → alert produced | p50 / p99: alert produced → visible | target |")
        w("|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            tgt = ""
            if r["rate"] == 20000:
                tgt = f"p99 < {TARGET_P99_MS} ms: {met(r['p99'] is not None and r['p99'] < TARGET_P99_MS)}"
            w(f"| {r['rate']}/s | {r['achieved']}/s | {r['events']} | {r['alerts']} / {r['expected']} | "
              f"{r['p50']} ms | {r['p99']} ms | {r['max']} ms | {r.get('p50_to_alert')} / {r.get('p99_to_alert')} ms | "
              f"{r.get('p50_to_visible')} / {r.get('p99_to_visible')} ms | {tgt} |")
        w("")
        w("The split is at the alert record's own timestamp (the worker produces it inside the transaction, "
          "right after detecting): *event → alert produced* is the input's delivery, the consumer's fetch and "
          "the detection; *alert produced → visible* is the rest of the transaction and its commit.  ")
        w("Alerts slower than 500 ms: " + "; ".join(
            f"{r['rate'] // 1000}k/s {r.get('slow')} of {r['alerts']}"
            + (f", within {r.get('slow_seconds')} distinct second(s) of the phase (on average "
               f"{r.get('slow_to_alert')} ms to the alert, {r.get('slow_to_visible')} ms to visible)"
               if r.get("slow") else "") for r in rows) + ".\n")
        txn = stats_field(lat_stats, "transactions")
        so = stats_field(lat_stats, "time.send_offsets_ms")
        cm = stats_field(lat_stats, "time.commit_ms")
        if txn:
            w(f"The worker during these runs: {txn} transactions; per transaction "
              f"send_offsets {so / txn:.0f} ms and commit {cm / txn:.0f} ms on average. An alert waits for the "
              "transaction it is in: up to commit_interval_ms (100) from the transaction's first message, then "
              "send_offsets and commit, while the loop does not consume; so the commit cycle "
              f"(~{100 + (so + cm) / txn:.0f} ms here) sets the median. The tail comes in bursts (the slow "
              "alerts fall within a few seconds of each phase, and both halves of the split share in it): "
              "stalls of the worker, the broker or the producer when the cores are taken, not a steady cost "
              "per event.  \n"
              f"`[stats]`: `{lat_stats}`\n")
        rq = load(R("latency_rq.json"))
        if rq:
            w(f"CPU contention over these {rq['seconds']:.0f} s (`/proc/*/schedstat`, time ready to run with no "
              f"core free): the worker's main thread waited {rq['worker_ms']} ms "
              f"({100 * rq['worker_ms'] / 1000 / rq['seconds']:.1f} % of the time), the broker's threads together "
              f"{rq['broker_ms']} ms; load average at the end {rq['load']}.\n")
        if latj.get("unmatched"):
            w(f"{latj['unmatched']} alerts were not raised by a benchmark case (not counted).\n")
        if "latency" in plots:
            w(f"![latency CDF per input rate]({plots['latency']})\n")

    if keys:
        k = keys["keys"]
        rss_mb = keys["max_rss_kb"] / 1024
        per_key = keys["lmdb_tree_bytes"] / k
        rest = keys["restored_records"] / keys["restore_s"] if keys["restore_s"] else 0
        rest_fast = keys["restored_records"] / keys["restore_fastwait_s"] if keys.get("restore_fastwait_s") else 0
        w(f"## The state store with {k:,} live Lambda keys\n")
        w(f"`bench/state_keys.sh`: {k:,} distinct `ASIA` keys, each used once from inside its function "
          "(`tools/gen_bench_events.py keys`: 400 functions in 40 accounts, one hour of event time, so every key "
          f"stays live), {keys['events']:,} events through one worker with the defaults "
          f"({keys['run_s']} s assignment → caught up). LMDB figures are the 4 partition stores summed (`mdb_stat`); "
          "the restore is a second worker in the same group with an empty state dir, started after the first "
          "stopped, timed from its first `restoring` log line to its last `restored` line.\n")
        w("| measure | figure | target |")
        w("|---|---|---|")
        anon_mb = keys['peak_anon_kb'] / 1024
        w(f"| peak private (anonymous) resident memory of the worker, sampled every 0.2 s | {anon_mb:.0f} MB | "
          f"≤ {TARGET_RSS_MB} MB: {met(anon_mb <= TARGET_RSS_MB)} |")
        w(f"| max resident memory including the LMDB map's file pages | {rss_mb:.0f} MB (file-backed "
          f"{keys['peak_file_kb'] / 1024:.0f} MB) | ≤ {TARGET_RSS_MB} MB: {met(rss_mb <= TARGET_RSS_MB)} |")
        w(f"| LMDB bytes per tracked key: tree pages (branch + leaf + overflow) × page size ÷ keys | "
          f"{per_key:.0f} B ({keys['lmdb_records']:,} records, {keys['lmdb_tree_bytes'] / 1e6:.0f} MB) | "
          f"≤ {TARGET_LMDB_B} B: {met(per_key <= TARGET_LMDB_B)} |")
        w(f"| … pages the environments use (incl. free pages) ÷ keys | {keys['lmdb_env_bytes'] / k:.0f} B | |")
        w(f"| … `data.mdb` on disk ÷ keys | {keys['lmdb_disk_bytes'] / k:.0f} B | |")
        fa = load(R("faultaround.json")) if os.path.exists(R("faultaround.json")) else None
        if fa:
            cells = ", ".join(f"{t['pages']:,} → {t['mapped_kb'] / 1024:.1f} MB" for t in fa["touched"])
            w(f"| one partition store ({fa['file_bytes'] / 1e6:.0f} MB) mapped again after its mapping was dropped "
              f"(`madvise(MADV_DONTNEED)`), by random pages read (`bench/map_faultaround.py`) | {cells} | |")
        w(f"| restore from the changelog, default config | {keys['restored_records']:,} records of "
          f"{keys['restore_partitions']} partitions in {keys['restore_s']} s"
          + (f" (median of {len(keys['restore_rounds_s'])} rounds)" if len(keys.get("restore_rounds_s") or []) > 1 else "")
          + f": **{rest:,.0f} keys/s** | "
          f"≥ {TARGET_RESTORE:,}/s: {met(rest >= TARGET_RESTORE)} |")
        if rest_fast:
            w(f"| … with `--set kafka.fetch.wait.max.ms=10` (a diagnosis, not the default) | "
              f"{keys['restore_fastwait_s']} s: {rest_fast:,.0f} keys/s | |")
        rounds = keys.get("restore_rounds_s") or []
        if len(rounds) > 1:
            rates = ", ".join(f"{keys['restored_records'] / r:,.0f}" for r in rounds if r)
            w(f"| … each round (a new worker, empty state dir; the median above) | "
              f"{', '.join(str(r) for r in rounds)} s: {rates} keys/s | |")
        r_anon = keys.get("restore_peak_anon_kb")
        w(f"| the restoring worker: process wall / max RSS | {keys['restore_worker_wall_s']} s / "
          f"{keys['restore_worker_rss_kb'] / 1024:.0f} MB"
          + (f" (peak private {r_anon / 1024:.0f} MB, file-backed "
             f"{keys['restore_peak_file_kb'] / 1024:.0f} MB)" if r_anon else "") + " | |")
        if keys.get("restored_tree_bytes"):
            w(f"| LMDB of the restored stores (the same keys, appended in key order by the restore): "
              f"tree ÷ keys; pages the environments use ÷ keys | {keys['restored_tree_bytes'] / k:.0f} B; "
              f"{keys['restored_env_bytes'] / k:.0f} B | |")
        w("")
        lim = keys.get("memory_limited") or []
        if lim:
            w(f"The same {keys['events']:,} events again, each run with a new group and changelog, the worker "
              "inside a cgroup with a hard memory limit: the limit counts what a container's does, the "
              "worker's private memory and the page cache it uses (the LMDB map's pages and the store's "
              "writes), and the kernel reclaims page cache before it kills. At most "
              f"{lim[0]['deadline_s']} s per run.\n")
            w("| hard memory limit | events processed | time | cgroup's peak charge | major page faults | OOM kills |")
            w("|---|---|---|---|---|---|")
            for m in lim:
                done = m["caught_up_s"] is not None
                when = (f"caught up in {m['caught_up_s']} s" if done
                        else f"**not caught up** when stopped after {m['wall_s']} s")
                w(f"| {m['limit_mb']} MB | {m['messages']:,} of {keys['events']:,} | {when} | "
                  f"{m['peak_bytes'] / 2**20:.0f} MB | {m['major_faults']:,} | {m['oom_kills']} |")
            w("")
        w(STATE_LIMITS)

    w(HISTORY)
    # another benchmark's section (scan against --parse-only) is kept as it is
    old = load(a.out) if os.path.exists(a.out) else None
    if old:
        m = re.search(r"^## [^\n]*parse-only.*", old, re.M | re.S)
        if m:
            w(m.group(0).rstrip() + "\n")
    with open(a.out, "w") as f:
        f.write("\n".join(out))
    print(f"report: wrote {a.out}" + (f" and {', '.join(plots.values())}" if plots else ""))


STATE_LIMITS = """What changed for these targets (issue 7), and what is left:
- **LMDB's copies of the pages a transaction writes** were the largest private cost: without
  `MDB_WRITEMAP` LMDB copies every page it changes into its own heap memory until the commit
  (and keeps the copies for reuse), ~4 KB per new key when keys land on scattered leaves. A
  100 ms transaction of this benchmark changed ~11k keys, so ~150 MB of private memory (heaptrack:
  59 % of the peak heap) and a restore committing every 50,000 records per partition more.
  Now a transaction also commits once the stores hold `commit_max_changes` (default 8,192)
  changed records (a restore then committed each partition at its share of that, see
  **Restore** below for what it does now). Peak private memory of the worker
  292–326 → ~240–250 MB, of the restoring worker ~185 MB; max RSS ~920 → ~690–710 MB (fewer
  free pages too: 603 → 465 B/key of environment); ~10 % more time on this all-new-keys
  input; restore ~255k keys/s (was ~365–415k at ~880–900 MB max RSS). Streams of ordinary
  traffic change far fewer records per 100 ms and commit by time as before (the 1M-event
  stream above: 26–27 transactions, as before this change).
- **Private memory** was 706 MB at 1M keys: the detector kept up to 8,192 decoded objects per
  partition (`struct th_token` ~10 KB, `struct th_role` ~1.6 KB and 136 B per function) plus as many spares, checked
  only at a commit, and the store kept 262,144 clean entries per partition. Now the decoded
  objects are bounded between events too (`OBJS_MAX` 1,024 per partition, 256 spares;
  `src/detect_int.h`) and the clean cache holds 32,768 entries (`src/state.c`); `scan`'s CPU on
  both benchmark mixes did not change.
- **Token records version 3** (2026-12-01): a key's record wrote its role ARN and its
  function whole and each time as itself (138 B per value for this benchmark's keys). Now a
  role ARN of the aws partition is its account number and name, a function named like its
  session is written once, and the times after the first are differences (87 B; `src/records.c`,
  docs/state-format.md). `bench/state_keys.sh` with `BENCH_MEMLIMITS=300`, 2 alternating runs
  of the build before (5fcf853) and this one: tree 279 → 204 B/key, environment 452–455 →
  360 B/key, max RSS 698–713 → 584–586 MB (file-backed 448–453 → 355–356 MB, private 240–251 →
  219–220 MB), worker 9.3–9.7 → 8.9–9.0 s; under a 300 MB hard limit 591k–643k of the 1M
  events in 60 s (**not caught up**) → **caught up** in 37–46 s (33 and 58 s in two more runs
  of this build: the limit's reclaim is noisy); a restore 0.99–1.0 → 0.78–0.85 s, and a restored
  store 188 → 138 B/key. The machine of these runs (and of this page since 2026-12-01 11:55Z) is
  an AMD EPYC, about twice as fast as the Intel Xeon of the earlier figures below: compare
  builds only within one run.
- **Where the private memory goes** (heaptrack on the worker of this benchmark, 2026-12-02,
  peak heap 215 MB): LMDB's page copies 79 MB (LMDB keeps each environment's largest
  transaction's copies for reuse until the store closes), librdkafka 64 MB (47 MB of fetched
  batches waiting in the prefetch queue), the detector's decoded objects and spares 30 MB, the
  store's cache 17 MB, LMDB's dirty-page lists 12 MB. `queued.min.messages` 5,000 instead of
  20,000 left the fetched batches at 42 MB and peak private within 3 %; the fetch sizes, not
  the message count, bound them here.
- **A token's alerts out of line** (2026-12-02): a decoded token was 10.6 KB, 5.7 KB of it four
  inline alert slots that most keys never use; now the slots are allocated with a key's first
  alert (`struct th_token` 4.8 KB). `bench/state_keys.sh` with `BENCH_MEMLIMITS=300`, 2
  alternating runs of the build before (b85b50c) and this one: peak private 216–217 → 203–206 MB,
  max RSS 579–584 → 564–576 MB, worker 17.2–17.5 → 16.1–18.7 s (noise), and under the 300 MB
  limit 792k–840k of the 1M events in 60 s (**not caught up**, 6.5k–8.2k major faults) →
  **caught up** in 38.8–41.0 s (3.2k–3.4k major faults; this page's run of the same build,
  on a busier machine, processed 968,534 of them in its 60 s). `scan`'s alerts and counters are
  byte-identical on both benchmark corpora.
- **`commit_max_changes` under a memory limit**: `bench/setting_ab.sh commit_max_changes
  "8192 4096" 3` (alternating rounds, 2026-12-02, the build before the change above): on ordinary traffic (the 1M-event
  stream) 4.79 against 4.86 s and 36 against 37 transactions, the same; on the 1M new keys
  4,096 takes 16.0 s against 14.0 s (+15 %, 208 transactions against 110) for 190 against
  213 MB peak private and 513 against 572 MB max RSS. With `BENCH_MEMLIMIT=300` (this build, 2
  rounds, keys only) 4,096 caught up in 37.6–46.1 s against 98.7–105.5 s (2.2k–2.7k against 10k–18k
  major faults): in a container of ~300 MB, 4,096 is the better setting (docs/operations.md,
  Sizing); the default stays 8,192, the faster one wherever the store fits in memory. (The
  same build caught up in 39–41 s under `bench/state_keys.sh`'s 300 MB runs at the default:
  near its limit the reclaim is noisy, so compare values only within one harness's alternating
  rounds.)
- **Resident memory including the map** stays above 300 MB: LMDB reads through a shared
  file mapping, and with a million live keys touched in random order every page of the store
  is mapped (the file-backed part above, ~ the environment's size). Those pages are the
  kernel's page cache, shared and reclaimable under pressure, and grow with the store, not
  with the process. A container's memory limit counts them, and reclaims them before it
  kills: the runs under a hard limit above show what that costs. With the whole store
  cached the worker runs at full speed; under a limit it reclaims and re-reads. With the
  version-3 records a 300 MB container holds the 1M live keys and, in most runs, catches up,
  taking 2.5–7× as long (~80 MB of cache beside ~220 MB private for a ~200 MB tree: every new key that lands
  on an evicted leaf waits on a disk read); 512 MB runs at full speed.
  Private memory is the part a smaller limit would need to cut, and the store's pages the
  rest; unconstrained, both together are ~590 MB.
  Dropping the mapping after each commit (`madvise(MADV_DONTNEED)`) would not bound it either:
  a read fault maps back the pages around it that are in the page cache (the kernel's
  fault-around, 64 KB per fault here; more where the page cache holds large folios), and a
  transaction of this benchmark reads thousands of scattered leaves per store, so the row
  "mapped again" above shows the store mostly mapped again within one transaction's reads.
  Within 300 MB at full speed the whole store (tree ~200 MB at 1M keys) would have to fit
  beside the private memory: the measured limit is the store's size, not a leak or a cache.
- **LMDB bytes per key** were 375 B with the first version of this benchmark, whose access
  keys ascended within each of 40 accounts: every page split left a half page that never grew
  again (~50 % fill). Real access keys are random base32; with keys like AWS's the tree fills
  its pages to ~70 % (279 B per key with version-2 token records, 204 B with version 3). The environment also holds free pages: LMDB copies every
  page a transaction writes and reuses a page only after the two newest transactions no longer
  need it, so with a commit every 100 ms touching thousands of scattered leaves the file is
  about twice the tree.
- **Restore** was ~100–144k keys/s: each partition was read in turn and ended on an empty
  fetch held for librdkafka's default 500 ms, and librdkafka 2.0.2 stopped refilling its queue
  for up to a second (the stall `wake_fetcher` handles in the main loop). Now one assignment's
  partitions are read together, the restore reader's `fetch.wait.max.ms` is 10 ms, and a
  watermark request wakes its fetcher when the queue runs dry (`restore_parts` in
  `src/worker.c`). That gave ~150–230k keys/s on this machine, at ~555 MB max RSS: each
  record was put where its random key falls in the B-tree, in transactions of 4,096 changes
  per partition, so each commit wrote about one 4 KB page per record (~4 GB for 1M keys) and
  LMDB kept the largest transaction's page copies. Now (2026-12-01) the records are sorted by
  key as they arrive, an external merge sort (64 MB in all, sorted runs spilled to one
  unnamed temporary file per partition), and appended to the empty store with `MDB_APPEND`
  in 4 MB transactions: each page is written once and full (`src/state_load.c`).
  `bench/restore_ab.sh 3`, alternating with the build before: 187–230k → 545–650k keys/s,
  CPU 4.4–4.8 → 1.7–1.8 s, max RSS 554 → 170 MB.
"""

HISTORY = """## What removed the waiting (issue 7; 199,502 events, 4 partitions, same machine, 2026-11-29)

| `run` with the defaults | transactions | assignment → caught up | events/s | where the time went (ms) |
|---|---|---|---|---|
| before: batch_size 1000 | 202 | ~8.8 s | ~22k | send_offsets 5459, commit 2602, consume 1189 (incl. 1 s idle), detect 442 |
| after | 9 | 1.36 s | ~146k | consume 1339 (incl. 1 s idle), detect 551, send_offsets 254, commit 66 |

Side by side then: kcat 0.89–0.93 s (~220k/s), `scan` 0.73 s. Each change and what it bought:
1. Producer `retry.backoff.ms` 100 → 10: after a commit the next transaction's AddOffsetsToTxn
   waits for the coordinator's markers (CONCURRENT_TRANSACTIONS, retried at this pace):
   send_offsets fell from ~27 ms to ~3 ms per transaction.
2. Commit by time: `batch_size` default 1000 → 100,000 (a cap), `commit_interval_ms` (100)
   counted from the transaction's first message: ~200 transactions → ~9.
3. The producer's output topics resolved before the first transaction: the first records to
   each topic waited ~0.86 s for a metadata refresh inside commit_transaction (twice per start).
4. The consumer's prefetch refilled at once: librdkafka 2.0.2 stops fetching while its queue
   holds `queued.max.messages.kbytes` (64 MB, ~50k events) and resumes only when its broker
   thread wakes, up to ~1 s later; the worker processed the queue in ~0.2 s and then waited
   ~0.75 s, every 50k events. A watermark request to a partition leader when the queue runs dry
   wakes that thread (`wake_fetcher`); `queued.min.messages` 20000 keeps the prefetch (and RSS) smaller.

Again, by one command: `bench/ablation.sh [EVENTS]` builds the worker of before (4002917~1)
once, then runs `run` on the same 200,000 events (the first of this page's corpus, 4
partitions) in it and in this build, with the defaults and with each change's setting put
back; each row the median of 3 runs (2026-11-30 07:08Z, this machine, nothing else running):

| build, settings | assignment → caught up | events/s | transactions | send_offsets ms | commit ms |
|---|---|---|---|---|---|
| before (4002917~1, its defaults) | 6.40 s | 31235 | 202 | 2473 | 2935 |
| this build, the old settings (commit every 1000 messages, `retry.backoff.ms` 100, librdkafka's prefetch) | 4.32 s | 46264 | 201 | 1308 | 2063 |
| this build, defaults but `retry.backoff.ms` 100 | 0.89 s | 225734 | 7 | 30 | 83 |
| this build, defaults but commit every 1000 messages | 3.89 s | 51467 | 201 | 662 | 2225 |
| this build, defaults but librdkafka's prefetch (`queued.min.messages` 100000, `fetch.wait.max.ms` 500) | 1.21 s | 165153 | 7 | 26 | 75 |
| this build, defaults | 0.85 s | 235571 | 7 | 22 | 81 |

Committing by time is most of it (3.89 → 0.85 s); the prefetch settings 1.21 → 0.85 s; with 7
transactions instead of ~200 the retry backoff no longer shows (0.89 against 0.85 s), though
per transaction it still costs what item 1 says. The first two rows differ by the code changes
alone (the metadata warm-up, `wake_fetcher`, and the detector's own speed-ups since).
"""

if __name__ == "__main__":
    main()

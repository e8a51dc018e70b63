#!/usr/bin/env python3
"""produce -> alert latency of `trailhound run` at fixed input rates (a
benchmark driver, used by bench/latency.sh; not a test).

  produce  paced producer: per phase RATE events/s for SECONDS, generated
           events (tools/gen_bench_events.py shapes) whose record timestamps
           are CreateTime, the time the event was handed to the client. One
           event in EVERY is a remote use of a key issued and used inside
           just before it: each raises one alert (variation 1; every case has
           its own function, so dedup never hides one). The delivery report of
           each such event gives its partition, offset and timestamp.
  watch    a read_committed consumer of the alert topic: the wall time at
           which each alert became visible, until the stop file appears.
  report   joins each alert's input.partition / input.offset (schemas/
           alert.avsc) with the triggering event's record timestamp:
           latency = visible - timestamp, split at the alert record's own
           timestamp (when the worker produced it, inside its transaction):
           event -> alert produced (delivery, consume, detect) and alert
           produced -> visible (the rest of the transaction and its commit).
           Prints p50/p99/max per rate and writes the latencies as CSV
           (rate,latency_ms,to_alert_ms,to_visible_ms,t_s) for the plot.
"""

import argparse
import io
import json
import math
import os
import pickle
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
import gen_bench_events as ev  # noqa: E402

DAY = 86400


def cmd_produce(a):
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": a.bootstrap, "enable.idempotence": True,
                  "partitioner": "murmur2_random", "linger.ms": 5,
                  "queue.buffering.max.messages": 1000000})
    base = int(time.time()) - DAY  # event time: a day back, well inside max_future_skew
    accts = [ev.account(i) for i in range(a.accounts)]
    n = 0
    # Each account's first event 20 days earlier: past the 14-day activation period.
    for i, acct in enumerate(accts):
        p.produce(a.topic, ev.issuance(acct, "lat-warm", "lat-warm", f"ASIAWARM{i:012d}", base - 20 * DAY, n),
                  key=acct)
        n += 1
    p.flush(30)
    time.sleep(a.gap)
    cases = []   # (partition, offset, timestamp_ms, rate) of every remote event, from delivery reports
    phases = []
    rates = [int(x) for x in a.rates.split(",")]
    secs = [float(x) for x in a.seconds.split(",")]
    case_no = 0
    for rate, dur in zip(rates, secs):
        total = int(rate * dur)
        recent = []  # (acct, role, fn, key, created) of the last cases: background traffic
        open_case = None
        t0 = time.monotonic()
        i = 0
        late_ms = 0.0
        while i < total:
            now = time.monotonic()
            due = min(total, int((now - t0) * rate) + 1)
            if i >= due:
                time.sleep(0.0005)
                p.poll(0)
                continue
            # how far the producer runs behind its schedule (the machine is shared)
            late_ms = max(late_ms, (now - t0 - i / rate) * 1000.0)
            while i < due:
                et = base + int(now - t0) + int(sum(secs)) * len(phases)
                slot = i % a.every
                if slot == 0:
                    acct = accts[case_no % len(accts)]
                    c = (acct, f"lat-role-{rate}-{case_no}", f"lat{rate}-{case_no}",
                         f"ASIAL{case_no:015d}", et)
                    case_no += 1
                    open_case = c
                    value = ev.issuance(c[0], c[1], c[2], c[3], et, n)
                elif slot == 1 and open_case:
                    c = open_case
                    value = ev.inside(c[0], c[1], c[2], c[3], c[4], et, n)
                    recent.append(c)
                    if len(recent) > 200:
                        recent.pop(0)
                elif slot == a.every // 2 and open_case:
                    c = open_case
                    open_case = None
                    value = ev.remote(c[0], c[1], c[2], c[3], c[4], et, n)

                    def dr(err, msg, rate=rate):
                        if err is None:
                            cases.append((msg.partition(), msg.offset(), msg.timestamp()[1], rate))
                    while True:
                        try:
                            p.produce(a.topic, value, key=c[0], on_delivery=dr)
                            break
                        except BufferError:
                            p.poll(0.01)
                    n += 1
                    i += 1
                    continue
                else:
                    c = recent[(i * 7919) % len(recent)] if recent else open_case
                    value = ev.inside(c[0], c[1], c[2], c[3], c[4], et, n)
                while True:
                    try:
                        p.produce(a.topic, value, key=c[0])
                        break
                    except BufferError:
                        p.poll(0.01)
                n += 1
                i += 1
            p.poll(0)
        wall = time.monotonic() - t0
        p.flush(60)
        phases.append({"rate": rate, "events": total, "seconds": round(wall, 3),
                       "achieved": round(total / wall), "max_behind_ms": round(late_ms, 1)})
        print(f"latency: produced {total} events at {rate}/s in {wall:.2f} s "
              f"(achieved {total / wall:.0f}/s, at most {late_ms:.0f} ms behind schedule)", file=sys.stderr)
        time.sleep(a.gap)
    with open(a.out, "w") as f:
        json.dump({"phases": phases, "cases": cases}, f)


def cmd_watch(a):
    from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING

    c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": f"latency-watch-{os.getpid()}",
                  "isolation.level": "read_committed", "enable.auto.commit": False,
                  "fetch.wait.max.ms": 10, "enable.partition.eof": False})
    md = c.list_topics(a.topic, timeout=10)
    parts = sorted(md.topics[a.topic].partitions)
    c.assign([TopicPartition(a.topic, q, OFFSET_BEGINNING) for q in parts])
    got = []
    last = time.time()
    while True:
        m = c.poll(0.05)
        now = time.time()
        if m is not None and not m.error():
            got.append((now, m.timestamp()[1], m.value()))
            last = now
        elif os.path.exists(a.stop) and now - last > a.idle:
            break
    c.close()
    with open(a.out, "wb") as f:
        pickle.dump(got, f)
    print(f"latency: watched {len(got)} alerts", file=sys.stderr)


def pct(xs, q):
    """nearest-rank percentile of sorted xs"""
    if not xs:
        return float("nan")
    return xs[max(0, min(len(xs) - 1, math.ceil(q * len(xs)) - 1))]


def cmd_report(a):
    import fastavro

    schema = fastavro.parse_schema(json.load(open(a.schema)))
    prod = json.load(open(a.produced))
    by_ref = {(q, o): (ts, rate) for q, o, ts, rate in prod["cases"]}
    start = {}
    for _q, _o, ts, rate in prod["cases"]:
        start[rate] = min(ts, start.get(rate, ts))
    seen = pickle.load(open(a.watched, "rb"))
    per = {}  # rate -> [(latency, event -> alert produced, alert produced -> visible, s into the phase)]
    unmatched = 0
    for t, alert_ts, value in seen:
        rec = fastavro.schemaless_reader(io.BytesIO(value[5:]), schema)
        ref = by_ref.get((rec["input"]["partition"], rec["input"]["offset"]))
        if ref is None:
            unmatched += 1
            continue
        vis = t * 1000.0
        per.setdefault(ref[1], []).append((vis - ref[0], alert_ts - ref[0], vis - alert_ts,
                                           (ref[0] - start[ref[1]]) / 1000.0))
    expected = {}
    for _q, _o, _ts, rate in prod["cases"]:
        expected[rate] = expected.get(rate, 0) + 1
    rows = []
    with open(a.csv, "w") as f:
        f.write("rate,latency_ms,to_alert_ms,to_visible_ms,t_s\n")
        for ph in prod["phases"]:
            xs = sorted(per.get(ph["rate"], []))
            for x in xs:
                f.write(f"{ph['rate']},{x[0]:.1f},{x[1]:.1f},{x[2]:.1f},{x[3]:.3f}\n")
            lat = [x[0] for x in xs]
            to_alert = sorted(x[1] for x in xs)
            to_vis = sorted(x[2] for x in xs)
            slow = [x for x in xs if x[0] > a.slow_ms]
            rows.append(dict(ph, alerts=len(xs), expected=expected.get(ph["rate"], 0),
                             p50=round(pct(lat, 0.50)), p99=round(pct(lat, 0.99)),
                             max=round(lat[-1]) if lat else None,
                             p50_to_alert=round(pct(to_alert, 0.5)), p99_to_alert=round(pct(to_alert, 0.99)),
                             p50_to_visible=round(pct(to_vis, 0.5)), p99_to_visible=round(pct(to_vis, 0.99)),
                             slow_ms=a.slow_ms, slow=len(slow),
                             slow_seconds=len({int(x[3]) for x in slow}),
                             slow_to_alert=round(sum(x[1] for x in slow) / len(slow)) if slow else None,
                             slow_to_visible=round(sum(x[2] for x in slow) / len(slow)) if slow else None))
    json.dump({"rows": rows, "unmatched": unmatched}, open(a.summary, "w"))
    for r in rows:
        print(f"latency: {r['rate']}/s (achieved {r['achieved']}/s): {r['alerts']} of {r['expected']} alerts, "
              f"p50 {r['p50']} ms, p99 {r['p99']} ms, max {r['max']} ms; p99 event -> alert produced "
              f"{r['p99_to_alert']} ms, alert produced -> visible {r['p99_to_visible']} ms; "
              f"{r['slow']} over {a.slow_ms} ms, within {r['slow_seconds']} s of the phase", file=sys.stderr)
    if unmatched:
        print(f"latency: {unmatched} alerts not raised by a benchmark case", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("produce")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--rates", default="5000,20000,50000")
    p.add_argument("--seconds", default="20,15,10")
    p.add_argument("--every", type=int, default=50, help="one alert case per this many events")
    p.add_argument("--accounts", type=int, default=32)
    p.add_argument("--gap", type=float, default=2.0, help="seconds of quiet between phases")
    p.add_argument("--out", required=True)
    w = sub.add_parser("watch")
    w.add_argument("--bootstrap", required=True)
    w.add_argument("--topic", required=True)
    w.add_argument("--stop", required=True, help="stop once this file exists and IDLE s passed without alerts")
    w.add_argument("--idle", type=float, default=3.0)
    w.add_argument("--out", required=True)
    r = sub.add_parser("report")
    r.add_argument("--schema", required=True)
    r.add_argument("--produced", required=True)
    r.add_argument("--watched", required=True)
    r.add_argument("--csv", required=True)
    r.add_argument("--summary", required=True)
    r.add_argument("--slow-ms", type=int, default=500, help="count the alerts slower than this")
    a = ap.parse_args()
    {"produce": cmd_produce, "watch": cmd_watch, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    main()

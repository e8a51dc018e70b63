#!/usr/bin/env python3
"""Print the alerts committed to a trailhound output topic, one line each.

Reads the topic from the beginning to its current end as a downstream consumer
would (isolation.level=read_committed: aborted transactions stay invisible),
checks the Confluent wire format (magic byte 0 + 4-byte big-endian schema id)
and decodes the Avro body with fastavro and schemas/alert.avsc.

One line per alert, in event-time order:
  severity, alert name (variation), account, function/session, source ip + ASN
  (+ AS organisation), event time, alert_id

With --expected FILE (the generator's expected-alerts JSON lines, as written by
tools/gen_sample.py --expected), compares the alert IDs and says so; the exit
code is then 0 only if every expected alert is there exactly once and nothing
else. Without it: 0 if the topic could be read and decoded.

Needs the Python packages confluent-kafka and fastavro.
"""
import argparse
import collections
import datetime
import io
import json
import os
import struct
import sys
import time
import uuid

try:
    import fastavro
    from confluent_kafka import Consumer, KafkaError, TopicPartition
except ImportError as e:
    sys.exit(f"print_alerts: {e} (python3 -m pip install confluent-kafka fastavro)")

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SCHEMA = os.path.join(HERE, "..", "schemas", "alert.avsc")


def read_committed(brokers, topic, timeout):
    """(message, value) of every committed message, to the end of each partition."""
    c = Consumer({"bootstrap.servers": brokers,
                  "group.id": f"trailhound-print-alerts-{uuid.uuid4().hex}",
                  "isolation.level": "read_committed", "enable.auto.commit": False,
                  "enable.partition.eof": True, "auto.offset.reset": "earliest"})
    try:
        md = c.list_topics(topic, timeout=10)
        if topic not in md.topics or md.topics[topic].error is not None:
            raise SystemExit(f"print_alerts: no topic {topic} on {brokers}")
        todo = set()
        for p in md.topics[topic].partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if hi > lo:
                todo.add(p)
        c.assign([TopicPartition(topic, p, 0) for p in sorted(todo)])
        deadline = time.monotonic() + timeout
        while todo:
            if time.monotonic() > deadline:
                raise SystemExit(f"print_alerts: {topic}: no end reached on partitions "
                                 f"{sorted(todo)} within {timeout} s (a transaction still open?)")
            for m in c.consume(500, 0.5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        todo.discard(m.partition())
                        continue
                    raise SystemExit(f"print_alerts: {topic}: {m.error()}")
                yield m
    finally:
        c.close()


def decode(value, schema):
    if not value or len(value) < 5 or value[0] != 0:
        raise ValueError("not in the Confluent wire format (magic byte 0 + schema id)")
    (schema_id,) = struct.unpack(">I", value[1:5])
    return schema_id, fastavro.schemaless_reader(io.BytesIO(value[5:]), schema)


def fmt_time(t):
    if isinstance(t, datetime.datetime):
        return t.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(t)


def line(a):
    who = a["function_name"] or a["session_name"] or "-"
    if a["session_name"] and a["function_name"] and a["session_name"] != a["function_name"]:
        who = f"{a['function_name']}/{a['session_name']}"
    name = f"{a['alert_name']} (v{a['variation']})"
    src = f"{a['source_ip']} AS{a['asn']}" + (f" {a['as_org']}" if a.get("as_org") else "")
    return (f"{a['severity']:<13} {name:<54} {a['account_id']}  {who:<24} {src:<50} "
            f"{fmt_time(a['event_time'])}  {a['alert_id']}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-b", "--brokers", default="127.0.0.1:19092", help="bootstrap servers")
    ap.add_argument("-t", "--topic", default="trailhound.alerts", help="the alert topic")
    ap.add_argument("--schema", default=DEFAULT_SCHEMA, help="alert.avsc (default: the repo's)")
    ap.add_argument("--expected", help="expected alerts (JSON lines with alert_id) to compare")
    ap.add_argument("--timeout", type=float, default=60, help="seconds to reach the end")
    args = ap.parse_args(argv)

    schema = fastavro.parse_schema(json.load(open(args.schema)))
    alerts, schema_ids, bad = [], collections.Counter(), 0
    for m in read_committed(args.brokers, args.topic, args.timeout):
        try:
            sid, a = decode(m.value(), schema)
        except Exception as e:  # report, go on: a downstream reader must not stop either
            bad += 1
            print(f"print_alerts: {args.topic}[{m.partition()}]@{m.offset()}: cannot decode: {e}",
                  file=sys.stderr)
            continue
        schema_ids[sid] += 1
        alerts.append(a)
    alerts.sort(key=lambda a: (a["event_time"], a["alert_id"]))
    for a in alerts:
        print(line(a))
    ids = ", ".join(f"{k} ({n})" for k, n in sorted(schema_ids.items())) or "-"
    print(f"\n{len(alerts)} alerts on {args.topic} (read_committed; Avro schema id {ids})"
          + (f"; {bad} undecodable" if bad else ""))
    if not args.expected:
        return 1 if bad else 0

    want = [json.loads(l) for l in open(args.expected) if l.strip()]
    want_ids = collections.Counter(w["alert_id"] for w in want)
    got_ids = collections.Counter(a["alert_id"] for a in alerts)
    missing = sorted(set(want_ids) - set(got_ids))
    extra = sorted(set(got_ids) - set(want_ids))
    dup = sorted(k for k, n in got_ids.items() if n > 1)
    if not missing and not extra and not dup and not bad:
        print(f"OK: exactly the {len(want_ids)} expected alerts of {args.expected}, each once")
        return 0
    cases = {w["alert_id"]: w.get("case", "") for w in want}
    print(f"MISMATCH against {args.expected}:")
    for k in missing:
        print(f"  missing   {k}  ({cases[k]})")
    for k in extra:
        print(f"  extra     {k}")
    for k in dup:
        print(f"  {got_ids[k]} times  {k}")
    return 1


if __name__ == "__main__":
    sys.exit(main())

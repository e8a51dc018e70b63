#!/usr/bin/env python3
"""Topic admin for the stream benchmarks, without a JVM per call:

  bench/kadmin.py BOOTSTRAP create NAME:PARTITIONS[:compact] ...
  bench/kadmin.py BOOTSTRAP delete NAME ...        (missing topics are skipped)
  bench/kadmin.py BOOTSTRAP end-offsets TOPIC      print each partition's end offset
  bench/kadmin.py BOOTSTRAP wait-committed GROUP TOPIC START TIMEOUT
      wait until GROUP's committed offsets reach the end of every partition of
      TOPIC; print the seconds from START (epoch seconds) to then
"""

import sys
import time

from confluent_kafka.admin import AdminClient, NewTopic


def end_offsets(a, boot, topic):
    """{partition: end offset} of TOPIC."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": boot, "group.id": "kadmin-end-offsets"})
    parts = sorted(a.list_topics(topic, timeout=10).topics[topic].partitions)
    ends = {q: c.get_watermark_offsets(TopicPartition(topic, q), timeout=10)[1] for q in parts}
    c.close()
    return ends


def main():
    boot, cmd, names = sys.argv[1], sys.argv[2], sys.argv[3:]
    a = AdminClient({"bootstrap.servers": boot})
    if cmd == "create":
        new = []
        for spec in names:
            parts = spec.split(":")
            cfg = {"cleanup.policy": "compact"} if len(parts) > 2 and parts[2] == "compact" else {}
            new.append(NewTopic(parts[0], num_partitions=int(parts[1]), replication_factor=1, config=cfg))
        for t, f in a.create_topics(new, operation_timeout=30).items():
            f.result()
        # wait until the metadata shows every partition with a leader
        want = {n.topic: n.num_partitions for n in new}
        deadline = time.time() + 30
        while time.time() < deadline:
            md = a.list_topics(timeout=10).topics
            if all(t in md and len(md[t].partitions) == k and
                   all(p.leader >= 0 for p in md[t].partitions.values()) for t, k in want.items()):
                return
            time.sleep(0.2)
        sys.exit("kadmin: topics not ready after 30 s")
    elif cmd == "delete":
        have = a.list_topics(timeout=10).topics
        mine = [t for t in names if t in have]
        if mine:
            for f in a.delete_topics(mine, operation_timeout=30).values():
                f.result()
    elif cmd == "end-offsets":
        print(" ".join(str(e) for _, e in sorted(end_offsets(a, boot, names[0]).items())))
    elif cmd == "wait-committed":
        from confluent_kafka import Consumer, TopicPartition
        group, topic, start, timeout = names[0], names[1], float(names[2]), float(names[3])
        ends = end_offsets(a, boot, topic)
        c = Consumer({"bootstrap.servers": boot, "group.id": group, "enable.auto.commit": False})
        tps = [TopicPartition(topic, q) for q in sorted(ends)]
        while time.time() < start + timeout:
            try:
                got = c.committed(tps, timeout=5)
            except Exception:  # coordinator moving: ask again
                got = []
            t = time.time()
            if got and all(tp.offset >= ends[tp.partition] for tp in got):
                print(f"{t - start:.3f}")
                c.close()
                return
            time.sleep(0.05)
        c.close()
        sys.exit("kadmin: group %s not caught up within %.0f s" % (group, timeout))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()

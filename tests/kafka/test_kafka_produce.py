"""`trailhound produce` of an S3 archive (the backfill): the files go out in
CloudTrail's delivery order, as `scan` reads them, whatever order they are
named in; a directory is walked (digest files skipped); a file named twice is
sent once. Each record once, keyed by its account."""
import gzip
import json
import os
import subprocess
import sys

import uuid

from confluent_kafka.admin import NewTopic

from conftest import BIN, SRC, read_topic, wait_for_topics

LAYOUT = os.path.join(SRC, "tools/s3_layout.py")
GEN = os.path.join(SRC, "tools/gen_sample.py")


def delivery_key(path):
    # <account>_CloudTrail_<region>_<YYYYMMDDTHHMMZ>_<id>.json.gz
    base = os.path.basename(path)
    return (base.split("_")[3], base)


def records(path):
    with gzip.open(path) as g:
        return json.load(g)["Records"]


def test_produce_sends_an_archive_in_delivery_order(broker, admin, tmp_path):
    events = tmp_path / "events.jsonl"
    subprocess.run([sys.executable, GEN, "--seed", "5", "--accounts", "3", "--days", "2",
                    "--no-attacks", "--target-events", "3000", "--out", str(events), "-q"],
                   check=True)
    tree = tmp_path / "tree"
    subprocess.run([sys.executable, LAYOUT, str(events), str(tree), "--digest", "-q"], check=True)
    files = []
    for d, _, names in os.walk(tree):
        files += [os.path.join(d, n) for n in names
                  if n.endswith(".json.gz") and "CloudTrail-Digest" not in d]
    by_path = sorted(files)
    by_delivery = sorted(files, key=delivery_key)
    assert by_path != by_delivery, "the archive is in delivery order by path: nothing to test"
    want = [r["eventID"] for f in by_delivery for r in records(f)]
    accounts = {r["eventID"]: (r.get("userIdentity") or {}).get("accountId") or r["recipientAccountId"]
                for f in files for r in records(f)}

    # one partition each: the order a worker reads
    made = [f"th-test.produce.{uuid.uuid4().hex[:10]}.{i}" for i in range(2)]
    for t, f in admin.create_topics([NewTopic(t, 1, 1) for t in made]).items():
        f.result()
    wait_for_topics(admin, made)
    try:
        check(broker, made, by_path, tree, want, accounts)
    finally:
        for f in admin.delete_topics(made, operation_timeout=30).values():
            f.result()


def check(broker, made, by_path, tree, want, accounts):
    for topic, args in zip(made, [by_path + by_path[:3],  # an xargs list, a glob overlap
                                  [str(tree / "AWSLogs")]]):
        p = subprocess.run([BIN, "produce", "-b", broker, "-t", topic,
                            "--set", "max_future_skew=0"] + args,
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr[-2000:]
        msgs = read_topic(broker, topic, isolation="read_uncommitted")
        got = [json.loads(m.value)["eventID"] for m in msgs]
        assert got == want
        assert all(m.key.decode() == accounts[json.loads(m.value)["eventID"]] for m in msgs)

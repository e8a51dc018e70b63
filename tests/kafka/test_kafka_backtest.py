"""Backtest equivalence (issue 11): the generated sample written as an S3 trail
tree gives the same alert IDs whether `trailhound scan` walks the tree (on
one or on four partitions) or a worker consumes the same records, produced in
delivery order, from a topic of four partitions (keyed by account with the
same murmur2 hash as scan --jobs)."""
import gzip
import json
import os
import subprocess
import sys

from conftest import (ASN, BIN, RANGES, SRC, assert_exactly_once, produce_file, read_alerts,
                      run_to_end)

LAYOUT = os.path.join(SRC, "tools/s3_layout.py")


def scan_ids(tree, jobs):
    p = subprocess.run([BIN, "scan", "--no-progress", "--quiet-rejects", "--asn-db", ASN,
                        "--aws-ranges", RANGES, "--jobs", str(jobs), "AWSLogs"],
                       capture_output=True, cwd=tree)
    assert p.returncode == 1, p.stderr.decode()[-2000:]
    return sorted(json.loads(l)["alert_id"] for l in p.stdout.decode().splitlines() if l.strip())


def test_worker_and_scan_agree_on_an_s3_tree(broker, topics, workers, sample, tmp_path):
    tree = tmp_path / "tree"
    subprocess.run([sys.executable, LAYOUT, str(sample.path), str(tree), "-q"], check=True)
    want = scan_ids(tree, 1)
    assert want and scan_ids(tree, 4) == want

    # the records in delivery order: by the timestamp in the file name, then name
    files = []
    for d, _, names in os.walk(tree):
        files += [os.path.join(d, n) for n in names if n.endswith(".json.gz")]
    files.sort(key=lambda f: (os.path.basename(f).split("_")[3], os.path.basename(f)))
    stream = tmp_path / "delivery-order.jsonl"
    with open(stream, "wb") as out:
        for f in files:
            with gzip.open(f) as g:
                for r in json.load(g)["Records"]:
                    out.write(json.dumps(r).encode() + b"\n")

    pipe = topics.names.pipeline("bt")
    names = topics.create(pipe)
    produce_file(broker, names.input, stream)
    run_to_end(workers, names.input, pipe, pipe.tid_prefix + ".W1", names.state_dir("W1"))
    assert_exactly_once(read_alerts(broker, pipe.output), want)

#!/usr/bin/env python3
"""Write a CloudTrail event stream (JSON lines, e.g. tools/gen_sample.py's
output) as the S3 tree a trail delivers:

    OUT/AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/
        <account>_CloudTrail_<region>_<YYYYMMDDTHHMMZ>_<id>.json.gz

one gzip {"Records":[...]} file per account, region and 5-minute delivery
window. The delivery window of an event is the latest window seen so far in
the stream (CloudTrail delivers a late event in a later file, never an
earlier one), so reading the files in delivery-timestamp order gives the
stream back, grouped by file. The timestamp in a name is the end of its
window. Deterministic: the same input gives byte-identical files (gzip
mtime 0, ids from a hash of account, region and window).

    tools/s3_layout.py EVENTS.jsonl OUTDIR [--digest] [-q]

--digest also writes a CloudTrail-Digest/ file per account, region and hour,
as a real trail does (trailhound must skip them).
"""

import argparse
import calendar
import gzip
import hashlib
import json
import os
import sys
import time

WINDOW = 300


def event_seconds(ev):
    return calendar.timegm(time.strptime(ev["eventTime"][:19], "%Y-%m-%dT%H:%M:%S"))


def account_of(ev):
    # the trail's account: where CloudTrail delivered the record
    return ev.get("recipientAccountId") or ev.get("userIdentity", {}).get("accountId") or "000000000000"


def file_path(out, account, region, window, kind="CloudTrail"):
    end = time.gmtime((window + 1) * WINDOW)
    stamp = time.strftime("%Y%m%dT%H%MZ", end)
    uid = hashlib.sha256(f"{account}|{region}|{window}|{kind}".encode()).hexdigest()[:16]
    d = os.path.join(out, "AWSLogs", account, kind, region, time.strftime("%Y/%m/%d", end))
    suffix = ".json.gz"
    return d, f"{account}_{kind}_{region}_{stamp}_{uid}{suffix}"


def write_gz(path, data):
    with open(path, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0, filename="") as gz:
            gz.write(data)


def flush(out, groups, stats):
    for (account, region, window), lines in sorted(groups.items()):
        d, name = file_path(out, account, region, window)
        os.makedirs(d, exist_ok=True)
        write_gz(os.path.join(d, name), b'{"Records":[' + b",".join(lines) + b"]}")
        stats["files"] += 1
    groups.clear()


def write_tree(lines, out, digest=False):
    """Write the tree; returns {"files":, "events":, "digests":}."""
    stats = {"files": 0, "events": 0, "digests": 0}
    groups = {}
    current = None
    digests = set()
    for line in lines:
        line = line.strip()
        if not line:
            continue
        ev = json.loads(line)
        w = event_seconds(ev) // WINDOW
        if current is None or w > current:
            if current is not None:
                flush(out, groups, stats)
            current = w
        key = (account_of(ev), ev.get("awsRegion", "us-east-1"), current)
        groups.setdefault(key, []).append(line.encode() if isinstance(line, str) else line)
        digests.add((key[0], key[1], current // 12))
        stats["events"] += 1
    flush(out, groups, stats)
    if digest:
        for account, region, hour in sorted(digests):
            d, name = file_path(out, account, region, hour * 12 + 11, "CloudTrail-Digest")
            os.makedirs(d, exist_ok=True)
            write_gz(os.path.join(d, name), json.dumps({"awsAccountId": account, "digestS3Bucket": "b",
                                                         "logFiles": []}).encode())
            stats["digests"] += 1
    return stats


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("events", help="JSON lines ('-' = stdin)")
    ap.add_argument("out", help="output directory (AWSLogs/ is created in it)")
    ap.add_argument("--digest", action="store_true", help="also write CloudTrail-Digest files")
    ap.add_argument("-q", "--quiet", action="store_true")
    a = ap.parse_args(argv)
    src = sys.stdin if a.events == "-" else open(a.events, encoding="utf-8")
    with src:
        st = write_tree(src, a.out, a.digest)
    if not a.quiet:
        print(f"s3_layout: {st['events']} events in {st['files']} files, {st['digests']} digest files",
              file=sys.stderr)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Declarative detection cases (Suricata-verify / jq.test style).

A case is `tests/cases/<group>/<name>.jsonl` (CloudTrail events, any framing
`trailhound scan` reads) plus `<name>.expected.jsonl`: one line per alert the
detector must raise, and nothing else may be raised. Each expected line holds
the fields to compare, e.g.

  {"variation": 1, "severity": "High", "event_id": "...", "upgrade_of_variation": 4}

`alert_name` is compared too when given; `upgrade_of_variation` checks that
the alert names the earlier alert of that variation on the same key. An empty
expected file means "no alert". Optional `<name>.args` holds extra `scan`
arguments, one per line; `@SHARED@` expands to the shared reference data
directory and `@NO_RANGES@` drops the default --aws-ranges.

Adding a case needs no C: write the two files. Every alert's alert_id is also
recomputed from its fields (the documented formula) to check determinism.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys


def alert_id(a):
    fn_or_session = a["function_name"] if a["variation"] <= 4 else a["session_name"]
    s = "trailhound/v1|%d|%s|%s|%s|%d|%s" % (
        a["variation"], a["account_id"], a["role_arn"], fn_or_session or "",
        a["asn"], a["access_key_id"])
    return hashlib.sha256(s.encode()).hexdigest()[:32]


def run_case(trailhound, shared, path):
    base = path[: -len(".jsonl")]
    args = []
    use_ranges = True
    if os.path.exists(base + ".args"):
        for line in open(base + ".args"):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line == "@NO_RANGES@":
                use_ranges = False
                continue
            args.append(line.replace("@SHARED@", shared))
    cmd = [trailhound, "scan", "--no-progress", "--asn-db", os.path.join(shared, "asn/asn.mmdb")]
    if use_ranges:
        cmd += ["--aws-ranges", os.path.join(shared, "aws-ip-ranges/ip-ranges.json")]
    cmd += args + [path]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode not in (0, 1):
        return ["scan exited %d: %s" % (p.returncode, p.stderr.strip())]
    got = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    want = [json.loads(l) for l in open(base + ".expected.jsonl") if l.strip()]
    errors = []
    if (p.returncode == 1) != bool(got):
        errors.append("exit code %d does not match %d alerts" % (p.returncode, len(got)))
    by_id = {a["alert_id"]: a for a in got}
    for a in got:
        if alert_id(a) != a["alert_id"]:
            errors.append("alert %s: id is not the documented hash of its fields" % a["alert_id"])
    unmatched = list(got)
    for w in want:
        match = None
        for a in unmatched:
            ok = all(a.get(k) == v for k, v in w.items() if k != "upgrade_of_variation")
            if ok and "upgrade_of_variation" in w:
                prior = by_id.get(a.get("upgrade_of") or "")
                ok = prior is not None and prior["variation"] == w["upgrade_of_variation"]
            if ok:
                match = a
                break
        if match is None:
            errors.append("missing alert %s" % json.dumps(w))
        else:
            unmatched.remove(match)
    for a in unmatched:
        errors.append("unexpected alert: variation %d %s on event %s (%s)" % (
            a["variation"], a["severity"], a["event_id"], "; ".join(a["evidence"])))
    return errors


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trailhound", required=True)
    ap.add_argument("--shared", required=True, help="the shared reference data directory")
    ap.add_argument("cases", nargs="+", help="case .jsonl files or directories")
    a = ap.parse_args()
    paths = []
    for c in a.cases:
        if os.path.isdir(c):
            for root, _, files in os.walk(c):
                paths += [os.path.join(root, f) for f in files
                          if f.endswith(".jsonl") and not f.endswith(".expected.jsonl")]
        else:
            paths.append(c)
    failed = 0
    for path in sorted(paths):
        errs = run_case(a.trailhound, a.shared, path)
        print("%s %s" % ("FAIL" if errs else "ok  ", path))
        for e in errs:
            print("     " + e)
        failed += bool(errs)
    print("%d passed, %d failed" % (len(paths) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

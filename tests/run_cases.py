#!/usr/bin/env python3
"""Declarative detection cases (Suricata-verify / jq.test style).

A case is `tests/cases/<group>/<name>.jsonl` (CloudTrail events, any framing
`trailhound scan` reads) plus `<name>.expected.jsonl`: one line per alert the
detector must raise, and nothing else may be raised. Each expected line holds
the fields to compare, e.g.

  {"variation": 1, "severity": "High", "event_id": "...", "upgrade_of_variation": 4}

`alert_name` is compared too when given; `upgrade_of_variation` checks that
the alert names the earlier alert of that variation on the same key. A field
expected as null matches null, "" or an absent field (a poller token names no
function). An empty expected file means "no alert". Optional files:

- `<name>.args`: extra `scan` arguments, one per line; `@SHARED@` expands to
  the shared reference data directory and `@NO_RANGES@` drops the default
  --aws-ranges.
- `<name>.counters.json`: a subset of the `scan --summary-json` object, e.g.
  {"detector": {"suppressed_activation": 1}}, compared exactly: every number
  given must equal the summary's; `rejected_by` and `by_variation` are compared
  whole (a reason or variation not listed must be 0). With a summary the
  runner also checks that alerts.total and alerts.by_variation agree with the
  alerts printed.
- `<name>.twin`: required for a no-alert case (fails without it). It names the
  case's positive twin (a .jsonl in the same directory): the same events with
  exactly ONE field of one event changed (same arguments), which must raise at
  least one alert and pass as a case itself. This proves the no-alert case is
  quiet for the reason its story gives, not because nothing could alert.

Adding a case needs no C: write the files (tests/cases/make_cases.py generates
them). Every alert's alert_id is also recomputed from its fields (the
documented formula) to check determinism.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
import variations  # noqa: E402  (tools/variations.py: the table from the binary)

MAPS = ("rejected_by", "by_variation")  # compared whole; absent = 0


def alert_ids(a, trailhound):
    """The ids the documented formula allows for alert `a`. A token that names no
    function (a Lambda poller's session) may use "" or its session name."""
    if variations.judges_token(a["variation"], trailhound):
        parts = [a.get("function_name") or ""]
        if not parts[0]:
            parts.append(a.get("session_name") or "")
    else:
        parts = [a.get("session_name") or ""]
    return {hashlib.sha256(("trailhound/v1|%d|%s|%s|%s|%d|%s" % (
        a["variation"], a["account_id"], a["role_arn"], p, a["asn"], a["access_key_id"])).encode())
        .hexdigest()[:32] for p in parts}


def field_matches(a, k, v):
    if v is None:
        return a.get(k) in (None, "")
    return a.get(k) == v


def read_args(base, shared):
    args, use_ranges = [], True
    if os.path.exists(base + ".args"):
        for line in open(base + ".args"):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line == "@NO_RANGES@":
                use_ranges = False
                continue
            args.append(line.replace("@SHARED@", shared))
    return args, use_ranges


def compare_counters(want, got, path, errors):
    """Every number in `want` equals the one at the same place in `got`."""
    for k, v in sorted(want.items()):
        p = path + "." + k if path else k
        g = got.get(k) if isinstance(got, dict) else None
        if k in MAPS:
            g = g if isinstance(g, dict) else {}
            for r in sorted(set(v) | set(g)):
                if v.get(r, 0) != g.get(r, 0):
                    errors.append("counter %s.%s: expected %d, summary has %s" % (p, r, v.get(r, 0), g.get(r, 0)))
        elif isinstance(v, dict):
            compare_counters(v, g if isinstance(g, dict) else {}, p, errors)
        elif g is None:
            errors.append("counter %s: not in the summary" % p)
        elif g != v:
            errors.append("counter %s: expected %d, summary has %d" % (p, v, g))


def leaf_diffs(a, b, path=""):
    """Paths of the leaves where JSON values a and b differ (a missing field counts)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            p = path + "." + k if path else k
            if k not in a or k not in b:
                out.append(p)
            else:
                out += leaf_diffs(a[k], b[k], p)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out += leaf_diffs(x, y, "%s[%d]" % (path, i))
        return out
    return [] if a == b and type(a) is type(b) else [path or "(value)"]


def one_field_apart(case_path, twin_path):
    """None when the twin's events equal the case's but for one field of one event."""
    def events(p):
        try:
            return [json.loads(l) for l in open(p) if l.strip()]
        except ValueError as e:
            raise ValueError("%s is not JSON lines (%s): a twin needs one event per line" % (p, e))
    a, b = events(case_path), events(twin_path)
    if len(a) != len(b):
        return "twin has %d events, the case %d" % (len(b), len(a))
    diffs = [("event %d" % (i + 1), d) for i, (x, y) in enumerate(zip(a, b)) for d in leaf_diffs(x, y)]
    if len(diffs) != 1:
        return "twin differs in %d fields, not one: %s" % (
            len(diffs), ", ".join("%s %s" % d for d in diffs[:6]) or "none")
    return None


def run_scan(trailhound, shared, path, base):
    """Runs scan on one case. Returns (process, summary or None, errors)."""
    args, use_ranges = read_args(base, shared)
    cmd = [trailhound, "scan", "--no-progress", "--asn-db", os.path.join(shared, "asn/asn.mmdb")]
    if use_ranges:
        cmd += ["--aws-ranges", os.path.join(shared, "aws-ip-ranges/ip-ranges.json")]
    want_counters = os.path.exists(base + ".counters.json")
    with tempfile.TemporaryDirectory() as tmp:
        summary_path = os.path.join(tmp, "summary.json")
        p = subprocess.run(cmd + ["--summary-json", summary_path] * want_counters + args + [path],
                           capture_output=True, text=True)
        if want_counters and p.returncode == 2 and "summary-json" in p.stderr:
            # still check the alerts, so one run tells everything that is wrong
            err = ["scan does not support --summary-json (needed for %s.counters.json): %s"
                   % (os.path.basename(base), p.stderr.strip().splitlines()[0])]
            p = subprocess.run(cmd + args + [path], capture_output=True, text=True)
            if p.returncode not in (0, 1):
                err.append("scan exited %d: %s" % (p.returncode, p.stderr.strip()))
            return p, None, err
        if p.returncode not in (0, 1):
            return p, None, ["scan exited %d: %s" % (p.returncode, p.stderr.strip())]
        if not want_counters:
            return p, None, []
        try:
            with open(summary_path) as f:
                return p, json.load(f), []
        except (OSError, ValueError) as e:
            return p, None, ["scan does not support --summary-json (no summary written: %s)" % e]


def run_case(trailhound, shared, path, check_twin=True):
    base = path[: -len(".jsonl")]
    p, summary, errors = run_scan(trailhound, shared, path, base)
    if p.returncode not in (0, 1):
        return errors
    got = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    want = [json.loads(l) for l in open(base + ".expected.jsonl") if l.strip()]
    if (p.returncode == 1) != bool(got):
        errors.append("exit code %d does not match %d alerts" % (p.returncode, len(got)))
    by_id = {a["alert_id"]: a for a in got}
    for a in got:
        if a["alert_id"] not in alert_ids(a, trailhound):
            errors.append("alert %s: id is not the documented hash of its fields" % a["alert_id"])
    unmatched = list(got)
    for w in want:
        match = None
        for a in unmatched:
            ok = all(field_matches(a, k, v) for k, v in w.items() if k != "upgrade_of_variation")
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
            a["variation"], a["severity"], a["event_id"], "; ".join(a.get("evidence") or [])))

    if summary is not None:
        counters = json.load(open(base + ".counters.json"))
        compare_counters(counters, summary, "", errors)
        # the summary must describe the alerts printed
        by_var = {}
        for a in got:
            by_var[str(a["variation"])] = by_var.get(str(a["variation"]), 0) + 1
        compare_counters({"alerts": {"total": len(got), "by_variation": by_var}}, summary,
                         "", errors)

    if not want and check_twin:
        errors += check_positive_twin(trailhound, shared, path, base)
    return errors


def check_positive_twin(trailhound, shared, path, base):
    """A no-alert case must name a twin one field away that alerts."""
    if not os.path.exists(base + ".twin"):
        return ["no-alert case without a positive twin (%s.twin): nothing shows it could alert"
                % os.path.basename(base)]
    name = open(base + ".twin").read().strip()
    twin = os.path.join(os.path.dirname(path), name)
    tbase = twin[: -len(".jsonl")]
    if not name.endswith(".jsonl") or not os.path.exists(twin):
        return ["positive twin %s does not exist" % name]
    errors = []
    twin_args = read_args(tbase, shared)
    if twin_args != read_args(base, shared):
        errors.append("positive twin %s runs with other scan arguments" % name)
    try:
        diff = one_field_apart(path, twin)
    except ValueError as e:
        diff = str(e)
    if diff:
        errors.append("positive twin %s: %s" % (name, diff))
    if not [l for l in open(tbase + ".expected.jsonl") if l.strip()]:
        errors.append("positive twin %s expects no alert" % name)
    terr = run_case(trailhound, shared, twin, check_twin=False)
    errors += ["positive twin %s: %s" % (name, e) for e in terr]
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

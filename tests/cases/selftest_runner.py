#!/usr/bin/env python3
"""The case runner can fail: broken copies of real cases must be reported.

Run by CTest (tests/cases.cmake, label `cases`) as

    selftest_runner.py --trailhound build/trailhound --shared /work/shared/data

Each check copies a generated case (and its twin) into a temporary directory,
breaks ONE thing the runner promises to check, and asserts that run_cases.py
fails with the matching message. The unbroken copy must pass, so a failure
below is the break's doing.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER = os.path.join(HERE, "..", "run_cases.py")


def copy_case(group, name, dst):
    for f in os.listdir(os.path.join(HERE, group)):
        if f == name + ".jsonl" or f.startswith(name + ".") or f.startswith(name + "_twin."):
            shutil.copy(os.path.join(HERE, group, f), dst)
    return os.path.join(dst, name + ".jsonl")


def run(a, path):
    p = subprocess.run([sys.executable, RUNNER, "--trailhound", a.trailhound, "--shared", a.shared, path],
                       capture_output=True, text=True)
    return p.returncode, p.stdout


def summary_supported(a):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "s.json")
        p = subprocess.run([a.trailhound, "scan", "--no-progress", "--summary-json", out, os.devnull],
                           capture_output=True, text=True)
        return p.returncode == 0 and os.path.exists(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trailhound", required=True)
    ap.add_argument("--shared", required=True)
    a = ap.parse_args()
    failures = []

    def check(what, group, name, breaker, message):
        with tempfile.TemporaryDirectory() as tmp:
            path = copy_case(group, name, tmp)
            base = path[: -len(".jsonl")]
            if breaker is not None:
                breaker(base)
            rc, out = run(a, path)
            ok = (rc == 0) if message is None else (rc != 0 and message in out)
            print("%s %s" % ("ok  " if ok else "FAIL", what))
            if not ok:
                failures.append(what)
                print("     runner exit %d, output:\n%s" % (rc, out))

    def edit_events(base_path, fn):
        evs = [json.loads(l) for l in open(base_path)]
        fn(evs)
        with open(base_path, "w") as f:
            f.write("".join(json.dumps(e) + "\n" for e in evs))

    # a no-alert case whose verdict does not depend on detector v2 or the summary
    g, n = "network", "no_ranges_aws_other_region_with_inside"
    strip_counters = lambda b: os.remove(b + ".counters.json")

    def both(*fns):
        def f(b):
            for fn in fns:
                fn(b)
        return f

    check("intact no-alert case with its twin passes", g, n, strip_counters, None)
    check("no-alert case without a twin fails", g, n,
          both(strip_counters, lambda b: os.remove(b + ".twin")), "without a positive twin")
    check("twin naming a missing file fails", g, n,
          both(strip_counters, lambda b: open(b + ".twin", "w").write("nothere.jsonl\n")), "does not exist")

    def two_fields(b):
        edit_events(b + "_twin.jsonl", lambda evs: evs[-1].__setitem__("userAgent", "curl/8.5.0"))
    check("twin differing in two fields fails", g, n, both(strip_counters, two_fields),
          "differs in 2 fields")

    def twin_quiet(b):
        edit_events(b + "_twin.jsonl", lambda evs: evs[-1].__setitem__("sourceIPAddress", "54.75.163.40"))
        open(b + "_twin.expected.jsonl", "w").close()
    check("twin that raises no alert fails", g, n, both(strip_counters, twin_quiet),
          "expects no alert")

    def twin_wrong_expectation(b):
        lines = [json.loads(l) for l in open(b + "_twin.expected.jsonl")]
        lines[0]["variation"] = 4
        with open(b + "_twin.expected.jsonl", "w") as f:
            f.write("".join(json.dumps(w) + "\n" for w in lines))
    check("twin whose alert differs from its expectation fails", g, n,
          both(strip_counters, twin_wrong_expectation), "positive twin")

    # counters: compared exactly when scan can write them, else a clear message
    g, n = "periods", "activation_day13"
    if summary_supported(a):
        check("intact counters pass", g, n, None, None)

        def wrong_counter(b):
            with open(b + ".counters.json", "w") as f:
                json.dump({"detector": {"suppressed_activation": 2}}, f)
        check("a wrong counter fails", g, n, wrong_counter, "counter detector.suppressed_activation")

        def unknown_counter(b):
            with open(b + ".counters.json", "w") as f:
                json.dump({"detector": {"no_such_counter": 0}}, f)
        check("a counter the summary lacks fails", g, n, unknown_counter, "not in the summary")

        def extra_reason(b):
            with open(b + ".counters.json", "w") as f:
                json.dump({"records": {"rejected_by": {"bad_json": 1}}}, f)
        check("a reject reason that is 0 in the summary fails", g, n, extra_reason,
              "counter records.rejected_by.bad_json")
    else:
        check("counters without --summary-json fail clearly", g, n, None,
              "scan does not support --summary-json")

    print("%d checks failed" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

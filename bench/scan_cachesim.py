#!/usr/bin/env python3
"""Reads callgrind_annotate's output for a `trailhound scan --jobs 1` run
under the cache simulator (bench/scan_cachesim.sh) and prints, per event,
the instructions and simulated L1d/L2 misses of each phase, next to the
phases' native CPU time. A benchmark's report; it asserts nothing.

    scan_cachesim.py --events N --native FILE incl.txt self.txt

incl.txt: `callgrind_annotate --inclusive=yes --show=Ir,D1mr,D1mw,DLmr,DLmw`;
self.txt: the same with --inclusive=no --sort=D1mr. FILE holds one line per
native round: "<CPU s of --parse-only> <CPU s of scan --jobs 1>".

The phases, from inclusive costs: read and framing = th_input_run less
th_parser_feed; parse = th_parser_feed less part_event (the parser hands
each event to part_event, which runs the detector and the periodic state
commit); detection = part_event.
"""
import argparse
import re
import statistics
import sys

COLS = ("Ir", "D1mr", "D1mw", "DLmr", "DLmw")


def rows(path):
    """Yields (function, {col: count}) for each function line."""
    for line in open(path, encoding="utf-8", errors="replace"):
        toks = re.sub(r"\(\s*[\d.]+%\)", " ", line).split()
        vals, i = [], 0
        while i < len(toks) and len(vals) < len(COLS):
            t = toks[i]
            if t == ".":
                vals.append(0)
            elif re.fullmatch(r"[\d,]+", t):
                vals.append(int(t.replace(",", "")))
            else:
                break
            i += 1
        # function lines only: not calls ("=>") nor annotated source
        if len(vals) != len(COLS) or i >= len(toks) or toks[i] == "=>":
            continue
        name = " ".join(toks[i:])
        if ":" not in name:
            continue  # totals and annotation summaries, not a function
        yield name, dict(zip(COLS, vals))


def short(name):
    """'/path/src/state.c:th_state_get [/bin]' -> 'th_state_get (state.c)'."""
    name = re.sub(r"\s*\[[^\]]*\]$", "", name)
    where, _, fn = name.rpartition(":")
    fn = re.sub(r"\(.*", "", fn).replace("(anonymous namespace)::", "")
    base = where.rsplit("/", 1)[-1]
    return f"{fn} ({base})" if base and base != "???" else fn


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, required=True)
    ap.add_argument("--native", required=True)
    ap.add_argument("incl")
    ap.add_argument("self")
    a = ap.parse_args()

    incl = {}
    for name, v in rows(a.incl):
        fn = re.sub(r"\s*\[[^\]]*\]$", "", name).rpartition(":")[2]
        incl.setdefault(fn, v)  # the first (largest) line of each name
    need = ("th_input_run", "th_parser_feed", "part_event")
    missing = [f for f in need if f not in incl]
    if missing:
        sys.exit(f"scan_cachesim.py: no inclusive cost for {', '.join(missing)}")

    def minus(x, y):
        return {c: x[c] - y[c] for c in COLS}

    phases = [
        ("read and framing", minus(incl["th_input_run"], incl["th_parser_feed"])),
        ("parse", minus(incl["th_parser_feed"], incl["part_event"])),
        ("detection (part_event)", incl["part_event"]),
    ]
    native = [tuple(map(float, l.split())) for l in open(a.native) if l.strip()]
    parse_cpu = statistics.median(p for p, _ in native)
    scan_cpu = statistics.median(s for _, s in native)
    ratio = statistics.median(p / s for p, s in native)
    n = a.events

    print(f"{'per event':<24} {'instructions':>12} {'L1d misses':>11} {'L2 misses':>10}")
    for label, v in phases:
        print(f"{label:<24} {v['Ir'] / n:12.0f} {(v['D1mr'] + v['D1mw']) / n:11.2f} "
              f"{(v['DLmr'] + v['DLmw']) / n:10.2f}")
    parse, det = phases[1][1], phases[2][1]
    print()
    print(f"detection / parse, instructions: {det['Ir'] / parse['Ir']:.2f}; "
          f"L1d misses: {(det['D1mr'] + det['D1mw']) / max(1, parse['D1mr'] + parse['D1mw']):.0f}x")
    print(f"native CPU, 5 alternating rounds (median): --parse-only {parse_cpu:.3f} s, "
          f"scan --jobs 1 {scan_cpu:.3f} s; ratio {ratio:.2f} "
          f"(what detection and its commits add: {scan_cpu - parse_cpu:.3f} s)")
    print()
    print("functions with the most simulated L1d read misses (their own code, whole run):")
    print(f"  {'function':<52} {'L1d rd/event':>12} {'L2 rd/event':>11} {'instr/event':>11}")
    shown = 0
    for name, v in rows(a.self):
        if v["D1mr"] == 0:
            continue
        print(f"  {short(name)[:52]:<52} {v['D1mr'] / n:12.2f} {v['DLmr'] / n:11.2f} "
              f"{v['Ir'] / n:11.0f}")
        shown += 1
        if shown == 15:
            break


if __name__ == "__main__":
    main()

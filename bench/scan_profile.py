#!/usr/bin/env python3
"""Folds `perf script` output of a `trailhound scan --jobs 1` run into where
its CPU time went: reading, parsing, and each step of detection (the
detector's own functions, one level below th_detector_process, and the
state commit). A benchmark's report; it asserts nothing.

    perf script -i perf.data | bench/scan_profile.py --cpu-seconds S

Each sample is charged to the first of these found on its stack: a detector
step (the direct callee of th_detector_process, or of part_commit, the
state commit), any detector frame (a stack cut short by the unwinder), the
parser, reading and framing, setup, teardown.
"""
import argparse
import collections
import re
import sys

FRAME = re.compile(r"^\s+[0-9a-f]+\s+(.+?)(\+0x[0-9a-f]+)?( \(inlined\))?( \(.*\))?$")


def stacks(lines):
    """Yields each sample's stack as a list of function names, leaf first."""
    stack = []
    for line in lines:
        if not line.strip():
            if stack:
                yield stack
            stack = []
            continue
        if not line[0].isspace():
            continue  # the sample's header line
        m = FRAME.match(line.rstrip("\n"))
        if m:
            stack.append(m.group(1))
    if stack:
        yield stack


def phase(stack):
    if "th_detector_process" in stack:
        i = stack.index("th_detector_process")
        return "detect: " + (stack[i - 1] if i > 0 else "th_detector_process (own code)")
    if "part_commit" in stack:
        i = stack.index("part_commit")
        return "detect: commit (" + (stack[i - 1] if i > 0 else "part_commit") + ")"
    # a stack the unwinder cut short above the detector: its outermost
    # detector frame names the step
    det = [f for f in stack if f == "process_call" or f.startswith("th_detect")]
    if det:
        return "detect: " + det[-1]
    if "th_parser_feed" in stack:
        return "parse"
    if any(f in ("read", "__GI___libc_read", "ksys_read", "read_one", "frame_one") for f in stack):
        return "read and framing"
    if any(f in ("th_enrich_new", "th_config_open_enrich") for f in stack):
        return "setup: reference data"
    if "th_state_close" in stack:
        return "teardown: state"
    return "other"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpu-seconds", type=float, default=0.0,
                    help="the run's CPU time, to turn shares into seconds")
    ap.add_argument("--min-share", type=float, default=0.5, help="hide rows under this %%")
    a = ap.parse_args()
    count = collections.Counter(phase(s) for s in stacks(sys.stdin))
    total = sum(count.values())
    if not total:
        sys.exit("scan_profile: no samples with call stacks in the input")
    detect = sum(v for k, v in count.items() if k.startswith("detect"))
    print(f"{total} samples; detection {100 * detect / total:.1f}% of the run"
          + (f" ({a.cpu_seconds * detect / total:.2f} s of {a.cpu_seconds:.2f} s CPU)"
             if a.cpu_seconds else ""))
    print(f"{'where':60} {'share':>7} {'CPU s':>7}")
    for k, v in sorted(count.items(), key=lambda kv: -kv[1]):
        share = 100 * v / total
        if share < a.min_share:
            continue
        secs = f"{a.cpu_seconds * v / total:7.2f}" if a.cpu_seconds else "      -"
        print(f"{k[:60]:60} {share:6.1f}% {secs}")


if __name__ == "__main__":
    main()

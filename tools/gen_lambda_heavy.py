#!/usr/bin/env python3
"""A Lambda-heavy benchmark corpus: about half of all events are calls made
with Lambda-issued credentials (from inside the function's network and
remote), the other half other identities' traffic.

gen_sample.py's own stream is ~85-90 % Lambda-credential calls (runtime
calls of many execution environments, 30 accounts over 75 days here, with its
attack cases and remote uses). This tool runs it and, after each such call,
adds copies of recent non-Lambda events (IAM users from the office and home
networks, AWS services acting on their own) at the same eventTime with a fresh
eventID, until the non-Lambda events match the Lambda-credential ones. The
copies exercise the detector's other paths (account egress baseline, service
exclusion) without teaching it anything that changes a Lambda verdict: they
never include sts:AssumeRole or Lambda function deployments.

Same --seed and options give byte-identical output. A benchmark corpus, not a
test oracle: it has no expected-alerts file.

    tools/gen_lambda_heavy.py --events 1000000 --out FILE [--seed 11]
"""

import argparse
import os
import random
import re
import subprocess
import sys
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
TIME_RE = re.compile(rb'"eventTime":"[^"]*"')
ID_RE = re.compile(rb'"eventID":"[^"]*"')
LAMBDA_SHARE_OF_GEN = 0.87  # measured on gen_sample.py --accounts 30 --days 75


def is_lambda_call(line):
    return b'"type":"AssumedRole"' in line and b'"accessKeyId":"ASIA' in line


def is_filler(line):
    if b'"type":"IAMUser"' not in line and b'"type":"AWSService"' not in line:
        return False
    if b'"eventName":"AssumeRole"' in line:
        return False  # issuance / assumption: would teach keys
    if b'"eventSource":"lambda.amazonaws.com"' in line:
        return False  # deployments: would teach functions
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1000000, help="about this many events (default 1000000)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    rng = random.Random(args.seed)
    # Lambda calls make ~half the output; gen_sample gives ~87 % of them.
    gen_events = int(args.events / 2 / LAMBDA_SHARE_OF_GEN)
    cmd = [sys.executable, os.path.join(HERE, "gen_sample.py"), "--seed", str(args.seed),
           "--accounts", "30", "--days", "75", "--target-events", str(gen_events), "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, bufsize=1 << 20)
    recent = []  # last non-Lambda events seen, as templates
    n_lambda = n_other = 0
    with open(args.out, "wb") as out:
        for line in proc.stdout:
            out.write(line)
            if is_lambda_call(line):
                n_lambda += 1
                m = TIME_RE.search(line)
                while recent and m and n_other < n_lambda:
                    tpl = recent[rng.randrange(len(recent))]
                    eid = str(uuid.UUID(int=rng.getrandbits(128), version=4)).encode()
                    copy = TIME_RE.sub(lambda _m: m.group(0), tpl, count=1)
                    copy = ID_RE.sub(b'"eventID":"' + eid + b'"', copy, count=1)
                    out.write(copy)
                    n_other += 1
            else:
                n_other += 1
                if is_filler(line):
                    if len(recent) < 256:
                        recent.append(line)
                    else:
                        recent[rng.randrange(256)] = line
    if proc.wait() != 0:
        sys.exit("gen_lambda_heavy: gen_sample.py failed")
    print(f"gen_lambda_heavy: {n_lambda + n_other} events, {n_lambda} Lambda-credential calls "
          f"({100.0 * n_lambda / max(1, n_lambda + n_other):.1f} %)", file=sys.stderr)


if __name__ == "__main__":
    main()

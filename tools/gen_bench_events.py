#!/usr/bin/env python3
"""Compact CloudTrail events for the stream benchmarks (bench/latency.py,
bench/state_keys.sh): Lambda issuing a key to a function (sts:AssumeRole by
lambda.amazonaws.com), the function's runtime calling AWS with it from an EC2
address of its region (inside), and the same key used from a DigitalOcean
address (remote: variation 1 once the key was also seen inside).

The shapes are gen_sample.py's, cut to the fields the detector reads, so a
million of them stay small on the broker. The addresses are gen_sample.py's
checked blocks: 52.4.0.0/14 is EC2 us-east-1, 159.203.45.0/24 DigitalOcean.

    tools/gen_bench_events.py keys --keys 1000000 --out FILE [--accounts 40]

writes one inside runtime call per distinct access key (each key a live
Lambda token in the state store), all within one hour of event time, after one
issuance per function so every function's region is known.
"""

import argparse
import sys
import time

REGION = "us-east-1"
UA_INSIDE = "Boto3/1.34.145 md/Botocore#1.34.145 lang/python#3.11.10 exec-env/AWS_Lambda_python3.11"
UA_REMOTE = "Boto3/1.34.69 md/Botocore#1.34.69 lang/python#3.12.3"


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def expiration(t):
    g = time.gmtime(t)
    return f'{time.strftime("%b", g)} {g.tm_mday}, {g.tm_year}, {(g.tm_hour + 11) % 12 + 1}:' \
           f'{g.tm_min:02d}:{g.tm_sec:02d} {"AM" if g.tm_hour < 12 else "PM"}'


def account(a):
    return f"{100000000000 + a * 7919:012d}"


def eid(n):
    return f"00000000-0000-4000-8000-{n:012x}"


def inside_ip(n):
    return f"52.{4 + (n >> 16) % 4}.{(n >> 8) & 255}.{1 + n % 254}"


def remote_ip(n):
    return f"159.203.45.{1 + n % 254}"


def issuance(acct, role, fn, key, t, n):
    arn = f"arn:aws:iam::{acct}:role/{role}"
    return (f'{{"eventVersion":"1.08","userIdentity":{{"type":"AWSService","invokedBy":"lambda.amazonaws.com"}},'
            f'"eventTime":"{iso(t)}","eventSource":"sts.amazonaws.com","eventName":"AssumeRole",'
            f'"awsRegion":"{REGION}","sourceIPAddress":"lambda.amazonaws.com","userAgent":"lambda.amazonaws.com",'
            f'"requestParameters":{{"roleArn":"{arn}","roleSessionName":"{fn}"}},'
            f'"responseElements":{{"credentials":{{"accessKeyId":"{key}","expiration":"{expiration(t + 43200)}"}}}},'
            f'"eventID":"{eid(n)}","readOnly":true,"eventType":"AwsApiCall","managementEvent":true,'
            f'"recipientAccountId":"{acct}","eventCategory":"Management"}}')


def call(acct, role, fn, key, created, t, n, ip, ua):
    arn = f"arn:aws:iam::{acct}:role/{role}"
    return (f'{{"eventVersion":"1.09","userIdentity":{{"type":"AssumedRole","principalId":"AROABENCH:{fn}",'
            f'"arn":"arn:aws:sts::{acct}:assumed-role/{role}/{fn}","accountId":"{acct}","accessKeyId":"{key}",'
            f'"sessionContext":{{"sessionIssuer":{{"type":"Role","principalId":"AROABENCH","arn":"{arn}",'
            f'"accountId":"{acct}","userName":"{role}"}},"attributes":{{"creationDate":"{iso(created)}",'
            f'"mfaAuthenticated":"false"}}}}}},"eventTime":"{iso(t)}","eventSource":"dynamodb.amazonaws.com",'
            f'"eventName":"Query","awsRegion":"{REGION}","sourceIPAddress":"{ip}","userAgent":"{ua}",'
            f'"requestParameters":null,"responseElements":null,"eventID":"{eid(n)}","readOnly":true,'
            f'"eventType":"AwsApiCall","managementEvent":false,"recipientAccountId":"{acct}","eventCategory":"Data"}}')


def inside(acct, role, fn, key, created, t, n):
    return call(acct, role, fn, key, created, t, n, inside_ip(n), UA_INSIDE)


def remote(acct, role, fn, key, created, t, n):
    return call(acct, role, fn, key, created, t, n, remote_ip(n), UA_REMOTE)


B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def access_key(k):
    """The k-th key as AWS writes them: ASIA and 16 base32 characters that
    look random. An odd multiplier mod 2^80 is a bijection, so keys stay
    distinct; random-looking keys matter because the store's B-tree fills its
    pages to ~70% on scattered inserts but only ~50% on keys ascending in each
    account's range (every split leaves a half page that never grows)."""
    x = ((k + 1) * 0x9E3779B97F4A7C15F39D) % (1 << 80)
    return "ASIA" + "".join(B32[(x >> (5 * i)) & 31] for i in range(16))


def cmd_keys(args):
    """One inside call per key; keys spread over accounts and functions."""
    base = int(time.time()) // 3600 * 3600 - 2 * 86400  # two days back: well inside max_future_skew
    fns = args.functions
    n = 0
    with open(args.out, "w") as out:
        for f in range(fns):
            a = account(f % args.accounts)
            out.write(issuance(a, f"bench-role-{f}", f"bench-fn-{f}", f"ASIAISSUE{f:011d}", base, n) + "\n")
            n += 1
        for k in range(args.keys):
            f = k % fns
            t = base + (k * 3600) // args.keys  # one hour of event time: every key stays live
            out.write(inside(account(f % args.accounts), f"bench-role-{f}", f"bench-fn-{f}",
                             access_key(k), base, t, n) + "\n")
            n += 1
    print(f"gen_bench_events: {n} events, {args.keys} distinct keys, {fns} functions, "
          f"{args.accounts} accounts", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("keys", help="N distinct Lambda keys, each seen once inside")
    k.add_argument("--keys", type=int, default=1000000)
    k.add_argument("--accounts", type=int, default=40)
    k.add_argument("--functions", type=int, default=400)
    k.add_argument("--out", required=True)
    args = ap.parse_args()
    if args.cmd == "keys":
        cmd_keys(args)


if __name__ == "__main__":
    main()

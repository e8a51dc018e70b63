#!/usr/bin/env python3
"""Seed inputs for the fuzz targets (see tests/fuzz.cmake).

  make_seeds.py --repo
      (Re)writes the committed seeds in tests/fuzz/corpus/<target>/ from the
      repository's own material: the detection cases' stories
      (tests/cases/**/*.jsonl) for fuzz_pipeline, and small hand-built inputs
      for config, awsranges, records and avro. Files are named seed-*, so a
      corpus merge can add to them without clobbering.

  make_seeds.py --stress --out OUT
      Writes detection-case stories with fields at and past the lengths AWS
      allows into OUT/pipeline/stress-* (campaign time: several of them
      crash until the defects in FINDINGS.md are fixed).

  make_seeds.py --shared DIR --out OUT
      Writes seeds derived from the shared reference data into OUT/<target>/,
      at campaign time only: those files are never committed. Stratus
      detonation logs become JSON-lines stories of at most 12 events,
      ip-ranges.json is cut into small valid files, the Lambda shape
      examples become one-event stories.
"""
import argparse
import glob
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(path, "wb") as f:
        f.write(data)


# ---- records.c's encoding (codec.c: LEB128 varints, zigzag i64, strings) ----

def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def i64(v):
    return varint(((v << 1) ^ (v >> 63)) & 0xFFFFFFFFFFFFFFFF)


def s(text):
    b = text.encode()
    return varint(len(b)) + b


def call(ev="0f1e2d3c", name="GetCallerIdentity", ua="Boto3/1.34.0 md/Botocore#1.34.0"):
    return (s(ev) + s(name) + s("sts.amazonaws.com") + s("us-east-1") + s("159.203.45.77") +
            s(ua) + s("") + s("") + s("orders-api") + s("cloudtrail") + i64(1720614332000) +
            i64(1720610000000) + i64(42) + i64(0) + varint(14061) + s("DigitalOcean, LLC") +
            s("") + bytes([3]))


def record_seeds():
    role = "arn:aws:iam::111122223333:role/service-role/orders-api-role"
    token = (bytes([1, 1]) + s(role) + s("orders-api") + s("orders-api") + s("") +
             i64(1720610000000) + i64(1720653200000) + i64(1720610001000) + i64(1720614332000) +
             varint(3) + varint(1) + varint(2) + bytes([2]) + s("3.91.1.2") + s("159.203.45.77") +
             bytes([2]) + s("sts:GetCallerIdentity") + varint(2) + i64(1720614332000) +
             s("s3:ListBuckets") + varint(1) + i64(1720614000000) +
             bytes([1, 2, 0]) + s("0123456789abcdef0123456789abcdef") + call())
    rolerec = (bytes([1, 1]) + i64(1720610000000) + bytes([2]) + s("orders-api") + bytes([1]) +
               s("us-east-1") + s("billing") + bytes([0]) + bytes([1]) + s("us-east-1"))
    sighting = bytes([1]) + s("ASIAQ3ENV10000000000") + i64(1720614332000) + i64(0) + i64(1720000000000)
    held = (bytes([1]) + i64(1720653200000) + s(role) + bytes([2]) + call() +
            call("aa", "ListBuckets", "aws-cli/2.15.0") + bytes([1]) + varint(14061) +
            i64(1720614332000))
    dedup = bytes([1]) + i64(1720614332000) + varint(3) + s("0123456789abcdef0123456789abcdef")
    seeds = {
        "token": bytes([0]) + token,
        "role": bytes([1]) + rolerec,
        "sighting": bytes([2]) + sighting,
        "held": bytes([3]) + held,
        "dedup": bytes([4]) + dedup,
        "call": bytes([5]) + call(),
        "key-short": bytes([6, 60]) + b"111122223333\nASIAQ3ENV10000000000",
        "key-512": bytes([6, 0xFF]) + b"111122223333\n" + role.encode(),
    }
    for name, data in seeds.items():
        write(os.path.join(HERE, "corpus", "records", "seed-" + name), data)


# ---- avro: 38 header bytes, then NUL-separated strings (fuzz_avro.c) ----

def avro_seeds():
    def head(variation, sev, nulls, counts):
        return (bytes([variation, sev]) + struct.pack(">q", 1720614332000) +
                struct.pack(">I", (1 << 31) + 1000) + struct.pack(">I", 1000) +
                struct.pack(">I", 2000) + struct.pack(">H", 3) + struct.pack(">H", 1) +
                bytes([2]) + struct.pack(">I", 14061) + struct.pack(">H", 1) +
                nulls.to_bytes(3, "big") + struct.pack(">H", counts))
    strs = ["0123456789abcdef0123456789abcdef", "Remote command line usage of AWS Lambda's token",
            "desc", "TA0006", "111122223333", "arn:aws:iam::111122223333:role/r", "ASIAQ3ENV10000000000",
            "b2abaa13", "ListBuckets", "s3.amazonaws.com", "159.203.45.77", "public",
            "issued-by-lambda", "cloudtrail", "us-east-1", "orders-api", "orders-api",
            "DigitalOcean, LLC", "", "aws-cli/2.15.0 Python/3.11", "vpce-1", "111122223333",
            "", "evidence one", "evidence two", "s3:ListBuckets", "sts:GetCallerIdentity"]
    write(os.path.join(HERE, "corpus", "avro", "seed-v2"),
          head(2, 3, 0, 2 + 16 * 2 + 512 * 3) + b"\0".join(x.encode() for x in strs))
    write(os.path.join(HERE, "corpus", "avro", "seed-nulls"),
          head(5, 1, 0x1FF, 0) + b"\0".join(x.encode() for x in strs[:12]))
    multi = list(strs)
    multi[19] = "ua-\u00e9\u4e2d\U0001F600" * 40
    multi[17] = "Soci\u00e9t\u00e9 G\u00e9n\u00e9rale"
    write(os.path.join(HERE, "corpus", "avro", "seed-multibyte"),
          head(1, 3, 0, 8 + 16 * 16 + 512 * 8) + b"\0".join(x.encode() for x in multi))
    cut = list(strs)
    write(os.path.join(HERE, "corpus", "avro", "seed-cut-utf8"),
          head(3, 2, 0, 1) + b"\0".join(x.encode() for x in cut[:19]) + b"\0" +
          ("x" * 510 + "\u00e9").encode()[:511])
    write(os.path.join(HERE, "corpus", "avro", "seed-bad-severity"),
          head(4, 4, 0, 0) + b"\0".join(x.encode() for x in strs[:23]) + b"Critical")


# ---- config ----

def config_seeds():
    d = os.path.join(HERE, "corpus", "config")
    write(os.path.join(d, "seed-full.conf"), open(os.path.join(REPO, "deploy", "trailhound.conf"), "rb").read()
          if os.path.exists(os.path.join(REPO, "deploy", "trailhound.conf")) else "")
    write(os.path.join(d, "seed-lists.conf"),
          "# lists\ncli_user_agents = \"aws-cli/,^Boto3/\"\ntrusted_asns = AS14061, 16509\n"
          "input_topics = cloudtrail, cloudtrail-eu\nkafka.security.protocol = plaintext\n"
          "kafka.consumer.group.instance.id = \"worker-1\"\n[section]\n")
    write(os.path.join(d, "seed-set.txt"),
          "record_max=1024\nbatch_size=-1\nactivation_days=14\nstate_dir=\ninput_topics=\n"
          "amazon_asns=16509,14618\nlambda_user_agents=^awslambda\n")
    write(os.path.join(d, "seed-long-comment.conf"), "#" + "x" * 4100 + "record_max = 1\n")


# ---- ip-ranges.json ----

def awsranges_seeds():
    d = os.path.join(HERE, "corpus", "awsranges")
    doc = {"syncToken": "1", "createDate": "2024-07-10-12-00-00",
           "prefixes": [{"ip_prefix": "3.4.12.4/32", "region": "eu-west-1", "service": "AMAZON",
                         "network_border_group": "eu-west-1"},
                        {"ip_prefix": "3.4.12.0/24", "region": "eu-west-1", "service": "EC2",
                         "network_border_group": "eu-west-1"},
                        {"ip_prefix": "52.94.0.0/16", "region": "us-east-1", "service": "AMAZON",
                         "network_border_group": "us-east-1"}],
           "ipv6_prefixes": [{"ipv6_prefix": "2406:daba:f000::/40", "region": "ap-southeast-4",
                              "service": "AMAZON", "network_border_group": "ap-southeast-4"},
                             {"ipv6_prefix": "2600:1f18::/33", "region": "us-east-1",
                              "service": "EC2", "network_border_group": "us-east-1"}]}
    write(os.path.join(d, "seed-small.json"), json.dumps(doc, indent=1))
    doc2 = dict(doc, prefixes=doc["prefixes"] + [{"ip_prefix": "0.0.0.0/0", "region": "GLOBAL",
                                                  "service": "AMAZON"}])
    write(os.path.join(d, "seed-everything.json"), json.dumps(doc2))
    write(os.path.join(d, "seed-v4-only.json"), json.dumps({"prefixes": doc["prefixes"]}))


# ---- pipeline: the detection cases' stories ----

def pipeline_seeds():
    d = os.path.join(HERE, "corpus", "pipeline")
    for path in sorted(glob.glob(os.path.join(REPO, "tests", "cases", "**", "*.jsonl"), recursive=True)):
        if path.endswith(".expected.jsonl"):
            continue
        rel = os.path.relpath(path, os.path.join(REPO, "tests", "cases"))
        name = "seed-case-" + rel.replace(os.sep, "-")
        write(os.path.join(d, name), open(path, "rb").read())


def stress_seeds(out):
    """Detection-case stories with fields at and past AWS's lengths: what
    a mutator reaches only slowly (long runs of bytes in the right field)."""
    story = open(os.path.join(REPO, "tests", "cases", "variations", "v2_cli.jsonl")).read()
    role = "service-role/orders-api-role-7k2p9x1q"
    variants = {
        # IAM paths reach 512 characters: a legal ARN of ~560 bytes
        "role-path-512": story.replace("service-role/", "/".join(["p" * 63] * 8)[:510] + "/"),
        "role-name-64": story.replace(role, "service-role/" + "r" * 64),
        "account-1021": story.replace("111122223333", "1" * 1021),
        "session-64": story.replace('"roleSessionName":"orders-api"', '"roleSessionName":"' + "s" * 64 + '"'),
        "function-64": story.replace("orders-api", "f" * 64),
        "akid-128": story.replace("ASIAQ3ENV10000000000", "ASIA" + "Q" * 124),
        # a user agent cut at 511 bytes lands inside a 2-byte character
        "ua-multibyte-600": story.replace("aws-cli/2.", "aws-cli/" + "\u00e9" * 300 + "2."),
        "ua-4byte-600": story.replace("aws-cli/2.", "aws-cli/" + "\U0001F600" * 150 + "2."),
        "time-9999": story + story.splitlines()[0].replace("2026-03-02T09:00:00Z", "9999-12-31T23:59:59Z") + "\n",
        "time-1970": story.splitlines()[0].replace("2026-03-02T09:00:00Z", "1970-01-01T00:00:00Z") + "\n" + story,
        "rollback": "\n".join(story.splitlines()[:3] + ["#rollback"] + story.splitlines()) + "\n",
    }
    for name, text in variants.items():
        write(os.path.join(out, "pipeline", "stress-" + name + ".jsonl"), text)
    print("wrote %d stress seeds under %s" % (len(variants), out))


def shared_seeds(shared, out):
    n = 0
    for path in sorted(glob.glob(os.path.join(shared, "stratus-detonation-logs", "*.json"))):
        events = json.load(open(path))
        if isinstance(events, dict):
            events = events.get("Records", [events])
        base = os.path.splitext(os.path.basename(path))[0]
        for i in range(0, min(len(events), 48), 12):
            story = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events[i:i + 12])
            write(os.path.join(out, "pipeline", "stratus-%s-%d.jsonl" % (base, i // 12)), story)
            write(os.path.join(out, "event_parse", "stratus-%s-%d.jsonl" % (base, i // 12)), story)
            n += 1
    for path in sorted(glob.glob(os.path.join(shared, "lambda-shape-examples", "*.json"))):
        try:
            ev = json.load(open(path))
        except ValueError:
            continue
        evs = ev if isinstance(ev, list) else [ev]
        lines = ""
        for e in evs:
            if isinstance(e, dict):
                e.pop("_source", None)
                e = e.get("detail", e)
            lines += json.dumps(e, separators=(",", ":")) + "\n"
        base = os.path.splitext(os.path.basename(path))[0]
        write(os.path.join(out, "pipeline", "shape-" + base + ".jsonl"),
              lines)
        n += 1
    ranges = os.path.join(shared, "aws-ip-ranges", "ip-ranges.json")
    if os.path.exists(ranges):
        doc = json.load(open(ranges))
        for i, (k4, k6) in enumerate([(0, 0), (20, 10), (400, 40), (3000, 300)]):
            cut = dict(doc, prefixes=doc["prefixes"][k4:k4 + 24],
                       ipv6_prefixes=doc["ipv6_prefixes"][k6:k6 + 12])
            write(os.path.join(out, "awsranges", "cut-%d.json" % i), json.dumps(cut, indent=1))
            n += 1
    print("wrote %d seed files under %s" % (n, out))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", action="store_true", help="rewrite the committed seeds")
    ap.add_argument("--shared", help="the shared reference data directory")
    ap.add_argument("--out", help="where --shared/--stress seeds go (not committed)")
    ap.add_argument("--stress", action="store_true",
                    help="case stories with fields at and past AWS's lengths (known crashes)")
    a = ap.parse_args()
    if a.repo:
        pipeline_seeds()
        record_seeds()
        avro_seeds()
        config_seeds()
        awsranges_seeds()
    if a.shared:
        if not a.out:
            ap.error("--shared needs --out")
        shared_seeds(a.shared, a.out)
    if a.stress:
        if not a.out:
            ap.error("--stress needs --out")
        stress_seeds(a.out)
    if not a.repo and not a.shared and not a.stress:
        ap.error("nothing to do: --repo, --shared and/or --stress")


if __name__ == "__main__":
    main()

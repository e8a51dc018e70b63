"""Long runs: the state store plateaus under churn instead of growing with event time.

trailhound runs for months. Functions come and go (every deployment of a CDK or SAM stack
may make a new execution role with a random suffix), so a store that keeps every role it
ever learned grows with the days read, not with what is live. Here each day deploys two new
functions, each with its own role (lambda:CreateFunction, then Lambda's issuance and a
runtime call), used on that day only; one function ("api") runs every day and one
("report") stops 20 days before the end. With role_retention_days = 40, scanned over 60
and over 150 days, the store must hold the same number of roles: the live ones and those gone
for less than the window, never every role of the run. With the default (365 days) a role
gone for 99 days is still known (docs/detections.md, "How long learned roles are kept").

A role shared by short-lived deployments meets its cap of functions in months: it must keep
learning new functions, the least recently seen one giving way.

Run under CTest (tests/pytest.cmake): TH_BIN, TH_SHARED, TH_SRC.
"""
import hashlib
import ipaddress
import json
import os
import random
import subprocess
import time

BIN = os.environ.get("TH_BIN", "build/trailhound")
SHARED = os.environ.get("TH_SHARED", os.path.join(os.path.dirname(__file__), "../../shared/data"))
ASN = os.path.join(SHARED, "asn/asn.mmdb")
RANGES = os.path.join(SHARED, "aws-ip-ranges/ip-ranges.json")

DAY, HOUR, MINUTE = 86400, 3600, 60
START = 1767225600  # 2026-01-01T00:00:00Z
ACCT = "210000000000"
EC2 = "54.156.0.0/14"  # EC2 us-east-1 (tools/gen_sample.py's checked blocks)
OFFICE = "38.104.55.0/26"
UA_RUNTIME = "Boto3/1.34.34 md/Botocore#1.34.34 lang/python#3.12.2 exec-env/AWS_Lambda_python3.12"
UA_CLI = "aws-cli/2.17.20 md/awscrt#0.20.11 ua/2.0 os/macos#23.5.0 md/arch#arm64 lang/python#3.11.9"
WINDOW_DAYS = 40


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class World:
    def __init__(self, days, seed=1):
        self.rng = random.Random(seed)
        self.events = []
        self.days = days

    def ip(self, block):
        net = ipaddress.ip_network(block)
        return str(ipaddress.IPv4Address(int(net.network_address) + self.rng.randrange(1, net.num_addresses - 1)))

    def key(self):
        return "ASIA" + "".join(self.rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))

    def add(self, t, ui, source, name, ip, ua, rp=None, re=None):
        self.events.append({
            "eventVersion": "1.09", "userIdentity": ui, "eventTime": iso(t), "eventSource": source,
            "eventName": name, "awsRegion": "us-east-1", "sourceIPAddress": ip, "userAgent": ua,
            "requestParameters": rp, "responseElements": re,
            "eventID": hashlib.sha256(f"ev{len(self.events)}".encode()).hexdigest()[:32],
            "eventType": "AwsApiCall", "recipientAccountId": ACCT})

    def function_day(self, role, fn, t, deploy):
        if deploy:
            user = {"type": "IAMUser", "arn": f"arn:aws:iam::{ACCT}:user/deployer", "accountId": ACCT,
                    "accessKeyId": "AKIAEXAMPLEDEPLOY001", "userName": "deployer"}
            self.add(t, user, "lambda.amazonaws.com", "CreateFunction20150331", self.ip(OFFICE), UA_CLI,
                     rp={"functionName": fn, "role": role})
        k = self.key()
        self.add(t + MINUTE, {"type": "AWSService", "invokedBy": "lambda.amazonaws.com"}, "sts.amazonaws.com",
                 "AssumeRole", "lambda.amazonaws.com", "lambda.amazonaws.com",
                 rp={"roleArn": role, "roleSessionName": fn},
                 re={"credentials": {"accessKeyId": k, "expiration": time.strftime(
                     "%b %d, %Y, %I:%M:%S %p", time.gmtime(t + MINUTE + 12 * HOUR))}})
        rname = role.rsplit("/", 1)[1]
        ui = {"type": "AssumedRole", "arn": f"arn:aws:sts::{ACCT}:assumed-role/{rname}/{fn}", "accountId": ACCT,
              "accessKeyId": k, "sessionContext": {
                  "sessionIssuer": {"type": "Role", "arn": role, "accountId": ACCT},
                  "attributes": {"creationDate": iso(t + MINUTE), "mfaAuthenticated": "false"}}}
        self.add(t + 2 * MINUTE, ui, "dynamodb.amazonaws.com", "GetItem", self.ip(EC2), UA_RUNTIME)

    def build(self):
        for d in range(self.days):
            base = START + d * DAY
            self.function_day(f"arn:aws:iam::{ACCT}:role/service-role/api-role", "api", base + HOUR, d == 0)
            if d < self.days - 20:
                self.function_day(f"arn:aws:iam::{ACCT}:role/service-role/report-role", "report",
                                  base + 2 * HOUR, d == 0)
            for i in range(2):
                fn = f"preview-{d}-{i}"
                role = f"arn:aws:iam::{ACCT}:role/PreviewStack{d}x{i}-FnServiceRole{self.rng.randrange(16**8):08X}"
                self.function_day(role, fn, base + 3 * HOUR + i * 10 * MINUTE, True)
        self.events.sort(key=lambda e: e["eventTime"])
        return self


def roles_after(tmp_path, days, *settings):
    w = World(days).build()
    path = tmp_path / f"churn{days}.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in w.events))
    state = tmp_path / f"state{days}"
    p = subprocess.run([BIN, "scan", "--no-progress", "--jobs", "1", "--asn-db", ASN, "--aws-ranges", RANGES,
                        "--state", str(state), "--set", "max_future_skew=0"] + [a for kv in settings for a in ("--set", kv)] + [str(path)],
                       capture_output=True)
    assert p.returncode in (0, 1), p.stderr.decode()
    p = subprocess.run([BIN, "inspect", "--state", str(state), "--json", "roles"], capture_output=True)
    assert p.returncode == 0, p.stderr.decode()
    return {r["role_arn"]: r for r in json.loads(p.stdout)}


API = f"arn:aws:iam::{ACCT}:role/service-role/api-role"
REPORT = f"arn:aws:iam::{ACCT}:role/service-role/report-role"


def preview(roles):
    return sorted(r for r in roles if "PreviewStack" in r)


def test_roles_of_functions_gone_are_pruned(tmp_path):
    window = f"role_retention_days={WINDOW_DAYS}"
    short, long = roles_after(tmp_path, 60, window), roles_after(tmp_path, 150, window)
    # the live function's role and one gone for 20 days (less than the window) stay known
    for roles in (short, long):
        assert API in roles and REPORT in roles
        assert roles[API]["functions"][0]["name"] == "api"
    # the preview roles of the last days are known; those of the first days are not
    assert any("PreviewStack149x" in r for r in preview(long))
    assert not any("PreviewStack0x" in r for r in preview(long)), "a role gone for 149 days is still stored"
    # a plateau: as many roles after 150 days as after 60, about two a day of the window
    assert len(preview(long)) == len(preview(short)), (len(preview(short)), len(preview(long)))
    assert len(preview(long)) <= 2 * (WINDOW_DAYS + 2), len(preview(long))


def test_roles_are_kept_for_the_default_window(tmp_path):
    """The twin: by default (365 days) no role of a 100-day run is forgotten."""
    roles = roles_after(tmp_path, 100)
    assert API in roles and REPORT in roles
    # its last sighting moves with its daily use (at most once a day)
    assert roles[API]["last_seen"][:10] == time.strftime("%Y-%m-%d", time.gmtime(START + 99 * DAY))
    assert len(preview(roles)) == 200, len(preview(roles))


# ---- a shared execution role's functions ----

SHARED = f"arn:aws:iam::{ACCT}:role/service-role/preview-shared-role"
EC2_EU = "54.74.0.0/15"  # EC2 eu-west-1 (tools/gen_sample.py's checked blocks)
UA_BOTO = ("Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#6.8.0-45-generic md/arch#x86_64 "
           "lang/python#3.12.3 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.69")


def shared_role_world(days, per_day):
    """per_day new preview functions a day, all with one shared role, each deployed and
    issued a key once; then, on the last day, a new function "checkout" issued a key in
    us-east-1 whose key is used from an EC2 address of eu-west-1, a region where it
    never runs: remote, variation 4."""
    w = World(0)
    for d in range(days):
        for i in range(per_day):
            w.function_day(SHARED, f"preview-{d}-{i}", START + d * DAY + HOUR + i * 10, True)
    t = START + days * DAY + 2 * HOUR
    k = w.key()
    w.add(t, {"type": "AWSService", "invokedBy": "lambda.amazonaws.com"}, "sts.amazonaws.com",
          "AssumeRole", "lambda.amazonaws.com", "lambda.amazonaws.com",
          rp={"roleArn": SHARED, "roleSessionName": "checkout"},
          re={"credentials": {"accessKeyId": k, "expiration": time.strftime(
              "%b %d, %Y, %I:%M:%S %p", time.gmtime(t + 12 * HOUR))}})
    ui = {"type": "AssumedRole", "arn": f"arn:aws:sts::{ACCT}:assumed-role/preview-shared-role/checkout",
          "accountId": ACCT, "accessKeyId": k, "sessionContext": {
              "sessionIssuer": {"type": "Role", "arn": SHARED, "accountId": ACCT},
              "attributes": {"creationDate": iso(t), "mfaAuthenticated": "false"}}}
    w.add(t + HOUR, ui, "s3.amazonaws.com", "ListBuckets", w.ip(EC2_EU), UA_BOTO)
    w.events.sort(key=lambda e: e["eventTime"])
    return w, k


def scan_alerts(tmp_path, name, events):
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    p = subprocess.run([BIN, "scan", "--no-progress", "--jobs", "1", "--asn-db", ASN, "--aws-ranges", RANGES,
                        "--set", "max_future_skew=0", "--set", "activation_days=0", str(path)],
                       capture_output=True)
    assert p.returncode in (0, 1), p.stderr.decode()
    return [json.loads(l) for l in p.stdout.decode().splitlines() if l.strip()]


def test_a_shared_role_keeps_learning_new_functions(tmp_path):
    """A role shared by preview deployments meets its cap of 4,096 functions (records.h)
    after 70 days of 60 a day; a function deployed after that must still be learned (the
    least recently seen one gives way), or its key's use from another region's EC2
    address counts as inside (no region known) and goes unreported."""
    w, k = shared_role_world(70, 60)
    alerts = [a for a in scan_alerts(tmp_path, "cap", w.events) if a["access_key_id"] == k]
    assert [a["variation"] for a in alerts] == [4], alerts


def test_a_new_function_of_a_shared_role_is_learned(tmp_path):
    """The twin, far from the cap: the same last day gives the same alert."""
    w, k = shared_role_world(3, 60)
    alerts = [a for a in scan_alerts(tmp_path, "few", w.events) if a["access_key_id"] == k]
    assert [a["variation"] for a in alerts] == [4], alerts

#!/usr/bin/env python3
"""Build the declarative detection cases under tests/cases/ from compact definitions.

Each case below is a function that tells a short story in CloudTrail events and
says which alerts the detector must raise (docs/detections.md).  Running

    python3 tests/cases/make_cases.py

(re)writes, for every case, `<group>/<name>.jsonl` (the events, one per line, in
arrival order), `<name>.expected.jsonl` (the alerts; empty = no alert) and, when
needed, `<name>.args` (extra `scan` arguments, one token per line),
`<name>.counters.json` (the `scan --summary-json` counters the story names,
Case.counters) and `<name>.twin` (a no-alert case's positive twin: the same
events with one field of one event changed, which must alert; Case.twin), plus
`INDEX.md` (the list of cases and what each expects).  Output is deterministic:
the generated files are committed and are what tests/run_cases.py reads;
`make_cases.py --check` fails when they are out of date.

Every case stands alone: it starts with the account's first event (an IAM user's
ConsoleLogin + ListBuckets from the office, which also starts the activation
period and puts the office ASN in the account baseline) at least 14 days before
the attack, and everything happens inside the 30-day training window unless the
case is about that window.

Addresses (ASNs checked with mmdblookup against asn.mmdb, AWS regions against
ip-ranges.json; same blocks as tools/gen_sample.py):
  office       38.104.55.10/.20      AS174   Cogent (the company's egress)
  DigitalOcean 159.203.45.77, 167.99.10.23  AS14061
  OVH          51.68.40.12           AS16276
  Hetzner v6   2a01:4f8:c17:1::25    AS24940
  office v6    2001:550:2:1::1f      AS174
  Vultr        45.32.100.7           AS20473
  AWS us-east-1 EC2  54.158.64.105 (AS14618), 52.4.17.9 (AS16509),
                     2600:1f18:4a12:8c00::1f (AS14618)
  AWS eu-west-1 EC2  54.75.163.40 (AS16509)   -- "another region"
  private      10.20.3.41, 172.31.40.7   (ASN 0)
"""
import argparse
import calendar
import copy
import filecmp
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "tools"))
import variations  # noqa: E402  (tools/variations.py)

HERE = os.path.dirname(os.path.abspath(__file__))

DAY = 86400
HOUR = 3600
MINUTE = 60
# day 0 of every case: the account's first event happens on this day
EPOCH0 = calendar.timegm((2026, 3, 2, 0, 0, 0))

ACCT = "111122223333"
FOREIGN_ACCT = "999988887777"
ROLE = "arn:aws:iam::111122223333:role/service-role/orders-api-role-7k2p9x1q"
FN = "orders-api"
REGION = "us-east-1"

# ---------------------------------------------------------------------------------------
# addresses: name -> (ip, asn)
# ---------------------------------------------------------------------------------------
IP = {
    "office": ("38.104.55.10", 174),
    "office2": ("38.104.55.20", 174),
    "do": ("159.203.45.77", 14061),
    "do2": ("167.99.10.23", 14061),
    "ovh": ("51.68.40.12", 16276),
    "hetzner6": ("2a01:4f8:c17:1::25", 24940),
    "office6": ("2001:550:2:1::1f", 174),
    "vultr": ("45.32.100.7", 20473),
    "aws_use1": ("54.158.64.105", 14618),
    "aws_use1_b": ("52.4.17.9", 16509),
    "aws_use1_v6": ("2600:1f18:4a12:8c00::1f", 14618),
    "aws_euw1": ("54.75.163.40", 16509),
    "private10": ("10.20.3.41", 0),
    "private172": ("172.31.40.7", 0),
}

# ---------------------------------------------------------------------------------------
# user agents
# ---------------------------------------------------------------------------------------
UA = {
    # the function's runtime (boto3 inside Lambda sets exec-env/)
    "runtime": ("Boto3/1.34.145 md/Botocore#1.34.145 ua/2.0 os/linux#5.10.227-239.884.amzn2.x86_64 "
                "md/arch#x86_64 lang/python#3.12.7 md/pyimpl#CPython exec-env/AWS_Lambda_python3.12 "
                "cfg/retry-mode#legacy Botocore/1.34.145"),
    # a custom runtime (provided.al2023) sets no AWS_EXECUTION_ENV: no exec-env/ in the UA
    "custom_runtime": ("aws-sdk-go-v2/1.30.4 ua/2.1 os/linux lang/go#1.22.6 md/GOOS#linux md/GOARCH#arm64 "
                       "api/secretsmanager#1.32.6 m/E"),
    # aws-cli shipped in a Lambda layer: the CLI inside Lambda carries exec-env/
    "cli_in_lambda": ("aws-cli/2.17.20 md/awscrt#0.20.11 ua/2.0 os/linux#5.10.227-239.884.amzn2.x86_64 "
                      "md/arch#x86_64 lang/python#3.11.9 md/pyimpl#CPython exec-env/AWS_Lambda_python3.12 "
                      "cfg/retry-mode#standard md/installer#exe md/prompt#off md/command#s3.cp"),
    "worker": "awslambda-worker/1.0 rusoto/0.48.0 rust/1.79.0 linux",
    "poller": ("aws-internal/3 aws-sdk-java/1.12.638 Linux/5.10.219-186.866.amzn2int.x86_64 "
               "OpenJDK_64-Bit_Server_VM/25.402-b08 java/1.8.0_402 vendor/Oracle_Corporation cfg/retry-mode/standard"),
    # attacker tooling
    "boto3": ("Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#6.8.0-45-generic md/arch#x86_64 "
              "lang/python#3.12.3 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.69"),
    "powershell": ("AWSPowerShell.Common/4.1.90.0 .NET_Core/6.0.5 OS/Microsoft_Windows_10.0.22631 "
                   "PowerShellCore/7.4.2 ClientAsync"),
    "cli": ("aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0 exe/x86_64.ubuntu.22 prompt/off "
            "command/sts.get-caller-identity"),
    # people
    "browser": ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
                "Chrome/128.0.0.0 Safari/537.36"),
    "laptop_cli": ("aws-cli/2.17.20 md/awscrt#0.20.11 ua/2.0 os/macos#23.5.0 md/arch#arm64 lang/python#3.11.9 "
                   "md/pyimpl#CPython cfg/retry-mode#standard md/installer#source md/prompt#off md/command#{cmd}"),
    "laptop_boto3": ("Boto3/1.35.10 md/Botocore#1.35.10 ua/2.0 os/macos#23.6.0 md/arch#arm64 lang/python#3.12.4 "
                     "md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.35.10"),
}

# ---------------------------------------------------------------------------------------
# API calls: name -> (eventSource, eventName, requestParameters, readOnly)
# ---------------------------------------------------------------------------------------
API = {
    "secret": ("secretsmanager.amazonaws.com", "GetSecretValue", {"secretId": "prod/orders-api/db"}, True),
    "table": ("dynamodb.amazonaws.com", "DescribeTable", {"tableName": "orders"}, True),
    "param": ("ssm.amazonaws.com", "GetParameter", {"name": "/orders-api/stripe-key", "withDecryption": True}, True),
    "whoami": ("sts.amazonaws.com", "GetCallerIdentity", None, True),
    "buckets": ("s3.amazonaws.com", "ListBuckets", {"Host": "s3.amazonaws.com"}, True),
    "secrets": ("secretsmanager.amazonaws.com", "ListSecrets", None, True),
    "decrypt": ("kms.amazonaws.com", "Decrypt", {"encryptionAlgorithm": "SYMMETRIC_DEFAULT"}, True),
    "logs": ("logs.amazonaws.com", "CreateLogStream",
             {"logGroupName": "/aws/lambda/orders-api", "logStreamName": "2026/03/22/[$LATEST]0f3a"}, False),
}

# Alert names, severities and credential kinds come from the binary
# (tools/variations.py); the expectations below keep their own rules.


def at(day, hh=0, mm=0, ss=0):
    """Event time: `day` days after day 0, at hh:mm:ss UTC."""
    return EPOCH0 + day * DAY + hh * HOUR + mm * MINUTE + ss


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def expiration(t):
    g = time.gmtime(t)
    months = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    return "%s %d, %d, %d:%02d:%02d %s" % (months[g.tm_mon - 1], g.tm_mday, g.tm_year, g.tm_hour % 12 or 12,
                                           g.tm_min, g.tm_sec, "AM" if g.tm_hour < 12 else "PM")


def key(label):
    """A readable ASIA key: ASIAQ3 + label padded to 20 characters."""
    k = ("ASIAQ3" + label.upper()).ljust(20, "0")
    assert len(k) == 20 and k.isalnum(), k
    return k


def uuid_of(*parts):
    h = hashlib.sha256("|".join(parts).encode()).hexdigest()
    h = h[:12] + "4" + h[13:16] + "8" + h[17:32]
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:32])


def role_id(role):
    return "AROA" + hashlib.sha256(role.encode()).hexdigest()[:17].upper()


def token(*parts):
    """A short stand-in for a session token (real ones are ~1 KB of base64)."""
    return "IQoJb3JpZ2luX2VjE" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:40] + "=="


# ---------------------------------------------------------------------------------------
# A case
# ---------------------------------------------------------------------------------------
CASES = []


DELETE = object()  # a twin's new value that removes the field
OMIT = object()    # expect(): do not pin this field


class Case:
    def __init__(self, group, name, doc, args=()):
        self.group, self.name, self.doc, self.args = group, name, doc, list(args)
        self.events = []
        self.expected = []
        self.counter_want = {}   # subset of `scan --summary-json`, checked exactly
        self.twin_name = None    # no-alert case: its positive twin (same group)
        self.twin_of = None      # a twin: the no-alert case it answers
        self.derived = []        # twins and controls, written after this case
        self.account(ACCT)

    def account(self, acct):
        """Switch the account the following events belong to (its role: orders-api-role)."""
        self.acct = acct
        self.role = ROLE.replace(ACCT, acct)

    # ---- plumbing ----------------------------------------------------------------------
    def _add(self, ev):
        # numbered by creation, not position: a story may pop events it built (late_record)
        self._n = getattr(self, "_n", 0) + 1
        n = self._n
        ev["requestID"] = uuid_of(self.group, self.name, "req", str(n))
        ev["eventID"] = uuid_of(self.group, self.name, "event", str(n))
        # keep CloudTrail's field order: ids after the parameters
        order = ["eventVersion", "userIdentity", "eventTime", "eventSource", "eventName", "awsRegion",
                 "sourceIPAddress", "userAgent", "errorCode", "errorMessage", "requestParameters",
                 "responseElements", "additionalEventData", "requestID", "eventID", "readOnly", "resources",
                 "eventType", "managementEvent", "recipientAccountId", "vpcEndpointId", "vpcEndpointAccountId",
                 "sharedEventID", "eventCategory", "tlsDetails", "sessionCredentialFromConsole"]
        ev = {k: ev[k] for k in order if k in ev}
        self.events.append(ev)
        return ev

    # ---- identities --------------------------------------------------------------------
    def iam_user(self, user, akid=""):
        return {"type": "IAMUser", "principalId": "AIDA" + hashlib.sha256(user.encode()).hexdigest()[:17].upper(),
                "arn": "arn:aws:iam::%s:user/%s" % (self.acct, user), "accountId": self.acct, "accessKeyId": akid,
                "userName": user}

    def assumed_role(self, akid, role, session, creation):
        rname = role.rsplit("/", 1)[1]
        rid = role_id(role)
        return {"type": "AssumedRole", "principalId": "%s:%s" % (rid, session),
                "arn": "arn:aws:sts::%s:assumed-role/%s/%s" % (self.acct, rname, session),
                "accountId": self.acct, "accessKeyId": akid,
                "sessionContext": {"sessionIssuer": {"type": "Role", "principalId": rid, "arn": role,
                                                     "accountId": self.acct, "userName": rname},
                                   "webIdFederationData": {},
                                   "attributes": {"creationDate": iso(creation), "mfaAuthenticated": "false"}}}

    # ---- events ------------------------------------------------------------------------
    def office_start(self, t=None, ip="office"):
        """The account's first events: alice signs in to the console and lists buckets
        with her access key, from the office (AS174).  Starts the activation period and
        puts AS174 in the account baseline."""
        t = at(0, 9) if t is None else t
        ip = IP[ip][0]
        self._add({"eventVersion": "1.09", "userIdentity": self.iam_user("alice"), "eventTime": iso(t),
                   "eventSource": "signin.amazonaws.com", "eventName": "ConsoleLogin", "awsRegion": "us-east-1",
                   "sourceIPAddress": ip, "userAgent": UA["browser"], "requestParameters": None,
                   "responseElements": {"ConsoleLogin": "Success"},
                   "additionalEventData": {"LoginTo": "https://console.aws.amazon.com/console/home",
                                           "MobileVersion": "No", "MFAUsed": "Yes"},
                   "readOnly": False, "eventType": "AwsConsoleSignIn", "managementEvent": True,
                   "recipientAccountId": self.acct, "eventCategory": "Management"})
        self._add({"eventVersion": "1.09", "userIdentity": self.iam_user("alice", "AKIAQ3ALICE000000001"),
                   "eventTime": iso(t + 2 * MINUTE), "eventSource": "s3.amazonaws.com",
                   "eventName": "ListBuckets", "awsRegion": "us-east-1", "sourceIPAddress": ip,
                   "userAgent": UA["laptop_cli"].replace("{cmd}", "s3.ls"),
                   "requestParameters": {"Host": "s3.amazonaws.com"}, "responseElements": None,
                   "readOnly": True, "eventType": "AwsApiCall", "managementEvent": True,
                   "recipientAccountId": self.acct, "eventCategory": "Management",
                   "tlsDetails": {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256",
                                  "clientProvidedHostHeader": "s3.amazonaws.com"}})

    def issue(self, t, akid, fn=FN, role=None, region=REGION):
        """Lambda's sts:AssumeRole giving key `akid` to function `fn` (session = fn)."""
        role = role or self.role
        return self._add({
            "eventVersion": "1.08", "userIdentity": {"type": "AWSService", "invokedBy": "lambda.amazonaws.com"},
            "eventTime": iso(t), "eventSource": "sts.amazonaws.com", "eventName": "AssumeRole", "awsRegion": region,
            "sourceIPAddress": "lambda.amazonaws.com", "userAgent": "lambda.amazonaws.com",
            "requestParameters": {"roleArn": role, "roleSessionName": fn},
            "responseElements": {"credentials": {"accessKeyId": akid, "sessionToken": token(akid),
                                                 "expiration": expiration(t + 12 * HOUR)}},
            "readOnly": True, "resources": [{"accountId": self.acct, "type": "AWS::IAM::Role", "ARN": role}],
            "eventType": "AwsApiCall", "managementEvent": True, "recipientAccountId": self.acct,
            "sharedEventID": uuid_of(self.group, self.name, "shared", akid), "eventCategory": "Management"})

    def call(self, t, akid, ip, ua, api="secret", creation=None, session=FN, role=None, region=REGION,
             vpce=None, vpce_acct=None, invoked_by=None):
        """A call made with key `akid` (an AssumedRole session of `role` named `session`).
        `ip` is a name of IP or a literal (service names); `creation` defaults to 20 min
        before the call."""
        role = role or self.role
        src, name, rp, ro = API[api]
        ui = self.assumed_role(akid, role, session, creation if creation is not None else t - 20 * MINUTE)
        if invoked_by:
            ui["invokedBy"] = invoked_by
        ev = {"eventVersion": "1.10", "userIdentity": ui, "eventTime": iso(t), "eventSource": src,
              "eventName": name, "awsRegion": region, "sourceIPAddress": IP[ip][0] if ip in IP else ip,
              "userAgent": UA.get(ua, ua), "requestParameters": rp, "responseElements": None,
              "readOnly": ro, "eventType": "AwsApiCall", "managementEvent": True, "recipientAccountId": self.acct,
              "eventCategory": "Management"}
        if vpce:
            ev["vpcEndpointId"] = vpce
            if vpce_acct:
                ev["vpcEndpointAccountId"] = vpce_acct
        if ip in IP:
            host = src.replace(".amazonaws.com", "") + ".%s.amazonaws.com" % region
            if src == "s3.amazonaws.com":
                host = "s3.amazonaws.com"
            ev["tlsDetails"] = {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256",
                                "clientProvidedHostHeader": host}
        return self._add(ev)

    def user_assume(self, t, user, akid, session, ip="office", role=None):
        """IAM user `user` assumes `role` (an *other session* of a Lambda role)."""
        role = role or self.role
        rname = role.rsplit("/", 1)[1]
        return self._add({
            "eventVersion": "1.08", "userIdentity": self.iam_user(user, "AKIAQ3" + user.upper().ljust(14, "0")),
            "eventTime": iso(t), "eventSource": "sts.amazonaws.com", "eventName": "AssumeRole",
            "awsRegion": REGION, "sourceIPAddress": IP[ip][0],
            "userAgent": UA["laptop_cli"].replace("{cmd}", "sts.assume-role"),
            "requestParameters": {"roleArn": role, "roleSessionName": session},
            "responseElements": {"credentials": {"accessKeyId": akid, "sessionToken": token(akid),
                                                 "expiration": expiration(t + HOUR)},
                                 "assumedRoleUser": {"assumedRoleId": "%s:%s" % (role_id(role), session),
                                                     "arn": "arn:aws:sts::%s:assumed-role/%s/%s"
                                                            % (self.acct, rname, session)}},
            "readOnly": True, "resources": [{"accountId": self.acct, "type": "AWS::IAM::Role", "ARN": role}],
            "eventType": "AwsApiCall", "managementEvent": True, "recipientAccountId": self.acct,
            "eventCategory": "Management",
            "tlsDetails": {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256",
                           "clientProvidedHostHeader": "sts.us-east-1.amazonaws.com"}})

    def manage_function(self, t, event_name, function_name, role=None, region=REGION, user="alice", ip="office"):
        """alice deploys: lambda CreateFunction*/UpdateFunctionConfiguration* naming the role."""
        role = role or self.role
        fname = function_name.rsplit(":", 1)[-1]
        rp = {"functionName": function_name, "role": role}
        if event_name.startswith("CreateFunction"):
            rp.update({"runtime": "python3.12", "handler": "app.handler", "code": {}, "timeout": 30,
                       "memorySize": 256, "publish": True})
        else:
            rp.update({"timeout": 60})
        return self._add({
            "eventVersion": "1.09", "userIdentity": self.iam_user(user, "AKIAQ3" + user.upper().ljust(14, "0")),
            "eventTime": iso(t), "eventSource": "lambda.amazonaws.com", "eventName": event_name,
            "awsRegion": region, "sourceIPAddress": IP[ip][0],
            "userAgent": UA["laptop_cli"].replace("{cmd}", "lambda.create-function"
                                                  if event_name.startswith("Create")
                                                  else "lambda.update-function-configuration"),
            "requestParameters": rp,
            "responseElements": {"functionName": fname,
                                 "functionArn": "arn:aws:lambda:%s:%s:function:%s" % (region, self.acct, fname),
                                 "runtime": "python3.12", "role": role, "handler": "app.handler",
                                 "state": "Pending" if event_name.startswith("Create") else "Active"},
            "readOnly": False, "eventType": "AwsApiCall", "managementEvent": True, "recipientAccountId": self.acct,
            "eventCategory": "Management",
            "tlsDetails": {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256",
                           "clientProvidedHostHeader": "lambda.%s.amazonaws.com" % region}})

    # ---- expectations ------------------------------------------------------------------
    def expect(self, ev, variation, function=FN, session=None, upgrade_of=None, asn=None, source_ip=None):
        """An alert of `variation` on event `ev`.  function=None: a token that names no
        function (Lambda's poller sessions); the runner accepts null, "" or absent.
        asn=0 for sources that are no address; source_ip=OMIT leaves it unpinned
        (empty or missing sourceIPAddress)."""
        name, sev = variations.names()[variation]
        ip = ev.get("sourceIPAddress")
        if asn is None:
            asn = {v[0]: v[1] for v in IP.values()}[ip]
        want = {"variation": variation, "alert_name": name, "severity": sev, "event_id": ev["eventID"],
                "account_id": ev["userIdentity"]["accountId"], "role_arn": ev["userIdentity"]["sessionContext"]["sessionIssuer"]["arn"],
                "access_key_id": ev["userIdentity"]["accessKeyId"], "source_ip": ip, "asn": asn}
        if source_ip is OMIT:
            del want["source_ip"]
        elif source_ip is not None:
            want["source_ip"] = source_ip
        if variations.judges_token(variation):
            want["function_name"] = function
        else:
            want["session_name"] = session or ev["userIdentity"]["arn"].rsplit("/", 1)[1]
        if upgrade_of:
            want["upgrade_of_variation"] = upgrade_of
        self.expected.append(want)

    def counters(self, **kw):
        """Counters of `scan --summary-json` this story names; compared exactly.
        detector counters by name; rejected_by={reason: n} / rejected=n for records."""
        for k, v in kw.items():
            if k in ("rejected", "rejected_by", "read", "parsed"):
                self.counter_want.setdefault("records", {})[k] = v
            elif k == "alerts_total":
                self.counter_want.setdefault("alerts", {})["total"] = v
            else:
                self.counter_want.setdefault("detector", {})[k] = v

    def derive(self, suffix, doc, mutate=None, drop=()):
        """A copy of this case's events (same IDs) named <name>_<suffix>, with one field of
        one event changed (mutate=(event, "dotted.path", value or DELETE)) or some events
        left out (drop).  Returns it for its own expect()/counters(); map events of this
        case to the copy with .ev(event)."""
        d = Case(self.group, "%s_%s" % (self.name, suffix), doc, self.args)
        d.account(self.acct)
        idx = {id(e): i for i, e in enumerate(self.events)}
        dropped = {idx[id(e)] for e in drop}
        d._map = {}
        for i, e in enumerate(self.events):
            if i in dropped:
                continue
            d._map[i] = len(d.events)
            d.events.append(copy.deepcopy(e))
        d._src = idx
        if mutate is not None:
            ev, path, value = mutate
            target = d.events[d._map[idx[id(ev)]]]
            *parents, leaf = path.split(".")
            for p in parents:
                target = target[p]
            if value is DELETE:
                del target[leaf]
            else:
                assert target.get(leaf, DELETE) != value, "a twin must change its field"
                target[leaf] = value
        self.derived.append(d)
        return d

    def ev(self, original):
        """In a derived case: its copy of the parent's event `original`."""
        return self.events[self._map[self._src[id(original)]]]

    def twin(self, ev, path, value, doc):
        """The positive twin of this no-alert case: the same story with one field of one
        event changed, which must alert (tests/run_cases.py checks both)."""
        t = self.derive("twin", "Positive twin of %s: %s" % (self.name, " ".join(doc.split())),
                        mutate=(ev, path, value))
        self.twin_name = t.name
        t.twin_of = self.name
        return t


def case(group, name, args=()):
    """Decorator: the function's docstring is the case's description."""
    def deco(f):
        c = Case(group, name, " ".join(f.__doc__.split()), args)
        f(c)
        CASES.append(c)
        CASES.extend(c.derived)
        return f
    return deco


# =======================================================================================
# variations: one case per row of the variation table
# =======================================================================================
ATTACK = 20  # attack day: past the 14-day activation, inside the 30-day training window


@case("variations", "v1_two_networks")
def _(c):
    """Key issued to orders-api, used by the function from us-east-1 EC2, then from a
    DigitalOcean droplet with plain boto3: two networks within the key's lifetime -> V1."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    c.call(at(ATTACK, 10, 1), k, "aws_use1", "runtime", "secret", creation=at(ATTACK, 10))
    r = c.call(at(ATTACK, 10, 40), k, "do", "boto3", "whoami", creation=at(ATTACK, 10))
    c.expect(r, 1)


@case("variations", "v1_ua_claim_exec_env")
def _(c):
    """Issued key never used inside; used from OVH with a user agent claiming the Lambda
    runtime (exec-env/AWS_Lambda_python3.12): the claim cannot clear a public source -> V1."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    r = c.call(at(ATTACK, 10, 30), k, "ovh", "runtime", "secrets", creation=at(ATTACK, 10))
    c.expect(r, 1)


@case("variations", "v1_ua_claim_worker")
def _(c):
    """Issued key used from Vultr with Lambda's worker user agent (awslambda-worker/) -> V1."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    r = c.call(at(ATTACK, 10, 30), k, "vultr", "worker", "logs", creation=at(ATTACK, 10))
    c.expect(r, 1)


@case("variations", "v1_ua_claim_aws_internal")
def _(c):
    """Issued key used from DigitalOcean with an AWS-internal user agent (aws-internal/) -> V1."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    r = c.call(at(ATTACK, 10, 30), k, "do", "poller", "table", creation=at(ATTACK, 10))
    c.expect(r, 1)


@case("variations", "v1_cli_with_exec_env_remote")
def _(c):
    """aws-cli user agent that also carries exec-env/AWS_Lambda, from a public address:
    the Lambda claim wins (V1 before V2)."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    r = c.call(at(ATTACK, 10, 30), k, "do", "cli_in_lambda", "buckets", creation=at(ATTACK, 10))
    c.expect(r, 1)


@case("variations", "v2_cli")
def _(c):
    """Issued key used only from DigitalOcean with aws-cli (no exec-env/) -> V2."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    r = c.call(at(ATTACK, 10, 30), k, "do", "cli", "whoami", creation=at(ATTACK, 10))
    c.expect(r, 2)


@case("variations", "v2_negative_cli_exec_env_inside")
def _(c):
    """The function shells out to aws-cli inside Lambda (aws-cli UA with exec-env/), from two
    us-east-1 EC2 addresses: inside use, not V2 -> no alert (2 inside uses, 0 remote)."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    c.call(at(ATTACK, 10, 1), k, "aws_use1", "cli_in_lambda", "buckets", creation=at(ATTACK, 10))
    r = c.call(at(ATTACK, 10, 2), k, "aws_use1_b", "cli_in_lambda", "param", creation=at(ATTACK, 10))
    c.counters(inside_uses=2, remote_uses=0)
    t = c.twin(r, "sourceIPAddress", IP["do"][0],
               """the second call comes from DigitalOcean: the key was used inside and the remote
               call claims exec-env/ -> V1, not V2.""")
    t.expect(t.ev(r), 1)


@case("variations", "v3_corporate_asn")
def _(c):
    """Issued key used (boto3, no inside use) from the office, whose AS174 the account's IAM
    user used 20 days earlier (baseline) -> V3."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    r = c.call(at(ATTACK, 10, 30), k, "office2", "laptop_boto3", "table", creation=at(ATTACK, 10))
    c.expect(r, 3)


@case("variations", "v3_trusted_asn", args=["--set", "trusted_asns=AS14061"])
def _(c):
    """Issued key used from DigitalOcean (AS14061, never seen in the account) while
    trusted_asns=AS14061 is configured -> V3."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    r = c.call(at(ATTACK, 10, 30), k, "do", "boto3", "table", creation=at(ATTACK, 10))
    c.expect(r, 3)


@case("variations", "v4_remote")
def _(c):
    """Issued key used only from OVH with plain boto3, ASN not in the baseline -> V4."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    r = c.call(at(ATTACK, 10, 30), k, "ovh", "boto3", "secret", creation=at(ATTACK, 10))
    c.expect(r, 4)


@case("variations", "v5_new_identity")
def _(c):
    """orders-api-role is a Lambda role (issuance). Training: carol assumed it on day 5 and
    used it from DigitalOcean. Day 20: bob assumes it for the first time and uses it from
    DigitalOcean: ASN known for the role but identity new -> V5."""
    c.office_start()
    c.issue(at(1, 8), key("ENV0"))
    c.user_assume(at(5, 14), "carol", key("CAROL1"), "carol-debug")
    c.call(at(5, 14, 5), key("CAROL1"), "do2", "laptop_boto3", "table", session="carol-debug",
           creation=at(5, 14))
    c.user_assume(at(ATTACK, 14), "bob", key("BOB2"), "bob-debug")
    r = c.call(at(ATTACK, 14, 5), key("BOB2"), "do", "laptop_boto3", "secret", session="bob-debug",
               creation=at(ATTACK, 14))
    c.expect(r, 5)


@case("variations", "v5_known_identity_new_asn")
def _(c):
    """Training: bob assumed the Lambda role on day 5 and used it from the office (AS174).
    Day 20: bob assumes it again and uses it from DigitalOcean (AS14061, new for the role)
    -> V5 (the account baseline does not matter for V5/V6)."""
    c.office_start()
    c.issue(at(1, 8), key("ENV0"))
    c.user_assume(at(5, 14), "bob", key("BOB1"), "bob-debug")
    c.call(at(5, 14, 5), key("BOB1"), "office2", "laptop_boto3", "table", session="bob-debug",
           creation=at(5, 14))
    c.user_assume(at(ATTACK, 14), "bob", key("BOB2"), "bob-debug")
    r = c.call(at(ATTACK, 14, 5), key("BOB2"), "do", "laptop_boto3", "secret", session="bob-debug",
               creation=at(ATTACK, 14))
    c.expect(r, 5)


@case("variations", "v6_known_identity_and_asn")
def _(c):
    """Training: bob assumed the Lambda role on day 5 (key BOB1) and used it from his
    DigitalOcean droplet. Day 20: bob assumes it again (key BOB2) and uses it from
    DigitalOcean: identity and ASN both seen with another key -> V6."""
    c.office_start()
    c.issue(at(1, 8), key("ENV0"))
    c.user_assume(at(5, 14), "bob", key("BOB1"), "bob-debug")
    c.call(at(5, 14, 5), key("BOB1"), "do2", "laptop_boto3", "table", session="bob-debug",
           creation=at(5, 14))
    c.user_assume(at(ATTACK, 14), "bob", key("BOB2"), "bob-debug")
    r = c.call(at(ATTACK, 14, 5), key("BOB2"), "do", "laptop_boto3", "secret", session="bob-debug",
               creation=at(ATTACK, 14))
    c.expect(r, 6)


@case("variations", "v2_powershell")
def _(c):
    """Issued key used from OVH with AWS Tools for PowerShell (UA starts AWSPowerShell) -> V2."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    r = c.call(at(ATTACK, 10, 30), k, "ovh", "powershell", "secrets", creation=at(ATTACK, 10))
    c.expect(r, 2)


@case("variations", "v2_cli_from_known_asn")
def _(c):
    """aws-cli from the office ASN (in the baseline): V2 comes before V3 -> V2."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    r = c.call(at(ATTACK, 10, 30), k, "office2", "cli", "whoami", creation=at(ATTACK, 10))
    c.expect(r, 2)


@case("variations", "v5_own_session_not_evidence")
def _(c):
    """bob assumes the Lambda role for the first time and uses it twice from DigitalOcean: the
    session's own AssumeRole and first call are no training evidence for itself, so the second
    call is still V5 (deduplicated), never V6 -> one V5."""
    c.office_start()
    c.issue(at(1, 8), key("ENV0"))
    c.user_assume(at(ATTACK, 14), "bob", key("BOB2"), "bob-debug")
    r = c.call(at(ATTACK, 14, 5), key("BOB2"), "do", "laptop_boto3", "secret", session="bob-debug",
               creation=at(ATTACK, 14))
    c.call(at(ATTACK, 14, 6), key("BOB2"), "do", "laptop_boto3", "secrets", session="bob-debug",
           creation=at(ATTACK, 14))
    c.expect(r, 5)
    c.counters(suppressed_dedup=1)


@case("variations", "v5_other_session_aws_other_region")
def _(c):
    """bob's session of the Lambda role (function in us-east-1) is used from an EC2 address of
    eu-west-1, outside the role's regions -> remote -> V5 (AS16509)."""
    c.office_start()
    c.issue(at(1, 8), key("ENV0"))
    c.user_assume(at(ATTACK, 14), "bob", key("BOB2"), "bob-debug")
    r = c.call(at(ATTACK, 14, 5), key("BOB2"), "aws_euw1", "boto3", "secret", session="bob-debug",
               creation=at(ATTACK, 14))
    c.expect(r, 5)


# =======================================================================================
# exclusions: Lambda's own traffic and inside uses never alert
# =======================================================================================

@case("exclusions", "invoked_by")
def _(c):
    """A call with the issued key carrying userIdentity.invokedBy (a service acting on the
    function's behalf), even from a public address -> no alert (1 excluded)."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    r = c.call(at(ATTACK, 10, 30), k, "do", "boto3", "decrypt", creation=at(ATTACK, 10),
               invoked_by="lambda.amazonaws.com")
    c.counters(excluded=1)
    t = c.twin(r, "userIdentity.invokedBy", DELETE,
               "the call carries no invokedBy: a remote use of the token -> V4 (0 excluded).")
    t.expect(t.ev(r), 4)
    t.counters(excluded=0)


@case("exclusions", "source_service_names")
def _(c):
    """Calls with the issued key whose sourceIPAddress is a service name as AWS writes it
    (exact case): lambda.amazonaws.com, AWS Internal, kms.amazonaws.com -> no alert (3
    excluded, 0 source_unrecognised). Issuance events are not calls: not counted as excluded."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    c.call(at(ATTACK, 10, 10), k, "lambda.amazonaws.com", "lambda.amazonaws.com", "decrypt",
           creation=at(ATTACK, 10))
    r = c.call(at(ATTACK, 10, 11), k, "AWS Internal", "AWS Internal", "table", creation=at(ATTACK, 10))
    c.call(at(ATTACK, 10, 12), k, "kms.amazonaws.com", "kms.amazonaws.com", "decrypt", creation=at(ATTACK, 10))
    c.counters(excluded=3, source_unrecognised=0)
    t = c.twin(r, "sourceIPAddress", "aws internal",
               """spec v2: `aws internal` (wrong case) is no service name AWS writes: counted as
               source_unrecognised, judged remote with unknown ASN -> V4, ASN 0 (2 excluded,
               1 source_unrecognised).""")
    t.expect(t.ev(r), 4, asn=0)
    t.counters(excluded=2, source_unrecognised=1)


@case("exclusions", "awslambda_session")
def _(c):
    """Spec v2 (was: no alert, the name excluded the session). Lambda's service sessions
    (awslambda_<n>_<time>, event-source pollers) of the function's role, used from public
    addresses with the poller's aws-internal/ UA. POLLER1 was issued by Lambda: a Lambda
    token naming no function, its remote use claims an AWS-internal UA -> V1 (function none).
    POLLER2's issuance is never seen: its name decides nothing, so it is held and, at the end
    of input, judged an other session of the Lambda role with unknown identity -> V5."""
    c.office_start()
    s1 = "awslambda_292_20260322100000334"
    s2 = "awslambda_744_20260322101500896"
    k1, k2 = key("POLLER1"), key("POLLER2")
    c.issue(at(ATTACK, 10), k1, fn=s1)
    r1 = c.call(at(ATTACK, 10, 5), k1, "do", "poller", "table", session=s1, creation=at(ATTACK, 10))
    r2 = c.call(at(ATTACK, 10, 20), k2, "ovh", "poller", "table", session=s2, creation=at(ATTACK, 10, 15))
    c.expect(r1, 1, function=None)
    c.expect(r2, 5)
    c.counters(excluded=0, held=1)


@case("exclusions", "inside_aws_same_region")
def _(c):
    """Issued key used from AWS EC2 addresses of us-east-1 (the function's region, from the
    issuance), IPv4 and IPv6, with a custom runtime's UA (no exec-env/) -> inside, no alert
    (3 inside uses, 0 remote)."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    c.call(at(ATTACK, 10, 1), k, "aws_use1", "custom_runtime", "secret", creation=at(ATTACK, 10))
    r = c.call(at(ATTACK, 10, 2), k, "aws_use1_b", "custom_runtime", "secret", creation=at(ATTACK, 10))
    c.call(at(ATTACK, 10, 3), k, "aws_use1_v6", "custom_runtime", "secret", creation=at(ATTACK, 10))
    c.counters(inside_uses=3, remote_uses=0)
    t = c.twin(r, "sourceIPAddress", IP["aws_euw1"][0],
               """the second call comes from eu-west-1 EC2, where the function never runs: the key
               is used from two networks -> V1 (AS16509).""")
    t.expect(t.ev(r), 1)


@case("exclusions", "vpce_own_account")
def _(c):
    """VPC function: calls through a VPC endpoint of the account itself, with
    vpcEndpointAccountId = the account and without vpcEndpointAccountId -> inside, no alert
    (2 inside uses, 0 remote)."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    r = c.call(at(ATTACK, 10, 1), k, "private10", "runtime", "secret", creation=at(ATTACK, 10),
               vpce="vpce-0a1b2c3d4e5f60718", vpce_acct=ACCT)
    c.call(at(ATTACK, 10, 2), k, "private10", "runtime", "param", creation=at(ATTACK, 10),
           vpce="vpce-0a1b2c3d4e5f60718")
    c.counters(inside_uses=2, remote_uses=0)
    t = c.twin(r, "vpcEndpointAccountId", FOREIGN_ACCT,
               """the first call's endpoint belongs to another account: remote, claiming exec-env/
               -> V1, ASN 0.""")
    t.expect(t.ev(r), 1, asn=0)


@case("exclusions", "private_no_endpoint")
def _(c):
    """Calls from a private address without vpcEndpointId (172.31/16, 10/8) -> inside, no alert
    (2 inside uses, 0 remote)."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    c.call(at(ATTACK, 10, 1), k, "private172", "boto3", "secret", creation=at(ATTACK, 10))
    r = c.call(at(ATTACK, 10, 2), k, "private10", "boto3", "secret", creation=at(ATTACK, 10))
    c.counters(inside_uses=2, remote_uses=0)
    t = c.twin(r, "sourceIPAddress", IP["do"][0],
               "the second call comes from DigitalOcean: two networks -> V1.")
    t.expect(t.ev(r), 1)


@case("exclusions", "other_session_inside_role_region")
def _(c):
    """bob's session of the Lambda role used from an EC2 address of us-east-1 (the role's
    function region, e.g. bob's instance) -> inside -> no alert (1 inside use, 0 remote)."""
    c.office_start()
    c.issue(at(1, 8), key("ENV0"))
    c.user_assume(at(ATTACK, 14), "bob", key("BOB2"), "bob-debug")
    r = c.call(at(ATTACK, 14, 5), key("BOB2"), "aws_use1_b", "boto3", "secret", session="bob-debug",
               creation=at(ATTACK, 14))
    c.counters(inside_uses=1, remote_uses=0)
    t = c.twin(r, "sourceIPAddress", IP["aws_euw1"][0],
               "bob's session is used from eu-west-1 EC2, outside the role's regions -> V5 (AS16509).")
    t.expect(t.ev(r), 5)


# =======================================================================================
# periods: activation (14 d), dedup (7 d), training window (30 d)
# =======================================================================================

def theft(c, day, label, ip="do", hh=10):
    """Key `label` issued to orders-api on `day` at hh:00, used from `ip` 20 minutes later."""
    k = key(label)
    c.issue(at(day, hh), k)
    return c.call(at(day, hh, 20), k, ip, "boto3", "secrets", creation=at(day, hh))


@case("periods", "activation_day13")
def _(c):
    """Remote use exactly 13 days after the account's first event (activation not over)
    -> no alert (the summary counts 1 activation suppression)."""
    c.office_start(at(0, 9))
    k = key("ENV1")
    c.issue(at(13, 8, 50), k)
    r = c.call(at(13, 9), k, "do", "boto3", "secrets", creation=at(13, 8, 50))
    c.counters(suppressed_activation=1)
    t = c.twin(c.events[0], "eventTime", iso(at(-1, 9)),
               """the account's first event (alice's ConsoleLogin) is a day earlier: the use is
               exactly 14 days after it -> V4 (0 activation suppressions).""")
    t.expect(t.ev(r), 4)
    t.counters(suppressed_activation=0)


@case("periods", "activation_1s_short")
def _(c):
    """Remote use 13 d 23:59:59 after the account's first event -> no alert (1 activation
    suppression)."""
    c.office_start(at(0, 9))
    k = key("ENV1")
    c.issue(at(13, 8, 50), k)
    r = c.call(at(14, 8, 59, 59), k, "do", "boto3", "secrets", creation=at(13, 8, 50))
    c.counters(suppressed_activation=1)
    t = c.twin(c.events[0], "eventTime", iso(at(0, 8, 59, 59)),
               """the account's first event is one second earlier: the use is exactly 14 days
               after it -> V4 (0 activation suppressions).""")
    t.expect(t.ev(r), 4)
    t.counters(suppressed_activation=0)


@case("periods", "activation_day14")
def _(c):
    """Remote use exactly 14 days after the account's first event -> V4."""
    c.office_start(at(0, 9))
    k = key("ENV1")
    c.issue(at(14, 8, 50), k)
    r = c.call(at(14, 9), k, "do", "boto3", "secrets", creation=at(14, 8, 50))
    c.expect(r, 4)


@case("periods", "dedup_6_days")
def _(c):
    """orders-api's key stolen and used from DigitalOcean on day 20 (V4), another key of the
    same function used from another DigitalOcean address 6 days later -> deduplicated (1
    dedup suppression)."""
    c.office_start()
    r = theft(c, ATTACK, "ENV1", "do")
    theft(c, ATTACK + 6, "ENV2", "do2")
    c.expect(r, 4)
    c.counters(suppressed_dedup=1)


@case("periods", "dedup_7_days_exact")
def _(c):
    """Same as dedup_6_days but exactly 7 days later: outside the window -> two V4 (0 dedup
    suppressions)."""
    c.office_start()
    r1 = theft(c, ATTACK, "ENV1", "do")
    r2 = theft(c, ATTACK + 7, "ENV2", "do2")
    c.expect(r1, 4)
    c.expect(r2, 4)
    c.counters(suppressed_dedup=0)


@case("periods", "dedup_8_days")
def _(c):
    """Same as dedup_6_days but 8 days later -> two V4."""
    c.office_start()
    r1 = theft(c, ATTACK, "ENV1", "do")
    r2 = theft(c, ATTACK + 8, "ENV2", "do2")
    c.expect(r1, 4)
    c.expect(r2, 4)


@case("periods", "dedup_other_asn")
def _(c):
    """Second theft 2 days later from another ASN (OVH): different dedup key -> two V4."""
    c.office_start()
    r1 = theft(c, ATTACK, "ENV1", "do")
    r2 = theft(c, ATTACK + 2, "ENV2", "ovh")
    c.expect(r1, 4)
    c.expect(r2, 4)


@case("periods", "baseline_office_29_days")
def _(c):
    """The office AS174 was last used by the account 29 days before the token's use from
    the office -> still in the baseline -> V3."""
    c.office_start(at(0, 9))
    r = theft(c, 29, "ENV1", "office2", hh=9)
    c.expect(r, 3)


@case("periods", "baseline_office_31_days")
def _(c):
    """The office AS174 was last used by the account 31 days before the token's use from
    the office -> expired from the 30-day baseline -> V4, not V3."""
    c.office_start(at(0, 9))
    r = theft(c, 31, "ENV1", "office2", hh=9)
    c.expect(r, 4)


@case("periods", "role_baseline_29_days")
def _(c):
    """bob assumed the Lambda role and used it from DigitalOcean on day 1; he does it again 29
    days later: identity and ASN still in the role's training window -> V6."""
    c.office_start()
    c.issue(at(0, 10), key("ENV0"))
    c.user_assume(at(1, 14), "bob", key("BOB1"), "bob-debug")
    c.call(at(1, 14, 5), key("BOB1"), "do2", "laptop_boto3", "table", session="bob-debug", creation=at(1, 14))
    c.user_assume(at(30, 14), "bob", key("BOB2"), "bob-debug")
    r = c.call(at(30, 14, 5), key("BOB2"), "do", "laptop_boto3", "secret", session="bob-debug",
               creation=at(30, 14))
    c.expect(r, 6)


@case("periods", "role_baseline_31_days")
def _(c):
    """Same as role_baseline_29_days but 31 days later: bob and AS14061 have left the role's
    30-day training window -> V5."""
    c.office_start()
    c.issue(at(0, 10), key("ENV0"))
    c.user_assume(at(1, 14), "bob", key("BOB1"), "bob-debug")
    c.call(at(1, 14, 5), key("BOB1"), "do2", "laptop_boto3", "table", session="bob-debug", creation=at(1, 14))
    c.user_assume(at(32, 14), "bob", key("BOB2"), "bob-debug")
    r = c.call(at(32, 14, 5), key("BOB2"), "do", "laptop_boto3", "secret", session="bob-debug",
               creation=at(32, 14))
    c.expect(r, 5)


@case("periods", "baseline_not_taught_by_lambda_tokens")
def _(c):
    """A token of orders-api is used from DigitalOcean on day 20 (V4); a day later a token of
    orders-worker (same role) is used from DigitalOcean: the first use taught no baseline ->
    V4 again (not V3)."""
    c.office_start()
    r1 = theft(c, ATTACK, "ENV1", "do")
    k = key("WORKER1")
    c.issue(at(ATTACK + 1, 10), k, fn="orders-worker")
    r2 = c.call(at(ATTACK + 1, 10, 20), k, "do2", "boto3", "secrets", session="orders-worker",
                creation=at(ATTACK + 1, 10))
    c.expect(r1, 4)
    c.expect(r2, 4, function="orders-worker")


@case("periods", "baseline_not_taught_by_lambda_role_sessions")
def _(c):
    """bob's session of the Lambda role was used from DigitalOcean on day 5 (training); on day
    20 orders-api's token is used from DigitalOcean: sessions of Lambda roles never teach the
    account baseline -> V4 (not V3)."""
    c.office_start()
    c.issue(at(1, 8), key("ENV0"))
    c.user_assume(at(5, 14), "bob", key("BOB1"), "bob-debug")
    c.call(at(5, 14, 5), key("BOB1"), "do2", "laptop_boto3", "table", session="bob-debug", creation=at(5, 14))
    r = theft(c, ATTACK, "ENV1", "do")
    c.expect(r, 4)


@case("periods", "baseline_is_per_account")
def _(c):
    """Account 444455556666's IAM user works from DigitalOcean; account 111122223333's token is
    used from DigitalOcean: baselines are per account -> V4 (not V3)."""
    c.account("444455556666")
    c.office_start(ip="do2")
    c.account(ACCT)
    c.office_start()
    r = theft(c, ATTACK, "ENV1", "do")
    c.expect(r, 4)


@case("periods", "activation_is_per_account")
def _(c):
    """Account 111122223333 started on day 0, account 444455556666 on day 19; both have a
    function token used from DigitalOcean on day 20: only the first account is active -> one
    V4 (the other is counted as an activation suppression)."""
    c.office_start()
    c.account("444455556666")
    c.office_start(at(19, 9))
    theft(c, ATTACK, "BENV1", "do")
    c.account(ACCT)
    r = theft(c, ATTACK, "ENV1", "do", hh=11)
    c.expect(r, 4)
    c.counters(suppressed_activation=1)


# =======================================================================================
# late: arrival orders (late attribution) and upgrades
# =======================================================================================

@case("late", "remote_first_issuance_later")
def _(c):
    """The remote use (10:20) arrives before the key's issuance (10:00, delivered late):
    held, then classified when the issuance arrives -> V4."""
    c.office_start()
    k = key("ENV1")
    r = c.call(at(ATTACK, 10, 20), k, "do", "boto3", "secrets", creation=at(ATTACK, 10))
    c.issue(at(ATTACK, 10), k)
    c.expect(r, 4)


@case("late", "remote_first_issuance_later_then_inside")
def _(c):
    """Remote use first, issuance later in the file (-> V4 when it arrives), then the
    function's own use of the key from us-east-1 EC2 -> V1 upgrade of the V4."""
    c.office_start()
    k = key("ENV1")
    r = c.call(at(ATTACK, 10, 20), k, "do", "boto3", "secrets", creation=at(ATTACK, 10))
    c.issue(at(ATTACK, 10), k)
    c.call(at(ATTACK, 10, 25), k, "aws_use1", "runtime", "secret", creation=at(ATTACK, 10))
    c.expect(r, 4)
    c.expect(r, 1, upgrade_of=4)


@case("late", "remote_first_then_runtime_inside")
def _(c):
    """Remote use of a key whose role is unknown (held); then the function's runtime uses the
    key from us-east-1 EC2 (exec-env/ UA): runtime learning makes it a token used inside
    -> V1; no issuance is ever seen."""
    c.office_start()
    k = key("ENV1")
    r = c.call(at(ATTACK, 10, 20), k, "do", "boto3", "secrets", creation=at(ATTACK, 10))
    c.call(at(ATTACK, 10, 25), k, "aws_use1", "runtime", "secret", creation=at(ATTACK, 10))
    c.expect(r, 1)


@case("late", "remote_first_function_learned_from_other_key")
def _(c):
    """Remote use (held, role unknown) of an environment key whose issuance is never seen;
    later Lambda issues another key to the same function: the role becomes Lambda's and the
    session name a known function -> the held use is a token -> V4."""
    c.office_start()
    r = c.call(at(ATTACK, 10, 20), key("ENV1"), "do", "boto3", "secrets", creation=at(ATTACK, 10))
    c.issue(at(ATTACK, 10, 30), key("ENV2"))
    c.expect(r, 4)


@case("late", "issuance_first")
def _(c):
    """Issuance, then the remote use -> V4 (classified at once)."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    r = c.call(at(ATTACK, 10, 20), k, "do", "boto3", "secrets", creation=at(ATTACK, 10))
    c.expect(r, 4)


@case("late", "inside_then_remote")
def _(c):
    """Inside use, then remote use of the same key -> a single V1 (no V4 first)."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    c.call(at(ATTACK, 10, 5), k, "aws_use1", "runtime", "secret", creation=at(ATTACK, 10))
    r = c.call(at(ATTACK, 10, 20), k, "do", "boto3", "secrets", creation=at(ATTACK, 10))
    c.expect(r, 1)


@case("late", "remote_then_inside_v4")
def _(c):
    """Remote use (V4), then an inside use of the same key (e.g. delivered late) -> V1 on the
    remote event, naming the V4."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    r = c.call(at(ATTACK, 10, 20), k, "do", "boto3", "secrets", creation=at(ATTACK, 10))
    c.call(at(ATTACK, 10, 15), k, "aws_use1", "runtime", "secret", creation=at(ATTACK, 10))
    c.expect(r, 4)
    c.expect(r, 1, upgrade_of=4)


@case("late", "remote_then_inside_v2")
def _(c):
    """Remote aws-cli use (V2), then an inside use -> V1 upgrade of the V2."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    r = c.call(at(ATTACK, 10, 20), k, "do", "cli", "whoami", creation=at(ATTACK, 10))
    c.call(at(ATTACK, 10, 30), k, "aws_use1", "runtime", "secret", creation=at(ATTACK, 10))
    c.expect(r, 2)
    c.expect(r, 1, upgrade_of=2)


@case("late", "remote_then_inside_v3")
def _(c):
    """Remote use from the office ASN (V3), then an inside use -> V1 upgrade of the V3."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    r = c.call(at(ATTACK, 10, 20), k, "office2", "laptop_boto3", "table", creation=at(ATTACK, 10))
    c.call(at(ATTACK, 10, 30), k, "aws_use1", "runtime", "secret", creation=at(ATTACK, 10))
    c.expect(r, 3)
    c.expect(r, 1, upgrade_of=3)


@case("late", "remote_first_function_learned_from_runtime")
def _(c):
    """Remote use (held, role unknown) of key ENV1, session orders-api; later another key
    ENV2 is used by the runtime from us-east-1 EC2 (exec-env/ UA): role and function become
    known -> the held use is a token -> V4."""
    c.office_start()
    r = c.call(at(ATTACK, 10, 20), key("ENV1"), "do", "boto3", "secrets", creation=at(ATTACK, 10))
    c.call(at(ATTACK, 10, 40), key("ENV2"), "aws_use1", "runtime", "secret", creation=at(ATTACK, 10, 30))
    c.expect(r, 4)


@case("late", "remote_first_assumption_later")
def _(c):
    """Training: bob assumed the Lambda role (day 5) and used it from DigitalOcean. Day 20: the
    use of bob's new session from DigitalOcean arrives before its AssumeRole (delivered late):
    held, then classified with the assuming identity bob -> V6 (not V5 'identity unknown')."""
    c.office_start()
    c.issue(at(1, 8), key("ENV0"))
    c.user_assume(at(5, 14), "bob", key("BOB1"), "bob-debug")
    c.call(at(5, 14, 5), key("BOB1"), "do2", "laptop_boto3", "table", session="bob-debug", creation=at(5, 14))
    r = c.call(at(ATTACK, 14, 5), key("BOB2"), "do", "laptop_boto3", "secret", session="bob-debug",
               creation=at(ATTACK, 14))
    c.user_assume(at(ATTACK, 14), "bob", key("BOB2"), "bob-debug")
    c.expect(r, 6)


# =======================================================================================
# network: IPv6, VPC endpoints, AWS regions, the Amazon-ASN fallback
# =======================================================================================

@case("network", "ipv6_remote")
def _(c):
    """Issued key used from a Hetzner IPv6 address (AS24940) -> V4."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    r = c.call(at(ATTACK, 10, 20), k, "hetzner6", "boto3", "secrets", creation=at(ATTACK, 10))
    c.expect(r, 4)


@case("network", "ipv6_inside_then_ipv6_remote")
def _(c):
    """Dual-stack VPC function: inside use over IPv6 from us-east-1 EC2, then the key is used
    from a Hetzner IPv6 address -> V1."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    c.call(at(ATTACK, 10, 5), k, "aws_use1_v6", "runtime", "secret", creation=at(ATTACK, 10))
    r = c.call(at(ATTACK, 10, 20), k, "hetzner6", "boto3", "secrets", creation=at(ATTACK, 10))
    c.expect(r, 1)


@case("network", "vpce_foreign_account")
def _(c):
    """Issued key used through a VPC endpoint owned by another account (the attacker's VPC,
    private source address) -> remote, ASN 0 -> V4."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    r = c.call(at(ATTACK, 10, 20), k, "private172", "boto3", "secrets", creation=at(ATTACK, 10),
               vpce="vpce-07e1d2c3b4a596870", vpce_acct=FOREIGN_ACCT)
    c.expect(r, 4)


@case("network", "vpce_foreign_account_with_inside")
def _(c):
    """The function uses its key through its own account's endpoint, then the key is used
    through another account's endpoint -> V1, ASN 0."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    c.call(at(ATTACK, 10, 5), k, "private10", "runtime", "secret", creation=at(ATTACK, 10),
           vpce="vpce-0a1b2c3d4e5f60718", vpce_acct=ACCT)
    r = c.call(at(ATTACK, 10, 20), k, "private172", "boto3", "secrets", creation=at(ATTACK, 10),
               vpce="vpce-07e1d2c3b4a596870", vpce_acct=FOREIGN_ACCT)
    c.expect(r, 1)


@case("network", "aws_other_region")
def _(c):
    """Key of a us-east-1 function used from an EC2 address of eu-west-1 (the attacker's
    instance), never inside -> remote -> V4 (AS16509)."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    r = c.call(at(ATTACK, 10, 20), k, "aws_euw1", "boto3", "secrets", creation=at(ATTACK, 10))
    c.expect(r, 4)


@case("network", "aws_other_region_with_inside")
def _(c):
    """Used inside from us-east-1 EC2, then from eu-west-1 EC2 -> two networks -> V1."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    c.call(at(ATTACK, 10, 5), k, "aws_use1", "runtime", "secret", creation=at(ATTACK, 10))
    r = c.call(at(ATTACK, 10, 20), k, "aws_euw1", "boto3", "secrets", creation=at(ATTACK, 10))
    c.expect(r, 1)


@case("network", "no_ranges_aws_other_region_with_inside", args=["@NO_RANGES@"])
def _(c):
    """As aws_other_region_with_inside, without ip-ranges.json: AWS addresses are known by
    Amazon ASN only, their region is unknown, so eu-west-1 EC2 counts as inside -> no alert
    (2 inside uses, 0 remote)."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    c.call(at(ATTACK, 10, 5), k, "aws_use1", "runtime", "secret", creation=at(ATTACK, 10))
    r = c.call(at(ATTACK, 10, 20), k, "aws_euw1", "boto3", "secrets", creation=at(ATTACK, 10))
    c.counters(inside_uses=2, remote_uses=0)
    t = c.twin(r, "sourceIPAddress", IP["do"][0],
               "without ip-ranges.json, the second call comes from DigitalOcean: still remote -> V1.")
    t.expect(t.ev(r), 1)


@case("network", "no_ranges_public_with_inside", args=["@NO_RANGES@"])
def _(c):
    """Without ip-ranges.json: the inside use from us-east-1 EC2 (AS14618) is inside by
    Amazon ASN, the use from DigitalOcean is still remote -> V1."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    c.call(at(ATTACK, 10, 5), k, "aws_use1", "runtime", "secret", creation=at(ATTACK, 10))
    r = c.call(at(ATTACK, 10, 20), k, "do", "boto3", "secrets", creation=at(ATTACK, 10))
    c.expect(r, 1)


@case("network", "ipv6_known_asn")
def _(c):
    """Token used from the office's IPv6 address (AS174, baseline learnt over IPv4) -> V3."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    r = c.call(at(ATTACK, 10, 20), k, "office6", "laptop_boto3", "table", creation=at(ATTACK, 10))
    c.expect(r, 3)


@case("network", "aws_function_second_region")
def _(c):
    """orders-api is deployed in us-east-1 and eu-west-1 with the same role (issuances in both
    regions): a us-east-1 key used from eu-west-1 EC2 is in a region where the function runs
    -> inside, no alert (1 inside use, 0 remote)."""
    c.office_start()
    k = key("ENV1")
    eu = c.issue(at(ATTACK, 9), key("ENVEU1"), region="eu-west-1")
    c.issue(at(ATTACK, 10), k)
    r = c.call(at(ATTACK, 10, 20), k, "aws_euw1", "runtime", "secret", creation=at(ATTACK, 10))
    c.counters(inside_uses=1, remote_uses=0)
    t = c.twin(eu, "awsRegion", REGION,
               """the first issuance is in us-east-1 too: eu-west-1 is no region of the
               function, so its use from eu-west-1 EC2 is remote and claims exec-env/ -> V1
               (AS16509).""")
    t.expect(t.ev(r), 1)


@case("network", "other_session_role_region_from_service_session")
def _(c):
    """The role's only known region is eu-west-1, from Lambda's service session (awslambda_*
    issuance there). bob's session used from eu-west-1 EC2 -> inside (no alert); used from
    us-east-1 EC2 -> outside the role's regions -> V5 (AS14618)."""
    c.office_start()
    c.issue(at(1, 8), key("POLLER1"), fn="awslambda_292_20260303080000334", region="eu-west-1")
    c.user_assume(at(ATTACK, 14), "bob", key("BOB2"), "bob-debug")
    c.call(at(ATTACK, 14, 5), key("BOB2"), "aws_euw1", "boto3", "secret", session="bob-debug",
           creation=at(ATTACK, 14), region="eu-west-1")
    r = c.call(at(ATTACK, 14, 6), key("BOB2"), "aws_use1", "boto3", "secret", session="bob-debug",
               creation=at(ATTACK, 14))
    c.expect(r, 5)


# =======================================================================================
# learning: knowing a role/function/key as Lambda's without its issuance
# =======================================================================================

@case("learning", "create_function_then_remote")
def _(c):
    """alice creates orders-api with the role (CreateFunction20150331, day 10); no issuance is
    ever seen; a key of the role whose session name is orders-api is used from DigitalOcean
    -> a token of a known function -> V4."""
    c.office_start()
    c.manage_function(at(10, 15), "CreateFunction20150331", FN)
    r = c.call(at(ATTACK, 10, 20), key("ENV1"), "do", "boto3", "secrets", creation=at(ATTACK, 10))
    c.expect(r, 4)


@case("learning", "update_function_config_arn_then_remote")
def _(c):
    """alice moves orders-api to the role with UpdateFunctionConfiguration20150331v2 naming the
    function by its full ARN; a key of the role with session orders-api is used from
    DigitalOcean -> V4."""
    c.office_start()
    c.manage_function(at(10, 15), "UpdateFunctionConfiguration20150331v2",
                      "arn:aws:lambda:us-east-1:%s:function:%s" % (ACCT, FN))
    r = c.call(at(ATTACK, 10, 20), key("ENV1"), "do", "boto3", "secrets", creation=at(ATTACK, 10))
    c.expect(r, 4)


@case("learning", "runtime_learning_same_key")
def _(c):
    """No issuance, no deployment: the function's runtime calls from us-east-1 EC2 with an
    exec-env/ UA (role becomes Lambda's, key a token used inside); then the same key is used
    from DigitalOcean -> V1."""
    c.office_start()
    k = key("ENV1")
    c.call(at(ATTACK, 10, 5), k, "aws_use1", "runtime", "secret", creation=at(ATTACK, 10))
    r = c.call(at(ATTACK, 10, 20), k, "do", "boto3", "secrets", creation=at(ATTACK, 10))
    c.expect(r, 1)


@case("learning", "runtime_learning_other_key")
def _(c):
    """Runtime learning from key ENV1 (exec-env/ UA from us-east-1 EC2) makes orders-api a
    known function; another key ENV2 with session orders-api is used only from DigitalOcean
    -> token -> V4."""
    c.office_start()
    c.call(at(ATTACK, 10, 5), key("ENV1"), "aws_use1", "runtime", "secret", creation=at(ATTACK, 10))
    r = c.call(at(ATTACK, 11, 20), key("ENV2"), "do", "boto3", "secrets", creation=at(ATTACK, 11))
    c.expect(r, 4)


@case("learning", "exec_env_claim_public_no_learning")
def _(c):
    """An exec-env/ UA from a public address teaches nothing (the UA is attacker-controlled):
    the role never becomes Lambda's, both held uses (keys ENV1, ENV2) expire and are dropped
    -> no alert (2 held, 2 expired, 0 resolved)."""
    c.office_start()
    r = c.call(at(ATTACK, 10, 20), key("ENV1"), "do", "runtime", "secrets", creation=at(ATTACK, 10))
    r2 = c.call(at(ATTACK, 10, 25), key("ENV2"), "do", "boto3", "secrets", creation=at(ATTACK, 10, 5))
    c.counters(held=2, held_expired=2, held_resolved=0)
    t = c.twin(r, "sourceIPAddress", IP["aws_use1"][0],
               """ENV1's exec-env/ call comes from us-east-1 EC2: runtime learning makes the role
               Lambda's and orders-api its function; ENV2 (session orders-api, no AssumeRole
               seen) used from DigitalOcean is a token -> V4.""")
    t.expect(t.ev(r2), 4)


@case("learning", "unknown_key_known_role_held")
def _(c):
    """orders-api-role is a Lambda role (issuance + inside use); a key of it with a session
    that is no function (ops-debug) and no AssumeRole seen is used from DigitalOcean: held
    to the end of input, then other session with unknown identity -> V5."""
    c.office_start()
    c.issue(at(ATTACK, 9), key("ENV0"))
    c.call(at(ATTACK, 9, 1), key("ENV0"), "aws_use1", "runtime", "secret", creation=at(ATTACK, 9))
    r = c.call(at(ATTACK, 10, 20), key("OPS1"), "do", "boto3", "secrets", session="ops-debug",
               creation=at(ATTACK, 10))
    c.expect(r, 5)


@case("learning", "unknown_key_known_role_expired")
def _(c):
    """As unknown_key_known_role_held, but the stream goes on past the hold (creationDate +
    12 h): the held use is classified at expiry -> V5; later function traffic stays quiet."""
    c.office_start()
    c.issue(at(ATTACK, 9), key("ENV0"))
    c.call(at(ATTACK, 9, 1), key("ENV0"), "aws_use1", "runtime", "secret", creation=at(ATTACK, 9))
    r = c.call(at(ATTACK, 10, 20), key("OPS1"), "do", "boto3", "secrets", session="ops-debug",
               creation=at(ATTACK, 10))
    for h in (20, 23):
        c.issue(at(ATTACK, h), key("ENV%d" % h))
        c.call(at(ATTACK, h, 1), key("ENV%d" % h), "aws_use1", "runtime", "secret", creation=at(ATTACK, h))
    c.expect(r, 5)


@case("learning", "update_function_config_partial_arn_then_remote")
def _(c):
    """UpdateFunctionConfiguration20150331v2 naming the function by its partial ARN
    (<account>:function:orders-api); a key with session orders-api used from DigitalOcean -> V4."""
    c.office_start()
    c.manage_function(at(10, 15), "UpdateFunctionConfiguration20150331v2", "%s:function:%s" % (ACCT, FN))
    r = c.call(at(ATTACK, 10, 20), key("ENV1"), "do", "boto3", "secrets", creation=at(ATTACK, 10))
    c.expect(r, 4)


@case("learning", "held_then_create_function")
def _(c):
    """A key of a role not (yet) known as Lambda's, session orders-report, is used from
    DigitalOcean (held); 40 minutes later alice creates function orders-report with that role
    -> the held use is a token of a known function -> V4."""
    c.office_start()
    r = c.call(at(ATTACK, 10, 20), key("REPORT1"), "do", "boto3", "secrets", session="orders-report",
               creation=at(ATTACK, 10))
    c.manage_function(at(ATTACK, 11), "CreateFunction20150331", "orders-report")
    c.expect(r, 4, function="orders-report")


@case("learning", "held_expires_before_function_known")
def _(c):
    """The role is Lambda's (issuance of orders-api); a key with session orders-report is used
    from DigitalOcean at 10:20 (creationDate 10:00, held until 22:00). Only the next day does
    alice create function orders-report: the hold had expired -> other session, identity
    unknown -> V5. (Getting V4 means knowledge learnt after the hold's expiry was applied: the
    answer would then depend on whether unrelated events happened to arrive in between.)"""
    c.office_start()
    c.issue(at(ATTACK, 9), key("ENV0"))
    c.call(at(ATTACK, 9, 1), key("ENV0"), "aws_use1", "runtime", "secret", creation=at(ATTACK, 9))
    r = c.call(at(ATTACK, 10, 20), key("REPORT1"), "do", "boto3", "secrets", session="orders-report",
               creation=at(ATTACK, 10))
    c.manage_function(at(ATTACK + 1, 9), "CreateFunction20150331", "orders-report")
    c.expect(r, 5)


@case("learning", "create_function_regions")
def _(c):
    """orders-api is created in eu-west-1 (its only region; no issuance seen). Key ENV1 with
    session orders-api used from eu-west-1 EC2 -> inside; key ENV2 used from us-east-1 EC2 ->
    a region where the function never runs -> V4 (AS14618)."""
    c.office_start()
    c.manage_function(at(10, 15), "CreateFunction20150331", FN, region="eu-west-1")
    c.call(at(ATTACK, 10, 5), key("ENV1"), "aws_euw1", "runtime", "secret", creation=at(ATTACK, 10),
           region="eu-west-1")
    r = c.call(at(ATTACK, 10, 20), key("ENV2"), "aws_use1", "boto3", "secrets", creation=at(ATTACK, 10, 10),
               region="eu-west-1")
    c.expect(r, 4)


@case("learning", "shared_role_65th_function")
def _(c):
    """One execution role shared by 65 functions, all created in us-east-1; orders-api is the
    65th. Its key is used from eu-west-1 EC2, where none of them runs -> V4 (AS16509). (The
    role kept only 64 functions once: orders-api went unlearned, no region of it was known,
    and the call counted as inside: a missed alert.)"""
    c.office_start()
    for i in range(64):
        c.manage_function(at(1, 10, i // 60, i % 60), "CreateFunction20150331", "billing-%02d" % i)
    c.manage_function(at(2, 10), "CreateFunction20150331", FN)
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    r = c.call(at(ATTACK, 10, 20), k, "aws_euw1", "boto3", "secrets", creation=at(ATTACK, 10),
               region="eu-west-1")
    c.expect(r, 4)


NINE_REGIONS = ["us-east-1", "us-east-2", "us-west-1", "us-west-2", "ap-south-1", "ap-northeast-1",
                "ca-central-1", "sa-east-1", "eu-west-1"]


@case("learning", "function_in_nine_regions")
def _(c):
    """orders-api runs in nine regions under one (global) role: Lambda issues its keys in each,
    eu-west-1 last. The eu-west-1 key is used from eu-west-1 EC2 with a custom runtime's UA ->
    inside, no alert (1 inside use, 0 remote). (A function kept 8 regions once: eu-west-1 went
    unlearned and this call raised a false V4.)"""
    c.office_start()
    for i, region in enumerate(NINE_REGIONS[:-1]):
        c.issue(at(1 + i, 10), key("OLD%d" % i), region=region)
    k = key("ENV1")
    iss = c.issue(at(ATTACK, 10), k, region=NINE_REGIONS[-1])
    c.call(at(ATTACK, 10, 20), k, "aws_euw1", "custom_runtime", "secret", creation=at(ATTACK, 10),
           region="eu-west-1")
    c.counters(inside_uses=1, remote_uses=0)
    t = c.twin(iss, "awsRegion", "eu-central-1",
               """the last issuance is in eu-central-1: no key of the function was issued in
               eu-west-1, so the call from eu-west-1 EC2 is remote -> V4 (AS16509).""")
    t.expect(t.events[-1], 4)


@case("learning", "runtime_learning_adds_no_region")
def _(c):
    """Runtime learning only (exec-env/ call from us-east-1 EC2) never adds a region: the same
    key then used from eu-west-1 EC2 is still inside (no region of the function known) -> no
    alert (documented limit; 2 inside uses, 0 remote)."""
    c.office_start()
    k = key("ENV1")
    c.call(at(ATTACK, 10, 5), k, "aws_use1", "runtime", "secret", creation=at(ATTACK, 10))
    r = c.call(at(ATTACK, 10, 20), k, "aws_euw1", "boto3", "secrets", creation=at(ATTACK, 10))
    c.counters(inside_uses=2, remote_uses=0)
    t = c.twin(r, "sourceIPAddress", IP["do"][0],
               "the second call comes from DigitalOcean: two networks -> V1.")
    t.expect(t.ev(r), 1)


# =======================================================================================
# sessions (spec v2 §5): who issued a session decides, never its name
# =======================================================================================
POLLER = "awslambda_292_20260322100000334"


@case("sessions", "poller_issued_then_remote")
def _(c):
    """Spec v2: Lambda issues a key to its event-source poller (roleSessionName
    awslambda_292_<timestamp>); the key is then used from OVH with plain boto3: a Lambda token
    naming no function, judged against the role's regions (us-east-1) -> V4, function none."""
    c.office_start()
    k = key("POLLER1")
    c.issue(at(ATTACK, 10), k, fn=POLLER)
    r = c.call(at(ATTACK, 10, 20), k, "ovh", "boto3", "secret", session=POLLER, creation=at(ATTACK, 10))
    c.expect(r, 4, function=None)
    c.counters(held=0, excluded=0)


@case("sessions", "poller_remote_then_issued")
def _(c):
    """Spec v2, other arrival order: the role is Lambda's (orders-api's issuance, day 1); the
    poller key's use from OVH (boto3) arrives before its issuance by Lambda: held (the name
    decides nothing), then the issuance makes it a Lambda token -> V4, function none
    (1 held, 1 resolved)."""
    c.office_start()
    c.issue(at(1, 8), key("ENV0"))
    k = key("POLLER1")
    r = c.call(at(ATTACK, 10, 20), k, "ovh", "boto3", "secret", session=POLLER, creation=at(ATTACK, 10))
    c.issue(at(ATTACK, 10), k, fn=POLLER)
    c.expect(r, 4, function=None)
    c.counters(held=1, held_resolved=1, held_expired=0)


@case("sessions", "poller_remote_then_issued_role_unknown")
def _(c):
    """Spec v2: as poller_remote_then_issued, but nothing made the role Lambda's before: the
    poller's issuance is the first sign of it -> V4, function none (1 held, 1 resolved)."""
    c.office_start()
    k = key("POLLER1")
    r = c.call(at(ATTACK, 10, 20), k, "ovh", "boto3", "secret", session=POLLER, creation=at(ATTACK, 10))
    c.issue(at(ATTACK, 10), k, fn=POLLER)
    c.expect(r, 4, function=None)
    c.counters(held=1, held_resolved=1, held_expired=0)


@case("sessions", "poller_inside_role_region")
def _(c):
    """Spec v2: the poller key (issued by Lambda in us-east-1) is used from us-east-1 EC2 with
    the poller's aws-internal/ UA: an AWS address of the role's region -> inside, no alert
    (1 inside use, 0 remote, 0 excluded)."""
    c.office_start()
    k = key("POLLER1")
    c.issue(at(ATTACK, 10), k, fn=POLLER)
    r = c.call(at(ATTACK, 10, 5), k, "aws_use1", "poller", "table", session=POLLER, creation=at(ATTACK, 10))
    c.counters(inside_uses=1, remote_uses=0, excluded=0)
    t = c.twin(r, "sourceIPAddress", IP["aws_euw1"][0],
               """the poller key is used from eu-west-1 EC2, outside the role's regions: remote,
               and the aws-internal/ UA claim makes it V1 (AS16509, function none).""")
    t.expect(t.ev(r), 1, function=None)


@case("sessions", "poller_service_source")
def _(c):
    """Spec v2: the poller key's calls made by the service itself (sourceIPAddress `AWS
    Internal`, aws-internal/ UA) never alert -> no alert (1 excluded)."""
    c.office_start()
    k = key("POLLER1")
    c.issue(at(ATTACK, 10), k, fn=POLLER)
    r = c.call(at(ATTACK, 10, 5), k, "AWS Internal", "poller", "table", session=POLLER,
               creation=at(ATTACK, 10))
    c.counters(excluded=1)
    t = c.twin(r, "sourceIPAddress", IP["ovh"][0],
               """the same call comes from OVH: a remote use of the poller's Lambda token claiming
               an AWS-internal UA -> V1, function none (0 excluded).""")
    t.expect(t.ev(r), 1, function=None)
    t.counters(excluded=0)


@case("sessions", "poller_inside_then_remote")
def _(c):
    """Spec v2: the poller key is used from us-east-1 EC2 (inside, the role's region) and then
    from DigitalOcean with boto3: two networks within its lifetime -> V1, function none."""
    c.office_start()
    k = key("POLLER1")
    c.issue(at(ATTACK, 10), k, fn=POLLER)
    c.call(at(ATTACK, 10, 5), k, "aws_use1", "poller", "table", session=POLLER, creation=at(ATTACK, 10))
    r = c.call(at(ATTACK, 10, 30), k, "do", "boto3", "secrets", session=POLLER, creation=at(ATTACK, 10))
    c.expect(r, 1, function=None)


@case("sessions", "poller_name_teaches_no_function")
def _(c):
    """Spec v2: a poller session's name never teaches a function. Lambda issues POLLER1 with
    session awslambda_292_<ts>; another key with that same session name, whose AssumeRole is
    never seen, is used from DigitalOcean: not a known function's session, so held and, at
    the end of input, an other session of the Lambda role with unknown identity -> V5 (not V4)."""
    c.office_start()
    c.issue(at(ATTACK, 10), key("POLLER1"), fn=POLLER)
    r = c.call(at(ATTACK, 10, 20), key("ODD1"), "do", "boto3", "secrets", session=POLLER,
               creation=at(ATTACK, 10, 10))
    c.expect(r, 5)
    c.counters(held=1)


@case("sessions", "user_awslambda_session_assume_first")
def _(c):
    """Spec v2: bob assumes the Lambda role (AssumeRole by an IAM user) naming his session
    awslambda_x, then uses it from DigitalOcean: the name hides nothing, bob is new for the
    role -> V5, session awslambda_x (0 excluded, 0 held)."""
    c.office_start()
    c.issue(at(1, 8), key("ENV0"))
    c.user_assume(at(ATTACK, 14), "bob", key("BOB2"), "awslambda_x")
    r = c.call(at(ATTACK, 14, 5), key("BOB2"), "do", "laptop_boto3", "secret", session="awslambda_x",
               creation=at(ATTACK, 14))
    c.expect(r, 5)
    c.counters(excluded=0, held=0)


@case("sessions", "user_awslambda_session_use_first")
def _(c):
    """Spec v2, other arrival order: the use of bob's awslambda_x session from DigitalOcean
    arrives before bob's AssumeRole: held, then classified with the assuming identity -> V5
    (1 held, 1 resolved, 0 excluded)."""
    c.office_start()
    c.issue(at(1, 8), key("ENV0"))
    r = c.call(at(ATTACK, 14, 5), key("BOB2"), "do", "laptop_boto3", "secret", session="awslambda_x",
               creation=at(ATTACK, 14))
    c.user_assume(at(ATTACK, 14), "bob", key("BOB2"), "awslambda_x")
    c.expect(r, 5)
    c.counters(excluded=0, held=1, held_resolved=1, held_expired=0)


@case("sessions", "user_awslambda_session_trained")
def _(c):
    """Spec v2: bob assumed the Lambda role as awslambda_x on day 5 (key BOB1) and used it from
    his DigitalOcean droplet; on day 20 he does it again (key BOB2): identity and ASN seen in
    training -> V6 (the name excludes nothing)."""
    c.office_start()
    c.issue(at(1, 8), key("ENV0"))
    c.user_assume(at(5, 14), "bob", key("BOB1"), "awslambda_x")
    c.call(at(5, 14, 5), key("BOB1"), "do2", "laptop_boto3", "table", session="awslambda_x",
           creation=at(5, 14))
    c.user_assume(at(ATTACK, 14), "bob", key("BOB2"), "awslambda_x")
    r = c.call(at(ATTACK, 14, 5), key("BOB2"), "do", "laptop_boto3", "secret", session="awslambda_x",
               creation=at(ATTACK, 14))
    c.expect(r, 6)


@case("sessions", "function_awslambda_orders_issued_first")
def _(c):
    """Spec v2: a function named awslambda_orders (Lambda's AssumeRole with roleSessionName
    awslambda_orders) is a function like any other: its key used from OVH with boto3 -> V4,
    function awslambda_orders."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k, fn="awslambda_orders")
    r = c.call(at(ATTACK, 10, 20), k, "ovh", "boto3", "secret", session="awslambda_orders",
               creation=at(ATTACK, 10))
    c.expect(r, 4, function="awslambda_orders")
    c.counters(excluded=0)


@case("sessions", "function_awslambda_orders_use_first")
def _(c):
    """Spec v2, other arrival order: awslambda_orders' key is used from DigitalOcean with
    aws-cli before its issuance arrives: held, then a token of function awslambda_orders -> V2
    (1 held, 1 resolved)."""
    c.office_start()
    k = key("ENV1")
    r = c.call(at(ATTACK, 10, 20), k, "do", "cli", "whoami", session="awslambda_orders",
               creation=at(ATTACK, 10))
    c.issue(at(ATTACK, 10), k, fn="awslambda_orders")
    c.expect(r, 2, function="awslambda_orders")
    c.counters(held=1, held_resolved=1, held_expired=0, excluded=0)


@case("sessions", "function_awslambda_orders_created")
def _(c):
    """Spec v2: alice creates function awslambda_orders with the role (no issuance seen); a key
    of the role with session awslambda_orders is used from OVH -> token of a known function
    -> V4, function awslambda_orders."""
    c.office_start()
    c.manage_function(at(10, 15), "CreateFunction20150331", "awslambda_orders")
    r = c.call(at(ATTACK, 10, 20), key("ENV1"), "ovh", "boto3", "secret", session="awslambda_orders",
               creation=at(ATTACK, 10))
    c.expect(r, 4, function="awslambda_orders")


@case("sessions", "function_awslambda_orders_inside")
def _(c):
    """Spec v2: awslambda_orders' key used by its runtime from us-east-1 EC2 (its region) ->
    inside, no alert: counted as an inside use, not as excluded (1 inside, 0 excluded)."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k, fn="awslambda_orders")
    r = c.call(at(ATTACK, 10, 5), k, "aws_use1", "custom_runtime", "secret", session="awslambda_orders",
               creation=at(ATTACK, 10))
    c.counters(inside_uses=1, remote_uses=0, excluded=0)
    t = c.twin(r, "sourceIPAddress", IP["ovh"][0],
               "the key is used from OVH: remote -> V4, function awslambda_orders.")
    t.expect(t.ev(r), 4, function="awslambda_orders")


@case("sessions", "user_session_named_function_assume_first")
def _(c):
    """Spec v2: bob assumes the Lambda role with roleSessionName orders-api (the name of the
    role's function) and uses it from the office (AS174, in the account baseline): an
    AssumeRole by a user decides, not the name -> V5 (Medium), not V3 (Informational)."""
    c.office_start()
    c.issue(at(1, 8), key("ENV0"))
    c.user_assume(at(ATTACK, 14), "bob", key("BOB2"), FN)
    r = c.call(at(ATTACK, 14, 5), key("BOB2"), "office2", "laptop_boto3", "secret", session=FN,
               creation=at(ATTACK, 14))
    c.expect(r, 5)
    c.counters(held=0)


@case("sessions", "user_session_named_function_use_first")
def _(c):
    """Spec v2, other arrival order: the use of bob's session named orders-api from
    DigitalOcean arrives before bob's AssumeRole (delivered late). The spec: the name counts as
    a function only while no AssumeRole by another identity is known. When the use arrives,
    role and function are known and no AssumeRole is: it is decided at once as orders-api's
    token -> V4. The AssumeRole by bob then makes the key an other session; the stronger
    variation fires as its own alert on the same event, naming the V4 (the spec's rule for
    later evidence, as in late/remote_then_inside_v4) -> V4, then V5 upgrade of V4 (0 held,
    1 upgrade). Our choice, not holding every function-named use until an AssumeRole might
    come: a real function's stolen key whose issuance is late or never seen would otherwise
    alert only hours later; the caller's downgrade lasts only until its AssumeRole arrives."""
    c.office_start()
    c.issue(at(1, 8), key("ENV0"))
    r = c.call(at(ATTACK, 14, 5), key("BOB2"), "do", "laptop_boto3", "secret", session=FN,
               creation=at(ATTACK, 14))
    c.user_assume(at(ATTACK, 14), "bob", key("BOB2"), FN)
    c.expect(r, 4)
    c.expect(r, 5, upgrade_of=4)
    c.counters(held=0, upgrades=1)


@case("sessions", "user_session_named_function_use_first_role_unknown")
def _(c):
    """Spec v2, held uses wait for the AssumeRole as usual: the use of a session named
    orders-api from DigitalOcean arrives while the role is not yet known as Lambda's (held);
    bob's AssumeRole of it arrives, then Lambda's issuance of another key to orders-api makes
    the role Lambda's: the held use is bob's session -> V5 only, never V4 (1 held, 1 resolved,
    0 upgrades)."""
    c.office_start()
    r = c.call(at(ATTACK, 14, 5), key("BOB2"), "do", "laptop_boto3", "secret", session=FN,
               creation=at(ATTACK, 14))
    c.user_assume(at(ATTACK, 14), "bob", key("BOB2"), FN)
    c.issue(at(ATTACK, 14, 10), key("ENV1"))
    c.expect(r, 5)
    c.counters(held=1, held_resolved=1, held_expired=0, upgrades=0)


@case("sessions", "user_session_named_function_trained")
def _(c):
    """Spec v2: bob assumed the Lambda role as orders-api on day 5 (key BOB1) and used it from
    DigitalOcean; on day 20 again (key BOB2) from DigitalOcean: identity and ASN seen in
    training -> V6, not V4."""
    c.office_start()
    c.issue(at(1, 8), key("ENV0"))
    c.user_assume(at(5, 14), "bob", key("BOB1"), FN)
    c.call(at(5, 14, 5), key("BOB1"), "do2", "laptop_boto3", "table", session=FN, creation=at(5, 14))
    c.user_assume(at(ATTACK, 14), "bob", key("BOB2"), FN)
    r = c.call(at(ATTACK, 14, 5), key("BOB2"), "do", "laptop_boto3", "secret", session=FN,
               creation=at(ATTACK, 14))
    c.expect(r, 6)


# =======================================================================================
# network: source address forms (spec v2 §3, §5)
# =======================================================================================
UNRECOGNISED = [("wrong_case_aws_internal", "aws internal"),
                ("wrong_case_lambda", "Lambda.amazonaws.com"),
                ("hostname", "evil.example.com"),
                ("empty", ""),
                ("missing", None)]


def unrecognised_case(label, src):
    def story(c):
        c.office_start()
        k = key("ENV1")
        c.issue(at(ATTACK, 10), k)
        r = c.call(at(ATTACK, 10, 20), k, src or "", "boto3", "secrets", creation=at(ATTACK, 10))
        if src is None:
            del r["sourceIPAddress"]
        c.expect(r, 4, asn=0, source_ip=None if src else OMIT)
        c.counters(source_unrecognised=1, excluded=0)
    what = "no sourceIPAddress" if src is None else "sourceIPAddress %s" % json.dumps(src)
    story.__doc__ = ("Spec v2: the issued key is used with %s, neither an address nor a service "
                     "name as AWS writes it: counted (1 source_unrecognised, 0 excluded) and "
                     "judged remote with unknown ASN -> V4, ASN 0." % what)
    case("network", "source_unrecognised_" + label)(story)


for _label, _src in UNRECOGNISED:
    unrecognised_case(_label, _src)


@case("network", "source_unrecognised_all")
def _(c):
    """Spec v2: the five unrecognised forms (aws internal, Lambda.amazonaws.com,
    evil.example.com, empty, missing) in one story, then the exact AWS Internal and
    lambda.amazonaws.com: 5 source_unrecognised, 2 excluded; each unrecognised use is remote
    (5 remote uses) with ASN 0 -> one V4, the other four deduplicated (4 dedup suppressions)."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    first = None
    for i, (_, src) in enumerate(UNRECOGNISED):
        r = c.call(at(ATTACK, 10, 20 + i), k, src or "", "boto3", "secrets", creation=at(ATTACK, 10))
        if src is None:
            del r["sourceIPAddress"]
        first = first or r
    c.call(at(ATTACK, 10, 30), k, "AWS Internal", "AWS Internal", "table", creation=at(ATTACK, 10))
    c.call(at(ATTACK, 10, 31), k, "lambda.amazonaws.com", "lambda.amazonaws.com", "decrypt",
           creation=at(ATTACK, 10))
    c.expect(first, 4, asn=0)
    c.counters(source_unrecognised=5, excluded=2, remote_uses=5, suppressed_dedup=4, alerts_total=1)


# =======================================================================================
# eventtime: records dated outside CloudTrail's life never move the clock (spec v2 §5)
# =======================================================================================
def late_record(c, t, acct=None, ip="office"):
    """alice lists buckets from `ip`, dated `t` (an ISO string, possibly absurd)."""
    if acct:
        c.account(acct)
    c.office_start(at(0, 9), ip=ip)
    ev = c.events.pop()          # keep only the ListBuckets of office_start
    c.events.pop()
    c.events.append(ev)
    ev["eventTime"] = t
    c.account(ACCT)
    return ev


@case("eventtime", "poison_9999_and_1970")
def _(c):
    """Spec v2: an attack story with two absurd records in the middle. Account 111122223333:
    a key of orders-api-role (session orders-api) is used from the office (AS174) at 10:20
    while the role is not yet known (held); then a record dated 9999-12-31 (alice from Vultr;
    if accepted it would expire the hold and prune the AS174 baseline); then the key's issuance (10:00)
    arrives -> V3. Account 444455556666 started on day 10 (not active on day 20); a record of
    it dated 1970-01-02 (if accepted it would age the account past activation); its token used
    from DigitalOcean on day 20 -> suppressed. Both records are rejected
    (event_time_out_of_range: 2); 1 held, 1 resolved, 1 activation suppression."""
    c.office_start()
    c.account("444455556666")
    c.office_start(at(10, 9))
    c.account(ACCT)
    k = key("ENV1")
    r = c.call(at(ATTACK, 10, 20), k, "office2", "laptop_boto3", "table", creation=at(ATTACK, 10))
    p1 = late_record(c, "9999-12-31T23:59:59Z", ip="vultr")
    p2 = late_record(c, "1970-01-02T03:04:05Z", "444455556666")
    c.account("444455556666")
    theft(c, ATTACK, "BENV1", "do", hh=11)
    c.account(ACCT)
    c.issue(at(ATTACK, 10), k)
    c.expect(r, 3)
    c.counters(rejected=2, rejected_by={"event_time_out_of_range": 2}, held=1, held_resolved=1,
               held_expired=0, suppressed_activation=1)
    d = c.derive("control", """Control for poison_9999_and_1970: the same story without the two
                 absurd records gives the same alerts -> V3 (0 rejected, 1 held, 1 resolved, 1
                 activation suppression).""", drop=(p1, p2))
    d.expect(d.ev(r), 3)
    d.counters(rejected=0, held=1, held_resolved=1, held_expired=0, suppressed_activation=1)


@case("eventtime", "future_9999_keeps_baseline", args=["--batch", "1"])
def _(c):
    """Spec v2: a record dated 9999-12-31 (alice from Vultr) arrives between the account's
    first events and the theft; if it moved the clock, the office AS174 would leave the 30-day
    baseline (pruned). Scanned with --batch 1 so that pruning runs after every event. The
    token used from the office on day 20 -> V3 (event_time_out_of_range: 1, 0 pruned)."""
    c.office_start()
    late_record(c, "9999-12-31T23:59:59Z", ip="vultr")
    r = theft(c, ATTACK, "ENV1", "office2")
    c.expect(r, 3)
    c.counters(rejected=1, rejected_by={"event_time_out_of_range": 1}, pruned=0)


@case("eventtime", "epoch_1970_does_not_age_account")
def _(c):
    """Spec v2: the account starts on day 0; a record of it dated 1970-01-02 arrives before a
    theft on day 13 09:00. Rejected (event_time_out_of_range: 1), it does not make the account
    older: the activation period is not over -> no alert (1 activation suppression)."""
    c.office_start(at(0, 9))
    p = late_record(c, "1970-01-02T03:04:05Z")
    theft(c, 13, "ENV1", "do", hh=8)
    r = c.events[-1]
    c.counters(rejected=1, rejected_by={"event_time_out_of_range": 1}, suppressed_activation=1)
    t = c.twin(p, "eventTime", iso(at(-1, 8)),
               """the extra record is dated a day before the account's first event (valid): the
               account is 14 days old at the theft -> V4 (0 rejected, 0 activation
               suppressions).""")
    t.expect(t.ev(r), 4)
    t.counters(rejected=0, suppressed_activation=0)


@case("eventtime", "before_cloudtrail_launch")
def _(c):
    """Spec v2: a record dated 2013-10-31T23:59:59Z, one second before CloudTrail's launch,
    is rejected (event_time_out_of_range: 1) and does not age the account: theft on day 13
    -> no alert (1 activation suppression)."""
    c.office_start(at(0, 9))
    p = late_record(c, "2013-10-31T23:59:59Z")
    theft(c, 13, "ENV1", "do", hh=8)
    r = c.events[-1]
    c.counters(rejected=1, rejected_by={"event_time_out_of_range": 1}, suppressed_activation=1)
    t = c.twin(p, "eventTime", "2013-11-01T00:00:00Z",
               """the record is dated exactly 2013-11-01T00:00:00Z, CloudTrail's launch: valid,
               it makes the account years old -> V4 (0 rejected, 0 activation
               suppressions).""")
    t.expect(t.ev(r), 4)
    t.counters(rejected=0, suppressed_activation=0)


@case("periods", "dedup_6_days_earlier_arrives_later")
def _(c):
    """Spec v2 (dedup in any arrival order): a theft on day 26 is alerted (V4); a theft of
    another key of the same function from another DigitalOcean address on day 20, 6 days
    BEFORE it, arrives afterwards (a backlog) -> deduplicated (1 dedup suppression)."""
    c.office_start()
    r = theft(c, ATTACK + 6, "ENV2", "do2")
    theft(c, ATTACK, "ENV1", "do")
    c.expect(r, 4)
    c.counters(suppressed_dedup=1)


# Dedup in any arrival order (spec v2, issue 11). Each case's events are in arrival order;
# `theft` issues a key and uses it 20 minutes later from the same DigitalOcean address, so every
# theft below shares one dedup key (V4, account, role, orders-api, AS14061) and has its own key
# and alert ID.

@case("periods", "dedup_5_days_in_order")
def _(c):
    """Thefts on day 20 and day 25, arriving in time order -> one V4 (day 20), the day-25
    use deduplicated (1 dedup suppression)."""
    c.office_start()
    r = theft(c, ATTACK, "ENV1")
    theft(c, ATTACK + 5, "ENV2")
    c.expect(r, 4)
    c.counters(suppressed_dedup=1)


@case("periods", "dedup_5_days_reversed")
def _(c):
    """The same thefts arriving in the other order (day 25, then day 20 from a backlog) -> one
    V4 (day 25, the first to arrive), the day-20 use, 5 days BEFORE the alert, deduplicated
    (1 dedup suppression)."""
    c.office_start()
    r = theft(c, ATTACK + 5, "ENV2")
    theft(c, ATTACK, "ENV1")
    c.expect(r, 4)
    c.counters(suppressed_dedup=1)


@case("periods", "dedup_8_days_reversed")
def _(c):
    """Thefts 8 days apart arriving latest first (day 28, then day 20) -> two V4, as in time
    order (0 dedup suppressions)."""
    c.office_start()
    r2 = theft(c, ATTACK + 8, "ENV2")
    r1 = theft(c, ATTACK, "ENV1")
    c.expect(r2, 4)
    c.expect(r1, 4)
    c.counters(suppressed_dedup=0)


def chain(c, order):
    """Thefts on days 20, 25 and 30 (ENV0, ENV5, ENV10) arriving in `order` (day offsets)."""
    return {d: theft(c, ATTACK + d, "ENV%d" % d) for d in order}


@case("periods", "dedup_chain_in_order")
def _(c):
    """Thefts on days 20, 25, 30 in time order -> V4 on day 20, day 25 deduplicated, V4 on
    day 30 (10 days after the first alert) (1 dedup suppression)."""
    c.office_start()
    r = chain(c, (0, 5, 10))
    c.expect(r[0], 4)
    c.expect(r[10], 4)
    c.counters(suppressed_dedup=1)


@case("periods", "dedup_chain_reversed")
def _(c):
    """The same thefts arriving latest first (30, 25, 20) -> V4 on day 30, day 25
    deduplicated (5 days before it), V4 on day 20 (10 days before it): the same two alerts
    as in time order (1 dedup suppression)."""
    c.office_start()
    r = chain(c, (10, 5, 0))
    c.expect(r[10], 4)
    c.expect(r[0], 4)
    c.counters(suppressed_dedup=1)


@case("periods", "dedup_chain_ends_first")
def _(c):
    """Days 20 and 30 arrive first (two V4, 10 days apart), day 25 last: within 7 days of
    both alerts -> deduplicated (1 dedup suppression)."""
    c.office_start()
    r = chain(c, (0, 10, 5))
    c.expect(r[0], 4)
    c.expect(r[10], 4)
    c.counters(suppressed_dedup=1)


@case("periods", "dedup_chain_middle_first")
def _(c):
    """The order-dependent case, decided by the rule as written: day 25 arrives first and
    alerts; day 20 and day 30 are each within 7 days of that alert -> deduplicated. One V4
    (day 25) where time order gives two (days 20, 30): an alert is never retracted, and a
    match within 7 days of a raised alert never alerts (2 dedup suppressions)."""
    c.office_start()
    r = chain(c, (5, 0, 10))
    c.expect(r[5], 4)
    c.counters(suppressed_dedup=2)


@case("periods", "dedup_every_alert_is_kept")
def _(c):
    """Day 28 alerts, day 20 arrives next (8 days before: alerts too), then day 33: 5 days
    after the day-28 alert -> deduplicated. (A ledger holding only the last alert raised,
    day 20, let day 33 alert a second time within 7 days of day 28.) (1 dedup
    suppression)."""
    c.office_start()
    r28 = theft(c, ATTACK + 8, "ENV8")
    r20 = theft(c, ATTACK, "ENV0")
    theft(c, ATTACK + 13, "ENV13")
    c.expect(r28, 4)
    c.expect(r20, 4)
    c.counters(suppressed_dedup=1)


@case("periods", "dedup_backlog_after_prune")
def _(c):
    """V4 on day 20; the account's other events move the detector's clock to day 45 (a
    daily prune runs); a theft of day 22 then arrives from a region's backlog, 23 days late
    -> deduplicated against the day-20 alert, which the ledger keeps for 30 days of lateness
    past its window (1 dedup suppression)."""
    c.office_start()
    r = theft(c, ATTACK, "ENV1")
    c.office_start(at(45, 9))
    theft(c, ATTACK + 2, "ENV2")
    c.expect(r, 4)
    c.counters(suppressed_dedup=1)


@case("periods", "dedup_backlog_beyond_lateness")
def _(c):
    """The documented bound: V4 on day 20, the clock moves to day 58 (more than 7 + 30 days
    past the alert, so its ledger entry is pruned), then a theft of day 22 arrives 36 days
    late -> a second V4 (0 dedup suppressions)."""
    c.office_start()
    r1 = theft(c, ATTACK, "ENV1")
    c.office_start(at(58, 9))
    r2 = theft(c, ATTACK + 2, "ENV2")
    c.expect(r1, 4)
    c.expect(r2, 4)
    c.counters(suppressed_dedup=0)


# =======================================================================================
# review (r-detect): arrival orders the cases above did not cover
# =======================================================================================

@case("late", "remote_deduplicated_then_inside")
def _(c):
    """Two keys of orders-api used from DigitalOcean: ENV1's use alerts (V4), ENV2's is
    deduplicated against it; then ENV2's inside use arrives (delivered late): ENV2 is used from
    two networks -> V1 on ENV2's remote event, as when the inside use arrives first (V1 has its
    own dedup key; the V4 ledger entry does not cover it)."""
    c.office_start()
    k1, k2 = key("ENV1"), key("ENV2")
    c.issue(at(ATTACK, 10), k1)
    c.issue(at(ATTACK, 10, 1), k2)
    r1 = c.call(at(ATTACK, 10, 20), k1, "do", "boto3", "secrets", creation=at(ATTACK, 10))
    r2 = c.call(at(ATTACK, 10, 25), k2, "do2", "boto3", "secrets", creation=at(ATTACK, 10, 1))
    c.call(at(ATTACK, 10, 15), k2, "aws_use1", "runtime", "secret", creation=at(ATTACK, 10, 1))
    c.expect(r1, 4)
    c.expect(r2, 1)
    c.counters(suppressed_dedup=1)


@case("late", "inside_then_remote_deduplicated_control")
def _(c):
    """Control for remote_deduplicated_then_inside: the same events with ENV2's inside use
    arriving first -> V4 on ENV1, V1 on ENV2."""
    c.office_start()
    k1, k2 = key("ENV1"), key("ENV2")
    c.issue(at(ATTACK, 10), k1)
    c.issue(at(ATTACK, 10, 1), k2)
    r1 = c.call(at(ATTACK, 10, 20), k1, "do", "boto3", "secrets", creation=at(ATTACK, 10))
    c.call(at(ATTACK, 10, 15), k2, "aws_use1", "runtime", "secret", creation=at(ATTACK, 10, 1))
    r2 = c.call(at(ATTACK, 10, 25), k2, "do2", "boto3", "secrets", creation=at(ATTACK, 10, 1))
    c.expect(r1, 4)
    c.expect(r2, 1)
    c.counters(suppressed_dedup=0)


@case("late", "role_training_use_before_assumption")
def _(c):
    """Training: on day 5 the use of bob's session BOB1 from DigitalOcean arrives before bob's
    AssumeRole of it (held, then bob's session). Day 20: bob assumes the role again (BOB2) and
    uses it from DigitalOcean: identity and ASN were both seen for the role in training, with
    another key -> V6, as when day 5's AssumeRole arrives first (periods/role_baseline_29_days)."""
    c.office_start()
    c.issue(at(1, 8), key("ENV0"))
    c.call(at(5, 14, 5), key("BOB1"), "do2", "laptop_boto3", "table", session="bob-debug", creation=at(5, 14))
    c.user_assume(at(5, 14), "bob", key("BOB1"), "bob-debug")
    c.user_assume(at(ATTACK, 14), "bob", key("BOB2"), "bob-debug")
    r = c.call(at(ATTACK, 14, 5), key("BOB2"), "do", "laptop_boto3", "secret", session="bob-debug",
               creation=at(ATTACK, 14))
    c.expect(r, 6)


@case("late", "role_training_not_taught_by_unattributed_key")
def _(c):
    """Training: bob assumed the Lambda role on day 5 and used it from the office (AS174). On
    day 10 a key of the role whose AssumeRole is never seen (session ops-debug, perhaps a stolen
    token) is used from DigitalOcean: held, judged at the end of its hold as an other session with
    unknown identity (V5). Day 20: bob assumes the role again and uses it from DigitalOcean: only
    the unattributed key had used AS14061, which teaches the role nothing -> V5, not V6."""
    c.office_start()
    c.issue(at(1, 8), key("ENV0"))
    c.user_assume(at(5, 14), "bob", key("BOB1"), "bob-debug")
    c.call(at(5, 14, 5), key("BOB1"), "office2", "laptop_boto3", "table", session="bob-debug",
           creation=at(5, 14))
    c.call(at(10, 9, 5), key("ENV9"), "do2", "boto3", "secret", session="ops-debug", creation=at(10, 9))
    c.user_assume(at(ATTACK, 14), "bob", key("BOB2"), "bob-debug")
    r2 = c.call(at(ATTACK, 14, 5), key("BOB2"), "do", "laptop_boto3", "secret", session="bob-debug",
                creation=at(ATTACK, 14))
    c.counters(held=1, held_resolved=1, suppressed_activation=2)
    c.expect(r2, 5)


@case("late", "held_use_not_trained_by_later_assumption")
def _(c):
    """Training is the 30 days before the event judged, by event time. Day 10: alice's session
    of the role (not yet known as Lambda's) is used from DigitalOcean (AS14061 seen for the role; held, and dropped when its hold ends).
    Day 20 10:00 bob assumes the role for the first time (BOB1) and uses it at 10:05 from
    DigitalOcean: held. 11:00 bob assumes it again (BOB2); 12:00 Lambda's issuance makes the role
    Lambda's and BOB1's use is decided: bob's only other assumption is after 10:05, so it is no
    training for that use -> V5 (the build before gave V6, trained by BOB2), as when the issuance
    arrives first."""
    c.office_start()
    c.user_assume(at(10, 9), "alice", key("ALI1"), "alice-debug")
    c.call(at(10, 9, 5), key("ALI1"), "do2", "laptop_boto3", "table", session="alice-debug",
           creation=at(10, 9))
    c.user_assume(at(ATTACK, 10), "bob", key("BOB1"), "bob-debug")
    r = c.call(at(ATTACK, 10, 5), key("BOB1"), "do", "laptop_boto3", "secret", session="bob-debug",
               creation=at(ATTACK, 10))
    c.user_assume(at(ATTACK, 11), "bob", key("BOB2"), "bob-debug")
    c.issue(at(ATTACK, 12), key("ENV1"))
    c.counters(held=2, held_resolved=1, held_expired=1)
    c.expect(r, 5)
    d = c.derive("earlier_assumption",
                 "Control of held_use_not_trained_by_later_assumption: bob's BOB2 AssumeRole is on "
                 "day 15, before the held use, inside the training window -> V6.",
                 mutate=(c.events[-2], "eventTime", iso(at(15, 11))))
    d.counters(held=2, held_resolved=1, held_expired=1)
    d.expect(d.ev(r), 6)


@case("late", "late_arrival_not_trained_by_later_assumption")
def _(c):
    """The same in arrival order: the role is Lambda's; bob's second AssumeRole (BOB2, day 20
    11:00) arrives before his first (BOB1, 10:00) and BOB1's use at 10:05 from DigitalOcean
    (AS14061 seen for the role on day 10 with alice's session). For BOB1's use bob's only other
    assumption is later -> V5 (the build before gave V6)."""
    c.office_start()
    c.issue(at(1, 8), key("ENV0"))
    c.user_assume(at(10, 9), "alice", key("ALI1"), "alice-debug")
    c.call(at(10, 9, 5), key("ALI1"), "do2", "laptop_boto3", "table", session="alice-debug",
           creation=at(10, 9))
    c.user_assume(at(ATTACK, 11), "bob", key("BOB2"), "bob-debug")
    c.user_assume(at(ATTACK, 10), "bob", key("BOB1"), "bob-debug")
    r = c.call(at(ATTACK, 10, 5), key("BOB1"), "do", "laptop_boto3", "secret", session="bob-debug",
               creation=at(ATTACK, 10))
    c.expect(r, 5)


@case("late", "inside_then_remote_issuance_last")
def _(c):
    """Order independence: the role is Lambda's (orders-api); a key of a function not yet known
    (session billing, custom runtime: no exec-env/ to learn from) is used from us-east-1 EC2
    (inside) and then from DigitalOcean (held); Lambda's issuance of the key to billing arrives
    last. Two networks within its lifetime -> V1, as when the issuance arrives first (the build
    before forgot the inside use of the unknown key and gave V4)."""
    c.office_start()
    c.issue(at(1, 8), key("ENV0"))
    k = key("BILL1")
    c.call(at(ATTACK, 10, 5), k, "aws_use1", "custom_runtime", "table", session="billing",
           creation=at(ATTACK, 10))
    r = c.call(at(ATTACK, 10, 30), k, "do", "boto3", "secrets", session="billing", creation=at(ATTACK, 10))
    c.issue(at(ATTACK, 10), k, fn="billing")
    c.counters(held=1, held_resolved=1, inside_uses=1, remote_uses=1)
    c.expect(r, 1, function="billing")


@case("sessions", "poller_inside_then_remote_issuance_last")
def _(c):
    """Spec v2 and order independence: a poller key of the Lambda role is used from us-east-1 EC2
    (inside) and then from DigitalOcean (held, its issuance not yet seen); Lambda's issuance of it
    arrives last -> V1, function none, as sessions/poller_inside_then_remote (the build before
    gave V4)."""
    c.office_start()
    c.issue(at(1, 8), key("ENV0"))
    k = key("POLLER1")
    c.call(at(ATTACK, 10, 5), k, "aws_use1", "poller", "table", session=POLLER, creation=at(ATTACK, 10))
    r = c.call(at(ATTACK, 10, 30), k, "do", "boto3", "secrets", session=POLLER, creation=at(ATTACK, 10))
    c.issue(at(ATTACK, 10), k, fn=POLLER)
    c.counters(held=1, held_resolved=1)
    c.expect(r, 1, function=None)


@case("late", "inside_only_unknown_key_expires_quietly")
def _(c):
    """A key of the Lambda role never tied to a function or an identity (session ops-batch) is
    used only from us-east-1 EC2 (inside): its remembered inside use ends with its hold, no
    alert, nothing counted as held. Twin: the same use from DigitalOcean (remote) -> V5 at the
    end of the hold (identity unknown)."""
    c.office_start()
    c.issue(at(1, 8), key("ENV0"))
    r = c.call(at(ATTACK, 10, 5), key("OPS1"), "aws_use1", "custom_runtime", "table", session="ops-batch",
               creation=at(ATTACK, 10))
    c.counters(held=0, held_resolved=0, held_expired=0, inside_uses=1)
    t = c.twin(r, "sourceIPAddress", IP["do"][0], "the use comes from DigitalOcean (remote): V5")
    t.counters(held=1, held_resolved=1, held_expired=0)
    t.expect(t.ev(r), 5)


@case("late", "late_assumption_between_others_is_training")
def _(c):
    """bob assumes the Lambda role on days 2, 40 and 41 (those records arrive first), then his
    day-35 AssumeRole arrives late. Day 36 bob assumes it again and uses it from DigitalOcean
    (AS14061, seen for the role with alice's session on day 30, her first: V5): his day-35
    assumption is training for it (another key, within 30 days before) -> V6. The late day-35 sighting changed none of
    the record's latest/first times, only its per-key list, and must still be stored."""
    c.office_start()
    c.issue(at(1, 8), key("ENV0"))
    c.user_assume(at(2, 9), "bob", key("BOB0"), "bob-debug")
    c.user_assume(at(40, 9), "bob", key("BOBA"), "bob-debug")
    c.user_assume(at(41, 9), "bob", key("BOBC"), "bob-debug")
    c.user_assume(at(35, 9), "bob", key("BOBB"), "bob-debug")
    c.user_assume(at(30, 9), "alice", key("ALI1"), "alice-debug")
    a = c.call(at(30, 9, 5), key("ALI1"), "do2", "laptop_boto3", "table", session="alice-debug",
               creation=at(30, 9))
    c.user_assume(at(36, 9), "bob", key("BOBD"), "bob-debug")
    r = c.call(at(36, 9, 5), key("BOBD"), "do", "laptop_boto3", "secret", session="bob-debug",
               creation=at(36, 9))
    c.expect(a, 5)
    c.expect(r, 6)


@case("late", "no_upgrade_once_region_known")
def _(c):
    """orders-api runs in us-east-1 and eu-west-1. Its us-east-1 key is used from eu-west-1 EC2
    before the eu-west-1 issuance arrives: remote then -> V4. The late issuance makes eu-west-1 a
    region of the function; then the key's inside use from us-east-1 arrives: the eu-west-1 call
    is now the function's own (both issuances first give no alert), so it is no second network
    and no V1 upgrade fires -> V4 only."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    r = c.call(at(ATTACK, 10, 20), k, "aws_euw1", "custom_runtime", "secrets", creation=at(ATTACK, 10))
    c.issue(at(ATTACK, 9), key("ENVW"), region="eu-west-1")
    c.call(at(ATTACK, 10, 25), k, "aws_use1", "custom_runtime", "secret", creation=at(ATTACK, 10))
    c.expect(r, 4, asn=16509)
    c.counters(upgrades=0)


@case("late", "remote_first_inside_then_issuance")
def _(c):
    """A function on a custom runtime (no exec-env/ in its user agent, so no runtime learning).
    Its key's remote use from DigitalOcean arrives first (held: the role is not known yet), then
    its inside use from us-east-1 EC2, then Lambda's issuance of the key: the key was used from two
    networks -> V1, as when the issuance arrives first (late/inside_then_remote)."""
    c.office_start()
    k = key("ENV1")
    r = c.call(at(ATTACK, 10, 20), k, "do", "boto3", "secrets", creation=at(ATTACK, 10))
    c.call(at(ATTACK, 10, 15), k, "aws_use1", "custom_runtime", "secret", creation=at(ATTACK, 10))
    c.issue(at(ATTACK, 10), k)
    c.expect(r, 1)
    c.counters(held=1, held_resolved=1, inside_uses=1, remote_uses=1)


def oidc_assume(c, t, akid, session, ip="do"):
    """A GitHub Actions workflow assumes the role through OIDC (sts:AssumeRoleWithWebIdentity),
    choosing its roleSessionName."""
    role = c.role
    rname = role.rsplit("/", 1)[1]
    provider = "arn:aws:iam::%s:oidc-provider/token.actions.githubusercontent.com" % c.acct
    sub = "repo:acme/orders:ref:refs/heads/main"
    return c._add({
        "eventVersion": "1.08",
        "userIdentity": {"type": "WebIdentityUser", "principalId": "%s:sts.amazonaws.com:%s" % (provider, sub),
                         "userName": sub, "identityProvider": provider},
        "eventTime": iso(t), "eventSource": "sts.amazonaws.com", "eventName": "AssumeRoleWithWebIdentity",
        "awsRegion": REGION, "sourceIPAddress": IP[ip][0],
        "userAgent": "aws-sdk-nodejs/2.1500.0 linux/v20.10.0 configure-aws-credentials-for-github-actions promise",
        "requestParameters": {"roleArn": role, "roleSessionName": session, "durationSeconds": 3600},
        "responseElements": {"credentials": {"accessKeyId": akid, "sessionToken": token(akid),
                                             "expiration": expiration(t + HOUR)},
                             "subjectFromWebIdentityToken": sub,
                             "assumedRoleUser": {"assumedRoleId": "%s:%s" % (role_id(role), session),
                                                 "arn": "arn:aws:sts::%s:assumed-role/%s/%s" % (c.acct, rname, session)},
                             "provider": provider, "audience": "sts.amazonaws.com"},
        "readOnly": True, "resources": [{"accountId": c.acct, "type": "AWS::IAM::Role", "ARN": role}],
        "eventType": "AwsApiCall", "managementEvent": True, "recipientAccountId": c.acct,
        "eventCategory": "Management"})


@case("sessions", "oidc_session_named_function")
def _(c):
    """A CI workflow assumes the Lambda role through OIDC (AssumeRoleWithWebIdentity) naming its
    session orders-api (the role's function) and uses it from DigitalOcean: the assumer decides,
    not the name, whichever STS assume API it used -> V5 (Medium), not a token's V3/V4
    (Informational); 0 held (the assumption is known)."""
    c.office_start()
    c.issue(at(1, 8), key("ENV0"))
    oidc_assume(c, at(ATTACK, 14), key("GHA1"), FN)
    r = c.call(at(ATTACK, 14, 5), key("GHA1"), "do", "boto3", "secret", session=FN, creation=at(ATTACK, 14))
    c.expect(r, 5)
    c.counters(held=0)


@case("sessions", "oidc_session_trained")
def _(c):
    """The CI workflow assumed the Lambda role through OIDC on day 5 (key GHA1) and used it from
    DigitalOcean; on day 20 again (key GHA2): the workflow's identity and ASN were seen for the
    role in training -> V6 (not V5 'identity unknown')."""
    c.office_start()
    c.issue(at(1, 8), key("ENV0"))
    oidc_assume(c, at(5, 14), key("GHA1"), "gha-deploy")
    c.call(at(5, 14, 5), key("GHA1"), "do2", "boto3", "table", session="gha-deploy", creation=at(5, 14))
    oidc_assume(c, at(ATTACK, 14), key("GHA2"), "gha-deploy")
    r = c.call(at(ATTACK, 14, 5), key("GHA2"), "do", "boto3", "secret", session="gha-deploy",
               creation=at(ATTACK, 14))
    c.expect(r, 6)


def console_login(c, when, ip, ok):
    """alice's console sign-in: no credentials in userIdentity; a failure carries an errorMessage
    and no errorCode, as CloudTrail logs it"""
    ev = {"eventVersion": "1.09",
          "userIdentity": {"type": "IAMUser", "principalId": c.iam_user("alice")["principalId"],
                           "accountId": c.acct, "accessKeyId": "", "userName": "alice"},
          "eventTime": iso(when), "eventSource": "signin.amazonaws.com",
          "eventName": "ConsoleLogin", "awsRegion": "us-east-1", "sourceIPAddress": ip,
          "userAgent": UA["browser"], "requestParameters": None,
          "responseElements": {"ConsoleLogin": "Success" if ok else "Failure"},
          "additionalEventData": {"LoginTo": "https://console.aws.amazon.com/console/home",
                                  "MobileVersion": "No", "MFAUsed": "Yes" if ok else "No"},
          "eventType": "AwsConsoleSignIn", "managementEvent": True, "recipientAccountId": c.acct,
          "eventCategory": "Management"}
    if not ok:
        ev["errorMessage"] = "Failed authentication"
    c._add(ev)


@case("periods", "baseline_taught_by_successful_sign_in")
def _(c):
    """Twin of baseline_not_taught_by_failed_sign_in: alice signs in to the console from a
    DigitalOcean droplet on day 19 and succeeds (no credentials in the event, no error). On day 20
    orders-api's token is used from DigitalOcean: the account's identity used that network in
    training -> V3 'known ASN'."""
    c.office_start()
    console_login(c, at(ATTACK - 1, 3), IP["do2"][0], ok=True)
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    r = c.call(at(ATTACK, 10, 20), k, "do", "boto3", "secrets", creation=at(ATTACK, 10))
    c.expect(r, 3)


@case("periods", "baseline_not_taught_by_failed_sign_in")
def _(c):
    """Someone on a DigitalOcean droplet fails to sign in to the console as alice on day 19 (a
    failed ConsoleLogin: errorMessage "Failed authentication", no errorCode, no credentials;
    anyone who knows the account can cause one). On day 20 orders-api's token is used from
    DigitalOcean: a failed sign-in is no use of the network by the account's identities -> V4,
    not V3 'known ASN'."""
    c.office_start()
    console_login(c, at(ATTACK - 1, 3), IP["do2"][0], ok=False)
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    r = c.call(at(ATTACK, 10, 20), k, "do", "boto3", "secrets", creation=at(ATTACK, 10))
    c.expect(r, 4)


@case("sessions", "oidc_session_named_function_use_first_role_unknown")
def _(c):
    """As oidc_session_named_function in another arrival order: the CI session's use from
    DigitalOcean arrives while the role is not yet known as Lambda's (held), then its
    AssumeRoleWithWebIdentity (learned: the key's use waits for it), then Lambda's issuance of
    another key to orders-api makes the role Lambda's: the held use is the workflow's session ->
    V5 only, never V4 (1 held, 1 resolved)."""
    c.office_start()
    r = c.call(at(ATTACK, 14, 5), key("GHA1"), "do", "boto3", "secret", session=FN, creation=at(ATTACK, 14))
    oidc_assume(c, at(ATTACK, 14), key("GHA1"), FN)
    c.issue(at(ATTACK, 14, 10), key("ENV1"))
    c.expect(r, 5)
    c.counters(held=1, held_resolved=1, held_expired=0, upgrades=0)


# =======================================================================================
# output
# =======================================================================================

def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def counters_text(want):
    parts = []
    for section in ("records", "alerts", "detector"):
        for k, v in sorted(want.get(section, {}).items()):
            if isinstance(v, dict):
                parts += ["%s.%s=%d" % (k, r, n) for r, n in sorted(v.items())]
            else:
                parts.append("%s=%d" % (k, v))
    return ", ".join(parts)


def check_cases():
    """Rules every generated case obeys (run_cases.py checks them again on the files)."""
    names = set()
    for c in CASES:
        assert (c.group, c.name) not in names, c.name
        names.add((c.group, c.name))
    for c in CASES:
        if not c.expected:
            assert c.twin_name, "%s/%s: a no-alert case needs a positive twin (Case.twin)" % (c.group, c.name)
            t = [d for d in CASES if d.group == c.group and d.name == c.twin_name]
            assert t and t[0].expected, "%s/%s: its twin must alert" % (c.group, c.name)


def generate(root):
    """Write every case and INDEX.md under `root`."""
    for group in sorted({c.group for c in CASES}):
        d = os.path.join(root, group)
        if os.path.isdir(d):
            shutil.rmtree(d)
        os.makedirs(d)
    index = ["# Detection cases", "",
             "Generated by `make_cases.py` (edit that, then run it); run with",
             "`python3 tests/run_cases.py --trailhound build/trailhound --shared /work/shared/data tests/cases`.",
             "Expected: `Vn` = an alert of variation n on the named event, `none` = no alert.",
             "Every `none` case names its positive twin: the same story with ONE field of one event",
             "changed, which must alert (`<name>.twin`; the runner checks the one-field difference and",
             "runs the twin). Counters: the `scan --summary-json` values the story names",
             "(`<name>.counters.json`, compared exactly; a reason or variation not listed must be 0).", ""]
    group = None
    for c in CASES:
        if c.group != group:
            group = c.group
            index += ["", "## " + group, "", "| case | expected | counters | story |", "|---|---|---|---|"]
        base = os.path.join(root, c.group, c.name)
        write(base + ".jsonl", "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in c.events))
        write(base + ".expected.jsonl", "".join(json.dumps(w) + "\n" for w in c.expected))
        if c.args:
            write(base + ".args", "\n".join(c.args) + "\n")
        if c.counter_want:
            write(base + ".counters.json", json.dumps(c.counter_want, sort_keys=True) + "\n")
        if c.twin_name:
            write(base + ".twin", c.twin_name + ".jsonl\n")
        exp = ", ".join("V%d%s" % (w["variation"], " (upgrade of V%d)" % w["upgrade_of_variation"]
                                   if "upgrade_of_variation" in w else "") for w in c.expected) or "none"
        if c.twin_name:
            exp += " (twin: %s)" % c.twin_name
        if c.args:
            exp += " [args: %s]" % " ".join(c.args)
        index.append("| %s | %s | %s | %s |" % (c.name, exp, counters_text(c.counter_want),
                                                c.doc.replace("|", "/")))
    write(os.path.join(root, "INDEX.md"), "\n".join(index) + "\n")


def same_tree(a, b):
    """The generated files under a and b are identical (names and bytes)."""
    diffs = []
    for group in sorted({c.group for c in CASES}):
        da, db = os.path.join(a, group), os.path.join(b, group)
        fa = set(os.listdir(da)) if os.path.isdir(da) else set()
        fb = set(os.listdir(db)) if os.path.isdir(db) else set()
        diffs += ["%s/%s" % (group, f) for f in sorted(fa ^ fb)]
        diffs += ["%s/%s" % (group, f) for f in sorted(fa & fb)
                  if not filecmp.cmp(os.path.join(da, f), os.path.join(db, f), shallow=False)]
    if not filecmp.cmp(os.path.join(a, "INDEX.md"), os.path.join(b, "INDEX.md"), shallow=False):
        diffs.append("INDEX.md")
    return diffs


def main():
    ap = argparse.ArgumentParser(description="Generate tests/cases/ from the definitions in this file.")
    ap.add_argument("--check", action="store_true",
                    help="write nothing; fail if the committed files differ from what would be generated")
    ap.add_argument("--trailhound", help="the binary whose variation table names the alerts "
                    "(default $TRAILHOUND, else build/trailhound)")
    a = ap.parse_args()
    if a.trailhound:
        os.environ["TRAILHOUND"] = a.trailhound
    check_cases()
    if a.check:
        with tempfile.TemporaryDirectory() as tmp:
            generate(tmp)
            diffs = same_tree(tmp, HERE)
        if diffs:
            print("tests/cases is out of date with make_cases.py (run it and commit): " + ", ".join(diffs),
                  file=sys.stderr)
            return 1
        print("%d cases up to date" % len(CASES), file=sys.stderr)
        return 0
    generate(HERE)
    print("%d cases written (%d no-alert, each with a positive twin; %d with counters)"
          % (len(CASES), sum(not c.expected for c in CASES), sum(bool(c.counter_want) for c in CASES)),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

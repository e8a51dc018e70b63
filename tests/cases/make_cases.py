#!/usr/bin/env python3
"""Build the declarative detection cases under tests/cases/ from compact definitions.

Each case below is a function that tells a short story in CloudTrail events and
says which alerts the detector must raise (docs/detections.md).  Running

    python3 tests/cases/make_cases.py

(re)writes, for every case, `<group>/<name>.jsonl` (the events, one per line, in
arrival order), `<name>.expected.jsonl` (the alerts; empty = no alert) and, when
needed, `<name>.args` (extra `scan` arguments, one token per line), plus
`INDEX.md` (the list of cases and what each expects).  Output is deterministic:
the generated files are committed and are what tests/run_cases.py reads.

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
import calendar
import hashlib
import json
import os
import shutil
import sys
import time

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

ALERT = {
    1: ("Suspicious usage of AWS Lambda's token", "High"),
    2: ("Remote command line usage of AWS Lambda's token", "High"),
    3: ("Usage of AWS Lambda's token from known ASN", "Informational"),
    4: ("Remote usage of AWS Lambda's token", "Informational"),
    5: ("Suspicious usage of AWS Lambda's role", "Medium"),
    6: ("Suspicious usage of AWS Lambda's role", "Low"),
}


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


class Case:
    def __init__(self, group, name, doc, args=()):
        self.group, self.name, self.doc, self.args = group, name, doc, list(args)
        self.events = []
        self.expected = []
        self.account(ACCT)

    def account(self, acct):
        """Switch the account the following events belong to (its role: orders-api-role)."""
        self.acct = acct
        self.role = ROLE.replace(ACCT, acct)

    # ---- plumbing ----------------------------------------------------------------------
    def _add(self, ev):
        n = len(self.events) + 1
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
    def expect(self, ev, variation, function=FN, session=None, upgrade_of=None, asn=None):
        name, sev = ALERT[variation]
        ip = ev["sourceIPAddress"]
        if asn is None:
            asn = {v[0]: v[1] for v in IP.values()}[ip]
        want = {"variation": variation, "alert_name": name, "severity": sev, "event_id": ev["eventID"],
                "account_id": ev["userIdentity"]["accountId"], "role_arn": ev["userIdentity"]["sessionContext"]["sessionIssuer"]["arn"],
                "access_key_id": ev["userIdentity"]["accessKeyId"], "source_ip": ip, "asn": asn}
        if variation <= 4:
            want["function_name"] = function
        else:
            want["session_name"] = session or ev["userIdentity"]["arn"].rsplit("/", 1)[1]
        if upgrade_of:
            want["upgrade_of_variation"] = upgrade_of
        self.expected.append(want)


def case(group, name, args=()):
    """Decorator: the function's docstring is the case's description."""
    def deco(f):
        c = Case(group, name, " ".join(f.__doc__.split()), args)
        f(c)
        CASES.append(c)
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
    us-east-1 EC2 addresses: inside use, not V2 -> no alert."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    c.call(at(ATTACK, 10, 1), k, "aws_use1", "cli_in_lambda", "buckets", creation=at(ATTACK, 10))
    c.call(at(ATTACK, 10, 2), k, "aws_use1_b", "cli_in_lambda", "param", creation=at(ATTACK, 10))


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
    function's behalf), even from a public address -> no alert."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    c.call(at(ATTACK, 10, 30), k, "do", "boto3", "decrypt", creation=at(ATTACK, 10),
           invoked_by="lambda.amazonaws.com")


@case("exclusions", "source_service_names")
def _(c):
    """Calls with the issued key whose sourceIPAddress is a service name:
    lambda.amazonaws.com, AWS Internal, kms.amazonaws.com -> no alert."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    c.call(at(ATTACK, 10, 10), k, "lambda.amazonaws.com", "lambda.amazonaws.com", "decrypt",
           creation=at(ATTACK, 10))
    c.call(at(ATTACK, 10, 11), k, "AWS Internal", "AWS Internal", "table", creation=at(ATTACK, 10))
    c.call(at(ATTACK, 10, 12), k, "kms.amazonaws.com", "kms.amazonaws.com", "decrypt", creation=at(ATTACK, 10))


@case("exclusions", "awslambda_session")
def _(c):
    """Lambda's service session (awslambda_<n>_<time>, an event-source poller) of the
    function's role, used from a public address -- once with its issuance, once a key
    whose issuance was never seen -> no alert."""
    c.office_start()
    s1 = "awslambda_292_20260322100000334"
    s2 = "awslambda_744_20260322101500896"
    k1, k2 = key("POLLER1"), key("POLLER2")
    c.issue(at(ATTACK, 10), k1, fn=s1)
    c.call(at(ATTACK, 10, 5), k1, "do", "poller", "table", session=s1, creation=at(ATTACK, 10))
    c.call(at(ATTACK, 10, 20), k2, "ovh", "poller", "table", session=s2, creation=at(ATTACK, 10, 15))


@case("exclusions", "inside_aws_same_region")
def _(c):
    """Issued key used from AWS EC2 addresses of us-east-1 (the function's region, from the
    issuance), IPv4 and IPv6, with a custom runtime's UA (no exec-env/) -> inside, no alert."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    c.call(at(ATTACK, 10, 1), k, "aws_use1", "custom_runtime", "secret", creation=at(ATTACK, 10))
    c.call(at(ATTACK, 10, 2), k, "aws_use1_b", "custom_runtime", "secret", creation=at(ATTACK, 10))
    c.call(at(ATTACK, 10, 3), k, "aws_use1_v6", "custom_runtime", "secret", creation=at(ATTACK, 10))


@case("exclusions", "vpce_own_account")
def _(c):
    """VPC function: calls through a VPC endpoint of the account itself, with
    vpcEndpointAccountId = the account and without vpcEndpointAccountId -> inside, no alert."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    c.call(at(ATTACK, 10, 1), k, "private10", "runtime", "secret", creation=at(ATTACK, 10),
           vpce="vpce-0a1b2c3d4e5f60718", vpce_acct=ACCT)
    c.call(at(ATTACK, 10, 2), k, "private10", "runtime", "param", creation=at(ATTACK, 10),
           vpce="vpce-0a1b2c3d4e5f60718")


@case("exclusions", "private_no_endpoint")
def _(c):
    """Calls from a private address without vpcEndpointId (172.31/16, 10/8) -> inside, no alert."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    c.call(at(ATTACK, 10, 1), k, "private172", "boto3", "secret", creation=at(ATTACK, 10))
    c.call(at(ATTACK, 10, 2), k, "private10", "boto3", "secret", creation=at(ATTACK, 10))


@case("exclusions", "other_session_inside_role_region")
def _(c):
    """bob's session of the Lambda role used from an EC2 address of us-east-1 (the role's
    function region, e.g. bob's instance) -> inside -> no alert."""
    c.office_start()
    c.issue(at(1, 8), key("ENV0"))
    c.user_assume(at(ATTACK, 14), "bob", key("BOB2"), "bob-debug")
    c.call(at(ATTACK, 14, 5), key("BOB2"), "aws_use1_b", "boto3", "secret", session="bob-debug",
           creation=at(ATTACK, 14))


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
    c.call(at(13, 9), k, "do", "boto3", "secrets", creation=at(13, 8, 50))


@case("periods", "activation_1s_short")
def _(c):
    """Remote use 13 d 23:59:59 after the account's first event -> no alert."""
    c.office_start(at(0, 9))
    k = key("ENV1")
    c.issue(at(13, 8, 50), k)
    c.call(at(14, 8, 59, 59), k, "do", "boto3", "secrets", creation=at(13, 8, 50))


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
    same function used from another DigitalOcean address 6 days later -> deduplicated."""
    c.office_start()
    r = theft(c, ATTACK, "ENV1", "do")
    theft(c, ATTACK + 6, "ENV2", "do2")
    c.expect(r, 4)


@case("periods", "dedup_7_days_exact")
def _(c):
    """Same as dedup_6_days but exactly 7 days later: outside the window -> two V4."""
    c.office_start()
    r1 = theft(c, ATTACK, "ENV1", "do")
    r2 = theft(c, ATTACK + 7, "ENV2", "do2")
    c.expect(r1, 4)
    c.expect(r2, 4)


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
    Amazon ASN only, their region is unknown, so eu-west-1 EC2 counts as inside -> no alert."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 10), k)
    c.call(at(ATTACK, 10, 5), k, "aws_use1", "runtime", "secret", creation=at(ATTACK, 10))
    c.call(at(ATTACK, 10, 20), k, "aws_euw1", "boto3", "secrets", creation=at(ATTACK, 10))


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
    -> inside, no alert."""
    c.office_start()
    k = key("ENV1")
    c.issue(at(ATTACK, 9), key("ENVEU1"), region="eu-west-1")
    c.issue(at(ATTACK, 10), k)
    c.call(at(ATTACK, 10, 20), k, "aws_euw1", "runtime", "secret", creation=at(ATTACK, 10))


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
    the role never becomes Lambda's, the held use is dropped -> no alert."""
    c.office_start()
    c.call(at(ATTACK, 10, 20), key("ENV1"), "do", "runtime", "secrets", creation=at(ATTACK, 10))
    c.call(at(ATTACK, 10, 25), key("ENV2"), "do", "boto3", "secrets", creation=at(ATTACK, 10, 5))


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


@case("learning", "runtime_learning_adds_no_region")
def _(c):
    """Runtime learning only (exec-env/ call from us-east-1 EC2) never adds a region: the same
    key then used from eu-west-1 EC2 is still inside (no region of the function known) -> no
    alert (documented limit)."""
    c.office_start()
    k = key("ENV1")
    c.call(at(ATTACK, 10, 5), k, "aws_use1", "runtime", "secret", creation=at(ATTACK, 10))
    c.call(at(ATTACK, 10, 20), k, "aws_euw1", "boto3", "secrets", creation=at(ATTACK, 10))


# =======================================================================================
# output
# =======================================================================================

def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def main():
    names = set()
    for c in CASES:
        assert (c.group, c.name) not in names, c.name
        names.add((c.group, c.name))
    for group in sorted({c.group for c in CASES}):
        d = os.path.join(HERE, group)
        if os.path.isdir(d):
            shutil.rmtree(d)
        os.makedirs(d)
    index = ["# Detection cases", "",
             "Generated by `make_cases.py` (edit that, then run it); run with",
             "`python3 tests/run_cases.py --trailhound build/trailhound --shared /work/shared/data tests/cases`.",
             "Expected: `Vn` = an alert of variation n on the named event, `none` = no alert.", ""]
    group = None
    for c in CASES:
        if c.group != group:
            group = c.group
            index += ["", "## " + group, "", "| case | expected | story |", "|---|---|---|"]
        base = os.path.join(HERE, c.group, c.name)
        write(base + ".jsonl", "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in c.events))
        write(base + ".expected.jsonl", "".join(json.dumps(w) + "\n" for w in c.expected))
        if c.args:
            write(base + ".args", "\n".join(c.args) + "\n")
        exp = ", ".join("V%d%s" % (w["variation"], " (upgrade of V%d)" % w["upgrade_of_variation"]
                                   if "upgrade_of_variation" in w else "") for w in c.expected) or "none"
        if c.args:
            exp += " [args: %s]" % " ".join(c.args)
        index.append("| %s | %s | %s |" % (c.name, exp, c.doc.replace("|", "/")))
    write(os.path.join(HERE, "INDEX.md"), "\n".join(index) + "\n")
    print("%d cases written" % len(CASES), file=sys.stderr)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Generate a deterministic synthetic CloudTrail stream for trailhound, with the
stolen-Lambda-credential cases injected and the alerts the detector must raise.

The stream imitates what a CloudTrail consumer sees for a few AWS accounts over
several weeks: Lambda issuing a key to each execution environment (sts:AssumeRole
by lambda.amazonaws.com), the function runtime calling AWS with that key from AWS
addresses of its region (directly, through a NAT EIP, through a VPC endpoint, or
over IPv6), Lambda's own service sessions and on-behalf calls, the CloudWatch Logs
worker, IAM users, an SSO role and a CI role working from the company network, and
function deployments.  Events come out sorted by eventTime except where CloudTrail
delivers late (issuance events and a few runtime calls, at most 15 minutes) and
where an attack case places an event deliberately.

The expected alerts follow docs/detections.md; each case below says which
variation(s) it must raise.  Nothing in the background may alert.

Same --seed and options give byte-identical output.  The world (accounts,
functions, roles, users) and the attack cases come from their own random streams,
so --target-events changes the background volume only: the expected-alerts file is
the same for every --target-events.

No file is read at run time: the address tables are hard-coded below.
"""

import argparse
import base64
import bisect
import calendar
import gzip
import hashlib
import ipaddress
import json
import os
import queue
import random
import sys
import threading
import time
from collections.abc import Mapping

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import variations  # noqa: E402  (tools/variations.py)

DAY = 86400
HOUR = 3600
MINUTE = 60
ACTIVATION = 14 * DAY
DEDUP = 7 * DAY

# --------------------------------------------------------------------------------------
# Address tables.
#
# Checked against ip-ranges.json syncToken 1787411825 (createDate 2026-08-22-15-17-05):
# every AWS prefix below overlaps only AMAZON/EC2 entries of its own region (no other
# region, no GLOBAL); every public non-AWS block overlaps no AWS prefix at all.
# ASNs checked against @ip-location-db/asn 2.3.2026061719 (asn.mmdb) with
# `mmdblookup --file asn.mmdb --ip ADDR autonomous_system_number`: every address of
# each non-AWS IPv4 block (/24, /26), 100 random addresses of each AWS and IPv6 block.
# --------------------------------------------------------------------------------------

# region -> ((prefix, asn), ...): EC2 egress of functions (directly or through a NAT EIP)
AWS_V4 = {
    "us-east-1": (("54.156.0.0/14", 14618), ("54.208.0.0/15", 16509), ("52.4.0.0/14", 16509)),
    "us-west-2": (("54.148.0.0/15", 16509), ("52.24.0.0/14", 16509)),
    "eu-west-1": (("54.74.0.0/15", 16509), ("52.48.0.0/14", 16509), ("63.32.0.0/14", 16509)),
}
# EC2 IPv6 (dual-stack VPC functions); the /40 avoids the EFS/AURORA_DSQL/... /56s of 2600:1f18::/33
AWS_V6 = {"us-east-1": (("2600:1f18:4a00::/40", 14618),)}
# The attacker's own EC2 instance in another region (v1_other_region): all 256 are AS16509.
ATTACKER_EC2_EU = ("54.75.163.0/24", 16509, "eu-west-1")

# name -> (block, asn, AS organisation)
PUBLIC_BLOCKS = {
    "corp": ("38.104.55.0/26", 174, "Cogent Communications"),  # the company's office egress
    "corp6": ("2001:550:2:1::/64", 174, "Cogent Communications"),  # same office, IPv6
    "home": ("73.162.10.0/24", 7922, "Comcast Cable Communications, LLC"),  # developers at home
    "do1": ("159.203.45.0/24", 14061, "DigitalOcean, LLC"),
    "do2": ("167.99.10.0/24", 14061, "DigitalOcean, LLC"),
    "ovh": ("51.68.40.0/24", 16276, "OVH SAS"),
    "hetzner": ("95.216.30.0/24", 24940, "Hetzner Online GmbH"),
    "hetzner6": ("2a01:4f8:c17:1::/64", 24940, "Hetzner Online GmbH"),
    "vultr": ("45.32.100.0/24", 20473, "The Constant Company, LLC"),
    "vultr2": ("149.28.50.0/24", 20473, "The Constant Company, LLC"),
}


def address_table():
    """[(ip_network, kind, region, asn)] for every block the generator draws from:
    kind 'aws' (region set) or 'public'.  Private addresses (10/8, 172.16/12) are not
    listed; their ASN is 0.  Used by the tests' reference model."""
    out = []
    for region, blocks in list(AWS_V4.items()) + list(AWS_V6.items()):
        for prefix, asn in blocks:
            out.append((ipaddress.ip_network(prefix), "aws", region, asn))
    out.append((ipaddress.ip_network(ATTACKER_EC2_EU[0]), "aws", ATTACKER_EC2_EU[2], ATTACKER_EC2_EU[1]))
    for block, asn, _org in PUBLIC_BLOCKS.values():
        out.append((ipaddress.ip_network(block), "public", "", asn))
    return out


class Pool:
    """Random addresses from one block (first and last address of IPv4 blocks avoided)."""

    def __init__(self, prefix, asn):
        self.net = ipaddress.ip_network(prefix)
        self.asn = asn
        self.base = int(self.net.network_address)
        self.size = self.net.num_addresses
        self.v6 = self.net.version == 6

    def pick(self, rng):
        if self.v6:
            return str(ipaddress.IPv6Address(self.base + rng.randrange(1, self.size - 1)))
        a = self.base + rng.randrange(1, self.size - 1)
        return f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}"


AWS_POOLS = {r: [Pool(p, a) for p, a in blocks] for r, blocks in AWS_V4.items()}
AWS_POOLS6 = {r: [Pool(p, a) for p, a in blocks] for r, blocks in AWS_V6.items()}
PUB = {name: Pool(block, asn) for name, (block, asn, _org) in PUBLIC_BLOCKS.items()}
EC2_EU_ATTACKER = Pool(ATTACKER_EC2_EU[0], ATTACKER_EC2_EU[1])

REGIONS = ("us-east-1", "us-west-2", "eu-west-1")

# --------------------------------------------------------------------------------------
# Alerts
# --------------------------------------------------------------------------------------

class _AlertNames(Mapping):
    """{variation: (alert name, severity)}, read from the binary on first use
    (tools/variations.py: `trailhound variations --json` is the one names table)."""

    def _table(self):
        return variations.names()

    def __getitem__(self, variation):
        return self._table()[variation]

    def __iter__(self):
        return iter(self._table())

    def __len__(self):
        return len(self._table())


ALERT_NAMES = _AlertNames()


def alert_id(variation, account, role_arn, fn_or_session, asn, access_key_id):
    s = f"trailhound/v1|{variation}|{account}|{role_arn}|{fn_or_session}|{asn}|{access_key_id}"
    return hashlib.sha256(s.encode()).hexdigest()[:32]


def make_alert(variation, account, event_id, key, role_arn, fn_or_session, asn, case, upgrade_of=None):
    name, sev = ALERT_NAMES[variation]
    return {
        "alert_id": alert_id(variation, account, role_arn, fn_or_session, asn, key),
        "variation": variation,
        "alert_name": name,
        "severity": sev,
        "account_id": account,
        "event_id": event_id,
        "access_key_id": key,
        "role_arn": role_arn,
        "function_or_session": fn_or_session,
        "asn": asn,
        "upgrade_of": upgrade_of,
        "case": case,
    }


# --------------------------------------------------------------------------------------
# Formatting helpers
# --------------------------------------------------------------------------------------

B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DATES = {}
_HMS = [f"T{h:02d}:{m:02d}:{sec:02d}Z" for h in range(24) for m in range(60) for sec in range(60)]


def ts(t):
    """epoch seconds -> CloudTrail eventTime."""
    d, s = divmod(t, DAY)
    ds = _DATES.get(d)
    if ds is None:
        ds = _DATES[d] = time.strftime("%Y-%m-%d", time.gmtime(d * DAY))
    return ds + _HMS[s]


def expiration(t):
    """epoch seconds -> 'Jul 10, 2023, 2:25:32 PM' (the credentials.expiration format)."""
    g = time.gmtime(t)
    h12 = g.tm_hour % 12 or 12
    ampm = "AM" if g.tm_hour < 12 else "PM"
    return f"{MONTHS[g.tm_mon - 1]} {g.tm_mday}, {g.tm_year}, {h12}:{g.tm_min:02d}:{g.tm_sec:02d} {ampm}"


_UUID_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def uuid4(rng):
    h = rng.getrandbits(128).to_bytes(16, "little").hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_UUID_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


def hex16(rng):
    return "%016X" % rng.getrandbits(64)


_B32_TABLE = bytes(B32[i % 32].encode()[0] for i in range(256))
_B32HEX_TABLE = bytes(b"0123456789ABCDEFGHIJKLMNOPQRSTUV"[i % 32] for i in range(256))


def b32(rng, n):
    return rng.randbytes(n).translate(_B32_TABLE).decode()


def session_token(rng, region):
    # real tokens are base64 of a binary blob that starts b"!\n\torigin_ec" ("IQoJb3JpZ2luX2Vj...")
    blob = b"!\n\torigin_ec\x10\x2d\x1a\x09" + region.encode() + rng.randbytes(rng.randrange(300, 420))
    return base64.b64encode(blob).decode()


def jd(obj):
    return json.dumps(obj, separators=(",", ":"))


def tls(host, v13=True):
    if v13:
        return ('"tlsDetails":{"tlsVersion":"TLSv1.3","cipherSuite":"TLS_AES_128_GCM_SHA256",'
                f'"clientProvidedHostHeader":"{host}"}}')
    return ('"tlsDetails":{"tlsVersion":"TLSv1.2","cipherSuite":"ECDHE-RSA-AES128-GCM-SHA256",'
            f'"clientProvidedHostHeader":"{host}"}}')


# --------------------------------------------------------------------------------------
# User agents
# --------------------------------------------------------------------------------------

KERNEL = "5.10.227-239.884.amzn2.x86_64"
RUNTIME_UA = {
    "python3.12": ("Boto3/1.34.145 md/Botocore#1.34.145 ua/2.0 os/linux#" + KERNEL + " md/arch#x86_64 "
                   "lang/python#3.12.7 md/pyimpl#CPython exec-env/AWS_Lambda_python3.12 cfg/retry-mode#legacy "
                   "Botocore/1.34.145"),
    "python3.11": ("Boto3/1.34.145 md/Botocore#1.34.145 ua/2.0 os/linux#5.10.233-244.887.amzn2.x86_64 "
                   "md/arch#x86_64 lang/python#3.11.10 md/pyimpl#CPython exec-env/AWS_Lambda_python3.11 "
                   "cfg/retry-mode#legacy Botocore/1.34.145"),
    "nodejs20.x": ("aws-sdk-js/3.632.0 ua/2.1 os/linux#" + KERNEL + " lang/js md/nodejs#20.17.0 "
                   "api/{svc}#3.632.0 exec-env/AWS_Lambda_nodejs20.x"),
    "java21": ("aws-sdk-java/2.26.25 Linux/" + KERNEL + " OpenJDK_64-Bit_Server_VM/21.0.4+7-LTS Java/21.0.4 "
               "vendor/Amazon.com_Inc. exec-env/AWS_Lambda_java21 io/sync http/UrlConnection "
               "cfg/retry-mode/legacy"),
    "ruby3.3": ("aws-sdk-ruby3/3.201.5 ua/2.1 api/{svc}#1.156.0 os/linux md/x86_64 lang/ruby#3.3.4 md/3.3.4 "
                "exec-env/AWS_Lambda_ruby3.3 m/A,N"),
    # custom runtimes set no AWS_EXECUTION_ENV: no exec-env/ in the user agent
    "provided.al2023": "aws-sdk-go-v2/1.30.4 ua/2.1 os/linux lang/go#1.22.6 md/GOOS#linux md/GOARCH#arm64 api/{svc}#1.34.3 m/E",
}
RUNTIMES = ("python3.12", "python3.12", "python3.11", "nodejs20.x", "nodejs20.x", "java21", "ruby3.3",
            "provided.al2023")
WORKER_UA = "awslambda-worker/1.0 rusoto/0.48.0 rust/1.79.0 linux"
POLLER_UA = {
    "dynamodb": ("leb-kcl-{uuid},amazon-kinesis-client-library-java-lambda_1.2.1, aws-internal/3 "
                 "aws-sdk-java/1.12.638 Linux/5.10.219-186.866.amzn2int.x86_64 OpenJDK_64-Bit_Server_VM/25.402-b08 "
                 "java/1.8.0_402 vendor/Oracle_Corporation cfg/retry-mode/standard"),
    "sqs": ("aws-internal/3 aws-sdk-java/1.12.638 Linux/5.10.219-186.866.amzn2int.x86_64 "
            "OpenJDK_64-Bit_Server_VM/25.402-b08 java/1.8.0_402 vendor/Oracle_Corporation cfg/retry-mode/standard"),
    "kinesis": ("leb-kcl-{uuid},amazon-kinesis-client-library-java-lambda_1.2.1, aws-internal/3 "
                "aws-sdk-java/1.12.638 Linux/5.10.219-186.866.amzn2int.x86_64 OpenJDK_64-Bit_Server_VM/25.402-b08 "
                "java/1.8.0_402 vendor/Oracle_Corporation cfg/retry-mode/standard"),
}
CLI_UA = ("aws-cli/2.17.20 md/awscrt#0.20.11 ua/2.0 os/macos#23.5.0 md/arch#arm64 lang/python#3.11.9 "
          "md/pyimpl#CPython cfg/retry-mode#standard md/installer#source md/prompt#off md/command#{cmd}")
TERRAFORM_UA = ("APN/1.0 HashiCorp/1.0 Terraform/1.9.5 (+https://www.terraform.io) terraform-provider-aws/5.64.0 "
                "(+https://registry.terraform.io/providers/hashicorp/aws) aws-sdk-go-v2/1.30.4 ua/2.1 os/linux "
                "lang/go#1.22.6 md/GOOS#linux md/GOARCH#amd64 api/{svc}#1.40.0")
BROWSER_UA = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/128.0.0.0 Safari/537.36")
LAPTOP_BOTO3_UA = ("Boto3/1.35.10 md/Botocore#1.35.10 ua/2.0 os/macos#23.6.0 md/arch#arm64 lang/python#3.12.4 "
                   "md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.35.10")
CI_UA = ("aws-cli/2.17.20 md/awscrt#0.20.11 ua/2.0 os/linux#6.5.0-1025-azure md/arch#x86_64 lang/python#3.11.9 "
         "md/pyimpl#CPython cfg/retry-mode#standard md/installer#exe md/distrib#ubuntu.22 md/prompt#off "
         "md/command#{cmd}")
GHA_UA = "aws-sdk-js/3.637.0 ua/2.1 os/linux#6.5.0-1025-azure lang/js md/nodejs#20.13.1 api/sts#3.637.0 configure-aws-credentials-for-github-actions"
# attacker tools
ATT_BOTO3_UA = ("Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#6.8.0-45-generic md/arch#x86_64 "
                "lang/python#3.12.3 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.69")
ATT_CLAIM_UA = RUNTIME_UA["python3.12"]
ATT_CLI_UA = ("aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0 exe/x86_64.ubuntu.22 prompt/off "
              "command/sts.get-caller-identity")
ATT_REQUESTS_UA = "python-requests/2.31.0"

# --------------------------------------------------------------------------------------
# API call templates of function runtimes
# --------------------------------------------------------------------------------------


def _api_variants(api, fn, acct, rng):
    """[(rp_chunk, tail_a)]: rp_chunk = optional error + requestParameters ... up to the
    opening quote of requestID; tail_a = readOnly ... recipientAccountId value."""
    a = acct.id
    region = fn.region
    out = []
    ra = f',"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"{a}"'
    rd = f',"eventType":"AwsApiCall","managementEvent":false,"recipientAccountId":"{a}"'
    if api in ("s3.GetObject", "s3.PutObject"):
        bucket = fn.bucket
        for _ in range(6):
            key = f"{fn.prefix}/{rng.randrange(2024, 2027)}/{rng.randrange(1, 13):02d}/{b32(rng, 12).lower()}.json"
            add = ('"additionalEventData":{"SignatureVersion":"SigV4","CipherSuite":"TLS_AES_128_GCM_SHA256",'
                   f'"bytesTransferredIn":{0 if api.endswith("GetObject") else rng.randrange(200, 90000)},'
                   '"AuthenticationMethod":"AuthHeader",'
                   f'"x-amz-id-2":"{base64.b64encode(rng.randbytes(57)).decode()}",'
                   f'"bytesTransferredOut":{rng.randrange(200, 90000) if api.endswith("GetObject") else 0}}},')
            rp = (f'"requestParameters":{{"bucketName":"{bucket}","Host":"{bucket}.s3.{region}.amazonaws.com",'
                  f'"key":"{key}"}},"responseElements":null,{add}"requestID":"')
            res = (f',"resources":[{{"type":"AWS::S3::Object","ARN":"arn:aws:s3:::{bucket}/{key}"}},'
                   f'{{"accountId":"{a}","type":"AWS::S3::Bucket","ARN":"arn:aws:s3:::{bucket}"}}]')
            ro = "true" if api.endswith("GetObject") else "false"
            out.append((rp, f',"readOnly":{ro}{res}{rd}'))
    elif api in ("dynamodb.GetItem", "dynamodb.PutItem", "dynamodb.Query"):
        t = fn.table
        for _ in range(4):
            if api.endswith("Query"):
                rp = (f'"requestParameters":{{"tableName":"{t}","keyConditionExpression":"pk = :pk",'
                      '"expressionAttributeValues":"HIDDEN_DUE_TO_SECURITY_REASONS"},"responseElements":null,"requestID":"')
            else:
                rp = (f'"requestParameters":{{"tableName":"{t}","key":{{"pk":"HIDDEN_DUE_TO_SECURITY_REASONS"}}}},'
                      '"responseElements":null,"requestID":"')
            ro = "false" if api.endswith("PutItem") else "true"
            res = f',"resources":[{{"accountId":"{a}","type":"AWS::DynamoDB::Table","ARN":"arn:aws:dynamodb:{region}:{a}:table/{t}"}}]'
            out.append((rp, f',"readOnly":{ro}{res}{rd}'))
    elif api == "ssm.GetParameter":
        for i in range(4):
            name = f"/{acct.env}/{fn.short}/{('db-url', 'api-key', 'feature-flags', 'endpoint')[i]}"
            rp = f'"requestParameters":{{"name":"{name}","withDecryption":true}},"responseElements":null,"requestID":"'
            out.append((rp, f',"readOnly":true{ra}'))
        name = f"/{acct.env}/{fn.short}/legacy-token"
        out.append(('ERROR"errorCode":"ParameterNotFound","errorMessage":"Parameter ' + name + ' not found.",'
                    f'"requestParameters":{{"name":"{name}","withDecryption":true}},"responseElements":null,"requestID":"',
                    f',"readOnly":true{ra}'))
    elif api == "secretsmanager.GetSecretValue":
        sid = f"arn:aws:secretsmanager:{region}:{a}:secret:{acct.env}/{fn.short}/credentials-{b32(rng, 6)}"
        rp = f'"requestParameters":{{"secretId":"{sid}"}},"responseElements":null,"requestID":"'
        out.append((rp, f',"readOnly":true{ra}'))
    elif api == "kms.Decrypt":
        kid = f"arn:aws:kms:{region}:{a}:key/{uuid4(rng)}"
        rp = ('"requestParameters":{"encryptionAlgorithm":"SYMMETRIC_DEFAULT","encryptionContext":'
              f'{{"PARAMETER_ARN":"arn:aws:ssm:{region}:{a}:parameter/{acct.env}/{fn.short}/api-key"}}}},'
              '"responseElements":null,"requestID":"')
        res = f',"resources":[{{"accountId":"{a}","type":"AWS::KMS::Key","ARN":"{kid}"}}]'
        out.append((rp, f',"readOnly":true{res}{ra}'))
    elif api == "sts.GetCallerIdentity":
        out.append(('"requestParameters":null,"responseElements":null,"requestID":"', f',"readOnly":true{ra}'))
    elif api == "ec2.DescribeInstances":
        rp = ('"requestParameters":{"instancesSet":{},"filterSet":{"items":[{"name":"tag:Environment","valueSet":'
              f'{{"items":[{{"value":"{acct.env}"}}]}}}}]}}}},"responseElements":null,"requestID":"')
        out.append((rp, f',"readOnly":true{ra}'))
    elif api == "sns.Publish":
        topic = f"arn:aws:sns:{region}:{a}:{acct.env}-{fn.short}-events"
        rp = f'"requestParameters":{{"topicArn":"{topic}"}},"responseElements":{{"messageId":"%MSGID%"}},"requestID":"'
        res = f',"resources":[{{"accountId":"{a}","type":"AWS::SNS::Topic","ARN":"{topic}"}}]'
        out.append((rp, f',"readOnly":false{res}{rd}'))
    else:
        raise ValueError(api)
    return out


API_META = {
    # api: (eventSource, eventName, host service, eventCategory, request id kind)
    "s3.GetObject": ("s3.amazonaws.com", "GetObject", "s3", "Data", "s3"),
    "s3.PutObject": ("s3.amazonaws.com", "PutObject", "s3", "Data", "s3"),
    "dynamodb.GetItem": ("dynamodb.amazonaws.com", "GetItem", "dynamodb", "Data", "ddb"),
    "dynamodb.PutItem": ("dynamodb.amazonaws.com", "PutItem", "dynamodb", "Data", "ddb"),
    "dynamodb.Query": ("dynamodb.amazonaws.com", "Query", "dynamodb", "Data", "ddb"),
    "ssm.GetParameter": ("ssm.amazonaws.com", "GetParameter", "ssm", "Management", "uuid"),
    "secretsmanager.GetSecretValue": ("secretsmanager.amazonaws.com", "GetSecretValue", "secretsmanager",
                                      "Management", "uuid"),
    "kms.Decrypt": ("kms.amazonaws.com", "Decrypt", "kms", "Management", "uuid"),
    "sts.GetCallerIdentity": ("sts.amazonaws.com", "GetCallerIdentity", "sts", "Management", "uuid"),
    "ec2.DescribeInstances": ("ec2.amazonaws.com", "DescribeInstances", "ec2", "Management", "uuid"),
    "sns.Publish": ("sns.amazonaws.com", "Publish", "sns", "Data", "uuid"),
}
API_SETS = (
    ("s3.GetObject", "s3.PutObject", "ssm.GetParameter"),
    ("dynamodb.GetItem", "dynamodb.PutItem", "dynamodb.Query", "secretsmanager.GetSecretValue"),
    ("s3.PutObject", "sns.Publish", "kms.Decrypt"),
    ("ec2.DescribeInstances", "sts.GetCallerIdentity", "sns.Publish"),
    ("dynamodb.Query", "s3.GetObject", "ssm.GetParameter", "kms.Decrypt"),
    ("secretsmanager.GetSecretValue", "dynamodb.PutItem", "sns.Publish"),
)


class ApiT:
    __slots__ = ("mid", "ua", "variants", "errors", "tail_b", "rid_kind", "msgid")


def _ddb_rid(rng):
    return rng.randbytes(52).translate(_B32HEX_TABLE).decode()


# --------------------------------------------------------------------------------------
# World
# --------------------------------------------------------------------------------------

FN_BASE = ("order-processor", "thumbnail-generator", "invoice-renderer", "user-signup-handler", "payment-webhook",
           "s3-object-indexer", "nightly-cleanup", "email-dispatcher", "inventory-sync", "audit-log-shipper",
           "image-moderation", "search-indexer", "session-reaper", "pdf-exporter", "slack-notifier", "geo-enricher",
           "metrics-rollup", "backup-verifier", "token-refresher", "catalog-importer", "fraud-scorer", "ticket-router",
           "ledger-reconciler", "cert-expiry-checker", "cost-reporter", "feature-flag-sync", "webhook-relay",
           "csv-ingest", "ml-feature-writer", "price-updater", "shipment-tracker", "coupon-validator",
           "gdpr-exporter", "sitemap-builder", "video-transcode-trigger", "dns-healthcheck")
ENV_NAMES = ("prod", "staging", "data", "shared", "sandbox", "ml", "payments", "edge", "analytics", "ops", "qa",
             "platform")
PEOPLE = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "nia",
          "oscar", "peggy", "rupert", "sybil", "trent", "victor", "wendy", "yusuf")
COMPANY = "acme"
EMAIL_DOMAIN = "acme-corp.example"


class Role:
    def __init__(self, acct, name, path, rng):
        self.acct = acct
        self.name = name
        self.path = path  # "/" or "/service-role/" ...
        self.arn = f"arn:aws:iam::{acct.id}:role{path}{name}"
        self.rid = "AROA" + acct.kp[:4] + b32(rng, 13)

    def ui(self, session, key, creation_ts):
        a = self.acct.id
        return ('{"type":"AssumedRole",'
                f'"principalId":"{self.rid}:{session}","arn":"arn:aws:sts::{a}:assumed-role/{self.name}/{session}",'
                f'"accountId":"{a}","accessKeyId":"{key}","sessionContext":{{"sessionIssuer":{{"type":"Role",'
                f'"principalId":"{self.rid}","arn":"{self.arn}","accountId":"{a}","userName":"{self.name}"}},'
                f'"webIdFederationData":{{}},"attributes":{{"creationDate":"{creation_ts}","mfaAuthenticated":"false"}}}}}}')


class Function:
    def __init__(self, acct, short, role, region, runtime, net, rng):
        self.acct = acct
        self.short = short
        self.name = f"{acct.env}-{short}"
        self.role = role
        self.region = region
        self.runtime = runtime
        self.net = net  # public | nat | vpce | vpce_acct | dual6
        self.bucket = f"{COMPANY}-{acct.env}-{short.split('-')[0]}-{acct.id[-4:]}"
        self.table = f"{acct.env}-{short}-state"
        self.prefix = short.split("-")[-1]
        self.nat_ips = [rng.choice(AWS_POOLS[region]).pick(rng) for _ in range(rng.randrange(1, 3))]
        self.vpce_id = "vpce-0" + "%016x" % rng.getrandbits(64)
        self.subnet = f"10.{rng.randrange(0, 255)}.{rng.randrange(0, 255) & 0xF0}"
        self.kms = rng.random() < 0.35  # encrypted env vars: Lambda decrypts on behalf at cold start
        self.poller = rng.choice((None, None, None, "sqs", "dynamodb", "kinesis"))
        self.weight = rng.uniform(2.0, 10.0)  # execution environments per day at scale 1
        self.pweight = rng.uniform(1.0, 4.0)  # poller sessions per day at scale 1
        self.cmin = rng.randrange(1, 6)
        self.cmax = self.cmin + rng.randrange(5, 45)
        self.created = True  # CreateFunction event when the function appears
        self.active_from = None  # set by the world
        self.ooo_ok = True  # may have runtime calls delivered before their issuance
        self.case = None
        self.apis = []
        for api in rng.choice(API_SETS):
            self.apis.append(self._template(api, rng))
        self.weights = [rng.uniform(1, 5) for _ in self.apis]
        self.cum = []
        s = 0.0
        for w in self.weights:
            s += w
            self.cum.append(s)
        # 256 slots of (api, requestParameters chunk, tail): one random number picks a call
        self.flat = []
        seen = {}
        for i in range(256):
            api = self.apis[bisect.bisect(self.cum, (i + 0.5) / 256 * s)]
            k = seen[id(api)] = seen.get(id(api), -1) + 1
            if api.errors and k % 32 == 31:
                rp, tail_a = api.errors[0]  # a few calls fail (ParameterNotFound)
            else:
                rp, tail_a = api.variants[k % len(api.variants)]
            self.flat.append((api, rp, tail_a))

    def _template(self, api, rng):
        src, name, svc, cat, ridk = API_META[api]
        t = ApiT()
        t.mid = f'","eventSource":"{src}","eventName":"{name}","awsRegion":"{self.region}","sourceIPAddress":"'
        ua = RUNTIME_UA[self.runtime].replace("{svc}", svc)
        t.ua = f'","userAgent":"{ua}",'
        vs = _api_variants(api, self, self.acct, rng)
        t.variants = [v for v in vs if not v[0].startswith("ERROR")]
        t.errors = [(v[0][5:], v[1]) for v in vs if v[0].startswith("ERROR")]
        host = f"{svc}.{self.region}.amazonaws.com" if svc != "s3" else f"{self.bucket}.s3.{self.region}.amazonaws.com"
        t.tail_b = f',"eventCategory":"{cat}",{tls(host, svc != "ec2")}}}'
        t.rid_kind = ridk
        t.msgid = api == "sns.Publish"
        return t

    def pick_api(self, rng):
        return self.apis[bisect.bisect(self.cum, rng.random() * self.cum[-1])]

    def egress(self, rng):
        """(sourceIPAddress, vpce piece) for one execution environment (inside)."""
        n = self.net
        if n == "public":
            return rng.choice(AWS_POOLS[self.region]).pick(rng), ""
        if n == "nat":
            return rng.choice(self.nat_ips), ""
        if n == "dual6":
            if rng.random() < 0.6:
                return rng.choice(AWS_POOLS6[self.region]).pick(rng), ""
            return rng.choice(AWS_POOLS[self.region]).pick(rng), ""
        ip = f"{self.subnet}.{rng.randrange(4, 250)}"
        if n == "vpce_acct":
            return ip, f',"vpcEndpointId":"{self.vpce_id}","vpcEndpointAccountId":"{self.acct.id}"'
        return ip, f',"vpcEndpointId":"{self.vpce_id}"'


class User:
    def __init__(self, acct, name, profile, rng):
        self.acct = acct
        self.name = name
        self.profile = profile  # cli | terraform | console | boto3
        self.uid = "AIDA" + acct.kp[:4] + b32(rng, 13)
        self.key = "AKIA" + acct.kp + b32(rng, 8)
        self.home = rng.random() < 0.4
        self.weight = rng.uniform(0.6, 2.0)

    def ui(self, with_key=True):
        a = self.acct.id
        k = f'"accessKeyId":"{self.key}",' if with_key else ""
        return (f'{{"type":"IAMUser","principalId":"{self.uid}","arn":"arn:aws:iam::{a}:user/{self.name}",'
                f'"accountId":"{a}",{k}"userName":"{self.name}"}}')


class Account:
    def __init__(self, idx, rng, start, days, kind):
        self.idx = idx
        self.kind = kind  # normal | late | boundary
        self.id = "%012d" % rng.randrange(100000000000, 999999999999)
        self.kp = b32(rng, 8)
        self.env = ENV_NAMES[idx % len(ENV_NAMES)]
        if idx >= len(ENV_NAMES):
            self.env = f"{self.env}{idx // len(ENV_NAMES) + 1}"
        offset = rng.randrange(5 * MINUTE, 100 * MINUTE)
        if kind == "late":
            self.t0 = start + (days - 15) * DAY + offset
        else:
            self.t0 = start + offset
        self.functions = []
        self.users = []
        self.corp4 = [PUB["corp"].pick(rng) for _ in range(3)]
        self.corp6 = [PUB["corp6"].pick(rng) for _ in range(2)]
        self.sso_role = Role(self, f"AWSReservedSSO_AdministratorAccess_{'%016x' % rng.getrandbits(64)}",
                             "/aws-reserved/sso.amazonaws.com/", rng)
        self.ci_role = Role(self, "github-actions-deploy", "/ci/", rng)
        self.roles = []

    def corp_ip(self, rng, v6_share=0.1):
        if rng.random() < v6_share:
            return rng.choice(self.corp6)
        return rng.choice(self.corp4)


def role_for(acct, fname, rng, style=None):
    style = style if style is not None else rng.randrange(3)
    if style == 0:
        r = Role(acct, f"{fname}-role-{b32(rng, 8).lower()}", "/service-role/", rng)
    elif style == 1:
        camel = "".join(p.capitalize() for p in fname.split("-"))
        r = Role(acct, f"{acct.env}-{fname.split('-')[0]}-{camel}FunctionRole-{b32(rng, 12)}", "/", rng)
    else:
        r = Role(acct, f"{fname}-exec", "/app/lambda/", rng)
    acct.roles.append(r)
    return r


# normal-account cases, spread round-robin over the normal accounts of each block of 6
NORMAL_CASES = (
    # name, base day (for --days 45)
    ("dedup_window", 15),
    ("v1_inside_then_remote", 16),
    ("v1_ua_claim", 18),
    ("v1_other_region", 20),
    ("v1_foreign_vpce", 22),
    ("v1_ipv6", 24),
    ("v2_cli", 26),
    ("v3_known_asn", 28),
    ("v4_remote", 30),
    ("upgrade_v4_to_v1", 32),
    ("late_attribution_v4_then_v1", 34),
    ("v5_new_identity", 36),
    ("v6_known_identity", 0),
)
CASE_DOC = {
    "v1_inside_then_remote": "key used inside, then 3 calls from one DigitalOcean address (Boto3) -> one V1",
    "v1_ua_claim": "key never used inside; Hetzner call claiming exec-env/AWS_Lambda_python3.12 -> V1",
    "v1_other_region": "us-east-1 function, key used inside, then from EC2 eu-west-1 (AS16509) -> V1",
    "v1_foreign_vpce": "key used inside, then via a VPC endpoint of another account (172.31/16) -> V1, asn 0",
    "v1_ipv6": "key used inside, then from Hetzner IPv6 -> V1",
    "v2_cli": "key never used inside, OVH call with aws-cli/2.15.30 -> V2",
    "v3_known_asn": "key never used inside, call from the corporate ASN (Boto3, laptop) -> V3",
    "v4_remote": "key never used inside, DigitalOcean call (Boto3) -> V4",
    "upgrade_v4_to_v1": "OVH call arrives before the key's first inside use (delivered 3 min late) -> V4, then V1 upgrade_of V4",
    "late_attribution_v4_then_v1": ("brand-new function/role; its remote call arrives before the issuance (issuance "
                                    "delivered 12 min late) and before any inside use -> held, V4 when the issuance "
                                    "arrives, then V1 upgrade_of V4 at the first inside use"),
    "v5_new_identity": "stolen IAM user key assumes a Lambda role (session debug-session) from Vultr -> V5",
    "v6_known_identity": ("a developer assumes a Lambda role daily from day 0 from the office; first use in the "
                          "activation period (V5 suppressed), V6 after activation, one per 7 days"),
    "dedup_window": "function's token stolen 3 times from one ASN: day X V1, X+3 deduplicated, X+8 V1",
    "activation_suppressed": "account first seen 10 days before a stolen-token use (V1 shape) -> no alert",
    "activation_boundary": ("same function and ASN, two stolen keys: use at first_seen+13d23h -> no alert, "
                            "at first_seen+14d1h -> V1"),
}


class World:
    def __init__(self, seed, n_accounts, days, start):
        rng = random.Random(f"{seed}/world")
        self.rng = rng
        self.start = start
        self.days = days
        self.accounts = []
        seen_ids = set()
        for i in range(n_accounts):
            slot = i % 6
            kind = "late" if slot == 4 else "boundary" if slot == 5 else "normal"
            while True:
                a = Account(i, rng, start, days, kind)
                if a.id not in seen_ids:
                    break
            seen_ids.add(a.id)
            self.accounts.append(a)
        names = list(FN_BASE)
        for a in self.accounts:
            rng.shuffle(names)
            pool = iter(names)
            n_fn = rng.randrange(6, 10)
            shared = None
            for j in range(n_fn):
                short = next(pool)
                if j in (1, 2) and a.idx % 2 == 0:
                    # one role shared by two functions of different regions
                    if shared is None:
                        shared = role_for(a, "shared-etl", rng, style=2)
                    role = shared
                    region = REGIONS[j - 1]
                else:
                    role = role_for(a, short, rng)
                    region = rng.choices(REGIONS, (60, 25, 15))[0]
                net = rng.choices(("public", "nat", "vpce", "vpce_acct", "dual6"), (55, 15, 10, 10, 10))[0]
                if net == "dual6" and region not in AWS_POOLS6:
                    net = "public"
                fn = Function(a, short, role, region, rng.choice(RUNTIMES), net, rng)
                fn.created = rng.random() < 0.75
                fn.active_from = a.t0 + rng.randrange(10 * MINUTE, 50 * MINUTE)
                a.functions.append(fn)
            # IAM users
            people = rng.sample(PEOPLE, rng.randrange(3, 6))
            profiles = ("cli", "terraform", "console", "boto3")
            for p in people:
                a.users.append(User(a, f"{p}.{rng.choice(('dev', 'ops', 'sre', 'data'))}", rng.choice(profiles), rng))
            a.users.append(User(a, "svc-reporting", "boto3", rng))
            a.users[-1].home = False
            a.spare_names = pool  # case functions take their names from here
        self.cases = []  # (account, case name, day) planned by the world
        for block_start in range(0, n_accounts, 6):
            normal = [a for a in self.accounts[block_start:block_start + 6] if a.kind == "normal"]
            if normal:
                for ci, (cname, base_day) in enumerate(NORMAL_CASES):
                    self.cases.append((normal[ci % len(normal)], cname, base_day))
            for a in self.accounts[block_start:block_start + 6]:
                if a.kind == "late":
                    self.cases.append((a, "activation_suppressed", None))
                elif a.kind == "boundary":
                    self.cases.append((a, "activation_boundary", None))
        # dedicated case functions (they exist in --no-attacks runs too, so the world is the same)
        self.case_fn = {}
        for ci, (a, cname, _d) in enumerate(self.cases):
            short = next(a.spare_names)
            region = "us-east-1" if cname in ("v1_other_region", "v1_ipv6") else rng.choice(REGIONS)
            net = "vpce_acct" if cname == "v1_foreign_vpce" else "public"
            role = role_for(a, short, rng)
            fn = Function(a, short, role, region, rng.choice(RUNTIMES[:6]), net, rng)
            fn.case = cname
            fn.weight = rng.uniform(1.0, 4.0)
            fn.poller = None
            fn.created = rng.random() < 0.5
            fn.active_from = a.t0 + rng.randrange(10 * MINUTE, 50 * MINUTE)
            if cname == "late_attribution_v4_then_v1":
                fn.created = False
                fn.ooo_ok = False
                fn.active_from = None  # set by the case plan (the function is new)
            a.functions.append(fn)
            self.case_fn[ci] = fn
        # developers of v6 cases: an extra IAM user
        self.case_user = {}
        for ci, (a, cname, _d) in enumerate(self.cases):
            if cname == "v6_known_identity":
                person = rng.choice([p for p in PEOPLE if not any(u.name.startswith(p + ".") for u in a.users)])
                u = User(a, f"{person}.dev", "cli", rng)
                u.home = False
                a.users.append(u)
                self.case_user[ci] = u
        # case day for --days D (positions of the 45-day plan, squeezed into [15, D-3])
        self.case_times = {}
        for ci, (a, cname, base_day) in enumerate(self.cases):
            if base_day is None or base_day == 0:
                self.case_times[ci] = None
                continue
            day = 15 + round((base_day - 15) * (days - 18) / 27)
            self.case_times[ci] = start + day * DAY + rng.randrange(8 * HOUR, 18 * HOUR)
        for ci, (a, cname, _d) in enumerate(self.cases):
            fn = self.case_fn[ci]
            if cname == "late_attribution_v4_then_v1":
                fn.active_from = self.case_times[ci]


# --------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------


class Sink:
    """Frames events and writes them. Compression and file writes run on a writer thread
    (zlib and write() release the GIL), overlapping with generation; bytes are unchanged."""

    def __init__(self, path, fmt, gz_level):
        self.fmt = fmt
        self.count = 0
        self._pending = []
        self._first = True
        if path == "-":
            self.raw = sys.stdout.buffer
            self.f = self.raw
            self.close_raw = False
        else:
            self.raw = open(path, "wb")
            self.close_raw = True
            if path.endswith(".gz"):
                self.f = gzip.GzipFile(filename="", mode="wb", fileobj=self.raw, mtime=0, compresslevel=gz_level)
            else:
                self.f = self.raw
        self._q = queue.Queue(maxsize=3)
        self._err = None
        self._thread = threading.Thread(target=self._writer, daemon=True)
        self._thread.start()
        if fmt == "array":
            self._put(b"[\n")

    def _writer(self):
        while True:
            chunk = self._q.get()
            if chunk is None:
                return
            if self._err is None:
                try:
                    self.f.write(chunk)
                except BaseException as e:  # reported by close()
                    self._err = e

    def _put(self, data):
        if self._err is not None:
            raise self._err
        self._q.put(data)

    def write(self, lines):
        self.count += len(lines)
        if self.fmt == "jsonl":
            self._put(("\n".join(lines) + "\n").encode())
        elif self.fmt == "records":
            self._pending.extend(lines)
            self._flush_records(final=False)
        else:
            parts = []
            for line in lines:
                pretty = json.dumps(json.loads(line), indent=1).replace("\n", "\n ")
                parts.append((" " if self._first else ",\n ") + pretty)
                self._first = False
            self._put("".join(parts).encode())

    def _flush_records(self, final):
        p = self._pending
        n = len(p) if final else len(p) - len(p) % 100
        if n <= 0:
            return
        out = []
        for i in range(0, n, 100):
            out.append('{"Records":[' + ",".join(p[i:i + 100]) + "]}\n")
        self._put("".join(out).encode())
        del p[:n]

    def close(self):
        try:
            if self.fmt == "records":
                self._flush_records(final=True)
            elif self.fmt == "array":
                self._put(b"\n]\n")
        finally:
            self._q.put(None)
            self._thread.join()
        if self.f is not self.raw:
            self.f.close()
        if self.close_raw:
            self.raw.close()
        else:
            self.raw.flush()
        if self._err is not None:
            raise self._err


# --------------------------------------------------------------------------------------
# Generator
# --------------------------------------------------------------------------------------


class Gen:
    def __init__(self, world, seed, attacks):
        self.w = world
        self.seed = seed
        self.attacks = attacks
        self.buckets = {}
        self.seq = 0
        self.alerts = []
        self.start = world.start
        self.stats = {"events": 0}

    # ---- low level -------------------------------------------------------------------
    def emit(self, sk, line):
        """Queue one event at stream position sk (epoch seconds, float allowed)."""
        b = int((sk - self.start) // DAY)
        lst = self.buckets.get(b)
        if lst is None:
            lst = self.buckets[b] = []
        self.seq += 1
        lst.append((sk, self.seq, line))

    def flush(self, sink, upto):
        for b in sorted(k for k in self.buckets if k <= upto):
            lst = self.buckets.pop(b)
            lst.sort()
            sink.write([x[2] for x in lst])

    @staticmethod
    def new_asia(acct, rng):
        return "ASIA" + acct.kp + b32(rng, 8)

    def event(self, rng, *, ui, t, source, name, region, ip, ua, rp="null", re="null", error=None, addl=None,
              ro=True, resources=None, mgmt=True, cat="Management", acct, vpce="", host=None, etype="AwsApiCall",
              version="1.09", shared=False, rid=None, v13=True):
        """Build one event (generic, slower path). Returns (eventID, line)."""
        eid = uuid4(rng)
        rid = rid if rid is not None else uuid4(rng)
        parts = [f'{{"eventVersion":"{version}","userIdentity":{ui},"eventTime":"{ts(t)}","eventSource":"{source}",'
                 f'"eventName":"{name}","awsRegion":"{region}","sourceIPAddress":"{ip}","userAgent":"{ua}",']
        if error:
            parts.append(f'"errorCode":"{error[0]}","errorMessage":"{error[1]}",')
        parts.append(f'"requestParameters":{rp},"responseElements":{re},')
        if addl:
            parts.append(f'"additionalEventData":{addl},')
        parts.append(f'"requestID":"{rid}","eventID":"{eid}","readOnly":{"true" if ro else "false"},')
        if resources:
            parts.append(f'"resources":{resources},')
        parts.append(f'"eventType":"{etype}","managementEvent":{"true" if mgmt else "false"},'
                     f'"recipientAccountId":"{acct.id}"{vpce},')
        if shared:
            parts.append(f'"sharedEventID":"{uuid4(rng)}",')
        if host:
            parts.append(f'"eventCategory":"{cat}",{tls(host, v13)}}}')
        else:
            parts.append(f'"eventCategory":"{cat}"}}')
        return eid, "".join(parts)

    def issuance(self, rng, acct, role, session, region, t, key, sk=None):
        """Lambda's sts:AssumeRole (examples 01/04): key issued to `session`."""
        eid = uuid4(rng)
        line = ('{"eventVersion":"1.08","userIdentity":{"type":"AWSService","invokedBy":"lambda.amazonaws.com"},'
                f'"eventTime":"{ts(t)}","eventSource":"sts.amazonaws.com","eventName":"AssumeRole",'
                f'"awsRegion":"{region}","sourceIPAddress":"lambda.amazonaws.com","userAgent":"lambda.amazonaws.com",'
                f'"requestParameters":{{"roleArn":"{role.arn}","roleSessionName":"{session}"}},'
                f'"responseElements":{{"credentials":{{"accessKeyId":"{key}","sessionToken":"{session_token(rng, region)}",'
                f'"expiration":"{expiration(t + 12 * HOUR)}"}}}},"requestID":"{uuid4(rng)}","eventID":"{eid}",'
                f'"readOnly":true,"resources":[{{"accountId":"{acct.id}","type":"AWS::IAM::Role","ARN":"{role.arn}"}}],'
                f'"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"{acct.id}",'
                f'"sharedEventID":"{uuid4(rng)}","eventCategory":"Management"}}')
        self.emit(t if sk is None else sk, line)
        return eid

    def runtime_call(self, rng, fn, prefix, t, ip, vpce, sk=None, api=None):
        """One call of a function runtime (fast path). prefix = event head up to eventTime."""
        api = api or fn.pick_api(rng)
        v = api.variants
        rp, tail_a = v[int(rng.random() * len(v))]
        k = api.rid_kind
        rid = uuid4(rng) if k == "uuid" else hex16(rng) if k == "s3" else _ddb_rid(rng)
        eid = uuid4(rng)
        if api.msgid:
            rp = rp.replace("%MSGID%", uuid4(rng))
        line = f'{prefix}{ts(t)}{api.mid}{ip}{api.ua}{rp}{rid}","eventID":"{eid}"{tail_a}{vpce}{api.tail_b}'
        self.emit(t if sk is None else sk, line)
        return eid

    @staticmethod
    def head(ui):
        return '{"eventVersion":"1.09","userIdentity":' + ui + ',"eventTime":"'

    # ---- background entities ---------------------------------------------------------
    def env(self, rng, fn, t0, ooo_allowed=True):
        """One execution environment: issuance, worker log stream, on-behalf KMS, runtime calls."""
        acct = fn.acct
        key = self.new_asia(acct, rng)
        creation = ts(t0)
        ncalls = rng.randint(fn.cmin, fn.cmax)
        late = ooo_allowed and fn.ooo_ok and rng.random() < 0.04
        # CloudTrail delivers the issuance up to 14 minutes late: the first runtime calls come first
        self.issuance(rng, acct, fn.role, fn.name, fn.region, t0, key,
                      sk=(t0 + rng.randrange(2 * MINUTE, 14 * MINUTE)) if late else None)
        ui = fn.role.ui(fn.name, key, creation)
        prefix = self.head(ui)
        n = 2
        # the Lambda worker creates the log stream with the execution role (awslambda-worker UA)
        wip = rng.choice(AWS_POOLS[fn.region]).pick(rng)
        lg = f"/aws/lambda/{fn.name}"
        stream = f"{ts(t0)[:10].replace('-', '/')}/[$LATEST]{'%032x' % rng.getrandbits(128)}"
        _, line = self.event(rng, ui=ui, t=t0 + 1, source="logs.amazonaws.com", name="CreateLogStream",
                             region=fn.region, ip=wip, ua=WORKER_UA, acct=acct, ro=False,
                             rp=f'{{"logGroupName":"{lg}","logStreamName":"{stream}"}}',
                             host=f"logs.{fn.region}.amazonaws.com", v13=False)
        self.emit(t0 + 1, line)
        if fn.kms:
            # Lambda decrypting environment variables on the function's behalf (example 07 shape)
            uib = ui[:-1] + ',"invokedBy":"lambda.amazonaws.com"}'
            kid = f"arn:aws:kms:{fn.region}:{acct.id}:key/{fn.vpce_id[5:13]}-0f1e-4d2c-8b3a-{acct.id}"
            _, line = self.event(rng, ui=uib, t=t0, source="kms.amazonaws.com", name="Decrypt", region=fn.region,
                                 ip="lambda.amazonaws.com", ua="lambda.amazonaws.com", acct=acct,
                                 rp=('{"encryptionAlgorithm":"SYMMETRIC_DEFAULT","encryptionContext":'
                                     f'{{"aws:lambda:FunctionArn":"arn:aws:lambda:{fn.region}:{acct.id}:function:{fn.name}"}}}}'),
                                 resources=f'[{{"accountId":"{acct.id}","type":"AWS::KMS::Key","ARN":"{kid}"}}]')
            self.emit(t0, line)
            n += 1
        ip, vpce = fn.egress(rng)
        life = rng.randrange(5 * MINUTE, 4 * HOUR)
        rnd = rng.random
        span = life - 2
        offs = sorted([2 + int(rnd() * span) for _ in range(ncalls - 1)])
        offs.insert(0, rng.randrange(2, 6))
        # hot loop: runtime_call() inlined
        grb = rng.getrandbits
        var = _UUID_VARIANT
        flat = fn.flat
        d0 = t0 - t0 % DAY
        ds = _DATES.get(d0 // DAY) or ts(d0)[:10]
        dend = d0 + DAY
        bucket = self.buckets.setdefault(int((d0 - self.start) // DAY), [])
        seq = self.seq
        for off in offs:
            t = t0 + off
            api, rp, tail_a = flat[grb(8)]
            k = api.rid_kind
            h = grb(256).to_bytes(32, "little").hex()  # eventID from h[:32], a UUID requestID from h[32:]
            if k == "uuid":
                rid = f"{h[32:40]}-{h[40:44]}-4{h[45:48]}-{var[h[48]]}{h[49:52]}-{h[52:]}"
            elif k == "s3":
                rid = h[32:48].upper()
            else:
                rid = _ddb_rid(rng)
            if api.msgid:
                rp = rp.replace("%MSGID%", uuid4(rng))
            line = (f'{prefix}{ds + _HMS[t - d0] if t < dend else ts(t)}{api.mid}{ip}{api.ua}{rp}{rid}'
                    f'","eventID":"{h[:8]}-{h[8:12]}-4{h[13:16]}-{var[h[16]]}{h[17:20]}-{h[20:32]}"{tail_a}{vpce}'
                    f'{api.tail_b}')
            seq += 1
            if t < dend:
                bucket.append((t, seq, line))
            else:
                self.seq = seq
                self.emit(t, line)
                seq = self.seq
        self.seq = seq
        return n + ncalls

    def poller_session(self, rng, fn, t0):
        acct = fn.acct
        key = self.new_asia(acct, rng)
        n = rng.randrange(100, 999)
        g = time.gmtime(t0)
        sess = f"awslambda_{n}_{time.strftime('%Y%m%d%H%M%S', g)}{rng.randrange(1000):03d}"
        self.issuance(rng, acct, fn.role, sess, fn.region, t0, key)
        ui = fn.role.ui(sess, key, ts(t0))
        ua = POLLER_UA[fn.poller].replace("{uuid}", uuid4(rng))
        ip = rng.choice(AWS_POOLS[fn.region]).pick(rng)
        k = rng.randint(2, 10)
        a = acct.id
        for i in range(k):
            t = t0 + rng.randrange(5, 3 * HOUR)
            if fn.poller == "sqs":
                q = f"https://sqs.{fn.region}.amazonaws.com/{a}/{fn.name}-queue"
                src, name, rp = "sqs.amazonaws.com", "GetQueueAttributes", f'{{"queueUrl":"{q}","attributeNames":["All"]}}'
                host = f"sqs.{fn.region}.amazonaws.com"
            elif fn.poller == "dynamodb":
                sa = f"arn:aws:dynamodb:{fn.region}:{a}:table/{fn.table}/stream/2026-08-01T00:00:00.000"
                src, name, rp = "dynamodb.amazonaws.com", "DescribeStream", f'{{"streamArn":"{sa}"}}'
                host = f"streams.dynamodb.{fn.region}.amazonaws.com"
            else:
                sa = f"arn:aws:kinesis:{fn.region}:{a}:stream/{fn.name}-stream"
                src, name, rp = "kinesis.amazonaws.com", "DescribeStream", f'{{"streamARN":"{sa}"}}'
                host = f"kinesis.{fn.region}.amazonaws.com"
            _, line = self.event(rng, ui=ui, t=t, source=src, name=name, region=fn.region, ip=ip, ua=ua, rp=rp,
                                 acct=acct, host=host, v13=False)
            self.emit(t, line)
        return 1 + k

    USER_CALLS = (
        ("s3.amazonaws.com", "ListBuckets", "null", "s3.amazonaws.com", True),
        ("ec2.amazonaws.com", "DescribeInstances", '{"instancesSet":{},"filterSet":{}}', "ec2.{r}.amazonaws.com", True),
        ("lambda.amazonaws.com", "ListFunctions20150331", "null", "lambda.{r}.amazonaws.com", True),
        ("logs.amazonaws.com", "DescribeLogGroups", "null", "logs.{r}.amazonaws.com", True),
        ("cloudformation.amazonaws.com", "DescribeStacks", "null", "cloudformation.{r}.amazonaws.com", True),
        ("iam.amazonaws.com", "GetUser", "null", "iam.amazonaws.com", True),
        ("iam.amazonaws.com", "ListRoles", "null", "iam.amazonaws.com", True),
        ("sts.amazonaws.com", "GetCallerIdentity", "null", "sts.{r}.amazonaws.com", True),
        ("ssm.amazonaws.com", "GetParameter", None, "ssm.{r}.amazonaws.com", True),
        ("cloudwatch.amazonaws.com", "DescribeAlarms", "null", "monitoring.{r}.amazonaws.com", True),
    )
    CLI_CMDS = {"ListBuckets": "s3.ls", "DescribeInstances": "ec2.describe-instances",
                "ListFunctions20150331": "lambda.list-functions", "DescribeLogGroups": "logs.describe-log-groups",
                "DescribeStacks": "cloudformation.describe-stacks", "GetUser": "iam.get-user",
                "ListRoles": "iam.list-roles", "GetCallerIdentity": "sts.get-caller-identity",
                "GetParameter": "ssm.get-parameter", "DescribeAlarms": "cloudwatch.describe-alarms"}

    def user_ua(self, user, name, svc):
        p = user.profile
        if p == "cli":
            return CLI_UA.replace("{cmd}", self.CLI_CMDS.get(name, "sts.get-caller-identity"))
        if p == "terraform":
            return TERRAFORM_UA.replace("{svc}", svc)
        if p == "console":
            return BROWSER_UA
        return LAPTOP_BOTO3_UA

    def user_call(self, rng, user, t, ip, pick=None):
        acct = user.acct
        src, name, rp, host, ro = pick or rng.choice(self.USER_CALLS)
        region = rng.choices(REGIONS, (70, 20, 10))[0]
        host = host.replace("{r}", region)
        if src in ("iam.amazonaws.com", "s3.amazonaws.com"):
            region = "us-east-1"
        error = None
        if rp is None:
            pname = rng.choice(("/prod/db/password", "/shared/api-key", "/ops/pagerduty-token"))
            rp = f'{{"name":"{pname}","withDecryption":true}}'
            if rng.random() < 0.5:
                error = ("AccessDenied", f"User: arn:aws:iam::{acct.id}:user/{user.name} is not authorized to perform: "
                                         f"ssm:GetParameter on resource: arn:aws:ssm:{region}:{acct.id}:parameter{pname} "
                                         "because no identity-based policy allows the ssm:GetParameter action")
        elif rng.random() < 0.03:
            error = ("AccessDenied", f"User: arn:aws:iam::{acct.id}:user/{user.name} is not authorized to perform: "
                                     f"{src.split('.')[0]}:{name} because no identity-based policy allows the action")
        _, line = self.event(rng, ui=user.ui(), t=t, source=src, name=name, region=region, ip=ip,
                             ua=self.user_ua(user, name, src.split(".")[0]), rp=rp, acct=acct, error=error,
                             host=host, version="1.08")
        self.emit(t, line)

    def user_session(self, rng, user, t0):
        ip = PUB["home"].pick(rng) if (user.home and rng.random() < 0.3) else user.acct.corp_ip(rng, 0.12)
        k = rng.randint(2, 12)
        t = t0
        for _ in range(k):
            t += rng.randrange(2, 600)
            self.user_call(rng, user, t, ip)
        return k

    def console_login(self, rng, user, t, ip):
        acct = user.acct
        eid = uuid4(rng)
        line = (f'{{"eventVersion":"1.08","userIdentity":{user.ui(with_key=False)},"eventTime":"{ts(t)}",'
                '"eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","awsRegion":"us-east-1",'
                f'"sourceIPAddress":"{ip}","userAgent":"{BROWSER_UA}","requestParameters":null,'
                '"responseElements":{"ConsoleLogin":"Success"},"additionalEventData":{"LoginTo":'
                '"https://console.aws.amazon.com/console/home?state=hashArgs%23&isauthcode=true","MobileVersion":"No",'
                f'"MFAIdentifier":"arn:aws:iam::{acct.id}:mfa/{user.name}","MFAUsed":"Yes"}},'
                f'"eventID":"{eid}","readOnly":false,"eventType":"AwsConsoleSignIn","managementEvent":true,'
                f'"recipientAccountId":"{acct.id}","eventCategory":"Management",'
                '"tlsDetails":{"tlsVersion":"TLSv1.3","cipherSuite":"TLS_AES_128_GCM_SHA256",'
                '"clientProvidedHostHeader":"signin.aws.amazon.com"}}')
        self.emit(t, line)
        return eid

    def sso_session(self, rng, acct, t0):
        person = rng.choice(acct.users)
        sess = f"{person.name.split('.')[0]}@{EMAIL_DOMAIN}"
        key = self.new_asia(acct, rng)
        ui = acct.sso_role.ui(sess, key, ts(t0))
        ip = acct.corp_ip(rng, 0.2)
        k = rng.randint(3, 20)
        t = t0
        for _ in range(k):
            t += rng.randrange(5, 400)
            src, name, rp, host, ro = rng.choice(self.USER_CALLS[:8])
            region = "us-east-1" if src in ("iam.amazonaws.com", "s3.amazonaws.com") else rng.choice(REGIONS[:2])
            _, line = self.event(rng, ui=ui, t=t, source=src, name=name, region=region, ip=ip, ua=BROWSER_UA,
                                 rp=rp, acct=acct, host=host.replace("{r}", region))
            self.emit(t, line)
        return k

    def ci_deploy(self, rng, acct, t0, fn, create=False):
        """GitHub Actions on the office's self-hosted runner: web-identity role, then lambda calls."""
        key = self.new_asia(acct, rng)
        sub = f"repo:{COMPANY}/{fn.short}:ref:refs/heads/main"
        prov = f"arn:aws:iam::{acct.id}:oidc-provider/token.actions.githubusercontent.com"
        ui_web = (f'{{"type":"WebIdentityUser","principalId":"{prov}:sts.amazonaws.com:{sub}","userName":"{sub}",'
                  f'"identityProvider":"{prov}"}}')
        ip = acct.corp_ip(rng, 0.0)
        role = acct.ci_role
        re = (f'{{"credentials":{{"accessKeyId":"{key}","sessionToken":"{session_token(rng, "us-east-1")}",'
              f'"expiration":"{expiration(t0 + HOUR)}"}},"subjectFromWebIdentityToken":"{sub}",'
              f'"assumedRoleUser":{{"assumedRoleId":"{role.rid}:GitHubActions",'
              f'"arn":"arn:aws:sts::{acct.id}:assumed-role/{role.name}/GitHubActions"}},"provider":"{prov}",'
              '"audience":"sts.amazonaws.com"}')
        _, line = self.event(rng, ui=ui_web, t=t0, source="sts.amazonaws.com", name="AssumeRoleWithWebIdentity",
                             region="us-east-1", ip=ip, ua=GHA_UA, acct=acct, version="1.08",
                             rp=f'{{"roleArn":"{role.arn}","roleSessionName":"GitHubActions","durationSeconds":3600}}',
                             re=re, resources=f'[{{"accountId":"{acct.id}","type":"AWS::IAM::Role","ARN":"{role.arn}"}}]',
                             host="sts.amazonaws.com")
        self.emit(t0, line)
        ui = role.ui("GitHubActions", key, ts(t0))
        r = fn.region
        farn = f"arn:aws:lambda:{r}:{acct.id}:function:{fn.name}"
        t = t0 + rng.randrange(20, 90)
        n = 1
        if create:
            rp = jd({"functionName": fn.name, "runtime": fn.runtime, "role": fn.role.arn,
                     "handler": "index.handler" if fn.runtime.startswith("node") else "app.handler",
                     "code": {}, "description": "", "timeout": 30, "memorySize": 256, "publish": False,
                     "packageType": "Zip", "architectures": ["arm64"], "environment": {}})
            re = jd({"functionName": fn.name, "functionArn": farn, "runtime": fn.runtime, "role": fn.role.arn,
                     "handler": "app.handler", "codeSize": rng.randrange(2000, 9000000), "description": "",
                     "timeout": 30, "memorySize": 256, "lastModified": ts(t)[:19] + ".000+0000",
                     "codeSha256": base64.b64encode(rng.randbytes(32)).decode(), "version": "$LATEST",
                     "tracingConfig": {"mode": "PassThrough"}, "revisionId": uuid4(rng), "state": "Pending",
                     "stateReason": "The function is being created.", "stateReasonCode": "Creating",
                     "packageType": "Zip", "architectures": ["arm64"]})
            _, line = self.event(rng, ui=ui, t=t, source="lambda.amazonaws.com", name="CreateFunction20150331",
                                 region=r, ip=ip, ua=CI_UA.replace("{cmd}", "lambda.create-function"), rp=rp, re=re,
                                 ro=False, acct=acct, host=f"lambda.{r}.amazonaws.com", version="1.08")
            self.emit(t, line)
            return n + 1
        _, line = self.event(rng, ui=ui, t=t, source="lambda.amazonaws.com", name="GetFunction20150331v2",
                             region=r, ip=ip, ua=CI_UA.replace("{cmd}", "lambda.get-function"),
                             rp=f'{{"functionName":"{fn.name}"}}', acct=acct, host=f"lambda.{r}.amazonaws.com",
                             version="1.08")
        self.emit(t, line)
        t += rng.randrange(5, 60)
        rp = f'{{"functionName":"{fn.name}","publish":true,"dryRun":false}}'
        re = jd({"functionName": fn.name, "functionArn": farn + ":" + str(rng.randrange(2, 80)),
                 "runtime": fn.runtime, "role": fn.role.arn, "state": "Pending", "version": "1"})
        _, line = self.event(rng, ui=ui, t=t, source="lambda.amazonaws.com", name="UpdateFunctionCode20150331v2",
                             region=r, ip=ip, ua=CI_UA.replace("{cmd}", "lambda.update-function-code"), rp=rp, re=re,
                             ro=False, acct=acct, host=f"lambda.{r}.amazonaws.com", version="1.08")
        self.emit(t, line)
        n += 2
        if rng.random() < 0.3:
            t += rng.randrange(5, 60)
            rp = jd({"functionName": fn.name, "role": fn.role.arn, "timeout": rng.choice((30, 60, 120)),
                     "memorySize": rng.choice((256, 512, 1024))})
            _, line = self.event(rng, ui=ui, t=t, source="lambda.amazonaws.com",
                                 name="UpdateFunctionConfiguration20150331v2", region=r, ip=ip,
                                 ua=CI_UA.replace("{cmd}", "lambda.update-function-configuration"), rp=rp,
                                 re=jd({"functionName": fn.name, "functionArn": farn, "role": fn.role.arn,
                                        "lastUpdateStatus": "InProgress"}),
                                 ro=False, acct=acct, host=f"lambda.{r}.amazonaws.com", version="1.08")
            self.emit(t, line)
            n += 1
        return n

    # ---- fixed (unscaled) events ------------------------------------------------------
    def fixed(self, rng):
        """Account anchors, function creation, warm-up environments and one office login per
        working day: present at every scale (the cases rely on them)."""
        n = 0
        w = self.w
        for acct in w.accounts:
            admin = acct.users[0]
            self.console_login(rng, admin, acct.t0, acct.corp4[0])  # the account's first event
            n += 1
            for fn in acct.functions:
                if fn.active_from is None:
                    continue
                if fn.case == "late_attribution_v4_then_v1":
                    continue  # brand-new role: nothing may reveal it before the case's remote call
                if fn.created:
                    n += self.ci_deploy(rng, acct, fn.active_from - rng.randrange(60, 300), fn, create=True)
                else:
                    # a pre-existing function: its first environment arrives in order
                    n += self.env(rng, fn, fn.active_from + rng.randrange(60, 600), ooo_allowed=False)
            for d in range(w.days):
                day0 = self.start + d * DAY
                if time.gmtime(day0).tm_wday >= 5 or day0 + 8 * HOUR <= acct.t0 + HOUR:
                    continue
                u = acct.users[d % len(acct.users)]
                self.console_login(rng, u, day0 + 8 * HOUR + rng.randrange(0, 2 * HOUR), acct.corp_ip(rng, 0.0))
                n += 1
        return n

    # ---- scaled background -------------------------------------------------------------
    def day_factor(self, day0):
        return 0.45 if time.gmtime(day0).tm_wday >= 5 else 1.0

    def work_factor(self, day0):
        return 0.06 if time.gmtime(day0).tm_wday >= 5 else 1.0

    def base_rate(self):
        """Expected scaled events at scale 1."""
        total = 0.0
        for acct in self.w.accounts:
            for d in range(self.w.days):
                day0 = self.start + d * DAY
                if day0 + DAY <= acct.t0:
                    continue
                frac = min(1.0, (day0 + DAY - acct.t0) / DAY)
                df, wf = self.day_factor(day0) * frac, self.work_factor(day0) * frac
                for fn in acct.functions:
                    if fn.active_from is None or day0 + DAY <= fn.active_from:
                        continue
                    f = min(1.0, (day0 + DAY - fn.active_from) / DAY)
                    total += fn.weight * df * f * (2 + (1 if fn.kms else 0) + (fn.cmin + fn.cmax) / 2)
                    if fn.poller:
                        total += fn.pweight * df * f * 7
                for u in acct.users:
                    total += u.weight * wf * 7
                total += 1.5 * wf * 11.5
                total += 0.4 * wf * 3.3
        return total

    @staticmethod
    def count(rng, lam):
        n = int(lam)
        return n + (1 if rng.random() < lam - n else 0)

    def background_day(self, rng, d, m):
        day0 = self.start + d * DAY
        n = 0
        for acct in self.w.accounts:
            if day0 + DAY <= acct.t0:
                continue
            df, wf = self.day_factor(day0), self.work_factor(day0)
            lo_acct = max(day0, acct.t0 + HOUR)
            for fn in acct.functions:
                if fn.active_from is None or day0 + DAY <= fn.active_from:
                    continue
                lo = max(lo_acct, fn.active_from + HOUR)
                if lo >= day0 + DAY:
                    continue
                for _ in range(self.count(rng, m * fn.weight * df * (day0 + DAY - lo) / DAY)):
                    if rng.random() < 0.65:
                        t0 = day0 + rng.randrange(7 * HOUR, 21 * HOUR)
                    else:
                        t0 = day0 + rng.randrange(0, DAY)
                    if t0 < lo:
                        t0 = lo + rng.randrange(0, day0 + DAY - lo)
                    n += self.env(rng, fn, t0)
                if fn.poller:
                    for _ in range(self.count(rng, m * fn.pweight * df * (day0 + DAY - lo) / DAY)):
                        n += self.poller_session(rng, fn, lo + rng.randrange(0, day0 + DAY - lo))
            lo = max(day0 + 7 * HOUR, acct.t0 + HOUR)
            hi = day0 + 20 * HOUR
            if lo >= hi:
                continue
            for u in acct.users:
                for _ in range(self.count(rng, m * u.weight * wf)):
                    n += self.user_session(rng, u, rng.randrange(lo, hi))
            for _ in range(self.count(rng, m * 1.5 * wf)):
                n += self.sso_session(rng, acct, rng.randrange(lo, hi))
            deployable = [f for f in acct.functions if f.active_from is not None and f.active_from + DAY < day0]
            if deployable:
                for _ in range(self.count(rng, m * 0.4 * wf)):
                    n += self.ci_deploy(rng, acct, rng.randrange(lo, hi), rng.choice(deployable))
        return n

    # ---- attack cases ------------------------------------------------------------------
    def c_env(self, rng, fn, t0, n_inside, span=20 * MINUTE, issue_sk=None, inside_sk=None):
        """A case's execution environment: issuance at t0, n_inside runtime calls from inside.
        Returns (key, ui). inside_sk(i, t) may move the inside calls in the stream."""
        acct = fn.acct
        key = self.new_asia(acct, rng)
        self.issuance(rng, acct, fn.role, fn.name, fn.region, t0, key, sk=issue_sk)
        ui = fn.role.ui(fn.name, key, ts(t0))
        prefix = self.head(ui)
        ip, vpce = fn.egress(rng)
        offs = sorted(rng.randrange(3, span) for _ in range(n_inside))
        for i, off in enumerate(offs):
            sk = inside_sk(i, t0 + off) if inside_sk else None
            self.runtime_call(rng, fn, prefix, t0 + off, ip, vpce, sk=sk)
        return key, ui

    ATT_CALLS = (
        ("sts.amazonaws.com", "GetCallerIdentity", "null", "sts.{r}.amazonaws.com"),
        ("s3.amazonaws.com", "ListBuckets", "null", "s3.amazonaws.com"),
        ("lambda.amazonaws.com", "ListFunctions20150331", "null", "lambda.{r}.amazonaws.com"),
        ("secretsmanager.amazonaws.com", "ListSecrets", "null", "secretsmanager.{r}.amazonaws.com"),
        ("iam.amazonaws.com", "ListAttachedRolePolicies", None, "iam.amazonaws.com"),
        ("ec2.amazonaws.com", "DescribeInstances", '{"instancesSet":{},"filterSet":{}}', "ec2.{r}.amazonaws.com"),
    )

    def c_remote(self, rng, fn_or_role, acct, ui, t, ip, ua, i=0, region="us-east-1", vpce="", sk=None):
        """One attacker call with a stolen key. Returns eventID."""
        src, name, rp, host = self.ATT_CALLS[i % len(self.ATT_CALLS)]
        if rp is None:
            role = fn_or_role if isinstance(fn_or_role, Role) else fn_or_role.role
            rp = f'{{"roleName":"{role.name}"}}'
        reg = "us-east-1" if src in ("s3.amazonaws.com", "iam.amazonaws.com") else region
        eid, line = self.event(rng, ui=ui, t=t, source=src, name=name, region=reg, ip=ip, ua=ua, rp=rp, acct=acct,
                               vpce=vpce, host=host.replace("{r}", reg))
        self.emit(t if sk is None else sk, line)
        return eid

    def alert(self, variation, fn, eid, key, asn, case, upgrade_of=None, session=None, role=None):
        role = role or fn.role
        a = make_alert(variation, fn.acct.id, eid, key, role.arn, session or fn.name, asn, case, upgrade_of)
        self.alerts.append(a)
        return a["alert_id"]

    def cases(self, rng):
        w = self.w
        n0 = self.seq
        for ci, (acct, cname, _d) in enumerate(w.cases):
            fn = w.case_fn[ci]
            t = w.case_times[ci]
            getattr(self, "case_" + cname)(rng, ci, acct, fn, t)
        return self.seq - n0

    def case_v1_inside_then_remote(self, rng, ci, acct, fn, t):
        key, ui = self.c_env(rng, fn, t, 4)
        ip = PUB["do1"].pick(rng)
        first = None
        for i in range(3):
            eid = self.c_remote(rng, fn, acct, ui, t + 40 * MINUTE + i * 97, ip, ATT_BOTO3_UA, i)
            first = first or eid
        self.alert(1, fn, first, key, PUB["do1"].asn, "v1_inside_then_remote")

    def case_v1_ua_claim(self, rng, ci, acct, fn, t):
        key, ui = self.c_env(rng, fn, t, 0)
        ip = PUB["hetzner"].pick(rng)
        e1 = self.c_remote(rng, fn, acct, ui, t + 2 * HOUR, ip, ATT_CLAIM_UA, 0)
        self.c_remote(rng, fn, acct, ui, t + 2 * HOUR + 41, ip, ATT_CLAIM_UA, 3)
        self.alert(1, fn, e1, key, PUB["hetzner"].asn, "v1_ua_claim")

    def case_v1_other_region(self, rng, ci, acct, fn, t):
        assert fn.region == "us-east-1"
        key, ui = self.c_env(rng, fn, t, 3)
        ip = EC2_EU_ATTACKER.pick(rng)
        e1 = self.c_remote(rng, fn, acct, ui, t + HOUR, ip, ATT_BOTO3_UA, 0, region="eu-west-1")
        self.c_remote(rng, fn, acct, ui, t + HOUR + 30, ip, ATT_BOTO3_UA, 5, region="eu-west-1")
        self.alert(1, fn, e1, key, EC2_EU_ATTACKER.asn, "v1_other_region")

    def case_v1_foreign_vpce(self, rng, ci, acct, fn, t):
        key, ui = self.c_env(rng, fn, t, 3)
        ours = {a.id for a in self.w.accounts}
        foreign = acct.id
        while foreign in ours:
            foreign = "%012d" % rng.randrange(100000000000, 999999999999)
        vpce = f',"vpcEndpointId":"vpce-0{"%016x" % rng.getrandbits(64)}","vpcEndpointAccountId":"{foreign}"'
        ip = f"172.31.{rng.randrange(0, 255)}.{rng.randrange(4, 250)}"
        e1 = self.c_remote(rng, fn, acct, ui, t + 35 * MINUTE, ip, ATT_BOTO3_UA, 0, region=fn.region, vpce=vpce)
        self.c_remote(rng, fn, acct, ui, t + 36 * MINUTE, ip, ATT_BOTO3_UA, 3, region=fn.region, vpce=vpce)
        self.alert(1, fn, e1, key, 0, "v1_foreign_vpce")

    def case_v1_ipv6(self, rng, ci, acct, fn, t):
        key, ui = self.c_env(rng, fn, t, 3)
        ip = PUB["hetzner6"].pick(rng)
        e1 = self.c_remote(rng, fn, acct, ui, t + 50 * MINUTE, ip, ATT_BOTO3_UA, 0)
        self.c_remote(rng, fn, acct, ui, t + 52 * MINUTE, ip, ATT_BOTO3_UA, 1)
        self.alert(1, fn, e1, key, PUB["hetzner6"].asn, "v1_ipv6")

    def case_v2_cli(self, rng, ci, acct, fn, t):
        key, ui = self.c_env(rng, fn, t, 0)
        ip = PUB["ovh"].pick(rng)
        e1 = self.c_remote(rng, fn, acct, ui, t + 3 * HOUR, ip, ATT_CLI_UA, 0)
        self.c_remote(rng, fn, acct, ui, t + 3 * HOUR + 12, ip, ATT_CLI_UA, 0)
        self.alert(2, fn, e1, key, PUB["ovh"].asn, "v2_cli")

    def case_v3_known_asn(self, rng, ci, acct, fn, t):
        # the office ASN is in the account's baseline: make sure of it whatever the scale
        u = acct.users[0]
        self.user_call(rng, u, t - 20 * HOUR, acct.corp4[1], pick=self.USER_CALLS[0])
        key, ui = self.c_env(rng, fn, t, 0)
        ip = acct.corp4[2]
        e1 = self.c_remote(rng, fn, acct, ui, t + 90 * MINUTE, ip, LAPTOP_BOTO3_UA, 0)
        self.c_remote(rng, fn, acct, ui, t + 95 * MINUTE, ip, ATT_REQUESTS_UA, 1)
        self.alert(3, fn, e1, key, PUB["corp"].asn, "v3_known_asn")

    def case_v4_remote(self, rng, ci, acct, fn, t):
        key, ui = self.c_env(rng, fn, t, 0)
        ip = PUB["do2"].pick(rng)
        e1 = self.c_remote(rng, fn, acct, ui, t + 2 * HOUR, ip, ATT_BOTO3_UA, 0)
        self.c_remote(rng, fn, acct, ui, t + 2 * HOUR + 300, ip, ATT_BOTO3_UA, 1)
        self.alert(4, fn, e1, key, PUB["do2"].asn, "v4_remote")

    def case_upgrade_v4_to_v1(self, rng, ci, acct, fn, t):
        # inside calls at t+1..3 min, delivered right after the remote call at t+4 min
        remote_t = t + 4 * MINUTE
        key, ui = self.c_env(rng, fn, t, 3, span=3 * MINUTE,
                             inside_sk=lambda i, te: remote_t + 0.5 + i * 0.01)
        ip = PUB["ovh"].pick(rng)
        e1 = self.c_remote(rng, fn, acct, ui, remote_t, ip, ATT_BOTO3_UA, 0)
        a4 = self.alert(4, fn, e1, key, PUB["ovh"].asn, "upgrade_v4_to_v1")
        self.alert(1, fn, e1, key, PUB["ovh"].asn, "upgrade_v4_to_v1", upgrade_of=a4)

    def case_late_attribution_v4_then_v1(self, rng, ci, acct, fn, t):
        # issuance at t delivered at t+12 min; remote call at t+3 min; inside uses from t+13 min
        key = self.new_asia(acct, rng)
        self.issuance(rng, acct, fn.role, fn.name, fn.region, t, key, sk=t + 12 * MINUTE)
        ui = fn.role.ui(fn.name, key, ts(t))
        ip = PUB["do1"].pick(rng)
        e1 = self.c_remote(rng, fn, acct, ui, t + 3 * MINUTE, ip, ATT_BOTO3_UA, 0)
        prefix = self.head(ui)
        eip, vpce = fn.egress(rng)
        for i in range(3):
            self.runtime_call(rng, fn, prefix, t + 13 * MINUTE + i * 40, eip, vpce)
        a4 = self.alert(4, fn, e1, key, PUB["do1"].asn, "late_attribution_v4_then_v1")
        self.alert(1, fn, e1, key, PUB["do1"].asn, "late_attribution_v4_then_v1", upgrade_of=a4)

    def user_assume(self, rng, user, role, session, t, ip, ua, duration=HOUR):
        """sts:AssumeRole by an IAM user. Returns the new ASIA key."""
        acct = user.acct
        key = self.new_asia(acct, rng)
        re = (f'{{"credentials":{{"accessKeyId":"{key}","sessionToken":"{session_token(rng, "us-east-1")}",'
              f'"expiration":"{expiration(t + duration)}"}},"assumedRoleUser":{{"assumedRoleId":"{role.rid}:{session}",'
              f'"arn":"arn:aws:sts::{acct.id}:assumed-role/{role.name}/{session}"}}}}')
        _, line = self.event(rng, ui=user.ui(), t=t, source="sts.amazonaws.com", name="AssumeRole",
                             region="us-east-1", ip=ip, ua=ua, acct=acct, version="1.08",
                             rp=f'{{"roleArn":"{role.arn}","roleSessionName":"{session}","durationSeconds":{duration}}}',
                             re=re, resources=f'[{{"accountId":"{acct.id}","type":"AWS::IAM::Role","ARN":"{role.arn}"}}]',
                             host="sts.us-east-1.amazonaws.com")
        self.emit(t, line)
        return key

    def case_v5_new_identity(self, rng, ci, acct, fn, t):
        self.c_env(rng, fn, t - 3 * HOUR, 3)  # the function runs as usual
        user = next(u for u in acct.users if u.name == "svc-reporting")
        ip = PUB["vultr"].pick(rng)
        self.user_call(rng, user, t, ip, pick=self.USER_CALLS[7])
        key = self.user_assume(rng, user, fn.role, "debug-session", t + 60, ip, ATT_BOTO3_UA)
        ui = fn.role.ui("debug-session", key, ts(t + 60))
        e1 = None
        for i in range(3):
            eid = self.c_remote(rng, fn, acct, ui, t + 120 + i * 45, ip, ATT_BOTO3_UA, (0, 3, 4)[i])
            e1 = e1 or eid
        self.alert(5, fn, e1, key, PUB["vultr"].asn, "v5_new_identity", session="debug-session")

    def case_v6_known_identity(self, rng, ci, acct, fn, t):
        dev = self.w.case_user[ci]
        session = dev.name.split(".")[0] + "-debug"
        # the role is known as Lambda's before the developer's first assumption
        self.c_env(rng, fn, acct.t0 + 20 * MINUTE, 2)
        last = {5: None, 6: None}
        first = True
        for d in range(self.w.days):
            day0 = self.start + d * DAY
            ta = day0 + 9 * HOUR + rng.randrange(0, 50 * MINUTE)
            if ta < acct.t0 + HOUR:
                continue
            ip = acct.corp_ip(rng, 0.0)
            key = self.user_assume(rng, dev, fn.role, session, ta, ip, CLI_UA.replace("{cmd}", "sts.assume-role"))
            ui = fn.role.ui(session, key, ts(ta))
            var = 5 if first else 6
            first = False
            for i, off in enumerate((rng.randrange(10, 60), rng.randrange(120, 900))):
                tc = ta + off
                src, name, rp, host = (("logs.amazonaws.com", "FilterLogEvents",
                                        f'{{"logGroupName":"/aws/lambda/{fn.name}","startTime":{(tc - HOUR) * 1000}}}',
                                        f"logs.{fn.region}.amazonaws.com"),
                                       ("lambda.amazonaws.com", "GetFunction20150331v2",
                                        f'{{"functionName":"{fn.name}"}}', f"lambda.{fn.region}.amazonaws.com"))[i]
                eid, line = self.event(rng, ui=ui, t=tc, source=src, name=name, region=fn.region, ip=ip,
                                       ua=CLI_UA.replace("{cmd}", ("logs.filter-log-events", "lambda.get-function")[i]),
                                       rp=rp, acct=acct, host=host)
                self.emit(tc, line)
                if tc - acct.t0 >= ACTIVATION and (last[var] is None or tc - last[var] >= DEDUP):
                    last[var] = tc
                    self.alert(var, fn, eid, key, PUB["corp"].asn, "v6_known_identity", session=session)

    def _stolen(self, rng, fn, t, pool, case, alert):
        key, ui = self.c_env(rng, fn, t, 3)
        ip = pool.pick(rng)
        e1 = self.c_remote(rng, fn, fn.acct, ui, t + 45 * MINUTE, ip, ATT_BOTO3_UA, 0)
        self.c_remote(rng, fn, fn.acct, ui, t + 47 * MINUTE, ip, ATT_BOTO3_UA, 2)
        if alert:
            self.alert(1, fn, e1, key, pool.asn, case)

    def case_dedup_window(self, rng, ci, acct, fn, t):
        for dd, alert in ((0, True), (3, False), (8, True)):
            self._stolen(rng, fn, t + dd * DAY + rng.randrange(0, 20 * MINUTE), PUB["hetzner"], "dedup_window", alert)

    def case_activation_suppressed(self, rng, ci, acct, fn, t):
        t = acct.t0 + 10 * DAY + rng.randrange(0, 6 * HOUR)
        self._stolen(rng, fn, t, PUB["hetzner"], "activation_suppressed", False)

    def case_activation_boundary(self, rng, ci, acct, fn, t):
        # remote use exactly at first_seen + 13d23h (suppressed, no ledger entry), then at +14d1h
        for target, alert in ((acct.t0 + 13 * DAY + 23 * HOUR, False), (acct.t0 + 14 * DAY + HOUR, True)):
            self._stolen(rng, fn, target - 45 * MINUTE, PUB["hetzner"], "activation_boundary", alert)

    # ---- driver --------------------------------------------------------------------------
    def run(self, sink, target):
        w = self.w
        base = f"{self.seed}"
        n_cases = self.cases(random.Random(base + "/cases")) if self.attacks else 0
        n_fixed = self.fixed(random.Random(base + "/fixed"))
        B = self.base_rate()
        m = max(0.0, (target - n_cases - n_fixed) / B) if B > 0 else 0.0
        rng = random.Random(base + "/bg")
        for d in range(w.days):
            self.background_day(rng, d, m)
            self.flush(sink, d - 1)
        self.flush(sink, 1 << 30)
        return m


def parse_date(s):
    try:
        return calendar.timegm(time.strptime(s, "%Y-%m-%d"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {s}")


def main(argv=None):
    cases_help = "\n".join(f"  {k:28s} {v}" for k, v in CASE_DOC.items())
    ap = argparse.ArgumentParser(
        prog="gen_sample.py",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Generate a deterministic synthetic CloudTrail stream with stolen-Lambda-credential cases "
                    "and the alerts trailhound must raise (rules: docs/detections.md).",
        epilog="Accounts come in blocks of 6: slots 0-3 carry the normal cases (round-robin), slot 4 starts "
               "DAYS-15 days late (activation_suppressed), slot 5 holds the activation boundary pair. Every "
               "block gets the full case set, so more accounts repeat the cases.\n\ncases:\n" + cases_help +
               "\n\nexpected file: one JSON object per line, sorted by alert_id, fields alert_id, variation, "
               "alert_name, severity, account_id, event_id, access_key_id, role_arn, function_or_session, asn, "
               "upgrade_of, case.")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--accounts", type=int, default=6, help="number of AWS accounts (default 6)")
    ap.add_argument("--days", type=int, default=45, help="days of data (default 45; >= 30 with attacks)")
    ap.add_argument("--start", type=parse_date, default=parse_date("2026-09-01"),
                    help="first day, UTC (default 2026-09-01)")
    ap.add_argument("--target-events", type=int, default=50000,
                    help="about this many events in total; scales the background (default 50000)")
    ap.add_argument("--format", choices=("jsonl", "records", "array"), default="jsonl",
                    help="jsonl: one compact event per line; records: {\"Records\":[...]} objects of up to 100 "
                         "events, one per line; array: one pretty-printed JSON array (slow)")
    ap.add_argument("--out", default="-", help="events file ('-' = stdout, '.gz' suffix = gzip); default -")
    ap.add_argument("--expected", help="write the expected alerts (JSON lines) here")
    ap.add_argument("--no-attacks", action="store_true", help="background only; the expected file is empty")
    ap.add_argument("--gzip-level", type=int, default=1, choices=range(1, 10), metavar="1-9",
                    help="gzip compression level for .gz output (default 1: fast; 6 is ~2x slower, 30%% smaller)")
    ap.add_argument("-q", "--quiet", action="store_true", help="no summary on stderr")
    args = ap.parse_args(argv)
    if args.accounts < 1:
        ap.error("--accounts must be >= 1")
    if args.days < 1 or (not args.no_attacks and args.days < 30):
        ap.error("--days must be >= 30 (the cases need activation + dedup windows), or use --no-attacks")
    if args.target_events < 0:
        ap.error("--target-events must be >= 0")

    t_start = time.perf_counter()
    c_start = time.process_time()
    world = World(args.seed, args.accounts, args.days, args.start)
    gen = Gen(world, args.seed, not args.no_attacks)
    sink = Sink(args.out, args.format, args.gzip_level)
    try:
        m = gen.run(sink, args.target_events)
    finally:
        sink.close()
    if args.expected:
        alerts = sorted(gen.alerts, key=lambda a: a["alert_id"])
        with open(args.expected, "w") as f:
            for a in alerts:
                f.write(json.dumps(a, separators=(",", ":")) + "\n")
    el = time.perf_counter() - t_start
    cpu = time.process_time() - c_start
    if not args.quiet:
        byv = {}
        for a in gen.alerts:
            byv[a["variation"]] = byv.get(a["variation"], 0) + 1
        print(f"gen_sample: {sink.count} events, {len(gen.alerts)} expected alerts "
              f"(by variation {dict(sorted(byv.items()))}), {len(world.accounts)} accounts, {args.days} days, "
              f"scale {m:.3f}, {el:.2f} s wall ({sink.count / el if el > 0 else 0:.0f} events/s), "
              f"{cpu:.2f} s CPU ({sink.count / cpu if cpu > 0 else 0:.0f} events/s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

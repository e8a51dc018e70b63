"""`trailhound bridge` against a real wire protocol: moto_server (moto[server] from
PyPI) serves S3 with S3->SQS event notifications, SQS and STS on a loopback port,
with signature checking on (INITIAL_NO_AUTH_ACTION_COUNT: only the first few
requests, which create the IAM user and its key, are let through unsigned);
the broker is the Kafka tests' own.

What is checked (read_committed, as the worker reads):
  - files uploaded to the bucket reach the topic exactly once each, keyed and
    partitioned as `trailhound produce` keys and partitions the same events;
    s3:TestEvent and digest files are skipped; a redelivered notification is
    skipped through the ledger marker;
  - SNS-wrapped S3 notifications and CloudTrail's own SNS message;
  - kill -9 of the bridge inside a file's transaction, and between the commit
    and the SQS delete: after SQS redelivers, no duplicate and no loss;
  - a corrupt gzip is left on the queue and dead-lettered after
    bridge_max_receives receives;
  - a wrong secret key: exit 4 and a message naming the signature failure;
  - credentials from a profile file and from web identity (STS
    AssumeRoleWithWebIdentity), refreshed when they near expiry;
  - --backfill lists the archive (organisation trail layout), publishes the
    files inside --since in delivery order, and shares markers with the live
    bridge;
  - end to end: bridge -> `trailhound run` -> alerts equal `scan` over the same files.
"""
import collections
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest

from conftest import (BIN, PARTITIONS, free_port, log, read_alerts, read_topic, run_to_end,
                      wait_for_topics)

try:
    import boto3
except ImportError as e:  # pragma: no cover - environment problem, say so clearly
    raise ImportError(f"{e}: the bridge tests need moto[server] and boto3 "
                      "(scripts/setup.sh installs them: pip install 'moto[server]' boto3)") from e
from confluent_kafka.admin import NewTopic  # noqa: E402

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's account



def start_moto(tmp_path_factory, auth=True):
    """moto_server on a loopback port; auth: signatures checked after the IAM setup."""
    import shutil
    assert shutil.which("moto_server"), \
        "moto_server not found: pip install 'moto[server]' (scripts/setup.sh does)"
    port = free_port()
    logf = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    env = dict(os.environ)
    if auth:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
    proc = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(port)], stdout=logf,
                            stderr=subprocess.STDOUT, env=env)
    ep = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "moto_server did not start"
            time.sleep(0.2)
    kw = dict(endpoint_url=ep, region_name=REGION, aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
              aws_secret_access_key="unused")
    iam = boto3.client("iam", **kw)
    # the three unauthenticated actions
    iam.create_user(UserName="bridge")
    iam.put_user_policy(UserName="bridge", PolicyName="all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17",
         "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="bridge")["AccessKey"]

    class M:
        endpoint = ep
        akid = key["AccessKeyId"]
        secret = key["SecretAccessKey"]

        def client(self, svc, **over):
            return boto3.client(svc, **dict(kw, aws_access_key_id=self.akid,
                                            aws_secret_access_key=self.secret, **over))

    def stop():
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        logf.close()

    return M(), stop


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    m, stop = start_moto(tmp_path_factory)
    yield m
    stop()


@pytest.fixture(scope="module")
def moto_noauth(tmp_path_factory):
    """moto answers AssumeRoleWithWebIdentity only when the request carries an
    Authorization header, which AWS does not want (the token is the proof):
    the web identity test runs against a moto without signature checks."""
    m, stop = start_moto(tmp_path_factory, auth=False)
    yield m
    stop()


class Env:
    """One test's bucket, queue (S3 notifications on), and Kafka topics."""

    def __init__(self, moto, admin, broker, tmp_path, notify=True):
        self.moto, self.broker, self.tmp = moto, broker, tmp_path
        sfx = uuid.uuid4().hex[:10]
        self.bucket = f"trail-{sfx}"
        self.s3 = moto.client("s3")
        self.sqs = moto.client("sqs")
        self.s3.create_bucket(Bucket=self.bucket)
        self.queue = self.sqs.create_queue(QueueName=f"q-{sfx}")["QueueUrl"]
        if notify:
            arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])[
                "Attributes"]["QueueArn"]
            self.s3.put_bucket_notification_configuration(
                Bucket=self.bucket, NotificationConfiguration={"QueueConfigurations": [
                    {"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
        self.topic, self.ref = f"th-test.br.{sfx}", f"th-test.brref.{sfx}"
        self.ledger, self.dlq = f"th-test.brledger.{sfx}", f"th-test.brdl.{sfx}"
        new = [NewTopic(self.topic, PARTITIONS, 1), NewTopic(self.ref, PARTITIONS, 1),
               NewTopic(self.ledger, 3, 1, config={"cleanup.policy": "compact"}),
               NewTopic(self.dlq, 1, 1)]
        for f in admin.create_topics(new, operation_timeout=30).values():
            f.result()
        wait_for_topics(admin, [t.topic for t in new])
        self.tid = f"th-test.bridge.{sfx}"
        self.n = 0

    def key(self, account="111122223333", region="us-east-1", day="2026/11/01",
            stamp="20261101T0000Z", org=None, digest=False):
        self.n += 1
        kind = "CloudTrail-Digest" if digest else "CloudTrail"
        base = "AWSLogs/" + (f"{org}/" if org else "") + f"{account}/{kind}/{region}/{day}/"
        name = f"{account}_{kind}_{region}_{stamp}_{uuid.uuid4().hex[:16]}.json.gz"
        return base + name

    def upload(self, key, events):
        body = gzip.compress(json.dumps({"Records": events}).encode())
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)

    def cmd(self, *extra):
        return [BIN, "bridge",
                "--set", f"brokers={self.broker}",
                "--set", f"input_topics={self.topic}",
                "--set", f"dead_letter_topic={self.dlq}",
                "--set", f"bridge_ledger_topic={self.ledger}",
                "--set", f"bridge_transactional_id={self.tid}",
                "--set", f"bridge_queue_url={self.queue}",
                "--set", f"aws_endpoint={self.moto.endpoint}",
                "--set", f"aws_region={REGION}",
                # the fixtures' files are dated 2026-11-01 (Env.key): their
                # markers must stay held whatever day the suite runs
                # (test_bridge_ledger_retention sets the default back)
                "--set", "bridge_ledger_retention=3650d",
                "--wait", "1", *extra]

    def env(self, **over):
        e = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        e.update(AWS_ACCESS_KEY_ID=self.moto.akid, AWS_SECRET_ACCESS_KEY=self.moto.secret,
                 AWS_EC2_METADATA_DISABLED="true", HOME=str(self.tmp))
        for k, v in over.items():
            if v is None:
                e.pop(k, None)
            else:
                e[k] = v
        return e

    def run(self, *extra, env=None, timeout=180, idle=1000):
        """One bridge run to its idle exit. idle: the ms without a message it
        waits before it exits; each empty receive is a 1 s long poll (--wait
        1), so the default, 1000, exits after the first empty receive that
        follows the last work. Enough when every notification is on the queue
        and visible before the run starts (moto queues S3's notification in
        put_object's own request): pass more only when a message becomes
        visible while the bridge runs (a visibility timeout running out
        meanwhile), or wait_visible() first."""
        t = time.monotonic()
        p = subprocess.run(self.cmd("--exit-when-idle", str(idle), *extra), env=env or self.env(),
                           capture_output=True, text=True, timeout=timeout)
        log(f"bridge {' '.join(extra) or 'live'} exited {p.returncode} in "
            f"{time.monotonic() - t:.1f} s: "
            f"{[l for l in p.stderr.splitlines() if 'files=' in l][-1:] }")
        return p

    def queue_depth(self):
        a = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])

    def wait_visible(self, seconds=60):
        """Until no message is in flight and one at least is visible (the
        visibility timeout of those a killed or stopped bridge received ran
        out): a run started then finds them at once, where a fixed sleep or a
        long idle exit waited for the timeout's worst case."""
        deadline = time.monotonic() + seconds
        while True:
            a = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=[
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])[
                    "Attributes"]
            visible = int(a["ApproximateNumberOfMessages"])
            in_flight = int(a["ApproximateNumberOfMessagesNotVisible"])
            if visible and not in_flight:
                return visible
            assert time.monotonic() < deadline, f"{visible} visible, {in_flight} in flight"
            time.sleep(0.2)


@pytest.fixture
def env(moto, admin, broker, tmp_path):
    return Env(moto, admin, broker, tmp_path)


@pytest.fixture(scope="module")
def events(sample):
    """The sample's events (parsed), in order."""
    return [json.loads(l) for l in open(sample.path)]


def text_headers(msg):
    """A message's headers as {name: text}."""
    return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in msg.headers.items()}


def by_event_id(msgs):
    out = collections.defaultdict(list)
    for m in msgs:
        out[json.loads(m.value)["eventID"]].append(m)
    return out


def owner(ev):
    ui = ev.get("userIdentity") or {}
    return ui.get("accountId") or ev.get("recipientAccountId")


def assert_once_keyed(env, want_events, ref_file=None):
    """Every wanted event exactly once on the topic, nothing else, keyed by its
    owner's account and on the partition `trailhound produce` chose."""
    got = by_event_id(read_topic(env.broker, env.topic))
    want_ids = [e["eventID"] for e in want_events]
    dup = {k: len(v) for k, v in got.items() if len(v) > 1}
    missing = set(want_ids) - set(got)
    extra = set(got) - set(want_ids)
    assert not dup and not missing and not extra, \
        f"duplicates {len(dup)}, missing {len(missing)}, extra {len(extra)}"
    for e in want_events:
        m = got[e["eventID"]][0]
        assert m.key.decode() == owner(e), e["eventID"]
    if ref_file:
        p = subprocess.run([BIN, "produce", "-b", env.broker, "-t", env.ref, str(ref_file)],
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        ref = by_event_id(read_topic(env.broker, env.ref))
        moved = [i for i in want_ids if ref[i][0].partition != got[i][0].partition]
        assert not moved, f"{len(moved)} events on another partition than `produce` puts them"
        assert len({m[0].partition for m in got.values()}) > 1, "all on one partition"


def write_jsonl(path, evs):
    with open(path, "w") as f:
        for e in evs:
            f.write(json.dumps(e) + "\n")
    return path


def test_bridge_exactly_once_keyed(env, events, tmp_path):
    files = [events[0:400], events[400:900], events[900:1000]]
    keys = []
    for i, evs in enumerate(files):
        keys.append(env.key(account=f"11112222{3333 + i}"))
        env.upload(keys[-1], evs)
    # a digest file and a file of another kind are never published
    env.upload(env.key(digest=True), events[1000:1010])
    p = env.run()
    assert p.returncode == 0, p.stderr
    assert "test event" in p.stderr  # moto sent s3:TestEvent when notifications were set up
    published = events[0:1000]
    assert_once_keyed(env, published, write_jsonl(tmp_path / "ref.jsonl", published))
    assert env.queue_depth() == 0
    # a redelivered notification (same file, same ETag): skipped via the ledger
    etag = env.s3.head_object(Bucket=env.bucket, Key=keys[0])["ETag"].strip('"')
    note = {"Records": [{"eventName": "ObjectCreated:Put", "s3": {
        "bucket": {"name": env.bucket}, "object": {"key": keys[0], "eTag": etag}}}]}
    env.sqs.send_message(QueueUrl=env.queue, MessageBody=json.dumps(note))
    p = env.run()
    assert p.returncode == 0, p.stderr
    assert "published before (ledger), skipped" in p.stderr
    assert_once_keyed(env, published)
    assert env.queue_depth() == 0


def test_bridge_ledger_retention(env, events):
    """The ledger's markers are kept on the topic, but the live bridge holds in
    memory only those of files delivered within bridge_ledger_retention: SQS
    keeps a notification 14 days at most, so an older file cannot come again
    but by a backfill. A file within the retention is still never published
    twice; a file older than it, notified again, is published again with a
    warning (the trade-off, said in the log); a backfill reads the markers of
    its whole period and publishes neither again. (All markers were held for
    ever: the second start logged "2 file(s) published before".)"""
    when = lambda t: dict(day=time.strftime("%Y/%m/%d", time.gmtime(t)),
                          stamp=time.strftime("%Y%m%dT%H%MZ", time.gmtime(t)))
    old = env.key(**when(time.time() - 60 * 86400))
    new = env.key(account="444455556666", **when(time.time() - 3600))
    env.upload(old, events[0:20])
    env.upload(new, events[20:50])
    # the default retention; the sample's records are later than the old file's stamp
    keep = ("--set", "bridge_ledger_retention=30d", "--set", "max_future_skew=0")
    p = env.run(*keep)
    assert p.returncode == 0, p.stderr
    assert_once_keyed(env, events[0:50])
    for k in (old, new):
        etag = env.s3.head_object(Bucket=env.bucket, Key=k)["ETag"].strip('"')
        env.sqs.send_message(QueueUrl=env.queue, MessageBody=json.dumps({"Records": [{
            "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": env.bucket}, "object": {"key": k, "eTag": etag}}}]}))
    p = env.run(*keep)
    assert p.returncode == 0, p.stderr
    assert "1 file(s) published before held; 1 marker(s) of files delivered before" in p.stderr
    assert "read and not held" in p.stderr
    assert f"{new}: published before (ledger), skipped" in p.stderr
    assert f"{old}: delivered before the ledger's markers held" in p.stderr
    got = by_event_id(read_topic(env.broker, env.topic))
    assert sorted({len(v) for e, v in got.items()}) == [1, 2]
    assert all(len(got[e["eventID"]]) == 1 for e in events[20:50])
    assert all(len(got[e["eventID"]]) == 2 for e in events[0:20])
    # a backfill consults the markers of its period (here: all)
    p = env.run("--backfill", f"s3://{env.bucket}/AWSLogs", *keep)
    assert p.returncode == 0, p.stderr
    assert "files=0 " in p.stderr and "skipped=2 " in p.stderr, p.stderr
    assert len(read_topic(env.broker, env.topic)) == 20 * 2 + 30


def test_bridge_sns_and_cloudtrail_formats(moto, admin, broker, tmp_path, events):
    env = Env(moto, admin, broker, tmp_path, notify=False)
    k1, k2, k3 = env.key(), env.key(account="444455556666"), env.key(account="777788889999")
    env.upload(k1, events[0:50])
    env.upload(k2, events[50:120])
    env.upload(k3, events[120:130])
    s3note = {"Records": [{"eventName": "ObjectCreated:Put", "s3": {
        "bucket": {"name": env.bucket},
        "object": {"key": k1.replace("/", "%2F"), "size": 1}}}]}
    sns = {"Type": "Notification", "MessageId": "m1", "TopicArn": "arn:aws:sns:us-east-1:1:t",
           "Message": json.dumps(s3note)}
    # CloudTrail's own SNS message: the bucket and a list of plain keys
    ct = {"Type": "Notification", "MessageId": "m2", "TopicArn": "arn:aws:sns:us-east-1:1:t",
          "Message": json.dumps({"s3Bucket": env.bucket, "s3ObjectKey": [k2, k3]})}
    env.sqs.send_message(QueueUrl=env.queue, MessageBody=json.dumps(sns))
    env.sqs.send_message(QueueUrl=env.queue, MessageBody=json.dumps(ct))
    env.sqs.send_message(QueueUrl=env.queue, MessageBody=json.dumps(
        {"Type": "Notification", "Message": "CloudTrail validation message."}))
    p = env.run()
    assert p.returncode == 0, p.stderr
    assert_once_keyed(env, events[0:130])
    assert env.queue_depth() == 0
    # the validation message is no work, not a dead letter
    assert read_topic(env.broker, env.dlq) == []


def test_bridge_other_services_objects_skipped(env, events):
    """The trail's bucket holds other services' logs too (VPC flow logs, AWS
    Config under AWSLogs/ACCOUNT/, which the deploy's prefix filter "AWSLogs/"
    lets through). The live bridge publishes the files the backfill would, the
    CloudTrail log files, and skips the others with a log line: it had
    downloaded each and dead-lettered every flow log line as malformed_json."""
    acct = "111122223333"
    flow = "version account-id interface-id srcaddr dstaddr srcport dstport protocol " \
        "packets bytes start end action log-status\n" + "".join(
            f"2 {acct} eni-1 10.0.0.{i} 10.0.1.1 443 5000 6 10 840 1 2 ACCEPT OK\n"
            for i in range(40))
    others = [f"AWSLogs/{acct}/vpcflowlogs/us-east-1/2026/11/01/"
              f"{acct}_vpcflowlogs_us-east-1_fl-0a1b_20261101T0000Z_3f2e1d.log.gz",
              f"AWSLogs/{acct}/Config/us-east-1/2026/11/1/ConfigSnapshot/"
              f"{acct}_Config_us-east-1_ConfigSnapshot_20261101T000000Z_ab12.json.gz",
              f"AWSLogs/{acct}/Config/ConfigWritabilityCheckFile"]
    env.s3.put_object(Bucket=env.bucket, Key=others[0], Body=gzip.compress(flow.encode()))
    env.s3.put_object(Bucket=env.bucket, Key=others[1], Body=gzip.compress(json.dumps(
        {"fileVersion": "1.0", "configurationItems": [{"resourceType": "AWS::S3::Bucket"}]})
        .encode()))
    env.s3.put_object(Bucket=env.bucket, Key=others[2], Body=b"")
    env.upload(env.key(account=acct), events[0:30])
    p = env.run()
    assert p.returncode == 0, p.stderr
    for k in others:
        assert f"{k}: not a CloudTrail log file" in p.stderr, (k, p.stderr)
    assert "files=1 " in p.stderr
    assert read_topic(env.broker, env.dlq) == []
    assert_once_keyed(env, events[0:30])
    assert env.queue_depth() == 0


def test_bridge_eventbridge_object_created(moto, admin, broker, tmp_path, events):
    """S3 -> EventBridge -> SQS (a bucket whose notifications another consumer
    owns, or an organisation that routes S3 through EventBridge): the SQS body is
    S3's EventBridge event (AWS S3 User Guide, "EventBridge event message
    structure"). "Object Created" is published, twice sent once published (its
    etag in the ledger); "Object Deleted" is no work. Both were dead-lettered as
    unknown_notification, the file never published."""
    env = Env(moto, admin, broker, tmp_path, notify=False)
    k = env.key()
    env.upload(k, events[0:40])
    etag = env.s3.head_object(Bucket=env.bucket, Key=k)["ETag"].strip('"')

    def eb(detail_type, obj):
        return json.dumps({
            "version": "0", "id": str(uuid.uuid4()), "detail-type": detail_type,
            "source": "aws.s3", "account": ACCOUNT, "time": "2026-11-01T00:05:00Z",
            "region": REGION, "resources": [f"arn:aws:s3:::{env.bucket}"],
            "detail": {"version": "0", "bucket": {"name": env.bucket}, "object": obj,
                       "request-id": "N4N7GDK58NMKJ12R", "requester": ACCOUNT,
                       "source-ip-address": "203.0.113.7", "reason": "PutObject"}})
    created = eb("Object Created", {"key": k, "size": 1, "etag": etag,
                                    "sequencer": "617f08299329d189"})
    env.sqs.send_message(QueueUrl=env.queue, MessageBody=created)
    env.sqs.send_message(QueueUrl=env.queue, MessageBody=eb(
        "Object Deleted", {"key": k, "sequencer": "617f08299329d18a"}))
    p = env.run()
    assert p.returncode == 0, p.stderr
    assert "files=1 " in p.stderr
    assert read_topic(env.broker, env.dlq) == []
    assert_once_keyed(env, events[0:40])
    assert env.queue_depth() == 0
    env.sqs.send_message(QueueUrl=env.queue, MessageBody=created)
    p = env.run()
    assert p.returncode == 0, p.stderr
    assert "published before (ledger), skipped" in p.stderr
    assert_once_keyed(env, events[0:40])


@pytest.mark.parametrize("hook", ["TH_BRIDGE_TEST_KILL_BEFORE_COMMIT",
                                  "TH_BRIDGE_TEST_KILL_BEFORE_DELETE"])
def test_bridge_kill9_redelivery(env, events, hook):
    env.upload(env.key(), events[0:2000])
    env.upload(env.key(account="555566667777"), events[2000:2500])
    # the bridge kills itself (SIGKILL) inside the first file's transaction, or
    # after its commit before the SQS delete
    p = env.run("--set", "bridge_visibility_s=3", env=env.env(**{hook: "1"}))
    assert p.returncode == -signal.SIGKILL, p.stderr
    if hook.endswith("COMMIT"):
        # the killed transaction's records were written, uncommitted
        assert len(read_topic(env.broker, env.topic, isolation="read_uncommitted")) > 0
        assert len(read_topic(env.broker, env.topic)) == 0
    # SQS redelivers once the visibility timeout (3 s) runs out (the run below
    # waited for it with an 8 s idle exit, most of it spent idle after the work)
    assert env.wait_visible() >= 2
    p = env.run("--set", "bridge_visibility_s=3")
    assert p.returncode == 0, p.stderr
    assert_once_keyed(env, events[0:2500])
    assert env.queue_depth() == 0


def test_bridge_visibility_kept_while_in_flight(env, events, tmp_path):
    """A file that takes longer than the visibility timeout (the bridge stalls
    8 s on its first event; timeout 2 s): meanwhile another reader of the queue
    gets nothing, and the file is published once."""
    env.upload(env.key(), events[0:200])
    logf = tmp_path / "bridge.log"
    with open(logf, "wb") as lf:
        mport = free_port()
        proc = subprocess.Popen(env.cmd("--exit-when-idle", "1000", "-v", "--set",
                                        "bridge_visibility_s=2", "--set",
                                        f"metrics_listen=127.0.0.1:{mport}"),
                                env=env.env(TH_BRIDGE_TEST_STALL_MS="8000"), stderr=lf,
                                stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while ": fetching" not in logf.read_text():
                assert proc.poll() is None and time.monotonic() < deadline, logf.read_text()
                time.sleep(0.1)
            time.sleep(4)  # twice the visibility timeout
            stolen = env.sqs.receive_message(QueueUrl=env.queue, WaitTimeSeconds=0,
                                             MaxNumberOfMessages=10).get("Messages", [])
            assert stolen == [], "the message became visible while its file was in flight"
            # the worker's endpoints: alive (and ready) in the middle of a long file
            import urllib.request
            for path in ("/healthz", "/readyz"):
                with urllib.request.urlopen(f"http://127.0.0.1:{mport}{path}", timeout=5) as r:
                    assert r.status == 200, path
            assert proc.wait(120) == 0, logf.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert "visibility extended" in logf.read_text()
    assert_once_keyed(env, events[0:200])
    assert env.queue_depth() == 0


def http_status(port, path):
    """The HTTP status of GET path on the bridge's metrics port."""
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:  # not listening yet
        return None


def wait_status(port, path, want, proc, seconds, logf):
    deadline = time.monotonic() + seconds
    while http_status(port, path) != want:
        assert proc.poll() is None, logf.read_text()
        assert time.monotonic() < deadline, f"{path} never answered {want}: {logf.read_text()}"
        time.sleep(0.5)


def test_bridge_expired_session_token_unhealthy(env, tmp_path):
    """Temporary credentials in the environment that AWS says have expired
    (AWS_SESSION_TOKEN past its session): the environment never gives newer
    ones, so the bridge says so in one clear log line and /healthz answers 503
    (it retried every 5 s for ever, /healthz 200, a warning per try); once AWS
    accepts the credentials again, /healthz is 200 again. moto 5.2 does not
    model expiry (no ExpiredToken anywhere in it): a stand-in SQS endpoint
    answers as SQS does, 403 ExpiredTokenException, then 200."""
    import http.server
    import threading
    state = {"expired": True, "tokens": set()}

    class H(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state["tokens"].add(self.headers.get("X-Amz-Security-Token"))
            if state["expired"]:
                code, body = 403, {"__type": "com.amazon.coral.service#ExpiredTokenException",
                                   "message": "The security token included in the request "
                                              "is expired"}
            else:
                code, body = 200, {"Messages": []}
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/x-amz-json-1.0")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    stand_in = f"http://127.0.0.1:{srv.server_port}"
    mport = free_port()
    logf = tmp_path / "bridge.log"
    try:
        with open(logf, "wb") as lf:
            proc = subprocess.Popen(
                env.cmd("--exit-when-idle", "600000", "--set", f"aws_endpoint={stand_in}",
                        "--set", f"bridge_queue_url={stand_in}/{ACCOUNT}/q",
                        "--set", f"metrics_listen=127.0.0.1:{mport}"),
                env=env.env(AWS_ACCESS_KEY_ID="ASIAEXPIREDEXAMPLE01",
                            AWS_SESSION_TOKEN="expired-session-token"),
                stderr=lf, stdout=subprocess.DEVNULL)
            try:
                wait_status(mport, "/healthz", 503, proc, 60, logf)
                text = logf.read_text()
                assert "the AWS credentials from environment (key ASIA…) have expired " \
                       "(ExpiredTokenException)" in text, text
                assert "renew them (AWS_SESSION_TOKEN…) and restart the bridge" in text
                assert text.count("have expired") == 1, text  # one line, not one per try
                assert "expired-session-token" not in text
                assert state["tokens"] == {"expired-session-token"}
                state["expired"] = False
                wait_status(mport, "/healthz", 200, proc, 60, logf)
                assert "the AWS credentials are accepted again" in logf.read_text()
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(60) == 0, logf.read_text()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    finally:
        srv.shutdown()


def run_scraped(env, *extra, idle):
    """env.run, with /metrics scraped every 0.2 s while the bridge runs:
    returns the process and the last scrape's samples {name{labels}: value}
    (the bridge idles for `idle` ms after its last work, so the last scrape
    holds the run's final counts)."""
    import threading
    import urllib.request
    mport = free_port()
    last = {}
    done = threading.Event()

    def scrape():
        while not done.is_set():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics",
                                            timeout=2) as r:
                    text = r.read().decode()
                last.clear()
                last.update(l.rsplit(" ", 1) for l in text.splitlines()
                            if l and not l.startswith("#"))
            except OSError:
                pass
            done.wait(0.2)

    t = threading.Thread(target=scrape, daemon=True)
    t.start()
    try:
        p = env.run("--set", f"metrics_listen=127.0.0.1:{mport}", *extra, idle=idle)
    finally:
        done.set()
        t.join()
    return p, {k: float(v) for k, v in last.items()}


def test_bridge_corrupt_gzip_dead_lettered(env, events):
    """A truncated .json.gz is retried until bridge_max_receives, then
    dead-lettered with its reason; the good file beside it is published. The
    bridge's /metrics counts both files' outcomes as they happened, and a
    rejected record once it is committed: the good file's one, once; not the
    bad file's, read (and dead-lettered, in the aborted transactions) on each
    of its three receives (a build that counted at send said 4)."""
    bad = env.key()
    # a record that is not an object: rejected (not_cloudtrail) where it stands,
    # near the start of both files. The bad file is cut 64 bytes before its
    # end, and large (~3,000 records), so its reading reaches the record (the
    # input reads MBs ahead of framing) before it fails.
    good = gzip.compress(json.dumps(
        {"Records": events[0:1] + [42] + events[1:100] * 30}).encode())
    env.s3.put_object(Bucket=env.bucket, Key=bad, Body=good[:-64])  # truncated
    env.s3.put_object(Bucket=env.bucket, Key=env.key(account="999900001111"),
                      Body=gzip.compress(json.dumps(
                          {"Records": events[100:101] + [42] + events[101:150]}).encode()))
    # idle: the bad file comes back every 1-2 s (its 1 s visibility timeout,
    # then a receive's 1 s long poll) until it is dead-lettered: 5 s is more
    # than twice that gap (10 s waited out 8 s more after the last receive)
    p, m = run_scraped(env, "--set", "bridge_visibility_s=1", "--set", "bridge_max_receives=3",
                       idle=5000)
    assert p.returncode == 0, p.stderr
    f = lambda outcome: m.get(f'trailhound_bridge_files_total{{outcome="{outcome}"}}')
    assert (f("published"), f("unreadable"), f("skipped")) == (1, 3, 0), m
    assert m.get("trailhound_bridge_dead_lettered_total") == 1, m
    assert m.get("trailhound_events_parsed_total") == 50, m
    rejects = {k: v for k, v in m.items() if k.startswith("trailhound_events_rejected_total") and v}
    assert rejects == {'trailhound_events_rejected_total{reason="not_cloudtrail"}': 1}, rejects
    # the SQS messages: as many as the run's own end line counts, at least the
    # good file's once and the bad file's three receives
    end = [l for l in p.stderr.splitlines() if "files=" in l][-1]
    msgs = int(end.split("messages=")[1].split()[0])
    assert m.get("trailhound_bridge_sqs_messages_total") == msgs >= 4, (m, end)
    # deploy/'s dashboard and alert rules query only bridge metrics this serves
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "test_deploy", os.path.join(os.path.dirname(__file__), "..", "test_deploy.py"))
    deploy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(deploy)
    names = {k.split("{")[0] for k in m}
    bridge_queries = [(w, q) for w, q in deploy.queried_metrics() if q.startswith("trailhound_bridge_")]
    assert len({q for _, q in bridge_queries}) == len(deploy.bridge_metrics())
    for where, q in bridge_queries:
        assert q in names, f"{where} queries {q}, which a live bridge does not serve"
    assert "left on the queue (receive 1 of 3)" in p.stderr
    assert "received 3 times: dead-lettered" in p.stderr
    dl = read_topic(env.broker, env.dlq)
    assert len(dl) == 2, [text_headers(r) for r in dl]
    h = text_headers(next(r for r in dl if text_headers(r)["reason"] == "file_unreadable"))
    assert h["source.key"] == bad, h
    assert "corrupt or truncated" in h["detail"]
    rejected = [text_headers(r) for r in dl if text_headers(r)["reason"] == "not_cloudtrail"]
    assert len(rejected) == 1 and rejected[0]["source.key"] != bad, rejected
    # nothing of the bad file, all of the good one
    assert_once_keyed(env, events[100:150])
    assert env.queue_depth() == 0


def test_bridge_s3_unreachable_waits_on_the_queue(env, events):
    """S3 that does not answer (an outage, the network) is not the file's
    fault: the file stays on the queue however often it is received, and is
    published once S3 answers again. Its twin above: a corrupt file is
    dead-lettered after bridge_max_receives. (SQS answers at the queue's own
    URL, so pointing aws_endpoint, which S3 uses, at a closed port cuts only S3.)"""
    key = env.key()
    env.upload(key, events[0:40])
    dead = f"http://127.0.0.1:{free_port()}"
    # idle exit: a build that dead-letters the file finds the queue empty and
    # ends, so the loop below ends too
    p = subprocess.Popen(env.cmd("--set", f"aws_endpoint={dead}", "--set", "bridge_visibility_s=1",
                                 "--set", "bridge_max_receives=2", "--exit-when-idle", "5000"),
                         env=env.env(), stderr=subprocess.PIPE, text=True)
    seen, deadline = [], time.monotonic() + 90
    try:
        for line in p.stderr:
            if key in line and "left on the queue" in line:
                seen.append(line)
                if len(seen) >= 4:  # twice bridge_max_receives
                    break
            assert time.monotonic() < deadline, seen
    finally:
        p.send_signal(signal.SIGTERM)
        rest = p.communicate(timeout=60)[1]
    assert len(seen) >= 4, rest
    assert "dead-lettered" not in rest and "receive " not in "".join(seen), seen
    assert read_topic(env.broker, env.dlq) == []
    assert env.queue_depth() == 1
    # S3 answers again: published once, nothing dead-lettered (once the last
    # receive's visibility timeout ran out; a 4 s idle exit waited for it)
    assert env.wait_visible() == 1
    p = env.run("--set", "bridge_visibility_s=1", "--set", "bridge_max_receives=2")
    assert p.returncode == 0, p.stderr
    assert_once_keyed(env, events[0:40])
    assert read_topic(env.broker, env.dlq) == []
    assert env.queue_depth() == 0


def test_bridge_bucket_in_another_region_exits_4(env, events):
    """A bucket in another region than aws_region: S3 answers 301
    PermanentRedirect (its region in x-amz-bucket-region, its endpoint in the
    body). Every file of it would fail alike, so it is a configuration error,
    exit 4, naming the bucket's region; the file stays on the queue, nothing
    dead-lettered (it counted as an unreadable file and was dead-lettered after
    bridge_max_receives). moto serves every region at once and never redirects:
    a stand-in S3 on aws_endpoint answers as S3 does (SQS answers at the queue's
    own URL, moto). The same for the backfill's listing, the region from the
    body's <Endpoint> alone."""
    import http.server
    import threading
    header = {"on": True}

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>PermanentRedirect"
                    f"</Code><Message>The bucket you are attempting to access must be addressed "
                    f"using the specified endpoint. Please send all future requests to this "
                    f"endpoint.</Message><Endpoint>{env.bucket}.s3.eu-west-1.amazonaws.com"
                    f"</Endpoint><Bucket>{env.bucket}</Bucket></Error>").encode()
            self.send_response(301)
            if header["on"]:
                self.send_header("x-amz-bucket-region", "eu-west-1")
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    s3 = f"aws_endpoint=http://127.0.0.1:{srv.server_port}"
    try:
        env.upload(env.key(), events[0:10])
        p = env.run("--set", s3, "--set", "bridge_max_receives=1", idle=3000)
        assert p.returncode == 4, p.stderr
        assert f"bucket {env.bucket} is in region eu-west-1, not aws_region {REGION} " \
               "(S3: HTTP 301 PermanentRedirect): set aws_region = eu-west-1" in p.stderr, p.stderr
        assert "dead-lettered" not in p.stderr
        assert read_topic(env.broker, env.dlq) == []
        assert env.queue_depth() == 1
        header["on"] = False
        p = env.run("--backfill", f"s3://{env.bucket}/AWSLogs", "--set", s3, idle=1000)
        assert p.returncode == 4, p.stderr
        assert f"bucket {env.bucket} is in region eu-west-1, not aws_region" in p.stderr, p.stderr
    finally:
        srv.shutdown()


def test_bridge_record_after_its_files_delivery_dead_lettered(env, events):
    """A log file holds only records written before its delivery (the time in
    its S3 name). A record dated days after it, yet before the wall clock, is
    not published: a backfill of old files must not hand the workers one
    record that moves their clock to this week. It is dead-lettered with its
    reason; the file's other records are published. Its twin: the same record
    in a file delivered after it is published."""
    now = time.time()
    stamp_of = lambda t: time.strftime("%Y%m%dT%H%MZ", time.gmtime(t))
    iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
    delivered = now - 10 * 86400
    good = events[0:20]
    assert max(e["eventTime"] for e in good) < iso(delivered)
    hostile = dict(events[20], eventID="hostile-record", eventTime=iso(now - 2 * 86400))
    key = env.key(account=owner(events[20]), stamp=stamp_of(delivered))
    env.upload(key, good + [hostile])
    p = env.run()
    assert p.returncode == 0, p.stderr
    assert_once_keyed(env, good)
    dl = read_topic(env.broker, env.dlq)
    assert len(dl) == 1, dl
    h = text_headers(dl[0])
    assert h["reason"] == "event_time_out_of_range" and h["source.key"] == key, h
    assert "delivery" in h["detail"], h
    assert json.loads(dl[0].value)["eventID"] == "hostile-record"
    # `trailhound produce` of the same file, under the same name, holds the same bound
    local = env.tmp / os.path.basename(key)
    local.write_bytes(gzip.compress(json.dumps({"Records": good + [hostile]}).encode()))
    p = subprocess.run([BIN, "produce", "-b", env.broker, "-t", env.ref, str(local)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 3, p.stderr  # a record rejected: exit 3, the others sent
    assert "20 delivered, 1 rejected" in p.stderr, p.stderr
    assert "rejected (event_time_out_of_range)" in p.stderr and "delivery" in p.stderr, p.stderr
    assert sorted(json.loads(m.value)["eventID"] for m in read_topic(env.broker, env.ref)) == \
        sorted(e["eventID"] for e in good)
    # the twin: delivered after it was written, the same record is published
    env.upload(env.key(account=owner(events[20]), stamp=stamp_of(now - 86400)), [hostile])
    p = env.run()
    assert p.returncode == 0, p.stderr
    assert_once_keyed(env, good + [hostile])
    assert len(read_topic(env.broker, env.dlq)) == 1


def test_bridge_wrong_secret_refused(env):
    p = env.run(env=env.env(AWS_SECRET_ACCESS_KEY="not-the-secret"), idle=1000)
    assert p.returncode == 4, p.stderr
    assert "SignatureDoesNotMatch" in p.stderr and "wrong secret key" in p.stderr
    assert "not-the-secret" not in p.stderr and env.moto.secret not in p.stderr


def test_bridge_profile_credentials(env, events, tmp_path):
    creds = tmp_path / "credentials"
    creds.write_text(f"[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n\n"
                     f"[bridge]\naws_access_key_id = {env.moto.akid}\n"
                     f"aws_secret_access_key = {env.moto.secret}\n")
    env.upload(env.key(), events[0:30])
    e = env.env(AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None,
                AWS_SHARED_CREDENTIALS_FILE=str(creds), AWS_PROFILE="bridge")
    p = env.run(env=e)
    assert p.returncode == 0, p.stderr
    assert "credentials from profile" in p.stderr
    assert_once_keyed(env, events[0:30])


def test_bridge_session_token_profile(env, events, tmp_path):
    """Temporary credentials (STS AssumeRole) sign with X-Amz-Security-Token."""
    iam = env.moto.client("iam")
    role = f"bridge-{uuid.uuid4().hex[:8]}"
    arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {
            "AWS": "arn:aws:iam::123456789012:user/bridge"}, "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
    iam.put_role_policy(RoleName=role, PolicyName="all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17",
         "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    tmp = env.moto.client("sts").assume_role(RoleArn=arn, RoleSessionName="bridge-test")["Credentials"]
    creds = tmp_path / "credentials"
    creds.write_text(f"[default]\naws_access_key_id = {tmp['AccessKeyId']}\n"
                     f"aws_secret_access_key = {tmp['SecretAccessKey']}\n"
                     f"aws_session_token = {tmp['SessionToken']}\n")
    env.upload(env.key(), events[0:30])
    e = env.env(AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None,
                AWS_SHARED_CREDENTIALS_FILE=str(creds))
    p = env.run(env=e)
    assert p.returncode == 0, p.stderr
    assert "credentials from profile" in p.stderr
    assert_once_keyed(env, events[0:30])


def test_bridge_web_identity_refreshed(moto_noauth, admin, broker, events, tmp_path):
    env = Env(moto_noauth, admin, broker, tmp_path)
    iam = env.moto.client("iam")
    role = f"bridge-{uuid.uuid4().hex[:8]}"
    arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {
            "Federated": "arn:aws:iam::123456789012:oidc-provider/example"},
            "Action": "sts:AssumeRoleWithWebIdentity"}]}))["Role"]["Arn"]
    iam.put_role_policy(RoleName=role, PolicyName="all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17",
         "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    tok = tmp_path / "token"
    tok.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6dGgifQ.sig\n")
    for i in range(3):
        env.upload(env.key(account=f"12121212{1000 + i}"), events[i * 20:(i + 1) * 20])
    # 60 s credentials are inside the five-minute refresh margin from the start:
    # every use fetches new ones, as a long-running bridge does near each expiry
    e = env.env(AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None, AWS_ROLE_ARN=arn,
                AWS_WEB_IDENTITY_TOKEN_FILE=str(tok), TH_AWS_ROLE_DURATION_SECONDS="60")
    p = env.run(env=e)
    assert p.returncode == 0, p.stderr
    assert "credentials from web-identity" in p.stderr
    assert "credentials refreshed from web-identity" in p.stderr
    assert "eyJ" not in p.stderr
    assert_once_keyed(env, events[0:60])


def test_bridge_credentials_refresh_failure_keeps_valid_ones(moto_noauth, admin, broker,
                                                            events, tmp_path):
    """A refresh ahead of expiry that fails (STS or the metadata service
    briefly unreachable; here the web identity token file is gone) while the
    current credentials are valid for minutes more: the bridge warns and goes
    on with them, as the SDKs do. It exited 4 ("AWS refused the request") on
    the first failed refresh, five minutes before the credentials expired."""
    env = Env(moto_noauth, admin, broker, tmp_path)
    iam = env.moto.client("iam")
    role = f"bridge-{uuid.uuid4().hex[:8]}"
    arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {
            "Federated": "arn:aws:iam::123456789012:oidc-provider/example"},
            "Action": "sts:AssumeRoleWithWebIdentity"}]}))["Role"]["Arn"]
    tok = tmp_path / "token"
    tok.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6dGgifQ.sig\n")
    # four minutes: inside the five-minute refresh margin, valid throughout the run
    e = env.env(AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None, AWS_ROLE_ARN=arn,
                AWS_WEB_IDENTITY_TOKEN_FILE=str(tok), TH_AWS_ROLE_DURATION_SECONDS="240")
    logf = tmp_path / "bridge.log"
    with open(logf, "wb") as lf:
        # idle from the bridge's start: long enough for the uploads below,
        # made as soon as it logged its first credentials
        proc = subprocess.Popen(env.cmd("--exit-when-idle", "4000"), env=e, stderr=lf,
                                stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while "credentials from web-identity" not in logf.read_text():
                assert proc.poll() is None and time.monotonic() < deadline, logf.read_text()
                time.sleep(0.1)
            tok.unlink()
            for i in range(2):
                env.upload(env.key(account=f"13131313{1000 + i}"), events[i * 20:(i + 1) * 20])
            rc = proc.wait(120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = logf.read_text()
    assert rc == 0, text
    assert "refreshing the credentials from web-identity failed" in text, text
    assert "eyJ" not in text
    assert_once_keyed(env, events[0:40])


def backfill_layout(env, events):
    """Three files of the last three days and one of 40 days ago, in an
    organisation trail's layout (AWSLogs/o-…/ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/),
    and a digest file; returns the recent keys (oldest first) and the old key."""
    recent = []
    for i, ago in enumerate([2, 1, 0]):
        t = time.gmtime(time.time() - ago * 86400)
        k = env.key(account=f"30303030{1000 + i}", org="o-abc123def4",
                    day=time.strftime("%Y/%m/%d", t), stamp=time.strftime("%Y%m%dT%H%MZ", t))
        env.upload(k, events[i * 100:(i + 1) * 100])
        recent.append(k)
    old = time.gmtime(time.time() - 40 * 86400)
    old_key = env.key(org="o-abc123def4", day=time.strftime("%Y/%m/%d", old),
                      stamp=time.strftime("%Y%m%dT%H%MZ", old))
    env.upload(old_key, events[300:310])
    now = time.gmtime()
    env.upload(env.key(digest=True, day=time.strftime("%Y/%m/%d", now),
                       stamp=time.strftime("%Y%m%dT%H%MZ", now)), events[310:320])
    return recent, old_key


def published_order(stderr):
    return [l.split("s3://")[1].split(":")[0] for l in stderr.splitlines()
            if " events, " in l and "s3://" in l]


def test_bridge_backfill_since(moto_noauth, admin, broker, tmp_path, events):
    """--since walks the folders down to the day folders of the period. moto 5.2
    rejects the signature of any query holding an encoded '/' (%2F, botocore's own
    requests too), and a walk's delimiter and prefixes hold one: this runs on the
    moto without signature checks (test_bridge_backfill_signed covers signing)."""
    env = Env(moto_noauth, admin, broker, tmp_path, notify=False)
    recent, _ = backfill_layout(env, events)
    # another service's logs beside the trail's: never walked into
    env.s3.put_object(Bucket=env.bucket, Body=b"x", Key="AWSLogs/o-abc123def4/303030301000/"
                      "vpcflowlogs/us-east-1/2026/11/01/x.log.gz")
    # pages of two keys: the listing goes on with continuation tokens
    p = subprocess.run(env.cmd("--backfill", f"s3://{env.bucket}/AWSLogs/", "--since", "30d",
                               "-v"),
                       env=env.env(TH_BRIDGE_TEST_LIST_PAGE="2"), capture_output=True, text=True,
                       timeout=180)
    assert p.returncode == 0, p.stderr
    assert "3 file(s) to publish" in p.stderr
    # the walk listed the day folders of the period, never the 40-day-old one
    today = time.strftime("%Y/%m/%d", time.gmtime())
    assert f"/CloudTrail/us-east-1/{today}/: " in p.stderr
    old_day = time.strftime("%Y/%m/%d", time.gmtime(time.time() - 40 * 86400))
    assert f"CloudTrail/us-east-1/{old_day}/" not in p.stderr
    assert "CloudTrail-Digest/us-east-1/" not in p.stderr
    assert "vpcflowlogs/us-east-1/" not in p.stderr
    assert_once_keyed(env, events[0:300])
    # delivery order
    assert published_order(p.stderr) == [f"{env.bucket}/{k}" for k in recent]


def test_bridge_backfill_since_narrowed(moto_noauth, admin, broker, tmp_path, events):
    """--since with a prefix at or below one account's CloudTrail/ folder (one
    account, one region, one year, or a partial name) and for a trail whose own
    S3 prefix is "CloudTrail": each finds the file of the period (the walk looked
    for CloudTrail/ only among the folders below the prefix, and took the trail
    prefix "CloudTrail/" for the log folder: none were found, exit 0)."""
    env = Env(moto_noauth, admin, broker, tmp_path, notify=False)
    t = time.gmtime(time.time() - 86400)
    day, stamp = time.strftime("%Y/%m/%d", t), time.strftime("%Y%m%dT%H%MZ", t)
    a = env.key(account="303030301000", day=day, stamp=stamp)
    b = "CloudTrail/" + env.key(account="303030302000", day=day, stamp=stamp)
    env.upload(a, events[0:10])
    env.upload(b, events[10:30])
    trail = "AWSLogs/303030301000/CloudTrail/"
    for prefix in [trail, trail + "us-east-1/", trail + "us-", trail + "us-east-1/" + day[:5], "CloudTrail/",
                   "CloudTrail/AWSLogs/303030302000/CloudTrail/"]:
        p = subprocess.run(env.cmd("--backfill", f"s3://{env.bucket}/{prefix}", "--since", "30d"),
                           env=env.env(), capture_output=True, text=True, timeout=180)
        assert p.returncode == 0, p.stderr
        assert f"{prefix}: 1 file(s) to publish" in p.stderr, (prefix, p.stderr)
    assert_once_keyed(env, events[0:30])


def test_bridge_backfill_signed(moto, admin, broker, tmp_path, events):
    """Without --since: one flat listing of the prefix (every page), signed and
    checked by moto; the prefix without its trailing '/' (see above)."""
    env = Env(moto, admin, broker, tmp_path)
    # a versioned bucket: AWS's notifications carry a version id (moto's do not:
    # one is sent by hand below), a listing does not; the markers must still
    # name each file alike
    env.s3.put_bucket_versioning(Bucket=env.bucket,
                                 VersioningConfiguration={"Status": "Enabled"})
    recent, old_key = backfill_layout(env, events)
    p = subprocess.run(env.cmd("--backfill", f"s3://{env.bucket}/AWSLogs", "-v"),
                       env=env.env(TH_BRIDGE_TEST_LIST_PAGE="2"), capture_output=True, text=True,
                       timeout=180)
    assert p.returncode == 0, p.stderr
    assert "4 file(s) to publish" in p.stderr
    assert p.stderr.count("ListObjectsV2 page") >= 3
    assert published_order(p.stderr) == [f"{env.bucket}/{k}" for k in [old_key] + recent]
    assert_once_keyed(env, events[0:310])
    # run again: everything is in the ledger
    p = subprocess.run(env.cmd("--backfill", f"s3://{env.bucket}/AWSLogs"), env=env.env(),
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr
    assert "skipped=4" in p.stderr
    assert_once_keyed(env, events[0:310])
    # the live bridge then gets the uploads' notifications: the markers are
    # shared (the listing's quoted ETag = the notification's bare one), all skipped
    head = env.s3.head_object(Bucket=env.bucket, Key=recent[0])
    assert head.get("VersionId")
    env.sqs.send_message(QueueUrl=env.queue, MessageBody=json.dumps({"Records": [{
        "eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": env.bucket}, "object": {
            "key": recent[0], "eTag": head["ETag"].strip('"'),
            "versionId": head["VersionId"]}}}]}))
    p = env.run()
    assert p.returncode == 0, p.stderr
    assert p.stderr.count("published before (ledger), skipped") == 5
    assert_once_keyed(env, events[0:310])
    assert env.queue_depth() == 0


PEAK_RSS = r"""
import resource, subprocess, sys
p = subprocess.Popen(sys.argv[1:], stderr=subprocess.PIPE, text=True)
for line in p.stderr:
    sys.stderr.write(line)
    if "file(s) to publish" in line:
        p.terminate()  # the listing is complete: its memory is what is measured
p.wait()
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def test_bridge_backfill_listing_memory(moto_noauth, admin, broker, tmp_path):
    """A backfill holds its whole listing (every file of the period, to publish
    them in delivery order): an organisation trail's 30 days are hundreds of
    thousands of files. Each listed file took 2.6 KB (fixed 1100-byte key and
    version buffers), so ~1.2 M files overran the bridge's 3 GiB limit
    (deploy/kubernetes/bridge.yaml). Measured as the peak RSS of a listing of
    12,000 files against a listing of one, stopped once the listing is done:
    the difference stays under 1 KB a file."""
    import http.client
    import urllib.parse
    from concurrent.futures import ThreadPoolExecutor
    env = Env(moto_noauth, admin, broker, tmp_path, notify=False)
    base = "AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/01/"
    n = 12000

    # The 12,000 empty objects as plain unsigned PUTs on four kept-alive
    # connections: this moto checks no signature, and takes a request without
    # an Authorization header as S3's. boto3's put_object (signing, a client
    # per call's worth of Python on the same two cores as moto) made this
    # loop most of the test's time.
    host, port = urllib.parse.urlsplit(env.moto.endpoint).netloc.split(":")

    def put_all(idx):
        c = http.client.HTTPConnection(host, int(port), timeout=60)
        try:
            for i in idx:
                key = base + (f"123456789012_CloudTrail_us-east-1_20261101T{i // 60 % 24:02d}"
                              f"{i % 60:02d}Z_{i:016x}.json.gz")
                c.request("PUT", f"/{env.bucket}/{key}", body=b"")
                r = c.getresponse()
                r.read()
                assert r.status == 200, (r.status, key)
        finally:
            c.close()
    with ThreadPoolExecutor(4) as ex:
        list(ex.map(put_all, [range(k, n, 4) for k in range(4)]))
    env.s3.put_object(Bucket=env.bucket, Body=b"", Key="AWSLogs/999999999999/CloudTrail/"
                      "us-east-1/2026/11/01/999999999999_CloudTrail_us-east-1_20261101T0000Z_"
                      "0000000000000000.json.gz")

    # Under AddressSanitizer (the test command's sanitizer pass) freed memory
    # sits in a quarantine of 256 MB by default, which the listing's XML pages
    # fill (the sanitizer pass measured 15 MB more for 12,000 files): keep it
    # to 1 MB there, as tests/test_scan.py does for its RSS bounds.
    asan = ":".join(x for x in (os.environ.get("ASAN_OPTIONS", ""), "quarantine_size_mb=1",
                                "thread_local_quarantine_size_kb=64") if x)

    def peak_kb(prefix):
        p = subprocess.run([sys.executable, "-c", PEAK_RSS] +
                           env.cmd("--backfill", f"s3://{env.bucket}/{prefix}"),
                           env=env.env(ASAN_OPTIONS=asan), capture_output=True, text=True,
                           timeout=300)
        assert "file(s) to publish" in p.stderr, p.stderr
        return int(p.stdout.split()[-1]), p.stderr
    one, _ = peak_kb("AWSLogs/9")
    many, err = peak_kb("AWSLogs/1")
    assert f"{n} file(s) to publish" in err, err
    log(f"peak RSS: {one} KiB listing 1 file, {many} KiB listing {n}")
    assert (many - one) * 1024 < n * 1024, (one, many)


def test_bridge_end_to_end_alerts_equal_scan(env, sample, events, topics, workers):
    """bridge -> `trailhound run` -> alerts, against `scan` over the same events."""
    chunk = 5000
    for i in range(0, len(events), chunk):
        env.upload(env.key(account=f"4040{i:08d}"), events[i:i + chunk])
    p = env.run(timeout=600)
    assert p.returncode == 0, p.stderr
    assert len(read_topic(env.broker, env.topic)) == len(events)
    names = topics.create(topics.names.pipeline("bridge"), input_topic=False)
    pipe = topics.names.pipeline("bridge")
    run_to_end(workers, env.topic, pipe, f"{pipe.tid_prefix}.w0", names.state_dir("w0"))
    got = collections.Counter(a["alert_id"] for _, a in read_alerts(env.broker, pipe.output))
    assert all(n == 1 for n in got.values()), "an alert was produced twice"
    assert set(got) == set(sample.scan), \
        f"missing {len(set(sample.scan) - set(got))}, extra {len(set(got) - set(sample.scan))}"


def test_bridge_pod_identity_endpoint(env, events, tmp_path):
    """EKS Pod Identity / ECS: credentials from AWS_CONTAINER_CREDENTIALS_FULL_URI
    with the token file's content as Authorization; they expire within the
    refresh margin, so they are fetched again (a local endpoint counts the calls
    and refuses a wrong token)."""
    import http.server
    import threading
    tok = tmp_path / "pod-token"
    tok.write_text("pod-token-abc\n")
    calls = []
    akid, secret = env.moto.akid, env.moto.secret

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            calls.append(self.headers.get("Authorization"))
            if self.headers.get("Authorization") != "pod-token-abc":
                self.send_response(401)
                self.end_headers()
                return
            exp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 120))
            body = json.dumps({"AccessKeyId": akid, "SecretAccessKey": secret, "Token": "",
                               "Expiration": exp}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), H)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        env.upload(env.key(), events[0:40])
        e = env.env(AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None,
                    AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
                    AWS_CONTAINER_CREDENTIALS_FULL_URI=f"http://127.0.0.1:{srv.server_port}/v1/creds",
                    AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=str(tok))
        p = env.run(env=e)
        assert p.returncode == 0, p.stderr
        assert "credentials from container" in p.stderr
        assert len(calls) >= 2 and set(calls) == {"pod-token-abc"}, calls
        assert "pod-token-abc" not in p.stderr and secret not in p.stderr
        assert_once_keyed(env, events[0:40])
        # a wrong token: refused by the endpoint, a clear error, exit 4
        tok.write_text("wrong\n")
        p = env.run(env=e, idle=1000)
        assert p.returncode == 4, p.stderr
        assert "container credentials endpoint: HTTP 401" in p.stderr
    finally:
        srv.shutdown()


def test_bridge_imds_v2(env, events, tmp_path):
    """EC2 IMDSv2 (a local stand-in through AWS_EC2_METADATA_SERVICE_ENDPOINT): a
    session token by PUT first, then the role and its credentials with it."""
    import http.server
    import threading
    seen = []
    akid, secret = env.moto.akid, env.moto.secret

    class H(http.server.BaseHTTPRequestHandler):
        def reply(self, code, body=b""):
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_PUT(self):
            seen.append(("PUT", self.path, self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")))
            self.reply(200, b"imds-session-token") if self.path == "/latest/api/token" \
                else self.reply(404)

        def do_GET(self):
            seen.append(("GET", self.path, self.headers.get("X-aws-ec2-metadata-token")))
            if self.headers.get("X-aws-ec2-metadata-token") != "imds-session-token":
                return self.reply(401)  # IMDSv2 only: no v1 fallback
            base = "/latest/meta-data/iam/security-credentials/"
            if self.path == base:
                return self.reply(200, b"bridge-role\n")
            if self.path == base + "bridge-role":
                exp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 6 * 3600))
                return self.reply(200, json.dumps({
                    "Code": "Success", "AccessKeyId": akid, "SecretAccessKey": secret,
                    "Token": "", "Expiration": exp}).encode())
            self.reply(404)

        def log_message(self, *a):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        env.upload(env.key(), events[0:25])
        e = env.env(AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None,
                    AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
                    AWS_EC2_METADATA_DISABLED=None,
                    AWS_EC2_METADATA_SERVICE_ENDPOINT=f"http://127.0.0.1:{srv.server_port}")
        p = env.run(env=e)
        assert p.returncode == 0, p.stderr
        assert "credentials from imds" in p.stderr
        assert seen[0] == ("PUT", "/latest/api/token", "21600"), seen
        assert all(t == "imds-session-token" for m, _, t in seen[1:]), seen
        # six hours valid: fetched once, not per request
        assert sum(1 for m, path, _ in seen if path.endswith("bridge-role")) == 1, seen
        assert_once_keyed(env, events[0:25])
    finally:
        srv.shutdown()

"""The worker's operational surface against a live broker (issue 9, items 1 and 2):

* /metrics scraped from a live worker: the counters agree with its input (events
  consumed and parsed, records rejected by reason) and with what a downstream
  reader sees (alerts by variation and severity, dead letters); the exposition
  passes `promtool check metrics` (Debian's prometheus package);
* /healthz answers 200 while the loop runs; /readyz 503 before the group has
  given the worker an assignment, 200 once assigned and restored, and again
  after a restore from the changelog; 200 on a standby whose assignment is empty;
* no secret reaches any output: a SASL password (config file and environment),
  a TLS key password, and the credentials inside AssumeRole responses, with
  debug logging, in text and JSON log formats, in the dead letters' headers.
"""
import collections
import json
import os
import shutil
import stat
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

from conftest import (BIN, PARTITIONS, asn_built_s, assert_caught_up, free_port, log,
                      produce_file, ranges_created_s, read_alerts, read_topic, wait_for_topics)

PROMTOOL = shutil.which("promtool")


# loopback: never through an http_proxy of the environment
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url, timeout=5):
    """(status, body) of a GET; HTTP errors are answers too; (0, why) when
    nothing listens (yet)."""
    try:
        with _opener.open(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, ConnectionError) as e:
        return 0, str(e)


def wait_until(what, fn, timeout=120, every=0.3):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


def parse_metrics(text):
    """{(name, frozenset(labels)): value} of a text exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, value = line.rsplit(" ", 1)
        if "{" in head:
            name, rest = head.split("{", 1)
            labels = []
            for part in rest.rstrip("}").split('",'):
                if part:
                    k, v = part.split("=", 1)
                    labels.append((k, v.strip('"')))
            key = (name, frozenset(labels))
        else:
            key = (head, frozenset())
        out[key] = float(value)
    return out


def metric(m, name, **labels):
    return m.get((name, frozenset(labels.items())), 0.0)


def series(m, name):
    return {dict(k[1]).__repr__(): v for k, v in m.items() if k[0] == name}


def test_metrics_scrape_live_worker(broker, admin, topics, workers, sample, tmp_path):
    names = topics.create(pipe := topics.names.pipeline("m"), input_topic=False)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    w = workers(names.input, pipe, f"{pipe.tid_prefix}-a", names.state_dir("a"),
                "--set", f"metrics_listen=127.0.0.1:{port}",
                # the input topic appears after the start: notice it soon
                "--set", "kafka.consumer.topic.metadata.refresh.interval.ms=1000",
                instance_id=False)

    # alive, not ready: the input topic does not exist yet, so nothing can
    # be assigned however long we look
    wait_until("/healthz", lambda: w.poll() is None and get(base + "/healthz")[0] == 200)
    for _ in range(5):
        status, body = get(base + "/readyz")
        assert status == 503 and "no assignment from the group yet" in body, (status, body)
        time.sleep(0.2)
    m0 = parse_metrics(get(base + "/metrics")[1])
    assert m0[("trailhound_ready", frozenset())] == 0
    # every (variation, severity) the build alerts with is a series before the
    # first alert, at 0: the first alert of a pair is then an increase(), and
    # "no alert in 7 days" (TrailhoundAlertsStopped) has a series to see at 0
    pairs = {(str(v["id"]), v["severity"]) for v in json.loads(subprocess.run(
        [BIN, "variations", "--json"], capture_output=True, text=True, check=True).stdout)}
    zero = {(dict(k[1])["variation"], dict(k[1])["severity"]): v for k, v in m0.items()
            if k[0] == "trailhound_alerts_total"}
    assert zero == {p: 0 for p in pairs}, zero

    # the input: the sample, plus two records the worker must reject
    for t, f in admin.create_topics([NewTopic(names.input, PARTITIONS, 1)]).items():
        f.result()
    wait_for_topics(admin, [names.input])
    produce_file(broker, names.input, sample.path)
    p = Producer({"bootstrap.servers": broker})
    p.produce(names.input, key=b"111111111111", value=b'{"eventVersion": "1.08", "eventTime": ')
    p.produce(names.input, key=b"111111111111", value=b"\xff\xfe not utf-8")
    assert p.flush(30) == 0
    n_input = sample.n_events + 2

    wait_until("/readyz 200", lambda: get(base + "/readyz")[0] == 200)

    def settled():
        m = parse_metrics(get(base + "/metrics")[1])
        return m if metric(m, "trailhound_events_consumed_total") >= n_input else None
    wait_until("every input message consumed", settled, timeout=240)
    wait_until("offsets committed", lambda: _caught_up(broker, pipe.group, names.input))

    # lag: librdkafka's statistics every 5 s; once they report every partition, all 0
    def lag_zero():
        m = parse_metrics(get(base + "/metrics")[1])
        lags = {k: v for k, v in m.items() if k[0] == "trailhound_consumer_lag"}
        return m if len(lags) == PARTITIONS and all(v == 0 for v in lags.values()) else None
    m = wait_until("consumer lag 0 on every partition", lag_zero, timeout=60)
    text = get(base + "/metrics")[1]
    m = parse_metrics(text)

    if PROMTOOL:
        r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                           text=True)
        assert r.returncode == 0, f"promtool check metrics:\n{r.stdout}{r.stderr}"
    else:
        log("SKIPPED promtool check: promtool not installed (Debian package prometheus)")

    assert metric(m, "trailhound_events_consumed_total") == n_input
    assert metric(m, "trailhound_events_parsed_total") == sample.n_events
    rejected = {dict(k[1])["reason"]: v for k, v in m.items()
                if k[0] == "trailhound_events_rejected_total" and v}
    assert rejected == {"malformed_json": 1, "invalid_utf8": 1}, rejected
    dead = read_topic(broker, pipe.dead_letter)
    assert sorted(d.headers["reason"].decode() for d in dead) == ["invalid_utf8", "malformed_json"]

    # alerts by (variation, severity): what the worker counted is what was committed
    alerts = read_alerts(broker, pipe.output)
    want = collections.Counter((str(a["variation"]), a["severity"]) for _, a in alerts)
    got = {(dict(k[1])["variation"], dict(k[1])["severity"]): v for k, v in m.items()
           if k[0] == "trailhound_alerts_total" and v}
    assert got == want, f"metrics {got} != committed alerts {dict(want)}"
    assert sum(want.values()) > 0

    assert metric(m, "trailhound_transactions_committed_total") >= 1
    assert metric(m, "trailhound_transactions_aborted_total") == 0
    assert metric(m, "trailhound_transaction_commit_seconds_count") >= \
        metric(m, "trailhound_transactions_committed_total")
    assert metric(m, "trailhound_partitions_assigned") == PARTITIONS
    # the reference data's dates, as other readers of the same files see them:
    # ip-ranges.json's createDate (UTC), the build epoch mmdblookup prints
    assert metric(m, "trailhound_reference_created_timestamp_seconds", file="aws_ranges") == \
        ranges_created_s()
    assert metric(m, "trailhound_reference_created_timestamp_seconds", file="asn_db") == \
        asn_built_s()
    assert metric(m, "trailhound_reference_reloads_total", outcome="loaded") == 0
    assert metric(m, "trailhound_partitions_restoring") == 0
    assert metric(m, "trailhound_ready") == 1
    assert metric(m, "trailhound_restore_records_total") == 0
    assert len([k for k in m if k[0] == "trailhound_state_bytes"]) == PARTITIONS
    assert sum(v for k, v in m.items() if k[0] == "trailhound_state_bytes") > 0
    assert metric(m, "trailhound_detections_suppressed_total", reason="activation") > 0
    build = [k for k in m if k[0] == "trailhound_build_info"]
    assert len(build) == 1 and dict(build[0][1])["version"]
    # every name of the contract is exposed (deploy/'s dashboard queries them)
    text_names = {l.split()[2] for l in text.splitlines() if l.startswith("# TYPE")}
    for name in ("trailhound_build_info", "trailhound_events_consumed_total",
                 "trailhound_events_parsed_total", "trailhound_events_rejected_total",
                 "trailhound_alerts_total", "trailhound_detections_suppressed_total",
                 "trailhound_detections_deduplicated_total", "trailhound_held_uses_pending",
                 "trailhound_held_uses_expired_total", "trailhound_transactions_committed_total",
                 "trailhound_transactions_aborted_total", "trailhound_transaction_commit_seconds",
                 "trailhound_restore_records_total", "trailhound_partitions_restoring",
                 "trailhound_partitions_assigned", "trailhound_state_bytes",
                 "trailhound_consumer_lag", "trailhound_ready",
                 "trailhound_reference_reloads_total",
                 "trailhound_reference_created_timestamp_seconds"):
        assert name in text_names, name
    # deploy/'s Grafana dashboard and alert rules query only what a live
    # worker serves (tests/test_deploy.py reads their queries)
    import importlib.util
    import re
    spec = importlib.util.spec_from_file_location(
        "test_deploy", os.path.join(os.path.dirname(__file__), "..", "test_deploy.py"))
    deploy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(deploy)
    queried = deploy.queried_metrics()
    assert len(queried) >= 15
    for where, name in queried:
        if name in deploy.bridge_metrics():
            continue  # the bridge's: checked against a live bridge in kafka.bridge
        stem = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in text_names or stem in text_names, \
            f"{where} queries {name}, which a live worker does not serve"

    w.term()
    assert w.wait(60) == 0, w.tail()
    assert w.lines("caught up: every assigned partition"), w.tail()
    assert [l for l in w.lines("[stats]") if " lag=0 " in l], w.tail()

    # A second worker with an empty state dir restores every partition from the
    # changelog: ready only after that, and the restore is counted.
    w2 = workers(names.input, pipe, f"{pipe.tid_prefix}-b", names.state_dir("b"),
                 "--set", f"metrics_listen=127.0.0.1:{port}", instance_id=False)
    wait_until("/readyz 200 after the restore", lambda: w2.poll() is None and
               get(base + "/readyz")[0] == 200)
    m2 = parse_metrics(get(base + "/metrics")[1])
    restored = sum(int(l.split(" state records restored")[0].rsplit(" ", 1)[1])
                   for l in w2.lines("state records restored from"))
    assert restored > 0
    assert metric(m2, "trailhound_restore_records_total") == restored
    assert metric(m2, "trailhound_partitions_restoring") == 0
    assert metric(m2, "trailhound_partitions_assigned") == PARTITIONS
    assert metric(m2, "trailhound_events_consumed_total") == 0
    w2.term()
    assert w2.wait(60) == 0, w2.tail()


def test_standby_replica_is_ready(broker, admin, topics, workers, sample):
    """More workers than partitions (KEDA scaling up, or a replica kept warm): the
    group gives the extra worker an empty assignment. It is a standby doing its
    job, so /readyz answers 200; were it 503, a StatefulSet's rolling update,
    which waits for each updated pod to be ready, would halt at it, and the
    not-ready alert would page. Its twin in test_metrics_scrape_live_worker:
    a worker before any assignment (no input topic yet) answers 503."""
    # one partition for two workers (the changelog is co-partitioned with it)
    names = topics.create(pipe := topics.names.pipeline("sb"), partitions=1)
    ports = [free_port(), free_port()]
    ws = []
    for i, port in enumerate(ports):
        ws.append(workers(names.input, pipe, f"{pipe.tid_prefix}-{i}", names.state_dir(str(i)),
                          "--set", f"metrics_listen=127.0.0.1:{port}", instance_id=False,
                          name=f"sb{i}"))
        if i == 0:  # the first owns the partition before the second joins
            wait_until("worker 0 ready", lambda: get(f"http://127.0.0.1:{port}/readyz")[0] == 200)

    def roles():
        """{partitions assigned: port} once both are ready and hold assignments."""
        out = {}
        for port in ports:
            if get(f"http://127.0.0.1:{port}/readyz")[0] != 200:
                return None
            m = parse_metrics(get(f"http://127.0.0.1:{port}/metrics")[1])
            if metric(m, "trailhound_assignment_held") != 1:
                return None
            out[metric(m, "trailhound_partitions_assigned")] = port
        return out if sorted(out) == [0.0, 1.0] else None
    got = wait_until("one owner and one standby, both ready", roles)
    assert all(w.poll() is None for w in ws), [w.tail() for w in ws]
    standby = ws[ports.index(got[0.0])]
    assert standby.lines("assigned 0 partition(s)"), standby.tail()
    status, body = get(f"http://127.0.0.1:{got[0.0]}/readyz")
    assert (status, body) == (200, "ready\n")
    # the owner does the work: every event consumed there, none on the standby
    produce_file(broker, names.input, sample.path)

    def consumed(port):
        m = parse_metrics(get(f"http://127.0.0.1:{port}/metrics")[1])
        return metric(m, "trailhound_events_consumed_total")
    wait_until("the owner consumed the sample", lambda: consumed(got[1.0]) >= sample.n_events)
    assert consumed(got[1.0]) == sample.n_events
    assert consumed(got[0.0]) == 0
    for w in ws:
        w.term()
    for w in ws:
        assert w.wait(60) == 0, w.tail()


def _caught_up(broker, group, topic):
    try:
        assert_caught_up(broker, group, topic)
        return True
    except AssertionError:
        return False


SASL_PASSWORD = "sasl-Pa55word-do-not-log-7d1c"
ENV_PASSWORD = "env-Pa55word-do-not-log-93ab"
KEY_PASSWORD = "tls-KeyPa55-do-not-log-55e0"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzz-not-log-1"
AWS_TOKEN = "IQoJb3JpZ2luX2VjENOTLOGGEDtoken0123456789abcdefXYZ"
SECRETS = (SASL_PASSWORD, ENV_PASSWORD, KEY_PASSWORD, AWS_SECRET, AWS_TOKEN)


def assume_role_event(event_time, *, account="240061035674", broken=False):
    ev = {"eventVersion": "1.08",
          "userIdentity": {"type": "AWSService", "invokedBy": "lambda.amazonaws.com"},
          "eventTime": event_time, "eventSource": "sts.amazonaws.com",
          "eventName": "AssumeRole", "awsRegion": "us-west-2",
          "sourceIPAddress": "lambda.amazonaws.com", "userAgent": "lambda.amazonaws.com",
          "requestParameters": {"roleArn": f"arn:aws:iam::{account}:role/fn-role",
                                "roleSessionName": "fn"},
          "responseElements": {"credentials": {"accessKeyId": "ASIA4UBN6SG7KE757TR7",
                                               "secretAccessKey": AWS_SECRET,
                                               "sessionToken": AWS_TOKEN,
                                               "expiration": "Sep 1, 2026, 12:26:49 PM"}},
          "eventID": "ec2d78e1-460f-4629-9584-16fa07fb2999", "eventType": "AwsApiCall",
          "recipientAccountId": account}
    text = json.dumps(ev)
    if broken:
        # cut right after the secrets: malformed JSON whose bytes hold them
        text = text[:text.index(AWS_TOKEN) + len(AWS_TOKEN) + 2]
    return text.encode()


def test_no_secret_in_any_output(broker, admin, topics, workers, tmp_path):
    names = topics.create(pipe := topics.names.pipeline("s"))
    # A config file holding a password: refused while others can read it.
    conf = tmp_path / "secret.conf"
    conf.write_text(f'kafka.sasl.password = "{SASL_PASSWORD}"\n'
                    f'kafka.ssl.key.password = "{KEY_PASSWORD}"\n'
                    'kafka.sasl.username = "trailhound"\n')
    os.chmod(conf, 0o644)
    r = subprocess.run([BIN, "run", "-c", str(conf), "--check-config"], capture_output=True,
                       text=True)
    assert r.returncode == 4 and "chmod 600" in r.stderr, r.stderr
    outputs = [r.stdout, r.stderr]
    os.chmod(conf, stat.S_IRUSR | stat.S_IWUSR)

    # The input: AssumeRole responses with credentials, valid and broken ones
    # (the broken ones are dead-lettered: their detail must not quote them).
    p = Producer({"bootstrap.servers": broker})
    for i in range(3):
        p.produce(names.input, key=b"240061035674",
                  value=assume_role_event(f"2026-09-01T00:2{i}:49Z"))
    p.produce(names.input, key=b"240061035674",
              value=assume_role_event("2026-09-01T00:29:49Z", broken=True))
    p.produce(names.input, key=b"240061035674",
              value=assume_role_event("yesterday-ish"))  # bad eventTime
    p.produce(names.input, key=b"240061035674",
              value=assume_role_event("2026-09-01T00:29:59Z", account="24006103567X"))
    assert p.flush(30) == 0

    env = dict(os.environ, TRAILHOUND_KAFKA__SASL__PASSWORD=ENV_PASSWORD)
    for fmt in ("text", "json"):
        sub = f"{fmt}"
        w = workers(names.input, pipe, f"{pipe.tid_prefix}-{sub}", names.state_dir(sub),
                    "-c", str(conf), "-v", "--set", f"log_format={fmt}",
                    # librdkafka's own debug output, its configuration dump included
                    "--set", "kafka.debug=conf,security,broker",
                    "--set", f"group_id={pipe.group}-{sub}",
                    "--exit-when-idle", "2000", "--drain", env=env)
        assert w.wait(120) == 0, w.tail()
        text = w.text()
        assert "rejected (malformed_json)" in text  # debug lines about the records were written
        if fmt == "json":
            for line in text.splitlines():
                if line.startswith("{"):
                    rec = json.loads(line)
                    assert set(rec) == {"ts", "level", "msg", "fields"}, rec
        outputs.append(text)

    # --check-config prints the effective configuration: secrets masked
    r = subprocess.run([BIN, "run", "-c", str(conf), "--set", f"brokers={broker}",
                        "--set", f"input_topics={names.input}", "--check-config", "-v"],
                       capture_output=True, text=True, env=env)
    assert 'kafka.sasl.password = "***"' in r.stdout, r.stdout
    assert 'kafka.ssl.key.password = "***"' in r.stdout, r.stdout
    outputs += [r.stdout, r.stderr]
    # a config error must not quote the line that holds the secret
    bad = tmp_path / "typo.conf"
    bad.write_text(f"kafka.sasl.password: {SASL_PASSWORD}\n")
    os.chmod(bad, 0o600)
    r = subprocess.run([BIN, "run", "-c", str(bad), "--check-config"], capture_output=True,
                       text=True)
    assert r.returncode == 4 and "typo.conf:1:" in r.stderr, r.stderr
    outputs += [r.stdout, r.stderr]

    dead = read_topic(broker, pipe.dead_letter)
    assert len(dead) >= 3
    for d in dead:
        for k, v in d.headers.items():
            outputs.append(f"{k}: {v.decode(errors='replace')}")

    leaks = [(s, o[max(0, o.find(s) - 80):o.find(s) + 40]) for o in outputs for s in SECRETS
             if s in o]
    assert not leaks, f"secrets in the output: {leaks}"

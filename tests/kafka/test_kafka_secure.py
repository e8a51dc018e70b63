"""A secured broker, for real: `trailhound produce` and a `trailhound run` worker
against a KRaft broker whose only client listener is SASL_SSL with SCRAM-SHA-512,
with StandardAuthorizer denying whatever no ACL allows (scripts/kafka-secure.sh:
certificates made with openssl at start, SCRAM users added when the storage is
formatted). The clients reach it through the `kafka.*` pass-through settings only
(kafka.security.protocol, kafka.sasl.*, kafka.ssl.ca.location), from a config
file readable by its owner only.

- the worker's principal holds exactly the ACLs docs/operations.md lists, the
  bridge's principal only write on the input: the alerts are exactly the
  generator's expected ones and the group has committed the end of the input;
- a wrong password and a CA that did not sign the broker's certificate stop the
  worker and `produce` with the reason (exit 4), never a hang;
- a worker whose principal lacks the group ACL does not process anything.

The broker is this module's own (port TH_KAFKA_SECURE_PORT, default 19096;
directory TH_KAFKA_SECURE_DIR): started here if it is not running, stopped
again at the end if this module started it.
"""
import json
import os
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType, AdminClient,
                                   NewTopic, ResourcePatternType, ResourceType)

from conftest import (ASN, BIN, PARTITIONS, RANGES, SCHEMA_ID, SRC, assert_exactly_once,
                      decode_alert, log)

SECURE = os.path.join(SRC, "scripts/kafka-secure.sh")
# A worker or produce that cannot reach the broker must give up on its own; this
# only bounds the test if it does not (the product's own bound is ~60 s).
HANG = 150


@pytest.fixture(scope="module")
def secure():
    """info.json of the secured broker: bootstrap, CA files, users and passwords."""
    started = False
    if subprocess.run([SECURE, "status"], capture_output=True).returncode != 0:
        t = time.monotonic()
        subprocess.run([SECURE, "start"], check=True)
        started = True
        log(f"secured broker started in {time.monotonic() - t:.1f} s")
    path = subprocess.run([SECURE, "info"], capture_output=True, text=True,
                          check=True).stdout.strip()
    info = json.load(open(path))
    assert info["authorizer"] == 1, "the ACL tests need TH_KAFKA_SECURE_AUTHORIZER=1"
    yield info
    if started:
        subprocess.run([SECURE, "stop"])


def client_conf(info, user, password=None, ca=None):
    """librdkafka properties of a client logging in as `user`."""
    return {"bootstrap.servers": info["bootstrap"], "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": user,
            "sasl.password": info["users"][user] if password is None else password,
            "ssl.ca.location": ca or info["ca"]}


def write_config(path, info, user, password=None, ca=None, **settings):
    """A trailhound config file with the connection as kafka.* settings; 0600
    because it holds a password."""
    conf = client_conf(info, user, password, ca)
    lines = [f'brokers = "{conf.pop("bootstrap.servers")}"']
    lines += [f'kafka.{k} = "{v}"' for k, v in conf.items()]
    lines += [f'{k} = "{v}"' for k, v in settings.items()]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def admin(secure):
    return AdminClient(client_conf(secure, "admin"))


class Names:
    def __init__(self):
        sfx = uuid.uuid4().hex[:10]
        self.input = f"th-sec.in.{sfx}"
        self.output = f"th-sec.out.{sfx}"
        self.changelog = f"th-sec.cl.{sfx}"
        self.dead_letter = f"th-sec.dl.{sfx}"
        self.group = f"th-sec.g.{sfx}"
        self.tid = f"th-sec.tid.{sfx}"


@pytest.fixture
def names(admin):
    n = Names()
    new = [NewTopic(n.input, PARTITIONS, 1), NewTopic(n.output, PARTITIONS, 1),
           NewTopic(n.changelog, PARTITIONS, 1, config={"cleanup.policy": "compact"}),
           NewTopic(n.dead_letter, 1, 1)]
    for f in admin.create_topics(new, operation_timeout=30).values():
        f.result()
    yield n
    for f in admin.delete_topics([t.topic for t in new], operation_timeout=30).values():
        try:
            f.result()
        except Exception as e:  # cleanup only
            log(f"delete: {e}")


def acl(principal, rtype, name, op):
    return AclBinding(rtype, name, ResourcePatternType.LITERAL, principal, "*", op,
                      AclPermissionType.ALLOW)


def worker_acls(n, principal="User:trailhound", group=True, tid=True):
    """The worker's ACLs as docs/operations.md lists them (group=False leaves
    out the consumer group's, tid=False the transactional id's)."""
    T, G, X = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID
    R, W, D = AclOperation.READ, AclOperation.WRITE, AclOperation.DESCRIBE
    out = [acl(principal, T, n.input, R), acl(principal, T, n.input, D),
           acl(principal, T, n.changelog, R), acl(principal, T, n.changelog, W),
           acl(principal, T, n.changelog, D),
           acl(principal, T, n.changelog, AclOperation.DESCRIBE_CONFIGS),
           acl(principal, T, n.output, W), acl(principal, T, n.output, D),
           acl(principal, T, n.dead_letter, W), acl(principal, T, n.dead_letter, D)]
    if tid:
        out += [acl(principal, X, n.tid, W), acl(principal, X, n.tid, D)]
    if group:
        out.append(acl(principal, G, n.group, R))
    return out


def bridge_acls(n, principal="User:bridge"):
    return [acl(principal, ResourceType.TOPIC, n.input, AclOperation.WRITE),
            acl(principal, ResourceType.TOPIC, n.input, AclOperation.DESCRIBE)]


def grant(admin, bindings):
    for f in admin.create_acls(bindings, request_timeout=30).values():
        f.result()
    # ACLs travel through the metadata log: wait until the broker lists them all
    deadline = time.monotonic() + 30
    want = {(b.restype, b.name, b.principal, b.operation) for b in bindings}
    while True:
        have = admin.describe_acls(AclBindingFilter(
            ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
            AclPermissionType.ANY), request_timeout=30).result()
        got = {(b.restype, b.name, b.principal, b.operation) for b in have}
        if want <= got:
            return
        assert time.monotonic() < deadline, f"ACLs not visible: {want - got}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def small_sample(tmp_path_factory):
    d = tmp_path_factory.mktemp("secure-sample")
    events, expected = d / "events.jsonl", d / "expected.jsonl"
    subprocess.run(["python3", os.path.join(SRC, "tools/gen_sample.py"), "--seed", "1",
                    "--target-events", "8000", "--out", str(events), "--expected",
                    str(expected), "-q"], check=True)
    ids = sorted(json.loads(l)["alert_id"] for l in open(expected))
    assert ids, "the generator injected no attack"
    return events, ids


def run_worker(cfg, n, state_dir, *extra):
    cmd = [BIN, "run", "-c", cfg,
           "--set", f"input_topics={n.input}", "--set", f"output_topic={n.output}",
           "--set", f"changelog_topic={n.changelog}", "--set", f"dead_letter_topic={n.dead_letter}",
           "--set", f"group_id={n.group}", "--set", f"transactional_id={n.tid}",
           "--set", f"state_dir={state_dir}", "--set", f"schema_id={SCHEMA_ID}",
           "--set", f"asn_db={ASN}", "--set", f"aws_ranges={RANGES}",
           "--set", "kafka.consumer.session.timeout.ms=6000", *extra]
    t = time.monotonic()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=HANG)
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr
        raise AssertionError(f"worker still running after {HANG} s:\n{(err or '')[-4000:]}")
    log(f"worker exited {p.returncode} after {time.monotonic() - t:.1f} s")
    return p


def read_all(info, topic):
    """Every committed message of the topic, read as the admin user."""
    c = Consumer({**client_conf(info, "admin"), "group.id": f"th-sec.reader.{uuid.uuid4().hex}",
                  "isolation.level": "read_committed", "enable.auto.commit": False,
                  "enable.partition.eof": True, "auto.offset.reset": "earliest"})
    try:
        md = c.list_topics(topic, timeout=10)
        todo = set()
        for p in md.topics[topic].partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if hi > lo:
                todo.add(p)
        c.assign([TopicPartition(topic, p, 0) for p in sorted(todo)])
        out, deadline = [], time.monotonic() + 60
        while todo:
            assert time.monotonic() < deadline, f"reading {topic}: no EOF on {todo}"
            for m in c.consume(1000, 0.5):
                if m.error():
                    assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                    todo.discard(m.partition())
                    continue
                out.append(m)
        return out
    finally:
        c.close()


def committed(info, n):
    c = Consumer({**client_conf(info, "admin"), "group.id": n.group,
                  "enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(n.input, p) for p in range(PARTITIONS)], timeout=20)
        ends = [c.get_watermark_offsets(TopicPartition(n.input, p), timeout=10)[1]
                for p in range(PARTITIONS)]
        return [max(tp.offset, 0) for tp in tps], ends
    finally:
        c.close()


def test_worker_and_produce_end_to_end_with_acls(secure, admin, names, small_sample, tmp_path):
    events, want_ids = small_sample
    grant(admin, bridge_acls(names) + worker_acls(names))

    pcfg = write_config(tmp_path / "bridge.conf", secure, "bridge")
    p = subprocess.run([BIN, "produce", "-c", pcfg, "-t", names.input, str(events)],
                       capture_output=True, text=True, timeout=HANG)
    assert p.returncode == 0, p.stderr
    n_events = sum(1 for _ in open(events))
    assert f"{n_events} delivered" in p.stderr, p.stderr

    wcfg = write_config(tmp_path / "worker.conf", secure, "trailhound")
    w = run_worker(wcfg, names, tmp_path / "state", "--exit-when-idle", "3000", "--drain")
    assert w.returncode == 0, w.stderr[-4000:]
    alerts = [(m, decode_alert(m.value())) for m in read_all(secure, names.output)]
    assert_exactly_once(alerts, want_ids, "alerts over SASL_SSL")
    got, ends = committed(secure, names)
    assert got == ends and sum(ends) == n_events, (got, ends)
    # the passwords are in the config file only, never in what the worker logs
    for user in ("trailhound", "bridge"):
        assert secure["users"][user] not in w.stderr + p.stderr


@pytest.mark.parametrize("what", ["wrong_password", "untrusted_ca"])
def test_bad_credentials_stop_with_the_reason(secure, admin, names, small_sample, tmp_path,
                                              what):
    events, _ = small_sample
    grant(admin, bridge_acls(names) + worker_acls(names))
    kw = ({"password": "not-the-password"} if what == "wrong_password"
          else {"ca": secure["rogue_ca"]})
    reason = ("SASL authentication error" if what == "wrong_password"
              else "certificate verify failed")

    pcfg = write_config(tmp_path / "bridge.conf", secure, "bridge", **kw)
    p = subprocess.run([BIN, "produce", "-c", pcfg, "-t", names.input, str(events)],
                       capture_output=True, text=True, timeout=HANG)
    assert p.returncode == 4, p.stderr[-3000:]
    assert "trailhound produce: cannot use the brokers" in p.stderr and reason in p.stderr, \
        p.stderr[-3000:]

    wcfg = write_config(tmp_path / "worker.conf", secure, "trailhound", **kw)
    w = run_worker(wcfg, names, tmp_path / "state")
    assert w.returncode == 4, w.stderr[-3000:]
    last = [l for l in w.stderr.splitlines() if "ERROR [worker]" in l]
    assert last and "cannot use the brokers" in last[-1] and reason in last[-1], \
        w.stderr[-3000:]
    # nothing reached the broker
    assert committed(secure, names)[1] == [0] * PARTITIONS


def test_worker_without_group_acl_processes_nothing(secure, admin, names, small_sample,
                                                    tmp_path):
    """The authorizer is really on: without read on its consumer group the
    worker gets GROUP_AUTHORIZATION_FAILED and stops with exit 4 and the reason
    (it used to wait for good without partitions), having written nothing."""
    events, _ = small_sample
    grant(admin, bridge_acls(names) + worker_acls(names, group=False))
    pcfg = write_config(tmp_path / "bridge.conf", secure, "bridge")
    p = subprocess.run([BIN, "produce", "-c", pcfg, "-t", names.input, str(events)],
                       capture_output=True, text=True, timeout=HANG)
    assert p.returncode == 0, p.stderr
    wcfg = write_config(tmp_path / "worker.conf", secure, "trailhound")
    w = run_worker(wcfg, names, tmp_path / "state", "--exit-when-idle", "3000")
    assert w.returncode == 4, w.stderr[-3000:]
    last = [l for l in w.stderr.splitlines() if "ERROR [worker]" in l]
    assert last and "not authorized" in last[-1] and "Group authorization failed" in last[-1], \
        w.stderr[-3000:]
    assert read_all(secure, names.output) == []


def test_worker_without_transactional_id_acl_exits_4(secure, admin, names, tmp_path):
    """Without its TransactionalId ACL the worker's init_transactions fails with
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED: a permission no restart grants, so
    exit 4 with the reason (it exited 5, and a supervisor restarted it in a
    loop), having written nothing."""
    grant(admin, worker_acls(names, tid=False))
    wcfg = write_config(tmp_path / "worker.conf", secure, "trailhound")
    w = run_worker(wcfg, names, tmp_path / "state", "--exit-when-idle", "3000")
    assert w.returncode == 4, w.stderr[-3000:]
    last = [l for l in w.stderr.splitlines() if "ERROR [worker]" in l]
    assert last and "Transactional Id authorization failed" in last[-1], w.stderr[-3000:]
    assert read_all(secure, names.output) == []


def check_config(cfg, n, state_dir):
    cmd = [BIN, "run", "-c", cfg, "--check-config",
           "--set", f"input_topics={n.input}", "--set", f"output_topic={n.output}",
           "--set", f"changelog_topic={n.changelog}", "--set", f"dead_letter_topic={n.dead_letter}",
           "--set", f"group_id={n.group}", "--set", f"transactional_id={n.tid}",
           "--set", f"state_dir={state_dir}", "--set", f"schema_id={SCHEMA_ID}",
           "--set", f"asn_db={ASN}", "--set", f"aws_ranges={RANGES}"]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=HANG)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"--check-config still running after {HANG} s")


@pytest.mark.parametrize("what", ["good", "wrong_password", "producer_wrong_password"])
def test_check_config_on_the_secured_broker(secure, admin, names, tmp_path, what):
    """`run --check-config` with the worker's principal and exactly its ACLs:
    every check passes and the effective configuration it prints masks the
    password; with a wrong password it fails with the broker's reason (exit 4),
    without echoing the password it was given either. A wrong password in
    kafka.producer.* alone (the consumer's right) fails it too: the check
    used to connect with the consumer's settings only, and `run` then failed
    at its start."""
    grant(admin, worker_acls(names))
    password = "not-the-password-either" if what == "wrong_password" else None
    cfg = write_config(tmp_path / "worker.conf", secure, "trailhound", password=password)
    if what == "producer_wrong_password":
        password = "not-the-producers-password"
        with open(cfg, "a") as f:
            f.write(f'kafka.producer.sasl.password = "{password}"\n')
    r = check_config(cfg, names, tmp_path / "state")
    out = r.stdout + r.stderr
    given = secure["users"]["trailhound"] if password is None else password
    assert given not in out, "the password reached the output"
    if what == "producer_wrong_password":
        assert r.returncode == 4, out[-4000:]
        fails = [l for l in r.stdout.splitlines() if l.startswith("FAIL ")]
        assert fails and all("producer" in l for l in fails), r.stdout[-3000:]
        assert "SASL authentication error" in out, out[-4000:]
        return
    if what == "good":
        fails = [l for l in r.stdout.splitlines() if l.startswith("FAIL ")]
        assert r.returncode == 0 and not fails, out[-4000:]
        assert f"changelog topic {names.changelog}: {PARTITIONS} partitions, co-partitioned" in r.stdout
        assert "kafka.sasl.password" in r.stdout and "***" in r.stdout, r.stdout[-3000:]
    else:
        assert r.returncode == 4, out[-4000:]
        assert "SASL authentication error" in out, out[-4000:]

"""Shared fixtures and helpers of the Kafka integration tests (tests/kafka/).

These run `trailhound run` workers as subprocesses against a real single-node
Kafka 3.9.1 broker (scripts/kafka-local.sh) and check what a downstream
read_committed consumer sees.

Environment (set by tests/kafka.cmake under CTest, like tests/pytest.cmake):
  TH_BIN     the trailhound binary          (default build/trailhound)
  TH_SHARED  the shared reference data      (default ../shared/data)
  TH_SRC     the repository                 (default ..)
  TH_KAFKA_BOOTSTRAP  use this broker instead of scripts/kafka-local.sh's
  TH_KEEP_TOPICS=1    keep each test's topics (default: deleted after the test)
  TH_KAFKA_PORT, TH_KAFKA_DIR  passed on to scripts/kafka-local.sh (another broker,
                      e.g. one per developer: port 29092 and its own directory)
  TH_CRASH_EVENTS     size of the big sample (fencing and rebalance tests;
                      default 200000; the sanitizer pass uses fewer)
  TH_CRASH_BIG_EVENTS size of the crash test's sample (default 1000000, or
                      TH_CRASH_EVENTS when that is set smaller)

The session fixture `broker` reuses a running local broker or starts one (and
then stops it again at the end of the session); the CTest fixture
kafka.broker.start / kafka.broker.stop does this once for the whole run.

Every test creates its own topics and consumer group (uuid suffix), so tests
are independent of each other and of earlier runs on the same broker.
"""
import calendar
import collections
import io
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid

import pytest

try:
    import fastavro
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic
except ImportError as e:  # pragma: no cover - environment problem, say so clearly
    raise ImportError(
        f"{e}: the Kafka tests need the Python packages confluent-kafka and fastavro "
        "(python3 -m pip install confluent-kafka fastavro)") from e

BIN = os.path.abspath(os.environ.get("TH_BIN", "build/trailhound"))
HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.environ.get("TH_SRC", os.path.join(HERE, "../..")))
SHARED = os.path.abspath(os.environ.get("TH_SHARED", os.path.join(SRC, "../shared/data")))
ASN = os.path.join(SHARED, "asn/asn.mmdb")
RANGES = os.path.join(SHARED, "aws-ip-ranges/ip-ranges.json")
GEN = os.path.join(SRC, "tools/gen_sample.py")
KAFKA_LOCAL = os.path.join(SRC, "scripts/kafka-local.sh")
SCHEMA = os.path.join(SRC, "schemas/alert.avsc")
SCHEMA_ID = 1
PARTITIONS = 4

# The fields of scan's JSON alert that the Avro alert carries too ("input"
# differs by design: file/byte offset for scan, topic/partition/offset here).
MAIN_FIELDS = ("alert_id", "alert_name", "variation", "severity", "description", "tactic",
               "account_id", "region", "role_arn", "function_name", "session_name",
               "access_key_id", "event_id", "event_name", "event_source", "event_time",
               "source_ip", "network", "asn", "as_org", "source_aws_region", "user_agent",
               "vpc_endpoint_id", "vpc_endpoint_account_id", "evidence", "history",
               "investigative_actions", "upgrade_of")

_T0 = time.monotonic()


def log(msg):
    """Progress and timings on stdout (pytest -s, or in CTest's output on failure)."""
    print(f"[{time.monotonic() - _T0:7.1f}s] {msg}", flush=True)


# ---------------------------------------------------------------------------
# broker
# ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def broker():
    """Bootstrap servers of a running broker: reuse one, else start (and later stop) it."""
    given = os.environ.get("TH_KAFKA_BOOTSTRAP")
    if given:
        yield given
        return
    started = False
    if subprocess.run([KAFKA_LOCAL, "status"], capture_output=True).returncode != 0:
        t = time.monotonic()
        subprocess.run([KAFKA_LOCAL, "start"], check=True)
        started = True
        log(f"broker started in {time.monotonic() - t:.1f} s")
    bootstrap = subprocess.run([KAFKA_LOCAL, "bootstrap"], capture_output=True, text=True,
                               check=True).stdout.strip()
    yield bootstrap
    if started:
        subprocess.run([KAFKA_LOCAL, "stop"])


@pytest.fixture(scope="session")
def admin(broker):
    return AdminClient({"bootstrap.servers": broker})


class Names:
    """One test's topics, group, transactional ids and directories (unique per test)."""

    def __init__(self, tag, tmp_path):
        self.sfx = f"{tag}-{uuid.uuid4().hex[:10]}"
        self.input = f"th-test.in.{self.sfx}"
        self.tmp = tmp_path

    def pipeline(self, name):
        """A set of output/changelog/dead-letter topics + group for one pipeline."""
        s = f"{name}.{self.sfx}"
        return Pipeline(group=f"th-test.g.{s}", output=f"th-test.out.{s}",
                        changelog=f"th-test.cl.{s}", dead_letter=f"th-test.dl.{s}",
                        tid_prefix=f"th-test.{s}")

    def state_dir(self, name):
        return str(self.tmp / f"state-{name}")


Pipeline = collections.namedtuple("Pipeline", "group output changelog dead_letter tid_prefix")


@pytest.fixture
def topics(admin, request, tmp_path):
    """Factory: create this test's input topic and pipelines' topics; deletes them after."""
    created = []

    class Factory:
        def __init__(self):
            # parametrized names carry [..]: not allowed in topic names
            tag = re.sub(r"[^A-Za-z0-9._-]", "_", request.node.name.replace("test_", ""))
            self.names = Names(tag[:24], tmp_path)

        def create(self, *pipelines, input_topic=True, partitions=PARTITIONS):
            new = []
            if input_topic:
                new.append(NewTopic(self.names.input, partitions, 1))
            for p in pipelines:
                new += [NewTopic(p.output, partitions, 1),
                        NewTopic(p.changelog, partitions, 1,
                                 config={"cleanup.policy": "compact"}),
                        NewTopic(p.dead_letter, 1, 1)]
            for t, f in admin.create_topics(new, operation_timeout=30).items():
                f.result()
                created.append(t)
            wait_for_topics(admin, [t.topic for t in new])
            return self.names

    yield Factory()
    if created and not os.environ.get("TH_KEEP_TOPICS"):
        for t, f in admin.delete_topics(created, operation_timeout=30).items():
            try:
                f.result()
            except Exception as e:  # cleanup only
                log(f"delete {t}: {e}")


def wait_for_topics(admin, names, timeout=30):
    """Until every partition of every topic has a leader."""
    deadline = time.monotonic() + timeout
    while True:
        md = admin.list_topics(timeout=10)
        ok = all(n in md.topics and md.topics[n].error is None and md.topics[n].partitions and
                 all(p.leader >= 0 for p in md.topics[n].partitions.values()) for n in names)
        if ok:
            return
        assert time.monotonic() < deadline, f"topics not ready: {names}"
        time.sleep(0.2)


# ---------------------------------------------------------------------------
# samples and the offline reference (`trailhound scan`)
# ---------------------------------------------------------------------------

class Sample:
    def __init__(self, path, expected_path):
        self.path = path
        self.expected = [json.loads(l) for l in open(expected_path)]
        self.expected_ids = sorted(a["alert_id"] for a in self.expected)
        self.n_events = sum(1 for _ in open(path))
        self._scan = None

    @property
    def scan(self):
        """`trailhound scan`'s alerts on the same file: alert_id -> JSON alert."""
        if self._scan is None:
            p = subprocess.run([BIN, "scan", "--no-progress", "--asn-db", ASN, "--aws-ranges",
                                RANGES, str(self.path)], capture_output=True)
            assert p.returncode in (0, 1), p.stderr.decode()
            alerts = [json.loads(l) for l in p.stdout.decode().splitlines() if l.strip()]
            self._scan = {a["alert_id"]: a for a in alerts}
            assert len(self._scan) == len(alerts), "scan repeated an alert_id"
        return self._scan


def _gen(tmp_path_factory, name, *args):
    d = tmp_path_factory.mktemp(name)
    events, expected = d / "events.jsonl", d / "expected.jsonl"
    t = time.monotonic()
    subprocess.run([sys.executable, GEN, "--seed", "1", "--out", str(events), "--expected",
                    str(expected), "-q", *args], check=True)
    s = Sample(events, expected)
    log(f"generated {name}: {s.n_events} events, {len(s.expected)} expected alerts "
        f"in {time.monotonic() - t:.1f} s")
    assert s.expected, "the generator injected no attack"
    return s


@pytest.fixture(scope="session")
def sample(tmp_path_factory):
    """The default generated sample (seed 1, ~50k events)."""
    return _gen(tmp_path_factory, "sample50k")


CRASH_EVENTS = int(os.environ.get("TH_CRASH_EVENTS", "200000"))


# The crash test's input: at the default commit interval the worker reads
# 200k events in about a second, too little to spread ten kills across a run.
CRASH_BIG_EVENTS = int(os.environ.get(
    "TH_CRASH_BIG_EVENTS", "1000000" if CRASH_EVENTS == 200000 else str(CRASH_EVENTS)))


@pytest.fixture(scope="session")
def sample_1m(tmp_path_factory):
    """A >= 1M-event sample for the crash test (TH_CRASH_BIG_EVENTS; with a
    smaller TH_CRASH_EVENTS, that size)."""
    s = _gen(tmp_path_factory, "sample1m", "--target-events", str(CRASH_BIG_EVENTS))
    assert s.n_events >= 0.9 * CRASH_BIG_EVENTS
    return s


@pytest.fixture(scope="session")
def sample_200k(tmp_path_factory):
    """A >= 200k-event sample (seed 1; the same attack cases, more background);
    TH_CRASH_EVENTS makes it smaller (the sanitizer pass)."""
    s = _gen(tmp_path_factory, "sample200k", "--target-events", str(CRASH_EVENTS))
    # the generator lands near its target (50000 gives 49256); the default
    # size is a promise of the tests that use it
    assert s.n_events >= (200000 if CRASH_EVENTS == 200000 else 0.9 * CRASH_EVENTS)
    return s


@pytest.fixture(scope="session")
def sample_200k_always(tmp_path_factory):
    """The >= 200k-event sample whatever TH_CRASH_EVENTS says: the rebalance
    scenario needs every partition big enough that a second worker joins
    while its partitions still have input (the 50k sample leaves one small
    partition that a worker can finish before another joins)."""
    s = _gen(tmp_path_factory, "sample200kfull", "--target-events", "200000")
    assert s.n_events >= 200000
    return s


def split_file(path, parts, outdir):
    """The lines of a file in `parts` consecutive pieces (files), in order."""
    lines = open(path, "rb").read().splitlines(keepends=True)
    n = len(lines)
    out = []
    for i in range(parts):
        piece = lines[i * n // parts:(i + 1) * n // parts]
        f = os.path.join(str(outdir), f"{os.path.basename(str(path))}.part{i}")
        with open(f, "wb") as fh:
            fh.writelines(piece)
        out.append((f, len(piece)))
    return out


def broker_pid():
    """pid of the local broker (scripts/kafka-local.sh pid), for SIGSTOP/SIGCONT."""
    p = subprocess.run([KAFKA_LOCAL, "pid"], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip().isdigit(), \
        "no local broker pid (TH_KAFKA_BOOTSTRAP brokers cannot be paused)"
    return int(p.stdout.strip())


def free_port():
    """A loopback TCP port free right now (for a worker's or bridge's metrics_listen)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ranges_created_s(path=RANGES):
    """ip-ranges.json's createDate ("2026-08-22-15-17-05", UTC) in Unix seconds,
    read here, independently of the worker."""
    return calendar.timegm(time.strptime(json.load(open(path))["createDate"], "%Y-%m-%d-%H-%M-%S"))


def asn_built_s(path=ASN):
    """The ASN database's build epoch as libmaxminddb's own tool prints it."""
    v = subprocess.run(["mmdblookup", "--file", path, "--ip", "1.1.1.1", "--verbose"],
                       capture_output=True, text=True, check=True).stdout
    return int(v.split("Build epoch:")[1].split()[0])


def produce_file(broker, topic, path):
    t = time.monotonic()
    p = subprocess.run([BIN, "produce", "-b", broker, "-t", topic, str(path)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    log(f"produced {os.path.basename(str(path))} to {topic} in {time.monotonic() - t:.1f} s")


# ---------------------------------------------------------------------------
# workers
# ---------------------------------------------------------------------------

class Worker:
    """`trailhound run` as a subprocess; stderr goes to a log file."""

    def __init__(self, broker, input_topic, pipe, tid, state_dir, logdir, *extra,
                 instance_id=None, name=None, env=None):
        self.name = name or tid
        self.log_path = os.path.join(logdir, f"{self.name}.{uuid.uuid4().hex[:6]}.log")
        self.cmd = [BIN, "run",
                    "--set", f"brokers={broker}",
                    "--set", f"input_topics={input_topic}",
                    "--set", f"output_topic={pipe.output}",
                    "--set", f"changelog_topic={pipe.changelog}",
                    "--set", f"dead_letter_topic={pipe.dead_letter}",
                    "--set", f"group_id={pipe.group}",
                    "--set", f"transactional_id={tid}",
                    "--set", f"state_dir={state_dir}",
                    "--set", f"schema_id={SCHEMA_ID}",
                    "--set", f"asn_db={ASN}",
                    "--set", f"aws_ranges={RANGES}",
                    "--set", "kafka.consumer.session.timeout.ms=6000"]
        # static membership (KIP-345): a restarted worker takes its old place in
        # the group at once, no wait for the session timeout (instance_id=False:
        # a dynamic member)
        if instance_id is not False:
            self.cmd += ["--set", f"kafka.consumer.group.instance.id={instance_id or tid}"]
        self.cmd += list(extra)
        self._log = open(self.log_path, "wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=self._log,
                                     env=env)

    def poll(self):
        return self.proc.poll()

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        return self.wait(30)

    def term(self):
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"{self.name} did not exit within {timeout} s; log:\n" +
                                 self.tail())
        finally:
            self._log.flush()

    def text(self):
        self._log.flush()
        with open(self.log_path, "r", errors="replace") as f:
            return f.read()

    def tail(self, n=40):
        return "\n".join(l for l in self.text().splitlines()[-n:])

    def lines(self, needle):
        return [l for l in self.text().splitlines() if needle in l]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@pytest.fixture
def workers(broker, tmp_path):
    """Factory of Worker subprocesses; any still running at the end are killed."""
    started = []
    logdir = tmp_path / "logs"
    logdir.mkdir()

    def start(input_topic, pipe, tid, state_dir, *extra, **kw):
        w = Worker(broker, input_topic, pipe, tid, state_dir, str(logdir), *extra, **kw)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


def run_to_end(start, input_topic, pipe, tid, state_dir, *extra, timeout=240, **kw):
    """One worker over the whole input (exit when caught up, held uses drained);
    extra: more command-line arguments (e.g. "--set", "name=value")."""
    t = time.monotonic()
    w = start(input_topic, pipe, tid, state_dir, "--exit-when-idle", "3000", "--drain", *extra,
              **kw)
    rc = w.wait(timeout)
    assert rc == 0, f"{w.name} exited {rc}:\n{w.tail()}"
    log(f"worker {w.name} ran to the end in {time.monotonic() - t:.1f} s: "
        f"{(w.lines('messages=') or ['?'])[-1].split('] ')[-1]}")
    return w


# ---------------------------------------------------------------------------
# reading topics
# ---------------------------------------------------------------------------

_schema = None


def alert_schema():
    global _schema
    if _schema is None:
        _schema = fastavro.parse_schema(json.load(open(SCHEMA)))
    return _schema


def decode_alert(value):
    """Check the Confluent framing (magic 0 + 4-byte big-endian schema id), decode the rest."""
    assert value and value[0] == 0, f"bad magic byte: {value[:5]!r}"
    (sid,) = struct.unpack(">I", value[1:5])
    assert sid == SCHEMA_ID, sid
    buf = io.BytesIO(value[5:])
    rec = fastavro.schemaless_reader(buf, alert_schema())
    assert buf.tell() == len(value) - 5, "trailing bytes after the Avro record"
    return rec


Msg = collections.namedtuple("Msg", "partition offset key value headers")


def read_topic(broker, topic, timeout=60, isolation="read_committed"):
    """Every committed message of a topic (read_committed), to the end of each
    partition; isolation="read_uncommitted" also returns aborted transactions' records."""
    c = Consumer({"bootstrap.servers": broker, "group.id": f"th-test.reader.{uuid.uuid4().hex}",
                  "isolation.level": isolation, "enable.auto.commit": False,
                  "enable.partition.eof": True, "auto.offset.reset": "earliest"})
    try:
        md = c.list_topics(topic, timeout=10)
        parts = sorted(md.topics[topic].partitions)
        # partitions that hold nothing never report EOF reliably: skip them
        todo = set()
        for p in parts:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if hi > lo:
                todo.add(p)
        c.assign([TopicPartition(topic, p, 0) for p in sorted(todo)])
        out = []
        deadline = time.monotonic() + timeout
        while todo:
            assert time.monotonic() < deadline, f"reading {topic}: no EOF on {todo}"
            for m in c.consume(1000, 0.5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        todo.discard(m.partition())
                        continue
                    raise AssertionError(f"reading {topic}: {m.error()}")
                out.append(Msg(m.partition(), m.offset(), m.key(), m.value(),
                               {k: v for k, v in (m.headers() or [])}))
        return out
    finally:
        c.close()


def read_alerts(broker, topic):
    """(message, decoded alert) for each committed alert."""
    return [(m, decode_alert(m.value)) for m in read_topic(broker, topic)]


def committed_offsets(consumer, tps, patience_s=90):
    """consumer.committed() that rides out the coordinator's transient errors:
    right after a broker start the offsets topic is still being created, and
    after kafka.outage's freeze (longer than the broker's KRaft session) the
    broker is fenced and reloads the offsets partitions; meanwhile the group
    coordinator answers NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS (seen
    for over 15 s on a loaded machine, under ASan). Retried for patience_s."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return consumer.committed(tps, timeout=10)
        except KafkaException as e:
            err = e.args[0]
            if time.monotonic() > deadline or not (err.retriable() or err.code() in (
                    KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                    KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError._TIMED_OUT)):
                raise
            time.sleep(0.5)


def group_offsets(broker, group, topic, partitions=PARTITIONS):
    """The group's committed offsets of the topic's partitions (-1001 = none)."""
    c = Consumer({"bootstrap.servers": broker, "group.id": group,
                  "isolation.level": "read_committed", "enable.auto.commit": False})
    try:
        return [tp.offset for tp in
                committed_offsets(c, [TopicPartition(topic, p) for p in range(partitions)])]
    finally:
        c.close()


def end_offsets(broker, topic, partitions=PARTITIONS):
    c = Consumer({"bootstrap.servers": broker, "group.id": "th-test.watermarks"})
    try:
        return [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(partitions)]
    finally:
        c.close()


class OpenTransactions:
    """Whether a transaction that has written to the topic is still open: a
    read_committed consumer's end offset is the last stable offset, which stops
    at the first record of an open transaction, while read_uncommitted's is the
    high watermark. LSO < high watermark on any partition means an open
    transaction holds records there (ListOffsets, one round trip per partition)."""

    def __init__(self, broker, topic, partitions=PARTITIONS):
        self.tps = [TopicPartition(topic, p) for p in range(partitions)]
        self.stable = Consumer({"bootstrap.servers": broker, "group.id": "th-test.lso",
                                "isolation.level": "read_committed"})
        self.high = Consumer({"bootstrap.servers": broker, "group.id": "th-test.hw",
                              "isolation.level": "read_uncommitted"})

    def __call__(self):
        for tp in self.tps:
            lso = self.stable.get_watermark_offsets(tp, timeout=10, cached=False)[1]
            hw = self.high.get_watermark_offsets(tp, timeout=10, cached=False)[1]
            if lso < hw:
                return True
        return False

    def close(self):
        self.stable.close()
        self.high.close()


class Progress:
    """How many input messages the group has committed, in total. Reads the
    offsets read_uncommitted (require_stable off): a killed worker's pending
    transactional offset commit must not block the look-up."""

    def __init__(self, broker, group, topic, partitions=PARTITIONS):
        self.c = Consumer({"bootstrap.servers": broker, "group.id": group,
                           "isolation.level": "read_uncommitted", "enable.auto.commit": False})
        self.tps = [TopicPartition(topic, p) for p in range(partitions)]

    def parts(self):
        return [max(tp.offset, 0) for tp in committed_offsets(self.c, self.tps)]

    def __call__(self):
        return sum(self.parts())

    def close(self):
        self.c.close()


def changelog_state(broker, topic):
    """The state a changelog describes: the last committed value per (partition, key),
    with the input-topic prefix of the key (topic + 0x1e) stripped; deletes drop the key."""
    state = {}
    for m in read_topic(broker, topic, timeout=120):
        key = m.key.split(b"\x1e", 1)[1]
        if m.value:
            state[(m.partition, key)] = m.value
        else:
            state.pop((m.partition, key), None)
    return state


# ---------------------------------------------------------------------------
# assertions
# ---------------------------------------------------------------------------

def assert_exactly_once(alerts, want_ids, what="output"):
    """Every wanted alert_id exactly once, nothing else."""
    counts = collections.Counter(a["alert_id"] for _, a in alerts)
    dup = {k: n for k, n in counts.items() if n > 1}
    missing = sorted(set(want_ids) - set(counts))
    extra = sorted(set(counts) - set(want_ids))
    assert not dup and not missing and not extra, \
        f"{what}: duplicates {dup}, missing {missing}, extra {extra}"


def inspect_state(state_dir, input_topic):
    """`trailhound inspect --json` keys/roles/accounts of each partition's LMDB
    environment, raw text per (partition, what) (deterministic: LMDB key order)."""
    out = {}
    for p in range(PARTITIONS):
        d = os.path.join(state_dir, f"{input_topic}-{p}")
        for what in ("keys", "roles", "accounts"):
            r = subprocess.run([BIN, "inspect", "--state", d, "--json", what],
                               capture_output=True, text=True)
            assert r.returncode in (0, 1), f"inspect {d} {what}: {r.stderr}"
            out[(p, what)] = r.stdout
    return out


def assert_caught_up(broker, group, topic):
    """The group's committed offsets are the end of every partition (an empty
    partition may have no committed offset at all)."""
    got, end = group_offsets(broker, group, topic), end_offsets(broker, topic)
    assert [max(o, 0) for o in got] == end, f"committed {got}, end offsets {end}"


def assert_same_state(got, want, what):
    diff = [k for k in sorted(set(got) | set(want)) if got.get(k) != want.get(k)]
    assert not diff, f"{what}: state differs for {diff[:10]} ({len(diff)} in all)"

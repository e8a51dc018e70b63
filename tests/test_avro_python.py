"""Standard tools decode trailhound's Avro: `scan --avro-out` on a generated
sample, every framed message decoded with fastavro against schemas/alert.avsc
and compared with the JSON alert printed for it; and a Schema Registry
round-trip against a Confluent-REST-compatible stand-in.

The stand-in is a few lines of http.server rather than Karapace or the
Confluent registry, which are not installable here. It speaks the one call we
make (POST /subjects/{subject}/versions) the way Confluent documents it.

Run under CTest (tests/pytest.cmake), which sets TH_BIN, TH_SHARED and TH_SRC.
"""
import datetime
import http.server
import io
import json
import os
import struct
import subprocess
import sys
import threading

import pytest

import fastavro  # not importorskip: a skipped proof proves nothing

BIN = os.environ.get("TH_BIN", "build/trailhound")
SHARED = os.environ.get("TH_SHARED", os.path.join(os.path.dirname(__file__), "../../shared/data"))
SRC = os.environ.get("TH_SRC", os.path.join(os.path.dirname(__file__), ".."))
ASN = os.path.join(SHARED, "asn/asn.mmdb")
RANGES = os.path.join(SHARED, "aws-ip-ranges/ip-ranges.json")
GEN = os.path.join(SRC, "tools/gen_sample.py")
AVSC = os.path.join(SRC, "schemas/alert.avsc")
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    d = tmp_path_factory.mktemp("sample")
    events = d / "sample.jsonl"
    subprocess.run([sys.executable, GEN, "--seed", "1", "--out", str(events), "-q"], check=True)
    return events


@pytest.fixture(scope="module")
def schema():
    with open(AVSC) as f:
        return fastavro.parse_schema(json.load(f))


def scan(events, avro_out, *extra):
    cmd = [BIN, "scan", "--no-progress", "--asn-db", ASN, "--aws-ranges", RANGES,
           "--avro-out", str(avro_out)] + list(extra) + [str(events)]
    p = subprocess.run(cmd, capture_output=True)
    assert p.returncode == 1, p.stderr.decode()  # 1 = alerts raised
    return [json.loads(l) for l in p.stdout.decode().splitlines() if l.strip()], p


def messages(path):
    """The file's length-prefixed messages, split back apart."""
    data = open(path, "rb").read()
    out, i = [], 0
    while i < len(data):
        assert i + 4 <= len(data), "truncated length prefix"
        (n,) = struct.unpack(">I", data[i:i + 4])
        assert i + 4 + n <= len(data), "truncated message"
        out.append(data[i + 4:i + 4 + n])
        i += 4 + n
    return out


def unframe(msg, schema):
    """Check the Confluent header, decode the body; (schema id, record)."""
    assert msg[0] == 0, "magic byte"
    (sid,) = struct.unpack(">i", msg[1:5])
    body = io.BytesIO(msg[5:])
    rec = fastavro.schemaless_reader(body, schema)
    assert body.read() == b"", "bytes left after the record"
    return sid, rec


def ms(dt):
    """fastavro turns timestamp-millis into aware datetimes."""
    return (dt - EPOCH) // datetime.timedelta(milliseconds=1)


def json_ms(s):
    if s is None:
        return None
    return ms(datetime.datetime.strptime(s.replace("Z", "+0000"),
                                         "%Y-%m-%dT%H:%M:%S.%f%z" if "." in s
                                         else "%Y-%m-%dT%H:%M:%S%z"))


def as_json(rec):
    """The decoded record in the JSON rendering's shape (times as ms)."""
    r = dict(rec)
    r["event_time"] = ms(r["event_time"])
    h = dict(r["history"])
    h["issued_at"] = None if h["issued_at"] is None else ms(h["issued_at"])
    for k in ("first_seen", "last_seen"):
        # not nullable in Avro: JSON's null ("unknown") is the epoch there
        h[k] = ms(h[k]) or None
    r["history"] = h
    return r


def json_norm(a):
    a = dict(a)
    a["event_time"] = json_ms(a["event_time"])
    h = dict(a["history"])
    for k in ("issued_at", "first_seen", "last_seen"):
        h[k] = json_ms(h[k])
    a["history"] = h
    return a


def test_fastavro_decodes_every_alert_equal_to_the_json(sample, schema, tmp_path):
    out = tmp_path / "alerts.avro"
    alerts, p = scan(sample, out)
    assert b"schema id 1" in p.stderr  # said so, since nothing was configured
    msgs = messages(out)
    assert len(msgs) == len(alerts) > 0
    for msg, want in zip(msgs, alerts):  # same order: one callback writes both
        sid, rec = unframe(msg, schema)
        assert sid == 1
        got, want = as_json(rec), json_norm(want)
        # every field, both ways: nothing missing, nothing extra
        assert set(got) == set(want)
        assert set(got["history"]) == set(want["history"])
        for k in want:
            assert got[k] == want[k], (want["alert_id"], k)
    # the sample exercises both sides of the nullable fields
    assert any(a["upgrade_of"] for a in alerts) and any(not a["upgrade_of"] for a in alerts)


def test_configured_schema_id_is_framed(sample, schema, tmp_path):
    out = tmp_path / "alerts.avro"
    alerts, p = scan(sample, out, "--set", "schema_id=305419896")  # 0x12345678
    assert b"schema id 1" not in p.stderr
    msgs = messages(out)
    assert len(msgs) == len(alerts)
    for m in msgs:
        assert m[:5] == b"\x00\x12\x34\x56\x78"
        unframe(m, schema)


class Registry(http.server.ThreadingHTTPServer):
    """Confluent Schema Registry, the register call only: the same schema
    under a subject keeps its id, a new one gets the next id."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), RegistryHandler)
        self.ids = {}        # schema text -> id (ids are global, as in Confluent)
        self.subjects = {}   # subject -> [schema text]
        self.requests = []   # (path, content type, body) as received
        self.next_id = 41    # not 1, so a default id cannot pass for a registered one
        self.canned = None   # a raw 200 reply body to send instead, for parser tests


class RegistryHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        srv = self.server
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        ctype = self.headers.get("Content-Type")
        srv.requests.append((self.path, ctype, raw))
        parts = self.path.split("/")
        if len(parts) != 4 or parts[1] != "subjects" or parts[3] != "versions":
            return self.reply(404, {"error_code": 404, "message": "HTTP 404 Not Found"})
        if ctype not in ("application/vnd.schemaregistry.v1+json", "application/json"):
            return self.reply(415, {"error_code": 415, "message": "Unsupported Media Type"})
        try:
            text = json.loads(raw)["schema"]
            fastavro.parse_schema(json.loads(text))
        except Exception as e:  # what Confluent answers for a bad schema
            return self.reply(422, {"error_code": 42201, "message": "Invalid schema: %s" % e})
        if srv.canned is not None:
            body = srv.canned.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if text not in srv.ids:
            srv.next_id += 1
            srv.ids[text] = srv.next_id
        srv.subjects.setdefault(parts[2], []).append(text)
        self.reply(200, {"id": srv.ids[text]})


@pytest.fixture
def registry():
    srv = Registry()
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_schema_registry_round_trip(sample, registry, tmp_path):
    url = "http://127.0.0.1:%d/" % registry.server_address[1]  # trailing / on purpose
    ids = []
    for run in range(2):
        out = tmp_path / ("alerts%d.avro" % run)
        alerts, p = scan(sample, out, "--set", "schema_id=0",
                         "--set", "schema_registry_url=" + url,
                         "--set", "output_topic=th.alerts")
        (path, ctype, raw), = registry.requests[run:]
        assert path == "/subjects/th.alerts-value/versions"
        assert ctype == "application/vnd.schemaregistry.v1+json"
        registered = json.loads(raw)["schema"]
        # what was registered is the schema file itself, and standard tools read it
        assert json.loads(registered) == json.load(open(AVSC))
        parsed = fastavro.parse_schema(json.loads(registered))
        sid = registry.ids[registered]
        ids.append(sid)
        assert ("id %d" % sid).encode() in p.stderr
        msgs = messages(out)
        assert len(msgs) == len(alerts) > 0
        for m, a in zip(msgs, alerts):
            got_id, rec = unframe(m, parsed)
            assert got_id == sid
            assert rec["alert_id"] == a["alert_id"]
    # registering again at the next start-up gives the same id
    assert ids[0] == ids[1] == 42


def test_registry_errors_stop_the_scan(sample, registry, tmp_path):
    port = registry.server_address[1]
    cmd = [BIN, "scan", "--no-progress", "--asn-db", ASN, "--aws-ranges", RANGES,
           "--avro-out", str(tmp_path / "x.avro"), "--set", "schema_id=0", str(sample)]
    # a 404 (wrong base path), with the registry's message in the error
    p = subprocess.run(cmd + ["--set", "schema_registry_url=http://127.0.0.1:%d/nope" % port],
                       capture_output=True)
    assert p.returncode == 4, p.stderr.decode()
    assert b"HTTP 404" in p.stderr
    # nobody listening
    srv_closed = http.server.HTTPServer(("127.0.0.1", 0), RegistryHandler)
    dead = srv_closed.server_address[1]
    srv_closed.server_close()
    p = subprocess.run(cmd + ["--set", "schema_registry_url=http://127.0.0.1:%d" % dead],
                       capture_output=True)
    assert p.returncode == 4, p.stderr.decode()
    assert b"schema registry" in p.stderr
    assert not p.stdout  # nothing scanned


@pytest.mark.parametrize("reply,want", [
    # only the top-level member counts, whatever comes before it
    ('{"nested": {"id": 9}, "msg": "\\"id\\": 7", "ids": [{"id": 8}], "id" : 43}', 43),
    ('{"id":0}', 0),
    ('{"id": 4.5}', None),
    ('{"id": 1e3}', None),
    ('{"id": 2147483648}', None),
    ('{"id": "43"}', None),
    ('{"version": 1}', None),
    ('', None),
])
def test_registry_reply_id_parsing(sample, registry, tmp_path, reply, want):
    registry.canned = reply
    out = tmp_path / "x.avro"
    cmd = [BIN, "scan", "--no-progress", "--asn-db", ASN, "--aws-ranges", RANGES,
           "--avro-out", str(out), "--set", "schema_id=0",
           "--set", "schema_registry_url=http://127.0.0.1:%d" % registry.server_address[1],
           str(sample)]
    p = subprocess.run(cmd, capture_output=True)
    if want is None:
        assert p.returncode == 4, p.stderr.decode()
        assert b'no "id" in the reply' in p.stderr
    else:
        assert p.returncode == 1, p.stderr.decode()
        assert {m[:5] for m in messages(out)} == {b"\x00" + struct.pack(">i", want)}

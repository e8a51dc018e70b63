"""Schema evolution of the alert (schemas/README.md, docs/operations.md "Schema
registry"): a new OPTIONAL field (a union with null first, default null) added to
a copy of alert.avsc is a compatible version, and readers on either side of the
change decode the other side's alerts.

The registry is a stand-in (Apicurio Registry 3.x could not be assembled from
Maven Central here: see docs/operations.md) that does what Confluent's does for
POST /subjects/{subject}/versions under the default BACKWARD compatibility: a
new version must be able to read data written with the latest one, else 409.
The check follows the Avro specification's schema resolution rules
(`resolves(reader, writer)` below), and the negative cases show it refuses what
a registry refuses. The data side uses fastavro's own schema resolution on
real alerts written by `trailhound scan --avro-out`.
"""
import copy
import http.server
import io
import json
import os
import struct
import subprocess
import threading

import fastavro
import pytest

BIN = os.environ.get("TH_BIN", "build/trailhound")
SRC = os.environ.get("TH_SRC", os.path.join(os.path.dirname(__file__), ".."))
SHARED = os.environ.get("TH_SHARED", os.path.join(SRC, "../shared/data"))
AVSC = os.path.join(SRC, "schemas/alert.avsc")
GEN = os.path.join(SRC, "tools/gen_sample.py")

NEW_FIELD = {"name": "triage_hint", "type": ["null", "string"], "default": None,
             "doc": "an optional field added in a later version"}


# ---------------------------------------------------------------------------
# Avro schema resolution (specification, "Schema Resolution"): can a reader
# with schema R read data written with schema W?
# ---------------------------------------------------------------------------

PROMOTIONS = {("int", "long"), ("int", "float"), ("int", "double"), ("long", "float"),
              ("long", "double"), ("float", "double"), ("string", "bytes"),
              ("bytes", "string")}
PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def _named(schema, ns=None, table=None):
    """Full name -> definition of every named type in the schema."""
    table = {} if table is None else table
    if isinstance(schema, list):
        for b in schema:
            _named(b, ns, table)
    elif isinstance(schema, dict):
        t = schema["type"]
        if t in ("record", "enum", "fixed"):
            name = schema["name"]
            ns = schema.get("namespace", ns)
            full = name if "." in name or not ns else f"{ns}.{name}"
            table[full] = schema
            table[name] = schema
            for f in schema.get("fields", []):
                _named(f["type"], ns, table)
        elif t == "array":
            _named(schema["items"], ns, table)
        elif t == "map":
            _named(schema["values"], ns, table)
    return table


def resolves(reader, writer, rt=None, wt=None):
    rt = _named(reader) if rt is None else rt
    wt = _named(writer) if wt is None else wt
    r = rt.get(reader, reader) if isinstance(reader, str) else reader
    w = wt.get(writer, writer) if isinstance(writer, str) else writer
    if isinstance(w, list):      # every branch the writer may pick must be readable
        return all(resolves(r, b, rt, wt) for b in w)
    if isinstance(r, list):      # the first reader branch that matches is used
        return any(resolves(b, w, rt, wt) for b in r)
    rtype = r if isinstance(r, str) else r["type"]
    wtype = w if isinstance(w, str) else w["type"]
    if rtype in PRIMITIVES or wtype in PRIMITIVES:
        if not isinstance(r, str) and rtype not in PRIMITIVES:
            return False
        return rtype == wtype or (wtype, rtype) in PROMOTIONS
    if rtype != wtype:
        return False
    if rtype == "array":
        return resolves(r["items"], w["items"], rt, wt)
    if rtype == "map":
        return resolves(r["values"], w["values"], rt, wt)
    if r["name"].split(".")[-1] != w["name"].split(".")[-1] and \
            w["name"] not in r.get("aliases", []):
        return False
    if rtype == "fixed":
        return r["size"] == w["size"]
    if rtype == "enum":
        return set(w["symbols"]) <= set(r["symbols"]) or "default" in r
    wf = {f["name"]: f for f in w["fields"]}
    for f in r["fields"]:
        src = wf.get(f["name"]) or next((wf[a] for a in f.get("aliases", []) if a in wf), None)
        if src is None:
            if "default" not in f:
                return False      # the reader needs a value the writer never wrote
        elif not resolves(f["type"], src["type"], rt, wt):
            return False
    return True


# ---------------------------------------------------------------------------
# the registry stand-in, with Confluent's BACKWARD check
# ---------------------------------------------------------------------------

class Registry(http.server.ThreadingHTTPServer):
    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.ids = {}        # canonical schema -> id
        self.subjects = {}   # subject -> [schema] (versions, oldest first)
        self.next_id = 0

    def url(self):
        return "http://127.0.0.1:%d" % self.server_address[1]


class Handler(http.server.BaseHTTPRequestHandler):
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
        parts = self.path.split("/")
        if len(parts) != 4 or parts[1] != "subjects" or parts[3] != "versions":
            return self.reply(404, {"error_code": 404, "message": "HTTP 404 Not Found"})
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        schema = json.loads(json.loads(raw)["schema"])
        fastavro.parse_schema(schema)
        key = json.dumps(schema, sort_keys=True)
        versions = srv.subjects.setdefault(parts[2], [])
        if versions and json.dumps(versions[-1], sort_keys=True) != key and \
                not resolves(schema, versions[-1]):
            return self.reply(409, {"error_code": 409, "message":
                                    "Schema being registered is incompatible with an earlier "
                                    "schema for subject \"%s\"" % parts[2]})
        if key not in srv.ids:
            srv.next_id += 1
            srv.ids[key] = srv.next_id
        if not versions or json.dumps(versions[-1], sort_keys=True) != key:
            versions.append(schema)
        self.reply(200, {"id": srv.ids[key]})


@pytest.fixture
def registry():
    srv = Registry()
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def register(registry, subject, schema):
    """What `trailhound` sends (POST /subjects/{subject}/versions), from Python:
    the next release's registration of its alert.avsc."""
    import urllib.error
    import urllib.request
    req = urllib.request.Request(
        f"{registry.url()}/subjects/{subject}/versions",
        data=json.dumps({"schema": json.dumps(schema)}).encode(),
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


# ---------------------------------------------------------------------------
# schemas and alerts
# ---------------------------------------------------------------------------

def v1():
    return json.load(open(AVSC))


def v2():
    s = v1()
    s["fields"].append(copy.deepcopy(NEW_FIELD))
    return s


@pytest.fixture(scope="module")
def sample_events(tmp_path_factory):
    events = tmp_path_factory.mktemp("evo-events") / "events.jsonl"
    subprocess.run(["python3", GEN, "--seed", "2", "--target-events", "6000", "--out",
                    str(events), "-q"], check=True)
    return events


def scan_avro(events, out, *settings):
    """`trailhound scan --avro-out OUT` with reference data and --set SETTINGS."""
    args = [BIN, "scan", "--no-progress",
            "--asn-db", os.path.join(SHARED, "asn/asn.mmdb"),
            "--aws-ranges", os.path.join(SHARED, "aws-ip-ranges/ip-ranges.json")]
    for kv in settings:
        args += ["--set", kv]
    return subprocess.run(args + ["--avro-out", str(out), str(events)], capture_output=True,
                          text=True)


@pytest.fixture(scope="module")
def alerts_v1(tmp_path_factory, sample_events):
    """Real alerts: `trailhound scan --avro-out` on a generated sample, the
    schema registered with the stand-in by the product itself."""
    d = tmp_path_factory.mktemp("evo")
    events = sample_events
    srv = Registry()
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        out = d / "alerts.avro"
        p = scan_avro(events, out, "schema_id=0", "schema_registry_url=" + srv.url(),
                      "output_topic=th.alerts")
        assert p.returncode == 1, p.stderr   # 1: alerts raised
        assert srv.subjects["th.alerts-value"] == [v1()]
    finally:
        srv.shutdown()
        srv.server_close()
    msgs = framed(out.read_bytes())
    assert msgs and all(sid == 1 for sid, _ in msgs)
    return [body for _, body in msgs]


def framed(blob):
    """Split scan's --avro-out file into (schema id, Avro body) messages: each
    is written as a 4-byte big-endian length then the Confluent-framed bytes."""
    out, i = [], 0
    while i < len(blob):
        (n,) = struct.unpack(">I", blob[i:i + 4])
        m = blob[i + 4:i + 4 + n]
        assert m[0] == 0
        out.append((struct.unpack(">I", m[1:5])[0], m[5:]))
        i += 4 + n
    return out


def decode(body, writer, reader=None):
    buf = io.BytesIO(body)
    rec = fastavro.schemaless_reader(buf, fastavro.parse_schema(writer),
                                     fastavro.parse_schema(reader) if reader else None)
    assert buf.tell() == len(body)
    return rec


def encode(rec, schema):
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), rec)
    return buf.getvalue()


# ---------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------

def test_optional_field_registers_as_a_compatible_version(registry):
    subject = "trailhound.alerts-value"
    assert register(registry, subject, v1()) == (200, {"id": 1})
    assert register(registry, subject, v2()) == (200, {"id": 2})
    assert registry.subjects[subject] == [v1(), v2()]
    # the same schema again (every worker registers at start): the same id
    assert register(registry, subject, v2()) == (200, {"id": 2})
    # and both directions resolve: a rolling upgrade may run both versions
    assert resolves(v2(), v1()) and resolves(v1(), v2())


@pytest.mark.parametrize("change", ["required_field", "type_change", "enum_symbol_removed"])
def test_incompatible_changes_are_refused(registry, change):
    """Negative controls: what a BACKWARD registry refuses, the check refuses."""
    bad = v1()
    if change == "required_field":
        bad["fields"].append({"name": "triage_hint", "type": "string"})
    elif change == "type_change":
        next(f for f in bad["fields"] if f["name"] == "asn")["type"] = "string"
    else:
        sev = next(f for f in bad["fields"] if f["name"] == "severity")["type"]
        sev["symbols"] = sev["symbols"][1:]
    subject = "trailhound.alerts-value"
    assert register(registry, subject, v1())[0] == 200
    code, body = register(registry, subject, bad)
    assert code == 409 and body["error_code"] == 409
    assert registry.subjects[subject] == [v1()]


def test_registry_refusal_stops_trailhound_with_the_reason(registry, tmp_path):
    """The product's own registration against a registry that refuses the
    schema: a clear error and exit 4, no alert written."""
    subject = "th.alerts-value"
    # the subject's latest version writes asn as a string: v1 (asn long) cannot read it
    other = v1()
    next(f for f in other["fields"] if f["name"] == "asn")["type"] = "string"
    assert register(registry, subject, other)[0] == 200
    events = tmp_path / "events.jsonl"
    subprocess.run(["python3", GEN, "--seed", "2", "--target-events", "2000", "--out",
                    str(events), "-q"], check=True)
    out = tmp_path / "alerts.avro"
    p = subprocess.run([BIN, "scan", "--no-progress",
                        "--asn-db", os.path.join(SHARED, "asn/asn.mmdb"),
                        "--set", "schema_id=0", "--set", "schema_registry_url=" + registry.url(),
                        "--set", "output_topic=th.alerts", "--avro-out", str(out), str(events)],
                       capture_output=True, text=True)
    assert p.returncode == 4, p.stderr
    assert "HTTP 409" in p.stderr and "incompatible" in p.stderr, p.stderr
    assert not out.exists() or out.stat().st_size == 0


def test_old_reader_decodes_new_alerts(alerts_v1):
    """Alerts written with v2 (the new field set on some, null on others) read
    with the old schema: every old field as written, the new one skipped."""
    for i, body in enumerate(alerts_v1):
        old = decode(body, v1())
        new_rec = dict(old, triage_hint=("check the role's trust policy" if i % 2 else None))
        got = decode(encode(new_rec, v2()), writer=v2(), reader=v1())
        assert got == old


def test_new_reader_decodes_old_alerts(alerts_v1):
    """Alerts already in the topic (v1) read with v2: the new field takes its default."""
    for body in alerts_v1:
        old = decode(body, v1())
        got = decode(body, writer=v1(), reader=v2())
        assert got == dict(old, triage_hint=None)


def newer_schema(required=False):
    """A later alert.avsc than this build's: a field added to Alert, one to its
    history record and one to its input record (optional by the rules above,
    or one of them required for the negative twin)."""
    s = v2()
    rec = lambda name: next(f for f in s["fields"] if f["name"] == name)["type"]
    rec("history").setdefault("fields", []).append(
        {"name": "risk", "type": ["null", "long"], "default": None})
    rec("input")["fields"].append(
        {"name": "cluster", "type": "string"} if required else
        {"name": "cluster", "type": ["null", "string"], "default": None})
    return s


def test_alert_schema_pointing_at_a_newer_version_writes_its_added_fields_as_null(
        alerts_v1, sample_events, tmp_path):
    """`alert_schema` set to a newer compatible schema (an operator registers
    v2 before rolling out the build that fills it): this build writes every
    alert, its own fields as before and the fields it does not know as null,
    their default. Read back by fastavro with that schema."""
    newer = newer_schema()
    path = tmp_path / "alert-v3.avsc"
    path.write_text(json.dumps(newer))
    out = tmp_path / "alerts.avro"
    p = scan_avro(sample_events, out, "alert_schema=" + str(path))
    assert p.returncode == 1, p.stderr   # 1: alerts raised, none failed
    got = {}
    for _, body in framed(out.read_bytes()):
        rec = decode(body, newer)
        assert rec.pop("triage_hint") is None
        assert rec["history"].pop("risk") is None
        assert rec["input"].pop("cluster") is None
        got[rec["alert_id"]] = rec
    want = {r["alert_id"]: r for r in (decode(b, v1()) for b in alerts_v1)}
    assert want and got == want


def test_alert_schema_with_a_required_field_this_build_cannot_fill_is_refused_at_start(
        sample_events, tmp_path):
    """The twin: a newer schema whose added field is required (input.cluster, a
    plain string) cannot be written by this build: refused before any event is
    read (exit 4), naming the field, instead of failing every alert."""
    path = tmp_path / "alert-bad.avsc"
    path.write_text(json.dumps(newer_schema(required=True)))
    out = tmp_path / "alerts.avro"
    p = scan_avro(sample_events, out, "alert_schema=" + str(path))
    assert p.returncode == 4, p.stderr
    assert "input.cluster" in p.stderr and "optional" in p.stderr, p.stderr
    assert not out.exists() or out.stat().st_size == 0


def widened_schema(to="long"):
    """A later alert.avsc whose int fields (variation, input.partition) became
    `to`: "long" is Avro's promotion, which the evolution rules allow; "string"
    is a type change they forbid."""
    s = v1()
    next(f for f in s["fields"] if f["name"] == "variation")["type"] = to
    inp = next(f for f in s["fields"] if f["name"] == "input")["type"]
    next(f for f in inp["fields"] if f["name"] == "partition")["type"] = to
    return s


def test_alert_schema_that_widens_an_int_to_long_is_written(alerts_v1, sample_events,
                                                            tmp_path):
    """`alert_schema` set to a newer schema that promotes variation and
    input.partition from int to long (allowed: docs/operations.md): every
    alert is written, read back with that schema by fastavro: the same
    alerts as this build's own schema gives. (The build refused it at start:
    "field variation has the wrong type".) Such a schema is BACKWARD
    compatible only: its readers read old alerts, old readers cannot read
    its longs."""
    wide = widened_schema()
    assert resolves(wide, v1()) and not resolves(v1(), wide)
    path = tmp_path / "alert-wide.avsc"
    path.write_text(json.dumps(wide))
    out = tmp_path / "alerts.avro"
    p = scan_avro(sample_events, out, "alert_schema=" + str(path))
    assert p.returncode == 1, p.stderr   # 1: alerts raised, none failed
    got = {r["alert_id"]: r for r in (decode(b, wide) for _, b in framed(out.read_bytes()))}
    want = {r["alert_id"]: r for r in (decode(b, v1()) for b in alerts_v1)}
    assert want and got == want
    # and a reader of the newer schema reads the alerts of this build's own
    # schema (int -> long): a rolling upgrade's mix
    assert [decode(b, v1(), wide) for b in alerts_v1[:3]] == [
        decode(b, v1()) for b in alerts_v1[:3]]


def test_alert_schema_that_changes_an_int_to_string_is_refused_at_start(sample_events,
                                                                        tmp_path):
    """The twin: a type change that is no promotion (int -> string) is refused
    before any event is read (exit 4), naming the field."""
    path = tmp_path / "alert-bad.avsc"
    path.write_text(json.dumps(widened_schema("string")))
    out = tmp_path / "alerts.avro"
    p = scan_avro(sample_events, out, "alert_schema=" + str(path))
    assert p.returncode == 4, p.stderr
    assert "field variation has the wrong type" in p.stderr, p.stderr
    assert not out.exists() or out.stat().st_size == 0

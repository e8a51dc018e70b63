"""The alert's fields as a downstream router or analyst reads them: each one is
the input event's value whole, or, where a field has a size limit, visibly cut
("…" where text was left out), and the same in the JSON line and the Avro
record (spec §4: the input's topic/partition/offset for traceability; spec v2
§5: cuts on a character boundary).

The story is tests/cases/variations/v2_cli.jsonl (a function's token used
with aws-cli from DigitalOcean on day 20: one variation-2 alert), with one
field of its remote event changed per test.

Run under CTest (tests/pytest.cmake), which sets TH_BIN, TH_SHARED and TH_SRC.
"""
import io
import json
import os
import struct
import subprocess

import fastavro  # not importorskip: a skipped proof proves nothing

BIN = os.environ.get("TH_BIN", "build/trailhound")
SHARED = os.environ.get("TH_SHARED", os.path.join(os.path.dirname(__file__), "../../shared/data"))
SRC = os.environ.get("TH_SRC", os.path.join(os.path.dirname(__file__), ".."))
ASN = os.path.join(SHARED, "asn/asn.mmdb")
RANGES = os.path.join(SHARED, "aws-ip-ranges/ip-ranges.json")
AVSC = os.path.join(SRC, "schemas/alert.avsc")
CASE = os.path.join(SRC, "tests/cases/variations/v2_cli.jsonl")
CUT = "\u2026"  # what stands for the text left out of a cut field


def story(**remote):
    """The case's events, the remote use (the last event) changed by @p remote."""
    events = [json.loads(l) for l in open(CASE)]
    events[-1].update(remote)
    return "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events).encode()


def scan_one(path, tmp_path):
    """Scan @p path; its one alert as JSON and as the decoded Avro record."""
    avro_out = tmp_path / "alerts.avro"
    p = subprocess.run([BIN, "scan", "--no-progress", "--asn-db", ASN, "--aws-ranges", RANGES,
                        "--avro-out", str(avro_out), str(path)], capture_output=True)
    assert p.returncode == 1, p.stderr.decode()  # 1 = alerts raised
    (line,) = p.stdout.decode("utf-8", errors="strict").splitlines()
    alert = json.loads(line)
    data = avro_out.read_bytes()
    (n,) = struct.unpack(">I", data[:4])
    assert len(data) == 4 + n
    with open(AVSC) as f:
        schema = fastavro.parse_schema(json.load(f))
    body = io.BytesIO(data[4 + 5:])
    rec = fastavro.schemaless_reader(body, schema)  # strict UTF-8
    assert body.read() == b""
    assert alert["variation"] == rec["variation"] == 2
    return alert, rec


def nested_path(root, length, name):
    """A file @p name under directories below @p root, @p length bytes in all."""
    rest = length - len(str(root)) - len(name) - 2  # the two "/" around it
    assert rest > 0
    dirs = "".join("/" if i % 61 == 60 else "x" for i in range(rest))
    if dirs.endswith("/"):
        dirs = dirs[:-1] + "x"
    d = os.path.join(str(root), dirs)
    path = os.path.join(d, name)
    assert len(path) == length, (len(path), length)
    os.makedirs(d, exist_ok=True)
    return path


# A delivered CloudTrail file: the name is what tells it from every other one.
NAME = "111122223333_CloudTrail_ap-southeast-2_20260322T1030Z_AbCdEfGh12345678.json"


def test_input_topic_names_an_archive_file_of_a_realistic_path_whole(tmp_path):
    # an organisation trail's archive, synced below a working directory: a
    # path of 200 bytes (a Kafka topic name may have 249)
    path = nested_path(tmp_path, 200, NAME)
    open(path, "wb").write(story())
    alert, rec = scan_one(path, tmp_path)
    assert alert["input"]["topic"] == rec["input"]["topic"] == path
    assert alert["input"]["partition"] == -1
    assert alert["input"]["offset"] == rec["input"]["offset"] > 0


def test_input_topic_of_a_very_long_path_keeps_the_file_name_and_says_it_was_cut(tmp_path):
    path = nested_path(tmp_path, 600, NAME)
    open(path, "wb").write(story())
    alert, rec = scan_one(path, tmp_path)
    topic = alert["input"]["topic"]
    assert rec["input"]["topic"] == topic
    assert topic.startswith(CUT) and path.endswith(topic[1:]), topic
    assert topic.endswith("/" + NAME)
    assert len(topic.encode()) <= 255


def assert_cut(value, original, limit):
    """@p value is @p original's head, cut on a character, then the mark."""
    assert value.endswith(CUT) and original.startswith(value[:-1]), value
    assert len(value.encode()) <= limit
    assert len(original.encode()) > limit


# An SDK's user agent with a long application suffix (boto3's user_agent_extra,
# an APN chain), non-ASCII in it: 1135 bytes.
LONG_UA = ("aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0 exe/x86_64.ubuntu.22 prompt/off "
           "command/sts.get-caller-identity "
           + " ".join("md/tag%d#v\u00e4lue-\u00fc\u20ac\U0001F600" % i for i in range(40)))


def test_a_long_user_agent_is_cut_visibly_in_json_and_avro(tmp_path):
    events = tmp_path / "events.jsonl"
    events.write_bytes(story(userAgent=LONG_UA))
    alert, rec = scan_one(events, tmp_path)
    assert rec["user_agent"] == alert["user_agent"]
    assert_cut(alert["user_agent"], LONG_UA, 511)


def test_a_user_agent_that_fits_is_whole(tmp_path):
    # the positive twin: 511 bytes, the most the alert holds, end with "é"
    ua = LONG_UA.encode()[:509].decode("utf-8", errors="ignore")
    ua = ua + "x" * (509 - len(ua.encode())) + "\u00e9"
    assert len(ua.encode()) == 511
    events = tmp_path / "events.jsonl"
    events.write_bytes(story(userAgent=ua))
    alert, rec = scan_one(events, tmp_path)
    assert alert["user_agent"] == rec["user_agent"] == ua


def test_an_unrecognised_source_is_cut_visibly_in_the_alert_and_its_evidence(tmp_path):
    # not a service name (spec v2): judged remote, and the analyst must see
    # that the name goes on past "attacker-controlled-domain"
    src = "lambda.amazonaws.com.attacker-controlled-domain.example.org"
    events = tmp_path / "events.jsonl"
    events.write_bytes(story(sourceIPAddress=src, userAgent="python-requests/2.31"))
    p = subprocess.run([BIN, "scan", "--no-progress", "--asn-db", ASN, "--aws-ranges", RANGES,
                        str(events)], capture_output=True)
    assert p.returncode == 1, p.stderr.decode()
    (alert,) = [json.loads(l) for l in p.stdout.decode().splitlines()]
    assert alert["network"] == "unrecognised" and alert["variation"] == 4
    assert_cut(alert["source_ip"], src, 47)
    assert any(alert["source_ip"] in e for e in alert["evidence"]), alert["evidence"]


def test_an_event_id_past_the_alerts_room_is_cut_visibly(tmp_path):
    # CloudTrail's eventID is a 36-character GUID; a forged record's longer
    # one must not pass for another event's ID
    eid = "a258a4a9-f8d1-4cda-86a2-278fa9365ef0" * 3
    events = tmp_path / "events.jsonl"
    events.write_bytes(story(eventID=eid))
    alert, rec = scan_one(events, tmp_path)
    assert rec["event_id"] == alert["event_id"]
    assert_cut(alert["event_id"], eid, 71)


def test_a_long_as_organisation_name_is_cut_visibly(tmp_path):
    # 102.135.184.10: AS328903, whose name in the shipped ASN data has 169
    # bytes (checked with mmdblookup), "é" among them
    events = tmp_path / "events.jsonl"
    events.write_bytes(story(sourceIPAddress="102.135.184.10"))
    alert, rec = scan_one(events, tmp_path)
    assert alert["asn"] == rec["asn"] == 328903
    org = ("R\u00e9seau Ivoirien de T\u00e9l\u00e9communication pour l'Enseignement et la "
           "Recherche (RITER)")
    assert rec["as_org"] == alert["as_org"]
    assert_cut(alert["as_org"], org + " - " + org, 95)


def killed_after_spooling(state, *extra):
    """A `scan --state` run that spooled its alert (committed it, with its
    events read from a pipe that stays open), then was killed with -9."""
    import signal
    import time
    cmd = [BIN, "scan", "--no-progress", "--asn-db", ASN, "--aws-ranges", RANGES,
           "--state", str(state), "--jobs", "1", "--batch", "1"] + list(extra) + ["-"]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    p.stdin.write(story())
    p.stdin.flush()
    spool = state / "alerts.pending"
    for _ in range(600):  # a wait for a file, not a timing assertion
        if spool.exists() and spool.stat().st_size > 0 and p.poll() is None:
            break
        time.sleep(0.1)
    assert spool.stat().st_size > 0, "the run never spooled its alert"
    p.send_signal(signal.SIGKILL)
    p.wait()
    p.stdin.close()


def resume(state, tmp_path):
    empty = tmp_path / "nothing.jsonl"
    empty.write_bytes(b"")
    avro_out = tmp_path / "resumed.avro"
    p = subprocess.run([BIN, "scan", "--no-progress", "--asn-db", ASN, "--aws-ranges", RANGES,
                        "--state", str(state), "--jobs", "1", "--avro-out", str(avro_out),
                        str(empty)], capture_output=True)
    assert p.returncode == 1, p.stderr.decode()
    (line,) = p.stdout.decode().splitlines()  # the killed run's alert, delivered now
    return json.loads(line), avro_out.read_bytes(), p.stderr.decode()


def test_a_resumed_alert_missing_from_the_avro_output_is_reported(tmp_path):
    # the killed run had no --avro-out: its alert can reach the JSON output
    # only, and the run that delivers it says so rather than hand a router
    # an Avro file one alert short
    state = tmp_path / "state"
    killed_after_spooling(state)
    alert, avro, err = resume(state, tmp_path)
    assert alert["variation"] == 2
    assert avro == b""
    assert "1 alert(s) in the JSON output only" in err, err


def test_a_resumed_alert_with_its_avro_is_in_both_outputs(tmp_path):
    # the twin: the killed run wrote Avro too, so both outputs have the alert
    state = tmp_path / "state"
    killed_after_spooling(state, "--avro-out", str(tmp_path / "killed.avro"))
    alert, avro, err = resume(state, tmp_path)
    (n,) = struct.unpack(">I", avro[:4])
    assert len(avro) == 4 + n
    with open(AVSC) as f:
        schema = fastavro.parse_schema(json.load(f))
    rec = fastavro.schemaless_reader(io.BytesIO(avro[4 + 5:]), schema)
    assert rec["alert_id"] == alert["alert_id"]
    assert "JSON output only" not in err, err


def test_a_nul_escape_does_not_cut_the_user_agent(tmp_path):
    # "\u0000" is legal JSON; read into a C string it ended the user agent
    # there, so the alert showed "aws-cli/2.15.30 " and the Lambda claim
    # after it was never seen (variation 2 instead of 1)
    ua = "aws-cli/2.15.30 \u0000 exec-env/AWS_Lambda_python3.12"
    events = tmp_path / "events.jsonl"
    events.write_bytes(story(userAgent=ua))
    p = subprocess.run([BIN, "scan", "--no-progress", "--asn-db", ASN, "--aws-ranges", RANGES,
                        str(events)], capture_output=True)
    assert p.returncode == 1, p.stderr.decode()
    (alert,) = [json.loads(l) for l in p.stdout.decode().splitlines()]
    assert alert["user_agent"] == ua.replace("\u0000", "\ufffd")
    assert alert["variation"] == 1, alert["evidence"]


def test_a_nul_escape_never_makes_a_source_a_service_name(tmp_path):
    # spec v2: only names as AWS writes them are services; this one was read
    # as "lambda.amazonaws.com" and the call excluded, with no alert and
    # nothing counted
    events = tmp_path / "events.jsonl"
    events.write_bytes(story(sourceIPAddress="lambda.amazonaws.com\u0000159.203.45.77"))
    summary = tmp_path / "summary.json"
    p = subprocess.run([BIN, "scan", "--no-progress", "--asn-db", ASN, "--aws-ranges", RANGES,
                        "--summary-json", str(summary), str(events)], capture_output=True)
    assert p.returncode == 1, p.stderr.decode()
    (alert,) = [json.loads(l) for l in p.stdout.decode().splitlines()]
    assert alert["network"] == "unrecognised" and alert["asn"] == 0
    assert alert["source_ip"] == "lambda.amazonaws.com\ufffd159.203.45.77"
    assert json.loads(summary.read_text())["detector"]["source_unrecognised"] == 1


def test_long_api_call_names_are_cut_visibly_in_the_history(tmp_path):
    # the history's api_calls name each call "<service>:<eventName>" in 95
    # bytes, the service in at most 40: a cut name must not pass for an API
    # of that name (it was cut silently)
    name = "GetObject" + "Attributes" * 12                  # 129 bytes
    source = "a" * 50 + ".amazonaws.com"                    # a 50-byte service
    events = tmp_path / "events.jsonl"
    events.write_bytes(story(eventName=name, eventSource=source))
    alert, rec = scan_one(events, tmp_path)
    (call,) = [c for c in alert["history"]["api_calls"] if c.startswith("a")]
    svc, _, ev = call.partition(":")
    assert_cut(svc, "a" * 50, 40)
    assert_cut(call, svc + ":" + name, 95)
    assert rec["history"]["api_calls"] == alert["history"]["api_calls"]


def test_api_call_names_that_fit_are_whole(tmp_path):
    # the twin: a 40-byte service and a name filling the 95 bytes exactly
    source = "b" * 40 + ".amazonaws.com"
    name = "N" * (95 - 41)
    events = tmp_path / "events.jsonl"
    events.write_bytes(story(eventName=name, eventSource=source))
    alert, rec = scan_one(events, tmp_path)
    assert "b" * 40 + ":" + name in alert["history"]["api_calls"], alert["history"]

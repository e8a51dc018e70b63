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

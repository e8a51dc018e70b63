"""End-to-end tests of `trailhound scan` on generated and real data.

Run under CTest (tests/pytest.cmake), which sets TH_BIN (the trailhound
binary), TH_SHARED (../shared/data, used in place) and TH_SRC (the repo).
"""
import gzip
import hashlib
import json
import os
import random
import subprocess
import sys

import pytest

BIN = os.environ.get("TH_BIN", "build/trailhound")
SHARED = os.environ.get("TH_SHARED", os.path.join(os.path.dirname(__file__), "../../shared/data"))
SRC = os.environ.get("TH_SRC", os.path.join(os.path.dirname(__file__), ".."))
ASN = os.path.join(SHARED, "asn/asn.mmdb")
RANGES = os.path.join(SHARED, "aws-ip-ranges/ip-ranges.json")
GEN = os.path.join(SRC, "tools/gen_sample.py")


def scan(paths, *extra, ranges=True, stdin=None):
    cmd = [BIN, "scan", "--no-progress", "--asn-db", ASN]
    if ranges:
        cmd += ["--aws-ranges", RANGES]
    cmd += list(extra) + list(paths)
    return subprocess.run(cmd, capture_output=True, input=stdin)


def alerts_of(p):
    return [json.loads(l) for l in p.stdout.decode().splitlines() if l.strip()]


def summary_count(p, label):
    for line in p.stderr.decode().splitlines():
        if line.startswith("trailhound scan:"):
            # "trailhound scan: N records read, N parsed, N rejected"
            words = line.replace(",", "").split()
            i = words.index(label) - 1
            return int(words[i - 1] if words[i] == "records" else words[i])
    raise AssertionError("no summary line in stderr:\n" + p.stderr.decode())


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    d = tmp_path_factory.mktemp("sample")
    events, expected = d / "sample.jsonl", d / "expected.jsonl"
    subprocess.run([sys.executable, GEN, "--seed", "1", "--out", str(events),
                    "--expected", str(expected), "-q"], check=True)
    want = [json.loads(l) for l in open(expected)]
    assert want, "the generator injected no attack"
    return events, want


def test_generated_sample_yields_exactly_the_expected_alerts(sample):
    events, want = sample
    p = scan([events])
    assert p.returncode == 1, p.stderr.decode()
    got = alerts_of(p)
    assert sorted(a["alert_id"] for a in got) == sorted(w["alert_id"] for w in want)
    by_id = {a["alert_id"]: a for a in got}
    for w in want:
        a = by_id[w["alert_id"]]
        assert (a["alert_name"], a["severity"], a["variation"]) == \
            (w["alert_name"], w["severity"], w["variation"]), w["case"]
        assert a["event_id"] == w["event_id"], w["case"]
        if w["upgrade_of"]:
            assert a["upgrade_of"] == w["upgrade_of"], w["case"]
    # every field of the spec's §4 is there
    for a in got:
        for f in ("alert_id", "alert_name", "severity", "tactic", "account_id", "region",
                  "role_arn", "access_key_id", "event_id", "event_name", "event_source",
                  "event_time", "source_ip", "asn", "user_agent", "evidence", "history",
                  "investigative_actions", "input"):
            assert f in a, f
        assert a["tactic"] == "TA0006"
        assert a["evidence"], a
        assert len(a["investigative_actions"]) == 3


def test_scan_twice_gives_identical_output(sample):
    events, _ = sample
    first, second = scan([events]), scan([events])
    assert first.stdout == second.stdout
    assert first.stdout


@pytest.mark.parametrize("fmt", ["records", "array"])
def test_framings_give_the_same_alerts(sample, tmp_path, fmt):
    _, want = sample
    out = tmp_path / ("sample." + fmt + ".json.gz")
    subprocess.run([sys.executable, GEN, "--seed", "1", "--format", fmt, "--out", str(out), "-q"],
                   check=True)
    got = alerts_of(scan([out]))
    assert sorted(a["alert_id"] for a in got) == sorted(w["alert_id"] for w in want)


def test_stdin_input(sample):
    events, want = sample
    p = scan(["-"], stdin=open(events, "rb").read())
    assert sorted(a["alert_id"] for a in alerts_of(p)) == sorted(w["alert_id"] for w in want)


def effective_ids(alerts):
    """Alert IDs minus those an upgrade superseded: what an analyst ends up with."""
    superseded = {a["upgrade_of"] for a in alerts if a["upgrade_of"]}
    return sorted(a["alert_id"] for a in alerts if a["alert_id"] not in superseded)


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_shuffling_within_15_minute_windows_keeps_the_alerts(sample, tmp_path, seed):
    """CloudTrail delivers up to ~15 minutes late: order within such windows must not
    change which alerts an analyst ends up with (upgrades may replace weaker ones)."""
    events, _ = sample
    lines = open(events).read().splitlines()
    reference = effective_ids(alerts_of(scan([events])))
    rnd = random.Random(seed)
    window = 15 * 60
    buckets = {}
    for line in lines:
        t = json.loads(line)["eventTime"]
        key = (t[:10], (int(t[11:13]) * 3600 + int(t[14:16]) * 60 + int(t[17:19])) // window)
        buckets.setdefault(key, []).append(line)
    shuffled = []
    for key in sorted(buckets):
        b = buckets[key]
        rnd.shuffle(b)
        shuffled += b
    assert shuffled != lines
    path = tmp_path / "shuffled.jsonl"
    path.write_text("\n".join(shuffled) + "\n")
    assert effective_ids(alerts_of(scan([path]))) == reference


def shared_files():
    out = []
    for sub in ("stratus-detonation-logs", "lambda-shape-examples"):
        d = os.path.join(SHARED, sub)
        out += sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".json"))
    return out


def test_real_data_parses_fully_and_raises_nothing():
    files = shared_files()
    assert len(files) > 30
    p = scan(files)
    assert p.returncode == 0, p.stderr.decode()
    assert alerts_of(p) == []
    assert summary_count(p, "rejected") == 0
    assert summary_count(p, "parsed") == summary_count(p, "read") > 300


def test_real_data_without_ip_ranges_raises_nothing():
    p = scan(shared_files(), ranges=False)
    assert p.returncode == 0, p.stderr.decode()
    assert alerts_of(p) == []


def test_corrupted_copy_reports_each_bad_record_and_keeps_the_rest(tmp_path):
    src = os.path.join(SHARED, "stratus-detonation-logs")
    events = []
    for f in sorted(os.listdir(src)):
        if f.endswith(".json"):
            events += json.load(open(os.path.join(src, f)))
    lines = [json.dumps(e) for e in events]
    n = len(lines)
    bad = {}
    lines[3] = lines[3][: len(lines[3]) // 2]; bad[3] = "malformed_json"
    lines[10] = lines[10].replace('"eventTime": "', '"eventTime": "x'); bad[10] = "bad_timestamp"
    lines[20] = lines[20].replace('"eventName": "', '"eventName": 5, "x": "'); bad[20] = "wrong_type"
    raw = "\n".join(lines).encode()
    # invalid UTF-8 inside record 30
    r30 = lines[30].encode().replace(b'"eventSource": "', b'"eventSource": "\xff', 1)
    bad[30] = "invalid_utf8"
    raw = b"\n".join(l.encode() if i != 30 else r30 for i, l in enumerate(lines)) + b"\n"
    path = tmp_path / "corrupt.jsonl.gz"
    with gzip.open(path, "wb") as f:
        f.write(raw)
    dead = tmp_path / "dead.jsonl"
    p = scan([path], "--dead-letter", str(dead))
    assert p.returncode == 0, p.stderr.decode()
    assert summary_count(p, "parsed") == n - len(bad)
    assert summary_count(p, "rejected") == len(bad)
    err = p.stderr.decode(errors="replace")
    for reason in bad.values():
        assert "rejected (%s)" % reason in err
    letters = [json.loads(l) for l in open(dead)]
    assert sorted(l["reason"] for l in letters) == sorted(bad.values())
    import base64
    raws = [base64.b64decode(l["raw_base64"]) for l in letters]
    assert r30 in raws and lines[3].encode() in raws


def test_missing_input_is_an_input_error(tmp_path):
    p = scan([tmp_path / "nope.json"])
    assert p.returncode == 3


def test_help_and_version():
    assert subprocess.run([BIN, "--version"], capture_output=True).stdout.startswith(b"trailhound ")
    h = subprocess.run([BIN, "scan", "--help"], capture_output=True)
    assert h.returncode == 0 and b"Exit codes" in h.stdout
    assert subprocess.run([BIN, "nope"], capture_output=True).returncode == 2
    assert subprocess.run([BIN, "scan", "--set", "nope=1"], capture_output=True).returncode == 4


def test_state_dir_is_kept_and_reused(tmp_path, sample):
    events, want = sample
    state = tmp_path / "state"
    p = scan([events], "--state", str(state))
    assert p.returncode == 1
    assert (state / "data.mdb").exists()
    # Held uses were all decided at the end of the first scan: reopening the
    # kept state with no new input raises nothing.
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    again = scan([empty], "--state", str(state))
    assert again.returncode == 0, again.stderr.decode()
    assert alerts_of(again) == []


def test_inspect_answers_the_investigative_questions(tmp_path, sample):
    events, want = sample
    state = tmp_path / "state"
    scan([events], "--state", str(state))
    # the most recent variation-1 alert: alerted keys are kept for the training window
    alert = max((w for w in want if w["variation"] == 1), key=lambda w: alert_time(w, events))
    key = alert["access_key_id"]

    def inspect(*args):
        p = subprocess.run([BIN, "inspect", "--state", str(state)] + list(args), capture_output=True)
        return p.returncode, p.stdout.decode()

    # what API calls were executed by the access key, from where
    rc, out = inspect("--json", "key", key)
    assert rc == 0, out
    [k] = json.loads(out)
    assert k["access_key_id"] == key and k["role_arn"] == alert["role_arn"]
    assert k["function_name"] == alert["function_or_session"]
    assert k["inside_count"] > 0 and k["outside_count"] > 0
    assert k["api_calls"] and all(c["count"] > 0 for c in k["api_calls"])
    assert k["source_ips"]
    # is the role attached to a Lambda function
    rc, out = inspect("--json", "role", alert["role_arn"])
    [r] = json.loads(out)
    assert r["lambda_execution_role"] is True
    assert alert["function_or_session"] in [f["name"] for f in r["functions"]]
    assert all(f["regions"] for f in r["functions"] if f["name"] == alert["function_or_session"])
    # was the role assumed by a different identity: a v5/v6 case's role lists its assumer
    other = next(w for w in want if w["variation"] in (5, 6))
    rc, out = inspect("--json", "role", other["role_arn"])
    [r] = json.loads(out)
    assert r["assumed_by"], r
    # the account: age and baseline networks
    rc, out = inspect("--json", "account", alert["account_id"])
    [a] = json.loads(out)
    assert a["first_seen"] < alert_time(alert, events)
    assert a["baseline_asns"]
    # human-readable form, and "nothing found"
    rc, out = inspect("key", key)
    assert rc == 0 and "API calls executed by the key" in out and key in out
    rc, out = inspect("key", "ASIANOSUCHKEY0000000")
    assert rc == 1


def alert_time(alert, events):
    for line in open(events):
        e = json.loads(line)
        if e.get("eventID") == alert["event_id"]:
            return e["eventTime"]
    raise AssertionError("event not found")


def test_example_config_is_generated_from_the_table_and_loads():
    """deploy/trailhound.conf is `trailhound run --example-config`: one table feeds both."""
    gen = subprocess.run([BIN, "run", "--example-config"], capture_output=True, check=True).stdout
    committed = open(os.path.join(SRC, "deploy/trailhound.conf"), "rb").read()
    assert gen == committed, "regenerate: build/trailhound run --example-config > deploy/trailhound.conf"
    # and it is a valid config for scan, which shares the table
    p = subprocess.run([BIN, "scan", "-c", os.path.join(SRC, "deploy/trailhound.conf"), "--help-config"],
                       capture_output=True)
    assert p.returncode == 0, p.stderr.decode()


def test_state_growth_is_bounded_by_pruning(tmp_path, sample):
    """Expired tokens and baseline entries past the training window are pruned as
    event time advances: the state holds the recent past, not the whole input."""
    from datetime import datetime, timedelta
    events, _ = sample
    state = tmp_path / "state"
    scan([events], "--state", str(state))
    ts = lambda s: datetime.strptime(s[:19], "%Y-%m-%dT%H:%M:%S")
    end = max(ts(json.loads(l)["eventTime"]) for l in open(events))
    keys_in_input = {json.loads(l)["userIdentity"].get("accessKeyId") for l in open(events)}
    out = subprocess.run([BIN, "inspect", "--state", str(state), "--json", "keys"],
                         capture_output=True, check=True).stdout
    keys = json.loads(out)
    assert keys and len(keys) < len(keys_in_input) / 5, (len(keys), len(keys_in_input))
    for k in keys:
        last = max(ts(k["last_seen"]), ts(k["expires_at"]) if k["expires_at"] != "-" else end)
        keep = timedelta(days=30) if k["alerts"] else timedelta(days=1)
        assert end - last <= keep + timedelta(days=1), k  # pruned daily in event time
    out = subprocess.run([BIN, "inspect", "--state", str(state), "--json", "accounts"],
                         capture_output=True, check=True).stdout
    for a in json.loads(out):
        for b in a["baseline_asns"]:
            assert end - ts(b["last_seen"]) <= timedelta(days=31), b


def test_no_reference_data_is_refused_not_flooded(tmp_path):
    """Without an ASN database or ip-ranges.json no address is known to be AWS's,
    so every Lambda call would look remote: scan refuses (exit 4) instead."""
    env = dict(os.environ, HOME=str(tmp_path), TH_CACHE_DIR=str(tmp_path))
    env.pop("TH_ASN_DB", None)
    env.pop("TH_AWS_RANGES", None)
    p = subprocess.run([BIN, "scan", "--no-progress", shared_files()[0]], capture_output=True, env=env)
    assert p.returncode == 4
    assert b"no reference data" in p.stderr


def test_records_file_with_one_record_per_line_in_column_0(tmp_path):
    """{"Records":[ followed by one record per line in column 0 is one container,
    not a cut record: every record parses, nothing is rejected."""
    ev = lambda n: json.dumps({"eventTime": "2026-09-01T00:00:00Z", "eventSource": "s3.amazonaws.com",
                               "eventName": "GetObject", "eventID": "e%d" % n,
                               "userIdentity": {"type": "IAMUser"}})
    path = tmp_path / "records.json"
    path.write_text('{"Records":[\n' + ",\n".join(ev(i) for i in range(5)) + "\n]}\n" + ev(9) + "\n")
    p = scan([path])
    assert summary_count(p, "parsed") == 6 and summary_count(p, "rejected") == 0, p.stderr.decode()


def summary_json(p, path):
    assert path.exists(), p.stderr.decode()
    return json.loads(path.read_text())


DETECTOR_KEYS = ["events", "candidates", "inside_uses", "remote_uses", "excluded",
                 "source_unrecognised", "held", "held_resolved", "held_expired", "upgrades",
                 "suppressed_activation", "suppressed_dedup", "pruned"]
REJECT_NAMES = ["malformed_json", "invalid_utf8", "too_large", "wrong_type", "missing_field",
                "bad_timestamp", "not_cloudtrail", "event_time_out_of_range",
                "identifier_too_long", "invalid_identifier", "processing_failed"]


def test_summary_json_has_every_counter(sample, tmp_path):
    """--summary-json writes one object with every counter under stable names,
    each reject reason listed (zeros included), agreeing with the text summary."""
    events, want = sample
    bad = tmp_path / "mixed.jsonl"
    bad.write_bytes(open(events, "rb").read() + b'{"eventTime": "x", "eventSource": "a", "eventName": "b"}\n'
                    + b"not json\n")
    out = tmp_path / "summary.json"
    p = scan([bad], "--summary-json", str(out))
    assert p.returncode == 1, p.stderr.decode()
    s = summary_json(p, out)
    assert sorted(s) == ["alerts", "detector", "records"]
    r = s["records"]
    assert sorted(r) == ["parsed", "read", "rejected", "rejected_by"]
    assert sorted(r["rejected_by"]) == sorted(REJECT_NAMES)
    assert r["rejected_by"]["bad_timestamp"] == 1 and r["rejected_by"]["malformed_json"] == 1
    assert r["rejected"] == sum(r["rejected_by"].values()) == 2
    assert r["read"] == summary_count(p, "read") == r["parsed"] + 2
    assert r["parsed"] == summary_count(p, "parsed")
    a = s["alerts"]
    assert sorted(a["by_variation"]) == ["1", "2", "3", "4", "5", "6"]
    assert a["total"] == len(alerts_of(p)) == len(want) == sum(a["by_variation"].values())
    for v in range(1, 7):
        assert a["by_variation"][str(v)] == sum(1 for w in want if w["variation"] == v), v
    assert list(s["detector"]) == DETECTOR_KEYS
    assert s["detector"]["events"] == r["parsed"]
    assert all(isinstance(x, int) and x >= 0 for x in s["detector"].values())
    assert s["detector"]["candidates"] > 0 and s["detector"]["held"] >= s["detector"]["held_resolved"]
    assert "source unrecognised" in p.stderr.decode()


def test_summary_json_write_failure_is_an_error(sample, tmp_path):
    events, _ = sample
    p = scan([events], "--summary-json", "/dev/full")
    assert p.returncode == 5 and b"/dev/full" in p.stderr, p.stderr.decode()

"""End-to-end tests of the state store and of alert text, through the CLI.

Issue 8: a legal role ARN (IAM paths reach 512 characters) stopped `scan`
with MDB_BAD_VALSIZE; a user agent cut at 511 bytes mid-character made the
alert invalid UTF-8; a corrupt store crashed liblmdb; `inspect` could not
read a read-only store. Run under CTest (tests/state.cmake).
"""
import io
import json
import os
import struct
import subprocess

import fastavro
import pytest

BIN = os.environ.get("TH_BIN", "build/trailhound")
SHARED = os.environ.get("TH_SHARED", os.path.join(os.path.dirname(__file__), "../../shared/data"))
SRC = os.environ.get("TH_SRC", os.path.join(os.path.dirname(__file__), ".."))
ASN = os.path.join(SHARED, "asn/asn.mmdb")
RANGES = os.path.join(SHARED, "aws-ip-ranges/ip-ranges.json")
CASE = os.path.join(SRC, "tests/cases/variations/v1_two_networks.jsonl")
AVSC = os.path.join(SRC, "schemas/alert.avsc")
ROLE = "role/service-role/orders-api-role-7k2p9x1q"
ALERTED_EVENT = "5d2d5c9e-b070-47d2-86c8-698e8575c08b"


def scan(paths, *extra):
    cmd = [BIN, "scan", "--no-progress", "--asn-db", ASN, "--aws-ranges", RANGES]
    return subprocess.run(cmd + list(extra) + [str(p) for p in paths], capture_output=True)


def case_lines(role_arn_len=None, user_agent=None):
    """The v1 case (one High alert), optionally with a longer role path and
    another user agent on the alerted call."""
    out = []
    for line in open(CASE):
        if role_arn_len:
            base = "arn:aws:iam::111122223333:" + ROLE
            pad = role_arn_len - len(base)
            path = "role/service-role/" + ("p" * (pad - 1)) + "/"
            line = line.replace(ROLE, path + "orders-api-role-7k2p9x1q")
        e = json.loads(line)
        if user_agent is not None and e.get("eventID") == ALERTED_EVENT:
            e["userAgent"] = user_agent
        out.append(json.dumps(e, ensure_ascii=False))
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("arn_len", [543, 600])
def test_legal_long_role_arn_is_processed(tmp_path, arn_len):
    events = tmp_path / "events.jsonl"
    events.write_text(case_lines(role_arn_len=arn_len))
    p = scan([events], "--state", str(tmp_path / "state"))
    assert p.returncode == 1, p.stderr.decode()  # the alert, not exit 5
    alerts = [json.loads(l) for l in p.stdout.decode().splitlines()]
    assert len(alerts) == 1
    assert len(alerts[0]["role_arn"]) == arn_len
    assert alerts[0]["role_arn"].endswith("/orders-api-role-7k2p9x1q")
    # the kept store reopens and the role is found by its full ARN
    q = subprocess.run([BIN, "inspect", "--state", str(tmp_path / "state"), "--json", "role",
                        alerts[0]["role_arn"]], capture_output=True)
    assert q.returncode == 0, q.stderr.decode()
    roles = json.loads(q.stdout)
    assert roles and roles[0]["functions"][0]["name"] == "orders-api"
    assert roles[0]["role_arn"] == alerts[0]["role_arn"]  # shown in full


def avro_messages(path):
    data = open(path, "rb").read()
    out, i = [], 0
    while i < len(data):
        (n,) = struct.unpack(">I", data[i:i + 4])
        out.append(data[i + 4:i + 4 + n])
        i += 4 + n
    return out


def test_user_agent_cut_mid_character_stays_valid_utf8(tmp_path):
    # "é" (2 bytes) occupies bytes 507-508: the 508 bytes kept before the
    # cut's 3-byte mark ("…") would split it
    ua = "A" * 507 + "é" + "Z" * 100
    events = tmp_path / "events.jsonl"
    events.write_bytes(case_lines(user_agent=ua).encode())
    avro_out = tmp_path / "alerts.avro"
    p = scan([events], "--avro-out", str(avro_out), "--set", "schema_id=0")
    assert p.returncode == 1, p.stderr.decode()
    text = p.stdout.decode("utf-8", errors="strict")  # raises on invalid UTF-8
    (alert,) = [json.loads(l) for l in text.splitlines()]
    assert alert["user_agent"] == "A" * 507 + "…"  # cut before the character, not inside it
    with open(AVSC) as f:
        schema = fastavro.parse_schema(json.load(f))
    (msg,) = avro_messages(avro_out)
    rec = fastavro.schemaless_reader(io.BytesIO(msg[5:]), schema)  # strict UTF-8 decode
    assert rec["user_agent"] == "A" * 507 + "…"


def test_untrusted_store_is_reported_not_crashed(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "data.mdb").write_bytes(os.urandom(65536))
    events = tmp_path / "events.jsonl"
    events.write_text(case_lines())
    p = scan([events], "--state", str(state))
    err = p.stderr.decode()
    assert p.returncode > 0 and p.returncode < 128, err  # an exit, never a signal
    assert "cannot be trusted" in err and "not an LMDB file" in err, err
    # scan.c maps TH_EUNTRUSTED to exit 4 (input helper's change, issue 8)
    assert p.returncode == 4, err  # configuration: the user's store, never deleted


def test_inspect_reads_a_store_on_a_read_only_mount(tmp_path):
    state = tmp_path / "state"
    events = tmp_path / "events.jsonl"
    events.write_text(case_lines())
    assert scan([events], "--state", str(state)).returncode == 1
    locks = list(state.glob("**/lock.mdb"))  # one store per scan partition
    assert locks
    for lock in locks:
        lock.unlink()  # as a copied backup has none
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "--bind", str(state), str(ro)]).returncode != 0:
        if os.geteuid() == 0:
            pytest.fail("bind mount as root failed")
        pytest.skip("needs root to mount")
    try:
        assert subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)]).returncode == 0
        p = subprocess.run([BIN, "inspect", "--state", str(ro), "--json", "accounts"],
                           capture_output=True)
        assert p.returncode == 0, p.stderr.decode()
        accounts = json.loads(p.stdout)
        assert any(a["account_id"] == "111122223333" for a in accounts)
        assert not list(ro.glob("**/lock.mdb"))
    finally:
        subprocess.run(["umount", str(ro)])


def test_inspect_of_a_directory_without_state_is_an_error_not_nothing_found(tmp_path):
    """A wrong --state (the parent of the state, an empty or unrelated
    directory) exited 1, "nothing found", printing nothing: an investigator
    read it as "the detector never saw this key". It is exit 5 with the
    reason now; a key absent from a real store stays exit 1, and says so."""
    state = tmp_path / "state"
    p = scan([CASE], "--state", str(state), "--jobs", "2")
    assert p.returncode == 1, p.stderr.decode()
    key = json.loads(p.stdout.decode().splitlines()[0])["access_key_id"]

    def inspect(d, *args):
        r = subprocess.run([BIN, "inspect", "--state", str(d)] + list(args), capture_output=True)
        return r.returncode, r.stdout.decode(), r.stderr.decode()

    rc, out, err = inspect(state, "--json", "key", key)
    assert rc == 0 and json.loads(out)[0]["access_key_id"] == key, err
    empty = tmp_path / "empty"
    empty.mkdir()
    for wrong in (tmp_path, empty):  # the state's parent; a directory with no store
        for args in (("key", key), ("--json", "key", key), ("accounts",)):
            rc, out, err = inspect(wrong, *args)
            assert rc == 5, (wrong, args, rc, out, err)
            assert f"{wrong}: no trailhound state here" in err, err
    rc, out, err = inspect(state, "key", "ASIAQ3NOTSEEN0000000")
    assert rc == 1 and out == "", (rc, out, err)
    assert f"key ASIAQ3NOTSEEN0000000 not found in the 2 store(s) of {state}" in err, err

"""docs/architecture.md and the variation tables stay true (issue 10).

- every path docs/architecture.md names exists, and every source file and
  public header is named there (a new file is placed on the map);
- every subcommand of the binary lives in its own src/cmd_<name>.c, outside the
  core library;
- the variation table of docs/detections.md and schemas/alert.avsc agree with
  the binary's (`trailhound variations --json`), the one names table.
"""
import glob
import json
import os
import re
import subprocess

SRC = os.environ.get("TH_SRC", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("TH_BIN", os.path.join(SRC, "build", "trailhound"))
ARCH = os.path.join(SRC, "docs", "architecture.md")
TOP = ("src/", "include/", "tests/", "docs/", "tools/", "schemas/", "bench/", "deploy/", "scripts/")


def arch_paths():
    text = open(ARCH).read()
    return {p for p in re.findall(r"`([^`\s]+)`", text) if p.startswith(TOP) and "<" not in p}


def variations():
    out = subprocess.run([BIN, "variations", "--json"], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out)


def test_every_named_path_exists():
    missing = sorted(p for p in arch_paths() if not os.path.exists(os.path.join(SRC, p)))
    assert not missing, "docs/architecture.md names files that do not exist: %s" % missing


def test_every_source_file_is_on_the_map():
    named = arch_paths()
    files = [os.path.relpath(f, SRC) for pat in ("src/*.c", "src/*.cpp", "src/*.h",
                                                  "include/trailhound/*.h")
             for f in glob.glob(os.path.join(SRC, pat))]
    unnamed = sorted(f for f in files if f not in named)
    assert not unnamed, ("not in docs/architecture.md (add each to the data-path table, or "
                         "wherever it belongs): %s" % unnamed)


def test_each_command_has_its_file_outside_the_core():
    usage = subprocess.run([BIN, "--help"], check=True, capture_output=True, text=True).stdout
    block = usage.split("Commands:\n")[1].split("\n\n")[0]
    cmds = re.findall(r"^  ([a-z]+) ", block, re.M)
    assert {"scan", "inspect", "run", "produce", "variations"} <= set(cmds)
    for c in cmds:
        assert os.path.exists(os.path.join(SRC, "src", "cmd_%s.c" % c)), c
    cmake = open(os.path.join(SRC, "CMakeLists.txt")).read()
    assert re.search(r"EXCLUDE REGEX .*cmd_", cmake), "the core library must not hold src/cmd_*.c"


def test_detections_doc_table_is_the_binarys():
    rows = {}
    for line in open(os.path.join(SRC, "docs", "detections.md")):
        m = re.match(r"\| (\d+) \| ([^|]+) \| ([^|]+) \| ([^|]+) \|", line)
        if m:
            rows[int(m.group(1))] = (m.group(2).strip(), m.group(3).strip(), m.group(4).strip())
    vs = variations()
    assert sorted(rows) == sorted(v["id"] for v in vs)
    for v in vs:
        name, sev, cond = rows[v["id"]]
        assert (name, sev) == (v["name"], v["severity"]), v["id"]
        kind = "token" if cond.startswith("token") else "role-session" if cond.startswith(
            "other session") else cond
        assert kind == v["credential"], (v["id"], cond)


def test_alert_schema_doc_matches_the_binary():
    schema = json.load(open(os.path.join(SRC, "schemas", "alert.avsc")))
    fields = {f["name"]: f for f in schema["fields"]}
    ids = [v["id"] for v in variations()]
    m = re.search(r"(\d+)\.\.(\d+)", fields["variation"]["doc"])
    assert m and (int(m.group(1)), int(m.group(2))) == (min(ids), max(ids)), \
        "alert.avsc's variation doc names another range than the binary's ids"
    assert "trailhound variations" in fields["variation"]["doc"]
    symbols = fields["severity"]["type"]["symbols"]
    assert {v["severity"] for v in variations()} <= set(symbols)


def test_variation_json_has_every_descriptor_property():
    for v in variations():
        assert set(v) == {"id", "name", "severity", "tactic", "credential", "upgradable",
                          "description"}
        assert v["credential"] in ("token", "role-session")
        assert isinstance(v["upgradable"], bool)
        assert re.fullmatch(r"TA\d{4}", v["tactic"])


def test_the_engine_names_no_variation_ids():
    """Adding a variation touches its descriptor, not the engine: no detector
    file compares a variation id with a number or sizes an array by hand."""
    bad = []
    for f in glob.glob(os.path.join(SRC, "src", "detect*.[ch]")) + \
            [os.path.join(SRC, "include", "trailhound", "detect.h")]:
        for n, line in enumerate(open(f), 1):
            code = re.sub(r"/\*.*?\*/|//.*", "", line)
            if re.search(r"variation\w*\s*(?:[<>]=?|==|!=)\s*\d|\d\s*(?:[<>]=?|==|!=)\s*\w*variation",
                         code) or re.search(r"\w+ alerts\[\d+\];", code):
                bad.append("%s:%d: %s" % (os.path.relpath(f, SRC), n, line.strip()))
    assert not bad, bad


def test_every_record_version_is_in_the_rollback_table():
    """docs/state-format.md's "Record versions and rollbacks" lists each record
    version an older build refuses: a rollback past its commit needs the state
    rebuilt, and an operator learns it from that table only. The role's
    version 2 was missing from it."""
    hdr = open(os.path.join(SRC, "include", "trailhound", "records.h")).read()
    doc = open(os.path.join(SRC, "docs", "state-format.md")).read()
    table = doc.split("### Record versions and rollbacks", 1)[1].split("\n## ", 1)[0]
    rows = [l for l in table.splitlines() if l.startswith("|") and "---" not in l]
    letters = {"TOKEN": "k", "ROLE": "r", "DEDUP": "d"}
    versions = re.findall(r"#define TH_([A-Z]+)_VERSION (\d+)", hdr)
    assert {k for k, _ in versions} >= set(letters), versions
    for kind, n in versions:
        if kind not in letters:
            continue
        for v in range(2, int(n) + 1):
            assert any("`%s`" % letters[kind] in r and "version %d" % v in r for r in rows), (
                "docs/state-format.md, Record versions and rollbacks: no row for the %s "
                "record's version %d" % (kind.lower(), v))


def test_every_option_is_in_its_help():
    """Each command's --help names every long option its getopt table takes
    (produce --help lacked -s/--set, inspect --help its --help)."""
    checked = 0
    for path in sorted(glob.glob(os.path.join(SRC, "src", "cmd_*.c"))):
        command = os.path.basename(path)[len("cmd_"):-len(".c")]
        text = open(path).read()
        names = [n for table in re.findall(r"struct option \w+\[\] = \{(.*?)\};", text, re.S)
                 for n in re.findall(r'\{"([a-z0-9-]+)",', table)]
        if not names:
            continue
        r = subprocess.run([BIN, command, "--help"], capture_output=True, text=True)
        assert r.returncode == 0, (command, r.stderr)
        missing = [n for n in names if f"--{n}" not in r.stdout + r.stderr]
        assert not missing, f"trailhound {command} --help does not name {missing}"
        checked += 1
    assert checked >= 5, checked


"""Reference data reloaded while the worker runs (reference_check_s): an
ip-ranges.json replaced the way Kubernetes updates a mounted volume (a
symlink swapped over a new directory) is loaded again between transactions
and judges the next events, with no restart; a replacement that does not load
is reported and the data loaded before stays in use.

The stale file lacks AWS's us-east-1 range holding 54.158.64.105, so a
function's own key used from that EC2 address of its region looks like a
public network (a remote use: an alert). After the swap to the real file the
same use is inside (no alert). Each no-alert event has a positive twin after
it in the same partition (the same account): a key used from a public
network, whose alert shows the worker got past the no-alert event. The
no-alert uses are of other functions than the first alert's, so the dedup
ledger cannot be what silences them. /metrics follows: the file's createDate
and the reloads by outcome."""
import importlib.util
import ipaddress
import json
import os
import time
import urllib.request

from confluent_kafka import Producer

from conftest import RANGES, SRC, free_port, log, ranges_created_s, read_alerts

spec = importlib.util.spec_from_file_location("make_cases", os.path.join(SRC, "tests/cases/make_cases.py"))
mc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mc)

EC2_USE1 = mc.IP["aws_use1"][0]  # an EC2 address of the function's own region


STALE_DATE = "2026-01-02-03-04-05"  # the stale file's createDate: 1767323045


def ranges_without(addr, out):
    """The real ip-ranges.json (read in place) less every prefix holding addr,
    dated STALE_DATE."""
    a = ipaddress.ip_address(addr)
    doc = json.load(open(RANGES))
    n = len(doc["prefixes"])
    doc["prefixes"] = [p for p in doc["prefixes"] if a not in ipaddress.ip_network(p["ip_prefix"])]
    assert len(doc["prefixes"]) < n, f"{addr} is in no prefix of {RANGES}"
    doc["createDate"] = STALE_DATE
    out.write_text(json.dumps(doc))


def scrape(port):
    """{name{labels}: value} of the worker's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        lines = r.read().decode().splitlines()
    return {k: float(v) for k, v in (l.rsplit(" ", 1) for l in lines if l and l[0] != "#")}


def swap(root, version):
    """Point root/..data at root/<version>, atomically (what the kubelet does)."""
    tmp = root / "..data.new"
    os.symlink(version, tmp)
    os.replace(tmp, root / "..data")


def wait_for(what, fn, w, timeout=90):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        assert w.poll() is None, f"worker exited {w.poll()} waiting for {what}:\n{w.tail()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{w.tail()}"
        time.sleep(0.3)


def test_reference_data_reloaded_without_restart(broker, topics, workers, tmp_path):
    names = topics.names
    pipe = names.pipeline("ref")
    topics.create(pipe)
    root = tmp_path / "refdata"
    for v in ("v1", "v2", "v3"):
        (root / v).mkdir(parents=True)
    ranges_without(EC2_USE1, root / "v1" / "ip-ranges.json")
    os.symlink(RANGES, root / "v2" / "ip-ranges.json")  # the real file, used in place
    (root / "v3" / "ip-ranges.json").write_text('{"syncToken": "1", "prefixes": [')  # cut short
    os.symlink("..data/ip-ranges.json", root / "ip-ranges.json")
    swap(root, "v1")

    c = mc.Case("reference", "reload", "")
    c.office_start()
    keys = {n: mc.key("REF%s" % n) for n in ("STALE", "NOWIN", "TWIN1", "KEPT", "TWIN2")}
    producer = Producer({"bootstrap.servers": broker})
    sent = [0]

    def send(minute, name, ip, fn=mc.FN):
        """Lambda issues the key to function fn, then the key is used from ip."""
        k = keys[name]
        c.issue(mc.at(mc.ATTACK, 10, minute), k, fn=fn)
        c.call(mc.at(mc.ATTACK, 10, minute + 1), k, ip, "runtime", "secret",
               creation=mc.at(mc.ATTACK, 10, minute), session=fn)
        for ev in c.events[sent[0]:]:
            producer.produce(names.input, key=c.acct.encode(), value=json.dumps(ev).encode())
        sent[0] = len(c.events)
        producer.flush(30)

    def alerted():
        return {a["access_key_id"] for _, a in read_alerts(broker, pipe.output)}

    port = free_port()
    created = 'trailhound_reference_created_timestamp_seconds{file="aws_ranges"}'
    reloads = 'trailhound_reference_reloads_total{outcome="%s"}'
    w = workers(names.input, pipe, f"{pipe.tid_prefix}-0", names.state_dir("w"),
                "--set", f"aws_ranges={root / 'ip-ranges.json'}", "--set", "reference_check_s=1",
                "--set", f"metrics_listen=127.0.0.1:{port}")
    # 1. the stale file: the EC2 address of the function's region is a public network
    send(0, "STALE", "aws_use1")
    wait_for("the stale file's alert", lambda: keys["STALE"] in alerted(), w)
    m = scrape(port)
    assert m[created] == 1767323045 and m[reloads % "loaded"] == 0, m
    # 2. the real file swapped in: loaded again, and the same use is inside
    swap(root, "v2")
    wait_for("the reload", lambda: w.lines("reference data loaded again"), w)
    send(10, "NOWIN", "aws_use1", fn="billing-api")
    send(20, "TWIN1", "do")
    wait_for("the twin's alert", lambda: keys["TWIN1"] in alerted(), w)
    real_s = ranges_created_s()
    m = scrape(port)
    assert m[created] == real_s and m[reloads % "loaded"] == 1, m
    # 3. a file that does not load: reported, the real file's data kept
    swap(root, "v3")
    wait_for("the failed reload", lambda: w.lines("does not load"), w)
    send(30, "KEPT", "aws_use1", fn="audit-api")
    send(40, "TWIN2", "ovh")
    wait_for("the second twin's alert", lambda: keys["TWIN2"] in alerted(), w)

    m = scrape(port)
    assert m[created] == real_s and m[reloads % "failed"] >= 1 and m[reloads % "loaded"] == 1, m
    got = alerted()
    assert got == {keys["STALE"], keys["TWIN1"], keys["TWIN2"]}, got
    stale = [a for _, a in read_alerts(broker, pipe.output) if a["access_key_id"] == keys["STALE"]]
    assert stale[0]["source_ip"] == EC2_USE1 and stale[0]["network"] == "public", stale[0]
    assert len(w.lines("reference data loaded again")) == 1, w.tail()
    assert "ip-ranges.json" in w.lines("does not load")[0]
    w.term()
    assert w.wait(60) == 0, w.tail()
    log("reference data: stale → alert, reloaded → inside, broken → kept")

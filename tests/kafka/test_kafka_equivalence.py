"""Equivalence: a worker over the generated sample commits exactly the alerts that
`trailhound scan` raises on the same file (and that the generator expects), as
Avro in the Confluent wire format, keyed by account, with name/severity headers."""
import datetime
import time

from conftest import (MAIN_FIELDS, assert_caught_up, assert_exactly_once, log, produce_file,
                      read_alerts, read_topic, run_to_end)


def iso(v):
    """fastavro's timestamp-millis (an aware datetime) as scan prints it."""
    assert v.tzinfo is not None and v.utcoffset() == datetime.timedelta(0)
    assert v.microsecond == 0, v
    return v.strftime("%Y-%m-%dT%H:%M:%SZ")


def as_scan_json(rec):
    """The decoded Avro alert in the shape of scan's JSON (timestamps as ISO strings)."""
    out = {k: rec[k] for k in MAIN_FIELDS}
    out["event_time"] = iso(rec["event_time"])
    h = dict(rec["history"])
    for k in ("issued_at", "first_seen", "last_seen"):
        if h[k] is not None:
            h[k] = iso(h[k])
    out["history"] = h
    return out


def test_equivalence_with_scan(broker, topics, workers, sample):
    t0 = time.monotonic()
    pipe = topics.names.pipeline("eq")
    names = topics.create(pipe)
    produce_file(broker, names.input, sample.path)

    run_to_end(workers, names.input, pipe, pipe.tid_prefix + ".W1", names.state_dir("W1"))

    alerts = read_alerts(broker, pipe.output)
    scan = sample.scan
    # the same alert IDs as scan, and as the generator's expected file, once each
    assert sorted(scan) == sample.expected_ids
    assert_exactly_once(alerts, sample.expected_ids)
    for m, rec in alerts:
        want = scan[rec["alert_id"]]
        got = as_scan_json(rec)
        for f in MAIN_FIELDS:
            assert got[f] == want[f], (f, got[f], want[f])
        # where it came from: the input partition and offset of the triggering event
        assert rec["input"]["topic"] == names.input
        assert 0 <= rec["input"]["partition"] < 4 and rec["input"]["offset"] >= 0
        # Kafka framing: key = account, headers with name and severity
        assert m.key == rec["account_id"].encode()
        assert m.headers["alert_name"] == rec["alert_name"].encode()
        assert m.headers["severity"] == rec["severity"].encode()
        # and the rest docs/operations.md names: a router may route on them unread
        assert m.headers["variation"] == str(rec["variation"]).encode()
        assert m.headers["alert_id"] == rec["alert_id"].encode()
    # the generator's view of each case
    by_id = {rec["alert_id"]: rec for _, rec in alerts}
    for w in sample.expected:
        rec = by_id[w["alert_id"]]
        assert (rec["variation"], rec["severity"], rec["account_id"], rec["event_id"],
                rec["access_key_id"], rec["asn"], rec["upgrade_of"]) == \
            (w["variation"], w["severity"], w["account_id"], w["event_id"],
             w["access_key_id"], w["asn"], w["upgrade_of"]), w["case"]
    # a clean sample: nothing dead-lettered; the group has committed every offset
    assert read_topic(broker, pipe.dead_letter) == []
    assert_caught_up(broker, pipe.group, names.input)
    log(f"equivalence: {len(alerts)} alerts in {time.monotonic() - t0:.1f} s")

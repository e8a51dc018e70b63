"""Poison records: malformed messages mixed into the generated sample go to the
dead-letter topic (original bytes, headers reason / source.topic /
source.partition / source.offset) inside the worker's transactions; the good
events are processed (exactly the expected alerts) and the group's committed
offsets reach the end of every partition."""
import json
import random
import time

from confluent_kafka import Producer

from conftest import (assert_caught_up, assert_exactly_once, log, produce_file, read_alerts,
                      read_topic, run_to_end)

N_BAD = 7  # bad records: 6 whole messages + 1 inside a Records batch


def account_of(ev):
    return (ev.get("userIdentity") or {}).get("accountId") or ev.get("recipientAccountId")


def build_stream(sample_path, rng):
    """[(key, value, expected dead letter or None)]: the sample, one event per
    message, with bad messages at random places. A dead letter is (reason,
    bytes it carries, byte offset of the bad record within the message)."""
    lines = open(sample_path, "rb").read().splitlines()
    events = [json.loads(l) for l in lines]
    keys = [account_of(e).encode() for e in events]
    msgs = [[k, l, None] for k, l in zip(keys, lines)]

    def copy_of(i, **changes):
        ev = dict(events[i])
        ev.update(changes)
        return json.dumps(ev).encode()

    bad = []
    n = len(lines)
    picks = rng.sample(range(1000, n - 1000), 7)
    # truncated JSON (a copy of an event cut in half)
    i = picks[0]
    raw = lines[i][: len(lines[i]) // 2]
    bad.append((i, keys[i], raw, ("malformed_json", raw, 0)))
    # invalid UTF-8 inside a string
    i = picks[1]
    raw = lines[i].replace(b'"eventSource":"', b'"eventSource":"\xff\xfe', 1)
    assert raw != lines[i]
    bad.append((i, keys[i], raw, ("invalid_utf8", raw, 0)))
    # wrong type (eventName a number)
    i = picks[2]
    raw = copy_of(i, eventName=5)
    bad.append((i, keys[i], raw, ("wrong_type", raw, 0)))
    # an empty message
    i = picks[3]
    bad.append((i, keys[i], b"", ("malformed_json", b"", 0)))
    # valid JSON objects that are no CloudTrail event
    i = picks[4]
    raw = b'{"hello": "world", "n": [1, 2, 3]}'
    bad.append((i, keys[i], raw, ("missing_field", raw, 0)))
    i = picks[6]
    raw = b'{"version": "0", "detail-type": "Scheduled Event", "source": "aws.events"}'
    bad.append((i, keys[i], raw, ("not_cloudtrail", raw, 0)))
    # a {"Records":[...]} batch of two consecutive events of one account with a
    # bad record between them: replaces those two messages, in place
    i = next(j for j in range(picks[5], n - 1) if keys[j] == keys[j + 1])
    rec = copy_of(i, eventTime="yesterday")
    head = b'{"Records": [' + lines[i] + b", "
    batch = head + rec + b", " + lines[i + 1] + b"]}"
    msgs[i] = [keys[i], batch, ("bad_timestamp", rec, len(head))]
    msgs[i + 1] = None
    # insert the whole-message rejects after their picked positions (from the back)
    for i, k, raw, dl in sorted(bad, key=lambda b: -b[0]):
        msgs.insert(i + 1, [k, raw, dl])
    return [m for m in msgs if m is not None]


def test_poison_records_go_to_dead_letter(broker, topics, workers, sample):
    t0 = time.monotonic()
    pipe = topics.names.pipeline("poison")
    names = topics.create(pipe)
    stream = build_stream(sample.path, random.Random(7))

    # produce in order (idempotent producer), noting where each dead letter landed
    where = {}
    p = Producer({"bootstrap.servers": broker, "enable.idempotence": True,
                  "partitioner": "murmur2_random", "linger.ms": 20})
    errors = []

    def dr(idx):
        def cb(err, msg):
            if err:
                errors.append(err)
            else:
                where[idx] = (msg.partition(), msg.offset())
        return cb

    for idx, (key, value, dl) in enumerate(stream):
        while True:
            try:
                p.produce(names.input, value=value, key=key,
                          on_delivery=dr(idx) if dl else None)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    assert p.flush(60) == 0 and not errors, errors
    expected_dl = {where[i]: dl for i, (_, _, dl) in enumerate(stream) if dl}
    assert len(expected_dl) == N_BAD
    log(f"produced {len(stream)} messages, {len(expected_dl)} of them bad, "
        f"in {time.monotonic() - t0:.1f} s")

    w = run_to_end(workers, names.input, pipe, pipe.tid_prefix + ".W1", names.state_dir("W1"))
    # the rejects are counted (the worker's stats line: a metric per reason)
    stats = w.lines("[stats]")[-1]
    assert f" rejected={N_BAD} " in stats, stats
    assert "rejected.malformed_json=" in stats and "rejected.invalid_utf8=" in stats, stats

    # the dead letters: each bad record once, with its origin in the headers
    letters = read_topic(broker, pipe.dead_letter)
    got = {}
    for m in letters:
        h = m.headers
        assert h["source.topic"] == names.input.encode()
        src = (int(h["source.partition"]), int(h["source.offset"]))
        assert src not in got, f"dead letter for {src} twice"
        got[src] = m
        reason, raw, byte_off = expected_dl.get(src, (None, None, None))
        assert reason is not None, f"unexpected dead letter {src}: {h}"
        assert h["reason"] == reason.encode(), (src, h)
        assert m.value == raw or (raw == b"" and m.value is None), (src, m.value[:80])
        assert int(h["record.byte_offset"]) == byte_off
        assert h.get("detail")
    assert sorted(got) == sorted(expected_dl)

    # the good events: exactly the expected alerts; and every partition done
    assert_exactly_once(read_alerts(broker, pipe.output), sample.expected_ids)
    assert_caught_up(broker, pipe.group, names.input)
    log(f"poison test: {time.monotonic() - t0:.1f} s")


def test_record_too_big_for_a_dead_letter(broker, topics, workers, sample):
    """A bad record that the broker took but whose dead letter (the record plus
    its headers) is over the producer's message.max.bytes (1,000,000): one with
    a value just under that, one with a key just under it. The worker must still
    dead-letter each (its start, with the original sizes in the headers) and go
    on. The old worker had its dead letter refused at every attempt, poison
    handling included (processing_failed is a dead letter too), aborting the
    transaction of every partition again and again for good."""
    pipe = topics.names.pipeline("bigdl")
    names = topics.create(pipe)
    produce_file(broker, names.input, sample.path)
    big_value = b'{"eventVersion": "' + b"x" * (999_900 - 18)
    big_key = b"k" * 999_850
    p = Producer({"bootstrap.servers": broker, "enable.idempotence": True})
    where = {}

    def dr(name):
        def cb(err, msg):
            assert err is None, err
            where[(msg.partition(), msg.offset())] = name
        return cb

    p.produce(names.input, value=big_value, key=b"123456789012", partition=0,
              on_delivery=dr("value"))
    p.produce(names.input, value=b"nope", key=big_key, partition=1, on_delivery=dr("key"))
    assert p.flush(60) == 0 and len(where) == 2

    run_to_end(workers, names.input, pipe, pipe.tid_prefix + ".W1", names.state_dir("W1"))

    letters = read_topic(broker, pipe.dead_letter)
    got = {(int(m.headers["source.partition"]), int(m.headers["source.offset"])): m
           for m in letters}
    assert len(letters) == 2 and sorted(got) == sorted(where), \
        [(m.headers, len(m.value or b"")) for m in letters]
    for src, what in where.items():
        m = got[src]
        if what == "value":
            assert m.key == b"123456789012"
            assert int(m.headers["record.truncated_from"]) == len(big_value)
            assert 0 < len(m.value) < len(big_value) and big_value.startswith(m.value)
            assert "key.truncated_from" not in m.headers
        else:
            assert m.value == b"nope" and "record.truncated_from" not in m.headers
            assert int(m.headers["key.truncated_from"]) == len(big_key)
            assert 0 < len(m.key) < len(big_key) and big_key.startswith(m.key)
        assert m.headers["reason"] and m.headers["detail"]

    assert_exactly_once(read_alerts(broker, pipe.output), sample.expected_ids)
    assert_caught_up(broker, pipe.group, names.input)

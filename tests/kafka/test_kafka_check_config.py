"""`trailhound run --check-config` against a live broker (issue 9 item 3): a good
setup passes; a missing input topic, a changelog with more partitions than the
input, a changelog that is not compacted, an unreachable broker, an unwritable
state_dir, unloadable reference data and a kafka.* setting that would break
exactly-once each fail with their own message and exit 4. The worker itself refuses a changelog with more partitions than the
input (issue 9 item 7: it used to accept it)."""
import subprocess
import time

from confluent_kafka.admin import NewTopic

from conftest import (ASN, BIN, PARTITIONS, RANGES, SCHEMA_ID, asn_built_s, ranges_created_s,
                      wait_for_topics)


def check(broker, names, pipe, state_dir, *extra, changelog=None, input_topic=None):
    cmd = [BIN, "run", "--check-config",
           "--set", f"brokers={broker}",
           "--set", f"input_topics={input_topic or names.input}",
           "--set", f"output_topic={pipe.output}",
           "--set", f"changelog_topic={changelog or pipe.changelog}",
           "--set", f"dead_letter_topic={pipe.dead_letter}",
           "--set", f"group_id={pipe.group}",
           "--set", f"state_dir={state_dir}",
           "--set", f"schema_id={SCHEMA_ID}",
           "--set", f"asn_db={ASN}",
           "--set", f"aws_ranges={RANGES}", *extra]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout, r.stderr


def fails(out):
    return [l for l in out.splitlines() if l.startswith("FAIL ")]


def reference_notes():
    """The notes --check-config should print on the reference data's age, from
    other readers of the files: the JSON's createDate and mmdblookup's build
    epoch, judged stale past the alert rules' 7 and 45 days."""
    out = []
    for what, made, stale_days in (("asn_db", asn_built_s(), 45),
                                   ("aws_ranges", ranges_created_s(), 7)):
        days = (int(time.time()) - made) // 86400
        out.append(f"note {what} made {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(made))}, "
                   f"{days} day(s) ago" + (": stale, refresh it (the worker reloads a replaced "
                                           "file)" if days > stale_days else ""))
    return out


def test_check_config(broker, admin, topics, tmp_path):
    names = topics.create(pipe := topics.names.pipeline("cc"))
    more = f"{pipe.changelog}.more"
    deleting = f"{pipe.changelog}.delete"
    new = [NewTopic(more, PARTITIONS + 1, 1, config={"cleanup.policy": "compact"}),
           NewTopic(deleting, PARTITIONS, 1, config={"cleanup.policy": "delete"})]
    for t, f in admin.create_topics(new, operation_timeout=30).items():
        f.result()
    try:
        wait_for_topics(admin, [more, deleting])
        state = str(tmp_path / "state")

        expected = [reference_notes()]
        rc, out, err = check(broker, names, pipe, state)
        expected.append(reference_notes())  # a day may have turned meanwhile
        assert rc == 0 and not fails(out), out + err
        assert f"ok   changelog topic {pipe.changelog}: {PARTITIONS} partitions, co-partitioned" in out
        assert "cleanup.policy compact" in out
        assert "# effective configuration" in out and f'changelog_topic = "{pipe.changelog}"' in out
        notes = [l for l in out.splitlines() if l.startswith("note asn_db") or
                 l.startswith("note aws_ranges")]
        assert notes in expected, out

        rc, out, err = check(broker, names, pipe, state, input_topic=f"{names.input}.missing")
        assert rc == 4, out + err
        assert fails(out) == [f"FAIL input topic {names.input}.missing: does not exist"], out

        rc, out, err = check(broker, names, pipe, state, changelog=more)
        assert rc == 4, out + err
        assert fails(out) == [
            f"FAIL changelog topic {more}: {PARTITIONS + 1} partitions, the input has "
            f"{PARTITIONS}: they must be co-partitioned (exactly as many partitions)"], out

        rc, out, err = check(broker, names, pipe, state, changelog=deleting)
        assert rc == 4, out + err
        assert len(fails(out)) == 1 and "cleanup.policy is \"delete\", not compact" in out, out

        notdir = tmp_path / "a-file"
        notdir.write_text("")
        rc, out, err = check(broker, names, pipe, str(notdir / "state"))
        assert rc == 4 and len(fails(out)) == 1 and "FAIL state_dir" in out, out

        rc, out, err = check(broker, names, pipe, state, "--set", f"asn_db={tmp_path}/no.mmdb")
        assert rc == 4 and len(fails(out)) == 1 and "FAIL reference data" in out, out

        # kafka.* settings `run` refuses (they would break exactly-once) are
        # refused here too, each by its name; the good setup above passed
        # the same check ("ok   kafka.* settings ...")
        assert "ok   kafka.* settings keep what exactly-once needs" in check(
            broker, names, pipe, state, "--set", "kafka.consumer.isolation.level=read_committed")[1]
        for bad in ("kafka.consumer.isolation.level=read_uncommitted",
                    "kafka.enable.auto.commit=true", "kafka.enable.partition.eof=false"):
            rc, out, err = check(broker, names, pipe, state, "--set", bad)
            name, value = bad.split("=")
            assert rc == 4 and fails(out) == [l for l in fails(out) if name in l], out
            assert len(fails(out)) == 1 and f'{name} = "{value}"' in out, out

        rc, out, err = check("127.0.0.1:1", names, pipe, state)
        assert rc == 4 and "FAIL brokers 127.0.0.1:1: not reachable" in out, out

        # the worker: a changelog with more partitions than the input is refused
        # at start-up (it was accepted: "ni > nc" let nc > ni through)
        r = subprocess.run([BIN, "run", "--set", f"brokers={broker}",
                            "--set", f"input_topics={names.input}",
                            "--set", f"output_topic={pipe.output}",
                            "--set", f"changelog_topic={more}",
                            "--set", f"dead_letter_topic={pipe.dead_letter}",
                            "--set", f"group_id={pipe.group}",
                            "--set", f"transactional_id={pipe.tid_prefix}-w",
                            "--set", f"state_dir={state}", "--set", f"schema_id={SCHEMA_ID}",
                            "--set", f"asn_db={ASN}", "--set", f"aws_ranges={RANGES}",
                            "--exit-when-idle", "1000"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 4, r.stderr
        assert "must be co-partitioned" in r.stderr, r.stderr
    finally:
        for t, f in admin.delete_topics([more, deleting], operation_timeout=30).items():
            try:
                f.result()
            except Exception:
                pass

"""The Kafka tests' CTest locks (tests/kafka.cmake) keep the shared broker
under the tests that use it.

The kafka tests share one broker and run under `ctest -j` in groups: the
worker tests hold RESOURCE_LOCK kafka, the bridge's tests kafka-bridge, so a
bridge test runs alongside a worker test. A test that stops or freezes the
broker takes it from every test running at the same time (and a test file
starting meanwhile finds no broker, starts its own and stops it when done):
it must hold every lock any kafka test holds. Read from CTest itself
(`ctest -N --show-only=json-v1`, nothing is run) and from the test files.
"""
import glob
import json
import os
import re
import shutil
import subprocess

SRC = os.environ.get("TH_SRC", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("TH_BIN", os.path.join(SRC, "build", "trailhound"))
# what takes the broker away: scripts/kafka-local.sh stop, or a signal to its pid
TAKES_BROKER = re.compile(r'KAFKA_LOCAL,\s*"stop"|broker_pid\(')


def kafka_locks():
    out = subprocess.run([shutil.which("ctest") or "ctest", "--test-dir", os.path.dirname(BIN),
                          "-N", "--show-only=json-v1", "-L", "kafka"],
                         check=True, capture_output=True, text=True).stdout
    locks = {}
    for t in json.loads(out)["tests"]:
        props = {p["name"]: p["value"] for p in t.get("properties", [])}
        locks[t["name"]] = set(props.get("RESOURCE_LOCK", []))
    return locks


def test_tests_that_take_the_broker_hold_every_lock():
    locks = kafka_locks()
    files = glob.glob(os.path.join(SRC, "tests", "kafka", "test_kafka_*.py"))
    assert files and len(locks) > len(files), "no kafka tests registered with CTest"
    every = set().union(*locks.values())
    takers = []
    for f in files:
        name = "kafka." + os.path.basename(f)[len("test_kafka_"):-len(".py")]
        assert name in locks, f"{f} is not a CTest test"
        if TAKES_BROKER.search(open(f).read()):
            takers.append(name)
            assert locks[name] == every, (
                f"{name} stops or freezes the shared broker but holds only {sorted(locks[name])}"
                f" of {sorted(every)}: a test holding another lock runs alongside it")
    assert "kafka.outage" in takers  # the pattern still sees the broker being frozen

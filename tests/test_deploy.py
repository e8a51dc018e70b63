"""deploy/ checked as far as it can be without Docker or a cluster (no network):

- every YAML and JSON file parses;
- every setting the manifests, the compose config, the Dockerfile and the
  environment overrides (TRAILHOUND_<SETTING>, `.` -> `__`) name is one the
  binary knows (`trailhound run --help-config`), and every kafka.* key is a
  librdkafka property;
- every metric the Grafana dashboard and the alert rules query is one the worker
  serves (`served_metrics()`), and promtool accepts every expression;
- the StatefulSet's probes, identity, volumes and grace period; KEDA never
  scales above the partitions deploy/topics.sh creates; the ServiceMonitor
  scrapes the Service's metrics port;
- the Dockerfile: multi-stage on Debian 12, non-root, the state volume;
- `systemd-analyze verify` accepts the systemd unit (where systemd-analyze exists).
"""
import glob
import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

BIN = os.path.abspath(os.environ.get("TH_BIN", "build/trailhound"))
SRC = os.path.abspath(os.environ.get("TH_SRC", os.path.join(os.path.dirname(__file__), "..")))
DEPLOY = os.path.join(SRC, "deploy")
K8S = os.path.join(DEPLOY, "kubernetes")

# Settings the metrics work (issue 9, branch i9-obs) adds to the binary; the
# deploy files use them already. Remove once that work is merged: from then on
# the binary lists them and this set is not consulted.
PENDING_SETTINGS = set()  # settings named in deploy/ before the binary has them


def served_metrics():
    """The metric names the worker serves, from the metrics contract of issue 9
    (docs/operations.md), for checks that need no broker. The same queries are
    checked against a live worker's scrape in kafka.metrics
    (tests/kafka/test_kafka_metrics.py), so this list cannot drift unseen."""
    return {
        "trailhound_build_info": "gauge",
        "trailhound_events_consumed_total": "counter",
        "trailhound_events_parsed_total": "counter",
        "trailhound_events_rejected_total": "counter",
        "trailhound_alerts_total": "counter",
        "trailhound_detections_suppressed_total": "counter",
        "trailhound_detections_deduplicated_total": "counter",
        "trailhound_held_uses_pending": "gauge",
        "trailhound_held_uses_expired_total": "counter",
        "trailhound_transactions_committed_total": "counter",
        "trailhound_transactions_aborted_total": "counter",
        "trailhound_transaction_commit_seconds": "histogram",
        "trailhound_restore_records_total": "counter",
        "trailhound_partitions_restoring": "gauge",
        "trailhound_partitions_assigned": "gauge",
        "trailhound_assignment_held": "gauge",
        "trailhound_state_bytes": "gauge",
        "trailhound_consumer_lag": "gauge",
        "trailhound_ready": "gauge",
        "trailhound_reference_reloads_total": "counter",
        "trailhound_reference_created_timestamp_seconds": "gauge",
    }


def bridge_metrics():
    """The names only `trailhound bridge` serves (docs/operations.md, docs/bridge.md),
    checked against a live bridge's scrape in kafka.bridge
    (tests/kafka/test_kafka_bridge.py::test_bridge_corrupt_gzip_dead_lettered)."""
    return {
        "trailhound_bridge_files_total": "counter",
        "trailhound_bridge_dead_lettered_total": "counter",
        "trailhound_bridge_sqs_messages_total": "counter",
    }


def binary_settings():
    """Setting names, asked of the binary (the config table in src/config.c)."""
    p = subprocess.run([BIN, "run", "--help-config"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    names = set(re.findall(r"^  ([a-z_][a-z0-9_]*)\s+default ", p.stdout, re.M))
    assert {"brokers", "transactional_id", "state_dir"} <= names, p.stdout[:500]
    return names


def is_librdkafka_property(key):
    """librdkafka itself says whether it knows the property: a client created
    with it fails with "No such configuration property" if not."""
    from confluent_kafka import KafkaException, Producer
    try:
        Producer({key: "x" if key not in NUMERIC_HINTS else "1"})
    except (KafkaException, ValueError, TypeError) as e:
        return "No such configuration property" not in str(e)
    return True


NUMERIC_HINTS = {"session.timeout.ms"}


def check_setting(name, known, where):
    """A setting name as a config file or an environment override spells it."""
    if name.startswith("kafka."):
        prop = name[len("kafka."):]
        for scope in ("consumer.", "producer."):
            if prop.startswith(scope):
                prop = prop[len(scope):]
        assert prop and is_librdkafka_property(prop), f"{where}: {name}: not a librdkafka property"
        return
    assert name in known or name in PENDING_SETTINGS, \
        f"{where}: unknown setting {name!r} (trailhound run --help-config)"


def env_setting(var):
    """TRAILHOUND_KAFKA__SASL__PASSWORD -> kafka.sasl.password"""
    assert var.startswith("TRAILHOUND_")
    return var[len("TRAILHOUND_"):].lower().replace("__", ".")


def conf_keys(text):
    keys = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([A-Za-z0-9_.\-]+)\s*=\s*("[^"]*"|[^"\s]+)\s*$', line)
        assert m, f"not a `key = \"value\"` (or `key = value`) line: {line!r}"
        keys.append(m.group(1))
    return keys


def docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def k8s(kind):
    found = [d for p in sorted(glob.glob(os.path.join(K8S, "*.yaml"))) for d in docs(p)
             if d.get("kind") == kind]
    assert found, f"no {kind} under deploy/kubernetes"
    return found


def named(kind, name):
    (d,) = [d for d in k8s(kind) if d["metadata"]["name"] == name]
    return d


def configmap_conf():
    return named("ConfigMap", "trailhound")["data"]["trailhound.conf"]


def bridge_conf():
    return named("ConfigMap", "trailhound-bridge")["data"]["bridge.conf"]


def conf_value(text, key):
    for line in text.splitlines():
        m = re.match(r'^\s*' + re.escape(key) + r'\s*=\s*"([^"]*)"', line)
        if m:
            return m.group(1)
    return None


def topic_partitions():
    """The default partition count deploy/topics.sh creates."""
    m = re.search(r"^parts=\$\{2:-(\d+)\}", open(os.path.join(DEPLOY, "topics.sh")).read(), re.M)
    assert m, "deploy/topics.sh: no parts=${2:-N} default"
    return int(m.group(1))


def worker_container():
    sts = named("StatefulSet", "trailhound")
    (c,) = [c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "trailhound"]
    return sts, c


# ---------------------------------------------------------------------------

def test_every_yaml_and_json_parses():
    files = [f for f in glob.glob(os.path.join(DEPLOY, "**", "*"), recursive=True)
             if f.endswith((".yaml", ".yml", ".json"))]
    assert len(files) >= 10, files
    for f in files:
        if f.endswith(".json"):
            json.load(open(f))
        else:
            assert docs(f), f"{f}: empty"


def test_settings_exist_in_the_binary():
    known = binary_settings()
    sources = {
        "ConfigMap trailhound.conf": configmap_conf(),
        "ConfigMap bridge.conf": bridge_conf(),
        "deploy/bridge/bridge.conf": open(os.path.join(DEPLOY, "bridge/bridge.conf")).read(),
        "deploy/compose/trailhound.conf": open(os.path.join(DEPLOY, "compose/trailhound.conf")).read(),
        "deploy/trailhound.conf": open(os.path.join(DEPLOY, "trailhound.conf")).read(),
    }
    n = 0
    for where, text in sources.items():
        for key in conf_keys(text):
            check_setting(key, known, where)
            n += 1
    # environment overrides: StatefulSet, compose, Dockerfile
    _, c = worker_container()
    env = [e["name"] for e in c.get("env", [])]
    compose = docs(os.path.join(DEPLOY, "compose/docker-compose.yml"))[0]
    env += list(compose["services"]["trailhound"].get("environment", {}))
    env += re.findall(r"\b(TRAILHOUND_[A-Z0-9_]+)=", open(os.path.join(DEPLOY, "Dockerfile")).read())
    assert "TRAILHOUND_TRANSACTIONAL_ID" in env
    for var in env:
        check_setting(env_setting(var), known, f"environment {var}")
        n += 1
    # --set in the systemd unit
    for key in re.findall(r"--set ([a-z0-9_.]+)=", open(os.path.join(DEPLOY, "systemd/trailhound@.service")).read()):
        check_setting(key, known, "systemd unit")
        n += 1
    assert n > 30


def test_the_settings_check_can_fail():
    known = binary_settings()
    with pytest.raises(AssertionError):
        check_setting("transactionalid", known, "test")
    with pytest.raises(AssertionError):
        check_setting("kafka.sasl.passwrd", known, "test")
    check_setting("kafka.consumer.group.instance.id", known, "test")


def queried_metrics():
    """(where, metric) for every trailhound_* name in the dashboard and the rules;
    a histogram's _bucket/_sum/_count series count as the histogram."""
    out = []
    dash = json.load(open(os.path.join(DEPLOY, "grafana/trailhound.json")))
    for p in dash["panels"]:
        for t in p.get("targets", []):
            out += [(f"dashboard panel {p['title']!r}", m) for m in re.findall(r"trailhound_[a-z0-9_]+", t["expr"])]
    for rule in rules():
        out += [(f"rule {rule['alert']}", m) for m in re.findall(r"trailhound_[a-z0-9_]+", rule["expr"])]
    return out


def rules():
    (pr,) = k8s("PrometheusRule")
    return [r for g in pr["spec"]["groups"] for r in g["rules"]]


def test_dashboard_and_rules_query_served_metrics():
    served = {**served_metrics(), **bridge_metrics()}
    q = queried_metrics()
    assert len({m for _, m in q}) >= 15
    for where, m in q:
        base = re.sub(r"_(bucket|sum|count)$", "", m)
        ok = m in served or (base in served and served[base] == "histogram")
        assert ok, f"{where} queries {m}, which the worker does not serve"
    # and the dashboard shows every metric served, the bridge's too
    shown = {re.sub(r"_(bucket|sum|count)$", "", m) for w, m in q if w.startswith("dashboard")}
    assert set(served) <= shown, set(served) - shown
    # a dead-lettering bridge is a blind spot: a rule says so
    assert any("trailhound_bridge_dead_lettered_total" in r["expr"] for r in rules())


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool not installed")
def test_promtool_accepts_every_expression(tmp_path):
    exprs = [r["expr"] for r in rules()]
    dash = json.load(open(os.path.join(DEPLOY, "grafana/trailhound.json")))
    exprs += [t["expr"].replace("$__rate_interval", "5m")
              for p in dash["panels"] for t in p.get("targets", [])]
    rec = [{"record": f"trailhound:check:{i}", "expr": e} for i, e in enumerate(exprs)]
    (pr,) = k8s("PrometheusRule")
    f = tmp_path / "rules.yml"
    f.write_text(yaml.safe_dump({"groups": pr["spec"]["groups"] +
                                 [{"name": "dashboard", "rules": rec}]}))
    p = subprocess.run(["promtool", "check", "rules", str(f)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def promtool_test(tmp_path, tests):
    """Run `promtool test rules` on the PrometheusRule's groups with these tests
    (the rules' annotations left out: the tests judge when a rule fires)."""
    (pr,) = k8s("PrometheusRule")
    groups = [{**g, "rules": [{k: v for k, v in r.items() if k != "annotations"}
                              for r in g["rules"]]} for g in pr["spec"]["groups"]]
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": groups}))
    (tmp_path / "test.yml").write_text(yaml.safe_dump(
        {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": tests}))
    return subprocess.run(["promtool", "test", "rules", str(tmp_path / "test.yml")],
                          capture_output=True, text=True)


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool not installed")
def test_restore_stuck_fires_before_the_restore_timeout(tmp_path):
    """A restore that never finishes ends at restore_timeout_ms with exit 5; the
    restarted worker serves trailhound_partitions_restoring 0 until its
    assignment and then restores again. TrailhoundRestoreStuck's `for:` must
    be shorter than restore_timeout_ms, or that loop resets it every time and it
    never fires (it was 20 min against the ConfigMap's 600 s)."""
    timeout_min = int(conf_value(configmap_conf(), "restore_timeout_ms") or 300000) // 60000
    # restoring for the timeout, then one minute restarting (0), over and over
    cycle = f"1x{timeout_min - 1} 0 "
    values = (cycle * (180 // (timeout_min + 1))).strip()
    r = promtool_test(tmp_path, [{
        "interval": "1m",
        "input_series": [{"series": 'trailhound_partitions_restoring{pod="trailhound-0"}',
                          "values": values}],
        "alert_rule_test": [{"eval_time": f"{2 * (timeout_min + 1) - 2}m",
                             "alertname": "TrailhoundRestoreStuck",
                             "exp_alerts": [{"exp_labels": {"severity": "ticket", "pod": "trailhound-0"}}]}]}])
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool not installed")
def test_no_input_pages_when_every_worker_is_gone(tmp_path):
    """TrailhoundNoEventsConsumed is the page for "the bridge or the workers
    stopped". Workers that are gone (crash-looping on exit 4 before they serve
    /metrics, scaled to 0, the StatefulSet deleted) serve no series: a rule that
    only sums their rates has nothing to compare and stays silent, and so does
    every other worker rule. Also with the bridge still up: its series
    (trailhound_bridge_*, served from its start) mark it as no worker."""
    worker = 'trailhound_events_consumed_total{pod="trailhound-0"}'
    bridge = [{"series": 'trailhound_events_consumed_total{pod="trailhound-bridge-0"}',
               "values": "0x120"},
              {"series": 'trailhound_bridge_sqs_messages_total{pod="trailhound-bridge-0"}',
               "values": "0+10x120"}]
    fired = [{"exp_labels": {"severity": "page"}}]
    for extra in ([], bridge):
        r = promtool_test(tmp_path, [{
            "interval": "1m",
            # events flow for an hour, then the worker is gone
            "input_series": [{"series": worker, "values": "0+100x60"}] + extra,
            "alert_rule_test": [
                {"eval_time": "50m", "alertname": "TrailhoundNoEventsConsumed", "exp_alerts": []},
                {"eval_time": "110m", "alertname": "TrailhoundNoEventsConsumed",
                 "exp_alerts": fired}]}])
        assert r.returncode == 0, ("with the bridge: " if extra else "") + r.stdout + r.stderr
    # and events flowing through a worker while the bridge idles is no page
    r = promtool_test(tmp_path, [{
        "interval": "1m",
        "input_series": [{"series": worker, "values": "0+100x120"}] + bridge,
        "alert_rule_test": [{"eval_time": "110m", "alertname": "TrailhoundNoEventsConsumed",
                             "exp_alerts": []}]}])
    assert r.returncode == 0, r.stdout + r.stderr


def dashboard_expr(title_start, ref):
    dash = json.load(open(os.path.join(DEPLOY, "grafana/trailhound.json")))
    (t,) = [t for p in dash["panels"] if p["title"].startswith(title_start)
            for t in p.get("targets", []) if t["refId"] == ref]
    return t["expr"].replace("$__rate_interval", "5m")


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool not installed")
def test_worker_panels_count_workers_only(tmp_path):
    """The bridge serves the worker's metric names too (its events published
    as trailhound_events_parsed_total, its own trailhound_ready). The workers'
    panels must not add them in: a worker parsing everything it consumes showed
    parsed = 2 x consumed, and the bridge counted as one more worker."""
    w, b = '{pod="trailhound-0"}', '{pod="trailhound-bridge-0"}'
    series = [
        {"series": f"trailhound_events_consumed_total{w}", "values": "0+60x30"},
        {"series": f"trailhound_events_parsed_total{w}", "values": "0+60x30"},
        {"series": f"trailhound_ready{w}", "values": "1x30"},
        {"series": f"trailhound_events_consumed_total{b}", "values": "0x30"},
        {"series": f"trailhound_events_parsed_total{b}", "values": "0+60x30"},
        {"series": f"trailhound_ready{b}", "values": "1x30"},
        {"series": f"trailhound_bridge_sqs_messages_total{b}", "values": "0+1x30"},
    ]
    want = {("Events consumed", "A"): 1, ("Events consumed", "B"): 1,
            ("Workers ready", "A"): 1, ("Workers ready", "B"): 1}
    r = promtool_test(tmp_path, [{
        "interval": "1m", "input_series": series,
        "promql_expr_test": [{"expr": dashboard_expr(t, ref), "eval_time": "20m",
                              "exp_samples": [{"labels": "{}", "value": v}]}
                             for (t, ref), v in want.items()]}])
    assert r.returncode == 0, r.stdout + r.stderr


def test_statefulset():
    sts, c = worker_container()
    spec = sts["spec"]["template"]["spec"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["metrics"] == 9464
    listen = conf_value(configmap_conf(), "metrics_listen")
    assert listen and listen.endswith(":9464") and not listen.startswith("127."), listen

    def probe(name):
        g = c[name]["httpGet"]
        assert ports.get(g["port"], g["port"]) == 9464
        return g["path"]
    assert probe("readinessProbe") == "/readyz"
    assert probe("livenessProbe") == "/healthz"
    # a restore runs in the worker's loop: liveness must outlast the longest one
    live = c["livenessProbe"]
    restore_ms = int(conf_value(configmap_conf(), "restore_timeout_ms") or 300000)
    assert live["periodSeconds"] * live["failureThreshold"] > restore_ms / 1000
    # identity from the pod name
    env = {e["name"]: e for e in c["env"]}
    for var in ("TRAILHOUND_TRANSACTIONAL_ID", "TRAILHOUND_KAFKA__CONSUMER__GROUP__INSTANCE__ID"):
        assert env[var]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # the password from the Secret, not in the ConfigMap
    assert "secretKeyRef" in env["TRAILHOUND_KAFKA__SASL__PASSWORD"]["valueFrom"]
    assert "password" not in configmap_conf().replace("sasl-password", "")
    # a volume per pod for LMDB at state_dir; the rest read-only
    state_dir = conf_value(configmap_conf(), "state_dir")
    claims = {v["metadata"]["name"] for v in sts["spec"]["volumeClaimTemplates"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts[state_dir]["name"] in claims
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["runAsNonRoot"] is True
    # grace: longer than the transaction timeout (worker default 60 s) plus the close
    txn_timeout = int(conf_value(configmap_conf(), "kafka.producer.transaction.timeout.ms") or 60000)
    assert spec["terminationGracePeriodSeconds"] > txn_timeout / 1000 + 10
    assert sts["spec"]["replicas"] <= topic_partitions()


def test_pods_get_no_service_link_variables():
    """Kubernetes gives every pod <SERVICE>_SERVICE_HOST, <SERVICE>_PORT, ...
    for each Service of its namespace (enableServiceLinks defaults to true).
    A Service named trailhound-... (a Strimzi cluster called trailhound makes
    trailhound-kafka-bootstrap) thus hands the worker and the bridge
    TRAILHOUND_* variables that are no setting, which they refuse: exit 4, a
    crash loop. The manifests turn the links off, and the refusal says why."""
    for name in ("trailhound", "trailhound-bridge"):
        spec = named("StatefulSet", name)["spec"]["template"]["spec"]
        assert spec.get("enableServiceLinks") is False, name
    env = dict(os.environ, TRAILHOUND_KAFKA_BOOTSTRAP_SERVICE_HOST="10.96.0.12")
    # refused while the settings are read, before anything is contacted
    r = subprocess.run([BIN, "run", "--check-config"], capture_output=True, env=env)
    assert r.returncode == 4, r.stderr
    assert b"TRAILHOUND_KAFKA_BOOTSTRAP_SERVICE_HOST" in r.stderr
    assert b"enableServiceLinks" in r.stderr
    # a variable of a setting is no service link: no such hint
    env = dict(os.environ, TRAILHOUND_BATCH_SIZE="0")
    r = subprocess.run([BIN, "run", "--check-config"], capture_output=True, env=env)
    assert r.returncode == 4 and b"batch_size" in r.stderr, r.stderr
    assert b"enableServiceLinks" not in r.stderr


def test_keda_never_above_the_partitions():
    (so,) = k8s("ScaledObject")
    sts = named("StatefulSet", "trailhound")
    assert so["spec"]["scaleTargetRef"]["kind"] == "StatefulSet"
    assert so["spec"]["scaleTargetRef"]["name"] == sts["metadata"]["name"]
    assert 1 <= so["spec"]["minReplicaCount"] <= so["spec"]["maxReplicaCount"] <= topic_partitions()
    (trig,) = so["spec"]["triggers"]
    assert trig["type"] == "kafka"
    conf = configmap_conf()
    assert trig["metadata"]["consumerGroup"] == conf_value(conf, "group_id")
    assert trig["metadata"]["topic"] == conf_value(conf, "input_topics")
    assert trig["metadata"].get("allowIdleConsumers", "false") == "false"


def test_service_monitor_scrapes_the_metrics_port():
    svc = named("Service", "trailhound")
    sm = named("ServiceMonitor", "trailhound")
    sts = named("StatefulSet", "trailhound")
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items())
    assert all(svc["metadata"]["labels"].get(k) == v
               for k, v in sm["spec"]["selector"]["matchLabels"].items())
    names = {p["name"] for p in svc["spec"]["ports"]}
    assert {e["port"] for e in sm["spec"]["endpoints"]} <= names
    assert all(e["path"] == "/metrics" for e in sm["spec"]["endpoints"])
    assert sts["spec"]["serviceName"] == svc["metadata"]["name"]
    (pdb,) = k8s("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_bridge_statefulset():
    """bridge.yaml: `trailhound bridge` with its ConfigMap, an identity per pod,
    probes and scrapes on the port its metrics_listen names, feeding the topic
    the workers read."""
    sts = named("StatefulSet", "trailhound-bridge")
    spec = sts["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    conf = bridge_conf()
    assert c["args"][:2] == ["bridge", "-c"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    cm_vol = {v["name"]: v for v in spec["volumes"]}[mounts[c["args"][2]]["name"]]
    assert cm_vol["configMap"]["name"] == "trailhound-bridge"
    assert mounts[c["args"][2]]["subPath"] == "bridge.conf"
    # a transactional id per pod, so instances never share one
    env = {e["name"]: e for e in c["env"]}
    assert env["TRAILHOUND_BRIDGE_TRANSACTIONAL_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.name"
    assert conf_value(conf, "bridge_transactional_id") is None
    check_setting(env_setting("TRAILHOUND_BRIDGE_TRANSACTIONAL_ID"), binary_settings(), "bridge.yaml")
    # the password from the Secret, which has the key
    ref = env["TRAILHOUND_KAFKA__SASL__PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref["key"] in named("Secret", ref["name"])["stringData"]
    assert "password" not in conf
    # what it feeds is what the workers read; where it gives up, theirs too
    for key in ("input_topics", "dead_letter_topic", "brokers"):
        assert conf_value(conf, key) == conf_value(configmap_conf(), key), key
    for key in ("bridge_queue_url", "bridge_ledger_topic", "aws_region"):
        assert conf_value(conf, key), key
    # probes and the ServiceMonitor on the port metrics_listen opens
    port = int(conf_value(conf, "metrics_listen").rsplit(":", 1)[1])
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["metrics"] == port
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    svc = named("Service", "trailhound-bridge")
    sm = named("ServiceMonitor", "trailhound-bridge")
    pod_labels = spec and sts["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {"metrics": port}
    assert sts["spec"]["serviceName"] == svc["metadata"]["name"]
    # no pod of the workers' Service or PodDisruptionBudget
    assert not named("Service", "trailhound")["spec"]["selector"].items() <= pod_labels.items()
    # read-only root; its temporary files (TMPDIR) on a volume of their own
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["runAsNonRoot"] is True
    tmp = env["TMPDIR"]["value"]
    assert "emptyDir" in {v["name"]: v for v in spec["volumes"]}[mounts[tmp]["name"]]
    # credentials from the ServiceAccount's role, never in the manifest
    assert spec["serviceAccountName"] == named("ServiceAccount", "trailhound-bridge")["metadata"]["name"]
    assert not [e for e in env if e.startswith("AWS_")]


def image_env():
    """{TRAILHOUND_*: value} the runtime stage of deploy/Dockerfile sets with ENV."""
    text = open(os.path.join(DEPLOY, "Dockerfile")).read()
    text = re.sub(r"\\\n", " ", text)
    runtime = text[text.rindex("\nFROM "):]
    env = {}
    for line in runtime.splitlines():
        if line.startswith("ENV "):
            env.update(re.findall(r"\b(TRAILHOUND_[A-Z0-9_]+)=(\S+)", line))
    return env


def effective_setting(conf, container, key):
    """What the process in the container uses for key: the config file, then
    the environment (the image's ENV, then the container's env) on top, as
    `trailhound` applies them (README: file < TRAILHOUND_* < --set)."""
    var = "TRAILHOUND_" + key.upper().replace(".", "__")
    env = dict(image_env())
    env.update({e["name"]: e.get("value") for e in container.get("env", [])})
    return env[var] if var in env else conf_value(conf, key)


def test_containers_serve_metrics_where_probed():
    """Each StatefulSet's process listens on the port its probes, its Service
    and its NetworkPolicy use. The image's environment counts: a TRAILHOUND_*
    ENV in deploy/Dockerfile overrides every mounted config file, so an
    ENV TRAILHOUND_METRICS_LISTEN=0.0.0.0:9464 made the bridge (ConfigMap:
    0.0.0.0:9465) listen on 9464, failing its liveness probe forever."""
    for name, conf, cname in (("trailhound", configmap_conf(), "trailhound"),
                              ("trailhound-bridge", bridge_conf(), "bridge")):
        sts = named("StatefulSet", name)
        (c,) = [c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == cname]
        listen = effective_setting(conf, c, "metrics_listen")
        assert listen, f"{name}: metrics off"
        port = int(listen.rsplit(":", 1)[1])
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        for probe in ("livenessProbe", "readinessProbe"):
            p = c[probe]["httpGet"]["port"]
            assert ports.get(p, p) == port, f"{name}: {probe} on {p}, the process listens on {listen}"
        svc = named("Service", name)
        assert {ports.get(p["targetPort"], p["targetPort"]) for p in svc["spec"]["ports"]} == {port}
        np = named("NetworkPolicy", name)
        assert {p["port"] for r in np["spec"]["ingress"] for p in r["ports"]} == {port}
        # and the other settings the ConfigMap names are the ones used
        for line in conf.splitlines():
            m = re.match(r'^\s*([a-z_][a-z0-9_.]*)\s*=\s*"([^"]*)"', line)
            if m and not m.group(1).startswith("kafka."):
                assert effective_setting(conf, c, m.group(1)) == m.group(2), \
                    f"{name}: {m.group(1)} = {m.group(2)!r} in its ConfigMap is overridden " \
                    f"by the environment"


def test_network_policies_allow_what_the_configs_name():
    """Each NetworkPolicy selects its pods and lets in only the metrics port of
    their metrics_listen; its egress ports cover every address their ConfigMap
    names (brokers, schema registry; for the bridge AWS over HTTPS) and DNS."""
    from urllib.parse import urlsplit

    def ports(rules):
        return {p["port"] for r in rules for p in r.get("ports", [])}

    def port_of(hostport):
        return int(hostport.rsplit(":", 1)[1])

    for name, conf in (("trailhound", configmap_conf()), ("trailhound-bridge", bridge_conf())):
        np = named("NetworkPolicy", name)
        sts = named("StatefulSet", name)
        pod_labels = sts["spec"]["template"]["metadata"]["labels"]
        assert np["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
        assert set(np["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        assert ports(np["spec"]["ingress"]) == {port_of(conf_value(conf, "metrics_listen"))}
        want = {53} | {port_of(b) for b in conf_value(conf, "brokers").split(",")}
        url = conf_value(conf, "schema_registry_url")
        if url:
            u = urlsplit(url)
            want.add(u.port or (443 if u.scheme == "https" else 80))
        if name == "trailhound-bridge":
            endpoint = conf_value(conf, "aws_endpoint")
            want.add(urlsplit(endpoint).port or 443 if endpoint else 443)
            assert conf_value(conf, "bridge_queue_url").startswith("https://")
        assert want <= ports(np["spec"]["egress"]), (name, want)
        # the other's pods are not selected by this one
        other = "trailhound-bridge" if name == "trailhound" else "trailhound"
        other_labels = named("StatefulSet", other)["spec"]["template"]["metadata"]["labels"]
        assert not np["spec"]["podSelector"]["matchLabels"].items() <= other_labels.items()


def test_kustomization_lists_every_manifest():
    (kz,) = docs(os.path.join(K8S, "kustomization.yaml"))
    files = {os.path.basename(p) for p in glob.glob(os.path.join(K8S, "*.yaml"))} - {"kustomization.yaml"}
    assert set(kz["resources"]) == files


def needed_packages():
    """Debian packages of the shared libraries the binary links directly
    (NEEDED entries, resolved with ldd, owned per dpkg -S); libc6 and
    libgcc-s1 are in every Debian image."""
    if not (shutil.which("objdump") and shutil.which("dpkg")):
        pytest.skip("objdump or dpkg missing")
    needed = re.findall(r"NEEDED\s+(\S+)", subprocess.run(
        ["objdump", "-p", BIN], capture_output=True, text=True, check=True).stdout)
    paths = dict(re.findall(r"^\s*(\S+) => (\S+)", subprocess.run(
        ["ldd", BIN], capture_output=True, text=True, check=True).stdout, re.M))
    pkgs = set()
    # the sanitizer pass (scripts/test.sh) links the sanitizers' runtimes, which
    # no release build carries
    needed = [so for so in needed if not re.match(r"lib(a|ub|t|l)san\.so", so)]
    for so in needed:
        real = os.path.realpath(paths[so])
        out = subprocess.run(["dpkg", "-S", real], capture_output=True, text=True)
        if out.returncode:
            out = subprocess.run(["dpkg", "-S", paths[so]], capture_output=True, text=True)
        assert out.returncode == 0, f"{so}: no package owns {real}"
        pkgs.add(out.stdout.split(":")[0])
    return pkgs - {"libc6", "libgcc-s1"}


def test_dockerfile():
    text = open(os.path.join(DEPLOY, "Dockerfile")).read()
    code = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#"))
    froms = re.findall(r"^FROM\s+(\S+)", code, re.M)
    assert len(froms) >= 2 and all(f == "debian:12" for f in froms), froms
    split = code.rindex("\nFROM ")
    build, runtime = code[:split], code[split:]
    assert "cmake --build" in build and "cmake" not in runtime
    m = re.search(r"apt-get install -y --no-install-recommends((?:[^&]|&(?!&))*)", runtime)
    assert m, "no apt-get install in the runtime stage"
    runtime_pkgs = set(m.group(1).replace("\\", " ").split())
    assert not [p for p in runtime_pkgs if p.endswith("-dev")], runtime_pkgs
    missing = needed_packages() - runtime_pkgs
    assert not missing, f"the runtime stage lacks {missing} (the binary links them)"
    user = re.findall(r"^USER\s+(\S+)", runtime, re.M)
    assert user and user[-1].split(":")[0] not in ("0", "root"), user
    assert re.search(r'^VOLUME\s+\["/var/lib/trailhound"\]', runtime, re.M)


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_unit_verifies(tmp_path):
    unit = open(os.path.join(DEPLOY, "systemd/trailhound@.service")).read()
    assert "/usr/local/bin/trailhound" in unit
    # the unit names the installed path; verify checks it is executable
    f = tmp_path / "trailhound@verify.service"
    f.write_text(unit.replace("/usr/local/bin/trailhound", BIN))
    p = subprocess.run(["systemd-analyze", "verify", str(f)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def test_systemd_unit_restarts_fatal_exits_not_config_errors(tmp_path):
    """The unit restarted exit 4 every 2 s for ever: a configuration error,
    which no restart fixes, filled the journal and hid in `systemctl status`
    as "activating". The binary's exit code for a bad configuration must be
    one the unit does not restart, and its exit for a fatal Kafka error (5,
    a fenced worker) one it does."""
    unit = open(os.path.join(DEPLOY, "systemd/trailhound@.service")).read()
    assert re.search(r"^Restart=on-failure$", unit, re.M)
    prevent = {int(c) for line in re.findall(r"^RestartPreventExitStatus=(.*)$", unit, re.M)
               for c in line.split() if c.isdigit()}
    conf = tmp_path / "bad.conf"
    conf.write_text("no_such_setting = 1\n")
    p = subprocess.run([BIN, "run", "-c", str(conf)], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "no_such_setting" in p.stderr, p.stderr
    assert p.returncode in prevent, (p.returncode, prevent)
    assert 5 not in prevent


def systemd_instance(tmp_path, instance):
    """The settings `trailhound@INSTANCE` runs with, as the binary takes them:
    the unit's EnvironmentFile (from deploy/systemd/) in the environment, its
    ExecStart's --set options, the shared deploy/trailhound.conf; printed by
    --check-config (brokers moved to a closed port, state to tmp_path)."""
    unit = open(os.path.join(DEPLOY, "systemd/trailhound@.service")).read()
    env = dict(os.environ)
    files = re.findall(r"^EnvironmentFile=(\S+)", unit, re.M)
    assert files, "the unit reads no per-instance EnvironmentFile"
    for f in files:
        assert not f.startswith("-"), f"{f}: optional, an instance without one would share the port"
        assert "%i" in f, f"{f}: the same file for every instance"
        path = os.path.join(DEPLOY, "systemd", os.path.basename(f.replace("%i", instance)))
        assert os.path.exists(path), f"deploy/systemd/ has no example {os.path.basename(path)}"
        for line in open(path):
            line = line.strip()
            if line and not line.startswith("#"):
                k, v = line.split("=", 1)
                env[k] = v
    execstart = re.search(r"^ExecStart=(.*?)(?<!\\)$", unit, re.M | re.S).group(1)
    execstart = execstart.replace("\\\n", " ").replace("%i", instance).replace("%H", "host")
    sets = re.findall(r"--set (\S+)", execstart)
    args = [BIN, "run", "-c", os.path.join(DEPLOY, "trailhound.conf"), "--check-config"]
    for s in sets:
        args += ["--set", s.replace("/var/lib/trailhound", str(tmp_path))]
    args += ["--set", "brokers=127.0.0.1:1"]
    p = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    return dict(re.findall(r'^([a-z0-9_.]+) = "(.*)"$', p.stdout, re.M))


@pytest.fixture(scope="module")
def systemd_instances(tmp_path_factory):
    """systemd_instance() of trailhound@1 and trailhound@2, for the tests
    below. Each --check-config waits 10 s for the closed broker port (its
    metadata request's timeout): the two run side by side, once for the
    module (two tests made these four calls one after another, 40 s of the
    file's ~58 s)."""
    from concurrent.futures import ThreadPoolExecutor
    tmp = tmp_path_factory.mktemp("systemd")
    with ThreadPoolExecutor(2) as ex:
        one, two = ex.map(lambda instance: systemd_instance(tmp, instance), ("1", "2"))
    return {"1": one, "2": two}


def test_systemd_instances_get_distinct_metrics_ports(systemd_instances):
    # with one shared config, a metrics_listen there made the second instance
    # fail on the port (exit 4) and restart in a loop
    one, two = systemd_instances["1"], systemd_instances["2"]
    assert one["metrics_listen"] and two["metrics_listen"], (one.get("metrics_listen"), two.get("metrics_listen"))
    assert one["metrics_listen"] != two["metrics_listen"]
    assert one["transactional_id"] != two["transactional_id"]
    assert one["state_dir"] != two["state_dir"]
    known = binary_settings()
    for f in glob.glob(os.path.join(DEPLOY, "systemd", "*.env")):
        for var in re.findall(r"^(TRAILHOUND_[A-Z0-9_]+)=", open(f).read(), re.M):
            check_setting(env_setting(var), known, f"environment {var} in {os.path.basename(f)}")


def image_conf():
    """The configuration the image runs with: what the Dockerfile's build stage
    writes with `run --example-config --set ...`, made the same way here."""
    text = open(os.path.join(DEPLOY, "Dockerfile")).read()
    m = re.search(r"trailhound run --example-config((?:[^>\n]|\\\n)*)>\s*build/image\.conf", text)
    assert m, "the Dockerfile generates no configuration for the image"
    sets = re.findall(r"--set\s+(\S+)", m.group(1))
    assert sets, "the image's configuration sets nothing"
    assert "COPY --from=build /src/build/image.conf /etc/trailhound/trailhound.conf" in text
    args = [a for s in sets for a in ("--set", s)]
    return subprocess.run([BIN, "run", "--example-config"] + args, capture_output=True,
                          text=True, check=True).stdout


def test_image_reads_the_reference_data_where_it_is_mounted(tmp_path):
    """The Dockerfile says the reference data is mounted at
    /usr/share/trailhound/refdata; the image's own configuration must read it
    from there. It named neither file, so `docker run` with the data mounted
    exited 4: 'no reference data' (HOME holds no cached ASN database)."""
    shared = os.environ.get("TH_SHARED", os.path.join(SRC, "..", "shared", "data"))
    refdata = tmp_path / "refdata"
    refdata.mkdir()
    os.symlink(os.path.join(shared, "asn", "asn.mmdb"), refdata / "asn.mmdb")
    os.symlink(os.path.join(shared, "aws-ip-ranges", "ip-ranges.json"), refdata / "ip-ranges.json")
    conf = (image_conf().replace("/usr/share/trailhound/refdata", str(refdata))
            .replace("/usr/share/trailhound/alert.avsc", os.path.join(SRC, "schemas", "alert.avsc"))
            .replace("/var/lib/trailhound", str(tmp_path / "state")))
    (tmp_path / "state").mkdir()
    path = tmp_path / "image.conf"
    path.write_text(conf)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TRAILHOUND_") and k not in ("TH_ASN_DB", "TH_AWS_RANGES")}
    env["HOME"] = str(tmp_path)
    p = subprocess.run([BIN, "run", "-c", str(path), "--check-config",
                        "--set", "brokers=127.0.0.1:1"],
                       capture_output=True, text=True, env=env, timeout=120)
    out = p.stdout + p.stderr
    assert re.search(r"^ok +reference data: loaded", p.stdout, re.M), out
    effective = dict(re.findall(r'^([a-z0-9_.]+) = "(.*)"$', p.stdout, re.M))
    assert effective["asn_db"] == str(refdata / "asn.mmdb"), effective.get("asn_db")
    assert effective["aws_ranges"] == str(refdata / "ip-ranges.json"), effective.get("aws_ranges")


def duration_s(v):
    """A setting's duration (`<n>[ms|s|m|h|d]`, a bare number is seconds) or a
    supervisor's (`90s`, `90`) in seconds."""
    m = re.fullmatch(r"\s*(\d+)\s*(ms|s|m|h|d)?\s*", str(v))
    assert m, f"not a duration: {v!r}"
    return int(m.group(1)) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


# What the process needs after its stop limit to log and exit (the watchdog
# looks twice a second).
STOP_MARGIN_S = 10


def test_every_supervisor_waits_longer_than_the_stop_timeout(systemd_instances):
    """After SIGTERM each supervisor waits its grace period, then kills.
    stop_timeout bounds the worker's and the bridge's own stop (the watchdog
    ends a stop still running then, exit 5), so the grace must be longer: the
    worst stop with the brokers frozen (a commit timing out, then an abort, or
    librdkafka #5456's hang) took ~100 s, past the 90 s of the manifests and
    the 60 s of the systemd unit."""
    default = conf_value(open(os.path.join(DEPLOY, "trailhound.conf")).read(), "stop_timeout")
    assert default is not None, "deploy/trailhound.conf has no stop_timeout: an older binary?"

    def check(where, grace, stop_timeout):
        stop_timeout = default if stop_timeout is None else stop_timeout
        limit = duration_s(stop_timeout)
        assert limit > 0, f"{where}: stop_timeout 0 leaves the stop unbounded"
        assert duration_s(grace) >= limit + STOP_MARGIN_S, \
            f"{where}: grace {grace} does not exceed stop_timeout {stop_timeout} by {STOP_MARGIN_S} s"

    sts, c = worker_container()
    check("statefulset.yaml", sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
          effective_setting(configmap_conf(), c, "stop_timeout"))
    bridge = named("StatefulSet", "trailhound-bridge")
    (bc,) = bridge["spec"]["template"]["spec"]["containers"]
    check("bridge.yaml", bridge["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
          effective_setting(bridge_conf(), bc, "stop_timeout"))
    (compose,) = docs(os.path.join(DEPLOY, "compose", "docker-compose.yml"))
    for name, svc in compose["services"].items():
        if svc.get("image") != "trailhound:local":
            continue
        env = svc.get("environment") or {}
        conf = open(os.path.join(DEPLOY, "compose", "trailhound.conf")).read()
        check(f"docker-compose.yml {name}", svc.get("stop_grace_period", "10s"),
              env.get("TRAILHOUND_STOP_TIMEOUT", conf_value(conf, "stop_timeout")))
    unit = open(os.path.join(DEPLOY, "systemd/trailhound@.service")).read()
    grace = re.search(r"^TimeoutStopSec=(\S+)", unit, re.M)
    for instance in ("1", "2"):
        got = systemd_instances[instance]
        check(f"trailhound@{instance}", grace.group(1) if grace else "90s", got["stop_timeout"])

#!/usr/bin/env bash
# demo.sh - the README's main command: the streaming demo on a real local Kafka.
#
#   1. scripts/setup.sh (dependencies, build, reference data), if present
#   2. start the single-node Kafka 3.9.1 broker (scripts/kafka-local.sh)
#   3. create this run's topics: input (4 partitions), compacted state changelog
#      (4), alerts (4), dead letters (1)
#   4. generate the deterministic CloudTrail sample with attacks injected
#      (tools/gen_sample.py --seed 1) and its expected alerts
#   5. publish it with `trailhound produce` (one message per event, keyed by account)
#   6. run one `trailhound run` worker until it has caught up
#      (--exit-when-idle, --drain: held uses decided as at end of input)
#   7. print the alerts decoded from Avro (tools/print_alerts.py, read_committed)
#      and compare them with the generator's expected alerts
#   8. delete this run's topics and stop the broker
#
# Usage: scripts/demo.sh [--keep-broker] [--target-events N]
#   --keep-broker       leave the broker and this run's topics in place afterwards
#   --target-events N   sample size (default: the generator's, ~50k events)
#
# Idempotent: every run uses its own topic names, group, transactional.id and
# state directory. A broker that was already running is reused and left
# running (with --keep-broker or not); only a broker this script started is stopped.
#
# Environment:
#   BUILD_DIR      build directory (default build)
#   TH_SHARED      reference data directory (default ../shared/data next to the repo)
#   TH_ASN_DB      ASN .mmdb (default: TH_SHARED's, else scripts/build-asn-mmdb.sh's)
#   TH_AWS_RANGES  AWS ip-ranges.json (default: TH_SHARED's, if there)
#   TH_KAFKA_PORT, TH_CACHE_DIR, ...  see scripts/kafka-local.sh
#
# Exit code: 0 when the live pipeline produced exactly the expected alerts.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

KEEP_BROKER=0
TARGET_EVENTS=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --keep-broker) KEEP_BROKER=1 ;;
    --target-events) TARGET_EVENTS=(--target-events "${2:?--target-events needs a number}"); shift ;;
    -h|--help) sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

BUILD_DIR=${BUILD_DIR:-build}
export BUILD_DIR
BIN=$ROOT/$BUILD_DIR/trailhound
KAFKA=$ROOT/scripts/kafka-local.sh
PY=${PYTHON:-python3}

if [[ -t 1 ]]; then
  step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
else
  step() { printf '\n==> %s\n' "$*"; }
fi
say() { printf 'demo: %s\n' "$*"; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

# ---- 1. setup ---------------------------------------------------------------
if [[ -f scripts/setup.sh ]]; then
  step "setup (scripts/setup.sh)"
  bash scripts/setup.sh
fi
[[ -x $BIN ]] || die "$BIN not built (run scripts/setup.sh, or cmake --build $BUILD_DIR)"
if ! "$PY" -c 'import confluent_kafka, fastavro' 2>/dev/null; then
  say "installing the Python packages confluent-kafka and fastavro (to decode the alerts)"
  "$PY" -m pip install -q confluent-kafka fastavro 2>/dev/null ||
    "$PY" -m pip install -q --user --break-system-packages confluent-kafka fastavro ||
    die "cannot install confluent-kafka and fastavro with pip"
fi

# reference data
SHARED=${TH_SHARED:-$ROOT/../shared/data}
if [[ -d $SHARED ]]; then SHARED=$(cd "$SHARED" && pwd); fi
ASN_DB=${TH_ASN_DB:-}
if [[ -z $ASN_DB && -f $SHARED/asn/asn.mmdb ]]; then ASN_DB=$SHARED/asn/asn.mmdb; fi
if [[ -z $ASN_DB && -x scripts/build-asn-mmdb.sh ]]; then ASN_DB=$(scripts/build-asn-mmdb.sh); fi
[[ -n $ASN_DB && -f $ASN_DB ]] || die "no ASN database (set TH_ASN_DB)"
AWS_RANGES=${TH_AWS_RANGES:-}
if [[ -z $AWS_RANGES && -f $SHARED/aws-ip-ranges/ip-ranges.json ]]; then
  AWS_RANGES=$SHARED/aws-ip-ranges/ip-ranges.json
fi
[[ -n $AWS_RANGES ]] ||
  say "no ip-ranges.json (TH_AWS_RANGES): AWS addresses by Amazon's ASNs; alerts may differ from the expected ones"

# ---- 2. broker --------------------------------------------------------------
step "Kafka broker (scripts/kafka-local.sh)"
STARTED_BROKER=0
if "$KAFKA" status >/dev/null 2>&1; then
  say "reusing the running broker"
else
  "$KAFKA" start
  STARTED_BROKER=1
fi
BOOT=$("$KAFKA" bootstrap)

RUN=demo-$(date -u +%Y%m%dT%H%M%S)-$$
IN=trailhound-demo.cloudtrail.$RUN
OUT=trailhound-demo.alerts.$RUN
CL=trailhound-demo.state-changelog.$RUN
DL=trailhound-demo.dead-letter.$RUN
TOPICS=("$IN" "$OUT" "$CL" "$DL")
WORK=$ROOT/$BUILD_DIR/demo
rm -rf "$WORK"
mkdir -p "$WORK"

cleanup() {
  local rc=$?
  set +e
  if [[ $KEEP_BROKER == 1 ]]; then
    say "kept: broker on $BOOT, topics ${TOPICS[*]}, files in $WORK"
  else
    "$PY" - "$BOOT" "${TOPICS[@]}" <<'EOF' 2>/dev/null
import sys
from confluent_kafka.admin import AdminClient
a = AdminClient({"bootstrap.servers": sys.argv[1]})
have = a.list_topics(timeout=10).topics
mine = [t for t in sys.argv[2:] if t in have]
for f in (a.delete_topics(mine, operation_timeout=30).values() if mine else []):
    f.result()
EOF
    if [[ $STARTED_BROKER == 1 ]]; then
      step "stopping the broker"
      "$KAFKA" stop
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- 3. topics --------------------------------------------------------------
step "topics for run $RUN"
"$KAFKA" create-topic "$IN" 4
"$KAFKA" create-topic "$CL" 4 compact
"$KAFKA" create-topic "$OUT" 4
"$KAFKA" create-topic "$DL" 1

# ---- 4. sample --------------------------------------------------------------
step "generating the CloudTrail sample (tools/gen_sample.py --seed 1)"
"$PY" tools/gen_sample.py --seed 1 "${TARGET_EVENTS[@]}" --out "$WORK/sample.jsonl" \
  --expected "$WORK/expected.jsonl"

# ---- 5. produce -------------------------------------------------------------
step "publishing it to $IN (trailhound produce)"
"$BIN" produce -b "$BOOT" -t "$IN" "$WORK/sample.jsonl"

# ---- 6. the worker ----------------------------------------------------------
cat >"$WORK/trailhound.conf" <<EOF
# written by scripts/demo.sh for run $RUN (see: trailhound run --help-config)
brokers = "$BOOT"
group_id = "trailhound-demo.$RUN"
input_topics = "$IN"
output_topic = "$OUT"
changelog_topic = "$CL"
dead_letter_topic = "$DL"
transactional_id = "trailhound-demo.$RUN.worker-0"
state_dir = "$WORK/state"
schema_id = 1
asn_db = "$ASN_DB"
aws_ranges = "$AWS_RANGES"
EOF
step "running a worker until it has caught up (trailhound run -c $WORK/trailhound.conf)"
t0=$SECONDS
"$BIN" run -c "$WORK/trailhound.conf" --exit-when-idle 3000 --drain
say "worker finished in $((SECONDS - t0)) s"

# ---- 7. the alerts ----------------------------------------------------------
step "alerts committed to $OUT, decoded from Avro (tools/print_alerts.py)"
"$PY" tools/print_alerts.py -b "$BOOT" -t "$OUT" --expected "$WORK/expected.jsonl"

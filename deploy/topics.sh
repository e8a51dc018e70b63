#!/usr/bin/env bash
# Creates trailhound's topics (worker and bridge) on a cluster with Kafka's own tool:
#   deploy/topics.sh BOOTSTRAP [PARTITIONS] [REPLICATION]
# The changelog must have as many partitions as the input topic (co-partitioned)
# and be compacted; the input is partitioned by AWS account ID by the producer.
# The input keeps 35 days (the 30-day training window + held uses + margin: a
# replay from the beginning rebuilds the state; docs/operations.md, Topics).
set -euo pipefail
bootstrap=${1:?usage: topics.sh BOOTSTRAP [PARTITIONS] [REPLICATION]}
parts=${2:-12}
rf=${3:-3}
kt=${KAFKA_TOPICS:-kafka-topics.sh}
isr=()
if [ "$rf" -ge 3 ]; then isr=(--config min.insync.replicas=2); fi
create() { "$kt" --bootstrap-server "$bootstrap" --create --if-not-exists --topic "$1" \
    --partitions "$2" --replication-factor "$rf" "${isr[@]}" "${@:3}"; }
create cloudtrail "$parts" --config retention.ms=3024000000
create trailhound.state-changelog "$parts" --config cleanup.policy=compact \
    --config min.compaction.lag.ms=60000
create trailhound.alerts "$parts"
create trailhound.dead-letter "$parts" --config retention.ms=2592000000
# The bridge's ledger of files already published (one marker per S3 object;
# the bridge reads the last bridge_ledger_retention of it at start): compacted,
# and deleted after 90 days (every key is written once, so compaction alone
# never shrinks it; docs/bridge.md). A few partitions are plenty.
create trailhound.bridge-ledger 3 --config cleanup.policy=compact,delete \
    --config retention.ms=7776000000

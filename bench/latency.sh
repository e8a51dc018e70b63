#!/usr/bin/env bash
# produce -> alert latency of `trailhound run` at fixed input rates, default
# settings (commit_interval_ms 100): a benchmark, not a test.
#
#   bench/latency.sh [RATES] [SECONDS]     default 5000,20000,50000 and 20,15,10
#
# A paced producer (bench/latency.py produce, Python confluent-kafka) writes
# generated events at each rate in turn; one event in 50 is a remote use of a
# Lambda key issued and used inside just before, so each raises one alert.
# A read_committed consumer of the alert topic notes when each alert becomes
# visible; latency = that time - the record timestamp (CreateTime) of the
# event named by the alert's input.partition/offset. Prints p50/p99/max per
# rate; writes $BENCH_RESULTS/latency.json and latency.csv. Environment: see
# bench/lib.sh.
set -euo pipefail
BENCH_NAME=latency
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

RATES=${1:-5000,20000,50000}
SECONDS_PER=${2:-20,15,10}
RESULTS=${BENCH_RESULTS:-$(mktemp -d)}
mkdir -p "$RESULTS"
bench_check
bench_up
RUN=lat.$(date +%s).$$
IN=$RUN.in CL=$RUN.changelog OUT=$RUN.alerts DL=$RUN.dead-letter
WORK=$(mktemp -d)
WATCH_PID= WORKER_PID=
cleanup() {
	[[ -n $WATCH_PID ]] && kill "$WATCH_PID" 2>/dev/null
	[[ -n $WORKER_PID ]] && kill "$WORKER_PID" 2>/dev/null
	wait 2>/dev/null
	topics_delete "$IN" "$CL" "$OUT" "$DL"
	rm -rf "$WORK"
	bench_down
}
trap cleanup EXIT

topics_create "$IN:4" "$CL:4:compact" "$OUT:4" "$DL:1"
python3 bench/latency.py watch --bootstrap "$BOOT" --topic "$OUT" --stop "$WORK/stop" \
	--out "$WORK/watched.pkl" &
WATCH_PID=$!
worker_conf "$WORK/trailhound.conf" "$RUN" "$IN" "$CL" "$OUT" "$DL" "$RUN.worker-0" "$WORK/state"
"$BIN" run -c "$WORK/trailhound.conf" 2>"$WORK/run.log" &
WORKER_PID=$!
for _ in $(seq 300); do
	grep -q 'assigned [0-9]* partition' "$WORK/run.log" && break
	kill -0 "$WORKER_PID" 2>/dev/null || { cat "$WORK/run.log" >&2; die "worker exited"; }
	sleep 0.1
done
# Run-queue wait (ready to run, no CPU free) of the worker's main thread and of
# the broker's threads over the run, from /proc/*/schedstat (ns): on a shared
# machine the latency tail follows it.
rq_wait() { cat "$@" 2>/dev/null | awk '{ n += $2 } END { printf "%.0f", n / 1e6 }'; }
BROKER_PID=$("$KAFKA" pid || true)
W0=$(rq_wait "/proc/$WORKER_PID/schedstat")
B0=$(rq_wait /proc/"$BROKER_PID"/task/*/schedstat)
T0=$(now)
say "worker assigned; producing at $RATES events/s for $SECONDS_PER s"
python3 bench/latency.py produce --bootstrap "$BOOT" --topic "$IN" --rates "$RATES" \
	--seconds "$SECONDS_PER" --out "$WORK/produced.json"
W1=$(rq_wait "/proc/$WORKER_PID/schedstat")
B1=$(rq_wait /proc/"$BROKER_PID"/task/*/schedstat)
RQ_S=$(secs "$T0" "$(now)")
touch "$WORK/stop"
wait "$WATCH_PID"
WATCH_PID=
say "run-queue wait over $RQ_S s: worker main thread $((W1 - W0)) ms, broker threads $((B1 - B0)) ms"
echo "{\"seconds\": $RQ_S, \"worker_ms\": $((W1 - W0)), \"broker_ms\": $((B1 - B0)), \"load\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}" \
	>"$RESULTS/latency_rq.json"
kill -TERM "$WORKER_PID"
wait "$WORKER_PID" || say "worker exited $?"
WORKER_PID=
grep '\[stats\]' "$WORK/run.log" | tail -1 | sed 's/.*\[stats\] //' >"$RESULTS/latency_stats.txt"
say "worker [stats] $(cat "$RESULTS/latency_stats.txt")"
python3 bench/latency.py report --schema schemas/alert.avsc --produced "$WORK/produced.json" \
	--watched "$WORK/watched.pkl" --csv "$RESULTS/latency.csv" --summary "$RESULTS/latency.json"

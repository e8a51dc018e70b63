#!/usr/bin/env bash
# The stream worker's benchmarks on the local broker (benchmarks, not tests),
# in one command that writes docs/benchmarks.md and its plots (docs/bench/):
#
#   1. the same generated CloudTrail events read three ways, side by side:
#        kcat -C -e          raw read of the topic (the broker's and client's ceiling)
#        trailhound scan     the events as a file (the detector's own speed)
#        trailhound run      exactly-once worker, from assignment to caught up
#      and the ratios;
#   2. 2 workers in one group against 1 (launch -> the group's committed
#      offsets at the end of the topic, watched from outside);
#   3. `run` throughput against commit_interval_ms (--set commit_interval_ms=N);
#   4. produce -> alert latency at fixed input rates (bench/latency.sh);
#   5. RSS and LMDB bytes per key with 1M live Lambda keys, restore keys/s
#      (bench/state_keys.sh);
#   then bench/report.py writes the markdown and the PNG plots.
#
#   bench/stream.sh [EVENTS]      default 1000000 (>= 1M for the issue's target)
#
# Environment (and bench/lib.sh's): BENCH_OUT (markdown file, default
# docs/benchmarks.md; "-" = print the figures only), BENCH_PLOTS (default
# docs/bench), BENCH_KEYS (default 1000000), BENCH_INTERVALS (default
# "20 50 100 250 1000"), BENCH_REPEAT (runs per commit interval and per
# worker count, the median is shown; default 3), BENCH_RATES / BENCH_RATE_SECONDS (default
# 5000,20000,50000 and 20,15,10), BENCH_NOTE (a line for the doc, e.g. that
# the machine was shared). Needs kcat (scripts/setup.sh installs it); installs
# confluent-kafka, fastavro and matplotlib with pip when missing.
set -euo pipefail
BENCH_NAME=stream
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
T_START=$(now)

EVENTS=${1:-1000000}
KEYS=${BENCH_KEYS:-1000000}
INTERVALS=${BENCH_INTERVALS:-20 50 100 250 1000}
OUT_MD=${BENCH_OUT:-docs/benchmarks.md}
PLOTS=${BENCH_PLOTS:-docs/bench}
RESULTS=${BENCH_RESULTS:-$(mktemp -d)}
export BENCH_RESULTS=$RESULTS
mkdir -p "$RESULTS"
bench_check
command -v kcat >/dev/null || die "kcat not installed (scripts/setup.sh)"
python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install --quiet matplotlib >&2 ||
	say "matplotlib missing and pip failed: no plots"

# ---- broker ------------------------------------------------------------------
bench_up
RUN=bench.$(date +%s).$$
IN=$RUN.in OUT=$RUN.alerts DL=$RUN.dead-letter
TOPICS=("$IN" "$OUT" "$DL")
WORK=$(mktemp -d)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	# this run's topics (1M events are ~1.6 GB of broker log)
	if [[ -n ${BOOT_MAIN:-} ]]; then
		scale_kafka reset >&2 || true # died in the scaling section
		BOOT=$BOOT_MAIN
	fi
	topics_delete "${TOPICS[@]}"
	rm -rf "$WORK"
	[[ -n ${BENCH_RESULTS_KEEP:-} ]] || [[ $RESULTS != /tmp/tmp.* ]] || rm -rf "$RESULTS"
	bench_down
}
trap cleanup EXIT

# ---- the events: 30 accounts (the issue's corpus shape), cached --------------
CORPUS=$(bench_corpus stream "$EVENTS")
N=$(wc -l <"$CORPUS")
BYTES=$(stat -c %s "$CORPUS")

topics_create "$IN:4" "$OUT:4" "$DL:1"
say "producing $N events ($((BYTES / 1000000)) MB) to $IN"
"$BIN" produce -b "$BOOT" -t "$IN" "$CORPUS" 2> >(grep -v '^%' >&2)

# ---- kcat: raw read ----------------------------------------------------------
t0=$(now)
got=$(kcat -C -b "$BOOT" -t "$IN" -o beginning -e -q | wc -l)
KCAT_S=$(secs "$t0" "$(now)")
[[ $got == "$N" ]] || say "kcat read $got of $N messages"
say "kcat: $N in $KCAT_S s"

# ---- scan: the same events as a file, 1 job (as the worker) and all cores ----
scan_s() {
	local t0 rc=0
	t0=$(now)
	"$BIN" scan --asn-db "$ASN_DB" --aws-ranges "$AWS_RANGES" --quiet-rejects "$@" "$CORPUS" \
		>/dev/null 2>"$WORK/scan.err" || rc=$?
	# 1 = alerts raised (the corpus has attacks)
	[[ $rc -le 1 ]] || { cat "$WORK/scan.err" >&2; die "scan failed ($rc)"; }
	secs "$t0" "$(now)"
}
SCAN1_S=$(scan_s --jobs 1)
SCANN_S=$(scan_s)
say "scan: $SCAN1_S s (1 job), $SCANN_S s ($(nproc) jobs)"

# ---- run: exactly-once, from assignment to caught up --------------------------
# run_once NAME [ARGS]: its own group, changelog and state; sets R_MSGS R_S
# R_WALL R_USER R_SYS R_RSS R_STATS
run_once() {
	local name=$1
	shift
	TOPICS+=("$RUN.$name.changelog")
	topics_create "$RUN.$name.changelog:4:compact"
	worker_conf "$WORK/$name.conf" "$RUN.$name" "$IN" "$RUN.$name.changelog" "$OUT" "$DL" \
		"$RUN.$name.worker-0" "$WORK/state-$name"
	/usr/bin/time -f "%e %U %S %M" -o "$WORK/$name.time" \
		"$BIN" run -c "$WORK/$name.conf" --exit-when-idle 1000 --drain "$@" 2>"$WORK/$name.log" ||
		{ grep -v '^%' "$WORK/$name.log" >&2; die "run $name failed"; }
	read -r R_MSGS R_S <<<"$(caught_up "$WORK/$name.log")"
	[[ -n $R_S ]] || die "no 'caught up' line in the worker's log"
	[[ $R_MSGS == "$N" ]] || say "run $name processed $R_MSGS messages of $N"
	read -r R_WALL R_USER R_SYS R_RSS <"$WORK/$name.time"
	R_STATS=$(grep '\[stats\]' "$WORK/$name.log" | tail -1 | sed 's/.*\[stats\] //')
	rm -rf "$WORK/state-$name"
}
stat_of() { sed -n "s/.*[ ^]$1=\([0-9]*\).*/\1/p" <<<" $R_STATS"; }

run_once eos
RUN_S=$R_S RUN_WALL=$R_WALL RUN_USER=$R_USER RUN_SYS=$R_SYS RUN_RSS=$R_RSS STATS=$R_STATS
say "run: $N in $RUN_S s (process wall $RUN_WALL s, CPU $RUN_USER+$RUN_SYS s, RSS $RUN_RSS kB)"
say "run stats: $STATS"

# ---- throughput against commit_interval_ms -----------------------------------
# Each point is the median of BENCH_REPEAT runs (default 3): one run on a
# shared machine is noise.
REPEAT=${BENCH_REPEAT:-3}
median_line() { sort -t, -k2 -g | awk '{ l[NR] = $0 } END { print l[int((NR + 1) / 2)] }'; }
echo "commit_interval_ms,seconds,events_per_s,transactions,send_offsets_ms,commit_ms,detect_ms,consume_ms" \
	>"$RESULTS/commit.csv"
for ms in $INTERVALS; do
	for ((r = 0; r < REPEAT; r++)); do
		run_once "ci$ms-$r" --set "commit_interval_ms=$ms"
		echo "$ms,$R_S,$(rate "$N" "$R_S"),$(stat_of transactions),$(stat_of time.send_offsets_ms),$(stat_of time.commit_ms),$(stat_of time.detect_ms),$(stat_of time.consume_ms)" \
			>>"$WORK/ci$ms.csv"
		say "commit_interval_ms=$ms: $R_S s, $(rate "$N" "$R_S") events/s, $(stat_of transactions) transactions"
	done
	median_line <"$WORK/ci$ms.csv" >>"$RESULTS/commit.csv"
done

# ---- 2 workers in one group against 1 -----------------------------------------
# On the tests' broker (group.initial.rebalance.delay.ms 0) the first worker to
# join starts alone and the second's join rebalances both mid-run: with a
# topic read in ~3 s that measures the join, not two workers. So this section
# has a broker of its own with Kafka's default delay (3 s): a new group waits
# that long for more members, and workers launched together get their shares
# in one assignment. Timed from the first assignment until the group's
# committed offsets reach the end of every partition (seen from outside), then
# SIGTERM. A worker never exits on its own here: one leaving when its own
# partitions are done would hand them to the other mid-run.
SCALE_DIR="${TH_CACHE_DIR:-$HOME/.cache/trailhound}/kafka-run-scale"
scale_kafka() {
	TH_KAFKA_PORT=$((${TH_KAFKA_PORT:-19092} + 200)) TH_KAFKA_DIR=$SCALE_DIR \
		TH_KAFKA_GROUP_DELAY_MS=3000 "$KAFKA" "$@"
}
# the 1M-event topic is done with on the main broker: free it for the rest
topics_delete "${TOPICS[@]}"
TOPICS=()
scale_kafka reset >&2 # whatever an earlier run left, and its settings
scale_kafka start >&2
BOOT_MAIN=$BOOT
BOOT=$(scale_kafka bootstrap)
topics_create "$IN:4" "$OUT:4" "$DL:1"
"$BIN" produce -b "$BOOT" -t "$IN" "$CORPUS" 2> >(grep -v '^%' >&2)
PART_SIZES=$(python3 bench/kadmin.py "$BOOT" end-offsets "$IN")
say "partition sizes on the scaling broker: $PART_SIZES"
# group_run NAME WORKERS: sets G_S (seconds, first assignment -> all committed),
# G_CPU (CPU seconds, all workers), G_SPLIT, G_RESTORED
group_run() {
	local name=$1 k=$2 t0 i
	topics_create "$RUN.$name.changelog:4:compact"
	local pids=()
	t0=$(now)
	for ((i = 0; i < k; i++)); do
		worker_conf "$WORK/$name-$i.conf" "$RUN.$name" "$IN" "$RUN.$name.changelog" "$OUT" "$DL" \
			"$RUN.$name.worker-$i" "$WORK/state-$name-$i"
		/usr/bin/time -f "%U %S" -o "$WORK/$name-$i.time" \
			"$BIN" run -c "$WORK/$name-$i.conf" 2> >(stamp >"$WORK/$name-$i.log") &
		pids+=($!)
		PIDS+=($!)
	done
	local done_s
	done_s=$(python3 bench/kadmin.py "$BOOT" wait-committed "$RUN.$name" "$IN" "$t0" 600)
	# SIGTERM the workers themselves (time(1) passes no signal on)
	for p in "${pids[@]}"; do pkill -TERM -P "$p" -x trailhound || true; done
	for p in "${pids[@]}"; do wait "$p" || say "$name: a worker exited $?"; done
	sleep 0.2 # the stamped logs' last lines
	local first
	first=$(grep -h 'assigned [0-9]* partition' "$WORK/$name"-*.log | cut -d' ' -f1 | sort -g | head -1)
	[[ -n $first ]] || die "$name: no assignment in the workers' logs"
	G_S=$(awk -v t0="$t0" -v d="$done_s" -v a="$first" 'BEGIN { printf "%.3f", t0 + d - a }')
	G_CPU=0 G_SPLIT= G_RESTORED=0
	for ((i = 0; i < k; i++)); do
		local st
		st=$(grep '\[stats\]' "$WORK/$name-$i.log" | tail -1)
		G_SPLIT+="${G_SPLIT:+; }worker $i: $(sed -n 's/.* messages=\([0-9]*\).*/\1/p' <<<"$st") messages,"
		G_SPLIT+=" $(grep -c 'assigned [0-9]* partition' "$WORK/$name-$i.log" || true) assignment(s)"
		local restored
		restored=$(sed -n 's/.* restored_records=\([0-9]*\).*/\1/p' <<<"$st")
		G_RESTORED=$((G_RESTORED + ${restored:-0}))
		G_CPU=$(awk -v c="$G_CPU" -v u="$(cut -d' ' -f1 "$WORK/$name-$i.time" | tail -1)" \
			-v s="$(cut -d' ' -f2 "$WORK/$name-$i.time" | tail -1)" 'BEGIN { print c + u + s }')
		grep '\[stats\]' "$WORK/$name-$i.log" | tail -1 | sed "s/.*\[stats\] /$name worker $i: /" >&2
	done
	rm -rf "$WORK"/state-"$name"-*
}
# alternating, REPEAT times each; the median run of each
: >"$WORK/g1" && : >"$WORK/g2"
TWO_RESTORED=
for ((r = 0; r < REPEAT; r++)); do
	group_run "one$r" 1
	echo "x,$G_S,$G_CPU,$G_SPLIT" >>"$WORK/g1"
	group_run "two$r" 2
	echo "x,$G_S,$G_CPU,$G_SPLIT" >>"$WORK/g2"
	TWO_RESTORED+="${TWO_RESTORED:+ }$G_RESTORED"
	say "run $r: 1 worker $(tail -1 "$WORK/g1" | cut -d, -f2) s; 2 workers $G_S s ($G_SPLIT)"
done
IFS=, read -r _ ONE_S ONE_CPU _ <<<"$(median_line <"$WORK/g1")"
IFS=, read -r _ TWO_S TWO_CPU TWO_SPLIT <<<"$(median_line <"$WORK/g2")"
ONE_ALL=$(cut -d, -f2 "$WORK/g1" | paste -sd' ') TWO_ALL=$(cut -d, -f2 "$WORK/g2" | paste -sd' ')
say "1 worker: $ONE_S s ($(rate "$N" "$ONE_S")/s, CPU $ONE_CPU s); 2 workers: $TWO_S s ($(rate "$N" "$TWO_S")/s, CPU $TWO_CPU s) (medians of $REPEAT)"
scale_kafka reset >&2
BOOT=$BOOT_MAIN
BOOT_MAIN=

cat >"$RESULTS/stream.json" <<EOF
{"events": $N, "bytes": $BYTES, "kcat_s": $KCAT_S, "scan1_s": $SCAN1_S, "scann_s": $SCANN_S,
 "jobs": $(nproc), "run_s": $RUN_S, "run_wall_s": $RUN_WALL, "run_user_s": $RUN_USER,
 "run_sys_s": $RUN_SYS, "run_rss_kb": $RUN_RSS, "run_stats": "$STATS",
 "one_s": $ONE_S, "one_cpu_s": $ONE_CPU, "two_s": $TWO_S, "two_cpu_s": $TWO_CPU,
 "two_split": "$TWO_SPLIT", "repeat": $REPEAT, "one_all": "$ONE_ALL", "two_all": "$TWO_ALL",
 "two_restored_all": "$TWO_RESTORED", "part_sizes": "$PART_SIZES"}
EOF

# ---- latency and the state store at scale -------------------------------------
echo
bench/latency.sh "${BENCH_RATES:-5000,20000,50000}" "${BENCH_RATE_SECONDS:-20,15,10}"
echo
bench/state_keys.sh "$KEYS"

# ---- the figures, the doc, the plots -------------------------------------------
TOTAL_S=$(secs "$T_START" "$(now)")
python3 bench/report.py --results "$RESULTS" --out "$OUT_MD" --plots "$PLOTS" --total-s "$TOTAL_S" \
	--note "${BENCH_NOTE:-}"
say "total $TOTAL_S s"

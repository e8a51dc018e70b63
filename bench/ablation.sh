#!/usr/bin/env bash
# What each change of issue 7's stream loop bought (a benchmark that prints
# figures; it asserts nothing). The same events, one topic, `run` from
# assignment to caught up with a fresh group each time, in these builds and
# settings:
#
#   before      the worker as it was before the loop was restructured (commit
#               BEFORE_REV, built once in a worktree under the cache): commit
#               every 1000 messages, retry.backoff.ms 100, no metadata warm-up,
#               librdkafka's own prefetch refill
#   old knobs   this build with the old settings put back (batch_size 1000 and
#               commit_interval_ms at its maximum, 10 min: by count, not
#               time; producer retry.backoff.ms 100; consumer
#               queued.min.messages 100000, fetch.wait.max.ms 500): what the
#               code changes alone (metadata warm-up, prefetch wake-up) bought
#   -backoff    this build, defaults but producer retry.backoff.ms 100
#   -by-time    this build, defaults but commit every 1000 messages
#   -prefetch   this build, defaults but librdkafka's prefetch settings
#   now         this build with the defaults
#
# Each row is the median of REPEAT runs (default 3), by time.
#
#   bench/ablation.sh [EVENTS]        default 200000 (the first EVENTS events of
#                                     bench/stream.sh's corpus)
#
# Environment: BEFORE_REV (default 4002917~1), REPEAT, and bench/lib.sh's.
set -euo pipefail
BENCH_NAME=ablation
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

EVENTS=${1:-200000}
REPEAT=${REPEAT:-3}
BEFORE_REV=${BEFORE_REV:-4002917~1}
bench_check

# ---- the old build, once per revision ----------------------------------------
rev=$(git rev-parse --short "$BEFORE_REV")
OLD_SRC=$CACHE/ablation-$rev
OLD_BIN=$OLD_SRC/build/trailhound
if [[ ! -x $OLD_BIN ]]; then
	say "building $BEFORE_REV ($rev) in $OLD_SRC (once)"
	rm -rf "$OLD_SRC"
	git archive --prefix="ablation-$rev/" "$rev" | tar -x -C "$CACHE"
	cmake -S "$OLD_SRC" -B "$OLD_SRC/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build "$OLD_SRC/build" --target trailhound --parallel "$(nproc)" \
		>"$OLD_SRC/build.log" 2>&1 || { tail -20 "$OLD_SRC/build.log" >&2; die "building $rev failed"; }
fi

# ---- the events --------------------------------------------------------------
bench_up
RUN=ablation.$(date +%s).$$
IN=$RUN.in OUT=$RUN.alerts DL=$RUN.dead-letter
TOPICS=("$IN" "$OUT" "$DL")
WORK=$(mktemp -d)
cleanup() {
	topics_delete "${TOPICS[@]}"
	rm -rf "$WORK"
	bench_down
}
trap cleanup EXIT
CORPUS=$(bench_corpus stream 1000000)
head -n "$EVENTS" "$CORPUS" >"$WORK/events.jsonl"
N=$(wc -l <"$WORK/events.jsonl")
topics_create "$IN:4" "$OUT:4" "$DL:1"
"$BIN" produce -b "$BOOT" -t "$IN" "$WORK/events.jsonl" 2> >(grep -v '^%' >&2)

# one_run NAME BINARY [ARGS]: prints "seconds transactions send_offsets_ms commit_ms"
one_run() {
	local name=$1 bin=$2 msgs s stats
	shift 2
	TOPICS+=("$RUN.$name.changelog")
	topics_create "$RUN.$name.changelog:4:compact"
	worker_conf "$WORK/$name.conf" "$RUN.$name" "$IN" "$RUN.$name.changelog" "$OUT" "$DL" \
		"$RUN.$name.worker-0" "$WORK/state-$name"
	# the log's lines stamped with the wall clock (lib.sh's stamp)
	if ! "$bin" run -c "$WORK/$name.conf" --exit-when-idle 1000 --drain "$@" 2>&1 >/dev/null |
		stamp >"$WORK/$name.log"; then
		grep -v '^[0-9.]* %' "$WORK/$name.log" >&2
		die "run $name failed"
	fi
	rm -rf "$WORK/state-$name"
	read -r msgs s <<<"$(caught_up "$WORK/$name.log")"
	if [[ -z $s ]]; then
		# builds before 4002917 log no "from assignment to caught up" figure:
		# from the first assignment to the "caught up; exiting" line, which
		# follows the last message's commit by the idle second
		local t0 t1
		t0=$(sed -n 's/^\([0-9.]*\) .*assigned [1-9][0-9]* partition.*/\1/p' "$WORK/$name.log" | head -1)
		t1=$(sed -n 's/^\([0-9.]*\) .*caught up; exiting.*/\1/p' "$WORK/$name.log" | tail -1)
		[[ -n $t0 && -n $t1 ]] || die "run $name: no assignment or exit line in its log"
		s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a - 1.0 }')
	fi
	stats=$(grep '\[stats\]' "$WORK/$name.log" | tail -1)
	# (the phase times are not in the stats line of builds before 4002917: "-")
	local tx so cm
	tx=$(sed -n 's/.* transactions=\([0-9]*\).*/\1/p' <<<"$stats")
	so=$(sed -n 's/.*time.send_offsets_ms=\([0-9]*\).*/\1/p' <<<"$stats")
	cm=$(sed -n 's/.*time.commit_ms=\([0-9]*\).*/\1/p' <<<"$stats")
	printf '%s %s %s %s\n' "$s" "${tx:--}" "${so:--}" "${cm:--}"
}

# the settings before (words of --set options)
BACKOFF="--set kafka.producer.retry.backoff.ms=100"
BY_COUNT="--set batch_size=1000 --set commit_interval_ms=600000"
PREFETCH="--set kafka.consumer.queued.min.messages=100000"
PREFETCH+=" --set kafka.consumer.fetch.wait.max.ms=500"
rows=(
	"before|$OLD_BIN|"
	"old knobs|$BIN|$BY_COUNT $BACKOFF $PREFETCH"
	"-backoff|$BIN|$BACKOFF"
	"-by-time|$BIN|$BY_COUNT"
	"-prefetch|$BIN|$PREFETCH"
	"now|$BIN|"
)
printf '\n%d events, 4 partitions; median of %d runs each\n\n' "$N" "$REPEAT"
printf '| build, settings | assignment → caught up | events/s | transactions | %s |\n' \
	'send_offsets ms | commit ms'
printf '|---|---|---|---|---|---|\n'
i=0
for row in "${rows[@]}"; do
	IFS='|' read -r label bin args <<<"$row"
	: >"$WORK/r$i"
	for ((r = 0; r < REPEAT; r++)); do
		# shellcheck disable=SC2086 # args: words of --set options
		one_run "r$i-$r" "$bin" $args >>"$WORK/r$i"
	done
	read -r s tx so cm < <(sort -g "$WORK/r$i" |
		awk '{ l[NR] = $0 } END { print l[int((NR + 1) / 2)] }')
	printf '| %s | %.2f s | %s | %s | %s | %s |\n' "$label" "$s" "$(rate "$N" "$s")" "$tx" "$so" "$cm"
	i=$((i + 1))
done

#!/usr/bin/env bash
# One setting at two or more values, side by side (a benchmark that prints
# figures; it asserts nothing): `run --set SETTING=VALUE` on the same events,
# the values alternating round by round, each run with its own group,
# changelog and empty state dir, from assignment to caught up. Two inputs:
#   stream  bench/stream.sh's generated CloudTrail (ordinary traffic)
#   keys    bench/state_keys.sh's 1M distinct live Lambda keys (every event
#           a new key: the heaviest state-write load)
#
#   bench/setting_ab.sh SETTING "V1 V2 ..." [ROUNDS] [INPUTS]
#       ROUNDS default 3; INPUTS default "stream keys"
#   e.g. bench/setting_ab.sh commit_max_changes "8192 4096" 3
#
# Prints per run and then per value the medians: time from assignment to
# caught up, transactions, CPU (user + sys), max RSS and peak private
# (anonymous) resident memory, sampled every 0.2 s, and major page faults.
# BENCH_MEMLIMIT (MB) runs every worker inside a cgroup with that hard
# memory limit (as bench/state_keys.sh does). Environment:
# see bench/lib.sh; BENCH_EVENTS (stream events, default 1000000),
# BENCH_KEYS (default 1000000).
set -euo pipefail
BENCH_NAME=setting_ab
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
[[ $# -ge 2 ]] || die 'usage: bench/setting_ab.sh SETTING "V1 V2 ..." [ROUNDS] [INPUTS]'
SETTING=$1 VALUES=($2) ROUNDS=${3:-3} INPUTS=(${4:-stream keys})
EVENTS=${BENCH_EVENTS:-1000000} KEYS=${BENCH_KEYS:-1000000}
bench_check
bench_up
RUN=sab.$(date +%s).$$
WORK=$(mktemp -d)
TOPICS=()
cleanup() {
	topics_delete "${TOPICS[@]}"
	rm -rf "$WORK"
	bench_down
}
trap cleanup EXIT

one() { # INPUT VALUE ROUND: one worker run; appends a line to $WORK/INPUT.rows
	local in=$1 v=$2 r=$3 name="$1-$2-$3" cg= tpid wpid=
	local cl=$RUN.$name.changelog
	TOPICS+=("$cl")
	topics_create "$cl:4:compact"
	worker_conf "$WORK/$name.conf" "$RUN.$name" "$RUN.$in.in" "$cl" "$RUN.alerts" "$RUN.dl" \
		"$RUN.$name.w" "$WORK/state-$name"
	sync
	if [[ -n ${BENCH_MEMLIMIT:-} ]]; then
		cg=$(memcg_new "trailhound-sab-$$-$name" "$BENCH_MEMLIMIT")
		[[ -n $cg ]] || die "cannot make a memory cgroup here"
	fi
	(
		[[ -z $cg ]] || echo $BASHPID >"$cg/cgroup.procs"
		exec /usr/bin/time -f "%e %U %S %M %F" -o "$WORK/$name.time" "$BIN" run -c "$WORK/$name.conf" \
			--exit-when-idle 1000 --set "$SETTING=$v" 2>"$WORK/$name.log"
	) &
	tpid=$!
	wpid=$(child_of "$tpid" trailhound)
	[[ -n $wpid ]] && sample_rss "$wpid" "$WORK/$name.rss" &
	local spid=$!
	wait "$tpid" || { grep -v '^%' "$WORK/$name.log" | tail -20 >&2; die "run $name failed"; }
	wait "$spid" 2>/dev/null || true
	[[ -z $cg ]] || rmdir "$cg" 2>/dev/null || true
	local msgs s wall u sy rss majf anon tx
	read -r msgs s <<<"$(caught_up "$WORK/$name.log")"
	read -r wall u sy rss majf <"$WORK/$name.time"
	read -r anon _ <"$WORK/$name.rss" 2>/dev/null || anon=0
	tx=$(grep -o 'transactions=[0-9]*' "$WORK/$name.log" | tail -1 | cut -d= -f2)
	printf '%s %s %s %s %s %s %s %s %s\n' "$v" "${s:-nan}" "${msgs:-0}" "${tx:-0}" \
		"$(awk -v u="$u" -v s="$sy" 'BEGIN { print u + s }')" "$((rss / 1024))" "$((anon / 1024))" \
		"$majf" "$r" >>"$WORK/$in.rows"
	say "$in $SETTING=$v round $r: ${msgs:-0} messages in ${s:-?} s, $tx transactions," \
		"CPU $u+$sy s, max RSS $((rss / 1024)) MB, peak private $((anon / 1024)) MB, $majf major faults"
	rm -rf "$WORK/state-$name"
}

TOPICS+=("$RUN.alerts" "$RUN.dl")
topics_create "$RUN.alerts:4" "$RUN.dl:1"
for in in "${INPUTS[@]}"; do
	[[ $in == stream || $in == keys ]] || die "unknown input $in (stream, keys)"
	c=$(bench_corpus "$in" "$([[ $in == stream ]] && echo "$EVENTS" || echo "$KEYS")")
	TOPICS+=("$RUN.$in.in")
	topics_create "$RUN.$in.in:4"
	say "producing $(wc -l <"$c") events of $in"
	"$BIN" produce -b "$BOOT" -t "$RUN.$in.in" "$c" 2> >(grep -v '^%' >&2)
	for r in $(seq "$ROUNDS"); do
		# alternate which value goes first, so neither always runs on a warmer machine
		vals=("${VALUES[@]}")
		((r % 2 == 0)) && vals=($(printf '%s\n' "${VALUES[@]}" | tac))
		for v in "${vals[@]}"; do one "$in" "$v" "$r"; done
	done
	topics_delete "$RUN.$in.in"
done

echo
echo "$SETTING, $ROUNDS rounds, medians (load average $(cut -d' ' -f1-3 /proc/loadavg)):"
printf '| input | %s | assignment → caught up | transactions | CPU | max RSS | peak private | major faults |\n' "$SETTING"
echo '|---|---|---|---|---|---|---|---|'
for in in "${INPUTS[@]}"; do
	for v in "${VALUES[@]}"; do
		awk -v v="$v" -v input="$in" '
			function med(col,   n, i, j, t, a) {
				n = 0
				for (i = 1; i <= NR_; i++) a[++n] = row[i, col]
				for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
					if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
				return a[int((n + 1) / 2)]
			}
			$1 == v { NR_++; for (c = 2; c <= 8; c++) row[NR_, c] = $c }
			END {
				printf "| %s | %s | %s s (%s msgs) | %s | %s s | %s MB | %s MB | %s |\n", input, v,
					med(2), med(3), med(4), med(5), med(6), med(7), med(8)
			}' "$WORK/$in.rows"
	done
done

#!/usr/bin/env bash
# Restore speed of two builds side by side (a benchmark that prints figures;
# it asserts nothing): bench/state_keys.sh's 1M-key input and changelog are
# made once, then workers of build A and build B, alternating, each restore
# all 4 partitions into an empty state dir. One restore's speed moves by up
# to a third from run to run on a shared machine, so only rounds taken
# alternately, each after a sync, compare two builds.
#
#   bench/restore_ab.sh ROUNDS BIN_A BIN_B [KEYS]   (KEYS default 1000000)
#
# Prints per round: restore time (first "restoring" to last "restored" log
# line), records/s, the worker's CPU (user + sys) and max RSS. Environment:
# see bench/lib.sh.
set -euo pipefail
BENCH_NAME=restore_ab
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
[[ $# -ge 3 ]] || die "usage: bench/restore_ab.sh ROUNDS BIN_A BIN_B [KEYS]"
ROUNDS=$1 BIN_A=$(realpath "$2") BIN_B=$(realpath "$3") KEYS=${4:-1000000}
[[ -x $BIN_A && -x $BIN_B ]] || die "BIN_A and BIN_B must be trailhound binaries"
bench_check
bench_up
RUN=rab.$(date +%s).$$
IN=$RUN.in CL=$RUN.changelog OUT=$RUN.alerts DL=$RUN.dead-letter
WORK=$(mktemp -d)
cleanup() {
	topics_delete "$IN" "$CL" "$OUT" "$DL"
	rm -rf "$WORK"
	bench_down
}
trap cleanup EXIT
CORPUS=$(bench_corpus keys "$KEYS") # the same input as bench/state_keys.sh
topics_create "$IN:4" "$CL:4:compact" "$OUT:4" "$DL:1"
"$BIN" produce -b "$BOOT" -t "$IN" "$CORPUS" 2> >(grep -v '^%' >&2)
stamp() { while IFS= read -r l; do printf '%s %s\n' "$(date +%s.%N)" "$l"; done; }
# the changelog: one worker (this checkout's build) runs the input to its end
worker_conf "$WORK/w0.conf" "$RUN" "$IN" "$CL" "$OUT" "$DL" "$RUN.w0" "$WORK/state-w0"
"$BIN" run -c "$WORK/w0.conf" --exit-when-idle 1000 2>/dev/null
rm -rf "$WORK/state-w0"

one() { # NAME BIN: one restore by a new worker of BIN, in the same group
	local name=$1 bin=$2 r0 r1 n wall u s m
	sync
	worker_conf "$WORK/$name.conf" "$RUN" "$IN" "$CL" "$OUT" "$DL" "$RUN.$name" "$WORK/state-$name"
	/usr/bin/time -f "%e %U %S %M" -o "$WORK/$name.time" "$bin" run -c "$WORK/$name.conf" \
		--exit-when-idle 1000 2> >(stamp >"$WORK/$name.log")
	sleep 0.3 # the stamped log's last lines
	r0=$(grep -m1 ': restoring$' "$WORK/$name.log" | cut -d' ' -f1)
	r1=$(grep 'state records restored from' "$WORK/$name.log" | tail -1 | cut -d' ' -f1)
	n=$(grep -o 'restored_records=[0-9]*' "$WORK/$name.log" | tail -1 | cut -d= -f2)
	[[ -n $r0 && -n $r1 && -n $n ]] || { tail -20 "$WORK/$name.log" >&2; die "$name: no restore"; }
	read -r wall u s m < <(tail -1 "$WORK/$name.time")
	printf '%s: %s s, %s records/s, CPU %s s, max RSS %s MB\n' "$name" "$(secs "$r0" "$r1")" \
		"$(rate "$n" "$(secs "$r0" "$r1")")" "$(awk -v u="$u" -v s="$s" 'BEGIN { print u + s }')" \
		"$((m / 1024))"
	rm -rf "$WORK/state-$name"
}
for i in $(seq "$ROUNDS"); do
	one "A$i" "$BIN_A"
	one "B$i" "$BIN_B"
done

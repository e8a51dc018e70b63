#!/usr/bin/env bash
# The state store at scale (a benchmark, not a test): N distinct Lambda keys,
# each seen once inside its function (tools/gen_bench_events.py keys, all
# live: one hour of event time), through `trailhound run` with the defaults.
#
#   bench/state_keys.sh [KEYS]        default 1000000
#
# Measures
#   - the worker's max resident memory (/usr/bin/time %M) and, sampled from
#     /proc every 0.2 s, its peak anonymous and file-backed (LMDB map) parts;
#   - LMDB bytes per tracked key: the pages of the 4 partition stores' trees
#     (mdb_stat: branch + leaf + overflow pages x page size), the pages the
#     environments use (incl. free pages), and data.mdb's size on disk, each
#     divided by KEYS;
#   - the same input under hard memory limits (a cgroup around the worker,
#     BENCH_MEMLIMITS MB, default "300 512 768"; skipped where no cgroup can
#     be made): events processed within BENCH_MEMLIMIT_S (60) seconds, the
#     cgroup's peak charge, major page faults, OOM kills;
#   - restore from the changelog when the partitions move: a second worker,
#     same group, empty state dir, started after the first stopped; the time
#     from its first "restoring" log line to its last "restored" line (lines
#     stamped as they arrive), and the state records restored per second;
#     BENCH_RESTORE_ROUNDS (3) rounds, each a new worker, the median reported.
# Prints the figures; writes $BENCH_RESULTS/keys.json. Needs mdb_stat
# (lmdb-utils). Environment: see bench/lib.sh.
set -euo pipefail
BENCH_NAME=state_keys
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

KEYS=${1:-1000000}
RESULTS=${BENCH_RESULTS:-$(mktemp -d)}
mkdir -p "$RESULTS"
bench_check
command -v mdb_stat >/dev/null || apt-get install -y -q lmdb-utils >&2 || die "mdb_stat missing (lmdb-utils)"
bench_up
RUN=keys.$(date +%s).$$
IN=$RUN.in CL=$RUN.changelog OUT=$RUN.alerts DL=$RUN.dead-letter
WORK=$(mktemp -d)
cleanup() {
	topics_delete "$IN" "$CL" "$OUT" "$DL"
	[[ -n ${BENCH_KEEP:-} ]] && echo "kept $WORK" >&2 || rm -rf "$WORK"
	bench_down
}
trap cleanup EXIT

CORPUS=$(bench_corpus keys "$KEYS")
N=$(wc -l <"$CORPUS")
topics_create "$IN:4" "$CL:4:compact" "$OUT:4" "$DL:1"
say "producing $N events ($(($(stat -c %s "$CORPUS") / 1000000)) MB) to $IN"
"$BIN" produce -b "$BOOT" -t "$IN" "$CORPUS" 2> >(grep -v '^%' >&2)

# run_worker CONF LOG TIMEFILE RSSFILE [ARGS]: run to caught up; sample its RSS
run_worker() {
	local conf=$1 log=$2 tfile=$3 rss=$4
	shift 4
	/usr/bin/time -f "%e %U %S %M" -o "$tfile" \
		"$BIN" run -c "$conf" --exit-when-idle 1000 "$@" 2> >(stamp >"$log") &
	local tpid=$!
	local wpid
	wpid=$(child_of "$tpid" trailhound)
	[[ -n $wpid ]] && sample_rss "$wpid" "$rss" &
	local spid=$!
	wait "$tpid" || { grep -v '%' "$log" | tail -20 >&2; die "worker failed"; }
	wait "$spid" 2>/dev/null || true
	sleep 0.2 # the stamped log's last lines
}

# ---- worker A: the 1M keys into an empty store ------------------------------
worker_conf "$WORK/a.conf" "$RUN" "$IN" "$CL" "$OUT" "$DL" "$RUN.worker-0" "$WORK/state-a"
run_worker "$WORK/a.conf" "$WORK/a.log" "$WORK/a.time" "$WORK/a.rss" ${BENCH_WORKER_ARGS:-}
read -r A_WALL A_USER A_SYS A_RSS <"$WORK/a.time"
read -r A_ANON A_FILE <"$WORK/a.rss" 2>/dev/null || { A_ANON=0; A_FILE=0; }
read -r A_MSGS A_S <<<"$(caught_up "$WORK/a.log")"
say "worker A: $A_MSGS messages in $A_S s; max RSS $A_RSS kB (peak anon $A_ANON kB, file $A_FILE kB)"

# ---- LMDB: pages of the partition stores -----------------------------------
# lmdb_pages STATE_DIR: sets TREE ENVP ENTRIES DISK PSIZE over its partition stores
lmdb_pages() {
	local d s
	TREE=0 ENVP=0 ENTRIES=0 DISK=0 PSIZE=4096
	for d in "$1"/*/; do
		[[ -f $d/data.mdb ]] || continue
		s=$(mdb_stat -e "$d")
		PSIZE=$(awk '/Page size:/ { print $3 }' <<<"$s")
		ENVP=$((ENVP + $(awk '/Number of pages used:/ { print $5 }' <<<"$s")))
		TREE=$((TREE + $(awk '/Branch pages:|Leaf pages:|Overflow pages:/ { n += $3 } END { print n }' <<<"$s")))
		ENTRIES=$((ENTRIES + $(awk '/Entries:/ { print $2; exit }' <<<"$s")))
		DISK=$((DISK + $(du -k "$d/data.mdb" | cut -f1) * 1024))
	done
}
lmdb_pages "$WORK/state-a"
TREE_B=$((TREE * PSIZE)) ENV_B=$((ENVP * PSIZE))
say "LMDB: $ENTRIES records; tree $TREE_B B ($((TREE_B / KEYS)) B/key), env pages $ENV_B B" \
	"($((ENV_B / KEYS)) B/key), data.mdb on disk $DISK B ($((DISK / KEYS)) B/key)"

# ---- under a hard memory limit: the same keys, a cgroup around the worker ----
# A cgroup's limit counts what a container's does: the worker's private memory
# and the page cache it uses, the LMDB map's pages and the store's writes
# included; the kernel reclaims page cache before it kills. Each limit reads
# the input from the start (a new group and changelog) for at most
# BENCH_MEMLIMIT_S seconds. BENCH_MEMLIMITS="" skips this.
MEMLIMITS=${BENCH_MEMLIMITS-300 512 768}
MEMLIMIT_S=${BENCH_MEMLIMIT_S:-60}
LIMITED=()
for mb in $MEMLIMITS; do
	cg=$(memcg_new "trailhound-bench-$$-$mb" "$mb")
	if [[ -z $cg ]]; then
		say "no memory cgroup can be made here: the runs under a memory limit are skipped"
		break
	fi
	L=$RUN.mem$mb
	topics_create "$L.changelog:4:compact" "$L.alerts:4" "$L.dead-letter:1"
	worker_conf "$WORK/m$mb.conf" "$L" "$IN" "$L.changelog" "$L.alerts" "$L.dead-letter" "$L.worker" \
		"$WORK/state-m$mb"
	# -k: a worker deep in page faults may take long to stop
	/usr/bin/time -f "%e %F" -o "$WORK/m$mb.time" timeout -k 30 "$MEMLIMIT_S" \
		sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$cg" \
		"$BIN" run -c "$WORK/m$mb.conf" --exit-when-idle 1000 ${BENCH_WORKER_ARGS:-} \
		2> >(stamp >"$WORK/m$mb.log") || true
	sleep 0.2 # the stamped log's last lines
	# (time's first line says "Command exited with non-zero status" after the deadline)
	read -r M_WALL M_MAJFLT <<<"$(tail -1 "$WORK/m$mb.time")"
	read -r M_PEAK M_KILLS <<<"$(memcg_stat "$cg")"
	read -r M_MSGS M_S <<<"$(caught_up "$WORK/m$mb.log")"
	if [[ -z $M_MSGS ]]; then # stopped at the deadline: its last [stats] line
		M_MSGS=$(grep '\[stats\]' "$WORK/m$mb.log" | tail -1 | sed -n 's/.* messages=\([0-9]*\).*/\1/p')
		M_S=
	fi
	if [[ -n $M_S ]]; then when="caught up in $M_S s"; else when="not caught up after $M_WALL s"; fi
	say "memory limit $mb MB: ${M_MSGS:-0} of $N messages, $when; cgroup peak" \
		"$((M_PEAK >> 20)) MB, $M_MAJFLT major page faults, $M_KILLS OOM kill(s)"
	LIMITED+=("{\"limit_mb\": $mb, \"messages\": ${M_MSGS:-0}, \"caught_up_s\": ${M_S:-null}, \"wall_s\": $M_WALL, \"deadline_s\": $MEMLIMIT_S, \"peak_bytes\": $M_PEAK, \"major_faults\": $M_MAJFLT, \"oom_kills\": $M_KILLS}")
	rmdir "$cg" 2>/dev/null || true
	rm -rf "$WORK/state-m$mb"
	topics_delete "$L.changelog" "$L.alerts" "$L.dead-letter"
done

# ---- could dropping the map bound it? What one read maps back ---------------
# The largest partition store, its pages in the page cache as the worker left
# them: N random pages touched after madvise(MADV_DONTNEED) (bench/map_faultaround.py).
BIG=$(ls -S "$WORK"/state-a/*/data.mdb | head -1)
python3 bench/map_faultaround.py --json "$RESULTS/faultaround.json" "$BIG" 1 256 2048 >&2

# ---- restore: the partitions move to a worker with an empty state dir -------
# restore_run NAME [ARGS]: sets R_RECORDS R_S R_PARTS R_WALL R_RSS
restore_run() {
	local name=$1 r0 r1
	shift
	worker_conf "$WORK/$name.conf" "$RUN" "$IN" "$CL" "$OUT" "$DL" "$RUN.$name" "$WORK/state-$name"
	run_worker "$WORK/$name.conf" "$WORK/$name.log" "$WORK/$name.time" "$WORK/$name.rss" "$@"
	read -r R_WALL _ _ R_RSS <"$WORK/$name.time"
	read -r R_ANON R_FILE <"$WORK/$name.rss" 2>/dev/null || { R_ANON=0; R_FILE=0; }
	R_RECORDS=$(grep '\[stats\]' "$WORK/$name.log" | tail -1 | sed -n 's/.*restored_records=\([0-9]*\).*/\1/p')
	r0=$(grep -m1 ': restoring$' "$WORK/$name.log" | cut -d' ' -f1)
	r1=$(grep 'state records restored from' "$WORK/$name.log" | tail -1 | cut -d' ' -f1)
	R_PARTS=$(grep -c 'state records restored from' "$WORK/$name.log" || true)
	[[ -n $r0 && -n $r1 ]] || { grep -v '%' "$WORK/$name.log" | tail -20 >&2; die "no restore in $name's log"; }
	R_S=$(secs "$r0" "$r1")
	# the same keys as worker A's stores, written by the restore in key order
	local TREE ENVP ENTRIES DISK PSIZE
	lmdb_pages "$WORK/state-$name"
	R_TREE_B=$((TREE * PSIZE)) R_ENV_B=$((ENVP * PSIZE))
	rm -rf "$WORK/state-$name"
}
# Several rounds, each a new worker (and transactional id) with an empty state
# dir: one restore's speed moves with the machine (page-cache writeback, the
# broker's collector) by up to a third from run to run. The median round is
# the figure; each round is printed and kept.
ROUNDS=${BENCH_RESTORE_ROUNDS:-3}
R_ALL=()
for i in $(seq "$ROUNDS"); do
	# each round from the same start: the stores written before it (worker
	# A's, the last round's) on disk, not still being written back under it
	sync
	restore_run "worker-$i" ${BENCH_WORKER_ARGS:-}
	say "restore round $i: $R_RECORDS records of $R_PARTS partitions in $R_S s" \
		"($(rate "$R_RECORDS" "$R_S") records/s); process wall $R_WALL s, max RSS $R_RSS kB" \
		"(peak anon $R_ANON kB, file $R_FILE kB)"
	R_ALL+=("$R_S $R_RECORDS $R_PARTS $R_WALL $R_RSS $R_ANON $R_FILE")
done
# the median round by time (the middle one of an odd count, the slower middle of an even one)
read -r R_S_DEF RESTORED NPARTS B_WALL B_RSS B_ANON B_FILE \
	<<<"$(printf '%s\n' "${R_ALL[@]}" | sort -n -k1,1 | sed -n "$(((ROUNDS + 1) / 2))p")"
R_ROUNDS=$(printf '%s\n' "${R_ALL[@]}" | awk '{ printf "%s%s", (NR > 1 ? ", " : ""), $1 }')
say "restore (defaults), median of $ROUNDS: $RESTORED records of $NPARTS partitions in $R_S_DEF s" \
	"($(rate "$RESTORED" "$R_S_DEF") records/s); rounds: $R_ROUNDS s"
say "LMDB of a restored worker (the last round): tree $R_TREE_B B ($((R_TREE_B / KEYS)) B/key)," \
	"env pages $R_ENV_B B ($((R_ENV_B / KEYS)) B/key)"

cat >"$RESULTS/keys.json" <<EOF
{"keys": $KEYS, "events": $N, "run_messages": ${A_MSGS:-0}, "run_s": ${A_S:-0},
 "run_wall_s": $A_WALL, "run_cpu_s": $(awk -v u="$A_USER" -v s="$A_SYS" 'BEGIN { print u + s }'),
 "max_rss_kb": $A_RSS, "peak_anon_kb": $A_ANON, "peak_file_kb": $A_FILE,
 "lmdb_records": $ENTRIES, "page_size": $PSIZE, "lmdb_tree_bytes": $TREE_B, "lmdb_env_bytes": $ENV_B,
 "lmdb_disk_bytes": $DISK,
 "restored_records": ${RESTORED:-0}, "restore_partitions": $NPARTS, "restore_s": $R_S_DEF,
 "restore_rounds_s": [$R_ROUNDS],
 "restore_worker_wall_s": $B_WALL, "restore_worker_rss_kb": $B_RSS,
 "restore_peak_anon_kb": $B_ANON, "restore_peak_file_kb": $B_FILE,
 "restored_tree_bytes": ${R_TREE_B:-0}, "restored_env_bytes": ${R_ENV_B:-0},
 "memory_limited": [$(IFS=,; echo "${LIMITED[*]}")]}
EOF

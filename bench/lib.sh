# Shared by the stream benchmarks (bench/stream.sh, bench/latency.sh,
# bench/restore_ab.sh, bench/setting_ab.sh,
# bench/state_keys.sh); sourced, not run. Expects BENCH_NAME to be set.
#
# Environment: BUILD_DIR (default build), TH_KAFKA_PORT / TH_KAFKA_DIR /
# TH_CACHE_DIR (scripts/kafka-local.sh; a broker already running there is
# reused and left running, one started here is stopped), TH_SHARED (reference
# data, default ../shared/data next to the repo), BENCH_RESULTS (directory the
# figures go to as JSON/CSV for bench/report.py; default a temporary one).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-build}
BIN=$ROOT/$BUILD_DIR/trailhound
KAFKA=$ROOT/scripts/kafka-local.sh
CACHE="${TH_CACHE_DIR:-$HOME/.cache/trailhound}/bench"
SHARED=${TH_SHARED:-$ROOT/../shared/data}
[[ -d $SHARED ]] || SHARED=/work/shared/data
ASN_DB=${TH_ASN_DB:-$SHARED/asn/asn.mmdb}
AWS_RANGES=${TH_AWS_RANGES:-$SHARED/aws-ip-ranges/ip-ranges.json}

say() { printf '%s: %s\n' "$BENCH_NAME" "$*" >&2; }
die() { say "$*"; exit 1; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

bench_check() {
	[[ -x $BIN ]] || die "$BIN not built"
	[[ -s $ASN_DB ]] || die "no ASN database at $ASN_DB (TH_ASN_DB)"
	python3 -c 'import confluent_kafka, fastavro' 2>/dev/null ||
		python3 -m pip install --quiet confluent-kafka fastavro >&2 ||
		die "python3 needs confluent-kafka and fastavro (pip)"
}

# The broker: reuse a running one, else start it (and stop it in bench_down).
BENCH_STARTED=0
bench_up() {
	if ! "$KAFKA" status >/dev/null 2>&1; then
		"$KAFKA" start >&2
		BENCH_STARTED=1
	fi
	BOOT=$("$KAFKA" bootstrap)
}
bench_down() {
	if [[ $BENCH_STARTED == 1 ]]; then "$KAFKA" stop >&2 || true; fi
}

topics_create() { python3 "$ROOT/bench/kadmin.py" "$BOOT" create "$@"; }
topics_delete() { python3 "$ROOT/bench/kadmin.py" "$BOOT" delete "$@" 2>/dev/null || true; }

# worker_conf FILE GROUP INPUT CHANGELOG ALERTS DEADLETTER TRANSACTIONAL_ID STATE_DIR
worker_conf() {
	cat >"$1" <<EOF
brokers = "$BOOT"
group_id = "$2"
input_topics = "$3"
changelog_topic = "$4"
output_topic = "$5"
dead_letter_topic = "$6"
transactional_id = "$7"
state_dir = "$8"
schema_id = 1
asn_db = "$ASN_DB"
aws_ranges = "$AWS_RANGES"
EOF
}

# memcg_new NAME MB: a child of our own memory cgroup, limited to MB (cgroup
# v1's memory.limit_in_bytes or v2's memory.max); prints its directory, or
# nothing when this machine does not let us write one (no cgroup delegated).
memcg_new() {
	local name=$1 mb=$2 rel dir file
	rel=$(awk -F: '$2 == "memory" { print $3 }' /proc/self/cgroup)
	if [[ -n $rel ]]; then
		dir=/sys/fs/cgroup/memory${rel%/}/$name file=memory.limit_in_bytes
	else
		rel=$(awk -F: '$1 == "0" { print $3 }' /proc/self/cgroup)
		dir=/sys/fs/cgroup${rel%/}/$name file=memory.max
	fi
	mkdir -p "$dir" 2>/dev/null && echo $((mb << 20)) 2>/dev/null >"$dir/$file" && echo "$dir"
	return 0
}
# memcg_stat DIR: "PEAK_BYTES OOM_KILLS" of a cgroup from memcg_new
memcg_stat() {
	local peak kills
	peak=$(cat "$1/memory.max_usage_in_bytes" 2>/dev/null || cat "$1/memory.peak" 2>/dev/null || echo 0)
	kills=$(awk '$1 == "oom_kill" { print $2 }' "$1/memory.oom_control" "$1/memory.events" 2>/dev/null)
	echo "$peak ${kills:-0}"
}

# Prefix each line with the wall clock (s.µs): the worker's own log has
# whole seconds only, too coarse for a restore of a few seconds.
stamp() { while IFS= read -r l; do printf '%s %s\n' "$EPOCHREALTIME" "$l"; done; }

# "N messages in S s from assignment to caught up" of a worker's log: "N S"
caught_up() {
	sed -n 's/.*exiting: \([0-9]*\) messages in \([0-9.]*\) s from assignment.*/\1 \2/p' "$1" | tail -1
}

# sample_rss PID OUT: peak anonymous and file-backed resident memory of PID
# (kB, sampled every 0.2 s) until it exits, written to OUT as "ANON FILE"
sample_rss() {
	local pid=$1 out=$2 anon=0 file=0 a f
	while kill -0 "$pid" 2>/dev/null; do
		a=$(awk '/^RssAnon:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) || break
		f=$(awk '/^RssFile:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) || break
		((${a:-0} > anon)) && anon=$a
		((${f:-0} > file)) && file=$f
		sleep 0.2
	done
	echo "$anon $file" >"$out"
}

# child_of PID NAME: the process NAME started by PID (e.g. the worker under
# /usr/bin/time), waiting up to 5 s for it; nothing when it did not appear
child_of() {
	local c=
	for _ in $(seq 100); do
		c=$(pgrep -P "$1" -x "$2" || true)
		[[ -n $c ]] && break
		sleep 0.05
	done
	echo "$c"
}

# bench_corpus stream|keys N: the cached input file (generated once, kept in
# $CACHE, shared by the benchmarks). "stream": N events of generated
# CloudTrail, 30 accounts over 45 days (the issue's corpus shape); "keys": N
# distinct live Lambda keys, each used once inside its function
# (random-looking access keys: the "v2" in the name).
bench_corpus() {
	local kind=$1 n=$2 c
	case $kind in
	stream) c=$CACHE/stream-$n.jsonl ;;
	keys) c=$CACHE/keys-v2-$n.jsonl ;;
	*) die "bench_corpus: unknown kind $kind (stream, keys)" ;;
	esac
	if [[ ! -s $c ]]; then
		mkdir -p "$CACHE"
		say "generating $c (once)"
		if [[ $kind == stream ]]; then
			python3 "$ROOT/tools/gen_sample.py" --seed 3 --accounts 30 --days 45 \
				--target-events "$n" --out "$c.tmp" -q >&2
		else
			python3 "$ROOT/tools/gen_bench_events.py" keys --keys "$n" --out "$c.tmp" >&2
		fi
		mv "$c.tmp" "$c"
	fi
	echo "$c"
}

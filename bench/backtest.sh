#!/usr/bin/env bash
# Backtest throughput over an S3 trail archive on 1, 2 and all cores
# (`scan TREE --jobs N`). A benchmark that prints figures; it asserts nothing.
#
#   bench/backtest.sh [EVENTS] [RUNS]      (default 1000000 events, best of 2)
#
# The archive is the generator's corpus written as S3 lays it out
# (tools/s3_layout.py: one gzip file per account, region and 5-minute
# window), cached under ~/.cache/trailhound/bench/. Wall time is what a
# backtest waits for; each --jobs figure is the best of RUNS runs, and the
# alerts of every run are checked to be identical (a correctness guard of
# the benchmark itself, printed, not a test).
set -euo pipefail
cd "$(dirname "$0")/.."

events=${1:-1000000}
runs=${2:-2}
build=${BUILD_DIR:-build}
cache="${TH_CACHE_DIR:-$HOME/.cache/trailhound}/bench"
corpus="$cache/corpus-$events.jsonl"
tree="$cache/s3-tree-$events"
shared=${TH_SHARED:-$(cd .. && pwd)/shared/data}

mkdir -p "$cache"
if [ ! -s "$corpus" ]; then
	echo "bench: generating $corpus (once; ~20 s per million events)"
	python3 tools/gen_sample.py --seed 7 --accounts 12 --target-events "$events" \
		--out "$corpus.tmp" -q
	mv "$corpus.tmp" "$corpus"
fi
if [ ! -f "$tree/.complete" ]; then
	echo "bench: writing the S3 tree $tree (once)"
	rm -rf "$tree"
	python3 tools/s3_layout.py "$corpus" "$tree" --digest
	touch "$tree/.complete"
fi
[ -x "$build/trailhound" ] || cmake --build "$build" --target trailhound

ref=()
[ -f "$shared/asn/asn.mmdb" ] && ref+=(--asn-db "$shared/asn/asn.mmdb")
[ -f "$shared/aws-ip-ranges/ip-ranges.json" ] && ref+=(--aws-ranges "$shared/aws-ip-ranges/ip-ranges.json")
nfiles=$(find "$tree/AWSLogs" -path '*/CloudTrail/*' -name '*.json.gz' | wc -l)
mb=$(du -sm "$tree/AWSLogs" | cut -f1)
count=$(wc -l <"$corpus")
echo "bench: $count events in $nfiles files ($mb MB gzip), $(nproc) cores"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# best wall seconds of $runs runs of scan --jobs $1, and that run's CPU seconds
# (user + sys): on a shared machine the CPU figure shows what the split costs
best() {
	local b="" c="" w u s
	for _ in $(seq "$runs"); do
		/usr/bin/time -o "$out/time" -f '%e %U %S' "$build/trailhound" scan --no-progress \
			--quiet-rejects "${ref[@]}" --jobs "$1" "$tree/AWSLogs" \
			>"$out/alerts-$1" 2>"$out/err-$1" || true
		# the last line: time says "Command exited with non-zero status 1" first
		read -r w u s < <(tail -n1 "$out/time")
		if [ -z "$b" ] || [ "$(echo "$w < $b" | bc -l)" = 1 ]; then
			b=$w
			c=$(echo "$u + $s" | bc -l)
		fi
	done
	echo "$b $c"
}
echo "bench: load average $(cut -d' ' -f1-3 /proc/loadavg) before the runs"
base=""
for j in 1 2 "$(nproc)"; do
	[ "$j" = 2 ] && [ "$(nproc)" = 2 ] && [ -n "$base" ] && [ -f "$out/alerts-2" ] && continue
	read -r s c < <(best "$j")
	[ -z "$base" ] && base=$s
	same=$(cmp -s "$out/alerts-1" "$out/alerts-$j" && echo "same alerts" || echo "ALERTS DIFFER")
	printf 'scan --jobs %-3s %7.2f s wall %7.2f s CPU  %9.0f events/s  speed-up %.2fx  (%s, %s alerts)\n' \
		"$j" "$s" "$c" "$(echo "$count / $s" | bc -l)" "$(echo "$base / $s" | bc -l)" "$same" \
		"$(wc -l <"$out/alerts-$j")"
done
echo "bench: load average $(cut -d' ' -f1-3 /proc/loadavg) after the runs"

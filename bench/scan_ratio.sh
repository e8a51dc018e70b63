#!/usr/bin/env bash
# scan throughput next to parser-only throughput on the same generated corpus
# (>= 1M events), as a ratio: what state, enrichment and classification cost
# relative to parsing. A benchmark that prints figures; it asserts nothing.
#
#   bench/scan_ratio.sh [EVENTS] [RUNS]       (default 1000000 events, 3 runs)
#
# Both sides are the same binary over the same file (`scan --parse-only` vs
# `scan`), so file reading and framing cost the same on both; CPU time (user +
# sys) is compared, the least noisy figure on a shared machine, and the best
# run of each side is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

events=${1:-1000000}
runs=${2:-3}
build=${BUILD_DIR:-build}
cache="${TH_CACHE_DIR:-$HOME/.cache/trailhound}/bench"
corpus="$cache/corpus-$events.jsonl"
shared=${TH_SHARED:-$(cd .. && pwd)/shared/data}

mkdir -p "$cache"
if [ ! -s "$corpus" ]; then
	echo "bench: generating $corpus (once; ~20 s per million events)"
	python3 tools/gen_sample.py --seed 7 --accounts 12 --target-events "$events" \
		--out "$corpus.tmp" -q
	mv "$corpus.tmp" "$corpus"
fi
[ -x "$build/trailhound" ] || cmake --build "$build" --target trailhound

ref=()
[ -f "$shared/asn/asn.mmdb" ] && ref+=(--asn-db "$shared/asn/asn.mmdb")
[ -f "$shared/aws-ip-ranges/ip-ranges.json" ] && ref+=(--aws-ranges "$shared/aws-ip-ranges/ip-ranges.json")
count=$(wc -l <"$corpus")
bytes=$(stat -c %s "$corpus")

tf=$(mktemp)
trap 'rm -f "$tf"' EXIT
best() { # best CPU seconds (user + sys) of $runs runs of: trailhound scan "$@"
	local best="" t
	for _ in $(seq "$runs"); do
		/usr/bin/time -o "$tf" -f '%U %S' "$build/trailhound" scan --no-progress \
			--quiet-rejects "${ref[@]}" "$@" "$corpus" >/dev/null 2>&1 || true
		t=$(awk 'END {print $1 + $2}' "$tf")
		if [ -z "$best" ] || awk -v a="$t" -v b="$best" 'BEGIN {exit !(a < b)}'; then
			best=$t
		fi
	done
	echo "$best"
}

parse=$(best --parse-only)
full=$(best)
awk -v n="$count" -v b="$bytes" -v p="$parse" -v f="$full" 'BEGIN {
	printf "corpus: %d events, %.1f MB\n", n, b / 1e6
	printf "parser only : %8.0f events/s  %6.1f MB/s  (%.2f s CPU)\n", n / p, b / 1e6 / p, p
	printf "scan        : %8.0f events/s  %6.1f MB/s  (%.2f s CPU)\n", n / f, b / 1e6 / f, f
	printf "ratio scan/parser-only: %.2f (target >= 0.5)\n", p / f
}'

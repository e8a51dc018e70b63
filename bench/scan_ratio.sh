#!/usr/bin/env bash
# scan throughput next to parser-only throughput on the same generated corpus
# (>= 1M events), as a ratio: what state, enrichment and classification cost
# relative to parsing. A benchmark that prints figures; it asserts nothing.
#
#   bench/scan_ratio.sh [EVENTS] [PAIRS] [MIX]   (default 1000000 events, 5 pairs, mix "bench")
#
# MIX "bench": tools/gen_sample.py's own stream (12 accounts); target >= 0.7.
# MIX "lambda": tools/gen_lambda_heavy.py, about half of all events Lambda-
# credential calls (inside and remote), the rest other identities; target >= 0.6.
#
# Both sides are the same binary over the same file (`scan --parse-only` vs
# `scan`), so file reading and framing cost the same on both; CPU time (user +
# sys) is compared, the least noisy figure on a shared machine, and the best
# run pairs alternate and the median ratio is reported.
set -euo pipefail
cd "$(dirname "$0")/.."

events=${1:-1000000}
runs=${2:-5}
mix=${3:-bench}
build=${BUILD_DIR:-build}
cache="${TH_CACHE_DIR:-$HOME/.cache/trailhound}/bench"
shared=${TH_SHARED:-$(cd .. && pwd)/shared/data}

mkdir -p "$cache"
case "$mix" in
bench)
	corpus="$cache/corpus-$events.jsonl"
	target=0.7
	if [ ! -s "$corpus" ]; then
		echo "bench: generating $corpus (once; ~20 s per million events)"
		python3 tools/gen_sample.py --seed 7 --accounts 12 --target-events "$events" \
			--out "$corpus.tmp" -q
		mv "$corpus.tmp" "$corpus"
	fi
	;;
lambda)
	corpus="$cache/lambda-heavy-$events.jsonl"
	target=0.6
	if [ ! -s "$corpus" ]; then
		echo "bench: generating $corpus (once; ~10 s per million events)"
		python3 tools/gen_lambda_heavy.py --events "$events" --out "$corpus.tmp"
		mv "$corpus.tmp" "$corpus"
	fi
	;;
*)
	echo "usage: bench/scan_ratio.sh [EVENTS] [PAIRS] [bench|lambda]" >&2
	exit 2
	;;
esac
[ -x "$build/trailhound" ] || cmake --build "$build" --target trailhound

ref=()
[ -f "$shared/asn/asn.mmdb" ] && ref+=(--asn-db "$shared/asn/asn.mmdb")
[ -f "$shared/aws-ip-ranges/ip-ranges.json" ] && ref+=(--aws-ranges "$shared/aws-ip-ranges/ip-ranges.json")
count=$(wc -l <"$corpus")
bytes=$(stat -c %s "$corpus")

tf=$(mktemp)
trap 'rm -f "$tf"' EXIT
cpu() { # CPU seconds (user + sys) of one run of: trailhound scan "$@"
	/usr/bin/time -o "$tf" -f '%U %S' "$build/trailhound" scan --no-progress \
		--quiet-rejects "${ref[@]}" "$@" "$corpus" >/dev/null 2>&1 || true
	awk 'END {print $1 + $2}' "$tf"
}

# Alternate the two (A B A B ...) so drift in the machine's speed hits both
# alike; report the median of the per-pair ratios and of each side.
cpu --parse-only >/dev/null # warm the page cache
pairs=()
for _ in $(seq "$runs"); do
	p=$(cpu --parse-only)
	f=$(cpu)
	pairs+=("$p $f")
done
printf '%s\n' "${pairs[@]}" | awk -v n="$count" -v b="$bytes" -v mix="$mix" -v target="$target" '
	{ p[NR] = $1; f[NR] = $2; r[NR] = $1 / $2 }
	function median(a, k,   i, j, t) {
		for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++)
			if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
		return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
	}
	END {
		k = NR; mp = median(p, k); mf = median(f, k); mr = median(r, k)
		printf "mix %s; corpus: %d events, %.1f MB; %d alternating pairs of runs\n", mix, n, b / 1e6, k
		printf "parser only : %8.0f events/s  %6.1f MB/s  (median %.2f s CPU)\n", n / mp, b / 1e6 / mp, mp
		printf "scan        : %8.0f events/s  %6.1f MB/s  (median %.2f s CPU)\n", n / mf, b / 1e6 / mf, mf
		printf "ratio scan/parser-only: %.2f median of pairs, %.2f min, %.2f max (target >= %s)\n",
			mr, r[1], r[k], target
	}'

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
# sys) and wall time are compared (CPU is the least noisy figure on a shared machine), and the
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
run() { # "CPU-seconds wall-seconds" (CPU = user + sys) of one run of: trailhound scan "$@"
	/usr/bin/time -o "$tf" -f '%U %S %e' "$build/trailhound" scan --no-progress \
		--quiet-rejects "${ref[@]}" "$@" "$corpus" >/dev/null 2>&1 || true
	awk 'END {print $1 + $2, $3}' "$tf"
}

# Three figures, each against the parser alone (`--parse-only`, one thread):
#   - CPU, `scan --jobs 1`: detection's cost like for like (one thread each);
#   - CPU, `scan` as shipped (--jobs = cores): adds the cost of handing parsed
#     events to the partition threads;
#   - wall, `scan` as shipped: the events/s a user sees.
# Runs alternate (P J1 JN P J1 JN ...) so drift in the machine's speed hits
# all alike; the medians of the per-round ratios are reported.
run --parse-only >/dev/null # warm the page cache
rounds=()
for _ in $(seq "$runs"); do
	rounds+=("$(run --parse-only) $(run --jobs 1) $(run)")
done
printf '%s\n' "${rounds[@]}" | awk -v n="$count" -v b="$bytes" -v mix="$mix" -v target="$target" '
	{ pc[NR] = $1; pw[NR] = $2; c1[NR] = $3; cn[NR] = $5; wn[NR] = $6
	  r1[NR] = $1 / $3; rn[NR] = $1 / $5; rw[NR] = $2 / $6 }
	function median(a, k,   i, j, t) {
		for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++)
			if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
		return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
	}
	function verdict(r) { return r >= target ? "met" : "missed" }
	END {
		k = NR
		mpc = median(pc, k); mpw = median(pw, k); mc1 = median(c1, k); mcn = median(cn, k)
		mwn = median(wn, k); m1 = median(r1, k); mn = median(rn, k); mw = median(rw, k)
		printf "mix %s; corpus: %d events, %.1f MB; %d rounds (target >= %s)\n", mix, n, b / 1e6, k, target
		printf "parser only        : %8.0f events/s of CPU, %8.0f events/s wall (%.2f s CPU, %.2f s wall)\n", n / mpc, n / mpw, mpc, mpw
		printf "scan --jobs 1      : %8.0f events/s of CPU (%.2f s)\n", n / mc1, mc1
		printf "scan (as shipped)  : %8.0f events/s of CPU, %8.0f events/s wall (%.2f s CPU, %.2f s wall)\n", n / mcn, n / mwn, mcn, mwn
		printf "ratio, CPU, scan --jobs 1 / parser only : %.2f (%s)\n", m1, verdict(m1)
		printf "ratio, CPU, scan as shipped / parser only: %.2f (%s)\n", mn, verdict(mn)
		printf "ratio, wall events/s, scan as shipped / parser only: %.2f (%s)\n", mw, verdict(mw)
	}'

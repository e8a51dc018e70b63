#!/usr/bin/env bash
# Why detection costs what it does next to the parse: instructions and
# simulated cache misses per event of each phase of `scan --jobs 1`
# (reading and framing, parsing, detection), from valgrind's callgrind with
# its cache simulator, next to the same phases' CPU time measured natively.
# Deterministic counts, unlike timings: the same build on the same events
# gives the same figures. A benchmark's report, printed; it asserts nothing.
# Needs valgrind (Debian: valgrind).
#
#   bench/scan_cachesim.sh [EVENTS] [bench|lambda]   (default 1000000, bench)
#
# The events are the first EVENTS lines of bench/scan_ratio.sh's 1M-event
# corpus of that mix. The simulated caches are this machine's per core:
# L1d 48 KB (12-way) and L2 1 MB (16-way), valgrind's "D1" and "LL"; an L2
# miss goes to the shared L3 or memory.
set -euo pipefail
cd "$(dirname "$0")/.."

events=${1:-1000000}
mix=${2:-bench}
source bench/scan_lib.sh
scan_setup scan_cachesim.sh 1000000 "$mix" valgrind valgrind

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
head -n "$events" "$corpus" >"$tmp/events.jsonl"
n=$(wc -l <"$tmp/events.jsonl")
scan=("$build/trailhound" scan --no-progress --quiet-rejects "${ref[@]}")

# Native CPU time (user + sys) of the parser alone and of scan --jobs 1 on
# the slice, 5 alternating rounds, medians: the time side of the comparison.
tf="$tmp/time"
cpu() { cpu_of "$tf" "${scan[@]}" "$@" "$tmp/events.jsonl"; }
cpu --parse-only >/dev/null # warm the page cache
for _ in 1 2 3 4 5; do
	echo "$(cpu --parse-only) $(cpu --jobs 1)"
done >"$tmp/native"

valgrind --tool=callgrind --cache-sim=yes --D1=49152,12,64 --LL=1048576,16,64 \
	--callgrind-out-file="$tmp/cg.out" "${scan[@]}" --jobs 1 "$tmp/events.jsonl" \
	>/dev/null 2>"$tmp/valgrind.err" || true
grep -q "I *refs" "$tmp/valgrind.err" || {
	cat "$tmp/valgrind.err" >&2
	exit 1
}
callgrind_annotate --auto=no --inclusive=yes --show=Ir,D1mr,D1mw,DLmr,DLmw --threshold=100 \
	"$tmp/cg.out" >"$tmp/incl.txt" 2>/dev/null
callgrind_annotate --auto=no --inclusive=no --show=Ir,D1mr,D1mw,DLmr,DLmw --sort=D1mr --threshold=100 \
	"$tmp/cg.out" >"$tmp/self.txt" 2>/dev/null
echo "scan --jobs 1, mix $mix, first $n events of $(basename "$corpus")"
python3 bench/scan_cachesim.py --events "$n" --native "$tmp/native" "$tmp/incl.txt" "$tmp/self.txt"

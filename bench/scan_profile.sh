#!/usr/bin/env bash
# Where `scan`'s CPU goes, by step: reading, parsing, and each step of
# detection (bench/scan_profile.py), from `perf record` of one
# `scan --jobs 1` over the same corpus as bench/scan_ratio.sh. A benchmark's
# report, printed; it asserts nothing. Needs perf (Debian: linux-perf).
#
#   bench/scan_profile.sh [EVENTS] [bench|lambda]   (default 1000000, bench)
set -euo pipefail
cd "$(dirname "$0")/.."

events=${1:-1000000}
mix=${2:-bench}
source bench/scan_lib.sh
scan_setup scan_profile.sh "$events" "$mix" perf linux-perf

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# cpu-clock: no hardware counters in most VMs; DWARF stacks: the build keeps
# no frame pointers
/usr/bin/time -o "$tmp/time" -f '%U %S' perf record -q -o "$tmp/perf.data" -e cpu-clock -F 2000 \
	--call-graph dwarf,8192 "$build/trailhound" scan --no-progress --quiet-rejects \
	--jobs 1 "${ref[@]}" "$corpus" >/dev/null 2>"$tmp/err" || true
cpu=$(awk 'END {print $1 + $2}' "$tmp/time")
echo "scan --jobs 1, mix $mix, $(wc -l <"$corpus") events; CPU under perf ${cpu} s"
perf script -i "$tmp/perf.data" 2>/dev/null | python3 bench/scan_profile.py --cpu-seconds "$cpu"

#!/usr/bin/env bash
# Parser throughput on a generated corpus of 200k events (a benchmark, not a
# test). The corpus is cached: generating it takes longer than parsing it.
#
#   bench/run.sh [RUNS]          BUILD_DIR=build by default
#   bench/run.sh stream [EVENTS] only the stream worker's benchmarks (bench/stream.sh:
#                                writes docs/benchmarks.md and docs/bench/*.png)
#
# Build with -DTH_NATIVE=ON to see what the target's SIMD kernels give:
# simdjson On-Demand is compiled into our code, so without -march it runs its
# portable "fallback" kernel.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = stream ]; then
	shift
	exec bench/stream.sh "$@"
fi
runs=${1:-3}
build=${BUILD_DIR:-build}
cache="${TH_CACHE_DIR:-$HOME/.cache/trailhound}/bench"
corpus="$cache/corpus-200k.jsonl"

mkdir -p "$cache"
if [ ! -s "$corpus" ]; then
	echo "bench: generating $corpus (once)"
	python3 tools/gen_sample.py --seed 7 --target-events 200000 --out "$corpus.tmp" -q
	mv "$corpus.tmp" "$corpus"
fi
if [ ! -x "$build/bench_parse" ]; then
	echo "bench: building bench_parse in $build"
	cmake --build "$build" --target bench_parse
fi
"$build/bench_parse" "$corpus" "$runs"

# scan next to parser-only on the same >= 1M-event corpus, as a ratio, on
# both mixes: the benchmark corpus and the Lambda-heavy one (half the events
# Lambda-credential calls)
echo
bench/scan_ratio.sh "${SCAN_EVENTS:-1000000}" "${SCAN_PAIRS:-5}" bench
echo
bench/scan_ratio.sh "${SCAN_EVENTS:-1000000}" "${SCAN_PAIRS:-5}" lambda
# ... and the bench mix's measured limit: scan with no Lambda-credential call handled
echo
bench/scan_limit.sh "${SCAN_EVENTS:-1000000}" "${SCAN_PAIRS:-5}" bench

# backtest over an S3 tree of the same size on 1, 2 and all cores
echo
bench/backtest.sh "${SCAN_EVENTS:-1000000}"

# the stream worker (exactly-once) next to kcat and scan on the local broker
echo
bench/stream.sh "${STREAM_EVENTS:-1000000}"

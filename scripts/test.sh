#!/usr/bin/env bash
# test.sh - the README's test command (and all that CI runs): install and
# build (scripts/setup.sh), start the local Kafka broker (Kafka 3.9.1 jars
# from Maven Central, cached), run every test under CTest, then the unit,
# fuzz-replay, detection-case, end-to-end and Kafka tests again in an
# ASan+UBSan build.
# Exit code: non-zero if any test failed.
#
# Usage: scripts/test.sh [extra ctest arguments, e.g. -L unit]
#   TH_SKIP_SANITIZE=1   skip the sanitizer pass
#   TH_CRASH_EVENTS_SANITIZE=N   the crash test's sample size there (default 50000)
#   TH_KAFKA_PORT, TH_KAFKA_DIR  another local broker (scripts/kafka-local.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build}
export BUILD_DIR

./scripts/setup.sh

# ---- the real broker the Kafka tests need ---------------------------------
./scripts/kafka-local.sh start
trap './scripts/kafka-local.sh stop >/dev/null 2>&1 || true' EXIT

rc=0
# An empty test list is a broken build, not a pass.
ctest --test-dir "$BUILD_DIR" --output-on-failure --no-tests=error -j2 "$@" || rc=$?

# ---- sanitizers: the parser, state, config and detector paths -------------
if [ -z "${TH_SKIP_SANITIZE:-}" ] && [ $# -eq 0 ]; then
	asan=${BUILD_DIR}-asan
	[ -f "$asan/CMakeCache.txt" ] ||
		cmake -S . -B "$asan" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DTH_SANITIZE=ON >/dev/null
	cmake --build "$asan" --parallel "$(nproc)" >"$asan/build.log" 2>&1 ||
		{ cat "$asan/build.log" >&2; exit 1; }
	# Everything, the Kafka and end-to-end tests included (the worker binary
	# they start is the sanitized one). To keep CI time sane there, the big
	# sample (crash, fencing) has 50k events instead of 200k (rebalance keeps
	# 200k: with 50k one partition is too small for its scenario) and
	# the broker outages last 15 s instead of 25 (still longer than the
	# test's session and transaction timeouts), only with a batch in flight,
	# and of the bridge's two stops under a frozen broker only the shorter.
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
		TH_CRASH_EVENTS=${TH_CRASH_EVENTS_SANITIZE:-50000} TH_OUTAGE_S=15 TH_OUTAGE_QUICK=1 \
		ctest --test-dir "$asan" --output-on-failure --no-tests=error -j2 \
		-L 'unit|fuzz-replay|cases|e2e|kafka' || rc=$?
fi
exit "$rc"

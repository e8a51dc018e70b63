#!/bin/sh
# Run libFuzzer campaigns over the fuzz targets (see tests/fuzz.cmake).
#   tests/fuzz/run_campaign.sh SECONDS TARGET...
# Needs build-fuzz (TH_FUZZ=ON). Runs each target nice'd, two at a time,
# with -fork=1 -ignore_crashes=1 so a known crash does not end the run.
# New corpus: build-fuzz/corpus-<t>/; crashes: build-fuzz/crash/<t>/;
# log: build-fuzz/logs/<t>.log. Merge into the committed corpus afterwards
# with tests/fuzz/run_campaign.sh merge TARGET...
set -eu
cd "$(dirname "$0")/../.."
B=${BUILD_FUZZ:-build-fuzz}
SHARED=${TH_SHARED_DATA:-../shared/data}

opts() {
	case $1 in
	event_parse) echo "-dict=tests/fuzz/event.dict -max_len=65536" ;;
	pipeline) echo "-dict=tests/fuzz/pipeline.dict -max_len=65536" ;;
	config) echo "-dict=tests/fuzz/config.dict -max_len=8192" ;;
	awsranges) echo "-dict=tests/fuzz/awsranges.dict -max_len=65536" ;;
	*) echo "-max_len=8192" ;;
	esac
}
corpus() { [ "$1" = event_parse ] && echo event || echo "$1"; }

if [ "${1:-}" = merge ]; then
	shift
	for t in "$@"; do
		c=$(corpus "$t")
		# shellcheck disable=SC2046
		nice -n 10 "$B/tests/fuzz_$t" -merge=1 $(opts "$t") -timeout=30 \
			"tests/fuzz/corpus/$c" "$B/corpus-$t" >"$B/logs/$t.merge.log" 2>&1
		# CI replays every file: keep the dir under 2 MB by dropping the
		# largest inputs the merge added (named by their SHA-1; the
		# hand-made and seed inputs stay).
		python3 - "tests/fuzz/corpus/$c" <<'PY'
import os, re, sys
d = sys.argv[1]
files = [os.path.join(d, f) for f in os.listdir(d)]
total = sum(os.path.getsize(f) for f in files)
for f in sorted((f for f in files if re.fullmatch("[0-9a-f]{40}", os.path.basename(f))),
                key=os.path.getsize, reverse=True):
    if total <= 2_000_000:
        break
    total -= os.path.getsize(f)
    os.remove(f)
PY
		echo "$t: $(ls "tests/fuzz/corpus/$c" | wc -l) files, $(du -sh "tests/fuzz/corpus/$c" | cut -f1)"
	done
	exit 0
fi

secs=$1
shift
mkdir -p "$B/logs"
if [ -d "$SHARED" ]; then
	python3 tests/fuzz/make_seeds.py --shared "$SHARED" --out "$B/seeds" >/dev/null
fi
python3 tests/fuzz/make_seeds.py --stress --out "$B/seeds" >/dev/null
run() {
	t=$1
	c=$(corpus "$t")
	mkdir -p "$B/corpus-$t" "$B/crash/$t" "$B/seeds/$t"
	# shellcheck disable=SC2046
	nice -n 10 "$B/tests/fuzz_$t" -fork=1 -ignore_crashes=1 -max_total_time="$secs" \
		-timeout=30 -rss_limit_mb=2048 $(opts "$t") -artifact_prefix="$B/crash/$t/" \
		"$B/corpus-$t" "tests/fuzz/corpus/$c" "$B/seeds/$t" >"$B/logs/$t.log" 2>&1 || true
	echo "$t done: $(grep -c 'CRASH\|==ERROR\|deadly' "$B/logs/$t.log" || true) crash lines"
}
while [ $# -gt 0 ]; do
	run "$1" &
	if [ $# -gt 1 ]; then
		run "$2" &
		shift
	fi
	shift
	wait
done

# Shared by bench/scan_profile.sh, bench/scan_cachesim.sh and bench/scan_limit.sh;
# sourced, not run.
#
# scan_setup SCRIPT CORPUS_EVENTS MIX TOOL PACKAGE: checks that TOOL is
# installed (Debian PACKAGE), picks bench/scan_ratio.sh's corpus of MIX
# ("bench" or "lambda") and CORPUS_EVENTS events (generated there, once),
# builds the binary if needed. Sets: corpus, build, ref (the reference-data
# arguments of `trailhound scan`).
scan_setup() {
	local script=$1 events=$2 mix=$3 tool=$4 pkg=$5
	local cache="${TH_CACHE_DIR:-$HOME/.cache/trailhound}/bench"
	local shared=${TH_SHARED:-$(cd .. && pwd)/shared/data}
	build=${BUILD_DIR:-build}
	if ! command -v "$tool" >/dev/null; then
		echo "bench/$script: needs $tool (apt-get install $pkg)" >&2
		exit 2
	fi
	case "$mix" in
	bench) corpus="$cache/corpus-$events.jsonl" ;;
	lambda) corpus="$cache/lambda-heavy-$events.jsonl" ;;
	*)
		echo "usage: bench/$script [EVENTS] [bench|lambda]" >&2
		exit 2
		;;
	esac
	[ -s "$corpus" ] || bench/scan_ratio.sh "$events" 1 "$mix" >/dev/null
	[ -x "$build/trailhound" ] || cmake --build "$build" --target trailhound
	ref=()
	if [ -f "$shared/asn/asn.mmdb" ]; then
		ref+=(--asn-db "$shared/asn/asn.mmdb")
	fi
	if [ -f "$shared/aws-ip-ranges/ip-ranges.json" ]; then
		ref+=(--aws-ranges "$shared/aws-ip-ranges/ip-ranges.json")
	fi
}

# cpu_of TIMEFILE COMMAND...: CPU seconds (user + sys) of one run of COMMAND,
# its output discarded and its exit status ignored (scan exits 1 on alerts)
cpu_of() {
	local tf=$1
	shift
	/usr/bin/time -o "$tf" -f '%U %S' "$@" >/dev/null 2>&1 || true
	awk 'END {print $1 + $2}' "$tf"
}

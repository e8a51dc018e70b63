#!/usr/bin/env bash
# The measured limit behind bench/scan_ratio.sh's bench-mix target (a
# benchmark that prints figures; it asserts nothing): how close `scan` could
# get to the parser if handling a Lambda-credential call cost nothing. Two
# measurement builds of this source, made here from `git archive` with one
# line added to src/detect.c's process_call (the product's source is not
# touched; neither build is a correct program):
#
#   no-calls     process_call returns at once: every Lambda-credential call
#                ignored (no token or role looked up, nothing judged)
#   lookup-only  it returns right after looking up the call's role and token
#
# Then CPU (user + sys) of the parser alone and of `scan --jobs 1` in this
# build and in both measurement builds, alternating rounds, medians, and
# each as a ratio to the parser (the target: >= 0.7).
#
#   bench/scan_limit.sh [EVENTS] [ROUNDS] [bench|lambda]   (default 1000000 5 bench)
set -euo pipefail
cd "$(dirname "$0")/.."

events=${1:-1000000}
rounds=${2:-5}
mix=${3:-bench}
source bench/scan_lib.sh
scan_setup scan_limit.sh "$events" "$mix" /usr/bin/time time
cache="${TH_CACHE_DIR:-$HOME/.cache/trailhound}/bench"
count=$(wc -l <"$corpus")

rev=$(git rev-parse --short HEAD)
variant_bin() { # NAME LINE-AFTER-WHICH-TO-RETURN: prints the measurement build's binary
	local name=$1 anchor=$2 dir
	dir="$cache/scan-limit-$rev-$name"
	if [[ ! -x $dir/build/trailhound ]]; then
		echo "scan_limit: building the $name measurement build of $rev (once)" >&2
		rm -rf "$dir"
		mkdir -p "$dir"
		git archive HEAD | tar -x -C "$dir"
		python3 - "$dir/src/detect.c" "$anchor" <<'PY'
import sys
path, anchor = sys.argv[1], sys.argv[2]
src = open(path).read()
body = src.index("static int process_call(")
at = src.index(anchor, body) + len(anchor)
patched = src[:at] + "\n\tif (d)\n\t\treturn 0; /* bench/scan_limit.sh measurement build */" + src[at:]
open(path, "w").write(patched)
PY
		cmake -S "$dir" -B "$dir/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
			-DBUILD_TESTING=OFF >/dev/null
		cmake --build "$dir/build" --target trailhound >"$dir/build.log" 2>&1 ||
			{ tail -20 "$dir/build.log" >&2; exit 1; }
	fi
	echo "$dir/build/trailhound"
}
# the anchors: the end of the line opening process_call's body, and the end
# of the token lookup's error check
none_bin=$(variant_bin no-calls "const struct th_netinfo *ni, const struct th_input_ref *ref)
{")
lookup_bin=$(variant_bin lookup-only "if (tok_found < 0)
		return tok_found;")

tf=$(mktemp)
trap 'rm -f "$tf"' EXIT
cpu() { # BINARY ARGS...: CPU seconds of one scan of the corpus
	local bin=$1
	shift
	cpu_of "$tf" "$bin" scan --no-progress --quiet-rejects "${ref[@]}" "$@" "$corpus"
}
cpu "$build/trailhound" --parse-only >/dev/null # warm the page cache
for _ in $(seq "$rounds"); do
	echo "$(cpu "$build/trailhound" --parse-only) $(cpu "$build/trailhound" --jobs 1)" \
		"$(cpu "$lookup_bin" --jobs 1) $(cpu "$none_bin" --jobs 1)"
done | awk -v n="$count" -v mix="$mix" -v rev="$rev" '
	{ p[NR] = $1; s[NR] = $2; l[NR] = $3; z[NR] = $4 }
	function median(a, k,   i, j, t) {
		for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++)
			if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
		return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
	}
	END {
		k = NR; mp = median(p, k); ms = median(s, k); ml = median(l, k); mz = median(z, k)
		printf "mix %s, %d events, %d alternating rounds, CPU medians (%s)\n", mix, n, k, rev
		printf "%-40s %6.2f s\n", "parser only (--parse-only)", mp
		printf "%-40s %6.2f s  ratio %.2f\n", "scan --jobs 1, as shipped", ms, mp / ms
		printf "%-40s %6.2f s  ratio %.2f\n", "scan --jobs 1, calls end after lookup", ml, mp / ml
		printf "%-40s %6.2f s  ratio %.2f\n", "scan --jobs 1, no call handled", mz, mp / mz
	}'

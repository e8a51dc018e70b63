#!/usr/bin/env bash
# setup.sh - the one setup step behind both README commands: installs every
# build and test dependency from Debian's packages, builds into build/, and
# prepares the reference data. Safe to run again: packages already installed
# cost one dpkg-query, and the build and the data are incremental/cached.
#
# Usage: scripts/setup.sh
# Environment:
#   BUILD_DIR        build directory (default build)
#   TH_CACHE_DIR     cache root for reference data (default $HOME/.cache/trailhound)
#
# Runs as root on a fresh Debian 12 (as CI does); as another user it uses sudo
# for apt-get when packages are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build}

# Everything the build, the tests and the reference-data script need.
# python3-fastavro is not packaged in Debian 12; Java and Maven (for the local
# Kafka broker) come with the machine, not from here.
PACKAGES=(
	cmake ninja-build pkg-config g++
	librdkafka-dev libavro-dev libmaxminddb-dev liblmdb-dev lmdb-utils
	libsimdjson-dev libcmocka-dev zlib1g-dev libssl-dev uthash-dev libcurl4-openssl-dev
	libmicrohttpd-dev
	# promtool (checks the /metrics names in tests/kafka/test_kafka_metrics.py)
	prometheus
	clang-14 libclang-rt-14-dev
	libmaxmind-db-writer-perl mmdb-bin
	python3-pytest time kcat
)

say() { printf 'setup: %s\n' "$*"; }

missing=()
for pkg in "${PACKAGES[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
	[ "$status" = "install ok installed" ] || missing+=("$pkg")
done

if [ ${#missing[@]} -gt 0 ]; then
	say "installing ${missing[*]}"
	sudo=()
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null || { say "not root and no sudo: install ${missing[*]}" >&2; exit 1; }
		sudo=(sudo)
	fi
	# Only now: an update is the slow part, and needless when all is there.
	# dpkg is chatty even with -qq: its output goes to a log shown on failure.
	apt_log=$(mktemp)
	{ "${sudo[@]}" apt-get update -qq &&
		DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq \
			--no-install-recommends "${missing[@]}"; } >"$apt_log" 2>&1 ||
		{ cat "$apt_log" >&2; rm -f "$apt_log"; say "apt-get failed" >&2; exit 1; }
	rm -f "$apt_log"
else
	say "packages: all ${#PACKAGES[@]} installed"
fi

# fastavro (tests/test_avro_python.py) and confluent-kafka are not in Debian 12:
# pip, only when missing. Debian's own python3 refuses pip installs (PEP 668),
# so a failure here is reported but does not stop the build.
if ! python3 -c 'import fastavro, confluent_kafka' 2>/dev/null; then
	say "pip: installing fastavro confluent-kafka"
	python3 -m pip install --quiet fastavro confluent-kafka 2>/dev/null ||
		python3 -m pip install --quiet --break-system-packages fastavro confluent-kafka ||
		say "pip install failed: install fastavro and confluent-kafka for $(command -v python3) (a venv, or pip --break-system-packages)" >&2
else
	say "python: fastavro and confluent-kafka present"
fi

# moto[server] + boto3 (tests/kafka/test_kafka_bridge.py: S3, SQS and STS on a
# loopback port for `trailhound bridge`), from PyPI, only when missing.
if ! python3 -c 'import moto.server, boto3' 2>/dev/null; then
	say "pip: installing moto[server] boto3"
	python3 -m pip install --quiet 'moto[server]' boto3 2>/dev/null ||
		python3 -m pip install --quiet --break-system-packages 'moto[server]' boto3 ||
		say "pip install failed: install moto[server] and boto3 for $(command -v python3)" >&2
fi

# An existing build directory keeps the generator it was made with.
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
	say "configuring $BUILD_DIR (Ninja, RelWithDebInfo)"
	cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
say "building $BUILD_DIR"
# Quiet unless it fails: then the whole log, errors and warnings.
cmake --build "$BUILD_DIR" --parallel "$(nproc)" >"$BUILD_DIR/setup-build.log" 2>&1 ||
	{ cat "$BUILD_DIR/setup-build.log" >&2; say "build failed" >&2; exit 1; }

if [ -x scripts/build-asn-mmdb.sh ]; then
	asn_db=$(scripts/build-asn-mmdb.sh)
	say "reference data: ASN database $asn_db"
fi
say "done"

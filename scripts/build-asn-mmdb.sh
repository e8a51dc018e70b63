#!/usr/bin/env bash
# build-asn-mmdb.sh - build the ASN database trailhound's enrichment reads
# (enrich.asn_db), a GeoLite2-ASN-schema .mmdb, from the npm package
# @ip-location-db/asn, and print its path on stdout. Cached: once built for a
# version, a run only prints the path.
#
# Usage: scripts/build-asn-mmdb.sh [--force]
#   --force    rebuild even if the cached database is current
#
# Environment:
#   TH_CACHE_DIR     cache root (default $HOME/.cache/trailhound); output in $TH_CACHE_DIR/asn/
#   TH_ASN_VERSION   package version (default the pinned one below)
#
# Data licence: CC BY 4.0 - RouteViews (routeviews.org), DB-IP (db-ip.com,
# IP to ASN Lite) and the NRO (nro.net, RIR statistics), merged by
# sapics/ip-location-db. Attribution is required; web pages showing the data
# must link to https://db-ip.com/. The licence files are copied next to the
# database. The package README warns that its npm data has known errors:
# fine for tests and benchmarks; for production attribution rebuild from the
# upstream GitHub releases (same CSV format) or use a licensed ASN database.
#
# Needs: npm, perl with libmaxmind-db-writer-perl, tar, sha256sum, flock.
# Contacts only the npm registry.
set -euo pipefail

# ---- pinned version ----------------------------------------------------------
DEFAULT_VERSION=2.3.2026061719
# sha256 of ip-location-db-asn-2.3.2026061719.tgz (as in shared/data/asn/PROVENANCE.md);
# npm checks its own integrity hash too, this also catches a re-published version.
DEFAULT_SHA256=b9425daf2f011c28f8586685d4f89166e77627e2c15fd93c6262c3e2dead6153
PACKAGE=@ip-location-db/asn

VERSION=${TH_ASN_VERSION:-$DEFAULT_VERSION}
CACHE=${TH_CACHE_DIR:-$HOME/.cache/trailhound}/asn
OUT=$CACHE/asn.mmdb
STAMP=$CACHE/asn.mmdb.source
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WRITER=$HERE/../tools/build-asn-mmdb.pl

FORCE=0
case ${1:-} in
--force) FORCE=1 ;;
"") ;;
*)
	echo "usage: $0 [--force]" >&2
	exit 2
	;;
esac

log() { printf 'build-asn-mmdb: %s\n' "$*" >&2; }

mkdir -p "$CACHE"
# Two builds at once would race on the tarball and the output.
exec 9>"$CACHE/.lock"
flock 9

if [[ $FORCE == 0 && -s $OUT && -f $STAMP && $(<"$STAMP") == "$PACKAGE@$VERSION" ]]; then
	echo "$OUT"
	exit 0
fi

cat >&2 <<EOF
build-asn-mmdb: building from $PACKAGE@$VERSION. Data: CC BY 4.0, by RouteViews
  (routeviews.org), DB-IP (db-ip.com) and the NRO (nro.net), via sapics/ip-location-db.
  Attribution required; see the licence files copied to $CACHE/.
EOF

TGZ=$CACHE/ip-location-db-asn-$VERSION.tgz
if [[ ! -s $TGZ ]]; then
	log "downloading $PACKAGE@$VERSION"
	# npm prints the tarball name on stdout: keep ours for the result.
	(cd "$CACHE" && npm pack --silent "$PACKAGE@$VERSION" >&2)
fi
if [[ $VERSION == "$DEFAULT_VERSION" ]]; then
	if ! echo "$DEFAULT_SHA256  $TGZ" | sha256sum --check --status; then
		log "$TGZ: sha256 differs from the pinned $DEFAULT_SHA256"
		rm -f "$TGZ"
		exit 1
	fi
else
	log "unpinned version $VERSION: sha256 $(sha256sum "$TGZ" | cut -d' ' -f1)"
fi

SRC=$CACHE/package-$VERSION
if [[ ! -s $SRC/asn-ipv6.csv ]]; then
	rm -rf "$SRC.tmp"
	mkdir -p "$SRC.tmp"
	tar -xzf "$TGZ" -C "$SRC.tmp" --strip-components=1 \
		package/asn-ipv4.csv package/asn-ipv6.csv package/DBIP-LICENSE \
		package/ROUTEVIEWS-LICENSE package/NRO_LICENSE package/MODIFICATIONS
	rm -rf "$SRC"
	mv "$SRC.tmp" "$SRC"
fi

rm -f "$STAMP"
perl "$WRITER" "$SRC/asn-ipv4.csv" "$SRC/asn-ipv6.csv" "$OUT" "$VERSION"
cp "$SRC/DBIP-LICENSE" "$SRC/ROUTEVIEWS-LICENSE" "$SRC/NRO_LICENSE" "$SRC/MODIFICATIONS" "$CACHE/"
echo "$PACKAGE@$VERSION" >"$STAMP"
echo "$OUT"

#!/usr/bin/env bash
# Builds mPower custom-app tarballs (conduit.md §11) from already built binaries.
#
#   scripts/package.sh [-o OUTDIR] [-v VERSION] [-n NOTES] TARGET=BINARY...
#   scripts/package.sh -o build -v 1.2.0 mtcdt-mtcap=build/app-connect-armv5 mtcap3=build/app-connect-armv7
#
# Each TARGET gives OUTDIR/app-connect-<VERSION>-<TARGET>.tar.gz, flat: manifest.json,
# Install, Start, status.json, provisioning/p_manifest.json, config/app-connect.yml and
# the binary as app-connect. `make package` runs it for both gateway binaries.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
src="$here/packaging/mpower"
out="$here/build"
version=""
notes=""
while getopts "o:v:n:" opt; do
	case "$opt" in
	o) out="$OPTARG" ;;
	v) version="$OPTARG" ;;
	n) notes="$OPTARG" ;;
	*) exit 2 ;;
	esac
done
shift $((OPTIND - 1))
if (($# == 0)); then
	echo "usage: $0 [-o OUTDIR] [-v VERSION] [-n NOTES] TARGET=BINARY..." >&2
	exit 2
fi
if [[ -z "$version" ]]; then
	version="$(git -C "$here" describe --tags --always --dirty 2>/dev/null || echo dev)"
fi
version="${version#v}"
# app-manager compares AppVersion as a version: a bare commit id becomes 0.0.0-<id>.
if [[ ! "$version" =~ ^[0-9]+(\.[0-9]+)*([-+.][0-9A-Za-z.-]+)?$ ]]; then
	version="0.0.0-$version"
fi
[[ -n "$notes" ]] || notes="app-connect $version"

json_escape() { sed -e 's/\\/\\\\/g' -e 's/"/\\"/g'; }

mkdir -p "$out"
for arg in "$@"; do
	target="${arg%%=*}"
	bin="${arg#*=}"
	if [[ "$target" == "$arg" || -z "$target" || ! -f "$bin" ]]; then
		echo "package: $arg: want TARGET=BINARY with an existing binary" >&2
		exit 1
	fi
	stage="$(mktemp -d)"
	trap 'rm -rf "$stage"' EXIT
	mkdir -p "$stage/config" "$stage/provisioning"
	v="$(printf '%s' "$version" | json_escape)"
	n="$(printf '%s' "$notes" | json_escape)"
	sed -e "s|@VERSION@|$v|" -e "s|@NOTES@|$n|" "$src/manifest.json.in" >"$stage/manifest.json"
	install -m 0755 "$src/Install" "$src/Start" "$stage/"
	install -m 0644 "$src/status.json" "$stage/status.json"
	install -m 0644 "$src/provisioning/p_manifest.json" "$stage/provisioning/p_manifest.json"
	install -m 0644 "$src/app-connect.yml" "$stage/config/app-connect.yml"
	install -m 0755 "$bin" "$stage/app-connect"
	tarball="$out/app-connect-$version-$target.tar.gz"
	tar -C "$stage" --owner=0 --group=0 --numeric-owner --sort=name \
		-czf "$tarball" manifest.json Install Start status.json provisioning config app-connect
	rm -rf "$stage"
	trap - EXIT
	echo "package: $tarball ($(du -k "$tarball" | cut -f1) KiB)"
done

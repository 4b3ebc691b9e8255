#!/usr/bin/env bash
# Installs what app-connect's tests need, only when it is missing. Idempotent and
# fast when everything is present: no apt-get update unless a package must be installed.
set -euo pipefail

STATICCHECK_VERSION="${STATICCHECK_VERSION:-v0.7.0}"

# Debian package -> a file it installs (cheap presence check without dpkg-query per package).
declare -A PKG_FILE=(
	[mosquitto]=/usr/sbin/mosquitto
	[mosquitto-clients]=/usr/bin/mosquitto_pub
	[gcc-arm-linux-gnueabi]=/usr/bin/arm-linux-gnueabi-gcc
	[gcc-arm-linux-gnueabihf]=/usr/bin/arm-linux-gnueabihf-gcc
	[libc6-dev-armel-cross]=/usr/arm-linux-gnueabi/lib/libc.a
	[libc6-dev-armhf-cross]=/usr/arm-linux-gnueabihf/lib/libc.a
	[qemu-user-static]=/usr/bin/qemu-arm-static
	[prometheus]=/usr/bin/promtool  # promtool checks monitoring/ (alert rules, exporter output)
	[e2fsprogs]=/usr/sbin/mkfs.ext4 # make faults: the power-cut case's ext4 image
	[mount]=/usr/sbin/losetup       # make faults: its loop device
)

missing=()
for pkg in "${!PKG_FILE[@]}"; do
	[[ -e "${PKG_FILE[$pkg]}" ]] || missing+=("$pkg")
done

if ((${#missing[@]} > 0)); then
	echo "install-test-deps: installing ${missing[*]}"
	SUDO=""
	if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Debian package enables and starts a system mosquitto on 1883 under systemd;
# tests never use it (they start their own on free ports), so it is left alone.

GOBIN="$(go env GOPATH)/bin"
if ! "$GOBIN/staticcheck" -version 2>/dev/null | grep -q "${STATICCHECK_VERSION#v}"; then
	echo "install-test-deps: installing staticcheck ${STATICCHECK_VERSION}"
	GOFLAGS= go install "honnef.co/go/tools/cmd/staticcheck@${STATICCHECK_VERSION}"
fi
echo "install-test-deps: all present"

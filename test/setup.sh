#!/usr/bin/env bash
# Installs what building, testing and the demo need on Debian 12, when it is
# missing.  Works as root or as a user with sudo; prints what it installs.
#
#   test/setup.sh [EXTRA_PACKAGE ...]    (the benchmarks add their peers)
set -euo pipefail

PACKAGES=(build-essential pkg-config rsync
	postgresql-15 postgresql-server-dev-15 postgresql-contrib
	libgd-dev libcurl4-openssl-dev libipc-run-perl fonts-dejavu-core
	fonts-wqy-microhei pngcheck
	"$@")

if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi

missing=()
for p in "${PACKAGES[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

if [ ${#missing[@]} -gt 0 ]; then
	echo "setup: installing ${missing[*]}"
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 update -qq
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq \
		--no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's postgresql-15 package creates and starts a cluster of its own;
# the tests and the demo run throwaway clusters instead, so it may stay.
echo "setup: dependencies present"

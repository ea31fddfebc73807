#!/usr/bin/env bash
# Builds (once) and caches a chroot of one Debian suite with that suite's
# PostgreSQL server, server headers, libgd, libcurl and the Perl TAP
# modules; tests run as the server package's "postgres" user.
#
#   test/matrix/chroot.sh SUITE        prints the chroot's path
#
# $MATRIX_CACHE/SUITE/base.tar.gz is the bare debootstrap (minbase) result,
# the "clean" system that the package test unpacks afresh; $MATRIX_CACHE/
# SUITE/root is the build chroot made from it.  Both stay until removed by
# hand (rm -rf $MATRIX_CACHE/SUITE), and a finished chroot is marked by
# root/.metric_anomaly-ready, so an interrupted build starts again.
# Runs as root (debootstrap, chroot).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/common.sh"

suite="$1"
version="$(suite_version "$suite")"
dir="$MATRIX_CACHE/$suite"
root="$dir/root"

from=""
[ "$suite" = experimental ] && from="/experimental"

# A cached chroot gets what the package list gained since it was built.
if [ -f "$root/.metric_anomaly-ready" ]; then
	missing=""
	for p in $(build_packages "$version" | sed 's|/[a-z]*||g'); do
		chroot "$root" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing="$missing $p"
	done
	if [ -n "$missing" ]; then
		echo "matrix: adding$missing to the $suite chroot" >&2
		prepare_chroot "$root"
		mount_chroot "$root"
		trap 'umount_chroot "$root"' EXIT
		in_chroot "$root" "apt-get update -qq && apt-get install -y -qq --no-install-recommends$(echo "$missing" | sed "s|\(postgresql-[a-z-]*$version\)|\1$from|g") && apt-get clean" \
			>>"$dir/build.log" 2>&1 || { tail -n 30 "$dir/build.log" >&2; exit 1; }
	fi
	echo "$root"
	exit 0
fi

mkdir -p "$dir"
log="$dir/build.log"
: >"$log"
start=$(date +%s)

# experimental holds only the packages that are newer than sid: it is sid
# plus an apt source pinned low, from which the 19 packages are taken.
base_suite="$suite"
[ "$suite" = experimental ] && base_suite=sid

if [ ! -f "$dir/base.tar.gz" ]; then
	rm -rf "$dir/base"
	echo "matrix: debootstrap $base_suite into $dir/base" >&2
	debootstrap --variant=minbase "$base_suite" "$dir/base" "$MATRIX_MIRROR" >>"$log" 2>&1 || {
		tail -n 30 "$log" >&2
		exit 1
	}
	if [ "$suite" = experimental ]; then
		echo "deb $MATRIX_MIRROR experimental main" >"$dir/base/etc/apt/sources.list.d/experimental.list"
	fi
	in_chroot "$dir/base" "apt-get clean" >>"$log" 2>&1
	tar -C "$dir/base" -czf "$dir/base.tar.gz.part" .
	mv "$dir/base.tar.gz.part" "$dir/base.tar.gz"
	rm -rf "$dir/base"
fi

umount_chroot "$root" 2>/dev/null || true
rm -rf "$root"
mkdir -p "$root"
tar -C "$root" -xzf "$dir/base.tar.gz"
prepare_chroot "$root"

mount_chroot "$root"
trap 'umount_chroot "$root"' EXIT
echo "matrix: installing PostgreSQL $version and the build dependencies in $root" >&2
if ! in_chroot "$root" "apt-get -o Dpkg::Options::=--force-confold update -qq &&
	apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confold $(build_packages "$version" "$from" | tr -s ' \n\t' ' ') &&
	apt-get clean &&
	mkdir -p /home/builder && chown postgres:postgres /home/builder" >>"$log" 2>&1; then
	tail -n 30 "$log" >&2
	exit 1
fi
touch "$root/.metric_anomaly-ready"
echo "matrix: chroot $suite (PostgreSQL $version) built in $(( $(date +%s) - start )) s" >&2
echo "$(( $(date +%s) - start ))" >"$dir/build-seconds"
echo "$root"

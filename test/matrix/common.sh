# Shared by the matrix scripts: which Debian suite carries which PostgreSQL,
# where the chroots are cached, and how to run a command inside one.
#
# Debian ships one server version per suite.  PostgreSQL 14 and 16 are in
# no suite that Debian still serves, so the matrix cannot build them.

MATRIX_CACHE="${MATRIX_CACHE:-/var/cache/metric_anomaly-matrix}"
MATRIX_MIRROR="${MATRIX_MIRROR:-http://deb.debian.org/debian}"

# suite:version, in matrix order.  experimental carries the 19 beta on top
# of sid.
MATRIX_ALL="bullseye:13 bookworm:15 trixie:17 sid:18 experimental:19"

# Versions whose failure fails the matrix; the others are printed only.
MATRIX_REQUIRED="${MATRIX_REQUIRED:-13 15 17 18}"

suite_version() {
	local pair
	for pair in $MATRIX_ALL; do
		if [ "${pair%%:*}" = "$1" ]; then echo "${pair#*:}"; return 0; fi
	done
	echo "matrix: unknown suite $1" >&2
	return 1
}

version_suite() {
	local pair
	for pair in $MATRIX_ALL; do
		if [ "${pair#*:}" = "$1" ]; then echo "${pair%%:*}"; return 0; fi
	done
	echo "matrix: no suite carries PostgreSQL $1" >&2
	return 1
}

# The packages a build chroot gets for PostgreSQL $1 (the same list as
# test/setup.sh, plus what building the Debian package needs).  libssl-dev:
# 13's common/sha2.h includes OpenSSL's header.  $2 (/experimental) picks
# the suite of the server packages alone: everything else comes from the
# base suite (apt's -t experimental would also take newer perl and break).
build_packages() {
	echo "build-essential pkg-config rsync
		postgresql-$1${2:-} postgresql-server-dev-$1${2:-} postgresql-server-dev-all
		libpq5${2:-} libpq-dev${2:-}
		libgd-dev libcurl4-openssl-dev libssl-dev libipc-run-perl fonts-dejavu-core
		fonts-wqy-microhei pngcheck
		debhelper dpkg-dev fakeroot"
}

# Mounts what PostgreSQL needs inside the chroot at $1 (/proc for ps and
# /proc/self, /dev for /dev/shm and /dev/null); umount_chroot undoes it.
# A lock file per chroot keeps two runs from sharing one.
mount_chroot() {
	local root="$1" m
	for m in proc dev dev/pts dev/shm; do
		mkdir -p "$root/$m"
		mountpoint -q "$root/$m" || mount --bind "/$m" "$root/$m"
	done
}

umount_chroot() {
	local root="$1" m
	for m in dev/shm dev/pts dev proc; do
		if mountpoint -q "$root/$m"; then
			umount "$root/$m" 2>/dev/null || umount -l "$root/$m"
		fi
	done
}

# Makes apt in the chroot at $1 accept Release files past their Valid-Until
# date (sid and experimental carry one a week ahead; a machine whose clock
# is ahead of the mirror's would otherwise refuse them), and keeps services
# from starting and postgresql-common from creating a "main" cluster: the
# tests make throwaway clusters of their own.
prepare_chroot() {
	local root="$1"
	echo 'Acquire::Check-Valid-Until "false";' >"$root/etc/apt/apt.conf.d/99metric-anomaly-matrix"
	printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
	chmod 755 "$root/usr/sbin/policy-rc.d"
	mkdir -p "$root/etc/postgresql-common"
	echo "create_main_cluster = false" >"$root/etc/postgresql-common/createcluster.conf"
}

# Runs a shell command line inside the chroot $1 as root.
in_chroot() {
	local root="$1"
	shift
	chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
		HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
		/bin/sh -c "$*"
}

# Runs a shell command line inside the chroot $1 as the unprivileged
# "postgres" user that Debian's server package creates (PostgreSQL refuses
# to run as root), as make test does on the host.  The trees live in
# /home/builder, owned by that user.
as_builder() {
	local root="$1"
	shift
	chroot --userspec=postgres:postgres "$root" /usr/bin/env -i \
		PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/home/builder LANG=C.UTF-8 \
		/bin/sh -c "$*"
}

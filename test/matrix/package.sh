#!/usr/bin/env bash
# Builds the Debian package postgresql-V-metric-anomaly in the build chroot
# of SUITE (its tree at /home/builder/src), installs it with apt and its
# dependencies into a clean chroot of the suite (the bare debootstrap,
# unpacked afresh), and runs the pg_regress suite there against the
# installed package.
#
#   test/matrix/package.sh SUITE BUILD_ROOT LOG_DIR
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/common.sh"

suite="$1" root="$2" log="$3"
version="$(suite_version "$suite")"
TEST_DEPS="gcc libc6-dev libgd-dev pkg-config rsync pngcheck fonts-wqy-microhei"
# experimental: the server and libpq from there, the rest from sid
[ "$suite" != experimental ] || TEST_DEPS="$TEST_DEPS postgresql-$version/experimental libpq5/experimental"

# Build as the unprivileged user, in a copy of the tree: dpkg-buildpackage
# writes the .deb next to the source directory.
rm -rf "$root/home/builder/deb"
in_chroot "$root" "mkdir /home/builder/deb && cp -a /home/builder/src /home/builder/deb/metric-anomaly-0.2.0 &&
	chown -R postgres:postgres /home/builder/deb"
as_builder "$root" "cd /home/builder/deb/metric-anomaly-0.2.0 && make -s clean >/dev/null 2>&1;
	PG_SUPPORTED_VERSIONS=$version make -s deb"
deb="$(cd "$root/home/builder/deb" && ls postgresql-"$version"-metric-anomaly_*.deb)"
cp "$root/home/builder/deb/$deb" "$log/"
echo "package: built $deb"

# A clean chroot: the bare system, the package, apt resolving the rest,
# and what the tests themselves need (debian/tests/control): the chart test
# compiles a PNG decoder with libgd to read pixels back.
clean="$(mktemp -d "$MATRIX_CACHE/$suite/clean.XXXXXX")"
cleanup() {
	umount_chroot "$clean"
	rm -rf "$clean"
}
trap cleanup EXIT
tar -C "$clean" -xzf "$MATRIX_CACHE/$suite/base.tar.gz"
prepare_chroot "$clean"
mount_chroot "$clean"
cp "$log/$deb" "$clean/tmp/"
in_chroot "$clean" "apt-get update -qq && apt-get install -y -qq --no-install-recommends \
	-o Dpkg::Options::=--force-confold /tmp/$deb $TEST_DEPS >/dev/null &&
	mkdir -p /home/builder && chown postgres:postgres /home/builder"
echo "package: installed $deb and its dependencies in a clean $suite chroot"
in_chroot "$clean" "dpkg -l | awk '/^ii/ {print \$2}' | grep -E 'postgresql|libgd|libcurl' | tr '\n' ' '"
echo

# pg_regress from the server package; the tests, their expected output and
# the sources that the chart test compiles into stand-alone drawing
# programs from the tree.  The extension under test is the package's: no
# object of the tree is copied, and nothing of it is installed here.
mkdir -p "$clean/home/builder/t"
rsync -a --exclude '*.o' --exclude '*.so' --exclude '*.bc' "$root/home/builder/src"/ "$clean/home/builder/t"/
cp "$clean/home/builder/t/test/regress.conf" "$clean/home/builder/t/regress.conf"
in_chroot "$clean" "chown -R postgres:postgres /home/builder/t"
tests="$(cd "$clean/home/builder/t/sql" && ls *.sql | grep -v '^metric_anomaly--' | sed 's/\.sql$//' | tr '\n' ' ')"
pg_regress="/usr/lib/postgresql/$version/lib/pgxs/src/test/regress/pg_regress"
as_builder "$clean" "cd /home/builder/t && test -x $pg_regress &&
	$pg_regress --bindir=/usr/lib/postgresql/$version/bin --inputdir=. \
		--temp-instance=/home/builder/t/tmp --temp-config=regress.conf $tests" || {
	cat "$clean/home/builder/t/regression.diffs" 2>/dev/null | head -n 80
	exit 1
}

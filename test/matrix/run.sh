#!/usr/bin/env bash
# make test-matrix: builds the tree against the PostgreSQL of each Debian
# suite, inside that suite's chroot (test/matrix/chroot.sh, cached), runs
# pg_regress and the TAP suite there as an unprivileged user, builds the
# Debian package and runs pg_regress against it installed in a clean chroot
# of the suite.  Prints one line per version and how long each part took.
#
#   test/matrix/run.sh [--tap=all|none|V,V] [--no-package] [VERSION ...]
#
# VERSION picks versions (13 15 17 18 19; default all).  --tap says on which
# versions the TAP suite runs (default all).  Exits non-zero when a version
# of $MATRIX_REQUIRED fails; the others (the 19 beta) are printed only.
# MATRIX_TAP_RETRY=1 runs the TAP files that failed once more, and a pass
# then is printed as PASSED ONLY ON RETRY with the files' names (CI: a
# flaky test is reported without stopping every merge).
# MATRIX_TAP_EXCLUDE="13:007_pg_upgrade ..." leaves TAP files out on a
# version, and the result line says so (CI: the known failures, see
# README.md).  With MATRIX_CHROOT_FAILURE_FATAL=0 (CI) a chroot that cannot be built
# (no mirror) is reported and skipped instead, and MATRIX_BUDGET=SECONDS
# starts no version after that many seconds (reported as not run).
# Runs as root (debootstrap, chroot, mount).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tree="$(cd "$here/../.." && pwd)"
. "$here/common.sh"

tap=all
package=yes
versions=()
for a in "$@"; do
	case "$a" in
		--tap=*) tap="${a#--tap=}" ;;
		--no-package) package=no ;;
		-h|--help) sed -n '2,14p' "$0"; exit 0 ;;
		*) versions+=("$a") ;;
	esac
done
if [ ${#versions[@]} -eq 0 ]; then
	for pair in $MATRIX_ALL; do versions+=("${pair#*:}"); done
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "matrix: must run as root (debootstrap, chroot, mount --bind)" >&2
	exit 2
fi
command -v debootstrap >/dev/null || {
	echo "matrix: installing debootstrap"
	apt-get -o DPkg::Lock::Timeout=900 install -y -qq debootstrap >/dev/null
}

out="${MATRIX_OUT:-$tree/test/matrix/out}"
rm -rf "$out"
mkdir -p "$out"

wants_tap() {
	case "$tap" in
		all) return 0 ;;
		none) return 1 ;;
		*) [[ ",$tap," == *",$1,"* ]] ;;
	esac
}

required() {
	[[ " $MATRIX_REQUIRED " == *" $1 "* ]]
}

# The last line of $1 matching $2, or $3.
summary() {
	local s
	s="$(grep -E "$2" "$1" 2>/dev/null | tail -n 1 | sed 's/^# //')"
	echo "${s:-$3}"
}

# Runs the TAP files $3 in the chroot $1 against pg_config $2, log to $4.
tap_run() {
	as_builder "$1" "cd /home/builder/src && make -s installcheck PG_CONFIG=$2 REGRESS= PROVE_TESTS='$3'" >"$4" 2>&1
}

# The TAP files that prove's summary lists as failed in log $1.
failed_tap_files() {
	grep -E '^test/t/[^ ]+\.pl +\(Wstat' "$1" | awk '{print $1}' | sort -u | tr '\n' ' '
}

mounted=()
cleanup() {
	local r
	for r in "${mounted[@]}"; do umount_chroot "$r"; done
}
trap cleanup EXIT

# Runs one version; writes its result line to $out/V.line and returns
# non-zero when it failed.
run_version() {
	local v="$1" suite root log start t pgc warnings reg tapres pkg status=0
	suite="$(version_suite "$v")" || return 1
	log="$out/$v"
	mkdir -p "$log"

	start=$(date +%s)
	if ! root="$(bash "$here/chroot.sh" "$suite" 2>"$log/chroot.err")"; then
		cat "$log/chroot.err" >&2
		echo "PostgreSQL $v ($suite): chroot build FAILED (see $log/chroot.err)" >"$log/line"
		[ "${MATRIX_CHROOT_FAILURE_FATAL:-1}" = 1 ] || return 3
		return 1
	fi
	t_chroot=$(( $(date +%s) - start ))
	mount_chroot "$root"
	mounted+=("$root")
	pgc="/usr/lib/postgresql/$v/bin/pg_config"

	# A fresh copy of the tree, owned by the unprivileged user.
	rm -rf "$root/home/builder/src"
	rsync -a --exclude .git --exclude test/matrix/out "$tree"/ "$root/home/builder/src"/
	in_chroot "$root" "mkdir -p /home/builder && chown postgres:postgres /home/builder && chown -R postgres:postgres /home/builder/src"

	start=$(date +%s)
	as_builder "$root" "cd /home/builder/src && make -s clean PG_CONFIG=$pgc >/dev/null 2>&1;
		make PG_CONFIG=$pgc" >"$log/build.log" 2>&1
	status=$?
	warnings=$(grep -c 'warning:' "$log/build.log")
	if [ $status -ne 0 ]; then
		echo "PostgreSQL $v ($suite): build FAILED, $warnings warnings (see $log/build.log)" >"$log/line"
		return 1
	fi
	in_chroot "$root" "make -s -C /home/builder/src install PG_CONFIG=$pgc" >>"$log/build.log" 2>&1 || {
		echo "PostgreSQL $v ($suite): install FAILED (see $log/build.log)" >"$log/line"
		return 1
	}
	t_build=$(( $(date +%s) - start ))

	start=$(date +%s)
	if as_builder "$root" "cd /home/builder/src && make -s installcheck PG_CONFIG=$pgc TAP_TESTS=" \
		>"$log/regress.log" 2>&1; then
		reg="ok ($(summary "$log/regress.log" 'tests passed' 'passed'))"
	else
		reg="FAILED ($(summary "$log/regress.log" 'failed' 'failed'))"
		cp "$root/home/builder/src/regression.diffs" "$log/" 2>/dev/null
		status=1
	fi
	t_regress=$(( $(date +%s) - start ))

	t_tap=0
	if wants_tap "$v"; then
		local tests="" skipped="" f e name
		for f in "$tree"/test/t/*.pl; do
			name="$(basename "$f" .pl)"
			for e in ${MATRIX_TAP_EXCLUDE:-}; do
				[ "$e" != "$v:$name" ] || { skipped="$skipped $name"; continue 2; }
			done
			tests="$tests test/t/$name.pl"
		done
		start=$(date +%s)
		local retried=""
		tap_run "$root" "$pgc" "$tests" "$log/tap.log"
		local tap_rc=$?
		if [ $tap_rc -ne 0 ] && [ "${MATRIX_TAP_RETRY:-0}" = 1 ]; then
			# Once, only the files that failed; the line names them.
			retried="$(failed_tap_files "$log/tap.log")"
			cp "$log/tap.log" "$log/tap-first.log"
			if [ -n "$retried" ]; then
				tap_run "$root" "$pgc" "$retried" "$log/tap.log"
				tap_rc=$?
			fi
		fi
		if [ $tap_rc -eq 0 ]; then
			tapres="ok ($(summary "$log/tap.log" '^Files=' 'passed' | sed 's/, [0-9]* wallclock.*//'))"
			[ -z "$retried" ] || tapres="$tapres, PASSED ONLY ON RETRY:$(echo " $retried" | sed 's| test/t/| |g; s|\.pl||g') (see $log/tap-first.log)"
		else
			tapres="FAILED ($(grep -E '^t/|^test/t/.*(Failed|Wstat)' "$log/tap.log" | grep -v ' ok$' \
				| awk '{print $1}' | tr '\n' ' ')$(summary "$log/tap.log" '^Files=' ''))"
			rm -rf "$log/tmp_check"
			cp -r "$root/home/builder/src/tmp_check" "$log/" 2>/dev/null
			status=1
		fi
		t_tap=$(( $(date +%s) - start ))
		[ -z "$skipped" ] || tapres="$tapres, left out:$skipped"
	else
		tapres="not run"
	fi

	t_pkg=0
	if [ "$package" = yes ]; then
		start=$(date +%s)
		if bash "$here/package.sh" "$suite" "$root" "$log" >"$log/package.log" 2>&1; then
			pkg="ok ($(summary "$log/package.log" 'tests passed' 'passed'))"
		else
			pkg="FAILED (see $log/package.log)"
			status=1
		fi
		t_pkg=$(( $(date +%s) - start ))
	else
		pkg="not run"
	fi

	printf 'PostgreSQL %s (%s): %s warnings; pg_regress %s; TAP %s; package %s [chroot %ss, build %ss, pg_regress %ss, TAP %ss, package %ss]\n' \
		"$v" "$suite" "$warnings" "$reg" "$tapres" "$pkg" \
		"$t_chroot" "$t_build" "$t_regress" "$t_tap" "$t_pkg" >"$log/line"
	return $status
}

failed=0
not_tested=""
total_start=$(date +%s)
for v in "${versions[@]}"; do
	echo "matrix: PostgreSQL $v ..."
	mkdir -p "$out/$v"
	if [ -n "${MATRIX_BUDGET:-}" ] && [ $(( $(date +%s) - total_start )) -gt "$MATRIX_BUDGET" ]; then
		echo "PostgreSQL $v: NOT RUN, the matrix used its time budget (MATRIX_BUDGET=${MATRIX_BUDGET}s)" >"$out/$v/line"
		rc=3
	else
		run_version "$v"
		rc=$?
	fi
	cat "$out/$v/line"
	if [ $rc -eq 3 ]; then
		echo "matrix: PostgreSQL $v NOT TESTED"
		not_tested="$not_tested $v"
	elif [ $rc -ne 0 ]; then
		if required "$v"; then
			failed=1
		else
			echo "matrix: PostgreSQL $v is allowed to fail (not in MATRIX_REQUIRED=\"$MATRIX_REQUIRED\")"
		fi
	fi
done

echo
echo "matrix summary ($(( $(date +%s) - total_start )) s; logs in $out):"
for v in "${versions[@]}"; do cat "$out/$v/line"; done
if [ -n "$not_tested" ]; then
	# Not a failure of the code (a mirror out of reach, the time budget),
	# so it does not fail the run; said where nobody can miss it.
	echo
	echo "************************************************************"
	echo "matrix: WARNING: NOT TESTED on PostgreSQL$not_tested (see above)"
	echo "************************************************************"
fi
exit $failed

#!/usr/bin/env bash
# make test: installs what is missing, builds, installs, and runs every
# pg_regress and TAP test as an unprivileged user.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"

bash "$here/test/setup.sh"
. "$here/test/common.sh"

build_and_install "$here"

run_dir="$(copy_for_run_user "$here")"
trap 'rm -rf "$run_dir"' EXIT
echo "test: running pg_regress and TAP tests as $RUN_USER in $run_dir"
status=0
"${RUN_AS[@]}" make -C "$run_dir" -s installcheck PG_CONFIG="$PG_CONFIG" \
	PROVE_FLAGS="${PROVE_FLAGS:-}" || status=$?
if [ $status -ne 0 ]; then
	for f in "$run_dir"/regression.diffs "$run_dir"/tmp_check/log/regress_log_*; do
		[ -f "$f" ] && { echo "=== $f"; tail -n 80 "$f"; }
	done
	exit $status
fi

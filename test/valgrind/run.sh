#!/usr/bin/env bash
# make valgrind: the pg_regress suite against a server running under
# valgrind's memcheck (every backend and the background workers: valgrind
# follows forks), then fails when any process logged an error that
# test/valgrind/suppressions.supp does not cover.  Debian's server is not
# built with USE_VALGRIND, so palloc'd chunks are not tracked one by one:
# this finds reads of uninitialised memory, invalid reads and writes of
# malloc'd memory (libgd, libcurl, the PNG encoder) and bad frees.
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
bash "$here/test/setup.sh" valgrind
. "$here/test/common.sh"
build_and_install "$here"

run_dir="$(copy_for_run_user "$here")"
vg="$(mktemp -d /tmp/metric_anomaly_vg.XXXXXX)"
chmod 755 "$vg"
[ "$(id -u)" -ne 0 ] || chown "$RUN_USER" "$vg"
cleanup() {
	"${RUN_AS[@]}" pg_ctl -D "$vg/data" -m immediate -w stop >/dev/null 2>&1 || true
	rm -rf "$run_dir" "$vg"
}
trap cleanup EXIT

cat >"$vg/postgres" <<WRAP
#!/bin/sh
exec valgrind --quiet --leak-check=no --track-origins=yes --num-callers=30 \\
	--suppressions=$here/test/valgrind/suppressions.supp \\
	--log-file=$vg/valgrind.%p.log $PGBIN/postgres "\$@"
WRAP
chmod 755 "$vg/postgres"
cp "$here/test/valgrind/suppressions.supp" "$vg/"
sed -i "s|$here/test/valgrind/suppressions.supp|$vg/suppressions.supp|" "$vg/postgres"

port=$((54000 + RANDOM % 1000))
"${RUN_AS[@]}" initdb -D "$vg/data" -A trust -U postgres >/dev/null
cat "$here/test/regress.conf" >>"$vg/data/postgresql.conf"
printf '%s\n' "listen_addresses = ''" "unix_socket_directories = '$vg'" "port = $port" \
	"max_connections = 20" >>"$vg/data/postgresql.conf"
start=$(date +%s)
"${RUN_AS[@]}" pg_ctl -D "$vg/data" -p "$vg/postgres" -l "$vg/server.log" -t 600 -w start >/dev/null

status=0
"${RUN_AS[@]}" make -C "$run_dir" -s installcheck PG_CONFIG="$PG_CONFIG" TAP_TESTS= \
	REGRESS_OPTS="--host=$vg --port=$port --user=postgres" || status=$?
"${RUN_AS[@]}" pg_ctl -D "$vg/data" -m fast -t 600 -w stop >/dev/null || true
[ $status -eq 0 ] || cat "$run_dir/regression.diffs" 2>/dev/null | head -n 60

errors=0
for f in "$vg"/valgrind.*.log; do
	if grep -q 'ERROR SUMMARY: [1-9]\|^==[0-9]*== [A-Z]' "$f" 2>/dev/null && [ -s "$f" ]; then
		echo "=== $f"
		head -n 80 "$f"
		errors=$((errors + 1))
	fi
done
echo "valgrind: $(ls "$vg"/valgrind.*.log | wc -l) processes, $errors with errors, $(( $(date +%s) - start )) s"
[ $status -eq 0 ] && [ $errors -eq 0 ]

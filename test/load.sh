#!/usr/bin/env bash
# The load test of README.md ("Versions, the matrix and packages"): the
# whole TAP suite several times in a row while busy loops compete for the
# CPU, so that a test which only passes on an idle machine shows itself.
#
#   test/load.sh [--runs=N] [--busy=K] [host | VERSION]
#
# host (the default) runs the suite against $PG_CONFIG (this machine's
# PostgreSQL unless set), built and installed once, as make test does;
# VERSION runs test/matrix/run.sh --tap=VERSION --no-package VERSION each
# time (its chroot, as root), without a retry, so every failure counts.
# --runs: how many runs (5); --busy: how many busy loops at nice 19 (2;
# 0 when another load test already runs them).  Prints a line per run and
# exits non-zero if any run failed.
set -uo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
runs=5 busy=2 target=host
for a in "$@"; do
	case "$a" in
		--runs=*) runs="${a#--runs=}" ;;
		--busy=*) busy="${a#--busy=}" ;;
		-h|--help) sed -n '2,14p' "$0"; exit 0 ;;
		*) target="$a" ;;
	esac
done

loops=()
stop_loops() { [ ${#loops[@]} -gt 0 ] && kill "${loops[@]}" 2>/dev/null; }
trap stop_loops EXIT
for _ in $(seq 1 "$busy"); do
	nice -n 19 sh -c 'while :; do :; done' &
	loops+=($!)
done

if [ "$target" = host ]; then
	. "$here/test/common.sh"
	build_and_install "$here"
	run_dir="$(copy_for_run_user "$here")"
	trap 'stop_loops; rm -rf "$run_dir"' EXIT
fi

failed=0
for i in $(seq 1 "$runs"); do
	t0=$(date +%s)
	if [ "$target" = host ]; then
		log="$(mktemp /tmp/metric_anomaly_load.XXXXXX)"
		"${RUN_AS[@]}" make -C "$run_dir" -s installcheck REGRESS= \
			PG_CONFIG="$PG_CONFIG" >"$log" 2>&1
		rc=$?
		result="$(grep -E '^(Result|Files=)' "$log" | tr '\n' ' ')"
		[ $rc -ne 0 ] && result="$result; failed: $(grep -E '^t/.*(Failed|Dubious)|^test/t/.*(Failed|Dubious)' "$log" | tr '\n' ' ') (log $log)"
		[ $rc -eq 0 ] && rm -f "$log"
	else
		out="$(mktemp -d /tmp/metric_anomaly_load.XXXXXX)"
		MATRIX_OUT="$out" bash "$here/test/matrix/run.sh" --tap="$target" \
			--no-package "$target" >"$out/log" 2>&1
		rc=$?
		result="$(cat "$out/$target/line" 2>/dev/null || echo 'no result line')"
		[ $rc -eq 0 ] && rm -rf "$out" || result="$result (log $out/log)"
	fi
	[ $rc -ne 0 ] && failed=$((failed + 1))
	echo "load $target run $i/$runs: $([ $rc -eq 0 ] && echo passed || echo FAILED)" \
		"in $(( $(date +%s) - t0 )) s, load $(cut -d' ' -f1-3 /proc/loadavg): $result"
done
echo "load $target: $((runs - failed)) of $runs runs passed under $busy busy loops"
[ $failed -eq 0 ]

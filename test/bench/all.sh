#!/usr/bin/env bash
# make bench: runs every benchmark under test/bench/ (each prints both sides
# of its comparison, measured in the same run) and ends with one table of
# their TABLE lines.  A benchmark that fails gets a line saying so.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
log="$(mktemp /tmp/metric_anomaly_bench.XXXXXX)"
trap 'rm -f "$log"' EXIT
for b in aggregate writer backlog detect nab chart heatmap delivery jwt metrics; do
	echo "=== $b"
	if ! bash "$here/$b.sh" 2>&1 | tee -a "$log"; then
		echo "TABLE|$b|failed|see above|" | tee -a "$log"
	fi
done
echo
echo "Benchmarks (load: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores)"
grep '^TABLE|' "$log" | cut -d'|' -f2- |
	awk -F'|' '{ printf "%-38s | %-44s | %-34s | %s\n", $1, $2, $3, $4 }'

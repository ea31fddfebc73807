#!/usr/bin/env bash
# Benchmark (not a test): process_pending() against the single-statement SQL
# baseline in ../shared/reference/aggregation_baseline.sql, on identical
# copies of the same N events, in the same run.
#
#   [ROUNDS=2] test/bench/aggregate.sh [N]        (default 1,000,000)
#
# Builds and installs the extension (sudo when not root), then runs
# a throwaway cluster as an unprivileged user.
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
. "$here/test/common.sh"
N="${1:-1000000}"
build_and_install "$here" >/dev/null
# ../shared next to the repository (or next to the folder of worktrees).
baseline="${BASELINE:-$here/../shared/reference/aggregation_baseline.sql}"
[ -f "$baseline" ] || baseline="$here/../../shared/reference/aggregation_baseline.sql"
[ -f "$baseline" ] || { echo "missing $baseline" >&2; exit 1; }

# The worker serves no database here: both sides run in this script only.
start_cluster 55433 "shared_preload_libraries = 'metric_anomaly'
metric_anomaly.database = 'no_such_database'
shared_buffers = '512MB'
max_wal_size = '8GB'
checkpoint_timeout = '30min'"

# load DB [VERSION]: the baseline runs on the source design's schema (0.1.0,
# with is_processed), process_pending() on the current one.
load() {
	q -d postgres -c "CREATE DATABASE $1"
	q -d "$1" -c "CREATE EXTENSION metric_anomaly VERSION '${2:-0.2.0}'" -c "
		INSERT INTO metric_anomaly.business_events (event_type, event_timestamp, payload)
		SELECT (ARRAY['user_registration','order_created','payment_succeeded','login',
		              'search','add_to_cart','checkout_started','api_error'])[1 + i % 8],
		       timestamptz '2026-11-20 00:00:00+00' + (i * 86400.0 / $N) * interval '1 second',
		       jsonb_build_object('user_id', i % 100000, 'amount', (i % 500) / 10.0)
		  FROM generate_series(1, $N) AS i" -c "VACUUM ANALYZE metric_anomaly.business_events"
}

ms() { echo $(( $(date +%s%N) / 1000000 )); }

run_baseline() {
	local t0
	q -d postgres -c CHECKPOINT
	t0=$(ms)
	q -d bench_sql -v schema=metric_anomaly -f "$baseline" >/dev/null
	echo $(( $(ms) - t0 ))
}

run_ours() {
	local t0
	q -d postgres -c CHECKPOINT
	t0=$(ms)
	folded=$(q -d bench_ext -At -c "SELECT metric_anomaly.process_pending('2026-11-21 00:00:00+00')")
	echo $(( $(ms) - t0 ))
}

# Rounds on fresh copies, alternating which side goes first (the second
# runs with the first's dirty buffers around); each side's best counts.
ROUNDS="${ROUNDS:-2}"
base_ms="" ours_ms=""
for round in $(seq 1 "$ROUNDS"); do
	q -d postgres -c "DROP DATABASE IF EXISTS bench_ext" -c "DROP DATABASE IF EXISTS bench_sql" 2>/dev/null
	echo "round $round: loading $N events into two identical databases ..."
	load bench_ext
	load bench_sql 0.1.0
	# The baseline statement writes metric_value only.
	q -d bench_sql -c "ALTER TABLE metric_anomaly.aggregated_metrics ALTER sample_count SET DEFAULT 0"
	if [ $((round % 2)) -eq 1 ]; then
		b=$(run_baseline); o=$(run_ours)
	else
		o=$(run_ours); b=$(run_baseline)
	fi
	folded=$(q -d bench_ext -At -c "SELECT total_events FROM metric_anomaly.worker_state")
	echo "round $round: baseline $b ms, process_pending $o ms"
	if [ -z "$base_ms" ] || [ "$b" -lt "$base_ms" ]; then base_ms=$b; fi
	if [ -z "$ours_ms" ] || [ "$o" -lt "$ours_ms" ]; then ours_ms=$o; fi
done

# Both sides must agree on every count.
check=$(q -d bench_ext -At -c "SELECT sum(sample_count), count(*) FILTER (WHERE sample_count > 0) FROM metric_anomaly.aggregated_metrics")
check_sql=$(q -d bench_sql -At -c "SELECT sum(metric_value), count(*) FROM metric_anomaly.aggregated_metrics")
awk -v n="$N" -v b="$base_ms" -v o="$ours_ms" -v f="$folded" -v c="$check" -v cs="$check_sql" 'BEGIN {
	printf "events:                 %d (folded by process_pending: %d)\n", n, f
	printf "counts (sum|minutes):   process_pending %s, baseline %s\n", c, cs
	printf "baseline SQL statement: %8.0f ms  %10.0f events/s (best round)\n", b, n / (b / 1000)
	printf "process_pending():      %8.0f ms  %10.0f events/s (best round)\n", o, n / (o / 1000)
	printf "ratio (ours / baseline, events/s): %.2f\n", b / o
	printf "TABLE|fold %d events|process_pending %.0f ms|baseline statement %.0f ms|%.2fx (target >= 5x)\n", n, o, b, b / o
}'

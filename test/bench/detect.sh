#!/usr/bin/env bash
# Benchmark (not a test): the detection pass.  S series (default 10,000)
# with 180 one-minute points of history each receive one new minute; times
# process_pending() (fold of one event per series, zero-fill, 3-sigma in C,
# verdicts written) against the same 3-sigma done in one SQL statement with
# window functions, on identical copies, in the same run.
#
#   test/bench/detect.sh [S]
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
. "$here/test/common.sh"
S="${1:-10000}"
build_and_install "$here" >/dev/null

start_cluster 55435 "shared_preload_libraries = 'metric_anomaly'
metric_anomaly.database = 'no_such_database'
shared_buffers = '512MB'
max_wal_size = '8GB'"

load() {
	q -d postgres -c "CREATE DATABASE $1"
	q -d "$1" -c "CREATE EXTENSION metric_anomaly" -c "
		INSERT INTO metric_anomaly.aggregated_metrics
		       (metric_name, metric_timestamp, metric_value, sample_count, needs_eval)
		SELECT 'series_' || s, timestamptz '2026-11-20 09:00+00' + m * interval '1 minute',
		       v, v, false
		  FROM generate_series(1, $S) AS s, generate_series(0, 179) AS m,
		       LATERAL (SELECT 1 + (s * 31 + m * 17) % 3 AS v) AS x" -c "
		INSERT INTO metric_anomaly.series (metric_name, filled_until)
		SELECT 'series_' || s, timestamptz '2026-11-20 11:59+00' FROM generate_series(1, $S) AS s" -c "
		INSERT INTO metric_anomaly.business_events (event_type, event_timestamp)
		SELECT 'series_' || s, timestamptz '2026-11-20 12:00:30+00' FROM generate_series(1, $S) AS s" -c "
		VACUUM ANALYZE"
}
echo "loading $S series x 180 minutes into two identical databases ..."
load det_ext
load det_sql
q -d postgres -c CHECKPOINT

ms() { echo $(( $(date +%s%N) / 1000000 )); }

# The peer: fold the new events and judge the new minute in plain SQL.
t0=$(ms)
q -d det_sql -c "
BEGIN;
WITH c AS (SELECT event_type, event_timestamp FROM metric_anomaly.business_events
            WHERE event_timestamp >= timestamptz '2026-11-20 12:00+00')
INSERT INTO metric_anomaly.aggregated_metrics (metric_name, metric_timestamp, metric_value, sample_count)
SELECT event_type, date_trunc('minute', event_timestamp), count(*), count(*) FROM c GROUP BY 1, 2;
WITH w AS (
  SELECT metric_name, metric_timestamp, metric_value,
         avg(metric_value) OVER h AS mean, stddev_pop(metric_value) OVER h AS sd,
         count(*) OVER h AS n
    FROM metric_anomaly.aggregated_metrics
   WHERE metric_timestamp >= timestamptz '2026-11-20 12:00+00' - interval '180 minutes'
  WINDOW h AS (PARTITION BY metric_name ORDER BY metric_timestamp
               ROWS BETWEEN 180 PRECEDING AND 1 PRECEDING))
UPDATE metric_anomaly.aggregated_metrics a
   SET is_anomaly = abs(w.metric_value - w.mean) > 3 * w.sd, needs_eval = false,
       anomaly_context = jsonb_build_object('method', '3-sigma', 'mean', w.mean, 'std_dev', w.sd,
           'upper_boundary', w.mean + 3 * w.sd, 'lower_boundary', w.mean - 3 * w.sd,
           'z_score', (w.metric_value - w.mean) / nullif(w.sd, 0), 'sigma', 3, 'window', w.n)
  FROM w
 WHERE w.metric_timestamp = timestamptz '2026-11-20 12:00+00'
   AND a.metric_name = w.metric_name AND a.metric_timestamp = w.metric_timestamp;
COMMIT;" >/dev/null
t1=$(ms)
q -d postgres -c CHECKPOINT
t2=$(ms)
q -d det_ext -c "SELECT metric_anomaly.process_pending('2026-11-20 12:01:00+00')" >/dev/null
t3=$(ms)

ours=$(q -d det_ext -At -c "SELECT count(*) FILTER (WHERE anomaly_context IS NOT NULL), count(*) FILTER (WHERE is_anomaly)
                             FROM metric_anomaly.aggregated_metrics WHERE metric_timestamp = '2026-11-20 12:00+00'")
peer=$(q -d det_sql -At -c "SELECT count(*) FILTER (WHERE anomaly_context IS NOT NULL), count(*) FILTER (WHERE is_anomaly)
                             FROM metric_anomaly.aggregated_metrics WHERE metric_timestamp = '2026-11-20 12:00+00'")
agree=$(q -d det_ext -At -c "SELECT count(*) FROM metric_anomaly.aggregated_metrics
                              WHERE metric_timestamp = '2026-11-20 12:00+00'
                                AND (anomaly_context->>'window')::int = 180")
awk -v s="$S" -v b="$((t1 - t0))" -v o="$((t3 - t2))" -v ours="$ours" -v peer="$peer" -v agree="$agree" 'BEGIN {
	printf "series: %d, each with 180 points of history and one new minute\n", s
	printf "evaluated|anomalous: process_pending %s, SQL window functions %s (%s judged on 180 points)\n", ours, peer, agree
	printf "SQL window functions:  %6.0f ms\n", b
	printf "process_pending():     %6.0f ms  (fold + zero-fill + detection + verdicts)\n", o
	printf "ratio (SQL time / ours): %.2f\n", b / o
	printf "TABLE|detection, %d series|process_pending %.0f ms|SQL window functions %.0f ms|%.2fx\n", s, o, b, b / o
}'

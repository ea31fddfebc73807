#!/usr/bin/env bash
# Benchmark (not a test): the detection pass.  S series (default 10,000)
# with 360 one-minute points of history each (robust's window; 3-sigma
# uses the last 180) receive one new minute; times process_pending() (fold
# of one event per series, zero-fill, detection in C, verdicts written,
# alerting) with the default robust method, with 3-sigma, and with robust
# on series three weeks old (the minutes around 12:00 of the three days and
# three weeks before exist, so each series also reads its six seasonal
# index ranges), against 3-sigma done in one SQL statement with window
# functions, on identical copies, in the same run.
#
# Each is timed twice in one session, as the worker runs passes: the first
# (cold) pass, which reads every series' window from the index, then the
# steady-state pass of the next minute, which reads only the new minute
# and uses the rows the first kept (metric_anomaly.detect_cache_size).  The
# robust run then judges a third minute in a new session with the cache
# off, and the SQL peer judges both minutes.  The seasonal run goes on for
# 27 minutes in its session and also prints its slowest steady pass: the
# seasonal ranges read ahead run out 25 minutes on, and each series reads
# them again at a minute of its own phase, not all in one pass.
#
# Every side commits as the worker commits its passes (pass.c), without
# waiting for the WAL flush (synchronous_commit = off in the cluster), so
# the SQL peer and process_pending() are compared on equal terms.
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
max_wal_size = '8GB'
synchronous_commit = off"

load() {
	q -d postgres -c "CREATE DATABASE $1"
	q -d "$1" -c "CREATE EXTENSION metric_anomaly" -c "${2:-SET client_min_messages = notice}" -c "
		INSERT INTO metric_anomaly.aggregated_metrics
		       (metric_name, metric_timestamp, metric_value, sample_count, needs_eval)
		SELECT 'series_' || s, timestamptz '2026-11-20 06:00+00' + m * interval '1 minute',
		       v, v, false
		  FROM generate_series(1, $S) AS s, generate_series(0, 359) AS m,
		       LATERAL (SELECT 1 + (s * 31 + m * 17) % 3 AS v) AS x" -c "
		INSERT INTO metric_anomaly.series (metric_name, filled_until)
		SELECT 'series_' || s, timestamptz '2026-11-20 11:59+00' FROM generate_series(1, $S) AS s" -c "
		INSERT INTO metric_anomaly.business_events (event_type, event_timestamp)
		SELECT 'series_' || s, timestamptz '2026-11-20 12:00:30+00' FROM generate_series(1, $S) AS s" -c "
		VACUUM ANALYZE"
}
echo "loading $S series x 360 minutes into four databases (identical but for the settings and the seasonal history) ..."
load det_ext
load det_sigma "INSERT INTO metric_anomaly.metrics (metric_name, method) SELECT 'series_' || s, '3-sigma' FROM generate_series(1, $S) AS s"
# the minutes 11:40 to 13:00 of the three days and three weeks before
# (what the seasonal ranges of 12:00 to 12:27 read, with what they read ahead)
load det_season "INSERT INTO metric_anomaly.aggregated_metrics
		       (metric_name, metric_timestamp, metric_value, sample_count, needs_eval)
		SELECT 'series_' || s, timestamptz '2026-11-20 12:00+00' - k * p + j * interval '1 minute', 2, 2, false
		  FROM generate_series(1, $S) AS s, generate_series(1, 3) AS k, generate_series(-20, 60) AS j,
		       unnest(array[interval '1 day', interval '7 days']) AS p"
load det_sql
q -d postgres -c CHECKPOINT

ms() { echo $(( $(date +%s%N) / 1000000 )); }

# The peer: fold the new events and judge the new minute in plain SQL.
peer() {
	q -d det_sql -c "
BEGIN;
WITH c AS (SELECT event_type, event_timestamp FROM metric_anomaly.business_events
            WHERE event_timestamp >= timestamptz '$1')
INSERT INTO metric_anomaly.aggregated_metrics (metric_name, metric_timestamp, metric_value, sample_count)
SELECT event_type, date_trunc('minute', event_timestamp), count(*), count(*) FROM c GROUP BY 1, 2;
WITH w AS (
  SELECT metric_name, metric_timestamp, metric_value,
         avg(metric_value) OVER h AS mean, stddev_pop(metric_value) OVER h AS sd,
         count(*) OVER h AS n
    FROM metric_anomaly.aggregated_metrics
   WHERE metric_timestamp >= timestamptz '$1' - interval '180 minutes'
  WINDOW h AS (PARTITION BY metric_name ORDER BY metric_timestamp
               ROWS BETWEEN 180 PRECEDING AND 1 PRECEDING))
UPDATE metric_anomaly.aggregated_metrics a
   SET is_anomaly = abs(w.metric_value - w.mean) > 3 * w.sd, needs_eval = false,
       anomaly_context = jsonb_build_object('method', '3-sigma', 'mean', w.mean, 'std_dev', w.sd,
           'upper_boundary', w.mean + 3 * w.sd, 'lower_boundary', w.mean - 3 * w.sd,
           'z_score', (w.metric_value - w.mean) / nullif(w.sd, 0), 'sigma', 3, 'window', w.n)
  FROM w
 WHERE w.metric_timestamp = timestamptz '$1'
   AND a.metric_name = w.metric_name AND a.metric_timestamp = w.metric_timestamp;
COMMIT;" >/dev/null
}

# The next minute's events: one per series.
events_sql() {
	echo "INSERT INTO metric_anomaly.business_events (event_type, event_timestamp)
	      SELECT 'series_' || s, timestamptz '$1' FROM generate_series(1, $S) AS s"
}

# Passes in one session: the cold one (12:00), then $2 more minutes (1 if
# not given), each with its events; prints "cold next worst" in ms (next:
# the first steady pass; worst: the slowest steady one), and the bytes the
# cache holds per series.
minute() { date -u -d "2026-11-20 12:00 UTC + $1 min" '+%F %H:%M:%S+00'; }
passes() {
	local args=(-c "SELECT metric_anomaly.process_pending('$(minute 1)')")
	for i in $(seq 1 "${2:-1}"); do
		args+=(-c "$(events_sql "$(minute "$i" | sed 's/:00+00$/:30+00/')")"
		       -c "SELECT metric_anomaly.process_pending('$(minute $((i + 1)))')")
	done
	q -d "$1" -At -c '\timing on' "${args[@]}" \
		-c '\timing off' -c "SELECT 'B', bytes / greatest(entries, 1) FROM metric_anomaly.detect_cache_stats()" |
		awk -F'|' '/^Time:/ {split($0, f, " "); t[++n] = f[2]} /^B\|/ {b = $2}
			END {w = 0; for (i = 3; i <= n; i += 2) if (t[i] > w) w = t[i]
			     all = ""; for (i = 3; i <= n; i += 2) all = all (i > 3 ? "," : "") sprintf("%.0f", t[i])
			     printf "%.0f %.0f %.0f %d %s\n", t[1], t[3], w, b, all}'
}

t0=$(ms)
peer '2026-11-20 12:00+00'
t1=$(ms)
q -d det_sql -c "$(events_sql '2026-11-20 12:01:30+00')"
t8=$(ms)
peer '2026-11-20 12:01+00'
t9=$(ms)
q -d postgres -c CHECKPOINT
read -r o o2 _ ob < <(passes det_ext)
# a third minute in a new session with the cache off: the steady pass without it
q -d det_ext -c "$(events_sql '2026-11-20 12:02:30+00')"
o3=$(q -d det_ext -At -c "SET metric_anomaly.detect_cache_size = 0" -c '\timing on' \
		-c "SELECT metric_anomaly.process_pending('2026-11-20 12:03:00+00')" |
		awk '/^Time:/ {printf "%.0f\n", $2}')
q -d postgres -c CHECKPOINT
read -r g g2 _ gb < <(passes det_sigma)
q -d postgres -c CHECKPOINT
# 27 minutes: past the minute where the seasonal ranges the cold pass read
# ahead run out (25 minutes on), so the worst pass includes those reads
read -r w w2 ww wb wall < <(passes det_season 27)
seasonal=$(q -d det_season -At -c "SELECT count(*) FROM metric_anomaly.aggregated_metrics
                                  WHERE metric_timestamp = '2026-11-20 12:01+00' AND anomaly_context->'baselines' ? 'weekly'")

ours=$(q -d det_ext -At -c "SELECT count(*) FILTER (WHERE anomaly_context IS NOT NULL), count(*) FILTER (WHERE is_anomaly)
                             FROM metric_anomaly.aggregated_metrics WHERE metric_timestamp = '2026-11-20 12:00+00'")
peer=$(q -d det_sql -At -c "SELECT count(*) FILTER (WHERE anomaly_context IS NOT NULL), count(*) FILTER (WHERE is_anomaly)
                             FROM metric_anomaly.aggregated_metrics WHERE metric_timestamp = '2026-11-20 12:00+00'")
agree=$(q -d det_ext -At -c "SELECT count(*) FROM metric_anomaly.aggregated_metrics
                              WHERE metric_timestamp = '2026-11-20 12:00+00'
                                AND (anomaly_context->'baselines'->'recent'->>'n')::int = 360")
load=$(cut -d' ' -f1-3 /proc/loadavg)
awk -v s="$S" -v b="$((t1 - t0))" -v b2="$((t9 - t8))" -v o="$o" -v o2="$o2" -v o3="$o3" \
	-v g="$g" -v g2="$g2" -v w="$w" -v w2="$w2" -v ww="$ww" -v wall="$wall" -v load="$load" \
	-v ob="$ob" -v gb="$gb" -v wb="$wb" \
	-v ours="$ours" -v peer="$peer" -v agree="$agree" -v seasonal="$seasonal" 'BEGIN {
	printf "series: %d, each with 360 points of history and one new minute a pass; load average %s\n", s, load
	printf "evaluated|anomalous: process_pending (robust) %s, SQL window functions %s (%s judged on 360 points; %s with weekly baselines at the next minute in the seasonal run)\n", ours, peer, agree, seasonal
	printf "                                      first pass   next minute (same session)\n"
	printf "SQL window functions (3-sigma):       %6.0f ms    %6.0f ms\n", b, b2
	printf "process_pending(), 3-sigma:           %6.0f ms    %6.0f ms\n", g, g2
	printf "process_pending(), robust (default):  %6.0f ms    %6.0f ms   (cache off: %.0f ms)\n", o, o2, o3
	printf "process_pending(), robust, seasonal:  %6.0f ms    %6.0f ms   (six seasonal index ranges a series; the slowest of 27 minutes: %.0f ms)\n", w, w2, ww
	printf "seasonal steady passes, minute by minute (ms): %s\n", wall
	printf "(a pass: fold + zero-fill + detection + verdicts + alerting)\n"
	printf "cache held per series (detect_cache_stats): robust %d bytes, 3-sigma %d bytes, robust seasonal %d bytes\n", ob, gb, wb
	printf "ratio (SQL time / robust), next minute: %.2f\n", b2 / o2
	printf "TABLE|detection, %d series, next minute|process_pending (robust) %.0f ms|SQL window functions %.0f ms|%.2fx\n", s, o2, b2, b2 / o2
}'

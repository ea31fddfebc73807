#!/usr/bin/env bash
# Benchmark (not a test): metric definitions, both sides in the same run.
#
#   [ROUNDS=2] test/bench/metrics.sh [N]        (default 1,000,000)
#
# 1. Folding: N api events of a day (10 nodes x 20 endpoints, a latency
#    spread over three decades) with three definitions (p95 by node and
#    endpoint, the sum of latency, a count by node), against one SQL
#    statement computing the same per-minute figures with GROUP BY and
#    percentile_cont.  Ours twice: the definitions' fold alone
#    (fold_definitions() over all the events: the C fold of src/metrics.c,
#    storing points, series and values, as backfill_metric() runs it), and
#    a whole process_pending() pass (the same fold in 50,000-event batches,
#    plus the per-minute counts, zero-fill and the detection of every new
#    value).  Fresh identical databases per round, copies of one loaded
#    template, so every side starts from the same cold shared buffers (a
#    database loaded in place starts with its events in them: the side run
#    on a copy would read them all from the kernel); alternating which side
#    goes first; best of ROUNDS.
# 2. Quantiles over the 1440 minutes of the day, all series merged per
#    minute: metric_anomaly's stored sketches (sketch_union + sketch_quantile,
#    never the events) against exact percentile_disc / percentile_cont over
#    the raw events and against the tdigest extension (tdigest(value, 100)
#    over the raw events); the worst relative error of each, and the time.
#
# tdigest comes from Debian's postgresql-15-tdigest (installed through
# test/setup.sh); a relocated PostgreSQL 15 copy (PG_CONFIG) gets the
# package's files copied in.
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
. "$here/test/common.sh"
N="${1:-1000000}"
bash "$here/test/setup.sh" postgresql-15-tdigest >/dev/null
build_and_install "$here" >/dev/null
share="$("$PG_CONFIG" --sharedir)/extension"
lib="$("$PG_CONFIG" --pkglibdir)"
if [ ! -f "$share/tdigest.control" ] && [ -f /usr/share/postgresql/15/extension/tdigest.control ] &&
	"$PG_CONFIG" --version | grep -q 'PostgreSQL 15\.'; then
	"${SUDO[@]}" cp /usr/share/postgresql/15/extension/tdigest* "$share/"
	"${SUDO[@]}" cp /usr/lib/postgresql/15/lib/tdigest.so "$lib/"
fi

start_cluster 55434 "shared_preload_libraries = 'metric_anomaly'
metric_anomaly.database = 'no_such_database'
shared_buffers = '512MB'
work_mem = '256MB'
max_wal_size = '8GB'
checkpoint_timeout = '30min'"

load() {
	q -d postgres -c "CREATE DATABASE $1"
	q -d "$1" -c "CREATE EXTENSION metric_anomaly" -c "
		INSERT INTO metric_anomaly.business_events (event_type, event_timestamp, payload)
		SELECT 'api', timestamptz '2026-11-20 00:00:00+00' + (i * 86400.0 / $N) * interval '1 second',
		       jsonb_build_object('node', 'n' || (i % 10), 'endpoint', '/e' || (i % 20),
		                          'latency_ms', round((power(10, 3 * ((i::bigint * 7919) % 10007) / 10007.0))::numeric, 3))
		  FROM generate_series(1, $N) AS i" -c "VACUUM ANALYZE metric_anomaly.business_events"
}

define() {
	q -d "$1" -c "
		INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, aggregate, value_path, quantile, dimensions)
		VALUES ('api_p95', '{api}', 'quantile', '{latency_ms}', 0.95, '{node,endpoint}'),
		       ('api_latency_sum', '{api}', 'sum', '{latency_ms}', NULL, '{}'),
		       ('api_calls', '{api}', 'count', NULL, NULL, '{node}')"
}

# The same per-minute figures in one statement.
BASELINE="CREATE TABLE figures AS
WITH e AS (
    SELECT date_trunc('minute', event_timestamp) AS minute, payload ->> 'node' AS node,
           payload ->> 'endpoint' AS endpoint, (payload ->> 'latency_ms')::float8 AS v
      FROM metric_anomaly.business_events WHERE event_type = 'api')
SELECT 'api_p95' AS metric, minute, node, endpoint, percentile_cont(0.95) WITHIN GROUP (ORDER BY v) AS value
  FROM e GROUP BY minute, node, endpoint
UNION ALL
SELECT 'api_latency_sum', minute, NULL, NULL, sum(v) FROM e GROUP BY minute
UNION ALL
SELECT 'api_calls', minute, node, NULL, count(*) FROM e GROUP BY minute, node"

ms() { echo $(( $(date +%s%N) / 1000000 )); }

run_baseline() {
	local t0
	q -d postgres -c CHECKPOINT
	t0=$(ms)
	q -d bench_sql -c "$BASELINE" >/dev/null
	echo $(( $(ms) - t0 ))
}

FOLD_ALL="SELECT metric_anomaly.fold_definitions('1:1:'::pg_snapshot, pg_catalog.pg_current_snapshot(), NULL, NULL,
                                          pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot()), 9223372036854775807)"

run_fold() {
	local t0
	q -d postgres -c CHECKPOINT
	t0=$(ms)
	q -d bench_fold -At -c "$FOLD_ALL" >/dev/null
	echo $(( $(ms) - t0 ))
}

run_ours() {
	local t0
	q -d postgres -c CHECKPOINT
	t0=$(ms)
	q -d bench_ext -At -c "SELECT metric_anomaly.process_pending('2026-11-21 00:00:00+00')" >/dev/null
	echo $(( $(ms) - t0 ))
}

ROUNDS="${ROUNDS:-2}"
base_ms="" ours_ms="" fold_ms=""
for round in $(seq 1 "$ROUNDS"); do
	q -d postgres -c "DROP DATABASE IF EXISTS bench_ext" -c "DROP DATABASE IF EXISTS bench_sql" \
		-c "DROP DATABASE IF EXISTS bench_fold" -c "DROP DATABASE IF EXISTS bench_template" 2>/dev/null
	echo "round $round: loading $N events into three identical databases ..."
	load bench_template
	define bench_template
	for db in bench_ext bench_sql bench_fold; do
		q -d postgres -c "CREATE DATABASE $db TEMPLATE bench_template"
	done
	q -d postgres -c "DROP DATABASE bench_template"
	if [ $((round % 2)) -eq 1 ]; then
		b=$(run_baseline); f=$(run_fold); o=$(run_ours)
	else
		o=$(run_ours); f=$(run_fold); b=$(run_baseline)
	fi
	echo "round $round: GROUP BY + percentile_cont $b ms, fold_definitions (the fold alone) $f ms, process_pending with 3 definitions $o ms (load average $(cut -d' ' -f1 /proc/loadavg))"
	if [ -z "$base_ms" ] || [ "$b" -lt "$base_ms" ]; then base_ms=$b; fi
	if [ -z "$fold_ms" ] || [ "$f" -lt "$fold_ms" ]; then fold_ms=$f; fi
	if [ -z "$ours_ms" ] || [ "$o" -lt "$ours_ms" ]; then ours_ms=$o; fi
done

# Both sides agree on the counts and sums; the p95s within 1% of percentile_disc.
check_ext=$(q -d bench_ext -At -c "SELECT sum(count) FILTER (WHERE metric_name = 'api_calls'), round(sum(sum) FILTER (WHERE metric_name = 'api_latency_sum')::numeric, 0), count(*) FILTER (WHERE metric_name = 'api_p95') FROM metric_anomaly.metric_points")
check_sql=$(q -d bench_sql -At -c "SELECT sum(value) FILTER (WHERE metric = 'api_calls'), round(sum(value) FILTER (WHERE metric = 'api_latency_sum')::numeric, 0), count(*) FILTER (WHERE metric = 'api_p95') FROM figures")
check_fold=$(q -d bench_fold -At -c "SELECT sum(count) FILTER (WHERE metric_name = 'api_calls'), round(sum(sum) FILTER (WHERE metric_name = 'api_latency_sum')::numeric, 0), count(*) FILTER (WHERE metric_name = 'api_p95') FROM metric_anomaly.metric_points")
echo "check (calls|latency sum|p95 points): process_pending $check_ext, fold_definitions $check_fold, SQL $check_sql"
[ "$check_ext" = "$check_sql" ] && [ "$check_fold" = "$check_sql" ] || { echo "the sides disagree" >&2; exit 1; }
q -d postgres -c "DROP DATABASE bench_fold"
echo "folding $N events, 3 definitions: GROUP BY + percentile_cont ${base_ms} ms, fold_definitions ${fold_ms} ms, process_pending ${ours_ms} ms (best of $ROUNDS)"
echo "TABLE|metrics: fold $N events, 3 definitions|SQL GROUP BY+percentile_cont ${base_ms} ms|fold ${fold_ms} ms, process_pending ${ours_ms} ms|"

# 2. Quantile accuracy and speed over the day, all series merged per minute.
q -d bench_ext -c "CREATE EXTENSION tdigest" >/dev/null
accuracy() {
	q -d bench_ext -At -F' ' -c "
	WITH s AS (
	    SELECT p.bucket AS minute, metric_anomaly.sketch_quantile(metric_anomaly.sketch_union(p.sketch), $1) AS est
	      FROM metric_anomaly.metric_points p WHERE p.metric_name = 'api_p95' GROUP BY p.bucket),
	x AS (
	    SELECT date_trunc('minute', event_timestamp) AS minute,
	           percentile_disc($1) WITHIN GROUP (ORDER BY (payload ->> 'latency_ms')::float8) AS disc,
	           percentile_cont($1) WITHIN GROUP (ORDER BY (payload ->> 'latency_ms')::float8) AS cont,
	           tdigest_percentile((payload ->> 'latency_ms')::float8, 100, $1) AS td
	      FROM metric_anomaly.business_events GROUP BY 1)
	SELECT count(*),
	       round(max(abs(s.est - x.disc) / x.disc)::numeric, 5),
	       round(max(abs(s.est - x.cont) / x.cont)::numeric, 5),
	       round(max(abs(x.td - x.disc) / x.disc)::numeric, 5),
	       round(max(abs(x.td - x.cont) / x.cont)::numeric, 5)
	  FROM s JOIN x USING (minute)"
}
time_of() {
	local t0 best=""
	for _ in 1 2 3; do
		t0=$(ms); q -d bench_ext -c "$1" >/dev/null; t=$(( $(ms) - t0 ))
		if [ -z "$best" ] || [ "$t" -lt "$best" ]; then best=$t; fi
	done
	echo "$best"
}
for qq in 0.5 0.95 0.99; do
	read -r minutes ours_disc ours_cont td_disc td_cont <<<"$(accuracy $qq)"
	echo "q=$qq over $minutes minutes: worst relative error sketch vs percentile_disc $ours_disc, vs percentile_cont $ours_cont; tdigest(100) vs percentile_disc $td_disc, vs percentile_cont $td_cont"
	echo "TABLE|metrics: worst rel. error q=$qq, $minutes min|sketch $ours_disc (disc) $ours_cont (cont)|tdigest $td_disc (disc) $td_cont (cont)|"
done
t_sketch=$(time_of "SELECT p.bucket, metric_anomaly.sketch_quantile(metric_anomaly.sketch_union(p.sketch), 0.95) FROM metric_anomaly.metric_points p WHERE p.metric_name = 'api_p95' GROUP BY p.bucket")
t_exact=$(time_of "SELECT date_trunc('minute', event_timestamp), percentile_cont(0.95) WITHIN GROUP (ORDER BY (payload ->> 'latency_ms')::float8) FROM metric_anomaly.business_events GROUP BY 1")
t_td=$(time_of "SELECT date_trunc('minute', event_timestamp), tdigest_percentile((payload ->> 'latency_ms')::float8, 100, 0.95) FROM metric_anomaly.business_events GROUP BY 1")
t_day_sketch=$(time_of "SELECT metric_anomaly.quantile('api_p95', '{}', '2026-11-20', '2026-11-21', 0.95)")
t_day_exact=$(time_of "SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY (payload ->> 'latency_ms')::float8) FROM metric_anomaly.business_events")
echo "p95 of each of the day's minutes: stored sketches ${t_sketch} ms, percentile_cont over events ${t_exact} ms, tdigest over events ${t_td} ms (best of 3)"
echo "p95 of the whole day: quantile() ${t_day_sketch} ms, percentile_cont over events ${t_day_exact} ms"
echo "TABLE|metrics: p95 per minute, 1440 minutes|sketches ${t_sketch} ms|percentile_cont ${t_exact} ms, tdigest ${t_td} ms|"
echo "TABLE|metrics: p95 of the day|quantile() ${t_day_sketch} ms|percentile_cont ${t_day_exact} ms|"

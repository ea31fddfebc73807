# Sourced by demo.sh: the push-pipeline scenario of metric definitions, in a
# database of its own folded by process_pending() (so the worker's demo
# above is untouched).  Three nodes over three hours; node n3 stops
# draining 20 minutes before the end, so its backlog grows, and detection,
# judging each node's backlog on its own, fires on n3 alone.
metrics_demo() {
	q -d postgres -c "CREATE DATABASE pipeline"
	q -d pipeline -c "CREATE EXTENSION metric_anomaly"
	q -d pipeline <<'SQL'
INSERT INTO metric_anomaly.metric_definitions
       (metric_name, event_types, aggregate, value_path, quantile, threshold, dimensions)
VALUES ('push_volume',  '{push}',   'count',    NULL,           NULL, NULL, '{node}'),
       ('push_p95',     '{push}',   'quantile', '{latency_ms}', 0.95, NULL, '{node}'),
       ('push_in_slo',  '{push}',   'rate',     '{latency_ms}', NULL, 500,  '{node}'),
       ('push_left',    '{pushed}', 'count',    NULL,           NULL, NULL, '{node}');
-- A backlog alerts when it grows: every node's series judged upward only.
INSERT INTO metric_anomaly.metric_definitions (metric_name, aggregate, numerator, denominator, dimensions, detection)
VALUES ('push_backlog', 'backlog', 'push_volume', 'push_left', '{node}', '{"direction": "up"}');
-- Pushes: 20 to 40 a minute per node, latency 50 ms to 2 s (n2 slower).
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp, payload)
SELECT 'push', t + (i * interval '1 second'),
       jsonb_build_object('node', n, 'latency_ms',
                          round((40 + (CASE n WHEN 'n2' THEN 300 ELSE 100 END) * power(((i * 7919 + m) % 101) / 100.0, 3) * 6)::numeric, 1))
  FROM generate_series(date_trunc('minute', now()) - interval '3 hours',
                       date_trunc('minute', now()) - interval '1 minute', interval '1 minute') WITH ORDINALITY AS g(t, m),
       (VALUES ('n1'), ('n2'), ('n3')) AS v(n),
       generate_series(1, 20 + (m::int * 7) % 21) AS i;
-- What left each node: everything, the next second; n3 stops draining
-- 20 minutes before the end (a few still leave).
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp, payload)
SELECT 'pushed', e.event_timestamp + interval '1 second', jsonb_build_object('node', e.payload ->> 'node')
  FROM metric_anomaly.business_events e
 WHERE e.event_type = 'push'
   AND (e.payload ->> 'node' <> 'n3' OR e.event_timestamp < date_trunc('minute', now()) - interval '20 minutes'
        OR e.id % 10 = 0);
SELECT metric_anomaly.process_pending() AS folded;
SQL
	say "Push pipeline: per-node volume, p95 latency, share within 500 ms, backlog (last hour)"
	q -d pipeline -c "
	SELECT n.node,
	       metric_anomaly.aggregate_value('push_volume', d, now() - interval '1 hour', now(), 'count') AS pushes,
	       round(metric_anomaly.quantile('push_p95', d, now() - interval '1 hour', now(), 0.95)::numeric, 1) AS p95_ms,
	       round(metric_anomaly.aggregate_value('push_in_slo', d, now() - interval '1 hour', now(), 'rate')::numeric, 3) AS within_500ms,
	       metric_anomaly.aggregate_value('push_backlog', d, '-infinity', now(), 'backlog') AS backlog_now
	  FROM (VALUES ('n1'), ('n2'), ('n3'), (NULL)) AS n(node),
	       LATERAL (SELECT CASE WHEN n.node IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('node', n.node) END AS d) x
	 ORDER BY n.node NULLS LAST"
	say "Anomalous backlog minutes, per node (each series judged on its own)"
	q -d pipeline -c "
	SELECT metric_name, count(*) AS anomalous_minutes, to_char(min(metric_timestamp), 'HH24:MI') AS first
	  FROM metric_anomaly.anomalies WHERE metric_name LIKE 'push_backlog%' GROUP BY 1 ORDER BY 1"
	say "Alerts in the outbox for backlogs"
	q -d pipeline -c "
	SELECT metric_name, state, source, to_char(episode_start, 'HH24:MI') AS since, summary
	  FROM metric_anomaly.alerts WHERE metric_name LIKE 'push_backlog%' ORDER BY id"
	q -d pipeline -At -c "SELECT encode(metric_anomaly.render_metric_chart('push_backlog', '{\"node\": \"n3\"}'::jsonb,
	                      now() - interval '3 hours', now()), 'hex')" |
		perl -ne 'chomp; print pack("H*", $_)' >"$out/push_backlog_n3.png"
	echo "wrote $out/push_backlog_n3.png ($(wc -c <"$out/push_backlog_n3.png") bytes)"
	firing=$(q -d pipeline -At -c "SELECT string_agg(DISTINCT metric_name, ',') FROM metric_anomaly.alerts
	                               WHERE metric_name LIKE 'push_backlog%' AND state = 'firing'")
	if [ "$firing" != "push_backlog{node=n3}" ]; then
		echo "expected one backlog alert, on node n3; got: ${firing:-none}" >&2
		return 1
	fi
}

-- Metric definitions carry their detection and alerting settings (applied
-- to every series of the metric, a metrics row overriding single keys for
-- one series), validated when written; ratios and backlogs defined later
-- backfill from the stored points of their numerator and denominator.
CREATE EXTENSION metric_anomaly;
SET timezone = 'UTC';
SET datestyle = 'ISO';
SET extra_float_digits = 0;

-- Settings detect_series() would refuse are refused when written, with
-- the validator's own message and hint, naming the metric.
\set VERBOSITY default
\set SHOW_CONTEXT never
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, detection) VALUES ('m', '{a}', '[1]');
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, detection) VALUES ('m', '{a}', '{"sensitivty": 3}');
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, detection) VALUES ('m', '{a}', '{"method": "fancy"}');
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, detection) VALUES ('m', '{a}', '{"method": 3}');
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, detection) VALUES ('m', '{a}', '{"sensitivity": 0}');
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, detection) VALUES ('m', '{a}', '{"sigma": "3"}');
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, detection) VALUES ('m', '{a}', '{"window_size": 1.5}');
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, detection) VALUES ('m', '{a}', '{"min_points": 1}');
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, detection) VALUES ('m', '{a}', '{"direction": "sideways"}');
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, detection) VALUES ('m', '{a}', '{"seasonality": "hourly"}');
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, detection) VALUES ('m', '{a}', '{"alert_after": 61}');
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, detection) VALUES ('m', '{a}', '{"alert_window": 0}');
-- The check is the detector's: the same error from detect_series().
SELECT * FROM metric_anomaly.detect_series('{}', '{}', '{"sensitivty": 3}');
\set VERBOSITY terse
-- A JSON null is the default; so is an empty object.
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, detection)
VALUES ('nulls', '{a}', '{"sigma": null}'), ('empty', '{a}', '{}');
DELETE FROM metric_anomaly.metric_definitions WHERE metric_name IN ('nulls', 'empty');

-- One definition, four series (nodes a to d), judged by 3-sigma at sigma 3
-- over 20 minutes, upward only, alerting on 2 anomalous of the last 3
-- judged minutes.  A metrics row raises node c's sigma to 50; its NULL
-- columns (direction among them) keep the definition's settings, so node
-- c is judged upward only, at sigma 50.  The minutes are the
-- last 40 before now, so alerting (which skips episodes older than
-- alert_max_age) runs; the output shows minutes since the start.
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, dimensions, detection)
VALUES ('hits', '{hit}', '{node}',
        '{"method": "3-sigma", "sigma": 3, "window_size": 20, "min_points": 10,
          "direction": "up", "alert_after": 2, "alert_window": 3}');
INSERT INTO metric_anomaly.metrics (metric_name, sigma) VALUES ('hits{node=c}', 50);
-- The same events judged by the robust method (the default) at
-- sensitivity 2.5, both ways: minute 30 of every node is anomalous.
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, dimensions, detection)
VALUES ('hits_robust', '{hit}', '{node}', '{"sensitivity": 2.5, "min_points": 10}');
SELECT date_trunc('minute', now()) - interval '40 minutes' AS base \gset
-- 10 to 14 hits a minute per node; at minute 30 node a, c and d get 40,
-- node b 2; at minute 31 node a and c 40 again.
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp, payload)
SELECT 'hit', :'base'::timestamptz + m * interval '1 minute' + i * interval '1 second',
       jsonb_build_object('node', n)
  FROM generate_series(0, 35) AS m,
       (VALUES ('a', 0), ('b', 1), ('c', 2), ('d', 3)) AS v(n, k),
       LATERAL generate_series(1, CASE WHEN m = 30 AND n <> 'b' THEN 40
                                       WHEN m = 30 THEN 2
                                       WHEN m = 31 AND n IN ('a', 'c') THEN 40
                                       ELSE 10 + (m * 7 + k) % 5 END) AS i;
SELECT metric_anomaly.process_pending(:'base'::timestamptz + interval '36 minutes') > 0 AS folded;
-- The settings each series is judged with (node b's drop to 2 would be
-- anomalous both ways).
SELECT s.series_name, metric_anomaly.series_settings(s.series_name) AS settings
  FROM metric_anomaly.metric_series s WHERE s.metric_name = 'hits' ORDER BY 1;
-- The evidence says the worker used them: method, sigma and direction per
-- series, minutes judged (from minute 10, min_points), anomalous minutes.
SELECT a.metric_name,
       string_agg(DISTINCT a.anomaly_context ->> 'method', ',') AS method,
       string_agg(DISTINCT a.anomaly_context ->> 'sigma', ',') AS sigma,
       string_agg(DISTINCT a.anomaly_context ->> 'direction', ',') AS direction,
       count(a.anomaly_context) AS judged,
       array_agg(extract(epoch FROM a.metric_timestamp - :'base'::timestamptz)::int / 60 ORDER BY a.metric_timestamp)
           FILTER (WHERE a.is_anomaly) AS anomalous_minutes
  FROM metric_anomaly.aggregated_metrics a
 WHERE a.metric_name LIKE 'hits{%'
 GROUP BY 1 ORDER BY 1;
SELECT a.metric_name,
       string_agg(DISTINCT a.anomaly_context ->> 'method', ',') AS method,
       string_agg(DISTINCT a.anomaly_context ->> 'sensitivity', ',') AS sensitivity,
       count(a.anomaly_context) AS judged,
       bool_or(a.is_anomaly) FILTER (WHERE a.metric_timestamp = :'base'::timestamptz + interval '30 minutes') AS minute_30_anomalous
  FROM metric_anomaly.aggregated_metrics a
 WHERE a.metric_name LIKE 'hits\_robust{%'
 GROUP BY 1 ORDER BY 1;
-- Node c's minute 30 was normal at sigma 50 (its z-score is below 50, above 3).
SELECT (anomaly_context ->> 'z_score')::float8 BETWEEN 3 AND 50 AS between_3_and_50
  FROM metric_anomaly.aggregated_metrics
 WHERE metric_name = 'hits{node=c}' AND metric_timestamp = :'base'::timestamptz + interval '30 minutes';
-- Alerts: node a alone (2 of 3 anomalous; node d had one), named with its
-- dimensions, in the metric name and in the summary.
SELECT metric_name, state, source,
       extract(epoch FROM minute - :'base'::timestamptz)::int / 60 AS minute,
       summary LIKE 'hits{node=a} is anomalous at % UTC: value 40 outside [%' AS summary_names_series
  FROM metric_anomaly.alerts WHERE metric_name LIKE 'hits{%' ORDER BY id;
-- backtest() replays a series with the same settings: node d alerts with
-- alert_after 1, not with the definition's 2 of 3.
SELECT n - 1 AS minute, value, is_anomaly, alert
  FROM metric_anomaly.backtest('hits{node=d}', :'base', :'base'::timestamptz + interval '36 minutes')
 WHERE is_anomaly OR alert IS NOT NULL;
SELECT n - 1 AS minute, value, is_anomaly, alert
  FROM metric_anomaly.backtest('hits{node=d}', :'base', :'base'::timestamptz + interval '36 minutes', '{"alert_after": 1}')
 WHERE is_anomaly OR alert IS NOT NULL;

-- Detection settings can change on a definition with stored points (its
-- shape cannot), and are checked on UPDATE too.
UPDATE metric_anomaly.metric_definitions SET detection = detection || '{"sigma": 4}' WHERE metric_name = 'hits';
SELECT metric_anomaly.series_settings('hits{node=a}') ->> 'sigma' AS node_a,
       metric_anomaly.series_settings('hits{node=c}') ->> 'sigma' AS node_c;
UPDATE metric_anomaly.metric_definitions SET detection = '{"sigma": -1}' WHERE metric_name = 'hits';
UPDATE metric_anomaly.metric_definitions SET detection = '{"alert_after": 2, "treshold": 1}' WHERE metric_name = 'hits';
-- A series belongs to a definition only when it is one of its series: an
-- event type named like one keeps its own settings.
SELECT metric_anomaly.series_settings('hits{node=zz}') AS unknown_series,
       metric_anomaly.series_settings('hits') AS no_such_series;

-- Backfill of derived metrics.  Nodes a and b over six minutes: entries
-- (some ok), exits; node b has no ok entry at minute 3 and no exits at
-- minutes 4 and 5.
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, filter, dimensions)
VALUES ('entered', '{enter}', NULL, '{node}'),
       ('entered_ok', '{enter}', '{"ok": true}', '{node}'),
       ('left', '{leave}', NULL, '{node}');
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp, payload)
SELECT 'enter', '2026-03-01 10:00+00'::timestamptz + m * interval '1 minute' + i * interval '1 second',
       jsonb_build_object('node', n, 'ok', n = 'a' AND i % 2 = 0 OR n = 'b' AND m <> 3)
  FROM generate_series(0, 5) AS m, (VALUES ('a'), ('b')) AS v(n),
       LATERAL generate_series(1, CASE n WHEN 'a' THEN 5 + m ELSE 3 END) AS i;
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp, payload)
SELECT 'leave', '2026-03-01 10:00+00'::timestamptz + m * interval '1 minute' + i * interval '1 second',
       jsonb_build_object('node', n)
  FROM generate_series(0, 5) AS m, (VALUES ('a'), ('b')) AS v(n),
       LATERAL generate_series(1, CASE WHEN n = 'a' THEN 4 WHEN m < 4 THEN 3 ELSE 0 END) AS i;
SELECT metric_anomaly.process_pending('2026-03-01 10:07+00') AS folded;
-- Defined afterwards: a ratio and a backlog, then backfilled.
INSERT INTO metric_anomaly.metric_definitions (metric_name, aggregate, numerator, denominator, dimensions, enabled, detection)
VALUES ('ok_share', 'ratio', 'entered_ok', 'entered', '{node}', false, '{"direction": "down"}'),
       ('queue', 'backlog', 'entered', 'left', '{node}', false, NULL);
SELECT metric_anomaly.backfill_metric('ok_share') AS points;
SELECT metric_anomaly.backfill_metric('queue') AS points;
SELECT metric_name, enabled FROM metric_anomaly.metric_definitions WHERE metric_name IN ('ok_share', 'queue') ORDER BY 1;
-- Every backfilled point next to the same figure computed from the raw
-- events here.
CREATE TEMP TABLE raw AS
SELECT n.node, b.bucket,
       (SELECT count(*) FROM metric_anomaly.business_events e
         WHERE e.event_type = 'enter' AND e.payload ->> 'node' = n.node
           AND date_trunc('minute', e.event_timestamp) = b.bucket) AS entered,
       (SELECT count(*) FROM metric_anomaly.business_events e
         WHERE e.event_type = 'enter' AND e.payload ->> 'node' = n.node AND (e.payload ->> 'ok')::boolean
           AND date_trunc('minute', e.event_timestamp) = b.bucket) AS entered_ok,
       (SELECT count(*) FROM metric_anomaly.business_events e
         WHERE e.event_type = 'leave' AND e.payload ->> 'node' = n.node
           AND date_trunc('minute', e.event_timestamp) = b.bucket) AS left_
  FROM (VALUES ('a'), ('b')) AS n(node),
       generate_series('2026-03-01 10:00+00'::timestamptz, '2026-03-01 10:05+00', interval '1 minute') AS b(bucket);
SELECT r.node, r.bucket, r.entered, r.entered_ok, r.left_,
       s.metric_value AS ok_share, s.sample_count AS ok_share_n,
       round(r.entered_ok::numeric / r.entered, 6) = round(s.metric_value::numeric, 6) AS share_exact,
       q.metric_value AS queue, q.sample_count AS queue_n,
       q.metric_value = sum(r.entered - r.left_) OVER (PARTITION BY r.node ORDER BY r.bucket) AS queue_exact,
       q.needs_eval AS queue_to_judge
  FROM raw r
  LEFT JOIN metric_anomaly.aggregated_metrics s ON s.metric_name = 'ok_share{node=' || r.node || '}' AND s.metric_timestamp = r.bucket
  LEFT JOIN metric_anomaly.aggregated_metrics q ON q.metric_name = 'queue{node=' || r.node || '}' AND q.metric_timestamp = r.bucket
 ORDER BY 1, 2;
-- Nothing else was written under their names, and aggregate_value() agrees.
SELECT count(*) AS rows FROM metric_anomaly.aggregated_metrics WHERE metric_name LIKE 'ok\_share%' OR metric_name LIKE 'queue%';
SELECT metric_anomaly.aggregate_value('ok_share', '{"node": "a"}', '-infinity', 'infinity', 'ratio') AS share_a,
       metric_anomaly.aggregate_value('queue', '{"node": "b"}', '-infinity', 'infinity', 'backlog') AS queue_b;
-- The series of a derived definition take its settings.
SELECT metric_anomaly.series_settings('ok_share{node=b}') AS settings;
-- Once enabled, later events reach it through the passes: a late exit at
-- minute 1 of node b moves every later backlog value down by one.  A second
-- backfill rewrites the same values.
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp, payload)
VALUES ('leave', '2026-03-01 10:01:30+00', '{"node": "b"}');
SELECT metric_anomaly.process_pending('2026-03-01 10:07+00') AS folded;
SELECT metric_timestamp, metric_value FROM metric_anomaly.aggregated_metrics
 WHERE metric_name = 'queue{node=b}' ORDER BY 1;
SELECT metric_anomaly.backfill_metric('queue') AS points;
SELECT metric_timestamp, metric_value FROM metric_anomaly.aggregated_metrics
 WHERE metric_name = 'queue{node=b}' ORDER BY 1;
-- A derived metric over a base that is not backfilled yet is refused
-- until the base is.
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, dimensions, enabled)
VALUES ('left_later', '{leave}', '{node}', false);
INSERT INTO metric_anomaly.metric_definitions (metric_name, aggregate, numerator, denominator, dimensions, enabled)
VALUES ('queue_later', 'backlog', 'entered', 'left_later', '{node}', false);
\set VERBOSITY default
SELECT metric_anomaly.backfill_metric('queue_later');
\set VERBOSITY terse
SELECT metric_anomaly.backfill_metric('left_later') AS points;
SELECT metric_anomaly.backfill_metric('queue_later') AS points;
SELECT count(*) AS rows,
       count(*) FILTER (WHERE l.metric_value = q.metric_value AND l.sample_count = q.sample_count) AS equal_to_queue
  FROM metric_anomaly.aggregated_metrics l
  JOIN metric_anomaly.aggregated_metrics q
    ON q.metric_name = 'queue' || substr(l.metric_name, length('queue_later') + 1) AND q.metric_timestamp = l.metric_timestamp
 WHERE l.metric_name LIKE 'queue\_later{%';

DROP EXTENSION metric_anomaly;

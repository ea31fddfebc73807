-- Metrics beyond counts: definitions, sums, quantiles, rates, derived
-- metrics, dimensions, caps, bad payloads, duplicates.
CREATE EXTENSION metric_anomaly;
SET timezone = 'UTC';
SET datestyle = 'ISO';
SET extra_float_digits = 0;

-- Every validation error of a definition.
\set VERBOSITY default
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types) VALUES ('bad{name}', '{a}');
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, aggregate) VALUES ('m', '{a}', 'median');
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, resolution) VALUES ('m', '{a}', '2 minutes');
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types) VALUES ('m', '{}');
INSERT INTO metric_anomaly.metric_definitions (metric_name, aggregate) VALUES ('m', 'count');
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, aggregate) VALUES ('m', '{a}', 'sum');
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, aggregate, value_path) VALUES ('m', '{a}', 'quantile', '{v}');
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, aggregate, value_path, quantile) VALUES ('m', '{a}', 'quantile', '{v}', 1);
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, aggregate, value_path, quantile) VALUES ('m', '{a}', 'sum', '{v}', 0.5);
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, aggregate, value_path) VALUES ('m', '{a}', 'rate', '{v}');
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, aggregate, value_path, threshold) VALUES ('m', '{a}', 'rate', '{v}', 'Infinity');
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, filter) VALUES ('m', '{a}', '[1]');
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, business_key) VALUES ('m', '{a}', '{}');
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, dimensions) VALUES ('m', '{a}', '{node,node}');
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, dimensions) VALUES ('m', '{a}', '{"no space"}');
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, max_series) VALUES ('m', '{a}', 0);
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, dedup_horizon) VALUES ('m', '{a}', '31 days');
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, numerator) VALUES ('m', '{a}', 'x');
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, aggregate, numerator, denominator) VALUES ('m', '{a}', 'ratio', 'x', 'y');
INSERT INTO metric_anomaly.metric_definitions (metric_name, aggregate, numerator, denominator) VALUES ('m', 'ratio', 'x', 'y');
\set VERBOSITY terse

-- The definitions of the tests below.
INSERT INTO metric_anomaly.metric_definitions
       (metric_name, event_types, aggregate, value_path, quantile, threshold, dimensions, filter, resolution, max_series, business_key)
VALUES ('push_count', '{push}', 'count', NULL, NULL, NULL, '{node}', NULL, '1 minute', 1000, NULL),
       ('push_sum', '{push}', 'sum', '{timing,ms}', NULL, NULL, '{node}', NULL, '1 minute', 1000, NULL),
       ('push_avg', '{push}', 'avg', '{timing,ms}', NULL, NULL, '{}', NULL, '1 minute', 1000, NULL),
       ('push_min', '{push}', 'min', '{timing,ms}', NULL, NULL, '{node}', NULL, '1 minute', 1000, NULL),
       ('push_max', '{push}', 'max', '{timing,ms}', NULL, NULL, '{node}', NULL, '5 minutes', 1000, NULL),
       ('push_p95', '{push}', 'quantile', '{timing,ms}', 0.95, NULL, '{node,region}', NULL, '1 minute', 1000, NULL),
       ('push_within', '{push}', 'rate', '{timing,ms}', NULL, 100, '{node}', NULL, '1 minute', 1000, NULL),
       ('push_ok', '{push}', 'count', NULL, NULL, NULL, '{node}', '{"status": "ok"}', '1 minute', 1000, NULL),
       ('left_count', '{pushed}', 'count', NULL, NULL, NULL, '{node}', NULL, '1 minute', 1000, NULL),
       ('order_amount', '{order}', 'sum', '{amount}', NULL, NULL, '{}', NULL, '1 hour', 1000, '{order_id}'),
       ('small_cap', '{push}', 'count', NULL, NULL, NULL, '{seq}', NULL, '15 minutes', 3, NULL);
INSERT INTO metric_anomaly.metric_definitions (metric_name, aggregate, numerator, denominator, dimensions)
VALUES ('push_ok_rate', 'ratio', 'push_ok', 'push_count', '{node}'),
       ('push_backlog', 'backlog', 'push_count', 'left_count', '{node}');
-- A derived metric needs matching dimensions.
INSERT INTO metric_anomaly.metric_definitions (metric_name, aggregate, numerator, denominator)
VALUES ('bad_ratio', 'ratio', 'push_ok', 'push_count');
INSERT INTO metric_anomaly.metric_definitions (metric_name, aggregate, numerator, denominator, dimensions)
VALUES ('bad_ratio', 'ratio', 'push_p95', 'push_count', '{node,region}');

-- Fixed data: node a and b, three minutes; timing.ms = i (1..60).
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp, payload)
SELECT 'push', '2026-01-01 10:00:00+00'::timestamptz + (i - 1) * interval '3 seconds',
       jsonb_build_object('node', CASE WHEN i % 3 = 0 THEN 'b' ELSE 'a' END,
                          'region', CASE WHEN i % 2 = 0 THEN 'eu' ELSE 'us' END,
                          'seq', i % 5,
                          'status', CASE WHEN i % 4 = 0 THEN 'failed' ELSE 'ok' END,
                          'timing', jsonb_build_object('ms', i * 3))
  FROM generate_series(1, 60) AS i;
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp, payload)
SELECT 'pushed', '2026-01-01 10:00:00+00'::timestamptz + (i - 1) * interval '6 seconds',
       jsonb_build_object('node', 'a')
  FROM generate_series(1, 25) AS i;
-- Bad payloads: missing, JSON null, non-numeric, wrong type, out of range;
-- a numeric string counts.
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp, payload)
VALUES ('push', '2026-01-01 10:01:30+00', '{"node": "a"}'),
       ('push', '2026-01-01 10:01:30+00', '{"node": "a", "timing": {"ms": null}}'),
       ('push', '2026-01-01 10:01:30+00', '{"node": "a", "timing": {"ms": "fast"}}'),
       ('push', '2026-01-01 10:01:30+00', '{"node": "a", "timing": {"ms": [1]}}'),
       ('push', '2026-01-01 10:01:30+00', '{"node": "a", "timing": {"ms": 1e400}}'),
       ('push', '2026-01-01 10:01:30+00', '{"node": "a", "timing": "12"}'),
       ('push', '2026-01-01 10:01:30+00', NULL),
       ('push', '2026-01-01 10:02:30+00', '{"node": "b", "timing": {"ms": " 7.5 "}}');
-- Orders: order 2 sent three times, order 3 twice in later transactions.
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp, payload)
VALUES ('order', '2026-01-01 10:00:10+00', '{"order_id": 1, "amount": 10.5}'),
       ('order', '2026-01-01 10:00:20+00', '{"order_id": 2, "amount": 20}'),
       ('order', '2026-01-01 10:00:21+00', '{"order_id": 2, "amount": 20}'),
       ('order', '2026-01-01 10:00:30+00', '{"order_id": 3, "amount": 5.25}');
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp, payload)
VALUES ('order', '2026-01-01 10:01:00+00', '{"order_id": 2, "amount": 20}'),
       ('order', '2026-01-01 10:01:10+00', '{"order_id": 4, "amount": 1}');
-- Small batches: a definition reads exactly the events of each batch.
SET metric_anomaly.batch_size = 7;
SELECT metric_anomaly.process_pending('2026-01-01 10:10:00+00') AS folded;

-- Implicit per-minute counts are unchanged.
SELECT metric_name, metric_timestamp, metric_value, sample_count
  FROM metric_anomaly.aggregated_metrics
 WHERE metric_name IN ('push', 'pushed', 'order') AND sample_count > 0
 ORDER BY 1, 2;

-- Every series point of the base metrics, as detection sees it.
SELECT metric_name, metric_timestamp, round(metric_value::numeric, 6) AS value, sample_count
  FROM metric_anomaly.aggregated_metrics
 WHERE (metric_name LIKE '%{%' OR metric_name IN ('push_avg', 'order_amount'))
   AND sample_count > 0
 ORDER BY 1, 2;
-- Count and sum series at 1 minute are zero-filled like event types.
SELECT metric_name, count(*) AS zero_minutes, max(metric_timestamp) AS until
  FROM metric_anomaly.aggregated_metrics
 WHERE metric_name LIKE '%{%' AND sample_count = 0
 GROUP BY 1 ORDER BY 1;

-- Exact sums, averages, minimums, maximums, rates over ranges and roll-ups.
SELECT a.metric, a.dims, a.agg,
       metric_anomaly.aggregate_value(a.metric, a.dims::jsonb, '2026-01-01 10:00+00', '2026-01-01 10:03+00', a.agg) AS value
  FROM (VALUES ('push_count', '{}', 'count'), ('push_count', '{"node": "a"}', 'count'),
               ('push_sum', '{}', 'sum'), ('push_sum', '{"node": "b"}', 'sum'),
               ('push_sum', '{}', 'avg'), ('push_avg', '{}', 'avg'),
               ('push_min', '{}', 'min'), ('push_min', '{"node": "b"}', 'min'),
               ('push_max', '{}', 'max'), ('push_within', '{}', 'rate'),
               ('push_within', '{"node": "a"}', 'rate'), ('push_ok_rate', '{}', 'ratio'),
               ('push_ok_rate', '{"node": "b"}', 'ratio'), ('push_backlog', '{"node": "a"}', 'backlog'),
               ('order_amount', '{}', 'sum'), ('order_amount', '{}', 'count')) AS a(metric, dims, agg);
-- The same from the raw events.
SELECT count(*) AS n, sum((payload #>> '{timing,ms}')::numeric) AS sum,
       min((payload #>> '{timing,ms}')::numeric) AS min, max((payload #>> '{timing,ms}')::numeric) AS max,
       round(avg((payload #>> '{timing,ms}')::numeric), 6) AS avg
  FROM metric_anomaly.business_events
 WHERE event_type = 'push' AND jsonb_typeof(payload #> '{timing,ms}') = 'number'
   AND abs((payload #>> '{timing,ms}')::numeric) < 1e300;

-- Bad payloads and duplicates, counted per metric.
SELECT metric_name, reason, events FROM metric_anomaly.metric_skipped_events ORDER BY 1, 2;
SELECT * FROM metric_anomaly.metric_status ORDER BY 1;

-- A dedup horizon shorter than the data: order 1 again, 31 minutes after
-- its first event, counts once more after order 5 (10:30) made the metric
-- forget keys older than 10:00.
UPDATE metric_anomaly.metric_definitions SET dedup_horizon = '20 minutes' WHERE metric_name = 'order_amount';
-- Late events merge into their bucket and re-judge it; the backlog of every
-- later bucket moves; a business key seen in an earlier pass stays counted
-- once.
SELECT count(*) AS judged_before FROM metric_anomaly.aggregated_metrics
 WHERE metric_name IN ('push_sum{node=a}', 'push_backlog{node=a}') AND NOT needs_eval AND sample_count > 0;
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp, payload)
VALUES ('push', '2026-01-01 10:01:59+00', '{"node": "a", "region": "eu", "timing": {"ms": 1000}}'),
       ('order', '2026-01-01 10:30:00+00', '{"order_id": 4, "amount": 1}'),
       ('order', '2026-01-01 10:30:00+00', '{"order_id": 5, "amount": 2}');
SELECT metric_anomaly.process_pending('2026-01-01 10:40:00+00') AS folded;
SELECT metric_name, metric_timestamp, metric_value, sample_count, needs_eval
  FROM metric_anomaly.aggregated_metrics
 WHERE metric_name IN ('push_sum{node=a}', 'push_max{node=a}', 'push_backlog{node=a}', 'push_p95{node=a,region=eu}')
   AND metric_timestamp BETWEEN '2026-01-01 10:00+00' AND '2026-01-01 10:02+00'
 ORDER BY 1, 2;
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp, payload)
VALUES ('order', '2026-01-01 10:31:00+00', '{"order_id": 1, "amount": 10.5}'),
       ('order', '2026-01-01 10:31:00+00', '{"order_id": 5, "amount": 2}');
SELECT metric_anomaly.process_pending('2026-01-01 10:40:00+00') AS folded;
SELECT business_key, event_timestamp FROM metric_anomaly.metric_seen_keys ORDER BY 1;
SELECT metric_anomaly.aggregate_value('order_amount', '{}', '-infinity', 'infinity', 'sum') AS order_sum,
       metric_anomaly.aggregate_value('order_amount', '{}', '-infinity', 'infinity', 'count') AS orders;
SELECT metric_name, reason, events FROM metric_anomaly.metric_skipped_events
 WHERE reason = 'duplicate' ORDER BY 1;

-- Quantiles: 3000 values (spread over four decades) in 2 x 3 series over
-- ten minutes, folded in two passes, the second with late events into
-- every minute.  Every answer is within 1% of percentile_disc over the same
-- events: per series and minute, merged across minutes, rolled up over a
-- dimension and over all.
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, aggregate, value_path, quantile, dimensions)
VALUES ('api_p95', '{api}', 'quantile', '{latency_ms}', 0.95, '{app_v,endpoint}');
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp, payload)
SELECT 'api', '2026-01-02 00:00:00+00'::timestamptz + (i % 600) * interval '1 second',
       jsonb_build_object('app_v', 'v' || (i % 2), 'endpoint', '/e' || (i % 3),
                          'latency_ms', round((power(10, 4 * ((i * 7919) % 3001) / 3000.0))::numeric, 3))
  FROM generate_series(1, 2000) AS i;
SELECT metric_anomaly.process_pending('2026-01-02 00:20:00+00') AS folded;
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp, payload)
SELECT 'api', '2026-01-02 00:00:00+00'::timestamptz + (i % 600) * interval '1 second',
       jsonb_build_object('app_v', 'v' || (i % 2), 'endpoint', '/e' || (i % 3),
                          'latency_ms', round((power(10, 4 * ((i * 7919) % 3001) / 3000.0))::numeric, 3))
  FROM generate_series(2001, 3000) AS i;
SELECT metric_anomaly.process_pending('2026-01-02 00:20:00+00') AS folded;
CREATE TEMP TABLE api AS
SELECT event_timestamp AS ts, jsonb_build_object('app_v', payload ->> 'app_v', 'endpoint', payload ->> 'endpoint') AS dims,
       (payload ->> 'latency_ms')::float8 AS v
  FROM metric_anomaly.business_events WHERE event_type = 'api';
CREATE TEMP TABLE asks AS
SELECT d.dims, r.since, r.until, q.q
  FROM (SELECT DISTINCT dims FROM api UNION ALL VALUES ('{}'::jsonb), ('{"app_v": "v1"}'), ('{"endpoint": "/e2"}')) d,
       (SELECT t AS since, t + interval '1 minute' AS until
          FROM generate_series('2026-01-02 00:00+00'::timestamptz, '2026-01-02 00:09+00', interval '1 minute') t
        UNION ALL VALUES ('2026-01-02 00:00+00'::timestamptz, '2026-01-02 00:10+00'::timestamptz),
                         ('2026-01-02 00:03+00', '2026-01-02 00:07+00')) r,
       (VALUES (0.5::float8), (0.9), (0.95), (0.99), (0.01)) q(q);
SELECT count(*) AS answers,
       count(*) FILTER (WHERE abs(est - exact) <= 0.01 * abs(exact) * (1 + 1e-9)) AS within_1pct,
       max(n) AS most_events, min(n) AS fewest_events
  FROM (SELECT a.*,
               metric_anomaly.quantile('api_p95', a.dims, a.since, a.until, a.q) AS est,
               (SELECT percentile_disc(a.q) WITHIN GROUP (ORDER BY x.v) FROM api x
                 WHERE x.dims @> a.dims AND x.ts >= a.since AND x.ts < a.until) AS exact,
               (SELECT count(*) FROM api x WHERE x.dims @> a.dims AND x.ts >= a.since AND x.ts < a.until) AS n
          FROM asks a) s;
-- The stored p95 of each series point is the same estimate.
SELECT count(*) AS points,
       count(*) FILTER (WHERE m.metric_value = metric_anomaly.quantile('api_p95', p.dimensions, p.bucket, p.bucket + interval '1 minute', 0.95)) AS equal
  FROM metric_anomaly.metric_points p
  JOIN metric_anomaly.aggregated_metrics m ON m.metric_name = p.series_name AND m.metric_timestamp = p.bucket
 WHERE p.metric_name = 'api_p95';

-- Sketches directly: empty, a constant, negatives and zero, errors.
SELECT metric_anomaly.sketch_quantile(metric_anomaly.sketch(v), 0.5) AS none FROM (SELECT NULL::float8 AS v) s;
SELECT metric_anomaly.sketch_quantile(metric_anomaly.sketch(42), 0.3) AS constant;
SELECT q, metric_anomaly.sketch_quantile(s, q) AS est, (SELECT percentile_disc(q) WITHIN GROUP (ORDER BY v) FROM unnest(ARRAY[-50, -3, 0, 0, 1, 2, 200]::float8[]) v) AS exact
  FROM (SELECT metric_anomaly.sketch(v) AS s FROM unnest(ARRAY[-50, -3, 0, 0, 1, 2, 200]::float8[]) v) x,
       (VALUES (0.0::float8), (0.2), (0.3), (0.5), (0.7), (0.8), (1.0)) q(q);
SELECT metric_anomaly.sketch_quantile('\x00'::bytea, 0.5);
SELECT metric_anomaly.sketch_quantile(metric_anomaly.sketch(1), 1.5);
SELECT metric_anomaly.sketch('NaN');
SELECT metric_anomaly.quantile('push_sum', '{}', '-infinity', 'infinity', 0.5);
SELECT metric_anomaly.quantile('nope', '{}', '-infinity', 'infinity', 0.5);
SELECT metric_anomaly.aggregate_value('push_count', '{}', '-infinity', 'infinity', 'sum');
SELECT metric_anomaly.aggregate_value('push_sum', '{}', '-infinity', 'infinity', 'rate');
SELECT metric_anomaly.aggregate_value('push_sum', '{}', '-infinity', 'infinity', 'p95');
SELECT metric_anomaly.aggregate_value('push_backlog', '{}', '-infinity', 'infinity', 'sum');

-- A definition with points keeps its shape; enabled can change.
UPDATE metric_anomaly.metric_definitions SET dimensions = '{}' WHERE metric_name = 'push_min';
UPDATE metric_anomaly.metric_definitions SET enabled = false WHERE metric_name = 'push_min';
-- A definition cannot take the name of an event type's count.
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types) VALUES ('push', '{push}');
-- Dropping a definition drops its series, points and counters.
DELETE FROM metric_anomaly.metric_definitions WHERE metric_name = 'small_cap';
SELECT count(*) AS left_points FROM metric_anomaly.metric_points WHERE metric_name = 'small_cap';

-- Charts and series names take the dimensions (typed jsonb: the older
-- signature stays, and an untyped literal could be either).
SELECT metric_anomaly.series_name('push_p95', '{"node": "a", "region": "eu"}'),
       metric_anomaly.series_name('push_backlog', '{"node": "b"}'),
       metric_anomaly.series_name('push_avg', '{}');
SELECT substr(metric_anomaly.render_metric_chart('push_sum', '{"node": "a"}'::jsonb, '2026-01-01 10:00+00', '2026-01-01 10:10+00'), 1, 8) AS png_signature;
SELECT substr(metric_anomaly.render_metric_chart('push_sum{node=a}', '2026-01-01 10:00+00', '2026-01-01 10:10+00'), 1, 8) AS png_signature;
SELECT metric_anomaly.render_metric_chart('push_sum', '{"node": "z"}'::jsonb, '2026-01-01 10:00+00', '2026-01-01 10:10+00');

-- Long dimension values: each is cut to 100 characters, and a series name
-- longer than 200 characters (what alerting keys a series by) keeps its
-- first 182 and a hash of the dimension values.
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, dimensions)
VALUES ('long_dims', '{long}', '{a,b,c}');
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp, payload)
VALUES ('long', '2026-01-01 10:05:00+00', jsonb_build_object('a', repeat('x', 150), 'b', repeat('y', 90), 'c', 'z')),
       ('long', '2026-01-01 10:05:00+00', jsonb_build_object('a', repeat('x', 150), 'b', repeat('y', 90), 'c', 'w'));
SELECT metric_anomaly.process_pending('2026-01-01 10:40:00+00') AS folded;
SELECT length(dimensions ->> 'a') AS a_chars, length(series_name) AS name_chars,
       right(series_name, 18) ~ '^#[0-9a-f]{16}}$' AS hashed
  FROM metric_anomaly.metric_series WHERE metric_name = 'long_dims' ORDER BY series_name;

-- Backfill: a definition added later, disabled, folds the retained events
-- the passes folded before, once, and is enabled; later events come from
-- the passes.
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, aggregate, value_path, dimensions, enabled)
VALUES ('push_sum_later', '{push}', 'sum', '{timing,ms}', '{node}', false);
SELECT metric_anomaly.backfill_metric('push_sum_later') AS points;
SELECT metric_anomaly.backfill_metric('push_sum_later');
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp, payload)
VALUES ('push', '2026-01-01 10:02:10+00', '{"node": "b", "timing": {"ms": 0.5}}');
SELECT metric_anomaly.process_pending('2026-01-01 10:40:00+00') AS folded;
SELECT p.dimensions, p.bucket, p.count, p.sum, q.count AS other_count, q.sum AS other_sum
  FROM metric_anomaly.metric_points p
  JOIN metric_anomaly.metric_points q
    ON q.metric_name = 'push_sum' AND q.dimensions = p.dimensions AND q.bucket = p.bucket
 WHERE p.metric_name = 'push_sum_later'
 ORDER BY 1, 2;
-- A ratio or backlog backfills from the stored points of its numerator
-- and denominator, enabled or not: here it rewrites the values the passes
-- wrote (definitions.sql backfills ones defined later).
CREATE TEMP TABLE rate_before AS
SELECT metric_name, metric_timestamp, metric_value, sample_count
  FROM metric_anomaly.aggregated_metrics WHERE metric_name LIKE 'push\_ok\_rate%';
SELECT metric_anomaly.backfill_metric('push_ok_rate') AS points;
SELECT count(*) AS rows, count(b.metric_name) AS before,
       count(*) FILTER (WHERE (b.metric_value, b.sample_count) = (a.metric_value, a.sample_count)) AS unchanged
  FROM metric_anomaly.aggregated_metrics a
  LEFT JOIN rate_before b USING (metric_name, metric_timestamp)
 WHERE a.metric_name LIKE 'push\_ok\_rate%';
SELECT metric_anomaly.backfill_metric('nope');

DROP EXTENSION metric_anomaly;

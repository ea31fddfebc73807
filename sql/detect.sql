-- Detection: 3-sigma per metric, evidence checked against avg() and
-- stddev_pop() computed here over the same window.
CREATE EXTENSION metric_anomaly;
SET timezone = 'UTC';
SET datestyle = 'ISO';

-- Adds n events of type t in the minute starting at m.
CREATE FUNCTION pg_temp.events(t text, m timestamptz, n int) RETURNS int
LANGUAGE sql AS $$
    INSERT INTO metric_anomaly.business_events (event_type, event_timestamp)
    SELECT t, m + (i % 60) * interval '1 second' FROM generate_series(1, n) AS i;
    SELECT n
$$;
-- The evidence of a point next to the figures computed independently over
-- its window (the previous w points).
CREATE FUNCTION pg_temp.check_point(name text, m timestamptz, w int)
RETURNS TABLE (value float8, is_anomaly boolean, points int, mean_ok boolean,
               std_ok boolean, upper_ok boolean, lower_ok boolean, z_ok boolean)
LANGUAGE sql AS $$
    WITH h AS (
        SELECT metric_value FROM metric_anomaly.aggregated_metrics
         WHERE metric_name = name AND metric_timestamp < m
         ORDER BY metric_timestamp DESC LIMIT w),
    e AS (SELECT avg(metric_value) AS mean, stddev_pop(metric_value) AS sd, count(*) AS n FROM h)
    SELECT a.metric_value, a.is_anomaly, (a.anomaly_context->>'window')::int,
           abs((a.anomaly_context->>'mean')::float8 - e.mean) < 1e-9,
           abs((a.anomaly_context->>'std_dev')::float8 - e.sd) < 1e-9,
           abs((a.anomaly_context->>'upper_boundary')::float8 - (e.mean + 3 * e.sd)) < 1e-9,
           abs((a.anomaly_context->>'lower_boundary')::float8 - (e.mean - 3 * e.sd)) < 1e-9,
           abs((a.anomaly_context->>'z_score')::float8 - (a.metric_value - e.mean) / e.sd) < 1e-9
      FROM metric_anomaly.aggregated_metrics a, e
     WHERE a.metric_name = name AND a.metric_timestamp = m
$$;

-- The source design's scenario: three hours of about 100 sign-ups a minute
-- with noise, then a minute of 30.
SELECT sum(pg_temp.events('signups', '2026-02-01 00:00+00'::timestamptz + i * interval '1 minute',
                      100 + (i * 7919) % 21 - 10)) AS added
  FROM generate_series(0, 179) AS i;
SELECT sum(pg_temp.events('signups', '2026-02-01 03:00+00', 30)) AS added;
SELECT metric_anomaly.process_pending('2026-02-01 03:01+00') AS folded;

SELECT * FROM pg_temp.check_point('signups', '2026-02-01 03:00+00', 180);
SELECT anomaly_context->>'method' AS method, anomaly_context->'sigma' AS sigma,
       anomaly_context->'direction' AS direction, anomaly_context->'value' AS value,
       round((anomaly_context->>'z_score')::numeric, 6) AS z
  FROM metric_anomaly.aggregated_metrics
 WHERE metric_name = 'signups' AND metric_timestamp = '2026-02-01 03:00+00';
-- Only the collapse is anomalous; no row is left to evaluate.
SELECT metric_name, metric_timestamp, metric_value FROM metric_anomaly.anomalies;
SELECT count(*) AS pending FROM metric_anomaly.aggregated_metrics WHERE needs_eval;

-- 89 points of history are too few (min_points 90): no verdict, no
-- evidence; 90 are enough.
SELECT metric_timestamp, anomaly_context IS NOT NULL AS evaluated,
       (anomaly_context->>'window')::int AS points
  FROM metric_anomaly.aggregated_metrics
 WHERE metric_name = 'signups'
   AND metric_timestamp IN ('2026-02-01 01:29+00', '2026-02-01 01:30+00', '2026-02-01 01:31+00')
 ORDER BY 1;
SELECT count(*) FILTER (WHERE anomaly_context IS NULL) AS skipped,
       count(*) FILTER (WHERE anomaly_context IS NOT NULL) AS evaluated
  FROM metric_anomaly.aggregated_metrics WHERE metric_name = 'signups';
-- Every evaluated point agrees with the independent figures.
SELECT count(*) AS agreeing
  FROM metric_anomaly.aggregated_metrics a,
       LATERAL pg_temp.check_point('signups', a.metric_timestamp, 180) c
 WHERE a.metric_name = 'signups' AND a.anomaly_context IS NOT NULL
   AND c.mean_ok AND c.std_ok AND c.upper_ok AND c.lower_ok AND c.z_ok
   AND c.points = least(180, extract(epoch FROM a.metric_timestamp - '2026-02-01 00:00+00') / 60);

-- A late event re-evaluates the row it changes: 70 late sign-ups bring the
-- collapse minute back to 100, which is normal.
SELECT sum(pg_temp.events('signups', '2026-02-01 03:00+00', 70)) AS added;
SELECT metric_anomaly.process_pending('2026-02-01 03:01+00') AS folded;
SELECT * FROM pg_temp.check_point('signups', '2026-02-01 03:00+00', 180);
SELECT count(*) AS anomalies FROM metric_anomaly.anomalies;

-- A value exactly on the boundary is normal; beyond it, anomalous.  History
-- alternating 1 and 3 has mean 2 and std_dev 1, so the band is [-1, 5].
INSERT INTO metric_anomaly.metrics (metric_name, window_size, min_points)
VALUES ('edge', 100, 90), ('edge2', 100, 90);
SELECT sum(pg_temp.events(n, '2026-02-02 00:00+00'::timestamptz + i * interval '1 minute', 1 + 2 * (i % 2))) AS added
  FROM generate_series(0, 99) AS i, unnest(array['edge', 'edge2']) AS n;
SELECT sum(pg_temp.events('edge', '2026-02-02 01:40+00', 5)) AS added;
SELECT sum(pg_temp.events('edge2', '2026-02-02 01:40+00', 6)) AS added;
SELECT metric_anomaly.process_pending('2026-02-02 01:41+00') AS folded;
SELECT metric_name, metric_value, is_anomaly, anomaly_context->'mean' AS mean,
       anomaly_context->'std_dev' AS std_dev, anomaly_context->'upper_boundary' AS upper,
       anomaly_context->'z_score' AS z
  FROM metric_anomaly.aggregated_metrics
 WHERE metric_name IN ('edge', 'edge2') AND metric_timestamp = '2026-02-02 01:40+00'
 ORDER BY 1;

-- Direction: 'up' ignores a drop, 'down' ignores a spike, 'both' sees both.
INSERT INTO metric_anomaly.metrics (metric_name, window_size, min_points, direction)
VALUES ('up_drop', 20, 10, 'up'), ('down_spike', 20, 10, 'down'),
       ('both_drop', 20, 10, 'both'), ('down_drop', 20, 10, 'down');
SELECT sum(pg_temp.events(n, '2026-02-03 00:00+00'::timestamptz + i * interval '1 minute', 50 + (i % 3))) AS added
  FROM generate_series(0, 19) AS i,
       unnest(array['up_drop', 'down_spike', 'both_drop', 'down_drop']) AS n;
SELECT sum(pg_temp.events(n, '2026-02-03 00:20+00', v)) AS added
  FROM (VALUES ('up_drop', 5), ('down_spike', 500), ('both_drop', 5), ('down_drop', 5)) AS x(n, v);
SELECT metric_anomaly.process_pending('2026-02-03 00:21+00') AS folded;
SELECT metric_name, metric_value, is_anomaly, anomaly_context->>'direction' AS direction
  FROM metric_anomaly.aggregated_metrics
 WHERE metric_timestamp = '2026-02-03 00:20+00'
   AND metric_name IN ('up_drop', 'down_spike', 'both_drop', 'down_drop')
 ORDER BY 1;

-- A flat history (std_dev 0): constant 100 then 300 is flagged (z_score is
-- null, there is no spread); a series that stays at 0 is not.
INSERT INTO metric_anomaly.metrics (metric_name, window_size, min_points)
VALUES ('flat', 10, 5), ('zero', 10, 5);
SELECT sum(pg_temp.events('flat', '2026-02-04 00:00+00'::timestamptz + i * interval '1 minute', 100)) AS added
  FROM generate_series(0, 9) AS i;
SELECT sum(pg_temp.events('flat', '2026-02-04 00:10+00', 300)) AS added;
SELECT sum(pg_temp.events('zero', '2026-02-04 00:00+00', 1)) AS added;
SELECT metric_anomaly.process_pending('2026-02-04 00:30+00') AS folded;
SELECT metric_name, metric_timestamp, metric_value, is_anomaly,
       anomaly_context->'std_dev' AS std_dev, anomaly_context->'z_score' AS z,
       anomaly_context->'flat' AS flat
  FROM metric_anomaly.aggregated_metrics
 WHERE (metric_name = 'flat' AND metric_timestamp = '2026-02-04 00:10+00')
    OR (metric_name = 'zero' AND metric_timestamp IN ('2026-02-04 00:11+00', '2026-02-04 00:29+00'))
 ORDER BY 1, 2;
SELECT count(*) FILTER (WHERE is_anomaly) AS anomalies,
       count(*) FILTER (WHERE anomaly_context IS NOT NULL) AS evaluated
  FROM metric_anomaly.aggregated_metrics
 WHERE metric_name = 'zero' AND metric_timestamp >= '2026-02-04 00:11+00';

-- Disabled metrics are not evaluated.
INSERT INTO metric_anomaly.metrics (metric_name, window_size, min_points, enabled)
VALUES ('off', 10, 5, false);
SELECT sum(pg_temp.events('off', '2026-02-05 00:00+00'::timestamptz + i * interval '1 minute', 10 + 90 * (i / 10))) AS added
  FROM generate_series(0, 10) AS i;
SELECT metric_anomaly.process_pending('2026-02-05 00:11+00') AS folded;
SELECT count(*) AS rows, count(anomaly_context) AS evaluated, bool_or(needs_eval) AS pending
  FROM metric_anomaly.aggregated_metrics WHERE metric_name = 'off';

-- three_sigma() returns the same evidence for any data.
SELECT metric_anomaly.three_sigma(array[1, 3, 1, 3], 5);
SELECT metric_anomaly.three_sigma(array[1, 3, 1, 3], 5.000001)->'is_anomaly' AS beyond;
SELECT metric_anomaly.three_sigma(array[1, NULL, 3, NULL], 2, 2.5);
SELECT metric_anomaly.three_sigma(array[7], 7)->'is_anomaly' AS single_same,
       metric_anomaly.three_sigma(array[7], 8)->'is_anomaly' AS single_other;
-- Rounding noise is not a change: 0.1 + 0.2 against a flat 0.3.
SELECT metric_anomaly.three_sigma(array[0.3, 0.3, 0.3], 0.1::float8 + 0.2::float8)->'is_anomaly' AS noise;
SELECT metric_anomaly.three_sigma(array[1e15, 1e15 + 2, 1e15 + 4], 1e15 + 2)->'std_dev' AS large_values_std;
SELECT metric_anomaly.three_sigma(NULL, 1) IS NULL AS null_history,
       metric_anomaly.three_sigma(array[1, 2], NULL) IS NULL AS null_value;
SELECT metric_anomaly.three_sigma(array[1, 'NaN', 3]::float8[], 2);
SELECT metric_anomaly.three_sigma(array[1, '-Infinity']::float8[], 2);
SELECT metric_anomaly.three_sigma(array[1, 2], 'NaN');
SELECT metric_anomaly.three_sigma(array[NULL, NULL]::float8[], 2);
SELECT metric_anomaly.three_sigma('{}', 2);
SELECT metric_anomaly.three_sigma(array[1, 2], 2, 0);
SELECT metric_anomaly.three_sigma(array[1e308, 1e308], 1);

DROP EXTENSION metric_anomaly;

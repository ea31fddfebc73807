-- Detection.  First the seed's 3-sigma method (chosen per metric), its
-- evidence checked against avg() and stddev_pop() computed here over the
-- same window; then the robust default, detect_series() and backtest().
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

INSERT INTO metric_anomaly.metrics (metric_name, method) VALUES ('signups', '3-sigma');
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
INSERT INTO metric_anomaly.metrics (metric_name, window_size, min_points, method)
VALUES ('edge', 100, 90, '3-sigma'), ('edge2', 100, 90, '3-sigma');
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
INSERT INTO metric_anomaly.metrics (metric_name, window_size, min_points, direction, method)
VALUES ('up_drop', 20, 10, 'up', '3-sigma'), ('down_spike', 20, 10, 'down', '3-sigma'),
       ('both_drop', 20, 10, 'both', '3-sigma'), ('down_drop', 20, 10, 'down', '3-sigma');
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
INSERT INTO metric_anomaly.metrics (metric_name, window_size, min_points, method)
VALUES ('flat', 10, 5, '3-sigma'), ('zero', 10, 5, '3-sigma');
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

------------------------------------------------------------------------------
-- The robust method, the default, through detect_series().
------------------------------------------------------------------------------
-- The series above would be zero-filled up to the dates below: drop them.
TRUNCATE metric_anomaly.aggregated_metrics, metric_anomaly.series;
-- A series at 1-minute spacing from 2026-03-01 00:00 UTC.
CREATE FUNCTION pg_temp.minutes(vals float8[]) RETURNS timestamptz[]
LANGUAGE sql AS $$
    SELECT array_agg(timestamptz '2026-03-01 00:00+00' + (i - 1) * interval '1 minute' ORDER BY i)
      FROM generate_subscripts(vals, 1) AS i
$$;

-- Fallback with too little history: min_points 3, no seasonal history.
-- Point 4: history 10, 12, 11 has median 11 and MAD 1, so 1.4826; the
-- values are counts, so the Poisson floor sqrt(11) = 3.3166 wins and the
-- band is 11 +- 6 * 3.3166.  Point 6: 50 is 11.76 robust sigmas from the
-- median 11.5 of 10, 12, 11, 13, 10 (scale sqrt(11.5)).
SELECT n, value, expected, round(lower::numeric, 4) AS lower,
       round(upper::numeric, 4) AS upper, round(score::numeric, 4) AS score,
       is_anomaly, alert
  FROM metric_anomaly.detect_series(pg_temp.minutes('{10, 12, 11, 13, 10, 50}'),
                                    '{10, 12, 11, 13, 10, 50}',
                                    '{"window_size": 10, "min_points": 3}');

-- Not counts (fractions): the scale is the MAD's, with the 1% floor.
SELECT n, expected, round(upper::numeric, 4) AS upper, round(score::numeric, 4) AS score, is_anomaly
  FROM metric_anomaly.detect_series(pg_temp.minutes('{1.5, 1.7, 1.6, 1.5, 1.7, 1.9}'),
                                    '{1.5, 1.7, 1.6, 1.5, 1.7, 1.9}',
                                    '{"window_size": 10, "min_points": 5}')
 WHERE n = 6;

-- The sustained-shift test: 40 points cycling 9, 9.5, 10, 10.5, 11
-- (median 10, MAD 0.5, scale 0.7413), then six at 7, then the cycle again.
-- Each 7 is 4.0469 scales below the median: inside the band 10 +- 6 * 0.7413,
-- so no point is flagged by itself.  From the fifth 7 on (points 45, 46) the
-- last 5 points all lie below, the nearest 4.0469 scales away, so the shift
-- score is -sqrt(5) * 4.0469 = -9.0492, beyond 6: flagged (evidence test
-- "shift"), and the two make an alert (2 of 20).  Point 47 (9.5) ends the run.
SELECT n, value, expected, round(lower::numeric, 4) AS lower, round(score::numeric, 4) AS score,
       is_anomaly, alert
  FROM (SELECT array_agg(CASE WHEN i BETWEEN 41 AND 46 THEN 7 ELSE 9 + 0.5 * ((i - 1) % 5) END
                         ORDER BY i)::float8[] AS a
          FROM generate_series(1, 60) AS i) v,
       LATERAL metric_anomaly.detect_series(pg_temp.minutes(v.a), v.a,
                                            '{"window_size": 40, "min_points": 20, "seasonality": "none"}')
 WHERE n BETWEEN 40 AND 48;

-- The recent baseline follows a trend: 0.5 i + 0.25 at point i + 1 (a
-- line, not counts).  With 180 points the resistant line's thirds (60
-- points each) have medians 15 and 75, 120 points apart: slope 0.5, and
-- the level projected to point 181 is 90.25, exactly its value (score 0;
-- every residual is 0, so the scale is the 1% floor, 0.9025).  Point 182
-- jumps to 100 against 90.75 +- 6 * 0.9075: flagged.  With 80 points
-- (fewer than the 90 a line needs) the baseline is the median, 70 at point
-- 181, which lags the line by 20, and the ramp inside the window is its
-- spread (MAD 10, scale 14.826): the band is 70 +- 88.96, and neither
-- point is flagged.
SELECT s.w, n, value, expected, round(lower::numeric, 4) AS lower,
       round(upper::numeric, 4) AS upper, round(score::numeric, 4) AS score, is_anomaly
  FROM (SELECT array_agg(CASE WHEN i = 181 THEN 100 ELSE 0.5 * i + 0.25 END ORDER BY i)::float8[] AS a
          FROM generate_series(0, 181) AS i) v,
       unnest(array[180, 80]) AS s(w),
       LATERAL metric_anomaly.detect_series(pg_temp.minutes(v.a), v.a,
                                            jsonb_build_object('window_size', s.w, 'min_points', 20,
                                                               'seasonality', 'none'))
 WHERE n IN (181, 182)
 ORDER BY s.w DESC, n;

-- A seasonal baseline from known history: three days at 100 a minute,
-- except 200 from 12:00 to 12:29 each day; on day 4 the value at 12:10 is
-- 200 again.  The recent baseline (median 100) would flag it; the daily
-- baseline (its 21 lag samples at 11:55 to 12:25 of the three days before
-- have median 200) expects it, so it is normal and judged by "daily".
-- Without seasonality it is flagged.
CREATE TEMP TABLE daily AS
SELECT timestamptz '2026-03-01 00:00+00' + i * interval '1 minute' AS ts,
       CASE WHEN (i % 1440) BETWEEN 720 AND 749 THEN 200 ELSE 100 + i % 3 END::float8 AS v
  FROM generate_series(0, 3 * 1440 + 730) AS i;
SELECT s.settings, d.value, d.expected, d.is_anomaly, round(d.score::numeric, 4) AS score
  FROM unnest(array['{}', '{"seasonality": "none"}']::jsonb[]) AS s(settings),
       LATERAL metric_anomaly.detect_series((SELECT array_agg(ts ORDER BY ts) FROM daily),
                                            (SELECT array_agg(v ORDER BY ts) FROM daily),
                                            s.settings) AS d
 WHERE d.ts = '2026-03-04 12:10+00';
-- The same point's evidence, as the worker stores it.
INSERT INTO metric_anomaly.aggregated_metrics (metric_name, metric_timestamp, metric_value, sample_count, needs_eval)
SELECT 'daily', ts, v, v, ts = '2026-03-04 12:10+00' FROM daily;
INSERT INTO metric_anomaly.series (metric_name, filled_until) VALUES ('daily', '2026-03-04 12:10+00');
SELECT metric_anomaly.process_pending('2026-03-04 12:11+00') AS folded;
SELECT jsonb_pretty(anomaly_context) FROM metric_anomaly.aggregated_metrics
 WHERE metric_name = 'daily' AND metric_timestamp = '2026-03-04 12:10+00';
DELETE FROM metric_anomaly.aggregated_metrics WHERE metric_name = 'daily';
DELETE FROM metric_anomaly.series WHERE metric_name = 'daily';

-- The same three days moved to end on 2026-03-29, the day Europe/Berlin
-- moves to summer time (at 01:00 UTC), and judged in that time zone.  A
-- season is 24 hours, in the worker as in detect_series(): the worker
-- reads the seasonal ranges 24 hours back, not a calendar day of the
-- session's zone (23 hours here, where none of the lag samples are), and
-- stores the verdict detect_series() gives.
SET timezone = 'Europe/Berlin';
CREATE TEMP TABLE daily_dst AS SELECT ts + interval '600 hours' AS ts, v FROM daily;
INSERT INTO metric_anomaly.aggregated_metrics (metric_name, metric_timestamp, metric_value, sample_count, needs_eval)
SELECT 'daily_dst', ts, v, v, ts = '2026-03-29 12:10+00' FROM daily_dst;
INSERT INTO metric_anomaly.series (metric_name, filled_until) VALUES ('daily_dst', '2026-03-29 12:10+00');
SELECT metric_anomaly.process_pending('2026-03-29 12:11+00') AS folded;
SELECT 'worker' AS judge, a.is_anomaly, (a.anomaly_context->>'expected')::float8 AS expected,
       a.anomaly_context->>'judged_by' AS judged_by,
       (a.anomaly_context->'baselines'->'daily'->>'n')::int AS daily_samples
  FROM metric_anomaly.aggregated_metrics a
 WHERE a.metric_name = 'daily_dst' AND a.metric_timestamp = '2026-03-29 12:10+00'
UNION ALL
SELECT 'detect_series', d.is_anomaly, d.expected, NULL, NULL
  FROM metric_anomaly.detect_series((SELECT array_agg(ts ORDER BY ts) FROM daily_dst),
                                    (SELECT array_agg(v ORDER BY ts) FROM daily_dst)) AS d
 WHERE d.ts = '2026-03-29 12:10+00';
SET timezone = 'UTC';
DELETE FROM metric_anomaly.aggregated_metrics WHERE metric_name = 'daily_dst';
DELETE FROM metric_anomaly.series WHERE metric_name = 'daily_dst';

-- The contamination guard: three hours of about 100, a 10-minute collapse
-- to 0, then 100 again.  The robust band 30 minutes after the collapse is
-- as wide as before it; 3-sigma's has ballooned.
CREATE TEMP TABLE collapse AS
SELECT timestamptz '2026-03-01 00:00+00' + i * interval '1 minute' AS ts,
       CASE WHEN i BETWEEN 180 AND 189 THEN 0 ELSE 100 + (i * 7919) % 21 - 10 END::float8 AS v
  FROM generate_series(0, 260) AS i;
SELECT m.method,
       round(max(d.upper - d.lower) FILTER (WHERE d.n = 180)::numeric, 2) AS width_before,
       round(max(d.upper - d.lower) FILTER (WHERE d.n = 220)::numeric, 2) AS width_30_after,
       count(*) FILTER (WHERE d.is_anomaly) AS anomalies,
       string_agg(d.n || ' ' || d.alert, ', ' ORDER BY d.n) AS alerts
  FROM unnest(array['robust', '3-sigma']) AS m(method),
       LATERAL metric_anomaly.detect_series((SELECT array_agg(ts ORDER BY ts) FROM collapse),
                                            (SELECT array_agg(v ORDER BY ts) FROM collapse),
                                            jsonb_build_object('method', m.method)) AS d
 GROUP BY m.method ORDER BY m.method;

-- Low counts are counts: 0 to 5 events a minute flag nothing; 40 a minute
-- falling to 0 is flagged.
SELECT count(*) FILTER (WHERE is_anomaly) AS blips_flagged, count(score) AS judged
  FROM metric_anomaly.detect_series(
         (SELECT array_agg(timestamptz '2026-03-01 00:00+00' + i * interval '1 minute' ORDER BY i) FROM generate_series(0, 599) i),
         (SELECT array_agg((((i * 7919) % 13 * (i % 5)) % 6)::float8 ORDER BY i) FROM generate_series(0, 599) i));
SELECT n, value, expected, round(lower::numeric, 4) AS lower, is_anomaly
  FROM metric_anomaly.detect_series(
         (SELECT array_agg(timestamptz '2026-03-01 00:00+00' + i * interval '1 minute' ORDER BY i) FROM generate_series(0, 200) i),
         (SELECT array_agg(CASE WHEN i = 200 THEN 0 ELSE 40 + i % 3 - 1 END::float8 ORDER BY i) FROM generate_series(0, 200) i))
 WHERE n = 201;

-- Minimum duration: alert_after 3 (of 3) opens an episode at the third
-- anomalous minute, not on a 2-minute dip; it resolves after
-- metric_anomaly.alert_resolve_after (5) normal minutes.  2 of 4, and the
-- default 2 of 20, open it at the second anomalous minute of each dip.  The
-- second dip is anomalous again: one earlier incident is not yet the
-- series' behaviour (the novelty guard needs two).
CREATE TEMP TABLE dips AS
SELECT timestamptz '2026-03-01 00:00+00' + i * interval '1 minute' AS ts,
       CASE WHEN i IN (100, 101, 120, 121, 122) THEN 0 ELSE 100 + i % 3 END::float8 AS v
  FROM generate_series(0, 140) AS i;
SELECT s.settings, string_agg(d.n || ' ' || d.alert, ', ' ORDER BY d.n) AS alerts,
       count(*) FILTER (WHERE d.is_anomaly) AS anomalous
  FROM unnest(array['{"alert_after": 3}', '{"alert_after": 2, "alert_window": 4}', '{}']::jsonb[]) AS s(settings),
       LATERAL metric_anomaly.detect_series((SELECT array_agg(ts ORDER BY ts) FROM dips),
                                            (SELECT array_agg(v ORDER BY ts) FROM dips),
                                            s.settings || '{"min_points": 30}') AS d
 GROUP BY s.settings ORDER BY 1;

-- NULL is a gap (not judged, not history); a repeated or backward
-- timestamp is judged, and alerting ignores it.
SELECT n, ts, value, expected, is_anomaly, alert
  FROM metric_anomaly.detect_series(
         '{2026-03-01 00:00+00, 2026-03-01 00:01+00, 2026-03-01 00:02+00, 2026-03-01 00:03+00, 2026-03-01 00:03+00, 2026-03-01 00:02+00, 2026-03-01 00:04+00}',
         '{10, 11, NULL, 10, 90, 90, 90}', '{"min_points": 2, "window_size": 3}');

-- Irregular and 30-minute spacing work the same way (window in points).
SELECT count(*) AS points, count(score) AS judged, count(*) FILTER (WHERE is_anomaly) AS anomalies
  FROM metric_anomaly.detect_series(
         (SELECT array_agg(timestamptz '2026-03-01 00:00+00' + i * interval '30 minutes' + (i % 7) * interval '13 seconds' ORDER BY i) FROM generate_series(0, 299) i),
         (SELECT array_agg(CASE WHEN i = 250 THEN 900 ELSE 100 + i % 5 END::float8 ORDER BY i) FROM generate_series(0, 299) i));

-- detect_series() agrees exactly with what the worker stored: a series
-- folded from events with the default settings, then replayed.  (The
-- worker wrote no alert: the collapse is older than alert_max_age, a
-- backfill; a replay has no age limit.)
SELECT sum(pg_temp.events('robust_signups', '2026-03-10 00:00+00'::timestamptz + i * interval '1 minute',
                      CASE WHEN i BETWEEN 200 AND 209 THEN 3 ELSE 100 + (i * 7919) % 21 - 10 END)) AS added
  FROM generate_series(0, 299) AS i;
SELECT metric_anomaly.process_pending('2026-03-10 05:00+00') AS folded;
WITH s AS (
    SELECT array_agg(metric_timestamp ORDER BY metric_timestamp) AS ts,
           array_agg(metric_value ORDER BY metric_timestamp) AS v
      FROM metric_anomaly.aggregated_metrics WHERE metric_name = 'robust_signups'),
 d AS (SELECT r.* FROM s, metric_anomaly.detect_series(s.ts, s.v) r)
SELECT count(*) AS compared,
       count(*) FILTER (WHERE a.is_anomaly IS DISTINCT FROM d.is_anomaly
                           OR (a.anomaly_context->>'expected')::float8 IS DISTINCT FROM d.expected
                           OR (a.anomaly_context->>'lower_boundary')::float8 IS DISTINCT FROM d.lower
                           OR (a.anomaly_context->>'upper_boundary')::float8 IS DISTINCT FROM d.upper
                           OR (a.anomaly_context->>'score')::float8 IS DISTINCT FROM d.score) AS disagreeing,
       count(*) FILTER (WHERE a.is_anomaly) AS anomalies,
       (SELECT string_agg(x.state || ' ' || to_char(x.minute, 'HH24:MI'), ', ' ORDER BY x.id)
          FROM metric_anomaly.alerts x WHERE x.metric_name = 'robust_signups') AS worker_alerts,
       string_agg(d.alert || ' ' || to_char(d.ts, 'HH24:MI'), ', ' ORDER BY d.n) AS replayed_alerts
  FROM d JOIN metric_anomaly.aggregated_metrics a
    ON a.metric_name = 'robust_signups' AND a.metric_timestamp = d.ts;

-- backtest(): the stored metric replayed, the default against 3-sigma.
SELECT s.settings, count(*) AS minutes, count(*) FILTER (WHERE b.is_anomaly) AS anomalies,
       string_agg(b.alert || ' ' || to_char(b.ts, 'HH24:MI'), ', ' ORDER BY b.n) AS alerts
  FROM unnest(array['{}', '{"method": "3-sigma"}']::jsonb[]) AS s(settings),
       LATERAL metric_anomaly.backtest('robust_signups', '2026-03-10 03:00+00', '2026-03-10 05:00+00', s.settings) AS b
 GROUP BY s.settings ORDER BY 1;

-- Errors.
SELECT * FROM metric_anomaly.detect_series('{2026-03-01 00:00+00}', '{1, 2}');
SELECT * FROM metric_anomaly.detect_series('{2026-03-01 00:00+00, NULL}', '{1, 2}');
SELECT * FROM metric_anomaly.detect_series('{2026-03-01 00:00+00, infinity}', '{1, 2}');
SELECT * FROM metric_anomaly.detect_series('{2026-03-01 00:00+00, 2026-03-01 00:01+00}', '{1, NaN}');
SELECT * FROM metric_anomaly.detect_series('{2026-03-01 00:00+00, 2026-03-01 00:01+00}', '{1, -Infinity}');
SELECT * FROM metric_anomaly.detect_series('{{2026-03-01 00:00+00}}', '{{1}}');
SELECT count(*) FROM metric_anomaly.detect_series(array_fill(timestamptz '2026-03-01 00:00+00', array[1000001]),
                                                  array_fill(1::float8, array[1000001]));
SELECT * FROM metric_anomaly.detect_series('{}', '{}', '{"sensitivity": 3, "windows": 10}');
SELECT * FROM metric_anomaly.detect_series('{}', '{}', '{"method": "prophet"}');
SELECT * FROM metric_anomaly.detect_series('{}', '{}', '{"sensitivity": 0}');
SELECT * FROM metric_anomaly.detect_series('{}', '{}', '{"sensitivity": "high"}');
SELECT * FROM metric_anomaly.detect_series('{}', '{}', '{"window_size": 1.5}');
SELECT * FROM metric_anomaly.detect_series('{}', '{}', '{"alert_after": 61}');
SELECT * FROM metric_anomaly.detect_series('{}', '{}', '{"seasonality": "hourly"}');
SELECT * FROM metric_anomaly.detect_series('{}', '{}', '{"direction": "sideways"}');
SELECT * FROM metric_anomaly.detect_series('{}', '{}', '[1]');
SELECT count(*) AS rows FROM metric_anomaly.detect_series('{}', '{}', '{"method": null}');
SELECT * FROM metric_anomaly.backtest('robust_signups', '2026-03-10 03:00+00', '2026-03-10 03:00+00');
SELECT * FROM metric_anomaly.backtest('robust_signups', '2026-03-10 03:00+00', '2030-03-10 03:00+00');
SELECT * FROM metric_anomaly.backtest('robust_signups', '2026-03-10 03:00+00', '2026-03-10 04:00+00', '{"bogus": 1}');
INSERT INTO metric_anomaly.metrics (metric_name, alert_after, alert_window) VALUES ('bad', 3, 2);

-- A series' points with a verdict, anomalous, and waiting for one, and its
-- open alert episodes.
CREATE FUNCTION pg_temp.series_counts(name text, OUT verdicts bigint, OUT anomalies bigint,
                                      OUT pending bigint, OUT open_episodes bigint)
LANGUAGE sql AS $$
    SELECT count(*) FILTER (WHERE a.anomaly_context IS NOT NULL),
           count(*) FILTER (WHERE a.is_anomaly), count(*) FILTER (WHERE a.needs_eval),
           (SELECT count(*) FROM metric_anomaly.alert_episodes e
             WHERE e.metric_name = name AND e.firing)
      FROM metric_anomaly.aggregated_metrics a
     WHERE a.metric_name = name
$$;

-- A failure in one series' detection or alerting is recorded against that
-- series and the pass goes on (isolate.c).  Here writing the episode state
-- of the series "broken" fails (a trigger stands in for any error); the plain
-- series and a 200-character CJK one (600 bytes) next to it, in the same
-- batch, are judged and alerted.
CREATE FUNCTION public.fail_broken() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.metric_name = 'broken' THEN
        RAISE EXCEPTION 'injected failure for %', NEW.metric_name;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER fail_broken BEFORE INSERT OR UPDATE ON metric_anomaly.alert_episodes
    FOR EACH ROW EXECUTE FUNCTION public.fail_broken();
SELECT sum(pg_temp.events(n, '2026-03-10 05:00+00'::timestamptz + i * interval '1 minute',
                          CASE WHEN i >= 98 THEN 0 ELSE 50 END)) AS added
  FROM generate_series(0, 100) AS i, unnest(array[repeat('注', 200), 'plain', 'broken']) AS n;
SELECT metric_anomaly.process_pending('2026-03-10 06:41+00') AS folded;
SELECT left(s.metric_name, 5) AS series, s.detect_errors,
       left(s.detect_last_error, 60) AS last_error, s.detect_last_error_at IS NOT NULL AS when_known,
       c.anomalies, c.pending, c.open_episodes
  FROM metric_anomaly.series s, pg_temp.series_counts(s.metric_name) c
 WHERE s.metric_name IN (repeat('注', 200), 'plain', 'broken')
 ORDER BY 1;
DROP TRIGGER fail_broken ON metric_anomaly.alert_episodes;
DROP FUNCTION public.fail_broken();

-- A failure in one series' detection.  Series are judged 32 to a
-- subtransaction (evaluate.c), and a group in which one fails is judged
-- again one series to a subtransaction: det_a and det_c, in the same group
-- as det_b, are judged and alerted as if nothing had happened, and only
-- det_b is recorded, its waiting minutes marked done without a verdict.
-- Settings out of range (the CHECK that refuses them dropped for the test)
-- stand in for any error.
ALTER TABLE metric_anomaly.metrics DROP CONSTRAINT metrics_sensitivity_check;
INSERT INTO metric_anomaly.metrics (metric_name, sensitivity) VALUES ('det_b', 1000);
SELECT sum(pg_temp.events(n, '2026-03-10 07:00+00'::timestamptz + i * interval '1 minute',
                          CASE WHEN i >= 98 THEN 0 ELSE 50 END)) AS added
  FROM generate_series(0, 100) AS i, unnest(array['det_a', 'det_b', 'det_c']) AS n;
SELECT metric_anomaly.process_pending('2026-03-10 08:41+00') AS folded;
SELECT s.metric_name AS series, s.detect_errors,
       left(s.detect_last_error, 72) AS last_error, c.*
  FROM metric_anomaly.series s, pg_temp.series_counts(s.metric_name) c
 WHERE s.metric_name LIKE 'det\__'
 ORDER BY 1;

DROP EXTENSION metric_anomaly;

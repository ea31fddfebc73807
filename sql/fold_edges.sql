-- Isolation of the fold: no single event stops a pass.  Every event, whatever
-- its id, timestamp, name or payload at the edges of their types, is either
-- counted in aggregated_metrics or kept in quarantined_events, and a pass
-- writes a bounded number of zero rows however old an event is.
CREATE EXTENSION metric_anomaly;
SET timezone = 'UTC';
SET datestyle = 'ISO';
-- On the code before the fix, some inputs made a pass run for hours.  What
-- bounds a pass is asserted below as work (the zero rows a pass writes,
-- fill_budget); the timeout is only there so that a regression fails the
-- suite instead of hanging it, far above what any statement takes (the
-- longest takes under 1 s here, 6 s before the property test's fill was
-- bounded, and once hit a 120 s timeout on 13 under load).
SET statement_timeout = '15min';
\set VERBOSITY terse

-- Every inserted event is kept aside, since retention deletes old events
-- after they are counted.
CREATE TABLE inserted_events (LIKE metric_anomaly.business_events);
CREATE FUNCTION keep_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO inserted_events SELECT * FROM new_rows;
    RETURN NULL;
END
$$;
CREATE TRIGGER keep_inserted AFTER INSERT ON metric_anomaly.business_events
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION keep_inserted();

-- counted + quarantined = inserted, and nothing is left pending.
CREATE FUNCTION pg_temp.check_counts() RETURNS TABLE (inserted bigint, counted bigint,
    quarantined bigint, pending bigint, balanced boolean)
LANGUAGE sql AS $$
    SELECT e.n, m.n, q.n, p.n, m.n + q.n = e.n AND p.n = 0
      FROM (SELECT count(*) AS n FROM inserted_events) e,
           (SELECT coalesce(sum(sample_count), 0)::bigint AS n FROM metric_anomaly.aggregated_metrics) m,
           (SELECT count(*) AS n FROM metric_anomaly.quarantined_events) q,
           (SELECT pending_events AS n FROM metric_anomaly.worker_status) p
$$;

-- Ids: negative ones (never folded before: a pass walked from id 0 up) and
-- ones at the bigint limits (the claim range overflowed: "bigint out of
-- range" on every pass).
INSERT INTO metric_anomaly.business_events (id, event_type, event_timestamp)
VALUES (-9223372036854775808, 'ids', '2026-01-01 10:00:00+00'),
       (-9223372036854775807, 'ids', '2026-01-01 10:00:01+00'),
       (-1, 'ids', '2026-01-01 10:00:02+00'),
       (0, 'ids', '2026-01-01 10:00:03+00'),
       (9223372036854775806, 'ids', '2026-01-01 10:00:04+00'),
       (9223372036854775807, 'ids', '2026-01-01 10:00:05+00');
SELECT metric_anomaly.process_pending('2026-01-01 10:02:00+00') AS folded;
SELECT * FROM pg_temp.check_counts();
-- Again with batches of one: every batch boundary sits next to a limit.
SET metric_anomaly.batch_size = 1;
INSERT INTO metric_anomaly.business_events (id, event_type, event_timestamp)
VALUES (-9223372036854775806, 'ids', '2026-01-01 10:01:00+00'),
       (9223372036854775805, 'ids', '2026-01-01 10:01:01+00');
SELECT metric_anomaly.process_pending('2026-01-01 10:02:00+00') AS folded;
RESET metric_anomaly.batch_size;
SELECT metric_name, metric_timestamp, sample_count FROM metric_anomaly.aggregated_metrics
 ORDER BY 1, 2;
SELECT * FROM pg_temp.check_counts();

-- Timestamps: the first and last instants PostgreSQL accepts are kept in
-- quarantine (detection computes windows back from a minute and would leave
-- the range); 30 days inside them, events are counted.  Before the fix, an
-- event of 4713 BC made zero-fill write billions of rows (the pass never
-- ended) and one of 4714-11-24 BC failed every pass.
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp)
VALUES ('ts', '4714-11-24 00:00:00+00 BC'),
       ('ts', '4714-11-24 00:00:59.999999+00 BC'),
       ('ts', '4713-01-01 00:00:30+00 BC'),
       ('ts', '294276-12-31 23:59:59.999999+00'),
       ('ts', '294276-11-01 00:00:00+00'),
       ('ts', '1999-12-31 23:59:59.999999+00'),
       ('ts', '2000-01-01 00:00:00+00'),
       ('ts', '1969-12-31 23:59:59.999999+00'),
       ('ts', '2026-01-01 10:00:00+00'::timestamptz + interval '100 years');
SELECT metric_anomaly.process_pending('2026-01-01 10:02:00+00') AS folded;
SELECT event_type, event_timestamp, reason FROM metric_anomaly.quarantined_events ORDER BY id;
SELECT metric_timestamp, sample_count FROM metric_anomaly.aggregated_metrics
 WHERE metric_name = 'ts' AND sample_count > 0 ORDER BY 1;
SELECT * FROM pg_temp.check_counts();
SELECT quarantined_events FROM metric_anomaly.worker_status;
-- Passes may not run as of a time the pipeline cannot compute with.
SELECT metric_anomaly.process_pending('294276-12-31 00:00:00+00');

-- Zero-fill is bounded.  The 'ts' series began 4713 BC and 1969: it is
-- filled from the horizon (7 days before the pass) on, not from 4713 BC.
SELECT count(*) AS zero_rows, min(metric_timestamp), max(metric_timestamp)
  FROM metric_anomaly.aggregated_metrics WHERE metric_name = 'ts' AND sample_count = 0;
SELECT filled_until FROM metric_anomaly.series WHERE metric_name = 'ts';
-- One event dated two years ago writes at most fill_budget rows per pass
-- (before the fix: a million rows in one pass); the series catches up over
-- the next passes, the furthest behind first, up to the horizon.
SET metric_anomaly.fill_horizon = '2d';
SET metric_anomaly.fill_budget = 1000;
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp)
VALUES ('two years ago', '2024-01-01 10:00:00+00');
SELECT metric_anomaly.process_pending('2026-01-01 10:02:00+00') AS folded;
SELECT metric_name, filled_until,
       (SELECT count(*) FROM metric_anomaly.aggregated_metrics m
         WHERE m.metric_name = s.metric_name AND m.sample_count = 0) AS zero_rows
  FROM metric_anomaly.series s ORDER BY 1;
SELECT metric_anomaly.process_pending('2026-01-01 10:02:00+00') AS folded;
SELECT metric_anomaly.process_pending('2026-01-01 10:02:00+00') AS folded;
SELECT metric_anomaly.process_pending('2026-01-01 10:02:00+00') AS folded;
SELECT metric_name, filled_until,
       (SELECT count(*) FROM metric_anomaly.aggregated_metrics m
         WHERE m.metric_name = s.metric_name AND m.sample_count = 0) AS zero_rows
  FROM metric_anomaly.series s ORDER BY 1;
-- A first event dated in the future does not leave the present unfilled.
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp)
VALUES ('future', '2030-01-01 00:00:00+00');
SELECT metric_anomaly.process_pending('2026-01-01 10:02:00+00') AS folded;
SELECT metric_anomaly.process_pending('2026-01-01 10:05:00+00') AS folded;
SELECT metric_timestamp, sample_count FROM metric_anomaly.aggregated_metrics
 WHERE metric_name = 'future' ORDER BY 1;
RESET metric_anomaly.fill_horizon;
RESET metric_anomaly.fill_budget;
SELECT * FROM pg_temp.check_counts();

-- Names at the length limit, in characters and in bytes: 200 characters of
-- 1, 2, 3 and 4 bytes, combining marks, right-to-left text.  Before the fix,
-- a 200-character CJK name (600 bytes) overflowed alerting's key and failed
-- every pass: "series name too long for alerting".
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp)
SELECT n, '2026-01-01 10:00:00+00'
  FROM (VALUES (repeat('a', 200)), (repeat('é', 200)), (repeat('漢', 200)),
               (repeat('😀', 200)), (repeat('e' || U&'\0301', 100)),
               (repeat('שלום', 50)), ('漢'), ('😀')) AS v(n),
       generate_series(1, 3);
INSERT INTO metric_anomaly.business_events (event_type) VALUES (repeat('漢', 201));
SELECT metric_anomaly.process_pending('2026-01-01 10:02:00+00') AS folded;
SELECT length(metric_name) AS chars, octet_length(metric_name) AS bytes, sample_count
  FROM metric_anomaly.aggregated_metrics
 WHERE metric_timestamp = '2026-01-01 10:00:00+00' AND sample_count > 0
   AND metric_name NOT IN ('ids', 'ts', 'payload')
 ORDER BY 2, 1;
SELECT * FROM pg_temp.check_counts();

-- Payloads: none, JSON null, deep nesting, every JSON type, large.
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp, payload)
VALUES ('payload', '2026-01-01 10:00:00+00', NULL),
       ('payload', '2026-01-01 10:00:00+00', 'null'),
       ('payload', '2026-01-01 10:00:00+00', (repeat('[', 5000) || repeat(']', 5000))::jsonb),
       ('payload', '2026-01-01 10:00:00+00', '{"a": [1, 1.5e300, -0, true, false, null, "\u00e9x"]}'),
       ('payload', '2026-01-01 10:00:00+00', jsonb_build_object('b', repeat('漢', 1000000)));
SELECT metric_anomaly.process_pending('2026-01-01 10:02:00+00') AS folded;
SELECT sample_count FROM metric_anomaly.aggregated_metrics
 WHERE metric_name = 'payload' AND metric_timestamp = '2026-01-01 10:00:00+00';
SELECT * FROM pg_temp.check_counts();

-- Property test: 5,000 events drawn from the edges above with a fixed
-- pseudo-random sequence (a multiplicative hash of the row number, so the
-- draw is the same on every PostgreSQL version), in batches of 97, then two
-- passes: every event is counted or quarantined, exactly once.
TRUNCATE metric_anomaly.business_events, metric_anomaly.aggregated_metrics,
         metric_anomaly.series, metric_anomaly.quarantined_events, inserted_events;
CREATE TEMP TABLE draw AS
SELECT i, (i * 2654435761 % 4294967296) AS h FROM generate_series(1, 5000) AS i;
INSERT INTO metric_anomaly.business_events (id, event_type, event_timestamp, payload)
SELECT CASE h % 5 WHEN 0 THEN -9223372036854775808 + i
                  WHEN 1 THEN 9223372036854775807 - i
                  WHEN 2 THEN -i
                  ELSE h * 1000 + i END,
       (ARRAY[repeat('漢', 200), repeat('😀', 200), 'x', repeat('a', 200),
              repeat('é', 1 + (h / 7 % 200)::int), 'order'])[1 + (h / 11 % 6)::int],
       CASE WHEN h / 13 % 8 IN (2, 3) THEN -1 ELSE 1 END * (h / 17 % 3600) * interval '1 second'
           + (ARRAY['4714-11-24 00:00:00+00 BC', '4713-01-01 00:00:00+00 BC',
                    '294276-12-31 23:59:59.999999+00', '294000-01-01 00:00:00+00',
                    '2024-01-01 10:00:00+00', '2026-01-01 09:59:59.999999+00',
                    '2036-01-01 10:00:00+00', '1900-01-01 00:00:00+00']::timestamptz[])[1 + (h / 13 % 8)::int],
       CASE h / 19 % 3 WHEN 0 THEN NULL WHEN 1 THEN 'null'::jsonb
            ELSE jsonb_build_object('h', h) END
  FROM draw;
-- The ~200 series this draws would each be zero-filled over the default
-- 7-day horizon, 100,000 rows a pass (the bound tested above) and an
-- evaluation of each: 12 s of the two passes, for nothing this part checks.
-- A one-hour horizon keeps the fill to a few hundred rows per series.
SET metric_anomaly.batch_size = 97;
SET metric_anomaly.fill_horizon = '1h';
SELECT metric_anomaly.process_pending('2026-01-01 10:02:00+00') > 0 AS folded;
SELECT metric_anomaly.process_pending('2026-01-01 10:03:00+00') AS folded_again;
RESET metric_anomaly.batch_size;
RESET metric_anomaly.fill_horizon;
SELECT * FROM pg_temp.check_counts();
-- Each quarantined event is one of the inserted ones, unchanged, once.
SELECT count(*) AS quarantined, count(DISTINCT q.id) AS distinct_ids,
       count(*) FILTER (WHERE e.event_type = q.event_type AND e.event_timestamp = q.event_timestamp
                          AND e.payload IS NOT DISTINCT FROM q.payload) AS identical
  FROM metric_anomaly.quarantined_events q
  JOIN inserted_events e USING (id);
-- And the counts match the events, per name and minute.
SELECT count(*) AS mismatched_minutes
  FROM (SELECT event_type AS metric_name, date_trunc('minute', event_timestamp) AS metric_timestamp,
               count(*) AS n
          FROM inserted_events
         WHERE id NOT IN (SELECT id FROM metric_anomaly.quarantined_events)
         GROUP BY 1, 2) e
  FULL JOIN (SELECT metric_name, metric_timestamp, sample_count AS n
               FROM metric_anomaly.aggregated_metrics WHERE sample_count > 0) m
    USING (metric_name, metric_timestamp)
 WHERE e.n IS DISTINCT FROM m.n;
SELECT last_error FROM metric_anomaly.worker_status;

DROP EXTENSION metric_anomaly;
DROP TABLE inserted_events;
DROP FUNCTION keep_inserted();

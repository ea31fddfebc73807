-- Aggregation: schema, exact counts, zero-fill, late events, bad input.
CREATE EXTENSION metric_anomaly;
SET timezone = 'UTC';
SET datestyle = 'ISO';

-- The schema: tables, their columns, and what pg_dump keeps.
SELECT table_name, column_name, data_type, is_nullable, column_default
  FROM information_schema.columns
 WHERE table_schema = 'metric_anomaly'
   AND table_name IN ('business_events', 'aggregated_metrics')
 ORDER BY table_name, ordinal_position;
SELECT indexrelid::regclass AS index, pg_get_indexdef(indexrelid)
  FROM pg_index
 WHERE indrelid IN ('metric_anomaly.business_events'::regclass,
                    'metric_anomaly.aggregated_metrics'::regclass)
 ORDER BY 1::text;
SELECT unnest(extconfig)::regclass AS dumped
  FROM pg_extension WHERE extname = 'metric_anomaly' ORDER BY 1::text;

-- Three event types over five minutes, plus an event in a later minute.
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp, payload)
SELECT t, '2026-01-01 10:00:00+00'::timestamptz + (i * interval '1 second'), jsonb_build_object('i', i)
  FROM generate_series(0, 299) AS i,
       LATERAL (VALUES ('signup'), ('order'), ('order')) AS v(t)
 WHERE t = 'signup' OR i % 2 = 0;
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp)
VALUES ('payment', '2026-01-01 10:02:30+00'),
       ('signup', '2026-01-01 10:07:59.999999+00');
SELECT count(*) AS inserted FROM metric_anomaly.business_events;

-- One pass as of 10:10: every event folded exactly once.
SELECT metric_anomaly.process_pending('2026-01-01 10:10:00+00') AS folded;
SELECT pending_events AS unprocessed FROM metric_anomaly.worker_status;
-- event_folded() answers per event: every one is folded.
SELECT count(*) FILTER (WHERE metric_anomaly.event_folded(xid, id)) AS folded_events,
       count(*) FILTER (WHERE NOT metric_anomaly.event_folded(xid, id)) AS pending_events
  FROM metric_anomaly.business_events;
SELECT metric_name, metric_timestamp, metric_value, sample_count
  FROM metric_anomaly.aggregated_metrics
 ORDER BY metric_name, metric_timestamp;
SELECT sum(sample_count) AS counted FROM metric_anomaly.aggregated_metrics;

-- Nothing left: a second pass folds nothing and changes nothing.
SELECT metric_anomaly.process_pending('2026-01-01 10:10:00+00') AS folded;
SELECT count(*) AS rows, sum(sample_count) AS counted FROM metric_anomaly.aggregated_metrics;

-- Zero-fill: later passes add explicit 0 rows up to the last closed minute
-- (10:11 as of 10:12:30) for every series already seen, and none beyond.
SELECT metric_anomaly.process_pending('2026-01-01 10:12:30+00') AS folded;
SELECT metric_name, count(*) AS minutes, min(metric_timestamp), max(metric_timestamp),
       count(*) FILTER (WHERE sample_count = 0) AS zero_rows,
       sum(metric_value) FILTER (WHERE sample_count = 0) AS zero_sum
  FROM metric_anomaly.aggregated_metrics GROUP BY metric_name ORDER BY 1;
SELECT metric_name, filled_until FROM metric_anomaly.series ORDER BY 1;

-- A late event for a minute that already has a row (a zero row here) is
-- added to it; one for a minute with events is added on top.
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp)
VALUES ('payment', '2026-01-01 10:05:10+00'),
       ('order', '2026-01-01 10:01:10+00'),
       ('order', '2026-01-01 10:01:20+00');
SELECT metric_anomaly.process_pending('2026-01-01 10:12:30+00') AS folded;
SELECT metric_name, metric_timestamp, metric_value, sample_count, needs_eval
  FROM metric_anomaly.aggregated_metrics
 WHERE (metric_name, metric_timestamp) IN (('payment', '2026-01-01 10:05:00+00'),
                                            ('order', '2026-01-01 10:01:00+00'))
 ORDER BY 1, 2;

-- Batches: with a batch size of 7, 100 events take 15 batches and are all
-- folded exactly once.
SET metric_anomaly.batch_size = 7;
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp)
SELECT 'batch', '2026-01-01 10:20:00+00'::timestamptz + i * interval '1 second'
  FROM generate_series(1, 100) AS i;
SELECT metric_anomaly.process_pending('2026-01-01 10:30:00+00') AS folded;
SELECT metric_timestamp, metric_value FROM metric_anomaly.aggregated_metrics
 WHERE metric_name = 'batch' AND sample_count > 0 ORDER BY 1;
RESET metric_anomaly.batch_size;

-- Bad input: a NULL or empty event type or an infinite timestamp is refused
-- and nothing is stored; NULL and large payloads are accepted and counted.
\set VERBOSITY terse
INSERT INTO metric_anomaly.business_events (event_type) VALUES (NULL);
INSERT INTO metric_anomaly.business_events (event_type) VALUES ('');
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp) VALUES ('x', 'infinity');
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp, payload)
VALUES ('payload', '2026-01-01 10:40:00+00', NULL),
       ('payload', '2026-01-01 10:40:01+00', 'null'),
       ('payload', '2026-01-01 10:40:02+00',
        jsonb_build_object('blob', repeat('x', 5 * 1024 * 1024)));
SELECT metric_anomaly.process_pending('2026-01-01 10:45:00+00') AS folded;
SELECT metric_value, sample_count FROM metric_anomaly.aggregated_metrics
 WHERE metric_name = 'payload' AND metric_timestamp = '2026-01-01 10:40:00+00';
SELECT metric_anomaly.process_pending('infinity');
\set VERBOSITY default

-- Bookkeeping: every event of this file was counted once.
SELECT total_events, pending_events, last_pass_events, last_error
  FROM metric_anomaly.worker_status;
SELECT (SELECT count(*) FROM metric_anomaly.business_events) AS events,
       (SELECT sum(sample_count) FROM metric_anomaly.aggregated_metrics) AS counted;

-- Retention: processed events older than metric_anomaly.event_retention
-- (7 days) are deleted; their counts stay.
SELECT metric_anomaly.process_pending('2026-01-08 10:05:30+00') AS folded;
SELECT count(*) AS events_left, min(event_timestamp) AS oldest
  FROM metric_anomaly.business_events;
SELECT sum(sample_count) AS counted FROM metric_anomaly.aggregated_metrics;

-- The fold moves a series' filled minutes on over the consecutive minutes
-- it writes right after them, up to the last closed minute, and zero-fill
-- does the rest: as of 10:09:05 (10:08 closed), runs_a's events of 10:07,
-- 10:08 and the open 10:09 fill it to 10:08; runs_b's 10:08 comes after a
-- gap (10:07 becomes a zero row) and its 10:20 lies ahead.
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp)
VALUES ('runs_a', '2026-01-08 10:06:10+00'), ('runs_b', '2026-01-08 10:06:20+00');
SELECT metric_anomaly.process_pending('2026-01-08 10:07:05+00') AS folded;
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp)
VALUES ('runs_a', '2026-01-08 10:07:10+00'), ('runs_a', '2026-01-08 10:08:10+00'),
       ('runs_a', '2026-01-08 10:09:10+00'), ('runs_b', '2026-01-08 10:08:30+00'),
       ('runs_b', '2026-01-08 10:20:00+00');
SELECT metric_anomaly.process_pending('2026-01-08 10:09:05+00') AS folded;
SELECT metric_name, filled_until FROM metric_anomaly.series
 WHERE metric_name LIKE 'runs_%' ORDER BY 1;
SELECT metric_name, metric_timestamp, sample_count FROM metric_anomaly.aggregated_metrics
 WHERE metric_name LIKE 'runs_%' ORDER BY 1, 2;
SELECT metric_anomaly.process_pending('2026-01-08 10:10:05+00') AS folded;
SELECT metric_name, filled_until FROM metric_anomaly.series
 WHERE metric_name LIKE 'runs_%' ORDER BY 1;
SELECT metric_name, count(*) AS minutes, sum(sample_count) AS events
  FROM metric_anomaly.aggregated_metrics
 WHERE metric_name LIKE 'runs_%' AND metric_timestamp <= '2026-01-08 10:09+00'
 GROUP BY 1 ORDER BY 1;

-- The read side is public; running passes is not.
CREATE ROLE ma_reader;
SET ROLE ma_reader;
SELECT count(*) > 0 AS can_read FROM metric_anomaly.aggregated_metrics;
\set VERBOSITY terse
SELECT metric_anomaly.process_pending();
SELECT count(*) FROM metric_anomaly.business_events;
\set VERBOSITY default
RESET ROLE;
DROP ROLE ma_reader;

DROP EXTENSION metric_anomaly;

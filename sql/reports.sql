-- Scheduled reports: run_due_reports() at fixed times (the worker calls it
-- with now() after every pass; TAP 085_reports checks that), the runs it records,
-- the outbox rows it queues, skips, catch-up, retention, latest_report.
CREATE EXTENSION metric_anomaly;
SET timezone = 'UTC';
SET datestyle = 'ISO';
SET extra_float_digits = 0;

-- "PNG WxH" when b starts with the PNG signature and an IHDR chunk.
CREATE FUNCTION pg_temp.png_info(b bytea) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN substring(b FROM 1 FOR 8) = '\x89504e470d0a1a0a'::bytea
                 AND substring(b FROM 13 FOR 4) = 'IHDR'::bytea
           THEN format('PNG %sx%s',
                (get_byte(b, 16) << 24) | (get_byte(b, 17) << 16) | (get_byte(b, 18) << 8) | get_byte(b, 19),
                (get_byte(b, 20) << 24) | (get_byte(b, 21) << 16) | (get_byte(b, 22) << 8) | get_byte(b, 23))
           ELSE 'not a PNG' END
$$;

-- Orders (2 per minute, 3 events each) and amount (100.5 per minute) for
-- three hours.
INSERT INTO metric_anomaly.series (metric_name, filled_until)
VALUES ('orders', '2026-11-20 03:00+00'), ('amount', '2026-11-20 03:00+00');
INSERT INTO metric_anomaly.aggregated_metrics
    (metric_name, metric_timestamp, metric_value, sample_count, needs_eval)
SELECT m, '2026-11-20 00:00+00'::timestamptz + i * interval '1 minute',
       CASE m WHEN 'orders' THEN 2 ELSE 100.5 END, 3, false
  FROM generate_series(0, 179) AS i, unnest('{orders,amount}'::text[]) AS m;
INSERT INTO metric_anomaly.alert_channels (name, kind, url)
VALUES ('ops', 'webhook', 'http://127.0.0.1:9/ops'), ('biz', 'webhook', 'http://127.0.0.1:9/biz');

-- Shapes the table refuses (terse: the failing row shows created_at).
\set VERBOSITY terse
INSERT INTO metric_anomaly.reports (name, kind, metrics) VALUES ('x', 'pie', '{orders}');
INSERT INTO metric_anomaly.reports (name, kind, metrics) VALUES ('x', 'metric_chart', '{orders,amount}');
INSERT INTO metric_anomaly.reports (name, kind, metrics, right_axis) VALUES ('x', 'line_chart', '{orders}', '{amount}');
INSERT INTO metric_anomaly.reports (name, kind, metrics) VALUES ('x', 'heatmap', '{api_p95}');
INSERT INTO metric_anomaly.reports (name, kind, metrics, run_every) VALUES ('x', 'metric_chart', '{orders}', '1 second');
\set VERBOSITY default

INSERT INTO metric_anomaly.reports (name, kind, metrics, right_axis, range, title, channels, run_every, min_samples)
VALUES ('sales', 'line_chart', '{orders,amount}', '{amount}', '60 minutes', 'Orders and amount, last hour',
        '{ops,biz,nosuch}', '5 minutes', 50),
       ('orders_chart', 'metric_chart', '{orders}', '{}', '3 hours', NULL, '{ops}', '1 hour', 0),
       ('too_few', 'line_chart', '{orders}', '{}', '10 minutes', 'Orders', '{ops}', '5 minutes', 1000);
INSERT INTO metric_anomaly.reports (name, kind, metrics, dimensions, range, channels)
VALUES ('broken', 'heatmap', '{no_such_metric}', '{app_v,endpoint}', '15 minutes', '{ops}');

-- At 01:02:30 every report is due (never run): slots 01:00 (5 minutes) and
-- 01:00 (1 hour).
SELECT metric_anomaly.run_due_reports('2026-11-20 01:02:30+00') AS runs;
SELECT report_name, slot, status, samples, title, pg_temp.png_info(png), error, alert_id IS NOT NULL AS queued
  FROM metric_anomaly.report_runs ORDER BY report_name, slot;
SELECT name, last_run_at, last_status, last_error FROM metric_anomaly.reports ORDER BY name;
-- Each rendered run is one alert of state report with one delivery per
-- existing, enabled channel it names.
SELECT a.metric_name, a.minute, a.value, a.state, a.source, a.summary, a.context ->> 'kind' AS kind,
       (a.context ->> 'run_id')::bigint = r.id AS run_linked,
       (SELECT array_agg(d.channel ORDER BY d.channel) FROM metric_anomaly.deliveries d WHERE d.alert_id = a.id) AS channels,
       (SELECT bool_and(d.idempotency_key LIKE 'ma-' || a.id || '-%') FROM metric_anomaly.deliveries d WHERE d.alert_id = a.id) AS keys
  FROM metric_anomaly.alerts a JOIN metric_anomaly.report_runs r ON r.alert_id = a.id
 ORDER BY a.metric_name;
SELECT pg_temp.png_info(metric_anomaly.latest_report('sales')) AS sales,
       metric_anomaly.latest_report('too_few') IS NULL AS too_few_none,
       metric_anomaly.latest_report('nobody') IS NULL AS unknown_none;

-- Not due again within the slot; due again at the next one.
SELECT metric_anomaly.run_due_reports('2026-11-20 01:04:59+00') AS runs;
SELECT metric_anomaly.run_due_reports('2026-11-20 01:05:00+00') AS runs;
-- Down from 01:05 to 02:47: one run per report at the newest slot, not one
-- per missed interval.
SELECT metric_anomaly.run_due_reports('2026-11-20 02:47:10+00') AS runs;
SELECT report_name, array_agg(slot ORDER BY slot) AS slots, array_agg(status ORDER BY slot) AS statuses
  FROM metric_anomaly.report_runs GROUP BY report_name ORDER BY report_name;
-- A disabled report does not run.
UPDATE metric_anomaly.reports SET enabled = false WHERE name <> 'sales';
SELECT metric_anomaly.run_due_reports('2026-11-20 02:50:00+00') AS runs;
-- The newest PNG is the 02:50 run's (orders 60 * 2 and amount 60 * 100.5).
SELECT slot, title FROM metric_anomaly.report_runs
 WHERE report_name = 'sales' AND png = metric_anomaly.latest_report('sales');

-- Retention: runs older than keep_for go, except the newest rendered,
-- of disabled reports too.
UPDATE metric_anomaly.report_runs SET created_at = '2026-11-20 01:00+00';
UPDATE metric_anomaly.reports SET keep_for = '1 hour';
SELECT metric_anomaly.run_due_reports('2026-11-20 03:00:00+00') AS runs;
SELECT report_name, slot, status FROM metric_anomaly.report_runs ORDER BY report_name, slot;

SELECT pg_temp.png_info(metric_anomaly.latest_report('orders_chart')) AS kept_while_disabled;

-- The title with the totals is on the chart of every kind: each stored PNG
-- is, byte for byte, the chart drawn with exactly that title, and not the
-- chart with the default title.
SELECT r.report_name, r.slot, r.title,
       r.png = metric_anomaly.render_metric_chart('orders', r.slot - interval '3 hours',
                   r.slot - interval '1 microsecond', 1200, 600, 'orders_chart (totals: orders 240)') AS titled,
       r.png <> metric_anomaly.render_metric_chart('orders', r.slot - interval '3 hours',
                   r.slot - interval '1 microsecond', 1200, 600) AS not_default
  FROM metric_anomaly.report_runs r WHERE r.report_name = 'orders_chart' AND r.status = 'rendered';
SELECT r.report_name, r.slot, r.title,
       r.png = (SELECT metric_anomaly.line_chart(a.metric_timestamp, a.metric_value, a.metric_name,
                           jsonb_build_object('title', t, 'width', 1200, 'height', 600,
                                              'right_axis', '["amount"]'::jsonb, 'dashed', '["amount"]'::jsonb,
                                              'markers', '["orders"]'::jsonb, 'y_label', 'orders', 'y2_label', 'amount'))
                  FROM metric_anomaly.aggregated_metrics a
                 WHERE a.metric_name = ANY ('{orders,amount}')
                   AND a.metric_timestamp >= r.slot - interval '1 hour' AND a.metric_timestamp < r.slot) AS titled
  FROM metric_anomaly.report_runs r,
       (VALUES ('Orders and amount, last hour (totals: orders 120, amount 6030)')) v(t)
 WHERE r.report_name = 'sales' AND r.status = 'rendered';
-- A heatmap report: p95 latency by app version and endpoint over the last
-- 15 minutes, titled with the samples.
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, aggregate, value_path, quantile, dimensions)
VALUES ('api_p95', '{api}', 'quantile', '{latency_ms}', 0.95, '{app_v,endpoint}');
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp, payload)
SELECT 'api', '2026-11-20 03:00:00+00'::timestamptz + (i % 600) * interval '1 second',
       jsonb_build_object('app_v', 'v' || (i % 2), 'endpoint', '/e' || (i % 3), 'latency_ms', i % 97)
  FROM generate_series(1, 600) AS i;
SELECT metric_anomaly.process_pending('2026-11-20 03:20:00+00') > 0 AS folded;
INSERT INTO metric_anomaly.reports (name, kind, metrics, dimensions, range, title, channels, run_every)
VALUES ('api_heat', 'heatmap', '{api_p95}', '{app_v,endpoint}', '15 minutes', 'API p95', '{ops}', '5 minutes');
UPDATE metric_anomaly.reports SET enabled = false WHERE name <> 'api_heat';
SELECT metric_anomaly.run_due_reports('2026-11-20 03:15:00+00') AS runs;
SELECT r.report_name, r.slot, r.status, r.samples, r.title, pg_temp.png_info(r.png),
       r.png = metric_anomaly.render_heatmap('api_p95', 'app_v', 'endpoint', r.slot - interval '15 minutes', r.slot,
                                             1200, 600, 'API p95 (600 samples)') AS titled,
       r.png <> metric_anomaly.render_heatmap('api_p95', 'app_v', 'endpoint', r.slot - interval '15 minutes', r.slot,
                                              1200, 600) AS not_default,
       (SELECT summary FROM metric_anomaly.alerts a WHERE a.id = r.alert_id) AS message
  FROM metric_anomaly.report_runs r WHERE r.report_name = 'api_heat';
-- render_heatmap gives NULL for a NULL argument but the title.
SELECT metric_anomaly.render_heatmap(NULL, 'app_v', 'endpoint') IS NULL AS null_metric,
       metric_anomaly.render_heatmap('api_p95', 'app_v', 'endpoint', NULL, '2026-11-20 03:15+00') IS NULL AS null_since,
       metric_anomaly.render_heatmap('api_p95', 'app_v', 'endpoint', '2026-11-20 03:00+00', '2026-11-20 03:15+00',
                                     1200, 600, NULL)
     = metric_anomaly.render_heatmap('api_p95', 'app_v', 'endpoint', '2026-11-20 03:00+00', '2026-11-20 03:15+00')
       AS null_title_default;

-- Reports are for admins.
CREATE ROLE report_reader;
SET ROLE report_reader;
SELECT metric_anomaly.latest_report('sales');
SELECT count(*) FROM metric_anomaly.reports;
RESET ROLE;
DROP ROLE report_reader;

DROP EXTENSION metric_anomaly;

/* metric_anomaly 0.1.0: install script. */

\echo Use "CREATE EXTENSION metric_anomaly" to load this file. \quit

/*
 * The role that administers the extension: reads and writes settings and
 * channels, runs passes by hand, starts workers.  Roles are cluster-wide, so
 * it is created only when it does not exist yet and is not dropped with the
 * extension.
 */
DO $role$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'metric_anomaly_admin') THEN
        CREATE ROLE metric_anomaly_admin NOLOGIN;
    END IF;
END
$role$;

GRANT USAGE ON SCHEMA metric_anomaly TO PUBLIC;

------------------------------------------------------------------------------
-- Raw events: what applications write.
------------------------------------------------------------------------------
CREATE TABLE metric_anomaly.business_events (
    id              bigserial PRIMARY KEY,
    event_type      text NOT NULL
                    CONSTRAINT business_events_event_type_check
                    CHECK (pg_catalog.length(event_type) BETWEEN 1 AND 200),
    event_timestamp timestamptz NOT NULL DEFAULT pg_catalog.now()
                    CONSTRAINT business_events_event_timestamp_check
                    CHECK (pg_catalog.isfinite(event_timestamp)),
    payload         jsonb,
    is_processed    boolean NOT NULL DEFAULT false
);

-- Claiming walks this small index in id order; processed rows leave it.
CREATE INDEX business_events_pending_idx
    ON metric_anomaly.business_events (id) WHERE NOT is_processed;
-- Reads by time and the retention sweep.
CREATE INDEX business_events_timestamp_idx
    ON metric_anomaly.business_events (event_timestamp, event_type);

COMMENT ON TABLE metric_anomaly.business_events IS
    'Raw business events written by applications; the worker folds unprocessed rows into aggregated_metrics exactly once.';
COMMENT ON COLUMN metric_anomaly.business_events.event_type IS
    'What happened (1 to 200 characters); becomes the metric name.';
COMMENT ON COLUMN metric_anomaly.business_events.is_processed IS
    'Set by the aggregation pass in the same transaction that counts the event.';

------------------------------------------------------------------------------
-- Per-minute metrics: what the worker writes and detection evaluates.
------------------------------------------------------------------------------
CREATE TABLE metric_anomaly.aggregated_metrics (
    metric_name      text NOT NULL,
    metric_timestamp timestamptz NOT NULL,
    metric_value     double precision NOT NULL,
    sample_count     bigint NOT NULL,
    is_anomaly       boolean NOT NULL DEFAULT false,
    anomaly_context  jsonb,
    needs_eval       boolean NOT NULL DEFAULT true,
    -- metric_value is included so that detection reads history from the
    -- index alone.
    CONSTRAINT aggregated_metrics_pkey PRIMARY KEY (metric_name, metric_timestamp)
        INCLUDE (metric_value)
);

-- Rows that detection still has to (re-)evaluate.
CREATE INDEX aggregated_metrics_needs_eval_idx
    ON metric_anomaly.aggregated_metrics (metric_name, metric_timestamp) WHERE needs_eval;
-- Recent anomalies, newest first.
CREATE INDEX aggregated_metrics_anomaly_idx
    ON metric_anomaly.aggregated_metrics (metric_timestamp DESC) WHERE is_anomaly;

COMMENT ON TABLE metric_anomaly.aggregated_metrics IS
    'One row per metric per minute (UTC minute start): the value, how many events made it, and the detection verdict with its evidence.';
COMMENT ON COLUMN metric_anomaly.aggregated_metrics.metric_timestamp IS
    'Start of the minute.';
COMMENT ON COLUMN metric_anomaly.aggregated_metrics.sample_count IS
    'Number of events folded into this row (0 for a zero-filled minute).';
COMMENT ON COLUMN metric_anomaly.aggregated_metrics.anomaly_context IS
    'Evidence of the last evaluation (method, mean, std_dev, boundaries, z_score, sigma, window); NULL when not evaluated.';
COMMENT ON COLUMN metric_anomaly.aggregated_metrics.needs_eval IS
    'True while detection still has to evaluate (or re-evaluate, after a late event) this row.';

------------------------------------------------------------------------------
-- Series seen so far and how far each is zero-filled.
------------------------------------------------------------------------------
CREATE TABLE metric_anomaly.series (
    metric_name  text PRIMARY KEY,
    filled_until timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT pg_catalog.now()
);

COMMENT ON TABLE metric_anomaly.series IS
    'Every series seen so far; minutes up to filled_until exist as rows (a minute without events is a 0).';

------------------------------------------------------------------------------
-- Per-metric detection settings; NULL means the GUC default.
------------------------------------------------------------------------------
CREATE TABLE metric_anomaly.metrics (
    metric_name text PRIMARY KEY,
    sigma       double precision CHECK (sigma > 0 AND sigma <= 100),
    window_size integer CHECK (window_size BETWEEN 2 AND 10080),
    min_points  integer CHECK (min_points BETWEEN 2 AND 10080),
    direction   text NOT NULL DEFAULT 'both' CHECK (direction IN ('both', 'up', 'down')),
    enabled     boolean NOT NULL DEFAULT true,
    description text
);

COMMENT ON TABLE metric_anomaly.metrics IS
    'Per-metric detection settings: sigma, window_size (points of history), min_points, direction (both, up, down), enabled. NULL settings take the metric_anomaly.sigma, .window and .min_points defaults.';

------------------------------------------------------------------------------
-- The worker's own bookkeeping (one row).
------------------------------------------------------------------------------
CREATE TABLE metric_anomaly.worker_state (
    singleton        boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_pass_start  timestamptz,
    last_pass_end    timestamptz,
    last_pass_events bigint NOT NULL DEFAULT 0,
    total_events     bigint NOT NULL DEFAULT 0,
    passes           bigint NOT NULL DEFAULT 0,
    last_error       text,
    last_error_at    timestamptz
);
INSERT INTO metric_anomaly.worker_state DEFAULT VALUES;

COMMENT ON TABLE metric_anomaly.worker_state IS
    'Bookkeeping of aggregation passes in this database; read it through worker_status.';

CREATE VIEW metric_anomaly.worker_status AS
SELECT pg_catalog.current_database() AS database,
       a.pid,
       a.pid IS NOT NULL AS running,
       s.last_pass_start,
       s.last_pass_end,
       s.last_pass_events,
       s.total_events,
       s.passes,
       (SELECT pg_catalog.count(*) FROM metric_anomaly.business_events e
         WHERE NOT e.is_processed) AS pending_events,
       s.last_error,
       s.last_error_at
  FROM metric_anomaly.worker_state s
  LEFT JOIN pg_catalog.pg_stat_activity a
         ON a.backend_type = 'metric_anomaly worker'
        AND a.datname = pg_catalog.current_database();

COMMENT ON VIEW metric_anomaly.worker_status IS
    'The aggregation worker of this database: its pid when running, the last pass, events folded in it and in total, the pending backlog and the last error.';

CREATE VIEW metric_anomaly.anomalies AS
SELECT m.metric_name,
       m.metric_timestamp,
       m.metric_value,
       m.sample_count,
       (m.anomaly_context ->> 'mean')::double precision AS mean,
       (m.anomaly_context ->> 'std_dev')::double precision AS std_dev,
       (m.anomaly_context ->> 'z_score')::double precision AS z_score,
       m.anomaly_context
  FROM metric_anomaly.aggregated_metrics m
 WHERE m.is_anomaly
 ORDER BY m.metric_timestamp DESC, m.metric_name;

COMMENT ON VIEW metric_anomaly.anomalies IS
    'Anomalous points with their evidence, newest first.';

------------------------------------------------------------------------------
-- Functions.
------------------------------------------------------------------------------
CREATE FUNCTION metric_anomaly.process_pending(as_of timestamptz DEFAULT pg_catalog.now())
RETURNS bigint
LANGUAGE c VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'metric_anomaly_process_pending';

COMMENT ON FUNCTION metric_anomaly.process_pending(timestamptz) IS
    'Runs one aggregation pass in this session (the worker''s code path): folds every unprocessed event, zero-fills and evaluates minutes closed before as_of; returns the number of events folded.';

CREATE FUNCTION metric_anomaly.start_worker()
RETURNS integer
LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'metric_anomaly_start_worker';

COMMENT ON FUNCTION metric_anomaly.start_worker() IS
    'Starts the aggregation worker for the current database as a dynamic background worker and returns its pid; it does not survive a server restart.';

CREATE FUNCTION metric_anomaly.three_sigma(history double precision[],
                                           value double precision,
                                           sigma double precision DEFAULT 3.0)
RETURNS jsonb
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'metric_anomaly_three_sigma';

COMMENT ON FUNCTION metric_anomaly.three_sigma(double precision[], double precision, double precision) IS
    'Evaluates value against history with the 3-sigma rule and returns the evidence detection stores (NULL elements ignored; NaN and infinities are an error).';

------------------------------------------------------------------------------
-- Privileges: the read side is public, the rest belongs to the admins.
------------------------------------------------------------------------------
REVOKE ALL ON FUNCTION metric_anomaly.process_pending(timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION metric_anomaly.start_worker() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION metric_anomaly.process_pending(timestamptz) TO metric_anomaly_admin;
GRANT EXECUTE ON FUNCTION metric_anomaly.start_worker() TO metric_anomaly_admin;

GRANT SELECT ON metric_anomaly.aggregated_metrics, metric_anomaly.series,
                metric_anomaly.metrics, metric_anomaly.anomalies,
                metric_anomaly.worker_status TO PUBLIC;
GRANT ALL ON metric_anomaly.business_events, metric_anomaly.aggregated_metrics,
             metric_anomaly.series, metric_anomaly.metrics,
             metric_anomaly.worker_state TO metric_anomaly_admin;
GRANT USAGE ON SEQUENCE metric_anomaly.business_events_id_seq TO metric_anomaly_admin;

------------------------------------------------------------------------------
-- pg_dump keeps the rows of the tables users fill and the worker's results.
------------------------------------------------------------------------------
SELECT pg_catalog.pg_extension_config_dump('metric_anomaly.business_events', '');
SELECT pg_catalog.pg_extension_config_dump('metric_anomaly.business_events_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('metric_anomaly.aggregated_metrics', '');
SELECT pg_catalog.pg_extension_config_dump('metric_anomaly.series', '');
SELECT pg_catalog.pg_extension_config_dump('metric_anomaly.metrics', '');

------------------------------------------------------------------------------
-- Charts
------------------------------------------------------------------------------
CREATE FUNCTION metric_anomaly.render_metric_chart(
    metric_name text,
    since timestamptz DEFAULT pg_catalog.now() OPERATOR(pg_catalog.-) interval '3 hours',
    until timestamptz DEFAULT pg_catalog.now(),
    width integer DEFAULT 1200,
    height integer DEFAULT 600)
RETURNS bytea
LANGUAGE c STABLE STRICT PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'metric_anomaly_render_metric_chart';

COMMENT ON FUNCTION metric_anomaly.render_metric_chart(text, timestamptz, timestamptz, integer, integer) IS
    'PNG chart of a metric''s minutes from since to until: the values (a missing minute is a gap), the expected band from each minute''s evidence, anomalies as red dots, times in the session time zone; width and height 100 to 4000 pixels, at most 100000 points.';

CREATE FUNCTION metric_anomaly.line_chart_accum(internal, timestamptz, double precision)
RETURNS internal
LANGUAGE c CALLED ON NULL INPUT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'metric_anomaly_line_chart_accum';
CREATE FUNCTION metric_anomaly.line_chart_accum(internal, timestamptz, double precision, jsonb)
RETURNS internal
LANGUAGE c CALLED ON NULL INPUT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'metric_anomaly_line_chart_accum';
CREATE FUNCTION metric_anomaly.line_chart_accum(internal, timestamptz, double precision, text, jsonb)
RETURNS internal
LANGUAGE c CALLED ON NULL INPUT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'metric_anomaly_line_chart_accum';
CREATE FUNCTION metric_anomaly.line_chart_final(internal)
RETURNS bytea
LANGUAGE c PARALLEL SAFE
AS 'MODULE_PATHNAME', 'metric_anomaly_line_chart_final';

COMMENT ON FUNCTION metric_anomaly.line_chart_accum(internal, timestamptz, double precision) IS
    'Transition function of line_chart.';
COMMENT ON FUNCTION metric_anomaly.line_chart_accum(internal, timestamptz, double precision, jsonb) IS
    'Transition function of line_chart.';
COMMENT ON FUNCTION metric_anomaly.line_chart_accum(internal, timestamptz, double precision, text, jsonb) IS
    'Transition function of line_chart.';
COMMENT ON FUNCTION metric_anomaly.line_chart_final(internal) IS
    'Final function of line_chart: draws the collected points as a PNG.';

CREATE AGGREGATE metric_anomaly.line_chart(ts timestamptz, value double precision) (
    SFUNC = metric_anomaly.line_chart_accum,
    STYPE = internal,
    FINALFUNC = metric_anomaly.line_chart_final,
    PARALLEL = SAFE
);
CREATE AGGREGATE metric_anomaly.line_chart(ts timestamptz, value double precision, options jsonb) (
    SFUNC = metric_anomaly.line_chart_accum,
    STYPE = internal,
    FINALFUNC = metric_anomaly.line_chart_final,
    PARALLEL = SAFE
);
CREATE AGGREGATE metric_anomaly.line_chart(ts timestamptz, value double precision, series text, options jsonb) (
    SFUNC = metric_anomaly.line_chart_accum,
    STYPE = internal,
    FINALFUNC = metric_anomaly.line_chart_final,
    PARALLEL = SAFE
);

COMMENT ON AGGREGATE metric_anomaly.line_chart(timestamptz, double precision) IS
    'PNG line chart of (ts, value) rows; a NULL value breaks the line, NaN and infinities are skipped; no rows give NULL.';
COMMENT ON AGGREGATE metric_anomaly.line_chart(timestamptz, double precision, jsonb) IS
    'PNG line chart of (ts, value) rows with options: title, subtitle, label, y_label, width, height (100 to 4000), gap (seconds), dashed, markers (true).';
COMMENT ON AGGREGATE metric_anomaly.line_chart(timestamptz, double precision, text, jsonb) IS
    'PNG line chart with one line per distinct series value (at most 16) and options: title, subtitle, y_label, y2_label, width, height, gap, right_axis, dashed and markers (arrays of series names).';

/*
 * metric_anomaly 0.1.0 -> 0.2.0: upgrade script.
 *
 * Every schema change of 0.2.0 is made here as well as in
 * metric_anomaly--0.2.0.sql, so that an upgraded database equals a fresh
 * install (test/t/008_upgrade.pl compares the two).  Columns a fresh install
 * has are added at the end of their table in both scripts, so the column
 * order agrees.
 */

\echo Use "ALTER EXTENSION metric_anomaly UPDATE" to load this file. \quit

------------------------------------------------------------------------------
-- Security, dumps and upgrades
------------------------------------------------------------------------------
-- pg_dump keeps the alert state (see the install script).
SELECT pg_catalog.pg_extension_config_dump('metric_anomaly.alerts', '');
SELECT pg_catalog.pg_extension_config_dump('metric_anomaly.alerts_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('metric_anomaly.alert_episodes', '');
SELECT pg_catalog.pg_extension_config_dump('metric_anomaly.deliveries', '');
SELECT pg_catalog.pg_extension_config_dump('metric_anomaly.deliveries_id_seq', '');

------------------------------------------------------------------------------
-- Detection wing: per-metric settings, N-of-M alerting state, replay and
-- backtest.
------------------------------------------------------------------------------
ALTER TABLE metric_anomaly.metrics
    ADD COLUMN method      text
                CONSTRAINT metrics_method_check CHECK (method IN ('robust', '3-sigma')),
    ADD COLUMN sensitivity double precision
                CONSTRAINT metrics_sensitivity_check CHECK (sensitivity > 0 AND sensitivity <= 100),
    ADD COLUMN seasonality text
                CONSTRAINT metrics_seasonality_check CHECK (seasonality IN ('auto', 'daily', 'weekly', 'none')),
    ADD COLUMN alert_after integer
                CONSTRAINT metrics_alert_after_check CHECK (alert_after BETWEEN 1 AND 60),
    ADD COLUMN alert_window integer
                CONSTRAINT metrics_alert_window_check CHECK (alert_window BETWEEN 1 AND 60 AND alert_window >= alert_after);

COMMENT ON TABLE metric_anomaly.metrics IS
    'Per-metric detection settings: method (robust, the default, or 3-sigma), sigma (3-sigma), sensitivity (robust, default 6), window_size (points of history), min_points, direction (both, up, down), seasonality (auto, daily, weekly, none), alert_after and alert_window (alert when alert_after of the last alert_window judged minutes are anomalous), enabled. NULL settings take the defaults (metric_anomaly.sigma, .window, .min_points GUCs).';
COMMENT ON COLUMN metric_anomaly.metrics.sensitivity IS
    'Robust method: a point is anomalous when it is more than sensitivity robust sigmas from every baseline that judges it; NULL means 6.';
COMMENT ON COLUMN metric_anomaly.metrics.alert_after IS
    'Anomalous minutes among the last alert_window judged minutes that open an alert episode (NULL means 2 of 20 for robust, 1 for 3-sigma).';

ALTER TABLE metric_anomaly.series
    ADD COLUMN detect_errors        bigint NOT NULL DEFAULT 0,
    ADD COLUMN detect_last_error    text,
    ADD COLUMN detect_last_error_at timestamptz;

COMMENT ON COLUMN metric_anomaly.series.detect_errors IS
    'Passes in which this series'' detection or alerting failed; the pass went on without it.';
COMMENT ON COLUMN metric_anomaly.series.detect_last_error IS
    'The last such failure: the stage (detection, alerting) and the error message.';

ALTER TABLE metric_anomaly.alert_episodes
    ADD COLUMN recent_breaches bigint NOT NULL DEFAULT 0;

COMMENT ON COLUMN metric_anomaly.alert_episodes.recent_breaches IS
    'Bit i set: the judged minute i steps back breached (for alert_after of alert_window).';

CREATE FUNCTION metric_anomaly.detect_series(ts timestamptz[], value double precision[],
                                             settings jsonb DEFAULT '{}')
RETURNS TABLE (n integer, ts timestamptz, value double precision,
               expected double precision, lower double precision,
               upper double precision, score double precision,
               is_anomaly boolean, alert text)
LANGUAGE c STABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'metric_anomaly_detect_series';

COMMENT ON FUNCTION metric_anomaly.detect_series(timestamptz[], double precision[], jsonb) IS
    'Judges a series as the worker does, as a stream in input order (one row per element; NULL value = gap): the verdict, expected value, band and score of each point and the alert (firing, resolved) the worker''s alerting would raise; settings take the keys of metric_anomaly.metrics; at most 1000000 points.';

CREATE FUNCTION metric_anomaly.backtest(metric_name text, since timestamptz, until timestamptz,
                                        settings jsonb DEFAULT '{}')
RETURNS TABLE (n integer, ts timestamptz, value double precision,
               expected double precision, lower double precision,
               upper double precision, score double precision,
               is_anomaly boolean, alert text)
LANGUAGE c STABLE STRICT PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'metric_anomaly_backtest';

COMMENT ON FUNCTION metric_anomaly.backtest(text, timestamptz, timestamptz, jsonb) IS
    'detect_series() over the stored minutes of a metric in [since, until), with its settings in metric_anomaly.metrics overridden by settings; earlier minutes serve as history; alerting starts idle at since.';

GRANT EXECUTE ON FUNCTION metric_anomaly.detect_series(timestamptz[], double precision[], jsonb) TO PUBLIC;
REVOKE ALL ON FUNCTION metric_anomaly.backtest(text, timestamptz, timestamptz, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION metric_anomaly.backtest(text, timestamptz, timestamptz, jsonb) TO metric_anomaly_admin;

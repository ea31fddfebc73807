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
-- Aggregation: quarantine
------------------------------------------------------------------------------
CREATE TABLE metric_anomaly.quarantined_events (
    id              bigint NOT NULL,
    event_type      text NOT NULL,
    event_timestamp timestamptz NOT NULL,
    payload         jsonb,
    reason          text NOT NULL,
    quarantined_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);

CREATE INDEX quarantined_events_id_idx ON metric_anomaly.quarantined_events (id);

COMMENT ON TABLE metric_anomaly.quarantined_events IS
    'Copies of events that a pass claimed but could not count (today: dated within 30 days of either end of the timestamp range), with the reason; counted in worker_status.quarantined_events.  Every claimed event is either counted in aggregated_metrics or kept here.';

GRANT ALL ON metric_anomaly.quarantined_events TO metric_anomaly_admin;
SELECT pg_catalog.pg_extension_config_dump('metric_anomaly.quarantined_events', '');

-- worker_status gains quarantined_events, at the end.
CREATE OR REPLACE VIEW metric_anomaly.worker_status AS
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
       s.last_error_at,
       (SELECT pg_catalog.count(*) FROM metric_anomaly.quarantined_events q) AS quarantined_events
  FROM metric_anomaly.worker_state s
  LEFT JOIN pg_catalog.pg_stat_activity a
         ON a.backend_type = 'metric_anomaly worker'
        AND a.datname = pg_catalog.current_database();

COMMENT ON VIEW metric_anomaly.worker_status IS
    'The aggregation worker of this database: its pid when running, the last pass, events folded in it and in total, the pending backlog, the last error, and how many events are quarantined.';

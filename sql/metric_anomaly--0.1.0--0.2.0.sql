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
-- Workers (issue 9, 17): worker_status finds the aggregation worker by the
-- lock it holds while serving the database, in pg_locks, which every role
-- sees whole (pg_stat_activity hides the backend type of the superuser's
-- workers from other roles).
------------------------------------------------------------------------------
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
       s.last_error_at
  FROM metric_anomaly.worker_state s
  LEFT JOIN pg_catalog.pg_locks a
         ON a.locktype = 'advisory'
        AND a.database = (SELECT d.oid FROM pg_catalog.pg_database d
                           WHERE d.datname = pg_catalog.current_database())
        AND a.classid = 28001 AND a.objid = 1 AND a.objsubid = 28001
        AND a.granted;

COMMENT ON VIEW metric_anomaly.worker_status IS
    'The aggregation worker of this database: its pid when running (the holder of the worker''s lock, which pg_locks shows to every role), the last pass, events folded in it and in total, the pending backlog and the last error.';

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

------------------------------------------------------------------------------
-- Aggregation: folding without writing events (position in snapshots)
------------------------------------------------------------------------------
-- Events carry their transaction id.  Existing rows get xid 2 (frozen:
-- visible in every snapshot) when folded, this transaction's id when still
-- pending; the new position sees every transaction before this one except
-- those still running, and not this one, so exactly the pending rows and
-- rows that running transactions insert later are folded after the update.
-- The volatile default makes ADD COLUMN rewrite the table (compact, no dead
-- rows) instead of storing '2' as the column's "missing value", which a
-- fresh install lacks.
ALTER TABLE metric_anomaly.business_events
    ADD COLUMN xid xid8 NOT NULL
    DEFAULT CASE WHEN pg_catalog.random() >= 0 THEN '2'::xid8 END;
ALTER TABLE metric_anomaly.business_events
    ALTER COLUMN xid SET DEFAULT pg_catalog.pg_current_xact_id();
UPDATE metric_anomaly.business_events SET xid = pg_catalog.pg_current_xact_id()
 WHERE NOT is_processed;
DROP INDEX metric_anomaly.business_events_pending_idx;
CREATE INDEX business_events_xid_idx
    ON metric_anomaly.business_events (xid, id);

COMMENT ON TABLE metric_anomaly.business_events IS
    'Raw business events written by applications; the aggregation pass folds each committed event into aggregated_metrics exactly once, without writing to this table.  An event has been folded when metric_anomaly.event_folded(xid) is true.';
COMMENT ON COLUMN metric_anomaly.business_events.xid IS
    'The inserting transaction (top-level, also inside a savepoint); leave it to its default.  Decides which round of the aggregation folds the event.';

ALTER TABLE metric_anomaly.worker_state
    ADD COLUMN folded_snapshot pg_snapshot,
    ADD COLUMN round_snapshot pg_snapshot,
    ADD COLUMN round_xid xid8,
    ADD COLUMN round_id bigint;
-- This transaction's snapshot does not list its own id: add it to the
-- in-progress list when the snapshot would otherwise see it.
UPDATE metric_anomaly.worker_state
   SET folded_snapshot = (
       SELECT CASE WHEN pg_catalog.pg_visible_in_snapshot(a.x, a.s)
                   THEN (pg_catalog.pg_snapshot_xmin(a.s)::text || ':' ||
                         pg_catalog.pg_snapshot_xmax(a.s)::text || ':' ||
                         (SELECT pg_catalog.string_agg(u.v::text, ',' ORDER BY u.v)
                            FROM (SELECT pg_catalog.pg_snapshot_xip(a.s) AS v
                                  UNION ALL SELECT a.x) AS u))::pg_snapshot
                   ELSE a.s END
         FROM (SELECT pg_catalog.pg_current_xact_id() AS x,
                      pg_catalog.pg_current_snapshot() AS s) AS a);
ALTER TABLE metric_anomaly.worker_state
    ALTER COLUMN folded_snapshot SET NOT NULL,
    ALTER COLUMN folded_snapshot SET DEFAULT pg_catalog.pg_current_snapshot();

COMMENT ON COLUMN metric_anomaly.worker_state.folded_snapshot IS
    'The position: every event whose xid is visible in this snapshot has been folded, and no other.';
COMMENT ON COLUMN metric_anomaly.worker_state.round_snapshot IS
    'The round under way: it folds the events visible in round_snapshot and not in folded_snapshot, in (xid, id) order; round_xid and round_id are the last event it folded.  NULL between rounds.';

CREATE FUNCTION metric_anomaly.event_folded(xid xid8)
RETURNS boolean
LANGUAGE sql STABLE STRICT PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT pg_catalog.pg_visible_in_snapshot($1, w.folded_snapshot)
  FROM metric_anomaly.worker_state w
$$;

COMMENT ON FUNCTION metric_anomaly.event_folded(xid8) IS
    'True when the events of transaction xid (business_events.xid) have been folded into aggregated_metrics; false while they are pending or when that transaction has not committed.';
GRANT EXECUTE ON FUNCTION metric_anomaly.event_folded(xid8) TO PUBLIC;

-- worker_status: pending_events from the position; quarantined_events, at the end.
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
         WHERE e.xid >= pg_catalog.pg_snapshot_xmin(s.folded_snapshot)
           AND NOT pg_catalog.pg_visible_in_snapshot(e.xid, s.folded_snapshot)) AS pending_events,
       s.last_error,
       s.last_error_at,
       (SELECT pg_catalog.count(*) FROM metric_anomaly.quarantined_events q) AS quarantined_events
  FROM metric_anomaly.worker_state s
  LEFT JOIN pg_catalog.pg_stat_activity a
         ON a.backend_type = 'metric_anomaly worker'
        AND a.datname = pg_catalog.current_database();

COMMENT ON VIEW metric_anomaly.worker_status IS
    'The aggregation worker of this database: its pid when running, the last pass, events folded in it and in total, the pending backlog, the last error, and how many events are quarantined.';

-- is_processed goes once worker_status no longer reads it.
ALTER TABLE metric_anomaly.business_events DROP COLUMN is_processed;

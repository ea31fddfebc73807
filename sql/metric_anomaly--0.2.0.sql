/* metric_anomaly 0.2.0: install script. */

\echo Use "CREATE EXTENSION metric_anomaly" to load this file. \quit

/*
 * Trust prologue (the same in the install and upgrade scripts).
 *
 * CREATE EXTENSION runs this script with the extension's schema first on
 * search_path, so an object planted in that schema before the install could
 * stand in for a built-in (an operator matching the argument types better
 * than pg_catalog's, for instance) and run as whoever later uses the
 * object, the worker's superuser included (CVE-2023-39417's class).  So:
 *  - search_path is pinned for the rest of the script (SET LOCAL ends with
 *    the script; CREATE EXTENSION restores the caller's); every object of
 *    the extension is named with its schema;
 *  - the schema must be owned by a superuser, nobody else may create in
 *    it, and nothing in it may belong to a role that is not a superuser;
 *  - metric_anomaly_admin, a cluster-wide role, is created here when
 *    missing; one that exists already is used only when it looks like the
 *    one this script makes: NOLOGIN, no password and no other attribute,
 *    a member of no role, granted to others only by superusers and without
 *    ADMIN OPTION (a role created by a CREATEROLE user could otherwise be
 *    logged in with, or handed on, by that user).
 * Each refusal says what is wrong and what to do.
 */
SET LOCAL search_path = pg_catalog, pg_temp;

DO $trust$
DECLARE
    schema_owner   name;
    owner_is_super boolean;
    foreign_object text;
    role_row       record;
    membership     record;
BEGIN
    SELECT r.rolname, r.rolsuper INTO schema_owner, owner_is_super
      FROM pg_catalog.pg_namespace n
      JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
     WHERE n.nspname = 'metric_anomaly';
    IF NOT owner_is_super THEN
        RAISE EXCEPTION USING
            ERRCODE = 'insufficient_privilege',
            MESSAGE = format('schema "metric_anomaly" is owned by role "%s", which is not a superuser', schema_owner),
            DETAIL = 'The owner of a schema can put objects into it that the extension''s objects would use, and the worker runs them as a superuser.',
            HINT = 'Drop the schema (DROP SCHEMA metric_anomaly) and run the command again: CREATE EXTENSION creates the schema itself.  Or, if you trust everything in it, make a superuser its owner (ALTER SCHEMA metric_anomaly OWNER TO ...).';
    END IF;

    SELECT pg_catalog.string_agg(CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                                      ELSE pg_catalog.quote_ident(r.rolname) END, ', ')
      INTO foreign_object
      FROM pg_catalog.pg_namespace n,
           LATERAL pg_catalog.aclexplode(n.nspacl) a
      LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
     WHERE n.nspname = 'metric_anomaly' AND a.privilege_type = 'CREATE'
       AND a.grantee <> n.nspowner AND NOT coalesce(r.rolsuper, false);
    IF foreign_object IS NOT NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'insufficient_privilege',
            MESSAGE = 'roles that are not superusers may create objects in schema "metric_anomaly"',
            DETAIL = format('CREATE on the schema is granted to %s.', foreign_object),
            HINT = format('Revoke it (REVOKE CREATE ON SCHEMA metric_anomaly FROM %s) and run the command again.', foreign_object);
    END IF;

    SELECT pg_catalog.string_agg(pg_catalog.format('%s %s owned by %s', o.kind, o.name, pg_catalog.quote_ident(r.rolname)),
                                 ', ' ORDER BY o.kind, o.name)
      INTO foreign_object
      FROM (SELECT 'relation' AS kind, c.relname::text AS name, c.relowner AS owner, c.relnamespace AS nsp FROM pg_catalog.pg_class c
            UNION ALL SELECT 'function', p.oid::pg_catalog.regprocedure::text, p.proowner, p.pronamespace FROM pg_catalog.pg_proc p
            UNION ALL SELECT 'type', t.typname::text, t.typowner, t.typnamespace FROM pg_catalog.pg_type t
            UNION ALL SELECT 'operator', o.oid::pg_catalog.regoperator::text, o.oprowner, o.oprnamespace FROM pg_catalog.pg_operator o
            UNION ALL SELECT 'collation', c.collname::text, c.collowner, c.collnamespace FROM pg_catalog.pg_collation c
            UNION ALL SELECT 'conversion', c.conname::text, c.conowner, c.connamespace FROM pg_catalog.pg_conversion c
            UNION ALL SELECT 'operator class', c.opcname::text, c.opcowner, c.opcnamespace FROM pg_catalog.pg_opclass c
            UNION ALL SELECT 'operator family', f.opfname::text, f.opfowner, f.opfnamespace FROM pg_catalog.pg_opfamily f
            UNION ALL SELECT 'statistics', s.stxname::text, s.stxowner, s.stxnamespace FROM pg_catalog.pg_statistic_ext s
            UNION ALL SELECT 'text search configuration', c.cfgname::text, c.cfgowner, c.cfgnamespace FROM pg_catalog.pg_ts_config c
            UNION ALL SELECT 'text search dictionary', d.dictname::text, d.dictowner, d.dictnamespace FROM pg_catalog.pg_ts_dict d
           ) o
      JOIN pg_catalog.pg_namespace n ON n.oid = o.nsp
      JOIN pg_catalog.pg_roles r ON r.oid = o.owner
     WHERE n.nspname = 'metric_anomaly' AND NOT r.rolsuper;
    IF foreign_object IS NOT NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'insufficient_privilege',
            MESSAGE = 'schema "metric_anomaly" holds objects owned by roles that are not superusers',
            DETAIL = format('Found: %s.', foreign_object),
            HINT = 'Drop those objects (or the schema, before CREATE EXTENSION) and run the command again.';
    END IF;

    SELECT a.oid, a.rolname, a.rolsuper, a.rolcreaterole, a.rolcreatedb, a.rolcanlogin,
           a.rolreplication, a.rolbypassrls, a.rolpassword IS NOT NULL AS has_password
      INTO role_row
      FROM pg_catalog.pg_authid a
     WHERE a.rolname = 'metric_anomaly_admin';
    IF NOT FOUND THEN
        CREATE ROLE metric_anomaly_admin NOLOGIN;
        RETURN;
    END IF;
    IF role_row.rolsuper OR role_row.rolcreaterole OR role_row.rolcreatedb OR role_row.rolcanlogin
       OR role_row.rolreplication OR role_row.rolbypassrls OR role_row.has_password THEN
        RAISE EXCEPTION USING
            ERRCODE = 'insufficient_privilege',
            MESSAGE = 'role "metric_anomaly_admin" exists with attributes the extension does not give it',
            DETAIL = 'The extension creates it NOLOGIN, without a password or any other attribute; whoever can log in as it would administer every database where the extension is installed.',
            HINT = 'If you did not create it, drop it (DROP ROLE metric_anomaly_admin) and run the command again; if you did, remove the attributes (ALTER ROLE metric_anomaly_admin NOSUPERUSER NOCREATEROLE NOCREATEDB NOLOGIN NOREPLICATION NOBYPASSRLS PASSWORD NULL) and grant the role to the users who need it instead.';
    END IF;
    FOR membership IN
        SELECT m.admin_option,
               m.roleid = role_row.oid AS granted_by_it,
               pg_catalog.quote_ident(g.rolname) AS granted, pg_catalog.quote_ident(u.rolname) AS member,
               pg_catalog.quote_ident(gr.rolname) AS grantor, coalesce(gr.rolsuper, false) AS grantor_super,
               u.rolsuper AS member_super
          FROM pg_catalog.pg_auth_members m
          JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
          JOIN pg_catalog.pg_roles u ON u.oid = m.member
          LEFT JOIN pg_catalog.pg_roles gr ON gr.oid = m.grantor
         WHERE m.roleid = role_row.oid OR m.member = role_row.oid
    LOOP
        IF NOT membership.granted_by_it THEN
            RAISE EXCEPTION USING
                ERRCODE = 'insufficient_privilege',
                MESSAGE = format('role "metric_anomaly_admin" exists and is a member of role %s', membership.granted),
                DETAIL = 'The extension creates it a member of no role; its members would inherit the other role''s privileges.',
                HINT = format('If you did not create it, drop it (DROP ROLE metric_anomaly_admin); if you did, REVOKE %s FROM metric_anomaly_admin.  Then run the command again.', membership.granted);
        ELSIF NOT membership.grantor_super THEN
            RAISE EXCEPTION USING
                ERRCODE = 'insufficient_privilege',
                MESSAGE = format('role "metric_anomaly_admin" exists and was granted to %s by %s, who is not a superuser',
                                 membership.member, coalesce(membership.grantor, 'a dropped role')),
                DETAIL = 'A role made by a user with CREATEROLE stays in that user''s hands.',
                HINT = format('If you did not create the role, drop it (DROP ROLE metric_anomaly_admin); otherwise REVOKE metric_anomaly_admin FROM %s and grant it again as a superuser.  Then run the command again.', membership.member);
        ELSIF membership.admin_option AND NOT membership.member_super THEN
            RAISE EXCEPTION USING
                ERRCODE = 'insufficient_privilege',
                MESSAGE = format('role "metric_anomaly_admin" exists and was granted to %s WITH ADMIN OPTION', membership.member),
                DETAIL = 'A member with ADMIN OPTION can grant the role to anyone, and PostgreSQL 16 gives it to the user with CREATEROLE who created the role.',
                HINT = format('If you did not create the role, drop it (DROP ROLE metric_anomaly_admin); otherwise REVOKE ADMIN OPTION FOR metric_anomaly_admin FROM %s.  Then run the command again.', membership.member);
        END IF;
    END LOOP;
END
$trust$;

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
-- 0.2.0 folds without writing events (see worker_state.folded_snapshot):
-- is_processed is gone.  It is created and dropped here so that the table's
-- attribute numbers equal those of a database updated from 0.1.0.
ALTER TABLE metric_anomaly.business_events DROP COLUMN is_processed;
-- (Added without a default, then given one: a default at ADD COLUMN would be
-- stored as the column's "missing value", which an updated database lacks.)
ALTER TABLE metric_anomaly.business_events ADD COLUMN xid xid8 NOT NULL;
ALTER TABLE metric_anomaly.business_events
    ALTER COLUMN xid SET DEFAULT pg_catalog.pg_current_xact_id();

-- A round walks this index from the position's xmin on.
CREATE INDEX business_events_xid_idx
    ON metric_anomaly.business_events (xid, id);
-- Reads by time and the retention sweep.
CREATE INDEX business_events_timestamp_idx
    ON metric_anomaly.business_events (event_timestamp, event_type);

COMMENT ON TABLE metric_anomaly.business_events IS
    'Raw business events written by applications; the aggregation pass folds each committed event into aggregated_metrics exactly once, without writing to this table.  An event has been folded when metric_anomaly.event_folded(xid, id) is true.';
COMMENT ON COLUMN metric_anomaly.business_events.event_type IS
    'What happened (1 to 200 characters); becomes the metric name.';
COMMENT ON COLUMN metric_anomaly.business_events.xid IS
    'The inserting transaction (top-level, also inside a savepoint); leave it to its default.  Decides which round of the aggregation folds the event.';

------------------------------------------------------------------------------
-- Events a pass could not count, kept with the reason.
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
    created_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    detect_errors        bigint NOT NULL DEFAULT 0,
    detect_last_error    text,
    detect_last_error_at timestamptz
);

COMMENT ON TABLE metric_anomaly.series IS
    'Every series seen so far; minutes up to filled_until exist as rows (a minute without events is a 0).';
COMMENT ON COLUMN metric_anomaly.series.detect_errors IS
    'Passes in which this series'' detection or alerting failed; the pass went on without it.';
COMMENT ON COLUMN metric_anomaly.series.detect_last_error IS
    'The last such failure: the stage (detection, alerting) and the error message.';

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
    description text,
    method      text
                CONSTRAINT metrics_method_check CHECK (method IN ('robust', '3-sigma')),
    sensitivity double precision
                CONSTRAINT metrics_sensitivity_check CHECK (sensitivity > 0 AND sensitivity <= 100),
    seasonality text
                CONSTRAINT metrics_seasonality_check CHECK (seasonality IN ('auto', 'daily', 'weekly', 'none')),
    alert_after integer
                CONSTRAINT metrics_alert_after_check CHECK (alert_after BETWEEN 1 AND 60),
    alert_window integer
                CONSTRAINT metrics_alert_window_check CHECK (alert_window BETWEEN 1 AND 60 AND alert_window >= alert_after)
);

COMMENT ON TABLE metric_anomaly.metrics IS
    'Per-metric detection settings: method (robust, the default, or 3-sigma), sigma (3-sigma), sensitivity (robust, default 6), window_size (points of history), min_points, direction (both, up, down), seasonality (auto, daily, weekly, none), alert_after and alert_window (alert when alert_after of the last alert_window judged minutes are anomalous), enabled. NULL settings take the defaults (metric_anomaly.sigma, .window, .min_points GUCs).';
COMMENT ON COLUMN metric_anomaly.metrics.sensitivity IS
    'Robust method: a point is anomalous when it is more than sensitivity robust sigmas from every baseline that judges it; NULL means 6.';
COMMENT ON COLUMN metric_anomaly.metrics.alert_after IS
    'Anomalous minutes among the last alert_window judged minutes that open an alert episode (NULL means 2 of 20 for robust, 1 for 3-sigma).';

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
    last_error_at    timestamptz,
    folded_snapshot  pg_snapshot NOT NULL DEFAULT pg_catalog.pg_current_snapshot(),
    round_snapshot   pg_snapshot,
    round_xid        xid8,
    round_id         bigint
);
INSERT INTO metric_anomaly.worker_state DEFAULT VALUES;

COMMENT ON COLUMN metric_anomaly.worker_state.folded_snapshot IS
    'The position: every event whose xid is visible in this snapshot has been folded, and no other.';
COMMENT ON COLUMN metric_anomaly.worker_state.round_snapshot IS
    'The round under way: it folds the events visible in round_snapshot and not in folded_snapshot, in (xid, id) order; round_xid and round_id are the last event it folded.  NULL between rounds.';

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
         WHERE e.xid >= pg_catalog.pg_snapshot_xmin(s.folded_snapshot)
           AND NOT pg_catalog.pg_visible_in_snapshot(e.xid, s.folded_snapshot)
           AND NOT (s.round_xid IS NOT NULL
                    AND pg_catalog.pg_visible_in_snapshot(e.xid, s.round_snapshot)
                    AND (e.xid, e.id) <= (s.round_xid, s.round_id))) AS pending_events,
       s.last_error,
       s.last_error_at,
       (SELECT pg_catalog.count(*) FROM metric_anomaly.quarantined_events q) AS quarantined_events
  FROM metric_anomaly.worker_state s
  LEFT JOIN pg_catalog.pg_locks a
         ON a.locktype = 'advisory'
        AND a.database = (SELECT d.oid FROM pg_catalog.pg_database d
                           WHERE d.datname = pg_catalog.current_database())
        AND a.classid = 28001 AND a.objid = 1 AND a.objsubid = 28001
        AND a.granted;

COMMENT ON VIEW metric_anomaly.worker_status IS
    'The aggregation worker of this database: its pid when running (the holder of the worker''s lock, which pg_locks shows to every role), the last pass, events folded in it and in total, the pending backlog, the last error, and how many events are quarantined.';

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

-- Folded: by a finished round (visible in the position), or by the round
-- under way, up to the event it has reached.
CREATE FUNCTION metric_anomaly.event_folded(xid xid8, id bigint)
RETURNS boolean
LANGUAGE sql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT pg_catalog.pg_visible_in_snapshot(event_folded.xid, w.folded_snapshot)
       OR coalesce(pg_catalog.pg_visible_in_snapshot(event_folded.xid, w.round_snapshot)
                   AND (event_folded.xid, event_folded.id) <= (w.round_xid, w.round_id), false)
  FROM metric_anomaly.worker_state w
$$;

COMMENT ON FUNCTION metric_anomaly.event_folded(xid8, bigint) IS
    'True when the event (business_events.xid, business_events.id) has been folded into aggregated_metrics; false while it is pending, and for a transaction that has not committed.';

CREATE FUNCTION metric_anomaly.start_worker()
RETURNS integer
LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'metric_anomaly_start_worker';

COMMENT ON FUNCTION metric_anomaly.start_worker() IS
    'Starts the aggregation worker and the alert delivery worker for the current database as dynamic background workers and returns the aggregation worker''s pid; they do not survive a server restart.';

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

GRANT EXECUTE ON FUNCTION metric_anomaly.event_folded(xid8, bigint) TO PUBLIC;
-- The position is no secret (worker_status shows what it implies), and
-- event_folded() runs with its caller's rights.
GRANT SELECT (folded_snapshot, round_snapshot, round_xid, round_id)
   ON metric_anomaly.worker_state TO PUBLIC;
GRANT SELECT ON metric_anomaly.aggregated_metrics, metric_anomaly.series,
                metric_anomaly.metrics, metric_anomaly.anomalies,
                metric_anomaly.worker_status TO PUBLIC;
-- Not ALL: TRIGGER would let an admin attach a function of its own to a
-- table the worker writes, to run as the worker's superuser; TRUNCATE is
-- not MVCC-safe (DELETE does the same job); REFERENCES would let a table of
-- the admin's block the worker's deletes.
GRANT SELECT, INSERT, UPDATE, DELETE
   ON metric_anomaly.business_events, metric_anomaly.aggregated_metrics,
      metric_anomaly.series, metric_anomaly.metrics,
      metric_anomaly.worker_state, metric_anomaly.quarantined_events TO metric_anomaly_admin;
GRANT USAGE ON SEQUENCE metric_anomaly.business_events_id_seq TO metric_anomaly_admin;

------------------------------------------------------------------------------
-- pg_dump keeps the rows of the tables users fill and the worker's results.
------------------------------------------------------------------------------
SELECT pg_catalog.pg_extension_config_dump('metric_anomaly.business_events', '');
SELECT pg_catalog.pg_extension_config_dump('metric_anomaly.business_events_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('metric_anomaly.aggregated_metrics', '');
SELECT pg_catalog.pg_extension_config_dump('metric_anomaly.series', '');
SELECT pg_catalog.pg_extension_config_dump('metric_anomaly.metrics', '');
SELECT pg_catalog.pg_extension_config_dump('metric_anomaly.quarantined_events', '');

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

------------------------------------------------------------------------------
-- Alerting
--
-- Detection (and the threshold rules below) write alerts into an outbox in
-- the same transaction as the verdict, with pg_notify('metric_anomaly', json)
-- and one delivery row per routed channel.  The delivery worker posts them
-- outside any transaction and records the outcome.  Channels hold secrets
-- (webhook URLs, tokens, signing keys): only metric_anomaly_admin reads them.
------------------------------------------------------------------------------
CREATE TABLE metric_anomaly.alert_channels (
    name       text PRIMARY KEY
               CONSTRAINT alert_channels_name_check
               CHECK (name ~ '^[A-Za-z0-9_.-]{1,64}$'),
    kind       text NOT NULL DEFAULT 'webhook'
               CONSTRAINT alert_channels_kind_check
               CHECK (kind IN ('webhook', 'slack', 'slack_bot', 'wecom', 'feishu', 'dingtalk', 'email')),
    url        text NOT NULL,
    secret     text,
    options    jsonb NOT NULL DEFAULT '{}'
               CONSTRAINT alert_channels_options_check
               CHECK (pg_catalog.jsonb_typeof(options) = 'object'),
    enabled    boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);

COMMENT ON TABLE metric_anomaly.alert_channels IS
    'Where alerts go: kind webhook, slack (incoming webhook), slack_bot (Web API base URL, bot token in secret, options.channel), wecom, feishu (images through an app: options.app_id), dingtalk, email (SMTP relay, options.from and options.to); url and secret are secrets readable only by metric_anomaly_admin.';
COMMENT ON COLUMN metric_anomaly.alert_channels.url IS
    'Endpoint (http or https only); for slack_bot the Web API base, e.g. https://slack.com/api; for email the relay, smtp://host[:port] (STARTTLS) or smtps://host[:port].';
COMMENT ON COLUMN metric_anomaly.alert_channels.secret IS
    'Signing secret (feishu, dingtalk), bot token (slack_bot) or bearer token (webhook, sent as Authorization: Bearer); for email {"user": ..., "password": ...}; for feishu with app images {"app_secret": ..., "sign": ...}; NULL when unused.';
COMMENT ON COLUMN metric_anomaly.alert_channels.options IS
    'Per-kind options: {"chart": true|false} attaches the chart where the kind carries images (default true); slack_bot needs {"channel": "C0123"}; email needs {"from": address, "to": address or array} and may relax TLS with {"tls": "none"}; feishu sends the chart with {"app_id": "cli_..."} (and {"api_base": url}, default https://open.feishu.cn); {"rate_limit": N} caps the requests sent per minute (0 = no limit; default the platform''s documented limit: wecom and dingtalk 20, feishu 100, slack and slack_bot 60, webhook and email none).';

/*
 * Refuses, with a clear error, alert channels of an unknown kind; a url that
 * is not http(s) (smtp or smtps for kind email); a secret with control
 * characters; slack_bot without a channel or token; email without valid
 * from and to addresses, with an unknown options.tls, or with credentials
 * that are not {"user", "password"} or that would cross the network without
 * TLS; feishu app images without an app id and app secret.  Its messages
 * never repeat the url or secret.
 */
CREATE FUNCTION metric_anomaly.alert_channels_check_url()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    -- a bare address: RFC 5322 atext (and dots) @ letter-digit-hyphen labels
    address constant text :=
        '^[A-Za-z0-9.!#$%&''*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$';
    recipients jsonb;
    creds jsonb;
BEGIN
    IF NEW.name IS NULL OR NEW.name !~ '^[A-Za-z0-9_.-]{1,64}$' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_name',
            MESSAGE = 'alert channel name must be 1 to 64 letters, digits, dots, dashes or underscores',
            HINT = 'Choose a name such as ops-team.';
    END IF;
    IF NEW.kind IS NULL OR NEW.kind NOT IN ('webhook', 'slack', 'slack_bot', 'wecom', 'feishu', 'dingtalk', 'email') THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('alert channel "%s" has an unknown kind', NEW.name),
            HINT = 'Use one of webhook, slack, slack_bot, wecom, feishu, dingtalk, email.';
    END IF;
    IF NEW.kind = 'email' THEN
        IF NEW.url !~* '^smtps?://[^/?#@[:space:]]+(/[^/?#@[:space:]]*)?$' OR NEW.url ~ '[[:space:][:cntrl:]]' THEN
            RAISE EXCEPTION USING
                ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('url of alert channel "%s" must be an smtp or smtps URL', NEW.name),
                DETAIL = 'An email channel names its relay as smtp://host[:port] (STARTTLS) or smtps://host[:port], without credentials, path or query.',
                HINT = 'Use an address such as smtps://smtp.example.com:465 and put credentials in secret.';
        END IF;
    ELSIF NEW.url !~* '^https?://[^/?#@[:space:]]+' OR NEW.url ~ '[[:space:][:cntrl:]]' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('url of alert channel "%s" must be an http or https URL', NEW.name),
            DETAIL = 'Only the http and https schemes are accepted, without spaces or control characters.',
            HINT = 'Use an address such as https://hooks.example.com/path.';
    END IF;
    IF NEW.secret ~ '[[:cntrl:]]' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('secret of alert channel "%s" must not contain control characters', NEW.name),
            HINT = 'Paste the token or signing secret without line breaks.';
    END IF;
    IF NEW.kind = 'slack_bot' AND coalesce(NEW.options ->> 'channel', '') = '' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('alert channel "%s" of kind slack_bot needs options.channel', NEW.name),
            HINT = 'Set options to {"channel": "<channel id>"} and the bot token in secret.';
    END IF;
    IF NEW.kind = 'slack_bot' AND NEW.secret IS NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('alert channel "%s" of kind slack_bot needs a bot token in secret', NEW.name),
            HINT = 'Set secret to the xoxb- token of the Slack app.';
    END IF;
    -- secrets of several credentials are JSON objects of strings
    IF NEW.kind IN ('email', 'feishu') AND NEW.secret ~ '^\s*\{' THEN
        BEGIN
            creds := NEW.secret::jsonb;
        EXCEPTION WHEN invalid_text_representation THEN
            creds := NULL;
        END;
        IF NEW.secret ~ '\\u' OR creds IS NULL OR jsonb_typeof(creds) <> 'object'
           OR EXISTS (SELECT FROM jsonb_each(creds) e WHERE jsonb_typeof(e.value) <> 'string') THEN
            RAISE EXCEPTION USING
                ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('secret of alert channel "%s" must be a JSON object of strings', NEW.name),
                DETAIL = 'Non-ASCII characters are written as they are, not as \u escapes.',
                HINT = CASE NEW.kind WHEN 'email' THEN 'Use {"user": "...", "password": "..."}.'
                       ELSE 'Use {"app_secret": "..."} or {"app_secret": "...", "sign": "..."}.' END;
        END IF;
    END IF;
    IF NEW.kind = 'email' THEN
        IF jsonb_typeof(NEW.options -> 'from') IS DISTINCT FROM 'string'
           OR length(NEW.options ->> 'from') > 254 OR (NEW.options ->> 'from') !~ address THEN
            RAISE EXCEPTION USING
                ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('alert channel "%s" of kind email needs a valid sender address in options.from', NEW.name),
                DETAIL = 'An address is local@domain with no display name, quotes, comments or non-ASCII characters.',
                HINT = 'Set options.from to an address such as alerts@example.com.';
        END IF;
        recipients := CASE jsonb_typeof(NEW.options -> 'to')
                      WHEN 'string' THEN jsonb_build_array(NEW.options -> 'to')
                      WHEN 'array' THEN NEW.options -> 'to' END;
        IF recipients IS NULL OR jsonb_array_length(recipients) NOT BETWEEN 1 AND 50
           OR EXISTS (SELECT FROM jsonb_array_elements(recipients) r
                       WHERE jsonb_typeof(r) <> 'string' OR length(r #>> '{}') > 254
                          OR (r #>> '{}') !~ address) THEN
            RAISE EXCEPTION USING
                ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('alert channel "%s" of kind email needs 1 to 50 valid addresses in options.to', NEW.name),
                DETAIL = 'An address is local@domain with no display name, quotes, comments or non-ASCII characters.',
                HINT = 'Set options.to to an address or an array of addresses, such as ["ops@example.com"].';
        END IF;
        IF NEW.options ? 'tls' AND (jsonb_typeof(NEW.options -> 'tls') <> 'string'
                                    OR NEW.options ->> 'tls' NOT IN ('required', 'none')) THEN
            RAISE EXCEPTION USING
                ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('options.tls of alert channel "%s" must be "required" or "none"', NEW.name),
                HINT = 'Leave it out to require TLS; "none" is for a relay on this machine.';
        END IF;
        IF NEW.secret IS NOT NULL AND (creds IS NULL OR NOT creds ? 'user' OR NOT creds ? 'password'
           OR EXISTS (SELECT FROM jsonb_object_keys(creds) k WHERE k NOT IN ('user', 'password'))) THEN
            RAISE EXCEPTION USING
                ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('secret of alert channel "%s" of kind email must hold the user and password', NEW.name),
                HINT = 'Use {"user": "...", "password": "..."}, or NULL to send without AUTH.';
        END IF;
        IF NEW.secret IS NOT NULL AND NEW.options ->> 'tls' = 'none'
           AND NEW.url !~* '^smtps?://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]+)?/?$' THEN
            RAISE EXCEPTION USING
                ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('alert channel "%s" would send its password without TLS', NEW.name),
                DETAIL = 'options.tls "none" with credentials is accepted only for a relay on this machine.',
                HINT = 'Remove options.tls to require TLS, or use a local relay.';
        END IF;
    END IF;
    IF NEW.kind = 'feishu' AND (NEW.options ? 'app_id' OR creds IS NOT NULL) THEN
        IF jsonb_typeof(NEW.options -> 'app_id') IS DISTINCT FROM 'string'
           OR coalesce(NEW.options ->> 'app_id', '') = ''
           OR creds IS NULL OR coalesce(creds ->> 'app_secret', '') = ''
           OR EXISTS (SELECT FROM jsonb_object_keys(creds) k WHERE k NOT IN ('app_secret', 'sign')) THEN
            RAISE EXCEPTION USING
                ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('alert channel "%s" of kind feishu needs options.app_id and the app secret to send images', NEW.name),
                DETAIL = 'Images are sent through a Feishu app: its id in options.app_id, its secret in secret as {"app_secret": "..."}, with "sign" for a signing secret.',
                HINT = 'Set both, or neither (then secret is the signing secret alone).';
        END IF;
        IF NEW.options ? 'api_base' AND ((NEW.options ->> 'api_base') !~* '^https?://[^/?#@[:space:]]+/?$'
                                         OR jsonb_typeof(NEW.options -> 'api_base') <> 'string') THEN
            RAISE EXCEPTION USING
                ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('options.api_base of alert channel "%s" must be an http or https base URL', NEW.name),
                HINT = 'Leave it out for https://open.feishu.cn, or use https://open.larksuite.com.';
        END IF;
    END IF;
    RETURN NEW;
END
$fn$;

COMMENT ON FUNCTION metric_anomaly.alert_channels_check_url() IS
    'Trigger function refusing alert channels of an unknown kind, whose url is not http(s) (smtp or smtps for email), whose secret has control characters, of kind slack_bot without a channel or token, of kind email without valid from and to addresses or with credentials that are malformed or would be sent without TLS, or of kind feishu with half an app configuration; its messages never repeat the url or secret.';

CREATE TRIGGER alert_channels_check_url
    BEFORE INSERT OR UPDATE ON metric_anomaly.alert_channels
    FOR EACH ROW EXECUTE FUNCTION metric_anomaly.alert_channels_check_url();

-- Routing: a metric with rows here goes only to those channels; a metric
-- without rows goes to every enabled channel.
CREATE TABLE metric_anomaly.alert_routes (
    metric_name text NOT NULL,
    channel     text NOT NULL
                REFERENCES metric_anomaly.alert_channels (name)
                ON UPDATE CASCADE ON DELETE CASCADE,
    PRIMARY KEY (metric_name, channel)
);

COMMENT ON TABLE metric_anomaly.alert_routes IS
    'Routing of metrics to channels: a metric listed here alerts only the listed (enabled) channels; a metric not listed alerts every enabled channel.';

-- Static threshold rules, beside 3-sigma.
CREATE TABLE metric_anomaly.alert_rules (
    rule_name   text PRIMARY KEY
                CONSTRAINT alert_rules_rule_name_check
                CHECK (rule_name ~ '^[A-Za-z0-9_.-]{1,64}$'),
    metric_name text NOT NULL,
    above       double precision,
    below       double precision,
    for_minutes integer NOT NULL DEFAULT 1
                CONSTRAINT alert_rules_for_minutes_check
                CHECK (for_minutes BETWEEN 1 AND 10080),
    enabled     boolean NOT NULL DEFAULT true,
    CONSTRAINT alert_rules_bound_check CHECK (above IS NOT NULL OR below IS NOT NULL)
);

CREATE INDEX alert_rules_metric_idx ON metric_anomaly.alert_rules (metric_name);

COMMENT ON TABLE metric_anomaly.alert_rules IS
    'Static threshold rules: the metric fires when its value is above "above" or below "below" for for_minutes consecutive minutes, and resolves like a 3-sigma episode.';

-- Outbox.
CREATE TABLE metric_anomaly.alerts (
    id            bigserial PRIMARY KEY,
    metric_name   text NOT NULL,
    minute        timestamptz NOT NULL,
    value         double precision NOT NULL,
    context       jsonb,
    state         text NOT NULL
                  CONSTRAINT alerts_state_check CHECK (state IN ('firing', 'resolved')),
    source        text NOT NULL,
    episode_start timestamptz NOT NULL,
    summary       text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT alerts_episode_key UNIQUE (metric_name, source, episode_start, state)
);

CREATE INDEX alerts_minute_idx ON metric_anomaly.alerts (minute DESC);
CREATE INDEX alerts_created_at_idx ON metric_anomaly.alerts (created_at);

COMMENT ON TABLE metric_anomaly.alerts IS
    'Outbox of alerts: one firing row when an episode starts, one resolved row when it ends; written in the detection transaction together with pg_notify(''metric_anomaly'', json).  Deleted with their deliveries metric_anomaly.alert_retention after created_at, once every delivery is sent or dead.';
COMMENT ON COLUMN metric_anomaly.alerts.source IS
    '3-sigma, or threshold:<rule_name>.';
COMMENT ON COLUMN metric_anomaly.alerts.episode_start IS
    'First minute of the episode this alert belongs to.';

-- Episode state per series and source: survives restarts, so a restart never
-- repeats an alert.
CREATE TABLE metric_anomaly.alert_episodes (
    metric_name    text NOT NULL,
    source         text NOT NULL,
    firing         boolean NOT NULL DEFAULT false,
    muted          boolean NOT NULL DEFAULT false,
    episode_start  timestamptz,
    breach_streak  integer NOT NULL DEFAULT 0,
    ok_streak      integer NOT NULL DEFAULT 0,
    last_minute    timestamptz NOT NULL,
    last_fired_at  timestamptz,
    PRIMARY KEY (metric_name, source),
    recent_breaches bigint NOT NULL DEFAULT 0
);

COMMENT ON COLUMN metric_anomaly.alert_episodes.recent_breaches IS
    'Bit i set: the judged minute i steps back breached (for alert_after of alert_window).';

COMMENT ON TABLE metric_anomaly.alert_episodes IS
    'Alerting state of each series and source (3-sigma or a threshold rule): whether an episode is open, the streaks of breaching and normal minutes, the last minute seen and when it last fired (for the cooldown).';

CREATE TABLE metric_anomaly.deliveries (
    id              bigserial PRIMARY KEY,
    alert_id        bigint NOT NULL REFERENCES metric_anomaly.alerts (id) ON DELETE CASCADE,
    channel         text NOT NULL
                    REFERENCES metric_anomaly.alert_channels (name)
                    ON UPDATE CASCADE ON DELETE CASCADE,
    idempotency_key text NOT NULL,
    state           text NOT NULL DEFAULT 'pending'
                    CONSTRAINT deliveries_state_check
                    CHECK (state IN ('pending', 'sent', 'failed', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    last_attempt_at timestamptz,
    http_status     integer,
    last_error      text,
    sent_at         timestamptz,
    in_flight       boolean NOT NULL DEFAULT false,
    steps_done      integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    step_state      text,
    CONSTRAINT deliveries_alert_channel_key UNIQUE (alert_id, channel),
    CONSTRAINT deliveries_idempotency_key_key UNIQUE (idempotency_key)
);

CREATE INDEX deliveries_due_idx ON metric_anomaly.deliveries (next_attempt_at)
    WHERE state IN ('pending', 'failed');

COMMENT ON TABLE metric_anomaly.deliveries IS
    'One row per alert and routed channel: pending until first tried, failed while retried with backoff, sent, or dead (4xx, or attempts exhausted).  A claimed row has next_attempt_at pushed forward by a lease, so a crashed attempt is retried with the same idempotency_key.';
COMMENT ON COLUMN metric_anomaly.deliveries.idempotency_key IS
    'Sent as the Idempotency-Key header on every attempt; derived from the alert id and the channel.';
COMMENT ON COLUMN metric_anomaly.deliveries.steps_done IS
    'Requests of a multi-request delivery (WeCom markdown then image, Slack bot upload) already accepted; a retry sends only the rest.';
COMMENT ON COLUMN metric_anomaly.deliveries.step_state IS
    'What the accepted steps answered that later steps need (Slack bot: the file id and upload URL), so a retry resumes at the first step not accepted; NULL when nothing.';
COMMENT ON COLUMN metric_anomaly.deliveries.last_error IS
    'Last failure (at most 500 characters); never contains the URL or secret.';

CREATE VIEW metric_anomaly.delivery_status AS
SELECT d.id AS delivery_id,
       d.alert_id,
       a.metric_name,
       a.minute,
       a.state AS alert_state,
       a.source,
       d.channel,
       c.kind,
       d.state,
       d.attempts,
       d.next_attempt_at,
       d.last_attempt_at,
       d.http_status,
       d.last_error,
       d.sent_at,
       d.idempotency_key
  FROM metric_anomaly.deliveries d
  JOIN metric_anomaly.alerts a ON a.id = d.alert_id
  JOIN metric_anomaly.alert_channels c ON c.name = d.channel;

COMMENT ON VIEW metric_anomaly.delivery_status IS
    'Every delivery with its alert and channel kind (no URL, no secret): state, attempts, next attempt, last HTTP status and error.';

CREATE FUNCTION metric_anomaly.test_channel(name text)
RETURNS integer
LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'metric_anomaly_test_channel';

COMMENT ON FUNCTION metric_anomaly.test_channel(text) IS
    'Sends a test message to the channel from this session and returns the HTTP status (0 when no answer).  The network I/O runs in the caller''s transaction, because a SQL function cannot commit: call it outside long transactions; it holds no lock on alerting tables while it waits.';

CREATE FUNCTION metric_anomaly.evaluate_alerts(from_minute timestamptz, to_minute timestamptz)
RETURNS integer
LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'metric_anomaly_evaluate_alerts';

COMMENT ON FUNCTION metric_anomaly.evaluate_alerts(timestamptz, timestamptz) IS
    'Runs alerting (episodes, threshold rules, outbox, deliveries) over the stored verdicts of the minutes in [from_minute, to_minute), as detection does after each pass, and returns the number of alerts written; minutes alerting has already seen are skipped.';

CREATE FUNCTION metric_anomaly.start_delivery_worker()
RETURNS integer
LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'metric_anomaly_start_delivery_worker';

COMMENT ON FUNCTION metric_anomaly.start_delivery_worker() IS
    'Starts the delivery worker for the current database as a dynamic background worker and returns its pid, or returns the pid of the one already running; the launcher normally does this.';

REVOKE ALL ON metric_anomaly.alert_channels, metric_anomaly.alert_routes,
              metric_anomaly.alert_rules, metric_anomaly.alerts,
              metric_anomaly.alert_episodes, metric_anomaly.deliveries,
              metric_anomaly.delivery_status FROM PUBLIC;
REVOKE ALL ON FUNCTION metric_anomaly.test_channel(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION metric_anomaly.evaluate_alerts(timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION metric_anomaly.start_delivery_worker() FROM PUBLIC;
REVOKE ALL ON FUNCTION metric_anomaly.alert_channels_check_url() FROM PUBLIC;
-- Not ALL, for the reasons given above for the aggregation tables.
GRANT SELECT, INSERT, UPDATE, DELETE
   ON metric_anomaly.alert_channels, metric_anomaly.alert_routes,
      metric_anomaly.alert_rules, metric_anomaly.alerts,
      metric_anomaly.alert_episodes, metric_anomaly.deliveries TO metric_anomaly_admin;
GRANT SELECT ON metric_anomaly.delivery_status TO metric_anomaly_admin;
GRANT USAGE ON SEQUENCE metric_anomaly.alerts_id_seq,
                        metric_anomaly.deliveries_id_seq TO metric_anomaly_admin;
GRANT EXECUTE ON FUNCTION metric_anomaly.test_channel(text) TO metric_anomaly_admin;
GRANT EXECUTE ON FUNCTION metric_anomaly.evaluate_alerts(timestamptz, timestamptz) TO metric_anomaly_admin;
GRANT EXECUTE ON FUNCTION metric_anomaly.start_delivery_worker() TO metric_anomaly_admin;

SELECT pg_catalog.pg_extension_config_dump('metric_anomaly.alert_channels', '');
SELECT pg_catalog.pg_extension_config_dump('metric_anomaly.alert_routes', '');
SELECT pg_catalog.pg_extension_config_dump('metric_anomaly.alert_rules', '');

------------------------------------------------------------------------------
-- Security, dumps and upgrades (0.2.0)
--
-- pg_dump keeps the alert state with its sequences, so that a restored
-- database never repeats an alert (the episodes say which are already
-- firing, the outbox what was sent) nor reuses an alert id in an
-- idempotency key.
------------------------------------------------------------------------------
SELECT pg_catalog.pg_extension_config_dump('metric_anomaly.alerts', '');
SELECT pg_catalog.pg_extension_config_dump('metric_anomaly.alerts_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('metric_anomaly.alert_episodes', '');
SELECT pg_catalog.pg_extension_config_dump('metric_anomaly.deliveries', '');
SELECT pg_catalog.pg_extension_config_dump('metric_anomaly.deliveries_id_seq', '');

------------------------------------------------------------------------------
-- JWT verification and ingestion (jwt wing)
--
-- jwt_claims() verifies HS256/HS384/HS512 tokens against a secret given by
-- the caller.  record_event() verifies against the secrets of jwt_secrets,
-- which only metric_anomaly_admin reads: it is SECURITY DEFINER, so an
-- application allowed to call it records events with the token's client
-- metadata as dimensions and never sees a secret.
------------------------------------------------------------------------------
CREATE TABLE metric_anomaly.jwt_secrets (
    name       text PRIMARY KEY,
    secret     text NOT NULL,
    try_order  integer NOT NULL DEFAULT 0,
    enabled    boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);

COMMENT ON TABLE metric_anomaly.jwt_secrets IS
    'HMAC secrets record_event verifies tokens with, enabled ones tried in try_order then name (rotation: add the new secret, disable the old one once its tokens have expired); readable only by metric_anomaly_admin.';
COMMENT ON COLUMN metric_anomaly.jwt_secrets.secret IS
    'The shared secret as text (its UTF-8 bytes are the HMAC key), 1 to 4096 bytes.';

/*
 * Checks rows with messages that never contain the secret: a failed CHECK
 * or NOT NULL constraint would print the whole row ("Failing row contains
 * ...") in the error and the server log.  A BEFORE trigger runs first.
 */
CREATE FUNCTION metric_anomaly.jwt_secrets_check()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF NEW.name IS NULL OR NEW.name !~ '^[A-Za-z0-9_.-]{1,64}$' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_name',
            MESSAGE = 'JWT secret name must be 1 to 64 letters, digits, dots, dashes or underscores',
            HINT = 'Choose a name such as app-2026-01.';
    END IF;
    IF NEW.secret IS NULL OR octet_length(NEW.secret) NOT BETWEEN 1 AND 4096 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('JWT secret "%s" must be 1 to 4096 bytes', NEW.name);
    END IF;
    RETURN NEW;
END
$fn$;

COMMENT ON FUNCTION metric_anomaly.jwt_secrets_check() IS
    'Trigger function refusing JWT secrets with a bad name or a secret that is NULL, empty or over 4096 bytes; its messages never contain the secret.';

CREATE TRIGGER jwt_secrets_check
    BEFORE INSERT OR UPDATE ON metric_anomaly.jwt_secrets
    FOR EACH ROW EXECUTE FUNCTION metric_anomaly.jwt_secrets_check();

-- One row per skipped event (never an UPDATE of a shared counter row, so
-- concurrent writers never wait for each other); ingest_stats counts them.
CREATE TABLE metric_anomaly.ingest_skips (
    skipped_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    event_type text NOT NULL
               CONSTRAINT ingest_skips_event_type_check
               CHECK (pg_catalog.length(event_type) BETWEEN 1 AND 200),
    reason     text NOT NULL
               CONSTRAINT ingest_skips_reason_check CHECK (reason IN ('expired'))
);

COMMENT ON TABLE metric_anomaly.ingest_skips IS
    'One row per event that record_event skipped instead of recording (reason expired: the token had expired); delete old rows when the counts are no longer needed.';

CREATE VIEW metric_anomaly.ingest_stats AS
SELECT s.event_type,
       s.reason,
       pg_catalog.count(*) AS skipped,
       pg_catalog.min(s.skipped_at) AS first_skipped_at,
       pg_catalog.max(s.skipped_at) AS last_skipped_at
  FROM metric_anomaly.ingest_skips s
 GROUP BY s.event_type, s.reason;

COMMENT ON VIEW metric_anomaly.ingest_stats IS
    'Events record_event skipped, per event type and reason (expired token), with the first and last time.';

CREATE FUNCTION metric_anomaly.jwt_claims(token text, secret text,
                                          verify_exp boolean DEFAULT true)
RETURNS jsonb
LANGUAGE c STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'metric_anomaly_jwt_claims';

COMMENT ON FUNCTION metric_anomaly.jwt_claims(text, text, boolean) IS
    'Claims of an HS256, HS384 or HS512 JWT once its signature matches secret (constant-time comparison) and it is within exp (unless verify_exp is false) and nbf, with metric_anomaly.jwt_leeway of clock skew; any other algorithm, a token over 8192 bytes and every failure are errors with distinct SQLSTATEs.';

CREATE FUNCTION metric_anomaly.record_event(event_type text, payload jsonb,
                                            token text DEFAULT NULL)
RETURNS bigint
LANGUAGE c VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'metric_anomaly_record_event';

COMMENT ON FUNCTION metric_anomaly.record_event(text, jsonb, text) IS
    'Inserts an event into business_events and returns its id; with a token (verified with the enabled secrets of jwt_secrets) the c_meta claim''s app_v, os, os_v, net and device are added to the payload, "unknown" when missing or malformed; an expired token skips the event (counted in ingest_stats) and returns NULL; any other invalid token is an error.';

REVOKE ALL ON metric_anomaly.jwt_secrets, metric_anomaly.ingest_skips,
              metric_anomaly.ingest_stats FROM PUBLIC;
REVOKE ALL ON FUNCTION metric_anomaly.record_event(text, jsonb, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION metric_anomaly.jwt_secrets_check() FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE
    ON metric_anomaly.jwt_secrets, metric_anomaly.ingest_skips TO metric_anomaly_admin;
GRANT SELECT ON metric_anomaly.ingest_stats TO PUBLIC, metric_anomaly_admin;
GRANT EXECUTE ON FUNCTION metric_anomaly.record_event(text, jsonb, text) TO metric_anomaly_admin;

SELECT pg_catalog.pg_extension_config_dump('metric_anomaly.jwt_secrets', '');
SELECT pg_catalog.pg_extension_config_dump('metric_anomaly.ingest_skips', '');

------------------------------------------------------------------------------
-- Detection: replay and backtest
------------------------------------------------------------------------------
CREATE FUNCTION metric_anomaly.detect_series(ts timestamptz[], value double precision[],
                                             settings jsonb DEFAULT '{}')
RETURNS TABLE (n integer, ts timestamptz, value double precision,
               expected double precision, lower double precision,
               upper double precision, score double precision,
               is_anomaly boolean, alert text)
LANGUAGE c STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
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

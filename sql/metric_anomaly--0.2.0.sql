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
    direction   text CHECK (direction IN ('both', 'up', 'down')),
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
                  CONSTRAINT alerts_state_check CHECK (state IN ('firing', 'resolved', 'report')),
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
-- Metrics beyond counts (issue 13): definitions, series with mergeable
-- state (count, sum, min, max, within-threshold count, quantile sketch),
-- bad payloads, duplicates, series caps.  With no definitions nothing here
-- is used and every event type keeps its implicit per-minute count.
------------------------------------------------------------------------------

-- Quantile sketches (src/sketch.c: DDSketch, relative error at most 1%).
CREATE FUNCTION metric_anomaly.sketch_add(internal, double precision)
RETURNS internal
LANGUAGE c CALLED ON NULL INPUT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'metric_anomaly_sketch_add';
CREATE FUNCTION metric_anomaly.sketch_union_add(internal, bytea)
RETURNS internal
LANGUAGE c CALLED ON NULL INPUT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'metric_anomaly_sketch_union_add';
CREATE FUNCTION metric_anomaly.sketch_final(internal)
RETURNS bytea
LANGUAGE c PARALLEL SAFE
AS 'MODULE_PATHNAME', 'metric_anomaly_sketch_final';
CREATE FUNCTION metric_anomaly.sketch_merge(a bytea, b bytea)
RETURNS bytea
LANGUAGE c IMMUTABLE CALLED ON NULL INPUT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'metric_anomaly_sketch_merge';
CREATE FUNCTION metric_anomaly.sketch_quantile(sketch bytea, q double precision)
RETURNS double precision
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'metric_anomaly_sketch_quantile';

CREATE AGGREGATE metric_anomaly.sketch(value double precision) (
    SFUNC = metric_anomaly.sketch_add,
    STYPE = internal,
    FINALFUNC = metric_anomaly.sketch_final,
    PARALLEL = SAFE
);
CREATE AGGREGATE metric_anomaly.sketch_union(sketch bytea) (
    SFUNC = metric_anomaly.sketch_union_add,
    STYPE = internal,
    FINALFUNC = metric_anomaly.sketch_final,
    PARALLEL = SAFE
);

COMMENT ON FUNCTION metric_anomaly.sketch_add(internal, double precision) IS
    'Transition function of sketch.';
COMMENT ON FUNCTION metric_anomaly.sketch_union_add(internal, bytea) IS
    'Transition function of sketch_union.';
COMMENT ON FUNCTION metric_anomaly.sketch_final(internal) IS
    'Final function of sketch and sketch_union: the serialised sketch, NULL when empty.';
COMMENT ON FUNCTION metric_anomaly.sketch_merge(bytea, bytea) IS
    'The sketch of the values of both sketches (exact: bins add); a NULL side counts as empty.';
COMMENT ON FUNCTION metric_anomaly.sketch_quantile(bytea, double precision) IS
    'The q-quantile (0 to 1) of a sketch as percentile_disc defines it, within 1% relative error; NULL for an empty sketch.';
COMMENT ON AGGREGATE metric_anomaly.sketch(double precision) IS
    'DDSketch of the values (alpha 1%, at most 4096 bins; NULLs skipped, NaN and infinities refused) as bytea.';
COMMENT ON AGGREGATE metric_anomaly.sketch_union(bytea) IS
    'Merges sketches (NULLs skipped) into one.';

CREATE TABLE metric_anomaly.metric_definitions (
    metric_name   text PRIMARY KEY,
    event_types   text[],
    aggregate     text NOT NULL DEFAULT 'count',
    quantile      double precision,
    threshold     double precision,
    value_path    text[],
    dimensions    text[] NOT NULL DEFAULT '{}',
    filter        jsonb,
    resolution    interval NOT NULL DEFAULT '1 minute',
    max_series    integer NOT NULL DEFAULT 1000,
    business_key  text[],
    dedup_horizon interval NOT NULL DEFAULT '1 day',
    numerator     text,
    denominator   text,
    detection     jsonb,
    enabled       boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT pg_catalog.now()
);

COMMENT ON TABLE metric_anomaly.metric_definitions IS
    'Metrics computed from event payloads: aggregate count, sum, avg, min, max, quantile (with quantile q), rate (share of values at or below threshold) of the value at value_path in events of event_types matching filter, split into series by the dimension keys, per resolution (1, 5, 15 minutes or 1 hour); ratio (numerator / denominator) and backlog (running numerator minus denominator) derive from two other definitions.  Validated by a trigger.';
COMMENT ON COLUMN metric_anomaly.metric_definitions.value_path IS
    'Path of the value in the payload: {latency_ms} for a top-level key, {timing,total} for a nested one.  Needed by every aggregate but count.';
COMMENT ON COLUMN metric_anomaly.metric_definitions.business_key IS
    'Path of a business key (e.g. {order_id}): an event whose key the metric already counted is skipped as a duplicate, as long as the key is remembered: until the metric counts a keyed event dated dedup_horizon after the first one.';
COMMENT ON COLUMN metric_anomaly.metric_definitions.max_series IS
    'Most series (distinct dimension values) of the metric; events of further ones go to the series {"_other": true}.';
COMMENT ON COLUMN metric_anomaly.metric_definitions.detection IS
    'Detection and alerting settings of every series of the metric, as a JSON object with the keys detect_series() takes (method, sigma, sensitivity, window_size, min_points, direction, seasonality, alert_after, alert_window); NULL or a missing key takes the default, and a row of metric_anomaly.metrics under a series name overrides its non-NULL columns for that series (metric_anomaly.series_settings()).';

CREATE FUNCTION metric_anomaly.check_detection_settings(settings jsonb)
RETURNS void
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'metric_anomaly_check_detection_settings';

COMMENT ON FUNCTION metric_anomaly.check_detection_settings(jsonb) IS
    'Raises the error detect_series() raises for these settings (an unknown key, a value of the wrong type or out of bounds); returns nothing for valid ones.';

/*
 * Refuses a definition that cannot be computed, saying what is wrong and
 * how to write it.  The shape of a definition with stored points cannot
 * change (the stored state would mean something else).
 */
CREATE FUNCTION metric_anomaly.metric_definitions_check()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    base record;
BEGIN
    IF NEW.metric_name IS NULL OR NEW.metric_name !~ '^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_name',
            MESSAGE = 'metric name must be 1 to 64 letters, digits, dots, colons, dashes or underscores, starting with a letter or underscore',
            DETAIL = 'Series of the metric are named metric{dimension=value,...}, so the name may not contain braces or commas.',
            HINT = 'Choose a name such as api_latency_p95.';
    END IF;
    IF TG_OP = 'INSERT' AND EXISTS (SELECT 1 FROM metric_anomaly.series s WHERE s.metric_name = NEW.metric_name) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'duplicate_object',
            MESSAGE = format('metric "%s" already exists as the count of an event type', NEW.metric_name),
            DETAIL = 'Every event type is counted per minute under its own name.',
            HINT = 'Choose another name for the definition.';
    END IF;
    IF NEW.aggregate IS NULL OR NEW.aggregate NOT IN ('count', 'sum', 'avg', 'min', 'max', 'quantile', 'rate', 'ratio', 'backlog') THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('metric "%s" has an unknown aggregate', NEW.metric_name),
            HINT = 'Use one of count, sum, avg, min, max, quantile, rate, ratio, backlog.';
    END IF;
    IF NEW.resolution IS NULL OR NEW.resolution NOT IN (interval '1 minute', interval '5 minutes', interval '15 minutes', interval '1 hour') THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('metric "%s" has an unsupported resolution', NEW.metric_name),
            HINT = 'Use 1 minute, 5 minutes, 15 minutes or 1 hour.';
    END IF;
    IF NEW.aggregate IN ('ratio', 'backlog') THEN
        IF NEW.event_types IS NOT NULL OR NEW.value_path IS NOT NULL OR NEW.filter IS NOT NULL
           OR NEW.business_key IS NOT NULL OR NEW.quantile IS NOT NULL OR NEW.threshold IS NOT NULL THEN
            RAISE EXCEPTION USING
                ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('metric "%s" of aggregate %s derives from two metrics and reads no events', NEW.metric_name, NEW.aggregate),
                DETAIL = 'event_types, value_path, filter, business_key, quantile and threshold belong to the metrics it derives from.',
                HINT = 'Set only numerator and denominator (for a backlog: entered and left), dimensions and resolution.';
        END IF;
        FOR base IN
            SELECT n.which, d.metric_name, d.aggregate, d.dimensions, d.resolution
              FROM (VALUES ('numerator', NEW.numerator), ('denominator', NEW.denominator)) AS n(which, name)
              LEFT JOIN metric_anomaly.metric_definitions d ON d.metric_name = n.name
             ORDER BY n.which DESC
        LOOP
            IF base.metric_name IS NULL THEN
                RAISE EXCEPTION USING
                    ERRCODE = 'undefined_object',
                    MESSAGE = format('%s of metric "%s" is not a defined metric', base.which, NEW.metric_name),
                    HINT = 'Define the metric it derives from first, then this one.';
            END IF;
            IF base.aggregate NOT IN ('count', 'sum') OR (NEW.aggregate = 'backlog' AND base.aggregate <> 'count') THEN
                RAISE EXCEPTION USING
                    ERRCODE = 'invalid_parameter_value',
                    MESSAGE = format('%s "%s" of metric "%s" must be a count%s', base.which, base.metric_name, NEW.metric_name,
                                     CASE WHEN NEW.aggregate = 'ratio' THEN ' or a sum' ELSE '' END),
                    DETAIL = 'Counts and sums add up across buckets and dimensions; other aggregates do not.',
                    HINT = 'Derive from count (or, for a ratio, sum) metrics.';
            END IF;
            IF base.dimensions IS DISTINCT FROM NEW.dimensions OR base.resolution IS DISTINCT FROM NEW.resolution THEN
                RAISE EXCEPTION USING
                    ERRCODE = 'invalid_parameter_value',
                    MESSAGE = format('%s "%s" of metric "%s" has other dimensions or another resolution', base.which, base.metric_name, NEW.metric_name),
                    DETAIL = 'A derived metric combines the series of its two metrics with the same dimension values and bucket.',
                    HINT = format('Give metric "%s" the dimensions %s and the resolution %s.', NEW.metric_name, base.dimensions, base.resolution);
            END IF;
        END LOOP;
    ELSE
        IF NEW.numerator IS NOT NULL OR NEW.denominator IS NOT NULL THEN
            RAISE EXCEPTION USING
                ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('metric "%s" of aggregate %s takes no numerator or denominator', NEW.metric_name, NEW.aggregate),
                HINT = 'Use aggregate ratio or backlog to derive a metric from two others.';
        END IF;
        IF NEW.event_types IS NULL OR pg_catalog.cardinality(NEW.event_types) = 0
           OR EXISTS (SELECT 1 FROM pg_catalog.unnest(NEW.event_types) t
                       WHERE t IS NULL OR pg_catalog.length(t) NOT BETWEEN 1 AND 200) THEN
            RAISE EXCEPTION USING
                ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('metric "%s" needs the event types it reads', NEW.metric_name),
                DETAIL = 'event_types is a non-empty array of event types of 1 to 200 characters.',
                HINT = 'Set event_types to, for example, ''{api_call}''.';
        END IF;
        IF NEW.aggregate <> 'count' AND (NEW.value_path IS NULL OR pg_catalog.cardinality(NEW.value_path) = 0
                                         OR array_position(NEW.value_path, NULL) IS NOT NULL) THEN
            RAISE EXCEPTION USING
                ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('metric "%s" of aggregate %s needs value_path', NEW.metric_name, NEW.aggregate),
                DETAIL = 'value_path is the path of the number in the payload.',
                HINT = 'Set value_path to ''{latency_ms}'' for a top-level key or ''{timing,total}'' for a nested one.';
        END IF;
        IF (NEW.aggregate = 'quantile') <> (NEW.quantile IS NOT NULL) OR NOT (NEW.quantile > 0 AND NEW.quantile < 1) THEN
            RAISE EXCEPTION USING
                ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('metric "%s": quantile must be set, between 0 and 1 exclusive, exactly when the aggregate is quantile', NEW.metric_name),
                HINT = 'For a p95 set aggregate to quantile and quantile to 0.95.';
        END IF;
        IF (NEW.aggregate = 'rate') <> (NEW.threshold IS NOT NULL) OR NEW.threshold IN ('NaN', 'Infinity', '-Infinity') THEN
            RAISE EXCEPTION USING
                ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('metric "%s": threshold must be set, and finite, exactly when the aggregate is rate', NEW.metric_name),
                DETAIL = 'A rate is the share of values at or below the threshold.',
                HINT = 'For the share of pushes within 500 ms set aggregate to rate and threshold to 500.';
        END IF;
        IF NEW.filter IS NOT NULL AND pg_catalog.jsonb_typeof(NEW.filter) <> 'object' THEN
            RAISE EXCEPTION USING
                ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('filter of metric "%s" must be a JSON object', NEW.metric_name),
                DETAIL = 'An event is read when its payload contains the filter (jsonb @>).',
                HINT = 'Use, for example, ''{"status": "ok"}''.';
        END IF;
        IF NEW.business_key IS NOT NULL AND (pg_catalog.cardinality(NEW.business_key) = 0
                                             OR array_position(NEW.business_key, NULL) IS NOT NULL) THEN
            RAISE EXCEPTION USING
                ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('business_key of metric "%s" must be a non-empty path', NEW.metric_name),
                HINT = 'Use, for example, ''{order_id}''.';
        END IF;
    END IF;
    IF pg_catalog.cardinality(NEW.dimensions) > 8
       OR EXISTS (SELECT 1 FROM pg_catalog.unnest(NEW.dimensions) k
                   WHERE k IS NULL OR k !~ '^[A-Za-z0-9_.-]{1,64}$')
       OR (SELECT pg_catalog.count(DISTINCT k) FROM pg_catalog.unnest(NEW.dimensions) k) <> pg_catalog.cardinality(NEW.dimensions) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('dimensions of metric "%s" must be at most 8 distinct payload keys', NEW.metric_name),
            DETAIL = 'A key is 1 to 64 letters, digits, dots, dashes or underscores.',
            HINT = 'Use, for example, ''{node}'' or ''{app_v,endpoint}''.';
    END IF;
    IF NEW.max_series IS NULL OR NEW.max_series NOT BETWEEN 1 AND 100000 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('max_series of metric "%s" must be between 1 and 100000', NEW.metric_name),
            HINT = 'Events of series beyond the cap are counted in the series {"_other": true}.';
    END IF;
    IF NEW.dedup_horizon IS NULL OR NEW.dedup_horizon NOT BETWEEN interval '1 minute' AND interval '30 days' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('dedup_horizon of metric "%s" must be between 1 minute and 30 days', NEW.metric_name),
            HINT = 'Business keys are remembered until an event dated this much later is counted.';
    END IF;
    -- The worker's own parser, so what is accepted here is what it applies.
    IF NEW.detection IS NOT NULL THEN
        DECLARE
            problem text;
            advice text;
        BEGIN
            PERFORM metric_anomaly.check_detection_settings(NEW.detection);
        EXCEPTION WHEN invalid_parameter_value THEN
            GET STACKED DIAGNOSTICS problem = MESSAGE_TEXT, advice = PG_EXCEPTION_HINT;
            RAISE EXCEPTION USING
                ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('detection of metric "%s": %s', NEW.metric_name, problem),
                DETAIL = 'detection takes the settings detect_series() takes; every series of the metric is judged with them.',
                HINT = advice;
        END;
    END IF;
    IF TG_OP = 'UPDATE'
       AND (NEW.metric_name, NEW.event_types, NEW.aggregate, NEW.quantile, NEW.threshold, NEW.value_path,
            NEW.dimensions, NEW.filter, NEW.resolution, NEW.business_key, NEW.numerator, NEW.denominator)
           IS DISTINCT FROM
           (OLD.metric_name, OLD.event_types, OLD.aggregate, OLD.quantile, OLD.threshold, OLD.value_path,
            OLD.dimensions, OLD.filter, OLD.resolution, OLD.business_key, OLD.numerator, OLD.denominator)
       AND EXISTS (SELECT 1 FROM metric_anomaly.metric_series ms
                     JOIN metric_anomaly.metric_points p ON p.series_name = ms.series_name
                    WHERE ms.metric_name = OLD.metric_name) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'feature_not_supported',
            MESSAGE = format('metric "%s" has stored points, so only enabled, max_series, dedup_horizon and detection can change', OLD.metric_name),
            DETAIL = 'The stored state was computed under the old definition.',
            HINT = 'Define a metric under a new name (it backfills from the retained events with metric_anomaly.backfill_metric()), or delete this one first.';
    END IF;
    RETURN NEW;
END
$fn$;

COMMENT ON FUNCTION metric_anomaly.metric_definitions_check() IS
    'Trigger function validating metric_definitions: name, aggregate and its parameters, value path, dimensions, filter, resolution, caps, derived metrics, detection settings; refuses to reshape a metric with stored points.';

CREATE TRIGGER metric_definitions_check
    BEFORE INSERT OR UPDATE ON metric_anomaly.metric_definitions
    FOR EACH ROW EXECUTE FUNCTION metric_anomaly.metric_definitions_check();

/*
 * A definition's series, points and counters go with it (or with its old
 * name).  A trigger rather than foreign keys: the fold writes those tables
 * row by row, and a foreign key costs a lookup per row (measured: a third
 * of the fold's time).
 */
CREATE FUNCTION metric_anomaly.metric_definitions_forget()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.metric_name = OLD.metric_name THEN
        RETURN NULL;
    END IF;
    DELETE FROM metric_anomaly.metric_points p USING metric_anomaly.metric_series ms
     WHERE ms.metric_name = OLD.metric_name AND p.series_name = ms.series_name;
    DELETE FROM metric_anomaly.metric_series s WHERE s.metric_name = OLD.metric_name;
    DELETE FROM metric_anomaly.metric_skipped_events k WHERE k.metric_name = OLD.metric_name;
    DELETE FROM metric_anomaly.metric_seen_keys k WHERE k.metric_name = OLD.metric_name;
    RETURN NULL;
END
$fn$;

COMMENT ON FUNCTION metric_anomaly.metric_definitions_forget() IS
    'Trigger function deleting the series, points, skipped-event counters and business keys of a deleted (or renamed) metric definition.';

CREATE TRIGGER metric_definitions_forget
    AFTER DELETE OR UPDATE OF metric_name ON metric_anomaly.metric_definitions
    FOR EACH ROW EXECUTE FUNCTION metric_anomaly.metric_definitions_forget();

REVOKE ALL ON FUNCTION metric_anomaly.metric_definitions_forget() FROM PUBLIC;

-- Series of each definition (the cap counts them).
CREATE TABLE metric_anomaly.metric_series (
    metric_name text NOT NULL,
    dimensions  jsonb NOT NULL,
    series_name text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (metric_name, dimensions)
);

COMMENT ON TABLE metric_anomaly.metric_series IS
    'Series of each metric definition: the dimension values (strings of at most 100 characters, null when the payload lacks the key) and the series name under which aggregated_metrics holds its values, e.g. api_latency{app_v=1.2,endpoint=/login}; {"_other": true} is the overflow series.';

-- Zero-fill scans the series behind the present through this index, so
-- resting definition series (filled_until 'infinity': no point for
-- metric_anomaly.fill_horizon, src/metric_fill.c) cost it nothing.
CREATE INDEX series_filled_until_idx ON metric_anomaly.series (filled_until);

COMMENT ON COLUMN metric_anomaly.series.filled_until IS
    'Minutes up to this one exist as rows; infinity for a definition series at rest (no point for metric_anomaly.fill_horizon): no zero rows until its next event.';

-- One point per (metric, dimension values, bucket), with mergeable state.
-- Keyed by (series_name, bucket): a series name stands for one (metric,
-- dimension values) in metric_series (both are unique there), and a text
-- key costs the fold's writes half of what (metric_name, dimensions,
-- bucket) did, whose jsonb comparisons detoast and walk both values: the
-- 44,643 points of 1,000,000 events (test/bench/metrics.sh) merged in 515
-- and 626 ms against 943 and 1,012 ms.  Readers go through metric_series
-- to the series' names and their points' range of buckets: no index by
-- metric_name, one fewer for every point written (a second index on
-- (metric_name, bucket) cost another 90 to 240 ms there).
CREATE TABLE metric_anomaly.metric_points (
    metric_name text NOT NULL,
    dimensions  jsonb NOT NULL,
    bucket      timestamptz NOT NULL,
    series_name text NOT NULL,
    count       bigint NOT NULL,
    sum         double precision,
    min         double precision,
    max         double precision,
    within      bigint NOT NULL DEFAULT 0,
    sketch      bytea,
    folded_xid  xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
    PRIMARY KEY (series_name, bucket)
);

COMMENT ON TABLE metric_anomaly.metric_points IS
    'Mergeable state of each series point: count, sum, min, max of the values, within (values at or below the threshold, for rates) and a quantile sketch (for quantiles); merged by quantile() and aggregate_value() over any range and subset of dimensions.';
COMMENT ON COLUMN metric_anomaly.metric_points.folded_xid IS
    'The transaction that last merged events into the point (derived metrics recompute the points it touched).';

-- Events a definition skipped, by reason.
CREATE TABLE metric_anomaly.metric_skipped_events (
    metric_name   text NOT NULL,
    reason        text NOT NULL
                  CONSTRAINT metric_skipped_events_reason_check
                  CHECK (reason IN ('missing', 'non_numeric', 'wrong_type', 'duplicate')),
    events        bigint NOT NULL,
    last_event_id bigint NOT NULL,
    last_seen_at  timestamptz NOT NULL,
    PRIMARY KEY (metric_name, reason)
);

COMMENT ON TABLE metric_anomaly.metric_skipped_events IS
    'Events of a metric that were not counted: missing value (no key, JSON null), non_numeric (a string that is no number, or a number beyond +-1e300 or below 1e-300 in magnitude), wrong_type (object, array, boolean), duplicate (business key already counted); the id of the last one.';

-- Business keys already counted, per metric.
CREATE TABLE metric_anomaly.metric_seen_keys (
    metric_name     text NOT NULL,
    business_key    text NOT NULL,
    event_id        bigint NOT NULL,
    event_timestamp timestamptz NOT NULL,
    PRIMARY KEY (metric_name, business_key)
);

CREATE INDEX metric_seen_keys_timestamp_idx ON metric_anomaly.metric_seen_keys (metric_name, event_timestamp);

COMMENT ON TABLE metric_anomaly.metric_seen_keys IS
    'Business keys counted per metric, with the event that carried them first; forgotten once the metric has counted a keyed event dated dedup_horizon after that one.';

CREATE VIEW metric_anomaly.metric_status AS
SELECT d.metric_name,
       d.aggregate,
       d.max_series,
       (SELECT pg_catalog.count(*) FROM metric_anomaly.metric_series s
         WHERE s.metric_name = d.metric_name AND s.dimensions <> '{"_other": true}') AS series,
       coalesce((SELECT pg_catalog.sum(p.count) FROM metric_anomaly.metric_points p
                  WHERE p.series_name = d.metric_name || '{other}' AND p.dimensions = '{"_other": true}'), 0)::bigint AS overflow_events,
       coalesce((SELECT pg_catalog.sum(k.events) FROM metric_anomaly.metric_skipped_events k
                  WHERE k.metric_name = d.metric_name AND k.reason <> 'duplicate'), 0)::bigint AS bad_payloads,
       coalesce((SELECT pg_catalog.sum(k.events) FROM metric_anomaly.metric_skipped_events k
                  WHERE k.metric_name = d.metric_name AND k.reason = 'duplicate'), 0)::bigint AS duplicates
  FROM metric_anomaly.metric_definitions d;

COMMENT ON VIEW metric_anomaly.metric_status IS
    'Per metric definition: its series (without the overflow series) and cap, events counted in the overflow series {"_other": true}, bad payloads and duplicates skipped (by reason in metric_skipped_events).';

CREATE FUNCTION metric_anomaly.payload_dimensions(payload jsonb, keys text[])
RETURNS jsonb
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'metric_anomaly_payload_dimensions';

COMMENT ON FUNCTION metric_anomaly.payload_dimensions(jsonb, text[]) IS
    'The dimension values of a payload as the fold keys series: {key: value as ->> gives it, cut to 100 characters, or null when missing}.';

/*
 * Folds the events of a range of a round into the metric definitions, in
 * the caller's transaction: the events visible in round and not in folded,
 * with (xid, id) after (lo_xid, lo_id) (from the position's xmin when
 * lo_xid is NULL) and up to (hi_xid, hi_id).  The aggregation pass does
 * the same fold in C during its own scan of each batch (src/metrics.c);
 * this entry point reads the range itself, for backfill_metric().  Bad
 * payloads and duplicates are counted, never raised.  With only_metric,
 * folds into that definition alone, enabled or not.  Returns the number of
 * series values written.
 */
CREATE FUNCTION metric_anomaly.fold_definitions(folded pg_snapshot, round pg_snapshot,
                                                lo_xid xid8, lo_id bigint,
                                                hi_xid xid8, hi_id bigint,
                                                only_metric text DEFAULT NULL)
RETURNS bigint
LANGUAGE c VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'metric_anomaly_fold_definitions';

COMMENT ON FUNCTION metric_anomaly.fold_definitions(pg_snapshot, pg_snapshot, xid8, bigint, xid8, bigint, text) IS
    'Internal to backfill_metric(): folds a range of events into the metric definitions (or one of them) in the caller''s transaction, as the aggregation pass folds each batch; returns the number of series values written.';

/*
 * Recomputes the derived metrics over the points this transaction merged
 * into their base metrics: a ratio at each touched bucket, a backlog (the
 * running sum of entered minus left per dimension values) from the first
 * touched bucket of each series on, so a late event moves every later
 * backlog value (the cost grows with how late it is).
 */
CREATE FUNCTION metric_anomaly.fold_derived()
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM metric_anomaly.metric_definitions d
                    WHERE d.enabled AND d.aggregate IN ('ratio', 'backlog')) THEN
        RETURN;
    END IF;

    -- Ratios: numerator value / denominator value at each touched bucket.
    INSERT INTO metric_anomaly.aggregated_metrics AS a
           (metric_name, metric_timestamp, metric_value, sample_count)
    SELECT t.rname, t.bucket, num.metric_value / den.metric_value, den.sample_count
      FROM (SELECT DISTINCT d.metric_name AS ratio, d.numerator, d.denominator, p.bucket,
                   d.metric_name || pg_catalog.substr(p.series_name, pg_catalog.length(p.metric_name) + 1) AS rname,
                   pg_catalog.substr(p.series_name, pg_catalog.length(p.metric_name) + 1) AS suffix
              FROM metric_anomaly.metric_definitions d
              JOIN metric_anomaly.metric_series ms ON ms.metric_name IN (d.numerator, d.denominator)
              JOIN metric_anomaly.metric_points p ON p.series_name = ms.series_name
             WHERE d.enabled AND d.aggregate = 'ratio'
               AND p.folded_xid = pg_catalog.pg_current_xact_id()) t
      JOIN metric_anomaly.aggregated_metrics num
        ON num.metric_name = t.numerator || t.suffix AND num.metric_timestamp = t.bucket
      JOIN metric_anomaly.aggregated_metrics den
        ON den.metric_name = t.denominator || t.suffix AND den.metric_timestamp = t.bucket
     WHERE den.metric_value <> 0
        ON CONFLICT (metric_name, metric_timestamp) DO UPDATE
       SET metric_value = excluded.metric_value, sample_count = excluded.sample_count,
           needs_eval = true;

    -- Backlogs: from the first touched bucket of each series on.
    WITH touched AS (
        SELECT d.metric_name AS backlog, d.numerator, d.denominator, p.dimensions,
               pg_catalog.substr(p.series_name, pg_catalog.length(p.metric_name) + 1) AS suffix,
               pg_catalog.min(p.bucket) AS since
          FROM metric_anomaly.metric_definitions d
          JOIN metric_anomaly.metric_series ms ON ms.metric_name IN (d.numerator, d.denominator)
          JOIN metric_anomaly.metric_points p ON p.series_name = ms.series_name
         WHERE d.enabled AND d.aggregate = 'backlog'
           AND p.folded_xid = pg_catalog.pg_current_xact_id()
         GROUP BY 1, 2, 3, 4, 5),
    steps AS (
        SELECT t.backlog, t.suffix, p.bucket, t.since,
               pg_catalog.sum(CASE WHEN p.metric_name = t.numerator THEN p.count ELSE -p.count END) AS delta,
               pg_catalog.sum(p.count) AS n
          FROM touched t
          JOIN metric_anomaly.metric_series ms
            ON ms.metric_name IN (t.numerator, t.denominator) AND ms.dimensions = t.dimensions
          JOIN metric_anomaly.metric_points p ON p.series_name = ms.series_name
         GROUP BY 1, 2, 3, 4),
    running AS (
        SELECT s.backlog || s.suffix AS name, s.bucket, s.since, s.n,
               pg_catalog.sum(s.delta) OVER (PARTITION BY s.backlog, s.suffix ORDER BY s.bucket) AS level
          FROM steps s)
    INSERT INTO metric_anomaly.aggregated_metrics AS a
           (metric_name, metric_timestamp, metric_value, sample_count)
    SELECT r.name, r.bucket, r.level, r.n FROM running r WHERE r.bucket >= r.since
        ON CONFLICT (metric_name, metric_timestamp) DO UPDATE
       SET metric_value = excluded.metric_value, sample_count = excluded.sample_count,
           needs_eval = a.needs_eval OR a.metric_value IS DISTINCT FROM excluded.metric_value;
END
$fn$;

COMMENT ON FUNCTION metric_anomaly.fold_derived() IS
    'Internal to the aggregation pass: recomputes ratio and backlog series over the base points the current transaction merged.';

/*
 * The stored points of metric whose dimensions contain dims, with buckets
 * starting in [since, until); an unknown metric is an error.
 */
CREATE FUNCTION metric_anomaly.quantile(metric text, dimensions jsonb,
                                        since timestamptz, until timestamptz,
                                        q double precision)
RETURNS double precision
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    def metric_anomaly.metric_definitions;
    result double precision;
BEGIN
    SELECT * INTO def FROM metric_anomaly.metric_definitions d WHERE d.metric_name = quantile.metric;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'undefined_object',
            MESSAGE = format('metric "%s" is not defined', metric),
            HINT = 'See metric_anomaly.metric_definitions.';
    END IF;
    IF def.aggregate <> 'quantile' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('metric "%s" keeps no quantile sketch', metric),
            DETAIL = format('Its aggregate is %s.', def.aggregate),
            HINT = 'Ask metric_anomaly.aggregate_value(), or define a metric with aggregate quantile.';
    END IF;
    IF NOT (q >= 0 AND q <= 1) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'quantile must be between 0 and 1',
            HINT = 'Use 0.95 for the 95th percentile.';
    END IF;
    SELECT metric_anomaly.sketch_quantile(metric_anomaly.sketch_union(p.sketch), q) INTO result
      FROM metric_anomaly.metric_series ms
      JOIN metric_anomaly.metric_points p ON p.series_name = ms.series_name
     WHERE ms.metric_name = quantile.metric AND ms.dimensions @> quantile.dimensions
       AND p.bucket >= since AND p.bucket < until;
    RETURN result;
END
$fn$;

COMMENT ON FUNCTION metric_anomaly.quantile(text, jsonb, timestamptz, timestamptz, double precision) IS
    'The q-quantile of a quantile metric over the buckets starting in [since, until) of every series whose dimensions contain the given ones (''{}'' for all), merged from the stored sketches (never the raw events): within 1% of percentile_disc over the same events.  NULL when no point matches.';

CREATE FUNCTION metric_anomaly.aggregate_value(metric text, dimensions jsonb,
                                               since timestamptz, until timestamptz,
                                               agg text)
RETURNS double precision
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    def metric_anomaly.metric_definitions;
    result double precision;
    num double precision;
    den double precision;
BEGIN
    SELECT * INTO def FROM metric_anomaly.metric_definitions d WHERE d.metric_name = aggregate_value.metric;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'undefined_object',
            MESSAGE = format('metric "%s" is not defined', metric),
            HINT = 'See metric_anomaly.metric_definitions.';
    END IF;
    IF def.aggregate IN ('ratio', 'backlog') THEN
        IF agg <> def.aggregate THEN
            RAISE EXCEPTION USING
                ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('metric "%s" is a %s and answers only agg %s', metric, def.aggregate, def.aggregate),
                DETAIL = 'A ratio is the numerator''s value over the denominator''s; a backlog is entered minus left over the range (with since = ''-infinity'', the backlog at until).';
        END IF;
        num := metric_anomaly.aggregate_value(def.numerator, dimensions, since, until,
                   (SELECT d.aggregate FROM metric_anomaly.metric_definitions d WHERE d.metric_name = def.numerator));
        den := metric_anomaly.aggregate_value(def.denominator, dimensions, since, until,
                   (SELECT d.aggregate FROM metric_anomaly.metric_definitions d WHERE d.metric_name = def.denominator));
        IF def.aggregate = 'backlog' THEN
            RETURN coalesce(num, 0) - coalesce(den, 0);
        END IF;
        RETURN num / NULLIF(den, 0);
    END IF;
    IF agg NOT IN ('count', 'sum', 'avg', 'min', 'max', 'rate') THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('unknown aggregate "%s"', agg),
            HINT = 'Use count, sum, avg, min, max or rate; for quantiles call metric_anomaly.quantile().';
    END IF;
    IF agg <> 'count' AND def.aggregate = 'count' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('metric "%s" counts events and keeps no values', metric),
            HINT = 'Ask for agg count.';
    END IF;
    IF agg = 'rate' AND def.aggregate <> 'rate' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('metric "%s" has no threshold, so no rate', metric),
            HINT = 'Define a metric with aggregate rate and a threshold.';
    END IF;
    SELECT CASE agg
                WHEN 'count' THEN pg_catalog.sum(p.count)::double precision
                WHEN 'sum' THEN pg_catalog.sum(p.sum)
                WHEN 'avg' THEN pg_catalog.sum(p.sum) / NULLIF(pg_catalog.sum(p.count), 0)
                WHEN 'min' THEN pg_catalog.min(p.min)
                WHEN 'max' THEN pg_catalog.max(p.max)
                WHEN 'rate' THEN pg_catalog.sum(p.within)::double precision / NULLIF(pg_catalog.sum(p.count), 0)
           END INTO result
      FROM metric_anomaly.metric_series ms
      JOIN metric_anomaly.metric_points p ON p.series_name = ms.series_name
     WHERE ms.metric_name = aggregate_value.metric AND ms.dimensions @> aggregate_value.dimensions
       AND p.bucket >= since AND p.bucket < until;
    IF agg = 'count' THEN
        RETURN coalesce(result, 0);
    END IF;
    RETURN result;
END
$fn$;

COMMENT ON FUNCTION metric_anomaly.aggregate_value(text, jsonb, timestamptz, timestamptz, text) IS
    'count, sum, avg, min, max or rate of a metric over the buckets starting in [since, until) of every series whose dimensions contain the given ones, merged from the stored points (never the raw events); for a ratio metric agg ratio, for a backlog agg backlog (entered minus left over the range).';

/*
 * Backfills a ratio or backlog (enabled or not) from the stored points of
 * its numerator and denominator, as fold_derived() computes the points a
 * transaction touched, over every bucket at once: a ratio at each bucket
 * either has a point in, where both have a value and the denominator's is
 * not 0; a backlog at each such bucket, the running sum of entered minus
 * left per dimension values from the first bucket on.  Rewriting a value
 * with itself is harmless, so it may run again; both must be enabled (a
 * disabled one has no points yet, or no new ones).  Called by
 * backfill_metric() under the pass lock; enables the metric.
 */
CREATE FUNCTION metric_anomaly.backfill_derived(metric text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    def metric_anomaly.metric_definitions;
    disabled text;
    points bigint;
BEGIN
    SELECT * INTO STRICT def FROM metric_anomaly.metric_definitions d
     WHERE d.metric_name = backfill_derived.metric AND d.aggregate IN ('ratio', 'backlog');
    SELECT d.metric_name INTO disabled
      FROM metric_anomaly.metric_definitions d
     WHERE d.metric_name IN (def.numerator, def.denominator) AND NOT d.enabled
     ORDER BY d.metric_name = def.denominator
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = format('metric "%s" derives from "%s", which is disabled', def.metric_name, disabled),
            DETAIL = format('A %s is computed from the stored points of its numerator and denominator.', def.aggregate),
            HINT = format('Backfill it first (SELECT metric_anomaly.backfill_metric(%L)), or enable it.', disabled);
    END IF;
    IF def.aggregate = 'ratio' THEN
        INSERT INTO metric_anomaly.aggregated_metrics AS a
               (metric_name, metric_timestamp, metric_value, sample_count)
        SELECT def.metric_name || t.suffix, t.bucket, num.metric_value / den.metric_value, den.sample_count
          FROM (SELECT DISTINCT p.bucket,
                       pg_catalog.substr(p.series_name, pg_catalog.length(p.metric_name) + 1) AS suffix
                  FROM metric_anomaly.metric_series ms
                  JOIN metric_anomaly.metric_points p ON p.series_name = ms.series_name
                 WHERE ms.metric_name IN (def.numerator, def.denominator)) t
          JOIN metric_anomaly.aggregated_metrics num
            ON num.metric_name = def.numerator || t.suffix AND num.metric_timestamp = t.bucket
          JOIN metric_anomaly.aggregated_metrics den
            ON den.metric_name = def.denominator || t.suffix AND den.metric_timestamp = t.bucket
         WHERE den.metric_value <> 0
            ON CONFLICT (metric_name, metric_timestamp) DO UPDATE
           SET metric_value = excluded.metric_value, sample_count = excluded.sample_count,
               needs_eval = a.needs_eval OR a.metric_value IS DISTINCT FROM excluded.metric_value;
    ELSE
        WITH steps AS (
            SELECT p.dimensions,
                   pg_catalog.substr(p.series_name, pg_catalog.length(p.metric_name) + 1) AS suffix,
                   p.bucket,
                   pg_catalog.sum(CASE WHEN p.metric_name = def.numerator THEN p.count ELSE -p.count END) AS delta,
                   pg_catalog.sum(p.count) AS n
              FROM metric_anomaly.metric_series ms
              JOIN metric_anomaly.metric_points p ON p.series_name = ms.series_name
             WHERE ms.metric_name IN (def.numerator, def.denominator)
             GROUP BY 1, 2, 3)
        INSERT INTO metric_anomaly.aggregated_metrics AS a
               (metric_name, metric_timestamp, metric_value, sample_count)
        SELECT def.metric_name || s.suffix, s.bucket,
               pg_catalog.sum(s.delta) OVER (PARTITION BY s.dimensions ORDER BY s.bucket), s.n
          FROM steps s
            ON CONFLICT (metric_name, metric_timestamp) DO UPDATE
           SET metric_value = excluded.metric_value, sample_count = excluded.sample_count,
               needs_eval = a.needs_eval OR a.metric_value IS DISTINCT FROM excluded.metric_value;
    END IF;
    GET DIAGNOSTICS points = ROW_COUNT;
    UPDATE metric_anomaly.metric_definitions d SET enabled = true
     WHERE d.metric_name = def.metric_name AND NOT d.enabled;
    RETURN points;
END
$fn$;

COMMENT ON FUNCTION metric_anomaly.backfill_derived(text) IS
    'Internal to backfill_metric(): writes every series point of a ratio or backlog from the stored points of its numerator and denominator and enables it; returns the points written.';

/*
 * The detection settings a series is judged with, as jsonb for
 * ma_detect_settings_apply(): the detection of its metric definition, then
 * the non-NULL columns of its row in metric_anomaly.metrics (so a row
 * overrides single keys, and its NULL columns keep the definition's).
 * A series belongs to a definition when it is one of the definition's
 * series (for a ratio or backlog: its numerator has the series with the
 * same dimensions), not merely because its name starts like the
 * definition's: an event type named "orders{eu}" keeps its own settings
 * beside a definition "orders".  Two index probes per series.
 */
CREATE FUNCTION metric_anomaly.series_settings(series_name text)
RETURNS jsonb
LANGUAGE sql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT coalesce((SELECT d.detection
                   FROM metric_anomaly.metric_definitions d
                  WHERE d.metric_name = pg_catalog.split_part(series_settings.series_name, '{', 1)
                    AND EXISTS (SELECT 1 FROM metric_anomaly.metric_series s
                                 WHERE s.series_name = coalesce(d.numerator, d.metric_name)
                                       || pg_catalog.substr(series_settings.series_name, pg_catalog.length(d.metric_name) + 1)
                                   AND s.metric_name = coalesce(d.numerator, d.metric_name))), '{}')
       || coalesce((SELECT pg_catalog.jsonb_strip_nulls(pg_catalog.to_jsonb(c) - 'metric_name' - 'enabled' - 'description')
                      FROM metric_anomaly.metrics c
                     WHERE c.metric_name = series_settings.series_name), '{}')
$$;

COMMENT ON FUNCTION metric_anomaly.series_settings(text) IS
    'The detection and alerting settings the worker, evaluate_alerts() and backtest() judge a series with: its metric definition''s detection, overridden key by key by the non-NULL columns of its metric_anomaly.metrics row; missing keys take the defaults.';

GRANT EXECUTE ON FUNCTION metric_anomaly.series_settings(text) TO PUBLIC;

/*
 * Backfills a disabled definition from the events still retained that the
 * position has folded, and enables it, in one transaction under the pass
 * lock: events folded before are counted here, every later one by the
 * passes, so each exactly once.  Refused while a round is under way (its
 * first batches ran without the definition).  A ratio or backlog reads no
 * events: backfill_derived() writes it from the stored points.
 */
CREATE FUNCTION metric_anomaly.backfill_metric(metric text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    def metric_anomaly.metric_definitions;
    pos metric_anomaly.worker_state;
    points bigint;
BEGIN
    -- the lock of aggregation passes (pass.c, "ma_pass")
    PERFORM pg_catalog.pg_advisory_xact_lock(7881685759151010560);
    SELECT * INTO def FROM metric_anomaly.metric_definitions d
     WHERE d.metric_name = backfill_metric.metric FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'undefined_object',
            MESSAGE = format('metric "%s" is not defined', metric),
            HINT = 'See metric_anomaly.metric_definitions.';
    END IF;
    IF def.aggregate IN ('ratio', 'backlog') THEN
        RETURN metric_anomaly.backfill_derived(def.metric_name);
    END IF;
    IF def.enabled THEN
        RAISE EXCEPTION USING
            ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = format('metric "%s" cannot be backfilled', metric),
            DETAIL = 'It is enabled, so passes may already have folded events into it.',
            HINT = 'Insert the definition with enabled = false, then call backfill_metric(), which enables it.';
    END IF;
    SELECT * INTO pos FROM metric_anomaly.worker_state FOR UPDATE;
    IF pos.round_snapshot IS NOT NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = 'an aggregation round is under way',
            DETAIL = 'Its first batches were folded without this definition.',
            HINT = 'Call the function again once the pass has ended (worker_state.round_snapshot is NULL).';
    END IF;
    points := metric_anomaly.fold_definitions('1:1:'::pg_snapshot, pos.folded_snapshot, NULL, NULL,
                                              pg_catalog.pg_snapshot_xmax(pos.folded_snapshot),
                                              9223372036854775807, metric);
    UPDATE metric_anomaly.metric_definitions d SET enabled = true
     WHERE d.metric_name = backfill_metric.metric;
    RETURN points;
END
$fn$;

COMMENT ON FUNCTION metric_anomaly.backfill_metric(text) IS
    'Folds the retained events that passes have already folded into a new, disabled definition, then enables it (one transaction, under the pass lock); a ratio or backlog (enabled or not) is written from the stored points of its numerator and denominator instead.  Returns the series points written.  Events purged by metric_anomaly.event_retention cannot be backfilled.';

REVOKE ALL ON metric_anomaly.metric_definitions, metric_anomaly.metric_series,
              metric_anomaly.metric_points, metric_anomaly.metric_skipped_events,
              metric_anomaly.metric_seen_keys, metric_anomaly.metric_status FROM PUBLIC;
REVOKE ALL ON FUNCTION metric_anomaly.metric_definitions_check() FROM PUBLIC;
REVOKE ALL ON FUNCTION metric_anomaly.fold_definitions(pg_snapshot, pg_snapshot, xid8, bigint, xid8, bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION metric_anomaly.backfill_metric(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION metric_anomaly.backfill_derived(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION metric_anomaly.fold_derived() FROM PUBLIC;
-- The read side is public, like aggregated_metrics.
GRANT SELECT ON metric_anomaly.metric_definitions, metric_anomaly.metric_series,
                metric_anomaly.metric_points, metric_anomaly.metric_skipped_events,
                metric_anomaly.metric_status TO PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE
   ON metric_anomaly.metric_definitions, metric_anomaly.metric_series,
      metric_anomaly.metric_points, metric_anomaly.metric_skipped_events,
      metric_anomaly.metric_seen_keys TO metric_anomaly_admin;
GRANT EXECUTE ON FUNCTION metric_anomaly.fold_definitions(pg_snapshot, pg_snapshot, xid8, bigint, xid8, bigint, text),
                          metric_anomaly.fold_derived(),
                          metric_anomaly.backfill_metric(text),
                          metric_anomaly.backfill_derived(text) TO metric_anomaly_admin;

SELECT pg_catalog.pg_extension_config_dump('metric_anomaly.metric_definitions', '');
SELECT pg_catalog.pg_extension_config_dump('metric_anomaly.metric_series', '');
SELECT pg_catalog.pg_extension_config_dump('metric_anomaly.metric_points', '');
SELECT pg_catalog.pg_extension_config_dump('metric_anomaly.metric_skipped_events', '');
SELECT pg_catalog.pg_extension_config_dump('metric_anomaly.metric_seen_keys', '');

/*
 * The series name of a metric's dimension values: metric{k=v,...} as the
 * fold names it (for a ratio or backlog, from its numerator's series).
 */
CREATE FUNCTION metric_anomaly.series_name(metric text, dimensions jsonb)
RETURNS text
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    def metric_anomaly.metric_definitions;
    base text;
    found_name text;
BEGIN
    SELECT * INTO def FROM metric_anomaly.metric_definitions d WHERE d.metric_name = series_name.metric;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'undefined_object',
            MESSAGE = format('metric "%s" is not defined', metric),
            HINT = 'See metric_anomaly.metric_definitions.';
    END IF;
    base := CASE WHEN def.aggregate IN ('ratio', 'backlog') THEN def.numerator ELSE def.metric_name END;
    SELECT def.metric_name || pg_catalog.substr(s.series_name, pg_catalog.length(base) + 1) INTO found_name
      FROM metric_anomaly.metric_series s
     WHERE s.metric_name = base AND s.dimensions = series_name.dimensions;
    IF found_name IS NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'undefined_object',
            MESSAGE = format('metric "%s" has no series with dimensions %s', metric, dimensions),
            DETAIL = format('Its dimensions are %s; a series exists once an event of it is folded.', def.dimensions),
            HINT = 'See metric_anomaly.metric_series for the series of each metric.';
    END IF;
    RETURN found_name;
END
$fn$;

COMMENT ON FUNCTION metric_anomaly.series_name(text, jsonb) IS
    'The name under which aggregated_metrics, detection, alerts and charts know the series of a metric with exactly these dimension values, e.g. push_p95{node=a}.';

CREATE FUNCTION metric_anomaly.render_metric_chart(
    metric_name text,
    dimensions jsonb,
    since timestamptz,
    until timestamptz,
    width integer DEFAULT 1200,
    height integer DEFAULT 600)
RETURNS bytea
LANGUAGE sql STABLE STRICT PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $$
SELECT metric_anomaly.render_metric_chart(
           metric_anomaly.series_name(render_metric_chart.metric_name, render_metric_chart.dimensions),
           render_metric_chart.since, render_metric_chart.until,
           render_metric_chart.width, render_metric_chart.height)
$$;

COMMENT ON FUNCTION metric_anomaly.render_metric_chart(text, jsonb, timestamptz, timestamptz, integer, integer) IS
    'PNG chart of the series of a defined metric with exactly these dimension values (''{}'' for a metric without dimensions), as render_metric_chart(series name, since, until, width, height) draws it; since and until are required, so calls of the older signature stay unambiguous.';

GRANT EXECUTE ON FUNCTION metric_anomaly.series_name(text, jsonb) TO PUBLIC;

------------------------------------------------------------------------------
-- Heatmaps (reports wing)
------------------------------------------------------------------------------
CREATE FUNCTION metric_anomaly.heatmap_accum(internal, text, text, double precision, jsonb)
RETURNS internal
LANGUAGE c CALLED ON NULL INPUT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'metric_anomaly_heatmap_accum';
CREATE FUNCTION metric_anomaly.heatmap_accum(internal, text, text, double precision, boolean, jsonb)
RETURNS internal
LANGUAGE c CALLED ON NULL INPUT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'metric_anomaly_heatmap_accum';
CREATE FUNCTION metric_anomaly.heatmap_sample_accum(internal, text, text, double precision, double precision, jsonb)
RETURNS internal
LANGUAGE c CALLED ON NULL INPUT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'metric_anomaly_heatmap_sample_accum';
CREATE FUNCTION metric_anomaly.heatmap_final(internal)
RETURNS bytea
LANGUAGE c PARALLEL SAFE
AS 'MODULE_PATHNAME', 'metric_anomaly_heatmap_final';

COMMENT ON FUNCTION metric_anomaly.heatmap_accum(internal, text, text, double precision, jsonb) IS
    'Transition function of heatmap.';
COMMENT ON FUNCTION metric_anomaly.heatmap_accum(internal, text, text, double precision, boolean, jsonb) IS
    'Transition function of heatmap.';
COMMENT ON FUNCTION metric_anomaly.heatmap_sample_accum(internal, text, text, double precision, double precision, jsonb) IS
    'Transition function of heatmap from raw samples.';
COMMENT ON FUNCTION metric_anomaly.heatmap_final(internal) IS
    'Final function of heatmap: draws the collected cells as a PNG.';

CREATE AGGREGATE metric_anomaly.heatmap(row_value text, column_value text, cell double precision, options jsonb) (
    SFUNC = metric_anomaly.heatmap_accum,
    STYPE = internal,
    FINALFUNC = metric_anomaly.heatmap_final
);
CREATE AGGREGATE metric_anomaly.heatmap(row_value text, column_value text, cell double precision,
                                        outlined boolean, options jsonb) (
    SFUNC = metric_anomaly.heatmap_accum,
    STYPE = internal,
    FINALFUNC = metric_anomaly.heatmap_final
);

CREATE AGGREGATE metric_anomaly.heatmap(row_value text, column_value text, sample double precision,
                                        quantile double precision, options jsonb) (
    SFUNC = metric_anomaly.heatmap_sample_accum,
    STYPE = internal,
    FINALFUNC = metric_anomaly.heatmap_final
);

COMMENT ON AGGREGATE metric_anomaly.heatmap(text, text, double precision, jsonb) IS
    'PNG heatmap of (row, column, value) rows, one row per cell: rows and columns sorted, at most 50 of each, labels of at most 64 characters (NULL is "unknown"), a NULL value an empty cell; yellow-orange-red scale with a colour bar, each value written in a colour readable on its cell.  Options: title, x_label, y_label, value_label, width, height (100 to 4000).  No rows give NULL.';
COMMENT ON AGGREGATE metric_anomaly.heatmap(text, text, double precision, boolean, jsonb) IS
    'heatmap with a flag per cell: cells whose flag is true are outlined (render_heatmap outlines series that are anomalous now).';
COMMENT ON AGGREGATE metric_anomaly.heatmap(text, text, double precision, double precision, jsonb) IS
    'heatmap of raw samples, one row per sample: each cell the quantile (0 to 1, the same in every row) of its samples, exactly as percentile_cont computes it; NULL, NaN and infinite samples are skipped; at most 10000000 samples.  Options as the other forms''.';

/*
 * The heatmap of a metric definition over [since, until): rows and columns
 * are the values of two of its dimensions, each cell the metric merged over
 * every series with those two values (a quantile from the merged sketches,
 * counts and sums added, an average as sum over count).  A cell is outlined
 * when one of its series is anomalous in its newest evaluated minute.  The
 * title is "<metric> <what> by <row> and <column>" unless one is given (a
 * report's, with its totals).  A NULL argument other than the title gives
 * NULL, as if the function were strict.
 */
CREATE FUNCTION metric_anomaly.render_heatmap(
    metric_name text, row_dimension text, column_dimension text,
    since timestamptz DEFAULT pg_catalog.now() OPERATOR(pg_catalog.-) interval '15 minutes',
    until timestamptz DEFAULT pg_catalog.now(),
    width integer DEFAULT 1200, height integer DEFAULT 600, title text DEFAULT NULL)
RETURNS bytea
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    def metric_anomaly.metric_definitions;
    what text;
    png bytea;
BEGIN
    IF metric_name IS NULL OR row_dimension IS NULL OR column_dimension IS NULL
       OR since IS NULL OR until IS NULL OR width IS NULL OR height IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT * INTO def FROM metric_anomaly.metric_definitions d
     WHERE d.metric_name = render_heatmap.metric_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'undefined_object',
            MESSAGE = format('metric "%s" is not defined', render_heatmap.metric_name),
            HINT = 'See metric_anomaly.metric_definitions.';
    END IF;
    IF def.aggregate IN ('ratio', 'backlog') THEN
        RAISE EXCEPTION USING
            ERRCODE = 'feature_not_supported',
            MESSAGE = format('metric "%s" is a %s, which render_heatmap does not draw', def.metric_name, def.aggregate),
            HINT = 'Draw its numerator or denominator, or use the heatmap aggregate over metric_anomaly.aggregate_value().';
    END IF;
    IF NOT (row_dimension = ANY (def.dimensions)) OR NOT (column_dimension = ANY (def.dimensions)) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('metric "%s" has no dimension "%s"', def.metric_name,
                             CASE WHEN row_dimension = ANY (def.dimensions) THEN column_dimension ELSE row_dimension END),
            DETAIL = format('Its dimensions are %s.', pg_catalog.array_to_string(def.dimensions, ', ')),
            HINT = 'Name two of the dimensions of the definition.';
    END IF;
    IF row_dimension = column_dimension THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'render_heatmap needs two different dimensions',
            HINT = 'Pass one dimension for the rows and another for the columns.';
    END IF;
    IF NOT (since < until) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'since must be before until',
            DETAIL = format('The range given was %s to %s.', since, until);
    END IF;
    what := CASE def.aggregate
                WHEN 'quantile' THEN 'p' || pg_catalog.rtrim(pg_catalog.rtrim((def.quantile * 100)::numeric(10, 4)::text, '0'), '.')
                ELSE def.aggregate END;

    WITH cells AS (
        SELECT p.dimensions ->> row_dimension AS r, p.dimensions ->> column_dimension AS c,
               CASE def.aggregate
                   WHEN 'quantile' THEN metric_anomaly.sketch_quantile(metric_anomaly.sketch_union(p.sketch), def.quantile)
                   WHEN 'count' THEN pg_catalog.sum(p.count)::double precision
                   WHEN 'sum' THEN pg_catalog.sum(p.sum)
                   WHEN 'avg' THEN pg_catalog.sum(p.sum) / NULLIF(pg_catalog.sum(p.count), 0)
                   WHEN 'min' THEN pg_catalog.min(p.min)
                   WHEN 'max' THEN pg_catalog.max(p.max)
                   WHEN 'rate' THEN pg_catalog.sum(p.within)::double precision / NULLIF(pg_catalog.sum(p.count), 0)
               END AS v,
               pg_catalog.array_agg(DISTINCT p.series_name) AS series
          FROM metric_anomaly.metric_series ms
          JOIN metric_anomaly.metric_points p ON p.series_name = ms.series_name
         WHERE ms.metric_name = def.metric_name
           AND p.bucket >= since AND p.bucket < until
         GROUP BY 1, 2)
    SELECT metric_anomaly.heatmap(cells.r, cells.c, cells.v,
               EXISTS (SELECT 1
                         FROM pg_catalog.unnest(cells.series) AS s(name),
                              LATERAL (SELECT a.is_anomaly FROM metric_anomaly.aggregated_metrics a
                                        WHERE a.metric_name = s.name AND NOT a.needs_eval
                                        ORDER BY a.metric_timestamp DESC LIMIT 1) latest
                        WHERE latest.is_anomaly),
               pg_catalog.jsonb_build_object(
                   'title', coalesce(render_heatmap.title,
                                     format('%s %s by %s and %s', def.metric_name, what, row_dimension, column_dimension)),
                   'x_label', column_dimension, 'y_label', row_dimension,
                   'value_label', what || ' ' || def.metric_name,
                   'width', width, 'height', height))
      INTO png
      FROM cells;
    RETURN png;
END
$fn$;

COMMENT ON FUNCTION metric_anomaly.render_heatmap(text, text, text, timestamptz, timestamptz, integer, integer, text) IS
    'PNG heatmap of a metric definition over the buckets starting in [since, until): one cell per value of row_dimension and column_dimension, the metric merged from the stored series state (quantiles from the sketches), cells of series anomalous now outlined; NULL when the range holds no point (or an argument but title is NULL).  The title defaults to "<metric> <quantile or aggregate> by <row> and <column>".  Limits as the heatmap aggregate''s.';

------------------------------------------------------------------------------
-- Scheduled reports (reports wing)
------------------------------------------------------------------------------
CREATE TABLE metric_anomaly.reports (
    name        text PRIMARY KEY
                CONSTRAINT reports_name_check CHECK (pg_catalog.length(name) BETWEEN 1 AND 200),
    kind        text NOT NULL
                CONSTRAINT reports_kind_check CHECK (kind IN ('metric_chart', 'line_chart', 'heatmap')),
    metrics     text[] NOT NULL,
    right_axis  text[] NOT NULL DEFAULT '{}',
    dimensions  text[] NOT NULL DEFAULT '{}',
    range       interval NOT NULL DEFAULT '1 hour'
                CONSTRAINT reports_range_check CHECK (range > interval '0' AND range <= interval '31 days'),
    title       text,
    channels    text[] NOT NULL DEFAULT '{}',
    run_every   interval NOT NULL DEFAULT '5 minutes'
                CONSTRAINT reports_run_every_check CHECK (run_every >= interval '10 seconds' AND run_every <= interval '7 days'),
    min_samples bigint NOT NULL DEFAULT 0
                CONSTRAINT reports_min_samples_check CHECK (min_samples >= 0),
    keep_for    interval NOT NULL DEFAULT '7 days'
                CONSTRAINT reports_keep_for_check CHECK (keep_for >= interval '0'),
    width       integer NOT NULL DEFAULT 1200
                CONSTRAINT reports_width_check CHECK (width BETWEEN 100 AND 4000),
    height      integer NOT NULL DEFAULT 600
                CONSTRAINT reports_height_check CHECK (height BETWEEN 100 AND 4000),
    enabled     boolean NOT NULL DEFAULT true,
    last_run_at timestamptz,
    last_status text,
    last_error  text,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT reports_shape_check CHECK (
        CASE kind
            WHEN 'metric_chart' THEN pg_catalog.cardinality(metrics) = 1 AND pg_catalog.cardinality(right_axis) = 0
            WHEN 'line_chart' THEN pg_catalog.cardinality(metrics) BETWEEN 1 AND 16 AND right_axis OPERATOR(pg_catalog.<@) metrics
            ELSE pg_catalog.cardinality(metrics) = 1 AND pg_catalog.cardinality(dimensions) = 2
                 AND pg_catalog.cardinality(right_axis) = 0
        END)
);

COMMENT ON TABLE metric_anomaly.reports IS
    'Charts the worker renders on a schedule and delivers through the alert outbox (an alerts row of state report, one delivery per channel): metric_chart (render_metric_chart of metrics[1]), line_chart (the series of metrics, those in right_axis on the right axis dashed, the others solid with markers) or heatmap (render_heatmap of metric definition metrics[1] by dimensions[1] x dimensions[2]); over the range ending at the run''s slot, the title with the totals of the range on the chart of every kind and in the message.  Runs at every multiple of run_every on the wall clock (since the Unix epoch, UTC); a report that was due several times while the worker was stopped runs once.  Below min_samples the run is skipped and recorded.';
COMMENT ON COLUMN metric_anomaly.reports.metrics IS
    'Series names of aggregated_metrics (metric_chart, line_chart), or the metric definition (heatmap).';
COMMENT ON COLUMN metric_anomaly.reports.title IS
    'Title of the chart (of every kind) and the message, the report''s name when NULL; the totals of the range (per series, or the samples of a heatmap) are appended, e.g. "Orders (totals: orders 120, amount 6030)".';
COMMENT ON COLUMN metric_anomaly.reports.channels IS
    'Names of alert_channels the report goes to; a name that is not a channel, or a disabled channel, gets nothing.';
COMMENT ON COLUMN metric_anomaly.reports.keep_for IS
    'How long rendered PNGs are kept in report_runs (the newest always is).';
COMMENT ON COLUMN metric_anomaly.reports.last_run_at IS
    'Slot (scheduled time) of the last run, whatever its outcome.';
COMMENT ON COLUMN metric_anomaly.reports.last_status IS
    'rendered, skipped or failed.';

CREATE TABLE metric_anomaly.report_runs (
    id          bigserial PRIMARY KEY,
    report_name text NOT NULL
                REFERENCES metric_anomaly.reports (name) ON UPDATE CASCADE ON DELETE CASCADE,
    slot        timestamptz NOT NULL,
    status      text NOT NULL
                CONSTRAINT report_runs_status_check CHECK (status IN ('rendered', 'skipped', 'failed')),
    samples     bigint,
    title       text,
    png         bytea,
    error       text,
    alert_id    bigint,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT report_runs_slot_key UNIQUE (report_name, slot)
);

CREATE INDEX report_runs_alert_idx ON metric_anomaly.report_runs (alert_id);

COMMENT ON TABLE metric_anomaly.report_runs IS
    'One row per run of a report: rendered (png, and alert_id, the outbox row delivering it), skipped (fewer samples than min_samples) or failed (error).  Rows older than the report''s keep_for are deleted, except the newest rendered one.';

/*
 * render_metric_chart with the title given instead of the series name: a
 * report's, with the totals of its range.
 */
CREATE FUNCTION metric_anomaly.render_metric_chart(
    metric_name text, since timestamptz, until timestamptz, width integer, height integer, title text)
RETURNS bytea
LANGUAGE c STABLE STRICT PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'metric_anomaly_render_metric_chart';

COMMENT ON FUNCTION metric_anomaly.render_metric_chart(text, timestamptz, timestamptz, integer, integer, text) IS
    'render_metric_chart(metric_name, since, until, width, height) titled title instead of the series name (scheduled reports put their totals there); every argument is required.';

/*
 * Runs every enabled report due at as_of: one whose last slot is before
 * the newest multiple of run_every at or before as_of.  Only that newest
 * slot runs, so a report due several times while the worker was stopped
 * runs once.  Each report runs in a subtransaction of its own: one that
 * fails records its error and the others go on.  Reports another session
 * is running are skipped (SKIP LOCKED).  Returns the runs recorded.
 */
CREATE FUNCTION metric_anomaly.run_due_reports(as_of timestamptz DEFAULT pg_catalog.now())
RETURNS integer
LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    r metric_anomaly.reports;
    slot timestamptz;
    since timestamptz;
    samples bigint;
    totals text;
    full_title text;
    png bytea;
    run_id bigint;
    new_alert bigint;
    right_present text[];
    runs integer := 0;
    secs double precision;
BEGIN
    FOR r IN
        SELECT * FROM metric_anomaly.reports rp
         WHERE rp.enabled
           AND (rp.last_run_at IS NULL OR rp.last_run_at OPERATOR(pg_catalog.<)
                pg_catalog.to_timestamp(pg_catalog.floor(pg_catalog.date_part('epoch', as_of)
                    / pg_catalog.date_part('epoch', rp.run_every)) * pg_catalog.date_part('epoch', rp.run_every)))
         ORDER BY rp.name
           FOR UPDATE SKIP LOCKED
    LOOP
        secs := pg_catalog.date_part('epoch', r.run_every);
        slot := pg_catalog.to_timestamp(pg_catalog.floor(pg_catalog.date_part('epoch', as_of) / secs) * secs);
        since := slot OPERATOR(pg_catalog.-) r.range;
        run_id := NULL;
        BEGIN
            IF r.kind = 'heatmap' THEN
                SELECT coalesce(pg_catalog.sum(p.count), 0) INTO samples
                  FROM metric_anomaly.metric_series ms
                  JOIN metric_anomaly.metric_points p ON p.series_name = ms.series_name
                 WHERE ms.metric_name = r.metrics[1] AND p.bucket >= since AND p.bucket < slot;
                totals := format('%s samples', samples);
            ELSE
                SELECT coalesce(pg_catalog.sum(a.sample_count), 0) INTO samples
                  FROM metric_anomaly.aggregated_metrics a
                 WHERE a.metric_name = ANY (r.metrics)
                   AND a.metric_timestamp >= since AND a.metric_timestamp < slot;
                SELECT pg_catalog.string_agg(format('%s %s', m.name,
                           pg_catalog.rtrim(pg_catalog.rtrim(pg_catalog.round(coalesce(
                               (SELECT pg_catalog.sum(a.metric_value) FROM metric_anomaly.aggregated_metrics a
                                 WHERE a.metric_name = m.name
                                   AND a.metric_timestamp >= since AND a.metric_timestamp < slot), 0)::numeric, 2)::text,
                               '0'), '.')), ', ' ORDER BY m.o)
                  INTO totals
                  FROM pg_catalog.unnest(r.metrics) WITH ORDINALITY AS m(name, o);
                totals := 'totals: ' || totals;
            END IF;
            full_title := coalesce(r.title || ' (' || totals || ')', r.name || ' (' || totals || ')');

            IF samples < r.min_samples THEN
                INSERT INTO metric_anomaly.report_runs (report_name, slot, status, samples, title, error)
                VALUES (r.name, slot, 'skipped', samples, full_title,
                        format('%s samples in the range, fewer than the minimum of %s', samples, r.min_samples))
                RETURNING id INTO run_id;
                UPDATE metric_anomaly.reports SET last_run_at = slot, last_status = 'skipped', last_error = NULL
                 WHERE name = r.name;
            ELSE
                IF r.kind = 'metric_chart' THEN
                    png := metric_anomaly.render_metric_chart(r.metrics[1], since,
                               slot OPERATOR(pg_catalog.-) interval '1 microsecond', r.width, r.height, full_title);
                ELSIF r.kind = 'heatmap' THEN
                    png := metric_anomaly.render_heatmap(r.metrics[1], r.dimensions[1], r.dimensions[2],
                                                         since, slot, r.width, r.height, full_title);
                ELSE
                    right_present := ARRAY(SELECT DISTINCT a.metric_name FROM metric_anomaly.aggregated_metrics a
                                            WHERE a.metric_name = ANY (r.right_axis)
                                              AND a.metric_timestamp >= since AND a.metric_timestamp < slot);
                    SELECT metric_anomaly.line_chart(a.metric_timestamp, a.metric_value, a.metric_name,
                               pg_catalog.jsonb_build_object(
                                   'title', full_title, 'width', r.width, 'height', r.height,
                                   'right_axis', pg_catalog.to_jsonb(right_present),
                                   'dashed', pg_catalog.to_jsonb(r.right_axis),
                                   'markers', pg_catalog.to_jsonb(ARRAY(SELECT m FROM pg_catalog.unnest(r.metrics) m
                                                                        WHERE NOT m = ANY (r.right_axis))),
                                   'y_label', pg_catalog.array_to_string(ARRAY(SELECT m FROM pg_catalog.unnest(r.metrics) m
                                                                               WHERE NOT m = ANY (r.right_axis)), ', '),
                                   'y2_label', pg_catalog.array_to_string(right_present, ', ')))
                      INTO png
                      FROM metric_anomaly.aggregated_metrics a
                     WHERE a.metric_name = ANY (r.metrics)
                       AND a.metric_timestamp >= since AND a.metric_timestamp < slot;
                END IF;
                IF png IS NULL THEN
                    RAISE EXCEPTION USING
                        ERRCODE = 'no_data_found',
                        MESSAGE = format('report "%s" has nothing to draw from %s to %s', r.name, since, slot);
                END IF;
                INSERT INTO metric_anomaly.report_runs (report_name, slot, status, samples, title, png)
                VALUES (r.name, slot, 'rendered', samples, full_title, png)
                RETURNING id INTO run_id;
                -- the outbox: one alert of state report, one delivery per channel
                INSERT INTO metric_anomaly.alerts
                       (metric_name, minute, value, context, state, source, episode_start, summary)
                VALUES (r.name, slot, samples,
                        pg_catalog.jsonb_build_object('report', r.name, 'kind', r.kind, 'run_id', run_id,
                                                      'since', since, 'until', slot),
                        'report', 'report', slot, full_title)
                ON CONFLICT ON CONSTRAINT alerts_episode_key DO NOTHING
                RETURNING id INTO new_alert;
                IF new_alert IS NOT NULL THEN
                    UPDATE metric_anomaly.report_runs SET alert_id = new_alert WHERE id = run_id;
                    INSERT INTO metric_anomaly.deliveries (alert_id, channel, idempotency_key)
                    SELECT al.id, c.name,
                           'ma-' || al.id || '-' || pg_catalog.left(pg_catalog.md5(
                               pg_catalog.current_database() || '/' || al.id || '/' || c.name || '/' ||
                               pg_catalog.date_part('epoch', al.created_at)), 20)
                      FROM metric_anomaly.alerts al, metric_anomaly.alert_channels c
                     WHERE al.id = new_alert AND c.enabled AND c.name = ANY (r.channels);
                END IF;
                UPDATE metric_anomaly.reports SET last_run_at = slot, last_status = 'rendered', last_error = NULL
                 WHERE name = r.name;
            END IF;
        EXCEPTION WHEN OTHERS THEN
            INSERT INTO metric_anomaly.report_runs (report_name, slot, status, samples, error)
            VALUES (r.name, slot, 'failed', samples, SQLERRM)
            ON CONFLICT ON CONSTRAINT report_runs_slot_key DO NOTHING;
            UPDATE metric_anomaly.reports SET last_run_at = slot, last_status = 'failed', last_error = SQLERRM
             WHERE name = r.name;
        END;
        runs := runs + 1;
    END LOOP;
    -- runs past their report's keep_for, never a report's newest rendered one
    DELETE FROM metric_anomaly.report_runs o
     USING metric_anomaly.reports rp
     WHERE rp.name = o.report_name AND o.created_at < as_of OPERATOR(pg_catalog.-) rp.keep_for
       AND o.id <> coalesce((SELECT n.id FROM metric_anomaly.report_runs n
                              WHERE n.report_name = o.report_name AND n.status = 'rendered'
                              ORDER BY n.slot DESC LIMIT 1), 0);
    RETURN runs;
END
$fn$;

COMMENT ON FUNCTION metric_anomaly.run_due_reports(timestamptz) IS
    'Runs the reports due at as_of (the worker calls it after every pass): renders each into report_runs and queues its deliveries, or records a skip below min_samples or the error; returns the runs recorded.';

CREATE FUNCTION metric_anomaly.latest_report(name text)
RETURNS bytea
LANGUAGE sql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT r.png FROM metric_anomaly.report_runs r
     WHERE r.report_name = latest_report.name AND r.status = 'rendered'
     ORDER BY r.slot DESC LIMIT 1
$fn$;

COMMENT ON FUNCTION metric_anomaly.latest_report(text) IS
    'The newest PNG the report rendered; NULL when it has none yet.';

REVOKE ALL ON metric_anomaly.reports, metric_anomaly.report_runs FROM PUBLIC;
REVOKE ALL ON FUNCTION metric_anomaly.run_due_reports(timestamptz) FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON metric_anomaly.reports, metric_anomaly.report_runs TO metric_anomaly_admin;
GRANT USAGE ON SEQUENCE metric_anomaly.report_runs_id_seq TO metric_anomaly_admin;
REVOKE ALL ON FUNCTION metric_anomaly.latest_report(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION metric_anomaly.run_due_reports(timestamptz),
                          metric_anomaly.latest_report(text) TO metric_anomaly_admin;

SELECT pg_catalog.pg_extension_config_dump('metric_anomaly.reports', '');
COMMENT ON COLUMN metric_anomaly.alerts.source IS
    '3-sigma, threshold:<rule_name>, or report (a run of a scheduled report: state report, metric_name the report''s name, context.run_id its report_runs row).';

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

-- ---------------------------------------------------------------------------
-- Detection's cache (issue 10, cost): a backend running passes keeps each
-- series' window and seasonal rows between passes; any statement on
-- aggregated_metrics outside its own pipeline makes it read afresh.
-- ---------------------------------------------------------------------------

CREATE FUNCTION metric_anomaly.detect_cache_invalidate()
RETURNS trigger
LANGUAGE c
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'metric_anomaly_detect_cache_invalidate';

COMMENT ON FUNCTION metric_anomaly.detect_cache_invalidate() IS
    'Statement trigger function on aggregated_metrics: bumps the database''s generation in shared memory (and again when the transaction commits), so that the rows detection holds between passes in the worker (metric_anomaly.detect_cache_size) are read afresh after any change it did not make itself.';

REVOKE ALL ON FUNCTION metric_anomaly.detect_cache_invalidate() FROM PUBLIC;

-- per statement, never per row; ALWAYS: also under session_replication_role = replica
CREATE TRIGGER aggregated_metrics_detect_cache
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON metric_anomaly.aggregated_metrics
    FOR EACH STATEMENT EXECUTE FUNCTION metric_anomaly.detect_cache_invalidate();

ALTER TABLE metric_anomaly.aggregated_metrics ENABLE ALWAYS TRIGGER aggregated_metrics_detect_cache;

CREATE FUNCTION metric_anomaly.detect_cache_stats(OUT entries integer, OUT bytes bigint,
                                                  OUT window_hits bigint, OUT season_hits bigint,
                                                  OUT flushes bigint)
LANGUAGE c VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'metric_anomaly_detect_cache_stats';

COMMENT ON FUNCTION metric_anomaly.detect_cache_stats() IS
    'This backend''s detection cache: series held, bytes counted against metric_anomaly.detect_cache_size, series whose window and whose seasonal rows passes took from it, and times it was flushed.';

REVOKE ALL ON FUNCTION metric_anomaly.detect_cache_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION metric_anomaly.detect_cache_stats() TO metric_anomaly_admin;

CREATE FUNCTION metric_anomaly.detect_cache_held(metric_name text, OUT wfrom timestamptz,
                                                 OUT wuntil timestamptz, OUT first timestamptz,
                                                 OUT periods integer, OUT s0 timestamptz,
                                                 OUT s1 timestamptz)
LANGUAGE c STABLE STRICT
-- no SET clause: it runs no SQL, and the detection query calls it once a
-- series (a setting per call was 40 ms of a pass over 10,000 series).
-- STABLE: what is held of a series changes only after the pass has judged
-- it, once its row has come from the query; so the query streams its rows
-- as a nested loop (VOLATILE made it a CTE, materialised and then sorted
-- by name: 4 MB of temporary file in a steady pass over 10,000 series, and
-- every series' window in a cold one, before its first row came out).
AS 'MODULE_PATHNAME', 'metric_anomaly_detect_cache_held';

COMMENT ON FUNCTION metric_anomaly.detect_cache_held(text) IS
    'For the detection pass''s query: what this backend''s detection cache holds of a series (its window''s span, first minute, seasonal periods and ranges) while the pass uses the cache; all NULL otherwise.';

REVOKE ALL ON FUNCTION metric_anomaly.detect_cache_held(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION metric_anomaly.detect_cache_held(text) TO metric_anomaly_admin;

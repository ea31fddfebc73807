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
GRANT ALL ON metric_anomaly.jwt_secrets, metric_anomaly.ingest_skips TO metric_anomaly_admin;
GRANT SELECT ON metric_anomaly.ingest_stats TO PUBLIC;
GRANT ALL ON metric_anomaly.ingest_stats TO metric_anomaly_admin;
GRANT EXECUTE ON FUNCTION metric_anomaly.record_event(text, jsonb, text) TO metric_anomaly_admin;

SELECT pg_catalog.pg_extension_config_dump('metric_anomaly.jwt_secrets', '');
SELECT pg_catalog.pg_extension_config_dump('metric_anomaly.ingest_skips', '');

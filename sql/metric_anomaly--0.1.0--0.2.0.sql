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

------------------------------------------------------------------------------
-- Security, dumps and upgrades
------------------------------------------------------------------------------
-- Functions that run SQL pin search_path.
ALTER FUNCTION metric_anomaly.start_worker() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION metric_anomaly.start_delivery_worker() SET search_path = pg_catalog, pg_temp;

-- metric_anomaly_admin reads and writes rows; it no longer holds TRIGGER,
-- TRUNCATE or REFERENCES (see the install script), nor writes to a view.
-- ALL, then the row privileges again: 0.1.0's GRANT ALL also gave 17's
-- MAINTAIN, which a list of the older privileges would leave behind.
REVOKE ALL
    ON metric_anomaly.business_events, metric_anomaly.aggregated_metrics,
       metric_anomaly.series, metric_anomaly.metrics, metric_anomaly.worker_state,
       metric_anomaly.alert_channels, metric_anomaly.alert_routes,
       metric_anomaly.alert_rules, metric_anomaly.alerts,
       metric_anomaly.alert_episodes, metric_anomaly.deliveries
  FROM metric_anomaly_admin;
GRANT SELECT, INSERT, UPDATE, DELETE
    ON metric_anomaly.business_events, metric_anomaly.aggregated_metrics,
       metric_anomaly.series, metric_anomaly.metrics, metric_anomaly.worker_state,
       metric_anomaly.alert_channels, metric_anomaly.alert_routes,
       metric_anomaly.alert_rules, metric_anomaly.alerts,
       metric_anomaly.alert_episodes, metric_anomaly.deliveries
  TO metric_anomaly_admin;
REVOKE ALL ON metric_anomaly.delivery_status FROM metric_anomaly_admin;
GRANT SELECT ON metric_anomaly.delivery_status TO metric_anomaly_admin;

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
-- Alert wing: resumable multi-step deliveries, per-channel rate limits.
------------------------------------------------------------------------------
ALTER TABLE metric_anomaly.deliveries ADD COLUMN step_state text;

COMMENT ON COLUMN metric_anomaly.deliveries.steps_done IS
    'Requests of a multi-request delivery (WeCom markdown then image, Slack bot upload) already accepted; a retry sends only the rest.';
COMMENT ON COLUMN metric_anomaly.deliveries.step_state IS
    'What the accepted steps answered that later steps need (Slack bot: the file id and upload URL), so a retry resumes at the first step not accepted; NULL when nothing.';
COMMENT ON COLUMN metric_anomaly.alert_channels.options IS
    'Per-kind options: {"chart": true|false} attaches the chart where the kind carries images (default true); slack_bot needs {"channel": "C0123"}; {"rate_limit": N} caps the requests sent per minute (0 = no limit; default the platform''s documented limit: wecom and dingtalk 20, feishu 100, slack and slack_bot 60, webhook none).';

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
-- E-mail channel and Feishu app images (issue 14): kind email (SMTP through
-- libcurl), its checks at write time, and the checks of a Feishu app's id
-- and secret.
------------------------------------------------------------------------------
ALTER TABLE metric_anomaly.alert_channels DROP CONSTRAINT alert_channels_kind_check;
ALTER TABLE metric_anomaly.alert_channels ADD CONSTRAINT alert_channels_kind_check
    CHECK (kind IN ('webhook', 'slack', 'slack_bot', 'wecom', 'feishu', 'dingtalk', 'email'));

/*
 * Refuses, with a clear error, alert channels of an unknown kind; a url that
 * is not http(s) (smtp or smtps for kind email); a secret with control
 * characters; slack_bot without a channel or token; email without valid
 * from and to addresses, with an unknown options.tls, or with credentials
 * that are not {"user", "password"} or that would cross the network without
 * TLS; feishu app images without an app id and app secret.  Its messages
 * never repeat the url or secret.
 */
CREATE OR REPLACE FUNCTION metric_anomaly.alert_channels_check_url()
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

COMMENT ON TABLE metric_anomaly.alert_channels IS
    'Where alerts go: kind webhook, slack (incoming webhook), slack_bot (Web API base URL, bot token in secret, options.channel), wecom, feishu (images through an app: options.app_id), dingtalk, email (SMTP relay, options.from and options.to); url and secret are secrets readable only by metric_anomaly_admin.';
COMMENT ON COLUMN metric_anomaly.alert_channels.url IS
    'Endpoint (http or https only); for slack_bot the Web API base, e.g. https://slack.com/api; for email the relay, smtp://host[:port] (STARTTLS) or smtps://host[:port].';
COMMENT ON COLUMN metric_anomaly.alert_channels.secret IS
    'Signing secret (feishu, dingtalk), bot token (slack_bot) or bearer token (webhook, sent as Authorization: Bearer); for email {"user": ..., "password": ...}; for feishu with app images {"app_secret": ..., "sign": ...}; NULL when unused.';
COMMENT ON COLUMN metric_anomaly.alert_channels.options IS
    'Per-kind options: {"chart": true|false} attaches the chart where the kind carries images (default true); slack_bot needs {"channel": "C0123"}; email needs {"from": address, "to": address or array} and may relax TLS with {"tls": "none"}; feishu sends the chart with {"app_id": "cli_..."} (and {"api_base": url}, default https://open.feishu.cn); {"rate_limit": N} caps the requests sent per minute (0 = no limit; default the platform''s documented limit: wecom and dingtalk 20, feishu 100, slack and slack_bot 60, webhook and email none).';
COMMENT ON FUNCTION metric_anomaly.alert_channels_check_url() IS
    'Trigger function refusing alert channels of an unknown kind, whose url is not http(s) (smtp or smtps for email), whose secret has control characters, of kind slack_bot without a channel or token, of kind email without valid from and to addresses or with credentials that are malformed or would be sent without TLS, or of kind feishu with half an app configuration; its messages never repeat the url or secret.';

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

-- A column added with a default keeps it as a "missing value" in the
-- catalog, which a fresh install has not: add it bare, then fill it.
ALTER TABLE metric_anomaly.series
    ADD COLUMN detect_errors        bigint,
    ADD COLUMN detect_last_error    text,
    ADD COLUMN detect_last_error_at timestamptz;
UPDATE metric_anomaly.series SET detect_errors = 0;
ALTER TABLE metric_anomaly.series
    ALTER COLUMN detect_errors SET DEFAULT 0,
    ALTER COLUMN detect_errors SET NOT NULL;

COMMENT ON COLUMN metric_anomaly.series.detect_errors IS
    'Passes in which this series'' detection or alerting failed; the pass went on without it.';
COMMENT ON COLUMN metric_anomaly.series.detect_last_error IS
    'The last such failure: the stage (detection, alerting) and the error message.';

ALTER TABLE metric_anomaly.alert_episodes
    ADD COLUMN recent_breaches bigint;
UPDATE metric_anomaly.alert_episodes SET recent_breaches = 0;
ALTER TABLE metric_anomaly.alert_episodes
    ALTER COLUMN recent_breaches SET DEFAULT 0,
    ALTER COLUMN recent_breaches SET NOT NULL;

COMMENT ON COLUMN metric_anomaly.alert_episodes.recent_breaches IS
    'Bit i set: the judged minute i steps back breached (for alert_after of alert_window).';

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

GRANT SELECT, INSERT, UPDATE, DELETE ON metric_anomaly.quarantined_events TO metric_anomaly_admin;
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
    'Raw business events written by applications; the aggregation pass folds each committed event into aggregated_metrics exactly once, without writing to this table.  An event has been folded when metric_anomaly.event_folded(xid, id) is true.';
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
GRANT EXECUTE ON FUNCTION metric_anomaly.event_folded(xid8, bigint) TO PUBLIC;
-- The position is no secret (worker_status shows what it implies), and
-- event_folded() runs with its caller's rights.
GRANT SELECT (folded_snapshot, round_snapshot, round_xid, round_id)
   ON metric_anomaly.worker_state TO PUBLIC;

-- worker_status (as the workers section above makes it): pending_events from
-- the position; quarantined_events, at the end.
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

-- is_processed goes once worker_status no longer reads it.
ALTER TABLE metric_anomaly.business_events DROP COLUMN is_processed;

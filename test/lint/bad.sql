\echo Use "CREATE EXTENSION metric_anomaly" to load this file. \quit
-- Every statement below breaks one rule; 010_script_lint.pl expects exactly
-- the findings listed in test/lint/bad.expected.
CREATE TABLE metric_anomaly.t (x integer CHECK (x > 0), y text DEFAULT now());
SELECT * FROM worker_state;
SET LOCAL search_path = pg_catalog, pg_temp;
CREATE SCHEMA IF NOT EXISTS metric_anomaly;
CREATE OR REPLACE FUNCTION metric_anomaly.f() RETURNS integer LANGUAGE sql AS $$ SELECT 1 $$;
CREATE FUNCTION metric_anomaly.g() RETURNS integer LANGUAGE plpgsql SECURITY DEFINER AS $$ BEGIN RETURN 1; END $$;
CREATE FUNCTION metric_anomaly.h() RETURNS integer LANGUAGE sql SET search_path = public, pg_temp AS $$ SELECT 1 $$;
CREATE FUNCTION metric_anomaly.k() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT count(*) FROM metric_anomaly.t WHERE x > 1 $$;
CREATE TABLE u (x integer);
CREATE INDEX IF NOT EXISTS t_idx ON t (x);
GRANT ALL ON metric_anomaly.t TO metric_anomaly_admin;
DO $$ BEGIN PERFORM pg_catalog.set_config('search_path', 'public', true); END $$;
SET search_path = public;
SELECT lower('X');
-- No finding: a REVOKE from PUBLIC, a foreign key's ON UPDATE action.
REVOKE ALL ON metric_anomaly.t FROM PUBLIC;
CREATE TABLE metric_anomaly.v (x integer REFERENCES metric_anomaly.t (x) ON UPDATE CASCADE ON DELETE CASCADE);

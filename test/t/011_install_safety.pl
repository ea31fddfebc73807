# CREATE EXTENSION does not build on objects a less-privileged role made
# first: a schema metric_anomaly it owns or may create in, objects in it, a
# metric_anomaly_admin role with a login or in someone else's hands.  Each
# case is refused with an error that says what to do; the attacks they would
# allow (code run as the superuser who next touches the extension, or as the
# worker's superuser at the next pass) are tried and fail.  The admin role
# cannot attach triggers to the extension's tables.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('install_safety');
$node->init;
$node->start;

sub as_user
{
	my ($user, $db, $sql) = @_;
	my ($ret, $out, $err) = $node->psql($db, $sql, extra_params => [ '-U', $user ]);
	return ($ret, $out, $err);
}

sub is_super
{
	my ($role) = @_;
	return $node->safe_psql('postgres', "SELECT rolsuper FROM pg_roles WHERE rolname = '$role'");
}

sub installed
{
	my ($db) = @_;
	return $node->safe_psql($db, q{SELECT count(*) FROM pg_extension WHERE extname = 'metric_anomaly'});
}

# mallory may create schemas in its database; carol has CREATEROLE.
$node->safe_psql('postgres', q{
CREATE ROLE mallory LOGIN;
CREATE ROLE carol LOGIN CREATEROLE;
CREATE DATABASE app1 OWNER mallory;
CREATE DATABASE app2;
CREATE DATABASE app3;
CREATE DATABASE app4;
CREATE DATABASE app5;
});

# --- A schema pre-created by mallory, with an operator that matches the
# types of a check constraint of the extension better than pg_catalog's and
# makes mallory a superuser when a superuser evaluates it. ---
my ($ret, $out, $err) = as_user('mallory', 'app1', q{
CREATE SCHEMA metric_anomaly;
CREATE FUNCTION metric_anomaly.gt(double precision, integer) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE 'ALTER ROLE mallory SUPERUSER';
    END IF;
    RETURN $1 > $2::double precision;
END $$;
CREATE OPERATOR metric_anomaly.> (LEFTARG = double precision, RIGHTARG = integer, FUNCTION = metric_anomaly.gt);
});
is($ret, 0, 'mallory plants a schema and an operator') or diag $err;
($ret, $out, $err) = $node->psql('app1', 'CREATE EXTENSION metric_anomaly');
like($err, qr/ERROR:  schema "metric_anomaly" is owned by role "mallory", which is not a superuser/,
	'CREATE EXTENSION refuses a schema owned by a role that is not a superuser');
like($err, qr/HINT:  Drop the schema \(DROP SCHEMA metric_anomaly\) and run the command again/,
	'and says what to do');
# Were it installed, a superuser changing a setting would run mallory's code.
$node->psql('app1', q{INSERT INTO metric_anomaly.metrics (metric_name, sigma) VALUES ('m', 2)})
  if installed('app1');
is(is_super('mallory'), 'f', 'mallory did not become a superuser');

# Dropped, the schema is made by CREATE EXTENSION; the caller's search_path
# is as it was (the script's SET LOCAL ends with it).
$node->safe_psql('app1', 'DROP SCHEMA metric_anomaly CASCADE');
is($node->safe_psql('app1', q{SET search_path = public, "$user"; CREATE EXTENSION metric_anomaly; SHOW search_path}),
	'public, "$user"', 'installed once the schema is dropped; search_path of the session unchanged');
is($node->safe_psql('app1', q{SELECT nspowner::regrole FROM pg_namespace WHERE nspname = 'metric_anomaly'}),
	$node->safe_psql('app1', 'SELECT current_user'), 'the schema belongs to the installing superuser');

# --- A superuser's schema in which mallory may create. ---
$node->safe_psql('app2', 'CREATE SCHEMA metric_anomaly; GRANT CREATE ON SCHEMA metric_anomaly TO mallory');
($ret, $out, $err) = $node->psql('app2', 'CREATE EXTENSION metric_anomaly');
like($err, qr/ERROR:  roles that are not superusers may create objects in schema "metric_anomaly"\nDETAIL:  CREATE on the schema is granted to mallory\.\nHINT:  Revoke it \(REVOKE CREATE ON SCHEMA metric_anomaly FROM mallory\)/,
	'CREATE EXTENSION refuses a schema others may create in');
# ... and one in which mallory already created something.
($ret, $out, $err) = as_user('mallory', 'app2',
	q{CREATE FUNCTION metric_anomaly.now() RETURNS timestamptz LANGUAGE sql AS 'SELECT pg_catalog.now()'});
is($ret, 0, 'mallory creates a function in it') or diag $err;
$node->safe_psql('app2', 'REVOKE CREATE ON SCHEMA metric_anomaly FROM mallory');
($ret, $out, $err) = $node->psql('app2', 'CREATE EXTENSION metric_anomaly');
like($err, qr/ERROR:  schema "metric_anomaly" holds objects owned by roles that are not superusers\nDETAIL:  Found: function metric_anomaly\.now\(\) owned by mallory\./,
	'CREATE EXTENSION refuses a schema holding objects of other roles');
is(installed('app2'), '0', 'nothing was installed');
$node->safe_psql('app2', 'DROP FUNCTION metric_anomaly.now()');
($ret, $out, $err) = $node->psql('app2', 'CREATE EXTENSION metric_anomaly');
is($ret, 0, 'a superuser\'s schema, clean, is accepted') or diag $err;

# --- A metric_anomaly_admin made by carol (CREATEROLE) and kept in her
# hands: with a login, or granted to herself. ---
# The role exists already (app1, app2); drop the extensions to start over.
$node->safe_psql($_, 'DROP EXTENSION metric_anomaly') for qw(app1 app2);
$node->safe_psql('postgres', 'DROP ROLE metric_anomaly_admin');
($ret, $out, $err) = as_user('carol', 'postgres', q{CREATE ROLE metric_anomaly_admin LOGIN PASSWORD 'known-to-carol'});
is($ret, 0, 'carol pre-creates metric_anomaly_admin with a login') or diag $err;
($ret, $out, $err) = $node->psql('app3', 'CREATE EXTENSION metric_anomaly');
like($err, qr/ERROR:  role "metric_anomaly_admin" exists with attributes the extension does not give it/,
	'CREATE EXTENSION refuses an admin role with a login');
like($err, qr/HINT:  If you did not create it, drop it \(DROP ROLE metric_anomaly_admin\)/, 'and says what to do');

$node->safe_psql('app3', 'DROP EXTENSION IF EXISTS metric_anomaly');
$node->safe_psql('postgres', 'DROP ROLE metric_anomaly_admin');
($ret, $out, $err) = as_user('carol', 'postgres', q{CREATE ROLE metric_anomaly_admin; GRANT metric_anomaly_admin TO carol});
is($ret, 0, 'carol pre-creates metric_anomaly_admin and grants it to herself') or diag $err;
$node->safe_psql('app3', 'CREATE SCHEMA carol AUTHORIZATION carol');
($ret, $out, $err) = $node->psql('app3', 'CREATE EXTENSION metric_anomaly');
like($err, qr/ERROR:  role "metric_anomaly_admin" exists and was granted to carol by carol, who is not a superuser/,
	'CREATE EXTENSION refuses an admin role granted by a role that is not a superuser');
# Were it installed, carol would attach a trigger to a table the worker
# writes, and the next pass would run it as a superuser.
if (installed('app3'))
{
	as_user('carol', 'app3', q{
CREATE FUNCTION carol.grab() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE 'ALTER ROLE carol SUPERUSER';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER grab BEFORE INSERT OR UPDATE ON metric_anomaly.aggregated_metrics
    FOR EACH ROW EXECUTE FUNCTION carol.grab();
});
	$node->safe_psql('app3', q{
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp) VALUES ('x', '2026-01-01 00:00+00');
SELECT metric_anomaly.process_pending('2026-01-01 00:02+00')});
}
is(is_super('carol'), 'f', 'carol did not become a superuser');
$node->safe_psql('app3', 'DROP EXTENSION IF EXISTS metric_anomaly');

# Granted by a superuser but WITH ADMIN OPTION; or a member of another role.
# CASCADE: from 16 on, creating the role gave carol an ADMIN OPTION grant
# from the bootstrap superuser, and her own GRANT to herself depends on it
# ("dependent privileges exist" without CASCADE); before 16 it changes
# nothing.
$node->safe_psql('postgres', 'REVOKE metric_anomaly_admin FROM carol CASCADE');
$node->safe_psql('postgres', 'GRANT metric_anomaly_admin TO carol WITH ADMIN OPTION');
($ret, $out, $err) = $node->psql('app3', 'CREATE EXTENSION metric_anomaly');
like($err, qr/ERROR:  role "metric_anomaly_admin" exists and was granted to carol WITH ADMIN OPTION/,
	'CREATE EXTENSION refuses an admin role someone may hand on');
$node->safe_psql('postgres', 'REVOKE metric_anomaly_admin FROM carol; GRANT carol TO metric_anomaly_admin');
($ret, $out, $err) = $node->psql('app3', 'CREATE EXTENSION metric_anomaly');
like($err, qr/ERROR:  role "metric_anomaly_admin" exists and is a member of role carol/,
	'CREATE EXTENSION refuses an admin role that is a member of another');
is(installed('app3'), '0', 'nothing was installed');

# The role as the extension makes it, granted to an admin by a superuser,
# is what a second database finds: accepted.
$node->safe_psql('app3', 'DROP EXTENSION IF EXISTS metric_anomaly');
$node->safe_psql('postgres', 'REVOKE carol FROM metric_anomaly_admin; DROP ROLE metric_anomaly_admin');
$node->safe_psql('app3', 'CREATE EXTENSION metric_anomaly');
$node->safe_psql('postgres', 'CREATE ROLE alice LOGIN IN ROLE metric_anomaly_admin');
($ret, $out, $err) = $node->psql('app4', 'CREATE EXTENSION metric_anomaly');
is($ret, 0, 'a second database accepts the role made by the first install') or diag $err;

# --- An admin reads and writes the tables but cannot attach triggers,
# truncate, or reference them. ---
($ret, $out, $err) = as_user('alice', 'app4', q{
INSERT INTO metric_anomaly.metrics (metric_name, sigma) VALUES ('m', 2);
UPDATE metric_anomaly.metrics SET sigma = 3;
DELETE FROM metric_anomaly.business_events;
SELECT count(*) FROM metric_anomaly.alert_channels});
is($ret, 0, 'an admin reads and writes rows') or diag $err;
$node->safe_psql('app4', 'CREATE SCHEMA alice AUTHORIZATION alice');
($ret, $out, $err) = as_user('alice', 'app4', q{
CREATE FUNCTION alice.t() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
CREATE TRIGGER t BEFORE INSERT ON metric_anomaly.aggregated_metrics FOR EACH ROW EXECUTE FUNCTION alice.t()});
like($err, qr/ERROR:  permission denied for table aggregated_metrics/, 'an admin cannot attach a trigger');
($ret, $out, $err) = as_user('alice', 'app4', 'TRUNCATE metric_anomaly.business_events');
like($err, qr/ERROR:  permission denied for table business_events/, 'nor truncate');
($ret, $out, $err) = as_user('alice', 'app4',
	'CREATE TABLE alice.pin (id bigint REFERENCES metric_anomaly.business_events (id))');
like($err, qr/ERROR:  permission denied for table business_events/, 'nor reference a table');

# --- The upgrade makes the same checks: a 0.1.0 schema others were allowed
# to create in is refused until that is revoked. ---
$node->safe_psql('app5', q{CREATE EXTENSION metric_anomaly VERSION '0.1.0';
	GRANT CREATE ON SCHEMA metric_anomaly TO mallory});
($ret, $out, $err) = $node->psql('app5', 'ALTER EXTENSION metric_anomaly UPDATE');
like($err, qr/ERROR:  roles that are not superusers may create objects in schema "metric_anomaly"/,
	'ALTER EXTENSION UPDATE refuses a schema others may create in');
$node->safe_psql('app5', 'REVOKE CREATE ON SCHEMA metric_anomaly FROM mallory; ALTER EXTENSION metric_anomaly UPDATE');
is($node->safe_psql('app5', q{SELECT extversion FROM pg_extension WHERE extname = 'metric_anomaly'}),
	'0.2.0', 'and updates once it is revoked');

# --- Every function that may run SQL pins search_path: all but the
# immutable ones, the aggregates' support functions and detect_cache_held()
# (which run no SQL, and would pay for a setting per row or series). ---
is($node->safe_psql('app4', q{
	SELECT string_agg(p.oid::regprocedure::text, ', ' ORDER BY 1)
	  FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
	 WHERE d.classid = 'pg_proc'::regclass AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
	   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'metric_anomaly')
	   AND p.prokind = 'f' AND p.provolatile <> 'i'
	   AND NOT EXISTS (SELECT 1 FROM pg_aggregate a WHERE p.oid IN (a.aggtransfn, a.aggfinalfn))
	   AND p.oid <> 'metric_anomaly.detect_cache_held(text)'::regprocedure
	   AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)}),
	'', 'every function that may run SQL has SET search_path = pg_catalog, pg_temp');
is($node->safe_psql('app4', q{
	SELECT string_agg(p.oid::regprocedure::text, ', ' ORDER BY 1)
	  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
	 WHERE n.nspname = 'metric_anomaly' AND p.prosecdef}),
	'metric_anomaly.record_event(text,jsonb,text)',
	'no function is SECURITY DEFINER but record_event (it reads the JWT secrets its callers may not)');

$node->stop;
done_testing();

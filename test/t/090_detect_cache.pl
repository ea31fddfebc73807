# Detection's cache (metric_anomaly.detect_cache_size): one long session
# runs a pass a minute with the cache on in database "cached"; database
# "fresh" gets the same events and changes and runs each pass with the
# cache off.  After every step the two must hold identical rows, verdicts
# and evidence, through every way the held rows can go stale: late events,
# a user's INSERT, UPDATE, DELETE and TRUNCATE, a pass in another backend,
# a pass rolled back (transaction and savepoint), settings changes, a
# retention purge, zero-filled minutes.  The session's own counters show
# that the cache served the steady passes (and was flushed when it had to
# be).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('detect_cache');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'metric_anomaly'
metric_anomaly.database = 'no_such_database'
});
$node->start;

# T0 is the first minute judged; history is inserted directly.
my $t0 = '2026-11-20 12:00+00';
my $setup = qq{
CREATE EXTENSION metric_anomaly;
INSERT INTO metric_anomaly.metrics (metric_name, method, window_size, min_points) VALUES
    ('s3', '3-sigma', 10, 5), ('rb', 'robust', 40, 10), ('zf', 'robust', 30, 10);
-- s3, rb, zf: two hours of minutes (zf with a gap every 7th); seas: 400
-- minutes, and 150 minutes either side of T0 on the 3 days and 3 weeks before
INSERT INTO metric_anomaly.aggregated_metrics (metric_name, metric_timestamp, metric_value, sample_count, needs_eval)
SELECT n, timestamptz '$t0' - m * interval '1 minute', v, v, false
  FROM unnest(array['s3', 'rb', 'zf']) AS n, generate_series(1, 120) AS m,
       LATERAL (SELECT (10 + (m * 7919 + length(n) * 31) % 13)::float8 AS v) x
 WHERE n <> 'zf' OR m % 7 <> 0;
INSERT INTO metric_anomaly.aggregated_metrics (metric_name, metric_timestamp, metric_value, sample_count, needs_eval)
SELECT 'seas', timestamptz '$t0' - m * interval '1 minute', 20 + (m * 104729) % 17, 1, false
  FROM generate_series(1, 400) AS m;
INSERT INTO metric_anomaly.aggregated_metrics (metric_name, metric_timestamp, metric_value, sample_count, needs_eval)
SELECT 'seas', timestamptz '$t0' - k * p + j * interval '1 minute', 20 + (j * 7 + k * 3) % 11, 1, false
  FROM generate_series(1, 3) AS k, generate_series(-150, 150) AS j,
       unnest(array[interval '1 day', interval '7 days']) AS p;
INSERT INTO metric_anomaly.series (metric_name, filled_until)
SELECT n, timestamptz '$t0' - interval '1 minute' FROM unnest(array['s3', 'rb', 'zf', 'seas']) AS n;
-- a trigger that fails a pass after detection when asked to
CREATE TABLE public.fail_pass (on_ boolean);
INSERT INTO public.fail_pass VALUES (false);
CREATE FUNCTION public.fail_pass() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
    IF NEW.passes <> OLD.passes AND (SELECT on_ FROM public.fail_pass) THEN RAISE EXCEPTION 'pass failed on purpose'; END IF;
    RETURN NEW;
END \$\$;
CREATE TRIGGER fail_pass BEFORE UPDATE ON metric_anomaly.worker_state
    FOR EACH ROW EXECUTE FUNCTION public.fail_pass();
};
# Each database has a generation counter of its own (detect_cache_sql.c),
# so the passes and changes in "fresh" never flush the cache in "cached".
# A counter was once one of 64 slots by the database's OID, and two
# databases whose OIDs were 64 apart shared one: from 15 on (CREATE
# DATABASE ... OID), "fresh" gets such an OID.
$node->safe_psql('postgres', 'CREATE DATABASE cached');
if ($node->safe_psql('postgres', 'SHOW server_version_num') >= 150000)
{
	my $oid = $node->safe_psql('postgres', q{SELECT oid::int8 + 64 FROM pg_catalog.pg_database WHERE datname = 'cached'});
	$node->safe_psql('postgres', "CREATE DATABASE fresh OID = $oid");
}
else
{
	$node->safe_psql('postgres', 'CREATE DATABASE fresh');
}
$node->safe_psql($_, $setup) for ('cached', 'fresh');

my $session = $node->background_psql('cached', on_error_stop => 0);
$session->query_safe('SET metric_anomaly.detect_cache_size = 16');

sub minute { my ($i) = @_; return "timestamptz '$t0' + $i * interval '1 minute'"; }

# Events of minute $i (series with a nonzero count; zf skips every third).
sub events_sql
{
	my ($i, $names) = @_;
	$names //= "array['s3', 'rb', 'zf', 'seas']";
	return qq{INSERT INTO metric_anomaly.business_events (event_type, event_timestamp)
SELECT n, @{[minute($i)]} + interval '10 seconds' + e * interval '1 second'
  FROM unnest($names) AS n, generate_series(1, 8 + ($i * 5 + length(n)) % 7 + CASE WHEN $i % 9 = 4 THEN 30 ELSE 0 END) AS e
 WHERE n <> 'zf' OR $i % 3 <> 1;};
}

# The same SQL in both databases (from a session of its own).
sub both { my ($sql) = @_; $node->safe_psql($_, $sql) for ('cached', 'fresh'); }

# The pass as of the end of minute $i: in the long session in cached, with
# the cache off in fresh.
sub run_pass
{
	my ($i) = @_;
	my $as_of = minute($i + 1);
	$session->query_safe("SELECT metric_anomaly.process_pending($as_of)");
	$node->safe_psql('fresh', "SET metric_anomaly.detect_cache_size = 0; SELECT metric_anomaly.process_pending($as_of)");
}

my $digest = q{SELECT count(*) || ' ' || md5(string_agg(format('%s|%s|%s|%s|%s|%s', metric_name, metric_timestamp,
                  metric_value, is_anomaly, anomaly_context::text, needs_eval), ',' ORDER BY metric_name, metric_timestamp))
  FROM metric_anomaly.aggregated_metrics};
my $judged = q{SELECT count(*) FROM metric_anomaly.aggregated_metrics WHERE anomaly_context IS NOT NULL};

sub same
{
	my ($what) = @_;
	my $c = $node->safe_psql('cached', $digest);
	my $f = $node->safe_psql('fresh', $digest);
	is($c, $f, "same rows and verdicts: $what");
}

sub flushes { return (split / /, stats())[2]; }

sub stats
{
	return $session->query_safe(q{SELECT window_hits || ' ' || season_hits || ' ' || flushes FROM metric_anomaly.detect_cache_stats()});
}

sub step
{
	my ($i, $what) = @_;
	both(events_sql($i));
	run_pass($i);
	same($what);
}

# Minutes 0-3: the first pass fills the cache, the next ones use it.
step(0, 'first pass');
is(stats(), '0 0 0', 'the first pass read everything');
step($_, "steady minute $_") for 1 .. 3;
is(stats(), '12 3 0', 'steady passes took every window and the seasonal rows from the cache');
is($node->safe_psql('fresh', $judged), '16', 'four minutes of four series were judged');
my $anomalies = $node->safe_psql('fresh',
	q{SELECT count(*) FROM metric_anomaly.aggregated_metrics WHERE is_anomaly});

# A late event into a minute inside the window, folded by the pass itself.
both(events_sql(4) . events_sql(2, "array['rb', 's3']"));
run_pass(4);
same('late events into minutes inside the window');
is(stats(), '14 4 0', 'the series with a late minute read afresh, the others did not');

# A user's UPDATE, DELETE and INSERT in another session, each followed by a pass.
both(qq{UPDATE metric_anomaly.aggregated_metrics SET metric_value = metric_value + 40
         WHERE metric_name IN ('rb', 's3') AND metric_timestamp BETWEEN @{[minute(-9)]} AND @{[minute(-3)]}});
step(5, 'after an UPDATE of window rows');
both(qq{DELETE FROM metric_anomaly.aggregated_metrics
         WHERE metric_name = 's3' AND metric_timestamp BETWEEN @{[minute(-2)]} AND @{[minute(1)]}});
step(6, 'after a DELETE of window rows');
both(qq{INSERT INTO metric_anomaly.aggregated_metrics (metric_name, metric_timestamp, metric_value, sample_count, needs_eval)
        VALUES ('zf', @{[minute(-7)]}, 99, 99, false), ('zf', @{[minute(-14)]}, 98, 98, false)});
step(7, 'after an INSERT into gaps of the window');
both(qq{UPDATE metric_anomaly.aggregated_metrics SET metric_value = metric_value * 3
         WHERE metric_name = 'seas' AND metric_timestamp BETWEEN @{[minute(8)]} - interval '1 day' - interval '30 minutes'
                                                            AND @{[minute(8)]} - interval '1 day' + interval '30 minutes'});
step(8, 'after an UPDATE of seasonal rows');
my ($w, $s, $flushes) = split / /, stats();
is($flushes, 4, 'each change by another session flushed the cache');

# A pass in another backend, which folds a late event and judges it.
both(events_sql(9) . events_sql(7, "array['rb']"));
$node->safe_psql('cached', "SELECT metric_anomaly.process_pending(@{[minute(10)]})");
$node->safe_psql('fresh', "SELECT metric_anomaly.process_pending(@{[minute(10)]})");
step(10, 'after a pass in another backend');

# A pass rolled back with its transaction, and one in a savepoint.
$session->query_safe('BEGIN');
$session->query_safe(events_sql(11) . events_sql(8, "array['s3', 'rb']"));
$session->query_safe("SELECT metric_anomaly.process_pending(@{[minute(12)]})");
my $before = flushes();
$session->query_safe('ROLLBACK');
is(flushes(), $before + 1, 'the rollback flushed what the pass stored');
step(11, 'after a pass rolled back');
$session->query_safe(events_sql(12));
$node->safe_psql('fresh', events_sql(12));
$before = flushes();
$session->query_safe(qq{DO \$\$ BEGIN
    INSERT INTO metric_anomaly.business_events (event_type, event_timestamp) VALUES ('rb', @{[minute(9)]});
    PERFORM metric_anomaly.process_pending(@{[minute(13)]});
    RAISE EXCEPTION 'undo';
EXCEPTION WHEN raise_exception THEN NULL;
END \$\$});
is(flushes(), $before + 1, 'the rollback to a savepoint flushed what the pass stored');
run_pass(12);
same('after a pass rolled back to a savepoint');
# a pass that fails after detection (a trigger on the pass's record in worker_state)
both('UPDATE public.fail_pass SET on_ = true');
both(events_sql(13));
$before = flushes();
my ($ok) = $session->query(qq{SELECT metric_anomaly.process_pending(@{[minute(14)]})});
ok($session->{stderr} =~ /pass failed on purpose/, 'the pass failed after detection');
$session->{stderr} = '';
is(flushes(), $before + 1, 'the failed pass flushed what it stored');
both('UPDATE public.fail_pass SET on_ = false');
run_pass(13);
same('after a pass that failed after detection');

# Settings: a wider window, another method, seasonality off and on.
both(q{UPDATE metric_anomaly.metrics SET window_size = 60 WHERE metric_name = 'rb'});
step(14, 'after widening a window');
both(q{UPDATE metric_anomaly.metrics SET method = 'robust' WHERE metric_name = 's3'});
step(15, 'after changing a method');
both(q{INSERT INTO metric_anomaly.metrics (metric_name, seasonality) VALUES ('seas', 'none')});
step(16, 'after turning seasonality off');
both(q{UPDATE metric_anomaly.metrics SET seasonality = 'daily' WHERE metric_name = 'seas'});
step(17, 'after turning daily seasonality on');
both(q{UPDATE metric_anomaly.metrics SET method = '3-sigma', window_size = NULL WHERE metric_name = 's3'});
step(18, 'after going back to 3-sigma with the default window');

# A retention purge (of the weeks-old rows), then TRUNCATE and a reload.
both(qq{DELETE FROM metric_anomaly.aggregated_metrics WHERE metric_timestamp < @{[minute(0)]} - interval '2 days'});
both(q{UPDATE metric_anomaly.metrics SET seasonality = 'auto' WHERE metric_name = 'seas'});
step(19, 'after a retention purge');
both(q{CREATE TABLE public.keep AS SELECT * FROM metric_anomaly.aggregated_metrics;
       TRUNCATE metric_anomaly.aggregated_metrics;
       INSERT INTO metric_anomaly.aggregated_metrics SELECT * FROM public.keep;
       UPDATE metric_anomaly.aggregated_metrics SET metric_value = metric_value + 7
        WHERE metric_name = 'zf' AND metric_value > 12;
       DROP TABLE public.keep});
step(20, 'after TRUNCATE and a reload');
step($_, "steady minute $_") for 21 .. 23;
($w, $s, $flushes) = split / /, stats();
cmp_ok($w, '>=', 12 + 2 + 5 * 4, 'later steady passes used the cache again');

cmp_ok($node->safe_psql('fresh', q{SELECT count(*) FROM metric_anomaly.aggregated_metrics WHERE is_anomaly}),
	'>', 0, 'some points are anomalous');
is($node->safe_psql('fresh', q{SELECT count(*) FROM metric_anomaly.aggregated_metrics WHERE needs_eval}),
	'0', 'every minute was judged');
is($node->safe_psql('fresh', q{SELECT count(*) FROM metric_anomaly.aggregated_metrics WHERE metric_name = 'zf' AND sample_count = 0
                                  AND metric_timestamp >= timestamptz '2026-11-20 12:00+00'}),
	'8', 'zf has zero-filled minutes');


$session->quit;
$node->stop;
done_testing();

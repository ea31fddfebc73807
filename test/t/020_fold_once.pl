# Exactly-once folding by snapshots (aggregate.c): events of a transaction
# left open across passes, of savepoints kept and rolled back, of prepared
# transactions committed or rolled back later, and of pgbench writers
# through a kill -9 of the worker are each counted exactly once when (and
# only when) they commit; no pass writes to business_events.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MaTest;

my $node = ma_node('fold_once', interval => 1,
	conf => "max_prepared_transactions = 4\nrestart_after_crash = on\n"
	  . "metric_anomaly.batch_size = 500\n");
$node->safe_psql('postgres', 'CREATE EXTENSION metric_anomaly');
ok($node->poll_query_until('postgres', 'SELECT running FROM metric_anomaly.worker_status'),
	'the worker runs');

sub counted
{
	my ($name) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT coalesce(sum(sample_count), 0) FROM metric_anomaly.aggregated_metrics
		 WHERE metric_name = '$name'});
}

# A session that keeps its transaction open while the test goes on.
my ($in, $out) = ('', '');
my $open = IPC::Run::start([ 'psql', '-XAtq', '-d', $node->connstr('postgres') ],
	'<', \$in, '>', \$out, '2>', \$out);
sub say_open
{
	my ($sql, $mark) = @_;
	$in .= "$sql\nSELECT '$mark';\n";
	$open->pump until $out =~ /$mark/;
}

# --- A transaction open across several passes.
say_open(q{BEGIN;
	INSERT INTO metric_anomaly.business_events (event_type)
	SELECT 'long' FROM generate_series(1, 100);}, 'opened');
$node->safe_psql('postgres', q{
	INSERT INTO metric_anomaly.business_events (event_type)
	SELECT 'meanwhile' FROM generate_series(1, 1000)});
settle($node);
settle($node);
is(counted('meanwhile'), '1000', 'events committed meanwhile are counted');
is(counted('long'), '0', 'the open transaction\'s events are not counted yet');
say_open('COMMIT;', 'committed');
$in .= "\\q\n";
$open->finish;
settle($node);
is(counted('long'), '100', 'after its commit, they are counted once');

# --- Savepoints: released, rolled back, and the first write inside one.
$node->safe_psql('postgres', q{
	BEGIN;
	INSERT INTO metric_anomaly.business_events (event_type) SELECT 'sp' FROM generate_series(1, 10);
	SAVEPOINT a;
	INSERT INTO metric_anomaly.business_events (event_type) SELECT 'sp' FROM generate_series(1, 20);
	RELEASE a;
	SAVEPOINT b;
	INSERT INTO metric_anomaly.business_events (event_type) SELECT 'sp' FROM generate_series(1, 40);
	ROLLBACK TO b;
	SAVEPOINT c;
	INSERT INTO metric_anomaly.business_events (event_type) SELECT 'sp' FROM generate_series(1, 5);
	COMMIT;
	BEGIN;
	SAVEPOINT s;
	INSERT INTO metric_anomaly.business_events (event_type) SELECT 'sub' FROM generate_series(1, 3);
	ROLLBACK TO s;
	INSERT INTO metric_anomaly.business_events (event_type) SELECT 'sub' FROM generate_series(1, 4);
	SAVEPOINT t;
	INSERT INTO metric_anomaly.business_events (event_type) SELECT 'sub' FROM generate_series(1, 6);
	COMMIT;
	BEGIN;
	INSERT INTO metric_anomaly.business_events (event_type) SELECT 'rolled back' FROM generate_series(1, 9);
	ROLLBACK;});
settle($node);
is(counted('sp'), '35', 'savepoints: released and kept counted, rolled back not');
is(counted('sub'), '10', 'a transaction whose first write was in a rolled-back savepoint');
is(counted('rolled back'), '0', 'a rolled-back transaction counts nothing');

# --- Two-phase commit: prepared, passes go by, then committed or rolled back.
$node->safe_psql('postgres', q{
	BEGIN;
	INSERT INTO metric_anomaly.business_events (event_type) SELECT '2pc' FROM generate_series(1, 50);
	PREPARE TRANSACTION 'p_commit';
	BEGIN;
	INSERT INTO metric_anomaly.business_events (event_type) SELECT '2pc' FROM generate_series(1, 70);
	PREPARE TRANSACTION 'p_rollback';});
settle($node);
settle($node);
is(counted('2pc'), '0', 'prepared transactions count nothing yet');
$node->safe_psql('postgres', q{COMMIT PREPARED 'p_commit'});
$node->safe_psql('postgres', q{ROLLBACK PREPARED 'p_rollback'});
settle($node);
is(counted('2pc'), '50', 'the committed one is counted once, the rolled-back one not');

# --- pgbench writers, and a kill -9 of the worker in the middle of a batch.
crash_under_writers($node,
	"INSERT INTO metric_anomaly.business_events (event_type, payload) "
	  . "VALUES ('bench' || (random() * 7)::int, '{\"k\": 1}');\n");
settle($node);
my $committed = $node->safe_psql('postgres', q{
	SELECT count(*) FROM metric_anomaly.business_events WHERE event_type LIKE 'bench%'});
cmp_ok($committed, '>', 0, "pgbench committed $committed events");
is($node->safe_psql('postgres', q{
	SELECT coalesce(sum(sample_count), 0) FROM metric_anomaly.aggregated_metrics
	 WHERE metric_name LIKE 'bench%'}),
	$committed, 'each committed event counted exactly once through the kill -9');

# --- Everything: sum(sample_count) equals the committed events, none pending.
is($node->safe_psql('postgres', q{
	SELECT (SELECT sum(sample_count) FROM metric_anomaly.aggregated_metrics) =
	       (SELECT count(*) FROM metric_anomaly.business_events)
	   AND (SELECT pending_events FROM metric_anomaly.worker_status) = 0
	   AND (SELECT bool_and(metric_anomaly.event_folded(xid, id)) FROM metric_anomaly.business_events)}),
	't', 'sum(sample_count) equals the committed events; none is pending');

# --- No pass updates an event: a pass in a session of its own, whose
# statistics are flushed when it disconnects.
$node->safe_psql('postgres', 'CREATE DATABASE manual');
$node->safe_psql('manual', q{
	CREATE EXTENSION metric_anomaly;
	INSERT INTO metric_anomaly.business_events (event_type, event_timestamp)
	SELECT 'm', now() - interval '1 hour' + i * interval '1 second' FROM generate_series(1, 2000) AS i;});
is($node->safe_psql('manual', 'SELECT metric_anomaly.process_pending()'), '2000',
	'a pass folds 2000 events');
ok($node->poll_query_until('manual', q{
	SELECT n_tup_ins = 2000 FROM pg_stat_user_tables
	 WHERE relid = 'metric_anomaly.business_events'::regclass}),
	'the statistics show the inserts');
is($node->safe_psql('manual', q{
	SELECT n_tup_upd, n_tup_del FROM pg_stat_user_tables
	 WHERE relid = 'metric_anomaly.business_events'::regclass}),
	'0|0', 'n_tup_upd of business_events stays 0 through the pass');

$node->stop;
done_testing();

# The workers step aside for DROP DATABASE, ALTER DATABASE ... RENAME and
# CREATE DATABASE ... TEMPLATE of the database they serve: each command
# succeeds without FORCE on its first attempt, while the workers wait for
# the extension and while they are busy; they come back; counts stay exact;
# a delivery cut off mid-send is sent again with the same key; the log has
# one line for stepping aside and one for coming back.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MaTest;
use MaAlert qw(start_receiver stop_receiver requests wait_requests);

my $rounds = 5;
# Batches of 200: a backlog is a round of many batches, which the workers
# are held in the middle of (below).
my $node = ma_node('aside', database => 'app', interval => 1,
	conf => "metric_anomaly.batch_size = 200\nmetric_anomaly.alert_timeout = '60s'\n"
	  . "log_line_prefix = '%m [%p] %b: '\n");
my $starts = qr/metric_anomaly: starting workers in database "app"/;
my $asides = qr/metric_anomaly: the workers of database "app" step aside for/;

# Workers connected to $db (counted as the superuser).
sub workers_in
{
	my ($db) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT count(*) FROM pg_stat_activity
		 WHERE backend_type IN ('metric_anomaly worker', 'metric_anomaly delivery')
		   AND datname = '$db'});
}

# Both workers hold the alive lock of app (objid 3): a command now sees them.
sub wait_workers
{
	my ($what) = @_;
	ok($node->poll_query_until('postgres', q{
		SELECT count(*) = 2 FROM pg_locks l JOIN pg_database d ON d.oid = l.database
		 WHERE l.locktype = 'advisory' AND l.classid = 28001 AND l.objid = 3
		   AND l.objsubid = 28001 AND l.granted AND d.datname = 'app'}), $what);
}

# Runs a command once; it must succeed at the first attempt.
sub first_time
{
	my ($sql, $what) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', $sql);
	is($ret, 0, $what) or diag $err;
}

# The log lines from $offset on: exactly $n step-asides and $n comebacks,
# and nothing failing.
sub log_is_quiet
{
	my ($offset, $n, $what) = @_;
	is(count_matches($node, $asides, $offset), $n, "$what: one line per step-aside");
	is(count_matches($node, $starts, $offset), $n, "$what: one line per comeback");
	# Only our processes: PostgreSQL itself terminates autovacuum workers
	# for these commands, with a FATAL line of their own.
	is(count_matches($node,
			qr/metric_anomaly (?:worker|delivery|launcher): (?:FATAL|ERROR|PANIC)|background worker "metric_anomaly[^"]*" \(PID \d+\) exited|terminated by signal|pass failed/,
			$offset),
		0, "$what: no error, exit or crash");
}

# Adds $n events to app; returns the new total.
my $total = 0;
sub add_events
{
	my ($n) = @_;
	$node->safe_psql('app', qq{
		INSERT INTO metric_anomaly.business_events (event_type, event_timestamp)
		SELECT 'e' || (g % 7), now() - interval '2 minutes' FROM generate_series(1, $n) g});
	return $total += $n;
}

sub wait_folded
{
	my ($db, $what) = @_;
	ok($node->poll_query_until($db, q{
		SELECT pending_events = 0 FROM metric_anomaly.worker_status}),
		"$what: folded");
}

sub folded_count
{
	my ($db) = @_;
	return $node->safe_psql($db,
		q{SELECT coalesce(sum(sample_count), 0) FROM metric_anomaly.aggregated_metrics});
}

# --- While the workers only wait for the extension ---------------------
$node->safe_psql('postgres', 'CREATE DATABASE app');
wait_workers('the workers wait in app for the extension');
my $offset = -s $node->logfile;
for my $i (1 .. $rounds)
{
	first_time('DROP DATABASE app', "waiting: DROP DATABASE $i");
	is(workers_in('app'), '0', "waiting: no worker after DROP $i");
	first_time('CREATE DATABASE app', "waiting: CREATE DATABASE $i");
	wait_workers("waiting: workers back after recreate $i");
}
log_is_quiet($offset, $rounds, 'waiting, drop');

$offset = -s $node->logfile;
for my $i (1 .. $rounds)
{
	first_time('ALTER DATABASE app RENAME TO app_away', "waiting: RENAME $i");
	is(workers_in('app_away'), '0', "waiting: no worker follows the rename $i");
	first_time('ALTER DATABASE app_away RENAME TO app', "waiting: RENAME back $i");
	wait_workers("waiting: workers back after rename back $i");
}
log_is_quiet($offset, $rounds, 'waiting, rename');

$offset = -s $node->logfile;
for my $i (1 .. $rounds)
{
	first_time("CREATE DATABASE clone$i TEMPLATE app", "waiting: TEMPLATE $i");
	wait_workers("waiting: workers back after clone $i");
	first_time("DROP DATABASE clone$i", "waiting: drop clone $i");
}
log_is_quiet($offset, $rounds, 'waiting, template');

# --- While they are busy ------------------------------------------------
# metric_anomaly.debug_hold_round stops the aggregation worker in the
# middle of a round: one batch of the round committed, the next folded and
# not committed, until a command makes it step aside (its batch rolls
# back).  So every command below meets a worker mid-round, however fast or
# slow the machine.  The setting reaches the workers that start after the
# reload for certain (the postmaster reloads before it starts any worker
# asked for later), so app is dropped and made again after turning it on;
# it stays on, and every worker that comes back holds again, until the
# end, where turning it off lets the folding finish.
sub hold_rounds
{
	my ($on) = @_;
	$node->safe_psql('postgres',
		"ALTER SYSTEM SET metric_anomaly.debug_hold_round = $on");
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
}

# The aggregation worker of app holds mid-round.
sub wait_held
{
	my ($what) = @_;
	ok($node->poll_query_until('postgres', q{
		SELECT count(*) = 1 FROM pg_stat_activity
		 WHERE backend_type = 'metric_anomaly worker' AND datname = 'app'
		   AND query = 'metric_anomaly aggregation pass: held mid-round (metric_anomaly.debug_hold_round)'}),
		"busy: mid-round before $what");
}

hold_rounds('on');
first_time('DROP DATABASE app', 'busy: DROP DATABASE before the first hold');
first_time('CREATE DATABASE app', 'busy: CREATE DATABASE before the first hold');
$node->safe_psql('app', 'CREATE EXTENSION metric_anomaly');
ok($node->poll_query_until('app', q{
	SELECT count(*) = 1 FROM metric_anomaly.worker_status WHERE running}),
	'the worker serves app');

$offset = -s $node->logfile;
for my $i (1 .. $rounds)
{
	add_events(1000);
	wait_held("DROP $i");
	first_time('DROP DATABASE app', "busy: DROP DATABASE $i");
	is(workers_in('app'), '0', "busy: no worker after DROP $i");
	first_time('CREATE DATABASE app', "busy: CREATE DATABASE $i");
	$node->safe_psql('app', 'CREATE EXTENSION metric_anomaly');
	wait_workers("busy: workers back after recreate $i");
	$total = 0;
}
log_is_quiet($offset, $rounds, 'busy, drop');

$offset = -s $node->logfile;
for my $i (1 .. $rounds)
{
	add_events(1000);
	wait_held("RENAME $i");
	first_time('ALTER DATABASE app RENAME TO app_away', "busy: RENAME $i");
	is(workers_in('app_away'), '0', "busy: no worker follows the rename $i");
	first_time('ALTER DATABASE app_away RENAME TO app', "busy: RENAME back $i");
	wait_workers("busy: workers back after rename back $i");
}
log_is_quiet($offset, $rounds, 'busy, rename');

$offset = -s $node->logfile;
for my $i (1 .. $rounds)
{
	my $before = add_events(1000);
	wait_held("TEMPLATE $i");
	first_time("CREATE DATABASE clone$i TEMPLATE app", "busy: TEMPLATE $i");
	wait_workers("busy: workers back after clone $i");
	# The clone holds what app had committed, a round under way included:
	# a first pass of its own ends that round, a second folds the events
	# its snapshot did not see, exactly.
	$node->safe_psql("clone$i", 'SELECT metric_anomaly.process_pending()');
	$node->safe_psql("clone$i", 'SELECT metric_anomaly.process_pending()');
	is($node->safe_psql("clone$i", 'SELECT pending_events FROM metric_anomaly.worker_status'),
		'0', "busy: clone $i has nothing pending");
	is(folded_count("clone$i"), "$before", "busy: clone $i counts exactly");
	first_time("DROP DATABASE clone$i", "busy: drop clone $i");
}
log_is_quiet($offset, $rounds, 'busy, template');

# Let go: the worker folds the rest, every batch cut off counted once.
hold_rounds('off');
wait_folded('app', 'busy, after the holds');
is(folded_count('app'), "$total", 'busy, rename and template: every event counted once');

# --- A delivery cut off mid-send is sent again with the same key ---------
my $rcv = start_receiver("${PostgreSQL::Test::Utils::tmp_check}/rcv_aside", 0, "hang\n200\n");
$node->safe_psql('app', qq{
INSERT INTO metric_anomaly.alert_channels (name, kind, url)
VALUES ('hook', 'webhook', 'http://127.0.0.1:$rcv->{port}/hook');
INSERT INTO metric_anomaly.series (metric_name, filled_until)
VALUES ('cut', pg_catalog.date_trunc('minute', pg_catalog.now()));
INSERT INTO metric_anomaly.aggregated_metrics
  (metric_name, metric_timestamp, metric_value, sample_count, is_anomaly, anomaly_context, needs_eval)
VALUES ('cut', '2026-01-01 00:00:00+00', 0, 1, true,
        '{"method":"3-sigma","mean":100,"std_dev":5,"upper_boundary":115,"lower_boundary":85}', false);
SELECT metric_anomaly.evaluate_alerts('2026-01-01 00:00+00', '2026-01-02 00:00+00')});
is(scalar(wait_requests($rcv, 1)), 1, 'the delivery is being sent');
$offset = -s $node->logfile;
first_time('CREATE DATABASE clone_send TEMPLATE app', 'TEMPLATE while a delivery is in flight');
ok($node->poll_query_until('app', q{
	SELECT d.state = 'sent' FROM metric_anomaly.deliveries d
	  JOIN metric_anomaly.alerts a ON a.id = d.alert_id WHERE a.metric_name = 'cut'}),
	'the cut-off delivery is sent after the comeback');
my @req = requests($rcv);
is(scalar @req, 2, 'sent twice in all');
is($req[0]{headers}{'idempotency-key'}, $req[1]{headers}{'idempotency-key'},
	'with the same Idempotency-Key');
log_is_quiet($offset, 1, 'delivery');
stop_receiver($rcv);

# Nothing ever made the postmaster restart the cluster.
is(count_matches($node, qr/terminated by signal|all server processes terminated/), 0, 'no crash restart');

$node->stop;
done_testing();

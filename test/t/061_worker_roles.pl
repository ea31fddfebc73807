# start_worker() and start_delivery_worker() are idempotent for every role
# allowed to call them, worker_status tells every role the truth, and a
# database served by the launcher's worker gets no second one from
# start_worker().  (Before: an admin who is not a superuser cannot see the
# workers in pg_stat_activity, so each call started another, and
# worker_status showed no worker to anyone but superusers.)
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MaTest;

# Workers of each kind in postgres, counted by the superuser.
sub running
{
	my ($node, $type) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT count(*) FROM pg_stat_activity
		 WHERE backend_type = '$type' AND datname = 'postgres'});
}

sub as
{
	my ($node, $role, $sql) = @_;
	return $node->safe_psql('postgres', $sql, extra_params => [ '-U', $role ]);
}

# --- Without preload: start_worker() called by an admin, not a superuser ---
my $node = PostgreSQL::Test::Cluster->new('roles');
$node->init;
$node->append_conf('postgresql.conf', "metric_anomaly.interval = 1\nmax_worker_processes = 16\n");
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION metric_anomaly;
	CREATE ROLE boss LOGIN NOSUPERUSER IN ROLE metric_anomaly_admin;
	CREATE ROLE reader LOGIN NOSUPERUSER});

my $pid = as($node, 'boss', 'SELECT metric_anomaly.start_worker()');
like($pid, qr/^\d+$/, 'an admin starts the workers');
is(running($node, 'metric_anomaly worker'), '1', 'start_worker() returns once the worker runs');
for my $i (1 .. 3)
{
	is(as($node, 'boss', 'SELECT metric_anomaly.start_worker()'), $pid,
		"call $i by the admin returns the running worker");
}
is(running($node, 'metric_anomaly worker'), '1', 'one aggregation worker after four calls');
is(running($node, 'metric_anomaly delivery'), '1', 'and one delivery worker');
my $dpid = as($node, 'boss', 'SELECT metric_anomaly.start_delivery_worker()');
is(as($node, 'boss', 'SELECT metric_anomaly.start_delivery_worker()'), $dpid,
	'start_delivery_worker() by the admin is idempotent');
is(running($node, 'metric_anomaly delivery'), '1', 'still one delivery worker');

# The node's superuser is the OS user initdb ran as, not always "postgres".
my $superuser = $node->safe_psql('postgres', 'SELECT current_user');
for my $role ($superuser, 'boss', 'reader')
{
	is(as($node, $role, 'SELECT pid, running FROM metric_anomaly.worker_status'), "$pid|t",
		"worker_status shows the worker to $role");
}
$node->stop;

# --- With preload: start_worker() adds nothing to the launcher's worker ---
$node = ma_node('roles_preload', database => 'postgres');
$node->safe_psql('postgres', q{
	CREATE EXTENSION metric_anomaly;
	CREATE ROLE boss LOGIN NOSUPERUSER IN ROLE metric_anomaly_admin});
ok($node->poll_query_until('postgres', 'SELECT running FROM metric_anomaly.worker_status'),
	'the launcher\'s worker serves postgres');
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_locks
	 WHERE locktype = 'advisory' AND classid = 28001 AND objid = 2 AND objsubid = 28001 AND granted}),
	'with its delivery worker');
$pid = $node->safe_psql('postgres', 'SELECT pid FROM metric_anomaly.worker_status');
is(as($node, 'boss', 'SELECT metric_anomaly.start_worker()'), $pid, 'the admin gets the launcher\'s worker');
is($node->safe_psql('postgres', 'SELECT metric_anomaly.start_worker()'), $pid, 'so does the superuser');
is(running($node, 'metric_anomaly worker'), '1', 'no second aggregation worker');
is(running($node, 'metric_anomaly delivery'), '1', 'no second delivery worker');
$node->stop;
done_testing();

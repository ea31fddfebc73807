# Helpers shared by the TAP tests of metric_anomaly.
package MaTest;

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Exporter 'import';
use IPC::Run;
use Test::More;

our @EXPORT = qw(ma_node worker_pid count_matches crash_kill settle crash_under_writers);

# A started node that preloads metric_anomaly, its worker serving $db
# every $interval seconds.  Extra settings may follow.
sub ma_node
{
	my ($name, %opt) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(allows_streaming => $opt{allows_streaming} // 0);
	my $db = $opt{database} // 'postgres';
	my $interval = $opt{interval} // 1;
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'metric_anomaly'
metric_anomaly.database = '$db'
metric_anomaly.interval = $interval
max_worker_processes = 16
log_min_messages = log
} . ($opt{conf} // ''));
	$node->start;
	return $node;
}

# The pid of the aggregation worker of $db, or '' when none runs.
sub worker_pid
{
	my ($node, $db) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT pid FROM pg_stat_activity
		 WHERE backend_type = 'metric_anomaly worker' AND datname = '$db'});
}

# How many times $re matches the server log from byte $offset on.
sub count_matches
{
	my ($node, $re, $offset) = @_;
	my $log = slurp_file($node->logfile);
	$log = substr($log, $offset // 0);
	my @m = ($log =~ /$re/g);
	return scalar @m;
}

# Kills server process $pid with SIGKILL and waits, polling the log with the
# tests' deadline, until the postmaster's crash restart has ended.  A psql
# started during the restart can exit before it reads its query, and
# poll_query_until then dies of a broken pipe (002_crash, under load).
sub crash_kill
{
	my ($node, $pid) = @_;
	my $ready = qr/database system is ready to accept connections/;
	my $before = count_matches($node, $ready);
	my $deadline = time + ($PostgreSQL::Test::Utils::timeout_default // 180);
	kill 'KILL', $pid;
	while (count_matches($node, $ready) <= $before)
	{
		die "the server did not restart after the crash" if time > $deadline;
		select(undef, undef, undef, 0.1);
	}
	return;
}

# Waits until the worker serving postgres has finished two more passes and
# nothing is pending (one test).
sub settle
{
	my ($node) = @_;
	my $p = $node->safe_psql('postgres', 'SELECT passes FROM metric_anomaly.worker_status');
	ok($node->poll_query_until('postgres', qq{
		SELECT passes >= $p + 2 AND pending_events = 0 FROM metric_anomaly.worker_status}),
		'the worker passed twice more with nothing pending');
	return;
}

# Runs pgbench (4 clients for 12 s) with the statement $sql as its script
# against postgres and kills the aggregation worker with SIGKILL 4 s in,
# in the middle of its batches; returns when pgbench has ended and the
# worker is back (two tests).
sub crash_under_writers
{
	my ($node, $sql) = @_;
	my $script = $node->basedir . '/insert.sql';
	PostgreSQL::Test::Utils::append_to_file($script, $sql);
	my ($bout, $berr) = ('', '');
	my $bench = IPC::Run::start(
		[ 'pgbench', '-n', '-c', '4', '-T', '12', '-f', $script, '-d', $node->connstr('postgres') ],
		'>', \$bout, '2>', \$berr);
	sleep(4);
	my $pid = worker_pid($node, 'postgres');
	like($pid, qr/^\d+$/, 'the worker runs under load');
	crash_kill($node, $pid);
	$bench->finish;
	ok($node->poll_query_until('postgres', 'SELECT running FROM metric_anomaly.worker_status'),
		'the worker is back after the crash restart');
	return;
}

1;

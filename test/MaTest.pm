# Helpers shared by the TAP tests of metric_anomaly.
package MaTest;

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Exporter 'import';

our @EXPORT = qw(ma_node worker_pid count_matches crash_kill);

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

1;

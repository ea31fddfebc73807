# Two sessions run process_pending() at the same time as the worker, over
# one backlog: every event is claimed by exactly one of the three.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MaTest;

my $events = 100_000;
my $node = ma_node('concurrent', interval => 1,
	conf => "metric_anomaly.batch_size = 1000\n");
$node->safe_psql('postgres', 'CREATE EXTENSION metric_anomaly');
ok($node->poll_query_until('postgres', 'SELECT running FROM metric_anomaly.worker_status'),
	'the worker runs');

$node->safe_psql('postgres', qq{
	INSERT INTO metric_anomaly.business_events (event_type, event_timestamp)
	SELECT 'c' || (i % 5), now() - interval '3 hours' + (i % 10800) * interval '1 second'
	  FROM generate_series(1, $events) AS i});

my @out = ('', '');
my @err = ('', '');
my @h;
for my $i (0, 1)
{
	push @h, IPC::Run::start(
		[ 'psql', '-XAtq', '-d', $node->connstr('postgres'),
		  '-c', 'SET metric_anomaly.batch_size = 700',
		  '-c', 'SELECT metric_anomaly.process_pending()' ],
		'>', \$out[$i], '2>', \$err[$i]);
}
$_->finish for @h;
chomp @out;
like($out[$_], qr/^\d+$/, "session $_ folded $out[$_] events") for (0, 1);
is("$err[0]$err[1]", '', 'without errors');

ok($node->poll_query_until('postgres', q{
	SELECT pending_events = 0 FROM metric_anomaly.worker_status}),
	'the backlog is drained');
cmp_ok($out[0] + $out[1], '<=', $events, 'the sessions together folded no more than there was');
is($node->safe_psql('postgres',
	'SELECT sum(sample_count) FROM metric_anomaly.aggregated_metrics'),
	$events, 'sum(sample_count) equals the number of events exactly');
is($node->safe_psql('postgres', 'SELECT total_events FROM metric_anomaly.worker_state'),
	$events, 'and so does the folded total');

$node->stop;
done_testing();

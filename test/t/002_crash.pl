# kill -9 of the worker in the middle of a 200,000-event backlog: after the
# crash restart every event is counted exactly once.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);
use MaTest;

my $events = 200_000;
# Small batches make the backlog take many transactions.
my $node = ma_node('crash', interval => 1,
	conf => "metric_anomaly.batch_size = 2000\nrestart_after_crash = on\n");
$node->safe_psql('postgres', 'CREATE EXTENSION metric_anomaly');
ok($node->poll_query_until('postgres', 'SELECT running FROM metric_anomaly.worker_status'),
	'the worker runs');

$node->safe_psql('postgres', qq{
	INSERT INTO metric_anomaly.business_events (event_type, event_timestamp)
	SELECT 'type_' || (i % 7), now() - interval '6 hours' + (i % 21600) * interval '1 second'
	  FROM generate_series(1, $events) AS i});

# Wait until the worker is part-way through, then kill it.
ok($node->poll_query_until('postgres',
	'SELECT total_events > 0 FROM metric_anomaly.worker_state'),
	'the worker started on the backlog');
my $pid = worker_pid($node, 'postgres');
like($pid, qr/^\d+$/, 'worker pid known');
my $done_before_kill = $node->safe_psql('postgres',
	'SELECT total_events FROM metric_anomaly.worker_state');
crash_kill($node, $pid);
cmp_ok($done_before_kill, '<', $events,
	"killed part-way ($done_before_kill of $events folded just before)");

# The postmaster restarts everything; the worker resumes the backlog.
ok($node->poll_query_until('postgres', q{
	SELECT pending_events = 0 FROM metric_anomaly.worker_status}),
	'the backlog is drained after the crash restart');
isnt(worker_pid($node, 'postgres'), $pid, 'by a new worker');
ok(count_matches($node, qr/terminated by signal 9/) >= 1, 'the log shows the crash');

is($node->safe_psql('postgres',
	'SELECT sum(sample_count) FROM metric_anomaly.aggregated_metrics'),
	$events, 'sum(sample_count) equals the number of events exactly');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (
	  SELECT event_type, date_trunc('minute', event_timestamp) AS m, count(*) AS n
	    FROM metric_anomaly.business_events GROUP BY 1, 2) e
	  FULL JOIN metric_anomaly.aggregated_metrics a
	    ON a.metric_name = e.event_type AND a.metric_timestamp = e.m
	 WHERE a.sample_count IS DISTINCT FROM e.n AND coalesce(a.sample_count, 0) <> 0}),
	'0', 'every minute of every type matches a count over the raw events');
is($node->safe_psql('postgres', 'SELECT total_events FROM metric_anomaly.worker_state'),
	$events, 'worker_status counted each event once too');

$node->stop;
done_testing();

# The worker folds events by itself, on schedule, and follows a reload.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);
use MaTest;

my $node = ma_node('worker', interval => 1);
$node->safe_psql('postgres', 'CREATE EXTENSION metric_anomaly');

# Events of the past minutes are folded by the worker alone.  The two
# minutes are fixed when the events are made: a check against now() would
# look at other minutes once a minute boundary passed in between (it did,
# under load on 18).
my $base = $node->safe_psql('postgres', q{
	SELECT date_trunc('minute', now()) - interval '2 minutes'});
$node->safe_psql('postgres', qq{
	INSERT INTO metric_anomaly.business_events (event_type, event_timestamp)
	SELECT 'signup', '$base'::timestamptz + i * interval '1 second'
	  FROM generate_series(0, 119) AS i});
ok($node->poll_query_until('postgres', q{
	SELECT pending_events = 0 FROM metric_anomaly.worker_status}),
	'the worker folds pending events by itself');

is($node->safe_psql('postgres', qq{
	SELECT sum(sample_count) FROM metric_anomaly.aggregated_metrics
	 WHERE metric_name = 'signup'
	   AND metric_timestamp >= '$base'::timestamptz
	   AND metric_timestamp < '$base'::timestamptz + interval '2 minutes'}),
	'120', 'every event counted once');

my $pid = worker_pid($node, 'postgres');
like($pid, qr/^\d+$/, 'the worker shows in pg_stat_activity');
is($node->safe_psql('postgres', q{
	SELECT running, pid = } . $pid . q{, total_events, pending_events, last_error IS NULL
	  FROM metric_anomaly.worker_status}),
	"t|t|120|0|t", 'worker_status shows the worker and its work');

# start_worker() does not start a second worker next to a running one.
my ($ret, $out, $err) = $node->psql('postgres', 'SELECT metric_anomaly.start_worker()');
is($out, $pid, 'start_worker() returns the running worker');
like($err, qr/already running/, 'and says so');

# SIGHUP: a long interval stops the passes.  Passes align to multiples of
# the interval, so stay clear of an hour boundary.
my $sec_of_hour = $node->safe_psql('postgres',
	q{SELECT floor(extract(epoch FROM now()))::bigint % 3600});
sleep(3600 - $sec_of_hour + 1) if $sec_of_hour > 3590;
$node->safe_psql('postgres', 'ALTER SYSTEM SET metric_anomaly.interval = 3600');
$node->reload;
# With a 1 s interval a pass ends every second: three seconds without one
# means the worker has the new interval.
ok($node->poll_query_until('postgres', q{
	SELECT now() - last_pass_end > interval '3 seconds' FROM metric_anomaly.worker_state}),
	'the worker takes the 3600 s interval');
my $passes = $node->safe_psql('postgres', 'SELECT passes FROM metric_anomaly.worker_state');
my $inserted = $node->safe_psql('postgres', q{
	INSERT INTO metric_anomaly.business_events (event_type) VALUES ('late_reload')
	RETURNING event_timestamp});
ok($node->poll_query_until('postgres', qq{
	SELECT now() - '$inserted'::timestamptz > interval '3 seconds'}), 'three seconds pass');
is($node->safe_psql('postgres', q{
	SELECT passes = } . $passes . q{, pending_events FROM metric_anomaly.worker_status}),
	't|1', 'after the reload to 3600 s no pass runs');

$node->safe_psql('postgres', 'ALTER SYSTEM SET metric_anomaly.interval = 1');
$node->reload;
ok($node->poll_query_until('postgres', q{
	SELECT pending_events = 0 FROM metric_anomaly.worker_status}),
	'after the reload to 1 s the event is folded');
is(worker_pid($node, 'postgres'), $pid, 'by the same worker, without a restart');

# Passes keep to the wall clock: several passes later, every pass started
# within a second of the previous one.
my $p1 = $node->safe_psql('postgres', 'SELECT passes FROM metric_anomaly.worker_state');
ok($node->poll_query_until('postgres', qq{
	SELECT passes >= $p1 + 2 FROM metric_anomaly.worker_state}),
	'passes run every interval');

# A fast shutdown is prompt even while the worker sleeps.
$node->stop('fast');
$node->start;
ok($node->poll_query_until('postgres', q{SELECT running FROM metric_anomaly.worker_status}),
	'the worker comes back after a restart');

done_testing();

# The worker and DROP DATABASE: another database drops freely; its own
# drops (also WITH (FORCE)) once the workers have stepped aside, is waited
# for without a crash loop, and comes back.  Every wait is a poll.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MaTest;

# The worker's database does not exist yet: said once, then waited for.
my $node = ma_node('dbs', database => 'app', interval => 1);
sub wait_log
{
	my ($re, $what) = @_;
	for (1 .. 1800)
	{
		return pass($what) if count_matches($node, $re) > 0;
		select(undef, undef, undef, 0.1);
	}
	fail($what);
}
wait_log(qr/database "app" does not exist; waiting for it/, 'a missing database is reported');

$node->safe_psql('postgres', 'CREATE DATABASE app');
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity
	 WHERE backend_type = 'metric_anomaly worker' AND datname = 'app'}),
	'the worker starts once the database exists');
wait_log(qr/extension "metric_anomaly" is not installed in database "app"; waiting for it/,
	'a database without the extension is reported by the aggregation worker');
wait_log(qr/extension "metric_anomaly" is not installed in database "app", delivery waits for it/,
	'and by the delivery worker');

$node->safe_psql('app', 'CREATE EXTENSION metric_anomaly');
$node->safe_psql('app', q{
	INSERT INTO metric_anomaly.business_events (event_type, event_timestamp)
	VALUES ('a', now() - interval '1 minute'), ('a', now() - interval '1 minute')});
ok($node->poll_query_until('app', q{
	SELECT pending_events = 0 FROM metric_anomaly.worker_status}),
	'the worker works once the extension exists');
# Many loops of the launcher and the workers later, each said it once.
is(count_matches($node, qr/database "app" does not exist; waiting for it/), 1,
	'the missing database was reported once');
is(count_matches($node, qr/extension "metric_anomaly" is not installed in database "app"; waiting for it/), 1,
	'the missing extension once by the aggregation worker');
is(count_matches($node, qr/extension "metric_anomaly" is not installed in database "app", delivery waits for it/), 1,
	'and once by the delivery worker');

# Another database is created and dropped while the worker runs.
$node->safe_psql('postgres', 'CREATE DATABASE other');
my ($ret) = $node->psql('postgres', 'DROP DATABASE other');
is($ret, 0, 'DROP DATABASE of another database succeeds');

# Its own database, WITH (FORCE).
my $offset = -s $node->logfile;
($ret, my $out, my $err) = $node->psql('postgres', 'DROP DATABASE app WITH (FORCE)');
is($ret, 0, 'DROP DATABASE WITH (FORCE) of its own database succeeds') or diag $err;
is(count_matches($node, qr/the workers of database "app" step aside for DROP DATABASE/, $offset), 1,
	'the workers step aside, saying so once');

# Recreated with the extension, the worker comes back to work.
$node->safe_psql('postgres', 'CREATE DATABASE app');
$node->safe_psql('app', 'CREATE EXTENSION metric_anomaly');
$node->safe_psql('app', q{
	INSERT INTO metric_anomaly.business_events (event_type, event_timestamp)
	SELECT 'b', now() - interval '1 minute' FROM generate_series(1, 3)});
ok($node->poll_query_until('app', q{
	SELECT pending_events = 0 FROM metric_anomaly.worker_status}),
	'recreating the database brings the worker back to work');
is($node->safe_psql('app', q{SELECT sum(sample_count) FROM metric_anomaly.aggregated_metrics}),
	'3', 'with exact counts');
is(count_matches($node, qr/background worker "metric_anomaly (worker|delivery)".*exited/, $offset), 0,
	'no worker failed after the drop');
is(count_matches($node, qr/does not exist; waiting for it/, $offset), 0,
	'the launcher waited for the dropped database without a word');
is(count_matches($node, qr/terminated by signal|server process .* was terminated/, $offset), 0,
	'no crash');

$node->stop;
done_testing();

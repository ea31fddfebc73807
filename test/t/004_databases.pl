# The worker and DROP DATABASE: another database drops freely; its own
# drops WITH (FORCE), is waited for without a crash loop, and comes back.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);
use MaTest;

# The worker's database does not exist yet: said once, then waited for.
my $node = ma_node('dbs', database => 'app', interval => 1);
sleep(3);
is(count_matches($node, qr/database "app" does not exist; waiting for it/), 1,
	'a missing database is reported once');

$node->safe_psql('postgres', 'CREATE DATABASE app');
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity
	 WHERE backend_type = 'metric_anomaly worker' AND datname = 'app'}),
	'the worker starts once the database exists');
sleep(2.5);
is(count_matches($node, qr/extension "metric_anomaly" is not installed in database "app"; waiting for it/), 1,
	'a database without the extension is reported once by the aggregation worker');
is(count_matches($node, qr/extension "metric_anomaly" is not installed in database "app", delivery waits for it/), 1,
	'and once by the delivery worker');

$node->safe_psql('app', 'CREATE EXTENSION metric_anomaly');
$node->safe_psql('app', q{
	INSERT INTO metric_anomaly.business_events (event_type, event_timestamp)
	VALUES ('a', now() - interval '1 minute'), ('a', now() - interval '1 minute')});
ok($node->poll_query_until('app', q{
	SELECT pending_events = 0 FROM metric_anomaly.worker_status}),
	'the worker works once the extension exists');

# Another database is created and dropped while the worker runs.
$node->safe_psql('postgres', 'CREATE DATABASE other');
my ($ret) = $node->psql('postgres', 'DROP DATABASE other');
is($ret, 0, 'DROP DATABASE of another database succeeds');

# Its own database, WITH (FORCE).
my $offset = -s $node->logfile;
($ret, my $out, my $err) = $node->psql('postgres', 'DROP DATABASE app WITH (FORCE)');
is($ret, 0, 'DROP DATABASE WITH (FORCE) of its own database succeeds') or diag $err;
sleep(12);
is(count_matches($node, qr/database "app" does not exist; waiting for it/, $offset), 1,
	'the dropped database is reported once');
cmp_ok(count_matches($node, qr/background worker "metric_anomaly worker".*exited/, $offset), '<=', 1,
	'no crash loop of the aggregation worker after the drop');
cmp_ok(count_matches($node, qr/background worker "metric_anomaly delivery".*exited/, $offset), '<=', 1,
	'nor of the delivery worker');
is(count_matches($node, qr/terminated by signal|server process .* was terminated/, $offset), 0,
	'no crash');

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

$node->stop;
done_testing();

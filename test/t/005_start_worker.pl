# Without shared_preload_libraries (managed services), start_worker() runs
# the same worker as a dynamic background worker; it does not survive a
# restart.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MaTest;

my $node = PostgreSQL::Test::Cluster->new('dynamic');
$node->init;
$node->append_conf('postgresql.conf', "metric_anomaly.interval = 1\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION metric_anomaly');

is($node->safe_psql('postgres', q{
	SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'metric_anomaly%'}),
	'0', 'nothing runs without preload');

$node->safe_psql('postgres', q{
	INSERT INTO metric_anomaly.business_events (event_type, event_timestamp)
	SELECT 'dyn', now() - interval '2 minutes' FROM generate_series(1, 42)});
my $pid = $node->safe_psql('postgres', 'SELECT metric_anomaly.start_worker()');
like($pid, qr/^\d+$/, 'start_worker() returns a pid');
# start_worker() returns once the worker serves the database.
is(worker_pid($node, 'postgres'), $pid, 'the worker runs in this database');
is($node->safe_psql('postgres', 'SELECT pid FROM metric_anomaly.worker_status'), $pid,
	'worker_status shows it at once');

ok($node->poll_query_until('postgres', q{
	SELECT pending_events = 0 FROM metric_anomaly.worker_status}),
	'the dynamic worker folds the events');
is($node->safe_psql('postgres', q{
	SELECT sum(sample_count) FROM metric_anomaly.aggregated_metrics WHERE metric_name = 'dyn'}),
	'42', 'exactly once');
is($node->safe_psql('postgres', 'SELECT metric_anomaly.start_worker()'), $pid,
	'a second call returns the running worker');

# A role outside metric_anomaly_admin may not start workers.
$node->safe_psql('postgres', 'CREATE ROLE app LOGIN');
my ($ret, $out, $err) = $node->psql('postgres', 'SELECT metric_anomaly.start_worker()',
	extra_params => [ '-U', 'app' ]);
like($err, qr/permission denied for function start_worker/, 'start_worker() is for admins');

$node->restart;
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'metric_anomaly worker'}),
	'0', 'the dynamic worker does not survive a restart');

$node->stop;
done_testing();

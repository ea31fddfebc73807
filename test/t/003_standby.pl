# On a hot standby the worker does nothing; promotion starts the work.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);
use MaTest;

# The primary's worker serves a database that does not exist, so the
# events stay pending in "app" for the standby to see.
my $primary = ma_node('primary', allows_streaming => 1, database => 'elsewhere');
$primary->safe_psql('postgres', 'CREATE DATABASE app');
$primary->safe_psql('app', 'CREATE EXTENSION metric_anomaly');
$primary->safe_psql('app', q{
	INSERT INTO metric_anomaly.business_events (event_type, event_timestamp)
	SELECT 'standby_event', now() - interval '10 minutes' + i * interval '1 second'
	  FROM generate_series(1, 500) AS i});

$primary->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b', has_streaming => 1);
$standby->append_conf('postgresql.conf', "metric_anomaly.database = 'app'\n");
$standby->start;
$primary->wait_for_catchup($standby);

# The launcher would have started within a second of the server.
ok($standby->poll_query_until('postgres', q{
	SELECT now() - pg_postmaster_start_time() > interval '3 seconds'}), 'the standby has run a while');
is($standby->safe_psql('postgres', q{
	SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'metric_anomaly%'}),
	'0', 'no metric_anomaly process runs on the standby');
is($standby->safe_psql('app', q{
	SELECT pending_events FROM metric_anomaly.worker_status}),
	'500', 'the standby sees the events, unprocessed');
is(count_matches($standby, qr/metric_anomaly.*(ERROR|FATAL)|read-only transaction/), 0,
	'the standby logs no metric_anomaly error');

$standby->promote;
ok($standby->poll_query_until('app', q{
	SELECT pending_events = 0 FROM metric_anomaly.worker_status}),
	'after promotion the worker folds the events');
is($standby->safe_psql('app', q{
	SELECT sum(sample_count) FROM metric_anomaly.aggregated_metrics
	 WHERE metric_name = 'standby_event'}),
	'500', 'each exactly once');

$standby->stop;
$primary->stop;
done_testing();

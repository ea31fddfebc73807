# pg_upgrade of a cluster that preloads metric_anomaly: the worker does not
# start in the servers pg_upgrade runs, and the data and the worker come
# through.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MaTest;

my $old = ma_node('old', interval => 1);
$old->safe_psql('postgres', 'CREATE EXTENSION metric_anomaly');
$old->safe_psql('postgres', q{
	INSERT INTO metric_anomaly.business_events (event_type, event_timestamp)
	SELECT 'up', now() - interval '10 minutes' + i * interval '1 second'
	  FROM generate_series(1, 300) AS i});
ok($old->poll_query_until('postgres', q{
	SELECT pending_events = 0 FROM metric_anomaly.worker_status}),
	'the old cluster folded its events');
$old->stop;

my $new = PostgreSQL::Test::Cluster->new('new');
$new->init;
$new->append_conf('postgresql.conf', q{
shared_preload_libraries = 'metric_anomaly'
metric_anomaly.interval = 1
});

my $bindir = `pg_config --bindir`;
chomp $bindir;
# pg_upgrade before 15 has no --no-sync and writes its logs into the
# current directory; 15 added the option and moved the logs to
# pg_upgrade_output.d/TIMESTAMP/log/ in the new data directory.  (13's
# PostgresNode has no pg_version, so the version comes from pg_config.)
my ($major) = `pg_config --version` =~ /PostgreSQL (\d+)/
	or BAIL_OUT('pg_config --version prints no PostgreSQL version');
my $workdir = PostgreSQL::Test::Utils::tempdir;
chdir $workdir;
command_ok(
	[ 'pg_upgrade', ($major >= 15 ? ('--no-sync') : ()), '--retain',
	  '-d', $old->data_dir, '-D', $new->data_dir,
	  '-b', $bindir, '-B', $bindir,
	  '-s', $new->host, '-p', $old->port, '-P', $new->port ],
	'pg_upgrade succeeds');

# The servers pg_upgrade ran (in binary-upgrade mode) started no worker.
my @logs = $major >= 15
	? glob($new->data_dir . '/pg_upgrade_output.d/*/log/pg_upgrade_server*.log')
	: glob("$workdir/pg_upgrade_server*.log");
ok(@logs > 0, 'pg_upgrade kept its server logs');
my $launched = 0;
$launched += () = slurp_file($_) =~ /metric_anomaly launcher|metric_anomaly: starting workers/g for @logs;
is($launched, 0, 'no metric_anomaly worker ran during pg_upgrade');

$new->start;
is($new->safe_psql('postgres', q{
	SELECT sum(sample_count) FROM metric_anomaly.aggregated_metrics WHERE metric_name = 'up'}),
	'300', 'the counts came through');
$new->safe_psql('postgres', q{
	INSERT INTO metric_anomaly.business_events (event_type, event_timestamp)
	VALUES ('up', now() - interval '1 minute')});
ok($new->poll_query_until('postgres', q{
	SELECT pending_events = 0 FROM metric_anomaly.worker_status}),
	'the upgraded cluster runs the worker');
is($new->safe_psql('postgres', q{
	SELECT sum(sample_count) FROM metric_anomaly.aggregated_metrics WHERE metric_name = 'up'}),
	'301', 'and counts on');

$new->stop;
done_testing();

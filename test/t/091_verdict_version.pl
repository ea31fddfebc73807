# A verdict is written only to the row version it judged.  Session B
# changes the value of a dirty minute and holds its transaction open while
# a pass in session A reads the old version, judges it and blocks writing
# the verdict on B's row lock; B commits.  The pass must leave that minute
# dirty (its verdict was of a value the row no longer holds) and keep it
# out of alerting, write the other series' verdict, and the next pass must
# judge the value B wrote.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('verdict_version');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'metric_anomaly'
metric_anomaly.database = 'no_such_database'
});
$node->start;

# T0 is the minute judged; both series are filled up to it, so the pass
# only evaluates (zero-fill would otherwise wait on B's row too).
my $t0 = '2026-11-20 12:00+00';
$node->safe_psql('postgres', qq{
CREATE EXTENSION metric_anomaly;
INSERT INTO metric_anomaly.metrics (metric_name, method, window_size, min_points, alert_after, alert_window)
VALUES ('v', '3-sigma', 10, 5, 1, 1), ('w', '3-sigma', 10, 5, 1, 1);
INSERT INTO metric_anomaly.aggregated_metrics (metric_name, metric_timestamp, metric_value, sample_count, needs_eval)
SELECT n, timestamptz '$t0' - m * interval '1 minute', 10 + m % 3, 1, false
  FROM unnest(array['v', 'w']) AS n, generate_series(1, 30) AS m;
INSERT INTO metric_anomaly.aggregated_metrics (metric_name, metric_timestamp, metric_value, sample_count)
VALUES ('v', '$t0', 1000, 1), ('w', '$t0', 1000, 1);
INSERT INTO metric_anomaly.series (metric_name, filled_until)
VALUES ('v', '$t0'), ('w', '$t0');
});

my $b = $node->background_psql('postgres', on_error_stop => 1);
$b->query_safe(qq{BEGIN; UPDATE metric_anomaly.aggregated_metrics SET metric_value = 11
  WHERE metric_name = 'v' AND metric_timestamp = '$t0'});

my ($out, $err) = ('', '');
my $a = IPC::Run::start(
	[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'),
	  '-c', "SELECT metric_anomaly.process_pending(timestamptz '$t0' + interval '1 minute')" ],
	'>', \$out, '2>', \$err);
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_catalog.pg_stat_activity
	 WHERE wait_event_type = 'Lock' AND query LIKE '%process_pending%'}),
	'the pass waits on the row B changed');
$b->query_safe('COMMIT');
$a->finish;
is($err, '', 'the pass ends without an error');

my $rows = q{SELECT metric_name, metric_value, needs_eval, is_anomaly,
                    anomaly_context IS NOT NULL
               FROM metric_anomaly.aggregated_metrics
              WHERE metric_timestamp = '} . $t0 . q{' ORDER BY metric_name};
is($node->safe_psql('postgres', $rows), "v|11|t|f|f\nw|1000|f|t|t",
	'the changed minute stays dirty and unjudged; the other series is judged');
my $episodes = q{SELECT string_agg(metric_name || ':' || firing, ',' ORDER BY metric_name)
                   FROM metric_anomaly.alert_episodes};
is($node->safe_psql('postgres', $episodes), 'w:true', 'only the written verdict reached alerting');

$node->safe_psql('postgres', "SELECT metric_anomaly.process_pending(timestamptz '$t0' + interval '1 minute')");
is($node->safe_psql('postgres', $rows), "v|11|f|f|t\nw|1000|f|t|t",
	'the next pass judges the value B wrote');
is($node->safe_psql('postgres', $episodes), 'w:true', 'and it alerts nothing');

$b->quit;
$node->stop;
done_testing();

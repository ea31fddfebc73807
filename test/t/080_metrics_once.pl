# Metric definitions fold exactly once (their state commits with the
# round's progress): pgbench writers through a kill -9 of the worker, in
# small batches; afterwards the stored counts, sums, duplicates and
# quantiles equal what the committed events say.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MaTest;

my $node = ma_node('metrics_once', interval => 1,
	conf => "restart_after_crash = on\nmetric_anomaly.batch_size = 300\n");
$node->safe_psql('postgres', 'CREATE EXTENSION metric_anomaly');
$node->safe_psql('postgres', q{
	INSERT INTO metric_anomaly.metric_definitions
	       (metric_name, event_types, aggregate, value_path, quantile, dimensions, business_key)
	VALUES ('v_sum', '{job}', 'sum', '{v}', NULL, '{node}', NULL),
	       ('v_p90', '{job}', 'quantile', '{v}', 0.9, '{node}', NULL),
	       ('jobs_once', '{job}', 'count', NULL, NULL, '{}', '{key}')});
ok($node->poll_query_until('postgres', 'SELECT running FROM metric_anomaly.worker_status'),
	'the worker runs');

crash_under_writers($node,
	"INSERT INTO metric_anomaly.business_events (event_type, payload) "
	  . "SELECT 'job', jsonb_build_object('node', 'n' || (random() * 3)::int, "
	  . "'v', 1 + (random() * 1000)::int, 'key', (random() * 5000)::int) "
	  . "FROM generate_series(1, 5);\n");
settle($node);

my $committed = $node->safe_psql('postgres', q{
	SELECT count(*) FROM metric_anomaly.business_events WHERE event_type = 'job'});
cmp_ok($committed, '>', 0, "pgbench committed $committed events");
is($node->safe_psql('postgres', q{
	SELECT string_agg(format('%s:%s:%s', n, c, s), ' ' ORDER BY n)
	  FROM (SELECT p.dimensions ->> 'node' AS n, sum(p.count) AS c, sum(p.sum)::bigint AS s
	          FROM metric_anomaly.metric_points p WHERE p.metric_name = 'v_sum' GROUP BY 1) x}),
	$node->safe_psql('postgres', q{
	SELECT string_agg(format('%s:%s:%s', n, c, s), ' ' ORDER BY n)
	  FROM (SELECT payload ->> 'node' AS n, count(*) AS c, sum((payload ->> 'v')::int) AS s
	          FROM metric_anomaly.business_events WHERE event_type = 'job' GROUP BY 1) x}),
	'per node, the stored counts and sums equal the committed events through the kill -9');
is($node->safe_psql('postgres', q{
	SELECT metric_anomaly.aggregate_value('jobs_once', '{}', '-infinity', 'infinity', 'count')
	       = (SELECT count(DISTINCT payload ->> 'key') FROM metric_anomaly.business_events WHERE event_type = 'job')
	   AND (SELECT events FROM metric_anomaly.metric_skipped_events
	         WHERE metric_name = 'jobs_once' AND reason = 'duplicate')
	       = (SELECT count(*) - count(DISTINCT payload ->> 'key') FROM metric_anomaly.business_events WHERE event_type = 'job')}),
	't', 'each business key counted once, every repeat counted as a duplicate');
is($node->safe_psql('postgres', q{
	SELECT bool_and(abs(est - exact) <= 0.01 * exact)
	  FROM (SELECT metric_anomaly.quantile('v_p90', jsonb_build_object('node', n), '-infinity', 'infinity', 0.9) AS est,
	               (SELECT percentile_disc(0.9) WITHIN GROUP (ORDER BY (payload ->> 'v')::float8)
	                  FROM metric_anomaly.business_events
	                 WHERE event_type = 'job' AND payload ->> 'node' = n) AS exact
	          FROM (SELECT DISTINCT payload ->> 'node' AS n FROM metric_anomaly.business_events) d) x}),
	't', 'the p90 of each node is within 1% of percentile_disc');

$node->stop;
done_testing();

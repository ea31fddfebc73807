# pg_dump and pg_restore keep everything alerting needs: a restored database
# holds the same channels, routes, rules, alerts, episodes and deliveries
# (with their sequences), and the next pass there alerts exactly as it would
# have in the original, repeating no alert.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# No worker: passes run by hand at fixed times, in both databases alike.
my $node = PostgreSQL::Test::Cluster->new('dump');
$node->init;
$node->append_conf('postgresql.conf', q{
metric_anomaly.min_points = 5
metric_anomaly.window = 30
metric_anomaly.alert_max_age = 0
metric_anomaly.alert_cooldown = 0
metric_anomaly.alert_resolve_after = 2
metric_anomaly.event_retention = 0
metric_anomaly.alert_retention = 0
});
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE orig');
$node->safe_psql('orig', 'CREATE EXTENSION metric_anomaly');

# Events from 2026-01-01 00:00 UTC, "minute" minutes on, "n" of them.
sub add_events
{
	my ($db, $metric, $minute, $n) = @_;
	$node->safe_psql($db, qq{
		INSERT INTO metric_anomaly.business_events (event_type, event_timestamp)
		SELECT '$metric', '2026-01-01 00:00+00'::timestamptz + $minute * interval '1 minute' + (i % 60) * interval '1 second'
		  FROM generate_series(1, $n) i});
}

sub pass_until
{
	my ($db, $minute) = @_;
	return $node->safe_psql($db, qq{
		SELECT metric_anomaly.process_pending('2026-01-01 00:00+00'::timestamptz + $minute * interval '1 minute')});
}

# signup: 20 normal minutes, a spike at 00:20, normal again (resolved at
# 00:22).  orders: 22 normal minutes, then a spike at 00:22 still firing.
$node->safe_psql('orig', q{
INSERT INTO metric_anomaly.alert_channels (name, kind, url, secret, options)
VALUES ('hook', 'webhook', 'http://127.0.0.1:9/hook', 'whsec', '{"chart": false}');
INSERT INTO metric_anomaly.alert_channels (name, kind, url, enabled)
VALUES ('ops', 'slack', 'http://127.0.0.1:9/services/T/B/X', false);
INSERT INTO metric_anomaly.alert_routes VALUES ('orders', 'hook'), ('orders', 'ops');
INSERT INTO metric_anomaly.alert_rules (rule_name, metric_name, above) VALUES ('orders_flood', 'orders', 1000);
INSERT INTO metric_anomaly.metrics (metric_name, sigma, method) VALUES ('orders', 3.5, '3-sigma'), ('signup', NULL, '3-sigma');
});
for my $m (0 .. 22)
{
	add_events('orig', 'signup', $m, $m == 20 ? 100 : 10 + $m % 3);
	add_events('orig', 'orders', $m, $m == 22 ? 200 : 20 + $m % 2);
}
pass_until('orig', 23);
is($node->safe_psql('orig', q{
	SELECT string_agg(metric_name || ' ' || state || ' ' || to_char(minute AT TIME ZONE 'UTC', 'HH24:MI'), ', ' ORDER BY id)
	  FROM metric_anomaly.alerts}),
	'orders firing 00:22, signup firing 00:20, signup resolved 00:22',
	'the original database alerted');

my $dump = "${PostgreSQL::Test::Utils::tmp_check}/orig.dump";
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('orig') ], 'pg_dump');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', $node->connstr('restored'), $dump ], 'pg_restore');

# Every table the extension's users and passes fill, row for row, and the
# sequences.  worker_state (pass counters) is bookkeeping and starts over.
my $state = join ' UNION ALL ', map {
	qq{SELECT '$_', count(*), md5(coalesce(string_agg(r::text, '|' ORDER BY r::text), '')) FROM metric_anomaly.$_ r}
} qw(business_events aggregated_metrics series metrics alert_channels alert_routes
	alert_rules alerts alert_episodes deliveries);
$state .= q{ UNION ALL SELECT sequencename::text, last_value, 'sequence' FROM pg_sequences
	WHERE schemaname = 'metric_anomaly'};
$state = "SELECT * FROM ($state) s ORDER BY 1";
is($node->safe_psql('restored', $state), $node->safe_psql('orig', $state),
	'the restored database holds the same rows and sequence positions');
is($node->safe_psql('restored', q{
	SELECT string_agg(name || ' ' || kind || ' ' || coalesce(secret, '-') || ' ' || enabled, ', ' ORDER BY name)
	  FROM metric_anomaly.alert_channels}),
	'hook webhook whsec true, ops slack - false', 'the channels, with their secrets');
is($node->safe_psql('restored', q{
	SELECT count(*), count(*) FILTER (WHERE firing) FROM metric_anomaly.alert_episodes}),
	'2|1', 'the episodes, the orders one still firing');

# Replaying the minutes already alerted writes nothing.
is($node->safe_psql('restored', q{
	SELECT metric_anomaly.evaluate_alerts('2026-01-01 00:00+00', '2026-01-01 00:23+00')}),
	'0', 'minutes alerted before the dump are not alerted again');

# The next minute, in both: orders is still high, signup normal.  The
# restored database writes what the original writes: nothing new.
for my $db ('orig', 'restored')
{
	add_events($db, 'signup', 23, 11);
	add_events($db, 'orders', 23, 190);
	is(pass_until($db, 24), '201', "$db: the next pass folds the new events");
}
my $alerts = q{SELECT string_agg(id || ' ' || metric_name || ' ' || state || ' ' || source || ' ' || episode_start, ', ' ORDER BY id)
	FROM metric_anomaly.alerts};
is($node->safe_psql('restored', $alerts), $node->safe_psql('orig', $alerts),
	'the restored database alerts as the original does');
is($node->safe_psql('restored', 'SELECT count(*) FROM metric_anomaly.alerts'), '3',
	'and repeats no alert');
my $after = q{SELECT (SELECT string_agg(e::text, '|' ORDER BY e::text) FROM metric_anomaly.alert_episodes e),
	(SELECT string_agg(concat_ws(' ', id, alert_id, channel, idempotency_key, state), '|' ORDER BY id)
	   FROM metric_anomaly.deliveries),
	(SELECT md5(string_agg(m::text, '|' ORDER BY m::text)) FROM metric_anomaly.aggregated_metrics m)};
is($node->safe_psql('restored', $after), $node->safe_psql('orig', $after),
	'both databases hold the same episodes, deliveries and metrics after the pass');

# A new alert after the restore takes a new id, so its idempotency key is new.
is($node->safe_psql('restored', q{
	SELECT nextval('metric_anomaly.alerts_id_seq') > max(id), nextval('metric_anomaly.deliveries_id_seq') > (SELECT max(id) FROM metric_anomaly.deliveries)
	  FROM metric_anomaly.alerts}),
	't|t', 'the sequences continue after the restored rows');

$node->stop;
done_testing();

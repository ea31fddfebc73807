# Alerting driven by the real worker: a collapse in business events makes
# exactly one firing and one resolved delivery; a receiver that never
# answers does not delay aggregation.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MIME::Base64 qw(decode_base64);
use MaAlert;

my $node = alert_node('alert_detect', "metric_anomaly.alert_cooldown = '1h'\nmetric_anomaly.alert_timeout = '6s'\n");
my $rcv = start_receiver("${PostgreSQL::Test::Utils::tmp_check}/rcv_detect", 0, "200\n");
$node->safe_psql('postgres', qq{
INSERT INTO metric_anomaly.alert_channels (name, kind, url) VALUES ('hook', 'webhook', 'http://127.0.0.1:$rcv->{port}/hook')});
$node->safe_psql('postgres', 'SELECT metric_anomaly.start_delivery_worker()')
  unless $node->safe_psql('postgres',
	q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'metric_anomaly delivery'});

# 40 minutes of signups ending a minute ago; minutes 25-27 have none.
$node->safe_psql('postgres', q{
INSERT INTO metric_anomaly.metrics (metric_name, window_size, min_points, method) VALUES ('signup', 10, 5, '3-sigma');
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp)
SELECT 'signup', pg_catalog.date_trunc('minute', now()) - interval '40 minutes' + g * interval '1 minute' + i * interval '1 second'
  FROM generate_series(0, 39) g, generate_series(1, 9 + g % 3) i
 WHERE g NOT BETWEEN 25 AND 27});
$node->poll_query_until('postgres',
	q{SELECT count(*) = 2 FROM metric_anomaly.alerts WHERE metric_name = 'signup'})
  or die 'no firing and resolved alert';
is($node->safe_psql('postgres', q{
SELECT string_agg(a.state || ' ' || (a.minute - (pg_catalog.date_trunc('minute', a.created_at) - interval '40 minutes')), ', ' ORDER BY a.id)
  FROM metric_anomaly.alerts a WHERE a.metric_name = 'signup'}) =~ /^firing 00:25:00, resolved 00:(2[6-9]|3\d):00$/ ? 1 : 0,
	1, 'one firing alert at the collapse, one resolved alert after it');
$node->poll_query_until('postgres', q{SELECT count(*) = 2 FROM metric_anomaly.deliveries WHERE state = 'sent'})
  or die 'not delivered';
my @req = requests($rcv);
is(scalar @req, 2, 'exactly two deliveries');
like($req[0]{body}, qr/"metric":"signup".*"state":"firing","source":"3-sigma"/, 'firing delivery');
like($req[0]{body}, qr/"context":\{[^}]*"method": "3-sigma"/, 'with the detection evidence');
my ($b64) = $req[0]{body} =~ /"chart_png_base64":"([^"]+)"/;
ok(defined $b64, 'chart attached');
is(substr(decode_base64($b64 // ''), 0, 8), "\x89PNG\r\n\x1a\n", 'a valid PNG');
like($req[1]{body}, qr/"state":"resolved"/, 'resolved delivery');
isnt($req[0]{headers}{'idempotency-key'}, $req[1]{headers}{'idempotency-key'}, 'one key per alert');
sleep 3;
is($node->safe_psql('postgres', q{SELECT count(*) FROM metric_anomaly.alerts WHERE metric_name = 'signup'}),
	'2', 'no more alerts while the worker keeps running');

# A backfill: a collapse 2.5 hours ago is older than alert_max_age (1h).
# Its events run 3 minutes into the future, so that no live collapse
# follows before detection of it is switched off below.
$node->safe_psql('postgres', q{
INSERT INTO metric_anomaly.metrics (metric_name, window_size, min_points, method) VALUES ('old_signup', 10, 5, '3-sigma');
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp)
SELECT 'old_signup', pg_catalog.date_trunc('minute', now()) - interval '180 minutes' + g * interval '1 minute' + i * interval '1 second'
  FROM generate_series(0, 183) g, generate_series(1, 9 + g % 3) i
 WHERE g NOT BETWEEN 30 AND 32});
$node->poll_query_until('postgres', q{SELECT count(*) > 0 FROM metric_anomaly.aggregated_metrics
  WHERE metric_name = 'old_signup' AND is_anomaly}) or die 'backfill not detected';
$node->poll_query_until('postgres', q{SELECT count(*) = 0 FROM metric_anomaly.aggregated_metrics
  WHERE metric_name = 'old_signup' AND needs_eval
    AND metric_timestamp < pg_catalog.date_trunc('minute', now()) - interval '1 minute'})
  or die 'backfill not evaluated';
is($node->safe_psql('postgres', q{SELECT count(*) FROM metric_anomaly.alerts WHERE metric_name = 'old_signup'}),
	'0', 'an episode older than alert_max_age is not alerted');
is($node->safe_psql('postgres', q{SELECT count(*) FROM metric_anomaly.aggregated_metrics
  WHERE metric_name = 'old_signup' AND is_anomaly
    AND metric_timestamp < now() - interval '1 hour'}) > 0 ? 1 : 0,
	1, 'although detection flagged it');
# The zeros after the backfill's end would be a live collapse, which is not
# what the rest of this test is about.
$node->safe_psql('postgres', q{UPDATE metric_anomaly.metrics SET enabled = false WHERE metric_name = 'old_signup'});

# --- a receiver that never answers does not delay aggregation ---
stop_receiver($rcv);
unlink glob("$rcv->{dir}/req-*");
$rcv = start_receiver($rcv->{dir}, $rcv->{port}, "hang\n200\n");
put_minutes($node, 'stuck', 0, 0, 0, 1);
$node->safe_psql('postgres', q{SELECT metric_anomaly.evaluate_alerts('2026-01-01', '2026-01-02')});
wait_requests($rcv, 1);
my $p0 = $node->safe_psql('postgres', 'SELECT passes FROM metric_anomaly.worker_status');
sleep 4;
my $p1 = $node->safe_psql('postgres', 'SELECT passes FROM metric_anomaly.worker_status');
cmp_ok($p1 - $p0, '>=', 3, 'aggregation passes go on every second while a send hangs');
is($node->safe_psql('postgres', q{SELECT d.state || ' ' || d.in_flight FROM metric_anomaly.deliveries d
  JOIN metric_anomaly.alerts a ON a.id = d.alert_id WHERE a.metric_name = 'stuck'}), 'pending true', 'the delivery is in flight');
$node->poll_query_until('postgres', q{SELECT d.state = 'sent' FROM metric_anomaly.deliveries d
  JOIN metric_anomaly.alerts a ON a.id = d.alert_id WHERE a.metric_name = 'stuck'}) or die 'not sent after the timeout';
is($node->safe_psql('postgres', q{SELECT attempts FROM metric_anomaly.deliveries d
  JOIN metric_anomaly.alerts a ON a.id = d.alert_id WHERE a.metric_name = 'stuck'}), '2', 'timed out, then sent');

# --- asked to stop during a send, the worker aborts the transfer at once ---
stop_receiver($rcv);
unlink glob("$rcv->{dir}/req-*");
$rcv = start_receiver($rcv->{dir}, $rcv->{port}, "hang\n200\n");
$node->safe_psql('postgres', q{ALTER SYSTEM SET metric_anomaly.alert_timeout = '120s'; SELECT pg_reload_conf()});
sleep 1;
put_minutes($node, 'stopped', 0, 0, 0, 1);
$node->safe_psql('postgres', q{SELECT metric_anomaly.evaluate_alerts('2026-01-01', '2026-01-02')});
wait_requests($rcv, 1);
my $pid = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'metric_anomaly delivery'});
my $t0 = time;
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
$node->poll_query_until('postgres', "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid")
  or die 'worker did not stop';
cmp_ok(time - $t0, '<=', 5, 'the worker stops within seconds although the endpoint never answers');
sleep 2;
$node->safe_psql('postgres', 'SELECT metric_anomaly.start_delivery_worker()')
  unless $node->safe_psql('postgres',
	q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'metric_anomaly delivery'});
$node->poll_query_until('postgres', q{SELECT d.state = 'sent' FROM metric_anomaly.deliveries d
  JOIN metric_anomaly.alerts a ON a.id = d.alert_id WHERE a.metric_name = 'stopped'}) or die 'not sent after restart';
@req = requests($rcv);
is(scalar @req, 2, 'sent again by the next worker');
is($req[0]{headers}{'idempotency-key'}, $req[1]{headers}{'idempotency-key'}, 'with the same key');

stop_receiver($rcv);
$node->stop;
done_testing();

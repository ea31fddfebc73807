# Scheduled reports end to end: the worker runs them on the wall clock,
# the delivery worker posts them with the run's PNG to a local receiver;
# skips below the sample minimum; one catch-up run after downtime;
# latest_report.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MIME::Base64 qw(decode_base64);
use Time::HiRes qw(usleep);
use MaAlert;

my $node = alert_node('reports');
my $rcv = start_receiver("${PostgreSQL::Test::Utils::tmp_check}/rcv_reports", 0, "200\n");
my $url = "http://127.0.0.1:$rcv->{port}/reports";

# Orders and amount for the last 30 minutes, registered as filled so the
# worker leaves them be; the reports' hour covers all of them.
$node->safe_psql('postgres', qq{
INSERT INTO metric_anomaly.alert_channels (name, kind, url) VALUES ('hook', 'webhook', '$url');
INSERT INTO metric_anomaly.series (metric_name, filled_until)
SELECT m, pg_catalog.date_trunc('minute', pg_catalog.now()) FROM unnest('{orders,amount}'::text[]) m;
INSERT INTO metric_anomaly.aggregated_metrics (metric_name, metric_timestamp, metric_value, sample_count, needs_eval)
SELECT m, pg_catalog.date_trunc('minute', pg_catalog.now()) - g * interval '1 minute',
       CASE m WHEN 'orders' THEN 3 ELSE 25.5 END, 3, false
  FROM generate_series(1, 30) g, unnest('{orders,amount}'::text[]) m;
INSERT INTO metric_anomaly.reports (name, kind, metrics, right_axis, range, title, channels, run_every, min_samples)
VALUES ('sales', 'line_chart', '{orders,amount}', '{amount}', '1 hour', 'Orders and amount', '{hook}', '10 seconds', 10),
       ('needs_more', 'line_chart', '{orders}', '{}', '1 hour', 'Orders', '{hook}', '10 seconds', 1000000)});
$node->safe_psql('postgres', 'SELECT metric_anomaly.start_delivery_worker()')
  unless $node->safe_psql('postgres',
	q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'metric_anomaly delivery'});

# --- on schedule: two runs, 10 seconds apart, both delivered ---
my @req = wait_requests($rcv, 2);
is(scalar(grep { $_->{body} =~ /"metric":"sales"/ } @req), 2, 'two runs of sales delivered');
my $r = $req[0];
like($r->{body}, qr/"state":"report","source":"report"/, 'delivered as a report');
like($r->{body}, qr/"summary":"Orders and amount \(totals: orders 90, amount 765\)"/,
	'the title with the totals of the range');
my ($b64) = $r->{body} =~ /"chart_png_base64":"([^"]+)"/;
ok(defined $b64, 'the PNG travels with the report');
my $png = decode_base64($b64 // '');
is(substr($png, 0, 8), "\x89PNG\r\n\x1a\n", 'it is a PNG');
my ($alert_id) = $r->{body} =~ /^\{"alert_id":(\d+),/;
query_ok($node, qq{SELECT png = decode('$b64', 'base64') FROM metric_anomaly.report_runs
                    WHERE alert_id = $alert_id},
	't', 'the PNG sent is the one its run stored');
query_ok($node, q{SELECT count(*) FILTER (WHERE pg_catalog.date_part('second', slot)::int % 10 <> 0),
                         count(*) FILTER (WHERE slot > pg_catalog.now())
                    FROM metric_anomaly.report_runs WHERE report_name = 'sales'},
	'0|0', 'slots on multiples of 10 seconds, none in the future');
my ($k1) = $req[0]->{headers}{'idempotency-key'};
my ($k2) = $req[1]->{headers}{'idempotency-key'};
isnt($k1, $k2, 'each run has its own idempotency key');
query_ok($node, q{SELECT substr(metric_anomaly.latest_report('sales'), 1, 8) = '\x89504e470d0a1a0a'::bytea},
	't', 'latest_report returns a PNG');

# --- below the minimum: skipped, recorded, never sent ---
$node->poll_query_until('postgres',
	q{SELECT count(*) >= 2 FROM metric_anomaly.report_runs WHERE report_name = 'needs_more' AND status = 'skipped'})
  or die 'needs_more never skipped';
query_ok($node, q{SELECT DISTINCT error FROM metric_anomaly.report_runs WHERE report_name = 'needs_more'},
	'90 samples in the range, fewer than the minimum of 1000000', 'the skip says why');
query_ok($node, q{SELECT last_status, last_run_at IS NOT NULL FROM metric_anomaly.reports WHERE name = 'needs_more'},
	'skipped|t', 'the report records its last skip');
is(scalar(grep { $_->{body} =~ /"metric":"needs_more"/ } requests($rcv)), 0, 'a skipped report sends nothing');

# --- downtime: a report due while the server was down runs once ---
# Every run before the stop has a slot at or before t_stopped.  The slots
# missed while down all end before t_up - 10 (a slot runs at or after its
# time); the catch-up is the slot of the first pass after the restart,
# after t_up - 10.
$node->stop('fast');
my $t_stopped = time;
sleep 25;    # two and a half intervals
$node->start;
my $t_up = time;
$node->safe_psql('postgres', 'SELECT metric_anomaly.start_delivery_worker()')
  unless $node->safe_psql('postgres',
	q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'metric_anomaly delivery'});
$node->poll_query_until('postgres',
	qq{SELECT count(*) > 0 FROM metric_anomaly.report_runs
        WHERE report_name = 'sales' AND slot > to_timestamp($t_up - 10)})
  or die 'no run after the restart';
query_ok($node, qq{SELECT count(*) FROM metric_anomaly.report_runs
                    WHERE report_name = 'sales' AND slot > to_timestamp($t_stopped) AND slot <= to_timestamp($t_up - 10)},
	'0', 'the slots missed while down did not run');
query_ok($node, qq{SELECT min(slot) > to_timestamp($t_up - 10) AND min(slot) <= pg_catalog.now()
                    FROM metric_anomaly.report_runs WHERE report_name = 'sales' AND slot > to_timestamp($t_stopped)},
	't', 'one catch-up run, at the slot of the restart');
$node->poll_query_until('postgres',
	q{SELECT bool_and(d.state = 'sent') FROM metric_anomaly.deliveries d
        JOIN metric_anomaly.report_runs r ON r.alert_id = d.alert_id WHERE r.report_name = 'sales'})
  or die 'report deliveries not all sent';

$node->stop;
done_testing();

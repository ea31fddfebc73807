# Alerting security: URL validation, admin-only channels, the host
# allowlist, test_channel(), no secrets in messages.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MaAlert;

my $node = alert_node('alert_security');
my $rcv = start_receiver("${PostgreSQL::Test::Utils::tmp_check}/rcv_security", 0, "200\n");
my $url = "http://127.0.0.1:$rcv->{port}/hook/TOPSECRET";

$node->safe_psql('postgres', q{
CREATE ROLE alice LOGIN IN ROLE metric_anomaly_admin;
CREATE ROLE bob LOGIN;});

# --- non-http(s) URLs are refused at creation, without echoing them ---
for my $bad ('file:///etc/passwd', 'ftp://127.0.0.1/x', 'gopher://127.0.0.1/', 'http://', 'http://exa mple.com/')
{
	my ($ret, $out, $err) = $node->psql('postgres',
		qq{INSERT INTO metric_anomaly.alert_channels (name, url) VALUES ('bad', '$bad')},
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	isnt($ret, 0, "$bad refused");
	like($err, qr/ERROR:  22023: url of alert channel "bad" must be an http or https URL/, "$bad: clear error with errcode");
	like($err, qr/HINT:  Use an address such as https:/, "$bad: hint");
	my $q = quotemeta $bad;
	unlike((split /STATEMENT|LOCATION/, $err)[0], qr/$q/, "$bad: URL not repeated in the message");
}
my ($ret, $out, $err) = $node->psql('postgres',
	qq{UPDATE metric_anomaly.alert_channels SET url = 'file:///x'});
is($ret, 0, 'update of no rows');
$node->safe_psql('postgres', qq{INSERT INTO metric_anomaly.alert_channels (name, url) VALUES ('hook', '$url')});
($ret, $out, $err) = $node->psql('postgres', q{UPDATE metric_anomaly.alert_channels SET url = 'file:///x'});
like($err, qr/must be an http or https URL/, 'changing the URL to file:// refused');

# --- only metric_anomaly_admin reads and writes channels ---
for my $obj ('alert_channels', 'deliveries', 'delivery_status', 'alert_routes', 'alert_rules', 'alerts')
{
	($ret, $out, $err) = $node->psql('postgres', "SELECT * FROM metric_anomaly.$obj",
		extra_params => [ '-U', 'bob' ]);
	like($err, qr/permission denied for (table|view) $obj/, "bob cannot read $obj");
}
($ret, $out, $err) = $node->psql('postgres', "SELECT metric_anomaly.test_channel('hook')",
	extra_params => [ '-U', 'bob' ]);
like($err, qr/permission denied for function test_channel/, 'bob cannot call test_channel');
is($node->safe_psql('postgres', 'SELECT url FROM metric_anomaly.alert_channels', extra_params => [ '-U', 'alice' ]),
	$url, 'a member of metric_anomaly_admin reads channels');
$node->safe_psql('postgres', q{INSERT INTO metric_anomaly.alert_rules (rule_name, metric_name, above) VALUES ('r', 'x', 1)},
	extra_params => [ '-U', 'alice' ]);
pass('a member of metric_anomaly_admin writes rules');

# --- test_channel() posts a test message and returns the status ---
is($node->safe_psql('postgres', "SELECT metric_anomaly.test_channel('hook')", extra_params => [ '-U', 'alice' ]),
	'200', 'test_channel returns the HTTP status');
my @req = wait_requests($rcv, 1);
like($req[0]{body}, qr/"metric":"metric_anomaly_test".*"test":true/, 'test message body');
set_script($rcv, "503\n");
($ret, $out, $err) = $node->psql('postgres', "SELECT metric_anomaly.test_channel('hook')");
is($out, '503', 'test_channel returns an error status');
like($err, qr/WARNING:  alert channel "hook" refused the test message: HTTP status 503/, 'with a warning');
($ret, $out, $err) = $node->psql('postgres', "SELECT metric_anomaly.test_channel('nope')");
like($err, qr/alert channel "nope" does not exist/, 'unknown channel');

# --- the allowlist is superuser-only and enforced on send ---
($ret, $out, $err) = $node->psql('postgres', q{SET metric_anomaly.webhook_allowed_hosts = ''},
	extra_params => [ '-U', 'alice' ]);
like($err, qr/permission denied to set parameter "metric_anomaly.webhook_allowed_hosts"/, 'allowlist is superuser-only');
$node->safe_psql('postgres', q{ALTER SYSTEM SET metric_anomaly.webhook_allowed_hosts = 'hooks.example.com, .example.org'; SELECT pg_reload_conf()});
$node->poll_query_until('postgres', q{SELECT current_setting('metric_anomaly.webhook_allowed_hosts') <> ''}) or die;
sleep 1;
($ret, $out, $err) = $node->psql('postgres', "SELECT metric_anomaly.test_channel('hook')");
like($err, qr/ERROR:  alert channel "hook" cannot be used: host "127.0.0.1" is not in metric_anomaly.webhook_allowed_hosts/,
	'test_channel refuses a host outside the allowlist');
unlike($err, qr/TOPSECRET/, 'without the URL');

$node->safe_psql('postgres', 'SELECT metric_anomaly.start_delivery_worker()')
  unless $node->safe_psql('postgres',
	q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'metric_anomaly delivery'});
unlink glob("$rcv->{dir}/req-*");
put_minutes($node, 'x', 0, 0, 0, 1);
$node->safe_psql('postgres', q{SELECT metric_anomaly.evaluate_alerts('2026-01-01', '2026-01-02')});
$node->poll_query_until('postgres', q{SELECT count(*) = 1 AND bool_and(state = 'dead') FROM metric_anomaly.deliveries})
  or die 'not dead';
is($node->safe_psql('postgres', q{SELECT DISTINCT attempts || ' ' || last_error FROM metric_anomaly.deliveries}),
	'1 host "127.0.0.1" is not in metric_anomaly.webhook_allowed_hosts', 'delivery to a host outside the allowlist is dead');
is(scalar(requests($rcv)), 0, 'nothing was sent');

$node->safe_psql('postgres', q{ALTER SYSTEM SET metric_anomaly.webhook_allowed_hosts = '127.0.0.1'; SELECT pg_reload_conf()});
$node->poll_query_until('postgres', q{SELECT current_setting('metric_anomaly.webhook_allowed_hosts') = '127.0.0.1'}) or die;
sleep 1;
set_script($rcv, "200\n");
is($node->safe_psql('postgres', "SELECT metric_anomaly.test_channel('hook')"), '200', 'allowed host passes');

my @entries = grep { !/LOG:  statement:|STATEMENT:/ }
  split /^(?=\d{4}-\d\d-\d\d )/m, slurp_file($node->logfile);
ok(!(grep { /TOPSECRET/ } @entries), 'channel URL never logged');

stop_receiver($rcv);
$node->stop;
done_testing();

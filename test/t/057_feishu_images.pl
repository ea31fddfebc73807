# Feishu app images against the local receiver: with an app id and secret,
# the text is followed by a tenant token, the chart's upload (multipart,
# image_type=message) and an image message; the exact sequence of requests,
# and a retry that resumes at the first step not accepted (the upload, with
# the kept token).  Half an app configuration is refused at write time.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Digest::SHA qw(hmac_sha256_base64);
use JSON::PP;
use MaAlert;

my $node = alert_node('feishu_images');
my $rcv = start_receiver("${PostgreSQL::Test::Utils::tmp_check}/rcv_feishu_app", 0,
	qq(200 {"code":0,"msg":"success"}\n)
	  . qq(200 {"code":0,"msg":"ok","tenant_access_token":"t-TESTTOKEN","expire":7200}\n)
	  . qq(500 {"code":99991400,"msg":"busy"}\n)
	  . qq(200 {"code":0,"data":{"image_key":"img_v2_TESTKEY"},"msg":"success"}\n)
	  . qq(200 {"code":0,"msg":"success"}\n));
my $base = "http://127.0.0.1:$rcv->{port}";

# ---------- write-time checks ----------

for my $b (
	[ q{'{"app_id": "cli_test"}', 'plain-signing-secret'},
		'alert channel "f" of kind feishu needs options.app_id and the app secret to send images' ],
	[ q{'{}', '{"app_secret": "APPSECRET"}'},
		'alert channel "f" of kind feishu needs options.app_id and the app secret to send images' ],
	[ q{'{"app_id": "cli_test"}', '{"app_secret": "APPSECRET", "other": "x"}'},
		'alert channel "f" of kind feishu needs options.app_id and the app secret to send images' ],
	[ q{'{"app_id": "cli_test", "api_base": "ftp://open.feishu.cn"}', '{"app_secret": "APPSECRET"}'},
		'options.api_base of alert channel "f" must be an http or https base URL' ])
{
	my ($ret, $out, $err) = $node->psql('postgres',
		"INSERT INTO metric_anomaly.alert_channels (name, kind, url, options, secret) VALUES ('f', 'feishu', '$base/hook', $b->[0])");
	my ($msg) = $err =~ /ERROR:\s+(.*)/;
	is($msg, $b->[1], "refused: $b->[1]");
	unlike($err, qr/APPSECRET|plain-signing/, 'the error does not quote the secret');
}

# ---------- text, token, upload (refused once), image ----------

$node->safe_psql('postgres', qq{
INSERT INTO metric_anomaly.alert_channels (name, kind, url, secret, options) VALUES
 ('app', 'feishu', '$base/open-apis/bot/v2/hook/HOOK', '{"app_secret": "APPSECRET", "sign": "SIGNSECRET"}',
  '{"app_id": "cli_test", "api_base": "$base"}');
INSERT INTO metric_anomaly.alert_routes VALUES ('k', 'app')});
put_minutes($node, 'k', 0, 0, 3, 1);
query_ok($node, q{SELECT metric_anomaly.evaluate_alerts('2026-01-01', '2026-01-02')}, '1', 'one alert');
$node->safe_psql('postgres', 'SELECT metric_anomaly.start_delivery_worker()');
$node->poll_query_until('postgres', q{SELECT state = 'sent' FROM metric_anomaly.deliveries WHERE channel = 'app'})
  or die 'not sent: ' . $node->safe_psql('postgres', 'SELECT channel, state, last_error FROM metric_anomaly.deliveries');
query_ok($node, q{SELECT attempts || ' ' || steps_done || ' ' || step_state FROM metric_anomaly.deliveries WHERE channel = 'app'},
	'2 3 img_v2_TESTKEY', 'two attempts; three steps recorded before the last; the image key kept, the token no longer');

my @r = requests($rcv);
is(join(',', map { $_->{path} } @r),
	'/open-apis/bot/v2/hook/HOOK,/open-apis/auth/v3/tenant_access_token/internal,'
	  . '/open-apis/im/v1/images,/open-apis/im/v1/images,/open-apis/bot/v2/hook/HOOK',
	'text, token, upload, upload again (the retry resumes there), image message');
my $json = JSON::PP->new;
sub b64pad { my $s = shift; $s .= '=' while length($s) % 4; return $s }

# 1: the text, signed with the "sign" of the secret.
my $b = $json->decode($r[0]{body});
is($b->{msg_type}, 'text', 'text first');
like($b->{content}{text}, qr/^\[FIRING\] k\n/, 'the alert text');
is($b->{sign}, b64pad(hmac_sha256_base64('', "$b->{timestamp}\nSIGNSECRET")), 'signed with secret.sign');

# 2: the tenant token for the app.
is($r[1]{headers}{'content-type'}, 'application/json; charset=utf-8', 'token request is JSON');
is_deeply($json->decode($r[1]{body}), { app_id => 'cli_test', app_secret => 'APPSECRET' }, 'app id and secret');

# 3, 4: the upload, twice the same, with the token as bearer.
for my $u (@r[ 2, 3 ])
{
	is($u->{headers}{authorization}, 'Bearer t-TESTTOKEN', 'upload with the tenant token');
	my ($bd) = $u->{headers}{'content-type'} =~ /^multipart\/form-data; boundary=(\S+)$/;
	ok(defined $bd, 'multipart/form-data with a boundary');
	my @parts = split /--\Q$bd\E(?:--)?\r\n/, $u->{body};
	shift @parts;
	is(scalar @parts, 2, 'two fields');
	is($parts[0], qq{Content-Disposition: form-data; name="image_type"\r\n\r\nmessage\r\n}, 'image_type=message');
	my ($ph, $png) = split /\r\n\r\n/, $parts[1], 2;
	is($ph, qq{Content-Disposition: form-data; name="image"; filename="chart.png"\r\nContent-Type: image/png},
		'image field headers');
	$png =~ s/\r\n$//;
	is(substr($png, 0, 8), "\x89PNG\r\n\x1a\n", 'the chart as PNG');
	is(substr($png, -8, 4), 'IEND', 'whole');
}
is($r[3]{body}, $r[2]{body}, 'the retried upload is the same');

# 5: the image message with the uploaded key, signed.
$b = $json->decode($r[4]{body});
is($b->{msg_type}, 'image', 'image message last');
is_deeply($b->{content}, { image_key => 'img_v2_TESTKEY' }, 'with the image key');
is($b->{sign}, b64pad(hmac_sha256_base64('', "$b->{timestamp}\nSIGNSECRET")), 'signed too');

# Without the chart (options.chart false) the app sends the text alone.
unlink glob("$rcv->{dir}/req-*");
set_script($rcv, qq(200 {"code":0}\n));
$node->safe_psql('postgres', q{UPDATE metric_anomaly.alert_channels SET options = options || '{"chart": false}' WHERE name = 'app'});
put_minutes($node, 'k', 1, 2, 100, 0);
put_minutes($node, 'k', 3, 3, 3, 1);
query_ok($node, q{SELECT metric_anomaly.evaluate_alerts('2026-01-01', '2026-01-02')}, '2', 'resolved and firing again');
$node->poll_query_until('postgres', q{SELECT count(*) = 3 FROM metric_anomaly.deliveries WHERE channel = 'app' AND state = 'sent'})
  or die 'not sent';
is(join(',', map { $json->decode($_->{body})->{msg_type} } requests($rcv)), 'text,text', 'text only, one per alert');

stop_receiver($rcv);
$node->stop;
done_testing();

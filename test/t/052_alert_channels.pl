# Each channel kind sends what its platform documents: path, headers, body
# shape and signature (computed here by the platform's published algorithm).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Digest::SHA qw(hmac_sha256_base64 hmac_sha256_hex);
use Digest::MD5 qw(md5_hex);
use MIME::Base64 qw(decode_base64);
use JSON::PP;
use MaAlert;

my $node = alert_node('alert_channels');
my $rcv = start_receiver("${PostgreSQL::Test::Utils::tmp_check}/rcv_channels", 0,
	qq(200 {"errcode":0,"errmsg":"ok","code":0,"msg":"success"}\n));
my $bot = start_receiver("${PostgreSQL::Test::Utils::tmp_check}/rcv_slackbot", 0, '');
set_script($bot, qq(200 {"ok":true,"upload_url":"http://127.0.0.1:$bot->{port}/upload/v1/abc","file_id":"F0TEST"}\n)
	  . qq(200 OK - 68\n)
	  . qq(200 {"ok":true,"files":[{"id":"F0TEST"}]}\n));
my $base = "http://127.0.0.1:$rcv->{port}";

$node->safe_psql('postgres', qq{
INSERT INTO metric_anomaly.alert_channels (name, kind, url, secret, options) VALUES
 ('slack',    'slack',     '$base/services/T000/B000/XXXX', NULL, '{}'),
 ('wecom',    'wecom',     '$base/cgi-bin/webhook/send?key=WECOMKEY', NULL, '{}'),
 ('feishu',   'feishu',    '$base/open-apis/bot/v2/hook/FEISHUHOOK', 'feishu-secret', '{}'),
 ('dingtalk', 'dingtalk',  '$base/robot/send?access_token=DINGTOKEN', 'SECdingtalk', '{}'),
 ('nochart',  'webhook',   '$base/plain', NULL, '{"chart": false}'),
 ('bot',      'slack_bot', 'http://127.0.0.1:$bot->{port}/api', 'xoxb-BOTTOKEN', '{"channel": "C0123"}')});
# Routing: metric k goes to every channel but nochart, metric j only to nochart.
$node->safe_psql('postgres', q{
INSERT INTO metric_anomaly.alert_routes (metric_name, channel)
SELECT 'k', name FROM metric_anomaly.alert_channels WHERE name <> 'nochart'
UNION ALL SELECT 'j', 'nochart'});

put_minutes($node, 'k', 0, 0, 3, 1);
put_minutes($node, 'j', 0, 0, 3, 1);
my $before = time;
is($node->safe_psql('postgres', q{SELECT metric_anomaly.evaluate_alerts('2026-01-01', '2026-01-02')}), '2', 'two alerts');
is($node->safe_psql('postgres', q{SELECT string_agg(a.metric_name || ':' || d.channel, ',' ORDER BY a.metric_name, d.channel)
  FROM metric_anomaly.deliveries d JOIN metric_anomaly.alerts a ON a.id = d.alert_id}),
	'j:nochart,k:bot,k:dingtalk,k:feishu,k:slack,k:wecom', 'routed deliveries');
$node->safe_psql('postgres', 'SELECT metric_anomaly.start_delivery_worker()')
  unless $node->safe_psql('postgres',
	q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'metric_anomaly delivery'});
$node->poll_query_until('postgres', q{SELECT bool_and(state = 'sent') FROM metric_anomaly.deliveries})
  or die 'not all sent: ' . $node->safe_psql('postgres', 'SELECT channel, state, last_error FROM metric_anomaly.deliveries');
my $after = time;

my %by;
push @{ $by{ ($_->{path} =~ s/\?.*//r) } }, $_ for requests($rcv);
my $json = JSON::PP->new;
sub b64pad { my $s = shift; $s .= '=' while length($s) % 4; return $s }
sub urlenc { my $s = shift; $s =~ s/([^A-Za-z0-9\-_.~])/sprintf('%%%02X', ord $1)/ge; return $s }

# Slack incoming webhook: {"text", "blocks":[section mrkdwn]}.
my ($r) = @{ $by{'/services/T000/B000/XXXX'} };
my $b = $json->decode($r->{body});
like($b->{text}, qr/^\[FIRING\] k\nk is anomalous at 2026-01-01 00:00 UTC/, 'slack text');
is($b->{blocks}[0]{type}, 'section', 'slack section block');
is($b->{blocks}[0]{text}{type}, 'mrkdwn', 'slack mrkdwn');
like($r->{headers}{'idempotency-key'}, qr/^ma-\d+-/, 'slack Idempotency-Key');

# WeCom: markdown, then image with base64 and md5 of the PNG.
my @w = @{ $by{'/cgi-bin/webhook/send'} };
is(scalar @w, 2, 'wecom: two messages');
like($w[0]{path}, qr/\?key=WECOMKEY$/, 'wecom key kept');
$b = $json->decode($w[0]{body});
is($b->{msgtype}, 'markdown', 'wecom markdown first');
like($b->{markdown}{content}, qr/^\*\*\[FIRING\] k\*\*\n> k is anomalous/, 'wecom markdown content');
$b = $json->decode($w[1]{body});
is($b->{msgtype}, 'image', 'wecom image second');
my $png = decode_base64($b->{image}{base64});
is(substr($png, 0, 8), "\x89PNG\r\n\x1a\n", 'wecom image is a PNG');
is($b->{image}{md5}, md5_hex($png), 'wecom md5 is the md5 of the PNG bytes');

# Feishu: timestamp (s) + sign = base64(HMAC-SHA256(key = ts\nsecret, msg = "")).
($r) = @{ $by{'/open-apis/bot/v2/hook/FEISHUHOOK'} };
$b = $json->decode($r->{body});
ok($b->{timestamp} =~ /^\d+$/ && $b->{timestamp} >= $before - 1 && $b->{timestamp} <= $after + 1, 'feishu timestamp in seconds');
is($b->{sign}, b64pad(hmac_sha256_base64('', "$b->{timestamp}\nfeishu-secret")), 'feishu signature');
is($b->{msg_type}, 'text', 'feishu text message');
like($b->{content}{text}, qr/^\[FIRING\] k\n/, 'feishu text');

# DingTalk: &timestamp=ms&sign=urlencode(base64(HMAC-SHA256(key = secret, msg = ts\nsecret))).
($r) = @{ $by{'/robot/send'} };
my ($tok, $ts, $sign) = $r->{path} =~ /\?access_token=(\w+)&timestamp=(\d+)&sign=(\S+)$/;
is($tok, 'DINGTOKEN', 'dingtalk token kept');
ok($ts >= ($before - 1) * 1000 && $ts <= ($after + 1) * 1000, 'dingtalk timestamp in milliseconds');
is($sign, urlenc(b64pad(hmac_sha256_base64("$ts\nSECdingtalk", 'SECdingtalk'))), 'dingtalk signature');
$b = $json->decode($r->{body});
is($b->{msgtype}, 'markdown', 'dingtalk markdown');
is($b->{markdown}{title}, '[FIRING] k', 'dingtalk title');

# Generic webhook with chart off: no chart_png_base64.
($r) = @{ $by{'/plain'} };
$b = $json->decode($r->{body});
is($b->{metric}, 'j', 'webhook for the routed metric');
ok(!exists $b->{chart_png_base64}, 'no chart when options.chart is false');
is(ref $b->{context}, 'HASH', 'context is an object');

# Slack bot: getUploadURLExternal, upload, completeUploadExternal.
my @s = requests($bot);
is(scalar @s, 3, 'slack bot: three requests');
is($s[0]{path}, '/api/files.getUploadURLExternal', 'step 1 path');
is($s[0]{headers}{authorization}, 'Bearer xoxb-BOTTOKEN', 'step 1 bearer token');
is($s[0]{headers}{'content-type'}, 'application/x-www-form-urlencoded', 'step 1 form');
my ($len) = $s[0]{body} =~ /^filename=k\.png&length=(\d+)&alt_txt=/;
is($s[1]{path}, '/upload/v1/abc', 'step 2 to the upload URL');
is(length $s[1]{body}, $len, 'step 2 uploads length bytes');
is(substr($s[1]{body}, 0, 8), "\x89PNG\r\n\x1a\n", 'step 2 uploads the PNG');
is($s[2]{path}, '/api/files.completeUploadExternal', 'step 3 path');
is($s[2]{headers}{authorization}, 'Bearer xoxb-BOTTOKEN', 'step 3 bearer token');
$b = $json->decode($s[2]{body});
is($b->{files}[0]{id}, 'F0TEST', 'step 3 file id');
is($b->{channel_id}, 'C0123', 'step 3 channel');
like($b->{initial_comment}, qr/^\*\[FIRING\] k\*/, 'step 3 message');

# A platform error code is a failure, retried.
unlink glob("$rcv->{dir}/req-*");
set_script($rcv, qq(200 {"errcode":310000,"errmsg":"sign not match"}\n));
is($node->safe_psql('postgres', "SELECT metric_anomaly.test_channel('dingtalk')"), '200', 'test_channel status');
put_minutes($node, 'j', 1, 2, 100, 0);
put_minutes($node, 'j', 3, 3, 3, 1);
$node->safe_psql('postgres', q{UPDATE metric_anomaly.alert_channels SET kind = 'dingtalk' WHERE name = 'nochart'});
$node->safe_psql('postgres', q{SELECT metric_anomaly.evaluate_alerts('2026-01-01', '2026-01-02')});
$node->poll_query_until('postgres', q{SELECT count(*) > 0 FROM metric_anomaly.deliveries
  WHERE state = 'failed' AND last_error = 'platform error code 310000'}) or die 'platform error not seen';
pass('platform error code recorded and retried');

# A WeCom image refused once: the retry sends only the image.
my $wc = start_receiver("${PostgreSQL::Test::Utils::tmp_check}/rcv_wecom2", 0,
	qq(200 {"errcode":0}\n500\n200 {"errcode":0}\n));
$node->safe_psql('postgres', qq{
INSERT INTO metric_anomaly.alert_channels (name, kind, url) VALUES ('wecom2', 'wecom', 'http://127.0.0.1:$wc->{port}/send?key=K2');
INSERT INTO metric_anomaly.alert_routes VALUES ('w', 'wecom2')});
put_minutes($node, 'w', 0, 0, 3, 1);
$node->safe_psql('postgres', q{SELECT metric_anomaly.evaluate_alerts('2026-01-01', '2026-01-02')});
$node->poll_query_until('postgres', q{SELECT state = 'sent' FROM metric_anomaly.deliveries WHERE channel = 'wecom2'})
  or die 'wecom2 not sent';
is($node->safe_psql('postgres', q{SELECT attempts || ' ' || steps_done FROM metric_anomaly.deliveries WHERE channel = 'wecom2'}),
	'2 1', 'two attempts, the markdown accepted by the first');
my @m = map { $json->decode($_->{body})->{msgtype} } requests($wc);
is(join(',', @m), 'markdown,image,image', 'the retry sends only the image');
stop_receiver($wc);

# A Slack bot upload refused at its last step: the retry only completes the
# upload it already made (the file id and upload URL were kept).
my $bot2 = start_receiver("${PostgreSQL::Test::Utils::tmp_check}/rcv_slackbot2", 0, '');
set_script($bot2, qq(200 {"ok":true,"upload_url":"http://127.0.0.1:$bot2->{port}/upload/v1/xyz","file_id":"F0TWO"}\n)
	  . qq(200 OK - 68\n)
	  . qq(500\n)
	  . qq(200 {"ok":true,"files":[{"id":"F0TWO"}]}\n));
$node->safe_psql('postgres', qq{
INSERT INTO metric_anomaly.alert_channels (name, kind, url, secret, options)
VALUES ('bot2', 'slack_bot', 'http://127.0.0.1:$bot2->{port}/api', 'xoxb-TWO', '{"channel": "C0456"}');
INSERT INTO metric_anomaly.alert_routes VALUES ('b', 'bot2')});
put_minutes($node, 'b', 0, 0, 3, 1);
$node->safe_psql('postgres', q{SELECT metric_anomaly.evaluate_alerts('2026-01-01', '2026-01-02')});
$node->poll_query_until('postgres', q{SELECT state = 'sent' FROM metric_anomaly.deliveries WHERE channel = 'bot2'})
  or die 'bot2 not sent';
is($node->safe_psql('postgres', q{SELECT attempts || ' ' || steps_done || ' ' || step_state FROM metric_anomaly.deliveries WHERE channel = 'bot2'}),
	"2 2 F0TWO http://127.0.0.1:$bot2->{port}/upload/v1/xyz", 'two attempts; the first got the upload accepted');
is(join(',', map { $_->{path} } requests($bot2)),
	'/api/files.getUploadURLExternal,/upload/v1/xyz,/api/files.completeUploadExternal,/api/files.completeUploadExternal',
	'the retry sends only the completion, not a second upload');
my @c = requests($bot2);
is($json->decode($c[3]{body})->{files}[0]{id}, 'F0TWO', 'the retry completes the file of the first attempt');
stop_receiver($bot2);

stop_receiver($rcv);
stop_receiver($bot);
$node->stop;
done_testing();

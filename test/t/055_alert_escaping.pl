# Hostile metric names reach every chat channel escaped for its markup, so
# they mention nobody and link nowhere: the exact bodies each platform gets.
# The generic webhook is data (JSON) and carries the name as it is.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use MaAlert;

my $node = alert_node('alert_escaping');
my $rcv = start_receiver("${PostgreSQL::Test::Utils::tmp_check}/rcv_escaping", 0, "200\n");
my $base = "http://127.0.0.1:$rcv->{port}";

$node->safe_psql('postgres', qq{
INSERT INTO metric_anomaly.alert_channels (name, kind, url, secret, options) VALUES
 ('slack',    'slack',     '$base/slack',    NULL, '{}'),
 ('bot',      'slack_bot', '$base/api',      'xoxb-T', '{"channel": "C0123", "chart": false}'),
 ('wecom',    'wecom',     '$base/wecom',    NULL, '{"chart": false}'),
 ('feishu',   'feishu',    '$base/feishu',   NULL, '{}'),
 ('dingtalk', 'dingtalk',  '$base/dingtalk', NULL, '{}'),
 ('hook',     'webhook',   '$base/hook',     NULL, '{"chart": false}')});

# Mentions, a disguised link, a bare URL, a domain, HTML, an entity and a
# line break that would start a markdown heading.
my $name = qq{<!channel> <\@U123> [click](http://evil.example) \@all <at user_id="all"></at> &amp; evil.com\n# x};
(my $sql_name = $name) =~ s/'/''/g;
put_minutes($node, $sql_name, 0, 0, 3, 1);
query_ok($node, q{SELECT metric_anomaly.evaluate_alerts('2026-01-01', '2026-01-02')}, '1', 'one alert');
$node->safe_psql('postgres', 'SELECT metric_anomaly.start_delivery_worker()');
$node->poll_query_until('postgres', q{SELECT count(*) = 6 FROM metric_anomaly.deliveries WHERE state = 'sent'})
  or die 'not all sent: ' . $node->safe_psql('postgres', 'SELECT channel, state, last_error FROM metric_anomaly.deliveries');

my %by;
$by{ $_->{path} } = $_->{body} for requests($rcv);

my $wj = "\xE2\x81\xA0";    # U+2060 WORD JOINER, UTF-8
my ($lt, $gt, $lb, $rb, $amp) = ("\xEF\xBC\x9C", "\xEF\xBC\x9E", "\xEF\xBC\xBB", "\xEF\xBC\xBD", "\xEF\xBC\x86");
my %esc = (
	slack => "&lt;!channel&gt; &lt;\@${wj}U123&gt; [click](http:${wj}//evil.${wj}example) \@${wj}all "
	  . "&lt;at user_id=\"all\"&gt;&lt;/at&gt; &amp;amp; evil.${wj}com # x",
	markdown => "${lt}!channel${gt} ${lt}\@${wj}U123${gt} ${lb}click${rb}(http:${wj}//evil.${wj}example) \@${wj}all "
	  . "${lt}at user_id=\"all\"${gt}${lt}/at${gt} ${amp}amp; evil.${wj}com # x",
	feishu => "${lt}!channel${gt} ${lt}\@${wj}U123${gt} ${lb}click${rb}(http:${wj}//evil.${wj}example) \@${wj}all "
	  . "${lt}at user_id=\"all\"${gt}${lt}/at${gt} &amp; evil.${wj}com # x");
my %sum = (
	slack    => "$esc{slack} is anomalous at 2026-01-01 00:00 UTC: value 3 outside [85.00, 115.00] (mean 100.00, std_dev 5.00)",
	markdown => "$esc{markdown} is anomalous at 2026-01-01 00:00 UTC: value 3 outside ${lb}85.00, 115.00${rb} (mean 100.00, std_dev 5.00)",
	feishu   => "$esc{feishu} is anomalous at 2026-01-01 00:00 UTC: value 3 outside ${lb}85.00, 115.00${rb} (mean 100.00, std_dev 5.00)");
my $facts = 'minute: 2026-01-01T00:00:00Z UTC, value: 3, source: 3-sigma';

# JSON string as escape_json writes it (non-ASCII bytes as they are).
sub js
{
	my $s = shift;
	$s =~ s/(["\\])/\\$1/g;
	$s =~ s/\n/\\n/g;
	return qq{"$s"};
}

is($by{'/slack'},
	'{"text":' . js("[FIRING] $esc{slack}\n$sum{slack}\n$facts")
	  . ',"blocks":[{"type":"section","text":{"type":"mrkdwn","text":'
	  . js("*[FIRING] $esc{slack}*\n> $sum{slack}\n> $facts") . '}}]}',
	'slack: the exact body, mrkdwn escaped');
is($by{'/api/chat.postMessage'},
	'{"channel":"C0123","text":' . js("*[FIRING] $esc{slack}*\n> $sum{slack}\n> $facts") . '}',
	'slack bot: the exact body, mrkdwn escaped');
is($by{'/wecom'},
	'{"msgtype":"markdown","markdown":{"content":'
	  . js("**[FIRING] $esc{markdown}**\n> $sum{markdown}\n> $facts") . '}}',
	'wecom: the exact body, markdown escaped');
is($by{'/dingtalk'},
	'{"msgtype":"markdown","markdown":{"title":' . js("[FIRING] $esc{markdown}")
	  . ',"text":' . js("### [FIRING] $esc{markdown}\n> $sum{markdown}\n> $facts") . '}}',
	'dingtalk: the exact body, markdown escaped');
is($by{'/feishu'},
	'{"msg_type":"text","content":{"text":' . js("[FIRING] $esc{feishu}\n$sum{feishu}\n$facts") . '}}',
	'feishu: the exact body, text escaped');

# What no escaped body contains any more.
for my $path ('/slack', '/api/chat.postMessage', '/wecom', '/dingtalk', '/feishu')
{
	my $b = $by{$path};
	ok($b !~ /<!channel>|<\@U123>|<http|\@all|<at |:\/\/evil|evil\.com|\\n# x/, "$path: no mention, link or heading left");
	# [text](url) is a link in markdown only; Slack shows it as text
	ok($b !~ /\]\(http/, "$path: no markdown link left") unless $path =~ /slack|postMessage/;
}

# The webhook is JSON data: the consumer gets the name exactly.
my $hook = JSON::PP->new->decode($by{'/hook'});
is($hook->{metric}, $name, 'webhook: the name as it is, JSON-escaped only');

stop_receiver($rcv);
$node->stop;
done_testing();

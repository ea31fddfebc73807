# The e-mail channel against a local SMTP receiver: the write-time checks,
# the exact MIME structure received (headers, parts, content types, the
# Content-ID the HTML names, the PNG), hostile names escaped, a retry that
# is the same message (same Message-ID, from the idempotency key), TLS
# required unless relaxed (a plain server is refused before anything is
# sent), and a permanent SMTP failure given up.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Digest::MD5 qw(md5_hex);
use MIME::Base64 qw(decode_base64);
use MaAlert;

my $node = alert_node('alert_email');
my $tmp = $PostgreSQL::Test::Utils::tmp_check;
my $mail = start_receiver("$tmp/smtp_mail", 0, "451 4.3.0 try again later\n250 2.0.0 queued\n",
	'test/smtp_receiver.pl');
my $strict = start_receiver("$tmp/smtp_strict", 0, undef, 'test/smtp_receiver.pl');
my $reject = start_receiver("$tmp/smtp_reject", 0, "554 5.7.1 message refused\n", 'test/smtp_receiver.pl');

# ---------- write-time checks ----------

# Each bad channel is refused with its own message, never quoting url or secret.
my @bad = (
	[ q{'http://127.0.0.1:25', NULL, '{"from": "a@example.com", "to": "b@example.com"}'},
		'url of alert channel "m" must be an smtp or smtps URL' ],
	[ q{'smtp://user:pw@127.0.0.1:25', NULL, '{"from": "a@example.com", "to": "b@example.com"}'},
		'url of alert channel "m" must be an smtp or smtps URL' ],
	[ q{'smtp://127.0.0.1:25', NULL, '{"to": "b@example.com"}'},
		'alert channel "m" of kind email needs a valid sender address in options.from' ],
	[ q{'smtp://127.0.0.1:25', NULL, '{"from": "Ops <a@example.com>", "to": "b@example.com"}'},
		'alert channel "m" of kind email needs a valid sender address in options.from' ],
	[ q{'smtp://127.0.0.1:25', NULL, '{"from": "a@example.com"}'},
		'alert channel "m" of kind email needs 1 to 50 valid addresses in options.to' ],
	[ q{'smtp://127.0.0.1:25', NULL, '{"from": "a@example.com", "to": ["b@example.com", "c@example.com\r\nBcc: d@evil.example"]}'},
		'alert channel "m" of kind email needs 1 to 50 valid addresses in options.to' ],
	[ q{'smtp://127.0.0.1:25', NULL, '{"from": "a@example.com", "to": []}'},
		'alert channel "m" of kind email needs 1 to 50 valid addresses in options.to' ],
	[ q{'smtp://127.0.0.1:25', NULL, '{"from": "a@example.com", "to": "b@-example.com"}'},
		'alert channel "m" of kind email needs 1 to 50 valid addresses in options.to' ],
	[ q{'smtp://127.0.0.1:25', NULL, '{"from": "a@example.com", "to": "b@example.com", "tls": "maybe"}'},
		'options.tls of alert channel "m" must be "required" or "none"' ],
	[ q{'smtp://127.0.0.1:25', '{"user": "u", "password": 7}', '{"from": "a@example.com", "to": "b@example.com"}'},
		'secret of alert channel "m" must be a JSON object of strings' ],
	[ q{'smtp://127.0.0.1:25', '{"user": "u", "pass": "TOPSECRET"}', '{"from": "a@example.com", "to": "b@example.com"}'},
		'secret of alert channel "m" of kind email must hold the user and password' ],
	[ q{'smtp://127.0.0.1:25', 'TOPSECRET', '{"from": "a@example.com", "to": "b@example.com"}'},
		'secret of alert channel "m" of kind email must hold the user and password' ],
	[ q{'smtp://relay.example.com:25', '{"user": "u", "password": "TOPSECRET"}', '{"from": "a@example.com", "to": "b@example.com", "tls": "none"}'},
		'alert channel "m" would send its password without TLS' ]);
for my $b (@bad)
{
	my ($ret, $out, $err) = $node->psql('postgres',
		"INSERT INTO metric_anomaly.alert_channels (name, kind, url, secret, options) VALUES ('m', 'email', $b->[0])");
	my ($msg) = $err =~ /ERROR:\s+(.*)/;
	is($msg, $b->[1], "refused: $b->[1]");
	unlike($err, qr/TOPSECRET|relay\.example|user:pw/, 'the error quotes neither url nor secret');
}

# ---------- a message, its retry and its structure ----------

$node->safe_psql('postgres', qq{
INSERT INTO metric_anomaly.alert_channels (name, kind, url, secret, options) VALUES
 ('mail', 'email', 'smtp://127.0.0.1:$mail->{port}', '{"user": "alerts", "password": "pa ss\@word"}',
  '{"from": "alerts\@example.com", "to": ["ops\@example.com", "oncall\@example.org"], "tls": "none"}'),
 ('strict', 'email', 'smtp://127.0.0.1:$strict->{port}', '{"user": "alerts", "password": "STRICTPW"}',
  '{"from": "alerts\@example.com", "to": "ops\@example.com"}'),
 ('reject', 'email', 'smtp://127.0.0.1:$reject->{port}', NULL,
  '{"from": "alerts\@example.com", "to": "ops\@example.com", "tls": "none", "chart": false}')});

# HTML, a link, an address, quotes, an entity and a line break that would
# start a Bcc header.
my $name = qq{<img src=x onerror=alert(1)> <a href="http://evil.example">click</a> ops\@evil.example 'q' &amp;\nBcc: victim\@evil.example};
(my $sql_name = $name) =~ s/'/''/g;
my $cjk = '订单.支付' x 6;    # 78 bytes of UTF-8: three encoded words of at most 39
$node->safe_psql('postgres', qq{
INSERT INTO metric_anomaly.alert_routes (metric_name, channel) VALUES
 ('$sql_name', 'mail'), ('$cjk', 'mail'), ('s', 'strict'), ('r', 'reject')});
put_minutes($node, $sql_name, 0, 0, 3, 1);
query_ok($node, q{SELECT count(*) FROM metric_anomaly.alert_routes WHERE channel = 'mail'}, '2', 'routes');
query_ok($node, q{SELECT metric_anomaly.evaluate_alerts('2026-01-01', '2026-01-02')}, '1', 'one alert');
$node->safe_psql('postgres', 'SELECT metric_anomaly.start_delivery_worker()');
$node->poll_query_until('postgres', q{SELECT state = 'sent' FROM metric_anomaly.deliveries WHERE channel = 'mail'})
  or die 'not sent: ' . $node->safe_psql('postgres', 'SELECT channel, state, last_error FROM metric_anomaly.deliveries');
query_ok($node, q{SELECT attempts || ' ' || http_status FROM metric_anomaly.deliveries WHERE channel = 'mail'},
	'2 250', 'the 451 was retried, the second attempt accepted (250)');
my $key = $node->safe_psql('postgres', q{SELECT idempotency_key FROM metric_anomaly.deliveries WHERE channel = 'mail'});

# Reads message n of a receiver: the raw text and the envelope lines.
sub message
{
	my ($r, $n) = @_;
	my $f = sprintf('%s/msg-%04d', $r->{dir}, $n);
	local $/;
	open my $fh, '<', "$f.eml" or return;
	binmode $fh;
	my $eml = <$fh>;
	close $fh;
	open $fh, '<', "$f.env" or return;
	my $env = <$fh>;
	close $fh;
	return ($eml, $env);
}

# A MIME entity: its headers (name, unfolded value) in order, body, parts.
sub parse
{
	my ($text) = @_;
	my ($head, $body) = split /\r\n\r\n/, $text, 2;
	$head =~ s/\r\n[ \t]+/ /g;
	my @h = map { [ /^([^:]+):\s*(.*)$/ ] } split /\r\n/, $head;
	my %h = map { lc($_->[0]) => $_->[1] } @h;
	my $e = { headers => \@h, h => \%h, body => $body, parts => [] };
	if (($h{'content-type'} // '') =~ /^multipart\/.*boundary="([^"]+)"/)
	{
		my $b = quotemeta $1;
		my ($inner) = $body =~ /(?:^|\r\n)--$b\r\n(.*)\r\n--$b--(?:\r\n|$)/s or die "no closing boundary";
		$e->{preamble} = $body =~ /^(.*?)--$b\r\n/s ? $1 : '';
		push @{ $e->{parts} }, parse($_) for split /\r\n--$b\r\n/, $inner;
	}
	return $e;
}

sub names { join ',', map { $_->[0] } @{ $_[0]{headers} } }

my ($first, $env1) = message($mail, 1);
my ($second, $env2) = message($mail, 2);
ok(defined $second, 'two messages received: the refused one and its retry');
ok(!defined((message($mail, 3))[0]), 'and no third');
my ($id1) = $first =~ /^Message-ID: (.*)\r$/m;
my ($id2) = $second =~ /^Message-ID: (.*)\r$/m;
is($id1, "<$key\@example.com>", 'Message-ID is the idempotency key at the sender domain');
is($id2, $id1, 'the retry carries the same Message-ID');
is($second =~ s/^Date: .*\r\n//mr, $first =~ s/^Date: .*\r\n//mr, 'the retry is the same message but for its Date');
is($env2, "from <alerts\@example.com>\nrcpt <ops\@example.com>\nrcpt <oncall\@example.org>\n", 'envelope');
like(join('', map { slurp($_) } sort glob("$mail->{dir}/session-*.log")), qr/^AUTH alerts pa ss\@word$/m,
	'credentials from the secret (AUTH)');

sub slurp { local $/; open my $fh, '<', $_[0] or return ''; my $s = <$fh>; close $fh; return $s }

my $m = parse($second);
is(names($m), 'From,To,Subject,Date,Message-ID,MIME-Version,Auto-Submitted,Content-Type', 'top headers, in order');
is($m->{h}{from}, 'alerts@example.com', 'From');
is($m->{h}{to}, 'ops@example.com, oncall@example.org', 'To (folded)');
is($m->{h}{subject}, q{[FIRING] <img src=x onerror=alert(1)> <a href="http://evil.example">click</a> ops@evil.example 'q' &amp; Bcc: victim@evil.example},
	'Subject: the line break is a space, so no Bcc header');
ok(!exists $m->{h}{bcc}, 'no Bcc header');
like($m->{h}{date}, qr/^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d \+0000$/, 'Date (RFC 5322)');
is($m->{h}{'mime-version'}, '1.0', 'MIME-Version');
is($m->{h}{'auto-submitted'}, 'auto-generated', 'Auto-Submitted');
my $tag = substr(md5_hex($key), 0, 16);
is($m->{h}{'content-type'}, qq{multipart/alternative; boundary="=_ma-alt-$tag"}, 'multipart/alternative');
is(scalar @{ $m->{parts} }, 2, 'two alternatives');

my ($text, $rel) = @{ $m->{parts} };
is(names($text), 'Content-Type,Content-Transfer-Encoding', 'text part headers');
is($text->{h}{'content-type'}, 'text/plain; charset=utf-8', 'text/plain first');
is($text->{h}{'content-transfer-encoding'}, 'base64', 'base64');
ok(!grep({ length > 76 } split /\r\n/, $text->{body}), 'base64 lines of at most 76 characters');
my $wj = "\xE2\x81\xA0";    # U+2060 WORD JOINER
my $plain = qq{<img src=x onerror=alert(1)> <a href="http:${wj}//evil.${wj}example">click</a> ops\@${wj}evil.${wj}example 'q' &amp; Bcc: victim\@${wj}evil.${wj}example};
is(decode_base64($text->{body}),
	"[FIRING] $plain\r\n$plain is anomalous at 2026-01-01 00:00 UTC: value 3 outside [85.00, 115.00] (mean 100.00, std_dev 5.00)\r\n"
	  . "minute: 2026-01-01T00:00:00Z UTC, value: 3, source: 3-sigma\r\n",
	'text: title, summary, facts; nothing linkable');

is($rel->{h}{'content-type'}, qq{multipart/related; type="text/html"; boundary="=_ma-rel-$tag"}, 'then multipart/related');
is(scalar @{ $rel->{parts} }, 2, 'HTML and the chart');
my ($html, $img) = @{ $rel->{parts} };
is($html->{h}{'content-type'}, 'text/html; charset=utf-8', 'text/html');
is($html->{h}{'content-transfer-encoding'}, 'base64', 'base64');
my $cid = "chart-$key\@example.com";
is(names($img), 'Content-Type,Content-ID,Content-Disposition,Content-Transfer-Encoding', 'image part headers');
is($img->{h}{'content-type'}, 'image/png', 'image/png');
is($img->{h}{'content-id'}, "<$cid>", 'Content-ID from the key');
is($img->{h}{'content-disposition'}, 'inline; filename="chart.png"', 'inline');
my $png = decode_base64($img->{body});
is(substr($png, 0, 8), "\x89PNG\r\n\x1a\n", 'the image decodes to a PNG');
is(substr($png, -8, 4), 'IEND', 'whole, to its IEND chunk');

my $h = qq{&lt;img src=x onerror=alert(1)&gt; &lt;a href=&quot;http:${wj}//evil.${wj}example&quot;&gt;click&lt;/a&gt; ops\@${wj}evil.${wj}example &#39;q&#39; &amp;amp; Bcc: victim\@${wj}evil.${wj}example};
is(decode_base64($html->{body}),
	"<!DOCTYPE html>\r\n<html><head><meta charset=\"utf-8\"><title>[FIRING] $h</title></head>\r\n<body>\r\n"
	  . "<h2>[FIRING] $h</h2>\r\n"
	  . "<p>$h is anomalous at 2026-01-01 00:00 UTC: value 3 outside [85.00, 115.00] (mean 100.00, std_dev 5.00)</p>\r\n"
	  . "<table>\r\n<tr><th align=\"left\">minute</th><td>2026-01-01T00:00:00Z UTC</td></tr>\r\n"
	  . "<tr><th align=\"left\">value</th><td>3</td></tr>\r\n"
	  . "<tr><th align=\"left\">source</th><td>3-sigma</td></tr>\r\n"
	  . "<tr><th align=\"left\">episode start</th><td>2026-01-01T00:00:00Z UTC</td></tr>\r\n</table>\r\n"
	  . "<p><img src=\"cid:$cid\" alt=\"Chart of $h\"></p>\r\n</body></html>\r\n",
	'HTML: names escaped, the chart referenced by its Content-ID, no link');

# A non-ASCII name: the Subject is RFC 2047 encoded words.
unlink glob("$mail->{dir}/msg-*");
unlink "$mail->{dir}/counter";
set_script($mail, "250 2.0.0 queued\n");
put_minutes($node, $cjk, 0, 0, 3, 1);
query_ok($node, q{SELECT metric_anomaly.evaluate_alerts('2026-01-01', '2026-01-02')}, '1', 'one more alert');
$node->poll_query_until('postgres', q{SELECT bool_and(state = 'sent') FROM metric_anomaly.deliveries WHERE channel = 'mail'})
  or die 'not sent';
my ($cjk_raw) = message($mail, 1);
my $cm = parse($cjk_raw);
my ($rawsubj) = $cjk_raw =~ /^(Subject: .*?\r\n)(?=\S)/ms;
like($rawsubj, qr/^Subject: =\?UTF-8\?B\?[A-Za-z0-9+\/=]+\?=\r\n(?: =\?UTF-8\?B\?[A-Za-z0-9+\/=]+\?=\r\n){2}$/,
	'Subject as three encoded words, folded');
ok(!grep({ length > 76 } split /\r\n/, $rawsubj), 'each line short');
my @words = map { decode_base64($_) } $cm->{h}{subject} =~ /B\?([^?]*)\?=/g;
is(join('', @words), "[FIRING] $cjk", 'which decode to the title');
ok(!grep({ !utf8::decode(my $w = $_) } @words), 'each word whole UTF-8 (split between characters)');

# ---------- TLS required: a plain server is refused ----------

put_minutes($node, 's', 0, 0, 3, 1);
put_minutes($node, 'r', 0, 0, 3, 1);
query_ok($node, q{SELECT metric_anomaly.evaluate_alerts('2026-01-01', '2026-01-02')}, '2', 'two more alerts');
$node->poll_query_until('postgres', q{SELECT count(*) = 2 FROM metric_anomaly.deliveries
  WHERE channel IN ('strict', 'reject') AND state = 'dead'})
  or die 'not dead: ' . $node->safe_psql('postgres', 'SELECT channel, state, last_error FROM metric_anomaly.deliveries');
my $serr = $node->safe_psql('postgres', q{SELECT attempts || ' ' || last_error FROM metric_anomaly.deliveries WHERE channel = 'strict'});
like($serr, qr/^1 TLS is required but the server does not offer it: /, 'without STARTTLS: dead at once, saying why');
unlike($serr, qr/STRICTPW|$strict->{port}/, 'the error quotes neither secret nor url');
my @sessions = map { slurp($_) } sort glob("$strict->{dir}/session-*.log");
is(scalar @sessions, 1, 'one session');
like($sessions[0], qr/^EHLO [^\n]*\n(QUIT\n)?$/, 'nothing but EHLO (and QUIT): no AUTH, no MAIL, no message');
ok(!-e "$strict->{dir}/msg-0001.eml", 'no message received');

# ---------- a permanent SMTP failure ----------

# curl's own words differ by version: "Weird server reply" from 7.88 on,
# "Failure when receiving data from the peer" in 7.74 (bullseye).
like($node->safe_psql('postgres', q{SELECT attempts || ' ' || http_status || ' ' || last_error FROM metric_anomaly.deliveries WHERE channel = 'reject'}),
	qr/^1 554 (Weird server reply|Failure when receiving data from the peer) \(SMTP reply 554\)$/,
	'554 after the data: dead at once, the reply code kept');
query_ok($node, q{SELECT last_error FROM metric_anomaly.deliveries WHERE channel = 'mail' AND attempts = 2},
	'', 'the accepted retry leaves no error');

# test_channel() sends through the same path and returns the reply code.
query_ok($node, q{SELECT metric_anomaly.test_channel('mail')}, '250', 'test_channel: 250');

# The host allowlist applies to SMTP relays as to HTTP endpoints.
my ($ret, $out, $err) = $node->psql('postgres', q{SET metric_anomaly.webhook_allowed_hosts = 'relay.example.com'; SELECT metric_anomaly.test_channel('mail')});
like($err, qr/ERROR:  alert channel "mail" cannot be used: host "127\.0\.0\.1" is not in metric_anomaly\.webhook_allowed_hosts/,
	'a relay outside the allowlist is refused');

stop_receiver($_) for ($mail, $strict, $reject);
$node->stop;
done_testing();

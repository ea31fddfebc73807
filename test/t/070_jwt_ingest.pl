# record_event under concurrency: a session that skipped an expired token
# and recorded an event, its transaction still open, makes no other writer
# wait (skips are INSERTs of their own rows, never an UPDATE of a shared
# counter); four writers at once, each in one transaction, get exact counts.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MaTest;

# Tokens made by jsonwebtoken (test/fixtures/jwt/tokens.csv).
my %fixture;
for my $line (split /\n/, slurp_file('test/fixtures/jwt/tokens.csv'))
{
	my ($name, $secret, $token) = $line =~ /^"([^"]*)","([^"]*)","([^"]*)"/ or next;
	$fixture{$name} = { secret => $secret, token => $token };
}
my $valid = $fixture{hs256}{token};
my $expired = $fixture{expired}{token};
my $secret = $fixture{hs256}{secret};

my $node = ma_node('jwt_ingest', interval => 3600);
$node->safe_psql('postgres', qq{
	CREATE EXTENSION metric_anomaly;
	INSERT INTO metric_anomaly.jwt_secrets (name, secret) VALUES ('app', '$secret');
	CREATE ROLE app LOGIN;
	GRANT EXECUTE ON FUNCTION metric_anomaly.record_event(text, jsonb, text) TO app});

# Session A skips and records, then keeps its transaction open.
my ($a_out, $a_err) = ('', '');
my $a = IPC::Run::start(
	[ 'psql', '-XAtq', '-d', $node->connstr('postgres') . ' user=app',
	  '-c', "BEGIN; SELECT metric_anomaly.record_event('order', '{}', '$expired');
	         SELECT metric_anomaly.record_event('order', '{}', '$valid') IS NOT NULL;
	         SELECT pg_sleep(30); COMMIT;" ],
	'>', \$a_out, '2>', \$a_err);
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity
	 WHERE usename = 'app' AND query LIKE '%pg_sleep%' AND state = 'active'}),
	'session A holds its transaction open after a skip and an event');

# Session B must not wait for A: lock_timeout turns any wait into an error.
my $b = $node->psql('postgres', qq{
	SET lock_timeout = '2s';
	SELECT count(metric_anomaly.record_event('order', '{}', '$expired')) FROM generate_series(1, 10);
	SELECT count(metric_anomaly.record_event('order', '{}', '$valid')) FROM generate_series(1, 10);},
	extra_params => [ '-U', 'app' ], on_error_stop => 1);
is($b, 0, 'session B skips and records while A is open, without waiting');

$node->safe_psql('postgres', q{
	SELECT pg_cancel_backend(pid) FROM pg_stat_activity
	 WHERE usename = 'app' AND query LIKE '%pg_sleep%'});
$a->finish;
is($node->safe_psql('postgres', q{
	SELECT coalesce(sum(skipped), 0) FROM metric_anomaly.ingest_stats WHERE event_type = 'order'}),
	'10', "B's ten skips are counted; A's, rolled back with its transaction, are not");
is($node->safe_psql('postgres', 'SELECT count(*) FROM metric_anomaly.business_events'),
	'10', "and B's ten events are recorded");

# Four writers at once, 200 calls each (half expired), one transaction each.
my @out = ('') x 4;
my @err = ('') x 4;
my @h;
for my $i (0 .. 3)
{
	push @h, IPC::Run::start(
		# One -c per statement: psql before 15 prints only the last
		# result of a multi-statement -c (here COMMIT's, nothing).
		[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres') . ' user=app',
		  '-c', 'BEGIN', '-c', "SET LOCAL lock_timeout = '10s'",
		  '-c', "SELECT count(metric_anomaly.record_event('burst', '{}',
		                CASE WHEN g % 2 = 0 THEN '$valid' ELSE '$expired' END))
		           FROM generate_series(1, 200) g",
		  '-c', 'COMMIT' ],
		'>', \$out[$i], '2>', \$err[$i]);
}
$_->finish for @h;
is(join(',', map { s/\s+//gr } @out), '100,100,100,100', 'each writer recorded 100 events');
is(join('', @err), '', 'without errors');
is($node->safe_psql('postgres', q{
	SELECT skipped FROM metric_anomaly.ingest_stats WHERE event_type = 'burst'}),
	'400', 'the 400 expired tokens are counted exactly');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM metric_anomaly.business_events
	 WHERE event_type = 'burst' AND payload ->> 'app_v' = '2.7.1'}),
	'400', 'the 400 valid ones recorded with their dimensions');

$node->stop;
done_testing();

# ALTER EXTENSION metric_anomaly UPDATE from 0.1.0, with data in every table
# and both workers running, gives the catalog of a fresh 0.2.0 install and
# keeps every event, metric, setting, channel and alert; the workers wait
# (saying so once) while the database still holds 0.1.0, and carry on
# counting and alerting after the update.
#
# Database "upg" is created at 0.1.0 and updated; database "fresh" is a fresh
# CREATE EXTENSION.  The catalogs are compared with pg_dump --schema-only
# --binary-upgrade, because a plain pg_dump leaves out the members of an
# extension (it dumps CREATE EXTENSION instead).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);
use MaTest;
use MaAlert qw(start_receiver requests wait_requests);

my $node = ma_node('upgrade', database => 'upg', interval => 1, conf => q{
metric_anomaly.min_points = 5
metric_anomaly.window = 30
metric_anomaly.event_retention = 0
metric_anomaly.alert_retention = 0
metric_anomaly.alert_cooldown = 0
metric_anomaly.alert_backoff = '200ms'
metric_anomaly.alert_connect_timeout = '1s'
metric_anomaly.alert_timeout = '3s'
});
my $rcv = start_receiver("${PostgreSQL::Test::Utils::tmp_check}/rcv_upgrade", 0, "200\n");

$node->safe_psql('postgres', 'CREATE DATABASE upg');
$node->safe_psql('upg', q{CREATE EXTENSION metric_anomaly VERSION '0.1.0'});
is($node->safe_psql('upg', q{SELECT extversion FROM pg_extension WHERE extname = 'metric_anomaly'}),
	'0.1.0', 'database upg holds 0.1.0');

# Data in every table, as the 0.1.0 library left it: the library installed
# now is 0.2.0's, which does not run against a 0.1.0 schema, so the rows a
# 0.1.0 pass would have written are written here.  "legacy" is a metric the
# old worker folded, detected and alerted on (30 minutes, an episode firing
# from its 25th minute, delivered); "live" has events still pending, which
# the new worker must fold after the update: 22 minutes of 10 to 12 events,
# then a spike of 100, so the first pass after the update fires an alert.
$node->safe_psql('upg', qq{
CREATE TEMP TABLE t AS SELECT pg_catalog.date_trunc('minute', pg_catalog.now()) AS now_minute;
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp, payload, is_processed)
SELECT 'legacy', t.now_minute - interval '60 minutes' + g * interval '1 minute' + i * interval '1 second',
       pg_catalog.jsonb_build_object('g', g, 'i', i), true
  FROM t, generate_series(0, 29) g, generate_series(1, CASE WHEN g >= 25 THEN 40 ELSE 10 + g % 2 END) i;
INSERT INTO metric_anomaly.aggregated_metrics
       (metric_name, metric_timestamp, metric_value, sample_count, is_anomaly, anomaly_context, needs_eval)
SELECT 'legacy', t.now_minute - interval '60 minutes' + g * interval '1 minute',
       CASE WHEN g >= 25 THEN 40 ELSE 10 + g % 2 END, CASE WHEN g >= 25 THEN 40 ELSE 10 + g % 2 END,
       g >= 25,
       CASE WHEN g >= 5 THEN '{"method": "3-sigma", "mean": 10.5, "std_dev": 0.5, "upper_boundary": 12, "lower_boundary": 9, "sigma": 3, "window": 30}'::jsonb END,
       false
  FROM t, generate_series(0, 29) g;
INSERT INTO metric_anomaly.series (metric_name, filled_until, created_at)
SELECT 'legacy', t.now_minute - interval '31 minutes', t.now_minute - interval '61 minutes' FROM t;
INSERT INTO metric_anomaly.metrics (metric_name, sigma, window_size, min_points, direction, enabled, description)
VALUES ('legacy', 3.5, 30, 5, 'up', true, 'orders per minute'),
       ('live', NULL, NULL, NULL, 'both', true, NULL),
       ('quiet', 4, 60, 10, 'down', false, 'disabled on purpose');
UPDATE metric_anomaly.worker_state
   SET last_pass_start = now() - interval '31 minutes', last_pass_end = now() - interval '31 minutes',
       last_pass_events = 40, total_events = 462, passes = 30;
INSERT INTO metric_anomaly.alert_channels (name, kind, url, secret, options, enabled)
VALUES ('hook', 'webhook', 'http://127.0.0.1:$rcv->{port}/hook', 'whsec', '{"chart": false}', true),
       ('ops', 'slack', 'http://127.0.0.1:1/services/T/B/X', NULL, '{}', false);
INSERT INTO metric_anomaly.alert_routes (metric_name, channel) VALUES ('legacy', 'hook'), ('legacy', 'ops');
INSERT INTO metric_anomaly.alert_rules (rule_name, metric_name, above, below, for_minutes, enabled)
VALUES ('legacy_high', 'legacy', 1000, NULL, 3, true), ('live_low', 'live', NULL, -1, 2, false);
INSERT INTO metric_anomaly.alerts (metric_name, minute, value, context, state, source, episode_start, summary, created_at)
SELECT 'legacy', t.now_minute - interval '35 minutes', 40,
       '{"method": "3-sigma", "mean": 10.5, "std_dev": 0.5}', 'firing', '3-sigma',
       t.now_minute - interval '35 minutes', 'legacy is anomalous', t.now_minute - interval '34 minutes'
  FROM t;
INSERT INTO metric_anomaly.alert_episodes
       (metric_name, source, firing, muted, episode_start, breach_streak, ok_streak, last_minute, last_fired_at)
SELECT 'legacy', '3-sigma', true, false, t.now_minute - interval '35 minutes', 5, 0,
       t.now_minute - interval '31 minutes', t.now_minute - interval '34 minutes' FROM t
UNION ALL
SELECT 'legacy', 'threshold:legacy_high', false, false, NULL, 0, 30, t.now_minute - interval '31 minutes', NULL FROM t;
INSERT INTO metric_anomaly.deliveries
       (alert_id, channel, idempotency_key, state, attempts, next_attempt_at, last_attempt_at, http_status, sent_at)
SELECT a.id, 'hook', 'ma-' || a.id || '-0123456789abcdef0123', 'sent', 1, a.created_at, a.created_at, 200, a.created_at
  FROM metric_anomaly.alerts a;
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp)
SELECT 'live', t.now_minute - interval '25 minutes' + g * interval '1 minute' + i * interval '1 second'
  FROM t, generate_series(0, 22) g, generate_series(1, CASE WHEN g = 22 THEN 100 ELSE 10 + g % 3 END) i;
});
my $pending = $node->safe_psql('upg',
	'SELECT count(*) FROM metric_anomaly.business_events WHERE NOT is_processed');
is($pending, 10 * 8 + 11 * 7 + 12 * 7 + 100, 'live events pending');

# --- While the database holds 0.1.0, both workers wait and say so once. ---
my $waiting = qr/extension version 0\.1\.0 is installed in database "upg" but the library is 0\.2\.0; waiting for ALTER EXTENSION metric_anomaly UPDATE/;
ok($node->poll_query_until('postgres', qq{
	SELECT count(*) = 2 FROM pg_stat_activity
	 WHERE backend_type IN ('metric_anomaly worker', 'metric_anomaly delivery') AND datname = 'upg'}),
	'both workers run in upg');
my $tries = 0;
sleep(0.5) while count_matches($node, $waiting) < 2 && $tries++ < 240;
sleep(6);
is(count_matches($node, $waiting), 2, 'each worker says once that it waits for the update');
like(slurp_file($node->logfile), qr/HINT:  Run ALTER EXTENSION metric_anomaly UPDATE in that database/,
	'with what to run');
is($node->safe_psql('upg', q{
	SELECT (SELECT count(*) FROM metric_anomaly.business_events WHERE NOT is_processed), passes
	  FROM metric_anomaly.worker_state}),
	"$pending|30", 'no pass ran against the 0.1.0 schema');
my ($ret, $out, $err) = $node->psql('upg', 'SELECT metric_anomaly.process_pending()');
like($err, qr/ERROR:  extension metric_anomaly is installed at version 0\.1\.0 but the library is 0\.2\.0\nHINT:  Run ALTER EXTENSION metric_anomaly UPDATE/,
	'nor does process_pending(), which says what to run');

# --- The update keeps every row.  Compared: the 0.1.0 columns of every
# table, before the update and inside the updating transaction (the workers
# see 0.2.0 only once it commits, so nothing else changes in between).
# is_processed is gone in 0.2.0; that exactly the pending events are folded
# after the update is checked below. ---
my @tables = split /\n/, $node->safe_psql('upg', q{
	SELECT c.relname FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
	 WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_extension'::regclass
	   AND d.deptype = 'e' AND c.relkind = 'r'
	 ORDER BY 1});
is(scalar @tables, 11, 'the 0.1.0 tables');
my $snapshot = join " UNION ALL ", map {
	my $t = $_;
	my $cols = $node->safe_psql('upg', qq{
		SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute
		 WHERE attrelid = 'metric_anomaly.$t'::regclass AND attnum > 0 AND NOT attisdropped
		   AND attname <> 'is_processed'});
	qq{SELECT '$t', count(*), md5(coalesce(string_agg(r::text, '|' ORDER BY r::text), ''))
	     FROM (SELECT $cols FROM metric_anomaly.$t) r}
} @tables;
# the sequences of 0.1.0 (0.2.0 adds its own, e.g. report_runs_id_seq)
my $seqs = $node->safe_psql('upg', q{
	SELECT string_agg(quote_literal(sequencename), ', ') FROM pg_sequences WHERE schemaname = 'metric_anomaly'});
$snapshot .= qq{ UNION ALL SELECT sequencename::text, coalesce(last_value, 0), 'sequence'
	FROM pg_sequences WHERE schemaname = 'metric_anomaly' AND sequencename IN ($seqs)};
$snapshot = "SELECT * FROM ($snapshot) s ORDER BY 1";
my $before = $node->safe_psql('upg', $snapshot);
($ret, my $after, $err) = $node->psql('upg',
	"BEGIN; ALTER EXTENSION metric_anomaly UPDATE; $snapshot; COMMIT;",
	on_error_stop => 1);
is($ret, 0, 'ALTER EXTENSION metric_anomaly UPDATE succeeds with the workers running') or diag $err;
is($after, $before, 'no event, metric, setting, channel or alert state is lost or changed');
is($node->safe_psql('upg', q{SELECT extversion FROM pg_extension WHERE extname = 'metric_anomaly'}),
	'0.2.0', 'database upg holds 0.2.0');

# --- After the update the workers carry on: the pending events are folded,
# the spike alerted and delivered, and new events counted. ---
ok($node->poll_query_until('upg', q{
	SELECT pending_events = 0 FROM metric_anomaly.worker_status}),
	'the worker folds the events left pending before the update');
is($node->safe_psql('upg', q{
	SELECT sum(sample_count) FILTER (WHERE metric_name = 'live'),
	       sum(sample_count) FILTER (WHERE metric_name = 'legacy')
	  FROM metric_anomaly.aggregated_metrics}),
	"$pending|462", 'every pending event counted once, the folded ones kept');
ok($node->poll_query_until('upg', q{
	SELECT count(*) = 1 FROM metric_anomaly.alerts WHERE metric_name = 'live' AND state = 'firing'}),
	'the first passes after the update fire an alert for the spike');
ok($node->poll_query_until('upg', q{
	SELECT count(*) = 1 FROM metric_anomaly.deliveries d JOIN metric_anomaly.alerts a ON a.id = d.alert_id
	 WHERE a.metric_name = 'live' AND d.state = 'sent' AND d.channel = 'hook'}),
	'and the delivery worker delivers it');
my @req = wait_requests($rcv, 1);
is(scalar(grep { $_->{body} =~ /"metric":"live"/ } @req), 1, 'the receiver got the live alert once');
$node->safe_psql('upg', q{
	INSERT INTO metric_anomaly.business_events (event_type, event_timestamp)
	SELECT 'after', now() - interval '2 minutes' FROM generate_series(1, 7)});
ok($node->poll_query_until('upg', q{
	SELECT sum(sample_count) = 7 FROM metric_anomaly.aggregated_metrics WHERE metric_name = 'after'}),
	'the worker carries on counting');
is($node->safe_psql('upg', 'SELECT total_events FROM metric_anomaly.worker_state'),
	462 + $pending + 7, 'worker_state counts on from the 0.1.0 total');

# --- The updated catalog equals a fresh install. ---
$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION metric_anomaly');

# pg_dump --schema-only --binary-upgrade dumps each member of the extension
# (tables with their column order, defaults, constraints, indexes,
# triggers, views, functions with their settings, privileges including the
# initial privileges of pg_init_privs, comments) and how it belongs to the
# extension.  What differs between two databases without being part of the
# schema is taken out:
#  - comment lines (TOC headers; "For binary upgrade, ..." notes);
#  - binary_upgrade_set_next_* calls: the OIDs and relfilenodes to reuse;
#  - the OIDs of the configuration tables in the call that creates the empty
#    extension; the tables, sorted by name, and their conditions are
#    compared instead (the order of pg_extension_config_dump calls does not
#    matter);
#  - sequence positions (data, compared above);
#  - the transaction ids each table was frozen at (relfrozenxid, relminmxid);
#  - \restrict and \unrestrict with their random key (pg_dump 15.14 on);
#  - columns dropped by an upgrade: they stay as invisible placeholders
#    ("........pg.dropped.N........", then ALTER TABLE ... DROP COLUMN) that
#    a fresh install does not have; SQL never sees them.
sub schema_of
{
	my ($db) = @_;
	my ($out, $errs);
	IPC::Run::run([ 'pg_dump', '--schema-only', '--binary-upgrade', '--no-sync',
			'-d', $node->connstr($db) ], '>', \$out, '2>', \$errs)
	  or die "pg_dump $db failed: $errs";
	my @lines = split /\n/, $out;
	my @keep;
	while (defined(my $line = shift @lines))
	{
		next if $line =~ /^--/ || $line =~ /^\s*$/;
		next if $line =~ /binary_upgrade_set_next_/;
		next if $line =~ /^SELECT pg_catalog\.setval\(/;
		next if $line =~ /^\\(?:un)?restrict /;
		# The transaction ids a table was frozen at: UPDATE pg_class / SET
		# relfrozenxid = ... / WHERE oid = ....
		if ($line eq 'UPDATE pg_catalog.pg_class' && @lines && $lines[0] =~ /^SET relfrozenxid = /)
		{
			splice @lines, 0, 2;
			next;
		}
		# A dropped column: its placeholder in CREATE TABLE, then
		# UPDATE pg_catalog.pg_attribute / SET attlen ... / WHERE attname
		# = its name / AND attrelid ...; and ALTER TABLE ... DROP COLUMN.
		if ($line eq 'UPDATE pg_catalog.pg_attribute' && @lines && $lines[0] =~ /^SET attlen = /)
		{
			shift @lines while @lines && $lines[0] !~ /::pg_catalog\.regclass;$/;
			shift @lines;
			next;
		}
		next if $line =~ /\.\.\.\.\.\.\.\.pg\.dropped\.\d+\.\.\.\.\.\.\.\./;
		$line =~ s/^(SELECT pg_catalog\.binary_upgrade_create_empty_extension\('metric_anomaly', 'metric_anomaly', false, '[^']*'), .*$/$1, CONFIG)/;
		push @keep, $line;
	}
	my $text = join("\n", @keep) . "\n";
	# A dropped last column leaves a comma before the closing parenthesis.
	$text =~ s/,\n\);/\n);/g;
	return $text;
}

my $config = q{
	SELECT string_agg(c::regclass::text || ' ' || quote_literal(w), ', ' ORDER BY c::regclass::text)
	  FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS u(c, w)
	 WHERE e.extname = 'metric_anomaly'};
is($node->safe_psql('upg', $config), $node->safe_psql('fresh', $config),
	'the same tables are dumped with their rows (pg_extension_config_dump)');

my $upg = schema_of('upg');
my $fresh = schema_of('fresh');
like($fresh, qr/CREATE TABLE metric_anomaly\.business_events/, 'the dump holds the extension members');
my $dir = PostgreSQL::Test::Utils::tempdir;
PostgreSQL::Test::Utils::append_to_file("$dir/upgraded.sql", $upg);
PostgreSQL::Test::Utils::append_to_file("$dir/fresh.sql", $fresh);
my ($diff) = run_command([ 'diff', '-u', "$dir/fresh.sql", "$dir/upgraded.sql" ]);
is($diff, '', 'the updated catalog equals a fresh install of 0.2.0') or diag $diff;

done_testing();

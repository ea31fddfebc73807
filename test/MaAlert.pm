# MaAlert.pm: helpers shared by the alerting TAP tests (receiver control and
# request reading).
package MaAlert;

use strict;
use warnings;
use Exporter 'import';
use File::Path qw(make_path remove_tree);
use Time::HiRes qw(usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# A started node preloading the extension, with fast alerting settings and
# the extension created in postgres.
sub alert_node
{
	my ($name, $extra) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'metric_anomaly'
metric_anomaly.database = 'postgres'
metric_anomaly.interval = 1
metric_anomaly.alert_backoff = '200ms'
metric_anomaly.alert_connect_timeout = '1s'
metric_anomaly.alert_timeout = '3s'
metric_anomaly.alert_resolve_after = 2
metric_anomaly.alert_cooldown = 0
max_worker_processes = 16
restart_after_crash = on
} . ($extra // ''));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION metric_anomaly');
	return $node;
}

# Stores verdicts of minutes [from, to] (offsets from 2026-01-01 00:00 UTC)
# of a metric, as detection would: value, is_anomaly and a 3-sigma context.
# The series is registered as filled up to now, so the worker leaves it be.
sub put_minutes
{
	my ($node, $metric, $from, $to, $value, $anomaly) = @_;
	my $a = $anomaly ? 'true' : 'false';
	$node->safe_psql('postgres', qq{
INSERT INTO metric_anomaly.series (metric_name, filled_until)
VALUES ('$metric', pg_catalog.date_trunc('minute', pg_catalog.now()))
ON CONFLICT (metric_name) DO NOTHING;
INSERT INTO metric_anomaly.aggregated_metrics
  (metric_name, metric_timestamp, metric_value, sample_count, is_anomaly, anomaly_context, needs_eval)
SELECT '$metric', '2026-01-01 00:00:00+00'::timestamptz + g * interval '1 minute', $value, 1, $a,
       '{"method":"3-sigma","mean":100,"std_dev":5,"upper_boundary":115,"lower_boundary":85}'::jsonb, false
  FROM pg_catalog.generate_series($from, $to) g
ON CONFLICT (metric_name, metric_timestamp) DO UPDATE
  SET metric_value = EXCLUDED.metric_value, is_anomaly = EXCLUDED.is_anomaly,
      anomaly_context = EXCLUDED.anomaly_context});
}

# One query, one exact expected answer.
sub query_ok
{
	my ($node, $sql, $expected, $name) = @_;
	is($node->safe_psql('postgres', $sql), $expected, $name);
}

our @EXPORT = qw(start_receiver stop_receiver set_script requests wait_requests
  alert_node put_minutes query_ok);

# Receivers still running when the test ends (also when it dies) are stopped.
my %receivers;
END { kill 'TERM', keys %receivers if %receivers; }

# Starts test/receiver.pl (or another receiver: program) on 127.0.0.1 in a
# fresh directory; port 0 = any.  Returns a hash with dir, port and pid.
sub start_receiver
{
	my ($dir, $port, $script, $program) = @_;
	make_path($dir);
	unlink glob("$dir/req-*"), glob("$dir/msg-*"), glob("$dir/session-*"), "$dir/port";
	set_script({ dir => $dir }, $script) if defined $script;
	my $pid = fork;
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		exec($^X, $program // 'test/receiver.pl', $dir, $port // 0) or die "exec: $!";
	}
	for (1 .. 100)
	{
		last if -s "$dir/port";
		usleep(50_000);
	}
	$receivers{$pid} = 1;
	open my $fh, '<', "$dir/port" or die "receiver did not start";
	my $p = <$fh>;
	chomp $p;
	return { dir => $dir, port => $p, pid => $pid };
}

sub stop_receiver
{
	my ($r) = @_;
	kill 'TERM', $r->{pid};
	waitpid($r->{pid}, 0);
	delete $receivers{ $r->{pid} };
	unlink "$r->{dir}/port";
}

sub set_script
{
	my ($r, $script) = @_;
	open my $fh, '>', "$r->{dir}/script.tmp" or die $!;
	print $fh $script;
	close $fh;
	rename "$r->{dir}/script.tmp", "$r->{dir}/script" or die $!;
}

# Requests recorded so far, in order: method, path, headers (lower-case
# names), body, and the script line the receiver answered with.
sub requests
{
	my ($r) = @_;
	my @out;
	for my $head (sort glob("$r->{dir}/req-*.head"))
	{
		(my $bodyf = $head) =~ s/\.head$/.body/;
		open my $fh, '<', $head or next;
		my ($line, @hdrs) = map { s/\r?\n$//r } <$fh>;
		close $fh;
		my ($method, $path) = split / /, $line;
		my %h;
		for (@hdrs)
		{
			my ($k, $v) = /^([^:]+):\s*(.*)$/ or next;
			$h{ lc $k } = $v;
		}
		local $/;
		open my $bf, '<', $bodyf or next;
		binmode $bf;
		my $body = <$bf>;
		close $bf;
		(my $answerf = $head) =~ s/\.head$/.answer/;
		my $answer;
		if (open my $af, '<', $answerf)
		{
			$answer = <$af>;
			close $af;
			$answer =~ s/\r?\n$// if defined $answer;
		}
		push @out, { method => $method, path => $path, headers => \%h, body => $body,
			answer => $answer };
	}
	return @out;
}

# Waits until at least n requests are recorded; returns them.
sub wait_requests
{
	my ($r, $n, $timeout) = @_;
	$timeout //= 60;
	for (1 .. $timeout * 10)
	{
		my @req = requests($r);
		return @req if @req >= $n;
		usleep(100_000);
	}
	return requests($r);
}

1;

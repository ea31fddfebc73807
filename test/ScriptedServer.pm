# ScriptedServer.pm: what test/receiver.pl (HTTP) and test/smtp_receiver.pl
# (SMTP) share.  Each listens on 127.0.0.1 only, writes the port it got to
# DIR/port, serves every connection in a forked child, and answers from
# DIR/script: line N for the N-th exchange, the last line when there are
# fewer, a default when there is none.  The script is read again each time,
# so a test may change it at any time.  Core Perl modules only.
package ScriptedServer;

use strict;
use warnings;
use Exporter 'import';
use IO::Socket::INET;
use POSIX ();

our @EXPORT_OK = qw(serve_forever write_file script_line);

# Listens on 127.0.0.1:$port (0: any free port) and calls
# $handler->($socket, $n) in a child for the n-th connection (from 1).
# Never returns; SIGTERM ends it.
sub serve_forever
{
	my ($dir, $port, $handler) = @_;
	my $server = IO::Socket::INET->new(
		LocalAddr => '127.0.0.1',
		LocalPort => $port // 0,
		Proto     => 'tcp',
		Listen    => 64,
		ReuseAddr => 1) or die "cannot listen on 127.0.0.1:" . ($port // 0) . ": $!\n";

	write_file("$dir/port", $server->sockport . "\n");
	$SIG{CHLD} = sub { 1 while waitpid(-1, POSIX::WNOHANG()) > 0 };
	$SIG{TERM} = sub { exit 0 };

	my $seq = 0;
	for (;;)
	{
		my $client = $server->accept or next;
		$seq++;
		my $pid = fork;
		if (!defined $pid) { close $client; next; }
		if ($pid == 0)
		{
			close $server;
			binmode $client;
			$handler->($client, $seq);
			exit 0;
		}
		close $client;
	}
}

# Writes a whole file under a temporary name first, so that a test polling
# for it never reads half of it.
sub write_file
{
	my ($path, $data) = @_;
	open my $fh, '>', "$path.tmp" or die "$path.tmp: $!";
	binmode $fh;
	print $fh $data;
	close $fh;
	rename "$path.tmp", $path or die "rename $path: $!";
}

# Line $n (from 1) of DIR/script, its last line when it has fewer, or
# $default when there is no script or it is empty.
sub script_line
{
	my ($dir, $n, $default) = @_;
	open my $fh, '<', "$dir/script" or return $default;
	my @lines = grep { /\S/ } map { s/\r?\n$//r } <$fh>;
	close $fh;
	return $default unless @lines;
	return $n <= @lines ? $lines[$n - 1] : $lines[-1];
}

1;

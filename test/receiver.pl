#!/usr/bin/perl
#
# receiver.pl: a scripted HTTP receiver for the alerting tests and the demo.
#
#   perl test/receiver.pl DIR [PORT]
#
# Listens on 127.0.0.1 only (PORT 0 or absent: any free port, written to
# DIR/port), records every request as DIR/req-NNNN.head ("METHOD PATH" then
# one "Name: value" line per header), DIR/req-NNNN.body and DIR/req-NNNN.answer
# (the script line it was given, written before answering), and answers the
# N-th request (from 1) with line N of DIR/script, or with its last line when
# there are fewer lines (200 when there is no script).  The script is read
# again for every request, so a test may change it at any time.  Lines:
#
#   STATUS [delay=SECONDS] [BODY]   answer STATUS (with BODY) after SECONDS
#   hang                            read the request, never answer
#   close                           read the request, close without answering
#
# Core Perl modules only, so it runs on a fresh Debian.
use strict;
use warnings;
use IO::Socket::INET;
use POSIX ();

my ($dir, $port) = @ARGV;
die "usage: receiver.pl DIR [PORT]\n" unless defined $dir && -d $dir;
$port //= 0;

my $server = IO::Socket::INET->new(
	LocalAddr => '127.0.0.1',
	LocalPort => $port,
	Proto     => 'tcp',
	Listen    => 64,
	ReuseAddr => 1) or die "cannot listen on 127.0.0.1:$port: $!\n";

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
		handle($client, $seq);
		exit 0;
	}
	close $client;
}

sub write_file
{
	my ($path, $data) = @_;
	open my $fh, '>', "$path.tmp" or die "$path.tmp: $!";
	binmode $fh;
	print $fh $data;
	close $fh;
	rename "$path.tmp", $path or die "rename $path: $!";
}

sub action_for
{
	my ($n) = @_;
	open my $fh, '<', "$dir/script" or return '200';
	my @lines = grep { /\S/ } map { s/\r?\n$//r } <$fh>;
	close $fh;
	return '200' unless @lines;
	return $n <= @lines ? $lines[$n - 1] : $lines[-1];
}

sub handle
{
	my ($c, $n) = @_;
	binmode $c;
	my $buf = '';
	while ($buf !~ /\r\n\r\n/)
	{
		my $r = sysread($c, $buf, 65536, length $buf);
		return unless $r;
	}
	my ($head, $rest) = split /\r\n\r\n/, $buf, 2;
	my ($reqline, @hdrs) = split /\r\n/, $head;
	my ($method, $path) = split / /, $reqline;
	my $len = 0;
	for (@hdrs) { $len = $1 if /^content-length:\s*(\d+)/i; }
	while (length($rest) < $len)
	{
		my $r = sysread($c, $rest, 65536, length $rest);
		last unless $r;
	}
	my $id = sprintf('%04d', $n);
	write_file("$dir/req-$id.body", $rest);
	write_file("$dir/req-$id.head", join("\n", "$method $path", @hdrs) . "\n");

	my $action = action_for($n);
	write_file("$dir/req-$id.answer", "$action\n");
	if ($action eq 'hang')
	{
		# Hold the connection until the client gives up.
		1 while sysread($c, my $junk, 4096);
		return;
	}
	return if $action eq 'close';
	my ($status, $rest_action) = $action =~ /^(\d{3})\s*(.*)$/ or return;
	my $delay = 0;
	$delay = $1 if $rest_action =~ s/^delay=(\d+(?:\.\d+)?)\s*//;
	select(undef, undef, undef, $delay) if $delay > 0;
	my $body = length $rest_action ? $rest_action : '{"ok":true,"errcode":0,"code":0}';
	my $type = $body =~ /^[\[{]/ ? 'application/json' : 'text/plain';
	print $c "HTTP/1.1 $status Scripted\r\nContent-Type: $type\r\nContent-Length: "
	  . length($body) . "\r\nConnection: close\r\n\r\n$body";
	close $c;
}

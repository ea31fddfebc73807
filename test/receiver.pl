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
use FindBin;
use lib $FindBin::Bin;
use ScriptedServer qw(serve_forever write_file script_line);

my ($dir, $port) = @ARGV;
die "usage: receiver.pl DIR [PORT]\n" unless defined $dir && -d $dir;
serve_forever($dir, $port, \&handle);

sub handle
{
	my ($c, $n) = @_;
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

	my $action = script_line($dir, $n, '200');
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

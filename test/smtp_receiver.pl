#!/usr/bin/perl
#
# smtp_receiver.pl: a scripted SMTP receiver for the e-mail tests.
#
#   perl test/smtp_receiver.pl DIR [PORT]
#
# Listens on 127.0.0.1 only (PORT 0 or absent: any free port, written to
# DIR/port) and speaks plain SMTP (RFC 5321; EHLO offers AUTH PLAIN LOGIN and
# no STARTTLS, so a client that requires TLS must give up after EHLO).  Each
# connection is a session, recorded as DIR/session-NNNN.log: one line per
# command received ("AUTH PLAIN" and "AUTH LOGIN" are logged as
# "AUTH <user> <password>", decoded).  Each message, numbered over all
# sessions from 1, is DIR/msg-NNNN.eml (the DATA as sent, dot-stuffing
# undone) and DIR/msg-NNNN.env ("from <addr>", then "rcpt <addr>" lines);
# its end of DATA is answered with line N of DIR/script, or the last line
# when there are fewer (250 when there is no script), e.g.
#
#   250 OK          accept
#   451 try later   temporary failure
#   554 rejected    permanent failure
#
# Core Perl modules only, so it runs on a fresh Debian.
use strict;
use warnings;
use Fcntl qw(:flock);
use FindBin;
use lib $FindBin::Bin;
use MIME::Base64 qw(decode_base64);
use ScriptedServer qw(serve_forever write_file script_line);

my ($dir, $port) = @ARGV;
die "usage: smtp_receiver.pl DIR [PORT]\n" unless defined $dir && -d $dir;
serve_forever($dir, $port, sub { serve($_[0], sprintf('%04d', $_[1])) });

sub append_file
{
	my ($path, $line) = @_;
	open my $fh, '>>', $path or die "$path: $!";
	print $fh "$line\n";
	close $fh;
}

# The number of the next message over all sessions (they run in parallel).
sub next_message
{
	open my $lock, '>>', "$dir/counter.lock" or die $!;
	flock($lock, LOCK_EX) or die $!;
	my $n = 0;
	if (open my $fh, '<', "$dir/counter") { $n = <$fh> // 0; chomp $n; close $fh; }
	$n++;
	write_file("$dir/counter", "$n\n");
	close $lock;
	return $n;
}

sub serve
{
	my ($c, $id) = @_;
	my $log = "$dir/session-$id.log";
	$c->autoflush(1);
	my $say = sub { print $c "$_[0]\r\n" };
	my $line = sub { my $l = <$c>; $l =~ s/\r?\n$// if defined $l; return $l };
	write_file($log, '');
	$say->('220 127.0.0.1 ESMTP metric_anomaly test receiver');
	my ($from, @rcpt);
	while (defined(my $cmd = $line->()))
	{
		if ($cmd =~ /^AUTH PLAIN ?(.*)$/i)
		{
			my $b64 = $1;
			if ($b64 eq '') { $say->('334 '); $b64 = $line->() // ''; }
			my (undef, $user, $pass) = split /\0/, decode_base64($b64), 3;
			append_file($log, "AUTH $user $pass");
			$say->('235 2.7.0 Authentication successful');
			next;
		}
		if ($cmd =~ /^AUTH LOGIN ?(.*)$/i)
		{
			my $u = $1;
			if ($u eq '') { $say->('334 VXNlcm5hbWU6'); $u = $line->() // ''; }
			$say->('334 UGFzc3dvcmQ6');
			my $p = $line->() // '';
			append_file($log, 'AUTH ' . decode_base64($u) . ' ' . decode_base64($p));
			$say->('235 2.7.0 Authentication successful');
			next;
		}
		append_file($log, $cmd);
		if ($cmd =~ /^EHLO\b/i)
		{
			print $c "250-127.0.0.1\r\n250-AUTH PLAIN LOGIN\r\n250-8BITMIME\r\n250 SIZE 10485760\r\n";
		}
		elsif ($cmd =~ /^HELO\b/i) { $say->('250 127.0.0.1'); }
		elsif ($cmd =~ /^MAIL FROM:\s*(<[^>]*>)/i) { ($from, @rcpt) = ($1); $say->('250 2.1.0 OK'); }
		elsif ($cmd =~ /^RCPT TO:\s*(<[^>]*>)/i) { push @rcpt, $1; $say->('250 2.1.5 OK'); }
		elsif ($cmd =~ /^DATA$/i)
		{
			$say->('354 End data with <CR><LF>.<CR><LF>');
			my $data = '';
			while (defined(my $l = <$c>))
			{
				last if $l eq ".\r\n";
				$l =~ s/^\.//;
				$data .= $l;
			}
			my $n = next_message();
			my $m = sprintf('%04d', $n);
			write_file("$dir/msg-$m.env", join("\n", "from $from", map { "rcpt $_" } @rcpt) . "\n");
			write_file("$dir/msg-$m.eml", $data);
			$say->(script_line($dir, $n, '250 OK'));
		}
		elsif ($cmd =~ /^(RSET|NOOP)$/i) { ($from, @rcpt) = (); $say->('250 OK'); }
		elsif ($cmd =~ /^QUIT$/i) { $say->('221 Bye'); last; }
		else { $say->('502 5.5.2 Command not implemented'); }
	}
	close $c;
}

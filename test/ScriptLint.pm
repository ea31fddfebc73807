# ScriptLint.pm: the checks pgspot (github.com/timescale/pgspot) makes on
# extension scripts, for the install and upgrade scripts of metric_anomaly.
# pgspot is a Python package on PyPI, which this project's machines cannot
# reach, so its rules are written here over a small SQL tokenizer (strings,
# dollar quotes, quoted identifiers, comments), with the codes of its
# REFERENCE.md where a rule has one, plus the project's own (MA...):
#
#   PS001  operator outside OPERATOR(schema.op) while search_path is unsafe
#   PS002/PS007/PS015  CREATE OR REPLACE, except of metric_anomaly objects
#          in an upgrade script (the schema is checked by the script's
#          prologue, and PostgreSQL refuses to replace a non-member)
#   PS003/PS004  SECURITY DEFINER without SET search_path = pg_catalog, pg_temp
#   PS005  a function without that setting, unless IMMUTABLE, the support
#          function of an aggregate or one of %NO_SQL (which run no SQL; a
#          setting costs a GUC save and restore per row or call)
#   PS010-PS014  CREATE ... IF NOT EXISTS
#   PS016  unqualified function call while search_path is unsafe
#   PS017  unqualified relation after FROM, JOIN, INTO, UPDATE, TABLE while
#          search_path is unsafe; unqualified name of a created object
#   MA001  the \echo guard is missing
#   MA002  the first statement is not SET LOCAL search_path = pg_catalog, pg_temp
#   MA003  search_path set to anything else, or through set_config()
#   MA004  CREATE SCHEMA (the schema comes from the control file)
#   MA005  GRANT ALL, TRIGGER, TRUNCATE or REFERENCES (an admin attaching a
#          trigger runs code as the worker's superuser)
#
# The search_path starts unsafe (CREATE EXTENSION puts the extension's
# schema first), becomes safe at SET [LOCAL] search_path = pg_catalog,
# pg_temp, and inside a function with that setting.  DO blocks are checked
# with the state of the script at that point.
package ScriptLint;

use strict;
use warnings;
use Exporter 'import';

our @EXPORT = qw(lint_script lint_text);

# C functions that run no SQL and are called once per row of a hot query
# (detection's calls once a series; a setting per call was 40 ms of a pass
# over 10,000 series).
my %NO_SQL = map { $_ => 1 } qw(metric_anomaly.detect_cache_held);

my $SAFE_PATH = qr/^\s*pg_catalog\s*,\s*pg_temp\s*$/i;

# Words followed by "(" that are syntax or type names, not function calls.
my %NOT_FUNCTION = map { $_ => 1 } qw(
  in values check exists any all some array row cast coalesce nullif greatest
  least extract overlaps position substring trim overlay as on using key unique
  references include where filter over partition interval default table
  function procedure aggregate and or not select returns primary foreign
  constraint varchar char character numeric decimal timestamp timestamptz time
  bit varbit with if elsif when then return query raise perform by group order
  into from join lateral set window grouping rollup cube distinct);

sub tokenize
{
	my ($text) = @_;
	my @tok;
	my $line = 1;
	pos($text) = 0;
	my $len = length $text;
	while (pos($text) < $len)
	{
		my $start = pos($text);
		if ($text =~ /\G(\s+)/gc) { }
		elsif ($text =~ /\G--[^\n]*/gc) { }
		elsif ($text =~ /\G\/\*/gc)
		{
			my $depth = 1;
			while ($depth > 0 && pos($text) < $len)
			{
				if ($text =~ /\G\/\*/gc) { $depth++ }
				elsif ($text =~ /\G\*\//gc) { $depth-- }
				else { $text =~ /\G./gcs }
			}
		}
		elsif ($text =~ /\G\\[^\n]*/gc)
		{
			push @tok, { t => 'meta', v => substr($text, $start, pos($text) - $start), line => $line };
		}
		elsif ($text =~ /\G[Ee]'((?:[^'\\]|\\.|'')*)'/gcs)
		{
			push @tok, { t => 'str', v => $1, line => $line };
		}
		elsif ($text =~ /\G'((?:[^']|'')*)'/gcs)
		{
			push @tok, { t => 'str', v => $1 =~ s/''/'/gr, line => $line };
		}
		elsif ($text =~ /\G(\$([A-Za-z_][A-Za-z_0-9]*)?\$)/gc)
		{
			my $tag = $1;
			my $body_start = pos($text);
			my $end = index($text, $tag, $body_start);
			die "unterminated dollar quote $tag at line $line\n" if $end < 0;
			push @tok, { t => 'dollar', v => substr($text, $body_start, $end - $body_start),
				line => $line };
			pos($text) = $end + length $tag;
		}
		elsif ($text =~ /\G"((?:[^"]|"")*)"/gc)
		{
			push @tok, { t => 'ident', v => $1, quoted => 1, line => $line };
		}
		elsif ($text =~ /\G([A-Za-z_][A-Za-z_0-9\$]*)/gc)
		{
			push @tok, { t => 'ident', v => lc $1, line => $line };
		}
		elsif ($text =~ /\G([0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)/gc)
		{
			push @tok, { t => 'num', v => $1, line => $line };
		}
		elsif ($text =~ /\G(::|:=|=>)/gc)
		{
			push @tok, { t => 'punct', v => $1, line => $line };
		}
		elsif ($text =~ /\G([-+*\/<>=~!@#%^&|`?]+)/gc)
		{
			push @tok, { t => 'op', v => $1, line => $line };
		}
		elsif ($text =~ /\G([(),;.\[\]:])/gc)
		{
			push @tok, { t => 'punct', v => $1, line => $line };
		}
		else
		{
			die "cannot tokenize at line $line: " . substr($text, $start, 20) . "\n";
		}
		$line += (substr($text, $start, pos($text) - $start) =~ tr/\n//);
	}
	return @tok;
}

# Splits tokens into statements at top-level semicolons.
sub statements
{
	my @tok = @_;
	my (@stmts, @cur);
	for my $t (@tok)
	{
		if ($t->{t} eq 'punct' && $t->{v} eq ';')
		{
			push @stmts, [@cur] if @cur;
			@cur = ();
		}
		elsif ($t->{t} eq 'meta')
		{
			push @stmts, [$t];
		}
		else
		{
			push @cur, $t;
		}
	}
	push @stmts, [@cur] if @cur;
	return @stmts;
}

sub words { return join ' ', map { $_->{t} eq 'ident' ? $_->{v} : $_->{t} eq 'str' ? "'$_->{v}'" : $_->{v} } @_ }

# The text of a SET search_path statement's value, or undef.
sub search_path_value
{
	my @s = @_;
	my $w = words(@s);
	return $1 if $w =~ /^set (?:local |session )?search_path (?:=|to) (.*)$/;
	return undef;
}

# Is the name starting at token $i qualified (ident . ident)?
sub qualified_at
{
	my ($s, $i) = @_;
	return defined $s->[ $i + 1 ] && $s->[ $i + 1 ]{v} eq '.' && $s->[ $i + 1 ]{t} eq 'punct';
}

sub lint_text
{
	my ($name, $text, %opt) = @_;
	my @findings;
	my $add = sub {
		my ($line, $code, $msg) = @_;
		push @findings, "$name:$line: $code $msg";
	};
	my @stmts = statements(tokenize($text));

	if ($opt{script})
	{
		$add->(1, 'MA001', 'the script does not start with the \\echo ... \\quit guard')
		  unless @stmts && $stmts[0][0]{t} eq 'meta' && $stmts[0][0]{v} =~ /^\\echo .*\\quit\s*$/;
		my ($first) = grep { $_->[0]{t} ne 'meta' } @stmts;
		my $path = $first ? search_path_value(@$first) : undef;
		$add->($first ? $first->[0]{line} : 1, 'MA002',
			'the first statement must be SET LOCAL search_path = pg_catalog, pg_temp')
		  unless defined $path && words(@$first) =~ /^set local / && $path =~ $SAFE_PATH;
	}

	# Support functions of aggregates (by name).
	my %support;
	for my $s (@stmts)
	{
		my $w = words(@$s);
		next unless $w =~ /^create (?:or replace )?aggregate /;
		$support{ $1 =~ s/ //gr } = 1 while $w =~ /\b(?:sfunc|finalfunc|combinefunc|serialfunc|deserialfunc|msfunc|minvfunc|mfinalfunc) = ([a-z_0-9]+ \. [a-z_0-9]+)/g;
	}

	my $safe = $opt{safe} // 0;
	for my $s (@stmts)
	{
		next if $s->[0]{t} eq 'meta';
		my $line = $s->[0]{line};
		my $w = words(@$s);

		if (defined(my $path = search_path_value(@$s)))
		{
			$safe = $path =~ $SAFE_PATH ? 1 : 0;
			$add->($line, 'MA003', "search_path set to $path") unless $safe;
			next;
		}
		$add->($line, 'MA003', 'search_path changed through set_config()')
		  if $w =~ /set_config \( 'search_path'/;
		$add->($line, 'MA004', 'CREATE SCHEMA: the schema comes from the control file')
		  if $w =~ /^create schema\b/;
		$add->($line, 'PS010', 'CREATE ... IF NOT EXISTS on an object someone else may have made first')
		  if $w =~ /^create\b.*?\bif not exists\b/;
		if ($w =~ /^create or replace (?:(?:trusted |procedural )*\w+)(?: (\w+) (\.))?/)
		{
			my $ok = $opt{upgrade} && defined $1 && $1 eq 'metric_anomaly';
			$add->($line, 'PS002', 'CREATE OR REPLACE of an object the extension may not own') unless $ok;
		}
		$add->($line, 'MA005', 'GRANT ALL, TRIGGER, TRUNCATE or REFERENCES')
		  if $w =~ /^grant\b/ && $w =~ /^grant (?:[a-z, ]*\b)?(?:all|trigger|truncate|references)\b/;

		# Names of created objects are schema-qualified.
		if ($w =~ /^create (?:or replace )?(?:unlogged |temp |temporary )?(table|view|materialized view|function|procedure|aggregate|sequence|type|domain|operator|collation|cast)\b/)
		{
			my $kind = $1;
			my $n = 1 + scalar(split / /, $kind);
			$n += 2 if $w =~ /^create or replace /;
			$n++ if $w =~ /^create (?:or replace )?(?:unlogged |temp |temporary )/;
			if ($kind ne 'cast' && $kind ne 'operator')
			{
				$add->($line, 'PS017', "CREATE \U$kind\E of an unqualified name")
				  unless qualified_at($s, $n);
			}
			elsif ($kind eq 'operator' && !($s->[$n]{t} eq 'ident' && qualified_at($s, $n)))
			{
				$add->($line, 'PS017', 'CREATE OPERATOR of an unqualified name');
			}
		}
		if ($w =~ /^create (?:unique )?index\b/ || $w =~ /^create (?:or replace )?(?:constraint )?trigger\b/)
		{
			for my $i (0 .. $#$s - 1)
			{
				next unless $s->[$i]{t} eq 'ident' && $s->[$i]{v} eq 'on' && $s->[ $i + 1 ]{t} eq 'ident';
				$add->($line, 'PS017', 'index or trigger on an unqualified table') unless qualified_at($s, $i + 1);
				last;
			}
		}

		# Functions: settings, SECURITY DEFINER, bodies.
		if ($w =~ /^create (?:or replace )?(function|procedure) (\w+ \. \w+)/)
		{
			(my $fname = $2) =~ s/ //g;
			my $pinned = 0;
			my $bad_path = 0;
			for my $i (0 .. $#$s - 2)
			{
				next unless $s->[$i]{t} eq 'ident' && $s->[$i]{v} eq 'set'
				  && $s->[ $i + 1 ]{t} eq 'ident' && $s->[ $i + 1 ]{v} eq 'search_path';
				my @v;
				for my $j ($i + 3 .. $#$s)
				{
					last if $s->[$j]{t} eq 'ident' && $s->[$j]{v} =~ /^(?:as|language|set|security|immutable|stable|volatile|strict|called|parallel|cost|rows|returns|window|leakproof|not|support|begin)$/
					  && !($s->[ $j - 1 ]{v} eq ',');
					push @v, $s->[$j];
				}
				if (words(@v) =~ $SAFE_PATH) { $pinned = 1 } else { $bad_path = 1 }
			}
			my $secdef = $w =~ /\bsecurity definer\b/;
			$add->($line, $bad_path ? 'PS004' : 'PS003', "SECURITY DEFINER function $fname without SET search_path = pg_catalog, pg_temp")
			  if $secdef && !$pinned;
			$add->($line, 'PS004', "function $fname sets an unsafe search_path") if $bad_path && !$secdef;
			$add->($line, 'PS005', "function $fname does not pin search_path")
			  unless $pinned || $bad_path || $w =~ /\bimmutable\b/ || $support{$fname}
			  || $NO_SQL{$fname};
			my ($lang) = $w =~ /\blanguage '?(\w+)/;
			for my $body (grep { $_->{t} eq 'dollar' } @$s)
			{
				push @findings, lint_body("$name:$line:$fname", $body->{v}, $pinned, $lang // '');
			}
			next;
		}
		if ($w =~ /^do\b/)
		{
			for my $body (grep { $_->{t} eq 'dollar' } @$s)
			{
				push @findings, lint_body("$name:$line:DO", $body->{v}, $safe, 'plpgsql');
			}
			next;
		}
		push @findings, unsafe_references($name, $s) unless $safe;
	}
	return @findings;
}

# A function or DO body: SQL statements, checked with the body's state.
sub lint_body
{
	my ($where, $text, $safe, $lang) = @_;
	return () unless $lang =~ /^(?:sql|plpgsql)$/;
	my @f;
	for my $s (statements(tokenize($text)))
	{
		my $w = words(@$s);
		push @f, "$where: MA003 search_path changed inside a body"
		  if $w =~ /\bset (?:local )?search_path\b/ || $w =~ /set_config \( 'search_path'/;
		push @f, "$where: PS010 CREATE ... IF NOT EXISTS inside a body" if $w =~ /\bcreate\b.*?\bif not exists\b/;
		push @f, "$where: PS002 CREATE OR REPLACE inside a body" if $w =~ /\bcreate or replace\b/;
		push @f, map { s/^[^:]*:\d+:/$where:/r } unsafe_references('body', $s) unless $safe;
	}
	return @f;
}

# PS001, PS016, PS017 over one statement run with an unsafe search_path.
sub unsafe_references
{
	my ($name, $s) = @_;
	my @f;
	my $w = words(@$s);
	my $options = $w =~ /^create (?:or replace )?(?:aggregate|operator|type|collation|text search)\b/;
	for my $i (0 .. $#$s)
	{
		my $t = $s->[$i];
		my $prev = $i > 0 ? $s->[ $i - 1 ] : undef;
		my $next = $s->[ $i + 1 ];
		if ($t->{t} eq 'op')
		{
			next if $prev && $prev->{t} eq 'punct' && $prev->{v} eq '.'
			  && $i > 2 && $s->[ $i - 3 ]{v} eq 'operator';    # OPERATOR(schema.op)
			next if $t->{v} eq '=' && ($options || ($prev && $prev->{t} eq 'ident'
				&& $i > 1 && ($s->[ $i - 2 ]{v} eq 'set' || $s->[ $i - 2 ]{v} eq ',') && $w =~ /^update\b/));
			next if $t->{v} eq '*' && $prev && ($prev->{v} eq '(' || $prev->{v} eq 'select' || $prev->{v} eq '.' || $prev->{v} eq ',');
			push @f, "$name:$t->{line}: PS001 operator $t->{v} is not schema-qualified";
		}
		elsif ($t->{t} eq 'ident' && !$t->{quoted} && $next && $next->{t} eq 'punct' && $next->{v} eq '(')
		{
			next if $prev && $prev->{t} eq 'punct' && $prev->{v} eq '.';
			next if $NOT_FUNCTION{ $t->{v} };
			next if $prev && $prev->{t} eq 'ident' && $prev->{v} =~ /^(?:key|constraint|index|trigger|on|references|table|into|function|procedure|aggregate)$/;
			push @f, "$name:$t->{line}: PS016 function $t->{v}() is not schema-qualified";
		}
		elsif ($t->{t} eq 'ident' && $t->{v} =~ /^(?:from|join|into|update|table)$/ && $next && $next->{t} eq 'ident'
			&& !$NOT_FUNCTION{ $next->{v} } && $next->{v} ne 'only')
		{
			next if qualified_at($s, $i + 1) || ($s->[ $i + 2 ] && $s->[ $i + 2 ]{v} eq '(');
			next if $t->{v} eq 'from' && $next->{v} eq 'public' && $w =~ /^revoke\b/;
			next if $t->{v} eq 'update' && $prev && $prev->{v} eq 'on';    # ON UPDATE CASCADE
			push @f, "$name:$next->{line}: PS017 relation $next->{v} is not schema-qualified";
		}
	}
	return @f;
}

sub lint_script
{
	my ($path, %opt) = @_;
	open my $fh, '<', $path or die "$path: $!";
	local $/;
	my $text = <$fh>;
	close $fh;
	return lint_text($path, $text, script => 1, upgrade => ($path =~ /--.*--/ ? 1 : 0), %opt);
}

1;

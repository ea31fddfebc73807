# The install and upgrade scripts pass the checks pgspot makes (written in
# test/ScriptLint.pm, since pgspot cannot be installed here), and the checks
# find each problem in a script made of them (test/lint/bad.sql).
use strict;
use warnings;
use Test::More;
use File::Basename qw(basename);
use lib 'test';
use ScriptLint;

# Every script but the released 0.1.0 install script, which never changes.
my @scripts = grep { basename($_) ne 'metric_anomaly--0.1.0.sql' } glob('sql/metric_anomaly--*.sql');
is(join(' ', sort map { basename($_) } @scripts), 'metric_anomaly--0.1.0--0.2.0.sql metric_anomaly--0.2.0.sql',
	'the 0.2.0 install and the 0.1.0 to 0.2.0 upgrade scripts are checked');
for my $script (@scripts)
{
	my @f = lint_script($script);
	is(scalar @f, 0, "$script passes") or diag join "\n", @f;
}

my @f = map { s{^test/lint/}{}r } lint_script('test/lint/bad.sql');
open my $fh, '<', 'test/lint/bad.expected' or die $!;
my @expected = map { chomp; $_ } <$fh>;
close $fh;
is(join("\n", @f), join("\n", @expected), 'every problem in test/lint/bad.sql is found, and nothing else');

done_testing();

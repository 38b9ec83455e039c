# pg_dump keeps every job and its history, built-in jobs' changed
# schedules included, and a restore succeeds although the restored
# database gets a scheduler as soon as CREATE EXTENSION commits: jobs wait
# while the dump is being loaded (their rows would clash with the restored
# ones), then run.  Serial and parallel pg_restore, and a plain SQL dump
# through psql.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

my $node = opsdata_node('restore');
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql('src', q{
	CREATE EXTENSION pg_opsdata;
	CREATE TABLE ticks (at timestamptz DEFAULT clock_timestamp());
	SELECT opsdata.add_job('tick', 'INSERT INTO public.ticks DEFAULT VALUES', '1 second');
	SELECT opsdata.add_job('paused one', 'SELECT 1', '1 day', paused => true);
	SELECT opsdata.alter_job(job_id, schedule => '2 hours') FROM opsdata.jobs WHERE name = 'worker.prune_runs';
});
$node->poll_query_until('src', q{SELECT count(*) >= 3 FROM ticks}) or die 'no ticks';
# Every job held still, the built-in ones too, so that the history dumped
# is the one read here, and the restored copies (whose jobs are paused once
# their data is loaded) add nothing to it.  While a copy loads, the
# built-in jobs its CREATE EXTENSION made are due: they must wait.
$node->safe_psql('src', q{SELECT opsdata.pause_job(job_id) FROM opsdata.jobs WHERE name = 'tick' OR builtin});
$node->poll_query_until('src', q{SELECT count(*) = 0 FROM opsdata.job_runs WHERE status = 'running'})
  or die 'runs still in progress';

my $jobs_sql = q{
	SELECT string_agg(format('%s:%s:%s:%s', name, schedule, paused, builtin), ' ' ORDER BY name) FROM opsdata.jobs};
my $runs_sql = q{SELECT count(*) || ' runs, last ' || max(run_id) FROM opsdata.job_runs};
my $jobs = $node->safe_psql('src', $jobs_sql);
my $runs = $node->safe_psql('src', $runs_sql);

my $dump = $node->basedir . '/src.dump';
my $sql = $node->basedir . '/src.sql';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('src') ], 'pg_dump -Fc');
$node->command_ok([ 'pg_dump', '-Fp', '-f', $sql, '-d', $node->connstr('src') ], 'pg_dump -Fp');

for my $case ([ 'serial', [] ], [ 'parallel', [ '--jobs', '2' ] ], [ 'plain', undef ])
{
	my ($name, $options) = @$case;
	$node->safe_psql('postgres', "CREATE DATABASE $name");
	if (defined $options)
	{
		$node->command_ok([ 'pg_restore', '--exit-on-error', @$options, '-d', $node->connstr($name), $dump ],
			"$name pg_restore succeeds while the scheduler runs");
	}
	else
	{
		$node->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', $sql, '-d', $node->connstr($name) ],
			'a plain dump loads through psql while the scheduler runs');
	}
	is($node->safe_psql($name, $jobs_sql), $jobs,
		"$name: every job is back, with the changed schedule of the built-in job and the pause");
	is($node->safe_psql($name, $runs_sql), $runs, "$name: the history is back");
}

# Once loaded, a restored database runs its jobs.
my $ticks = $node->safe_psql('parallel', 'SELECT count(*) FROM ticks');
$node->safe_psql('parallel', q{SELECT opsdata.resume_job(job_id) FROM opsdata.jobs WHERE name = 'tick'});
ok($node->poll_query_until('parallel', "SELECT count(*) >= $ticks + 2 FROM ticks"),
	'the restored database runs its jobs');

$node->stop;
done_testing();

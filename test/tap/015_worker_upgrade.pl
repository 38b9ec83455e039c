# ALTER EXTENSION pg_opsdata UPDATE while the scheduler and a long job run:
# the update changes the job catalog and adds a built-in job, completes
# without waiting for the running job, and the scheduler goes on without a
# restart, running the new job.
# Then binary upgrade mode (what pg_upgrade uses): nothing is started.
#
# The next release has no update script yet, so this test makes one (as the next
# release could) and a private overlay of the installation whose extension
# directory holds it: the installation the tests use is read-only.
use strict;
use warnings;

use File::Basename qw(dirname);
use File::Copy qw(copy);
use File::Path qw(make_path);
use File::Spec;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# The overlay: postgres and pg_ctl copied (PostgreSQL finds its share
# directory relative to the program's real path), everything else linked.
my $bindir = `pg_config --bindir`;
my $sharedir = `pg_config --sharedir`;
chomp($bindir, $sharedir);
my @bin = File::Spec->splitdir($bindir);
my @share = File::Spec->splitdir($sharedir);
my $common = 0;
$common++ while $common < @bin && $common < @share && $bin[$common] eq $share[$common];
my $prefix = File::Spec->catdir(@bin[ 0 .. $common - 1 ]);
my $overlay = PostgreSQL::Test::Utils::tempdir('overlay');
my $obindir = $overlay . substr($bindir, length($prefix));
my $osharedir = $overlay . substr($sharedir, length($prefix));
make_path($obindir, "$osharedir/extension");
for my $program (glob "$bindir/*")
{
	my $target = "$obindir/" . (File::Spec->splitpath($program))[2];
	if ($program =~ m{/(postgres|pg_ctl)$})
	{
		copy($program, $target) or die "copy $program: $!";
		chmod 0755, $target;
	}
	else
	{
		symlink($program, $target) or die "symlink $program: $!";
	}
}
symlink(dirname($bindir) . '/lib', dirname($obindir) . '/lib') or die "symlink lib: $!";
for my $entry (glob "$sharedir/*")
{
	my $name = (File::Spec->splitpath($entry))[2];
	next if $name eq 'extension';
	symlink($entry, "$osharedir/$name") or die "symlink $entry: $!";
}
for my $file (glob "$sharedir/extension/*")
{
	symlink($file, "$osharedir/extension/" . (File::Spec->splitpath($file))[2]) or die "symlink $file: $!";
}

# The update a next release could make: a column, a function replaced while
# a job uses it, a new built-in job.
open my $script, '>', "$osharedir/extension/pg_opsdata--0.2--0.3.sql" or die $!;
print $script q{
ALTER TABLE opsdata.jobs ADD COLUMN owner_team text;
COMMENT ON COLUMN opsdata.jobs.owner_team IS 'Team to ask about the job';
CREATE TABLE opsdata.pruned (at timestamptz NOT NULL DEFAULT now());
CREATE OR REPLACE FUNCTION opsdata._prune_job_runs()
RETURNS bigint LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ INSERT INTO opsdata.pruned DEFAULT VALUES; SELECT 0::bigint $$;
INSERT INTO opsdata.jobs (name, command, schedule, builtin, comment)
	 VALUES ('added in 0.3', 'SELECT 1', '1 second', true, 'A built-in job of the next release');
};
close $script;

my $node = PostgreSQL::Test::Cluster->new('upgrade', install_path => dirname($obindir));
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'pg_opsdata'\nmax_worker_processes = 16\n");
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE app');
# The job "long" runs until the test releases advisory lock 4242.
my $lock = $node->background_psql('app');
$lock->query_safe('SELECT pg_advisory_lock(4242)');
$node->safe_psql('app', q{
	CREATE EXTENSION pg_opsdata;
	SELECT opsdata.add_job('tick', 'SELECT 1', '1 second');
	SELECT opsdata.add_job('long', 'SELECT pg_catalog.pg_advisory_xact_lock_shared(4242)', '1 hour');
});
$node->poll_query_until('app', q{
	SELECT count(*) = 1 FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
	 WHERE j.name = 'long' AND status = 'running'}) or die 'long job not running';
my $scheduler = $node->safe_psql('postgres', q{
	SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_opsdata scheduler'});

# Were the update to wait for the running job, it would wait for the test.
$node->safe_psql('app', q{ALTER EXTENSION pg_opsdata UPDATE TO '0.3'});
is($node->safe_psql('app', q{
	SELECT status FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id) WHERE j.name = 'long'}),
	'running', 'ALTER EXTENSION UPDATE completes while a job runs, without waiting for it');
is($node->safe_psql('app', q{SELECT extversion FROM pg_extension WHERE extname = 'pg_opsdata'}), '0.3',
	'the extension is updated');
ok($node->poll_query_until('app', q{
	SELECT count(*) >= 2 FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
	 WHERE j.name = 'added in 0.3' AND status = 'succeeded'}),
	'the built-in job the update adds runs');
$lock->quit;
ok($node->poll_query_until('app', q{
	SELECT status = 'succeeded' FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id) WHERE j.name = 'long'}),
	'the job that ran during the update finishes and is recorded');
is($node->safe_psql('app', q{
	SELECT count(*) FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
	 WHERE j.name = 'tick' AND status <> 'succeeded' AND status <> 'running'}),
	'0', 'the other job ran through the update without a failure');
is($node->safe_psql('postgres', q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_opsdata scheduler'}),
	$scheduler, 'the scheduler did not need a restart');
$node->safe_psql('app', q{SELECT opsdata.alter_job(job_id, paused => true) FROM opsdata.jobs WHERE name = 'added in 0.3'});
is($node->safe_psql('app', q{CALL opsdata.run_job('worker.prune_runs'); SELECT count(*) FROM opsdata.pruned}),
	'1', 'the built-in job whose function the update replaced runs the new code');

# Binary upgrade mode: the launcher is not even registered.
$node->stop;
my $log_offset = -s $node->logfile;
PostgreSQL::Test::Utils::system_or_bail($node->installed_command('pg_ctl'), '-D', $node->data_dir,
	'-l', $node->logfile, '-o', '-b', '-w', 'start');
$node->_update_pid(1);
ok($node->log_contains(qr/pg_opsdata background workers are not started in binary upgrade mode/, $log_offset),
	'in binary upgrade mode the log says the workers are not started');
is($node->safe_psql('app', q{SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'pg_opsdata%'}),
	'0', 'and none runs');
my $runs = $node->safe_psql('app', 'SELECT count(*) FROM opsdata.job_runs');
$node->stop;
$node->start;
ok($node->poll_query_until('app', "SELECT count(*) > $runs FROM opsdata.job_runs"),
	'started normally again, the jobs run');

$node->stop;
done_testing();

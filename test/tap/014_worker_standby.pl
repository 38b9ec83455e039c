# On a hot standby no pg_opsdata worker runs and nothing is written; after
# promotion the jobs take over where the old primary stopped: due jobs run,
# jobs not yet due keep their next run, and the run the old primary was in
# the middle of is recorded as crashed and retried.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

my $primary = opsdata_node('primary', init => { allows_streaming => 1 });
$primary->start;
$primary->safe_psql('postgres', 'CREATE DATABASE app');
$primary->safe_psql('app', q{
	CREATE EXTENSION pg_opsdata;
	CREATE TABLE ticks (at timestamptz DEFAULT clock_timestamp());
	SELECT opsdata.add_job('tick', 'INSERT INTO public.ticks DEFAULT VALUES', '1 second');
	SELECT opsdata.add_job('hourly', 'SELECT 1', '1 hour', start_at => now() + interval '30 minutes');
	SELECT opsdata.add_job('long', 'SELECT pg_sleep(600)', '1 hour', retry_delay => '1 second');
});
$primary->poll_query_until('app', q{
	SELECT count(*) >= 2 FROM ticks}) or die 'no ticks on the primary';
$primary->poll_query_until('app', q{
	SELECT count(*) = 1 FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
	 WHERE j.name = 'long' AND status = 'running'}) or die 'long job not running';

$primary->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'backup', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby);

# The standby replays the primary's runs, and runs nothing itself.
is($standby->safe_psql('postgres', q{
	SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'pg_opsdata%'}),
	'0', 'no pg_opsdata worker runs on the hot standby');
is($standby->safe_psql('app', q{SELECT status || ': ' || detail FROM opsdata.health() WHERE component = 'launcher'}),
	'off: This server is a hot standby: no job runs and nothing is written until it is promoted.',
	'health says the workers wait for promotion');
$primary->poll_query_until('app', q{SELECT count(*) >= 4 FROM ticks}) or die 'primary stopped ticking';
# Hold the ticks still to compare both servers.
$primary->safe_psql('app', q{SELECT opsdata.pause_job(job_id) FROM opsdata.jobs WHERE name = 'tick'});
$primary->poll_query_until('app', q{
	SELECT count(*) = 0 FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
	 WHERE j.name = 'tick' AND status = 'running'}) or die 'tick still running';
$primary->wait_for_catchup($standby);
# The test's jobs only: a built-in job may start a run on the primary
# between the two queries.
my $runs_sql = q{SELECT count(*), max(run_id) FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
				  WHERE NOT j.builtin};
is($standby->safe_psql('app', $runs_sql), $primary->safe_psql('app', $runs_sql),
	'the standby has exactly the runs of the primary');
$primary->safe_psql('app', q{SELECT opsdata.resume_job(job_id) FROM opsdata.jobs WHERE name = 'tick'});
$primary->poll_query_until('app', q{SELECT count(*) >= 6 FROM ticks}) or die 'primary stopped ticking';
my ($rc, $out, $err) = $standby->psql('app', q{CALL opsdata.run_job('tick')});
like($err, qr/cannot run job \d+ during recovery/, 'run_job refuses to run a job on the standby');

# The primary stops in the middle of the long run; the standby is promoted.
my $hourly_next = $primary->safe_psql('app', q{SELECT next_run FROM opsdata.jobs WHERE name = 'hourly'});
$primary->stop('immediate');
my $ticks_before = $standby->safe_psql('app', 'SELECT count(*) FROM ticks');
$standby->promote;

ok($standby->poll_query_until('postgres', q{
	SELECT count(*) = 2 FROM pg_stat_activity
	 WHERE backend_type IN ('pg_opsdata launcher', 'pg_opsdata scheduler')}),
	'after promotion the launcher and the scheduler start');
ok($standby->poll_query_until('app', "SELECT count(*) > $ticks_before FROM ticks"),
	'the jobs run again');
ok($standby->poll_query_until('app', q{
	SELECT string_agg(kind || '/' || status, ' ' ORDER BY started_at) = 'scheduled/crashed retry/running'
	  FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id) WHERE j.name = 'long'}),
	'the run the old primary was in the middle of is recorded as crashed and retried');
is($standby->safe_psql('app', q{SELECT next_run FROM opsdata.jobs WHERE name = 'hourly'}), $hourly_next,
	'a job not yet due keeps the next run the old primary planned');
is($standby->safe_psql('app', q{
	SELECT count(*) FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id) WHERE j.name = 'hourly'}),
	'0', 'and does not run early');
is($standby->safe_psql('app', q{
	SELECT count(*) FROM opsdata.health() WHERE status NOT IN ('ok', 'off') AND component <> 'job "long"'}),
	'0', 'health is clean on the new primary');

$standby->stop;
done_testing();

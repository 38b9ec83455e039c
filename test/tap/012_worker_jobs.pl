# The scheduler runs the jobs of opsdata.jobs: procedures that commit step
# by step, each run recorded in opsdata.job_runs; a failure retried with
# growing delays and never stopping other jobs or other databases; a run
# cancelled past max_runtime; a killed run recorded as crashed and retried,
# also after a server crash; the job named in application_name while it
# runs; failing and late jobs in opsdata.health(); reloadable timing
# settings; history pruned by a built-in job.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

# wal_level = replica: with minimal, a sequence created and used in one
# transaction can go back after a crash, which is not what is tested here.
my $node = opsdata_node('jobs', init => { allows_streaming => 1 },
	conf => "pg_opsdata.restart_delay = '100ms'\nrestart_after_crash = on\n");
$node->start;

for my $db ('app', 'other')
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, q{
		CREATE EXTENSION pg_opsdata;
		CREATE TABLE ticks (job text, step integer, at timestamptz DEFAULT clock_timestamp());
		CREATE PROCEDURE tick_steps() LANGUAGE plpgsql AS $$
		BEGIN
			INSERT INTO public.ticks (job, step) VALUES ('steps', 1);
			COMMIT;
			INSERT INTO public.ticks (job, step) VALUES ('steps', 2);
			COMMIT;
		END
		$$;
	});
}

# Runs of a job: "kind/status/attempt" in order.
sub runs
{
	my ($db, $job) = @_;
	return $node->safe_psql($db, qq{
		SELECT coalesce(string_agg(kind || '/' || status || '/' || attempt, ' ' ORDER BY started_at), '')
		  FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id) WHERE j.name = '$job'});
}

# Procedures run non-atomically by the scheduler and commit step by step;
# a failing job in the same database and one in another database do not
# stop them.
$node->safe_psql('app', q{
	SELECT opsdata.add_job('steps', 'CALL public.tick_steps()', '1 second');
	SELECT opsdata.add_job('fails', 'SELECT 1/0', '1 hour', retry_delay => '1 second', max_retries => 2);
});
$node->safe_psql('other', q{SELECT opsdata.add_job('fails', 'SELECT 1/0', '1 second', max_retries => 0)});
ok($node->poll_query_until('app', q{
	SELECT count(*) >= 3 FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
	 WHERE j.name = 'steps' AND r.status = 'succeeded'}),
	'the scheduler runs a job every second, beside failing jobs here and in another database');
# Held still (a run may be between its two commits), every run has both.
$node->safe_psql('app', q{SELECT opsdata.pause_job(job_id) FROM opsdata.jobs WHERE name = 'steps'});
$node->poll_query_until('app', q{
	SELECT count(*) = 0 FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
	 WHERE j.name = 'steps' AND r.status = 'running'})
  or die 'steps still running';
is($node->safe_psql('app', q{SELECT count(*) FILTER (WHERE step = 1) = count(*) FILTER (WHERE step = 2) FROM ticks}),
	't', 'each run of the procedure committed both of its steps');
is($node->safe_psql('app', q{
	SELECT bool_and(kind = 'scheduled' AND attempt = 1 AND finished_at >= started_at AND sqlstate IS NULL
					AND pid IS NOT NULL AND due_at IS NOT NULL)
	  FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id) WHERE j.name = 'steps' AND status = 'succeeded'}),
	't', 'every run is recorded: kind, attempt, due time, start and end, process');
my $late = $node->safe_psql('app', q{
	SELECT max(started_at - due_at) < interval '1 second' FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
	 WHERE j.name = 'steps'});
is($late, 't', 'runs start within a second of their due time');
ok($node->poll_query_until('other', q{
	SELECT count(*) >= 3 FROM opsdata.job_runs WHERE status = 'failed'}),
	'a job failing every second in another database keeps being run');

# Retries: attempts 2 and 3 after 1 s and 2 s (each +-25%), then none.
ok($node->poll_query_until('app', q{
	SELECT count(*) = 3 FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id) WHERE j.name = 'fails'}),
	'a failing job is retried');
is(runs('app', 'fails'), 'scheduled/failed/1 retry/failed/2 retry/failed/3',
	'max_retries retries, each recorded with its attempt number and error');
is($node->safe_psql('app', q{
	SELECT bool_and(sqlstate = '22012' AND message = 'division by zero')
	  FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id) WHERE j.name = 'fails'}),
	't', 'with the SQLSTATE and message of the error');
my ($gap1, $gap2) = split /\|/, $node->safe_psql('app', q{
	SELECT string_agg(extract(epoch FROM gap)::text, '|' ORDER BY started_at) FROM (
		SELECT started_at, started_at - lag(finished_at) OVER (ORDER BY started_at) AS gap
		  FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id) WHERE j.name = 'fails') g
	 WHERE gap IS NOT NULL});
# Lower bounds only: the delays are at least 1 s and 2 s less 25%; a busy
# machine may start the retry later.
ok($gap1 >= 0.7, "the first retry waits retry_delay with jitter ($gap1 s)");
ok($gap2 >= 1.45, "the second waits twice as long ($gap2 s)");
is($node->safe_psql('app', q{SELECT failures = 3 AND retry_at IS NULL FROM opsdata.jobs WHERE name = 'fails'}),
	't', 'after the last retry the job waits for its next scheduled run');
is($node->safe_psql('app', q{SELECT status FROM opsdata.health() WHERE component = 'job "fails"'}),
	'error', 'health reports the failing job');

# max_runtime: the run is cancelled and recorded as timed out.
$node->safe_psql('app', q{
	SELECT opsdata.add_job('too long', 'SELECT pg_sleep(60)', '1 hour', max_runtime => '500 ms', max_retries => 0)});
ok($node->poll_query_until('app', q{
	SELECT status = 'timed out' AND finished_at - started_at < interval '30 seconds'
	  FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id) WHERE j.name = 'too long'}),
	'a run past max_runtime is cancelled and recorded as timed out');

# While a job runs, its worker shows the job's name.
$node->safe_psql('app', q{SELECT opsdata.add_job('sleeper', 'SELECT pg_sleep(60)', '1 hour', retry_delay => '1 second')});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity
	 WHERE backend_type = 'pg_opsdata job' AND application_name = 'pg_opsdata job sleeper'
	   AND datname = 'app' AND query = 'SELECT pg_sleep(60)'}),
	'a running job shows in pg_stat_activity with its name in application_name and its command');

# A job worker terminated mid-run: the run is recorded as crashed and retried.
$node->safe_psql('postgres', q{
	SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pg_opsdata job sleeper'});
ok($node->poll_query_until('app', q{
	SELECT string_agg(kind || '/' || status, ' ' ORDER BY started_at) = 'scheduled/crashed retry/running'
	  FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id) WHERE j.name = 'sleeper'}),
	'a terminated run is recorded as crashed and retried');

# kill -9 of the job worker: the server restarts every process; afterwards
# the interrupted run is recorded as crashed and the job runs again.
my $pid = $node->safe_psql('postgres', q{
	SELECT pid FROM pg_stat_activity WHERE application_name = 'pg_opsdata job sleeper'});
kill 'KILL', $pid;
ok($node->poll_query_until('app', q{
	SELECT string_agg(kind || '/' || status, ' ' ORDER BY started_at)
		   = 'scheduled/crashed retry/crashed retry/running'
	  FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id) WHERE j.name = 'sleeper'}),
	'after a crash of the server the killed run is recorded as crashed and the job retried');
is($node->safe_psql('app', q{
	SELECT message FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
	 WHERE j.name = 'sleeper' AND r.attempt = 2}),
	'The run was interrupted: the process running it ended before the run finished.',
	'the record says what happened');
$node->safe_psql('app', q{SELECT opsdata.pause_job(job_id) FROM opsdata.jobs WHERE name = 'sleeper'});
$node->safe_psql('postgres', q{
	SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pg_opsdata job sleeper'});

# pg_opsdata.max_workers = 0 (a reload) starts no job: a job due two
# minutes ago is late, and health says so; back to 4, it runs.
$node->safe_psql('app', q{ALTER SYSTEM SET pg_opsdata.max_workers = 0; SELECT pg_reload_conf();});
$node->poll_query_until('app', q{SELECT current_setting('pg_opsdata.max_workers') = '0'})
  or die 'reload not seen';
$node->safe_psql('app', q{
	SELECT opsdata.pause_job(job_id) FROM opsdata.jobs WHERE name IN ('steps', 'fails');
	SELECT opsdata.add_job('overdue', 'SELECT 1', '1 hour', start_at => now() - interval '2 minutes');
});
ok($node->poll_query_until('app', q{
	SELECT status = 'warning' AND detail LIKE 'Late: due at %' FROM opsdata.health() WHERE component = 'job "overdue"'}),
	'with max_workers = 0 no job starts, and a job overdue by more than a minute is reported late');
$node->safe_psql('app', q{ALTER SYSTEM RESET pg_opsdata.max_workers; SELECT pg_reload_conf();});
ok($node->poll_query_until('app', q{
	SELECT count(*) = 1 FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
	 WHERE j.name = 'overdue' AND status = 'succeeded'}),
	'after a reload with max_workers back, the late job runs once');
is($node->safe_psql('app', q{SELECT count(*) FROM opsdata.health() WHERE component = 'job "overdue"'}), '0',
	'and is no longer reported');

# pg_opsdata.check_interval bounds how late the scheduler notices a job
# added behind its back (here with triggers off); it is reloadable.  From
# the default of a minute, a reload brings it to 1 s.
$node->safe_psql('app', q{ALTER SYSTEM SET pg_opsdata.check_interval = '1s'; SELECT pg_reload_conf();});
ok($node->poll_query_until('app', q{
	SELECT detail ~ 'at least every 1000 ms' FROM opsdata.health() WHERE component = 'scheduler "app"'}),
	'the scheduler applies a reloaded check_interval');
$node->safe_psql('app', q{
	SET session_replication_role = replica;
	INSERT INTO opsdata.jobs (name, command, schedule) VALUES ('silent', 'SELECT 1', '1 hour');
});
ok($node->poll_query_until('app', q{
	SELECT count(*) = 1 FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
	 WHERE j.name = 'silent' AND status = 'succeeded'}),
	'a job added without waking the scheduler runs');
is($node->safe_psql('app', q{
	SELECT r.started_at - j.created_at < interval '30 seconds'
	  FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id) WHERE j.name = 'silent'}),
	't', 'well before the default check_interval of a minute would have run it');

# The built-in job keeps the history within the worker.job_history_* settings.
$node->safe_psql('app', q{
	INSERT INTO opsdata.job_runs (job_id, kind, started_at, finished_at, status)
	SELECT job_id, 'manual', now() - interval '10 days', now() - interval '10 days', s
	  FROM opsdata.jobs, unnest(ARRAY['succeeded', 'failed']) s WHERE name = 'silent';
	CALL opsdata.run_job('worker.prune_runs');
});
is($node->safe_psql('app', q{
	SELECT string_agg(status, ',') FROM opsdata.job_runs WHERE started_at < now() - interval '9 days'}),
	'failed', 'pruning drops successes older than 7 days and keeps failures for 30');

$node->stop;
done_testing();

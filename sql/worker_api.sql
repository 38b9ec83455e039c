-- The job API: add_job, alter_job, remove_job, pause_job, resume_job and
-- run_job, what each changes, and the clear error each gives for bad input
-- (which then changes nothing).  Jobs are added paused or far in the
-- future so that the scheduler running in this database leaves them alone;
-- the runs below are made by run_job in this session.  A job's command
-- runs with search_path = pg_catalog, pg_temp: it names its tables with
-- their schema.  The built-in jobs are paused before the scheduler sees
-- them, so that their runs change nothing shown here.
BEGIN;
CREATE EXTENSION pg_opsdata;
DO $$BEGIN PERFORM opsdata.pause_job(job_id) FROM opsdata.jobs WHERE builtin; END$$;
COMMIT;
\set SHOW_CONTEXT never

CREATE TABLE worker_log (job text, n integer, at timestamptz DEFAULT clock_timestamp());
CREATE PROCEDURE worker_steps() LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.worker_log (job, n) VALUES ('steps', 1);
	COMMIT;
	INSERT INTO public.worker_log (job, n) VALUES ('steps', 2);
	COMMIT;
END
$$;
CREATE PROCEDURE worker_fails_late() LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.worker_log (job, n) VALUES ('fails late', 1);
	COMMIT;
	INSERT INTO public.worker_log (job, n) VALUES ('fails late', 2);
	RAISE EXCEPTION 'step two failed' USING ERRCODE = 'data_exception';
END
$$;

-- What a test shows of a job and of its runs (no ids, times or pids).
CREATE VIEW worker_jobs AS
	SELECT name, command, schedule, paused, max_runtime, max_retries, retry_delay, run_as, builtin,
		   failures, retry_at IS NOT NULL AS retry_pending, comment
	  FROM opsdata.jobs;
CREATE VIEW worker_runs AS
	SELECT j.name, r.kind, r.status, r.attempt, r.sqlstate, r.message, r.due_at IS NULL AS manual,
		   r.finished_at >= r.started_at AS finished, r.pid = pg_backend_pid() AS here
	  FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id);

--
-- add_job
--
SELECT opsdata.add_job('steps', 'CALL public.worker_steps()', '1 hour', paused => true) AS steps_id \gset
SELECT opsdata.add_job('nightly', 'SELECT 1', '1 day', start_at => now() + interval '1 day',
	max_runtime => '10 minutes', max_retries => 5, retry_delay => '1 minute', comment => 'a comment') AS nightly_id \gset
SELECT * FROM worker_jobs WHERE NOT builtin ORDER BY name;
SELECT next_run > now() + interval '23 hours' AS starts_tomorrow FROM opsdata.jobs WHERE job_id = :nightly_id;
-- The built-in job that keeps the history bounded.
SELECT name, command, schedule, builtin, run_as = current_user AS runs_as_owner
  FROM opsdata.jobs WHERE name = 'worker.prune_runs';
-- A dump of 0.1 restores it under its name of then: the row folds into it.
INSERT INTO opsdata.jobs (job_id, name, command, schedule, paused, max_runtime, max_retries, retry_delay,
		next_run, retry_at, failures, builtin, comment, created_at)
	SELECT job_id, 'prune job runs', command, '2 hours', paused, max_runtime, max_retries, retry_delay,
		   next_run, retry_at, failures, builtin, comment, created_at
	  FROM opsdata.jobs WHERE name = 'worker.prune_runs';
SELECT name, schedule FROM opsdata.jobs WHERE name IN ('prune job runs', 'worker.prune_runs');

-- Bad input: every error names what is wrong, and nothing is added.
SELECT opsdata.add_job(NULL, 'SELECT 1', '1 hour');
SELECT opsdata.add_job('x', NULL, '1 hour');
SELECT opsdata.add_job('x', 'SELECT 1', NULL);
SELECT opsdata.add_job('x', 'SELECT 1', '1 hour', paused => NULL);
SELECT opsdata.add_job('', 'SELECT 1', '1 hour');
SELECT opsdata.add_job('x', '  ', '1 hour');
SELECT opsdata.add_job('x', 'SELEC 1', '1 hour');
SELECT opsdata.add_job('x', '-- only a comment', '1 hour');
SELECT opsdata.add_job('x', 'SELECT 1', '0');
SELECT opsdata.add_job('x', 'SELECT 1', '-1 hour');
SELECT opsdata.add_job('x', 'SELECT 1', '500 milliseconds');
SELECT opsdata.add_job('x', 'SELECT 1', 'every hour');
SELECT opsdata.add_job('x', 'SELECT 1', '1 hour', max_runtime => '-5 minutes');
SELECT opsdata.add_job('x', 'SELECT 1', '1 hour', max_retries => -1);
SELECT opsdata.add_job('x', 'SELECT 1', '1 hour', retry_delay => '0');
SELECT opsdata.add_job('x', 'SELECT 1', '1 hour', run_as => 'no_such_role');
SELECT opsdata.add_job('steps', 'SELECT 1', '1 hour');
SELECT count(*) AS user_jobs FROM opsdata.jobs WHERE NOT builtin;

--
-- alter_job: arguments left out keep their value
--
SELECT name, schedule, paused, max_runtime, max_retries, comment
  FROM opsdata.alter_job(:nightly_id, schedule => '12 hours', max_retries => 0, comment => 'twice a day');
SELECT name, max_runtime FROM opsdata.alter_job(:nightly_id, max_runtime => '0');
SELECT name FROM opsdata.alter_job(:nightly_id, name => 'twice daily');
SELECT next_run = '2030-01-01 00:00:00+00' AS moved
  FROM opsdata.alter_job(:nightly_id, next_run => '2030-01-01 00:00:00+00');
SELECT opsdata.alter_job(NULL);
SELECT opsdata.alter_job(-1, paused => true);
SELECT opsdata.alter_job(:nightly_id, name => 'steps');
SELECT opsdata.alter_job(:nightly_id, schedule => '0');
SELECT opsdata.alter_job(:nightly_id, command => 'SELEC');
SELECT opsdata.alter_job(job_id, command => 'SELECT 2') FROM opsdata.jobs WHERE name = 'worker.prune_runs';
SELECT schedule FROM opsdata.alter_job((SELECT job_id FROM opsdata.jobs WHERE name = 'worker.prune_runs'),
	schedule => '30 minutes');
SELECT * FROM worker_jobs WHERE name IN ('twice daily', 'worker.prune_runs') ORDER BY name;

--
-- pause_job, resume_job, remove_job
--
SELECT opsdata.pause_job(:nightly_id);
SELECT opsdata.pause_job(:nightly_id);
SELECT paused FROM opsdata.jobs WHERE job_id = :nightly_id;
SELECT opsdata.resume_job(:nightly_id);
SELECT paused FROM opsdata.jobs WHERE job_id = :nightly_id;
SELECT opsdata.pause_job(-1);
SELECT opsdata.resume_job(NULL);
SELECT opsdata.remove_job(job_id) FROM opsdata.jobs WHERE name = 'worker.prune_runs';
SELECT opsdata.remove_job(-1);
SELECT opsdata.remove_job(:nightly_id);
SELECT count(*) AS left_behind FROM opsdata.jobs WHERE job_id = :nightly_id;

--
-- run_job: runs in this session, records the run, raises the job's error
--
-- A procedure that commits between its steps.
CALL opsdata.run_job(:steps_id);
SELECT job, n FROM worker_log ORDER BY at;
SELECT * FROM worker_runs WHERE name = 'steps';

-- By name.
SELECT opsdata.add_job('fails', 'SELECT 1/0', '1 hour', paused => true) AS fails_id \gset
CALL opsdata.run_job('fails');
SELECT * FROM worker_runs WHERE name = 'fails';
SELECT failures, retry_at IS NULL AS no_retry_for_manual_runs FROM opsdata.jobs WHERE job_id = :fails_id;

-- A procedure that fails after committing: the committed step stays and
-- the failure is recorded.
SELECT opsdata.add_job('fails late', 'CALL public.worker_fails_late()', '1 hour', paused => true) AS late_id \gset
CALL opsdata.run_job(:late_id);
SELECT job, n FROM worker_log WHERE job = 'fails late' ORDER BY at;
SELECT * FROM worker_runs WHERE name = 'fails late';

-- Called from another procedure, non-atomically: the same.
CREATE PROCEDURE worker_outer() LANGUAGE plpgsql AS $$
BEGIN
	CALL opsdata.run_job('fails late');
END
$$;
CALL worker_outer();
SELECT status, count(*) FROM worker_runs WHERE name = 'fails late' GROUP BY status;

-- Inside a transaction block the run is part of the transaction: a
-- procedure cannot commit there, and a rollback takes the run with it.
BEGIN;
CALL opsdata.run_job(:steps_id);
ROLLBACK;
BEGIN;
SELECT opsdata.add_job('one step', 'INSERT INTO public.worker_log (job, n) VALUES (''one step'', 1)', '1 hour',
	paused => true) AS step_id \gset
CALL opsdata.run_job(:step_id);
COMMIT;
SELECT * FROM worker_runs WHERE name = 'one step';

-- max_runtime cancels the command.
SELECT opsdata.add_job('too slow', 'SELECT pg_sleep(30)', '1 hour', paused => true,
	max_runtime => '100 milliseconds') AS slow_id \gset
CALL opsdata.run_job(:slow_id);
SELECT * FROM worker_runs WHERE name = 'too slow';

-- Transaction control belongs in a procedure.
SELECT opsdata.add_job('commits', 'COMMIT', '1 hour', paused => true) AS commits_id \gset
CALL opsdata.run_job(:commits_id);
SELECT status, sqlstate FROM worker_runs WHERE name = 'commits';

-- A job runs as its role; a role that is gone makes the run fail.
CREATE ROLE worker_gone;
GRANT INSERT ON worker_log TO worker_gone;
SELECT opsdata.add_job('as gone', 'INSERT INTO public.worker_log (job, n) SELECT current_user, 1', '1 hour',
	paused => true, run_as => 'worker_gone') AS gone_id \gset
CALL opsdata.run_job(:gone_id);
SELECT job FROM worker_log WHERE job = 'worker_gone';
REVOKE ALL ON worker_log FROM worker_gone;
DROP ROLE worker_gone;
CALL opsdata.run_job(:gone_id);
-- A failed run leaves the session as it was: same role, free to SET ROLE.
SELECT current_user = session_user AS same_role;
SET ROLE opsdata_reader;
RESET ROLE;
SELECT status, sqlstate, message FROM worker_runs WHERE name = 'as gone' ORDER BY status;

-- The command sees search_path = pg_catalog, pg_temp and an
-- application_name naming the job; the session gets its own back.
SET search_path = public;
SELECT opsdata.add_job('environment',
	'INSERT INTO public.worker_log (job, n) SELECT current_setting(''search_path'') || '' / '' || current_setting(''application_name''), 1',
	'1 hour', paused => true) AS environment_id \gset
CALL opsdata.run_job(:environment_id);
BEGIN;
CALL opsdata.run_job(:environment_id);
COMMIT;
SELECT job, count(*) FROM worker_log WHERE job LIKE 'pg_catalog%' GROUP BY job;
SELECT current_setting('search_path') AS search_path, current_setting('application_name') AS application_name;
RESET search_path;

CALL opsdata.run_job(-1);
CALL opsdata.run_job('no such job');
CALL opsdata.run_job(NULL::bigint);
CALL opsdata._run_scheduled_job(:steps_id);

--
-- Who may do what: administrators manage jobs, and only as roles they can
-- become; readers only read.
--
SELECT current_user AS superuser \gset
CREATE ROLE worker_admin LOGIN IN ROLE opsdata_admin;
CREATE ROLE worker_reader LOGIN IN ROLE opsdata_reader;
GRANT INSERT ON worker_log TO worker_admin;
SET ROLE worker_reader;
SELECT count(*) > 0 AS reads_jobs FROM opsdata.jobs;
SELECT opsdata.add_job('by reader', 'SELECT 1', '1 hour');
CALL opsdata.run_job(:steps_id);
RESET ROLE;
SET ROLE worker_admin;
SELECT opsdata.add_job('by admin', 'INSERT INTO public.worker_log (job, n) SELECT current_user, 1', '1 hour',
	paused => true) AS admin_id \gset
SELECT run_as FROM opsdata.jobs WHERE job_id = :admin_id;
SELECT opsdata.add_job('as superuser', 'SELECT 1', '1 hour', run_as => :'superuser');
SELECT (opsdata.alter_job(:steps_id, command => 'SELECT 2')).name;
SELECT (opsdata.alter_job(:admin_id, run_as => :'superuser')).name;
INSERT INTO opsdata.jobs (name, command, schedule) VALUES ('direct', 'SELECT 1', '1 hour');
UPDATE opsdata.jobs SET command = 'SELECT 3' WHERE job_id = :steps_id;
-- run_job runs the jobs of roles one is a member of, and built-in jobs;
-- the superuser's job is refused, and nothing is recorded.
CALL opsdata.run_job(:admin_id);
\set VERBOSITY terse
CALL opsdata.run_job(:steps_id);
\set VERBOSITY default
CALL opsdata.run_job('worker.prune_runs');
RESET ROLE;
SELECT job FROM worker_log WHERE job = 'worker_admin';
SELECT name, kind, status FROM worker_runs WHERE name = 'worker.prune_runs' AND kind = 'manual';
-- A job run by another role runs as its own role, as a security-restricted
-- operation: it cannot take the caller's role back, nor leave anything in
-- the caller's session.
SELECT (opsdata.alter_job(:admin_id, command => 'RESET ROLE', paused => true)).command;
CALL opsdata.run_job(:admin_id);
SELECT (opsdata.alter_job(:admin_id, command => 'CREATE TEMP TABLE worker_shadow (n int)')).command;
CALL opsdata.run_job(:admin_id);
SELECT (opsdata.alter_job(:admin_id, command => 'SET work_mem = ''77MB''')).command;
CALL opsdata.run_job(:admin_id);
SELECT current_user = session_user AS same_role, current_setting('work_mem') <> '77MB' AS settings_kept;
SELECT status, sqlstate, message FROM worker_runs WHERE name = 'by admin' ORDER BY status, message;

DROP VIEW worker_jobs, worker_runs;
DROP EXTENSION pg_opsdata;
DROP TABLE worker_log;
DROP ROLE worker_admin, worker_reader;
DROP PROCEDURE worker_steps(), worker_fails_late(), worker_outer();

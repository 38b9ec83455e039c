-- The runs of a job are evidence: opsdata.remove_job() keeps them, with
-- the job's name, until the worker.job_history_* retention removes them.
-- A max_runtime under a millisecond would mean no limit: it is refused.
BEGIN;
SELECT plan(13);

SELECT opsdata.add_job('history job', 'SELECT 1', '1 hour', paused => true) AS job \gset
CALL opsdata.run_job(:job);
CALL opsdata.run_job(:job);
SELECT is((SELECT count(*)::int FROM opsdata.job_runs WHERE job_id = :job AND job_name = 'history job'), 2,
	'each run records the job''s name');
SELECT lives_ok(format('SELECT opsdata.remove_job(%s)', :job), 'the job is removed');
SELECT is_empty(format('SELECT FROM opsdata.jobs WHERE job_id = %s', :job), 'the job is gone');
SELECT results_eq(format($$SELECT job_name, status FROM opsdata.job_runs WHERE job_id = %s ORDER BY run_id$$, :job),
	$$VALUES ('history job', 'succeeded'), ('history job', 'succeeded')$$,
	'its runs stay, with its name');

-- The history's retention removes them like any other run.
UPDATE opsdata.job_runs SET started_at = started_at - interval '8 days', finished_at = finished_at - interval '8 days'
 WHERE job_id = :job;
SELECT cmp_ok(opsdata._prune_job_runs(), '>=', 2::bigint, 'the retention prunes old runs of a removed job');
SELECT is_empty(format('SELECT FROM opsdata.job_runs WHERE job_id = %s', :job), 'and they are gone');

-- A built-in job cannot be removed, and its runs are kept as before.
SELECT throws_ok($$SELECT opsdata.remove_job(job_id) FROM opsdata.jobs WHERE name = 'worker.prune_runs'$$,
	'42501', NULL, 'a built-in job cannot be removed');

-- max_runtime: at least a millisecond; 0 or NULL for no limit.
SELECT throws_ok($$SELECT opsdata.add_job('short job', 'SELECT 1', '1 hour', max_runtime => '0.5 milliseconds')$$,
	'22023', 'invalid job max_runtime "00:00:00.0005"', 'a max_runtime under a millisecond is refused by add_job');
SELECT opsdata.add_job('short job', 'SELECT 1', '1 hour', max_runtime => '1 millisecond', paused => true) AS short \gset
SELECT is((SELECT max_runtime FROM opsdata.jobs WHERE job_id = :short), interval '1 millisecond',
	'a max_runtime of a millisecond is kept');
SELECT throws_ok(format($$SELECT opsdata.alter_job(%s, max_runtime => '1 microsecond')$$, :short),
	'22023', NULL, 'a max_runtime under a millisecond is refused by alter_job');
SELECT is((SELECT max_runtime FROM opsdata.alter_job(:short, max_runtime => '0')), NULL,
	'a max_runtime of 0 removes the limit');
SELECT throws_ok(format($$UPDATE opsdata.jobs SET max_runtime = '0.1 ms' WHERE job_id = %s$$, :short),
	'23514', NULL, 'the table refuses a max_runtime under a millisecond');
SELECT is((SELECT max_runtime FROM opsdata.jobs WHERE job_id = :short), NULL, 'and nothing changed');

SELECT * FROM finish();
ROLLBACK;

-- Background jobs: the scheduler of this database runs a job every two
-- seconds, each run recorded; a failing job is retried with growing
-- delays; run_job runs a job at once in this session.
\echo '-- the workers of this database, as pg_stat_activity shows them'
SELECT backend_type, application_name
  FROM pg_stat_activity
 WHERE backend_type LIKE 'pg_opsdata%' AND (datname = current_database() OR datname IS NULL)
 ORDER BY backend_type;

\echo '-- a procedure that commits step by step, and a job that calls it every 2 seconds'
CREATE TABLE demo_heartbeat (step integer, at timestamptz DEFAULT clock_timestamp());
CREATE PROCEDURE demo_beat() LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.demo_heartbeat (step) VALUES (1);
	COMMIT;
	INSERT INTO public.demo_heartbeat (step) VALUES (2);
END
$$;
SELECT opsdata.add_job('heartbeat', 'CALL public.demo_beat()', '2 seconds') AS heartbeat_id \gset

\echo '-- and a job that fails, retried after 1 s, then 2 s'
SELECT opsdata.add_job('broken', 'SELECT 1/0', '1 hour', retry_delay => '1 second', max_retries => 2) AS broken_id \gset

\echo '-- waiting for the scheduler to run them'
DO $$
BEGIN
	FOR i IN 1..200 LOOP
		EXIT WHEN (SELECT count(*) FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
					WHERE j.name = 'heartbeat' AND r.status = 'succeeded') >= 3
			  AND (SELECT count(*) FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
					WHERE j.name = 'broken') >= 3;
		PERFORM pg_sleep(0.1);
	END LOOP;
END
$$;

\echo '-- the runs: when each was due, how late it started, how it ended'
SELECT j.name, r.kind, r.attempt, r.status,
	   round(extract(epoch FROM r.started_at - r.due_at) * 1000) AS started_ms_late,
	   r.sqlstate, r.message
  FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
 WHERE j.name IN ('heartbeat', 'broken')
 ORDER BY r.started_at
 LIMIT 8;

\echo '-- run a job now, in this session'
CALL opsdata.run_job('heartbeat');
SELECT kind, status FROM opsdata.job_runs WHERE job_id = :heartbeat_id ORDER BY run_id DESC LIMIT 1;

\echo '-- health lists the failing job'
SELECT component, status, detail FROM opsdata.health()
 WHERE component IN ('launcher', 'job "broken"') OR component LIKE 'scheduler%'
 ORDER BY component;

SELECT opsdata.remove_job(:heartbeat_id), opsdata.remove_job(:broken_id);

-- Without shared_preload_libraries no job runs on schedule, but the job API
-- works: jobs can be added and run_job runs them in the session; health
-- says the workers are off.
CREATE EXTENSION pg_opsdata;
\set SHOW_CONTEXT never

CREATE TABLE worker_ran (at timestamptz DEFAULT clock_timestamp());
SELECT opsdata.add_job('record', 'INSERT INTO public.worker_ran DEFAULT VALUES', '1 minute') > 0 AS added;
CALL opsdata.run_job('record');
SELECT count(*) AS rows_written FROM worker_ran;
SELECT r.kind, r.status FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id) WHERE j.name = 'record';
SELECT component, status, detail FROM opsdata.health() WHERE component = 'launcher';

DROP EXTENSION pg_opsdata;
DROP TABLE worker_ran;

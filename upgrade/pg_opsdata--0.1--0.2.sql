-- pg_opsdata update from 0.1 to 0.2.
--
-- Every schema change of 0.2 has its step here, in the order it was made:
-- an installation updated with ALTER EXTENSION pg_opsdata UPDATE has the
-- same objects as a fresh CREATE EXTENSION of 0.2 (test/tap/003_core_upgrade.pl
-- compares them).
\echo Use "ALTER EXTENSION pg_opsdata UPDATE TO '0.2'" to load this file. \quit

-- Metrics: points whose timestamps the rollups cannot bucket are skipped,
-- counted and shown in health.
-- (The column is added without a default, then given one, so that it has
-- no "missing value" that a fresh install would not have.)
ALTER TABLE metrics.rollup_state ADD COLUMN bad_points bigint,
	ADD COLUMN last_bad_at timestamptz;
ALTER TABLE metrics.rollup_state ALTER COLUMN bad_points SET DEFAULT 0;
UPDATE metrics.rollup_state SET bad_points = 0;
ALTER TABLE metrics.rollup_state ALTER COLUMN bad_points SET NOT NULL;
COMMENT ON COLUMN metrics.rollup_state.bad_points IS 'Points skipped because their timestamp is outside the range rollups can bucket (0001-01-01 to 9999-12-31 UTC)';
COMMENT ON COLUMN metrics.rollup_state.last_bad_at IS 'When such points were last skipped';

CREATE OR REPLACE FUNCTION metrics._health_metrics(OUT component text, OUT status text, OUT detail text)
RETURNS SETOF record
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	oldest timestamptz;
	waiting bigint;
	job opsdata.jobs;
	state metrics.rollup_state;
	lag interval;
	series_limit integer := opsdata.setting('metrics.series_limit')::integer;
	busiest text;
	busiest_n bigint;
	total bigint;
BEGIN
	SELECT min(queued_at), coalesce(sum(metrics.sketch_count(sketch)), 0)
	  INTO oldest, waiting FROM metrics.rollup_queue;
	SELECT * INTO job FROM opsdata.jobs WHERE name = 'metrics.rollup';
	SELECT * INTO state FROM metrics.rollup_state;
	lag := now() - oldest;

	component := 'metrics rollups';
	IF job.job_id IS NULL OR job.paused THEN
		status := 'warning';
		detail := 'The job "metrics.rollup" is missing or paused: new points are not rolled up. Resume it in opsdata.jobs.';
	ELSIF lag > greatest(job.schedule * 10, interval '10 minutes') THEN
		status := 'warning';
		detail := format('%s points are waiting to be rolled up, the oldest recorded %s ago. Check that the scheduler runs and that the job "metrics.rollup" succeeds (opsdata.job_runs).',
						 waiting, date_trunc('second', lag));
	ELSE
		status := 'ok';
		detail := format('%s points waiting to be rolled up.', waiting);
	END IF;
	IF coalesce(state.late_points, 0) > 0 THEN
		detail := detail || format(' Points that arrived later than the setting "metrics.rollup_lateness" allows are not rolled up: %s so far, the last at %s.',
								   state.late_points, state.last_late_at);
	END IF;
	IF coalesce(state.bad_points, 0) > 0 THEN
		status := 'warning';
		detail := detail || format(' Points with timestamps outside 0001-01-01 to 9999-12-31 (UTC) were skipped by the rollups: %s so far, the last at %s (see the server log).',
								   state.bad_points, state.last_bad_at);
	END IF;
	RETURN NEXT;

	component := 'metrics series';
	SELECT count(*) INTO total FROM metrics.series;
	SELECT name, count(*) INTO busiest, busiest_n
	  FROM metrics.series GROUP BY name ORDER BY count(*) DESC, name LIMIT 1;
	IF busiest_n >= series_limit THEN
		status := 'warning';
		detail := format('Metric "%s" has %s series, its limit (setting "metrics.series_limit"): new tag values of it are refused.', busiest, busiest_n);
	ELSIF busiest_n >= series_limit * 0.8 THEN
		status := 'warning';
		detail := format('Metric "%s" has %s series of its limit of %s (setting "metrics.series_limit").', busiest, busiest_n, series_limit);
	ELSE
		status := 'ok';
		detail := format('%s series; no metric is near its limit of %s.', total, series_limit);
	END IF;
	RETURN NEXT;
END
$$;

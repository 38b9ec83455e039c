-- Metrics, rollups: the rollup and retention jobs, metrics.query() and
-- health.

--
-- metrics.rollup(): merge the queued contributions into the rollups of
-- every width, exactly once, in one transaction (src/metrics/rollup.c).
--
CREATE FUNCTION metrics.rollup() RETURNS bigint
LANGUAGE c VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'metrics_rollup';

COMMENT ON FUNCTION metrics.rollup() IS 'Roll up the points recorded since the last run into every rollup width, exactly once; returns how many points';

--
-- metrics.rebuild_rollups(from, to): recompute the rollups of a time range
-- from the raw points, e.g. after changing the rollup widths.  The range
-- is widened to whole buckets of the coarsest width.  The rollups of the
-- range and its queued contributions are replaced, in one transaction,
-- by the sketches of the points the transaction sees, which are then
-- rolled up; the contributions of transactions still in progress are not
-- visible, and neither are their points, so nothing is counted twice or
-- lost.  Points already removed by retention are not in the result;
-- rollups of widths no longer configured are left alone.
--
CREATE FUNCTION metrics.rebuild_rollups("from" timestamptz, "to" timestamptz) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	widths interval[] := opsdata.setting('metrics.rollup_widths')::interval[];
	coarsest interval;
	origin timestamptz := timestamptz '2000-01-03 00:00:00+00';
	lo timestamptz;
	hi timestamptz;
BEGIN
	IF "from" IS NULL OR "to" IS NULL OR "from" >= "to" THEN
		RAISE EXCEPTION 'invalid time range for metrics.rebuild_rollups()'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give a range whose start is before its end.';
	END IF;
	coarsest := widths[cardinality(widths)];
	lo := date_bin(coarsest, "from", origin);
	hi := date_bin(coarsest, "to", origin);
	IF hi < "to" THEN
		hi := hi + coarsest;
	END IF;

	-- Serialize with metrics.rollup().
	INSERT INTO metrics.rollup_state DEFAULT VALUES ON CONFLICT DO NOTHING;
	PERFORM FROM metrics.rollup_state FOR UPDATE;

	DELETE FROM metrics.rollups WHERE bucket_width = ANY (widths) AND bucket_start >= lo AND bucket_start < hi;
	DELETE FROM metrics.rollup_queue WHERE bucket_start >= lo AND bucket_start < hi;
	-- The points of the range, never judged late, and the rest of the queue.
	RETURN metrics._rollup_points(lo, hi);
END
$$;

CREATE FUNCTION metrics._rollup_points("from" timestamptz, "to" timestamptz) RETURNS bigint
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'metrics_rollup_points';

COMMENT ON FUNCTION metrics._rollup_points(timestamptz, timestamptz) IS 'Internal: roll up the points of a range and the queue, for metrics.rebuild_rollups()';

COMMENT ON FUNCTION metrics.rebuild_rollups(timestamptz, timestamptz) IS 'Recompute the rollups of a time range (widened to whole buckets) from the raw points; returns how many points were rolled up';

--
-- metrics.expire_rollups(): remove the buckets older than the retention
-- of their width.  Raw points are kept or dropped by partition
-- maintenance on their own schedule; neither affects the other.
--
CREATE FUNCTION metrics.expire_rollups() RETURNS bigint
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	widths interval[] := opsdata.setting('metrics.rollup_widths')::interval[];
	retentions interval[] := opsdata.setting('metrics.rollup_retention')::interval[];
	removed bigint := 0;
	n bigint;
	i integer;
BEGIN
	FOR i IN 1 .. least(cardinality(widths), cardinality(retentions)) LOOP
		CONTINUE WHEN retentions[i] IS NULL;
		DELETE FROM metrics.rollups
		 WHERE bucket_width = widths[i] AND bucket_start < now() - retentions[i] - widths[i];
		GET DIAGNOSTICS n = ROW_COUNT;
		removed := removed + n;
	END LOOP;
	RETURN removed;
END
$$;

COMMENT ON FUNCTION metrics.expire_rollups() IS 'Remove rollup buckets that ended longer ago than the retention of their width; returns how many';

INSERT INTO opsdata.jobs (name, command, schedule, builtin, comment) VALUES
	('metrics.rollup', 'SELECT metrics.rollup()', '1 minute', true,
	 'Roll up new metric points into every rollup width'),
	('metrics.expire_rollups', 'SELECT metrics.expire_rollups()', '1 hour', true,
	 'Remove rollup buckets older than their retention');

--
-- metrics.query(): aggregates per bucket over a time range, from the
-- coarsest rollup width that divides the bucket, plus the contributions
-- still queued, so the answer includes every point committed so far.  A
-- STABLE function: its one query sees rollups and queue in the same
-- snapshot, so a rollup run committing meanwhile is seen whole or not at
-- all, and no point is counted twice or missed.
--
CREATE FUNCTION metrics.query(name text, tags jsonb, "from" timestamptz, "to" timestamptz,
							  bucket_width interval DEFAULT '1 minute')
RETURNS TABLE (bucket timestamptz, count bigint, sum double precision, min double precision,
			   max double precision, avg double precision, p50 double precision,
			   p95 double precision, p99 double precision)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	widths interval[] := opsdata.setting('metrics.rollup_widths')::interval[];
	lateness interval := opsdata.setting('metrics.rollup_lateness')::interval;
	origin timestamptz := timestamptz '2000-01-03 00:00:00+00';
	width interval;
	w interval;
BEGIN
	IF query.bucket_width IS NULL OR query.bucket_width <= interval '0'
	   OR date_part('month', query.bucket_width) <> 0 OR date_part('year', query.bucket_width) <> 0 THEN
		RAISE EXCEPTION 'invalid bucket width "%"', query.bucket_width
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'A bucket is a positive interval without months or years, e.g. 5 minutes or 1 day.';
	END IF;
	FOREACH w IN ARRAY widths LOOP
		IF date_part('epoch', query.bucket_width)::numeric % date_part('epoch', w)::numeric = 0 THEN
			width := w;
		END IF;
	END LOOP;
	IF width IS NULL THEN
		RAISE EXCEPTION 'bucket width "%" is not a multiple of the rollup width "%"', query.bucket_width, widths[1]
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'The rollup widths are set by the setting "metrics.rollup_widths".';
	END IF;
	IF query.name IS NULL OR query."from" IS NULL OR query."to" IS NULL THEN
		RAISE EXCEPTION 'metric name and time range must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;

	RETURN QUERY
	WITH s AS (
		SELECT series_id FROM metrics.series
		 WHERE series.name = query.name AND series.tags @> coalesce(query.tags, '{}')
	), parts AS (
		SELECT r.bucket_start AS b, r.sketch
		  FROM s JOIN metrics.rollups r USING (series_id)
		 WHERE r.bucket_width = width
		   AND r.bucket_start >= date_bin(query.bucket_width, query."from", origin)
		   AND r.bucket_start < query."to"
		UNION ALL
		SELECT q.bucket_start, q.sketch
		  FROM s JOIN metrics.rollup_queue q USING (series_id)
		 WHERE q.bucket_start >= date_bin(query.bucket_width, query."from", origin)
		   AND q.bucket_start < query."to"
		   AND q.queued_at <= date_bin(widths[1], q.bucket_start, origin) + widths[1] + lateness
	), merged AS (
		SELECT date_bin(query.bucket_width, parts.b, origin) AS b, metrics.sketch_union(parts.sketch) AS s
		  FROM parts GROUP BY 1
	)
	SELECT m.b, metrics.sketch_count(m.s), metrics.sketch_sum(m.s), metrics.sketch_min(m.s),
		   metrics.sketch_max(m.s), metrics.sketch_sum(m.s) / metrics.sketch_count(m.s),
		   m.qs[1], m.qs[2], m.qs[3]
	  FROM (SELECT merged.b, merged.s, metrics.quantiles(merged.s, '{0.5,0.95,0.99}') AS qs FROM merged) m
	 ORDER BY m.b;
END
$$;

COMMENT ON FUNCTION metrics.query(text, jsonb, timestamptz, timestamptz, interval) IS 'Count, sum, min, max, avg, p50, p95 and p99 per bucket over the series of a metric whose tags contain the given ones, from rollups and points not yet rolled up';

--
-- Health.
--
CREATE FUNCTION metrics._health_metrics(OUT component text, OUT status text, OUT detail text)
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

COMMENT ON FUNCTION metrics._health_metrics() IS 'Internal: the metrics rows of opsdata.health(): rollup lag and series cardinality';

GRANT EXECUTE ON FUNCTION metrics.query(text, jsonb, timestamptz, timestamptz, interval) TO opsdata_reader;
GRANT EXECUTE ON FUNCTION metrics.rollup(), metrics.expire_rollups(),
	metrics.rebuild_rollups(timestamptz, timestamptz) TO opsdata_admin;

-- Rollups: a run rolls up exactly the points recorded since the last one,
-- into every width; each bucket equals, bit for bit, the sketch of its raw
-- points, hours equal the merge of their minutes and days of their hours;
-- late points re-open only their buckets; a failed run changes nothing and
-- a second run adds nothing; dropping raw points never changes rollups;
-- query() gives the same answer before and after a run.
BEGIN;
CREATE EXTENSION pg_opsdata;
-- This test calls the built-in jobs' functions itself: pause the jobs before
-- the scheduler can see them, so that its runs do not race the test's.
DO $$BEGIN PERFORM opsdata.pause_job(job_id) FROM opsdata.jobs WHERE builtin; END$$;
COMMIT;
SET TimeZone = 'UTC';
-- The points below are dated in the past: accept them as late as that.
SELECT opsdata.set_setting('metrics.rollup_lateness', '100 years');

-- try(cmd): the SQLSTATE and message of a statement's error, or 'ok'.
\getenv abs_srcdir PG_ABS_SRCDIR
\set try_file :abs_srcdir '/sql/metrics_try.inc'
\i :try_file

-- Every rollup bucket against the raw points it covers: same count, sum,
-- min, max, and the same sketch bytes as sketch_agg over the points.
CREATE VIEW check_rollups AS
	WITH w(width) AS (SELECT unnest(opsdata.setting('metrics.rollup_widths')::interval[])),
	raw AS (
		SELECT p.series_id, w.width AS bucket_width, date_bin(w.width, p.ts, '2000-01-03') AS bucket_start,
			   count(*) AS n, min(p.value) AS lo, max(p.value) AS hi, metrics.sketch_agg(p.value) AS s
		  FROM metrics.points p, w GROUP BY 1, 2, 3
	), r AS (
		SELECT * FROM metrics.rollups WHERE bucket_width IN (SELECT width FROM w)
	)
	SELECT bucket_width AS width, count(r.series_id) AS buckets,
		   count(*) FILTER (WHERE r.count = raw.n AND r.min = raw.lo AND r.max = raw.hi
							AND r.sum = metrics.sketch_sum(raw.s)
							AND metrics.sketch_send(r.sketch) = metrics.sketch_send(raw.s)) AS exact,
		   count(*) FILTER (WHERE r.series_id IS NULL) AS missing,
		   count(*) FILTER (WHERE raw.series_id IS NULL) AS extra
	  FROM raw FULL JOIN r USING (series_id, bucket_width, bucket_start)
	 GROUP BY 1 ORDER BY 1;

-- Two series, points over three hours of one day and one of the next.
SELECT setseed(0.7);
SELECT metrics.record_many('{api.latency}', array_agg(-ln(1 - random()) * 30 ORDER BY i),
						   '{"{\"route\": \"/search\"}"}',
						   array_agg('2024-04-01 21:00:00+00'::timestamptz + i * interval '7 seconds' ORDER BY i))
  FROM generate_series(1, 2000) i;
SELECT metrics.record_many('{api.latency}', array_agg(random() * 100 ORDER BY i),
						   '{"{\"route\": \"/login\"}"}',
						   array_agg('2024-04-01 22:30:00+00'::timestamptz + i * interval '5 seconds' ORDER BY i))
  FROM generate_series(1, 1000) i;
SELECT count(*) AS queued_rows, sum(metrics.sketch_count(sketch)) AS queued_points FROM metrics.rollup_queue;

-- query() before any run: answered from the queue alone.
CREATE TABLE answers AS
SELECT 'before' AS at, * FROM metrics.query('api.latency', '{}', '2024-04-01 21:00', '2024-04-02 02:00', '1 hour');
SELECT bucket, count, round(sum::numeric, 3) AS sum FROM answers ORDER BY bucket;

-- The first run rolls up every point, once.
SELECT metrics.rollup() AS rolled_up;
SELECT count(*) AS queue_left FROM metrics.rollup_queue;
SELECT * FROM check_rollups;

-- The same answers from the rollups.
INSERT INTO answers
SELECT 'after', * FROM metrics.query('api.latency', '{}', '2024-04-01 21:00', '2024-04-02 02:00', '1 hour');
SELECT count(*) AS buckets, count(DISTINCT (bucket, count, sum, min, max, avg, p50, p95, p99)) AS distinct_answers
  FROM answers;

-- Hours are the merge of their minutes, days the merge of their hours.
SELECT coarse.bucket_width, count(*) AS buckets,
	   count(*) FILTER (WHERE metrics.sketch_send(coarse.sketch) = metrics.sketch_send(
			(SELECT metrics.sketch_union(fine.sketch) FROM metrics.rollups fine
			  WHERE fine.series_id = coarse.series_id AND fine.bucket_width = prev.width
				AND fine.bucket_start >= coarse.bucket_start
				AND fine.bucket_start < coarse.bucket_start + coarse.bucket_width))) AS merge_of_finer
  FROM metrics.rollups coarse
  JOIN (VALUES (interval '1 hour', interval '1 minute'), (interval '1 day', interval '1 hour')) prev(w, width)
	ON prev.w = coarse.bucket_width
 GROUP BY 1 ORDER BY 1;

-- A second run with nothing new adds nothing.
CREATE TABLE snapshot AS SELECT series_id, bucket_width, bucket_start, metrics.sketch_send(sketch) AS b FROM metrics.rollups;
SELECT metrics.rollup() AS rolled_up;
SELECT count(*) AS changed FROM metrics.rollups r JOIN snapshot s USING (series_id, bucket_width, bucket_start)
 WHERE metrics.sketch_send(r.sketch) <> s.b;

-- New and late points: only the buckets they fall in change.
SELECT metrics.record('api.latency', 500, '{"route": "/search"}', '2024-04-01 21:30:10+00');
SELECT metrics.record('api.latency', 0.5, '{"route": "/login"}', '2024-04-02 01:00:00+00');
SELECT metrics.rollup() AS rolled_up;
SELECT s.tags, r.bucket_width, r.bucket_start
  FROM metrics.rollups r JOIN snapshot p USING (series_id, bucket_width, bucket_start)
  JOIN metrics.series s USING (series_id)
 WHERE metrics.sketch_send(r.sketch) <> p.b ORDER BY 1, 2, 3;
SELECT s.tags, r.bucket_width, r.bucket_start
  FROM metrics.rollups r JOIN metrics.series s USING (series_id)
 WHERE NOT EXISTS (SELECT FROM snapshot p WHERE (p.series_id, p.bucket_width, p.bucket_start) = (r.series_id, r.bucket_width, r.bucket_start))
 ORDER BY 1, 2, 3;
SELECT * FROM check_rollups;

-- A run that fails half-way leaves queue and rollups as they were; the
-- next one rolls everything up, once.
SELECT metrics.record_many('{api.latency}', '{1, 2, 3}', '{"{\"route\": \"/search\"}"}',
						   '{2024-04-01 21:00:00+00, 2024-04-01 23:59:59+00, 2024-04-02 00:00:00+00}');
CREATE FUNCTION fail_on_day() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.bucket_width = interval '1 day' THEN
		RAISE EXCEPTION 'simulated failure';
	END IF;
	RETURN NEW;
END
$$;
CREATE TRIGGER fail_on_day BEFORE INSERT OR UPDATE ON metrics.rollups
	FOR EACH ROW EXECUTE FUNCTION fail_on_day();
DROP TABLE snapshot;
CREATE TABLE snapshot AS SELECT series_id, bucket_width, bucket_start, metrics.sketch_send(sketch) AS b FROM metrics.rollups;
SELECT try('SELECT metrics.rollup()');
SELECT count(*) AS queued_rows FROM metrics.rollup_queue;
SELECT count(*) AS changed FROM metrics.rollups r JOIN snapshot s USING (series_id, bucket_width, bucket_start)
 WHERE metrics.sketch_send(r.sketch) <> s.b;
DROP TRIGGER fail_on_day ON metrics.rollups;
SELECT metrics.rollup() AS rolled_up;
SELECT * FROM check_rollups;
SELECT runs, points, late_points FROM metrics.rollup_state;

-- rebuild_rollups() recomputes a range, widened to whole days, from the
-- raw points: here after the rollups of one day were damaged by hand.
UPDATE metrics.rollups SET count = 0, sketch = NULL
 WHERE bucket_start >= '2024-04-02' AND bucket_start < '2024-04-03';
SELECT metrics.rebuild_rollups('2024-04-02 00:30', '2024-04-02 01:00') AS rebuilt;
SELECT count(*) AS points_that_day FROM metrics.points WHERE ts >= '2024-04-02' AND ts < '2024-04-03';
SELECT * FROM check_rollups;
SELECT try($$SELECT metrics.rebuild_rollups('2024-04-03', '2024-04-02')$$);

-- Points later than the lateness are not rolled up, and counted; query()
-- leaves them out too.
SELECT opsdata.set_setting('metrics.rollup_lateness', '1 hour');
SELECT metrics.record('api.latency', 1000, '{"route": "/login"}', now() - interval '3 hours');
SELECT metrics.record('api.latency', 2000, '{"route": "/login"}', now() - interval '10 minutes');
SELECT count(*) AS points_in_query
  FROM metrics.query('api.latency', '{"route": "/login"}', now() - interval '4 hours', now(), '1 minute');
SELECT metrics.rollup() AS rolled_up;
SELECT runs, points, late_points, last_late_at IS NOT NULL AS late_noted FROM metrics.rollup_state;
SELECT max FROM metrics.query('api.latency', '{"route": "/login"}', now() - interval '4 hours', now(), '1 day');
-- Health reports the late points (and warns: the job is paused here).
SELECT component, status, detail LIKE '%arrived later than%: 1 so far%' AS late_reported
  FROM opsdata.health() WHERE component = 'metrics rollups';
SELECT opsdata.set_setting('metrics.rollup_lateness', '100 years');

-- query(): tags filter by containment; buckets are multiples of the
-- finest width, the coarsest width dividing them is read.
SELECT bucket, count, round(sum::numeric, 6) AS sum, min, max
  FROM metrics.query('api.latency', '{"route": "/login"}', '2024-04-01 00:00', '2024-04-03 00:00', '1 day');
SELECT bucket, count FROM metrics.query('api.latency', '{}', '2024-04-01 22:00', '2024-04-02 00:00', '30 minutes');
SELECT count(*) AS buckets FROM metrics.query('api.latency', '{}', '2024-04-01 21:00', '2024-04-01 21:10', '1 minute');
SELECT count(*) AS no_such_metric FROM metrics.query('nope', '{}', '2024-04-01', '2024-04-02', '1 hour');
SELECT count(*) AS no_such_tag FROM metrics.query('api.latency', '{"route": "/x"}', '2024-04-01', '2024-04-02', '1 hour');
SELECT try($$SELECT * FROM metrics.query('api.latency', '{}', '2024-04-01', '2024-04-02', '30 seconds')$$);
SELECT try($$SELECT * FROM metrics.query('api.latency', '{}', '2024-04-01', '2024-04-02', '90 seconds')$$);
SELECT try($$SELECT * FROM metrics.query('api.latency', '{}', '2024-04-01', '2024-04-02', '1 month')$$);
SELECT try($$SELECT * FROM metrics.query('api.latency', '{}', '2024-04-01', '2024-04-02', '-1 hour')$$);
SELECT try($$SELECT * FROM metrics.query(NULL, '{}', '2024-04-01', '2024-04-02', '1 hour')$$);

-- Dropping raw points (as retention drops partitions) never changes rollups.
DROP TABLE snapshot;
CREATE TABLE snapshot AS SELECT series_id, bucket_width, bucket_start, metrics.sketch_send(sketch) AS b FROM metrics.rollups;
CREATE TABLE metrics.points_20240405 PARTITION OF metrics.points FOR VALUES FROM ('2024-04-05') TO ('2024-04-06');
SELECT metrics.record('api.latency', 42, '{"route": "/login"}', '2024-04-05 12:00:00+00');
SELECT metrics.rollup() AS rolled_up;
DROP TABLE metrics.points_20240405;
TRUNCATE metrics.points;
SELECT count(*) AS rollups_changed_or_lost FROM snapshot s
  LEFT JOIN metrics.rollups r USING (series_id, bucket_width, bucket_start)
 WHERE r.sketch IS NULL OR metrics.sketch_send(r.sketch) <> s.b;
SELECT count, max FROM metrics.query('api.latency', '{"route": "/login"}', '2024-04-05', '2024-04-06', '1 day');

-- Retention removes old buckets of each width, per its own setting.
SELECT opsdata.set_setting('metrics.rollup_retention', '{"7 days", NULL, "3650 days"}');
SELECT bucket_width, count(*) FROM metrics.rollups GROUP BY 1 ORDER BY 1;
SELECT metrics.expire_rollups() > 0 AS removed;
SELECT bucket_width, count(*) FROM metrics.rollups GROUP BY 1 ORDER BY 1;

-- Widths are configurable: whole minutes, increasing, each a multiple of
-- the one before.
SELECT try($$SELECT opsdata.set_setting('metrics.rollup_widths', '{"1 hour", "1 minute"}')$$);
SELECT try($$SELECT opsdata.set_setting('metrics.rollup_widths', '{"90 seconds"}')$$);
SELECT try($$SELECT opsdata.set_setting('metrics.rollup_widths', '{"1 minute", "7 minutes", "1 hour"}')$$);
SELECT try($$SELECT opsdata.set_setting('metrics.rollup_widths', '{"1 month"}')$$);
SELECT try($$SELECT opsdata.set_setting('metrics.rollup_widths', '{}')$$);
SELECT try($$SELECT opsdata.set_setting('metrics.rollup_retention', '{"-1 day"}')$$);
SELECT try($$SELECT opsdata.set_setting('metrics.rollup_lateness', '-1 hour')$$);
SELECT opsdata.set_setting('metrics.rollup_widths', '{"5 minutes", "1 week"}');
SELECT metrics.record_many('{weekly}', '{1, 2, 3}', NULL,
						   '{2024-04-08 00:00:00+00, 2024-04-14 23:59:00+00, 2024-04-15 00:00:00+00}');
SELECT metrics.rollup() AS rolled_up;
SELECT r.bucket_width, r.bucket_start, r.count, to_char(r.bucket_start, 'Dy') AS day
  FROM metrics.rollups r JOIN metrics.series s USING (series_id) WHERE s.name = 'weekly' ORDER BY 1, 2;
SELECT bucket, count FROM metrics.query('weekly', '{}', '2024-04-08', '2024-04-22', '1 week');
SELECT opsdata.reset_setting('metrics.rollup_widths');
SELECT opsdata.reset_setting('metrics.rollup_retention');

-- A backlog of more series and minutes than a run keeps in memory at once
-- (32768) is rolled up in parts: every bucket still equals its raw points.
SELECT metrics.record_many('{api.backlog}', array_agg(i ORDER BY i),
						   array_agg(jsonb_build_object('shard', (i % 20)::text) ORDER BY i),
						   array_agg('2024-05-01 00:00:00+00'::timestamptz + (i / 20) * interval '1 minute' ORDER BY i))
  FROM generate_series(0, 39999) i;
SELECT metrics.rollup() AS rolled_up;
WITH s AS (SELECT series_id FROM metrics.series WHERE name = 'api.backlog'),
w(width) AS (SELECT unnest(opsdata.setting('metrics.rollup_widths')::interval[])),
raw AS (
	SELECT p.series_id, w.width AS bucket_width, date_bin(w.width, p.ts, '2000-01-03') AS bucket_start,
		   count(*) AS n, metrics.sketch_agg(p.value) AS sk
	  FROM metrics.points p JOIN s USING (series_id), w GROUP BY 1, 2, 3
), r AS (
	SELECT r.* FROM metrics.rollups r JOIN s USING (series_id)
)
SELECT bucket_width, count(*) AS buckets,
	   count(*) FILTER (WHERE r.count = raw.n AND metrics.sketch_send(r.sketch) = metrics.sketch_send(raw.sk)) AS exact
  FROM raw FULL JOIN r USING (series_id, bucket_width, bucket_start)
 GROUP BY 1 ORDER BY 1;

-- The built-in jobs run these functions.
SELECT name, command, schedule, builtin FROM opsdata.jobs WHERE name LIKE 'metrics.%' ORDER BY name;

DROP VIEW check_rollups;
DROP TABLE answers, snapshot;
DROP FUNCTION try(text);
DROP FUNCTION fail_on_day();
DROP EXTENSION pg_opsdata;

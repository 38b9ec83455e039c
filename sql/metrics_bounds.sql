-- Metric timestamps are bounded: from 0001-01-01 to 9999-12-31 (UTC), the
-- range rollups can bucket.  Every way of writing points refuses others
-- with 22008 and writes nothing; a point stored out of range (before the
-- bound existed, or around the writers) never stops the rollup job: it is
-- skipped, counted and reported.
BEGIN;
CREATE EXTENSION pg_opsdata;
-- This test calls the rollup job's function itself.
DO $$BEGIN PERFORM opsdata.pause_job(job_id) FROM opsdata.jobs WHERE builtin; END$$;
COMMIT;
SET TimeZone = 'UTC';
SELECT opsdata.set_setting('metrics.rollup_lateness', '100000 years');

\getenv abs_srcdir PG_ABS_SRCDIR
\set try_file :abs_srcdir '/sql/metrics_try.inc'
\i :try_file

-- The bounds themselves are accepted.
SELECT try($$SELECT metrics.record('b', 1, '{}', '0001-01-01 00:00:00+00')$$);
SELECT try($$SELECT metrics.record('b', 2, '{}', '9999-12-31 23:59:59.999999+00')$$);

-- record(): the point that stopped every rollup, and its neighbours.
SELECT try($$SELECT metrics.record('b', 1, '{}', '294276-12-31 23:59:59+00')$$);
SELECT try($$SELECT metrics.record('b', 1, '{}', '10000-01-01 00:00:00+00')$$);
SELECT try($$SELECT metrics.record('b', 1, '{}', '0001-12-31 23:59:59.999999+00 BC')$$);
SELECT try($$SELECT metrics.record('b', 1, '{}', '4713-11-24 00:00:00+00 BC')$$);
SELECT try($$SELECT metrics.record('b', 1, '{}', 'infinity')$$);

-- record_many(): the element is named, and nothing of the call is written.
SELECT metrics.record_many('{b}', '{1,2,3}', NULL,
	'{"2024-01-01 00:00:00+00","50000-01-01 00:00:00+00","2024-01-01 00:01:00+00"}');
SELECT try($$SELECT metrics.record_many('{b}', '{1}', NULL, '{-infinity}')$$);

-- COPY into metrics.ingest, read by pg_opsdata on a preloaded server: the
-- error has COPY's context, and no row of the COPY is written.
COPY metrics.ingest (name, ts, value) FROM STDIN;
b	2024-01-01 00:00:00+00	1
b	294276-12-31 23:59:59+00	1
\.
-- COPY through the executor (a WHERE clause), into the foreign table.
COPY metrics.ingest (name, ts, value) FROM STDIN WHERE value > 0;
b	2024-01-01 00:00:00+00	1
b	12000-01-01 00:00:00+00	1
\.
SELECT try($$INSERT INTO metrics.ingest (name, tags, ts, value) VALUES ('b', '{}', '12000-01-01 00:00:00+00', 1)$$);

-- INSERT into metrics.points by the application.
SELECT try($$INSERT INTO metrics.points (series_id, ts, value)
	SELECT series_id, '12000-01-01 00:00:00+00', 1 FROM metrics.series WHERE name = 'b'$$);

SELECT count(*) AS points, min(ts), max(ts) FROM metrics.points
 WHERE series_id = (SELECT series_id FROM metrics.series WHERE name = 'b');

-- A point stored out of range before the bound existed, with its queued
-- contribution: the rollup job skips it (a WARNING), counts it and goes on;
-- the next run does not see it again.
ALTER TABLE metrics.points DISABLE TRIGGER USER;
INSERT INTO metrics.points (series_id, ts, value)
	SELECT series_id, '294276-12-31 23:59:59+00', 1 FROM metrics.series WHERE name = 'b';
ALTER TABLE metrics.points ENABLE TRIGGER USER;
INSERT INTO metrics.rollup_queue (series_id, bucket_start, sketch)
	SELECT series_id, '294276-12-31 23:59:00+00', metrics.sketch_agg(1.0)
	  FROM metrics.series WHERE name = 'b' GROUP BY 1;
SELECT metrics.rollup() AS rolled_up;
SELECT metrics.rollup() AS rolled_up_again;
SELECT count(*) AS queued FROM metrics.rollup_queue;
SELECT bad_points, last_bad_at IS NOT NULL AS bad_seen FROM metrics.rollup_state;
SELECT status, detail ~ 'outside 0001-01-01 to 9999-12-31' AS says_why
  FROM opsdata.health() WHERE component = 'metrics rollups';
-- The rollups of the points in range are there, at both ends of the range.
SELECT bucket_width, bucket_start, count FROM metrics.rollups
 WHERE series_id = (SELECT series_id FROM metrics.series WHERE name = 'b')
 ORDER BY bucket_width, bucket_start;
-- Rollups are rebuilt up to the end of the range.
SELECT metrics.rebuild_rollups('9999-12-31 00:00:00+00', '9999-12-31 23:59:59.999999+00') AS rebuilt;

DROP EXTENSION pg_opsdata;
DROP FUNCTION try(text);

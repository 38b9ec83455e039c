-- Writes routed through the executor (core/routing.c): with
-- pg_opsdata.metrics_executor_writes = always, as for a metrics.points that Citus
-- distributes, metrics.record(), metrics.record_many() and COPY into
-- metrics.ingest insert into metrics.points with an INSERT statement that
-- the executor runs (a statement trigger on metrics.points sees it), store
-- the same points, and queue each point's rollup contribution exactly
-- once (by the table's own trigger); by default they write the partitions
-- directly and the executor never sees them.  opsdata.distribute() refuses
-- without Citus.
BEGIN;
CREATE EXTENSION pg_opsdata;
DO $$BEGIN PERFORM opsdata.pause_job(job_id) FROM opsdata.jobs WHERE builtin; END$$;
COMMIT;
SET TimeZone = 'UTC';
SELECT opsdata.set_setting('metrics.rollup_lateness', '100 years');

\getenv abs_srcdir PG_ABS_SRCDIR
\set try_file :abs_srcdir '/sql/metrics_try.inc'
\i :try_file

-- What the executor saw: one row per INSERT statement into metrics.points.
CREATE TABLE seen (n bigint);
CREATE FUNCTION seen_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO seen SELECT count(*) FROM new_points;
	RETURN NULL;
END
$$;
CREATE TRIGGER seen_insert AFTER INSERT ON metrics.points
	REFERENCING NEW TABLE AS new_points FOR EACH STATEMENT EXECUTE FUNCTION seen_insert();

CREATE VIEW check_queue AS
	SELECT count(*) AS series, sum(p.n) AS points,
		   bool_and(metrics.sketch_send(q.s) = metrics.sketch_send(p.s)) AS queue_matches_points
	  FROM (SELECT series_id, count(*) AS n, metrics.sketch_agg(value) AS s
			  FROM metrics.points GROUP BY series_id) p
	  LEFT JOIN (SELECT series_id, metrics.sketch_union(sketch) AS s
				   FROM metrics.rollup_queue GROUP BY series_id) q USING (series_id);

CREATE ROLE metrics_executor_writer IN ROLE opsdata_writer;
GRANT SELECT, INSERT ON seen TO metrics_executor_writer;

-- By default: straight into the partitions, no statement on metrics.points.
SHOW pg_opsdata.metrics_executor_writes;
SET ROLE metrics_executor_writer;
SELECT metrics.record('exec.a', 1.5, '{"k": "1"}', '2024-03-01 10:00:00+00');
SELECT metrics.record_many('{exec.a,exec.a,exec.a}', '{1,2,3}', '{"{\"k\": \"2\"}"}',
	'{2024-03-01 10:00:00+00,2024-03-01 10:01:00+00,2024-03-02 10:00:00+00}');
COPY metrics.ingest FROM STDIN;
exec.a	{"k": "1"}	2024-03-01 10:00:30+00	4
exec.a	{"k": "3"}	2024-03-03 00:00:00+00	5
\.
RESET ROLE;
SELECT count(*) AS statements_seen FROM seen;
SELECT * FROM check_queue;

-- Through the executor: each call is one INSERT statement, the same
-- points, and their contributions queued once.
SET pg_opsdata.metrics_executor_writes = always;
SET ROLE metrics_executor_writer;
SELECT try('SET pg_opsdata.metrics_executor_writes = auto');
SELECT metrics.record('exec.a', 6, '{"k": "1"}', '2024-03-01 10:00:00+00');
SELECT metrics.record_many('{exec.a,exec.a}', '{7,8}', '{"{\"k\": \"2\"}"}',
	'{2024-03-01 10:00:00+00,2024-03-04 10:00:00+00}');
COPY metrics.ingest FROM STDIN;
exec.a	{"k": "1"}	2024-03-01 10:00:30+00	9
exec.a	{"k": "4"}	2024-03-05 00:00:00+00	10
exec.b	{}	2024-03-05 00:00:00+00	11
\.
SELECT :ROW_COUNT AS copied;
RESET ROLE;
SELECT n AS points_per_statement FROM seen ORDER BY n;
SELECT * FROM check_queue;
SELECT s.name, s.tags, p.ts, p.value FROM metrics.points p JOIN metrics.series s USING (series_id)
 ORDER BY p.ts, p.value;

-- The rollups of both ways add up: every point counted once.
SELECT metrics.rollup() AS rolled_up;
SELECT bucket, count, sum, min, max
  FROM metrics.query('exec.a', '{}', '2024-03-01', '2024-03-06', '1 day');

-- A write through the executor that rolls back leaves nothing behind.
BEGIN;
SELECT metrics.record_many('{exec.a}', '{1,2}', NULL, '{2024-03-06,2024-03-06}');
ROLLBACK;
SELECT count(*) AS points, (SELECT count(*) FROM metrics.rollup_queue) AS queued FROM metrics.points;
RESET pg_opsdata.metrics_executor_writes;

-- Distributing needs Citus, and is for superusers only.
SELECT try('SELECT opsdata.distribute()');
SELECT try('SELECT opsdata.undistribute()');
SET ROLE metrics_executor_writer;
SELECT try('SELECT opsdata.distribute()');
RESET ROLE;

DROP TRIGGER seen_insert ON metrics.points;
DROP FUNCTION seen_insert();
DROP TABLE seen;
DROP ROLE metrics_executor_writer;
DROP VIEW check_queue;
DROP FUNCTION try(text);
DROP EXTENSION pg_opsdata;

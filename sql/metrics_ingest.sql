-- Recording points: record(), record_many(), COPY or INSERT into
-- metrics.ingest, and INSERT into metrics.points all store the points and
-- queue exactly their rollup contribution in the same transaction; series
-- are made on first use, their ids cached per backend and never reused
-- wrongly after a rollback; bad input gets a clear error and changes
-- nothing.
BEGIN;
CREATE EXTENSION pg_opsdata;
-- This test calls the built-in jobs' functions itself: pause the jobs before
-- the scheduler can see them, so that its runs do not race the test's.
DO $$BEGIN PERFORM opsdata.pause_job(job_id) FROM opsdata.jobs WHERE builtin; END$$;
COMMIT;
SET TimeZone = 'UTC';

-- try(cmd): the SQLSTATE and message of a statement's error, or 'ok'.
\getenv abs_srcdir PG_ABS_SRCDIR
\set try_file :abs_srcdir '/sql/metrics_try.inc'
\i :try_file

-- Points per series, and whether the queue holds exactly their values:
-- for each series, the queued sketches merged equal the sketch of its
-- points, bit for bit.
CREATE VIEW check_queue AS
	SELECT s.name, s.tags, p.n AS points,
		   metrics.sketch_send(q.s) = metrics.sketch_send(p.s) AS queue_matches_points
	  FROM metrics.series s
	  JOIN (SELECT series_id, count(*) AS n, metrics.sketch_agg(value) AS s
			  FROM metrics.points GROUP BY series_id) p USING (series_id)
	  LEFT JOIN (SELECT series_id, metrics.sketch_union(sketch) AS s
				   FROM metrics.rollup_queue GROUP BY series_id) q USING (series_id)
	 ORDER BY s.series_id;

-- record(): one series per name and tags, whatever the order of the keys.
SELECT metrics.record('http.latency', 12.5, '{"route": "/a", "method": "GET"}', '2024-03-01 10:00:05+00');
SELECT metrics.record('http.latency', 30, '{"method": "GET", "route": "/a"}', '2024-03-01 10:00:35+00');
SELECT metrics.record('http.latency', 7, '{"route": "/b"}', '2024-03-01 10:01:00+00');
SELECT metrics.record('jobs.done', 1) > 0 AS default_tags_and_time;
SELECT name, tags FROM metrics.series ORDER BY series_id;
SELECT * FROM check_queue;

-- record_many(): one name and tags for all values, or one per value.
SELECT metrics.record_many('{queue.depth}', '{3, 4, 5}', '{"{\"queue\": \"mail\"}"}',
						   '{2024-03-01 10:00:00+00, 2024-03-01 10:00:10+00, 2024-03-01 10:02:00+00}');
SELECT metrics.record_many('{http.latency, http.latency, queue.depth}', '{1, 2, 6}',
						   '{"{\"route\": \"/b\"}", "{\"route\": \"/c\"}", "{\"queue\": \"mail\"}"}',
						   '{2024-03-01 10:01:30+00, 2024-03-01 10:01:31+00, 2024-03-01 10:03:00+00}');
SELECT metrics.record_many('{x}', '{}');
SELECT * FROM check_queue;

-- metrics.ingest: INSERT and COPY by name; tags as JSON text in any
-- spelling, omitted tags are {}.
INSERT INTO metrics.ingest (name, tags, ts, value) VALUES
	('http.latency', '{"route":"/a","method":"GET"}', '2024-03-01 10:04:00+00', 40),
	('http.latency', '{ "method" : "GET" , "route" : "/a" }', '2024-03-01 10:04:01+00', 41);
INSERT INTO metrics.ingest (name, ts, value) VALUES ('jobs.done', '2024-03-01 10:04:00+00', 2);
COPY metrics.ingest (name, tags, ts, value) FROM STDIN;
http.latency	{"route": "/b"}	2024-03-01 10:05:00+00	9.5
http.latency	{"route": "/d"}	2024-03-01 10:05:00+00	-1.25
disk.free	{"host": "db1"}	2024-03-01 10:05:00+00	0
\.
COPY metrics.ingest (name, ts, value) FROM STDIN (FORMAT csv);
jobs.done,2024-03-01 10:06:00+00,3
\.
SELECT count(*) AS rows_read_back FROM metrics.ingest;
SELECT * FROM check_queue;

-- INSERT straight into metrics.points queues its contribution too.
INSERT INTO metrics.points
SELECT series_id, '2024-03-01 10:07:00+00', 100 FROM metrics.series WHERE name = 'disk.free';
SELECT * FROM check_queue;

-- Points are routed to the partitions of metrics.points; a partition with
-- an index and a check constraint gets them through COPY's machinery,
-- which maintains and enforces them.
CREATE TABLE metrics.points_20240302 PARTITION OF metrics.points
	FOR VALUES FROM ('2024-03-02') TO ('2024-03-03');
CREATE TABLE metrics.points_20240303 PARTITION OF metrics.points
	FOR VALUES FROM ('2024-03-03') TO ('2024-03-04');
CREATE INDEX ON metrics.points_20240303 (value);
ALTER TABLE metrics.points_20240303 ADD CHECK (value < 1000);
SELECT metrics.record_many('{cpu}', '{1, 2, 3, 4}', NULL,
						   '{2024-03-02 00:00:00+00, 2024-03-02 23:59:59+00, 2024-03-03 12:00:00+00, 2024-03-05 00:00:00+00}');
COPY metrics.ingest (name, ts, value) FROM STDIN;
cpu	2024-03-02 12:00:00+00	5
cpu	2024-03-03 13:00:00+00	6
\.
SELECT tableoid::regclass AS partition, ts, value FROM metrics.points
 WHERE series_id = (SELECT series_id FROM metrics.series WHERE name = 'cpu') ORDER BY ts;
SET enable_seqscan = off;
SELECT value FROM metrics.points_20240303 WHERE value = 6;
RESET enable_seqscan;
SELECT try($$SELECT metrics.record_many('{cpu}', '{7, 5000}', NULL, '{2024-03-02 01:00:00+00, 2024-03-03 01:00:00+00}')$$);
SELECT count(*) AS cpu_points FROM metrics.points p JOIN metrics.series s USING (series_id) WHERE s.name = 'cpu';
SELECT * FROM check_queue;

-- Bad input: a clear error, and nothing written.
CREATE TABLE before AS SELECT (SELECT count(*) FROM metrics.points) AS points,
	(SELECT count(*) FROM metrics.series) AS series, (SELECT count(*) FROM metrics.rollup_queue) AS queued;
SELECT try($$SELECT metrics.record(NULL, 1)$$);
SELECT try($$SELECT metrics.record('', 1)$$);
SELECT try($$SELECT metrics.record(repeat('x', 300), 1)$$);
SELECT try($$SELECT metrics.record('m', NULL)$$);
SELECT try($$SELECT metrics.record('m', 'NaN')$$);
SELECT try($$SELECT metrics.record('m', 'Infinity')$$);
SELECT try($$SELECT metrics.record('m', '-Infinity')$$);
SELECT try($$SELECT metrics.record('m', 1, NULL)$$);
SELECT try($$SELECT metrics.record('m', 1, '[1, 2]')$$);
SELECT try($$SELECT metrics.record('m', 1, '"route"')$$);
SELECT try($$SELECT metrics.record('m', 1, '{"route": {"a": "b"}}')$$);
SELECT try($$SELECT metrics.record('m', 1, '{"code": 200}')$$);
SELECT try($$SELECT metrics.record('m', 1, '{"ok": null}')$$);
SELECT try($$SELECT metrics.record('m', 1, '{}', NULL)$$);
SELECT try($$SELECT metrics.record('m', 1, '{}', 'infinity')$$);
SELECT try($$SELECT metrics.record_many(NULL, '{1}')$$);
SELECT try($$SELECT metrics.record_many('{a, b}', '{1, 2, 3}')$$);
SELECT try($$SELECT metrics.record_many('{a}', '{1, 2}', '{"{}", "{}", "{}"}')$$);
SELECT try($$SELECT metrics.record_many('{a}', '{1, 2}', NULL, '{2024-01-01}')$$);
SELECT try($$SELECT metrics.record_many('{a, NULL}', '{1, 2}')$$);
SELECT try($$SELECT metrics.record_many('{a}', '{1, NULL}')$$);
SELECT try($$SELECT metrics.record_many('{a}', '{1, 2, NaN}')$$);
SELECT try($$SELECT metrics.record_many('{a}', '{1, 2}', '{"{\"k\": 1}"}')$$);
SELECT try($$SELECT metrics.record_many('{{a}}', '{1}')$$);
SELECT try($$SELECT metrics.record_many('{}', '{1}')$$);
SELECT try($$INSERT INTO metrics.ingest (name, tags, value) VALUES ('m', '{"a": "b"', 1)$$);
SELECT try($$INSERT INTO metrics.ingest (name, tags, value) VALUES ('m', '{"a": 1}', 1)$$);
SELECT try($$INSERT INTO metrics.ingest (name, tags, value) VALUES (NULL, '{}', 1)$$);
SELECT try($$INSERT INTO metrics.ingest (name, tags, value) VALUES ('m', NULL, 1)$$);
SELECT try($$INSERT INTO metrics.ingest (name, value) VALUES ('m', 'NaN')$$);
SELECT try($$INSERT INTO metrics.ingest (name, value) VALUES ('m', NULL)$$);
SELECT try($$INSERT INTO metrics.points VALUES (1, now(), 'NaN')$$);
SELECT try($$INSERT INTO metrics.points VALUES (1, 'infinity', 1)$$);
SELECT try($$UPDATE metrics.ingest SET value = 1$$);
SELECT try($$DELETE FROM metrics.ingest$$);
-- A COPY whose third row is bad writes none of its rows.
COPY metrics.ingest (name, tags, ts, value) FROM STDIN;
copy.ok	{}	2024-03-01 11:00:00+00	1
copy.ok	{}	2024-03-01 11:00:01+00	2
copy.ok	{"a": 1}	2024-03-01 11:00:02+00	3
\.
SELECT (SELECT count(*) FROM metrics.points) = points AS same_points,
	   (SELECT count(*) FROM metrics.series) = series AS same_series,
	   (SELECT count(*) FROM metrics.rollup_queue) = queued AS same_queue
  FROM before;

-- Read-only transactions are refused.
BEGIN READ ONLY;
SELECT try($$SELECT metrics.record('m', 1)$$);
SELECT try($$SELECT metrics.record_many('{m}', '{1}')$$);
ROLLBACK;

-- The series cache: a series made in a transaction that rolls back is
-- gone, and recording it again makes it again instead of using the id of
-- the vanished row.
BEGIN;
SELECT metrics.record('rolled.back', 1, '{"k": "v"}') AS id_in_aborted_transaction \gset
ROLLBACK;
SELECT count(*) AS rolled_back_series FROM metrics.series WHERE name = 'rolled.back';
SELECT metrics.record('rolled.back', 2, '{"k": "v"}') <> :id_in_aborted_transaction AS new_id;
SELECT count(*) AS orphan_points FROM metrics.points p
 WHERE NOT EXISTS (SELECT FROM metrics.series s WHERE s.series_id = p.series_id);
-- The same through a savepoint, and through metrics.ingest.
BEGIN;
SAVEPOINT s;
INSERT INTO metrics.ingest (name, tags, value) VALUES ('in.savepoint', '{"x": "1"}', 1);
SELECT metrics.record('in.savepoint', 2, '{"x": "2"}') AS id_x2 \gset
ROLLBACK TO SAVEPOINT s;
INSERT INTO metrics.ingest (name, tags, value) VALUES ('in.savepoint', '{"x": "1"}', 3);
SELECT metrics.record('in.savepoint', 4, '{"x": "2"}') <> :id_x2 AS new_id_after_savepoint;
COMMIT;
SELECT s.tags, p.value FROM metrics.points p JOIN metrics.series s USING (series_id)
 WHERE s.name = 'in.savepoint' ORDER BY p.value;
-- Series deleted by their owner are forgotten by every backend's cache.
DELETE FROM metrics.points WHERE series_id IN (SELECT series_id FROM metrics.series WHERE name = 'rolled.back');
DELETE FROM metrics.series WHERE name = 'rolled.back';
SELECT metrics.record('rolled.back', 3, '{"k": "v"}') > 0 AS recorded;
SELECT count(*) AS series_back FROM metrics.series WHERE name = 'rolled.back';
-- A small cache still gives the right ids.
SET pg_opsdata.metrics_series_cache_size = 2;
SELECT count(DISTINCT metrics.record('small.cache', i, jsonb_build_object('k', (i % 5)::text))) AS series
  FROM generate_series(1, 50) i;
SELECT count(*) AS small_cache_series FROM metrics.series WHERE name = 'small.cache';
RESET pg_opsdata.metrics_series_cache_size;

-- The cardinality limit of a metric: a clear error past it, old series
-- still recorded.
SELECT opsdata.set_setting('metrics.series_limit', '3');
SELECT metrics.record('limited', 1, jsonb_build_object('user', i::text)) > 0 AS recorded
  FROM generate_series(1, 3) i;
SELECT try($$SELECT metrics.record('limited', 1, '{"user": "4"}')$$);
SELECT try($$SELECT metrics.record_many('{limited}', '{1}', '{"{\"user\": \"5\"}"}')$$);
SELECT try($$INSERT INTO metrics.ingest (name, tags, value) VALUES ('limited', '{"user": "6"}', 1)$$);
SELECT metrics.record('limited', 2, '{"user": "2"}') > 0 AS existing_series_still_recorded;
SELECT component, status, detail FROM opsdata.health() WHERE component = 'metrics series';
SELECT opsdata.reset_setting('metrics.series_limit');

SELECT * FROM check_queue;

DROP FUNCTION try(text);
DROP VIEW check_queue;
DROP TABLE before;
DROP EXTENSION pg_opsdata;

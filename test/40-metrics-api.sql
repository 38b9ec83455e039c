-- The metrics API as the roles use it: a writer records (record,
-- record_many, metrics.ingest, INSERT into points) without any privilege on
-- the rollup tables, a reader queries and reads sketches but cannot
-- record, an administrator runs the rollup jobs, and a role without grants
-- can do none of it.
BEGIN;
SELECT plan(42);

SELECT has_type('metrics', 'sketch', 'type metrics.sketch exists');
SELECT has_function('metrics', 'record', ARRAY['text', 'double precision', 'jsonb', 'timestamp with time zone'],
	'metrics.record(name, value, tags, at) exists');
SELECT has_function('metrics', 'record_many', ARRAY['text[]', 'double precision[]', 'jsonb[]', 'timestamp with time zone[]'],
	'metrics.record_many(names, vals, tags, ats) exists');
SELECT has_function('metrics', 'query', ARRAY['text', 'jsonb', 'timestamp with time zone', 'timestamp with time zone', 'interval'],
	'metrics.query(name, tags, from, to, bucket_width) exists');
SELECT has_function('metrics', 'quantile', ARRAY['metrics.sketch', 'double precision'], 'metrics.quantile(sketch, q) exists');
SELECT has_function('metrics', 'quantiles', ARRAY['metrics.sketch', 'double precision[]'], 'metrics.quantiles(sketch, qs) exists');
SELECT has_function('metrics', 'sketch_agg', ARRAY['double precision'], 'metrics.sketch_agg(float8) exists');
SELECT has_function('metrics', 'sketch_union', ARRAY['metrics.sketch'], 'metrics.sketch_union(sketch) exists');
SELECT is((SELECT bool_and(p.proparallel = 's' AND a.aggcombinefn <> 0 AND a.aggserialfn <> 0 AND a.aggdeserialfn <> 0)
			 FROM pg_aggregate a JOIN pg_proc p ON p.oid = a.aggfnoid
			WHERE a.aggfnoid IN ('metrics.sketch_agg(double precision)'::regprocedure,
								 'metrics.sketch_union(metrics.sketch)'::regprocedure)),
	true, 'both sketch aggregates are parallel safe with combine, serialize and deserialize functions');
SELECT is((SELECT typsend::text || ',' || typreceive::text FROM pg_type WHERE oid = 'metrics.sketch'::regtype),
	'metrics.sketch_send,metrics.sketch_recv', 'metrics.sketch has binary I/O');
SELECT has_foreign_table('metrics', 'ingest', 'metrics.ingest exists for COPY by name');
SELECT table_privs_are('metrics', 'ingest', 'opsdata_writer', ARRAY['INSERT'], 'opsdata_writer may insert into metrics.ingest');
SELECT table_privs_are('metrics', 'ingest', 'opsdata_reader', '{}', 'opsdata_reader may not insert into metrics.ingest');
SELECT table_privs_are('metrics', 'ingest', 'public', '{}', 'PUBLIC may not touch metrics.ingest');
SELECT is((SELECT count(*)::int FROM opsdata.settings WHERE key LIKE 'metrics.%'), 5, 'the metrics settings exist');

CREATE ROLE m_writer LOGIN IN ROLE opsdata_writer;
CREATE ROLE m_reader LOGIN IN ROLE opsdata_reader;
CREATE ROLE m_admin LOGIN IN ROLE opsdata_admin;
CREATE ROLE m_nobody LOGIN;
SELECT opsdata.set_setting('metrics.rollup_lateness', '100 years');

-- A writer records through every path.
SET ROLE m_writer;
SELECT lives_ok($$SELECT metrics.record('api.latency', 10, '{"route": "/a"}', '2024-06-01 10:00:00+00')$$,
	'a writer records a point, creating its series');
SELECT lives_ok($$SELECT metrics.record_many('{api.latency}', '{20, 30}', '{"{\"route\": \"/a\"}"}',
	'{2024-06-01 10:00:10+00, 2024-06-01 10:01:00+00}')$$, 'a writer records a batch');
SELECT lives_ok($$INSERT INTO metrics.ingest (name, tags, ts, value) VALUES ('api.latency', '{"route": "/b"}', '2024-06-01 10:00:00+00', 40)$$,
	'a writer inserts into metrics.ingest');
SELECT lives_ok($$INSERT INTO metrics.points SELECT series_id, '2024-06-01 10:02:00+00', 50 FROM metrics.series WHERE tags = '{"route": "/b"}'$$,
	'a writer inserts into metrics.points');
SELECT throws_ok('SELECT count(*) FROM metrics.rollup_queue', '42501', NULL, 'a writer cannot read the rollup queue');
SELECT throws_ok('INSERT INTO metrics.rollup_queue (series_id, bucket_start, sketch) SELECT 1, now(), metrics.sketch_agg(1)',
	'42501', NULL, 'a writer cannot forge queue rows');
SELECT throws_ok('SELECT metrics.rollup()', '42501', NULL, 'a writer cannot run the rollup');
SELECT throws_ok($$SELECT * FROM metrics.query('api.latency', '{}', now(), now(), '1 hour')$$, '42501', NULL,
	'a writer without opsdata_reader cannot query');
RESET ROLE;

-- A reader queries, from the queue before the rollup and from the rollups
-- after; it cannot record or roll up.
SET ROLE m_reader;
SELECT results_eq($$SELECT bucket, count, sum, min, max FROM metrics.query('api.latency', '{}', '2024-06-01 10:00', '2024-06-01 11:00', '1 hour')$$,
	$$VALUES ('2024-06-01 10:00:00+00'::timestamptz, 5::bigint, 150::float8, 10::float8, 50::float8)$$,
	'a reader queries points not yet rolled up');
SELECT ok((SELECT abs(p50 - 20) <= 0.2 FROM metrics.query('api.latency', '{"route": "/a"}', '2024-06-01 10:00', '2024-06-01 11:00', '1 hour')),
	'query() filters series by tags and gives quantiles within 1%');
SELECT ok((SELECT abs(metrics.quantile(metrics.sketch_agg(v), 0.5) - 2) <= 0.02 FROM (VALUES (1.0::float8), (2), (3)) t(v)),
	'a reader uses the sketch functions');
SELECT throws_ok($$SELECT metrics.record('api.latency', 1)$$, '42501', NULL, 'a reader cannot record');
SELECT throws_ok($$INSERT INTO metrics.ingest (name, value) VALUES ('api.latency', 1)$$, '42501', NULL,
	'a reader cannot insert into metrics.ingest');
SELECT throws_ok('INSERT INTO metrics.points VALUES (1, now(), 1)', '42501', NULL, 'a reader cannot insert points');
SELECT throws_ok('SELECT metrics.rollup()', '42501', NULL, 'a reader cannot run the rollup');
SELECT throws_ok('SELECT metrics.expire_rollups()', '42501', NULL, 'a reader cannot expire rollups');
SELECT is((SELECT count(*)::int FROM opsdata.health() WHERE component LIKE 'metrics %'), 3,
	'a reader sees the metrics rows of health');
RESET ROLE;

-- An administrator rolls up; the answers do not change.
SET ROLE m_admin;
SELECT is(metrics.rollup(), 5::bigint, 'an administrator runs the rollup: five points');
SELECT is((SELECT count(*)::int FROM metrics.rollup_queue), 0, 'the queue is empty after the rollup');
SELECT throws_ok('DELETE FROM metrics.rollups', '42501', NULL, 'an administrator cannot delete rollups by hand');
RESET ROLE;
SET ROLE m_reader;
SELECT results_eq($$SELECT bucket, count, sum, min, max FROM metrics.query('api.latency', '{}', '2024-06-01 10:00', '2024-06-01 11:00', '1 hour')$$,
	$$VALUES ('2024-06-01 10:00:00+00'::timestamptz, 5::bigint, 150::float8, 10::float8, 50::float8)$$,
	'the reader gets the same answer from the rollups');
SELECT is((SELECT sum(count)::int FROM metrics.rollups WHERE bucket_width = '1 minute'), 5,
	'a reader reads the rollups');
RESET ROLE;
SET ROLE m_admin;
SELECT lives_ok('SELECT metrics.expire_rollups()', 'an administrator expires rollups');
RESET ROLE;

-- A role without grants can do nothing.
SET ROLE m_nobody;
SELECT throws_ok($$SELECT metrics.record('x', 1)$$, '42501', NULL, 'a role without grants cannot record');
SELECT throws_ok($$INSERT INTO metrics.ingest (name, value) VALUES ('x', 1)$$, '42501', NULL,
	'a role without grants cannot insert into metrics.ingest');
SELECT throws_ok($$SELECT * FROM metrics.query('x', '{}', now(), now(), '1 hour')$$, '42501', NULL,
	'a role without grants cannot query');
SELECT throws_ok('SELECT metrics.sketch_agg(1)', '42501', NULL, 'a role without grants cannot use sketch_agg');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;

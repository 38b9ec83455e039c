-- COPY into metrics.ingest on a preloaded server, which reads the rows
-- itself: it stores the same points and queues the same sketches as any
-- way into metrics.ingest, every timestamp spelling gives what
-- timestamptz's input gives, COPY's formats and options apply, bad rows get
-- COPY's errors with their line, and privileges, read-only transactions,
-- the row count and the audit entry of the COPY are as for any COPY.
BEGIN;
CREATE EXTENSION pg_opsdata;
DO $$BEGIN PERFORM opsdata.pause_job(job_id) FROM opsdata.jobs WHERE builtin; END$$;
COMMIT;
SET TimeZone = 'UTC';

\getenv abs_srcdir PG_ABS_SRCDIR
\getenv abs_builddir PG_ABS_BUILDDIR
\set try_file :abs_srcdir '/sql/metrics_try.inc'
\i :try_file

CREATE VIEW check_queue AS
	SELECT count(*) AS series, sum(p.n) AS points,
		   bool_and(metrics.sketch_send(q.s) = metrics.sketch_send(p.s)) AS queue_matches_points
	  FROM (SELECT series_id, count(*) AS n, metrics.sketch_agg(value) AS s
			  FROM metrics.points GROUP BY series_id) p
	  LEFT JOIN (SELECT series_id, metrics.sketch_union(sketch) AS s
				   FROM metrics.rollup_queue GROUP BY series_id) q USING (series_id);

-- Every column, in the table's order or another, or no column list; the
-- row count is COPY's.  These are read by pg_opsdata itself (the DEBUG1
-- line says so); a COPY with a WHERE clause is left to the executor.
SET client_min_messages = debug1;
COPY metrics.ingest FROM STDIN;
copy.a	{"k": "1"}	2024-03-01 10:00:00+00	1.5
copy.a	{"k": "2"}	2024-03-01 10:00:01+00	-2
\.
SELECT :ROW_COUNT AS copied;
COPY metrics.ingest (value, ts, name, tags) FROM STDIN;
3	2024-03-01 10:01:00+00	copy.a	{"k": "1"}
0	2024-03-01 10:01:00+00	copy.a	{ "k" : "1" }
\.
SELECT :ROW_COUNT AS copied;
COPY metrics.ingest FROM STDIN WHERE true;
copy.a	{"k": "1"}	2024-03-01 10:01:30+00	8
\.
SELECT :ROW_COUNT AS copied;
RESET client_min_messages;
SELECT s.name, s.tags, p.ts, p.value FROM metrics.points p JOIN metrics.series s USING (series_id)
 ORDER BY p.ts, p.value;
SELECT * FROM check_queue;

-- CSV with a header and quotes; another delimiter and NULL string in text
-- format (FORCE_NULL and FORCE_NOT_NULL below, with the bad rows).
COPY metrics.ingest (name, tags, ts, value) FROM STDIN (FORMAT csv, HEADER true, FORCE_NOT_NULL (tags));
name,tags,ts,value
copy.csv,"{""k"": ""q""}",2024-03-01 10:02:00+00,4
copy.csv,"{""k"": ""q""}","2024-03-01 10:02:01+00","5"
\.
COPY metrics.ingest FROM STDIN (DELIMITER '|', NULL 'nil');
copy.pipe|{"k": "p"}|2024-03-01 10:03:00+00|6
\.
COPY metrics.ingest FROM STDIN (DELIMITER '|', NULL 'nil');
copy.pipe|{"k": "p"}|nil|7
\.
SELECT s.name, s.tags, p.value FROM metrics.points p JOIN metrics.series s USING (series_id)
 WHERE s.name IN ('copy.csv', 'copy.pipe') ORDER BY p.value;

-- Timestamps: whatever the spelling, DateStyle or TimeZone, the point has
-- the timestamp the text's cast gives.  The spelling is kept in the tags.
SET DateStyle = 'SQL, DMY';
SET TimeZone = 'Asia/Kolkata';
COPY metrics.ingest FROM STDIN;
ts	{"t": "2024-05-01 10:00:00+00"}	2024-05-01 10:00:00+00	1
ts	{"t": "2024-05-01T10:00:00+00"}	2024-05-01T10:00:00+00	1
ts	{"t": "2024-05-01 10:00:00Z"}	2024-05-01 10:00:00Z	1
ts	{"t": "2024-05-01 10:00:00.5+02"}	2024-05-01 10:00:00.5+02	1
ts	{"t": "2024-05-01 10:00:00.123456-08"}	2024-05-01 10:00:00.123456-08	1
ts	{"t": "2024-05-01 10:00:00.1234565+00"}	2024-05-01 10:00:00.1234565+00	1
ts	{"t": "2024-05-01 10:00:00+05:30"}	2024-05-01 10:00:00+05:30	1
ts	{"t": "2024-05-01 10:00:00-03:45"}	2024-05-01 10:00:00-03:45	1
ts	{"t": "2024-05-01 10:00:00+14"}	2024-05-01 10:00:00+14	1
ts	{"t": "2024-05-01 10:00:00+15:30"}	2024-05-01 10:00:00+15:30	1
ts	{"t": "2024-05-01 10:00:00+0530"}	2024-05-01 10:00:00+0530	1
ts	{"t": "2024-05-01 10:00:00"}	2024-05-01 10:00:00	1
ts	{"t": "2024-05-01 10:00:00 UTC"}	2024-05-01 10:00:00 UTC	1
ts	{"t": "2024-05-01 10:00:00 Europe/Paris"}	2024-05-01 10:00:00 Europe/Paris	1
ts	{"t": "2024-05-01 24:00:00+00"}	2024-05-01 24:00:00+00	1
ts	{"t": "2016-12-31 23:59:60+00"}	2016-12-31 23:59:60+00	1
ts	{"t": "2024-02-29 12:00:00+00"}	2024-02-29 12:00:00+00	1
ts	{"t": "2000-02-29 12:00:00+00"}	2000-02-29 12:00:00+00	1
ts	{"t": "0001-01-01 00:00:00+00"}	0001-01-01 00:00:00+00	1
ts	{"t": "9999-12-31 23:59:59.999999+00"}	9999-12-31 23:59:59.999999+00	1
ts	{"t": "01/05/2024 10:00:00+00"}	01/05/2024 10:00:00+00	1
ts	{"t": "May 1 2024 10:00 +00"}	May 1 2024 10:00 +00	1
ts	{"t": " 2024-05-01 10:00:00+00 "}	 2024-05-01 10:00:00+00 	1
ts	{"t": "epoch"}	epoch	1
\.
SELECT count(*) AS spellings,
	   count(*) FILTER (WHERE p.ts = (s.tags->>'t')::timestamptz) AS equal_to_cast
  FROM metrics.points p JOIN metrics.series s USING (series_id) WHERE s.name = 'ts';
-- Invalid dates are refused as timestamptz refuses them.
COPY metrics.ingest FROM STDIN;
ts	{}	2023-02-29 12:00:00+00	1
\.
COPY metrics.ingest FROM STDIN;
ts	{}	2024-04-31 12:00:00+00	1
\.
COPY metrics.ingest FROM STDIN;
ts	{}	2024-13-01 12:00:00+00	1
\.
RESET DateStyle;
SET TimeZone = 'UTC';

-- Many random instants over the whole range of four-digit years, spelled
-- with or without fraction digits, with "T" or a space, and with offsets of
-- every kind, written to a file and read back by a server-side COPY.
SELECT setseed(0.125);
CREATE TABLE stamps AS
SELECT i, t,
	   to_char(t AT TIME ZONE o.off, 'YYYY-MM-DD') || CASE WHEN i % 3 = 0 THEN 'T' ELSE ' ' END ||
	   to_char(t AT TIME ZONE o.off, 'HH24:MI:SS') ||
	   CASE WHEN i / 8 % 8 = 0 THEN '' ELSE '.' || left(to_char(t, 'US') || '5', i / 8 % 8) END ||
	   o.spelling AS spelling
  FROM (SELECT i, timestamptz '0002-01-01 00:00:00+00' +
				  random() * (timestamptz '9998-12-31 00:00:00+00' - timestamptz '0002-01-01 00:00:00+00') AS t
		  FROM generate_series(1, 20000) i) r,
	   LATERAL (SELECT * FROM (VALUES (0, interval '0', 'Z'), (1, interval '0', '+00'),
									  (2, interval '-8 hours', '-08'), (3, interval '5:30', '+05:30'),
									  (4, interval '-3:45', '-03:45'), (5, interval '14 hours', '+14'),
									  (6, interval '-14:59', '-14:59'), (7, interval '15 hours', '+15'))
					 v(k, off, spelling) WHERE v.k = r.i % 8) o;
\set stampfile :abs_builddir '/results/metrics_copy_stamps.txt'
COPY (SELECT 'stamps', '{}', spelling, i FROM stamps ORDER BY i) TO :'stampfile';
COPY metrics.ingest FROM :'stampfile';
SELECT count(*) AS stamps,
	   count(*) FILTER (WHERE p.ts = st.spelling::timestamptz) AS equal_to_cast,
	   count(*) FILTER (WHERE abs(extract(epoch FROM p.ts - st.t)) < 1) AS within_a_second
  FROM metrics.points p JOIN metrics.series s USING (series_id)
  JOIN stamps st ON st.i = p.value
 WHERE s.name = 'stamps';

-- Bad rows: COPY's errors for the fields, the metrics errors for the
-- points, with the line; nothing of the statement is written.  An empty
-- unquoted CSV field is NULL unless FORCE_NOT_NULL makes it empty text, a
-- quoted one is empty text unless FORCE_NULL makes it NULL.
CREATE TABLE before AS SELECT (SELECT count(*) FROM metrics.points) AS points,
	(SELECT count(*) FROM metrics.series) AS series, (SELECT count(*) FROM metrics.rollup_queue) AS queued;
COPY metrics.ingest FROM STDIN;
bad.rows	{}	2024-03-01 11:00:00+00	1
bad.rows	{}	2024-03-01 11:00:00+00	one
\.
COPY metrics.ingest FROM STDIN;
bad.rows	{}	2024-03-01 11:00:00+00	1
bad.rows	{}	yesterday at noon	1
\.
COPY metrics.ingest FROM STDIN;
bad.rows	{}	2024-03-01 11:00:00+00
\.
COPY metrics.ingest FROM STDIN;
bad.rows	{}	2024-03-01 11:00:00+00	1	2
\.
COPY metrics.ingest FROM STDIN;
bad.rows	{}	2024-03-01 11:00:00+00	NaN
\.
COPY metrics.ingest FROM STDIN;
bad.rows	{}	2024-03-01 11:00:00+00	-Infinity
\.
COPY metrics.ingest FROM STDIN;
bad.rows	{}	infinity	1
\.
COPY metrics.ingest FROM STDIN;
\N	{}	2024-03-01 11:00:00+00	1
\.
COPY metrics.ingest FROM STDIN;
bad.rows	\N	2024-03-01 11:00:00+00	1
\.
COPY metrics.ingest FROM STDIN;
bad.rows	{}	\N	1
\.
COPY metrics.ingest FROM STDIN;
bad.rows	{}	2024-03-01 11:00:00+00	\N
\.
COPY metrics.ingest FROM STDIN;
	{}	2024-03-01 11:00:00+00	1
\.
COPY metrics.ingest FROM STDIN;
bad.rows	{"a": 1}	2024-03-01 11:00:00+00	1
\.
COPY metrics.ingest FROM STDIN;
bad.rows	{"a": "b"	2024-03-01 11:00:00+00	1
\.
COPY metrics.ingest (name, tags, ts, value) FROM STDIN (FORMAT csv, FORCE_NOT_NULL (tags));
bad.rows,,2024-03-01 11:00:00+00,1
\.
COPY metrics.ingest (name, tags, ts, value) FROM STDIN (FORMAT csv, FORCE_NULL (value));
bad.rows,{},2024-03-01 11:00:00+00,""
\.
SELECT (SELECT count(*) FROM metrics.points) = points AS same_points,
	   (SELECT count(*) FROM metrics.series) = series AS same_series,
	   (SELECT count(*) FROM metrics.rollup_queue) = queued AS same_queue
  FROM before;

-- Privileges: a reader may not COPY into metrics.ingest, a writer may, but
-- not from a server file; read-only transactions are refused.
CREATE ROLE metrics_copy_writer IN ROLE opsdata_writer;
CREATE ROLE metrics_copy_reader IN ROLE opsdata_reader;
SET ROLE metrics_copy_reader;
COPY metrics.ingest FROM STDIN;
copy.role	{}	2024-03-01 12:00:00+00	1
\.
SET ROLE metrics_copy_writer;
COPY metrics.ingest FROM STDIN;
copy.role	{}	2024-03-01 12:00:00+00	1
\.
SELECT try(format('COPY metrics.ingest FROM %L', :'stampfile'));
RESET ROLE;
BEGIN READ ONLY;
COPY metrics.ingest FROM STDIN;
copy.role	{}	2024-03-01 12:00:00+00	2
\.
ROLLBACK;
SELECT s.name, p.value FROM metrics.points p JOIN metrics.series s USING (series_id)
 WHERE s.name = 'copy.role';

-- The audit sees the COPY with its row count.
SET pg_opsdata.audit = 'write';
COPY metrics.ingest FROM STDIN;
copy.audited	{}	2024-03-01 12:00:00+00	1
copy.audited	{}	2024-03-01 12:00:01+00	2
\.
RESET pg_opsdata.audit;
SELECT class, command, rows, objects, outcome FROM audit.entries WHERE command = 'COPY';

SELECT * FROM check_queue;

DROP ROLE metrics_copy_writer;
DROP ROLE metrics_copy_reader;
DROP FUNCTION try(text);
DROP VIEW check_queue;
DROP TABLE before, stamps;
DROP EXTENSION pg_opsdata;

-- Bounds are computed in UTC whatever the session's TimeZone, across
-- daylight-saving changes: with the session in Europe/Berlin or
-- America/New_York, daily partitions made across the spring and autumn
-- changes of 2026 all start at midnight UTC and last exactly 24 hours (and
-- 6-hour partitions start at 00, 06, 12 or 18 UTC),
-- and rows written at local times around the change land in the partition
-- of their UTC day, whether they were routed there or moved out of the
-- default partition by maintenance.
--
-- Maintenance runs in a worker of its own, in transactions of its own, and
-- sees committed data only: this scenario runs in autocommit mode and
-- removes what it made at the end.
SET client_min_messages = warning;
CREATE SCHEMA t24;
CREATE TABLE t24.berlin (id int NOT NULL, ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
CREATE TABLE t24.berlin_default PARTITION OF t24.berlin DEFAULT;
CREATE TABLE t24.newyork (id int NOT NULL, ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
CREATE TABLE t24.quarters (ts timestamptz NOT NULL) PARTITION BY RANGE (ts);

-- Berlin: clocks went from 02:00 to 03:00 on 2026-03-29 (UTC+1 to UTC+2)
-- and from 03:00 back to 02:00 on 2026-10-25.  Rows are written before the
-- set is managed, so they sit in the default partition.
SET TimeZone = 'Europe/Berlin';
INSERT INTO t24.berlin VALUES
	(1, '2026-03-29 00:30'),	-- 2026-03-28 23:30 UTC
	(2, '2026-03-29 01:30'),	-- 2026-03-29 00:30 UTC
	(3, '2026-03-29 03:30'),	-- 2026-03-29 01:30 UTC
	(4, '2026-10-25 01:30'),	-- 2026-10-24 23:30 UTC
	(5, '2026-10-25 02:30+02'),	-- 2026-10-25 00:30 UTC, first pass of 02:30
	(6, '2026-10-25 02:30+01');	-- 2026-10-25 01:30 UTC, second pass

SELECT plan(14);

SELECT lives_ok($$SELECT opsdata.manage_partitions('t24.berlin', 'ts', '1 day', premake => 1, start_from => '2026-03-25')$$,
	'a daily set is managed from 2026-03-25, with the session in Europe/Berlin');
SELECT is_empty($$SELECT 1 FROM opsdata.show_partitions('t24.berlin') WHERE NOT is_default
				   AND (upper_bound::timestamptz - lower_bound::timestamptz <> interval '24 hours'
						OR (lower_bound::timestamptz AT TIME ZONE 'UTC')::time <> '00:00')$$,
	'every partition lasts 24 hours from midnight UTC, across both changes');
SELECT is((SELECT lower_bound FROM opsdata.show_partitions('t24.berlin') WHERE partition::text = 't24.berlin_p20260329'),
	'2026-03-29 00:00:00+00', 'the spring-change day starts at midnight UTC (shown in UTC)');
SELECT is((SELECT upper_bound::timestamptz - lower_bound::timestamptz FROM opsdata.show_partitions('t24.berlin')
			WHERE partition::text = 't24.berlin_p20261025'),
	interval '24 hours', 'the autumn-change day (25 hours long in Berlin) is 24 hours long');
SELECT results_eq($$SELECT id, tableoid::regclass::text FROM t24.berlin ORDER BY id$$,
	$$VALUES (1, 't24.berlin_p20260328'), (2, 't24.berlin_p20260329'), (3, 't24.berlin_p20260329'),
			 (4, 't24.berlin_p20261024'), (5, 't24.berlin_p20261025'), (6, 't24.berlin_p20261025')$$,
	'rows moved out of the default partition sit in the partition of their UTC day');

-- New York: clocks went from 02:00 to 03:00 on 2026-03-08 and from 02:00
-- back to 01:00 on 2026-11-01.
SET TimeZone = 'America/New_York';
SELECT lives_ok($$SELECT opsdata.manage_partitions('t24.newyork', 'ts', '1 day', premake => 1, start_from => '2026-03-06')$$,
	'a daily set is managed from 2026-03-06, with the session in America/New_York');
SELECT is_empty($$SELECT 1 FROM opsdata.show_partitions('t24.newyork')
				   WHERE upper_bound::timestamptz - lower_bound::timestamptz <> interval '24 hours'
					  OR (lower_bound::timestamptz AT TIME ZONE 'UTC')::time <> '00:00'$$,
	'every partition lasts 24 hours from midnight UTC');
INSERT INTO t24.newyork VALUES (1, '2026-03-07 23:30'), (2, '2026-03-08 03:30'), (3, '2026-11-01 01:30 EDT'), (4, '2026-11-01 01:30 EST');
SELECT results_eq($$SELECT id, tableoid::regclass::text FROM t24.newyork ORDER BY id$$,
	$$VALUES (1, 't24.newyork_p20260308'), (2, 't24.newyork_p20260308'), (3, 't24.newyork_p20261101'), (4, 't24.newyork_p20261101')$$,
	'rows written at local times are routed to the partition of their UTC day');
SELECT is((SELECT count(*)::int FROM opsdata.show_partitions('t24.newyork')),
	(SELECT (date_trunc('day', now() AT TIME ZONE 'UTC')::date - date '2026-03-06') + 2),
	'one partition per UTC day from 2026-03-06 to tomorrow, no day twice or missing');
SELECT results_eq($$SELECT status, message FROM opsdata.run_maintenance('t24.newyork')$$,
	$$VALUES ('ok', 'nothing to do')$$, 'maintenance in another time zone finds nothing to do');

-- 6-hour partitions, made in Berlin time: 00, 06, 12, 18 UTC.
SET TimeZone = 'Europe/Berlin';
SELECT lives_ok($$SELECT opsdata.manage_partitions('t24.quarters', 'ts', '6 hours', premake => 1,
												   start_from => (now() - interval '1 day')::text)$$,
	'a 6-hour set is managed from a day ago');
SELECT is_empty($$SELECT 1 FROM opsdata.show_partitions('t24.quarters')
				   WHERE upper_bound::timestamptz - lower_bound::timestamptz <> interval '6 hours'
					  OR extract(hour FROM lower_bound::timestamptz AT TIME ZONE 'UTC')::int % 6 <> 0
					  OR (lower_bound::timestamptz AT TIME ZONE 'UTC')::time NOT IN ('00:00', '06:00', '12:00', '18:00')$$,
	'every partition lasts 6 hours and starts at 00, 06, 12 or 18 UTC');
SELECT is_empty($$SELECT 1 FROM opsdata.show_partitions('t24.quarters')
				   WHERE partition::text <> 't24.quarters_p' || to_char(lower_bound::timestamptz AT TIME ZONE 'UTC', 'YYYYMMDD_HH24MI')$$,
	'partitions shorter than a day are named after their UTC start, YYYYMMDD_HH24MI');
SELECT ok((SELECT max(upper_bound::timestamptz) FROM opsdata.show_partitions('t24.quarters')) > now() + interval '6 hours',
	'they reach one partition past the current one');

SELECT * FROM finish();

RESET TimeZone;
DROP SCHEMA t24 CASCADE;

-- A timestamptz set with a default partition: rows that landed in the
-- default partition are moved into proper partitions by maintenance, in one
-- transaction per partition, without firing the table's triggers and
-- without losing or duplicating a row; rows whose partition is older than
-- the retention are moved, then dropped with it; rows no partition may hold
-- stay, and health shows how many rows the default partition holds.
--
-- Maintenance runs in a worker of its own, in transactions of its own, and
-- sees committed data only: this scenario runs in autocommit mode and
-- removes what it made at the end.
SET client_min_messages = warning;
CREATE SCHEMA t21;
CREATE TABLE t21.points (id integer NOT NULL, ts timestamptz, v double precision NOT NULL) PARTITION BY RANGE (ts);
CREATE TABLE t21.points_default PARTITION OF t21.points DEFAULT;
CREATE TABLE t21.deleted (id integer);
CREATE FUNCTION t21.scale() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	NEW.v := NEW.v * 10;
	RETURN NEW;
END
$$;
CREATE FUNCTION t21.note_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO t21.deleted VALUES (OLD.id);
	RETURN OLD;
END
$$;
CREATE TRIGGER scale BEFORE INSERT ON t21.points FOR EACH ROW EXECUTE FUNCTION t21.scale();
CREATE TRIGGER note_delete AFTER DELETE ON t21.points FOR EACH ROW EXECUTE FUNCTION t21.note_delete();
INSERT INTO t21.points VALUES
	(1, now(), 1), (2, now(), 1), (3, now(), 1),
	(4, now() - interval '5 days', 1), (5, now() - interval '5 days', 1),
	(6, now() - interval '50 days', 1), (7, now() - interval '50 days', 1),
	(8, now() - interval '50 days', 1), (9, now() - interval '50 days', 1),
	(10, now() + interval '100 days', 1),
	(11, NULL, 1);

SELECT plan(17);

SELECT is((SELECT count(*)::int FROM ONLY t21.points_default), 11, 'every row starts in the default partition');
SELECT is((SELECT manage_partitions FROM opsdata.manage_partitions('t21.points', 'ts', '1 day', premake => 2,
																	 retention => '30 days')),
	3, 'manage_partitions makes today''s partition and two ahead');
SELECT is((SELECT count(*)::int FROM ONLY t21.points_default), 8, 'today''s rows moved into today''s partition');
SELECT is((SELECT status || ': ' || detail FROM opsdata.health() WHERE component = 'partition t21.points'),
	'ok: The default partition t21.points_default holds 8 rows. The first maintenance run moves them into partitions.',
	'health counts the rows of the default partition before the first maintenance run');

CREATE TEMP TABLE run AS SELECT * FROM opsdata.run_maintenance('t21.points');
SELECT results_eq('SELECT status, created, moved, dropped, message FROM run',
	$$VALUES ('ok', 3, 7::bigint, 1, 'made 3 partitions, moved 7 rows out of the default partition, dropped 1 partition; 1 row with a NULL "ts" stays in the default partition')$$,
	'maintenance moves the rows of three more days, drops the expired one, and says what stays');
SELECT results_eq('SELECT id FROM ONLY t21.points_default', ARRAY[11],
	'only the row with a NULL key stays in the default partition');
SELECT results_eq('SELECT id, count(*)::int FROM t21.points GROUP BY id ORDER BY id',
	$$VALUES (1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (10, 1), (11, 1)$$,
	'no row is lost or duplicated; the expired ones are gone with their partition');
SELECT is((SELECT sum(v)::int FROM t21.points), 70, 'moved rows are unchanged: the BEFORE INSERT trigger did not fire');
SELECT is((SELECT count(*)::int FROM t21.deleted), 0, 'the AFTER DELETE trigger did not fire either');
SELECT is((SELECT tableoid::regclass::text FROM t21.points WHERE id = 4),
	't21.points_p' || to_char((now() - interval '5 days') AT TIME ZONE 'UTC', 'YYYYMMDD'),
	'a row five days old sits in its day''s partition');
SELECT is((SELECT tableoid::regclass::text FROM t21.points WHERE id = 10),
	't21.points_p' || to_char((now() + interval '100 days') AT TIME ZONE 'UTC', 'YYYYMMDD'),
	'a row far ahead gets its own partition');
SELECT is((SELECT count(*)::int FROM opsdata.partition_log
			WHERE parent = 't21.points' AND action = 'move' AND detail LIKE '%4 rows moved from the default partition'),
	1, 'the log records the move of the four rows of fifty days ago');
SELECT is((SELECT count(*)::int FROM opsdata.partition_log
			WHERE parent = 't21.points' AND action = 'drop'
			  AND partition = 't21.points_p' || to_char((now() - interval '50 days') AT TIME ZONE 'UTC', 'YYYYMMDD')),
	1, 'then their partition is dropped by retention');
SELECT is((SELECT status || ': ' || detail FROM opsdata.health() WHERE component = 'partition t21.points'),
	'warning: The default partition t21.points_default holds 1 row. Maintenance moves them into partitions; rows that stay have keys no partition may hold.',
	'health warns about the row that stays');

-- Rows arriving in the default partition later are moved by the next run.
INSERT INTO t21.points VALUES (12, now() - interval '10 days', 1);
SELECT results_eq($$SELECT status, created, moved FROM opsdata.run_maintenance('t21.points')$$,
	$$VALUES ('ok', 1, 1::bigint)$$, 'a late row is moved into a new partition by the next run');
SELECT is((SELECT count(*)::int FROM ONLY t21.points_default WHERE ts IS NOT NULL), 0,
	'the default partition holds no row with a key');
SELECT is((SELECT sum(v)::int FROM t21.points), 80, 'the late row went through the trigger once, on its insert');

SELECT * FROM finish();

DROP SCHEMA t21 CASCADE;

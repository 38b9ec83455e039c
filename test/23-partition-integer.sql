-- An id set: partitions of a fixed number of ids, at least premake of them
-- ahead of the one holding the highest id whether or not rows arrive;
-- retention removes partitions wholly below the highest id minus the
-- retention, never the one holding ids above that; rows of the default
-- partition are moved; an integer key never gets a bound its type cannot
-- hold.
--
-- Maintenance runs in a worker of its own, in transactions of its own, and
-- sees committed data only: this scenario runs in autocommit mode and
-- removes what it made at the end.
SET client_min_messages = warning;
CREATE SCHEMA t23;
CREATE TABLE t23.orders (id bigint NOT NULL, note text) PARTITION BY RANGE (id);
CREATE TABLE t23.orders_default PARTITION OF t23.orders DEFAULT;
CREATE INDEX ON t23.orders (note);
INSERT INTO t23.orders SELECT i, 'n' || i FROM generate_series(1, 2500) i;
CREATE TABLE t23.tiny (id smallint NOT NULL) PARTITION BY RANGE (id);

SELECT plan(13);

SELECT is((SELECT manage_partitions FROM opsdata.manage_partitions('t23.orders', 'id', '1000', premake => 2, retention => '1500')),
	3, 'the partition of the highest id (2500) and two ahead');
SELECT results_eq($$SELECT lower_bound, upper_bound FROM opsdata.show_partitions('t23.orders') WHERE NOT is_default$$,
	$$VALUES ('2000', '3000'), ('3000', '4000'), ('4000', '5000')$$,
	'bounds are multiples of 1000');
SELECT is((SELECT count(*)::int FROM ONLY t23.orders_default), 1999,
	'ids 2000 to 2500 moved into their partition, the others wait');

CREATE TEMP TABLE run AS SELECT * FROM opsdata.run_maintenance('t23.orders');
SELECT results_eq('SELECT status, created, moved, dropped FROM run',
	$$VALUES ('ok', 2, 1999::bigint, 1)$$,
	'maintenance moves ids 1 to 1999 into two partitions and drops the one wholly below 2500 - 1500');
SELECT results_eq($$SELECT lower_bound FROM opsdata.show_partitions('t23.orders') WHERE NOT is_default$$,
	ARRAY['1000', '2000', '3000', '4000'], 'the partition holding ids above the cut-off (1000) stays');
SELECT is((SELECT count(*)::int FROM t23.orders), 1501, 'ids 1000 to 2500 remain');
SELECT is((SELECT count(*)::int FROM pg_indexes WHERE schemaname = 't23' AND tablename = 'orders_p1000'), 1,
	'a partition made from the default partition has the parent''s index');

-- The highest id moves on: premake follows it.
INSERT INTO t23.orders SELECT i, 'n' || i FROM generate_series(2501, 4200) i;
SELECT results_eq($$SELECT status, created, dropped FROM opsdata.run_maintenance('t23.orders')$$,
	$$VALUES ('ok', 2, 1)$$,
	'with the highest id at 4200, partitions up to 7000 exist and the one wholly below 2700 is gone');
SELECT results_eq($$SELECT lower_bound FROM opsdata.show_partitions('t23.orders') WHERE NOT is_default$$,
	ARRAY['2000', '3000', '4000', '5000', '6000'], 'the set now spans 2000 to 7000');
SELECT results_eq($$SELECT status, message FROM opsdata.run_maintenance('t23.orders')$$,
	$$VALUES ('ok', 'nothing to do')$$, 'a second run has nothing to do');

-- A smallint key: the last partition ends at MAXVALUE rather than past 32767.
SELECT is((SELECT manage_partitions FROM opsdata.manage_partitions('t23.tiny', 'id', '10000', premake => 5,
																	 start_from => '-15000')),
	6, 'an empty table: the partition of start_from and five ahead');
SELECT results_eq($$SELECT lower_bound, upper_bound FROM opsdata.show_partitions('t23.tiny')$$,
	$$VALUES ('-20000', '-10000'), ('-10000', '0'), ('0', '10000'), ('10000', '20000'), ('20000', '30000'), ('30000', 'MAXVALUE')$$,
	'negative bounds floor to multiples, and the last partition is open-ended');
SELECT ok(to_regclass('t23.tiny_pm20000') IS NOT NULL, 'a negative start is named with m');

SELECT * FROM finish();

DROP SCHEMA t23 CASCADE;

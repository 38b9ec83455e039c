-- A timestamptz set without a default partition: partitions are made from
-- start_from to premake ahead of now, in UTC; each new partition has the
-- parent's indexes, constraints, row triggers, owner and grants;
-- maintenance premakes missing partitions whether or not rows arrive,
-- drops partitions wholly older than the retention (detaching them
-- concurrently first) and never one that holds newer rows, or detaches
-- them into the archive schema; the log records every step.
--
-- Maintenance runs in a worker of its own, in transactions of its own, and
-- sees committed data only: this scenario runs in autocommit mode, not in
-- one rolled-back transaction, and removes what it made at the end.
SET client_min_messages = warning;
CREATE ROLE t20_owner;
CREATE ROLE t20_reader;
CREATE SCHEMA t20 AUTHORIZATION t20_owner;
CREATE SCHEMA t20_archive AUTHORIZATION t20_owner;
SET ROLE t20_owner;
CREATE TABLE t20.events (
	id bigint GENERATED ALWAYS AS IDENTITY,
	ts timestamptz NOT NULL,
	kind text NOT NULL CHECK (kind <> ''),
	payload jsonb,
	PRIMARY KEY (id, ts)
) PARTITION BY RANGE (ts);
CREATE INDEX events_kind_ts_idx ON t20.events (kind, ts);
CREATE FUNCTION t20.stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	NEW.payload := coalesce(NEW.payload, '{}') || '{"stamped": true}';
	RETURN NEW;
END
$$;
CREATE TRIGGER stamp BEFORE INSERT ON t20.events FOR EACH ROW EXECUTE FUNCTION t20.stamp();
GRANT SELECT ON t20.events TO t20_reader;
GRANT INSERT (ts, kind) ON t20.events TO t20_reader;
RESET ROLE;
DO $$
BEGIN
	PERFORM opsdata.manage_partitions('t20.events', 'ts', '1 day', premake => 3, retention => '30 days',
									  start_from => (now() - interval '40 days')::text);
END
$$;
INSERT INTO t20.events (ts, kind)
	 SELECT now() - i * interval '1 day', 'seen' FROM generate_series(0, 40) i;

SELECT plan(24);

CREATE TEMP TABLE parts AS SELECT * FROM opsdata.show_partitions('t20.events');

SELECT is((SELECT count(*)::int FROM parts),
	(SELECT (pg_catalog.date_part('day', date_trunc('day', now() AT TIME ZONE 'UTC')
			 - date_trunc('day', (now() - interval '40 days') AT TIME ZONE 'UTC')) + 4)::int),
	'manage_partitions made daily partitions from start_from to 3 days ahead');
SELECT is_empty($$SELECT 1 FROM parts WHERE upper_bound::timestamptz - lower_bound::timestamptz <> interval '24 hours'
					OR lower_bound::timestamptz <> date_trunc('day', lower_bound::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'$$,
	'every partition spans 24 hours from midnight UTC');
SELECT ok(EXISTS (SELECT FROM parts WHERE lower_bound::timestamptz
					= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + interval '3 days'),
	'the partition three days ahead exists');
SELECT ok(EXISTS (SELECT FROM parts WHERE partition::text
					= 't20.events_p' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD')),
	'partitions are named after their UTC start');

-- What a new partition inherits.
SELECT is((SELECT relowner::regrole::text FROM pg_class WHERE oid = (SELECT max(partition::text)::regclass FROM parts)),
	't20_owner', 'a new partition belongs to the parent''s owner');
SELECT table_privs_are('t20', (SELECT relname FROM pg_class WHERE oid = (SELECT max(partition::text)::regclass FROM parts)),
	't20_reader', ARRAY['SELECT'], 'a new partition has the parent''s table grants');
SELECT column_privs_are('t20', (SELECT relname FROM pg_class WHERE oid = (SELECT max(partition::text)::regclass FROM parts)),
	'kind', 't20_reader', ARRAY['INSERT', 'SELECT'], 'a new partition has the parent''s column grants (INSERT on kind, with SELECT from the table grant)');
SELECT is((SELECT count(*)::int FROM pg_index WHERE indrelid = (SELECT max(partition::text)::regclass FROM parts)),
	2, 'a new partition has the parent''s indexes (primary key and events_kind_ts_idx)');
SELECT is((SELECT count(*)::int FROM pg_constraint
			WHERE conrelid = (SELECT max(partition::text)::regclass FROM parts) AND contype IN ('c', 'p')),
	2, 'a new partition has the parent''s CHECK constraint and primary key, and no extra constraint');
SELECT is((SELECT count(*)::int FROM pg_trigger
			WHERE tgrelid = (SELECT max(partition::text)::regclass FROM parts) AND tgname = 'stamp'),
	1, 'a new partition has the parent''s row trigger');

-- Maintenance: premake whether or not rows arrive.  The partition two days
-- ahead is gone; maintenance makes it again.
CREATE TEMP TABLE gone AS
	SELECT partition::text AS name FROM parts
	 WHERE lower_bound::timestamptz = date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + interval '2 days';
SELECT lives_ok(format('DROP TABLE %s', (SELECT name FROM gone)), 'a future partition is dropped by hand');
CREATE TEMP TABLE expired AS
	SELECT partition::text AS name FROM parts WHERE upper_bound::timestamptz <= now() - interval '30 days';

CREATE TEMP TABLE run1 AS SELECT * FROM opsdata.run_maintenance('t20.events');
SELECT results_eq('SELECT parent_table::text, status, created, dropped FROM run1',
	format($$VALUES ('t20.events', 'ok', 1, %s)$$, (SELECT count(*) FROM expired)),
	'maintenance made the missing partition and dropped every expired one');
SELECT ok(to_regclass((SELECT name FROM gone)) IS NOT NULL, 'the missing future partition is back');
SELECT is((SELECT count(*)::int FROM opsdata.show_partitions('t20.events')
			WHERE lower_bound::timestamptz >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'),
	4, 'the current partition and three ahead exist');

-- Retention.
SELECT is_empty('SELECT 1 FROM expired WHERE to_regclass(name) IS NOT NULL',
	'partitions wholly older than 30 days are dropped');
SELECT is((SELECT min(lower_bound::timestamptz) FROM opsdata.show_partitions('t20.events')),
	(SELECT date_trunc('day', (now() - interval '30 days') AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'),
	'the partition holding the cut-off, with rows newer than it, stays');
SELECT is((SELECT array_agg(DISTINCT action ORDER BY action) FROM opsdata.partition_log
			WHERE parent = 't20.events' AND partition IN (SELECT name FROM expired)),
	ARRAY['create', 'detach', 'drop'], 'the log shows expired partitions made, detached concurrently, then dropped');
SELECT is((SELECT count(*)::int FROM opsdata.partition_log WHERE parent = 't20.events' AND action IN ('skip', 'fail')),
	0, 'no step was skipped or failed');
SELECT is((SELECT last_status FROM opsdata.partitions WHERE parent = 't20.events'::regclass), 'ok',
	'the set''s status is ok');

-- A second run has nothing to do.
SELECT results_eq($$SELECT status, created, moved, detached, dropped, message FROM opsdata.run_maintenance('t20.events')$$,
	$$VALUES ('ok', 0, 0::bigint, 0, 0, 'nothing to do')$$,
	'a second run finds nothing to do');

-- Retention by detaching into the archive schema.
SELECT lives_ok($$SELECT opsdata.manage_partitions('t20.events', 'ts', '1 day', premake => 3, retention => '20 days',
												   retention_mode => 'detach', archive_schema => 't20_archive')$$,
	'the retention becomes 20 days, detaching into t20_archive');
CREATE TEMP TABLE run2 AS SELECT * FROM opsdata.run_maintenance('t20.events');
SELECT is((SELECT detached FROM run2), 10, 'ten more days are detached');
SELECT is((SELECT count(*)::int FROM pg_tables WHERE schemaname = 't20_archive'), 10,
	'the detached partitions are tables of the archive schema');
SELECT is((SELECT count(*)::int FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
			JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 't20_archive'),
	0, 'archived tables are no longer partitions');

SELECT * FROM finish();

DROP SCHEMA t20 CASCADE;
DROP SCHEMA t20_archive CASCADE;
DROP ROLE t20_owner;
DROP ROLE t20_reader;

-- Partition maintenance gives a table's owner nothing: every step runs
-- with the owner's rights.  DETACH PARTITION ... CONCURRENTLY cannot (it
-- commits in the middle) and runs as the extension owner, so it is not
-- used on a table that a foreign key references, whose check would run
-- casts and operators the owner wrote: such a table is detached with the
-- plain form, as its owner.  Here the owner's cast counts who calls it,
-- in sequences, which no rollback takes back.
BEGIN;
CREATE EXTENSION pg_opsdata;
SELECT count(opsdata.pause_job(job_id)) > 0 AS paused FROM opsdata.jobs WHERE builtin;
COMMIT;
CREATE ROLE partition_owner;
GRANT opsdata_admin TO partition_owner;
GRANT CREATE ON SCHEMA public TO partition_owner;
SET ROLE partition_owner;
CREATE SEQUENCE calls_as_superuser;
CREATE SEQUENCE calls_as_owner;
CREATE TYPE ref_key AS (v bigint);
CREATE FUNCTION ref_key_to_bigint(ref_key) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
	IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) THEN
		PERFORM pg_catalog.nextval('public.calls_as_superuser');
	ELSE
		PERFORM pg_catalog.nextval('public.calls_as_owner');
	END IF;
	RETURN ($1).v;
END
$$;
CREATE CAST (ref_key AS bigint) WITH FUNCTION ref_key_to_bigint(ref_key) AS IMPLICIT;
CREATE TABLE hist (id bigint NOT NULL, at timestamptz NOT NULL, PRIMARY KEY (id, at))
	PARTITION BY RANGE (at);
SELECT count(*) > 0 AS managed
  FROM opsdata.manage_partitions('public.hist', 'at', '1 day', premake => 2, retention => '3 days',
								 start_from => (now() - interval '10 days')::text);
INSERT INTO hist SELECT i, now() - i * interval '1 day' FROM generate_series(0, 9) i;
-- The key references a row of today and one of eight days ago, which
-- retention would remove: checking it calls the cast.
CREATE TABLE refs (k ref_key, at timestamptz, FOREIGN KEY (k, at) REFERENCES hist (id, at));
INSERT INTO refs SELECT ROW(id)::ref_key, at FROM hist WHERE id IN (0, 8);
SELECT pg_catalog.setval('calls_as_owner', 1, false);
RESET ROLE;

-- Retention removes the older partitions, then stops at the referenced
-- row; the cast ran with the owner's rights only.
SELECT status, dropped >= 2 AS dropped_older, message ~ 'violates foreign key constraint' AS stopped_by_the_key
  FROM opsdata.run_maintenance() WHERE parent_table = 'hist'::regclass;
SELECT (SELECT last_value FROM calls_as_superuser WHERE is_called) AS calls_as_superuser,
	   (SELECT last_value > 0 FROM calls_as_owner WHERE is_called) AS called_as_owner;
SELECT count(*) AS referenced_rows_kept FROM hist WHERE id IN (0, 8);

DROP TABLE refs, hist;
DROP SEQUENCE calls_as_superuser, calls_as_owner;
DROP CAST (ref_key AS bigint);
DROP FUNCTION ref_key_to_bigint(ref_key);
DROP TYPE ref_key;
DROP EXTENSION pg_opsdata;
REVOKE CREATE ON SCHEMA public FROM partition_owner;
DROP ROLE partition_owner;

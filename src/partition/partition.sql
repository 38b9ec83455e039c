-- Partition maintenance: the managed partition sets, their settings, the
-- maintenance log, the built-in job and the SQL API.
--
-- A set is a range-partitioned table keyed by timestamptz, date or an
-- integer column.  Maintenance makes partitions ahead of now (or of the
-- highest id), empties the default partition into proper partitions, and
-- drops or detaches partitions older than the retention.  A pass runs in a
-- job worker (src/partition/pass.c, the job entry of the built-in job
-- below), one short transaction per step, each under a short lock_timeout;
-- the plan of each set is computed by opsdata._partition_plan()
-- (partition_plan.sql) and the DDL runs with the privileges of the table's
-- owner.  Every pass writes one 'run' row per set to opsdata.partition_log:
-- what opsdata.run_maintenance() returns.

CREATE TABLE opsdata.partitions (
	parent				regclass PRIMARY KEY,
	control_column		name NOT NULL,
	control_type		regtype NOT NULL
						CHECK (control_type IN ('timestamptz'::regtype, 'date'::regtype,
												'smallint'::regtype, 'integer'::regtype, 'bigint'::regtype)),
	part_interval		text NOT NULL,
	premake				integer NOT NULL DEFAULT 4 CHECK (premake BETWEEN 1 AND 1000),
	retention			text,
	retention_setting	text,
	retention_mode		text NOT NULL DEFAULT 'drop' CHECK (retention_mode IN ('drop', 'detach')),
	archive_schema		name,
	default_partition	boolean NOT NULL DEFAULT false,
	builtin				boolean NOT NULL DEFAULT false,
	created_at			timestamptz NOT NULL DEFAULT pg_catalog.now(),
	last_run_at			timestamptz,
	last_status			text CHECK (last_status IN ('ok', 'skipped', 'failed')),
	last_message		text,
	CHECK (retention_mode = 'drop' OR archive_schema IS NOT NULL),
	CHECK (retention IS NULL OR retention_setting IS NULL)
);

COMMENT ON TABLE opsdata.partitions IS 'Partition sets kept by partition maintenance: premade ahead, old partitions dropped or detached';
COMMENT ON COLUMN opsdata.partitions.parent IS 'The partitioned table';
COMMENT ON COLUMN opsdata.partitions.control_column IS 'Partition key column';
COMMENT ON COLUMN opsdata.partitions.control_type IS 'Type of the partition key: timestamptz, date or an integer type';
COMMENT ON COLUMN opsdata.partitions.part_interval IS 'Width of one partition: an interval for time sets, a number for id sets';
COMMENT ON COLUMN opsdata.partitions.premake IS 'Partitions kept ready ahead of the current one (time) or of the one holding the highest id';
COMMENT ON COLUMN opsdata.partitions.retention IS 'Age (interval) or id distance beyond which partitions are removed; NULL keeps everything';
COMMENT ON COLUMN opsdata.partitions.retention_setting IS 'For built-in sets: the opsdata setting that holds the retention';
COMMENT ON COLUMN opsdata.partitions.retention_mode IS 'drop: drop old partitions; detach: detach them into archive_schema';
COMMENT ON COLUMN opsdata.partitions.archive_schema IS 'Schema detached partitions are moved to';
COMMENT ON COLUMN opsdata.partitions.default_partition IS 'Whether the set had a default partition when maintenance last ran';
COMMENT ON COLUMN opsdata.partitions.builtin IS 'A pg_opsdata table managed out of the box';
COMMENT ON COLUMN opsdata.partitions.created_at IS 'When the set was put under management';
COMMENT ON COLUMN opsdata.partitions.last_run_at IS 'When maintenance last ran on the set';
COMMENT ON COLUMN opsdata.partitions.last_status IS 'ok, skipped (a lock was not granted in time) or failed';
COMMENT ON COLUMN opsdata.partitions.last_message IS 'What the last maintenance run did, or why it skipped or failed';

SELECT pg_catalog.pg_extension_config_dump('opsdata.partitions', 'WHERE NOT builtin');

CREATE TABLE opsdata.partition_log (
	logged_at	timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	parent		text NOT NULL,
	action		text NOT NULL
				CHECK (action IN ('create', 'move', 'finalize', 'detach', 'archive', 'drop', 'skip', 'fail', 'run')),
	partition	text,
	detail		text,
	pass_started timestamptz,
	status		text CHECK (status IN ('ok', 'skipped', 'failed')),
	created		integer,
	moved		bigint,
	detached	integer,
	dropped		integer,
	CHECK ((action = 'run') = (status IS NOT NULL))
);

CREATE INDEX partition_log_logged_at_idx ON opsdata.partition_log (logged_at);

-- No primary key: its rows are logged whole when deleted, so that a
-- publication that carries the table (FOR ALL TABLES) never makes the trim
-- of the log fail.
ALTER TABLE opsdata.partition_log REPLICA IDENTITY FULL;

COMMENT ON TABLE opsdata.partition_log IS 'What partition maintenance did: every partition made, filled, detached or dropped, every skipped or failed step, and what each pass did to each set';
COMMENT ON COLUMN opsdata.partition_log.logged_at IS 'When the step committed';
COMMENT ON COLUMN opsdata.partition_log.parent IS 'The partitioned table, by name';
COMMENT ON COLUMN opsdata.partition_log.action IS 'create, move (a partition made from rows of the default partition), finalize (an interrupted detach completed), detach, archive (moved into the archive schema), drop, skip, fail, or run (what a pass did to the set, as opsdata.run_maintenance() returns it)';
COMMENT ON COLUMN opsdata.partition_log.partition IS 'The partition concerned, by name';
COMMENT ON COLUMN opsdata.partition_log.detail IS 'Bounds, rows moved, the reason for a skip or failure, or for a run row what the pass did';
COMMENT ON COLUMN opsdata.partition_log.pass_started IS 'When the maintenance pass that wrote the row began: the rows of one pass share it; NULL for rows of manage_partitions()';
COMMENT ON COLUMN opsdata.partition_log.status IS 'Run rows: ok, skipped (a lock was not granted in time) or failed';
COMMENT ON COLUMN opsdata.partition_log.created IS 'Run rows: partitions made';
COMMENT ON COLUMN opsdata.partition_log.moved IS 'Run rows: rows moved out of the default partition';
COMMENT ON COLUMN opsdata.partition_log.detached IS 'Run rows: partitions detached into the archive schema';
COMMENT ON COLUMN opsdata.partition_log.dropped IS 'Run rows: partitions dropped';

SELECT pg_catalog.pg_extension_config_dump('opsdata.partition_log', '');

INSERT INTO opsdata.settings (key, type, default_value, valid_when, description) VALUES
	('partition.lock_timeout', 'interval', '500 milliseconds',
	 'value >= interval ''1 millisecond'' AND value <= interval ''1 minute''',
	 'Longest a maintenance step waits for a lock; an application query never waits longer than this behind maintenance'),
	('partition.detach_timeout', 'interval', '10 seconds',
	 'value >= interval ''1 millisecond'' AND value <= interval ''1 hour''',
	 'Longest DETACH PARTITION CONCURRENTLY (and FINALIZE) waits for transactions using the table; these block no query while they wait'),
	('partition.lock_retries', 'integer', '5', 'value BETWEEN 0 AND 100',
	 'Tries after the first of a step whose lock was not granted, before the step is skipped until the next run'),
	('partition.retry_delay', 'interval', '1 second',
	 'value >= interval ''0'' AND value <= interval ''1 minute''',
	 'Mean pause between two tries of a step; each pause is drawn between half and one and a half times this'),
	('partition.move_limit', 'integer', '20', 'value BETWEEN 1 AND 10000',
	 'Partitions filled from a default partition per set and maintenance run, beyond those premake needs');

-- The partition log records what maintenance dropped: shortening it is for
-- superusers only (src/core/duties.c).
INSERT INTO opsdata.settings (key, type, default_value, valid_when, description, superuser_only) VALUES
	('partition.log_retention', 'interval', '30 days',
	 'value >= interval ''1 day'' AND value <= interval ''1000 years''',
	 'How long entries of opsdata.partition_log are kept; superusers only', true);

INSERT INTO opsdata.jobs (name, command, schedule, builtin, comment) VALUES
	('partition.maintain', 'SELECT * FROM opsdata.run_maintenance()', '10 minutes', true,
	 'Makes partitions ahead, empties default partitions and applies retention for every set of opsdata.partitions');

--
-- Checks and normal forms of the arguments of manage_partitions().  They
-- raise the error a user sees; they run with TimeZone UTC so that times
-- without a zone are read as UTC.
--
CREATE FUNCTION opsdata._partition_interval(control_type regtype, value text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET IntervalStyle = 'postgres'
AS $$
DECLARE
	n bigint;
	iv interval;
	months bigint;
	days bigint;
	usecs numeric;
	total numeric;
BEGIN
	IF value IS NULL THEN
		RAISE EXCEPTION 'part_interval must not be null'
			USING ERRCODE = 'null_value_not_allowed',
				  HINT = CASE WHEN control_type IN ('date'::regtype, 'timestamptz'::regtype)
							  THEN 'Give an interval such as ''1 day'' or ''1 month''.'
							  ELSE 'Give the number of ids per partition, such as ''100000''.' END;
	END IF;
	IF control_type NOT IN ('date'::regtype, 'timestamptz'::regtype) THEN
		BEGIN
			n := value::bigint;
		EXCEPTION WHEN data_exception THEN
			RAISE EXCEPTION 'invalid part_interval "%" for a set keyed by %', value, control_type
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Give the number of ids per partition, such as ''100000''.';
		END;
		IF n < 1 THEN
			RAISE EXCEPTION 'part_interval must be positive'
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = pg_catalog.format('The value given was %s.', n);
		END IF;
		IF (control_type = 'smallint'::regtype AND n > 32767) OR (control_type = 'integer'::regtype AND n > 2147483647) THEN
			RAISE EXCEPTION 'part_interval % does not fit a set keyed by %', n, control_type
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		RETURN n::text;
	END IF;

	BEGIN
		iv := value::interval;
	EXCEPTION WHEN data_exception THEN
		RAISE EXCEPTION 'invalid part_interval "%" for a set keyed by %', value, control_type
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give an interval such as ''1 day'' or ''1 month''.';
	END;
	months := EXTRACT(year FROM iv) * 12 + EXTRACT(month FROM iv);
	days := EXTRACT(day FROM iv);
	usecs := EXTRACT(epoch FROM iv - pg_catalog.make_interval(months => months::int, days => days::int)) * 1000000;
	IF months < 0 OR days < 0 OR usecs < 0 OR iv <= interval '0' THEN
		RAISE EXCEPTION 'part_interval must be positive'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = pg_catalog.format('The value given was "%s".', value);
	END IF;
	IF months > 0 THEN
		IF days <> 0 OR usecs <> 0 THEN
			RAISE EXCEPTION 'part_interval "%" does not fit a partition set', value
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = 'Months have no fixed length, so an interval of months cannot be combined with days or hours.',
					  HINT = 'Use whole months, or whole days.';
		END IF;
		RETURN pg_catalog.make_interval(months => months::int)::text;
	END IF;
	total := days * 86400000000 + usecs;
	IF control_type = 'date'::regtype AND total % 86400000000 <> 0 THEN
		RAISE EXCEPTION 'part_interval "%" does not fit a set keyed by date', value
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'Partitions of a set keyed by date hold whole days.',
				  HINT = 'Use whole days or whole months.';
	END IF;
	IF total < 86400000000 AND (total % 60000000 <> 0 OR 86400000000 % total <> 0) THEN
		RAISE EXCEPTION 'part_interval "%" does not fit a partition set', value
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'A partition shorter than a day must be a whole number of minutes that divides the day evenly, so that every day starts a partition at midnight UTC.',
				  HINT = 'Use for instance ''1 hour'', ''6 hours'' or ''15 minutes''.';
	END IF;
	IF total >= 86400000000 AND total % 86400000000 <> 0 THEN
		RAISE EXCEPTION 'part_interval "%" does not fit a partition set', value
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'A partition of a day or longer must hold whole days, so that it starts at midnight UTC.',
				  HINT = 'Use for instance ''1 day'' or ''7 days''.';
	END IF;
	IF total % 86400000000 = 0 THEN
		RETURN pg_catalog.make_interval(days => (total / 86400000000)::int)::text;
	END IF;
	RETURN pg_catalog.make_interval(mins => (total / 60000000)::int)::text;
END
$$;

COMMENT ON FUNCTION opsdata._partition_interval(regtype, text) IS 'Internal: checks a part_interval for a key type and returns its normal form';

CREATE FUNCTION opsdata._partition_retention(control_type regtype, value text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET IntervalStyle = 'postgres'
AS $$
DECLARE
	n bigint;
	iv interval;
BEGIN
	IF value IS NULL THEN
		RETURN NULL;
	END IF;
	IF control_type NOT IN ('date'::regtype, 'timestamptz'::regtype) THEN
		BEGIN
			n := value::bigint;
		EXCEPTION WHEN data_exception THEN
			RAISE EXCEPTION 'invalid retention "%" for a set keyed by %', value, control_type
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Give the distance in ids below the highest id beyond which partitions are removed, such as ''1000000''.';
		END;
		IF n < 1 THEN
			RAISE EXCEPTION 'retention must be positive'
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = pg_catalog.format('The value given was %s.', n),
					  HINT = 'Give NULL to keep every partition.';
		END IF;
		RETURN n::text;
	END IF;
	BEGIN
		iv := value::interval;
	EXCEPTION WHEN data_exception THEN
		RAISE EXCEPTION 'invalid retention "%" for a set keyed by %', value, control_type
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give an interval such as ''90 days''.';
	END;
	IF iv <= interval '0' OR EXTRACT(epoch FROM iv) <= 0
	   OR EXTRACT(day FROM iv) < 0 OR EXTRACT(month FROM iv) < 0
	   OR EXTRACT(year FROM iv) < 0 THEN
		RAISE EXCEPTION 'retention must be positive'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = pg_catalog.format('The value given was "%s".', value),
				  HINT = 'Give NULL to keep every partition.';
	END IF;
	-- Maintenance subtracts the retention from now: keep that in range.
	IF iv > interval '1000 years' THEN
		RAISE EXCEPTION 'retention must be at most 1000 years'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = pg_catalog.format('The value given was "%s".', value),
				  HINT = 'Give NULL to keep every partition.';
	END IF;
	RETURN iv::text;
END
$$;

COMMENT ON FUNCTION opsdata._partition_retention(regtype, text) IS 'Internal: checks a retention for a key type and returns its normal form';

-- Registers a set or changes one.  Called by manage_partitions() (as the
-- extension owner, after checking that the caller owns the table) and by
-- the install script for the built-in sets.  Makes no partition itself.
CREATE FUNCTION opsdata._partition_register(parent regclass, control_column name, part_interval text,
	premake integer, retention text, retention_mode text, archive_schema name, start_from text,
	retention_setting text, builtin boolean)
RETURNS opsdata.partitions
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
DECLARE
	rel record;
	key record;
	col record;
	v_interval text;
	v_retention text;
	v_mode text := coalesce(retention_mode, 'drop');
	old opsdata.partitions;
	result opsdata.partitions;
BEGIN
	IF parent IS NULL THEN
		RAISE EXCEPTION 'parent table must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT c.relkind, c.relpersistence, c.relowner, c.relnamespace, n.nspname INTO rel
	  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
	 WHERE c.oid = parent;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'relation with OID % does not exist', parent::oid USING ERRCODE = 'undefined_table';
	END IF;
	IF rel.relkind <> 'p' THEN
		RAISE EXCEPTION 'relation "%" is not partitioned', parent
			USING ERRCODE = 'wrong_object_type',
				  HINT = 'Create the table with PARTITION BY RANGE on its timestamptz, date or integer column.';
	END IF;
	IF rel.relpersistence = 't' THEN
		RAISE EXCEPTION 'temporary table "%" cannot be managed', parent
			USING ERRCODE = 'feature_not_supported',
				  DETAIL = 'Maintenance runs in sessions of its own, which cannot see temporary tables.';
	END IF;
	SELECT p.partstrat, p.partnatts, p.partattrs[0] AS attnum INTO key
	  FROM pg_catalog.pg_partitioned_table p WHERE p.partrelid = parent;
	IF key.partstrat <> 'r' THEN
		RAISE EXCEPTION 'relation "%" is not partitioned by range', parent
			USING ERRCODE = 'wrong_object_type',
				  HINT = 'Only tables partitioned by RANGE can be managed.';
	END IF;
	IF key.partnatts <> 1 OR key.attnum = 0 THEN
		RAISE EXCEPTION 'relation "%" is not partitioned on a single column', parent
			USING ERRCODE = 'feature_not_supported',
				  HINT = 'Only tables partitioned by RANGE on one column, without an expression, can be managed.';
	END IF;
	IF control_column IS NULL THEN
		RAISE EXCEPTION 'control_column must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT a.attnum, a.atttypid::regtype AS type INTO col
	  FROM pg_catalog.pg_attribute a
	 WHERE a.attrelid = parent AND a.attname = control_column AND a.attnum > 0 AND NOT a.attisdropped;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'column "%" of relation "%" does not exist', control_column, parent
			USING ERRCODE = 'undefined_column';
	END IF;
	IF col.attnum <> key.attnum THEN
		RAISE EXCEPTION 'column "%" is not the partition key of "%"', control_column, parent
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = pg_catalog.format('The table is partitioned on column "%s".',
											 (SELECT attname FROM pg_catalog.pg_attribute
											   WHERE attrelid = parent AND attnum = key.attnum));
	END IF;
	IF col.type = 'timestamp'::regtype THEN
		RAISE EXCEPTION 'column "%" of relation "%" has type %', control_column, parent, col.type
			USING ERRCODE = 'datatype_mismatch',
				  DETAIL = 'Managed sets are keyed by timestamp with time zone, date, smallint, integer or bigint.',
				  HINT = 'Store times as timestamp with time zone: partition bounds are kept in UTC.';
	ELSIF col.type NOT IN ('timestamptz'::regtype, 'date'::regtype, 'smallint'::regtype, 'integer'::regtype, 'bigint'::regtype) THEN
		RAISE EXCEPTION 'column "%" of relation "%" has type %', control_column, parent, col.type
			USING ERRCODE = 'datatype_mismatch',
				  DETAIL = 'Managed sets are keyed by timestamp with time zone, date, smallint, integer or bigint.';
	END IF;
	IF NOT pg_catalog.has_schema_privilege(rel.relowner, rel.relnamespace, 'CREATE') THEN
		RAISE EXCEPTION 'owner of "%" has no CREATE privilege on schema "%"', parent, rel.nspname
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'Maintenance makes partitions with the privileges of the table''s owner, in the table''s schema.';
	END IF;

	v_interval := opsdata._partition_interval(col.type, part_interval);
	IF premake IS NULL THEN
		RAISE EXCEPTION 'premake must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF premake < 1 OR premake > 1000 THEN
		RAISE EXCEPTION 'premake must be between 1 and 1000'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = pg_catalog.format('The value given was %s.', premake);
	END IF;
	v_retention := opsdata._partition_retention(col.type, retention);
	IF retention_setting IS NOT NULL THEN
		PERFORM opsdata._partition_retention(col.type, opsdata.setting(retention_setting));
	END IF;
	IF v_mode NOT IN ('drop', 'detach') THEN
		RAISE EXCEPTION 'invalid retention_mode "%"', v_mode
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use ''drop'' to drop old partitions or ''detach'' to move them into archive_schema.';
	END IF;
	IF v_mode = 'detach' THEN
		IF archive_schema IS NULL THEN
			RAISE EXCEPTION 'retention_mode "detach" needs an archive_schema'
				USING ERRCODE = 'null_value_not_allowed';
		END IF;
		IF NOT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = archive_schema) THEN
			RAISE EXCEPTION 'schema "%" does not exist', archive_schema USING ERRCODE = 'invalid_schema_name';
		END IF;
		IF archive_schema = rel.nspname THEN
			RAISE EXCEPTION 'archive_schema must differ from the schema of "%"', parent
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF NOT pg_catalog.has_schema_privilege(rel.relowner, archive_schema, 'CREATE') THEN
			RAISE EXCEPTION 'owner of "%" has no CREATE privilege on schema "%"', parent, archive_schema
				USING ERRCODE = 'insufficient_privilege',
					  DETAIL = 'Maintenance moves detached partitions with the privileges of the table''s owner.';
		END IF;
	ELSIF archive_schema IS NOT NULL THEN
		RAISE EXCEPTION 'archive_schema is only used with retention_mode "detach"'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF start_from IS NOT NULL THEN
		BEGIN
			CASE col.type
				WHEN 'timestamptz'::regtype THEN PERFORM start_from::timestamptz;
				WHEN 'date'::regtype THEN PERFORM start_from::date;
				ELSE PERFORM start_from::bigint;
			END CASE;
		EXCEPTION WHEN data_exception THEN
			RAISE EXCEPTION 'invalid start_from "%" for a set keyed by %', start_from, col.type
				USING ERRCODE = 'invalid_parameter_value';
		END;
	END IF;

	SELECT * INTO old FROM opsdata.partitions p WHERE p.parent = _partition_register.parent FOR UPDATE;
	IF FOUND THEN
		IF old.builtin AND NOT builtin THEN
			RAISE EXCEPTION '"%" is a built-in partition set', parent
				USING ERRCODE = 'object_not_in_prerequisite_state',
					  HINT = 'Its retention is a setting: change it with opsdata.set_setting().';
		END IF;
		IF old.control_column <> control_column OR old.part_interval <> v_interval THEN
			RAISE EXCEPTION 'cannot change the control column or interval of managed set "%"', parent
				USING ERRCODE = 'object_not_in_prerequisite_state',
					  DETAIL = pg_catalog.format('The set is managed on column "%s" by %s.', old.control_column, old.part_interval),
					  HINT = 'Call opsdata.unmanage_partitions() first; existing partitions stay.';
		END IF;
		UPDATE opsdata.partitions p
		   SET premake = _partition_register.premake, retention = v_retention,
			   retention_setting = _partition_register.retention_setting,
			   retention_mode = v_mode, archive_schema = _partition_register.archive_schema
		 WHERE p.parent = _partition_register.parent
		RETURNING * INTO result;
	ELSE
		INSERT INTO opsdata.partitions AS p (parent, control_column, control_type, part_interval, premake,
											 retention, retention_setting, retention_mode, archive_schema,
											 default_partition, builtin)
		VALUES (parent, control_column, col.type, v_interval, premake, v_retention, retention_setting,
				v_mode, archive_schema,
				(SELECT partdefid <> 0 FROM pg_catalog.pg_partitioned_table WHERE partrelid = parent), builtin)
		RETURNING * INTO result;
	END IF;
	RETURN result;
END
$$;

COMMENT ON FUNCTION opsdata._partition_register(regclass, name, text, integer, text, text, name, text, text, boolean) IS 'Internal: checks the arguments of a partition set and records it';

-- Registration of a built-in set by the install script of its area: the
-- row only; the partitions are made by maintenance, outside CREATE
-- EXTENSION, so that they are not members of the extension.
CREATE FUNCTION opsdata._partition_builtin(parent regclass, control_column name, part_interval text,
	premake integer, retention_setting text)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT FROM opsdata._partition_register(parent, control_column, part_interval, premake, NULL, 'drop',
											NULL, NULL, retention_setting, true);
$$;

COMMENT ON FUNCTION opsdata._partition_builtin(regclass, name, text, integer, text) IS 'Internal: registers a built-in partition set of pg_opsdata';

-- A dropped table is no longer managed: its row would name a relation that
-- does not exist, and a dump of opsdata.partitions could not be restored.
CREATE FUNCTION opsdata._partition_forget_dropped()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF pg_catalog.to_regclass('opsdata.partitions') IS NULL THEN
		RETURN;
	END IF;
	DELETE FROM opsdata.partitions p
	 USING pg_catalog.pg_event_trigger_dropped_objects() d
	 WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objsubid = 0
	   AND d.objid = p.parent::pg_catalog.oid;
END
$$;

COMMENT ON FUNCTION opsdata._partition_forget_dropped() IS 'Internal: removes the sets of dropped tables from opsdata.partitions';

CREATE EVENT TRIGGER opsdata_partition_forget_dropped ON sql_drop
	EXECUTE FUNCTION opsdata._partition_forget_dropped();

--
-- The SQL API.  The C entry points (src/partition/api.c) check the caller's
-- rights, then act as the extension owner; DDL on a set runs with the
-- privileges of the set's owner.
--
CREATE FUNCTION opsdata.manage_partitions(parent regclass, control_column name, part_interval text,
	premake integer DEFAULT 4, retention text DEFAULT NULL, retention_mode text DEFAULT 'drop',
	archive_schema name DEFAULT NULL, start_from text DEFAULT NULL)
RETURNS integer
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'partition_manage';

COMMENT ON FUNCTION opsdata.manage_partitions(regclass, name, text, integer, text, text, name, text) IS 'Put a range-partitioned table under partition maintenance (or change its premake and retention); makes its partitions up to premake ahead and returns how many it made';

CREATE FUNCTION opsdata.unmanage_partitions(parent regclass)
RETURNS boolean
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'partition_unmanage';

COMMENT ON FUNCTION opsdata.unmanage_partitions(regclass) IS 'Stop maintaining a partition set; its partitions stay as they are';

CREATE FUNCTION opsdata.run_maintenance(parent regclass DEFAULT NULL)
RETURNS TABLE (parent_table regclass, status text, created integer, moved bigint,
			   detached integer, dropped integer, message text)
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'partition_run_maintenance';

COMMENT ON FUNCTION opsdata.run_maintenance(regclass) IS 'Run partition maintenance now, on one set or all of them, in a job worker, and wait for it; returns what it did per set';

CREATE FUNCTION opsdata.show_partitions(parent regclass)
RETURNS TABLE (partition regclass, lower_bound text, upper_bound text, is_default boolean, detach_pending boolean)
LANGUAGE plpgsql STABLE STRICT
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
AS $$
DECLARE
	t regtype;
BEGIN
	SELECT a.atttypid::regtype INTO t
	  FROM pg_catalog.pg_partitioned_table p
	  JOIN pg_catalog.pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
	 WHERE p.partrelid = parent AND p.partstrat = 'r' AND p.partnatts = 1;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'relation "%" is not partitioned by range on one column', parent
			USING ERRCODE = 'wrong_object_type';
	END IF;
	RETURN QUERY
		SELECT l.partition,
			   CASE WHEN l.is_default THEN NULL
					WHEN t = 'date'::regtype THEN coalesce(l.lower_time::date::text, 'MINVALUE')
					WHEN t = 'timestamptz'::regtype THEN coalesce(l.lower_time::text, 'MINVALUE')
					ELSE coalesce(l.lower_id::text, 'MINVALUE') END,
			   CASE WHEN l.is_default THEN NULL
					WHEN t = 'date'::regtype THEN coalesce(l.upper_time::date::text, 'MAXVALUE')
					WHEN t = 'timestamptz'::regtype THEN coalesce(l.upper_time::text, 'MAXVALUE')
					ELSE coalesce(l.upper_id::text, 'MAXVALUE') END,
			   l.is_default, l.detach_pending
		  FROM opsdata._partition_layout(parent) l
		 ORDER BY l.is_default, l.lower_time NULLS FIRST, l.lower_id NULLS FIRST;
END
$$;

COMMENT ON FUNCTION opsdata.show_partitions(regclass) IS 'Partitions of a range-partitioned table with their bounds (times in UTC), default partition last';

CREATE FUNCTION opsdata._partition_layout(parent regclass,
	OUT partition regclass, OUT is_default boolean, OUT detach_pending boolean,
	OUT lower_time timestamptz, OUT upper_time timestamptz, OUT lower_id bigint, OUT upper_id bigint)
RETURNS SETOF record
LANGUAGE c STABLE STRICT
AS 'MODULE_PATHNAME', 'partition_layout';

COMMENT ON FUNCTION opsdata._partition_layout(regclass) IS 'Internal: partitions of a table with their range bounds read from the catalog (dates as midnight UTC; NULL for MINVALUE and MAXVALUE)';

GRANT SELECT ON opsdata.partitions, opsdata.partition_log TO opsdata_admin, opsdata_reader;

-- Health: one row for the whole area, and one per set that failed, skipped
-- part of its work, was never maintained, or whose default partition holds
-- rows (counted up to 100000, without waiting for a lock).  opsdata.health()
-- runs as the extension owner, but shows the role the session acts as only
-- what that role may see: a set of its own, of a table it may read, or
-- built into pg_opsdata; rows of a default partition only when it may read
-- them.  The summary row counts the other sets without naming them.
CREATE FUNCTION opsdata._health_partition(OUT component text, OUT status text, OUT detail text)
RETURNS SETOF record
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '100ms'
AS $$
DECLARE
	r record;
	n bigint;
	rows_text text;
	v_acting name := opsdata._worker_acting_role();
	v_sets integer := 0;
	v_hidden integer := 0;
	v_failed integer := 0;
	v_warned integer := 0;
BEGIN
	FOR r IN
		SELECT p.parent, p.last_status, p.last_message, p.last_run_at, p.created_at,
			   NULLIF(t.partdefid, 0)::regclass AS default_partition,
			   pg_catalog.pg_has_role(v_acting, c.relowner, 'USAGE')
			   OR pg_catalog.has_table_privilege(v_acting, c.oid, 'SELECT') AS readable,
			   p.builtin
		  FROM opsdata.partitions p
		  JOIN pg_catalog.pg_class c ON c.oid = p.parent
		  LEFT JOIN pg_catalog.pg_partitioned_table t ON t.partrelid = p.parent
		 ORDER BY p.parent::text
	LOOP
		v_sets := v_sets + 1;
		n := 0;
		rows_text := NULL;
		IF NOT r.readable AND NOT r.builtin THEN
			v_hidden := v_hidden + 1;
			IF r.last_status = 'failed' THEN
				v_failed := v_failed + 1;
			ELSIF r.last_status = 'skipped'
				  OR (r.last_run_at IS NULL AND r.created_at < pg_catalog.now() - interval '1 hour')
				  OR r.last_run_at < pg_catalog.now() - interval '1 day' THEN
				v_warned := v_warned + 1;
			END IF;
			CONTINUE;
		END IF;
		IF r.default_partition IS NOT NULL
		   AND (r.readable OR pg_catalog.has_table_privilege(v_acting, r.default_partition, 'SELECT')) THEN
			BEGIN
				EXECUTE pg_catalog.format('SELECT count(*) FROM (SELECT 1 FROM ONLY %s LIMIT 100001) x',
										  r.default_partition) INTO n;
				IF n > 0 THEN
					rows_text := pg_catalog.format('The default partition %s holds %s.', r.default_partition,
												   CASE WHEN n > 100000 THEN 'more than 100000 rows'
														WHEN n = 1 THEN '1 row' ELSE n || ' rows' END);
				END IF;
			EXCEPTION WHEN lock_not_available THEN
				rows_text := pg_catalog.format('The rows of the default partition %s were not counted: it is locked.',
											   r.default_partition);
			END;
		END IF;
		component := 'partition ' || r.parent::text;
		IF r.last_status = 'failed' THEN
			v_failed := v_failed + 1;
			status := 'error';
			detail := pg_catalog.concat_ws(' ', 'The last maintenance run failed: ' || r.last_message || '.', rows_text);
		ELSIF r.last_status = 'skipped' THEN
			v_warned := v_warned + 1;
			status := 'warning';
			detail := pg_catalog.concat_ws(' ', 'The last maintenance run skipped part of its work: ' || r.last_message || '.', rows_text);
		ELSIF r.last_run_at IS NULL AND r.created_at < pg_catalog.now() - interval '1 hour' THEN
			v_warned := v_warned + 1;
			status := 'warning';
			detail := pg_catalog.concat_ws(' ', 'Not maintained since it was put under management; check that the "partition.maintain" job runs.', rows_text);
		ELSIF r.last_run_at IS NOT NULL AND r.last_run_at < pg_catalog.now() - interval '1 day' THEN
			v_warned := v_warned + 1;
			status := 'warning';
			detail := pg_catalog.concat_ws(' ', 'Not maintained for more than a day; check that the "partition.maintain" job runs.', rows_text);
		ELSIF n > 0 AND r.last_run_at IS NOT NULL THEN
			v_warned := v_warned + 1;
			status := 'warning';
			detail := rows_text || ' Maintenance moves them into partitions; rows that stay have keys no partition may hold.';
		ELSIF rows_text IS NOT NULL THEN
			status := 'ok';
			detail := rows_text || ' The first maintenance run moves them into partitions.';
		ELSE
			CONTINUE;
		END IF;
		RETURN NEXT;
	END LOOP;

	component := 'partition maintenance';
	status := CASE WHEN v_failed > 0 THEN 'error' WHEN v_warned > 0 THEN 'warning' ELSE 'ok' END;
	detail := CASE WHEN v_sets = 0 THEN 'No partition set is managed.'
				   WHEN v_sets = 1 THEN '1 partition set is managed.'
				   ELSE pg_catalog.format('%s partition sets are managed.', v_sets) END
			  || CASE WHEN v_hidden = 1 THEN ' 1 of them is a table this role may not read.'
					  WHEN v_hidden > 1 THEN pg_catalog.format(' %s of them are tables this role may not read.', v_hidden)
					  ELSE '' END
			  || CASE WHEN v_failed > 0 THEN pg_catalog.format(' %s failed in their last maintenance run.', v_failed) ELSE '' END
			  || CASE WHEN v_warned > 0 THEN pg_catalog.format(' %s need attention.', v_warned) ELSE '' END;
	RETURN NEXT;
END
$$;

COMMENT ON FUNCTION opsdata._health_partition() IS 'Internal: the partition maintenance rows of opsdata.health()';

GRANT EXECUTE ON FUNCTION opsdata.manage_partitions(regclass, name, text, integer, text, text, name, text),
	opsdata.unmanage_partitions(regclass), opsdata.run_maintenance(regclass) TO opsdata_admin;
GRANT EXECUTE ON FUNCTION opsdata.show_partitions(regclass) TO opsdata_admin, opsdata_reader;

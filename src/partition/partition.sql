-- Partition maintenance: the managed partition sets.

CREATE TABLE opsdata.partitions (
	parent				regclass PRIMARY KEY,
	control_column		name NOT NULL,
	control_type		regtype NOT NULL
						CHECK (control_type IN ('timestamptz'::regtype, 'date'::regtype,
												'smallint'::regtype, 'integer'::regtype, 'bigint'::regtype)),
	part_interval		text NOT NULL,
	premake				integer NOT NULL DEFAULT 4 CHECK (premake >= 1),
	retention			text,
	retention_mode		text NOT NULL DEFAULT 'drop' CHECK (retention_mode IN ('drop', 'detach')),
	archive_schema		name,
	default_partition	boolean NOT NULL DEFAULT false,
	builtin				boolean NOT NULL DEFAULT false,
	created_at			timestamptz NOT NULL DEFAULT pg_catalog.now(),
	last_run_at			timestamptz,
	last_status			text CHECK (last_status IN ('ok', 'skipped', 'failed')),
	last_message		text,
	CHECK (retention_mode = 'drop' OR archive_schema IS NOT NULL)
);

COMMENT ON TABLE opsdata.partitions IS 'Partition sets kept by partition maintenance: premade ahead, old partitions dropped or detached';
COMMENT ON COLUMN opsdata.partitions.parent IS 'The partitioned table';
COMMENT ON COLUMN opsdata.partitions.control_column IS 'Partition key column';
COMMENT ON COLUMN opsdata.partitions.control_type IS 'Type of the partition key: timestamptz, date or an integer type';
COMMENT ON COLUMN opsdata.partitions.part_interval IS 'Width of one partition: an interval for time sets, a number for id sets';
COMMENT ON COLUMN opsdata.partitions.premake IS 'Partitions kept ready ahead of now (time) or of the highest id';
COMMENT ON COLUMN opsdata.partitions.retention IS 'Age (interval) or id distance beyond which partitions are removed; NULL keeps everything';
COMMENT ON COLUMN opsdata.partitions.retention_mode IS 'drop: drop old partitions; detach: detach them into archive_schema';
COMMENT ON COLUMN opsdata.partitions.archive_schema IS 'Schema detached partitions are moved to';
COMMENT ON COLUMN opsdata.partitions.default_partition IS 'Whether the set has a default partition that maintenance empties';
COMMENT ON COLUMN opsdata.partitions.builtin IS 'A pg_opsdata table managed out of the box';
COMMENT ON COLUMN opsdata.partitions.created_at IS 'When the set was put under management';
COMMENT ON COLUMN opsdata.partitions.last_run_at IS 'When maintenance last ran on the set';
COMMENT ON COLUMN opsdata.partitions.last_status IS 'ok, skipped (a lock was not granted in time) or failed';
COMMENT ON COLUMN opsdata.partitions.last_message IS 'What the last maintenance run did or why it failed';

SELECT pg_catalog.pg_extension_config_dump('opsdata.partitions', 'WHERE NOT builtin');

GRANT SELECT ON opsdata.partitions TO opsdata_admin, opsdata_reader;

-- The partition API refuses bad input with a clear error and a proper
-- SQLSTATE, and changes nothing (DESIGN.md, contract 8); only the owner of a
-- table may put it under management.
CREATE EXTENSION pg_opsdata;
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;

CREATE SCHEMA p;
CREATE SCHEMA p_archive;
CREATE TABLE p.plain (ts timestamptz NOT NULL);
CREATE TABLE p.by_list (k text NOT NULL) PARTITION BY LIST (k);
CREATE TABLE p.two_cols (a int NOT NULL, b int NOT NULL) PARTITION BY RANGE (a, b);
CREATE TABLE p.by_expr (id int NOT NULL) PARTITION BY RANGE ((id + 1));
CREATE TABLE p.by_text (k text NOT NULL) PARTITION BY RANGE (k);
CREATE TABLE p.by_ts (ts timestamp NOT NULL) PARTITION BY RANGE (ts);
CREATE TABLE p.events (id bigint NOT NULL, ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
CREATE TABLE p.days (d date NOT NULL) PARTITION BY RANGE (d);
CREATE TABLE p.ids (id smallint NOT NULL) PARTITION BY RANGE (id);
CREATE TEMP TABLE tmp_parted (ts timestamptz NOT NULL) PARTITION BY RANGE (ts);

-- The table.
SELECT opsdata.manage_partitions(NULL, 'ts', '1 day');
SELECT opsdata.manage_partitions(12345, 'ts', '1 day');
SELECT opsdata.manage_partitions('p.plain', 'ts', '1 day');
SELECT opsdata.manage_partitions('p.by_list', 'k', '1 day');
SELECT opsdata.manage_partitions('p.two_cols', 'a', '10');
SELECT opsdata.manage_partitions('p.by_expr', 'id', '10');
SELECT opsdata.manage_partitions('tmp_parted', 'ts', '1 day');

-- The control column.
SELECT opsdata.manage_partitions('p.events', NULL, '1 day');
SELECT opsdata.manage_partitions('p.events', 'created', '1 day');
SELECT opsdata.manage_partitions('p.events', 'id', '1 day');
SELECT opsdata.manage_partitions('p.by_text', 'k', '1 day');
SELECT opsdata.manage_partitions('p.by_ts', 'ts', '1 day');

-- The interval: one that exists, is positive, and cuts days at midnight UTC.
SELECT opsdata.manage_partitions('p.events', 'ts', NULL);
SELECT opsdata.manage_partitions('p.events', 'ts', 'daily');
SELECT opsdata.manage_partitions('p.events', 'ts', '-1 day');
SELECT opsdata.manage_partitions('p.events', 'ts', '0');
SELECT opsdata.manage_partitions('p.events', 'ts', '1 month 2 days');
SELECT opsdata.manage_partitions('p.events', 'ts', '7 hours');
SELECT opsdata.manage_partitions('p.events', 'ts', '90 seconds');
SELECT opsdata.manage_partitions('p.events', 'ts', '1 day 3 hours');
SELECT opsdata.manage_partitions('p.days', 'd', '6 hours');
SELECT opsdata.manage_partitions('p.ids', 'id', 'ten');
SELECT opsdata.manage_partitions('p.ids', 'id', '0');
SELECT opsdata.manage_partitions('p.ids', 'id', '40000');

-- Premake, retention and the archive.
SELECT opsdata.manage_partitions('p.events', 'ts', '1 day', premake => NULL);
SELECT opsdata.manage_partitions('p.events', 'ts', '1 day', premake => 0);
SELECT opsdata.manage_partitions('p.events', 'ts', '1 day', premake => 1001);
SELECT opsdata.manage_partitions('p.events', 'ts', '1 day', retention => 'forever');
SELECT opsdata.manage_partitions('p.events', 'ts', '1 day', retention => '-30 days');
SELECT opsdata.manage_partitions('p.events', 'ts', '1 day', retention => '0 days');
SELECT opsdata.manage_partitions('p.ids', 'id', '100', retention => '-3');
SELECT opsdata.manage_partitions('p.events', 'ts', '1 day', retention_mode => 'archive');
SELECT opsdata.manage_partitions('p.events', 'ts', '1 day', retention_mode => 'detach');
SELECT opsdata.manage_partitions('p.events', 'ts', '1 day', retention_mode => 'detach', archive_schema => 'nowhere');
SELECT opsdata.manage_partitions('p.events', 'ts', '1 day', retention_mode => 'detach', archive_schema => 'p');
SELECT opsdata.manage_partitions('p.events', 'ts', '1 day', archive_schema => 'p_archive');

-- Where to start.
SELECT opsdata.manage_partitions('p.events', 'ts', '1 day', start_from => 'yesterday-ish');
SELECT opsdata.manage_partitions('p.ids', 'id', '100', start_from => '1.5');
SELECT opsdata.manage_partitions('p.events', 'ts', '1 hour', start_from => '1990-01-01');

-- None of this managed anything or made any partition.
SELECT parent FROM opsdata.partitions WHERE NOT builtin;
SELECT count(*) FROM pg_inherits WHERE inhparent IN ('p.events'::regclass, 'p.days'::regclass, 'p.ids'::regclass);

-- A managed set: its settings may change, its key and interval may not.
SELECT opsdata.manage_partitions('p.events', 'ts', '1 day', premake => 2, retention => '30 days') > 0 AS made;
SELECT parent, control_type, part_interval, premake, retention, retention_mode FROM opsdata.partitions WHERE NOT builtin;
SELECT opsdata.manage_partitions('p.events', 'ts', '1 hour');
SELECT opsdata.manage_partitions('p.events', 'ts', '24 hours', premake => 3, retention => '2 months',
	retention_mode => 'detach', archive_schema => 'p_archive');
SELECT parent, part_interval, premake, retention, retention_mode, archive_schema FROM opsdata.partitions WHERE NOT builtin;

-- Built-in sets keep their place.
SELECT opsdata.manage_partitions('audit.entries', 'ts', '1 day', retention => '1 day');
SELECT opsdata.unmanage_partitions('metrics.points');
SELECT parent, builtin, retention, retention_setting FROM opsdata.partitions WHERE builtin ORDER BY 1;

-- Maintenance of a table that is not managed.
SELECT * FROM opsdata.run_maintenance('p.days');

-- Only the table's owner, as an administrator, manages it.
CREATE ROLE p_admin IN ROLE opsdata_admin;
CREATE ROLE p_reader IN ROLE opsdata_reader;
CREATE TABLE p.theirs (ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
GRANT USAGE ON SCHEMA p TO p_admin, p_reader;
SET ROLE p_admin;
SELECT opsdata.manage_partitions('p.theirs', 'ts', '1 day');
SELECT opsdata.unmanage_partitions('p.events');
RESET ROLE;
SET ROLE p_reader;
SELECT opsdata.manage_partitions('p.theirs', 'ts', '1 day');
SELECT * FROM opsdata.run_maintenance('p.events');
SELECT count(*) > 0 AS reader_sees_partitions FROM opsdata.show_partitions('p.events');
RESET ROLE;
ALTER TABLE p.theirs OWNER TO p_admin;
SET ROLE p_admin;
SELECT opsdata.manage_partitions('p.theirs', 'ts', '1 day', premake => 1);
RESET ROLE;
GRANT CREATE ON SCHEMA p TO p_admin;
SET ROLE p_admin;
SELECT opsdata.manage_partitions('p.theirs', 'ts', '1 day', premake => 1) > 0 AS made;
SELECT DISTINCT c.relowner::regrole FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = 'p.theirs'::regclass;
SELECT opsdata.unmanage_partitions('p.theirs');
SELECT opsdata.unmanage_partitions('p.theirs');
RESET ROLE;

-- Unmanaging keeps the partitions; dropping the table forgets the set.
SELECT opsdata.unmanage_partitions('p.events');
SELECT count(*) > 0 AS partitions_stay FROM pg_inherits WHERE inhparent = 'p.events'::regclass;
SELECT opsdata.manage_partitions('p.events', 'ts', '1 day') >= 0 AS managed_again;
DROP TABLE p.events;
SELECT parent FROM opsdata.partitions WHERE NOT builtin;

DROP SCHEMA p CASCADE;
DROP SCHEMA p_archive;
DROP ROLE p_admin;
DROP ROLE p_reader;
DROP EXTENSION pg_opsdata;

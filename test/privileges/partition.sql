-- Privileges of the partition area's objects (see 02-core-privileges.sql).
INSERT INTO table_matrix
SELECT rel, role, privs FROM (VALUES
	('opsdata.partitions', ARRAY['opsdata_admin', 'opsdata_reader'], ARRAY['SELECT']),
	('opsdata.partition_log', ARRAY['opsdata_admin', 'opsdata_reader'], ARRAY['SELECT'])
) v(rel, roles, privs), unnest(roles) AS role;

INSERT INTO function_matrix
SELECT func, role FROM (VALUES
	('opsdata.manage_partitions', ARRAY['opsdata_admin']),
	('opsdata.unmanage_partitions', ARRAY['opsdata_admin']),
	('opsdata.run_maintenance', ARRAY['opsdata_admin']),
	('opsdata.show_partitions', ARRAY['opsdata_admin', 'opsdata_reader'])
) v(func, roles), unnest(roles) AS role;

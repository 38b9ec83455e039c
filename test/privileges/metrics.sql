-- Privileges of the metrics area's objects (see 02-core-privileges.sql).
INSERT INTO table_matrix
SELECT rel, role, privs FROM (VALUES
	('metrics.series', ARRAY['opsdata_admin', 'opsdata_writer'], ARRAY['INSERT', 'SELECT']),
	('metrics.series', ARRAY['opsdata_reader'], ARRAY['SELECT']),
	('metrics.points', ARRAY['opsdata_admin', 'opsdata_writer'], ARRAY['INSERT', 'SELECT']),
	('metrics.points', ARRAY['opsdata_reader'], ARRAY['SELECT']),
	('metrics.rollups', ARRAY['opsdata_admin', 'opsdata_reader'], ARRAY['SELECT'])
) v(rel, roles, privs), unnest(roles) AS role;

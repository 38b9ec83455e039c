-- Privileges of the learning area's objects (see 02-core-privileges.sql).
INSERT INTO table_matrix
SELECT rel, role, privs FROM (VALUES
	('learning.feedback', ARRAY['opsdata_admin', 'opsdata_writer'], ARRAY['INSERT', 'SELECT']),
	('learning.feedback', ARRAY['opsdata_reader'], ARRAY['SELECT']),
	('learning.thresholds', ARRAY['opsdata_admin', 'opsdata_reader'], ARRAY['SELECT']),
	('learning.candidates', ARRAY['opsdata_admin', 'opsdata_reader'], ARRAY['SELECT'])
) v(rel, roles, privs), unnest(roles) AS role;

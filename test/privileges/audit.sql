-- Privileges of the audit area's objects (see 02-core-privileges.sql).
INSERT INTO table_matrix
SELECT rel, role, privs FROM (VALUES
	('audit.entries', ARRAY['opsdata_auditor'], ARRAY['SELECT']),
	('audit.statements', ARRAY['opsdata_auditor'], ARRAY['SELECT']),
	('audit.seals', ARRAY['opsdata_auditor'], ARRAY['SELECT']),
	('audit.rules', ARRAY['opsdata_auditor'], ARRAY['SELECT']),
	('audit.queue', ARRAY['opsdata_auditor'], ARRAY['SELECT'])
) v(rel, roles, privs), unnest(roles) AS role;

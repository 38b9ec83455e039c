-- Privileges of the audit area's objects (see 02-core-privileges.sql).
INSERT INTO schema_matrix VALUES ('audit', 'opsdata_admin');

INSERT INTO table_matrix
SELECT rel, role, privs FROM (VALUES
	('audit.entries', ARRAY['opsdata_auditor'], ARRAY['SELECT']),
	('audit.statements', ARRAY['opsdata_auditor'], ARRAY['SELECT']),
	('audit.seals', ARRAY['opsdata_auditor'], ARRAY['SELECT']),
	('audit.rules', ARRAY['opsdata_auditor', 'opsdata_admin'], ARRAY['SELECT']),
	('audit.queue', ARRAY['opsdata_auditor'], ARRAY['SELECT']),
	('audit.trail', ARRAY['opsdata_auditor'], ARRAY['SELECT'])
) v(rel, roles, privs), unnest(roles) AS role;

INSERT INTO function_matrix
SELECT func, role FROM (VALUES
	('audit.flush', ARRAY['opsdata_admin', 'opsdata_auditor']),
	('audit.queue_state', ARRAY['opsdata_admin', 'opsdata_auditor']),
	('audit.add_rule', ARRAY['opsdata_admin']),
	('audit.drop_rule', ARRAY['opsdata_admin']),
	('audit.seal', ARRAY['opsdata_admin']),
	('audit.verify', ARRAY['opsdata_auditor']),
	('audit.digest', ARRAY['opsdata_auditor']),
	('audit.verify_digest', ARRAY['opsdata_auditor'])
) v(func, roles), unnest(roles) AS role;

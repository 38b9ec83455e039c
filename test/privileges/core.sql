-- Privileges of the core's objects (see 02-core-privileges.sql).
INSERT INTO schema_matrix VALUES
	('opsdata', 'opsdata_admin'), ('opsdata', 'opsdata_writer'), ('opsdata', 'opsdata_reader'),
	('opsdata', 'opsdata_auditor'), ('audit', 'opsdata_auditor'),
	('learning', 'opsdata_admin'), ('learning', 'opsdata_writer'), ('learning', 'opsdata_reader'),
	('metrics', 'opsdata_admin'), ('metrics', 'opsdata_writer'), ('metrics', 'opsdata_reader');

INSERT INTO table_matrix
SELECT rel, role, privs FROM (VALUES
	('opsdata.settings', ARRAY['opsdata_admin', 'opsdata_reader'], ARRAY['SELECT']),
	('opsdata.config', ARRAY['opsdata_admin', 'opsdata_reader'], ARRAY['SELECT']),
	('opsdata.current_settings', ARRAY['opsdata_admin', 'opsdata_reader'], ARRAY['SELECT'])
) v(rel, roles, privs), unnest(roles) AS role;

INSERT INTO function_matrix
SELECT func, role FROM (VALUES
	('opsdata.health', ARRAY['opsdata_admin', 'opsdata_writer', 'opsdata_reader', 'opsdata_auditor']),
	('opsdata.health_json', ARRAY['opsdata_admin', 'opsdata_writer', 'opsdata_reader', 'opsdata_auditor']),
	('opsdata.setting', ARRAY['opsdata_admin', 'opsdata_writer', 'opsdata_reader', 'opsdata_auditor']),
	('opsdata.set_setting', ARRAY['opsdata_admin']),
	('opsdata.reset_setting', ARRAY['opsdata_admin']),
	('opsdata.check_restore', ARRAY['opsdata_admin', 'opsdata_auditor'])
) v(func, roles), unnest(roles) AS role;

-- Privileges of the worker area's objects (see 02-core-privileges.sql).
INSERT INTO table_matrix
SELECT rel, role, privs FROM (VALUES
	('opsdata.jobs', ARRAY['opsdata_admin', 'opsdata_reader'], ARRAY['SELECT']),
	('opsdata.job_runs', ARRAY['opsdata_admin', 'opsdata_reader'], ARRAY['SELECT'])
) v(rel, roles, privs), unnest(roles) AS role;

INSERT INTO function_matrix
SELECT func, role FROM (VALUES
	('opsdata.add_job', ARRAY['opsdata_admin']),
	('opsdata.alter_job', ARRAY['opsdata_admin']),
	('opsdata.remove_job', ARRAY['opsdata_admin']),
	('opsdata.pause_job', ARRAY['opsdata_admin']),
	('opsdata.resume_job', ARRAY['opsdata_admin']),
	('opsdata.run_job', ARRAY['opsdata_admin'])
) v(func, roles), unnest(roles) AS role;

-- Who may do what: every role × every table, view, function and schema of
-- pg_opsdata, PUBLIC included, against one matrix; then the same promises
-- exercised by real sessions.
BEGIN;

CREATE TEMP TABLE roles (role name);
INSERT INTO roles VALUES ('opsdata_admin'), ('opsdata_writer'), ('opsdata_reader'),
	('opsdata_auditor'), ('public');

CREATE TEMP TABLE table_matrix (rel text, role name, privs text[]);
CREATE TEMP TABLE function_matrix (func text, role name);
CREATE TEMP TABLE schema_matrix (nsp name, role name);

-- Each area lists what its roles may do in test/privileges/<area>.sql:
-- table privileges as has_table_privilege sees them (inherited ones
-- included: opsdata_admin is a member of opsdata_writer and opsdata_reader),
-- EXECUTE on functions, USAGE on schemas.  Whatever is not listed must not
-- be granted; functions whose name starts with "_" are internal and
-- executable by no one but the owner.
\ir privileges/core.sql
\ir privileges/worker.sql
\ir privileges/partition.sql
\ir privileges/audit.sql
\ir privileges/metrics.sql
\ir privileges/learning.sql

-- A partition that maintenance made (any but a default partition) has the
-- privileges of its parent: it is checked against the parent's entries.
CREATE TEMP VIEW our_relations AS
	SELECT n.nspname, c.relname, c.oid,
		   CASE WHEN c.relispartition AND c.relname !~ '_default$'
				THEN (SELECT i.inhparent::regclass::text FROM pg_inherits i WHERE i.inhrelid = c.oid)
				ELSE n.nspname || '.' || c.relname END AS matrix_rel
	  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	 WHERE n.nspname IN ('audit', 'learning', 'metrics', 'opsdata') AND c.relkind IN ('r', 'p', 'v', 'f');
CREATE TEMP VIEW our_functions AS
	SELECT n.nspname, p.proname, p.oid,
		   string_to_array(pg_get_function_identity_arguments(p.oid), ', ') AS args,
		   oidvectortypes(p.proargtypes) AS argtypes
	  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
	 WHERE n.nspname IN ('audit', 'learning', 'metrics', 'opsdata');

CREATE ROLE app_admin LOGIN IN ROLE opsdata_admin;
CREATE ROLE app_writer LOGIN IN ROLE opsdata_writer;
CREATE ROLE app_reader LOGIN IN ROLE opsdata_reader;
CREATE ROLE app_auditor LOGIN IN ROLE opsdata_auditor;
CREATE ROLE app_nobody LOGIN;
CREATE ROLE app_bypass LOGIN IN ROLE pg_write_all_data, pg_read_all_data;

SELECT plan(
	(SELECT count(*)::int FROM our_relations) * 5
	+ (SELECT count(*)::int FROM our_functions) * 5
	+ 4 * 5
	+ 3
	+ 18);

SELECT table_privs_are(r.nspname, r.relname, ro.role,
		coalesce((SELECT privs FROM table_matrix m
				   WHERE m.rel = r.matrix_rel AND m.role = ro.role), '{}'),
		format('%s on %I.%I: %s', ro.role, r.nspname, r.relname,
			   coalesce((SELECT array_to_string(privs, ', ') FROM table_matrix m
						  WHERE m.rel = r.matrix_rel AND m.role = ro.role), 'nothing')))
  FROM our_relations r CROSS JOIN roles ro
 ORDER BY r.nspname, r.relname, ro.role;

SELECT function_privs_are(f.nspname, f.proname,
		coalesce(string_to_array(f.argtypes, ', '), '{}'), ro.role,
		CASE WHEN EXISTS (SELECT FROM function_matrix m
						   WHERE m.func = f.nspname || '.' || f.proname AND m.role = ro.role)
			 THEN ARRAY['EXECUTE'] ELSE '{}'::text[] END,
		format('%s on %I.%I(%s): %s', ro.role, f.nspname, f.proname, f.argtypes,
			   CASE WHEN EXISTS (SELECT FROM function_matrix m
								  WHERE m.func = f.nspname || '.' || f.proname AND m.role = ro.role)
					THEN 'EXECUTE' ELSE 'nothing' END))
  FROM our_functions f CROSS JOIN roles ro
 ORDER BY f.nspname, f.proname, f.argtypes, ro.role;

SELECT schema_privs_are(s.nsp, ro.role,
		CASE WHEN EXISTS (SELECT FROM schema_matrix m WHERE m.nsp = s.nsp AND m.role = ro.role)
			 THEN ARRAY['USAGE'] ELSE '{}'::text[] END,
		format('%s on schema %s', ro.role, s.nsp))
  FROM (VALUES ('audit'::name), ('learning'), ('metrics'), ('opsdata')) s(nsp) CROSS JOIN roles ro
 ORDER BY s.nsp, ro.role;

-- No role but the extension owner is granted changes to audit tables
-- (pg_write_all_data bypasses grants; the guard trigger stops it, below and
-- in 03-core-guard.sql),
-- and no sequence is usable by anyone but the owner.
SELECT is_empty($$
	SELECT c.oid::regclass, a.grantee::regrole, a.privilege_type
	  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a
	 WHERE n.nspname = 'audit' AND c.relkind IN ('r', 'p') AND a.grantee <> c.relowner
	   AND a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')$$,
	'no role but the owner is granted INSERT, UPDATE, DELETE or TRUNCATE on an audit table');
SELECT is_empty($$
	SELECT c.oid::regclass FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	 WHERE n.nspname IN ('audit', 'learning', 'metrics', 'opsdata') AND c.relkind = 'S'
	   AND c.relacl IS NOT NULL AND array_length(c.relacl, 1) > 1$$,
	'sequences are granted to no one');
SELECT is_empty($$
	SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	 WHERE n.nspname IN ('audit', 'learning', 'metrics', 'opsdata')
	   AND EXISTS (SELECT FROM aclexplode(c.relacl) a WHERE a.grantee = 0)
	UNION ALL
	SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
	 WHERE n.nspname IN ('audit', 'learning', 'metrics', 'opsdata')
	   AND (p.proacl IS NULL OR EXISTS (SELECT FROM aclexplode(p.proacl) a WHERE a.grantee = 0))$$,
	'nothing in the extension''s schemas is granted to PUBLIC');

-- The same promises, exercised by sessions of real roles, on tables that
-- hold a row.
INSERT INTO audit.entries (database, username, current_user_name, backend_pid, class, command, outcome)
	 VALUES (current_database(), session_user, current_user, pg_backend_pid(), 'misc', 'SELECT', 'ok');
SET ROLE app_nobody;
SELECT throws_ok('SELECT * FROM opsdata.health()', '42501', NULL, 'a role without grants cannot call health()');
SELECT throws_ok('SELECT count(*) FROM metrics.points', '42501', NULL, 'a role without grants cannot read metrics');
SELECT throws_ok('SELECT count(*) FROM audit.entries', '42501', NULL, 'a role without grants cannot read the audit trail');
RESET ROLE;

SET ROLE app_reader;
SELECT lives_ok('SELECT * FROM opsdata.health()', 'a reader calls health()');
SELECT lives_ok('SELECT count(*) FROM metrics.rollups', 'a reader reads rollups');
SELECT throws_ok('INSERT INTO metrics.points VALUES (1, now(), 1)', '42501', NULL, 'a reader cannot record points');
SELECT throws_ok($$SELECT opsdata.set_setting('x', 'y')$$, '42501', NULL, 'a reader cannot change settings');
RESET ROLE;

SET ROLE app_writer;
SELECT lives_ok('INSERT INTO metrics.points VALUES (1, now(), 1)', 'a writer records points');
SELECT lives_ok($$INSERT INTO learning.feedback (key, score, label) VALUES ('k', 0.5, true)$$, 'a writer records feedback');
SELECT throws_ok('SELECT count(*) FROM audit.entries', '42501', NULL, 'a writer cannot read the audit trail');
RESET ROLE;

SET ROLE app_auditor;
SELECT lives_ok('SELECT count(*) FROM audit.entries', 'an auditor reads the audit trail');
SELECT throws_ok('UPDATE audit.entries SET outcome = ''ok''', '42501', NULL, 'an auditor cannot update audit entries');
SELECT throws_ok('DELETE FROM audit.entries', '42501', NULL, 'an auditor cannot delete audit entries');
SELECT throws_ok('TRUNCATE audit.entries', '42501', NULL, 'an auditor cannot truncate audit entries');
RESET ROLE;

SET ROLE app_bypass;
SELECT throws_ok('UPDATE audit.entries SET outcome = ''ok''', '42501', NULL,
	'pg_write_all_data does not let a role change audit entries');
SELECT throws_ok(format('DELETE FROM %s', (SELECT tableoid::regclass FROM audit.entries LIMIT 1)),
	'42501', NULL,
	'pg_write_all_data does not let a role delete from a partition of audit entries');
RESET ROLE;

SET ROLE app_admin;
SELECT throws_ok('DELETE FROM audit.entries', '42501', NULL, 'an administrator cannot delete audit entries');
SELECT lives_ok('SELECT count(*) FROM opsdata.current_settings', 'an administrator reads settings');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;

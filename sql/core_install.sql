-- CREATE EXTENSION makes the four schemas and the four roles, DROP EXTENSION
-- removes everything but the roles, and the extension can be made again.
CREATE EXTENSION pg_opsdata;

SELECT nspname FROM pg_namespace
 WHERE nspname IN ('audit', 'learning', 'metrics', 'opsdata') ORDER BY 1;

SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE 'opsdata\_%' ORDER BY 1;

-- Tables of each schema, and which ones are partitioned.
SELECT n.nspname, c.relname, c.relkind
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname IN ('audit', 'learning', 'metrics', 'opsdata') AND c.relkind IN ('r', 'p', 'v')
 ORDER BY 1, 2;

-- Health, as an application's /health endpoint sees it.
SELECT component, status FROM opsdata.health() ORDER BY component;

-- Every table and column a user reads has a comment.
SELECT c.oid::regclass AS table_without_comment
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname IN ('audit', 'learning', 'metrics', 'opsdata') AND c.relkind IN ('r', 'p', 'v')
   AND c.relispartition = false AND obj_description(c.oid, 'pg_class') IS NULL;
SELECT a.attrelid::regclass, a.attname AS column_without_comment
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname IN ('audit', 'learning', 'metrics', 'opsdata') AND c.relkind IN ('r', 'p')
   AND NOT c.relispartition AND a.attnum > 0 AND NOT a.attisdropped
   AND col_description(c.oid, a.attnum) IS NULL;
SELECT p.oid::regprocedure AS function_without_comment
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname IN ('audit', 'learning', 'metrics', 'opsdata')
   AND obj_description(p.oid, 'pg_proc') IS NULL;

-- Settings: unknown keys and bad values are refused and change nothing.
SELECT opsdata.setting('no.such.setting');
SELECT opsdata.set_setting('no.such.setting', '1');
SELECT opsdata.set_setting(NULL, '1');
SELECT count(*) FROM opsdata.config;

-- A value is checked against the setting's type and constraint.
INSERT INTO opsdata.settings (key, type, default_value, valid_when, description)
	 VALUES ('test.retention', 'interval', '7 days', 'value > interval ''0''', 'a setting for this test');
SELECT opsdata.setting('test.retention');
SELECT opsdata.set_setting('test.retention', 'forever');
SELECT opsdata.set_setting('test.retention', '-1 day');
SELECT opsdata.set_setting('test.retention', '30 days');
SELECT key, value, changed FROM opsdata.current_settings WHERE key = 'test.retention';
SELECT opsdata.reset_setting('test.retention');
SELECT count(*) FROM opsdata.config;

-- Dropping the extension needs no CASCADE and leaves only the roles.
DROP EXTENSION pg_opsdata;
SELECT nspname FROM pg_namespace
 WHERE nspname IN ('audit', 'learning', 'metrics', 'opsdata');
SELECT count(*) AS roles_kept FROM pg_roles WHERE rolname LIKE 'opsdata\_%';

-- Made again on top of the kept roles.
CREATE EXTENSION pg_opsdata;
SELECT count(*) AS schemas FROM pg_namespace
 WHERE nspname IN ('audit', 'learning', 'metrics', 'opsdata');
DROP EXTENSION pg_opsdata;

-- Secrets never reach the audit trail: passwords of roles, options of user
-- mappings and foreign servers, connection strings of subscriptions are
-- redacted using the parse tree, whatever the quoting and spacing.
CREATE EXTENSION pg_opsdata;
CREATE FOREIGN DATA WRAPPER audit_fdw;
SET pg_opsdata.audit = 'role, ddl';
CREATE ROLE audit_pw_a PASSWORD 'hunter2' LOGIN;
CREATE USER audit_pw_b WITH ENCRYPTED   PASSWORD
	E'it''s \\ sesame' VALID UNTIL 'infinity';
ALTER ROLE audit_pw_a PASSWORD $pw$dollarpw 'quoted'$pw$;
ALTER USER audit_pw_b /* comment */ PASSWORD 'x' CONNECTION LIMIT 3;
ALTER ROLE audit_pw_a PASSWORD NULL;
CREATE SERVER audit_srv FOREIGN DATA WRAPPER audit_fdw OPTIONS (host 'db.example', password 'srvpass');
ALTER SERVER audit_srv OPTIONS (SET password 'newsrvpass');
CREATE USER MAPPING FOR audit_pw_a SERVER audit_srv OPTIONS (user 'remote', password 'mappass');
ALTER USER MAPPING FOR audit_pw_a SERVER audit_srv OPTIONS (SET password 'mappass2');
CREATE PUBLICATION audit_pub;
CREATE SUBSCRIPTION audit_sub CONNECTION 'host=db.example password=subpass' PUBLICATION audit_pub
	WITH (connect = false, slot_name = NONE, enabled = false);
ALTER SUBSCRIPTION audit_sub CONNECTION 'password=subpass2';
-- Values of settings that carry connection strings, passwords or commands,
-- set by SET, ALTER SYSTEM, ALTER ROLE / DATABASE ... SET or a function's
-- SET clause; other settings keep their values.
SET pg_opsdata.audit = 'role, ddl, misc';
ALTER SYSTEM SET primary_conninfo = 'host=primary user=rep password=conninfopw';
ALTER SYSTEM SET restore_command TO 'fetch --key cmdsecret %f %p';
ALTER SYSTEM SET ssl_passphrase_command = $$echo passphrasepw$$;
ALTER SYSTEM RESET primary_conninfo;
ALTER SYSTEM RESET restore_command;
ALTER SYSTEM RESET ssl_passphrase_command;
SET audit_test.api_token = 'tokenvalue';
SET SESSION audit_test.password TO bareword, 'listpw';
SET audit_test.secret = -42;
ALTER ROLE audit_pw_a SET audit_test.password = 'rolepw';
ALTER USER audit_pw_a IN DATABASE contrib_regression SET audit_test.secret = 'rolesecret';
ALTER DATABASE contrib_regression SET audit_test.conninfo = 'host=x password=dbconnpw';
ALTER DATABASE contrib_regression RESET audit_test.conninfo;
ALTER ROLE audit_pw_a RESET ALL;
CREATE FUNCTION audit_secret_fn() RETURNS int LANGUAGE sql
	SET audit_test.password = 'fnpw' SET work_mem = '1MB' AS 'SELECT 1';
ALTER FUNCTION audit_secret_fn() SET audit_test.password = 'fnpw2';
DROP FUNCTION audit_secret_fn();
SET work_mem = '64MB';
RESET work_mem;
RESET audit_test.api_token;
SET pg_opsdata.audit = 'role, ddl, misc, read';
SELECT set_config('audit_test.api_token', 'cfgtoken', false) IS NOT NULL AS set,
	   pg_catalog.set_config('work_mem', '2MB', false) AS kept;
DO $$BEGIN PERFORM set_config('audit_test.password', 'plpgsqlpw', true); END$$;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
	SELECT set_config('audit_test.secret', 'explainpw', false);
RESET work_mem;
-- Statements that fail to parse are recorded without their text when it
-- may hold a secret.
CREATE ROLE audit_pw_c PASSWORD 'typopw' LOGINN;
ALTER SYSTEM SET primary_conninfo = 'user=rep host=typohost' garbage;
RESET pg_opsdata.audit;
SELECT audit.flush() >= 0 AS flushed;
SELECT class, command, outcome, statement_text FROM audit.trail ORDER BY ts, entry_id;

-- No secret anywhere in the trail.
SELECT count(*) AS leaks FROM audit.statements
 WHERE statement_text ~ '(hunter2|sesame|dollarpw|srvpass|mappass|subpass|typopw|conninfopw|cmdsecret|passphrasepw|tokenvalue|bareword|listpw|42|rolepw|rolesecret|dbconnpw|fnpw|typohost|cfgtoken|plpgsqlpw|explainpw)';

DROP SUBSCRIPTION audit_sub;
DROP PUBLICATION audit_pub;
DROP USER MAPPING FOR audit_pw_a SERVER audit_srv;
DROP SERVER audit_srv;
DROP FOREIGN DATA WRAPPER audit_fdw;
DROP ROLE audit_pw_a, audit_pw_b;
DROP EXTENSION pg_opsdata;

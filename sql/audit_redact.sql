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
-- Statements that fail to parse are recorded without their text when it
-- may hold a secret.
CREATE ROLE audit_pw_c PASSWORD 'typopw' LOGINN;
RESET pg_opsdata.audit;
SELECT audit.flush() >= 0 AS flushed;
SELECT class, command, outcome, statement_text FROM audit.trail ORDER BY ts, entry_id;

-- No secret anywhere in the trail.
SELECT count(*) AS leaks FROM audit.statements
 WHERE statement_text ~ '(hunter2|sesame|dollarpw|srvpass|mappass|subpass|typopw)';

DROP SUBSCRIPTION audit_sub;
DROP PUBLICATION audit_pub;
DROP USER MAPPING FOR audit_pw_a SERVER audit_srv;
DROP SERVER audit_srv;
DROP FOREIGN DATA WRAPPER audit_fdw;
DROP ROLE audit_pw_a, audit_pw_b;
DROP EXTENSION pg_opsdata;

-- audit.rules include or exclude statements by role (membership counts),
-- database, schema, relation and class; exclusions win.  Changes of the
-- rules and of the audit settings are always audited.
CREATE EXTENSION pg_opsdata;
CREATE SCHEMA payroll;
CREATE TABLE payroll.salaries (id int, amount numeric);
CREATE TABLE public.notes (id int, body text);
INSERT INTO payroll.salaries VALUES (1, 100);
INSERT INTO notes VALUES (1, 'hello');
CREATE ROLE audit_reporting;
CREATE ROLE audit_analyst IN ROLE audit_reporting;
GRANT SELECT ON payroll.salaries, notes TO audit_reporting;
GRANT USAGE ON SCHEMA payroll TO audit_reporting;
CREATE TABLE shown (last bigint);
INSERT INTO shown VALUES (0);
CREATE FUNCTION trail()
RETURNS TABLE (class text, command text, current_user_name text, objects text[], outcome text,
			   statement text)
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM audit.flush();
	RETURN QUERY
		SELECT t.class, t.command, t.current_user_name, t.objects, t.outcome, t.statement_text
		  FROM audit.trail t
		 WHERE t.entry_id > (SELECT last FROM shown)
		 ORDER BY t.ts, t.entry_id;
	UPDATE shown SET last = (SELECT coalesce(max(entry_id), 0) FROM audit.entries);
END
$$;

-- Changes of audit settings are audited even when nothing else is.
SET pg_opsdata.audit = 'none';
SET pg_opsdata.audit_parameters = on;
RESET pg_opsdata.audit_parameters;
ALTER ROLE audit_analyst SET pg_opsdata.audit = 'read';
ALTER ROLE audit_analyst RESET pg_opsdata.audit;
SET work_mem = '4MB';
SELECT * FROM trail();

-- An include rule brings in what the classes leave out: reads of the
-- payroll schema, by anyone.
SELECT audit.add_rule('include', schema_name => 'payroll', class => 'read',
					  comment => 'who reads salaries') AS payroll_rule \gset
SELECT * FROM trail();
SELECT sum(amount) FROM payroll.salaries;
SELECT count(*) FROM notes;
SELECT * FROM trail();

-- An exclude rule by role applies to members of the role too, and wins
-- over the include rule and over the classes.
SELECT audit.add_rule('exclude', role_name => 'audit_reporting') AS reporting_rule \gset
SET pg_opsdata.audit = 'read';
SET ROLE audit_analyst;
SELECT sum(amount) FROM payroll.salaries;
SELECT count(*) FROM notes;
RESET ROLE;
SELECT count(*) FROM notes;
RESET pg_opsdata.audit;
SELECT * FROM trail();

-- By relation (qualified as in audit.entries.objects) and by class.
SELECT audit.drop_rule(:reporting_rule);
SELECT audit.add_rule('exclude', relation_name => 'public.notes') AS notes_rule \gset
SET pg_opsdata.audit = 'read, write';
SELECT count(*) FROM notes;
INSERT INTO notes VALUES (2, 'not audited');
INSERT INTO payroll.salaries VALUES (2, 200);
RESET pg_opsdata.audit;
SELECT * FROM trail();

-- By database: a rule for another database does not apply here.
SELECT audit.drop_rule(:notes_rule);
SELECT audit.add_rule('exclude', database_name => 'no_such_database', class => 'write') AS other_db_rule \gset
SET pg_opsdata.audit = 'write';
INSERT INTO notes VALUES (3, 'audited');
RESET pg_opsdata.audit;
SELECT * FROM trail();

SELECT action, role_name, database_name, schema_name, relation_name, class, comment
  FROM audit.rules ORDER BY rule_id;

-- Bad rules are refused and change nothing.
SELECT audit.add_rule('ignore');
SELECT audit.add_rule('include', class => 'reads');
SELECT audit.drop_rule(-1);
SELECT count(*) AS rules FROM audit.rules;

-- Only audit administrators manage rules, and what narrows the trail
-- (adding an exclude rule, dropping an include rule) is for superusers
-- (audit_duties tests it further).
CREATE ROLE audit_admin_user IN ROLE opsdata_admin;
SET ROLE audit_analyst;
SELECT audit.add_rule('exclude');
SET ROLE audit_admin_user;
SELECT audit.drop_rule(:payroll_rule);
SELECT audit.drop_rule(:other_db_rule);
RESET ROLE;
SELECT audit.drop_rule(:payroll_rule);

-- A session's first statement may set the isolation level: reading the
-- rules takes no snapshot of the transaction.
\c
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT pg_catalog.current_setting('transaction_isolation');
COMMIT;

REVOKE ALL ON payroll.salaries, notes FROM audit_reporting;
REVOKE ALL ON SCHEMA payroll FROM audit_reporting;
DROP ROLE audit_analyst, audit_reporting, audit_admin_user;
DROP SCHEMA payroll CASCADE;
DROP FUNCTION trail();
DROP TABLE shown, public.notes;
DROP EXTENSION pg_opsdata;

-- pg_opsdata.audit chooses the classes of statements that are audited:
-- each class captures its own statements, with their objects, the
-- privilege used and the rows processed, and nothing else.
CREATE EXTENSION pg_opsdata;
CREATE TABLE accounts (id int PRIMARY KEY, owner text, balance numeric);
INSERT INTO accounts VALUES (1, 'ann', 100), (2, 'bob', 50);
CREATE FUNCTION add_interest(rate numeric) RETURNS void LANGUAGE plpgsql
	AS $$ BEGIN UPDATE accounts SET balance = balance * (1 + rate); END $$;

-- What the trail shows since the last call, without the SET and RESET of
-- pg_opsdata.audit around each case (changes of audit settings are always
-- audited: audit_rules shows them).
CREATE TABLE shown (last bigint);
INSERT INTO shown VALUES (0);
CREATE FUNCTION trail()
RETURNS TABLE (class text, command text, objects text[], privileges text[], rows bigint,
			   outcome text, sqlstate text, statement text)
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM audit.flush();
	RETURN QUERY
		SELECT t.class, t.command, t.objects, t.privileges, t.rows, t.outcome, t.sqlstate, t.statement_text
		  FROM audit.trail t
		 WHERE t.entry_id > (SELECT last FROM shown)
		   AND NOT (t.command IN ('SET', 'RESET') AND t.objects[1] LIKE 'pg\_opsdata.audit%')
		 ORDER BY t.ts, t.entry_id;
	UPDATE shown SET last = (SELECT coalesce(max(entry_id), 0) FROM audit.entries);
END
$$;

-- Nothing is audited by default.
SHOW pg_opsdata.audit;
SELECT * FROM accounts WHERE id = 1;
SELECT * FROM trail();

-- read: SELECT, and COPY TO.
SET pg_opsdata.audit = 'read';
SELECT owner FROM accounts ORDER BY id;
COPY accounts (id) TO STDOUT;
UPDATE accounts SET balance = balance + 1 WHERE id = 1;
RESET pg_opsdata.audit;
SELECT * FROM trail();

-- write: INSERT, UPDATE, DELETE, MERGE-like upserts, TRUNCATE, COPY FROM;
-- a SELECT with a data-modifying WITH is a write.
SET pg_opsdata.audit = 'write';
INSERT INTO accounts VALUES (3, 'cy', 0);
UPDATE accounts SET balance = balance + 1 WHERE id = 3;
INSERT INTO accounts VALUES (3, 'cy', 0) ON CONFLICT (id) DO UPDATE SET owner = 'cyd';
WITH gone AS (DELETE FROM accounts WHERE id = 3 RETURNING *) SELECT count(*) FROM gone;
COPY accounts FROM STDIN;
4	dee	10
5	eve	20
\.
SELECT count(*) FROM accounts;
RESET pg_opsdata.audit;
SELECT * FROM trail();

-- function: calls of user functions (the statement calling them is read).
SET pg_opsdata.audit = 'function';
SELECT add_interest(0.1);
DO $$ BEGIN PERFORM 1; END $$;
RESET pg_opsdata.audit;
SELECT * FROM trail();

-- Statements inside a function are audited in their own right.
SET pg_opsdata.audit = 'write';
SELECT add_interest(0);
RESET pg_opsdata.audit;
SELECT * FROM trail();

-- role: roles, memberships and grants.
SET pg_opsdata.audit = 'role';
CREATE ROLE audit_clerk NOLOGIN;
GRANT SELECT ON accounts TO audit_clerk;
GRANT audit_clerk TO CURRENT_USER;
REVOKE audit_clerk FROM CURRENT_USER;
ALTER ROLE audit_clerk CONNECTION LIMIT 1;
CREATE TABLE not_a_role_statement (id int);
RESET pg_opsdata.audit;
SELECT * FROM trail();

-- ddl: with the identities of the objects made, altered and dropped.
SET pg_opsdata.audit = 'ddl';
CREATE TABLE ledger (id serial PRIMARY KEY, note text);
ALTER TABLE ledger ADD COLUMN amount numeric;
CREATE INDEX ledger_note_idx ON ledger (note);
CREATE VIEW rich AS SELECT * FROM accounts WHERE balance > 50;
DROP VIEW rich;
DROP TABLE ledger;
SELECT 1 AS not_ddl;
RESET pg_opsdata.audit;
SELECT * FROM trail();

-- misc: transaction control, SET, VACUUM, CHECKPOINT, cursors...
SET pg_opsdata.audit = 'misc';
BEGIN;
DECLARE c CURSOR FOR SELECT id FROM accounts ORDER BY id;
FETCH 2 FROM c;
CLOSE c;
COMMIT;
SET work_mem = '8MB';
VACUUM accounts;
RESET pg_opsdata.audit;
SELECT * FROM trail();

-- Several classes at once, and "all" minus a class.
SET pg_opsdata.audit = 'read, write';
SELECT count(*) FROM accounts;
DELETE FROM accounts WHERE id = 5;
CREATE TABLE skipped (id int);
RESET pg_opsdata.audit;
SELECT * FROM trail();
SET pg_opsdata.audit = 'all, -misc, -read';
BEGIN;
SELECT count(*) FROM accounts;
INSERT INTO skipped VALUES (1);
COMMIT;
RESET pg_opsdata.audit;
SELECT * FROM trail();

-- pg_opsdata.audit_catalog = off leaves out statements that only read
-- system catalogs.
SET pg_opsdata.audit = 'read';
SET pg_opsdata.audit_catalog = off;
SELECT count(*) > 0 AS has_classes FROM pg_catalog.pg_class;
SELECT count(*) AS accounts_and_catalog FROM accounts, pg_catalog.pg_namespace WHERE nspname = 'audit';
RESET pg_opsdata.audit_catalog;
RESET pg_opsdata.audit;
SELECT * FROM trail();

-- Bad values are refused.
SET pg_opsdata.audit = 'reads';
SET pg_opsdata.audit_overflow = 'sometimes';

-- Only superusers change what is audited.
CREATE ROLE audit_nobody;
SET ROLE audit_nobody;
SET pg_opsdata.audit = 'none';
RESET ROLE;

-- Entries carry the session's facts.
SET pg_opsdata.audit = 'read';
SELECT 42 AS answer;
RESET pg_opsdata.audit;
SELECT audit.flush() >= 0 AS flushed;
SELECT database = current_database() AS database, username = session_user AS username,
	   current_user_name = current_user AS current_user_name, application = 'pg_regress/audit_classes' AS application,
	   client_addr IS NULL AS unix_socket, backend_pid = pg_backend_pid() AS backend_pid,
	   xid IS NULL AS read_only, duration >= interval '0' AS has_duration
  FROM audit.trail WHERE statement_text = 'SELECT 42 AS answer';

REVOKE ALL ON accounts FROM audit_clerk;
DROP ROLE audit_nobody, audit_clerk;
DROP FUNCTION trail();
DROP FUNCTION add_interest(numeric);
DROP TABLE shown, accounts, not_a_role_statement, skipped;
DROP EXTENSION pg_opsdata;

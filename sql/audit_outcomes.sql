-- Every audited statement has an outcome: ok, error (with its SQLSTATE),
-- denied, or rolled back when its transaction or savepoint was rolled
-- back; the exact statement of a multi-statement string is recorded.
CREATE EXTENSION pg_opsdata;
CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
CREATE ROLE audit_outsider;
CREATE TABLE shown (last bigint);
INSERT INTO shown VALUES (0);
CREATE FUNCTION trail()
RETURNS TABLE (class text, command text, objects text[], rows bigint, outcome text,
			   sqlstate text, statement text)
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM audit.flush();
	RETURN QUERY
		SELECT t.class, t.command, t.objects, t.rows, t.outcome, t.sqlstate, t.statement_text
		  FROM audit.trail t
		 WHERE t.entry_id > (SELECT last FROM shown)
		   AND NOT (t.command IN ('SET', 'RESET') AND t.objects[1] LIKE 'pg\_opsdata.audit%')
		 ORDER BY t.ts, t.entry_id;
	UPDATE shown SET last = (SELECT coalesce(max(entry_id), 0) FROM audit.entries);
END
$$;

SET pg_opsdata.audit = 'read, write, ddl, misc';

-- ok, and errors with their SQLSTATE: at execution, at parse analysis, a
-- syntax error, and a constraint violation.
INSERT INTO items VALUES (1, 'one');
INSERT INTO items VALUES (1, 'again');
INSERT INTO items VALUES (2, NULL);
SELECT name FROM no_such_table;
SELEC 1;
SELECT 1 / (id - 1) FROM items;
RESET pg_opsdata.audit;
SELECT * FROM trail();

-- denied: permission errors name the objects that were refused.
SET pg_opsdata.audit = 'read, write';
SET ROLE audit_outsider;
SELECT * FROM items;
DELETE FROM items;
RESET ROLE;
RESET pg_opsdata.audit;
SELECT * FROM trail();

-- A rolled-back transaction: its statements are recorded as rolled back,
-- reads included; ROLLBACK itself was ok.
SET pg_opsdata.audit = 'read, write, misc';
BEGIN;
INSERT INTO items VALUES (10, 'ten');
UPDATE items SET name = 'TEN' WHERE id = 10;
SELECT count(*) FROM items;
ROLLBACK;
RESET pg_opsdata.audit;
SELECT * FROM trail();
SELECT count(*) AS rows_left FROM items WHERE id = 10;

-- A transaction hands its queued entries (reads here) to the queue a
-- thousand at a time: when it rolls back, those handed over keep ok, the
-- rest become rolled back (doc/audit.md, "Outcomes").
SET pg_opsdata.audit = 'read';
BEGIN;
DO $$ BEGIN FOR i IN 1..1003 LOOP PERFORM count(*) FROM items; END LOOP; END $$;
ROLLBACK;
RESET pg_opsdata.audit;
SELECT audit.flush() >= 0 AS flushed;
SELECT outcome, count(*) FROM audit.trail
 WHERE entry_id > (SELECT last FROM shown) AND statement_text = 'SELECT count(*) FROM items'
 GROUP BY outcome ORDER BY outcome;
UPDATE shown SET last = (SELECT coalesce(max(entry_id), 0) FROM audit.entries);

-- A transaction that fails: the failing statement is an error, those
-- before it rolled back, those after it refused (25P02).
SET pg_opsdata.audit = 'read, write, misc';
BEGIN;
INSERT INTO items VALUES (11, 'eleven');
INSERT INTO items VALUES (11, 'eleven again');
SELECT 1;
COMMIT;
RESET pg_opsdata.audit;
SELECT * FROM trail();

-- Savepoints: what a ROLLBACK TO undid is rolled back, the rest commits.
SET pg_opsdata.audit = 'write';
BEGIN;
INSERT INTO items VALUES (20, 'kept');
SAVEPOINT a;
INSERT INTO items VALUES (21, 'undone');
SAVEPOINT b;
UPDATE items SET name = 'undone too' WHERE id = 20;
ROLLBACK TO a;
INSERT INTO items VALUES (22, 'kept too');
SAVEPOINT c;
INSERT INTO items VALUES (23, 'released');
RELEASE c;
COMMIT;
RESET pg_opsdata.audit;
SELECT * FROM trail();
SELECT id, name FROM items WHERE id >= 20 ORDER BY id;

-- An error caught by PL/pgSQL: the statements of the aborted block are
-- rolled back, the function's caller completes.
SET pg_opsdata.audit = 'write';
DO $$
BEGIN
	INSERT INTO items VALUES (30, 'in block');
	BEGIN
		INSERT INTO items VALUES (31, 'in sub-block');
		INSERT INTO items VALUES (30, 'duplicate');
	EXCEPTION WHEN unique_violation THEN
		NULL;
	END;
END
$$;
RESET pg_opsdata.audit;
SELECT * FROM trail();

-- Multi-statement strings: each statement is recorded with its own text.
SET pg_opsdata.audit = 'read, write';
SELECT 'first' AS s\; INSERT INTO items VALUES (40, 'second')\; SELECT 'third' AS s;
RESET pg_opsdata.audit;
SELECT * FROM trail();

-- Cursors: recorded when closed, with every row fetched; prepared
-- statements with their text (and parameters when asked for).
SET pg_opsdata.audit = 'read, write';
SET pg_opsdata.audit_parameters = on;
BEGIN;
DECLARE c CURSOR FOR SELECT id FROM items ORDER BY id;
FETCH 2 FROM c;
FETCH 1 FROM c;
CLOSE c;
COMMIT;
PREPARE ins(int, text) AS INSERT INTO items VALUES ($1, $2);
EXECUTE ins(50, 'fifty');
EXECUTE ins(51, 'fifty-one');
DEALLOCATE ins;
RESET pg_opsdata.audit_parameters;
RESET pg_opsdata.audit;
SELECT * FROM trail();
SELECT params FROM audit.entries WHERE params IS NOT NULL ORDER BY ts;

-- Each distinct statement text is stored once.
SELECT count(*) = count(DISTINCT statement_text) AS each_text_once FROM audit.statements;
SELECT count(*) AS entries_without_text FROM audit.entries e
 WHERE e.statement_id IS NOT NULL AND NOT EXISTS (SELECT FROM audit.statements s WHERE s.statement_id = e.statement_id);

DROP ROLE audit_outsider;
DROP FUNCTION trail();
DROP TABLE shown, items;
DROP EXTENSION pg_opsdata;

-- The backend's cache of stored texts follows audit.statements when the
-- table is made again or truncated: the text is stored again.
CREATE EXTENSION pg_opsdata;
CREATE TABLE again (id int);
SET pg_opsdata.audit = 'write';
INSERT INTO again VALUES (1);
RESET pg_opsdata.audit;
DROP EXTENSION pg_opsdata;
CREATE EXTENSION pg_opsdata;
SET pg_opsdata.audit = 'write';
INSERT INTO again VALUES (1);
RESET pg_opsdata.audit;
SELECT command, statement_text FROM audit.trail WHERE command = 'INSERT';
TRUNCATE audit.statements;
SET pg_opsdata.audit = 'write';
INSERT INTO again VALUES (1);
RESET pg_opsdata.audit;
SELECT command, statement_text FROM audit.trail WHERE command = 'INSERT' ORDER BY entry_id;
-- Nothing of this test stays queued for the next one.
SELECT audit.flush() >= 0 AS flushed;
DROP TABLE again;
DROP EXTENSION pg_opsdata;

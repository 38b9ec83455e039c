-- pg_opsdata.audit_skip_applications: in a server where Citus is loaded,
-- a superuser's session whose application_name begins with one of its
-- prefixes (Citus's internal connections) is not audited
-- (test/tap/031_audit_sessions.pl).  Without Citus, every session is
-- audited whatever its name, a superuser's too; anyone else's session
-- with such a name always is; only superusers change the list.
CREATE EXTENSION pg_opsdata;
CREATE TABLE notes (id int);
CREATE ROLE audit_skip_user;
GRANT SELECT ON notes TO audit_skip_user;
CREATE TABLE shown (last bigint);
INSERT INTO shown VALUES (0);
CREATE FUNCTION trail()
RETURNS TABLE (command text, username text, application text, statement text)
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM audit.flush();
	RETURN QUERY
		SELECT t.command, t.username::text, t.application, t.statement_text
		  FROM audit.trail t
		 WHERE t.entry_id > (SELECT last FROM shown)
		 ORDER BY t.ts, t.entry_id;
	UPDATE shown SET last = (SELECT coalesce(max(entry_id), 0) FROM audit.entries);
END
$$;
GRANT EXECUTE ON FUNCTION trail() TO audit_skip_user;

SHOW pg_opsdata.audit_skip_applications;
UPDATE shown SET last = (SELECT coalesce(max(entry_id), 0) FROM audit.entries);
-- (The SET is audited and queued: it comes after the last entry shown.)
SET pg_opsdata.audit = 'read';

-- Without Citus loaded, no session is one of its internal connections: a
-- superuser's session named as Citus names them is audited, and a setting
-- of Citus's name made by SET (a placeholder) does not make Citus loaded.
SET citus.max_worker_nodes_tracked = 2048;
SET application_name = 'citus_internal gpid=10000000001';
SELECT count(*) FROM notes;
SET application_name = 'citus_rebalancer gpid=10000000002';
SELECT count(*) FROM notes;
RESET application_name;
SELECT count(*) FROM notes WHERE id > 0;
SELECT * FROM trail();

-- Another role's session with the same name is audited too, and may not
-- change the list.
SET SESSION AUTHORIZATION audit_skip_user;
SET application_name = 'citus_internal gpid=10000000003';
SELECT count(*) FROM notes;
SET pg_opsdata.audit_skip_applications = '';
RESET application_name;
RESET SESSION AUTHORIZATION;
SELECT * FROM trail();

-- The list is a superuser's setting.
SET pg_opsdata.audit_skip_applications = 'batch, "nightly report"';
SHOW pg_opsdata.audit_skip_applications;
SET application_name = 'nightly report 2024-03-01';
SELECT count(*) FROM notes;
RESET application_name;
RESET pg_opsdata.audit_skip_applications;
SELECT command, application, statement FROM trail();

RESET pg_opsdata.audit;
RESET citus.max_worker_nodes_tracked;
DROP FUNCTION trail();
DROP TABLE shown, notes;
DROP ROLE audit_skip_user;
DROP EXTENSION pg_opsdata;

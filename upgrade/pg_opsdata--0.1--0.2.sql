-- pg_opsdata update from 0.1 to 0.2.
--
-- Every schema change of 0.2 has its step here, in the order it was made:
-- an installation updated with ALTER EXTENSION pg_opsdata UPDATE has the
-- same objects as a fresh CREATE EXTENSION of 0.2 (test/tap/003_core_upgrade.pl
-- compares them).
\echo Use "ALTER EXTENSION pg_opsdata UPDATE TO '0.2'" to load this file. \quit

-- Audit entries made while a dump is being restored are held until the
-- restore has ended.
CREATE TABLE audit.held_entries (
	ts					timestamptz NOT NULL,
	database			text NOT NULL,
	username			text NOT NULL,
	current_user_name	text NOT NULL,
	application			text,
	client_addr			inet,
	backend_pid			integer NOT NULL,
	xid					xid8,
	class				text NOT NULL
						CHECK (class IN ('read', 'write', 'function', 'role', 'ddl', 'misc', 'login')),
	command				text NOT NULL,
	objects				text[],
	privileges			text[],
	rows				bigint,
	duration			interval,
	outcome				text NOT NULL
						CHECK (outcome IN ('ok', 'error', 'rolled back', 'denied', 'failed')),
	sqlstate			text,
	statement_text		text,
	params				text
);

COMMENT ON TABLE audit.held_entries IS 'Audit entries made while a dump was being restored into the database; they move into audit.entries once the restore has ended';
COMMENT ON COLUMN audit.held_entries.ts IS 'When the statement started';
COMMENT ON COLUMN audit.held_entries.database IS 'Database the session was connected to';
COMMENT ON COLUMN audit.held_entries.username IS 'Session user (who logged in)';
COMMENT ON COLUMN audit.held_entries.current_user_name IS 'Current user when the statement ran';
COMMENT ON COLUMN audit.held_entries.application IS 'application_name of the session';
COMMENT ON COLUMN audit.held_entries.client_addr IS 'Client address; NULL for Unix-domain sockets';
COMMENT ON COLUMN audit.held_entries.backend_pid IS 'Process ID of the backend';
COMMENT ON COLUMN audit.held_entries.xid IS 'Top-level transaction ID, when one was assigned';
COMMENT ON COLUMN audit.held_entries.class IS 'read, write, function, role, ddl, misc or login';
COMMENT ON COLUMN audit.held_entries.command IS 'Command tag, e.g. INSERT or CREATE TABLE';
COMMENT ON COLUMN audit.held_entries.objects IS 'Qualified names of the objects the statement touched';
COMMENT ON COLUMN audit.held_entries.privileges IS 'Privilege used on each object, in the order of objects';
COMMENT ON COLUMN audit.held_entries.rows IS 'Rows processed';
COMMENT ON COLUMN audit.held_entries.duration IS 'How long the statement ran';
COMMENT ON COLUMN audit.held_entries.outcome IS 'ok, error, denied, rolled back or failed';
COMMENT ON COLUMN audit.held_entries.sqlstate IS 'SQLSTATE of the error, for outcomes other than ok';
COMMENT ON COLUMN audit.held_entries.statement_text IS 'The statement, with secrets redacted';
COMMENT ON COLUMN audit.held_entries.params IS 'Bind parameters, when their capture is on';

CREATE TRIGGER refuse_change BEFORE UPDATE OR DELETE ON audit.held_entries
	FOR EACH ROW EXECUTE FUNCTION audit._refuse_change();
SELECT pg_catalog.pg_extension_config_dump('audit.held_entries', '');
GRANT SELECT ON audit.held_entries TO opsdata_auditor;

-- pg_opsdata update from 0.1 to 0.2.
--
-- Every schema change of 0.2 has its step here, in the order it was made:
-- an installation updated with ALTER EXTENSION pg_opsdata UPDATE has the
-- same objects as a fresh CREATE EXTENSION of 0.2 (test/tap/003_core_upgrade.pl
-- compares them).
\echo Use "ALTER EXTENSION pg_opsdata UPDATE TO '0.2'" to load this file. \quit

-- Audit: audit.statements holds statement shapes, audit.entries the
-- constants of each statement; texts stored by 0.1 have no placeholders
-- and read as they are.
ALTER TABLE audit.statements ADD COLUMN placeholders integer[];
COMMENT ON TABLE audit.statements IS 'Each distinct audited statement shape, stored once: the statement with its constants replaced by placeholders, or the statement itself when it has none';
COMMENT ON COLUMN audit.statements.statement_id IS 'Identifier audit.entries.statement_id refers to, derived from a hash of the shape (the same on every server)';
COMMENT ON COLUMN audit.statements.statement_text IS 'The statement with its constants replaced by $n placeholders, secrets redacted';
COMMENT ON COLUMN audit.statements.first_seen IS 'When the shape was first audited';
COMMENT ON COLUMN audit.statements.placeholders IS 'Byte offset (from 0) in statement_text of the placeholder of each constant, in order; NULL when the text has none';

ALTER TABLE audit.entries ADD COLUMN constants text[];
COMMENT ON COLUMN audit.entries.statement_id IS 'The statement''s shape, in audit.statements';
COMMENT ON COLUMN audit.entries.constants IS 'The constants of the statement as they were written, one per placeholder of its shape; NULL when its shape has none';

CREATE FUNCTION audit.rebuild_statement(shape text, placeholders integer[], constants text[])
RETURNS text
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'audit_rebuild_statement';

COMMENT ON FUNCTION audit.rebuild_statement(text, integer[], text[]) IS 'The statement a shape and its constants stand for, byte for byte; the shape itself when it has no placeholders';

CREATE OR REPLACE VIEW audit.trail AS
	SELECT e.entry_id, e.ts, e.database, e.username, e.current_user_name, e.application,
		   e.client_addr, e.backend_pid, e.xid, e.class, e.command, e.objects, e.privileges,
		   e.rows, e.duration, e.outcome, e.sqlstate,
		   audit.rebuild_statement(s.statement_text, s.placeholders, e.constants) AS statement_text,
		   e.params, e.statement_id, e.constants
	  FROM audit.entries e LEFT JOIN audit.statements s USING (statement_id);

COMMENT ON VIEW audit.trail IS 'audit.entries with the text of each statement, as it was sent';

CREATE FUNCTION audit.shapes(since timestamptz, until timestamptz DEFAULT pg_catalog.now(),
	object text DEFAULT NULL,
	OUT statement_id bigint, OUT shape text, OUT class text, OUT command text, OUT username text,
	OUT executions bigint, OUT ok bigint, OUT errors bigint, OUT denied bigint,
	OUT rolled_back bigint, OUT rows numeric, OUT first_ts timestamptz, OUT last_ts timestamptz)
RETURNS SETOF record
LANGUAGE sql STABLE
AS $$
	SELECT e.statement_id, s.statement_text, e.class, e.command, e.username,
		   pg_catalog.count(*),
		   pg_catalog.count(*) FILTER (WHERE e.outcome OPERATOR(pg_catalog.=) 'ok'),
		   pg_catalog.count(*) FILTER (WHERE e.outcome OPERATOR(pg_catalog.=) 'error'),
		   pg_catalog.count(*) FILTER (WHERE e.outcome OPERATOR(pg_catalog.=) 'denied'),
		   pg_catalog.count(*) FILTER (WHERE e.outcome OPERATOR(pg_catalog.=) 'rolled back'),
		   pg_catalog.sum(e.rows), pg_catalog.min(e.ts), pg_catalog.max(e.ts)
	  FROM audit.entries e
	  LEFT JOIN audit.statements s ON s.statement_id OPERATOR(pg_catalog.=) e.statement_id
	 WHERE e.ts OPERATOR(pg_catalog.>=) since AND e.ts OPERATOR(pg_catalog.<) until
	   AND (object IS NULL OR e.objects OPERATOR(pg_catalog.@>) ARRAY[object])
	 GROUP BY e.statement_id, s.statement_text, e.class, e.command, e.username
$$;

COMMENT ON FUNCTION audit.shapes(timestamptz, timestamptz, text) IS 'Statement shapes run from since until until (that touched object, when given): by whom, how often, with what outcomes';

REVOKE ALL ON FUNCTION audit.rebuild_statement(text, integer[], text[]),
	audit.shapes(timestamptz, timestamptz, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.rebuild_statement(text, integer[], text[]),
	audit.shapes(timestamptz, timestamptz, text) TO opsdata_auditor;

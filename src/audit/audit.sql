-- Audit: entries, statement texts and rules (the processing queues are in
-- pqueue.sql, the seal chain in seal.sql).
--
-- Audit tables are written by the extension only.  No role, the auditors
-- included, is granted INSERT, UPDATE, DELETE or TRUNCATE on them, and
-- the guard trigger stops roles that bypass grants: only the extension
-- owner (a superuser) can change them, and retention removes whole
-- partitions.

CREATE TABLE audit.statements (
	statement_id	bigint PRIMARY KEY,
	statement_text	text NOT NULL,
	first_seen		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	placeholders	integer[]
);

COMMENT ON TABLE audit.statements IS 'Each distinct audited statement shape, stored once: the statement with its constants replaced by placeholders, or the statement itself when it has none';
COMMENT ON COLUMN audit.statements.statement_id IS 'Identifier audit.entries.statement_id refers to, derived from a hash of the shape (the same on every server)';
COMMENT ON COLUMN audit.statements.statement_text IS 'The statement with its constants replaced by $n placeholders, secrets redacted';
COMMENT ON COLUMN audit.statements.first_seen IS 'When the shape was first audited';
COMMENT ON COLUMN audit.statements.placeholders IS 'Byte offset (from 0) in statement_text of the placeholder of each constant, in order; NULL when the text has none';

CREATE SEQUENCE audit.entries_entry_id_seq AS bigint;

-- The server an entry comes from (src/audit/server.c): the system
-- identifier of its cluster.  Each server numbers its entries on its own,
-- so the primary key includes it: a database that receives the entries of
-- other servers by logical replication keeps them beside its own.
CREATE FUNCTION audit.server_id()
RETURNS bigint
LANGUAGE c STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'audit_server_id';

COMMENT ON FUNCTION audit.server_id() IS 'This server''s identifier in audit.entries.server_id: the system identifier of its cluster (pg_control_system())';

CREATE TABLE audit.entries (
	entry_id			bigint NOT NULL DEFAULT pg_catalog.nextval('audit.entries_entry_id_seq'),
	ts					timestamptz NOT NULL DEFAULT pg_catalog.now(),
	database			text NOT NULL,
	username			text NOT NULL,
	current_user_name	text NOT NULL,
	application			text,
	client_addr			inet,
	backend_pid			integer NOT NULL,
	xid					xid8,
	class				text NOT NULL
						CHECK (class IN ('read', 'write', 'function', 'role', 'ddl', 'misc', 'login', 'app', 'imported')),
	command				text NOT NULL,
	objects				text[],
	privileges			text[],
	rows				bigint,
	duration			interval,
	outcome				text NOT NULL
						CHECK (outcome IN ('ok', 'error', 'rolled back', 'denied', 'failed')),
	sqlstate			text,
	statement_id		bigint,
	params				text,
	constants			text[],
	actor				text,
	request_id			text,
	attributes			jsonb,
	details				jsonb,
	server_id			bigint NOT NULL DEFAULT audit.server_id(),
	PRIMARY KEY (entry_id, ts, server_id)
) PARTITION BY RANGE (ts);

ALTER SEQUENCE audit.entries_entry_id_seq OWNED BY audit.entries.entry_id;

-- Auditors look by time (BRIN: ts grows with the table, and costs next to
-- nothing to maintain), by user and by object.  The by-user B-tree and the
-- by-object GIN index would cost every audited statement; they are built
-- on each day's partition once the day is over (audit._index_closed_partitions()).
CREATE INDEX entries_ts_idx ON audit.entries USING brin (ts);

-- Rows land here until partition maintenance has made the day's partition,
-- and maintenance moves them out.
CREATE TABLE audit.entries_default PARTITION OF audit.entries DEFAULT;

COMMENT ON TABLE audit.entries IS 'The audit trail: one row per audited statement, login or disconnect; partitioned by day';
COMMENT ON COLUMN audit.entries.entry_id IS 'Position in the audit trail; seals cover ranges of it';
COMMENT ON COLUMN audit.entries.ts IS 'When the statement started';
COMMENT ON COLUMN audit.entries.database IS 'Database the session was connected to';
COMMENT ON COLUMN audit.entries.username IS 'Session user (who logged in)';
COMMENT ON COLUMN audit.entries.current_user_name IS 'Current user when the statement ran (after SET ROLE or SECURITY DEFINER)';
COMMENT ON COLUMN audit.entries.application IS 'application_name of the session';
COMMENT ON COLUMN audit.entries.client_addr IS 'Client address; NULL for Unix-domain sockets';
COMMENT ON COLUMN audit.entries.backend_pid IS 'Process ID of the backend';
COMMENT ON COLUMN audit.entries.xid IS 'Top-level transaction ID, when one was assigned';
COMMENT ON COLUMN audit.entries.class IS 'read, write, function, role, ddl, misc or login; app for application events; imported for the events of an older audit log (audit.import_events)';
COMMENT ON COLUMN audit.entries.command IS 'Command tag, e.g. INSERT or CREATE TABLE';
COMMENT ON COLUMN audit.entries.objects IS 'Qualified names of the objects the statement touched (relations, functions, roles, settings, or the identities of objects a DDL statement made, altered or dropped)';
COMMENT ON COLUMN audit.entries.privileges IS 'Privilege used on each object, in the order of objects (e.g. SELECT or SELECT,UPDATE); NULL where none applies';
COMMENT ON COLUMN audit.entries.rows IS 'Rows processed (returned, inserted, updated, deleted or copied)';
COMMENT ON COLUMN audit.entries.duration IS 'How long the statement ran (for a disconnect: how long the session lasted)';
COMMENT ON COLUMN audit.entries.outcome IS 'ok; error; denied (insufficient privilege); rolled back (the statement completed, but its transaction or savepoint was rolled back); failed (login)';
COMMENT ON COLUMN audit.entries.sqlstate IS 'SQLSTATE of the error, for outcomes other than ok';
COMMENT ON COLUMN audit.entries.statement_id IS 'The statement''s shape, in audit.statements';
COMMENT ON COLUMN audit.entries.params IS 'Bind parameters, when their capture is on';
COMMENT ON COLUMN audit.entries.constants IS 'The constants of the statement as they were written, one per placeholder of its shape; NULL when its shape has none';
COMMENT ON COLUMN audit.entries.actor IS 'The end user the application declared it acts for (pg_opsdata.audit_actor); proves nothing about who logged in';
COMMENT ON COLUMN audit.entries.request_id IS 'The request the application declared (pg_opsdata.audit_request_id)';
COMMENT ON COLUMN audit.entries.attributes IS 'More context the application declared (pg_opsdata.audit_attributes)';
COMMENT ON COLUMN audit.entries.details IS 'Details of an application event (audit.log_event())';
COMMENT ON COLUMN audit.entries.server_id IS 'The server that wrote the entry: the system identifier of its cluster (audit.server_id() there); entries replicated from another server keep that server''s';

-- While a dump is being restored into the database, audit entries cannot go
-- into audit.entries: the restore has yet to load its rows, attach its
-- partitions and set its sequence.  They are held here, with their
-- statement text and without an entry_id, and move into audit.entries once
-- the restore has ended (src/audit/hold.c).
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
						CHECK (class IN ('read', 'write', 'function', 'role', 'ddl', 'misc', 'login', 'app', 'imported')),
	command				text NOT NULL,
	objects				text[],
	privileges			text[],
	rows				bigint,
	duration			interval,
	outcome				text NOT NULL
						CHECK (outcome IN ('ok', 'error', 'rolled back', 'denied', 'failed')),
	sqlstate			text,
	statement_text		text,
	params				text,
	actor				text,
	request_id			text,
	attributes			jsonb,
	details				jsonb
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
COMMENT ON COLUMN audit.held_entries.class IS 'read, write, function, role, ddl, misc or login; app for application events; imported for the events of an older audit log (audit.import_events)';
COMMENT ON COLUMN audit.held_entries.command IS 'Command tag, e.g. INSERT or CREATE TABLE';
COMMENT ON COLUMN audit.held_entries.objects IS 'Qualified names of the objects the statement touched';
COMMENT ON COLUMN audit.held_entries.privileges IS 'Privilege used on each object, in the order of objects';
COMMENT ON COLUMN audit.held_entries.rows IS 'Rows processed';
COMMENT ON COLUMN audit.held_entries.duration IS 'How long the statement ran';
COMMENT ON COLUMN audit.held_entries.outcome IS 'ok, error, denied, rolled back or failed';
COMMENT ON COLUMN audit.held_entries.sqlstate IS 'SQLSTATE of the error, for outcomes other than ok';
COMMENT ON COLUMN audit.held_entries.statement_text IS 'The statement, with secrets redacted';
COMMENT ON COLUMN audit.held_entries.params IS 'Bind parameters, when their capture is on';
COMMENT ON COLUMN audit.held_entries.actor IS 'The end user the application declared it acts for (pg_opsdata.audit_actor); proves nothing about who logged in';
COMMENT ON COLUMN audit.held_entries.request_id IS 'The request the application declared (pg_opsdata.audit_request_id)';
COMMENT ON COLUMN audit.held_entries.attributes IS 'More context the application declared (pg_opsdata.audit_attributes)';
COMMENT ON COLUMN audit.held_entries.details IS 'Details of an application event (audit.log_event())';

CREATE TABLE audit.rules (
	rule_id			bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	action			text NOT NULL CHECK (action IN ('include', 'exclude')),
	role_name		name,
	database_name	name,
	schema_name		name,
	relation_name	text,
	class			text CHECK (class IN ('read', 'write', 'function', 'role', 'ddl', 'misc', 'login', 'app')),
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	created_by		name NOT NULL DEFAULT SESSION_USER,
	comment			text
);

COMMENT ON TABLE audit.rules IS 'Rules that include or exclude statements from the audit trail; NULL matches anything';
COMMENT ON COLUMN audit.rules.rule_id IS 'Rule identifier';
COMMENT ON COLUMN audit.rules.action IS 'include or exclude';
COMMENT ON COLUMN audit.rules.role_name IS 'Role the rule applies to, members included';
COMMENT ON COLUMN audit.rules.database_name IS 'Database the rule applies to';
COMMENT ON COLUMN audit.rules.schema_name IS 'Schema of the objects the rule applies to';
COMMENT ON COLUMN audit.rules.relation_name IS 'Qualified name of the relation the rule applies to';
COMMENT ON COLUMN audit.rules.class IS 'Statement class the rule applies to';
COMMENT ON COLUMN audit.rules.created_at IS 'When the rule was made';
COMMENT ON COLUMN audit.rules.created_by IS 'Who made the rule';
COMMENT ON COLUMN audit.rules.comment IS 'Free text';

-- Rows of audit tables are only ever inserted, by pg_opsdata: the guard of
-- every table of the extension (src/core/guard.c, put on by finish.sql)
-- refuses INSERT, UPDATE, DELETE and TRUNCATE to all but the owner, even
-- to roles that bypass GRANTs (pg_write_all_data).  When the owner changes
-- rows of audit.statements, the caches of stored texts forget what they
-- hold.
CREATE FUNCTION audit._statements_changed()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_statements_changed';

COMMENT ON FUNCTION audit._statements_changed() IS 'Internal: make the caches of stored statement texts forget what they hold when audit.statements changes';

CREATE TRIGGER statements_changed AFTER UPDATE OR DELETE ON audit.statements
	FOR EACH STATEMENT EXECUTE FUNCTION audit._statements_changed();

-- Logical replication (doc/scale-out.md).  A text has the same
-- statement_id on every server, so a text replicated from another server
-- may be stored here already.  The apply worker runs with
-- session_replication_role = replica, the one role this trigger fires in
-- (ENABLE REPLICA): it skips such a row instead of failing on the primary
-- key and stopping the subscription.
CREATE FUNCTION audit._statement_arrived()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF EXISTS (SELECT FROM audit.statements s WHERE s.statement_id OPERATOR(pg_catalog.=) NEW.statement_id) THEN
		RETURN NULL;
	END IF;
	RETURN NEW;
END
$$;

COMMENT ON FUNCTION audit._statement_arrived() IS 'Internal: skip a replicated statement text that is stored already';

CREATE TRIGGER statement_arrived BEFORE INSERT ON audit.statements
	FOR EACH ROW EXECUTE FUNCTION audit._statement_arrived();
ALTER TABLE audit.statements ENABLE REPLICA TRIGGER statement_arrived;

-- Tables without a primary key are logged whole when their rows are
-- deleted, so that a publication that carries them (FOR ALL TABLES) never
-- makes pg_opsdata's own deletes fail.
ALTER TABLE audit.held_entries REPLICA IDENTITY FULL;

SELECT pg_catalog.pg_extension_config_dump('audit.statements', '');
SELECT pg_catalog.pg_extension_config_dump('audit.entries_default', '');
SELECT pg_catalog.pg_extension_config_dump('audit.entries_entry_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('audit.rules', '');
SELECT pg_catalog.pg_extension_config_dump('audit.rules_rule_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('audit.held_entries', '');

--
-- Reading the trail.
--
CREATE FUNCTION audit.rebuild_statement(shape text, placeholders integer[], constants text[])
RETURNS text
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'audit_rebuild_statement';

COMMENT ON FUNCTION audit.rebuild_statement(text, integer[], text[]) IS 'The statement a shape and its constants stand for, byte for byte; the shape itself when it has no placeholders';

CREATE VIEW audit.trail AS
	SELECT e.entry_id, e.ts, e.database, e.username, e.current_user_name, e.application,
		   e.client_addr, e.backend_pid, e.xid, e.class, e.command, e.objects, e.privileges,
		   e.rows, e.duration, e.outcome, e.sqlstate,
		   audit.rebuild_statement(s.statement_text, s.placeholders, e.constants) AS statement_text,
		   e.params, e.statement_id, e.constants, e.actor, e.request_id, e.attributes, e.details, e.server_id
	  FROM audit.entries e LEFT JOIN audit.statements s USING (statement_id);

COMMENT ON VIEW audit.trail IS 'audit.entries with the text of each statement, as it was sent';

-- Inlined into the calling query (SQL, STABLE, no SET), so that the time
-- range prunes the partitions of audit.entries and reaches their indexes.
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

--
-- Functions.
--
CREATE FUNCTION audit.flush()
RETURNS bigint
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'audit_flush';

COMMENT ON FUNCTION audit.flush() IS 'Write every entry queued for this database now, in the calling transaction; returns how many';

CREATE FUNCTION audit.queue_state(OUT database text, OUT capacity bigint, OUT used bigint,
	OUT enqueued bigint, OUT drained bigint, OUT dropped bigint, OUT waits bigint,
	OUT failed_writes bigint, OUT last_drained timestamptz)
RETURNS SETOF record
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'audit_queue_state';

COMMENT ON FUNCTION audit.queue_state() IS 'The shared-memory audit queue of each database, with counters since the server started';

CREATE FUNCTION audit._health_audit(OUT component text, OUT status text, OUT detail text)
RETURNS SETOF record
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'audit_health';

COMMENT ON FUNCTION audit._health_audit() IS 'Internal: the audit rows of opsdata.health()';

CREATE FUNCTION audit._rules_changed(command text, object text)
RETURNS void
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'audit_rules_changed';

COMMENT ON FUNCTION audit._rules_changed(text, text) IS 'Internal: record a change of the audit rules and make sessions read them again';

CREATE FUNCTION audit._config_changed(command text, object text)
RETURNS void
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'audit_config_changed';

COMMENT ON FUNCTION audit._config_changed(text, text) IS 'Internal: record a change of a setting that governs the audit trail';

CREATE FUNCTION audit.add_rule(action text, role_name name DEFAULT NULL, database_name name DEFAULT NULL,
	schema_name name DEFAULT NULL, relation_name text DEFAULT NULL, class text DEFAULT NULL,
	comment text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	id bigint;
BEGIN
	IF action IS NULL OR action NOT IN ('include', 'exclude') THEN
		RAISE EXCEPTION 'invalid audit rule action "%"', action
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'The action is include or exclude.';
	END IF;
	IF class IS NOT NULL AND class NOT IN ('read', 'write', 'function', 'role', 'ddl', 'misc', 'login', 'app') THEN
		RAISE EXCEPTION 'invalid audit class "%"', class
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Valid classes are read, write, function, role, ddl, misc, login and app.';
	END IF;
	-- An exclude rule narrows the trail: superusers only.
	IF action = 'exclude' THEN
		PERFORM opsdata._trail_check('add an exclude audit rule');
	END IF;
	INSERT INTO audit.rules AS r (action, role_name, database_name, schema_name, relation_name, class, comment)
		 VALUES (add_rule.action, add_rule.role_name, add_rule.database_name, add_rule.schema_name,
				 add_rule.relation_name, add_rule.class, add_rule.comment)
	  RETURNING r.rule_id INTO id;
	PERFORM audit._rules_changed('ADD AUDIT RULE', 'audit.rules');
	RETURN id;
END
$$;

COMMENT ON FUNCTION audit.add_rule(text, name, name, name, text, text, text) IS 'Add a rule that includes or excludes statements from the audit trail (exclude rules: superusers only); returns its rule_id';

CREATE FUNCTION audit.drop_rule(rule_id bigint)
RETURNS boolean
LANGUAGE plpgsql VOLATILE STRICT
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	old_action text;
BEGIN
	SELECT r.action INTO old_action FROM audit.rules r WHERE r.rule_id = drop_rule.rule_id FOR UPDATE;
	IF NOT FOUND THEN
		RETURN false;
	END IF;
	-- Without an include rule the trail may record less: superusers only.
	IF old_action = 'include' THEN
		PERFORM opsdata._trail_check('drop an include audit rule');
	END IF;
	DELETE FROM audit.rules r WHERE r.rule_id = drop_rule.rule_id;
	PERFORM audit._rules_changed('DROP AUDIT RULE', 'audit.rules');
	RETURN true;
END
$$;

COMMENT ON FUNCTION audit.drop_rule(bigint) IS 'Remove an audit rule (include rules: superusers only); returns false when there was no such rule';

-- DDL statements learn the identities of the objects they made, altered
-- or dropped from these event triggers.
CREATE FUNCTION audit._ddl_command_end()
RETURNS event_trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_ddl_command_end';

CREATE FUNCTION audit._sql_drop()
RETURNS event_trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_sql_drop';

COMMENT ON FUNCTION audit._ddl_command_end() IS 'Internal: event trigger giving audited DDL statements the objects they made or altered';
COMMENT ON FUNCTION audit._sql_drop() IS 'Internal: event trigger giving audited DDL statements the objects they dropped';

CREATE EVENT TRIGGER opsdata_audit_ddl ON ddl_command_end EXECUTE FUNCTION audit._ddl_command_end();
CREATE EVENT TRIGGER opsdata_audit_drop ON sql_drop EXECUTE FUNCTION audit._sql_drop();

GRANT SELECT ON audit.entries, audit.statements, audit.rules, audit.trail,
	audit.held_entries TO opsdata_auditor;
GRANT SELECT ON audit.rules TO opsdata_admin;
GRANT EXECUTE ON FUNCTION audit.flush(), audit.queue_state() TO opsdata_admin, opsdata_auditor;
GRANT EXECUTE ON FUNCTION audit.server_id() TO opsdata_admin, opsdata_auditor;
GRANT EXECUTE ON FUNCTION audit.rebuild_statement(text, integer[], text[]),
	audit.shapes(timestamptz, timestamptz, text) TO opsdata_auditor;
GRANT EXECUTE ON FUNCTION audit.add_rule(text, name, name, name, text, text, text),
	audit.drop_rule(bigint) TO opsdata_admin;
GRANT USAGE ON SCHEMA audit TO opsdata_admin;

CREATE FUNCTION audit._index_closed_partitions()
RETURNS integer
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'audit_index_closed_partitions';

COMMENT ON FUNCTION audit._index_closed_partitions() IS 'Internal: start building the by-user and by-object indexes missing on partitions of audit.entries whose day ended over an hour ago; returns how many are missing';

-- Five minutes past every hour: a day's partition qualifies an hour after
-- midnight UTC.
INSERT INTO opsdata.jobs (name, command, schedule, next_run, builtin, comment) VALUES
	('audit.index_closed_partitions', 'SELECT audit._index_closed_partitions()', '1 hour',
	 pg_catalog.date_trunc('hour', pg_catalog.now()) + interval '1 hour 5 minutes', true,
	 'Builds the by-user and by-object indexes of each day of audit.entries once the day is over');

-- The retention shortens the trail: superusers only, at least a day, and
-- at most what partition maintenance can subtract from now.
INSERT INTO opsdata.settings (key, type, default_value, valid_when, description, superuser_only) VALUES
	('audit.retention', 'interval', '90 days',
	 'value >= interval ''1 day'' AND value <= interval ''1000 years''',
	 'Age after which daily partitions of audit.entries are removed by partition maintenance; superusers only', true);
SELECT opsdata._partition_builtin('audit.entries', 'ts', '1 day', 7, 'audit.retention');

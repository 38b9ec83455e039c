-- Core: the collision check, schemas, roles and configuration.

-- pg_opsdata owns four schemas outright.  Refuse to install into a database
-- where one of them already exists rather than mixing our objects with the
-- user's (CREATE EXTENSION then rolls back with nothing created).
DO $$
DECLARE
	taken text[];
BEGIN
	SELECT pg_catalog.array_agg(pg_catalog.format('"%s"', nspname) ORDER BY nspname)
	  INTO taken
	  FROM pg_catalog.pg_namespace
	 WHERE nspname IN ('audit', 'learning', 'metrics', 'opsdata');
	IF pg_catalog.cardinality(taken) = 1 THEN
		RAISE EXCEPTION 'schema % already exists', taken[1]
			USING ERRCODE = 'duplicate_schema',
				  DETAIL = 'pg_opsdata creates the schemas audit, learning, metrics and opsdata and does not share them.',
				  HINT = 'Rename or drop the existing schema, then run CREATE EXTENSION again.';
	ELSIF pg_catalog.cardinality(taken) > 1 THEN
		RAISE EXCEPTION 'schemas % already exist', pg_catalog.array_to_string(taken, ', ')
			USING ERRCODE = 'duplicate_schema',
				  DETAIL = 'pg_opsdata creates the schemas audit, learning, metrics and opsdata and does not share them.',
				  HINT = 'Rename or drop the existing schemas, then run CREATE EXTENSION again.';
	END IF;
END
$$;

CREATE SCHEMA opsdata;
CREATE SCHEMA audit;
CREATE SCHEMA learning;
CREATE SCHEMA metrics;

COMMENT ON SCHEMA opsdata IS 'pg_opsdata: configuration, jobs, managed partitions and health';
COMMENT ON SCHEMA audit IS 'pg_opsdata: audit trail, seals, audit rules and the audit processing queue';
COMMENT ON SCHEMA learning IS 'pg_opsdata: feedback, tuned thresholds and active-learning candidates';
COMMENT ON SCHEMA metrics IS 'pg_opsdata: time series, points and rollups';

-- Roles are cluster-wide: created if missing, never dropped by DROP EXTENSION.
DO $$
DECLARE
	r text;
BEGIN
	FOREACH r IN ARRAY ARRAY['opsdata_admin', 'opsdata_writer', 'opsdata_reader', 'opsdata_auditor']
	LOOP
		IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
			EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
		END IF;
	END LOOP;
END
$$;

COMMENT ON ROLE opsdata_admin IS 'pg_opsdata: configure settings, jobs and partition sets, run maintenance';
COMMENT ON ROLE opsdata_writer IS 'pg_opsdata: record metrics and feedback, use the queues';
COMMENT ON ROLE opsdata_reader IS 'pg_opsdata: read metrics, learning data and health';
COMMENT ON ROLE opsdata_auditor IS 'pg_opsdata: read and verify the audit trail';

-- An administrator can do what writers and readers do.
GRANT opsdata_writer, opsdata_reader TO opsdata_admin;

REVOKE ALL ON SCHEMA opsdata, audit, learning, metrics FROM PUBLIC;
GRANT USAGE ON SCHEMA opsdata TO opsdata_admin, opsdata_writer, opsdata_reader, opsdata_auditor;
GRANT USAGE ON SCHEMA audit TO opsdata_auditor;
GRANT USAGE ON SCHEMA learning, metrics TO opsdata_writer, opsdata_reader;

--
-- Settings.  opsdata.settings lists every setting the extension knows, with
-- its type and default; opsdata.config holds only the values a user chose.
-- Only opsdata.config is dumped, so pg_dump keeps user settings and a new
-- release can change defaults.
--
CREATE TABLE opsdata.settings (
	key				text PRIMARY KEY,
	type			regtype NOT NULL,
	default_value	text NOT NULL,
	valid_when		text,
	description		text NOT NULL,
	superuser_only	boolean NOT NULL DEFAULT false
);

COMMENT ON TABLE opsdata.settings IS 'Every setting pg_opsdata knows, with its type and default value';
COMMENT ON COLUMN opsdata.settings.key IS 'Setting name, "<area>.<name>"';
COMMENT ON COLUMN opsdata.settings.type IS 'Type the value must be a valid input for';
COMMENT ON COLUMN opsdata.settings.default_value IS 'Value used while opsdata.config holds none';
COMMENT ON COLUMN opsdata.settings.valid_when IS 'Boolean SQL expression over "value" (already cast to the type) that a new value must satisfy';
COMMENT ON COLUMN opsdata.settings.description IS 'What the setting controls';
COMMENT ON COLUMN opsdata.settings.superuser_only IS 'The setting governs how long the audit trail or the partition log is kept: only superusers change it, and every change is audited';

CREATE TABLE opsdata.config (
	key			text PRIMARY KEY REFERENCES opsdata.settings (key) ON UPDATE CASCADE ON DELETE CASCADE,
	value		text NOT NULL,
	updated_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_by	name NOT NULL DEFAULT SESSION_USER
);

COMMENT ON TABLE opsdata.config IS 'Settings changed from their defaults; change them with opsdata.set_setting()';
COMMENT ON COLUMN opsdata.config.key IS 'Setting name, one of opsdata.settings';
COMMENT ON COLUMN opsdata.config.value IS 'Chosen value, valid input for the setting''s type';
COMMENT ON COLUMN opsdata.config.updated_at IS 'When the value was last set';
COMMENT ON COLUMN opsdata.config.updated_by IS 'Session user that last set the value';

SELECT pg_catalog.pg_extension_config_dump('opsdata.config', '');

CREATE FUNCTION opsdata.setting(key text)
RETURNS text
LANGUAGE plpgsql STABLE STRICT
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	result text;
BEGIN
	SELECT coalesce(c.value, s.default_value) INTO result
	  FROM opsdata.settings s LEFT JOIN opsdata.config c USING (key)
	 WHERE s.key = setting.key;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unrecognized pg_opsdata setting "%"', key
			USING ERRCODE = 'undefined_object',
				  HINT = 'The settings are listed in opsdata.settings.';
	END IF;
	RETURN result;
END
$$;

COMMENT ON FUNCTION opsdata.setting(text) IS 'Current value of a pg_opsdata setting: the configured one, else the default';

-- Separation of duties (src/core/duties.c): raise an error unless the role
-- the session acts as is a superuser.
CREATE FUNCTION opsdata._trail_check(action text)
RETURNS void
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'opsdata_trail_check';

COMMENT ON FUNCTION opsdata._trail_check(text) IS 'Internal: permission denied to the action unless the session acts as a superuser';

CREATE FUNCTION opsdata.set_setting(key text, value text)
RETURNS text
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s opsdata.settings;
	ok boolean;
BEGIN
	IF key IS NULL OR value IS NULL THEN
		RAISE EXCEPTION 'setting name and value must not be null'
			USING ERRCODE = 'null_value_not_allowed',
				  HINT = 'Use opsdata.reset_setting() to return a setting to its default.';
	END IF;
	SELECT * INTO s FROM opsdata.settings WHERE settings.key = set_setting.key;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unrecognized pg_opsdata setting "%"', key
			USING ERRCODE = 'undefined_object',
				  HINT = 'The settings are listed in opsdata.settings.';
	END IF;
	IF s.superuser_only THEN
		PERFORM opsdata._trail_check(pg_catalog.format('change the pg_opsdata setting "%s"', key));
	END IF;
	BEGIN
		EXECUTE pg_catalog.format('SELECT coalesce((%s), false) FROM (SELECT %L::%s AS value) v',
								  coalesce(s.valid_when, 'true'), value, s.type)
		   INTO ok;
	EXCEPTION WHEN data_exception OR syntax_error_or_access_rule_violation THEN
		RAISE EXCEPTION 'invalid value for pg_opsdata setting "%": "%"', key, value
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = SQLERRM,
				  HINT = pg_catalog.format('The value must be a valid %s.', s.type);
	END;
	IF NOT ok THEN
		RAISE EXCEPTION 'invalid value for pg_opsdata setting "%": "%"', key, value
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = pg_catalog.format('The value must satisfy: %s.', s.valid_when);
	END IF;
	INSERT INTO opsdata.config AS c (key, value)
		 VALUES (set_setting.key, set_setting.value)
	ON CONFLICT ON CONSTRAINT config_pkey
	DO UPDATE SET value = excluded.value, updated_at = pg_catalog.now(), updated_by = SESSION_USER;
	IF s.superuser_only THEN
		PERFORM audit._config_changed('SET OPSDATA SETTING', key);
	END IF;
	RETURN value;
END
$$;

COMMENT ON FUNCTION opsdata.set_setting(text, text) IS 'Set a pg_opsdata setting after checking the value against its type and constraint; settings marked superuser_only are for superusers, and their changes are audited';

CREATE FUNCTION opsdata.reset_setting(key text)
RETURNS text
LANGUAGE plpgsql VOLATILE STRICT
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	only_superusers boolean;
BEGIN
	SELECT s.superuser_only INTO only_superusers FROM opsdata.settings s WHERE s.key = reset_setting.key;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unrecognized pg_opsdata setting "%"', key
			USING ERRCODE = 'undefined_object',
				  HINT = 'The settings are listed in opsdata.settings.';
	END IF;
	IF only_superusers THEN
		PERFORM opsdata._trail_check(pg_catalog.format('change the pg_opsdata setting "%s"', key));
	END IF;
	DELETE FROM opsdata.config WHERE config.key = reset_setting.key;
	IF only_superusers THEN
		PERFORM audit._config_changed('RESET OPSDATA SETTING', key);
	END IF;
	RETURN opsdata.setting(key);
END
$$;

COMMENT ON FUNCTION opsdata.reset_setting(text) IS 'Return a pg_opsdata setting to its default; returns the default';

-- Every setting with its current value, for people.
CREATE VIEW opsdata.current_settings AS
	SELECT s.key, coalesce(c.value, s.default_value) AS value, s.default_value,
		   c.key IS NOT NULL AS changed, s.type, s.description, c.updated_at, c.updated_by,
		   s.superuser_only
	  FROM opsdata.settings s LEFT JOIN opsdata.config c USING (key);

COMMENT ON VIEW opsdata.current_settings IS 'Every pg_opsdata setting with its current value and whether it was changed';

--
-- Library entry points of the core.
--
CREATE FUNCTION opsdata._health_core(OUT component text, OUT status text, OUT detail text)
RETURNS SETOF record
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'opsdata_health_core';

CREATE FUNCTION opsdata._library_version()
RETURNS text
LANGUAGE c STABLE STRICT
AS 'MODULE_PATHNAME', 'opsdata_library_version';

CREATE FUNCTION opsdata._warn_if_not_preloaded()
RETURNS boolean
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'opsdata_warn_if_not_preloaded';

COMMENT ON FUNCTION opsdata._health_core() IS 'Internal: the core''s rows of opsdata.health()';
COMMENT ON FUNCTION opsdata._library_version() IS 'Version of the loaded pg_opsdata library';
COMMENT ON FUNCTION opsdata._warn_if_not_preloaded() IS 'Internal: WARNING when the library is not preloaded';

--
-- The guard of every table of pg_opsdata (src/core/guard.c).  Roles that
-- bypass GRANTs (members of pg_write_all_data) could otherwise write our
-- tables directly.  opsdata._guard_tables() runs at the end of the install
-- script and puts opsdata._guard() on every table of the extension,
-- BEFORE each of INSERT, UPDATE, DELETE and TRUNCATE that the table grants
-- to no role: only the table's owner (pg_opsdata's own code runs as the
-- extension owner) and superusers get past it.  A table that grants INSERT
-- to a role (learning.feedback to opsdata_writer) is not guarded on INSERT.
-- Logical replication's apply worker fires row-level triggers only (and
-- those of TRUNCATE), with session_replication_role = replica: a plain
-- table also gets a row-level guard that fires in that role alone (ENABLE
-- REPLICA), so that a subscription whose owner is not a superuser cannot
-- write it either, and nothing else pays for it.
--
CREATE FUNCTION opsdata._guard()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'opsdata_guard';

COMMENT ON FUNCTION opsdata._guard() IS 'Internal: trigger refusing writes of pg_opsdata''s tables to all but their owner and superusers';

-- Guards every table of the extension; a table's partitions get the
-- row-level guard of their parent by cloning, those made later included,
-- and a TRUNCATE guard of their own when they belong to the extension.
-- Safe to run again: it replaces the guards it made.  Returns how many
-- tables it guarded.
CREATE FUNCTION opsdata._guard_tables()
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t record;
	old_guard name;
	row_events text[];
	n integer := 0;
BEGIN
	FOR t IN
		SELECT c.oid::pg_catalog.regclass AS rel, c.relkind, c.relispartition,
			   ARRAY(SELECT e FROM pg_catalog.unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) e
					  WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_class g, pg_catalog.aclexplode(g.relacl) a
										 WHERE g.oid = CASE WHEN c.relispartition
															THEN pg_catalog.pg_partition_root(c.oid)
															ELSE c.oid END
										   AND a.grantee OPERATOR(pg_catalog.<>) g.relowner
										   AND a.privilege_type OPERATOR(pg_catalog.=) e)) AS events
		  FROM pg_catalog.pg_class c
		  JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
									 AND d.objid = c.oid AND d.deptype = 'e'
		  JOIN pg_catalog.pg_extension x ON x.oid = d.refobjid AND x.extname = 'pg_opsdata'
		 WHERE c.relkind IN ('r', 'p')
		 ORDER BY c.oid
	LOOP
		CONTINUE WHEN pg_catalog.cardinality(t.events) = 0;
		-- Replace the guards made before (a clone on a partition goes with
		-- its parent's).
		FOR old_guard IN SELECT tg.tgname FROM pg_catalog.pg_trigger tg
				  WHERE tg.tgrelid OPERATOR(pg_catalog.=) t.rel
					AND tg.tgname IN ('opsdata_guard', 'opsdata_guard_truncate', 'opsdata_guard_replica')
					AND tg.tgparentid OPERATOR(pg_catalog.=) 0
		LOOP
			EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', old_guard, t.rel);
		END LOOP;
		row_events := ARRAY(SELECT e FROM pg_catalog.unnest(t.events) e WHERE e OPERATOR(pg_catalog.<>) 'TRUNCATE');
		IF t.relkind = 'r' AND NOT t.relispartition THEN
			EXECUTE pg_catalog.format('CREATE TRIGGER opsdata_guard BEFORE %s ON %s FOR EACH STATEMENT EXECUTE FUNCTION opsdata._guard()',
									  pg_catalog.array_to_string(t.events, ' OR '), t.rel);
			EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER opsdata_guard', t.rel);
			IF pg_catalog.cardinality(row_events) > 0 THEN
				EXECUTE pg_catalog.format('CREATE TRIGGER opsdata_guard_replica BEFORE %s ON %s FOR EACH ROW EXECUTE FUNCTION opsdata._guard()',
										  pg_catalog.array_to_string(row_events, ' OR '), t.rel);
				EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE REPLICA TRIGGER opsdata_guard_replica', t.rel);
			END IF;
		ELSE
			IF t.relkind = 'p' AND pg_catalog.cardinality(row_events) > 0 THEN
				EXECUTE pg_catalog.format('CREATE TRIGGER opsdata_guard BEFORE %s ON %s FOR EACH ROW EXECUTE FUNCTION opsdata._guard()',
										  pg_catalog.array_to_string(row_events, ' OR '), t.rel);
				EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER opsdata_guard', t.rel);
			END IF;
			IF 'TRUNCATE' OPERATOR(pg_catalog.=) ANY (t.events) THEN
				EXECUTE pg_catalog.format('CREATE TRIGGER opsdata_guard_truncate BEFORE TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION opsdata._guard()',
										  t.rel);
				EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER opsdata_guard_truncate', t.rel);
			END IF;
		END IF;
		n := n + 1;
	END LOOP;
	RETURN n;
END
$$;

COMMENT ON FUNCTION opsdata._guard_tables() IS 'Internal: put the guard trigger on every table of pg_opsdata for each write no role is granted; returns how many tables';

CREATE FUNCTION opsdata._oldest_schema()
RETURNS text
LANGUAGE c STABLE STRICT
AS 'MODULE_PATHNAME', 'opsdata_oldest_schema';

COMMENT ON FUNCTION opsdata._oldest_schema() IS 'Internal: the oldest version of pg_opsdata''s objects the loaded library works with';

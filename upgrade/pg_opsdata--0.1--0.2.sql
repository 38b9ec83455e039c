-- pg_opsdata update from 0.1 to 0.2.
--
-- Every schema change of 0.2 has its step here, in the order it was made:
-- an installation updated with ALTER EXTENSION pg_opsdata UPDATE has the
-- same objects as a fresh CREATE EXTENSION of 0.2 (test/tap/003_core_upgrade.pl
-- compares them).
\echo Use "ALTER EXTENSION pg_opsdata UPDATE TO '0.2'" to load this file. \quit

--
-- Every table of pg_opsdata is guarded against writes by roles that bypass
-- grants; the guard of the audit tables of 0.1 gives way to it.
--
DROP TRIGGER refuse_change ON audit.entries;
DROP TRIGGER refuse_change ON audit.statements;
DROP TRIGGER refuse_change ON audit.seals;
DROP TRIGGER refuse_change ON audit.rules;
DROP TRIGGER refuse_change ON audit.queue;
DROP FUNCTION audit._refuse_change();

CREATE FUNCTION audit._statements_changed()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_statements_changed';

COMMENT ON FUNCTION audit._statements_changed() IS 'Internal: make the caches of stored statement texts forget what they hold when audit.statements changes';

CREATE TRIGGER statements_changed AFTER UPDATE OR DELETE ON audit.statements
	FOR EACH STATEMENT EXECUTE FUNCTION audit._statements_changed();

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
					AND tg.tgname IN ('opsdata_guard', 'opsdata_guard_truncate')
					AND tg.tgparentid OPERATOR(pg_catalog.=) 0
		LOOP
			EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', old_guard, t.rel);
		END LOOP;
		IF t.relkind = 'r' AND NOT t.relispartition THEN
			EXECUTE pg_catalog.format('CREATE TRIGGER opsdata_guard BEFORE %s ON %s FOR EACH STATEMENT EXECUTE FUNCTION opsdata._guard()',
									  pg_catalog.array_to_string(t.events, ' OR '), t.rel);
			EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER opsdata_guard', t.rel);
		ELSE
			row_events := ARRAY(SELECT e FROM pg_catalog.unnest(t.events) e WHERE e OPERATOR(pg_catalog.<>) 'TRUNCATE');
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

REVOKE ALL ON FUNCTION audit._statements_changed(), opsdata._guard(), opsdata._guard_tables() FROM PUBLIC;

SELECT opsdata._guard_tables();

--
-- Separation of duties: what narrows or shortens the trail is for
-- superusers, and every such change is audited; retentions are bounded.
--
-- Filled before it gets its default, so that no row keeps a "missing"
-- value that a fresh install would not have.
ALTER TABLE opsdata.settings ADD COLUMN superuser_only boolean;
UPDATE opsdata.settings SET superuser_only = false;
ALTER TABLE opsdata.settings ALTER COLUMN superuser_only SET DEFAULT false,
	ALTER COLUMN superuser_only SET NOT NULL;
COMMENT ON COLUMN opsdata.settings.superuser_only IS 'The setting governs how long the audit trail or the partition log is kept: only superusers change it, and every change is audited';

UPDATE opsdata.settings
   SET valid_when = 'value >= interval ''1 day'' AND value <= interval ''1000 years''',
	   description = 'Age after which daily partitions of audit.entries are removed by partition maintenance; superusers only',
	   superuser_only = true
 WHERE key = 'audit.retention';
UPDATE opsdata.settings
   SET valid_when = 'value >= interval ''1 day'' AND value <= interval ''1000 years''',
	   description = 'How long entries of opsdata.partition_log are kept; superusers only',
	   superuser_only = true
 WHERE key = 'partition.log_retention';
UPDATE opsdata.settings
   SET valid_when = 'value > interval ''0'' AND value <= interval ''1000 years'''
 WHERE key = 'metrics.points_retention';
-- Values chosen before the bounds existed are brought within them.
UPDATE opsdata.config
   SET value = CASE WHEN value::interval < interval '1 day' THEN '1 day' ELSE '1000 years' END
 WHERE key IN ('audit.retention', 'partition.log_retention')
   AND CASE WHEN key IN ('audit.retention', 'partition.log_retention')
			THEN value::interval < interval '1 day' OR value::interval > interval '1000 years' END;
UPDATE opsdata.config
   SET value = '1000 years'
 WHERE key = 'metrics.points_retention'
   AND CASE WHEN key = 'metrics.points_retention' THEN value::interval > interval '1000 years' END;

CREATE OR REPLACE VIEW opsdata.current_settings AS
	SELECT s.key, coalesce(c.value, s.default_value) AS value, s.default_value,
		   c.key IS NOT NULL AS changed, s.type, s.description, c.updated_at, c.updated_by,
		   s.superuser_only
	  FROM opsdata.settings s LEFT JOIN opsdata.config c USING (key);

CREATE FUNCTION opsdata._trail_check(action text)
RETURNS void
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'opsdata_trail_check';

COMMENT ON FUNCTION opsdata._trail_check(text) IS 'Internal: permission denied to the action unless the session acts as a superuser';

CREATE FUNCTION audit._config_changed(command text, object text)
RETURNS void
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'audit_config_changed';

COMMENT ON FUNCTION audit._config_changed(text, text) IS 'Internal: record a change of a setting that governs the audit trail';

REVOKE ALL ON FUNCTION opsdata._trail_check(text), audit._config_changed(text, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION opsdata.set_setting(key text, value text)
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

CREATE OR REPLACE FUNCTION opsdata.reset_setting(key text)
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

COMMENT ON FUNCTION opsdata.set_setting(text, text) IS 'Set a pg_opsdata setting after checking the value against its type and constraint; settings marked superuser_only are for superusers, and their changes are audited';

CREATE OR REPLACE FUNCTION audit.add_rule(action text, role_name name DEFAULT NULL, database_name name DEFAULT NULL,
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
	IF class IS NOT NULL AND class NOT IN ('read', 'write', 'function', 'role', 'ddl', 'misc', 'login') THEN
		RAISE EXCEPTION 'invalid audit class "%"', class
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Valid classes are read, write, function, role, ddl, misc and login.';
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

CREATE OR REPLACE FUNCTION audit.drop_rule(rule_id bigint)
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

COMMENT ON FUNCTION audit.add_rule(text, name, name, name, text, text, text) IS 'Add a rule that includes or excludes statements from the audit trail (exclude rules: superusers only); returns its rule_id';
COMMENT ON FUNCTION audit.drop_rule(bigint) IS 'Remove an audit rule (include rules: superusers only); returns false when there was no such rule';

CREATE OR REPLACE FUNCTION opsdata._partition_retention(control_type regtype, value text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET IntervalStyle = 'postgres'
AS $$
DECLARE
	n bigint;
	iv interval;
BEGIN
	IF value IS NULL THEN
		RETURN NULL;
	END IF;
	IF control_type NOT IN ('date'::regtype, 'timestamptz'::regtype) THEN
		BEGIN
			n := value::bigint;
		EXCEPTION WHEN data_exception THEN
			RAISE EXCEPTION 'invalid retention "%" for a set keyed by %', value, control_type
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Give the distance in ids below the highest id beyond which partitions are removed, such as ''1000000''.';
		END;
		IF n < 1 THEN
			RAISE EXCEPTION 'retention must be positive'
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = pg_catalog.format('The value given was %s.', n),
					  HINT = 'Give NULL to keep every partition.';
		END IF;
		RETURN n::text;
	END IF;
	BEGIN
		iv := value::interval;
	EXCEPTION WHEN data_exception THEN
		RAISE EXCEPTION 'invalid retention "%" for a set keyed by %', value, control_type
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give an interval such as ''90 days''.';
	END;
	IF iv <= interval '0' OR EXTRACT(epoch FROM iv) <= 0
	   OR EXTRACT(day FROM iv) < 0 OR EXTRACT(month FROM iv) < 0
	   OR EXTRACT(year FROM iv) < 0 THEN
		RAISE EXCEPTION 'retention must be positive'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = pg_catalog.format('The value given was "%s".', value),
				  HINT = 'Give NULL to keep every partition.';
	END IF;
	-- Maintenance subtracts the retention from now: keep that in range.
	IF iv > interval '1000 years' THEN
		RAISE EXCEPTION 'retention must be at most 1000 years'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = pg_catalog.format('The value given was "%s".', value),
				  HINT = 'Give NULL to keep every partition.';
	END IF;
	RETURN iv::text;
END
$$;

CREATE OR REPLACE FUNCTION opsdata._health_partition(OUT component text, OUT status text, OUT detail text)
RETURNS SETOF record
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '100ms'
AS $$
DECLARE
	r record;
	n bigint;
	rows_text text;
	v_acting name := opsdata._worker_acting_role();
	v_sets integer := 0;
	v_hidden integer := 0;
	v_failed integer := 0;
	v_warned integer := 0;
BEGIN
	FOR r IN
		SELECT p.parent, p.last_status, p.last_message, p.last_run_at, p.created_at,
			   NULLIF(t.partdefid, 0)::regclass AS default_partition,
			   pg_catalog.pg_has_role(v_acting, c.relowner, 'USAGE')
			   OR pg_catalog.has_table_privilege(v_acting, c.oid, 'SELECT') AS readable,
			   p.builtin
		  FROM opsdata.partitions p
		  JOIN pg_catalog.pg_class c ON c.oid = p.parent
		  LEFT JOIN pg_catalog.pg_partitioned_table t ON t.partrelid = p.parent
		 ORDER BY p.parent::text
	LOOP
		v_sets := v_sets + 1;
		n := 0;
		rows_text := NULL;
		IF NOT r.readable AND NOT r.builtin THEN
			v_hidden := v_hidden + 1;
			IF r.last_status = 'failed' THEN
				v_failed := v_failed + 1;
			ELSIF r.last_status = 'skipped'
				  OR (r.last_run_at IS NULL AND r.created_at < pg_catalog.now() - interval '1 hour')
				  OR r.last_run_at < pg_catalog.now() - interval '1 day' THEN
				v_warned := v_warned + 1;
			END IF;
			CONTINUE;
		END IF;
		IF r.default_partition IS NOT NULL
		   AND (r.readable OR pg_catalog.has_table_privilege(v_acting, r.default_partition, 'SELECT')) THEN
			BEGIN
				EXECUTE pg_catalog.format('SELECT count(*) FROM (SELECT FROM ONLY %s LIMIT 100001) x',
										  r.default_partition) INTO n;
				IF n > 0 THEN
					rows_text := pg_catalog.format('The default partition %s holds %s.', r.default_partition,
												   CASE WHEN n > 100000 THEN 'more than 100000 rows'
														WHEN n = 1 THEN '1 row' ELSE n || ' rows' END);
				END IF;
			EXCEPTION WHEN lock_not_available THEN
				rows_text := pg_catalog.format('The rows of the default partition %s were not counted: it is locked.',
											   r.default_partition);
			END;
		END IF;
		component := 'partition ' || r.parent::text;
		IF r.last_status = 'failed' THEN
			v_failed := v_failed + 1;
			status := 'error';
			detail := pg_catalog.concat_ws(' ', 'The last maintenance run failed: ' || r.last_message || '.', rows_text);
		ELSIF r.last_status = 'skipped' THEN
			v_warned := v_warned + 1;
			status := 'warning';
			detail := pg_catalog.concat_ws(' ', 'The last maintenance run skipped part of its work: ' || r.last_message || '.', rows_text);
		ELSIF r.last_run_at IS NULL AND r.created_at < pg_catalog.now() - interval '1 hour' THEN
			v_warned := v_warned + 1;
			status := 'warning';
			detail := pg_catalog.concat_ws(' ', 'Not maintained since it was put under management; check that the "partition maintenance" job runs.', rows_text);
		ELSIF r.last_run_at IS NOT NULL AND r.last_run_at < pg_catalog.now() - interval '1 day' THEN
			v_warned := v_warned + 1;
			status := 'warning';
			detail := pg_catalog.concat_ws(' ', 'Not maintained for more than a day; check that the "partition maintenance" job runs.', rows_text);
		ELSIF n > 0 AND r.last_run_at IS NOT NULL THEN
			v_warned := v_warned + 1;
			status := 'warning';
			detail := rows_text || ' Maintenance moves them into partitions; rows that stay have keys no partition may hold.';
		ELSIF rows_text IS NOT NULL THEN
			status := 'ok';
			detail := rows_text || ' The first maintenance run moves them into partitions.';
		ELSE
			CONTINUE;
		END IF;
		RETURN NEXT;
	END LOOP;

	component := 'partition maintenance';
	status := CASE WHEN v_failed > 0 THEN 'error' WHEN v_warned > 0 THEN 'warning' ELSE 'ok' END;
	detail := CASE WHEN v_sets = 0 THEN 'No partition set is managed.'
				   WHEN v_sets = 1 THEN '1 partition set is managed.'
				   ELSE pg_catalog.format('%s partition sets are managed.', v_sets) END
			  || CASE WHEN v_hidden = 1 THEN ' 1 of them is a table this role may not read.'
					  WHEN v_hidden > 1 THEN pg_catalog.format(' %s of them are tables this role may not read.', v_hidden)
					  ELSE '' END
			  || CASE WHEN v_failed > 0 THEN pg_catalog.format(' %s failed in their last maintenance run.', v_failed) ELSE '' END
			  || CASE WHEN v_warned > 0 THEN pg_catalog.format(' %s need attention.', v_warned) ELSE '' END;
	RETURN NEXT;
END
$$;

CREATE OR REPLACE FUNCTION opsdata._partition_plan(p_parent regclass, p_start_from text, p_maintain boolean,
	OUT step integer, OUT phase text, OUT action text, OUT partition text, OUT statements text[],
	OUT toplevel boolean, OUT replica boolean, OUT detail text)
RETURNS SETOF record
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
DECLARE
	s opsdata.partitions;
	v_schema name;
	v_relname name;
	v_space text := '';
	v_time boolean;
	v_iv interval;
	v_w bigint;
	v_max bigint;
	v_ret text;
	v_default regclass;
	v_pending regclass;
	v_pending_ut timestamptz;
	v_pending_ui bigint;
	v_drop_pending regclass;
	v_like text;
	v_cols text;
	v_tail text[];
	v_parts regclass[];
	v_lt timestamptz[];
	v_ut timestamptz[];
	v_li bigint[];
	v_ui bigint[];
	v_blt timestamptz[] := '{}';
	v_bli bigint[] := '{}';
	v_bn bigint[] := '{}';
	v_used boolean[] := '{}';
	v_nulls bigint := 0;
	v_now timestamptz := pg_catalog.now();
	v_highest bigint;
	v_cut timestamptz;
	v_cut_id bigint;
	v_lo timestamptz;
	v_hi timestamptz;
	v_lo_id bigint;
	v_hi_id numeric;
	v_end timestamptz;
	v_end_id bigint;
	v_names text[] := '{}';
	v_expired text[] := '{}';
	v_expired_ut timestamptz[] := '{}';
	v_expired_ui bigint[] := '{}';
	v_missing timestamptz[];
	v_missing_id bigint[];
	v_slots bigint := 0;
	v_limit integer;
	v_moves integer := 0;
	v_overlap boolean;
	v_bucket integer;
	r record;
	i integer;
BEGIN
	step := 0;
	SELECT * INTO s FROM opsdata.partitions WHERE parent = p_parent;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'relation "%" is not a managed partition set', p_parent
			USING ERRCODE = 'undefined_object',
				  HINT = 'Put it under management with opsdata.manage_partitions().';
	END IF;
	SELECT n.nspname, c.relname, t.spcname INTO v_schema, v_relname, v_space
	  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
	  LEFT JOIN pg_catalog.pg_tablespace t ON t.oid = c.reltablespace
	 WHERE c.oid = p_parent;
	v_space := CASE WHEN v_space IS NULL THEN '' ELSE pg_catalog.format(' TABLESPACE %I', v_space) END;
	v_time := s.control_type IN ('timestamptz'::regtype, 'date'::regtype);
	IF v_time THEN
		v_iv := s.part_interval::interval;
	ELSE
		v_w := s.part_interval::bigint;
		v_max := CASE s.control_type WHEN 'smallint'::regtype THEN 32767
									 WHEN 'integer'::regtype THEN 2147483647
									 ELSE 9223372036854775807 END;
	END IF;
	v_ret := coalesce(s.retention, CASE WHEN s.retention_setting IS NOT NULL
										THEN opsdata.setting(s.retention_setting) END);
	v_limit := opsdata.setting('partition.move_limit')::integer;

	SELECT NULLIF(p.partdefid, 0)::regclass INTO v_default
	  FROM pg_catalog.pg_partitioned_table p WHERE p.partrelid = p_parent;
	SELECT pg_catalog.array_agg(l.partition) FILTER (WHERE NOT l.detach_pending),
		   pg_catalog.array_agg(l.lower_time) FILTER (WHERE NOT l.detach_pending),
		   pg_catalog.array_agg(l.upper_time) FILTER (WHERE NOT l.detach_pending),
		   pg_catalog.array_agg(l.lower_id) FILTER (WHERE NOT l.detach_pending),
		   pg_catalog.array_agg(l.upper_id) FILTER (WHERE NOT l.detach_pending),
		   max(l.partition::oid) FILTER (WHERE l.detach_pending)::regclass,
		   max(l.upper_time) FILTER (WHERE l.detach_pending),
		   max(l.upper_id) FILTER (WHERE l.detach_pending)
	  INTO v_parts, v_lt, v_ut, v_li, v_ui, v_pending, v_pending_ut, v_pending_ui
	  FROM opsdata._partition_layout(p_parent) l
	 WHERE NOT l.is_default;
	v_parts := coalesce(v_parts, '{}');

	-- The highest id, read from the newest partition holding rows and from
	-- the default partition.
	IF NOT v_time THEN
		FOR r IN SELECT u.p, u.lo FROM ROWS FROM (pg_catalog.unnest(v_parts), pg_catalog.unnest(v_li)) u(p, lo) ORDER BY u.lo DESC NULLS LAST LOOP
			EXECUTE pg_catalog.format('SELECT max(%I)::bigint FROM ONLY %s', s.control_column, r.p) INTO v_highest;
			EXIT WHEN v_highest IS NOT NULL;
		END LOOP;
		IF v_default IS NOT NULL THEN
			EXECUTE pg_catalog.format('SELECT GREATEST(max(%I)::bigint, $1) FROM ONLY %s', s.control_column, v_default)
			   INTO v_highest USING v_highest;
		END IF;
	END IF;

	-- The retention cut-off: partitions whose upper bound is at or below it
	-- hold only rows older than the retention.  A retention longer than any
	-- that can be set (a value written around the checks) keeps everything
	-- rather than failing the set's maintenance.
	IF v_ret IS NOT NULL AND p_maintain THEN
		IF v_time AND v_ret::interval > interval '1000 years' THEN
			v_cut := NULL;
		ELSIF v_time THEN
			v_cut := ((v_now AT TIME ZONE 'UTC') - v_ret::interval) AT TIME ZONE 'UTC';
		ELSIF v_highest IS NOT NULL THEN
			v_cut_id := v_highest - v_ret::bigint;
		END IF;
	END IF;

	-- Rows in the default partition, by the slot they belong to.
	IF v_default IS NOT NULL AND EXISTS (SELECT FROM pg_catalog.pg_class WHERE oid = v_default AND relpages >= 0) THEN
		IF v_time THEN
			EXECUTE pg_catalog.format(
				'SELECT pg_catalog.array_agg(b ORDER BY b), pg_catalog.array_agg(n ORDER BY b),
						coalesce(sum(n) FILTER (WHERE b IS NULL), 0)::bigint
				   FROM (SELECT opsdata._partition_floor(%1$I, $1) AS b, count(*) AS n
						   FROM ONLY %2$s GROUP BY 1) g', s.control_column, v_default)
			   INTO v_blt, v_bn, v_nulls USING v_iv;
		ELSE
			EXECUTE pg_catalog.format(
				'SELECT pg_catalog.array_agg(b ORDER BY b), pg_catalog.array_agg(n ORDER BY b),
						coalesce(sum(n) FILTER (WHERE b IS NULL), 0)::bigint
				   FROM (SELECT %1$I::bigint - ((%1$I::bigint %% $1) + $1) %% $1 AS b, count(*) AS n
						   FROM ONLY %2$s GROUP BY 1) g', s.control_column, v_default)
			   INTO v_bli, v_bn, v_nulls USING v_w;
		END IF;
		v_blt := coalesce(v_blt, '{}');
		v_bli := coalesce(v_bli, '{}');
		v_bn := coalesce(v_bn, '{}');
		v_used := pg_catalog.array_fill(false, ARRAY[pg_catalog.cardinality(v_bn)]);
	END IF;

	-- Detaches left pending (a run interrupted between the two transactions
	-- of DETACH CONCURRENTLY, or a user's).  One to drop is dropped at the
	-- start of the retention phase; others are completed with FINALIZE.
	IF p_maintain AND v_pending IS NOT NULL THEN
		IF s.retention_mode = 'drop'
		   AND ((v_time AND v_cut IS NOT NULL AND v_pending_ut <= v_cut)
				OR (NOT v_time AND v_cut_id IS NOT NULL AND v_pending_ui <= v_cut_id)) THEN
			v_drop_pending := v_pending;
		ELSE
			step := step + 1; phase := 'finalize'; action := 'finalize'; partition := v_pending::text;
			statements := ARRAY[pg_catalog.format('ALTER TABLE %s DETACH PARTITION %s FINALIZE', p_parent, v_pending)];
			toplevel := false; replica := false; detail := 'interrupted detach completed';
			RETURN NEXT;
			IF (v_time AND v_cut IS NOT NULL AND v_pending_ut <= v_cut)
			   OR (NOT v_time AND v_cut_id IS NOT NULL AND v_pending_ui <= v_cut_id) THEN
				step := step + 1; phase := 'finalize'; action := 'archive';
				statements := (SELECT opsdata._partition_archive(n.nspname, c.relname, s.archive_schema)
								 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
								WHERE c.oid = v_pending);
				detail := 'older than the retention of ' || v_ret;
				RETURN NEXT;
			END IF;
		END IF;
	END IF;

	-- Create: every slot from the current one to premake ahead (from
	-- start_from on when given) that no partition covers yet.
	IF v_time THEN
		v_lo := opsdata._partition_floor(v_now, v_iv);
		v_end := opsdata._partition_add(v_lo, v_iv, s.premake + 1);
		IF p_start_from IS NOT NULL THEN
			v_lo := LEAST(v_lo, opsdata._partition_floor(
				CASE WHEN s.control_type = 'date'::regtype THEN p_start_from::date::timestamptz
					 ELSE p_start_from::timestamptz END, v_iv));
		END IF;
		SELECT pg_catalog.array_agg(g.lo ORDER BY g.lo), count(*) INTO v_missing, v_slots
		  FROM (SELECT t AT TIME ZONE 'UTC' AS lo, (t + v_iv) AT TIME ZONE 'UTC' AS hi
				  FROM pg_catalog.generate_series(v_lo AT TIME ZONE 'UTC', (v_end AT TIME ZONE 'UTC') - interval '1 microsecond', v_iv) t
				 LIMIT 10001) g
		 WHERE NOT EXISTS (SELECT FROM ROWS FROM (pg_catalog.unnest(v_lt), pg_catalog.unnest(v_ut)) u(lo, hi)
							WHERE (u.lo IS NULL OR u.lo < g.hi) AND (u.hi IS NULL OR u.hi > g.lo));
	ELSE
		v_highest := coalesce(v_highest,
							  CASE WHEN p_start_from IS NOT NULL THEN p_start_from::bigint END,
							  (SELECT min(x) FROM pg_catalog.unnest(v_li) x), 0);
		v_lo_id := v_highest - ((v_highest % v_w) + v_w) % v_w;
		v_end_id := LEAST(v_lo_id::numeric + (s.premake + 1) * v_w::numeric, v_max::numeric)::bigint;
		IF p_start_from IS NOT NULL THEN
			v_lo_id := LEAST(v_lo_id, p_start_from::bigint - ((p_start_from::bigint % v_w) + v_w) % v_w);
		END IF;
		SELECT pg_catalog.array_agg(g.lo ORDER BY g.lo), count(*) INTO v_missing_id, v_slots
		  FROM (SELECT t AS lo, t::numeric + v_w AS hi
				  FROM pg_catalog.generate_series(v_lo_id, v_end_id - 1, v_w) t
				 LIMIT 10001) g
		 WHERE NOT EXISTS (SELECT FROM ROWS FROM (pg_catalog.unnest(v_li), pg_catalog.unnest(v_ui)) u(lo, hi)
							WHERE (u.lo IS NULL OR u.lo < g.hi) AND (u.hi IS NULL OR u.hi > g.lo));
	END IF;
	IF v_slots > 10000 THEN
		RAISE EXCEPTION 'start_from "%" would make more than 10000 partitions', p_start_from
			USING ERRCODE = 'program_limit_exceeded',
				  HINT = 'Choose a later start_from, or a longer part_interval.';
	END IF;
	FOR i IN 1 .. coalesce(pg_catalog.cardinality(v_missing), pg_catalog.cardinality(v_missing_id), 0) LOOP
		IF v_time THEN
			v_lo := v_missing[i];
			v_hi := opsdata._partition_add(v_lo, v_iv, 1);
			v_bucket := pg_catalog.array_position(v_blt, v_lo);
		ELSE
			v_lo_id := v_missing_id[i];
			v_hi_id := v_lo_id::numeric + v_w;
			v_bucket := pg_catalog.array_position(v_bli, v_lo_id);
		END IF;
		IF v_like IS NULL THEN
			SELECT * INTO v_like, v_cols, v_tail FROM opsdata._partition_ddl_parts(p_parent);
		END IF;
		step := step + 1; phase := 'create';
		SELECT * INTO r FROM opsdata._partition_step(s, p_parent, v_schema, v_relname, v_space, v_like, v_cols,
													 v_tail, v_default, v_names, v_lo, v_hi, v_lo_id,
													 CASE WHEN v_hi_id > v_max THEN NULL ELSE v_hi_id::bigint END,
													 v_bucket IS NOT NULL);
		action := r.action; partition := r.partition; statements := r.statements;
		toplevel := false; replica := v_bucket IS NOT NULL; detail := r.detail;
		IF v_bucket IS NOT NULL THEN
			v_used[v_bucket] := true;
		END IF;
		v_names := v_names || partition;
		RETURN NEXT;
	END LOOP;

	IF NOT p_maintain THEN
		RETURN;
	END IF;

	-- Move: the other slots of the default partition's rows, oldest first.
	FOR i IN 1 .. pg_catalog.cardinality(v_bn) LOOP
		CONTINUE WHEN v_used[i];
		IF v_time THEN
			CONTINUE WHEN v_blt[i] IS NULL;
			v_lo := v_blt[i];
			v_hi := opsdata._partition_add(v_lo, v_iv, 1);
			v_overlap := EXISTS (SELECT FROM ROWS FROM (pg_catalog.unnest(v_lt), pg_catalog.unnest(v_ut)) u(lo, hi)
								  WHERE (u.lo IS NULL OR u.lo < v_hi) AND (u.hi IS NULL OR u.hi > v_lo));
		ELSE
			CONTINUE WHEN v_bli[i] IS NULL;
			v_lo_id := v_bli[i];
			v_hi_id := v_lo_id::numeric + v_w;
			v_overlap := EXISTS (SELECT FROM ROWS FROM (pg_catalog.unnest(v_li), pg_catalog.unnest(v_ui)) u(lo, hi)
								  WHERE (u.lo IS NULL OR u.lo < v_hi_id) AND (u.hi IS NULL OR u.hi > v_lo_id));
		END IF;
		step := step + 1; phase := 'move'; toplevel := false;
		IF v_overlap THEN
			action := 'note'; partition := NULL; statements := NULL; replica := false;
			detail := pg_catalog.format('%s rows of the default partition fall in %s .. %s, which an existing partition overlaps; they stay',
										v_bn[i],
										CASE WHEN v_time THEN v_lo::text ELSE v_lo_id::text END,
										CASE WHEN v_time THEN v_hi::text ELSE v_hi_id::text END);
			RETURN NEXT;
			CONTINUE;
		END IF;
		IF v_moves >= v_limit THEN
			action := 'note'; partition := NULL; statements := NULL; replica := false;
			detail := pg_catalog.format('rows of %s more slots stay in the default partition until the next run (partition.move_limit is %s)',
										(SELECT count(*) FROM pg_catalog.generate_subscripts(v_bn, 1) j
										  WHERE j >= i AND NOT v_used[j]
											AND (v_blt[j] IS NOT NULL OR v_bli[j] IS NOT NULL)), v_limit);
			RETURN NEXT;
			EXIT;
		END IF;
		v_moves := v_moves + 1;
		IF v_like IS NULL THEN
			SELECT * INTO v_like, v_cols, v_tail FROM opsdata._partition_ddl_parts(p_parent);
		END IF;
		SELECT * INTO r FROM opsdata._partition_step(s, p_parent, v_schema, v_relname, v_space, v_like, v_cols,
													 v_tail, v_default, v_names, v_lo, v_hi, v_lo_id,
													 CASE WHEN v_hi_id > v_max THEN NULL ELSE v_hi_id::bigint END, true);
		action := r.action; partition := r.partition; statements := r.statements; replica := true;
		detail := r.detail;
		v_names := v_names || partition;
		RETURN NEXT;
		IF (v_time AND v_cut IS NOT NULL AND v_hi <= v_cut)
		   OR (NOT v_time AND v_cut_id IS NOT NULL AND v_hi_id <= v_cut_id) THEN
			v_expired := v_expired || r.relname::text;
			v_expired_ut := v_expired_ut || v_hi;
			v_expired_ui := v_expired_ui || v_hi_id::bigint;
		END IF;
	END LOOP;
	IF v_nulls > 0 THEN
		step := step + 1; phase := 'move'; action := 'note'; partition := NULL; statements := NULL;
		toplevel := false; replica := false;
		detail := pg_catalog.format('%s with a NULL "%s" %s in the default partition',
									CASE WHEN v_nulls = 1 THEN '1 row' ELSE v_nulls || ' rows' END, s.control_column,
									CASE WHEN v_nulls = 1 THEN 'stays' ELSE 'stay' END);
		RETURN NEXT;
	END IF;

	-- Retention: partitions wholly older than the cut-off, oldest first.
	IF v_cut IS NULL AND v_cut_id IS NULL THEN
		RETURN;
	END IF;
	IF v_drop_pending IS NOT NULL THEN
		-- DROP TABLE takes ACCESS EXCLUSIVE on the parent, under the step's
		-- lock_timeout, but needs no FINALIZE (which would wait for every
		-- older snapshot, the caller's included).
		step := step + 1; phase := 'retention'; action := 'drop'; partition := v_drop_pending::text;
		statements := ARRAY[pg_catalog.format('DROP TABLE %s', v_drop_pending)];
		toplevel := false; replica := false;
		detail := 'older than the retention of ' || v_ret || ', its detach interrupted';
		RETURN NEXT;
	ELSIF v_default IS NULL AND v_pending IS NOT NULL THEN
		-- A table has at most one detach pending; the next one waits.
		step := step + 1; phase := 'retention'; action := 'note'; partition := NULL; statements := NULL;
		toplevel := false; replica := false;
		detail := pg_catalog.format('retention waits for the pending detach of %s', v_pending);
		RETURN NEXT;
		RETURN;
	END IF;
	FOR r IN
		SELECT x.p, x.nspname, x.relname FROM (
			SELECT u.p::text AS p, n.nspname AS nspname, c.relname AS relname, u.ut, u.ui
			  FROM ROWS FROM (pg_catalog.unnest(v_parts), pg_catalog.unnest(v_ut), pg_catalog.unnest(v_ui)) u(p, ut, ui)
			  JOIN pg_catalog.pg_class c ON c.oid = u.p
			  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
			 WHERE (v_time AND u.ut <= v_cut) OR (NOT v_time AND u.ui <= v_cut_id)
			UNION ALL
			SELECT pg_catalog.format('%I.%I', v_schema, e.name), v_schema, e.name, e.ut, e.ui
			  FROM ROWS FROM (pg_catalog.unnest(v_expired), pg_catalog.unnest(v_expired_ut), pg_catalog.unnest(v_expired_ui)) e(name, ut, ui)) x
		 ORDER BY x.ut, x.ui
	LOOP
		phase := 'retention'; partition := r.p; replica := false;
		detail := 'older than the retention of ' || v_ret;
		IF v_default IS NULL THEN
			-- No default partition: DETACH CONCURRENTLY, which never blocks
			-- the parent's readers and writers.  It cannot run in a
			-- transaction block; the second statement completes it when it
			-- was interrupted after its first transaction.
			step := step + 1; action := 'detach'; toplevel := true;
			statements := ARRAY[pg_catalog.format('ALTER TABLE %s DETACH PARTITION %s CONCURRENTLY', p_parent, r.p),
								pg_catalog.format('ALTER TABLE %s DETACH PARTITION %s FINALIZE', p_parent, r.p)];
			RETURN NEXT;
			step := step + 1; toplevel := false;
			IF s.retention_mode = 'drop' THEN
				action := 'drop';
				statements := ARRAY[pg_catalog.format('DROP TABLE %s', r.p)];
			ELSE
				action := 'archive';
				statements := opsdata._partition_archive(r.nspname, r.relname, s.archive_schema);
			END IF;
			RETURN NEXT;
		ELSE
			-- With a default partition PostgreSQL allows only the plain
			-- forms, which lock the parent (and the default partition) in
			-- ACCESS EXCLUSIVE mode: one short transaction, under the
			-- step's lock_timeout.
			step := step + 1; toplevel := false;
			IF s.retention_mode = 'drop' THEN
				action := 'drop';
				statements := ARRAY[pg_catalog.format('DROP TABLE %s', r.p)];
			ELSE
				action := 'archive';
				statements := pg_catalog.format('ALTER TABLE %s DETACH PARTITION %s', p_parent, r.p)
							  || opsdata._partition_archive(r.nspname, r.relname, s.archive_schema);
			END IF;
			RETURN NEXT;
		END IF;
	END LOOP;
END
$$;

--
-- Jobs: max_runtime is at least 1 millisecond (a shorter one meant no
-- limit); runs outlive their job, with its name.
--
UPDATE opsdata.jobs
   SET max_runtime = CASE WHEN max_runtime < interval '0.5 milliseconds' THEN NULL ELSE interval '1 millisecond' END
 WHERE max_runtime < interval '1 millisecond';
ALTER TABLE opsdata.jobs DROP CONSTRAINT jobs_max_runtime_check,
	ADD CONSTRAINT jobs_max_runtime_check CHECK (max_runtime >= interval '1 millisecond');
COMMENT ON COLUMN opsdata.jobs.max_runtime IS 'A run lasting longer is cancelled (at least 1 millisecond); NULL for no limit';

ALTER TABLE opsdata.job_runs ADD COLUMN job_name text;
UPDATE opsdata.job_runs r SET job_name = j.name FROM opsdata.jobs j WHERE j.job_id = r.job_id;
COMMENT ON TABLE opsdata.job_runs IS 'One row per run of a job, kept for a bounded time (settings worker.job_history_*), also after the job is removed';
COMMENT ON COLUMN opsdata.job_runs.job_name IS 'Name of the job when it ran: runs outlive a removed job';

CREATE OR REPLACE FUNCTION opsdata._job_start(job bigint, manual boolean, pid integer,
	OUT run_id bigint, OUT name text, OUT command text, OUT run_as name,
	OUT builtin boolean, OUT max_runtime interval, OUT attempt integer)
RETURNS SETOF record
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j opsdata.jobs;
	t timestamptz := clock_timestamp();
	k text;
	due timestamptz;
	a integer := 1;
BEGIN
	-- Nobody else holds the job's lock, so a run still marked running was
	-- interrupted: its process ended before recording the outcome.
	PERFORM opsdata._job_finish(r.run_id, 'crashed', NULL,
			'The run was interrupted: the process running it ended before the run finished.')
	   FROM opsdata.job_runs r WHERE r.job_id = _job_start.job AND r.status = 'running';

	SELECT * INTO j FROM opsdata.jobs WHERE job_id = _job_start.job FOR UPDATE;
	IF NOT FOUND THEN
		IF manual THEN
			RAISE EXCEPTION 'job % does not exist', job
				USING ERRCODE = 'undefined_object',
					  HINT = 'The jobs are listed in opsdata.jobs.';
		END IF;
		RETURN;
	END IF;

	IF manual THEN
		k := 'manual';
	ELSIF j.paused THEN
		RETURN;
	ELSIF j.next_run <= t THEN
		k := 'scheduled';
		due := j.next_run;
		UPDATE opsdata.jobs SET next_run = opsdata._job_next_run(j.next_run, j.schedule, t), retry_at = NULL
		 WHERE job_id = j.job_id;
	ELSIF j.retry_at <= t THEN
		k := 'retry';
		due := j.retry_at;
		SELECT r.attempt + 1 INTO a FROM opsdata.job_runs r
		 WHERE r.job_id = j.job_id ORDER BY r.started_at DESC, r.run_id DESC LIMIT 1;
		a := coalesce(a, 2);
		UPDATE opsdata.jobs SET retry_at = NULL WHERE job_id = j.job_id;
	ELSE
		RETURN;
	END IF;

	INSERT INTO opsdata.job_runs (job_id, kind, due_at, started_at, attempt, pid, job_name)
		 VALUES (j.job_id, k, due, t, a, _job_start.pid, j.name)
	  RETURNING job_runs.run_id INTO run_id;
	name := j.name;
	command := j.command;
	run_as := j.run_as;
	builtin := j.builtin;
	max_runtime := j.max_runtime;
	attempt := a;
	RETURN NEXT;
END
$$;

CREATE OR REPLACE FUNCTION opsdata._job_check(name text, command text, schedule interval, max_runtime interval,
	max_retries integer, retry_delay interval)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF name IS NOT NULL AND btrim(name) = '' THEN
		RAISE EXCEPTION 'job name must not be empty' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF command IS NOT NULL THEN
		IF btrim(command) = '' THEN
			RAISE EXCEPTION 'job command must not be empty' USING ERRCODE = 'invalid_parameter_value',
				HINT = 'A command is an SQL statement or a procedure call, such as CALL app.cleanup().';
		END IF;
		PERFORM opsdata._worker_check_command(command);
	END IF;
	IF schedule < interval '1 second' THEN
		RAISE EXCEPTION 'invalid job schedule "%"', schedule USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'The schedule is the interval between two starts and must be at least 1 second.';
	END IF;
	IF max_runtime < interval '0' THEN
		RAISE EXCEPTION 'invalid job max_runtime "%"', max_runtime USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'max_runtime must be a positive interval, or NULL for no limit.';
	END IF;
	-- A limit is counted in whole milliseconds: a shorter one is no limit.
	IF max_runtime > interval '0' AND max_runtime < interval '1 millisecond' THEN
		RAISE EXCEPTION 'invalid job max_runtime "%"', max_runtime USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'max_runtime must be at least 1 millisecond.',
			HINT = 'Give 0 or NULL for no limit.';
	END IF;
	IF max_retries < 0 THEN
		RAISE EXCEPTION 'invalid job max_retries %', max_retries USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'max_retries must be zero or more.';
	END IF;
	IF retry_delay <= interval '0' THEN
		RAISE EXCEPTION 'invalid job retry_delay "%"', retry_delay USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'retry_delay must be a positive interval.';
	END IF;
END
$$;

CREATE OR REPLACE FUNCTION opsdata.add_job(name text, command text, schedule interval,
	start_at timestamptz DEFAULT NULL, paused boolean DEFAULT false, max_runtime interval DEFAULT NULL,
	max_retries integer DEFAULT 3, retry_delay interval DEFAULT '10 seconds',
	run_as name DEFAULT NULL, comment text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	id bigint;
BEGIN
	IF name IS NULL OR command IS NULL OR schedule IS NULL THEN
		RAISE EXCEPTION 'job name, command and schedule must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF paused IS NULL OR max_retries IS NULL OR retry_delay IS NULL THEN
		RAISE EXCEPTION 'paused, max_retries and retry_delay must not be null'
			USING ERRCODE = 'null_value_not_allowed',
				  HINT = 'Leave them out to use their defaults.';
	END IF;
	PERFORM opsdata._job_check(name, command, schedule, max_runtime, max_retries, retry_delay);
	IF max_runtime = interval '0' THEN
		max_runtime := NULL;
	END IF;
	run_as := coalesce(run_as, opsdata._worker_acting_role());
	PERFORM opsdata._job_check_role(run_as, 'add');
	IF EXISTS (SELECT FROM opsdata.jobs j WHERE j.name = add_job.name) THEN
		RAISE EXCEPTION 'job "%" already exists', name USING ERRCODE = 'duplicate_object';
	END IF;
	INSERT INTO opsdata.jobs (name, command, schedule, paused, max_runtime, max_retries, retry_delay,
							  run_as, next_run, comment)
		 VALUES (name, command, schedule, paused, max_runtime, max_retries, retry_delay,
				 run_as, coalesce(start_at, now()), comment)
	  RETURNING job_id INTO id;
	-- Runs outlive their job: an identifier that runs of a removed job
	-- hold is never given to a new job (it can only come back when the
	-- sequence was set back).
	IF EXISTS (SELECT FROM opsdata.job_runs r WHERE r.job_id = id) THEN
		RAISE EXCEPTION 'job identifier % is already used by the runs of a removed job', id
			USING ERRCODE = 'unique_violation',
				  DETAIL = 'The sequence opsdata.jobs_job_id_seq was set back.',
				  HINT = 'Set the sequence past the highest job_id of opsdata.jobs and opsdata.job_runs.';
	END IF;
	RETURN id;
END
$$;

CREATE OR REPLACE FUNCTION opsdata.remove_job(job bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j opsdata.jobs := opsdata._job_get(job);
BEGIN
	IF j.builtin THEN
		RAISE EXCEPTION 'cannot remove built-in job "%"', j.name
			USING ERRCODE = 'insufficient_privilege',
				  HINT = 'Pause it with opsdata.pause_job() instead.';
	END IF;
	-- The runs stay, as evidence of what ran, until the history's
	-- retention removes them.
	DELETE FROM opsdata.jobs WHERE job_id = j.job_id;
END
$$;

COMMENT ON FUNCTION opsdata.remove_job(bigint) IS 'Remove a job; its runs stay in opsdata.job_runs until the worker.job_history_* retention removes them; a run in progress finishes';

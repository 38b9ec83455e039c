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
		IF NOT t.relispartition THEN
			EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS opsdata_guard ON %s', t.rel);
		END IF;
		EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS opsdata_guard_truncate ON %s', t.rel);
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

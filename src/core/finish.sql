-- Core, last piece: health across every area, grants on core functions, and
-- the warning when the library is not preloaded.

-- opsdata.health() gathers the rows of every function named "_health_*" in
-- the extension's schemas, each returning (component, status, detail): an
-- area adds its rows by defining one.  A failing row source shows as an
-- error row of its own instead of failing the whole call.
CREATE FUNCTION opsdata._health_extension(OUT component text, OUT status text, OUT detail text)
RETURNS SETOF record
LANGUAGE sql STABLE
AS $$
	SELECT 'extension',
		   CASE WHEN e.extversion = opsdata._library_version() THEN 'ok' ELSE 'error' END,
		   CASE WHEN e.extversion = opsdata._library_version()
				THEN pg_catalog.format('pg_opsdata %s.', e.extversion)
				WHEN pg_catalog.string_to_array(e.extversion, '.')::integer[]
					 < pg_catalog.string_to_array(opsdata._oldest_schema(), '.')::integer[]
				THEN pg_catalog.format('The loaded library is version %s and works with the objects of pg_opsdata %s or later, but this database has version %s: audited statements and the jobs of this database are refused. Run ALTER EXTENSION pg_opsdata UPDATE.',
									   opsdata._library_version(), opsdata._oldest_schema(), e.extversion)
				ELSE pg_catalog.format('The loaded library is version %s but the extension is version %s. Run ALTER EXTENSION pg_opsdata UPDATE, or restart the server if the library was upgraded.',
									   opsdata._library_version(), e.extversion)
		   END
	  FROM pg_catalog.pg_extension e
	 WHERE e.extname = 'pg_opsdata'
$$;

COMMENT ON FUNCTION opsdata._health_extension() IS 'Internal: whether the loaded library matches the installed extension';

CREATE FUNCTION opsdata.health()
RETURNS TABLE (component text, status text, detail text)
LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	source regprocedure;
BEGIN
	FOR source IN
		SELECT p.oid::regprocedure
		  FROM pg_catalog.pg_proc p
		  JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid
									 AND d.deptype = 'e'
		  JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_opsdata'
		 WHERE p.proname LIKE '\_health\_%' AND p.pronargs = 0
		 ORDER BY p.proname
	LOOP
		BEGIN
			RETURN QUERY EXECUTE pg_catalog.format('SELECT component, status, detail FROM %s', source);
		EXCEPTION WHEN OTHERS THEN
			component := pg_catalog.regexp_replace(source::text, '^.*_health_(\w+)\(\)$', '\1');
			status := 'error';
			detail := pg_catalog.format('Health check %s failed: %s', source, SQLERRM);
			RETURN NEXT;
		END;
	END LOOP;
END
$$;

COMMENT ON FUNCTION opsdata.health() IS 'One row per component: status ok, warning, error or off, and a detail for people';

-- Functions are created executable by PUBLIC; within our schemas nothing is
-- granted to PUBLIC, and each area grants what its roles need.
REVOKE ALL ON ALL ROUTINES IN SCHEMA opsdata, audit, learning, metrics FROM PUBLIC;

GRANT EXECUTE ON FUNCTION opsdata.health() TO opsdata_admin, opsdata_writer, opsdata_reader, opsdata_auditor;
GRANT EXECUTE ON FUNCTION opsdata.setting(text) TO opsdata_admin, opsdata_writer, opsdata_reader, opsdata_auditor;
GRANT EXECUTE ON FUNCTION opsdata.set_setting(text, text), opsdata.reset_setting(text) TO opsdata_admin;
GRANT SELECT ON opsdata.settings, opsdata.config, opsdata.current_settings TO opsdata_admin, opsdata_reader;

-- Every table of every area exists and has its grants: guard them all.
SELECT opsdata._guard_tables();

DO $$
BEGIN
	PERFORM opsdata._warn_if_not_preloaded();
END
$$;

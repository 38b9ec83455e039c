-- Core, last piece: health across every area, grants on core functions, and
-- the warning when the library is not preloaded.

CREATE FUNCTION opsdata.health()
RETURNS TABLE (component text, status text, detail text)
LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
	SELECT h.component, h.status, h.detail FROM opsdata._health_core() h
	UNION ALL
	SELECT 'extension',
		   CASE WHEN e.extversion = opsdata._library_version() THEN 'ok' ELSE 'error' END,
		   CASE WHEN e.extversion = opsdata._library_version()
				THEN pg_catalog.format('pg_opsdata %s.', e.extversion)
				ELSE pg_catalog.format('The loaded library is version %s but the extension is version %s. Run ALTER EXTENSION pg_opsdata UPDATE, or restart the server if the library was upgraded.',
									   opsdata._library_version(), e.extversion)
		   END
	  FROM pg_catalog.pg_extension e
	 WHERE e.extname = 'pg_opsdata'
$$;

COMMENT ON FUNCTION opsdata.health() IS 'One row per component: status ok, warning, error or off, and a detail for people';

-- Functions are created executable by PUBLIC; within our schemas nothing is
-- granted to PUBLIC, and each area grants what its roles need.
REVOKE ALL ON ALL ROUTINES IN SCHEMA opsdata, audit, learning, metrics FROM PUBLIC;

GRANT EXECUTE ON FUNCTION opsdata.health() TO opsdata_admin, opsdata_writer, opsdata_reader, opsdata_auditor;
GRANT EXECUTE ON FUNCTION opsdata.setting(text) TO opsdata_admin, opsdata_writer, opsdata_reader, opsdata_auditor;
GRANT EXECUTE ON FUNCTION opsdata.set_setting(text, text), opsdata.reset_setting(text) TO opsdata_admin;
GRANT SELECT ON opsdata.settings, opsdata.config, opsdata.current_settings TO opsdata_admin, opsdata_reader;

DO $$
BEGIN
	PERFORM opsdata._warn_if_not_preloaded();
END
$$;

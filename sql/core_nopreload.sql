-- Without shared_preload_libraries, CREATE EXTENSION works, warns what is
-- off and how to fix it, the SQL API works and health reports it.
SHOW shared_preload_libraries;

CREATE EXTENSION pg_opsdata;

SELECT component, status, detail FROM opsdata.health() ORDER BY component;

SELECT opsdata.setting('no.such.setting');

DROP EXTENSION pg_opsdata;

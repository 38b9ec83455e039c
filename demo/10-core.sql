-- pg_opsdata in a new database: one CREATE EXTENSION, and the application's
-- operational stores are there, with roles to use them and a health check.
\echo '-- CREATE EXTENSION pg_opsdata'
CREATE EXTENSION pg_opsdata;

\echo '-- the stores, per schema'
SELECT n.nspname AS schema, string_agg(c.relname, ', ' ORDER BY c.relname) AS tables
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname IN ('audit', 'learning', 'metrics', 'opsdata')
   AND c.relkind IN ('r', 'p') AND NOT c.relispartition
 GROUP BY 1 ORDER BY 1;

\echo '-- an application role that records metrics and feedback and reads health'
CREATE ROLE demo_app LOGIN IN ROLE opsdata_writer, opsdata_reader;
SET ROLE demo_app;
SELECT component, status, detail FROM opsdata.health() ORDER BY component;
RESET ROLE;

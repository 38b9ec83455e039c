-- Runs last: every test before it cleaned up after itself, so tests do not
-- depend on each other's leftovers.
SELECT extname FROM pg_extension WHERE extname <> 'plpgsql';
SELECT c.oid::regclass AS leftover_relation, c.relkind
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
   AND n.nspname NOT LIKE 'pg\_temp\_%' AND n.nspname NOT LIKE 'pg\_toast\_temp\_%'
 ORDER BY 1;
SELECT p.oid::regprocedure AS leftover_function
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
 ORDER BY 1;
SELECT nspname AS leftover_schema FROM pg_namespace
 WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'public')
   AND nspname NOT LIKE 'pg\_temp\_%' AND nspname NOT LIKE 'pg\_toast\_temp\_%'
 ORDER BY 1;

-- A schema of the same name as one of pg_opsdata's makes CREATE EXTENSION
-- fail with a clear error, and nothing is left behind.
CREATE SCHEMA metrics;
CREATE TABLE metrics.mine (x int);

CREATE EXTENSION pg_opsdata;

SELECT count(*) AS extension_rows FROM pg_extension WHERE extname = 'pg_opsdata';
SELECT nspname FROM pg_namespace
 WHERE nspname IN ('audit', 'learning', 'metrics', 'opsdata') ORDER BY 1;
SELECT count(*) AS user_table_kept FROM metrics.mine;

-- Two at once are named together.
CREATE SCHEMA audit;
CREATE EXTENSION pg_opsdata;

DROP SCHEMA metrics CASCADE;
DROP SCHEMA audit;
CREATE EXTENSION pg_opsdata;
SELECT extversion FROM pg_extension WHERE extname = 'pg_opsdata';
DROP EXTENSION pg_opsdata;

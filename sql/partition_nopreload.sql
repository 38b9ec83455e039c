-- Without shared_preload_libraries, partition maintenance works all the
-- same (DESIGN.md, contract 1): its worker is started on demand.
SET client_min_messages = error;
CREATE EXTENSION pg_opsdata;
RESET client_min_messages;
CREATE TABLE visits (at timestamptz NOT NULL) PARTITION BY RANGE (at);
CREATE TABLE visits_default PARTITION OF visits DEFAULT;
INSERT INTO visits VALUES (now() - interval '2 days'), (now());
SELECT opsdata.manage_partitions('visits', 'at', '1 day', premake => 2);
SELECT parent_table, status, created, moved, message FROM opsdata.run_maintenance('visits');
SELECT count(*) AS left_in_default FROM ONLY visits_default;
SELECT count(*) AS partitions FROM opsdata.show_partitions('visits') WHERE NOT is_default;
DROP TABLE visits;
DROP EXTENSION pg_opsdata;

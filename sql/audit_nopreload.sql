-- Without shared_preload_libraries the audit API still works: nothing is
-- captured, flush() has nothing to write, and health says why.
CREATE EXTENSION pg_opsdata;
SET pg_opsdata.audit = 'all';
CREATE TABLE t (id int);
INSERT INTO t VALUES (1);
SELECT audit.flush();
SELECT count(*) AS entries FROM audit.entries;
SELECT * FROM audit.queue_state();
SELECT component, status, detail FROM opsdata.health() WHERE component LIKE 'audit%' ORDER BY 1;
SELECT audit.add_rule('exclude', class => 'read') > 0 AS rule_added;
SELECT count(*) AS rules FROM audit.rules;
RESET pg_opsdata.audit;
DROP TABLE t;
DROP EXTENSION pg_opsdata;

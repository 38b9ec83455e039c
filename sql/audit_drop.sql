-- DROP EXTENSION takes the trail with it, including what the queue still
-- held for it: a new CREATE EXTENSION starts with an empty trail.
CREATE EXTENSION pg_opsdata;
CREATE TABLE audit_drop_t (id int);
SET pg_opsdata.audit = 'read';
SELECT count(*) FROM audit_drop_t;
SELECT count(*) FROM audit_drop_t;
RESET pg_opsdata.audit;
DROP EXTENSION pg_opsdata;
CREATE EXTENSION pg_opsdata;
SELECT audit.flush() AS flushed;
SELECT count(*) AS entries FROM audit.entries;
SELECT used, enqueued, drained FROM audit.queue_state() WHERE database = current_database();
DROP EXTENSION pg_opsdata;
DROP TABLE audit_drop_t;

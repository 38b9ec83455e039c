-- Audit: the sample workload leaves a queryable trail, with its failed
-- statements, a rolled-back transaction and a failed login.
\echo '-- audit writes, DDL, role changes and logins of every session of this server'
ALTER SYSTEM SET pg_opsdata.audit = 'write, ddl, role, login';
SELECT pg_catalog.pg_reload_conf();
SELECT pg_catalog.pg_sleep(0.2);
\connect

\echo '-- a small workload'
CREATE TABLE orders (id int PRIMARY KEY, customer text NOT NULL, total numeric);
INSERT INTO orders VALUES (1, 'acme', 120), (2, 'globex', 75);
UPDATE orders SET total = total * 1.1 WHERE customer = 'acme';

\echo '-- a transaction that is rolled back'
BEGIN;
DELETE FROM orders;
ROLLBACK;

\echo '-- a statement that fails'
\set ON_ERROR_STOP 0
INSERT INTO orders VALUES (1, 'initech', 10);
\set ON_ERROR_STOP 1

\echo '-- a role whose password never reaches the trail, and a login it may not make'
CREATE ROLE demo_intruder NOLOGIN PASSWORD 'letmein';
\! psql -X -d demo -U demo_intruder -c 'SELECT 1' 2>&1 | sed 's/^/    /'

\echo '-- a role that logs in with a password (scram-sha-256 in pg_hba.conf), and a wrong password'
CREATE ROLE demo_clerk LOGIN PASSWORD 'clerk-secret';
SELECT pg_catalog.current_setting('hba_file') AS hba_file \gset
\setenv HBA_FILE :hba_file
\! { echo 'local all demo_clerk scram-sha-256'; cat "$HBA_FILE"; } > "$HBA_FILE.new" && mv "$HBA_FILE.new" "$HBA_FILE"
SELECT pg_catalog.pg_reload_conf();
\! PGPASSWORD=not-the-password psql -X -d demo -U demo_clerk -c 'SELECT 1' 2>&1 | sed 's/^/    /'
\! PGPASSWORD=clerk-secret psql -X -d demo -U demo_clerk -Atc 'SELECT current_user' 2>&1 | sed 's/^/    logged in as /'

\echo '-- the application logs its own events, for the end user it acts for (through a pooler,'
\echo '-- every session is the pooler role; the actor is declared per transaction)'
BEGIN;
SELECT audit.set_context('alice@example.com', 'req-7f3a', '{"tenant": "acme"}');
UPDATE orders SET total = 99 WHERE id = 2;
SELECT audit.log_event('order.discount', 'order:2', details => '{"from": 75, "to": 99}');
COMMIT;
BEGIN;
SELECT audit.set_context('bob@example.com', 'req-80c1');
SELECT audit.log_event('order.approve', 'order:3', 'denied', '{"reason": "over limit"}');
COMMIT;

\echo '-- the trail (the scheduler writes what the queue holds within pg_opsdata.audit_flush_interval;'
\echo '-- audit.flush() writes it at once)'
SELECT 'written' AS queue FROM audit.flush();
SELECT ts::time(0) AS at, username, actor, class, command, objects, rows, outcome, sqlstate,
	   coalesce(left(statement_text, 50), details::text) AS statement_or_details
  FROM audit.trail
 WHERE class <> 'login' OR outcome = 'failed' OR username = 'demo_clerk'
 ORDER BY ts, entry_id;

\echo '-- health of audit'
SELECT component, status, detail FROM opsdata.health() WHERE component LIKE 'audit%';

ALTER SYSTEM RESET pg_opsdata.audit;
SELECT pg_catalog.pg_reload_conf();
DROP ROLE demo_clerk;

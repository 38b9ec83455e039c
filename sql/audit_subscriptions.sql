-- Audit subscriptions: the entries that match a filter are enqueued as
-- they are written, with the entry as their payload; a predicate over the
-- columns of audit.trail narrows the filter, and one that fails on an
-- entry lets it through without failing the statement.
CREATE EXTENSION pg_opsdata;
DO $$BEGIN PERFORM opsdata.pause_job(job_id) FROM opsdata.jobs WHERE builtin; END$$;
CREATE TABLE accounts (id int PRIMARY KEY, owner text, balance numeric);
SELECT audit.subscribe('big_changes', classes => '{write}', objects => '{public.*}',
	predicate => 'rows >= 2 AND command IN (''UPDATE'', ''DELETE'')') AS queue_id;
SELECT audit.subscribe('drops', commands => '{drop table}') AS queue_id;
SELECT audit.subscribe('casts', classes => '{write}', predicate => 'statement_text::int > 0') AS queue_id;
SELECT audit.subscribe('here', commands => '{create table, drop table}',
	predicate => 'server_id IS NOT NULL') AS queue_id;
SET pg_opsdata.audit = 'write, ddl';
INSERT INTO accounts VALUES (1, 'ann', 10), (2, 'bob', 20), (3, 'cy', 30);
UPDATE accounts SET balance = balance + 1 WHERE id = 1;
UPDATE accounts SET balance = balance + 1;
DELETE FROM accounts WHERE id = 3;
CREATE TABLE scratch (a int);
DROP TABLE scratch;
RESET pg_opsdata.audit;
SELECT q.name, i.payload->>'command' AS command, i.payload->>'rows' AS rows,
	   i.payload->'objects' AS objects, i.payload->>'statement_text' AS statement,
	   i.entry_id = (i.payload->>'entry_id')::bigint AS same_entry
  FROM audit.queue_items i JOIN audit.queues q USING (queue_id)
 ORDER BY i.item_id;
-- The payload has the columns of audit.trail but statement_id and
-- constants (statement_text has the statement with its constants).
SELECT coalesce(t.k, p.k) AS key, t.k IS NOT NULL AS in_trail, p.k IS NOT NULL AS in_payload
  FROM (SELECT a.attname::text AS k FROM pg_attribute a
		 WHERE a.attrelid = 'audit.trail'::regclass AND a.attnum > 0 AND NOT a.attisdropped) t
  FULL JOIN (SELECT DISTINCT jsonb_object_keys(payload) AS k FROM audit.queue_items) p ON p.k = t.k
 WHERE t.k IS NULL OR p.k IS NULL
 ORDER BY 1;
SELECT count(*) AS same_server FROM audit.queue_items i JOIN audit.queues q USING (queue_id)
 WHERE q.name = 'here' AND (i.payload->>'server_id')::bigint = audit.server_id();
SELECT audit.unsubscribe('big_changes'), audit.unsubscribe('drops'), audit.unsubscribe('casts'),
	audit.unsubscribe('here');
DROP TABLE accounts;
DROP EXTENSION pg_opsdata;

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
-- The payload has the columns of audit.trail.
SELECT array_agg(k ORDER BY k) AS payload_keys
  FROM (SELECT DISTINCT jsonb_object_keys(payload) AS k FROM audit.queue_items) s;
SELECT audit.unsubscribe('big_changes'), audit.unsubscribe('drops'), audit.unsubscribe('casts');
DROP TABLE accounts;
DROP EXTENSION pg_opsdata;

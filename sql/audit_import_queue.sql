-- audit.import_queue_items: an import of queue items is itself audited,
-- whatever the audit classes, as IMPORT QUEUE ITEMS with the role the
-- session acts as, how many items it brought and how many of them were
-- dead letters; an item not acknowledged that the old store had handed out
-- max_deliveries times goes straight to audit.dead_letters.
CREATE EXTENSION pg_opsdata;
SELECT audit.create_queue('mail', max_deliveries => 3) > 0 AS made;
CREATE ROLE import_queue_admin;
GRANT opsdata_admin TO import_queue_admin;
SHOW pg_opsdata.audit;

SET ROLE import_queue_admin;
COPY audit.import_queue_items (queue, payload, enqueued_at, deliveries, acked_at) FROM STDIN (FORMAT csv);
mail,"{""to"": ""a@example.com""}",2024-05-01 08:00:00+00,1,2024-05-01 08:00:01+00
mail,"{""to"": ""b@example.com""}",2024-05-01 08:00:05+00,3,
mail,"{""to"": ""c@example.com""}",2024-05-01 08:00:10+00,2,
mail,"{""to"": ""d@example.com""}",2024-05-01 08:00:20+00,7,2024-05-01 08:00:30+00
\.
RESET ROLE;

-- b was handed out three times, as many as the queue allows: a dead
-- letter already, with its deliveries and enqueue time; a was done, d too
-- (however often it was handed out), and c is pending.
SELECT d.payload->>'to' AS "to", d.deliveries, d.enqueued_at, d.died_at > now() - interval '1 hour' AS died_at_import,
	   d.queue_id = q.queue_id AS of_mail
  FROM audit.dead_letters d, audit.queues q WHERE q.name = 'mail';
SELECT payload->>'to' AS "to", deliveries FROM audit.read('mail', 10);
SELECT payload->>'to' AS "to", acked_at FROM audit.queue_items WHERE acked_at IS NOT NULL ORDER BY item_id;

-- The record of the import, written with it.
SELECT audit.flush() >= 0 AS flushed;
SELECT class, command, username = current_user AS session_user_named, current_user_name,
	   objects, rows, details, statement_text LIKE 'COPY audit.import_queue_items%' AS statement
  FROM audit.trail WHERE command = 'IMPORT QUEUE ITEMS';

-- A failed import leaves nothing but its record, rolled back.
SET ROLE import_queue_admin;
COPY audit.import_queue_items (queue, payload, enqueued_at, deliveries, acked_at) FROM STDIN (FORMAT csv);
mail,"{""to"": ""e@example.com""}",2024-05-01 09:00:00+00,0,
mail,"{""to"": ""f@example.com""}",2999-01-01 00:00:00+00,0,
\.
RESET ROLE;
SELECT audit.flush() >= 0 AS flushed;
SELECT command, outcome, rows FROM audit.entries WHERE command = 'IMPORT QUEUE ITEMS' ORDER BY entry_id;
SELECT count(*) AS items_of_e FROM audit.queue_items WHERE payload->>'to' = 'e@example.com';

SELECT audit.drop_queue('mail');
DROP ROLE import_queue_admin;
DROP EXTENSION pg_opsdata;

-- Imports of an older system's stores (audit.import_events,
-- audit.import_queue_items) store their rows in batches: an import of more
-- rows than a batch is read whole by the next statement, a bad row after
-- the first batches leaves nothing of its statement, and the statement
-- after a failed one imports its own rows only.
CREATE EXTENSION pg_opsdata;
SELECT opsdata.set_setting('audit.retention', '10 years');

BEGIN;
INSERT INTO audit.import_events (ts, actor, action)
SELECT pg_catalog.now() - interval '1 day' + i * interval '1 ms', 'user' || i, 'old.view'
  FROM generate_series(1, 2500) i;
SELECT count(*), count(DISTINCT actor), count(DISTINCT xid)
  FROM audit.entries WHERE class = 'imported' AND command = 'old.view';
SAVEPOINT s;
-- Row 2,300 has no action: the 2,000 rows stored before it go too.
INSERT INTO audit.import_events (ts, action)
SELECT pg_catalog.now() - interval '1 day', CASE WHEN i <> 2300 THEN 'old.failed' END
  FROM generate_series(1, 2400) i;
ROLLBACK TO s;
SELECT count(*) FROM audit.entries WHERE command = 'old.failed';
INSERT INTO audit.import_events (ts, action) VALUES (pg_catalog.now() - interval '1 hour', 'old.after');
SELECT command, count(*) FROM audit.entries WHERE class = 'imported' GROUP BY command ORDER BY command;
COMMIT;
SELECT audit.flush() >= 0 AS flushed;
SELECT rows, outcome FROM audit.entries
 WHERE command = 'IMPORT AUDIT EVENTS' AND outcome = 'ok' ORDER BY entry_id;
SELECT count(*) AS failed_imports FROM audit.entries
 WHERE command = 'IMPORT AUDIT EVENTS' AND outcome <> 'ok';
SELECT count(*) FROM audit.entries WHERE class = 'imported';

-- Queue items, into two queues, in the order of their rows.
SELECT audit.create_queue('import_a') > 0 AS a, audit.create_queue('import_b') > 0 AS b;
SELECT audit.subscribe('import_sub', classes => ARRAY['ddl']) > 0 AS sub;
BEGIN;
INSERT INTO audit.import_queue_items (queue, payload, enqueued_at, deliveries)
SELECT CASE WHEN i % 3 = 0 THEN 'import_b' ELSE 'import_a' END, pg_catalog.jsonb_build_object('i', i),
	   pg_catalog.now() - interval '1 day' + i * interval '1 ms', i % 2
  FROM generate_series(1, 1500) i;
SELECT q.name, count(*), sum(i.deliveries) FROM audit.queue_items i JOIN audit.queues q USING (queue_id)
 WHERE q.kind = 'application' GROUP BY q.name ORDER BY q.name;
SAVEPOINT s;
INSERT INTO audit.import_queue_items (queue, payload, enqueued_at)
SELECT CASE WHEN i = 1400 THEN 'import_sub' ELSE 'import_a' END, '{}', pg_catalog.now() - interval '1 day'
  FROM generate_series(1, 1500) i;
ROLLBACK TO s;
INSERT INTO audit.import_queue_items (queue, payload, enqueued_at)
VALUES ('import_b', '{"i": 0}', pg_catalog.now() - interval '1 hour');
SELECT q.name, count(*) FROM audit.queue_items i JOIN audit.queues q USING (queue_id)
 WHERE q.kind = 'application' GROUP BY q.name ORDER BY q.name;
COMMIT;
SELECT string_agg(payload->>'i', ' ' ORDER BY item_id) FROM audit.read('import_b', 4);

-- Without the statement trigger that stores the last batch (a superuser
-- dropped it), the commit stores it.
DROP TRIGGER import_events_end ON audit.import_events;
INSERT INTO audit.import_events (ts, action)
SELECT pg_catalog.now() - interval '1 hour', 'old.no_end' FROM generate_series(1, 1500);
SELECT count(*) FROM audit.entries WHERE command = 'old.no_end';
CREATE TRIGGER import_events_end AFTER INSERT ON audit.import_events
	FOR EACH STATEMENT EXECUTE FUNCTION audit._import_event();

SELECT audit.unsubscribe('import_sub');
DROP EXTENSION pg_opsdata;

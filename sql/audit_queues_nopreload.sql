-- Without shared_preload_libraries the processing queues still work, from
-- read positions each backend keeps itself: items are read oldest first,
-- acknowledged, given back and dead-lettered as with preloading, and a
-- waiting read polls.
CREATE EXTENSION pg_opsdata;
SELECT audit.create_queue('jobs', max_deliveries => 2);
SELECT audit.enqueue_many('jobs', ARRAY['{"n": 1}', '{"n": 2}', '{"n": 3}']::jsonb[]);
CREATE TEMP TABLE got AS SELECT * FROM audit.read('jobs', 2);
SELECT g.payload, i.deliveries, i.leased FROM got g JOIN audit.queue_items i USING (item_id) ORDER BY item_id;
SELECT audit.ack(array_agg(item_id)) FROM got WHERE payload->>'n' = '1';
SELECT audit.nack(array_agg(item_id)) FROM got WHERE payload->>'n' = '2';
SELECT payload, deliveries FROM audit.read('jobs', 10) ORDER BY item_id;
SELECT audit.nack(array_agg(item_id)) FROM got WHERE payload->>'n' = '2';
-- Delivered twice already: a dead letter, not delivered again.
SELECT count(*) AS delivered FROM audit.read('jobs', 10, wait => '150 milliseconds');
SELECT payload, deliveries FROM audit.dead_letters;
SELECT shared FROM audit._queue_state();
SELECT queue, ready, leased, delayed, dead_letters FROM audit.queue_summary();
SELECT component, status FROM opsdata.health() WHERE component LIKE 'audit queue %';
DROP EXTENSION pg_opsdata;

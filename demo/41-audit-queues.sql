-- Audit processing queues: the application enqueues work with its own
-- transactions, a consumer works the queue (one item fails once and comes
-- back), and a subscription ships role changes as they are written.
\echo '-- a queue of invoices to render; each order enqueues its invoice in its own transaction'
SELECT audit.create_queue('invoices', max_deliveries => 3, comment => 'invoices to render');
CREATE TABLE shop_orders (id int PRIMARY KEY, customer text NOT NULL, total numeric NOT NULL);
CREATE TABLE shop_invoices (order_id int PRIMARY KEY, rendered_at timestamptz NOT NULL DEFAULT now());
\echo '-- a consumer waits on the empty queue, and is woken by the commit of the first order'
\! (psql -X -At -d demo -c "WITH r AS (SELECT * FROM audit.read('invoices', 10, wait => '30 seconds')), done AS (INSERT INTO shop_invoices (order_id) SELECT (payload->>'order')::int FROM r RETURNING order_id) SELECT 'consumer woken: order ' || order_id || ' rendered, acknowledged: ' || audit.ack((SELECT array_agg(item_id) FROM r)) FROM done" | sed 's/^/    /') & sleep 1; psql -X -q -d demo -c "BEGIN; INSERT INTO shop_orders VALUES (101, 'acme', 120); SELECT audit.enqueue('invoices', '{\"order\": 101}'); COMMIT;" >/dev/null; wait
BEGIN;
INSERT INTO shop_orders VALUES (102, 'globex', 75), (103, 'initech', 18);
SELECT audit.enqueue_many('invoices', ARRAY['{"order": 102}', '{"order": 103}']::jsonb[]);
COMMIT;
\echo '-- an order that is rolled back takes its item with it'
BEGIN;
INSERT INTO shop_orders VALUES (104, 'hooli', 9);
SELECT audit.enqueue('invoices', '{"order": 104}') IS NOT NULL AS enqueued;
ROLLBACK;

\echo '-- the consumer: lease a batch, render each invoice, acknowledge it in the same transaction;'
\echo '-- rendering order 103 fails the first time, so it is given back and comes again'
CREATE PROCEDURE demo_consume() LANGUAGE plpgsql AS $$
DECLARE
	item record;
	done int := 0;
BEGIN
	LOOP
		done := 0;
		FOR item IN SELECT * FROM audit.read('invoices', 10, visibility_timeout => '1 minute', wait => '2 seconds') LOOP
			IF (item.payload->>'order')::int = 103 AND item.deliveries = 1 THEN
				RAISE NOTICE 'order % failed to render, given back', item.payload->>'order';
				PERFORM audit.nack(ARRAY[item.item_id]);
			ELSE
				INSERT INTO shop_invoices (order_id) VALUES ((item.payload->>'order')::int) ON CONFLICT DO NOTHING;
				PERFORM audit.ack(ARRAY[item.item_id]);
				RAISE NOTICE 'order % rendered (delivery %)', item.payload->>'order', item.deliveries;
			END IF;
			done := done + 1;
		END LOOP;
		COMMIT;
		EXIT WHEN done = 0;
	END LOOP;
END
$$;
CALL demo_consume();
SELECT o.id, o.customer, i.rendered_at IS NOT NULL AS invoiced
  FROM shop_orders o LEFT JOIN shop_invoices i ON i.order_id = o.id ORDER BY o.id;
SELECT queue, kind, ready, leased, delayed, dead_letters FROM audit.queue_summary();

\echo '-- a subscription: role changes reach a queue as they are written, with the entry as payload'
SELECT audit.subscribe('role_changes', classes => '{role}', comment => 'shipped to the SIEM');
SET pg_opsdata.audit = 'role';
CREATE ROLE demo_temp NOLOGIN;
ALTER ROLE demo_temp CONNECTION LIMIT 1;
DROP ROLE demo_temp;
RESET pg_opsdata.audit;
SELECT payload->>'ts' AS at, payload->>'username' AS who, payload->>'command' AS command,
	   payload->>'statement_text' AS statement
  FROM audit.read('role_changes', 10);

\echo '-- health of the queues'
SELECT component, status, detail FROM opsdata.health() WHERE component LIKE 'audit queue %';
DROP PROCEDURE demo_consume();

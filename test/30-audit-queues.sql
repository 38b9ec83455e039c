-- The processing queues as each role uses them: administrators make
-- queues and subscriptions, writers enqueue and consume application
-- queues, auditors consume subscriptions, and nobody else gets anything.
-- Items come out oldest first, once per lease, with their delivery count;
-- nack and extend change the lease; an item delivered max_deliveries times
-- becomes a dead letter, and redrive queues it again.
BEGIN;
SELECT plan(77);

CREATE ROLE q_admin LOGIN IN ROLE opsdata_admin;
CREATE ROLE q_writer LOGIN IN ROLE opsdata_writer;
CREATE ROLE q_auditor LOGIN IN ROLE opsdata_auditor;
CREATE ROLE q_nobody LOGIN;

SELECT is((SELECT default_value FROM opsdata.settings WHERE key = 'audit.queue_retention'), '7 days',
	'acknowledged items are kept 7 days by default');
SELECT is((SELECT command FROM opsdata.jobs WHERE name = 'audit.queue_upkeep' AND builtin),
	'SELECT audit._queue_job()', 'a built-in job keeps the queues');
SELECT is(audit._queue_job(), 0::bigint, 'the job has nothing to do without queues');

-- Administrators make queues.
SET ROLE q_admin;
SELECT is(audit.create_queue('orders'), 1, 'an administrator makes a queue; the first has id 1');
SELECT is(audit.create_queue('mail', max_deliveries => 2, retention => '1 day', comment => 'outgoing'), 2,
	'a queue with its own options');
SELECT throws_ok($$SELECT audit.create_queue('orders')$$, '42710', 'queue "orders" already exists',
	'queue names are unique');
SELECT throws_ok($$SELECT audit.create_queue('')$$, '42602', NULL, 'a queue needs a name');
SELECT throws_ok($$SELECT audit.create_queue('x', max_deliveries => 0)$$, '22023',
	'max_deliveries must be between 1 and 1000', 'max_deliveries is checked');
SELECT throws_ok($$SELECT audit.create_queue('x', retention => '-1 day')$$, '22023',
	'retention must be a positive interval', 'retention is checked');
RESET ROLE;
SELECT results_eq($$SELECT name, kind, max_deliveries, retention, comment FROM audit.queues ORDER BY queue_id$$,
	$$VALUES ('orders', 'application', 5, NULL::interval, NULL), ('mail', 'application', 2, '1 day', 'outgoing')$$,
	'the queues are in audit.queues');

-- Writers enqueue and consume.
SET ROLE q_writer;
SELECT ok(audit.enqueue('orders', '{"n": 1}') < audit.enqueue('orders', '{"n": 2}'),
	'item ids grow in enqueue order');
SELECT is(audit.enqueue_many('orders', ARRAY['{"n": 3}', '{"n": 4}', '{"n": 5}']::jsonb[]), 3::bigint,
	'enqueue_many enqueues every payload');
SELECT is(audit.enqueue('orders', '{"n": 6}', delay => '1 hour') >> 48, 1::bigint,
	'an item id carries its queue in its high bits');
CREATE TEMP TABLE got AS SELECT * FROM audit.read('orders', 2, '5 minutes');
SELECT results_eq($$SELECT payload->>'n', deliveries FROM got ORDER BY item_id$$,
	$$VALUES ('1', 1), ('2', 1)$$, 'read returns the oldest items with their delivery count');
SELECT ok((SELECT bool_and(lease_until > now() + interval '4 minutes') FROM got), 'the lease is the visibility timeout');
INSERT INTO got SELECT * FROM audit.read('orders', 10, '5 minutes');
SELECT results_eq($$SELECT payload->>'n' FROM got ORDER BY item_id$$, ARRAY['1', '2', '3', '4', '5'],
	'a second read gets the next items, not the leased ones, nor the delayed one');
SELECT is_empty($$SELECT * FROM audit.read('orders', 10)$$, 'nothing is available while the leases hold');
SELECT is(audit.ack((SELECT array_agg(item_id) FROM got WHERE payload->>'n' IN ('1', '2'))), 2::bigint,
	'ack acknowledges items');
SELECT is(audit.ack((SELECT array_agg(item_id) FROM got WHERE payload->>'n' IN ('1', '2'))), 0::bigint,
	'acknowledging again changes nothing');
SELECT is(audit.nack((SELECT array_agg(item_id) FROM got WHERE payload->>'n' = '3')), 1::bigint,
	'nack gives an item back');
SELECT results_eq($$SELECT payload->>'n', deliveries FROM audit.read('orders', 10)$$,
	$$VALUES ('3', 2)$$, 'a nacked item is delivered again, with one more delivery');
SELECT is(audit.nack((SELECT array_agg(item_id) FROM got WHERE payload->>'n' = '4'), '1 hour'), 1::bigint,
	'nack with a delay');
SELECT is_empty($$SELECT * FROM audit.read('orders', 10)$$, 'an item nacked with a delay waits');
SELECT is(audit.extend((SELECT array_agg(item_id) FROM got WHERE payload->>'n' = '5'), '2 hours'), 1::bigint,
	'extend extends a lease that holds');
SELECT is(audit.extend((SELECT array_agg(item_id) FROM got WHERE payload->>'n' IN ('1', '4')), '2 hours'), 0::bigint,
	'extend does not extend acknowledged or given-back items');
SELECT is(audit.ack('{}'), 0::bigint, 'an empty ack is fine');
SELECT is(audit.ack(ARRAY[NULL, 12345]::bigint[]), 0::bigint, 'unknown ids and nulls are skipped');
SELECT results_eq($$SELECT queue, ready, leased, delayed, dead_letters FROM audit.queue_summary() WHERE queue = 'orders'$$,
	$$VALUES ('orders', 0::bigint, 2::bigint, 2::bigint, 0::bigint)$$,
	'queue_summary counts leased items, and delayed ones (nacked or enqueued with a delay)');
SELECT is_empty($$SELECT * FROM audit.read('orders', 0)$$, 'a read of 0 items returns none');
SELECT throws_ok($$SELECT * FROM audit.read('orders', 1001)$$, '22023',
	'number of items to read must be between 0 and 1000, not 1001', 'at most 1000 items per read');
SELECT throws_ok($$SELECT * FROM audit.read('orders', 1, '0 seconds')$$, '22023',
	'visibility timeout must be a positive interval', 'the lease must be positive');
SELECT throws_ok($$SELECT * FROM audit.read('orders', 1, '1 minute', wait => '-1 second')$$, '22023',
	'wait must be a positive interval', 'the wait must not be negative');
SELECT throws_ok($$SELECT * FROM audit.read('nowhere')$$, '42704', 'queue "nowhere" does not exist',
	'an unknown queue is an error');
SELECT throws_ok($$SELECT audit.enqueue('orders', NULL)$$, '22004', 'payload must not be null',
	'a payload is required');
SELECT throws_ok($$SELECT audit.enqueue_many('orders', ARRAY['{}', NULL]::jsonb[])$$, '22004',
	'payloads must not contain nulls', 'enqueue_many checks every payload first');
SELECT throws_ok($$SELECT audit.ack(NULL)$$, '22004', 'item ids must not be null', 'ack needs ids');
SELECT throws_ok($$SELECT audit.create_queue('x')$$, '42501', NULL, 'a writer cannot make queues');
SELECT throws_ok($$SELECT audit.drop_queue('orders')$$, '42501', NULL, 'a writer cannot drop queues');
SELECT throws_ok($$SELECT count(*) FROM audit.queue_items$$, '42501', NULL,
	'a writer reads items only through audit.read()');
SELECT throws_ok($$UPDATE audit.queue_items SET acked_at = now()$$, '42501', NULL,
	'a writer changes items only through the functions');
SELECT throws_ok($$SELECT audit._queue_upkeep()$$, '42501', NULL, 'a writer cannot call internal functions');
RESET ROLE;

-- Dead letters: "mail" gives up after two deliveries.
SET ROLE q_writer;
SELECT ok(audit.enqueue('mail', '{"to": "x@example.com"}') > 0, 'an item for the mail queue');
CREATE TEMP TABLE m AS SELECT * FROM audit.read('mail', 1);
SELECT is((SELECT deliveries FROM m), 1, 'first delivery');
SELECT is(audit.nack((SELECT array_agg(item_id) FROM m)), 1::bigint, 'the first delivery fails');
SELECT is((SELECT deliveries FROM audit.read('mail', 1)), 2, 'second delivery');
SELECT is(audit.nack((SELECT array_agg(item_id) FROM m)), 1::bigint, 'the second delivery fails');
SELECT is_empty($$SELECT * FROM audit.read('mail', 1)$$, 'an item delivered max_deliveries times is not delivered again');
RESET ROLE;
SELECT results_eq($$SELECT payload->>'to', deliveries FROM audit.dead_letters$$,
	$$VALUES ('x@example.com', 2)$$, 'it is a dead letter');
SELECT is((SELECT dead_letters FROM audit.queue_summary() WHERE queue = 'mail'), 1::bigint,
	'queue_summary counts the dead letter');
SELECT is((SELECT status FROM opsdata.health() WHERE component = 'audit queue mail'), 'warning',
	'health warns of dead letters');
SET ROLE q_admin;
SELECT is(audit.redrive('mail'), 1::bigint, 'an administrator queues the dead letter again');
RESET ROLE;
SET ROLE q_writer;
SELECT results_eq($$SELECT payload->>'to', deliveries FROM audit.read('mail', 1)$$,
	$$VALUES ('x@example.com', 1)$$, 'the redriven item is delivered afresh');
RESET ROLE;
SELECT is((SELECT status FROM opsdata.health() WHERE component = 'audit queue orders'), 'ok',
	'health has a row per queue');

-- Subscriptions: made by roles that may read the trail, consumed by them.
SET ROLE q_admin;
SELECT throws_ok($$SELECT audit.subscribe('siem', classes => '{login}')$$, '42501',
	'permission denied to subscribe to the audit trail',
	'an administrator who may not read the trail cannot subscribe');
RESET ROLE;
SELECT is(audit.subscribe('siem', classes => '{login}', outcomes => '{failed}'), 3, 'a superuser subscribes');
SELECT throws_ok($$SELECT audit.subscribe('bad', classes => '{writes}')$$, '22023', 'invalid audit class "writes"',
	'classes are checked');
SELECT throws_ok($$SELECT audit.subscribe('bad', outcomes => '{oops}')$$, '22023', 'invalid audit outcome "oops"',
	'outcomes are checked');
SELECT throws_ok($$SELECT audit.subscribe('bad', predicate => 'pg_sleep(1) IS NULL')$$, '22023', NULL,
	'a predicate may not call volatile functions');
SELECT throws_ok($$SELECT audit.subscribe('bad', predicate => '(SELECT true)')$$, '22023', NULL,
	'a predicate may not hold a sub-query');
SELECT throws_ok($$SELECT audit.subscribe('bad', predicate => 'now() > ts')$$, '22023', NULL,
	'a predicate may not call stable functions');
CREATE FUNCTION pg_temp.yes(text) RETURNS boolean IMMUTABLE LANGUAGE sql AS 'SELECT true';
SELECT throws_ok($$SELECT audit.subscribe('bad', predicate => 'pg_temp.yes(command)')$$, '22023', NULL,
	'a predicate may not call functions of users');
SELECT throws_ok($$SELECT audit.subscribe('bad', predicate => 'no_such_column')$$, '42703', NULL,
	'a predicate names columns of audit.trail');
SELECT throws_ok($$SELECT audit.subscribe('bad', predicate => 'statement_id IS NOT NULL')$$, '22023',
	'subscription predicate may not read column "statement_id"',
	'a predicate may not read a column that is not known when entries are matched');
SELECT throws_ok($$SELECT audit.subscribe('bad', predicate => 'true) FROM audit.entries WHERE (true')$$, '22023',
	'subscription predicate must be one expression', 'a predicate is one expression');
SELECT lives_ok($$SELECT audit.subscribe('ddl', classes => '{ddl}', commands => '{drop table}',
	predicate => $p$objects && ARRAY['public.x'] OR upper(statement_text) LIKE '%CASCADE%'$p$)$$,
	'a predicate of operators and built-in immutable functions over the trail''s columns');
SELECT is((SELECT commands FROM audit.subscriptions s JOIN audit.queues q USING (queue_id) WHERE q.name = 'ddl'),
	'{"DROP TABLE"}', 'commands are kept in upper case');
SELECT throws_ok($$SELECT audit.enqueue('siem', '{}')$$, '42809', 'queue "siem" is an audit subscription',
	'nothing is enqueued into a subscription by hand');
SET ROLE q_writer;
SELECT throws_ok($$SELECT * FROM audit.read('siem')$$, '42501', 'permission denied for queue "siem"',
	'a writer cannot consume a subscription');
RESET ROLE;
SET ROLE q_auditor;
SELECT lives_ok($$SELECT * FROM audit.read('siem')$$, 'an auditor consumes a subscription');
SELECT throws_ok($$SELECT * FROM audit.read('orders')$$, '42501', 'permission denied for queue "orders"',
	'an auditor cannot consume an application queue');
RESET ROLE;
SELECT ok(audit.unsubscribe('ddl'), 'unsubscribe drops a subscription');
SELECT ok(NOT audit.unsubscribe('orders'), 'unsubscribe leaves application queues alone');

-- Roles without grants get nothing.
SET ROLE q_nobody;
SELECT throws_ok($$SELECT audit.enqueue('orders', '{}')$$, '42501', NULL, 'a role without grants cannot enqueue');
SELECT throws_ok($$SELECT * FROM audit.read('orders')$$, '42501', NULL, 'a role without grants cannot read');
RESET ROLE;

SELECT ok(audit.drop_queue('orders'), 'drop_queue drops a queue');
SELECT is((SELECT count(*) FROM audit.queue_items WHERE queue_id = 1), 0::bigint, 'with its items');
SELECT ok(NOT audit.drop_queue('orders'), 'dropping a missing queue returns false');

SELECT * FROM finish();
ROLLBACK;

-- Application events (audit.log_event, audit.log_events) commit with the
-- application's transaction or vanish with it; the context an application
-- declares (audit.set_context, pg_opsdata.audit_actor and the like) is recorded
-- in every entry written while it is in force.
CREATE EXTENSION pg_opsdata;
CREATE TABLE orders (id int PRIMARY KEY, status text);
CREATE TABLE shown (last bigint);
INSERT INTO shown VALUES (0);
CREATE FUNCTION trail()
RETURNS TABLE (class text, command text, objects text[], outcome text, actor text, request_id text,
			   attributes jsonb, details jsonb, statement text)
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM audit.flush();
	RETURN QUERY
		SELECT t.class, t.command, t.objects, t.outcome, t.actor, t.request_id, t.attributes, t.details,
			   t.statement_text
		  FROM audit.trail t
		 WHERE t.entry_id > (SELECT last FROM shown)
		   AND t.class IN ('app', 'write', 'read')
		   AND coalesce(t.statement_text, '') NOT LIKE 'UPDATE shown %'
		 ORDER BY t.entry_id;
	UPDATE shown SET last = (SELECT coalesce(max(entry_id), 0) FROM audit.entries);
END
$$;
SET pg_opsdata.audit = 'write';

-- An event written with the change it describes; the context is the
-- transaction's.
BEGIN;
SELECT audit.set_context('alice@example.com', 'req-1', '{"tenant": "acme"}');
INSERT INTO orders VALUES (1, 'approved');
SELECT audit.log_event('order.approve', 'order:1', details => '{"amount": 120}');
COMMIT;
SELECT * FROM trail();

-- The transaction's context ends with it.
SELECT current_setting('pg_opsdata.audit_actor') AS actor_after_commit;
SELECT audit.log_event('order.view', 'order:1');
SELECT * FROM trail();

-- Rolled back: the event vanishes, the statement is recorded as rolled
-- back with its actor.
BEGIN;
SET LOCAL pg_opsdata.audit_actor = 'bob';
INSERT INTO orders VALUES (2, 'new');
SELECT audit.log_event('order.create', 'order:2');
ROLLBACK;
SELECT * FROM trail();

-- A savepoint rolled back takes the events logged since.
BEGIN;
SELECT audit.log_event('kept.before');
SAVEPOINT s;
SELECT audit.log_event('lost');
ROLLBACK TO SAVEPOINT s;
SELECT audit.log_event('kept.after', outcome => 'denied');
COMMIT;
SELECT * FROM trail();

-- Session scope lasts past the transaction; NULL clears.
SELECT audit.set_context('carol', scope => 'session');
SELECT audit.log_event('session.event');
SELECT audit.set_context(NULL, scope => 'session');
SELECT audit.log_event('no.actor');
SELECT * FROM trail();

-- In a read-only transaction an event goes through the queue.
BEGIN READ ONLY;
SELECT audit.log_event('record.view', 'patient:7');
COMMIT;
SELECT * FROM trail();

-- Rolled back, a read-only transaction's event vanishes too.
BEGIN READ ONLY;
SELECT audit.log_event('record.view.lost', 'patient:8');
ROLLBACK;
SELECT * FROM trail();

-- A context changed within the transaction holds for the events after it.
BEGIN;
SET LOCAL pg_opsdata.audit_actor = 'erin';
SELECT audit.log_event('first', details => '{"n": 1}');
SET LOCAL pg_opsdata.audit_actor = 'frank';
SELECT audit.log_event('second');
SET LOCAL pg_opsdata.audit_actor = '';
SELECT audit.log_event('third');
COMMIT;
SELECT * FROM trail();

-- The batch form.
SELECT audit.log_events('[{"action": "import.row", "object": "row:1"},
						  {"action": "import.row", "object": "row:2", "outcome": "failed",
						   "details": {"reason": "duplicate"}}]');
SELECT * FROM trail();

-- Exclude rules of class app drop events.
SELECT audit.add_rule('exclude', class => 'app', comment => 'no app events') AS app_rule \gset
SELECT audit.log_event('dropped');
SELECT audit.drop_rule(:app_rule);
SELECT audit.log_event('recorded');
SELECT * FROM trail();

-- A subscription on declared actors: only entries of those actors are
-- enqueued, statements and events alike; an entry without an actor never.
SELECT audit.subscribe('erin_or_frank', actors => '{erin,frank}') > 0 AS subscribed;
BEGIN;
SET LOCAL pg_opsdata.audit_actor = 'erin';
INSERT INTO orders VALUES (4, 'new');
SELECT audit.log_event('order.approve', 'order:4');
COMMIT;
BEGIN;
SELECT audit.set_context('Erin', scope => 'transaction');
SELECT audit.log_event('order.view', 'order:4');
COMMIT;
SELECT audit.log_event('order.view', 'order:4');
BEGIN;
SELECT audit.set_context('frank', scope => 'transaction');
SELECT audit.log_event('order.ship', 'order:4');
COMMIT;
-- (The SET of an audit setting is audited and queued: flushed first.)
SELECT audit.flush() >= 0 AS flushed;
SELECT i.payload->>'actor' AS actor, i.payload->>'class' AS class,
	   i.payload->>'command' AS command, i.payload->'objects' AS objects
  FROM audit.queue_items i JOIN audit.queues q USING (queue_id)
 WHERE q.name = 'erin_or_frank' ORDER BY 1, 2, 3;
SELECT audit.unsubscribe('erin_or_frank');
SELECT audit.subscribe('nobody', actors => '{alice,NULL}');
SELECT * FROM trail();

-- The COPY path: each row written to audit.new_events is an event of the
-- calling transaction; a bad row fails the COPY, naming its line, and
-- logs nothing of it.
BEGIN;
SET LOCAL pg_opsdata.audit_actor = 'gina';
COPY audit.new_events (action, object, outcome, details) FROM stdin (FORMAT csv);
report.export,report:7,ok,"{""rows"": 120}"
report.export,report:8,denied,
\.
COMMIT;
BEGIN;
COPY audit.new_events (action) FROM stdin;
gone.with.rollback
\.
ROLLBACK;
COPY audit.new_events (action, outcome) FROM stdin (FORMAT csv);
fine,ok
bad,maybe
\.
SELECT * FROM trail();
-- Writing to the view takes the privilege to log events: a role that
-- writes every table (pg_write_all_data) gets no further.
CREATE ROLE app_bulk_writer IN ROLE pg_write_all_data;
SET ROLE app_bulk_writer;
INSERT INTO audit.new_events (action) VALUES ('sneaky');
RESET ROLE;
DROP ROLE app_bulk_writer;
SELECT * FROM trail();

-- Clear errors, and nothing logged.
\set SHOW_CONTEXT never
SELECT audit.log_event(NULL);
SELECT audit.log_event('');
SELECT audit.log_event('x', outcome => 'rolled back');
SELECT audit.log_event('x', details => jsonb_build_object('pad', repeat('x', 9000)));
SELECT audit.log_events('{"action": "x"}');
SELECT audit.log_events('[{"action": "ok.first"}, {"object": "no action"}]');
SELECT audit.log_events('[{"action": 42}]');
SELECT audit.set_context('dave', scope => 'forever');
SELECT audit.set_context('dave', attributes => '[1, 2]');
SET pg_opsdata.audit_attributes = 'not json';
SET pg_opsdata.audit_attributes = '[1]';
-- JSON that jsonb cannot hold is refused when set, never when written.
SET pg_opsdata.audit_attributes = '{"note": "\u0000"}';
INSERT INTO orders VALUES (3, 'new');
DO $$
DECLARE
	detail text;
BEGIN
	PERFORM set_config('pg_opsdata.audit_actor', repeat('x', 1025), false);
EXCEPTION WHEN invalid_parameter_value THEN
	GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
	RAISE NOTICE 'refused: %', detail;
END
$$;
SELECT * FROM trail();

DROP FUNCTION trail();
DROP TABLE shown, orders;
DROP EXTENSION pg_opsdata;

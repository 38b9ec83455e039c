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

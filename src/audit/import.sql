-- Audit, import: write-only views that COPY loads the stores of an older
-- system into: its audit log (audit.import_events, into the trail as
-- entries of class imported) and its audit queue
-- (audit.import_queue_items, into an application queue).  Each has an
-- INSTEAD OF INSERT trigger in C (src/audit/import.c) that checks each
-- row, so that "COPY view FROM STDIN" names the line of a bad row and
-- loads the whole file or nothing, and an AFTER INSERT statement trigger
-- that ends the statement's import (its rows are stored in batches).

CREATE VIEW audit.import_events AS
	SELECT NULL::timestamptz AS ts, NULL::text AS actor, NULL::text AS action, NULL::text AS object,
		   NULL::text AS outcome, NULL::jsonb AS details, NULL::text AS request_id, NULL::jsonb AS attributes
	 WHERE false;

COMMENT ON VIEW audit.import_events IS 'Write-only, superusers only: COPY or INSERT the events of an older audit log into the trail, as entries of class imported';
COMMENT ON COLUMN audit.import_events.ts IS 'When the event happened: the entry''s ts';
COMMENT ON COLUMN audit.import_events.actor IS 'The end user who acted: the entry''s actor';
COMMENT ON COLUMN audit.import_events.action IS 'What was done: the entry''s command';
COMMENT ON COLUMN audit.import_events.object IS 'What it was done to: the entry''s objects';
COMMENT ON COLUMN audit.import_events.outcome IS 'ok, error, denied or failed; ok when NULL';
COMMENT ON COLUMN audit.import_events.details IS 'The event''s details, any JSON';
COMMENT ON COLUMN audit.import_events.request_id IS 'The request it belonged to, if the old log kept one';
COMMENT ON COLUMN audit.import_events.attributes IS 'More context, a JSON object, if the old log kept any';

CREATE FUNCTION audit._import_event()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_import_event';

COMMENT ON FUNCTION audit._import_event() IS 'Internal: writes a row written to audit.import_events into the trail';

CREATE TRIGGER import_event INSTEAD OF INSERT ON audit.import_events
	FOR EACH ROW EXECUTE FUNCTION audit._import_event();
-- Refuses an import the session may not make, even of no rows.
CREATE TRIGGER import_events_check BEFORE INSERT ON audit.import_events
	FOR EACH STATEMENT EXECUTE FUNCTION audit._import_event();
-- Stores the statement's last batch of entries.
CREATE TRIGGER import_events_end AFTER INSERT ON audit.import_events
	FOR EACH STATEMENT EXECUTE FUNCTION audit._import_event();

CREATE VIEW audit.import_queue_items AS
	SELECT NULL::text AS queue, NULL::jsonb AS payload, NULL::timestamptz AS enqueued_at,
		   NULL::integer AS deliveries, NULL::timestamptz AS acked_at
	 WHERE false;

COMMENT ON VIEW audit.import_queue_items IS 'Write-only: COPY or INSERT the items of an older queue into application queues, in their order';
COMMENT ON COLUMN audit.import_queue_items.queue IS 'The application queue the item goes into';
COMMENT ON COLUMN audit.import_queue_items.payload IS 'Item contents';
COMMENT ON COLUMN audit.import_queue_items.enqueued_at IS 'When the item was enqueued';
COMMENT ON COLUMN audit.import_queue_items.deliveries IS 'How many times it was handed out; 0 when NULL';
COMMENT ON COLUMN audit.import_queue_items.acked_at IS 'When it was acknowledged; NULL for an item still to be processed';

CREATE FUNCTION audit._import_queue_item()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_import_queue_item';

COMMENT ON FUNCTION audit._import_queue_item() IS 'Internal: enqueues a row written to audit.import_queue_items';

CREATE TRIGGER import_queue_item INSTEAD OF INSERT ON audit.import_queue_items
	FOR EACH ROW EXECUTE FUNCTION audit._import_queue_item();
-- Closes the statement's inserter.
CREATE TRIGGER import_queue_items_end AFTER INSERT ON audit.import_queue_items
	FOR EACH STATEMENT EXECUTE FUNCTION audit._import_queue_item();

GRANT INSERT ON audit.import_queue_items TO opsdata_admin;

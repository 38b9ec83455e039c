-- Audit, application side: the context an application declares, and the
-- events it logs into the trail (src/audit/appevents.c).

CREATE FUNCTION audit.set_context(actor text, request_id text DEFAULT NULL, attributes jsonb DEFAULT NULL,
	scope text DEFAULT 'transaction')
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF scope IS NULL OR scope NOT IN ('transaction', 'session') THEN
		RAISE EXCEPTION 'invalid scope "%" of an audit context', scope
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'The scope is transaction or session.';
	END IF;
	IF attributes IS NOT NULL AND pg_catalog.jsonb_typeof(attributes) OPERATOR(pg_catalog.<>) 'object' THEN
		RAISE EXCEPTION 'the attributes of an audit context must be a JSON object'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM pg_catalog.set_config('pg_opsdata.audit_actor', COALESCE(actor, ''),
								  scope OPERATOR(pg_catalog.=) 'transaction'),
			pg_catalog.set_config('pg_opsdata.audit_request_id', COALESCE(request_id, ''),
								  scope OPERATOR(pg_catalog.=) 'transaction'),
			pg_catalog.set_config('pg_opsdata.audit_attributes', COALESCE(attributes::text, ''),
								  scope OPERATOR(pg_catalog.=) 'transaction');
END
$$;

COMMENT ON FUNCTION audit.set_context(text, text, jsonb, text) IS 'Declare the end user, request and attributes recorded in every audit entry, until the transaction ends (scope transaction) or the session does (scope session); NULL clears';

CREATE FUNCTION audit.log_event(action text, object text DEFAULT NULL, outcome text DEFAULT 'ok',
	details jsonb DEFAULT NULL)
RETURNS void
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'audit_log_event';

COMMENT ON FUNCTION audit.log_event(text, text, text, jsonb) IS 'Record an application event (class app) in the audit trail, with the calling transaction';

CREATE FUNCTION audit.log_events(events jsonb)
RETURNS integer
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'audit_log_events';

COMMENT ON FUNCTION audit.log_events(jsonb) IS 'Record a JSON array of application events ({"action", "object", "outcome", "details"}) with the calling transaction; returns how many';

CREATE VIEW audit.new_events AS
	SELECT NULL::text AS action, NULL::text AS object, NULL::text AS outcome, NULL::jsonb AS details
	 WHERE false;

COMMENT ON VIEW audit.new_events IS 'Write-only: COPY or INSERT application events; each row is logged as audit.log_event() logs it, with the calling transaction';
COMMENT ON COLUMN audit.new_events.action IS 'What the application did (the entry''s command)';
COMMENT ON COLUMN audit.new_events.object IS 'What it was done to (the entry''s object), or NULL';
COMMENT ON COLUMN audit.new_events.outcome IS 'ok, error, denied or failed; ok when NULL';
COMMENT ON COLUMN audit.new_events.details IS 'Details of the event as JSON, or NULL';

CREATE FUNCTION audit._new_event_row()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_new_event_row';

COMMENT ON FUNCTION audit._new_event_row() IS 'Internal: logs a row written to audit.new_events as an application event';

CREATE TRIGGER new_event INSTEAD OF INSERT ON audit.new_events
	FOR EACH ROW EXECUTE FUNCTION audit._new_event_row();

GRANT INSERT ON audit.new_events TO opsdata_admin, opsdata_writer;
GRANT EXECUTE ON FUNCTION audit.set_context(text, text, jsonb, text), audit.log_event(text, text, text, jsonb),
	audit.log_events(jsonb) TO opsdata_admin, opsdata_writer;

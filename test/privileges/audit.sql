-- Privileges of the audit area's objects (see 02-core-privileges.sql).
INSERT INTO schema_matrix VALUES ('audit', 'opsdata_admin'), ('audit', 'opsdata_writer');

INSERT INTO table_matrix
SELECT rel, role, privs FROM (VALUES
	('audit.entries', ARRAY['opsdata_auditor'], ARRAY['SELECT']),
	('audit.statements', ARRAY['opsdata_auditor'], ARRAY['SELECT']),
	('audit.seals', ARRAY['opsdata_auditor'], ARRAY['SELECT']),
	('audit.rules', ARRAY['opsdata_auditor', 'opsdata_admin'], ARRAY['SELECT']),
	('audit.held_entries', ARRAY['opsdata_auditor'], ARRAY['SELECT']),
	('audit.queues', ARRAY['opsdata_auditor', 'opsdata_admin'], ARRAY['SELECT']),
	('audit.subscriptions', ARRAY['opsdata_auditor', 'opsdata_admin'], ARRAY['SELECT']),
	('audit.queue_items', ARRAY['opsdata_auditor'], ARRAY['SELECT']),
	('audit.dead_letters', ARRAY['opsdata_auditor'], ARRAY['SELECT']),
	('audit.trail', ARRAY['opsdata_auditor'], ARRAY['SELECT']),
	('audit.new_events', ARRAY['opsdata_admin', 'opsdata_writer'], ARRAY['INSERT']),
	('audit.import_queue_items', ARRAY['opsdata_admin'], ARRAY['INSERT'])
) v(rel, roles, privs), unnest(roles) AS role;

INSERT INTO function_matrix
SELECT func, role FROM (VALUES
	('audit.flush', ARRAY['opsdata_admin', 'opsdata_auditor']),
	('audit.queue_state', ARRAY['opsdata_admin', 'opsdata_auditor']),
	('audit.server_id', ARRAY['opsdata_admin', 'opsdata_auditor']),
	('audit.add_rule', ARRAY['opsdata_admin']),
	('audit.drop_rule', ARRAY['opsdata_admin']),
	-- processing queues: application queues are used by writers; the items
	-- of subscriptions are consumed by auditors (checked per queue)
	('audit.enqueue', ARRAY['opsdata_admin', 'opsdata_writer']),
	('audit.enqueue_many', ARRAY['opsdata_admin', 'opsdata_writer']),
	('audit.read', ARRAY['opsdata_admin', 'opsdata_writer', 'opsdata_auditor']),
	('audit.ack', ARRAY['opsdata_admin', 'opsdata_writer', 'opsdata_auditor']),
	('audit.nack', ARRAY['opsdata_admin', 'opsdata_writer', 'opsdata_auditor']),
	('audit.extend', ARRAY['opsdata_admin', 'opsdata_writer', 'opsdata_auditor']),
	('audit.queue_summary', ARRAY['opsdata_admin', 'opsdata_writer', 'opsdata_auditor']),
	('audit.create_queue', ARRAY['opsdata_admin']),
	('audit.drop_queue', ARRAY['opsdata_admin']),
	('audit.subscribe', ARRAY['opsdata_admin']),
	('audit.unsubscribe', ARRAY['opsdata_admin']),
	('audit.redrive', ARRAY['opsdata_admin']),
	('audit.set_context', ARRAY['opsdata_admin', 'opsdata_writer']),
	('audit.log_event', ARRAY['opsdata_admin', 'opsdata_writer']),
	('audit.log_events', ARRAY['opsdata_admin', 'opsdata_writer']),
	('audit.rebuild_statement', ARRAY['opsdata_auditor']),
	('audit.shapes', ARRAY['opsdata_auditor']),
	('audit.seal', ARRAY['opsdata_admin']),
	('audit.verify', ARRAY['opsdata_auditor']),
	('audit.digest', ARRAY['opsdata_auditor']),
	('audit.verify_digest', ARRAY['opsdata_auditor'])
) v(func, roles), unnest(roles) AS role;

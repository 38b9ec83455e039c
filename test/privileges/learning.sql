-- Privileges of the learning area's objects (see 02-core-privileges.sql).
INSERT INTO table_matrix
SELECT rel, role, privs FROM (VALUES
	('learning.feedback', ARRAY['opsdata_admin', 'opsdata_writer'], ARRAY['INSERT', 'SELECT']),
	('learning.feedback', ARRAY['opsdata_reader'], ARRAY['SELECT']),
	('learning.thresholds', ARRAY['opsdata_admin', 'opsdata_reader', 'opsdata_writer'], ARRAY['SELECT']),
	('learning.strategies', ARRAY['opsdata_admin', 'opsdata_reader', 'opsdata_writer'], ARRAY['SELECT']),
	('learning.feedback_changes', ARRAY['opsdata_admin', 'opsdata_reader'], ARRAY['SELECT']),
	('learning.histograms', ARRAY['opsdata_admin', 'opsdata_reader'], ARRAY['SELECT']),
	('learning.score_bins', ARRAY['opsdata_admin', 'opsdata_reader'], ARRAY['SELECT']),
	('learning.threshold_history', ARRAY['opsdata_admin', 'opsdata_reader'], ARRAY['SELECT']),
	('learning.candidates', ARRAY['opsdata_admin', 'opsdata_reader'], ARRAY['SELECT']),
	('learning.agreement', ARRAY['opsdata_admin', 'opsdata_reader'], ARRAY['SELECT']),
	('learning.import_thresholds', ARRAY['opsdata_admin'], ARRAY['INSERT']),
	('learning.import_candidates', ARRAY['opsdata_admin'], ARRAY['INSERT']),
	('learning.import_labels', ARRAY['opsdata_admin'], ARRAY['INSERT'])
) v(rel, roles, privs), unnest(roles) AS role;

INSERT INTO function_matrix
SELECT func, role FROM (VALUES
	('learning.record_feedback', ARRAY['opsdata_admin', 'opsdata_writer']),
	('learning.offer', ARRAY['opsdata_admin', 'opsdata_writer']),
	('learning.claim', ARRAY['opsdata_admin', 'opsdata_writer']),
	('learning.submit', ARRAY['opsdata_admin', 'opsdata_writer']),
	('learning.release', ARRAY['opsdata_admin', 'opsdata_writer']),
	('learning.threshold', ARRAY['opsdata_admin', 'opsdata_writer', 'opsdata_reader']),
	('learning.priority', ARRAY['opsdata_admin', 'opsdata_writer', 'opsdata_reader']),
	('learning.optimal_threshold', ARRAY['opsdata_admin', 'opsdata_writer', 'opsdata_reader']),
	('learning.set_objective', ARRAY['opsdata_admin']),
	('learning.set_strategy', ARRAY['opsdata_admin']),
	('learning.tune', ARRAY['opsdata_admin']),
	('learning.rebuild_histograms', ARRAY['opsdata_admin']),
	('learning.reclaim_expired', ARRAY['opsdata_admin'])
) v(func, roles), unnest(roles) AS role;

-- Privileges of the metrics area's objects (see 02-core-privileges.sql).
INSERT INTO table_matrix
SELECT rel, role, privs FROM (VALUES
	('metrics.series', ARRAY['opsdata_admin', 'opsdata_writer'], ARRAY['INSERT', 'SELECT']),
	('metrics.series', ARRAY['opsdata_reader'], ARRAY['SELECT']),
	('metrics.points', ARRAY['opsdata_admin', 'opsdata_writer'], ARRAY['INSERT', 'SELECT']),
	('metrics.points', ARRAY['opsdata_reader'], ARRAY['SELECT']),
	('metrics.ingest', ARRAY['opsdata_admin', 'opsdata_writer'], ARRAY['INSERT']),
	('metrics.rollups', ARRAY['opsdata_admin', 'opsdata_reader'], ARRAY['SELECT']),
	('metrics.rollup_queue', ARRAY['opsdata_admin', 'opsdata_reader'], ARRAY['SELECT']),
	('metrics.rollup_state', ARRAY['opsdata_admin', 'opsdata_reader'], ARRAY['SELECT']),
	('metrics.vital_signs', ARRAY['opsdata_admin', 'opsdata_reader'], ARRAY['SELECT']),
	('metrics.vitals_state', ARRAY['opsdata_admin', 'opsdata_reader'], ARRAY['SELECT']),
	('metrics.vital_queries', ARRAY['opsdata_admin'], ARRAY['SELECT']),
	('metrics.import_rollups', ARRAY['opsdata_admin'], ARRAY['INSERT'])
) v(rel, roles, privs), unnest(roles) AS role;

INSERT INTO function_matrix
SELECT func, role FROM (VALUES
	('metrics.sketch_in', ARRAY['opsdata_admin', 'opsdata_writer', 'opsdata_reader']),
	('metrics.sketch_out', ARRAY['opsdata_admin', 'opsdata_writer', 'opsdata_reader']),
	('metrics.sketch_recv', ARRAY['opsdata_admin', 'opsdata_writer', 'opsdata_reader']),
	('metrics.sketch_send', ARRAY['opsdata_admin', 'opsdata_writer', 'opsdata_reader']),
	('metrics.sketch_count', ARRAY['opsdata_admin', 'opsdata_writer', 'opsdata_reader']),
	('metrics.sketch_sum', ARRAY['opsdata_admin', 'opsdata_writer', 'opsdata_reader']),
	('metrics.sketch_min', ARRAY['opsdata_admin', 'opsdata_writer', 'opsdata_reader']),
	('metrics.sketch_max', ARRAY['opsdata_admin', 'opsdata_writer', 'opsdata_reader']),
	('metrics.sketch_merge', ARRAY['opsdata_admin', 'opsdata_writer', 'opsdata_reader']),
	('metrics.sketch_agg', ARRAY['opsdata_admin', 'opsdata_writer', 'opsdata_reader']),
	('metrics.sketch_union', ARRAY['opsdata_admin', 'opsdata_writer', 'opsdata_reader']),
	('metrics.quantile', ARRAY['opsdata_admin', 'opsdata_writer', 'opsdata_reader']),
	('metrics.quantiles', ARRAY['opsdata_admin', 'opsdata_writer', 'opsdata_reader']),
	('metrics.record', ARRAY['opsdata_admin', 'opsdata_writer']),
	('metrics.record_many', ARRAY['opsdata_admin', 'opsdata_writer']),
	('metrics.query', ARRAY['opsdata_admin', 'opsdata_reader']),
	('metrics.rollup', ARRAY['opsdata_admin']),
	('metrics.rebuild_rollups', ARRAY['opsdata_admin']),
	('metrics.expire_rollups', ARRAY['opsdata_admin']),
	('metrics.collect_vitals', ARRAY['opsdata_admin']),
	('metrics.slow_queries', ARRAY['opsdata_admin', 'opsdata_reader']),
	('metrics.locks_at', ARRAY['opsdata_admin', 'opsdata_reader'])
) v(func, roles), unnest(roles) AS role;

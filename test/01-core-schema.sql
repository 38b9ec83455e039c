-- The shape CREATE EXTENSION makes: schemas, tables and their columns,
-- partitioning, keys and the settings catalog.
BEGIN;
SELECT plan(53);

SELECT schemas_are(ARRAY['public', 'audit', 'learning', 'metrics', 'opsdata'],
	'pg_opsdata adds exactly the schemas audit, learning, metrics and opsdata');

SELECT tables_are('opsdata', ARRAY['settings', 'config', 'jobs', 'job_runs', 'partitions', 'partition_log']);
-- Partition maintenance adds daily partitions to audit.entries and
-- metrics.points as soon as the scheduler runs: they are not part of the
-- shape and are left out below.
CREATE TEMP VIEW made_tables AS
	SELECT n.nspname, c.relname
	  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	 WHERE c.relkind IN ('r', 'p') AND NOT (c.relispartition AND c.relname !~ '_default$');
SELECT set_eq($$SELECT relname::text FROM made_tables WHERE nspname = 'audit'$$,
	ARRAY['entries', 'entries_default', 'statements', 'seals', 'rules', 'held_entries', 'queues',
		  'subscriptions', 'queue_items', 'dead_letters'],
	'Schema audit should have the correct tables');
SELECT tables_are('learning', ARRAY['feedback', 'feedback_changes', 'histograms', 'thresholds',
	'threshold_history', 'strategies', 'candidates']);
SELECT set_eq($$SELECT relname::text FROM made_tables WHERE nspname = 'metrics'$$,
	ARRAY['series', 'points', 'points_default', 'rollups', 'rollup_queue', 'rollup_state',
		   'vital_signs', 'vital_queries', 'vitals_state'],
	'Schema metrics should have the correct tables');

SELECT is_partitioned('audit', 'entries', 'audit.entries is partitioned');
SELECT is_partitioned('metrics', 'points', 'metrics.points is partitioned');
SELECT is((SELECT partstrat FROM pg_partitioned_table WHERE partrelid = 'audit.entries'::regclass),
	'r', 'audit.entries is partitioned by range');
SELECT is((SELECT partstrat FROM pg_partitioned_table WHERE partrelid = 'metrics.points'::regclass),
	'r', 'metrics.points is partitioned by range');
SELECT is(pg_get_partkeydef('audit.entries'::regclass), 'RANGE (ts)', 'audit.entries is partitioned on ts');
SELECT is(pg_get_partkeydef('metrics.points'::regclass), 'RANGE (ts)', 'metrics.points is partitioned on ts');
SELECT is((SELECT c.oid::regclass::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		   WHERE i.inhparent = 'audit.entries'::regclass AND c.relpartbound IS NOT NULL
			 AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'),
	'audit.entries_default', 'audit.entries has the default partition audit.entries_default');
SELECT is((SELECT c.oid::regclass::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		   WHERE i.inhparent = 'metrics.points'::regclass AND c.relpartbound IS NOT NULL
			 AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'),
	'metrics.points_default', 'metrics.points has the default partition metrics.points_default');

SELECT columns_are('audit', 'entries', ARRAY['entry_id', 'ts', 'database', 'username',
	'current_user_name', 'application', 'client_addr', 'backend_pid', 'xid', 'class', 'command',
	'objects', 'privileges', 'rows', 'duration', 'outcome', 'sqlstate', 'statement_id', 'params',
	'constants', 'actor', 'request_id', 'attributes', 'details',
	'server_id']);
SELECT columns_are('audit', 'statements', ARRAY['statement_id', 'statement_text', 'first_seen', 'placeholders']);
SELECT columns_are('audit', 'held_entries', ARRAY['ts', 'database', 'username', 'current_user_name',
	'application', 'client_addr', 'backend_pid', 'xid', 'class', 'command', 'objects', 'privileges',
	'rows', 'duration', 'outcome', 'sqlstate', 'statement_text', 'params', 'actor', 'request_id',
	'attributes', 'details']);
SELECT columns_are('audit', 'seals', ARRAY['seal_id', 'kind', 'first_entry_id', 'last_entry_id',
	'ts_from', 'ts_to', 'entry_count', 'entry_ids', 'locators', 'entries_hash', 'entry_columns',
	'statement_columns', 'total_entries', 'detail', 'prev_hash', 'sealed_at', 'hash', 'server_id']);
SELECT columns_are('audit', 'rules', ARRAY['rule_id', 'action', 'role_name', 'database_name',
	'schema_name', 'relation_name', 'class', 'created_at', 'created_by', 'comment']);
SELECT columns_are('audit', 'queues', ARRAY['queue_id', 'name', 'kind', 'max_deliveries', 'retention',
	'head', 'head_candidate', 'head_fence', 'created_at', 'created_by', 'comment']);
SELECT columns_are('audit', 'subscriptions', ARRAY['queue_id', 'classes', 'commands', 'outcomes',
	'objects', 'roles', 'predicate', 'actors']);
SELECT columns_are('audit', 'queue_items', ARRAY['item_id', 'queue_id', 'deliveries', 'leased', 'enqueued_at',
	'visible_at', 'acked_at', 'entry_id', 'payload']);
SELECT columns_are('audit', 'dead_letters', ARRAY['item_id', 'queue_id', 'deliveries', 'enqueued_at',
	'died_at', 'entry_id', 'payload']);
SELECT columns_are('learning', 'feedback', ARRAY['feedback_id', 'key', 'item_id', 'score', 'label',
	'rating', 'given_by', 'source', 'created_at', 'metadata']);
SELECT columns_are('learning', 'thresholds', ARRAY['key', 'objective', 'target', 'min_support',
	'threshold', 'precision', 'recall', 'objective_value', 'support', 'positives', 'negatives',
	'tuned_at', 'configured_at']);
SELECT columns_are('learning', 'candidates', ARRAY['candidate_id', 'key', 'item_id', 'priority', 'score',
	'scores', 'payload', 'status', 'claimed_by', 'lease_until', 'labels', 'positives', 'reviewers',
	'label', 'created_at', 'closed_at']);
SELECT columns_are('metrics', 'series', ARRAY['series_id', 'name', 'tags', 'created_at']);
SELECT columns_are('metrics', 'points', ARRAY['series_id', 'ts', 'value']);
SELECT columns_are('metrics', 'rollups', ARRAY['series_id', 'bucket_width', 'bucket_start', 'count',
	'sum', 'min', 'max', 'sketch', 'updated_at']);
SELECT columns_are('opsdata', 'settings', ARRAY['key', 'type', 'default_value', 'valid_when', 'description',
	'superuser_only']);
SELECT columns_are('opsdata', 'config', ARRAY['key', 'value', 'updated_at', 'updated_by']);
SELECT columns_are('opsdata', 'jobs', ARRAY['job_id', 'name', 'command', 'schedule', 'paused',
	'max_runtime', 'max_retries', 'retry_delay', 'run_as', 'builtin', 'next_run', 'retry_at', 'failures',
	'created_at', 'comment']);
SELECT columns_are('opsdata', 'job_runs', ARRAY['run_id', 'job_id', 'kind', 'due_at', 'started_at',
	'finished_at', 'status', 'attempt', 'pid', 'sqlstate', 'message', 'job_name']);
SELECT columns_are('opsdata', 'partitions', ARRAY['parent', 'control_column', 'control_type',
	'part_interval', 'premake', 'retention', 'retention_setting', 'retention_mode', 'archive_schema',
	'default_partition', 'builtin', 'created_at', 'last_run_at', 'last_status', 'last_message']);
SELECT columns_are('opsdata', 'partition_log', ARRAY['logged_at', 'parent', 'action', 'partition', 'detail',
	'pass_started', 'status', 'created', 'moved', 'detached', 'dropped']);

SELECT col_type_is('audit', 'entries', 'ts', 'timestamp with time zone', 'audit.entries.ts is timestamp with time zone');
SELECT col_type_is('metrics', 'points', 'ts', 'timestamp with time zone', 'metrics.points.ts is timestamp with time zone');
SELECT col_type_is('audit', 'entries', 'client_addr', 'inet', 'audit.entries.client_addr is inet');
SELECT col_type_is('audit', 'entries', 'xid', 'xid8', 'audit.entries.xid is xid8');

-- Every unique key of a table meant to be distributed includes the
-- partition key (and no foreign key leaves the hot tables).
SELECT col_is_pk('audit', 'entries', ARRAY['entry_id', 'ts', 'server_id']::name[],
	'audit.entries has primary key (entry_id, ts, server_id): entries of other servers, replicated, keep their ids');
SELECT col_is_pk('metrics', 'rollups', ARRAY['series_id', 'bucket_width', 'bucket_start']::name[], 'metrics.rollups has primary key (series_id, bucket_width, bucket_start)');
SELECT col_is_unique('metrics', 'series', ARRAY['name', 'tags']::name[], 'metrics.series has a unique key on (name, tags)');
SELECT col_is_unique('learning', 'candidates', ARRAY['key', 'item_id']::name[], 'learning.candidates has a unique key on (key, item_id)');
SELECT is((SELECT count(*)::int FROM pg_constraint
			WHERE contype = 'f' AND conrelid IN ('audit.entries'::regclass, 'metrics.points'::regclass)),
	0, 'no foreign key from audit.entries or metrics.points');
SELECT has_index('audit', 'entries', 'entries_ts_idx', ARRAY['ts']::name[], 'audit.entries has a BRIN index on ts (by-user and by-object indexes are built on closed days)');
SELECT is((SELECT count(*)::int FROM pg_index WHERE indrelid = 'metrics.points'::regclass), 0,
	'metrics.points has no index: ingest writes the heap only, rollups never read it');

-- Logical replication may carry any table: every one has a replica identity
-- (a primary key, or FULL), partitions the same as their parent, so that a
-- publication never makes pg_opsdata's own updates and deletes fail.
SELECT is(
	(SELECT array_agg(c.oid::regclass::text ORDER BY 1)
	   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	  WHERE n.nspname IN ('audit', 'learning', 'metrics', 'opsdata') AND c.relkind IN ('r', 'p')
		AND NOT (c.relreplident = 'f'
				 OR c.relreplident = 'd' AND EXISTS (SELECT FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))),
	NULL, 'every table has a replica identity: a primary key, or FULL');
SELECT is(
	(SELECT array_agg(c.oid::regclass::text ORDER BY 1)
	   FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid JOIN pg_class p ON p.oid = h.inhparent
	  WHERE p.oid IN ('audit.entries'::regclass, 'metrics.points'::regclass) AND c.relreplident <> p.relreplident),
	NULL, 'every partition of audit.entries and metrics.points has the replica identity of its parent');
SELECT is((SELECT relreplident::text FROM pg_class WHERE oid = 'metrics.points'::regclass), 'f',
	'metrics.points, which has no key, has REPLICA IDENTITY FULL');

-- pg_dump keeps the data of every extension table: configuration dumps are
-- registered for all of them (leaf tables; partitions made later are not
-- extension members and are dumped anyway).
SELECT is(
	(SELECT array_agg(c.oid::regclass::text ORDER BY 1)
	   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	  WHERE n.nspname IN ('audit', 'learning', 'metrics', 'opsdata') AND c.relkind = 'r'
		AND c.oid::regclass <> 'opsdata.settings'::regclass
		AND NOT (c.relispartition AND c.relname !~ '_default$')
		AND c.oid <> ALL ((SELECT extconfig FROM pg_extension WHERE extname = 'pg_opsdata')::oid[])),
	NULL, 'every data table but opsdata.settings is registered with pg_extension_config_dump');
SELECT is(
	(SELECT array_agg(c.oid::regclass::text ORDER BY 1)
	   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	  WHERE n.nspname IN ('audit', 'learning', 'metrics', 'opsdata') AND c.relkind = 'S'
		AND c.oid <> ALL ((SELECT extconfig FROM pg_extension WHERE extname = 'pg_opsdata')::oid[])),
	NULL, 'every sequence is registered with pg_extension_config_dump');

-- The extension is not relocatable and owns its schemas.
SELECT is((SELECT extrelocatable FROM pg_extension WHERE extname = 'pg_opsdata'), false,
	'pg_opsdata is not relocatable');
SELECT is((SELECT count(*)::int FROM pg_depend d JOIN pg_namespace n ON d.classid = 'pg_namespace'::regclass AND d.objid = n.oid
			WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
			  AND n.nspname IN ('audit', 'learning', 'metrics', 'opsdata')),
	4, 'the four schemas are members of the extension');
SELECT has_function('opsdata', 'health', 'opsdata.health() exists');

SELECT * FROM finish();
ROLLBACK;

-- Only pg_opsdata writes its own tables.  For every table, partition,
-- view and foreign table of the extension, a member of pg_write_all_data
-- (which bypasses GRANTs) is refused each write (INSERT, UPDATE, DELETE,
-- TRUNCATE, COPY FROM) that the documented grants of test/privileges/*.sql
-- give no opsdata role, and is not refused those they give.  The list
-- comes from the catalog, so a new table is covered without editing this
-- file.  A partition answers to its parent's grants.  Sequences cannot be
-- kept from such a role (setval() needs only UPDATE), but no identifier
-- can repeat silently.
BEGIN;

CREATE TEMP TABLE table_matrix (rel text, role name, privs text[]);
CREATE TEMP TABLE function_matrix (func text, role name);
CREATE TEMP TABLE schema_matrix (nsp name, role name);
\ir privileges/core.sql
\ir privileges/worker.sql
\ir privileges/partition.sql
\ir privileges/audit.sql
\ir privileges/metrics.sql
\ir privileges/learning.sql

CREATE ROLE guard_bypass LOGIN IN ROLE pg_write_all_data, pg_read_all_data, pg_read_server_files;
CREATE ROLE guard_replica LOGIN IN ROLE pg_write_all_data;
GRANT SET ON PARAMETER session_replication_role TO guard_replica;

-- Every relation that belongs to the extension, and every partition of
-- one (those partition maintenance made included), with the root whose
-- grants apply.
CREATE TEMP VIEW guarded AS
	SELECT c.oid::regclass AS rel, c.relkind,
		   CASE WHEN c.relispartition THEN pg_partition_root(c.oid) ELSE c.oid END::regclass AS root
	  FROM pg_class c
	 WHERE c.relkind IN ('r', 'p', 'v', 'f')
	   AND (EXISTS (SELECT FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
				  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
					AND e.extname = 'pg_opsdata')
			OR (c.relispartition
				AND EXISTS (SELECT FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
							 WHERE d.classid = 'pg_class'::regclass AND d.objid = pg_partition_root(c.oid)
							   AND d.deptype = 'e' AND e.extname = 'pg_opsdata')));

-- A row in every leaf partition, so that row-level guards have a row to
-- refuse.  A partitioned table of the extension needs its fixture here.
CREATE TEMP TABLE fixtures (root regclass, cols text, vals text);
INSERT INTO fixtures VALUES
	('audit.entries', 'database, username, current_user_name, backend_pid, class, command, outcome',
	 $$'db', 'u', 'u', 1, 'misc', 'TEST', 'ok'$$),
	('metrics.points', 'series_id, value', '1, 1');
DO $$
DECLARE
	p record;
	f fixtures;
BEGIN
	FOR p IN
		SELECT g.rel, g.root, a.attname AS key,
			   coalesce(l.lower_time, '1990-01-01 00:00:00+00') AS at
		  FROM guarded g
		  JOIN pg_partitioned_table pt ON pt.partrelid = g.root
		  JOIN pg_attribute a ON a.attrelid = g.root AND a.attnum = pt.partattrs[0]
		  JOIN opsdata._partition_layout(g.root) l ON l.partition = g.rel
		 WHERE g.relkind = 'r'
	LOOP
		SELECT * INTO f FROM fixtures WHERE root = p.root;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'no fixture row for partitioned table %', p.root;
		END IF;
		EXECUTE format('INSERT INTO %s (%s, %I) VALUES (%s, %L)', p.root, f.cols, p.key, f.vals, p.at);
	END LOOP;
END
$$;

-- Run a statement as a role, undo it, and return 'ok' or its SQLSTATE.
CREATE FUNCTION pg_temp.attempt(role name, sql text, replica boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	BEGIN
		EXECUTE format('SET LOCAL ROLE %I', role);
		IF replica THEN
			SET LOCAL session_replication_role = replica;
		END IF;
		EXECUTE sql;
		RAISE EXCEPTION 'attempt succeeded';
	EXCEPTION WHEN OTHERS THEN
		IF SQLSTATE = 'P0001' AND SQLERRM = 'attempt succeeded' THEN
			RETURN 'ok';
		END IF;
		RETURN SQLSTATE;
	END;
END
$$;

-- Each relation and write, with the statement that tries it and whether
-- the documented grants allow it.  COPY reads a file that the superuser
-- wrote from the relation itself, in the data directory.
CREATE TEMP TABLE attempts AS
	SELECT g.rel, g.relkind, w.op, w.priv,
		   CASE w.op
			   WHEN 'INSERT' THEN format('INSERT INTO %s DEFAULT VALUES', g.rel)
			   WHEN 'UPDATE' THEN format('UPDATE %s SET %I = %I', g.rel, a.attname, a.attname)
			   WHEN 'DELETE' THEN format('DELETE FROM %s', g.rel)
			   WHEN 'TRUNCATE' THEN format('TRUNCATE %s', g.rel)
			   WHEN 'COPY' THEN format('COPY %s FROM %L', g.rel,
									   current_setting('data_directory') || '/pg_opsdata_guard_test.copy')
		   END AS sql,
		   EXISTS (SELECT FROM table_matrix m
					WHERE m.rel = g.root::text AND w.priv = ANY (m.privs)) AS granted
	  FROM guarded g
	  JOIN pg_attribute a ON a.attrelid = g.rel AND a.attnum = 1
	 CROSS JOIN (VALUES ('INSERT', 'INSERT'), ('UPDATE', 'UPDATE'), ('DELETE', 'DELETE'),
						('TRUNCATE', 'TRUNCATE'), ('COPY', 'INSERT')) w(op, priv);

CREATE FUNCTION pg_temp.attempt_write(a attempts)
RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	IF a.op = 'COPY' THEN
		EXECUTE format('COPY (SELECT * FROM %s LIMIT 1) TO %L', a.rel,
					   current_setting('data_directory') || '/pg_opsdata_guard_test.copy');
	END IF;
	RETURN pg_temp.attempt('guard_bypass', a.sql);
END
$$;

CREATE TEMP TABLE outcomes AS
	SELECT a.*, pg_temp.attempt_write(a) AS result FROM attempts a;

SELECT plan((SELECT count(*)::int FROM outcomes) + 8);

-- Tables and partitions are refused with insufficient_privilege, by the
-- guard or by the lack of TRUNCATE; views and foreign tables refuse any
-- write the grants do not allow in their own way.  audit.new_events also
-- takes the right to log application events (EXECUTE on
-- audit.log_event()), and audit.import_queue_items membership of
-- opsdata_admin, which pg_write_all_data does not give.
SELECT ok(CASE WHEN o.rel IN ('audit.new_events'::regclass, 'audit.import_queue_items'::regclass) AND o.op = 'INSERT' THEN o.result = '42501'
			   WHEN o.granted THEN o.result <> '42501'
			   WHEN o.relkind IN ('r', 'p') THEN o.result = '42501'
			   ELSE o.result <> 'ok' END,
		  format('pg_write_all_data: %s on %s is %s (%s)', o.op, o.rel,
				 CASE WHEN o.rel IN ('audit.new_events'::regclass, 'audit.import_queue_items'::regclass) AND o.op = 'INSERT' THEN 'refused'
					  WHEN o.granted THEN 'allowed as granted' ELSE 'refused' END, o.result))
  FROM outcomes o
 ORDER BY o.rel::text, o.op;

-- session_replication_role = replica does not turn the guard off.
SELECT is(pg_temp.attempt('guard_replica', $$INSERT INTO audit.rules (action) VALUES ('exclude')$$, true),
	'42501', 'the guard of a plain table fires with session_replication_role = replica');
SELECT is(pg_temp.attempt('guard_replica', 'DELETE FROM audit.entries', true),
	'42501', 'the guard of a partitioned table fires with session_replication_role = replica');

-- What users write by design keeps working for the grantees.
CREATE ROLE guard_writer LOGIN IN ROLE opsdata_writer;
SELECT is(pg_temp.attempt('guard_writer',
	$$INSERT INTO learning.feedback (key, score, label) VALUES ('k', 0.5, true)$$), 'ok',
	'opsdata_writer records feedback');
SELECT is(pg_temp.attempt('guard_writer', 'SELECT metrics.record(''guard.m'', 1)'), 'ok',
	'opsdata_writer records a metric (series, points and rollup queue written)');

-- Sequences: every identifier a sequence gives is unique on its own, so a
-- sequence set back by setval() makes inserts fail, never repeat an
-- identifier.  The exception: a partitioned table's unique keys include
-- its partition key, so audit.entries is unique on (entry_id, ts, server_id).
SELECT is_empty($$
	SELECT s.oid::regclass
	  FROM pg_class s
	  JOIN pg_depend e ON e.classid = 'pg_class'::regclass AND e.objid = s.oid AND e.deptype = 'e'
	  JOIN pg_extension x ON x.oid = e.refobjid AND x.extname = 'pg_opsdata'
	  LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid
						   AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
	 WHERE s.relkind = 'S' AND s.oid <> 'audit.entries_entry_id_seq'::regclass
	   AND NOT EXISTS (SELECT FROM pg_index i
						WHERE i.indrelid = d.refobjid AND i.indisunique AND i.indnkeyatts = 1
						  AND i.indkey[0] = d.refobjsubid)$$,
	'every sequence of the extension feeds a column that is unique on its own');

SELECT is(pg_temp.attempt('guard_bypass', $$SELECT setval('audit.rules_rule_id_seq', 1, false)$$), 'ok',
	'pg_write_all_data can set a sequence back (the residual risk)');
SELECT audit.add_rule('include', class => 'read', comment => 'guard test') AS rule_id \gset
SELECT setval('audit.rules_rule_id_seq', :rule_id, false) AS rule_seq \gset
SELECT throws_ok($$SELECT audit.add_rule('include', class => 'write')$$, '23505', NULL,
	'an audit rule id handed out again is refused by the primary key');

SELECT opsdata.add_job('guard removed job', 'SELECT 1', '1 hour', paused => true) AS removed_job \gset
CALL opsdata.run_job(:removed_job);
SELECT opsdata.remove_job(:removed_job) AS removed \gset
SELECT setval('opsdata.jobs_job_id_seq', :removed_job, false) AS job_seq \gset
SELECT throws_ok($$SELECT opsdata.add_job('guard new job', 'SELECT 1', '1 hour')$$, '23505', NULL,
	'a job id held by the runs of a removed job is not given to a new job');

SELECT * FROM finish();
ROLLBACK;

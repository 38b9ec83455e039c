-- Metrics on Citus: opsdata.distribute() spreads metrics.points and what
-- the rollups keep over the nodes of a Citus cluster, and
-- opsdata.undistribute() brings them back to the coordinator
-- (doc/scale-out.md).  Both need Citus; neither is used otherwise.
--
-- Layout: metrics.points, metrics.rollup_queue and metrics.rollups are
-- distributed by series_id and co-located, so that the trigger of a
-- shard of points queues the rollup contributions of its rows into the
-- co-located shard of the queue on the same worker; metrics.series and
-- metrics.rollup_state are reference tables.  The coordinator's rollup
-- job reads the whole queue through Citus; the workers' leave it alone
-- (src/metrics/rollup.c), as their partition maintenance leaves the
-- distributed tables to the coordinator's (src/partition/pass.c).

--
-- On a worker, before the coordinator distributes the tables: the
-- worker's own tables of metrics become the shells of the distributed
-- ones, so they must hold nothing and have no partition but the default
-- one (Citus makes the shells of the coordinator's partitions), and the
-- worker stops recording its vitals, which would mix with the
-- coordinator's in the shared series.
--
CREATE FUNCTION opsdata._distribute_worker()
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	part regclass;
BEGIN
	IF EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'citus')
	   AND (SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname OPERATOR(pg_catalog.=) 'pg_dist_partition'
			   AND c.relnamespace OPERATOR(pg_catalog.=) 'pg_catalog'::regnamespace) IS NOT NULL THEN
		IF EXISTS (SELECT FROM pg_catalog.pg_dist_partition p
					WHERE p.logicalrelid OPERATOR(pg_catalog.=) 'metrics.points'::regclass) THEN
			RETURN 'already distributed';
		END IF;
	END IF;
	PERFORM opsdata.pause_job(j.job_id) FROM opsdata.jobs j WHERE j.name OPERATOR(pg_catalog.=) 'metrics.vitals' AND NOT j.paused;
	FOR part IN
		SELECT i.inhrelid::regclass FROM pg_catalog.pg_inherits i
		 WHERE i.inhparent OPERATOR(pg_catalog.=) 'metrics.points'::regclass
		   AND i.inhrelid OPERATOR(pg_catalog.<>) 'metrics.points_default'::regclass
	LOOP
		EXECUTE pg_catalog.format('DROP TABLE %s', part);
	END LOOP;
	TRUNCATE metrics.points, metrics.rollup_queue, metrics.rollups, metrics.series, metrics.rollup_state;
	RETURN 'prepared';
END
$$;

COMMENT ON FUNCTION opsdata._distribute_worker() IS 'Internal: empties a Citus worker''s tables of metrics so that they can be the shells of the distributed ones';

CREATE FUNCTION opsdata._require_citus_coordinator(what text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	coordinator boolean;
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'citus') THEN
		RAISE EXCEPTION 'Citus is not installed in database "%"', pg_catalog.current_database()
			USING ERRCODE = 'feature_not_supported',
				  HINT = pg_catalog.format('%s needs Citus: preload it (shared_preload_libraries = ''citus,pg_opsdata''), run CREATE EXTENSION citus and add the worker nodes first.', what);
	END IF;
	IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER) THEN
		RAISE EXCEPTION 'permission denied for %', what
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'Only superusers may distribute or undistribute the tables of pg_opsdata.';
	END IF;
	EXECUTE 'SELECT pg_catalog.citus_is_coordinator()' INTO coordinator;
	IF NOT coordinator THEN
		RAISE EXCEPTION '% runs on the Citus coordinator', what
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Connect to the coordinator, or add this node as the coordinator with citus_set_coordinator_host().';
	END IF;
END
$$;

COMMENT ON FUNCTION opsdata._require_citus_coordinator(text) IS 'Internal: refuses unless Citus is installed, the caller is a superuser and this node is the Citus coordinator';

CREATE FUNCTION opsdata.distribute(shard_count integer DEFAULT NULL)
RETURNS TABLE (relation regclass, distribution text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	workers text;
	t record;
BEGIN
	PERFORM opsdata._require_citus_coordinator('opsdata.distribute()');
	IF shard_count IS NOT NULL AND shard_count OPERATOR(pg_catalog.<) 1 THEN
		RAISE EXCEPTION 'shard count must be positive, not %', shard_count
			USING ERRCODE = 'invalid_parameter_value';
	END IF;

	-- Each worker's tables of metrics become shells: empty them first.
	EXECUTE 'SELECT pg_catalog.string_agg(pg_catalog.format(''%s:%s: %s'', w.nodename, w.nodeport, w.result), ''; '')'
			' FROM pg_catalog.run_command_on_workers(''SELECT opsdata._distribute_worker()'') w'
			' WHERE NOT w.success'
	   INTO workers;
	IF workers IS NOT NULL THEN
		RAISE EXCEPTION 'could not prepare the Citus workers for the tables of metrics'
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = workers,
				  HINT = 'Every worker needs pg_opsdata, preloaded, at the version of the coordinator.';
	END IF;

	-- The trigger of metrics.points queues rollup work on the shards, and
	-- the guards keep their tables written by pg_opsdata alone.
	PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);
	FOR t IN
		SELECT * FROM (VALUES (1, 'metrics.series'::regclass, 'reference'),
							  (2, 'metrics.rollup_state'::regclass, 'reference'),
							  (3, 'metrics.points'::regclass, 'series_id'),
							  (4, 'metrics.rollup_queue'::regclass, 'series_id'),
							  (5, 'metrics.rollups'::regclass, 'series_id')) v(n, rel, how)
		 ORDER BY n
	LOOP
		relation := t.rel;
		distribution := CASE WHEN t.how OPERATOR(pg_catalog.=) 'reference' THEN 'reference table'
							 ELSE 'distributed by series_id' END;
		IF EXISTS (SELECT FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid OPERATOR(pg_catalog.=) t.rel) THEN
			distribution := distribution OPERATOR(pg_catalog.||) ' (already)';
			RETURN NEXT;
			CONTINUE;
		END IF;
		IF t.how OPERATOR(pg_catalog.=) 'reference' THEN
			PERFORM pg_catalog.create_reference_table(t.rel);
		ELSIF t.rel OPERATOR(pg_catalog.=) 'metrics.points'::regclass AND shard_count IS NOT NULL THEN
			PERFORM pg_catalog.create_distributed_table(t.rel, 'series_id', shard_count => shard_count);
		ELSIF t.rel OPERATOR(pg_catalog.=) 'metrics.points'::regclass THEN
			PERFORM pg_catalog.create_distributed_table(t.rel, 'series_id');
		ELSE
			PERFORM pg_catalog.create_distributed_table(t.rel, 'series_id', colocate_with => 'metrics.points');
		END IF;
		-- The rows were copied to the shards; the shell keeps none.
		PERFORM pg_catalog.truncate_local_data_after_distributing_table(t.rel);
		RETURN NEXT;
	END LOOP;
END
$$;

COMMENT ON FUNCTION opsdata.distribute(integer) IS 'On a Citus coordinator: distribute metrics.points, metrics.rollup_queue and metrics.rollups by series_id (co-located) and make metrics.series and metrics.rollup_state reference tables; superusers only';

-- What Citus knows of one of these tables and its partitions (its shards,
-- the shells of its partitions on the workers, its metadata) removed as
-- its drop would, leaving the table itself, empty, on the coordinator.
CREATE FUNCTION opsdata._citus_forget(t regclass)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	part record;
BEGIN
	FOR part IN
		SELECT p.logicalrelid AS rel, n.nspname, c.relname, c.relispartition
		  FROM pg_catalog.pg_dist_partition p
		  JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) p.logicalrelid
		  JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
		 WHERE p.logicalrelid OPERATOR(pg_catalog.=) t
			OR p.logicalrelid OPERATOR(pg_catalog.=) ANY (SELECT i.inhrelid FROM pg_catalog.pg_inherits i
								   WHERE i.inhparent OPERATOR(pg_catalog.=) t)
		 ORDER BY c.relispartition DESC
	LOOP
		PERFORM pg_catalog.master_remove_distributed_table_metadata_from_workers(part.rel, part.nspname, part.relname);
		PERFORM pg_catalog.citus_drop_all_shards(part.rel, part.nspname, part.relname,
												 drop_shards_metadata_only := part.relispartition);
		PERFORM pg_catalog.master_remove_partition_metadata(part.rel, part.nspname, part.relname);
	END LOOP;
END
$$;

COMMENT ON FUNCTION opsdata._citus_forget(regclass) IS 'Internal: removes the shards and Citus metadata of a table of pg_opsdata and its partitions, keeping the table';

-- Before DROP EXTENSION pg_opsdata (src/metrics/citus.c): the shards of
-- the distributed tables, which live in the extension's schema on every
-- node, would otherwise keep the schema from being dropped.
CREATE FUNCTION opsdata._citus_forget_all()
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t regclass;
BEGIN
	FOREACH t IN ARRAY ARRAY['metrics.rollups', 'metrics.rollup_queue', 'metrics.points',
							 'metrics.rollup_state', 'metrics.series']::regclass[]
	LOOP
		PERFORM opsdata._citus_forget(t);
	END LOOP;
END
$$;

COMMENT ON FUNCTION opsdata._citus_forget_all() IS 'Internal: removes the shards and Citus metadata of every table opsdata.distribute() distributed, before the extension is dropped';

CREATE FUNCTION opsdata.undistribute()
RETURNS TABLE (relation regclass, rows bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t regclass;
	n bigint;
BEGIN
	PERFORM opsdata._require_citus_coordinator('opsdata.undistribute()');
	-- Citus's undistribute_table() remakes a table, which it refuses for
	-- an extension's: keep the table, copy its rows out, make Citus forget
	-- it and put the rows back.
	FOREACH t IN ARRAY ARRAY['metrics.rollups', 'metrics.rollup_queue', 'metrics.points',
							 'metrics.rollup_state', 'metrics.series']::regclass[]
	LOOP
		CONTINUE WHEN NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition p
								   WHERE p.logicalrelid OPERATOR(pg_catalog.=) t);
		EXECUTE pg_catalog.format('CREATE TEMP TABLE opsdata_undistribute AS SELECT * FROM %s', t);
		PERFORM opsdata._citus_forget(t);
		-- Put back as they were: no trigger queues the points again.
		PERFORM pg_catalog.set_config('session_replication_role', 'replica', true);
		EXECUTE pg_catalog.format('INSERT INTO %s SELECT * FROM pg_temp.opsdata_undistribute', t);
		GET DIAGNOSTICS n = ROW_COUNT;
		PERFORM pg_catalog.set_config('session_replication_role', 'origin', true);
		DROP TABLE pg_temp.opsdata_undistribute;
		relation := t;
		rows := n;
		RETURN NEXT;
	END LOOP;
END
$$;

COMMENT ON FUNCTION opsdata.undistribute() IS 'On a Citus coordinator: bring the tables opsdata.distribute() distributed back to the coordinator as local tables, with their rows; superusers only';

REVOKE ALL ON FUNCTION opsdata.distribute(integer), opsdata.undistribute(),
	opsdata._distribute_worker(), opsdata._require_citus_coordinator(text),
	opsdata._citus_forget(regclass), opsdata._citus_forget_all() FROM PUBLIC;

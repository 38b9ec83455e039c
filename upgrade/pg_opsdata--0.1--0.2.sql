-- pg_opsdata update from 0.1 to 0.2.
--
-- Every schema change of 0.2 has its step here, in the order it was made:
-- an installation updated with ALTER EXTENSION pg_opsdata UPDATE has the
-- same objects as a fresh CREATE EXTENSION of 0.2 (test/tap/003_core_upgrade.pl
-- compares them).  The REVOKE that closes the script stays last: it takes
-- PUBLIC's EXECUTE from the routines the steps create, as
-- src/core/finish.sql does in the install script.
\echo Use "ALTER EXTENSION pg_opsdata UPDATE TO '0.2'" to load this file. \quit

-- Vital signs, health as JSON, and the import views (files new in 0.2).

-- src/core/health.sql
-- Core: opsdata.health() as one JSON document, for an application's
-- /health endpoint.  It calls opsdata.health() as the caller, so that the
-- caller sees the rows opsdata.health() shows it, and adds how long the
-- check took: a check slower than the setting core.health_latency_warning
-- is itself a warning.

INSERT INTO opsdata.settings (key, type, default_value, valid_when, description) VALUES
	('core.health_latency_warning', 'interval', '100 milliseconds', 'value > interval ''0''',
	 'opsdata.health_json() reports a warning when the health check takes longer than this');

CREATE FUNCTION opsdata.health_json()
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	started timestamptz := pg_catalog.clock_timestamp();
	rows jsonb;
	took double precision;
	limit_ms double precision;
	worst text;
BEGIN
	SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
				'component', h.component, 'status', h.status, 'detail', h.detail)
				ORDER BY h.component), '[]')
	  INTO rows
	  FROM opsdata.health() h;
	took := pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() - started) * 1000;
	limit_ms := pg_catalog.date_part('epoch', opsdata.setting('core.health_latency_warning')::interval) * 1000;
	IF took > limit_ms THEN
		rows := rows || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
					'component', 'health latency', 'status', 'warning',
					'detail', pg_catalog.format('The health check took %s ms, more than the %s ms of the setting "core.health_latency_warning".',
												pg_catalog.round(took::numeric, 1), limit_ms)));
	END IF;
	SELECT CASE pg_catalog.max(CASE e->>'status' WHEN 'error' THEN 3 WHEN 'warning' THEN 2 WHEN 'ok' THEN 1 ELSE 0 END)
				WHEN 3 THEN 'error' WHEN 2 THEN 'warning' ELSE 'ok' END
	  INTO worst
	  FROM pg_catalog.jsonb_array_elements(rows) e;
	RETURN pg_catalog.jsonb_build_object(
		'status', worst,
		'checked_at', started,
		'duration_ms', pg_catalog.round(took::numeric, 3),
		'database', pg_catalog.current_database(),
		'components', rows);
END
$$;

COMMENT ON FUNCTION opsdata.health_json() IS 'opsdata.health() as one JSON document for a /health endpoint: the worst status, when and how long the check took (a warning past core.health_latency_warning), and every component';

GRANT EXECUTE ON FUNCTION opsdata.health_json() TO opsdata_admin, opsdata_writer, opsdata_reader, opsdata_auditor;

-- src/metrics/import.sql
-- Metrics, import: aggregations computed elsewhere go into metrics.rollups
-- through the view metrics.import_rollups (points need none: COPY
-- metrics.ingest loads them).  The view's INSTEAD OF INSERT trigger checks
-- each row, makes the series it names, stores the bucket without a sketch
-- (count, sum, min and max only) and adds it to the buckets of the coarser
-- rollup widths; "COPY metrics.import_rollups FROM STDIN" names the line
-- of a bad row and loads the whole file or nothing.

CREATE VIEW metrics.import_rollups AS
	SELECT NULL::text AS name, NULL::jsonb AS tags, NULL::timestamptz AS bucket_start,
		   NULL::interval AS bucket_width, NULL::bigint AS count, NULL::double precision AS sum,
		   NULL::double precision AS min, NULL::double precision AS max
	 WHERE false;

COMMENT ON VIEW metrics.import_rollups IS 'Write-only: COPY or INSERT aggregates (count, sum, min, max per series and bucket) computed elsewhere into metrics.rollups';
COMMENT ON COLUMN metrics.import_rollups.name IS 'Metric name';
COMMENT ON COLUMN metrics.import_rollups.tags IS 'Tags, a JSON object of strings; {} when NULL';
COMMENT ON COLUMN metrics.import_rollups.bucket_start IS 'Start of the bucket, aligned on its width in UTC';
COMMENT ON COLUMN metrics.import_rollups.bucket_width IS 'Width of the bucket, one of the setting metrics.rollup_widths';
COMMENT ON COLUMN metrics.import_rollups.count IS 'Points in the bucket';
COMMENT ON COLUMN metrics.import_rollups.sum IS 'Sum of their values';
COMMENT ON COLUMN metrics.import_rollups.min IS 'Smallest value';
COMMENT ON COLUMN metrics.import_rollups.max IS 'Largest value';

CREATE FUNCTION metrics._import_rollup()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	widths interval[] := opsdata.setting('metrics.rollup_widths')::interval[];
	origin timestamptz := timestamptz '2000-01-03 00:00:00+00';
	v_tags jsonb := coalesce(NEW.tags, '{}');
	sid bigint;
	w interval;
	n bigint;
BEGIN
	IF NEW.name IS NULL OR NEW.bucket_start IS NULL OR NEW.bucket_width IS NULL OR NEW.count IS NULL
	   OR NEW.sum IS NULL THEN
		RAISE EXCEPTION 'name, bucket_start, bucket_width, count and sum must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF NEW.name = '' OR pg_catalog.octet_length(NEW.name) > 255 THEN
		RAISE EXCEPTION 'invalid metric name "%"', NEW.name
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'A metric name is 1 to 255 bytes long.';
	END IF;
	IF pg_catalog.jsonb_typeof(v_tags) <> 'object'
	   OR EXISTS (SELECT FROM pg_catalog.jsonb_each(v_tags) e WHERE pg_catalog.jsonb_typeof(e.value) <> 'string') THEN
		RAISE EXCEPTION 'tags must be a JSON object whose values are strings, not %', v_tags
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF NOT NEW.bucket_width = ANY (widths) THEN
		RAISE EXCEPTION 'bucket width "%" is not a rollup width', NEW.bucket_width
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = pg_catalog.format('The rollup widths are %s (setting "metrics.rollup_widths").', widths);
	END IF;
	IF pg_catalog.date_bin(NEW.bucket_width, NEW.bucket_start, origin) <> NEW.bucket_start THEN
		RAISE EXCEPTION 'bucket start % is not aligned on its width "%"', NEW.bucket_start, NEW.bucket_width
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Buckets are aligned in UTC on 2000-01-03 00:00 (a Monday).';
	END IF;
	IF NEW.count < 1 OR NEW.min > NEW.max THEN
		RAISE EXCEPTION 'invalid aggregate: count %, min %, max %', NEW.count, NEW.min, NEW.max
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'A bucket holds at least one point and its min is not above its max.';
	END IF;

	SELECT s.series_id INTO sid FROM metrics.series s WHERE s.name = NEW.name AND s.tags = v_tags;
	IF NOT FOUND THEN
		INSERT INTO metrics.series AS s (name, tags) VALUES (NEW.name, v_tags)
		ON CONFLICT (name, tags) DO UPDATE SET name = excluded.name
		RETURNING s.series_id INTO sid;
	END IF;

	FOREACH w IN ARRAY widths LOOP
		CONTINUE WHEN w < NEW.bucket_width;
		-- Buckets already rolled up from points (with a sketch) are never
		-- mixed with imported ones: the rollup would count them wrongly.
		INSERT INTO metrics.rollups AS r (series_id, bucket_width, bucket_start, count, sum, min, max, sketch)
		VALUES (sid, w, pg_catalog.date_bin(w, NEW.bucket_start, origin), NEW.count, NEW.sum, NEW.min, NEW.max, NULL)
		ON CONFLICT (series_id, bucket_width, bucket_start) DO UPDATE
		   SET count = r.count + excluded.count, sum = r.sum + excluded.sum,
			   min = LEAST(r.min, excluded.min), max = GREATEST(r.max, excluded.max), updated_at = pg_catalog.now()
		 WHERE r.sketch IS NULL AND w > NEW.bucket_width;
		GET DIAGNOSTICS n = ROW_COUNT;
		IF n = 0 THEN
			RAISE EXCEPTION 'metric "%" % already has a rollup of width "%" at %', NEW.name, v_tags, w,
				pg_catalog.date_bin(w, NEW.bucket_start, origin)
				USING ERRCODE = 'unique_violation',
					  DETAIL = 'An imported bucket is added to the coarser buckets, but never to a bucket of its own width nor to one rolled up from points.';
		END IF;
	END LOOP;
	RETURN NEW;
END
$$;

COMMENT ON FUNCTION metrics._import_rollup() IS 'Internal: stores a row written to metrics.import_rollups';

CREATE TRIGGER import_rollup INSTEAD OF INSERT ON metrics.import_rollups
	FOR EACH ROW EXECUTE FUNCTION metrics._import_rollup();

GRANT INSERT ON metrics.import_rollups TO opsdata_admin;

-- src/metrics/vitals.sql
-- Metrics, vital signs: the built-in job metrics.vitals records the
-- database's own vital signs as series of metrics (names "pg.*"), keeps
-- the latest sample in metrics.vital_signs, and answers questions about
-- them from the rollups (metrics.slow_queries(), metrics.locks_at()).
--
-- Cost.  A run reads PostgreSQL's statistics views once each and never
-- walks every relation of the database with a function that touches files:
-- the largest tables and indexes are chosen from pg_class.relpages and the
-- tuple counts of the statistics system, and only those candidates are
-- measured.  Counters (checkpoints, WAL bytes, pg_stat_statements) are
-- recorded as their change since the previous run, which metrics.vitals_state
-- keeps; a run never creates a temporary table.
--
-- Cardinality.  Tags that take open-ended values (tables, indexes, query
-- ids, applications, standbys, slots, lock holders) could make one metric
-- name exceed metrics.series_limit, and then every recording of it would
-- fail.  A run therefore creates new series of a name only while the name
-- has fewer than vitals.series_limit series (and fewer than
-- metrics.series_limit); values of further new series are dropped, counted
-- in metrics.vitals_state, and reported by opsdata.health().

CREATE TABLE metrics.vital_signs (
	name		text NOT NULL,
	tags		jsonb NOT NULL,
	value		double precision NOT NULL,
	sampled_at	timestamptz NOT NULL,
	PRIMARY KEY (name, tags)
);

COMMENT ON TABLE metrics.vital_signs IS 'The latest sample of the vital signs, replaced by each run of the job metrics.vitals; the history is in the series of metrics';
COMMENT ON COLUMN metrics.vital_signs.name IS 'Metric name, e.g. pg.connections';
COMMENT ON COLUMN metrics.vital_signs.tags IS 'Tags of the series, e.g. {"state": "active"}';
COMMENT ON COLUMN metrics.vital_signs.value IS 'Value of the latest sample (for counters: their change since the previous sample)';
COMMENT ON COLUMN metrics.vital_signs.sampled_at IS 'When the sample was taken';

CREATE TABLE metrics.vital_queries (
	queryid		bigint PRIMARY KEY,
	query		text NOT NULL,
	first_seen	timestamptz NOT NULL DEFAULT pg_catalog.now()
);

COMMENT ON TABLE metrics.vital_queries IS 'Normalized text of the queries the vital signs recorded (pg_stat_statements); readable by opsdata_admin only';
COMMENT ON COLUMN metrics.vital_queries.queryid IS 'Query identifier of pg_stat_statements, the tag queryid of the pg.statements.* series';
COMMENT ON COLUMN metrics.vital_queries.query IS 'Normalized query text, as pg_stat_statements shows it';
COMMENT ON COLUMN metrics.vital_queries.first_seen IS 'When the vital signs first recorded the query';

CREATE TABLE metrics.vitals_state (
	singleton			boolean PRIMARY KEY DEFAULT true CHECK (singleton),
	runs				bigint NOT NULL DEFAULT 0,
	last_run_at			timestamptz,
	last_values			integer NOT NULL DEFAULT 0,
	checkpoints_timed	bigint,
	checkpoints_req		bigint,
	wal_bytes			numeric,
	statements_reset	timestamptz,
	statements_at		timestamptz,
	statement_ids		bigint[],
	statement_calls		bigint[],
	statement_time		double precision[],
	statement_rows		bigint[],
	statements_note		text,
	dropped				bigint NOT NULL DEFAULT 0,
	last_dropped_at		timestamptz,
	last_dropped_name	text
);

COMMENT ON TABLE metrics.vitals_state IS 'What the job metrics.vitals has done and the counters it compares the next sample with: one row';
COMMENT ON COLUMN metrics.vitals_state.singleton IS 'Always true: the table has one row';
COMMENT ON COLUMN metrics.vitals_state.runs IS 'Runs that committed';
COMMENT ON COLUMN metrics.vitals_state.last_run_at IS 'When the last run sampled';
COMMENT ON COLUMN metrics.vitals_state.last_values IS 'Values the last run recorded';
COMMENT ON COLUMN metrics.vitals_state.checkpoints_timed IS 'pg_stat_bgwriter.checkpoints_timed at the last run';
COMMENT ON COLUMN metrics.vitals_state.checkpoints_req IS 'pg_stat_bgwriter.checkpoints_req at the last run';
COMMENT ON COLUMN metrics.vitals_state.wal_bytes IS 'pg_stat_wal.wal_bytes at the last run';
COMMENT ON COLUMN metrics.vitals_state.statements_reset IS 'pg_stat_statements_info.stats_reset at the last run';
COMMENT ON COLUMN metrics.vitals_state.statements_at IS 'When the counters of pg_stat_statements below were read';
COMMENT ON COLUMN metrics.vitals_state.statement_ids IS 'Query ids of this database in pg_stat_statements at the last run';
COMMENT ON COLUMN metrics.vitals_state.statement_calls IS 'Their calls, in the same order';
COMMENT ON COLUMN metrics.vitals_state.statement_time IS 'Their total execution time in milliseconds, in the same order';
COMMENT ON COLUMN metrics.vitals_state.statement_rows IS 'Their rows, in the same order';
COMMENT ON COLUMN metrics.vitals_state.statements_note IS 'Why the last run recorded no query statistics, if it did not';
COMMENT ON COLUMN metrics.vitals_state.dropped IS 'Values not recorded because their series would have passed vitals.series_limit';
COMMENT ON COLUMN metrics.vitals_state.last_dropped_at IS 'When values were last dropped';
COMMENT ON COLUMN metrics.vitals_state.last_dropped_name IS 'Metric whose values were last dropped';

-- The latest sample and the counters are derived: a restored database
-- starts them afresh.  The query texts are kept.
SELECT pg_catalog.pg_extension_config_dump('metrics.vital_signs', 'WHERE false');
SELECT pg_catalog.pg_extension_config_dump('metrics.vital_queries', '');
SELECT pg_catalog.pg_extension_config_dump('metrics.vitals_state', 'WHERE false');

GRANT SELECT ON metrics.vital_signs, metrics.vitals_state TO opsdata_reader;
GRANT SELECT ON metrics.vital_queries TO opsdata_admin;

INSERT INTO opsdata.settings (key, type, default_value, valid_when, description) VALUES
	('vitals.interval', 'interval', '1 minute',
	 'value >= interval ''1 second'' AND date_part(''month'', value) = 0 AND date_part(''year'', value) = 0',
	 'How often the job metrics.vitals samples the vital signs (its schedule follows this setting)'),
	('vitals.top_n', 'integer', '20', 'value BETWEEN 0 AND 1000',
	 'How many of the largest tables and indexes, and of the queries that took the most time, each sample records'),
	('vitals.series_limit', 'integer', '500', 'value >= 1',
	 'Most series the vital signs create per metric name; values of further new series are dropped and counted');

--
-- Collection.
--

-- The values of one sample, as (name, tags, value) rows; counters are
-- compared with metrics.vitals_state, which the caller updates.  Runs as
-- the extension owner, inside metrics.collect_vitals().
CREATE FUNCTION metrics._vitals_sample(top_n integer, prev metrics.vitals_state,
	OUT name text, OUT tags jsonb, OUT value double precision)
RETURNS SETOF record
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	WITH backends AS (
		SELECT a.pid, a.state, a.application_name, a.usename, a.xact_start, a.backend_xmin, a.query_id
		  FROM pg_catalog.pg_stat_activity a
		 WHERE a.datid = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())
		   AND a.backend_type = 'client backend'
	), waiting AS (
		SELECT l.pid, l.locktype, l.mode, l.relation, l.waitstart
		  FROM pg_catalog.pg_locks l JOIN backends b USING (pid)
		 WHERE NOT l.granted
	), blockers AS (
		SELECT pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
				   'relation', w.relation::pg_catalog.regclass::text, 'locktype', w.locktype, 'mode', w.mode,
				   'holder_user', h.usename::text, 'holder_application', h.application_name,
				   'holder_state', h.state, 'holder_queryid', h.query_id::text)) AS tags,
			   pg_catalog.count(DISTINCT w.pid) AS waiters,
			   pg_catalog.max(pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() - w.waitstart)) AS wait
		  FROM waiting w
		 CROSS JOIN LATERAL pg_catalog.unnest(pg_catalog.pg_blocking_pids(w.pid)) AS holder(pid)
		  LEFT JOIN pg_catalog.pg_stat_activity h ON h.pid = holder.pid
		 GROUP BY 1
	), candidates AS (
		-- Candidates for the largest tables: by pages at the last VACUUM or
		-- ANALYZE, and by the tuples the statistics system counts now.
		SELECT t.oid FROM (SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relkind IN ('r', 'm')
							ORDER BY c.relpages DESC LIMIT 3 * top_n) t
		UNION
		SELECT t.oid FROM (SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relkind IN ('r', 'm')
							ORDER BY pg_catalog.pg_stat_get_live_tuples(c.oid) + pg_catalog.pg_stat_get_dead_tuples(c.oid) DESC
							LIMIT 3 * top_n) t
	), tables AS (
		SELECT c.oid, pg_catalog.pg_table_size(c.oid) AS size FROM candidates c
	), largest AS (
		SELECT t.oid, t.oid::pg_catalog.regclass::text AS tbl, t.size FROM tables t
		 WHERE t.size IS NOT NULL
		 ORDER BY t.size DESC, t.oid LIMIT top_n
	), indexes AS (
		SELECT i.oid, i.indrelid, pg_catalog.pg_relation_size(i.oid) AS size
		  FROM (SELECT c.oid, x.indrelid
				  FROM (SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relkind = 'i'
						 ORDER BY c.relpages DESC LIMIT 3 * top_n) c
				  JOIN pg_catalog.pg_index x ON x.indexrelid = c.oid) i
		 ORDER BY 3 DESC, 1 LIMIT top_n
	), apps AS (
		SELECT b.application_name AS app, pg_catalog.count(*) AS n,
			   pg_catalog.row_number() OVER (ORDER BY pg_catalog.count(*) DESC, b.application_name) AS rank
		  FROM backends b GROUP BY 1
	), counters AS (
		SELECT g.checkpoints_timed, g.checkpoints_req, w.wal_bytes
		  FROM pg_catalog.pg_stat_bgwriter g, pg_catalog.pg_stat_wal w
	), lsn AS (
		SELECT CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL ELSE pg_catalog.pg_current_wal_lsn() END AS now_lsn
	)
	-- Connections of this database by state (the usual states always), and
	-- by application (the top_n busiest, the rest as one).
	SELECT 'pg.connections', pg_catalog.jsonb_build_object('state', s.state),
		   (SELECT pg_catalog.count(*) FROM backends b WHERE coalesce(b.state, 'unknown') = s.state)::double precision
	  FROM (SELECT pg_catalog.unnest(ARRAY['active', 'idle', 'idle in transaction', 'idle in transaction (aborted)']) AS state
			UNION SELECT coalesce(b.state, 'unknown') FROM backends b) s
	UNION ALL
	SELECT 'pg.connections.by_application',
		   pg_catalog.jsonb_build_object('application', CASE WHEN a.rank <= greatest(top_n, 1) THEN a.app ELSE '(other)' END),
		   pg_catalog.sum(a.n)::double precision
	  FROM apps a GROUP BY 2
	-- Locks: requests waiting, the longest wait, and who held what they wait for.
	UNION ALL
	SELECT 'pg.locks.waiting', '{}', pg_catalog.count(*)::double precision FROM waiting
	UNION ALL
	SELECT 'pg.locks.oldest_wait_seconds', '{}',
		   coalesce(pg_catalog.max(pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() - w.waitstart)), 0)
	  FROM waiting w
	UNION ALL
	SELECT 'pg.locks.blocking', b.tags, b.waiters::double precision FROM blockers b
	UNION ALL
	SELECT 'pg.locks.blocking_wait_seconds', b.tags, coalesce(b.wait, 0) FROM blockers b
	-- The oldest transaction and the oldest snapshot (xmin) holding back vacuum.
	UNION ALL
	SELECT 'pg.xact.oldest_seconds', '{}',
		   coalesce(pg_catalog.max(pg_catalog.date_part('epoch', pg_catalog.now() - b.xact_start)), 0)
	  FROM backends b
	UNION ALL
	SELECT 'pg.xmin.oldest_age', '{}', coalesce(pg_catalog.max(x.age), 0)::double precision
	  FROM (SELECT pg_catalog.age(b.backend_xmin) AS age FROM backends b
			UNION ALL
			SELECT pg_catalog.age(a.backend_xmin) FROM pg_catalog.pg_stat_activity a WHERE a.backend_type = 'walsender'
			UNION ALL
			SELECT pg_catalog.age(p.transaction) FROM pg_catalog.pg_prepared_xacts p
			 WHERE p.database = pg_catalog.current_database()
			UNION ALL
			SELECT GREATEST(pg_catalog.age(r.xmin), pg_catalog.age(r.catalog_xmin))
			  FROM pg_catalog.pg_replication_slots r
			 WHERE r.database IS NULL OR r.database = pg_catalog.current_database()) x
	-- Replication: lag per standby, state of each slot.
	UNION ALL
	SELECT 'pg.replication.lag_bytes', pg_catalog.jsonb_build_object('standby', r.application_name),
		   coalesce(pg_catalog.pg_wal_lsn_diff(l.now_lsn, r.replay_lsn), 0)::double precision
	  FROM pg_catalog.pg_stat_replication r, lsn l
	UNION ALL
	SELECT 'pg.replication.lag_seconds', pg_catalog.jsonb_build_object('standby', r.application_name),
		   coalesce(pg_catalog.date_part('epoch', r.replay_lag), 0)
	  FROM pg_catalog.pg_stat_replication r
	UNION ALL
	SELECT 'pg.replication.slot_active', pg_catalog.jsonb_build_object('slot', s.slot_name::text),
		   CASE WHEN s.active THEN 1 ELSE 0 END
	  FROM pg_catalog.pg_replication_slots s
	UNION ALL
	SELECT 'pg.replication.slot_retained_bytes', pg_catalog.jsonb_build_object('slot', s.slot_name::text),
		   coalesce(pg_catalog.pg_wal_lsn_diff(l.now_lsn, s.restart_lsn), 0)::double precision
	  FROM pg_catalog.pg_replication_slots s, lsn l
	UNION ALL
	SELECT 'pg.replication.slot_lost', pg_catalog.jsonb_build_object('slot', s.slot_name::text),
		   CASE WHEN s.wal_status = 'lost' THEN 1 ELSE 0 END
	  FROM pg_catalog.pg_replication_slots s
	-- Sizes, dead tuples and the last autovacuum.
	UNION ALL
	SELECT 'pg.database.size_bytes', '{}', pg_catalog.pg_database_size(pg_catalog.current_database())::double precision
	UNION ALL
	SELECT 'pg.table.size_bytes', pg_catalog.jsonb_build_object('table', t.tbl), t.size::double precision FROM largest t
	UNION ALL
	SELECT 'pg.table.dead_tuples', pg_catalog.jsonb_build_object('table', t.tbl),
		   pg_catalog.pg_stat_get_dead_tuples(t.oid)::double precision FROM largest t
	UNION ALL
	SELECT 'pg.table.autovacuum_age_seconds', pg_catalog.jsonb_build_object('table', t.tbl),
		   pg_catalog.date_part('epoch', pg_catalog.now() - pg_catalog.pg_stat_get_last_autovacuum_time(t.oid))
	  FROM largest t WHERE pg_catalog.pg_stat_get_last_autovacuum_time(t.oid) IS NOT NULL
	UNION ALL
	SELECT 'pg.index.size_bytes',
		   pg_catalog.jsonb_build_object('index', i.oid::pg_catalog.regclass::text, 'table', i.indrelid::pg_catalog.regclass::text),
		   i.size::double precision FROM indexes i
	-- Checkpoints and WAL since the previous run (nothing on the first).
	UNION ALL
	SELECT 'pg.checkpoints', pg_catalog.jsonb_build_object('kind', k.kind),
		   CASE WHEN k.now >= k.before THEN k.now - k.before ELSE k.now END::double precision
	  FROM counters c,
		   LATERAL (VALUES ('timed', c.checkpoints_timed, prev.checkpoints_timed),
						   ('requested', c.checkpoints_req, prev.checkpoints_req)) AS k(kind, now, before)
	 WHERE k.before IS NOT NULL
	UNION ALL
	SELECT 'pg.wal.bytes', '{}',
		   CASE WHEN c.wal_bytes >= prev.wal_bytes THEN c.wal_bytes - prev.wal_bytes ELSE c.wal_bytes END::double precision
	  FROM counters c WHERE prev.wal_bytes IS NOT NULL
$$;

COMMENT ON FUNCTION metrics._vitals_sample(integer, metrics.vitals_state) IS 'Internal: the values of one sample of the vital signs, pg_stat_statements aside';

-- The schema of the pg_stat_statements installed in this database, or
-- NULL.  Found through the extension's own function, so that no other
-- function of that name is called.
CREATE FUNCTION metrics._vitals_statements_schema()
RETURNS name
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT n.nspname
	  FROM pg_catalog.pg_extension e
	  JOIN pg_catalog.pg_depend d ON d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
								 AND d.refobjid = e.oid AND d.deptype = 'e'
								 AND d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
	  JOIN pg_catalog.pg_proc p ON p.oid = d.objid
	  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
	 WHERE e.extname = 'pg_stat_statements' AND p.proname = 'pg_stat_statements'
	   AND p.proargtypes = '16'::pg_catalog.oidvector
$$;

COMMENT ON FUNCTION metrics._vitals_statements_schema() IS 'Internal: the schema of the installed pg_stat_statements, or NULL';

CREATE FUNCTION metrics.collect_vitals()
RETURNS integer
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	top_n integer := opsdata.setting('vitals.top_n')::integer;
	cap integer := least(opsdata.setting('vitals.series_limit')::integer,
						 opsdata.setting('metrics.series_limit')::integer);
	state metrics.vitals_state;
	pgss name;
	pgss_reset timestamptz;
	v_ids bigint[];
	v_calls bigint[];
	v_times double precision[];
	v_rows bigint[];
	note text;
	names text[];
	vals double precision[];
	tagsets jsonb[];
	s_names text[];
	s_vals double precision[];
	s_tags jsonb[];
	v_dropped integer;
	v_dropped_name text;
	missing bigint[];
	n integer := 0;
BEGIN
	IF pg_catalog.pg_is_in_recovery() THEN
		RETURN 0;
	END IF;
	-- One run at a time; the row also holds the counters of the previous run.
	INSERT INTO metrics.vitals_state DEFAULT VALUES ON CONFLICT DO NOTHING;
	SELECT * INTO state FROM metrics.vitals_state FOR UPDATE;

	SELECT pg_catalog.array_agg(v.name), pg_catalog.array_agg(v.value), pg_catalog.array_agg(v.tags)
	  INTO names, vals, tagsets
	  FROM metrics._vitals_sample(top_n, state) v;

	-- pg_stat_statements: the change of calls, time and rows of each query
	-- of this database since the previous run, for the top_n that took the
	-- most time.  A query id missing from the previous run (new, or evicted
	-- and made again) or whose counters went down counts from 0.
	pgss := metrics._vitals_statements_schema();
	IF pgss IS NULL THEN
		note := 'pg_stat_statements is not installed in this database.';
	ELSE
		BEGIN
			EXECUTE pg_catalog.format(
				'SELECT pg_catalog.array_agg(queryid), pg_catalog.array_agg(calls),'
				' pg_catalog.array_agg(total), pg_catalog.array_agg(nrows)'
				'  FROM (SELECT s.queryid, pg_catalog.sum(s.calls)::bigint AS calls,'
				'               pg_catalog.sum(s.total_exec_time) AS total, pg_catalog.sum(s.rows)::bigint AS nrows'
				'          FROM %I.pg_stat_statements(false) s'
				'         WHERE s.dbid = (SELECT d.oid FROM pg_catalog.pg_database d'
				'                          WHERE d.datname = pg_catalog.current_database())'
				'           AND s.queryid IS NOT NULL'
				'         GROUP BY s.queryid) q', pgss)
			   INTO v_ids, v_calls, v_times, v_rows;
			-- stats_reset of pg_stat_statements_info, where the version has it.
			BEGIN
				EXECUTE pg_catalog.format('SELECT stats_reset FROM %I.pg_stat_statements_info', pgss)
				   INTO pgss_reset;
			EXCEPTION WHEN undefined_table OR undefined_column THEN
				pgss_reset := NULL;
			END;
		EXCEPTION WHEN object_not_in_prerequisite_state OR insufficient_privilege THEN
			note := pg_catalog.format('pg_stat_statements cannot be read: %s', SQLERRM);
		END;
		IF note IS NULL AND state.statements_at IS NOT NULL THEN
			SELECT pg_catalog.array_agg(m.name), pg_catalog.array_agg(m.value),
				   pg_catalog.array_agg(pg_catalog.jsonb_build_object('queryid', d.queryid::text))
			  INTO s_names, s_vals, s_tags
			  FROM (SELECT d.*, pg_catalog.row_number() OVER (ORDER BY d.total DESC, d.queryid) AS rank
					  FROM (SELECT c.queryid,
								   CASE WHEN p.calls IS NULL OR c.calls < p.calls THEN c.calls ELSE c.calls - p.calls END AS calls,
								   CASE WHEN p.calls IS NULL OR c.calls < p.calls THEN c.total ELSE c.total - p.total END AS total,
								   CASE WHEN p.calls IS NULL OR c.calls < p.calls THEN c.nrows ELSE c.nrows - p.nrows END AS nrows
							  FROM ROWS FROM (pg_catalog.unnest(v_ids), pg_catalog.unnest(v_calls), pg_catalog.unnest(v_times), pg_catalog.unnest(v_rows)) AS c(queryid, calls, total, nrows)
							  LEFT JOIN ROWS FROM (pg_catalog.unnest(state.statement_ids), pg_catalog.unnest(state.statement_calls), pg_catalog.unnest(state.statement_time), pg_catalog.unnest(state.statement_rows)) AS p(queryid, calls, total, nrows)
									 ON p.queryid = c.queryid
									AND state.statements_reset IS NOT DISTINCT FROM pgss_reset) d
					 WHERE d.calls > 0) d
			 CROSS JOIN LATERAL (VALUES ('pg.statements.calls', d.calls::double precision),
										('pg.statements.time_ms', d.total),
										('pg.statements.rows', d.nrows::double precision)) AS m(name, value)
			 WHERE d.rank <= top_n;
			IF s_names IS NOT NULL THEN
				names := names || s_names;
				vals := vals || s_vals;
				tagsets := tagsets || s_tags;
			END IF;
			-- Texts of the queries not seen before: pg_stat_statements reads
			-- its text file only when there are some.
			SELECT pg_catalog.array_agg(DISTINCT (t->>'queryid')::bigint) INTO missing
			  FROM pg_catalog.unnest(s_tags) AS t
			 WHERE NOT EXISTS (SELECT FROM metrics.vital_queries q WHERE q.queryid = (t->>'queryid')::bigint);
			IF missing IS NOT NULL THEN
				EXECUTE pg_catalog.format(
					'INSERT INTO metrics.vital_queries (queryid, query)'
					' SELECT DISTINCT ON (s.queryid) s.queryid, s.query FROM %I.pg_stat_statements(true) s'
					'  WHERE s.queryid OPERATOR(pg_catalog.=) ANY ($1) AND s.query IS NOT NULL'
					'    AND s.dbid OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d'
					'                   WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())'
					'  ORDER BY s.queryid ON CONFLICT DO NOTHING', pgss)
				USING missing;
			END IF;
		END IF;
	END IF;

	-- Keep within the series limits: values of new series of a name are
	-- kept only while the name stays below the cap, largest values first.
	WITH v AS (
		SELECT u.name, u.tags, u.value, s.series_id IS NULL AS new
		  FROM ROWS FROM (pg_catalog.unnest(names), pg_catalog.unnest(tagsets), pg_catalog.unnest(vals)) AS u(name, tags, value)
		  LEFT JOIN metrics.series s ON s.name = u.name AND s.tags = u.tags
	), room AS (
		SELECT r.name, cap - (SELECT pg_catalog.count(*) FROM metrics.series s WHERE s.name = r.name) AS room
		  FROM (SELECT DISTINCT v.name FROM v WHERE v.new) r
	), ranked AS (
		SELECT v.name, v.tags, v.value, v.new, r.room,
			   pg_catalog.row_number() OVER (PARTITION BY v.name, v.new ORDER BY v.value DESC, v.tags::text) AS rank
		  FROM v LEFT JOIN room r USING (name)
	)
	SELECT pg_catalog.array_agg(k.name) FILTER (WHERE NOT k.new OR k.rank <= k.room),
		   pg_catalog.array_agg(k.value) FILTER (WHERE NOT k.new OR k.rank <= k.room),
		   pg_catalog.array_agg(k.tags) FILTER (WHERE NOT k.new OR k.rank <= k.room),
		   pg_catalog.count(*) FILTER (WHERE k.new AND k.rank > k.room),
		   pg_catalog.max(k.name) FILTER (WHERE k.new AND k.rank > k.room)
	  INTO names, vals, tagsets, v_dropped, v_dropped_name
	  FROM ranked k;

	IF names IS NOT NULL THEN
		n := metrics.record_many(names, vals, tagsets, NULL)::integer;
	END IF;

	DELETE FROM metrics.vital_signs;
	INSERT INTO metrics.vital_signs (name, tags, value, sampled_at)
	SELECT u.name, u.tags, u.value, pg_catalog.now()
	  FROM ROWS FROM (pg_catalog.unnest(names), pg_catalog.unnest(tagsets), pg_catalog.unnest(vals)) AS u(name, tags, value);

	UPDATE metrics.vitals_state s
	   SET runs = s.runs + 1, last_run_at = pg_catalog.now(), last_values = n,
		   checkpoints_timed = c.checkpoints_timed, checkpoints_req = c.checkpoints_req, wal_bytes = c.wal_bytes,
		   statements_reset = pgss_reset,
		   statements_at = CASE WHEN note IS NULL THEN pg_catalog.now() END,
		   statement_ids = v_ids, statement_calls = v_calls, statement_time = v_times, statement_rows = v_rows,
		   statements_note = note,
		   dropped = s.dropped + v_dropped,
		   last_dropped_at = CASE WHEN v_dropped > 0 THEN pg_catalog.now() ELSE s.last_dropped_at END,
		   last_dropped_name = CASE WHEN v_dropped > 0 THEN v_dropped_name ELSE s.last_dropped_name END
	  FROM (SELECT g.checkpoints_timed, g.checkpoints_req, w.wal_bytes
			  FROM pg_catalog.pg_stat_bgwriter g, pg_catalog.pg_stat_wal w) c;
	RETURN n;
END
$$;

COMMENT ON FUNCTION metrics.collect_vitals() IS 'Sample the vital signs of the database into the pg.* series of metrics and metrics.vital_signs; returns how many values were recorded';

--
-- The job, and its schedule following the setting vitals.interval.
--
INSERT INTO opsdata.jobs (name, command, schedule, next_run, builtin, comment) VALUES
	('metrics.vitals', 'SELECT metrics.collect_vitals()', '1 minute', pg_catalog.now() + interval '1 minute', true,
	 'Record the vital signs of the database (connections, locks, transactions, replication, sizes, checkpoints, WAL, queries) as pg.* series');

CREATE FUNCTION metrics._vitals_interval_changed()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	UPDATE opsdata.jobs j
	   SET schedule = opsdata.setting('vitals.interval')::interval
	 WHERE j.name = 'metrics.vitals' AND j.builtin
	   AND j.schedule IS DISTINCT FROM opsdata.setting('vitals.interval')::interval;
	RETURN NULL;
END
$$;

COMMENT ON FUNCTION metrics._vitals_interval_changed() IS 'Internal: gives the job metrics.vitals the schedule of the setting vitals.interval';

CREATE TRIGGER vitals_interval_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON opsdata.config
	FOR EACH STATEMENT EXECUTE FUNCTION metrics._vitals_interval_changed();

--
-- Reading the vital signs back.
--

-- Count, sum, min and max per series of the given metric names over
-- [from, to): buckets of the finest rollup width that start in the range,
-- and the contributions not rolled up yet.
CREATE FUNCTION metrics._vitals_window(names text[], "from" timestamptz, "to" timestamptz,
	OUT series_id bigint, OUT name text, OUT tags jsonb, OUT count bigint, OUT sum double precision,
	OUT min double precision, OUT max double precision, OUT first_bucket timestamptz, OUT last_bucket timestamptz)
RETURNS SETOF record
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	WITH w AS (
		SELECT (opsdata.setting('metrics.rollup_widths')::interval[])[1] AS width,
			   opsdata.setting('metrics.rollup_lateness')::interval AS lateness,
			   timestamptz '2000-01-03 00:00:00+00' AS origin
	), s AS (
		SELECT s.series_id, s.name, s.tags FROM metrics.series s WHERE s.name = ANY (names)
	), parts AS (
		SELECT r.series_id, r.bucket_start, r.count, r.sum, r.min, r.max
		  FROM s JOIN metrics.rollups r USING (series_id), w
		 WHERE r.bucket_width = w.width
		   AND r.bucket_start >= pg_catalog.date_bin(w.width, "from", w.origin) AND r.bucket_start < "to"
		UNION ALL
		SELECT q.series_id, q.bucket_start, metrics.sketch_count(q.sketch), metrics.sketch_sum(q.sketch),
			   metrics.sketch_min(q.sketch), metrics.sketch_max(q.sketch)
		  FROM s JOIN metrics.rollup_queue q USING (series_id), w
		 WHERE q.bucket_start >= pg_catalog.date_bin(w.width, "from", w.origin) AND q.bucket_start < "to"
		   AND q.queued_at <= pg_catalog.date_bin(w.width, q.bucket_start, w.origin) + w.width + w.lateness
	)
	SELECT s.series_id, s.name, s.tags, pg_catalog.sum(p.count)::bigint, pg_catalog.sum(p.sum),
		   pg_catalog.min(p.min), pg_catalog.max(p.max), pg_catalog.min(p.bucket_start), pg_catalog.max(p.bucket_start)
	  FROM parts p JOIN s USING (series_id)
	 GROUP BY s.series_id, s.name, s.tags
$$;

COMMENT ON FUNCTION metrics._vitals_window(text[], timestamptz, timestamptz) IS 'Internal: count, sum, min and max per series of some metrics over a time range, from the finest rollups and the queue';

-- The text of a recorded query, for roles that may read query texts.
CREATE FUNCTION metrics._vital_query_text(queryid bigint)
RETURNS text
LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
	SELECT q.query FROM metrics.vital_queries q
	 WHERE q.queryid = _vital_query_text.queryid
	   AND (pg_catalog.pg_has_role(opsdata._worker_acting_role(), 'opsdata_admin', 'USAGE')
			OR pg_catalog.pg_has_role(opsdata._worker_acting_role(), 'pg_read_all_stats', 'USAGE'))
$$;

COMMENT ON FUNCTION metrics._vital_query_text(bigint) IS 'Internal: the normalized text of a query the vital signs recorded, for members of opsdata_admin or pg_read_all_stats; NULL for others';

CREATE FUNCTION metrics.slow_queries("from" timestamptz DEFAULT pg_catalog.now() - interval '1 hour',
	"to" timestamptz DEFAULT pg_catalog.now(), n integer DEFAULT 10)
RETURNS TABLE (queryid bigint, calls bigint, total_ms double precision, mean_ms double precision,
			   rows bigint, query text)
LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
	SELECT t.queryid, t.calls, t.total_ms, t.total_ms / NULLIF(t.calls, 0), t.rows,
		   metrics._vital_query_text(t.queryid)
	  FROM (SELECT (w.tags->>'queryid')::bigint AS queryid,
				   pg_catalog.sum(w.sum) FILTER (WHERE w.name = 'pg.statements.calls')::bigint AS calls,
				   coalesce(pg_catalog.sum(w.sum) FILTER (WHERE w.name = 'pg.statements.time_ms'), 0) AS total_ms,
				   pg_catalog.sum(w.sum) FILTER (WHERE w.name = 'pg.statements.rows')::bigint AS rows
			  FROM metrics._vitals_window(ARRAY['pg.statements.calls', 'pg.statements.time_ms', 'pg.statements.rows'],
										  slow_queries."from", slow_queries."to") w
			 GROUP BY 1) t
	 ORDER BY t.total_ms DESC, t.queryid
	 LIMIT slow_queries.n
$$;

COMMENT ON FUNCTION metrics.slow_queries(timestamptz, timestamptz, integer) IS 'The query shapes (pg_stat_statements query ids) that took the most execution time over a range, from the vital signs: calls, total and mean time, rows, and the text for those who may read it';

CREATE FUNCTION metrics.locks_at("at" timestamptz, within interval DEFAULT NULL)
RETURNS TABLE (relation text, locktype text, mode text, holder_user text, holder_application text,
			   holder_state text, holder_queryid bigint, waiters bigint, longest_wait_seconds double precision,
			   first_seen timestamptz, last_seen timestamptz, holder_query text)
LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
	WITH r AS (
		SELECT coalesce(locks_at.within, opsdata.setting('vitals.interval')::interval) AS within
	), w AS (
		SELECT w.* FROM r, metrics._vitals_window(ARRAY['pg.locks.blocking', 'pg.locks.blocking_wait_seconds'],
												 locks_at."at" - r.within, locks_at."at" + r.within) w
	)
	SELECT b.tags->>'relation', b.tags->>'locktype', b.tags->>'mode', b.tags->>'holder_user',
		   b.tags->>'holder_application', b.tags->>'holder_state', (b.tags->>'holder_queryid')::bigint,
		   b.max::bigint, s.max, b.first_bucket, b.last_bucket,
		   metrics._vital_query_text((b.tags->>'holder_queryid')::bigint)
	  FROM w b LEFT JOIN w s ON s.name = 'pg.locks.blocking_wait_seconds' AND s.tags = b.tags
	 WHERE b.name = 'pg.locks.blocking'
	 ORDER BY s.max DESC NULLS LAST, b.max DESC
$$;

COMMENT ON FUNCTION metrics.locks_at(timestamptz, interval) IS 'Who held the locks that sessions waited for around a moment (within one vitals.interval by default), from the vital signs: relation, lock mode, the holder''s user, application, state and query, the most sessions waiting and the longest wait';

--
-- Health.
--
CREATE FUNCTION metrics._health_vitals(OUT component text, OUT status text, OUT detail text)
RETURNS SETOF record
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	job opsdata.jobs;
	st metrics.vitals_state;
BEGIN
	SELECT * INTO job FROM opsdata.jobs j WHERE j.name = 'metrics.vitals';
	SELECT * INTO st FROM metrics.vitals_state;
	component := 'metrics vitals';
	IF st.last_dropped_at > pg_catalog.now() - interval '1 day' THEN
		status := 'warning';
		detail := pg_catalog.format('Values of new series of "%s" were not recorded at %s: the metric has reached the setting "vitals.series_limit" (%s values dropped so far).',
									st.last_dropped_name, st.last_dropped_at, st.dropped);
	ELSIF job.job_id IS NULL OR job.paused THEN
		status := 'off';
		detail := 'The job "metrics.vitals" is missing or paused: the vital signs are not recorded.';
	ELSIF st.last_run_at IS NULL THEN
		status := 'ok';
		detail := 'No sample taken yet.';
	ELSE
		status := 'ok';
		detail := pg_catalog.format('Last sample at %s: %s values.', st.last_run_at, st.last_values)
				  || coalesce(' ' || st.statements_note, '');
	END IF;
	RETURN NEXT;
END
$$;

COMMENT ON FUNCTION metrics._health_vitals() IS 'Internal: the vital signs row of opsdata.health()';

GRANT EXECUTE ON FUNCTION metrics.collect_vitals() TO opsdata_admin;
GRANT EXECUTE ON FUNCTION metrics.slow_queries(timestamptz, timestamptz, integer),
	metrics.locks_at(timestamptz, interval) TO opsdata_reader;

-- src/learning/import.sql
-- Learning, import: views that COPY loads the stores of another system
-- into (thresholds, candidates and their labels).  Each is a view with an
-- INSTEAD OF INSERT trigger, so that "COPY view FROM STDIN" converts and
-- checks every row with the same rules as the API, names the line of a
-- bad row (COPY's context), and loads the whole file or nothing.
-- Feedback needs no view: COPY learning.feedback loads it directly.

CREATE VIEW learning.import_thresholds AS
	SELECT NULL::text AS key, NULL::text AS objective, NULL::double precision AS target,
		   NULL::integer AS min_support, NULL::double precision AS threshold,
		   NULL::double precision AS precision, NULL::double precision AS recall,
		   NULL::bigint AS support, NULL::timestamptz AS tuned_at
	 WHERE false;

COMMENT ON VIEW learning.import_thresholds IS 'Write-only: COPY or INSERT thresholds tuned elsewhere; each row sets the objective of its key and its threshold';
COMMENT ON COLUMN learning.import_thresholds.key IS 'Key the threshold decides for';
COMMENT ON COLUMN learning.import_thresholds.objective IS 'precision, f_beta or youden; NULL for the setting learning.default_objective';
COMMENT ON COLUMN learning.import_thresholds.target IS 'Target precision, or beta for f_beta';
COMMENT ON COLUMN learning.import_thresholds.min_support IS 'Feedback rows needed before the threshold is used; NULL for the setting learning.default_min_support';
COMMENT ON COLUMN learning.import_thresholds.threshold IS 'The threshold, in [0, 1]';
COMMENT ON COLUMN learning.import_thresholds.precision IS 'Precision at the threshold, if known';
COMMENT ON COLUMN learning.import_thresholds.recall IS 'Recall at the threshold, if known';
COMMENT ON COLUMN learning.import_thresholds.support IS 'Feedback rows the threshold was tuned on';
COMMENT ON COLUMN learning.import_thresholds.tuned_at IS 'When it was tuned; now() when NULL';

CREATE FUNCTION learning._import_threshold()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	objective text := coalesce(NEW.objective, opsdata.setting('learning.default_objective'));
	target double precision;
	tuned timestamptz := coalesce(NEW.tuned_at, pg_catalog.now());
	previous double precision;
BEGIN
	IF NEW.key IS NULL THEN
		RAISE EXCEPTION 'key must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF NEW.objective IS NULL AND objective = 'f_beta' THEN
		target := coalesce(NEW.target, opsdata.setting('learning.default_beta')::double precision);
	ELSE
		target := NEW.target;
	END IF;
	target := learning._check_objective(objective, target);
	IF NEW.threshold IS NOT NULL AND NOT (NEW.threshold >= 0 AND NEW.threshold <= 1) THEN
		RAISE EXCEPTION 'threshold must be between 0 and 1, not %', NEW.threshold
			USING ERRCODE = 'numeric_value_out_of_range';
	END IF;
	IF NEW.min_support IS NOT NULL AND NEW.min_support < 1 THEN
		RAISE EXCEPTION 'min_support must be at least 1' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT t.threshold INTO previous FROM learning.thresholds t WHERE t.key = NEW.key FOR UPDATE;
	-- configured_at = tuned_at: learning.tune() leaves the key alone until
	-- feedback of the key arrives.
	INSERT INTO learning.thresholds AS t (key, objective, target, min_support, threshold, precision, recall,
										  support, tuned_at, configured_at)
	VALUES (NEW.key, objective, target,
			coalesce(NEW.min_support, opsdata.setting('learning.default_min_support')::integer),
			NEW.threshold, NEW.precision, NEW.recall, coalesce(NEW.support, 0), tuned, tuned)
	ON CONFLICT ON CONSTRAINT thresholds_pkey DO UPDATE
	   SET objective = excluded.objective, target = excluded.target, min_support = excluded.min_support,
		   threshold = excluded.threshold, precision = excluded.precision, recall = excluded.recall,
		   support = excluded.support, tuned_at = excluded.tuned_at, configured_at = excluded.configured_at;
	INSERT INTO learning.threshold_history (key, objective, target, threshold, previous, precision, recall,
											support, changed_at)
	VALUES (NEW.key, objective, target, NEW.threshold, previous, NEW.precision, NEW.recall,
			coalesce(NEW.support, 0), tuned);
	RETURN NEW;
END
$$;

COMMENT ON FUNCTION learning._import_threshold() IS 'Internal: stores a row written to learning.import_thresholds';

CREATE TRIGGER import_threshold INSTEAD OF INSERT ON learning.import_thresholds
	FOR EACH ROW EXECUTE FUNCTION learning._import_threshold();

CREATE VIEW learning.import_candidates AS
	SELECT NULL::text AS key, NULL::text AS item_id, NULL::double precision AS probability,
		   NULL::jsonb AS scores, NULL::jsonb AS payload, NULL::timestamptz AS created_at
	 WHERE false;

COMMENT ON VIEW learning.import_candidates IS 'Write-only: COPY or INSERT candidates queued elsewhere, as learning.offer() queues them';
COMMENT ON COLUMN learning.import_candidates.key IS 'Key the item belongs to';
COMMENT ON COLUMN learning.import_candidates.item_id IS 'The item to label';
COMMENT ON COLUMN learning.import_candidates.probability IS 'The probability the model gave (when scores is NULL)';
COMMENT ON COLUMN learning.import_candidates.scores IS 'The model''s scores, one per class, as a JSON array of numbers';
COMMENT ON COLUMN learning.import_candidates.payload IS 'What a reviewer needs to see, as JSON; {} when NULL';
COMMENT ON COLUMN learning.import_candidates.created_at IS 'When the item was offered; now() when NULL';

CREATE FUNCTION learning._import_candidate()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	id bigint;
	scores double precision[];
BEGIN
	IF NEW.scores IS NOT NULL THEN
		IF pg_catalog.jsonb_typeof(NEW.scores) <> 'array'
		   OR EXISTS (SELECT FROM pg_catalog.jsonb_array_elements(NEW.scores) e
					   WHERE pg_catalog.jsonb_typeof(e) <> 'number') THEN
			RAISE EXCEPTION 'scores must be a JSON array of numbers, not %', NEW.scores
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		SELECT pg_catalog.array_agg(e::double precision ORDER BY o) INTO scores
		  FROM pg_catalog.jsonb_array_elements_text(NEW.scores) WITH ORDINALITY AS x(e, o);
		id := learning.offer(NEW.key, NEW.item_id, scores, coalesce(NEW.payload, '{}'));
	ELSE
		id := learning.offer(NEW.key, NEW.item_id, NEW.probability, coalesce(NEW.payload, '{}'));
	END IF;
	IF NEW.created_at IS NOT NULL THEN
		UPDATE learning.candidates c SET created_at = NEW.created_at WHERE c.candidate_id = id;
	END IF;
	RETURN NEW;
END
$$;

COMMENT ON FUNCTION learning._import_candidate() IS 'Internal: offers a row written to learning.import_candidates';

CREATE TRIGGER import_candidate INSTEAD OF INSERT ON learning.import_candidates
	FOR EACH ROW EXECUTE FUNCTION learning._import_candidate();

CREATE VIEW learning.import_labels AS
	SELECT NULL::text AS key, NULL::text AS item_id, NULL::text AS reviewer, NULL::boolean AS label,
		   NULL::smallint AS rating, NULL::timestamptz AS created_at
	 WHERE false;

COMMENT ON VIEW learning.import_labels IS 'Write-only: COPY or INSERT reviewers'' labels of candidates, as learning.submit() records them (feedback, and the candidate closed once it has its labels)';
COMMENT ON COLUMN learning.import_labels.key IS 'Key of the candidate';
COMMENT ON COLUMN learning.import_labels.item_id IS 'Item of the candidate';
COMMENT ON COLUMN learning.import_labels.reviewer IS 'Who labelled it';
COMMENT ON COLUMN learning.import_labels.label IS 'Whether the decision was correct';
COMMENT ON COLUMN learning.import_labels.rating IS 'Optional rating';
COMMENT ON COLUMN learning.import_labels.created_at IS 'When it was labelled; now() when NULL';

CREATE FUNCTION learning._import_label()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	id bigint;
	fid bigint;
BEGIN
	SELECT c.candidate_id INTO id FROM learning.candidates c WHERE c.key = NEW.key AND c.item_id = NEW.item_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no candidate of key "%" and item "%"', NEW.key, NEW.item_id
			USING ERRCODE = 'foreign_key_violation',
				  HINT = 'Import the candidates into learning.import_candidates before their labels.';
	END IF;
	IF NEW.label IS NULL OR NEW.reviewer IS NULL THEN
		RAISE EXCEPTION 'label and reviewer must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	fid := learning.submit(id, NEW.reviewer, NEW.label, NEW.rating, NULL);
	IF NEW.created_at IS NOT NULL THEN
		UPDATE learning.feedback f SET created_at = NEW.created_at WHERE f.feedback_id = fid;
		UPDATE learning.candidates c SET closed_at = NEW.created_at
		 WHERE c.candidate_id = id AND c.closed_at IS NOT NULL;
	END IF;
	RETURN NEW;
END
$$;

COMMENT ON FUNCTION learning._import_label() IS 'Internal: records a row written to learning.import_labels as learning.submit() does';

CREATE TRIGGER import_label INSTEAD OF INSERT ON learning.import_labels
	FOR EACH ROW EXECUTE FUNCTION learning._import_label();

GRANT INSERT ON learning.import_thresholds, learning.import_candidates, learning.import_labels TO opsdata_admin;

-- Partition steps name their operators with their schema (they run as the
-- table's owner in a privileged region).
CREATE OR REPLACE FUNCTION opsdata._partition_step(s opsdata.partitions, parent regclass, schema name, parent_name name,
	space text, like_clause text, cols text, tail text[], default_part regclass, taken text[],
	lo timestamptz, hi timestamptz, lo_id bigint, hi_id bigint, filled boolean,
	OUT action text, OUT partition text, OUT relname name, OUT statements text[], OUT detail text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
	v_time boolean := s.control_type IN ('timestamptz'::regtype, 'date'::regtype);
	v_name name;
	v_lit_lo text := opsdata._partition_literal(s.control_type, lo, lo_id);
	v_lit_hi text := opsdata._partition_literal(s.control_type, hi, hi_id);
	v_suffix text;
	v_iv interval;
	v_check text;
	v_cond text;
	g text;
BEGIN
	IF v_time THEN
		v_iv := s.part_interval::interval;
		v_suffix := CASE
			WHEN EXTRACT(year FROM v_iv) * 12 + EXTRACT(month FROM v_iv) > 0
			THEN pg_catalog.to_char(lo AT TIME ZONE 'UTC', 'YYYYMM')
			WHEN EXTRACT(epoch FROM v_iv)::numeric % 86400 = 0
			THEN pg_catalog.to_char(lo AT TIME ZONE 'UTC', 'YYYYMMDD')
			ELSE pg_catalog.to_char(lo AT TIME ZONE 'UTC', 'YYYYMMDD_HH24MI') END;
	ELSE
		v_suffix := pg_catalog.replace(lo_id::text, '-', 'm');
	END IF;
	v_name := opsdata._partition_name(schema, parent_name, v_suffix, taken);
	relname := v_name;
	partition := pg_catalog.format('%I.%I', schema, v_name);
	detail := pg_catalog.format('FROM (%s) TO (%s)', v_lit_lo, coalesce(v_lit_hi, 'MAXVALUE'));
	IF NOT filled THEN
		action := 'create';
		statements := ARRAY[pg_catalog.format('CREATE TABLE %s %s)%s', partition, like_clause, space)];
	ELSE
		action := 'move';
		-- Run as the table's owner in a privileged region: operators are
		-- named with their schema.
		v_cond := pg_catalog.format('%1$I OPERATOR(pg_catalog.>=) %2$s', s.control_column, v_lit_lo)
				  || CASE WHEN v_lit_hi IS NULL THEN ''
						  ELSE pg_catalog.format(' AND %1$I OPERATOR(pg_catalog.<) %2$s', s.control_column, v_lit_hi) END;
		statements := ARRAY[
			pg_catalog.format('CREATE TABLE %s %s, CONSTRAINT opsdata_partition_bounds CHECK (%I IS NOT NULL AND %s))%s',
							  partition, like_clause, s.control_column, v_cond, space),
			pg_catalog.format('WITH moved AS (DELETE FROM ONLY %s WHERE %s RETURNING %s) INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM moved',
							  default_part, v_cond, cols, partition, cols, cols)];
	END IF;
	statements := statements
		|| pg_catalog.format('ALTER TABLE %s ATTACH PARTITION %s FOR VALUES FROM (%s) TO (%s)',
							 parent, partition, v_lit_lo, coalesce(v_lit_hi, 'MAXVALUE'));
	IF filled THEN
		statements := statements
			|| pg_catalog.format('ALTER TABLE %s DROP CONSTRAINT opsdata_partition_bounds', partition);
	END IF;
	FOREACH g IN ARRAY tail LOOP
		statements := statements || pg_catalog.format(g, partition);
	END LOOP;
END
$$;

--
-- Every table of pg_opsdata is guarded against writes by roles that bypass
-- grants; the guard of the audit tables of 0.1 gives way to it.
--
DROP TRIGGER refuse_change ON audit.entries;
DROP TRIGGER refuse_change ON audit.statements;
DROP TRIGGER refuse_change ON audit.seals;
DROP TRIGGER refuse_change ON audit.rules;
DROP TRIGGER refuse_change ON audit.queue;
DROP FUNCTION audit._refuse_change();

CREATE FUNCTION audit._statements_changed()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_statements_changed';

COMMENT ON FUNCTION audit._statements_changed() IS 'Internal: make the caches of stored statement texts forget what they hold when audit.statements changes';

CREATE TRIGGER statements_changed AFTER UPDATE OR DELETE ON audit.statements
	FOR EACH STATEMENT EXECUTE FUNCTION audit._statements_changed();

CREATE FUNCTION opsdata._guard()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'opsdata_guard';

COMMENT ON FUNCTION opsdata._guard() IS 'Internal: trigger refusing writes of pg_opsdata''s tables to all but their owner and superusers';

-- Guards every table of the extension; a table's partitions get the
-- row-level guard of their parent by cloning, those made later included,
-- and a TRUNCATE guard of their own when they belong to the extension.
-- Safe to run again: it replaces the guards it made.  Returns how many
-- tables it guarded.
CREATE FUNCTION opsdata._guard_tables()
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t record;
	old_guard name;
	row_events text[];
	n integer := 0;
BEGIN
	FOR t IN
		SELECT c.oid::pg_catalog.regclass AS rel, c.relkind, c.relispartition,
			   ARRAY(SELECT e FROM pg_catalog.unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) e
					  WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_class g, pg_catalog.aclexplode(g.relacl) a
										 WHERE g.oid = CASE WHEN c.relispartition
															THEN pg_catalog.pg_partition_root(c.oid)
															ELSE c.oid END
										   AND a.grantee OPERATOR(pg_catalog.<>) g.relowner
										   AND a.privilege_type OPERATOR(pg_catalog.=) e)) AS events
		  FROM pg_catalog.pg_class c
		  JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
									 AND d.objid = c.oid AND d.deptype = 'e'
		  JOIN pg_catalog.pg_extension x ON x.oid = d.refobjid AND x.extname = 'pg_opsdata'
		 WHERE c.relkind IN ('r', 'p')
		 ORDER BY c.oid
	LOOP
		CONTINUE WHEN pg_catalog.cardinality(t.events) = 0;
		-- Replace the guards made before (a clone on a partition goes with
		-- its parent's).
		FOR old_guard IN SELECT tg.tgname FROM pg_catalog.pg_trigger tg
				  WHERE tg.tgrelid OPERATOR(pg_catalog.=) t.rel
					AND tg.tgname IN ('opsdata_guard', 'opsdata_guard_truncate')
					AND tg.tgparentid OPERATOR(pg_catalog.=) 0
		LOOP
			EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', old_guard, t.rel);
		END LOOP;
		IF t.relkind = 'r' AND NOT t.relispartition THEN
			EXECUTE pg_catalog.format('CREATE TRIGGER opsdata_guard BEFORE %s ON %s FOR EACH STATEMENT EXECUTE FUNCTION opsdata._guard()',
									  pg_catalog.array_to_string(t.events, ' OR '), t.rel);
			EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER opsdata_guard', t.rel);
		ELSE
			row_events := ARRAY(SELECT e FROM pg_catalog.unnest(t.events) e WHERE e OPERATOR(pg_catalog.<>) 'TRUNCATE');
			IF t.relkind = 'p' AND pg_catalog.cardinality(row_events) > 0 THEN
				EXECUTE pg_catalog.format('CREATE TRIGGER opsdata_guard BEFORE %s ON %s FOR EACH ROW EXECUTE FUNCTION opsdata._guard()',
										  pg_catalog.array_to_string(row_events, ' OR '), t.rel);
				EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER opsdata_guard', t.rel);
			END IF;
			IF 'TRUNCATE' OPERATOR(pg_catalog.=) ANY (t.events) THEN
				EXECUTE pg_catalog.format('CREATE TRIGGER opsdata_guard_truncate BEFORE TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION opsdata._guard()',
										  t.rel);
				EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER opsdata_guard_truncate', t.rel);
			END IF;
		END IF;
		n := n + 1;
	END LOOP;
	RETURN n;
END
$$;

COMMENT ON FUNCTION opsdata._guard_tables() IS 'Internal: put the guard trigger on every table of pg_opsdata for each write no role is granted; returns how many tables';

REVOKE ALL ON FUNCTION audit._statements_changed(), opsdata._guard(), opsdata._guard_tables() FROM PUBLIC;

SELECT opsdata._guard_tables();

--
-- Separation of duties: what narrows or shortens the trail is for
-- superusers, and every such change is audited; retentions are bounded.
--
-- Filled before it gets its default, so that no row keeps a "missing"
-- value that a fresh install would not have.
ALTER TABLE opsdata.settings ADD COLUMN superuser_only boolean;
UPDATE opsdata.settings SET superuser_only = false;
ALTER TABLE opsdata.settings ALTER COLUMN superuser_only SET DEFAULT false,
	ALTER COLUMN superuser_only SET NOT NULL;
COMMENT ON COLUMN opsdata.settings.superuser_only IS 'The setting governs how long the audit trail or the partition log is kept: only superusers change it, and every change is audited';

UPDATE opsdata.settings
   SET valid_when = 'value >= interval ''1 day'' AND value <= interval ''1000 years''',
	   description = 'Age after which daily partitions of audit.entries are removed by partition maintenance; superusers only',
	   superuser_only = true
 WHERE key = 'audit.retention';
UPDATE opsdata.settings
   SET valid_when = 'value >= interval ''1 day'' AND value <= interval ''1000 years''',
	   description = 'How long entries of opsdata.partition_log are kept; superusers only',
	   superuser_only = true
 WHERE key = 'partition.log_retention';
UPDATE opsdata.settings
   SET valid_when = 'value > interval ''0'' AND value <= interval ''1000 years'''
 WHERE key = 'metrics.points_retention';
-- Values chosen before the bounds existed are brought within them.
UPDATE opsdata.config
   SET value = CASE WHEN value::interval < interval '1 day' THEN '1 day' ELSE '1000 years' END
 WHERE key IN ('audit.retention', 'partition.log_retention')
   AND CASE WHEN key IN ('audit.retention', 'partition.log_retention')
			THEN value::interval < interval '1 day' OR value::interval > interval '1000 years' END;
UPDATE opsdata.config
   SET value = '1000 years'
 WHERE key = 'metrics.points_retention'
   AND CASE WHEN key = 'metrics.points_retention' THEN value::interval > interval '1000 years' END;

CREATE OR REPLACE VIEW opsdata.current_settings AS
	SELECT s.key, coalesce(c.value, s.default_value) AS value, s.default_value,
		   c.key IS NOT NULL AS changed, s.type, s.description, c.updated_at, c.updated_by,
		   s.superuser_only
	  FROM opsdata.settings s LEFT JOIN opsdata.config c USING (key);

CREATE FUNCTION opsdata._trail_check(action text)
RETURNS void
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'opsdata_trail_check';

COMMENT ON FUNCTION opsdata._trail_check(text) IS 'Internal: permission denied to the action unless the session acts as a superuser';

CREATE FUNCTION audit._config_changed(command text, object text)
RETURNS void
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'audit_config_changed';

COMMENT ON FUNCTION audit._config_changed(text, text) IS 'Internal: record a change of a setting that governs the audit trail';

REVOKE ALL ON FUNCTION opsdata._trail_check(text), audit._config_changed(text, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION opsdata.set_setting(key text, value text)
RETURNS text
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s opsdata.settings;
	ok boolean;
BEGIN
	IF key IS NULL OR value IS NULL THEN
		RAISE EXCEPTION 'setting name and value must not be null'
			USING ERRCODE = 'null_value_not_allowed',
				  HINT = 'Use opsdata.reset_setting() to return a setting to its default.';
	END IF;
	SELECT * INTO s FROM opsdata.settings WHERE settings.key = set_setting.key;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unrecognized pg_opsdata setting "%"', key
			USING ERRCODE = 'undefined_object',
				  HINT = 'The settings are listed in opsdata.settings.';
	END IF;
	IF s.superuser_only THEN
		PERFORM opsdata._trail_check(pg_catalog.format('change the pg_opsdata setting "%s"', key));
	END IF;
	BEGIN
		EXECUTE pg_catalog.format('SELECT coalesce((%s), false) FROM (SELECT %L::%s AS value) v',
								  coalesce(s.valid_when, 'true'), value, s.type)
		   INTO ok;
	EXCEPTION WHEN data_exception OR syntax_error_or_access_rule_violation THEN
		RAISE EXCEPTION 'invalid value for pg_opsdata setting "%": "%"', key, value
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = SQLERRM,
				  HINT = pg_catalog.format('The value must be a valid %s.', s.type);
	END;
	IF NOT ok THEN
		RAISE EXCEPTION 'invalid value for pg_opsdata setting "%": "%"', key, value
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = pg_catalog.format('The value must satisfy: %s.', s.valid_when);
	END IF;
	INSERT INTO opsdata.config AS c (key, value)
		 VALUES (set_setting.key, set_setting.value)
	ON CONFLICT ON CONSTRAINT config_pkey
	DO UPDATE SET value = excluded.value, updated_at = pg_catalog.now(), updated_by = SESSION_USER;
	IF s.superuser_only THEN
		PERFORM audit._config_changed('SET OPSDATA SETTING', key);
	END IF;
	RETURN value;
END
$$;

CREATE OR REPLACE FUNCTION opsdata.reset_setting(key text)
RETURNS text
LANGUAGE plpgsql VOLATILE STRICT
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	only_superusers boolean;
BEGIN
	SELECT s.superuser_only INTO only_superusers FROM opsdata.settings s WHERE s.key = reset_setting.key;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unrecognized pg_opsdata setting "%"', key
			USING ERRCODE = 'undefined_object',
				  HINT = 'The settings are listed in opsdata.settings.';
	END IF;
	IF only_superusers THEN
		PERFORM opsdata._trail_check(pg_catalog.format('change the pg_opsdata setting "%s"', key));
	END IF;
	DELETE FROM opsdata.config WHERE config.key = reset_setting.key;
	IF only_superusers THEN
		PERFORM audit._config_changed('RESET OPSDATA SETTING', key);
	END IF;
	RETURN opsdata.setting(key);
END
$$;

COMMENT ON FUNCTION opsdata.set_setting(text, text) IS 'Set a pg_opsdata setting after checking the value against its type and constraint; settings marked superuser_only are for superusers, and their changes are audited';

CREATE OR REPLACE FUNCTION audit.add_rule(action text, role_name name DEFAULT NULL, database_name name DEFAULT NULL,
	schema_name name DEFAULT NULL, relation_name text DEFAULT NULL, class text DEFAULT NULL,
	comment text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	id bigint;
BEGIN
	IF action IS NULL OR action NOT IN ('include', 'exclude') THEN
		RAISE EXCEPTION 'invalid audit rule action "%"', action
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'The action is include or exclude.';
	END IF;
	IF class IS NOT NULL AND class NOT IN ('read', 'write', 'function', 'role', 'ddl', 'misc', 'login') THEN
		RAISE EXCEPTION 'invalid audit class "%"', class
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Valid classes are read, write, function, role, ddl, misc and login.';
	END IF;
	-- An exclude rule narrows the trail: superusers only.
	IF action = 'exclude' THEN
		PERFORM opsdata._trail_check('add an exclude audit rule');
	END IF;
	INSERT INTO audit.rules AS r (action, role_name, database_name, schema_name, relation_name, class, comment)
		 VALUES (add_rule.action, add_rule.role_name, add_rule.database_name, add_rule.schema_name,
				 add_rule.relation_name, add_rule.class, add_rule.comment)
	  RETURNING r.rule_id INTO id;
	PERFORM audit._rules_changed('ADD AUDIT RULE', 'audit.rules');
	RETURN id;
END
$$;

CREATE OR REPLACE FUNCTION audit.drop_rule(rule_id bigint)
RETURNS boolean
LANGUAGE plpgsql VOLATILE STRICT
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	old_action text;
BEGIN
	SELECT r.action INTO old_action FROM audit.rules r WHERE r.rule_id = drop_rule.rule_id FOR UPDATE;
	IF NOT FOUND THEN
		RETURN false;
	END IF;
	-- Without an include rule the trail may record less: superusers only.
	IF old_action = 'include' THEN
		PERFORM opsdata._trail_check('drop an include audit rule');
	END IF;
	DELETE FROM audit.rules r WHERE r.rule_id = drop_rule.rule_id;
	PERFORM audit._rules_changed('DROP AUDIT RULE', 'audit.rules');
	RETURN true;
END
$$;

COMMENT ON FUNCTION audit.add_rule(text, name, name, name, text, text, text) IS 'Add a rule that includes or excludes statements from the audit trail (exclude rules: superusers only); returns its rule_id';
COMMENT ON FUNCTION audit.drop_rule(bigint) IS 'Remove an audit rule (include rules: superusers only); returns false when there was no such rule';

CREATE OR REPLACE FUNCTION opsdata._partition_retention(control_type regtype, value text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET IntervalStyle = 'postgres'
AS $$
DECLARE
	n bigint;
	iv interval;
BEGIN
	IF value IS NULL THEN
		RETURN NULL;
	END IF;
	IF control_type NOT IN ('date'::regtype, 'timestamptz'::regtype) THEN
		BEGIN
			n := value::bigint;
		EXCEPTION WHEN data_exception THEN
			RAISE EXCEPTION 'invalid retention "%" for a set keyed by %', value, control_type
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Give the distance in ids below the highest id beyond which partitions are removed, such as ''1000000''.';
		END;
		IF n < 1 THEN
			RAISE EXCEPTION 'retention must be positive'
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = pg_catalog.format('The value given was %s.', n),
					  HINT = 'Give NULL to keep every partition.';
		END IF;
		RETURN n::text;
	END IF;
	BEGIN
		iv := value::interval;
	EXCEPTION WHEN data_exception THEN
		RAISE EXCEPTION 'invalid retention "%" for a set keyed by %', value, control_type
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give an interval such as ''90 days''.';
	END;
	IF iv <= interval '0' OR EXTRACT(epoch FROM iv) <= 0
	   OR EXTRACT(day FROM iv) < 0 OR EXTRACT(month FROM iv) < 0
	   OR EXTRACT(year FROM iv) < 0 THEN
		RAISE EXCEPTION 'retention must be positive'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = pg_catalog.format('The value given was "%s".', value),
				  HINT = 'Give NULL to keep every partition.';
	END IF;
	-- Maintenance subtracts the retention from now: keep that in range.
	IF iv > interval '1000 years' THEN
		RAISE EXCEPTION 'retention must be at most 1000 years'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = pg_catalog.format('The value given was "%s".', value),
				  HINT = 'Give NULL to keep every partition.';
	END IF;
	RETURN iv::text;
END
$$;

CREATE OR REPLACE FUNCTION opsdata._health_partition(OUT component text, OUT status text, OUT detail text)
RETURNS SETOF record
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '100ms'
AS $$
DECLARE
	r record;
	n bigint;
	rows_text text;
	v_acting name := opsdata._worker_acting_role();
	v_sets integer := 0;
	v_hidden integer := 0;
	v_failed integer := 0;
	v_warned integer := 0;
BEGIN
	FOR r IN
		SELECT p.parent, p.last_status, p.last_message, p.last_run_at, p.created_at,
			   NULLIF(t.partdefid, 0)::regclass AS default_partition,
			   pg_catalog.pg_has_role(v_acting, c.relowner, 'USAGE')
			   OR pg_catalog.has_table_privilege(v_acting, c.oid, 'SELECT') AS readable,
			   p.builtin
		  FROM opsdata.partitions p
		  JOIN pg_catalog.pg_class c ON c.oid = p.parent
		  LEFT JOIN pg_catalog.pg_partitioned_table t ON t.partrelid = p.parent
		 ORDER BY p.parent::text
	LOOP
		v_sets := v_sets + 1;
		n := 0;
		rows_text := NULL;
		IF NOT r.readable AND NOT r.builtin THEN
			v_hidden := v_hidden + 1;
			IF r.last_status = 'failed' THEN
				v_failed := v_failed + 1;
			ELSIF r.last_status = 'skipped'
				  OR (r.last_run_at IS NULL AND r.created_at < pg_catalog.now() - interval '1 hour')
				  OR r.last_run_at < pg_catalog.now() - interval '1 day' THEN
				v_warned := v_warned + 1;
			END IF;
			CONTINUE;
		END IF;
		IF r.default_partition IS NOT NULL
		   AND (r.readable OR pg_catalog.has_table_privilege(v_acting, r.default_partition, 'SELECT')) THEN
			BEGIN
				EXECUTE pg_catalog.format('SELECT count(*) FROM (SELECT FROM ONLY %s LIMIT 100001) x',
										  r.default_partition) INTO n;
				IF n > 0 THEN
					rows_text := pg_catalog.format('The default partition %s holds %s.', r.default_partition,
												   CASE WHEN n > 100000 THEN 'more than 100000 rows'
														WHEN n = 1 THEN '1 row' ELSE n || ' rows' END);
				END IF;
			EXCEPTION WHEN lock_not_available THEN
				rows_text := pg_catalog.format('The rows of the default partition %s were not counted: it is locked.',
											   r.default_partition);
			END;
		END IF;
		component := 'partition ' || r.parent::text;
		IF r.last_status = 'failed' THEN
			v_failed := v_failed + 1;
			status := 'error';
			detail := pg_catalog.concat_ws(' ', 'The last maintenance run failed: ' || r.last_message || '.', rows_text);
		ELSIF r.last_status = 'skipped' THEN
			v_warned := v_warned + 1;
			status := 'warning';
			detail := pg_catalog.concat_ws(' ', 'The last maintenance run skipped part of its work: ' || r.last_message || '.', rows_text);
		ELSIF r.last_run_at IS NULL AND r.created_at < pg_catalog.now() - interval '1 hour' THEN
			v_warned := v_warned + 1;
			status := 'warning';
			detail := pg_catalog.concat_ws(' ', 'Not maintained since it was put under management; check that the "partition.maintain" job runs.', rows_text);
		ELSIF r.last_run_at IS NOT NULL AND r.last_run_at < pg_catalog.now() - interval '1 day' THEN
			v_warned := v_warned + 1;
			status := 'warning';
			detail := pg_catalog.concat_ws(' ', 'Not maintained for more than a day; check that the "partition.maintain" job runs.', rows_text);
		ELSIF n > 0 AND r.last_run_at IS NOT NULL THEN
			v_warned := v_warned + 1;
			status := 'warning';
			detail := rows_text || ' Maintenance moves them into partitions; rows that stay have keys no partition may hold.';
		ELSIF rows_text IS NOT NULL THEN
			status := 'ok';
			detail := rows_text || ' The first maintenance run moves them into partitions.';
		ELSE
			CONTINUE;
		END IF;
		RETURN NEXT;
	END LOOP;

	component := 'partition maintenance';
	status := CASE WHEN v_failed > 0 THEN 'error' WHEN v_warned > 0 THEN 'warning' ELSE 'ok' END;
	detail := CASE WHEN v_sets = 0 THEN 'No partition set is managed.'
				   WHEN v_sets = 1 THEN '1 partition set is managed.'
				   ELSE pg_catalog.format('%s partition sets are managed.', v_sets) END
			  || CASE WHEN v_hidden = 1 THEN ' 1 of them is a table this role may not read.'
					  WHEN v_hidden > 1 THEN pg_catalog.format(' %s of them are tables this role may not read.', v_hidden)
					  ELSE '' END
			  || CASE WHEN v_failed > 0 THEN pg_catalog.format(' %s failed in their last maintenance run.', v_failed) ELSE '' END
			  || CASE WHEN v_warned > 0 THEN pg_catalog.format(' %s need attention.', v_warned) ELSE '' END;
	RETURN NEXT;
END
$$;

CREATE OR REPLACE FUNCTION opsdata._partition_plan(p_parent regclass, p_start_from text, p_maintain boolean,
	OUT step integer, OUT phase text, OUT action text, OUT partition text, OUT statements text[],
	OUT toplevel boolean, OUT replica boolean, OUT detail text)
RETURNS SETOF record
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
DECLARE
	s opsdata.partitions;
	v_schema name;
	v_relname name;
	v_space text := '';
	v_time boolean;
	v_iv interval;
	v_w bigint;
	v_max bigint;
	v_ret text;
	v_default regclass;
	v_pending regclass;
	v_pending_ut timestamptz;
	v_pending_ui bigint;
	v_drop_pending regclass;
	v_like text;
	v_cols text;
	v_tail text[];
	v_parts regclass[];
	v_lt timestamptz[];
	v_ut timestamptz[];
	v_li bigint[];
	v_ui bigint[];
	v_blt timestamptz[] := '{}';
	v_bli bigint[] := '{}';
	v_bn bigint[] := '{}';
	v_used boolean[] := '{}';
	v_nulls bigint := 0;
	v_now timestamptz := pg_catalog.now();
	v_highest bigint;
	v_cut timestamptz;
	v_cut_id bigint;
	v_lo timestamptz;
	v_hi timestamptz;
	v_lo_id bigint;
	v_hi_id numeric;
	v_end timestamptz;
	v_end_id bigint;
	v_names text[] := '{}';
	v_expired text[] := '{}';
	v_expired_ut timestamptz[] := '{}';
	v_expired_ui bigint[] := '{}';
	v_missing timestamptz[];
	v_missing_id bigint[];
	v_slots bigint := 0;
	v_limit integer;
	v_moves integer := 0;
	v_overlap boolean;
	v_bucket integer;
	r record;
	i integer;
BEGIN
	step := 0;
	SELECT * INTO s FROM opsdata.partitions WHERE parent = p_parent;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'relation "%" is not a managed partition set', p_parent
			USING ERRCODE = 'undefined_object',
				  HINT = 'Put it under management with opsdata.manage_partitions().';
	END IF;
	SELECT n.nspname, c.relname, t.spcname INTO v_schema, v_relname, v_space
	  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
	  LEFT JOIN pg_catalog.pg_tablespace t ON t.oid = c.reltablespace
	 WHERE c.oid = p_parent;
	v_space := CASE WHEN v_space IS NULL THEN '' ELSE pg_catalog.format(' TABLESPACE %I', v_space) END;
	v_time := s.control_type IN ('timestamptz'::regtype, 'date'::regtype);
	IF v_time THEN
		v_iv := s.part_interval::interval;
	ELSE
		v_w := s.part_interval::bigint;
		v_max := CASE s.control_type WHEN 'smallint'::regtype THEN 32767
									 WHEN 'integer'::regtype THEN 2147483647
									 ELSE 9223372036854775807 END;
	END IF;
	v_ret := coalesce(s.retention, CASE WHEN s.retention_setting IS NOT NULL
										THEN opsdata.setting(s.retention_setting) END);
	v_limit := opsdata.setting('partition.move_limit')::integer;

	SELECT NULLIF(p.partdefid, 0)::regclass INTO v_default
	  FROM pg_catalog.pg_partitioned_table p WHERE p.partrelid = p_parent;
	SELECT pg_catalog.array_agg(l.partition) FILTER (WHERE NOT l.detach_pending),
		   pg_catalog.array_agg(l.lower_time) FILTER (WHERE NOT l.detach_pending),
		   pg_catalog.array_agg(l.upper_time) FILTER (WHERE NOT l.detach_pending),
		   pg_catalog.array_agg(l.lower_id) FILTER (WHERE NOT l.detach_pending),
		   pg_catalog.array_agg(l.upper_id) FILTER (WHERE NOT l.detach_pending),
		   max(l.partition::oid) FILTER (WHERE l.detach_pending)::regclass,
		   max(l.upper_time) FILTER (WHERE l.detach_pending),
		   max(l.upper_id) FILTER (WHERE l.detach_pending)
	  INTO v_parts, v_lt, v_ut, v_li, v_ui, v_pending, v_pending_ut, v_pending_ui
	  FROM opsdata._partition_layout(p_parent) l
	 WHERE NOT l.is_default;
	v_parts := coalesce(v_parts, '{}');

	-- The highest id, read from the newest partition holding rows and from
	-- the default partition.
	IF NOT v_time THEN
		FOR r IN SELECT u.p, u.lo FROM ROWS FROM (pg_catalog.unnest(v_parts), pg_catalog.unnest(v_li)) u(p, lo) ORDER BY u.lo DESC NULLS LAST LOOP
			EXECUTE pg_catalog.format('SELECT max(%I)::bigint FROM ONLY %s', s.control_column, r.p) INTO v_highest;
			EXIT WHEN v_highest IS NOT NULL;
		END LOOP;
		IF v_default IS NOT NULL THEN
			EXECUTE pg_catalog.format('SELECT GREATEST(max(%I)::bigint, $1) FROM ONLY %s', s.control_column, v_default)
			   INTO v_highest USING v_highest;
		END IF;
	END IF;

	-- The retention cut-off: partitions whose upper bound is at or below it
	-- hold only rows older than the retention.  A retention longer than any
	-- that can be set (a value written around the checks) keeps everything
	-- rather than failing the set's maintenance.
	IF v_ret IS NOT NULL AND p_maintain THEN
		IF v_time AND v_ret::interval > interval '1000 years' THEN
			v_cut := NULL;
		ELSIF v_time THEN
			v_cut := ((v_now AT TIME ZONE 'UTC') - v_ret::interval) AT TIME ZONE 'UTC';
		ELSIF v_highest IS NOT NULL THEN
			v_cut_id := v_highest - v_ret::bigint;
		END IF;
	END IF;

	-- Rows in the default partition, by the slot they belong to.
	IF v_default IS NOT NULL AND EXISTS (SELECT FROM pg_catalog.pg_class WHERE oid = v_default AND relpages >= 0) THEN
		IF v_time THEN
			EXECUTE pg_catalog.format(
				'SELECT pg_catalog.array_agg(b ORDER BY b), pg_catalog.array_agg(n ORDER BY b),
						coalesce(sum(n) FILTER (WHERE b IS NULL), 0)::bigint
				   FROM (SELECT opsdata._partition_floor(%1$I, $1) AS b, count(*) AS n
						   FROM ONLY %2$s GROUP BY 1) g', s.control_column, v_default)
			   INTO v_blt, v_bn, v_nulls USING v_iv;
		ELSE
			EXECUTE pg_catalog.format(
				'SELECT pg_catalog.array_agg(b ORDER BY b), pg_catalog.array_agg(n ORDER BY b),
						coalesce(sum(n) FILTER (WHERE b IS NULL), 0)::bigint
				   FROM (SELECT %1$I::bigint - ((%1$I::bigint %% $1) + $1) %% $1 AS b, count(*) AS n
						   FROM ONLY %2$s GROUP BY 1) g', s.control_column, v_default)
			   INTO v_bli, v_bn, v_nulls USING v_w;
		END IF;
		v_blt := coalesce(v_blt, '{}');
		v_bli := coalesce(v_bli, '{}');
		v_bn := coalesce(v_bn, '{}');
		v_used := pg_catalog.array_fill(false, ARRAY[pg_catalog.cardinality(v_bn)]);
	END IF;

	-- Detaches left pending (a run interrupted between the two transactions
	-- of DETACH CONCURRENTLY, or a user's).  One to drop is dropped at the
	-- start of the retention phase; others are completed with FINALIZE.
	IF p_maintain AND v_pending IS NOT NULL THEN
		IF s.retention_mode = 'drop'
		   AND ((v_time AND v_cut IS NOT NULL AND v_pending_ut <= v_cut)
				OR (NOT v_time AND v_cut_id IS NOT NULL AND v_pending_ui <= v_cut_id)) THEN
			v_drop_pending := v_pending;
		ELSE
			step := step + 1; phase := 'finalize'; action := 'finalize'; partition := v_pending::text;
			statements := ARRAY[pg_catalog.format('ALTER TABLE %s DETACH PARTITION %s FINALIZE', p_parent, v_pending)];
			toplevel := false; replica := false; detail := 'interrupted detach completed';
			RETURN NEXT;
			IF (v_time AND v_cut IS NOT NULL AND v_pending_ut <= v_cut)
			   OR (NOT v_time AND v_cut_id IS NOT NULL AND v_pending_ui <= v_cut_id) THEN
				step := step + 1; phase := 'finalize'; action := 'archive';
				statements := (SELECT opsdata._partition_archive(n.nspname, c.relname, s.archive_schema)
								 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
								WHERE c.oid = v_pending);
				detail := 'older than the retention of ' || v_ret;
				RETURN NEXT;
			END IF;
		END IF;
	END IF;

	-- Create: every slot from the current one to premake ahead (from
	-- start_from on when given) that no partition covers yet.
	IF v_time THEN
		v_lo := opsdata._partition_floor(v_now, v_iv);
		v_end := opsdata._partition_add(v_lo, v_iv, s.premake + 1);
		IF p_start_from IS NOT NULL THEN
			v_lo := LEAST(v_lo, opsdata._partition_floor(
				CASE WHEN s.control_type = 'date'::regtype THEN p_start_from::date::timestamptz
					 ELSE p_start_from::timestamptz END, v_iv));
		END IF;
		SELECT pg_catalog.array_agg(g.lo ORDER BY g.lo), count(*) INTO v_missing, v_slots
		  FROM (SELECT t AT TIME ZONE 'UTC' AS lo, (t + v_iv) AT TIME ZONE 'UTC' AS hi
				  FROM pg_catalog.generate_series(v_lo AT TIME ZONE 'UTC', (v_end AT TIME ZONE 'UTC') - interval '1 microsecond', v_iv) t
				 LIMIT 10001) g
		 WHERE NOT EXISTS (SELECT FROM ROWS FROM (pg_catalog.unnest(v_lt), pg_catalog.unnest(v_ut)) u(lo, hi)
							WHERE (u.lo IS NULL OR u.lo < g.hi) AND (u.hi IS NULL OR u.hi > g.lo));
	ELSE
		v_highest := coalesce(v_highest,
							  CASE WHEN p_start_from IS NOT NULL THEN p_start_from::bigint END,
							  (SELECT min(x) FROM pg_catalog.unnest(v_li) x), 0);
		v_lo_id := v_highest - ((v_highest % v_w) + v_w) % v_w;
		v_end_id := LEAST(v_lo_id::numeric + (s.premake + 1) * v_w::numeric, v_max::numeric)::bigint;
		IF p_start_from IS NOT NULL THEN
			v_lo_id := LEAST(v_lo_id, p_start_from::bigint - ((p_start_from::bigint % v_w) + v_w) % v_w);
		END IF;
		SELECT pg_catalog.array_agg(g.lo ORDER BY g.lo), count(*) INTO v_missing_id, v_slots
		  FROM (SELECT t AS lo, t::numeric + v_w AS hi
				  FROM pg_catalog.generate_series(v_lo_id, v_end_id - 1, v_w) t
				 LIMIT 10001) g
		 WHERE NOT EXISTS (SELECT FROM ROWS FROM (pg_catalog.unnest(v_li), pg_catalog.unnest(v_ui)) u(lo, hi)
							WHERE (u.lo IS NULL OR u.lo < g.hi) AND (u.hi IS NULL OR u.hi > g.lo));
	END IF;
	IF v_slots > 10000 THEN
		RAISE EXCEPTION 'start_from "%" would make more than 10000 partitions', p_start_from
			USING ERRCODE = 'program_limit_exceeded',
				  HINT = 'Choose a later start_from, or a longer part_interval.';
	END IF;
	FOR i IN 1 .. coalesce(pg_catalog.cardinality(v_missing), pg_catalog.cardinality(v_missing_id), 0) LOOP
		IF v_time THEN
			v_lo := v_missing[i];
			v_hi := opsdata._partition_add(v_lo, v_iv, 1);
			v_bucket := pg_catalog.array_position(v_blt, v_lo);
		ELSE
			v_lo_id := v_missing_id[i];
			v_hi_id := v_lo_id::numeric + v_w;
			v_bucket := pg_catalog.array_position(v_bli, v_lo_id);
		END IF;
		IF v_like IS NULL THEN
			SELECT * INTO v_like, v_cols, v_tail FROM opsdata._partition_ddl_parts(p_parent);
		END IF;
		step := step + 1; phase := 'create';
		SELECT * INTO r FROM opsdata._partition_step(s, p_parent, v_schema, v_relname, v_space, v_like, v_cols,
													 v_tail, v_default, v_names, v_lo, v_hi, v_lo_id,
													 CASE WHEN v_hi_id > v_max THEN NULL ELSE v_hi_id::bigint END,
													 v_bucket IS NOT NULL);
		action := r.action; partition := r.partition; statements := r.statements;
		toplevel := false; replica := v_bucket IS NOT NULL; detail := r.detail;
		IF v_bucket IS NOT NULL THEN
			v_used[v_bucket] := true;
		END IF;
		v_names := v_names || partition;
		RETURN NEXT;
	END LOOP;

	IF NOT p_maintain THEN
		RETURN;
	END IF;

	-- Move: the other slots of the default partition's rows, oldest first.
	FOR i IN 1 .. pg_catalog.cardinality(v_bn) LOOP
		CONTINUE WHEN v_used[i];
		IF v_time THEN
			CONTINUE WHEN v_blt[i] IS NULL;
			v_lo := v_blt[i];
			v_hi := opsdata._partition_add(v_lo, v_iv, 1);
			v_overlap := EXISTS (SELECT FROM ROWS FROM (pg_catalog.unnest(v_lt), pg_catalog.unnest(v_ut)) u(lo, hi)
								  WHERE (u.lo IS NULL OR u.lo < v_hi) AND (u.hi IS NULL OR u.hi > v_lo));
		ELSE
			CONTINUE WHEN v_bli[i] IS NULL;
			v_lo_id := v_bli[i];
			v_hi_id := v_lo_id::numeric + v_w;
			v_overlap := EXISTS (SELECT FROM ROWS FROM (pg_catalog.unnest(v_li), pg_catalog.unnest(v_ui)) u(lo, hi)
								  WHERE (u.lo IS NULL OR u.lo < v_hi_id) AND (u.hi IS NULL OR u.hi > v_lo_id));
		END IF;
		step := step + 1; phase := 'move'; toplevel := false;
		IF v_overlap THEN
			action := 'note'; partition := NULL; statements := NULL; replica := false;
			detail := pg_catalog.format('%s rows of the default partition fall in %s .. %s, which an existing partition overlaps; they stay',
										v_bn[i],
										CASE WHEN v_time THEN v_lo::text ELSE v_lo_id::text END,
										CASE WHEN v_time THEN v_hi::text ELSE v_hi_id::text END);
			RETURN NEXT;
			CONTINUE;
		END IF;
		IF v_moves >= v_limit THEN
			action := 'note'; partition := NULL; statements := NULL; replica := false;
			detail := pg_catalog.format('rows of %s more slots stay in the default partition until the next run (partition.move_limit is %s)',
										(SELECT count(*) FROM pg_catalog.generate_subscripts(v_bn, 1) j
										  WHERE j >= i AND NOT v_used[j]
											AND (v_blt[j] IS NOT NULL OR v_bli[j] IS NOT NULL)), v_limit);
			RETURN NEXT;
			EXIT;
		END IF;
		v_moves := v_moves + 1;
		IF v_like IS NULL THEN
			SELECT * INTO v_like, v_cols, v_tail FROM opsdata._partition_ddl_parts(p_parent);
		END IF;
		SELECT * INTO r FROM opsdata._partition_step(s, p_parent, v_schema, v_relname, v_space, v_like, v_cols,
													 v_tail, v_default, v_names, v_lo, v_hi, v_lo_id,
													 CASE WHEN v_hi_id > v_max THEN NULL ELSE v_hi_id::bigint END, true);
		action := r.action; partition := r.partition; statements := r.statements; replica := true;
		detail := r.detail;
		v_names := v_names || partition;
		RETURN NEXT;
		IF (v_time AND v_cut IS NOT NULL AND v_hi <= v_cut)
		   OR (NOT v_time AND v_cut_id IS NOT NULL AND v_hi_id <= v_cut_id) THEN
			v_expired := v_expired || r.relname::text;
			v_expired_ut := v_expired_ut || v_hi;
			v_expired_ui := v_expired_ui || v_hi_id::bigint;
		END IF;
	END LOOP;
	IF v_nulls > 0 THEN
		step := step + 1; phase := 'move'; action := 'note'; partition := NULL; statements := NULL;
		toplevel := false; replica := false;
		detail := pg_catalog.format('%s with a NULL "%s" %s in the default partition',
									CASE WHEN v_nulls = 1 THEN '1 row' ELSE v_nulls || ' rows' END, s.control_column,
									CASE WHEN v_nulls = 1 THEN 'stays' ELSE 'stay' END);
		RETURN NEXT;
	END IF;

	-- Retention: partitions wholly older than the cut-off, oldest first.
	IF v_cut IS NULL AND v_cut_id IS NULL THEN
		RETURN;
	END IF;
	IF v_drop_pending IS NOT NULL THEN
		-- DROP TABLE takes ACCESS EXCLUSIVE on the parent, under the step's
		-- lock_timeout, but needs no FINALIZE (which would wait for every
		-- older snapshot, the caller's included).
		step := step + 1; phase := 'retention'; action := 'drop'; partition := v_drop_pending::text;
		statements := ARRAY[pg_catalog.format('DROP TABLE %s', v_drop_pending)];
		toplevel := false; replica := false;
		detail := 'older than the retention of ' || v_ret || ', its detach interrupted';
		RETURN NEXT;
	ELSIF v_default IS NULL AND v_pending IS NOT NULL THEN
		-- A table has at most one detach pending; the next one waits.
		step := step + 1; phase := 'retention'; action := 'note'; partition := NULL; statements := NULL;
		toplevel := false; replica := false;
		detail := pg_catalog.format('retention waits for the pending detach of %s', v_pending);
		RETURN NEXT;
		RETURN;
	END IF;
	FOR r IN
		SELECT x.p, x.nspname, x.relname FROM (
			SELECT u.p::text AS p, n.nspname AS nspname, c.relname AS relname, u.ut, u.ui
			  FROM ROWS FROM (pg_catalog.unnest(v_parts), pg_catalog.unnest(v_ut), pg_catalog.unnest(v_ui)) u(p, ut, ui)
			  JOIN pg_catalog.pg_class c ON c.oid = u.p
			  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
			 WHERE (v_time AND u.ut <= v_cut) OR (NOT v_time AND u.ui <= v_cut_id)
			UNION ALL
			SELECT pg_catalog.format('%I.%I', v_schema, e.name), v_schema, e.name, e.ut, e.ui
			  FROM ROWS FROM (pg_catalog.unnest(v_expired), pg_catalog.unnest(v_expired_ut), pg_catalog.unnest(v_expired_ui)) e(name, ut, ui)) x
		 ORDER BY x.ut, x.ui
	LOOP
		phase := 'retention'; partition := r.p; replica := false;
		detail := 'older than the retention of ' || v_ret;
		IF v_default IS NULL THEN
			-- No default partition: DETACH CONCURRENTLY, which never blocks
			-- the parent's readers and writers.  It cannot run in a
			-- transaction block; the second statement completes it when it
			-- was interrupted after its first transaction.
			step := step + 1; action := 'detach'; toplevel := true;
			statements := ARRAY[pg_catalog.format('ALTER TABLE %s DETACH PARTITION %s CONCURRENTLY', p_parent, r.p),
								pg_catalog.format('ALTER TABLE %s DETACH PARTITION %s FINALIZE', p_parent, r.p)];
			RETURN NEXT;
			step := step + 1; toplevel := false;
			IF s.retention_mode = 'drop' THEN
				action := 'drop';
				statements := ARRAY[pg_catalog.format('DROP TABLE %s', r.p)];
			ELSE
				action := 'archive';
				statements := opsdata._partition_archive(r.nspname, r.relname, s.archive_schema);
			END IF;
			RETURN NEXT;
		ELSE
			-- With a default partition PostgreSQL allows only the plain
			-- forms, which lock the parent (and the default partition) in
			-- ACCESS EXCLUSIVE mode: one short transaction, under the
			-- step's lock_timeout.
			step := step + 1; toplevel := false;
			IF s.retention_mode = 'drop' THEN
				action := 'drop';
				statements := ARRAY[pg_catalog.format('DROP TABLE %s', r.p)];
			ELSE
				action := 'archive';
				statements := pg_catalog.format('ALTER TABLE %s DETACH PARTITION %s', p_parent, r.p)
							  || opsdata._partition_archive(r.nspname, r.relname, s.archive_schema);
			END IF;
			RETURN NEXT;
		END IF;
	END LOOP;
END
$$;

--
-- Jobs: max_runtime is at least 1 millisecond (a shorter one meant no
-- limit); runs outlive their job, with its name.
--
UPDATE opsdata.jobs
   SET max_runtime = CASE WHEN max_runtime < interval '0.5 milliseconds' THEN NULL ELSE interval '1 millisecond' END
 WHERE max_runtime < interval '1 millisecond';
ALTER TABLE opsdata.jobs DROP CONSTRAINT jobs_max_runtime_check,
	ADD CONSTRAINT jobs_max_runtime_check CHECK (max_runtime >= interval '1 millisecond');
COMMENT ON COLUMN opsdata.jobs.max_runtime IS 'A run lasting longer is cancelled (at least 1 millisecond); NULL for no limit';

ALTER TABLE opsdata.job_runs ADD COLUMN job_name text;
UPDATE opsdata.job_runs r SET job_name = j.name FROM opsdata.jobs j WHERE j.job_id = r.job_id;
COMMENT ON TABLE opsdata.job_runs IS 'One row per run of a job, kept for a bounded time (settings worker.job_history_*), also after the job is removed';
COMMENT ON COLUMN opsdata.job_runs.job_name IS 'Name of the job when it ran: runs outlive a removed job';

CREATE OR REPLACE FUNCTION opsdata._job_start(job bigint, manual boolean, pid integer,
	OUT run_id bigint, OUT name text, OUT command text, OUT run_as name,
	OUT builtin boolean, OUT max_runtime interval, OUT attempt integer)
RETURNS SETOF record
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j opsdata.jobs;
	t timestamptz := clock_timestamp();
	k text;
	due timestamptz;
	a integer := 1;
BEGIN
	-- Nobody else holds the job's lock, so a run still marked running was
	-- interrupted: its process ended before recording the outcome.
	PERFORM opsdata._job_finish(r.run_id, 'crashed', NULL,
			'The run was interrupted: the process running it ended before the run finished.')
	   FROM opsdata.job_runs r WHERE r.job_id = _job_start.job AND r.status = 'running';

	SELECT * INTO j FROM opsdata.jobs WHERE job_id = _job_start.job FOR UPDATE;
	IF NOT FOUND THEN
		IF manual THEN
			RAISE EXCEPTION 'job % does not exist', job
				USING ERRCODE = 'undefined_object',
					  HINT = 'The jobs are listed in opsdata.jobs.';
		END IF;
		RETURN;
	END IF;

	IF manual THEN
		k := 'manual';
	ELSIF j.paused THEN
		RETURN;
	ELSIF j.next_run <= t THEN
		k := 'scheduled';
		due := j.next_run;
		UPDATE opsdata.jobs SET next_run = opsdata._job_next_run(j.next_run, j.schedule, t), retry_at = NULL
		 WHERE job_id = j.job_id;
	ELSIF j.retry_at <= t THEN
		k := 'retry';
		due := j.retry_at;
		SELECT r.attempt + 1 INTO a FROM opsdata.job_runs r
		 WHERE r.job_id = j.job_id ORDER BY r.started_at DESC, r.run_id DESC LIMIT 1;
		a := coalesce(a, 2);
		UPDATE opsdata.jobs SET retry_at = NULL WHERE job_id = j.job_id;
	ELSE
		RETURN;
	END IF;

	INSERT INTO opsdata.job_runs (job_id, kind, due_at, started_at, attempt, pid, job_name)
		 VALUES (j.job_id, k, due, t, a, _job_start.pid, j.name)
	  RETURNING job_runs.run_id INTO run_id;
	name := j.name;
	command := j.command;
	run_as := j.run_as;
	builtin := j.builtin;
	max_runtime := j.max_runtime;
	attempt := a;
	RETURN NEXT;
END
$$;

CREATE OR REPLACE FUNCTION opsdata._job_check(name text, command text, schedule interval, max_runtime interval,
	max_retries integer, retry_delay interval)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF name IS NOT NULL AND btrim(name) = '' THEN
		RAISE EXCEPTION 'job name must not be empty' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF command IS NOT NULL THEN
		IF btrim(command) = '' THEN
			RAISE EXCEPTION 'job command must not be empty' USING ERRCODE = 'invalid_parameter_value',
				HINT = 'A command is an SQL statement or a procedure call, such as CALL app.cleanup().';
		END IF;
		PERFORM opsdata._worker_check_command(command);
	END IF;
	IF schedule < interval '1 second' THEN
		RAISE EXCEPTION 'invalid job schedule "%"', schedule USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'The schedule is the interval between two starts and must be at least 1 second.';
	END IF;
	IF max_runtime < interval '0' THEN
		RAISE EXCEPTION 'invalid job max_runtime "%"', max_runtime USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'max_runtime must be a positive interval, or NULL for no limit.';
	END IF;
	-- A limit is counted in whole milliseconds: a shorter one is no limit.
	IF max_runtime > interval '0' AND max_runtime < interval '1 millisecond' THEN
		RAISE EXCEPTION 'invalid job max_runtime "%"', max_runtime USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'max_runtime must be at least 1 millisecond.',
			HINT = 'Give 0 or NULL for no limit.';
	END IF;
	IF max_retries < 0 THEN
		RAISE EXCEPTION 'invalid job max_retries %', max_retries USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'max_retries must be zero or more.';
	END IF;
	IF retry_delay <= interval '0' THEN
		RAISE EXCEPTION 'invalid job retry_delay "%"', retry_delay USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'retry_delay must be a positive interval.';
	END IF;
END
$$;

CREATE OR REPLACE FUNCTION opsdata.add_job(name text, command text, schedule interval,
	start_at timestamptz DEFAULT NULL, paused boolean DEFAULT false, max_runtime interval DEFAULT NULL,
	max_retries integer DEFAULT 3, retry_delay interval DEFAULT '10 seconds',
	run_as name DEFAULT NULL, comment text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	id bigint;
BEGIN
	IF name IS NULL OR command IS NULL OR schedule IS NULL THEN
		RAISE EXCEPTION 'job name, command and schedule must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF paused IS NULL OR max_retries IS NULL OR retry_delay IS NULL THEN
		RAISE EXCEPTION 'paused, max_retries and retry_delay must not be null'
			USING ERRCODE = 'null_value_not_allowed',
				  HINT = 'Leave them out to use their defaults.';
	END IF;
	PERFORM opsdata._job_check(name, command, schedule, max_runtime, max_retries, retry_delay);
	IF max_runtime = interval '0' THEN
		max_runtime := NULL;
	END IF;
	run_as := coalesce(run_as, opsdata._worker_acting_role());
	PERFORM opsdata._job_check_role(run_as, 'add');
	IF EXISTS (SELECT FROM opsdata.jobs j WHERE j.name = add_job.name) THEN
		RAISE EXCEPTION 'job "%" already exists', name USING ERRCODE = 'duplicate_object';
	END IF;
	INSERT INTO opsdata.jobs (name, command, schedule, paused, max_runtime, max_retries, retry_delay,
							  run_as, next_run, comment)
		 VALUES (name, command, schedule, paused, max_runtime, max_retries, retry_delay,
				 run_as, coalesce(start_at, now()), comment)
	  RETURNING job_id INTO id;
	-- Runs outlive their job: an identifier that runs of a removed job
	-- hold is never given to a new job (it can only come back when the
	-- sequence was set back).
	IF EXISTS (SELECT FROM opsdata.job_runs r WHERE r.job_id = id) THEN
		RAISE EXCEPTION 'job identifier % is already used by the runs of a removed job', id
			USING ERRCODE = 'unique_violation',
				  DETAIL = 'The sequence opsdata.jobs_job_id_seq was set back.',
				  HINT = 'Set the sequence past the highest job_id of opsdata.jobs and opsdata.job_runs.';
	END IF;
	RETURN id;
END
$$;

CREATE OR REPLACE FUNCTION opsdata.remove_job(job bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j opsdata.jobs := opsdata._job_get(job);
BEGIN
	IF j.builtin THEN
		RAISE EXCEPTION 'cannot remove built-in job "%"', j.name
			USING ERRCODE = 'insufficient_privilege',
				  HINT = 'Pause it with opsdata.pause_job() instead.';
	END IF;
	-- The runs stay, as evidence of what ran, until the history's
	-- retention removes them.
	DELETE FROM opsdata.jobs WHERE job_id = j.job_id;
END
$$;

COMMENT ON FUNCTION opsdata.remove_job(bigint) IS 'Remove a job; its runs stay in opsdata.job_runs until the worker.job_history_* retention removes them; a run in progress finishes';

-- Audit entries made while a dump is being restored are held until the
-- restore has ended.
CREATE TABLE audit.held_entries (
	ts					timestamptz NOT NULL,
	database			text NOT NULL,
	username			text NOT NULL,
	current_user_name	text NOT NULL,
	application			text,
	client_addr			inet,
	backend_pid			integer NOT NULL,
	xid					xid8,
	class				text NOT NULL
						CHECK (class IN ('read', 'write', 'function', 'role', 'ddl', 'misc', 'login')),
	command				text NOT NULL,
	objects				text[],
	privileges			text[],
	rows				bigint,
	duration			interval,
	outcome				text NOT NULL
						CHECK (outcome IN ('ok', 'error', 'rolled back', 'denied', 'failed')),
	sqlstate			text,
	statement_text		text,
	params				text
);

COMMENT ON TABLE audit.held_entries IS 'Audit entries made while a dump was being restored into the database; they move into audit.entries once the restore has ended';
COMMENT ON COLUMN audit.held_entries.ts IS 'When the statement started';
COMMENT ON COLUMN audit.held_entries.database IS 'Database the session was connected to';
COMMENT ON COLUMN audit.held_entries.username IS 'Session user (who logged in)';
COMMENT ON COLUMN audit.held_entries.current_user_name IS 'Current user when the statement ran';
COMMENT ON COLUMN audit.held_entries.application IS 'application_name of the session';
COMMENT ON COLUMN audit.held_entries.client_addr IS 'Client address; NULL for Unix-domain sockets';
COMMENT ON COLUMN audit.held_entries.backend_pid IS 'Process ID of the backend';
COMMENT ON COLUMN audit.held_entries.xid IS 'Top-level transaction ID, when one was assigned';
COMMENT ON COLUMN audit.held_entries.class IS 'read, write, function, role, ddl, misc or login';
COMMENT ON COLUMN audit.held_entries.command IS 'Command tag, e.g. INSERT or CREATE TABLE';
COMMENT ON COLUMN audit.held_entries.objects IS 'Qualified names of the objects the statement touched';
COMMENT ON COLUMN audit.held_entries.privileges IS 'Privilege used on each object, in the order of objects';
COMMENT ON COLUMN audit.held_entries.rows IS 'Rows processed';
COMMENT ON COLUMN audit.held_entries.duration IS 'How long the statement ran';
COMMENT ON COLUMN audit.held_entries.outcome IS 'ok, error, denied, rolled back or failed';
COMMENT ON COLUMN audit.held_entries.sqlstate IS 'SQLSTATE of the error, for outcomes other than ok';
COMMENT ON COLUMN audit.held_entries.statement_text IS 'The statement, with secrets redacted';
COMMENT ON COLUMN audit.held_entries.params IS 'Bind parameters, when their capture is on';

SELECT pg_catalog.pg_extension_config_dump('audit.held_entries', '');
GRANT SELECT ON audit.held_entries TO opsdata_auditor;
SELECT opsdata._guard_tables();

-- Whether a restore is under way, and the checks of a restored database.
CREATE FUNCTION opsdata._restore_under_way()
RETURNS boolean
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'worker_restore_status';

COMMENT ON FUNCTION opsdata._restore_under_way() IS 'Internal: whether a dump is being restored into this database (jobs wait and audit entries are held meanwhile)';
REVOKE ALL ON FUNCTION opsdata._restore_under_way() FROM PUBLIC;
CREATE FUNCTION opsdata.check_restore()
RETURNS TABLE (check_name text, status text, detail text)
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r record;
	n bigint;
	top bigint;
	last bigint;
	called boolean;
	newest timestamptz;
	nseq integer := 0;
	behind text[] := '{}';
	paused text[];
	parts bigint;
	def oid;
	restoring boolean := opsdata._restore_under_way();
BEGIN
	check_name := 'restore';
	IF restoring THEN
		status := 'warning';
		detail := 'A restore into this database is under way, or ended seconds ago: jobs wait and audit entries are held until it is over. Run the checks again then.';
	ELSE
		status := 'ok';
		detail := 'No restore is under way in this database.';
	END IF;
	RETURN NEXT;

	-- Entries made during the restore join the trail once it has ended.
	check_name := 'held audit entries';
	SELECT count(*) INTO n FROM audit.held_entries;
	IF n = 0 THEN
		status := 'ok';
		detail := 'No audit entry is held.';
	ELSIF restoring THEN
		status := 'ok';
		detail := pg_catalog.format('%s audit entries made during the restore wait in audit.held_entries until it has ended.', n);
	ELSE
		status := 'warning';
		detail := pg_catalog.format('%s audit entries made during a restore that has ended still wait in audit.held_entries: the scheduler of this database moves them into audit.entries (see its health row), and so does audit.flush().', n);
	END IF;
	RETURN NEXT;

	-- Every sequence of the extension's tables is past the values its
	-- column holds, so the next row gets a new identifier.
	FOR r IN
		SELECT s.oid::regclass::text AS seq, c.oid::regclass::text AS tab, a.attname
		  FROM pg_catalog.pg_depend d
		  JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S'
		  JOIN pg_catalog.pg_class c ON c.oid = d.refobjid
		  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.refobjsubid
		  JOIN pg_catalog.pg_namespace ns ON ns.oid = c.relnamespace
		 WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
		   AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
		   AND d.deptype IN ('a', 'i')
		   AND ns.nspname IN ('audit', 'learning', 'metrics', 'opsdata')
		 ORDER BY 1
	LOOP
		EXECUTE pg_catalog.format('SELECT pg_catalog.max(%I)::bigint FROM %s', r.attname, r.tab) INTO top;
		EXECUTE pg_catalog.format('SELECT last_value, is_called FROM %s', r.seq) INTO last, called;
		nseq := nseq + 1;
		IF top IS NOT NULL AND (last < top OR last = top AND NOT called) THEN
			behind := behind || pg_catalog.format('%s gives %s next, but %s.%s holds values up to %s',
												  r.seq, CASE WHEN called THEN last + 1 ELSE last END,
												  r.tab, r.attname, top);
		END IF;
	END LOOP;
	check_name := 'sequences';
	IF pg_catalog.cardinality(behind) = 0 THEN
		status := 'ok';
		detail := pg_catalog.format('The %s sequences of pg_opsdata''s tables are past the values of their columns.', nseq);
	ELSE
		status := 'error';
		detail := pg_catalog.format('%s: new rows would take identifiers that exist. Set each sequence past them with setval().',
									pg_catalog.array_to_string(behind, '; '));
	END IF;
	RETURN NEXT;

	-- Partition sets: still there, and what waits in their default
	-- partition for maintenance.
	FOR r IN
		SELECT p.parent, p.builtin, p.last_status, p.last_message
		  FROM opsdata.partitions p ORDER BY p.parent::text
	LOOP
		check_name := pg_catalog.format('partition set %s', r.parent);
		SELECT pg_catalog.count(*),
			   pg_catalog.max(c.oid) FILTER (WHERE pg_catalog.pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT')
		  INTO parts, def
		  FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
		 WHERE i.inhparent = r.parent;
		n := 0;
		IF def IS NOT NULL THEN
			EXECUTE pg_catalog.format('SELECT pg_catalog.count(*) FROM ONLY %s', def::regclass) INTO n;
			parts := parts - 1;
		END IF;
		status := CASE WHEN r.last_status = 'error' THEN 'warning' ELSE 'ok' END;
		detail := pg_catalog.format('%s partitions%s; last maintenance: %s%s.', parts,
									CASE WHEN def IS NOT NULL THEN pg_catalog.format(' and a default one holding %s rows', n) ELSE '' END,
									coalesce(r.last_status, 'never'),
									CASE WHEN r.last_status = 'error' THEN ': ' || r.last_message ELSE '' END);
		RETURN NEXT;
	END LOOP;

	-- Built-in jobs paused in the backup stay paused.
	check_name := 'jobs';
	SELECT pg_catalog.array_agg(j.name ORDER BY j.name) INTO paused FROM opsdata.jobs j WHERE j.builtin AND j.paused;
	IF paused IS NULL THEN
		status := 'ok';
		detail := pg_catalog.format('%s jobs, no built-in job paused.', (SELECT pg_catalog.count(*) FROM opsdata.jobs));
	ELSE
		status := 'warning';
		detail := pg_catalog.format('The built-in jobs %s are paused (as they were in the backup): resume them with opsdata.resume_job().',
									pg_catalog.array_to_string(paused, ', '));
	END IF;
	RETURN NEXT;

	-- Work the restored data brought along.
	check_name := 'pending work';
	status := 'ok';
	detail := pg_catalog.format('%s feedback changes wait for tuning, %s sketches of new points for the rollup job.',
								(SELECT pg_catalog.count(*) FROM learning.feedback_changes),
								(SELECT pg_catalog.count(*) FROM metrics.rollup_queue));
	RETURN NEXT;

	-- Rows of every table, to compare with the source of the backup.
	FOR r IN
		SELECT DISTINCT coalesce(i.inhparent, c.oid)::regclass::text AS tab
		  FROM pg_catalog.pg_extension e
		 CROSS JOIN LATERAL pg_catalog.unnest(e.extconfig) AS cfg(relid)
		  JOIN pg_catalog.pg_class c ON c.oid = cfg.relid AND c.relkind = 'r'
		  LEFT JOIN pg_catalog.pg_inherits i ON i.inhrelid = c.oid AND c.relispartition
		 WHERE e.extname = 'pg_opsdata'
		UNION
		SELECT p.parent::text FROM opsdata.partitions p WHERE NOT p.builtin
		 ORDER BY 1
	LOOP
		check_name := pg_catalog.format('rows of %s', r.tab);
		status := 'ok';
		IF EXISTS (SELECT FROM pg_catalog.pg_attribute a
					WHERE a.attrelid = r.tab::regclass AND a.attname = 'ts' AND NOT a.attisdropped
					  AND a.atttypid = 'pg_catalog.timestamptz'::pg_catalog.regtype) THEN
			EXECUTE pg_catalog.format('SELECT pg_catalog.count(*), pg_catalog.max(ts) FROM %s', r.tab) INTO n, newest;
			detail := pg_catalog.format('%s rows%s.', n,
										CASE WHEN newest IS NULL THEN '' ELSE ', the newest of ' || newest END);
		ELSE
			EXECUTE pg_catalog.format('SELECT pg_catalog.count(*) FROM %s', r.tab) INTO n;
			detail := pg_catalog.format('%s rows.', n);
		END IF;
		RETURN NEXT;
	END LOOP;

	-- What health finds wrong.
	FOR r IN SELECT h.component, h.status, h.detail FROM opsdata.health() h WHERE h.status IN ('warning', 'error') LOOP
		check_name := 'health: ' || r.component;
		status := r.status;
		detail := r.detail;
		RETURN NEXT;
	END LOOP;
END
$$;

COMMENT ON FUNCTION opsdata.check_restore() IS 'What a restore test checks once a backup is restored: the restore is over, no audit entry is held, sequences are past their tables'' values, partition sets, paused built-in jobs, pending work, the rows of every table (to compare with the source) and health''s warnings and errors';

REVOKE ALL ON FUNCTION opsdata.check_restore() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION opsdata.check_restore() TO opsdata_admin, opsdata_auditor;

-- A built-in job restored from a dump keeps the time it was created.
CREATE OR REPLACE FUNCTION opsdata._jobs_merge_builtin()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	existing bigint;
BEGIN
	IF NOT NEW.builtin THEN
		RETURN NEW;
	END IF;
	-- A dump of 0.1 has built-in jobs under the names they had then.
	NEW.name := CASE
		WHEN NEW.name = 'prune job runs' THEN 'worker.prune_runs'
		WHEN NEW.name = 'partition maintenance' THEN 'partition.maintain'
		WHEN NEW.name = 'audit index closed partitions' THEN 'audit.index_closed_partitions'
		ELSE NEW.name END;
	SELECT j.job_id INTO existing FROM opsdata.jobs j WHERE j.name = NEW.name AND j.builtin;
	IF NOT FOUND THEN
		RETURN NEW;
	END IF;
	-- Keep the restored identifier when it is free, so that restored runs
	-- point at their job.
	IF NEW.job_id <> existing AND NOT EXISTS (SELECT FROM opsdata.jobs o WHERE o.job_id = NEW.job_id) THEN
		UPDATE opsdata.job_runs SET job_id = NEW.job_id WHERE job_id = existing;
		UPDATE opsdata.jobs SET job_id = NEW.job_id WHERE job_id = existing;
		existing := NEW.job_id;
	END IF;
	UPDATE opsdata.jobs j
	   SET schedule = NEW.schedule, paused = NEW.paused, max_runtime = NEW.max_runtime,
		   max_retries = NEW.max_retries, retry_delay = NEW.retry_delay,
		   next_run = NEW.next_run, retry_at = NEW.retry_at, failures = NEW.failures,
		   comment = NEW.comment, created_at = NEW.created_at
	 WHERE j.job_id = existing;
	RETURN NULL;
END
$$;

-- The oldest objects the library works with, and health saying when this
-- database's are older.
CREATE FUNCTION opsdata._oldest_schema()
RETURNS text
LANGUAGE c STABLE STRICT
AS 'MODULE_PATHNAME', 'opsdata_oldest_schema';

COMMENT ON FUNCTION opsdata._oldest_schema() IS 'Internal: the oldest version of pg_opsdata''s objects the loaded library works with';
REVOKE ALL ON FUNCTION opsdata._oldest_schema() FROM PUBLIC;

CREATE OR REPLACE FUNCTION opsdata._health_extension(OUT component text, OUT status text, OUT detail text)
RETURNS SETOF record
LANGUAGE sql STABLE
AS $$
	SELECT 'extension',
		   CASE WHEN e.extversion = opsdata._library_version() THEN 'ok' ELSE 'error' END,
		   CASE WHEN e.extversion = opsdata._library_version()
				THEN pg_catalog.format('pg_opsdata %s.', e.extversion)
				WHEN pg_catalog.string_to_array(e.extversion, '.')::integer[]
					 < pg_catalog.string_to_array(opsdata._oldest_schema(), '.')::integer[]
				THEN pg_catalog.format('The loaded library is version %s and works with the objects of pg_opsdata %s or later, but this database has version %s: audited statements and the jobs of this database are refused. Run ALTER EXTENSION pg_opsdata UPDATE.',
									   opsdata._library_version(), opsdata._oldest_schema(), e.extversion)
				ELSE pg_catalog.format('The loaded library is version %s but the extension is version %s. Run ALTER EXTENSION pg_opsdata UPDATE, or restart the server if the library was upgraded.',
									   opsdata._library_version(), e.extversion)
		   END
	  FROM pg_catalog.pg_extension e
	 WHERE e.extname = 'pg_opsdata'
$$;

-- Audit: the processing queues replace the unused table audit.queue
-- (src/audit/pqueue.sql).
ALTER EXTENSION pg_opsdata DROP TABLE audit.queue;
ALTER EXTENSION pg_opsdata DROP SEQUENCE audit.queue_item_id_seq;
DROP TABLE audit.queue;

-- Audit: processing queues.
--
-- A queue holds items for consumers: items the application enqueues
-- (audit.enqueue), and, for a subscription, the audit entries that match
-- its filter, enqueued as they are written.  Consumers lease items with
-- audit.read() and settle them with audit.ack(), audit.nack() and
-- audit.extend() (src/audit/pqueue_*.c; the design is in the banner of
-- pqueue_read.c).  Every table is written through these functions only.

CREATE TABLE audit.queues (
	queue_id		integer PRIMARY KEY CHECK (queue_id BETWEEN 1 AND 32767),
	name			text NOT NULL UNIQUE CHECK (name <> '' AND pg_catalog.length(name) <= 63),
	kind			text NOT NULL DEFAULT 'application' CHECK (kind IN ('application', 'subscription')),
	max_deliveries	integer NOT NULL DEFAULT 5 CHECK (max_deliveries BETWEEN 1 AND 1000),
	retention		interval CHECK (retention > interval '0'),
	head			bigint NOT NULL DEFAULT 0,
	head_candidate	bigint,
	head_fence		xid8,
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	created_by		name NOT NULL DEFAULT SESSION_USER,
	comment			text
);

COMMENT ON TABLE audit.queues IS 'Processing queues: application queues and the queues of audit subscriptions';
COMMENT ON COLUMN audit.queues.queue_id IS 'Queue identifier (1 to 32767); the high bits of the ids of its items';
COMMENT ON COLUMN audit.queues.name IS 'Queue name, as given to audit.enqueue() and audit.read()';
COMMENT ON COLUMN audit.queues.kind IS 'application (items come from audit.enqueue()) or subscription (items are matching audit entries)';
COMMENT ON COLUMN audit.queues.max_deliveries IS 'Deliveries after which an item that is still not acknowledged becomes a dead letter';
COMMENT ON COLUMN audit.queues.retention IS 'How long acknowledged items are kept; NULL for the setting audit.queue_retention';
COMMENT ON COLUMN audit.queues.head IS 'Every item of the queue with a lower id is acknowledged (kept by the upkeep job)';
COMMENT ON COLUMN audit.queues.head_candidate IS 'Internal: the next head, taken once every transaction older than head_fence has ended';
COMMENT ON COLUMN audit.queues.head_fence IS 'Internal: first transaction that was not yet started when head_candidate was found';
COMMENT ON COLUMN audit.queues.created_at IS 'When the queue was made';
COMMENT ON COLUMN audit.queues.created_by IS 'Who made it';
COMMENT ON COLUMN audit.queues.comment IS 'Free text';

CREATE TABLE audit.subscriptions (
	queue_id		integer PRIMARY KEY REFERENCES audit.queues ON DELETE CASCADE,
	classes			text[],
	commands		text[],
	outcomes		text[],
	objects			text[],
	roles			name[],
	predicate		text
);

COMMENT ON TABLE audit.subscriptions IS 'Filters of audit subscriptions: entries that pass every non-NULL condition are enqueued into the queue';
COMMENT ON COLUMN audit.subscriptions.queue_id IS 'The queue the matching entries go to';
COMMENT ON COLUMN audit.subscriptions.classes IS 'Entry classes that match (read, write, function, role, ddl, misc, login)';
COMMENT ON COLUMN audit.subscriptions.commands IS 'Command tags that match, e.g. DROP TABLE';
COMMENT ON COLUMN audit.subscriptions.outcomes IS 'Outcomes that match (ok, error, rolled back, denied, failed)';
COMMENT ON COLUMN audit.subscriptions.objects IS 'Objects that match, as entries name them; "schema.*" matches every object of a schema';
COMMENT ON COLUMN audit.subscriptions.roles IS 'Roles that match, as the session user or the current user of an entry';
COMMENT ON COLUMN audit.subscriptions.predicate IS 'Boolean SQL expression over the columns of audit.trail, built-in immutable functions and operators only';

CREATE SEQUENCE audit.queue_items_seq AS bigint MAXVALUE 281474976710655;

CREATE TABLE audit.queue_items (
	item_id			bigint PRIMARY KEY,
	queue_id		integer NOT NULL,
	deliveries		integer NOT NULL DEFAULT 0,
	leased			boolean NOT NULL DEFAULT false,
	enqueued_at		timestamptz NOT NULL,
	visible_at		timestamptz NOT NULL,
	acked_at		timestamptz,
	entry_id		bigint,
	payload			jsonb
) WITH (fillfactor = 25);

-- The sequence gives the low 48 bits of item_id (pqueue_store.c).
ALTER SEQUENCE audit.queue_items_seq OWNED BY audit.queue_items.item_id;

COMMENT ON TABLE audit.queue_items IS 'Items of the processing queues, waiting, leased, and acknowledged ones until their retention';
COMMENT ON COLUMN audit.queue_items.item_id IS 'Item identifier: the queue_id in the high 16 bits, then a number that grows in enqueue order';
COMMENT ON COLUMN audit.queue_items.queue_id IS 'Queue of the item';
COMMENT ON COLUMN audit.queue_items.deliveries IS 'How many times audit.read() handed the item out';
COMMENT ON COLUMN audit.queue_items.leased IS 'Handed out by audit.read() until visible_at, and not given back since';
COMMENT ON COLUMN audit.queue_items.enqueued_at IS 'When the item was enqueued';
COMMENT ON COLUMN audit.queue_items.visible_at IS 'When the item may be handed out (again): the end of its lease or delay';
COMMENT ON COLUMN audit.queue_items.acked_at IS 'When the item was acknowledged; NULL while it is not';
COMMENT ON COLUMN audit.queue_items.entry_id IS 'For a subscription, the audit entry the item is';
COMMENT ON COLUMN audit.queue_items.payload IS 'Item contents (for a subscription, the entry as in audit.trail)';

CREATE TABLE audit.dead_letters (
	item_id			bigint PRIMARY KEY,
	queue_id		integer NOT NULL,
	deliveries		integer NOT NULL,
	enqueued_at		timestamptz NOT NULL,
	died_at			timestamptz NOT NULL,
	entry_id		bigint,
	payload			jsonb
);

COMMENT ON TABLE audit.dead_letters IS 'Items delivered max_deliveries times without being acknowledged; audit.redrive() queues them again';
COMMENT ON COLUMN audit.dead_letters.item_id IS 'Identifier the item had in its queue';
COMMENT ON COLUMN audit.dead_letters.queue_id IS 'Queue of the item';
COMMENT ON COLUMN audit.dead_letters.deliveries IS 'How many times it was handed out';
COMMENT ON COLUMN audit.dead_letters.enqueued_at IS 'When it was enqueued';
COMMENT ON COLUMN audit.dead_letters.died_at IS 'When it became a dead letter';
COMMENT ON COLUMN audit.dead_letters.entry_id IS 'For a subscription, the audit entry the item is';
COMMENT ON COLUMN audit.dead_letters.payload IS 'Item contents';

SELECT opsdata._guard_tables();

SELECT pg_catalog.pg_extension_config_dump('audit.queues', '');
SELECT pg_catalog.pg_extension_config_dump('audit.subscriptions', '');
SELECT pg_catalog.pg_extension_config_dump('audit.queue_items', '');
SELECT pg_catalog.pg_extension_config_dump('audit.queue_items_seq', '');
SELECT pg_catalog.pg_extension_config_dump('audit.dead_letters', '');

INSERT INTO opsdata.settings (key, type, default_value, valid_when, description) VALUES
	('audit.queue_retention', 'interval', '7 days', 'value >= interval ''0''',
	 'How long acknowledged items of processing queues are kept (queues may set their own)');

--
-- Producers and consumers (C, src/audit/pqueue_api.c).
--
CREATE FUNCTION audit.enqueue(queue text, payload jsonb, delay interval DEFAULT NULL)
RETURNS bigint
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'audit_pq_enqueue';

COMMENT ON FUNCTION audit.enqueue(text, jsonb, interval) IS 'Add an item to an application queue, in the calling transaction; returns its item_id';

CREATE FUNCTION audit.enqueue_many(queue text, payloads jsonb[], delay interval DEFAULT NULL)
RETURNS bigint
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'audit_pq_enqueue_many';

COMMENT ON FUNCTION audit.enqueue_many(text, jsonb[], interval) IS 'Add one item per payload to an application queue, in order; returns how many';

CREATE FUNCTION audit.read(queue text, n integer DEFAULT 1,
	visibility_timeout interval DEFAULT '30 seconds', wait interval DEFAULT NULL)
RETURNS TABLE (item_id bigint, payload jsonb, deliveries integer, enqueued_at timestamptz,
	lease_until timestamptz, entry_id bigint)
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'audit_pq_read';

COMMENT ON FUNCTION audit.read(text, integer, interval, interval) IS 'Lease up to n items of a queue for visibility_timeout, oldest first, waiting up to wait for one; returns them with their delivery count';

CREATE FUNCTION audit.ack(ids bigint[])
RETURNS bigint
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'audit_pq_ack';

COMMENT ON FUNCTION audit.ack(bigint[]) IS 'Acknowledge items: they are done and kept until their retention; returns how many were not acknowledged before';

CREATE FUNCTION audit.nack(ids bigint[], delay interval DEFAULT '0 seconds')
RETURNS bigint
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'audit_pq_nack';

COMMENT ON FUNCTION audit.nack(bigint[], interval) IS 'Give leased items back, to be handed out again after delay; returns how many';

CREATE FUNCTION audit.extend(ids bigint[], visibility_timeout interval)
RETURNS bigint
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'audit_pq_extend';

COMMENT ON FUNCTION audit.extend(bigint[], interval) IS 'Extend the leases that still hold to visibility_timeout from now; returns how many';

CREATE FUNCTION audit._queue_state(OUT queue_id integer, OUT shared boolean, OUT settled_below bigint,
	OUT read_from bigint, OUT rescan_from bigint, OUT due_at timestamptz)
RETURNS SETOF record
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'audit_pq_state';

COMMENT ON FUNCTION audit._queue_state() IS 'Internal: what this server knows in shared memory of the read positions of the queues of this database';

CREATE FUNCTION audit._queue_settled_below(queue_id integer)
RETURNS bigint
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'audit_pq_settled_below';

COMMENT ON FUNCTION audit._queue_settled_below(integer) IS 'Internal: an item id below which every item of the queue is acknowledged';

CREATE FUNCTION audit._queue_forget(queue_id integer)
RETURNS void
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'audit_pq_forget';

COMMENT ON FUNCTION audit._queue_forget(integer) IS 'Internal: drop what shared memory holds of a queue that is being dropped';

CREATE FUNCTION audit._check_predicate(predicate text)
RETURNS text
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'audit_pq_check_predicate';

COMMENT ON FUNCTION audit._check_predicate(text) IS 'Internal: check that a subscription predicate is a boolean expression over audit.trail made of built-in immutable functions; returns it';

CREATE FUNCTION audit._queues_changed()
RETURNS void
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'audit_pq_queues_changed';

COMMENT ON FUNCTION audit._queues_changed() IS 'Internal: make every backend read the queues and subscriptions again';

--
-- Administration.
--
CREATE FUNCTION audit._check_queue_options(max_deliveries integer, retention interval)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF max_deliveries IS NULL OR max_deliveries NOT BETWEEN 1 AND 1000 THEN
		RAISE EXCEPTION 'max_deliveries must be between 1 and 1000'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF retention IS NOT NULL AND retention <= interval '0' THEN
		RAISE EXCEPTION 'retention must be a positive interval'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'NULL keeps acknowledged items for the setting audit.queue_retention.';
	END IF;
END
$$;

COMMENT ON FUNCTION audit._check_queue_options(integer, interval) IS 'Internal: check the options of a new queue';

-- Queue ids are the high bits of item ids: the lowest free one is taken.
CREATE FUNCTION audit._new_queue(name text, kind text, max_deliveries integer, retention interval,
	comment text)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	id integer;
BEGIN
	IF name IS NULL OR name = '' OR length(name) > 63 THEN
		RAISE EXCEPTION 'queue name must be between 1 and 63 characters'
			USING ERRCODE = 'invalid_name';
	END IF;
	PERFORM audit._check_queue_options(max_deliveries, retention);
	LOCK TABLE audit.queues IN SHARE ROW EXCLUSIVE MODE;
	IF EXISTS (SELECT FROM audit.queues q WHERE q.name = _new_queue.name) THEN
		RAISE EXCEPTION 'queue "%" already exists', name
			USING ERRCODE = 'duplicate_object';
	END IF;
	SELECT min(g) INTO id
	  FROM pg_catalog.generate_series(1, 32767) g
	 WHERE NOT EXISTS (SELECT FROM audit.queues q WHERE q.queue_id = g);
	IF id IS NULL THEN
		RAISE EXCEPTION 'too many queues'
			USING ERRCODE = 'program_limit_exceeded',
				  DETAIL = 'A database has at most 32767 queues.';
	END IF;
	-- Items left by a queue that had this id were removed when it was dropped.
	PERFORM audit._queue_forget(id);
	INSERT INTO audit.queues (queue_id, name, kind, max_deliveries, retention, comment)
	VALUES (id, _new_queue.name, kind, max_deliveries, retention, comment);
	RETURN id;
END
$$;

COMMENT ON FUNCTION audit._new_queue(text, text, integer, interval, text) IS 'Internal: make a queue with the lowest free queue_id';

CREATE FUNCTION audit.create_queue(name text, max_deliveries integer DEFAULT 5,
	retention interval DEFAULT NULL, comment text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN audit._new_queue(name, 'application', max_deliveries, retention, comment);
END
$$;

COMMENT ON FUNCTION audit.create_queue(text, integer, interval, text) IS 'Make an application queue; returns its queue_id';

CREATE FUNCTION audit.drop_queue(name text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE STRICT
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	q audit.queues;
BEGIN
	-- Sessions cache queues while they hold a lock on audit.queues: wait
	-- for them, and make them look again.
	LOCK TABLE audit.queues IN ACCESS EXCLUSIVE MODE;
	SELECT * INTO q FROM audit.queues WHERE queues.name = drop_queue.name;
	IF NOT FOUND THEN
		RETURN false;
	END IF;
	IF q.kind = 'subscription' THEN
		PERFORM audit._rules_changed('DROP AUDIT SUBSCRIPTION', name);
	END IF;
	PERFORM audit._queues_changed();
	DELETE FROM audit.queue_items i
	 WHERE i.item_id >= q.queue_id::bigint << 48 AND i.item_id < (q.queue_id + 1)::bigint << 48;
	DELETE FROM audit.dead_letters d WHERE d.queue_id = q.queue_id;
	DELETE FROM audit.queues WHERE queue_id = q.queue_id;
	PERFORM audit._queue_forget(q.queue_id);
	RETURN true;
END
$$;

COMMENT ON FUNCTION audit.drop_queue(text) IS 'Drop a queue (or subscription) with its items and dead letters; returns false when there was no such queue';

CREATE FUNCTION audit.subscribe(name text, classes text[] DEFAULT NULL, commands text[] DEFAULT NULL,
	outcomes text[] DEFAULT NULL, objects text[] DEFAULT NULL, roles name[] DEFAULT NULL,
	predicate text DEFAULT NULL, max_deliveries integer DEFAULT 5, retention interval DEFAULT NULL,
	comment text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	id integer;
	bad text;
BEGIN
	-- A subscription copies entries of the trail into a queue: only a role
	-- that may read the trail makes one (the caller, not this function's
	-- owner: _may_read_trail() looks at the role that called subscribe()).
	IF NOT audit._may_read_trail() THEN
		RAISE EXCEPTION 'permission denied to subscribe to the audit trail'
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'A subscription copies audit entries into a queue.',
				  HINT = 'Subscriptions are made by roles that may read audit.entries (opsdata_auditor).';
	END IF;
	SELECT c INTO bad FROM pg_catalog.unnest(classes) c
	 WHERE c IS NULL OR c NOT IN ('read', 'write', 'function', 'role', 'ddl', 'misc', 'login') LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'invalid audit class "%"', bad
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Valid classes are read, write, function, role, ddl, misc and login.';
	END IF;
	SELECT o INTO bad FROM pg_catalog.unnest(outcomes) o
	 WHERE o IS NULL OR o NOT IN ('ok', 'error', 'rolled back', 'denied', 'failed') LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'invalid audit outcome "%"', bad
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Valid outcomes are ok, error, rolled back, denied and failed.';
	END IF;
	IF pg_catalog.array_position(commands, NULL) IS NOT NULL
	   OR pg_catalog.array_position(objects, NULL) IS NOT NULL
	   OR pg_catalog.array_position(roles, NULL) IS NOT NULL THEN
		RAISE EXCEPTION 'subscription filters must not contain nulls'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF predicate IS NOT NULL THEN
		predicate := audit._check_predicate(predicate);
	END IF;
	id := audit._new_queue(name, 'subscription', max_deliveries, retention, comment);
	INSERT INTO audit.subscriptions (queue_id, classes, commands, outcomes, objects, roles, predicate)
	VALUES (id, classes, (SELECT pg_catalog.array_agg(pg_catalog.upper(c)) FROM pg_catalog.unnest(commands) c),
			outcomes, objects, roles, predicate);
	PERFORM audit._rules_changed('CREATE AUDIT SUBSCRIPTION', name);
	PERFORM audit._queues_changed();
	RETURN id;
END
$$;

COMMENT ON FUNCTION audit.subscribe(text, text[], text[], text[], text[], name[], text, integer, interval, text) IS 'Make a queue that receives every audit entry matching the filter as it is written; returns its queue_id';

CREATE FUNCTION audit.unsubscribe(name text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE STRICT
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT FROM audit.queues q WHERE q.name = unsubscribe.name AND q.kind = 'subscription') THEN
		RETURN false;
	END IF;
	RETURN audit.drop_queue(name);
END
$$;

COMMENT ON FUNCTION audit.unsubscribe(text) IS 'Drop a subscription with its queue; returns false when there was no such subscription';

CREATE FUNCTION audit.redrive(queue text, ids bigint[] DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	q audit.queues;
	n bigint;
BEGIN
	SELECT * INTO q FROM audit.queues WHERE name = queue;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'queue "%" does not exist', queue
			USING ERRCODE = 'undefined_object';
	END IF;
	WITH d AS (
		DELETE FROM audit.dead_letters d
		 WHERE d.queue_id = q.queue_id AND (ids IS NULL OR d.item_id = ANY (ids))
		RETURNING d.*)
	SELECT audit._requeue(q.queue_id, pg_catalog.array_agg(d.payload ORDER BY d.item_id),
						  pg_catalog.array_agg(d.entry_id ORDER BY d.item_id),
						  pg_catalog.array_agg(d.enqueued_at ORDER BY d.item_id))
	  INTO n FROM d;
	RETURN coalesce(n, 0);
END
$$;

COMMENT ON FUNCTION audit.redrive(text, bigint[]) IS 'Queue dead letters of a queue (all, or those of ids) again as new items; returns how many';

CREATE FUNCTION audit._requeue(queue_id integer, payloads jsonb[], entry_ids bigint[],
	enqueued_ats timestamptz[])
RETURNS bigint
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'audit_pq_requeue';

COMMENT ON FUNCTION audit._requeue(integer, jsonb[], bigint[], timestamptz[]) IS 'Internal: enqueue items again, keeping their entry and first enqueue time';

CREATE FUNCTION audit._may_read_trail()
RETURNS boolean
LANGUAGE c STABLE STRICT
AS 'MODULE_PATHNAME', 'audit_pq_may_read_trail';

COMMENT ON FUNCTION audit._may_read_trail() IS 'Internal: whether the calling role may read audit.entries';

--
-- Upkeep, state and health.
--

-- The head of each queue moves up to what was found settled at the
-- previous run, once every transaction that was running then has ended
-- (one of them may still add an item below it); acknowledged items below
-- the head and past their retention are then removed.
CREATE FUNCTION audit._queue_upkeep(batch integer DEFAULT 10000)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	q audit.queues;
	keep interval;
	removed bigint := 0;
	n bigint;
	first bigint;
BEGIN
	FOR q IN SELECT * FROM audit.queues ORDER BY queue_id LOOP
		IF q.head_fence IS NOT NULL
		   AND pg_snapshot_xmin(pg_current_snapshot()) >= q.head_fence THEN
			q.head := greatest(q.head, least(q.head_candidate, audit._queue_settled_below(q.queue_id)));
		END IF;
		UPDATE audit.queues u
		   SET head = q.head,
			   head_candidate = audit._queue_settled_below(q.queue_id),
			   head_fence = pg_snapshot_xmax(pg_current_snapshot())
		 WHERE u.queue_id = q.queue_id;
		keep := coalesce(q.retention, opsdata.setting('audit.queue_retention')::interval);
		first := q.queue_id::bigint << 48;
		LOOP
			DELETE FROM audit.queue_items i
			 WHERE i.item_id IN (SELECT s.item_id FROM audit.queue_items s
								  WHERE s.item_id >= first AND s.item_id < q.head
								  ORDER BY s.item_id LIMIT batch)
			   AND i.acked_at < now() - keep;
			GET DIAGNOSTICS n = ROW_COUNT;
			removed := removed + n;
			EXIT WHEN n < batch;
		END LOOP;
	END LOOP;
	RETURN removed;
END
$$;

COMMENT ON FUNCTION audit._queue_upkeep(integer) IS 'Internal: move queue heads up and remove acknowledged items past their retention; returns how many were removed';

CREATE FUNCTION audit.queue_summary()
RETURNS TABLE (queue text, kind text, ready bigint, leased bigint, delayed bigint,
	oldest_age interval, dead_letters bigint, max_deliveries integer, retention interval)
LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
	SELECT q.name, q.kind,
		   coalesce(c.ready, 0), coalesce(c.leased, 0), coalesce(c.delayed, 0),
		   pg_catalog.now() - c.oldest,
		   (SELECT pg_catalog.count(*) FROM audit.dead_letters d WHERE d.queue_id = q.queue_id),
		   q.max_deliveries, coalesce(q.retention, opsdata.setting('audit.queue_retention')::interval)
	  FROM audit.queues q
	  LEFT JOIN LATERAL (
		SELECT pg_catalog.count(*) FILTER (WHERE i.visible_at <= pg_catalog.now()) AS ready,
			   pg_catalog.count(*) FILTER (WHERE i.visible_at > pg_catalog.now() AND i.leased) AS leased,
			   pg_catalog.count(*) FILTER (WHERE i.visible_at > pg_catalog.now() AND NOT i.leased) AS delayed,
			   pg_catalog.min(i.enqueued_at) AS oldest
		  FROM audit.queue_items i
		 WHERE i.item_id >= audit._queue_settled_below(q.queue_id)
		   AND i.item_id < (q.queue_id + 1)::bigint << 48
		   AND i.acked_at IS NULL) c ON true
	 ORDER BY q.name
$$;

COMMENT ON FUNCTION audit.queue_summary() IS 'Each queue with its items ready, leased and delayed, the age of its oldest item not acknowledged, and its dead letters';

CREATE FUNCTION audit._health_queues(OUT component text, OUT status text, OUT detail text)
RETURNS SETOF record
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s record;
BEGIN
	FOR s IN SELECT * FROM audit.queue_summary() LOOP
		component := 'audit queue ' || pg_catalog.quote_ident(s.queue);
		status := CASE WHEN s.dead_letters > 0 THEN 'warning' ELSE 'ok' END;
		detail := pg_catalog.format('%s items ready, %s leased, %s delayed; oldest waiting %s; %s dead letters.',
									s.ready, s.leased, s.delayed,
									coalesce(pg_catalog.justify_interval(pg_catalog.date_trunc('second', s.oldest_age))::text, 'none'),
									s.dead_letters);
		IF s.dead_letters > 0 THEN
			detail := detail || ' Dead letters were delivered max_deliveries times without acknowledgement: see audit.dead_letters, and audit.redrive() to queue them again.';
		END IF;
		RETURN NEXT;
	END LOOP;
END
$$;

COMMENT ON FUNCTION audit._health_queues() IS 'Internal: one row of opsdata.health() per processing queue';

-- Metrics of the queues, recorded by the upkeep job: audit.queue.ready,
-- audit.queue.leased, audit.queue.oldest_age_seconds and
-- audit.queue.dead_letters, tagged with the queue.
CREATE FUNCTION audit._queue_metrics()
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	IF NOT EXISTS (SELECT FROM audit.queues) THEN
		RETURN 0;
	END IF;
	SELECT metrics.record_many(
			   pg_catalog.array_agg(m.name ORDER BY s.queue, m.name),
			   pg_catalog.array_agg(m.value ORDER BY s.queue, m.name),
			   pg_catalog.array_agg(pg_catalog.jsonb_build_object('queue', s.queue) ORDER BY s.queue, m.name))
	  INTO n
	  FROM audit.queue_summary() s,
		   LATERAL (VALUES ('audit.queue.ready', s.ready::float8),
						   ('audit.queue.leased', s.leased::float8),
						   ('audit.queue.oldest_age_seconds',
							coalesce(extract(epoch FROM s.oldest_age)::float8, 0)),
						   ('audit.queue.dead_letters', s.dead_letters::float8)) m(name, value);
	RETURN coalesce(n, 0);
END
$$;

COMMENT ON FUNCTION audit._queue_metrics() IS 'Internal: record the depth, in-flight items, age of the oldest item and dead letters of each queue as metrics';

CREATE FUNCTION audit._queue_job()
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM audit._queue_metrics();
	RETURN audit._queue_upkeep();
END
$$;

COMMENT ON FUNCTION audit._queue_job() IS 'Internal: the built-in job of the processing queues (metrics, heads, retention)';

INSERT INTO opsdata.jobs (name, command, schedule, builtin, comment) VALUES
	('audit.queue_upkeep', 'SELECT audit._queue_job()', '1 minute', true,
	 'Records the metrics of the processing queues, moves their heads and removes acknowledged items past their retention');

GRANT USAGE ON SCHEMA audit TO opsdata_writer;
GRANT SELECT ON audit.queues, audit.subscriptions TO opsdata_admin, opsdata_auditor;
GRANT SELECT ON audit.queue_items, audit.dead_letters TO opsdata_auditor;
GRANT EXECUTE ON FUNCTION audit.queue_summary() TO opsdata_admin, opsdata_writer, opsdata_auditor;
GRANT EXECUTE ON FUNCTION audit.enqueue(text, jsonb, interval),
	audit.enqueue_many(text, jsonb[], interval) TO opsdata_admin, opsdata_writer;
GRANT EXECUTE ON FUNCTION audit.read(text, integer, interval, interval), audit.ack(bigint[]),
	audit.nack(bigint[], interval), audit.extend(bigint[], interval)
	TO opsdata_admin, opsdata_writer, opsdata_auditor;
GRANT EXECUTE ON FUNCTION audit.create_queue(text, integer, interval, text), audit.drop_queue(text),
	audit.subscribe(text, text[], text[], text[], text[], name[], text, integer, interval, text),
	audit.unsubscribe(text), audit.redrive(text, bigint[]) TO opsdata_admin;

REVOKE ALL ON ALL ROUTINES IN SCHEMA audit FROM PUBLIC;

-- Partition maintenance runs in job workers: each pass writes what it did
-- to each set as a 'run' row of opsdata.partition_log, which
-- opsdata.run_maintenance() returns, and stamps its rows with the time it
-- began.
ALTER TABLE opsdata.partition_log
	DROP CONSTRAINT partition_log_action_check,
	ADD CONSTRAINT partition_log_action_check
		CHECK (action IN ('create', 'move', 'finalize', 'detach', 'archive', 'drop', 'skip', 'fail', 'run')),
	ADD COLUMN pass_started timestamptz,
	ADD COLUMN status text CHECK (status IN ('ok', 'skipped', 'failed')),
	ADD COLUMN created integer,
	ADD COLUMN moved bigint,
	ADD COLUMN detached integer,
	ADD COLUMN dropped integer,
	ADD CHECK ((action = 'run') = (status IS NOT NULL));

COMMENT ON TABLE opsdata.partition_log IS 'What partition maintenance did: every partition made, filled, detached or dropped, every skipped or failed step, and what each pass did to each set';
COMMENT ON COLUMN opsdata.partition_log.action IS 'create, move (a partition made from rows of the default partition), finalize (an interrupted detach completed), detach, archive (moved into the archive schema), drop, skip, fail, or run (what a pass did to the set, as opsdata.run_maintenance() returns it)';
COMMENT ON COLUMN opsdata.partition_log.detail IS 'Bounds, rows moved, the reason for a skip or failure, or for a run row what the pass did';
COMMENT ON COLUMN opsdata.partition_log.pass_started IS 'When the maintenance pass that wrote the row began: the rows of one pass share it; NULL for rows of manage_partitions()';
COMMENT ON COLUMN opsdata.partition_log.status IS 'Run rows: ok, skipped (a lock was not granted in time) or failed';
COMMENT ON COLUMN opsdata.partition_log.created IS 'Run rows: partitions made';
COMMENT ON COLUMN opsdata.partition_log.moved IS 'Run rows: rows moved out of the default partition';
COMMENT ON COLUMN opsdata.partition_log.detached IS 'Run rows: partitions detached into the archive schema';
COMMENT ON COLUMN opsdata.partition_log.dropped IS 'Run rows: partitions dropped';
COMMENT ON FUNCTION opsdata.run_maintenance(regclass) IS 'Run partition maintenance now, on one set or all of them, in a job worker, and wait for it; returns what it did per set';

-- Audit: audit.statements holds statement shapes, audit.entries the
-- constants of each statement; texts stored by 0.1 have no placeholders
-- and read as they are.
ALTER TABLE audit.statements ADD COLUMN placeholders integer[];
COMMENT ON TABLE audit.statements IS 'Each distinct audited statement shape, stored once: the statement with its constants replaced by placeholders, or the statement itself when it has none';
COMMENT ON COLUMN audit.statements.statement_id IS 'Identifier audit.entries.statement_id refers to, derived from a hash of the shape (the same on every server)';
COMMENT ON COLUMN audit.statements.statement_text IS 'The statement with its constants replaced by $n placeholders, secrets redacted';
COMMENT ON COLUMN audit.statements.first_seen IS 'When the shape was first audited';
COMMENT ON COLUMN audit.statements.placeholders IS 'Byte offset (from 0) in statement_text of the placeholder of each constant, in order; NULL when the text has none';

ALTER TABLE audit.entries ADD COLUMN constants text[];
COMMENT ON COLUMN audit.entries.statement_id IS 'The statement''s shape, in audit.statements';
COMMENT ON COLUMN audit.entries.constants IS 'The constants of the statement as they were written, one per placeholder of its shape; NULL when its shape has none';

CREATE FUNCTION audit.rebuild_statement(shape text, placeholders integer[], constants text[])
RETURNS text
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'audit_rebuild_statement';

COMMENT ON FUNCTION audit.rebuild_statement(text, integer[], text[]) IS 'The statement a shape and its constants stand for, byte for byte; the shape itself when it has no placeholders';

CREATE OR REPLACE VIEW audit.trail AS
	SELECT e.entry_id, e.ts, e.database, e.username, e.current_user_name, e.application,
		   e.client_addr, e.backend_pid, e.xid, e.class, e.command, e.objects, e.privileges,
		   e.rows, e.duration, e.outcome, e.sqlstate,
		   audit.rebuild_statement(s.statement_text, s.placeholders, e.constants) AS statement_text,
		   e.params, e.statement_id, e.constants
	  FROM audit.entries e LEFT JOIN audit.statements s USING (statement_id);

COMMENT ON VIEW audit.trail IS 'audit.entries with the text of each statement, as it was sent';

CREATE FUNCTION audit.shapes(since timestamptz, until timestamptz DEFAULT pg_catalog.now(),
	object text DEFAULT NULL,
	OUT statement_id bigint, OUT shape text, OUT class text, OUT command text, OUT username text,
	OUT executions bigint, OUT ok bigint, OUT errors bigint, OUT denied bigint,
	OUT rolled_back bigint, OUT rows numeric, OUT first_ts timestamptz, OUT last_ts timestamptz)
RETURNS SETOF record
LANGUAGE sql STABLE
AS $$
	SELECT e.statement_id, s.statement_text, e.class, e.command, e.username,
		   pg_catalog.count(*),
		   pg_catalog.count(*) FILTER (WHERE e.outcome OPERATOR(pg_catalog.=) 'ok'),
		   pg_catalog.count(*) FILTER (WHERE e.outcome OPERATOR(pg_catalog.=) 'error'),
		   pg_catalog.count(*) FILTER (WHERE e.outcome OPERATOR(pg_catalog.=) 'denied'),
		   pg_catalog.count(*) FILTER (WHERE e.outcome OPERATOR(pg_catalog.=) 'rolled back'),
		   pg_catalog.sum(e.rows), pg_catalog.min(e.ts), pg_catalog.max(e.ts)
	  FROM audit.entries e
	  LEFT JOIN audit.statements s ON s.statement_id OPERATOR(pg_catalog.=) e.statement_id
	 WHERE e.ts OPERATOR(pg_catalog.>=) since AND e.ts OPERATOR(pg_catalog.<) until
	   AND (object IS NULL OR e.objects OPERATOR(pg_catalog.@>) ARRAY[object])
	 GROUP BY e.statement_id, s.statement_text, e.class, e.command, e.username
$$;

COMMENT ON FUNCTION audit.shapes(timestamptz, timestamptz, text) IS 'Statement shapes run from since until until (that touched object, when given): by whom, how often, with what outcomes';

REVOKE ALL ON FUNCTION audit.rebuild_statement(text, integer[], text[]),
	audit.shapes(timestamptz, timestamptz, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.rebuild_statement(text, integer[], text[]),
	audit.shapes(timestamptz, timestamptz, text) TO opsdata_auditor;

-- Application events (class app) and the context an application declares.
ALTER TABLE audit.entries ADD COLUMN actor text, ADD COLUMN request_id text, ADD COLUMN attributes jsonb,
	ADD COLUMN details jsonb;
ALTER TABLE audit.held_entries ADD COLUMN actor text, ADD COLUMN request_id text, ADD COLUMN attributes jsonb,
	ADD COLUMN details jsonb;
ALTER TABLE audit.entries DROP CONSTRAINT entries_class_check;
ALTER TABLE audit.entries ADD CONSTRAINT entries_class_check
	CHECK (class IN ('read', 'write', 'function', 'role', 'ddl', 'misc', 'login', 'app')) NOT VALID;
ALTER TABLE audit.entries VALIDATE CONSTRAINT entries_class_check;
ALTER TABLE audit.held_entries DROP CONSTRAINT held_entries_class_check,
	ADD CONSTRAINT held_entries_class_check
	CHECK (class IN ('read', 'write', 'function', 'role', 'ddl', 'misc', 'login', 'app'));
ALTER TABLE audit.rules DROP CONSTRAINT rules_class_check,
	ADD CONSTRAINT rules_class_check
	CHECK (class IN ('read', 'write', 'function', 'role', 'ddl', 'misc', 'login', 'app'));
COMMENT ON COLUMN audit.entries.class IS 'read, write, function, role, ddl, misc or login; app for application events';
COMMENT ON COLUMN audit.entries.actor IS 'The end user the application declared it acts for (pg_opsdata.audit_actor); proves nothing about who logged in';
COMMENT ON COLUMN audit.entries.request_id IS 'The request the application declared (pg_opsdata.audit_request_id)';
COMMENT ON COLUMN audit.entries.attributes IS 'More context the application declared (pg_opsdata.audit_attributes)';
COMMENT ON COLUMN audit.entries.details IS 'Details of an application event (audit.log_event())';
COMMENT ON COLUMN audit.held_entries.class IS 'read, write, function, role, ddl, misc or login; app for application events';
COMMENT ON COLUMN audit.held_entries.actor IS 'The end user the application declared it acts for (pg_opsdata.audit_actor); proves nothing about who logged in';
COMMENT ON COLUMN audit.held_entries.request_id IS 'The request the application declared (pg_opsdata.audit_request_id)';
COMMENT ON COLUMN audit.held_entries.attributes IS 'More context the application declared (pg_opsdata.audit_attributes)';
COMMENT ON COLUMN audit.held_entries.details IS 'Details of an application event (audit.log_event())';

CREATE OR REPLACE VIEW audit.trail AS
	SELECT e.entry_id, e.ts, e.database, e.username, e.current_user_name, e.application,
		   e.client_addr, e.backend_pid, e.xid, e.class, e.command, e.objects, e.privileges,
		   e.rows, e.duration, e.outcome, e.sqlstate,
		   audit.rebuild_statement(s.statement_text, s.placeholders, e.constants) AS statement_text,
		   e.params, e.statement_id, e.constants, e.actor, e.request_id, e.attributes, e.details
	  FROM audit.entries e LEFT JOIN audit.statements s USING (statement_id);


CREATE OR REPLACE FUNCTION audit.add_rule(action text, role_name name DEFAULT NULL, database_name name DEFAULT NULL,
	schema_name name DEFAULT NULL, relation_name text DEFAULT NULL, class text DEFAULT NULL,
	comment text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	id bigint;
BEGIN
	IF action IS NULL OR action NOT IN ('include', 'exclude') THEN
		RAISE EXCEPTION 'invalid audit rule action "%"', action
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'The action is include or exclude.';
	END IF;
	IF class IS NOT NULL AND class NOT IN ('read', 'write', 'function', 'role', 'ddl', 'misc', 'login', 'app') THEN
		RAISE EXCEPTION 'invalid audit class "%"', class
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Valid classes are read, write, function, role, ddl, misc, login and app.';
	END IF;
	-- An exclude rule narrows the trail: superusers only.
	IF action = 'exclude' THEN
		PERFORM opsdata._trail_check('add an exclude audit rule');
	END IF;
	INSERT INTO audit.rules AS r (action, role_name, database_name, schema_name, relation_name, class, comment)
		 VALUES (add_rule.action, add_rule.role_name, add_rule.database_name, add_rule.schema_name,
				 add_rule.relation_name, add_rule.class, add_rule.comment)
	  RETURNING r.rule_id INTO id;
	PERFORM audit._rules_changed('ADD AUDIT RULE', 'audit.rules');
	RETURN id;
END
$$;


CREATE OR REPLACE FUNCTION audit.subscribe(name text, classes text[] DEFAULT NULL, commands text[] DEFAULT NULL,
	outcomes text[] DEFAULT NULL, objects text[] DEFAULT NULL, roles name[] DEFAULT NULL,
	predicate text DEFAULT NULL, max_deliveries integer DEFAULT 5, retention interval DEFAULT NULL,
	comment text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	id integer;
	bad text;
BEGIN
	-- A subscription copies entries of the trail into a queue: only a role
	-- that may read the trail makes one (the caller, not this function's
	-- owner: _may_read_trail() looks at the role that called subscribe()).
	IF NOT audit._may_read_trail() THEN
		RAISE EXCEPTION 'permission denied to subscribe to the audit trail'
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'A subscription copies audit entries into a queue.',
				  HINT = 'Subscriptions are made by roles that may read audit.entries (opsdata_auditor).';
	END IF;
	SELECT c INTO bad FROM pg_catalog.unnest(classes) c
	 WHERE c IS NULL OR c NOT IN ('read', 'write', 'function', 'role', 'ddl', 'misc', 'login', 'app') LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'invalid audit class "%"', bad
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Valid classes are read, write, function, role, ddl, misc, login and app.';
	END IF;
	SELECT o INTO bad FROM pg_catalog.unnest(outcomes) o
	 WHERE o IS NULL OR o NOT IN ('ok', 'error', 'rolled back', 'denied', 'failed') LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'invalid audit outcome "%"', bad
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Valid outcomes are ok, error, rolled back, denied and failed.';
	END IF;
	IF pg_catalog.array_position(commands, NULL) IS NOT NULL
	   OR pg_catalog.array_position(objects, NULL) IS NOT NULL
	   OR pg_catalog.array_position(roles, NULL) IS NOT NULL THEN
		RAISE EXCEPTION 'subscription filters must not contain nulls'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF predicate IS NOT NULL THEN
		predicate := audit._check_predicate(predicate);
	END IF;
	id := audit._new_queue(name, 'subscription', max_deliveries, retention, comment);
	INSERT INTO audit.subscriptions (queue_id, classes, commands, outcomes, objects, roles, predicate)
	VALUES (id, classes, (SELECT pg_catalog.array_agg(pg_catalog.upper(c)) FROM pg_catalog.unnest(commands) c),
			outcomes, objects, roles, predicate);
	PERFORM audit._rules_changed('CREATE AUDIT SUBSCRIPTION', name);
	PERFORM audit._queues_changed();
	RETURN id;
END
$$;


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

GRANT EXECUTE ON FUNCTION audit.set_context(text, text, jsonb, text), audit.log_event(text, text, text, jsonb),
	audit.log_events(jsonb) TO opsdata_admin, opsdata_writer;

-- Logical replication (doc/scale-out.md).
--
-- Each audit entry says which server wrote it (server_id, the system
-- identifier of its cluster), and the primary key includes it, so that
-- entries replicated from other servers never collide with the entry_ids
-- of this one.  The entries written before the update were written here:
-- they get this server's identifier (stored once, as the column's value
-- for the rows that were there, without rewriting them).
CREATE FUNCTION audit.server_id()
RETURNS bigint
LANGUAGE c STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'audit_server_id';

COMMENT ON FUNCTION audit.server_id() IS 'This server''s identifier in audit.entries.server_id: the system identifier of its cluster (pg_control_system())';

ALTER TABLE audit.entries ADD COLUMN server_id bigint NOT NULL DEFAULT audit.server_id();
COMMENT ON COLUMN audit.entries.server_id IS 'The server that wrote the entry: the system identifier of its cluster (audit.server_id() there); entries replicated from another server keep that server''s';
ALTER TABLE audit.entries DROP CONSTRAINT entries_pkey,
	ADD CONSTRAINT entries_pkey PRIMARY KEY (entry_id, ts, server_id);
GRANT EXECUTE ON FUNCTION audit.server_id() TO opsdata_admin, opsdata_auditor;

-- The trail says which server wrote each entry.
CREATE OR REPLACE VIEW audit.trail AS
	SELECT e.entry_id, e.ts, e.database, e.username, e.current_user_name, e.application,
		   e.client_addr, e.backend_pid, e.xid, e.class, e.command, e.objects, e.privileges,
		   e.rows, e.duration, e.outcome, e.sqlstate,
		   audit.rebuild_statement(s.statement_text, s.placeholders, e.constants) AS statement_text,
		   e.params, e.statement_id, e.constants, e.actor, e.request_id, e.attributes, e.details, e.server_id
	  FROM audit.entries e LEFT JOIN audit.statements s USING (statement_id);

-- A statement text replicated from another server that is stored here
-- already is skipped by the apply worker.
CREATE FUNCTION audit._statement_arrived()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF EXISTS (SELECT FROM audit.statements s WHERE s.statement_id OPERATOR(pg_catalog.=) NEW.statement_id) THEN
		RETURN NULL;
	END IF;
	RETURN NEW;
END
$$;

COMMENT ON FUNCTION audit._statement_arrived() IS 'Internal: skip a replicated statement text that is stored already';

CREATE TRIGGER statement_arrived BEFORE INSERT ON audit.statements
	FOR EACH ROW EXECUTE FUNCTION audit._statement_arrived();
ALTER TABLE audit.statements ENABLE REPLICA TRIGGER statement_arrived;

-- Every table that logical replication may carry has a replica identity:
-- those without a primary key are logged whole when their rows are
-- deleted, metrics.points and all its partitions included.
ALTER TABLE audit.held_entries REPLICA IDENTITY FULL;
ALTER TABLE learning.feedback_changes REPLICA IDENTITY FULL;
ALTER TABLE opsdata.partition_log REPLICA IDENTITY FULL;
ALTER TABLE metrics.rollup_queue REPLICA IDENTITY FULL;
DO $$
DECLARE
	p regclass;
BEGIN
	FOR p IN SELECT t.relid FROM pg_catalog.pg_partition_tree('metrics.points'::regclass) t LOOP
		EXECUTE pg_catalog.format('ALTER TABLE %s REPLICA IDENTITY FULL', p);
	END LOOP;
END
$$;

-- Partition maintenance: with a default partition, the parent is locked
-- before a partition is attached, so that no query runs with the
-- partitions of before a move and a snapshot of after it; in a database
-- with a publication, rows moved out of the default partition are
-- inserted after the partition is attached, so that the insert is
-- published as well as the delete.
CREATE OR REPLACE FUNCTION opsdata._partition_step(s opsdata.partitions, parent regclass, schema name, parent_name name,
	space text, like_clause text, cols text, tail text[], default_part regclass, taken text[],
	lo timestamptz, hi timestamptz, lo_id bigint, hi_id bigint, filled boolean,
	OUT action text, OUT partition text, OUT relname name, OUT statements text[], OUT detail text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
	v_time boolean := s.control_type IN ('timestamptz'::regtype, 'date'::regtype);
	v_name name;
	v_lit_lo text := opsdata._partition_literal(s.control_type, lo, lo_id);
	v_lit_hi text := opsdata._partition_literal(s.control_type, hi, hi_id);
	v_suffix text;
	v_iv interval;
	v_cond text;
	v_published boolean := EXISTS (SELECT FROM pg_catalog.pg_publication);
	v_staging text;
	v_move text;
	v_attach text;
	v_tail text[] := '{}';
	g text;
BEGIN
	IF v_time THEN
		v_iv := s.part_interval::interval;
		v_suffix := CASE
			WHEN EXTRACT(year FROM v_iv) * 12 + EXTRACT(month FROM v_iv) > 0
			THEN pg_catalog.to_char(lo AT TIME ZONE 'UTC', 'YYYYMM')
			WHEN EXTRACT(epoch FROM v_iv)::numeric % 86400 = 0
			THEN pg_catalog.to_char(lo AT TIME ZONE 'UTC', 'YYYYMMDD')
			ELSE pg_catalog.to_char(lo AT TIME ZONE 'UTC', 'YYYYMMDD_HH24MI') END;
	ELSE
		v_suffix := pg_catalog.replace(lo_id::text, '-', 'm');
	END IF;
	v_name := opsdata._partition_name(schema, parent_name, v_suffix, taken);
	relname := v_name;
	partition := pg_catalog.format('%I.%I', schema, v_name);
	detail := pg_catalog.format('FROM (%s) TO (%s)', v_lit_lo, coalesce(v_lit_hi, 'MAXVALUE'));
	FOREACH g IN ARRAY tail LOOP
		v_tail := v_tail || pg_catalog.format(g, partition);
	END LOOP;
	v_attach := pg_catalog.format('ALTER TABLE %s ATTACH PARTITION %s FOR VALUES FROM (%s) TO (%s)',
								  parent, partition, v_lit_lo, coalesce(v_lit_hi, 'MAXVALUE'));
	-- Run as the table's owner in a privileged region: operators are named
	-- with their schema.
	v_cond := pg_catalog.format('%1$I OPERATOR(pg_catalog.>=) %2$s', s.control_column, v_lit_lo)
			  || CASE WHEN v_lit_hi IS NULL THEN ''
					  ELSE pg_catalog.format(' AND %1$I OPERATOR(pg_catalog.<) %2$s', s.control_column, v_lit_hi) END;
	IF NOT filled THEN
		action := 'create';
		statements := pg_catalog.format('CREATE TABLE %s %s)%s', partition, like_clause, space)
					  || v_tail
					  || CASE WHEN default_part IS NULL THEN '{}'::text[]
							  ELSE ARRAY[pg_catalog.format('LOCK TABLE ONLY %s IN ACCESS EXCLUSIVE MODE', parent)] END
					  || v_attach;
	ELSIF NOT v_published THEN
		action := 'move';
		v_move := pg_catalog.format('WITH moved AS (DELETE FROM ONLY %s WHERE %s RETURNING %s) INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM moved',
									default_part, v_cond, cols, partition, cols, cols);
		statements := ARRAY[
			pg_catalog.format('CREATE TABLE %s %s, CONSTRAINT opsdata_partition_bounds CHECK (%I IS NOT NULL AND %s))%s',
							  partition, like_clause, s.control_column, v_cond, space)]
			|| v_tail
			|| ARRAY[
			v_move,
			pg_catalog.format('LOCK TABLE ONLY %s IN ACCESS EXCLUSIVE MODE', parent),
			v_move,
			v_attach,
			pg_catalog.format('ALTER TABLE %s DROP CONSTRAINT opsdata_partition_bounds', partition)];
	ELSE
		action := 'move';
		v_staging := pg_catalog.format('%I.%I', schema,
									   opsdata._partition_name(schema, parent_name, v_suffix || '_moving', taken || v_name::text));
		-- The rows kept in the unlogged table are counted by the INSERT that
		-- puts them into the partition, the one statement of the step that
		-- returns SPI_OK_INSERT.
		v_move := pg_catalog.format('WITH moved AS (DELETE FROM ONLY %s WHERE %s RETURNING %s), kept AS (INSERT INTO %s (%s) SELECT %s FROM moved RETURNING 1) SELECT pg_catalog.count(*) FROM kept',
									default_part, v_cond, cols, v_staging, cols, cols);
		statements := ARRAY[
			pg_catalog.format('CREATE UNLOGGED TABLE %s (LIKE %s)', v_staging, parent),
			v_move,
			pg_catalog.format('CREATE TABLE %s %s)%s', partition, like_clause, space)]
			|| v_tail
			|| ARRAY[
			pg_catalog.format('LOCK TABLE ONLY %s IN ACCESS EXCLUSIVE MODE', parent),
			v_move,
			v_attach,
			pg_catalog.format('INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM %s', partition, cols, cols, v_staging),
			pg_catalog.format('DROP TABLE %s', v_staging)];
	END IF;
END
$$;

COMMENT ON FUNCTION opsdata._partition_step(opsdata.partitions, regclass, name, name, text, text, text, text[], regclass, text[], timestamptz, timestamptz, bigint, bigint, boolean) IS 'Internal: the statements that make one partition, empty or filled from the default partition';

-- The guard of a plain table also fires on logical replication's apply,
-- which fires row-level triggers only: a row-level guard that fires with
-- session_replication_role = replica alone.
CREATE OR REPLACE FUNCTION opsdata._guard_tables()
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t record;
	old_guard name;
	row_events text[];
	n integer := 0;
BEGIN
	FOR t IN
		SELECT c.oid::pg_catalog.regclass AS rel, c.relkind, c.relispartition,
			   ARRAY(SELECT e FROM pg_catalog.unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) e
					  WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_class g, pg_catalog.aclexplode(g.relacl) a
										 WHERE g.oid = CASE WHEN c.relispartition
															THEN pg_catalog.pg_partition_root(c.oid)
															ELSE c.oid END
										   AND a.grantee OPERATOR(pg_catalog.<>) g.relowner
										   AND a.privilege_type OPERATOR(pg_catalog.=) e)) AS events
		  FROM pg_catalog.pg_class c
		  JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
									 AND d.objid = c.oid AND d.deptype = 'e'
		  JOIN pg_catalog.pg_extension x ON x.oid = d.refobjid AND x.extname = 'pg_opsdata'
		 WHERE c.relkind IN ('r', 'p')
		 ORDER BY c.oid
	LOOP
		CONTINUE WHEN pg_catalog.cardinality(t.events) = 0;
		-- Replace the guards made before (a clone on a partition goes with
		-- its parent's).
		FOR old_guard IN SELECT tg.tgname FROM pg_catalog.pg_trigger tg
				  WHERE tg.tgrelid OPERATOR(pg_catalog.=) t.rel
					AND tg.tgname IN ('opsdata_guard', 'opsdata_guard_truncate', 'opsdata_guard_replica')
					AND tg.tgparentid OPERATOR(pg_catalog.=) 0
		LOOP
			EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', old_guard, t.rel);
		END LOOP;
		row_events := ARRAY(SELECT e FROM pg_catalog.unnest(t.events) e WHERE e OPERATOR(pg_catalog.<>) 'TRUNCATE');
		IF t.relkind = 'r' AND NOT t.relispartition THEN
			EXECUTE pg_catalog.format('CREATE TRIGGER opsdata_guard BEFORE %s ON %s FOR EACH STATEMENT EXECUTE FUNCTION opsdata._guard()',
									  pg_catalog.array_to_string(t.events, ' OR '), t.rel);
			EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER opsdata_guard', t.rel);
			IF pg_catalog.cardinality(row_events) > 0 THEN
				EXECUTE pg_catalog.format('CREATE TRIGGER opsdata_guard_replica BEFORE %s ON %s FOR EACH ROW EXECUTE FUNCTION opsdata._guard()',
										  pg_catalog.array_to_string(row_events, ' OR '), t.rel);
				EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE REPLICA TRIGGER opsdata_guard_replica', t.rel);
			END IF;
		ELSE
			IF t.relkind = 'p' AND pg_catalog.cardinality(row_events) > 0 THEN
				EXECUTE pg_catalog.format('CREATE TRIGGER opsdata_guard BEFORE %s ON %s FOR EACH ROW EXECUTE FUNCTION opsdata._guard()',
										  pg_catalog.array_to_string(row_events, ' OR '), t.rel);
				EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER opsdata_guard', t.rel);
			END IF;
			IF 'TRUNCATE' OPERATOR(pg_catalog.=) ANY (t.events) THEN
				EXECUTE pg_catalog.format('CREATE TRIGGER opsdata_guard_truncate BEFORE TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION opsdata._guard()',
										  t.rel);
				EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER opsdata_guard_truncate', t.rel);
			END IF;
		END IF;
		n := n + 1;
	END LOOP;
	RETURN n;
END
$$;

COMMENT ON FUNCTION opsdata._guard_tables() IS 'Internal: put the guard trigger on every table of pg_opsdata for each write no role is granted; returns how many tables';

SELECT opsdata._guard_tables();

-- Metrics: points whose timestamps the rollups cannot bucket are skipped,
-- counted and shown in health.
-- (The column is added without a default, then given one, so that it has
-- no "missing value" that a fresh install would not have.)
ALTER TABLE metrics.rollup_state ADD COLUMN bad_points bigint,
	ADD COLUMN last_bad_at timestamptz;
ALTER TABLE metrics.rollup_state ALTER COLUMN bad_points SET DEFAULT 0;
UPDATE metrics.rollup_state SET bad_points = 0;
ALTER TABLE metrics.rollup_state ALTER COLUMN bad_points SET NOT NULL;
COMMENT ON COLUMN metrics.rollup_state.bad_points IS 'Points skipped because their timestamp is outside the range rollups can bucket (0001-01-01 to 9999-12-31 UTC)';
COMMENT ON COLUMN metrics.rollup_state.last_bad_at IS 'When such points were last skipped';

CREATE OR REPLACE FUNCTION metrics._health_metrics(OUT component text, OUT status text, OUT detail text)
RETURNS SETOF record
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	oldest timestamptz;
	waiting bigint;
	job opsdata.jobs;
	state metrics.rollup_state;
	lag interval;
	series_limit integer := opsdata.setting('metrics.series_limit')::integer;
	busiest text;
	busiest_n bigint;
	total bigint;
BEGIN
	SELECT min(queued_at), coalesce(sum(metrics.sketch_count(sketch)), 0)
	  INTO oldest, waiting FROM metrics.rollup_queue;
	SELECT * INTO job FROM opsdata.jobs WHERE name = 'metrics.rollup';
	SELECT * INTO state FROM metrics.rollup_state;
	lag := now() - oldest;

	component := 'metrics rollups';
	IF job.job_id IS NULL OR job.paused THEN
		status := 'warning';
		detail := 'The job "metrics.rollup" is missing or paused: new points are not rolled up. Resume it in opsdata.jobs.';
	ELSIF lag > greatest(job.schedule * 10, interval '10 minutes') THEN
		status := 'warning';
		detail := format('%s points are waiting to be rolled up, the oldest recorded %s ago. Check that the scheduler runs and that the job "metrics.rollup" succeeds (opsdata.job_runs).',
						 waiting, date_trunc('second', lag));
	ELSE
		status := 'ok';
		detail := format('%s points waiting to be rolled up.', waiting);
	END IF;
	IF coalesce(state.late_points, 0) > 0 THEN
		detail := detail || format(' Points that arrived later than the setting "metrics.rollup_lateness" allows are not rolled up: %s so far, the last at %s.',
								   state.late_points, state.last_late_at);
	END IF;
	IF coalesce(state.bad_points, 0) > 0 THEN
		status := 'warning';
		detail := detail || format(' Points with timestamps outside 0001-01-01 to 9999-12-31 (UTC) were skipped by the rollups: %s so far, the last at %s (see the server log).',
								   state.bad_points, state.last_bad_at);
	END IF;
	RETURN NEXT;

	component := 'metrics series';
	SELECT count(*) INTO total FROM metrics.series;
	SELECT name, count(*) INTO busiest, busiest_n
	  FROM metrics.series GROUP BY name ORDER BY count(*) DESC, name LIMIT 1;
	IF busiest_n >= series_limit THEN
		status := 'warning';
		detail := format('Metric "%s" has %s series, its limit (setting "metrics.series_limit"): new tag values of it are refused.', busiest, busiest_n);
	ELSIF busiest_n >= series_limit * 0.8 THEN
		status := 'warning';
		detail := format('Metric "%s" has %s series of its limit of %s (setting "metrics.series_limit").', busiest, busiest_n, series_limit);
	ELSE
		status := 'ok';
		detail := format('%s series; no metric is near its limit of %s.', total, series_limit);
	END IF;
	RETURN NEXT;
END
$$;

-- Audit: the seal chain (src/audit/seal.sql).  audit.seals of 0.1 was never
-- written; it is made anew, with the functions that write and verify it.
ALTER EXTENSION pg_opsdata DROP TABLE audit.seals;
ALTER EXTENSION pg_opsdata DROP SEQUENCE audit.seals_seal_id_seq;
DROP TABLE audit.seals;

CREATE TABLE audit.seals (
	seal_id				bigint PRIMARY KEY,
	kind				text NOT NULL CHECK (kind IN ('entries', 'retention')),
	first_entry_id		bigint,
	last_entry_id		bigint,
	ts_from				timestamptz NOT NULL,
	ts_to				timestamptz NOT NULL,
	entry_count			bigint NOT NULL CHECK (entry_count >= 0),
	entry_ids			int8multirange,
	locators			bytea,
	entries_hash		bytea,
	entry_columns		smallint,
	statement_columns	smallint,
	total_entries		bigint NOT NULL,
	detail				text,
	prev_hash			bytea NOT NULL,
	sealed_at			timestamptz NOT NULL,
	hash				bytea NOT NULL,
	server_id			bigint,
	CHECK (kind = 'retention' OR (last_entry_id >= first_entry_id AND entry_ids IS NOT NULL
								  AND locators IS NOT NULL AND entries_hash IS NOT NULL
								  AND server_id IS NOT NULL))
);

-- Locators are random bytes: never worth trying to compress.
ALTER TABLE audit.seals ALTER COLUMN locators SET STORAGE EXTERNAL;

-- audit.verify() picks seals by sealed_at; retention sums the entries of
-- the seals of a partition's range.
CREATE INDEX seals_sealed_at_idx ON audit.seals (sealed_at);
CREATE INDEX seals_ts_from_idx ON audit.seals (ts_from);

COMMENT ON TABLE audit.seals IS 'Hash chain over the audit trail: each seal covers the entries this server wrote in a window of ids and one bucket of time, or records a partition removed by retention, and holds the hash of the seal before it';
COMMENT ON COLUMN audit.seals.seal_id IS 'Position in the chain: 1, 2, 3... without gaps';
COMMENT ON COLUMN audit.seals.kind IS 'entries: seals entries; retention: records that retention removed the entries of a range of time';
COMMENT ON COLUMN audit.seals.first_entry_id IS 'First entry id of the window of its sealing round (entries seals)';
COMMENT ON COLUMN audit.seals.last_entry_id IS 'Last entry id of the window of its sealing round (entries seals)';
COMMENT ON COLUMN audit.seals.ts_from IS 'Start of the bucket of ts its entries fall in (entries), or of the removed partition (retention)';
COMMENT ON COLUMN audit.seals.ts_to IS 'End (excluded) of the bucket, or of the removed partition';
COMMENT ON COLUMN audit.seals.entry_count IS 'Entries sealed (entries), or entries sealed earlier that retention removed (retention)';
COMMENT ON COLUMN audit.seals.entry_ids IS 'Ids of the entries sealed';
COMMENT ON COLUMN audit.seals.locators IS 'CRC-32C of each entry sealed (4 bytes each, in entry order): tell which entry differs';
COMMENT ON COLUMN audit.seals.entries_hash IS 'SHA-256 of the entries sealed, each encoded and followed by the hash of its statement, in (entry_id, ts) order';
COMMENT ON COLUMN audit.seals.entry_columns IS 'Columns of audit.entries the seal covers (the first ones, in table order)';
COMMENT ON COLUMN audit.seals.statement_columns IS 'Columns of audit.statements the seal covers';
COMMENT ON COLUMN audit.seals.total_entries IS 'Entries sealed by the chain up to and including this seal';
COMMENT ON COLUMN audit.seals.detail IS 'For a retention seal: the partition removed';
COMMENT ON COLUMN audit.seals.prev_hash IS 'Hash of the seal before (zeros for seal 1)';
COMMENT ON COLUMN audit.seals.sealed_at IS 'When the seal was made';
COMMENT ON COLUMN audit.seals.hash IS 'SHA-256 of the seal''s other columns, locators by their SHA-256';
COMMENT ON COLUMN audit.seals.server_id IS 'The server whose entries the seal covers (audit.entries.server_id): the one that sealed them; NULL for a retention seal';

SELECT pg_catalog.pg_extension_config_dump('audit.seals', '');

CREATE FUNCTION audit.seal()
RETURNS bigint
LANGUAGE c VOLATILE STRICT
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'audit_seal';

COMMENT ON FUNCTION audit.seal() IS 'Seal now, in this transaction, every audit entry committed when called (after waiting for the transactions writing entries then); returns how many entries it sealed';

CREATE FUNCTION audit.verify(since timestamptz DEFAULT NULL, until timestamptz DEFAULT NULL,
	OUT status text, OUT entry_id bigint, OUT seal_id bigint, OUT detail text,
	OUT seals bigint, OUT entries bigint)
RETURNS SETOF record
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'audit_verify';

COMMENT ON FUNCTION audit.verify(timestamptz, timestamptz) IS 'Check the seals made from since until until (NULL: no bound) and the entries they cover: intact, or the first entry altered, deleted or inserted after sealing (or seal altered, chain broken) with the seal that detects it';

CREATE FUNCTION audit.digest()
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT pg_catalog.jsonb_build_object(
		'database', pg_catalog.current_database(),
		'seal_id', coalesce(s.seal_id, 0),
		'hash', pg_catalog.encode(coalesce(s.hash, pg_catalog.decode(pg_catalog.repeat('00', 32), 'hex')), 'hex'),
		'sealed_at', s.sealed_at,
		'entries', coalesce(s.total_entries, 0))
	  FROM (SELECT 1) one
	  LEFT JOIN LATERAL (SELECT * FROM audit.seals ORDER BY seal_id DESC LIMIT 1) s ON true
$$;

COMMENT ON FUNCTION audit.digest() IS 'The head of the seal chain (seal_id, hash, sealed_at, entries sealed) as JSON, to keep outside the database';

CREATE FUNCTION audit.verify_digest(digest jsonb,
	OUT status text, OUT seal_id bigint, OUT detail text)
RETURNS SETOF record
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'audit_verify_digest';

COMMENT ON FUNCTION audit.verify_digest(jsonb) IS 'Check that the seal chain extends a digest taken earlier by audit.digest(): extends, rewritten (history was rebuilt since) or broken';

CREATE FUNCTION audit._health_seals(OUT component text, OUT status text, OUT detail text)
RETURNS SETOF record
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'audit_seal_health';

COMMENT ON FUNCTION audit._health_seals() IS 'Internal: the seal chain row of opsdata.health()';

GRANT SELECT ON audit.seals TO opsdata_auditor;
GRANT EXECUTE ON FUNCTION audit.verify(timestamptz, timestamptz), audit.digest(),
	audit.verify_digest(jsonb) TO opsdata_auditor;
GRANT EXECUTE ON FUNCTION audit.seal() TO opsdata_admin;

-- The new table gets the guard of every table of the extension.
SELECT opsdata._guard_tables();

REVOKE ALL ON FUNCTION audit.seal(), audit.verify(timestamptz, timestamptz), audit.digest(),
	audit.verify_digest(jsonb), audit._health_seals() FROM PUBLIC;

-- Subscriptions also filter on the declared actor of an entry.
ALTER TABLE audit.subscriptions ADD COLUMN actors text[];
COMMENT ON COLUMN audit.subscriptions.actors IS 'Declared actors that match (pg_opsdata.audit_actor of an entry, compared exactly)';
DROP FUNCTION audit.subscribe(text, text[], text[], text[], text[], name[], text, integer, interval, text);
CREATE FUNCTION audit.subscribe(name text, classes text[] DEFAULT NULL, commands text[] DEFAULT NULL,
	outcomes text[] DEFAULT NULL, objects text[] DEFAULT NULL, roles name[] DEFAULT NULL,
	actors text[] DEFAULT NULL, predicate text DEFAULT NULL, max_deliveries integer DEFAULT 5, retention interval DEFAULT NULL,
	comment text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	id integer;
	bad text;
BEGIN
	-- A subscription copies entries of the trail into a queue: only a role
	-- that may read the trail makes one (the caller, not this function's
	-- owner: _may_read_trail() looks at the role that called subscribe()).
	IF NOT audit._may_read_trail() THEN
		RAISE EXCEPTION 'permission denied to subscribe to the audit trail'
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'A subscription copies audit entries into a queue.',
				  HINT = 'Subscriptions are made by roles that may read audit.entries (opsdata_auditor).';
	END IF;
	SELECT c INTO bad FROM pg_catalog.unnest(classes) c
	 WHERE c IS NULL OR c NOT IN ('read', 'write', 'function', 'role', 'ddl', 'misc', 'login', 'app') LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'invalid audit class "%"', bad
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Valid classes are read, write, function, role, ddl, misc, login and app.';
	END IF;
	SELECT o INTO bad FROM pg_catalog.unnest(outcomes) o
	 WHERE o IS NULL OR o NOT IN ('ok', 'error', 'rolled back', 'denied', 'failed') LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'invalid audit outcome "%"', bad
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Valid outcomes are ok, error, rolled back, denied and failed.';
	END IF;
	IF pg_catalog.array_position(commands, NULL) IS NOT NULL
	   OR pg_catalog.array_position(objects, NULL) IS NOT NULL
	   OR pg_catalog.array_position(roles, NULL) IS NOT NULL
	   OR pg_catalog.array_position(actors, NULL) IS NOT NULL THEN
		RAISE EXCEPTION 'subscription filters must not contain nulls'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF predicate IS NOT NULL THEN
		predicate := audit._check_predicate(predicate);
	END IF;
	id := audit._new_queue(name, 'subscription', max_deliveries, retention, comment);
	INSERT INTO audit.subscriptions (queue_id, classes, commands, outcomes, objects, roles, predicate, actors)
	VALUES (id, classes, (SELECT pg_catalog.array_agg(pg_catalog.upper(c)) FROM pg_catalog.unnest(commands) c),
			outcomes, objects, roles, predicate, actors);
	PERFORM audit._rules_changed('CREATE AUDIT SUBSCRIPTION', name);
	PERFORM audit._queues_changed();
	RETURN id;
END
$$;

COMMENT ON FUNCTION audit.subscribe(text, text[], text[], text[], text[], name[], text[], text, integer, interval, text) IS 'Make a queue that receives every audit entry matching the filter as it is written; returns its queue_id';
GRANT EXECUTE ON FUNCTION audit.subscribe(text, text[], text[], text[], text[], name[], text[], text, integer, interval, text) TO opsdata_admin;

-- COPY path for application events: the write-only view audit.new_events.
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


--
-- Built-in jobs are named <area>.<action>: the three of 0.1 that were not
-- take their new names, with the runs recorded under the old ones.
--
UPDATE opsdata.jobs j
   SET name = CASE j.name
				  WHEN 'prune job runs' THEN 'worker.prune_runs'
				  WHEN 'partition maintenance' THEN 'partition.maintain'
				  ELSE 'audit.index_closed_partitions' END
 WHERE j.builtin
   AND j.name IN ('prune job runs', 'partition maintenance', 'audit index closed partitions');
UPDATE opsdata.job_runs r
   SET job_name = j.name
  FROM opsdata.jobs j
 WHERE j.job_id = r.job_id AND j.builtin
   AND r.job_name IN ('prune job runs', 'partition maintenance', 'audit index closed partitions');

-- opsdata.health() on Citus: the count of a default partition's rows selects a
-- column, which Citus's planner needs.
CREATE OR REPLACE FUNCTION opsdata._health_partition(OUT component text, OUT status text, OUT detail text)
RETURNS SETOF record
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '100ms'
AS $$
DECLARE
	r record;
	n bigint;
	rows_text text;
	v_acting name := opsdata._worker_acting_role();
	v_sets integer := 0;
	v_hidden integer := 0;
	v_failed integer := 0;
	v_warned integer := 0;
BEGIN
	FOR r IN
		SELECT p.parent, p.last_status, p.last_message, p.last_run_at, p.created_at,
			   NULLIF(t.partdefid, 0)::regclass AS default_partition,
			   pg_catalog.pg_has_role(v_acting, c.relowner, 'USAGE')
			   OR pg_catalog.has_table_privilege(v_acting, c.oid, 'SELECT') AS readable,
			   p.builtin
		  FROM opsdata.partitions p
		  JOIN pg_catalog.pg_class c ON c.oid = p.parent
		  LEFT JOIN pg_catalog.pg_partitioned_table t ON t.partrelid = p.parent
		 ORDER BY p.parent::text
	LOOP
		v_sets := v_sets + 1;
		n := 0;
		rows_text := NULL;
		IF NOT r.readable AND NOT r.builtin THEN
			v_hidden := v_hidden + 1;
			IF r.last_status = 'failed' THEN
				v_failed := v_failed + 1;
			ELSIF r.last_status = 'skipped'
				  OR (r.last_run_at IS NULL AND r.created_at < pg_catalog.now() - interval '1 hour')
				  OR r.last_run_at < pg_catalog.now() - interval '1 day' THEN
				v_warned := v_warned + 1;
			END IF;
			CONTINUE;
		END IF;
		IF r.default_partition IS NOT NULL
		   AND (r.readable OR pg_catalog.has_table_privilege(v_acting, r.default_partition, 'SELECT')) THEN
			BEGIN
				EXECUTE pg_catalog.format('SELECT count(*) FROM (SELECT 1 FROM ONLY %s LIMIT 100001) x',
										  r.default_partition) INTO n;
				IF n > 0 THEN
					rows_text := pg_catalog.format('The default partition %s holds %s.', r.default_partition,
												   CASE WHEN n > 100000 THEN 'more than 100000 rows'
														WHEN n = 1 THEN '1 row' ELSE n || ' rows' END);
				END IF;
			EXCEPTION WHEN lock_not_available THEN
				rows_text := pg_catalog.format('The rows of the default partition %s were not counted: it is locked.',
											   r.default_partition);
			END;
		END IF;
		component := 'partition ' || r.parent::text;
		IF r.last_status = 'failed' THEN
			v_failed := v_failed + 1;
			status := 'error';
			detail := pg_catalog.concat_ws(' ', 'The last maintenance run failed: ' || r.last_message || '.', rows_text);
		ELSIF r.last_status = 'skipped' THEN
			v_warned := v_warned + 1;
			status := 'warning';
			detail := pg_catalog.concat_ws(' ', 'The last maintenance run skipped part of its work: ' || r.last_message || '.', rows_text);
		ELSIF r.last_run_at IS NULL AND r.created_at < pg_catalog.now() - interval '1 hour' THEN
			v_warned := v_warned + 1;
			status := 'warning';
			detail := pg_catalog.concat_ws(' ', 'Not maintained since it was put under management; check that the "partition.maintain" job runs.', rows_text);
		ELSIF r.last_run_at IS NOT NULL AND r.last_run_at < pg_catalog.now() - interval '1 day' THEN
			v_warned := v_warned + 1;
			status := 'warning';
			detail := pg_catalog.concat_ws(' ', 'Not maintained for more than a day; check that the "partition.maintain" job runs.', rows_text);
		ELSIF n > 0 AND r.last_run_at IS NOT NULL THEN
			v_warned := v_warned + 1;
			status := 'warning';
			detail := rows_text || ' Maintenance moves them into partitions; rows that stay have keys no partition may hold.';
		ELSIF rows_text IS NOT NULL THEN
			status := 'ok';
			detail := rows_text || ' The first maintenance run moves them into partitions.';
		ELSE
			CONTINUE;
		END IF;
		RETURN NEXT;
	END LOOP;

	component := 'partition maintenance';
	status := CASE WHEN v_failed > 0 THEN 'error' WHEN v_warned > 0 THEN 'warning' ELSE 'ok' END;
	detail := CASE WHEN v_sets = 0 THEN 'No partition set is managed.'
				   WHEN v_sets = 1 THEN '1 partition set is managed.'
				   ELSE pg_catalog.format('%s partition sets are managed.', v_sets) END
			  || CASE WHEN v_hidden = 1 THEN ' 1 of them is a table this role may not read.'
					  WHEN v_hidden > 1 THEN pg_catalog.format(' %s of them are tables this role may not read.', v_hidden)
					  ELSE '' END
			  || CASE WHEN v_failed > 0 THEN pg_catalog.format(' %s failed in their last maintenance run.', v_failed) ELSE '' END
			  || CASE WHEN v_warned > 0 THEN pg_catalog.format(' %s need attention.', v_warned) ELSE '' END;
	RETURN NEXT;
END
$$;


-- Metrics on Citus (src/metrics/distribute.sql).

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
	IF EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'citus')
	   AND (SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname = 'pg_dist_partition'
			   AND c.relnamespace = 'pg_catalog'::regnamespace) IS NOT NULL THEN
		IF EXISTS (SELECT FROM pg_catalog.pg_dist_partition p
					WHERE p.logicalrelid OPERATOR(pg_catalog.=) 'metrics.points'::regclass) THEN
			RETURN 'already distributed';
		END IF;
	END IF;
	PERFORM opsdata.pause_job(j.job_id) FROM opsdata.jobs j WHERE j.name = 'metrics.vitals' AND NOT j.paused;
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
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'citus') THEN
		RAISE EXCEPTION 'Citus is not installed in database "%"', pg_catalog.current_database()
			USING ERRCODE = 'feature_not_supported',
				  HINT = pg_catalog.format('%s needs Citus: preload it (shared_preload_libraries = ''citus,pg_opsdata''), run CREATE EXTENSION citus and add the worker nodes first.', what);
	END IF;
	IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER) THEN
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
	IF shard_count IS NOT NULL AND shard_count < 1 THEN
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
		distribution := CASE t.how WHEN 'reference' THEN 'reference table'
								   ELSE 'distributed by series_id' END;
		IF EXISTS (SELECT FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid OPERATOR(pg_catalog.=) t.rel) THEN
			distribution := distribution || ' (already)';
			RETURN NEXT;
			CONTINUE;
		END IF;
		IF t.how = 'reference' THEN
			PERFORM pg_catalog.create_reference_table(t.rel);
		ELSIF t.rel = 'metrics.points'::regclass AND shard_count IS NOT NULL THEN
			PERFORM pg_catalog.create_distributed_table(t.rel, 'series_id', shard_count => shard_count);
		ELSIF t.rel = 'metrics.points'::regclass THEN
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
			OR p.logicalrelid IN (SELECT i.inhrelid FROM pg_catalog.pg_inherits i
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

-- Imports of an older system's audit log (entries of class imported) and
-- audit queue.
ALTER TABLE audit.entries DROP CONSTRAINT entries_class_check;
ALTER TABLE audit.entries ADD CONSTRAINT entries_class_check
	CHECK (class IN ('read', 'write', 'function', 'role', 'ddl', 'misc', 'login', 'app', 'imported')) NOT VALID;
ALTER TABLE audit.entries VALIDATE CONSTRAINT entries_class_check;
ALTER TABLE audit.held_entries DROP CONSTRAINT held_entries_class_check,
	ADD CONSTRAINT held_entries_class_check
	CHECK (class IN ('read', 'write', 'function', 'role', 'ddl', 'misc', 'login', 'app', 'imported'));
COMMENT ON COLUMN audit.entries.class IS 'read, write, function, role, ddl, misc or login; app for application events; imported for the events of an older audit log (audit.import_events)';
COMMENT ON COLUMN audit.held_entries.class IS 'read, write, function, role, ddl, misc or login; app for application events; imported for the events of an older audit log (audit.import_events)';

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

GRANT INSERT ON audit.import_queue_items TO opsdata_admin;

REVOKE ALL ON FUNCTION audit._import_event(), audit._import_queue_item() FROM PUBLIC;

-- Functions are created executable by PUBLIC; the install script revokes that
-- in src/core/finish.sql, the update does it here for the new ones.
REVOKE ALL ON ALL ROUTINES IN SCHEMA opsdata, audit, learning, metrics FROM PUBLIC;

-- Imports store their rows in batches, the last one at the end of the statement.
CREATE TRIGGER import_events_end AFTER INSERT ON audit.import_events
	FOR EACH STATEMENT EXECUTE FUNCTION audit._import_event();
CREATE TRIGGER import_queue_items_end AFTER INSERT ON audit.import_queue_items
	FOR EACH STATEMENT EXECUTE FUNCTION audit._import_queue_item();

-- The functions of opsdata.distribute() name their operators with their schema.

CREATE OR REPLACE FUNCTION opsdata._distribute_worker()
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

CREATE OR REPLACE FUNCTION opsdata._require_citus_coordinator(what text)
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

CREATE OR REPLACE FUNCTION opsdata.distribute(shard_count integer DEFAULT NULL)
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

CREATE OR REPLACE FUNCTION opsdata._citus_forget(t regclass)
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

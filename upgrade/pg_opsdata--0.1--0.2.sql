-- pg_opsdata update from 0.1 to 0.2.
--
-- Every schema change of 0.2 has its step here, in the order it was made:
-- an installation updated with ALTER EXTENSION pg_opsdata UPDATE has the
-- same objects as a fresh CREATE EXTENSION of 0.2 (test/tap/003_core_upgrade.pl
-- compares them).
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

-- Functions are created executable by PUBLIC; the install script revokes that
-- in src/core/finish.sql, the update does it here for the new ones.
REVOKE ALL ON ALL ROUTINES IN SCHEMA opsdata, audit, learning, metrics FROM PUBLIC;


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
	CHECK (kind = 'retention' OR (last_entry_id >= first_entry_id AND entry_ids IS NOT NULL
								  AND locators IS NOT NULL AND entries_hash IS NOT NULL))
);

-- Locators are random bytes: never worth trying to compress.
ALTER TABLE audit.seals ALTER COLUMN locators SET STORAGE EXTERNAL;

-- audit.verify() picks seals by sealed_at; retention sums the entries of
-- the seals of a partition's range.
CREATE INDEX seals_sealed_at_idx ON audit.seals (sealed_at);
CREATE INDEX seals_ts_from_idx ON audit.seals (ts_from);

COMMENT ON TABLE audit.seals IS 'Hash chain over the audit trail: each seal covers the entries of a window of ids in one bucket of time, or records a partition removed by retention, and holds the hash of the seal before it';
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

CREATE TRIGGER refuse_change BEFORE UPDATE OR DELETE ON audit.seals
	FOR EACH ROW EXECUTE FUNCTION audit._refuse_change();

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

REVOKE ALL ON FUNCTION audit.seal(), audit.verify(timestamptz, timestamptz), audit.digest(),
	audit.verify_digest(jsonb), audit._health_seals() FROM PUBLIC;

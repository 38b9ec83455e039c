-- Partition maintenance: the plan of one set.
--
-- opsdata._partition_plan() reads a set's configuration and the catalog and
-- returns the steps that bring the set to where it should be, each a list
-- of SQL statements that the caller (src/partition/exec.c) runs in one
-- transaction with the privileges of the table's owner, under a short
-- lock_timeout.  Planning takes no lock stronger than ACCESS SHARE and
-- changes nothing.
--
-- Bounds are computed in UTC whatever the session's TimeZone: time values
-- are floored onto a grid anchored at 2000-01-03 00:00 UTC (a Monday) for
-- intervals of days and shorter, and at 2000-01-01 for intervals of months,
-- with timestamp-without-time-zone arithmetic on UTC wall-clock time, so a
-- daylight-saving change never shifts a bound.  Dates are treated as
-- midnight UTC.  Id sets use multiples of the interval.
--
-- Phases, in order; a step that fails or is skipped ends its phase:
--   finalize   complete, with FINALIZE, detaches left pending by an
--              interrupted run (the worker runs this phase after it has
--              returned its results, because FINALIZE waits for every older
--              snapshot, the caller's included); a pending partition that
--              retention drops is simply dropped, first in the retention
--              phase
--   create     partitions from the current one to premake ahead (and back
--              to start_from when a set is first managed); a slot whose rows
--              sit in the default partition is made by moving them
--   move       further slots of the default partition's rows, at most
--              partition.move_limit per run
--   retention  partitions wholly older than the cut-off: detached
--              concurrently when the set has no default partition, then
--              dropped or moved to the archive schema

CREATE FUNCTION opsdata._partition_floor(t timestamptz, iv interval)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE
		WHEN t IS NULL OR NOT pg_catalog.isfinite(t) THEN NULL
		WHEN EXTRACT(year FROM iv) = 0 AND EXTRACT(month FROM iv) = 0
		THEN pg_catalog.date_bin(iv, t AT TIME ZONE 'UTC', timestamp '2000-01-03') AT TIME ZONE 'UTC'
		ELSE (timestamp '2000-01-01'
			  + pg_catalog.make_interval(months => (pg_catalog.floor(
					((EXTRACT(year FROM t AT TIME ZONE 'UTC') - 2000) * 12
					 + EXTRACT(month FROM t AT TIME ZONE 'UTC') - 1)
					/ (EXTRACT(year FROM iv) * 12 + EXTRACT(month FROM iv)))
				* (EXTRACT(year FROM iv) * 12 + EXTRACT(month FROM iv)))::integer))
			 AT TIME ZONE 'UTC'
	END
$$;

COMMENT ON FUNCTION opsdata._partition_floor(timestamptz, interval) IS 'Internal: start, in UTC, of the partition slot a time falls in';

CREATE FUNCTION opsdata._partition_add(t timestamptz, iv interval, n bigint)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT ((t AT TIME ZONE 'UTC') + iv * n) AT TIME ZONE 'UTC'
$$;

COMMENT ON FUNCTION opsdata._partition_add(timestamptz, interval, bigint) IS 'Internal: a time moved by n intervals on the UTC wall clock';

-- A bound as the literal of a FOR VALUES clause; NULL is MINVALUE or
-- MAXVALUE (the caller says which).
CREATE FUNCTION opsdata._partition_literal(control_type regtype, t timestamptz, id bigint)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE
		WHEN control_type = 'timestamptz'::regtype
		THEN pg_catalog.quote_literal(pg_catalog.to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || '+00')
		WHEN control_type = 'date'::regtype
		THEN pg_catalog.quote_literal(pg_catalog.to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD'))
		ELSE id::text
	END
$$;

COMMENT ON FUNCTION opsdata._partition_literal(regtype, timestamptz, bigint) IS 'Internal: a partition bound as an SQL literal, times in UTC';

-- Name of a new partition: the parent's name, "_p" and the slot's start
-- (YYYYMM for months, YYYYMMDD for days, YYYYMMDD_HH24MI below a day, the
-- id for id sets), cut to fit NAMEDATALEN, with "_1", "_2"... when taken.
CREATE FUNCTION opsdata._partition_name(schema name, relname name, suffix text, taken text[])
RETURNS name
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	base text := relname;
	candidate text;
	i integer := 0;
BEGIN
	LOOP
		candidate := '_p' || suffix || CASE WHEN i > 0 THEN '_' || i ELSE '' END;
		WHILE pg_catalog.octet_length(base || candidate) > 63 LOOP
			base := pg_catalog.left(base, -1);
		END LOOP;
		candidate := base || candidate;
		IF NOT candidate = ANY (taken)
		   AND NOT EXISTS (SELECT FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
							WHERE n.nspname = schema AND c.relname = candidate) THEN
			RETURN candidate;
		END IF;
		i := i + 1;
	END LOOP;
END
$$;

COMMENT ON FUNCTION opsdata._partition_name(name, name, text, text[]) IS 'Internal: a free name for a new partition';

-- What a new partition copies from its parent: column defaults, CHECK and
-- NOT NULL constraints, generated columns, storage and compression (the
-- LIKE clause), then grants and replica identity (statements with %1$s for
-- the partition).  ATTACH adds the parent's indexes, row triggers and
-- foreign keys; the owner creates the table, so it has the parent's owner.
-- Also the columns a move copies (all but generated ones).
CREATE FUNCTION opsdata._partition_ddl_parts(parent regclass,
	OUT like_clause text, OUT cols text, OUT tail text[])
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	like_clause := pg_catalog.format('(LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING STORAGE INCLUDING COMPRESSION', parent);
	SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO cols
	  FROM pg_catalog.pg_attribute a
	 WHERE a.attrelid = parent AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '';
	SELECT coalesce(pg_catalog.array_agg(g ORDER BY g), '{}') INTO tail FROM (
		SELECT pg_catalog.format('GRANT %s ON TABLE %%1$s TO %s%s',
								 pg_catalog.string_agg(a.privilege_type, ', ' ORDER BY a.privilege_type),
								 CASE WHEN a.grantee = 0 THEN 'PUBLIC'
									  ELSE pg_catalog.replace(pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)), '%', '%%') END,
								 CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END) AS g
		  FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
		 WHERE c.oid = parent AND a.grantee <> c.relowner
		 GROUP BY a.grantee, a.is_grantable
		UNION ALL
		SELECT pg_catalog.format('GRANT %s (%s) ON TABLE %%1$s TO %s%s', x.privilege_type,
								 pg_catalog.replace(pg_catalog.quote_ident(att.attname), '%', '%%'),
								 CASE WHEN x.grantee = 0 THEN 'PUBLIC'
									  ELSE pg_catalog.replace(pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(x.grantee)), '%', '%%') END,
								 CASE WHEN x.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
		  FROM pg_catalog.pg_attribute att, pg_catalog.aclexplode(att.attacl) x
		 WHERE att.attrelid = parent AND att.attacl IS NOT NULL AND NOT att.attisdropped
		UNION ALL
		SELECT 'ALTER TABLE %1$s REPLICA IDENTITY ' || CASE c.relreplident WHEN 'f' THEN 'FULL' ELSE 'NOTHING' END
		  FROM pg_catalog.pg_class c WHERE c.oid = parent AND c.relreplident IN ('f', 'n')) t;
END
$$;

COMMENT ON FUNCTION opsdata._partition_ddl_parts(regclass) IS 'Internal: what a new partition copies from its parent, as SQL pieces';

-- The statements moving a detached partition into the archive schema,
-- renamed first when its name is taken there.
CREATE FUNCTION opsdata._partition_archive(p_schema name, p_relname name, p_archive name)
RETURNS text[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_new name;
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
					WHERE n.nspname = p_archive AND c.relname = p_relname) THEN
		RETURN ARRAY[pg_catalog.format('ALTER TABLE %I.%I SET SCHEMA %I', p_schema, p_relname, p_archive)];
	END IF;
	FOR i IN 1 .. 1000 LOOP
		v_new := pg_catalog.left(p_relname, 63 - pg_catalog.length('_' || i)) || '_' || i;
		CONTINUE WHEN EXISTS (SELECT FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
							   WHERE n.nspname IN (p_archive, p_schema) AND c.relname = v_new);
		RETURN ARRAY[pg_catalog.format('ALTER TABLE %I.%I RENAME TO %I', p_schema, p_relname, v_new),
					 pg_catalog.format('ALTER TABLE %I.%I SET SCHEMA %I', p_schema, v_new, p_archive)];
	END LOOP;
	RAISE EXCEPTION 'no free name for "%" in schema "%"', p_relname, p_archive USING ERRCODE = 'duplicate_table';
END
$$;

COMMENT ON FUNCTION opsdata._partition_archive(name, name, name) IS 'Internal: the statements moving a detached partition into the archive schema';

CREATE FUNCTION opsdata._partition_plan(p_parent regclass, p_start_from text, p_maintain boolean,
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

COMMENT ON FUNCTION opsdata._partition_plan(regclass, text, boolean) IS 'Internal: the steps that bring a partition set up to date';

-- The statements making one partition [lo, hi) of a set: an empty one
-- (create), or one holding the rows of the default partition in its range
-- (move).  ATTACH PARTITION takes SHARE UPDATE EXCLUSIVE on the parent,
-- which blocks no reader or writer, and ACCESS EXCLUSIVE on the default
-- partition when there is one.
--
-- With a default partition, the parent is first locked in ACCESS
-- EXCLUSIVE mode (after the rows are out of the default partition, before
-- the ATTACH takes the default partition, so that no query holding the
-- parent waits for the default partition meanwhile).  A query reads the
-- parent's partitions before it locks them: one that read them while the
-- ATTACH was under way, and then waited for the default partition, would
-- run with the old partitions and a snapshot taken after the commit, and
-- miss the rows moved out of the default partition (an INSERT would route
-- a row of the new range to the default partition and fail its
-- constraint).  Waiting for the parent instead, it reads the partitions
-- after the commit.  The lock is asked for under the step's lock_timeout,
-- and held until the step commits: for the rows that arrived in the
-- default partition since the move began, the ATTACH (a scan of the
-- default partition) and, in a database with a publication, the insertion
-- of the rows moved.
--
-- The rows are moved with DELETE ... RETURNING from the default partition
-- before the lock, and those that arrived meanwhile once more after it,
-- so that a steady flow of rows into the range (today's, while today's
-- partition is missing) never makes the ATTACH fail.
--
-- A move, in a database without a publication: the partition is made with
-- a CHECK constraint matching its bounds, filled from the default
-- partition, and attached (the constraint spares ATTACH its validation
-- scan, and is dropped once attached).
--
-- A move, in a database with a publication (logical replication with
-- publish_via_partition_root): rows inserted into a table that is not yet
-- a partition are not published, so the rows deleted from the default
-- partition are kept in an unlogged table of the step, the empty partition
-- is attached, and the rows are inserted into it: the DELETE and the
-- INSERT are both published, in one transaction.  Any publication of the
-- database counts, so that one created, or given the table, while the set
-- is maintained is never missed.  The default partition needs a replica
-- identity when its deletes are published.
CREATE FUNCTION opsdata._partition_step(s opsdata.partitions, parent regclass, schema name, parent_name name,
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

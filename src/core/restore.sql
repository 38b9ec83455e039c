-- Core: opsdata.check_restore(), for the test that restores a backup and
-- checks it (README.md, "Backups").  It reads the objects of every area;
-- being PL/pgSQL, it may be created before them.

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

GRANT EXECUTE ON FUNCTION opsdata.check_restore() TO opsdata_admin, opsdata_auditor;

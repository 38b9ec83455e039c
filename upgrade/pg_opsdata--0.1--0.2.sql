-- pg_opsdata update from 0.1 to 0.2.
--
-- Every schema change of 0.2 has its step here, in the order it was made:
-- an installation updated with ALTER EXTENSION pg_opsdata UPDATE has the
-- same objects as a fresh CREATE EXTENSION of 0.2 (test/tap/003_core_upgrade.pl
-- compares them).
\echo Use "ALTER EXTENSION pg_opsdata UPDATE TO '0.2'" to load this file. \quit

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

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

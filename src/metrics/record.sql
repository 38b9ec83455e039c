-- Metrics, recording: record(), record_many(), the metrics.ingest foreign
-- table for COPY, and the trigger that queues what INSERT adds to points.

CREATE FUNCTION metrics.record(name text, value double precision, tags jsonb DEFAULT '{}',
							   at timestamptz DEFAULT pg_catalog.now())
RETURNS bigint
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'metrics_record';

COMMENT ON FUNCTION metrics.record(text, double precision, jsonb, timestamptz) IS 'Record one value of a metric; returns its series id, creating the series on first use';

CREATE FUNCTION metrics.record_many(names text[], vals double precision[], tags jsonb[] DEFAULT NULL,
									ats timestamptz[] DEFAULT NULL)
RETURNS bigint
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'metrics_record_many';

COMMENT ON FUNCTION metrics.record_many(text[], double precision[], jsonb[], timestamptz[]) IS 'Record many values at once (names and tags: one per value or one for all; tags NULL: {}; ats NULL: now()); returns how many';

-- The statement trigger that queues the rollup contribution of every
-- INSERT into metrics.points.
CREATE FUNCTION metrics._points_inserted() RETURNS trigger
	LANGUAGE c AS 'MODULE_PATHNAME', 'metrics_points_inserted';
COMMENT ON FUNCTION metrics._points_inserted() IS 'Internal: queues the rollup contribution of rows inserted into metrics.points';

CREATE TRIGGER points_inserted AFTER INSERT ON metrics.points
	REFERENCING NEW TABLE AS inserted
	FOR EACH STATEMENT EXECUTE FUNCTION metrics._points_inserted();

-- COPY by name: a write-only foreign table of a wrapper of our own.
CREATE FUNCTION metrics._ingest_fdw_handler() RETURNS fdw_handler
	LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'metrics_ingest_fdw_handler';
COMMENT ON FUNCTION metrics._ingest_fdw_handler() IS 'Internal: handler of the data wrapper behind metrics.ingest';

CREATE FOREIGN DATA WRAPPER pg_opsdata_metrics_ingest HANDLER metrics._ingest_fdw_handler;
CREATE SERVER pg_opsdata_metrics_ingest FOREIGN DATA WRAPPER pg_opsdata_metrics_ingest;
COMMENT ON FOREIGN DATA WRAPPER pg_opsdata_metrics_ingest IS 'pg_opsdata: writes rows of metrics.ingest into metrics.points';
COMMENT ON SERVER pg_opsdata_metrics_ingest IS 'pg_opsdata: the server of metrics.ingest';

CREATE FOREIGN TABLE metrics.ingest (
	name	text,
	tags	text DEFAULT '{}',
	ts		timestamptz DEFAULT pg_catalog.now(),
	value	double precision
) SERVER pg_opsdata_metrics_ingest;

COMMENT ON FOREIGN TABLE metrics.ingest IS 'Write-only: COPY or INSERT points by metric name; they go to metrics.points at once, reading returns no rows';
COMMENT ON COLUMN metrics.ingest.name IS 'Metric name';
COMMENT ON COLUMN metrics.ingest.tags IS 'Tags, a JSON object of strings as text; {} when omitted';
COMMENT ON COLUMN metrics.ingest.ts IS 'When the value was observed; now() when omitted';
COMMENT ON COLUMN metrics.ingest.value IS 'Observed value, finite';

GRANT EXECUTE ON FUNCTION metrics.record(text, double precision, jsonb, timestamptz),
	metrics.record_many(text[], double precision[], jsonb[], timestamptz[]) TO opsdata_writer;
GRANT INSERT ON metrics.ingest TO opsdata_writer;

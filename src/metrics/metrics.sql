-- Metrics: the quantile sketch type, series, raw points, rollups and the
-- queue of contributions waiting to be rolled up.

--
-- metrics.sketch: a mergeable quantile sketch with 1% relative accuracy
-- (src/metrics/sketch.h).
--
CREATE TYPE metrics.sketch;

CREATE FUNCTION metrics.sketch_in(cstring) RETURNS metrics.sketch
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'metrics_sketch_in';
CREATE FUNCTION metrics.sketch_out(metrics.sketch) RETURNS cstring
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'metrics_sketch_out';
CREATE FUNCTION metrics.sketch_recv(internal) RETURNS metrics.sketch
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'metrics_sketch_recv';
CREATE FUNCTION metrics.sketch_send(metrics.sketch) RETURNS bytea
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'metrics_sketch_send';

CREATE TYPE metrics.sketch (
	INPUT = metrics.sketch_in,
	OUTPUT = metrics.sketch_out,
	RECEIVE = metrics.sketch_recv,
	SEND = metrics.sketch_send,
	INTERNALLENGTH = VARIABLE,
	ALIGNMENT = int4,
	STORAGE = extended
);

COMMENT ON TYPE metrics.sketch IS 'Mergeable quantile sketch: any quantile within 1% relative error, merges independent of order';
COMMENT ON FUNCTION metrics.sketch_in(cstring) IS 'Text input of metrics.sketch';
COMMENT ON FUNCTION metrics.sketch_out(metrics.sketch) IS 'Text output of metrics.sketch';
COMMENT ON FUNCTION metrics.sketch_recv(internal) IS 'Binary input of metrics.sketch';
COMMENT ON FUNCTION metrics.sketch_send(metrics.sketch) IS 'Binary output of metrics.sketch';

CREATE FUNCTION metrics.sketch_count(metrics.sketch) RETURNS bigint
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'metrics_sketch_count';
CREATE FUNCTION metrics.sketch_sum(metrics.sketch) RETURNS double precision
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'metrics_sketch_sum';
CREATE FUNCTION metrics.sketch_min(metrics.sketch) RETURNS double precision
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'metrics_sketch_min';
CREATE FUNCTION metrics.sketch_max(metrics.sketch) RETURNS double precision
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'metrics_sketch_max';
CREATE FUNCTION metrics.quantile(sketch metrics.sketch, q double precision) RETURNS double precision
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'metrics_quantile';
CREATE FUNCTION metrics.quantiles(sketch metrics.sketch, qs double precision[]) RETURNS double precision[]
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'metrics_quantiles';
CREATE FUNCTION metrics.sketch_merge(a metrics.sketch, b metrics.sketch) RETURNS metrics.sketch
	LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'metrics_sketch_merge2';

COMMENT ON FUNCTION metrics.sketch_count(metrics.sketch) IS 'Number of values in the sketch';
COMMENT ON FUNCTION metrics.sketch_sum(metrics.sketch) IS 'Sum of the values, exact then rounded once to float8';
COMMENT ON FUNCTION metrics.sketch_min(metrics.sketch) IS 'Smallest value (exact); NULL for an empty sketch';
COMMENT ON FUNCTION metrics.sketch_max(metrics.sketch) IS 'Largest value (exact); NULL for an empty sketch';
COMMENT ON FUNCTION metrics.quantile(metrics.sketch, double precision) IS 'The q-quantile (0 <= q <= 1), within 1% of the value percentile_disc(q) would return';
COMMENT ON FUNCTION metrics.quantiles(metrics.sketch, double precision[]) IS 'Several quantiles at once, in the order given';
COMMENT ON FUNCTION metrics.sketch_merge(metrics.sketch, metrics.sketch) IS 'Sketch of the values of both sketches; NULL counts as empty';

-- Aggregate support: one state for both aggregates, parallel-safe.
CREATE FUNCTION metrics._sketch_agg_trans(internal, double precision) RETURNS internal
	LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'metrics_sketch_agg_trans';
CREATE FUNCTION metrics._sketch_union_trans(internal, metrics.sketch) RETURNS internal
	LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'metrics_sketch_union_trans';
CREATE FUNCTION metrics._sketch_combine(internal, internal) RETURNS internal
	LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'metrics_sketch_combine';
CREATE FUNCTION metrics._sketch_serialize(internal) RETURNS bytea
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'metrics_sketch_serial';
CREATE FUNCTION metrics._sketch_deserialize(bytea, internal) RETURNS internal
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'metrics_sketch_deserial';
CREATE FUNCTION metrics._sketch_final(internal) RETURNS metrics.sketch
	LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'metrics_sketch_final';

COMMENT ON FUNCTION metrics._sketch_agg_trans(internal, double precision) IS 'Internal: transition function of metrics.sketch_agg';
COMMENT ON FUNCTION metrics._sketch_union_trans(internal, metrics.sketch) IS 'Internal: transition function of metrics.sketch_union';
COMMENT ON FUNCTION metrics._sketch_combine(internal, internal) IS 'Internal: combine function of the sketch aggregates';
COMMENT ON FUNCTION metrics._sketch_serialize(internal) IS 'Internal: serialization function of the sketch aggregates';
COMMENT ON FUNCTION metrics._sketch_deserialize(bytea, internal) IS 'Internal: deserialization function of the sketch aggregates';
COMMENT ON FUNCTION metrics._sketch_final(internal) IS 'Internal: final function of the sketch aggregates';

CREATE AGGREGATE metrics.sketch_agg(double precision) (
	SFUNC = metrics._sketch_agg_trans,
	STYPE = internal,
	FINALFUNC = metrics._sketch_final,
	COMBINEFUNC = metrics._sketch_combine,
	SERIALFUNC = metrics._sketch_serialize,
	DESERIALFUNC = metrics._sketch_deserialize,
	PARALLEL = SAFE
);

CREATE AGGREGATE metrics.sketch_union(metrics.sketch) (
	SFUNC = metrics._sketch_union_trans,
	STYPE = internal,
	FINALFUNC = metrics._sketch_final,
	COMBINEFUNC = metrics._sketch_combine,
	SERIALFUNC = metrics._sketch_serialize,
	DESERIALFUNC = metrics._sketch_deserialize,
	PARALLEL = SAFE
);

COMMENT ON AGGREGATE metrics.sketch_agg(double precision) IS 'Sketch of the values; NULLs are skipped, NaN and infinities are errors';
COMMENT ON AGGREGATE metrics.sketch_union(metrics.sketch) IS 'Sketch of the values of all the sketches, the same in any order';

GRANT EXECUTE ON FUNCTION metrics.sketch_in(cstring), metrics.sketch_out(metrics.sketch),
	metrics.sketch_recv(internal), metrics.sketch_send(metrics.sketch),
	metrics.sketch_count(metrics.sketch), metrics.sketch_sum(metrics.sketch),
	metrics.sketch_min(metrics.sketch), metrics.sketch_max(metrics.sketch),
	metrics.quantile(metrics.sketch, double precision), metrics.quantiles(metrics.sketch, double precision[]),
	metrics.sketch_merge(metrics.sketch, metrics.sketch),
	metrics.sketch_agg(double precision), metrics.sketch_union(metrics.sketch)
	TO opsdata_reader, opsdata_writer;

--
-- Series, points, the rollup queue and rollups.
--
CREATE TABLE metrics.series (
	series_id	bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	name		text NOT NULL CHECK (name <> ''),
	tags		jsonb NOT NULL DEFAULT '{}' CHECK (pg_catalog.jsonb_typeof(tags) = 'object'),
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	UNIQUE (name, tags)
);

COMMENT ON TABLE metrics.series IS 'One time series per metric name and set of tags; made by the first point recorded';
COMMENT ON COLUMN metrics.series.series_id IS 'Series identifier, used by points and rollups';
COMMENT ON COLUMN metrics.series.name IS 'Metric name, e.g. http.latency_ms';
COMMENT ON COLUMN metrics.series.tags IS 'Flat JSON object of string tags, e.g. {"route": "/search"}';
COMMENT ON COLUMN metrics.series.created_at IS 'When the series was first recorded';

CREATE FUNCTION metrics._series_changed() RETURNS trigger
	LANGUAGE c AS 'MODULE_PATHNAME', 'metrics_series_changed';
COMMENT ON FUNCTION metrics._series_changed() IS 'Internal: tells every backend to forget the series ids it cached';

-- Backends cache series ids; changing or removing series must reach them.
CREATE TRIGGER series_changed AFTER UPDATE OR DELETE OR TRUNCATE ON metrics.series
	FOR EACH STATEMENT EXECUTE FUNCTION metrics._series_changed();

-- Raw points.  No index: points are written in bulk and read by time
-- (partition pruning) or through rollups; rollups never read them.
CREATE TABLE metrics.points (
	series_id	bigint NOT NULL,
	ts			timestamptz NOT NULL,
	value		double precision NOT NULL
) PARTITION BY RANGE (ts);

-- Points land here until partition maintenance has made the day's
-- partition, and maintenance moves them out.
CREATE TABLE metrics.points_default PARTITION OF metrics.points DEFAULT;

-- Points have no key: a point deleted (moved out of the default partition
-- by maintenance) is logged whole, so that logical replication can publish
-- the delete (doc/scale-out.md).  Partition maintenance gives every new
-- partition the parent's replica identity.
ALTER TABLE metrics.points REPLICA IDENTITY FULL;
ALTER TABLE metrics.points_default REPLICA IDENTITY FULL;

COMMENT ON TABLE metrics.points IS 'Raw metric points, partitioned by day; insert through this table, metrics.record(), metrics.record_many() or metrics.ingest so that rollups see them';
COMMENT ON COLUMN metrics.points.series_id IS 'Series of metrics.series';
COMMENT ON COLUMN metrics.points.ts IS 'When the value was observed';
COMMENT ON COLUMN metrics.points.value IS 'Observed value, finite';

-- Contributions of new points waiting for the rollup job: one sketch per
-- series and minute, written in the transaction that wrote the points.
CREATE TABLE metrics.rollup_queue (
	series_id		bigint NOT NULL,
	bucket_start	timestamptz NOT NULL,
	queued_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	sketch			metrics.sketch NOT NULL
);

-- No key either: its rows are logged whole when the rollup job deletes
-- them, so that a publication that carries the table (FOR ALL TABLES)
-- never makes the job fail.
ALTER TABLE metrics.rollup_queue REPLICA IDENTITY FULL;

COMMENT ON TABLE metrics.rollup_queue IS 'Sketches of points not rolled up yet, per series and minute; the rollup job consumes them, metrics.query() reads them';
COMMENT ON COLUMN metrics.rollup_queue.series_id IS 'Series of metrics.series';
COMMENT ON COLUMN metrics.rollup_queue.bucket_start IS 'Start of the minute (UTC) the points fall in';
COMMENT ON COLUMN metrics.rollup_queue.queued_at IS 'Start of the transaction that recorded the points: when they arrived';
COMMENT ON COLUMN metrics.rollup_queue.sketch IS 'Sketch of the points';

CREATE TABLE metrics.rollups (
	series_id		bigint NOT NULL,
	bucket_width	interval NOT NULL CHECK (bucket_width > interval '0'),
	bucket_start	timestamptz NOT NULL,
	count			bigint NOT NULL CHECK (count >= 0),
	sum				double precision NOT NULL,
	min				double precision,
	max				double precision,
	sketch			metrics.sketch,
	updated_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (series_id, bucket_width, bucket_start)
) WITH (fillfactor = 75);	-- room for the updates of open buckets to stay on their page (HOT)

-- Retention removes the oldest buckets of one width.
CREATE INDEX rollups_bucket_width_bucket_start_idx ON metrics.rollups (bucket_width, bucket_start);

COMMENT ON TABLE metrics.rollups IS 'Aggregates per series and time bucket, kept by the rollup job';
COMMENT ON COLUMN metrics.rollups.series_id IS 'Series of metrics.series';
COMMENT ON COLUMN metrics.rollups.bucket_width IS 'Bucket width, one of the setting metrics.rollup_widths';
COMMENT ON COLUMN metrics.rollups.bucket_start IS 'Start of the bucket, aligned in UTC';
COMMENT ON COLUMN metrics.rollups.count IS 'Points in the bucket';
COMMENT ON COLUMN metrics.rollups.sum IS 'Sum of their values, computed exactly and rounded once';
COMMENT ON COLUMN metrics.rollups.min IS 'Smallest value';
COMMENT ON COLUMN metrics.rollups.max IS 'Largest value';
COMMENT ON COLUMN metrics.rollups.sketch IS 'Quantile sketch of the values; metrics.quantile() reads quantiles from it';
COMMENT ON COLUMN metrics.rollups.updated_at IS 'When the bucket last received points';

-- Bookkeeping of the rollup job: one row, made by its first run.
CREATE TABLE metrics.rollup_state (
	singleton		boolean PRIMARY KEY DEFAULT true CHECK (singleton),
	runs			bigint NOT NULL DEFAULT 0,
	last_run_at		timestamptz,
	last_run_points	bigint NOT NULL DEFAULT 0,
	points			bigint NOT NULL DEFAULT 0,
	late_points		bigint NOT NULL DEFAULT 0,
	last_late_at	timestamptz,
	bad_points		bigint NOT NULL DEFAULT 0,
	last_bad_at		timestamptz
);

COMMENT ON TABLE metrics.rollup_state IS 'What the rollup job has done: one row';
COMMENT ON COLUMN metrics.rollup_state.singleton IS 'Always true: the table has one row';
COMMENT ON COLUMN metrics.rollup_state.runs IS 'Runs that committed';
COMMENT ON COLUMN metrics.rollup_state.last_run_at IS 'When the last run committed';
COMMENT ON COLUMN metrics.rollup_state.last_run_points IS 'Points the last run rolled up';
COMMENT ON COLUMN metrics.rollup_state.points IS 'Points rolled up, in total';
COMMENT ON COLUMN metrics.rollup_state.late_points IS 'Points not rolled up because they arrived later than metrics.rollup_lateness after their minute';
COMMENT ON COLUMN metrics.rollup_state.last_late_at IS 'When points last arrived too late';
COMMENT ON COLUMN metrics.rollup_state.bad_points IS 'Points skipped because their timestamp is outside the range rollups can bucket (0001-01-01 to 9999-12-31 UTC)';
COMMENT ON COLUMN metrics.rollup_state.last_bad_at IS 'When such points were last skipped';

SELECT pg_catalog.pg_extension_config_dump('metrics.series', '');
SELECT pg_catalog.pg_extension_config_dump('metrics.series_series_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('metrics.points_default', '');
SELECT pg_catalog.pg_extension_config_dump('metrics.rollup_queue', '');
SELECT pg_catalog.pg_extension_config_dump('metrics.rollups', '');
SELECT pg_catalog.pg_extension_config_dump('metrics.rollup_state', '');

GRANT SELECT ON metrics.series, metrics.points, metrics.rollups, metrics.rollup_queue, metrics.rollup_state
	TO opsdata_reader;
GRANT SELECT, INSERT ON metrics.series, metrics.points TO opsdata_writer;

--
-- Settings.
--
CREATE FUNCTION metrics._valid_widths(widths interval[]) RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT coalesce(array_ndims(widths) = 1, false)
	   AND array_position(widths, NULL) IS NULL
	   AND NOT EXISTS (
			SELECT FROM unnest(widths) WITH ORDINALITY AS w(width, i)
			 WHERE date_part('month', width) <> 0 OR date_part('year', width) <> 0
				OR width < interval '1 minute'
				OR date_part('epoch', width)::numeric % 60 <> 0
				OR (i > 1 AND (width <= widths[i - 1]
							   OR date_part('epoch', width)::numeric
								  % date_part('epoch', widths[i - 1])::numeric <> 0)))
$$;

COMMENT ON FUNCTION metrics._valid_widths(interval[]) IS 'Internal: whether rollup widths are whole minutes, increasing, each a multiple of the one before';

CREATE FUNCTION metrics._valid_retentions(retentions interval[]) RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT coalesce(array_ndims(retentions) <= 1, true)
	   AND NOT EXISTS (SELECT FROM unnest(retentions) AS r(retention) WHERE retention <= interval '0')
$$;

COMMENT ON FUNCTION metrics._valid_retentions(interval[]) IS 'Internal: whether rollup retentions are positive (NULL keeps a width forever)';

INSERT INTO opsdata.settings (key, type, default_value, valid_when, description) VALUES
	('metrics.points_retention', 'interval', '30 days', 'value > interval ''0'' AND value <= interval ''1000 years''',
	 'Age after which daily partitions of metrics.points are removed by partition maintenance; rollups are kept'),
	('metrics.series_limit', 'integer', '10000', 'value > 0',
	 'Most series (distinct tag sets) one metric name may have; recording a new one beyond it is an error'),
	('metrics.rollup_widths', 'interval[]', '{"1 minute","1 hour","1 day"}', 'metrics._valid_widths(value)',
	 'Bucket widths of the rollups: whole minutes, increasing, each a multiple of the one before'),
	('metrics.rollup_retention', 'interval[]', '{"7 days","90 days","5 years"}', 'metrics._valid_retentions(value)',
	 'How long rollups of each width (same order as metrics.rollup_widths) are kept; NULL or a missing entry keeps them'),
	('metrics.rollup_lateness', 'interval', '1 day', 'value >= interval ''0''',
	 'How long after the end of its minute a point may arrive and still be rolled up');
SELECT opsdata._partition_builtin('metrics.points', 'ts', '1 day', 7, 'metrics.points_retention');

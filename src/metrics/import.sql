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

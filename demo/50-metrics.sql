-- Metrics: the sample workload records the latency of its requests, the
-- rollup job rolls them up, and p50/p95/p99 per minute come back from one
-- query.
\echo '-- a sample workload: 600 "requests" over the last five minutes, each a real query whose latency is recorded'
CREATE TABLE demo_orders AS
	SELECT i AS order_id, (i % 50) AS customer_id, random() * 200 AS amount, now() - (i % 1000) * interval '1 minute' AS placed_at
	  FROM generate_series(1, 20000) i;
CREATE INDEX ON demo_orders (customer_id);

-- Each request runs a query and records how long it took, against the
-- route it served, as of the moment it ran (spread over the last five
-- minutes, so that there is something per minute to show).
DO $$
DECLARE
	i integer;
	started timestamptz;
	route text;
	dummy numeric;
BEGIN
	FOR i IN 1 .. 600 LOOP
		started := clock_timestamp();
		IF i % 3 = 0 THEN
			route := '/orders/summary';
			SELECT sum(amount) INTO dummy FROM demo_orders WHERE placed_at > now() - interval '1 day';
		ELSE
			route := '/orders/by-customer';
			SELECT sum(amount) INTO dummy FROM demo_orders WHERE customer_id = i % 50;
		END IF;
		PERFORM metrics.record('demo.request_ms',
							   extract(epoch FROM clock_timestamp() - started) * 1000,
							   jsonb_build_object('route', route),
							   date_trunc('minute', now()) - (4 - i % 5) * interval '1 minute' + (i % 60) * interval '1 second');
	END LOOP;
END
$$;

\echo '-- what is waiting for the rollup job'
SELECT count(*) AS queued_rows, sum(metrics.sketch_count(sketch)) AS queued_points FROM metrics.rollup_queue;

\echo '-- p50/p95/p99 per minute, all routes (answered from the queue and rollups alike)'
SELECT to_char(bucket, 'HH24:MI') AS minute, count, round(p50::numeric, 3) AS p50_ms,
	   round(p95::numeric, 3) AS p95_ms, round(p99::numeric, 3) AS p99_ms, round(max::numeric, 3) AS max_ms
  FROM metrics.query('demo.request_ms', '{}', now() - interval '5 minutes', now(), '1 minute');

\echo '-- the rollup job (run here by hand; the scheduler runs it every minute)'
SELECT metrics.rollup() AS points_rolled_up;

\echo '-- p50/p95/p99 per minute and route, from the rollups'
SELECT s.tags->>'route' AS route, to_char(r.bucket_start, 'HH24:MI') AS minute, r.count,
	   round(metrics.quantile(r.sketch, 0.5)::numeric, 3) AS p50_ms,
	   round(metrics.quantile(r.sketch, 0.95)::numeric, 3) AS p95_ms,
	   round(metrics.quantile(r.sketch, 0.99)::numeric, 3) AS p99_ms
  FROM metrics.rollups r JOIN metrics.series s USING (series_id)
 WHERE s.name = 'demo.request_ms' AND r.bucket_width = '1 minute'
 ORDER BY 1, 2;

\echo '-- the hour, merged from its minutes: the same answer whatever the order of the merge'
SELECT to_char(bucket, 'HH24:00') AS hour, count, round(p50::numeric, 3) AS p50_ms,
	   round(p95::numeric, 3) AS p95_ms, round(p99::numeric, 3) AS p99_ms
  FROM metrics.query('demo.request_ms', '{}', now() - interval '1 hour', now(), '1 hour');

SELECT component, status, detail FROM opsdata.health() WHERE component LIKE 'metrics%';

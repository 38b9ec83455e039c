-- The vital signs of the database, recorded by the built-in job
-- metrics.vitals every minute as pg.* series; here two samples are taken by
-- hand around some work, so that the query statistics have an interval.
\set QUIET on
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
CREATE TABLE IF NOT EXISTS demo_invoices (id int PRIMARY KEY, customer int, total numeric);
INSERT INTO demo_invoices SELECT g, g % 100, g * 1.5 FROM generate_series(1, 50000) g ON CONFLICT DO NOTHING;
ANALYZE demo_invoices;
SELECT metrics.collect_vitals() AS values_recorded \gset
SELECT count(*) FROM demo_invoices WHERE customer = 7 \gset
SELECT sum(total) FROM demo_invoices WHERE total > 100 \gset
SELECT sum(total) FROM demo_invoices WHERE total > 200 \gset
SELECT customer, count(*) FROM demo_invoices GROUP BY customer ORDER BY 2 DESC LIMIT 1 \gset
\set QUIET off

\echo '-- a second sample: connections, locks, sizes, checkpoints, WAL and the queries of the interval'
SELECT metrics.collect_vitals() AS values_recorded;
SELECT name, tags, round(value::numeric, 1) AS value
  FROM metrics.vital_signs
 WHERE name IN ('pg.connections', 'pg.locks.waiting', 'pg.xact.oldest_seconds', 'pg.database.size_bytes', 'pg.wal.bytes')
    OR (name = 'pg.table.size_bytes' AND tags->>'table' NOT LIKE 'pg\_%')
 ORDER BY name, tags::text;

\echo '-- the query shapes that took the most time in the last hour, from the pg.statements.* series'
SELECT calls, round(total_ms::numeric, 2) AS total_ms, round(mean_ms::numeric, 3) AS mean_ms, rows,
	   left(regexp_replace(query, '\s+', ' ', 'g'), 60) AS query
  FROM metrics.slow_queries(n => 5);

\echo '-- who held locks others waited for, around a moment (none here: one session)'
SELECT * FROM metrics.locks_at(now());

\echo '-- health as one JSON document, for a /health endpoint'
SELECT h->>'status' AS status, h->>'duration_ms' AS duration_ms,
	   (SELECT c->>'detail' FROM jsonb_array_elements(h->'components') c WHERE c->>'component' = 'metrics vitals') AS vitals
  FROM opsdata.health_json() h;

-- metrics.sketch: every quantile within 1% (relative) of percentile_disc on
-- uniform, exponential, bimodal and heavy-tailed data; merges give the same
-- sketch, bit for bit, in any order and in parallel; text and binary I/O
-- round-trip; bad input is refused with a clear error.
CREATE EXTENSION pg_opsdata;
\getenv abs_builddir PG_ABS_BUILDDIR

SELECT setseed(0.42);
CREATE TABLE data (dist text, part int, v float8);
INSERT INTO data
SELECT 'uniform', i % 10, random() * 1000 FROM generate_series(1, 20000) i
UNION ALL
SELECT 'exponential', i % 10, -ln(1 - random()) * 40 FROM generate_series(1, 20000) i
UNION ALL
SELECT 'bimodal', i % 10, CASE WHEN random() < 0.7 THEN 5 + random() ELSE 800 + random() * 200 END
  FROM generate_series(1, 20000) i
UNION ALL
SELECT 'pareto', i % 10, 1 / power(1 - random(), 1 / 1.1) FROM generate_series(1, 20000) i
UNION ALL
SELECT 'lognormal', i % 10, exp(3 + 2 * sqrt(-2 * ln(random())) * cos(2 * pi() * random()))
  FROM generate_series(1, 20000) i
UNION ALL
-- negative values and zeros too
SELECT 'signed', i % 10, CASE WHEN i % 7 = 0 THEN 0 ELSE (random() - 0.4) * 1e6 END
  FROM generate_series(1, 20000) i;

CREATE TABLE fractions (q float8);
INSERT INTO fractions VALUES (0), (0.0001), (0.001), (0.01), (0.05), (0.1), (0.25), (0.5),
	(0.75), (0.9), (0.95), (0.99), (0.999), (0.9999), (1);

-- Accuracy: the relative error of every quantile against percentile_disc.
WITH sketches AS (
	SELECT dist, metrics.sketch_agg(v) AS s FROM data GROUP BY dist
), exact AS (
	SELECT dist, q, percentile_disc(q) WITHIN GROUP (ORDER BY v) AS x
	  FROM data, fractions GROUP BY dist, q
), errors AS (
	SELECT e.dist, e.q,
		   CASE WHEN e.x = 0 THEN abs(metrics.quantile(s.s, e.q))
				ELSE abs(metrics.quantile(s.s, e.q) - e.x) / abs(e.x) END AS err
	  FROM exact e JOIN sketches s USING (dist)
)
SELECT dist, count(*) AS quantiles,
	   count(*) FILTER (WHERE err <= 0.01 * (1 + 1e-9)) AS within_1_percent
  FROM errors GROUP BY dist ORDER BY dist;

-- quantiles() answers like quantile(), in the order asked, NULL for NULL.
SELECT dist, metrics.quantiles(s, '{0.99, 0.5, NULL, 0}') =
	   ARRAY[metrics.quantile(s, 0.99), metrics.quantile(s, 0.5), NULL, metrics.quantile(s, 0)] AS same
  FROM (SELECT dist, metrics.sketch_agg(v) AS s FROM data GROUP BY dist) t ORDER BY dist;

-- count, min and max are exact, and so are the first and last ranks.
SELECT dist, metrics.sketch_count(s) = n AS count_exact, metrics.sketch_min(s) = lo AS min_exact,
	   metrics.sketch_max(s) = hi AS max_exact,
	   metrics.quantile(s, 0) = lo AS q0_is_min, metrics.quantile(s, 1) = hi AS q1_is_max
  FROM (SELECT dist, metrics.sketch_agg(v) AS s, count(*) AS n, min(v) AS lo, max(v) AS hi
		  FROM data GROUP BY dist) t ORDER BY dist;

-- The sum is the exact sum of the values, rounded once: integers of very
-- different magnitudes, whose float8 sum loses the small ones.
CREATE TABLE ints AS
	SELECT i, (floor(random() * 2^40) * 2^(i % 41))::float8 AS v,
		   floor(random() * 2^40)::numeric AS m, i % 41 AS e
	  FROM generate_series(1, 5000) i;
UPDATE ints SET v = (m * 2::numeric ^ e)::float8;
SELECT metrics.sketch_sum(metrics.sketch_agg(v)) = sum(m * 2::numeric ^ e)::float8 AS sum_correctly_rounded,
	   metrics.sketch_sum(metrics.sketch_agg(v ORDER BY v)) = metrics.sketch_sum(metrics.sketch_agg(v ORDER BY -v))
		   AS same_in_any_order
  FROM ints;

-- Merges: the same bytes whether built in one pass, from parts merged in
-- three orders, by pairwise sketch_merge, or by a parallel aggregate.
CREATE TABLE parts AS
	SELECT dist, part, metrics.sketch_agg(v) AS s FROM data GROUP BY dist, part;
CREATE TABLE variants (dist text, how text, bytes bytea);
INSERT INTO variants
SELECT dist, 'one pass', metrics.sketch_send(metrics.sketch_agg(v)) FROM data GROUP BY dist
UNION ALL
SELECT dist, 'parts ascending', metrics.sketch_send(metrics.sketch_union(s ORDER BY part)) FROM parts GROUP BY dist
UNION ALL
SELECT dist, 'parts descending', metrics.sketch_send(metrics.sketch_union(s ORDER BY part DESC)) FROM parts GROUP BY dist
UNION ALL
SELECT dist, 'parts shuffled', metrics.sketch_send(metrics.sketch_union(s ORDER BY md5(part::text))) FROM parts GROUP BY dist
UNION ALL
SELECT dist, 'values shuffled', metrics.sketch_send(metrics.sketch_agg(v ORDER BY md5(v::text))) FROM data GROUP BY dist
UNION ALL
SELECT a.dist, 'pairwise merge',
	   metrics.sketch_send(metrics.sketch_merge(metrics.sketch_merge(a.s, b.s),
			(SELECT metrics.sketch_union(c.s) FROM parts c WHERE c.dist = a.dist AND c.part > 1)))
  FROM parts a JOIN parts b ON b.dist = a.dist AND b.part = 1
 WHERE a.part = 0;

SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SET parallel_leader_participation = off;
ANALYZE data;
EXPLAIN (COSTS OFF) SELECT dist, metrics.sketch_agg(v) FROM data GROUP BY dist;
INSERT INTO variants
SELECT dist, 'parallel', metrics.sketch_send(metrics.sketch_agg(v)) FROM data GROUP BY dist;
CREATE TABLE pieces AS
	SELECT dist, metrics.sketch_agg(v) AS s FROM data GROUP BY dist, hashtext(v::text) % 1000;
ANALYZE pieces;
EXPLAIN (COSTS OFF) SELECT dist, metrics.sketch_union(s) FROM pieces GROUP BY dist;
INSERT INTO variants
SELECT dist, 'parallel union', metrics.sketch_send(metrics.sketch_union(s)) FROM pieces GROUP BY dist;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;
RESET parallel_leader_participation;

SELECT dist, count(*) AS variants, count(DISTINCT bytes) AS distinct_results
  FROM variants GROUP BY dist ORDER BY dist;

-- A float8 sum depends on the order of addition; the sketch's does not.
SELECT sum(v ORDER BY i) AS float_sum_one_order, sum(v ORDER BY -i) AS float_sum_other_order,
	   metrics.sketch_sum(metrics.sketch_agg(v ORDER BY i)) AS sketch_sum_one_order,
	   metrics.sketch_sum(metrics.sketch_agg(v ORDER BY -i)) AS sketch_sum_other_order
  FROM (VALUES (1, 1e16::float8), (2, 1), (3, -1e16), (4, 1)) v(i, v);

-- NULLs are skipped; no rows give NULL.
SELECT metrics.sketch_count(metrics.sketch_agg(v)) FROM (VALUES (1.0::float8), (NULL), (2)) t(v);
SELECT metrics.sketch_agg(v) IS NULL AS empty FROM data WHERE false;
SELECT metrics.sketch_union(s) IS NULL AS empty FROM parts WHERE false;
SELECT metrics.sketch_merge(NULL, NULL) IS NULL AS both_null,
	   metrics.sketch_count(metrics.sketch_merge(NULL, metrics.sketch_agg(1))) AS one_null;

-- Text form: readable, exact, and a round trip gives the same bytes.
SELECT metrics.sketch_agg(v) FROM (VALUES (1.5::float8), (-0.25), (0), (-0), (0.1), (1000)) t(v);
SELECT dist, metrics.sketch_send(s::text::metrics.sketch) = metrics.sketch_send(s) AS text_round_trip
  FROM (SELECT dist, metrics.sketch_agg(v) AS s FROM data GROUP BY dist) t ORDER BY dist;
SELECT 'count=0 min= max= sum=0x0 zero=0 positive= negative='::metrics.sketch AS empty_sketch;
SELECT metrics.quantile('count=0 min= max= sum=0x0 zero=0 positive= negative=', 0.5) AS empty_quantile,
	   metrics.sketch_min('count=0 min= max= sum=0x0 zero=0 positive= negative=') AS empty_min;

-- Binary form: COPY BINARY out and back gives the same bytes.
CREATE TABLE sketches AS SELECT dist, metrics.sketch_agg(v) AS s FROM data GROUP BY dist;
INSERT INTO sketches VALUES ('empty', 'count=0 min= max= sum=0x0 zero=0 positive= negative=');
\set binfile :abs_builddir '/results/metrics_sketch.bin'
COPY sketches TO :'binfile' (FORMAT binary);
CREATE TABLE sketches_back (LIKE sketches);
COPY sketches_back FROM :'binfile' (FORMAT binary);
SELECT a.dist, metrics.sketch_send(a.s) = metrics.sketch_send(b.s) AS binary_round_trip
  FROM sketches a JOIN sketches_back b USING (dist) ORDER BY dist;

-- The size cap: values of one sign spanning more than 2048 buckets (a ratio
-- of about 5.8e17) collapse the lowest buckets; quantiles above them keep
-- the bound, the sketch says it collapsed, and collapsing does not depend on
-- the order of merges either.
CREATE TABLE wide AS
	SELECT i, power(10, (i % 601) - 300)::float8 AS v FROM generate_series(1, 6010) i;
SELECT metrics.sketch_agg(v)::text LIKE '% collapsed' AS collapsed,
	   length(metrics.sketch_send(metrics.sketch_agg(v))) < 2048 * 4 AS bounded_size,
	   abs(metrics.quantile(metrics.sketch_agg(v), 0.99) - percentile_disc(0.99) WITHIN GROUP (ORDER BY v))
		   / percentile_disc(0.99) WITHIN GROUP (ORDER BY v) <= 0.01 AS p99_within_bound,
	   metrics.quantile(metrics.sketch_agg(v), 0.01) > percentile_disc(0.01) WITHIN GROUP (ORDER BY v)
		   AS collapsed_p1_over_estimated
  FROM wide;
SELECT count(DISTINCT b) AS distinct_results FROM (
	SELECT metrics.sketch_send(metrics.sketch_agg(v ORDER BY i)) AS b FROM wide
	UNION ALL SELECT metrics.sketch_send(metrics.sketch_agg(v ORDER BY -i)) FROM wide
	UNION ALL SELECT metrics.sketch_send(metrics.sketch_agg(v ORDER BY v)) FROM wide
	UNION ALL SELECT metrics.sketch_send(metrics.sketch_union(s)) FROM
		(SELECT metrics.sketch_agg(v) AS s FROM wide GROUP BY i % 13) p
	UNION ALL SELECT metrics.sketch_send(metrics.sketch_merge(
		(SELECT metrics.sketch_agg(v) FROM wide WHERE v < 1),
		(SELECT metrics.sketch_agg(v) FROM wide WHERE v >= 1)))
	UNION ALL SELECT metrics.sketch_send(metrics.sketch_merge(
		(SELECT metrics.sketch_agg(v) FROM wide WHERE v >= 1),
		(SELECT metrics.sketch_agg(v) FROM wide WHERE v < 1)))
) t;

-- Extreme values: the largest and smallest doubles.
SELECT metrics.sketch_count(s), metrics.sketch_sum(s), metrics.sketch_min(s), metrics.sketch_max(s)
  FROM (SELECT metrics.sketch_agg(v) AS s
		  FROM (VALUES ('1.7976931348623157e308'::float8), ('1.7976931348623157e308'),
					   ('-1.7976931348623157e308'), ('5e-324')) t(v)) x;

-- Errors.
SELECT metrics.sketch_agg(v) FROM (VALUES (1::float8), ('NaN')) t(v);
SELECT metrics.sketch_agg(v) FROM (VALUES (1::float8), ('Infinity')) t(v);
SELECT metrics.sketch_agg(v) FROM (VALUES (1::float8), ('-Infinity')) t(v);
SELECT metrics.quantile(metrics.sketch_agg(1), 1.5);
SELECT metrics.quantile(metrics.sketch_agg(1), -0.1);
SELECT metrics.quantile(metrics.sketch_agg(1), 'NaN');
SELECT metrics.quantiles(metrics.sketch_agg(1), '{0.5, 2}');
SELECT ''::metrics.sketch;
SELECT 'hello'::metrics.sketch;
SELECT 'count=1 min=1 max=1 sum=0x1 zero=0 positive= negative='::metrics.sketch;
SELECT 'count=1 min=2 max=1 sum=0x1 zero=0 positive=0:1 negative='::metrics.sketch;
SELECT 'count=1 min=1 max=1 sum=1 zero=0 positive=0:1 negative='::metrics.sketch;
SELECT 'count=2 min=1 max=1 sum=0x2 zero=0 positive=1:1,0:1 negative='::metrics.sketch;
SELECT 'count=1 min=1 max=1 sum=0x1 zero=0 positive=0:0 negative='::metrics.sketch;
SELECT 'count=2 min=1 max=1e300 sum=0x1 zero=0 positive=0:1,5000:1 negative='::metrics.sketch;
SELECT 'count=1 min=1 max=1 sum=0x1 zero=0 positive=99999:1 negative='::metrics.sketch;
SELECT 'count=1 min=-1 max=-1 sum=0x1 zero=0 positive=0:1 negative='::metrics.sketch;
SELECT 'count=1 min=1 max=1 sum=0x1 zero=0 positive=0:1 negative= extra'::metrics.sketch;
SELECT 'count=1 min=NaN max=1 sum=0x1 zero=0 positive=0:1 negative='::metrics.sketch;
SELECT 'count=0 min= max= sum=0x1 zero=0 positive= negative='::metrics.sketch;

DROP TABLE data, fractions, ints, variants, wide, parts, pieces, sketches, sketches_back;
DROP EXTENSION pg_opsdata;

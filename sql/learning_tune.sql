-- Threshold tuning: each objective of learning.optimal_threshold() against a
-- brute-force SQL computation on known data, the tuning job against both,
-- and the errors of bad objectives.
BEGIN;
CREATE EXTENSION pg_opsdata;
-- This test calls the built-in jobs' functions itself: pause the jobs before
-- the scheduler can see them, so that its runs do not race the test's.
DO $$BEGIN PERFORM opsdata.pause_job(job_id) FROM opsdata.jobs WHERE builtin; END$$;
COMMIT;
SET extra_float_digits = 0;

-- Known data: 2,000 decisions with scores on a 0.001 grid, correct more
-- often as the score grows, with some noise.
CREATE TABLE d AS
SELECT i, ((i * 7919) % 1000) / 1000.0::float8 AS score,
	   ((i * 7919) % 1000) / 1000.0 + ((i * 104729) % 500) / 1000.0 - 0.25 > 0.5 AS label
  FROM generate_series(1, 2000) i;
SELECT count(*), count(*) FILTER (WHERE label) AS positives, count(DISTINCT score) AS scores FROM d;

-- Every threshold t (a distinct score; "accept when score >= t") with its
-- true and false positives, by brute force.
CREATE VIEW sweep AS
WITH s AS (SELECT score, count(*) FILTER (WHERE label) AS pos, count(*) FILTER (WHERE NOT label) AS neg
			 FROM d GROUP BY score),
	 c AS (SELECT score, sum(pos) OVER w AS tp, sum(neg) OVER w AS fp,
				  sum(pos) OVER () AS p, sum(neg) OVER () AS n
			 FROM s WINDOW w AS (ORDER BY score DESC))
SELECT score, tp::float8 AS tp, fp::float8 AS fp, p::float8 AS p, n::float8 AS n FROM c;

-- Wilson lower bound at 95% one-sided confidence (z = 1.6448536269514722).
CREATE FUNCTION wilson(s float8, n float8, z float8 DEFAULT 1.6448536269514722) RETURNS float8
LANGUAGE sql IMMUTABLE AS $$
	SELECT (s / n + z * z / (2 * n) - z * sqrt((s / n) * (1 - s / n) / n + z * z / (4 * n * n))) / (1 + z * z / n)
$$;

-- precision at a target: the lowest threshold whose Wilson lower bound
-- reaches it (the most recall the target allows).
SELECT (SELECT min(score) FROM sweep WHERE wilson(tp, tp + fp) >= 0.9) AS brute_force,
	   learning.optimal_threshold(score, label, 'precision', 0.9) AS aggregate
  FROM d;
SELECT (SELECT min(score) FROM sweep WHERE wilson(tp, tp + fp) >= 0.9)
	   IS NOT DISTINCT FROM learning.optimal_threshold(score, label, 'precision', 0.9) AS precision_90_matches,
	   (SELECT min(score) FROM sweep WHERE wilson(tp, tp + fp, 2.3263478740408408) >= 0.8)
	   IS NOT DISTINCT FROM learning.optimal_threshold(score, label, 'precision', 0.8, 0.99) AS precision_80_at_99_matches
  FROM d;
-- The bound is not the raw ratio: the raw ratio reaches 0.9 lower down.
SELECT (SELECT min(score) FROM sweep WHERE tp / (tp + fp) >= 0.9)
	   < learning.optimal_threshold(score, label, 'precision', 0.9) AS raw_ratio_is_lower
  FROM d;

-- f_beta: highest F-beta, ties to the highest threshold.
SELECT b AS beta,
	   (SELECT score FROM sweep
		 ORDER BY (1 + b * b) * tp / ((1 + b * b) * tp + b * b * (p - tp) + fp) DESC, score DESC LIMIT 1) AS brute_force,
	   (SELECT learning.optimal_threshold(score, label, 'f_beta', b) FROM d) AS aggregate
  FROM (VALUES (0.5::float8), (1), (2)) v(b);

-- youden: highest TPR - FPR.
SELECT (SELECT score FROM sweep ORDER BY tp / p - fp / n DESC, score DESC LIMIT 1) AS brute_force,
	   learning.optimal_threshold(score, label, 'youden', NULL) AS aggregate
  FROM d;

-- Rows without a score or a label are left out; no rows, or no positive
-- label, give NULL; an unreachable precision target gives NULL.
SELECT learning.optimal_threshold(score, label, 'f_beta', 1) FROM d WHERE false;
SELECT learning.optimal_threshold(s, l, 'f_beta', 1)
  FROM (VALUES (0.9::float8, NULL::boolean), (NULL, true), (0.3, false)) v(s, l);
SELECT learning.optimal_threshold(score, label, 'precision', 0.999) FROM d;
SELECT learning.optimal_threshold(s, l, 'f_beta', 1)
  FROM (VALUES (0.9::float8, true), (0.7, false), (0.6, true), (0.2, false)) v(s, l);

-- Works in parallel plans (partial states are combined).
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
CREATE TABLE big AS SELECT i, ((i * 7919) % 100000) / 100000.0::float8 AS score,
	((i * 7919) % 100000) / 100000.0 + ((i * 104729) % 500) / 1000.0 - 0.25 > 0.5 AS label
  FROM generate_series(1, 100000::bigint) i;
ANALYZE big;
EXPLAIN (COSTS OFF) SELECT learning.optimal_threshold(score, label, 'f_beta', 1) FROM big;
SELECT learning.optimal_threshold(score, label, 'f_beta', 1) AS parallel FROM big;
RESET max_parallel_workers_per_gather;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
SELECT learning.optimal_threshold(score, label, 'f_beta', 1) AS serial FROM big;

-- The tuning job: the same data as feedback, tuned from the histograms.
-- Scores on a 0.001 grid are each the lowest score of their bin, so the job
-- finds exactly the brute-force thresholds.
INSERT INTO learning.feedback (key, score, label, source)
SELECT 'grid', score, label, 'test' FROM d;
SELECT learning.set_objective('grid', 'precision', 0.9, 100) IS NOT NULL AS set;
SELECT learning.tune() AS keys_tuned;
SELECT key, objective, target, threshold, support, positives, negatives,
	   threshold = (SELECT min(score) FROM sweep WHERE wilson(tp, tp + fp) >= 0.9) AS matches_brute_force
  FROM learning.thresholds WHERE key = 'grid';
SELECT threshold = (SELECT score FROM sweep
					 ORDER BY 2 * tp / (2 * tp + (p - tp) + fp) DESC, score DESC LIMIT 1) AS f1_matches
  FROM learning.set_objective('grid', 'f_beta', 1);
SELECT threshold = (SELECT score FROM sweep ORDER BY tp / p - fp / n DESC, score DESC LIMIT 1) AS youden_matches,
	   round(precision::numeric, 6) = round((SELECT tp / (tp + fp) FROM sweep ORDER BY tp / p - fp / n DESC, score DESC LIMIT 1)::numeric, 6) AS precision_matches,
	   round(recall::numeric, 6) = round((SELECT tp / p FROM sweep ORDER BY tp / p - fp / n DESC, score DESC LIMIT 1)::numeric, 6) AS recall_matches
  FROM learning.set_objective('grid', 'youden');

-- Scores at any resolution (ten distinct scores per bin here): the job
-- reads the raw rows of the bins that may hold a better threshold, and finds
-- the exact threshold for each objective.
INSERT INTO learning.feedback (key, score, label)
SELECT 'fine', score, label FROM big;
SELECT learning.tune() AS keys_tuned;
SELECT o AS objective, t AS target, tuned.threshold,
	   tuned.threshold = exact AS exact, abs(tuned.threshold - exact) < 0.001 AS within_0_001
  FROM (VALUES ('precision', 0.9::float8), ('precision', 0.75), ('f_beta', 1), ('f_beta', 3), ('youden', NULL)) v(o, t),
	   LATERAL learning.set_objective('fine', o, t) tuned,
	   LATERAL (SELECT learning.optimal_threshold(score, label, o, t) AS exact FROM big) e;

-- Tuning only reads what changed: after a run, nothing is pending, and new
-- feedback leaves only its own bins pending.
SELECT count(*) AS pending FROM learning.feedback_changes;
INSERT INTO learning.feedback (key, score, label) VALUES ('fine', 0.42, true), ('fine', 0.42, false), ('fine', 0.9, true);
SELECT key, bin, positives, negatives, min_score FROM learning.feedback_changes ORDER BY bin;
SELECT learning.tune() AS keys_tuned;
SELECT sum(positives + negatives) AS histogram_total, (SELECT count(*) FROM learning.feedback WHERE key = 'fine') AS feedback_rows
  FROM learning.score_bins WHERE key = 'fine';
SELECT learning.tune() AS nothing_to_do;

-- Deleting and updating feedback is reflected too; rebuild_histograms()
-- recounts from scratch and agrees.
DELETE FROM learning.feedback WHERE key = 'fine' AND score > 0.5 AND score < 0.6;
UPDATE learning.feedback SET label = NOT label WHERE key = 'fine' AND score < 0.1;
SELECT learning.tune() AS keys_tuned;
CREATE TABLE before AS SELECT bin, positives, negatives FROM learning.score_bins WHERE key = 'fine';
SELECT learning.rebuild_histograms('fine') > 0 AS rebuilt;
SELECT learning.tune() AS keys_tuned;
SELECT count(*) AS differing_bins FROM (
	(SELECT bin, positives, negatives FROM learning.score_bins WHERE key = 'fine' EXCEPT SELECT * FROM before)
	UNION ALL
	(SELECT * FROM before EXCEPT SELECT bin, positives, negatives FROM learning.score_bins WHERE key = 'fine')) x;
SELECT threshold = (SELECT learning.optimal_threshold(score, label, 'youden', NULL)
					  FROM learning.feedback WHERE key = 'fine') OR
	   abs(threshold - (SELECT learning.optimal_threshold(score, label, 'youden', NULL)
						 FROM learning.feedback WHERE key = 'fine')) < 0.001 AS still_matches
  FROM learning.thresholds WHERE key = 'fine';

-- The history has one row per change of threshold or objective.
SELECT key, objective, target, threshold IS NOT NULL AS tuned, previous IS NOT NULL AS had_previous
  FROM learning.threshold_history WHERE key = 'grid' ORDER BY change_id;

-- Keys with feedback but no objective get the default one (f_beta, beta 1).
INSERT INTO learning.feedback (key, score, label) VALUES ('fresh', 0.8, true), ('fresh', 0.3, false);
SELECT learning.tune('fresh') AS keys_tuned;
SELECT key, objective, target, min_support, threshold, precision, recall, support FROM learning.thresholds WHERE key = 'fresh';

-- TRUNCATE empties the histograms and the next run resets every threshold.
TRUNCATE learning.feedback;
SELECT learning.tune() >= 3 AS all_keys_tuned;
SELECT key, threshold, support FROM learning.thresholds ORDER BY key;

-- Errors.
SELECT learning.optimal_threshold(score, label, 'accuracy', 1) FROM d;
SELECT learning.optimal_threshold(score, label, NULL, 1) FROM d;
SELECT learning.optimal_threshold(score, label, 'precision', NULL) FROM d;
SELECT learning.optimal_threshold(score, label, 'precision', 1) FROM d;
SELECT learning.optimal_threshold(score, label, 'f_beta', 0) FROM d;
SELECT learning.optimal_threshold(score, label, 'precision', 0.9, 1.5) FROM d;
SELECT learning.optimal_threshold(score, label, CASE WHEN i < 5 THEN 'f_beta' ELSE 'youden' END, 1) FROM d;
SELECT learning.optimal_threshold(s, true, 'f_beta', 1) FROM (VALUES ('NaN'::float8)) v(s);
SELECT learning.set_objective(NULL, 'f_beta', 1);
SELECT learning.set_objective('k', 'recall', 1);
SELECT learning.set_objective('k', 'precision');
SELECT learning.set_objective('k', 'precision', 0);
SELECT learning.set_objective('k', 'f_beta', -1);
SELECT learning.set_objective('k', 'f_beta', 1, 0);
SELECT count(*) AS no_row_for_k FROM learning.thresholds WHERE key = 'k';

DROP VIEW sweep;
DROP TABLE d, big, before;
DROP FUNCTION wilson(float8, float8, float8);
DROP EXTENSION pg_opsdata;

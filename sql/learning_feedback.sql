-- Feedback: the single, batch and COPY paths, their errors, and
-- learning.threshold() with its default, min_support and cache invalidation.
BEGIN;
CREATE EXTENSION pg_opsdata;
-- This test calls the built-in jobs' functions itself: pause the jobs before
-- the scheduler can see them, so that its runs do not race the test's.
DO $$BEGIN PERFORM opsdata.pause_job(job_id) FROM opsdata.jobs WHERE builtin; END$$;
COMMIT;
SET extra_float_digits = 0;

-- One row, with every field.
SELECT learning.record_feedback('intent.refund', 0.91, true, 'answer-1', 4::smallint, 'alice', 'user',
								'{"channel": "chat"}') AS feedback_id;
-- Only the key, score and label are needed.
SELECT learning.record_feedback('intent.refund', 0.35, false) AS feedback_id;
-- A rating without a score or label is kept, and left out of tuning.
SELECT learning.record_feedback('intent.refund', NULL, NULL, rating => 1::smallint) AS feedback_id;

-- A batch, as a JSON array.
SELECT learning.record_feedback('[
	{"key": "intent.refund", "score": 0.8, "label": true, "given_by": "bob"},
	{"key": "intent.refund", "score": 0.6, "label": false, "created_at": "2026-01-02T03:04:05Z"},
	{"key": "intent.cancel", "score": 0.7, "label": true, "metadata": {"lang": "fr"}}
]'::jsonb) AS recorded;

-- COPY, for bulk loads from exported stores.
COPY learning.feedback (key, item_id, score, label, given_by, source) FROM stdin;
intent.refund	a-7	0.55	t	carol	import
intent.refund	a-8	0.45	f	carol	import
intent.cancel	a-9	0.2	f	carol	import
\.

SELECT key, item_id, score, label, rating, given_by, source, metadata FROM learning.feedback ORDER BY feedback_id;
SELECT created_at = '2026-01-02T03:04:05Z' AS kept_created_at FROM learning.feedback WHERE score = 0.6;

-- Every path reached the histograms (rows without a score or label do not count).
SELECT key, sum(positives) AS positives, sum(negatives) AS negatives
  FROM learning.feedback_changes GROUP BY key ORDER BY key;

-- Errors, which record nothing.
SELECT learning.record_feedback(NULL, 0.5, true);
SELECT learning.record_feedback('k', 1.5, true);
SELECT learning.record_feedback('k', -0.1, true);
SELECT learning.record_feedback('k', 'NaN', true);
SELECT learning.record_feedback('{"key": "k"}'::jsonb);
SELECT learning.record_feedback(NULL::jsonb);
SELECT learning.record_feedback('[{"key": "k", "scroe": 0.5}]'::jsonb);
SELECT learning.record_feedback('[{"key": "k", "score": 0.5}, 7]'::jsonb);
SELECT learning.record_feedback('[{"key": "k", "score": 0.5}, {"score": 0.5}]'::jsonb);
SELECT learning.record_feedback('[{"key": "k", "score": 2}]'::jsonb);
SELECT learning.record_feedback('[{"key": "k", "score": "high"}]'::jsonb);
\set VERBOSITY terse
COPY learning.feedback (key, score, label) FROM stdin;
k	1.5	t
\.
COPY learning.feedback (key, score, label) FROM stdin;
\N	0.5	t
\.
\set VERBOSITY default
SELECT count(*) AS rows_of_k FROM learning.feedback WHERE key = 'k';

-- learning.threshold(): the default until min_support is reached.
SELECT learning.threshold('intent.refund') AS before_tuning, learning.threshold('no.such.key') AS unknown_key;
SELECT learning.set_objective('intent.refund', 'f_beta', 1, 5) IS NOT NULL AS set;
SELECT threshold, support, min_support FROM learning.thresholds WHERE key = 'intent.refund';
SELECT learning.threshold('intent.refund') AS tuned;
SELECT learning.set_objective('intent.refund', 'f_beta', 1, 50) IS NOT NULL AS set;
SELECT learning.threshold('intent.refund') AS below_min_support;
SELECT opsdata.set_setting('learning.default_threshold', '0.65');
SELECT learning.threshold('intent.refund') AS new_default;
SELECT opsdata.reset_setting('learning.default_threshold');
SELECT learning.threshold('intent.refund') AS default_again;
SELECT learning.set_objective('intent.refund', 'f_beta', 1, 5) IS NOT NULL AS set;
SELECT learning.threshold('intent.refund') AS tuned_again;

-- A transaction sees its own change; a rolled-back change leaves no trace
-- in this backend's cache.
BEGIN;
UPDATE learning.thresholds SET threshold = 0.99 WHERE key = 'intent.refund';
SELECT learning.threshold('intent.refund') AS own_change;
ROLLBACK;
SELECT learning.threshold('intent.refund') AS after_rollback;

-- A threshold of 0 is a real threshold, not a missing one.
UPDATE learning.thresholds SET threshold = 0 WHERE key = 'intent.refund';
SELECT learning.threshold('intent.refund') AS zero;
SELECT learning.threshold(NULL) AS null_key;

-- A trigger of the table's owner that skips the row: an error, not a read
-- of a row that was never returned.
CREATE FUNCTION skip_row() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$;
CREATE TRIGGER skip BEFORE INSERT ON learning.feedback FOR EACH ROW EXECUTE FUNCTION skip_row();
SELECT learning.record_feedback('skipped', 0.5, true);
DROP TRIGGER skip ON learning.feedback;
DROP FUNCTION skip_row();

-- Health reports the area.
SELECT component, status FROM opsdata.health() WHERE component LIKE 'learning%' ORDER BY 1;

DROP EXTENSION pg_opsdata;

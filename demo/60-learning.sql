-- Learning: an assistant answers with a score, users give feedback, the
-- threshold of the intent is tuned from it, and the answers the model was
-- least sure about are queued for reviewers.
\echo '-- 500 answers to "refund" questions with the model''s score, and whether users said they were right'
SELECT setseed(0.6);
SELECT learning.record_feedback(jsonb_agg(jsonb_build_object(
		   'key', 'intent.refund', 'item_id', 'answer-' || g, 'score', round(s::numeric, 3),
		   'label', random() < s * s * (3 - 2 * s), 'source', 'user')))
	   AS feedback_recorded
  FROM (SELECT g, random() AS s FROM generate_series(1, 500) g) a;

\echo '-- the threshold in force before tuning: the default'
SELECT learning.threshold('intent.refund');

\echo '-- ask for 90% precision (Wilson lower bound), used from 100 feedback rows on'
SELECT key, objective, target, round(threshold::numeric, 3) AS threshold,
	   round(precision::numeric, 3) AS precision, round(recall::numeric, 3) AS recall, support
  FROM learning.set_objective('intent.refund', 'precision', 0.9, 100);

\echo '-- more feedback arrives; the tuning job (learning.tune) folds it in and re-tunes'
SELECT learning.record_feedback('intent.refund', 0.71, false, 'answer-501', given_by => 'dana');
SELECT learning.record_feedback('intent.refund', 0.88, true, 'answer-502', given_by => 'eli');
SELECT command AS tuning_job FROM opsdata.jobs WHERE name = 'learning.tune';
SELECT learning.tune() AS keys_tuned;
SELECT key, round(threshold::numeric, 3) AS threshold, round(precision::numeric, 3) AS precision,
	   round(recall::numeric, 3) AS recall, support, tuned_at IS NOT NULL AS tuned
  FROM learning.thresholds;
SELECT round(learning.threshold('intent.refund')::numeric, 3) AS threshold_now_in_force;

\echo '-- new answers near the boundary are offered for review (strategy: distance to the threshold)'
SELECT learning.set_strategy('intent.refund', 'threshold', 2) IS NOT NULL AS strategy_set;
SELECT learning.offer('intent.refund', 'answer-' || g, round(s::numeric, 3),
					  jsonb_build_object('question', 'refund question #' || g))
  FROM (SELECT g, random() AS s FROM generate_series(601, 610) g) a \g /dev/null
SELECT item_id, score, round(priority::numeric, 3) AS priority FROM learning.candidates ORDER BY priority DESC LIMIT 5;

\echo '-- the next candidates to label: two reviewers claim three each, never the same ones'
SELECT item_id, score, round(priority::numeric, 3) AS priority FROM learning.claim(3, 'rita', '15 minutes');
SELECT item_id, score, round(priority::numeric, 3) AS priority FROM learning.claim(3, 'sam', '15 minutes');

\echo '-- labels become feedback; each candidate needs two reviewers'
SELECT learning.submit(candidate_id, claimed_by, score > 0.5) IS NOT NULL AS submitted
  FROM learning.candidates WHERE status = 'claimed' ORDER BY candidate_id;
\echo '-- each reviewer now gets the other''s candidates; the second label closes them'
SELECT learning.submit(c.candidate_id, 'rita', c.score > 0.6) IS NOT NULL AS submitted
  FROM learning.claim(3, 'rita', '15 minutes') c;
SELECT learning.submit(c.candidate_id, 'sam', c.score > 0.6) IS NOT NULL AS submitted
  FROM learning.claim(3, 'sam', '15 minutes') c;
SELECT item_id, status, labels, reviewers, label FROM learning.candidates WHERE labels > 0 ORDER BY priority DESC;
SELECT key, candidates, labels, observed_agreement, round(kappa::numeric, 3) AS kappa FROM learning.agreement;
SELECT component, status, detail FROM opsdata.health() WHERE component LIKE 'learning%';

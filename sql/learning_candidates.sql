-- Candidates: priorities by strategy, offer and its deduplication, claims
-- in priority order, labels from several reviewers with their agreement,
-- release, expired leases, and every error.
BEGIN;
CREATE EXTENSION pg_opsdata;
-- This test calls the built-in jobs' functions itself: pause the jobs before
-- the scheduler can see them, so that its runs do not race the test's.
DO $$BEGIN PERFORM opsdata.pause_job(job_id) FROM opsdata.jobs WHERE builtin; END$$;
COMMIT;
SET extra_float_digits = 0;
SET pg_opsdata.learning_claim_rescan_interval = 0;

-- Priorities: one probability p stands for the classes (p, 1 - p).
SELECT s AS strategy, round(learning.priority(s, ARRAY[0.5])::numeric, 6) AS p_half,
	   round(learning.priority(s, ARRAY[0.9])::numeric, 6) AS p_0_9,
	   round(learning.priority(s, ARRAY[0.0])::numeric, 6) AS p_0,
	   round(learning.priority(s, ARRAY[0.6, 0.3, 0.1])::numeric, 6) AS three_classes,
	   round(learning.priority(s, ARRAY[0.34, 0.33, 0.33])::numeric, 6) AS near_uniform
  FROM (VALUES ('least_confidence'), ('margin'), ('entropy')) v(s);
-- least_confidence is 1 - top score scaled to [0, 1]: for (0.6, 0.3, 0.1),
-- (1 - 0.6) / (1 - 1/3) = 0.6; margin is 1 - (0.6 - 0.3) = 0.7; entropy is
-- H / ln 3.
SELECT round((-(0.6 * ln(0.6) + 0.3 * ln(0.3) + 0.1 * ln(0.1)) / ln(3))::numeric, 6) AS entropy_by_hand;
-- threshold: closeness of the decision score to the key's threshold.
SELECT round(learning.priority('threshold', ARRAY[0.7], 0.7)::numeric, 6) AS at_threshold,
	   round(learning.priority('threshold', ARRAY[0.9], 0.7)::numeric, 6) AS above,
	   round(learning.priority('threshold', ARRAY[0.1, 0.2, 0.7], 0.5)::numeric, 6) AS top_class;

-- Strategies per key; keys without one use learning.default_strategy.
SELECT key, strategy, required_labels FROM learning.set_strategy('intent.refund', 'margin');
SELECT key, strategy, required_labels FROM learning.set_strategy('intent.cancel', 'entropy', 2);
SELECT key, strategy, required_labels FROM learning.set_strategy('intent.cancel', 'entropy');

SELECT learning.offer('intent.refund', 'r1', 0.52, '{"text": "I want my money back"}') AS r1,
	   learning.offer('intent.refund', 'r2', 0.95) AS r2,
	   learning.offer('intent.refund', 'r3', 0.70) AS r3,
	   learning.offer('intent.cancel', 'c1', ARRAY[0.4, 0.35, 0.25]) AS c1,
	   learning.offer('intent.cancel', 'c2', ARRAY[0.9, 0.05, 0.05]) AS c2,
	   learning.offer('intent.other', 'o1', 0.6) AS o1;
SELECT candidate_id, key, item_id, round(priority::numeric, 6) AS priority, score, scores, payload, status
  FROM learning.candidates ORDER BY candidate_id;

-- The threshold strategy uses the key's current threshold (the default 0.5
-- until tuned).
SELECT learning.set_strategy('intent.other', 'threshold') IS NOT NULL AS set;
SELECT learning.offer('intent.other', 'o2', 0.55) AS o2;
SELECT round(priority::numeric, 6) AS o2_priority FROM learning.candidates WHERE item_id = 'o2';

-- Offering the same item again updates the open candidate, and keeps its id.
SELECT learning.offer('intent.refund', 'r2', 0.51, '{"text": "again"}') AS r2_again;
SELECT item_id, round(priority::numeric, 6) AS priority, score, payload FROM learning.candidates WHERE item_id = 'r2';

CREATE FUNCTION cand(item text) RETURNS bigint LANGUAGE sql
AS $$ SELECT candidate_id FROM learning.candidates WHERE item_id = item $$;

-- Claims hand out the highest priorities first, each to one reviewer.
SELECT candidate_id, item_id, round(priority::numeric, 6) AS priority, labels FROM learning.claim(2, 'ann', '5 minutes');
SELECT candidate_id, item_id, round(priority::numeric, 6) AS priority FROM learning.claim(2, 'ben', '5 minutes');
-- Only one key's candidates, when asked.
SELECT item_id FROM learning.claim(5, 'cid', '5 minutes', 'intent.other');
SELECT item_id FROM learning.claim(5, 'dan', '5 minutes');
SELECT count(*) AS nothing_left FROM learning.claim(5, 'dan', '5 minutes');
SELECT count(*) AS zero_asked FROM learning.claim(0, 'dan');
SELECT item_id, status, claimed_by, lease_until > now() AS leased FROM learning.candidates ORDER BY priority DESC;

-- Submitting a label records feedback and closes the candidate (one label
-- is required by default).
SELECT learning.submit(cand('r1'), 'ben', true) IS NOT NULL AS submitted;
SELECT key, item_id, score, label, given_by, source, metadata = jsonb_build_object('candidate_id', cand('r1')) AS names_candidate
  FROM learning.feedback ORDER BY feedback_id;
SELECT item_id, status, labels, positives, reviewers, label, claimed_by, closed_at IS NOT NULL AS closed
  FROM learning.candidates WHERE item_id = 'r1';
-- Offering a closed item again changes nothing.
SELECT learning.offer('intent.refund', 'r1', 0.5) = cand('r1') AS same_candidate;
SELECT status, round(priority::numeric, 6) AS priority FROM learning.candidates WHERE item_id = 'r1';

-- intent.cancel needs two labels: after the first, the candidate goes back
-- to the queue for someone else; who labelled it never gets it again.
SELECT learning.submit(cand('c1'), 'ann', true) IS NOT NULL AS submitted;
SELECT status, labels, claimed_by, closed_at IS NULL AS still_open FROM learning.candidates WHERE item_id = 'c1';
SELECT count(*) AS ann_gets_nothing FROM learning.claim(5, 'ann', '5 minutes', 'intent.cancel');
SELECT item_id FROM learning.claim(5, 'eve', '5 minutes', 'intent.cancel');
SELECT learning.submit(cand('c1'), 'eve', false) IS NOT NULL AS submitted;
SELECT status, labels, positives, reviewers, label AS tie_has_no_label FROM learning.candidates WHERE item_id = 'c1';
SELECT learning.submit(cand('c2'), 'dan', true) IS NOT NULL AS submitted;
SELECT item_id FROM learning.claim(1, 'eve', '5 minutes', 'intent.cancel');
SELECT learning.submit(cand('c2'), 'eve', true) IS NOT NULL AS submitted;
SELECT status, labels, positives, reviewers, label FROM learning.candidates WHERE item_id = 'c2';
-- Agreement: one candidate split, one agreed; kappa = (0.5 - 0.625) / (1 - 0.625).
SELECT key, candidates, labels, observed_agreement, round(kappa::numeric, 6) AS kappa FROM learning.agreement;

-- Release gives a lease back, only to the holder when one is named; the
-- candidate is claimable at once.
SELECT learning.release(cand('r2'), 'ben') AS not_bens, learning.release(cand('r2'), 'ann') AS released,
	   learning.release(cand('r2')) AS again;
SELECT item_id FROM learning.claim(1, 'fay', '5 minutes');

-- An expired lease is handed out again; its old holder may no longer submit.
SELECT learning.offer('intent.other', 'o3', 0.5) = cand('o3') AS offered;
SELECT item_id FROM learning.claim(1, 'gil', '1 millisecond', 'intent.other');
SELECT pg_sleep(0.01);
SELECT item_id, claimed_by FROM learning.candidates WHERE status = 'claimed' AND lease_until <= clock_timestamp();
SELECT item_id FROM learning.claim(1, 'hal', '5 minutes', 'intent.other');
SELECT learning.submit(cand('o3'), 'gil', true);
SELECT learning.submit(cand('o3'), 'hal', false) IS NOT NULL AS submitted;
-- reclaim_expired() marks expired leases open (claim hands them out anyway).
SELECT learning.offer('intent.other', 'o4', 0.45) = cand('o4') AS offered;
SELECT item_id FROM learning.claim(1, 'ian', '1 millisecond', 'intent.other');
SELECT pg_sleep(0.01);
SELECT learning.reclaim_expired() AS reclaimed;
SELECT status, claimed_by, lease_until FROM learning.candidates WHERE item_id = 'o4';

-- One backend serving several reviewers (a connection pool), with claims
-- going on from where the previous one stopped: candidates one reviewer
-- passed because they labelled them are still handed to another.
RESET pg_opsdata.learning_claim_rescan_interval;
SELECT learning.set_strategy('pool', 'least_confidence', 2) IS NOT NULL AS set;
SELECT count(learning.offer('pool', 'p' || g, g / 100.0)) AS offered
  FROM unnest(ARRAY[40, 30, 20, 10, 5, 2]) g;
SELECT item_id, learning.submit(candidate_id, 'uma', true) IS NOT NULL AS labelled
  FROM learning.claim(2, 'uma', '5 minutes', 'pool');
SELECT item_id FROM learning.claim(2, 'uma', '5 minutes', 'pool');
SELECT item_id FROM learning.claim(2, 'val', '5 minutes', 'pool');
SET pg_opsdata.learning_claim_rescan_interval = 0;

-- Errors, which change nothing.
SELECT learning.set_strategy(NULL, 'margin');
SELECT learning.set_strategy('k', 'random');
SELECT learning.set_strategy('k', 'margin', 0);
SELECT learning.priority('random', ARRAY[0.5]);
SELECT learning.priority('threshold', ARRAY[0.5]);
SELECT learning.offer(NULL, 'x', 0.5);
SELECT learning.offer('k', NULL, 0.5);
SELECT learning.offer('k', 'x', NULL::float8);
SELECT learning.offer('k', 'x', 1.2);
SELECT learning.offer('k', 'x', 'NaN'::float8);
SELECT learning.offer('k', 'x', ARRAY[]::float8[]);
SELECT learning.offer('k', 'x', ARRAY[0.5, NULL]);
SELECT learning.offer('k', 'x', ARRAY[0.5, -0.5]);
SELECT learning.offer('k', 'x', ARRAY[[0.5], [0.5]]);
SELECT learning.claim(-1, 'ann');
SELECT learning.claim(1001, 'ann');
SELECT learning.claim(NULL, 'ann');
SELECT learning.claim(1, NULL);
SELECT learning.claim(1, '');
SELECT learning.claim(1, 'ann', '0 seconds');
SELECT learning.claim(1, 'ann', '-5 minutes');
SELECT learning.submit(999, 'ann', true);
SELECT learning.submit(cand('r1'), 'ben', true);
SELECT learning.submit(NULL, 'ann', true);
SELECT learning.submit(cand('r2'), NULL, true);
SELECT learning.submit(cand('r2'), 'fay', NULL);
SELECT learning.submit(cand('r2'), 'ann', true);
SELECT learning.offer('intent.cancel', 'c3', 0.5) = cand('c3') AS offered;
SELECT item_id FROM learning.claim(1, 'ivy', '5 minutes', 'intent.cancel');
SELECT learning.submit(cand('c3'), 'ivy', true) IS NOT NULL AS submitted;
SELECT learning.submit(cand('c3'), 'ivy', true);
SELECT learning.release(999);
SELECT learning.release(NULL);
SELECT count(*) AS candidates, count(*) FILTER (WHERE key = 'k') AS of_k FROM learning.candidates;

DROP FUNCTION cand(text);
DROP EXTENSION pg_opsdata;

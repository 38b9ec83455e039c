-- Without shared_preload_libraries the learning API works the same: no
-- cache for thresholds, and claims find new candidates by rescanning.
CREATE EXTENSION pg_opsdata;
SET extra_float_digits = 0;
SELECT learning.record_feedback('[{"key": "k", "score": 0.9, "label": true}, {"key": "k", "score": 0.2, "label": false}]'::jsonb);
SELECT learning.threshold('k') AS default_threshold;
SELECT threshold, support FROM learning.set_objective('k', 'f_beta', 1, 2);
SELECT learning.threshold('k') AS tuned;
UPDATE learning.thresholds SET threshold = 0.4;
SELECT learning.threshold('k') AS updated;
SELECT learning.offer('k', 'a', 0.5), learning.offer('k', 'b', 0.9);
SELECT item_id FROM learning.claim(1, 'ann', '1 minute');
SELECT learning.offer('k', 'c', 0.55);
SET pg_opsdata.learning_claim_rescan_interval = 0;
SELECT item_id FROM learning.claim(2, 'ann', '1 minute');
SELECT component, status FROM opsdata.health() WHERE component LIKE 'learning%' ORDER BY 1;
-- The name of 0.1, pg_opsdata.claim_rescan_interval, still counts (with a
-- warning) while the new name keeps its default: a reviewer whose claim
-- found nothing sees a candidate offered since at once.
RESET pg_opsdata.learning_claim_rescan_interval;
SET pg_opsdata.claim_rescan_interval = 0;
SELECT item_id FROM learning.claim(1, 'cy', '1 minute');
SELECT learning.offer('k', 'd', 0.99);
SELECT item_id FROM learning.claim(1, 'cy', '1 minute');
RESET pg_opsdata.claim_rescan_interval;
DROP EXTENSION pg_opsdata;

-- The learning API as each role uses it: writers record feedback and work
-- the review queue, readers read thresholds and the queue, administrators
-- configure and tune, and roles without grants get nothing.  The tuning
-- job's command re-tunes a key after feedback arrives.
BEGIN;
SELECT plan(36);

CREATE ROLE learn_admin LOGIN IN ROLE opsdata_admin;
CREATE ROLE learn_writer LOGIN IN ROLE opsdata_writer;
CREATE ROLE learn_reader LOGIN IN ROLE opsdata_reader;
CREATE ROLE learn_nobody LOGIN;

-- The settings and the built-in jobs are there.
SELECT set_eq($$SELECT key FROM opsdata.settings WHERE key LIKE 'learning.%'$$,
	ARRAY['learning.default_threshold', 'learning.default_objective', 'learning.default_beta',
		  'learning.default_min_support', 'learning.precision_confidence', 'learning.default_strategy',
		  'learning.default_required_labels', 'learning.default_lease'],
	'the learning settings are registered');
SELECT set_eq($$SELECT name, command, builtin FROM opsdata.jobs WHERE name LIKE 'learning.%'$$,
	$$VALUES ('learning.tune', 'SELECT learning.tune()', true),
			 ('learning.reclaim_expired', 'SELECT learning.reclaim_expired()', true)$$,
	'the tuning and lease upkeep jobs are built-in jobs');

-- A writer records feedback and works the queue.
SET ROLE learn_writer;
SELECT lives_ok($$SELECT learning.record_feedback('api.key', 0.9, true, 'i1', NULL, 'app', 'user')$$,
	'a writer records one feedback row');
SELECT lives_ok($$SELECT learning.record_feedback('[{"key": "api.key", "score": 0.2, "label": false}]')$$,
	'a writer records a batch');
SELECT lives_ok($$INSERT INTO learning.feedback (key, score, label)
				  SELECT 'api.key', g / 100.0, g >= 60 FROM generate_series(1, 99) g$$,
	'a writer inserts feedback directly');
SELECT is(learning.threshold('api.key'), 0.5::float8, 'a writer reads the default threshold of an untuned key');
SELECT ok(learning.offer('api.key', 'q1', 0.55, '{"text": "hello"}') > 0, 'a writer offers a candidate');
SELECT ok(learning.offer('api.key', 'q2', ARRAY[0.4, 0.35, 0.25]) > 0, 'a writer offers a candidate with class scores');
CREATE TEMP TABLE claimed AS SELECT * FROM learning.claim(2, 'rita', '5 minutes');
SELECT results_eq($$SELECT item_id FROM claimed$$, ARRAY['q2', 'q1'],
	'a writer claims candidates, highest priority first');
SELECT ok(learning.submit((SELECT candidate_id FROM claimed WHERE item_id = 'q1'), 'rita', true) > 0,
	'a writer submits a label');
SELECT ok(learning.release((SELECT candidate_id FROM claimed WHERE item_id = 'q2'), 'rita'),
	'a writer releases a lease');
SELECT throws_ok($$SELECT learning.set_objective('api.key', 'youden')$$, '42501', NULL,
	'a writer cannot set objectives');
SELECT throws_ok($$SELECT learning.tune()$$, '42501', NULL, 'a writer cannot run the tuning');
SELECT throws_ok($$UPDATE learning.thresholds SET threshold = 0$$, '42501', NULL, 'a writer cannot change thresholds');
SELECT throws_ok($$UPDATE learning.candidates SET status = 'closed'$$, '42501', NULL,
	'a writer changes candidates only through the API');
SELECT throws_ok($$INSERT INTO learning.feedback_changes (key, bin, positives, negatives) VALUES ('x', 1, 1, 0)$$,
	'42501', NULL, 'a writer cannot touch the histograms');
SELECT throws_ok($$SELECT learning._tune_key('api.key')$$, '42501', NULL, 'a writer cannot call internal functions');
RESET ROLE;

SELECT is((SELECT count(*)::int FROM learning.feedback WHERE key = 'api.key'), 102,
	'the writer''s feedback is stored');
SELECT is((SELECT source FROM learning.feedback WHERE given_by = 'rita'), 'review',
	'the submitted label is stored as review feedback');
SELECT is((SELECT status FROM learning.candidates WHERE item_id = 'q1'), 'closed', 'the labelled candidate is closed');
SELECT is((SELECT status FROM learning.candidates WHERE item_id = 'q2'), 'open', 'the released candidate is open');

-- The tuning job's command, run as the scheduler would run it, tunes the key.
SELECT lives_ok((SELECT command FROM opsdata.jobs WHERE name = 'learning.tune'), 'the tuning job''s command runs');
SELECT is((SELECT support FROM learning.thresholds WHERE key = 'api.key'), 102::bigint,
	'the job tuned the key on all its feedback');
SELECT is((SELECT threshold FROM learning.thresholds WHERE key = 'api.key'),
	(SELECT learning.optimal_threshold(score, label, 'f_beta', 1) FROM learning.feedback WHERE key = 'api.key'),
	'with the default objective (F1), as the aggregate computes it');
SELECT lives_ok((SELECT command FROM opsdata.jobs WHERE name = 'learning.reclaim_expired'),
	'the lease upkeep job''s command runs');

-- A reader reads thresholds, the queue and the agreement, and writes nothing.
SET ROLE learn_reader;
SELECT is(learning.threshold('api.key'),
	(SELECT threshold FROM learning.thresholds WHERE key = 'api.key'),
	'a reader gets the tuned threshold once min_support (100) is reached');
SELECT lives_ok($$SELECT count(*) FROM learning.candidates, learning.agreement, learning.threshold_history$$,
	'a reader reads candidates, agreement and history');
SELECT ok(learning.optimal_threshold(0.5, true, 'youden', NULL) IS NULL, 'a reader may use the tuning aggregate');
SELECT throws_ok($$SELECT learning.record_feedback('api.key', 0.5, true)$$, '42501', NULL,
	'a reader cannot record feedback');
SELECT throws_ok($$SELECT learning.claim(1, 'rob')$$, '42501', NULL, 'a reader cannot claim candidates');
SELECT throws_ok($$INSERT INTO learning.feedback (key) VALUES ('x')$$, '42501', NULL,
	'a reader cannot insert feedback');
RESET ROLE;

-- An administrator configures and tunes.
SET ROLE learn_admin;
SELECT is((learning.set_objective('api.key', 'precision', 0.9, 50)).objective, 'precision',
	'an administrator sets an objective');
SELECT is((learning.set_strategy('api.key', 'entropy', 2)).required_labels, 2,
	'an administrator sets a strategy and the labels it needs');
SELECT lives_ok($$SELECT learning.tune(), learning.rebuild_histograms('api.key')$$,
	'an administrator runs the tuning and rebuilds histograms');
RESET ROLE;

-- A role without grants gets nothing.
SET ROLE learn_nobody;
SELECT throws_ok($$SELECT learning.threshold('api.key')$$, '42501', NULL, 'a role without grants cannot read thresholds');
SELECT throws_ok($$SELECT learning.claim(1, 'x')$$, '42501', NULL, 'a role without grants cannot claim');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;

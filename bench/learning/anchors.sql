-- Anchors and helpers of the learning benchmark.
--
-- The plain queue: the same table shape as learning.candidates, its usual
-- index (priority, partial on status), and the claim and submit functions
-- people write with FOR UPDATE SKIP LOCKED.  Its submit records feedback in
-- learning.feedback, exactly as learning.submit() does.
CREATE SCHEMA bench;

CREATE TABLE bench.plain_candidates (LIKE learning.candidates INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE bench.plain_candidates ADD PRIMARY KEY (candidate_id), ADD UNIQUE (key, item_id);
CREATE INDEX plain_candidates_queue_idx ON bench.plain_candidates (priority DESC) WHERE status <> 'closed';

CREATE FUNCTION bench.plain_claim(n int, reviewer text, lease interval)
RETURNS SETOF bench.plain_candidates
LANGUAGE plpgsql AS $$
BEGIN
	RETURN QUERY
	UPDATE bench.plain_candidates c
	   SET status = 'claimed', claimed_by = reviewer, lease_until = now() + lease
	 WHERE c.candidate_id IN (SELECT q.candidate_id FROM bench.plain_candidates q
							   WHERE q.status = 'open' OR (q.status = 'claimed' AND q.lease_until <= now())
							   ORDER BY q.priority DESC
							   LIMIT n
							   FOR UPDATE SKIP LOCKED)
	RETURNING c.*;
END
$$;

CREATE FUNCTION bench.plain_submit(candidate bigint, reviewer text, lbl boolean)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	c bench.plain_candidates;
	f bigint;
BEGIN
	SELECT * INTO c FROM bench.plain_candidates WHERE candidate_id = candidate FOR UPDATE;
	IF NOT FOUND OR c.status = 'closed' OR c.claimed_by IS DISTINCT FROM reviewer THEN
		RAISE EXCEPTION 'candidate % is not leased to %', candidate, reviewer;
	END IF;
	INSERT INTO learning.feedback (key, item_id, score, label, given_by, source, metadata)
	VALUES (c.key, c.item_id, c.score, lbl, reviewer, 'review', jsonb_build_object('candidate_id', candidate))
	RETURNING feedback_id INTO f;
	UPDATE bench.plain_candidates
	   SET status = 'closed', closed_at = now(), labels = labels + 1, positives = positives + lbl::int,
		   reviewers = reviewers || reviewer, label = lbl, claimed_by = NULL, lease_until = NULL
	 WHERE candidate_id = candidate;
	RETURN f;
END
$$;

-- Top both queues up to n open candidates with random priorities.
CREATE FUNCTION bench.top_up(n int) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	missing int;
	base bigint;
BEGIN
	SELECT n - count(*) INTO missing FROM learning.candidates WHERE closed_at IS NULL;
	IF missing > 0 THEN
		SELECT coalesce(max(candidate_id), 0) INTO base FROM learning.candidates;
		INSERT INTO learning.candidates (key, item_id, priority, score, scores)
		SELECT 'bench.' || (g % 20), 'item-' || (base + g), p, 0.5 + p / 2, ARRAY[0.5 + p / 2]
		  FROM (SELECT g, random() AS p FROM generate_series(1, missing) g) s;
	END IF;
	SELECT n - count(*) INTO missing FROM bench.plain_candidates WHERE closed_at IS NULL;
	IF missing > 0 THEN
		SELECT coalesce(max(candidate_id), 0) INTO base FROM bench.plain_candidates;
		INSERT INTO bench.plain_candidates (candidate_id, key, item_id, priority, score, scores)
		SELECT base + g, 'bench.' || (g % 20), 'item-' || (base + g), p, 0.5 + p / 2, ARRAY[0.5 + p / 2]
		  FROM (SELECT g, random() AS p FROM generate_series(1, missing) g) s;
	END IF;
END
$$;

-- The exact tuning anchor: every distinct score of the key as a threshold,
-- by window functions over all its feedback, the same rules as
-- learning.optimal_threshold() (Wilson bound at z = 1.6448536269514722 for
-- 95% confidence; ties to the highest threshold).
CREATE FUNCTION bench.exact_threshold(k text, objective text, target float8) RETURNS float8
LANGUAGE sql STABLE AS $$
	WITH s AS (SELECT f.score, count(*) FILTER (WHERE f.label) AS pos, count(*) FILTER (WHERE NOT f.label) AS neg
				 FROM learning.feedback f
				WHERE f.key = k AND f.score IS NOT NULL AND f.label IS NOT NULL
				GROUP BY f.score),
		 w AS (SELECT s.score, sum(pos) OVER o::float8 AS tp, sum(neg) OVER o::float8 AS fp,
					  sum(pos) OVER ()::float8 AS p, sum(neg) OVER ()::float8 AS n
				 FROM s WINDOW o AS (ORDER BY s.score DESC)),
		 v AS (SELECT w.score,
					  CASE objective
					  WHEN 'precision' THEN
						  (w.tp / (w.tp + w.fp) + 1.6448536269514722 ^ 2 / (2 * (w.tp + w.fp))
						   - 1.6448536269514722 * sqrt((w.tp / (w.tp + w.fp)) * (1 - w.tp / (w.tp + w.fp)) / (w.tp + w.fp)
														+ 1.6448536269514722 ^ 2 / (4 * (w.tp + w.fp) ^ 2)))
						  / (1 + 1.6448536269514722 ^ 2 / (w.tp + w.fp))
					  WHEN 'f_beta' THEN
						  (1 + target * target) * w.tp / ((1 + target * target) * w.tp + target * target * (w.p - w.tp) + w.fp)
					  ELSE w.tp / w.p - w.fp / w.n
					  END AS value
				 FROM w)
	SELECT CASE WHEN objective = 'precision'
				THEN (SELECT min(v.score) FROM v WHERE v.value >= target)
				ELSE (SELECT v.score FROM v ORDER BY v.value DESC, v.score DESC LIMIT 1)
		   END
$$;

-- Milliseconds a statement takes, and its result as text.
CREATE TYPE bench.timed AS (ms float8, result text);
CREATE FUNCTION bench.timed(statement text)
RETURNS bench.timed
LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz := clock_timestamp();
	r bench.timed;
BEGIN
	EXECUTE statement INTO r.result;
	r.ms := extract(epoch FROM clock_timestamp() - t0) * 1000;
	RETURN r;
END
$$;

-- One round of the tuning comparison, in one session (as a scheduler's
-- worker would run the job): per objective, 1,000 new rows, then the job's
-- re-tune and the exact computation, in alternating order.
CREATE TABLE bench.tuning (round int, objective text, job_ms float8, exact_ms float8, aggregate_ms float8,
						   job_threshold float8, exact_threshold float8, aggregate_threshold float8);

CREATE PROCEDURE bench.tuning_round(r int)
LANGUAGE plpgsql AS $$
DECLARE
	o record;
	job bench.timed;
	exact bench.timed;
	agg bench.timed;
BEGIN
	FOR o IN SELECT * FROM (VALUES ('precision', 0.9::float8), ('f_beta', 1), ('youden', NULL)) v(name, target) LOOP
		PERFORM learning.set_objective('bench.tune', o.name, o.target);
		COMMIT;
		INSERT INTO learning.feedback (key, score, label, source)
		SELECT 'bench.tune', s, random() < s * s * (3 - 2 * s), 'bench'
		  FROM (SELECT random() AS s FROM generate_series(1, 1000)) g;
		COMMIT;
		IF r % 2 = 1 THEN
			job := bench.timed('SELECT learning.tune()');
			COMMIT;
			exact := bench.timed(format('SELECT bench.exact_threshold(%L, %L, %L)', 'bench.tune', o.name, o.target));
		ELSE
			exact := bench.timed(format('SELECT bench.exact_threshold(%L, %L, %L)', 'bench.tune', o.name, o.target));
			job := bench.timed('SELECT learning.tune()');
			COMMIT;
		END IF;
		agg := bench.timed(format('SELECT learning.optimal_threshold(score, label, %L, %L) FROM learning.feedback WHERE key = %L',
								  o.name, o.target, 'bench.tune'));
		INSERT INTO bench.tuning
		SELECT r, o.name, job.ms, exact.ms, agg.ms, t.threshold, exact.result::float8, agg.result::float8
		  FROM learning.thresholds t WHERE t.key = 'bench.tune';
		COMMIT;
	END LOOP;
END
$$;

-- Learning, import: views that COPY loads the stores of another system
-- into (thresholds, candidates and their labels).  Each is a view with an
-- INSTEAD OF INSERT trigger, so that "COPY view FROM STDIN" converts and
-- checks every row with the same rules as the API, names the line of a
-- bad row (COPY's context), and loads the whole file or nothing.
-- Feedback needs no view: COPY learning.feedback loads it directly.

CREATE VIEW learning.import_thresholds AS
	SELECT NULL::text AS key, NULL::text AS objective, NULL::double precision AS target,
		   NULL::integer AS min_support, NULL::double precision AS threshold,
		   NULL::double precision AS precision, NULL::double precision AS recall,
		   NULL::bigint AS support, NULL::timestamptz AS tuned_at
	 WHERE false;

COMMENT ON VIEW learning.import_thresholds IS 'Write-only: COPY or INSERT thresholds tuned elsewhere; each row sets the objective of its key and its threshold';
COMMENT ON COLUMN learning.import_thresholds.key IS 'Key the threshold decides for';
COMMENT ON COLUMN learning.import_thresholds.objective IS 'precision, f_beta or youden; NULL for the setting learning.default_objective';
COMMENT ON COLUMN learning.import_thresholds.target IS 'Target precision, or beta for f_beta';
COMMENT ON COLUMN learning.import_thresholds.min_support IS 'Feedback rows needed before the threshold is used; NULL for the setting learning.default_min_support';
COMMENT ON COLUMN learning.import_thresholds.threshold IS 'The threshold, in [0, 1]';
COMMENT ON COLUMN learning.import_thresholds.precision IS 'Precision at the threshold, if known';
COMMENT ON COLUMN learning.import_thresholds.recall IS 'Recall at the threshold, if known';
COMMENT ON COLUMN learning.import_thresholds.support IS 'Feedback rows the threshold was tuned on';
COMMENT ON COLUMN learning.import_thresholds.tuned_at IS 'When it was tuned; now() when NULL';

CREATE FUNCTION learning._import_threshold()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	objective text := coalesce(NEW.objective, opsdata.setting('learning.default_objective'));
	target double precision;
	tuned timestamptz := coalesce(NEW.tuned_at, pg_catalog.now());
	previous double precision;
BEGIN
	IF NEW.key IS NULL THEN
		RAISE EXCEPTION 'key must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF NEW.objective IS NULL AND objective = 'f_beta' THEN
		target := coalesce(NEW.target, opsdata.setting('learning.default_beta')::double precision);
	ELSE
		target := NEW.target;
	END IF;
	target := learning._check_objective(objective, target);
	IF NEW.threshold IS NOT NULL AND NOT (NEW.threshold >= 0 AND NEW.threshold <= 1) THEN
		RAISE EXCEPTION 'threshold must be between 0 and 1, not %', NEW.threshold
			USING ERRCODE = 'numeric_value_out_of_range';
	END IF;
	IF NEW.min_support IS NOT NULL AND NEW.min_support < 1 THEN
		RAISE EXCEPTION 'min_support must be at least 1' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT t.threshold INTO previous FROM learning.thresholds t WHERE t.key = NEW.key FOR UPDATE;
	-- configured_at = tuned_at: learning.tune() leaves the key alone until
	-- feedback of the key arrives.
	INSERT INTO learning.thresholds AS t (key, objective, target, min_support, threshold, precision, recall,
										  support, tuned_at, configured_at)
	VALUES (NEW.key, objective, target,
			coalesce(NEW.min_support, opsdata.setting('learning.default_min_support')::integer),
			NEW.threshold, NEW.precision, NEW.recall, coalesce(NEW.support, 0), tuned, tuned)
	ON CONFLICT ON CONSTRAINT thresholds_pkey DO UPDATE
	   SET objective = excluded.objective, target = excluded.target, min_support = excluded.min_support,
		   threshold = excluded.threshold, precision = excluded.precision, recall = excluded.recall,
		   support = excluded.support, tuned_at = excluded.tuned_at, configured_at = excluded.configured_at;
	INSERT INTO learning.threshold_history (key, objective, target, threshold, previous, precision, recall,
											support, changed_at)
	VALUES (NEW.key, objective, target, NEW.threshold, previous, NEW.precision, NEW.recall,
			coalesce(NEW.support, 0), tuned);
	RETURN NEW;
END
$$;

COMMENT ON FUNCTION learning._import_threshold() IS 'Internal: stores a row written to learning.import_thresholds';

CREATE TRIGGER import_threshold INSTEAD OF INSERT ON learning.import_thresholds
	FOR EACH ROW EXECUTE FUNCTION learning._import_threshold();

CREATE VIEW learning.import_candidates AS
	SELECT NULL::text AS key, NULL::text AS item_id, NULL::double precision AS probability,
		   NULL::jsonb AS scores, NULL::jsonb AS payload, NULL::timestamptz AS created_at
	 WHERE false;

COMMENT ON VIEW learning.import_candidates IS 'Write-only: COPY or INSERT candidates queued elsewhere, as learning.offer() queues them';
COMMENT ON COLUMN learning.import_candidates.key IS 'Key the item belongs to';
COMMENT ON COLUMN learning.import_candidates.item_id IS 'The item to label';
COMMENT ON COLUMN learning.import_candidates.probability IS 'The probability the model gave (when scores is NULL)';
COMMENT ON COLUMN learning.import_candidates.scores IS 'The model''s scores, one per class, as a JSON array of numbers';
COMMENT ON COLUMN learning.import_candidates.payload IS 'What a reviewer needs to see, as JSON; {} when NULL';
COMMENT ON COLUMN learning.import_candidates.created_at IS 'When the item was offered; now() when NULL';

CREATE FUNCTION learning._import_candidate()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	id bigint;
	scores double precision[];
BEGIN
	IF NEW.scores IS NOT NULL THEN
		IF pg_catalog.jsonb_typeof(NEW.scores) <> 'array'
		   OR EXISTS (SELECT FROM pg_catalog.jsonb_array_elements(NEW.scores) e
					   WHERE pg_catalog.jsonb_typeof(e) <> 'number') THEN
			RAISE EXCEPTION 'scores must be a JSON array of numbers, not %', NEW.scores
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		SELECT pg_catalog.array_agg(e::double precision ORDER BY o) INTO scores
		  FROM pg_catalog.jsonb_array_elements_text(NEW.scores) WITH ORDINALITY AS x(e, o);
		id := learning.offer(NEW.key, NEW.item_id, scores, coalesce(NEW.payload, '{}'));
	ELSE
		id := learning.offer(NEW.key, NEW.item_id, NEW.probability, coalesce(NEW.payload, '{}'));
	END IF;
	IF NEW.created_at IS NOT NULL THEN
		UPDATE learning.candidates c SET created_at = NEW.created_at WHERE c.candidate_id = id;
	END IF;
	RETURN NEW;
END
$$;

COMMENT ON FUNCTION learning._import_candidate() IS 'Internal: offers a row written to learning.import_candidates';

CREATE TRIGGER import_candidate INSTEAD OF INSERT ON learning.import_candidates
	FOR EACH ROW EXECUTE FUNCTION learning._import_candidate();

CREATE VIEW learning.import_labels AS
	SELECT NULL::text AS key, NULL::text AS item_id, NULL::text AS reviewer, NULL::boolean AS label,
		   NULL::smallint AS rating, NULL::timestamptz AS created_at
	 WHERE false;

COMMENT ON VIEW learning.import_labels IS 'Write-only: COPY or INSERT reviewers'' labels of candidates, as learning.submit() records them (feedback, and the candidate closed once it has its labels)';
COMMENT ON COLUMN learning.import_labels.key IS 'Key of the candidate';
COMMENT ON COLUMN learning.import_labels.item_id IS 'Item of the candidate';
COMMENT ON COLUMN learning.import_labels.reviewer IS 'Who labelled it';
COMMENT ON COLUMN learning.import_labels.label IS 'Whether the decision was correct';
COMMENT ON COLUMN learning.import_labels.rating IS 'Optional rating';
COMMENT ON COLUMN learning.import_labels.created_at IS 'When it was labelled; now() when NULL';

CREATE FUNCTION learning._import_label()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	id bigint;
	fid bigint;
BEGIN
	SELECT c.candidate_id INTO id FROM learning.candidates c WHERE c.key = NEW.key AND c.item_id = NEW.item_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no candidate of key "%" and item "%"', NEW.key, NEW.item_id
			USING ERRCODE = 'foreign_key_violation',
				  HINT = 'Import the candidates into learning.import_candidates before their labels.';
	END IF;
	IF NEW.label IS NULL OR NEW.reviewer IS NULL THEN
		RAISE EXCEPTION 'label and reviewer must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	fid := learning.submit(id, NEW.reviewer, NEW.label, NEW.rating, NULL);
	IF NEW.created_at IS NOT NULL THEN
		UPDATE learning.feedback f SET created_at = NEW.created_at WHERE f.feedback_id = fid;
		UPDATE learning.candidates c SET closed_at = NEW.created_at
		 WHERE c.candidate_id = id AND c.closed_at IS NOT NULL;
	END IF;
	RETURN NEW;
END
$$;

COMMENT ON FUNCTION learning._import_label() IS 'Internal: records a row written to learning.import_labels as learning.submit() does';

CREATE TRIGGER import_label INSTEAD OF INSERT ON learning.import_labels
	FOR EACH ROW EXECUTE FUNCTION learning._import_label();

GRANT INSERT ON learning.import_thresholds, learning.import_candidates, learning.import_labels TO opsdata_admin;

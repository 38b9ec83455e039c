-- pg_opsdata 0.1 install script, assembled from src/<area>/*.sql.
\echo Use "CREATE EXTENSION pg_opsdata" to load this file. \quit

-- src/core/core.sql
-- Core: the collision check, schemas, roles and configuration.

-- pg_opsdata owns four schemas outright.  Refuse to install into a database
-- where one of them already exists rather than mixing our objects with the
-- user's (CREATE EXTENSION then rolls back with nothing created).
DO $$
DECLARE
	taken text[];
BEGIN
	SELECT pg_catalog.array_agg(pg_catalog.format('"%s"', nspname) ORDER BY nspname)
	  INTO taken
	  FROM pg_catalog.pg_namespace
	 WHERE nspname IN ('audit', 'learning', 'metrics', 'opsdata');
	IF pg_catalog.cardinality(taken) = 1 THEN
		RAISE EXCEPTION 'schema % already exists', taken[1]
			USING ERRCODE = 'duplicate_schema',
				  DETAIL = 'pg_opsdata creates the schemas audit, learning, metrics and opsdata and does not share them.',
				  HINT = 'Rename or drop the existing schema, then run CREATE EXTENSION again.';
	ELSIF pg_catalog.cardinality(taken) > 1 THEN
		RAISE EXCEPTION 'schemas % already exist', pg_catalog.array_to_string(taken, ', ')
			USING ERRCODE = 'duplicate_schema',
				  DETAIL = 'pg_opsdata creates the schemas audit, learning, metrics and opsdata and does not share them.',
				  HINT = 'Rename or drop the existing schemas, then run CREATE EXTENSION again.';
	END IF;
END
$$;

CREATE SCHEMA opsdata;
CREATE SCHEMA audit;
CREATE SCHEMA learning;
CREATE SCHEMA metrics;

COMMENT ON SCHEMA opsdata IS 'pg_opsdata: configuration, jobs, managed partitions and health';
COMMENT ON SCHEMA audit IS 'pg_opsdata: audit trail, seals, audit rules and the audit processing queue';
COMMENT ON SCHEMA learning IS 'pg_opsdata: feedback, tuned thresholds and active-learning candidates';
COMMENT ON SCHEMA metrics IS 'pg_opsdata: time series, points and rollups';

-- Roles are cluster-wide: created if missing, never dropped by DROP EXTENSION.
DO $$
DECLARE
	r text;
BEGIN
	FOREACH r IN ARRAY ARRAY['opsdata_admin', 'opsdata_writer', 'opsdata_reader', 'opsdata_auditor']
	LOOP
		IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
			EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
		END IF;
	END LOOP;
END
$$;

COMMENT ON ROLE opsdata_admin IS 'pg_opsdata: configure settings, jobs and partition sets, run maintenance';
COMMENT ON ROLE opsdata_writer IS 'pg_opsdata: record metrics and feedback, use the queues';
COMMENT ON ROLE opsdata_reader IS 'pg_opsdata: read metrics, learning data and health';
COMMENT ON ROLE opsdata_auditor IS 'pg_opsdata: read and verify the audit trail';

-- An administrator can do what writers and readers do.
GRANT opsdata_writer, opsdata_reader TO opsdata_admin;

REVOKE ALL ON SCHEMA opsdata, audit, learning, metrics FROM PUBLIC;
GRANT USAGE ON SCHEMA opsdata TO opsdata_admin, opsdata_writer, opsdata_reader, opsdata_auditor;
GRANT USAGE ON SCHEMA audit TO opsdata_auditor;
GRANT USAGE ON SCHEMA learning, metrics TO opsdata_writer, opsdata_reader;

--
-- Settings.  opsdata.settings lists every setting the extension knows, with
-- its type and default; opsdata.config holds only the values a user chose.
-- Only opsdata.config is dumped, so pg_dump keeps user settings and a new
-- release can change defaults.
--
CREATE TABLE opsdata.settings (
	key				text PRIMARY KEY,
	type			regtype NOT NULL,
	default_value	text NOT NULL,
	valid_when		text,
	description		text NOT NULL
);

COMMENT ON TABLE opsdata.settings IS 'Every setting pg_opsdata knows, with its type and default value';
COMMENT ON COLUMN opsdata.settings.key IS 'Setting name, "<area>.<name>"';
COMMENT ON COLUMN opsdata.settings.type IS 'Type the value must be a valid input for';
COMMENT ON COLUMN opsdata.settings.default_value IS 'Value used while opsdata.config holds none';
COMMENT ON COLUMN opsdata.settings.valid_when IS 'Boolean SQL expression over "value" (already cast to the type) that a new value must satisfy';
COMMENT ON COLUMN opsdata.settings.description IS 'What the setting controls';

CREATE TABLE opsdata.config (
	key			text PRIMARY KEY REFERENCES opsdata.settings (key) ON UPDATE CASCADE ON DELETE CASCADE,
	value		text NOT NULL,
	updated_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_by	name NOT NULL DEFAULT SESSION_USER
);

COMMENT ON TABLE opsdata.config IS 'Settings changed from their defaults; change them with opsdata.set_setting()';
COMMENT ON COLUMN opsdata.config.key IS 'Setting name, one of opsdata.settings';
COMMENT ON COLUMN opsdata.config.value IS 'Chosen value, valid input for the setting''s type';
COMMENT ON COLUMN opsdata.config.updated_at IS 'When the value was last set';
COMMENT ON COLUMN opsdata.config.updated_by IS 'Session user that last set the value';

SELECT pg_catalog.pg_extension_config_dump('opsdata.config', '');

CREATE FUNCTION opsdata.setting(key text)
RETURNS text
LANGUAGE plpgsql STABLE STRICT
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	result text;
BEGIN
	SELECT coalesce(c.value, s.default_value) INTO result
	  FROM opsdata.settings s LEFT JOIN opsdata.config c USING (key)
	 WHERE s.key = setting.key;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unrecognized pg_opsdata setting "%"', key
			USING ERRCODE = 'undefined_object',
				  HINT = 'The settings are listed in opsdata.settings.';
	END IF;
	RETURN result;
END
$$;

COMMENT ON FUNCTION opsdata.setting(text) IS 'Current value of a pg_opsdata setting: the configured one, else the default';

CREATE FUNCTION opsdata.set_setting(key text, value text)
RETURNS text
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s opsdata.settings;
	ok boolean;
BEGIN
	IF key IS NULL OR value IS NULL THEN
		RAISE EXCEPTION 'setting name and value must not be null'
			USING ERRCODE = 'null_value_not_allowed',
				  HINT = 'Use opsdata.reset_setting() to return a setting to its default.';
	END IF;
	SELECT * INTO s FROM opsdata.settings WHERE settings.key = set_setting.key;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unrecognized pg_opsdata setting "%"', key
			USING ERRCODE = 'undefined_object',
				  HINT = 'The settings are listed in opsdata.settings.';
	END IF;
	BEGIN
		EXECUTE pg_catalog.format('SELECT coalesce((%s), false) FROM (SELECT %L::%s AS value) v',
								  coalesce(s.valid_when, 'true'), value, s.type)
		   INTO ok;
	EXCEPTION WHEN data_exception OR syntax_error_or_access_rule_violation THEN
		RAISE EXCEPTION 'invalid value for pg_opsdata setting "%": "%"', key, value
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = SQLERRM,
				  HINT = pg_catalog.format('The value must be a valid %s.', s.type);
	END;
	IF NOT ok THEN
		RAISE EXCEPTION 'invalid value for pg_opsdata setting "%": "%"', key, value
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = pg_catalog.format('The value must satisfy: %s.', s.valid_when);
	END IF;
	INSERT INTO opsdata.config AS c (key, value)
		 VALUES (set_setting.key, set_setting.value)
	ON CONFLICT ON CONSTRAINT config_pkey
	DO UPDATE SET value = excluded.value, updated_at = pg_catalog.now(), updated_by = SESSION_USER;
	RETURN value;
END
$$;

COMMENT ON FUNCTION opsdata.set_setting(text, text) IS 'Set a pg_opsdata setting after checking the value against its type and constraint';

CREATE FUNCTION opsdata.reset_setting(key text)
RETURNS text
LANGUAGE plpgsql VOLATILE STRICT
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM FROM opsdata.settings WHERE settings.key = reset_setting.key;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unrecognized pg_opsdata setting "%"', key
			USING ERRCODE = 'undefined_object',
				  HINT = 'The settings are listed in opsdata.settings.';
	END IF;
	DELETE FROM opsdata.config WHERE config.key = reset_setting.key;
	RETURN opsdata.setting(key);
END
$$;

COMMENT ON FUNCTION opsdata.reset_setting(text) IS 'Return a pg_opsdata setting to its default; returns the default';

-- Every setting with its current value, for people.
CREATE VIEW opsdata.current_settings AS
	SELECT s.key, coalesce(c.value, s.default_value) AS value, s.default_value,
		   c.key IS NOT NULL AS changed, s.type, s.description, c.updated_at, c.updated_by
	  FROM opsdata.settings s LEFT JOIN opsdata.config c USING (key);

COMMENT ON VIEW opsdata.current_settings IS 'Every pg_opsdata setting with its current value and whether it was changed';

--
-- Library entry points of the core.
--
CREATE FUNCTION opsdata._health_core(OUT component text, OUT status text, OUT detail text)
RETURNS SETOF record
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'opsdata_health_core';

CREATE FUNCTION opsdata._library_version()
RETURNS text
LANGUAGE c STABLE STRICT
AS 'MODULE_PATHNAME', 'opsdata_library_version';

CREATE FUNCTION opsdata._warn_if_not_preloaded()
RETURNS boolean
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'opsdata_warn_if_not_preloaded';

COMMENT ON FUNCTION opsdata._health_core() IS 'Internal: the core''s rows of opsdata.health()';
COMMENT ON FUNCTION opsdata._library_version() IS 'Version of the loaded pg_opsdata library';
COMMENT ON FUNCTION opsdata._warn_if_not_preloaded() IS 'Internal: WARNING when the library is not preloaded';

-- src/worker/worker.sql
-- Worker: the job catalog, the history of job runs, the SQL API that
-- manages jobs, the built-in job that prunes the history, and the worker
-- rows of opsdata.health().
--
-- The scheduler of each database (src/worker/scheduler.c) reads
-- opsdata.jobs and starts a job worker for every job that is due; the job
-- worker and opsdata.run_job() run a job through the same C code
-- (src/worker/runner.c), which calls opsdata._job_start() and
-- opsdata._job_finish() below to keep the catalog and the history.

CREATE TABLE opsdata.jobs (
	job_id			bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	name			text NOT NULL UNIQUE CHECK (name <> ''),
	command			text NOT NULL CHECK (pg_catalog.btrim(command) <> ''),
	schedule		interval NOT NULL CHECK (schedule >= interval '1 second'),
	paused			boolean NOT NULL DEFAULT false,
	max_runtime		interval CHECK (max_runtime > interval '0'),
	max_retries		integer NOT NULL DEFAULT 3 CHECK (max_retries >= 0),
	retry_delay		interval NOT NULL DEFAULT '10 seconds' CHECK (retry_delay > interval '0'),
	run_as			name NOT NULL DEFAULT SESSION_USER,
	builtin			boolean NOT NULL DEFAULT false,
	next_run		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	retry_at		timestamptz,
	failures		integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	comment			text
);

COMMENT ON TABLE opsdata.jobs IS 'Jobs the per-database scheduler runs: built-in maintenance and user jobs';
COMMENT ON COLUMN opsdata.jobs.job_id IS 'Job identifier';
COMMENT ON COLUMN opsdata.jobs.name IS 'Unique job name';
COMMENT ON COLUMN opsdata.jobs.command IS 'SQL statement or procedure call the job runs; procedures may COMMIT';
COMMENT ON COLUMN opsdata.jobs.schedule IS 'Interval between the starts of two scheduled runs (at least 1 second)';
COMMENT ON COLUMN opsdata.jobs.paused IS 'A paused job is not started by the scheduler';
COMMENT ON COLUMN opsdata.jobs.max_runtime IS 'A run lasting longer is cancelled; NULL for no limit';
COMMENT ON COLUMN opsdata.jobs.max_retries IS 'Retries after a failure before waiting for the next scheduled run';
COMMENT ON COLUMN opsdata.jobs.retry_delay IS 'Delay before the first retry; later retries back off exponentially with jitter';
COMMENT ON COLUMN opsdata.jobs.run_as IS 'Role the job runs as (built-in jobs run as the extension owner)';
COMMENT ON COLUMN opsdata.jobs.builtin IS 'Created by pg_opsdata itself (rollups, maintenance, sealing, tuning)';
COMMENT ON COLUMN opsdata.jobs.next_run IS 'When the scheduler starts the job next';
COMMENT ON COLUMN opsdata.jobs.retry_at IS 'When a failed run is retried; NULL when no retry is pending';
COMMENT ON COLUMN opsdata.jobs.failures IS 'Runs that failed in a row; 0 after a run succeeds';
COMMENT ON COLUMN opsdata.jobs.created_at IS 'When the job was added';
COMMENT ON COLUMN opsdata.jobs.comment IS 'Free text';

CREATE TABLE opsdata.job_runs (
	run_id			bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	job_id			bigint NOT NULL,
	kind			text NOT NULL DEFAULT 'manual' CHECK (kind IN ('scheduled', 'retry', 'manual')),
	due_at			timestamptz,
	started_at		timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	finished_at		timestamptz,
	status			text NOT NULL DEFAULT 'running'
					CHECK (status IN ('running', 'succeeded', 'failed', 'timed out', 'crashed')),
	attempt			integer NOT NULL DEFAULT 1 CHECK (attempt >= 1),
	pid				integer,
	sqlstate		text,
	message			text,
	CHECK (finished_at IS NULL OR finished_at >= started_at),
	CHECK ((status = 'running') = (finished_at IS NULL))
);

CREATE INDEX job_runs_job_id_started_at_idx ON opsdata.job_runs (job_id, started_at DESC);
CREATE INDEX job_runs_finished_at_idx ON opsdata.job_runs (finished_at);
CREATE INDEX job_runs_running_idx ON opsdata.job_runs (job_id) WHERE status = 'running';

COMMENT ON TABLE opsdata.job_runs IS 'One row per run of a job, kept for a bounded time (settings worker.job_history_*)';
COMMENT ON COLUMN opsdata.job_runs.run_id IS 'Run identifier';
COMMENT ON COLUMN opsdata.job_runs.job_id IS 'The job that ran (opsdata.jobs.job_id)';
COMMENT ON COLUMN opsdata.job_runs.kind IS 'scheduled (started on schedule), retry (a retry after a failure) or manual (opsdata.run_job)';
COMMENT ON COLUMN opsdata.job_runs.due_at IS 'When the run was due; started_at - due_at is the dispatch delay. NULL for manual runs';
COMMENT ON COLUMN opsdata.job_runs.started_at IS 'When the run started';
COMMENT ON COLUMN opsdata.job_runs.finished_at IS 'When the run ended; NULL while running';
COMMENT ON COLUMN opsdata.job_runs.status IS 'running, succeeded, failed, timed out (cancelled past max_runtime), or crashed (the process running it ended first)';
COMMENT ON COLUMN opsdata.job_runs.attempt IS '1 for a scheduled or manual run, 2 and up for retries';
COMMENT ON COLUMN opsdata.job_runs.pid IS 'Process that ran the job';
COMMENT ON COLUMN opsdata.job_runs.sqlstate IS 'SQLSTATE of the error that ended a failed run';
COMMENT ON COLUMN opsdata.job_runs.message IS 'Error message of a run that did not succeed';

-- Every row of opsdata.jobs is dumped, built-in ones included, so that a
-- changed schedule or a paused built-in job survives pg_dump.  When the
-- dump is restored, CREATE EXTENSION has already made the built-in jobs:
-- the trigger below folds a restored built-in row into the existing one
-- instead of failing on the unique name.  opsdata.job_runs has no foreign
-- key to opsdata.jobs: pg_restore --jobs loads the two tables at once, and
-- the key would make it fail; remove_job() deletes a job's runs itself.
-- A run in progress while the dump is taken is left out of it: in the
-- restored database no process would ever finish it.
SELECT pg_catalog.pg_extension_config_dump('opsdata.jobs', '');
SELECT pg_catalog.pg_extension_config_dump('opsdata.jobs_job_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('opsdata.job_runs', 'WHERE status <> ''running''');
SELECT pg_catalog.pg_extension_config_dump('opsdata.job_runs_run_id_seq', '');

GRANT SELECT ON opsdata.jobs, opsdata.job_runs TO opsdata_admin, opsdata_reader;

INSERT INTO opsdata.settings (key, type, default_value, valid_when, description) VALUES
	('worker.job_history_succeeded', 'interval', '7 days', 'value >= interval ''0''',
	 'How long runs that succeeded are kept in opsdata.job_runs'),
	('worker.job_history_failed', 'interval', '30 days', 'value >= interval ''0''',
	 'How long runs that failed, timed out or crashed are kept in opsdata.job_runs');

--
-- Library entry points of the worker area.
--
CREATE FUNCTION opsdata._worker_register()
RETURNS void
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'worker_register_database';

COMMENT ON FUNCTION opsdata._worker_register() IS 'Internal: tell the launcher, at commit, that this database has pg_opsdata';

CREATE FUNCTION opsdata._worker_jobs_changed()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'worker_jobs_changed';

COMMENT ON FUNCTION opsdata._worker_jobs_changed() IS 'Internal: wake this database''s scheduler when opsdata.jobs changes, at commit';

CREATE FUNCTION opsdata._worker_check_command(command text)
RETURNS void
LANGUAGE c STRICT
AS 'MODULE_PATHNAME', 'worker_check_command';

COMMENT ON FUNCTION opsdata._worker_check_command(text) IS 'Internal: raise a syntax error when a job command does not parse';

CREATE FUNCTION opsdata._worker_acting_role()
RETURNS name
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'worker_acting_role';

COMMENT ON FUNCTION opsdata._worker_acting_role() IS 'Internal: the role of the calling session (after SET ROLE), seen from a SECURITY DEFINER function';

CREATE FUNCTION opsdata._worker_status(OUT component text, OUT status text, OUT detail text)
RETURNS SETOF record
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'worker_status';

COMMENT ON FUNCTION opsdata._worker_status() IS 'Internal: launcher and scheduler rows of opsdata.health(), from shared memory';

CREATE PROCEDURE opsdata.run_job(job bigint)
LANGUAGE c
AS 'MODULE_PATHNAME', 'worker_run_job';

COMMENT ON PROCEDURE opsdata.run_job(bigint) IS 'Run a job now, in this session, and record the run; raises the job''s error if it fails';

CREATE PROCEDURE opsdata.run_job(name text)
LANGUAGE c
AS 'MODULE_PATHNAME', 'worker_run_job_by_name';

COMMENT ON PROCEDURE opsdata.run_job(text) IS 'Run the job of that name now, in this session, and record the run';

CREATE PROCEDURE opsdata._run_scheduled_job(job bigint)
LANGUAGE c
AS 'MODULE_PATHNAME', 'worker_run_scheduled_job';

COMMENT ON PROCEDURE opsdata._run_scheduled_job(bigint) IS 'Internal: what a job worker calls to run a due job';

--
-- Built-in jobs fold into the existing row when a dump is restored.
--
CREATE FUNCTION opsdata._jobs_merge_builtin()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	existing bigint;
BEGIN
	IF NOT NEW.builtin THEN
		RETURN NEW;
	END IF;
	SELECT j.job_id INTO existing FROM opsdata.jobs j WHERE j.name = NEW.name AND j.builtin;
	IF NOT FOUND THEN
		RETURN NEW;
	END IF;
	-- Keep the restored identifier when it is free, so that restored runs
	-- point at their job.
	IF NEW.job_id <> existing AND NOT EXISTS (SELECT FROM opsdata.jobs o WHERE o.job_id = NEW.job_id) THEN
		UPDATE opsdata.job_runs SET job_id = NEW.job_id WHERE job_id = existing;
		UPDATE opsdata.jobs SET job_id = NEW.job_id WHERE job_id = existing;
		existing := NEW.job_id;
	END IF;
	UPDATE opsdata.jobs j
	   SET schedule = NEW.schedule, paused = NEW.paused, max_runtime = NEW.max_runtime,
		   max_retries = NEW.max_retries, retry_delay = NEW.retry_delay,
		   next_run = NEW.next_run, retry_at = NEW.retry_at, failures = NEW.failures,
		   comment = NEW.comment
	 WHERE j.job_id = existing;
	RETURN NULL;
END
$$;

COMMENT ON FUNCTION opsdata._jobs_merge_builtin() IS 'Internal: a built-in job inserted again (as pg_restore does) updates the existing one';

CREATE TRIGGER jobs_merge_builtin BEFORE INSERT ON opsdata.jobs
	FOR EACH ROW EXECUTE FUNCTION opsdata._jobs_merge_builtin();
CREATE TRIGGER jobs_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON opsdata.jobs
	FOR EACH STATEMENT EXECUTE FUNCTION opsdata._worker_jobs_changed();

--
-- Bookkeeping of a run, called by the runner as the extension owner.
--

-- The next start of a schedule after "now": missed runs are not made up.
CREATE FUNCTION opsdata._job_next_run(last timestamptz, schedule interval, now timestamptz)
RETURNS timestamptz
LANGUAGE plpgsql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	steps double precision;
	result timestamptz;
BEGIN
	result := last + schedule;
	IF result > now THEN
		RETURN result;
	END IF;
	-- Jump close to now in one step, then walk (months have no fixed length).
	steps := floor(extract(epoch FROM now - last) / extract(epoch FROM schedule));
	IF steps > 1 THEN
		result := last + schedule * (steps - 1);
	END IF;
	WHILE result <= now LOOP
		result := result + schedule;
	END LOOP;
	RETURN result;
END
$$;

COMMENT ON FUNCTION opsdata._job_next_run(timestamptz, interval, timestamptz) IS 'Internal: first start of a schedule after now';

-- Claim a run of a job whose session lock the caller holds: mark the
-- interrupted runs of earlier holders as crashed, decide whether the job
-- is due (scheduled runs), advance its schedule and insert the crash marker
-- (status running).  Returns no row when a scheduled job is no longer due.
CREATE FUNCTION opsdata._job_start(job bigint, manual boolean, pid integer,
	OUT run_id bigint, OUT name text, OUT command text, OUT run_as name,
	OUT builtin boolean, OUT max_runtime interval, OUT attempt integer)
RETURNS SETOF record
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j opsdata.jobs;
	t timestamptz := clock_timestamp();
	k text;
	due timestamptz;
	a integer := 1;
BEGIN
	-- Nobody else holds the job's lock, so a run still marked running was
	-- interrupted: its process ended before recording the outcome.
	PERFORM opsdata._job_finish(r.run_id, 'crashed', NULL,
			'The run was interrupted: the process running it ended before the run finished.')
	   FROM opsdata.job_runs r WHERE r.job_id = _job_start.job AND r.status = 'running';

	SELECT * INTO j FROM opsdata.jobs WHERE job_id = _job_start.job FOR UPDATE;
	IF NOT FOUND THEN
		IF manual THEN
			RAISE EXCEPTION 'job % does not exist', job
				USING ERRCODE = 'undefined_object',
					  HINT = 'The jobs are listed in opsdata.jobs.';
		END IF;
		RETURN;
	END IF;

	IF manual THEN
		k := 'manual';
	ELSIF j.paused THEN
		RETURN;
	ELSIF j.next_run <= t THEN
		k := 'scheduled';
		due := j.next_run;
		UPDATE opsdata.jobs SET next_run = opsdata._job_next_run(j.next_run, j.schedule, t), retry_at = NULL
		 WHERE job_id = j.job_id;
	ELSIF j.retry_at <= t THEN
		k := 'retry';
		due := j.retry_at;
		SELECT r.attempt + 1 INTO a FROM opsdata.job_runs r
		 WHERE r.job_id = j.job_id ORDER BY r.started_at DESC, r.run_id DESC LIMIT 1;
		a := coalesce(a, 2);
		UPDATE opsdata.jobs SET retry_at = NULL WHERE job_id = j.job_id;
	ELSE
		RETURN;
	END IF;

	INSERT INTO opsdata.job_runs (job_id, kind, due_at, started_at, attempt, pid)
		 VALUES (j.job_id, k, due, t, a, _job_start.pid)
	  RETURNING job_runs.run_id INTO run_id;
	name := j.name;
	command := j.command;
	run_as := j.run_as;
	builtin := j.builtin;
	max_runtime := j.max_runtime;
	attempt := a;
	RETURN NEXT;
END
$$;

COMMENT ON FUNCTION opsdata._job_start(bigint, boolean, integer) IS 'Internal: claim a run of a job and commit its crash marker';

-- Record the outcome of a run still marked running, and schedule a retry
-- with exponential backoff and jitter after a failure.
CREATE FUNCTION opsdata._job_finish(run bigint, status text, sqlstate text, message text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r opsdata.job_runs;
	j opsdata.jobs;
	t timestamptz := clock_timestamp();
	delay interval;
BEGIN
	UPDATE opsdata.job_runs
	   SET status = _job_finish.status, finished_at = greatest(t, started_at),
		   sqlstate = _job_finish.sqlstate, message = _job_finish.message
	 WHERE run_id = run AND job_runs.status = 'running'
	RETURNING * INTO r;
	IF NOT FOUND THEN
		RETURN;
	END IF;
	SELECT * INTO j FROM opsdata.jobs WHERE job_id = r.job_id FOR UPDATE;
	IF NOT FOUND THEN
		RETURN;
	END IF;
	IF status = 'succeeded' THEN
		UPDATE opsdata.jobs SET failures = 0, retry_at = NULL WHERE job_id = j.job_id;
		RETURN;
	END IF;
	UPDATE opsdata.jobs SET failures = failures + 1 WHERE job_id = j.job_id;
	-- Manual runs report their error to the caller and leave the schedule.
	IF r.kind = 'manual' OR r.attempt > j.max_retries THEN
		RETURN;
	END IF;
	delay := least(j.retry_delay * power(2, least(r.attempt - 1, 30)), j.schedule)
			 * (0.75 + 0.5 * random());
	IF t + delay < j.next_run THEN
		UPDATE opsdata.jobs SET retry_at = t + delay WHERE job_id = j.job_id;
	END IF;
END
$$;

COMMENT ON FUNCTION opsdata._job_finish(bigint, text, text, text) IS 'Internal: record the outcome of a run and schedule its retry';

--
-- The SQL API.  Functions that change jobs are SECURITY DEFINER: no role
-- may write opsdata.jobs directly, so that the checks below (who a job may
-- run as, what a built-in job keeps) cannot be bypassed.
--

-- Raise the error for an unknown job, or return the job.
CREATE FUNCTION opsdata._job_get(job bigint, for_update boolean DEFAULT true)
RETURNS opsdata.jobs
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j opsdata.jobs;
BEGIN
	IF job IS NULL THEN
		RAISE EXCEPTION 'job must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF for_update THEN
		SELECT * INTO j FROM opsdata.jobs WHERE job_id = job FOR UPDATE;
	ELSE
		SELECT * INTO j FROM opsdata.jobs WHERE job_id = job;
	END IF;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'job % does not exist', job
			USING ERRCODE = 'undefined_object',
				  HINT = 'The jobs are listed in opsdata.jobs.';
	END IF;
	RETURN j;
END
$$;

COMMENT ON FUNCTION opsdata._job_get(bigint, boolean) IS 'Internal: the job with that identifier, or an error';

-- Check the values a job is given; raise a clear error for the first bad
-- one.  NULL means "not given" except where noted.
CREATE FUNCTION opsdata._job_check(name text, command text, schedule interval, max_runtime interval,
	max_retries integer, retry_delay interval)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF name IS NOT NULL AND btrim(name) = '' THEN
		RAISE EXCEPTION 'job name must not be empty' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF command IS NOT NULL THEN
		IF btrim(command) = '' THEN
			RAISE EXCEPTION 'job command must not be empty' USING ERRCODE = 'invalid_parameter_value',
				HINT = 'A command is an SQL statement or a procedure call, such as CALL app.cleanup().';
		END IF;
		PERFORM opsdata._worker_check_command(command);
	END IF;
	IF schedule < interval '1 second' THEN
		RAISE EXCEPTION 'invalid job schedule "%"', schedule USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'The schedule is the interval between two starts and must be at least 1 second.';
	END IF;
	IF max_runtime < interval '0' THEN
		RAISE EXCEPTION 'invalid job max_runtime "%"', max_runtime USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'max_runtime must be a positive interval, or NULL for no limit.';
	END IF;
	IF max_retries < 0 THEN
		RAISE EXCEPTION 'invalid job max_retries %', max_retries USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'max_retries must be zero or more.';
	END IF;
	IF retry_delay <= interval '0' THEN
		RAISE EXCEPTION 'invalid job retry_delay "%"', retry_delay USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'retry_delay must be a positive interval.';
	END IF;
END
$$;

COMMENT ON FUNCTION opsdata._job_check(text, text, interval, interval, integer, interval) IS 'Internal: validate the values given to add_job or alter_job';

-- Raise an error unless the calling session may run commands as the role.
CREATE FUNCTION opsdata._job_check_role(run_as name, what text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acting name := opsdata._worker_acting_role();
BEGIN
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = run_as) THEN
		RAISE EXCEPTION 'role "%" does not exist', run_as USING ERRCODE = 'undefined_object';
	END IF;
	IF NOT pg_has_role(acting, run_as, 'MEMBER') THEN
		RAISE EXCEPTION 'permission denied to % a job running as role "%"', what, run_as
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = pg_catalog.format('Role "%s" is not a member of role "%s".', acting, run_as),
				  HINT = 'A job may only run as a role that the session adding or changing it could SET ROLE to.';
	END IF;
END
$$;

COMMENT ON FUNCTION opsdata._job_check_role(name, text) IS 'Internal: whether the calling session may run commands as a role';

CREATE FUNCTION opsdata.add_job(name text, command text, schedule interval,
	start_at timestamptz DEFAULT NULL, paused boolean DEFAULT false, max_runtime interval DEFAULT NULL,
	max_retries integer DEFAULT 3, retry_delay interval DEFAULT '10 seconds',
	run_as name DEFAULT NULL, comment text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	id bigint;
BEGIN
	IF name IS NULL OR command IS NULL OR schedule IS NULL THEN
		RAISE EXCEPTION 'job name, command and schedule must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF paused IS NULL OR max_retries IS NULL OR retry_delay IS NULL THEN
		RAISE EXCEPTION 'paused, max_retries and retry_delay must not be null'
			USING ERRCODE = 'null_value_not_allowed',
				  HINT = 'Leave them out to use their defaults.';
	END IF;
	PERFORM opsdata._job_check(name, command, schedule, max_runtime, max_retries, retry_delay);
	IF max_runtime = interval '0' THEN
		max_runtime := NULL;
	END IF;
	run_as := coalesce(run_as, opsdata._worker_acting_role());
	PERFORM opsdata._job_check_role(run_as, 'add');
	IF EXISTS (SELECT FROM opsdata.jobs j WHERE j.name = add_job.name) THEN
		RAISE EXCEPTION 'job "%" already exists', name USING ERRCODE = 'duplicate_object';
	END IF;
	INSERT INTO opsdata.jobs (name, command, schedule, paused, max_runtime, max_retries, retry_delay,
							  run_as, next_run, comment)
		 VALUES (name, command, schedule, paused, max_runtime, max_retries, retry_delay,
				 run_as, coalesce(start_at, now()), comment)
	  RETURNING job_id INTO id;
	RETURN id;
END
$$;

COMMENT ON FUNCTION opsdata.add_job(text, text, interval, timestamptz, boolean, interval, integer, interval, name, text)
	IS 'Add a job the scheduler runs every schedule from start_at (default now); returns its job_id';

CREATE FUNCTION opsdata.alter_job(job bigint, name text DEFAULT NULL, command text DEFAULT NULL,
	schedule interval DEFAULT NULL, next_run timestamptz DEFAULT NULL, paused boolean DEFAULT NULL,
	max_runtime interval DEFAULT NULL, max_retries integer DEFAULT NULL, retry_delay interval DEFAULT NULL,
	run_as name DEFAULT NULL, comment text DEFAULT NULL)
RETURNS opsdata.jobs
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j opsdata.jobs := opsdata._job_get(job);
BEGIN
	PERFORM opsdata._job_check(name, command, schedule, max_runtime, max_retries, retry_delay);
	IF j.builtin AND (name IS DISTINCT FROM NULL AND name <> j.name
					  OR command IS DISTINCT FROM NULL AND command <> j.command
					  OR run_as IS DISTINCT FROM NULL AND run_as <> j.run_as) THEN
		RAISE EXCEPTION 'cannot change the name, command or role of built-in job "%"', j.name
			USING ERRCODE = 'insufficient_privilege',
				  HINT = 'The schedule, limits and pause state of a built-in job can be changed.';
	END IF;
	IF command IS NOT NULL AND command <> j.command OR run_as IS NOT NULL AND run_as <> j.run_as THEN
		-- Changing what runs, or as whom, takes the rights of both roles.
		PERFORM opsdata._job_check_role(j.run_as, 'change');
		PERFORM opsdata._job_check_role(coalesce(run_as, j.run_as), 'change');
	END IF;
	IF name IS NOT NULL AND name <> j.name AND EXISTS (SELECT FROM opsdata.jobs o WHERE o.name = alter_job.name) THEN
		RAISE EXCEPTION 'job "%" already exists', name USING ERRCODE = 'duplicate_object';
	END IF;
	UPDATE opsdata.jobs o
	   SET name = coalesce(alter_job.name, o.name),
		   command = coalesce(alter_job.command, o.command),
		   schedule = coalesce(alter_job.schedule, o.schedule),
		   next_run = coalesce(alter_job.next_run, o.next_run),
		   paused = coalesce(alter_job.paused, o.paused),
		   max_runtime = CASE WHEN alter_job.max_runtime IS NULL THEN o.max_runtime
							  WHEN alter_job.max_runtime = interval '0' THEN NULL
							  ELSE alter_job.max_runtime END,
		   max_retries = coalesce(alter_job.max_retries, o.max_retries),
		   retry_delay = coalesce(alter_job.retry_delay, o.retry_delay),
		   run_as = coalesce(alter_job.run_as, o.run_as),
		   comment = coalesce(alter_job.comment, o.comment)
	 WHERE o.job_id = j.job_id
	RETURNING * INTO j;
	RETURN j;
END
$$;

COMMENT ON FUNCTION opsdata.alter_job(bigint, text, text, interval, timestamptz, boolean, interval, integer, interval, name, text)
	IS 'Change a job; arguments left NULL keep their value, max_runtime => ''0'' removes the limit; returns the job';

CREATE FUNCTION opsdata.remove_job(job bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j opsdata.jobs := opsdata._job_get(job);
BEGIN
	IF j.builtin THEN
		RAISE EXCEPTION 'cannot remove built-in job "%"', j.name
			USING ERRCODE = 'insufficient_privilege',
				  HINT = 'Pause it with opsdata.pause_job() instead.';
	END IF;
	DELETE FROM opsdata.job_runs WHERE job_id = j.job_id;
	DELETE FROM opsdata.jobs WHERE job_id = j.job_id;
END
$$;

COMMENT ON FUNCTION opsdata.remove_job(bigint) IS 'Remove a job and its run history; a run in progress finishes';

CREATE FUNCTION opsdata.pause_job(job bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j opsdata.jobs := opsdata._job_get(job);
BEGIN
	UPDATE opsdata.jobs SET paused = true WHERE job_id = j.job_id AND NOT paused;
END
$$;

COMMENT ON FUNCTION opsdata.pause_job(bigint) IS 'Stop the scheduler from starting a job; a run in progress finishes';

CREATE FUNCTION opsdata.resume_job(job bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j opsdata.jobs := opsdata._job_get(job);
BEGIN
	UPDATE opsdata.jobs SET paused = false WHERE job_id = j.job_id AND paused;
END
$$;

COMMENT ON FUNCTION opsdata.resume_job(bigint) IS 'Let the scheduler start a paused job again; it runs at once if a run was missed';

--
-- History pruning: a built-in job.
--
CREATE FUNCTION opsdata._prune_job_runs()
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	kept_ok interval := opsdata.setting('worker.job_history_succeeded')::interval;
	kept_failed interval := opsdata.setting('worker.job_history_failed')::interval;
	n bigint;
BEGIN
	DELETE FROM opsdata.job_runs
	 WHERE finished_at < now() - least(kept_ok, kept_failed)
	   AND finished_at < now() - CASE WHEN status = 'succeeded' THEN kept_ok ELSE kept_failed END;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;

COMMENT ON FUNCTION opsdata._prune_job_runs() IS 'Internal: delete runs older than worker.job_history_succeeded or worker.job_history_failed; returns how many';

INSERT INTO opsdata.jobs (name, command, schedule, builtin, comment) VALUES
	('prune job runs', 'SELECT opsdata._prune_job_runs()', '1 hour', true,
	 'Deletes opsdata.job_runs rows older than the worker.job_history_* settings');

--
-- Health: the launcher, this database's scheduler, and every job that is
-- failing or late.
--
CREATE FUNCTION opsdata._health_worker(OUT component text, OUT status text, OUT detail text)
RETURNS SETOF record
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT component, status, detail FROM opsdata._worker_status()
	UNION ALL
	SELECT pg_catalog.format('job "%s"', j.name),
		   CASE WHEN j.failures > 0 AND j.retry_at IS NULL THEN 'error' ELSE 'warning' END,
		   CASE WHEN j.failures > 0 THEN
				pg_catalog.format('%s run(s) in a row did not succeed; the last one %s%s: %s %s',
					j.failures, coalesce(r.status, 'failed'),
					coalesce(' with SQLSTATE ' || r.sqlstate, ''),
					pg_catalog.rtrim(coalesce(r.message, 'no message'), '.') || '.',
					CASE WHEN j.retry_at IS NOT NULL
						 THEN pg_catalog.format('It is retried at %s.', j.retry_at)
						 ELSE pg_catalog.format('Its next run is at %s.', j.next_run) END)
			ELSE pg_catalog.format('Late: due at %s and not started.',
					least(j.next_run, j.retry_at))
		   END
	  FROM opsdata.jobs j
	  LEFT JOIN LATERAL (SELECT x.status, x.sqlstate, x.message FROM opsdata.job_runs x
						  WHERE x.job_id = j.job_id AND x.status <> 'running'
						  ORDER BY x.started_at DESC, x.run_id DESC LIMIT 1) r ON true
	 WHERE NOT pg_catalog.pg_is_in_recovery()
	   -- No job runs in a template: it is not late there.
	   AND NOT EXISTS (SELECT FROM pg_catalog.pg_database d
						WHERE d.datname = pg_catalog.current_database() AND d.datistemplate)
	   AND (j.failures > 0
			OR (NOT j.paused
				AND least(j.next_run, j.retry_at) < pg_catalog.now() - interval '1 minute'
				AND NOT EXISTS (SELECT FROM opsdata.job_runs x WHERE x.job_id = j.job_id AND x.status = 'running')))
$$;

COMMENT ON FUNCTION opsdata._health_worker() IS 'Internal: the worker area''s rows of opsdata.health()';

GRANT EXECUTE ON FUNCTION
	opsdata.add_job(text, text, interval, timestamptz, boolean, interval, integer, interval, name, text),
	opsdata.alter_job(bigint, text, text, interval, timestamptz, boolean, interval, integer, interval, name, text),
	opsdata.remove_job(bigint), opsdata.pause_job(bigint), opsdata.resume_job(bigint)
	TO opsdata_admin;
GRANT EXECUTE ON PROCEDURE opsdata.run_job(bigint), opsdata.run_job(text) TO opsdata_admin;

-- The launcher learns at commit that this database has pg_opsdata.
SELECT opsdata._worker_register();

-- src/partition/partition.sql
-- Partition maintenance: the managed partition sets, their settings, the
-- maintenance log, the built-in job and the SQL API.
--
-- A set is a range-partitioned table keyed by timestamptz, date or an
-- integer column.  Maintenance makes partitions ahead of now (or of the
-- highest id), empties the default partition into proper partitions, and
-- drops or detaches partitions older than the retention.  It runs in a
-- background worker of its own (src/partition/worker.c), one short
-- transaction per step, each under a short lock_timeout; the plan of each
-- set is computed by opsdata._partition_plan() (partition_plan.sql) and the
-- DDL runs with the privileges of the table's owner.

CREATE TABLE opsdata.partitions (
	parent				regclass PRIMARY KEY,
	control_column		name NOT NULL,
	control_type		regtype NOT NULL
						CHECK (control_type IN ('timestamptz'::regtype, 'date'::regtype,
												'smallint'::regtype, 'integer'::regtype, 'bigint'::regtype)),
	part_interval		text NOT NULL,
	premake				integer NOT NULL DEFAULT 4 CHECK (premake BETWEEN 1 AND 1000),
	retention			text,
	retention_setting	text,
	retention_mode		text NOT NULL DEFAULT 'drop' CHECK (retention_mode IN ('drop', 'detach')),
	archive_schema		name,
	default_partition	boolean NOT NULL DEFAULT false,
	builtin				boolean NOT NULL DEFAULT false,
	created_at			timestamptz NOT NULL DEFAULT pg_catalog.now(),
	last_run_at			timestamptz,
	last_status			text CHECK (last_status IN ('ok', 'skipped', 'failed')),
	last_message		text,
	CHECK (retention_mode = 'drop' OR archive_schema IS NOT NULL),
	CHECK (retention IS NULL OR retention_setting IS NULL)
);

COMMENT ON TABLE opsdata.partitions IS 'Partition sets kept by partition maintenance: premade ahead, old partitions dropped or detached';
COMMENT ON COLUMN opsdata.partitions.parent IS 'The partitioned table';
COMMENT ON COLUMN opsdata.partitions.control_column IS 'Partition key column';
COMMENT ON COLUMN opsdata.partitions.control_type IS 'Type of the partition key: timestamptz, date or an integer type';
COMMENT ON COLUMN opsdata.partitions.part_interval IS 'Width of one partition: an interval for time sets, a number for id sets';
COMMENT ON COLUMN opsdata.partitions.premake IS 'Partitions kept ready ahead of the current one (time) or of the one holding the highest id';
COMMENT ON COLUMN opsdata.partitions.retention IS 'Age (interval) or id distance beyond which partitions are removed; NULL keeps everything';
COMMENT ON COLUMN opsdata.partitions.retention_setting IS 'For built-in sets: the opsdata setting that holds the retention';
COMMENT ON COLUMN opsdata.partitions.retention_mode IS 'drop: drop old partitions; detach: detach them into archive_schema';
COMMENT ON COLUMN opsdata.partitions.archive_schema IS 'Schema detached partitions are moved to';
COMMENT ON COLUMN opsdata.partitions.default_partition IS 'Whether the set had a default partition when maintenance last ran';
COMMENT ON COLUMN opsdata.partitions.builtin IS 'A pg_opsdata table managed out of the box';
COMMENT ON COLUMN opsdata.partitions.created_at IS 'When the set was put under management';
COMMENT ON COLUMN opsdata.partitions.last_run_at IS 'When maintenance last ran on the set';
COMMENT ON COLUMN opsdata.partitions.last_status IS 'ok, skipped (a lock was not granted in time) or failed';
COMMENT ON COLUMN opsdata.partitions.last_message IS 'What the last maintenance run did, or why it skipped or failed';

SELECT pg_catalog.pg_extension_config_dump('opsdata.partitions', 'WHERE NOT builtin');

CREATE TABLE opsdata.partition_log (
	logged_at	timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	parent		text NOT NULL,
	action		text NOT NULL
				CHECK (action IN ('create', 'move', 'finalize', 'detach', 'archive', 'drop', 'skip', 'fail')),
	partition	text,
	detail		text
);

CREATE INDEX partition_log_logged_at_idx ON opsdata.partition_log (logged_at);

COMMENT ON TABLE opsdata.partition_log IS 'What partition maintenance did: every partition made, filled, detached or dropped, and every skipped or failed step';
COMMENT ON COLUMN opsdata.partition_log.logged_at IS 'When the step committed';
COMMENT ON COLUMN opsdata.partition_log.parent IS 'The partitioned table, by name';
COMMENT ON COLUMN opsdata.partition_log.action IS 'create, move (a partition made from rows of the default partition), finalize (an interrupted detach completed), detach, archive (moved into the archive schema), drop, skip or fail';
COMMENT ON COLUMN opsdata.partition_log.partition IS 'The partition concerned, by name';
COMMENT ON COLUMN opsdata.partition_log.detail IS 'Bounds, rows moved, or the reason for a skip or failure';

SELECT pg_catalog.pg_extension_config_dump('opsdata.partition_log', '');

INSERT INTO opsdata.settings (key, type, default_value, valid_when, description) VALUES
	('partition.lock_timeout', 'interval', '500 milliseconds',
	 'value >= interval ''1 millisecond'' AND value <= interval ''1 minute''',
	 'Longest a maintenance step waits for a lock; an application query never waits longer than this behind maintenance'),
	('partition.detach_timeout', 'interval', '10 seconds',
	 'value >= interval ''1 millisecond'' AND value <= interval ''1 hour''',
	 'Longest DETACH PARTITION CONCURRENTLY (and FINALIZE) waits for transactions using the table; these block no query while they wait'),
	('partition.lock_retries', 'integer', '5', 'value BETWEEN 0 AND 100',
	 'Tries after the first of a step whose lock was not granted, before the step is skipped until the next run'),
	('partition.retry_delay', 'interval', '1 second',
	 'value >= interval ''0'' AND value <= interval ''1 minute''',
	 'Mean pause between two tries of a step; each pause is drawn between half and one and a half times this'),
	('partition.move_limit', 'integer', '20', 'value BETWEEN 1 AND 10000',
	 'Partitions filled from a default partition per set and maintenance run, beyond those premake needs'),
	('partition.log_retention', 'interval', '30 days', 'value >= interval ''0''',
	 'How long entries of opsdata.partition_log are kept');

INSERT INTO opsdata.jobs (name, command, schedule, builtin, comment) VALUES
	('partition maintenance', 'SELECT * FROM opsdata.run_maintenance()', '10 minutes', true,
	 'Makes partitions ahead, empties default partitions and applies retention for every set of opsdata.partitions');

--
-- Checks and normal forms of the arguments of manage_partitions().  They
-- raise the error a user sees; they run with TimeZone UTC so that times
-- without a zone are read as UTC.
--
CREATE FUNCTION opsdata._partition_interval(control_type regtype, value text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET IntervalStyle = 'postgres'
AS $$
DECLARE
	n bigint;
	iv interval;
	months bigint;
	days bigint;
	usecs numeric;
	total numeric;
BEGIN
	IF value IS NULL THEN
		RAISE EXCEPTION 'part_interval must not be null'
			USING ERRCODE = 'null_value_not_allowed',
				  HINT = CASE WHEN control_type IN ('date'::regtype, 'timestamptz'::regtype)
							  THEN 'Give an interval such as ''1 day'' or ''1 month''.'
							  ELSE 'Give the number of ids per partition, such as ''100000''.' END;
	END IF;
	IF control_type NOT IN ('date'::regtype, 'timestamptz'::regtype) THEN
		BEGIN
			n := value::bigint;
		EXCEPTION WHEN data_exception THEN
			RAISE EXCEPTION 'invalid part_interval "%" for a set keyed by %', value, control_type
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Give the number of ids per partition, such as ''100000''.';
		END;
		IF n < 1 THEN
			RAISE EXCEPTION 'part_interval must be positive'
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = pg_catalog.format('The value given was %s.', n);
		END IF;
		IF (control_type = 'smallint'::regtype AND n > 32767) OR (control_type = 'integer'::regtype AND n > 2147483647) THEN
			RAISE EXCEPTION 'part_interval % does not fit a set keyed by %', n, control_type
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		RETURN n::text;
	END IF;

	BEGIN
		iv := value::interval;
	EXCEPTION WHEN data_exception THEN
		RAISE EXCEPTION 'invalid part_interval "%" for a set keyed by %', value, control_type
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give an interval such as ''1 day'' or ''1 month''.';
	END;
	months := EXTRACT(year FROM iv) * 12 + EXTRACT(month FROM iv);
	days := EXTRACT(day FROM iv);
	usecs := EXTRACT(epoch FROM iv - pg_catalog.make_interval(months => months::int, days => days::int)) * 1000000;
	IF months < 0 OR days < 0 OR usecs < 0 OR iv <= interval '0' THEN
		RAISE EXCEPTION 'part_interval must be positive'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = pg_catalog.format('The value given was "%s".', value);
	END IF;
	IF months > 0 THEN
		IF days <> 0 OR usecs <> 0 THEN
			RAISE EXCEPTION 'part_interval "%" does not fit a partition set', value
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = 'Months have no fixed length, so an interval of months cannot be combined with days or hours.',
					  HINT = 'Use whole months, or whole days.';
		END IF;
		RETURN pg_catalog.make_interval(months => months::int)::text;
	END IF;
	total := days * 86400000000 + usecs;
	IF control_type = 'date'::regtype AND total % 86400000000 <> 0 THEN
		RAISE EXCEPTION 'part_interval "%" does not fit a set keyed by date', value
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'Partitions of a set keyed by date hold whole days.',
				  HINT = 'Use whole days or whole months.';
	END IF;
	IF total < 86400000000 AND (total % 60000000 <> 0 OR 86400000000 % total <> 0) THEN
		RAISE EXCEPTION 'part_interval "%" does not fit a partition set', value
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'A partition shorter than a day must be a whole number of minutes that divides the day evenly, so that every day starts a partition at midnight UTC.',
				  HINT = 'Use for instance ''1 hour'', ''6 hours'' or ''15 minutes''.';
	END IF;
	IF total >= 86400000000 AND total % 86400000000 <> 0 THEN
		RAISE EXCEPTION 'part_interval "%" does not fit a partition set', value
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'A partition of a day or longer must hold whole days, so that it starts at midnight UTC.',
				  HINT = 'Use for instance ''1 day'' or ''7 days''.';
	END IF;
	IF total % 86400000000 = 0 THEN
		RETURN pg_catalog.make_interval(days => (total / 86400000000)::int)::text;
	END IF;
	RETURN pg_catalog.make_interval(mins => (total / 60000000)::int)::text;
END
$$;

COMMENT ON FUNCTION opsdata._partition_interval(regtype, text) IS 'Internal: checks a part_interval for a key type and returns its normal form';

CREATE FUNCTION opsdata._partition_retention(control_type regtype, value text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET IntervalStyle = 'postgres'
AS $$
DECLARE
	n bigint;
	iv interval;
BEGIN
	IF value IS NULL THEN
		RETURN NULL;
	END IF;
	IF control_type NOT IN ('date'::regtype, 'timestamptz'::regtype) THEN
		BEGIN
			n := value::bigint;
		EXCEPTION WHEN data_exception THEN
			RAISE EXCEPTION 'invalid retention "%" for a set keyed by %', value, control_type
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Give the distance in ids below the highest id beyond which partitions are removed, such as ''1000000''.';
		END;
		IF n < 1 THEN
			RAISE EXCEPTION 'retention must be positive'
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = pg_catalog.format('The value given was %s.', n),
					  HINT = 'Give NULL to keep every partition.';
		END IF;
		RETURN n::text;
	END IF;
	BEGIN
		iv := value::interval;
	EXCEPTION WHEN data_exception THEN
		RAISE EXCEPTION 'invalid retention "%" for a set keyed by %', value, control_type
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give an interval such as ''90 days''.';
	END;
	IF iv <= interval '0' OR EXTRACT(epoch FROM iv) <= 0
	   OR EXTRACT(day FROM iv) < 0 OR EXTRACT(month FROM iv) < 0
	   OR EXTRACT(year FROM iv) < 0 THEN
		RAISE EXCEPTION 'retention must be positive'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = pg_catalog.format('The value given was "%s".', value),
				  HINT = 'Give NULL to keep every partition.';
	END IF;
	RETURN iv::text;
END
$$;

COMMENT ON FUNCTION opsdata._partition_retention(regtype, text) IS 'Internal: checks a retention for a key type and returns its normal form';

-- Registers a set or changes one.  Called by manage_partitions() (as the
-- extension owner, after checking that the caller owns the table) and by
-- the install script for the built-in sets.  Makes no partition itself.
CREATE FUNCTION opsdata._partition_register(parent regclass, control_column name, part_interval text,
	premake integer, retention text, retention_mode text, archive_schema name, start_from text,
	retention_setting text, builtin boolean)
RETURNS opsdata.partitions
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
DECLARE
	rel record;
	key record;
	col record;
	v_interval text;
	v_retention text;
	v_mode text := coalesce(retention_mode, 'drop');
	old opsdata.partitions;
	result opsdata.partitions;
BEGIN
	IF parent IS NULL THEN
		RAISE EXCEPTION 'parent table must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT c.relkind, c.relpersistence, c.relowner, c.relnamespace, n.nspname INTO rel
	  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
	 WHERE c.oid = parent;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'relation with OID % does not exist', parent::oid USING ERRCODE = 'undefined_table';
	END IF;
	IF rel.relkind <> 'p' THEN
		RAISE EXCEPTION 'relation "%" is not partitioned', parent
			USING ERRCODE = 'wrong_object_type',
				  HINT = 'Create the table with PARTITION BY RANGE on its timestamptz, date or integer column.';
	END IF;
	IF rel.relpersistence = 't' THEN
		RAISE EXCEPTION 'temporary table "%" cannot be managed', parent
			USING ERRCODE = 'feature_not_supported',
				  DETAIL = 'Maintenance runs in sessions of its own, which cannot see temporary tables.';
	END IF;
	SELECT p.partstrat, p.partnatts, p.partattrs[0] AS attnum INTO key
	  FROM pg_catalog.pg_partitioned_table p WHERE p.partrelid = parent;
	IF key.partstrat <> 'r' THEN
		RAISE EXCEPTION 'relation "%" is not partitioned by range', parent
			USING ERRCODE = 'wrong_object_type',
				  HINT = 'Only tables partitioned by RANGE can be managed.';
	END IF;
	IF key.partnatts <> 1 OR key.attnum = 0 THEN
		RAISE EXCEPTION 'relation "%" is not partitioned on a single column', parent
			USING ERRCODE = 'feature_not_supported',
				  HINT = 'Only tables partitioned by RANGE on one column, without an expression, can be managed.';
	END IF;
	IF control_column IS NULL THEN
		RAISE EXCEPTION 'control_column must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT a.attnum, a.atttypid::regtype AS type INTO col
	  FROM pg_catalog.pg_attribute a
	 WHERE a.attrelid = parent AND a.attname = control_column AND a.attnum > 0 AND NOT a.attisdropped;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'column "%" of relation "%" does not exist', control_column, parent
			USING ERRCODE = 'undefined_column';
	END IF;
	IF col.attnum <> key.attnum THEN
		RAISE EXCEPTION 'column "%" is not the partition key of "%"', control_column, parent
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = pg_catalog.format('The table is partitioned on column "%s".',
											 (SELECT attname FROM pg_catalog.pg_attribute
											   WHERE attrelid = parent AND attnum = key.attnum));
	END IF;
	IF col.type = 'timestamp'::regtype THEN
		RAISE EXCEPTION 'column "%" of relation "%" has type %', control_column, parent, col.type
			USING ERRCODE = 'datatype_mismatch',
				  DETAIL = 'Managed sets are keyed by timestamp with time zone, date, smallint, integer or bigint.',
				  HINT = 'Store times as timestamp with time zone: partition bounds are kept in UTC.';
	ELSIF col.type NOT IN ('timestamptz'::regtype, 'date'::regtype, 'smallint'::regtype, 'integer'::regtype, 'bigint'::regtype) THEN
		RAISE EXCEPTION 'column "%" of relation "%" has type %', control_column, parent, col.type
			USING ERRCODE = 'datatype_mismatch',
				  DETAIL = 'Managed sets are keyed by timestamp with time zone, date, smallint, integer or bigint.';
	END IF;
	IF NOT pg_catalog.has_schema_privilege(rel.relowner, rel.relnamespace, 'CREATE') THEN
		RAISE EXCEPTION 'owner of "%" has no CREATE privilege on schema "%"', parent, rel.nspname
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'Maintenance makes partitions with the privileges of the table''s owner, in the table''s schema.';
	END IF;

	v_interval := opsdata._partition_interval(col.type, part_interval);
	IF premake IS NULL THEN
		RAISE EXCEPTION 'premake must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF premake < 1 OR premake > 1000 THEN
		RAISE EXCEPTION 'premake must be between 1 and 1000'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = pg_catalog.format('The value given was %s.', premake);
	END IF;
	v_retention := opsdata._partition_retention(col.type, retention);
	IF retention_setting IS NOT NULL THEN
		PERFORM opsdata._partition_retention(col.type, opsdata.setting(retention_setting));
	END IF;
	IF v_mode NOT IN ('drop', 'detach') THEN
		RAISE EXCEPTION 'invalid retention_mode "%"', v_mode
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use ''drop'' to drop old partitions or ''detach'' to move them into archive_schema.';
	END IF;
	IF v_mode = 'detach' THEN
		IF archive_schema IS NULL THEN
			RAISE EXCEPTION 'retention_mode "detach" needs an archive_schema'
				USING ERRCODE = 'null_value_not_allowed';
		END IF;
		IF NOT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = archive_schema) THEN
			RAISE EXCEPTION 'schema "%" does not exist', archive_schema USING ERRCODE = 'invalid_schema_name';
		END IF;
		IF archive_schema = rel.nspname THEN
			RAISE EXCEPTION 'archive_schema must differ from the schema of "%"', parent
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF NOT pg_catalog.has_schema_privilege(rel.relowner, archive_schema, 'CREATE') THEN
			RAISE EXCEPTION 'owner of "%" has no CREATE privilege on schema "%"', parent, archive_schema
				USING ERRCODE = 'insufficient_privilege',
					  DETAIL = 'Maintenance moves detached partitions with the privileges of the table''s owner.';
		END IF;
	ELSIF archive_schema IS NOT NULL THEN
		RAISE EXCEPTION 'archive_schema is only used with retention_mode "detach"'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF start_from IS NOT NULL THEN
		BEGIN
			CASE col.type
				WHEN 'timestamptz'::regtype THEN PERFORM start_from::timestamptz;
				WHEN 'date'::regtype THEN PERFORM start_from::date;
				ELSE PERFORM start_from::bigint;
			END CASE;
		EXCEPTION WHEN data_exception THEN
			RAISE EXCEPTION 'invalid start_from "%" for a set keyed by %', start_from, col.type
				USING ERRCODE = 'invalid_parameter_value';
		END;
	END IF;

	SELECT * INTO old FROM opsdata.partitions p WHERE p.parent = _partition_register.parent FOR UPDATE;
	IF FOUND THEN
		IF old.builtin AND NOT builtin THEN
			RAISE EXCEPTION '"%" is a built-in partition set', parent
				USING ERRCODE = 'object_not_in_prerequisite_state',
					  HINT = 'Its retention is a setting: change it with opsdata.set_setting().';
		END IF;
		IF old.control_column <> control_column OR old.part_interval <> v_interval THEN
			RAISE EXCEPTION 'cannot change the control column or interval of managed set "%"', parent
				USING ERRCODE = 'object_not_in_prerequisite_state',
					  DETAIL = pg_catalog.format('The set is managed on column "%s" by %s.', old.control_column, old.part_interval),
					  HINT = 'Call opsdata.unmanage_partitions() first; existing partitions stay.';
		END IF;
		UPDATE opsdata.partitions p
		   SET premake = _partition_register.premake, retention = v_retention,
			   retention_setting = _partition_register.retention_setting,
			   retention_mode = v_mode, archive_schema = _partition_register.archive_schema
		 WHERE p.parent = _partition_register.parent
		RETURNING * INTO result;
	ELSE
		INSERT INTO opsdata.partitions AS p (parent, control_column, control_type, part_interval, premake,
											 retention, retention_setting, retention_mode, archive_schema,
											 default_partition, builtin)
		VALUES (parent, control_column, col.type, v_interval, premake, v_retention, retention_setting,
				v_mode, archive_schema,
				(SELECT partdefid <> 0 FROM pg_catalog.pg_partitioned_table WHERE partrelid = parent), builtin)
		RETURNING * INTO result;
	END IF;
	RETURN result;
END
$$;

COMMENT ON FUNCTION opsdata._partition_register(regclass, name, text, integer, text, text, name, text, text, boolean) IS 'Internal: checks the arguments of a partition set and records it';

-- Registration of a built-in set by the install script of its area: the
-- row only; the partitions are made by maintenance, outside CREATE
-- EXTENSION, so that they are not members of the extension.
CREATE FUNCTION opsdata._partition_builtin(parent regclass, control_column name, part_interval text,
	premake integer, retention_setting text)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT FROM opsdata._partition_register(parent, control_column, part_interval, premake, NULL, 'drop',
											NULL, NULL, retention_setting, true);
$$;

COMMENT ON FUNCTION opsdata._partition_builtin(regclass, name, text, integer, text) IS 'Internal: registers a built-in partition set of pg_opsdata';

-- A dropped table is no longer managed: its row would name a relation that
-- does not exist, and a dump of opsdata.partitions could not be restored.
CREATE FUNCTION opsdata._partition_forget_dropped()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF pg_catalog.to_regclass('opsdata.partitions') IS NULL THEN
		RETURN;
	END IF;
	DELETE FROM opsdata.partitions p
	 USING pg_catalog.pg_event_trigger_dropped_objects() d
	 WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objsubid = 0
	   AND d.objid = p.parent::pg_catalog.oid;
END
$$;

COMMENT ON FUNCTION opsdata._partition_forget_dropped() IS 'Internal: removes the sets of dropped tables from opsdata.partitions';

CREATE EVENT TRIGGER opsdata_partition_forget_dropped ON sql_drop
	EXECUTE FUNCTION opsdata._partition_forget_dropped();

--
-- The SQL API.  The C entry points (src/partition/api.c) check the caller's
-- rights, then act as the extension owner; DDL on a set runs with the
-- privileges of the set's owner.
--
CREATE FUNCTION opsdata.manage_partitions(parent regclass, control_column name, part_interval text,
	premake integer DEFAULT 4, retention text DEFAULT NULL, retention_mode text DEFAULT 'drop',
	archive_schema name DEFAULT NULL, start_from text DEFAULT NULL)
RETURNS integer
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'partition_manage';

COMMENT ON FUNCTION opsdata.manage_partitions(regclass, name, text, integer, text, text, name, text) IS 'Put a range-partitioned table under partition maintenance (or change its premake and retention); makes its partitions up to premake ahead and returns how many it made';

CREATE FUNCTION opsdata.unmanage_partitions(parent regclass)
RETURNS boolean
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'partition_unmanage';

COMMENT ON FUNCTION opsdata.unmanage_partitions(regclass) IS 'Stop maintaining a partition set; its partitions stay as they are';

CREATE FUNCTION opsdata.run_maintenance(parent regclass DEFAULT NULL)
RETURNS TABLE (parent_table regclass, status text, created integer, moved bigint,
			   detached integer, dropped integer, message text)
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'partition_run_maintenance';

COMMENT ON FUNCTION opsdata.run_maintenance(regclass) IS 'Run partition maintenance now, on one set or all of them, in a background worker of its own; returns what it did per set';

CREATE FUNCTION opsdata.show_partitions(parent regclass)
RETURNS TABLE (partition regclass, lower_bound text, upper_bound text, is_default boolean, detach_pending boolean)
LANGUAGE plpgsql STABLE STRICT
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
AS $$
DECLARE
	t regtype;
BEGIN
	SELECT a.atttypid::regtype INTO t
	  FROM pg_catalog.pg_partitioned_table p
	  JOIN pg_catalog.pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
	 WHERE p.partrelid = parent AND p.partstrat = 'r' AND p.partnatts = 1;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'relation "%" is not partitioned by range on one column', parent
			USING ERRCODE = 'wrong_object_type';
	END IF;
	RETURN QUERY
		SELECT l.partition,
			   CASE WHEN l.is_default THEN NULL
					WHEN t = 'date'::regtype THEN coalesce(l.lower_time::date::text, 'MINVALUE')
					WHEN t = 'timestamptz'::regtype THEN coalesce(l.lower_time::text, 'MINVALUE')
					ELSE coalesce(l.lower_id::text, 'MINVALUE') END,
			   CASE WHEN l.is_default THEN NULL
					WHEN t = 'date'::regtype THEN coalesce(l.upper_time::date::text, 'MAXVALUE')
					WHEN t = 'timestamptz'::regtype THEN coalesce(l.upper_time::text, 'MAXVALUE')
					ELSE coalesce(l.upper_id::text, 'MAXVALUE') END,
			   l.is_default, l.detach_pending
		  FROM opsdata._partition_layout(parent) l
		 ORDER BY l.is_default, l.lower_time NULLS FIRST, l.lower_id NULLS FIRST;
END
$$;

COMMENT ON FUNCTION opsdata.show_partitions(regclass) IS 'Partitions of a range-partitioned table with their bounds (times in UTC), default partition last';

CREATE FUNCTION opsdata._partition_layout(parent regclass,
	OUT partition regclass, OUT is_default boolean, OUT detach_pending boolean,
	OUT lower_time timestamptz, OUT upper_time timestamptz, OUT lower_id bigint, OUT upper_id bigint)
RETURNS SETOF record
LANGUAGE c STABLE STRICT
AS 'MODULE_PATHNAME', 'partition_layout';

COMMENT ON FUNCTION opsdata._partition_layout(regclass) IS 'Internal: partitions of a table with their range bounds read from the catalog (dates as midnight UTC; NULL for MINVALUE and MAXVALUE)';

GRANT SELECT ON opsdata.partitions, opsdata.partition_log TO opsdata_admin, opsdata_reader;

-- Health: one row for the whole area, and one per set that failed, skipped
-- part of its work, was never maintained, or whose default partition holds
-- rows (counted up to 100000, without waiting for a lock).
CREATE FUNCTION opsdata._health_partition(OUT component text, OUT status text, OUT detail text)
RETURNS SETOF record
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '100ms'
AS $$
DECLARE
	r record;
	n bigint;
	rows_text text;
	v_sets integer := 0;
	v_failed integer := 0;
	v_warned integer := 0;
BEGIN
	FOR r IN
		SELECT p.parent, p.last_status, p.last_message, p.last_run_at, p.created_at,
			   NULLIF(t.partdefid, 0)::regclass AS default_partition
		  FROM opsdata.partitions p
		  LEFT JOIN pg_catalog.pg_partitioned_table t ON t.partrelid = p.parent
		 ORDER BY p.parent::text
	LOOP
		v_sets := v_sets + 1;
		n := 0;
		rows_text := NULL;
		IF r.default_partition IS NOT NULL THEN
			BEGIN
				EXECUTE pg_catalog.format('SELECT count(*) FROM (SELECT FROM ONLY %s LIMIT 100001) x',
										  r.default_partition) INTO n;
				IF n > 0 THEN
					rows_text := pg_catalog.format('The default partition %s holds %s.', r.default_partition,
												   CASE WHEN n > 100000 THEN 'more than 100000 rows'
														WHEN n = 1 THEN '1 row' ELSE n || ' rows' END);
				END IF;
			EXCEPTION WHEN lock_not_available THEN
				rows_text := pg_catalog.format('The rows of the default partition %s were not counted: it is locked.',
											   r.default_partition);
			END;
		END IF;
		component := 'partition ' || r.parent::text;
		IF r.last_status = 'failed' THEN
			v_failed := v_failed + 1;
			status := 'error';
			detail := pg_catalog.concat_ws(' ', 'The last maintenance run failed: ' || r.last_message || '.', rows_text);
		ELSIF r.last_status = 'skipped' THEN
			v_warned := v_warned + 1;
			status := 'warning';
			detail := pg_catalog.concat_ws(' ', 'The last maintenance run skipped part of its work: ' || r.last_message || '.', rows_text);
		ELSIF r.last_run_at IS NULL AND r.created_at < pg_catalog.now() - interval '1 hour' THEN
			v_warned := v_warned + 1;
			status := 'warning';
			detail := pg_catalog.concat_ws(' ', 'Not maintained since it was put under management; check that the "partition maintenance" job runs.', rows_text);
		ELSIF r.last_run_at IS NOT NULL AND r.last_run_at < pg_catalog.now() - interval '1 day' THEN
			v_warned := v_warned + 1;
			status := 'warning';
			detail := pg_catalog.concat_ws(' ', 'Not maintained for more than a day; check that the "partition maintenance" job runs.', rows_text);
		ELSIF n > 0 AND r.last_run_at IS NOT NULL THEN
			v_warned := v_warned + 1;
			status := 'warning';
			detail := rows_text || ' Maintenance moves them into partitions; rows that stay have keys no partition may hold.';
		ELSIF rows_text IS NOT NULL THEN
			status := 'ok';
			detail := rows_text || ' The first maintenance run moves them into partitions.';
		ELSE
			CONTINUE;
		END IF;
		RETURN NEXT;
	END LOOP;

	component := 'partition maintenance';
	status := CASE WHEN v_failed > 0 THEN 'error' WHEN v_warned > 0 THEN 'warning' ELSE 'ok' END;
	detail := CASE WHEN v_sets = 0 THEN 'No partition set is managed.'
				   WHEN v_sets = 1 THEN '1 partition set is managed.'
				   ELSE pg_catalog.format('%s partition sets are managed.', v_sets) END
			  || CASE WHEN v_failed > 0 THEN pg_catalog.format(' %s failed in their last maintenance run.', v_failed) ELSE '' END
			  || CASE WHEN v_warned > 0 THEN pg_catalog.format(' %s need attention.', v_warned) ELSE '' END;
	RETURN NEXT;
END
$$;

COMMENT ON FUNCTION opsdata._health_partition() IS 'Internal: the partition maintenance rows of opsdata.health()';

GRANT EXECUTE ON FUNCTION opsdata.manage_partitions(regclass, name, text, integer, text, text, name, text),
	opsdata.unmanage_partitions(regclass), opsdata.run_maintenance(regclass) TO opsdata_admin;
GRANT EXECUTE ON FUNCTION opsdata.show_partitions(regclass) TO opsdata_admin, opsdata_reader;

-- src/partition/partition_plan.sql
-- Partition maintenance: the plan of one set.
--
-- opsdata._partition_plan() reads a set's configuration and the catalog and
-- returns the steps that bring the set to where it should be, each a list
-- of SQL statements that the caller (src/partition/exec.c) runs in one
-- transaction with the privileges of the table's owner, under a short
-- lock_timeout.  Planning takes no lock stronger than ACCESS SHARE and
-- changes nothing.
--
-- Bounds are computed in UTC whatever the session's TimeZone: time values
-- are floored onto a grid anchored at 2000-01-03 00:00 UTC (a Monday) for
-- intervals of days and shorter, and at 2000-01-01 for intervals of months,
-- with timestamp-without-time-zone arithmetic on UTC wall-clock time, so a
-- daylight-saving change never shifts a bound.  Dates are treated as
-- midnight UTC.  Id sets use multiples of the interval.
--
-- Phases, in order; a step that fails or is skipped ends its phase:
--   finalize   complete, with FINALIZE, detaches left pending by an
--              interrupted run (the worker runs this phase after it has
--              returned its results, because FINALIZE waits for every older
--              snapshot, the caller's included); a pending partition that
--              retention drops is simply dropped, first in the retention
--              phase
--   create     partitions from the current one to premake ahead (and back
--              to start_from when a set is first managed); a slot whose rows
--              sit in the default partition is made by moving them
--   move       further slots of the default partition's rows, at most
--              partition.move_limit per run
--   retention  partitions wholly older than the cut-off: detached
--              concurrently when the set has no default partition, then
--              dropped or moved to the archive schema

CREATE FUNCTION opsdata._partition_floor(t timestamptz, iv interval)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE
		WHEN t IS NULL OR NOT pg_catalog.isfinite(t) THEN NULL
		WHEN EXTRACT(year FROM iv) = 0 AND EXTRACT(month FROM iv) = 0
		THEN pg_catalog.date_bin(iv, t AT TIME ZONE 'UTC', timestamp '2000-01-03') AT TIME ZONE 'UTC'
		ELSE (timestamp '2000-01-01'
			  + pg_catalog.make_interval(months => (pg_catalog.floor(
					((EXTRACT(year FROM t AT TIME ZONE 'UTC') - 2000) * 12
					 + EXTRACT(month FROM t AT TIME ZONE 'UTC') - 1)
					/ (EXTRACT(year FROM iv) * 12 + EXTRACT(month FROM iv)))
				* (EXTRACT(year FROM iv) * 12 + EXTRACT(month FROM iv)))::integer))
			 AT TIME ZONE 'UTC'
	END
$$;

COMMENT ON FUNCTION opsdata._partition_floor(timestamptz, interval) IS 'Internal: start, in UTC, of the partition slot a time falls in';

CREATE FUNCTION opsdata._partition_add(t timestamptz, iv interval, n bigint)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT ((t AT TIME ZONE 'UTC') + iv * n) AT TIME ZONE 'UTC'
$$;

COMMENT ON FUNCTION opsdata._partition_add(timestamptz, interval, bigint) IS 'Internal: a time moved by n intervals on the UTC wall clock';

-- A bound as the literal of a FOR VALUES clause; NULL is MINVALUE or
-- MAXVALUE (the caller says which).
CREATE FUNCTION opsdata._partition_literal(control_type regtype, t timestamptz, id bigint)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE
		WHEN control_type = 'timestamptz'::regtype
		THEN pg_catalog.quote_literal(pg_catalog.to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || '+00')
		WHEN control_type = 'date'::regtype
		THEN pg_catalog.quote_literal(pg_catalog.to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD'))
		ELSE id::text
	END
$$;

COMMENT ON FUNCTION opsdata._partition_literal(regtype, timestamptz, bigint) IS 'Internal: a partition bound as an SQL literal, times in UTC';

-- Name of a new partition: the parent's name, "_p" and the slot's start
-- (YYYYMM for months, YYYYMMDD for days, YYYYMMDD_HH24MI below a day, the
-- id for id sets), cut to fit NAMEDATALEN, with "_1", "_2"... when taken.
CREATE FUNCTION opsdata._partition_name(schema name, relname name, suffix text, taken text[])
RETURNS name
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	base text := relname;
	candidate text;
	i integer := 0;
BEGIN
	LOOP
		candidate := '_p' || suffix || CASE WHEN i > 0 THEN '_' || i ELSE '' END;
		WHILE pg_catalog.octet_length(base || candidate) > 63 LOOP
			base := pg_catalog.left(base, -1);
		END LOOP;
		candidate := base || candidate;
		IF NOT candidate = ANY (taken)
		   AND NOT EXISTS (SELECT FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
							WHERE n.nspname = schema AND c.relname = candidate) THEN
			RETURN candidate;
		END IF;
		i := i + 1;
	END LOOP;
END
$$;

COMMENT ON FUNCTION opsdata._partition_name(name, name, text, text[]) IS 'Internal: a free name for a new partition';

-- What a new partition copies from its parent: column defaults, CHECK and
-- NOT NULL constraints, generated columns, storage and compression (the
-- LIKE clause), then grants and replica identity (statements with %1$s for
-- the partition).  ATTACH adds the parent's indexes, row triggers and
-- foreign keys; the owner creates the table, so it has the parent's owner.
-- Also the columns a move copies (all but generated ones).
CREATE FUNCTION opsdata._partition_ddl_parts(parent regclass,
	OUT like_clause text, OUT cols text, OUT tail text[])
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	like_clause := pg_catalog.format('(LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING STORAGE INCLUDING COMPRESSION', parent);
	SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO cols
	  FROM pg_catalog.pg_attribute a
	 WHERE a.attrelid = parent AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '';
	SELECT coalesce(pg_catalog.array_agg(g ORDER BY g), '{}') INTO tail FROM (
		SELECT pg_catalog.format('GRANT %s ON TABLE %%1$s TO %s%s',
								 pg_catalog.string_agg(a.privilege_type, ', ' ORDER BY a.privilege_type),
								 CASE WHEN a.grantee = 0 THEN 'PUBLIC'
									  ELSE pg_catalog.replace(pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)), '%', '%%') END,
								 CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END) AS g
		  FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
		 WHERE c.oid = parent AND a.grantee <> c.relowner
		 GROUP BY a.grantee, a.is_grantable
		UNION ALL
		SELECT pg_catalog.format('GRANT %s (%s) ON TABLE %%1$s TO %s%s', x.privilege_type,
								 pg_catalog.replace(pg_catalog.quote_ident(att.attname), '%', '%%'),
								 CASE WHEN x.grantee = 0 THEN 'PUBLIC'
									  ELSE pg_catalog.replace(pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(x.grantee)), '%', '%%') END,
								 CASE WHEN x.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
		  FROM pg_catalog.pg_attribute att, pg_catalog.aclexplode(att.attacl) x
		 WHERE att.attrelid = parent AND att.attacl IS NOT NULL AND NOT att.attisdropped
		UNION ALL
		SELECT 'ALTER TABLE %1$s REPLICA IDENTITY ' || CASE c.relreplident WHEN 'f' THEN 'FULL' ELSE 'NOTHING' END
		  FROM pg_catalog.pg_class c WHERE c.oid = parent AND c.relreplident IN ('f', 'n')) t;
END
$$;

COMMENT ON FUNCTION opsdata._partition_ddl_parts(regclass) IS 'Internal: what a new partition copies from its parent, as SQL pieces';

-- The statements moving a detached partition into the archive schema,
-- renamed first when its name is taken there.
CREATE FUNCTION opsdata._partition_archive(p_schema name, p_relname name, p_archive name)
RETURNS text[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_new name;
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
					WHERE n.nspname = p_archive AND c.relname = p_relname) THEN
		RETURN ARRAY[pg_catalog.format('ALTER TABLE %I.%I SET SCHEMA %I', p_schema, p_relname, p_archive)];
	END IF;
	FOR i IN 1 .. 1000 LOOP
		v_new := pg_catalog.left(p_relname, 63 - pg_catalog.length('_' || i)) || '_' || i;
		CONTINUE WHEN EXISTS (SELECT FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
							   WHERE n.nspname IN (p_archive, p_schema) AND c.relname = v_new);
		RETURN ARRAY[pg_catalog.format('ALTER TABLE %I.%I RENAME TO %I', p_schema, p_relname, v_new),
					 pg_catalog.format('ALTER TABLE %I.%I SET SCHEMA %I', p_schema, v_new, p_archive)];
	END LOOP;
	RAISE EXCEPTION 'no free name for "%" in schema "%"', p_relname, p_archive USING ERRCODE = 'duplicate_table';
END
$$;

COMMENT ON FUNCTION opsdata._partition_archive(name, name, name) IS 'Internal: the statements moving a detached partition into the archive schema';

CREATE FUNCTION opsdata._partition_plan(p_parent regclass, p_start_from text, p_maintain boolean,
	OUT step integer, OUT phase text, OUT action text, OUT partition text, OUT statements text[],
	OUT toplevel boolean, OUT replica boolean, OUT detail text)
RETURNS SETOF record
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
DECLARE
	s opsdata.partitions;
	v_schema name;
	v_relname name;
	v_space text := '';
	v_time boolean;
	v_iv interval;
	v_w bigint;
	v_max bigint;
	v_ret text;
	v_default regclass;
	v_pending regclass;
	v_pending_ut timestamptz;
	v_pending_ui bigint;
	v_drop_pending regclass;
	v_like text;
	v_cols text;
	v_tail text[];
	v_parts regclass[];
	v_lt timestamptz[];
	v_ut timestamptz[];
	v_li bigint[];
	v_ui bigint[];
	v_blt timestamptz[] := '{}';
	v_bli bigint[] := '{}';
	v_bn bigint[] := '{}';
	v_used boolean[] := '{}';
	v_nulls bigint := 0;
	v_now timestamptz := pg_catalog.now();
	v_highest bigint;
	v_cut timestamptz;
	v_cut_id bigint;
	v_lo timestamptz;
	v_hi timestamptz;
	v_lo_id bigint;
	v_hi_id numeric;
	v_end timestamptz;
	v_end_id bigint;
	v_names text[] := '{}';
	v_expired text[] := '{}';
	v_expired_ut timestamptz[] := '{}';
	v_expired_ui bigint[] := '{}';
	v_missing timestamptz[];
	v_missing_id bigint[];
	v_slots bigint := 0;
	v_limit integer;
	v_moves integer := 0;
	v_overlap boolean;
	v_bucket integer;
	r record;
	i integer;
BEGIN
	step := 0;
	SELECT * INTO s FROM opsdata.partitions WHERE parent = p_parent;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'relation "%" is not a managed partition set', p_parent
			USING ERRCODE = 'undefined_object',
				  HINT = 'Put it under management with opsdata.manage_partitions().';
	END IF;
	SELECT n.nspname, c.relname, t.spcname INTO v_schema, v_relname, v_space
	  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
	  LEFT JOIN pg_catalog.pg_tablespace t ON t.oid = c.reltablespace
	 WHERE c.oid = p_parent;
	v_space := CASE WHEN v_space IS NULL THEN '' ELSE pg_catalog.format(' TABLESPACE %I', v_space) END;
	v_time := s.control_type IN ('timestamptz'::regtype, 'date'::regtype);
	IF v_time THEN
		v_iv := s.part_interval::interval;
	ELSE
		v_w := s.part_interval::bigint;
		v_max := CASE s.control_type WHEN 'smallint'::regtype THEN 32767
									 WHEN 'integer'::regtype THEN 2147483647
									 ELSE 9223372036854775807 END;
	END IF;
	v_ret := coalesce(s.retention, CASE WHEN s.retention_setting IS NOT NULL
										THEN opsdata.setting(s.retention_setting) END);
	v_limit := opsdata.setting('partition.move_limit')::integer;

	SELECT NULLIF(p.partdefid, 0)::regclass INTO v_default
	  FROM pg_catalog.pg_partitioned_table p WHERE p.partrelid = p_parent;
	SELECT pg_catalog.array_agg(l.partition) FILTER (WHERE NOT l.detach_pending),
		   pg_catalog.array_agg(l.lower_time) FILTER (WHERE NOT l.detach_pending),
		   pg_catalog.array_agg(l.upper_time) FILTER (WHERE NOT l.detach_pending),
		   pg_catalog.array_agg(l.lower_id) FILTER (WHERE NOT l.detach_pending),
		   pg_catalog.array_agg(l.upper_id) FILTER (WHERE NOT l.detach_pending),
		   max(l.partition::oid) FILTER (WHERE l.detach_pending)::regclass,
		   max(l.upper_time) FILTER (WHERE l.detach_pending),
		   max(l.upper_id) FILTER (WHERE l.detach_pending)
	  INTO v_parts, v_lt, v_ut, v_li, v_ui, v_pending, v_pending_ut, v_pending_ui
	  FROM opsdata._partition_layout(p_parent) l
	 WHERE NOT l.is_default;
	v_parts := coalesce(v_parts, '{}');

	-- The highest id, read from the newest partition holding rows and from
	-- the default partition.
	IF NOT v_time THEN
		FOR r IN SELECT u.p, u.lo FROM ROWS FROM (pg_catalog.unnest(v_parts), pg_catalog.unnest(v_li)) u(p, lo) ORDER BY u.lo DESC NULLS LAST LOOP
			EXECUTE pg_catalog.format('SELECT max(%I)::bigint FROM ONLY %s', s.control_column, r.p) INTO v_highest;
			EXIT WHEN v_highest IS NOT NULL;
		END LOOP;
		IF v_default IS NOT NULL THEN
			EXECUTE pg_catalog.format('SELECT GREATEST(max(%I)::bigint, $1) FROM ONLY %s', s.control_column, v_default)
			   INTO v_highest USING v_highest;
		END IF;
	END IF;

	-- The retention cut-off: partitions whose upper bound is at or below it
	-- hold only rows older than the retention.
	IF v_ret IS NOT NULL AND p_maintain THEN
		IF v_time THEN
			v_cut := ((v_now AT TIME ZONE 'UTC') - v_ret::interval) AT TIME ZONE 'UTC';
		ELSIF v_highest IS NOT NULL THEN
			v_cut_id := v_highest - v_ret::bigint;
		END IF;
	END IF;

	-- Rows in the default partition, by the slot they belong to.
	IF v_default IS NOT NULL AND EXISTS (SELECT FROM pg_catalog.pg_class WHERE oid = v_default AND relpages >= 0) THEN
		IF v_time THEN
			EXECUTE pg_catalog.format(
				'SELECT pg_catalog.array_agg(b ORDER BY b), pg_catalog.array_agg(n ORDER BY b),
						coalesce(sum(n) FILTER (WHERE b IS NULL), 0)::bigint
				   FROM (SELECT opsdata._partition_floor(%1$I, $1) AS b, count(*) AS n
						   FROM ONLY %2$s GROUP BY 1) g', s.control_column, v_default)
			   INTO v_blt, v_bn, v_nulls USING v_iv;
		ELSE
			EXECUTE pg_catalog.format(
				'SELECT pg_catalog.array_agg(b ORDER BY b), pg_catalog.array_agg(n ORDER BY b),
						coalesce(sum(n) FILTER (WHERE b IS NULL), 0)::bigint
				   FROM (SELECT %1$I::bigint - ((%1$I::bigint %% $1) + $1) %% $1 AS b, count(*) AS n
						   FROM ONLY %2$s GROUP BY 1) g', s.control_column, v_default)
			   INTO v_bli, v_bn, v_nulls USING v_w;
		END IF;
		v_blt := coalesce(v_blt, '{}');
		v_bli := coalesce(v_bli, '{}');
		v_bn := coalesce(v_bn, '{}');
		v_used := pg_catalog.array_fill(false, ARRAY[pg_catalog.cardinality(v_bn)]);
	END IF;

	-- Detaches left pending (a run interrupted between the two transactions
	-- of DETACH CONCURRENTLY, or a user's).  One to drop is dropped at the
	-- start of the retention phase; others are completed with FINALIZE.
	IF p_maintain AND v_pending IS NOT NULL THEN
		IF s.retention_mode = 'drop'
		   AND ((v_time AND v_cut IS NOT NULL AND v_pending_ut <= v_cut)
				OR (NOT v_time AND v_cut_id IS NOT NULL AND v_pending_ui <= v_cut_id)) THEN
			v_drop_pending := v_pending;
		ELSE
			step := step + 1; phase := 'finalize'; action := 'finalize'; partition := v_pending::text;
			statements := ARRAY[pg_catalog.format('ALTER TABLE %s DETACH PARTITION %s FINALIZE', p_parent, v_pending)];
			toplevel := false; replica := false; detail := 'interrupted detach completed';
			RETURN NEXT;
			IF (v_time AND v_cut IS NOT NULL AND v_pending_ut <= v_cut)
			   OR (NOT v_time AND v_cut_id IS NOT NULL AND v_pending_ui <= v_cut_id) THEN
				step := step + 1; phase := 'finalize'; action := 'archive';
				statements := (SELECT opsdata._partition_archive(n.nspname, c.relname, s.archive_schema)
								 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
								WHERE c.oid = v_pending);
				detail := 'older than the retention of ' || v_ret;
				RETURN NEXT;
			END IF;
		END IF;
	END IF;

	-- Create: every slot from the current one to premake ahead (from
	-- start_from on when given) that no partition covers yet.
	IF v_time THEN
		v_lo := opsdata._partition_floor(v_now, v_iv);
		v_end := opsdata._partition_add(v_lo, v_iv, s.premake + 1);
		IF p_start_from IS NOT NULL THEN
			v_lo := LEAST(v_lo, opsdata._partition_floor(
				CASE WHEN s.control_type = 'date'::regtype THEN p_start_from::date::timestamptz
					 ELSE p_start_from::timestamptz END, v_iv));
		END IF;
		SELECT pg_catalog.array_agg(g.lo ORDER BY g.lo), count(*) INTO v_missing, v_slots
		  FROM (SELECT t AT TIME ZONE 'UTC' AS lo, (t + v_iv) AT TIME ZONE 'UTC' AS hi
				  FROM pg_catalog.generate_series(v_lo AT TIME ZONE 'UTC', (v_end AT TIME ZONE 'UTC') - interval '1 microsecond', v_iv) t
				 LIMIT 10001) g
		 WHERE NOT EXISTS (SELECT FROM ROWS FROM (pg_catalog.unnest(v_lt), pg_catalog.unnest(v_ut)) u(lo, hi)
							WHERE (u.lo IS NULL OR u.lo < g.hi) AND (u.hi IS NULL OR u.hi > g.lo));
	ELSE
		v_highest := coalesce(v_highest,
							  CASE WHEN p_start_from IS NOT NULL THEN p_start_from::bigint END,
							  (SELECT min(x) FROM pg_catalog.unnest(v_li) x), 0);
		v_lo_id := v_highest - ((v_highest % v_w) + v_w) % v_w;
		v_end_id := LEAST(v_lo_id::numeric + (s.premake + 1) * v_w::numeric, v_max::numeric)::bigint;
		IF p_start_from IS NOT NULL THEN
			v_lo_id := LEAST(v_lo_id, p_start_from::bigint - ((p_start_from::bigint % v_w) + v_w) % v_w);
		END IF;
		SELECT pg_catalog.array_agg(g.lo ORDER BY g.lo), count(*) INTO v_missing_id, v_slots
		  FROM (SELECT t AS lo, t::numeric + v_w AS hi
				  FROM pg_catalog.generate_series(v_lo_id, v_end_id - 1, v_w) t
				 LIMIT 10001) g
		 WHERE NOT EXISTS (SELECT FROM ROWS FROM (pg_catalog.unnest(v_li), pg_catalog.unnest(v_ui)) u(lo, hi)
							WHERE (u.lo IS NULL OR u.lo < g.hi) AND (u.hi IS NULL OR u.hi > g.lo));
	END IF;
	IF v_slots > 10000 THEN
		RAISE EXCEPTION 'start_from "%" would make more than 10000 partitions', p_start_from
			USING ERRCODE = 'program_limit_exceeded',
				  HINT = 'Choose a later start_from, or a longer part_interval.';
	END IF;
	FOR i IN 1 .. coalesce(pg_catalog.cardinality(v_missing), pg_catalog.cardinality(v_missing_id), 0) LOOP
		IF v_time THEN
			v_lo := v_missing[i];
			v_hi := opsdata._partition_add(v_lo, v_iv, 1);
			v_bucket := pg_catalog.array_position(v_blt, v_lo);
		ELSE
			v_lo_id := v_missing_id[i];
			v_hi_id := v_lo_id::numeric + v_w;
			v_bucket := pg_catalog.array_position(v_bli, v_lo_id);
		END IF;
		IF v_like IS NULL THEN
			SELECT * INTO v_like, v_cols, v_tail FROM opsdata._partition_ddl_parts(p_parent);
		END IF;
		step := step + 1; phase := 'create';
		SELECT * INTO r FROM opsdata._partition_step(s, p_parent, v_schema, v_relname, v_space, v_like, v_cols,
													 v_tail, v_default, v_names, v_lo, v_hi, v_lo_id,
													 CASE WHEN v_hi_id > v_max THEN NULL ELSE v_hi_id::bigint END,
													 v_bucket IS NOT NULL);
		action := r.action; partition := r.partition; statements := r.statements;
		toplevel := false; replica := v_bucket IS NOT NULL; detail := r.detail;
		IF v_bucket IS NOT NULL THEN
			v_used[v_bucket] := true;
		END IF;
		v_names := v_names || partition;
		RETURN NEXT;
	END LOOP;

	IF NOT p_maintain THEN
		RETURN;
	END IF;

	-- Move: the other slots of the default partition's rows, oldest first.
	FOR i IN 1 .. pg_catalog.cardinality(v_bn) LOOP
		CONTINUE WHEN v_used[i];
		IF v_time THEN
			CONTINUE WHEN v_blt[i] IS NULL;
			v_lo := v_blt[i];
			v_hi := opsdata._partition_add(v_lo, v_iv, 1);
			v_overlap := EXISTS (SELECT FROM ROWS FROM (pg_catalog.unnest(v_lt), pg_catalog.unnest(v_ut)) u(lo, hi)
								  WHERE (u.lo IS NULL OR u.lo < v_hi) AND (u.hi IS NULL OR u.hi > v_lo));
		ELSE
			CONTINUE WHEN v_bli[i] IS NULL;
			v_lo_id := v_bli[i];
			v_hi_id := v_lo_id::numeric + v_w;
			v_overlap := EXISTS (SELECT FROM ROWS FROM (pg_catalog.unnest(v_li), pg_catalog.unnest(v_ui)) u(lo, hi)
								  WHERE (u.lo IS NULL OR u.lo < v_hi_id) AND (u.hi IS NULL OR u.hi > v_lo_id));
		END IF;
		step := step + 1; phase := 'move'; toplevel := false;
		IF v_overlap THEN
			action := 'note'; partition := NULL; statements := NULL; replica := false;
			detail := pg_catalog.format('%s rows of the default partition fall in %s .. %s, which an existing partition overlaps; they stay',
										v_bn[i],
										CASE WHEN v_time THEN v_lo::text ELSE v_lo_id::text END,
										CASE WHEN v_time THEN v_hi::text ELSE v_hi_id::text END);
			RETURN NEXT;
			CONTINUE;
		END IF;
		IF v_moves >= v_limit THEN
			action := 'note'; partition := NULL; statements := NULL; replica := false;
			detail := pg_catalog.format('rows of %s more slots stay in the default partition until the next run (partition.move_limit is %s)',
										(SELECT count(*) FROM pg_catalog.generate_subscripts(v_bn, 1) j
										  WHERE j >= i AND NOT v_used[j]
											AND (v_blt[j] IS NOT NULL OR v_bli[j] IS NOT NULL)), v_limit);
			RETURN NEXT;
			EXIT;
		END IF;
		v_moves := v_moves + 1;
		IF v_like IS NULL THEN
			SELECT * INTO v_like, v_cols, v_tail FROM opsdata._partition_ddl_parts(p_parent);
		END IF;
		SELECT * INTO r FROM opsdata._partition_step(s, p_parent, v_schema, v_relname, v_space, v_like, v_cols,
													 v_tail, v_default, v_names, v_lo, v_hi, v_lo_id,
													 CASE WHEN v_hi_id > v_max THEN NULL ELSE v_hi_id::bigint END, true);
		action := r.action; partition := r.partition; statements := r.statements; replica := true;
		detail := r.detail;
		v_names := v_names || partition;
		RETURN NEXT;
		IF (v_time AND v_cut IS NOT NULL AND v_hi <= v_cut)
		   OR (NOT v_time AND v_cut_id IS NOT NULL AND v_hi_id <= v_cut_id) THEN
			v_expired := v_expired || r.relname::text;
			v_expired_ut := v_expired_ut || v_hi;
			v_expired_ui := v_expired_ui || v_hi_id::bigint;
		END IF;
	END LOOP;
	IF v_nulls > 0 THEN
		step := step + 1; phase := 'move'; action := 'note'; partition := NULL; statements := NULL;
		toplevel := false; replica := false;
		detail := pg_catalog.format('%s with a NULL "%s" %s in the default partition',
									CASE WHEN v_nulls = 1 THEN '1 row' ELSE v_nulls || ' rows' END, s.control_column,
									CASE WHEN v_nulls = 1 THEN 'stays' ELSE 'stay' END);
		RETURN NEXT;
	END IF;

	-- Retention: partitions wholly older than the cut-off, oldest first.
	IF v_cut IS NULL AND v_cut_id IS NULL THEN
		RETURN;
	END IF;
	IF v_drop_pending IS NOT NULL THEN
		-- DROP TABLE takes ACCESS EXCLUSIVE on the parent, under the step's
		-- lock_timeout, but needs no FINALIZE (which would wait for every
		-- older snapshot, the caller's included).
		step := step + 1; phase := 'retention'; action := 'drop'; partition := v_drop_pending::text;
		statements := ARRAY[pg_catalog.format('DROP TABLE %s', v_drop_pending)];
		toplevel := false; replica := false;
		detail := 'older than the retention of ' || v_ret || ', its detach interrupted';
		RETURN NEXT;
	ELSIF v_default IS NULL AND v_pending IS NOT NULL THEN
		-- A table has at most one detach pending; the next one waits.
		step := step + 1; phase := 'retention'; action := 'note'; partition := NULL; statements := NULL;
		toplevel := false; replica := false;
		detail := pg_catalog.format('retention waits for the pending detach of %s', v_pending);
		RETURN NEXT;
		RETURN;
	END IF;
	FOR r IN
		SELECT x.p, x.nspname, x.relname FROM (
			SELECT u.p::text AS p, n.nspname AS nspname, c.relname AS relname, u.ut, u.ui
			  FROM ROWS FROM (pg_catalog.unnest(v_parts), pg_catalog.unnest(v_ut), pg_catalog.unnest(v_ui)) u(p, ut, ui)
			  JOIN pg_catalog.pg_class c ON c.oid = u.p
			  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
			 WHERE (v_time AND u.ut <= v_cut) OR (NOT v_time AND u.ui <= v_cut_id)
			UNION ALL
			SELECT pg_catalog.format('%I.%I', v_schema, e.name), v_schema, e.name, e.ut, e.ui
			  FROM ROWS FROM (pg_catalog.unnest(v_expired), pg_catalog.unnest(v_expired_ut), pg_catalog.unnest(v_expired_ui)) e(name, ut, ui)) x
		 ORDER BY x.ut, x.ui
	LOOP
		phase := 'retention'; partition := r.p; replica := false;
		detail := 'older than the retention of ' || v_ret;
		IF v_default IS NULL THEN
			-- No default partition: DETACH CONCURRENTLY, which never blocks
			-- the parent's readers and writers.  It cannot run in a
			-- transaction block; the second statement completes it when it
			-- was interrupted after its first transaction.
			step := step + 1; action := 'detach'; toplevel := true;
			statements := ARRAY[pg_catalog.format('ALTER TABLE %s DETACH PARTITION %s CONCURRENTLY', p_parent, r.p),
								pg_catalog.format('ALTER TABLE %s DETACH PARTITION %s FINALIZE', p_parent, r.p)];
			RETURN NEXT;
			step := step + 1; toplevel := false;
			IF s.retention_mode = 'drop' THEN
				action := 'drop';
				statements := ARRAY[pg_catalog.format('DROP TABLE %s', r.p)];
			ELSE
				action := 'archive';
				statements := opsdata._partition_archive(r.nspname, r.relname, s.archive_schema);
			END IF;
			RETURN NEXT;
		ELSE
			-- With a default partition PostgreSQL allows only the plain
			-- forms, which lock the parent (and the default partition) in
			-- ACCESS EXCLUSIVE mode: one short transaction, under the
			-- step's lock_timeout.
			step := step + 1; toplevel := false;
			IF s.retention_mode = 'drop' THEN
				action := 'drop';
				statements := ARRAY[pg_catalog.format('DROP TABLE %s', r.p)];
			ELSE
				action := 'archive';
				statements := pg_catalog.format('ALTER TABLE %s DETACH PARTITION %s', p_parent, r.p)
							  || opsdata._partition_archive(r.nspname, r.relname, s.archive_schema);
			END IF;
			RETURN NEXT;
		END IF;
	END LOOP;
END
$$;

COMMENT ON FUNCTION opsdata._partition_plan(regclass, text, boolean) IS 'Internal: the steps that bring a partition set up to date';

-- The statements making one partition [lo, hi) of a set: an empty one
-- (create), or one filled from the default partition before it is attached
-- (move), with a CHECK constraint matching its bounds so that ATTACH
-- skips its validation scan; the constraint is dropped once attached.
-- ATTACH PARTITION takes SHARE UPDATE EXCLUSIVE on the parent, which
-- blocks no reader or writer (and ACCESS EXCLUSIVE on the default
-- partition when there is one).
CREATE FUNCTION opsdata._partition_step(s opsdata.partitions, parent regclass, schema name, parent_name name,
	space text, like_clause text, cols text, tail text[], default_part regclass, taken text[],
	lo timestamptz, hi timestamptz, lo_id bigint, hi_id bigint, filled boolean,
	OUT action text, OUT partition text, OUT relname name, OUT statements text[], OUT detail text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
	v_time boolean := s.control_type IN ('timestamptz'::regtype, 'date'::regtype);
	v_name name;
	v_lit_lo text := opsdata._partition_literal(s.control_type, lo, lo_id);
	v_lit_hi text := opsdata._partition_literal(s.control_type, hi, hi_id);
	v_suffix text;
	v_iv interval;
	v_check text;
	v_cond text;
	g text;
BEGIN
	IF v_time THEN
		v_iv := s.part_interval::interval;
		v_suffix := CASE
			WHEN EXTRACT(year FROM v_iv) * 12 + EXTRACT(month FROM v_iv) > 0
			THEN pg_catalog.to_char(lo AT TIME ZONE 'UTC', 'YYYYMM')
			WHEN EXTRACT(epoch FROM v_iv)::numeric % 86400 = 0
			THEN pg_catalog.to_char(lo AT TIME ZONE 'UTC', 'YYYYMMDD')
			ELSE pg_catalog.to_char(lo AT TIME ZONE 'UTC', 'YYYYMMDD_HH24MI') END;
	ELSE
		v_suffix := pg_catalog.replace(lo_id::text, '-', 'm');
	END IF;
	v_name := opsdata._partition_name(schema, parent_name, v_suffix, taken);
	relname := v_name;
	partition := pg_catalog.format('%I.%I', schema, v_name);
	detail := pg_catalog.format('FROM (%s) TO (%s)', v_lit_lo, coalesce(v_lit_hi, 'MAXVALUE'));
	IF NOT filled THEN
		action := 'create';
		statements := ARRAY[pg_catalog.format('CREATE TABLE %s %s)%s', partition, like_clause, space)];
	ELSE
		action := 'move';
		v_cond := pg_catalog.format('%1$I >= %2$s', s.control_column, v_lit_lo)
				  || CASE WHEN v_lit_hi IS NULL THEN ''
						  ELSE pg_catalog.format(' AND %1$I < %2$s', s.control_column, v_lit_hi) END;
		statements := ARRAY[
			pg_catalog.format('CREATE TABLE %s %s, CONSTRAINT opsdata_partition_bounds CHECK (%I IS NOT NULL AND %s))%s',
							  partition, like_clause, s.control_column, v_cond, space),
			pg_catalog.format('WITH moved AS (DELETE FROM ONLY %s WHERE %s RETURNING %s) INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM moved',
							  default_part, v_cond, cols, partition, cols, cols)];
	END IF;
	statements := statements
		|| pg_catalog.format('ALTER TABLE %s ATTACH PARTITION %s FOR VALUES FROM (%s) TO (%s)',
							 parent, partition, v_lit_lo, coalesce(v_lit_hi, 'MAXVALUE'));
	IF filled THEN
		statements := statements
			|| pg_catalog.format('ALTER TABLE %s DROP CONSTRAINT opsdata_partition_bounds', partition);
	END IF;
	FOREACH g IN ARRAY tail LOOP
		statements := statements || pg_catalog.format(g, partition);
	END LOOP;
END
$$;

COMMENT ON FUNCTION opsdata._partition_step(opsdata.partitions, regclass, name, name, text, text, text, text[], regclass, text[], timestamptz, timestamptz, bigint, bigint, boolean) IS 'Internal: the statements that make one partition, empty or filled from the default partition';

-- src/audit/audit.sql
-- Audit: entries, statement texts, seals, rules and the processing queue.
--
-- Audit tables are written by the extension only.  No role, the auditors
-- included, is granted INSERT, UPDATE, DELETE or TRUNCATE on them: only the
-- extension owner (a superuser) can change them, and retention removes
-- whole partitions.

CREATE TABLE audit.statements (
	statement_id	bigint PRIMARY KEY,
	statement_text	text NOT NULL,
	first_seen		timestamptz NOT NULL DEFAULT pg_catalog.now()
);

COMMENT ON TABLE audit.statements IS 'Each distinct audited statement text, stored once';
COMMENT ON COLUMN audit.statements.statement_id IS 'Identifier audit.entries.statement_id refers to, derived from a hash of the text';
COMMENT ON COLUMN audit.statements.statement_text IS 'The statement, with secrets redacted';
COMMENT ON COLUMN audit.statements.first_seen IS 'When the text was first audited';

CREATE SEQUENCE audit.entries_entry_id_seq AS bigint;

CREATE TABLE audit.entries (
	entry_id			bigint NOT NULL DEFAULT pg_catalog.nextval('audit.entries_entry_id_seq'),
	ts					timestamptz NOT NULL DEFAULT pg_catalog.now(),
	database			text NOT NULL,
	username			text NOT NULL,
	current_user_name	text NOT NULL,
	application			text,
	client_addr			inet,
	backend_pid			integer NOT NULL,
	xid					xid8,
	class				text NOT NULL
						CHECK (class IN ('read', 'write', 'function', 'role', 'ddl', 'misc', 'login')),
	command				text NOT NULL,
	objects				text[],
	privileges			text[],
	rows				bigint,
	duration			interval,
	outcome				text NOT NULL
						CHECK (outcome IN ('ok', 'error', 'rolled back', 'denied', 'failed')),
	sqlstate			text,
	statement_id		bigint,
	params				text,
	PRIMARY KEY (entry_id, ts)
) PARTITION BY RANGE (ts);

ALTER SEQUENCE audit.entries_entry_id_seq OWNED BY audit.entries.entry_id;

-- Auditors look by time (BRIN: ts grows with the table, and costs next to
-- nothing to maintain), by user and by object.  The by-user B-tree and the
-- by-object GIN index would cost every audited statement; they are built
-- on each day's partition once the day is over (audit._index_closed_partitions()).
CREATE INDEX entries_ts_idx ON audit.entries USING brin (ts);

-- Rows land here until partition maintenance has made the day's partition,
-- and maintenance moves them out.
CREATE TABLE audit.entries_default PARTITION OF audit.entries DEFAULT;

COMMENT ON TABLE audit.entries IS 'The audit trail: one row per audited statement, login or disconnect; partitioned by day';
COMMENT ON COLUMN audit.entries.entry_id IS 'Position in the audit trail; seals cover ranges of it';
COMMENT ON COLUMN audit.entries.ts IS 'When the statement started';
COMMENT ON COLUMN audit.entries.database IS 'Database the session was connected to';
COMMENT ON COLUMN audit.entries.username IS 'Session user (who logged in)';
COMMENT ON COLUMN audit.entries.current_user_name IS 'Current user when the statement ran (after SET ROLE or SECURITY DEFINER)';
COMMENT ON COLUMN audit.entries.application IS 'application_name of the session';
COMMENT ON COLUMN audit.entries.client_addr IS 'Client address; NULL for Unix-domain sockets';
COMMENT ON COLUMN audit.entries.backend_pid IS 'Process ID of the backend';
COMMENT ON COLUMN audit.entries.xid IS 'Top-level transaction ID, when one was assigned';
COMMENT ON COLUMN audit.entries.class IS 'read, write, function, role, ddl, misc or login';
COMMENT ON COLUMN audit.entries.command IS 'Command tag, e.g. INSERT or CREATE TABLE';
COMMENT ON COLUMN audit.entries.objects IS 'Qualified names of the objects the statement touched (relations, functions, roles, settings, or the identities of objects a DDL statement made, altered or dropped)';
COMMENT ON COLUMN audit.entries.privileges IS 'Privilege used on each object, in the order of objects (e.g. SELECT or SELECT,UPDATE); NULL where none applies';
COMMENT ON COLUMN audit.entries.rows IS 'Rows processed (returned, inserted, updated, deleted or copied)';
COMMENT ON COLUMN audit.entries.duration IS 'How long the statement ran (for a disconnect: how long the session lasted)';
COMMENT ON COLUMN audit.entries.outcome IS 'ok; error; denied (insufficient privilege); rolled back (the statement completed, but its transaction or savepoint was rolled back); failed (login)';
COMMENT ON COLUMN audit.entries.sqlstate IS 'SQLSTATE of the error, for outcomes other than ok';
COMMENT ON COLUMN audit.entries.statement_id IS 'The statement text, in audit.statements';
COMMENT ON COLUMN audit.entries.params IS 'Bind parameters, when their capture is on';

CREATE TABLE audit.seals (
	seal_id			bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	first_entry_id	bigint NOT NULL,
	last_entry_id	bigint NOT NULL,
	entry_count		bigint NOT NULL CHECK (entry_count >= 0),
	prev_hash		bytea NOT NULL,
	hash			bytea NOT NULL,
	sealed_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	CHECK (last_entry_id >= first_entry_id)
);

COMMENT ON TABLE audit.seals IS 'Hash chain over the audit trail: each seal covers a range of entries and the previous seal';
COMMENT ON COLUMN audit.seals.seal_id IS 'Seal identifier, in chain order';
COMMENT ON COLUMN audit.seals.first_entry_id IS 'First entry covered';
COMMENT ON COLUMN audit.seals.last_entry_id IS 'Last entry covered';
COMMENT ON COLUMN audit.seals.entry_count IS 'Entries covered';
COMMENT ON COLUMN audit.seals.prev_hash IS 'Hash of the previous seal';
COMMENT ON COLUMN audit.seals.hash IS 'Hash over the previous hash and the covered entries';
COMMENT ON COLUMN audit.seals.sealed_at IS 'When the seal was made';

CREATE TABLE audit.rules (
	rule_id			bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	action			text NOT NULL CHECK (action IN ('include', 'exclude')),
	role_name		name,
	database_name	name,
	schema_name		name,
	relation_name	text,
	class			text CHECK (class IN ('read', 'write', 'function', 'role', 'ddl', 'misc', 'login')),
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	created_by		name NOT NULL DEFAULT SESSION_USER,
	comment			text
);

COMMENT ON TABLE audit.rules IS 'Rules that include or exclude statements from the audit trail; NULL matches anything';
COMMENT ON COLUMN audit.rules.rule_id IS 'Rule identifier';
COMMENT ON COLUMN audit.rules.action IS 'include or exclude';
COMMENT ON COLUMN audit.rules.role_name IS 'Role the rule applies to, members included';
COMMENT ON COLUMN audit.rules.database_name IS 'Database the rule applies to';
COMMENT ON COLUMN audit.rules.schema_name IS 'Schema of the objects the rule applies to';
COMMENT ON COLUMN audit.rules.relation_name IS 'Qualified name of the relation the rule applies to';
COMMENT ON COLUMN audit.rules.class IS 'Statement class the rule applies to';
COMMENT ON COLUMN audit.rules.created_at IS 'When the rule was made';
COMMENT ON COLUMN audit.rules.created_by IS 'Who made the rule';
COMMENT ON COLUMN audit.rules.comment IS 'Free text';

CREATE TABLE audit.queue (
	item_id			bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	consumer		text NOT NULL,
	entry_id		bigint,
	payload			jsonb,
	enqueued_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	available_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	claimed_by		text,
	attempts		integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
	done_at			timestamptz
);

CREATE INDEX queue_pending_idx ON audit.queue (consumer, available_at) WHERE done_at IS NULL;

COMMENT ON TABLE audit.queue IS 'Audit processing queue: work items for consumers of the audit trail';
COMMENT ON COLUMN audit.queue.item_id IS 'Item identifier, in arrival order';
COMMENT ON COLUMN audit.queue.consumer IS 'Consumer the item is for';
COMMENT ON COLUMN audit.queue.entry_id IS 'Audit entry the item refers to, if any';
COMMENT ON COLUMN audit.queue.payload IS 'Item contents';
COMMENT ON COLUMN audit.queue.enqueued_at IS 'When the item was queued';
COMMENT ON COLUMN audit.queue.available_at IS 'When the item may next be claimed';
COMMENT ON COLUMN audit.queue.claimed_by IS 'Consumer instance holding the item';
COMMENT ON COLUMN audit.queue.attempts IS 'How many times the item was claimed';
COMMENT ON COLUMN audit.queue.done_at IS 'When processing of the item was acknowledged';

-- Rows of audit tables are only ever inserted; even roles that bypass GRANTs
-- (pg_write_all_data) cannot change them.  Row triggers of audit.entries are
-- cloned onto each of its partitions.
CREATE FUNCTION audit._refuse_change()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_refuse_change';

COMMENT ON FUNCTION audit._refuse_change() IS 'Internal: trigger refusing UPDATE and DELETE of audit rows to all but the owner';

CREATE TRIGGER refuse_change BEFORE UPDATE OR DELETE ON audit.entries
	FOR EACH ROW EXECUTE FUNCTION audit._refuse_change();
CREATE TRIGGER refuse_change BEFORE UPDATE OR DELETE ON audit.statements
	FOR EACH ROW EXECUTE FUNCTION audit._refuse_change();
CREATE TRIGGER refuse_change BEFORE UPDATE OR DELETE ON audit.seals
	FOR EACH ROW EXECUTE FUNCTION audit._refuse_change();
CREATE TRIGGER refuse_change BEFORE UPDATE OR DELETE ON audit.rules
	FOR EACH ROW EXECUTE FUNCTION audit._refuse_change();
CREATE TRIGGER refuse_change BEFORE UPDATE OR DELETE ON audit.queue
	FOR EACH ROW EXECUTE FUNCTION audit._refuse_change();

SELECT pg_catalog.pg_extension_config_dump('audit.statements', '');
SELECT pg_catalog.pg_extension_config_dump('audit.entries_default', '');
SELECT pg_catalog.pg_extension_config_dump('audit.entries_entry_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('audit.seals', '');
SELECT pg_catalog.pg_extension_config_dump('audit.seals_seal_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('audit.rules', '');
SELECT pg_catalog.pg_extension_config_dump('audit.rules_rule_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('audit.queue', '');
SELECT pg_catalog.pg_extension_config_dump('audit.queue_item_id_seq', '');

--
-- Reading the trail.
--
CREATE VIEW audit.trail AS
	SELECT e.entry_id, e.ts, e.database, e.username, e.current_user_name, e.application,
		   e.client_addr, e.backend_pid, e.xid, e.class, e.command, e.objects, e.privileges,
		   e.rows, e.duration, e.outcome, e.sqlstate, s.statement_text, e.params
	  FROM audit.entries e LEFT JOIN audit.statements s USING (statement_id);

COMMENT ON VIEW audit.trail IS 'audit.entries with the text of each statement';

--
-- Functions.
--
CREATE FUNCTION audit.flush()
RETURNS bigint
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'audit_flush';

COMMENT ON FUNCTION audit.flush() IS 'Write every entry queued for this database now, in the calling transaction; returns how many';

CREATE FUNCTION audit.queue_state(OUT database text, OUT capacity bigint, OUT used bigint,
	OUT enqueued bigint, OUT drained bigint, OUT dropped bigint, OUT waits bigint,
	OUT failed_writes bigint, OUT last_drained timestamptz)
RETURNS SETOF record
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'audit_queue_state';

COMMENT ON FUNCTION audit.queue_state() IS 'The shared-memory audit queue of each database, with counters since the server started';

CREATE FUNCTION audit._health_audit(OUT component text, OUT status text, OUT detail text)
RETURNS SETOF record
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'audit_health';

COMMENT ON FUNCTION audit._health_audit() IS 'Internal: the audit rows of opsdata.health()';

CREATE FUNCTION audit._rules_changed(command text, object text)
RETURNS void
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'audit_rules_changed';

COMMENT ON FUNCTION audit._rules_changed(text, text) IS 'Internal: record a change of the audit rules and make sessions read them again';

CREATE FUNCTION audit.add_rule(action text, role_name name DEFAULT NULL, database_name name DEFAULT NULL,
	schema_name name DEFAULT NULL, relation_name text DEFAULT NULL, class text DEFAULT NULL,
	comment text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	id bigint;
BEGIN
	IF action IS NULL OR action NOT IN ('include', 'exclude') THEN
		RAISE EXCEPTION 'invalid audit rule action "%"', action
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'The action is include or exclude.';
	END IF;
	IF class IS NOT NULL AND class NOT IN ('read', 'write', 'function', 'role', 'ddl', 'misc', 'login') THEN
		RAISE EXCEPTION 'invalid audit class "%"', class
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Valid classes are read, write, function, role, ddl, misc and login.';
	END IF;
	INSERT INTO audit.rules AS r (action, role_name, database_name, schema_name, relation_name, class, comment)
		 VALUES (add_rule.action, add_rule.role_name, add_rule.database_name, add_rule.schema_name,
				 add_rule.relation_name, add_rule.class, add_rule.comment)
	  RETURNING r.rule_id INTO id;
	PERFORM audit._rules_changed('ADD AUDIT RULE', 'audit.rules');
	RETURN id;
END
$$;

COMMENT ON FUNCTION audit.add_rule(text, name, name, name, text, text, text) IS 'Add a rule that includes or excludes statements from the audit trail; returns its rule_id';

CREATE FUNCTION audit.drop_rule(rule_id bigint)
RETURNS boolean
LANGUAGE plpgsql VOLATILE STRICT
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	DELETE FROM audit.rules r WHERE r.rule_id = drop_rule.rule_id;
	IF NOT FOUND THEN
		RETURN false;
	END IF;
	PERFORM audit._rules_changed('DROP AUDIT RULE', 'audit.rules');
	RETURN true;
END
$$;

COMMENT ON FUNCTION audit.drop_rule(bigint) IS 'Remove an audit rule; returns false when there was no such rule';

-- DDL statements learn the identities of the objects they made, altered
-- or dropped from these event triggers.
CREATE FUNCTION audit._ddl_command_end()
RETURNS event_trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_ddl_command_end';

CREATE FUNCTION audit._sql_drop()
RETURNS event_trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_sql_drop';

COMMENT ON FUNCTION audit._ddl_command_end() IS 'Internal: event trigger giving audited DDL statements the objects they made or altered';
COMMENT ON FUNCTION audit._sql_drop() IS 'Internal: event trigger giving audited DDL statements the objects they dropped';

CREATE EVENT TRIGGER opsdata_audit_ddl ON ddl_command_end EXECUTE FUNCTION audit._ddl_command_end();
CREATE EVENT TRIGGER opsdata_audit_drop ON sql_drop EXECUTE FUNCTION audit._sql_drop();

GRANT SELECT ON audit.entries, audit.statements, audit.seals, audit.rules, audit.queue, audit.trail TO opsdata_auditor;
GRANT SELECT ON audit.rules TO opsdata_admin;
GRANT EXECUTE ON FUNCTION audit.flush(), audit.queue_state() TO opsdata_admin, opsdata_auditor;
GRANT EXECUTE ON FUNCTION audit.add_rule(text, name, name, name, text, text, text),
	audit.drop_rule(bigint) TO opsdata_admin;
GRANT USAGE ON SCHEMA audit TO opsdata_admin;

CREATE FUNCTION audit._index_closed_partitions()
RETURNS integer
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'audit_index_closed_partitions';

COMMENT ON FUNCTION audit._index_closed_partitions() IS 'Internal: start building the by-user and by-object indexes missing on partitions of audit.entries whose day ended over an hour ago; returns how many are missing';

-- Five minutes past every hour: a day's partition qualifies an hour after
-- midnight UTC.
INSERT INTO opsdata.jobs (name, command, schedule, next_run, builtin, comment) VALUES
	('audit index closed partitions', 'SELECT audit._index_closed_partitions()', '1 hour',
	 pg_catalog.date_trunc('hour', pg_catalog.now()) + interval '1 hour 5 minutes', true,
	 'Builds the by-user and by-object indexes of each day of audit.entries once the day is over');

INSERT INTO opsdata.settings (key, type, default_value, valid_when, description) VALUES
	('audit.retention', 'interval', '90 days', 'value > interval ''0''',
	 'Age after which daily partitions of audit.entries are removed by partition maintenance');
SELECT opsdata._partition_builtin('audit.entries', 'ts', '1 day', 7, 'audit.retention');

-- src/metrics/metrics.sql
-- Metrics: the quantile sketch type, series, raw points, rollups and the
-- queue of contributions waiting to be rolled up.

--
-- metrics.sketch: a mergeable quantile sketch with 1% relative accuracy
-- (src/metrics/sketch.h).
--
CREATE TYPE metrics.sketch;

CREATE FUNCTION metrics.sketch_in(cstring) RETURNS metrics.sketch
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'metrics_sketch_in';
CREATE FUNCTION metrics.sketch_out(metrics.sketch) RETURNS cstring
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'metrics_sketch_out';
CREATE FUNCTION metrics.sketch_recv(internal) RETURNS metrics.sketch
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'metrics_sketch_recv';
CREATE FUNCTION metrics.sketch_send(metrics.sketch) RETURNS bytea
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'metrics_sketch_send';

CREATE TYPE metrics.sketch (
	INPUT = metrics.sketch_in,
	OUTPUT = metrics.sketch_out,
	RECEIVE = metrics.sketch_recv,
	SEND = metrics.sketch_send,
	INTERNALLENGTH = VARIABLE,
	ALIGNMENT = int4,
	STORAGE = extended
);

COMMENT ON TYPE metrics.sketch IS 'Mergeable quantile sketch: any quantile within 1% relative error, merges independent of order';
COMMENT ON FUNCTION metrics.sketch_in(cstring) IS 'Text input of metrics.sketch';
COMMENT ON FUNCTION metrics.sketch_out(metrics.sketch) IS 'Text output of metrics.sketch';
COMMENT ON FUNCTION metrics.sketch_recv(internal) IS 'Binary input of metrics.sketch';
COMMENT ON FUNCTION metrics.sketch_send(metrics.sketch) IS 'Binary output of metrics.sketch';

CREATE FUNCTION metrics.sketch_count(metrics.sketch) RETURNS bigint
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'metrics_sketch_count';
CREATE FUNCTION metrics.sketch_sum(metrics.sketch) RETURNS double precision
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'metrics_sketch_sum';
CREATE FUNCTION metrics.sketch_min(metrics.sketch) RETURNS double precision
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'metrics_sketch_min';
CREATE FUNCTION metrics.sketch_max(metrics.sketch) RETURNS double precision
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'metrics_sketch_max';
CREATE FUNCTION metrics.quantile(sketch metrics.sketch, q double precision) RETURNS double precision
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'metrics_quantile';
CREATE FUNCTION metrics.quantiles(sketch metrics.sketch, qs double precision[]) RETURNS double precision[]
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'metrics_quantiles';
CREATE FUNCTION metrics.sketch_merge(a metrics.sketch, b metrics.sketch) RETURNS metrics.sketch
	LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'metrics_sketch_merge2';

COMMENT ON FUNCTION metrics.sketch_count(metrics.sketch) IS 'Number of values in the sketch';
COMMENT ON FUNCTION metrics.sketch_sum(metrics.sketch) IS 'Sum of the values, exact then rounded once to float8';
COMMENT ON FUNCTION metrics.sketch_min(metrics.sketch) IS 'Smallest value (exact); NULL for an empty sketch';
COMMENT ON FUNCTION metrics.sketch_max(metrics.sketch) IS 'Largest value (exact); NULL for an empty sketch';
COMMENT ON FUNCTION metrics.quantile(metrics.sketch, double precision) IS 'The q-quantile (0 <= q <= 1), within 1% of the value percentile_disc(q) would return';
COMMENT ON FUNCTION metrics.quantiles(metrics.sketch, double precision[]) IS 'Several quantiles at once, in the order given';
COMMENT ON FUNCTION metrics.sketch_merge(metrics.sketch, metrics.sketch) IS 'Sketch of the values of both sketches; NULL counts as empty';

-- Aggregate support: one state for both aggregates, parallel-safe.
CREATE FUNCTION metrics._sketch_agg_trans(internal, double precision) RETURNS internal
	LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'metrics_sketch_agg_trans';
CREATE FUNCTION metrics._sketch_union_trans(internal, metrics.sketch) RETURNS internal
	LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'metrics_sketch_union_trans';
CREATE FUNCTION metrics._sketch_combine(internal, internal) RETURNS internal
	LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'metrics_sketch_combine';
CREATE FUNCTION metrics._sketch_serialize(internal) RETURNS bytea
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'metrics_sketch_serial';
CREATE FUNCTION metrics._sketch_deserialize(bytea, internal) RETURNS internal
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'metrics_sketch_deserial';
CREATE FUNCTION metrics._sketch_final(internal) RETURNS metrics.sketch
	LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'metrics_sketch_final';

COMMENT ON FUNCTION metrics._sketch_agg_trans(internal, double precision) IS 'Internal: transition function of metrics.sketch_agg';
COMMENT ON FUNCTION metrics._sketch_union_trans(internal, metrics.sketch) IS 'Internal: transition function of metrics.sketch_union';
COMMENT ON FUNCTION metrics._sketch_combine(internal, internal) IS 'Internal: combine function of the sketch aggregates';
COMMENT ON FUNCTION metrics._sketch_serialize(internal) IS 'Internal: serialization function of the sketch aggregates';
COMMENT ON FUNCTION metrics._sketch_deserialize(bytea, internal) IS 'Internal: deserialization function of the sketch aggregates';
COMMENT ON FUNCTION metrics._sketch_final(internal) IS 'Internal: final function of the sketch aggregates';

CREATE AGGREGATE metrics.sketch_agg(double precision) (
	SFUNC = metrics._sketch_agg_trans,
	STYPE = internal,
	FINALFUNC = metrics._sketch_final,
	COMBINEFUNC = metrics._sketch_combine,
	SERIALFUNC = metrics._sketch_serialize,
	DESERIALFUNC = metrics._sketch_deserialize,
	PARALLEL = SAFE
);

CREATE AGGREGATE metrics.sketch_union(metrics.sketch) (
	SFUNC = metrics._sketch_union_trans,
	STYPE = internal,
	FINALFUNC = metrics._sketch_final,
	COMBINEFUNC = metrics._sketch_combine,
	SERIALFUNC = metrics._sketch_serialize,
	DESERIALFUNC = metrics._sketch_deserialize,
	PARALLEL = SAFE
);

COMMENT ON AGGREGATE metrics.sketch_agg(double precision) IS 'Sketch of the values; NULLs are skipped, NaN and infinities are errors';
COMMENT ON AGGREGATE metrics.sketch_union(metrics.sketch) IS 'Sketch of the values of all the sketches, the same in any order';

GRANT EXECUTE ON FUNCTION metrics.sketch_in(cstring), metrics.sketch_out(metrics.sketch),
	metrics.sketch_recv(internal), metrics.sketch_send(metrics.sketch),
	metrics.sketch_count(metrics.sketch), metrics.sketch_sum(metrics.sketch),
	metrics.sketch_min(metrics.sketch), metrics.sketch_max(metrics.sketch),
	metrics.quantile(metrics.sketch, double precision), metrics.quantiles(metrics.sketch, double precision[]),
	metrics.sketch_merge(metrics.sketch, metrics.sketch),
	metrics.sketch_agg(double precision), metrics.sketch_union(metrics.sketch)
	TO opsdata_reader, opsdata_writer;

--
-- Series, points, the rollup queue and rollups.
--
CREATE TABLE metrics.series (
	series_id	bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	name		text NOT NULL CHECK (name <> ''),
	tags		jsonb NOT NULL DEFAULT '{}' CHECK (pg_catalog.jsonb_typeof(tags) = 'object'),
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	UNIQUE (name, tags)
);

COMMENT ON TABLE metrics.series IS 'One time series per metric name and set of tags; made by the first point recorded';
COMMENT ON COLUMN metrics.series.series_id IS 'Series identifier, used by points and rollups';
COMMENT ON COLUMN metrics.series.name IS 'Metric name, e.g. http.latency_ms';
COMMENT ON COLUMN metrics.series.tags IS 'Flat JSON object of string tags, e.g. {"route": "/search"}';
COMMENT ON COLUMN metrics.series.created_at IS 'When the series was first recorded';

CREATE FUNCTION metrics._series_changed() RETURNS trigger
	LANGUAGE c AS 'MODULE_PATHNAME', 'metrics_series_changed';
COMMENT ON FUNCTION metrics._series_changed() IS 'Internal: tells every backend to forget the series ids it cached';

-- Backends cache series ids; changing or removing series must reach them.
CREATE TRIGGER series_changed AFTER UPDATE OR DELETE OR TRUNCATE ON metrics.series
	FOR EACH STATEMENT EXECUTE FUNCTION metrics._series_changed();

-- Raw points.  No index: points are written in bulk and read by time
-- (partition pruning) or through rollups; rollups never read them.
CREATE TABLE metrics.points (
	series_id	bigint NOT NULL,
	ts			timestamptz NOT NULL,
	value		double precision NOT NULL
) PARTITION BY RANGE (ts);

-- Points land here until partition maintenance has made the day's
-- partition, and maintenance moves them out.
CREATE TABLE metrics.points_default PARTITION OF metrics.points DEFAULT;

COMMENT ON TABLE metrics.points IS 'Raw metric points, partitioned by day; insert through this table, metrics.record(), metrics.record_many() or metrics.ingest so that rollups see them';
COMMENT ON COLUMN metrics.points.series_id IS 'Series of metrics.series';
COMMENT ON COLUMN metrics.points.ts IS 'When the value was observed';
COMMENT ON COLUMN metrics.points.value IS 'Observed value, finite';

-- Contributions of new points waiting for the rollup job: one sketch per
-- series and minute, written in the transaction that wrote the points.
CREATE TABLE metrics.rollup_queue (
	series_id		bigint NOT NULL,
	bucket_start	timestamptz NOT NULL,
	queued_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	sketch			metrics.sketch NOT NULL
);

COMMENT ON TABLE metrics.rollup_queue IS 'Sketches of points not rolled up yet, per series and minute; the rollup job consumes them, metrics.query() reads them';
COMMENT ON COLUMN metrics.rollup_queue.series_id IS 'Series of metrics.series';
COMMENT ON COLUMN metrics.rollup_queue.bucket_start IS 'Start of the minute (UTC) the points fall in';
COMMENT ON COLUMN metrics.rollup_queue.queued_at IS 'Start of the transaction that recorded the points: when they arrived';
COMMENT ON COLUMN metrics.rollup_queue.sketch IS 'Sketch of the points';

CREATE TABLE metrics.rollups (
	series_id		bigint NOT NULL,
	bucket_width	interval NOT NULL CHECK (bucket_width > interval '0'),
	bucket_start	timestamptz NOT NULL,
	count			bigint NOT NULL CHECK (count >= 0),
	sum				double precision NOT NULL,
	min				double precision,
	max				double precision,
	sketch			metrics.sketch,
	updated_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (series_id, bucket_width, bucket_start)
) WITH (fillfactor = 75);	-- room for the updates of open buckets to stay on their page (HOT)

-- Retention removes the oldest buckets of one width.
CREATE INDEX rollups_bucket_width_bucket_start_idx ON metrics.rollups (bucket_width, bucket_start);

COMMENT ON TABLE metrics.rollups IS 'Aggregates per series and time bucket, kept by the rollup job';
COMMENT ON COLUMN metrics.rollups.series_id IS 'Series of metrics.series';
COMMENT ON COLUMN metrics.rollups.bucket_width IS 'Bucket width, one of the setting metrics.rollup_widths';
COMMENT ON COLUMN metrics.rollups.bucket_start IS 'Start of the bucket, aligned in UTC';
COMMENT ON COLUMN metrics.rollups.count IS 'Points in the bucket';
COMMENT ON COLUMN metrics.rollups.sum IS 'Sum of their values, computed exactly and rounded once';
COMMENT ON COLUMN metrics.rollups.min IS 'Smallest value';
COMMENT ON COLUMN metrics.rollups.max IS 'Largest value';
COMMENT ON COLUMN metrics.rollups.sketch IS 'Quantile sketch of the values; metrics.quantile() reads quantiles from it';
COMMENT ON COLUMN metrics.rollups.updated_at IS 'When the bucket last received points';

-- Bookkeeping of the rollup job: one row, made by its first run.
CREATE TABLE metrics.rollup_state (
	singleton		boolean PRIMARY KEY DEFAULT true CHECK (singleton),
	runs			bigint NOT NULL DEFAULT 0,
	last_run_at		timestamptz,
	last_run_points	bigint NOT NULL DEFAULT 0,
	points			bigint NOT NULL DEFAULT 0,
	late_points		bigint NOT NULL DEFAULT 0,
	last_late_at	timestamptz
);

COMMENT ON TABLE metrics.rollup_state IS 'What the rollup job has done: one row';
COMMENT ON COLUMN metrics.rollup_state.singleton IS 'Always true: the table has one row';
COMMENT ON COLUMN metrics.rollup_state.runs IS 'Runs that committed';
COMMENT ON COLUMN metrics.rollup_state.last_run_at IS 'When the last run committed';
COMMENT ON COLUMN metrics.rollup_state.last_run_points IS 'Points the last run rolled up';
COMMENT ON COLUMN metrics.rollup_state.points IS 'Points rolled up, in total';
COMMENT ON COLUMN metrics.rollup_state.late_points IS 'Points not rolled up because they arrived later than metrics.rollup_lateness after their minute';
COMMENT ON COLUMN metrics.rollup_state.last_late_at IS 'When points last arrived too late';

SELECT pg_catalog.pg_extension_config_dump('metrics.series', '');
SELECT pg_catalog.pg_extension_config_dump('metrics.series_series_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('metrics.points_default', '');
SELECT pg_catalog.pg_extension_config_dump('metrics.rollup_queue', '');
SELECT pg_catalog.pg_extension_config_dump('metrics.rollups', '');
SELECT pg_catalog.pg_extension_config_dump('metrics.rollup_state', '');

GRANT SELECT ON metrics.series, metrics.points, metrics.rollups, metrics.rollup_queue, metrics.rollup_state
	TO opsdata_reader;
GRANT SELECT, INSERT ON metrics.series, metrics.points TO opsdata_writer;

--
-- Settings.
--
CREATE FUNCTION metrics._valid_widths(widths interval[]) RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT coalesce(array_ndims(widths) = 1, false)
	   AND array_position(widths, NULL) IS NULL
	   AND NOT EXISTS (
			SELECT FROM unnest(widths) WITH ORDINALITY AS w(width, i)
			 WHERE date_part('month', width) <> 0 OR date_part('year', width) <> 0
				OR width < interval '1 minute'
				OR date_part('epoch', width)::numeric % 60 <> 0
				OR (i > 1 AND (width <= widths[i - 1]
							   OR date_part('epoch', width)::numeric
								  % date_part('epoch', widths[i - 1])::numeric <> 0)))
$$;

COMMENT ON FUNCTION metrics._valid_widths(interval[]) IS 'Internal: whether rollup widths are whole minutes, increasing, each a multiple of the one before';

CREATE FUNCTION metrics._valid_retentions(retentions interval[]) RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT coalesce(array_ndims(retentions) <= 1, true)
	   AND NOT EXISTS (SELECT FROM unnest(retentions) AS r(retention) WHERE retention <= interval '0')
$$;

COMMENT ON FUNCTION metrics._valid_retentions(interval[]) IS 'Internal: whether rollup retentions are positive (NULL keeps a width forever)';

INSERT INTO opsdata.settings (key, type, default_value, valid_when, description) VALUES
	('metrics.points_retention', 'interval', '30 days', 'value > interval ''0''',
	 'Age after which daily partitions of metrics.points are removed by partition maintenance; rollups are kept'),
	('metrics.series_limit', 'integer', '10000', 'value > 0',
	 'Most series (distinct tag sets) one metric name may have; recording a new one beyond it is an error'),
	('metrics.rollup_widths', 'interval[]', '{"1 minute","1 hour","1 day"}', 'metrics._valid_widths(value)',
	 'Bucket widths of the rollups: whole minutes, increasing, each a multiple of the one before'),
	('metrics.rollup_retention', 'interval[]', '{"7 days","90 days","5 years"}', 'metrics._valid_retentions(value)',
	 'How long rollups of each width (same order as metrics.rollup_widths) are kept; NULL or a missing entry keeps them'),
	('metrics.rollup_lateness', 'interval', '1 day', 'value >= interval ''0''',
	 'How long after the end of its minute a point may arrive and still be rolled up');
SELECT opsdata._partition_builtin('metrics.points', 'ts', '1 day', 7, 'metrics.points_retention');

-- src/metrics/record.sql
-- Metrics, recording: record(), record_many(), the metrics.ingest foreign
-- table for COPY, and the trigger that queues what INSERT adds to points.

CREATE FUNCTION metrics.record(name text, value double precision, tags jsonb DEFAULT '{}',
							   at timestamptz DEFAULT pg_catalog.now())
RETURNS bigint
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'metrics_record';

COMMENT ON FUNCTION metrics.record(text, double precision, jsonb, timestamptz) IS 'Record one value of a metric; returns its series id, creating the series on first use';

CREATE FUNCTION metrics.record_many(names text[], vals double precision[], tags jsonb[] DEFAULT NULL,
									ats timestamptz[] DEFAULT NULL)
RETURNS bigint
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'metrics_record_many';

COMMENT ON FUNCTION metrics.record_many(text[], double precision[], jsonb[], timestamptz[]) IS 'Record many values at once (names and tags: one per value or one for all; tags NULL: {}; ats NULL: now()); returns how many';

-- The statement trigger that queues the rollup contribution of every
-- INSERT into metrics.points.
CREATE FUNCTION metrics._points_inserted() RETURNS trigger
	LANGUAGE c AS 'MODULE_PATHNAME', 'metrics_points_inserted';
COMMENT ON FUNCTION metrics._points_inserted() IS 'Internal: queues the rollup contribution of rows inserted into metrics.points';

CREATE TRIGGER points_inserted AFTER INSERT ON metrics.points
	REFERENCING NEW TABLE AS inserted
	FOR EACH STATEMENT EXECUTE FUNCTION metrics._points_inserted();

-- COPY by name: a write-only foreign table of a wrapper of our own.
CREATE FUNCTION metrics._ingest_fdw_handler() RETURNS fdw_handler
	LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'metrics_ingest_fdw_handler';
COMMENT ON FUNCTION metrics._ingest_fdw_handler() IS 'Internal: handler of the data wrapper behind metrics.ingest';

CREATE FOREIGN DATA WRAPPER pg_opsdata_metrics_ingest HANDLER metrics._ingest_fdw_handler;
CREATE SERVER pg_opsdata_metrics_ingest FOREIGN DATA WRAPPER pg_opsdata_metrics_ingest;
COMMENT ON FOREIGN DATA WRAPPER pg_opsdata_metrics_ingest IS 'pg_opsdata: writes rows of metrics.ingest into metrics.points';
COMMENT ON SERVER pg_opsdata_metrics_ingest IS 'pg_opsdata: the server of metrics.ingest';

CREATE FOREIGN TABLE metrics.ingest (
	name	text,
	tags	text DEFAULT '{}',
	ts		timestamptz DEFAULT pg_catalog.now(),
	value	double precision
) SERVER pg_opsdata_metrics_ingest;

COMMENT ON FOREIGN TABLE metrics.ingest IS 'Write-only: COPY or INSERT points by metric name; they go to metrics.points at once, reading returns no rows';
COMMENT ON COLUMN metrics.ingest.name IS 'Metric name';
COMMENT ON COLUMN metrics.ingest.tags IS 'Tags, a JSON object of strings as text; {} when omitted';
COMMENT ON COLUMN metrics.ingest.ts IS 'When the value was observed; now() when omitted';
COMMENT ON COLUMN metrics.ingest.value IS 'Observed value, finite';

GRANT EXECUTE ON FUNCTION metrics.record(text, double precision, jsonb, timestamptz),
	metrics.record_many(text[], double precision[], jsonb[], timestamptz[]) TO opsdata_writer;
GRANT INSERT ON metrics.ingest TO opsdata_writer;

-- src/metrics/rollup.sql
-- Metrics, rollups: the rollup and retention jobs, metrics.query() and
-- health.

--
-- metrics.rollup(): merge the queued contributions into the rollups of
-- every width, exactly once, in one transaction (src/metrics/rollup.c).
--
CREATE FUNCTION metrics.rollup() RETURNS bigint
LANGUAGE c VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'metrics_rollup';

COMMENT ON FUNCTION metrics.rollup() IS 'Roll up the points recorded since the last run into every rollup width, exactly once; returns how many points';

--
-- metrics.rebuild_rollups(from, to): recompute the rollups of a time range
-- from the raw points, e.g. after changing the rollup widths.  The range
-- is widened to whole buckets of the coarsest width.  The rollups of the
-- range and its queued contributions are replaced, in one transaction,
-- by the sketches of the points the transaction sees, which are then
-- rolled up; the contributions of transactions still in progress are not
-- visible, and neither are their points, so nothing is counted twice or
-- lost.  Points already removed by retention are not in the result;
-- rollups of widths no longer configured are left alone.
--
CREATE FUNCTION metrics.rebuild_rollups("from" timestamptz, "to" timestamptz) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	widths interval[] := opsdata.setting('metrics.rollup_widths')::interval[];
	coarsest interval;
	origin timestamptz := timestamptz '2000-01-03 00:00:00+00';
	lo timestamptz;
	hi timestamptz;
BEGIN
	IF "from" IS NULL OR "to" IS NULL OR "from" >= "to" THEN
		RAISE EXCEPTION 'invalid time range for metrics.rebuild_rollups()'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give a range whose start is before its end.';
	END IF;
	coarsest := widths[cardinality(widths)];
	lo := date_bin(coarsest, "from", origin);
	hi := date_bin(coarsest, "to", origin);
	IF hi < "to" THEN
		hi := hi + coarsest;
	END IF;

	-- Serialize with metrics.rollup().
	INSERT INTO metrics.rollup_state DEFAULT VALUES ON CONFLICT DO NOTHING;
	PERFORM FROM metrics.rollup_state FOR UPDATE;

	DELETE FROM metrics.rollups WHERE bucket_width = ANY (widths) AND bucket_start >= lo AND bucket_start < hi;
	DELETE FROM metrics.rollup_queue WHERE bucket_start >= lo AND bucket_start < hi;
	-- The points of the range, never judged late, and the rest of the queue.
	RETURN metrics._rollup_points(lo, hi);
END
$$;

CREATE FUNCTION metrics._rollup_points("from" timestamptz, "to" timestamptz) RETURNS bigint
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'metrics_rollup_points';

COMMENT ON FUNCTION metrics._rollup_points(timestamptz, timestamptz) IS 'Internal: roll up the points of a range and the queue, for metrics.rebuild_rollups()';

COMMENT ON FUNCTION metrics.rebuild_rollups(timestamptz, timestamptz) IS 'Recompute the rollups of a time range (widened to whole buckets) from the raw points; returns how many points were rolled up';

--
-- metrics.expire_rollups(): remove the buckets older than the retention
-- of their width.  Raw points are kept or dropped by partition
-- maintenance on their own schedule; neither affects the other.
--
CREATE FUNCTION metrics.expire_rollups() RETURNS bigint
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	widths interval[] := opsdata.setting('metrics.rollup_widths')::interval[];
	retentions interval[] := opsdata.setting('metrics.rollup_retention')::interval[];
	removed bigint := 0;
	n bigint;
	i integer;
BEGIN
	FOR i IN 1 .. least(cardinality(widths), cardinality(retentions)) LOOP
		CONTINUE WHEN retentions[i] IS NULL;
		DELETE FROM metrics.rollups
		 WHERE bucket_width = widths[i] AND bucket_start < now() - retentions[i] - widths[i];
		GET DIAGNOSTICS n = ROW_COUNT;
		removed := removed + n;
	END LOOP;
	RETURN removed;
END
$$;

COMMENT ON FUNCTION metrics.expire_rollups() IS 'Remove rollup buckets that ended longer ago than the retention of their width; returns how many';

INSERT INTO opsdata.jobs (name, command, schedule, builtin, comment) VALUES
	('metrics.rollup', 'SELECT metrics.rollup()', '1 minute', true,
	 'Roll up new metric points into every rollup width'),
	('metrics.expire_rollups', 'SELECT metrics.expire_rollups()', '1 hour', true,
	 'Remove rollup buckets older than their retention');

--
-- metrics.query(): aggregates per bucket over a time range, from the
-- coarsest rollup width that divides the bucket, plus the contributions
-- still queued, so the answer includes every point committed so far.  A
-- STABLE function: its one query sees rollups and queue in the same
-- snapshot, so a rollup run committing meanwhile is seen whole or not at
-- all, and no point is counted twice or missed.
--
CREATE FUNCTION metrics.query(name text, tags jsonb, "from" timestamptz, "to" timestamptz,
							  bucket_width interval DEFAULT '1 minute')
RETURNS TABLE (bucket timestamptz, count bigint, sum double precision, min double precision,
			   max double precision, avg double precision, p50 double precision,
			   p95 double precision, p99 double precision)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	widths interval[] := opsdata.setting('metrics.rollup_widths')::interval[];
	lateness interval := opsdata.setting('metrics.rollup_lateness')::interval;
	origin timestamptz := timestamptz '2000-01-03 00:00:00+00';
	width interval;
	w interval;
BEGIN
	IF query.bucket_width IS NULL OR query.bucket_width <= interval '0'
	   OR date_part('month', query.bucket_width) <> 0 OR date_part('year', query.bucket_width) <> 0 THEN
		RAISE EXCEPTION 'invalid bucket width "%"', query.bucket_width
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'A bucket is a positive interval without months or years, e.g. 5 minutes or 1 day.';
	END IF;
	FOREACH w IN ARRAY widths LOOP
		IF date_part('epoch', query.bucket_width)::numeric % date_part('epoch', w)::numeric = 0 THEN
			width := w;
		END IF;
	END LOOP;
	IF width IS NULL THEN
		RAISE EXCEPTION 'bucket width "%" is not a multiple of the rollup width "%"', query.bucket_width, widths[1]
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'The rollup widths are set by the setting "metrics.rollup_widths".';
	END IF;
	IF query.name IS NULL OR query."from" IS NULL OR query."to" IS NULL THEN
		RAISE EXCEPTION 'metric name and time range must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;

	RETURN QUERY
	WITH s AS (
		SELECT series_id FROM metrics.series
		 WHERE series.name = query.name AND series.tags @> coalesce(query.tags, '{}')
	), parts AS (
		SELECT r.bucket_start AS b, r.sketch
		  FROM s JOIN metrics.rollups r USING (series_id)
		 WHERE r.bucket_width = width
		   AND r.bucket_start >= date_bin(query.bucket_width, query."from", origin)
		   AND r.bucket_start < query."to"
		UNION ALL
		SELECT q.bucket_start, q.sketch
		  FROM s JOIN metrics.rollup_queue q USING (series_id)
		 WHERE q.bucket_start >= date_bin(query.bucket_width, query."from", origin)
		   AND q.bucket_start < query."to"
		   AND q.queued_at <= date_bin(widths[1], q.bucket_start, origin) + widths[1] + lateness
	), merged AS (
		SELECT date_bin(query.bucket_width, parts.b, origin) AS b, metrics.sketch_union(parts.sketch) AS s
		  FROM parts GROUP BY 1
	)
	SELECT m.b, metrics.sketch_count(m.s), metrics.sketch_sum(m.s), metrics.sketch_min(m.s),
		   metrics.sketch_max(m.s), metrics.sketch_sum(m.s) / metrics.sketch_count(m.s),
		   m.qs[1], m.qs[2], m.qs[3]
	  FROM (SELECT merged.b, merged.s, metrics.quantiles(merged.s, '{0.5,0.95,0.99}') AS qs FROM merged) m
	 ORDER BY m.b;
END
$$;

COMMENT ON FUNCTION metrics.query(text, jsonb, timestamptz, timestamptz, interval) IS 'Count, sum, min, max, avg, p50, p95 and p99 per bucket over the series of a metric whose tags contain the given ones, from rollups and points not yet rolled up';

--
-- Health.
--
CREATE FUNCTION metrics._health_metrics(OUT component text, OUT status text, OUT detail text)
RETURNS SETOF record
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	oldest timestamptz;
	waiting bigint;
	job opsdata.jobs;
	state metrics.rollup_state;
	lag interval;
	series_limit integer := opsdata.setting('metrics.series_limit')::integer;
	busiest text;
	busiest_n bigint;
	total bigint;
BEGIN
	SELECT min(queued_at), coalesce(sum(metrics.sketch_count(sketch)), 0)
	  INTO oldest, waiting FROM metrics.rollup_queue;
	SELECT * INTO job FROM opsdata.jobs WHERE name = 'metrics.rollup';
	SELECT * INTO state FROM metrics.rollup_state;
	lag := now() - oldest;

	component := 'metrics rollups';
	IF job.job_id IS NULL OR job.paused THEN
		status := 'warning';
		detail := 'The job "metrics.rollup" is missing or paused: new points are not rolled up. Resume it in opsdata.jobs.';
	ELSIF lag > greatest(job.schedule * 10, interval '10 minutes') THEN
		status := 'warning';
		detail := format('%s points are waiting to be rolled up, the oldest recorded %s ago. Check that the scheduler runs and that the job "metrics.rollup" succeeds (opsdata.job_runs).',
						 waiting, date_trunc('second', lag));
	ELSE
		status := 'ok';
		detail := format('%s points waiting to be rolled up.', waiting);
	END IF;
	IF coalesce(state.late_points, 0) > 0 THEN
		detail := detail || format(' Points that arrived later than the setting "metrics.rollup_lateness" allows are not rolled up: %s so far, the last at %s.',
								   state.late_points, state.last_late_at);
	END IF;
	RETURN NEXT;

	component := 'metrics series';
	SELECT count(*) INTO total FROM metrics.series;
	SELECT name, count(*) INTO busiest, busiest_n
	  FROM metrics.series GROUP BY name ORDER BY count(*) DESC, name LIMIT 1;
	IF busiest_n >= series_limit THEN
		status := 'warning';
		detail := format('Metric "%s" has %s series, its limit (setting "metrics.series_limit"): new tag values of it are refused.', busiest, busiest_n);
	ELSIF busiest_n >= series_limit * 0.8 THEN
		status := 'warning';
		detail := format('Metric "%s" has %s series of its limit of %s (setting "metrics.series_limit").', busiest, busiest_n, series_limit);
	ELSE
		status := 'ok';
		detail := format('%s series; no metric is near its limit of %s.', total, series_limit);
	END IF;
	RETURN NEXT;
END
$$;

COMMENT ON FUNCTION metrics._health_metrics() IS 'Internal: the metrics rows of opsdata.health(): rollup lag and series cardinality';

GRANT EXECUTE ON FUNCTION metrics.query(text, jsonb, timestamptz, timestamptz, interval) TO opsdata_reader;
GRANT EXECUTE ON FUNCTION metrics.rollup(), metrics.expire_rollups(),
	metrics.rebuild_rollups(timestamptz, timestamptz) TO opsdata_admin;

-- src/learning/learning.sql
-- Learning: feedback, tuned thresholds and active-learning candidates.
--
-- Feedback is appended to learning.feedback.  A statement trigger folds
-- each statement's rows into learning.feedback_changes, one row per key and
-- score bin; the tuning job (learning.tune()) moves those changes into the
-- per-key histograms of learning.histograms and re-tunes only the keys they
-- touched, so its cost follows the feedback that arrived, never all the
-- feedback ever recorded.
--
-- Candidates are claimed with HOT updates of columns no index covers, so a
-- claim adds no index entry; a candidate leaves the queue index only when it
-- is closed.  See src/learning/candidates.c for the claim path.

--
-- Feedback.
--
CREATE TABLE learning.feedback (
	feedback_id	bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	key			text NOT NULL,
	item_id		text,
	score		double precision CHECK (score >= 0 AND score <= 1),
	label		boolean,
	rating		smallint,
	given_by	text,
	source		text,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	metadata	jsonb NOT NULL DEFAULT '{}'
);

CREATE INDEX feedback_key_created_at_idx ON learning.feedback (key, created_at);
-- Tuning reads the raw rows of a few score bins of a key.
CREATE INDEX feedback_key_score_idx ON learning.feedback (key, score) INCLUDE (label);

COMMENT ON TABLE learning.feedback IS 'Feedback on the application''s decisions: the model''s score and whether it was right';
COMMENT ON COLUMN learning.feedback.feedback_id IS 'Feedback identifier';
COMMENT ON COLUMN learning.feedback.key IS 'What was decided: an intent, a model, a question type';
COMMENT ON COLUMN learning.feedback.item_id IS 'The item the decision was about';
COMMENT ON COLUMN learning.feedback.score IS 'The model''s score, in [0, 1]';
COMMENT ON COLUMN learning.feedback.label IS 'Whether the decision was correct';
COMMENT ON COLUMN learning.feedback.rating IS 'Optional rating given with the feedback';
COMMENT ON COLUMN learning.feedback.given_by IS 'Who gave the feedback';
COMMENT ON COLUMN learning.feedback.source IS 'Where the feedback came from (user, review, import)';
COMMENT ON COLUMN learning.feedback.created_at IS 'When the feedback was given';
COMMENT ON COLUMN learning.feedback.metadata IS 'Anything else, as JSON';

-- Changes to the score histograms not yet folded in by learning.tune():
-- one row per statement, key and bin.  Derived data: dumped empty, since
-- restoring learning.feedback fills it again through the trigger.
CREATE TABLE learning.feedback_changes (
	key			text NOT NULL,
	bin			integer NOT NULL,
	positives	bigint NOT NULL,
	negatives	bigint NOT NULL,
	min_score	double precision,
	changed_at	timestamptz NOT NULL DEFAULT pg_catalog.now()
);

CREATE INDEX feedback_changes_key_idx ON learning.feedback_changes (key);

COMMENT ON TABLE learning.feedback_changes IS 'Feedback not yet folded into the score histograms by learning.tune()';
COMMENT ON COLUMN learning.feedback_changes.key IS 'Key whose histogram changes';
COMMENT ON COLUMN learning.feedback_changes.bin IS 'Score bin: the largest k with k / 10000 <= score';
COMMENT ON COLUMN learning.feedback_changes.positives IS 'Change in the number of correct decisions in the bin';
COMMENT ON COLUMN learning.feedback_changes.negatives IS 'Change in the number of wrong decisions in the bin';
COMMENT ON COLUMN learning.feedback_changes.min_score IS 'Lowest score added to the bin';
COMMENT ON COLUMN learning.feedback_changes.changed_at IS 'When the feedback was recorded';

-- Per-key score histograms: bins of width 1/10000 (bin k holds the scores
-- in [k / 10000, (k + 1) / 10000), bin 10000 the score 1), each with its
-- counts and the lowest score seen in it.  One row per key holds its
-- non-empty bins in parallel arrays, so that folding new feedback in
-- rewrites one row; the arrays are stored uncompressed, which makes that
-- rewrite cheap.  Derived data, rebuilt from learning.feedback by
-- learning.rebuild_histograms().
CREATE TABLE learning.histograms (
	key			text PRIMARY KEY,
	bins		integer[] NOT NULL,
	positives	bigint[] NOT NULL,
	negatives	bigint[] NOT NULL,
	min_scores	double precision[] NOT NULL,
	support		bigint NOT NULL,
	folded_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	CHECK (pg_catalog.cardinality(bins) = pg_catalog.cardinality(positives)
		   AND pg_catalog.cardinality(bins) = pg_catalog.cardinality(negatives)
		   AND pg_catalog.cardinality(bins) = pg_catalog.cardinality(min_scores))
);

ALTER TABLE learning.histograms ALTER COLUMN bins SET STORAGE EXTERNAL,
	ALTER COLUMN positives SET STORAGE EXTERNAL, ALTER COLUMN negatives SET STORAGE EXTERNAL,
	ALTER COLUMN min_scores SET STORAGE EXTERNAL;

COMMENT ON TABLE learning.histograms IS 'Score histogram per key, kept by learning.tune(); the thresholds are tuned from it';
COMMENT ON COLUMN learning.histograms.key IS 'Key the histogram belongs to';
COMMENT ON COLUMN learning.histograms.bins IS 'The non-empty bins, ascending: bin k holds the scores in [k / 10000, (k + 1) / 10000)';
COMMENT ON COLUMN learning.histograms.positives IS 'Per bin, feedback rows whose label is true';
COMMENT ON COLUMN learning.histograms.negatives IS 'Per bin, feedback rows whose label is false';
COMMENT ON COLUMN learning.histograms.min_scores IS 'Per bin, the lowest score seen';
COMMENT ON COLUMN learning.histograms.support IS 'Feedback rows counted';
COMMENT ON COLUMN learning.histograms.folded_at IS 'When changes were last folded in';

CREATE VIEW learning.score_bins AS
	SELECT h.key, b.bin, b.positives, b.negatives, b.min_score
	  FROM learning.histograms h,
		   ROWS FROM (pg_catalog.unnest(h.bins), pg_catalog.unnest(h.positives), pg_catalog.unnest(h.negatives),
					  pg_catalog.unnest(h.min_scores)) AS b(bin, positives, negatives, min_score);

COMMENT ON VIEW learning.score_bins IS 'The bins of every score histogram, one row each';
COMMENT ON COLUMN learning.score_bins.key IS 'Key the histogram belongs to';
COMMENT ON COLUMN learning.score_bins.bin IS 'Score bin: the largest k with k / 10000 <= score';
COMMENT ON COLUMN learning.score_bins.positives IS 'Feedback rows in the bin whose label is true';
COMMENT ON COLUMN learning.score_bins.negatives IS 'Feedback rows in the bin whose label is false';
COMMENT ON COLUMN learning.score_bins.min_score IS 'Lowest score seen in the bin';

--
-- Thresholds.
--
CREATE TABLE learning.thresholds (
	key				text PRIMARY KEY,
	objective		text NOT NULL CHECK (objective IN ('precision', 'f_beta', 'youden')),
	target			double precision,
	min_support		integer NOT NULL DEFAULT 100 CHECK (min_support >= 1),
	threshold		double precision CHECK (threshold >= 0 AND threshold <= 1),
	precision		double precision,
	recall			double precision,
	objective_value	double precision,
	support			bigint NOT NULL DEFAULT 0,
	positives		bigint NOT NULL DEFAULT 0,
	negatives		bigint NOT NULL DEFAULT 0,
	tuned_at		timestamptz,
	configured_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	CHECK (objective <> 'precision' OR (target > 0 AND target < 1)),
	CHECK (objective <> 'f_beta' OR target > 0)
);

COMMENT ON TABLE learning.thresholds IS 'Decision threshold per key, tuned from feedback towards its objective';
COMMENT ON COLUMN learning.thresholds.key IS 'Key the threshold decides for';
COMMENT ON COLUMN learning.thresholds.objective IS 'precision (at a target, on its Wilson lower bound), f_beta or youden';
COMMENT ON COLUMN learning.thresholds.target IS 'Target precision, or beta for f_beta; NULL for youden';
COMMENT ON COLUMN learning.thresholds.min_support IS 'Feedback rows needed before the tuned threshold is used';
COMMENT ON COLUMN learning.thresholds.threshold IS 'Tuned threshold (a score is accepted when score >= threshold); NULL until tuned or when no threshold meets the objective';
COMMENT ON COLUMN learning.thresholds.precision IS 'Precision at the tuned threshold';
COMMENT ON COLUMN learning.thresholds.recall IS 'Recall at the tuned threshold';
COMMENT ON COLUMN learning.thresholds.objective_value IS 'Value of the objective at the tuned threshold (Wilson lower bound of precision, F-beta, or Youden''s J)';
COMMENT ON COLUMN learning.thresholds.support IS 'Feedback rows the threshold was tuned on';
COMMENT ON COLUMN learning.thresholds.positives IS 'Feedback rows labelled correct among the support';
COMMENT ON COLUMN learning.thresholds.negatives IS 'Feedback rows labelled wrong among the support';
COMMENT ON COLUMN learning.thresholds.tuned_at IS 'When the threshold was last tuned';
COMMENT ON COLUMN learning.thresholds.configured_at IS 'When the objective was last set';

CREATE TABLE learning.threshold_history (
	change_id		bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	key				text NOT NULL,
	objective		text NOT NULL,
	target			double precision,
	threshold		double precision,
	previous		double precision,
	precision		double precision,
	recall			double precision,
	objective_value	double precision,
	support			bigint NOT NULL,
	changed_at		timestamptz NOT NULL DEFAULT pg_catalog.now()
);

CREATE INDEX threshold_history_key_changed_at_idx ON learning.threshold_history (key, changed_at);

COMMENT ON TABLE learning.threshold_history IS 'Every change of a tuned threshold or of its objective';
COMMENT ON COLUMN learning.threshold_history.change_id IS 'Change identifier';
COMMENT ON COLUMN learning.threshold_history.key IS 'Key whose threshold changed';
COMMENT ON COLUMN learning.threshold_history.objective IS 'Objective in force after the change';
COMMENT ON COLUMN learning.threshold_history.target IS 'Target or beta in force after the change';
COMMENT ON COLUMN learning.threshold_history.threshold IS 'Threshold after the change';
COMMENT ON COLUMN learning.threshold_history.previous IS 'Threshold before the change';
COMMENT ON COLUMN learning.threshold_history.precision IS 'Precision at the new threshold';
COMMENT ON COLUMN learning.threshold_history.recall IS 'Recall at the new threshold';
COMMENT ON COLUMN learning.threshold_history.objective_value IS 'Value of the objective at the new threshold';
COMMENT ON COLUMN learning.threshold_history.support IS 'Feedback rows the new threshold was tuned on';
COMMENT ON COLUMN learning.threshold_history.changed_at IS 'When the change was made';

--
-- Candidates.
--
CREATE TABLE learning.strategies (
	key				text PRIMARY KEY,
	strategy		text NOT NULL CHECK (strategy IN ('least_confidence', 'margin', 'entropy', 'threshold')),
	required_labels	integer NOT NULL DEFAULT 1 CHECK (required_labels >= 1 AND required_labels <= 100),
	configured_at	timestamptz NOT NULL DEFAULT pg_catalog.now()
);

COMMENT ON TABLE learning.strategies IS 'How candidates of a key are prioritized and how many labels close one';
COMMENT ON COLUMN learning.strategies.key IS 'Key the strategy applies to';
COMMENT ON COLUMN learning.strategies.strategy IS 'least_confidence, margin, entropy or threshold (distance to the key''s current threshold)';
COMMENT ON COLUMN learning.strategies.required_labels IS 'Labels from distinct reviewers needed to close a candidate';
COMMENT ON COLUMN learning.strategies.configured_at IS 'When the strategy was last set';

-- fillfactor leaves room on each page for the new version a claim writes,
-- so that claims stay heap-only (HOT) updates: no index entry is added, and
-- none is left dead behind, when a candidate is leased.  Its values are
-- checked by the functions that write it (every CHECK constraint would be
-- rebuilt from its stored form by every claim and submit).
CREATE TABLE learning.candidates (
	candidate_id	bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	key				text NOT NULL,
	item_id			text NOT NULL,
	priority		double precision NOT NULL,
	score			double precision,
	scores			double precision[],
	payload			jsonb NOT NULL DEFAULT '{}',
	status			text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'claimed', 'closed')),
	claimed_by		text,
	lease_until		timestamptz,
	labels			integer NOT NULL DEFAULT 0,
	positives		integer NOT NULL DEFAULT 0,
	reviewers		text[] NOT NULL DEFAULT '{}',
	label			boolean,
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	closed_at		timestamptz,
	UNIQUE (key, item_id)
) WITH (fillfactor = 50);

-- The queue: open candidates by priority.  Claims scan it backwards from
-- where their previous claim stopped; status, claimed_by and lease_until are
-- deliberately not indexed (see above).
CREATE INDEX candidates_queue_idx ON learning.candidates (priority, candidate_id) WHERE closed_at IS NULL;
CREATE INDEX candidates_key_queue_idx ON learning.candidates (key, priority, candidate_id) WHERE closed_at IS NULL;

COMMENT ON TABLE learning.candidates IS 'Items the model was unsure about, queued for human labelling';
COMMENT ON COLUMN learning.candidates.candidate_id IS 'Candidate identifier';
COMMENT ON COLUMN learning.candidates.key IS 'Key the item belongs to';
COMMENT ON COLUMN learning.candidates.item_id IS 'The item to label; unique per key';
COMMENT ON COLUMN learning.candidates.priority IS 'Higher is labelled first, in [0, 1]; computed by the key''s strategy';
COMMENT ON COLUMN learning.candidates.score IS 'The model''s score for its decision: the probability offered, or the highest of the scores';
COMMENT ON COLUMN learning.candidates.scores IS 'Model scores the priority was computed from (one probability, or one score per class)';
COMMENT ON COLUMN learning.candidates.payload IS 'What a reviewer needs to see, as JSON';
COMMENT ON COLUMN learning.candidates.status IS 'open, claimed (leased to a reviewer) or closed';
COMMENT ON COLUMN learning.candidates.claimed_by IS 'Reviewer holding the lease';
COMMENT ON COLUMN learning.candidates.lease_until IS 'When the lease expires; an expired lease is handed out again';
COMMENT ON COLUMN learning.candidates.labels IS 'Labels received so far';
COMMENT ON COLUMN learning.candidates.positives IS 'Labels received so far that were true';
COMMENT ON COLUMN learning.candidates.reviewers IS 'Reviewers who labelled the candidate, in order';
COMMENT ON COLUMN learning.candidates.label IS 'Majority label once closed; NULL on a tie';
COMMENT ON COLUMN learning.candidates.created_at IS 'When the item was offered';
COMMENT ON COLUMN learning.candidates.closed_at IS 'When enough labels were received';

SELECT pg_catalog.pg_extension_config_dump('learning.feedback', '');
SELECT pg_catalog.pg_extension_config_dump('learning.feedback_feedback_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('learning.feedback_changes', 'WHERE false');
SELECT pg_catalog.pg_extension_config_dump('learning.histograms', 'WHERE false');
SELECT pg_catalog.pg_extension_config_dump('learning.thresholds', '');
SELECT pg_catalog.pg_extension_config_dump('learning.threshold_history', '');
SELECT pg_catalog.pg_extension_config_dump('learning.threshold_history_change_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('learning.strategies', '');
SELECT pg_catalog.pg_extension_config_dump('learning.candidates', '');
SELECT pg_catalog.pg_extension_config_dump('learning.candidates_candidate_id_seq', '');

--
-- Settings.
--
INSERT INTO opsdata.settings (key, type, default_value, valid_when, description) VALUES
	('learning.default_threshold', 'double precision', '0.5', 'value >= 0 AND value <= 1',
	 'Threshold learning.threshold() returns for a key until its feedback reaches min_support'),
	('learning.default_objective', 'text', 'f_beta', 'value IN (''f_beta'', ''youden'')',
	 'Objective of keys that have feedback but no objective set with learning.set_objective()'),
	('learning.default_beta', 'double precision', '1', 'value > 0',
	 'Beta of the default f_beta objective'),
	('learning.default_min_support', 'integer', '100', 'value >= 1',
	 'Feedback rows a key needs before its tuned threshold is used, unless set per key'),
	('learning.precision_confidence', 'double precision', '0.95', 'value >= 0.5 AND value < 1',
	 'Confidence of the Wilson lower bound that precision targets are held to'),
	('learning.default_strategy', 'text', 'least_confidence',
	 'value IN (''least_confidence'', ''margin'', ''entropy'', ''threshold'')',
	 'Priority strategy of keys without one set with learning.set_strategy()'),
	('learning.default_required_labels', 'integer', '1', 'value >= 1 AND value <= 100',
	 'Labels from distinct reviewers that close a candidate, unless set per key'),
	('learning.default_lease', 'interval', '10 minutes', 'value > interval ''0''',
	 'Lease learning.claim() gives when called without one');

--
-- Library functions.
--
CREATE FUNCTION learning._score_bin(score double precision)
RETURNS integer
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'learning_score_bin';

COMMENT ON FUNCTION learning._score_bin(double precision) IS 'Internal: histogram bin of a score, the largest k with k / 10000 <= score';

CREATE FUNCTION learning._feedback_changed()
RETURNS trigger
LANGUAGE c
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'learning_feedback_changed';

COMMENT ON FUNCTION learning._feedback_changed() IS 'Internal: records each statement''s feedback changes per key and score bin';

CREATE TRIGGER feedback_inserted AFTER INSERT ON learning.feedback
	REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION learning._feedback_changed();
CREATE TRIGGER feedback_updated AFTER UPDATE ON learning.feedback
	REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION learning._feedback_changed();
CREATE TRIGGER feedback_deleted AFTER DELETE ON learning.feedback
	REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION learning._feedback_changed();
CREATE TRIGGER feedback_truncated AFTER TRUNCATE ON learning.feedback
	FOR EACH STATEMENT EXECUTE FUNCTION learning._feedback_changed();
-- Also on logical replication subscribers, where rows arrive with
-- session_replication_role = replica.
ALTER TABLE learning.feedback ENABLE ALWAYS TRIGGER feedback_inserted;
ALTER TABLE learning.feedback ENABLE ALWAYS TRIGGER feedback_updated;
ALTER TABLE learning.feedback ENABLE ALWAYS TRIGGER feedback_deleted;
ALTER TABLE learning.feedback ENABLE ALWAYS TRIGGER feedback_truncated;

CREATE FUNCTION learning._thresholds_changed()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'learning_thresholds_changed';

COMMENT ON FUNCTION learning._thresholds_changed() IS 'Internal: invalidates the per-backend caches of learning.threshold() when the transaction commits';

CREATE TRIGGER thresholds_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON learning.thresholds
	FOR EACH STATEMENT EXECUTE FUNCTION learning._thresholds_changed();
CREATE TRIGGER learning_settings_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON opsdata.config
	FOR EACH STATEMENT EXECUTE FUNCTION learning._thresholds_changed();

--
-- Tuning.
--
CREATE FUNCTION learning._optimal_threshold_transfn(internal, double precision, boolean, text, double precision)
RETURNS internal
LANGUAGE c CALLED ON NULL INPUT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'learning_optimal_threshold_transfn';

CREATE FUNCTION learning._optimal_threshold_transfn(internal, double precision, boolean, text, double precision, double precision)
RETURNS internal
LANGUAGE c CALLED ON NULL INPUT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'learning_optimal_threshold_transfn';

CREATE FUNCTION learning._optimal_threshold_finalfn(internal, double precision, boolean, text, double precision)
RETURNS double precision
LANGUAGE c CALLED ON NULL INPUT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'learning_optimal_threshold_finalfn';

CREATE FUNCTION learning._optimal_threshold_finalfn(internal, double precision, boolean, text, double precision, double precision)
RETURNS double precision
LANGUAGE c CALLED ON NULL INPUT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'learning_optimal_threshold_finalfn';

CREATE FUNCTION learning._optimal_threshold_combinefn(internal, internal)
RETURNS internal
LANGUAGE c CALLED ON NULL INPUT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'learning_optimal_threshold_combinefn';

CREATE FUNCTION learning._optimal_threshold_serialfn(internal)
RETURNS bytea
LANGUAGE c STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'learning_optimal_threshold_serialfn';

CREATE FUNCTION learning._optimal_threshold_deserialfn(bytea, internal)
RETURNS internal
LANGUAGE c STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'learning_optimal_threshold_deserialfn';

COMMENT ON FUNCTION learning._optimal_threshold_transfn(internal, double precision, boolean, text, double precision) IS 'Internal: state transition of learning.optimal_threshold()';
COMMENT ON FUNCTION learning._optimal_threshold_transfn(internal, double precision, boolean, text, double precision, double precision) IS 'Internal: state transition of learning.optimal_threshold()';
COMMENT ON FUNCTION learning._optimal_threshold_finalfn(internal, double precision, boolean, text, double precision) IS 'Internal: final function of learning.optimal_threshold()';
COMMENT ON FUNCTION learning._optimal_threshold_finalfn(internal, double precision, boolean, text, double precision, double precision) IS 'Internal: final function of learning.optimal_threshold()';
COMMENT ON FUNCTION learning._optimal_threshold_combinefn(internal, internal) IS 'Internal: combines partial states of learning.optimal_threshold()';
COMMENT ON FUNCTION learning._optimal_threshold_serialfn(internal) IS 'Internal: serializes a state of learning.optimal_threshold()';
COMMENT ON FUNCTION learning._optimal_threshold_deserialfn(bytea, internal) IS 'Internal: deserializes a state of learning.optimal_threshold()';

CREATE AGGREGATE learning.optimal_threshold(score double precision, label boolean, objective text, param double precision) (
	SFUNC = learning._optimal_threshold_transfn,
	STYPE = internal,
	FINALFUNC = learning._optimal_threshold_finalfn,
	FINALFUNC_EXTRA,
	COMBINEFUNC = learning._optimal_threshold_combinefn,
	SERIALFUNC = learning._optimal_threshold_serialfn,
	DESERIALFUNC = learning._optimal_threshold_deserialfn,
	PARALLEL = SAFE
);

CREATE AGGREGATE learning.optimal_threshold(score double precision, label boolean, objective text, param double precision, confidence double precision) (
	SFUNC = learning._optimal_threshold_transfn,
	STYPE = internal,
	FINALFUNC = learning._optimal_threshold_finalfn,
	FINALFUNC_EXTRA,
	COMBINEFUNC = learning._optimal_threshold_combinefn,
	SERIALFUNC = learning._optimal_threshold_serialfn,
	DESERIALFUNC = learning._optimal_threshold_deserialfn,
	PARALLEL = SAFE
);

COMMENT ON AGGREGATE learning.optimal_threshold(double precision, boolean, text, double precision) IS 'Threshold on score that best meets the objective (precision, f_beta or youden) over the rows; precision targets use the Wilson lower bound at 95% confidence';
COMMENT ON AGGREGATE learning.optimal_threshold(double precision, boolean, text, double precision, double precision) IS 'Threshold on score that best meets the objective over the rows; precision targets use the Wilson lower bound at the given confidence';

-- Result of tuning one key.
CREATE TYPE learning.tuning AS (
	threshold		double precision,
	precision		double precision,
	recall			double precision,
	objective_value	double precision,
	support			bigint,
	positives		bigint,
	negatives		bigint
);

COMMENT ON TYPE learning.tuning IS 'Result of tuning one key: the threshold and the figures at it';

CREATE FUNCTION learning._fold_changes(key text)
RETURNS bigint
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'learning_fold_changes';

COMMENT ON FUNCTION learning._fold_changes(text) IS 'Internal: moves a key''s pending feedback changes into its histogram; returns the changes folded';

CREATE FUNCTION learning._tune_histogram(key text, objective text, target double precision, confidence double precision)
RETURNS learning.tuning
LANGUAGE c STABLE CALLED ON NULL INPUT
AS 'MODULE_PATHNAME', 'learning_tune_histogram';

COMMENT ON FUNCTION learning._tune_histogram(text, text, double precision, double precision) IS 'Internal: tunes a key from its score histogram, reading raw feedback only in the bins that may hold a better threshold';

CREATE FUNCTION learning._check_objective(objective text, target double precision)
RETURNS double precision
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'learning_check_objective';

COMMENT ON FUNCTION learning._check_objective(text, double precision) IS 'Internal: raises an error unless the objective and its target are valid; returns the target to store';

-- Tune one key from its histogram, after folding in its pending changes.
-- The caller holds the key's row of learning.thresholds locked.
CREATE FUNCTION learning._tune_key(key text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t learning.thresholds;
	r learning.tuning;
BEGIN
	SELECT * INTO STRICT t FROM learning.thresholds WHERE thresholds.key = _tune_key.key FOR UPDATE;

	PERFORM learning._fold_changes(t.key);

	SELECT * INTO r
	  FROM learning._tune_histogram(t.key, t.objective, t.target,
									opsdata.setting('learning.precision_confidence')::double precision);

	IF r.threshold IS DISTINCT FROM t.threshold THEN
		INSERT INTO learning.threshold_history
			(key, objective, target, threshold, previous, precision, recall, objective_value, support)
		VALUES (t.key, t.objective, t.target, r.threshold, t.threshold, r.precision, r.recall,
				r.objective_value, coalesce(r.support, 0));
	END IF;

	UPDATE learning.thresholds th
	   SET threshold = r.threshold, precision = r.precision, recall = r.recall,
		   objective_value = r.objective_value, support = coalesce(r.support, 0),
		   positives = coalesce(r.positives, 0), negatives = coalesce(r.negatives, 0),
		   tuned_at = pg_catalog.now()
	 WHERE th.key = t.key;
	RETURN true;
END
$$;

COMMENT ON FUNCTION learning._tune_key(text) IS 'Internal: folds a key''s pending feedback into its histogram and tunes its threshold';

CREATE FUNCTION learning.tune(key text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	k text;
	tuned integer := 0;
	default_objective text;
BEGIN
	-- One tuning at a time; a run that finds another under way leaves the
	-- work to it (anything it does not see stays for the next run).
	IF NOT pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext('pg_opsdata learning.tune')) THEN
		RETURN 0;
	END IF;

	-- Keys with feedback but no objective get the default one.
	default_objective := opsdata.setting('learning.default_objective');
	INSERT INTO learning.thresholds AS t (key, objective, target, min_support)
	SELECT k.key, default_objective,
		   CASE WHEN default_objective = 'f_beta' THEN opsdata.setting('learning.default_beta')::double precision END,
		   opsdata.setting('learning.default_min_support')::integer
	  FROM (SELECT DISTINCT c.key FROM learning.feedback_changes c
			 WHERE tune.key IS NULL OR c.key = tune.key) k
	 WHERE NOT EXISTS (SELECT FROM learning.thresholds t WHERE t.key = k.key)
	ON CONFLICT ON CONSTRAINT thresholds_pkey DO NOTHING;

	-- Keys in name order, so that concurrent set_objective() calls and this
	-- run lock rows in one order.
	FOR k IN
		SELECT c.key FROM learning.feedback_changes c WHERE tune.key IS NULL OR c.key = tune.key
		UNION
		SELECT t.key FROM learning.thresholds t
		 WHERE (tune.key IS NULL OR t.key = tune.key) AND (t.tuned_at IS NULL OR t.tuned_at < t.configured_at)
		ORDER BY 1
	LOOP
		PERFORM learning._tune_key(k);
		tuned := tuned + 1;
	END LOOP;
	RETURN tuned;
END
$$;

COMMENT ON FUNCTION learning.tune(text) IS 'Re-tune the thresholds of every key (or of one key) whose feedback or objective changed; returns the number of keys tuned';

CREATE FUNCTION learning.rebuild_histograms(key text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pg_opsdata learning.tune'));
	LOCK TABLE learning.feedback IN SHARE MODE;
	DELETE FROM learning.feedback_changes c WHERE rebuild_histograms.key IS NULL OR c.key = rebuild_histograms.key;
	DELETE FROM learning.histograms h WHERE rebuild_histograms.key IS NULL OR h.key = rebuild_histograms.key;
	INSERT INTO learning.feedback_changes (key, bin, positives, negatives, min_score)
	SELECT f.key, learning._score_bin(f.score),
		   pg_catalog.count(*) FILTER (WHERE f.label), pg_catalog.count(*) FILTER (WHERE NOT f.label),
		   pg_catalog.min(f.score)
	  FROM learning.feedback f
	 WHERE (rebuild_histograms.key IS NULL OR f.key = rebuild_histograms.key)
	   AND f.score IS NOT NULL AND f.label IS NOT NULL
	 GROUP BY 1, 2;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;

COMMENT ON FUNCTION learning.rebuild_histograms(text) IS 'Recount the score histograms of every key (or of one key) from learning.feedback; the next learning.tune() re-tunes them. Returns the number of bins recounted';

CREATE FUNCTION learning.set_objective(key text, objective text, target double precision DEFAULT NULL,
									   min_support integer DEFAULT NULL)
RETURNS learning.thresholds
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	result learning.thresholds;
	stored double precision;
BEGIN
	IF key IS NULL THEN
		RAISE EXCEPTION 'key must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	stored := learning._check_objective(objective, target);
	IF min_support IS NOT NULL AND min_support < 1 THEN
		RAISE EXCEPTION 'min_support must be at least 1'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;

	INSERT INTO learning.thresholds AS t (key, objective, target, min_support)
	VALUES (key, objective, stored,
			coalesce(min_support, opsdata.setting('learning.default_min_support')::integer))
	ON CONFLICT ON CONSTRAINT thresholds_pkey DO UPDATE
	   SET objective = excluded.objective, target = excluded.target,
		   min_support = coalesce(set_objective.min_support, t.min_support),
		   configured_at = pg_catalog.now();

	-- Re-tune at once from the key's histogram.
	PERFORM learning._tune_key(key);
	SELECT * INTO result FROM learning.thresholds t WHERE t.key = set_objective.key;
	RETURN result;
END
$$;

COMMENT ON FUNCTION learning.set_objective(text, text, double precision, integer) IS 'Set the objective of a key (precision at a target, f_beta with beta, or youden) and its min_support; re-tunes the key and returns its row';

CREATE FUNCTION learning.threshold(key text)
RETURNS double precision
LANGUAGE c STABLE STRICT PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'learning_threshold';

COMMENT ON FUNCTION learning.threshold(text) IS 'Current threshold of a key: its tuned threshold once its support reaches min_support, else the setting learning.default_threshold';

--
-- Feedback API.
--
CREATE FUNCTION learning.record_feedback(key text, score double precision, label boolean,
										 item_id text DEFAULT NULL, rating smallint DEFAULT NULL,
										 given_by text DEFAULT NULL, source text DEFAULT NULL,
										 metadata jsonb DEFAULT NULL)
RETURNS bigint
LANGUAGE c VOLATILE CALLED ON NULL INPUT
AS 'MODULE_PATHNAME', 'learning_record_feedback';

COMMENT ON FUNCTION learning.record_feedback(text, double precision, boolean, text, smallint, text, text, jsonb) IS 'Record one feedback row; returns its feedback_id';

CREATE FUNCTION learning.record_feedback(feedback jsonb)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	bad record;
	n bigint;
BEGIN
	IF feedback IS NULL OR pg_catalog.jsonb_typeof(feedback) <> 'array' THEN
		RAISE EXCEPTION 'feedback must be a JSON array of objects'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Pass [{"key": ..., "score": ..., "label": ...}, ...].';
	END IF;
	SELECT e.ord, e.elem INTO bad
	  FROM pg_catalog.jsonb_array_elements(feedback) WITH ORDINALITY AS e(elem, ord)
	 WHERE pg_catalog.jsonb_typeof(e.elem) <> 'object'
		OR EXISTS (SELECT FROM pg_catalog.jsonb_object_keys(e.elem) k
					WHERE k NOT IN ('key', 'item_id', 'score', 'label', 'rating', 'given_by',
									'source', 'created_at', 'metadata'))
	 LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'feedback element % is not an object of known fields', bad.ord
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = pg_catalog.format('The element is %s.', bad.elem),
				  HINT = 'The fields are key, item_id, score, label, rating, given_by, source, created_at and metadata.';
	END IF;
	SELECT r.ord INTO bad
	  FROM pg_catalog.jsonb_array_elements(feedback) WITH ORDINALITY AS e(elem, ord),
		   LATERAL (SELECT e.ord) r
	 WHERE e.elem->>'key' IS NULL
	 LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'feedback element % has no key', bad.ord
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT e.ord, e.elem->>'score' AS score INTO bad
	  FROM pg_catalog.jsonb_array_elements(feedback) WITH ORDINALITY AS e(elem, ord)
	 WHERE CASE pg_catalog.jsonb_typeof(e.elem->'score')
			   WHEN 'number' THEN (e.elem->>'score')::double precision NOT BETWEEN 0 AND 1
			   ELSE pg_catalog.jsonb_typeof(e.elem->'score') <> 'null'
		   END
	 LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'score of feedback element % must be a number between 0 and 1, not %', bad.ord, bad.score
			USING ERRCODE = 'numeric_value_out_of_range';
	END IF;

	INSERT INTO learning.feedback (key, item_id, score, label, rating, given_by, source, created_at, metadata)
	SELECT r.key, r.item_id, r.score, r.label, r.rating, r.given_by, r.source,
		   coalesce(r.created_at, pg_catalog.now()), coalesce(r.metadata, '{}')
	  FROM pg_catalog.jsonb_to_recordset(feedback)
		   AS r(key text, item_id text, score double precision, label boolean, rating smallint,
				given_by text, source text, created_at timestamptz, metadata jsonb);
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;

COMMENT ON FUNCTION learning.record_feedback(jsonb) IS 'Record a batch of feedback given as a JSON array of objects; returns the number of rows recorded';

--
-- Candidates API.
--
CREATE FUNCTION learning.set_strategy(key text, strategy text, required_labels integer DEFAULT NULL)
RETURNS learning.strategies
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	result learning.strategies;
BEGIN
	IF key IS NULL THEN
		RAISE EXCEPTION 'key must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF strategy IS NULL OR strategy NOT IN ('least_confidence', 'margin', 'entropy', 'threshold') THEN
		RAISE EXCEPTION 'unrecognized candidate strategy "%"', strategy
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'The strategies are least_confidence, margin, entropy and threshold.';
	END IF;
	IF required_labels IS NOT NULL AND (required_labels < 1 OR required_labels > 100) THEN
		RAISE EXCEPTION 'required_labels must be between 1 and 100'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	INSERT INTO learning.strategies AS s (key, strategy, required_labels)
	VALUES (key, strategy,
			coalesce(required_labels, opsdata.setting('learning.default_required_labels')::integer))
	ON CONFLICT ON CONSTRAINT strategies_pkey DO UPDATE
	   SET strategy = excluded.strategy,
		   required_labels = coalesce(set_strategy.required_labels, s.required_labels),
		   configured_at = pg_catalog.now()
	RETURNING * INTO result;
	RETURN result;
END
$$;

COMMENT ON FUNCTION learning.set_strategy(text, text, integer) IS 'Set how the candidates of a key are prioritized and how many labels close one; applies to candidates offered from then on';

CREATE FUNCTION learning.priority(strategy text, scores double precision[], threshold double precision DEFAULT NULL)
RETURNS double precision
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'learning_priority';

COMMENT ON FUNCTION learning.priority(text, double precision[], double precision) IS 'Priority in [0, 1] a strategy gives to model scores (one probability, or one score per class)';

CREATE FUNCTION learning.offer(key text, item_id text, scores double precision[], payload jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'learning_offer';

CREATE FUNCTION learning.offer(key text, item_id text, probability double precision, payload jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'learning_offer_probability';

COMMENT ON FUNCTION learning.offer(text, text, double precision[], jsonb) IS 'Queue an item for labelling with its per-class scores; an open candidate of the same key and item is updated instead. Returns the candidate_id';
COMMENT ON FUNCTION learning.offer(text, text, double precision, jsonb) IS 'Queue an item for labelling with the probability the model gave; an open candidate of the same key and item is updated instead. Returns the candidate_id';

CREATE FUNCTION learning.claim(n integer, reviewer text, lease interval DEFAULT NULL, key text DEFAULT NULL)
RETURNS TABLE (candidate_id bigint, key text, item_id text, priority double precision, score double precision,
			   scores double precision[], payload jsonb, labels integer, lease_until timestamptz)
LANGUAGE c VOLATILE CALLED ON NULL INPUT ROWS 1
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'learning_claim';

COMMENT ON FUNCTION learning.claim(integer, text, interval, text) IS 'Lease up to n candidates (of one key, or of any) to a reviewer, highest priority first; each is leased to one reviewer at a time, and an expired lease is handed out again';

CREATE FUNCTION learning.submit(candidate bigint, reviewer text, label boolean, rating smallint DEFAULT NULL,
								metadata jsonb DEFAULT NULL)
RETURNS bigint
LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'learning_submit';

COMMENT ON FUNCTION learning.submit(bigint, text, boolean, smallint, jsonb) IS 'Record a reviewer''s label for a candidate as feedback, and close the candidate once it has its key''s required labels; returns the feedback_id';

CREATE FUNCTION learning.release(candidate bigint, reviewer text DEFAULT NULL)
RETURNS boolean
LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'learning_release';

COMMENT ON FUNCTION learning.release(bigint, text) IS 'Give a leased candidate back to the queue (only if leased to that reviewer, when one is named); returns whether a lease was released';

CREATE FUNCTION learning.reclaim_expired()
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	UPDATE learning.candidates c
	   SET status = 'open', claimed_by = NULL, lease_until = NULL
	 WHERE c.closed_at IS NULL AND c.status = 'claimed' AND c.lease_until <= pg_catalog.now();
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;

COMMENT ON FUNCTION learning.reclaim_expired() IS 'Mark candidates whose lease expired as open again (learning.claim() hands them out either way); returns how many';

-- Agreement between reviewers, from candidates labelled at least twice:
-- observed pairwise agreement and Fleiss' kappa (which allows a varying
-- number of labels per candidate).
CREATE VIEW learning.agreement AS
	WITH per_item AS (
		SELECT c.key, c.labels::double precision AS n, c.positives::double precision AS pos,
			   (c.labels - c.positives)::double precision AS neg
		  FROM learning.candidates c
		 WHERE c.labels >= 2
	), per_key AS (
		SELECT key, pg_catalog.count(*) AS candidates, pg_catalog.sum(n)::bigint AS labels,
			   pg_catalog.avg((pos * (pos - 1) + neg * (neg - 1)) / (n * (n - 1))) AS observed,
			   pg_catalog.sum(pos) / pg_catalog.sum(n) AS p_true
		  FROM per_item GROUP BY key
	)
	SELECT key, candidates, labels, observed AS observed_agreement,
		   CASE WHEN p_true * p_true + (1 - p_true) * (1 - p_true) < 1
				THEN (observed - (p_true * p_true + (1 - p_true) * (1 - p_true)))
					 / (1 - (p_true * p_true + (1 - p_true) * (1 - p_true)))
		   END AS kappa
	  FROM per_key;

COMMENT ON VIEW learning.agreement IS 'Inter-reviewer agreement per key over candidates labelled at least twice';
COMMENT ON COLUMN learning.agreement.key IS 'Key of the candidates';
COMMENT ON COLUMN learning.agreement.candidates IS 'Candidates with at least two labels';
COMMENT ON COLUMN learning.agreement.labels IS 'Labels given to them';
COMMENT ON COLUMN learning.agreement.observed_agreement IS 'Share of reviewer pairs that agreed, averaged over candidates';
COMMENT ON COLUMN learning.agreement.kappa IS 'Fleiss'' kappa: agreement beyond chance; NULL when every label is the same';

--
-- Health.
--
CREATE FUNCTION learning._health_learning(OUT component text, OUT status text, OUT detail text)
RETURNS SETOF record
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	oldest timestamptz;
	pending bigint;
	keys bigint;
	below bigint;
	unmet text;
	open_n bigint;
	leased bigint;
	expired bigint;
BEGIN
	SELECT pg_catalog.min(c.changed_at), pg_catalog.count(*) INTO oldest, pending FROM learning.feedback_changes c;
	SELECT pg_catalog.count(*), pg_catalog.count(*) FILTER (WHERE t.support < t.min_support),
		   pg_catalog.string_agg(pg_catalog.quote_literal(t.key), ', ' ORDER BY t.key)
			   FILTER (WHERE t.support >= t.min_support AND t.threshold IS NULL)
	  INTO keys, below, unmet
	  FROM learning.thresholds t;
	component := 'learning tuning';
	IF oldest IS NOT NULL AND oldest < pg_catalog.now() - interval '15 minutes' THEN
		status := 'warning';
		detail := pg_catalog.format('Feedback recorded since %s is not tuned yet (%s pending changes). Check that the job learning.tune runs, or run SELECT learning.tune().',
									oldest, pending);
	ELSIF unmet IS NOT NULL THEN
		status := 'warning';
		detail := pg_catalog.format('No threshold meets the objective of %s; learning.threshold() returns the default for them.', unmet);
	ELSE
		status := 'ok';
		detail := pg_catalog.format('Keys with a threshold: %s (%s below their min_support); feedback changes waiting for tuning: %s.',
									keys, below, pending);
	END IF;
	RETURN NEXT;

	SELECT pg_catalog.count(*) FILTER (WHERE c.lease_until IS NULL OR c.lease_until <= pg_catalog.now()),
		   pg_catalog.count(*) FILTER (WHERE c.lease_until > pg_catalog.now()),
		   pg_catalog.count(*) FILTER (WHERE c.status = 'claimed' AND c.lease_until <= pg_catalog.now())
	  INTO open_n, leased, expired
	  FROM learning.candidates c WHERE c.closed_at IS NULL;
	component := 'learning candidates';
	status := 'ok';
	detail := pg_catalog.format('Candidates to label: %s; leased: %s; leases expired: %s.', open_n, leased, expired);
	RETURN NEXT;
END
$$;

COMMENT ON FUNCTION learning._health_learning() IS 'Internal: the learning area''s rows of opsdata.health()';

--
-- Built-in jobs.
--
INSERT INTO opsdata.jobs (name, command, schedule, builtin, comment) VALUES
	('learning.tune', 'SELECT learning.tune()', '1 minute', true,
	 'Re-tune the thresholds of keys whose feedback or objective changed'),
	('learning.reclaim_expired', 'SELECT learning.reclaim_expired()', '1 minute', true,
	 'Mark candidates whose lease expired as open again');

--
-- Privileges.  Writers record feedback and work the queue, readers read
-- everything and call learning.threshold(), administrators configure and
-- run the upkeep; the functions that write run as the owner where writers
-- hold no table rights.
--
GRANT SELECT ON learning.feedback, learning.feedback_changes, learning.histograms, learning.score_bins, learning.thresholds,
	learning.threshold_history, learning.strategies, learning.candidates, learning.agreement TO opsdata_reader;
GRANT SELECT, INSERT ON learning.feedback TO opsdata_writer;
GRANT SELECT ON learning.thresholds, learning.strategies TO opsdata_writer;

GRANT EXECUTE ON FUNCTION
	learning.record_feedback(text, double precision, boolean, text, smallint, text, text, jsonb),
	learning.record_feedback(jsonb),
	learning.offer(text, text, double precision[], jsonb),
	learning.offer(text, text, double precision, jsonb),
	learning.claim(integer, text, interval, text),
	learning.submit(bigint, text, boolean, smallint, jsonb),
	learning.release(bigint, text)
	TO opsdata_writer;
GRANT EXECUTE ON FUNCTION
	learning.threshold(text),
	learning.priority(text, double precision[], double precision),
	learning.optimal_threshold(double precision, boolean, text, double precision),
	learning.optimal_threshold(double precision, boolean, text, double precision, double precision)
	TO opsdata_writer, opsdata_reader;
GRANT EXECUTE ON FUNCTION
	learning.set_objective(text, text, double precision, integer),
	learning.set_strategy(text, text, integer),
	learning.tune(text),
	learning.rebuild_histograms(text),
	learning.reclaim_expired()
	TO opsdata_admin;

-- src/core/finish.sql
-- Core, last piece: health across every area, grants on core functions, and
-- the warning when the library is not preloaded.

-- opsdata.health() gathers the rows of every function named "_health_*" in
-- the extension's schemas, each returning (component, status, detail): an
-- area adds its rows by defining one.  A failing row source shows as an
-- error row of its own instead of failing the whole call.
CREATE FUNCTION opsdata._health_extension(OUT component text, OUT status text, OUT detail text)
RETURNS SETOF record
LANGUAGE sql STABLE
AS $$
	SELECT 'extension',
		   CASE WHEN e.extversion = opsdata._library_version() THEN 'ok' ELSE 'error' END,
		   CASE WHEN e.extversion = opsdata._library_version()
				THEN pg_catalog.format('pg_opsdata %s.', e.extversion)
				ELSE pg_catalog.format('The loaded library is version %s but the extension is version %s. Run ALTER EXTENSION pg_opsdata UPDATE, or restart the server if the library was upgraded.',
									   opsdata._library_version(), e.extversion)
		   END
	  FROM pg_catalog.pg_extension e
	 WHERE e.extname = 'pg_opsdata'
$$;

COMMENT ON FUNCTION opsdata._health_extension() IS 'Internal: whether the loaded library matches the installed extension';

CREATE FUNCTION opsdata.health()
RETURNS TABLE (component text, status text, detail text)
LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	source regprocedure;
BEGIN
	FOR source IN
		SELECT p.oid::regprocedure
		  FROM pg_catalog.pg_proc p
		  JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid
									 AND d.deptype = 'e'
		  JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_opsdata'
		 WHERE p.proname LIKE '\_health\_%' AND p.pronargs = 0
		 ORDER BY p.proname
	LOOP
		BEGIN
			RETURN QUERY EXECUTE pg_catalog.format('SELECT component, status, detail FROM %s', source);
		EXCEPTION WHEN OTHERS THEN
			component := pg_catalog.regexp_replace(source::text, '^.*_health_(\w+)\(\)$', '\1');
			status := 'error';
			detail := pg_catalog.format('Health check %s failed: %s', source, SQLERRM);
			RETURN NEXT;
		END;
	END LOOP;
END
$$;

COMMENT ON FUNCTION opsdata.health() IS 'One row per component: status ok, warning, error or off, and a detail for people';

-- Functions are created executable by PUBLIC; within our schemas nothing is
-- granted to PUBLIC, and each area grants what its roles need.
REVOKE ALL ON ALL ROUTINES IN SCHEMA opsdata, audit, learning, metrics FROM PUBLIC;

GRANT EXECUTE ON FUNCTION opsdata.health() TO opsdata_admin, opsdata_writer, opsdata_reader, opsdata_auditor;
GRANT EXECUTE ON FUNCTION opsdata.setting(text) TO opsdata_admin, opsdata_writer, opsdata_reader, opsdata_auditor;
GRANT EXECUTE ON FUNCTION opsdata.set_setting(text, text), opsdata.reset_setting(text) TO opsdata_admin;
GRANT SELECT ON opsdata.settings, opsdata.config, opsdata.current_settings TO opsdata_admin, opsdata_reader;

DO $$
BEGIN
	PERFORM opsdata._warn_if_not_preloaded();
END
$$;

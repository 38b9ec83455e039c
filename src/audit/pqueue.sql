-- Audit: processing queues.
--
-- A queue holds items for consumers: items the application enqueues
-- (audit.enqueue), and, for a subscription, the audit entries that match
-- its filter, enqueued as they are written.  Consumers lease items with
-- audit.read() and settle them with audit.ack(), audit.nack() and
-- audit.extend() (src/audit/pqueue_*.c; the design is in the banner of
-- pqueue_read.c).  Every table is written through these functions only.

CREATE TABLE audit.queues (
	queue_id		integer PRIMARY KEY CHECK (queue_id BETWEEN 1 AND 32767),
	name			text NOT NULL UNIQUE CHECK (name <> '' AND pg_catalog.length(name) <= 63),
	kind			text NOT NULL DEFAULT 'application' CHECK (kind IN ('application', 'subscription')),
	max_deliveries	integer NOT NULL DEFAULT 5 CHECK (max_deliveries BETWEEN 1 AND 1000),
	retention		interval CHECK (retention > interval '0'),
	head			bigint NOT NULL DEFAULT 0,
	head_candidate	bigint,
	head_fence		xid8,
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	created_by		name NOT NULL DEFAULT SESSION_USER,
	comment			text
);

COMMENT ON TABLE audit.queues IS 'Processing queues: application queues and the queues of audit subscriptions';
COMMENT ON COLUMN audit.queues.queue_id IS 'Queue identifier (1 to 32767); the high bits of the ids of its items';
COMMENT ON COLUMN audit.queues.name IS 'Queue name, as given to audit.enqueue() and audit.read()';
COMMENT ON COLUMN audit.queues.kind IS 'application (items come from audit.enqueue()) or subscription (items are matching audit entries)';
COMMENT ON COLUMN audit.queues.max_deliveries IS 'Deliveries after which an item that is still not acknowledged becomes a dead letter';
COMMENT ON COLUMN audit.queues.retention IS 'How long acknowledged items are kept; NULL for the setting audit.queue_retention';
COMMENT ON COLUMN audit.queues.head IS 'Every item of the queue with a lower id is acknowledged (kept by the upkeep job)';
COMMENT ON COLUMN audit.queues.head_candidate IS 'Internal: the next head, taken once every transaction older than head_fence has ended';
COMMENT ON COLUMN audit.queues.head_fence IS 'Internal: first transaction that was not yet started when head_candidate was found';
COMMENT ON COLUMN audit.queues.created_at IS 'When the queue was made';
COMMENT ON COLUMN audit.queues.created_by IS 'Who made it';
COMMENT ON COLUMN audit.queues.comment IS 'Free text';

CREATE TABLE audit.subscriptions (
	queue_id		integer PRIMARY KEY REFERENCES audit.queues ON DELETE CASCADE,
	classes			text[],
	commands		text[],
	outcomes		text[],
	objects			text[],
	roles			name[],
	predicate		text,
	actors			text[]
);

COMMENT ON TABLE audit.subscriptions IS 'Filters of audit subscriptions: entries that pass every non-NULL condition are enqueued into the queue';
COMMENT ON COLUMN audit.subscriptions.queue_id IS 'The queue the matching entries go to';
COMMENT ON COLUMN audit.subscriptions.classes IS 'Entry classes that match (read, write, function, role, ddl, misc, login)';
COMMENT ON COLUMN audit.subscriptions.commands IS 'Command tags that match, e.g. DROP TABLE';
COMMENT ON COLUMN audit.subscriptions.outcomes IS 'Outcomes that match (ok, error, rolled back, denied, failed)';
COMMENT ON COLUMN audit.subscriptions.objects IS 'Objects that match, as entries name them; "schema.*" matches every object of a schema';
COMMENT ON COLUMN audit.subscriptions.roles IS 'Roles that match, as the session user or the current user of an entry';
COMMENT ON COLUMN audit.subscriptions.predicate IS 'Boolean SQL expression over the columns of audit.trail, built-in immutable functions and operators only';
COMMENT ON COLUMN audit.subscriptions.actors IS 'Declared actors that match (pg_opsdata.audit_actor of an entry, compared exactly)';

CREATE SEQUENCE audit.queue_items_seq AS bigint MAXVALUE 281474976710655;

CREATE TABLE audit.queue_items (
	item_id			bigint PRIMARY KEY,
	queue_id		integer NOT NULL,
	deliveries		integer NOT NULL DEFAULT 0,
	leased			boolean NOT NULL DEFAULT false,
	enqueued_at		timestamptz NOT NULL,
	visible_at		timestamptz NOT NULL,
	acked_at		timestamptz,
	entry_id		bigint,
	payload			jsonb
) WITH (fillfactor = 25);

-- The sequence gives the low 48 bits of item_id (pqueue_store.c).
ALTER SEQUENCE audit.queue_items_seq OWNED BY audit.queue_items.item_id;

COMMENT ON TABLE audit.queue_items IS 'Items of the processing queues, waiting, leased, and acknowledged ones until their retention';
COMMENT ON COLUMN audit.queue_items.item_id IS 'Item identifier: the queue_id in the high 16 bits, then a number that grows in enqueue order';
COMMENT ON COLUMN audit.queue_items.queue_id IS 'Queue of the item';
COMMENT ON COLUMN audit.queue_items.deliveries IS 'How many times audit.read() handed the item out';
COMMENT ON COLUMN audit.queue_items.leased IS 'Handed out by audit.read() until visible_at, and not given back since';
COMMENT ON COLUMN audit.queue_items.enqueued_at IS 'When the item was enqueued';
COMMENT ON COLUMN audit.queue_items.visible_at IS 'When the item may be handed out (again): the end of its lease or delay';
COMMENT ON COLUMN audit.queue_items.acked_at IS 'When the item was acknowledged; NULL while it is not';
COMMENT ON COLUMN audit.queue_items.entry_id IS 'For a subscription, the audit entry the item is';
COMMENT ON COLUMN audit.queue_items.payload IS 'Item contents (for a subscription, the entry as in audit.trail)';

CREATE TABLE audit.dead_letters (
	item_id			bigint PRIMARY KEY,
	queue_id		integer NOT NULL,
	deliveries		integer NOT NULL,
	enqueued_at		timestamptz NOT NULL,
	died_at			timestamptz NOT NULL,
	entry_id		bigint,
	payload			jsonb
);

COMMENT ON TABLE audit.dead_letters IS 'Items delivered max_deliveries times without being acknowledged; audit.redrive() queues them again';
COMMENT ON COLUMN audit.dead_letters.item_id IS 'Identifier the item had in its queue';
COMMENT ON COLUMN audit.dead_letters.queue_id IS 'Queue of the item';
COMMENT ON COLUMN audit.dead_letters.deliveries IS 'How many times it was handed out';
COMMENT ON COLUMN audit.dead_letters.enqueued_at IS 'When it was enqueued';
COMMENT ON COLUMN audit.dead_letters.died_at IS 'When it became a dead letter';
COMMENT ON COLUMN audit.dead_letters.entry_id IS 'For a subscription, the audit entry the item is';
COMMENT ON COLUMN audit.dead_letters.payload IS 'Item contents';


SELECT pg_catalog.pg_extension_config_dump('audit.queues', '');
SELECT pg_catalog.pg_extension_config_dump('audit.subscriptions', '');
SELECT pg_catalog.pg_extension_config_dump('audit.queue_items', '');
SELECT pg_catalog.pg_extension_config_dump('audit.queue_items_seq', '');
SELECT pg_catalog.pg_extension_config_dump('audit.dead_letters', '');

INSERT INTO opsdata.settings (key, type, default_value, valid_when, description) VALUES
	('audit.queue_retention', 'interval', '7 days', 'value >= interval ''0''',
	 'How long acknowledged items of processing queues are kept (queues may set their own)');

--
-- Producers and consumers (C, src/audit/pqueue_api.c).
--
CREATE FUNCTION audit.enqueue(queue text, payload jsonb, delay interval DEFAULT NULL)
RETURNS bigint
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'audit_pq_enqueue';

COMMENT ON FUNCTION audit.enqueue(text, jsonb, interval) IS 'Add an item to an application queue, in the calling transaction; returns its item_id';

CREATE FUNCTION audit.enqueue_many(queue text, payloads jsonb[], delay interval DEFAULT NULL)
RETURNS bigint
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'audit_pq_enqueue_many';

COMMENT ON FUNCTION audit.enqueue_many(text, jsonb[], interval) IS 'Add one item per payload to an application queue, in order; returns how many';

CREATE FUNCTION audit.read(queue text, n integer DEFAULT 1,
	visibility_timeout interval DEFAULT '30 seconds', wait interval DEFAULT NULL)
RETURNS TABLE (item_id bigint, payload jsonb, deliveries integer, enqueued_at timestamptz,
	lease_until timestamptz, entry_id bigint)
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'audit_pq_read';

COMMENT ON FUNCTION audit.read(text, integer, interval, interval) IS 'Lease up to n items of a queue for visibility_timeout, oldest first, waiting up to wait for one; returns them with their delivery count';

CREATE FUNCTION audit.ack(ids bigint[])
RETURNS bigint
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'audit_pq_ack';

COMMENT ON FUNCTION audit.ack(bigint[]) IS 'Acknowledge items: they are done and kept until their retention; returns how many were not acknowledged before';

CREATE FUNCTION audit.nack(ids bigint[], delay interval DEFAULT '0 seconds')
RETURNS bigint
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'audit_pq_nack';

COMMENT ON FUNCTION audit.nack(bigint[], interval) IS 'Give leased items back, to be handed out again after delay; returns how many';

CREATE FUNCTION audit.extend(ids bigint[], visibility_timeout interval)
RETURNS bigint
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'audit_pq_extend';

COMMENT ON FUNCTION audit.extend(bigint[], interval) IS 'Extend the leases that still hold to visibility_timeout from now; returns how many';

CREATE FUNCTION audit._queue_state(OUT queue_id integer, OUT shared boolean, OUT settled_below bigint,
	OUT read_from bigint, OUT rescan_from bigint, OUT due_at timestamptz)
RETURNS SETOF record
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'audit_pq_state';

COMMENT ON FUNCTION audit._queue_state() IS 'Internal: what this server knows in shared memory of the read positions of the queues of this database';

CREATE FUNCTION audit._queue_settled_below(queue_id integer)
RETURNS bigint
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'audit_pq_settled_below';

COMMENT ON FUNCTION audit._queue_settled_below(integer) IS 'Internal: an item id below which every item of the queue is acknowledged';

CREATE FUNCTION audit._queue_forget(queue_id integer)
RETURNS void
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'audit_pq_forget';

COMMENT ON FUNCTION audit._queue_forget(integer) IS 'Internal: drop what shared memory holds of a queue that is being dropped';

CREATE FUNCTION audit._check_predicate(predicate text)
RETURNS text
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'audit_pq_check_predicate';

COMMENT ON FUNCTION audit._check_predicate(text) IS 'Internal: check that a subscription predicate is a boolean expression over audit.trail made of built-in immutable functions; returns it';

CREATE FUNCTION audit._queues_changed()
RETURNS void
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'audit_pq_queues_changed';

COMMENT ON FUNCTION audit._queues_changed() IS 'Internal: make every backend read the queues and subscriptions again';

--
-- Administration.
--
CREATE FUNCTION audit._check_queue_options(max_deliveries integer, retention interval)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF max_deliveries IS NULL OR max_deliveries NOT BETWEEN 1 AND 1000 THEN
		RAISE EXCEPTION 'max_deliveries must be between 1 and 1000'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF retention IS NOT NULL AND retention <= interval '0' THEN
		RAISE EXCEPTION 'retention must be a positive interval'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'NULL keeps acknowledged items for the setting audit.queue_retention.';
	END IF;
END
$$;

COMMENT ON FUNCTION audit._check_queue_options(integer, interval) IS 'Internal: check the options of a new queue';

-- Queue ids are the high bits of item ids: the lowest free one is taken.
CREATE FUNCTION audit._new_queue(name text, kind text, max_deliveries integer, retention interval,
	comment text)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	id integer;
BEGIN
	IF name IS NULL OR name = '' OR length(name) > 63 THEN
		RAISE EXCEPTION 'queue name must be between 1 and 63 characters'
			USING ERRCODE = 'invalid_name';
	END IF;
	PERFORM audit._check_queue_options(max_deliveries, retention);
	LOCK TABLE audit.queues IN SHARE ROW EXCLUSIVE MODE;
	IF EXISTS (SELECT FROM audit.queues q WHERE q.name = _new_queue.name) THEN
		RAISE EXCEPTION 'queue "%" already exists', name
			USING ERRCODE = 'duplicate_object';
	END IF;
	SELECT min(g) INTO id
	  FROM pg_catalog.generate_series(1, 32767) g
	 WHERE NOT EXISTS (SELECT FROM audit.queues q WHERE q.queue_id = g);
	IF id IS NULL THEN
		RAISE EXCEPTION 'too many queues'
			USING ERRCODE = 'program_limit_exceeded',
				  DETAIL = 'A database has at most 32767 queues.';
	END IF;
	-- Items left by a queue that had this id were removed when it was dropped.
	PERFORM audit._queue_forget(id);
	INSERT INTO audit.queues (queue_id, name, kind, max_deliveries, retention, comment)
	VALUES (id, _new_queue.name, kind, max_deliveries, retention, comment);
	RETURN id;
END
$$;

COMMENT ON FUNCTION audit._new_queue(text, text, integer, interval, text) IS 'Internal: make a queue with the lowest free queue_id';

CREATE FUNCTION audit.create_queue(name text, max_deliveries integer DEFAULT 5,
	retention interval DEFAULT NULL, comment text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN audit._new_queue(name, 'application', max_deliveries, retention, comment);
END
$$;

COMMENT ON FUNCTION audit.create_queue(text, integer, interval, text) IS 'Make an application queue; returns its queue_id';

CREATE FUNCTION audit.drop_queue(name text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE STRICT
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	q audit.queues;
BEGIN
	-- Sessions cache queues while they hold a lock on audit.queues: wait
	-- for them, and make them look again.
	LOCK TABLE audit.queues IN ACCESS EXCLUSIVE MODE;
	SELECT * INTO q FROM audit.queues WHERE queues.name = drop_queue.name;
	IF NOT FOUND THEN
		RETURN false;
	END IF;
	IF q.kind = 'subscription' THEN
		PERFORM audit._rules_changed('DROP AUDIT SUBSCRIPTION', name);
	END IF;
	PERFORM audit._queues_changed();
	DELETE FROM audit.queue_items i
	 WHERE i.item_id >= q.queue_id::bigint << 48 AND i.item_id < (q.queue_id + 1)::bigint << 48;
	DELETE FROM audit.dead_letters d WHERE d.queue_id = q.queue_id;
	DELETE FROM audit.queues WHERE queue_id = q.queue_id;
	PERFORM audit._queue_forget(q.queue_id);
	RETURN true;
END
$$;

COMMENT ON FUNCTION audit.drop_queue(text) IS 'Drop a queue (or subscription) with its items and dead letters; returns false when there was no such queue';

CREATE FUNCTION audit.subscribe(name text, classes text[] DEFAULT NULL, commands text[] DEFAULT NULL,
	outcomes text[] DEFAULT NULL, objects text[] DEFAULT NULL, roles name[] DEFAULT NULL,
	actors text[] DEFAULT NULL, predicate text DEFAULT NULL, max_deliveries integer DEFAULT 5, retention interval DEFAULT NULL,
	comment text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	id integer;
	bad text;
BEGIN
	-- A subscription copies entries of the trail into a queue: only a role
	-- that may read the trail makes one (the caller, not this function's
	-- owner: _may_read_trail() looks at the role that called subscribe()).
	IF NOT audit._may_read_trail() THEN
		RAISE EXCEPTION 'permission denied to subscribe to the audit trail'
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'A subscription copies audit entries into a queue.',
				  HINT = 'Subscriptions are made by roles that may read audit.entries (opsdata_auditor).';
	END IF;
	SELECT c INTO bad FROM pg_catalog.unnest(classes) c
	 WHERE c IS NULL OR c NOT IN ('read', 'write', 'function', 'role', 'ddl', 'misc', 'login', 'app') LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'invalid audit class "%"', bad
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Valid classes are read, write, function, role, ddl, misc, login and app.';
	END IF;
	SELECT o INTO bad FROM pg_catalog.unnest(outcomes) o
	 WHERE o IS NULL OR o NOT IN ('ok', 'error', 'rolled back', 'denied', 'failed') LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'invalid audit outcome "%"', bad
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Valid outcomes are ok, error, rolled back, denied and failed.';
	END IF;
	IF pg_catalog.array_position(commands, NULL) IS NOT NULL
	   OR pg_catalog.array_position(objects, NULL) IS NOT NULL
	   OR pg_catalog.array_position(roles, NULL) IS NOT NULL
	   OR pg_catalog.array_position(actors, NULL) IS NOT NULL THEN
		RAISE EXCEPTION 'subscription filters must not contain nulls'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF predicate IS NOT NULL THEN
		predicate := audit._check_predicate(predicate);
	END IF;
	id := audit._new_queue(name, 'subscription', max_deliveries, retention, comment);
	INSERT INTO audit.subscriptions (queue_id, classes, commands, outcomes, objects, roles, predicate, actors)
	VALUES (id, classes, (SELECT pg_catalog.array_agg(pg_catalog.upper(c)) FROM pg_catalog.unnest(commands) c),
			outcomes, objects, roles, predicate, actors);
	PERFORM audit._rules_changed('CREATE AUDIT SUBSCRIPTION', name);
	PERFORM audit._queues_changed();
	RETURN id;
END
$$;

COMMENT ON FUNCTION audit.subscribe(text, text[], text[], text[], text[], name[], text[], text, integer, interval, text) IS 'Make a queue that receives every audit entry matching the filter as it is written; returns its queue_id';

CREATE FUNCTION audit.unsubscribe(name text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE STRICT
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT FROM audit.queues q WHERE q.name = unsubscribe.name AND q.kind = 'subscription') THEN
		RETURN false;
	END IF;
	RETURN audit.drop_queue(name);
END
$$;

COMMENT ON FUNCTION audit.unsubscribe(text) IS 'Drop a subscription with its queue; returns false when there was no such subscription';

CREATE FUNCTION audit.redrive(queue text, ids bigint[] DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	q audit.queues;
	n bigint;
BEGIN
	SELECT * INTO q FROM audit.queues WHERE name = queue;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'queue "%" does not exist', queue
			USING ERRCODE = 'undefined_object';
	END IF;
	WITH d AS (
		DELETE FROM audit.dead_letters d
		 WHERE d.queue_id = q.queue_id AND (ids IS NULL OR d.item_id = ANY (ids))
		RETURNING d.*)
	SELECT audit._requeue(q.queue_id, pg_catalog.array_agg(d.payload ORDER BY d.item_id),
						  pg_catalog.array_agg(d.entry_id ORDER BY d.item_id),
						  pg_catalog.array_agg(d.enqueued_at ORDER BY d.item_id))
	  INTO n FROM d;
	RETURN coalesce(n, 0);
END
$$;

COMMENT ON FUNCTION audit.redrive(text, bigint[]) IS 'Queue dead letters of a queue (all, or those of ids) again as new items; returns how many';

CREATE FUNCTION audit._requeue(queue_id integer, payloads jsonb[], entry_ids bigint[],
	enqueued_ats timestamptz[])
RETURNS bigint
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'audit_pq_requeue';

COMMENT ON FUNCTION audit._requeue(integer, jsonb[], bigint[], timestamptz[]) IS 'Internal: enqueue items again, keeping their entry and first enqueue time';

CREATE FUNCTION audit._may_read_trail()
RETURNS boolean
LANGUAGE c STABLE STRICT
AS 'MODULE_PATHNAME', 'audit_pq_may_read_trail';

COMMENT ON FUNCTION audit._may_read_trail() IS 'Internal: whether the calling role may read audit.entries';

--
-- Upkeep, state and health.
--

-- The head of each queue moves up to what was found settled at the
-- previous run, once every transaction that was running then has ended
-- (one of them may still add an item below it); acknowledged items below
-- the head and past their retention are then removed.
CREATE FUNCTION audit._queue_upkeep(batch integer DEFAULT 10000)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	q audit.queues;
	keep interval;
	removed bigint := 0;
	n bigint;
	first bigint;
BEGIN
	FOR q IN SELECT * FROM audit.queues ORDER BY queue_id LOOP
		IF q.head_fence IS NOT NULL
		   AND pg_snapshot_xmin(pg_current_snapshot()) >= q.head_fence THEN
			q.head := greatest(q.head, least(q.head_candidate, audit._queue_settled_below(q.queue_id)));
		END IF;
		UPDATE audit.queues u
		   SET head = q.head,
			   head_candidate = audit._queue_settled_below(q.queue_id),
			   head_fence = pg_snapshot_xmax(pg_current_snapshot())
		 WHERE u.queue_id = q.queue_id;
		keep := coalesce(q.retention, opsdata.setting('audit.queue_retention')::interval);
		first := q.queue_id::bigint << 48;
		LOOP
			DELETE FROM audit.queue_items i
			 WHERE i.item_id IN (SELECT s.item_id FROM audit.queue_items s
								  WHERE s.item_id >= first AND s.item_id < q.head
								  ORDER BY s.item_id LIMIT batch)
			   AND i.acked_at < now() - keep;
			GET DIAGNOSTICS n = ROW_COUNT;
			removed := removed + n;
			EXIT WHEN n < batch;
		END LOOP;
	END LOOP;
	RETURN removed;
END
$$;

COMMENT ON FUNCTION audit._queue_upkeep(integer) IS 'Internal: move queue heads up and remove acknowledged items past their retention; returns how many were removed';

CREATE FUNCTION audit.queue_summary()
RETURNS TABLE (queue text, kind text, ready bigint, leased bigint, delayed bigint,
	oldest_age interval, dead_letters bigint, max_deliveries integer, retention interval)
LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
	SELECT q.name, q.kind,
		   coalesce(c.ready, 0), coalesce(c.leased, 0), coalesce(c.delayed, 0),
		   pg_catalog.now() - c.oldest,
		   (SELECT pg_catalog.count(*) FROM audit.dead_letters d WHERE d.queue_id = q.queue_id),
		   q.max_deliveries, coalesce(q.retention, opsdata.setting('audit.queue_retention')::interval)
	  FROM audit.queues q
	  LEFT JOIN LATERAL (
		SELECT pg_catalog.count(*) FILTER (WHERE i.visible_at <= pg_catalog.now()) AS ready,
			   pg_catalog.count(*) FILTER (WHERE i.visible_at > pg_catalog.now() AND i.leased) AS leased,
			   pg_catalog.count(*) FILTER (WHERE i.visible_at > pg_catalog.now() AND NOT i.leased) AS delayed,
			   pg_catalog.min(i.enqueued_at) AS oldest
		  FROM audit.queue_items i
		 WHERE i.item_id >= audit._queue_settled_below(q.queue_id)
		   AND i.item_id < (q.queue_id + 1)::bigint << 48
		   AND i.acked_at IS NULL) c ON true
	 ORDER BY q.name
$$;

COMMENT ON FUNCTION audit.queue_summary() IS 'Each queue with its items ready, leased and delayed, the age of its oldest item not acknowledged, and its dead letters';

CREATE FUNCTION audit._health_queues(OUT component text, OUT status text, OUT detail text)
RETURNS SETOF record
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s record;
BEGIN
	FOR s IN SELECT * FROM audit.queue_summary() LOOP
		component := 'audit queue ' || pg_catalog.quote_ident(s.queue);
		status := CASE WHEN s.dead_letters > 0 THEN 'warning' ELSE 'ok' END;
		detail := pg_catalog.format('%s items ready, %s leased, %s delayed; oldest waiting %s; %s dead letters.',
									s.ready, s.leased, s.delayed,
									coalesce(pg_catalog.justify_interval(pg_catalog.date_trunc('second', s.oldest_age))::text, 'none'),
									s.dead_letters);
		IF s.dead_letters > 0 THEN
			detail := detail || ' Dead letters were delivered max_deliveries times without acknowledgement: see audit.dead_letters, and audit.redrive() to queue them again.';
		END IF;
		RETURN NEXT;
	END LOOP;
END
$$;

COMMENT ON FUNCTION audit._health_queues() IS 'Internal: one row of opsdata.health() per processing queue';

-- Metrics of the queues, recorded by the upkeep job: audit.queue.ready,
-- audit.queue.leased, audit.queue.oldest_age_seconds and
-- audit.queue.dead_letters, tagged with the queue.
CREATE FUNCTION audit._queue_metrics()
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	IF NOT EXISTS (SELECT FROM audit.queues) THEN
		RETURN 0;
	END IF;
	SELECT metrics.record_many(
			   pg_catalog.array_agg(m.name ORDER BY s.queue, m.name),
			   pg_catalog.array_agg(m.value ORDER BY s.queue, m.name),
			   pg_catalog.array_agg(pg_catalog.jsonb_build_object('queue', s.queue) ORDER BY s.queue, m.name))
	  INTO n
	  FROM audit.queue_summary() s,
		   LATERAL (VALUES ('audit.queue.ready', s.ready::float8),
						   ('audit.queue.leased', s.leased::float8),
						   ('audit.queue.oldest_age_seconds',
							coalesce(extract(epoch FROM s.oldest_age)::float8, 0)),
						   ('audit.queue.dead_letters', s.dead_letters::float8)) m(name, value);
	RETURN coalesce(n, 0);
END
$$;

COMMENT ON FUNCTION audit._queue_metrics() IS 'Internal: record the depth, in-flight items, age of the oldest item and dead letters of each queue as metrics';

CREATE FUNCTION audit._queue_job()
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM audit._queue_metrics();
	RETURN audit._queue_upkeep();
END
$$;

COMMENT ON FUNCTION audit._queue_job() IS 'Internal: the built-in job of the processing queues (metrics, heads, retention)';

INSERT INTO opsdata.jobs (name, command, schedule, builtin, comment) VALUES
	('audit.queue_upkeep', 'SELECT audit._queue_job()', '1 minute', true,
	 'Records the metrics of the processing queues, moves their heads and removes acknowledged items past their retention');

GRANT USAGE ON SCHEMA audit TO opsdata_writer;
GRANT SELECT ON audit.queues, audit.subscriptions TO opsdata_admin, opsdata_auditor;
GRANT SELECT ON audit.queue_items, audit.dead_letters TO opsdata_auditor;
GRANT EXECUTE ON FUNCTION audit.queue_summary() TO opsdata_admin, opsdata_writer, opsdata_auditor;
GRANT EXECUTE ON FUNCTION audit.enqueue(text, jsonb, interval),
	audit.enqueue_many(text, jsonb[], interval) TO opsdata_admin, opsdata_writer;
GRANT EXECUTE ON FUNCTION audit.read(text, integer, interval, interval), audit.ack(bigint[]),
	audit.nack(bigint[], interval), audit.extend(bigint[], interval)
	TO opsdata_admin, opsdata_writer, opsdata_auditor;
GRANT EXECUTE ON FUNCTION audit.create_queue(text, integer, interval, text), audit.drop_queue(text),
	audit.subscribe(text, text[], text[], text[], text[], name[], text[], text, integer, interval, text),
	audit.unsubscribe(text), audit.redrive(text, bigint[]) TO opsdata_admin;

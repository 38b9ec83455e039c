-- The anchor of bench/audit/queue: the table queue people write in
-- PL/pgSQL.  Named queues in one table, read with FOR UPDATE SKIP LOCKED in
-- id order, a visibility timeout and a delivery count, and acknowledged
-- items moved to an archive table (as pgmq's archive() does), so that both
-- sides keep what they acknowledged.
CREATE SCHEMA plain;

CREATE TABLE plain.items (
	id			bigserial PRIMARY KEY,
	queue		text NOT NULL,
	payload		jsonb NOT NULL,
	enqueued_at	timestamptz NOT NULL DEFAULT clock_timestamp(),
	vt			timestamptz NOT NULL DEFAULT clock_timestamp(),
	deliveries	integer NOT NULL DEFAULT 0
);
CREATE INDEX items_queue_idx ON plain.items (queue, id);

CREATE TABLE plain.archive (
	id			bigint PRIMARY KEY,
	queue		text NOT NULL,
	payload		jsonb NOT NULL,
	enqueued_at	timestamptz NOT NULL,
	deliveries	integer NOT NULL,
	acked_at	timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE FUNCTION plain.enqueue(q text, p jsonb) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	i bigint;
BEGIN
	INSERT INTO plain.items (queue, payload) VALUES (q, p) RETURNING id INTO i;
	RETURN i;
END
$$;

CREATE FUNCTION plain.enqueue_many(q text, ps jsonb[]) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	c bigint;
BEGIN
	INSERT INTO plain.items (queue, payload) SELECT q, p FROM unnest(ps) WITH ORDINALITY u(p, o) ORDER BY o;
	GET DIAGNOSTICS c = ROW_COUNT;
	RETURN c;
END
$$;

CREATE FUNCTION plain.read(q text, n int, lease interval)
RETURNS TABLE (id bigint, payload jsonb, deliveries int)
LANGUAGE plpgsql AS $$
BEGIN
	RETURN QUERY
	UPDATE plain.items t
	   SET vt = clock_timestamp() + lease, deliveries = t.deliveries + 1
	 WHERE t.id IN (SELECT s.id FROM plain.items s
					 WHERE s.queue = q AND s.vt <= clock_timestamp()
					 ORDER BY s.id
					 LIMIT n
					 FOR UPDATE SKIP LOCKED)
	RETURNING t.id, t.payload, t.deliveries;
END
$$;

CREATE FUNCTION plain.ack(ids bigint[]) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	c bigint;
BEGIN
	WITH d AS (DELETE FROM plain.items t WHERE t.id = ANY (ids) RETURNING t.*)
	INSERT INTO plain.archive (id, queue, payload, enqueued_at, deliveries)
	SELECT d.id, d.queue, d.payload, d.enqueued_at, d.deliveries FROM d;
	GET DIAGNOSTICS c = ROW_COUNT;
	RETURN c;
END
$$;

-- Something for the long transaction to read.
CREATE TABLE plain.other (a int);
INSERT INTO plain.other VALUES (1);

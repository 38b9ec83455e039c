-- The seal chain: audit.seal() seals what committed, audit.verify() finds
-- the trail intact or names what changed, digests prove that the chain
-- extends an older head.  The hashes are what doc/audit.md says they are:
-- recomputed here in plain SQL.  The scheduler of the test server seals
-- too, so nothing below depends on which of them sealed an entry.
CREATE EXTENSION pg_opsdata;
CREATE ROLE seal_auditor IN ROLE opsdata_auditor;
CREATE ROLE seal_admin IN ROLE opsdata_admin;
SET pg_opsdata.audit = 'write, ddl';
CREATE TABLE accounts (id int PRIMARY KEY, owner text, balance numeric);
INSERT INTO accounts VALUES (1, 'ann', 100), (2, 'bob', 50);
UPDATE accounts SET balance = balance - 10 WHERE id = 1;
DELETE FROM accounts WHERE id = 2;
RESET pg_opsdata.audit;
-- An entry with every column set, in forms the sealer writes itself: an
-- IPv6 network, arrays with a NULL element, text beyond ASCII.
INSERT INTO audit.entries (ts, database, username, current_user_name, application, client_addr,
	backend_pid, xid, class, command, objects, privileges, rows, duration, outcome, sqlstate,
	statement_id, params, constants, actor, request_id, attributes, details)
VALUES (now(), current_database(), 'zoë', 'zoë', 'app', '2001:db8::1/64', 42, '123456789012',
	'write', 'UPDATE', '{public.a,NULL,"x y"}', '{UPDATE,NULL,SELECT}', 3,
	'1 day 2 hours 3.5 seconds', 'error', '23505', NULL, 'p1 = 1', '{1,NULL,"''zoë''"}',
	'renée', 'req-7', '{"tenant": "acme", "é": 1}', '{"amount": 12.50}');
-- An entry whose arrays are stored out of line (the entry of an ALTER
-- EXTENSION names hundreds of objects).
INSERT INTO audit.entries (database, username, current_user_name, backend_pid, class, command,
	objects, outcome, constants)
SELECT current_database(), 'big', 'big', 1, 'ddl', 'ALTER EXTENSION',
	ARRAY(SELECT 'public.' || md5(i::text) FROM generate_series(1, 400) i), 'ok',
	ARRAY(SELECT md5((-i)::text) FROM generate_series(1, 400) i);
SELECT pg_column_size(objects) > 2000 AND pg_column_size(constants) > 2000 AS stored_out_of_line
  FROM audit.entries WHERE username = 'big';
-- An application event, with the end user the application declared.
SET pg_opsdata.audit_actor = 'alice@example.com';
SELECT audit.log_event('invoice.approve', 'invoice:9', details => '{"amount": 120}');
RESET pg_opsdata.audit_actor;
SELECT audit.flush() >= 0 AS flushed, audit.seal() >= 0 AS sealed;
-- Every entry is in exactly one seal.
SELECT count(*) > 0 AS some_entries,
	   count(*) = count(*) FILTER (WHERE (SELECT count(*) FROM audit.seals s
										   WHERE s.kind = 'entries' AND s.entry_ids @> e.entry_id) = 1)
		   AS each_in_one_seal
  FROM audit.entries e;
SELECT status, entry_id, seal_id, seals > 0 AS some_seals FROM audit.verify();
-- A range of seals that starts after the first one.
SET pg_opsdata.audit = 'write';
INSERT INTO accounts VALUES (3, 'cy', 10);
RESET pg_opsdata.audit;
SELECT audit.flush() >= 0 AS flushed, audit.seal() >= 0 AS sealed;
SELECT status, seals >= 1 AS some_seals
  FROM audit.verify((SELECT sealed_at FROM audit.seals ORDER BY seal_id DESC LIMIT 1), NULL);
-- A range with no seal.
SELECT status, detail FROM audit.verify('2000-01-01', '2000-01-02');

-- Entries received from another server by logical replication keep its
-- server_id and its numbering: one inside a sealed window, one far above
-- every id of this server.  They are not sealed here, this server's later
-- entries still are, and the chain verifies.  The database subscribes (a
-- subscription that never connects stands for one).
CREATE SUBSCRIPTION seal_received CONNECTION 'dbname=elsewhere' PUBLICATION opsdata_pub
	WITH (connect = false, slot_name = NONE);
INSERT INTO audit.entries (entry_id, ts, database, username, current_user_name, backend_pid,
	class, command, outcome, server_id)
VALUES ((SELECT min(entry_id) FROM audit.entries), now(), 'elsewhere', 'remote', 'remote', 1,
		'write', 'INSERT', 'ok', 42),
	   (9000000000000000000, now(), 'elsewhere', 'remote', 'remote', 1, 'write', 'INSERT', 'ok', 42);
SELECT audit.seal() >= 0 AS sealed;
SET pg_opsdata.audit = 'write';
INSERT INTO accounts VALUES (4, 'dee', 5);
RESET pg_opsdata.audit;
SELECT audit.flush() >= 0 AS flushed, audit.seal() >= 0 AS sealed;
SELECT count(*) FILTER (WHERE e.server_id = 42) AS received_sealed,
	   count(*) FILTER (WHERE e.server_id = audit.server_id()) = (SELECT count(*) FROM audit.entries
																   WHERE server_id = audit.server_id())
		   AS every_own_entry_sealed
  FROM audit.entries e
 WHERE EXISTS (SELECT FROM audit.seals s WHERE s.kind = 'entries' AND s.entry_ids @> e.entry_id
				  AND s.server_id = e.server_id AND e.ts >= s.ts_from AND e.ts < s.ts_to);
SELECT bool_and(server_id = audit.server_id()) AS seals_of_this_server FROM audit.seals WHERE kind = 'entries';
SELECT status, entry_id FROM audit.verify();
-- Without a subscription, an entry of a server that no seal covers, inside
-- a window of this server's seals, was not received: it is reported (the
-- one far above every window is in none).
BEGIN;
DROP SUBSCRIPTION seal_received;
SELECT v.status, v.entry_id = (SELECT min(entry_id) FROM audit.entries) AS that_entry,
	   v.detail LIKE '%server_id 42,%' AS names_the_server
  FROM audit.verify() v;
ROLLBACK;

-- The chain: ids without gaps, each seal holding its predecessor's hash,
-- windows of entry ids one after the other from the lowest bigint.
SELECT bool_and(s.seal_id = p.seal_id + 1 AND s.prev_hash = p.hash) AS chained
  FROM audit.seals s JOIN audit.seals p ON p.seal_id = (SELECT max(seal_id) FROM audit.seals q WHERE q.seal_id < s.seal_id);
SELECT prev_hash = '\x0000000000000000000000000000000000000000000000000000000000000000' AS starts_at_zero,
	   first_entry_id = -9223372036854775808 AS first_window_from_the_lowest_id
  FROM audit.seals WHERE seal_id = 1;

-- What a seal hashes, recomputed in SQL: each entry as record_send()
-- encodes it (text in UTF-8), followed by the SHA-256 of its statement
-- row; then the seal's own columns.
SET client_encoding = 'UTF8';
SELECT bool_and(x.recomputed = s.entries_hash) AS entries_hash_as_documented
  FROM audit.seals s,
	   LATERAL (SELECT pg_catalog.sha256(pg_catalog.string_agg(
						   pg_catalog.record_send(e)
						   || pg_catalog.sha256(coalesce(pg_catalog.record_send(st), '')),
						   ''::bytea ORDER BY e.entry_id, e.ts)) AS recomputed
				  FROM audit.entries e LEFT JOIN audit.statements st ON st.statement_id = e.statement_id
				 WHERE e.server_id = s.server_id AND e.entry_id BETWEEN s.first_entry_id AND s.last_entry_id
				   AND e.ts >= s.ts_from AND e.ts < s.ts_to) x
 WHERE s.kind = 'entries';
SELECT bool_and(pg_catalog.sha256(pg_catalog.record_send(ROW(s.seal_id, s.kind, s.first_entry_id,
			s.last_entry_id, s.ts_from, s.ts_to, s.entry_count, s.entry_ids, pg_catalog.sha256(s.locators),
			s.entries_hash, s.entry_columns, s.statement_columns, s.total_entries, s.detail, s.prev_hash,
			s.sealed_at, s.server_id))) = s.hash) AS seal_hash_as_documented
  FROM audit.seals s;
SELECT bool_and(length(locators) = 4 * entry_count AND entry_count > 0) AS a_locator_per_entry
  FROM audit.seals WHERE kind = 'entries';
RESET client_encoding;

-- A changed entry, a deleted one and one inserted into a sealed window are
-- named, with the seal that detects them.
CREATE TEMP TABLE victim AS
	SELECT e.entry_id, s.seal_id FROM audit.entries e JOIN audit.seals s ON s.entry_ids @> e.entry_id
	 WHERE e.command = 'UPDATE' AND e.objects @> '{public.accounts}';
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE audit.entries SET rows = 7 WHERE entry_id = (SELECT entry_id FROM victim);
SELECT v.status, v.entry_id = victim.entry_id AS that_entry, v.seal_id = victim.seal_id AS that_seal
  FROM audit.verify() v, victim;
ROLLBACK;
BEGIN;
SET LOCAL session_replication_role = replica;
DELETE FROM audit.entries WHERE entry_id = (SELECT entry_id FROM victim);
SELECT v.status, v.entry_id = victim.entry_id AS that_entry, v.seal_id = victim.seal_id AS that_seal
  FROM audit.verify() v, victim;
ROLLBACK;
BEGIN;
INSERT INTO audit.entries (entry_id, ts, database, username, current_user_name, backend_pid, class, command, outcome)
	SELECT e.entry_id, e.ts + interval '1 microsecond', e.database, 'mallory', 'mallory', 1, 'write', 'DELETE', 'ok'
	  FROM audit.entries e, victim WHERE e.entry_id = victim.entry_id;
SELECT v.status, v.entry_id = victim.entry_id AS that_entry, v.seal_id = victim.seal_id AS that_seal
  FROM audit.verify() v, victim;
ROLLBACK;
-- A change of a constant of the entry, and of the shape it refers to (the
-- statement it stands for is rebuilt from both).
SELECT s.statement_text, e.constants FROM audit.entries e JOIN audit.statements s USING (statement_id)
 WHERE e.entry_id = (SELECT entry_id FROM victim);
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE audit.entries SET constants[1] = '1000' WHERE entry_id = (SELECT entry_id FROM victim);
SELECT v.status, v.entry_id = victim.entry_id AS that_entry, v.seal_id = victim.seal_id AS that_seal
  FROM audit.verify() v, victim;
ROLLBACK;
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE audit.statements SET statement_text = replace(statement_text, '-', '+')
 WHERE statement_id = (SELECT statement_id FROM audit.entries WHERE entry_id = (SELECT entry_id FROM victim));
SELECT v.status, v.entry_id = victim.entry_id AS that_entry, v.seal_id = victim.seal_id AS that_seal
  FROM audit.verify() v, victim;
ROLLBACK;
-- A change of the details of an application event, and of the actor it
-- was recorded for.
CREATE TEMP TABLE app_event AS
	SELECT e.entry_id, s.seal_id FROM audit.entries e JOIN audit.seals s ON s.entry_ids @> e.entry_id
	 WHERE e.class = 'app' AND e.command = 'invoice.approve';
SELECT e.actor, e.objects, e.details FROM audit.entries e, app_event a WHERE e.entry_id = a.entry_id;
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE audit.entries SET details = '{"amount": 12}' WHERE entry_id = (SELECT entry_id FROM app_event);
SELECT v.status, v.entry_id = a.entry_id AS that_entry, v.seal_id = a.seal_id AS that_seal
  FROM audit.verify() v, app_event a;
ROLLBACK;
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE audit.entries SET actor = 'bob@example.com' WHERE entry_id = (SELECT entry_id FROM app_event);
SELECT v.status, v.entry_id = a.entry_id AS that_entry, v.seal_id = a.seal_id AS that_seal
  FROM audit.verify() v, app_event a;
ROLLBACK;
-- A seal changed without its hash, and one re-hashed.
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE audit.seals SET sealed_at = sealed_at + interval '1 second' WHERE seal_id = 1;
SELECT status, seal_id FROM audit.verify();
ROLLBACK;
SELECT status, entry_id, seal_id FROM audit.verify();

-- Digests.
SELECT pg_catalog.jsonb_object_keys(audit.digest()) AS digest_key ORDER BY 1;
SELECT (audit.digest() ->> 'hash') = (SELECT pg_catalog.encode(hash, 'hex') FROM audit.seals ORDER BY seal_id DESC LIMIT 1)
	AS digest_is_the_head;
SELECT status FROM audit.verify_digest(audit.digest());
SELECT status FROM audit.verify_digest(pg_catalog.jsonb_build_object('seal_id', 1, 'hash',
	(SELECT pg_catalog.encode(hash, 'hex') FROM audit.seals WHERE seal_id = 1)));
SELECT status, seal_id FROM audit.verify_digest(pg_catalog.jsonb_build_object('seal_id', 1, 'hash', pg_catalog.repeat('ab', 32)));
SELECT status FROM audit.verify_digest(pg_catalog.jsonb_build_object('seal_id', 1000000, 'hash', pg_catalog.repeat('ab', 32)));
SELECT status FROM audit.verify_digest('{"seal_id": 0, "hash": "0000000000000000000000000000000000000000000000000000000000000000"}');
SELECT * FROM audit.verify_digest('{"seal_id": -1, "hash": "00"}');
SELECT * FROM audit.verify_digest('{"seal_id": 1, "hash": "zz00000000000000000000000000000000000000000000000000000000000000"}');
SELECT * FROM audit.verify_digest('"nothing"');

-- An auditor verifies and keeps digests, and can change nothing; an
-- administrator may seal.
SET ROLE seal_auditor;
SELECT status FROM audit.verify();
SELECT audit.digest() ? 'hash' AS auditor_gets_a_digest;
SELECT audit.seal();
DELETE FROM audit.seals;
RESET ROLE;
SET ROLE seal_admin;
SELECT audit.seal() >= 0 AS admin_seals;
RESET ROLE;

-- audit.seal() must see what commits while it waits: READ COMMITTED only.
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT audit.seal();
ROLLBACK;

-- Health has a row for the chain.
SELECT component, status FROM opsdata.health() WHERE component = 'audit seals';

DROP SUBSCRIPTION seal_received;
DROP TABLE accounts;
DROP ROLE seal_auditor, seal_admin;
DROP EXTENSION pg_opsdata;

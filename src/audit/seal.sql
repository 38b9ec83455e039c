-- Audit, seal chain: audit.seals, the sealing function, verification and
-- digests (src/audit/seal.c, verify.c; doc/audit.md says how the hashes
-- are computed).
--
-- The database's scheduler seals new entries every
-- pg_opsdata.audit_seal_interval; audit.seal() seals in the caller's
-- transaction.  Only the extension writes audit.seals, and its rows are
-- never changed: the guard of every table of the extension (finish.sql)
-- refuses writes to all but the owner and superusers.

CREATE TABLE audit.seals (
	seal_id				bigint PRIMARY KEY,
	kind				text NOT NULL CHECK (kind IN ('entries', 'retention')),
	first_entry_id		bigint,
	last_entry_id		bigint,
	ts_from				timestamptz NOT NULL,
	ts_to				timestamptz NOT NULL,
	entry_count			bigint NOT NULL CHECK (entry_count >= 0),
	entry_ids			int8multirange,
	locators			bytea,
	entries_hash		bytea,
	entry_columns		smallint,
	statement_columns	smallint,
	total_entries		bigint NOT NULL,
	detail				text,
	prev_hash			bytea NOT NULL,
	sealed_at			timestamptz NOT NULL,
	hash				bytea NOT NULL,
	server_id			bigint,
	CHECK (kind = 'retention' OR (last_entry_id >= first_entry_id AND entry_ids IS NOT NULL
								  AND locators IS NOT NULL AND entries_hash IS NOT NULL
								  AND server_id IS NOT NULL))
);

-- Locators are random bytes: never worth trying to compress.
ALTER TABLE audit.seals ALTER COLUMN locators SET STORAGE EXTERNAL;

-- audit.verify() picks seals by sealed_at; retention sums the entries of
-- the seals of a partition's range.
CREATE INDEX seals_sealed_at_idx ON audit.seals (sealed_at);
CREATE INDEX seals_ts_from_idx ON audit.seals (ts_from);

COMMENT ON TABLE audit.seals IS 'Hash chain over the audit trail: each seal covers the entries this server wrote in a window of ids and one bucket of time, or records a partition removed by retention, and holds the hash of the seal before it';
COMMENT ON COLUMN audit.seals.seal_id IS 'Position in the chain: 1, 2, 3... without gaps';
COMMENT ON COLUMN audit.seals.kind IS 'entries: seals entries; retention: records that retention removed the entries of a range of time';
COMMENT ON COLUMN audit.seals.first_entry_id IS 'First entry id of the window of its sealing round (entries seals)';
COMMENT ON COLUMN audit.seals.last_entry_id IS 'Last entry id of the window of its sealing round (entries seals)';
COMMENT ON COLUMN audit.seals.ts_from IS 'Start of the bucket of ts its entries fall in (entries), or of the removed partition (retention)';
COMMENT ON COLUMN audit.seals.ts_to IS 'End (excluded) of the bucket, or of the removed partition';
COMMENT ON COLUMN audit.seals.entry_count IS 'Entries sealed (entries), or entries sealed earlier that retention removed (retention)';
COMMENT ON COLUMN audit.seals.entry_ids IS 'Ids of the entries sealed';
COMMENT ON COLUMN audit.seals.locators IS 'CRC-32C of each entry sealed (4 bytes each, in entry order): tell which entry differs';
COMMENT ON COLUMN audit.seals.entries_hash IS 'SHA-256 of the entries sealed, each encoded and followed by the hash of its statement, in (entry_id, ts) order';
COMMENT ON COLUMN audit.seals.entry_columns IS 'Columns of audit.entries the seal covers (the first ones, in table order)';
COMMENT ON COLUMN audit.seals.statement_columns IS 'Columns of audit.statements the seal covers';
COMMENT ON COLUMN audit.seals.total_entries IS 'Entries sealed by the chain up to and including this seal';
COMMENT ON COLUMN audit.seals.detail IS 'For a retention seal: the partition removed';
COMMENT ON COLUMN audit.seals.prev_hash IS 'Hash of the seal before (zeros for seal 1)';
COMMENT ON COLUMN audit.seals.sealed_at IS 'When the seal was made';
COMMENT ON COLUMN audit.seals.hash IS 'SHA-256 of the seal''s other columns, locators by their SHA-256';
COMMENT ON COLUMN audit.seals.server_id IS 'The server whose entries the seal covers (audit.entries.server_id): the one that sealed them; NULL for a retention seal';

SELECT pg_catalog.pg_extension_config_dump('audit.seals', '');

CREATE FUNCTION audit.seal()
RETURNS bigint
LANGUAGE c VOLATILE STRICT
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'audit_seal';

COMMENT ON FUNCTION audit.seal() IS 'Seal now, in this transaction, every audit entry committed when called (after waiting for the transactions writing entries then); returns how many entries it sealed';

CREATE FUNCTION audit.verify(since timestamptz DEFAULT NULL, until timestamptz DEFAULT NULL,
	OUT status text, OUT entry_id bigint, OUT seal_id bigint, OUT detail text,
	OUT seals bigint, OUT entries bigint)
RETURNS SETOF record
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'audit_verify';

COMMENT ON FUNCTION audit.verify(timestamptz, timestamptz) IS 'Check the seals made from since until until (NULL: no bound) and the entries they cover: intact, or the first entry altered, deleted or inserted after sealing (or seal altered, chain broken) with the seal that detects it';

CREATE FUNCTION audit.digest()
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT pg_catalog.jsonb_build_object(
		'database', pg_catalog.current_database(),
		'seal_id', coalesce(s.seal_id, 0),
		'hash', pg_catalog.encode(coalesce(s.hash, pg_catalog.decode(pg_catalog.repeat('00', 32), 'hex')), 'hex'),
		'sealed_at', s.sealed_at,
		'entries', coalesce(s.total_entries, 0))
	  FROM (SELECT 1) one
	  LEFT JOIN LATERAL (SELECT * FROM audit.seals ORDER BY seal_id DESC LIMIT 1) s ON true
$$;

COMMENT ON FUNCTION audit.digest() IS 'The head of the seal chain (seal_id, hash, sealed_at, entries sealed) as JSON, to keep outside the database';

CREATE FUNCTION audit.verify_digest(digest jsonb,
	OUT status text, OUT seal_id bigint, OUT detail text)
RETURNS SETOF record
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'audit_verify_digest';

COMMENT ON FUNCTION audit.verify_digest(jsonb) IS 'Check that the seal chain extends a digest taken earlier by audit.digest(): extends, rewritten (history was rebuilt since) or broken';

CREATE FUNCTION audit._health_seals(OUT component text, OUT status text, OUT detail text)
RETURNS SETOF record
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'audit_seal_health';

COMMENT ON FUNCTION audit._health_seals() IS 'Internal: the seal chain row of opsdata.health()';

GRANT SELECT ON audit.seals TO opsdata_auditor;
GRANT EXECUTE ON FUNCTION audit.verify(timestamptz, timestamptz), audit.digest(),
	audit.verify_digest(jsonb) TO opsdata_auditor;
GRANT EXECUTE ON FUNCTION audit.seal() TO opsdata_admin;

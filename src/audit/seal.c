/*-------------------------------------------------------------------------
 *
 * seal.c
 *		Sealing audit entries into a hash chain: the scheduler service,
 *		audit.seal(), and the seals that record retention.
 *
 * A seal covers the entries of a window of ids whose timestamps fall in
 * one bucket (a partition's span of ts); each seal holds the hash of the
 * one before it (seal_encode.c says what is hashed).  Windows follow one
 * another without gap or overlap: a sealing round covers the ids from the
 * end of the last window to a horizon, and writes one seal per bucket its
 * entries fall in (usually one; two around midnight).  A round that finds
 * no entry writes nothing, and the next one covers its ids again.
 *
 * The horizon.  Entry ids are taken before the inserting transaction
 * commits, and transactions commit out of order, so an entry may commit
 * with an id below entries already committed; it must never commit below a
 * sealed window.  The invariant every writer of audit.entries keeps:
 *
 *		an entry id is taken by the transaction that inserts the entry,
 *		while it holds a lock on audit.entries that conflicts with SHARE
 *		(the ROW EXCLUSIVE lock of any INSERT; held until it ends), from an
 *		allocator whose ids grow in the order they are taken.
 *
 * writer.c takes its lock on audit.entries before it takes ids, as does an
 * INSERT using the column default; a counter in shared memory that grows
 * under a lock or an atomic operation, and a sequence without CACHE, hand
 * out growing ids.  Entries held during a restore take their ids when they
 * are written into audit.entries, not before.
 *
 * Servers.  Only this server's entries are sealed here, those whose
 * server_id is audit.server_id(), and each seal records that server_id:
 * entries received by logical replication from other servers keep their
 * server's id and numbering, arrive in any order, and are that server's
 * chain's business.  Everything below (ids, horizon, windows) is about
 * this server's entries; verification reads a seal's server's entries.
 *
 * A horizon is then found without waiting and without touching the
 * writers' path: read M, the highest entry_id of this server's rows present
 * in audit.entries, committed, in progress or dead (the rightmost key of each
 * partition's primary key; any row that exists will do: its id was taken
 * before the read, so every smaller id was taken before the read too, by
 * a transaction that held its lock then); after that read, list the
 * transactions holding such a lock on
 * audit.entries (GetLockConflicts(), as CREATE INDEX CONCURRENTLY does; a
 * prepared transaction keeps its locks and is listed).  Once every one of
 * them has ended, no entry with an id up to M can commit any more: M is a
 * horizon.  The service checks without waiting, at its next call; a long
 * transaction that inserts entries delays sealing until it ends, while a
 * long transaction that has inserted none does not.  audit.seal() waits.
 *
 * Locking.  Appending to the chain takes SHARE ROW EXCLUSIVE on
 * audit.seals (it conflicts with itself, not with readers) before reading
 * the chain's head, so the service, audit.seal() and retention append one
 * at a time; the lock is taken before any read of audit.entries in the
 * transaction, so that retention, which takes it before dropping a
 * partition, never waits for a sealer that waits for it.  No lock is taken
 * in an audited session's path.
 *
 * Retention.  Before partition maintenance drops (or archives) a partition
 * of audit.entries, partition_retention_hook appends a retention seal
 * naming the partition's range of ts, in the same transaction as the drop.
 * audit.verify() accepts the absence of the entries of seals made before
 * it whose bucket lies in that range.
 *
 * The service runs in the database's scheduler (src/worker/worker.h), and
 * seals at most once per pg_opsdata.audit_seal_interval (a candidate
 * horizon waiting for its writers is polled sooner only until it seals): one
 * short transaction to advance the horizon, then rounds of at most
 * SEAL_BLOCK_ENTRIES entries, one transaction each, for at most
 * SEAL_RUN_BUDGET_MS before it lets the scheduler's other services run.
 * A round killed at any point leaves nothing (its transaction aborts); the
 * next one starts from the chain's head again.  While a dump is being
 * restored into the database it does nothing (the dump brings its own
 * seals).
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/seal.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "partitioning/partdefs.h"
#include "partitioning/partdesc.h"
#include "pgstat.h"
#include "port/pg_bswap.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "audit/audit.h"
#include "audit/seal.h"
#include "audit/seal_scan.h"
#include "core/opsdata.h"
#include "partition/retention.h"
#include "worker/worker_int.h"

PG_FUNCTION_INFO_V1(audit_seal);
PG_FUNCTION_INFO_V1(audit_seal_health);

/* Entries sealed per transaction, at most. */
#define SEAL_BLOCK_ENTRIES 20000
/* How long one call of the service seals before it returns. */
#define SEAL_RUN_BUDGET_MS 200
/* While a horizon waits for transactions, look again this often. */
#define SEAL_POLL_MS 100
/* While a dump is being restored, look again this often. */
#define SEAL_RESTORE_POLL_MS 1000
/* Health warns when entries wait longer than this for a seal. */
#define SEAL_HEALTH_LATE_MS Max(60 * 1000, 60 * audit_seal_interval_ms)

int audit_seal_interval_ms = 1000;

/* The service's horizon, and the candidate waiting for transactions. */
static bool seal_have_horizon = false;
static int64 seal_horizon;
static int64 seal_sealed_upto; /* horizon last sealed up to */
static bool seal_have_sealed = false;
static TimestampTz seal_sealed_at; /* when the service last sealed entries */
static bool seal_have_candidate = false;
static int64 seal_candidate;
static VirtualTransactionId *seal_lockers = NULL;
static int seal_nlockers = 0;
static Oid seal_entries_relid = InvalidOid; /* what the horizon is about */
static SealScan *seal_buffers = NULL;		/* the service's, across rounds */

static SPIPlanPtr seal_max_plan = NULL;
static SPIPlanPtr seal_min_plan = NULL;
static SPIPlanPtr seal_head_plan = NULL;
static SPIPlanPtr seal_window_plan = NULL;
static SPIPlanPtr seal_insert_plan = NULL;

/* The entries of a round that fall in one bucket. */
typedef struct SealGroup
{
	TimestampTz from;
	TimestampTz to;
	int count;
	int index; /* before sorting */
} SealGroup;

/* The head of the chain. */
typedef struct SealHead
{
	int64 seal_id; /* 0: no seal yet */
	uint8 hash[SEAL_HASH_LEN];
	int64 total_entries;
	bool has_window;
	int64 last_entry_id; /* of the last entries seal */
} SealHead;

/*
 * Define pg_opsdata.audit_seal_interval; every process.
 */
void
audit_seal_define_gucs(void)
{
	DefineCustomIntVariable(
		"pg_opsdata.audit_seal_interval",
		"How often the database's scheduler seals new audit entries.",
		"0 turns the sealing service off; audit.seal() still seals.",
		&audit_seal_interval_ms, 1000, 0, 3600 * 1000, PGC_SIGHUP, GUC_UNIT_MS,
		NULL, NULL, NULL);
}

/* An audit relation's OID, or InvalidOid. */
static Oid
seal_relid(const char *relname)
{
	Oid nsp = get_namespace_oid("audit", true);

	return OidIsValid(nsp) ? get_relname_relid(relname, nsp) : InvalidOid;
}

/*
 * Whether audit.seals is the table this library writes (an installation
 * not yet updated from 0.1 has an older one).
 */
static bool
seal_schema_ready(void)
{
	Oid seals = seal_relid("seals");

	return OidIsValid(seals) && OidIsValid(seal_relid("entries")) &&
		   get_attnum(seals, "entry_ids") != InvalidAttrNumber;
}

/* A plan kept for the session, generic: made once, never planned again. */
static SPIPlanPtr
seal_prepare(const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr plan =
		SPI_prepare_cursor(sql, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);

	if (plan == NULL)
		opsdata_spi_failed(SPI_result, "prepare a statement of the sealing");
	SPI_keepplan(plan);
	return plan;
}

/*
 * The highest entry_id of this server's entries in the primary key index
 * of rel, whatever the state of its row (SnapshotAny: in progress,
 * committed or dead); false when there is none.  *usable is cleared when
 * rel has no such index.
 */
static bool
seal_max_in_index(Relation rel, int64 *max, bool *usable)
{
	Oid pk = RelationGetPrimaryKeyIndex(rel);
	AttrNumber server_att =
		get_attnum(RelationGetRelid(rel), SEAL_SERVER_ID_COLUMN);
	int64 server = audit_seal_local_server();
	int server_key = 0; /* its position in the index, from 1 */
	Relation index;
	IndexScanDesc scan;
	bool found = false;
	int k;

	if (!OidIsValid(pk))
	{
		*usable = false;
		return false;
	}
	index = index_open(pk, AccessShareLock);
	if (index->rd_index->indnkeyatts < 1 ||
		index->rd_index->indkey.values[0] !=
			get_attnum(RelationGetRelid(rel), SEAL_ENTRY_ID_COLUMN) ||
		TupleDescAttr(RelationGetDescr(index), 0)->atttypid != INT8OID)
	{
		index_close(index, AccessShareLock);
		*usable = false;
		return false;
	}
	for (k = 0; k < index->rd_index->indnkeyatts; k++)
	{
		if (server_att != InvalidAttrNumber &&
			index->rd_index->indkey.values[k] == server_att &&
			TupleDescAttr(RelationGetDescr(index), k)->atttypid == INT8OID)
			server_key = k + 1;
	}
	if (server_att != InvalidAttrNumber && server_key == 0)
	{
		index_close(index, AccessShareLock);
		*usable = false;
		return false;
	}
	scan = index_beginscan(rel, index, SnapshotAny, 0, 0);
	scan->xs_want_itup = true;
	index_rescan(scan, NULL, 0, NULL, 0);
	while (!found && index_getnext_tid(scan, BackwardScanDirection) != NULL)
	{
		bool isnull;
		Datum d;

		CHECK_FOR_INTERRUPTS();
		/* Entries received from other servers number on their own. */
		if (server_key > 0)
		{
			d = index_getattr(scan->xs_itup, server_key, scan->xs_itupdesc,
							  &isnull);
			if (isnull || DatumGetInt64(d) != server)
				continue;
		}
		d = index_getattr(scan->xs_itup, 1, scan->xs_itupdesc, &isnull);
		if (!isnull)
		{
			*max = DatumGetInt64(d);
			found = true;
		}
	}
	index_endscan(scan);
	index_close(index, AccessShareLock);
	return found;
}

/*
 * The highest entry_id of any row present in audit.entries, committed or
 * not (its id was taken before this read, which is all the horizon needs),
 * from the rightmost key of each partition's primary key: no heap page is
 * read, however many recent rows are still in progress.  Falls back on
 * max() when a partition lacks that key.  False when there is no entry.
 * Connected to SPI.
 */
static bool
seal_max_present(int64 *max)
{
	Relation parent = table_open(seal_relid("entries"), AccessShareLock);
	bool usable = true;
	bool any = false;
	Datum server;

	if (parent->rd_rel->relkind == RELKIND_PARTITIONED_TABLE)
	{
		PartitionDesc pd = RelationGetPartitionDesc(parent, true);
		int i;

		for (i = 0; i < pd->nparts && usable; i++)
		{
			Relation part;
			int64 m;

			if (get_rel_relkind(pd->oids[i]) != RELKIND_RELATION)
			{
				usable = false;
				break;
			}
			part = table_open(pd->oids[i], AccessShareLock);
			if (seal_max_in_index(part, &m, &usable) && (!any || m > *max))
			{
				*max = m;
				any = true;
			}
			table_close(part, AccessShareLock);
		}
	}
	else if (seal_max_in_index(parent, max, &usable))
		any = true;
	table_close(parent, AccessShareLock);
	if (usable)
		return any;

	if (seal_max_plan == NULL)
	{
		Oid argtypes[1] = {INT8OID};

		seal_max_plan = seal_prepare(
			"SELECT pg_catalog.max(entry_id) FROM audit.entries"
			" WHERE " SEAL_SERVER_ID_COLUMN " OPERATOR(pg_catalog.=) $1",
			1, argtypes);
	}
	server = Int64GetDatum(audit_seal_local_server());
	/* An aggregate: one row. */
	opsdata_spi_check(SPI_execute_plan(seal_max_plan, &server, NULL, false, 1),
					  SPI_OK_SELECT, "read the highest audit entry id");
	{
		bool isnull;
		Datum d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
								1, &isnull);

		any = !isnull;
		if (any)
			*max = DatumGetInt64(d);
	}
	SPI_freetuptable(SPI_tuptable);
	return any;
}

/*
 * The transactions other than ours holding a lock on audit.entries that
 * conflicts with SHARE, in an array allocated in cxt.
 */
static VirtualTransactionId *
seal_entry_writers(int *count, MemoryContext cxt)
{
	LOCKTAG tag;
	VirtualTransactionId *found;
	VirtualTransactionId *result;
	int n = 0;
	int i;

	SET_LOCKTAG_RELATION(tag, MyDatabaseId, seal_relid("entries"));
	found = GetLockConflicts(&tag, ShareLock, count);
	result =
		MemoryContextAlloc(cxt, sizeof(VirtualTransactionId) * Max(*count, 1));
	for (i = 0; i < *count; i++)
	{
		if (VirtualTransactionIdIsValid(found[i]))
			result[n++] = found[i];
	}
	*count = n;
	return result;
}

/* Whether every transaction of the list has ended.  In a transaction. */
static bool
seal_writers_done(VirtualTransactionId *vxids, int n)
{
	int i;

	for (i = 0; i < n; i++)
	{
		if (!VirtualXactLock(vxids[i], false))
			return false;
	}
	return true;
}

/*
 * Read the chain's head (after the caller locked audit.seals), with a
 * snapshot of its own.  Connected to SPI.
 */
static void
seal_read_head(SealHead *head)
{
	bool isnull;

	memset(head, 0, sizeof(SealHead));
	if (seal_head_plan == NULL)
		seal_head_plan =
			seal_prepare("SELECT seal_id, hash, total_entries FROM audit.seals"
						 " ORDER BY seal_id DESC LIMIT 1",
						 0, NULL);
	if (seal_window_plan == NULL)
		seal_window_plan =
			seal_prepare("SELECT last_entry_id FROM audit.seals"
						 " WHERE kind OPERATOR(pg_catalog.=) 'entries'"
						 " ORDER BY seal_id DESC LIMIT 1",
						 0, NULL);
	opsdata_spi_check(SPI_execute_plan(seal_head_plan, NULL, NULL, false, 1),
					  SPI_OK_SELECT, "read the head of the audit seal chain");
	if (SPI_processed == 1)
	{
		HeapTuple tup = SPI_tuptable->vals[0];
		TupleDesc desc = SPI_tuptable->tupdesc;
		bytea *h;

		head->seal_id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		h = DatumGetByteaPP(SPI_getbinval(tup, desc, 2, &isnull));
		memcpy(head->hash, VARDATA_ANY(h),
			   Min(VARSIZE_ANY_EXHDR(h), (Size) SEAL_HASH_LEN));
		head->total_entries =
			DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
	}
	SPI_freetuptable(SPI_tuptable);
	opsdata_spi_check(SPI_execute_plan(seal_window_plan, NULL, NULL, false, 1),
					  SPI_OK_SELECT, "read the head of the audit seal chain");
	if (SPI_processed == 1)
	{
		Datum d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
								1, &isnull);

		head->has_window = !isnull;
		if (!isnull)
			head->last_entry_id = DatumGetInt64(d);
	}
	SPI_freetuptable(SPI_tuptable);
}

/*
 * Append a seal to the chain: its id, prev_hash, total and hash are
 * computed here from head, which then becomes this seal.
 */
static void
seal_append(pg_cryptohash_ctx *ctx, SealHead *head, SealRow *row)
{
	Oid argtypes[18] = {INT8OID,		TEXTOID,		   INT8OID,
						INT8OID,		TIMESTAMPTZOID,	   TIMESTAMPTZOID,
						INT8OID,		INT8MULTIRANGEOID, BYTEAOID,
						BYTEAOID,		INT2OID,		   INT2OID,
						INT8OID,		TEXTOID,		   BYTEAOID,
						TIMESTAMPTZOID, BYTEAOID,		   INT8OID};
	Datum values[18];
	char nulls[18];
	bytea *b;
	int i;

	row->seal_id = head->seal_id + 1;
	memcpy(row->prev_hash, head->hash, SEAL_HASH_LEN);
	row->total_entries =
		head->total_entries + (row->retention ? 0 : row->entry_count);
	row->sealed_at = GetCurrentTimestamp();
	audit_seal_row_hash(ctx, row, row->hash);

	if (seal_insert_plan == NULL)
		seal_insert_plan = seal_prepare(
			"INSERT INTO audit.seals (seal_id, kind, first_entry_id,"
			" last_entry_id, ts_from, ts_to, entry_count, entry_ids,"
			" locators, entries_hash, entry_columns, statement_columns,"
			" total_entries, detail, prev_hash, sealed_at, hash, server_id)"
			" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,"
			" $13, $14, $15, $16, $17, $18)",
			18, argtypes);
	for (i = 0; i < 18; i++)
		nulls[i] = ' ';
	values[0] = Int64GetDatum(row->seal_id);
	values[1] = CStringGetTextDatum(row->retention ? "retention" : "entries");
	values[2] = Int64GetDatum(row->first_entry_id);
	values[3] = Int64GetDatum(row->last_entry_id);
	if (!row->has_window)
		nulls[2] = nulls[3] = 'n';
	values[4] = TimestampTzGetDatum(row->ts_from);
	values[5] = TimestampTzGetDatum(row->ts_to);
	values[6] = Int64GetDatum(row->entry_count);
	values[7] = row->entry_ids;
	if (row->entry_ids == (Datum) 0)
		nulls[7] = 'n';
	values[8] = PointerGetDatum(row->locators);
	if (row->locators == NULL)
		nulls[8] = 'n';
	b = palloc(VARHDRSZ + SEAL_HASH_LEN);
	SET_VARSIZE(b, VARHDRSZ + SEAL_HASH_LEN);
	memcpy(VARDATA(b), row->entries_hash, SEAL_HASH_LEN);
	values[9] = PointerGetDatum(b);
	if (!row->has_entries_hash)
		nulls[9] = 'n';
	values[10] = Int16GetDatum(row->entry_columns);
	values[11] = Int16GetDatum(row->statement_columns);
	if (!row->has_columns)
		nulls[10] = nulls[11] = 'n';
	values[12] = Int64GetDatum(row->total_entries);
	values[13] = row->detail ? CStringGetTextDatum(row->detail) : (Datum) 0;
	if (row->detail == NULL)
		nulls[13] = 'n';
	b = palloc(VARHDRSZ + SEAL_HASH_LEN);
	SET_VARSIZE(b, VARHDRSZ + SEAL_HASH_LEN);
	memcpy(VARDATA(b), row->prev_hash, SEAL_HASH_LEN);
	values[14] = PointerGetDatum(b);
	values[15] = TimestampTzGetDatum(row->sealed_at);
	b = palloc(VARHDRSZ + SEAL_HASH_LEN);
	SET_VARSIZE(b, VARHDRSZ + SEAL_HASH_LEN);
	memcpy(VARDATA(b), row->hash, SEAL_HASH_LEN);
	values[16] = PointerGetDatum(b);
	values[17] = Int64GetDatum(row->server_id);
	if (!row->has_server)
		nulls[17] = 'n';
	opsdata_spi_check(
		SPI_execute_plan(seal_insert_plan, values, nulls, false, 0),
		SPI_OK_INSERT, "insert into audit.seals");

	head->seal_id = row->seal_id;
	memcpy(head->hash, row->hash, SEAL_HASH_LEN);
	head->total_entries = row->total_entries;
	if (row->has_window)
	{
		head->has_window = true;
		head->last_entry_id = row->last_entry_id;
	}
}

static int
seal_group_cmp(const void *a, const void *b)
{
	const SealGroup *ga = (const SealGroup *) a;
	const SealGroup *gb = (const SealGroup *) b;

	if (ga->from != gb->from)
		return ga->from < gb->from ? -1 : 1;
	return 0;
}

/*
 * The lowest committed entry id of this server in [first, last], read with
 * a snapshot of its own; false when there is none.  Connected to SPI.
 */
static bool
seal_min_committed(int64 first, int64 last, int64 *min)
{
	Datum values[3];
	bool isnull;
	Datum d;

	if (seal_min_plan == NULL)
	{
		Oid argtypes[3] = {INT8OID, INT8OID, INT8OID};

		seal_min_plan = seal_prepare(
			"SELECT pg_catalog.min(entry_id) FROM audit.entries"
			" WHERE entry_id OPERATOR(pg_catalog.>=) $1"
			" AND entry_id OPERATOR(pg_catalog.<=) $2"
			" AND " SEAL_SERVER_ID_COLUMN " OPERATOR(pg_catalog.=) $3",
			3, argtypes);
	}
	values[0] = Int64GetDatum(first);
	values[1] = Int64GetDatum(last);
	values[2] = Int64GetDatum(audit_seal_local_server());
	/* An aggregate: one row. */
	opsdata_spi_check(SPI_execute_plan(seal_min_plan, values, NULL, false, 1),
					  SPI_OK_SELECT, "read the lowest audit entry id");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
					  &isnull);
	if (!isnull)
		*min = DatumGetInt64(d);
	SPI_freetuptable(SPI_tuptable);
	return !isnull;
}

/*
 * One round: seal the committed entries above the chain's last window up
 * to horizon, those of at most max_entries ids from the lowest, one seal
 * per bucket.  *more is set when entries below the horizon remain.  Returns
 * the entries sealed.  In a transaction at READ COMMITTED, connected to
 * SPI, inside the caller's encoding switch; scan holds the buffers.
 */
pg_noinline static int64
seal_round(SealScan *scan, int64 horizon, int max_entries, bool *more)
{
	MemoryContext cxt;
	MemoryContext old;
	SealHead head;
	SealGroup *groups;
	int *order;
	int ngroups = 0;
	int maxgroups = 4;
	pg_cryptohash_ctx *ctx;
	int64 first;
	int64 last;
	int64 base = 0;
	int64 span;
	int statement_columns;
	int64 width;
	int n;
	int i;
	int g;

	*more = false;
	LockRelationOid(seal_relid("seals"), ShareRowExclusiveLock);
	seal_read_head(&head);
	first = head.has_window ? head.last_entry_id + 1 : PG_INT64_MIN;
	if (head.has_window && head.last_entry_id >= horizon)
		return 0;

	/*
	 * The window runs from the end of the last one (over ids no entry has,
	 * if any) to max_entries ids past the lowest entry in it.
	 */
	if (!seal_min_committed(first, horizon, &base))
		return 0;
	last = horizon;
	if (!pg_sub_s64_overflow(horizon, base, &span) && span >= max_entries)
	{
		last = base + max_entries - 1;
		*more = true;
	}

	cxt = AllocSetContextCreate(CurrentMemoryContext, "pg_opsdata seal round",
								ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	/* A seal always covers the shapes: never one of no column of them. */
	statement_columns = audit_seal_table_columns("statements");
	if (statement_columns < 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("audit.statements is missing: entries are not sealed "
						"without their statements")));
	audit_seal_scan_reset(scan, statement_columns);
	audit_seal_scan_entries(scan, audit_seal_local_server(), first, last, NULL,
							NULL, (Datum) 0);
	n = scan->nentries;
	if (n == 0)
	{
		MemoryContextSwitchTo(old);
		MemoryContextDelete(cxt);
		return 0;
	}

	ctx = audit_seal_sha256_create();
	audit_seal_scan_finish(scan, ctx);

	width = audit_seal_bucket_width();
	groups = palloc(sizeof(SealGroup) * maxgroups);
	g = 0;
	for (i = 0; i < n; i++)
	{
		SealEntry *e = &scan->entries[i];
		TimestampTz from;
		TimestampTz to;

		/* Usually the bucket of the entry before. */
		if (ngroups > 0 && e->ts >= groups[g].from && e->ts < groups[g].to)
		{
			groups[g].count++;
			e->group = g;
			continue;
		}
		audit_seal_bucket(e->ts, width, &from, &to);
		for (g = 0; g < ngroups; g++)
		{
			if (groups[g].from == from && groups[g].to == to)
				break;
		}
		if (g == ngroups)
		{
			if (ngroups == maxgroups)
			{
				maxgroups *= 2;
				groups = repalloc(groups, sizeof(SealGroup) * maxgroups);
			}
			groups[g].from = from;
			groups[g].to = to;
			groups[g].count = 0;
			ngroups++;
		}
		groups[g].count++;
		e->group = g;
	}
	/* Seals in the order of their buckets. */
	order = palloc(sizeof(int) * ngroups);
	for (g = 0; g < ngroups; g++)
		groups[g].index = g;
	qsort(groups, ngroups, sizeof(SealGroup), seal_group_cmp);
	for (g = 0; g < ngroups; g++)
		order[groups[g].index] = g;

	for (g = 0; g < ngroups; g++)
	{
		SealRow row;
		int64 *ids = palloc(sizeof(int64) * groups[g].count);
		int *members = palloc(sizeof(int) * groups[g].count);
		bytea *locators =
			palloc(VARHDRSZ + SEAL_LOCATOR_LEN * groups[g].count);
		char *p = VARDATA(locators);
		int k = 0;

		for (i = 0; i < n; i++)
		{
			SealEntry *e = &scan->entries[i];
			uint32 loc;

			if (order[e->group] != g)
				continue;
			ids[k] = e->id;
			members[k++] = i;
			loc = pg_hton32(e->locator);
			memcpy(p, &loc, SEAL_LOCATOR_LEN);
			p += SEAL_LOCATOR_LEN;
		}
		SET_VARSIZE(locators, VARHDRSZ + SEAL_LOCATOR_LEN * k);

		memset(&row, 0, sizeof(row));
		row.retention = false;
		row.has_window = true;
		row.first_entry_id = first;
		row.last_entry_id = last;
		row.ts_from = groups[g].from;
		row.ts_to = groups[g].to;
		row.entry_count = k;
		row.entry_ids = audit_seal_id_ranges(ids, k);
		row.locators = locators;
		row.has_entries_hash = true;
		audit_seal_scan_digest(scan, members, k, ctx, row.entries_hash);
		row.has_columns = true;
		row.entry_columns = scan->entry_columns;
		row.statement_columns = statement_columns;
		row.has_server = true;
		row.server_id = audit_seal_local_server();
		seal_append(ctx, &head, &row);
	}
	pg_cryptohash_free(ctx);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	return n;
}

/*
 * Seal up to horizon in rounds of the current transaction, for as long as
 * budget_ms allows (0: no limit).  Returns the entries sealed; *more tells
 * whether entries below the horizon remain.  Connected to SPI.
 */
static int64
seal_upto(SealScan *scan, int64 horizon, long budget_ms, bool *more)
{
	TimestampTz start = GetCurrentTimestamp();
	int64 total = 0;
	int saved = audit_seal_encoding_begin();

	PG_TRY();
	{
		do
		{
			CHECK_FOR_INTERRUPTS();
			total += seal_round(scan, horizon, SEAL_BLOCK_ENTRIES, more);
		} while (*more && (budget_ms <= 0 ||
						   !TimestampDifferenceExceeds(
							   start, GetCurrentTimestamp(), budget_ms)));
	}
	PG_FINALLY();
	{
		audit_seal_encoding_end(saved);
	}
	PG_END_TRY();
	return total;
}

static void
seal_begin_xact(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	/* Each read must see what committed before it, whatever the default. */
	XactIsoLevel = XACT_READ_COMMITTED;
	PushActiveSnapshot(GetTransactionSnapshot());
	opsdata_spi_connect(0);
}

static void
seal_end_xact(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/* Forget the service's horizon and candidate. */
static void
seal_forget(void)
{
	seal_have_candidate = false;
	seal_have_horizon = false;
	seal_have_sealed = false;
	/* The statements too: the extension made anew, a dump restored. */
	if (seal_buffers != NULL)
		audit_seal_scan_forget_statements(seal_buffers);
}

/*
 * Advance the service's horizon: adopt the candidate whose writers have all
 * ended, and take a new candidate.  In a transaction, connected to SPI.
 */
static void
seal_advance_horizon(void)
{
	Oid entries = seal_relid("entries");
	int64 max;

	/* A horizon holds for one audit.entries: not after DROP EXTENSION. */
	if (entries != seal_entries_relid)
	{
		seal_forget();
		seal_entries_relid = entries;
	}
	if (seal_have_candidate && seal_writers_done(seal_lockers, seal_nlockers))
	{
		seal_horizon = seal_candidate;
		seal_have_horizon = true;
		seal_have_candidate = false;
	}
	if (seal_have_candidate || !seal_max_present(&max))
		return;
	if (seal_have_horizon && max <= seal_horizon)
		return;
	if (seal_lockers != NULL)
		pfree(seal_lockers);
	seal_lockers = seal_entry_writers(&seal_nlockers, TopMemoryContext);
	if (seal_nlockers == 0)
	{
		seal_horizon = max;
		seal_have_horizon = true;
	}
	else
	{
		seal_candidate = max;
		seal_have_candidate = true;
	}
}

/* The service's buffers, kept from one round to the next. */
static SealScan *
seal_service_scan(void)
{
	if (seal_buffers == NULL)
	{
		MemoryContext cxt =
			AllocSetContextCreate(TopMemoryContext, "pg_opsdata seal buffers",
								  ALLOCSET_DEFAULT_SIZES);

		seal_buffers = MemoryContextAlloc(cxt, sizeof(SealScan));
		audit_seal_scan_init(seal_buffers, 0, cxt);
	}
	return seal_buffers;
}

/*
 * The scheduler service (src/worker/worker.h): advance the horizon, then
 * seal up to it.  Called outside any transaction; returns when to be
 * called again.
 */
long
audit_seal_service(void)
{
	bool ready;
	bool more = false;

	if (audit_seal_interval_ms <= 0 ||
		worker_restore_in_progress(MyDatabaseId))
	{
		seal_forget();
		return audit_seal_interval_ms <= 0 ? -1 : SEAL_RESTORE_POLL_MS;
	}

	/*
	 * Seal once per interval, not at each poll for a candidate's writers:
	 * under a steady load there is always a candidate, and a round costs
	 * about as much for a hundred entries as for ten.
	 */
	if (seal_have_sealed)
	{
		long since = (long) ((GetCurrentTimestamp() - seal_sealed_at) / 1000);

		if (since >= 0 && since < audit_seal_interval_ms)
			return audit_seal_interval_ms - since;
	}

	seal_begin_xact();
	ready = seal_schema_ready();
	if (ready)
		seal_advance_horizon();
	seal_end_xact();
	if (!ready)
		return audit_seal_interval_ms;

	if (seal_have_horizon &&
		(!seal_have_sealed || seal_sealed_upto != seal_horizon))
	{
		BackendState state = MyBEEntry ? MyBEEntry->st_state : STATE_IDLE;
		char *activity =
			MyBEEntry ? pstrdup(MyBEEntry->st_activity_raw) : pstrdup("");

		/* What the scheduler was doing is shown again afterwards. */
		PG_TRY();
		{
			pgstat_report_activity(
				STATE_RUNNING, "pg_opsdata scheduler: sealing audit entries");
			seal_begin_xact();
			/*
			 * The extension may have been made anew since the horizon was
			 * read: then the horizon and the statement hashes kept are of
			 * another audit.entries, and the next call starts over.
			 */
			if (seal_relid("entries") == seal_entries_relid)
				(void) seal_upto(seal_service_scan(), seal_horizon,
								 SEAL_RUN_BUDGET_MS, &more);
			else
			{
				seal_forget();
				seal_entries_relid = InvalidOid;
				more = true;
			}
			seal_end_xact();
		}
		PG_FINALLY();
		{
			pgstat_report_activity(state, activity);
		}
		PG_END_TRY();
		pfree(activity);
		if (!more)
		{
			seal_sealed_upto = seal_horizon;
			seal_have_sealed = true;
			seal_sealed_at = GetCurrentTimestamp();
		}
	}
	if (more)
		return 0;
	return seal_have_candidate ? Min(SEAL_POLL_MS, audit_seal_interval_ms)
							   : audit_seal_interval_ms;
}

/*
 * audit.seal() returns bigint: seal, in the caller's transaction, every
 * entry committed when it was called, after waiting for the transactions
 * still writing entries then; returns how many entries it sealed.
 */
Datum
audit_seal(PG_FUNCTION_ARGS)
{
	int64 max;
	int64 total = 0;
	VirtualTransactionId *writers;
	int nwriters;
	SealScan scan;
	bool more;
	int i;

	if (RecoveryInProgress())
		ereport(ERROR, (errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
						errmsg("cannot seal audit entries during recovery")));
	if (IsolationUsesXactSnapshot())
		ereport(
			ERROR,
			(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
			 errmsg("audit.seal() must run at isolation level READ COMMITTED"),
			 errdetail("It must see the entries that commit while it runs.")));
	if (!seal_schema_ready())
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						errmsg("audit.seals is not the table of this version "
							   "of pg_opsdata"),
						errhint("Run ALTER EXTENSION pg_opsdata UPDATE.")));

	opsdata_spi_connect(0);
	if (seal_max_present(&max))
	{
		writers = seal_entry_writers(&nwriters, CurrentMemoryContext);
		for (i = 0; i < nwriters; i++)
			(void) VirtualXactLock(writers[i], true);
		audit_seal_scan_init(&scan, 0, CurrentMemoryContext);
		total = seal_upto(&scan, max, 0, &more);
	}
	SPI_finish();
	PG_RETURN_INT64(total);
}

/*
 * The range of ts of a partition of audit.entries, from its bound; false
 * for a default partition or another kind of bound.
 */
static bool
seal_partition_range(Oid relid, TimestampTz *lo, TimestampTz *hi)
{
	HeapTuple tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	PartitionBoundSpec *spec;
	PartitionRangeDatum *l;
	PartitionRangeDatum *u;
	bool isnull;
	Datum d;

	if (!HeapTupleIsValid(tup))
		return false;
	d = SysCacheGetAttr(RELOID, tup, Anum_pg_class_relpartbound, &isnull);
	if (isnull)
	{
		ReleaseSysCache(tup);
		return false;
	}
	spec = (PartitionBoundSpec *) stringToNode(TextDatumGetCString(d));
	ReleaseSysCache(tup);
	if (!IsA(spec, PartitionBoundSpec) || spec->is_default ||
		spec->strategy != PARTITION_STRATEGY_RANGE ||
		list_length(spec->lowerdatums) != 1 ||
		list_length(spec->upperdatums) != 1)
		return false;
	l = linitial_node(PartitionRangeDatum, spec->lowerdatums);
	u = linitial_node(PartitionRangeDatum, spec->upperdatums);
	if (l->kind == PARTITION_RANGE_DATUM_MINVALUE)
		*lo = DT_NOBEGIN;
	else if (l->kind == PARTITION_RANGE_DATUM_VALUE && IsA(l->value, Const) &&
			 castNode(Const, l->value)->consttype == TIMESTAMPTZOID)
		*lo = DatumGetTimestampTz(castNode(Const, l->value)->constvalue);
	else
		return false;
	if (u->kind == PARTITION_RANGE_DATUM_MAXVALUE)
		*hi = DT_NOEND;
	else if (u->kind == PARTITION_RANGE_DATUM_VALUE && IsA(u->value, Const) &&
			 castNode(Const, u->value)->consttype == TIMESTAMPTZOID)
		*hi = DatumGetTimestampTz(castNode(Const, u->value)->constvalue);
	else
		return false;
	return true;
}

/*
 * partition_retention_hook: a partition is about to be removed by
 * retention.  When it is one of audit.entries, append a retention seal for
 * its range in the same transaction.
 */
static void
seal_retention(const char *partition)
{
	Oid entries = seal_relid("entries");
	RangeVar *rv;
	Oid relid;
	TimestampTz lo;
	TimestampTz hi;
	SealHead head;
	SealRow row;
	pg_cryptohash_ctx *ctx;
	Oid argtypes[2] = {TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum values[2];
	bool isnull;
	Datum d;

	if (!OidIsValid(entries) || !seal_schema_ready())
		return;
	rv = makeRangeVarFromNameList(stringToQualifiedNameList(partition));
	relid = RangeVarGetRelid(rv, NoLock, true);
	if (!OidIsValid(relid) || !get_rel_relispartition(relid) ||
		get_partition_parent(relid, true) != entries ||
		!seal_partition_range(relid, &lo, &hi))
		return;

	LockRelationOid(seal_relid("seals"), ShareRowExclusiveLock);
	opsdata_spi_connect(0);
	seal_read_head(&head);
	values[0] = TimestampTzGetDatum(lo);
	values[1] = TimestampTzGetDatum(hi);
	/* An aggregate: one row. */
	opsdata_spi_check(
		SPI_execute_with_args(
			"SELECT pg_catalog.sum(entry_count)::pg_catalog.int8 FROM audit.seals"
			" WHERE kind OPERATOR(pg_catalog.=) 'entries'"
			" AND ts_from OPERATOR(pg_catalog.>=) $1"
			" AND ts_to OPERATOR(pg_catalog.<=) $2",
			2, argtypes, values, NULL, false, 1),
		SPI_OK_SELECT,
		psprintf("count the sealed entries of \"%s\"", partition));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
					  &isnull);

	memset(&row, 0, sizeof(row));
	row.retention = true;
	row.has_window = false;
	row.ts_from = lo;
	row.ts_to = hi;
	row.entry_count = isnull ? 0 : DatumGetInt64(d);
	row.detail = psprintf("%s", partition);
	ctx = audit_seal_sha256_create();
	seal_append(ctx, &head, &row);
	pg_cryptohash_free(ctx);
	SPI_finish();
}

/*
 * Hook the retention seals into partition maintenance; every process,
 * preloaded or not, since maintenance runs without preloading too.
 */
void
audit_seal_init(void)
{
	partition_retention_hook = seal_retention;
}

/*
 * The query of audit._health_seals(), given the CTE u of the entries that
 * await sealing: the head of the chain, and how many entries wait (up to
 * 100,001) with the ts of the first.
 */
#define SEAL_HEALTH_SQL(u)                                                    \
	"WITH h AS (SELECT seal_id, total_entries, sealed_at FROM audit.seals"    \
	" ORDER BY seal_id DESC LIMIT 1),"                                        \
	" w AS (SELECT last_entry_id FROM audit.seals"                            \
	" WHERE kind OPERATOR(pg_catalog.=) 'entries'"                            \
	" ORDER BY seal_id DESC LIMIT 1)," u                                      \
	" SELECT (SELECT seal_id FROM h), (SELECT total_entries FROM h),"         \
	" (SELECT sealed_at FROM h),"                                             \
	" (SELECT pg_catalog.count(*) FROM (SELECT 1 FROM u LIMIT 100001) c),"    \
	" (SELECT u.ts FROM u ORDER BY u.entry_id LIMIT 1)"

/*
 * Lock audit.entries and its partitions for reading, without waiting:
 * health answers even while a session holds a lock on one of them (it
 * then does not count the entries awaiting sealing).  False when one is
 * locked.
 */
static bool
seal_try_lock_entries(void)
{
	Oid entries = seal_relid("entries");
	List *rels;
	ListCell *lc;

	if (!OidIsValid(entries) ||
		!ConditionalLockRelationOid(entries, AccessShareLock))
		return false;
	rels = find_all_inheritors(entries, NoLock, NULL);
	foreach (lc, rels)
	{
		if (lfirst_oid(lc) != entries &&
			!ConditionalLockRelationOid(lfirst_oid(lc), AccessShareLock))
			return false;
	}
	return true;
}

/*
 * audit._health_seals(): how far sealing is, for opsdata.health().
 */
Datum
audit_seal_health(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TimestampTz now = GetCurrentTimestamp();
	StringInfoData detail;
	const char *status = "ok";
	int64 seals = 0;
	int64 sealed = 0;
	int64 waiting = 0;
	TimestampTz last = 0;
	TimestampTz oldest = 0; /* ts of the first entry awaiting sealing */
	bool counted;
	bool isnull;

	InitMaterializedSRF(fcinfo, 0);
	if (!seal_schema_ready())
	{
		opsdata_health_row(
			rsinfo, "audit seals", "warning",
			"audit.seals is not the table of this version of pg_opsdata: run ALTER EXTENSION pg_opsdata UPDATE.");
		return (Datum) 0;
	}
	opsdata_spi_connect(0);
	counted = seal_try_lock_entries();
	/* A SELECT without FROM: one row. */
	opsdata_spi_check(
		SPI_execute(
			counted
				? SEAL_HEALTH_SQL(
					  " u AS NOT MATERIALIZED (SELECT e.entry_id, e.ts"
					  " FROM audit.entries e"
					  " WHERE e.server_id OPERATOR(pg_catalog.=)"
					  " audit.server_id()"
					  " AND e.entry_id OPERATOR(pg_catalog.>=) coalesce("
					  "(SELECT last_entry_id OPERATOR(pg_catalog.+) 1"
					  " FROM w), '-9223372036854775808'::pg_catalog.int8))")
				: SEAL_HEALTH_SQL(
					  " u AS (SELECT 0::pg_catalog.int8 AS entry_id,"
					  " NULL::pg_catalog.timestamptz AS ts WHERE false)"),
			true, 1),
		SPI_OK_SELECT, "read the audit seal chain");
	{
		HeapTuple tup = SPI_tuptable->vals[0];
		TupleDesc desc = SPI_tuptable->tupdesc;
		Datum d;

		d = SPI_getbinval(tup, desc, 1, &isnull);
		seals = isnull ? 0 : DatumGetInt64(d);
		d = SPI_getbinval(tup, desc, 2, &isnull);
		sealed = isnull ? 0 : DatumGetInt64(d);
		d = SPI_getbinval(tup, desc, 3, &isnull);
		last = isnull ? 0 : DatumGetTimestampTz(d);
		waiting = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
		d = SPI_getbinval(tup, desc, 5, &isnull);
		oldest = isnull ? now : DatumGetTimestampTz(d);
	}
	SPI_finish();

	initStringInfo(&detail);
	if (!opsdata_preloaded)
		appendStringInfoString(
			&detail,
			"The sealing service needs pg_opsdata in shared_preload_libraries (audit.seal() seals on demand); ");
	appendStringInfo(&detail,
					 INT64_FORMAT " entries sealed in " INT64_FORMAT " seals",
					 sealed, seals);
	if (last != 0)
	{
		long secs;
		int usecs;

		TimestampDifference(last, now, &secs, &usecs);
		appendStringInfo(&detail, ", the last %ld.%d s ago", secs,
						 usecs / 100000);
	}
	if (counted)
		appendStringInfo(
			&detail, "; %s" INT64_FORMAT " entries await sealing.",
			waiting > 100000 ? "over " : "", Min(waiting, 100000));
	else
		appendStringInfoString(
			&detail,
			"; the entries awaiting sealing were not counted: another session holds a lock on audit.entries or one of its partitions.");
	if (!opsdata_preloaded)
		status = "off";
	else if (audit_seal_interval_ms <= 0)
	{
		status = waiting > 0 ? "warning" : "off";
		appendStringInfoString(
			&detail,
			" The sealing service is off (pg_opsdata.audit_seal_interval = 0).");
	}
	else if (waiting > 0 &&
			 TimestampDifferenceExceeds(oldest, now, SEAL_HEALTH_LATE_MS) &&
			 (last == 0 ||
			  TimestampDifferenceExceeds(last, now, SEAL_HEALTH_LATE_MS)))
	{
		status = "warning";
		appendStringInfoString(
			&detail,
			" Entries wait and no seal was made lately: is the pg_opsdata scheduler of this database running, or does a transaction that wrote audit entries stay open?");
	}
	opsdata_health_row(rsinfo, "audit seals", status, detail.data);
	return (Datum) 0;
}

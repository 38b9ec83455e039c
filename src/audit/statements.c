/*-------------------------------------------------------------------------
 *
 * statements.c
 *		Store each distinct audited statement text once, in audit.statements.
 *
 * The statement_id of a text is derived from a 64-bit hash of it; a
 * backend-local cache remembers which texts are known to be stored.  It is
 * direct-mapped (a text's slot is a function of its hash; a newer text
 * takes the slot over), so a lookup costs one comparison and the cache
 * never has to be rebuilt.  Behind it, a cache in shared memory
 * (textcache.c) holds texts that probes found again.  Each text of a batch
 * is hashed once.  On a miss of both the primary key is probed with a
 * dirty snapshot (waiting for a concurrent inserter of the same id to
 * finish), reusing one index scan for the whole batch; a missing text is
 * inserted with the unique check in "partial" mode, and if a concurrent
 * session inserted the same id meanwhile our tuple is deleted again and
 * the probe repeated, so no session ever fails on a duplicate.  A
 * different text with the same id (a hash collision) moves on to the next
 * id.
 *
 * Most texts of some workloads are new (statements with literals in
 * them), and for those the probe is a wasted descent of a large index.  A
 * filter in shared memory, one bit per hash bucket of statement_id, is set
 * for every id ever inserted; the database's scheduler loads it once after
 * the server starts, from an index-only pass over the primary key.  Once
 * the filter of a database is loaded, an id whose bit is clear cannot be
 * in audit.statements, and its text is inserted without a probe: the new
 * texts of a batch go in with one multi-insert, then their primary key
 * entries.  The
 * filter only ever decides which of two correct paths is taken: a text
 * whose row arrived some other way (a restored dump) is caught by the
 * unique check and handled as a concurrent insertion is, and its bit is
 * set then.  The filter is also asked before the cache: a text whose bit
 * is clear cannot be cached, and the new texts of literal-laden workloads
 * skip the lookup.  Bits are set with atomic OR and never cleared; the
 * readiness flags of databases are guarded by a spinlock.
 *
 * Cache entries made by a transaction that has not committed are
 * "provisional": forgotten if it (or any subtransaction) aborts, made
 * permanent at commit.  The cache also forgets everything when
 * audit.statements is dropped, recreated or truncated (its relfilenode
 * changes).
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/statements.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/lmgr.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "audit/audit.h"
#include "core/opsdata.h"

/* New texts inserted together. */
#define AUDIT_STMT_BATCH 100

/* Slots of the backend-local cache; a power of two. */
#define AUDIT_STMT_CACHE_SLOTS 8192

/* Bits of the shared filter (4 MB), a power of two; databases it tracks. */
#define AUDIT_FILTER_BITS	   (UINT64CONST(1) << 25)
#define AUDIT_FILTER_DATABASES 64
#define AUDIT_FILTER_NAME	   "pg_opsdata audit statement filter"

typedef struct AuditStmtFilter
{
	slock_t mutex;						/* guards dboids */
	Oid dboids[AUDIT_FILTER_DATABASES]; /* databases whose filter is loaded */
	pg_atomic_uint32 bits[FLEXIBLE_ARRAY_MEMBER];
} AuditStmtFilter;

static AuditStmtFilter *audit_filter = NULL;
static bool audit_filter_ready_here = false; /* loaded for MyDatabaseId */

typedef struct AuditStmtKey
{
	uint64 h1;
	uint64 h2;
} AuditStmtKey;

typedef struct AuditStmtSlot
{
	AuditStmtKey key;
	int64 statement_id;
	bool used;
	bool provisional; /* inserted by the current, uncommitted transaction */
} AuditStmtSlot;

struct AuditStmtWriter
{
	EState *estate;
	ResultRelInfo *rri;
	Relation heap;
	Relation pk;
	TupleTableSlot *slot;
	IndexScanDesc scan;		/* opened at the first probe, reused */
	TupleTableSlot **slots; /* new rows for the multi-insert */
	int nslots;				/* slots made */
	SnapshotData dirty;
	int id_att;
	int text_att;
	int seen_att;
	int placeholders_att; /* <= 0 in a 0.1 schema: shapes are not stored */
};

static AuditStmtSlot *audit_stmt_cache = NULL;

/* Keys of the provisional entries, to settle them at transaction end. */
static AuditStmtKey *audit_stmt_prov_keys = NULL;
static int audit_stmt_provisional = 0;
static int audit_stmt_prov_max = 0;

/* The audit.statements storage the cache describes. */
static Oid audit_stmt_cache_relid = InvalidOid;
static Oid audit_stmt_cache_relfilenode = InvalidOid;
static uint64 audit_stmt_cache_generation = 0;

static inline AuditStmtSlot *
audit_stmt_slot(const AuditStmtKey *key)
{
	return &audit_stmt_cache[key->h1 & (AUDIT_STMT_CACHE_SLOTS - 1)];
}

static inline bool
audit_stmt_key_equal(const AuditStmtKey *a, const AuditStmtKey *b)
{
	return a->h1 == b->h1 && a->h2 == b->h2;
}

/* Forget the provisional cache entries (their transaction aborted). */
static void
audit_stmt_forget_provisional(void)
{
	int i;

	if (audit_stmt_cache != NULL)
	{
		for (i = 0; i < audit_stmt_provisional; i++)
		{
			AuditStmtSlot *slot = audit_stmt_slot(&audit_stmt_prov_keys[i]);

			if (slot->used && slot->provisional &&
				audit_stmt_key_equal(&slot->key, &audit_stmt_prov_keys[i]))
				slot->used = false;
		}
	}
	audit_stmt_provisional = 0;
}

/*
 * End of a transaction: on commit the provisional cache entries become
 * permanent; on abort (or PREPARE TRANSACTION, whose outcome is not known
 * yet) they are forgotten.  Never fails.
 */
void
audit_statements_end_xact(bool commit)
{
	int i;

	if (audit_stmt_provisional == 0)
		return;
	if (!commit)
	{
		audit_stmt_forget_provisional();
		return;
	}
	for (i = 0; i < audit_stmt_provisional; i++)
	{
		AuditStmtSlot *slot = audit_stmt_slot(&audit_stmt_prov_keys[i]);

		if (slot->used &&
			audit_stmt_key_equal(&slot->key, &audit_stmt_prov_keys[i]))
			slot->provisional = false;
	}
	audit_stmt_provisional = 0;
}

/* A subtransaction aborted: the statement rows it inserted are gone. */
void
audit_statements_end_subxact(void)
{
	audit_stmt_forget_provisional();
}

/* --- the shared filter --------------------------------------------------- */

static Size
audit_filter_size(void)
{
	return add_size(
		offsetof(AuditStmtFilter, bits),
		mul_size(sizeof(pg_atomic_uint32), AUDIT_FILTER_BITS / 32));
}

static void
audit_filter_startup(void)
{
	bool found;
	uint64 i;

	audit_filter =
		ShmemInitStruct(AUDIT_FILTER_NAME, audit_filter_size(), &found);
	if (found)
		return;
	SpinLockInit(&audit_filter->mutex);
	memset(audit_filter->dboids, 0, sizeof(audit_filter->dboids));
	for (i = 0; i < AUDIT_FILTER_BITS / 32; i++)
		pg_atomic_init_u32(&audit_filter->bits[i], 0);
}

static const OpsdataShmemPart audit_filter_part = {
	AUDIT_FILTER_NAME, audit_filter_size, 0, audit_filter_startup};

/*
 * Register the filter's shared memory.  Preloaded only.
 */
void
audit_statements_init(void)
{
	opsdata_shmem_register(&audit_filter_part);
}

static inline uint64
audit_filter_bit(int64 id)
{
	return (uint64) id & (AUDIT_FILTER_BITS - 1);
}

static void
audit_filter_set(int64 id)
{
	uint64 bit = audit_filter_bit(id);

	if (audit_filter != NULL)
		pg_atomic_fetch_or_u32(&audit_filter->bits[bit / 32],
							   (uint32) 1 << (bit % 32));
}

/* Is id certainly absent from audit.statements of this database? */
static bool
audit_filter_absent(int64 id)
{
	uint64 bit = audit_filter_bit(id);
	int i;

	if (audit_filter == NULL)
		return false;
	if (!audit_filter_ready_here)
	{
		SpinLockAcquire(&audit_filter->mutex);
		for (i = 0; i < AUDIT_FILTER_DATABASES; i++)
		{
			if (audit_filter->dboids[i] == MyDatabaseId)
				audit_filter_ready_here = true;
		}
		SpinLockRelease(&audit_filter->mutex);
		if (!audit_filter_ready_here)
			return false;
	}
	return (pg_atomic_read_u32(&audit_filter->bits[bit / 32]) &
			((uint32) 1 << (bit % 32))) == 0;
}

/*
 * Load the filter for the current database, unless done since the server
 * started: set the bit of every statement_id in the primary key of
 * audit.statements (dead entries too; a bit too many only costs a probe).
 * Called by the scheduler, in a transaction.  Writers set the bits of what
 * they insert meanwhile, so the filter is complete when this returns.
 */
void
audit_statements_filter_load(void)
{
	Oid nsp;
	Oid relid;
	Relation heap;
	Relation pk = NULL;
	List *indexes;
	ListCell *lc;
	IndexScanDesc scan;
	int free_slot = -1;
	int i;
	uint64 n = 0;

	if (audit_filter == NULL)
		return;
	SpinLockAcquire(&audit_filter->mutex);
	for (i = 0; i < AUDIT_FILTER_DATABASES; i++)
	{
		if (audit_filter->dboids[i] == MyDatabaseId)
		{
			SpinLockRelease(&audit_filter->mutex);
			return;
		}
		if (audit_filter->dboids[i] == InvalidOid && free_slot < 0)
			free_slot = i;
	}
	SpinLockRelease(&audit_filter->mutex);
	if (free_slot < 0)
		return; /* too many databases: this one always probes */

	nsp = get_namespace_oid("audit", true);
	relid =
		OidIsValid(nsp) ? get_relname_relid("statements", nsp) : InvalidOid;
	if (!OidIsValid(relid))
		return;
	heap = table_open(relid, AccessShareLock);
	indexes = RelationGetIndexList(heap);
	foreach (lc, indexes)
	{
		Relation idx = index_open(lfirst_oid(lc), AccessShareLock);

		if (idx->rd_index->indisprimary && pk == NULL)
			pk = idx;
		else
			index_close(idx, AccessShareLock);
	}
	if (pk != NULL)
	{
		scan = index_beginscan(heap, pk, SnapshotAny, 0, 0);
		scan->xs_want_itup = true;
		index_rescan(scan, NULL, 0, NULL, 0);
		while (index_getnext_tid(scan, ForwardScanDirection) != NULL)
		{
			bool isnull;
			Datum d =
				index_getattr(scan->xs_itup, 1, scan->xs_itupdesc, &isnull);

			if (!isnull)
				audit_filter_set(DatumGetInt64(d));
			if ((++n & 1023) == 0)
				CHECK_FOR_INTERRUPTS();
		}
		index_endscan(scan);
		index_close(pk, AccessShareLock);
	}
	table_close(heap, AccessShareLock);
	if (pk == NULL)
		return;

	SpinLockAcquire(&audit_filter->mutex);
	for (i = 0; i < AUDIT_FILTER_DATABASES; i++)
	{
		if (audit_filter->dboids[i] == MyDatabaseId)
			break;
		if (audit_filter->dboids[i] == InvalidOid)
		{
			audit_filter->dboids[i] = MyDatabaseId;
			break;
		}
	}
	SpinLockRelease(&audit_filter->mutex);
}

/* --- writing ------------------------------------------------------------- */

/*
 * Forget the cache when audit.statements is not the storage it describes
 * (the table was dropped and made again, or truncated).  The writer calls
 * it for every batch with what it knows of the table.
 */
void
audit_statements_check_storage(Oid relid, Oid relfilenode)
{
	uint64 generation;

	if (audit_stmt_cache == NULL)
		audit_stmt_cache = MemoryContextAllocZero(
			TopMemoryContext, sizeof(AuditStmtSlot) * AUDIT_STMT_CACHE_SLOTS);
	generation = audit_text_cache_bind(relfilenode);
	if (relid != audit_stmt_cache_relid ||
		relfilenode != audit_stmt_cache_relfilenode ||
		generation != audit_stmt_cache_generation)
	{
		memset(audit_stmt_cache, 0,
			   sizeof(AuditStmtSlot) * AUDIT_STMT_CACHE_SLOTS);
		audit_stmt_provisional = 0;
		audit_stmt_cache_relid = relid;
		audit_stmt_cache_relfilenode = relfilenode;
		audit_stmt_cache_generation = generation;
	}
}

/*
 * The key of a shape: two hashes of its text, each combined with a hash of
 * its placeholders when it has any (a text stored as it was keeps the key
 * of its text alone).
 */
static void
audit_stmt_key(const AuditShape *shape, AuditStmtKey *key)
{
	key->h1 = hash_bytes_extended((const unsigned char *) shape->text,
								  shape->len, 0x6f707364);
	key->h2 = hash_bytes_extended((const unsigned char *) shape->text,
								  shape->len, 0x61756474);
	if (shape->nplaceholders > 0)
	{
		Size size = sizeof(int32) * shape->nplaceholders;

		key->h1 = hash_combine64(
			key->h1,
			hash_bytes_extended((const unsigned char *) shape->placeholders,
								size, 0x73686170));
		key->h2 = hash_combine64(
			key->h2,
			hash_bytes_extended((const unsigned char *) shape->placeholders,
								size, 0x65736864));
	}
}

/* Are the placeholders of a stored row (NULL: none) those of shape? */
static bool
audit_stmt_same_placeholders(Datum d, bool isnull, const AuditShape *shape)
{
	ArrayType *a;

	if (isnull)
		return shape->nplaceholders == 0;
	a = DatumGetArrayTypeP(d);
	return ARR_NDIM(a) == 1 && !ARR_HASNULL(a) && ARR_ELEMTYPE(a) == INT4OID &&
		   ARR_DIMS(a)[0] == shape->nplaceholders &&
		   memcmp((char *) a + ARR_OVERHEAD_NONULLS(1), shape->placeholders,
				  sizeof(int32) * shape->nplaceholders) == 0;
}

/*
 * Prepare to store texts into audit.statements, opened as rri (indexes
 * open) in estate.  Allocates in the current memory context.
 */
AuditStmtWriter *
audit_statements_open(EState *estate, ResultRelInfo *rri)
{
	AuditStmtWriter *sw = palloc0(sizeof(AuditStmtWriter));
	TupleDesc desc;
	int i;

	sw->estate = estate;
	sw->rri = rri;
	sw->heap = rri->ri_RelationDesc;
	desc = RelationGetDescr(sw->heap);
	sw->id_att = SPI_fnumber(desc, "statement_id");
	sw->text_att = SPI_fnumber(desc, "statement_text");
	sw->seen_att = SPI_fnumber(desc, "first_seen");
	sw->placeholders_att = SPI_fnumber(desc, "placeholders");
	if (sw->id_att <= 0 || sw->text_att <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("relation \"audit.statements\" lacks the columns "
						"\"statement_id\" and \"statement_text\""),
				 errhint("Reinstall the pg_opsdata extension.")));
	sw->slot = table_slot_create(sw->heap, &estate->es_tupleTable);
	sw->slots = palloc(sizeof(TupleTableSlot *) * AUDIT_STMT_BATCH);
	for (i = 0; i < rri->ri_NumIndices; i++)
	{
		Relation idx = rri->ri_IndexRelationDescs[i];

		if (idx->rd_index->indisprimary)
			sw->pk = idx;
	}
	if (sw->pk == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("relation \"audit.statements\" has no primary key"),
				 errhint("Reinstall the pg_opsdata extension.")));

	audit_statements_check_storage(RelationGetRelid(sw->heap),
								   sw->heap->rd_node.relNode);
	return sw;
}

void
audit_statements_close(AuditStmtWriter *sw)
{
	if (sw->scan != NULL)
		index_endscan(sw->scan);
	sw->scan = NULL;
}

/*
 * Look up statement_id in audit.statements with a dirty snapshot, waiting
 * for a transaction that is inserting it.  Returns 1 when present with this
 * text, 2 when our own transaction inserted it, -1 when present with
 * another text, 0 when absent.
 */
static int
audit_stmt_probe(AuditStmtWriter *sw, int64 id, const AuditShape *shape)
{
	for (;;)
	{
		ScanKeyData key;
		TupleTableSlot *slot = sw->slot;
		TransactionId xwait = InvalidTransactionId;
		ItemPointerData tid;
		int result = 0;

		InitDirtySnapshot(sw->dirty);
		ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ,
					Int64GetDatum(id));
		if (sw->scan == NULL)
			sw->scan = index_beginscan(sw->heap, sw->pk, &sw->dirty, 1, 0);
		index_rescan(sw->scan, &key, 1, NULL, 0);
		while (index_getnext_slot(sw->scan, ForwardScanDirection, slot))
		{
			bool isnull;
			Datum d;
			text *t;

			xwait = TransactionIdIsValid(sw->dirty.xmin) ? sw->dirty.xmin
														 : sw->dirty.xmax;
			if (TransactionIdIsValid(xwait))
			{
				tid = slot->tts_tid;
				break;
			}
			d = slot_getattr(slot, sw->text_att, &isnull);
			t = DatumGetTextPP(d);
			result = (!isnull && VARSIZE_ANY_EXHDR(t) == (Size) shape->len &&
					  memcmp(VARDATA_ANY(t), shape->text, shape->len) == 0)
						 ? 1
						 : -1;
			if (result == 1 && sw->placeholders_att > 0)
			{
				d = slot_getattr(slot, sw->placeholders_att, &isnull);
				if (!audit_stmt_same_placeholders(d, isnull, shape))
					result = -1;
			}
			/* Our own transaction's row goes if it aborts. */
			if (result == 1 &&
				TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetRawXmin(
					ExecFetchSlotHeapTuple(slot, false, NULL)->t_data)))
				result = 2;
			break;
		}
		ExecClearTuple(slot);
		if (!TransactionIdIsValid(xwait))
			return result;
		XactLockTableWait(xwait, sw->heap, &tid, XLTW_InsertIndexUnique);
	}
}

/* Put the values of a new statement row into slot. */
static void
audit_stmt_fill(AuditStmtWriter *sw, TupleTableSlot *slot, int64 id,
				const AuditShape *shape)
{
	ExecClearTuple(slot);
	memset(slot->tts_isnull, true,
		   sizeof(bool) * slot->tts_tupleDescriptor->natts);
	slot->tts_values[sw->id_att - 1] = Int64GetDatum(id);
	slot->tts_isnull[sw->id_att - 1] = false;
	slot->tts_values[sw->text_att - 1] =
		PointerGetDatum(cstring_to_text_with_len(shape->text, shape->len));
	slot->tts_isnull[sw->text_att - 1] = false;
	if (sw->seen_att > 0)
	{
		slot->tts_values[sw->seen_att - 1] =
			TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
		slot->tts_isnull[sw->seen_att - 1] = false;
	}
	if (sw->placeholders_att > 0 && shape->nplaceholders > 0)
	{
		Datum *elems = palloc(sizeof(Datum) * shape->nplaceholders);
		int i;

		for (i = 0; i < shape->nplaceholders; i++)
			elems[i] = Int32GetDatum(shape->placeholders[i]);
		slot->tts_values[sw->placeholders_att - 1] = PointerGetDatum(
			construct_array(elems, shape->nplaceholders, INT4OID,
							sizeof(int32), true, TYPALIGN_INT));
		slot->tts_isnull[sw->placeholders_att - 1] = false;
	}
	ExecStoreVirtualTuple(slot);
}

/*
 * Insert a statement row.  Returns false when a concurrent session
 * inserted the same id first (our row is then deleted again).
 */
static bool
audit_stmt_insert(AuditStmtWriter *sw, int64 id, const AuditShape *shape)
{
	TupleTableSlot *slot = sw->slot;
	bool conflict = false;
	List *recheck;

	audit_stmt_fill(sw, slot, id, shape);
	audit_filter_set(id);
	table_tuple_insert(sw->heap, slot, GetCurrentCommandId(true), 0, NULL);
	recheck = ExecInsertIndexTuples(sw->rri, slot, sw->estate, false, true,
									&conflict, NIL);
	list_free(recheck);
	if (conflict)
	{
		CommandCounterIncrement();
		simple_heap_delete(sw->heap, &slot->tts_tid);
		CommandCounterIncrement();
	}
	ExecClearTuple(slot);
	return !conflict;
}

/* Remember that key's text is stored as id. */
static void
audit_stmt_remember(const AuditStmtKey *key, int64 id, bool provisional)
{
	AuditStmtSlot *slot = audit_stmt_slot(key);

	slot->key = *key;
	slot->statement_id = id;
	slot->used = true;
	slot->provisional = provisional;
	if (!provisional)
		return;
	audit_stmt_prov_keys = audit_array_room(
		audit_stmt_prov_keys, audit_stmt_provisional, &audit_stmt_prov_max,
		sizeof(AuditStmtKey), 64, TopMemoryContext);
	audit_stmt_prov_keys[audit_stmt_provisional++] = *key;
}

/* The id a text is stored under unless another text held it first. */
static inline int64
audit_stmt_first_id(const AuditStmtKey *key)
{
	return (int64) (key->h1 & UINT64CONST(0x7FFFFFFFFFFFFFFF));
}

/* The cached statement_id of key, if any. */
static inline bool
audit_stmt_lookup(const AuditStmtKey *key, int64 *id)
{
	AuditStmtSlot *slot = audit_stmt_slot(key);

	if (!slot->used || !audit_stmt_key_equal(&slot->key, key))
		return false;
	*id = slot->statement_id;
	return true;
}

/*
 * The statement_id of a text not in the cache, through the primary key:
 * probe from the id its hash gives, inserting the text where it is
 * absent, moving on past ids that hold other texts.
 */
static int64
audit_stmt_resolve(AuditStmtWriter *sw, const AuditShape *shape,
				   const AuditStmtKey *key)
{
	int64 id = audit_stmt_first_id(key);
	int attempt;

	for (attempt = 0; attempt < 128; attempt++)
	{
		int probe = audit_stmt_probe(sw, id, shape);

		if (probe < 0)
		{
			/* Another text has this id: try the next one. */
			id = (id + 1) & INT64CONST(0x7FFFFFFFFFFFFFFF);
			continue;
		}
		if (probe == 0 && !audit_stmt_insert(sw, id, shape))
			/* a concurrent session stored this id first: probe again */
			continue;
		/*
		 * A row the filter missed (restored from a dump) is known from now on.
		 */
		audit_filter_set(audit_stmt_first_id(key));
		audit_filter_set(id);
		audit_stmt_remember(key, id, probe != 1);
		/* Seen again: worth a place in the shared cache (textcache.c). */
		if (probe == 1)
			audit_text_cache_enter(key->h1, key->h2, id);
		return id;
	}
	elog(ERROR, "could not store the text of an audited statement");
	return 0;
}

/* A text of the batch that was not in the cache. */
typedef struct AuditStmtMiss
{
	int index; /* in the caller's arrays */
	AuditStmtKey key;
} AuditStmtMiss;

/*
 * Insert the new texts waiting in the writer's slots: all heap rows in one
 * multi-insert, then their primary key entries.  A row whose id a
 * concurrent session stored first (or a row the filter did not know of)
 * is deleted again and its text resolved through the key.  Returns false
 * when a text ended up under another id than the one it was inserted with.
 */
static bool
audit_stmt_flush(AuditStmtWriter *sw, const AuditShape *shapes,
				 AuditStmtMiss **pending, int n)
{
	bool same = true;
	int k;

	if (n == 0)
		return true;
	table_multi_insert(sw->heap, sw->slots, n, GetCurrentCommandId(true), 0,
					   NULL);
	for (k = 0; k < n; k++)
	{
		TupleTableSlot *slot = sw->slots[k];
		bool conflict = false;
		List *recheck;

		recheck = ExecInsertIndexTuples(sw->rri, slot, sw->estate, false, true,
										&conflict, NIL);
		list_free(recheck);
		if (conflict)
		{
			AuditStmtMiss *m = pending[k];
			bool isnull;
			int64 id = DatumGetInt64(slot_getattr(slot, sw->id_att, &isnull));

			CommandCounterIncrement();
			simple_heap_delete(sw->heap, &slot->tts_tid);
			CommandCounterIncrement();
			if (audit_stmt_resolve(sw, &shapes[m->index], &m->key) != id)
				same = false;
		}
		ExecClearTuple(slot);
	}
	return same;
}

/*
 * The statement_id of each of n shapes (those without text are skipped),
 * inserting the shapes that are not stored yet into audit.statements in
 * the current transaction.  Shapes known to the cache need no relation;
 * open() is called, once, for the first that is not.
 */
void
audit_statement_ids(const AuditShape *shapes, int n, int64 *ids,
					AuditStmtOpener open, void *arg)
{
	AuditStmtMiss *misses = NULL;
	AuditStmtMiss **pending = NULL;
	AuditStmtWriter *sw;
	int nmiss = 0;
	int npending = 0;
	bool same = true;
	int i;

	if (audit_stmt_cache == NULL)
		audit_stmt_cache = MemoryContextAllocZero(
			TopMemoryContext, sizeof(AuditStmtSlot) * AUDIT_STMT_CACHE_SLOTS);
	for (i = 0; i < n; i++)
	{
		AuditStmtKey key;

		if (shapes[i].text == NULL)
			continue;
		audit_stmt_key(&shapes[i], &key);
		/*
		 * A text the filter has never seen is in no cache: skip the lookups.
		 */
		if (!audit_filter_absent(audit_stmt_first_id(&key)))
		{
			if (audit_stmt_lookup(&key, &ids[i]))
				continue;
			if (audit_text_cache_lookup(key.h1, key.h2, &ids[i]))
			{
				audit_stmt_remember(&key, ids[i], false);
				continue;
			}
		}
		if (misses == NULL)
			misses = palloc(sizeof(AuditStmtMiss) * (n - i));
		misses[nmiss].index = i;
		misses[nmiss].key = key;
		nmiss++;
	}
	if (nmiss == 0)
		return;

	sw = open(arg);
	pending = palloc(sizeof(AuditStmtMiss *) * AUDIT_STMT_BATCH);
	for (i = 0; i < nmiss; i++)
	{
		AuditStmtMiss *m = &misses[i];
		const AuditShape *shape = &shapes[m->index];
		int64 id = audit_stmt_first_id(&m->key);

		if (!audit_filter_absent(id))
		{
			/*
			 * Maybe stored, perhaps just now as an earlier shape of the batch.
			 */
			if (!audit_stmt_lookup(&m->key, &ids[m->index]))
				ids[m->index] = audit_stmt_resolve(sw, shape, &m->key);
			continue;
		}
		/* Certainly not stored yet: inserted with the next rows. */
		if (npending == AUDIT_STMT_BATCH)
		{
			same &= audit_stmt_flush(sw, shapes, pending, npending);
			npending = 0;
		}
		if (npending == sw->nslots)
			sw->slots[sw->nslots++] =
				table_slot_create(sw->heap, &sw->estate->es_tupleTable);
		audit_filter_set(id);
		audit_stmt_fill(sw, sw->slots[npending], id, shape);
		pending[npending++] = m;
		audit_stmt_remember(&m->key, id, true);
		ids[m->index] = id;
	}
	same &= audit_stmt_flush(sw, shapes, pending, npending);

	/*
	 * A conflict moved a shape to another id (a different one held its
	 * own): every miss takes its id from the cache or the key again.
	 */
	if (!same)
	{
		for (i = 0; i < nmiss; i++)
		{
			AuditStmtMiss *m = &misses[i];

			if (!audit_stmt_lookup(&m->key, &ids[m->index]))
				ids[m->index] =
					audit_stmt_resolve(sw, &shapes[m->index], &m->key);
		}
	}
	pfree(pending);
	pfree(misses);
}

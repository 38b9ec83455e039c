/*-------------------------------------------------------------------------
 *
 * statements.c
 *		Store each distinct audited statement text once, in audit.statements.
 *
 * The statement_id of a text is derived from a 64-bit hash of it; a
 * backend-local cache remembers which texts are known to be stored.  It is
 * direct-mapped (a text's slot is a function of its hash; a newer text
 * takes the slot over), so a lookup costs one comparison and the cache
 * never has to be rebuilt.  On a miss the primary key is probed with a
 * dirty snapshot (waiting for a concurrent inserter of the same id to
 * finish), reusing one index scan for the whole batch; a missing text is
 * inserted with the unique check in "partial" mode, and if a concurrent
 * session inserted the same id meanwhile our tuple is deleted again and
 * the probe repeated, so no session ever fails on a duplicate.  A
 * different text with the same id (a hash collision) moves on to the next
 * id.
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
#include "access/tableam.h"
#include "access/xact.h"
#include "common/hashfn.h"
#include "executor/executor.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "audit/audit.h"

/* Slots of the backend-local cache; a power of two. */
#define AUDIT_STMT_CACHE_SLOTS 8192

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
	IndexScanDesc scan; /* opened at the first probe, reused */
	SnapshotData dirty;
	int id_att;
	int text_att;
	int seen_att;
};

static AuditStmtSlot *audit_stmt_cache = NULL;

/* Keys of the provisional entries, to settle them at transaction end. */
static AuditStmtKey *audit_stmt_prov_keys = NULL;
static int audit_stmt_provisional = 0;
static int audit_stmt_prov_max = 0;

/* The audit.statements storage the cache describes. */
static Oid audit_stmt_cache_relid = InvalidOid;
static Oid audit_stmt_cache_relfilenode = InvalidOid;

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
 * permanent, on abort they are forgotten.  Never fails.
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

		if (slot->used && audit_stmt_key_equal(&slot->key, &audit_stmt_prov_keys[i]))
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

static int
audit_attnum(TupleDesc desc, const char *name)
{
	int i;

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return i + 1;
	}
	return 0;
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
	sw->id_att = audit_attnum(desc, "statement_id");
	sw->text_att = audit_attnum(desc, "statement_text");
	sw->seen_att = audit_attnum(desc, "first_seen");
	if (sw->id_att == 0 || sw->text_att == 0)
		elog(ERROR, "audit.statements lacks its columns");
	sw->slot = table_slot_create(sw->heap, &estate->es_tupleTable);
	for (i = 0; i < rri->ri_NumIndices; i++)
	{
		Relation idx = rri->ri_IndexRelationDescs[i];

		if (idx->rd_index->indisprimary)
			sw->pk = idx;
	}
	if (sw->pk == NULL)
		elog(ERROR, "audit.statements has no primary key");

	if (audit_stmt_cache == NULL)
		audit_stmt_cache = MemoryContextAllocZero(TopMemoryContext,
												  sizeof(AuditStmtSlot) * AUDIT_STMT_CACHE_SLOTS);
	if (RelationGetRelid(sw->heap) != audit_stmt_cache_relid ||
		sw->heap->rd_node.relNode != audit_stmt_cache_relfilenode)
	{
		memset(audit_stmt_cache, 0, sizeof(AuditStmtSlot) * AUDIT_STMT_CACHE_SLOTS);
		audit_stmt_provisional = 0;
		audit_stmt_cache_relid = RelationGetRelid(sw->heap);
		audit_stmt_cache_relfilenode = sw->heap->rd_node.relNode;
	}
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
 * text, -1 when present with another text, 0 when absent.
 */
static int
audit_stmt_probe(AuditStmtWriter *sw, int64 id, const char *stmt, int len)
{
	for (;;)
	{
		ScanKeyData key;
		TupleTableSlot *slot = sw->slot;
		TransactionId xwait = InvalidTransactionId;
		ItemPointerData tid;
		int result = 0;

		InitDirtySnapshot(sw->dirty);
		ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(id));
		if (sw->scan == NULL)
			sw->scan = index_beginscan(sw->heap, sw->pk, &sw->dirty, 1, 0);
		index_rescan(sw->scan, &key, 1, NULL, 0);
		while (index_getnext_slot(sw->scan, ForwardScanDirection, slot))
		{
			bool isnull;
			Datum d;
			text *t;

			xwait = TransactionIdIsValid(sw->dirty.xmin) ? sw->dirty.xmin : sw->dirty.xmax;
			if (TransactionIdIsValid(xwait))
			{
				tid = slot->tts_tid;
				break;
			}
			d = slot_getattr(slot, sw->text_att, &isnull);
			t = DatumGetTextPP(d);
			result = (!isnull && VARSIZE_ANY_EXHDR(t) == (Size) len &&
					  memcmp(VARDATA_ANY(t), stmt, len) == 0)
						 ? 1
						 : -1;
			break;
		}
		ExecClearTuple(slot);
		if (!TransactionIdIsValid(xwait))
			return result;
		XactLockTableWait(xwait, sw->heap, &tid, XLTW_InsertIndexUnique);
	}
}

/*
 * Insert a statement row.  Returns false when a concurrent session
 * inserted the same id first (our row is then deleted again).
 */
static bool
audit_stmt_insert(AuditStmtWriter *sw, int64 id, const char *text, int len)
{
	TupleTableSlot *slot = sw->slot;
	bool conflict = false;
	List *recheck;

	ExecClearTuple(slot);
	memset(slot->tts_isnull, true, sizeof(bool) * slot->tts_tupleDescriptor->natts);
	slot->tts_values[sw->id_att - 1] = Int64GetDatum(id);
	slot->tts_isnull[sw->id_att - 1] = false;
	slot->tts_values[sw->text_att - 1] = PointerGetDatum(cstring_to_text_with_len(text, len));
	slot->tts_isnull[sw->text_att - 1] = false;
	if (sw->seen_att > 0)
	{
		slot->tts_values[sw->seen_att - 1] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
		slot->tts_isnull[sw->seen_att - 1] = false;
	}
	ExecStoreVirtualTuple(slot);
	table_tuple_insert(sw->heap, slot, GetCurrentCommandId(true), 0, NULL);
	recheck = ExecInsertIndexTuples(sw->rri, slot, sw->estate, false, true, &conflict, NIL);
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
	if (audit_stmt_provisional == audit_stmt_prov_max)
	{
		audit_stmt_prov_max = Max(64, audit_stmt_prov_max * 2);
		audit_stmt_prov_keys = audit_stmt_prov_keys == NULL
								   ? MemoryContextAlloc(TopMemoryContext, sizeof(AuditStmtKey) * audit_stmt_prov_max)
								   : repalloc(audit_stmt_prov_keys, sizeof(AuditStmtKey) * audit_stmt_prov_max);
	}
	audit_stmt_prov_keys[audit_stmt_provisional++] = *key;
}

/*
 * The statement_id of a text, inserting it into audit.statements if needed,
 * in the current transaction.
 */
int64
audit_statement_id(AuditStmtWriter *sw, const char *text)
{
	int len = strlen(text);
	AuditStmtKey key;
	AuditStmtSlot *slot;
	int64 id;
	int attempt;

	key.h1 = hash_bytes_extended((const unsigned char *) text, len, 0x6f707364);
	key.h2 = hash_bytes_extended((const unsigned char *) text, len, 0x61756474);
	slot = audit_stmt_slot(&key);
	if (slot->used && audit_stmt_key_equal(&slot->key, &key))
		return slot->statement_id;

	id = (int64) (key.h1 & UINT64CONST(0x7FFFFFFFFFFFFFFF));
	for (attempt = 0; attempt < 128; attempt++)
	{
		int probe = audit_stmt_probe(sw, id, text, len);

		if (probe < 0)
		{
			/* Another text has this id: try the next one. */
			id = (id + 1) & INT64CONST(0x7FFFFFFFFFFFFFFF);
			continue;
		}
		if (probe == 0 && !audit_stmt_insert(sw, id, text, len))
			continue; /* a concurrent session stored this id first: probe again */
		audit_stmt_remember(&key, id, probe == 0);
		return id;
	}
	elog(ERROR, "could not store the text of an audited statement");
	return 0;
}

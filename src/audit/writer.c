/*-------------------------------------------------------------------------
 *
 * writer.c
 *		Insert a batch of audit events into audit.entries and audit.statements.
 *
 * Used at pre-commit (the write events of the committing transaction, in
 * that transaction) and by the queue's drainer.  Rows are built in C and
 * inserted through the table AM and the executor's index and partition
 * routing code, as COPY does: no SPI, no per-row planning.  audit.entries
 * rows are routed to the partition of their ts (the default partition
 * until partition maintenance has made the day's), with the default
 * partition locked first (partition/route.c).
 *
 * Statement texts are stored once each.  The statement_id of a text is
 * derived from a 64-bit hash of it; a backend-local cache remembers which
 * texts are known to be stored.  On a miss the primary key is probed with a
 * dirty snapshot (waiting for a concurrent inserter of the same id to
 * finish); a missing text is inserted with the unique check in "partial"
 * mode, and if a concurrent session inserted the same id meanwhile our
 * tuple is deleted again and the probe repeated, so no session ever fails
 * on a duplicate.  A different text with the same id (a hash collision)
 * moves on to the next id.  Cache entries made by an uncommitted
 * transaction are forgotten if it aborts.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/writer.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "common/hashfn.h"
#include "executor/execPartition.h"
#include "executor/executor.h"
#include "nodes/makefuncs.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inet.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "audit/audit.h"
#include "partition/route.h"

#define AUDIT_STATEMENT_CACHE_SIZE 8192

typedef struct AuditStmtKey
{
	uint64 h1;
	uint64 h2;
} AuditStmtKey;

typedef struct AuditStmtEntry
{
	AuditStmtKey key;
	int64 statement_id;
	bool provisional; /* inserted by the current, uncommitted transaction */
} AuditStmtEntry;

static HTAB *audit_stmt_cache = NULL;
static int audit_stmt_provisional = 0;

/* Keys of the provisional entries, to settle them at transaction end. */
static AuditStmtKey *audit_stmt_prov_keys = NULL;
static int audit_stmt_prov_max = 0;

/* The audit.statements storage the cache describes (dropped, truncated: reset). */
static Oid audit_stmt_cache_relid = InvalidOid;
static Oid audit_stmt_cache_relfilenode = InvalidOid;

/* Columns of audit.entries, by attribute number (0 when absent). */
enum
{
	COL_ENTRY_ID,
	COL_TS,
	COL_DATABASE,
	COL_USERNAME,
	COL_CURRENT_USER,
	COL_APPLICATION,
	COL_CLIENT_ADDR,
	COL_BACKEND_PID,
	COL_XID,
	COL_CLASS,
	COL_COMMAND,
	COL_OBJECTS,
	COL_PRIVILEGES,
	COL_ROWS,
	COL_DURATION,
	COL_OUTCOME,
	COL_SQLSTATE,
	COL_STATEMENT_ID,
	COL_PARAMS,
	NUM_COLS
};

static const char *const audit_column_names[NUM_COLS] = {
	"entry_id", "ts", "database", "username", "current_user_name", "application",
	"client_addr", "backend_pid", "xid", "class", "command", "objects", "privileges",
	"rows", "duration", "outcome", "sqlstate", "statement_id", "params"};

typedef struct AuditWriter
{
	EState *estate;
	ModifyTableState *mtstate;
	PartitionTupleRouting *proute;
	ResultRelInfo *entries;
	ResultRelInfo *statements;
	TupleTableSlot *root_slot;
	TupleTableSlot *stmt_slot;
	Relation stmt_pk;
	Oid seqid;
	int attnum[NUM_COLS];
	int stmt_id_att;
	int stmt_text_att;
	int stmt_seen_att;
} AuditWriter;

static void
audit_stmt_cache_init(void)
{
	HASHCTL ctl;

	ctl.keysize = sizeof(AuditStmtKey);
	ctl.entrysize = sizeof(AuditStmtEntry);
	ctl.hcxt = TopMemoryContext;
	audit_stmt_cache = hash_create("pg_opsdata audit statements", 1024, &ctl,
								   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	audit_stmt_provisional = 0;
}

/* Forget the provisional cache entries (their transaction aborted). */
static void
audit_stmt_cache_forget_provisional(void)
{
	int i;

	if (audit_stmt_cache != NULL)
	{
		for (i = 0; i < audit_stmt_provisional; i++)
			hash_search(audit_stmt_cache, &audit_stmt_prov_keys[i], HASH_REMOVE, NULL);
	}
	audit_stmt_provisional = 0;
}

/*
 * End of a transaction: on commit the provisional cache entries become
 * permanent, on abort they are forgotten.
 */
void
audit_writer_end_xact(bool commit)
{
	int i;

	if (audit_stmt_provisional == 0)
		return;
	if (!commit)
	{
		audit_stmt_cache_forget_provisional();
		return;
	}
	if (audit_stmt_cache != NULL)
	{
		for (i = 0; i < audit_stmt_provisional; i++)
		{
			AuditStmtEntry *entry = hash_search(audit_stmt_cache, &audit_stmt_prov_keys[i],
												HASH_FIND, NULL);

			if (entry != NULL)
				entry->provisional = false;
		}
	}
	audit_stmt_provisional = 0;
}

/* A subtransaction aborted: its statement rows are gone. */
void
audit_writer_end_subxact(void)
{
	audit_stmt_cache_forget_provisional();
}

static Oid
audit_relid(const char *relname)
{
	Oid nsp = get_namespace_oid("audit", false);
	Oid relid = get_relname_relid(relname, nsp);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"audit.%s\" does not exist", relname),
				 errhint("Is the pg_opsdata extension installed in this database?")));
	return relid;
}

static RangeTblEntry *
audit_rte(Oid relid)
{
	RangeTblEntry *rte = makeNode(RangeTblEntry);

	rte->rtekind = RTE_RELATION;
	rte->relid = relid;
	rte->relkind = get_rel_relkind(relid);
	rte->rellockmode = RowExclusiveLock;
	return rte;
}

static int
attnum_of(TupleDesc desc, const char *name)
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

static void
audit_writer_open(AuditWriter *w)
{
	Oid entries_id = audit_relid("entries");
	Oid statements_id = audit_relid("statements");
	TupleDesc desc;
	int i;

	memset(w, 0, sizeof(AuditWriter));
	w->seqid = audit_relid("entries_entry_id_seq");
	w->estate = CreateExecutorState();
	ExecInitRangeTable(w->estate, list_make2(audit_rte(entries_id), audit_rte(statements_id)));
	w->entries = makeNode(ResultRelInfo);
	ExecInitResultRelation(w->estate, w->entries, 1);
	w->statements = makeNode(ResultRelInfo);
	ExecInitResultRelation(w->estate, w->statements, 2);
	ExecOpenIndices(w->statements, true);

	w->mtstate = makeNode(ModifyTableState);
	w->mtstate->ps.plan = NULL;
	w->mtstate->ps.state = w->estate;
	w->mtstate->operation = CMD_INSERT;
	w->mtstate->mt_nrels = 1;
	w->mtstate->resultRelInfo = w->entries;
	w->mtstate->rootResultRelInfo = w->entries;
	if (w->entries->ri_RelationDesc->rd_rel->relkind == RELKIND_PARTITIONED_TABLE)
	{
		partition_lock_default(w->entries->ri_RelationDesc);
		w->proute = ExecSetupPartitionTupleRouting(w->estate, w->entries->ri_RelationDesc);
	}
	else
		ExecOpenIndices(w->entries, false);

	desc = RelationGetDescr(w->entries->ri_RelationDesc);
	for (i = 0; i < NUM_COLS; i++)
		w->attnum[i] = attnum_of(desc, audit_column_names[i]);
	w->root_slot = table_slot_create(w->entries->ri_RelationDesc, &w->estate->es_tupleTable);

	desc = RelationGetDescr(w->statements->ri_RelationDesc);
	w->stmt_id_att = attnum_of(desc, "statement_id");
	w->stmt_text_att = attnum_of(desc, "statement_text");
	w->stmt_seen_att = attnum_of(desc, "first_seen");
	w->stmt_slot = table_slot_create(w->statements->ri_RelationDesc, &w->estate->es_tupleTable);
	if (audit_stmt_cache != NULL &&
		(RelationGetRelid(w->statements->ri_RelationDesc) != audit_stmt_cache_relid ||
		 w->statements->ri_RelationDesc->rd_node.relNode != audit_stmt_cache_relfilenode))
	{
		hash_destroy(audit_stmt_cache);
		audit_stmt_cache = NULL;
	}
	audit_stmt_cache_relid = RelationGetRelid(w->statements->ri_RelationDesc);
	audit_stmt_cache_relfilenode = w->statements->ri_RelationDesc->rd_node.relNode;
	for (i = 0; i < w->statements->ri_NumIndices; i++)
	{
		Relation idx = w->statements->ri_IndexRelationDescs[i];

		if (idx->rd_index->indisprimary)
			w->stmt_pk = idx;
	}
	if (w->stmt_pk == NULL)
		elog(ERROR, "audit.statements has no primary key");
}

static void
audit_writer_close(AuditWriter *w)
{
	if (w->proute)
		ExecCleanupTupleRouting(w->mtstate, w->proute);
	ExecCloseResultRelations(w->estate);
	ExecCloseRangeTableRelations(w->estate);
	ExecResetTupleTable(w->estate->es_tupleTable, false);
	FreeExecutorState(w->estate);
}

/*
 * Look up statement_id in audit.statements with a dirty snapshot, waiting
 * for a transaction that is inserting it.  Returns 1 when present with this
 * text, -1 when present with another text, 0 when absent.
 */
static int
audit_stmt_probe(AuditWriter *w, int64 id, const char *stmt, int len)
{
	Relation heap = w->statements->ri_RelationDesc;

	for (;;)
	{
		SnapshotData dirty;
		ScanKeyData key;
		IndexScanDesc scan;
		TupleTableSlot *slot = w->stmt_slot;
		TransactionId xwait = InvalidTransactionId;
		ItemPointerData tid;
		int result = 0;

		InitDirtySnapshot(dirty);
		ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(id));
		scan = index_beginscan(heap, w->stmt_pk, &dirty, 1, 0);
		index_rescan(scan, &key, 1, NULL, 0);
		while (index_getnext_slot(scan, ForwardScanDirection, slot))
		{
			bool isnull;
			Datum d;
			text *t;

			xwait = TransactionIdIsValid(dirty.xmin) ? dirty.xmin : dirty.xmax;
			if (TransactionIdIsValid(xwait))
			{
				tid = slot->tts_tid;
				break;
			}
			d = slot_getattr(slot, w->stmt_text_att, &isnull);
			t = DatumGetTextPP(d);
			result = (!isnull && VARSIZE_ANY_EXHDR(t) == (Size) len &&
					  memcmp(VARDATA_ANY(t), stmt, len) == 0)
						 ? 1
						 : -1;
			break;
		}
		index_endscan(scan);
		ExecClearTuple(slot);
		if (!TransactionIdIsValid(xwait))
			return result;
		XactLockTableWait(xwait, heap, &tid, XLTW_InsertIndexUnique);
	}
}

/*
 * Insert a statement row.  Returns false when a concurrent session
 * inserted the same id first (our row is then deleted again).
 */
static bool
audit_stmt_insert(AuditWriter *w, int64 id, const char *text, int len)
{
	Relation heap = w->statements->ri_RelationDesc;
	TupleTableSlot *slot = w->stmt_slot;
	bool conflict = false;
	List *recheck;

	ExecClearTuple(slot);
	memset(slot->tts_isnull, true, sizeof(bool) * slot->tts_tupleDescriptor->natts);
	slot->tts_values[w->stmt_id_att - 1] = Int64GetDatum(id);
	slot->tts_isnull[w->stmt_id_att - 1] = false;
	slot->tts_values[w->stmt_text_att - 1] = PointerGetDatum(cstring_to_text_with_len(text, len));
	slot->tts_isnull[w->stmt_text_att - 1] = false;
	if (w->stmt_seen_att > 0)
	{
		slot->tts_values[w->stmt_seen_att - 1] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
		slot->tts_isnull[w->stmt_seen_att - 1] = false;
	}
	ExecStoreVirtualTuple(slot);
	table_tuple_insert(heap, slot, GetCurrentCommandId(true), 0, NULL);
	recheck = ExecInsertIndexTuples(w->statements, slot, w->estate, false, true, &conflict, NIL);
	list_free(recheck);
	if (conflict)
	{
		CommandCounterIncrement();
		simple_heap_delete(heap, &slot->tts_tid);
		CommandCounterIncrement();
	}
	ExecClearTuple(slot);
	return !conflict;
}

/*
 * The statement_id of a text, inserting it into audit.statements if needed.
 */
static int64
audit_statement_id(AuditWriter *w, const char *text)
{
	int len = strlen(text);
	AuditStmtKey key;
	AuditStmtEntry *entry;
	int64 id;
	bool found;
	int attempt;

	if (audit_stmt_cache == NULL)
		audit_stmt_cache_init();
	key.h1 = hash_bytes_extended((const unsigned char *) text, len, 0x6f707364);
	key.h2 = hash_bytes_extended((const unsigned char *) text, len, 0x61756474);
	entry = hash_search(audit_stmt_cache, &key, HASH_FIND, NULL);
	if (entry != NULL)
		return entry->statement_id;

	id = (int64) (key.h1 & UINT64CONST(0x7FFFFFFFFFFFFFFF));
	for (attempt = 0; attempt < 128; attempt++)
	{
		int probe = audit_stmt_probe(w, id, text, len);

		if (probe < 0)
		{
			/* Another text has this id: try the next one. */
			id = (id + 1) & INT64CONST(0x7FFFFFFFFFFFFFFF);
			continue;
		}
		if (probe == 0 && !audit_stmt_insert(w, id, text, len))
			continue; /* a concurrent session stored this id first: probe again */
		if (hash_get_num_entries(audit_stmt_cache) >= AUDIT_STATEMENT_CACHE_SIZE &&
			audit_stmt_provisional == 0)
		{
			hash_destroy(audit_stmt_cache);
			audit_stmt_cache_init();
		}
		entry = hash_search(audit_stmt_cache, &key, HASH_ENTER, &found);
		entry->statement_id = id;
		entry->provisional = probe == 0;
		if (probe == 0)
		{
			if (audit_stmt_provisional == audit_stmt_prov_max)
			{
				audit_stmt_prov_max = Max(64, audit_stmt_prov_max * 2);
				audit_stmt_prov_keys = audit_stmt_prov_keys == NULL
										   ? MemoryContextAlloc(TopMemoryContext, sizeof(AuditStmtKey) * audit_stmt_prov_max)
										   : repalloc(audit_stmt_prov_keys, sizeof(AuditStmtKey) * audit_stmt_prov_max);
			}
			audit_stmt_prov_keys[audit_stmt_provisional++] = key;
		}
		return id;
	}
	elog(ERROR, "could not store the text of an audited statement");
	return 0;
}

static Datum
audit_text_array(const char **items, int n)
{
	Datum *elems = palloc(sizeof(Datum) * n);
	bool *nulls = palloc(sizeof(bool) * n);
	int dims[1] = {n};
	int lbs[1] = {1};
	int i;

	for (i = 0; i < n; i++)
	{
		nulls[i] = items == NULL || items[i] == NULL;
		elems[i] = nulls[i] ? (Datum) 0 : CStringGetTextDatum(items[i]);
	}
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs, TEXTOID, -1, false,
											  TYPALIGN_INT));
}

static Datum
audit_name_datum(const char *s)
{
	Name name = (Name) palloc0(NAMEDATALEN);

	namestrcpy(name, s ? s : "");
	return NameGetDatum(name);
}

#define SET_COL(c, v)                         \
	do                                        \
	{                                         \
		if (w->attnum[c] > 0)                 \
		{                                     \
			values[w->attnum[c] - 1] = (v);   \
			isnull[w->attnum[c] - 1] = false; \
		}                                     \
	} while (0)

/* Fill the root slot with one event. */
static void
audit_fill_entry(AuditWriter *w, AuditEvent *ev, int64 statement_id, bool has_statement)
{
	TupleTableSlot *slot = w->root_slot;
	Datum *values = slot->tts_values;
	bool *isnull = slot->tts_isnull;

	ExecClearTuple(slot);
	memset(isnull, true, sizeof(bool) * slot->tts_tupleDescriptor->natts);
	SET_COL(COL_ENTRY_ID, Int64GetDatum(nextval_internal(w->seqid, false)));
	SET_COL(COL_TS, TimestampTzGetDatum(ev->ts));
	SET_COL(COL_DATABASE, audit_name_datum(ev->database));
	SET_COL(COL_USERNAME, audit_name_datum(ev->username));
	SET_COL(COL_CURRENT_USER, audit_name_datum(ev->current_user_name));
	if (ev->application)
		SET_COL(COL_APPLICATION, CStringGetTextDatum(ev->application));
	if (ev->client_addr)
		SET_COL(COL_CLIENT_ADDR, DirectFunctionCall1(inet_in, CStringGetDatum(ev->client_addr)));
	SET_COL(COL_BACKEND_PID, Int32GetDatum(ev->backend_pid));
	if (ev->flags & AUDIT_EVENT_HAS_XID)
		SET_COL(COL_XID, FullTransactionIdGetDatum(FullTransactionIdFromU64(ev->xid)));
	SET_COL(COL_CLASS, CStringGetTextDatum(audit_class_name(ev->class)));
	SET_COL(COL_COMMAND, CStringGetTextDatum(ev->command ? ev->command : "???"));
	if (ev->nobjects > 0)
	{
		SET_COL(COL_OBJECTS, audit_text_array(ev->objects, ev->nobjects));
		SET_COL(COL_PRIVILEGES, audit_text_array(ev->privileges, ev->nobjects));
	}
	if (ev->flags & AUDIT_EVENT_HAS_ROWS)
		SET_COL(COL_ROWS, Int64GetDatum(ev->rows));
	if (ev->flags & AUDIT_EVENT_HAS_DURATION)
	{
		Interval *iv = palloc0(sizeof(Interval));

		iv->time = ev->duration_us;
		SET_COL(COL_DURATION, IntervalPGetDatum(iv));
	}
	SET_COL(COL_OUTCOME, CStringGetTextDatum(audit_outcome_name(ev->outcome)));
	if (ev->sqlstate != 0)
		SET_COL(COL_SQLSTATE, CStringGetTextDatum(unpack_sql_state(ev->sqlstate)));
	if (has_statement)
		SET_COL(COL_STATEMENT_ID, Int64GetDatum(statement_id));
	if (ev->params)
		SET_COL(COL_PARAMS, CStringGetTextDatum(ev->params));
	ExecStoreVirtualTuple(slot);
}

/*
 * Insert events into audit.entries (and their texts into
 * audit.statements) in the current transaction.  Caller is in a
 * transaction; any error aborts it.
 */
void
audit_write_events(AuditEvent **events, int nevents)
{
	AuditWriter w;
	MemoryContext cxt;
	MemoryContext old;
	CommandId cid;
	int i;

	if (nevents == 0)
		return;
	cxt = AllocSetContextCreate(CurrentMemoryContext, "pg_opsdata audit writer",
								ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	audit_internal_depth++;
	PG_TRY();
	{
		audit_writer_open(&w);
		cid = GetCurrentCommandId(true);
		for (i = 0; i < nevents; i++)
		{
			AuditEvent *ev = events[i];
			int64 statement_id = 0;
			ResultRelInfo *part;
			TupleTableSlot *slot;
			List *recheck;

			if (ev->statement != NULL)
				statement_id = audit_statement_id(&w, ev->statement);
			audit_fill_entry(&w, ev, statement_id, ev->statement != NULL);
			slot = w.root_slot;
			if (w.proute)
			{
				TupleConversionMap *map;

				part = ExecFindPartition(w.mtstate, w.entries, w.proute, slot, w.estate);
				map = part->ri_RootToPartitionMap;
				if (map != NULL)
					slot = execute_attr_map_slot(map->attrMap, slot, part->ri_PartitionTupleSlot);
			}
			else
				part = w.entries;
			table_tuple_insert(part->ri_RelationDesc, slot, cid, 0, NULL);
			if (part->ri_NumIndices > 0)
			{
				recheck = ExecInsertIndexTuples(part, slot, w.estate, false, false, NULL, NIL);
				list_free(recheck);
			}
			ResetPerTupleExprContext(w.estate);
		}
		audit_writer_close(&w);
	}
	PG_FINALLY();
	{
		audit_internal_depth--;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
}

/*-------------------------------------------------------------------------
 *
 * pqueue_store.c
 *		Rows of the processing queues: find a queue, insert items, change
 *		items by id, move an item to the dead letters.
 *
 * Everything here works on the tables directly, through the table access
 * method and the item index, as the executor would but without planning:
 * an enqueue is one heap insert and one index insert, a settle one index
 * probe and one update.  Updates change only columns no index covers, and
 * audit.queue_items keeps room on each page (fillfactor), so they are
 * heap-only (HOT): no index entry is added, none is left dead, whether or
 * not vacuum keeps up.  When an update does not fit on its page, the new
 * version gets its index entry here.
 *
 * Row locks follow the executor's rules: settling waits for a concurrent
 * change of the same item and then works on its latest version; reads
 * (pqueue_read.c) skip items another transaction holds.  Tables and rows
 * are accessed with the rights of the caller of the SQL functions, which
 * are granted to the opsdata roles; no statement is run, so no search_path
 * is involved.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/pqueue_store.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "audit/audit.h"
#include "audit/pqueue.h"
#include "core/opsdata.h"

/* Columns of audit.queues. */
#define Q_ATT_QUEUE_ID		 1
#define Q_ATT_NAME			 2
#define Q_ATT_KIND			 3
#define Q_ATT_MAX_DELIVERIES 4
#define Q_ATT_HEAD			 6

/* Times an item's update chain is followed before giving up. */
#define PQ_SETTLE_RETRIES 1000

struct PqInserter
{
	EState *estate;
	ResultRelInfo *rri;
	Relation rel;
	TupleTableSlot *slot;
	Oid seq;
	bool quiet; /* numbers items without the session's sequence state */
	CommandId cid;
};

/*
 * Relations of the audit schema the queues use, by OID, cached per backend
 * until an invalidation of any of them (or of everything).
 */
#define PQ_NUM_RELS 10
static const char *const pq_rel_names[PQ_NUM_RELS] = {
	"queues",		   "queues_name_key", "queues_pkey",   "queue_items",
	"queue_items_seq", "dead_letters",	  "subscriptions", "entries",
	"trail",		   "queue_items_pkey"};
static Oid pq_rel_oids[PQ_NUM_RELS];

/* Queues by name, until audit.queues is invalidated. */
typedef struct PqCachedQueue
{
	char name[NAMEDATALEN * 2];
	PqQueue queue;
} PqCachedQueue;

static HTAB *pq_queue_cache = NULL;
#define PQ_QUEUE_CACHE_MAX 1000

static void
pq_relcache_callback(Datum arg, Oid relid)
{
	int i;
	bool ours = relid == InvalidOid;

	for (i = 0; i < PQ_NUM_RELS && !ours; i++)
		ours = relid == pq_rel_oids[i];
	if (!ours)
		return;
	if (relid == InvalidOid || relid == pq_rel_oids[PQ_REL_SUBSCRIPTIONS])
		pq_subscriptions_invalidate();
	if (pq_queue_cache != NULL)
	{
		hash_destroy(pq_queue_cache);
		pq_queue_cache = NULL;
	}
	if (relid == InvalidOid || relid != pq_rel_oids[PQ_REL_QUEUES])
		memset(pq_rel_oids, 0, sizeof(pq_rel_oids));
}

/*
 * Register the callback that keeps the caches of the queues current: at
 * library load when preloaded, else at first use in the backend.
 */
void
pq_register_callback(void)
{
	opsdata_register_relcache(OPSDATA_RELCACHE_AUDIT_QUEUES,
							  pq_relcache_callback);
}

/*
 * OID of a relation of the audit schema; an error when the extension is
 * not installed.
 */
Oid
pq_rel(PqRel which)
{
	Oid nsp;
	Oid relid;

	if (OidIsValid(pq_rel_oids[which]))
		return pq_rel_oids[which];
	pq_register_callback();
	nsp = get_namespace_oid("audit", true);
	relid = OidIsValid(nsp) ? get_relname_relid(pq_rel_names[which], nsp)
							: InvalidOid;
	if (!OidIsValid(relid))
		ereport(
			ERROR,
			(errcode(ERRCODE_UNDEFINED_TABLE),
			 errmsg("relation \"audit.%s\" does not exist",
					pq_rel_names[which]),
			 errhint(
				 "Is the pg_opsdata extension installed in this database?")));
	pq_rel_oids[which] = relid;
	return relid;
}

/*
 * The same, InvalidOid when the relation does not exist.
 */
Oid
pq_rel_if_exists(PqRel which)
{
	Oid nsp;

	if (OidIsValid(pq_rel_oids[which]))
		return pq_rel_oids[which];
	nsp = get_namespace_oid("audit", true);
	if (!OidIsValid(nsp) ||
		!OidIsValid(get_relname_relid(pq_rel_names[which], nsp)))
		return InvalidOid;
	return pq_rel(which);
}

/* Fill a PqQueue from a row of audit.queues. */
static void
pq_queue_from(HeapTuple tuple, TupleDesc desc, PqQueue *queue)
{
	bool isnull;
	char *kind;

	queue->queue_id =
		DatumGetInt32(heap_getattr(tuple, Q_ATT_QUEUE_ID, desc, &isnull));
	queue->name =
		TextDatumGetCString(heap_getattr(tuple, Q_ATT_NAME, desc, &isnull));
	kind = TextDatumGetCString(heap_getattr(tuple, Q_ATT_KIND, desc, &isnull));
	queue->kind = strcmp(kind, "subscription") == 0 ? PQ_KIND_SUBSCRIPTION
													: PQ_KIND_APPLICATION;
	queue->max_deliveries = DatumGetInt32(
		heap_getattr(tuple, Q_ATT_MAX_DELIVERIES, desc, &isnull));
	queue->head =
		DatumGetInt64(heap_getattr(tuple, Q_ATT_HEAD, desc, &isnull));
}

/* Look a queue up through one of the unique indexes of audit.queues. */
static bool
pq_lookup_by(AttrNumber attno, Oid indexoid, RegProcedure proc, Datum key,
			 Oid collation, PqQueue *queue)
{
	Relation rel;
	SysScanDesc scan;
	ScanKeyData skey;
	HeapTuple tuple;
	Snapshot snapshot;
	bool found = false;

	rel = table_open(pq_rel(PQ_REL_QUEUES), AccessShareLock);
	ScanKeyEntryInitialize(&skey, 0, attno, BTEqualStrategyNumber, InvalidOid,
						   collation, proc, key);
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	scan = systable_beginscan(rel, indexoid, true, snapshot, 1, &skey);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		pq_queue_from(tuple, RelationGetDescr(rel), queue);
		found = true;
	}
	systable_endscan(scan);
	UnregisterSnapshot(snapshot);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * Find a queue by name; false when there is none.  Caller is in a
 * transaction.  Found queues are cached: the lock taken here on
 * audit.queues reads the invalidation that audit.drop_queue() sends, and
 * drop_queue() waits for every transaction holding that lock.
 */
bool
pq_lookup(const char *name, PqQueue *queue)
{
	PqCachedQueue *cached;
	bool found;

	LockRelationOid(pq_rel(PQ_REL_QUEUES), AccessShareLock);
	if (strlen(name) >= sizeof(cached->name))
		return pq_lookup_by(Q_ATT_NAME, pq_rel(PQ_REL_QUEUES_NAME), F_TEXTEQ,
							CStringGetTextDatum(name), DEFAULT_COLLATION_OID,
							queue);
	if (pq_queue_cache != NULL &&
		hash_get_num_entries(pq_queue_cache) >= PQ_QUEUE_CACHE_MAX)
	{
		hash_destroy(pq_queue_cache);
		pq_queue_cache = NULL;
	}
	if (pq_queue_cache == NULL)
	{
		HASHCTL ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(cached->name);
		ctl.entrysize = sizeof(PqCachedQueue);
		pq_queue_cache = hash_create("pg_opsdata queues", 16, &ctl,
									 HASH_ELEM | HASH_STRINGS);
	}
	cached = hash_search(pq_queue_cache, name, HASH_FIND, NULL);
	if (cached != NULL)
	{
		*queue = cached->queue;
		queue->name = pstrdup(cached->name);
		return true;
	}
	if (!pq_lookup_by(Q_ATT_NAME, pq_rel(PQ_REL_QUEUES_NAME), F_TEXTEQ,
					  CStringGetTextDatum(name), DEFAULT_COLLATION_OID, queue))
		return false;
	cached = hash_search(pq_queue_cache, name, HASH_ENTER, &found);
	cached->queue = *queue;
	cached->queue.name = NULL;
	return true;
}

/*
 * Find a queue by id; false when there is none.
 */
bool
pq_lookup_id(int32 queue_id, PqQueue *queue)
{
	return pq_lookup_by(Q_ATT_QUEUE_ID, pq_rel(PQ_REL_QUEUES_PKEY), F_INT4EQ,
						Int32GetDatum(queue_id), InvalidOid, queue);
}

/* ---- inserting ---------------------------------------------------------- */

/*
 * Open audit.queue_items for inserting items in the current transaction.
 * quiet (for the items of audit entries, enqueued where the entries are
 * written) numbers them leaving the session's sequence state (lastval(),
 * currval()) alone; otherwise they are numbered by nextval().
 */
PqInserter *
pq_insert_begin(bool quiet)
{
	PqInserter *ins = palloc0(sizeof(PqInserter));

	ins->rel = table_open(pq_rel(PQ_REL_ITEMS), RowExclusiveLock);
	if (RelationGetDescr(ins->rel)->natts < PQ_NATTS)
		elog(ERROR, "audit.queue_items has %d columns, expected %d",
			 RelationGetDescr(ins->rel)->natts, PQ_NATTS);
	ins->seq = pq_rel(PQ_REL_SEQ);
	ins->quiet = quiet;
	ins->estate = CreateExecutorState();
	ins->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(ins->rri, ins->rel, 1, NULL, 0);
	ExecOpenIndices(ins->rri, false);
	ins->slot = table_slot_create(ins->rel, &ins->estate->es_tupleTable);
	ins->cid = GetCurrentCommandId(true);
	return ins;
}

/*
 * Insert one item and return its id.  payload may be NULL; entry_id 0 for
 * none.
 */
int64
pq_insert(PqInserter *ins, int32 queue_id, Jsonb *payload, int64 entry_id,
		  TimestampTz enqueued_at, TimestampTz visible_at)
{
	return pq_insert_item(ins, queue_id, payload, entry_id, enqueued_at,
						  visible_at, 0, DT_NOBEGIN);
}

/* The id of a new item of queue queue_id. */
static int64
pq_next_id(PqInserter *ins, int32 queue_id)
{
	int64 seq;

	/*
	 * The transaction has its id before the item has its own: the queue
	 * upkeep waits for transactions running when it moves a head, and this
	 * one must be among them while its item may still come below it.
	 */
	(void) GetCurrentTransactionId();
	seq = ins->quiet ? audit_seq_next(ins->seq)
					 : nextval_internal(ins->seq, false);
	return PQ_FIRST_ID(queue_id) | seq;
}

/*
 * Insert one item as pq_insert() does, handed out deliveries times already
 * and acknowledged at acked_at (DT_NOBEGIN: not acknowledged), as an item
 * imported from another system; returns its id.
 */
int64
pq_insert_item(PqInserter *ins, int32 queue_id, Jsonb *payload, int64 entry_id,
			   TimestampTz enqueued_at, TimestampTz visible_at,
			   int32 deliveries, TimestampTz acked_at)
{
	TupleTableSlot *slot = ins->slot;
	int64 id;
	List *recheck;

	id = pq_next_id(ins, queue_id);

	ExecClearTuple(slot);
	memset(slot->tts_isnull, true,
		   sizeof(bool) * slot->tts_tupleDescriptor->natts);
	slot->tts_values[PQ_ATT_ITEM_ID - 1] = Int64GetDatum(id);
	slot->tts_values[PQ_ATT_QUEUE_ID - 1] = Int32GetDatum(queue_id);
	slot->tts_values[PQ_ATT_DELIVERIES - 1] = Int32GetDatum(deliveries);
	slot->tts_values[PQ_ATT_LEASED - 1] = BoolGetDatum(false);
	slot->tts_values[PQ_ATT_ENQUEUED_AT - 1] =
		TimestampTzGetDatum(enqueued_at);
	slot->tts_values[PQ_ATT_VISIBLE_AT - 1] = TimestampTzGetDatum(visible_at);
	slot->tts_isnull[PQ_ATT_ITEM_ID - 1] = false;
	slot->tts_isnull[PQ_ATT_QUEUE_ID - 1] = false;
	slot->tts_isnull[PQ_ATT_DELIVERIES - 1] = false;
	slot->tts_isnull[PQ_ATT_LEASED - 1] = false;
	slot->tts_isnull[PQ_ATT_ENQUEUED_AT - 1] = false;
	slot->tts_isnull[PQ_ATT_VISIBLE_AT - 1] = false;
	if (acked_at != DT_NOBEGIN)
	{
		slot->tts_values[PQ_ATT_ACKED_AT - 1] = TimestampTzGetDatum(acked_at);
		slot->tts_isnull[PQ_ATT_ACKED_AT - 1] = false;
	}
	if (entry_id != 0)
	{
		slot->tts_values[PQ_ATT_ENTRY_ID - 1] = Int64GetDatum(entry_id);
		slot->tts_isnull[PQ_ATT_ENTRY_ID - 1] = false;
	}
	if (payload != NULL)
	{
		slot->tts_values[PQ_ATT_PAYLOAD - 1] = JsonbPGetDatum(payload);
		slot->tts_isnull[PQ_ATT_PAYLOAD - 1] = false;
	}
	ExecStoreVirtualTuple(slot);
	table_tuple_insert(ins->rel, slot, ins->cid, 0, NULL);
	recheck = ExecInsertIndexTuples(ins->rri, slot, ins->estate, false, false,
									NULL, NIL);
	list_free(recheck);
	ResetPerTupleExprContext(ins->estate);
	pq_xact_enqueued(queue_id, id);
	return id;
}

/*
 * Close what pq_insert_begin() opened; the inserted rows are visible to the
 * next command of the transaction.
 */
void
pq_insert_end(PqInserter *ins)
{
	ExecCloseIndices(ins->rri);
	ExecResetTupleTable(ins->estate->es_tupleTable, false);
	FreeExecutorState(ins->estate);
	table_close(ins->rel, NoLock);
	CommandCounterIncrement();
	pfree(ins);
}

/* ---- dead letters ------------------------------------------------------- */

/*
 * Insert a row of audit.dead_letters: item_id, queue_id, deliveries,
 * enqueued_at, died_at (now), entry_id and payload (each may be null but
 * the first four).
 */
static void
pq_dead_insert(const Datum *values, const bool *isnull, EState *estate)
{
	Relation rel = table_open(pq_rel(PQ_REL_DEAD_LETTERS), RowExclusiveLock);
	ResultRelInfo *rri = makeNode(ResultRelInfo);
	TupleTableSlot *dead = table_slot_create(rel, NULL);
	CommandId cid = GetCurrentCommandId(true);
	List *recheck;
	int i;

	ExecClearTuple(dead);
	memset(dead->tts_isnull, true,
		   sizeof(bool) * dead->tts_tupleDescriptor->natts);
	for (i = 0; i < 7; i++)
	{
		dead->tts_values[i] = values[i];
		dead->tts_isnull[i] = isnull[i];
	}
	dead->tts_values[4] = TimestampTzGetDatum(GetCurrentTimestamp());
	dead->tts_isnull[4] = false;
	ExecStoreVirtualTuple(dead);

	InitResultRelInfo(rri, rel, 1, NULL, 0);
	ExecOpenIndices(rri, false);
	table_tuple_insert(rel, dead, cid, 0, NULL);
	recheck =
		ExecInsertIndexTuples(rri, dead, estate, false, false, NULL, NIL);
	list_free(recheck);
	ExecCloseIndices(rri);
	ExecDropSingleTupleTableSlot(dead);
	table_close(rel, NoLock);
}

/*
 * Move an item the caller has locked (its latest version in slot) to
 * audit.dead_letters, in the current transaction.
 */
void
pq_dead_letter(Relation items, TupleTableSlot *slot, EState *estate)
{
	Datum values[7];
	bool isnull[7];
	TM_FailureData tmfd;
	TM_Result result;

	slot_getallattrs(slot);
	values[0] = slot->tts_values[PQ_ATT_ITEM_ID - 1];
	values[1] = slot->tts_values[PQ_ATT_QUEUE_ID - 1];
	values[2] = slot->tts_values[PQ_ATT_DELIVERIES - 1];
	values[3] = slot->tts_values[PQ_ATT_ENQUEUED_AT - 1];
	values[4] = (Datum) 0;
	values[5] = slot->tts_values[PQ_ATT_ENTRY_ID - 1];
	values[6] = slot->tts_values[PQ_ATT_PAYLOAD - 1];
	isnull[0] = isnull[1] = isnull[2] = isnull[3] = isnull[4] = false;
	isnull[5] = slot->tts_isnull[PQ_ATT_ENTRY_ID - 1];
	isnull[6] = slot->tts_isnull[PQ_ATT_PAYLOAD - 1];
	pq_dead_insert(values, isnull, estate);

	result = table_tuple_delete(items, &slot->tts_tid,
								GetCurrentCommandId(true), InvalidSnapshot,
								InvalidSnapshot, true, &tmfd, false);
	if (result != TM_Ok)
		elog(ERROR, "could not remove a dead letter from its queue: %d",
			 (int) result);
}

/*
 * Insert an item straight into audit.dead_letters, with an id of its
 * queue: an imported item that was handed out max_deliveries times
 * without being acknowledged, as a read would have moved it there.
 * Returns its id.
 */
int64
pq_insert_dead_letter(PqInserter *ins, int32 queue_id, Jsonb *payload,
					  TimestampTz enqueued_at, int32 deliveries)
{
	Datum values[7];
	bool isnull[7];
	int64 id = pq_next_id(ins, queue_id);

	values[0] = Int64GetDatum(id);
	values[1] = Int32GetDatum(queue_id);
	values[2] = Int32GetDatum(deliveries);
	values[3] = TimestampTzGetDatum(enqueued_at);
	values[4] = values[5] = (Datum) 0;
	values[6] = payload != NULL ? JsonbPGetDatum(payload) : (Datum) 0;
	isnull[0] = isnull[1] = isnull[2] = isnull[3] = isnull[4] = false;
	isnull[5] = true;
	isnull[6] = payload == NULL;
	pq_dead_insert(values, isnull, ins->estate);
	ResetPerTupleExprContext(ins->estate);
	return id;
}

/* ---- settling ----------------------------------------------------------- */

/*
 * Index entries of a new row version that did not fit on its page (not
 * heap-only).  Inserted as for a new row: the executor's hint that the key
 * did not change needs a range table, and only helps index cleanup.
 */
void
pq_index_new_version(ResultRelInfo *rri, TupleTableSlot *slot, EState *estate)
{
	list_free(
		ExecInsertIndexTuples(rri, slot, estate, false, false, NULL, NIL));
}

static int
pq_cmp_ids(const void *a, const void *b)
{
	int64 x = *(const int64 *) a;
	int64 y = *(const int64 *) b;

	return x < y ? -1 : (x > y ? 1 : 0);
}

/*
 * Find the version of item id visible to the scan's snapshot; false when
 * there is none.
 */
static bool
pq_fetch(IndexScanDesc scan, int64 id, TupleTableSlot *slot)
{
	ScanKeyData key;

	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(id));
	index_rescan(scan, &key, 1, NULL, 0);
	return index_getnext_slot(scan, ForwardScanDirection, slot);
}

/*
 * Acknowledge, nack (available again at until) or extend (leased until
 * until) the items of ids, in the current transaction; returns how many
 * changed.  An item of a subscription needs may_trail, one of an
 * application queue may_app.
 */
int64
pq_settle(PqSettle how, const int64 *ids, int nids, TimestampTz until,
		  bool may_app, bool may_trail)
{
	Relation rel;
	Relation index;
	EState *estate;
	ResultRelInfo *rri;
	TupleTableSlot *slot;
	TupleTableSlot *next;
	IndexScanDesc scan;
	Snapshot snapshot;
	int64 *sorted;
	int64 changed = 0;
	TimestampTz now = GetCurrentTimestamp();
	CommandId cid = GetCurrentCommandId(true);
	int i;

	if (nids == 0)
		return 0;
	sorted = palloc(sizeof(int64) * nids);
	memcpy(sorted, ids, sizeof(int64) * nids);
	qsort(sorted, nids, sizeof(int64), pq_cmp_ids);

	rel = table_open(pq_rel(PQ_REL_ITEMS), RowExclusiveLock);
	index = index_open(pq_rel(PQ_REL_ITEMS_PKEY), RowExclusiveLock);
	estate = CreateExecutorState();
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	ExecOpenIndices(rri, false);
	slot = table_slot_create(rel, &estate->es_tupleTable);
	next = table_slot_create(rel, &estate->es_tupleTable);

	/* One snapshot for all, a newer one for an item changed meanwhile. */
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	scan = index_beginscan(rel, index, snapshot, 1, 0);
	for (i = 0; i < nids; i++)
	{
		int64 id = sorted[i];
		int attempt;

		if (i > 0 && id == sorted[i - 1])
			continue;
		for (attempt = 0; attempt < PQ_SETTLE_RETRIES; attempt++)
		{
			TM_FailureData tmfd;
			LockTupleMode lockmode;
			bool update_indexes;
			TM_Result result;
			bool leased;
			TimestampTz visible_at;

			CHECK_FOR_INTERRUPTS();
			if (attempt > 0)
			{
				index_endscan(scan);
				UnregisterSnapshot(snapshot);
				snapshot = RegisterSnapshot(GetLatestSnapshot());
				scan = index_beginscan(rel, index, snapshot, 1, 0);
			}
			if (!pq_fetch(scan, id, slot))
				break; /* no such item (any more) */
			slot_getallattrs(slot);
			if (!slot->tts_isnull[PQ_ATT_ACKED_AT - 1])
				break;
			if (!slot->tts_isnull[PQ_ATT_ENTRY_ID - 1] && !may_trail)
				ereport(
					ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for item " INT64_FORMAT
							" of an audit subscription",
							id),
					 errhint(
						 "Items of subscriptions are audit entries: they are consumed by roles that may read audit.entries.")));
			if (slot->tts_isnull[PQ_ATT_ENTRY_ID - 1] && !may_app)
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("permission denied for item " INT64_FORMAT
								" of an application queue",
								id),
						 errhint("Application queues are used by members of "
								 "opsdata_writer.")));
			visible_at =
				DatumGetTimestampTz(slot->tts_values[PQ_ATT_VISIBLE_AT - 1]);
			leased = DatumGetBool(slot->tts_values[PQ_ATT_LEASED - 1]) &&
					 visible_at > now;
			if (how == PQ_EXTEND && !leased)
				break;

			ExecClearTuple(next);
			memcpy(next->tts_values, slot->tts_values,
				   sizeof(Datum) * next->tts_tupleDescriptor->natts);
			memcpy(next->tts_isnull, slot->tts_isnull,
				   sizeof(bool) * next->tts_tupleDescriptor->natts);
			if (how == PQ_ACK)
			{
				next->tts_values[PQ_ATT_ACKED_AT - 1] =
					TimestampTzGetDatum(now);
				next->tts_isnull[PQ_ATT_ACKED_AT - 1] = false;
			}
			else
				next->tts_values[PQ_ATT_VISIBLE_AT - 1] =
					TimestampTzGetDatum(until);
			if (how == PQ_NACK)
				next->tts_values[PQ_ATT_LEASED - 1] = BoolGetDatum(false);
			ExecStoreVirtualTuple(next);

			result = table_tuple_update(rel, &slot->tts_tid, next, cid,
										InvalidSnapshot, InvalidSnapshot, true,
										&tmfd, &lockmode, &update_indexes);
			if (result == TM_Ok)
			{
				if (update_indexes)
					pq_index_new_version(rri, next, estate);
				pq_xact_touched(PQ_QUEUE_OF(id), id,
								how == PQ_NACK ? until : DT_NOEND);
				/* Later reads of this transaction see it given back. */
				if (how == PQ_NACK)
					pq_note_available(PQ_QUEUE_OF(id), id, until);
				changed++;
				break;
			}
			if (result == TM_Updated)
				continue; /* changed meanwhile: look at its latest version */
			if (result == TM_Deleted || result == TM_SelfModified)
				break;
			elog(ERROR,
				 "unexpected result %d updating queue item " INT64_FORMAT,
				 (int) result, id);
		}
		ResetPerTupleExprContext(estate);
	}
	index_endscan(scan);
	UnregisterSnapshot(snapshot);

	ExecCloseIndices(rri);
	ExecResetTupleTable(estate->es_tupleTable, false);
	FreeExecutorState(estate);
	index_close(index, NoLock);
	table_close(rel, NoLock);
	CommandCounterIncrement();
	return changed;
}

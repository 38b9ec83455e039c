/*-------------------------------------------------------------------------
 *
 * pqueue_read.c
 *		audit.read(): lease the oldest available items of a queue.
 *
 * The usual table queue ("UPDATE ... WHERE id IN (SELECT ... ORDER BY id
 * LIMIT n FOR UPDATE SKIP LOCKED)") has every read start at the head of
 * its index, and slows down with everything it walks there: items other
 * consumers hold, and the dead entries that acknowledged (deleted) items
 * leave until vacuum removes them, which it cannot do while an old
 * snapshot (a long REPEATABLE READ transaction, a forgotten session) is
 * held.  A read here starts where it is needed (pqueue_state.c):
 *
 *	- at the cursor, above every item a read has already looked at, when
 *	  nothing below it may have become available again;
 *	- else at the lowest id that may have (an expired lease, a nack, a
 *	  rollback, a late commit), and from there up;
 *
 * and acknowledging leaves an item in place (an update of acked_at that no
 * index covers, heap-only) instead of deleting it, so the index holds no
 * dead entries: old items are removed by the upkeep job, far below where
 * reads start.  Every read also moves settled_below (where a full rescan
 * starts) past the items acknowledged since, at most every few
 * milliseconds per queue.
 *
 * A read scans the queue's range of the item index with a fresh snapshot
 * (not the transaction's: a queue is read as it is now, also in a
 * REPEATABLE READ transaction, and a waiting read sees what was committed
 * while it waited), locks each available item with SKIP LOCKED semantics
 * (an item another transaction is changing is passed over: that
 * transaction announces it if it rolls back) and updates it: one more
 * delivery, visible again at the end of the lease.  An item delivered
 * max_deliveries times that is available again is moved to the dead
 * letters instead.  Waiting (wait => interval) sleeps on the queue's
 * condition variable until a commit announces items, or polls without
 * shared memory.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/pqueue_read.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/xact.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "audit/pqueue.h"

PG_FUNCTION_INFO_V1(audit_pq_read);
PG_FUNCTION_INFO_V1(audit_pq_settled_below);
PG_FUNCTION_INFO_V1(audit_pq_state);

/* Most index entries one walk of settled items looks at. */
#define PQ_WALK_MAX 100000

/* An index scan of a queue's items, from a start id to the queue's end. */
typedef struct PqScan
{
	Relation rel;
	Relation index;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	int64 end;
} PqScan;

static void
pq_scan_begin(PqScan *s, Relation rel, Relation index, Snapshot snapshot,
			  int32 queue_id, int64 start, TupleTableSlot *slot)
{
	ScanKeyData keys[2];

	s->rel = rel;
	s->index = index;
	s->slot = slot;
	s->end = PQ_END_ID(queue_id);
	ScanKeyInit(&keys[0], 1, BTGreaterEqualStrategyNumber, F_INT8GE,
				Int64GetDatum(start));
	ScanKeyInit(&keys[1], 1, BTLessStrategyNumber, F_INT8LT,
				Int64GetDatum(s->end));
	s->scan = index_beginscan(rel, index, snapshot, 2, 0);
	/* The id of each entry, also of those whose row is not visible. */
	s->scan->xs_want_itup = true;
	index_rescan(s->scan, keys, 2, NULL, 0);
}

/*
 * Next index entry: its item id in *id, and whether a version of its row is
 * visible to the scan's snapshot (then in the slot).  False at the end.
 */
static bool
pq_scan_next(PqScan *s, int64 *id, bool *visible)
{
	ItemPointer tid;
	bool isnull;

	tid = index_getnext_tid(s->scan, ForwardScanDirection);
	if (tid == NULL)
		return false;
	*id = DatumGetInt64(
		index_getattr(s->scan->xs_itup, 1, s->scan->xs_itupdesc, &isnull));
	if (*id >= s->end)
		return false;
	*visible = index_fetch_heap(s->scan, s->slot);
	return true;
}

static void
pq_scan_end(PqScan *s)
{
	index_endscan(s->scan);
}

/* ---- walking settled items ---------------------------------------------- */

/*
 * Move the queue's settled_below past the items acknowledged since the
 * last walk (unless one ran lately, or force); returns the position.  A
 * walk stops at the first item that is not acknowledged, or whose row is
 * still being inserted or changed by a transaction in progress.
 */
int64
pq_walk_settled(PqRef *ref, int32 queue_id, bool force)
{
	PqPass pass;
	Relation rel;
	Relation index;
	Snapshot snapshot;
	SnapshotData dirty;
	IndexFetchTableData *fetch;
	TupleTableSlot *slot;
	TupleTableSlot *other;
	PqScan scan;
	int64 id;
	int64 reached;
	bool visible;
	int walked = 0;

	if (!pq_walk_begin(ref, force ? DT_NOEND : GetCurrentTimestamp(), &pass))
		return pq_settled_below(ref);
	reached = pass.start;
	rel = table_open(pq_rel(PQ_REL_ITEMS), AccessShareLock);
	index = index_open(pq_rel(PQ_REL_ITEMS_PKEY), AccessShareLock);
	slot = table_slot_create(rel, NULL);
	other = table_slot_create(rel, NULL);
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	InitDirtySnapshot(dirty);
	fetch = table_index_fetch_begin(rel);
	pq_scan_begin(&scan, rel, index, snapshot, queue_id, pass.start, slot);
	while (walked++ < PQ_WALK_MAX && pq_scan_next(&scan, &id, &visible))
	{
		CHECK_FOR_INTERRUPTS();
		if (visible)
		{
			bool isnull;

			(void) slot_getattr(slot, PQ_ATT_ACKED_AT, &isnull);
			if (isnull)
				break;
		}
		else
		{
			bool call_again = false;
			bool all_dead = false;

			/* Dead, or not yet (or no longer) committed? */
			if (table_index_fetch_tuple(fetch, &scan.scan->xs_heaptid, &dirty,
										other, &call_again, &all_dead))
				break;
		}
		reached = id + 1;
	}
	pq_scan_end(&scan);
	table_index_fetch_end(fetch);
	UnregisterSnapshot(snapshot);
	ExecDropSingleTupleTableSlot(slot);
	ExecDropSingleTupleTableSlot(other);
	index_close(index, AccessShareLock);
	table_close(rel, AccessShareLock);
	pq_walk_end(ref, &pass, reached);
	return pq_settled_below(ref);
}

/* ---- reading ------------------------------------------------------------ */

/*
 * One pass over the queue: lease up to n available items for lease_us and
 * add them to the result.  Returns how many.
 */
static int
pq_read_pass(const PqQueue *queue, PqRef *ref, int n, int64 lease_us,
			 ReturnSetInfo *rsinfo, PqPass *pass)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz until = now + lease_us;
	TimestampTz due = DT_NOEND;
	Relation rel;
	Relation index;
	EState *estate;
	ResultRelInfo *rri;
	TupleTableSlot *slot;
	TupleTableSlot *locked;
	TupleTableSlot *next;
	Snapshot snapshot;
	PqScan scan;
	CommandId cid;
	int64 id;
	int64 reached;
	bool visible;
	bool exhausted = true;
	bool modified = false;
	int got = 0;

	pq_walk_settled(ref, queue->queue_id, false);
	pq_pass_begin(ref, now, pass);
	reached = pass->start;

	rel = table_open(pq_rel(PQ_REL_ITEMS), RowExclusiveLock);
	index = index_open(pq_rel(PQ_REL_ITEMS_PKEY), RowExclusiveLock);
	estate = CreateExecutorState();
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	ExecOpenIndices(rri, false);
	slot = table_slot_create(rel, &estate->es_tupleTable);
	locked = table_slot_create(rel, &estate->es_tupleTable);
	next = table_slot_create(rel, &estate->es_tupleTable);
	cid = GetCurrentCommandId(true);
	snapshot = RegisterSnapshot(GetLatestSnapshot());

	pq_scan_begin(&scan, rel, index, snapshot, queue->queue_id, pass->start,
				  slot);
	while (got < n)
	{
		TM_FailureData tmfd;
		TM_Result result;
		LockTupleMode lockmode;
		bool update_indexes;
		TimestampTz visible_at;
		int32 deliveries;
		ItemPointerData tid;

		CHECK_FOR_INTERRUPTS();
		if (!pq_scan_next(&scan, &id, &visible))
			break;
		reached = id + 1;
		if (!visible)
			continue;
		slot_getallattrs(slot);
		if (!slot->tts_isnull[PQ_ATT_ACKED_AT - 1])
			continue;
		visible_at =
			DatumGetTimestampTz(slot->tts_values[PQ_ATT_VISIBLE_AT - 1]);
		if (visible_at > now)
		{
			due = Min(due, visible_at);
			continue;
		}

		/* SKIP LOCKED, on the version the snapshot sees. */
		tid = slot->tts_tid;
		result =
			table_tuple_lock(rel, &tid, snapshot, locked, cid,
							 LockTupleNoKeyExclusive, LockWaitSkip, 0, &tmfd);
		if (result != TM_Ok)
			continue;
		modified = true;
		slot_getallattrs(locked);
		deliveries = DatumGetInt32(locked->tts_values[PQ_ATT_DELIVERIES - 1]);
		pq_xact_touched(queue->queue_id, id, DT_NOEND);
		if (deliveries >= queue->max_deliveries)
		{
			pq_dead_letter(rel, locked, estate);
			continue;
		}

		ExecClearTuple(next);
		memcpy(next->tts_values, locked->tts_values,
			   sizeof(Datum) * next->tts_tupleDescriptor->natts);
		memcpy(next->tts_isnull, locked->tts_isnull,
			   sizeof(bool) * next->tts_tupleDescriptor->natts);
		next->tts_values[PQ_ATT_DELIVERIES - 1] =
			Int32GetDatum(deliveries + 1);
		next->tts_values[PQ_ATT_LEASED - 1] = BoolGetDatum(true);
		next->tts_values[PQ_ATT_VISIBLE_AT - 1] = TimestampTzGetDatum(until);
		ExecStoreVirtualTuple(next);
		result = table_tuple_update(rel, &tid, next, cid, InvalidSnapshot,
									InvalidSnapshot, true, &tmfd, &lockmode,
									&update_indexes);
		if (result != TM_Ok)
			elog(ERROR,
				 "could not lease queue item " INT64_FORMAT
				 " that this transaction locked: %d",
				 id, (int) result);
		if (update_indexes)
			pq_index_new_version(rri, next, estate);
		ResetPerTupleExprContext(estate);
		pq_note_leased(ref, id, until);

		{
			Datum values[6];
			bool nulls[6] = {false, false, false, false, false, false};

			values[0] = Int64GetDatum(id);
			values[1] = locked->tts_values[PQ_ATT_PAYLOAD - 1];
			nulls[1] = locked->tts_isnull[PQ_ATT_PAYLOAD - 1];
			values[2] = Int32GetDatum(deliveries + 1);
			values[3] = locked->tts_values[PQ_ATT_ENQUEUED_AT - 1];
			values[4] = TimestampTzGetDatum(until);
			values[5] = locked->tts_values[PQ_ATT_ENTRY_ID - 1];
			nulls[5] = locked->tts_isnull[PQ_ATT_ENTRY_ID - 1];
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values,
								 nulls);
		}
		got++;
	}
	if (got == n)
		exhausted = false;
	pq_scan_end(&scan);
	UnregisterSnapshot(snapshot);
	ExecCloseIndices(rri);
	ExecResetTupleTable(estate->es_tupleTable, false);
	FreeExecutorState(estate);
	index_close(index, NoLock);
	table_close(rel, NoLock);

	pq_pass_end(ref, pass, reached, exhausted, due);
	if (modified)
		CommandCounterIncrement();
	return got;
}

/*
 * audit.read(queue, n, visibility_timeout, wait) leases up to n items of
 * the queue and returns them, oldest first, waiting up to wait for the
 * first one.
 */
Datum
audit_pq_read(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PqQueue queue;
	PqRef ref;
	PqPass pass;
	Interval *vt;
	int64 lease_us;
	int64 wait_us = 0;
	TimestampTz deadline;
	int32 n;

	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("queue name must not be null")));
	if (PG_ARGISNULL(1))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("number of items to read must not be null")));
	n = PG_GETARG_INT32(1);
	if (n < 0 || n > PQ_MAX_READ)
		ereport(
			ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("number of items to read must be between 0 and %d, not %d",
					PQ_MAX_READ, n)));
	if (PG_ARGISNULL(2))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("visibility timeout must not be null")));
	vt = PG_GETARG_INTERVAL_P(2);
	lease_us = pq_interval_us(vt, "visibility timeout", false);
	if (!PG_ARGISNULL(3))
		wait_us = pq_interval_us(PG_GETARG_INTERVAL_P(3), "wait", true);

	pq_get_queue(PG_GETARG_TEXT_PP(0), &queue);
	pq_check_consume(&queue);
	PreventCommandIfReadOnly("audit.read()");
	PreventCommandIfParallelMode("audit.read()");

	/*
	 * The executor hands the row type it expects (the declared one): using
	 * it spares building it from pg_proc on every call.
	 */
	InitMaterializedSRF(fcinfo, rsinfo != NULL && IsA(rsinfo, ReturnSetInfo) &&
										rsinfo->expectedDesc != NULL
									? MAT_SRF_USE_EXPECTED_DESC
									: 0);
	if (n == 0)
		return (Datum) 0;
	deadline = GetCurrentTimestamp() + wait_us;
	pq_state_get(&ref, queue.queue_id, queue.head);
	for (;;)
	{
		int got = pq_read_pass(&queue, &ref, n, lease_us, rsinfo, &pass);

		if (got == n)
			pq_wake_next(&ref);
		if (got > 0)
			break;
		if (wait_us == 0 || !pq_wait(&ref, &pass, deadline))
			break;
		/* The slot may have been taken for another queue meanwhile. */
		pq_state_get(&ref, queue.queue_id, queue.head);
	}
	return (Datum) 0;
}

/*
 * audit._queue_settled_below(queue_id): an id below which every item of the
 * queue is acknowledged (after a walk of the items acknowledged since the
 * last one).
 */
Datum
audit_pq_settled_below(PG_FUNCTION_ARGS)
{
	PqQueue queue;
	PqRef ref;

	if (!pq_lookup_id(PG_GETARG_INT32(0), &queue))
		PG_RETURN_INT64(PQ_FIRST_ID(PG_GETARG_INT32(0)));
	pq_state_get(&ref, queue.queue_id, queue.head);
	PG_RETURN_INT64(pq_walk_settled(&ref, queue.queue_id, true));
}

/*
 * audit._queue_state(): what shared memory (or this backend) knows of the
 * read positions of the queues of this database.
 */
Datum
audit_pq_state(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PqStateInfo *infos;
	int n;
	int i;

	InitMaterializedSRF(fcinfo, 0);
	n = pq_state_list(&infos);
	for (i = 0; i < n; i++)
	{
		Datum values[6];
		bool nulls[6] = {false, false, false, false, false, false};

		values[0] = Int32GetDatum(infos[i].queue_id);
		values[1] = BoolGetDatum(infos[i].shared);
		values[2] = Int64GetDatum(infos[i].settled_below);
		values[3] = Int64GetDatum(infos[i].cursor);
		values[4] = Int64GetDatum(infos[i].rescan_from);
		nulls[4] = infos[i].rescan_from == PQ_NO_ID;
		values[5] = TimestampTzGetDatum(infos[i].due_at);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values,
							 nulls);
	}
	return (Datum) 0;
}
